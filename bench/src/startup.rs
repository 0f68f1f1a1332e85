//! Start-up: from `spawn()` of `tracer run` to its last `probe_status` line
//! on stdout (every probe attached or reported failed). BTF parsing, the
//! eBPF object load and verification, and the attaches are all inside.

use std::time::Duration;

use anyhow::Result;

use super::{median, sys, tools, Env, Recorder, Section};

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    let runs = if env.quick { 3 } else { 5 };
    let mut times = Vec::new();
    let mut attached = Vec::new();
    // One unmeasured launch first: the binary and BTF come from the page cache after that.
    for i in 0..=runs {
        sys::check()?;
        let t = tools::start_tracer(env, rec, &[], tools::Output::Discard, "tracer")?;
        let (secs, n) = (t.attach_time.as_secs_f64(), t.attached);
        t.stop()?;
        if i > 0 {
            times.push(secs);
            attached.push(n);
        }
        sys::sleep(Duration::from_millis(200))?;
    }
    let med = median(&times).unwrap_or(f64::NAN);
    let (min, max) = (
        times.iter().copied().fold(f64::INFINITY, f64::min),
        times.iter().copied().fold(0.0, f64::max),
    );
    sec.figure(
        format!(
            "launch → all {} probe_status lines (median of {runs})",
            env.probes
        ),
        format!("{:.0} ms", med * 1e3),
        "",
    );
    let mut d = String::new();
    d.push_str(&format!(
        "Time from `spawn()` of `tracer run` to the {}th `probe_status` line on its \
         stdout (a pipe read by tracer-bench), after one unmeasured warm-up launch. \
         Each launch is then stopped with SIGINT.\n\n",
        env.probes
    ));
    d.push_str("| run | time to all probes | probes attached |\n|---|---|---|\n");
    for (i, (t, n)) in times.iter().zip(&attached).enumerate() {
        d.push_str(&format!(
            "| {} | {:.0} ms | {n} of {} |\n",
            i + 1,
            t * 1e3,
            env.probes
        ));
    }
    d.push_str(&format!(
        "\nMedian {:.0} ms (min {:.0} ms, max {:.0} ms).\n",
        med * 1e3,
        min * 1e3,
        max * 1e3
    ));
    sec.details = d;
    Ok(())
}
