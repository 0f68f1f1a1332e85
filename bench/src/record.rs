//! Recording cost: what `tracer run --record FILE` costs the live path, on
//! the heaviest live input there is, a drop storm (drop-storm's UDP flood to
//! a closed port in B: one kfree_skb record per datagram).
//!
//! tracer runs alternately without and with `--record` (a capture under
//! the run's scratch directory, i.e. on target/'s filesystem), every
//! recording run between two plain ones, each run under the same flood.
//! Per run: tracer's on-CPU time (user + system, all threads, from
//! /proc/<pid>/task/*/schedstat) from just before the flood until its output
//! and CPU time stopped moving, divided by the kernel events it delivered
//! (`event.kind` "event" lines × `tracer.count` + `drop_summary` counts).
//! Recording cost = (CPU per million events with / without) − 1, the median
//! of each recording run against the mean of its two neighbours.
//!
//! The goal's measure is the live path: tracer's main thread, which reads
//! the ring buffer, runs the pipeline and hands the NDJSON and the capture
//! to their writer threads (`ndjson-writer`, `capture-writer`). Its CPU per
//! event (from /proc/<pid>/task/<pid>/schedstat) gives the recording cost
//! on the live path; the total over all threads is shown next to it, since
//! the capture writer's framing, checksums and write() calls still cost the
//! machine CPU, on another core.
//!
//! Also: ring-buffer loss (`loss_report` lost_total) with and without, at
//! the default ring size and at a small one where user space's latency
//! decides what is lost; the capture's size per kernel record (from its
//! record frames); and that it replays (`tracer replay`) to exactly the live
//! run's output. `bench_helper write-file` then writes as many bytes as the
//! capture holds, to tell the kernel's share (page cache) from tracer's, and
//! one more plain and one more recording run under `perf record` say where
//! the added CPU goes. Recording under the iperf3 load is not measured (a
//! few hundred records per run: nothing to see under that benchmark's noise).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use tracer::capture::{self, record_type};

use super::{
    median,
    proc::{self, Proc, CLK_TCK},
    sys,
    tools::{self, Output},
    Env, Kv, Net, Outcome, Recorder, Section,
};

/// The closed port in B (drop-storm's).
const PORT: u16 = 9;
/// The small ring of the loss comparison (default: 8M). Drop records wake
/// user space at 1/16 of the ring, so here every 1 KiB (~10 records), and
/// the ring holds ~1.5 ms of the storm: user space barely keeps up and
/// loses some records with or without recording, so a difference shows.
const TIGHT_RING: &str = "16K";
/// How long output and CPU must stand still before the flood counts as handled.
const QUIET: Duration = Duration::from_secs(1);
/// The capture format's framing (tracer/src/capture/mod.rs).
const CAPTURE_PREFIX: u64 = capture::PREFIX_LEN as u64;
const CAPTURE_FRAME: u64 = capture::FRAME_LEN as u64;

/// tracer's on-CPU time so far: per thread (ns) when schedstat is readable,
/// with the threads' names, and utime + stime of the thread group (clock
/// ticks).
struct CpuSnap {
    pid: u32,
    tasks: Option<BTreeMap<u32, u64>>,
    /// `/proc/<pid>/task/<tid>/comm`.
    comms: BTreeMap<u32, String>,
    ticks: u64,
}

/// tracer's writer threads.
const NDJSON_THREAD: &str = tracer::sink::STDOUT_THREAD;
const CAPTURE_THREAD: &str = capture::THREAD_NAME;

/// tracer's threads, by what they do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThreadClass {
    /// The main thread (tid = pid): tokio's `block_on` runs the collector's
    /// loop on it, i.e. the ring-buffer reads (collector.rs `drain`), the
    /// pipeline, NDJSON serialisation and, with --record, the copy of each
    /// record into the capture's batch. The live path.
    Consumer,
    /// Frames, checksums and writes the capture.
    Capture,
    /// Writes the NDJSON chunks to stdout.
    Ndjson,
    /// tokio's workers (I/O driver wake-ups, timers), identity, blocking pool.
    Other,
}

fn thread_class(pid: u32, tid: u32, comm: &str) -> ThreadClass {
    match comm {
        _ if tid == pid => ThreadClass::Consumer,
        CAPTURE_THREAD => ThreadClass::Capture,
        NDJSON_THREAD => ThreadClass::Ndjson,
        _ => ThreadClass::Other,
    }
}

/// CPU seconds by thread class over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ThreadCpu {
    consumer: f64,
    capture: f64,
    ndjson: f64,
    other: f64,
}

type TaskCpu = (BTreeMap<u32, u64>, BTreeMap<u32, String>);

fn task_cpu_ns(pid: u32) -> Option<TaskCpu> {
    let dir = format!("/proc/{pid}/task");
    let (mut out, mut comms) = (BTreeMap::new(), BTreeMap::new());
    for e in fs::read_dir(&dir).ok()?.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A thread may exit between the listing and the read.
        let Ok(text) = fs::read_to_string(e.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse().ok()) {
            out.insert(tid, ns);
            if let Ok(comm) = fs::read_to_string(e.path().join("comm")) {
                comms.insert(tid, comm.trim_end().to_owned());
            }
        }
    }
    (!out.is_empty()).then_some((out, comms))
}

impl CpuSnap {
    fn take(p: &Proc) -> Result<Self> {
        let (tasks, comms) = match task_cpu_ns(p.pid()) {
            Some((t, c)) => (Some(t), c),
            None => (None, BTreeMap::new()),
        };
        Ok(Self {
            pid: p.pid(),
            tasks,
            comms,
            ticks: p.cpu_ticks()?,
        })
    }

    /// CPU seconds from `self` to `later` by thread class (per-thread
    /// schedstat only; None without it). Threads count as in [`Self::until`].
    fn by_thread(&self, later: &CpuSnap) -> Option<ThreadCpu> {
        let (a, b) = (self.tasks.as_ref()?, later.tasks.as_ref()?);
        let mut t = ThreadCpu::default();
        for (tid, ns) in b {
            let s = ns.saturating_sub(*a.get(tid).unwrap_or(&0)) as f64 / 1e9;
            let comm = later
                .comms
                .get(tid)
                .or_else(|| self.comms.get(tid))
                .map_or("", String::as_str);
            *match thread_class(later.pid, *tid, comm) {
                ThreadClass::Consumer => &mut t.consumer,
                ThreadClass::Capture => &mut t.capture,
                ThreadClass::Ndjson => &mut t.ndjson,
                ThreadClass::Other => &mut t.other,
            } += s;
        }
        Some(t)
    }

    /// CPU seconds from `self` to `later`: per thread in ns (a thread that
    /// exited in between, e.g. an idle blocking-pool thread, is left out;
    /// one that started counts whole), else in ticks.
    fn until(&self, later: &CpuSnap) -> (f64, f64) {
        let ticks = later.ticks.saturating_sub(self.ticks) as f64 / CLK_TCK;
        let ns = match (&self.tasks, &later.tasks) {
            (Some(a), Some(b)) => {
                b.iter()
                    .map(|(tid, ns)| ns.saturating_sub(*a.get(tid).unwrap_or(&0)))
                    .sum::<u64>() as f64
                    / 1e9
            }
            _ => ticks,
        };
        (ns, ticks)
    }
}

/// What the capture's record frames say.
#[derive(Clone, Debug, Default)]
struct CaptureInfo {
    parts: usize,
    bytes: u64,
    kernel_records: u64,
    /// Frames + payloads of the kernel records.
    kernel_bytes: u64,
    input_records: u64,
    symbol_records: u64,
    other_records: u64,
}

impl CaptureInfo {
    fn per_record(&self) -> f64 {
        self.bytes as f64 / self.kernel_records.max(1) as f64
    }
}

/// Walks the frames of every part (the layout in tracer/src/capture/mod.rs:
/// a 16-byte prefix, then per record len u32, type u16, flags u16, two
/// CRCs, payload). Checksums are `tracer replay`'s business.
fn walk_capture(base: &Path) -> Result<CaptureInfo> {
    let mut info = CaptureInfo::default();
    for part in 0u32.. {
        let path = capture::part_path(base, part);
        let f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if part > 0 && e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        let size = f.metadata()?.len();
        info.parts += 1;
        info.bytes += size;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut prefix = [0u8; CAPTURE_PREFIX as usize];
        r.read_exact(&mut prefix)
            .with_context(|| format!("{} is shorter than a capture prefix", path.display()))?;
        if prefix[..capture::MAGIC.len()] != capture::MAGIC {
            bail!("{} is not a tracer capture", path.display());
        }
        let mut at = CAPTURE_PREFIX;
        let mut frame = [0u8; CAPTURE_FRAME as usize];
        while at + CAPTURE_FRAME <= size {
            r.read_exact(&mut frame)?;
            let len = u32::from_le_bytes(frame[0..4].try_into()?) as u64;
            let rtype = u16::from_le_bytes(frame[4..6].try_into()?);
            if at + CAPTURE_FRAME + len > size {
                bail!(
                    "{}: record at byte {at} runs past the end of the file",
                    path.display()
                );
            }
            r.seek_relative(len as i64)?;
            at += CAPTURE_FRAME + len;
            match rtype {
                record_type::KERNEL => {
                    info.kernel_records += 1;
                    info.kernel_bytes += CAPTURE_FRAME + len;
                }
                record_type::INPUT => info.input_records += 1,
                record_type::SYMBOLS => info.symbol_records += 1,
                _ => info.other_records += 1,
            }
        }
        if at != size {
            bail!(
                "{}: {} stray bytes after the last record",
                path.display(),
                size - at
            );
        }
    }
    Ok(info)
}

/// The replay of a capture against the live output of the same run.
#[derive(Clone, Debug)]
struct ReplayCheck {
    identical: bool,
    /// 1-based line of the first difference.
    first_diff: Option<usize>,
    /// Where the files of a replay that differs were kept.
    kept: Option<PathBuf>,
    /// The accounting tracer-drops does (lines, events, drops, summaries,
    /// loss) is the same for both outputs.
    same_counts: bool,
    replay_cpu_s: f64,
}

/// What bench_helper's `write-file` charged for the capture's bytes.
#[derive(Clone, Copy, Debug)]
struct Calib {
    cold_s: f64,
    warm_s: f64,
}

#[derive(Clone, Debug)]
struct Recording {
    capture: CaptureInfo,
    replay: ReplayCheck,
    calib: Option<Calib>,
}

#[derive(Clone, Debug)]
struct Run {
    record: bool,
    tight: bool,
    sent: u64,
    send_s: f64,
    /// B's Udp NoPorts delta.
    kernel: u64,
    /// Kernel events the live output stands for (all of them, B's or not).
    events: u64,
    /// B's NO_SOCKET drops: lines, summarised.
    lines: u64,
    summarised: u64,
    /// Ring-buffer loss (final loss_report's lost_total).
    lost: u64,
    out_lines: u64,
    cpu_s: f64,
    cpu_ticks_s: f64,
    /// `cpu_s` by thread (None without per-thread schedstat).
    threads: Option<ThreadCpu>,
    cpu_total_s: f64,
    drain_s: f64,
    stop_s: f64,
    maxrss_kib: u64,
    recording: Option<Recording>,
    profile: Option<Profile>,
}

impl Run {
    fn label(&self) -> &'static str {
        match (self.record, self.tight) {
            (false, false) => "plain",
            (true, false) => "--record",
            (false, true) => "plain, 16K ring",
            (true, true) => "--record, 16K ring",
        }
    }

    fn accounted(&self) -> u64 {
        self.lines + self.summarised + self.lost
    }

    /// tracer CPU seconds per million kernel events delivered to user space.
    fn cpu_per_million(&self) -> f64 {
        self.per_million(self.cpu_s)
    }

    /// CPU seconds of one thread class per million events (NaN without
    /// per-thread figures).
    fn thread_per_million(&self, f: impl Fn(&ThreadCpu) -> f64) -> f64 {
        self.per_million(self.threads.as_ref().map_or(f64::NAN, f))
    }

    /// The live path's (ring-consumer thread's) CPU per million events.
    fn consumer_per_million(&self) -> f64 {
        self.thread_per_million(|t| t.consumer)
    }

    fn per_million(&self, s: f64) -> f64 {
        s / (self.events.max(1) as f64 / 1e6)
    }
}

/// Sends `count` datagrams from A to the closed port in B; returns (sent,
/// seconds, NoPorts delta in B).
fn flood(env: &Env, rec: &mut Recorder, net: &Net, count: u64) -> Result<(u64, f64, u64)> {
    let topo = &net.topo;
    rec.note(format!(
        "ip netns exec {} cat /proc/net/snmp  # Udp: NoPorts, before and after",
        topo.ns_b
    ));
    let k0 = topo.udp_noports(&topo.ns_b)?;
    let mut c = topo.exec(&topo.ns_a, &env.helper);
    c.args([
        "udp-flood",
        &format!("{}:{PORT}", topo.ip_b),
        &count.to_string(),
    ]);
    let kv = Kv::parse(&rec.output(&mut c)?);
    sys::sleep(Duration::from_millis(200))?;
    let k1 = topo.udp_noports(&topo.ns_b)?;
    Ok((kv.u64("sent")?, kv.f64("seconds")?, k1.saturating_sub(k0)))
}

fn tracer_counts(env: &Env, rec: &mut Recorder, out: &Path, inode_b: u64) -> Result<Kv> {
    let out_s = out.to_string_lossy().into_owned();
    env.helper(
        rec,
        &["tracer-drops", &out_s, &inode_b.to_string(), "NO_SOCKET"],
    )
}

/// Line-by-line comparison of two outputs: (identical, first differing line).
fn compare_files(a: &Path, b: &Path) -> Result<(bool, Option<usize>)> {
    let x = fs::read(a).with_context(|| format!("cannot read {}", a.display()))?;
    let y = fs::read(b).with_context(|| format!("cannot read {}", b.display()))?;
    if x == y {
        return Ok((true, None));
    }
    let mut lx = x.split(|c| *c == b'\n');
    let mut ly = y.split(|c| *c == b'\n');
    let mut n = 1;
    loop {
        match (lx.next(), ly.next()) {
            (Some(p), Some(q)) if p == q => n += 1,
            (None, None) => return Ok((false, None)),
            _ => return Ok((false, Some(n))),
        }
    }
}

/// A replay that differs from its live run: its capture, both outputs and
/// tracer's stderr are kept (moved) outside the scratch directory, under
/// target/bench/record-mismatch-<pid>-<n>, for a look afterwards.
fn keep_mismatch(env: &Env, capture: &Path, live: &Path, replay: &Path) -> Option<PathBuf> {
    let parent = env.dir.parent()?;
    let dir = (0..100)
        .map(|n| parent.join(format!("record-mismatch-{}-{n}", std::process::id())))
        .find(|d| !d.exists())?;
    fs::create_dir_all(&dir).ok()?;
    let name = |p: &Path| p.file_name().map(|n| dir.join(n));
    for part in (0..16)
        .map(|i| capture::part_path(capture, i))
        .take_while(|p| p.exists())
    {
        let _ = fs::rename(&part, name(&part)?);
    }
    for f in [
        replay.to_path_buf(),
        env.file("tracer.stderr"),
        env.file("record-replay.stderr"),
    ] {
        let _ = fs::rename(&f, name(&f)?);
    }
    // The live output is still needed for the accounting after this.
    let _ = fs::copy(live, name(live)?);
    crate::cmd::warn(format!(
        "the replay differs from the live output: files kept in {}",
        dir.display()
    ));
    Some(dir)
}

/// `tracer replay CAPTURE > FILE`, then the same accounting on both outputs.
fn check_replay(
    env: &Env,
    rec: &mut Recorder,
    capture: &Path,
    live: &Path,
    live_kv: &Kv,
    inode_b: u64,
) -> Result<ReplayCheck> {
    let out = env.file("record-replay.ndjson");
    let mut c = Command::new(&env.tracer);
    c.arg("replay")
        .arg(capture)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out)?)
        .stderr(fs::File::create(env.file("record-replay.stderr"))?);
    rec.record_cmd(&c, &Output::File(&out));
    let mut p = Proc::spawn("tracer replay", &mut c)?;
    let exit = p.wait(Duration::from_secs(600))?;
    if !exit.success() {
        bail!(
            "`tracer replay` ended with {exit}{}",
            proc::tail(&env.file("record-replay.stderr"))
        );
    }
    let kv = tracer_counts(env, rec, &out, inode_b)?;
    let keys = [
        "lines",
        "events",
        "skb_drop_match",
        "summary_count_match",
        "lost_total",
        "decode_errors",
    ];
    let mut same_counts = true;
    for k in keys {
        if kv.u64(k)? != live_kv.u64(k)? {
            same_counts = false;
        }
    }
    rec.note(format!("cmp {} {}", live.display(), out.display()));
    let (identical, first_diff) = compare_files(live, &out)?;
    let kept = if identical {
        None
    } else {
        keep_mismatch(env, capture, live, &out)
    };
    let _ = fs::remove_file(&out);
    Ok(ReplayCheck {
        identical,
        first_diff,
        kept,
        same_counts,
        replay_cpu_s: exit.rusage.cpu_s(),
    })
}

struct Plan {
    count: u64,
    record: bool,
    tight: bool,
    /// Under `perf record` (not counted in the figures).
    profile: bool,
}

/// perf's sampling frequency for the profile runs.
const PERF_HZ: u32 = 2999;

/// Where tracer's CPU went in a profiled run: samples per category and per
/// leaf symbol, in all and on the ring-consumer (main) thread alone.
#[derive(Clone, Debug, Default)]
struct Profile {
    samples: u64,
    categories: BTreeMap<&'static str, u64>,
    symbols: BTreeMap<String, u64>,
    consumer_samples: u64,
    consumer_categories: BTreeMap<&'static str, u64>,
}

/// Categories, in the order they are tested (first match wins).
const CATEGORIES: [&str; 6] = [
    "kernel: write() system calls (the capture's and stdout's buffer flushes)",
    "user: CRC-32 (crc32fast)",
    "user: capture writer (tracer::capture::*)",
    "user: memmove / memcpy (any caller)",
    "kernel: anything else (ring-buffer wake-ups, epoll, futex, interrupts)",
    "user: everything else (ring-buffer reads, decode, enrich, detect, output)",
];

fn category(frames: &[&str]) -> &'static str {
    let leaf = frames.first().copied().unwrap_or("");
    if frames.iter().any(|f| f.contains("ksys_write")) {
        CATEGORIES[0]
    } else if leaf.contains("crc32") {
        CATEGORIES[1]
    } else if leaf.contains("capture::") {
        CATEGORIES[2]
    } else if leaf.contains("memmove") || leaf.contains("memcpy") {
        CATEGORIES[3]
    } else if frames.iter().any(|f| f.contains("[kernel")) || leaf.starts_with("[k]") {
        CATEGORIES[4]
    } else {
        CATEGORIES[5]
    }
}

/// Parses `perf script -F comm,tid,ip,sym,dso`: one block per sample, a
/// header line (`comm tid`) then one indented `addr symbol (dso)` line per
/// frame. `pid`: tracer's, i.e. its main thread's tid.
fn parse_perf_script(text: &str, pid: u32) -> Profile {
    let mut p = Profile::default();
    for block in text.split("\n\n") {
        let tid = block
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with([' ', '\t']))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|t| t.parse::<u32>().ok());
        let frames: Vec<&str> = block
            .lines()
            .filter(|l| l.starts_with([' ', '\t']))
            .map(|l| {
                let l = l.trim();
                // Drop the address.
                l.split_once(char::is_whitespace)
                    .map_or(l, |(_, r)| r.trim())
            })
            .collect();
        if frames.is_empty() {
            continue;
        }
        p.samples += 1;
        let cat = category(&frames);
        *p.categories.entry(cat).or_default() += 1;
        if tid == Some(pid) {
            p.consumer_samples += 1;
            *p.consumer_categories.entry(cat).or_default() += 1;
        }
        let leaf = frames[0];
        let name = leaf.rsplit_once(" (").map_or(leaf, |(n, _)| n);
        // Strip the offset perf may print (`sym+0x1a`).
        let name = name.split_once("+0x").map_or(name, |(n, _)| n);
        let kernel = leaf.contains("[kernel");
        *p.symbols
            .entry(format!("{}{name}", if kernel { "[k] " } else { "" }))
            .or_default() += 1;
    }
    p
}

/// One run: tracer (with or without --record) attached, the flood, wait
/// until drained, CPU read, stop; then the output's accounting and, when
/// recording, the capture's checks.
fn one_run(env: &Env, rec: &mut Recorder, net: &Net, inode_b: u64, plan: &Plan) -> Result<Run> {
    let live = env.file("record-live.ndjson");
    let capture = env.file("record.capture");
    // tracer refuses to overwrite a capture.
    let _ = fs::remove_file(&capture);
    let cap_s = capture.to_string_lossy().into_owned();
    let mut args: Vec<&str> = Vec::new();
    if plan.record {
        args.extend(["--record", &cap_s]);
    }
    if plan.tight {
        args.extend(["--ring-buffer-size", TIGHT_RING]);
    }
    let t = tools::start_tracer(env, rec, &args, Output::File(&live), "tracer")?;
    let perf_data = env.file("record-perf.data");
    let mut perf = if plan.profile {
        let mut c = Command::new("perf");
        c.args(["record", "-F", &PERF_HZ.to_string(), "-g", "-p"])
            .arg(t.proc.pid().to_string())
            .arg("-o")
            .arg(&perf_data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(env.file("record-perf.stderr"))?);
        rec.note(format!(
            "{} &  # stopped with SIGINT after the flood",
            crate::cmd::display(&c).replace(&t.proc.pid().to_string(), "<tracer pid>")
        ));
        let mut p = Proc::spawn("perf record", &mut c)?;
        // perf says nothing when it is attached: give it time.
        sys::sleep(Duration::from_millis(700))?;
        p.ensure_running(Some(&env.file("record-perf.stderr")))?;
        Some(p)
    } else {
        None
    };
    let c0 = CpuSnap::take(&t.proc)?;
    let (sent, send_s, kernel) = flood(env, rec, net, plan.count)?;
    let timeout = Duration::from_secs(300);
    // tracer flushes the capture's buffer on its 1 s tick (and records the
    // tick itself, so the capture never stands still): a second without
    // output or CPU includes the last flush.
    let drain = proc::wait_quiescent(&live, &t.proc, QUIET, timeout)?;
    let c1 = CpuSnap::take(&t.proc)?;
    let (cpu_s, cpu_ticks_s) = c0.until(&c1);
    let threads = c0.by_thread(&c1);
    let profile = match perf.as_mut() {
        Some(p) => {
            p.stop(Duration::from_secs(60))?;
            let mut c = Command::new("perf");
            c.args(["script", "-F", "comm,tid,ip,sym,dso", "-i"])
                .arg(&perf_data);
            let text = rec.output(&mut c)?;
            let _ = fs::remove_file(&perf_data);
            Some(parse_perf_script(&text, t.proc.pid()))
        }
        None => None,
    };
    let stop_at = Instant::now();
    let (exit, _) = t.stop()?;
    let stop_s = stop_at.elapsed().as_secs_f64();

    let kv = tracer_counts(env, rec, &live, inode_b)?;
    let mut run = Run {
        record: plan.record,
        tight: plan.tight,
        sent,
        send_s,
        kernel,
        events: kv.u64("events")?,
        lines: kv.u64("skb_drop_match")?,
        summarised: kv.u64("summary_count_match")?,
        lost: kv.u64("lost_total")?,
        out_lines: kv.u64("lines")?,
        cpu_s,
        cpu_ticks_s,
        threads,
        cpu_total_s: exit.rusage.cpu_s(),
        drain_s: drain.as_secs_f64(),
        stop_s,
        maxrss_kib: exit.rusage.maxrss_kib(),
        recording: None,
        profile,
    };
    if plan.record && !plan.profile {
        let info = walk_capture(&capture)?;
        // Before the replay, while the capture still holds its pages.
        let calib = if plan.tight {
            None
        } else {
            let scratch = env.file("record-calibration.bin");
            let scratch_s = scratch.to_string_lossy().into_owned();
            let bytes = info.bytes.to_string();
            let mut c = Command::new(&env.helper);
            c.args(["write-file", &scratch_s, &bytes]);
            rec.note(crate::cmd::display(&c).replace(&bytes, "<bytes in the capture>"));
            let out = crate::cmd::run_captured(&mut c)?;
            if !out.status.success() {
                bail!(
                    "bench_helper write-file failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let kv = Kv::parse(&String::from_utf8_lossy(&out.stdout));
            Some(Calib {
                cold_s: kv.f64("cold_cpu_s")?,
                warm_s: kv.f64("warm_cpu_s")?,
            })
        };
        let replay = check_replay(env, rec, &capture, &live, &kv, inode_b)?;
        run.recording = Some(Recording {
            capture: info,
            replay,
            calib,
        });
    }
    for i in 0..16 {
        let _ = fs::remove_file(capture::part_path(&capture, i));
    }
    let _ = fs::remove_file(&live);
    Ok(run)
}

/// Does `tracer run --help` list `--record`, and does `tracer replay` exist?
fn can_record(env: &Env) -> bool {
    let help = crate::cmd::probe(Command::new(&env.tracer).args(["run", "--help"]))
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--record"))
        .unwrap_or(false);
    help && crate::cmd::probe_ok(Command::new(&env.tracer).args(["replay", "--help"]))
}

/// CPU seconds per million events of `n` of a profile's samples.
fn prof_cpm(run: &Run, n: u64) -> f64 {
    let p = run.profile.as_ref().map_or(1, |p| p.samples.max(1));
    n as f64 / p as f64 * run.cpu_per_million()
}

/// Where tracer's CPU went, plain vs --record, from the two perf runs.
fn profile_details(d: &mut String, plain: &Run, recd: &Run) {
    let (Some(pp), Some(rp)) = (&plain.profile, &recd.profile) else {
        return;
    };
    let _ = writeln!(
        d,
        "Profile: one more plain and one more --record run of the same flood under \
         `perf record -F {PERF_HZ} -g -p <tracer pid>` (not counted above; perf's own cost is not \
         in tracer's CPU but its sampling disturbs tracer a little), {} and {} samples. Each \
         sample goes to the first category that matches its stack (kernel stacks are complete; \
         tracer has no frame pointers, so user-space samples are classed by their leaf symbol \
         only). Seconds per million events = the category's share of the samples × the run's \
         measured CPU per million events ({:.3} s plain, {:.3} s with --record).\n",
        pp.samples,
        rp.samples,
        plain.cpu_per_million(),
        recd.cpu_per_million()
    );
    let _ = writeln!(
        d,
        "The last three columns count only the samples of the ring-consumer (main) thread, \
         the live path; the rest ran on the writer threads and tokio's workers.\n"
    );
    let _ = writeln!(
        d,
        "| where | plain: s per 1M events | --record: s per 1M events | added by --record | plain, ring-consumer thread | --record, ring-consumer thread | added on the live path |\n|---|---|---|---|---|---|---|"
    );
    for c in CATEGORIES {
        let a = prof_cpm(plain, *pp.categories.get(c).unwrap_or(&0));
        let b = prof_cpm(recd, *rp.categories.get(c).unwrap_or(&0));
        let la = prof_cpm(plain, *pp.consumer_categories.get(c).unwrap_or(&0));
        let lb = prof_cpm(recd, *rp.consumer_categories.get(c).unwrap_or(&0));
        let _ = writeln!(
            d,
            "| {c} | {a:.3} | {b:.3} | {:+.3} | {la:.3} | {lb:.3} | {:+.3} |",
            b - a,
            lb - la
        );
    }
    let (la, lb) = (
        prof_cpm(plain, pp.consumer_samples),
        prof_cpm(recd, rp.consumer_samples),
    );
    let _ = writeln!(
        d,
        "| total | {:.3} | {:.3} | {:+.3} | {la:.3} | {lb:.3} | {:+.3} |\n",
        plain.cpu_per_million(),
        recd.cpu_per_million(),
        recd.cpu_per_million() - plain.cpu_per_million(),
        lb - la
    );
    let mut top: Vec<(&String, &u64)> = rp.symbols.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(
        d,
        "Hottest leaf symbols of the --record run (self time):\n\n| symbol | --record: share | s per 1M events | plain: s per 1M events |\n|---|---|---|---|"
    );
    for (sym, n) in top.into_iter().take(15) {
        let _ = writeln!(
            d,
            "| `{}` | {:.1} % | {:.3} | {:.3} |",
            sym.replace('|', "\\|"),
            *n as f64 / rp.samples.max(1) as f64 * 100.0,
            prof_cpm(recd, *n),
            prof_cpm(plain, *pp.symbols.get(sym).unwrap_or(&0)),
        );
    }
    d.push('\n');
}

fn pct(x: f64) -> String {
    format!("{:+.1} %", x * 100.0)
}

fn n_runs(n: usize) -> String {
    format!("{n} run{}", if n == 1 { "" } else { "s" })
}

/// Does this VM's virtio-balloon report free pages to the hypervisor
/// (feature bit 5, VIRTIO_BALLOON_F_REPORTING)? Pages it reported must be
/// faulted in again by the host when the guest next uses them.
fn free_page_reporting() -> bool {
    let Ok(entries) = fs::read_dir("/sys/bus/virtio/drivers/virtio_balloon") else {
        return false;
    };
    entries.flatten().any(|e| {
        fs::read_to_string(e.path().join("features"))
            .is_ok_and(|f| f.as_bytes().get(5) == Some(&b'1'))
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    if !can_record(env) {
        sec.outcome = Outcome::Pending(
            "this tracer build has no `tracer run --record` or no `tracer replay`".into(),
        );
        return Ok(());
    }
    let net = env.net()?;
    let topo = &net.topo;
    let inode_b = topo.inode(&topo.ns_b)?;
    let (rounds, count, tight_rounds, tight_count) = if env.quick {
        (2usize, 200_000u64, 1usize, 100_000u64)
    } else {
        (5, 1_000_000, 3, 500_000)
    };

    // Warm-up, not counted: binary, BTF and the capture path in the page cache.
    crate::cmd::say("recording cost: warm-up run (not counted)");
    one_run(
        env,
        rec,
        net,
        inode_b,
        &Plan {
            count: count / 10,
            record: true,
            tight: false,
            profile: false,
        },
    )?;

    // plain, record, plain, record, …, plain: every recording run between two plain ones.
    let mut runs: Vec<Run> = Vec::new();
    for i in 0..=2 * rounds {
        sys::check()?;
        let record = i % 2 == 1;
        crate::cmd::say(format!(
            "recording cost: run {}/{} ({})",
            i + 1,
            2 * rounds + 1,
            if record { "--record" } else { "plain" }
        ));
        runs.push(one_run(
            env,
            rec,
            net,
            inode_b,
            &Plan {
                count,
                record,
                tight: false,
                profile: false,
            },
        )?);
    }
    let mut tight: Vec<Run> = Vec::new();
    for i in 0..2 * tight_rounds {
        sys::check()?;
        let record = i % 2 == 1;
        crate::cmd::say(format!(
            "recording cost: {TIGHT_RING} ring, run {}/{} ({})",
            i + 1,
            2 * tight_rounds,
            if record { "--record" } else { "plain" }
        ));
        tight.push(one_run(
            env,
            rec,
            net,
            inode_b,
            &Plan {
                count: tight_count,
                record,
                tight: true,
                profile: false,
            },
        )?);
    }

    // Where the CPU goes: one plain and one --record run under perf (not counted).
    let mut profiled: Vec<Run> = Vec::new();
    let perf_err = if crate::cmd::which("perf").is_none() {
        Some("perf is not installed".to_owned())
    } else {
        let mut err = None;
        for record in [false, true] {
            sys::check()?;
            crate::cmd::say(format!(
                "recording cost: profile under perf ({})",
                if record { "--record" } else { "plain" }
            ));
            let plan = Plan {
                count,
                record,
                tight: false,
                profile: true,
            };
            match one_run(env, rec, net, inode_b, &plan) {
                Ok(r) => profiled.push(r),
                Err(e) if sys::interrupted() => return Err(e),
                Err(e) => {
                    crate::cmd::warn(format!("perf profile: {e:#}"));
                    err = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        err
    };

    // Figures.
    let plain: Vec<&Run> = runs.iter().filter(|r| !r.record).collect();
    let recd: Vec<&Run> = runs.iter().filter(|r| r.record).collect();
    let med = |v: &[&Run], f: &dyn Fn(&Run) -> f64| {
        median(&v.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    };
    let plain_cpm = med(&plain, &Run::cpu_per_million);
    let rec_cpm = med(&recd, &Run::cpu_per_million);
    let plain_live = med(&plain, &Run::consumer_per_million);
    let rec_live = med(&recd, &Run::consumer_per_million);
    // Each recording run against the mean of its two plain neighbours.
    let paired_by = |f: &dyn Fn(&Run) -> f64| -> Vec<f64> {
        (1..runs.len())
            .step_by(2)
            .filter(|&i| i + 1 < runs.len())
            .map(|i| {
                let base = (f(&runs[i - 1]) + f(&runs[i + 1])) / 2.0;
                f(&runs[i]) / base - 1.0
            })
            .collect()
    };
    // Median, min and max of the finite values (NaN: no per-thread figures).
    let summary = |v: &[f64]| {
        let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        (
            median(&v).unwrap_or(f64::NAN),
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let paired = paired_by(&Run::cpu_per_million);
    let (cost, pmin, pmax) = summary(&paired);
    let of_medians = rec_cpm / plain_cpm - 1.0;
    let paired_live = paired_by(&Run::consumer_per_million);
    let (live_cost, lmin, lmax) = summary(&paired_live);
    let live_of_medians = rec_live / plain_live - 1.0;
    let met = if live_cost < 0.10 { "met" } else { "NOT met" };

    sec.figure(
        format!(
            "live path: ring-consumer thread's CPU per million kernel events (drop storm), \
             plain / with --record (median of {} / {})",
            plain.len(),
            recd.len()
        ),
        format!(
            "{plain_live:.3} s / {rec_live:.3} s = {:.2} / {:.2} M events per CPU-second",
            1.0 / plain_live,
            1.0 / rec_live
        ),
        "",
    );
    sec.figure(
        "recording cost on the live path = (ring-consumer thread's CPU per M events with \
         --record / without) − 1",
        format!(
            "{} (paired median; pairs {} … {}; ratio of medians {}): goal {met}",
            pct(live_cost),
            pct(lmin),
            pct(lmax),
            pct(live_of_medians)
        ),
        "< 10 %",
    );
    sec.figure(
        format!(
            "tracer CPU per million kernel events, all threads, plain / with --record (median \
             of {} / {})",
            plain.len(),
            recd.len()
        ),
        format!(
            "{plain_cpm:.3} s / {rec_cpm:.3} s = {:.2} / {:.2} M events per CPU-second",
            1.0 / plain_cpm,
            1.0 / rec_cpm
        ),
        "",
    );
    sec.figure(
        "recording cost, all threads = (CPU per M events with --record / without) − 1 \
         (capture-writer thread included: CPU the machine still spends, off the live path)",
        format!(
            "{} (paired median; pairs {} … {}; ratio of medians {})",
            pct(cost),
            pct(pmin),
            pct(pmax),
            pct(of_medians)
        ),
        "",
    );
    let by_thread = |v: &[&Run]| -> [f64; 4] {
        [
            med(v, &|r: &Run| r.thread_per_million(|t| t.consumer)),
            med(v, &|r: &Run| r.thread_per_million(|t| t.capture)),
            med(v, &|r: &Run| r.thread_per_million(|t| t.ndjson)),
            med(v, &|r: &Run| r.thread_per_million(|t| t.other)),
        ]
    };
    let (tp, tr) = (by_thread(&plain), by_thread(&recd));
    let thread_names = [
        "ring consumer (main)",
        CAPTURE_THREAD,
        NDJSON_THREAD,
        "other threads",
    ];
    sec.figure(
        "CPU per million events by thread, plain → --record (medians, s)",
        thread_names
            .iter()
            .zip(tp.iter().zip(&tr))
            .map(|(n, (a, b))| format!("{n} {a:.3} → {b:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        "",
    );
    let lost = |v: &[Run], record: bool| -> (u64, u64, usize) {
        v.iter()
            .filter(|r| r.record == record)
            .fold((0, 0, 0), |(l, e, n), r| {
                (l + r.lost, e + r.events + r.lost, n + 1)
            })
    };
    let (pl, pe, pn) = lost(&runs, false);
    let (rl, re, rn) = lost(&runs, true);
    let (tpl, tpe, _) = lost(&tight, false);
    let (trl, tre, _) = lost(&tight, true);
    let fractions = |record: bool| -> Vec<f64> {
        tight
            .iter()
            .filter(|r| r.record == record)
            .map(|r| r.lost as f64 / (r.events + r.lost).max(1) as f64)
            .collect()
    };
    let (tpf, trf) = (fractions(false), fractions(true));
    let list = |v: &[f64]| {
        v.iter()
            .map(|f| format!("{:.1}", f * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    sec.figure(
        "ring-buffer records lost, plain vs --record",
        format!(
            "default 8M ring: {pl} of {pe} ({}) vs {rl} of {re} ({}); \
             {TIGHT_RING} ring, where user space barely keeps up: median {:.1} % vs {:.1} % \
             (runs: {} % vs {} %)",
            n_runs(pn),
            n_runs(rn),
            median(&tpf).unwrap_or(f64::NAN) * 100.0,
            median(&trf).unwrap_or(f64::NAN) * 100.0,
            list(&tpf),
            list(&trf),
        ),
        "no more with --record",
    );
    let caps: Vec<&Recording> = runs
        .iter()
        .chain(&tight)
        .filter_map(|r| r.recording.as_ref())
        .collect();
    let bpr = median(
        &caps
            .iter()
            .map(|c| c.capture.per_record())
            .collect::<Vec<_>>(),
    )
    .unwrap_or(f64::NAN);
    let kbpr = median(
        &caps
            .iter()
            .map(|c| c.capture.kernel_bytes as f64 / c.capture.kernel_records.max(1) as f64)
            .collect::<Vec<_>>(),
    )
    .unwrap_or(f64::NAN);
    let example = recd.first().and_then(|r| r.recording.as_ref());
    sec.figure(
        "capture size per kernel event",
        format!(
            "{bpr:.1} B (kernel records alone {kbpr:.1} B with their 16-byte frames){}",
            example
                .map(|c| format!(
                    "; {:.1} MiB for {} kernel records",
                    mib(c.capture.bytes),
                    c.capture.kernel_records
                ))
                .unwrap_or_default()
        ),
        "",
    );
    let identical = caps.iter().filter(|c| c.replay.identical).count();
    let same = caps.iter().filter(|c| c.replay.same_counts).count();
    let matches_events = runs
        .iter()
        .chain(&tight)
        .filter_map(|r| r.recording.as_ref().map(|c| (r, c)))
        .filter(|(r, c)| c.capture.kernel_records == r.events)
        .count();
    sec.figure(
        "`tracer replay` of each capture vs that run's live output",
        format!(
            "byte-identical in {identical} of {n}; same accounting in {same} of {n}; capture's \
             kernel records = live events delivered in {matches_events} of {n}",
            n = caps.len()
        ),
        "all",
    );
    let calibs: Vec<(f64, f64, f64)> = recd
        .iter()
        .filter_map(|r| {
            let c = r.recording.as_ref()?;
            let k = c.calib?;
            let m = r.events.max(1) as f64 / 1e6;
            Some((k.cold_s / m, k.warm_s / m, r.cpu_per_million()))
        })
        .collect();
    let cold = median(&calibs.iter().map(|c| c.0).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    let warm = median(&calibs.iter().map(|c| c.1).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    sec.figure(
        "kernel's share: a plain write() of the capture's bytes (1 MiB calls, same filesystem), per M events",
        format!(
            "{cold:.3} s CPU into new page-cache pages, {warm:.3} s into pages just freed \
             (recording added {:.3} s over all threads)",
            rec_cpm - plain_cpm
        ),
        "",
    );
    if let [p, r] = profiled.as_slice() {
        if let (Some(pp), Some(rp)) = (&p.profile, &r.profile) {
            let parts: Vec<String> = CATEGORIES
                .iter()
                .map(|c| {
                    let a = prof_cpm(p, *pp.categories.get(c).unwrap_or(&0));
                    let b = prof_cpm(r, *rp.categories.get(c).unwrap_or(&0));
                    (b - a, c)
                })
                .map(|(x, c)| format!("{x:+.3} s {}", c.split_once(" (").map_or(*c, |(h, _)| h)))
                .collect();
            let live = |run: &Run, prof: &Profile| prof_cpm(run, prof.consumer_samples);
            sec.figure(
                "where --record's CPU goes (perf, one run each, s per 1M events)",
                format!(
                    "{:+.3} s in all ({:+.3} s of it on the ring-consumer thread): {}",
                    r.cpu_per_million() - p.cpu_per_million(),
                    live(r, rp) - live(p, pp),
                    parts.join(", ")
                ),
                "",
            );
        }
    }

    // Details.
    let mut d = String::new();
    let _ = writeln!(
        d,
        "Load: drop-storm's flood, {count} UDP datagrams (16-byte payload) from A to \
         {}:{PORT} in B where nothing listens, one kfree_skb drop record each (the heaviest live \
         input: the ring buffer carries every one, the output rate-limits them to 1000 `skb_drop` \
         lines/s and counts the rest in `drop_summary` lines). `tracer run` with its stdout in a \
         file, plain or with `--record target/bench/run-<pid>/record.capture` (the same ext4 \
         filesystem as the rest of target/). {} runs in the order plain, --record, plain, …, \
         plain, after one uncounted --record warm-up run of {} datagrams.\n",
        topo.ip_b,
        runs.len(),
        count / 10
    );
    let _ = writeln!(
        d,
        "CPU: tracer's on-CPU time, user + system, summed over its threads \
         (/proc/<pid>/task/*/schedstat, ns) from just before the flood until its output and its \
         CPU time stopped moving for {} s (tracer flushes the capture's 1 MiB buffer at least on \
         its 1 s tick, so the last flush is inside); the write() calls that move the capture into \
         the page cache are inside the window, the final fsync at exit is \
         not (it is in \"CPU total\", wait4 rusage of the whole life, start-up included, and in \
         \"stop\", SIGINT → exit). /proc/<pid>/stat ticks agree within a tick or two (column \
         \"ticks\"). Events: the kernel events tracer delivered to its output (`event.kind` \"event\" \
         lines × `tracer.count` + Σ `drop_summary` counts, all namespaces), i.e. the ring-buffer \
         records user space handled. Recording cost: each --record run's CPU per million events \
         over the mean of its two plain neighbours, minus 1; the figure is the median of those.\n",
        QUIET.as_secs()
    );
    let _ = writeln!(
        d,
        "Live path: the same window's CPU of tracer's main thread alone (tid = pid, \
         /proc/<pid>/task/<pid>/schedstat). tokio's `block_on` runs the collector's loop there: \
         the ring-buffer reads, the pipeline (decode, enrich, detect), NDJSON serialisation \
         and, with --record, copying each record into the capture's 64 KiB batch; it is the \
         thread whose speed decides whether the ring buffer overflows. The `{CAPTURE_THREAD}` \
         thread (framing, CRC-32, write() of the capture), `{NDJSON_THREAD}` (write() of \
         stdout) and the other threads (tokio's workers: I/O driver wake-ups and timers; \
         identity) are apart, told by /proc/<pid>/task/<tid>/comm. Recording cost on the live \
         path: as above with the main thread's CPU.\n"
    );
    let _ = writeln!(
        d,
        "| # | tracer | sent | datagrams/s | kernel NoPorts | B's drops accounted | events | lost | CPU s | ticks | CPU s per 1M events | M events per CPU-s | vs neighbours | ring consumer s | {CAPTURE_THREAD} s | {NDJSON_THREAD} s | other threads s | ring consumer s per 1M events | ring consumer vs neighbours | CPU total | drain s | stop s | peak RSS | output lines | capture | B per event | replay |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut pair = paired.iter().zip(&paired_live);
    for (i, r) in runs.iter().chain(&tight).enumerate() {
        let (vs, live_vs) = if r.record && !r.tight {
            pair.next()
                .map(|(p, l)| {
                    (
                        pct(*p),
                        if l.is_finite() {
                            pct(*l)
                        } else {
                            String::new()
                        },
                    )
                })
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let threads = match &r.threads {
            Some(t) => format!(
                "{:.3} | {:.3} | {:.3} | {:.3} | {:.3}",
                t.consumer,
                t.capture,
                t.ndjson,
                t.other,
                r.consumer_per_million()
            ),
            None => " |  |  |  | ".to_owned(),
        };
        let (cap, bpe, replay) = match &r.recording {
            Some(c) => (
                format!("{:.1} MiB", mib(c.capture.bytes)),
                format!("{:.1}", c.capture.per_record()),
                match (
                    c.replay.identical,
                    c.replay.first_diff,
                    c.replay.same_counts,
                ) {
                    (true, _, _) => "identical".to_owned(),
                    (false, Some(l), true) => format!("differs at line {l}, same counts"),
                    (false, Some(l), false) => format!("differs at line {l}, counts differ"),
                    (false, None, s) => {
                        format!("differs (counts {})", if s { "same" } else { "differ" })
                    }
                },
            ),
            None => Default::default(),
        };
        let _ = writeln!(
            d,
            "| {} | {} | {} | {:.0} | {} | {} of {} | {} | {} | {:.3} | {:.2} | {:.3} | {:.2} | {vs} | {threads} | {live_vs} | {:.2} | {:.1} | {:.2} | {:.1} MiB | {} | {cap} | {bpe} | {replay} |",
            i + 1,
            r.label(),
            r.sent,
            r.sent as f64 / r.send_s.max(1e-9),
            r.kernel,
            r.accounted(),
            r.kernel,
            r.events,
            r.lost,
            r.cpu_s,
            r.cpu_ticks_s,
            r.cpu_per_million(),
            1.0 / r.cpu_per_million(),
            r.cpu_total_s,
            r.drain_s,
            r.stop_s,
            r.maxrss_kib as f64 / 1024.0,
            r.out_lines,
        );
    }
    let _ = writeln!(
        d,
        "\n\"B's drops accounted\" is drop-storm's check: `skb_drop` lines with reason NO_SOCKET and \
         B's netns inode ({inode_b}) + Σ `tracer.count` of the matching `drop_summary` lines + \
         `tracer.lost_total`, against B's own NoPorts counter. \"lost\": `tracer.lost_total` of the \
         final `loss_report` (records the ring buffer could not hold). The last {} runs use \
         `--ring-buffer-size {TIGHT_RING}` with {tight_count} datagrams, plain and --record \
         alternating. Drop records then wake user space every 1 KiB (~10 records) and the ring \
         holds ~1.5 ms of the storm, so user space barely keeps up and loses records either way: \
         where the default ring has room for seconds of this storm and loses nothing with or \
         without recording, this one shows whether recording makes user space late enough to \
         lose more. Lost records cost user space nothing, so these runs' CPU per event is not \
         comparable with the others' (and scheduling noise decides much of their loss: compare \
         medians, not single runs). Σ lost: {tpl} of {tpe} records plain, {trl} of {tre} with \
         --record.\n",
        tight.len()
    );
    if let Some(c) = example {
        let ci = &c.capture;
        let _ = writeln!(
            d,
            "Capture of run 2: {} part(s), {} bytes: {} kernel records ({} bytes with frames), {} \
             other inputs (identity, ticks, loss reports, probe status), {} symbol records, {} \
             other records (header, drop-reason table, end). Each capture was then replayed with \
             `tracer replay FILE > FILE.ndjson` ({:.2} s CPU for this one) and compared with the \
             live output of the same run, byte for byte (`cmp`) and with the accounting above \
             (bench_helper tracer-drops on both: lines, events, B's drops and summaries, loss, \
             decode errors).\n",
            ci.parts,
            ci.bytes,
            ci.kernel_records,
            ci.kernel_bytes,
            ci.input_records,
            ci.symbol_records,
            ci.other_records,
            c.replay.replay_cpu_s
        );
    }
    let _ = writeln!(
        d,
        "Kernel's share: after each --record run (tracer stopped, its capture still on disk), \
         `bench_helper write-file` writes as many bytes as the capture holds to a new file on the \
         same filesystem, in 1 MiB write() calls like tracer's buffered writer, and deletes it; \
         then does it again at once, when the pages the first file just freed are reused. Its CPU \
         (schedstat) is what the kernel charges for taking the bytes, with no tracer code \
         involved. Which pages a new file gets (just freed, still mapped by the hypervisor, or \
         long free) is up to the kernel, so the first pass is an indication, not a bound.{}\n",
        if free_page_reporting() {
            " This VM's virtio-balloon reports free guest pages to the hypervisor \
             (VIRTIO_BALLOON_F_REPORTING): a page free for a few seconds is handed back and must \
             be faulted in again on its next use, which is what makes writing into new pages \
             several times dearer than into pages just freed."
        } else {
            ""
        }
    );
    if calibs.len() > 1 {
        let _ = writeln!(
            d,
            "| --record run | write() of the capture's bytes, new pages: s per 1M events | same, pages just freed | tracer with --record: CPU s per 1M events |\n|---|---|---|---|"
        );
        for (i, (c, w, t)) in calibs.iter().enumerate() {
            let _ = writeln!(d, "| {} | {c:.3} | {w:.3} | {t:.3} |", i + 1);
        }
        d.push('\n');
    }
    match (&perf_err, profiled.as_slice()) {
        (None, [p, r]) => profile_details(&mut d, p, r),
        (Some(why), _) => {
            let _ = writeln!(d, "Profile: not measured: {why}.\n");
        }
        _ => {}
    }
    let _ = writeln!(
        d,
        "Not measured: recording under the iperf3 load (datapath's). There tracer's ring buffer \
         carries only ARP replies, TCP retransmits and the odd drop, a few hundred records per \
         5 s run (datapath's \"lines per run\"), so a capture grows by kilobytes and its cost is \
         far below that benchmark's run-to-run noise (±5 %); the drop storm is where recording \
         has work to do."
    );
    sec.details = d;

    let profile_hint = if profiled.len() == 2 {
        " Where the added CPU goes: see \"Profile\"."
    } else {
        ""
    };
    if !cost.is_finite() {
        sec.note("no recording run had two plain neighbours: no cost figure");
    } else if !live_cost.is_finite() {
        sec.note("no per-thread CPU figures (/proc/<pid>/task/*/schedstat unreadable): no live-path cost");
    } else if live_cost >= 0.10 {
        sec.note(format!(
            "recording costs the live path (ring-consumer thread) {} of its CPU per event under a \
             drop storm, above the 10 % goal: {:.3} s more per million events.{profile_hint}",
            pct(live_cost),
            rec_live - plain_live,
        ));
    }
    if cost.is_finite() && cost >= 0.10 {
        sec.note(format!(
            "over all of tracer's threads, recording costs {} of CPU per event ({:.3} s more per \
             million events, {:.3} s of it on the {CAPTURE_THREAD} thread), off the live path \
             but still the machine's CPU. For comparison, a plain write() of the same bytes ({bpr:.0} per \
             event) costs {warm:.3} s per million events into pages just freed and {cold:.3} s \
             into new pages here (see \"Kernel's share\").",
            pct(cost),
            rec_cpm - plain_cpm,
            tr[1] - tp[1],
        ));
    }
    let (tpm, trm) = (
        median(&tpf).unwrap_or(f64::NAN),
        median(&trf).unwrap_or(f64::NAN),
    );
    if trm > tpm + 0.01 {
        sec.note(format!(
            "with the {TIGHT_RING} ring, the --record runs lost a larger share of records (median \
             {:.1} %) than the plain ones ({:.1} %)",
            median(&trf).unwrap_or(f64::NAN) * 100.0,
            median(&tpf).unwrap_or(f64::NAN) * 100.0
        ));
    }
    for (i, r) in runs.iter().chain(&tight).enumerate() {
        if let Some(dir) = r.recording.as_ref().and_then(|c| c.replay.kept.as_ref()) {
            sec.note(format!(
                "the replay of run {} ({}) differs from its live output; its capture, both \
                 outputs and tracer's stderr were kept in {}",
                i + 1,
                r.label(),
                dir.display()
            ));
        }
    }
    let short: Vec<String> = runs
        .iter()
        .chain(&tight)
        .filter(|r| r.accounted() != r.kernel)
        .map(|r| format!("{} of {}", r.accounted(), r.kernel))
        .collect();
    if !short.is_empty() {
        sec.note(format!(
            "B's drops accounted ≠ its NoPorts count in some runs: {}",
            short.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(rtype: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v.extend_from_slice(&rtype.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&[0u8; 8]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn walks_capture_frames() {
        let dir =
            std::env::temp_dir().join(format!("tracer-bench-record-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.capture");
        let mut bytes = capture::MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend(frame(record_type::HEADER, b"{}"));
        bytes.extend(frame(record_type::DROP_REASONS, b"{}"));
        bytes.extend(frame(record_type::KERNEL, &[0u8; 96]));
        bytes.extend(frame(record_type::KERNEL, &[0u8; 96]));
        bytes.extend(frame(record_type::INPUT, b"{\"Tick\":{}}"));
        bytes.extend(frame(record_type::SYMBOLS, b"[]"));
        bytes.extend(frame(record_type::END, b"{}"));
        fs::write(&path, &bytes).unwrap();
        let info = walk_capture(&path).unwrap();
        assert_eq!(info.parts, 1);
        assert_eq!(info.bytes, bytes.len() as u64);
        assert_eq!(info.kernel_records, 2);
        assert_eq!(info.kernel_bytes, 2 * (CAPTURE_FRAME + 96));
        assert_eq!(info.input_records, 1);
        assert_eq!(info.symbol_records, 1);
        assert_eq!(info.other_records, 3);
        // Cut short: an error, not a wrong count.
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(walk_capture(&path).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn cpu_delta_per_thread() {
        let comms = BTreeMap::from([
            (1, "tracer".to_owned()),
            (2, "tokio-rt-worker".to_owned()),
            (3, CAPTURE_THREAD.to_owned()),
            (4, NDJSON_THREAD.to_owned()),
        ]);
        let a = CpuSnap {
            pid: 1,
            tasks: Some(BTreeMap::from([
                (1, 1_000_000_000),
                (2, 500_000_000),
                (4, 1_000),
            ])),
            comms: comms.clone(),
            ticks: 150,
        };
        // Thread 2 exited, thread 3 started.
        let b = CpuSnap {
            pid: 1,
            tasks: Some(BTreeMap::from([
                (1, 1_250_000_000),
                (3, 10_000_000),
                (4, 2_001_000),
            ])),
            comms,
            ticks: 176,
        };
        let (s, t) = a.until(&b);
        assert!((s - 0.262).abs() < 1e-9);
        assert!((t - 0.26).abs() < 1e-9);
        let by = a.by_thread(&b).unwrap();
        assert!((by.consumer - 0.25).abs() < 1e-9, "{by:?}");
        assert!((by.capture - 0.01).abs() < 1e-9, "{by:?}");
        assert!((by.ndjson - 0.002).abs() < 1e-9, "{by:?}");
        assert_eq!(by.other, 0.0);
        // The main thread is the consumer whatever its name.
        assert_eq!(thread_class(7, 7, "tokio-rt-worker"), ThreadClass::Consumer);
        assert_eq!(thread_class(7, 8, "tokio-rt-worker"), ThreadClass::Other);
        let no = CpuSnap {
            pid: 1,
            tasks: None,
            comms: BTreeMap::new(),
            ticks: 176,
        };
        assert!(a.by_thread(&no).is_none());
    }

    #[test]
    fn classifies_perf_samples() {
        let text = "tracer  1244 \n\t          16d80f __memmove_avx512_unaligned_erms (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\n\
tracer  1244 \n\t          35f0cc <alloc::vec::drain::Drain<T,A> as core::ops::drop::Drop>::drop (/work/main/target/release/tracer)\n\n\
tracer  1244 \n\tffffffff822018b1 _raw_spin_unlock_irq ([kernel.kallsyms])\n\tffffffff816b9856 ksys_write ([kernel.kallsyms])\n\
\t          421472 std::io::buffered::bufwriter::BufWriter<W>::flush_buf (/work/main/target/release/tracer)\n\n\
tracer  1244 \n\t          3d206a tracer::capture::writer::CaptureWriter::write_record (/work/main/target/release/tracer)\n\n\
tracer  1244 \n\t          3d2000 crc32fast::specialized::pclmulqdq::calculate (/work/main/target/release/tracer)\n\n\
tokio-rt-worker  1247 \n\tffffffff8100 finish_task_switch.isra.0 ([kernel.kallsyms])\n\tffffffff8101 do_epoll_wait ([kernel.kallsyms])\n\n";
        let p = parse_perf_script(text, 1244);
        assert_eq!(p.samples, 6);
        assert_eq!(p.consumer_samples, 5);
        assert_eq!(p.consumer_categories.get(CATEGORIES[4]), None);
        assert_eq!(p.consumer_categories.get(CATEGORIES[1]), Some(&1));
        for (cat, n) in [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1)] {
            assert_eq!(
                p.categories.get(CATEGORIES[cat]),
                Some(&n),
                "{}",
                CATEGORIES[cat]
            );
        }
        assert_eq!(p.symbols.get("[k] _raw_spin_unlock_irq"), Some(&1));
        assert_eq!(
            p.symbols
                .get("<alloc::vec::drain::Drain<T,A> as core::ops::drop::Drop>::drop"),
            Some(&1)
        );
    }
}
