//! The namespace scanner: one dedicated thread that walks `/proc` and the
//! named namespace directories, enters namespaces one after the other
//! (`setns`) and dumps their links and addresses over rtnetlink.
//!
//! A dedicated thread, not the blocking pool: it changes its own network
//! namespace, which must never leak into threads that run other work.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fs::{self, File},
    net::IpAddr,
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use super::{procfs, InterfaceInfo, VethPeer};
use crate::{kernel::netlink, kernel::netns::NAMED_DIRS};

/// What to dump in the next scan. `/proc` and the named directories are
/// always walked whole (that is what finds new and vanished namespaces);
/// links and addresses are read from namespaces never dumped before plus
/// the ones asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanRequest {
    pub dump_all: bool,
    /// Namespaces with a Docker name (overlay namespaces gain a veth per
    /// container that joins) and the host's (Docker bridges' ports).
    pub dump_docker: bool,
    pub dump: BTreeSet<u32>,
}

impl ScanRequest {
    pub fn full() -> Self {
        Self {
            dump_all: true,
            ..Self::default()
        }
    }

    pub fn merge(&mut self, o: ScanRequest) {
        self.dump_all |= o.dump_all;
        self.dump_docker |= o.dump_docker;
        self.dump.extend(o.dump);
    }
}

/// One namespace as a scan saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NsScan {
    pub names: Vec<String>,
    pub docker_names: Vec<String>,
    /// Containers with processes in it (id → runtime).
    pub containers: BTreeMap<String, Option<&'static str>>,
}

/// A link with its addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawLink {
    pub link: netlink::Link,
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Default)]
pub(crate) struct ScanResult {
    pub ts: i128,
    pub host: Option<u32>,
    /// Every namespace that exists (complete).
    pub namespaces: BTreeMap<u32, NsScan>,
    /// Links of the namespaces dumped in this scan.
    pub links: BTreeMap<u32, Vec<RawLink>>,
    /// Failures that are not races with exiting processes (permissions…).
    pub errors: Vec<String>,
}

struct Scanner {
    proc_root: PathBuf,
    dumped: HashSet<u32>,
}

/// The same check as `netns::list`: the handle is on nsfs, not a stale file.
#[allow(clippy::unnecessary_cast)] // the field's type differs between libcs
fn is_nsfs(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 as i64 == NSFS_MAGIC)
}

fn dump_links() -> Result<Vec<RawLink>, netlink::NetlinkError> {
    let links = netlink::links()?;
    let mut addrs: HashMap<u32, Vec<IpAddr>> = HashMap::new();
    for a in netlink::addresses()? {
        addrs.entry(a.index).or_default().push(a.ip);
    }
    Ok(links
        .into_iter()
        .map(|link| RawLink {
            addrs: addrs.remove(&link.index).unwrap_or_default(),
            link,
        })
        .collect())
}

impl Scanner {
    fn scan(&mut self, req: &ScanRequest) -> ScanResult {
        let mut res = ScanResult::default();
        let mut paths: BTreeMap<u32, PathBuf> = BTreeMap::new();
        // Named handles first: they outlive processes and carry the names.
        for (dir, label) in NAMED_DIRS {
            let Ok(rd) = fs::read_dir(dir) else { continue };
            let mut ents: Vec<_> = rd.flatten().collect();
            ents.sort_by_key(|e| e.file_name());
            for ent in ents {
                let path = ent.path();
                let Ok(md) = fs::metadata(&path) else {
                    continue;
                };
                if !is_nsfs(&path) {
                    continue;
                }
                let ino = md.ino() as u32;
                let name = ent.file_name().to_string_lossy().into_owned();
                let e = res.namespaces.entry(ino).or_default();
                let list = if *label == "docker" {
                    &mut e.docker_names
                } else {
                    &mut e.names
                };
                if !list.contains(&name) {
                    list.push(name);
                }
                paths.entry(ino).or_insert(path);
            }
        }
        match procfs::walk(&self.proc_root) {
            Ok(snap) => {
                res.host = snap.host_netns;
                for (ino, p) in snap.netns {
                    let e = res.namespaces.entry(ino).or_default();
                    e.containers = p.containers;
                    paths.entry(ino).or_insert(p.path);
                }
            }
            Err(e) => res
                .errors
                .push(format!("cannot read {}: {e}", self.proc_root.display())),
        }
        self.dumped.retain(|i| res.namespaces.contains_key(i));
        for (ino, ns) in &res.namespaces {
            let wanted = req.dump_all
                || !self.dumped.contains(ino)
                || req.dump.contains(ino)
                || (req.dump_docker && (!ns.docker_names.is_empty() || res.host == Some(*ino)));
            if !wanted {
                continue;
            }
            let Some(path) = paths.get(ino) else { continue };
            let file = match File::open(path) {
                Ok(f) => f,
                // The process exited, or the handle was unmounted, meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    res.errors
                        .push(format!("cannot open {}: {e}", path.display()));
                    continue;
                }
            };
            if let Err(e) = nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
                res.errors.push(format!(
                    "cannot enter network namespace {}: {e} (needs CAP_SYS_ADMIN)",
                    path.display()
                ));
                continue;
            }
            match dump_links() {
                Ok(l) => {
                    res.links.insert(*ino, l);
                    self.dumped.insert(*ino);
                }
                Err(e) => res
                    .errors
                    .push(format!("rtnetlink dump in {}: {e}", path.display())),
            }
        }
        res.ts = super::now_ns();
        res
    }
}

/// Starts the scanner thread. Requests sent to the returned sender are
/// coalesced while a scan runs; each scan's result goes to `results`. The
/// thread ends when either channel closes.
pub(crate) fn spawn_scanner(
    proc_root: PathBuf,
    results: tokio::sync::mpsc::Sender<ScanResult>,
) -> std::io::Result<std::sync::mpsc::Sender<ScanRequest>> {
    let (tx, rx) = std::sync::mpsc::channel::<ScanRequest>();
    std::thread::Builder::new()
        .name("identity-scan".into())
        .spawn(move || {
            let home = File::open("/proc/thread-self/ns/net").ok();
            let mut scanner = Scanner {
                proc_root,
                dumped: HashSet::new(),
            };
            while let Ok(mut req) = rx.recv() {
                while let Ok(more) = rx.try_recv() {
                    req.merge(more);
                }
                let res = scanner.scan(&req);
                if let Some(h) = &home {
                    let _ = nix::sched::setns(h.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
                }
                if results.blocking_send(res).is_err() {
                    break;
                }
            }
        })?;
    Ok(tx)
}

/// Interfaces of every namespace with each veth's peer namespace resolved.
///
/// IFLA_LINK_NETNSID is an id local to the namespace that reports it, so it
/// is resolved by matching: the veth with ifindex `a` and IFLA_LINK `i` in
/// namespace X is the peer of the veth with ifindex `i` and IFLA_LINK `a` in
/// some other namespace Y. Every veth of X with the same netnsid points into
/// the same namespace, so the candidates of all of them are intersected; an
/// id is resolved only when exactly one namespace remains.
pub(crate) fn interfaces(all: &BTreeMap<u32, Vec<RawLink>>) -> BTreeMap<u32, Vec<InterfaceInfo>> {
    let is_veth = |l: &netlink::Link| l.kind.as_deref() == Some("veth");
    let mut by_pair: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    for (ns, links) in all {
        for l in links.iter().map(|r| &r.link) {
            if let (true, Some(link), Some(_)) = (is_veth(l), l.link, l.link_netnsid) {
                by_pair.entry((l.index, link)).or_default().push(*ns);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (ns, links) in all {
        let mut per_id: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
        for l in links.iter().map(|r| &r.link) {
            let (true, Some(link), Some(id)) = (is_veth(l), l.link, l.link_netnsid) else {
                continue;
            };
            let cands: Vec<u32> = by_pair
                .get(&(link, l.index))
                .map(|v| v.iter().copied().filter(|c| c != ns).collect())
                .unwrap_or_default();
            per_id
                .entry(id)
                .and_modify(|prev| prev.retain(|c| cands.contains(c)))
                .or_insert(cands);
        }
        let resolved: HashMap<i32, u32> = per_id
            .into_iter()
            .filter(|(_, c)| c.len() == 1)
            .map(|(id, c)| (id, c[0]))
            .collect();
        let list = links
            .iter()
            .map(|r| {
                let l = &r.link;
                let peer = match (is_veth(l), l.link) {
                    (true, Some(ifindex)) => Some(VethPeer {
                        ifindex,
                        netns: match l.link_netnsid {
                            None => Some(*ns),
                            Some(id) => resolved.get(&id).copied(),
                        },
                    }),
                    _ => None,
                };
                let mut addrs = r.addrs.clone();
                addrs.sort();
                addrs.dedup();
                InterfaceInfo {
                    index: l.index,
                    name: l.name.clone(),
                    mac: l.mac,
                    kind: l.kind.clone(),
                    master: l.master,
                    peer,
                    addrs,
                    mtu: l.mtu,
                    vxlan_port: l.vxlan_port,
                }
            })
            .collect();
        out.insert(*ns, list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(index: u32, name: &str, link: u32, id: Option<i32>) -> RawLink {
        RawLink {
            link: netlink::Link {
                index,
                name: name.into(),
                mac: Some([2, 0, 0, 0, 0, index as u8]),
                link: Some(link),
                link_netnsid: id,
                kind: Some("veth".into()),
                ..Default::default()
            },
            addrs: Vec::new(),
        }
    }

    fn peer_ns(out: &BTreeMap<u32, Vec<InterfaceInfo>>, ns: u32, name: &str) -> Option<u32> {
        out[&ns]
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.peer.as_ref())
            .and_then(|p| p.netns)
    }

    #[test]
    fn veth_peers_are_matched_across_namespaces() {
        // Overlay namespace 10 with two bridge ports to containers 20 and 30.
        // Both containers' eth0 have ifindex 2 pointing back: only the
        // ifindex pairs tell them apart.
        let mut all = BTreeMap::new();
        all.insert(
            10,
            vec![
                veth(16, "veth0", 15, Some(1)),
                veth(18, "veth1", 17, Some(2)),
            ],
        );
        all.insert(20, vec![veth(15, "eth0", 16, Some(0))]);
        all.insert(30, vec![veth(17, "eth0", 18, Some(0))]);
        let out = interfaces(&all);
        assert_eq!(peer_ns(&out, 10, "veth0"), Some(20));
        assert_eq!(peer_ns(&out, 10, "veth1"), Some(30));
        assert_eq!(peer_ns(&out, 20, "eth0"), Some(10));
        assert_eq!(peer_ns(&out, 30, "eth0"), Some(10));
        let p = out[&10][0].peer.clone().unwrap();
        assert_eq!(p.ifindex, 15);
    }

    #[test]
    fn ambiguous_pairs_are_narrowed_by_the_netnsid_and_else_left_unresolved() {
        let mut all = BTreeMap::new();
        // X (1) has two veths into the same namespace (netnsid 5): one pair
        // (4↔9) exists in both Y (2) and Z (3), the other (6↔8) only in Y.
        all.insert(1, vec![veth(4, "a", 9, Some(5)), veth(6, "b", 8, Some(5))]);
        all.insert(2, vec![veth(9, "p", 4, Some(0)), veth(8, "q", 6, Some(0))]);
        all.insert(3, vec![veth(9, "r", 4, Some(0))]);
        let out = interfaces(&all);
        assert_eq!(peer_ns(&out, 1, "a"), Some(2));
        assert_eq!(peer_ns(&out, 1, "b"), Some(2));
        // Z's veth claims X, which is the only namespace with the pair (4, 9).
        assert_eq!(peer_ns(&out, 3, "r"), Some(1));

        // Truly ambiguous: unresolved rather than wrong.
        let mut all = BTreeMap::new();
        all.insert(1, vec![veth(4, "a", 9, Some(5))]);
        all.insert(2, vec![veth(9, "p", 4, Some(0))]);
        all.insert(3, vec![veth(9, "r", 4, Some(0))]);
        let out = interfaces(&all);
        assert_eq!(peer_ns(&out, 1, "a"), None);
        assert_eq!(out[&1][0].peer.as_ref().map(|p| p.ifindex), Some(9));
    }

    #[test]
    fn veth_pair_inside_one_namespace_and_non_veths() {
        let mut all = BTreeMap::new();
        let mut vx = veth(14, "vxlan0", 14, Some(0));
        vx.link.kind = Some("vxlan".into());
        all.insert(1, vec![veth(3, "v0", 4, None), veth(4, "v1", 3, None), vx]);
        let out = interfaces(&all);
        assert_eq!(peer_ns(&out, 1, "v0"), Some(1));
        assert!(out[&1][2].peer.is_none(), "vxlan's IFLA_LINK is not a peer");
    }

    #[test]
    fn requests_merge() {
        let mut a = ScanRequest::default();
        a.merge(ScanRequest {
            dump_docker: true,
            dump: [3].into(),
            ..Default::default()
        });
        a.merge(ScanRequest {
            dump: [4].into(),
            ..Default::default()
        });
        assert!(a.dump_docker && !a.dump_all);
        assert_eq!(a.dump, [3, 4].into());
        a.merge(ScanRequest::full());
        assert!(a.dump_all);
    }
}
