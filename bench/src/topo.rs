//! The benchmark topology: namespaces A and B, each with one veth whose peer
//! is a port of a bridge living in a third namespace (like a Docker overlay
//! namespace). Names embed tracer-bench's pid; everything is deleted on drop, and
//! leftovers of runs that were killed (their pid is gone) at the next start.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result};

use super::Recorder;
use crate::cmd;

/// Prefix of every namespace this harness creates: `xtbench-<pid>-<role>`.
const PREFIX: &str = "xtbench-";
const NETNS_DIR: &str = "/var/run/netns";

pub struct Topo {
    pub ns_a: String,
    pub ns_b: String,
    pub ns_br: String,
    pub bridge: String,
    pub ip_a: String,
    pub ip_b: String,
    created: Vec<String>,
}

/// `ip ARGS`, printed, failing with ip's stderr.
fn ip(rec: &mut Recorder, args: &[&str]) -> Result<()> {
    let mut c = Command::new("ip");
    c.args(args);
    rec.run_quiet(&mut c)
}

impl Topo {
    pub fn new(rec: &mut Recorder) -> Result<Self> {
        sweep_stale();
        let pid = std::process::id();
        let tag = format!("{pid:x}");
        let ns = |role: &str| format!("{PREFIX}{pid}-{role}");
        // A subnet derived from the pid (the namespaces isolate it anyway).
        let (x, y) = (16 + pid % 200, (pid / 200) % 250 + 1);
        let mut t = Self {
            ns_a: ns("a"),
            ns_b: ns("b"),
            ns_br: ns("br"),
            bridge: format!("xbr{tag}"),
            ip_a: format!("10.{x}.{y}.1"),
            ip_b: format!("10.{x}.{y}.2"),
            created: Vec::new(),
        };
        for name in [t.ns_br.clone(), t.ns_a.clone(), t.ns_b.clone()] {
            ip(rec, &["netns", "add", &name])?;
            t.created.push(name.clone());
            ip(rec, &["-n", &name, "link", "set", "lo", "up"])?;
            // No IPv6 autoconfiguration chatter (router solicitations, MLD)
            // in the measurements.
            let mut sysctl = Command::new("ip");
            sysctl.args([
                "netns",
                "exec",
                &name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]);
            let _ = rec.run_quiet(&mut sysctl);
            let mut sysctl = Command::new("ip");
            sysctl.args([
                "netns",
                "exec",
                &name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
            let _ = rec.run_quiet(&mut sysctl);
        }
        let br = t.ns_br.clone();
        ip(
            rec,
            &["-n", &br, "link", "add", &t.bridge, "type", "bridge"],
        )?;
        ip(rec, &["-n", &br, "link", "set", &t.bridge, "up"])?;
        for (side, ns, addr) in [("a", &t.ns_a, &t.ip_a), ("b", &t.ns_b, &t.ip_b)] {
            let port = format!("xp{side}{tag}");
            ip(
                rec,
                &[
                    "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns,
                ],
            )?;
            ip(rec, &["-n", &br, "link", "set", &port, "master", &t.bridge])?;
            ip(rec, &["-n", &br, "link", "set", &port, "up"])?;
            ip(
                rec,
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            ip(rec, &["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(t)
    }

    /// The inode tracer reports as `tracer.netns.inode`.
    pub fn inode(&self, ns: &str) -> Result<u64> {
        let path = PathBuf::from(NETNS_DIR).join(ns);
        Ok(fs::metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .ino())
    }

    /// `ip netns exec NS PROGRAM` as a Command.
    pub fn exec(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// /proc/net/snmp `Udp: NoPorts` inside `ns`: UDP datagrams the kernel
    /// dropped there because no socket was bound to their port.
    pub fn udp_noports(&self, ns: &str) -> Result<u64> {
        let mut c = self.exec(ns, "cat");
        c.arg("/proc/net/snmp");
        let out = cmd::probe(&mut c).context("cannot read /proc/net/snmp")?;
        let text = String::from_utf8_lossy(&out.stdout);
        snmp_value(&text, "Udp", "NoPorts")
            .with_context(|| format!("no Udp NoPorts in /proc/net/snmp of {ns}"))
    }

    /// True once something listens on TCP `port` inside `ns`.
    pub fn tcp_listening(&self, ns: &str, port: u16) -> bool {
        // iperf3 listens on a dual-stack [::] socket: it shows up in tcp6.
        let mut c = self.exec(ns, "cat");
        c.args(["/proc/net/tcp", "/proc/net/tcp6"]);
        let Ok(out) = cmd::probe(&mut c) else {
            return false;
        };
        let want = format!(":{port:04X}");
        String::from_utf8_lossy(&out.stdout).lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        })
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            delete_netns(&ns);
        }
    }
}

/// `/proc/net/snmp` has pairs of lines: `Udp: Name1 Name2...` then `Udp: 1 2...`.
pub fn snmp_value(text: &str, proto: &str, field: &str) -> Option<u64> {
    let prefix = format!("{proto}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if let Some(i) = names.iter().position(|n| *n == field) {
            return values.get(i).and_then(|v| v.parse().ok());
        }
    }
    None
}

/// Kills whatever still runs in `ns`, then deletes it (its veths go with it).
fn delete_netns(ns: &str) {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = out {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                let _ = super::sys::send_signal(pid, super::sys::SIGKILL);
            }
        }
    }
    eprintln!("+ ip netns del {ns}");
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Deletes namespaces left by bench runs whose tracer-bench process no longer exists.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            cmd::say(format!(
                "removing namespace {name} left by an interrupted bench run"
            ));
            delete_netns(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_udp_noports() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors\nUdp: 10 500000 0\n\
                    UdpLite: InDatagrams NoPorts\nUdpLite: 0 7\n";
        assert_eq!(snmp_value(snmp, "Udp", "NoPorts"), Some(500000));
        assert_eq!(snmp_value(snmp, "UdpLite", "NoPorts"), Some(7));
        assert_eq!(snmp_value(snmp, "Tcp", "NoPorts"), None);
    }
}
