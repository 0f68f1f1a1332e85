//! `cargo xtask matrix`: tracer's real-topology scenarios on Debian's 6.1
//! and 6.12 cloud kernels under qemu, and on the host's own kernel; a table
//! of the results in KERNELS.md.
//!
//! Per kernel: the newest Debian package of its series is fetched with apt
//! (kernel.rs), an initramfs with busybox, the release tracer, bench_helper,
//! iproute2 and the bridge/vxlan/veth modules is packed (vm.rs), and qemu
//! boots it (KVM when a guest boots under it here, else TCG). guest.sh runs
//! as /init: `tracer check`, the scenarios' set-up, one `tracer run` over
//! all of them, then it writes what happened to the second serial port and
//! powers off. scenarios.rs decides each scenario from those lines.

mod kernel;
mod scenarios;
mod vm;

use std::{
    env,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use self::scenarios::{Capture, Outcome, PROBES, SCENARIOS};
use crate::{
    apt::{self, Pkg},
    cmd::{self, is_root, say, warn},
    tasks,
    ws::Workspace,
};

/// What the VMs need on the host.
const QEMU_PKGS: &[Pkg] = &[
    Pkg {
        name: "qemu-system-x86",
        provides: Some("qemu-system-x86_64"),
        required: true,
        debconf: &[],
    },
    Pkg {
        name: "cpio",
        provides: Some("cpio"),
        required: true,
        debconf: &[],
    },
    Pkg {
        name: "xz-utils",
        provides: Some("xz"),
        required: true,
        debconf: &[],
    },
    Pkg {
        name: "zstd",
        provides: Some("zstd"),
        required: true,
        debconf: &[],
    },
];

/// Set to a lock file: the host row runs under `flock FILE` (it creates
/// namespaces and counts host-wide drops, like the integration tests).
pub const HOST_LOCK_ENV: &str = "TRACER_INTEGRATION_LOCK";
/// Set to "0": `cargo xtask test` does not run the 6.1 VM step.
pub const TEST_MATRIX_ENV: &str = "TRACER_TESTS_MATRIX";

/// A VM gets this long (TCG is slow; tracer's start-up reads BTF).
const VM_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Opts {
    /// Rows to run: "6.1", "6.12", "host" (all when empty).
    pub kernels: Vec<String>,
    /// Where the table goes.
    pub output: Option<PathBuf>,
}

/// One row of the table.
struct Row {
    label: String,
    release: String,
    how: String,
    probes: String,
    probes_outcome: Outcome,
    outcomes: Vec<Outcome>,
    /// Drop reasons tracer printed (name → where), for the differences section.
    notes: Vec<String>,
}

impl Row {
    fn unusable(label: &str, why: String) -> Self {
        Self {
            label: label.to_owned(),
            release: "?".into(),
            how: "not run".into(),
            probes: "–".into(),
            probes_outcome: Outcome::Skipped(why.clone()),
            outcomes: SCENARIOS
                .iter()
                .map(|_| Outcome::Skipped(why.clone()))
                .collect(),
            notes: Vec::new(),
        }
    }

    fn from_capture(label: &str, how: String, c: &Capture) -> Self {
        let probes = c.probes();
        let attached = PROBES
            .iter()
            .filter(|p| matches!(probes.get(**p), Some(None)))
            .count();
        let mut probes_col = format!("{attached}/{}", PROBES.len());
        let failed: Vec<String> = probes
            .iter()
            .filter_map(|(n, why)| why.as_ref().map(|w| format!("{n}: {w}")))
            .collect();
        if !failed.is_empty() {
            probes_col.push_str(&format!(" ({})", failed.join("; ")));
        }
        let mut notes = Vec::new();
        let before = c.probes_before_modules();
        if !before.is_empty() {
            let missing: Vec<String> = before
                .iter()
                .filter_map(|(n, why)| why.as_ref().map(|w| format!("{n} ({w})")))
                .collect();
            let attached = before.values().filter(|w| w.is_none()).count();
            notes.push(if missing.is_empty() {
                format!(
                    "before bridge/vxlan/veth were loaded: {attached}/{} probes attach",
                    before.len()
                )
            } else {
                format!(
                    "before bridge/vxlan/veth were loaded: {attached}/{} probes attach; not: {}",
                    before.len(),
                    missing.join("; ")
                )
            });
        }
        let mut reasons: Vec<String> = c
            .lines
            .iter()
            .filter(|v| {
                v["event"]["action"] == "skb_drop" || v["event"]["action"] == "drop_summary"
            })
            .filter_map(|v| {
                let r = v["tracer"]["reason"].as_str()?;
                let loc = v["tracer"]["location"].as_str().unwrap_or("?");
                let loc = loc.split('+').next().unwrap_or(loc);
                Some(format!("{r} at {loc}"))
            })
            .collect();
        reasons.sort();
        reasons.dedup();
        if !reasons.is_empty() {
            notes.push(format!("drops seen: {}", reasons.join(", ")));
        }
        for w in c.stderr.iter().filter(|l| l.contains("warning")) {
            notes.push(format!("tracer: {w}"));
        }
        Self {
            label: label.to_owned(),
            release: c.release.clone().unwrap_or_else(|| "?".into()),
            how,
            probes: probes_col,
            probes_outcome: scenarios::probes_outcome(c),
            outcomes: SCENARIOS.iter().map(|s| scenarios::outcome(s, c)).collect(),
            notes,
        }
    }

    fn failed(&self) -> bool {
        std::iter::once(&self.probes_outcome)
            .chain(&self.outcomes)
            .any(|o| matches!(o, Outcome::Failed(_)))
    }
}

/// `cargo xtask matrix`.
pub fn run(ws: &Workspace, opts: Opts) -> Result<()> {
    if !is_root() {
        bail!("the matrix needs root (apt, qemu's kernels, the host row's namespaces): run `sudo -E cargo xtask matrix`");
    }
    let all: Vec<String> = kernel::SERIES
        .iter()
        .map(|s| s.label.to_owned())
        .chain(["host".to_owned()])
        .collect();
    let wanted = if opts.kernels.is_empty() {
        all.clone()
    } else {
        for k in &opts.kernels {
            if !all.contains(k) {
                bail!("unknown kernel {k:?}: one of {}", all.join(", "));
            }
        }
        opts.kernels.clone()
    };
    let full = wanted.len() == all.len();
    let output = opts.output.unwrap_or_else(|| {
        if full {
            ws.root.join("KERNELS.md")
        } else {
            ws.target_dir().join("matrix").join("KERNELS.md")
        }
    });
    let rows = run_rows(ws, &wanted, false)?;
    let table = render(ws, &rows);
    println!("{table}");
    if let Some(parent) = output.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&output, &table).with_context(|| format!("cannot write {}", output.display()))?;
    say(format!("wrote {}", output.display()));
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.label.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "scenarios failed on: {} (see {})",
            failed.join(", "),
            output.display()
        );
    }
    Ok(())
}

/// The `cargo xtask test` step: the 6.1 row when qemu is usable here.
pub fn test_step(ws: &Workspace) -> Result<()> {
    if env::var(TEST_MATRIX_ENV).is_ok_and(|v| v == "0") {
        say(format!("kernel matrix step skipped: {TEST_MATRIX_ENV}=0"));
        return Ok(());
    }
    if let Err(e) = apt::ensure(QEMU_PKGS) {
        warn(format!(
            "kernel matrix step (Debian 6.1 under qemu) skipped: qemu is not usable here: {e:#}"
        ));
        return Ok(());
    }
    let series = &kernel::SERIES[0];
    let cache = ws.target_dir().join("matrix");
    if let Err(e) = kernel::fetch(series, &cache) {
        warn(format!(
            "kernel matrix step skipped: cannot fetch Debian's {} kernel: {e:#}",
            series.label
        ));
        return Ok(());
    }
    say(format!(
        "kernel matrix: the scenarios on Debian's {} kernel under qemu",
        series.label
    ));
    // Here a VM that does not boot or run is a failure, not a skipped row.
    let rows = run_rows(ws, &[series.label.to_owned()], true)?;
    let table = render(ws, &rows);
    println!("{table}");
    let path = cache.join(format!("KERNELS-{}.md", series.label));
    fs::write(&path, &table).with_context(|| format!("cannot write {}", path.display()))?;
    if rows.iter().any(Row::failed) {
        bail!(
            "kernel matrix: scenarios failed on {} (see {})",
            series.label,
            path.display()
        );
    }
    Ok(())
}

/// The rows of `wanted`. A kernel that cannot be fetched or booted is a row
/// of skipped scenarios saying why, unless `strict`: then it is an error.
fn run_rows(ws: &Workspace, wanted: &[String], strict: bool) -> Result<Vec<Row>> {
    apt::ensure_sets(&[apt::Set::Test])?;
    let cache = ws.target_dir().join("matrix");
    fs::create_dir_all(&cache)?;
    let bins = vm::Bins {
        tracer: tasks::build(ws, true)?,
        helper: build_helper(ws)?,
    };
    let vms: Vec<&kernel::Series> = kernel::SERIES
        .iter()
        .filter(|s| wanted.iter().any(|w| w == s.label))
        .collect();
    let qemu = if vms.is_empty() {
        Ok(())
    } else {
        apt::ensure(QEMU_PKGS)
    };
    let mut rows = Vec::new();
    for series in vms {
        let row = match &qemu {
            Err(e) => Row::unusable(series.label, format!("qemu is not usable here: {e:#}")),
            Ok(()) => match vm_row(series, &bins, &cache) {
                Ok(row) => row,
                Err(e) if strict => return Err(e.context(format!("kernel {}", series.label))),
                Err(e) => {
                    warn(format!("{}: {e:#}", series.label));
                    Row::unusable(series.label, format!("{e:#}"))
                }
            },
        };
        rows.push(row);
    }
    if wanted.iter().any(|w| w == "host") {
        rows.push(host_row(&bins, &cache)?);
    }
    Ok(rows)
}

fn vm_row(series: &kernel::Series, bins: &vm::Bins, cache: &Path) -> Result<Row> {
    let k = kernel::fetch(series, cache)?;
    let dir = cache.join("runs").join(series.label);
    fs::create_dir_all(&dir)?;
    say(format!(
        "{}: {} ({}), packing the initramfs",
        series.label, k.package, k.release
    ));
    let initramfs = vm::initramfs(&k, bins, &dir)?;
    let accel = vm::accel(&k.vmlinuz, &initramfs, &dir);
    if let Some(why) = &accel.why {
        say(format!("using TCG: {why}"));
    }
    let boot = vm::Boot {
        vmlinuz: &k.vmlinuz,
        initramfs: &initramfs,
        accel: accel.name,
        extra_cmdline: "",
        console: &dir.join("console.log"),
        out: &dir.join("out.log"),
        timeout: VM_TIMEOUT,
    };
    say(format!(
        "{}: booting under {} (console: {})",
        series.label,
        accel.name,
        boot.console.display()
    ));
    let r = boot.run()?;
    say(format!(
        "{}: VM done in {:.0} s ({})",
        series.label, r.seconds, r.status
    ));
    let c = Capture::parse(&r.out);
    if c.release.is_none() {
        bail!(
            "the VM never started the scenarios ({}); console ends with: {}",
            r.status,
            r.console
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let mut row = Row::from_capture(
        series.label,
        format!("qemu {} ({:.0} s)", accel.name, r.seconds),
        &c,
    );
    row.notes.insert(0, format!("package {}", k.package));
    if let Some(why) = &accel.why {
        let why = why.lines().next().unwrap_or(why);
        row.notes.insert(1, format!("qemu used TCG: {why}"));
    }
    Ok(row)
}

/// The same script on the host, in namespaces (under HOST_LOCK_ENV's lock
/// when set).
fn host_row(bins: &vm::Bins, cache: &Path) -> Result<Row> {
    let dir = cache.join("runs").join("host");
    fs::create_dir_all(&dir)?;
    let script = dir.join("guest.sh");
    fs::write(&script, vm::GUEST_SH)?;
    let out = dir.join("out.log");
    let _ = fs::remove_file(&out);
    let mut sh = match env::var_os(HOST_LOCK_ENV) {
        Some(lock) if !lock.is_empty() => {
            let mut c = Command::new("flock");
            c.arg(lock).arg("busybox");
            c
        }
        _ => Command::new("busybox"),
    };
    sh.arg("sh")
        .arg(&script)
        .env("MATRIX_MODE", "host")
        .env("MATRIX_OUT", &out)
        .env("MATRIX_WORK", dir.join("work"))
        .env("TRACER", &bins.tracer)
        .env("HELPER", &bins.helper)
        .env("P", format!("m{:x}", std::process::id() % 0xfff));
    say("host: the scenarios on this machine's kernel, in namespaces");
    let status = cmd::run_status(&mut sh)?;
    if !status.success() {
        warn(format!("the host scenario script exited with {status}"));
    }
    let text = fs::read_to_string(&out).unwrap_or_default();
    let c = Capture::parse(&text);
    let how = match c.seconds {
        Some(s) => format!("host, namespaces ({s} s)"),
        None => "host, namespaces".to_owned(),
    };
    Ok(Row::from_capture("host", how, &c))
}

fn build_helper(ws: &Workspace) -> Result<PathBuf> {
    let mut build = ws.cargo()?;
    build.args([
        "build",
        "--release",
        "-p",
        "tracer-bench",
        "--bin",
        "bench_helper",
    ]);
    cmd::run(&mut build)?;
    let bin = ws.target_dir().join("release").join("bench_helper");
    if !bin.is_file() {
        bail!("cargo build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

fn cell(o: &Outcome, notes: &mut Vec<String>) -> String {
    match o {
        Outcome::Passed => "passed".into(),
        Outcome::Failed(why) => {
            notes.push(why.clone());
            format!("**failed** [{}]", notes.len())
        }
        Outcome::Skipped(why) => {
            notes.push(why.clone());
            format!("skipped [{}]", notes.len())
        }
    }
}

fn render(ws: &Workspace, rows: &[Row]) -> String {
    let commit = cmd::probe_stdout(Command::new("git").current_dir(&ws.root).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]))
    .unwrap_or_else(|| "?".into());
    let mut s = String::new();
    let _ = writeln!(s, "# Kernel matrix\n");
    let _ = writeln!(
        s,
        "Written by `cargo xtask matrix` (tracer at commit {commit}). Each kernel \
         runs the same scenarios (xtask/src/matrix/guest.sh): Debian's cloud \
         kernels boot under qemu with a busybox initramfs, the host's own kernel \
         runs them in network namespaces. Pass or fail is decided from tracer's \
         NDJSON output by xtask/src/matrix/scenarios.rs, with the assertions of \
         tests/tests/foundation.rs and detect.rs. See the README's \"Kernel \
         requirements\" for what differs between kernels.\n"
    );
    let mut header = vec![
        "kernel",
        "release",
        "run",
        "probes attached",
        "probe status + clean exit",
    ];
    header.extend(SCENARIOS.iter().map(|sc| sc.title));
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
    let mut notes = Vec::new();
    for r in rows {
        let mut cells = vec![
            r.label.clone(),
            format!("`{}`", r.release),
            r.how.clone(),
            r.probes.clone(),
            cell(&r.probes_outcome, &mut notes),
        ];
        for o in &r.outcomes {
            cells.push(cell(o, &mut notes));
        }
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    if !notes.is_empty() {
        let _ = writeln!(s);
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(s, "{}. {}", i + 1, n.replace('\n', " "));
        }
    }
    let _ = writeln!(s, "\n## Per kernel\n");
    for r in rows {
        let _ = writeln!(s, "- **{}** (`{}`):", r.label, r.release);
        if r.notes.is_empty() {
            let _ = writeln!(s, "  - nothing else to note");
        }
        for n in &r.notes {
            let _ = writeln!(s, "  - {n}");
        }
    }
    s
}
