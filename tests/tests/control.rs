//! Staying in control (issue 13): a closed stdout, a full disk, signals
//! under a sustained drop flood, and capture files that are never
//! overwritten. Each case runs the real binary against real faults.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    net::UdpSocket,
    os::{fd::AsFd, unix::fs::symlink},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::sys::signal::{kill, Signal};
use tracer_tests::{require_root, sh, sh_quiet, tracer_bin, unique_tag, BridgeTopo};

/// Worst case of a graceful stop, as documented in live.rs: ring drain
/// (2 s) + capture finish (10 s) + sinks (5 s), plus start-up slack.
const STOP_BOUND: Duration = Duration::from_secs(20);

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let (t, _) = unique_tag();
        let p = std::env::temp_dir().join(format!("tracer-control-{t}-{tag}"));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A small tmpfs (a full disk), unmounted on drop. Panics when the mount
/// fails: the test must not pass without a full disk.
struct SmallFs(Dir);

impl SmallFs {
    fn new(tag: &str, size: &str) -> Self {
        let dir = Dir::new(tag);
        let opts = format!("size={size},mode=0700");
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &opts,
            "tmpfs",
            dir.0.to_str().unwrap(),
        ]);
        let fs = Self(dir);
        let df = sh(&[
            "findmnt",
            "-n",
            "-o",
            "FSTYPE,SIZE",
            fs.0 .0.to_str().unwrap(),
        ]);
        assert!(df.starts_with("tmpfs"), "not a tmpfs mount: {df}");
        fs
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.file(name)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        sh_quiet(&["umount", "-l", self.0 .0.to_str().unwrap()]);
    }
}

/// UDP datagrams from A to a closed port on B, as fast as they go, until
/// dropped (each one a `kfree_skb` with NO_SOCKET in B).
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    fn start(topo: &BridgeTopo) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let ns = fs::File::open(topo.a.path()).expect("netns");
        let (ip_a, ip_b) = (topo.ip_a.clone(), topo.ip_b.clone());
        let thread = std::thread::spawn({
            let (stop, sent) = (stop.clone(), sent.clone());
            move || {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                let s = UdpSocket::bind((ip_a.as_str(), 0)).expect("bind");
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        if s.send_to(b"flood", (ip_b.as_str(), 9)).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `tracer run` process: stdout lines counted (when collected), stderr
/// kept.
struct Run {
    child: Child,
    lines: Arc<AtomicU64>,
    stderr: Arc<Mutex<String>>,
    /// Stdout, when the test holds it unread.
    held: Option<std::process::ChildStdout>,
}

enum Out {
    /// Read and counted.
    Collect,
    /// A pipe nobody reads (a stuck reader).
    Hold,
    /// A file.
    File(fs::File),
}

impl Run {
    fn start(args: &[&str], out: Out) -> Self {
        let mut cmd = Command::new(tracer_bin());
        cmd.arg("run").args(args).stderr(Stdio::piped());
        let collect = matches!(out, Out::Collect);
        match out {
            Out::Collect | Out::Hold => cmd.stdout(Stdio::piped()),
            Out::File(f) => cmd.stdout(Stdio::from(f)),
        };
        let mut child = cmd.spawn().expect("start tracer");
        let lines = Arc::new(AtomicU64::new(0));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut held = None;
        if let Some(stdout) = child.stdout.take() {
            if collect {
                let l = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        assert!(line.starts_with('{'), "not NDJSON: {line}");
                        l.fetch_add(1, Ordering::Relaxed);
                    }
                });
            } else {
                held = Some(stdout);
            }
        }
        let err = child.stderr.take().expect("stderr");
        let e = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[tracer stderr] {line}");
                let mut s = e.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            child,
            lines,
            stderr,
            held,
        }
    }

    fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, sig: Signal) {
        kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).expect("kill");
    }

    /// Waits for the exit, at most `bound`; panics after it.
    fn wait_exit(&mut self, bound: Duration) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                // Let the stderr reader see EOF.
                std::thread::sleep(Duration::from_millis(200));
                return (s, t0.elapsed());
            }
            assert!(
                t0.elapsed() < bound,
                "tracer did not exit within {bound:?}; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `f` holds, at most `timeout`.
    fn wait_until(&self, timeout: Duration, what: &str, f: impl Fn(&Self) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            assert!(
                t0.elapsed() < timeout,
                "{what} within {timeout:?}; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tracer replay FILE`: (success, stdout lines, stderr).
fn replay(path: &Path) -> (bool, String, String) {
    let out = Command::new(tracer_bin())
        .arg("replay")
        .arg(path)
        .output()
        .expect("run tracer replay");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// `tracer run | head -3` (a real `head`) ends promptly, exit status 0,
/// and nothing on stderr about it: a closed pipe is the reader's choice.
#[test]
fn run_piped_into_head_exits_promptly() {
    require_root();
    let mut tracer = Command::new(tracer_bin())
        .args(["run", "--no-docker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer");
    let head = Command::new("head")
        .arg("-3")
        .stdin(Stdio::from(tracer.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start head");
    let out = head.wait_with_output().expect("head");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().count(), 3, "{printed}");
    assert!(printed.contains("probe_status"), "{printed}");
    // head has exited: tracer follows within a bound, on a quiet host too
    // (probe_status lines were all it had to print).
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = tracer.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = tracer.kill();
            panic!("tracer still running 10 s after its reader exited");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    tracer
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    eprintln!(
        "tracer exited {:?} after head, status {status}",
        t0.elapsed()
    );
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(!err.contains("error"), "{err}");
}

/// Under a sustained flood, SIGTERM and SIGHUP (no reopenable sink) stop
/// the run within the bound, exit 0, and leave a complete capture: it
/// replays without a truncation warning.
#[test]
fn sigterm_and_sighup_under_a_flood_stop_with_a_complete_capture() {
    require_root();
    for sig in [Signal::SIGTERM, Signal::SIGHUP] {
        let topo = BridgeTopo::new();
        let dir = Dir::new("signal");
        let cap = dir.file("run.capture");
        let flood = Flood::start(&topo);
        let mut run = Run::start(
            &["--no-docker", "--record", cap.to_str().unwrap()],
            Out::Collect,
        );
        // Recording under the flood: the capture grows past its first MiB.
        run.wait_until(Duration::from_secs(60), "capture growing", |_| {
            file_len(&cap) > 1 << 20
        });
        std::thread::sleep(Duration::from_secs(1));
        let sent_before = flood.sent.load(Ordering::Relaxed);
        run.signal(sig);
        let (status, took) = run.wait_exit(STOP_BOUND);
        let sent = flood.sent.load(Ordering::Relaxed) - sent_before;
        eprintln!("{sig}: exited {status} after {took:?}; flood sent {sent} datagrams meanwhile");
        assert!(sent > 1000, "the flood was not sustained ({sent})");
        drop(flood);
        assert!(
            status.success(),
            "{sig}: {status}; stderr: {}",
            run.stderr()
        );
        assert!(run.lines() > 100, "{} lines", run.lines());
        let (ok, lines, err) = replay(&cap);
        assert!(ok, "{sig}: replay failed: {err}");
        assert!(
            !err.contains("warning"),
            "{sig}: capture not complete: {err}"
        );
        assert!(
            lines.contains("\"action\":\"skb_drop\""),
            "no drops recorded"
        );
        assert!(
            lines.contains("\"action\":\"loss_report\""),
            "no final loss report"
        );
    }
}

/// A second SIGINT exits at once (status 130), even while the first one's
/// shutdown waits (here: for a stdout nobody reads); the capture replays
/// every complete record (it may lack its end marker).
#[test]
fn second_sigint_exits_at_once_with_a_replayable_capture() {
    require_root();
    let topo = BridgeTopo::new();
    let dir = Dir::new("second");
    let cap = dir.file("run.capture");
    let flood = Flood::start(&topo);
    let mut run = Run::start(
        &["--no-docker", "--record", cap.to_str().unwrap()],
        Out::Hold,
    );
    run.wait_until(Duration::from_secs(60), "capture growing", |_| {
        file_len(&cap) > 1 << 20
    });
    run.signal(Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    // Still stopping: its stdout queue waits for a reader (5 s at most).
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "stopped too fast to test"
    );
    run.signal(Signal::SIGINT);
    let (status, took) = run.wait_exit(Duration::from_secs(2));
    eprintln!("second SIGINT: exited {status} after {took:?}");
    drop(flood);
    assert_eq!(status.code(), Some(130), "stderr: {}", run.stderr());
    assert!(
        run.stderr().contains("SIGINT again: exiting now"),
        "{}",
        run.stderr()
    );
    drop(run.held.take());
    let (ok, lines, err) = replay(&cap);
    assert!(ok, "replay failed: {err}");
    assert!(
        lines.contains("\"action\":\"skb_drop\""),
        "no drops recorded: {err}"
    );
}

/// An existing FILE, a symbolic link (dangling or not) and an existing
/// FILE.1 are refused at once (exit 1, one line) and left as they were.
#[test]
fn existing_or_symlinked_record_target_is_refused_and_untouched() {
    require_root();
    let dir = Dir::new("refuse");
    let run = |target: &Path| {
        let out = Command::new(tracer_bin())
            .args(["run", "--no-docker", "--duration", "5s", "--record"])
            .arg(target)
            .output()
            .expect("run tracer");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(out.stdout.is_empty(), "started anyway");
        err
    };

    let existing = dir.file("existing.capture");
    fs::write(&existing, b"an earlier capture").unwrap();
    let err = run(&existing);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read(&existing).unwrap(), b"an earlier capture");

    let victim = dir.file("victim");
    fs::write(&victim, b"precious").unwrap();
    let link = dir.file("link.capture");
    symlink(&victim, &link).unwrap();
    let err = run(&link);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert_eq!(fs::read_link(&link).unwrap(), victim);

    let nowhere = dir.file("nowhere");
    let dangling = dir.file("dangling.capture");
    symlink(&nowhere, &dangling).unwrap();
    let err = run(&dangling);
    assert!(err.contains("already exists"), "{err}");
    assert!(!nowhere.exists(), "the link was followed");

    let base = dir.file("parts.capture");
    let part = dir.file("parts.capture.1");
    fs::write(&part, b"part 1 of an earlier capture").unwrap();
    let err = run(&base);
    assert!(err.contains("parts.capture.1 exists"), "{err}");
    assert!(!base.exists(), "FILE was created");
    assert_eq!(fs::read(&part).unwrap(), b"part 1 of an earlier capture");
}

/// The capture's disk fills up (a 256 KiB tmpfs): recording stops with one
/// line on stderr, the live stream goes on, the run still exits 0, and the
/// capture replays up to where it stopped.
#[test]
fn full_disk_stops_recording_and_live_output_continues() {
    require_root();
    let topo = BridgeTopo::new();
    let small = SmallFs::new("fullcap", "256k");
    let cap = small.file("run.capture");
    let flood = Flood::start(&topo);
    let mut run = Run::start(
        &["--no-docker", "--record", cap.to_str().unwrap()],
        Out::Collect,
    );
    run.wait_until(Duration::from_secs(60), "recording stopped", |r| {
        r.stderr().contains("recording stopped")
    });
    let at_error = run.lines();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        run.lines() > at_error + 100,
        "live output stopped with the recording: {} then {}",
        at_error,
        run.lines()
    );
    run.signal(Signal::SIGTERM);
    let (status, _) = run.wait_exit(STOP_BOUND);
    drop(flood);
    let err = run.stderr();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(err.matches("recording stopped").count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let (ok, _, rerr) = replay(&cap);
    assert!(
        ok,
        "the capture up to the full disk does not replay: {rerr}"
    );
    assert!(
        rerr.contains("warning"),
        "a cut-short capture must say so: {rerr}"
    );
}

/// Stdout redirected to a file on a full disk: the error is on stderr at
/// once (before the exit, once) and the run exits 1 by itself.
#[test]
fn stdout_on_a_full_disk_exits_non_zero_at_once() {
    require_root();
    let topo = BridgeTopo::new();
    let small = SmallFs::new("fullout", "256k");
    let out = fs::File::create(small.file("out.ndjson")).unwrap();
    let flood = Flood::start(&topo);
    let mut run = Run::start(&["--no-docker"], Out::File(out));
    let (status, took) = run.wait_exit(Duration::from_secs(60));
    drop(flood);
    let err = run.stderr();
    eprintln!("exited {status} after {took:?}");
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert!(err.contains("writing to stdout"), "{err}");
    let written = file_len(&small.file("out.ndjson"));
    assert!(
        written > 100 << 10,
        "the disk did not fill: {written} bytes"
    );
}

/// `tracer check | head -1`: no panic on the closed pipe, exit status 0.
#[test]
fn check_piped_into_head_does_not_panic() {
    require_root();
    let mut check = Command::new(tracer_bin())
        .args(["check", "--drop-reasons"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer check");
    // The reader is gone before check writes anything (it loads and
    // attaches every probe first): its write gets EPIPE.
    let stdout = check.stdout.take().unwrap();
    drop(stdout);
    let out = check.wait_with_output().expect("tracer check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// `--pcapng` on a full disk is a failed output like any other: said once,
/// the run stops, exit 1; the file holds what fitted.
#[test]
fn pcapng_on_a_full_disk_stops_the_run_with_exit_1() {
    require_root();
    let topo = BridgeTopo::new();
    let small = SmallFs::new("fullpcap", "256k");
    let pcap = small.file("drops.pcapng");
    let flood = Flood::start(&topo);
    let mut run = Run::start(
        &["--no-docker", "--pcapng", pcap.to_str().unwrap()],
        Out::Collect,
    );
    let (status, took) = run.wait_exit(Duration::from_secs(60));
    drop(flood);
    let err = run.stderr();
    eprintln!("exited {status} after {took:?}");
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert!(err.contains("writing to pcapng"), "{err}");
    let written = file_len(&pcap);
    assert!(
        written > 100 << 10,
        "the disk did not fill: {written} bytes"
    );
}
