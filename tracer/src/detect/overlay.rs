//! Overlay faults read from drops: multicast an overlay cannot carry
//! (`overlay_multicast_dropped`), the overlay's own traffic between hosts
//! blocked on this host (`overlay_underlay_blocked`), and packets too big
//! for their path (`mtu_blackhole`).
//!
//! Each fault is keyed (rule, namespace, addresses, port) and alerts once
//! when it starts; later drops of the same key keep its incident open with
//! the current count. A key quiet for the incident window has recovered:
//! it is forgotten, and the next drop alerts again. Event time only, so a
//! replay prints the same lines. Facts the event does not carry (interface
//! MTUs, this host's addresses, vxlan data-path ports) come from
//! [`NetFacts`], the identity index.

use std::net::IpAddr;

use serde::Serialize;

use super::{
    alert_line,
    table::{Bounded, Stamped},
    text, Cfg, Facts, NetFacts, Sink, Symptom, NS_PER_S,
};
use crate::{
    event::{Action, ContainerRef, EcsEvent, Netns},
    kernel::clock::format_ts,
};

/// IANA's VXLAN port, Docker's default data-path port.
pub(crate) const VXLAN_PORT: u16 = 4789;
/// Swarm's gossip (memberlist), TCP and UDP.
pub(crate) const GOSSIP_PORT: u16 = 7946;
/// Swarm's manager (raft and API) port.
pub(crate) const MANAGER_PORT: u16 = 2377;
/// VXLAN's encapsulation overhead on IPv4 (outer IP + UDP + VXLAN + inner
/// Ethernet): what an overlay's MTU must stay under its underlay's.
pub(crate) const VXLAN_OVERHEAD: u32 = 50;

/// The firewall openings an overlay between hosts needs (one sentence).
pub(crate) const OVERLAY_PORTS: &str = "udp/4789 (VXLAN data path, or the swarm's --data-path-port), tcp+udp/7946 (gossip), tcp/2377 (to managers) and IP protocol 50 (ESP, encrypted overlays)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Rule {
    Multicast,
    Underlay,
    Mtu,
}

/// What one fault is: which rule, where, between whom, which port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    rule: Rule,
    netns: u32,
    /// Multicast: the sender; underlay: the peer host; MTU: the source.
    a: Option<IpAddr>,
    /// Multicast: the group; MTU: the destination.
    b: Option<IpAddr>,
    port: u16,
    /// Underlay: which of the overlay's protocols (see [`Channel`]).
    channel: u8,
}

struct Entry {
    first: i128,
    last: i128,
    count: u64,
    member: super::Member,
    action: Action,
}

impl Stamped for Entry {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

pub(crate) struct Overlay {
    window: i128,
    table: Bounded<Key, Entry>,
    /// This host's vxlan ports and overlays, asked of [`NetFacts`] at most
    /// once per second of event time (a UDP flood must not walk every
    /// namespace per packet); deterministic, as replay feeds the same
    /// identity at the same event times.
    ports: Vec<(u16, Vec<String>)>,
    ports_until: i128,
    /// `mtu_blackhole` from segment sizes, when no drop says it.
    segments: super::mtu::Segments,
}

/// Which of the overlay's own protocols a packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Vxlan = 1,
    GossipTcp = 2,
    GossipUdp = 3,
    Manager = 4,
    Esp = 5,
}

impl Channel {
    fn words(self, port: u16) -> String {
        match self {
            Channel::Vxlan => format!("VXLAN data path udp/{port}"),
            Channel::GossipTcp => format!("gossip tcp/{port}"),
            Channel::GossipUdp => format!("gossip udp/{port}"),
            Channel::Manager => format!("swarm manager tcp/{port}"),
            Channel::Esp => "ESP (IP protocol 50, encrypted overlay)".to_string(),
        }
    }

    fn proto(self) -> &'static str {
        match self {
            Channel::Vxlan | Channel::GossipUdp => "udp",
            Channel::GossipTcp | Channel::Manager => "tcp",
            Channel::Esp => "esp",
        }
    }
}

#[derive(Serialize)]
struct MulticastOut<'a> {
    count: u64,
    first_seen: String,
    group: IpAddr,
    hint: &'a str,
    last_seen: String,
    location: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    reason: &'a str,
    sender: Sender<'a>,
    #[serde(rename = "type")]
    type_: &'static str,
}

#[derive(Serialize)]
struct Sender<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a Netns>,
}

#[derive(Serialize)]
struct UnderlayOut<'a> {
    count: u64,
    direction: &'static str,
    first_seen: String,
    hint: &'a str,
    last_seen: String,
    location: &'a str,
    netns: Option<&'a Netns>,
    open_ports: &'static str,
    overlays: &'a [String],
    peer: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    protocol: &'static str,
    reason: &'a str,
    #[serde(rename = "type")]
    type_: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vxlan_ports: Vec<u16>,
}

#[derive(Serialize)]
struct MtuOut<'a> {
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<IpAddr>,
    first_seen: String,
    hint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface_mtu: Option<u32>,
    last_seen: String,
    location: &'a str,
    netns: Option<&'a Netns>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_interface: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_mtu: Option<u32>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recommended_mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<IpAddr>,
    #[serde(rename = "type")]
    type_: &'static str,
    /// The packets were VXLAN-encapsulated (the overlay's own frames).
    vxlan: bool,
}

/// A drop the overlay cannot carry: multicast at the vxlan's transmit.
fn is_overlay_multicast(reason: &str, location: &str, ev: &EcsEvent) -> bool {
    let at_vxlan = location.starts_with("vxlan_");
    let dropped = match reason {
        "NO_TX_TARGET" | "VXLAN_NO_REMOTE" => at_vxlan,
        // Older kernels: a plain kfree_skb in vxlan_xmit.
        "NOT_SPECIFIED" => location.starts_with("vxlan_xmit"),
        _ => false,
    };
    dropped
        && ev.network.transport.as_deref() == Some("udp")
        && ev.destination.ip.is_some_and(|ip| ip.is_multicast())
}

/// Drop reasons that say a packet was too big for its path.
fn is_too_big(reason: &str, location: &str) -> bool {
    matches!(
        reason,
        "PKT_TOO_BIG" | "FRAG_REASM_TIMEOUT" | "FRAG_TOO_FAR" | "DUP_FRAG"
    ) || (reason == "NOT_SPECIFIED"
        && (location.starts_with("ip_fragment")
            || location.starts_with("ip_do_fragment")
            || location.starts_with("ip6_fragment")))
}

/// Drop reasons that block the underlay: a firewall, nothing listening, an
/// IPsec policy.
fn blocks_underlay(reason: &str) -> bool {
    matches!(reason, "NETFILTER_DROP" | "NO_SOCKET") || reason.starts_with("XFRM_")
}

impl Overlay {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            window: c.incident_window,
            table: Bounded::new(c.max_keys),
            ports: Vec::new(),
            ports_until: i128::MIN,
            segments: super::mtu::Segments::new(c),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len() + self.segments.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.table.evicted + self.segments.evicted()
    }

    pub(crate) fn expired(&self) -> u64 {
        self.table.expired + self.segments.expired()
    }

    /// A TCP retransmit: its segment sizes (an MTU blackhole no drop shows).
    pub(crate) fn retransmit(
        &mut self,
        ev: &EcsEvent,
        t: i128,
        facts: &dyn NetFacts,
        sink: &mut Sink,
    ) {
        self.segments.retransmit(ev, t, facts, sink);
    }

    /// The vxlan ports, refreshed from `facts` once per second of event time.
    fn vxlan_ports(&mut self, t: i128, facts: &dyn NetFacts) -> &[(u16, Vec<String>)] {
        if t >= self.ports_until {
            self.ports = facts.vxlan_ports();
            self.ports_until = t + NS_PER_S;
        }
        &self.ports
    }

    /// Recovered faults (quiet for a window) are forgotten.
    pub(crate) fn expire(&mut self, now: i128) {
        let w = self.window;
        self.table.expire(|e| now - e.last <= w);
        self.segments.expire(now);
    }

    /// One drop. Cheap for drops that are none of these (a few string
    /// compares).
    pub(crate) fn drop(&mut self, ev: &EcsEvent, t: i128, facts: &dyn NetFacts, sink: &mut Sink) {
        let Some(reason) = ev.tracer.reason.as_deref() else {
            return;
        };
        let location = ev.tracer.location.as_deref().unwrap_or("?");
        if is_overlay_multicast(reason, location, ev) {
            self.multicast(ev, reason, location, t, sink);
        } else if is_too_big(reason, location) {
            self.segments.too_big(ev, t);
            self.mtu(ev, reason, location, t, facts, sink);
        } else if blocks_underlay(reason) && ev.container.is_none() {
            self.underlay(ev, reason, location, t, facts, sink);
        }
    }

    /// Counts one drop of `key`; `Some(entry)` when it starts a fault
    /// (first drop, or first after the fault recovered) and must alert.
    fn count(
        &mut self,
        key: Key,
        t: i128,
        action: Action,
        member: super::Member,
        sink: &mut Sink,
    ) -> Option<(i128, u64)> {
        let w = self.window;
        let e = self.table.entry(key, || Entry {
            first: t,
            last: t,
            count: 0,
            member: member.clone(),
            action,
        });
        if e.count > 0 && t - e.last > w {
            // Recovered, then broke again: a new fault.
            e.first = t;
            e.count = 0;
        }
        e.count += 1;
        e.last = t;
        if e.count == 1 {
            Some((e.first, e.count))
        } else {
            sink.touch(e.member.clone(), Some(e.action), e.count);
            None
        }
    }

    fn multicast(&mut self, ev: &EcsEvent, reason: &str, location: &str, t: i128, sink: &mut Sink) {
        let Some(group) = ev.destination.ip else {
            return;
        };
        let port = ev.destination.port;
        let sender_c = ev.source.container.as_ref().or(ev.container.as_ref());
        let src_ip = ev.source.ip;
        let key = Key {
            rule: Rule::Multicast,
            netns: ev.netns().unwrap_or(0),
            a: src_ip,
            b: Some(group),
            port: port.unwrap_or(0),
            channel: 0,
        };
        let member = match (sender_c, src_ip) {
            (Some(c), _) => super::Member::Container(c.id.clone()),
            (None, Some(ip)) => super::Member::Ip(ip),
            (None, None) => super::Member::Ip(group),
        };
        let Some((first, count)) =
            self.count(key, t, Action::OverlayMulticastDropped, member, sink)
        else {
            return;
        };
        let netns = ev.tracer.netns.as_ref();
        let network = netns.and_then(|n| n.network.as_deref());
        let overlay = match network {
            Some(n) => format!("overlay {n}"),
            None => text::ns_label(netns),
        };
        let sender = match (sender_c, src_ip) {
            (Some(c), Some(ip)) => format!("{} ({ip})", c.display_name()),
            (Some(c), None) => c.display_name(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => "a container".to_string(),
        };
        let dest = match port {
            Some(p) => format!("{group}:{p}"),
            None => group.to_string(),
        };
        let hint = "use unicast/TCP member discovery instead of multicast (e.g. Hazelcast's tcp-ip join listing the members or the service name, JGroups TCPPING, a DNS-based discovery), or attach these containers to a multicast-capable network driver (macvlan/ipvlan on the hosts' LAN, or a bridge network when they share one host)";
        let message = format!(
            "{sender} sends multicast to {dest} on {overlay}, and the overlay drops it ({reason} at {location}): overlay networks do not carry multicast between hosts, so multicast discovery finds no members"
        );
        let payload = MulticastOut {
            type_: "overlay_multicast_dropped",
            count,
            first_seen: format_ts(first),
            last_seen: format_ts(t),
            group,
            port,
            network,
            reason,
            location,
            sender: Sender {
                container: text::container_name(sender_c),
                ip: src_ip,
                port: ev.source.port,
                netns: None,
            },
            hint,
        };
        let mut line = drop_alert_line(
            t,
            Action::OverlayMulticastDropped,
            message,
            &payload,
            ev,
            count,
        );
        line.container = sender_c.cloned();
        let sym = Symptom {
            kind: Action::OverlayMulticastDropped,
            count,
            containers: sender_c.cloned().into_iter().collect(),
            ips: src_ip.into_iter().collect(),
            macs: Vec::new(),
            facts: Facts::Multicast {
                sender,
                group: dest,
                overlay,
            },
        };
        sink.alert(line, sym);
    }

    fn underlay(
        &mut self,
        ev: &EcsEvent,
        reason: &str,
        location: &str,
        t: i128,
        facts: &dyn NetFacts,
        sink: &mut Sink,
    ) {
        let (Some(src), Some(dst)) = (ev.source.ip, ev.destination.ip) else {
            return;
        };
        let netns_inode = ev.netns().unwrap_or(0);
        let transport = ev.network.transport.as_deref().unwrap_or("");
        let (sport, dport) = (
            ev.source.port.unwrap_or(0),
            ev.destination.port.unwrap_or(0),
        );
        let is_vxlan_port = |p: u16, ports: &[(u16, Vec<String>)]| {
            p == VXLAN_PORT || ports.iter().any(|(vp, _)| *vp == p)
        };
        let udp_vxlan = transport == "udp" && is_vxlan_port(dport, self.vxlan_ports(t, facts));
        // The well-known port is the destination's, except for replies
        // (gossip and manager answer from theirs).
        let (channel, port) = match transport {
            "udp" if udp_vxlan => (Channel::Vxlan, dport),
            "udp" if dport == GOSSIP_PORT || sport == GOSSIP_PORT => {
                (Channel::GossipUdp, GOSSIP_PORT)
            }
            "tcp" if dport == GOSSIP_PORT || sport == GOSSIP_PORT => {
                (Channel::GossipTcp, GOSSIP_PORT)
            }
            "tcp" if dport == MANAGER_PORT || sport == MANAGER_PORT => {
                (Channel::Manager, MANAGER_PORT)
            }
            "50" => (Channel::Esp, 0),
            _ => return,
        };
        // Which end is the other host: the one that is not this namespace's.
        let (peer, direction) =
            if facts.is_local(netns_inode, src) && !facts.is_local(netns_inode, dst) {
                (dst, "outgoing")
            } else {
                (src, "incoming")
            };
        let key = Key {
            rule: Rule::Underlay,
            netns: netns_inode,
            a: Some(peer),
            b: None,
            port,
            channel: channel as u8,
        };
        let Some((first, count)) = self.count(
            key,
            t,
            Action::OverlayUnderlayBlocked,
            super::Member::Ip(peer),
            sink,
        ) else {
            return;
        };
        let vxlan_ports = self.vxlan_ports(t, facts).to_vec();
        let netns = ev.tracer.netns.as_ref();
        let place = text::ns_label(netns).replacen("overlay ", "overlay namespace ", 1);
        // The overlays that ride on what was dropped: the vxlans on this
        // port for the data path; every overlay for gossip, manager, ESP.
        let mut overlays: Vec<String> = Vec::new();
        for (p, nets) in &vxlan_ports {
            if channel != Channel::Vxlan || *p == port {
                for n in nets {
                    if !overlays.contains(n) {
                        overlays.push(n.clone());
                    }
                }
            }
        }
        overlays.sort();
        let rides = if overlays.is_empty() {
            "the overlays between these hosts".to_string()
        } else {
            format!(
                "overlay{} {}",
                if overlays.len() == 1 { "" } else { "s" },
                text::join_and(&overlays)
            )
        };
        let what = channel.words(port);
        let from_to = if direction == "incoming" {
            format!("from peer host {peer}")
        } else {
            format!("to peer host {peer}")
        };
        let local_ports: Vec<u16> = vxlan_ports.iter().map(|(p, _)| *p).collect();
        let cause = if reason == "NO_SOCKET" && channel == Channel::Vxlan {
            let ours: Vec<String> = local_ports.iter().map(|p| format!("udp/{p}")).collect();
            if ours.is_empty() || local_ports.contains(&port) {
                format!("nothing listens on udp/{port} here")
            } else {
                format!(
                    "nothing listens on udp/{port} here: this host's overlays use {} — the hosts disagree on the data-path port",
                    text::join_and(&ours)
                )
            }
        } else if reason.starts_with("XFRM_") {
            "an IPsec (xfrm) policy or state rejected it: the encrypted overlay's keys or policies differ between the hosts".to_string()
        } else {
            "a firewall rule dropped it".to_string()
        };
        let nsref = text::NsRef::new(netns, None);
        let hint = match reason {
            "NO_SOCKET" => format!(
                "use one data-path port on every host (docker swarm init --data-path-port, default 4789) and open {OVERLAY_PORTS} between the hosts"
            ),
            r if r.starts_with("XFRM_") => format!(
                "compare {} and {} on both hosts (recreate the encrypted overlay or restart the node's swarm agent to re-key); open {OVERLAY_PORTS} between the hosts",
                nsref.cmd("ip xfrm state"),
                nsref.cmd("ip xfrm policy")
            ),
            _ if channel == Channel::Esp => format!(
                "open {OVERLAY_PORTS} between the hosts; here: allow IP protocol 50 from {peer} ({}; e.g. iptables -I INPUT -s {peer} -p esp -j ACCEPT)",
                nsref.cmd("nft list ruleset")
            ),
            _ => format!(
                "open {OVERLAY_PORTS} between the hosts; here: allow {}/{port} from {peer} ({}; e.g. iptables -I INPUT -s {peer} -p {} --dport {port} -j ACCEPT)",
                channel.proto(),
                nsref.cmd("nft list ruleset"),
                channel.proto()
            ),
        };
        let message = format!(
            "overlay traffic {from_to} ({what}) is dropped on this host in {place} ({reason} at {location}): {cause}; {rides} cannot reach {peer} until {OVERLAY_PORTS} are open between the hosts"
        );
        let payload = UnderlayOut {
            type_: "overlay_underlay_blocked",
            count,
            direction,
            first_seen: format_ts(first),
            last_seen: format_ts(t),
            hint: &hint,
            location,
            netns,
            open_ports: OVERLAY_PORTS,
            overlays: &overlays,
            peer,
            port: (port != 0).then_some(port),
            protocol: channel.proto(),
            reason,
            vxlan_ports: local_ports,
        };
        let line = drop_alert_line(
            t,
            Action::OverlayUnderlayBlocked,
            message,
            &payload,
            ev,
            count,
        );
        let sym = Symptom {
            kind: Action::OverlayUnderlayBlocked,
            count,
            containers: Vec::new(),
            ips: vec![peer],
            macs: Vec::new(),
            facts: Facts::Underlay {
                peer,
                what,
                place,
                rides,
                hint,
            },
        };
        sink.alert(line, sym);
    }

    fn mtu(
        &mut self,
        ev: &EcsEvent,
        reason: &str,
        location: &str,
        t: i128,
        facts: &dyn NetFacts,
        sink: &mut Sink,
    ) {
        let netns_inode = ev.netns().unwrap_or(0);
        let key = Key {
            rule: Rule::Mtu,
            netns: netns_inode,
            a: ev.source.ip,
            b: ev.destination.ip,
            port: 0,
            channel: 0,
        };
        let container: Option<&ContainerRef> =
            ev.source.container.as_ref().or(ev.container.as_ref());
        let member = match (container, ev.source.ip, ev.destination.ip) {
            (Some(c), _, _) => super::Member::Container(c.id.clone()),
            (None, Some(ip), _) | (None, None, Some(ip)) => super::Member::Ip(ip),
            (None, None, None) => super::Member::Ip(IpAddr::from([0, 0, 0, 0])),
        };
        let Some((first, count)) = self.count(key, t, Action::MtuBlackhole, member, sink) else {
            return;
        };
        let netns = ev.tracer.netns.as_ref();
        let iface = ev.tracer.interface.as_ref().map(|i| i.name.as_str());
        let if_mtu = iface.and_then(|i| facts.mtu(netns_inode, i));
        let path = facts.smallest_mtu(netns_inode);
        let vxlan = ev.network.transport.as_deref() == Some("udp")
            && ev.destination.port.is_some_and(|p| {
                p == VXLAN_PORT || self.vxlan_ports(t, facts).iter().any(|(vp, _)| *vp == p)
            });
        let path_mtu = path.as_ref().map(|(_, m)| *m);
        // Room for VXLAN's headers when the overlay's frames are what dies
        // here (the underlay path is that small); else the path's MTU.
        let recommended = path_mtu.map(|m| {
            if vxlan {
                m.saturating_sub(VXLAN_OVERHEAD)
            } else {
                m
            }
        });
        let mut place = text::ns_label(netns);
        if let Some(i) = iface {
            place.push_str(&format!(", arriving on {i}"));
            if let Some(m) = if_mtu {
                place.push_str(&format!(" (MTU {m})"));
            }
        }
        let flow = match (ev.source.ip, ev.destination.ip) {
            (Some(s), Some(d)) => format!("{s} → {d}"),
            _ => "packets".to_string(),
        };
        let what = if reason == "PKT_TOO_BIG" || location.contains("fragment") {
            "too big for the next link and not allowed to be fragmented"
        } else {
            "fragments that never reassembled"
        };
        let smallest = match &path {
            Some((n, m)) => format!("; the smallest MTU there is {n}'s {m}"),
            None => String::new(),
        };
        let hint = match recommended {
            Some(m) => format!(
                "set the network's MTU to {m} or less so containers send packets that fit (docker network create --opt com.docker.network.driver.mtu={m} …; for an overlay, {VXLAN_OVERHEAD} bytes under the underlay's MTU), or let ICMP \"fragmentation needed\" (type 3 code 4; ICMPv6 packet too big) through every firewall on the path so path-MTU discovery works"
            ),
            None => format!(
                "find the smallest MTU on the path ({}) and set the network's MTU under it (docker network create --opt com.docker.network.driver.mtu=…; for an overlay, {VXLAN_OVERHEAD} bytes under the underlay's MTU), or let ICMP \"fragmentation needed\" through every firewall on the path",
                text::NsRef::new(netns, None).cmd("ip link")
            ),
        };
        let message = format!(
            "{flow}: packets die in {place} ({reason} at {location}): {what}{smallest} — an MTU blackhole when the ICMP \"fragmentation needed\" never reaches the sender (large segments are retransmitted forever while small ones pass)"
        );
        let payload = MtuOut {
            type_: "mtu_blackhole",
            count,
            destination: ev.destination.ip,
            first_seen: format_ts(first),
            last_seen: format_ts(t),
            hint: &hint,
            interface: iface,
            interface_mtu: if_mtu,
            location,
            netns,
            path_interface: path.as_ref().map(|(n, _)| n.as_str()),
            path_mtu,
            reason,
            recommended_mtu: recommended,
            source: ev.source.ip,
            vxlan,
        };
        let mut line = drop_alert_line(t, Action::MtuBlackhole, message, &payload, ev, count);
        line.container = ev.container.clone();
        let sym = Symptom {
            kind: Action::MtuBlackhole,
            count,
            containers: container.cloned().into_iter().collect(),
            ips: ev.source.ip.into_iter().chain(ev.destination.ip).collect(),
            macs: Vec::new(),
            facts: Facts::Mtu {
                flow,
                place,
                recommended,
                hint,
                reason: reason.to_string(),
            },
        };
        sink.alert(line, sym);
    }
}

/// An alert line about a drop: the drop's endpoints, namespace, interface,
/// reason and location, and how many drops it stands for.
fn drop_alert_line(
    t: i128,
    action: Action,
    message: String,
    payload: &impl Serialize,
    ev: &EcsEvent,
    count: u64,
) -> EcsEvent {
    let mut line = alert_line(t, action, message, payload);
    line.source = ev.source.clone();
    line.destination = ev.destination.clone();
    line.network = ev.network.clone();
    line.tracer.netns = ev.tracer.netns.clone();
    line.tracer.interface = ev.tracer.interface.clone();
    line.tracer.reason = ev.tracer.reason.clone();
    line.tracer.reason_raw = ev.tracer.reason_raw;
    line.tracer.location = ev.tracer.location.clone();
    line.tracer.count = Some(count);
    line
}
