//! Docker Engine for the container tests: a running daemon, a local busybox
//! image (there is no registry) and a single-node swarm (overlay networks).
//!
//! `cargo xtask test` calls [`ensure_all`] only when the tests need Docker
//! (see `tasks::docker_needed`); `cargo xtask setup --docker` calls it always.

use std::{
    fs::{self, File},
    io::{Read as _, Seek as _, SeekFrom},
    os::unix::{fs::symlink, process::CommandExt as _},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::{
    apt,
    cmd::{self, note, say, which},
    setup,
    ws::Workspace,
};

/// The image the container tests run: Debian's static busybox, FROM scratch.
pub const BUSYBOX_IMAGE: &str = "tracer-test-busybox:latest";
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Daemon, image and swarm, in that order.
pub fn ensure_all(ws: &Workspace) -> Result<()> {
    ensure_docker(ws)?;
    ensure_busybox_image(ws)?;
    ensure_swarm()
}

fn docker_info_ok() -> bool {
    cmd::probe_ok(Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]))
}

/// A reachable Docker daemon: installs docker.io when `dockerd` is missing
/// and starts `dockerd` in the background (log: `<tools>/dockerd.log`).
pub fn ensure_docker(ws: &Workspace) -> Result<()> {
    if docker_info_ok() {
        note("docker daemon is running");
        return Ok(());
    }
    if which("dockerd").is_none() || which("docker").is_none() {
        apt::ensure(&[apt::DOCKER_IO])?;
    }
    let dockerd = which("dockerd")
        .ok_or_else(|| anyhow!("dockerd is not on PATH even after installing docker.io"))?;
    if !cmd::is_root() {
        bail!("the docker daemon is not running and starting it needs root: run as root");
    }

    fs::create_dir_all(&ws.tools)
        .with_context(|| format!("cannot create {}", ws.tools.display()))?;
    let log_path = ws.tools.join("dockerd.log");
    let open_log = || {
        File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))
    };
    let log_start = open_log()?.metadata().map(|m| m.len()).unwrap_or(0);
    // Detached: its own session (no terminal, no Ctrl-C from ours), stdin
    // null, so it outlives xtask. `setsid` execs in place (the child is not a
    // process group leader), so `child` below is dockerd itself.
    let mut start = match which("setsid") {
        Some(setsid) => {
            let mut c = Command::new(setsid);
            c.arg(&dockerd);
            c
        }
        None => {
            let mut c = Command::new(&dockerd);
            c.process_group(0);
            c
        }
    };
    start
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?);
    say(format!(
        "starting the docker daemon in the background (log: {})",
        log_path.display()
    ));
    eprintln!("+ {} >>{} 2>&1 &", cmd::display(&start), log_path.display());
    let mut child = start
        .spawn()
        .with_context(|| format!("cannot start {}", dockerd.display()))?;

    let deadline = Instant::now() + DOCKERD_START_TIMEOUT;
    loop {
        if docker_info_ok() {
            say(format!("docker daemon is up (pid {})", child.id()));
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            print_log_tail(&log_path, log_start);
            bail!(
                "dockerd exited ({status}) before answering `docker info`; see {}",
                log_path.display()
            );
        }
        if Instant::now() >= deadline {
            print_log_tail(&log_path, log_start);
            // Ours, by pid: do not leave a half-started daemon behind.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "dockerd did not answer `docker info` within {} s; see {}",
                DOCKERD_START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// The last lines this run appended to the daemon's log.
fn print_log_tail(path: &Path, from: u64) {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(from))?;
        f.read_to_string(&mut text)
    });
    if read.is_err() {
        return;
    }
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last lines of {} ---", path.display());
    for line in &lines[lines.len().saturating_sub(30)..] {
        eprintln!("{line}");
    }
    eprintln!("---");
}

/// Builds [`BUSYBOX_IMAGE`] (FROM scratch, `/bin/busybox` from busybox-static
/// plus one symlink per applet) unless it exists.
pub fn ensure_busybox_image(ws: &Workspace) -> Result<()> {
    if cmd::probe_ok(Command::new("docker").args(["image", "inspect", BUSYBOX_IMAGE])) {
        note(format!("image {BUSYBOX_IMAGE} present"));
        return Ok(());
    }
    apt::ensure(&[apt::BUSYBOX_STATIC])?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("busybox-static is installed but /bin/busybox is missing"))?;
    let needed = setup::elf_needed(busybox).unwrap_or_default();
    if !needed.is_empty() {
        bail!(
            "{} is dynamically linked (needs {needed:?}) and cannot run FROM scratch: \
             install busybox-static",
            busybox.display()
        );
    }

    let context = ws.tools.join("busybox-image");
    say(format!(
        "building image {BUSYBOX_IMAGE} (context: {})",
        context.display()
    ));
    let applets = prepare_busybox_context(busybox, &context)?;
    say(format!("busybox with {applets} applets"));
    let mut build = Command::new("docker");
    // The classic builder: works with Debian's 20.10 engine and without buildx.
    build
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--quiet", "-t", BUSYBOX_IMAGE])
        .arg(&context);
    cmd::run(&mut build)?;
    fs::remove_dir_all(&context).with_context(|| format!("cannot remove {}", context.display()))
}

/// A build context at `context`: `bin/busybox` (a copy of `busybox`), one
/// `bin/<applet> -> busybox` symlink per applet, and the Dockerfile.
/// Returns the number of applets.
fn prepare_busybox_context(busybox: &Path, context: &Path) -> Result<usize> {
    if context.exists() {
        fs::remove_dir_all(context)
            .with_context(|| format!("cannot remove {}", context.display()))?;
    }
    let bin = context.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    fs::copy(busybox, bin.join("busybox"))
        .with_context(|| format!("cannot copy {} into {}", busybox.display(), bin.display()))?;
    let list = cmd::probe_stdout(Command::new(bin.join("busybox")).arg("--list"))
        .ok_or_else(|| anyhow!("`{} --list` failed", busybox.display()))?;
    let mut applets = 0;
    for applet in list.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", bin.join(applet))
            .with_context(|| format!("cannot link applet {applet}"))?;
        applets += 1;
    }
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin\nCMD [\"/bin/sh\"]\n",
    )?;
    Ok(applets)
}

/// A single-node swarm (swarm-mode overlay networks), unless already active.
pub fn ensure_swarm() -> Result<()> {
    let state = cmd::probe_stdout(Command::new("docker").args([
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}}",
    ]))
    .ok_or_else(|| anyhow!("`docker info` failed: is the daemon running?"))?;
    if state == "active" {
        note("docker swarm is active");
        return Ok(());
    }
    say(format!(
        "initialising a single-node docker swarm (state was {state:?})"
    ));
    let out = cmd::run_captured(Command::new("docker").args(["swarm", "init"]))?;
    if out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("advertise-addr") || stderr.contains("multiple addresses") {
        say("several addresses to choose from: advertising 127.0.0.1");
        let out = cmd::run_captured(Command::new("docker").args([
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
        ]))?;
        if out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stdout));
            return Ok(());
        }
        bail!(
            "`docker swarm init --advertise-addr 127.0.0.1` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    bail!("`docker swarm init` failed: {}", stderr.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_context_has_applets_and_dockerfile() {
        let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
        else {
            eprintln!("skipped: no busybox here");
            return;
        };
        let dir = std::env::temp_dir().join(format!("xtask-busybox-{}", std::process::id()));
        let applets = prepare_busybox_context(busybox, &dir).unwrap();
        assert!(applets > 50, "{applets}");
        assert_eq!(
            fs::read_link(dir.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert!(fs::read_to_string(dir.join("Dockerfile"))
            .unwrap()
            .starts_with("FROM scratch"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
