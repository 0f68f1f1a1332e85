//! Drop accounting: rate-limited per-drop lines and interval summaries.
//!
//! The contract, exactly: every `skb_drop` line that is printed stands for
//! one drop; every `drop_summary` line (`event.kind: "metric"`) carries in
//! `tracer.count` the drops of its key in its interval that were NOT printed
//! individually. So
//!
//! `#skb_drop lines + Σ drop_summary tracer.count = drops observed`
//!
//! where the drops observed include those the kernel held back (its
//! per-place drop budget: counted in the kernel, reported in the loss
//! report, and added here by [`Drops::count_held_back`]).
//!
//! at any interval boundary and after [`super::Detectors::finish`]. The rate
//! limit counts printed lines per second of event time (not wall clock), so
//! a replay prints the same lines. Keys are (netns, container, reason,
//! location); when the key table is full, new keys are counted under one
//! "(other)" key so that nothing goes unaccounted.

use std::net::IpAddr;

use serde::Serialize;
use smol_str::SmolStr;

use super::{
    interval::{IntervalClock, PerInterval},
    table::{FastMap, Interner, OVERFLOW},
    text, Cfg, Facts, Sink, Symptom, NS_PER_S,
};
use crate::explain::explain_drop;
use crate::{
    event::{Action, ContainerRef, EcsEvent, Kind, Netns, RawJson},
    kernel::clock::format_ts,
};

/// Destination IPs remembered per key and interval (for incidents).
const SAMPLE_IPS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DropKey {
    netns: u32,
    container: u32,
    reason: u32,
    location: u32,
}

const OVERFLOW_KEY: DropKey = DropKey {
    netns: 0,
    container: OVERFLOW,
    reason: OVERFLOW,
    location: OVERFLOW,
};

struct DropEntry {
    total: u64,
    printed: u64,
    reason_raw: Option<u32>,
    netns: Option<Netns>,
    first: i128,
    last: i128,
    dst: [Option<IpAddr>; SAMPLE_IPS],
}

pub(crate) struct Drops {
    limit: u64,
    clock: IntervalClock,
    incident_threshold: u64,
    max_keys: usize,
    table: FastMap<DropKey, DropEntry>,
    /// The bridge an `OTHERHOST` drop of a key was on (by identity's link
    /// kind): a promiscuous bridge's copies. Kept apart from the table:
    /// rare, and the table's entries stay small.
    bridges: FastMap<DropKey, SmolStr>,
    containers: Interner<ContainerRef>,
    reasons: Interner<()>,
    locations: Interner<()>,
    sec: i128,
    printed_this_sec: u64,
    pub(crate) seen: u64,
    pub(crate) printed: u64,
    pub(crate) summarised: u64,
    pub(crate) overflow: u64,
}

#[derive(Serialize)]
struct DropSummary<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    destination_ips: Vec<IpAddr>,
    first_seen: String,
    interval_s: f64,
    last_seen: String,
    location: &'a str,
    meaning: &'a str,
    /// Of which printed as individual `skb_drop` lines.
    printed: u64,
    reason: &'a str,
    /// Of which only counted here (= `tracer.count`).
    suppressed: u64,
    /// Drops of this key in the interval.
    total: u64,
    #[serde(rename = "type")]
    type_: &'static str,
}

impl Drops {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            limit: c.drop_lines_per_sec,
            clock: IntervalClock::new(c.drop_interval),
            incident_threshold: c.drop_incident_threshold,
            max_keys: c.max_keys,
            table: FastMap::default(),
            bridges: FastMap::default(),
            containers: Interner::new(c.max_keys),
            reasons: Interner::new(c.max_keys),
            locations: Interner::new(c.max_keys),
            sec: i128::MIN,
            printed_this_sec: 0,
            seen: 0,
            printed: 0,
            summarised: 0,
            overflow: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Counts one drop; true when its line is to be printed.
    pub(crate) fn observe(&mut self, ev: &EcsEvent, t: i128) -> bool {
        let key = self.key_of(ev);
        let sec = t.div_euclid(NS_PER_S);
        if sec != self.sec {
            self.sec = sec;
            self.printed_this_sec = 0;
        }
        let print = self.printed_this_sec < self.limit;
        if print {
            self.printed_this_sec += 1;
            self.printed += 1;
        }
        self.add(key, ev, t, 1, print);
        print
    }

    /// Counts `count` drops of `ev`'s key that the kernel held back (never
    /// printed: they go into the key's `drop_summary`).
    pub(crate) fn count_held_back(&mut self, ev: &EcsEvent, t: i128, count: u64) {
        let key = self.key_of(ev);
        self.add(key, ev, t, count, false);
    }

    /// The table key of a drop: the overflow key once a name table or the
    /// key table is full (counted in `overflow`).
    #[inline(always)] // the per-drop path (with `add`): one body in `observe`
    fn key_of(&mut self, ev: &EcsEvent) -> DropKey {
        let container = match &ev.container {
            Some(c) => self.containers.intern_container(c),
            None => 0,
        };
        let reason = self
            .reasons
            .intern(ev.tracer.reason.as_deref().unwrap_or("UNKNOWN"), || ());
        let location = self
            .locations
            .intern(ev.tracer.location.as_deref().unwrap_or("?"), || ());
        let mut key = DropKey {
            netns: ev.netns().unwrap_or(0),
            container,
            reason,
            location,
        };
        if key.container == OVERFLOW || key.reason == OVERFLOW || key.location == OVERFLOW {
            key = OVERFLOW_KEY;
        }
        if key != OVERFLOW_KEY
            && self.table.len() >= self.max_keys
            && !self.table.contains_key(&key)
        {
            key = OVERFLOW_KEY;
        }
        key
    }

    /// Adds `count` drops of `ev` under `key`, `print` of them printed.
    #[inline(always)]
    fn add(&mut self, key: DropKey, ev: &EcsEvent, t: i128, count: u64, print: bool) {
        if key == OVERFLOW_KEY {
            self.overflow = self.overflow.saturating_add(count);
        }
        self.seen = self.seen.saturating_add(count);
        let e = self.table.entry(key).or_insert_with(|| DropEntry {
            total: 0,
            printed: 0,
            reason_raw: if key == OVERFLOW_KEY {
                None
            } else {
                ev.tracer.reason_raw
            },
            netns: if key == OVERFLOW_KEY {
                None
            } else {
                ev.tracer.netns.clone()
            },
            first: t,
            last: t,
            dst: [None; SAMPLE_IPS],
        });
        // Identity gives a drop's link kind only for OTHERHOST drops (the
        // hot path stays as it was): a bridge there is a promiscuous one.
        if let Some(i) = ev
            .tracer
            .interface
            .as_ref()
            .filter(|i| i.kind == Some("bridge"))
        {
            self.bridges.entry(key).or_insert_with(|| i.name.clone());
        }
        e.total = e.total.saturating_add(count);
        if print {
            e.printed += 1;
        }
        e.last = t;
        if let Some(ip) = ev.destination.ip {
            if !e.dst.contains(&Some(ip)) {
                if let Some(slot) = e.dst.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(ip);
                }
            }
        }
    }
}

impl PerInterval for Drops {
    fn clock(&mut self) -> &mut IntervalClock {
        &mut self.clock
    }

    fn emit(&mut self, ts: i128, span: i128, sink: &mut Sink) {
        if self.table.is_empty() {
            return;
        }
        let mut keys: Vec<DropKey> = self.table.keys().copied().collect();
        let name = |id: u32| -> String {
            self.containers
                .value(id)
                .map(ContainerRef::display_name)
                .unwrap_or_default()
        };
        keys.sort_by(|a, b| {
            (
                a.netns,
                name(a.container),
                self.reasons.name(a.reason),
                self.locations.name(a.location),
                *a,
            )
                .cmp(&(
                    b.netns,
                    name(b.container),
                    self.reasons.name(b.reason),
                    self.locations.name(b.location),
                    *b,
                ))
        });
        for k in keys {
            let Some(e) = self.table.get(&k) else {
                continue;
            };
            let container = self.containers.value(k.container).cloned();
            let reason = self.reasons.name(k.reason);
            let location = self.locations.name(k.location);
            let suppressed = e.total - e.printed;
            self.summarised += suppressed;
            let netns = e.netns.clone().or_else(|| {
                (k.netns != 0).then(|| Netns {
                    inode: k.netns,
                    ..Netns::default()
                })
            });
            let place = match &container {
                Some(c) => c.display_name(),
                None if k == OVERFLOW_KEY => "other namespaces (drop table full)".to_string(),
                None => text::ns_label(netns.as_ref()),
            };
            let why = explain_drop(reason, Some(location));
            // A bridge hands a frame for another MAC up to its own stack
            // only when it is promiscuous (br_handle_frame_finish): such an
            // OTHERHOST drop is the copy of a frame it forwarded or flooded
            // anyway, nothing was lost (tcpdump on a Docker bridge does it).
            let copies = match self.bridges.get(&k) {
                Some(b) if reason == "OTHERHOST" => Some(text::sh(b).into_owned()),
                _ => None,
            };
            let (meaning, check) = match &copies {
                Some(b) => (
                    format!(
                        "copies of frames that bridge {b} forwarded between its ports, handed up to the host's stack because {b} is in promiscuous mode (a capture on it such as tcpdump -i {b}, or promisc set by hand): the frames themselves were delivered, nothing was lost"
                    ),
                    format!(
                        "nothing to do; they stop with the capture (or ip link set {b} promisc off); --ignore-drop-reason OTHERHOST hides them while capturing"
                    ),
                ),
                None => (why.meaning_of(reason).into_owned(), why.check.to_string()),
            };
            let message = format!(
                "{} drops in {place} ({reason} at {location}) in the last {}: {} printed, {suppressed} counted here only; {meaning} — {check}",
                e.total,
                text::dur(span),
                e.printed,
            );
            let ips: Vec<IpAddr> = e.dst.iter().flatten().copied().collect();
            let payload = DropSummary {
                type_: "drop_summary",
                total: e.total,
                printed: e.printed,
                suppressed,
                interval_s: text::secs(span),
                reason,
                location,
                meaning: &meaning,
                container: text::container_name(container.as_ref()),
                first_seen: format_ts(e.first),
                last_seen: format_ts(e.last),
                destination_ips: ips.clone(),
            };
            let mut line = EcsEvent::new(ts, Kind::Metric, Action::DropSummary);
            line.message = Some(message);
            line.container = container.clone();
            line.tracer.netns = netns;
            line.tracer.reason = Some(reason.into());
            line.tracer.reason_raw = e.reason_raw;
            line.tracer.location = Some(location.into());
            line.tracer.count = Some(suppressed);
            line.tracer.alert = RawJson::of(&payload);
            let sym = (copies.is_none()
                && self.incident_threshold > 0
                && e.total >= self.incident_threshold)
                .then(|| Symptom {
                    kind: Action::DropSummary,
                    count: e.total,
                    containers: container.into_iter().collect(),
                    ips,
                    macs: Vec::new(),
                    facts: Facts::Drops {
                        reason: reason.to_string(),
                        location: location.to_string(),
                        total: e.total,
                        place,
                    },
                });
            sink.lines.push((line, sym));
        }
        // `clear` keeps the allocation: the next interval reuses it.
        self.table.clear();
        self.bridges.clear();
    }
}
