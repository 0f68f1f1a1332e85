//! Foundation: each kernel event caused for real, asserted field by field.

use std::{
    io::Write,
    net::{TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{ecs_mac, require_root, send_udp, with_action, BridgeTopo, Tracer};

fn netns_args(nss: &[u64]) -> Vec<String> {
    nss.iter()
        .flat_map(|n| ["--netns".to_string(), n.to_string()])
        .collect()
}

fn start(nss: &[u64]) -> Tracer {
    let args = netns_args(nss);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Tracer::start(&a)
}

#[test]
fn every_probe_reports_status_and_exit_is_clean() {
    require_root();
    let t = Tracer::start(&["--netns", "1"]);
    let (lines, _) = t.stop();
    let status = with_action(&lines, "probe_status");
    let names: Vec<&str> = status
        .iter()
        .filter_map(|v| v["tracer"]["probe"]["name"].as_str())
        .collect();
    for p in [
        "br_fdb_update",
        "fdb_delete",
        "netif_receive_skb",
        "neigh_update",
        "tcp_retransmit_skb",
        "tcp_send_reset",
        "tcp_receive_reset",
        "kfree_skb",
    ] {
        assert!(names.contains(&p), "no status for {p}: {names:?}");
    }
    for v in &status {
        assert_eq!(v["tracer"]["probe"]["status"], "attached", "{v}");
        assert_eq!(v["event"]["kind"], "state");
    }
    // A final loss report is always printed, with the run's total.
    let loss = with_action(&lines, "loss_report");
    let last = loss.last().expect("final loss_report");
    assert_eq!(last["event"]["kind"], "metric");
    assert!(last["tracer"]["lost_total"].is_u64(), "{last}");
}

#[test]
fn mac_moving_between_bridge_ports_is_a_move_naming_both_ports() {
    require_root();
    let topo = BridgeTopo::new();
    let br_inode = topo.br_ns.inode();
    let t = start(&[br_inode]);
    // A takes a MAC the bridge has never seen and speaks: learned on port_a.
    let mac_a = topo.fresh_mac();
    topo.a.ip(&["link", "set", &topo.dev_a, "address", &mac_a]);
    topo.ping_a_to_b();
    let ecs_a = ecs_mac(&mac_a);
    let learn = t
        .wait_for(Duration::from_secs(10), |v| {
            v["event"]["action"] == "fdb_learn" && v["source"]["mac"] == ecs_a.as_str()
        })
        .expect("fdb_learn for A's MAC");
    assert_eq!(learn["tracer"]["netns"]["inode"], br_inode);
    assert_eq!(learn["tracer"]["bridge"], topo.bridge.as_str());
    assert_eq!(learn["tracer"]["port"], topo.port_a.as_str());
    assert_eq!(learn["tracer"]["interface"]["name"], topo.port_a.as_str());

    // B takes A's MAC and speaks: the bridge moves the MAC to port_b.
    topo.b.ip(&["link", "set", &topo.dev_b, "address", &mac_a]);
    let _ = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.b.name,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            &topo.ip_a,
        ])
        .output();
    let mv = t
        .wait_for(Duration::from_secs(10), |v| {
            v["event"]["action"] == "fdb_move" && v["source"]["mac"] == ecs_a.as_str()
        })
        .expect("fdb_move for A's MAC");
    let (lines, _) = t.stop();
    assert_eq!(mv["tracer"]["netns"]["inode"], br_inode);
    assert_eq!(mv["tracer"]["bridge"], topo.bridge.as_str());
    assert_eq!(mv["tracer"]["port"], topo.port_b.as_str());
    assert_eq!(mv["tracer"]["previous_port"], topo.port_a.as_str());
    assert_eq!(mv["tracer"]["vlan"], 0);
    assert_eq!(mv["event"]["kind"], "event");
    // Every FDB line is from our bridge namespace (the --netns filter).
    for v in with_action(&lines, "fdb_move") {
        assert_eq!(v["tracer"]["netns"]["inode"], br_inode);
    }
}

#[test]
fn fdb_seed_makes_first_move_after_start_a_move() {
    require_root();
    let topo = BridgeTopo::new();
    // Learned before the tracer starts.
    topo.ping_a_to_b();
    let mac_a = topo.a.mac(&topo.dev_a);
    let br_inode = topo.br_ns.inode();
    let t = start(&[br_inode]);
    topo.b.ip(&["link", "set", &topo.dev_b, "address", &mac_a]);
    let _ = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.b.name,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            &topo.ip_a,
        ])
        .output();
    let ecs_a = ecs_mac(&mac_a);
    let mv = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "fdb_move" && v["source"]["mac"] == ecs_a.as_str()
    });
    t.stop();
    let mv = mv.expect("first update after start recognised as a move");
    assert_eq!(mv["tracer"]["previous_port"], topo.port_a.as_str());
    assert_eq!(mv["tracer"]["port"], topo.port_b.as_str());
}

#[test]
fn fdb_delete_is_reported_when_a_port_goes() {
    require_root();
    let topo = BridgeTopo::new();
    let br_inode = topo.br_ns.inode();
    topo.ping_a_to_b();
    let ecs_b = ecs_mac(&topo.b.mac(&topo.dev_b));
    let t = start(&[br_inode]);
    topo.br_ns.ip(&["link", "set", &topo.port_b, "nomaster"]);
    let del = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "fdb_delete" && v["source"]["mac"] == ecs_b.as_str()
    });
    t.stop();
    let del = del.expect("fdb_delete for B's MAC");
    assert_eq!(del["tracer"]["bridge"], topo.bridge.as_str());
    assert_eq!(del["tracer"]["port"], topo.port_b.as_str());
    assert_eq!(del["tracer"]["netns"]["inode"], br_inode);
}

#[test]
fn arp_reply_names_both_ends_interface_and_netns() {
    require_root();
    let topo = BridgeTopo::new();
    let a_inode = topo.a.inode();
    let t = start(&[a_inode]);
    topo.ping_a_to_b();
    let ip_b = topo.ip_b.clone();
    let reply = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "arp_reply" && v["source"]["ip"] == ip_b.as_str()
    });
    let (lines, _) = t.stop();
    let reply = reply.expect("ARP reply from B seen in A");
    assert_eq!(reply["tracer"]["netns"]["inode"], a_inode);
    assert_eq!(reply["tracer"]["interface"]["name"], topo.dev_a.as_str());
    assert_eq!(
        reply["tracer"]["interface"]["index"],
        topo.a.ifindex(&topo.dev_a)
    );
    assert_eq!(
        reply["source"]["mac"],
        ecs_mac(&topo.b.mac(&topo.dev_b)).as_str()
    );
    assert_eq!(reply["destination"]["ip"], topo.ip_a.as_str());
    assert_eq!(
        reply["destination"]["mac"],
        ecs_mac(&topo.a.mac(&topo.dev_a)).as_str()
    );
    assert_eq!(reply["network"]["type"], "arp");
    // A's neighbour table learned B: neigh_update with B's IP and MAC.
    let neigh: Vec<&Value> = with_action(&lines, "neigh_update")
        .into_iter()
        .filter(|v| v["destination"]["ip"] == topo.ip_b.as_str())
        .collect();
    assert!(
        neigh.iter().any(
            |v| v["destination"]["mac"] == ecs_mac(&topo.b.mac(&topo.dev_b)).as_str()
                && v["tracer"]["neigh"]["new_state"] == "REACHABLE"
                && v["tracer"]["interface"]["name"] == topo.dev_a.as_str()
        ),
        "no neigh_update to REACHABLE for B: {neigh:?}"
    );
}

#[test]
fn blackholed_tcp_connection_retransmits() {
    require_root();
    let topo = BridgeTopo::new();
    let (a_inode, b_inode) = (topo.a.inode(), topo.b.inode());
    let (mut client, server, port) = topo.established_flow();
    let local_port = client.local_addr().unwrap().port();

    let t = start(&[a_inode, b_inode]);
    topo.blackhole_b_to_a();
    client.write_all(b"are you there?").unwrap();
    let ip_a = topo.ip_a.clone();
    let got = t.wait_for(Duration::from_secs(15), |v| {
        v["event"]["action"] == "tcp_retransmit"
            && v["source"]["ip"] == ip_a.as_str()
            && v["source"]["port"] == local_port
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (lines, _) = t.stop();
    let r = got.expect("tcp_retransmit from A");
    assert_eq!(r["tracer"]["netns"]["inode"], a_inode);
    assert_eq!(r["destination"]["ip"], topo.ip_b.as_str());
    assert_eq!(r["destination"]["port"], port);
    assert_eq!(r["network"]["transport"], "tcp");
    assert_eq!(r["tracer"]["tcp"]["state"], "ESTABLISHED");
    let ours: Vec<&Value> = with_action(&lines, "tcp_retransmit")
        .into_iter()
        .filter(|v| v["source"]["port"] == local_port)
        .collect();
    assert!(
        ours.len() >= 2,
        "expected repeated retransmits, got {ours:?}"
    );
    // No forward progress: snd_una never moves.
    let una: Vec<&Value> = ours
        .iter()
        .map(|v| &v["tracer"]["tcp"]["snd_una"])
        .collect();
    assert!(
        una.windows(2).all(|w| w[0] == w[1]),
        "snd_una moved: {una:?}"
    );
    drop(server);
}

#[test]
fn connection_to_closed_port_is_reset_both_ways() {
    require_root();
    let topo = BridgeTopo::new();
    let (a_inode, b_inode) = (topo.a.inode(), topo.b.inode());
    // A port nothing listens on in B.
    let ip_b = topo.ip_b.clone();
    let port = topo.b.run(move || {
        let l = TcpListener::bind((ip_b.as_str(), 0)).unwrap();
        l.local_addr().unwrap().port()
    });
    let t = start(&[a_inode, b_inode]);
    let target = format!("{}:{port}", topo.ip_b);
    let err = topo
        .a
        .run(move || TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(3)));
    assert!(err.is_err(), "connection to a closed port succeeded");
    let sent = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "tcp_reset" && v["tracer"]["tcp"]["direction"] == "sent"
    });
    let received = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "tcp_reset" && v["tracer"]["tcp"]["direction"] == "received"
    });
    t.stop();
    let sent = sent.expect("reset sent by B");
    assert_eq!(sent["tracer"]["netns"]["inode"], b_inode);
    assert_eq!(sent["source"]["ip"], topo.ip_b.as_str());
    assert_eq!(sent["source"]["port"], port);
    assert_eq!(sent["destination"]["ip"], topo.ip_a.as_str());
    let received = received.expect("reset received by A");
    assert_eq!(received["tracer"]["netns"]["inode"], a_inode);
    assert_eq!(received["source"]["ip"], topo.ip_b.as_str());
    assert_eq!(received["source"]["port"], port);
    assert_eq!(received["destination"]["ip"], topo.ip_a.as_str());
    assert_eq!(received["tracer"]["tcp"]["state"], "SYN_SENT");
}

#[test]
fn udp_to_closed_port_is_dropped_with_reason_no_socket() {
    require_root();
    let topo = BridgeTopo::new();
    let b_inode = topo.b.inode();
    let t = start(&[b_inode]);
    let sport = send_udp(&topo.a, &topo.ip_a, &topo.ip_b, 9, 3, Duration::ZERO);
    let drop_ev = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "skb_drop" && v["source"]["port"] == sport
    });
    t.stop();
    let d = drop_ev.expect("skb_drop of the UDP datagram");
    assert_eq!(d["tracer"]["reason"], "NO_SOCKET");
    assert!(d["tracer"]["reason_raw"].is_u64());
    assert_eq!(d["tracer"]["netns"]["inode"], b_inode);
    assert_eq!(d["tracer"]["interface"]["name"], topo.dev_b.as_str());
    assert_eq!(d["source"]["ip"], topo.ip_a.as_str());
    assert_eq!(d["destination"]["ip"], topo.ip_b.as_str());
    assert_eq!(d["destination"]["port"], 9);
    assert_eq!(d["network"]["transport"], "udp");
    let loc = d["tracer"]["location"].as_str().unwrap_or_default();
    assert!(
        loc.contains("udp"),
        "drop location {loc:?} is not in the UDP receive path"
    );
}

#[test]
fn filtered_drop_reasons_are_counted_not_hidden() {
    require_root();
    let topo = BridgeTopo::new();
    let b_inode = topo.b.inode();
    let args = [
        "--netns".to_string(),
        b_inode.to_string(),
        "--ignore-drop-reason".to_string(),
        "NO_SOCKET".to_string(),
    ];
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = Tracer::start(&a);
    let (ip_a, ip_b) = (topo.ip_a.clone(), topo.ip_b.clone());
    topo.a.run(move || {
        let s = UdpSocket::bind((ip_a.as_str(), 0)).unwrap();
        for _ in 0..25 {
            s.send_to(b"x", (ip_b.as_str(), 9)).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let (lines, _) = t.stop();
    let shown = with_action(&lines, "skb_drop")
        .into_iter()
        .filter(|v| v["tracer"]["reason"] == "NO_SOCKET")
        .count();
    assert_eq!(shown, 0, "filtered reason still printed");
    let filtered: u64 = with_action(&lines, "loss_report")
        .into_iter()
        .filter_map(|v| v["tracer"]["filtered"]["NO_SOCKET"].as_u64())
        .sum();
    // Host-wide count (the kernel filter is not per namespace): at least ours.
    assert!(
        filtered >= 25,
        "filtered NO_SOCKET drops reported: {filtered}"
    );
}
