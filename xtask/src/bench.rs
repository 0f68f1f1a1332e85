//! `cargo xtask bench`: the benchmarks. `main` has already run setup with the
//! bench packages (iperf3, bpftrace, tcpdump, linux-perf when available).

use anyhow::{bail, Result};

use crate::ws::Workspace;

pub fn run(_ws: &Workspace) -> Result<()> {
    bail!("cargo xtask bench: not implemented yet")
}
