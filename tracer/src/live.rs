//! The live run: load and attach, read the ring buffer through tokio's
//! `AsyncFd`, feed the [`Pipeline`], hand its lines to the sinks (queued:
//! the reader never waits for them), report losses, and stop cleanly.
//!
//! Staying in control:
//! - The ring buffer is drained in batches of at most [`DRAIN_BUDGET`]
//!   records; between batches the loop is back in its `select!`, so
//!   signals, `--duration`, loss reports, identity updates and capture
//!   flushes run under a producer faster than the consumer.
//! - Nothing in the loop waits for a reader or a disk: sinks are queued,
//!   and while the capture writer is behind, kernel records stay in the
//!   ring buffer ([`ThreadedWriter::congested`]); a capture that takes
//!   nothing for [`CAPTURE_STALL`] is given up (live output goes on).
//! - Stop (a [`CancellationToken`]): SIGINT, SIGTERM, SIGHUP (unless a
//!   sink can be reopened: then SIGHUP reopens it), `--duration`, or a sink
//!   that stopped for good (stdout closed: quietly, exit 0; a write error:
//!   reported at once, exit 1). Stopping detaches the probes first (the
//!   producer stops), drains what is left for at most [`STOP_DRAIN`],
//!   finishes the capture (end marker; at most [`CAPTURE_FINISH_WAIT`]) and
//!   the sinks (at most [`crate::sink::queued::FINISH_WAIT`]), saying what
//!   was not written. A second SIGINT/SIGTERM exits at once with status
//!   130: the capture then ends at its last complete record.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tokio_util::sync::CancellationToken;
use tracer_ebpf::kind;

use crate::{
    capture::ThreadedWriter,
    decode::{Locations, Tables},
    fdb,
    kernel::{self, clock, privileges},
    pipeline::{loss_delta, Filter, Input, Pipeline},
    probes::{self, LoadOptions},
    sink::{self, text::TextView, Lines, SinkStats},
};

/// Options of `tracer run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub duration: Option<Duration>,
    pub groups: Vec<String>,
    pub ignore_drop_reasons: Vec<String>,
    pub ring_bytes: u32,
    /// Per-kind budgets (records per second per namespace per CPU, by kind; 0: none).
    pub budgets: [u32; kind::MAX as usize],
    /// `--snaplen`: packet bytes the drop, ARP-reply and retransmit records carry.
    pub snaplen: u32,
    /// `--pcapng FILE`: those packets as pcapng.
    pub pcapng: Option<PathBuf>,
    /// `--kernel-log`: the programs' own diagnostics on stderr.
    pub kernel_log: bool,
    pub filter: Filter,
    pub loss_interval: Duration,
    pub seed_fdb: bool,
    pub btf_path: PathBuf,
    /// None: detectors off.
    pub detect: Option<crate::detect::DetectConfig>,
    /// `--record FILE`.
    pub record: Option<PathBuf>,
    /// Start a new capture part after this many bytes.
    pub record_rotate: Option<u64>,
    /// Container identity sources (None: `--no-identity`).
    pub identity: Option<crate::identity::SourceConfig>,
    /// Command line, recorded in the capture header.
    pub args: Vec<String>,
    /// `--output` targets (empty: stdout).
    pub outputs: Vec<sink::Output>,
    /// `--metrics`: serve Prometheus exposition there.
    pub metrics: Option<std::net::SocketAddr>,
    /// `host.name` of every event (recorded in the capture header).
    pub host_name: Option<String>,
    /// `--format text`; None: NDJSON.
    pub text: Option<crate::sink::text::TextOptions>,
}

/// Ring-buffer records fed per turn of the loop at most.
pub const DRAIN_BUDGET: usize = 4096;
/// After the probes are detached, what is left in the ring buffer is read
/// for this long at most.
pub const STOP_DRAIN: Duration = Duration::from_secs(2);
/// A capture writer that takes nothing for this long is given up.
pub const CAPTURE_STALL: Duration = Duration::from_secs(10);
/// How long the capture is waited for at exit.
pub const CAPTURE_FINISH_WAIT: Duration = Duration::from_secs(10);
/// Exit status after a second SIGINT/SIGTERM (128 + SIGINT, the shell's).
pub const EXIT_INTERRUPTED: i32 = 130;

/// How a live run ended (errors before the run are `Err`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything written (or stdout was closed by its reader).
    Clean,
    /// Output failed; already reported on stderr: exit 1.
    OutputFailed,
}

/// The live run's data path: every input goes through the pipeline, into
/// the capture (when recording) and out to the sinks as NDJSON.
struct Live {
    pipeline: Pipeline,
    /// Queued sinks: pushing never waits for their writers.
    out: Lines<'static>,
    batch: Vec<crate::event::EcsEvent>,
    /// Frames, checksums and writes on its own thread; this side only
    /// copies kernel records into a batch (see [`ThreadedWriter`]).
    capture: Option<ThreadedWriter>,
    /// Since when the capture writer has been behind.
    congested_since: Option<Instant>,
    /// `--metrics`: counts what is printed (None: off, no cost).
    metrics: Option<crate::metrics::Observer>,
    /// `--pcapng`: the packet snapshots, queued to their own writer thread.
    pcap: Option<crate::pcapng::PcapOut>,
    /// Packets the pcapng queue dropped, as last reported.
    pcap_reported: u64,
}

impl Live {
    /// What each output dropped since the last call (`--output` sinks and
    /// the pcapng file), for the loss report.
    fn take_dropped(&mut self) -> Vec<(String, u64)> {
        let mut v = self.out.take_dropped();
        if let Some(pc) = self.pcap.as_mut() {
            let now = pc.sink().dropped();
            if now > self.pcap_reported {
                v.push(("pcapng".to_string(), now - self.pcap_reported));
                self.pcap_reported = now;
            }
        }
        v
    }

    /// The capture writer is behind: hold kernel records back (in the
    /// ring buffer). Gives the capture up when it stalled too long.
    fn capture_congested(&mut self) -> bool {
        let Some(w) = self.capture.as_ref() else {
            return false;
        };
        if !w.congested() {
            self.congested_since = None;
            return false;
        }
        let since = *self.congested_since.get_or_insert_with(Instant::now);
        if since.elapsed() < CAPTURE_STALL {
            return true;
        }
        eprintln!(
            "tracer: error: recording stopped: the disk took no capture writes for {} s; the capture ends at its last complete record; live output continues",
            CAPTURE_STALL.as_secs()
        );
        if let Some(w) = self.capture.take() {
            w.abandon();
        }
        self.congested_since = None;
        false
    }

    fn feed(&mut self, input: Input) {
        if let Input::Kernel(bytes) = &input {
            return self.feed_kernel(bytes);
        }
        self.batch.clear();
        self.pipeline.process(&input, &mut self.batch);
        self.record(input);
        self.print();
    }

    /// The hot path: one ring-buffer record, straight from the ring (no
    /// copy of its own).
    fn feed_kernel(&mut self, bytes: &[u8]) {
        self.batch.clear();
        self.pipeline.process_kernel(bytes, &mut self.batch);
        if let Some(pc) = self.pcap.as_mut() {
            for p in self.pipeline.drain_packets() {
                // A failed writer says so through the stop notice.
                let _ = pc.write(&p);
            }
        }
        if let Some(w) = self.capture.as_mut() {
            // Symbols the record resolved go first, then the record (a
            // copy into the writer's batch).
            let syms = self.pipeline.take_new_symbols();
            let res = w.write_symbols(syms).and_then(|()| w.write_kernel(bytes));
            self.after_record(res);
        }
        self.print();
    }

    fn print(&mut self) {
        // A sink that stopped (EPIPE...) says why at exit.
        let _ = self.out.push_all(&self.batch);
        if let Some(m) = self.metrics.as_mut() {
            for e in &self.batch {
                m.observe(e);
            }
        }
    }

    /// Records what was just processed: symbols it resolved first, then the
    /// input itself, so a replay sees them in the order it needs them.
    /// Rotation happens here, right after the input that filled the part,
    /// with the pipeline's state at that moment (the writer thread only
    /// carries it out).
    fn record(&mut self, input: Input) {
        let Some(w) = self.capture.as_mut() else {
            return;
        };
        let syms = self.pipeline.take_new_symbols();
        let res = w.write_symbols(syms).and_then(|()| w.write_input(input));
        self.after_record(res);
    }

    /// Rotates when the part is full; stops recording on an error.
    fn after_record(&mut self, mut res: Result<(), crate::capture::CaptureError>) {
        let Some(w) = self.capture.as_mut() else {
            return;
        };
        if res.is_ok() && w.rotation_due() {
            res = w.rotate(self.pipeline.state_snapshot());
        }
        if let Err(e) = res {
            // Live output goes on; the capture stops here (disk full...).
            eprintln!("tracer: error: recording stopped: {e}; live output continues");
            self.capture = None;
        }
    }
}

pub async fn run(opts: RunOptions) -> anyhow::Result<Exit> {
    privileges::check()?;
    privileges::raise_memlock();
    // One start-up line naming the mounts and namespaces that are missing
    // (a container started without them works, with less).
    let docker = opts
        .identity
        .as_ref()
        .filter(|c| c.enable_docker)
        .map(|c| c.docker_socket.as_path());
    let missing = kernel::hostproc::missing(docker);
    if !missing.is_empty() {
        eprintln!("tracer: warning: missing: {}", missing.join("; "));
    }
    let info = kernel::kernel_info(&opts.btf_path)?;
    for w in &info.warnings {
        eprintln!("tracer: warning: {w}");
    }
    let drop_filter = kernel::resolve_reasons(&info.drop_reasons, &opts.ignore_drop_reasons)?;
    let boot_to_wall_ns = clock::boot_to_wall_offset_ns();

    let capture = match &opts.record {
        // Rotation happens in `Live::record`, with a fresh snapshot.
        Some(path) => Some(
            ThreadedWriter::create(
                path,
                crate::capture::Header::this_host(
                    opts.args.clone(),
                    boot_to_wall_ns,
                    opts.host_name.clone(),
                ),
                &info.drop_reasons,
                opts.record_rotate,
            )
            .with_context(|| format!("cannot record to {}", path.display()))?,
        ),
        None => None,
    };
    // Bound before anything is attached: an address in use is an error now.
    let metrics = match opts.metrics {
        Some(addr) => {
            let (observer, registry) = crate::metrics::new(crate::metrics::MAX_CONTAINERS);
            let (local, _task) = crate::metrics::serve(addr, registry)
                .await
                .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
            eprintln!("tracer: metrics at http://{local}/metrics");
            Some(observer)
        }
        None => None,
    };
    let mut live = Live {
        pipeline: Pipeline::new(
            Tables {
                drop_reasons: info.drop_reasons.clone(),
                locations: match info.symbols {
                    Some(s) => Locations::live(s),
                    None => Locations::default(),
                },
                boot_to_wall_ns,
                reason_cache: Default::default(),
            },
            opts.filter.clone(),
            opts.detect.clone(),
        ),
        out: Lines::new(open_outputs(&opts.outputs)?, sink::BATCH_BYTES)
            .with_host_name(opts.host_name.as_deref())
            .with_text(opts.text.map(TextView::new)),
        batch: Vec::new(),
        capture,
        congested_since: None,
        metrics,
        pcap: None,
        pcap_reported: 0,
    };
    let sink_stopped = live.out.stop_notice();
    if let Some(path) = &opts.pcapng {
        let file = crate::pcapng::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut q = sink::Queued::new("pcapng", "tracer-pcapng", file, sink::QUEUE_BYTES)
            .with_context(|| format!("cannot start the writer of {}", path.display()))?;
        sink::Sink::notify_stop(&mut q, sink_stopped.clone());
        live.pipeline.collect_packets();
        live.pcap = Some(crate::pcapng::PcapOut::new(Box::new(q)));
    }

    // Identity sources start first; their initial scan is awaited briefly so
    // the first events already carry names (never longer than 3 s).
    let (mut id_rx, hints) = match opts.identity.clone() {
        Some(cfg) => {
            let (rx, hints) = crate::identity::spawn(cfg);
            (Some(rx), hints)
        }
        None => (None, crate::identity::IdentityHints::disconnected()),
    };
    if let Some(rx) = id_rx.as_mut() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        use crate::identity::IdentityUpdate as U;
        let docker = opts.identity.as_ref().is_some_and(|c| c.enable_docker);
        let (mut netns_ready, mut docker_ready) = (false, !docker);
        while let Ok(Some(u)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            match &u {
                U::Synced { source, .. } if source == "docker" => docker_ready = true,
                U::Status { source, .. } if source == "docker" => docker_ready = true,
                U::Synced { .. } => netns_ready = true,
                _ => {}
            }
            live.feed(Input::Identity(u));
            if netns_ready && docker_ready {
                break;
            }
        }
    }

    // Seed FDB state before attaching, so the first move is recognised.
    let fdb_selected = opts.groups.is_empty()
        || opts
            .groups
            .iter()
            .any(|g| g == "fdb" || g == "br_fdb_update" || g == "fdb_delete");
    if opts.seed_fdb && fdb_selected {
        let (seed, errors) = tokio::task::spawn_blocking(fdb::collect_seed)
            .await
            .context("FDB seed task")?;
        for e in errors {
            eprintln!("tracer: warning: FDB seed: {e}");
        }
        live.feed(Input::FdbSeed(seed));
    }

    let load_opts = LoadOptions {
        groups: opts.groups.clone(),
        ring_bytes: opts.ring_bytes,
        drop_filter: drop_filter.clone(),
        budgets: opts.budgets,
        snaplen: opts.snaplen,
        kernel_log: opts.kernel_log,
    };
    let probes::Loaded {
        ebpf,
        events,
        lost,
        filtered,
        budget,
        drop_budget,
        status,
        kernel_log,
    } = probes::load(&info.btf, &load_opts)?;
    if let Some(logger) = kernel_log {
        tokio::spawn(probes::kernel_log::forward(logger));
    }
    let now = clock::boot_now_ns();
    let mut attached = 0;
    for s in &status {
        if s.status == "attached" {
            attached += 1;
        } else if s.status == "failed" {
            eprintln!(
                "tracer: probe {} ({}) not attached: {}",
                s.name,
                s.tracepoint,
                s.error.as_deref().unwrap_or("unknown error")
            );
        }
        live.feed(Input::ProbeStatus {
            boot_ns: now,
            name: s.name.to_string(),
            tracepoint: s.tracepoint.clone(),
            status: s.status.to_string(),
            error: s.error.clone(),
        });
    }
    let _ = live.out.flush();
    if attached == 0 {
        drop(ebpf);
        live.out.finish();
        bail!(
            "no probe could be attached (see the probe_status lines above, or run `tracer check`)"
        );
    }

    // SAFETY: the RingBuf owns its fd for as long as the AsyncFd owns the
    // RingBuf; nothing else closes or reuses it.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }.map_err(
            |e| {
                anyhow::anyhow!(
                    "registering the ring buffer with tokio: {}",
                    e.into_parts().1
                )
            },
        )?;
    // Shutdown: SIGINT, SIGTERM, SIGHUP, --duration or a stopped sink
    // cancels the run; the loop below then detaches and drains. The signal
    // task lives on until the run returns: a second SIGINT/SIGTERM exits
    // at once, whatever the shutdown is waiting for.
    let shutdown = CancellationToken::new();
    let done = CancellationToken::new();
    let (hup_tx, mut hup_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(SignalKind::hangup())?;
    let duration = opts.duration;
    tokio::spawn({
        let (shutdown, done) = (shutdown.clone(), done.clone());
        async move {
            let deadline = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(deadline);
            loop {
                let name = tokio::select! {
                    _ = sigint.recv() => "SIGINT",
                    _ = sigterm.recv() => "SIGTERM",
                    _ = sighup.recv() => {
                        // The loop decides: reopen, or stop as on SIGTERM.
                        let _ = hup_tx.send(());
                        continue;
                    }
                    _ = &mut deadline, if !shutdown.is_cancelled() => {
                        shutdown.cancel();
                        continue;
                    }
                    _ = done.cancelled() => return,
                };
                if shutdown.is_cancelled() {
                    eprintln!(
                        "tracer: {name} again: exiting now; the capture, if any, ends at its last complete record"
                    );
                    std::process::exit(EXIT_INTERRUPTED);
                }
                shutdown.cancel();
            }
        }
    });
    // Whatever way the run ends, the signal task ends with it.
    let _done_guard = done.drop_guard();
    let mut tick = tokio::time::interval(opts.loss_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut losses = LossCounters {
        lost,
        filtered,
        reasons: drop_filter,
        prev_lost: [0u64; kind::MAX as usize],
        prev_filtered: Default::default(),
        budget,
        prev_held_back: Default::default(),
        drop_budget,
        prev_drops_held_back: Default::default(),
    };
    let mut last_hint = 0u32;
    let mut drain_tick = tokio::time::interval(probes::DRAIN_INTERVAL);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Output that failed (not a closed pipe), reported when it happened.
    let mut output_failed = false;
    // What failed then (`writing to pcapng`): not said again at exit.
    let mut said: Option<String> = None;

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer readiness")?;
                let rb = guard.get_inner_mut();
                let drained = drain(rb, &mut live, &hints, &mut last_hint, DRAIN_BUDGET);
                // Budget used up: still readable, so the loop comes back
                // here after the other branches had their turn. Empty, or
                // held back for the capture writer: wait to be woken (or
                // for the drain tick).
                if drained != Drained::Budget {
                    guard.clear_ready();
                }
                let _ = live.out.flush();
            }
            _ = drain_tick.tick() => {
                let rb = ring.get_mut();
                if drain(rb, &mut live, &hints, &mut last_hint, DRAIN_BUDGET) != Drained::Empty {
                    let _ = live.out.flush();
                }
            }
            Some(u) = async {
                match id_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            }, if !live.capture_congested() => {
                live.feed(Input::Identity(u));
            }
            // While the capture writer is behind, ticks wait too: what they
            // record (tick, loss report, flush) must neither wait for the
            // writer nor be left out of the capture. The drain tick gives
            // up a capture stuck for CAPTURE_STALL.
            _ = tick.tick(), if !live.capture_congested() => {
                let sinks = live.take_dropped();
                if let Some(input) = losses.poll(false, sinks) {
                    live.feed(input);
                }
                live.feed(Input::Tick { boot_ns: clock::boot_now_ns() });
                let _ = live.out.flush();
                if let Some(pc) = live.pcap.as_mut() {
                    let _ = pc.flush();
                }
                // Hands the batch to the capture writer, which flushes.
                if let Some(w) = live.capture.as_mut() {
                    if let Err(e) = w.flush() {
                        eprintln!("tracer: error: recording stopped: {e}; live output continues");
                        live.capture = None;
                    }
                }
            }
            Some(()) = hup_rx.recv() => {
                match live.out.reopen() {
                    Ok(true) => log::info!("SIGHUP: output files reopened"),
                    // Nothing to reopen: the session is gone, stop as on SIGTERM.
                    Ok(false) => shutdown.cancel(),
                    // The stop notice says so.
                    Err(_) => {}
                }
            }
            e = sink_stopped.stopped() => {
                // A closed pipe is the reader's choice (`tracer run | head`):
                // stop quietly. Any other error: say so now, exit 1.
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("tracer: error: {e}; stopping");
                    output_failed = true;
                    said = Some(e.what.clone());
                }
                break;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    shutdown.cancel();

    // Detach first so nothing new arrives, then drain what is left, for a
    // bounded time (the capture writer may be behind).
    drop(ebpf);
    let stop_by = Instant::now() + STOP_DRAIN;
    loop {
        match drain(
            ring.get_mut(),
            &mut live,
            &hints,
            &mut last_hint,
            DRAIN_BUDGET,
        ) {
            Drained::Empty => break,
            _ if Instant::now() >= stop_by => {
                eprintln!(
                    "tracer: warning: stopping: records left in the ring buffer after {} s were not read",
                    STOP_DRAIN.as_secs()
                );
                break;
            }
            Drained::Budget => {}
            Drained::HeldBack => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    // The last inputs must not wait for a stuck capture writer either.
    if live.capture.as_ref().is_some_and(|w| w.congested()) {
        if let Some(w) = live.capture.take() {
            eprintln!("tracer: error: recording stopped: the disk is not taking capture writes; the capture ends at its last complete record");
            w.abandon();
        }
    }
    let sinks = live.take_dropped();
    if let Some(input) = losses.poll(true, sinks) {
        live.feed(input);
    }
    live.feed(Input::Finish {
        boot_ns: clock::boot_now_ns(),
    });
    // Joins the writer threads: the capture's (end marker, flush, sync),
    // then the sinks' (everything queued written). Each reports the same way.
    let mut finished: Vec<SinkStats> = Vec::new();
    if let Some(w) = live.capture.take() {
        finished.push(w.finish_sink_within(CAPTURE_FINISH_WAIT));
    }
    if let Some(pc) = live.pcap.take() {
        finished.push(pc.finish());
    }
    let lines = live.out.lines();
    finished.extend(live.out.finish());
    let mut failed = None;
    for mut stats in finished {
        log::debug!(
            "{}: {} delivered, {} dropped",
            stats.name,
            stats.delivered,
            stats.dropped
        );
        // Output that could not be written fails the run (returned, not
        // printed here). A closed pipe does not: `tracer run | head` is
        // the reader's choice. A capture that stopped does not either:
        // live output went on.
        if stats.name == "stdout" {
            failed = stats
                .error
                .take_if(|e| e.kind() != std::io::ErrorKind::BrokenPipe);
            if output_failed {
                // Said when it happened.
                failed = None;
            }
        }
        // The pcapng file is incomplete: exit 1 (the error is printed
        // below, unless it was when it stopped the run).
        if stats.name == "pcapng" && stats.error.is_some() {
            output_failed = true;
            if stats.error.as_ref().map(|e| &e.what) == said.as_ref() {
                stats.error = None;
            }
        }
        if let Some(msg) = sink::problem(&stats) {
            let level = if stats.error.is_some() {
                "error"
            } else {
                "warning"
            };
            eprintln!("tracer: {level}: {msg}");
        }
    }
    log::debug!("{lines} lines written");
    if let Some(e) = failed {
        return Err(e).context("writing NDJSON to stdout");
    }
    Ok(if output_failed {
        Exit::OutputFailed
    } else {
        Exit::Clean
    })
}

/// The `--output` sinks (stdout when none is given), each queued.
fn open_outputs(outputs: &[sink::Output]) -> anyhow::Result<Vec<Box<dyn sink::Sink>>> {
    let stdout = [sink::Output {
        target: sink::Target::Stdout,
        queue_bytes: sink::QUEUE_BYTES,
    }];
    let outputs = if outputs.is_empty() {
        &stdout[..]
    } else {
        outputs
    };
    outputs
        .iter()
        .map(|o| {
            o.open()
                .map(|s| s as Box<dyn sink::Sink>)
                .with_context(|| format!("cannot open output {}", o.name()))
        })
        .collect()
}

/// Why [`drain`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    /// The ring buffer is empty.
    Empty,
    /// The budget was used up: more may be waiting.
    Budget,
    /// The capture writer is behind: the rest waits in the ring buffer.
    HeldBack,
}

/// Feeds the records waiting in the ring buffer, at most `budget` of them.
fn drain(
    rb: &mut aya::maps::RingBuf<aya::maps::MapData>,
    live: &mut Live,
    hints: &crate::identity::IdentityHints,
    last_hint: &mut u32,
    budget: usize,
) -> Drained {
    for _ in 0..budget {
        if live.capture_congested() {
            return Drained::HeldBack;
        }
        let Some(item) = rb.next() else {
            return Drained::Empty;
        };
        let bytes: &[u8] = &item;
        // An event from a namespace identity does not know yet: ask the
        // sources to look (never blocks).
        if let Some(ns) = crate::decode::record_netns(bytes) {
            if ns != 0 && ns != *last_hint && !live.pipeline.knows_netns(ns) {
                hints.hint_netns(ns);
                *last_hint = ns;
            }
        }
        live.feed_kernel(bytes);
    }
    Drained::Budget
}

/// Kernel loss counters and what was last reported.
struct LossCounters {
    lost: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    filtered: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    reasons: BTreeSet<u32>,
    prev_lost: [u64; kind::MAX as usize],
    prev_filtered: std::collections::BTreeMap<u32, u64>,
    budget: aya::maps::PerCpuHashMap<aya::maps::MapData, u64, tracer_ebpf::BudgetState>,
    prev_held_back: std::collections::BTreeMap<(u32, u32), u64>,
    drop_budget: aya::maps::PerCpuHashMap<
        aya::maps::MapData,
        tracer_ebpf::DropBudgetKey,
        tracer_ebpf::DropBudgetState,
    >,
    prev_drops_held_back: std::collections::BTreeMap<tracer_ebpf::DropBudgetKey, (u32, u64)>,
}

impl LossCounters {
    /// A loss report when something was lost or filtered since the last
    /// poll, or a sink dropped lines (`sinks`: since the last poll), or
    /// always, for the final report.
    fn poll(&mut self, always: bool, sinks: Vec<(String, u64)>) -> Option<Input> {
        let now_lost = probes::read_lost(&self.lost);
        let delta = loss_delta(&self.prev_lost, &now_lost);
        let filt_now = probes::read_filtered(&self.filtered, &self.reasons);
        let filt_delta: Vec<(u32, u64)> = filt_now
            .iter()
            .map(|&(r, n)| {
                (
                    r,
                    n.saturating_sub(*self.prev_filtered.get(&r).unwrap_or(&0)),
                )
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        self.prev_lost = now_lost;
        self.prev_filtered = filt_now.into_iter().collect();
        // Budget entries idle for a while are removed once what they held
        // back is in this report (see probes::BUDGET_IDLE_NS).
        let mono = clock::monotonic_now_ns();
        let mut idle = Vec::new();
        let mut held_now = probes::read_held_back(&self.budget, mono, &mut idle);
        let held_back = probes::held_back_delta(&self.prev_held_back, &held_now);
        probes::remove_idle(&mut self.budget, idle, &mut held_now, probes::held_back_key);
        self.prev_held_back = held_now;
        let mut idle = Vec::new();
        let mut drops_now = probes::read_drops_held_back(&self.drop_budget, mono, &mut idle);
        let drops_held_back = probes::drops_held_back_delta(&self.prev_drops_held_back, &drops_now);
        probes::remove_idle(&mut self.drop_budget, idle, &mut drops_now, |k| *k);
        self.prev_drops_held_back = drops_now;
        (always
            || !delta.is_empty()
            || !filt_delta.is_empty()
            || !sinks.is_empty()
            || !held_back.is_empty()
            || !drops_held_back.is_empty())
        .then(|| Input::Loss {
            boot_ns: clock::boot_now_ns(),
            lost: delta,
            filtered: filt_delta,
            lost_total: now_lost.iter().sum(),
            sinks,
            held_back,
            drops_held_back,
        })
    }
}
