//! `tracer replay FILE`: a capture back through the same [`Pipeline`],
//! offline, unprivileged, on any machine. The same inputs in the same order
//! print the same bytes the live run printed.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    capture::{CaptureReader, Record, RecordRef},
    decode::{Locations, Tables},
    detect::DetectConfig,
    event::EcsEvent,
    pcapng::PcapOut,
    pipeline::{Filter, Input, Pipeline},
    sink::{
        text::{TextOptions, TextView},
        Direct, Lines,
    },
};

#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub path: PathBuf,
    /// 0: as fast as possible; 1: real time; 10: ten times faster.
    pub speed: f64,
    pub filter: Filter,
    pub detect: Option<DetectConfig>,
    /// `--format text`; None: NDJSON.
    pub text: Option<TextOptions>,
    /// `--pcapng FILE`: the records' packet snapshots as pcapng (a new file).
    pub pcapng: Option<PathBuf>,
}

/// What a replay read, for the caller's exit status and messages.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub inputs: u64,
    pub lines: u64,
    /// Warning for a capture cut short (path and byte offset).
    pub warning: Option<String>,
    pub skipped_unknown: u64,
}

/// Boot-clock time of an input (for pacing), when it has one.
pub(crate) fn input_boot_ns(input: &Input) -> Option<u64> {
    match input {
        Input::Kernel(b) => kernel_ts(b),
        Input::Loss { boot_ns, .. }
        | Input::ProbeStatus { boot_ns, .. }
        | Input::Tick { boot_ns }
        | Input::Finish { boot_ns } => Some(*boot_ns),
        // Identity changes carry their own time, which for the restated
        // state of a rotated part can be hours before its first record:
        // they are applied at once, never waited for.
        Input::Identity(_) => None,
        Input::FdbSeed(_) => None,
    }
}

pub(crate) fn kernel_ts(b: &[u8]) -> Option<u64> {
    crate::decode::record_ts(b)
}

pub(crate) struct Pacer {
    speed: f64,
    start: Option<(u64, Instant)>,
}

impl Pacer {
    pub(crate) fn new(speed: f64) -> Self {
        Self { speed, start: None }
    }

    /// Waits until `ts` (boot-clock or wall-clock ns: only differences
    /// count) is due. Called once per record: the unpaced check inline,
    /// the pacing out of line.
    #[inline]
    pub(crate) fn wait(&mut self, ts: Option<u64>) {
        // 0, NaN, infinite or negative: as fast as possible.
        if !(self.speed > 0.0 && self.speed.is_finite()) {
            return;
        }
        if let Some(ts) = ts {
            self.wait_until(ts);
        }
    }

    #[inline(never)]
    fn wait_until(&mut self, ts: u64) {
        let (t0, i0) = *self.start.get_or_insert((ts, Instant::now()));
        // Never panics: a factor the CLI did not check (a library caller)
        // that overflows a Duration waits as long as a Duration can.
        let due = Duration::try_from_secs_f64(ts.saturating_sub(t0) as f64 / 1e9 / self.speed)
            .unwrap_or(Duration::MAX);
        let elapsed = i0.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// Replays into `w`. Errors after some output (a corrupt record) still
/// flush what was printed before them.
pub fn replay<W: Write>(opts: &ReplayOptions, w: W) -> anyhow::Result<ReplaySummary> {
    let reader = CaptureReader::open(&opts.path)?;
    replay_reader(reader, opts, w)
}

/// Replays the captures of one or several hosts into `w` (`opts.path` is
/// not read): one capture as [`replay`]; several merged (see [`drive`]).
pub fn replay_paths<W: Write>(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    w: W,
) -> anyhow::Result<ReplaySummary> {
    if let [one] = paths {
        return replay_reader(CaptureReader::open(one)?, opts, w);
    }
    // Each line names its own host (`EcsEvent::host`).
    write_lines(None, opts, w, |emit| drive(paths, opts, emit))
}

/// [`replay`] of an opened capture (`opts.path` is not read): the whole
/// pipeline — capture reader, identity, detectors, serialiser — driven by
/// the capture's bytes alone (what the `pipeline` fuzz target runs).
pub fn replay_reader<W: Write>(
    reader: CaptureReader,
    opts: &ReplayOptions,
    w: W,
) -> anyhow::Result<ReplaySummary> {
    // `host.name` as the recording run printed it (none for captures of
    // tracers that did not print one).
    let host = reader.header().host_name.clone();
    write_lines(host.as_deref(), opts, w, |emit| {
        drive_reader(reader, opts, emit)
    })
}

/// `--pcapng FILE`: a new file (refused when it exists) and its encoder,
/// written on the caller's thread (nothing is dropped).
pub(crate) fn open_pcapng(opts: &ReplayOptions) -> anyhow::Result<Option<PcapOut>> {
    let Some(path) = &opts.pcapng else {
        return Ok(None);
    };
    let f =
        crate::pcapng::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let name = format!("pcapng {}", path.display());
    let w = std::io::BufWriter::with_capacity(1 << 16, f);
    Ok(Some(PcapOut::new(Box::new(Direct::new(name, w)))))
}

/// Writes what is left of the pcapng file; its write errors are the replay's.
pub(crate) fn finish_pcapng(pcap: Option<PcapOut>) -> anyhow::Result<()> {
    if let Some(pc) = pcap {
        if let Some(e) = pc.finish().error {
            return Err(e).context("writing pcapng");
        }
    }
    Ok(())
}

type Emit<'a> = dyn FnMut(&[EcsEvent]) -> anyhow::Result<()> + 'a;

fn write_lines<W: Write>(
    host: Option<&str>,
    opts: &ReplayOptions,
    w: W,
    run: impl FnOnce(&mut Emit<'_>) -> anyhow::Result<ReplaySummary>,
) -> anyhow::Result<ReplaySummary> {
    // Lines go to a direct sink (nothing dropped, nothing waits in a
    // queue) in large pieces; a paced replay writes each input's lines at
    // once, so they appear when they are due.
    let chunk = if opts.speed > 0.0 { 0 } else { 1 << 18 };
    let mut lines = Lines::new(vec![Box::new(Direct::new("stdout", w))], chunk)
        .with_host_name(host)
        .with_text(opts.text.map(TextView::new));
    // By reference: moving each large event out of the batch costs more
    // than serialising it.
    let res = run(&mut |batch| lines.push_all(batch).context("writing NDJSON"));
    let n = lines.lines();
    let stats = lines.finish();
    let mut summary = res?;
    summary.lines = n;
    if let Some(e) = stats.into_iter().find_map(|s| s.error) {
        return Err(e).context("writing NDJSON");
    }
    Ok(summary)
}

/// Replays captures through the [`Pipeline`], handing each input's lines
/// to `emit` in order. One path: the capture as recorded. Several paths
/// (one capture per host): their records merged in wall-clock order,
/// each host decoded with its own tables, FDB and identity, every event
/// naming its host (`host.name`, from the capture header), and one set
/// of detectors over the merged stream, so one incident can join what
/// several hosts saw.
pub fn drive(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    emit: &mut Emit<'_>,
) -> anyhow::Result<ReplaySummary> {
    match paths {
        [] => anyhow::bail!("no capture to replay"),
        [one] => drive_reader(CaptureReader::open(one)?, opts, emit),
        many => crate::merge::drive(many, opts, emit),
    }
}

fn drive_reader(
    mut reader: CaptureReader,
    opts: &ReplayOptions,
    emit: &mut Emit<'_>,
) -> anyhow::Result<ReplaySummary> {
    let header = reader.header().clone();
    let mut pipeline = Pipeline::new(
        Tables {
            drop_reasons: reader.drop_reasons().clone(),
            locations: Locations::default(),
            boot_to_wall_ns: header.boot_to_wall_ns,
            reason_cache: Default::default(),
        },
        opts.filter.clone(),
        opts.detect.clone(),
    );
    let mut pcap = open_pcapng(opts)?;
    if pcap.is_some() {
        pipeline.collect_packets();
    }
    let mut batch: Vec<EcsEvent> = Vec::new();
    let mut pacer = Pacer::new(opts.speed);
    let mut summary = ReplaySummary::default();
    let mut last_boot_ns = 0u64;
    let mut finished = false;

    let res: anyhow::Result<()> = (|| {
        loop {
            let rec = reader.next_ref()?;
            match rec {
                None => break,
                Some(RecordRef::Kernel(b)) => {
                    let ts = kernel_ts(b);
                    pacer.wait(ts);
                    if let Some(t) = ts {
                        last_boot_ns = last_boot_ns.max(t);
                    }
                    pipeline.process_kernel(b, &mut batch);
                    if let Some(pc) = pcap.as_mut() {
                        for p in pipeline.drain_packets() {
                            pc.write(&p).context("writing pcapng")?;
                        }
                    }
                    summary.inputs += 1;
                }
                Some(RecordRef::Other(Record::Symbols(v))) => pipeline.add_symbols(v),
                Some(RecordRef::Other(Record::Input(input))) => {
                    let ts = input_boot_ns(&input);
                    pacer.wait(ts);
                    if let Some(t) = ts {
                        last_boot_ns = last_boot_ns.max(t);
                    }
                    finished |= matches!(input, Input::Finish { .. });
                    pipeline.process(&input, &mut batch);
                    summary.inputs += 1;
                }
                // Later parts restate header and tables: nothing new for us.
                Some(RecordRef::Other(_)) => {}
            }
            // Most records make no line (or one): nothing to hand on then.
            if !batch.is_empty() {
                emit(&batch)?;
                batch.clear();
            }
        }
        Ok(())
    })();

    // A capture cut short never recorded its end: flush the detectors'
    // pending summaries as the live run would have at exit.
    if res.is_ok() && !finished {
        pipeline.process(
            &Input::Finish {
                boot_ns: last_boot_ns,
            },
            &mut batch,
        );
    }
    // What was printed before an error is still written.
    emit(&batch)?;
    finish_pcapng(pcap)?;
    res?;
    summary.warning = reader.warning().map(str::to_string);
    summary.skipped_unknown = reader.skipped_unknown();
    Ok(summary)
}
