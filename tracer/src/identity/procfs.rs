//! `/proc`: every process's network namespace and cgroup, from which the
//! containers of any runtime and the namespaces they live in are known
//! without asking the runtime.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use super::cgroup::{parse_cgroup_file, CgroupContainer};

/// What one walk of `/proc` found, per network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcSnapshot {
    /// Namespace of PID 1 (else of tracer itself): the host's.
    pub host_netns: Option<u32>,
    pub netns: BTreeMap<u32, ProcNetns>,
    /// Processes whose namespace could not be read (exited, or no permission).
    pub unreadable: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcNetns {
    /// A path that opens the namespace (`/proc/<pid>/ns/net`).
    pub path: PathBuf,
    /// Containers with processes in it (id → runtime).
    pub containers: BTreeMap<String, Option<&'static str>>,
}

/// `net:[4026531840]` → 4026531840.
pub fn parse_ns_link(link: &str) -> Option<u32> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn netns_of(proc_root: &Path, pid: &str) -> Option<u32> {
    let link = fs::read_link(proc_root.join(pid).join("ns/net")).ok()?;
    parse_ns_link(link.to_str()?)
}

/// Walks `proc_root` (normally `/proc`). Processes that vanish meanwhile
/// are skipped. The cgroup file is read only for processes outside the
/// host's namespace: host-network containers have no namespace to name.
pub fn walk(proc_root: &Path) -> std::io::Result<ProcSnapshot> {
    // PID 1's namespace is the host's; where PID 1 cannot be inspected
    // (some sandboxes), tracer's own (it runs in the host's namespace).
    let mut snap = ProcSnapshot {
        host_netns: netns_of(proc_root, "1").or_else(|| netns_of(proc_root, "self")),
        ..ProcSnapshot::default()
    };
    for ent in fs::read_dir(proc_root)?.flatten() {
        let name = ent.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Some(ns) = netns_of(proc_root, pid) else {
            snap.unreadable += 1;
            continue;
        };
        let host = snap.host_netns == Some(ns);
        let e = snap.netns.entry(ns).or_insert_with(|| ProcNetns {
            path: proc_root.join(pid).join("ns/net"),
            containers: BTreeMap::new(),
        });
        if host {
            continue;
        }
        let Ok(cg) = fs::read_to_string(proc_root.join(pid).join("cgroup")) else {
            continue;
        };
        if let Some(CgroupContainer { id, runtime }) = parse_cgroup_file(&cg) {
            e.containers.entry(id).or_insert(runtime);
        }
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_links() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        assert_eq!(parse_ns_link("net:[x]"), None);
        assert_eq!(parse_ns_link("net:[4026531840"), None);
    }

    #[test]
    fn own_namespace_is_found() {
        let me = std::fs::read_link("/proc/self/ns/net").unwrap();
        let me = parse_ns_link(me.to_str().unwrap()).unwrap();
        let snap = walk(Path::new("/proc")).unwrap();
        assert!(snap.netns.contains_key(&me), "{snap:?}");
    }

    #[test]
    fn a_fake_proc_tree_with_a_container() {
        // A directory shaped like /proc: symlinks stand for the ns links.
        let tmp = crate::testutil::TempDir::new("procfs");
        let dir = tmp.path();
        let id = "ab".repeat(32);
        for (pid, ns, cg) in [
            ("1", 100u32, "0::/init.scope\n".to_string()),
            ("42", 200, format!("0::/system.slice/docker-{id}.scope\n")),
            ("43", 200, format!("0::/system.slice/docker-{id}.scope\n")),
            ("44", 300, "0::/user.slice\n".to_string()),
        ] {
            let p = dir.join(pid);
            fs::create_dir_all(p.join("ns")).unwrap();
            std::os::unix::fs::symlink(format!("net:[{ns}]"), p.join("ns/net")).unwrap();
            fs::write(p.join("cgroup"), cg).unwrap();
        }
        fs::create_dir_all(dir.join("self")).unwrap();
        let snap = walk(dir).unwrap();
        assert_eq!(snap.host_netns, Some(100));
        assert_eq!(snap.netns.len(), 3);
        assert_eq!(
            snap.netns[&200].containers.get(&id).copied(),
            Some(Some("docker"))
        );
        assert!(snap.netns[&300].containers.is_empty());
        assert!(snap.netns[&100].containers.is_empty());
    }
}
