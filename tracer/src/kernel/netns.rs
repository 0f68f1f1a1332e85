//! Network namespaces of the host: which exist, their names, and running a
//! closure inside one (a dedicated thread that `setns`es, so the caller's
//! threads never change namespace).

use std::{
    collections::BTreeMap,
    fs,
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path}: {source} (needs CAP_SYS_ADMIN)")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("worker thread for namespace {0} panicked")]
    Thread(PathBuf),
}

/// Directories whose entries are bind-mounted namespace handles, with the
/// label used for their names.
pub const NAMED_DIRS: &[(&str, &str)] = &[
    ("/var/run/netns", "ip"),
    ("/run/netns", "ip"),
    ("/var/run/docker/netns", "docker"),
    ("/run/docker/netns", "docker"),
];

/// One network namespace, identified by its inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsInfo {
    pub inode: u32,
    /// A path that opens it (a named handle or /proc/<pid>/ns/net).
    pub path: PathBuf,
    /// Names from /var/run/netns or /var/run/docker/netns.
    pub names: Vec<String>,
}

/// Inode of the namespace a path refers to.
pub fn inode_of(path: &Path) -> std::io::Result<u32> {
    Ok(fs::metadata(path)?.ino() as u32)
}

/// All network namespaces reachable through named handles and processes.
/// Unreadable entries (a process that just exited) are skipped.
pub fn list() -> Vec<NetnsInfo> {
    let mut by_inode: BTreeMap<u32, NetnsInfo> = BTreeMap::new();
    for (dir, _) in NAMED_DIRS {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for ent in rd.flatten() {
            let path = ent.path();
            let Ok(ino) = inode_of(&path) else { continue };
            // A plain file that is not a namespace handle has an inode on the
            // tmpfs, which never matches a namespace inode: only nsfs is kept.
            if !is_nsfs(&path) {
                continue;
            }
            let name = ent.file_name().to_string_lossy().into_owned();
            let e = by_inode.entry(ino).or_insert_with(|| NetnsInfo {
                inode: ino,
                path: path.clone(),
                names: Vec::new(),
            });
            if !e.names.contains(&name) {
                e.names.push(name);
            }
        }
    }
    if let Ok(rd) = fs::read_dir(super::hostproc::root()) {
        for ent in rd.flatten() {
            let fname = ent.file_name();
            let Some(pid) = fname
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let path = super::hostproc::netns_of(pid);
            let Ok(ino) = inode_of(&path) else { continue };
            by_inode.entry(ino).or_insert_with(|| NetnsInfo {
                inode: ino,
                path,
                names: Vec::new(),
            });
        }
    }
    by_inode.into_values().collect()
}

fn is_nsfs(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // f_type is i64 on x86_64 but narrower on some architectures.
    #[allow(clippy::useless_conversion)]
    match nix::sys::statfs::statfs(path) {
        Ok(s) => i64::from(s.filesystem_type().0) == NSFS_MAGIC,
        Err(_) => false,
    }
}

/// Runs `f` on a fresh thread that has entered the namespace at `path`.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = fs::File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    let p = path.to_owned();
    let handle = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> Result<T, NetnsError> {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|source| NetnsError::Enter { path: p, source })?;
            Ok(f())
        })
        .map_err(|source| NetnsError::Open {
            path: path.to_owned(),
            source,
        })?;
    handle
        .join()
        .map_err(|_| NetnsError::Thread(path.to_owned()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_listed() {
        let me = inode_of(Path::new("/proc/self/ns/net")).unwrap();
        assert!(list().iter().any(|n| n.inode == me));
    }

    #[test]
    fn missing_namespace_is_a_clear_error() {
        let err = run_in(Path::new("/nonexistent/ns"), || ()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
    }
}
