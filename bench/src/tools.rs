//! Starting the tools under test: `tracer run` and bpftrace, each waited for
//! until its probes are attached.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    proc::{self, tail, Proc, Watch},
    Env, Recorder,
};

/// How long a tool may take to attach before it is declared broken.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a tool may take to exit after SIGINT.
pub const STOP_GRACE: Duration = Duration::from_secs(60);

pub fn is_probe_status(line: &str) -> bool {
    line.contains("\"action\":\"probe_status\"")
}

fn is_bpftrace_attached(line: &str) -> bool {
    line.starts_with("Attaching ") || line.contains("\"attached_probes\"")
}

/// A tool whose probes are attached.
pub struct Running {
    pub proc: Proc,
    /// Its stdout, read and discarded (piped mode).
    pub watch: Option<Watch>,
    pub stderr: PathBuf,
    /// From spawn to the last probe attached.
    pub attach_time: Duration,
    /// Probes reported attached (tracer: probe_status lines saying so).
    pub attached: usize,
}

impl Running {
    /// SIGINT, wait, and return (exit, lines printed when piped).
    pub fn stop(mut self) -> Result<(super::sys::Exit, Option<u64>)> {
        let exit = self.proc.stop(STOP_GRACE)?;
        let lines = self.watch.take().map(Watch::finish);
        if !exit.clean_or_signalled() {
            bail!("{} ended with {exit}{}", self.proc.name, tail(&self.stderr));
        }
        Ok((exit, lines))
    }
}

/// Where the tool's stdout goes.
pub enum Output<'a> {
    /// A pipe that tracer-bench reads and discards (counting lines).
    Discard,
    /// A file (kept for counting afterwards).
    File(&'a Path),
}

fn stdout_for(out: &Output<'_>, cmd: &mut Command) -> Result<()> {
    match out {
        Output::Discard => {
            cmd.stdout(Stdio::piped());
        }
        Output::File(path) => {
            let f =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            cmd.stdout(f);
        }
    }
    Ok(())
}

/// `tracer run ARGS` in the host namespace, waited for until every probe
/// printed its `probe_status` line.
pub fn start_tracer(
    env: &Env,
    rec: &mut Recorder,
    args: &[&str],
    out: Output<'_>,
    label: &str,
) -> Result<Running> {
    let stderr = env.dir.join(format!("{label}.stderr"));
    let mut cmd = Command::new(&env.tracer);
    cmd.arg("run").args(args).stdin(Stdio::null());
    stdout_for(&out, &mut cmd)?;
    cmd.stderr(File::create(&stderr)?);
    rec.record_cmd(&cmd, &out);
    let mut p = Proc::spawn("tracer", &mut cmd)?;
    let n = env.probes;
    match out {
        Output::Discard => {
            let stdout = p.stdout().context("tracer stdout is not piped")?;
            let watch = Watch::start(stdout, is_probe_status);
            let at = match watch.wait_matches(n, ATTACH_TIMEOUT) {
                Ok(at) => at,
                Err(e) => {
                    p.kill();
                    bail!("tracer did not report its {n} probes: {e}{}", tail(&stderr));
                }
            };
            let attached = watch
                .head()
                .iter()
                .filter(|l| is_probe_status(l) && l.contains("\"status\":\"attached\""))
                .count();
            Ok(Running {
                attach_time: at - p.started,
                proc: p,
                watch: Some(watch),
                stderr,
                attached,
            })
        }
        Output::File(path) => {
            let at =
                proc::wait_file_matches(path, is_probe_status, n, ATTACH_TIMEOUT, &mut p, &stderr)?;
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let attached = text
                .lines()
                .take(n)
                .filter(|l| is_probe_status(l) && l.contains("\"status\":\"attached\""))
                .count();
            Ok(Running {
                attach_time: at - p.started,
                proc: p,
                watch: None,
                stderr,
                attached,
            })
        }
    }
}

/// bpftrace running `script` (text output when discarded, `-f json -o FILE`
/// when written to a file), waited for until it says its probes are attached.
pub fn start_bpftrace(
    env: &Env,
    rec: &mut Recorder,
    script: &str,
    out: Output<'_>,
    label: &str,
) -> Result<Running> {
    let bpftrace = env.bpftrace.as_ref().context("bpftrace is not installed")?;
    let stderr = env.dir.join(format!("{label}.stderr"));
    let mut cmd = Command::new(bpftrace);
    cmd.stdin(Stdio::null());
    if let Output::File(path) = out {
        cmd.arg("-f").arg("json").arg("-o").arg(path);
        // bpftrace opens -o itself; keep its stdout quiet.
        cmd.stdout(Stdio::null());
    } else {
        stdout_for(&out, &mut cmd)?;
    }
    cmd.arg("-e").arg(script);
    cmd.stderr(File::create(&stderr)?);
    rec.record_cmd(&cmd, &out);
    let started = Instant::now();
    let mut p = Proc::spawn("bpftrace", &mut cmd)?;
    let (watch, at) = match out {
        Output::Discard => {
            let stdout = p.stdout().context("bpftrace stdout is not piped")?;
            let watch = Watch::start(stdout, is_bpftrace_attached);
            match watch.wait_matches(1, ATTACH_TIMEOUT) {
                Ok(at) => (Some(watch), at),
                Err(e) => {
                    p.kill();
                    bail!("bpftrace did not attach: {e}{}", tail(&stderr));
                }
            }
        }
        Output::File(path) => (
            None,
            proc::wait_file_matches(
                path,
                is_bpftrace_attached,
                1,
                ATTACH_TIMEOUT,
                &mut p,
                &stderr,
            )?,
        ),
    };
    // Give a failing attach (reported after "Attaching N probes...") a moment to surface.
    std::thread::sleep(Duration::from_millis(300));
    p.ensure_running(Some(&stderr))?;
    Ok(Running {
        attach_time: at - started,
        proc: p,
        watch,
        stderr,
        attached: 0,
    })
}
