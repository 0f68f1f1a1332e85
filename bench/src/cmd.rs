//! Running external commands: every action is printed (`+ cmd args`) before
//! it runs; read-only checks are not printed.

use std::{
    env,
    ffi::OsStr,
    fs,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use anyhow::{Context as _, Result};

/// Something the benchmarks do or the user must know.
pub fn say(msg: impl AsRef<str>) {
    eprintln!("tracer-bench: {}", msg.as_ref());
}

pub fn warn(msg: impl AsRef<str>) {
    eprintln!("tracer-bench: warning: {}", msg.as_ref());
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

/// `VAR=value program args`, shell-quoted (PATH left out), as the report
/// lists it.
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

/// Runs an action (printed) with its output captured: the caller decides
/// what to show.
pub fn run_captured(cmd: &mut Command) -> Result<Output> {
    eprintln!("+ {}", display(cmd));
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", display(cmd)))
}

/// Runs a read-only check, capturing its output. `Err` when the program
/// cannot be started (usually: not installed).
pub fn probe(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null()).output()
}

/// True when the check ran and exited with 0.
pub fn probe_ok(cmd: &mut Command) -> bool {
    probe(cmd).is_ok_and(|out| out.status.success())
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}
