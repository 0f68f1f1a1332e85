//! Small measuring tools for `tracer-bench`, kept out of its process: a
//! flood is sent from inside namespace A (`ip netns exec`), large outputs are
//! counted without growing the harness's resident set (whose peak would
//! otherwise be inherited by every process it spawns afterwards, see
//! `rusage`), and the CPU that `write-file` charges is this small process's
//! alone. Every subcommand prints `key=value` lines on stdout.
//!
//! ```text
//! bench_helper udp-flood IP:PORT COUNT [PAYLOAD_BYTES]
//!     Sends exactly COUNT UDP datagrams (unconnected socket, so ICMP port
//!     unreachable replies are not reported back as errors). A send that
//!     fails (ENOBUFS, EAGAIN...) is retried and not counted.
//! bench_helper iperf3 FILE
//!     Receiver throughput of an `iperf3 -J` result.
//! bench_helper tracer-drops FILE NETNS_INODE REASON
//!     Counts a tracer NDJSON output: skb_drop lines of that netns and
//!     reason, tracer.count of the matching drop_summary lines, and
//!     tracer.lost_total of the last loss_report; also `events`, the kernel
//!     events the whole output stands for.
//! bench_helper bpftrace-drops FILE REASON_RAW [NETNS_INODE]
//!     Counts `bpftrace -f json` printf lines whose first word is REASON_RAW
//!     (and whose second word is NETNS_INODE, when given), and bpftrace's own
//!     lost-event reports.
//! bench_helper write-file PATH BYTES
//!     What the kernel charges for taking BYTES of new file data: writes
//!     them to PATH in 1 MiB write() calls (no fsync, like a BufWriter),
//!     deletes the file, then at once writes and deletes a second file of
//!     the same size (which gets the page-cache pages the first one just
//!     freed). Prints the CPU seconds of each pass (`cold_cpu_s`,
//!     `warm_cpu_s`, from /proc/thread-self/schedstat).
//! bench_helper rusage CMD [ARG...]
//!     Runs CMD (stdin and stdout on /dev/null) and prints its exit code,
//!     wall time, CPU time and peak RSS (`exit`, `wall_s`, `cpu_s`,
//!     `maxrss_kib`). The peak RSS a process reports includes what it
//!     inherited across fork and exec, so a command spawned straight from a
//!     large parent (tracer-bench, late in a run) would report the parent's
//!     size: this small process forks it instead.
//! bench_helper floor-probes TRACEPOINT...
//!     Attaches an empty raw-tracepoint program to each TRACEPOINT, prints
//!     `attached ...` and holds them until stdin closes: the floor any
//!     program on those tracepoints costs (kernel-cost reads its
//!     run_time_ns/run_cnt like tracer's).
//! ```

use std::{
    fs::File,
    io::{BufRead, BufReader},
    net::{SocketAddr, UdpSocket},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(err) = run(&args) {
        eprintln!("bench_helper: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["udp-flood", dst, count] => udp_flood(dst, count, "16"),
        ["udp-flood", dst, count, payload] => udp_flood(dst, count, payload),
        ["iperf3", file] => iperf3(file),
        ["tracer-drops", file, netns, reason] => tracer_drops(file, netns, reason),
        ["bpftrace-drops", file, reason_raw] => bpftrace_drops(file, reason_raw, None),
        ["bpftrace-drops", file, reason_raw, netns] => {
            bpftrace_drops(file, reason_raw, Some(netns))
        }
        ["write-file", path, bytes] => write_file(path, bytes),
        ["rusage", cmd @ ..] if !cmd.is_empty() => rusage(cmd),
        ["floor-probes", tps @ ..] if !tps.is_empty() => floor_probes(tps),
        _ => bail!(
            "usage: bench_helper udp-flood IP:PORT COUNT [PAYLOAD] | iperf3 FILE | \
             tracer-drops FILE NETNS_INODE REASON | bpftrace-drops FILE REASON_RAW [NETNS_INODE] | \
             write-file PATH BYTES | rusage CMD [ARG...] | floor-probes TRACEPOINT..."
        ),
    }
}

fn udp_flood(dst: &str, count: &str, payload: &str) -> Result<()> {
    let dst: SocketAddr = dst
        .parse()
        .with_context(|| format!("bad address {dst:?}"))?;
    let count: u64 = count
        .parse()
        .with_context(|| format!("bad count {count:?}"))?;
    let payload: usize = payload
        .parse()
        .with_context(|| format!("bad payload size {payload:?}"))?;
    let bind: SocketAddr = if dst.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let sock = UdpSocket::bind(bind).context("cannot bind a UDP socket")?;
    let buf = vec![0x5au8; payload];
    let start = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut last_error = None;
    while sent < count {
        match sock.send_to(&buf, dst) {
            Ok(_) => sent += 1,
            Err(e) => {
                errors += 1;
                last_error = Some(e.to_string());
                if errors > count.max(1000) * 10 {
                    bail!("giving up after {errors} failed sends ({sent} sent): {e}");
                }
                std::thread::yield_now();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("sent={sent}");
    println!("send_errors={errors}");
    println!("seconds={secs:.6}");
    if let Some(e) = last_error {
        println!("last_error={e}");
    }
    Ok(())
}

fn read_json(file: &str) -> Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
    serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))
}

fn iperf3(file: &str) -> Result<()> {
    let v = read_json(file)?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3 reported: {err}");
    }
    let end = &v["end"];
    let recv = end["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second in the iperf3 result")?;
    println!("bits_per_second={recv}");
    if let Some(sent) = end["sum_sent"]["bits_per_second"].as_f64() {
        println!("sender_bits_per_second={sent}");
    }
    if let Some(r) = end["sum_sent"]["retransmits"].as_u64() {
        println!("retransmits={r}");
    }
    if let Some(cpu) = end["cpu_utilization_percent"]["host_total"].as_f64() {
        println!("client_cpu_percent={cpu}");
    }
    if let Some(cpu) = end["cpu_utilization_percent"]["remote_total"].as_f64() {
        println!("server_cpu_percent={cpu}");
    }
    Ok(())
}

fn lines(file: &str) -> Result<impl Iterator<Item = std::io::Result<String>>> {
    let f = File::open(file).with_context(|| format!("cannot open {file}"))?;
    Ok(BufReader::with_capacity(1 << 20, f).lines())
}

#[derive(Default)]
struct TracerCounts {
    lines: u64,
    not_json: u64,
    probe_status: u64,
    probe_attached: u64,
    skb_drop_total: u64,
    skb_drop_match: u64,
    skb_drop_lines_match: u64,
    summary_lines_match: u64,
    summary_count_match: u64,
    summary_count_total: u64,
    loss_reports: u64,
    lost_sum: u64,
    last_lost_total: u64,
    decode_errors: u64,
    /// Kernel events the output stands for: `event.kind` "event" lines
    /// (weighted by tracer.count) plus every drop_summary count.
    events: u64,
}

fn tracer_drops(file: &str, netns: &str, reason: &str) -> Result<()> {
    let netns: u64 = netns
        .parse()
        .with_context(|| format!("bad inode {netns:?}"))?;
    let mut c = TracerCounts::default();
    for line in lines(file)? {
        let line = line?;
        c.lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            c.not_json += 1;
            continue;
        };
        let t = &v["tracer"];
        let ours =
            t["netns"]["inode"].as_u64() == Some(netns) && t["reason"].as_str() == Some(reason);
        if v["event"]["kind"].as_str() == Some("event") {
            c.events += t["count"].as_u64().unwrap_or(1);
        }
        match v["event"]["action"].as_str().unwrap_or("") {
            "probe_status" => {
                c.probe_status += 1;
                if t["probe"]["status"].as_str() == Some("attached") {
                    c.probe_attached += 1;
                }
            }
            "skb_drop" => {
                // One line stands for one drop unless it says otherwise.
                let n = t["count"].as_u64().unwrap_or(1);
                c.skb_drop_total += n;
                if ours {
                    c.skb_drop_lines_match += 1;
                    c.skb_drop_match += n;
                }
            }
            "drop_summary" => {
                let n = t["count"].as_u64().unwrap_or(0);
                c.summary_count_total += n;
                c.events += n;
                if ours {
                    c.summary_lines_match += 1;
                    c.summary_count_match += n;
                }
            }
            "loss_report" => {
                c.loss_reports += 1;
                c.lost_sum += t["lost"].as_u64().unwrap_or(0);
                c.last_lost_total = t["lost_total"].as_u64().unwrap_or(c.last_lost_total);
            }
            "decode_error" => c.decode_errors += 1,
            _ => {}
        }
    }
    println!("lines={}", c.lines);
    println!("not_json={}", c.not_json);
    println!("probe_status={}", c.probe_status);
    println!("probe_attached={}", c.probe_attached);
    println!("skb_drop_total={}", c.skb_drop_total);
    println!("skb_drop_match={}", c.skb_drop_match);
    println!("skb_drop_lines_match={}", c.skb_drop_lines_match);
    println!("summary_lines_match={}", c.summary_lines_match);
    println!("summary_count_match={}", c.summary_count_match);
    println!("summary_count_total={}", c.summary_count_total);
    println!("loss_reports={}", c.loss_reports);
    println!("lost_sum={}", c.lost_sum);
    println!("lost_total={}", c.last_lost_total);
    println!("decode_errors={}", c.decode_errors);
    println!("events={}", c.events);
    Ok(())
}

fn bpftrace_drops(file: &str, reason_raw: &str, netns: Option<&str>) -> Result<()> {
    let want: i64 = reason_raw
        .parse()
        .with_context(|| format!("bad reason value {reason_raw:?}"))?;
    let netns: Option<u64> = netns
        .map(|n| n.parse().with_context(|| format!("bad inode {n:?}")))
        .transpose()?;
    let (mut lines_n, mut printf, mut matching, mut matching_reason) = (0u64, 0u64, 0u64, 0u64);
    let (mut lost, mut lost_reports) = (0u64, 0u64);
    for line in lines(file)? {
        let line = line?;
        lines_n += 1;
        // Text mode: "Lost 123 events".
        if let Some(rest) = line.trim().strip_prefix("Lost ") {
            if let Some(n) = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
            {
                lost += n;
                lost_reports += 1;
            }
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match v["type"].as_str().unwrap_or("") {
            "printf" => {
                printf += 1;
                let mut words = v["data"].as_str().unwrap_or("").split_whitespace();
                if words.next().and_then(|w| w.parse::<i64>().ok()) == Some(want) {
                    matching_reason += 1;
                    let ns = words.next().and_then(|w| w.parse::<u64>().ok());
                    if netns.is_none() || ns == netns {
                        matching += 1;
                    }
                }
            }
            "lost_events" => {
                lost += v["data"]["events"].as_u64().unwrap_or(0);
                lost_reports += 1;
            }
            _ => {}
        }
    }
    println!("lines={lines_n}");
    println!("printf={printf}");
    println!("matching={matching}");
    println!("matching_reason={matching_reason}");
    println!("lost={lost}");
    println!("lost_reports={lost_reports}");
    Ok(())
}

/// On-CPU nanoseconds of this thread (user + system).
fn thread_cpu_ns() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("cannot read /proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("odd /proc/thread-self/schedstat")
}

fn write_file(path: &str, bytes: &str) -> Result<()> {
    use std::io::Write as _;
    let total: u64 = bytes
        .parse()
        .with_context(|| format!("bad byte count {bytes:?}"))?;
    let chunk = vec![0x5au8; 1 << 20];
    let pass = |name: &str| -> Result<f64> {
        let mut f = File::create(path).with_context(|| format!("cannot create {path}"))?;
        let c0 = thread_cpu_ns()?;
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])
                .with_context(|| format!("cannot write {path}"))?;
            left -= n as u64;
        }
        let c1 = thread_cpu_ns()?;
        drop(f);
        std::fs::remove_file(path).with_context(|| format!("cannot remove {path}"))?;
        let s = (c1 - c0) as f64 / 1e9;
        println!("{name}_cpu_s={s:.6}");
        Ok(s)
    };
    pass("cold")?;
    pass("warm")?;
    println!("bytes={total}");
    Ok(())
}

fn rusage(cmd: &[&str]) -> Result<()> {
    use std::process::{Command, Stdio};
    let t0 = Instant::now();
    let status = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {}", cmd[0]))?;
    let wall = t0.elapsed().as_secs_f64();
    // The one child this process waited for.
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    println!("exit={}", status.code().unwrap_or(-1));
    println!("wall_s={wall:.6}");
    println!("cpu_s={:.6}", secs(ru.ru_utime) + secs(ru.ru_stime));
    println!("maxrss_kib={}", ru.ru_maxrss);
    Ok(())
}

/// Attaches an empty raw-tracepoint program (`r0 = 0; exit`) to each
/// tracepoint and holds them until stdin closes: the floor that any
/// program on those tracepoints costs under bpf_stats (the dispatch of a
/// raw tracepoint program plus the two clock reads of the accounting).
/// The caller reads run_time_ns/run_cnt from this process's fdinfo.
fn floor_probes(tps: &[&str]) -> Result<()> {
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 0; then BPF_JMP | BPF_EXIT.
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut links = Vec::new();
    for tp in tps {
        // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns,
        // license; the rest zero (no log, no name).
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&17u32.to_ne_bytes()); // BPF_PROG_TYPE_RAW_TRACEPOINT
        attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        let prog = bpf(5, &attr).with_context(|| format!("loading the empty program for {tp}"))?; // BPF_PROG_LOAD
        let name = std::ffi::CString::new(*tp).context("tracepoint name")?;
        // BPF_RAW_TRACEPOINT_OPEN: name, prog_fd.
        let mut attr = [0u8; 128];
        attr[0..8].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
        attr[8..12].copy_from_slice(&(prog as u32).to_ne_bytes());
        let link =
            bpf(17, &attr).with_context(|| format!("attaching the empty program to {tp}"))?;
        links.push((prog, link));
    }
    println!("attached {}", tps.join(" "));
    // Hold the programs until the caller closes stdin (or kills us).
    let mut sink = String::new();
    while std::io::stdin()
        .read_line(&mut sink)
        .map(|n| n > 0)
        .unwrap_or(false)
    {
        sink.clear();
    }
    for (prog, link) in links {
        // SAFETY: fds this function opened and owns.
        unsafe {
            libc::close(link);
            libc::close(prog);
        }
    }
    Ok(())
}

/// The bpf(2) system call with a 128-byte attribute block; the new fd.
fn bpf(cmd: libc::c_long, attr: &[u8; 128]) -> Result<i32> {
    // SAFETY: attr is a valid, initialised buffer of the size passed; the
    // pointers inside it point to live data for the duration of the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len() as u32) };
    if fd < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    Ok(fd as i32)
}
