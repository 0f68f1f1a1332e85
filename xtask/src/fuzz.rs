//! `cargo xtask fuzz`: cargo-fuzz (installed under target/tools on first
//! use) runs each fuzz target for a bounded time: the capture reader alone,
//! then the whole replay pipeline.

use std::{path::PathBuf, process::Command};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::{
    cmd::{self, note, say},
    setup,
    ws::Workspace,
};

/// The cargo-fuzz release this was written against (`--locked` install).
const CARGO_FUZZ_VERSION: &str = "0.13";

/// The targets, each with the seed directories it starts from (under
/// target/fuzz-seeds/, see [`write_seeds`]). Every capture seed is a
/// pipeline seed too.
pub const TARGETS: &[(&str, &[&str])] = &[
    ("capture_reader", &["capture_reader"]),
    ("pipeline", &["pipeline", "capture_reader"]),
];

/// `cargo install --root` of cargo-fuzz.
fn cargo_fuzz_root(ws: &Workspace) -> PathBuf {
    ws.tools.join("cargo-fuzz")
}

/// cargo-fuzz under target/tools/cargo-fuzz, installed when missing or
/// when it does not run.
pub fn ensure_cargo_fuzz(ws: &Workspace) -> Result<PathBuf> {
    let root = cargo_fuzz_root(ws);
    let bin = root.join("bin").join("cargo-fuzz");
    if bin.exists() {
        // `cargo-fuzz --version` prints "cargo-fuzz 0.13.2".
        match cmd::probe_stdout(Command::new(&bin).arg("--version")) {
            Some(v)
                if v.split_whitespace()
                    .nth(1)
                    .is_some_and(|n| n.starts_with(CARGO_FUZZ_VERSION)) =>
            {
                note(format!("{v} present: {}", bin.display()));
                return Ok(bin);
            }
            Some(v) => say(format!(
                "{} reports {v:?}, want {CARGO_FUZZ_VERSION}.x: reinstalling",
                bin.display()
            )),
            None => say(format!("{} does not run: reinstalling", bin.display())),
        }
    }
    say(format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION}.x into {} (about a minute)",
        root.display()
    ));
    let mut install = ws.cargo()?;
    install
        .args([
            "install",
            &format!("cargo-fuzz@~{CARGO_FUZZ_VERSION}"),
            "--locked",
            "--root",
        ])
        .arg(&root);
    if root.join(".crates.toml").exists() {
        install.arg("--force");
    }
    cmd::run(&mut install)?;
    let version = cmd::probe_stdout(Command::new(&bin).arg("--version"))
        .ok_or_else(|| anyhow!("{} was installed but does not run", bin.display()))?;
    say(format!("installed {version}: {}", bin.display()));
    Ok(bin)
}

/// For each target (all, or those in `only`):
/// `cargo +nightly fuzz run TARGET WORK SEEDS... -- -max_total_time=N`.
///
/// The seeds are written first ([`write_seeds`]); new inputs go to
/// target/fuzz-corpus/TARGET (not committed). A crash leaves its input in
/// fuzz/artifacts/TARGET/ and fails the task.
pub fn run(ws: &Workspace, seconds: u64, only: &[String]) -> Result<()> {
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    if let Some(unknown) = only
        .iter()
        .find(|o| !TARGETS.iter().any(|(t, _)| t == &o.as_str()))
    {
        bail!(
            "no fuzz target {unknown:?}; there are: {}",
            TARGETS
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The nightly (cargo-fuzz needs it) and bpf-linker (tracer's build.rs builds the eBPF programs).
    setup::run(ws, &[])?;
    let bin = ensure_cargo_fuzz(ws)?;
    let seed_root = write_seeds(ws)?;
    for (target, seeds) in TARGETS {
        if only.is_empty() || only.iter().any(|o| o == target) {
            run_target(ws, &bin, target, &seed_root, seeds, seconds)?;
        }
    }
    Ok(())
}

/// Writes the seed corpus under target/fuzz-seeds/ with tracer's unit test
/// `capture::tests::fuzz_seeds`, which also checks that each seed is what
/// its name says: the seeds always have the current capture format.
fn write_seeds(ws: &Workspace) -> Result<PathBuf> {
    let root = ws.target_dir().join("fuzz-seeds");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    say(format!("writing the fuzz seeds into {}", root.display()));
    let mut test = ws.cargo()?;
    test.env("TRACER_FUZZ_SEEDS", &root).args([
        "test",
        "-p",
        "tracer",
        "--lib",
        "capture::tests::fuzz_seeds",
        "--",
        "--exact",
    ]);
    cmd::run(&mut test)?;
    Ok(root)
}

fn run_target(
    ws: &Workspace,
    bin: &std::path::Path,
    target: &str,
    seed_root: &std::path::Path,
    seed_dirs: &[&str],
    seconds: u64,
) -> Result<()> {
    let fuzz_dir = ws.root.join("fuzz");
    let seeds: Vec<PathBuf> = seed_dirs.iter().map(|d| seed_root.join(d)).collect();
    if let Some(missing) = seeds.iter().find(|s| !s.is_dir()) {
        bail!(
            "the seed corpus {} is missing after capture::tests::fuzz_seeds wrote the seeds",
            missing.display()
        );
    }
    let work = ws.target_dir().join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    let mut path = vec![bin
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", bin.display()))?
        .to_path_buf()];
    path.extend(std::env::split_paths(&ws.path_with_tools()?));
    // The rustup proxy, so that `+nightly` selects the toolchain (not $CARGO,
    // the stable cargo running xtask).
    let mut fuzz = Command::new("cargo");
    fuzz.current_dir(&ws.root)
        .env(
            "PATH",
            std::env::join_paths(path).context("cannot build PATH")?,
        )
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .args(["+nightly", "fuzz", "run", target])
        .arg(&work)
        .args(&seeds)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            // No input of these sizes needs more: a reader that allocates
            // from a declared length instead of the bytes read fails here.
            "-rss_limit_mb=1024",
            "-malloc_limit_mb=256",
            "-print_final_stats=1",
        ]);
    let status = cmd::run_status(&mut fuzz)?;
    if !status.success() {
        bail!(
            "the fuzzer found a crash in {target} ({status}): its input is in {}; add it to \
             fuzz/regressions/{target}/ and a unit test in tracer/src/capture/tests.rs",
            fuzz_dir.join("artifacts").join(target).display()
        );
    }
    say(format!("fuzzed {target} for {seconds} s: no crash"));
    Ok(())
}
