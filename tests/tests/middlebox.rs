//! Seeds 000/003: a long-lived connection through a stateful load balancer
//! that forgets it while it is idle. This kernel has no IPVS: the load
//! balancer is a namespace doing nftables DNAT with a per-namespace conntrack
//! timeout of a few seconds (and `nf_conntrack_tcp_loose=0`, so a mid-stream
//! segment of a forgotten flow is INVALID and never translated again).

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{require_root, sh, tracer_bin, unique_tag, with_action, Netns, Tracer};

/// Seconds the established conntrack entry lives in the lb namespace.
const CT_TIMEOUT_S: u64 = 3;
/// How long the connection stays idle (well past the timeout).
const IDLE: Duration = Duration::from_secs(6);

struct Topo {
    client: Netns,
    lb: Netns,
    server: Netns,
    client_ip: String,
    vip: String,
    server_ip: String,
}

/// client ns ── veth ── lb ns (router, DNAT vip:8080 → server:8080) ── veth ── server ns
fn topo() -> Topo {
    let (tag, n) = unique_tag();
    let client = Netns::new(&format!("idc-{tag}"));
    let lb = Netns::new(&format!("idlb-{tag}"));
    let server = Netns::new(&format!("ids-{tag}"));
    let (c_if, s_if) = (format!("idc{tag}"), format!("ids{tag}"));
    let net = |x: u8, h: u8| format!("10.{}.{x}.{h}", 100 + n % 100);
    let (client_ip, vip, server_ip) = (net(1, 1), net(9, 100), net(2, 2));
    for (ns, name, lb_ip, ip) in [
        (&client, &c_if, net(1, 254), &client_ip),
        (&server, &s_if, net(2, 254), &server_ip),
    ] {
        sh(&[
            "ip", "-n", &lb.name, "link", "add", name, "type", "veth", "peer", "name", "eth0",
            "netns", &ns.name,
        ]);
        lb.ip(&["addr", "add", &format!("{lb_ip}/24"), "dev", name]);
        lb.ip(&["link", "set", name, "up"]);
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "default", "via", &lb_ip]);
    }
    let in_lb = |args: &[&str]| {
        let mut a = vec!["ip", "netns", "exec", lb.name.as_str()];
        a.extend_from_slice(args);
        sh(&a)
    };
    in_lb(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let rules = format!(
        "table ip lbnat {{
           chain prerouting {{ type nat hook prerouting priority dstnat; \
             ip daddr {vip} tcp dport 8080 dnat to {server_ip}:8080; }}
         }}
         table ip lbfilter {{
           chain forward {{ type filter hook forward priority 0; ct state invalid drop; }}
         }}"
    );
    let rules_file = std::env::temp_dir().join(format!("tracer-idle-{tag}.nft"));
    std::fs::write(&rules_file, rules).expect("write nft rules");
    in_lb(&["nft", "-f", rules_file.to_str().expect("path")]);
    let _ = std::fs::remove_file(&rules_file);
    // conntrack is loaded now: its per-namespace settings exist.
    in_lb(&[
        "sysctl",
        "-qw",
        &format!("net.netfilter.nf_conntrack_tcp_timeout_established={CT_TIMEOUT_S}"),
    ]);
    in_lb(&["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"]);
    Topo {
        client,
        lb,
        server,
        client_ip,
        vip,
        server_ip,
    }
}

fn alert(v: &Value) -> &Value {
    &v["tracer"]["alert"]
}

#[test]
fn idle_connection_forgotten_by_a_nat_namespace_is_one_alert() {
    require_root();
    let topo = topo();
    // tracer first: it may take seconds to attach on a loaded machine, longer
    // than the lb's conntrack timeout, which must only start counting once
    // the connection is up and tracer watches.
    let dir = std::env::temp_dir().join(format!("tracer-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let capture = dir.join("idle.capture");
    let cap = capture.to_str().expect("path").to_string();
    let nss: Vec<String> = [&topo.client, &topo.lb, &topo.server]
        .iter()
        .map(|n| n.inode().to_string())
        .collect();
    let t = Tracer::start(&[
        "--netns",
        nss[0].as_str(),
        "--netns",
        nss[1].as_str(),
        "--netns",
        nss[2].as_str(),
        "--idle-min",
        "2s",
        "--record",
        &cap,
    ]);

    let sip = topo.server_ip.clone();
    let listener = topo
        .server
        .run(move || TcpListener::bind((sip.as_str(), 8080)).expect("listen"));
    let target = format!("{}:8080", topo.vip);
    let mut client = topo
        .client
        .run(move || TcpStream::connect(target).expect("connect through the DNAT"));
    let (mut server, _) = listener.accept().expect("accept");
    // Never hang on a lost segment: a read that takes this long fails.
    for s in [&server, &client] {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
    }
    let client_port = client.local_addr().expect("local addr").port();

    // The connection works: data both ways, every segment acknowledged.
    client.write_all(b"hello").expect("write");
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).expect("read");
    server.write_all(b"world").expect("answer");
    client.read_exact(&mut buf).expect("read answer");
    let quiet_from = Instant::now();
    std::thread::sleep(IDLE);
    // The lb forgot the flow: this send and its retransmits die there.
    let idle_real = quiet_from.elapsed();
    client.write_all(b"still there?").expect("write after idle");

    let a = t.wait_for(Duration::from_secs(30), |v| {
        v["event"]["action"] == "idle_flow_killed"
    });
    // Let the incident line follow.
    std::thread::sleep(Duration::from_millis(500));
    let (lines, raw) = t.stop();
    let a = a.unwrap_or_else(|| {
        let rtx: Vec<_> = with_action(&lines, "tcp_retransmit");
        let drops: Vec<_> = with_action(&lines, "skb_drop");
        panic!("no idle_flow_killed alert; retransmits: {rtx:#?}\ndrops: {drops:#?}")
    });
    eprintln!("alert: {a}");

    // The kernel records carried the socket's ACK age.
    let rtx = with_action(&lines, "tcp_retransmit");
    assert!(
        rtx.iter()
            .any(|r| r["tracer"]["tcp"]["ack_age_ms"].as_u64().is_some()),
        "retransmits without ack_age_ms: {rtx:#?}"
    );

    // How long it was idle: what we waited (from the last ACK the client
    // received to the send), within the measurement's slack.
    let idle_s = alert(&a)["idle_s"].as_f64().expect("idle_s");
    let waited = idle_real.as_secs_f64();
    assert!(
        idle_s >= waited - 0.3 && idle_s <= waited + 1.0,
        "idle_s {idle_s} vs waited {waited}"
    );
    // The flow: client → the DNAT'd address.
    assert_eq!(a["source"]["ip"], topo.client_ip.as_str());
    assert_eq!(a["source"]["port"], client_port);
    assert_eq!(a["destination"]["ip"], topo.vip.as_str());
    assert_eq!(a["destination"]["port"], 8080);
    assert_eq!(alert(&a)["source"]["netns"]["inode"], topo.client.inode());
    // Where its segments died: the lb namespace, named.
    let d = &alert(&a)["dropped_in"];
    assert_eq!(d["netns"]["inode"], topo.lb.inode(), "{a}");
    assert_eq!(d["netns"]["name"], topo.lb.name.as_str(), "{a}");
    assert!(d["count"].as_u64().unwrap_or(0) >= 2, "{a}");
    assert!(!d["reason"].as_str().unwrap_or("").is_empty(), "{a}");
    let msg = a["message"].as_str().expect("message");
    assert!(
        msg.contains(&format!(
            "every segment was dropped in netns {}",
            topo.lb.name
        )),
        "{msg}"
    );
    assert!(
        msg.contains("a stateful device forgot the connection"),
        "{msg}"
    );
    let hint = alert(&a)["hint"].as_str().expect("hint");
    assert!(hint.contains("net.ipv4.tcp_keepalive_time"), "{hint}");
    assert!(hint.contains("endpoint_mode: dnsrr"), "{hint}");

    // One incident says it with the same hint.
    let inc = with_action(&lines, "incident");
    let last = inc.last().expect("an incident");
    let text = last["message"].as_str().unwrap_or("");
    assert!(
        text.contains("stateful device forgot the idle connection"),
        "{text}"
    );
    assert!(
        last["tracer"]["incident"]["hint"]
            .as_str()
            .unwrap_or("")
            .contains("tcp_keepalive_time"),
        "{last}"
    );

    // Replay reproduces the alert byte for byte (the idle span is in the
    // kernel records).
    let live_line = raw
        .iter()
        .find(|l| l.contains("\"action\":\"idle_flow_killed\""))
        .expect("raw alert line")
        .clone();
    let out = Command::new(tracer_bin())
        .args(["replay", &cap, "--idle-min", "2s"])
        .output()
        .expect("run tracer replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = String::from_utf8_lossy(&out.stdout);
    assert!(
        replayed.lines().any(|l| l == live_line),
        "replay did not reproduce {live_line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop((client, server));
}
