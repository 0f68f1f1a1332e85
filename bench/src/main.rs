//! `tracer-bench`: measurements of the release tracer on real network
//! namespaces, written to BENCHMARKS.md. Run by `cargo xtask bench`, which
//! first runs setup with the bench packages (iperf3, bpftrace, tcpdump,
//! linux-perf when available), builds target/release/tracer and this crate
//! (with `bench_helper`, its small measuring tool), then runs this binary.
//!
//! One run builds one topology (namespaces A and B on a bridge living in a
//! third namespace), runs every selected benchmark on it, and removes it,
//! also on error and on Ctrl-C (the signal only sets a flag: the normal
//! `Drop` path cleans up). Nothing here asserts on timings: a benchmark that
//! cannot run is reported as "not measured: <reason>" and the others go on.
//!
//! The benchmarks:
//! - `startup`: launch → last `probe_status` line.
//! - `datapath`: iperf3 TCP throughput A → B, bare vs tracer vs bpftrace
//!   (runs interleaved, every traced run between two baseline runs).
//! - `drop-storm`: an exact-count UDP flood to a closed port in B; tracer's
//!   accounting against the kernel's own UdpNoPorts counter, and CPU cost
//!   per million drops of tracer vs a bpftrace one-liner.
//! - `kernel-cost`: per-probe run_time_ns / run_cnt (bpf_stats) under the
//!   iperf3 load and the flood.
//! - `pipeline`: `tracer replay` of a synthetic 10M-event capture on one core.
//! - `record`: tracer's CPU per million drop-storm events with and without
//!   `--record` (alternating runs), ring-buffer loss either way, capture size
//!   per event, and that each capture replays to the live output.
//!
//! A full run writes BENCHMARKS.md; `--quick` or `--only` write
//! target/bench/BENCHMARKS.md (or `--output FILE`). Scratch files go to
//! target/bench/run-<pid>/ and are removed at the end unless
//! XTASK_BENCH_KEEP is set.

// xtask's command runner, one file for both (`say`/`warn` print this crate's name).
#[allow(dead_code)]
#[path = "../../xtask/src/cmd.rs"]
mod cmd;
mod datapath;
mod html;
mod kcost;
mod noise;
mod pipeline;
mod proc;
mod record;
mod report;
mod startup;
mod storm;
mod sys;
mod tools;
mod topo;

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;

use crate::cmd::{say, warn};

/// The benchmarks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
#[value(rename_all = "kebab-case")]
pub enum Name {
    /// Launch to all probes attached.
    Startup,
    /// iperf3 throughput with and without tracer / bpftrace attached.
    Datapath,
    /// UDP flood to a closed port: accounting and CPU per million drops.
    DropStorm,
    /// Per-probe kernel cost from bpf_stats.
    KernelCost,
    /// `tracer replay` of a synthetic capture.
    Pipeline,
    /// What `tracer run --record` costs the live path under a drop storm.
    Record,
    /// `tracer report` of a synthetic capture: time and file size.
    Report,
}

impl Name {
    pub const ALL: [Name; 7] = [
        Name::Startup,
        Name::Datapath,
        Name::DropStorm,
        Name::KernelCost,
        Name::Pipeline,
        Name::Record,
        Name::Report,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Name::Startup => "startup",
            Name::Datapath => "datapath",
            Name::DropStorm => "drop-storm",
            Name::KernelCost => "kernel-cost",
            Name::Pipeline => "pipeline",
            Name::Record => "record",
            Name::Report => "report",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Name::Startup => "Start-up",
            Name::Datapath => "Datapath overhead",
            Name::DropStorm => "Drop storm",
            Name::KernelCost => "Kernel cost per event",
            Name::Pipeline => "Pipeline (replay)",
            Name::Record => "Recording cost",
            Name::Report => "HTML report",
        }
    }

    fn needs_net(self) -> bool {
        // startup needs no traffic; pipeline replays `tracer synth-capture` output.
        !matches!(self, Name::Startup | Name::Pipeline | Name::Report)
    }

    fn needs_iperf(self) -> bool {
        matches!(self, Name::Datapath | Name::KernelCost)
    }
}

/// Benchmarks of the release tracer, written to BENCHMARKS.md (root).
///
/// Usually run by `cargo xtask bench`, which installs the tools under test,
/// builds target/release/tracer and this crate, and passes their paths.
#[derive(Parser)]
#[command(name = "tracer-bench")]
struct Opts {
    /// The workspace root (BENCHMARKS.md, and the revision the report names).
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// cargo's target directory (scratch files and partial reports go to
    /// its bench/ directory).
    #[arg(long, value_name = "DIR")]
    target_dir: PathBuf,
    /// The release tracer binary to measure.
    #[arg(long, value_name = "FILE")]
    tracer: PathBuf,
    /// Fewer, shorter runs (a smoke test). Writes target/bench/BENCHMARKS.md
    /// unless --output is given.
    #[arg(long)]
    quick: bool,
    /// Run only these benchmarks (comma separated or repeated). Writes
    /// target/bench/BENCHMARKS.md unless --output is given.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "NAME")]
    only: Vec<Name>,
    /// Where to write the report (default: BENCHMARKS.md for a full run).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// An extra `tracer run` argument for kernel-cost (repeatable), e.g.
    /// `--tracer-arg=--snaplen=0` to compare the cost without packet snapshots.
    #[arg(long = "tracer-arg", value_name = "ARG", allow_hyphen_values = true)]
    tracer_args: Vec<String>,
}

/// Where the workspace and cargo's output are.
pub struct Workspace {
    pub root: PathBuf,
    pub target: PathBuf,
}

/// How a benchmark ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Measured,
    NotMeasured(String),
    /// Waiting for a piece of the tracer that does not exist yet.
    Pending(String),
}

/// One row of the summary table.
#[derive(Clone, Debug)]
pub struct Figure {
    pub what: String,
    pub value: String,
    pub goal: String,
}

/// A benchmark's part of BENCHMARKS.md.
pub struct Section {
    pub name: Name,
    pub outcome: Outcome,
    pub figures: Vec<Figure>,
    /// Markdown: method, tables.
    pub details: String,
    pub commands: Vec<String>,
    pub notes: Vec<String>,
    pub noise: String,
    pub noisy: bool,
    pub seconds: f64,
}

impl Section {
    fn new(name: Name) -> Self {
        Self {
            name,
            outcome: Outcome::Measured,
            figures: Vec::new(),
            details: String::new(),
            commands: Vec::new(),
            notes: Vec::new(),
            noise: String::new(),
            noisy: false,
            seconds: 0.0,
        }
    }

    pub fn figure(
        &mut self,
        what: impl Into<String>,
        value: impl Into<String>,
        goal: impl Into<String>,
    ) {
        self.figures.push(Figure {
            what: what.into(),
            value: value.into(),
            goal: goal.into(),
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

/// Runs commands (printed) and keeps their command lines, relative to the
/// workspace root, for the report.
pub struct Recorder {
    root: String,
    pub commands: Vec<String>,
}

impl Recorder {
    fn new(ws: &Workspace) -> Self {
        Self {
            root: format!("{}/", ws.root.display()),
            commands: Vec::new(),
        }
    }

    /// Adds a command line (once).
    pub fn note(&mut self, line: impl Into<String>) {
        let line = line.into().replace(&self.root, "");
        if !self.commands.contains(&line) {
            self.commands.push(line);
        }
    }

    pub fn record_cmd(&mut self, cmd: &Command, out: &tools::Output<'_>) {
        let mut line = cmd::display(cmd);
        match out {
            tools::Output::Discard => {
                line.push_str("  # stdout read and discarded by tracer-bench")
            }
            tools::Output::File(p) if !line.contains(&*p.to_string_lossy()) => {
                line.push_str(&format!(" > {}", p.display()));
            }
            tools::Output::File(_) => {}
        }
        self.note(line);
    }

    /// Runs a command to completion (printed), capturing its output; fails
    /// with its stderr when it does not exit with 0. Returns stdout.
    pub fn output(&mut self, cmd: &mut Command) -> Result<String> {
        self.note(cmd::display(cmd));
        let out = cmd::run_captured(cmd)?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                cmd::display(cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn run_quiet(&mut self, cmd: &mut Command) -> Result<()> {
        self.output(cmd).map(drop)
    }
}

/// `key=value` lines (bench_helper's output).
pub struct Kv(HashMap<String, String>);

impl Kv {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("bench_helper printed no number for {key}"))
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("bench_helper printed no count for {key}"))
    }
}

/// The topology and the iperf3 server in B. Fields drop in order: the
/// server goes before its namespace.
pub struct Net {
    iperf: Option<proc::Proc>,
    pub topo: topo::Topo,
}

pub const IPERF_PORT: u16 = 5201;

impl Net {
    fn new(env_helper: &Path, rec: &mut Recorder, with_iperf: bool) -> Result<Self> {
        let topo = topo::Topo::new(rec)?;
        let mut net = Self { iperf: None, topo };
        // Resolve ARP and teach the bridge both MACs before anything is measured.
        let mut warm = net.topo.exec(&net.topo.ns_a, env_helper);
        warm.args(["udp-flood", &format!("{}:9", net.topo.ip_b), "3"]);
        rec.run_quiet(&mut warm)?;
        if with_iperf {
            let mut server = net.topo.exec(&net.topo.ns_b, "iperf3");
            server
                .args(["-s", "-p", &IPERF_PORT.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            rec.note(format!("{} &", cmd::display(&server)));
            net.iperf = Some(proc::Proc::spawn("iperf3 server", &mut server)?);
            let end = Instant::now() + Duration::from_secs(15);
            while !net.topo.tcp_listening(&net.topo.ns_b, IPERF_PORT) {
                if let Some(p) = net.iperf.as_mut() {
                    p.ensure_running(None)?;
                }
                if Instant::now() > end {
                    bail!(
                        "the iperf3 server in {} is not listening after 15 s",
                        net.topo.ns_b
                    );
                }
                sys::sleep(Duration::from_millis(50))?;
            }
        }
        Ok(net)
    }
}

/// What the benchmarks share.
pub struct Env {
    pub quick: bool,
    pub tracer: PathBuf,
    pub helper: PathBuf,
    pub bpftrace: Option<PathBuf>,
    /// Probes `tracer check` lists: how many probe_status lines to wait for.
    pub probes: usize,
    /// Scratch files of this run (removed at the end).
    pub dir: PathBuf,
    /// `--tracer-arg`: extra `tracer run` arguments (kernel-cost).
    pub tracer_args: Vec<String>,
    net: std::result::Result<Option<Net>, String>,
    /// kernel-cost's share of the machine's CPU time spent in tracer's
    /// programs during iperf3 (a noise-free bound for datapath's ratio).
    pub iperf_bpf_share: std::cell::Cell<Option<f64>>,
}

impl Env {
    pub fn net(&self) -> Result<&Net> {
        match &self.net {
            Ok(Some(net)) => Ok(net),
            Ok(None) => bail!("no topology was built for this run"),
            Err(e) => bail!("the namespace topology could not be built: {e}"),
        }
    }

    /// A path in the scratch directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs bench_helper (in the host namespace) and parses its output.
    pub fn helper(&self, rec: &mut Recorder, args: &[&str]) -> Result<Kv> {
        let mut c = Command::new(&self.helper);
        c.args(args);
        Ok(Kv::parse(&rec.output(&mut c)?))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::env::var_os("XTASK_BENCH_KEEP").is_some() {
            say(format!("keeping scratch files in {}", self.dir.display()));
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The number of probes `tracer check` lists ("N of M probes can attach");
/// when it says nothing, the probe table of the tracer library this harness
/// was built with.
fn count_probes(tracer: &Path) -> usize {
    let out = cmd::probe(Command::new(tracer).arg("check"));
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_suffix("probes can attach")?;
            rest.split_whitespace().last()?.parse().ok()
        })
        .unwrap_or(tracer::probes::all().count())
}

/// `bench_helper`, built beside this binary (same package, same profile).
fn locate_helper() -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this executable's path")?;
    let bin = me.with_file_name("bench_helper");
    if !bin.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p tracer-bench`",
            bin.display()
        );
    }
    Ok(bin)
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    match run(opts) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tracer-bench: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(opts: Opts) -> Result<()> {
    if !sys::is_root() {
        bail!(
            "the benchmarks load eBPF programs and create network namespaces: \
             run `sudo -E cargo xtask bench`"
        );
    }
    sys::install_signal_handlers();
    let ws = &Workspace {
        root: opts.root.clone(),
        target: opts.target_dir.clone(),
    };
    let run_started = Instant::now();
    let date = report::now_utc();
    let machine = report::Machine::read(ws);
    let tracer = opts.tracer.clone();
    if !tracer.is_file() {
        bail!(
            "{} is not a tracer binary: run `cargo xtask bench`",
            tracer.display()
        );
    }
    let helper = locate_helper()?;
    sys::check()?;

    let names: Vec<Name> = if opts.only.is_empty() {
        Name::ALL.to_vec()
    } else {
        let mut v = opts.only.clone();
        v.sort();
        v.dedup();
        v
    };
    let full = !opts.quick && opts.only.is_empty();
    let report_path = match &opts.output {
        Some(p) => p.clone(),
        None if full => ws.root.join("BENCHMARKS.md"),
        None => ws.target.join("bench").join("BENCHMARKS.md"),
    };
    let dir = ws
        .target
        .join("bench")
        .join(format!("run-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let noise = noise::Noise::start();
    let mut setup_rec = Recorder::new(ws);
    let needs_net = names.iter().any(|n| n.needs_net());
    let needs_iperf = names.iter().any(|n| n.needs_iperf());
    let net = if needs_net {
        say("building the topology: namespaces A and B on a bridge in a third namespace");
        match Net::new(&helper, &mut setup_rec, needs_iperf) {
            Ok(net) => Ok(Some(net)),
            Err(e) if sys::interrupted() => return Err(e),
            Err(e) => {
                warn(format!("cannot build the topology: {e:#}"));
                Err(format!("{e:#}"))
            }
        }
    } else {
        Ok(None)
    };
    let env = Env {
        quick: opts.quick,
        probes: count_probes(&tracer),
        tracer,
        helper,
        bpftrace: cmd::which("bpftrace"),
        dir,
        tracer_args: opts.tracer_args.clone(),
        net,
        iperf_bpf_share: std::cell::Cell::new(None),
    };

    let mut sections = Vec::new();
    for name in names {
        sys::check()?;
        say(format!("benchmark {}: {}", name.slug(), name.title()));
        let mut sec = Section::new(name);
        let mut rec = Recorder::new(ws);
        let t0 = Instant::now();
        let result = match name {
            Name::Startup => startup::run(&env, &mut rec, &mut sec),
            Name::Datapath => datapath::run(&env, &mut rec, &mut sec),
            Name::DropStorm => storm::run(&env, &mut rec, &mut sec),
            Name::KernelCost => kcost::run(&env, &mut rec, &mut sec),
            Name::Pipeline => pipeline::run(&env, &mut rec, &mut sec),
            Name::Record => record::run(&env, &mut rec, &mut sec),
            Name::Report => html::run(&env, &mut rec, &mut sec),
        };
        if let Err(e) = result {
            if sys::interrupted() || e.is::<sys::Interrupted>() {
                return Err(e);
            }
            warn(format!("{}: not measured: {e:#}", name.slug()));
            sec.outcome = Outcome::NotMeasured(format!("{e:#}"));
        }
        let t1 = Instant::now();
        sec.seconds = (t1 - t0).as_secs_f64();
        sec.noise = noise.describe(t0, t1);
        sec.noisy = noise.mean(t0, t1) >= 0.1;
        sec.commands = rec.commands;
        sections.push(sec);
    }
    if let (Some(share), Some(dp)) = (
        env.iperf_bpf_share.get(),
        sections
            .iter_mut()
            .find(|s| s.name == Name::Datapath && matches!(s.outcome, Outcome::Measured)),
    ) {
        dp.note(format!(
            "the kernel's own accounting (kernel-cost below) puts tracer's programs at {:.2} % of \
             the machine's CPU time during an iperf3 run; the datapath is CPU-bound here, so that \
             is the throughput tracer can cost (ratio ≈ {:.3}). Ratios from runs whose baselines \
             spread as much as these cannot resolve an effect that small.",
            share * 100.0,
            1.0 - share
        ));
    }
    let setup_commands = setup_rec.commands;
    drop(env);
    sys::check()?;

    let doc = report::render(&report::Report {
        date,
        machine,
        quick: opts.quick,
        partial: !opts.only.is_empty(),
        setup_commands,
        sections: &sections,
        total_s: run_started.elapsed().as_secs_f64(),
    });
    if let Some(parent) = report_path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&report_path, doc)
        .with_context(|| format!("cannot write {}", report_path.display()))?;
    say(format!("wrote {}", report_path.display()));
    for s in &sections {
        match &s.outcome {
            Outcome::Measured => {
                for f in &s.figures {
                    eprintln!("  {}: {}: {}", s.name.slug(), f.what, f.value);
                }
            }
            Outcome::NotMeasured(why) => eprintln!("  {}: not measured: {why}", s.name.slug()),
            Outcome::Pending(why) => eprintln!("  {}: not measured yet: {why}", s.name.slug()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn parses_helper_output() {
        let kv = Kv::parse("sent=500000\nseconds=1.25\nlast_error=No buffer space available\n");
        assert_eq!(kv.u64("sent").unwrap(), 500000);
        assert_eq!(kv.f64("seconds").unwrap(), 1.25);
        assert!(kv.u64("missing").is_err());
    }
}
