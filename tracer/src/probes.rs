//! Loading the embedded eBPF object and attaching its programs.
//!
//! Each probe is attached on its own: a probe whose tracepoint is missing,
//! whose prototype differs from what the program reads, whose struct offsets
//! BTF does not give, or that the verifier refuses is reported with the
//! reason and the others run.

use std::{collections::BTreeSet, path::Path};

use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::RawTracePoint,
    Ebpf, EbpfLoader,
};
use thiserror::Error;
use tracer_ebpf::{kind, KernelConfig, DROP_FILTER_SLOTS, UNRESOLVED};

use crate::{
    btf::{self, KernelBtf},
    tracefs,
};

/// The eBPF object built by build.rs (aya-build) and embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// One probe: an eBPF program attached to a raw tracepoint.
#[derive(Clone, Copy, Debug)]
pub struct ProbeSpec {
    /// Program name in the object (and the tracepoint name).
    pub name: &'static str,
    /// tracefs category (`events/<category>/<name>`).
    pub category: &'static str,
    /// Group for `--probes`.
    pub group: &'static str,
    /// What the operator gets from it.
    pub what: &'static str,
    /// `KernelConfig` fields the program reads.
    pub needs: &'static [&'static str],
}

const DEV: [&str; 4] = ["dev_ifindex", "dev_name", "dev_nd_net", "net_ns_inum"];

macro_rules! needs {
    ($($x:expr),* $(,)?) => {{
        const N: &[&str] = &[$($x),*];
        N
    }};
}

pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        name: "br_fdb_update",
        category: "bridge",
        group: "fdb",
        what: "bridge FDB learn and move",
        needs: needs!(DEV[0], DEV[1], DEV[2], DEV[3], "br_dev", "port_dev"),
    },
    ProbeSpec {
        name: "fdb_delete",
        category: "bridge",
        group: "fdb",
        what: "bridge FDB delete",
        needs: needs!(
            DEV[0], DEV[1], DEV[2], DEV[3], "br_dev", "port_dev", "fdb_addr", "fdb_vlan_id",
            "fdb_dst", "fdb_flags"
        ),
    },
    ProbeSpec {
        name: "netif_receive_skb",
        category: "net",
        group: "arp",
        what: "ARP replies received",
        needs: needs!(DEV[0], DEV[1], DEV[2], DEV[3], "skb_protocol", "skb_data", "skb_dev"),
    },
    ProbeSpec {
        name: "neigh_update",
        category: "neigh",
        group: "arp",
        what: "neighbour (ARP/NDP) table updates",
        needs: needs!(
            DEV[0], DEV[1], DEV[2], DEV[3], "neigh_dev", "neigh_primary_key", "neigh_ha",
            "neigh_nud_state", "neigh_tbl", "tbl_family"
        ),
    },
    ProbeSpec {
        name: "tcp_retransmit_skb",
        category: "tcp",
        group: "tcp",
        what: "TCP retransmits",
        needs: needs!(
            "net_ns_inum", "sk_family", "sk_state", "sk_num", "sk_dport", "sk_daddr",
            "sk_rcv_saddr", "sk_v6_daddr", "sk_v6_rcv_saddr", "sk_net", "tcp_snd_una",
            "icsk_retransmits"
        ),
    },
    ProbeSpec {
        name: "tcp_send_reset",
        category: "tcp",
        group: "tcp",
        what: "TCP resets sent",
        needs: needs!(
            DEV[0], DEV[1], DEV[2], DEV[3], "sk_family", "sk_state", "sk_num", "sk_dport",
            "sk_daddr", "sk_rcv_saddr", "sk_v6_daddr", "sk_v6_rcv_saddr", "sk_net", "skb_dev",
            "skb_head", "skb_protocol", "skb_network_header"
        ),
    },
    ProbeSpec {
        name: "tcp_receive_reset",
        category: "tcp",
        group: "tcp",
        what: "TCP resets received",
        needs: needs!(
            "net_ns_inum", "sk_family", "sk_state", "sk_num", "sk_dport", "sk_daddr",
            "sk_rcv_saddr", "sk_v6_daddr", "sk_v6_rcv_saddr", "sk_net"
        ),
    },
    ProbeSpec {
        name: "kfree_skb",
        category: "skb",
        group: "drop",
        what: "packet drops with the kernel's drop reason",
        needs: needs!(
            DEV[0], DEV[1], DEV[2], DEV[3], "skb_dev", "skb_sk", "skb_head", "skb_protocol",
            "skb_network_header", "sk_net"
        ),
    },
];

/// How often the collector drains the ring buffer without being woken
/// (drop records are batched; see `KernelConfig::wakeup_bytes`).
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Probe groups accepted by `--probes`.
pub const GROUPS: &[&str] = &["fdb", "arp", "tcp", "drop"];

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
    pub status: Vec<ProbeStatus>,
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
}

macro_rules! config_fields {
    ($cfg:expr, $name:expr, $($f:ident),* $(,)?) => {
        match $name {
            $(stringify!($f) => $cfg.$f,)*
            _ => UNRESOLVED,
        }
    };
}

/// Value of a `KernelConfig` field by name (UNRESOLVED for unknown names).
pub fn field_value(cfg: &KernelConfig, name: &str) -> u32 {
    config_fields!(
        cfg, name, dev_ifindex, dev_name, dev_nd_net, net_ns_inum, br_dev, port_dev, fdb_addr,
        fdb_vlan_id, fdb_dst, fdb_flags, skb_dev, skb_sk, skb_head, skb_data, skb_protocol,
        skb_network_header, skb_transport_header, sk_family, sk_state, sk_num, sk_dport,
        sk_daddr, sk_rcv_saddr, sk_v6_daddr, sk_v6_rcv_saddr, sk_net, tcp_snd_una,
        icsk_retransmits, neigh_dev, neigh_primary_key, neigh_ha, neigh_nud_state, neigh_tbl,
        tbl_family,
    )
}

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
    kbtf.check_prototype(spec.name, btf::prototype_for(spec.name))
        .map_err(|e| e.to_string())?;
    let missing: Vec<String> = spec
        .needs
        .iter()
        .filter(|f| field_value(&resolved.config, f) == UNRESOLVED)
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

fn selected(spec: &ProbeSpec, groups: &[String]) -> bool {
    groups.is_empty() || groups.iter().any(|g| g == spec.group || g == spec.name)
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

    let mut ebpf = EbpfLoader::new()
        .override_global("CONFIG", &config, true)
        .map_max_entries("EVENTS", opts.ring_bytes)
        .load(EBPF_OBJECT)?;

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
    for spec in PROBES {
        let tracepoint = format!("{}:{}", spec.category, spec.name);
        if !selected(spec, &opts.groups) {
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

    let events = RingBuf::try_from(ebpf.take_map("EVENTS").ok_or(LoadError::MissingMap("EVENTS"))?)
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
    Ok(Loaded {
        ebpf,
        events,
        lost,
        filtered,
        status,
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

/// Sum over CPUs of the kernel-filtered drop counters for the given reasons.
pub fn read_filtered(map: &PerCpuArray<MapData, u64>, reasons: &BTreeSet<u32>) -> Vec<(u32, u64)> {
    reasons
        .iter()
        .filter(|&&r| r < DROP_FILTER_SLOTS)
        .map(|&r| {
            let n = map
                .get(&r, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or(0);
            (r, n)
        })
        .collect()
}
