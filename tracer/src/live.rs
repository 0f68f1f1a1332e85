//! The live run: load and attach, read the ring buffer through tokio's
//! `AsyncFd`, feed the [`Pipeline`], hand its lines to the sinks (queued:
//! the reader never waits for them), report losses, and on SIGINT/SIGTERM
//! or `--duration` (a [`CancellationToken`]) detach, drain everything and
//! exit cleanly.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

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
    sink::{self, Lines, SinkStats},
};

/// Options of `tracer run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub duration: Option<Duration>,
    pub groups: Vec<String>,
    pub ignore_drop_reasons: Vec<String>,
    pub ring_bytes: u32,
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
    /// `--metrics`: counts what is printed (None: off, no cost).
    metrics: Option<crate::metrics::Observer>,
}

impl Live {
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

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
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
                crate::capture::Header::this_host(opts.args.clone(), boot_to_wall_ns),
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
        out: Lines::new(open_outputs(&opts.outputs)?, sink::BATCH_BYTES),
        batch: Vec::new(),
        capture,
        metrics,
    };

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
    };
    let probes::Loaded {
        ebpf,
        events,
        lost,
        filtered,
        status,
    } = probes::load(&info.btf, &load_opts)?;
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
    // Shutdown: SIGINT, SIGTERM or --duration cancels the run; the loop
    // below then detaches and drains.
    let shutdown = CancellationToken::new();
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    // SIGHUP: file outputs reopen their paths (logrotate), nothing else.
    let mut sighup = tokio::signal::unix::signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while sighup.recv().await.is_some() {
            sink::file::request_reopen();
        }
    });
    let duration = opts.duration;
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let deadline = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
                _ = deadline => {}
                // Cancelled by the run itself (an error below).
                _ = shutdown.cancelled() => {}
            }
            shutdown.cancel();
        }
    });
    // Whatever way the loop ends, the stopper task ends with it.
    let _stop_guard = shutdown.clone().drop_guard();
    let mut tick = tokio::time::interval(opts.loss_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut losses = LossCounters {
        lost,
        filtered,
        reasons: drop_filter,
        prev_lost: [0u64; kind::MAX as usize],
        prev_filtered: Default::default(),
    };
    let mut last_hint = 0u32;
    let mut drain_tick = tokio::time::interval(probes::DRAIN_INTERVAL);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer readiness")?;
                drain(guard.get_inner_mut(), &mut live, &hints, &mut last_hint);
                guard.clear_ready();
                let _ = live.out.flush();
            }
            _ = drain_tick.tick() => {
                if drain(ring.get_mut(), &mut live, &hints, &mut last_hint) > 0 {
                    let _ = live.out.flush();
                }
            }
            Some(u) = async {
                match id_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                live.feed(Input::Identity(u));
            }
            _ = tick.tick() => {
                let sinks = live.out.take_dropped();
                if let Some(input) = losses.poll(false, sinks) {
                    live.feed(input);
                }
                live.feed(Input::Tick { boot_ns: clock::boot_now_ns() });
                let _ = live.out.flush();
                // Hands the batch to the capture writer, which flushes.
                if let Some(w) = live.capture.as_mut() {
                    if let Err(e) = w.flush() {
                        eprintln!("tracer: error: recording stopped: {e}; live output continues");
                        live.capture = None;
                    }
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }

    // Detach first so nothing new arrives, then drain what is left.
    drop(ebpf);
    drain(ring.get_mut(), &mut live, &hints, &mut last_hint);
    let sinks = live.out.take_dropped();
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
        finished.push(w.finish_sink());
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
    Ok(())
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

/// Feeds every record waiting in the ring buffer; returns how many.
fn drain(
    rb: &mut aya::maps::RingBuf<aya::maps::MapData>,
    live: &mut Live,
    hints: &crate::identity::IdentityHints,
    last_hint: &mut u32,
) -> usize {
    let mut n = 0;
    while let Some(item) = rb.next() {
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
        n += 1;
    }
    n
}

/// Kernel loss counters and what was last reported.
struct LossCounters {
    lost: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    filtered: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    reasons: BTreeSet<u32>,
    prev_lost: [u64; kind::MAX as usize],
    prev_filtered: std::collections::BTreeMap<u32, u64>,
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
        (always || !delta.is_empty() || !filt_delta.is_empty() || !sinks.is_empty()).then(|| {
            Input::Loss {
                boot_ns: clock::boot_now_ns(),
                lost: delta,
                filtered: filt_delta,
                lost_total: now_lost.iter().sum(),
                sinks,
            }
        })
    }
}
