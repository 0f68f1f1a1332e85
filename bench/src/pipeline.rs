//! Pipeline: `tracer replay` of a synthetic capture on one core
//! (`taskset -c 0`): events per second and peak RSS (`wait4` rusage).
//!
//! This VM's speed drifts by up to ~40 % between minutes, so the three
//! replays of the outage mix run in interleaved rounds (a slow spell hits
//! all three alike), five rounds, and the report gives the median, the best
//! and how many runs met the goal. Instruction counts per event
//! (`valgrind --tool=callgrind`, when installed) do not depend on the VM's
//! speed at all: they are the figure to compare two commits by.
//!
//! Two captures from `tracer synth-capture` (deterministic):
//! - the outage mix (default `--peers 4`): 1000 containers on an overlay,
//!   each with a few long-lived peers; drops to closed ports, stalled TCP
//!   flows, flapping MACs, ARP and neighbour churn. Replayed three ways:
//!   everything (decode + enrich + detect + serialise, the figure),
//!   `--action none` (the same without output: the detectors' figure) and
//!   `--no-detect --action none` (decode + enrich alone, for reference);
//! - the flood (`--peers 0`): every record between a random pair of
//!   containers and ARP replies sweeping every pair, so flows and ARP keys
//!   far beyond the detectors' 100 000-key tables: memory must stay bounded
//!   (old state evicted, and the evictions reported in `detector_status`).

use std::{
    fmt::Write as _,
    fs, io,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{median, proc::Proc, sys, Env, Outcome, Recorder, Section};

/// One timed replay: wall s, CPU s, peak RSS MiB.
struct Run {
    wall: f64,
    cpu: f64,
    rss: f64,
}

fn timed_replay(env: &Env, rec: &mut Recorder, capture: &Path, extra: &[&str]) -> Result<Run> {
    sys::check()?;
    // Through bench_helper, a small process, so that the peak RSS is the
    // replay's own (see `bench_helper rusage`).
    let tracer = env.tracer.to_string_lossy().into_owned();
    let capture = capture.to_string_lossy().into_owned();
    let mut args = vec!["rusage", "taskset", "-c", "0", &tracer, "replay", &capture];
    args.extend_from_slice(extra);
    let kv = env.helper(rec, &args)?;
    let exit = kv.u64("exit").unwrap_or(u64::MAX);
    if exit != 0 {
        bail!("`tracer replay` ended with exit code {exit}");
    }
    Ok(Run {
        wall: kv.f64("wall_s")?,
        cpu: kv.f64("cpu_s")?,
        rss: kv.u64("maxrss_kib")? as f64 / 1024.0,
    })
}

/// Untimed replay to a file: (kernel events the output stands for, lines,
/// the last `detector_status` line's stats if any).
fn count(env: &Env, rec: &mut Recorder, capture: &Path, tag: &str) -> Result<(u64, u64, String)> {
    let counted = env.file(&format!("pipeline-{tag}.ndjson"));
    let mut c = Command::new(&env.tracer);
    c.arg("replay")
        .arg(capture)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&counted)?);
    rec.record_cmd(&c, &super::tools::Output::File(&counted));
    let mut p = Proc::spawn("tracer replay", &mut c)?;
    let exit = p.wait(Duration::from_secs(1800))?;
    if !exit.success() {
        bail!("`tracer replay` ended with {exit}");
    }
    let counted_s = counted.to_string_lossy().into_owned();
    let kv = env.helper(rec, &["tracer-drops", &counted_s, "0", "-"])?;
    let events = kv.u64("events")?;
    let lines = kv.u64("lines")?;
    // Streamed (the output is gigabytes): reading it whole would also make
    // every process forked afterwards start with that resident set, and
    // wait4's ru_maxrss of the timed replays would report it.
    let mut last = None;
    for line in io::BufRead::lines(io::BufReader::new(
        fs::File::open(&counted).context("reading the replay output")?,
    )) {
        let line = line.context("reading the replay output")?;
        if line.contains("\"action\":\"detector_status\"") {
            last = Some(line);
        }
    }
    let stats = last
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .and_then(|v| v.pointer("/tracer/detect").cloned())
        .map(|d| {
            let g = |k: &str| d.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            format!(
                "{} keys held at the end, {} evicted (table full), {} expired (idle), {} drops counted under \"(other)\"",
                g("tracked_keys"),
                g("evictions"),
                g("expired"),
                g("drop_overflow")
            )
        })
        .unwrap_or_else(|| "no detector_status line in this build".into());
    let _ = fs::remove_file(&counted);
    Ok((events, lines, stats))
}

fn generate(env: &Env, rec: &mut Recorder, capture: &Path, events: u64, peers: u32) -> Result<()> {
    let mut gen = Command::new(&env.tracer);
    gen.args([
        "synth-capture",
        "--events",
        &events.to_string(),
        "--peers",
        &peers.to_string(),
        "--output",
    ])
    .arg(capture);
    rec.output(&mut gen)?;
    Ok(())
}

fn table(d: &mut String, events: u64, runs: &[Run]) {
    let _ = writeln!(
        d,
        "| run | wall s | CPU s | events/s | peak RSS |\n|---|---|---|---|---|"
    );
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            d,
            "| {} | {:.2} | {:.2} | {:.0} | {:.1} MiB |",
            i + 1,
            r.wall,
            r.cpu,
            events as f64 / r.wall,
            r.rss
        );
    }
}

fn rate(events: u64, runs: &[Run]) -> f64 {
    let walls: Vec<f64> = runs.iter().map(|r| r.wall).collect();
    events as f64 / median(&walls).unwrap_or(f64::NAN)
}

fn best(events: u64, runs: &[Run]) -> f64 {
    events as f64 / runs.iter().map(|r| r.wall).fold(f64::INFINITY, f64::min)
}

/// "median (best, k of n runs ≥ 1 M/s)".
fn rates(events: u64, runs: &[Run]) -> String {
    let met = runs
        .iter()
        .filter(|r| events as f64 / r.wall >= 1e6)
        .count();
    format!(
        "{:.2} M events/s (best {:.2}; {met} of {} runs ≥ 1 M/s)",
        rate(events, runs) / 1e6,
        best(events, runs) / 1e6,
        runs.len()
    )
}

/// Instructions one `tracer replay` executes (valgrind's callgrind; the
/// count of a given binary and capture is the same on every run).
fn instructions(
    env: &Env,
    rec: &mut Recorder,
    capture: &Path,
    extra: &[&str],
) -> Result<Option<u64>> {
    if crate::cmd::which("valgrind").is_none() {
        return Ok(None);
    }
    let mut c = Command::new("valgrind");
    c.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(&env.tracer)
        .arg("replay")
        .arg(capture)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    rec.note(format!("{} > /dev/null", crate::cmd::display(&c)));
    let out = c.output().context("running valgrind")?;
    if !out.status.success() {
        bail!("valgrind `tracer replay` ended with {}", out.status);
    }
    // "==123== Collected : 5497772252"
    let err = String::from_utf8_lossy(&out.stderr);
    Ok(err
        .lines()
        .find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, n)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok()))
}

fn peak(runs: &[Run]) -> f64 {
    runs.iter().map(|r| r.rss).fold(0.0, f64::max)
}

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    let runs = if env.quick { 1 } else { 5 };
    let n: u64 = if env.quick { 1_000_000 } else { 10_000_000 };
    let mut d = String::new();

    // The outage mix.
    let capture = env.file("pipeline.capture");
    generate(env, rec, &capture, n, 4)?;
    let size = fs::metadata(&capture).map(|m| m.len()).unwrap_or(0);
    let (events, lines, stats) = count(env, rec, &capture, "mix")?;
    // Interleaved rounds: a slow spell of the VM hits all three alike.
    let (mut full, mut detect, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        full.push(timed_replay(env, rec, &capture, &[])?);
        detect.push(timed_replay(env, rec, &capture, &["--action", "none"])?);
        decode.push(timed_replay(
            env,
            rec,
            &capture,
            &["--no-detect", "--action", "none"],
        )?);
    }
    let _ = fs::remove_file(&capture);

    // Instructions per event, on a 1M-event capture of the same mix.
    let small = env.file("pipeline-1m.capture");
    let small_n: u64 = if env.quick { 100_000 } else { 1_000_000 };
    generate(env, rec, &small, small_n, 4)?;
    let (small_events, _, _) = count(env, rec, &small, "mix-1m")?;
    let ins_full = instructions(env, rec, &small, &[])?;
    let ins_detect = instructions(env, rec, &small, &["--action", "none"])?;
    let _ = fs::remove_file(&small);

    let goal = |r: f64| {
        if r >= 1e6 {
            "≥ 1 M/s: met"
        } else {
            "≥ 1 M/s: NOT met"
        }
    };
    let (rf, rd, rn) = (
        rate(events, &full),
        rate(events, &detect),
        rate(events, &decode),
    );
    sec.figure(
        format!("replay of {events} events to NDJSON on /dev/null, one core: decode + enrich + detect + serialise (median of {runs} interleaved runs)"),
        rates(events, &full),
        goal(rf),
    );
    sec.figure(
        "same, without output (`--action none`): decode + enrich + detectors and incidents",
        rates(events, &detect),
        goal(rd),
    );
    sec.figure(
        "same, decode + enrich alone (`--no-detect --action none`)",
        format!("{:.2} M events/s", rn / 1e6),
        "",
    );
    if let (Some(f), Some(dn)) = (ins_full, ins_detect) {
        let per = |n: u64| n as f64 / small_events.max(1) as f64;
        sec.figure(
            format!("instructions per event (valgrind callgrind, {small_n}-record capture of the same mix, whole process): everything / without output"),
            format!("{:.0} / {:.0}", per(f), per(dn)),
            "",
        );
    }
    sec.figure(
        "replay peak RSS (outage mix)",
        format!("{:.1} MiB", peak(&full)),
        "bounded",
    );
    let _ = writeln!(
        d,
        "**Outage mix.** `tracer synth-capture --events {n} --peers 4`: 1000 containers on an \
         overlay network with their identity (Docker containers, namespaces, veths, the overlay's \
         bridge and vxlan), then {n} kernel records 1 µs apart: 40 % UDP drops to closed ports \
         between containers (rate-limited to 1000 lines/s and summarised), 30 % TCP retransmits on \
         each container's 4 long-lived connections (flows of every 7th container make no \
         progress: retransmit bursts, roll-ups, incidents), 10 % ARP replies for those peers, \
         10 % FDB moves of every 11th container's MAC between its veth and the vxlan (flaps), \
         10 % neighbour updates. The capture ({:.1} MiB) stands for {events} kernel events (the \
         `event` lines its replay prints plus the drops counted in `drop_summary` lines, counted \
         once from an untimed replay to a file: {lines} lines). events/s = {events} / wall time of \
         the replay process; peak RSS = its `ru_maxrss` (wait4). Detector state at the end: \
         {stats}.\n",
        size as f64 / 1048576.0
    );
    let _ = writeln!(d, "Everything (`tracer replay FILE`):\n");
    table(&mut d, events, &full);
    let _ = writeln!(d, "\nWithout output (`--action none`):\n");
    table(&mut d, events, &detect);
    let _ = writeln!(
        d,
        "\nDecode + enrich alone (`--no-detect --action none`):\n"
    );
    table(&mut d, events, &decode);

    // The flood of distinct keys.
    let flood = env.file("pipeline-flood.capture");
    generate(env, rec, &flood, n, 0)?;
    let (fevents, flines, fstats) = count(env, rec, &flood, "flood")?;
    let fl: Vec<Run> = (0..runs.min(2))
        .map(|_| timed_replay(env, rec, &flood, &[]))
        .collect::<Result<_>>()?;
    let _ = fs::remove_file(&flood);
    let rfl = rate(fevents, &fl);
    sec.figure(
        "flood of distinct flows and ARP keys (`--peers 0`): replay rate, peak RSS",
        format!("{:.2} M events/s, {:.1} MiB", rfl / 1e6, peak(&fl)),
        "memory bounded",
    );
    let _ = writeln!(
        d,
        "\n**Flood of distinct keys.** `tracer synth-capture --events {n} --peers 0`: the same mix, \
         but every record picks a random container pair and the ARP replies sweep every pair, so \
         about a million distinct flows and ARP keys pass through tables capped at 100 000 keys \
         each (`--max-keys`), which stay full and evict their least recently seen entries in \
         batches. {flines} lines. Detector state at the end: {fstats}.\n"
    );
    table(&mut d, fevents, &fl);
    if rfl < 1e6 {
        sec.note(format!(
            "the flood of distinct keys replays at {:.2} M events/s: every record creates state \
             in full tables (memory-bound hash inserts and batch evictions); memory stays bounded",
            rfl / 1e6
        ));
    }
    sec.details = d;
    sec.outcome = Outcome::Measured;
    Ok(())
}
