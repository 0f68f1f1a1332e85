//! `tracer`: command line.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use tracer::{collector, pipeline::Filter, probes};

/// eBPF packet-loss tracer for container hosts.
///
/// Shows what the kernel did when containers "drop out of the network":
/// bridge FDB learns/moves/deletes, ARP replies and neighbour updates, TCP
/// retransmits and resets, and packet drops with the kernel's drop reason.
/// One ECS-style JSON object per line on stdout; diagnostics on stderr.
#[derive(Parser, Debug)]
#[command(name = "tracer", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach the probes and stream NDJSON events to stdout until SIGINT/SIGTERM
    /// (or --duration), then detach, flush everything and exit 0.
    ///
    /// Needs root (or CAP_BPF + CAP_PERFMON, plus CAP_NET_ADMIN + CAP_SYS_ADMIN
    /// to read other network namespaces).
    Run(RunArgs),
    /// Print, for each probe, whether it can attach on this kernel and why not.
    /// Exits 0 when at least one probe works.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Stop by itself after this long (e.g. 30s, 5m, 1h30m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// Probe groups to attach, comma separated: fdb, arp, tcp, drop (default: all).
    /// Single probes can be named too (e.g. kfree_skb).
    #[arg(long, value_delimiter = ',')]
    probes: Vec<String>,

    /// Do not report drops with this kernel drop reason (e.g. NOT_SPECIFIED).
    /// Repeatable. Filtered drops are still counted in the kernel and reported
    /// per reason in `loss_report` lines (tracer.filtered): never silently.
    #[arg(long = "ignore-drop-reason", value_name = "REASON", value_delimiter = ',')]
    ignore_drop_reasons: Vec<String>,

    /// Ring-buffer size (power of two, e.g. 4M, 16M, 64M). Records that do not fit
    /// are counted per probe and reported as loss.
    #[arg(long, default_value = "8M", value_parser = parse_ring_size)]
    ring_buffer_size: u32,

    /// Only print events from this network namespace (inode, as in
    /// `ls -Li /proc/<pid>/ns/net`). Repeatable.
    #[arg(long = "netns", value_name = "INODE")]
    netns: Vec<u32>,

    /// Only print events with this event.action (fdb_move, skb_drop, ...). Repeatable.
    #[arg(long = "action", value_name = "ACTION", value_delimiter = ',')]
    actions: Vec<String>,

    /// Only print events involving this interface (interface, bridge or port name). Repeatable.
    #[arg(long = "interface", value_name = "NAME")]
    interfaces: Vec<String>,

    /// How often loss counters are read; a loss_report line is printed whenever
    /// something was lost, and always once at exit.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    loss_interval: Duration,

    /// Do not read the bridges' FDB at start (the first move of each MAC then reads as a learn).
    #[arg(long)]
    no_fdb_seed: bool,

    #[command(flatten)]
    kernel: KernelArgs,

    #[command(flatten)]
    detect: DetectArgs,
}

/// Detector thresholds and windows (same flags live and in replay).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Detectors")]
struct DetectArgs {
    /// Turn detectors off: raw events only, every drop printed.
    #[arg(long)]
    no_detect: bool,

    /// fdb_flap: moves of one MAC between ports of one bridge...
    #[arg(long, default_value_t = 3, value_name = "N")]
    flap_threshold: u32,

    /// ...within this window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    flap_window: Duration,

    /// arp_duplicate_reply: replies for one IP with the same MAC to one requester...
    #[arg(long, default_value_t = 2, value_name = "N")]
    arp_duplicate_threshold: u32,

    /// ...within this window.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    arp_duplicate_window: Duration,

    /// ip_conflict: two MACs answering for one IP in one namespace within this window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    ip_conflict_window: Duration,

    /// retransmit_burst: retransmits of one flow without forward progress...
    #[arg(long, default_value_t = 3, value_name = "N")]
    retransmit_threshold: u32,

    /// ...within this window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    retransmit_window: Duration,

    /// Individual skb_drop lines per second; the rest are counted in drop_summary lines.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    drop_lines_per_sec: u64,

    /// How often drop_summary lines (per namespace/container, reason, location) are printed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    drop_summary_interval: Duration,

    /// Alerts touching the same container/IP/MAC within this window join one incident;
    /// an incident quiet for this long is resolved.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    incident_window: Duration,

    /// Most keys (MACs, flows, drop keys...) each detector tracks; older ones are evicted and counted.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    detect_max_keys: usize,
}

impl DetectArgs {
    fn config(&self) -> Option<tracer::detect::DetectConfig> {
        if self.no_detect {
            return None;
        }
        Some(tracer::detect::DetectConfig {
            fdb_flap_threshold: self.flap_threshold.max(1),
            fdb_flap_window: self.flap_window,
            arp_duplicate_threshold: self.arp_duplicate_threshold.max(2),
            arp_duplicate_window: self.arp_duplicate_window,
            ip_conflict_window: self.ip_conflict_window,
            retransmit_threshold: self.retransmit_threshold.max(1),
            retransmit_window: self.retransmit_window,
            drop_lines_per_sec: self.drop_lines_per_sec,
            drop_summary_interval: self.drop_summary_interval.max(Duration::from_millis(100)),
            incident_window: self.incident_window,
            max_keys: self.detect_max_keys.max(16),
            ..Default::default()
        })
    }
}

#[derive(Args, Debug)]
struct KernelArgs {
    /// Kernel BTF to read struct offsets from.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    btf: PathBuf,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Print one JSON probe_status line per probe instead of a table.
    #[arg(long)]
    json: bool,

    /// Also list this kernel's drop reasons (name and value).
    #[arg(long)]
    drop_reasons: bool,

    #[command(flatten)]
    kernel: KernelArgs,
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => {
            let m = match t[i..].to_ascii_uppercase().trim_end_matches(['B', 'I']) {
                "" => 1u64,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let bytes = n.checked_mul(mult).ok_or("size too large")?;
    if !bytes.is_power_of_two() || bytes < 4096 || bytes > 1 << 30 {
        return Err(format!(
            "{s}: the ring buffer must be a power of two between 4K and 1G"
        ));
    }
    Ok(bytes as u32)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,netlink_packet_route=error")).init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tracer: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async {
        match cli.command {
            Command::Run(a) => run(a).await,
            Command::Check(a) => check(a),
        }
    });
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tracer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    for g in &a.probes {
        if !probes::GROUPS.contains(&g.as_str()) && !probes::PROBES.iter().any(|p| p.name == g) {
            anyhow::bail!(
                "unknown probe group {g:?}: use {} or a probe name from `tracer check`",
                probes::GROUPS.join(", ")
            );
        }
    }
    let opts = collector::RunOptions {
        duration: a.duration,
        groups: a.probes,
        ignore_drop_reasons: a.ignore_drop_reasons,
        ring_bytes: a.ring_buffer_size,
        filter: Filter {
            netns: a.netns.into_iter().collect(),
            actions: a.actions.into_iter().collect(),
            interfaces: a.interfaces.into_iter().collect(),
        },
        loss_interval: a.loss_interval.max(Duration::from_millis(10)),
        seed_fdb: !a.no_fdb_seed,
        btf_path: a.kernel.btf,
        detect: a.detect.config(),
    };
    collector::run(opts).await?;
    Ok(ExitCode::SUCCESS)
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = tracer::check::run(&a.kernel.btf, a.drop_reasons)?;
    if a.json {
        print!("{}", report.ndjson());
    } else {
        print!("{}", report.table());
    }
    Ok(if report.attached() > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("8M"), Ok(8 << 20));
        assert_eq!(parse_ring_size("64k"), Ok(64 << 10));
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("8X").is_err());
        assert!(parse_ring_size("").is_err());
        assert!(parse_ring_size("99999999999G").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
