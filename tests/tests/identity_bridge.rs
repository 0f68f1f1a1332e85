//! A plain (compose-style, not swarm) Docker bridge network as an operator
//! runs it, and faults on it caused for real: what tracer says must name
//! the containers, the place of the fault and a command that works there.
//!
//! `cargo xtask test` starts dockerd and builds `tracer-test-busybox:latest`
//! because this file's name starts with `identity`. Every test uses its own
//! network and container names (removed on drop); Docker picks the subnet.

use std::{process::Command, time::Duration};

use serde_json::Value;
use tracer_tests::{require_root, sh, sh_quiet, unique_tag, with_action, Tracer};

const IMAGE: &str = "tracer-test-busybox:latest";

/// Docker objects a test created, removed on drop (also on panic).
#[derive(Default)]
struct Docker {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Docker {
    fn new() -> Self {
        require_root();
        let ok = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "Docker Engine with image {IMAGE} needed (`cargo xtask test` prepares both)"
        );
        Self::default()
    }

    fn network(&mut self, name: &str) {
        sh_quiet(&["docker", "network", "rm", name]);
        sh(&["docker", "network", "create", name]);
        self.networks.push(name.to_string());
    }

    fn run(&mut self, name: &str, network: &str, cmd: &[&str]) {
        self.run_with(name, network, &[], cmd);
    }

    fn run_with(&mut self, name: &str, network: &str, extra: &[&str], cmd: &[&str]) {
        sh_quiet(&["docker", "rm", "-f", name]);
        let mut args = vec!["docker", "run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        sh(&args);
        self.containers.push(name.to_string());
    }

    fn ip(&self, name: &str) -> String {
        sh(&[
            "docker",
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ])
        .trim()
        .to_string()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        tracer_tests::docker_rm_all(&[], &self.containers, &self.networks);
    }
}

/// An iptables rule in the host's DOCKER-USER chain, deleted on drop.
struct DockerUserRule(Vec<String>);

impl DockerUserRule {
    fn insert(spec: &[&str]) -> Self {
        let mut args = vec!["iptables", "-I", "DOCKER-USER"];
        args.extend_from_slice(spec);
        sh(&args);
        Self(spec.iter().map(ToString::to_string).collect())
    }
}

impl Drop for DockerUserRule {
    fn drop(&mut self) {
        let mut args = vec!["iptables", "-D", "DOCKER-USER"];
        args.extend(self.0.iter().map(String::as_str));
        sh_quiet(&args);
    }
}

fn msg(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

/// A rule in the host's DOCKER-USER chain drops TCP from one container to
/// another on the same bridge network (br_netfilter hands bridged IPv4 to
/// iptables' FORWARD chain, where Docker hooks DOCKER-USER in). The alert
/// names both containers, the host's namespace (not Docker's handle name
/// `default`), the FORWARD hook and the interface the SYN came in on, and
/// its hint is a command that runs as is in the host's shell.
#[test]
fn docker_user_rule_between_two_containers_names_them_the_host_and_the_forward_hook() {
    let mut d = Docker::new();
    let (tag, _) = unique_tag();
    let net = format!("tqbn{tag}");
    let (web, db) = (format!("tqweb{tag}"), format!("tqdb{tag}"));
    d.network(&net);
    d.run(&db, &net, &["nc", "-ll", "-p", "5432", "-e", "cat"]);
    d.run(&web, &net, &["sleep", "3600"]);
    let (web_ip, db_ip) = (d.ip(&web), d.ip(&db));
    assert!(
        !web_ip.is_empty() && !db_ip.is_empty(),
        "containers have no IP"
    );
    // Reachable before the fault.
    let ok = Command::new("docker")
        .args([
            "exec",
            &web,
            "sh",
            "-c",
            &format!("echo hi | nc -w 3 {db_ip} 5432"),
        ])
        .output()
        .expect("docker exec");
    assert!(
        ok.status.success(),
        "no connection before the fault: {ok:?}"
    );

    let _rule = DockerUserRule::insert(&[
        "-s", &web_ip, "-d", &db_ip, "-p", "tcp", "--dport", "5432", "-j", "DROP",
    ]);
    let t = Tracer::start(&["--container", &web]);
    let r = Command::new("docker")
        .args([
            "exec",
            &web,
            "sh",
            "-c",
            &format!("echo hi | nc -w 4 {db_ip} 5432"),
        ])
        .output()
        .expect("docker exec");
    assert!(!r.status.success(), "the rule must block the connection");
    let got = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "connect_failed"
    });
    let (lines, raw) = t.stop();
    for l in raw
        .iter()
        .filter(|l| l.contains("\"connect_failed\"") || l.contains("NETFILTER_DROP"))
    {
        eprintln!("raw line: {l}");
    }
    assert!(got.is_some(), "no connect_failed alert");
    let a: Vec<&Value> = with_action(&lines, "connect_failed")
        .into_iter()
        .filter(|v| v["destination"]["ip"] == db_ip.as_str() && v["destination"]["port"] == 5432)
        .collect();
    assert_eq!(a.len(), 1, "{a:?}");
    let a = a[0];
    let p = &a["tracer"]["alert"];
    assert_eq!(p["cause"], "firewall", "{a}");
    assert_eq!(p["client"]["container"], web.as_str());
    assert_eq!(p["destination"]["container"], db.as_str());
    assert_eq!(p["cause_seen"]["reason"], "NETFILTER_DROP");
    let m = msg(a);
    assert!(m.contains(&format!("from {web} ({web_ip})")), "{m}");
    assert!(m.contains(&format!("to {db} ({db_ip}:5432)")), "{m}");
    assert!(
        m.contains(
            "a firewall rule in the host's namespace dropped the SYN it forwarded from veth"
        ),
        "{m}"
    );
    assert!(m.contains(", FORWARD hook)"), "{m}");
    assert!(!m.contains("netns default"), "{m}");
    let hint = p["hint"].as_str().unwrap_or("");
    assert!(!hint.contains("ip netns exec"), "{hint}");
    assert!(
        hint.contains("iptables -nvL DOCKER-USER --line-numbers"),
        "{hint}"
    );
    // The hint's command finds the rule: its counter counted the SYNs.
    let listing = sh(&["iptables", "-nvL", "DOCKER-USER", "--line-numbers"]);
    let hit = listing
        .lines()
        .find(|l| l.contains(&db_ip) && l.contains("DROP"))
        .unwrap_or_else(|| panic!("rule not listed: {listing}"));
    let pkts: u64 = hit
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(pkts > 0, "{hit}");
}

/// A container with NET_ADMIN takes another's address by hand (`ip addr
/// add` inside it): a third container's ARP requests get answers from both
/// MACs. The ip_conflict alert names both containers and says containers
/// claim the address; the incident's hint shows how to list each one's
/// addresses.
#[test]
fn an_address_taken_inside_another_container_is_a_conflict_between_containers() {
    let mut d = Docker::new();
    let (tag, _) = unique_tag();
    let net = format!("tqcn{tag}");
    let (owner, thief, asker) = (
        format!("tqown{tag}"),
        format!("tqthf{tag}"),
        format!("tqask{tag}"),
    );
    d.network(&net);
    d.run(&owner, &net, &["sleep", "3600"]);
    d.run_with(
        &thief,
        &net,
        &["--cap-add", "NET_ADMIN"],
        &["sleep", "3600"],
    );
    d.run(&asker, &net, &["sleep", "3600"]);
    let ip = d.ip(&owner);
    sh(&[
        "docker",
        "exec",
        &thief,
        "ip",
        "addr",
        "add",
        &format!("{ip}/32"),
        "dev",
        "eth0",
    ]);
    let pid = sh(&["docker", "inspect", "-f", "{{.State.Pid}}", &asker])
        .trim()
        .to_string();

    let t = Tracer::start(&["--container", &asker]);
    for _ in 0..4 {
        sh_quiet(&[
            "docker", "exec", &asker, "arping", "-c", "1", "-w", "1", &ip,
        ]);
        sh_quiet(&["nsenter", "-t", &pid, "-n", "ip", "neigh", "flush", "all"]);
    }
    let got = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "ip_conflict"
    });
    let (lines, raw) = t.stop();
    for l in raw
        .iter()
        .filter(|l| l.contains("\"ip_conflict\"") || l.contains("\"incident\""))
    {
        eprintln!("raw line: {l}");
    }
    assert!(got.is_some(), "no ip_conflict alert");
    let c: Vec<&Value> = with_action(&lines, "ip_conflict")
        .into_iter()
        .filter(|v| v["tracer"]["alert"]["ip"] == ip.as_str())
        .collect();
    assert!(!c.is_empty(), "no ip_conflict for {ip}");
    let m = msg(c[0]);
    assert!(
        m.contains(&format!("({owner})")) && m.contains(&format!("({thief})")),
        "{m}"
    );
    assert!(m.contains("two containers claim the same IP"), "{m}");
    let inc = with_action(&lines, "incident")
        .into_iter()
        .find(|v| {
            v["tracer"]["incident"]["hint"]
                .as_str()
                .is_some_and(|h| h.contains(&ip))
        })
        .unwrap_or_else(|| panic!("no incident about {ip}"));
    let hint = inc["tracer"]["incident"]["hint"].as_str().unwrap_or("");
    assert!(
        hint.contains(&format!(
            "nsenter --net=$(docker inspect -f '{{{{.NetworkSettings.SandboxKey}}}}' {thief}) ip -br addr"
        )),
        "{hint}"
    );
}
