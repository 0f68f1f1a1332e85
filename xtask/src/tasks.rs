//! `build`, `run` and `test`: cargo with xtask's bpf-linker on PATH.

use std::{
    env, fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

use crate::{
    apt::{self, Pkg, Set},
    cmd::{self, is_root, say},
    docker, matrix, setup,
    ws::Workspace,
};

/// Set to "0" to keep `cargo xtask test` away from Docker even when the
/// tests have container cases.
pub const TESTS_DOCKER_ENV: &str = "TRACER_TESTS_DOCKER";

/// `cargo build -p tracer [--release]`; returns the binary's path.
pub fn build(ws: &Workspace, release: bool) -> Result<PathBuf> {
    let mut build = ws.cargo()?;
    build.args(["build", "-p", "tracer"]);
    if release {
        build.arg("--release");
    }
    cmd::run(&mut build)?;
    let bin = ws
        .target_dir()
        .join(if release { "release" } else { "debug" })
        .join("tracer");
    if !bin.is_file() {
        bail!("cargo build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// `cargo xtask bench`: builds target/release/tracer and the bench crate
/// (`tracer-bench`, `bench_helper`), then runs tracer-bench on them. Setup
/// with the bench packages has already run.
pub fn bench(ws: &Workspace, quick: bool, only: &[String], output: Option<&Path>) -> Result<()> {
    if !is_root() {
        bail!(
            "the benchmarks load eBPF programs and create network namespaces: \
             run `sudo -E cargo xtask bench`"
        );
    }
    // ip and nstat (the bench set has the tools under test, not iproute2).
    apt::ensure(&[Pkg {
        name: "iproute2",
        provides: Some("ip"),
        required: true,
        debconf: &[],
    }])?;
    let tracer = build(ws, true)?;
    let mut build = ws.cargo()?;
    build.args(["build", "--release", "-p", "tracer-bench"]);
    cmd::run(&mut build)?;
    let release = ws.target_dir().join("release");
    let bench = release.join("tracer-bench");
    for bin in [&bench, &release.join("bench_helper")] {
        if !bin.is_file() {
            bail!("cargo build succeeded but {} is missing", bin.display());
        }
    }
    let mut run = std::process::Command::new(&bench);
    run.arg("--root")
        .arg(&ws.root)
        .arg("--target-dir")
        .arg(ws.target_dir())
        .arg("--tracer")
        .arg(&tracer);
    if quick {
        run.arg("--quick");
    }
    for name in only {
        run.args(["--only", name]);
    }
    if let Some(output) = output {
        // A relative path stays relative to where `cargo xtask` was started.
        run.arg("--output").arg(output);
    }
    cmd::run(&mut run)
}

/// Builds, then replaces this process with `tracer run ARGS...`.
pub fn run(ws: &Workspace, debug: bool, args: &[String]) -> Result<()> {
    if !is_root() {
        bail!(
            "the tracer loads eBPF programs and needs root: run `sudo -E cargo xtask run` \
             (or `cargo xtask build --release` then `sudo target/release/tracer run`)"
        );
    }
    setup::run(ws, &[])?;
    let bin = build(ws, !debug)?;
    let mut tracer = std::process::Command::new(&bin);
    tracer.arg("run").args(args);
    eprintln!("+ {}", cmd::display(&tracer));
    let err = tracer.exec();
    Err(err).with_context(|| format!("cannot execute {}", bin.display()))
}

/// The tests crate has container cases (`tests/tests/identity*.rs`) and
/// TRACER_TESTS_DOCKER is not "0".
pub fn docker_needed(ws: &Workspace) -> bool {
    let dir = ws.root.join("tests").join("tests");
    let has_identity = fs::read_dir(&dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("identity") && name.ends_with(".rs")
        })
    });
    if !has_identity {
        return false;
    }
    if env::var(TESTS_DOCKER_ENV).is_ok_and(|v| v == "0") {
        say(format!(
            "{TESTS_DOCKER_ENV}=0: not preparing Docker for tests/tests/identity*.rs"
        ));
        return false;
    }
    true
}

/// Unit tests, then the privileged integration tests one at a time.
pub fn test(ws: &Workspace, unit_only: bool, filter: &[String]) -> Result<()> {
    if !unit_only && !is_root() {
        bail!(
            "the integration tests need root (namespaces, eBPF): run `sudo -E cargo xtask test`, \
             or `cargo xtask test --unit-only` for the unit tests alone"
        );
    }
    setup::run(ws, if unit_only { &[] } else { &[Set::Test] })?;
    if !unit_only && docker_needed(ws) {
        docker::ensure_all(ws)?;
    }
    let tracer = build(ws, false)?;

    say("unit tests");
    let mut unit = ws.cargo()?;
    unit.args(["test", "-p", "tracer", "-p", "xtask", "-p", "tracer-bench"]);
    cmd::run(&mut unit)?;
    if unit_only {
        return Ok(());
    }

    say("integration tests (root, one at a time)");
    let mut integration = ws.cargo()?;
    integration
        .env("TRACER_BIN", &tracer)
        .env("RUST_BACKTRACE", "1")
        .args(["test", "-p", "tracer-tests", "--", "--test-threads=1"])
        .args(filter);
    cmd::run(&mut integration)?;
    if filter.is_empty() {
        matrix::test_step(ws)?;
    } else {
        say("kernel matrix step left out: a test filter was given");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_only_for_identity_tests_unless_disabled() {
        let root = env::temp_dir().join(format!("xtask-docker-needed-{}", std::process::id()));
        let tests = root.join("tests").join("tests");
        fs::create_dir_all(&tests).unwrap();
        let ws = Workspace {
            root: root.clone(),
            tools: root.join("target/tools"),
        };
        fs::write(tests.join("foundation.rs"), "").unwrap();
        assert!(!docker_needed(&ws));
        fs::write(tests.join("identity_overlay.rs"), "").unwrap();
        env::remove_var(TESTS_DOCKER_ENV);
        assert!(docker_needed(&ws));
        env::set_var(TESTS_DOCKER_ENV, "0");
        assert!(!docker_needed(&ws));
        env::set_var(TESTS_DOCKER_ENV, "1");
        assert!(docker_needed(&ws));
        env::remove_var(TESTS_DOCKER_ENV);
        fs::remove_dir_all(&root).unwrap();
    }
}
