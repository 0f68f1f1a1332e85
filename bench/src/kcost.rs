//! Kernel cost per event, from the kernel's own accounting: with
//! `kernel.bpf_stats_enabled=1` every program's `run_time_ns` and `run_cnt`
//! grow on each run. They are read from /proc/<tracer pid>/fdinfo (the same
//! counters `bpftool prog show` prints; the bpf_link fds there name each
//! program's tracepoint) before and after an iperf3 run and a UDP flood.

use std::{collections::BTreeMap, fmt::Write as _, fs, time::Duration};

use anyhow::{bail, Context as _, Result};

use super::{
    proc, sys,
    tools::{self, Output},
    Env, Recorder, Section,
};

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Enables bpf_stats; restores the previous value on drop.
struct BpfStats {
    previous: String,
}

impl BpfStats {
    fn enable(rec: &mut Recorder) -> Result<Self> {
        let previous = fs::read_to_string(SYSCTL)
            .with_context(|| format!("cannot read {SYSCTL}"))?
            .trim()
            .to_owned();
        rec.note(format!(
            "echo 1 > {SYSCTL}  # restored to {previous} afterwards"
        ));
        eprintln!("+ echo 1 > {SYSCTL}");
        fs::write(SYSCTL, "1").with_context(|| format!("cannot write {SYSCTL}"))?;
        Ok(Self { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        eprintln!("+ echo {} > {SYSCTL}", self.previous);
        if let Err(e) = fs::write(SYSCTL, &self.previous) {
            crate::cmd::warn(format!("cannot restore {SYSCTL} to {}: {e}", self.previous));
        }
    }
}

/// (run_time_ns, run_cnt) per tracepoint name, for one process's programs.
type Snapshot = BTreeMap<String, (u64, u64)>;

fn fdinfo_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

fn snapshot(pid: u32) -> Result<Snapshot> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut tp_of_prog: BTreeMap<String, String> = BTreeMap::new();
    let mut stats: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let Ok(text) = fs::read_to_string(e?.path()) else {
            continue;
        };
        let Some(prog_id) = fdinfo_field(&text, "prog_id") else {
            continue;
        };
        if let Some(tp) = fdinfo_field(&text, "tp_name") {
            tp_of_prog.insert(prog_id, tp);
        } else if let (Some(ns), Some(cnt)) = (
            fdinfo_field(&text, "run_time_ns"),
            fdinfo_field(&text, "run_cnt"),
        ) {
            stats.insert(prog_id, (ns.parse().unwrap_or(0), cnt.parse().unwrap_or(0)));
        }
    }
    let snap: Snapshot = tp_of_prog
        .into_iter()
        .filter_map(|(id, tp)| stats.get(&id).map(|s| (tp, *s)))
        .collect();
    if snap.is_empty() {
        bail!("no attached BPF programs found in {dir}");
    }
    Ok(snap)
}

/// (run_time_ns, run_cnt) summed over every BPF program `pid` holds (the
/// bpftrace one-liner has exactly one).
fn prog_totals(pid: u32) -> Result<(u64, u64)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let (mut ns, mut cnt, mut progs) = (0, 0, 0);
    for e in fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let Ok(text) = fs::read_to_string(e?.path()) else {
            continue;
        };
        if let (Some(a), Some(b)) = (
            fdinfo_field(&text, "run_time_ns"),
            fdinfo_field(&text, "run_cnt"),
        ) {
            ns += a.parse::<u64>().unwrap_or(0);
            cnt += b.parse::<u64>().unwrap_or(0);
            progs += 1;
        }
    }
    if progs == 0 {
        bail!("no BPF program fds found in {dir}");
    }
    Ok((ns, cnt))
}

/// The bpftrace drop one-liner (drop-storm's) under the same flood.
fn bpftrace_reference(env: &Env, rec: &mut Recorder, count: u64) -> Result<(u64, u64)> {
    let net = env.net()?;
    let topo = &net.topo;
    let (reason, _) = super::storm::read_reason("NO_SOCKET")?;
    let inode = topo.inode(&topo.ns_b)?;
    let out = env.file("kcost-bpftrace.json");
    let t = tools::start_bpftrace(
        env,
        rec,
        super::storm::bpftrace_script(),
        Output::File(&out),
        "bpftrace",
    )?;
    let pid = t.proc.pid();
    let b0 = prog_totals(pid)?;
    let k0 = topo.udp_noports(&topo.ns_b)?;
    let mut fl = topo.exec(&topo.ns_a, &env.helper);
    fl.args(["udp-flood", &format!("{}:9", topo.ip_b), &count.to_string()]);
    rec.output(&mut fl)?;
    let k1 = topo.udp_noports(&topo.ns_b)?;
    super::storm::wait_lines(
        &out,
        &t.proc,
        reason,
        inode,
        k1.saturating_sub(k0),
        Duration::from_secs(300),
    )?;
    let b1 = prog_totals(pid)?;
    t.stop()?;
    let _ = fs::remove_file(&out);
    Ok((b1.0.saturating_sub(b0.0), b1.1.saturating_sub(b0.1)))
}

fn delta(a: &Snapshot, b: &Snapshot) -> BTreeMap<String, (u64, u64)> {
    b.iter()
        .map(|(k, (ns, n))| {
            let (ns0, n0) = a.get(k).copied().unwrap_or((0, 0));
            (k.clone(), (ns.saturating_sub(ns0), n.saturating_sub(n0)))
        })
        .collect()
}

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    let net = env.net()?;
    let topo = &net.topo;
    let (secs, count) = if env.quick {
        (2u64, 100_000u64)
    } else {
        (5, 500_000)
    };
    let _stats = BpfStats::enable(rec)?;
    let out = env.file("kcost-tracer.ndjson");
    let extra: Vec<&str> = env.tracer_args.iter().map(String::as_str).collect();
    let t = tools::start_tracer(env, rec, &extra, Output::File(&out), "tracer")?;
    let pid = t.proc.pid();
    rec.note(format!(
        "cat /proc/{pid}/fdinfo/*  # run_time_ns, run_cnt per program; tp_name per link"
    ));

    // The floor: an empty program on the two hot tracepoints, attached
    // for the same loads.
    let mut fc = std::process::Command::new(&env.helper);
    fc.args(["floor-probes", "netif_receive_skb", "kfree_skb"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    rec.record_cmd(&fc, &Output::Discard);
    let mut floor = proc::Proc::spawn("floor probes", &mut fc)?;
    let floor_pid = floor.pid();
    // Its first line says the programs are attached (EOF: it failed).
    let mut first = String::new();
    if let Some(out) = floor.stdout() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut first)?;
    }
    if !first.starts_with("attached") {
        bail!("bench_helper floor-probes did not attach (see its error above)");
    }

    let s0 = snapshot(pid)?;
    let f0 = snapshot(floor_pid)?;
    let t0 = std::time::Instant::now();
    let json = env.file("iperf.json");
    let mut c = topo.exec(&topo.ns_a, "iperf3");
    c.args([
        "-c",
        &topo.ip_b,
        "-p",
        &super::IPERF_PORT.to_string(),
        "-t",
        &secs.to_string(),
        "-J",
    ])
    .stdin(std::process::Stdio::null())
    .stdout(fs::File::create(&json)?)
    .stderr(std::process::Stdio::null());
    rec.record_cmd(&c, &Output::File(&json));
    let mut p = proc::Proc::spawn("iperf3 client", &mut c)?;
    let exit = p.wait(Duration::from_secs(secs + 60))?;
    let iperf_wall = t0.elapsed().as_secs_f64();
    let s1 = snapshot(pid)?;
    let f1 = snapshot(floor_pid)?;
    let gbps = if exit.success() {
        env.helper(rec, &["iperf3", &json.to_string_lossy()])
            .and_then(|kv| kv.f64("bits_per_second"))
            .map(|b| format!("{:.2} Gbit/s", b / 1e9))
            .unwrap_or_else(|e| format!("unknown ({e:#})"))
    } else {
        format!("unknown (iperf3 {exit})")
    };
    sys::check()?;

    let mut fl = topo.exec(&topo.ns_a, &env.helper);
    fl.args(["udp-flood", &format!("{}:9", topo.ip_b), &count.to_string()]);
    let t1 = std::time::Instant::now();
    rec.output(&mut fl)?;
    let flood_wall = t1.elapsed().as_secs_f64();
    proc::wait_quiescent(
        &out,
        &t.proc,
        Duration::from_secs(1),
        Duration::from_secs(300),
    )?;
    let s2 = snapshot(pid)?;
    let f2 = snapshot(floor_pid)?;
    floor.kill();
    t.stop()?;
    let _ = fs::remove_file(&out);

    let reference = if env.bpftrace.is_some() {
        match bpftrace_reference(env, rec, count) {
            Ok(r) => Ok(r),
            Err(e) if sys::interrupted() => return Err(e),
            Err(e) => Err(format!("{e:#}")),
        }
    } else {
        Err("bpftrace is not installed".to_owned())
    };

    let load1 = delta(&s0, &s1);
    let load2 = delta(&s1, &s2);
    let (floor1, floor2) = (delta(&f0, &f1), delta(&f1, &f2));
    let mut d = String::new();
    let flags = if env.tracer_args.is_empty() {
        String::new()
    } else {
        format!(" (`tracer run {}`)", env.tracer_args.join(" "))
    };
    let _ = writeln!(
        d,
        "`kernel.bpf_stats_enabled=1` for the duration (restored afterwards). tracer attached \
         with all probes{flags}; load 1: one {secs} s iperf3 run A → B ({gbps} with stats on); load 2: \
         {count} UDP datagrams A → closed port in B (flood took {flood_wall:.2} s). Then, as a \
         reference, drop-storm's bpftrace one-liner (a classic tracepoint program printing one line \
         per drop through the perf buffer) under another flood of the same size. Counters are \
         per program, read from /proc/<pid>/fdinfo before and after each load. run_time_ns covers \
         the program body only (not the tracepoint's own dispatch), and bpf_stats itself adds two \
         clock reads per run: the *floor* rows are an empty raw-tracepoint program \
         (`r0 = 0; exit`, bench_helper floor-probes) attached to the same tracepoints for the \
         same loads, what any program there costs on this machine.\n"
    );
    let _ = writeln!(
        d,
        "| probe | iperf3: hits | iperf3: ns/hit | flood: hits | flood: ns/hit |\n|---|---|---|---|---|"
    );
    let cell = |m: &BTreeMap<String, (u64, u64)>, k: &str| -> (String, String) {
        match m.get(k) {
            Some(&(ns, n)) if n > 0 => (n.to_string(), format!("{:.0}", ns as f64 / n as f64)),
            Some(_) => ("0".into(), "–".into()),
            None => ("?".into(), "?".into()),
        }
    };
    let mut worst: Option<(String, f64, u64)> = None;
    for k in load1.keys() {
        let (h1, c1) = cell(&load1, k);
        let (h2, c2) = cell(&load2, k);
        let _ = writeln!(d, "| {k} | {h1} | {c1} | {h2} | {c2} |");
        if let Some(&(ns, n)) = load1.get(k) {
            if worst.as_ref().is_none_or(|w| ns as f64 > w.1) {
                worst = Some((k.clone(), ns as f64, n));
            }
        }
    }
    for k in ["netif_receive_skb", "kfree_skb"] {
        let (h1, c1) = cell(&floor1, k);
        let (h2, c2) = cell(&floor2, k);
        let _ = writeln!(
            d,
            "| *{k}: empty program (floor)* | {h1} | {c1} | {h2} | {c2} |"
        );
    }
    match &reference {
        Ok((ns, n)) if *n > 0 => {
            let _ = writeln!(
                d,
                "| *bpftrace drop one-liner (reference)* | | | {n} | {:.0} |",
                *ns as f64 / *n as f64
            );
        }
        Ok(_) => sec.note("the bpftrace reference program did not run during its flood"),
        Err(why) => sec.note(format!("bpftrace reference not measured: {why}")),
    }
    let total = |m: &BTreeMap<String, (u64, u64)>| m.values().map(|v| v.0).sum::<u64>() as f64;
    let (tot1, tot2) = (total(&load1), total(&load2));
    let _ = writeln!(
        d,
        "\nTotal time in tracer's programs: {:.1} ms during the iperf3 run ({:.2} % of {:.1} s × {} cores), \
         {:.1} ms during the flood.",
        tot1 / 1e6,
        tot1 / 1e9 / (iperf_wall * num_cpus()) * 100.0,
        iperf_wall,
        num_cpus(),
        tot2 / 1e6
    );
    env.iperf_bpf_share
        .set(Some(tot1 / 1e9 / (iperf_wall * num_cpus())));
    sec.figure(
        "time in tracer's programs during the iperf3 run (all probes)",
        format!(
            "{:.1} ms = {:.2} % of the machine's CPU time",
            tot1 / 1e6,
            tot1 / 1e9 / (iperf_wall * num_cpus()) * 100.0
        ),
        "",
    );
    sec.figure(
        "time in tracer's programs per datagram of the flood (all probes)",
        format!("{:.0} ns", tot2 / count as f64),
        "",
    );
    for (probe, load, fl) in [
        ("netif_receive_skb", &load1, &floor1),
        ("kfree_skb", &load2, &floor2),
    ] {
        let (hits, ns) = cell(load, probe);
        let (_, floor_ns) = cell(fl, probe);
        sec.figure(
            format!(
                "{probe} ({}): ns per hit, hits",
                if probe == "kfree_skb" {
                    "flood"
                } else {
                    "iperf3"
                }
            ),
            format!("{ns} ns × {hits} (empty program: {floor_ns} ns)"),
            "",
        );
    }
    if let Some((probe, ns, n)) = worst {
        sec.figure(
            "costliest probe under iperf3 (total kernel time)",
            format!("{probe}: {:.1} ms over {n} hits", ns / 1e6),
            "",
        );
    }
    if let Ok((ns, n)) = reference.as_ref().map(|&(ns, n)| (ns, n.max(1))) {
        sec.figure(
            "reference: drop-storm's bpftrace one-liner on kfree_skb, same flood",
            format!("{:.0} ns × {n}", ns as f64 / n as f64),
            "",
        );
    }
    sec.details = d;
    Ok(())
}

fn num_cpus() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fdinfo_fields() {
        let prog = "pos:\t0\nprog_type:\t17\nprog_id:\t573\nrun_time_ns:\t1234\nrun_cnt:\t10\n";
        let link =
            "link_type:\traw_tracepoint\nlink_id:\t386\nprog_id:\t573\ntp_name:\tkfree_skb\n";
        assert_eq!(fdinfo_field(prog, "run_time_ns").as_deref(), Some("1234"));
        assert_eq!(fdinfo_field(link, "tp_name").as_deref(), Some("kfree_skb"));
        assert_eq!(fdinfo_field(prog, "tp_name"), None);
    }
}
