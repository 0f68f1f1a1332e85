//! Detectors: the event stream in, verdicts out.
//!
//! The same code runs live and in replay, on event time only (no wall
//! clock), so the same events always give the same lines. Each detector
//! keeps a little bounded state per key and speaks once when its threshold
//! is crossed, then at most once per window while the condition lasts:
//!
//! - [`fdb_flap`]: a MAC moving between ports of one bridge (the vxlan
//!   proxy-ARP outage when one of the ports is a vxlan);
//! - [`arp`]: duplicate ARP replies (something answers on another's behalf)
//!   and IP conflicts (one IP, two MACs);
//! - [`retransmit`]: TCP flows retransmitting without forward progress, with a
//!   per-container roll-up;
//! - [`connect`]: TCP connections that never establish, with the cause
//!   (nothing listens, a firewall, a firewall's ICMP reject, no ARP answer,
//!   no route, an ICMP unreachable) correlated across namespaces;
//! - [`idle`]: an idle TCP flow whose first send after the silence is never
//!   acknowledged, joined with that flow's drops on this host (a stateful
//!   device forgot the connection);
//! - [`drops`]: per-drop lines rate-limited on event time, every drop
//!   accounted for in interval summaries;
//! - [`overlay`]: multicast an overlay drops, the overlay's own traffic
//!   between hosts blocked, MTU blackholes (read from drops, and in
//!   [`mtu`] from the sizes of the segments a flow retransmits);
//! - [`incident`]: alerts sharing a container, IP or MAC within a window
//!   joined into one incident with a lifecycle and an explanation.
//!
//! Alert lines: `event.kind: "alert"`, `event.action` = detector name,
//! `message` = one sentence, `tracer.alert` = the structured facts.
//!
//! Input is typed: [`Detectors::observe`] matches the event's
//! [`Action`] exhaustively, so a new action must say here whether a detector
//! looks at it. Adding a detector touches:
//! - `detect/<name>.rs`: its state (bounded `table`s), built from `Cfg`;
//!   per-interval reports through `interval::PerInterval`;
//! - `event/action.rs`: the [`Action`] of its alert lines;
//! - this file: its field in [`Detectors`], its arm in `observe`, its
//!   `Facts` variant and its table sizes in [`DetectStats`];
//! - `detect/config.rs`: a row per setting (default, range, help), which
//!   `main.rs` turns into a flag with one `#[arg]`;
//! - `detect/incident.rs`, when its alerts add to incident explanations.

mod arp;
pub mod config;
mod connect;
#[cfg(test)]
mod connect_tests;
mod drops;
mod fdb_flap;
mod idle;
mod incident;
mod interval;
mod mtu;
mod overlay;
#[cfg(test)]
mod overlay_tests;
mod retransmit;
mod table;
#[cfg(test)]
mod tests;
mod text;

use std::net::IpAddr;

use serde::Serialize;

pub use self::config::DetectConfig;
use self::{config::Cfg, interval::PerInterval};
use crate::event::{Action, ContainerRef, EcsEvent, Kind, Mac, RawJson};

const NS_PER_S: i128 = 1_000_000_000;

/// Table sizes and what was dropped to keep them bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DetectStats {
    /// Keys held in all tables together.
    pub tracked_keys: usize,
    /// Entries evicted because a table was full (least recently seen first).
    pub evictions: u64,
    /// Entries forgotten because they were idle for longer than their window.
    pub expired: u64,
    pub fdb_macs: usize,
    pub arp_keys: usize,
    pub flows: usize,
    pub drop_keys: usize,
    /// `connect_failed` state: attempts, causes, alerted pairs (printed
    /// only when non-zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub connect_keys: usize,
    /// Overlay faults tracked (multicast, underlay, MTU); printed only when
    /// there are some.
    #[serde(skip_serializing_if = "is_zero")]
    pub overlay_keys: usize,
    /// Idle-flow candidates and the TCP drops they may be joined with;
    /// printed only when there are some.
    #[serde(skip_serializing_if = "is_zero")]
    pub idle_keys: usize,
    pub open_incidents: usize,
    /// Drops counted under the "(other)" key because the drop table was full.
    pub drop_overflow: u64,
    /// Alert lines emitted (detectors and roll-ups, not incidents).
    pub alerts: u64,
    /// Incidents opened.
    pub incidents: u64,
    pub drops_seen: u64,
    pub drops_printed: u64,
    pub drops_summarised: u64,
    /// Entries the pipeline's MAC → port table (what tells an `fdb_move`
    /// from an `fdb_learn`) forgot because it was full, least recently
    /// seen first. Printed only when nonzero.
    #[serde(skip_serializing_if = "is_zero")]
    pub fdb_table_evictions: u64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// What an alert touches, for joining alerts into incidents.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Member {
    Container(String),
    Ip(IpAddr),
    Mac(Mac),
}

/// The facts an incident explanation is written from, per alert type.
#[derive(Clone, Debug)]
pub(crate) enum Facts {
    Flap {
        mac: Mac,
        ip: Option<IpAddr>,
        owner: Option<String>,
        ports: Vec<String>,
        vxlan: Option<String>,
        bridge_ns: String,
        ns: text::NsRef,
    },
    ArpDup {
        ip: IpAddr,
        mac: Mac,
        owner: Option<String>,
        requester: String,
        replies: u64,
        vxlan: Option<String>,
        vxlan_ns: text::NsRef,
        interfaces: Vec<String>,
    },
    Conflict {
        ip: IpAddr,
        macs: Vec<(Mac, Option<String>)>,
        ns: text::NsRef,
    },
    Retransmit {
        flow: String,
        src: String,
        dst: String,
        dst_ip: IpAddr,
        src_ns: text::NsRef,
    },
    IdleFlow {
        flow: String,
        src: String,
        idle_ms: u32,
        /// Where its segments were dropped ("netns lb-1"), if on this host.
        place: Option<String>,
        /// "REASON at location" of those drops.
        drop: Option<String>,
    },
    Drops {
        reason: String,
        location: String,
        total: u64,
        place: String,
    },
    Connect {
        client: String,
        dst: String,
        /// The destination's address (a retransmitting flow of the same
        /// incident may go elsewhere).
        dst_ip: IpAddr,
        /// The cause, one clause.
        why: String,
        hint: String,
    },
    Multicast {
        sender: String,
        /// `group:port`.
        group: String,
        overlay: String,
    },
    Underlay {
        peer: IpAddr,
        /// The protocol and port, in words.
        what: String,
        place: String,
        /// "overlay backend" / "overlays a and b".
        rides: String,
        hint: String,
    },
    Mtu {
        flow: String,
        place: String,
        recommended: Option<u32>,
        hint: String,
        reason: String,
    },
}

/// What the detectors ask about the host beyond the event itself (the
/// identity index answers, live and in replay alike).
pub trait NetFacts {
    /// IFLA_MTU of interface `ifname` in namespace `netns`.
    fn mtu(&self, netns: u32, ifname: &str) -> Option<u32>;
    /// The interface of the namespace with the smallest MTU (`lo` aside).
    fn smallest_mtu(&self, netns: u32) -> Option<(String, u32)>;
    /// Whether `ip` is an address of namespace `netns`.
    fn is_local(&self, netns: u32, ip: IpAddr) -> bool;
    /// The vxlan data-path ports of this host, each with the overlays on it.
    fn vxlan_ports(&self) -> Vec<(u16, Vec<String>)>;
}

/// Nothing known beyond the events.
pub struct NoFacts;

impl NetFacts for NoFacts {
    fn mtu(&self, _: u32, _: &str) -> Option<u32> {
        None
    }
    fn smallest_mtu(&self, _: u32) -> Option<(String, u32)> {
        None
    }
    fn is_local(&self, _: u32, _: IpAddr) -> bool {
        false
    }
    fn vxlan_ports(&self) -> Vec<(u16, Vec<String>)> {
        Vec::new()
    }
}

impl NetFacts for crate::identity::IdentityIndex {
    fn mtu(&self, netns: u32, ifname: &str) -> Option<u32> {
        crate::identity::IdentityIndex::mtu(self, netns, ifname)
    }
    fn smallest_mtu(&self, netns: u32) -> Option<(String, u32)> {
        crate::identity::IdentityIndex::smallest_mtu(self, netns)
    }
    fn is_local(&self, netns: u32, ip: IpAddr) -> bool {
        crate::identity::IdentityIndex::is_local(self, netns, ip)
    }
    fn vxlan_ports(&self) -> Vec<(u16, Vec<String>)> {
        crate::identity::IdentityIndex::vxlan_ports(self)
    }
}

/// The containers of `cs`, each once (first occurrence kept), for a
/// symptom's `containers`.
pub(crate) fn distinct_containers<'a>(
    cs: impl IntoIterator<Item = &'a ContainerRef>,
) -> Vec<ContainerRef> {
    let mut out: Vec<ContainerRef> = Vec::new();
    for c in cs {
        if !out.iter().any(|x| x.same(c)) {
            out.push(c.clone());
        }
    }
    out
}

/// An alert as the incident correlator sees it.
#[derive(Clone, Debug)]
pub(crate) struct Symptom {
    /// The alert's `event.action`.
    pub(crate) kind: Action,
    pub(crate) count: u64,
    pub(crate) containers: Vec<ContainerRef>,
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) macs: Vec<Mac>,
    pub(crate) facts: Facts,
}

/// Where detectors put what they produce during one call; drained by
/// [`Detectors`] right after (the buffers are reused, no allocation when
/// nothing happens).
#[derive(Default)]
pub(crate) struct Sink {
    pub(crate) lines: Vec<(EcsEvent, Option<Symptom>)>,
    /// Symptoms of already-alerted conditions that keep incidents alive.
    pub(crate) touches: Vec<Touch>,
}

/// An alerted condition goes on without a new alert line: keeps its
/// incident open and its count current.
pub(crate) struct Touch {
    pub(crate) member: Member,
    /// Alert type whose count this updates, if any.
    pub(crate) kind: Option<Action>,
    pub(crate) count: u64,
}

impl Sink {
    pub(crate) fn touch(&mut self, member: Member, kind: Option<Action>, count: u64) {
        self.touches.push(Touch {
            member,
            kind,
            count,
        });
    }

    pub(crate) fn alert(&mut self, line: EcsEvent, sym: Symptom) {
        self.lines.push((line, Some(sym)));
    }
}

/// A fresh alert line.
pub(crate) fn alert_line(
    ts: i128,
    action: Action,
    message: String,
    payload: &impl Serialize,
) -> EcsEvent {
    let mut e = EcsEvent::new(ts, Kind::Alert, action);
    e.message = Some(message);
    e.tracer.alert = RawJson::of(payload);
    e
}

/// [`alert_line`] about one TCP flow, with the flow's fields from the
/// event `ev` that triggered it (container, endpoints, namespace,
/// interface, socket state) and `count` in `tracer.count`.
pub(crate) fn flow_alert_line(
    ts: i128,
    action: Action,
    message: String,
    payload: &impl Serialize,
    ev: &EcsEvent,
    count: u64,
) -> EcsEvent {
    let mut line = alert_line(ts, action, message, payload);
    line.container = ev.container.clone();
    line.source = ev.source.clone();
    if line.source.container.is_none() {
        line.source.container = ev.container.clone();
    }
    line.destination = ev.destination.clone();
    line.network = ev.network.clone();
    line.tracer.netns = ev.tracer.netns.clone();
    line.tracer.interface = ev.tracer.interface.clone();
    line.tracer.tcp = ev.tracer.tcp.clone();
    line.tracer.count = Some(count);
    line
}

/// What is known about a MAC from any event: its IP (ARP replies,
/// neighbour updates) and its owner (any event naming the MAC's container),
/// so every alert can name both.
#[derive(Clone, Debug, Default)]
pub(crate) struct MacInfo {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) owner: Option<ContainerRef>,
    pub(crate) last: i128,
}

impl MacInfo {
    fn learn(&mut self, ip: Option<IpAddr>, owner: Option<&ContainerRef>, t: i128) {
        if ip.is_some() {
            self.ip = ip;
        }
        if let Some(c) = owner {
            if self.owner.as_ref().is_none_or(|o| !o.same(c)) {
                self.owner = Some(c.clone());
            }
        }
        self.last = t;
    }
}

pub(crate) type Macs = table::Bounded<Mac, MacInfo>;

impl table::Stamped for MacInfo {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

/// How long a MAC → IP association is remembered without being seen again.
const MAC_IP_TTL: i128 = 600 * NS_PER_S;
/// How often idle state is swept out (event time).
const SWEEP_EVERY: i128 = NS_PER_S;
/// Least time between two `detector_status` lines reporting lost state.
const STATUS_EVERY: i128 = 60 * NS_PER_S;

/// All detectors and the incident correlator.
pub struct Detectors {
    now: i128,
    started: bool,
    next_sweep: i128,
    fdb: fdb_flap::FdbFlap,
    arp: arp::Arp,
    tcp: retransmit::Retransmit,
    connect: connect::Connect,
    idle: idle::Idle,
    drops: drops::Drops,
    overlay: overlay::Overlay,
    incidents: incident::Incidents,
    macs: Macs,
    sink: Sink,
    alerts: u64,
    max_keys: usize,
    /// Next event time at which a `detector_status` line is due if state
    /// was lost since the last one (evictions, drops counted as "(other)").
    next_status: i128,
    reported_loss: u64,
    /// See [`DetectStats::fdb_table_evictions`] (counted by the pipeline).
    fdb_table_evictions: u64,
}

impl Detectors {
    pub fn new(cfg: DetectConfig) -> Self {
        let c = Cfg::from(&cfg);
        Self {
            fdb: fdb_flap::FdbFlap::new(&c),
            arp: arp::Arp::new(&c),
            tcp: retransmit::Retransmit::new(&c),
            connect: connect::Connect::new(&c),
            idle: idle::Idle::new(&c),
            drops: drops::Drops::new(&c),
            overlay: overlay::Overlay::new(&c),
            incidents: incident::Incidents::new(&c),
            macs: table::Bounded::new(c.max_keys),
            now: 0,
            started: false,
            next_sweep: 0,
            sink: Sink::default(),
            alerts: 0,
            max_keys: c.max_keys,
            next_status: 0,
            reported_loss: 0,
            fdb_table_evictions: 0,
        }
    }

    /// The pipeline's MAC → port table has evicted `n` entries in all
    /// (reported in `detector_status`).
    pub fn set_fdb_table_evictions(&mut self, n: u64) {
        self.fdb_table_evictions = n;
    }

    /// Every event in order. Returns false when the event line itself must
    /// not be printed (rate-limited drop). Appends alert / summary /
    /// incident lines to `out`.
    pub fn observe(&mut self, ev: &EcsEvent, out: &mut Vec<EcsEvent>) -> bool {
        self.observe_with(ev, &NoFacts, out)
    }

    /// [`Detectors::observe`] with what identity knows about the host
    /// (interface MTUs, local addresses, vxlan ports).
    pub fn observe_with(
        &mut self,
        ev: &EcsEvent,
        facts: &dyn NetFacts,
        out: &mut Vec<EcsEvent>,
    ) -> bool {
        if ev.event.kind != Kind::Event {
            // Our own lines or status lines fed back: nothing to detect.
            return true;
        }
        self.advance(ev.timestamp, out);
        // Event time never goes backwards for the detectors: a record a
        // little out of order (per-CPU timestamps) counts at "now".
        let t = self.now;
        // Every action named, no `_ =>` arm: a new action must say here
        // whether a detector looks at it.
        let print = match ev.event.action {
            Action::SkbDrop => {
                self.connect.drop(ev, t, &mut self.sink);
                self.overlay.drop(ev, t, facts, &mut self.sink);
                self.idle.drop_seen(ev, t);
                self.drops.observe(ev, t)
            }
            Action::TcpRetransmit => {
                self.connect.retransmit(ev, t, &mut self.sink);
                self.tcp.retransmit(ev, t, &mut self.sink);
                self.idle.retransmit(ev, t, &mut self.sink);
                self.overlay.retransmit(ev, t, facts, &mut self.sink);
                true
            }
            Action::TcpAbort => {
                self.connect.abort(ev, t, &mut self.sink);
                true
            }
            Action::IcmpError => {
                self.connect.icmp(ev, t, &mut self.sink);
                true
            }
            Action::TcpReset => {
                self.connect.reset(ev, t, &mut self.sink);
                self.tcp.reset(ev);
                self.idle.reset(ev);
                true
            }
            Action::FdbMove => {
                self.learn_mac(&ev.source, None, t);
                self.fdb.moved(ev, t, &self.macs, &mut self.sink);
                true
            }
            Action::FdbLearn => {
                self.learn_mac(&ev.source, None, t);
                self.fdb.learned(ev, t, &self.macs, &mut self.sink);
                true
            }
            Action::ArpReply => {
                self.learn_mac(&ev.source, ev.source.ip, t);
                self.arp.reply(ev, t, &self.macs, &mut self.sink);
                true
            }
            Action::NeighUpdate => {
                if let Some(ip) = ev.destination.ip {
                    self.learn_mac(&ev.destination, Some(ip), t);
                    // A failed resolution of an IP under investigation means
                    // the symptom goes on (ordinary REACHABLE/STALE churn
                    // does not keep an incident open).
                    let failed = ev
                        .tracer
                        .neigh
                        .as_ref()
                        .is_some_and(|n| n.new_state.contains("FAILED"));
                    if failed {
                        self.sink.touch(Member::Ip(ip), None, 0);
                        self.connect.neigh(ev, t, &mut self.sink);
                    }
                }
                true
            }
            // A delete followed by a learn on another port is caught by
            // `FdbLearn` (the flap state remembers the port).
            Action::FdbDelete => true,
            // Lines of tracer's own with `event.kind: "event"` (none today):
            // nothing to detect.
            Action::FdbFlap
            | Action::ArpDuplicateReply
            | Action::IpConflict
            | Action::RetransmitBurst
            | Action::RetransmitRollup
            | Action::ConnectFailed
            | Action::IdleFlowKilled
            | Action::DropSummary
            | Action::OverlayMulticastDropped
            | Action::OverlayUnderlayBlocked
            | Action::MtuBlackhole
            | Action::Incident
            | Action::ProbeStatus
            | Action::LossReport
            | Action::DetectorStatus
            | Action::EnrichmentStatus
            | Action::DecodeError => true,
        };
        self.drain(t, out);
        print
    }

    /// Drops the kernel counted instead of sending (its per-place drop
    /// budget): `ev` stands for them (an `skb_drop` event with namespace,
    /// container, reason and location), `count` says how many. They count in
    /// the `drop_summary` of their key, never as printed lines, and feed no
    /// per-flow detector (the kernel kept no flow for them).
    pub fn held_back_drops(&mut self, ev: &EcsEvent, count: u64, out: &mut Vec<EcsEvent>) {
        if count == 0 {
            return;
        }
        self.advance(ev.timestamp, out);
        let t = self.now;
        self.drops.count_held_back(ev, t, count);
    }

    /// Moves detector time to `now` (Unix ns, event time): due drop
    /// summaries, roll-ups, resolved incidents.
    pub fn advance(&mut self, now: i128, out: &mut Vec<EcsEvent>) {
        if !self.started {
            self.started = true;
            self.now = now;
            self.next_sweep = now + SWEEP_EVERY;
            self.drops.start(now);
            self.tcp.start(now);
            self.next_status = now + STATUS_EVERY;
            return;
        }
        if now <= self.now {
            return;
        }
        self.now = now;
        let start = out.len();
        self.drops.advance(now, &mut self.sink);
        self.tcp.advance(now, &mut self.sink);
        self.drain(now, out);
        self.incidents.advance(now, out);
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + SWEEP_EVERY;
        }
        if now >= self.next_status {
            self.next_status = now + STATUS_EVERY;
            let s = self.stats();
            if s.evictions + s.drop_overflow + s.fdb_table_evictions > self.reported_loss {
                out.push(self.status_line(now, s));
            }
        }
        // Lines of different sources due in one step, in time order.
        out[start..].sort_by_key(|e| e.timestamp);
    }

    /// End of run: flushes pending drop summaries (and roll-ups) so every
    /// drop is accounted for. Open incidents stay open.
    pub fn finish(&mut self, now: i128, out: &mut Vec<EcsEvent>) {
        self.advance(now, out);
        let now = self.now.max(now);
        let start = out.len();
        self.drops.flush(now, &mut self.sink);
        self.tcp.flush(now, &mut self.sink);
        self.drain(now, out);
        out.push(self.status_line(now, self.stats()));
        out[start..].sort_by_key(|e| e.timestamp);
    }

    /// `detector_status`: what the detectors hold and what they had to
    /// forget to stay within `--max-keys` (at the end of a run, and once a
    /// minute of event time while tables overflow).
    fn status_line(&mut self, now: i128, s: DetectStats) -> EcsEvent {
        self.reported_loss = s.evictions + s.drop_overflow + s.fdb_table_evictions;
        let mut e = EcsEvent::new(now, Kind::State, Action::DetectorStatus);
        let mut msg = format!(
            "detectors hold {} keys; {} alerts, {} incidents opened so far",
            s.tracked_keys, s.alerts, s.incidents
        );
        if s.evictions > 0 {
            msg.push_str(&format!(
                "; {} entries evicted because a table was full (--detect-max-keys {}): \
                 alerts about the oldest flows/MACs may be missed",
                s.evictions, self.max_keys
            ));
        }
        if s.drop_overflow > 0 {
            msg.push_str(&format!(
                "; {} drops counted under \"(other)\" (drop table full)",
                s.drop_overflow
            ));
        }
        if s.fdb_table_evictions > 0 {
            msg.push_str(&format!(
                "; {} MAC → port entries forgotten (FDB table full, least recently seen first): \
                 a move of such a MAC reads as a learn",
                s.fdb_table_evictions
            ));
        }
        e.message = Some(msg);
        e.tracer.detect = serde_json::to_value(&s).ok().map(Box::new);
        e
    }

    pub fn stats(&self) -> DetectStats {
        let fdb_macs = self.fdb.len();
        let arp_keys = self.arp.len();
        let flows = self.tcp.len();
        let drop_keys = self.drops.len();
        let connect_keys = self.connect.len();
        let overlay_keys = self.overlay.len();
        let idle_keys = self.idle.len();
        let open_incidents = self.incidents.len();
        DetectStats {
            tracked_keys: fdb_macs
                + arp_keys
                + flows
                + drop_keys
                + connect_keys
                + overlay_keys
                + idle_keys
                + open_incidents
                + self.macs.len(),
            evictions: self.fdb.evicted()
                + self.arp.evicted()
                + self.tcp.evicted()
                + self.connect.evicted()
                + self.overlay.evicted()
                + self.idle.evicted()
                + self.incidents.evicted
                + self.macs.evicted,
            expired: self.fdb.expired()
                + self.arp.expired()
                + self.tcp.expired()
                + self.connect.expired()
                + self.overlay.expired()
                + self.idle.expired()
                + self.macs.expired,
            fdb_macs,
            arp_keys,
            flows,
            drop_keys,
            connect_keys,
            overlay_keys,
            idle_keys,
            open_incidents,
            drop_overflow: self.drops.overflow,
            alerts: self.alerts,
            incidents: self.incidents.opened,
            drops_seen: self.drops.seen,
            drops_printed: self.drops.printed,
            drops_summarised: self.drops.summarised,
            fdb_table_evictions: self.fdb_table_evictions,
        }
    }

    fn drain(&mut self, t: i128, out: &mut Vec<EcsEvent>) {
        // Called twice per event, and nearly always with nothing to do:
        // no `Vec::drain` set up and torn down for nothing.
        if self.sink.lines.is_empty() && self.sink.touches.is_empty() {
            return;
        }
        for (line, sym) in self.sink.lines.drain(..) {
            let ts = line.timestamp;
            if line.event.kind == Kind::Alert {
                self.alerts += 1;
            }
            out.push(line);
            if let Some(sym) = sym {
                self.incidents.on_alert(&sym, ts, out);
            }
        }
        for m in self.sink.touches.drain(..) {
            self.incidents.touch(&m, t);
        }
    }

    /// Remembers the IP / owner of the endpoint's MAC (an entry is only
    /// made when there is something to remember).
    fn learn_mac(&mut self, e: &crate::event::Endpoint, ip: Option<IpAddr>, t: i128) {
        let Some(mac) = e.mac.filter(|m| !m.is_zero()) else {
            return;
        };
        if ip.is_none() && e.container.is_none() {
            if let Some(m) = self.macs.get_mut(&mac) {
                m.last = t;
            }
            return;
        }
        self.macs
            .entry(mac, MacInfo::default)
            .learn(ip, e.container.as_ref(), t);
    }

    fn sweep(&mut self, now: i128) {
        self.fdb.expire(now);
        self.arp.expire(now);
        self.tcp.expire(now);
        self.connect.expire(now);
        self.overlay.expire(now);
        self.idle.expire(now);
        self.macs.expire(|m| now - m.last <= MAC_IP_TTL);
    }
}
