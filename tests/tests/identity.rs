//! Container identity against a real Docker Engine: containers on a
//! user-defined bridge and on a swarm-mode overlay network, real traffic
//! between them, and the names tracer puts on the events.
//!
//! `cargo xtask test` starts dockerd, builds `tracer-test-busybox:latest`
//! and initialises a single-node swarm because this file exists. Every test
//! uses its own network, container and service names (removed on drop),
//! and Docker picks the subnets: no fixed address ranges.

use std::{
    fs,
    io::Write,
    net::{IpAddr, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsFd, unix::fs::MetadataExt},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{ecs_mac, require_root, sh, sh_quiet, unique_tag, with_action, Tracer};

const IMAGE: &str = "tracer-test-busybox:latest";

/// Docker objects created by a test, removed on drop (also on panic).
#[derive(Default)]
struct Docker {
    containers: Vec<String>,
    services: Vec<String>,
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

    fn network(&mut self, name: &str, overlay: bool) -> String {
        let mut args = vec!["docker", "network", "create"];
        if overlay {
            args.extend(["-d", "overlay", "--attachable"]);
        }
        args.push(name);
        sh_quiet(&["docker", "network", "rm", name]);
        let id = sh(&args).trim().to_string();
        self.networks.push(name.to_string());
        id
    }

    /// `docker run -d` on `network` with extra args; returns the full id.
    fn run(&mut self, name: &str, network: &str, extra: &[&str]) -> String {
        sh_quiet(&["docker", "rm", "-f", name]);
        let mut args = vec!["docker", "run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.extend([IMAGE, "sleep", "3600"]);
        let id = sh(&args).trim().to_string();
        self.containers.push(name.to_string());
        id
    }

    fn service(&mut self, name: &str, network: &str) {
        sh_quiet(&["docker", "service", "rm", name]);
        self.services.push(name.to_string());
        sh(&[
            "docker",
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            name,
            "--network",
            network,
            "--stop-grace-period",
            "1s",
            IMAGE,
            "sleep",
            "3600",
        ]);
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        tracer_tests::docker_rm_all(&self.services, &self.containers, &self.networks);
    }
}

fn inspect(name: &str, format: &str) -> String {
    sh(&["docker", "inspect", "-f", format, name])
        .trim()
        .to_string()
}

fn pid_of(name: &str) -> u32 {
    inspect(name, "{{.State.Pid}}")
        .parse()
        .unwrap_or_else(|e| panic!("pid of {name}: {e}"))
}

fn netns_inode(pid: u32) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/net"))
        .expect("container netns")
        .ino()
}

fn host_inode() -> u64 {
    fs::metadata("/proc/self/ns/net").expect("own netns").ino()
}

fn ip_on(name: &str, network: &str) -> String {
    inspect(
        name,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
    )
}

fn mac_on(name: &str, network: &str) -> String {
    inspect(
        name,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").MacAddress}}}}"),
    )
}

/// Runs `f` on a thread inside the network namespace of process `pid`.
fn in_netns<T: Send + 'static>(pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = fs::File::open(format!("/proc/{pid}/ns/net")).expect("open netns");
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

fn nsenter(pid: u32, args: &[&str]) -> std::process::Output {
    let p = pid.to_string();
    let mut a = vec!["-t", p.as_str(), "-n"];
    a.extend_from_slice(args);
    Command::new("nsenter").args(&a).output().expect("nsenter")
}

/// Empties the container's ARP cache (busybox's `ip neigh flush` does not)
/// and pings once, so an ARP exchange happens.
fn arp_ping(pid: u32, ip: &str) {
    nsenter(pid, &["ip", "neigh", "flush", "all"]);
    nsenter(pid, &["ping", "-c", "1", "-W", "2", ip]);
}

fn netns_args(inodes: &[u64]) -> Vec<String> {
    inodes
        .iter()
        .flat_map(|n| ["--netns".to_string(), n.to_string()])
        .collect()
}

fn start(args: &[String]) -> Tracer {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Tracer::start(&a)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// RFC 3339 `@timestamp` (UTC, as tracer prints it) to Unix ns.
fn ts_ns(v: &Value) -> i128 {
    let t = s(&v["@timestamp"]);
    let num = |r: std::ops::Range<usize>| -> i128 { t[r].parse().unwrap_or(0) };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from civil (H. Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    let frac = t.get(20..t.len() - 1).unwrap_or("0");
    let nanos: i128 = format!("{frac:0<9}")[..9].parse().unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

#[test]
fn timestamp_parser() {
    let v = serde_json::json!({"@timestamp": "2023-11-14T22:13:20.123456789Z"});
    assert_eq!(ts_ns(&v), 1_700_000_000_123_456_789);
}

/// The bridge port (host side) a MAC was learned on.
fn fdb_port(bridge: &str, mac: &str) -> Option<String> {
    let out = sh(&["bridge", "-j", "fdb", "show", "br", bridge]);
    let v: Value = serde_json::from_str(&out).ok()?;
    v.as_array()?
        .iter()
        .find(|e| s(&e["mac"]) == mac && e.get("master").is_some() && s(&e["ifname"]) != bridge)
        .map(|e| s(&e["ifname"]).to_string())
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn bridge_network_arp_and_fdb_events_name_containers_ports_and_network() {
    let mut d = Docker::new();
    let (tag, _) = unique_tag();
    let net = format!("tidb{tag}");
    let net_id = d.network(&net, false);
    let bridge = format!("br-{}", &net_id[..12]);
    let (a, b) = (format!("tida{tag}"), format!("tidb{tag}"));
    let project = format!("proj{tag}");
    d.run(&a, &net, &[]);
    d.run(
        &b,
        &net,
        &[
            "--label",
            &format!("com.docker.compose.project={project}"),
            "--label",
            "com.docker.compose.service=db",
        ],
    );
    let pid_a = pid_of(&a);
    let (ns_a, host) = (netns_inode(pid_a), host_inode());
    let (ip_a, ip_b) = (ip_on(&a, &net), ip_on(&b, &net));
    let (mac_a, mac_b) = (mac_on(&a, &net), mac_on(&b, &net));

    let t = start(&netns_args(&[host, ns_a]));
    // An ARP exchange A → B, seen in A's namespace.
    arp_ping(pid_a, &ip_b);
    // (The reply also crosses the bridge: the host namespace sees it too.)
    let reply = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "arp_reply"
            && v["source"]["ip"] == ip_b.as_str()
            && v["tracer"]["netns"]["inode"] == ns_a
    });
    // Forget A's MAC on the bridge and let A speak again: a fresh learn on
    // A's port, after a delete.
    let port_a = fdb_port(&bridge, &mac_a).expect("A's MAC learned on the bridge");
    sh(&["bridge", "fdb", "del", &mac_a, "dev", &port_a, "master"]);
    nsenter(pid_a, &["ping", "-c", "1", "-W", "2", &ip_b]);
    let ecs_a = ecs_mac(&mac_a);
    let learn = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "fdb_learn" && v["source"]["mac"] == ecs_a.as_str()
    });
    let (lines, _) = t.stop();

    let reply = reply.expect("ARP reply from B seen in A");
    assert_eq!(reply["tracer"]["netns"]["inode"], ns_a);
    assert_eq!(reply["container"]["name"], a.as_str(), "{reply}");
    assert_eq!(reply["container"]["runtime"], "docker");
    assert_eq!(reply["container"]["image"]["name"], IMAGE);
    assert_eq!(s(&reply["container"]["id"]).len(), 64);
    assert!(
        !s(&reply["tracer"]["netns"]["name"]).is_empty(),
        "A's sandbox namespace is named: {reply}"
    );
    assert_eq!(reply["source"]["mac"], ecs_mac(&mac_b).as_str());
    assert_eq!(reply["destination"]["ip"], ip_a.as_str());
    assert_eq!(reply["source"]["container"]["name"], b.as_str(), "{reply}");
    assert_eq!(
        reply["source"]["container"]["compose"]["project"],
        project.as_str()
    );
    assert_eq!(reply["source"]["container"]["compose"]["service"], "db");
    assert_eq!(
        reply["destination"]["container"]["name"],
        a.as_str(),
        "{reply}"
    );

    // A's neighbour entry for B names B.
    let neigh: Vec<&Value> = with_action(&lines, "neigh_update")
        .into_iter()
        .filter(|v| {
            v["destination"]["ip"] == ip_b.as_str() && v["tracer"]["netns"]["inode"] == ns_a
        })
        .collect();
    assert!(
        neigh
            .iter()
            .any(|v| v["destination"]["container"]["name"] == b.as_str()
                && v["container"]["name"] == a.as_str()),
        "no neigh_update naming B: {neigh:?}"
    );

    for v in [learn.expect("fdb_learn for A's MAC")].iter().chain(
        with_action(&lines, "fdb_delete")
            .into_iter()
            .filter(|v| v["source"]["mac"] == ecs_a.as_str()),
    ) {
        assert_eq!(v["tracer"]["netns"]["inode"], host, "{v}");
        assert_eq!(v["tracer"]["bridge"], bridge.as_str());
        assert_eq!(v["tracer"]["port"], port_a.as_str());
        assert!(
            v.get("container").is_none(),
            "the host namespace is no container's: {v}"
        );
        assert_eq!(v["source"]["container"]["name"], a.as_str(), "{v}");
        let p = &v["tracer"]["port_peer"];
        assert_eq!(p["kind"], "container", "{v}");
        assert_eq!(p["interface"], port_a.as_str());
        assert_eq!(p["container"]["name"], a.as_str());
        assert_eq!(p["network"], net.as_str());
    }
    assert!(
        with_action(&lines, "fdb_delete")
            .iter()
            .any(|v| v["source"]["mac"] == ecs_a.as_str()),
        "the deleted entry was reported"
    );
}

#[test]
fn tcp_resets_retransmits_and_drops_name_local_and_remote_containers() {
    let mut d = Docker::new();
    let (tag, _) = unique_tag();
    let net = format!("tidt{tag}");
    d.network(&net, false);
    let (a, b) = (format!("tita{tag}"), format!("titb{tag}"));
    let id_a = d.run(&a, &net, &[]);
    d.run(&b, &net, &[]);
    let (pid_a, pid_b) = (pid_of(&a), pid_of(&b));
    let (ns_a, ns_b) = (netns_inode(pid_a), netns_inode(pid_b));
    let (ip_a, ip_b) = (ip_on(&a, &net), ip_on(&b, &net));
    let ip_b_addr: IpAddr = ip_b.parse().unwrap();

    // An established connection A → B, opened before the tracer starts.
    let listener = in_netns(pid_b, move || {
        TcpListener::bind((ip_b_addr, 0)).expect("listen in B")
    });
    let port = listener.local_addr().unwrap().port();
    let mut client = in_netns(pid_a, move || {
        TcpStream::connect((ip_b_addr, port)).expect("connect A → B")
    });
    let (server, _) = listener.accept().expect("accept");
    let local_port = client.local_addr().unwrap().port();

    let t = start(&netns_args(&[ns_a, ns_b]));
    // A reset: A connects to a port nothing listens on in B.
    let refused = in_netns(pid_a, move || {
        TcpStream::connect_timeout(&(ip_b_addr, 1).into(), Duration::from_secs(3))
    });
    assert!(
        refused.is_err(),
        "port 1 of a busybox container accepted a connection"
    );
    // A drop: UDP to a closed port of B. Drop lines are rate-limited
    // host-wide (a busy host may summarise one second's worth): try again
    // in a later second if needed.
    let mut dropped = None;
    let mut sport = 0;
    for _ in 0..5 {
        sport = in_netns(pid_a, move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..3 {
                s.send_to(b"anyone?", (ip_b_addr, 9)).unwrap();
            }
            s.local_addr().unwrap().port()
        });
        dropped = t.wait_for(Duration::from_millis(1500), |v| {
            v["event"]["action"] == "skb_drop" && v["source"]["port"] == sport
        });
        if dropped.is_some() {
            break;
        }
    }
    // Retransmits: B can no longer answer A.
    nsenter(
        pid_b,
        &["ip", "route", "add", "blackhole", &format!("{ip_a}/32")],
    );
    client.write_all(b"are you there?").unwrap();
    let rtx = t.wait_for(Duration::from_secs(15), |v| {
        v["event"]["action"] == "tcp_retransmit" && v["source"]["port"] == local_port
    });
    let sent = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "tcp_reset" && v["tracer"]["tcp"]["direction"] == "sent"
    });
    let received = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "tcp_reset" && v["tracer"]["tcp"]["direction"] == "received"
    });
    let (lines, _) = t.stop();
    drop(server);

    let r = rtx.expect("tcp_retransmit from A");
    assert_eq!(r["tracer"]["netns"]["inode"], ns_a);
    assert_eq!(r["container"]["name"], a.as_str(), "{r}");
    assert_eq!(r["container"]["id"], id_a.as_str());
    assert_eq!(r["container"]["runtime"], "docker");
    assert_eq!(r["destination"]["ip"], ip_b.as_str());
    assert_eq!(r["destination"]["container"]["name"], b.as_str(), "{r}");

    let sent = sent.expect("reset sent by B");
    assert_eq!(sent["tracer"]["netns"]["inode"], ns_b);
    assert_eq!(sent["container"]["name"], b.as_str(), "{sent}");
    assert_eq!(sent["destination"]["ip"], ip_a.as_str());
    assert_eq!(
        sent["destination"]["container"]["name"],
        a.as_str(),
        "{sent}"
    );

    let received = received.expect("reset received by A");
    assert_eq!(received["tracer"]["netns"]["inode"], ns_a);
    assert_eq!(received["container"]["name"], a.as_str(), "{received}");
    assert_eq!(received["source"]["ip"], ip_b.as_str());
    assert_eq!(
        received["source"]["container"]["name"],
        b.as_str(),
        "{received}"
    );

    let dr = dropped.unwrap_or_else(|| {
        panic!(
            "no skb_drop of the UDP datagram from port {sport} in B; drops seen: {:?}; summaries: {:?}; loss: {:?}",
            with_action(&lines, "skb_drop"),
            with_action(&lines, "drop_summary"),
            with_action(&lines, "loss_report").last()
        )
    });
    assert_eq!(dr["tracer"]["netns"]["inode"], ns_b);
    assert_eq!(dr["tracer"]["reason"], "NO_SOCKET");
    assert_eq!(dr["container"]["name"], b.as_str(), "{dr}");
    assert_eq!(dr["source"]["container"]["name"], a.as_str(), "{dr}");
    assert_eq!(dr["destination"]["container"]["name"], b.as_str(), "{dr}");
}

#[test]
fn swarm_overlay_fdb_moves_name_the_service_task_the_vxlan_and_the_network() {
    let mut d = Docker::new();
    let (tag, _) = unique_tag();
    let net = format!("tido{tag}");
    let net_id = d.network(&net, true);
    let svc = format!("tids{tag}");
    d.service(&svc, &net);
    let client = format!("tidc{tag}");
    d.run(&client, &net, &[]);
    // The service's task container, once it runs.
    let mut task = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            task = sh(&[
                "docker",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                &format!("label=com.docker.swarm.service.name={svc}"),
            ])
            .trim()
            .to_string();
            !task.is_empty() && !ip_on(&task, &net).is_empty()
        }),
        "service {svc} has no running task"
    );
    let task_name = inspect(&task, "{{.Name}}")
        .trim_start_matches('/')
        .to_string();
    let (task_ip, task_mac) = (ip_on(&task, &net), mac_on(&task, &net));
    let pid_c = pid_of(&client);
    let ns_c = netns_inode(pid_c);
    let ov_name = format!("1-{}", &net_id[..10]);
    let ov_path = format!("/var/run/docker/netns/{ov_name}");
    assert!(
        wait_until(Duration::from_secs(20), || fs::metadata(&ov_path).is_ok()),
        "no overlay namespace {ov_path}"
    );
    let ns_ov = fs::metadata(&ov_path).unwrap().ino();

    let t = start(&netns_args(&[ns_ov, ns_c]));
    // The legacy overlay driver's static entry: vxlan0 answers ARP for the
    // task as well, so the task's MAC moves vxlan0 ↔ its veth.
    sh(&[
        "nsenter",
        &format!("--net={ov_path}"),
        "ip",
        "neigh",
        "replace",
        &task_ip,
        "lladdr",
        &task_mac,
        "dev",
        "vxlan0",
        "nud",
        "permanent",
    ]);
    let ecs_task = ecs_mac(&task_mac);
    let mut mv = None;
    for _ in 0..4 {
        arp_ping(pid_c, &task_ip);
        mv = t.wait_for(Duration::from_secs(3), |v| {
            v["event"]["action"] == "fdb_move" && v["source"]["mac"] == ecs_task.as_str()
        });
        if mv.is_some() {
            break;
        }
    }
    let reply = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "arp_reply"
            && v["source"]["ip"] == task_ip.as_str()
            && v["tracer"]["netns"]["inode"] == ns_c
    });
    let (lines, _) = t.stop();

    let mv = mv.expect("fdb_move of the task's MAC in the overlay namespace");
    assert_eq!(mv["tracer"]["netns"]["inode"], ns_ov);
    assert_eq!(mv["tracer"]["netns"]["name"], ov_name.as_str(), "{mv}");
    assert_eq!(mv["tracer"]["netns"]["network"], net.as_str(), "{mv}");
    assert_eq!(
        mv["source"]["container"]["swarm"]["service"],
        svc.as_str(),
        "{mv}"
    );
    assert_eq!(mv["source"]["container"]["name"], task_name.as_str());
    let peers = [
        &mv["tracer"]["port_peer"],
        &mv["tracer"]["previous_port_peer"],
    ];
    let vx = peers
        .iter()
        .find(|p| p["kind"] == "vxlan")
        .unwrap_or_else(|| panic!("one side of the move is vxlan0: {mv}"));
    assert_eq!(vx["interface"], "vxlan0");
    assert_eq!(vx["network"], net.as_str(), "{mv}");
    let ct = peers
        .iter()
        .find(|p| p["kind"] == "container")
        .unwrap_or_else(|| panic!("one side of the move is the task's veth: {mv}"));
    assert_eq!(ct["container"]["swarm"]["service"], svc.as_str(), "{mv}");
    assert_eq!(ct["container"]["swarm"]["task"], task_name.as_str(), "{mv}");
    assert_eq!(ct["container"]["name"], task_name.as_str());
    assert_eq!(ct["network"], net.as_str());
    // Every FDB line of the overlay namespace carries the network.
    for v in lines.iter().filter(|v| {
        s(&v["event"]["action"]).starts_with("fdb_") && v["tracer"]["netns"]["inode"] == ns_ov
    }) {
        assert_eq!(v["tracer"]["netns"]["network"], net.as_str(), "{v}");
    }

    let reply = reply.expect("ARP reply for the task seen in the client");
    assert_eq!(reply["container"]["name"], client.as_str(), "{reply}");
    assert_eq!(
        reply["source"]["container"]["swarm"]["service"],
        svc.as_str(),
        "{reply}"
    );
    assert_eq!(
        reply["destination"]["container"]["name"],
        client.as_str(),
        "{reply}"
    );
}

#[test]
fn container_started_after_the_tracer_is_named_within_a_second() {
    let mut d = Docker::new();
    let (tag, _) = unique_tag();
    let net = format!("tidl{tag}");
    d.network(&net, false);
    let a = format!("tila{tag}");
    d.run(&a, &net, &[]);
    let ip_a: IpAddr = ip_on(&a, &net).parse().unwrap();

    let t = Tracer::start(&["--action", "tcp_reset"]);
    let late = format!("tilz{tag}");
    d.run(&late, &net, &[]);
    let pid = pid_of(&late);
    let ns = netns_inode(pid);
    // From its first moment: connections to a closed port of A, every 100 ms.
    in_netns(pid, move || {
        for _ in 0..25 {
            let _ = TcpStream::connect_timeout(&(ip_a, 1).into(), Duration::from_secs(1));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let (lines, _) = t.stop();

    let ours: Vec<&Value> = with_action(&lines, "tcp_reset")
        .into_iter()
        .filter(|v| v["tracer"]["netns"]["inode"] == ns)
        .collect();
    assert!(
        ours.len() >= 10,
        "resets received in the new container: {ours:?}"
    );
    let first = ts_ns(ours[0]);
    let first_named = ours
        .iter()
        .find(|v| v["container"]["name"] == late.as_str())
        .map(|v| ts_ns(v) - first);
    eprintln!(
        "first event named {} ms after the container's first event",
        first_named.map_or(-1, |n| n / 1_000_000)
    );
    let after: Vec<&&Value> = ours
        .iter()
        .filter(|v| ts_ns(v) - first >= 1_000_000_000)
        .collect();
    assert!(!after.is_empty(), "events more than 1 s after the first");
    for v in after {
        assert_eq!(
            v["container"]["name"],
            late.as_str(),
            "not named 1 s after its first event: {v}"
        );
        assert_eq!(v["source"]["container"]["name"], a.as_str(), "{v}");
    }
}

#[test]
fn docker_api_unavailable_degrades_once_keeps_namespace_identity_and_recovers() {
    let mut d = Docker::new();
    let (tag, _) = unique_tag();
    let net = format!("tidd{tag}");
    d.network(&net, false);
    let (a, b) = (format!("tida{tag}"), format!("tidb{tag}"));
    d.run(&a, &net, &[]);
    let id_b = d.run(&b, &net, &[]);
    let (pid_a, pid_b) = (pid_of(&a), pid_of(&b));
    let ns_b = netns_inode(pid_b);
    let ip_b: IpAddr = ip_on(&b, &net).parse().unwrap();

    // A socket path that does not exist yet; later a link to the real one.
    let sock = std::env::temp_dir().join(format!("tracer-docker-{tag}.sock"));
    let _ = fs::remove_file(&sock);
    struct Unlink(std::path::PathBuf);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _unlink = Unlink(sock.clone());
    let sock_s = sock.to_str().unwrap().to_string();
    let t = Tracer::start(&["--docker-socket", &sock_s, "--action", "tcp_reset"]);
    let degraded = t
        .wait_for(Duration::from_secs(10), |v| {
            v["event"]["action"] == "enrichment_status"
                && v["tracer"]["enrichment"]["state"] == "degraded"
        })
        .expect("one enrichment_status line says Docker is unavailable");
    assert_eq!(degraded["event"]["kind"], "state");
    assert_eq!(degraded["tracer"]["enrichment"]["source"], "docker");
    assert!(
        s(&degraded["tracer"]["enrichment"]["reason"]).contains(&sock_s),
        "{degraded}"
    );

    let reset = |n: u32| {
        in_netns(pid_a, move || {
            for _ in 0..n {
                let _ = TcpStream::connect_timeout(&(ip_b, 1).into(), Duration::from_secs(1));
            }
        })
    };
    // Events keep flowing, with the identity /proc gives: id and runtime.
    reset(2);
    let plain = t
        .wait_for(Duration::from_secs(10), |v| {
            v["tracer"]["netns"]["inode"] == ns_b && v["tracer"]["tcp"]["direction"] == "sent"
        })
        .expect("reset sent by B while Docker is unavailable");
    assert_eq!(plain["container"]["id"], id_b.as_str(), "{plain}");
    assert_eq!(plain["container"]["runtime"], "docker");
    assert!(
        plain["container"].get("name").is_none(),
        "no name without the API: {plain}"
    );

    // The engine becomes reachable: one `ok` line, then names.
    std::os::unix::fs::symlink("/var/run/docker.sock", &sock).expect("link the socket");
    let ok = t.wait_for(Duration::from_secs(40), |v| {
        v["event"]["action"] == "enrichment_status" && v["tracer"]["enrichment"]["state"] == "ok"
    });
    assert!(
        ok.is_some(),
        "enrichment recovered by itself; stderr: {}",
        t.stderr()
    );
    let seen = t.lines().len();
    reset(2);
    let named = t.wait_for(Duration::from_secs(10), |v| {
        v["tracer"]["netns"]["inode"] == ns_b
            && v["tracer"]["tcp"]["direction"] == "sent"
            && v["container"]["name"] == b.as_str()
    });
    let (lines, _) = t.stop();
    assert!(
        named.is_some(),
        "named after recovery: {:?}",
        &lines[seen.min(lines.len())..]
    );
    let status: Vec<&str> = with_action(&lines, "enrichment_status")
        .iter()
        .filter(|v| v["tracer"]["enrichment"]["source"] == "docker")
        .map(|v| s(&v["tracer"]["enrichment"]["state"]))
        .collect();
    assert_eq!(
        status,
        ["degraded", "ok"],
        "one line per change, not per retry"
    );
}

/// Removes the cgroups a test made, innermost first (Docker removes a
/// container's cgroup subtree itself; this covers a test that fails first).
struct CgroupDirs(Vec<std::path::PathBuf>);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Issue 13: a container nests a cgroup named after another container's id
/// and moves its process there (the innermost id of a cgroup path is what
/// /proc says). Docker knows where the real container's process is: the
/// identity follows Docker and the impostor is reported once, as an
/// `enrichment_status` line in state `conflict`.
#[test]
fn a_container_posing_as_another_in_its_cgroup_path_is_reported_not_believed() {
    // Declared before Docker: dropped after the containers are gone.
    let mut dirs = CgroupDirs(Vec::new());
    let mut d = Docker::new();
    let (tag, _) = unique_tag();
    let net = format!("tspoof{tag}");
    d.network(&net, false);
    let real = d.run(&format!("treal{tag}"), &net, &[]);
    let impostor = d.run(&format!("timp{tag}"), &net, &[]);
    let pid_of = |id: &str| inspect(id, "{{.State.Pid}}").trim().to_string();
    let netns_of = |pid: &str| {
        fs::metadata(format!("/proc/{pid}/ns/net"))
            .expect("netns of the container's process")
            .ino()
    };
    let (real_pid, imp_pid) = (pid_of(&real), pid_of(&impostor));
    let (real_ns, imp_ns) = (netns_of(&real_pid), netns_of(&imp_pid));
    assert_ne!(real_ns, imp_ns);

    // The impostor's process into a cgroup named after the real id, in
    // the hierarchy of the `0::` line (what tracer reads first).
    let cg = fs::read_to_string(format!("/proc/{imp_pid}/cgroup")).expect("cgroup file");
    let v2 = cg
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    assert!(v2.contains(&impostor), "{cg}");
    let root = if std::path::Path::new("/sys/fs/cgroup/unified").is_dir() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    let parent = std::path::PathBuf::from(format!("{root}{v2}/docker"));
    let nested = parent.join(&real);
    fs::create_dir_all(&nested).expect("a nested cgroup (root, cgroupfs writable)");
    dirs.0.extend([parent, nested.clone()]);
    fs::write(nested.join("cgroup.procs"), &imp_pid).expect("move the impostor's process");
    let now = fs::read_to_string(format!("/proc/{imp_pid}/cgroup")).expect("cgroup file");
    assert!(
        now.lines()
            .any(|l| l.starts_with("0::") && l.ends_with(&format!("/docker/{real}"))),
        "{now}"
    );

    let t = Tracer::start(&["--action", "enrichment_status"]);
    let conflict = t.wait_for(Duration::from_secs(20), |v| {
        v["event"]["action"] == "enrichment_status"
            && v["tracer"]["enrichment"]["state"] == "conflict"
    });
    // Later scans see the same conflict: still one line.
    std::thread::sleep(Duration::from_secs(3));
    let (lines, _) = t.stop();
    let conflict = conflict.expect("an enrichment_status conflict line");
    eprintln!("conflict line: {conflict}");
    let e = &conflict["tracer"]["enrichment"];
    assert_eq!(e["container_id"], real.as_str(), "{conflict}");
    assert_eq!(e["claimed_netns"], imp_ns, "{conflict}");
    assert_eq!(e["netns"], real_ns, "identity follows Docker: {conflict}");
    assert_eq!(e["source"], "docker", "{conflict}");
    let msg = conflict["message"].as_str().unwrap_or_default();
    assert!(msg.contains("identity follows docker"), "{msg}");
    let same: Vec<&Value> = with_action(&lines, "enrichment_status")
        .into_iter()
        .filter(|v| {
            v["tracer"]["enrichment"]["state"] == "conflict"
                && v["tracer"]["enrichment"]["container_id"] == real.as_str()
        })
        .collect();
    assert_eq!(same.len(), 1, "one line per conflict: {same:?}");
}
