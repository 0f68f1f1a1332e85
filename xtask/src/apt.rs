//! Debian packages: install only the missing ones, `apt-get update` at most
//! once per run and only when something is missing.

use std::{
    collections::HashSet,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Result};

use crate::cmd::{self, is_root, note, say, warn, which};

/// A Debian package and how to recognise it elsewhere.
#[derive(Clone, Copy, Debug)]
pub struct Pkg {
    pub name: &'static str,
    /// A program it installs: what is checked when dpkg is not available.
    pub provides: Option<&'static str>,
    /// Optional packages are installed when possible; their absence is a warning.
    pub required: bool,
    /// Answers to its debconf questions (`debconf-set-selections` lines),
    /// given before it is installed, so nothing asks.
    pub debconf: &'static [&'static str],
}

const fn req(name: &'static str, provides: Option<&'static str>) -> Pkg {
    Pkg {
        name,
        provides,
        required: true,
        debconf: &[],
    }
}

/// Wireshark's command-line reader: `tests/tests/pcap.rs` reads tracer's
/// pcapng files with it. Its `wireshark-common` asks whether non-root users
/// may capture (a setuid dumpcap): no.
pub const TSHARK: Pkg = Pkg {
    debconf: &["wireshark-common wireshark-common/install-setuid boolean false"],
    ..req("tshark", Some("tshark"))
};

pub const BUSYBOX_STATIC: Pkg = req("busybox-static", Some("busybox"));
pub const DOCKER_IO: Pkg = req("docker.io", Some("dockerd"));

/// Named package sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// A C linker for every Rust build (bpf-linker, tracer).
    Base,
    /// The integration tests (`cargo xtask test`).
    Test,
    /// The benchmarks (`cargo xtask bench`).
    Bench,
    /// A Docker Engine (container tests).
    Docker,
}

impl Set {
    pub fn packages(self) -> &'static [Pkg] {
        const BASE: &[Pkg] = &[req("gcc", Some("cc")), req("libc6-dev", None)];
        const TEST: &[Pkg] = &[
            req("iproute2", Some("ip")),
            req("iputils-ping", Some("ping")),
            BUSYBOX_STATIC,
            req("tcpdump", Some("tcpdump")),
            req("procps", Some("ps")),
            // Firewall rules of the overlay underlay and MTU blackhole tests.
            req("nftables", Some("nft")),
            // The metrics test scrapes tracer with a real Prometheus server
            // (run as a plain process by the test, not as a service).
            req("prometheus", Some("prometheus")),
            // `tracer report` is rendered headless by tests/tests/report.rs.
            req("chromium", Some("chromium")),
            TSHARK,
        ];
        const BENCH: &[Pkg] = &[
            req("iperf3", Some("iperf3")),
            req("bpftrace", Some("bpftrace")),
            req("tcpdump", Some("tcpdump")),
            Pkg {
                name: "linux-perf",
                provides: Some("perf"),
                required: false,
                debconf: &[],
            },
            // Instruction counts of the replay (independent of the VM's speed).
            Pkg {
                name: "valgrind",
                provides: Some("valgrind"),
                required: false,
                debconf: &[],
            },
        ];
        const DOCKER: &[Pkg] = &[DOCKER_IO];
        match self {
            Set::Base => BASE,
            Set::Test => TEST,
            Set::Bench => BENCH,
            Set::Docker => DOCKER,
        }
    }
}

/// Installs whatever the sets need and is missing.
pub fn ensure_sets(sets: &[Set]) -> Result<()> {
    let pkgs: Vec<Pkg> = sets.iter().flat_map(|s| s.packages()).copied().collect();
    ensure(&pkgs)
}

/// Installs the missing packages among `pkgs`. Fails when a required one is
/// missing and cannot be installed here (not root, no apt-get).
pub fn ensure(pkgs: &[Pkg]) -> Result<()> {
    let mut seen = HashSet::new();
    let pkgs: Vec<Pkg> = pkgs
        .iter()
        .filter(|p| seen.insert(p.name))
        .copied()
        .collect();
    if pkgs.is_empty() {
        return Ok(());
    }

    let dpkg = which("dpkg-query").is_some();
    let missing: Vec<Pkg> = if dpkg {
        let installed = dpkg_installed(&pkgs);
        pkgs.iter()
            .filter(|p| !installed.contains(p.name))
            .copied()
            .collect()
    } else {
        // Not Debian: look for the programs instead.
        pkgs.iter()
            .filter(|p| p.provides.is_some_and(|prog| which(prog).is_none()))
            .copied()
            .collect()
    };
    let names = |ps: &[Pkg]| ps.iter().map(|p| p.name).collect::<Vec<_>>().join(" ");
    if missing.is_empty() {
        note(format!("packages present: {}", names(&pkgs)));
        return Ok(());
    }
    let (required, optional): (Vec<Pkg>, Vec<Pkg>) = missing.iter().partition(|p| p.required);

    let apt = which("apt-get").is_some();
    if !(dpkg && apt && is_root()) {
        let why = if !(dpkg && apt) {
            "this is not a Debian system with apt-get"
        } else {
            "xtask is not running as root"
        };
        let list = |ps: &[Pkg]| {
            ps.iter()
                .map(|p| match p.provides {
                    Some(prog) if !dpkg => format!("{} (provides `{prog}`)", p.name),
                    _ => p.name.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !optional.is_empty() {
            warn(format!(
                "optional packages missing: {}; install them by hand ({why})",
                list(&optional)
            ));
        }
        if required.is_empty() {
            return Ok(());
        }
        let hint = if dpkg && apt {
            format!(
                "run as root, or install them by hand: `sudo apt-get install {}`",
                names(&required)
            )
        } else {
            "install them by hand with your package manager".to_owned()
        };
        bail!(
            "required packages missing: {} ({why}): {hint}",
            list(&required)
        );
    }

    apt_update_once()?;
    preseed(&missing)?;
    if !required.is_empty() {
        say(format!("installing packages: {}", names(&required)));
        cmd::run(&mut apt_install(&required))?;
    }
    for pkg in optional {
        say(format!("installing optional package {}", pkg.name));
        if !cmd::run_status(&mut apt_install(&[pkg]))?.success() {
            warn(format!(
                "optional package {} could not be installed; continuing without it",
                pkg.name
            ));
        }
    }
    Ok(())
}

/// The names among `pkgs` that dpkg reports as installed (one query).
fn dpkg_installed(pkgs: &[Pkg]) -> HashSet<String> {
    let mut query = Command::new("dpkg-query");
    query
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(pkgs.iter().map(|p| p.name));
    // dpkg-query exits 1 when some package is unknown but still lists the others.
    let Ok(out) = cmd::probe(&mut query) else {
        return HashSet::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (name, status) = line.split_once(' ')?;
            status
                .ends_with("ok installed")
                .then(|| name.split(':').next().unwrap_or(name).to_owned())
        })
        .collect()
}

/// Gives debconf the answers of the packages about to be installed.
fn preseed(pkgs: &[Pkg]) -> Result<()> {
    let lines: Vec<&str> = pkgs.iter().flat_map(|p| p.debconf).copied().collect();
    if lines.is_empty() {
        return Ok(());
    }
    let mut set = Command::new("debconf-set-selections");
    set.stdin(std::process::Stdio::piped());
    say(format!("debconf: {}", lines.join("; ")));
    let mut child = set.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(format!("{}\n", lines.join("\n")).as_bytes())?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("debconf-set-selections failed ({status})");
    }
    Ok(())
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

fn apt_update_once() -> Result<()> {
    if APT_UPDATED.swap(true, Ordering::Relaxed) {
        return Ok(());
    }
    let mut update = Command::new("apt-get");
    update
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["update", "-q"]);
    cmd::run(&mut update)
}

fn apt_install(pkgs: &[Pkg]) -> Command {
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        // needrestart (when installed) would otherwise ask or scan.
        .env("NEEDRESTART_SUSPEND", "1")
        .args(["install", "-y", "--no-install-recommends"])
        .args(pkgs.iter().map(|p| p.name));
    install
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without root, a missing required package is an error that says what to
    /// install; a missing optional one is only a warning. (Skipped as root:
    /// it would run apt-get.)
    #[test]
    fn not_root_explains_what_to_install() {
        if is_root() {
            eprintln!("skipped: running as root would call apt-get");
            return;
        }
        let optional = Pkg {
            name: "xtask-test-no-such-optional",
            provides: Some("xtask-test-no-such-program"),
            required: false,
            debconf: &[],
        };
        ensure(&[optional]).unwrap();
        let required = req(
            "xtask-test-no-such-package",
            Some("xtask-test-no-such-program"),
        );
        let err = ensure(&[required, optional]).unwrap_err().to_string();
        assert!(err.contains("xtask-test-no-such-package"), "{err}");
        assert!(!err.contains("optional"), "{err}");
    }
}
