//! Pipeline: `tracer replay` of a capture to /dev/null on one core
//! (`taskset -c 0`): events per second and peak RSS (`wait4` rusage).
//!
//! The capture is synthetic when the capture work's generator exists
//! (`tracer synth-capture --events N --output FILE`, detected at run time).
//! Until then it is recorded for real: `tracer run --record FILE` during a
//! UDP flood of N datagrams to a closed port (each one a kernel drop
//! record). Without `tracer replay` the benchmark is "not measured yet".

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use super::{
    median,
    proc::{self, Proc},
    sys,
    tools::{self, Output},
    Env, Outcome, Recorder, Section,
};

/// The synthetic-capture generator's subcommand.
const GENERATOR: &str = "synth-capture";

/// Does `tracer SUB --help` work?
fn has_subcommand(env: &Env, sub: &str) -> bool {
    crate::cmd::probe_ok(Command::new(&env.tracer).args([sub, "--help"]))
}

/// Does `tracer run --help` list this flag?
fn run_has_flag(env: &Env, flag: &str) -> bool {
    crate::cmd::probe(Command::new(&env.tracer).args(["run", "--help"]))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
}

/// `tracer run --record FILE` while `drops` datagrams hit a closed port in B.
fn record_capture(env: &Env, rec: &mut Recorder, capture: &Path, drops: u64) -> Result<()> {
    let net = env.net()?;
    let topo = &net.topo;
    let live = env.file("pipeline-live.ndjson");
    let cap = capture.to_string_lossy().into_owned();
    let t = tools::start_tracer(env, rec, &["--record", &cap], Output::File(&live), "tracer")?;
    let mut fl = topo.exec(&topo.ns_a, &env.helper);
    fl.args(["udp-flood", &format!("{}:9", topo.ip_b), &drops.to_string()]);
    rec.output(&mut fl)?;
    proc::wait_quiescent(
        &live,
        &t.proc,
        Duration::from_secs(1),
        Duration::from_secs(600),
    )?;
    t.stop()?;
    let _ = fs::remove_file(&live);
    Ok(())
}

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    let runs = if env.quick { 1 } else { 3 };
    if !has_subcommand(env, "replay") {
        sec.outcome = Outcome::Pending(
            "`tracer replay` does not exist yet in this build (the capture reader is being written)".into(),
        );
        sec.details = format!(
            "When it exists: a synthetic capture is replayed {runs} time(s) with \
             `taskset -c 0 target/release/tracer replay FILE > /dev/null`; events/s = events / wall \
             time of the replay process; peak RSS = its `ru_maxrss` (wait4).\n"
        );
        return Ok(());
    }
    let capture = env.file("pipeline.capture");
    let mut d = String::new();
    if has_subcommand(env, GENERATOR) {
        let events: u64 = if env.quick { 1_000_000 } else { 10_000_000 };
        let mut gen = Command::new(&env.tracer);
        gen.args([GENERATOR, "--events", &events.to_string(), "--output"])
            .arg(&capture);
        rec.output(&mut gen)?;
        let _ = writeln!(
            d,
            "A synthetic capture of {events} events (`tracer {GENERATOR}`)."
        );
    } else if run_has_flag(env, "--record") {
        let drops: u64 = if env.quick { 100_000 } else { 2_000_000 };
        record_capture(env, rec, &capture, drops)?;
        let _ = writeln!(
            d,
            "No synthetic-capture generator in this build yet (`tracer {GENERATOR} --events N \
             --output FILE` is what this benchmark calls once it exists, with 10 million events), \
             so the capture is a real one: `tracer run --record FILE` while {drops} UDP datagrams \
             hit a closed port in B (one kernel drop record each, plus whatever else the machine \
             did meanwhile)."
        );
        sec.note(format!(
            "measured on a recorded capture of ~{drops} real events, not the synthetic \
             10-million-event one (its generator does not exist yet)"
        ));
    } else {
        sec.outcome = Outcome::Pending(format!(
            "`tracer replay` exists, but neither `tracer {GENERATOR}` nor `tracer run --record` does yet"
        ));
        return Ok(());
    }
    let size = fs::metadata(&capture).map(|m| m.len()).unwrap_or(0);

    // One untimed replay to a file: how many kernel events the capture holds.
    let counted = env.file("pipeline-replay.ndjson");
    let mut c = Command::new(&env.tracer);
    c.arg("replay")
        .arg(&capture)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&counted)?);
    rec.record_cmd(&c, &Output::File(&counted));
    let mut p = Proc::spawn("tracer replay", &mut c)?;
    let exit = p.wait(Duration::from_secs(1800))?;
    if !exit.success() {
        bail!("`tracer replay` ended with {exit}");
    }
    let counted_s = counted.to_string_lossy().into_owned();
    let kv = env.helper(rec, &["tracer-drops", &counted_s, "0", "-"])?;
    let events = kv.u64("events")?;
    let out_lines = kv.u64("lines")?;
    let _ = fs::remove_file(&counted);

    let mut walls = Vec::new();
    let mut rss = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..runs {
        sys::check()?;
        let mut c = Command::new("taskset");
        c.args(["-c", "0"])
            .arg(&env.tracer)
            .arg("replay")
            .arg(&capture)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        rec.note(format!("{} > /dev/null", crate::cmd::display(&c)));
        let t0 = Instant::now();
        let mut p = Proc::spawn("tracer replay", &mut c)?;
        let exit = p.wait(Duration::from_secs(1800))?;
        let wall = t0.elapsed().as_secs_f64();
        if !exit.success() {
            bail!("`tracer replay` ended with {exit}");
        }
        walls.push(wall);
        rss.push(exit.rusage.maxrss_kib() as f64 / 1024.0);
        cpus.push(exit.rusage.cpu_s());
    }
    let _ = fs::remove_file(&capture);
    let wall = median(&walls).unwrap_or(f64::NAN);
    let peak = rss.iter().copied().fold(0.0, f64::max);
    sec.figure(
        format!("replay of {events} events to /dev/null on one core (median of {runs})"),
        format!("{:.2} M events/s", events as f64 / wall / 1e6),
        "",
    );
    sec.figure("replay peak RSS", format!("{peak:.1} MiB"), "");
    let _ = writeln!(
        d,
        "\nThe capture ({:.1} MiB) stands for {events} kernel events: the events its replay prints \
         (`event.kind` \"event\" lines, plus the drops counted in `drop_summary` lines), counted once \
         from an untimed replay to a file ({out_lines} lines). Then replayed {runs} time(s) with \
         `taskset -c 0 target/release/tracer replay FILE > /dev/null`: events/s = {events} / wall \
         time of the replay process; peak RSS = its `ru_maxrss` (wait4).\n",
        size as f64 / 1048576.0
    );
    let _ = writeln!(
        d,
        "| run | wall s | CPU s | events/s | peak RSS |\n|---|---|---|---|---|"
    );
    for (i, ((w, c), r)) in walls.iter().zip(&cpus).zip(&rss).enumerate() {
        let _ = writeln!(
            d,
            "| {} | {w:.2} | {c:.2} | {:.0} | {r:.1} MiB |",
            i + 1,
            events as f64 / w
        );
    }
    sec.details = d;
    Ok(())
}
