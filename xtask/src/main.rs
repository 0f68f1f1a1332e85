//! `cargo xtask`: installs what the tracer needs on a fresh Debian machine
//! (idempotently) and builds, runs and tests it.

mod apt;
mod cmd;
mod docker;
mod fuzz;
mod matrix;
mod setup;
mod tasks;
mod ws;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{apt::Set, ws::Workspace};

/// Development tasks for the tracer workspace.
///
/// Every task first installs whatever is missing (rust-src for the nightly
/// toolchain, bpf-linker built against the nightly's libLLVM under
/// target/tools, Debian packages, tracefs/bpffs mounts) and says what it does
/// on stderr; when everything is there it is quiet and fast. Commands run on
/// your behalf are printed as `+ cmd args`.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything the build and the tests need (safe to re-run).
    ///
    /// 1. rust-src for the nightly toolchain (`-Z build-std=core`).
    /// 2. bpf-linker 0.13.0 linked against the nightly's own libLLVM, in
    ///    target/tools/bpf-linker (rebuilt when the nightly's LLVM changes).
    /// 3. Missing Debian packages: gcc libc6-dev, and for the tests iproute2
    ///    iputils-ping busybox-static tcpdump procps (needs root and apt-get).
    /// 4. tracefs at /sys/kernel/tracing and bpffs at /sys/fs/bpf.
    #[command(verbatim_doc_comment)]
    Setup {
        /// Also the benchmark packages: iperf3 bpftrace tcpdump (and linux-perf if available).
        #[arg(long)]
        bench: bool,
        /// Also Docker: docker.io, a running dockerd, the local busybox test
        /// image and a single-node swarm.
        #[arg(long)]
        docker: bool,
    },
    /// Build the tracer (`cargo build -p tracer`).
    ///
    /// The eBPF programs are built by tracer/build.rs and embedded: the
    /// release binary target/release/tracer is self-contained.
    Build {
        /// Optimised build (target/release/tracer).
        #[arg(long)]
        release: bool,
    },
    /// Build (release) and run `tracer run ARGS...` as root: NDJSON on stdout.
    ///
    /// Example: `sudo -E cargo xtask run -- --duration 10s`.
    Run {
        /// Use a debug build instead of the release one.
        #[arg(long)]
        debug: bool,
        /// Arguments for `tracer run` (after `--`).
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Run the unit tests, then the privileged integration tests (root, serially).
    ///
    /// Builds target/debug/tracer, runs `cargo test -p tracer`, then
    /// `cargo test -p tracer-tests -- --test-threads=1 [FILTER]` with
    /// TRACER_BIN pointing at the binary. Without a FILTER, then the kernel
    /// matrix for Debian's 6.1 under qemu (see `matrix`) when qemu is usable
    /// here; it says why when not; TRACER_TESTS_MATRIX=0 leaves it out. When tests/tests/identity*.rs exist
    /// (container tests), Docker is prepared first unless TRACER_TESTS_DOCKER=0.
    Test {
        /// Only the unit tests (no root needed).
        #[arg(long)]
        unit_only: bool,
        /// Test-name filter and libtest flags for the integration tests (after `--`).
        #[arg(last = true, value_name = "FILTER")]
        filter: Vec<String>,
    },
    /// Run the benchmarks and write BENCHMARKS.md (root; installs iperf3, bpftrace, tcpdump, linux-perf first).
    ///
    /// Builds target/release/tracer and the bench crate (bench/: tracer-bench
    /// and bench_helper), then runs tracer-bench, which in one run measures:
    /// start-up time, iperf3 throughput with tracer / bpftrace attached vs
    /// without (interleaved runs), a UDP drop storm checked against the
    /// kernel's own counter, per-probe kernel cost (bpf_stats), `tracer
    /// replay` speed and what `--record` costs. The namespaces it creates are
    /// removed at the end, also on error or Ctrl-C.
    /// A benchmark that cannot run is reported as "not measured: <reason>".
    Bench {
        /// Fewer, shorter runs (a smoke test). Writes target/bench/BENCHMARKS.md
        /// unless --output is given.
        #[arg(long)]
        quick: bool,
        /// Run only these benchmarks (comma separated or repeated): startup,
        /// datapath, drop-storm, kernel-cost, pipeline, record. Writes
        /// target/bench/BENCHMARKS.md unless --output is given.
        #[arg(long, value_delimiter = ',', value_name = "NAME")]
        only: Vec<String>,
        /// Where to write the report (default: BENCHMARKS.md for a full run).
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Run tracer's real-topology scenarios on other kernels; write KERNELS.md (root).
    ///
    /// For Debian's 6.1 and 6.12 cloud kernels (the newest package of each,
    /// fetched with `apt-get download` and cached under target/matrix/):
    /// packs a busybox initramfs with the release tracer, iproute2 and the
    /// bridge/vxlan/veth modules, boots it under qemu (KVM when a guest boots
    /// under it here, else TCG; installs qemu-system-x86 and cpio), and runs
    /// `tracer check` and the scenarios of the foundation and detector tests
    /// inside. The host's own kernel is a row too: the same scenarios in
    /// namespaces (under `flock $TRACER_INTEGRATION_LOCK` when that is set).
    /// Each scenario is passed, failed or skipped with the reason. A full run
    /// writes KERNELS.md; a run of some kernels target/matrix/KERNELS.md.
    #[command(verbatim_doc_comment)]
    Matrix {
        /// Only these rows: 6.1, 6.12, host (comma separated or repeated).
        #[arg(long = "kernel", value_delimiter = ',', value_name = "KERNEL")]
        kernels: Vec<String>,
        /// Where to write the table.
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Fuzz the capture reader and the whole replay pipeline, each for a
    /// bounded time (cargo-fuzz, nightly).
    ///
    /// Installs cargo-fuzz into target/tools/cargo-fuzz when missing, then runs
    /// `cargo +nightly fuzz run TARGET` for each target (capture_reader:
    /// the reader alone; pipeline: reader → identity → detectors →
    /// serialiser) from seeds written first into target/fuzz-seeds/ by
    /// tracer's unit test capture::tests::fuzz_seeds, so they have the
    /// current capture format (new inputs go to target/fuzz-corpus/). A crash fails the task and leaves its input in
    /// fuzz/artifacts/TARGET/.
    Fuzz {
        /// How long to fuzz each target.
        #[arg(long, default_value_t = 60, value_name = "N")]
        seconds: u64,
        /// Only these targets (default: all).
        #[arg(long, value_delimiter = ',', value_name = "TARGET")]
        only: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Printed here rather than by anyhow: no backtrace noise in CI logs.
            eprintln!("xtask: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let ws = Workspace::locate()?;
    match cli.command {
        Command::Setup { bench, docker } => {
            cmd::set_verbose(true);
            let mut sets = vec![Set::Test];
            if bench {
                sets.push(Set::Bench);
            }
            if docker {
                sets.push(Set::Docker);
            }
            setup::run(&ws, &sets)?;
            if docker {
                docker::ensure_all(&ws)?;
            }
        }
        Command::Build { release } => {
            setup::run(&ws, &[])?;
            let bin = tasks::build(&ws, release)?;
            if release {
                cmd::say(format!(
                    "built {} (self-contained: the eBPF programs are embedded)",
                    bin.display()
                ));
                println!("{}", bin.display());
            }
        }
        Command::Run { debug, args } => tasks::run(&ws, debug, &args)?,
        Command::Test { unit_only, filter } => tasks::test(&ws, unit_only, &filter)?,
        Command::Fuzz { seconds, only } => fuzz::run(&ws, seconds, &only)?,
        Command::Matrix { kernels, output } => {
            setup::run(&ws, &[Set::Test])?;
            matrix::run(&ws, matrix::Opts { kernels, output })?;
        }
        Command::Bench {
            quick,
            only,
            output,
        } => {
            setup::run(&ws, &[Set::Bench])?;
            tasks::bench(&ws, quick, &only, output.as_deref())?;
        }
    }
    Ok(())
}
