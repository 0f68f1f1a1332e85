//! Pipeline: `tracer replay` of a synthetic capture to /dev/null on one core
//! (`taskset -c 0`): events per second and peak RSS (`wait4` rusage).
//!
//! Two pieces come from the capture work and are detected at run time:
//! `tracer replay FILE`, and the synthetic-capture generator
//! `tracer synth-capture --events N --output FILE`. While either is missing
//! the benchmark is reported as "not measured yet"; everything else (the
//! timing, RSS, report) is here already.

use std::{
    fmt::Write as _,
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use super::{median, proc::Proc, sys, Env, Outcome, Recorder, Section};

/// The generator's subcommand (hidden or not) and how it is called.
const GENERATOR: &str = "synth-capture";

/// Does `tracer SUB --help` work?
fn has_subcommand(env: &Env, sub: &str) -> bool {
    crate::cmd::probe_ok(Command::new(&env.tracer).args([sub, "--help"]))
}

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    let events: u64 = if env.quick { 1_000_000 } else { 10_000_000 };
    let runs = if env.quick { 1 } else { 3 };
    let method = format!(
        "A synthetic capture of {events} events is generated with \
         `tracer {GENERATOR} --events {events} --output FILE`, then replayed {runs} time(s) with \
         `taskset -c 0 target/release/tracer replay FILE > /dev/null`. events/s = {events} / wall \
         time of the replay process; peak RSS = its `ru_maxrss` (wait4).\n"
    );
    if !has_subcommand(env, "replay") {
        sec.outcome = Outcome::Pending(
            "`tracer replay` does not exist yet in this build (the capture reader is being written)".into(),
        );
        sec.details = method;
        return Ok(());
    }
    if !has_subcommand(env, GENERATOR) {
        sec.outcome = Outcome::Pending(format!(
            "`tracer replay` exists but the synthetic-capture generator \
             `tracer {GENERATOR} --events N --output FILE` does not yet"
        ));
        sec.details = method;
        return Ok(());
    }
    let capture = env.file("synthetic.capture");
    let mut gen = Command::new(&env.tracer);
    gen.args([GENERATOR, "--events", &events.to_string(), "--output"])
        .arg(&capture);
    rec.output(&mut gen)?;
    let size = fs::metadata(&capture).map(|m| m.len()).unwrap_or(0);

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
            .stderr(Stdio::piped());
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
        format!("replay of {events} events on one core (median of {runs})"),
        format!("{:.2} M events/s", events as f64 / wall / 1e6),
        "",
    );
    sec.figure("replay peak RSS", format!("{peak:.1} MiB"), "");
    let mut d = method;
    let _ = writeln!(d, "\nCapture size: {:.1} MiB.\n", size as f64 / 1048576.0);
    let _ = writeln!(d, "| run | wall s | CPU s | events/s | peak RSS |\n|---|---|---|---|---|");
    for (i, ((w, c), r)) in walls.iter().zip(&cpus).zip(&rss).enumerate() {
        let _ = writeln!(d, "| {} | {w:.2} | {c:.2} | {:.0} | {r:.1} MiB |", i + 1, events as f64 / w);
    }
    sec.details = d;
    Ok(())
}
