//! HTML report: `tracer report` of a 10M-event synthetic capture (the
//! outage mix of the pipeline benchmark): generation time, peak RSS and
//! the size of the file written. The report aggregates into a fixed number
//! of time buckets and series, so neither memory nor the file grows with
//! the capture.

use std::{fmt::Write as _, fs, path::Path};

use anyhow::{bail, Result};

use super::{median, sys, Env, Outcome, Recorder, Section};

struct Run {
    wall: f64,
    cpu: f64,
    rss: f64,
    bytes: u64,
}

fn timed_report(env: &Env, rec: &mut Recorder, capture: &Path, out: &Path) -> Result<Run> {
    sys::check()?;
    let _ = fs::remove_file(out);
    let tracer = env.tracer.to_string_lossy().into_owned();
    let (capture, out_s) = (
        capture.to_string_lossy().into_owned(),
        out.to_string_lossy().into_owned(),
    );
    let kv = env.helper(
        rec,
        &[
            "rusage", "taskset", "-c", "0", &tracer, "report", &capture, "-o", &out_s,
        ],
    )?;
    let exit = kv.u64("exit").unwrap_or(u64::MAX);
    if exit != 0 {
        bail!("`tracer report` ended with exit code {exit}");
    }
    let bytes = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    let html = fs::read_to_string(out).unwrap_or_default();
    if !html.contains("document.body.dataset.ok") || !html.contains("<svg") {
        bail!("`tracer report` wrote no charts");
    }
    Ok(Run {
        wall: kv.f64("wall_s")?,
        cpu: kv.f64("cpu_s")?,
        rss: kv.u64("maxrss_kib")? as f64 / 1024.0,
        bytes,
    })
}

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    let runs = if env.quick { 1 } else { 3 };
    let n: u64 = if env.quick { 1_000_000 } else { 10_000_000 };
    let capture = env.file("report.capture");
    let out = env.file("report.html");
    let _ = fs::remove_file(&capture);
    let mut gen = std::process::Command::new(&env.tracer);
    gen.args(["synth-capture", "--events", &n.to_string(), "--output"])
        .arg(&capture);
    rec.output(&mut gen)?;
    let size = fs::metadata(&capture).map(|m| m.len()).unwrap_or(0);
    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(timed_report(env, rec, &capture, &out)?);
    }
    let _ = fs::remove_file(&capture);
    let _ = fs::remove_file(&out);
    let walls: Vec<f64> = all.iter().map(|r| r.wall).collect();
    let wall = median(&walls).unwrap_or(f64::NAN);
    let bytes = all.iter().map(|r| r.bytes).max().unwrap_or(0);
    let rss = all.iter().map(|r| r.rss).fold(0.0, f64::max);
    sec.figure(
        format!("`tracer report` of a {n}-record synthetic capture, one core: generation time (median of {runs})"),
        format!("{wall:.1} s ({:.2} M records/s)", n as f64 / wall / 1e6),
        "",
    );
    sec.figure(
        "report file size, peak RSS",
        format!("{:.0} KiB, {rss:.1} MiB", bytes as f64 / 1024.0),
        "bounded",
    );
    let mut d = String::new();
    let _ = writeln!(
        d,
        "`tracer synth-capture --events {n}` (the pipeline benchmark's outage mix, {:.1} MiB), \
         then `taskset -c 0 tracer report CAPTURE -o report.html`, timed by `bench_helper rusage` \
         (wall, CPU, `ru_maxrss`). The report replays the capture through the same pipeline as \
         `tracer replay` and folds the lines into 400 time buckets and at most 256 series per \
         chart (12 drawn, the rest in \"other\").\n",
        size as f64 / 1048576.0
    );
    let _ = writeln!(
        d,
        "| run | wall s | CPU s | peak RSS | file size |\n|---|---|---|---|---|"
    );
    for (i, r) in all.iter().enumerate() {
        let _ = writeln!(
            d,
            "| {} | {:.2} | {:.2} | {:.1} MiB | {:.0} KiB |",
            i + 1,
            r.wall,
            r.cpu,
            r.rss,
            r.bytes as f64 / 1024.0
        );
    }
    sec.details = d;
    sec.outcome = Outcome::Measured;
    Ok(())
}
