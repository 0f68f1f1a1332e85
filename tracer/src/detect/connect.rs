//! `connect_failed`: TCP connections that never establish, with the cause
//! taken from what the kernel did to the flow's packets.
//!
//! Symptoms (the client's side): a SYN retransmitted (`tcp_retransmit` in
//! state `SYN_SENT`) or a reset received in `SYN_SENT`. Causes (anywhere on
//! the host, in any namespace: the drop often happens in a bridge, router or
//! load-balancer namespace, not the client's):
//! - `NO_SOCKET` drop or a reset in answer to the SYN: nothing listens;
//! - `NETFILTER_DROP`: a firewall rule, in the namespace of the drop;
//! - `NEIGH_FAILED` drop, or a neighbour entry going to `FAILED`: nobody
//!   answers ARP for the address (or the next hop);
//! - `IP_OUTNOROUTES` / `IP_INNOROUTES`: no route;
//! - an ICMP error the kernel sent about the flow's SYN (`icmp_error`, in
//!   the namespace that answered): `admin-prohibited`, `host-prohibited`,
//!   `net-prohibited` or (for TCP) `port-unreachable` is a firewall's
//!   `reject`; `host-unreachable`, `net-unreachable` and `time-exceeded`
//!   say that the sender cannot reach the destination.
//!
//! A third symptom ends an attempt at once: the client's socket closed from
//! `SYN_SENT` (`tcp_abort`), with an error (ECONNREFUSED, EHOSTUNREACH,
//! ENETUNREACH...) or given up by its process (which may have read and
//! cleared the error: an ICMP error that arrives while the connecting
//! process holds the socket is only noted, and a non-blocking connect reads
//! it with `SO_ERROR`). A connect rejected with ICMP never retransmits its
//! SYN, so this is how it is seen at all. With no cause seen on this host,
//! the error itself is the cause (the answer came from beyond it); a
//! connect given up without an error, a cause or a SYN retransmitted is
//! left alone (the application's own timeout).
//!
//! Correlation is by flow tuple first (source and destination address and
//! port, whatever the namespace), then by destination address (neighbour
//! failures, drops of other attempts to the same address). Either side may
//! come first: a cause seen before the retransmit is remembered for
//! `--connect-cause-ttl`; an attempt seen before its cause waits for it. An
//! attempt alerts when it has a cause, or after `--connect-syn-threshold`
//! SYN retransmits spread over at least `--connect-no-answer-after` without
//! one ("no answer,
//! nothing dropped here"). A flow that shows
//! progress (a retransmit in any other state: it established) before
//! alerting is forgotten silently. One alert per client and destination
//! (address, port) per window; both tables are bounded (evictions counted).

use std::{net::IpAddr, sync::Arc};

use serde::Serialize;

use super::{
    alert_line,
    config::Cfg,
    table::{Bounded, Stamped},
    text, Facts, Member, Sink, Symptom,
};
use crate::event::{Action, ContainerRef, EcsEvent, Netns, ServiceRef, SmolStr};

/// What the kernel did to the flow's packets, most telling first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CauseKind {
    NothingListens,
    /// An ICMP error that says a firewall rejects (admin prohibited ...):
    /// a `reject` rule also drops the packet (`NETFILTER_DROP`), and the
    /// ICMP error says more (who answered, with what).
    Rejected,
    Firewall,
    NoRoute,
    NoArp,
    /// An ICMP host/net unreachable or time exceeded, or the socket's own
    /// EHOSTUNREACH/ENETUNREACH with no ICMP seen (less telling than a
    /// neighbour failure, which is often why a router answers so).
    Unreachable,
    NoAnswer,
}

impl CauseKind {
    /// The cause a drop stands for, by its reason and, for a reason the
    /// kernel leaves unspecified, its location: IPv6 neighbour discovery
    /// frees the packets it queued for an address nobody answers with a
    /// plain `kfree_skb` (`ndisc_error_report`, called from
    /// `neigh_invalidate`), where ARP says `NEIGH_FAILED`.
    fn from_reason(r: &str, location: Option<&str>) -> Option<Self> {
        let neigh_gave_up = || {
            location.is_some_and(|l| {
                l.starts_with("neigh_invalidate+") || l.starts_with("ndisc_error_report+")
            })
        };
        Some(match r {
            "NO_SOCKET" => Self::NothingListens,
            "NETFILTER_DROP" => Self::Firewall,
            "NEIGH_FAILED" => Self::NoArp,
            "NOT_SPECIFIED" if neigh_gave_up() => Self::NoArp,
            "IP_OUTNOROUTES" | "IP_INNOROUTES" => Self::NoRoute,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NothingListens => "nothing_listens",
            Self::Firewall => "firewall",
            Self::NoRoute => "no_route",
            Self::NoArp => "no_arp",
            Self::Rejected => "rejected",
            Self::Unreachable => "unreachable",
            Self::NoAnswer => "no_answer",
        }
    }

    /// The cause an ICMP error (type, code) about a TCP SYN stands for;
    /// None for one that is no connect failure (fragmentation needed,
    /// redirect...).
    fn from_icmp(t: u8, code: u8) -> Option<Self> {
        Some(match (t, code) {
            // Prohibited, and port/protocol unreachable for TCP (a TCP
            // stack answers a closed port with a reset: an ICMP one is a
            // firewall's `reject`).
            (3, 2 | 3 | 9 | 10 | 13) => Self::Rejected,
            (3, 0 | 1 | 5..=7 | 11 | 12) | (11, _) => Self::Unreachable,
            _ => return None,
        })
    }

    /// The cause a socket error of a failed connect stands for when no
    /// cause was seen on this host.
    fn from_errno(e: &str) -> Option<Self> {
        Some(match e {
            "ECONNREFUSED" => Self::NothingListens,
            "EHOSTUNREACH" | "ENETUNREACH" | "EHOSTDOWN" | "ENONET" | "ENETDOWN" => {
                Self::Unreachable
            }
            "EACCES" | "EPERM" => Self::Rejected,
            _ => return None,
        })
    }
}

/// The ICMP error behind a cause.
#[derive(Clone, Debug)]
pub(crate) struct IcmpSeen {
    /// nftables' name (`admin-prohibited`).
    pub(crate) name: &'static str,
    /// Who sent it (the interface's address where the SYN arrived).
    pub(crate) sender: Option<IpAddr>,
}

/// Keeps `make()` as the cause for `k` when it is at least as telling as
/// the one there (a fresh one of the same rank replaces an older one); a
/// slot that stays as it is costs no clone.
fn keep(
    causes: &mut Bounded<CauseKey, Cause>,
    k: CauseKey,
    kind: CauseKind,
    make: impl FnOnce() -> Cause,
) {
    match causes.get_mut(&k) {
        Some(slot) => {
            if kind <= slot.kind {
                *slot = make();
            }
        }
        None => {
            causes.entry(k, make);
        }
    }
}

/// One cause, as seen.
#[derive(Clone, Debug)]
pub(crate) struct Cause {
    pub(crate) kind: CauseKind,
    /// Drop reason, `RST` or `neigh FAILED`.
    pub(crate) reason: SmolStr,
    pub(crate) location: Option<SmolStr>,
    /// The interface of the drop (the packet's device there).
    pub(crate) interface: Option<SmolStr>,
    pub(crate) netns: Option<Netns>,
    pub(crate) container: Option<ContainerRef>,
    /// Address the neighbour failure was about (the next hop).
    pub(crate) neigh: Option<IpAddr>,
    /// The ICMP error, when the cause is one.
    pub(crate) icmp: Option<IcmpSeen>,
    t: i128,
}

impl Stamped for Cause {
    fn last_seen(&self) -> i128 {
        self.t
    }
}

/// Cause keys: the flow tuple (without namespace: the drop may be in any),
/// or a destination address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum CauseKey {
    Flow(IpAddr, u16, IpAddr, u16),
    Dst(IpAddr),
}

/// A connection attempt from the client's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FlowKey {
    netns: u32,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

struct Attempt {
    syns: u32,
    first: i128,
    last: i128,
    alerted: bool,
    /// The event that last described the attempt (client identity).
    client: Option<ContainerRef>,
    client_ns: Option<Netns>,
    dst_container: Option<ContainerRef>,
    service: Option<Arc<ServiceRef>>,
    /// The error the client's socket closed with (`ECONNREFUSED` ...).
    error: Option<SmolStr>,
}

impl Attempt {
    fn new(t: i128) -> Self {
        Attempt {
            syns: 0,
            first: t,
            last: t,
            alerted: false,
            client: None,
            client_ns: None,
            dst_container: None,
            service: None,
            error: None,
        }
    }
}

impl Stamped for Attempt {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

/// Client and destination, for one alert per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PairKey {
    netns: u32,
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
}

struct Said {
    t: i128,
}

impl Stamped for Said {
    fn last_seen(&self) -> i128 {
        self.t
    }
}

pub(crate) struct Connect {
    window: i128,
    /// See [`super::config::setting::CONNECT_SYN_THRESHOLD`].
    syn_threshold: u32,
    /// See [`super::config::setting::CONNECT_NO_ANSWER_AFTER`] (ns).
    no_answer_after: i128,
    /// See [`super::config::setting::CONNECT_CAUSE_TTL`] (ns).
    cause_ttl: i128,
    attempts: Bounded<FlowKey, Attempt>,
    causes: Bounded<CauseKey, Cause>,
    said: Bounded<PairKey, Said>,
    /// Destination address → the latest attempt to it still waiting for a
    /// cause (for causes keyed by address only).
    waiting: Bounded<CauseKey, Waiting>,
}

#[derive(Clone, Copy)]
struct Waiting {
    key: FlowKey,
    t: i128,
}

impl Stamped for Waiting {
    fn last_seen(&self) -> i128 {
        self.t
    }
}

#[derive(Serialize)]
struct Dest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    ip: IpAddr,
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a ServiceRef>,
}

#[derive(Serialize)]
struct Where<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_sender: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    neighbour: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a Netns>,
    place: String,
    reason: &'a str,
}

#[derive(Serialize)]
struct Alert<'a> {
    cause: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause_seen: Option<Where<'a>>,
    client: text::FlowEnd<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_error: Option<&'a str>,
    destination: Dest<'a>,
    duration_s: f64,
    hint: &'a str,
    syn_retransmits: u32,
    #[serde(rename = "type")]
    type_: &'static str,
    vip_not_served: bool,
}

/// Where a namespace is, in words an operator knows: Docker's load
/// balancer and ingress sandboxes by their role, containers by name.
pub(crate) fn place(ns: Option<&Netns>, container: Option<&ContainerRef>) -> String {
    let name = ns.and_then(|n| n.name.as_deref());
    let network = ns.and_then(|n| n.network.as_deref());
    match (name, network) {
        (Some("ingress_sbox"), _) => "the ingress sandbox (netns ingress_sbox)".to_string(),
        (Some(n), Some(net)) if n.starts_with("lb_") => {
            format!("the load balancer of network {net} (netns {n})")
        }
        (Some(n), None) if n.starts_with("lb_") => format!("a load balancer (netns {n})"),
        _ => match container {
            Some(c) => format!("{}'s namespace", c.display_name()),
            None => text::ns_label(ns),
        },
    }
}

impl Connect {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            window: c.rtx_window.max(c.cause_ttl),
            syn_threshold: c.syn_threshold,
            no_answer_after: c.no_answer_after,
            cause_ttl: c.cause_ttl,
            attempts: Bounded::new(c.max_keys),
            causes: Bounded::new(c.max_keys),
            said: Bounded::new(c.max_keys),
            waiting: Bounded::new(c.max_keys),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.attempts.len() + self.causes.len() + self.said.len() + self.waiting.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.attempts.evicted + self.causes.evicted + self.said.evicted + self.waiting.evicted
    }

    pub(crate) fn expired(&self) -> u64 {
        self.attempts.expired + self.causes.expired + self.said.expired + self.waiting.expired
    }

    pub(crate) fn expire(&mut self, now: i128) {
        let (w, ttl) = (self.window, self.cause_ttl);
        self.attempts.expire(|a| now - a.last <= w);
        self.causes.expire(|c| now - c.t <= ttl);
        self.said.expire(|s| now - s.t <= w);
        self.waiting.expire(|x| now - x.t <= w);
    }

    /// A drop: a cause if its reason is one.
    pub(crate) fn drop(&mut self, ev: &EcsEvent, t: i128, sink: &mut Sink) {
        let Some(kind) = ev
            .tracer
            .reason
            .as_deref()
            .and_then(|r| CauseKind::from_reason(r, ev.tracer.location.as_deref()))
        else {
            return;
        };
        let Some(dst) = ev.destination.ip else {
            return;
        };
        let cause = Cause {
            kind,
            reason: ev.tracer.reason.clone().unwrap_or_default(),
            location: ev.tracer.location.clone(),
            interface: ev.tracer.interface.as_ref().map(|i| i.name.clone()),
            netns: ev.tracer.netns.clone(),
            container: ev.container.clone(),
            neigh: None,
            icmp: None,
            t,
        };
        let flow = match (ev.source.ip, ev.source.port, ev.destination.port) {
            (Some(s), Some(sp), Some(dp)) if ev.network.transport.as_deref() == Some("tcp") => {
                Some(CauseKey::Flow(s, sp, dst, dp))
            }
            _ => None,
        };
        self.learn(flow, CauseKey::Dst(dst), cause, t, sink);
    }

    /// A neighbour update: one to `FAILED` is a cause for its address.
    pub(crate) fn neigh(&mut self, ev: &EcsEvent, t: i128, sink: &mut Sink) {
        let Some(ip) = ev.destination.ip else {
            return;
        };
        let failed = ev
            .tracer
            .neigh
            .as_ref()
            .is_some_and(|n| n.new_state.contains("FAILED"));
        if !failed {
            return;
        }
        let cause = Cause {
            kind: CauseKind::NoArp,
            reason: SmolStr::new_static("neighbour FAILED"),
            location: None,
            interface: None,
            netns: ev.tracer.netns.clone(),
            container: ev.container.clone(),
            neigh: Some(ip),
            icmp: None,
            t,
        };
        self.learn(None, CauseKey::Dst(ip), cause, t, sink);
    }

    /// An ICMP error the kernel sent about a TCP packet: a cause for the
    /// packet's flow and destination. A rejection concludes an attempt
    /// that waits; an "unreachable" is only remembered (the client's own
    /// error, or a neighbour failure that explains it, comes next).
    pub(crate) fn icmp(&mut self, ev: &EcsEvent, t: i128, sink: &mut Sink) {
        let Some(icmp) = ev.tracer.icmp.as_ref() else {
            return;
        };
        let Some(kind) = CauseKind::from_icmp(icmp.type_, icmp.code) else {
            return;
        };
        let (Some(src), Some(sp), Some(dst), Some(dp)) = (
            ev.source.ip,
            ev.source.port,
            ev.destination.ip,
            ev.destination.port,
        ) else {
            return;
        };
        if ev.network.transport.as_deref() != Some("tcp") {
            return;
        }
        let cause = Cause {
            kind,
            reason: SmolStr::new(format!("ICMP {}", icmp.name)),
            location: None,
            interface: None,
            netns: ev.tracer.netns.clone(),
            container: ev.container.clone(),
            neigh: None,
            icmp: Some(IcmpSeen {
                name: icmp.name,
                sender: icmp.sender,
            }),
            t,
        };
        let flow = CauseKey::Flow(src, sp, dst, dp);
        if kind == CauseKind::Rejected {
            self.learn(Some(flow), CauseKey::Dst(dst), cause, t, sink);
        } else {
            keep(&mut self.causes, flow, kind, || cause.clone());
            keep(&mut self.causes, CauseKey::Dst(dst), kind, || cause);
        }
    }

    /// A socket that closed with an error or from `SYN_SENT` (`tcp_abort`).
    /// From `SYN_SENT`: the connect failed, now; the cause is the best one
    /// seen for the flow, else the error itself.
    pub(crate) fn abort(&mut self, ev: &EcsEvent, t: i128, sink: &mut Sink) {
        let Some(tcp) = ev.tracer.tcp.as_ref() else {
            return;
        };
        if tcp.old_state != Some("SYN_SENT") || ev.network.transport.as_deref() != Some("tcp") {
            return;
        }
        let Some(key) = flow_key(ev, false) else {
            return;
        };
        let err = tcp.error.clone();
        let cause = self.cause_for(&key).or_else(|| {
            let e = err.as_ref()?;
            CauseKind::from_errno(e).map(|kind| Cause {
                kind,
                reason: e.clone(),
                location: None,
                interface: None,
                netns: None,
                container: None,
                neigh: None,
                icmp: None,
                t,
            })
        });
        // A connect given up with nothing known against it (no error, no
        // cause, not one SYN retransmitted) is the application's business
        // (a short timeout, a cancelled request).
        let syns = self.attempts.get(&key).map_or(0, |a| a.syns);
        if cause.is_none() && err.is_none() && syns == 0 {
            return;
        }
        let a = self.attempts.entry(key, || Attempt::new(t));
        a.last = t;
        if err.is_some() {
            a.error = err;
        }
        let client = ev.source.container.as_ref().or(ev.container.as_ref());
        if client.is_some() {
            a.client = client.cloned();
        }
        if ev.tracer.netns.is_some() {
            a.client_ns.clone_from(&ev.tracer.netns);
        }
        if ev.destination.container.is_some() {
            a.dst_container.clone_from(&ev.destination.container);
        }
        if ev.tracer.service.is_some() {
            a.service.clone_from(&ev.tracer.service);
        }
        if a.alerted {
            return;
        }
        self.conclude(key, cause, t, sink);
    }

    fn learn(
        &mut self,
        flow: Option<CauseKey>,
        dst: CauseKey,
        cause: Cause,
        t: i128,
        sink: &mut Sink,
    ) {
        // An attempt that came first and waits: by tuple, then by address.
        // (Looked up before the cause is kept: neither reads `causes`.)
        let waiting = flow
            .and_then(|f| match f {
                CauseKey::Flow(s, sp, d, dp) => self.find_attempt(s, sp, d, dp),
                CauseKey::Dst(_) => None,
            })
            .or_else(|| self.waiting.get(&dst).map(|w| w.key))
            .filter(|key| self.attempts.get(key).is_some_and(|a| !a.alerted));
        let kind = cause.kind;
        if let Some(f) = flow {
            keep(&mut self.causes, f, kind, || cause.clone());
        }
        match waiting {
            // The common case: nothing waits, the cause moves into its slot.
            None => keep(&mut self.causes, dst, kind, || cause),
            Some(key) => {
                keep(&mut self.causes, dst, kind, || cause.clone());
                self.conclude(key, Some(cause), t, sink);
            }
        }
    }

    /// An attempt of the tuple in any client namespace (the cause's
    /// namespace is not the client's).
    fn find_attempt(&self, s: IpAddr, sp: u16, d: IpAddr, dp: u16) -> Option<FlowKey> {
        let w = self.waiting.get(&CauseKey::Dst(d))?;
        let k = w.key;
        (k.src == s && k.sport == sp && k.dport == dp).then_some(k)
    }

    /// A retransmit: a SYN again (an attempt), or progress (recovery).
    pub(crate) fn retransmit(&mut self, ev: &EcsEvent, t: i128, sink: &mut Sink) {
        let Some(key) = flow_key(ev, false) else {
            return;
        };
        let syn = ev
            .tracer
            .tcp
            .as_ref()
            .and_then(|t| t.state)
            .is_some_and(|s| s == "SYN_SENT");
        if !syn {
            // It established: nothing to say about it, even if a cause was
            // seen meanwhile.
            if self.attempts.remove(&key).is_some() {
                self.unwait(&key);
            }
            return;
        }
        let a = self.attempts.entry(key, || Attempt::new(t));
        a.syns += 1;
        a.last = t;
        let client = ev.source.container.as_ref().or(ev.container.as_ref());
        if client.is_some() {
            a.client = client.cloned();
        }
        if ev.tracer.netns.is_some() {
            a.client_ns.clone_from(&ev.tracer.netns);
        }
        if ev.destination.container.is_some() {
            a.dst_container.clone_from(&ev.destination.container);
        }
        if ev.tracer.service.is_some() {
            a.service.clone_from(&ev.tracer.service);
        }
        let (alerted, syns, first) = (a.alerted, a.syns, a.first);
        if alerted {
            sink.touch(
                Member::Ip(key.dst),
                Some(Action::ConnectFailed),
                u64::from(syns),
            );
            return;
        }
        let w = self
            .waiting
            .entry(CauseKey::Dst(key.dst), || Waiting { key, t });
        w.key = key;
        w.t = t;
        if let Some(c) = self.cause_for(&key) {
            self.conclude(key, Some(c), t, sink);
        } else if syns >= self.syn_threshold && t - first >= self.no_answer_after {
            self.conclude(key, None, t, sink);
        }
    }

    /// A reset. Received while the socket was in `SYN_SENT`: the peer (or
    /// something on the way) refused the connection.
    pub(crate) fn reset(&mut self, ev: &EcsEvent, t: i128, sink: &mut Sink) {
        let tcp = ev.tracer.tcp.as_ref();
        let received = tcp.and_then(|t| t.direction) == Some("received");
        let syn = tcp.and_then(|t| t.state) == Some("SYN_SENT");
        if !(received && syn) {
            return;
        }
        let Some(key) = flow_key(ev, true) else {
            return;
        };
        let a = self.attempts.entry(key, || Attempt::new(t));
        a.last = t;
        // The local end is the destination of a received reset.
        let client = ev.destination.container.as_ref().or(ev.container.as_ref());
        if client.is_some() {
            a.client = client.cloned();
        }
        if ev.tracer.netns.is_some() {
            a.client_ns.clone_from(&ev.tracer.netns);
        }
        if ev.source.container.is_some() {
            a.dst_container.clone_from(&ev.source.container);
        }
        if a.alerted {
            return;
        }
        // A NO_SOCKET drop of the same tuple says where; else the reset is
        // the cause by itself.
        let seen = self
            .cause_for(&key)
            .filter(|c| c.kind == CauseKind::NothingListens);
        let cause = seen.unwrap_or(Cause {
            kind: CauseKind::NothingListens,
            reason: SmolStr::new_static("RST"),
            location: None,
            interface: None,
            netns: None,
            container: None,
            neigh: None,
            icmp: None,
            t,
        });
        self.conclude(key, Some(cause), t, sink);
    }

    fn cause_for(&self, k: &FlowKey) -> Option<Cause> {
        let by_flow = self
            .causes
            .get(&CauseKey::Flow(k.src, k.sport, k.dst, k.dport))
            .cloned();
        by_flow.or_else(|| self.causes.get(&CauseKey::Dst(k.dst)).cloned())
    }

    fn unwait(&mut self, key: &FlowKey) {
        let d = CauseKey::Dst(key.dst);
        if self.waiting.get(&d).is_some_and(|w| w.key == *key) {
            self.waiting.remove(&d);
        }
    }

    /// Marks the attempt alerted and, unless this client/destination was
    /// alerted within the window, says so.
    fn conclude(&mut self, key: FlowKey, cause: Option<Cause>, t: i128, sink: &mut Sink) {
        self.unwait(&key);
        let Some(a) = self.attempts.get_mut(&key) else {
            return;
        };
        a.alerted = true;
        let pair = PairKey {
            netns: key.netns,
            src: key.src,
            dst: key.dst,
            dport: key.dport,
        };
        let window = self.window;
        if self.said.get(&pair).is_some_and(|s| t - s.t < window) {
            sink.touch(
                Member::Ip(key.dst),
                Some(Action::ConnectFailed),
                u64::from(a.syns),
            );
            return;
        }
        self.said.entry(pair, || Said { t }).t = t;
        let Some(a) = self.attempts.get(&key) else {
            return;
        };
        let (line, sym) = alert(key, a, cause.as_ref(), t);
        sink.alert(line, sym);
    }
}

/// The attempt's key from the client's view: `reset` for a received reset
/// (its destination is the local end).
fn flow_key(ev: &EcsEvent, reset: bool) -> Option<FlowKey> {
    let (l, r) = if reset {
        (&ev.destination, &ev.source)
    } else {
        (&ev.source, &ev.destination)
    };
    Some(FlowKey {
        netns: ev.netns().unwrap_or(0),
        src: l.ip?,
        sport: l.port?,
        dst: r.ip?,
        dport: r.port?,
    })
}

/// How the link-layer address of `ip` is found: ARP for IPv4, neighbour
/// discovery for IPv6.
fn resolution(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() {
        "neighbour discovery (NDP)"
    } else {
        "ARP"
    }
}

fn addr(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        IpAddr::V4(ip) => format!("{ip}:{port}"),
    }
}

/// The alert line and its incident symptom.
fn alert(key: FlowKey, a: &Attempt, cause: Option<&Cause>, t: i128) -> (EcsEvent, Symptom) {
    let client = match &a.client {
        Some(c) => format!("{} ({})", c.display_name(), key.src),
        None => format!("{} ({})", text::ns_label(a.client_ns.as_ref()), key.src),
    };
    let service = a.service.as_deref();
    let vip = service.filter(|s| s.vip);
    let dst = match (vip, &a.dst_container) {
        (Some(s), _) => format!(
            "swarm service {} at its VIP {}",
            s.name,
            addr(key.dst, key.dport)
        ),
        (None, Some(c)) => format!("{} ({})", c.display_name(), addr(key.dst, key.dport)),
        (None, None) => addr(key.dst, key.dport),
    };
    let kind = cause.map_or(CauseKind::NoAnswer, |c| c.kind);
    let where_ = cause.map(|c| place(c.netns.as_ref(), c.container.as_ref()));
    let vip_not_served = vip.is_some()
        && matches!(
            kind,
            CauseKind::NoArp | CauseKind::NoAnswer | CauseKind::NothingListens
        );
    let (why, hint) = if let (true, Some(s)) = (vip_not_served, vip) {
        let net = s
            .network
            .as_deref()
            .map(|n| format!(" on network {n}"))
            .unwrap_or_default();
        let what = match kind {
            CauseKind::NoArp if key.dst.is_ipv6() => {
                "nobody answers neighbour discovery (NDP) for it"
            }
            CauseKind::NoArp => "nobody answers ARP for it",
            CauseKind::NothingListens => "nothing behind it accepts the connection",
            _ => "nothing answers it",
        };
        (
            format!(
                "{} is the VIP of swarm service {}{net} and it is not served on this host ({what}: its load balancer has no backend here, e.g. the kernel lacks IPVS)",
                key.dst, s.name
            ),
            format!(
                "load the kernel module ip_vs (modprobe ip_vs) so swarm's load balancer can serve the VIP, or publish the service without a VIP: docker service update --endpoint-mode dnsrr {} (endpoint_mode: dnsrr in a stack file)",
                s.name
            ),
        )
    } else {
        match (kind, cause) {
            (CauseKind::NothingListens, c) => {
                let at = match c.filter(|c| c.reason != "RST") {
                    Some(c) if c.reason == "ECONNREFUSED" => {
                        " (the connection was refused by a reset or an ICMP error from where tracer does not see: another host, or a namespace outside the filters)".to_string()
                    }
                    Some(c) => format!(
                        " (the SYN was dropped as NO_SOCKET in {})",
                        place(c.netns.as_ref(), c.container.as_ref())
                    ),
                    None => " (the SYN was answered with a reset)".to_string(),
                };
                (
                    format!("nothing listens on port {}{at}", key.dport),
                    format!(
                        "start the server or fix the port: check that the service listens on {} (ss -ltn in its namespace) and that the client uses the right port",
                        addr(key.dst, key.dport)
                    ),
                )
            }
            (CauseKind::Firewall, Some(c)) => {
                let p = place(c.netns.as_ref(), c.container.as_ref());
                let at = c
                    .location
                    .as_deref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                // Dropped in the host's namespace on the way from a client
                // elsewhere to a container: the SYN was passing through
                // (routed, or bridged through br_netfilter), so the FORWARD
                // hook, where Docker puts its DOCKER-USER chain.
                let host = c.netns.as_ref().is_some_and(|n| n.host);
                let passing = host
                    && a.dst_container.is_some()
                    && c.netns.as_ref().is_some_and(|n| n.inode != key.netns);
                let (via, hook) = match (&c.interface, passing) {
                    (Some(i), true) => (format!(" it forwarded from {}", text::sh(i)), ", FORWARD hook"),
                    (None, true) => (" it forwarded".to_string(), ", FORWARD hook"),
                    (_, false) => (String::new(), ""),
                };
                let find = if host {
                    // iptables (legacy or nft) counts packets per rule: the
                    // counter that grows with each SYN retry is the rule.
                    format!(
                        "{} (the rule whose pkts counter grows with each retry; nft list ruleset for rules outside iptables)",
                        if passing {
                            "iptables -nvL DOCKER-USER --line-numbers; iptables -nvL FORWARD --line-numbers"
                        } else {
                            "iptables -nvL --line-numbers"
                        }
                    )
                } else {
                    let list = text::in_named_ns(c.netns.as_ref(), "nft list ruleset")
                        .unwrap_or_else(|| {
                            "nft list ruleset (iptables -S) in that namespace".to_string()
                        });
                    format!("{list} (Docker hosts: iptables -S DOCKER-USER)")
                };
                (
                    format!("a firewall rule in {p} dropped the SYN{via} (NETFILTER_DROP{at}{hook})"),
                    format!(
                        "find the rule that drops TCP to {} in {p}: {find}; allow the port or remove the rule",
                        addr(key.dst, key.dport)
                    ),
                )
            }
            (CauseKind::NoArp, c) => {
                let hop = c.and_then(|c| c.neigh).filter(|n| *n != key.dst);
                let who = match hop {
                    Some(h) => format!("the next hop {h}"),
                    None => key.dst.to_string(),
                };
                // An unspecified drop reason says little: its location says
                // which (IPv6 neighbour discovery giving up).
                let p = c
                    .map(|c| {
                        let at = match (c.reason.as_str(), &c.location) {
                            ("NOT_SPECIFIED", Some(l)) => format!(" at {l}"),
                            _ => String::new(),
                        };
                        format!(
                            " ({}{at} in {})",
                            c.reason,
                            place(c.netns.as_ref(), c.container.as_ref())
                        )
                    })
                    .unwrap_or_default();
                (
                    format!("nobody answers {} for {who}{p}", resolution(hop.unwrap_or(key.dst))),
                    format!(
                        "check that {who} exists and is up on the same network (a stopped container, a wrong IP or a host outside the subnet): ip neigh show {}",
                        hop.unwrap_or(key.dst)
                    ),
                )
            }
            (CauseKind::Rejected, Some(c)) => {
                let list = text::in_named_ns(c.netns.as_ref(), "nft list ruleset")
                    .unwrap_or_else(|| {
                        "nft list ruleset (iptables -S) in that namespace".to_string()
                    });
                let why = match &c.icmp {
                    Some(i) => {
                        let port = if i.name == "port-unreachable" {
                            " (a TCP server without a listener answers with a reset, not ICMP)"
                        } else {
                            ""
                        };
                        format!(
                            "{} answered ICMP {}: a firewall rule there rejects the connection{port}",
                            who_answered(i, c),
                            i.name
                        )
                    }
                    None => format!(
                        "the connect was refused locally ({}): a firewall rule or security policy in the client's namespace",
                        c.reason
                    ),
                };
                (
                    why,
                    format!(
                        "find the reject rule for TCP to {}: {list} (look for reject); allow the port or remove the rule (Docker hosts: iptables -S DOCKER-USER)",
                        addr(key.dst, key.dport)
                    ),
                )
            }
            (CauseKind::Unreachable, Some(c)) => match &c.icmp {
                Some(i) if i.name == "time-exceeded" => (
                    format!(
                        "{} answered ICMP time-exceeded: the SYN's TTL ran out, the packets loop between routers",
                        who_answered(i, c)
                    ),
                    format!(
                        "find the routing loop: ip route get {} on each hop (traceroute -T -p {} {})",
                        key.dst, key.dport, key.dst
                    ),
                ),
                Some(i) => {
                    let run = |cmd: String| {
                        text::in_named_ns(c.netns.as_ref(), &cmd).unwrap_or(cmd)
                    };
                    (
                        format!(
                            "{} answered ICMP {}: it cannot reach {} (no route there, or nobody answers its {})",
                            who_answered(i, c),
                            i.name,
                            key.dst,
                            resolution(key.dst)
                        ),
                        format!(
                            "check routing and neighbours where the error came from: {}; {}",
                            run(format!("ip route get {}", key.dst)),
                            run(format!("ip neigh show {}", key.dst))
                        ),
                    )
                }
                None => (
                    format!(
                        "connect() failed with {}: an ICMP unreachable answered the SYN, from a router or firewall tracer does not see (another host, or a namespace outside the filters)",
                        c.reason
                    ),
                    format!(
                        "find the router or firewall that answers: ip route get {}; traceroute -T -p {} {}",
                        key.dst, key.dport, key.dst
                    ),
                ),
            },
            (CauseKind::NoRoute, c) => {
                let p = c
                    .map(|c| format!(" ({} in {})", c.reason, place(c.netns.as_ref(), c.container.as_ref())))
                    .unwrap_or_default();
                (
                    format!("there is no route to {}{p}", key.dst),
                    format!(
                        "add the missing route or default gateway: ip route get {} in the namespace of the drop",
                        key.dst
                    ),
                )
            }
            (
                CauseKind::Firewall
                | CauseKind::Rejected
                | CauseKind::Unreachable
                | CauseKind::NoAnswer,
                _,
            ) => (
                format!(
                    "no answer and no drop seen on this host after {} SYN retransmits",
                    a.syns
                ),
                format!(
                    "the SYNs leave this host unanswered: check the path to {} beyond it (remote firewall, routing, the server's host)",
                    key.dst
                ),
            ),
        }
    };
    let why = match a.error.as_deref() {
        // Said already when the error is the cause.
        Some(e) if cause.is_none_or(|c| c.reason != e) => {
            format!("{why} (connect() failed with {e})")
        }
        _ => why,
    };
    let message = format!("TCP connection from {client} to {dst} never established: {why}");
    let payload = Alert {
        type_: "connect_failed",
        cause: kind.as_str(),
        cause_seen: cause.map(|c| Where {
            icmp: c.icmp.as_ref().map(|i| i.name),
            icmp_sender: c.icmp.as_ref().and_then(|i| i.sender),
            location: c.location.as_deref(),
            neighbour: c.neigh,
            netns: c.netns.as_ref(),
            place: where_.clone().unwrap_or_default(),
            reason: c.reason.as_str(),
        }),
        client: text::FlowEnd {
            container: text::container_name(a.client.as_ref()),
            ip: key.src,
            netns: a.client_ns.as_ref(),
            port: key.sport,
        },
        connect_error: a.error.as_deref(),
        destination: Dest {
            container: text::container_name(a.dst_container.as_ref()),
            ip: key.dst,
            port: key.dport,
            service,
        },
        duration_s: text::secs(a.last - a.first),
        hint: &hint,
        syn_retransmits: a.syns,
        vip_not_served,
    };
    let mut line = alert_line(t, Action::ConnectFailed, message, &payload);
    line.container = a.client.clone();
    line.source.ip = Some(key.src);
    line.source.port = Some(key.sport);
    line.source.container = a.client.clone();
    line.destination.ip = Some(key.dst);
    line.destination.port = Some(key.dport);
    line.destination.container = a.dst_container.clone();
    line.tracer.netns = a.client_ns.clone();
    line.tracer.service = a.service.clone();
    line.tracer.count = Some(u64::from(a.syns.max(1)));
    let containers = super::distinct_containers(a.client.iter().chain(a.dst_container.iter()));
    let sym = Symptom {
        kind: Action::ConnectFailed,
        count: u64::from(a.syns.max(1)),
        containers,
        ips: vec![key.src, key.dst],
        macs: Vec::new(),
        facts: Facts::Connect {
            client: text::container_name(a.client.as_ref()).unwrap_or_else(|| key.src.to_string()),
            dst: match (vip, &a.dst_container) {
                (Some(s), _) => format!("service {} (VIP {})", s.name, addr(key.dst, key.dport)),
                (None, Some(c)) => format!("{} ({})", c.display_name(), addr(key.dst, key.dport)),
                (None, None) => addr(key.dst, key.dport),
            },
            dst_ip: key.dst,
            why,
            hint,
        },
    };
    (line, sym)
}

/// Who sent an ICMP error, in words: its address and where it is
/// ("10.0.3.1 (netns router)").
fn who_answered(i: &IcmpSeen, c: &Cause) -> String {
    let p = place(c.netns.as_ref(), c.container.as_ref());
    match i.sender {
        Some(ip) => format!("{ip} ({p})"),
        None => p,
    }
}
