//! Running external commands: every action is printed (`+ cmd args`) before
//! it runs; probes (read-only checks) are printed only in verbose mode.
//!
//! Shared by xtask and the benchmarks (`bench/src/main.rs` includes this
//! file as its `cmd` module): messages start with the crate's name.

use std::{
    env,
    ffi::OsStr,
    fs,
    path::PathBuf,
    process::{Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context as _, Result};

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Verbose mode (`cargo xtask setup`): also print checks that found nothing to do.
pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Something xtask (or a benchmark) does or the user must know: always printed.
pub fn say(msg: impl AsRef<str>) {
    eprintln!("{}: {}", env!("CARGO_PKG_NAME"), msg.as_ref());
}

/// A check that passed: printed in verbose mode only.
pub fn note(msg: impl AsRef<str>) {
    if verbose() {
        say(msg);
    }
}

pub fn warn(msg: impl AsRef<str>) {
    eprintln!("{}: warning: {}", env!("CARGO_PKG_NAME"), msg.as_ref());
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+@,%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `VAR=value program args`, shell-quoted. PATH is left out (xtask only
/// prepends its own tool directory to it, announced once).
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if key == "PATH" {
            continue;
        }
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn print(cmd: &Command) {
    eprintln!("+ {}", display(cmd));
}

/// Runs an action with inherited stdio; fails unless it exits with 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = run_status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs an action with inherited stdio and returns its exit status
/// (an error only when it cannot be started).
pub fn run_status(cmd: &mut Command) -> Result<ExitStatus> {
    print(cmd);
    cmd.status()
        .with_context(|| format!("cannot start `{}`", display(cmd)))
}

/// Runs an action (printed) with its output captured: the caller decides
/// what to show, e.g. when it reacts to a specific error message.
pub fn run_captured(cmd: &mut Command) -> Result<Output> {
    print(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", display(cmd)))
}

/// Runs a read-only check, capturing its output. `Err` when the program
/// cannot be started (usually: not installed).
pub fn probe(cmd: &mut Command) -> std::io::Result<Output> {
    if verbose() {
        print(cmd);
    }
    cmd.stdin(Stdio::null()).output()
}

/// True when the check ran and exited with 0.
pub fn probe_ok(cmd: &mut Command) -> bool {
    probe(cmd).is_ok_and(|out| out.status.success())
}

/// Trimmed stdout of a check that succeeded.
pub fn probe_stdout(cmd: &mut Command) -> Option<String> {
    let out = probe(cmd).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Effective uid 0, read from /proc/self/status (no libc needed).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
