//! `idle_flow_killed`: an established TCP flow whose first send after a
//! long silence is never acknowledged, joined with the drops of that flow
//! wherever on this host they happen (a NAT/load-balancer namespace whose
//! conntrack entry expired, a firewall): a stateful device forgot the
//! connection while it was idle (seeds 000/003: swarm's IPVS expires idle
//! TCP entries after 900 s).
//!
//! How long the flow was idle comes from the kernel record: the retransmit
//! probe reads the socket's own stamp of the last ACK it received
//! (`tcp_sock.rcv_tstamp`) and its RTO (`icsk_rto`), both in jiffies,
//! converted to ms in the kernel (`tracer.tcp.ack_age_ms`, `rto_ms`), so a
//! replay gives the same span. At the first RTO retransmit the ACK age is
//! the silence before the send plus the RTO that just expired; later
//! retransmits give more (the earlier timeouts add up), so the idle span is
//! the least `ack_age_ms - rto_ms` of the episode (RTO retransmits, i.e.
//! `retransmits >= 1`, preferred over tail-loss probes). When a tail-loss
//! probe came first (one segment in flight: the usual case after an idle
//! spell), the RTO timer restarted at the probe, so the span also holds the
//! probe timeout: it overstates the idle time by about 200 ms (measured
//! here: 6.21 s for 6.0 s slept), a fraction of any timeout worth alerting on.
//!
//! Drops are joined by the flow's exact 4-tuple in either direction: the
//! client's own tuple is what a NAT namespace sees before DNAT (and what
//! it drops when conntrack no longer knows the flow: the segment is
//! `INVALID`, no NAT is applied), and the reverse tuple is the peer's
//! answer. A drop that happens after address translation (a post-DNAT
//! tuple) is not joined.
//!
//! The alert is given once per episode, when `retransmit-threshold`
//! retransmits without progress (`snd_una` unchanged) follow an idle span of
//! at least `idle-min`, and at once if a drop of the flow was seen; without
//! one, one more retransmit is waited for (records of other CPUs may still
//! bring the drop) and the alert says none was seen on this host. Progress
//! (a new `snd_una`) or a reset ends the episode: a flow that recovers
//! never alerts. State: the retransmitting flows and the drops of their
//! tuples, both bounded by `--detect-max-keys` (evictions counted in
//! `detector_status`), and a fixed ring of the last 256 TCP drops of any
//! tuple (a flow's first drop comes before its first retransmit): a storm of
//! unrelated TCP drops never grows the tables.

use std::net::IpAddr;

use serde::Serialize;
use smol_str::SmolStr;

use super::{
    flow_alert_line,
    table::{Bounded, Stamped},
    text::{self, FlowEnd},
    Cfg, Facts, Member, Sink, Symptom,
};
use crate::{
    event::{Action, ContainerRef, EcsEvent, Endpoint, Netns},
    kernel::clock::format_ts,
};

/// Flows and drops quiet for longer than this are forgotten: the longest
/// gap between two retransmits of one segment is Linux's `TCP_RTO_MAX`
/// (120 s), plus a margin.
const KEEP: i128 = 130 * super::NS_PER_S;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Tuple {
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

impl Tuple {
    fn reverse(self) -> Self {
        Self {
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// Drops of one tuple (the latest place, reason and location).
#[derive(Clone)]
struct DropSeen {
    count: u64,
    last: i128,
    netns: Option<Netns>,
    container: Option<ContainerRef>,
    reason: SmolStr,
    location: SmolStr,
}

impl Stamped for DropSeen {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

#[derive(Default)]
struct IdleFlow {
    /// The socket's namespace: the same tuple in another namespace is
    /// another flow (it replaces this one).
    netns: u32,
    snd_una: Option<u32>,
    /// Least `ack_age - rto` of RTO retransmits (ms).
    idle_rto_ms: Option<u32>,
    /// Least `ack_age - rto` of any retransmit (ms), when no RTO one was seen.
    idle_any_ms: Option<u32>,
    /// Retransmits without progress in this episode.
    count: u64,
    first: i128,
    last: i128,
    alerted: bool,
}

impl IdleFlow {
    fn idle_ms(&self) -> Option<u32> {
        self.idle_rto_ms.or(self.idle_any_ms)
    }
}

impl Stamped for IdleFlow {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

pub(crate) struct Idle {
    threshold: u32,
    idle_min: i128,
    /// Flows retransmitting with a known ACK age, by their tuple.
    flows: Bounded<Tuple, IdleFlow>,
    /// Drops of those flows' tuples (either direction).
    drops: Bounded<Tuple, DropSeen>,
    /// The last TCP drops of any tuple, for a flow whose drops came before
    /// its first retransmit (the first send after the silence is dropped
    /// before anything is retransmitted): a fixed ring, so a storm of
    /// unrelated TCP drops costs a copy each and never grows the tables.
    recent: std::collections::VecDeque<(Tuple, DropSeen)>,
}

/// TCP drops kept in [`Idle::recent`].
const RECENT: usize = 256;

#[derive(Serialize)]
struct DroppedIn<'a> {
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    location: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a Netns>,
    place: String,
    reason: &'a str,
}

#[derive(Serialize)]
struct IdleAlert<'a> {
    destination: FlowEnd<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped_in: Option<DroppedIn<'a>>,
    first_seen: String,
    hint: &'a str,
    idle_min_s: f64,
    idle_s: f64,
    last_seen: String,
    /// Retransmits without progress after the idle span.
    retransmits: u64,
    source: FlowEnd<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(rename = "type")]
    type_: &'static str,
}

/// What to do, in every `idle_flow_killed` alert and its incident.
pub(crate) const HINT: &str = "keep the connection busier than the device's idle timeout: \
enable TCP keepalive in the application (SO_KEEPALIVE) and set its time below that timeout, \
per container with `docker run --sysctl net.ipv4.tcp_keepalive_time=600` (or `sysctls:` in a \
compose/stack file; swarm's IPVS forgets idle connections after 900 s), or bypass the swarm \
VIP with `endpoint_mode: dnsrr`; for a conntrack/NAT namespace, raise \
net.netfilter.nf_conntrack_tcp_timeout_established there";

impl Idle {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            threshold: c.rtx_threshold,
            idle_min: c.idle_min,
            flows: Bounded::new(c.max_keys),
            drops: Bounded::new(c.max_keys),
            recent: std::collections::VecDeque::with_capacity(RECENT),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.flows.len() + self.drops.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.flows.evicted + self.drops.evicted
    }

    pub(crate) fn expired(&self) -> u64 {
        self.flows.expired + self.drops.expired
    }

    pub(crate) fn expire(&mut self, now: i128) {
        self.flows.expire(|f| now - f.last <= KEEP);
        self.drops.expire(|d| now - d.last <= KEEP);
    }

    /// A TCP drop: joined to a retransmitting flow of its tuple (either
    /// direction), else kept in the ring of recent drops.
    pub(crate) fn drop_seen(&mut self, ev: &EcsEvent, t: i128) {
        if ev.network.transport.as_deref() != Some("tcp") {
            return;
        }
        let Some(tuple) = tuple_of(&ev.source, &ev.destination) else {
            return;
        };
        let seen = DropSeen {
            count: 1,
            last: t,
            netns: ev.tracer.netns.clone(),
            container: ev.container.clone(),
            reason: ev.tracer.reason.clone().unwrap_or_default(),
            location: ev.tracer.location.clone().unwrap_or_default(),
        };
        if self.flows.get(&tuple).is_some() || self.flows.get(&tuple.reverse()).is_some() {
            self.add_drop(tuple, seen);
        } else {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back((tuple, seen));
        }
    }

    fn add_drop(&mut self, tuple: Tuple, seen: DropSeen) {
        let d = self.drops.entry(tuple, || DropSeen {
            count: 0,
            ..seen.clone()
        });
        d.count += seen.count;
        d.last = d.last.max(seen.last);
        d.netns = seen.netns;
        if seen.container.is_some() {
            d.container = seen.container;
        }
        d.reason = seen.reason;
        d.location = seen.location;
    }

    /// A new flow takes the recent drops of its tuple.
    fn claim_recent(&mut self, tuple: Tuple) {
        let rev = tuple.reverse();
        let mut i = 0;
        while i < self.recent.len() {
            if self.recent[i].0 == tuple || self.recent[i].0 == rev {
                if let Some((t, seen)) = self.recent.remove(i) {
                    self.add_drop(t, seen);
                }
            } else {
                i += 1;
            }
        }
    }

    /// A retransmit with the socket's ACK age.
    pub(crate) fn retransmit(&mut self, ev: &EcsEvent, t: i128, sink: &mut Sink) {
        let Some(tcp) = ev.tracer.tcp.as_ref() else {
            return;
        };
        let Some(ack_age) = tcp.ack_age_ms else {
            return;
        };
        // Connections that never established are another story.
        if matches!(tcp.state, Some("SYN_SENT" | "SYN_RECV" | "NEW_SYN_RECV")) {
            return;
        }
        let Some(tuple) = tuple_of(&ev.source, &ev.destination) else {
            return;
        };
        let netns = ev.netns().unwrap_or(0);
        let key = tuple;
        let new = self.flows.get(&key).is_none_or(|f| f.netns != netns);
        if new {
            self.flows.remove(&key);
            self.claim_recent(tuple);
        }
        let f = self.flows.entry(key, || IdleFlow {
            netns,
            ..IdleFlow::default()
        });
        if f.count > 0 && f.snd_una != tcp.snd_una {
            // Forward progress: the flow recovered; a new episode starts,
            // without the drops of the last one.
            *f = IdleFlow {
                netns,
                ..IdleFlow::default()
            };
            self.drops.remove(&tuple);
            self.drops.remove(&tuple.reverse());
        }
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        if f.count == 0 {
            f.first = t;
            f.snd_una = tcp.snd_una;
        }
        f.count += 1;
        f.last = t;
        let est = ack_age.saturating_sub(tcp.rto_ms.unwrap_or(0));
        let min = |v: Option<u32>| Some(v.map_or(est, |v| v.min(est)));
        if tcp.retransmits.unwrap_or(0) >= 1 {
            f.idle_rto_ms = min(f.idle_rto_ms);
        } else {
            f.idle_any_ms = min(f.idle_any_ms);
        }
        let Some(idle_ms) = f.idle_ms() else {
            return;
        };
        let (count, first, alerted) = (f.count, f.first, f.alerted);
        let rip = tuple.dst;
        if alerted {
            sink.touch(Member::Ip(rip), Some(Action::IdleFlowKilled), count);
            return;
        }
        if i128::from(idle_ms) * 1_000_000 < self.idle_min || count < u64::from(self.threshold) {
            return;
        }
        let dropped = self
            .drops
            .get(&tuple)
            .into_iter()
            .chain(self.drops.get(&tuple.reverse()))
            .max_by_key(|d| d.last);
        if dropped.is_none() && count < u64::from(self.threshold) + 1 {
            return;
        }
        let (line, sym) = self.alert(ev, t, idle_ms, count, first, dropped);
        if let Some(f) = self.flows.get_mut(&key) {
            f.alerted = true;
        }
        sink.alert(line, sym);
    }

    /// A reset ends the flow (either direction).
    pub(crate) fn reset(&mut self, ev: &EcsEvent) {
        let received = ev
            .tracer
            .tcp
            .as_ref()
            .and_then(|t| t.direction)
            .is_some_and(|d| d == "received");
        let (l, r) = if received {
            (&ev.destination, &ev.source)
        } else {
            (&ev.source, &ev.destination)
        };
        if let Some(tuple) = tuple_of(l, r) {
            if self
                .flows
                .get(&tuple)
                .is_some_and(|f| f.netns == ev.netns().unwrap_or(0))
            {
                self.flows.remove(&tuple);
            }
        }
    }

    fn alert(
        &self,
        ev: &EcsEvent,
        t: i128,
        idle_ms: u32,
        count: u64,
        first: i128,
        dropped: Option<&DropSeen>,
    ) -> (EcsEvent, Symptom) {
        let src_c = ev.source.container.as_ref().or(ev.container.as_ref());
        let dst_c = ev.destination.container.as_ref();
        let src = end_label(&ev.source, src_c);
        let dst = end_label(&ev.destination, dst_c);
        let idle = idle_words(idle_ms);
        let place = dropped.map(|d| match (&d.container, &d.netns) {
            (Some(c), _) => format!("{}'s namespace", c.display_name()),
            (None, ns) => text::ns_label(ns.as_ref()),
        });
        let message = match (dropped, &place) {
            (Some(d), Some(place)) => format!(
                "TCP {src} → {dst} was idle {idle}, then every segment was dropped in {place} \
                 ({} at {}, {}×) while {count} retransmits went unanswered: a stateful device \
                 forgot the connection (swarm's IPVS load balancer expires idle TCP entries \
                 after 900 s by default; conntrack; firewalls)",
                d.reason, d.location, d.count
            ),
            _ => format!(
                "TCP {src} → {dst} was idle {idle}, then {count} retransmits went unanswered \
                 and none of its segments was dropped on this host: a stateful device on the \
                 path (another host's IPVS or conntrack, a NAT gateway, a firewall) likely \
                 forgot the connection"
            ),
        };
        let rip = ev.destination.ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let (source, destination) = FlowEnd::pair(ev, rip, src_c, dst_c);
        let payload = IdleAlert {
            type_: "idle_flow_killed",
            idle_s: f64::from(idle_ms) / 1000.0,
            idle_min_s: text::secs(self.idle_min),
            retransmits: count,
            state: ev.tracer.tcp.as_ref().and_then(|t| t.state),
            source,
            destination,
            dropped_in: dropped.zip(place.clone()).map(|(d, place)| DroppedIn {
                count: d.count,
                container: text::container_name(d.container.as_ref()),
                location: &d.location,
                netns: d.netns.as_ref(),
                place,
                reason: &d.reason,
            }),
            first_seen: format_ts(first),
            last_seen: format_ts(t),
            hint: HINT,
        };
        let line = flow_alert_line(t, Action::IdleFlowKilled, message, &payload, ev, count);

        let containers = super::distinct_containers(
            src_c
                .into_iter()
                .chain(dst_c)
                .chain(dropped.and_then(|d| d.container.as_ref())),
        );
        let sym = Symptom {
            kind: Action::IdleFlowKilled,
            count,
            containers,
            ips: ev.source.ip.into_iter().chain(Some(rip)).collect(),
            macs: Vec::new(),
            facts: Facts::IdleFlow {
                flow: format!("{src} → {dst}"),
                src: text::container_name(src_c)
                    .or_else(|| ev.source.ip.map(|i| i.to_string()))
                    .unwrap_or_default(),
                idle_ms,
                place,
                drop: dropped.map(|d| format!("{} at {}", d.reason, d.location)),
            },
        };
        (line, sym)
    }
}

/// `container ip:port` or `ip:port`.
fn end_label(e: &Endpoint, c: Option<&ContainerRef>) -> String {
    let addr = match (e.ip, e.port) {
        (Some(IpAddr::V6(ip)), Some(p)) => format!("[{ip}]:{p}"),
        (Some(ip), Some(p)) => format!("{ip}:{p}"),
        (Some(ip), None) => ip.to_string(),
        _ => "?".to_string(),
    };
    match c {
        Some(c) => format!("{} {addr}", c.display_name()),
        None => addr,
    }
}

/// `903 s`, `7.2 s`.
pub(crate) fn idle_words(ms: u32) -> String {
    if ms >= 10_000 {
        format!("{} s", (ms + 500) / 1000)
    } else {
        format!("{:.1} s", f64::from(ms) / 1000.0)
    }
}

fn tuple_of(s: &Endpoint, d: &Endpoint) -> Option<Tuple> {
    Some(Tuple {
        src: s.ip?,
        sport: s.port?,
        dst: d.ip?,
        dport: d.port?,
    })
}
