//! BENCHMARKS.md: the machine, the date, the command, then per benchmark its
//! figures, how they were obtained, and the exact inner commands.

use std::{fmt::Write as _, fs, process::Command};

use super::{Name, Outcome, Section};
use crate::{cmd, Workspace};

pub struct Machine {
    pub cores: usize,
    pub model: String,
    pub kernel: String,
    pub mem_gib: f64,
    pub tracer_rev: String,
    pub tools: Vec<String>,
}

fn first_line(cmd: &mut Command) -> Option<String> {
    let out = cmd::probe(cmd).ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

impl Machine {
    pub fn read(ws: &Workspace) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let mem_gib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map(|kib| kib / 1048576.0)
            .unwrap_or(0.0);
        let rev = first_line(Command::new("git").arg("-C").arg(&ws.root).args([
            "rev-parse",
            "--short",
            "HEAD",
        ]))
        .unwrap_or_else(|| "unknown".into());
        let dirty = cmd::probe(Command::new("git").arg("-C").arg(&ws.root).args([
            "status",
            "--porcelain",
            "--untracked-files=no",
        ]))
        .is_ok_and(|o| !o.stdout.is_empty());
        let tracer_rev = if dirty {
            format!("{rev} with uncommitted changes")
        } else {
            rev
        };
        let mut tools = Vec::new();
        for (name, args) in [("iperf3", ["--version"]), ("bpftrace", ["--version"])] {
            if let Some(v) = first_line(Command::new(name).args(args)) {
                tools.push(v);
            }
        }
        Self {
            cores,
            model,
            kernel,
            mem_gib,
            tracer_rev,
            tools,
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn now_utc() -> String {
    first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M:%S UTC"]))
        .unwrap_or_else(|| "unknown".into())
}

pub struct Report<'a> {
    pub date: String,
    pub machine: Machine,
    pub quick: bool,
    pub partial: bool,
    pub setup_commands: Vec<String>,
    pub sections: &'a [Section],
    pub total_s: f64,
}

fn outcome_text(s: &Section) -> Option<String> {
    match &s.outcome {
        Outcome::Measured => None,
        Outcome::NotMeasured(why) => Some(format!("not measured: {why}")),
        Outcome::Pending(why) => Some(format!("not measured yet: {why}")),
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|")
}

pub fn render(r: &Report<'_>) -> String {
    let m = &r.machine;
    let mut d = String::new();
    let _ = writeln!(d, "# Benchmarks\n");
    let mut command = "cargo xtask bench".to_owned();
    if r.quick {
        command.push_str(" --quick");
    }
    if r.partial {
        let names: Vec<&str> = r.sections.iter().map(|s| s.name.slug()).collect();
        command.push_str(&format!(" --only {}", names.join(",")));
    }
    let _ = writeln!(
        d,
        "Produced by `{command}` (as root) on {}; the whole run took {:.0} s, build not included. \
         Every figure below comes from that one run; the inner commands are listed with each benchmark (namespace names carry the \
         tracer-bench pid, scratch files live under target/bench/ and are removed afterwards). These are \
         measurements, not tests: nothing here fails on a threshold.\n",
        r.date, r.total_s
    );
    if r.quick {
        let _ = writeln!(d, "**Quick run** (`--quick`): fewer and shorter runs, a smoke test of the harness; the figures are indicative only.\n");
    }
    let _ = writeln!(d, "## Machine\n");
    let _ = writeln!(d, "- CPU: {} × {}", m.cores, m.model);
    let _ = writeln!(d, "- Kernel: {}", m.kernel);
    let _ = writeln!(d, "- Memory: {:.1} GiB", m.mem_gib);
    let _ = writeln!(
        d,
        "- tracer: `target/release/tracer` built by the run from {}",
        m.tracer_rev
    );
    for t in &m.tools {
        let _ = writeln!(d, "- {t}");
    }
    let noisy: Vec<&str> = r
        .sections
        .iter()
        .filter(|s| s.noisy)
        .map(|s| s.name.slug())
        .collect();
    if noisy.is_empty() {
        let _ = writeln!(d, "- Other load: none worth mentioning (other processes used < 0.1 core on average during every benchmark).");
    } else {
        let _ = writeln!(
            d,
            "- Other load: **this shared {}-core machine was busy with other work** during {} (see each \
             section's \"noise\" line: CPU used by processes that are not part of the benchmark). \
             Absolute figures are disturbed by it; ratios come from interleaved runs, so slow drift \
             affects both sides alike, but short bursts still add spread.",
            m.cores,
            noisy.join(", ")
        );
    }

    let _ = writeln!(d, "\n## Summary\n");
    let _ = writeln!(
        d,
        "| benchmark | figure | value | goal |\n|---|---|---|---|"
    );
    for s in r.sections {
        if let Some(t) = outcome_text(s) {
            let _ = writeln!(d, "| {} | | {} | |", s.name.title(), one_line(&t));
            continue;
        }
        for f in &s.figures {
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} |",
                s.name.title(),
                one_line(&f.what),
                one_line(&f.value),
                one_line(&f.goal)
            );
        }
    }
    let skipped: Vec<Name> = Name::ALL
        .into_iter()
        .filter(|n| !r.sections.iter().any(|s| s.name == *n))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(
            d,
            "\nNot run this time (`--only`): {}.",
            skipped
                .iter()
                .map(|n| n.slug())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    if !r.setup_commands.is_empty() {
        let _ = writeln!(d, "\n## Topology\n");
        let _ = writeln!(
            d,
            "Namespaces A and B, each with an `eth0` whose veth peer is a port of a bridge living in \
             a third namespace (like a Docker overlay namespace), IPv6 off, built once for the run \
             and deleted at the end (also on error or Ctrl-C):\n"
        );
        let _ = writeln!(d, "```sh");
        for c in &r.setup_commands {
            let _ = writeln!(d, "{c}");
        }
        let _ = writeln!(d, "```");
    }

    for (i, s) in r.sections.iter().enumerate() {
        let _ = writeln!(
            d,
            "\n## {}. {} (`--only {}`)\n",
            i + 1,
            s.name.title(),
            s.name.slug()
        );
        if let Some(t) = outcome_text(s) {
            let _ = writeln!(d, "**{t}**\n");
        } else {
            for f in &s.figures {
                let goal = if f.goal.is_empty() {
                    String::new()
                } else {
                    format!(" (goal: {})", f.goal)
                };
                let _ = writeln!(d, "- {}: **{}**{goal}", f.what, f.value);
            }
            let _ = writeln!(d);
        }
        if !s.details.is_empty() {
            let _ = writeln!(d, "{}", s.details.trim_end());
            let _ = writeln!(d);
        }
        for n in &s.notes {
            let _ = writeln!(d, "Note: {n}\n");
        }
        let _ = writeln!(d, "Noise: {} ({:.0} s).\n", s.noise, s.seconds);
        if !s.commands.is_empty() {
            let _ = writeln!(d, "Commands (in the order first run):\n\n```sh");
            for c in &s.commands {
                let _ = writeln!(d, "{c}");
            }
            let _ = writeln!(d, "```");
        }
    }
    d
}
