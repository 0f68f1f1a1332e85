//! `tracer`: command line.

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracer::{
    detect::config::{setting, DetectConfig, Span},
    live,
    pipeline::Filter,
    probes,
};

/// eBPF packet-loss tracer for container hosts.
///
/// Shows what the kernel did when containers "drop out of the network":
/// bridge FDB learns/moves/deletes, ARP replies and neighbour updates, TCP
/// retransmits and resets, and packet drops with the kernel's drop reason.
/// One ECS-style JSON object per line on stdout (or, on a terminal, a view
/// for people: see --format); diagnostics on stderr.
#[derive(Parser, Debug)]
#[command(name = "tracer", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach the probes and stream NDJSON events to stdout until SIGINT,
    /// SIGTERM, SIGHUP or --duration, then detach, flush everything (within
    /// a bounded time) and exit 0. A second SIGINT/SIGTERM exits at once
    /// (status 130; the capture ends at its last complete record). A closed
    /// stdout (`tracer run | head`) stops the run with status 0; any other
    /// output error (a full disk) is reported at once and exits 1.
    ///
    /// Needs root (or CAP_BPF + CAP_PERFMON, plus CAP_NET_ADMIN + CAP_SYS_ADMIN
    /// to read other network namespaces).
    Run(Box<RunArgs>),
    /// Print, for each probe, whether it can attach on this kernel and why not.
    /// Exits 0 when at least one probe works.
    Check(CheckArgs),
    /// Replay a capture made with `tracer run --record FILE`: prints the same
    /// NDJSON the live run printed (same enrichment, same alerts). Needs no
    /// privileges, no eBPF, no containers: works on any machine.
    ///
    /// Continues into FILE.1, FILE.2 ... (rotated parts) when they exist. A
    /// capture cut short (host died, disk full, kill -9) replays every
    /// complete record, then warns with the byte offset where it stopped.
    Replay(ReplayArgs),
    /// Write an HTML report of one or several captures: the outage on one
    /// time axis (FDB ports per MAC, ARP replies, retransmits and resets
    /// per flow, drops per reason and location, alerts, incidents as bands
    /// with their explanation and hint, loss accounting). One self-contained
    /// file: opens offline in any browser. Replays like `tracer replay`
    /// (same alerts); several captures are merged as several hosts.
    Report(ReportArgs),
    /// Write a synthetic capture (benchmarks): N kernel records of every kind
    /// between containers on an overlay, with their identity.
    #[command(hide = true)]
    SynthCapture(SynthArgs),
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Kernel records to generate.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Containers on the synthetic overlay (1 to 1000000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    containers: u32,
    /// Peers each container talks to (its long-lived connections and the
    /// addresses it resolves by ARP); 0: a random peer per record and ARP
    /// replies sweeping every container pair (flow and ARP-key churn beyond
    /// the detectors' key limit).
    #[arg(long, default_value_t = 4)]
    peers: u32,
    /// Capture file to write (must not exist).
    #[arg(long)]
    output: PathBuf,
    /// Packet snapshot bytes after drop, ARP-reply and retransmit records
    /// (as `tracer run --snaplen`); default 0: none, the records of older captures.
    #[arg(long, default_value_t = 0, value_name = "BYTES",
        value_parser = clap::value_parser!(u32).range(0..=tracer_ebpf::SNAP_MAX as i64))]
    snaplen: u32,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Capture files (the first part of each; one per host).
    #[arg(required = true)]
    files: Vec<PathBuf>,

    /// HTML file to write (must not exist).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,

    #[command(flatten)]
    filters: FilterArgs,

    #[command(flatten)]
    detect: DetectArgs,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// Capture file (the first part). Several files (one capture per host)
    /// are merged in wall-clock order, each event naming its host
    /// (`host.name`), with one set of detectors over them all.
    #[arg(required = true)]
    files: Vec<PathBuf>,

    /// Pace the replay: 1 = real time, 10 = ten times faster, 0.5 = half
    /// speed (0.001 to 1000000). Default (0): as fast as possible.
    #[arg(long, default_value_t = 0.0, value_name = "FACTOR", value_parser = parse_speed)]
    speed: f64,

    /// Write the packets the capture's drop, ARP-reply and retransmit
    /// records carry (recorded with `run --snaplen`) to FILE as pcapng, for
    /// Wireshark or tshark: one interface per namespace and interface, each
    /// packet commented with the action, drop reason and location, and the
    /// containers. FILE must not exist (created 0600, never through a
    /// symbolic link). The scope filters apply; --action does not.
    #[arg(long, value_name = "FILE")]
    pcapng: Option<PathBuf>,

    #[command(flatten)]
    filters: FilterArgs,

    #[command(flatten)]
    output: OutputArgs,

    #[command(flatten)]
    detect: DetectArgs,
}

/// How events are printed (run and replay).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Output")]
struct OutputArgs {
    /// text: sentences for alerts and incidents (with containers and hint),
    /// raw events counted per container and kind, probe and loss status on
    /// one line (redrawn in place on a terminal). ndjson: one ECS JSON
    /// object per line. Default: text when stdout is a terminal, else ndjson.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<Format>,

    /// Colour in the text view: auto = only on a terminal and when NO_COLOR
    /// is unset or empty (https://no-color.org).
    #[arg(long, value_enum, default_value_t = Colour::Auto, value_name = "WHEN")]
    color: Colour,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Ndjson,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Colour {
    Auto,
    Always,
    Never,
}

impl OutputArgs {
    /// The text view's options, or None for NDJSON.
    fn text(&self) -> Option<tracer::sink::text::TextOptions> {
        use std::io::IsTerminal as _;
        let terminal = std::io::stdout().is_terminal();
        let text = self.format.unwrap_or(if terminal {
            Format::Text
        } else {
            Format::Ndjson
        });
        if text != Format::Text {
            return None;
        }
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Some(tracer::sink::text::TextOptions {
            terminal,
            colour: match self.color {
                Colour::Always => true,
                Colour::Never => false,
                Colour::Auto => terminal && !no_color,
            },
            width: tracer::sink::text::TextOptions::terminal_width(),
        })
    }
}

/// Output filters (the same live and in replay). --netns, --interface,
/// --container and --service choose what the detectors look at: alerts,
/// incidents and drop summaries are those of the selected scope (events
/// outside it still update FDB state). --action only chooses which lines
/// are printed. Status lines (probe status, loss reports) always pass.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Filters")]
struct FilterArgs {
    /// Only print events from this network namespace (inode, as in
    /// `ls -Li /proc/<pid>/ns/net`). Repeatable.
    #[arg(long = "netns", value_name = "INODE")]
    netns: Vec<u32>,

    /// Only print events with this event.action (fdb_move, skb_drop, fdb_flap ...). Repeatable.
    #[arg(long = "action", value_name = "ACTION", value_delimiter = ',')]
    actions: Vec<String>,

    /// Only print events involving this interface (interface, bridge or port name). Repeatable.
    #[arg(long = "interface", value_name = "NAME")]
    interfaces: Vec<String>,

    /// Only print events involving this container: its name, full id or an
    /// id prefix of 12 or more characters; as the event's container, source
    /// or destination, or behind the bridge port. Repeatable. Like --netns
    /// and --interface (and unlike --action, which only chooses the lines
    /// printed), applied before the detectors: alerts, incidents and drop
    /// summaries are those of the selected containers' events.
    #[arg(long = "container", value_name = "NAME|ID")]
    containers: Vec<String>,

    /// Only print events involving a container of this swarm service or
    /// compose service. Repeatable (with --container: either matches).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            netns: self.netns.iter().copied().collect(),
            actions: self.actions.iter().cloned().collect(),
            interfaces: self.interfaces.iter().cloned().collect(),
            containers: self.containers.iter().cloned().collect(),
            services: self.services.iter().cloned().collect(),
        }
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Stop by itself after this long (e.g. 30s, 5m, 1h30m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    #[arg(long, value_delimiter = ',', help = probes::probes_help())]
    probes: Vec<String>,

    /// Do not report drops with this kernel drop reason (e.g. NOT_SPECIFIED).
    /// Repeatable. Filtered drops are still counted in the kernel and reported
    /// per reason in `loss_report` lines (tracer.filtered): never silently.
    #[arg(
        long = "ignore-drop-reason",
        value_name = "REASON",
        value_delimiter = ','
    )]
    ignore_drop_reasons: Vec<String>,

    /// Ring-buffer size (power of two, e.g. 4M, 16M, 64M). Records that do not fit
    /// are counted per probe and reported as loss.
    #[arg(long, default_value = "8M", value_parser = parse_ring_size)]
    ring_buffer_size: u32,

    /// Per-kind budget in the kernel, PROBE=N: records of that probe each
    /// network namespace may send per second on each CPU (0: no budget);
    /// for kfree_skb, each place of a drop (device or socket, drop reason,
    /// code location). The rest are held back, counted, and reported in
    /// `loss_report` lines (tracer.held_back_by_probe); held-back drops also
    /// count in their drop_summary, so drop accounting stays exact. A MAC
    /// or ARP flood in one namespace cannot push other namespaces' FDB
    /// moves out of the ring, and a drop storm costs the kernel a counter
    /// per drop instead of a record. Budgeted probes: br_fdb_update,
    /// netif_receive_skb (ARP replies), kfree_skb; default 1000 each. Rare
    /// kinds (FDB deletes, neighbour updates, TCP records, ICMP errors the
    /// kernel rate-limits itself) have none.
    #[arg(long = "budget", value_name = "PROBE=N", value_delimiter = ',', value_parser = probes::parse_budget)]
    budgets: Vec<(u32, u32)>,

    /// Kernel-side diagnostics, for a probe that misbehaves on a strange
    /// kernel: the programs say on stderr, with the probe's name, when a
    /// struct read fell back to field-by-field reads, a field they need
    /// could not be read, or a record was lost to a full ring buffer (the
    /// 1st, 2nd, 4th, 8th ... loss per CPU). Without it the programs pay
    /// one load and a branch for this.
    #[arg(long)]
    kernel_log: bool,

    #[command(flatten)]
    filters: FilterArgs,

    /// Record a capture to FILE next to the live output; `tracer replay FILE`
    /// prints the same lines later, on any machine. FILE and its rotated
    /// parts (FILE.1 ...) are always new files (mode 0600, never through a
    /// symbolic link): tracer refuses to start when FILE or any FILE.N
    /// exists, and never overwrites or deletes a file.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,

    /// Bytes of each dropped packet, ARP reply and retransmitted segment
    /// the kernel copies into its record (0 to 256; 0: none, records as
    /// small as without it). Kept in the capture (--record) and written by
    /// --pcapng. From the Ethernet header when the packet has one, else
    /// from the IP header; only what is in the packet's linear part. A
    /// retransmitted segment has no headers yet: its payload is taken and
    /// --pcapng rebuilds its IP and TCP headers (and says so).
    #[arg(long, default_value_t = probes::DEFAULT_SNAPLEN, value_name = "BYTES",
        value_parser = clap::value_parser!(u32).range(0..=tracer_ebpf::SNAP_MAX as i64))]
    snaplen: u32,

    /// Write the packet snapshots (--snaplen) to FILE as pcapng, for
    /// Wireshark or tshark: one interface per namespace and interface, each
    /// packet commented with the action, drop reason and location, and the
    /// containers. FILE must not exist (created 0600, never through a
    /// symbolic link). Written by its own thread through a bounded queue
    /// (what does not fit is counted in loss_report as
    /// tracer.sink_dropped.pcapng); a write error stops the run (exit 1).
    /// The scope filters apply; --action does not.
    #[arg(long, value_name = "FILE")]
    pcapng: Option<PathBuf>,

    /// Start a new capture part (FILE.1, FILE.2 ...) after this size (e.g. 512M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "record")]
    record_rotate: Option<u64>,

    /// Where NDJSON lines go (repeatable; default stdout): `stdout`,
    /// `file:PATH[?rotate=SIZE&keep=N]` (created 0640, appended, rotated by
    /// size to PATH.1..PATH.N, reopened on SIGHUP for logrotate),
    /// `tcp://HOST:PORT` or `unix:PATH` (NDJSON over a stream socket, as
    /// Vector's socket source or Fluent Bit's tcp input read it; reconnected
    /// with backoff). Each has its own bounded queue (`?queue=SIZE`, default
    /// 16M): a slow or absent reader costs its own lines (counted per output
    /// in loss_report's tracer.sink_dropped), never the others'.
    #[arg(long = "output", short = 'o', value_name = "TARGET")]
    outputs: Vec<tracer::sink::Output>,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off by default;
    /// a bare PORT listens on 127.0.0.1 only, e.g. `--metrics 9464`; give
    /// `0.0.0.0:9464` to let a Prometheus on another host scrape it): events
    /// per action, drops per reason/container/netns, alerts and open
    /// incidents per type, ring-buffer loss per probe, output loss per
    /// output, enrichment and probe status. At most 200 containers (and 200
    /// namespaces) get their own label value; more fold into `other`.
    #[arg(long, value_name = "ADDR:PORT", value_parser = tracer::metrics::parse_addr)]
    metrics: Option<std::net::SocketAddr>,

    /// Do not name containers (no Docker API, no /proc scan): namespace-level identity only.
    #[arg(long)]
    no_identity: bool,

    /// Do not ask the Docker Engine API (identity from /proc and namespaces only).
    #[arg(long)]
    no_docker: bool,

    /// Docker Engine API socket.
    #[arg(long, default_value = "/var/run/docker.sock", value_name = "PATH")]
    docker_socket: PathBuf,

    /// Where the host's /proc is mounted, when tracer runs in a container
    /// without the host's PID namespace (a Docker Swarm service, e.g. with
    /// `-v /proc:/host/proc:ro` and `--host-proc /host/proc`): identity reads
    /// other processes' namespaces and cgroups there.
    #[arg(
        long,
        value_name = "PATH",
        env = "TRACER_HOST_PROC",
        default_value = "/proc"
    )]
    host_proc: PathBuf,

    /// How often loss counters are read; a loss_report line is printed whenever
    /// something was lost, and always once at exit.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    loss_interval: Duration,

    /// Do not read the bridges' FDB at start (the first move of each MAC then reads as a learn).
    #[arg(long)]
    no_fdb_seed: bool,

    /// host.name on every event (and in the capture header). Default: the
    /// kernel's node name (`uname -n`), the host's own in a container that
    /// shares the host's UTS namespace.
    #[arg(long, value_name = "NAME")]
    host_name: Option<String>,

    #[command(flatten)]
    output: OutputArgs,

    #[command(flatten)]
    kernel: KernelArgs,

    #[command(flatten)]
    detect: DetectArgs,
}

/// Detector thresholds and windows (same flags live and in replay). Flags,
/// defaults, ranges and help come from the detectors' one table
/// ([`setting`]); a value out of range is refused with the range.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Detectors")]
struct DetectArgs {
    /// Turn detectors off: raw events only, every drop printed.
    #[arg(long)]
    no_detect: bool,

    #[arg(long = setting::FLAP_THRESHOLD.flag, help = setting::FLAP_THRESHOLD.help, value_name = "N",
        default_value_t = setting::FLAP_THRESHOLD.default,
        value_parser = |s: &str| setting::FLAP_THRESHOLD.parse(s))]
    flap_threshold: u32,

    #[arg(long = setting::FLAP_WINDOW.flag, help = setting::FLAP_WINDOW.help, value_name = "DURATION",
        default_value_t = setting::FLAP_WINDOW.default_span(),
        value_parser = |s: &str| setting::FLAP_WINDOW.parse_span(s))]
    flap_window: Span,

    #[arg(long = setting::ARP_DUPLICATE_THRESHOLD.flag, help = setting::ARP_DUPLICATE_THRESHOLD.help,
        value_name = "N", default_value_t = setting::ARP_DUPLICATE_THRESHOLD.default,
        value_parser = |s: &str| setting::ARP_DUPLICATE_THRESHOLD.parse(s))]
    arp_duplicate_threshold: u32,

    #[arg(long = setting::ARP_DUPLICATE_WINDOW.flag, help = setting::ARP_DUPLICATE_WINDOW.help,
        value_name = "DURATION", default_value_t = setting::ARP_DUPLICATE_WINDOW.default_span(),
        value_parser = |s: &str| setting::ARP_DUPLICATE_WINDOW.parse_span(s))]
    arp_duplicate_window: Span,

    #[arg(long = setting::IP_CONFLICT_WINDOW.flag, help = setting::IP_CONFLICT_WINDOW.help,
        value_name = "DURATION", default_value_t = setting::IP_CONFLICT_WINDOW.default_span(),
        value_parser = |s: &str| setting::IP_CONFLICT_WINDOW.parse_span(s))]
    ip_conflict_window: Span,

    #[arg(long = setting::RETRANSMIT_THRESHOLD.flag, help = setting::RETRANSMIT_THRESHOLD.help,
        value_name = "N", default_value_t = setting::RETRANSMIT_THRESHOLD.default,
        value_parser = |s: &str| setting::RETRANSMIT_THRESHOLD.parse(s))]
    retransmit_threshold: u32,

    #[arg(long = setting::RETRANSMIT_WINDOW.flag, help = setting::RETRANSMIT_WINDOW.help,
        value_name = "DURATION", default_value_t = setting::RETRANSMIT_WINDOW.default_span(),
        value_parser = |s: &str| setting::RETRANSMIT_WINDOW.parse_span(s))]
    retransmit_window: Span,

    #[arg(long = setting::IDLE_MIN.flag, help = setting::IDLE_MIN.help,
        value_name = "DURATION", default_value_t = setting::IDLE_MIN.default_span(),
        value_parser = |s: &str| setting::IDLE_MIN.parse_span(s))]
    idle_min: Span,

    #[arg(long = setting::CONNECT_SYN_THRESHOLD.flag, help = setting::CONNECT_SYN_THRESHOLD.help,
        value_name = "N", default_value_t = setting::CONNECT_SYN_THRESHOLD.default,
        value_parser = |s: &str| setting::CONNECT_SYN_THRESHOLD.parse(s))]
    connect_syn_threshold: u32,

    #[arg(long = setting::CONNECT_NO_ANSWER_AFTER.flag, help = setting::CONNECT_NO_ANSWER_AFTER.help,
        value_name = "DURATION", default_value_t = setting::CONNECT_NO_ANSWER_AFTER.default_span(),
        value_parser = |s: &str| setting::CONNECT_NO_ANSWER_AFTER.parse_span(s))]
    connect_no_answer_after: Span,

    #[arg(long = setting::CONNECT_CAUSE_TTL.flag, help = setting::CONNECT_CAUSE_TTL.help,
        value_name = "DURATION", default_value_t = setting::CONNECT_CAUSE_TTL.default_span(),
        value_parser = |s: &str| setting::CONNECT_CAUSE_TTL.parse_span(s))]
    connect_cause_ttl: Span,

    #[arg(long = setting::DROP_LINES_PER_SEC.flag, help = setting::DROP_LINES_PER_SEC.help,
        value_name = "N", default_value_t = setting::DROP_LINES_PER_SEC.default,
        value_parser = |s: &str| setting::DROP_LINES_PER_SEC.parse(s))]
    drop_lines_per_sec: u64,

    #[arg(long = setting::DROP_SUMMARY_INTERVAL.flag, help = setting::DROP_SUMMARY_INTERVAL.help,
        value_name = "DURATION", default_value_t = setting::DROP_SUMMARY_INTERVAL.default_span(),
        value_parser = |s: &str| setting::DROP_SUMMARY_INTERVAL.parse_span(s))]
    drop_summary_interval: Span,

    #[arg(long = setting::INCIDENT_WINDOW.flag, help = setting::INCIDENT_WINDOW.help,
        value_name = "DURATION", default_value_t = setting::INCIDENT_WINDOW.default_span(),
        value_parser = |s: &str| setting::INCIDENT_WINDOW.parse_span(s))]
    incident_window: Span,

    #[arg(long = setting::MAX_KEYS.flag, help = setting::MAX_KEYS.help, value_name = "N",
        default_value_t = setting::MAX_KEYS.default,
        value_parser = |s: &str| setting::MAX_KEYS.parse(s))]
    detect_max_keys: usize,
}

impl DetectArgs {
    fn config(&self) -> Option<DetectConfig> {
        if self.no_detect {
            return None;
        }
        Some(DetectConfig {
            fdb_flap_threshold: self.flap_threshold,
            fdb_flap_window: self.flap_window.0,
            arp_duplicate_threshold: self.arp_duplicate_threshold,
            arp_duplicate_window: self.arp_duplicate_window.0,
            ip_conflict_window: self.ip_conflict_window.0,
            retransmit_threshold: self.retransmit_threshold,
            retransmit_window: self.retransmit_window.0,
            idle_min: self.idle_min.0,
            connect_syn_threshold: self.connect_syn_threshold,
            connect_no_answer_after: self.connect_no_answer_after.0,
            connect_cause_ttl: self.connect_cause_ttl.0,
            drop_lines_per_sec: self.drop_lines_per_sec,
            drop_summary_interval: self.drop_summary_interval.0,
            incident_window: self.incident_window.0,
            max_keys: self.detect_max_keys,
            ..DetectConfig::DEFAULT
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
    let bytes = tracer::sink::output::parse_size(s)?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(format!(
            "{s}: the ring buffer must be a power of two between 4K and 1G"
        ));
    }
    Ok(bytes as u32)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,netlink_packet_route=error"),
    )
    .init();
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
            Command::Run(a) => run(*a).await,
            Command::Check(a) => check(a),
            Command::Replay(a) => replay(a),
            Command::Report(a) => report(a),
            Command::SynthCapture(a) => synth(a),
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
        if !probes::is_selectable(g) {
            anyhow::bail!(
                "unknown probe group {g:?}: use {} or a probe name from `tracer check`",
                probes::group_names().join(", ")
            );
        }
    }
    // Refused before anything starts (the capture's own create makes each
    // part with O_EXCL, so nothing is overwritten even if this races).
    if let Some(p) = &a.record {
        tracer::capture::check_free(p)?;
    }
    if let Some(p) = &a.pcapng {
        if a.snaplen == 0 {
            anyhow::bail!("--pcapng needs packet snapshots: drop --snaplen 0");
        }
        if std::fs::symlink_metadata(p).is_ok() {
            anyhow::bail!("{} exists: --pcapng writes a new file", p.display());
        }
    }
    tracer::kernel::hostproc::set(a.host_proc.clone());
    // The text view is for a person at stdout; file and socket outputs feed
    // log pipelines and always carry NDJSON.
    let only_stdout = a
        .outputs
        .iter()
        .all(|o| o.target == tracer::sink::Target::Stdout);
    if !only_stdout && a.output.format == Some(Format::Text) {
        anyhow::bail!(
            "--format text is for stdout alone: file:, tcp:// and unix: outputs carry NDJSON \
             (drop --format text, or send text to stdout without --output)"
        );
    }
    let text = if only_stdout { a.output.text() } else { None };
    let opts = live::RunOptions {
        duration: a.duration,
        groups: a.probes,
        ignore_drop_reasons: a.ignore_drop_reasons,
        ring_bytes: a.ring_buffer_size,
        kernel_log: a.kernel_log,
        budgets: {
            let mut b = probes::default_budgets();
            for (k, n) in a.budgets {
                b[k as usize] = n;
            }
            b
        },
        snaplen: a.snaplen,
        pcapng: a.pcapng,
        filter: a.filters.filter(),
        loss_interval: a.loss_interval.max(Duration::from_millis(10)),
        seed_fdb: !a.no_fdb_seed,
        btf_path: a.kernel.btf,
        detect: a.detect.config(),
        record: a.record,
        record_rotate: a.record_rotate,
        identity: (!a.no_identity).then(|| tracer::identity::SourceConfig {
            docker_socket: a.docker_socket,
            enable_docker: !a.no_docker,
            ..Default::default()
        }),
        args: std::env::args().collect(),
        host_name: a.host_name.or_else(tracer::capture::host_name),
        text,
        outputs: a.outputs,
        metrics: a.metrics,
    };
    Ok(match live::run(opts).await? {
        live::Exit::Clean => ExitCode::SUCCESS,
        live::Exit::OutputFailed => ExitCode::FAILURE,
    })
}

/// `--speed`: 0 (as fast as possible) or a factor in [0.001, 1e6]; NaN,
/// infinities, negatives and factors that would make one second of the
/// capture last for years are refused here, before anything runs.
fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v == 0.0 || (v.is_finite() && (MIN_SPEED..=MAX_SPEED).contains(&v)) {
        Ok(v)
    } else {
        Err(format!(
            "must be 0 (as fast as possible) or a factor from {MIN_SPEED} to {MAX_SPEED}"
        ))
    }
}

const MIN_SPEED: f64 = 0.001;
const MAX_SPEED: f64 = 1_000_000.0;

fn replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let opts = tracer::replay::ReplayOptions {
        path: a.files[0].clone(),
        speed: a.speed,
        filter: a.filters.filter(),
        detect: a.detect.config(),
        text: a.output.text(),
        pcapng: a.pcapng,
    };
    let stdout = std::io::stdout().lock();
    match tracer::replay::replay_paths(&a.files, &opts, stdout) {
        Ok(summary) => {
            if let Some(w) = &summary.warning {
                eprintln!("tracer: warning: {w}");
            }
            if summary.skipped_unknown > 0 {
                eprintln!(
                    "tracer: note: skipped {} records of kinds this tracer does not know (written by a newer tracer)",
                    summary.skipped_unknown
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let start = std::time::Instant::now();
    let opts = tracer::replay::ReplayOptions {
        path: a.files[0].clone(),
        speed: 0.0,
        filter: a.filters.filter(),
        detect: a.detect.config(),
        text: None,
        pcapng: None,
    };
    let (r, summary) = tracer::report::build(&a.files, &opts)?;
    let sources: Vec<String> = a.files.iter().map(|p| p.display().to_string()).collect();
    let html = r.html("tracer report", &sources);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    f.write_all(html.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", a.output.display()))?;
    if let Some(w) = &summary.warning {
        eprintln!("tracer: warning: {w}");
    }
    eprintln!(
        "wrote {} ({} bytes) from {} inputs in {:.1}s",
        a.output.display(),
        html.len(),
        summary.inputs,
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    if a.output.exists() {
        anyhow::bail!("{} already exists", a.output.display());
    }
    // The running kernel's drop-reason names when readable, else the core ones.
    let reasons = tracer::kernel::btf::KernelBtf::load(std::path::Path::new(
        tracer::kernel::btf::DEFAULT_VMLINUX,
    ))
    .ok()
    .and_then(|b| tracer::kernel::btf::DropReasons::from_btf(&b).ok())
    .unwrap_or_else(|| {
        tracer::kernel::btf::DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")])
    });
    let stats = tracer::synth::write_with(
        &a.output,
        a.events,
        a.containers,
        a.peers,
        &reasons,
        a.snaplen,
    )?;
    eprintln!(
        "wrote {} kernel records ({} bytes) to {}",
        stats.kernel_records,
        stats.bytes,
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn parse_size(s: &str) -> Result<u64, String> {
    let v = tracer::sink::output::parse_size(s)?;
    if v < 1 << 20 {
        return Err(format!("{s}: rotate at 1M or more"));
    }
    Ok(v)
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = tracer::check::run(&a.kernel.btf, a.drop_reasons)?;
    let text = if a.json {
        report.ndjson()
    } else {
        report.table()
    };
    // Not print!: it panics when stdout is closed (`tracer check | head -1`).
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        // The reader had enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("writing to stdout"),
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

    /// `--format text` with a file or socket output is refused before
    /// anything starts: those outputs feed pipelines and carry NDJSON.
    #[test]
    fn text_format_is_for_stdout_alone() {
        let args = |extra: &[&str]| {
            let mut v = vec!["tracer", "run"];
            v.extend_from_slice(extra);
            match Cli::try_parse_from(v).unwrap().command {
                Command::Run(a) => *a,
                other => panic!("{other:?}"),
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let e = rt
            .block_on(run(args(&["-o", "tcp://127.0.0.1:9", "--format", "text"])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--format text is for stdout alone"), "{e}");
    }

    #[test]
    fn replay_speed_is_refused_out_of_range_not_panicked_on() {
        let speed = |v: &str| {
            let flag = format!("--speed={v}");
            Cli::try_parse_from(["tracer", "replay", "x.capture", &flag]).map(|c| match c.command {
                Command::Replay(a) => a.speed,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(speed("0").unwrap(), 0.0);
        assert_eq!(speed("10").unwrap(), 10.0);
        assert_eq!(speed("0.5").unwrap(), 0.5);
        for bad in ["1e-12", "NaN", "inf", "-inf", "-1", "1e300", "fast"] {
            let e = speed(bad).unwrap_err().to_string();
            assert!(e.contains("--speed"), "{bad}: {e}");
        }
        assert!(speed("1e-12")
            .unwrap_err()
            .to_string()
            .contains("must be 0 (as fast as possible) or a factor from 0.001 to 1000000"));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn replay_detect(args: &[&str]) -> Result<Option<DetectConfig>, clap::Error> {
        let argv = ["tracer", "replay", "x.capture"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Replay(a) => Ok(a.detect.config()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn container_service_and_output_flags_parse() {
        let argv = [
            "tracer",
            "replay",
            "x.capture",
            "--container",
            "web-1",
            "--container",
            "0123456789ab",
            "--service",
            "api",
            "--format",
            "text",
            "--color",
            "never",
        ];
        let Command::Replay(a) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not replay");
        };
        let f = a.filters.filter();
        assert_eq!(f.containers.len(), 2);
        assert!(f.services.contains("api"));
        assert_eq!(a.output.format, Some(Format::Text));
        let t = a.output.text().unwrap();
        assert!(!t.colour, "--color never");
        let run = [
            "tracer",
            "run",
            "--host-name",
            "node-7",
            "--format",
            "ndjson",
        ];
        let Command::Run(r) = Cli::try_parse_from(run).unwrap().command else {
            panic!("not run");
        };
        assert_eq!(r.host_name.as_deref(), Some("node-7"));
        assert!(r.output.text().is_none(), "--format ndjson");
        assert!(Cli::try_parse_from(["tracer", "replay", "x", "--format", "xml"]).is_err());
    }

    #[test]
    fn detector_flags_default_to_the_table_and_refuse_out_of_range() {
        assert_eq!(replay_detect(&[]).unwrap(), Some(DetectConfig::DEFAULT));
        assert_eq!(replay_detect(&["--no-detect"]).unwrap(), None);
        let c = replay_detect(&["--flap-threshold", "5", "--flap-window", "2s"])
            .unwrap()
            .unwrap();
        assert_eq!(c.fdb_flap_threshold, 5);
        assert_eq!(c.fdb_flap_window, Duration::from_secs(2));
        let e = replay_detect(&["--flap-threshold", "100000000"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("--flap-threshold 100000000: must be between 1 and 100 (default 3)"),
            "{e}"
        );
        assert!(replay_detect(&["--detect-max-keys", "3"]).is_err());
        assert!(replay_detect(&["--drop-summary-interval", "1ms"]).is_err());
        assert!(replay_detect(&["--arp-duplicate-threshold", "1"]).is_err());
    }
}
