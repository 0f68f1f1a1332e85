//! Drop storm: an exact number of UDP datagrams from A to a closed port in B.
//! The kernel counts each one it drops for want of a socket in B's
//! `Udp: NoPorts` (/proc/net/snmp in B): that is the ground truth. tracer must
//! account for every one of them, as printed `skb_drop` lines, as
//! `drop_summary` counts (rate-limited drops), or as records the ring buffer
//! could not hold (`loss_report` lost_total). Cost: CPU seconds of the
//! user-space process per million drops, tracer vs a bpftrace one-liner.

use std::{fmt::Write as _, fs, path::Path, time::Duration};

use anyhow::{anyhow, Result};
use tracer::kernel::tracefs;

use super::{
    median,
    proc::{self, CLK_TCK},
    sys,
    tools::{self, Output},
    Env, Net, Recorder, Section,
};

/// The kfree_skb tracepoint's format file, under tracefs or debugfs.
fn format_files() -> [String; 2] {
    [tracefs::TRACEFS, tracefs::DEBUGFS_TRACING]
        .map(|root| format!("{root}/events/skb/kfree_skb/format"))
}
/// The closed port in B.
const PORT: u16 = 9;

/// The value of `SKB_DROP_REASON_<name>` from the tracepoint's print format
/// (`__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, ...)`),
/// read with tracer's own parser.
pub fn drop_reason_value(format: &str, name: &str) -> Option<u32> {
    tracefs::print_symbolic(format, "reason")
        .into_iter()
        .find(|(_, n)| n == name)
        .and_then(|(v, _)| u32::try_from(v).ok())
}

/// (value of the drop reason `name`, the format file it was read from).
pub(super) fn read_reason(name: &str) -> Result<(u32, String)> {
    let files = format_files();
    for f in &files {
        if let Ok(text) = fs::read_to_string(f) {
            return drop_reason_value(&text, name)
                .map(|v| (v, f.clone()))
                .ok_or_else(|| anyhow!("{f} does not list the drop reason {name}"));
        }
    }
    Err(anyhow!(
        "cannot read the kfree_skb format file ({}): is tracefs mounted?",
        files.join(" or ")
    ))
}

struct Flood {
    sent: u64,
    send_s: f64,
    /// UdpNoPorts delta in B.
    kernel: u64,
}

fn flood(env: &Env, rec: &mut Recorder, net: &Net, count: u64) -> Result<Flood> {
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
    let kv = super::Kv::parse(&rec.output(&mut c)?);
    // Softirq processing is synchronous on veth, but let stragglers land.
    sys::sleep(Duration::from_millis(200))?;
    let k1 = topo.udp_noports(&topo.ns_b)?;
    Ok(Flood {
        sent: kv.u64("sent")?,
        send_s: kv.f64("seconds")?,
        kernel: k1.saturating_sub(k0),
    })
}

struct Measured {
    flood: Flood,
    /// Drops the tool accounted for (tracer: lines + summaries + lost;
    /// bpftrace: matching lines).
    accounted: u64,
    /// Printed individually.
    lines: u64,
    summarised: u64,
    lost: u64,
    cpu_window_s: f64,
    cpu_total_s: f64,
    drain_s: f64,
    maxrss_kib: u64,
    out_bytes: u64,
}

impl Measured {
    fn fraction(&self) -> f64 {
        self.accounted as f64 / self.flood.kernel.max(1) as f64
    }

    fn cpu_per_million(&self) -> f64 {
        self.cpu_window_s / (self.flood.kernel.max(1) as f64 / 1e6)
    }
}

/// How to tell that a tool has handled the whole flood.
#[derive(Clone, Copy)]
enum Drain {
    /// Its output file and CPU time stopped moving for a second (tracer:
    /// its output is rate-limited, so unrelated drops elsewhere on the
    /// machine barely move it).
    Quiet,
    /// bpftrace prints every drop of the machine, and other work keeps
    /// dropping packets: count its lines for B's NO_SOCKET drops (plus its
    /// lost events) until they reach the kernel's count.
    Lines { reason: u32, inode: u64 },
}

/// Runs the flood while `tool` is attached and writing to `out`.
fn measure(
    env: &Env,
    rec: &mut Recorder,
    net: &Net,
    count: u64,
    tool: tools::Running,
    out: &Path,
    drain: Drain,
) -> Result<(Flood, f64, f64, tools::Running)> {
    let cpu0 = tool.proc.cpu_ticks()?;
    let f = flood(env, rec, net, count)?;
    let timeout = Duration::from_secs(300);
    let drain = match drain {
        Drain::Quiet => proc::wait_quiescent(out, &tool.proc, Duration::from_secs(1), timeout)?,
        Drain::Lines { reason, inode } => {
            wait_lines(out, &tool.proc, reason, inode, f.kernel, timeout)?
        }
    };
    let cpu1 = tool.proc.cpu_ticks()?;
    Ok((f, (cpu1 - cpu0) as f64 / CLK_TCK, drain.as_secs_f64(), tool))
}

fn storm_tracer(
    env: &Env,
    rec: &mut Recorder,
    net: &Net,
    count: u64,
    inode_b: u64,
) -> Result<Measured> {
    let out = env.file("storm-tracer.ndjson");
    let t = tools::start_tracer(env, rec, &[], Output::File(&out), "tracer")?;
    let (f, cpu_window_s, drain_s, t) = measure(env, rec, net, count, t, &out, Drain::Quiet)?;
    let (exit, _) = t.stop()?;
    let out_bytes = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let out_s = out.to_string_lossy().into_owned();
    let kv = env.helper(
        rec,
        &["tracer-drops", &out_s, &inode_b.to_string(), "NO_SOCKET"],
    )?;
    let _ = fs::remove_file(&out);
    let lines = kv.u64("skb_drop_match")?;
    let summarised = kv.u64("summary_count_match")?;
    let lost = kv.u64("lost_total")?;
    Ok(Measured {
        flood: f,
        accounted: lines + summarised + lost,
        lines,
        summarised,
        lost,
        cpu_window_s,
        cpu_total_s: exit.rusage.cpu_s(),
        drain_s,
        maxrss_kib: exit.rusage.maxrss_kib(),
        out_bytes,
    })
}

/// One JSON line per drop: reason, netns inode of the device, location.
pub(super) fn bpftrace_script() -> &'static str {
    r#"tracepoint:skb:kfree_skb { printf("%d %u %p\n", args->reason, ((struct sk_buff *)args->skbaddr)->dev->nd_net.net->ns.inum, args->location); }"#
}

/// The words of a `bpftrace -f json` printf line's data, or the count of a
/// lost_events line.
fn bpftrace_line(line: &str) -> (Option<(u32, u64)>, u64) {
    if line.contains("\"lost_events\"") {
        let n = line
            .split_once("\"events\"")
            .and_then(|(_, rest)| {
                let digits: String = rest
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            })
            .unwrap_or(0);
        return (None, n);
    }
    let Some((_, data)) = line.split_once("\"data\": \"") else {
        return (None, 0);
    };
    let mut words = data.split_whitespace();
    let reason = words.next().and_then(|w| w.parse().ok());
    let inode = words.next().and_then(|w| w.parse().ok());
    (reason.zip(inode), 0)
}

/// Follows bpftrace's output file until it holds `expected` lines for
/// (`reason`, `inode`) plus lost events, or stops moving for a second.
pub(super) fn wait_lines(
    path: &Path,
    proc: &proc::Proc,
    reason: u32,
    inode: u64,
    expected: u64,
    timeout: Duration,
) -> Result<Duration> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let start = std::time::Instant::now();
    let (mut offset, mut pending) = (0u64, Vec::new());
    let (mut seen, mut lost) = (0u64, 0u64);
    let mut last_change = start;
    let mut last_cpu = proc.cpu_ticks().unwrap_or(0);
    loop {
        let mut f = fs::File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        offset += buf.len() as u64;
        pending.extend_from_slice(&buf);
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            for line in String::from_utf8_lossy(&pending[..end]).lines() {
                let (rec, l) = bpftrace_line(line);
                lost += l;
                if rec == Some((reason, inode)) {
                    seen += 1;
                }
            }
            pending.drain(..=end);
        }
        if seen + lost >= expected {
            return Ok(start.elapsed());
        }
        let cpu = proc.cpu_ticks().unwrap_or(last_cpu);
        if !buf.is_empty() || cpu > last_cpu + 1 {
            last_change = std::time::Instant::now();
        }
        last_cpu = cpu;
        if last_change.elapsed() >= Duration::from_secs(1) {
            return Ok(last_change - start);
        }
        if start.elapsed() >= timeout {
            anyhow::bail!(
                "bpftrace kept writing to {} for {timeout:?}",
                path.display()
            );
        }
        sys::sleep(Duration::from_millis(100))?;
    }
}

fn storm_bpftrace(
    env: &Env,
    rec: &mut Recorder,
    net: &Net,
    count: u64,
    reason_raw: u32,
    inode_b: u64,
) -> Result<Measured> {
    let out = env.file("storm-bpftrace.json");
    let t = tools::start_bpftrace(env, rec, bpftrace_script(), Output::File(&out), "bpftrace")?;
    let drain = Drain::Lines {
        reason: reason_raw,
        inode: inode_b,
    };
    let (f, cpu_window_s, drain_s, t) = measure(env, rec, net, count, t, &out, drain)?;
    let (exit, _) = t.stop()?;
    let out_bytes = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let out_s = out.to_string_lossy().into_owned();
    let kv = env.helper(
        rec,
        &[
            "bpftrace-drops",
            &out_s,
            &reason_raw.to_string(),
            &inode_b.to_string(),
        ],
    )?;
    let _ = fs::remove_file(&out);
    let lines = kv.u64("matching")?;
    Ok(Measured {
        flood: f,
        accounted: lines,
        lines,
        summarised: 0,
        lost: kv.u64("lost")?,
        cpu_window_s,
        cpu_total_s: exit.rusage.cpu_s(),
        drain_s,
        maxrss_kib: exit.rusage.maxrss_kib(),
        out_bytes,
    })
}

fn pct(x: f64) -> String {
    format!("{:.3} %", x * 100.0)
}

pub fn run(env: &Env, rec: &mut Recorder, sec: &mut Section) -> Result<()> {
    let net = env.net()?;
    let topo = &net.topo;
    let (reason_raw, format_file) = read_reason("NO_SOCKET")?;
    let (rounds, count) = if env.quick {
        (1, 100_000u64)
    } else {
        (3, 500_000u64)
    };
    let inode_b = topo.inode(&topo.ns_b)?;

    let mut tr = Vec::new();
    let mut bt = Vec::new();
    let mut bt_err = env
        .bpftrace
        .is_none()
        .then(|| "bpftrace is not installed".to_owned());
    for round in 0..rounds {
        sys::check()?;
        crate::cmd::say(format!("drop storm round {}/{rounds}: tracer", round + 1));
        tr.push(storm_tracer(env, rec, net, count, inode_b)?);
        if bt_err.is_none() {
            crate::cmd::say(format!("drop storm round {}/{rounds}: bpftrace", round + 1));
            match storm_bpftrace(env, rec, net, count, reason_raw, inode_b) {
                Ok(m) => bt.push(m),
                Err(e) if sys::interrupted() => return Err(e),
                Err(e) => {
                    crate::cmd::warn(format!("bpftrace drop storm: {e:#}"));
                    bt_err = Some(format!("{e:#}"));
                }
            }
        }
    }

    let mut d = String::new();
    let _ = writeln!(
        d,
        "{count} UDP datagrams (16-byte payload) sent one by one from A to {}:{PORT} in B, where \
         nothing listens, by `bench_helper udp-flood` (an unconnected socket; failed sends are retried \
         and not counted). Ground truth: the delta of B's own `Udp: NoPorts` counter, i.e. the \
         datagrams B's kernel freed with reason NO_SOCKET (value {reason_raw}, read from \
         `{format_file}`). {rounds} round(s), tracer and bpftrace alternating, each with its output \
         in a file. CPU window: the tool's utime+stime (/proc/<pid>/stat, all threads) from just \
         before the flood until its output and CPU time stopped moving for 1 s; total: its whole \
         life (`wait4` rusage, start-up and exit included).\n",
        topo.ip_b
    );
    let _ = writeln!(
        d,
        "tracer: accounted = `skb_drop` lines with `tracer.reason` NO_SOCKET and B's netns inode \
         ({inode_b}) + Σ `tracer.count` of the matching `drop_summary` lines + `tracer.lost_total` of \
         the final `loss_report`. bpftrace: its lines with reason {reason_raw} and B's inode (the \
         one-liner prints every drop of the machine with its device's netns inode, so drops caused \
         by other work on the machine are told apart), plus its lost events.\n"
    );
    let _ = writeln!(
        d,
        "| tool | round | sent | datagrams/s | kernel NoPorts | lines | summarised | lost | accounted | CPU s (window) | CPU s per 1M drops | CPU s (total) | drain s | peak RSS | output |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (name, list) in [("tracer", &tr), ("bpftrace", &bt)] {
        for (i, m) in list.iter().enumerate() {
            let _ = writeln!(
                d,
                "| {name} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} MiB | {:.1} MiB |",
                i + 1,
                m.flood.sent,
                m.flood.sent as f64 / m.flood.send_s,
                m.flood.kernel,
                m.lines,
                m.summarised,
                m.lost,
                pct(m.fraction()),
                m.cpu_window_s,
                m.cpu_per_million(),
                m.cpu_total_s,
                m.drain_s,
                m.maxrss_kib as f64 / 1024.0,
                m.out_bytes as f64 / 1048576.0,
            );
        }
    }
    let _ = writeln!(
        d,
        "\nThe sender's rate is that of the whole path (each datagram crosses both veths, the bridge \
         and B's stack in the sender's own system call), so the probes' kernel cost slows it down. \
         \"lost\" for bpftrace is the sum of its `lost_events` reports (its perf buffer was full)."
    );
    let short: Vec<String> = tr
        .iter()
        .chain(&bt)
        .filter(|m| m.flood.kernel != m.flood.sent)
        .map(|m| format!("{} of {}", m.flood.kernel, m.flood.sent))
        .collect();
    if !short.is_empty() {
        sec.note(format!(
            "B's kernel counted fewer NoPorts drops than datagrams sent in some rounds ({}): the rest \
             were dropped earlier on the way (e.g. a full backlog queue), not by B's UDP layer.",
            short.join(", ")
        ));
    }

    let fr: Vec<f64> = tr.iter().map(Measured::fraction).collect();
    let min_fr = fr.iter().copied().fold(f64::INFINITY, f64::min);
    sec.figure(
        format!(
            "drops accounted by tracer / kernel NoPorts count ({} × {count})",
            tr.len()
        ),
        format!(
            "{} (lowest {}; {})",
            pct(median(&fr).unwrap_or(0.0)),
            pct(min_fr),
            tr.iter()
                .map(|m| format!(
                    "{}+{}+{}={} of {}",
                    m.lines, m.summarised, m.lost, m.accounted, m.flood.kernel
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        "100 %",
    );
    let tcpu =
        median(&tr.iter().map(Measured::cpu_per_million).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    sec.figure(
        "tracer CPU seconds per million drops (user space, window)",
        format!("{tcpu:.2} s"),
        "below bpftrace",
    );
    if let Some(why) = bt_err.as_ref().filter(|_| bt.is_empty()) {
        sec.figure(
            "bpftrace CPU seconds per million drops",
            format!("not measured: {why}"),
            "",
        );
    } else {
        let bcpu = median(&bt.iter().map(Measured::cpu_per_million).collect::<Vec<_>>())
            .unwrap_or(f64::NAN);
        let bfr =
            median(&bt.iter().map(Measured::fraction).collect::<Vec<_>>()).unwrap_or(f64::NAN);
        let blost: u64 = bt.iter().map(|m| m.lost).sum();
        sec.figure(
            "bpftrace one-liner CPU seconds per million drops (window)",
            format!(
                "{bcpu:.2} s; its lines cover {} of B's drops, {blost} lost events reported",
                pct(bfr)
            ),
            "",
        );
        if let Some(why) = &bt_err {
            sec.note(format!("bpftrace failed in a later round: {why}"));
        }
    }
    let _ = writeln!(
        d,
        "\nbpftrace one-liner:\n\n```\nbpftrace -f json -o FILE -e '{}'\n```",
        bpftrace_script()
    );
    sec.details = d;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_reason_values_in_the_print_format() {
        let fmt = r#"print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 4, "SOCKET_CLOSE" }, { 128, "MAX" })"#;
        assert_eq!(drop_reason_value(fmt, "NO_SOCKET"), Some(3));
        assert_eq!(drop_reason_value(fmt, "NOT_SPECIFIED"), Some(2));
        assert_eq!(drop_reason_value(fmt, "SOCKET"), None);
    }

    #[test]
    fn reads_bpftrace_json_lines() {
        assert_eq!(
            bpftrace_line(r#"{"type": "printf", "data": "3 4026532833 0xffffffff82046f4c\n"}"#),
            (Some((3, 4026532833)), 0)
        );
        assert_eq!(
            bpftrace_line(r#"{"type": "lost_events", "data": {"events": 1234}}"#),
            (None, 1234)
        );
        assert_eq!(
            bpftrace_line(r#"{"type": "attached_probes", "data": {"probes": 1}}"#),
            (None, 0)
        );
    }
}
