//! `retransmit_burst`: a TCP flow retransmitting again and again without
//! forward progress (`snd_una` unchanged between retransmits), and
//! `retransmit_rollup`: per container (or IP when identity is unknown), how
//! many of its flows were affected in each interval.
//!
//! A lone retransmit only creates or updates one fixed-size map entry.

use std::net::IpAddr;

use serde::Serialize;

use super::{
    alert_line, flow_alert_line,
    interval::{IntervalClock, PerInterval},
    table::{Bounded, Episode, FastMap, Interner, Stamped, Verdict, OVERFLOW},
    text::{self, FlowEnd},
    Cfg, Facts, Member, Sink, Symptom,
};
use crate::{
    event::{Action, ContainerRef, EcsEvent, Endpoint, Kind},
    kernel::clock::format_ts,
};

/// Most peers listed in a roll-up line.
const MAX_PEERS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FlowKey {
    netns: u32,
    local: IpAddr,
    lport: u16,
    remote: IpAddr,
    rport: u16,
}

/// Who a flow end is, for roll-ups: a container (interned id) or an IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum RollKey {
    Container(u32),
    Ip(IpAddr),
}

struct Flow {
    snd_una: Option<u32>,
    ep: Episode,
    /// Roll-up interval in which this flow was last counted.
    epoch: i64,
    /// Roll-up interval in which it was last counted as affected.
    burst_epoch: i64,
    local: RollKey,
    remote: RollKey,
    last: i128,
}

impl Stamped for Flow {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

#[derive(Default)]
struct Roll {
    flows: u32,
    affected: u32,
    peers: Vec<RollKey>,
}

pub(crate) struct Retransmit {
    threshold: u32,
    window: i128,
    clock: IntervalClock,
    min_flows: u32,
    flows: Bounded<FlowKey, Flow>,
    containers: Interner<ContainerRef>,
    rolls: FastMap<RollKey, Roll>,
    max_rolls: usize,
    /// Roll-up counts not kept because the roll-up table was full.
    pub(crate) rolls_dropped: u64,
}

#[derive(Serialize)]
struct BurstAlert<'a> {
    /// Retransmits without progress in this episode.
    count: u64,
    destination: FlowEnd<'a>,
    duration_s: f64,
    first_seen: String,
    last_seen: String,
    realert: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    snd_una: Option<u32>,
    source: FlowEnd<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    threshold: u32,
    #[serde(rename = "type")]
    type_: &'static str,
    window_s: f64,
}

#[derive(Serialize)]
struct RollupAlert<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    /// Flows of this container in a retransmit burst in the interval.
    flows_affected: u32,
    /// Flows of this container that retransmitted at all in the interval.
    flows_retransmitting: u32,
    interval_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    peers: Vec<String>,
    #[serde(rename = "type")]
    type_: &'static str,
}

impl Retransmit {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            threshold: c.rtx_threshold,
            window: c.rtx_window,
            clock: IntervalClock::new(c.rollup_interval),
            min_flows: c.rollup_min_flows,
            flows: Bounded::new(c.max_keys),
            containers: Interner::new(c.max_keys),
            rolls: FastMap::default(),
            max_rolls: c.max_keys,
            rolls_dropped: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.flows.evicted
    }

    pub(crate) fn expired(&self) -> u64 {
        self.flows.expired
    }

    pub(crate) fn expire(&mut self, now: i128) {
        let w = self.window;
        self.flows.expire(|f| now - f.last <= w);
    }

    fn roll_key(&mut self, e: &Endpoint, fallback: Option<&ContainerRef>) -> Option<RollKey> {
        match e.container.as_ref().or(fallback) {
            Some(c) => {
                let id = self.containers.intern_container(c);
                if id == OVERFLOW {
                    e.ip.map(RollKey::Ip)
                } else {
                    Some(RollKey::Container(id))
                }
            }
            None => e.ip.map(RollKey::Ip),
        }
    }

    fn roll_name(&self, k: RollKey) -> String {
        match k {
            RollKey::Container(id) => self
                .containers
                .value(id)
                .map(ContainerRef::display_name)
                .unwrap_or_else(|| self.containers.name(id).to_string()),
            RollKey::Ip(ip) => ip.to_string(),
        }
    }

    pub(crate) fn retransmit(&mut self, ev: &EcsEvent, t: i128, sink: &mut Sink) {
        let (Some(lip), Some(lport), Some(rip), Some(rport)) = (
            ev.source.ip,
            ev.source.port,
            ev.destination.ip,
            ev.destination.port,
        ) else {
            return;
        };
        let key = FlowKey {
            netns: ev.netns().unwrap_or(0),
            local: lip,
            lport,
            remote: rip,
            rport,
        };
        let snd_una = ev.tracer.tcp.as_ref().and_then(|t| t.snd_una);
        let known = self.flows.get(&key).map(|f| (f.local, f.remote));
        if known.is_none() {
            let local = self
                .roll_key(&ev.source, ev.container.as_ref())
                .unwrap_or(RollKey::Ip(lip));
            let remote = self
                .roll_key(&ev.destination, None)
                .unwrap_or(RollKey::Ip(rip));
            let threshold = self.threshold;
            self.flows.entry(key, || Flow {
                snd_una,
                ep: Episode::new(threshold),
                epoch: i64::MIN,
                burst_epoch: i64::MIN,
                local,
                remote,
                last: t,
            });
        } else if let Some((l, r)) = known {
            // Identity may arrive after the flow was first seen.
            if matches!(l, RollKey::Ip(_))
                && (ev.source.container.is_some() || ev.container.is_some())
            {
                if let Some(k) = self.roll_key(&ev.source, ev.container.as_ref()) {
                    if let Some(f) = self.flows.get_mut(&key) {
                        f.local = k;
                    }
                }
            }
            if matches!(r, RollKey::Ip(_)) && ev.destination.container.is_some() {
                if let Some(k) = self.roll_key(&ev.destination, None) {
                    if let Some(f) = self.flows.get_mut(&key) {
                        f.remote = k;
                    }
                }
            }
        }
        let window = self.window;
        let epoch = self.clock.epoch();
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        if f.snd_una != snd_una {
            // Forward progress: a new run starts.
            f.ep.reset();
            f.snd_una = snd_una;
        }
        f.last = t;
        let verdict = f.ep.step(t, window);
        let (local, remote) = (f.local, f.remote);
        let count_flow = f.epoch != epoch;
        f.epoch = epoch;
        let count_burst = f.ep.alerted && f.burst_epoch != epoch;
        if count_burst {
            f.burst_epoch = epoch;
        }
        let (count, first, last) = (f.ep.count, f.ep.first, f.ep.last);
        if count_flow {
            for k in [local, remote] {
                if let Some(r) = self.roll(k) {
                    r.flows += 1;
                }
            }
        }
        if count_burst {
            for (me, peer) in [(local, remote), (remote, local)] {
                if let Some(r) = self.roll(me) {
                    r.affected += 1;
                    if r.peers.len() < MAX_PEERS && !r.peers.contains(&peer) {
                        r.peers.push(peer);
                    }
                }
            }
        }
        match verdict {
            Verdict::Quiet => {}
            Verdict::Ongoing => sink.touch(Member::Ip(rip), Some(Action::RetransmitBurst), count),
            Verdict::Crossed | Verdict::Again => {
                let (line, sym) = self.burst_alert(
                    ev,
                    t,
                    count,
                    first,
                    last,
                    snd_una,
                    verdict == Verdict::Again,
                );
                sink.alert(line, sym);
            }
        }
    }

    /// The roll-up entry of `k`; none when the table is full (a flood of
    /// distinct peers in one interval is not rolled up beyond `max_keys`).
    fn roll(&mut self, k: RollKey) -> Option<&mut Roll> {
        if self.rolls.len() >= self.max_rolls && !self.rolls.contains_key(&k) {
            self.rolls_dropped += 1;
            return None;
        }
        Some(self.rolls.entry(k).or_default())
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
        if let (Some(local), Some(lport), Some(remote), Some(rport)) = (l.ip, l.port, r.ip, r.port)
        {
            self.flows.remove(&FlowKey {
                netns: ev.netns().unwrap_or(0),
                local,
                lport,
                remote,
                rport,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn burst_alert(
        &self,
        ev: &EcsEvent,
        t: i128,
        count: u64,
        first: i128,
        last: i128,
        snd_una: Option<u32>,
        realert: bool,
    ) -> (EcsEvent, Symptom) {
        let src_c = ev.source.container.as_ref().or(ev.container.as_ref());
        let dst_c = ev.destination.container.as_ref();
        let end = |e: &Endpoint, c: Option<&ContainerRef>| -> String {
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
        };
        let src = end(&ev.source, src_c);
        let dst = end(&ev.destination, dst_c);
        let rip = ev.destination.ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let dst_name = text::container_name(dst_c).unwrap_or_else(|| rip.to_string());
        let duration = last - first;
        let una = snd_una
            .map(|u| format!(" (snd_una {u})"))
            .unwrap_or_default();
        let message = format!(
            "TCP {src} → {dst} retransmitted {count}× in {} without progress{una}: segments to {dst_name} are lost on the way or it does not answer",
            text::dur(duration)
        );
        let (source, destination) = FlowEnd::pair(ev, rip, src_c, dst_c);
        let payload = BurstAlert {
            type_: "retransmit_burst",
            count,
            threshold: self.threshold,
            window_s: text::secs(self.window),
            duration_s: text::secs(duration),
            snd_una,
            state: ev.tracer.tcp.as_ref().and_then(|t| t.state),
            source,
            destination,
            first_seen: format_ts(first),
            last_seen: format_ts(last),
            realert,
        };
        let line = flow_alert_line(t, Action::RetransmitBurst, message, &payload, ev, count);

        let containers = super::distinct_containers(src_c.into_iter().chain(dst_c));
        let sym = Symptom {
            kind: Action::RetransmitBurst,
            count,
            containers,
            ips: ev.source.ip.into_iter().chain(Some(rip)).collect(),
            macs: Vec::new(),
            facts: Facts::Retransmit {
                flow: format!("{src} → {dst}"),
                src: text::container_name(src_c)
                    .or_else(|| ev.source.ip.map(|i| i.to_string()))
                    .unwrap_or_default(),
                dst: dst_name,
                dst_ip: rip,
                src_ns: text::NsRef::new(ev.tracer.netns.as_ref(), src_c),
            },
        };
        (line, sym)
    }
}

impl PerInterval for Retransmit {
    fn clock(&mut self) -> &mut IntervalClock {
        &mut self.clock
    }

    fn emit(&mut self, ts: i128, span: i128, sink: &mut Sink) {
        if self.rolls.is_empty() {
            return;
        }
        let rolls = std::mem::take(&mut self.rolls);
        let mut due: Vec<(String, RollKey, Roll)> = rolls
            .into_iter()
            .filter(|(_, r)| r.affected >= self.min_flows)
            .map(|(k, r)| (self.roll_name(k), k, r))
            .collect();
        due.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        for (name, k, r) in due {
            let mut peers: Vec<String> = r.peers.iter().map(|p| self.roll_name(*p)).collect();
            peers.sort();
            let container = match k {
                RollKey::Container(id) => self.containers.value(id).cloned(),
                RollKey::Ip(_) => None,
            };
            let ip = match k {
                RollKey::Ip(ip) => Some(ip),
                RollKey::Container(_) => None,
            };
            let message = format!(
                "{name}: {} of its {} TCP flows with retransmits made no progress in the last {} (peers: {})",
                r.affected,
                r.flows,
                text::dur(span),
                peers.join(", ")
            );
            let payload = RollupAlert {
                type_: "retransmit_rollup",
                container: container.as_ref().map(|_| name.as_str()),
                ip,
                flows_affected: r.affected,
                flows_retransmitting: r.flows,
                interval_s: text::secs(span),
                peers,
            };
            let mut line = alert_line(ts, Action::RetransmitRollup, message, &payload);
            debug_assert_eq!(line.event.kind, Kind::Alert);
            line.container = container;
            line.source.ip = ip;
            line.tracer.count = Some(u64::from(r.affected));
            sink.lines.push((line, None));
        }
    }
}
