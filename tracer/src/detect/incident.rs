//! Incidents: alerts that touch the same container, IP or MAC within the
//! incident window are one incident.
//!
//! Lifecycle: `open` on the first alert, `update` only when something new
//! joins (a new alert type, container, IP or MAC, or another incident merged
//! in), `resolved` once no symptom was seen for a whole window (the
//! `resolved` line is stamped with that moment, last symptom + window, so it
//! does not depend on how often time is advanced). Ids are `inc-1`, `inc-2`,
//! … in order of opening, so a replay gives the same ids.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::Serialize;

use super::{text, Cfg, Facts, Member, Symptom, Touch};
use crate::explain::explain_drop;
use crate::{
    event::{Action, EcsEvent, Kind, Mac, RawJson},
    kernel::clock::format_ts,
};

/// Most "unreachable from" names and distinct flows kept per incident.
const MAX_VICTIMS: usize = 16;
const MAX_FLOWS: usize = 1000;
/// Most containers + IPs + MACs per incident; beyond, new ones are not
/// joined (an alert touching only those opens its own incident).
const MAX_MEMBERS: usize = 1024;
/// Most containers, IPs and MACs each listed on an incident line (the
/// first in sort order; the rest are counted in `omitted_*`): a line stays
/// a few kB, under what log shippers accept (Docker's json-file splits at
/// 16 kB), however large the incident.
pub(crate) const MAX_LISTED: usize = 64;

struct TypeRec {
    alerts: u64,
    count: u64,
    facts: Facts,
}

struct Incident {
    id: u64,
    first_seen: i128,
    last_seen: i128,
    members: BTreeSet<Member>,
    /// Container id → display name.
    names: BTreeMap<String, String>,
    /// The distinct display names, sorted (kept as names join, so a line
    /// does not sort them again).
    display: BTreeSet<String>,
    /// By alert type; iterated in the order of the printed names.
    types: BTreeMap<Action, TypeRec>,
    victims: BTreeSet<String>,
    flows: BTreeSet<String>,
    explanation: String,
    hint: String,
    /// Counts changed since `explanation` was written.
    stale: bool,
}

pub(crate) struct Incidents {
    window: i128,
    max: usize,
    open: BTreeMap<u64, Incident>,
    index: super::table::FastMap<Member, u64>,
    next_id: u64,
    /// No incident can be due before this (a lower bound: touches only
    /// push incidents later), so advancing time is O(1) most of the time.
    next_due: i128,
    pub(crate) opened: u64,
    pub(crate) evicted: u64,
}

#[derive(Serialize)]
struct AlertCount {
    /// Alert lines of this type in the incident.
    alerts: u64,
    /// The count the latest of them reported.
    count: u64,
    #[serde(rename = "type")]
    type_: &'static str,
}

#[derive(Serialize)]
struct IncidentOut<'a> {
    alerts: Vec<AlertCount>,
    containers: Vec<&'a str>,
    explanation: &'a str,
    first_seen: String,
    hint: &'a str,
    id: String,
    ips: Vec<IpAddr>,
    last_seen: String,
    macs: Vec<Mac>,
    #[serde(skip_serializing_if = "Option::is_none")]
    merged_into: Option<String>,
    /// Containers, IPs, MACs of the incident not listed (beyond
    /// [`MAX_LISTED`] each); absent when none were left out.
    #[serde(skip_serializing_if = "is_zero")]
    omitted_containers: usize,
    #[serde(skip_serializing_if = "is_zero")]
    omitted_ips: usize,
    #[serde(skip_serializing_if = "is_zero")]
    omitted_macs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<&'static str>,
    state: &'static str,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn inc_id(id: u64) -> String {
    format!("inc-{id}")
}

impl Incidents {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            window: c.incident_window,
            max: c.max_keys,
            open: BTreeMap::new(),
            index: Default::default(),
            next_id: 0,
            next_due: i128::MAX,
            opened: 0,
            evicted: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// Keeps the incident that the touched member belongs to alive, with
    /// the condition's current count (no line: nothing new joined).
    pub(crate) fn touch(&mut self, touch: &Touch, t: i128) {
        if let Some(id) = self.index.get(&touch.member) {
            if let Some(inc) = self.open.get_mut(id) {
                inc.last_seen = inc.last_seen.max(t);
                if let Some(r) = touch.kind.and_then(|k| inc.types.get_mut(&k)) {
                    if r.count != touch.count {
                        r.count = touch.count;
                        inc.stale = true;
                    }
                }
            }
        }
    }

    /// Resolves incidents without symptoms for a window.
    pub(crate) fn advance(&mut self, now: i128, out: &mut Vec<EcsEvent>) {
        if now < self.next_due {
            return;
        }
        let w = self.window;
        let mut due: Vec<(i128, u64)> = self
            .open
            .values()
            .filter(|i| i.last_seen + w <= now)
            .map(|i| (i.last_seen + w, i.id))
            .collect();
        due.sort_unstable();
        for (ts, id) in due {
            if let Some(mut inc) = self.close(id) {
                out.push(line(&mut inc, "resolved", ts, None, Some("quiet"), w));
            }
        }
        self.next_due = self
            .open
            .values()
            .map(|i| i.last_seen + w)
            .min()
            .unwrap_or(i128::MAX);
    }

    fn close(&mut self, id: u64) -> Option<Incident> {
        let inc = self.open.remove(&id)?;
        for m in &inc.members {
            if self.index.get(m) == Some(&id) {
                self.index.remove(m);
            }
        }
        Some(inc)
    }

    pub(crate) fn on_alert(&mut self, sym: &Symptom, ts: i128, out: &mut Vec<EcsEvent>) {
        self.advance(ts, out);
        let members = members_of(sym);
        let ids: BTreeSet<u64> = members
            .iter()
            .filter_map(|m| self.index.get(m).copied())
            .collect();
        let mut ids = ids.into_iter();
        let Some(target) = ids.next() else {
            self.open_new(sym, &members, ts, out);
            return;
        };
        let mut changed = false;
        for other in ids {
            let Some(mut inc) = self.close(other) else {
                continue;
            };
            out.push(line(
                &mut inc,
                "resolved",
                ts,
                Some(target),
                Some("merged"),
                self.window,
            ));
            if let Some(t) = self.open.get_mut(&target) {
                merge(t, inc);
            }
            changed = true;
        }
        let merged = changed;
        let Some(inc) = self.open.get_mut(&target) else {
            return;
        };
        changed |= add(inc, sym, &members, ts);
        // Index what now belongs to the target: everything after a merge,
        // else just this alert's members (the rest already points here).
        if merged {
            for m in &inc.members {
                self.index.insert(m.clone(), target);
            }
        } else {
            for m in &members {
                if inc.members.contains(m) && self.index.get(m) != Some(&target) {
                    self.index.insert(m.clone(), target);
                }
            }
        }
        inc.stale = true;
        if changed {
            out.push(line(inc, "update", ts, None, None, self.window));
        }
    }

    fn open_new(&mut self, sym: &Symptom, members: &[Member], ts: i128, out: &mut Vec<EcsEvent>) {
        if self.open.len() >= self.max {
            // Full: the incident quiet for longest goes first.
            let oldest = self
                .open
                .values()
                .map(|i| (i.last_seen, i.id))
                .min()
                .map(|(_, id)| id);
            if let Some(mut inc) = oldest.and_then(|id| self.close(id)) {
                self.evicted += 1;
                out.push(line(
                    &mut inc,
                    "resolved",
                    ts,
                    None,
                    Some("evicted"),
                    self.window,
                ));
            }
        }
        self.next_id += 1;
        self.opened += 1;
        let id = self.next_id;
        let mut inc = Incident {
            id,
            first_seen: ts,
            last_seen: ts,
            members: BTreeSet::new(),
            names: BTreeMap::new(),
            display: BTreeSet::new(),
            types: BTreeMap::new(),
            victims: BTreeSet::new(),
            flows: BTreeSet::new(),
            explanation: String::new(),
            hint: String::new(),
            stale: true,
        };
        add(&mut inc, sym, members, ts);
        for m in &inc.members {
            self.index.insert(m.clone(), id);
        }
        out.push(line(&mut inc, "open", ts, None, None, self.window));
        self.next_due = self.next_due.min(inc.last_seen + self.window);
        self.open.insert(id, inc);
    }
}

fn members_of(sym: &Symptom) -> Vec<Member> {
    let mut v: Vec<Member> =
        Vec::with_capacity(sym.containers.len() + sym.ips.len() + sym.macs.len());
    v.extend(
        sym.containers
            .iter()
            .map(|c| Member::Container(c.id.clone())),
    );
    v.extend(
        sym.ips
            .iter()
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| Member::Ip(*ip)),
    );
    v.extend(sym.macs.iter().map(|m| Member::Mac(*m)));
    v
}

/// Adds one alert; true when it brought something new.
fn add(inc: &mut Incident, sym: &Symptom, members: &[Member], ts: i128) -> bool {
    let mut changed = false;
    for m in members {
        if inc.members.len() < MAX_MEMBERS || inc.members.contains(m) {
            changed |= inc.members.insert(m.clone());
        }
    }
    for c in &sym.containers {
        if !inc.names.contains_key(&c.id) {
            let name = c.display_name();
            inc.display.insert(name.clone());
            inc.names.insert(c.id.clone(), name);
        }
    }
    match inc.types.get_mut(&sym.kind) {
        Some(r) => {
            r.alerts += 1;
            r.count = sym.count;
            r.facts = sym.facts.clone();
        }
        None => {
            inc.types.insert(
                sym.kind,
                TypeRec {
                    alerts: 1,
                    count: sym.count,
                    facts: sym.facts.clone(),
                },
            );
            changed = true;
        }
    }
    match &sym.facts {
        Facts::ArpDup { requester, .. } if inc.victims.len() < MAX_VICTIMS => {
            inc.victims.insert(requester.clone());
        }
        Facts::Connect { client, .. } if inc.victims.len() < MAX_VICTIMS => {
            inc.victims.insert(client.clone());
        }
        Facts::Retransmit { flow, src, .. } | Facts::IdleFlow { flow, src, .. } => {
            if inc.victims.len() < MAX_VICTIMS {
                inc.victims.insert(src.clone());
            }
            if inc.flows.len() < MAX_FLOWS {
                inc.flows.insert(flow.clone());
            }
        }
        _ => {}
    }
    inc.last_seen = inc.last_seen.max(ts);
    inc.first_seen = inc.first_seen.min(ts);
    changed
}

fn merge(into: &mut Incident, from: Incident) {
    into.stale = true;
    into.first_seen = into.first_seen.min(from.first_seen);
    into.last_seen = into.last_seen.max(from.last_seen);
    for m in from.members {
        if into.members.len() >= MAX_MEMBERS {
            break;
        }
        into.members.insert(m);
    }
    for (k, v) in from.names {
        if let std::collections::btree_map::Entry::Vacant(e) = into.names.entry(k) {
            into.display.insert(v.clone());
            e.insert(v);
        }
    }
    for (k, r) in from.types {
        match into.types.get_mut(&k) {
            Some(mine) => mine.alerts += r.alerts,
            None => {
                into.types.insert(k, r);
            }
        }
    }
    for v in from.victims {
        if into.victims.len() < MAX_VICTIMS {
            into.victims.insert(v);
        }
    }
    for f in from.flows {
        if into.flows.len() < MAX_FLOWS {
            into.flows.insert(f);
        }
    }
}

fn line(
    inc: &mut Incident,
    state: &'static str,
    ts: i128,
    merged_into: Option<u64>,
    resolution: Option<&'static str>,
    window: i128,
) -> EcsEvent {
    if inc.stale {
        explain(inc);
    }
    let containers: Vec<&str> = inc
        .display
        .iter()
        .take(MAX_LISTED)
        .map(String::as_str)
        .collect();
    let (mut ips, mut n_ips, mut macs, mut n_macs) = (Vec::new(), 0, Vec::new(), 0);
    for m in &inc.members {
        match m {
            Member::Ip(ip) => {
                n_ips += 1;
                if ips.len() < MAX_LISTED {
                    ips.push(*ip);
                }
            }
            Member::Mac(mac) => {
                n_macs += 1;
                if macs.len() < MAX_LISTED {
                    macs.push(*mac);
                }
            }
            Member::Container(_) => {}
        }
    }
    let payload = IncidentOut {
        id: inc_id(inc.id),
        state,
        alerts: inc
            .types
            .iter()
            .map(|(k, r)| AlertCount {
                type_: k.as_str(),
                alerts: r.alerts,
                count: r.count,
            })
            .collect(),
        omitted_containers: inc.display.len() - containers.len(),
        containers,
        omitted_ips: n_ips - ips.len(),
        ips,
        omitted_macs: n_macs - macs.len(),
        macs,
        first_seen: format_ts(inc.first_seen),
        last_seen: format_ts(inc.last_seen),
        explanation: &inc.explanation,
        hint: &inc.hint,
        merged_into: merged_into.map(inc_id),
        resolution,
    };
    let mut e = EcsEvent::new(ts, Kind::Alert, Action::Incident);
    e.message = Some(match (state, merged_into) {
        ("resolved", Some(into)) => format!(
            "{} merged into {}: {}",
            inc_id(inc.id),
            inc_id(into),
            inc.explanation
        ),
        ("resolved", None) if resolution == Some("evicted") => format!(
            "{} closed (too many open incidents): {}",
            inc_id(inc.id),
            inc.explanation
        ),
        ("resolved", None) => format!(
            "{} resolved, no symptoms for {}: {}",
            inc_id(inc.id),
            text::dur(window),
            inc.explanation
        ),
        _ => inc.explanation.clone(),
    });
    e.tracer.incident = RawJson::of(&payload);
    e
}

/// Writes the one-sentence explanation and the hint from the facts.
fn explain(inc: &mut Incident) {
    let facts = |k: Action| inc.types.get(&k).map(|r| (&r.facts, r.alerts));
    let flap = facts(Action::FdbFlap);
    let dup = facts(Action::ArpDuplicateReply);
    let conflict = facts(Action::IpConflict);
    let rtx = facts(Action::RetransmitBurst);
    let drops = facts(Action::DropSummary);
    let conn = facts(Action::ConnectFailed);
    let mcast = facts(Action::OverlayMulticastDropped);
    let underlay = facts(Action::OverlayUnderlayBlocked);
    let mtu = facts(Action::MtuBlackhole);
    let idle = facts(Action::IdleFlowKilled);

    // Who it is about.
    let labelled = |ip: &IpAddr, owner: &Option<String>| match owner {
        Some(o) => format!("{ip} ({o})"),
        None => ip.to_string(),
    };
    // The owner of an IP, from whichever alert knows it.
    let owner_of = |ip: &IpAddr, mac: Option<&Mac>| -> Option<String> {
        if let Some((
            Facts::Flap {
                mac: m,
                ip: fip,
                owner,
                ..
            },
            _,
        )) = flap
        {
            if owner.is_some() && (Some(m) == mac || fip.as_ref() == Some(ip)) {
                return owner.clone();
            }
        }
        if let Some((Facts::Retransmit { dst, dst_ip, .. }, _)) = rtx {
            if dst_ip == ip && *dst != ip.to_string() {
                return Some(dst.clone());
            }
        }
        None
    };
    let mut subject_owner: Option<String> = None;
    let mut subject_is_mac = false;
    let subject = if let Some((Facts::ArpDup { ip, owner, mac, .. }, _)) = dup {
        subject_owner = owner.clone().or_else(|| owner_of(ip, Some(mac)));
        labelled(ip, &subject_owner)
    } else if let Some((Facts::Conflict { ip, .. }, _)) = conflict {
        ip.to_string()
    } else if let Some((Facts::Flap { mac, ip, owner, .. }, _)) = flap {
        subject_owner = owner.clone();
        match ip {
            Some(ip) => labelled(ip, owner),
            None => {
                subject_is_mac = true;
                match owner {
                    Some(o) => format!("MAC {mac} ({o})"),
                    None => format!("MAC {mac}"),
                }
            }
        }
    } else if let Some((Facts::Connect { dst, .. }, _)) = conn {
        dst.clone()
    } else if let Some((Facts::Retransmit { dst, dst_ip, .. }, _)) = rtx {
        subject_owner = Some(dst.clone());
        if *dst == dst_ip.to_string() {
            dst.clone()
        } else {
            format!("{dst_ip} ({dst})")
        }
    } else if let Some((Facts::Multicast { sender, .. }, _)) = mcast {
        sender.clone()
    } else if let Some((Facts::Underlay { peer, .. }, _)) = underlay {
        format!("peer host {peer}")
    } else if let Some((Facts::Mtu { flow, .. } | Facts::IdleFlow { flow, .. }, _)) = mtu.or(idle) {
        flow.clone()
    } else if let Some((Facts::Drops { place, .. }, _)) = drops {
        place.clone()
    } else {
        "unknown".to_string()
    };

    let mut clauses: Vec<String> = Vec::new();
    let mut vxlan: Option<(String, text::NsRef)> = None;
    if let Some((
        Facts::Flap {
            ports,
            vxlan: vx,
            bridge_ns,
            ns,
            ..
        },
        _,
    )) = flap
    {
        let count = inc
            .types
            .get(&Action::FdbFlap)
            .map(|r| r.count)
            .unwrap_or(0);
        let who = if subject_is_mac { "it" } else { "its MAC" };
        clauses.push(format!(
            "{who} flapped {count}× between {} on {bridge_ns}",
            text::join_and(ports)
        ));
        if let Some(v) = vx {
            vxlan = Some((v.clone(), ns.clone()));
        }
    }
    if let Some((
        Facts::ArpDup {
            replies,
            vxlan: vx,
            vxlan_ns,
            ..
        },
        n,
    )) = dup
    {
        clauses.push(if n > 1 {
            format!("every ARP request got {replies} replies")
        } else {
            format!("an ARP request for it got {replies} replies")
        });
        if vxlan.is_none() {
            if let Some(v) = vx {
                vxlan = Some((v.clone(), vxlan_ns.clone()));
            }
        }
    }
    if let Some((Facts::Conflict { macs, ns, .. }, _)) = conflict {
        let ns_label = ns.label();
        let words: Vec<String> = macs
            .iter()
            .map(|(m, o)| match o {
                Some(o) => format!("{m} of {o}"),
                None => m.to_string(),
            })
            .collect();
        clauses.push(format!(
            "{} MACs answer for it in {ns_label} ({})",
            macs.len(),
            text::join_and(&words)
        ));
    }
    if let Some((Facts::Connect { .. }, n)) = conn {
        clauses.push(format!(
            "{n} TCP connection{} never established",
            if n == 1 { "" } else { "s" }
        ));
    }
    if let Some((Facts::Retransmit { dst, dst_ip, .. }, _)) = rtx {
        let n = inc.flows.len().max(1);
        // The incident is about a failed connection to another address
        // (one client, two problems): say where the flow goes, or it reads
        // as the same destination's.
        let elsewhere = match conn {
            Some((Facts::Connect { dst_ip: c, .. }, _)) if c != dst_ip => Some(dst),
            _ => None,
        };
        clauses.push(match (n, elsewhere) {
            (1, Some(to)) => format!("1 TCP flow to {to} retransmits without progress"),
            (n, Some(to)) => {
                format!("{n} TCP flows retransmit without progress (one to {to})")
            }
            (1, None) => "1 TCP flow retransmits without progress".to_string(),
            (n, None) => format!("{n} TCP flows retransmit without progress"),
        });
    }
    if let Some((
        Facts::IdleFlow {
            idle_ms,
            place,
            drop,
            ..
        },
        _,
    )) = idle
    {
        let idle = super::idle::idle_words(*idle_ms);
        clauses.push(match (place, drop) {
            (Some(place), Some(drop)) => {
                format!("a flow idle {idle} then had every segment dropped in {place} ({drop})")
            }
            _ => format!("a flow idle {idle} then had no segment acknowledged"),
        });
    }
    if let Some((
        Facts::Drops {
            reason,
            total,
            place,
            ..
        },
        _,
    )) = drops
    {
        clauses.push(format!("{total} packets dropped in {place} ({reason})"));
    }

    if let Some((Facts::Multicast { group, overlay, .. }, _)) = mcast {
        clauses.push(format!("its multicast to {group} is dropped by {overlay}"));
    }
    if let Some((
        Facts::Underlay {
            what, place, rides, ..
        },
        _,
    )) = underlay
    {
        clauses.push(format!(
            "its {what} is dropped in {place}, so {rides} cannot reach it"
        ));
    }
    if let Some((Facts::Mtu { place, reason, .. }, _)) = mtu {
        clauses.push(format!(
            "packets too big for the path die in {place} ({reason})"
        ));
    }

    let victims: Vec<String> = inc
        .victims
        .iter()
        .filter(|v| Some(*v) != subject_owner.as_ref() && **v != subject)
        .cloned()
        .collect();
    let head = if victims.is_empty()
        || (dup.is_none() && rtx.is_none() && conn.is_none() && idle.is_none())
    {
        subject.clone()
    } else {
        format!("{subject} unreachable from {}", text::join_and(&victims))
    };

    let (diagnosis, hint) = if let Some((vx, ns)) = &vxlan {
        let nsname = ns.name().unwrap_or("<overlay ns>").to_string();
        let ip = match (dup, flap) {
            (Some((Facts::ArpDup { ip, .. }, _)), _) => Some(*ip),
            (_, Some((Facts::Flap { ip, .. }, _))) => *ip,
            _ => None,
        };
        let mac = match (flap, dup) {
            (Some((Facts::Flap { mac, .. }, _)), _) => Some(*mac),
            (_, Some((Facts::ArpDup { mac, .. }, _))) => Some(*mac),
            _ => None,
        };
        let mac_s = mac
            .as_ref()
            .map(text::mac_cmd)
            .unwrap_or_else(|| "<mac>".into());
        // Every name pasted into a command is one quoted shell word: a
        // container with CAP_NET_ADMIN names its interfaces.
        let dev = text::sh(vx);
        let neigh = match ip {
            Some(ip) => ns.cmd(&format!("ip neigh del {ip} dev {dev}")),
            None => format!(
                "{} (then {})",
                ns.cmd(&format!("ip neigh show dev {dev} | grep -i {mac_s}")),
                ns.cmd(&format!("ip neigh del <that ip> dev {dev}"))
            ),
        };
        let fdb = ns.cmd(&format!("bridge fdb del {mac_s} dev {dev}"));
        let link = if ns.name().is_some() {
            format!(
                " (a Docker namespace must first be linked: ln -s {} {})",
                text::sh(&format!("/var/run/docker/netns/{nsname}")),
                text::sh(&format!("/var/run/netns/{nsname}"))
            )
        } else {
            String::new()
        };
        (
            format!("a static ARP/FDB entry on {vx} for a local container"),
            format!(
                "remove the static neighbour/FDB entries {vx} holds for local containers: {neigh} && {fdb}{link}; the overlay driver of a separate cluster store adds them back, swarm mode does not"
            ),
        )
    } else if let Some((Facts::Conflict { ip, macs, ns }, _)) = conflict {
        let words: Vec<String> = macs
            .iter()
            .map(|(m, o)| match o {
                Some(o) => format!("{m} ({o})"),
                None => m.to_string(),
            })
            .collect();
        // Containers: the address is in one's settings and was added by
        // hand (or by a process with NET_ADMIN) inside another; their own
        // address lists say which.
        let inside: Vec<String> = macs
            .iter()
            .filter_map(|(_, o)| o.as_deref())
            .map(|o| {
                format!(
                    "nsenter --net=$(docker inspect -f '{{{{.NetworkSettings.SandboxKey}}}}' {}) ip -br addr",
                    text::sh(o)
                )
            })
            .collect();
        let look = if inside.is_empty() {
            String::new()
        } else {
            format!(
                "; the addresses each container holds: {}",
                inside.join("; ")
            )
        };
        (
            format!(
                "{} claim the same IP",
                text::claimants(macs.iter().map(|(_, o)| o.as_deref()))
            ),
            format!(
                "decide which of {} should own {ip} ({}{look}); re-address or stop the other one (a static IP, an address added inside a container with NET_ADMIN, or a stale container on the same network)",
                text::join_and(&words),
                ns.cmd(&format!("ip neigh show {ip}"))
            ),
        )
    } else if let Some((Facts::ArpDup { interfaces, .. }, _)) = dup {
        (
            "something answers ARP on its behalf".to_string(),
            format!(
                "find the second responder behind {}: check proxy ARP (sysctl net.ipv4.conf.<if>.proxy_arp), proxy neighbour entries (ip neigh show proxy) and static entries on those interfaces",
                text::join_and(interfaces)
            ),
        )
    } else if let Some((Facts::Flap { mac, ports, ns, .. }, _)) = flap {
        (
            "the same MAC is behind two ports (duplicate MAC or a bridging loop)".to_string(),
            format!(
                "find every port sending from {mac}: {}; look for a duplicate MAC or a loop between {}",
                ns.cmd(&format!("bridge fdb show | grep -i {}", text::mac_cmd(mac))),
                text::join_and(ports)
            ),
        )
    } else if let Some((Facts::Connect { why, hint, .. }, _)) = conn {
        (why.clone(), hint.clone())
    } else if let Some((
        Facts::Mtu {
            recommended, hint, ..
        },
        _,
    )) = mtu
    {
        (
            match recommended {
                Some(m) => format!("an MTU blackhole (the path fits {m}-byte packets)"),
                None => "an MTU blackhole".to_string(),
            },
            hint.clone(),
        )
    } else if let Some((Facts::Underlay { hint, .. }, _)) = underlay {
        (
            "the overlay's own traffic between the hosts is blocked".to_string(),
            hint.clone(),
        )
    } else if let Some((Facts::Multicast { .. }, _)) = mcast {
        (
            "overlay networks do not carry multicast between hosts".to_string(),
            "use unicast/TCP member discovery (e.g. Hazelcast's tcp-ip join listing the members or the service name, JGroups TCPPING) or a multicast-capable network driver (macvlan/ipvlan)".to_string(),
        )
    } else if idle.is_some() {
        (
            "a stateful device forgot the idle connection (swarm's IPVS load balancer expires idle TCP entries after 900 s by default; conntrack; firewalls)".to_string(),
            super::idle::HINT.to_string(),
        )
    } else if let Some((
        Facts::Retransmit {
            src,
            dst_ip,
            src_ns,
            ..
        },
        _,
    )) = rtx
    {
        (
            "segments are lost on the path".to_string(),
            format!(
                "check the path from {src} to {dst_ip}: routes ({}: blackhole/unreachable?), the MTU ({}) and firewall rules (iptables -S DOCKER-USER); the drop lines of the same flow name the kernel's reason",
                src_ns.cmd(&format!("ip route get {dst_ip}")),
                src_ns.cmd(&format!("ping -M do -s 1472 -c 3 {dst_ip}")),
            ),
        )
    } else if let Some((
        Facts::Drops {
            reason, location, ..
        },
        _,
    )) = drops
    {
        let why = explain_drop(reason, Some(location));
        (
            why.meaning_of(reason).into_owned(),
            format!("{reason} at {location}: {}", why.check),
        )
    } else {
        (String::new(), String::new())
    };

    inc.explanation = if clauses.is_empty() {
        head
    } else if diagnosis.is_empty() {
        format!("{head}: {}", clauses.join(" and "))
    } else {
        format!("{head}: {} — {diagnosis}", clauses.join(" and "))
    };
    inc.hint = hint;
    inc.stale = false;
}
