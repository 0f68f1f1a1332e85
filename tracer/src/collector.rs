//! The live run: load and attach, read the ring buffer through tokio's
//! `AsyncFd`, feed the [`Pipeline`], report losses, and on SIGINT/SIGTERM
//! or `--duration` detach, drain everything and exit cleanly.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracer_ebpf::kind;

use crate::{
    btf::{DropReasons, KernelBtf},
    clock,
    decode::{Locations, Tables},
    fdb, kallsyms,
    output::Output,
    pipeline::{loss_delta, Filter, Input, Pipeline},
    privileges,
    probes::{self, LoadOptions},
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
}

/// What start-up resolved from the kernel: BTF, names, symbols.
pub struct KernelInfo {
    pub btf: KernelBtf,
    pub drop_reasons: DropReasons,
    pub symbols: Option<kallsyms::Symbols>,
    pub warnings: Vec<String>,
}

pub fn kernel_info(btf_path: &std::path::Path) -> anyhow::Result<KernelInfo> {
    let btf = KernelBtf::load(btf_path)?;
    let mut warnings = Vec::new();
    let drop_reasons = match DropReasons::from_btf(&btf) {
        Ok(r) => r,
        Err(e) => {
            let root = crate::tracefs::ensure_mounted()
                .with_context(|| format!("drop reasons: not in BTF ({e}) and tracefs unavailable"))?;
            warnings.push(format!("drop reasons from tracefs (BTF: {e})"));
            DropReasons::from_tracefs(&root)?
        }
    };
    let symbols = match kallsyms::Symbols::load() {
        Ok(s) => Some(s),
        Err(e) => {
            warnings.push(format!("drop locations shown as addresses: {e}"));
            None
        }
    };
    Ok(KernelInfo {
        btf,
        drop_reasons,
        symbols,
        warnings,
    })
}

/// Drop-reason names (as given to --ignore-drop-reason) to raw values.
pub fn resolve_reasons(reasons: &DropReasons, names: &[String]) -> anyhow::Result<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for n in names {
        match reasons.value(n) {
            Some(v) => {
                out.insert(v);
            }
            None => bail!(
                "unknown drop reason {n:?}: this kernel's enum skb_drop_reason has e.g. NOT_SPECIFIED, NO_SOCKET (see `tracer check --drop-reasons`)"
            ),
        }
    }
    Ok(out)
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    privileges::check()?;
    privileges::raise_memlock();
    let info = kernel_info(&opts.btf_path)?;
    for w in &info.warnings {
        eprintln!("tracer: warning: {w}");
    }
    let drop_filter = resolve_reasons(&info.drop_reasons, &opts.ignore_drop_reasons)?;
    let boot_to_wall_ns = clock::boot_to_wall_offset_ns();

    let mut out = Output::new(std::io::stdout());
    let mut pipeline = Pipeline::new(
        Tables {
            drop_reasons: info.drop_reasons.clone(),
            locations: match info.symbols {
                Some(s) => Locations::live(s),
                None => Locations::default(),
            },
            boot_to_wall_ns,
        },
        opts.filter.clone(),
        opts.detect.clone(),
    );
    let mut batch = Vec::new();
    let mut feed = |p: &mut Pipeline, input: Input, out: &mut Output| {
        batch.clear();
        p.process(&input, &mut batch);
        for e in &batch {
            out.push(e);
        }
    };

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
        feed(&mut pipeline, Input::FdbSeed(seed), &mut out);
    }

    let load_opts = LoadOptions {
        groups: opts.groups.clone(),
        ring_bytes: opts.ring_bytes,
        drop_filter: drop_filter.clone(),
    };
    let loaded = probes::load(&info.btf, &load_opts)?;
    let probes::Loaded {
        ebpf,
        events,
        lost,
        filtered,
        status,
    } = loaded;
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
        feed(
            &mut pipeline,
            Input::ProbeStatus {
                boot_ns: now,
                name: s.name.to_string(),
                tracepoint: s.tracepoint.clone(),
                status: s.status.to_string(),
                error: s.error.clone(),
            },
            &mut out,
        );
    }
    out.flush();
    if attached == 0 {
        drop(ebpf);
        let _ = out.finish();
        bail!("no probe could be attached (see the probe_status lines above, or run `tracer check`)");
    }

    // SAFETY: the RingBuf owns its fd for as long as the AsyncFd owns the
    // RingBuf; nothing else closes or reuses it.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {}", e.into_parts().1))?;
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut loss_tick = tokio::time::interval(opts.loss_interval);
    loss_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut losses = LossCounters {
        lost,
        filtered,
        reasons: drop_filter,
        prev_lost: [0u64; kind::MAX as usize],
        prev_filtered: Default::default(),
    };

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer readiness")?;
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    let bytes = item.to_vec();
                    drop(item);
                    feed(&mut pipeline, Input::Kernel(bytes), &mut out);
                }
                guard.clear_ready();
                out.flush();
            }
            _ = loss_tick.tick() => {
                if let Some(input) = losses.poll(false) {
                    feed(&mut pipeline, input, &mut out);
                }
                feed(&mut pipeline, Input::Tick { boot_ns: clock::boot_now_ns() }, &mut out);
                out.flush();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
        }
    }

    // Detach first so nothing new arrives, then drain what is left.
    drop(ebpf);
    let rb = ring.get_mut();
    while let Some(item) = rb.next() {
        let bytes = item.to_vec();
        drop(item);
        feed(&mut pipeline, Input::Kernel(bytes), &mut out);
    }
    if let Some(input) = losses.poll(true) {
        feed(&mut pipeline, input, &mut out);
    }
    feed(
        &mut pipeline,
        Input::Finish {
            boot_ns: clock::boot_now_ns(),
        },
        &mut out,
    );
    let lines = out.lines;
    match out.finish() {
        Ok(_) => {}
        // A closed pipe (tracer run | head) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("writing NDJSON to stdout"),
    }
    log::debug!("{lines} lines written");
    Ok(())
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
    /// poll (or always, for the final report).
    fn poll(&mut self, always: bool) -> Option<Input> {
        let now_lost = probes::read_lost(&self.lost);
        let delta = loss_delta(&self.prev_lost, &now_lost);
        let filt_now = probes::read_filtered(&self.filtered, &self.reasons);
        let filt_delta: Vec<(u32, u64)> = filt_now
            .iter()
            .map(|&(r, n)| (r, n.saturating_sub(*self.prev_filtered.get(&r).unwrap_or(&0))))
            .filter(|&(_, n)| n > 0)
            .collect();
        self.prev_lost = now_lost;
        self.prev_filtered = filt_now.into_iter().collect();
        (always || !delta.is_empty() || !filt_delta.is_empty()).then(|| Input::Loss {
            boot_ns: clock::boot_now_ns(),
            lost: delta,
            filtered: filt_delta,
            lost_total: now_lost.iter().sum(),
        })
    }
}
