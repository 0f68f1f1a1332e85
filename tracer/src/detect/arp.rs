//! ARP replies: `arp_duplicate_reply` and `ip_conflict`.
//!
//! One reply is seen once per hop (on the bridge port in the overlay
//! namespace, then on eth0 in the requester's namespace), so replies are
//! counted per receiving (netns, interface): two sightings of one reply on
//! two interfaces are one reply; two replies at one interface are two.
//! Gratuitous replies (sender IP = target IP) are announcements, not answers
//! to a requester, and are left out of both detectors.

use std::net::IpAddr;

use serde::Serialize;

use super::{
    alert_line,
    table::{Bounded, Stamped, TimeRing},
    text, Cfg, Facts, Macs, Member, Sink, Symptom,
};
use crate::{
    event::{Action, ContainerRef, EcsEvent, Mac, Netns, SmolStr},
    kernel::clock::format_ts,
};

/// Most receiving interfaces remembered per reply key.
const MAX_SIGHTINGS: usize = 16;
/// Most MACs remembered per IP.
const MAX_MACS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DupKey {
    ip: IpAddr,
    mac: Mac,
    requester: IpAddr,
}

struct Sighting {
    netns: u32,
    ifindex: u32,
    ifname: SmolStr,
    /// The interface's link kind is vxlan (from identity, never its name).
    vxlan: bool,
    ns: Option<Netns>,
    container: Option<ContainerRef>,
    ring: TimeRing,
    replies: u64,
    last: i128,
}

struct DupState {
    sightings: Vec<Sighting>,
    owner: Option<ContainerRef>,
    requester: Option<ContainerRef>,
    requester_mac: Option<Mac>,
    last: i128,
    last_alert: Option<i128>,
}

impl Stamped for DupState {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ConflictKey {
    netns: u32,
    ip: IpAddr,
}

struct MacSeen {
    mac: Mac,
    owner: Option<ContainerRef>,
    ifname: SmolStr,
    replies: u64,
    last: i128,
}

struct ConflictState {
    macs: Vec<MacSeen>,
    /// The receiving namespace (and its container).
    ns: text::NsRef,
    last: i128,
    last_alert: Option<i128>,
}

impl Stamped for ConflictState {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

pub(crate) struct Arp {
    dup_threshold: u32,
    dup_window: i128,
    conflict_window: i128,
    realert: i128,
    dups: Bounded<DupKey, DupState>,
    conflicts: Bounded<ConflictKey, ConflictState>,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<Mac>,
}

#[derive(Serialize)]
struct Through<'a> {
    /// Container of the receiving namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    ifindex: u32,
    interface: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a Netns>,
    /// Replies seen on this interface in the episode.
    replies: u64,
    vxlan: bool,
}

#[derive(Serialize)]
struct DupAlert<'a> {
    came_through: Vec<Through<'a>>,
    /// Where they were counted.
    counted_at: &'a str,
    /// `vxlan_proxy_arp` or `proxy_arp_or_second_responder`.
    diagnosis: &'static str,
    ip: IpAddr,
    mac: Mac,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    /// Replies that reached one interface (the most at any one).
    replies: u64,
    requester: Endpoint<'a>,
    threshold: u32,
    #[serde(rename = "type")]
    type_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vxlan: Option<&'a str>,
    window_s: f64,
}

#[derive(Serialize)]
struct MacOut<'a> {
    interface: &'a str,
    last_seen: String,
    mac: Mac,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    replies: u64,
}

#[derive(Serialize)]
struct ConflictAlert<'a> {
    ip: IpAddr,
    macs: Vec<MacOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a Netns>,
    #[serde(rename = "type")]
    type_: &'static str,
    window_s: f64,
}

impl Arp {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            dup_threshold: c.dup_threshold,
            dup_window: c.dup_window,
            conflict_window: c.conflict_window,
            realert: c.arp_realert,
            dups: Bounded::new(c.max_keys),
            conflicts: Bounded::new(c.max_keys),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.dups.len() + self.conflicts.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.dups.evicted + self.conflicts.evicted
    }

    pub(crate) fn expired(&self) -> u64 {
        self.dups.expired + self.conflicts.expired
    }

    pub(crate) fn expire(&mut self, now: i128) {
        let (dw, cw, re) = (self.dup_window, self.conflict_window, self.realert);
        self.dups
            .expire(|s| now - s.last <= dw || s.last_alert.is_some_and(|a| now - a < re));
        self.conflicts
            .expire(|s| now - s.last <= cw || s.last_alert.is_some_and(|a| now - a < re));
    }

    pub(crate) fn reply(&mut self, ev: &EcsEvent, t: i128, macs: &Macs, sink: &mut Sink) {
        let (Some(ip), Some(mac), Some(requester)) =
            (ev.source.ip, ev.source.mac, ev.destination.ip)
        else {
            return;
        };
        if ip == requester || requester.is_unspecified() || mac.is_zero() {
            return;
        }
        // The owner as the event says, else as earlier events said.
        let owner = ev
            .source
            .container
            .as_ref()
            .or_else(|| macs.get(&mac).and_then(|m| m.owner.as_ref()));
        let req_owner = ev.destination.container.as_ref().or_else(|| {
            ev.destination
                .mac
                .and_then(|m| macs.get(&m))
                .and_then(|m| m.owner.as_ref())
        });
        self.duplicate(ev, t, (ip, mac, owner), (requester, req_owner), sink);
        self.conflict(ev, t, (ip, mac, owner), sink);
    }

    fn duplicate(
        &mut self,
        ev: &EcsEvent,
        t: i128,
        (ip, mac, owner): (IpAddr, Mac, Option<&ContainerRef>),
        (requester, req_owner): (IpAddr, Option<&ContainerRef>),
        sink: &mut Sink,
    ) {
        let key = DupKey { ip, mac, requester };
        let window = self.dup_window;
        let threshold = self.dup_threshold;
        let st = self.dups.entry(key, || DupState {
            sightings: Vec::new(),
            owner: None,
            requester: None,
            requester_mac: None,
            last: t,
            last_alert: None,
        });
        // Sightings older than the window belong to an earlier exchange.
        st.sightings.retain(|s| t - s.last <= window);
        let netns = ev.netns().unwrap_or(0);
        let (ifindex, ifname, vxlan) = ev
            .tracer
            .interface
            .as_ref()
            .map(|i| (i.index, i.name.as_str(), i.kind == Some("vxlan")))
            .unwrap_or((0, "", false));
        let i = match st
            .sightings
            .iter()
            .position(|s| s.netns == netns && s.ifindex == ifindex && s.ifname == ifname)
        {
            Some(i) => i,
            None => {
                if st.sightings.len() >= MAX_SIGHTINGS {
                    let old = st
                        .sightings
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.last)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    st.sightings.remove(old);
                }
                st.sightings.push(Sighting {
                    netns,
                    ifindex,
                    ifname: SmolStr::new(ifname),
                    vxlan,
                    ns: ev.tracer.netns.clone(),
                    container: ev.container.clone(),
                    ring: TimeRing::new(threshold),
                    replies: 0,
                    last: t,
                });
                st.sightings.len() - 1
            }
        };
        let s = &mut st.sightings[i];
        s.ring.push(t);
        s.replies += 1;
        s.last = t;
        let hot = s.ring.full_within(t, window);
        if let Some(c) = owner {
            if st.owner.as_ref().is_none_or(|o| !o.same(c)) {
                st.owner = Some(c.clone());
            }
        }
        if let Some(c) = req_owner {
            if st.requester.as_ref().is_none_or(|o| !o.same(c)) {
                st.requester = Some(c.clone());
            }
        }
        if st.requester.is_none() {
            // The requester's own namespace is where the reply ends up.
            if let Some(c) = &ev.container {
                st.requester = Some(c.clone());
            }
        }
        st.requester_mac = ev.destination.mac.or(st.requester_mac);
        st.last = t;
        if !hot {
            return;
        }
        if st.last_alert.is_some_and(|a| t - a < self.realert) {
            let n = st.sightings[i].replies;
            sink.touch(Member::Ip(ip), Some(Action::ArpDuplicateReply), n);
            return;
        }
        st.last_alert = Some(t);
        let (line, sym) = dup_alert(st, i, key, ev, t, threshold, window);
        sink.alert(line, sym);
    }

    fn conflict(
        &mut self,
        ev: &EcsEvent,
        t: i128,
        (ip, mac, owner): (IpAddr, Mac, Option<&ContainerRef>),
        sink: &mut Sink,
    ) {
        let key = ConflictKey {
            netns: ev.netns().unwrap_or(0),
            ip,
        };
        let window = self.conflict_window;
        let st = self.conflicts.entry(key, || ConflictState {
            macs: Vec::new(),
            ns: text::NsRef::default(),
            last: t,
            last_alert: None,
        });
        st.last = t;
        st.macs.retain(|m| t - m.last <= window);
        match st.macs.iter_mut().find(|m| m.mac == mac) {
            Some(m) => {
                m.replies += 1;
                m.last = t;
                if let Some(c) = owner {
                    if m.owner.as_ref().is_none_or(|o| !o.same(c)) {
                        m.owner = Some(c.clone());
                    }
                }
            }
            None => {
                if st.macs.len() >= MAX_MACS {
                    st.macs.remove(0);
                }
                st.macs.push(MacSeen {
                    mac,
                    owner: owner.cloned(),
                    ifname: ev
                        .tracer
                        .interface
                        .as_ref()
                        .map(|i| i.name.clone())
                        .unwrap_or_default(),
                    replies: 1,
                    last: t,
                });
            }
        }
        if st.macs.len() < 2 {
            return;
        }
        if st.ns.ns.is_none() {
            st.ns = text::NsRef::new(ev.tracer.netns.as_ref(), ev.container.as_ref());
        }
        if st.last_alert.is_some_and(|a| t - a < self.realert) {
            sink.touch(
                Member::Ip(ip),
                Some(Action::IpConflict),
                st.macs.len() as u64,
            );
            return;
        }
        st.last_alert = Some(t);
        let (line, sym) = conflict_alert(st, ip, mac, ev, t, window);
        sink.alert(line, sym);
    }
}

fn through_label(s: &Sighting) -> String {
    match (&s.container, &s.ns) {
        (Some(c), _) => format!("{} ({})", s.ifname, c.display_name()),
        (None, ns) => format!("{} ({})", s.ifname, text::ns_label(ns.as_ref())),
    }
}

fn dup_alert(
    st: &DupState,
    hot: usize,
    key: DupKey,
    ev: &EcsEvent,
    t: i128,
    threshold: u32,
    window: i128,
) -> (EcsEvent, Symptom) {
    let at = &st.sightings[hot];
    let vx = st.sightings.iter().find(|s| s.vxlan);
    let owner = text::container_name(st.owner.as_ref());
    let requester = text::container_name(st.requester.as_ref());
    let ip_label = match &owner {
        Some(o) => format!("{} ({o})", key.ip),
        None => key.ip.to_string(),
    };
    let req_label = match &requester {
        Some(r) => format!("{} ({r})", key.requester),
        None => key.requester.to_string(),
    };
    let labels: Vec<String> = st.sightings.iter().map(through_label).collect();
    let (diagnosis, why) = match vx {
        Some(v) => (
            "vxlan_proxy_arp",
            format!(
                "{} answers on behalf of a local container (a static ARP entry on the vxlan, the vxlan proxy-ARP outage)",
                v.ifname
            ),
        ),
        None => (
            "proxy_arp_or_second_responder",
            "something answers ARP on another's behalf (proxy ARP or a second host with this MAC)"
                .to_string(),
        ),
    };
    let message = format!(
        "{ip_label} answered {}× with {} to {req_label} within {} at {}: replies came through {}; {why}",
        at.replies,
        key.mac,
        text::dur(window),
        through_label(at),
        text::join_and(&labels),
    );
    let payload = DupAlert {
        type_: "arp_duplicate_reply",
        ip: key.ip,
        mac: key.mac,
        owner: owner.as_deref(),
        requester: Endpoint {
            ip: key.requester,
            mac: st.requester_mac,
            container: requester.as_deref(),
        },
        replies: at.replies,
        counted_at: &at.ifname,
        threshold,
        window_s: text::secs(window),
        came_through: st
            .sightings
            .iter()
            .map(|s| Through {
                interface: &s.ifname,
                ifindex: s.ifindex,
                netns: s.ns.as_ref(),
                container: text::container_name(s.container.as_ref()),
                vxlan: s.vxlan,
                replies: s.replies,
            })
            .collect(),
        vxlan: vx.map(|v| v.ifname.as_str()),
        diagnosis,
    };
    let mut line = alert_line(t, Action::ArpDuplicateReply, message, &payload);
    line.container = ev.container.clone();
    line.source.ip = Some(key.ip);
    line.source.mac = Some(key.mac);
    line.source.container = st.owner.clone();
    line.destination.ip = Some(key.requester);
    line.destination.mac = st.requester_mac;
    line.destination.container = st.requester.clone();
    line.network.type_ = Some("arp");
    line.tracer.netns = at.ns.clone();
    line.tracer.interface = ev.tracer.interface.clone();
    line.tracer.count = Some(at.replies);

    let containers: Vec<ContainerRef> = st
        .owner
        .iter()
        .chain(st.requester.iter())
        .cloned()
        .collect();
    let sym = Symptom {
        kind: Action::ArpDuplicateReply,
        count: at.replies,
        containers,
        ips: vec![key.ip, key.requester],
        macs: vec![key.mac],
        facts: Facts::ArpDup {
            ip: key.ip,
            mac: key.mac,
            owner,
            requester: requester.unwrap_or_else(|| key.requester.to_string()),
            replies: at.replies,
            vxlan: vx.map(|v| v.ifname.to_string()),
            vxlan_ns: text::NsRef::new(vx.and_then(|v| v.ns.as_ref()), None),
            interfaces: st.sightings.iter().map(|s| s.ifname.to_string()).collect(),
        },
    };
    (line, sym)
}

fn conflict_alert(
    st: &ConflictState,
    ip: IpAddr,
    mac: Mac,
    ev: &EcsEvent,
    t: i128,
    window: i128,
) -> (EcsEvent, Symptom) {
    let macs: Vec<MacOut> = st
        .macs
        .iter()
        .map(|m| MacOut {
            mac: m.mac,
            owner: text::container_name(m.owner.as_ref()),
            interface: &m.ifname,
            replies: m.replies,
            last_seen: format_ts(m.last),
        })
        .collect();
    let words: Vec<String> = macs
        .iter()
        .map(|m| match &m.owner {
            Some(o) => format!("{} ({o})", m.mac),
            None => format!("{} (owner unknown)", m.mac),
        })
        .collect();
    let where_ = st.ns.label();
    let message = format!(
        "{ip} is answered for by {} MACs in {where_} within {}: {} — {} claim the same IP",
        macs.len(),
        text::dur(window),
        text::join_and(&words),
        text::claimants(macs.iter().map(|m| m.owner.as_deref())),
    );
    let payload = ConflictAlert {
        type_: "ip_conflict",
        ip,
        netns: st.ns.ns.as_ref(),
        macs,
        window_s: text::secs(window),
    };
    let mut line = alert_line(t, Action::IpConflict, message, &payload);
    line.container = ev.container.clone();
    line.source.ip = Some(ip);
    line.source.mac = Some(mac);
    line.source.container = st
        .macs
        .iter()
        .find(|m| m.mac == mac)
        .and_then(|m| m.owner.clone());
    line.destination = ev.destination.clone();
    line.network.type_ = Some("arp");
    line.tracer.netns = st.ns.ns.clone();
    line.tracer.interface = ev.tracer.interface.clone();
    line.tracer.count = Some(st.macs.len() as u64);

    let containers = super::distinct_containers(st.macs.iter().filter_map(|m| m.owner.as_ref()));
    let sym = Symptom {
        kind: Action::IpConflict,
        count: st.macs.len() as u64,
        containers,
        ips: vec![ip],
        macs: st.macs.iter().map(|m| m.mac).collect(),
        facts: Facts::Conflict {
            ip,
            macs: st
                .macs
                .iter()
                .map(|m| (m.mac, text::container_name(m.owner.as_ref())))
                .collect(),
            ns: st.ns.clone(),
        },
    };
    (line, sym)
}
