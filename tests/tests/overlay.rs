//! Overlay faults reproduced for real: multicast dropped by an overlay's
//! vxlan, the underlay's VXLAN port blocked by a firewall, and an MTU
//! blackhole behind a router that may not say "fragmentation needed".

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{
    assert_replays_identically as replays_identically, nft, require_root, start_recording as start,
    unique_tag, with_action, BridgeTopo, Netns, RoutedTopo, Tracer,
};

fn incident_with<'a>(lines: &'a [Value], alert_type: &str) -> &'a Value {
    with_action(lines, "incident")
        .into_iter()
        .find(|v| {
            v["tracer"]["incident"]["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["type"] == alert_type))
        })
        .unwrap_or_else(|| panic!("no incident with {alert_type}"))
}

/// Seed 004: a "container" multicasts its discovery (Hazelcast's group
/// 224.2.2.3:54327) on an overlay whose vxlan has no remote: the overlay
/// drops it at vxlan_xmit.
#[test]
fn multicast_on_an_overlay_is_dropped_and_explained() {
    require_root();
    let topo = BridgeTopo::new();
    let vx = format!("vx{}", topo.tag);
    topo.br_ns.ip(&[
        "link",
        "add",
        &vx,
        "type",
        "vxlan",
        "id",
        "4250",
        "dstport",
        "4789",
        "nolearning",
    ]);
    topo.br_ns.ip(&["link", "set", &vx, "master", &topo.bridge]);
    topo.br_ns.ip(&["link", "set", &vx, "up"]);
    topo.a
        .ip(&["route", "add", "224.0.0.0/4", "dev", &topo.dev_a]);
    let br_inode = topo.br_ns.inode();
    let nss = [br_inode, topo.a.inode()];
    let (t, capture) = start(&nss, "multicast");
    let ip_a = topo.ip_a.clone();
    topo.a.run(move || {
        let s = UdpSocket::bind((ip_a.as_str(), 54328)).expect("bind");
        s.set_multicast_ttl_v4(2).expect("ttl");
        for _ in 0..5 {
            s.send_to(b"hazelcast join", "224.2.2.3:54327")
                .expect("send");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let got = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "overlay_multicast_dropped"
    });
    let (lines, raw) = t.stop();
    let a = got.unwrap_or_else(|| {
        let drops: Vec<&Value> = with_action(&lines, "skb_drop");
        panic!("no overlay_multicast_dropped; drops seen: {drops:?}")
    });
    // The drop record carries the inner packet: sender, group and port.
    assert_eq!(a["source"]["ip"], topo.ip_a.as_str());
    assert_eq!(a["destination"]["ip"], "224.2.2.3");
    assert_eq!(a["destination"]["port"], 54327);
    assert_eq!(a["tracer"]["netns"]["inode"], br_inode);
    assert_eq!(a["tracer"]["netns"]["name"], topo.br_ns.name.as_str());
    assert!(
        a["tracer"]["location"]
            .as_str()
            .unwrap_or_default()
            .starts_with("vxlan_xmit"),
        "{a}"
    );
    let p = &a["tracer"]["alert"];
    assert_eq!(p["group"], "224.2.2.3");
    assert_eq!(p["port"], 54327);
    assert_eq!(p["sender"]["ip"], topo.ip_a.as_str());
    let msg = a["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("{} sends multicast to 224.2.2.3:54327", topo.ip_a)),
        "{msg}"
    );
    assert!(msg.contains(&format!("netns {}", topo.br_ns.name)), "{msg}");
    assert!(
        msg.contains("do not carry multicast between hosts"),
        "{msg}"
    );
    assert!(p["hint"]
        .as_str()
        .unwrap_or_default()
        .contains("tcp-ip join"));
    // One alert for the five packets.
    assert_eq!(with_action(&lines, "overlay_multicast_dropped").len(), 1);
    let inc = incident_with(&lines, "overlay_multicast_dropped");
    let i = &inc["tracer"]["incident"];
    assert!(i["explanation"]
        .as_str()
        .unwrap_or_default()
        .contains("do not carry multicast"));
    assert!(i["hint"]
        .as_str()
        .unwrap_or_default()
        .contains("tcp-ip join"));
    eprintln!(
        "example: {}",
        raw.iter()
            .find(|l| l.contains("\"overlay_multicast_dropped\""))
            .unwrap()
    );
    replays_identically(&capture, &nss, &raw);
}

/// Two "hosts" joined by a veth underlay, a vxlan each; the second host's
/// firewall drops udp/4789, so nothing from the first reaches the overlay.
#[test]
fn underlay_vxlan_port_blocked_names_the_peer_and_the_ports() {
    require_root();
    let (tag, octet) = unique_tag();
    let h1 = Netns::new(&format!("uh1{tag}"));
    let h2 = Netns::new(&format!("uh2{tag}"));
    let (u1, u2) = (format!("ul1{tag}"), format!("ul2{tag}"));
    h1.ip(&[
        "link", "add", &u1, "type", "veth", "peer", "name", &u2, "netns", &h2.name,
    ]);
    let under1 = format!("192.168.{octet}.1");
    let under2 = format!("192.168.{octet}.2");
    h1.ip(&["addr", "add", &format!("{under1}/24"), "dev", &u1]);
    h2.ip(&["addr", "add", &format!("{under2}/24"), "dev", &u2]);
    h1.ip(&["link", "set", &u1, "up"]);
    h2.ip(&["link", "set", &u2, "up"]);
    let vx = format!("uvx{tag}");
    for (h, local, remote, dev, inner) in [
        (&h1, &under1, &under2, &u1, format!("10.{octet}.250.1/24")),
        (&h2, &under2, &under1, &u2, format!("10.{octet}.250.2/24")),
    ] {
        h.ip(&[
            "link", "add", &vx, "type", "vxlan", "id", "4251", "dstport", "4789", "local", local,
            "remote", remote, "dev", dev,
        ]);
        h.ip(&["addr", "add", &inner, "dev", &vx]);
        h.ip(&["link", "set", &vx, "up"]);
    }
    nft(
        &h2,
        "table inet tracertest {\n chain input { type filter hook input priority 0; udp dport 4789 drop; }\n}\n",
    );
    let h2_inode = h2.inode();
    let nss = [h1.inode(), h2_inode];
    let (t, capture) = start(&nss, "underlay");
    let _ = std::process::Command::new("ip")
        .args([
            "netns", "exec", &h1.name, "ping", "-c", "3", "-i", "0.2", "-W", "1",
        ])
        .arg(format!("10.{octet}.250.2"))
        .output();
    let got = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "overlay_underlay_blocked"
    });
    let (lines, raw) = t.stop();
    let a = got.unwrap_or_else(|| {
        panic!(
            "no overlay_underlay_blocked; drops: {:?}",
            with_action(&lines, "skb_drop")
        )
    });
    assert_eq!(a["tracer"]["reason"], "NETFILTER_DROP");
    assert_eq!(a["tracer"]["netns"]["inode"], h2_inode);
    let p = &a["tracer"]["alert"];
    assert_eq!(p["peer"], under1.as_str());
    assert_eq!(p["port"], 4789);
    assert_eq!(p["protocol"], "udp");
    assert_eq!(p["direction"], "incoming");
    let overlays: Vec<&str> = p["overlays"]
        .as_array()
        .expect("overlays")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(overlays.contains(&h2.name.as_str()), "{overlays:?}");
    let msg = a["message"].as_str().unwrap_or_default();
    assert!(msg.contains(&format!("from peer host {under1}")), "{msg}");
    assert!(msg.contains("udp/4789"), "{msg}");
    assert!(
        msg.contains("tcp+udp/7946") && msg.contains("tcp/2377"),
        "{msg}"
    );
    assert_eq!(with_action(&lines, "overlay_underlay_blocked").len(), 1);
    let inc = incident_with(&lines, "overlay_underlay_blocked");
    let i = &inc["tracer"]["incident"];
    assert!(i["explanation"]
        .as_str()
        .unwrap_or_default()
        .starts_with(&format!("peer host {under1}")));
    assert!(i["hint"].as_str().unwrap_or_default().contains("udp/4789"));
    eprintln!(
        "example: {}",
        raw.iter()
            .find(|l| l.contains("\"overlay_underlay_blocked\""))
            .unwrap()
    );
    replays_identically(&capture, &nss, &raw);
}

/// client — router — server, the router's link to the server with a
/// smaller MTU, and the router's ICMP "fragmentation needed" filtered: a
/// TCP bulk transfer stalls.
#[test]
fn mtu_blackhole_names_where_packets_die_and_the_mtu() {
    require_root();
    let topo = RoutedTopo::new("m", 251);
    let (c, r, s) = (&topo.client, &topo.router, &topo.server);
    let (rc, rs) = (&topo.rc, &topo.rs);
    // The router's side of the server link is smaller; both ends still
    // announce a 1460-byte MSS.
    r.ip(&["link", "set", rs, "mtu", "1400"]);
    nft(
        r,
        "table ip tracertest {\n chain output { type filter hook output priority 0; icmp type destination-unreachable icmp code frag-needed drop; }\n}\n",
    );
    let r_inode = r.inode();
    let nss = topo.inodes();
    let (t, capture) = start(&nss, "mtu");
    // A second tracer sees only the client's namespace: no PKT_TOO_BIG
    // drop there, only its socket retransmitting full-size segments.
    let client_only = Tracer::start(&["--netns", &c.inode().to_string()]);

    let server_ip = topo.server_ip.clone();
    let listener = s.run(move || TcpListener::bind((server_ip.as_str(), 0)).expect("listen"));
    let port = listener.local_addr().expect("addr").port();
    let target = format!("{}:{port}", topo.server_ip);
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(8))).ok();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let mut client = c.run(move || TcpStream::connect(target).expect("connect"));
    // Small segments pass...
    client.write_all(b"hello").expect("small write");
    // ...full-size ones die at the router.
    client
        .set_write_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = client.write_all(&vec![0x5a; 1 << 20]);
    let got = t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "mtu_blackhole"
    });
    let got_client = client_only.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "mtu_blackhole"
    });
    drop(client);
    let received = reader.join().expect("reader");
    let (lines, raw) = t.stop();
    let (client_lines, client_raw) = client_only.stop();
    assert!(
        received < 1 << 20,
        "the transfer stalled ({received} bytes arrived)"
    );
    let a = got.unwrap_or_else(|| {
        panic!(
            "no mtu_blackhole; drops: {:?}",
            with_action(&lines, "skb_drop")
        )
    });
    assert_eq!(a["tracer"]["reason"], "PKT_TOO_BIG");
    assert_eq!(a["tracer"]["netns"]["inode"], r_inode);
    assert_eq!(a["tracer"]["netns"]["name"], r.name.as_str());
    assert_eq!(a["source"]["ip"], topo.client_ip.as_str());
    assert_eq!(a["destination"]["ip"], topo.server_ip.as_str());
    let p = &a["tracer"]["alert"];
    assert_eq!(p["interface"], rc.as_str());
    assert_eq!(p["interface_mtu"], 1500);
    assert_eq!(p["path_interface"], rs.as_str());
    assert_eq!(p["path_mtu"], 1400);
    assert_eq!(p["recommended_mtu"], 1400);
    let msg = a["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("netns {}, arriving on {rc} (MTU 1500)", r.name)),
        "{msg}"
    );
    assert!(msg.contains(&format!("{rs}'s 1400")), "{msg}");
    assert!(p["hint"]
        .as_str()
        .unwrap_or_default()
        .contains("com.docker.network.driver.mtu=1400"));
    let inc = incident_with(&lines, "mtu_blackhole");
    assert!(inc["tracer"]["incident"]["explanation"]
        .as_str()
        .unwrap_or_default()
        .contains("MTU blackhole"));
    eprintln!(
        "example: {}",
        raw.iter()
            .find(|l| l.contains("\"action\":\"mtu_blackhole\""))
            .unwrap()
    );
    // With the router's drop in view, its rule says it; the segment rule
    // leaves the flow to it.
    let mtu = with_action(&lines, "mtu_blackhole");
    assert!(
        mtu.iter().all(|v| v["tracer"]["reason"] == "PKT_TOO_BIG"),
        "{mtu:?}"
    );
    // From the client's namespace alone: the segment sizes.
    assert!(
        with_action(&client_lines, "skb_drop")
            .iter()
            .all(|v| v["tracer"]["reason"] != "PKT_TOO_BIG"),
        "no too-big drop is visible from the client's namespace"
    );
    let a = got_client.unwrap_or_else(|| {
        panic!(
            "no mtu_blackhole from the client's namespace; retransmits: {:?}",
            with_action(&client_lines, "tcp_retransmit")
        )
    });
    let p = &a["tracer"]["alert"];
    assert_eq!(p["evidence"], "segment_sizes", "{a}");
    assert_eq!(a["source"]["ip"], topo.client_ip.as_str());
    assert_eq!(a["destination"]["ip"], topo.server_ip.as_str());
    assert_eq!(a["destination"]["port"], port);
    assert_eq!(a["tracer"]["netns"]["inode"], c.inode());
    // Both ends announce a 1460-byte MSS; with TCP timestamps the client
    // cuts 1448-byte segments for its 1500-byte path MTU.
    assert_eq!(p["mss"], 1448, "{a}");
    assert_eq!(p["segment_len"], 1448, "{a}");
    assert_eq!(p["pmtu"], 1500, "{a}");
    assert_eq!(p["packet_len"], 1500, "{a}");
    assert!(p["retransmits"].as_u64().unwrap_or(0) >= 3, "{a}");
    let msg = a["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!(
            "{}:{} (netns {}) → {}:{port}: only full-size segments are retransmitted (1448 bytes, 1500-byte packets",
            topo.client_ip, a["source"]["port"], c.name, topo.server_ip
        )),
        "{msg}"
    );
    assert!(
        p["hint"].as_str().unwrap_or_default().contains(&format!(
            "ip netns exec {} ping -M do -s 1472 {}",
            c.name, topo.server_ip
        )),
        "{a}"
    );
    // The retransmit records carry what the rule read.
    assert!(
        with_action(&client_lines, "tcp_retransmit")
            .iter()
            .any(|v| v["tracer"]["tcp"]["seg_len"] == 1448 && v["tracer"]["tcp"]["mss"] == 1448),
        "no retransmit with segment sizes"
    );
    eprintln!(
        "example: {}",
        client_raw
            .iter()
            .find(|l| l.contains("\"action\":\"mtu_blackhole\""))
            .unwrap()
    );
    replays_identically(&capture, &nss, &raw);
}
