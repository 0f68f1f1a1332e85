//! The probe registry and loading: the embedded eBPF object, one slice per
//! probe group ([`bridge`], [`arp`], [`tcp`], [`drop`](mod@drop)), each describing its
//! probes once, and attaching them.
//!
//! Each probe is attached on its own: a probe whose tracepoint is missing,
//! whose prototype differs from what the program reads, whose struct offsets
//! BTF does not give, or that the verifier refuses is reported with the
//! reason and the others run.

pub mod arp;
pub mod bridge;
pub mod drop;
pub mod kernel_log;
pub mod tcp;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use aya::{
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::RawTracePoint,
    Ebpf, EbpfLoader,
};
use thiserror::Error;
use tracer_ebpf::{
    kind, BudgetState, DropBudgetKey, DropBudgetState, Field, DROP_FILTER_SLOTS, UNRESOLVED,
};

use crate::{
    decode::RecordKind,
    kernel::{
        btf::{self, KernelBtf, Param},
        tracefs,
    },
    pipeline::HeldBackDrops,
};

/// The eBPF object built by build.rs (aya-build) and embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// One probe: an eBPF program attached to a raw tracepoint, described once.
#[derive(Clone, Copy, Debug)]
pub struct ProbeSpec {
    /// Program name in the object (and the tracepoint name).
    pub name: &'static str,
    /// tracefs category (`events/<category>/<name>`).
    pub category: &'static str,
    /// What the operator gets from it.
    pub what: &'static str,
    /// The `TP_PROTO` prefix the program reads, checked against BTF's
    /// `btf_trace_<name>` before attaching.
    pub prototype: &'static [Param],
    /// `KernelConfig` fields the program reads.
    pub needs: &'static [Field],
    /// Record kinds the program emits.
    pub emits: &'static [RecordKind],
}

/// A probe group, selected with `--probes <name>`: one slice of the registry.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    /// Name for `--probes`.
    pub name: &'static str,
    /// What the operator gets from the group (`--probes` help).
    pub gives: &'static str,
    pub probes: &'static [ProbeSpec],
}

/// Fields every probe that names an interface reads (`fill_dev`).
pub const DEV: [Field; 4] = [
    Field::DevIfindex,
    Field::DevName,
    Field::DevNdNet,
    Field::NetNsInum,
];

/// The registry: every group, in attach order.
pub const GROUPS: &[Group] = &[bridge::GROUP, arp::GROUP, tcp::GROUP, drop::GROUP];

/// Every probe, in attach order.
pub fn all() -> impl Iterator<Item = &'static ProbeSpec> {
    GROUPS.iter().flat_map(|g| g.probes.iter())
}

/// The probe named `name`.
pub fn spec(name: &str) -> Option<&'static ProbeSpec> {
    all().find(|p| p.name == name)
}

/// Group names, for messages (`fdb, arp, tcp, drop`).
pub fn group_names() -> Vec<&'static str> {
    GROUPS.iter().map(|g| g.name).collect()
}

/// True when `name` is a group or a probe that `--probes` accepts.
pub fn is_selectable(name: &str) -> bool {
    GROUPS.iter().any(|g| g.name == name) || spec(name).is_some()
}

/// Help text of `--probes`, from the registry.
pub fn probes_help() -> String {
    let mut s = String::from("Probe groups to attach, comma separated (default: all):");
    for g in GROUPS {
        let names: Vec<&str> = g.probes.iter().map(|p| p.name).collect();
        s.push_str(&format!(
            "\n  {}: {} ({})",
            g.name,
            g.gives,
            names.join(", ")
        ));
    }
    s.push_str("\nSingle probes can be named too (e.g. kfree_skb).");
    s
}

/// How often the collector drains the ring buffer without being woken
/// (drop records are batched; see `KernelConfig::wakeup_bytes`).
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Outcome of trying one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeStatus {
    pub name: &'static str,
    pub tracepoint: String,
    /// `attached`, `failed` (could not attach here), `disabled` (not selected).
    pub status: &'static str,
    pub error: Option<String>,
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("--kernel-log: {0}")]
    KernelLog(aya_log::Error),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

/// Everything the collector needs from the loaded object.
pub struct Loaded {
    /// Keeps programs and links alive; dropping it detaches everything.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
    pub filtered: PerCpuArray<MapData, u64>,
    /// Per-kind, per-namespace budgets and what they held back ([`read_held_back`]).
    pub budget: PerCpuHashMap<MapData, u64, BudgetState>,
    /// Per-place drop budgets and what they held back ([`read_drops_held_back`]).
    pub drop_budget: PerCpuHashMap<MapData, DropBudgetKey, DropBudgetState>,
    pub status: Vec<ProbeStatus>,
    /// The programs' log ring, with `kernel_log` ([`kernel_log::forward`]).
    pub kernel_log: Option<aya_log::EbpfLogger<kernel_log::StderrLog>>,
}

/// The record kinds whose programs apply a budget (the kinds that come in
/// floods): `br_fdb_update` (random source MACs, CAP_NET_RAW) and
/// `netif_receive_skb` (ARP replies), per network namespace; `kfree_skb`
/// (drop storms), per place of the drop (device or socket, reason, location).
pub const BUDGETED: &[u32] = &[kind::FDB_UPDATE, kind::ARP_REPLY, kind::SKB_DROP];

/// Default budget of each kind in [`BUDGETED`]: records per second, per
/// namespace (drops: per place), per CPU. A real FDB flap or ARP duplicate
/// makes a few records per second, a dropped connection a few drops; a
/// flood makes hundreds of thousands, and beyond the budget each costs the
/// kernel a counter increment instead of a record.
pub const DEFAULT_BUDGET: u32 = 1000;

/// The default budgets, indexed by kind (0: no budget).
pub fn default_budgets() -> [u32; kind::MAX as usize] {
    let mut b = [0; kind::MAX as usize];
    for &k in BUDGETED {
        b[k as usize] = DEFAULT_BUDGET;
    }
    b
}

/// Parses one `--budget PROBE=N` value into (kind, records per second).
pub fn parse_budget(s: &str) -> Result<(u32, u32), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PROBE=N, e.g. br_fdb_update=1000"))?;
    let k = BUDGETED
        .iter()
        .copied()
        .find(|&k| crate::decode::kind_name(k) == name.trim())
        .ok_or_else(|| {
            let names: Vec<&str> = BUDGETED
                .iter()
                .map(|&k| crate::decode::kind_name(k))
                .collect();
            format!(
                "{name:?} has no budget; budgeted probes: {}",
                names.join(", ")
            )
        })?;
    let n = n
        .trim()
        .parse::<u32>()
        .map_err(|e| format!("{s:?}: {e} (records per second, 0 for no budget)"))?;
    Ok((k, n))
}

/// Options that shape loading.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Groups to attach (empty: all).
    pub groups: Vec<String>,
    /// Ring-buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Raw drop-reason values not to send (counted in the kernel instead).
    pub drop_filter: BTreeSet<u32>,
    /// Records per second per namespace per CPU, indexed by kind (0: no budget).
    pub budgets: [u32; kind::MAX as usize],
    /// Bytes of each dropped packet, ARP reply and retransmitted segment
    /// the records carry (`--snaplen`, at most [`tracer_ebpf::SNAP_MAX`]; 0: none).
    pub snaplen: u32,
    /// The programs log what goes wrong in them ([`kernel_log`]).
    pub kernel_log: bool,
}

/// `--snaplen` when not given.
pub const DEFAULT_SNAPLEN: u32 = 128;

/// Why a probe cannot work on this kernel, before trying to load it.
pub fn precheck(
    spec: &ProbeSpec,
    kbtf: &KernelBtf,
    resolved: &btf::Resolved,
    tracing: Option<&Path>,
) -> Result<(), String> {
    if let Some(root) = tracing {
        let dir = root.join("events").join(spec.category).join(spec.name);
        if !dir.exists() {
            return Err(format!(
                "tracepoint {}:{} does not exist on this kernel ({} missing)",
                spec.category,
                spec.name,
                dir.display()
            ));
        }
    }
    kbtf.check_prototype(spec.name, spec.prototype)
        .map_err(|e| e.to_string())?;
    let missing: Vec<String> = spec
        .needs
        .iter()
        .filter(|&&f| resolved.config.get(f) == UNRESOLVED)
        .map(|f| {
            let why = resolved
                .missing
                .iter()
                .find(|(n, _)| n == f)
                .map(|(_, w)| w.as_str())
                .unwrap_or("unresolved");
            format!("{f} ({why})")
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "kernel BTF lacks struct fields this probe reads: {}",
            missing.join(", ")
        ));
    }
    Ok(())
}

fn selected(group: &Group, spec: &ProbeSpec, groups: &[String]) -> bool {
    groups.is_empty() || groups.iter().any(|g| g == group.name || g == spec.name)
}

/// Last lines of a (possibly huge) verifier log, for one-line reporting.
fn short_error(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() > 4 {
        format!("{} … {}", lines[0], lines[lines.len() - 3..].join(" | "))
    } else {
        lines.join(" | ")
    }
}

/// Loads the object with offsets from BTF and attaches every selected probe.
pub fn load(kbtf: &KernelBtf, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let tracing = tracefs::ensure_mounted().ok();
    let resolved = kbtf.resolve_config();
    let mut config = resolved.config;
    config.drop_filter_len = if opts.drop_filter.is_empty() {
        0
    } else {
        DROP_FILTER_SLOTS
    };
    // Drop records wake user space at 1/16 of the ring (it drains every
    // DRAIN_INTERVAL anyway), leaving room for a burst before anything is lost.
    config.wakeup_bytes = opts.ring_bytes / 16;
    // The jiffies stamps the TCP probe turns into idle milliseconds.
    config.hz = crate::kernel::hz::kernel_hz().unwrap_or(0);
    (config.tcp_syn_sent, config.tcp_close) = tcp::tcp_states(tracing.as_deref());
    config.budgets = opts.budgets;
    config.snaplen = opts.snaplen.min(tracer_ebpf::SNAP_MAX);
    config.kernel_log = u32::from(opts.kernel_log);
    set_spans(&mut config);

    let mut loader = EbpfLoader::new();
    loader
        .override_global("CONFIG", &config, true)
        .map_max_entries("EVENTS", opts.ring_bytes);
    if !opts.kernel_log {
        loader.map_max_entries(kernel_log::MAP, kernel_log::IDLE_RING_BYTES);
    }
    let mut ebpf = loader.load(EBPF_OBJECT)?;
    let kernel_log = if opts.kernel_log {
        Some(kernel_log::logger(&mut ebpf).map_err(LoadError::KernelLog)?)
    } else {
        None
    };

    if !opts.drop_filter.is_empty() {
        let map = ebpf
            .map_mut("DROP_FILTER")
            .ok_or(LoadError::MissingMap("DROP_FILTER"))?;
        let mut filter: Array<&mut MapData, u8> =
            Array::try_from(map).map_err(|source| LoadError::Map {
                name: "DROP_FILTER",
                source,
            })?;
        for &r in &opts.drop_filter {
            if r < DROP_FILTER_SLOTS {
                filter.set(r, 1, 0).map_err(|source| LoadError::Map {
                    name: "DROP_FILTER",
                    source,
                })?;
            }
        }
    }

    let mut status = Vec::new();
    for (group, spec) in GROUPS
        .iter()
        .flat_map(|g| g.probes.iter().map(move |p| (g, p)))
    {
        let tracepoint = format!("{}:{}", spec.category, spec.name);
        if !selected(group, spec, &opts.groups) {
            status.push(ProbeStatus {
                name: spec.name,
                tracepoint,
                status: "disabled",
                error: Some("not selected with --probes".into()),
            });
            continue;
        }
        let res = precheck(spec, kbtf, &resolved, tracing.as_deref()).and_then(|()| {
            let prog: &mut RawTracePoint = ebpf
                .program_mut(spec.name)
                .ok_or_else(|| format!("program {} missing from the eBPF object", spec.name))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| short_error(&e))?;
            prog.load().map_err(|e| short_error(&e))?;
            prog.attach(spec.name).map_err(|e| short_error(&e))?;
            Ok(())
        });
        status.push(match res {
            Ok(()) => ProbeStatus {
                name: spec.name,
                tracepoint,
                status: "attached",
                error: None,
            },
            Err(e) => ProbeStatus {
                name: spec.name,
                tracepoint,
                status: "failed",
                error: Some(e),
            },
        });
    }

    let events = RingBuf::try_from(
        ebpf.take_map("EVENTS")
            .ok_or(LoadError::MissingMap("EVENTS"))?,
    )
    .map_err(|source| LoadError::Map {
        name: "EVENTS",
        source,
    })?;
    let lost = PerCpuArray::try_from(ebpf.take_map("LOST").ok_or(LoadError::MissingMap("LOST"))?)
        .map_err(|source| LoadError::Map {
        name: "LOST",
        source,
    })?;
    let filtered = PerCpuArray::try_from(
        ebpf.take_map("DROP_FILTERED")
            .ok_or(LoadError::MissingMap("DROP_FILTERED"))?,
    )
    .map_err(|source| LoadError::Map {
        name: "DROP_FILTERED",
        source,
    })?;
    let budget = PerCpuHashMap::try_from(
        ebpf.take_map("BUDGET")
            .ok_or(LoadError::MissingMap("BUDGET"))?,
    )
    .map_err(|source| LoadError::Map {
        name: "BUDGET",
        source,
    })?;
    let drop_budget = PerCpuHashMap::try_from(
        ebpf.take_map("DROP_BUDGET")
            .ok_or(LoadError::MissingMap("DROP_BUDGET"))?,
    )
    .map_err(|source| LoadError::Map {
        name: "DROP_BUDGET",
        source,
    })?;
    Ok(Loaded {
        ebpf,
        events,
        lost,
        filtered,
        budget,
        drop_budget,
        status,
        kernel_log,
    })
}

/// Sum over CPUs of every per-kind loss counter.
pub fn read_lost(map: &PerCpuArray<MapData, u64>) -> [u64; kind::MAX as usize] {
    let mut out = [0u64; kind::MAX as usize];
    for (k, slot) in out.iter_mut().enumerate() {
        if let Ok(v) = map.get(&(k as u32), 0) {
            *slot = v.iter().sum();
        }
    }
    out
}

/// Sets the spans the drop program reads in one call each (sizes: pointers
/// 8 bytes, `protocol`/`network_header`/`mac_header` 2, `len`/`data_len`
/// and `ifindex` 4, `name` IFNAMSIZ).
pub fn set_spans(c: &mut tracer_ebpf::KernelConfig) {
    use tracer_ebpf::{Span, IFNAMSIZ};
    c.skb_span = Span::covering(&[
        (c.skb_dev, 8),
        (c.skb_sk, 8),
        (c.skb_protocol, 2),
        (c.skb_network_header, 2),
        (c.skb_head, 8),
        (c.skb_data, 8),
        (c.skb_mac_header, 2),
        (c.skb_len, 4),
        (c.skb_data_len, 4),
    ]);
    c.dev_span = Span::covering(&[
        (c.dev_ifindex, 4),
        (c.dev_nd_net, 8),
        (c.dev_name, IFNAMSIZ as u32),
    ]);
}

/// A budget entry whose windows (every CPU's) are older than this is idle:
/// user space removes it once what it held back has been reported, so the
/// maps never fill with namespaces and devices that are gone. Safe against
/// the programs: a record can be held back only in a window younger than
/// one second, so an idle entry's count cannot grow while it is removed
/// (a drop that renews it meanwhile is sent, and starts a fresh entry).
pub const BUDGET_IDLE_NS: u64 = 30_000_000_000;

/// Records held back by the budgets since load, summed over CPUs, per
/// (kind, netns inode); only pairs with some. Keys idle for
/// [`BUDGET_IDLE_NS`] before `now_ns` (`CLOCK_MONOTONIC`) are added to
/// `idle`, for [`remove_idle`] once the counts are reported.
pub fn read_held_back(
    map: &PerCpuHashMap<MapData, u64, BudgetState>,
    now_ns: u64,
    idle: &mut Vec<u64>,
) -> BTreeMap<(u32, u32), u64> {
    let mut out = BTreeMap::new();
    for item in map.iter() {
        let Ok((key, per_cpu)) = item else { continue };
        let n: u64 = per_cpu.iter().map(|s| s.held_back).sum();
        if is_idle(per_cpu.iter().map(|s| s.window_start_ns), now_ns) {
            idle.push(key);
        }
        if n > 0 {
            out.insert(held_back_key(&key), n);
        }
    }
    out
}

/// (kind, netns) of a `BUDGET` key.
pub fn held_back_key(key: &u64) -> (u32, u32) {
    ((key >> 32) as u32, *key as u32)
}

/// Whether every CPU's window started [`BUDGET_IDLE_NS`] or more before `now_ns`.
fn is_idle(window_starts: impl Iterator<Item = u64>, now_ns: u64) -> bool {
    let mut any = false;
    for w in window_starts {
        if now_ns.saturating_sub(w) < BUDGET_IDLE_NS {
            return false;
        }
        any = true;
    }
    any
}

/// Removes idle keys (listed by a read) from a budget map and from the
/// snapshot that read returned, so that a key created again later counts
/// from zero. Returns how many were removed.
pub fn remove_idle<K: aya::Pod, V: aya::Pod, S: Ord, T>(
    map: &mut PerCpuHashMap<MapData, K, V>,
    idle: Vec<K>,
    snapshot: &mut BTreeMap<S, T>,
    snapshot_key: impl Fn(&K) -> S,
) -> usize {
    let mut removed = 0;
    for k in idle {
        if map.remove(&k).is_ok() {
            snapshot.remove(&snapshot_key(&k));
            removed += 1;
        }
    }
    removed
}

/// Per (kind, netns) increase between two [`read_held_back`] snapshots.
pub fn held_back_delta(
    prev: &BTreeMap<(u32, u32), u64>,
    now: &BTreeMap<(u32, u32), u64>,
) -> Vec<(u32, u32, u64)> {
    now.iter()
        .filter_map(|(&(k, ns), &n)| {
            let d = n.saturating_sub(prev.get(&(k, ns)).copied().unwrap_or(0));
            (d > 0).then_some((k, ns, d))
        })
        .collect()
}

/// Drops held back since load per place ([`DropBudgetKey`]), summed over
/// CPUs, with the namespace of the place's last sent drop; only places
/// with some. Idle places go to `idle` as in [`read_held_back`].
pub fn read_drops_held_back(
    map: &PerCpuHashMap<MapData, DropBudgetKey, DropBudgetState>,
    now_ns: u64,
    idle: &mut Vec<DropBudgetKey>,
) -> BTreeMap<DropBudgetKey, (u32, u64)> {
    let mut out = BTreeMap::new();
    for item in map.iter() {
        let Ok((key, per_cpu)) = item else { continue };
        let n: u64 = per_cpu.iter().map(|s| s.budget.held_back).sum();
        let netns = per_cpu.iter().map(|s| s.netns).find(|&ns| ns != 0);
        if is_idle(per_cpu.iter().map(|s| s.budget.window_start_ns), now_ns) {
            idle.push(key);
        }
        if n > 0 {
            out.insert(key, (netns.unwrap_or(0), n));
        }
    }
    out
}

/// The drops held back between two [`read_drops_held_back`] snapshots,
/// per (namespace, reason, location). The increase is taken per place
/// (its count only grows), then summed where places share a namespace,
/// reason and location.
pub fn drops_held_back_delta(
    prev: &BTreeMap<DropBudgetKey, (u32, u64)>,
    now: &BTreeMap<DropBudgetKey, (u32, u64)>,
) -> Vec<HeldBackDrops> {
    let mut sum: BTreeMap<(u32, u32, u64), u64> = BTreeMap::new();
    for (k, &(netns, n)) in now {
        let d = n.saturating_sub(prev.get(k).map_or(0, |&(_, p)| p));
        if d > 0 {
            let slot = sum.entry((netns, k.reason, k.location)).or_default();
            *slot = slot.saturating_add(d);
        }
    }
    sum.into_iter()
        .map(|((netns, reason, location), count)| HeldBackDrops {
            netns,
            reason,
            location,
            count,
        })
        .collect()
}

/// Sum over CPUs of the kernel-filtered drop counters for the given reasons.
pub fn read_filtered(map: &PerCpuArray<MapData, u64>, reasons: &BTreeSet<u32>) -> Vec<(u32, u64)> {
    reasons
        .iter()
        .filter(|&&r| r < DROP_FILTER_SLOTS)
        .map(|&r| {
            let n = map.get(&r, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
            (r, n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Held-back drops are taken per place (a place's count only grows)
    /// and summed per (namespace, reason, location); a place whose device
    /// now sits in another namespace brings only its increase there.
    #[test]
    fn drops_held_back_delta_is_per_place_then_per_key() {
        let key = |place: u64, reason: u32| DropBudgetKey {
            place,
            location: 0xffff_ffff_8100_0000,
            reason,
            _pad: 0,
        };
        let prev = BTreeMap::from([(key(1, 5), (10, 100)), (key(2, 5), (10, 50))]);
        let now = BTreeMap::from([
            (key(1, 5), (10, 130)),
            (key(2, 5), (11, 55)),
            (key(3, 5), (10, 7)),
            (key(4, 2), (10, 1)),
        ]);
        let d = drops_held_back_delta(&prev, &now);
        let got: Vec<(u32, u32, u64)> = d.iter().map(|h| (h.netns, h.reason, h.count)).collect();
        assert_eq!(got, [(10, 2, 1), (10, 5, 37), (11, 5, 5)]);
        assert!(drops_held_back_delta(&now, &now).is_empty());
    }

    /// An entry is idle only when every CPU's window is older than
    /// BUDGET_IDLE_NS (a CPU that never used it has window 0).
    #[test]
    fn budget_entries_are_idle_only_when_every_cpu_is() {
        let now = 100 * BUDGET_IDLE_NS;
        assert!(is_idle([0, now - BUDGET_IDLE_NS].into_iter(), now));
        assert!(!is_idle([0, now - BUDGET_IDLE_NS + 1].into_iter(), now));
        assert!(!is_idle([now - 1_000_000_000, 0].into_iter(), now));
        assert!(!is_idle(std::iter::empty(), now), "no CPU read: keep it");
        // A clock read before the window (never expected): not idle.
        assert!(!is_idle([now + 5].into_iter(), now));
    }

    #[test]
    fn kfree_skb_has_a_budget_by_default() {
        assert_eq!(default_budgets()[kind::SKB_DROP as usize], DEFAULT_BUDGET);
        assert_eq!(parse_budget("kfree_skb=0"), Ok((kind::SKB_DROP, 0)));
    }

    #[test]
    fn registry_describes_each_probe_and_kind_once() {
        let names: Vec<&str> = all().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "br_fdb_update",
                "fdb_delete",
                "netif_receive_skb",
                "neigh_update",
                "tcp_retransmit_skb",
                "tcp_send_reset",
                "tcp_receive_reset",
                "inet_sock_set_state",
                "icmp_send",
                "kfree_skb",
            ]
        );
        assert_eq!(group_names(), ["fdb", "arp", "tcp", "drop"]);
        // Every record kind is emitted by exactly one probe, the one whose
        // name the loss reports use.
        let mut seen = BTreeSet::new();
        for p in all() {
            assert!(!p.prototype.is_empty(), "{}", p.name);
            assert!(!p.needs.is_empty(), "{}", p.name);
            for k in p.emits {
                assert!(seen.insert(*k), "{k:?} emitted twice");
                assert_eq!(k.probe_name(), p.name);
            }
        }
        assert_eq!(seen.len(), RecordKind::ALL.len());
        assert!(is_selectable("tcp") && is_selectable("kfree_skb") && !is_selectable("tpc"));
    }

    #[test]
    fn budgets_parse_and_default() {
        assert_eq!(
            parse_budget("br_fdb_update=250"),
            Ok((kind::FDB_UPDATE, 250))
        );
        assert_eq!(
            parse_budget("netif_receive_skb=0"),
            Ok((kind::ARP_REPLY, 0))
        );
        assert!(parse_budget("tcp_send_reset=10")
            .unwrap_err()
            .contains("br_fdb_update, netif_receive_skb, kfree_skb"));
        assert!(parse_budget("br_fdb_update").is_err());
        assert!(parse_budget("br_fdb_update=-1").is_err());
        let d = default_budgets();
        assert_eq!(d[kind::FDB_UPDATE as usize], DEFAULT_BUDGET);
        assert_eq!(d[kind::ARP_REPLY as usize], DEFAULT_BUDGET);
        assert_eq!(d[kind::FDB_DELETE as usize], 0, "rare kinds have no budget");
        assert_eq!(d.iter().filter(|&&b| b > 0).count(), BUDGETED.len());
    }

    #[test]
    fn spans_cover_the_fields_or_are_none() {
        use tracer_ebpf::{KernelConfig, Span, SPAN_MAX, UNRESOLVED};
        let mut c = KernelConfig::unresolved();
        set_spans(&mut c);
        assert_eq!((c.skb_span, c.dev_span), (Span::NONE, Span::NONE));
        // Linux 6.18's offsets.
        (c.skb_dev, c.skb_sk, c.skb_protocol, c.skb_network_header) = (16, 24, 176, 180);
        (c.skb_head, c.skb_data) = (192, 200);
        (c.skb_mac_header, c.skb_len, c.skb_data_len) = (182, 112, 116);
        (c.dev_ifindex, c.dev_nd_net, c.dev_name) = (224, 264, 280);
        set_spans(&mut c);
        assert_eq!(c.skb_span, Span { base: 16, len: 192 });
        assert_eq!(c.dev_span, Span { base: 224, len: 72 });
        // Too far apart, or one unresolved: field by field.
        c.dev_name = 224 + SPAN_MAX;
        c.skb_sk = UNRESOLVED;
        set_spans(&mut c);
        assert_eq!((c.skb_span, c.dev_span), (Span::NONE, Span::NONE));
        assert_eq!(Span::covering(&[(13, 2)]), Span { base: 8, len: 7 });
    }

    #[test]
    fn held_back_delta_is_per_kind_and_namespace() {
        let prev = BTreeMap::from([((kind::FDB_UPDATE, 7), 10), ((kind::ARP_REPLY, 7), 3)]);
        let now = BTreeMap::from([
            ((kind::FDB_UPDATE, 7), 25),
            ((kind::ARP_REPLY, 7), 3),
            ((kind::FDB_UPDATE, 9), 4),
        ]);
        assert_eq!(
            held_back_delta(&prev, &now),
            vec![(kind::FDB_UPDATE, 7, 15), (kind::FDB_UPDATE, 9, 4)]
        );
        let help = probes_help();
        for g in GROUPS {
            assert!(help.contains(g.name) && help.contains(g.gives), "{help}");
        }
    }
}
