//! Child processes of the benchmarks: started with their command printed,
//! stopped with SIGINT (then SIGKILL), reaped with `wait4` for their own
//! CPU time and peak RSS, and killed on drop whatever happens.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read},
    path::Path,
    process::{Child, Command},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};

use super::sys::{self, Exit};
use crate::cmd;

/// A running child. Dropping it kills and reaps it.
pub struct Proc {
    pub name: String,
    pub started: Instant,
    child: Child,
    exit: Option<Exit>,
}

impl Proc {
    /// Spawns `cmd` (stdio as configured by the caller), printing it first.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let cmdline = cmd::display(cmd);
        eprintln!("+ {cmdline} &");
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{cmdline}`"))?;
        Ok(Self {
            name: name.to_owned(),
            started,
            child,
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// `Some` once exited (reaped by us).
    pub fn poll(&mut self) -> Result<Option<Exit>> {
        if self.exit.is_none() {
            self.exit = sys::try_wait(self.pid())?;
        }
        Ok(self.exit)
    }

    /// Fails when the child has already exited.
    pub fn ensure_running(&mut self, stderr_file: Option<&Path>) -> Result<()> {
        if let Some(exit) = self.poll()? {
            bail!(
                "{} exited early ({exit}){}",
                self.name,
                stderr_file.map(tail).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<Exit>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.poll()? {
                return Ok(Some(exit));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the child to exit by itself, giving up (and killing it) when
    /// interrupted or after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<Exit> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.poll()? {
                return Ok(exit);
            }
            sys::check()?;
            if Instant::now() >= end {
                self.kill();
                bail!("{} did not finish within {timeout:?}: killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGINT (what a user's Ctrl-C sends: tracer detaches and flushes), then
    /// SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Result<Exit> {
        if let Some(exit) = self.poll()? {
            return Ok(exit);
        }
        eprintln!("+ kill -INT {}  # {}", self.pid(), self.name);
        sys::send_signal(self.pid(), sys::SIGINT)?;
        if let Some(exit) = self.wait_timeout(grace)? {
            return Ok(exit);
        }
        cmd::warn(format!(
            "{} did not stop within {grace:?} of SIGINT: killing it",
            self.name
        ));
        self.kill();
        self.exit
            .ok_or_else(|| anyhow!("{} could not be reaped", self.name))
    }

    /// SIGKILL and reap (no-op once reaped).
    pub fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let _ = sys::send_signal(self.pid(), sys::SIGKILL);
        if let Ok(Some(exit)) = self.wait_timeout(Duration::from_secs(10)) {
            self.exit = Some(exit);
        }
    }

    /// utime + stime of all its threads so far, in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64> {
        cpu_ticks(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on Linux's ABI).
pub const CLK_TCK: f64 = 100.0;

/// utime + stime (fields 14 and 15) of /proc/<pid>/stat: the whole thread group.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: split after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat: {stat:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14 → index 11.
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("odd /proc/{pid}/stat: {stat:?}"))
    };
    Ok(get(11)? + get(12)?)
}

/// The last lines of a log file, formatted for an error message.
pub fn tail(path: &Path) -> String {
    let Ok(text) = fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(6);
    format!(": {}", lines[start..].join(" | "))
}

#[derive(Default)]
struct WatchState {
    lines: u64,
    matched: Vec<Instant>,
    eof: bool,
    head: Vec<String>,
}

/// Reads a child's stdout on a thread: counts lines, remembers when lines
/// matching a predicate arrived, and discards everything (like `> /dev/null`,
/// but we see when the tool is ready).
pub struct Watch {
    state: Arc<(Mutex<WatchState>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    pub fn start(stdout: impl Read + Send + 'static, pred: fn(&str) -> bool) -> Self {
        let state = Arc::new((Mutex::new(WatchState::default()), Condvar::new()));
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 16, stdout);
            let mut buf = Vec::with_capacity(512);
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let hit = pred(&line);
                        let (lock, cv) = &*st;
                        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                        s.lines += 1;
                        if s.head.len() < 16 {
                            s.head.push(line.trim_end().to_owned());
                        }
                        if hit {
                            s.matched.push(Instant::now());
                            cv.notify_all();
                        }
                    }
                }
            }
            let (lock, cv) = &*st;
            lock.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
            cv.notify_all();
        });
        Self {
            state,
            thread: Some(thread),
        }
    }

    /// When the `n`-th matching line arrived; an error at end of output,
    /// after `timeout`, or when interrupted.
    pub fn wait_matches(&self, n: usize, timeout: Duration) -> Result<Instant> {
        let end = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.matched.len() >= n {
                return Ok(s.matched[n - 1]);
            }
            if s.eof {
                bail!(
                    "output ended after {} of {n} expected lines (first lines: {:?})",
                    s.matched.len(),
                    s.head
                );
            }
            sys::check()?;
            let now = Instant::now();
            if now >= end {
                bail!(
                    "only {} of {n} expected lines within {timeout:?} (first lines: {:?})",
                    s.matched.len(),
                    s.head
                );
            }
            let wait = (end - now).min(Duration::from_millis(100));
            s = cv
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn lines(&self) -> u64 {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner()).lines
    }

    pub fn head(&self) -> Vec<String> {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .head
            .clone()
    }

    /// Waits for end of output (after the child exited) and returns the line count.
    pub fn finish(mut self) -> u64 {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.lines()
    }
}

/// Polls a file until `n` lines match `pred` (the tool writes its output
/// there). Fails when `proc` exits first, after `timeout`, or when interrupted.
pub fn wait_file_matches(
    path: &Path,
    pred: fn(&str) -> bool,
    n: usize,
    timeout: Duration,
    proc: &mut Proc,
    stderr: &Path,
) -> Result<Instant> {
    let end = Instant::now() + timeout;
    loop {
        let text = fs::read(path).unwrap_or_default();
        let hits = String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| pred(l))
            .count();
        if hits >= n {
            return Ok(Instant::now());
        }
        proc.ensure_running(Some(stderr))?;
        sys::check()?;
        if Instant::now() >= end {
            bail!(
                "{}: only {hits} of {n} expected lines in {} within {timeout:?}{}",
                proc.name,
                path.display(),
                tail(stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a growing output file and its writer's CPU time stop moving
/// for `quiet` (the writer has drained what it was given). Returns how long
/// that took, `quiet` excluded.
pub fn wait_quiescent(
    path: &Path,
    proc: &Proc,
    quiet: Duration,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let sample = || -> (u64, u64) {
        (
            fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            proc.cpu_ticks().unwrap_or(0),
        )
    };
    let mut last = sample();
    let mut last_change = Instant::now();
    loop {
        sys::sleep(Duration::from_millis(100))?;
        let now = sample();
        // A tick or two of CPU is the periodic loss poll, not draining.
        if now.0 != last.0 || now.1 > last.1 + 1 {
            last_change = Instant::now();
        }
        last = now;
        if last_change.elapsed() >= quiet {
            return Ok(last_change - start);
        }
        if start.elapsed() >= timeout {
            bail!(
                "{} kept writing to {} for {timeout:?}",
                proc.name,
                path.display()
            );
        }
    }
}
