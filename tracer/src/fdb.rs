//! Where each MAC sits on each bridge, so an FDB update can be told apart as
//! a first learn or a move, and a move can name the port the MAC left.
//!
//! The kernel tracepoint fires after the entry already points at the new
//! port, so the previous port has to be remembered here. At start the table
//! is seeded from every bridge's FDB over netlink (in every namespace), so the
//! first move after start is recognised.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::{kernel::netlink, kernel::netns};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    netns: u32,
    bridge: u32,
    mac: [u8; 6],
    vlan: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Port {
    index: u32,
    name: SmolStr,
}

/// One FDB entry found at start-up (recorded in captures too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedEntry {
    pub netns: u32,
    pub bridge: u32,
    pub port: u32,
    pub port_name: String,
    pub mac: [u8; 6],
    pub vlan: u16,
}

/// Bounded map (netns, bridge, MAC, VLAN) → port. When full, the entry
/// seen least recently (learnt, moved or refreshed) is evicted: the order
/// depends only on the inputs, so a live run and its replay evict the same
/// entries and print the same lines.
pub struct FdbTable {
    /// Each entry with the sequence number of its last update.
    map: HashMap<Key, (Port, u64)>,
    /// Sequence number → key, oldest first.
    order: BTreeMap<u64, Key>,
    seq: u64,
    capacity: usize,
    /// Entries dropped because the table was full.
    pub evicted: u64,
}

impl Default for FdbTable {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

/// Entries the pipeline's table holds: far more than the MACs of any host's
/// bridges, so only a flood of random source MACs fills it.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

impl FdbTable {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries of a snapshot ([`Self::entries`], oldest first), seen now in
    /// that order.
    pub fn seed(&mut self, entries: &[SeedEntry]) {
        for e in entries {
            self.insert(
                Key {
                    netns: e.netns,
                    bridge: e.bridge,
                    mac: e.mac,
                    vlan: e.vlan,
                },
                Port {
                    index: e.port,
                    name: SmolStr::new(&e.port_name),
                },
            );
        }
    }

    fn insert(&mut self, k: Key, p: Port) -> Option<Port> {
        self.seq += 1;
        let seq = self.seq;
        if let Some((old, old_seq)) = self.map.insert(k, (p, seq)) {
            self.order.remove(&old_seq);
            self.order.insert(seq, k);
            return Some(old);
        }
        self.order.insert(seq, k);
        if self.map.len() > self.capacity {
            // Full: forget the least recently seen entry (its next update
            // reads as a learn).
            if let Some((_, victim)) = self.order.pop_first() {
                self.map.remove(&victim);
                self.evicted += 1;
            }
        }
        None
    }

    /// Records that `mac` is now on `port`; returns the previous port's name
    /// when the MAC moved from another port of the same bridge.
    pub fn update(
        &mut self,
        netns: u32,
        bridge: u32,
        mac: [u8; 6],
        vlan: u16,
        port: u32,
        port_name: &str,
    ) -> Option<SmolStr> {
        let k = Key {
            netns,
            bridge,
            mac,
            vlan,
        };
        let prev = self.insert(
            k,
            Port {
                index: port,
                name: SmolStr::new(port_name),
            },
        )?;
        (prev.index != port).then_some(prev.name)
    }

    /// Current entries, least recently seen first: seeding an empty table
    /// with them (a rotated part replayed on its own) restores the same
    /// eviction order.
    pub fn entries(&self) -> Vec<SeedEntry> {
        self.order
            .values()
            .filter_map(|k| {
                let (p, _) = self.map.get(k)?;
                Some(SeedEntry {
                    netns: k.netns,
                    bridge: k.bridge,
                    port: p.index,
                    port_name: p.name.to_string(),
                    mac: k.mac,
                    vlan: k.vlan,
                })
            })
            .collect()
    }

    pub fn delete(&mut self, netns: u32, bridge: u32, mac: [u8; 6], vlan: u16) {
        if let Some((_, seq)) = self.map.remove(&Key {
            netns,
            bridge,
            mac,
            vlan,
        }) {
            self.order.remove(&seq);
        }
    }
}

/// Reads the FDB of every bridge in every namespace. Namespaces that cannot
/// be read are reported in the second list, not fatal.
pub fn collect_seed() -> (Vec<SeedEntry>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for ns in netns::list() {
        let inode = ns.inode;
        let res = netns::run_in(
            &ns.path,
            move || -> Result<Vec<SeedEntry>, netlink::NetlinkError> {
                let links = netlink::links()?;
                if !links.iter().any(|l| l.kind.as_deref() == Some("bridge")) {
                    return Ok(Vec::new());
                }
                let names: HashMap<u32, String> =
                    links.into_iter().map(|l| (l.index, l.name)).collect();
                Ok(netlink::fdb()?
                    .into_iter()
                    .map(|e| SeedEntry {
                        netns: inode,
                        bridge: e.bridge,
                        port: e.port,
                        port_name: names.get(&e.port).cloned().unwrap_or_default(),
                        mac: e.mac,
                        vlan: e.vlan,
                    })
                    .collect())
            },
        );
        match res {
            Ok(Ok(mut v)) => out.append(&mut v),
            Ok(Err(e)) => errors.push(format!("netns {inode} ({}): {e}", ns.path.display())),
            Err(e) => errors.push(format!("netns {inode}: {e}")),
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; 6] = [2, 0x42, 10, 0, 0, 3];

    #[test]
    fn learn_then_move_then_back() {
        let mut t = FdbTable::default();
        assert_eq!(t.update(1, 10, M, 0, 5, "veth1"), None);
        // Same port again (flags refresh): not a move.
        assert_eq!(t.update(1, 10, M, 0, 5, "veth1"), None);
        assert_eq!(t.update(1, 10, M, 0, 6, "vxlan0").as_deref(), Some("veth1"));
        assert_eq!(t.update(1, 10, M, 0, 5, "veth1").as_deref(), Some("vxlan0"));
    }

    #[test]
    fn keys_separate_namespaces_bridges_and_vlans() {
        let mut t = FdbTable::default();
        t.update(1, 10, M, 0, 5, "a");
        assert_eq!(t.update(2, 10, M, 0, 6, "b"), None, "other netns");
        assert_eq!(t.update(1, 11, M, 0, 6, "b"), None, "other bridge");
        assert_eq!(t.update(1, 10, M, 7, 6, "b"), None, "other vlan");
    }

    #[test]
    fn delete_makes_next_update_a_learn() {
        let mut t = FdbTable::default();
        t.update(1, 10, M, 0, 5, "a");
        t.delete(1, 10, M, 0);
        assert_eq!(t.update(1, 10, M, 0, 6, "b"), None);
    }

    #[test]
    fn seed_makes_first_update_a_move() {
        let mut t = FdbTable::default();
        t.seed(&[SeedEntry {
            netns: 1,
            bridge: 10,
            port: 5,
            port_name: "veth7b2".into(),
            mac: M,
            vlan: 0,
        }]);
        assert_eq!(
            t.update(1, 10, M, 0, 6, "vxlan0").as_deref(),
            Some("veth7b2")
        );
    }

    #[test]
    fn capacity_is_bounded_and_evictions_counted() {
        let mut t = FdbTable::with_capacity(2);
        for i in 0..5u8 {
            t.update(1, 10, [0, 0, 0, 0, 0, i], 0, 5, "a");
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.evicted, 3);
    }

    #[test]
    fn eviction_takes_the_least_recently_seen_entry_every_time() {
        let mac = |i: u8| [0, 0, 0, 0, 0, i];
        // Two tables fed the same inputs evict the same entries (no
        // dependence on hash order), and the oldest-seen goes first.
        let run = || {
            let mut t = FdbTable::with_capacity(3);
            t.update(1, 10, mac(1), 0, 5, "a");
            t.update(1, 10, mac(2), 0, 5, "a");
            t.update(1, 10, mac(3), 0, 5, "a");
            // 1 is refreshed: 2 is now the least recently seen.
            t.update(1, 10, mac(1), 0, 5, "a");
            t.update(1, 10, mac(4), 0, 5, "a");
            t
        };
        let t = run();
        assert_eq!(t.evicted, 1);
        let left: Vec<u8> = t.entries().iter().map(|e| e.mac[5]).collect();
        assert_eq!(left, vec![3, 1, 4], "oldest first, 2 evicted");
        assert_eq!(run().entries(), t.entries());
        let mut t = t;
        // 2 comes back as a learn (it was forgotten); 1 still moves.
        assert_eq!(t.update(1, 10, mac(2), 0, 6, "b"), None);
        assert_eq!(t.update(1, 10, mac(1), 0, 6, "b").as_deref(), Some("a"));
        // A table seeded from a snapshot evicts in the same order.
        let mut seeded = FdbTable::with_capacity(3);
        seeded.seed(&t.entries());
        t.update(1, 10, mac(9), 0, 5, "a");
        seeded.update(1, 10, mac(9), 0, 5, "a");
        assert_eq!(seeded.entries(), t.entries());
        // A deleted entry leaves no stale place in the order.
        t.delete(1, 10, mac(9), 0);
        assert_eq!(t.entries().len(), 2);
        t.update(1, 10, mac(7), 0, 5, "a");
        t.update(1, 10, mac(8), 0, 5, "a");
        assert_eq!(t.len(), 3);
    }
}
