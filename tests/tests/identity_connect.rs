//! A real swarm service on the machine's dockerd: a client container on
//! the service's overlay network connects to the service's VIP. This
//! kernel has no IPVS, so the VIP is not served here; tracer must name the
//! service, say the address is its VIP, that it is not served on this
//! host, and give the hint (endpoint_mode dnsrr or the ip_vs module).
//!
//! `cargo xtask test` prepares dockerd, the busybox image and the swarm
//! (this file's name starts with `identity`). Names are unique per run
//! and removed on drop; Docker picks the subnets.

use std::{
    fs,
    net::{SocketAddr, TcpStream},
    os::{fd::AsFd, unix::fs::MetadataExt},
    process::Command,
    time::{Duration, Instant},
};

use tracer_tests::{require_root, sh, sh_quiet, unique_tag, with_action, Tracer};

const IMAGE: &str = "tracer-test-busybox:latest";

#[derive(Default)]
struct Docker {
    containers: Vec<String>,
    services: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Docker {
    fn drop(&mut self) {
        tracer_tests::docker_rm_all(&self.services, &self.containers, &self.networks);
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn connect_to_a_swarm_vip_not_served_here_names_the_service_and_the_hint() {
    require_root();
    assert!(
        Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .is_ok_and(|o| o.status.success()),
        "Docker Engine with image {IMAGE} needed (`cargo xtask test` prepares both)"
    );
    let mut d = Docker::default();
    let (tag, _) = unique_tag();
    let net = format!("tcvn{tag}");
    sh_quiet(&["docker", "network", "rm", &net]);
    sh(&[
        "docker",
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        &net,
    ]);
    d.networks.push(net.clone());
    let svc = format!("tcvs{tag}");
    d.services.push(svc.clone());
    sh(&[
        "docker",
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        &svc,
        "--network",
        &net,
        "--stop-grace-period",
        "1s",
        IMAGE,
        "sleep",
        "3600",
    ]);
    let mut vip = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            vip = sh(&[
                "docker",
                "service",
                "inspect",
                "-f",
                "{{range .Endpoint.VirtualIPs}}{{.Addr}} {{end}}",
                &svc,
            ])
            .split_whitespace()
            .next()
            .and_then(|a| a.split('/').next())
            .unwrap_or("")
            .to_string();
            !vip.is_empty()
        }),
        "service {svc} has no VIP"
    );
    let client = format!("tcvc{tag}");
    sh_quiet(&["docker", "rm", "-f", &client]);
    sh(&[
        "docker",
        "run",
        "-d",
        "--name",
        &client,
        "--network",
        &net,
        IMAGE,
        "sleep",
        "3600",
    ]);
    d.containers.push(client.clone());
    let pid: u32 = sh(&["docker", "inspect", "-f", "{{.State.Pid}}", &client])
        .trim()
        .parse()
        .expect("pid");
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns_c = fs::metadata(&ns_path).expect("client netns").ino();

    let dir = std::env::temp_dir().join(format!("tracer-vip-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("capture dir");
    let cap = dir.join("vip.capture");
    let cap_s = cap.to_string_lossy().into_owned();
    let t = Tracer::start(&["--netns", &ns_c.to_string(), "--record", &cap_s]);
    // Identity from Docker (containers, networks, services) is in.
    t.wait_for(Duration::from_secs(20), |v| {
        v["event"]["action"] == "enrichment_status"
            && v["tracer"]["enrichment"]["source"] == "docker"
            && v["tracer"]["enrichment"]["state"] == "ok"
    })
    .unwrap_or_else(|| panic!("docker identity not available; stderr: {}", t.stderr()));

    let to: SocketAddr = format!("{vip}:80").parse().unwrap();
    let file = fs::File::open(&ns_path).expect("open netns");
    let r = std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        TcpStream::connect_timeout(&to, Duration::from_secs(8)).map(|_| ())
    })
    .join()
    .expect("client thread");
    assert!(r.is_err(), "the VIP answered: this host serves it ({r:?})");
    let got = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "connect_failed"
    });
    let (lines, raw) = t.stop();
    for l in raw
        .iter()
        .filter(|l| l.contains("\"connect_failed\"") || l.contains("\"incident\""))
    {
        eprintln!("raw line: {l}");
    }
    let a = got.unwrap_or_else(|| {
        let seen: Vec<String> = lines
            .iter()
            .filter(|v| v["event"]["kind"] != "state")
            .map(|v| v.to_string())
            .collect();
        panic!("no connect_failed alert; lines: {seen:#?}")
    });
    let m = a["message"].as_str().unwrap_or("");
    assert_eq!(a["destination"]["ip"], vip.as_str(), "{a}");
    assert_eq!(a["destination"]["port"], 80);
    assert_eq!(a["tracer"]["service"]["name"], svc.as_str(), "{a}");
    assert_eq!(a["tracer"]["service"]["vip"], true);
    assert_eq!(a["tracer"]["service"]["network"], net.as_str());
    assert_eq!(a["tracer"]["alert"]["vip_not_served"], true, "{a}");
    assert!(
        m.contains(&format!("swarm service {svc} at its VIP {vip}:80")),
        "{m}"
    );
    assert!(m.contains("not served on this host"), "{m}");
    assert!(m.contains(&client), "client container named: {m}");
    let hint = a["tracer"]["alert"]["hint"].as_str().unwrap_or("");
    assert!(hint.contains("dnsrr") && hint.contains("ip_vs"), "{hint}");
    // Events to the VIP carry the service too.
    let to_vip: Vec<_> = with_action(&lines, "tcp_retransmit")
        .into_iter()
        .filter(|v| v["destination"]["ip"] == vip.as_str())
        .collect();
    assert!(
        to_vip
            .iter()
            .all(|v| v["tracer"]["service"]["name"] == svc.as_str()),
        "{to_vip:?}"
    );
    // One incident says the same, with the hint.
    let inc = with_action(&lines, "incident");
    let i = inc
        .iter()
        .find(|v| {
            v["tracer"]["incident"]
                .to_string()
                .contains("not served on this host")
        })
        .unwrap_or_else(|| panic!("no incident about the VIP: {inc:?}"));
    assert!(i["tracer"]["incident"].to_string().contains("dnsrr"), "{i}");

    // Replay names the same service from the recorded identity updates and
    // prints the same alert and incident lines, byte for byte.
    let out = Command::new(tracer_tests::tracer_bin())
        .arg("replay")
        .arg(&cap)
        .output()
        .expect("run tracer replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = String::from_utf8(out.stdout).expect("utf-8");
    let verdicts = |text: &mut dyn Iterator<Item = String>| -> Vec<String> {
        text.filter(|l| l.contains("\"connect_failed\"") || l.contains("\"action\":\"incident\""))
            .collect()
    };
    let live_v = verdicts(&mut raw.iter().cloned());
    let replay_v = verdicts(&mut replayed.lines().map(str::to_string));
    assert!(!live_v.is_empty());
    assert_eq!(live_v, replay_v, "replay differs from the live run");
    let _ = fs::remove_dir_all(&dir);
}
