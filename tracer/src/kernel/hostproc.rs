//! The host's `/proc`: where identity reads other processes
//! (`/proc/<pid>/ns/net`, `/proc/<pid>/cgroup`) and namespace handles.
//! `/proc` by default; `--host-proc PATH` (or `TRACER_HOST_PROC`) when
//! tracer runs in a container without the host's PID namespace (a Docker
//! Swarm service cannot have it) and the host's `/proc` is mounted at PATH.
//! tracer's own entries (`/proc/self`, `/proc/thread-self`) stay `/proc`.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Sets the host's `/proc` (once, at start-up; later calls are ignored).
pub fn set(path: PathBuf) {
    let _ = ROOT.set(path);
}

/// The host's `/proc`.
pub fn root() -> &'static Path {
    ROOT.get_or_init(|| PathBuf::from("/proc"))
}

/// `<host proc>/<pid>/ns/net`.
pub fn netns_of(pid: impl std::fmt::Display) -> PathBuf {
    root().join(format!("{pid}/ns/net"))
}

/// What a start-up line should say about the environment: mounts and
/// namespaces tracer needs but does not have (empty: all there).
pub fn missing(docker_socket: Option<&Path>) -> Vec<String> {
    let mut out = Vec::new();
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        out.push("/sys/kernel/btf (mount the host's /sys/kernel/btf: kernel types)".into());
    }
    if !Path::new("/sys/kernel/tracing/events").exists()
        && !Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        out.push("tracefs (mount the host's /sys/kernel/tracing: tracepoint formats)".into());
    }
    if let Some(sock) = docker_socket {
        if !sock.exists() {
            out.push(format!(
                "{} (mount the Docker socket: container names)",
                sock.display()
            ));
        }
    }
    if Path::new("/var/run/docker").exists() && !Path::new("/var/run/docker/netns").exists() {
        out.push("/var/run/docker/netns (mount it: Docker's namespace handles)".into());
    }
    let root = root();
    // lstat: the link itself (following it needs ptrace access to PID 1).
    if std::fs::symlink_metadata(root.join("1/ns/net")).is_err() {
        out.push(format!(
            "{}/1 (the host's /proc: mount it and pass --host-proc)",
            root.display()
        ));
    } else if root == Path::new("/proc") {
        // In a container of its own PID namespace, PID 1 is not the host's init.
        let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        let own_pidns = std::fs::read_link("/proc/self/ns/pid").ok();
        let init_pidns = std::fs::read_link("/proc/1/ns/pid").ok();
        if own_pidns.is_some() && own_pidns == init_pidns && comm.trim() == "tracer" {
            out.push(
                "the host's PID namespace (tracer is PID 1 of its own: mount the host's /proc and pass --host-proc)"
                    .into(),
            );
        }
    }
    out
}
