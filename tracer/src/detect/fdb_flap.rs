//! `fdb_flap`: one MAC moving between ports of one bridge, again and again.
//!
//! The bridge learns a MAC on the port a frame from it last came in through.
//! When two ports both send frames from one MAC (a vxlan proxy answering ARP
//! for a local container, a duplicate MAC, a loop), the entry flips between
//! them and traffic to the MAC goes one way or the other. Counted per
//! (netns, bridge, MAC, VLAN). A `fdb_learn` on another port than the one the
//! MAC was last seen on (delete, then learn elsewhere) counts as a move too,
//! once the MAC has moved at least once.

use std::net::IpAddr;

use serde::Serialize;

use super::{
    alert_line,
    table::{Bounded, Episode, Interner, Stamped, Verdict},
    text, Cfg, Facts, Macs, Member, Sink, Symptom,
};
use crate::{
    event::{Action, ContainerRef, EcsEvent, Mac, Netns, Peer, SmolStr},
    kernel::clock::format_ts,
};

/// Most ports remembered per MAC.
const MAX_PORTS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    netns: u32,
    bridge: u32,
    mac: Mac,
    vlan: u16,
}

struct PortSeen {
    name: SmolStr,
    peer: Option<Peer>,
    /// Moves onto this port in the episode.
    arrivals: u64,
    last: i128,
}

struct State {
    ep: Episode,
    ports: Vec<PortSeen>,
    /// Index in `ports` of where the MAC is now.
    current: Option<usize>,
    owner: Option<ContainerRef>,
    netns: Option<Netns>,
    last: i128,
}

impl Stamped for State {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

pub(crate) struct FdbFlap {
    threshold: u32,
    window: i128,
    bridges: Interner<()>,
    table: Bounded<Key, State>,
}

#[derive(Serialize)]
struct PortOut<'a> {
    /// What is behind the port, in words.
    behind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    /// `container`, `vxlan`, `uplink`, `bridge`, `namespace`, `unknown`.
    kind: &'static str,
    /// Moves onto this port in the episode.
    moves_to: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<&'a str>,
    port: &'a str,
}

#[derive(Serialize)]
struct FlapAlert<'a> {
    bridge: &'a str,
    /// Moves in this flapping episode (since the threshold was crossed).
    count: u64,
    /// `vxlan_proxy_arp` or `duplicate_mac_or_loop`.
    diagnosis: &'static str,
    duration_s: f64,
    first_seen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    last_seen: String,
    mac: Mac,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a Netns>,
    /// Docker network of the bridge's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    ports: Vec<PortOut<'a>>,
    realert: bool,
    threshold: u32,
    #[serde(rename = "type")]
    type_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    /// The vxlan port among `ports`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    vxlan: Option<&'a str>,
    window_s: f64,
}

impl FdbFlap {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            threshold: c.flap_threshold,
            window: c.flap_window,
            bridges: Interner::new(c.max_keys),
            table: Bounded::new(c.max_keys),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.table.evicted
    }

    pub(crate) fn expired(&self) -> u64 {
        self.table.expired
    }

    pub(crate) fn expire(&mut self, now: i128) {
        let w = self.window;
        self.table.expire(|s| now - s.last <= w);
    }

    fn key(&self, ev: &EcsEvent, bridge: u32, mac: Mac) -> Key {
        Key {
            netns: ev.netns().unwrap_or(0),
            bridge,
            mac,
            vlan: ev.tracer.vlan.unwrap_or(0),
        }
    }

    /// `fdb_move`: `tracer.port` is the new port, `previous_port` the old.
    pub(crate) fn moved(&mut self, ev: &EcsEvent, t: i128, macs: &Macs, sink: &mut Sink) {
        let Some(mac) = ev.source.mac else { return };
        let bridge = self
            .bridges
            .intern(ev.tracer.bridge.as_deref().unwrap_or(""), || ());
        let key = self.key(ev, bridge, mac);
        let threshold = self.threshold;
        let st = self.table.entry(key, || State {
            ep: Episode::new(threshold),
            ports: Vec::new(),
            current: None,
            owner: None,
            netns: None,
            last: t,
        });
        let prev = ev
            .tracer
            .previous_port
            .as_deref()
            .map(|p| (p, ev.tracer.previous_port_peer.as_deref()));
        let verdict = record(st, ev, t, self.window, prev);
        self.speak(key, verdict, ev, t, macs, sink);
    }

    /// `fdb_learn`: only matters for a MAC already moving (state exists) that
    /// shows up on another port than where it was last.
    pub(crate) fn learned(&mut self, ev: &EcsEvent, t: i128, macs: &Macs, sink: &mut Sink) {
        let Some(mac) = ev.source.mac else { return };
        let Some(bridge) = self
            .bridges
            .lookup(ev.tracer.bridge.as_deref().unwrap_or(""))
        else {
            return;
        };
        let key = self.key(ev, bridge, mac);
        let window = self.window;
        let Some(st) = self.table.get_mut(&key) else {
            return;
        };
        let port = ev.tracer.port.as_deref().unwrap_or("");
        let cur = st.current.map(|i| st.ports[i].name.clone());
        match cur {
            Some(c) if c != port && !port.is_empty() => {
                let peer = st.current.and_then(|i| st.ports[i].peer.clone());
                let verdict = record(st, ev, t, window, Some((&c, peer.as_ref())));
                self.speak(key, verdict, ev, t, macs, sink);
            }
            _ => st.last = t,
        }
    }

    fn speak(
        &mut self,
        key: Key,
        verdict: Verdict,
        ev: &EcsEvent,
        t: i128,
        macs: &Macs,
        sink: &mut Sink,
    ) {
        match verdict {
            Verdict::Quiet => {}
            Verdict::Ongoing => {
                let n = self.table.get(&key).map(|s| s.ep.count).unwrap_or(0);
                sink.touch(Member::Mac(key.mac), Some(Action::FdbFlap), n);
            }
            Verdict::Crossed | Verdict::Again => {
                let info = macs.get(&key.mac);
                let ip = info.and_then(|m| m.ip);
                let known_owner = info.and_then(|m| m.owner.as_ref());
                let bridge = self.bridges.name(key.bridge).to_string();
                if let Some(st) = self.table.get_mut(&key) {
                    let (line, sym) = alert(
                        st,
                        key,
                        &bridge,
                        ip,
                        known_owner,
                        ev,
                        t,
                        self.threshold,
                        self.window,
                        verdict == Verdict::Again,
                    );
                    sink.alert(line, sym);
                }
            }
        }
    }
}

/// Records one move in the state and steps the episode.
fn record(
    st: &mut State,
    ev: &EcsEvent,
    t: i128,
    window: i128,
    prev: Option<(&str, Option<&Peer>)>,
) -> Verdict {
    // A new episode starts from the ports of this move only.
    if st.ep.count > 0 && t - st.ep.last > window {
        st.ports.clear();
        st.current = None;
    }
    if let Some((name, peer)) = prev {
        upsert(&mut st.ports, name, peer, t, false);
    }
    let port = ev.tracer.port.as_deref().unwrap_or("");
    st.current = Some(upsert(
        &mut st.ports,
        port,
        ev.tracer.port_peer.as_deref(),
        t,
        true,
    ));
    if let Some(c) = &ev.source.container {
        if st.owner.as_ref().is_none_or(|o| !o.same(c)) {
            st.owner = Some(c.clone());
        }
    }
    if st.netns.is_none() {
        st.netns = ev.tracer.netns.clone();
    }
    st.last = t;
    st.ep.step(t, window)
}

fn upsert(
    ports: &mut Vec<PortSeen>,
    name: &str,
    peer: Option<&Peer>,
    t: i128,
    arrival: bool,
) -> usize {
    let i = match ports.iter().position(|p| p.name == name) {
        Some(i) => i,
        None => {
            let fresh = PortSeen {
                name: SmolStr::new(name),
                peer: None,
                arrivals: 0,
                last: t,
            };
            if ports.len() < MAX_PORTS {
                ports.push(fresh);
                ports.len() - 1
            } else {
                // Full: reuse the port seen least recently.
                let i = ports
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, p)| p.last)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                ports[i] = fresh;
                i
            }
        }
    };
    let p = &mut ports[i];
    if let Some(peer) = peer {
        if p.peer.as_ref() != Some(peer) {
            p.peer = Some(peer.clone());
        }
    }
    if arrival {
        p.arrivals += 1;
    }
    p.last = t;
    i
}

#[allow(clippy::too_many_arguments)]
fn alert(
    st: &State,
    key: Key,
    bridge: &str,
    ip: Option<IpAddr>,
    known_owner: Option<&ContainerRef>,
    ev: &EcsEvent,
    t: i128,
    threshold: u32,
    window: i128,
    realert: bool,
) -> (EcsEvent, Symptom) {
    let ports: Vec<PortOut> = st
        .ports
        .iter()
        .map(|p| PortOut {
            port: &p.name,
            kind: text::peer_kind(&p.name, p.peer.as_ref()),
            behind: text::peer_label(&p.name, p.peer.as_ref()),
            container: text::container_name(p.peer.as_ref().and_then(|x| x.container.as_ref())),
            network: p.peer.as_ref().and_then(|x| x.network.as_deref()),
            moves_to: p.arrivals,
        })
        .collect();
    let vxlan = st
        .ports
        .iter()
        .find(|p| text::is_vxlan(&p.name, p.peer.as_ref()))
        .map(|p| p.name.as_str());
    let peer_containers: Vec<&ContainerRef> = st
        .ports
        .iter()
        .filter_map(|p| p.peer.as_ref().and_then(|x| x.container.as_ref()))
        .collect();
    // The owner: as the events say, else as others said, else the one
    // container behind a port.
    let owner: Option<&ContainerRef> = st.owner.as_ref().or(known_owner).or(match peer_containers
        .as_slice()
    {
        [only] => Some(*only),
        _ => None,
    });
    let owner_name = text::container_name(owner);
    let netns = st.netns.as_ref().or(ev.tracer.netns.as_ref());
    let where_ = text::ns_label(netns);
    let count = st.ep.count;
    let duration = st.ep.last - st.ep.first;
    let label = mac_label(&key.mac, owner_name.as_deref(), ip);
    let port_words: Vec<String> = ports
        .iter()
        .map(|p| format!("{} ({})", p.port, p.behind))
        .collect();
    let (diagnosis, why) = match vxlan {
        Some(vx) => (
            "vxlan_proxy_arp",
            format!(
                "{vx} answers ARP for a local container (a static ARP/FDB entry on the vxlan, the vxlan proxy-ARP outage)"
            ),
        ),
        None => (
            "duplicate_mac_or_loop",
            "two ports send frames from the same MAC (duplicate MAC or a bridging loop)".to_string(),
        ),
    };
    // On a VLAN-aware bridge each VLAN has its own FDB entry for a MAC
    // (the same MAC in two VLANs is no flap): the VLAN is part of what moved.
    let vlan = ev.tracer.vlan.filter(|v| *v != 0);
    let on_vlan = vlan.map(|v| format!(" VLAN {v}")).unwrap_or_default();
    let message = format!(
        "MAC {label} flapped {count}× in {} between {} on bridge {bridge}{on_vlan} in {where_}: {why}",
        text::dur(duration),
        text::join_and(&port_words),
    );
    let payload = FlapAlert {
        type_: "fdb_flap",
        mac: key.mac,
        ip,
        owner: owner_name.clone(),
        bridge,
        vlan,
        netns,
        network: netns.and_then(|n| n.network.as_deref()),
        count,
        threshold,
        window_s: text::secs(window),
        duration_s: text::secs(duration),
        first_seen: format_ts(st.ep.first),
        last_seen: format_ts(st.ep.last),
        ports,
        vxlan,
        diagnosis,
        realert,
    };
    let mut line = alert_line(t, Action::FdbFlap, message, &payload);
    line.container = ev.container.clone();
    line.source.mac = Some(key.mac);
    line.source.ip = ip;
    line.source.container = owner.cloned();
    line.tracer.netns = netns.cloned();
    line.tracer.bridge = ev.tracer.bridge.clone();
    line.tracer.port = ev.tracer.port.clone();
    line.tracer.previous_port = ev.tracer.previous_port.clone();
    line.tracer.port_peer = ev.tracer.port_peer.clone();
    line.tracer.previous_port_peer = ev.tracer.previous_port_peer.clone();
    line.tracer.vlan = ev.tracer.vlan;
    line.tracer.count = Some(count);

    let containers = super::distinct_containers(owner.into_iter().chain(peer_containers));
    let sym = Symptom {
        kind: Action::FdbFlap,
        count,
        containers,
        ips: ip.into_iter().collect(),
        macs: vec![key.mac],
        facts: Facts::Flap {
            mac: key.mac,
            ip,
            owner: owner_name,
            ports: st.ports.iter().map(|p| p.name.to_string()).collect(),
            vxlan: vxlan.map(str::to_string),
            bridge_ns: match vlan {
                Some(v) => format!("VLAN {v} in {where_}"),
                None => where_,
            },
            ns: text::NsRef::new(netns, None),
        },
    };
    (line, sym)
}

/// `02-42-0A-00-00-03 (api.1, 10.0.0.3)`.
fn mac_label(mac: &Mac, owner: Option<&str>, ip: Option<IpAddr>) -> String {
    match (owner, ip) {
        (Some(o), Some(ip)) => format!("{mac} ({o}, {ip})"),
        (Some(o), None) => format!("{mac} ({o})"),
        (None, Some(ip)) => format!("{mac} ({ip})"),
        (None, None) => mac.to_string(),
    }
}
