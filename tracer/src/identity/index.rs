//! The identity index: a pure data structure, changed only by
//! [`IdentityUpdate`]s and read by [`IdentityIndex::enrich`].
//!
//! Everything a look-up needs is a hash-map hit: namespace inode → entry
//! (names, Docker network, containers, interfaces by name), IP or MAC →
//! owners (a container directly, from the runtime API, or a namespace, from
//! its interfaces). The answer of each look-up is computed when an update
//! changes it ([`Cached`]), so the common case is one probe; only answers
//! that depend on the event's time (several candidates, or one in its grace
//! period) are resolved in full. `ContainerRef`s are built once per upsert,
//! so enrichment only clones them.
//!
//! Time: an exited container or a vanished namespace stays resolvable for
//! events up to `grace` after its removal (event time); it is pruned when an
//! update's timestamp passes that point. A look-up for an event at `ts`
//! prefers owners live at `ts` over ones in their grace period, so an IP
//! that Docker handed to a new container names the new one.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::Duration,
};

use serde::Serialize;
use smol_str::SmolStr;

use super::{
    names::{parse_netns_name, NetnsName},
    ContainerInfo, IdentityUpdate, InterfaceInfo, NetnsInfo, NetworkInfo, ServiceInfo, SourceState,
};
use crate::event::{
    Action, Compose, ContainerRef, EcsEvent, Endpoint, Image, Peer, ServiceRef, Swarm,
};

/// Hash maps of the index: foldhash (randomly seeded, much faster than
/// SipHash on these small keys). Iteration order never reaches the output.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Sizes of the index (for metrics and benchmarks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IndexStats {
    /// Containers known, including exited ones in their grace period.
    pub containers: usize,
    /// Of those, exited (kept for late events).
    pub containers_exited: usize,
    /// Network namespaces known.
    pub netns: usize,
    pub interfaces: usize,
    /// Distinct IP addresses with an owner.
    pub addresses: usize,
    /// Distinct MAC addresses with an owner.
    pub macs: usize,
    pub networks: usize,
    /// Sources currently degraded.
    pub degraded: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// Slot of a container (runtime API endpoint).
    Container(u32),
    /// Inode of the namespace the address is configured in.
    Netns(u32),
}

/// Owners of one address; almost always exactly one.
#[derive(Clone, Debug)]
enum Owners {
    One(Owner),
    Many(Vec<Owner>),
}

impl Owners {
    fn as_slice(&self) -> &[Owner] {
        match self {
            Self::One(o) => std::slice::from_ref(o),
            Self::Many(v) => v,
        }
    }
}

/// A look-up answer computed when the index changes, so that the common
/// case costs one hash probe. `exact` means it holds at any event time:
/// exactly one candidate (or none) and nothing involved was removed. When
/// not exact, look-ups resolve in full for the event's time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cached {
    slot: Option<u32>,
    exact: bool,
}

const INEXACT: Cached = Cached {
    slot: None,
    exact: false,
};

#[derive(Clone, Debug)]
struct AddrEntry {
    owners: Owners,
    cached: Cached,
}

fn add_owner<K: std::hash::Hash + Eq>(map: &mut Map<K, AddrEntry>, k: K, o: Owner) {
    match map.get_mut(&k) {
        None => {
            map.insert(
                k,
                AddrEntry {
                    owners: Owners::One(o),
                    cached: INEXACT,
                },
            );
        }
        Some(a) => match &mut a.owners {
            Owners::One(x) if *x == o => {}
            Owners::One(x) => {
                let x = *x;
                a.owners = Owners::Many(vec![x, o]);
            }
            Owners::Many(v) => {
                if !v.contains(&o) {
                    v.push(o);
                }
            }
        },
    }
}

fn remove_owner<K: std::hash::Hash + Eq>(map: &mut Map<K, AddrEntry>, k: &K, o: Owner) {
    let Some(a) = map.get_mut(k) else { return };
    match &mut a.owners {
        Owners::One(x) => {
            if *x == o {
                map.remove(k);
            }
        }
        Owners::Many(v) => {
            v.retain(|x| *x != o);
            match v.len() {
                0 => {
                    map.remove(k);
                }
                1 => {
                    let last = v[0];
                    a.owners = Owners::One(last);
                }
                _ => {}
            }
        }
    }
}

/// Addresses worth indexing: unicast, not loopback or unspecified (those
/// exist in every namespace and name nobody).
fn indexable_ip(ip: &IpAddr) -> bool {
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()))
}

fn indexable_mac(mac: &[u8; 6]) -> bool {
    // Zero, and group addresses (broadcast, multicast): nobody's.
    *mac != [0; 6] && mac[0] & 1 == 0
}

struct ContainerEntry {
    info: ContainerInfo,
    cref: ContainerRef,
    first_seen: i128,
    removed_at: Option<i128>,
}

/// What an interface is, for `tracer.port_peer.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IfKind {
    Veth,
    Vxlan,
    Bridge,
    Uplink,
    Other,
}

impl IfKind {
    /// `tracer.interface.kind` (not printed; for the detectors).
    fn word(self) -> &'static str {
        match self {
            IfKind::Veth => "veth",
            IfKind::Vxlan => "vxlan",
            IfKind::Bridge => "bridge",
            IfKind::Uplink => "uplink",
            IfKind::Other => "other",
        }
    }
}

fn if_kind(kind: Option<&str>) -> IfKind {
    match kind {
        Some("veth") => IfKind::Veth,
        Some("vxlan") | Some("geneve") => IfKind::Vxlan,
        Some("bridge") => IfKind::Bridge,
        // No kind: a physical NIC. Bonds and VLANs on top of them lead out too.
        None | Some("bond") | Some("team") | Some("vlan") => IfKind::Uplink,
        _ => IfKind::Other,
    }
}

/// IANA's VXLAN port (Docker's default data-path port).
const VXLAN_IANA_PORT: u16 = 4789;

struct Iface {
    kind: IfKind,
    peer_netns: Option<u32>,
    mtu: Option<u32>,
    vxlan_port: Option<u16>,
}

#[derive(Default)]
struct NetnsEntry {
    /// Seen by a namespace source (not only named by a container).
    known: bool,
    host: bool,
    /// `tracer.netns.name`.
    name: Option<std::sync::Arc<str>>,
    /// Network id prefix (overlay / lb names) or ingress, for resolution.
    network_key: Option<NetworkKey>,
    /// `tracer.netns.network`, resolved from `network_key`.
    network: Option<std::sync::Arc<str>>,
    /// Slots of containers in this namespace.
    containers: Vec<u32>,
    /// Which of them names the namespace (see [`Cached`]).
    primary: Cached,
    ifaces: Map<String, Iface>,
    ips: Vec<IpAddr>,
    macs: Vec<[u8; 6]>,
    removed_at: Option<i128>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NetworkKey {
    Prefix(String),
    Ingress,
}

/// Namespaces and addresses whose cached answers need recomputing.
#[derive(Default)]
struct Touched {
    netns: Vec<u32>,
    ips: Vec<IpAddr>,
    macs: Vec<[u8; 6]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Container(u32),
    Netns(u32),
}

/// In-memory identity index. See the module docs.
pub struct IdentityIndex {
    grace: i128,
    /// Latest update time seen (never goes back).
    now: i128,
    slots: Vec<Option<ContainerEntry>>,
    free: Vec<u32>,
    by_id: Map<String, u32>,
    netns: Map<u32, NetnsEntry>,
    networks: BTreeMap<String, NetworkInfo>,
    /// Bridge device (host namespace) → Docker network name.
    bridge_networks: Map<String, String>,
    ips: Map<IpAddr, AddrEntry>,
    macs: Map<[u8; 6], AddrEntry>,
    /// (due, sequence) → what to prune, with the removal time it was for.
    expiries: BTreeMap<(i128, u64), (Expiry, i128)>,
    seq: u64,
    status: BTreeMap<String, SourceState>,
    /// Swarm services by id.
    services: BTreeMap<String, ServiceInfo>,
    /// VIP → the service it belongs to (rebuilt when services or networks
    /// change; one shared handle per VIP, cloned into events).
    vips: Map<IpAddr, std::sync::Arc<ServiceRef>>,
}

impl Default for IdentityIndex {
    fn default() -> Self {
        Self::new(super::DEFAULT_GRACE)
    }
}

impl IdentityIndex {
    /// An empty index; `grace` is how long removed containers and
    /// namespaces stay resolvable (event time).
    pub fn new(grace: Duration) -> Self {
        Self {
            grace: grace.as_nanos() as i128,
            now: i128::MIN,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: Map::default(),
            netns: Map::default(),
            networks: BTreeMap::new(),
            bridge_networks: Map::default(),
            ips: Map::default(),
            macs: Map::default(),
            expiries: BTreeMap::new(),
            seq: 0,
            status: BTreeMap::new(),
            services: BTreeMap::new(),
            vips: Map::default(),
        }
    }

    pub fn stats(&self) -> IndexStats {
        let live = self.slots.iter().flatten();
        IndexStats {
            containers: self.by_id.len(),
            containers_exited: live.filter(|c| c.removed_at.is_some()).count(),
            netns: self.netns.len(),
            interfaces: self.netns.values().map(|n| n.ifaces.len()).sum(),
            addresses: self.ips.len(),
            macs: self.macs.len(),
            networks: self.networks.len(),
            degraded: self
                .status
                .iter()
                .filter(|(_, s)| **s == SourceState::Degraded)
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    /// Whether a namespace source has reported this namespace (the
    /// collector hints the sources about the others, see
    /// [`super::IdentityHints::hint_netns`]).
    pub fn knows_netns(&self, inode: u32) -> bool {
        self.netns.get(&inode).is_some_and(|n| n.known)
    }

    /// The MTU of interface `ifname` in namespace `netns`, if reported.
    pub fn mtu(&self, netns: u32, ifname: &str) -> Option<u32> {
        self.netns.get(&netns)?.ifaces.get(ifname)?.mtu
    }

    /// The interface with the smallest MTU in a namespace (`lo` aside):
    /// where a packet too big for the path leaves it.
    pub fn smallest_mtu(&self, netns: u32) -> Option<(String, u32)> {
        let e = self.netns.get(&netns)?;
        e.ifaces
            .iter()
            .filter(|(n, _)| n.as_str() != "lo")
            .filter_map(|(n, i)| i.mtu.map(|m| (m, n)))
            .min()
            .map(|(m, n)| (n.clone(), m))
    }

    /// Whether `ip` is an address of namespace `netns`.
    pub fn is_local(&self, netns: u32, ip: IpAddr) -> bool {
        self.netns.get(&netns).is_some_and(|e| e.ips.contains(&ip))
    }

    /// The UDP ports this host's vxlans send to, each with the overlays
    /// (Docker network, else namespace, else interface name) riding on it,
    /// sorted. A vxlan whose port was not reported counts as 4789.
    pub fn vxlan_ports(&self) -> Vec<(u16, Vec<String>)> {
        let mut by_port: std::collections::BTreeMap<u16, std::collections::BTreeSet<String>> =
            Default::default();
        for e in self.netns.values() {
            for (name, i) in &e.ifaces {
                if i.kind != IfKind::Vxlan {
                    continue;
                }
                let label = e
                    .network
                    .as_deref()
                    .or(e.name.as_deref())
                    .unwrap_or(name.as_str())
                    .to_string();
                by_port
                    .entry(i.vxlan_port.unwrap_or(VXLAN_IANA_PORT))
                    .or_default()
                    .insert(label);
            }
        }
        by_port
            .into_iter()
            .map(|(p, s)| (p, s.into_iter().collect()))
            .collect()
    }

    /// Applies one update. Deterministic: the same updates in the same order
    /// always give the same index.
    pub fn apply(&mut self, u: &IdentityUpdate) {
        let ts = u.ts();
        if ts > self.now {
            self.now = ts;
        }
        match u {
            IdentityUpdate::ContainerUpsert { ts, container } => {
                self.upsert_container(*ts, container)
            }
            IdentityUpdate::ContainerRemove { ts, id } => self.remove_container(*ts, id),
            IdentityUpdate::NetnsUpsert { netns, .. } => self.upsert_netns(netns),
            IdentityUpdate::NetnsInterfaces {
                inode, interfaces, ..
            } => self.set_interfaces(*inode, interfaces),
            IdentityUpdate::NetnsRemove { ts, inode } => self.remove_netns(*ts, *inode),
            IdentityUpdate::NetworkUpsert { network, .. } => {
                self.networks.insert(network.id.clone(), network.clone());
                self.networks_changed();
                self.services_changed();
            }
            IdentityUpdate::NetworkRemove { id, .. } => {
                self.networks.remove(id);
                self.networks_changed();
                self.services_changed();
            }
            IdentityUpdate::ServiceUpsert { service, .. } => {
                self.services.insert(service.id.clone(), service.clone());
                self.services_changed();
            }
            IdentityUpdate::ServiceRemove { id, .. } => {
                self.services.remove(id);
                self.services_changed();
            }
            IdentityUpdate::Status { source, state, .. } => {
                self.status.insert(source.clone(), *state);
            }
            IdentityUpdate::Synced { .. } | IdentityUpdate::Conflict { .. } => {}
        }
        self.prune();
    }

    // ---- containers ----

    fn upsert_container(&mut self, ts: i128, info: &ContainerInfo) {
        let mut before = Touched::default();
        let (slot, first_seen) = match self.by_id.get(&info.id) {
            Some(&s) => {
                let first = self.slots[s as usize].as_ref().map_or(ts, |c| {
                    if c.removed_at.is_some() {
                        ts
                    } else {
                        c.first_seen
                    }
                });
                before = self.touched_by(s);
                self.detach_container(s);
                (s, first)
            }
            None => {
                let s = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        self.slots.push(None);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.by_id.insert(info.id.clone(), s);
                (s, ts)
            }
        };
        let mut info = info.clone();
        if info
            .netns
            .is_some_and(|n| self.netns.get(&n).is_some_and(|e| e.host))
        {
            info.netns = None;
        }
        let cref = container_ref(&info);
        self.slots[slot as usize] = Some(ContainerEntry {
            info,
            cref,
            first_seen,
            removed_at: None,
        });
        self.attach_container(slot);
        self.refresh(before);
        let after = self.touched_by(slot);
        self.refresh(after);
    }

    /// The namespace and addresses whose answers depend on a container.
    fn touched_by(&self, slot: u32) -> Touched {
        let mut t = Touched::default();
        if let Some(c) = self.slots[slot as usize].as_ref() {
            t.netns.extend(c.info.netns);
            for ep in &c.info.endpoints {
                t.ips.extend(ep.ips.iter().copied());
                t.macs.extend(ep.mac);
            }
        }
        t
    }

    /// Recomputes the cached answers of namespaces (then of their
    /// addresses) and of addresses.
    fn refresh(&mut self, t: Touched) {
        for n in t.netns {
            self.refresh_netns(n);
        }
        for ip in t.ips {
            self.refresh_ip(&ip);
        }
        for mac in t.macs {
            self.refresh_mac(&mac);
        }
    }

    fn refresh_netns(&mut self, inode: u32) {
        let Some(e) = self.netns.get(&inode) else {
            return;
        };
        let primary = self.compute_primary(e);
        let (ips, macs) = (e.ips.clone(), e.macs.clone());
        if let Some(e) = self.netns.get_mut(&inode) {
            e.primary = primary;
        }
        for ip in &ips {
            self.refresh_ip(ip);
        }
        for mac in &macs {
            self.refresh_mac(mac);
        }
    }

    fn refresh_ip(&mut self, ip: &IpAddr) {
        let Some(a) = self.ips.get(ip) else { return };
        let c = self.compute_owner(&a.owners);
        if let Some(a) = self.ips.get_mut(ip) {
            a.cached = c;
        }
    }

    fn refresh_mac(&mut self, mac: &[u8; 6]) {
        let Some(a) = self.macs.get(mac) else { return };
        let c = self.compute_owner(&a.owners);
        if let Some(a) = self.macs.get_mut(mac) {
            a.cached = c;
        }
    }

    fn removed(&self, slot: u32) -> bool {
        self.slots[slot as usize]
            .as_ref()
            .is_none_or(|c| c.removed_at.is_some())
    }

    fn compute_primary(&self, e: &NetnsEntry) -> Cached {
        if e.removed_at.is_some() {
            return INEXACT;
        }
        if e.host {
            return Cached {
                slot: None,
                exact: true,
            };
        }
        match e.containers.as_slice() {
            [] => Cached {
                slot: None,
                exact: true,
            },
            [s] if !self.removed(*s) => Cached {
                slot: Some(*s),
                exact: true,
            },
            _ => INEXACT,
        }
    }

    fn compute_owner(&self, owners: &Owners) -> Cached {
        let mut cand: Option<u32> = None;
        for o in owners.as_slice() {
            let s = match *o {
                Owner::Container(s) => {
                    if self.removed(s) {
                        return INEXACT;
                    }
                    Some(s)
                }
                Owner::Netns(n) => match self.netns.get(&n) {
                    None => None,
                    Some(e) if !e.primary.exact => return INEXACT,
                    Some(e) => e.primary.slot,
                },
            };
            match (cand, s) {
                (_, None) => {}
                (None, s) => cand = s,
                (Some(c), Some(s)) if c == s => {}
                _ => return INEXACT,
            }
        }
        Cached {
            slot: cand,
            exact: true,
        }
    }

    fn attach_container(&mut self, slot: u32) {
        let Some(c) = self.slots[slot as usize].as_ref() else {
            return;
        };
        let o = Owner::Container(slot);
        for ep in &c.info.endpoints {
            for ip in ep.ips.iter().filter(|ip| indexable_ip(ip)) {
                add_owner(&mut self.ips, *ip, o);
            }
            if let Some(mac) = ep.mac.filter(indexable_mac) {
                add_owner(&mut self.macs, mac, o);
            }
        }
        if let Some(n) = c.info.netns {
            let e = self.netns.entry(n).or_default();
            if !e.containers.contains(&slot) {
                e.containers.push(slot);
            }
        }
    }

    fn detach_container(&mut self, slot: u32) {
        let Some(c) = self.slots[slot as usize].as_ref() else {
            return;
        };
        let o = Owner::Container(slot);
        for ep in &c.info.endpoints {
            for ip in &ep.ips {
                remove_owner(&mut self.ips, ip, o);
            }
            if let Some(mac) = ep.mac {
                remove_owner(&mut self.macs, &mac, o);
            }
        }
        if let Some(n) = c.info.netns {
            if let Some(e) = self.netns.get_mut(&n) {
                e.containers.retain(|s| *s != slot);
                // A placeholder only a container had named.
                if !e.known && e.containers.is_empty() && e.ifaces.is_empty() {
                    self.netns.remove(&n);
                }
            }
        }
    }

    fn remove_container(&mut self, ts: i128, id: &str) {
        let Some(&slot) = self.by_id.get(id) else {
            return;
        };
        let Some(c) = self.slots[slot as usize].as_mut() else {
            return;
        };
        if c.removed_at.is_some() {
            return;
        }
        c.removed_at = Some(ts);
        self.schedule(ts, Expiry::Container(slot));
        let t = self.touched_by(slot);
        self.refresh(t);
    }

    // ---- namespaces ----

    fn upsert_netns(&mut self, info: &NetnsInfo) {
        let e = self.netns.entry(info.inode).or_default();
        e.known = true;
        e.removed_at = None;
        e.host = info.host;
        e.name = info
            .names
            .first()
            .or(info.docker_names.first())
            .map(|n| std::sync::Arc::from(n.as_str()));
        e.network_key = info
            .docker_names
            .iter()
            .find_map(|n| match parse_netns_name(n) {
                NetnsName::Ingress => Some(NetworkKey::Ingress),
                other => other
                    .network_prefix()
                    .map(|p| NetworkKey::Prefix(p.to_string())),
            });
        e.network = e
            .network_key
            .as_ref()
            .and_then(|k| resolve_network(&self.networks, k))
            .map(std::sync::Arc::from);
        if info.host {
            // The host's namespace is nobody's container namespace.
            let slots = std::mem::take(&mut e.containers);
            for s in slots {
                if let Some(c) = self.slots[s as usize].as_mut() {
                    c.info.netns = None;
                }
            }
        }
        self.refresh_netns(info.inode);
    }

    fn set_interfaces(&mut self, inode: u32, ifaces: &[InterfaceInfo]) {
        let e = self.netns.entry(inode).or_default();
        let o = Owner::Netns(inode);
        let old_ips = std::mem::take(&mut e.ips);
        let old_macs = std::mem::take(&mut e.macs);
        for ip in &old_ips {
            remove_owner(&mut self.ips, ip, o);
        }
        for mac in &old_macs {
            remove_owner(&mut self.macs, mac, o);
        }
        e.ifaces.clear();
        for i in ifaces {
            e.ifaces.insert(
                i.name.clone(),
                Iface {
                    kind: if_kind(i.kind.as_deref()),
                    peer_netns: i.peer.as_ref().and_then(|p| p.netns),
                    mtu: i.mtu,
                    vxlan_port: i.vxlan_port,
                },
            );
            if i.name == "lo" {
                continue;
            }
            if let Some(mac) = i.mac.filter(indexable_mac) {
                if !e.macs.contains(&mac) {
                    e.macs.push(mac);
                    add_owner(&mut self.macs, mac, o);
                }
            }
            for ip in i.addrs.iter().filter(|ip| indexable_ip(ip)) {
                if !e.ips.contains(ip) {
                    e.ips.push(*ip);
                    add_owner(&mut self.ips, *ip, o);
                }
            }
        }
        self.refresh(Touched {
            netns: vec![inode],
            ips: old_ips,
            macs: old_macs,
        });
    }

    fn remove_netns(&mut self, ts: i128, inode: u32) {
        let Some(e) = self.netns.get_mut(&inode) else {
            return;
        };
        if e.removed_at.is_some() {
            return;
        }
        e.removed_at = Some(ts);
        self.schedule(ts, Expiry::Netns(inode));
        self.refresh_netns(inode);
    }

    fn networks_changed(&mut self) {
        self.bridge_networks = self
            .networks
            .values()
            .filter_map(|n| n.bridge.as_ref().map(|b| (b.clone(), n.name.clone())))
            .collect();
        for e in self.netns.values_mut() {
            if let Some(k) = &e.network_key {
                e.network = resolve_network(&self.networks, k).map(std::sync::Arc::from);
            }
        }
    }

    // ---- time ----

    fn schedule(&mut self, removed_at: i128, what: Expiry) {
        self.seq += 1;
        self.expiries.insert(
            (removed_at.saturating_add(self.grace), self.seq),
            (what, removed_at),
        );
    }

    fn prune(&mut self) {
        while let Some((&(due, seq), &(what, removed_at))) = self.expiries.iter().next() {
            if due >= self.now {
                break;
            }
            self.expiries.remove(&(due, seq));
            match what {
                Expiry::Container(slot) => {
                    let still = self.slots[slot as usize]
                        .as_ref()
                        .is_some_and(|c| c.removed_at == Some(removed_at));
                    if still {
                        let t = self.touched_by(slot);
                        self.detach_container(slot);
                        if let Some(c) = self.slots[slot as usize].take() {
                            self.by_id.remove(&c.info.id);
                        }
                        self.free.push(slot);
                        self.refresh(t);
                    }
                }
                Expiry::Netns(inode) => {
                    let still = self
                        .netns
                        .get(&inode)
                        .is_some_and(|e| e.removed_at == Some(removed_at));
                    if still {
                        self.set_interfaces(inode, &[]);
                        if let Some(e) = self.netns.remove(&inode) {
                            for s in e.containers {
                                if let Some(c) = self.slots[s as usize].as_mut() {
                                    c.info.netns = None;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn valid_until(&self, removed_at: Option<i128>) -> i128 {
        removed_at.map_or(i128::MAX, |r| r.saturating_add(self.grace))
    }

    /// Preference of a container as the owner of something at `ts`;
    /// `None` when it had expired by then.
    fn rank(&self, slot: u32, ts: i128) -> Option<(bool, bool, bool, i128)> {
        let c = self.slots[slot as usize].as_ref()?;
        if ts > self.valid_until(c.removed_at) {
            return None;
        }
        let live = c.removed_at.is_none_or(|r| ts < r);
        Some((live, !c.info.shares_netns, c.first_seen <= ts, c.first_seen))
    }

    fn best(&self, candidates: impl Iterator<Item = u32>, ts: i128) -> Option<u32> {
        let mut best: Option<(u32, (bool, bool, bool, i128))> = None;
        for s in candidates {
            let Some(r) = self.rank(s, ts) else { continue };
            if best
                .as_ref()
                .is_none_or(|(bs, br)| r > *br || (r == *br && s < *bs))
            {
                best = Some((s, r));
            }
        }
        best.map(|(s, _)| s)
    }

    fn netns_at(&self, inode: u32, ts: i128) -> Option<&NetnsEntry> {
        self.netns
            .get(&inode)
            .filter(|e| ts <= self.valid_until(e.removed_at))
    }

    fn netns_container(&self, e: &NetnsEntry, ts: i128) -> Option<u32> {
        if e.primary.exact {
            return e.primary.slot;
        }
        self.netns_container_full(e, ts)
    }

    fn netns_container_full(&self, e: &NetnsEntry, ts: i128) -> Option<u32> {
        if e.host {
            return None;
        }
        self.best(e.containers.iter().copied(), ts)
    }

    fn owner_of(&self, a: &AddrEntry, ts: i128) -> Option<u32> {
        if a.cached.exact {
            return a.cached.slot;
        }
        self.owner_full(a, ts)
    }

    fn owner_full(&self, a: &AddrEntry, ts: i128) -> Option<u32> {
        let slots = a.owners.as_slice().iter().filter_map(|o| match *o {
            Owner::Container(s) => Some(s),
            Owner::Netns(n) => self
                .netns_at(n, ts)
                .and_then(|e| self.netns_container(e, ts)),
        });
        self.best(slots, ts)
    }

    fn cref(&self, slot: u32) -> Option<&ContainerRef> {
        self.slots[slot as usize].as_ref().map(|c| &c.cref)
    }

    fn endpoint_owner(&self, ep: &Endpoint, ts: i128) -> Option<u32> {
        if ep.container.is_some() {
            return None;
        }
        let by_mac = ep
            .mac
            .filter(|m| indexable_mac(&m.0))
            .and_then(|m| self.macs.get(&m.0))
            .and_then(|o| self.owner_of(o, ts));
        by_mac.or_else(|| {
            ep.ip
                .and_then(|ip| self.ips.get(&ip))
                .and_then(|o| self.owner_of(o, ts))
        })
    }

    /// Docker network of the bridge an FDB event is about.
    fn bridge_network<'a>(&'a self, ns: &'a NetnsEntry, bridge: Option<&str>) -> Option<&'a str> {
        if ns.network.is_some() {
            return ns.network.as_deref();
        }
        if ns.host {
            return bridge
                .and_then(|b| self.bridge_networks.get(b))
                .map(String::as_str);
        }
        None
    }

    fn peer<'a>(
        &'a self,
        ns: Option<(u32, &'a NetnsEntry)>,
        port: &str,
        bridge_network: Option<&'a str>,
        ts: i128,
    ) -> PeerRef<'a> {
        let mut p = PeerRef::default();
        let Some((inode, ns)) = ns else { return p };
        let Some(i) = ns.ifaces.get(port) else {
            return p;
        };
        match i.kind {
            IfKind::Veth => match i.peer_netns {
                Some(pn) if pn == inode => {
                    p.kind = "namespace";
                    p.netns = ns.name.as_deref();
                }
                Some(pn) => {
                    let pe = self.netns_at(pn, ts);
                    match pe.and_then(|pe| self.netns_container(pe, ts)) {
                        Some(s) => {
                            p.kind = "container";
                            p.container = Some(s);
                            p.network = bridge_network;
                        }
                        None => {
                            p.kind = "namespace";
                            if let Some(pe) = pe {
                                p.netns = pe.name.as_deref();
                                p.network = pe.network.as_deref();
                            }
                        }
                    }
                }
                None => {}
            },
            IfKind::Vxlan => {
                p.kind = "vxlan";
                p.network = ns.network.as_deref();
            }
            IfKind::Bridge => {
                p.kind = "bridge";
                p.network = if ns.host {
                    self.bridge_networks.get(port).map(String::as_str)
                } else {
                    ns.network.as_deref()
                };
            }
            IfKind::Uplink => p.kind = "uplink",
            IfKind::Other => {}
        }
        p
    }

    /// Everything [`Self::enrich`] will fill, as references into the index:
    /// only look-ups, no allocation.
    fn resolve<'a>(&'a self, ev: &EcsEvent) -> Resolved<'a> {
        let ts = ev.timestamp;
        let mut r = Resolved::default();
        if let Some(n) = &ev.tracer.netns {
            if let Some(e) = self.netns_at(n.inode, ts) {
                r.ns = Some((n.inode, e));
                if ev.container.is_none() {
                    r.container = self.netns_container(e, ts);
                }
            }
        }
        r.source = self.endpoint_owner(&ev.source, ts);
        r.destination = self.endpoint_owner(&ev.destination, ts);
        if matches!(
            ev.event.action,
            Action::FdbLearn | Action::FdbMove | Action::FdbDelete
        ) {
            let bridge_network =
                r.ns.and_then(|(_, e)| self.bridge_network(e, ev.tracer.bridge.as_deref()));
            let port = |p: &Option<SmolStr>, set: bool| {
                p.as_deref()
                    .filter(|p| !p.is_empty() && !set)
                    .map(|p| self.peer(r.ns, p, bridge_network, ts))
            };
            r.port_peer = port(&ev.tracer.port, ev.tracer.port_peer.is_some());
            r.previous_port_peer = port(
                &ev.tracer.previous_port,
                ev.tracer.previous_port_peer.is_some(),
            );
        }
        r
    }

    fn peer_of(&self, p: &PeerRef<'_>, interface: &Option<SmolStr>) -> Box<Peer> {
        Box::new(Peer {
            kind: p.kind,
            interface: interface.clone().unwrap_or_default(),
            container: p.container.and_then(|s| self.cref(s)).cloned(),
            network: p.network.map(SmolStr::new),
            netns: p.netns.map(SmolStr::new),
        })
    }

    /// Fills the identity fields of one event from the index: the event's
    /// own `container` and `tracer.netns.name/network` (from its namespace),
    /// `source.container` / `destination.container` (owners of their MAC,
    /// else IP), and for FDB events `tracer.port_peer` /
    /// `tracer.previous_port_peer`. Fields already set are kept. Reads only
    /// the index: no I/O, no clock, never blocks; allocates only the
    /// strings it adds.
    pub fn enrich(&self, ev: &mut EcsEvent) {
        let r = self.resolve(ev);
        if let (Some(n), Some((_, e))) = (ev.tracer.netns.as_mut(), r.ns) {
            if n.name.is_none() {
                n.name.clone_from(&e.name);
            }
            if n.network.is_none() {
                n.network.clone_from(&e.network);
            }
            n.host |= e.host;
        }
        if let Some(s) = r.container {
            ev.container = self.cref(s).cloned();
        }
        if let Some(s) = r.source {
            ev.source.container = self.cref(s).cloned();
        }
        if let Some(s) = r.destination {
            ev.destination.container = self.cref(s).cloned();
        }
        if let Some(p) = &r.port_peer {
            ev.tracer.port_peer = Some(self.peer_of(p, &ev.tracer.port));
        }
        // An ARP reply's interface by its link kind: the ARP detector
        // tells a vxlan answering for a container by it; an OTHERHOST
        // drop's: the drop detector tells a promiscuous bridge's copies by
        // it (only those: drops are the hot path).
        let wants_kind = match ev.event.action {
            Action::ArpReply => true,
            // First byte first: most drops' reasons (NO_SOCKET…) are
            // told apart without a string compare.
            Action::SkbDrop => ev
                .tracer
                .reason
                .as_deref()
                .is_some_and(|r| r.as_bytes().first() == Some(&b'O') && r == "OTHERHOST"),
            _ => false,
        };
        if wants_kind {
            if let (Some(i), Some((_, e))) = (ev.tracer.interface.as_mut(), r.ns) {
                if i.kind.is_none() {
                    i.kind = e.ifaces.get(i.name.as_str()).map(|f| f.kind.word());
                }
            }
        }
        if !self.vips.is_empty() {
            if let Some(s) = ev.destination.ip.and_then(|ip| self.vips.get(&ip)) {
                ev.tracer.service = Some(s.clone());
            }
        }
        if let Some(p) = &r.previous_port_peer {
            ev.tracer.previous_port_peer = Some(self.peer_of(p, &ev.tracer.previous_port));
        }
    }

    /// Rebuilds VIP → service (services and networks are few).
    fn services_changed(&mut self) {
        self.vips.clear();
        for s in self.services.values() {
            for v in &s.vips {
                let network = self
                    .networks
                    .get(&v.network_id)
                    .map(|n| n.name.clone())
                    .or_else(|| Some(v.network_id.chars().take(12).collect()));
                self.vips.insert(
                    v.ip,
                    std::sync::Arc::new(ServiceRef {
                        endpoint_mode: s.endpoint_mode.clone(),
                        id: s.id.clone(),
                        name: s.name.clone(),
                        network,
                        vip: true,
                    }),
                );
            }
        }
    }

    /// The swarm service whose VIP `ip` is.
    pub fn service_of_vip(&self, ip: IpAddr) -> Option<&std::sync::Arc<ServiceRef>> {
        self.vips.get(&ip)
    }

    /// Look-up cost alone, for the benchmark: how many fields `enrich`
    /// would fill.
    #[doc(hidden)]
    pub fn resolve_count(&self, ev: &EcsEvent) -> usize {
        let r = self.resolve(ev);
        r.ns.is_some() as usize
            + r.container.is_some() as usize
            + r.source.is_some() as usize
            + r.destination.is_some() as usize
            + r.port_peer.is_some() as usize
            + r.previous_port_peer.is_some() as usize
    }
}

/// What a port leads to, as references into the index.
struct PeerRef<'a> {
    kind: &'static str,
    container: Option<u32>,
    network: Option<&'a str>,
    netns: Option<&'a str>,
}

impl Default for PeerRef<'_> {
    fn default() -> Self {
        Self {
            kind: "unknown",
            container: None,
            network: None,
            netns: None,
        }
    }
}

#[derive(Default)]
struct Resolved<'a> {
    ns: Option<(u32, &'a NetnsEntry)>,
    container: Option<u32>,
    source: Option<u32>,
    destination: Option<u32>,
    port_peer: Option<PeerRef<'a>>,
    previous_port_peer: Option<PeerRef<'a>>,
}

fn resolve_network(networks: &BTreeMap<String, NetworkInfo>, key: &NetworkKey) -> Option<String> {
    match key {
        NetworkKey::Ingress => networks
            .values()
            .find(|n| n.ingress)
            .map(|n| n.name.clone()),
        NetworkKey::Prefix(p) => networks
            .range(p.clone()..)
            .take_while(|(id, _)| id.starts_with(p.as_str()))
            .map(|(_, n)| n.name.clone())
            .next(),
    }
}

fn container_ref(c: &ContainerInfo) -> ContainerRef {
    let swarm = (c.swarm_service.is_some() || c.swarm_task.is_some()).then(|| Swarm {
        service: c.swarm_service.clone(),
        task: c.swarm_task.clone(),
    });
    let compose = (c.compose_project.is_some() || c.compose_service.is_some()).then(|| Compose {
        project: c.compose_project.clone(),
        service: c.compose_service.clone(),
    });
    ContainerRef::new(crate::event::ContainerData {
        id: c.id.clone(),
        name: c.name.clone(),
        image: c.image.clone().map(|name| Image { name }),
        runtime: c.runtime.clone(),
        swarm,
        compose,
    })
}

#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;

/// Restating the index: the updates that rebuild it, for the start of a
/// rotated capture part.
impl IdentityIndex {
    /// Source named by the [`IdentityUpdate::Synced`] that opens a
    /// [`Self::snapshot`].
    pub const SNAPSHOT_SOURCE: &'static str = "snapshot";

    /// Updates that rebuild this index: applied in order to a fresh
    /// [`IdentityIndex::new`] with the same grace, they give an index that
    /// enriches every event (at any event time) as this one does, and that
    /// further updates change as they would change this one. A rotated
    /// capture part restates them
    /// ([`crate::pipeline::Pipeline::state_snapshot`]) so that it replays on
    /// its own with names.
    ///
    /// In order:
    /// 1. the index's time (the latest update's), as a `Synced` from
    ///    [`Self::SNAPSHOT_SOURCE`]: grace periods run from there, and it
    ///    is the first, latest, timestamp a paced replay sees;
    /// 2. Docker networks, then namespaces (names, whether the host's) and
    ///    their interfaces (kind, veth peer namespace; the index keeps
    ///    addresses per namespace, so they are restated on its first
    ///    interfaces, and ifindexes as 0);
    /// 3. containers as they are now, each upserted at the time it was first
    ///    seen, in slot order, with every free slot as a placeholder
    ///    container (no namespace, no addresses) removed and pruned at once,
    ///    in the order the slots were freed: containers upserted later get
    ///    the slots they would get here, and equally ranked owners of an
    ///    address keep their order (the lower slot wins);
    /// 4. removals still in their grace period, at their time, in the order
    ///    they expire.
    ///
    /// Not restated: source status ([`IdentityUpdate::Status`]). It changes
    /// no enrichment, and applying one prints an `enrichment_status` line,
    /// which the live run printed when the status changed, not at a
    /// rotation. Nothing here prints a line when applied.
    ///
    /// Removal times already overtaken (a container removed, upserted again
    /// and so live) are not restated: they matter only if it is removed
    /// again at that same nanosecond.
    ///
    /// One pass over the index, plus sorting namespace inodes and interface
    /// names so that the same index always gives the same updates. Meant to
    /// be taken at a rotation, never per event.
    pub fn snapshot(&self) -> Vec<IdentityUpdate> {
        let now = self.now;
        let mut out = Vec::with_capacity(
            2 + self.networks.len() + 2 * self.netns.len() + self.slots.len() + self.free.len(),
        );
        if now > i128::MIN {
            out.push(IdentityUpdate::Synced {
                ts: now,
                source: Self::SNAPSHOT_SOURCE.to_string(),
            });
        }
        for n in self.networks.values() {
            out.push(IdentityUpdate::NetworkUpsert {
                ts: now,
                network: n.clone(),
            });
        }
        for s in self.services.values() {
            out.push(IdentityUpdate::ServiceUpsert {
                ts: now,
                service: s.clone(),
            });
        }
        let mut netns: Vec<(u32, &NetnsEntry)> = self.netns.iter().map(|(k, e)| (*k, e)).collect();
        netns.sort_unstable_by_key(|(k, _)| *k);
        for (inode, e) in netns {
            if e.known {
                out.push(IdentityUpdate::NetnsUpsert {
                    ts: now,
                    netns: Self::snapshot_netns(inode, e),
                });
            }
            // A namespace only interfaces (or nothing any more) made known;
            // those only a container names come back with the container.
            if !e.ifaces.is_empty() || (!e.known && e.containers.is_empty()) {
                out.push(IdentityUpdate::NetnsInterfaces {
                    ts: now,
                    inode,
                    interfaces: Self::snapshot_interfaces(e),
                });
            }
        }
        // Placeholders are removed before `now - grace`, so pruned as soon as removed.
        let freed = now.saturating_sub(self.grace).saturating_sub(1);
        for (slot, c) in self.slots.iter().enumerate() {
            out.push(match c {
                Some(c) => IdentityUpdate::ContainerUpsert {
                    ts: c.first_seen,
                    container: c.info.clone(),
                },
                None => IdentityUpdate::ContainerUpsert {
                    ts: freed,
                    container: ContainerInfo {
                        id: self.free_slot_id(slot as u32),
                        ..Default::default()
                    },
                },
            });
        }
        for &slot in &self.free {
            out.push(IdentityUpdate::ContainerRemove {
                ts: freed,
                id: self.free_slot_id(slot),
            });
        }
        let mut restated = std::collections::HashSet::new();
        for &(what, removed_at) in self.expiries.values() {
            match what {
                Expiry::Container(slot) => {
                    let Some(c) = self.slots.get(slot as usize).and_then(Option::as_ref) else {
                        continue;
                    };
                    if c.removed_at == Some(removed_at) && restated.insert((false, slot)) {
                        out.push(IdentityUpdate::ContainerRemove {
                            ts: removed_at,
                            id: c.info.id.clone(),
                        });
                    }
                }
                Expiry::Netns(inode) => {
                    let current = self
                        .netns
                        .get(&inode)
                        .is_some_and(|e| e.removed_at == Some(removed_at));
                    if current && restated.insert((true, inode)) {
                        out.push(IdentityUpdate::NetnsRemove {
                            ts: removed_at,
                            inode,
                        });
                    }
                }
            }
        }
        out
    }

    /// Id of the placeholder container that holds a free slot in a
    /// snapshot: never a real container's.
    fn free_slot_id(&self, slot: u32) -> String {
        let mut id = format!("tracer-snapshot:free-slot:{slot}");
        while self.by_id.contains_key(&id) {
            id.push('~');
        }
        id
    }

    /// A [`NetnsInfo`] that gives this entry its name, network and host flag.
    fn snapshot_netns(inode: u32, e: &NetnsEntry) -> NetnsInfo {
        let key_of = |name: &str| match parse_netns_name(name) {
            NetnsName::Ingress => Some(NetworkKey::Ingress),
            other => other
                .network_prefix()
                .map(|p| NetworkKey::Prefix(p.to_string())),
        };
        // A Docker name that says which network the namespace belongs to.
        let key_name = e.network_key.as_ref().map(|k| match k {
            NetworkKey::Ingress => "ingress_sbox".to_string(),
            NetworkKey::Prefix(p) => format!("1-{p}"),
        });
        let (names, docker_names) = match e.name.as_deref() {
            // The name is the Docker name that gave the network.
            Some(n) if e.network_key.is_some() && key_of(n) == e.network_key => {
                (Vec::new(), vec![n.to_string()])
            }
            Some(n) => (vec![n.to_string()], key_name.into_iter().collect()),
            // (A network comes from a Docker name, which names the namespace.)
            None => (Vec::new(), Vec::new()),
        };
        NetnsInfo {
            inode,
            names,
            docker_names,
            host: e.host,
        }
    }

    /// Interfaces that give this entry its interfaces and addresses.
    fn snapshot_interfaces(e: &NetnsEntry) -> Vec<InterfaceInfo> {
        let mut ifaces: Vec<_> = e.ifaces.iter().collect();
        ifaces.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out: Vec<InterfaceInfo> = ifaces
            .into_iter()
            .map(|(name, i)| InterfaceInfo {
                name: name.to_string(),
                kind: Self::snapshot_kind(i.kind).map(str::to_string),
                peer: i.peer_netns.map(|n| super::VethPeer {
                    ifindex: 0,
                    netns: Some(n),
                }),
                mtu: i.mtu,
                vxlan_port: i.vxlan_port,
                ..Default::default()
            })
            .collect();
        // Addresses are the namespace's: on its interfaces other than `lo`
        // (which has none in the index), one MAC each, every IP on the first.
        let carriers: Vec<usize> = (0..out.len()).filter(|&k| out[k].name != "lo").collect();
        if let Some(&first) = carriers.first() {
            out[first].addrs = e.ips.clone();
            for (k, mac) in e.macs.iter().enumerate() {
                match carriers.get(k) {
                    Some(&c) => out[c].mac = Some(*mac),
                    // More MACs than interfaces (names repeated in one
                    // update): the first interface again, with the MAC.
                    None => {
                        let mut again = out[first].clone();
                        again.addrs.clear();
                        again.mac = Some(*mac);
                        out.push(again);
                    }
                }
            }
        }
        out
    }

    /// An `IFLA_INFO_KIND` that [`if_kind`] maps back to `kind`.
    fn snapshot_kind(kind: IfKind) -> Option<&'static str> {
        match kind {
            IfKind::Veth => Some("veth"),
            IfKind::Vxlan => Some("vxlan"),
            IfKind::Bridge => Some("bridge"),
            IfKind::Uplink => None,
            IfKind::Other => Some("other"),
        }
    }
}
