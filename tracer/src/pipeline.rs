//! The deterministic heart of tracer: [`Input`]s in, [`EcsEvent`]s out.
//!
//! A live run and a replay feed the same inputs in the same order through a
//! `Pipeline` and so print the same lines. Nothing here reads a clock, the
//! kernel or the network: time comes with the inputs.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use tracer_ebpf::kind;

use crate::{
    decode::{self, DecodeError, Record, Tables},
    detect::{DetectConfig, Detectors},
    event::{Action, EcsEvent, Kind, ProbeInfo, SCHEMA_VERSION},
    fdb::{FdbTable, SeedEntry},
    identity::{IdentityIndex, IdentityUpdate},
};

/// Everything that can change what tracer prints. Captures record these
/// (kernel records as raw bytes, the rest serialised), replays feed them back.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Input {
    /// One ring-buffer record, as the kernel wrote it.
    Kernel(Vec<u8>),
    /// Loss counters since the previous report (boot-clock time of the read).
    Loss {
        boot_ns: u64,
        lost: Vec<(u32, u64)>,
        filtered: Vec<(u32, u64)>,
        lost_total: u64,
        /// Lines each sink dropped (queue full) since the previous report,
        /// by sink name; only sinks that dropped some. Absent from
        /// captures that have none (and from those of older tracers).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sinks: Vec<(String, u64)>,
        /// Records the kernel's per-kind budgets held back since the
        /// previous report, as (kind, netns inode, count); only non-zero.
        /// Absent from captures that have none (and from older tracers').
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        held_back: Vec<(u32, u32, u64)>,
        /// Drops the kernel's per-place drop budgets held back since the
        /// previous report; only non-zero. Absent from captures that have
        /// none (and from older tracers').
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        drops_held_back: Vec<HeldBackDrops>,
    },
    /// The outcome of attaching one probe.
    ProbeStatus {
        boot_ns: u64,
        name: String,
        tracepoint: String,
        status: String,
        error: Option<String>,
    },
    /// FDB entries present at start.
    FdbSeed(Vec<SeedEntry>),
    /// Time passes without events (boot clock): lets interval summaries and
    /// incident resolution happen during quiet periods.
    Tick { boot_ns: u64 },
    /// End of the run: flush pending summaries.
    Finish { boot_ns: u64 },
    /// A change in what is known about containers, namespaces, networks.
    Identity(IdentityUpdate),
}

/// Drops of one (namespace, reason, location) that the kernel counted
/// instead of sending (`kfree_skb`'s budget): they count in `drop_summary`
/// and the loss report like the drops that were sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldBackDrops {
    /// Network namespace inode (0: unknown).
    pub netns: u32,
    /// Raw `enum skb_drop_reason` value.
    pub reason: u32,
    /// `kfree_skb`'s location (kernel text address).
    pub location: u64,
    pub count: u64,
}

/// Output filters (the same live and in replay). Empty = everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub netns: BTreeSet<u32>,
    pub actions: BTreeSet<String>,
    pub interfaces: BTreeSet<String>,
    /// `--container`: a name (with or without Docker's leading `/`), a full
    /// id, or an id prefix of at least [`MIN_ID_PREFIX`] characters.
    pub containers: BTreeSet<String>,
    /// `--service`: a swarm service or compose service name.
    pub services: BTreeSet<String>,
}

/// Shortest container id prefix `--container` takes as an id (Docker's short id).
pub const MIN_ID_PREFIX: usize = 12;

impl Filter {
    /// Is this kernel event inside the namespaces/interfaces selected?
    /// Applied before the detectors: what is out of scope is not looked at
    /// (it still updates FDB state), so alerts, rate limits and drop
    /// accounting are those of the selected scope.
    pub fn in_scope(&self, e: &EcsEvent) -> bool {
        if !self.netns.is_empty() && !e.netns().is_some_and(|n| self.netns.contains(&n)) {
            return false;
        }
        if !self.interfaces.is_empty() {
            let names = [
                e.tracer.interface.as_ref().map(|i| i.name.as_str()),
                e.tracer.bridge.as_deref(),
                e.tracer.port.as_deref(),
                e.tracer.previous_port.as_deref(),
            ];
            if !names.iter().flatten().any(|n| self.interfaces.contains(*n)) {
                return false;
            }
        }
        true
    }

    /// Does this (enriched) kernel event involve a selected container or
    /// service: as the event's own container, its source or destination,
    /// or what is behind the bridge port (before a move, too)? Applied
    /// after enrichment and before the detectors, like [`Self::in_scope`]:
    /// alerts are those of the selected containers' events.
    /// Called once per event: the no-filter check inline.
    #[inline]
    pub fn in_containers(&self, e: &EcsEvent) -> bool {
        self.containers.is_empty() && self.services.is_empty() || self.selects_any(e)
    }

    #[inline(never)]
    fn selects_any(&self, e: &EcsEvent) -> bool {
        fn peer(p: &Option<Box<crate::event::Peer>>) -> Option<&crate::event::ContainerRef> {
            p.as_ref().and_then(|p| p.container.as_ref())
        }
        [
            e.container.as_ref(),
            e.source.container.as_ref(),
            e.destination.container.as_ref(),
            peer(&e.tracer.port_peer),
            peer(&e.tracer.previous_port_peer),
        ]
        .into_iter()
        .flatten()
        .any(|c| self.selects(c))
    }

    /// Is this container selected by `--container` or `--service`?
    pub fn selects(&self, c: &crate::event::ContainerData) -> bool {
        let by_container = self.containers.iter().any(|want| {
            let want_name = want.strip_prefix('/').unwrap_or(want);
            c.name
                .as_deref()
                .is_some_and(|n| n.strip_prefix('/').unwrap_or(n) == want_name)
                || *want == c.id
                || (want.len() >= MIN_ID_PREFIX
                    && want.bytes().all(|b| b.is_ascii_hexdigit())
                    && c.id.starts_with(want.as_str()))
        });
        let by_service = !self.services.is_empty() && {
            let swarm = c.swarm.as_ref().and_then(|s| s.service.as_deref());
            let compose = c.compose.as_ref().and_then(|s| s.service.as_deref());
            [swarm, compose]
                .into_iter()
                .flatten()
                .any(|s| self.services.contains(s))
        };
        by_container || by_service
    }

    /// Output filter: `--action` on events, alerts and summaries; tracer
    /// status lines (state, loss reports) always pass.
    pub fn matches(&self, e: &EcsEvent) -> bool {
        if e.event.kind == Kind::State || e.event.action == Action::LossReport {
            return true;
        }
        self.actions.is_empty() || self.actions.contains(e.event.action.as_str())
    }
}

pub struct Pipeline {
    tables: Tables,
    fdb: FdbTable,
    identity: IdentityIndex,
    filter: Filter,
    /// None: `--no-detect`.
    detect: Option<Detectors>,
    /// Records that could not be decoded (never expected; reported).
    decode_errors: u64,
    alerts: Vec<EcsEvent>,
    /// `--pcapng`: the packets of in-scope records with snapshots (None: off).
    packets: Option<Vec<crate::pcapng::Packet>>,
}

impl Pipeline {
    pub fn new(tables: Tables, filter: Filter, detect: Option<DetectConfig>) -> Self {
        Self {
            tables,
            fdb: FdbTable::default(),
            identity: IdentityIndex::new(IDENTITY_GRACE),
            filter,
            detect: detect.map(Detectors::new),
            decode_errors: 0,
            alerts: Vec::new(),
            packets: None,
        }
    }

    /// Makes a [`crate::pcapng::Packet`] of every in-scope record that
    /// carries a snapshot (`--pcapng`), for [`Self::drain_packets`]. Scope
    /// filters (`--netns`, `--interface`, `--container`, `--service`)
    /// apply; `--action` and the drop-line rate limit do not (they choose
    /// lines, not packets).
    pub fn collect_packets(&mut self) {
        self.packets.get_or_insert_with(Vec::new);
    }

    /// The packets made since the last call, in order.
    pub fn drain_packets(&mut self) -> impl Iterator<Item = crate::pcapng::Packet> + '_ {
        self.packets.iter_mut().flat_map(|p| p.drain(..))
    }

    /// Kernel symbols resolved since the last call (live: the capture
    /// records them before the input that needed them).
    pub fn take_new_symbols(&mut self) -> Vec<(u64, String)> {
        self.tables.locations.take_new()
    }

    /// Kernel symbols a capture recorded (replay: before the records that
    /// need them).
    pub fn add_symbols(&mut self, symbols: impl IntoIterator<Item = (u64, String)>) {
        self.tables.locations.extend(symbols);
    }

    /// Does identity know this network namespace (live: else the sources
    /// are hinted to look)?
    pub fn knows_netns(&self, inode: u32) -> bool {
        self.identity.knows_netns(inode)
    }

    /// Inputs that bring a fresh pipeline to this one's identity and FDB
    /// state (the first thing of every rotated capture part, so that it
    /// replays on its own with names). Identity first, as at start-up; the
    /// two are independent. Applying them prints nothing
    /// ([`IdentityIndex::snapshot`] leaves out source status, the only
    /// identity update that prints a line). Detector state is not restated.
    pub fn state_snapshot(&self) -> Vec<Input> {
        let mut state: Vec<Input> = self
            .identity
            .snapshot()
            .into_iter()
            .map(Input::Identity)
            .collect();
        state.push(Input::FdbSeed(self.fdb.entries()));
        state
    }

    /// One raw kernel record (the hot path: no Input allocation needed).
    pub fn process_kernel(&mut self, bytes: &[u8], out: &mut Vec<EcsEvent>) {
        let start = out.len();
        match decode::parse(bytes) {
            Ok(rec) => {
                // The event is made where it will be printed and stays
                // there: an event is 800 bytes, and building it on the
                // stack and then pushing it cost a memcpy of those per
                // event (~580 instructions, a tenth of the replay).
                out.reserve(1);
                self.record_into(&rec, &mut out.spare_capacity_mut()[0]);
                // SAFETY: `reserve` made room for one more element and
                // `record_into` initialised it (every arm writes the slot).
                unsafe { out.set_len(start + 1) };
                let ev = &mut out[start];
                if !self.filter.in_scope(ev) {
                    out.truncate(start);
                    return;
                }
                self.identity.enrich(ev);
                if !self.filter.in_containers(ev) {
                    out.truncate(start);
                    return;
                }
                if let Some(packets) = self.packets.as_mut() {
                    if let Some(snap) = decode::snapshot(bytes) {
                        packets.extend(crate::pcapng::Packet::new(ev, rec.header(), &snap));
                    }
                }
                self.detect_last(out);
            }
            Err(e) => out.push(self.decode_error(bytes, e)),
        }
        self.apply_filter(start, out);
    }

    /// The event at the end of `out` through the detectors: lines due by
    /// its time go before it, then the event (unless rate-limited), then
    /// what it triggered.
    fn detect_last(&mut self, out: &mut Vec<EcsEvent>) {
        let Some(d) = self.detect.as_mut() else {
            return;
        };
        let Some(mut i) = out.len().checked_sub(1) else {
            return;
        };
        self.alerts.clear();
        d.advance(out[i].timestamp, &mut self.alerts);
        if !self.alerts.is_empty() {
            // An interval ended (rare): its lines come first.
            let n = self.alerts.len();
            out.splice(i..i, self.alerts.drain(..));
            i += n;
        }
        if !d.observe_with(&out[i], &self.identity, &mut self.alerts) {
            out.truncate(i);
        }
        out.append(&mut self.alerts);
    }

    fn apply_filter(&self, start: usize, out: &mut Vec<EcsEvent>) {
        if self.filter.actions.is_empty() || out.len() == start {
            return;
        }
        let mut i = 0;
        out.retain(|e| {
            i += 1;
            i <= start || self.filter.matches(e)
        });
    }

    /// Processes one input, appending the lines it produces to `out`.
    pub fn process(&mut self, input: &Input, out: &mut Vec<EcsEvent>) {
        if let Input::Kernel(bytes) = input {
            return self.process_kernel(bytes, out);
        }
        let start = out.len();
        match input {
            Input::Kernel(_) => {}
            Input::Identity(u) => {
                self.identity.apply(u);
                if let Some(e) = u.status_event() {
                    out.push(e);
                }
            }
            Input::Loss {
                boot_ns,
                lost,
                filtered,
                lost_total,
                sinks,
                held_back,
                drops_held_back,
            } => {
                out.push(self.loss(
                    *boot_ns,
                    lost,
                    filtered,
                    *lost_total,
                    sinks,
                    held_back,
                    drops_held_back,
                ));
                for d in drops_held_back {
                    self.held_back_drops(*boot_ns, d, out);
                }
            }
            Input::ProbeStatus {
                boot_ns,
                name,
                tracepoint,
                status,
                error,
            } => {
                let ok = status == "attached";
                let mut e =
                    EcsEvent::new(self.tables.wall(*boot_ns), Kind::State, Action::ProbeStatus);
                e.event.outcome = Some(if ok { "success" } else { "failure" });
                e.message = Some(match (status.as_str(), error) {
                    ("attached", _) => format!("probe {name} attached to {tracepoint}"),
                    (s, Some(err)) => format!("probe {name} {s}: {err}"),
                    (s, None) => format!("probe {name} {s}"),
                });
                e.tracer.probe = Some(Box::new(ProbeInfo {
                    name: name.clone(),
                    tracepoint: tracepoint.clone(),
                    status: match status.as_str() {
                        "attached" => "attached",
                        "disabled" => "disabled",
                        _ => "failed",
                    },
                    error: error.clone(),
                }));
                e.tracer.schema_version = Some(SCHEMA_VERSION);
                out.push(e);
            }
            Input::FdbSeed(entries) => {
                self.fdb.seed(entries);
                if let Some(d) = self.detect.as_mut() {
                    d.set_fdb_table_evictions(self.fdb.evicted);
                }
            }
            Input::Finish { boot_ns } => {
                if let Some(d) = self.detect.as_mut() {
                    d.finish(self.tables.wall(*boot_ns), out);
                }
            }
            Input::Tick { boot_ns } => {
                let now = self.tables.wall(*boot_ns);
                if let Some(d) = self.detect.as_mut() {
                    d.advance(now, out);
                }
            }
        }
        // Filters apply to what was produced by this input only.
        self.apply_filter(start, out);
    }

    /// Decodes `rec` into `slot` (the decoders write the event there).
    fn record_into(&mut self, rec: &Record, slot: &mut std::mem::MaybeUninit<EcsEvent>) {
        match rec {
            Record::FdbUpdate(e) => {
                let port = decode::port_name(e);
                let evicted = self.fdb.evicted;
                let prev = self.fdb.update(
                    e.hdr.netns,
                    e.br_ifindex,
                    e.mac,
                    e.vid,
                    e.hdr.ifindex,
                    &port,
                );
                if self.fdb.evicted != evicted {
                    if let Some(d) = self.detect.as_mut() {
                        d.set_fdb_table_evictions(self.fdb.evicted);
                    }
                }
                decode::fdb_event_in(&self.tables, e, false, prev, slot);
            }
            Record::FdbDelete(e) => {
                self.fdb.delete(e.hdr.netns, e.br_ifindex, e.mac, e.vid);
                decode::fdb_event_in(&self.tables, e, true, None, slot);
            }
            Record::ArpReply(e) => {
                decode::arp_event_in(&self.tables, e, slot);
            }
            Record::Neigh(e) => {
                decode::neigh_event_in(&self.tables, e, slot);
            }
            Record::Tcp(e) => {
                decode::tcp_event_in(&self.tables, e, slot);
            }
            Record::Drop(e) => {
                decode::drop_event_in(&mut self.tables, e, slot);
            }
            // Rare kinds: returned, then moved into the slot.
            Record::TcpAbort(e) => {
                slot.write(decode::tcp_abort_event(&self.tables, e));
            }
            Record::Icmp(e) => {
                slot.write(decode::icmp_event(&self.tables, e));
            }
        }
    }

    /// Drops the kernel held back, into the drop accounting of their key
    /// (namespace, container, reason, location) when in scope.
    fn held_back_drops(&mut self, boot_ns: u64, d: &HeldBackDrops, out: &mut Vec<EcsEvent>) {
        let Some(det) = self.detect.as_mut() else {
            return;
        };
        let mut rec = tracer_ebpf::DropEvent::default();
        rec.hdr.ts_ns = boot_ns;
        rec.hdr.kind = kind::SKB_DROP;
        rec.hdr.netns = d.netns;
        rec.reason = d.reason;
        rec.location = d.location;
        let mut ev = decode::drop_event(&mut self.tables, &rec);
        if !self.filter.in_scope(&ev) {
            return;
        }
        self.identity.enrich(&mut ev);
        if !self.filter.in_containers(&ev) {
            return;
        }
        let start = out.len();
        det.held_back_drops(&ev, d.count, out);
        self.apply_filter(start, out);
    }

    fn decode_error(&mut self, bytes: &[u8], err: DecodeError) -> EcsEvent {
        self.decode_errors += 1;
        let ts = decode::record_ts(bytes).unwrap_or(0);
        let mut e = EcsEvent::new(self.tables.wall(ts), Kind::State, Action::DecodeError);
        e.message = Some(format!(
            "undecodable kernel record ({} bytes): {err}; tracer and its eBPF object disagree",
            bytes.len()
        ));
        e.tracer.count = Some(self.decode_errors);
        e
    }

    #[allow(clippy::too_many_arguments)] // the fields of Input::Loss
    fn loss(
        &mut self,
        boot_ns: u64,
        lost: &[(u32, u64)],
        filtered: &[(u32, u64)],
        lost_total: u64,
        sinks: &[(String, u64)],
        held_back: &[(u32, u32, u64)],
        drops_held_back: &[HeldBackDrops],
    ) -> EcsEvent {
        let mut e = EcsEvent::new(self.tables.wall(boot_ns), Kind::Metric, Action::LossReport);
        // Saturating: a capture's loss counts are whatever it says.
        let n: u64 = lost.iter().fold(0u64, |a, (_, n)| a.saturating_add(*n));
        let by: Map<String, Value> = lost
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (decode::kind_name(*k).to_string(), Value::from(*n)))
            .collect();
        let filt: Map<String, Value> = filtered
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| {
                (
                    self.tables.drop_reasons.name(*r).into_owned(),
                    Value::from(*n),
                )
            })
            .collect();
        e.tracer.lost = Some(n);
        e.tracer.lost_total = Some(lost_total);
        if !by.is_empty() {
            e.tracer.lost_by_probe = Some(Box::new(by));
        }
        if !filt.is_empty() {
            e.tracer.filtered = Some(Box::new(filt));
        }
        let sink_dropped: Map<String, Value> = sinks
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name.clone(), Value::from(*n)))
            .collect();
        if !sink_dropped.is_empty() {
            e.tracer.sink_dropped = Some(Box::new(sink_dropped));
        }
        let held_back: Vec<(u32, u32, u64)> = held_back
            .iter()
            .copied()
            .chain(
                drops_held_back
                    .iter()
                    .map(|d| (kind::SKB_DROP, d.netns, d.count)),
            )
            .collect();
        let held: u64 = held_back
            .iter()
            .fold(0u64, |acc, (_, _, n)| acc.saturating_add(*n));
        if held > 0 {
            let mut by: Map<String, Value> = Map::new();
            for &(k, netns, n) in &held_back {
                let probe = by
                    .entry(decode::kind_name(k).to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = probe {
                    let prev = m
                        .get(&netns.to_string())
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    m.insert(netns.to_string(), Value::from(prev.saturating_add(n)));
                }
            }
            e.tracer.held_back = Some(held);
            e.tracer.held_back_by_probe = Some(Box::new(by));
        }
        let mut msg = if n == 0 {
            "no kernel records lost".to_string()
        } else {
            format!("{n} kernel records lost: ring buffer full (raise --ring-buffer-size or narrow --probes)")
        };
        if held > 0 {
            msg.push_str(&format!(
                "; {held} records held back by the kernel's budgets (a flood; counted, not sent: see tracer.held_back_by_probe; drops count in drop_summary; raise with --budget)"
            ));
        }
        e.message = Some(msg);
        e
    }
}

/// How long an exited container or namespace keeps its identity for late events.
pub const IDENTITY_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Per-kind loss deltas between two counter snapshots.
pub fn loss_delta(
    prev: &[u64; kind::MAX as usize],
    now: &[u64; kind::MAX as usize],
) -> Vec<(u32, u64)> {
    (0..kind::MAX as usize)
        .filter(|&k| now[k] > prev[k])
        .map(|k| (k as u32, now[k] - prev[k]))
        .collect()
}

#[cfg(test)]
mod tests {
    use tracer_ebpf::{EventHeader, FdbEvent};

    use super::*;
    use crate::{decode::Locations, kernel::btf::DropReasons};

    fn pipeline() -> Pipeline {
        Pipeline::new(
            Tables {
                drop_reasons: DropReasons::from_pairs([(2, "NOT_SPECIFIED".to_string())]),
                locations: Locations::default(),
                boot_to_wall_ns: 0,
                reason_cache: Default::default(),
            },
            Filter::default(),
            None,
        )
    }

    fn fdb_bytes(port: u32, name: &[u8], k: u32) -> Vec<u8> {
        let mut h = EventHeader {
            kind: k,
            netns: 77,
            ifindex: port,
            ..Default::default()
        };
        h.ifname[..name.len()].copy_from_slice(name);
        let mut e = FdbEvent {
            hdr: h,
            br_ifindex: 3,
            mac: [2, 0, 0, 0, 0, 9],
            ..Default::default()
        };
        e.br_name[..3].copy_from_slice(b"br0");
        tracer_ebpf::pod_bytes(&e).to_vec()
    }

    #[test]
    fn fdb_learn_move_delete_sequence() {
        let mut p = pipeline();
        let mut out = Vec::new();
        p.process(
            &Input::Kernel(fdb_bytes(5, b"veth1", kind::FDB_UPDATE)),
            &mut out,
        );
        p.process(
            &Input::Kernel(fdb_bytes(6, b"vxlan0", kind::FDB_UPDATE)),
            &mut out,
        );
        p.process(
            &Input::Kernel(fdb_bytes(6, b"vxlan0", kind::FDB_DELETE)),
            &mut out,
        );
        p.process(
            &Input::Kernel(fdb_bytes(5, b"veth1", kind::FDB_UPDATE)),
            &mut out,
        );
        let actions: Vec<_> = out.iter().map(|e| e.event.action.as_str()).collect();
        assert_eq!(
            actions,
            ["fdb_learn", "fdb_move", "fdb_delete", "fdb_learn"]
        );
        assert_eq!(out[1].tracer.previous_port.as_deref(), Some("veth1"));
        assert_eq!(out[1].tracer.port.as_deref(), Some("vxlan0"));
        assert_eq!(out[1].tracer.bridge.as_deref(), Some("br0"));
    }

    #[test]
    fn fdb_table_evictions_are_reported_in_detector_status_only_when_nonzero() {
        let status = |p: &mut Pipeline| {
            let mut out = Vec::new();
            p.process(&Input::Finish { boot_ns: 10 }, &mut out);
            out.into_iter()
                .find(|e| e.event.action == Action::DetectorStatus)
                .unwrap()
        };
        let mut p = pipeline();
        p.detect = Some(Detectors::new(DetectConfig::default()));
        let mut out = Vec::new();
        p.process(
            &Input::Kernel(fdb_bytes(5, b"veth1", kind::FDB_UPDATE)),
            &mut out,
        );
        let s = status(&mut p);
        let detect = s.tracer.detect.as_ref().unwrap();
        assert!(detect.get("fdb_table_evictions").is_none(), "{detect}");

        let mut p = pipeline();
        p.detect = Some(Detectors::new(DetectConfig::default()));
        p.fdb = FdbTable::with_capacity(2);
        for mac in 0..5u8 {
            let mut b = fdb_bytes(5, b"veth1", kind::FDB_UPDATE);
            // FdbEvent.mac follows the header and br_ifindex.
            let at = std::mem::offset_of!(FdbEvent, mac);
            b[at + 5] = mac;
            p.process(&Input::Kernel(b), &mut out);
        }
        let s = status(&mut p);
        assert_eq!(s.tracer.detect.as_ref().unwrap()["fdb_table_evictions"], 3);
        assert!(
            s.message
                .as_deref()
                .unwrap()
                .contains("3 MAC → port entries forgotten"),
            "{:?}",
            s.message
        );
    }

    #[test]
    fn loss_counts_of_a_hostile_capture_saturate() {
        let mut p = pipeline();
        let mut out = Vec::new();
        p.process(
            &Input::Loss {
                boot_ns: 1,
                lost: vec![(kind::SKB_DROP, u64::MAX), (kind::FDB_UPDATE, 5)],
                filtered: vec![],
                lost_total: u64::MAX,
                sinks: vec![],
                held_back: vec![(kind::FDB_UPDATE, 1, u64::MAX), (kind::FDB_UPDATE, 1, 5)],
                drops_held_back: Vec::new(),
            },
            &mut out,
        );
        assert_eq!(out[0].tracer.lost, Some(u64::MAX));
        assert_eq!(out[0].tracer.held_back, Some(u64::MAX));
    }

    #[test]
    fn garbage_record_is_reported_not_fatal() {
        let mut p = pipeline();
        let mut out = Vec::new();
        p.process(&Input::Kernel(vec![1, 2, 3]), &mut out);
        assert_eq!(out[0].event.action.as_str(), "decode_error");
        assert_eq!(p.decode_errors, 1);
    }

    #[test]
    fn filters_keep_status_lines() {
        let mut p = pipeline();
        p.filter.netns.insert(1);
        let mut out = Vec::new();
        p.process(
            &Input::Kernel(fdb_bytes(5, b"veth1", kind::FDB_UPDATE)),
            &mut out,
        );
        assert!(out.is_empty(), "netns 77 filtered out");
        p.process(
            &Input::Loss {
                boot_ns: 1,
                lost: vec![(kind::SKB_DROP, 4)],
                filtered: vec![(2, 10)],
                lost_total: 4,
                sinks: Vec::new(),
                held_back: Vec::new(),
                drops_held_back: Vec::new(),
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let v = serde_json::to_value(&out[0]).unwrap();
        assert_eq!(v["tracer"]["lost"], 4);
        assert_eq!(v["tracer"]["lost_by_probe"]["kfree_skb"], 4);
        assert_eq!(v["tracer"]["filtered"]["NOT_SPECIFIED"], 10);
    }

    /// A sink's dropped lines appear in the loss report only when there
    /// are some; a capture without any keeps its old bytes and reads back.
    #[test]
    fn sink_drops_are_reported_and_absent_when_none() {
        let mut p = pipeline();
        let mut out = Vec::new();
        let loss = |sinks: Vec<(String, u64)>| Input::Loss {
            boot_ns: 1,
            lost: vec![],
            filtered: vec![],
            lost_total: 0,
            sinks,
            held_back: Vec::new(),
            drops_held_back: Vec::new(),
        };
        p.process(&loss(vec![("stdout".into(), 12)]), &mut out);
        p.process(&loss(vec![]), &mut out);
        let (with, without) = (
            serde_json::to_value(&out[0]).unwrap(),
            serde_json::to_value(&out[1]).unwrap(),
        );
        assert_eq!(with["tracer"]["sink_dropped"]["stdout"], 12);
        assert!(without["tracer"].get("sink_dropped").is_none());
        let old = r#"{"Loss":{"boot_ns":1,"lost":[],"filtered":[],"lost_total":0}}"#;
        assert_eq!(serde_json::to_string(&loss(vec![])).unwrap(), old);
        assert_eq!(serde_json::from_str::<Input>(old).unwrap(), loss(vec![]));
        let new = serde_json::to_string(&loss(vec![("stdout".into(), 3)])).unwrap();
        assert_eq!(
            serde_json::from_str::<Input>(&new).unwrap(),
            loss(vec![("stdout".into(), 3)])
        );
    }

    /// `--container` takes a name (with or without `/`), a full id or an
    /// id prefix of 12+ hex characters; `--service` a swarm or compose
    /// service; any container the event names counts.
    #[test]
    fn container_and_service_filters() {
        use crate::event::{Compose, ContainerData, ContainerRef, Peer, Swarm};
        let id = "abcdef0123456789".repeat(4);
        let web = ContainerRef::new(ContainerData {
            id: id.clone(),
            name: Some("web-1".into()),
            swarm: Some(Swarm {
                service: Some("web".into()),
                task: None,
            }),
            ..Default::default()
        });
        let db = ContainerRef::new(ContainerData {
            id: "ff".repeat(32),
            name: Some("db".into()),
            compose: Some(Compose {
                project: Some("shop".into()),
                service: Some("postgres".into()),
            }),
            ..Default::default()
        });
        let f = |c: &[&str], s: &[&str]| Filter {
            containers: c.iter().map(|x| x.to_string()).collect(),
            services: s.iter().map(|x| x.to_string()).collect(),
            ..Filter::default()
        };
        let mut e = EcsEvent::new(1, Kind::Event, Action::SkbDrop);
        assert!(f(&[], &[]).in_containers(&e), "no filter: everything");
        assert!(!f(&["web-1"], &[]).in_containers(&e), "no container named");
        e.destination.container = Some(web.clone());
        for yes in ["web-1", "/web-1", id.as_str(), &id[..12]] {
            assert!(f(&[yes], &[]).in_containers(&e), "{yes}");
        }
        for no in ["web", &id[..11], "db", &id[1..13]] {
            assert!(!f(&[no], &[]).in_containers(&e), "{no}");
        }
        assert!(f(&[], &["web"]).in_containers(&e));
        assert!(!f(&[], &["postgres"]).in_containers(&e));
        let mut moved = EcsEvent::new(1, Kind::Event, Action::FdbMove);
        moved.tracer.previous_port_peer = Some(Box::new(Peer {
            kind: "container",
            container: Some(db),
            ..Default::default()
        }));
        assert!(
            f(&[], &["postgres"]).in_containers(&moved),
            "compose service"
        );
        assert!(
            f(&["nope", "db"], &[]).in_containers(&moved),
            "repeatable: either"
        );
    }

    /// Held-back records appear in the loss report per probe and namespace
    /// (summed when a pair repeats), in the message, and nowhere when none.
    #[test]
    fn held_back_records_are_reported_per_probe_and_namespace() {
        let mut p = pipeline();
        let mut out = Vec::new();
        let loss = |held_back: Vec<(u32, u32, u64)>| Input::Loss {
            boot_ns: 1,
            lost: vec![],
            filtered: vec![],
            lost_total: 0,
            sinks: vec![],
            held_back,
            drops_held_back: Vec::new(),
        };
        p.process(
            &loss(vec![
                (kind::FDB_UPDATE, 4026532001, 500),
                (kind::ARP_REPLY, 4026532001, 20),
                (kind::FDB_UPDATE, 4026532002, 1),
                (kind::FDB_UPDATE, 4026532002, 2),
            ]),
            &mut out,
        );
        p.process(&loss(vec![]), &mut out);
        let (with, without) = (
            serde_json::to_value(&out[0]).unwrap(),
            serde_json::to_value(&out[1]).unwrap(),
        );
        let t = &with["tracer"];
        assert_eq!(t["held_back"], 523);
        assert_eq!(t["held_back_by_probe"]["br_fdb_update"]["4026532001"], 500);
        assert_eq!(t["held_back_by_probe"]["br_fdb_update"]["4026532002"], 3);
        assert_eq!(
            t["held_back_by_probe"]["netif_receive_skb"]["4026532001"],
            20
        );
        assert!(with["message"]
            .as_str()
            .unwrap()
            .contains("523 records held back"));
        assert!(without["tracer"].get("held_back").is_none());
        assert!(without["tracer"].get("held_back_by_probe").is_none());
        // Old captures (no held_back) read back; new ones round-trip.
        let old = r#"{"Loss":{"boot_ns":1,"lost":[],"filtered":[],"lost_total":0}}"#;
        assert_eq!(serde_json::from_str::<Input>(old).unwrap(), loss(vec![]));
        let held = loss(vec![(kind::FDB_UPDATE, 7, 9)]);
        let new = serde_json::to_string(&held).unwrap();
        assert_eq!(serde_json::from_str::<Input>(&new).unwrap(), held);
    }

    /// Drops the kernel held back count in their key's drop_summary and in
    /// the loss report: printed lines + summary counts = drops sent + held
    /// back, and a capture's Loss input round-trips them.
    #[test]
    fn held_back_drops_count_in_drop_summary_and_loss_report() {
        let mut p = Pipeline::new(
            Tables {
                drop_reasons: DropReasons::from_pairs([(5, "NO_SOCKET".to_string())]),
                locations: Locations::default(),
                boot_to_wall_ns: 0,
                reason_cache: Default::default(),
            },
            Filter::default(),
            Some(crate::detect::DetectConfig {
                drop_lines_per_sec: 3,
                ..Default::default()
            }),
        );
        let drop = |ts: u64, netns: u32| {
            let mut d = tracer_ebpf::DropEvent::default();
            d.hdr.ts_ns = ts;
            d.hdr.kind = kind::SKB_DROP;
            d.hdr.netns = netns;
            d.reason = 5;
            d.location = 0xffff_ffff_8100_0000;
            Input::Kernel(tracer_ebpf::pod_bytes(&d).to_vec())
        };
        let mut out = Vec::new();
        for i in 0..10 {
            p.process(&drop(1_000_000_000 + i, 4026532001), &mut out);
        }
        let held = Input::Loss {
            boot_ns: 1_500_000_000,
            lost: vec![],
            filtered: vec![],
            lost_total: 0,
            sinks: vec![],
            held_back: vec![],
            drops_held_back: vec![
                HeldBackDrops {
                    netns: 4026532001,
                    reason: 5,
                    location: 0xffff_ffff_8100_0000,
                    count: 990,
                },
                HeldBackDrops {
                    netns: 4026532002,
                    reason: 5,
                    location: 0xffff_ffff_8100_0000,
                    count: 7,
                },
            ],
        };
        let json = serde_json::to_string(&held).unwrap();
        assert_eq!(serde_json::from_str::<Input>(&json).unwrap(), held);
        p.process(&held, &mut out);
        p.process(
            &Input::Finish {
                boot_ns: 2_000_000_000,
            },
            &mut out,
        );
        let lines: Vec<Value> = out
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        let of = |action: &str, ns: u64| -> Vec<&Value> {
            lines
                .iter()
                .filter(|v| v["event"]["action"] == action && v["tracer"]["netns"]["inode"] == ns)
                .collect()
        };
        assert_eq!(of("skb_drop", 4026532001).len(), 3, "rate limit: 3 lines");
        let summary = of("drop_summary", 4026532001);
        assert_eq!(summary.len(), 1, "{summary:?}");
        assert_eq!(summary[0]["tracer"]["alert"]["total"], 1000);
        assert_eq!(summary[0]["tracer"]["count"], 997, "1000 drops - 3 lines");
        let other = of("drop_summary", 4026532002);
        assert_eq!(other.len(), 1);
        assert_eq!(other[0]["tracer"]["count"], 7);
        assert_eq!(other[0]["tracer"]["reason"], "NO_SOCKET");
        let report = lines
            .iter()
            .find(|v| v["event"]["action"] == "loss_report")
            .expect("loss report");
        assert_eq!(report["tracer"]["held_back"], 997);
        assert_eq!(
            report["tracer"]["held_back_by_probe"]["kfree_skb"]["4026532001"],
            990
        );
        assert_eq!(
            report["tracer"]["held_back_by_probe"]["kfree_skb"]["4026532002"],
            7
        );
    }

    #[test]
    fn loss_delta_only_reports_growth() {
        let mut a = [0u64; kind::MAX as usize];
        let mut b = a;
        b[kind::SKB_DROP as usize] = 5;
        assert_eq!(loss_delta(&a, &b), vec![(kind::SKB_DROP, 5)]);
        a = b;
        assert!(loss_delta(&a, &b).is_empty());
    }
}
