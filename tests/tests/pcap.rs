//! Packets for Wireshark: `tracer run --snaplen … --pcapng P` during a real
//! UDP datagram to a closed port (NO_SOCKET drop), an ARP reply and a TCP
//! retransmit, read back with Debian's `tshark`; `tracer replay --pcapng`
//! of the run's capture writes the same file.

use std::{
    io::Write,
    net::UdpSocket,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{require_root, tracer_bin, with_action, BridgeTopo, Tracer};

fn tmp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-pcap-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fields tshark prints for each packet of `file`.
const FIELDS: &[&str] = &[
    "frame.interface_name",
    "frame.interface_description",
    "frame.comment",
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "arp.opcode",
    "arp.src.proto_ipv4",
    "arp.src.hw_mac",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "frame.encap_type",
];

/// One row per packet, as field name → value.
fn tshark(file: &Path) -> Vec<std::collections::HashMap<&'static str, String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-T", "fields", "-E", "separator=\t"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("run tshark (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "tshark could not read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            FIELDS
                .iter()
                .copied()
                .zip(l.split('\t').map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn drops_arp_replies_and_retransmits_open_in_tshark_with_interfaces_and_comments() {
    require_root();
    let topo = BridgeTopo::new();
    let dir = tmp_dir(&topo.tag);
    let (cap, pcap) = (dir.join("run.capture"), dir.join("run.pcapng"));
    let t = Tracer::start(&[
        "--snaplen",
        "200",
        "--record",
        cap.to_str().unwrap(),
        "--pcapng",
        pcap.to_str().unwrap(),
    ]);

    // An ARP reply: A asks for B (fresh caches), B answers.
    topo.a.ip(&["neigh", "flush", "all"]);
    topo.ping_a_to_b();
    // A UDP datagram to a port nobody listens on in B.
    let (ip_a, ip_b) = (topo.ip_a.clone(), topo.ip_b.clone());
    let udp_src = topo.a.run(move || {
        let s = UdpSocket::bind((ip_a.as_str(), 0)).unwrap();
        s.send_to(b"pcap-test-datagram", (ip_b.as_str(), 9))
            .unwrap();
        s.local_addr().unwrap().port()
    });
    // A TCP segment B can no longer acknowledge: A retransmits it.
    let (mut client, _server, server_port) = topo.established_flow();
    let client_port = client.local_addr().unwrap().port();
    topo.blackhole_b_to_a();
    client.write_all(b"unacknowledged").unwrap();

    let is_ours =
        |v: &Value| v["event"]["action"] == "tcp_retransmit" && v["source"]["port"] == client_port;
    t.wait_for(Duration::from_secs(20), is_ours)
        .expect("the retransmit was seen live");
    t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "skb_drop"
            && v["tracer"]["reason"] == "NO_SOCKET"
            && v["destination"]["port"] == 9
            && v["source"]["port"] == udp_src
    })
    .expect("the NO_SOCKET drop was seen live");
    let (lines, _) = t.stop();
    drop(client);

    let mode = std::fs::metadata(&pcap).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the pcapng file holds packet bytes: 0600");
    let rows = tshark(&pcap);
    let (ns_a, ns_b) = (topo.a.inode().to_string(), topo.b.inode().to_string());

    // The dropped datagram: its addresses and ports, on B's interface, in
    // B's namespace, with the action, reason and location.
    let udp: Vec<_> = rows
        .iter()
        .filter(|r| r["udp.srcport"] == udp_src.to_string() && r["udp.dstport"] == "9")
        .collect();
    assert_eq!(udp.len(), 1, "one datagram dropped: {udp:?}");
    let d = udp[0];
    assert_eq!(
        (d["ip.src"].as_str(), d["ip.dst"].as_str()),
        (topo.ip_a.as_str(), topo.ip_b.as_str())
    );
    assert_eq!(d["frame.interface_name"], topo.dev_b);
    assert!(
        d["frame.interface_description"].starts_with(&format!("netns {ns_b}")),
        "{d:?}"
    );
    assert!(
        d["frame.comment"].starts_with("skb_drop NO_SOCKET at __udp4_lib_rcv")
            && d["frame.comment"].contains(&format!("on {} in netns {ns_b}", topo.dev_b)),
        "{d:?}"
    );
    // Received on a veth: from the Ethernet header.
    assert_eq!(d["frame.encap_type"], "1", "{d:?}");

    // The ARP reply as A received it: B's address and MAC.
    let mac_b = topo.b.mac(&topo.dev_b);
    let arp: Vec<_> = rows
        .iter()
        .filter(|r| {
            r["arp.opcode"] == "2"
                && r["arp.src.proto_ipv4"] == topo.ip_b
                && r["frame.interface_name"] == topo.dev_a
        })
        .collect();
    assert!(
        !arp.is_empty(),
        "no ARP reply from {} on {}",
        topo.ip_b,
        topo.dev_a
    );
    assert_eq!(arp[0]["arp.src.hw_mac"], mac_b);
    assert!(arp[0]["frame.interface_description"].starts_with(&format!("netns {ns_a}")));
    assert!(
        arp[0]["frame.comment"]
            .starts_with(&format!("arp_reply on {} in netns {ns_a}", topo.dev_a)),
        "{:?}",
        arp[0]
    );

    // The retransmitted segment: headers rebuilt, the sequence number the
    // socket had not had acknowledged (snd_una of the retransmit line).
    let seg: Vec<_> = rows
        .iter()
        .filter(|r| {
            r["tcp.srcport"] == client_port.to_string()
                && r["tcp.dstport"] == server_port.to_string()
                && r["frame.comment"].starts_with("tcp_retransmit")
        })
        .collect();
    assert!(!seg.is_empty(), "no retransmitted segment in the pcapng");
    let s = seg[0];
    assert_eq!(s["frame.interface_name"], "tcp-sockets");
    assert!(s["frame.interface_description"].starts_with(&format!("netns {ns_a}")));
    assert!(s["frame.comment"].contains("headers rebuilt"), "{s:?}");
    assert_eq!(
        (s["ip.src"].as_str(), s["ip.dst"].as_str()),
        (topo.ip_a.as_str(), topo.ip_b.as_str())
    );
    let una: Vec<String> = with_action(&lines, "tcp_retransmit")
        .into_iter()
        .filter(|v| is_ours(v))
        .map(|v| v["tracer"]["tcp"]["snd_una"].to_string())
        .collect();
    assert!(
        una.contains(&s["tcp.seq_raw"]),
        "seq {} not among snd_una {una:?}",
        s["tcp.seq_raw"]
    );

    // The capture kept the snapshots: its replay writes the same file.
    let again = dir.join("replay.pcapng");
    let out = Command::new(tracer_bin())
        .arg("replay")
        .arg(&cap)
        .arg("--pcapng")
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&pcap).unwrap() == std::fs::read(&again).unwrap(),
        "the replay's pcapng differs from the live run's"
    );
    // An existing file is never overwritten.
    let out = Command::new(tracer_bin())
        .arg("replay")
        .arg(&cap)
        .arg("--pcapng")
        .arg(&again)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot create"));
    let _ = std::fs::remove_dir_all(&dir);
}
