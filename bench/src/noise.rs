//! What else ran on the machine while we measured: every second, the CPU
//! time of every process that is not tracer-bench or one of its descendants
//! (another engineer's cargo build, test run...), from /proc/<pid>/stat.
//! Kernel threads (ksoftirqd carries part of our own traffic) are left out.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::proc::CLK_TCK;

#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    /// CPU used by other processes in the last interval, in cores (1.0 = one core busy).
    other_cores: f64,
    /// Busiest other programs in that interval (comm → cores).
    top: Vec<(String, f64)>,
}

pub struct Noise {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct ProcInfo {
    ppid: u32,
    comm: String,
    ticks: u64,
}

fn read_procs() -> HashMap<u32, ProcInfo> {
    let mut out = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(
            pid,
            ProcInfo {
                ppid: num(1) as u32,
                comm,
                ticks: num(11) + num(12),
            },
        );
    }
    out
}

/// Descends from `root` (or is it)?
fn ours(pid: u32, root: u32, procs: &HashMap<u32, ProcInfo>) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == root {
            return true;
        }
        match procs.get(&p) {
            Some(info) if info.ppid != 0 => p = info.ppid,
            _ => return false,
        }
    }
    false
}

/// Kernel threads: kthreadd (2) and its children.
fn kernel_thread(pid: u32, procs: &HashMap<u32, ProcInfo>) -> bool {
    pid == 2 || procs.get(&pid).is_some_and(|i| i.ppid == 2)
}

impl Noise {
    pub fn start() -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (samples.clone(), stop.clone());
        let me = std::process::id();
        let thread = std::thread::spawn(move || {
            let mut prev = read_procs();
            let mut prev_at = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = read_procs();
                let at = Instant::now();
                let dt = (at - prev_at).as_secs_f64().max(1e-3);
                let mut by_comm: BTreeMap<String, f64> = BTreeMap::new();
                let mut total = 0.0;
                for (pid, info) in &now {
                    if ours(*pid, me, &now) || kernel_thread(*pid, &now) {
                        continue;
                    }
                    let before = prev.get(pid).map(|p| p.ticks).unwrap_or(0);
                    let d = info.ticks.saturating_sub(before) as f64 / CLK_TCK / dt;
                    if d > 0.0 {
                        total += d;
                        *by_comm.entry(info.comm.clone()).or_default() += d;
                    }
                }
                let mut top: Vec<(String, f64)> = by_comm.into_iter().collect();
                top.sort_by(|a, b| b.1.total_cmp(&a.1));
                top.truncate(3);
                s2.lock().unwrap_or_else(|e| e.into_inner()).push(Sample {
                    at,
                    other_cores: total,
                    top,
                });
                prev = now;
                prev_at = at;
            }
        });
        Self {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// One line about other processes' CPU use between `from` and `to`.
    pub fn describe(&self, from: Instant, to: Instant) -> String {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let window: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .collect();
        if window.is_empty() {
            return "no samples".into();
        }
        let mean = window.iter().map(|s| s.other_cores).sum::<f64>() / window.len() as f64;
        let max = window.iter().map(|s| s.other_cores).fold(0.0, f64::max);
        let mut by_comm: BTreeMap<&str, f64> = BTreeMap::new();
        for s in &window {
            for (c, v) in &s.top {
                *by_comm.entry(c.as_str()).or_default() += v / window.len() as f64;
            }
        }
        let mut top: Vec<(&str, f64)> = by_comm.into_iter().filter(|(_, v)| *v >= 0.01).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(4);
        let top = if top.is_empty() {
            String::new()
        } else {
            format!(
                "; busiest: {}",
                top.iter()
                    .map(|(c, v)| format!("{c} {v:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!("other processes used {mean:.2} cores on average (max {max:.2}){top}")
    }

    /// Mean cores used by others in the window (for a "noisy" flag).
    pub fn mean(&self, from: Instant, to: Instant) -> f64 {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .map(|s| s.other_cores)
            .collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }
}

impl Drop for Noise {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
