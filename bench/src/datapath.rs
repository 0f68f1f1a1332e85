//! Datapath overhead: iperf3 TCP throughput from A to B across the bridge,
//! with nothing attached (baseline), with `tracer run` (all probes), and with
//! bpftrace on the same tracepoints. Every traced run sits between two
//! baseline runs (B T B b B t B ...) and is compared with their mean, so a
//! slow drift of the machine does not bias the ratio.

use std::{fmt::Write as _, fs::File, process::Stdio, time::Duration};

use anyhow::{bail, Context as _, Result};

use super::{
    median,
    proc::{tail, Proc, CLK_TCK},
    sys,
    tools::{self, Output},
    Env, Net, Recorder, Section, IPERF_PORT,
};

/// The tracepoints tracer attaches to, each printing one line per hit in the
/// bpftrace comparison (fields similar to what tracer reads).
const BPFTRACE_PROBES: [(&str, &str); 10] = [
    (
        "tracepoint:bridge:br_fdb_update",
        r#"{ printf("fdb_update %s %s %d\n", str(args->br_dev), str(args->dev), args->vid); }"#,
    ),
    (
        "tracepoint:bridge:fdb_delete",
        r#"{ printf("fdb_delete %s %s %d\n", str(args->br_dev), str(args->dev), args->vid); }"#,
    ),
    (
        "tracepoint:net:netif_receive_skb",
        r#"{ printf("rx %s %d\n", str(args->name), args->len); }"#,
    ),
    (
        "tracepoint:neigh:neigh_update",
        r#"{ printf("neigh %s %d %d\n", str(args->dev), args->nud_state, args->new_state); }"#,
    ),
    (
        "tracepoint:tcp:tcp_retransmit_skb",
        r#"{ printf("retransmit %d %d %d\n", args->sport, args->dport, args->state); }"#,
    ),
    (
        "tracepoint:tcp:tcp_send_reset",
        r#"{ printf("reset_sent %d\n", args->state); }"#,
    ),
    (
        "tracepoint:tcp:tcp_receive_reset",
        r#"{ printf("reset_received %d %d\n", args->sport, args->dport); }"#,
    ),
    // tracer sends a record for a TCP socket closing from SYN_SENT (2) or
    // changing state with an error set; the predicate does the same.
    (
        "tracepoint:sock:inet_sock_set_state",
        r#"/args->protocol == 6 && (args->oldstate == 2 || ((struct sock *)args->skaddr)->sk_err != 0)/ { printf("tcp_abort %d %d %d\n", args->sport, args->dport, args->newstate); }"#,
    ),
    (
        "tracepoint:icmp:icmp_send",
        r#"{ printf("icmp %d %d %d\n", args->type, args->code, args->dport); }"#,
    ),
    (
        "tracepoint:skb:kfree_skb",
        r#"{ printf("drop %d %p\n", args->reason, args->location); }"#,
    ),
];

/// tracer's netif_receive_skb probe only reports ARP frames; this predicate
/// does the same in bpftrace (skb->protocol is big-endian ETH_P_ARP 0x0806).
const ARP_ONLY: &str = "/((struct sk_buff *)args->skbaddr)->protocol == 0x0608/";

fn script(probes: &[usize], arp_only: bool) -> String {
    let mut s = String::new();
    for &i in probes {
        let (tp, body) = BPFTRACE_PROBES[i];
        if arp_only && tp == "tracepoint:net:netif_receive_skb" {
            let _ = writeln!(s, "{tp} {ARP_ONLY} {body}");
        } else {
            let _ = writeln!(s, "{tp} {body}");
        }
    }
    s
}

enum Tool {
    Baseline,
    Tracer,
    Bpftrace(String),
}

struct Config {
    label: &'static str,
    tool: Tool,
    /// Why it is not (or no longer) measured.
    disabled: Option<String>,
}

struct RunResult {
    config: usize,
    gbps: f64,
    retransmits: Option<u64>,
    /// Lines the tool printed (probe/attach lines included).
    lines: Option<u64>,
    /// CPU seconds of the tool during the iperf3 run.
    tool_cpu: Option<f64>,
}

/// One iperf3 run A → B; (Gbit/s at the receiver, sender retransmits).
fn iperf(env: &Env, rec: &mut Recorder, net: &Net, secs: u64) -> Result<(f64, Option<u64>)> {
    let topo = &net.topo;
    let mut last_err = None;
    for _attempt in 0..2 {
        sys::check()?;
        let json = env.file("iperf.json");
        let err = env.file("iperf.stderr");
        let mut c = topo.exec(&topo.ns_a, "iperf3");
        c.args([
            "-c",
            &topo.ip_b,
            "-p",
            &IPERF_PORT.to_string(),
            "-t",
            &secs.to_string(),
            "-J",
        ])
        .stdin(Stdio::null())
        .stdout(File::create(&json)?)
        .stderr(File::create(&err)?);
        rec.record_cmd(&c, &Output::File(&json));
        let mut p = Proc::spawn("iperf3 client", &mut c)?;
        let exit = p.wait(Duration::from_secs(secs + 60))?;
        let json_s = json.to_string_lossy().into_owned();
        match env.helper(rec, &["iperf3", &json_s]) {
            Ok(kv) if exit.success() => {
                let bps = kv.f64("bits_per_second")?;
                return Ok((bps / 1e9, kv.u64("retransmits").ok()));
            }
            Ok(_) => last_err = Some(format!("iperf3 client ended with {exit}{}", tail(&err))),
            Err(e) => last_err = Some(format!("{e:#}{}", tail(&err))),
        }
        crate::cmd::warn(format!(
            "iperf3 run failed ({}); retrying once",
            last_err.as_deref().unwrap_or("")
        ));
        sys::sleep(Duration::from_secs(1))?;
    }
    bail!("iperf3 failed twice: {}", last_err.unwrap_or_default())
}

fn run_once(
    env: &Env,
    rec: &mut Recorder,
    net: &Net,
    cfg: &Config,
    ci: usize,
    secs: u64,
) -> Result<RunResult> {
    let tool = match &cfg.tool {
        Tool::Baseline => None,
        Tool::Tracer => Some(tools::start_tracer(
            env,
            rec,
            &[],
            Output::Discard,
            "tracer",
        )?),
        Tool::Bpftrace(s) => Some(tools::start_bpftrace(
            env,
            rec,
            s,
            Output::Discard,
            "bpftrace",
        )?),
    };
    let Some(mut tool) = tool else {
        let (gbps, retransmits) = iperf(env, rec, net, secs)?;
        return Ok(RunResult {
            config: ci,
            gbps,
            retransmits,
            lines: None,
            tool_cpu: None,
        });
    };
    let cpu0 = tool.proc.cpu_ticks()?;
    let measured = iperf(env, rec, net, secs);
    let cpu1 = tool.proc.cpu_ticks().unwrap_or(cpu0);
    tool.proc.ensure_running(Some(&tool.stderr))?;
    let (_, lines) = tool.stop()?;
    let (gbps, retransmits) = measured?;
    Ok(RunResult {
        config: ci,
        gbps,
        retransmits,
        lines,
        tool_cpu: Some((cpu1 - cpu0) as f64 / CLK_TCK),
    })
}

/// Starts bpftrace with `probes` and stops it again: does it attach?
fn try_bpftrace(env: &Env, rec: &mut Recorder, probes: &[usize], label: &str) -> Result<()> {
    let t = tools::start_bpftrace(env, rec, &script(probes, false), Output::Discard, label)?;
    t.stop().map(drop)
}

/// Tracepoints bpftrace refused, with its error.
type Dropped = Vec<(String, String)>;

/// The probes bpftrace accepts here, and why the others were dropped.
fn bpftrace_probes(env: &Env, rec: &mut Recorder) -> Result<(Vec<usize>, Dropped)> {
    let all: Vec<usize> = (0..BPFTRACE_PROBES.len()).collect();
    match try_bpftrace(env, rec, &all, "bpftrace") {
        Ok(()) => return Ok((all, Vec::new())),
        Err(e) if sys::interrupted() => return Err(e),
        Err(e) => crate::cmd::warn(format!(
            "bpftrace rejects the 8-probe script ({e:#}); trying each probe alone"
        )),
    }
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for i in all {
        match try_bpftrace(env, rec, &[i], "bpftrace") {
            Ok(()) => kept.push(i),
            Err(e) if sys::interrupted() => return Err(e),
            Err(e) => dropped.push((BPFTRACE_PROBES[i].0.to_owned(), format!("{e:#}"))),
        }
    }
    Ok((kept, dropped))
}

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    let net = env.net()?;
    let (rounds, secs) = if env.quick { (2, 2) } else { (5, 5) };

    let mut configs = vec![
        Config {
            label: "baseline (nothing attached)",
            tool: Tool::Baseline,
            disabled: None,
        },
        Config {
            label: "tracer (all probes)",
            tool: Tool::Tracer,
            disabled: None,
        },
    ];
    let mut dropped = Vec::new();
    if env.bpftrace.is_none() {
        let why = "bpftrace is not installed".to_owned();
        for label in [
            "bpftrace, a line per hit",
            "bpftrace, ARP-only netif_receive_skb",
        ] {
            configs.push(Config {
                label,
                tool: Tool::Baseline,
                disabled: Some(why.clone()),
            });
        }
    } else {
        let (kept, d) = bpftrace_probes(env, rec)?;
        dropped = d;
        let why =
            (kept.is_empty()).then(|| "bpftrace attaches none of the tracepoints here".to_owned());
        configs.push(Config {
            label: "bpftrace, a line per hit",
            tool: Tool::Bpftrace(script(&kept, false)),
            disabled: why.clone(),
        });
        configs.push(Config {
            label: "bpftrace, ARP-only netif_receive_skb",
            tool: Tool::Bpftrace(script(&kept, true)),
            disabled: why,
        });
    }

    // Warm-up (discarded): TCP memory, caches, the bridge's FDB.
    iperf(env, rec, net, secs.min(2))?;
    let mut runs: Vec<RunResult> = Vec::new();
    runs.push(run_once(env, rec, net, &configs[0], 0, secs)?);
    for round in 0..rounds {
        for ci in 1..configs.len() {
            if configs[ci].disabled.is_some() {
                continue;
            }
            sys::check()?;
            crate::cmd::say(format!(
                "datapath round {}/{rounds}: {}",
                round + 1,
                configs[ci].label
            ));
            match run_once(env, rec, net, &configs[ci], ci, secs) {
                Ok(r) => runs.push(r),
                Err(e) if sys::interrupted() => return Err(e),
                Err(e) => {
                    crate::cmd::warn(format!("{}: {e:#}", configs[ci].label));
                    configs[ci].disabled = Some(format!("{e:#}"));
                    continue;
                }
            }
            runs.push(run_once(env, rec, net, &configs[0], 0, secs)?);
        }
    }

    // Each traced run against the mean of the baseline runs around it.
    let paired = |k: usize| -> Option<f64> {
        let before = runs[..k].iter().rev().find(|r| r.config == 0)?;
        let after = runs[k + 1..].iter().find(|r| r.config == 0)?;
        Some(runs[k].gbps / ((before.gbps + after.gbps) / 2.0))
    };
    let base: Vec<f64> = runs
        .iter()
        .filter(|r| r.config == 0)
        .map(|r| r.gbps)
        .collect();
    let base_med = median(&base).context("no baseline run")?;

    let mut d = String::new();
    let _ = writeln!(
        d,
        "iperf3 TCP, one stream, {secs} s per run, A → B through veth → bridge (own namespace) → veth. \
         {rounds} rounds; in each round every traced configuration runs once, and every traced run \
         sits between two baseline runs: its ratio is its throughput over the mean of those two. \
         The tools attach before the run starts (tracer: all {} `probe_status` lines printed; \
         bpftrace: \"Attaching N probes...\") and are stopped after it. Their stdout is read and \
         discarded by tracer-bench. One 2 s warm-up run is not counted.\n",
        env.probes
    );
    let _ = writeln!(
        d,
        "| configuration | runs | median Gbit/s | ratio (median of paired) | paired min–max | ratio of medians | tool CPU s per run | lines per run |\n|---|---|---|---|---|---|---|---|"
    );
    for (ci, cfg) in configs.iter().enumerate() {
        let idxs: Vec<usize> = (0..runs.len()).filter(|&k| runs[k].config == ci).collect();
        let what = match ci {
            0 => String::new(),
            1 => format!("iperf3 throughput ratio, tracer attached (all {} probes)", env.probes),
            2 => "iperf3 throughput ratio, bpftrace on the same tracepoints (a line per hit)".to_owned(),
            _ => "iperf3 throughput ratio, bpftrace with netif_receive_skb filtered to ARP like tracer".to_owned(),
        };
        let goal = match ci {
            1 => "≥ 0.95",
            2 | 3 => "below tracer's",
            _ => "",
        };
        if idxs.is_empty() {
            let why = cfg.disabled.as_deref().unwrap_or("no run");
            let _ = writeln!(d, "| {} | 0 | not measured: {why} | | | | | |", cfg.label);
            sec.figure(what, format!("not measured: {why}"), goal);
            continue;
        }
        let g: Vec<f64> = idxs.iter().map(|&k| runs[k].gbps).collect();
        let med = median(&g).unwrap_or(f64::NAN);
        if ci == 0 {
            let _ = writeln!(
                d,
                "| {} | {} | {med:.2} | 1 | | 1 | | |",
                cfg.label,
                idxs.len()
            );
            continue;
        }
        let ratios: Vec<f64> = idxs.iter().filter_map(|&k| paired(k)).collect();
        let rmed = median(&ratios).unwrap_or(f64::NAN);
        let rmin = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let rmax = ratios.iter().copied().fold(0.0, f64::max);
        let cpu = median(
            &idxs
                .iter()
                .filter_map(|&k| runs[k].tool_cpu)
                .collect::<Vec<_>>(),
        );
        let lines = median(
            &idxs
                .iter()
                .filter_map(|&k| runs[k].lines.map(|l| l as f64))
                .collect::<Vec<_>>(),
        );
        let _ = writeln!(
            d,
            "| {} | {} | {med:.2} | **{rmed:.3}** | {rmin:.3}–{rmax:.3} | {:.3} | {} | {} |",
            cfg.label,
            idxs.len(),
            med / base_med,
            cpu.map(|c| format!("{c:.2}")).unwrap_or_default(),
            lines.map(|l| format!("{l:.0}")).unwrap_or_default(),
        );
        sec.figure(
            what,
            format!("{rmed:.3} ({med:.2} vs {base_med:.2} Gbit/s)"),
            goal,
        );
    }
    sec.figures.insert(
        0,
        super::Figure {
            what: format!(
                "iperf3 TCP A→B, nothing attached (median of {} × {secs} s)",
                base.len()
            ),
            value: format!("{base_med:.2} Gbit/s"),
            goal: String::new(),
        },
    );

    let (bmin, bmax) = (
        base.iter().copied().fold(f64::INFINITY, f64::min),
        base.iter().copied().fold(0.0, f64::max),
    );
    let _ = writeln!(
        d,
        "\nBaseline runs spread from {bmin:.2} to {bmax:.2} Gbit/s ({:+.0} % / {:+.0} % around \
         their median): the run-to-run noise any single ratio carries.",
        (bmin / base_med - 1.0) * 100.0,
        (bmax / base_med - 1.0) * 100.0
    );
    let _ = writeln!(d, "\nAll runs in the order they ran:\n");
    let _ = writeln!(d, "| # | configuration | Gbit/s | ratio to neighbours | retransmits | tool CPU s | tool lines |\n|---|---|---|---|---|---|---|");
    for (k, r) in runs.iter().enumerate() {
        let _ = writeln!(
            d,
            "| {} | {} | {:.2} | {} | {} | {} | {} |",
            k + 1,
            configs[r.config].label,
            r.gbps,
            if r.config == 0 {
                String::new()
            } else {
                paired(k).map(|x| format!("{x:.3}")).unwrap_or_default()
            },
            r.retransmits.map(|x| x.to_string()).unwrap_or_default(),
            r.tool_cpu.map(|x| format!("{x:.2}")).unwrap_or_default(),
            r.lines.map(|x| x.to_string()).unwrap_or_default(),
        );
    }
    if !dropped.is_empty() {
        let list: Vec<String> = dropped
            .iter()
            .map(|(tp, why)| format!("`{tp}` ({why})"))
            .collect();
        sec.note(format!(
            "bpftrace rejected these tracepoints on this kernel, so its scripts leave them out: {}",
            list.join("; ")
        ));
    }
    if let Some(Tool::Bpftrace(s)) = configs.get(2).map(|c| &c.tool) {
        let _ = writeln!(d, "\nbpftrace script (a line per hit):\n\n```\n{}```", s);
    }
    if let Some(Tool::Bpftrace(s)) = configs.get(3).map(|c| &c.tool) {
        let netif: Vec<&str> = s
            .lines()
            .filter(|l| l.contains("netif_receive_skb"))
            .collect();
        let _ = writeln!(
            d,
            "\nThe ARP-only variant differs in one line (tracer's own probe also leaves non-ARP frames after one 2-byte read):\n\n```\n{}\n```",
            netif.join("\n")
        );
    }
    sec.details = d;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bpftrace comparison attaches to the tracepoints tracer attaches
    /// to, no more, no fewer, in tracer's order.
    #[test]
    fn bpftrace_probes_are_tracers() {
        let ours: Vec<String> = tracer::probes::all()
            .map(|p| format!("tracepoint:{}:{}", p.category, p.name))
            .collect();
        let theirs: Vec<&str> = BPFTRACE_PROBES.iter().map(|(tp, _)| *tp).collect();
        assert_eq!(theirs, ours);
    }

    #[test]
    fn arp_only_predicate_on_the_receive_probe_alone() {
        let s = script(&[0, 2], true);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(!lines[0].contains(ARP_ONLY));
        assert!(lines[1].starts_with("tracepoint:net:netif_receive_skb /"));
    }
}
