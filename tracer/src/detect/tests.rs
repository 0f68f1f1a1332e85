//! Detector tests on synthetic event sequences.

use std::net::IpAddr;

use serde_json::Value;

use super::*;
use crate::event::{Action, ContainerRef, EcsEvent, Interface, Kind, Mac, Netns, Peer, Tcp};

const T0: i128 = 1_700_000_000 * NS_PER_S;
const OVERLAY_NS: u32 = 4_026_532_300;
const WEB_NS: u32 = 4_026_532_400;
const API_NS: u32 = 4_026_532_500;
const API_MAC: Mac = Mac([0x02, 0x42, 0x0a, 0, 0, 3]);
const WEB_MAC: Mac = Mac([0x02, 0x42, 0x0a, 0, 0, 5]);

/// Event time `ms` milliseconds after T0.
fn ms(ms: i64) -> i128 {
    T0 + i128::from(ms) * 1_000_000
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn container(name: &str) -> ContainerRef {
    ContainerRef::new(crate::event::ContainerData {
        id: format!("{name}-0123456789abcdef"),
        name: Some(name.to_string()),
        ..Default::default()
    })
}

fn overlay_ns() -> Netns {
    Netns {
        inode: OVERLAY_NS,
        name: Some("1-8f3e2a1b".into()),
        network: Some("backend".into()),
        host: false,
    }
}

fn ns(inode: u32) -> Netns {
    Netns {
        inode,
        ..Netns::default()
    }
}

fn veth_peer(port: &str, c: &str) -> Peer {
    Peer {
        kind: "container",
        interface: port.into(),
        container: Some(container(c)),
        ..Peer::default()
    }
}

fn vxlan_peer(port: &str) -> Peer {
    Peer {
        kind: "vxlan",
        interface: port.into(),
        network: Some("backend".into()),
        ..Peer::default()
    }
}

fn peer_for(port: &str) -> Option<Peer> {
    match port {
        "vxlan1" => Some(vxlan_peer(port)),
        "veth7b2" => Some(veth_peer(port, "api.1")),
        "veth9c1" => Some(veth_peer(port, "other.1")),
        _ => None,
    }
}

fn fdb(t: i128, action: Action, mac: Mac, port: &str, prev: Option<&str>) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, action);
    e.tracer.netns = Some(overlay_ns());
    e.tracer.bridge = Some("br0".into());
    e.tracer.port = Some(port.into());
    e.tracer.port_peer = peer_for(port).map(Box::new);
    e.tracer.previous_port = prev.map(Into::into);
    e.tracer.previous_port_peer = prev.and_then(peer_for).map(Box::new);
    e.tracer.vlan = Some(0);
    e.source.mac = Some(mac);
    if mac == API_MAC {
        e.source.container = Some(container("api.1"));
    }
    e
}

fn fdb_move(t: i128, from: &str, to: &str) -> EcsEvent {
    fdb(t, Action::FdbMove, API_MAC, to, Some(from))
}

/// An ARP reply from `sender` (ip, mac) to `target` seen on `ifname` in `netns`.
#[allow(clippy::too_many_arguments)]
fn arp(
    t: i128,
    sender: (&str, Mac),
    target: (&str, Mac),
    netns: Netns,
    ifname: &str,
    ifindex: u32,
    ns_container: Option<&str>,
) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::ArpReply);
    e.source.ip = Some(ip(sender.0));
    e.source.mac = Some(sender.1);
    e.destination.ip = Some(ip(target.0));
    e.destination.mac = Some(target.1);
    e.tracer.netns = Some(netns);
    e.tracer.interface = Some(Interface {
        name: ifname.into(),
        index: ifindex,
        // What identity enrichment says of this test topology's links.
        kind: match ifname {
            "vxlan1" => Some("vxlan"),
            "eth0" | "veth7b2" | "veth9c1" => Some("veth"),
            _ => None,
        },
    });
    e.container = ns_container.map(container);
    e.network.type_ = Some("arp");
    e
}

/// One reply from api.1 to web.1 as it travels: through `via` in the overlay
/// namespace, then eth0 in web.1's namespace.
fn reply_hops(t: i128, via: &str, out: &mut Vec<EcsEvent>) {
    let s = ("10.0.0.3", API_MAC);
    let d = ("10.0.0.5", WEB_MAC);
    let idx = if via == "vxlan1" { 4 } else { 7 };
    out.push(arp(t, s, d, overlay_ns(), via, idx, None));
    out.push(arp(t + 50_000, s, d, ns(WEB_NS), "eth0", 2, Some("web.1")));
}

fn rtx(t: i128, sport: u16, dst: &str, snd_una: u32) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::TcpRetransmit);
    e.source.ip = Some(ip("10.0.0.5"));
    e.source.port = Some(sport);
    e.destination.ip = Some(ip(dst));
    e.destination.port = Some(8080);
    if dst == "10.0.0.3" {
        e.destination.container = Some(container("api.1"));
    }
    e.container = Some(container("web.1"));
    e.tracer.netns = Some(ns(WEB_NS));
    e.tracer.tcp = Some(Tcp {
        state: Some("ESTABLISHED"),
        snd_una: Some(snd_una),
        retransmits: Some(1),
        ..Tcp::default()
    });
    e
}

fn drop_ev(t: i128, netns: u32, c: Option<&str>, reason: &str, location: &str) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::SkbDrop);
    e.tracer.netns = Some(ns(netns));
    e.container = c.map(container);
    e.tracer.reason = Some(reason.into());
    e.tracer.reason_raw = Some(3);
    e.tracer.location = Some(location.into());
    e.source.ip = Some(ip("10.0.0.9"));
    e.destination.ip = Some(ip("10.0.0.5"));
    e
}

/// Feeds events the way the pipeline does; returns (lines out, printed flags).
fn run(d: &mut Detectors, evs: &[EcsEvent]) -> (Vec<EcsEvent>, Vec<bool>) {
    let mut out = Vec::new();
    let mut printed = Vec::new();
    for e in evs {
        d.advance(e.timestamp, &mut out);
        printed.push(d.observe(e, &mut out));
    }
    (out, printed)
}

fn of<'a>(out: &'a [EcsEvent], action: &str) -> Vec<&'a EcsEvent> {
    out.iter()
        .filter(|e| e.event.action.as_str() == action)
        .collect()
}

fn payload(e: &EcsEvent) -> Value {
    e.tracer
        .alert
        .as_ref()
        .or(e.tracer.incident.as_ref())
        .expect("payload")
        .value()
}

fn det() -> Detectors {
    Detectors::new(DetectConfig::default())
}

// ---------------------------------------------------------------- fdb_flap

#[test]
fn flap_exactly_at_threshold_with_window_edge_included() {
    let mut d = det();
    let evs = [
        fdb_move(ms(0), "veth7b2", "vxlan1"),
        fdb_move(ms(5_000), "vxlan1", "veth7b2"),
        fdb_move(ms(10_000), "veth7b2", "vxlan1"),
    ];
    let (out, _) = run(&mut d, &evs);
    let alerts = of(&out, "fdb_flap");
    assert_eq!(alerts.len(), 1, "3 moves in exactly 10 s: {out:#?}");
    assert_eq!(alerts[0].timestamp, ms(10_000));
    assert_eq!(alerts[0].event.kind, Kind::Alert);
    let p = payload(alerts[0]);
    assert_eq!(p["count"], 3);
    assert_eq!(p["threshold"], 3);
    assert_eq!(p["window_s"], 10.0);
}

#[test]
fn flap_just_outside_window_is_quiet() {
    let mut d = det();
    let evs = [
        fdb_move(ms(0), "veth7b2", "vxlan1"),
        fdb_move(ms(5_000), "vxlan1", "veth7b2"),
        fdb_move(ms(10_000) + 1, "veth7b2", "vxlan1"),
    ];
    let (out, _) = run(&mut d, &evs);
    assert!(of(&out, "fdb_flap").is_empty(), "{out:#?}");
}

#[test]
fn flap_below_threshold_and_single_move_are_quiet() {
    let mut d = det();
    let (out, _) = run(&mut d, &[fdb_move(ms(0), "veth7b2", "veth9c1")]);
    assert!(out.is_empty(), "moving once is not a flap");
    let (out, _) = run(&mut d, &[fdb_move(ms(100), "veth9c1", "veth7b2")]);
    assert!(out.is_empty(), "two moves are below threshold");
}

#[test]
fn flap_other_macs_and_bridges_do_not_add_up() {
    let mut d = det();
    let mut evs = vec![fdb_move(ms(0), "veth7b2", "vxlan1")];
    let mut other = fdb(ms(10), Action::FdbMove, WEB_MAC, "vxlan1", Some("veth1"));
    other.source.container = None;
    evs.push(other);
    let mut other_bridge = fdb_move(ms(20), "vxlan1", "veth7b2");
    other_bridge.tracer.bridge = Some("br1".into());
    evs.push(other_bridge);
    let (out, _) = run(&mut d, &evs);
    assert!(of(&out, "fdb_flap").is_empty(), "{out:#?}");
}

#[test]
fn vxlan_flap_names_mac_owner_ports_peers_network_and_the_outage() {
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..3)
        .map(|i| {
            if i % 2 == 0 {
                fdb_move(ms(i * 100), "veth7b2", "vxlan1")
            } else {
                fdb_move(ms(i * 100), "vxlan1", "veth7b2")
            }
        })
        .collect();
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "fdb_flap");
    assert_eq!(a.len(), 1);
    let a = a[0];
    let p = payload(a);
    assert_eq!(p["type"], "fdb_flap");
    assert_eq!(p["mac"], "02-42-0A-00-00-03");
    assert_eq!(p["owner"], "api.1");
    assert_eq!(p["network"], "backend");
    assert_eq!(p["bridge"], "br0");
    assert_eq!(p["vxlan"], "vxlan1");
    assert_eq!(p["diagnosis"], "vxlan_proxy_arp");
    let ports = p["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0]["port"], "veth7b2");
    assert_eq!(ports[0]["kind"], "container");
    assert_eq!(ports[0]["container"], "api.1");
    assert_eq!(ports[1]["port"], "vxlan1");
    assert_eq!(ports[1]["kind"], "vxlan");
    assert_eq!(ports[1]["behind"], "overlay backend");
    let msg = a.message.as_deref().unwrap();
    assert!(msg.contains("vxlan proxy-ARP"), "{msg}");
    assert!(msg.contains("veth7b2 (container api.1)"), "{msg}");
    assert!(msg.contains("vxlan1 (overlay backend)"), "{msg}");
    assert_eq!(a.tracer.netns.as_ref().map(|n| n.inode), Some(OVERLAY_NS));
    assert_eq!(a.source.mac, Some(API_MAC));
    assert_eq!(
        a.source.container.as_ref().and_then(|c| c.name.as_deref()),
        Some("api.1")
    );
}

#[test]
fn flap_between_two_veths_is_not_called_vxlan() {
    let mut d = det();
    let evs = [
        fdb_move(ms(0), "veth7b2", "veth9c1"),
        fdb_move(ms(1), "veth9c1", "veth7b2"),
        fdb_move(ms(2), "veth7b2", "veth9c1"),
    ];
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "fdb_flap");
    assert_eq!(a.len(), 1);
    assert_eq!(payload(a[0])["diagnosis"], "duplicate_mac_or_loop");
    assert!(payload(a[0]).get("vxlan").is_none());
}

/// A port is a vxlan by its link kind only: a name a container chose
/// (`vxfoo`, `vxlan-evil`) says nothing.
#[test]
fn flap_vxlan_decided_by_link_kind_never_by_name() {
    let run_with = |port: &str, peer: Option<Peer>| {
        let mut d = det();
        let mk = |t, from: &str, to: &str| {
            let mut e = fdb_move(t, from, to);
            let p = |name: &str| {
                if name == port {
                    peer.clone().map(Box::new)
                } else {
                    peer_for(name).map(Box::new)
                }
            };
            e.tracer.port_peer = p(to);
            e.tracer.previous_port_peer = p(from);
            e
        };
        let evs = [
            mk(ms(0), "veth7b2", port),
            mk(ms(1), port, "veth7b2"),
            mk(ms(2), "veth7b2", port),
        ];
        let (out, _) = run(&mut d, &evs);
        payload(of(&out, "fdb_flap")[0])
    };
    // Named like a vxlan, unknown to identity: not called one.
    let p = run_with("vx-001001-x", None);
    assert!(p.get("vxlan").is_none(), "{p}");
    assert_eq!(p["diagnosis"], "duplicate_mac_or_loop");
    // Named like a vxlan, a veth by its link kind: not a vxlan.
    let p = run_with("vxfoo", Some(veth_peer("vxfoo", "other.1")));
    assert!(p.get("vxlan").is_none(), "{p}");
    // Any name, a vxlan by its link kind: the vxlan outage.
    let p = run_with("tun0", Some(vxlan_peer("tun0")));
    assert_eq!(p["vxlan"], "tun0");
    assert_eq!(p["diagnosis"], "vxlan_proxy_arp");
}

#[test]
fn flap_realerts_at_most_once_per_window_with_updated_count() {
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..26)
        .map(|i| {
            let (a, b) = if i % 2 == 0 {
                ("veth7b2", "vxlan1")
            } else {
                ("vxlan1", "veth7b2")
            };
            fdb_move(ms(i * 1000), a, b)
        })
        .collect();
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "fdb_flap");
    let at: Vec<i128> = a.iter().map(|e| e.timestamp).collect();
    assert_eq!(at, vec![ms(2_000), ms(12_000), ms(22_000)]);
    let counts: Vec<u64> = a.iter().map(|e| e.tracer.count.unwrap()).collect();
    assert_eq!(counts, vec![3, 13, 23]);
    assert_eq!(payload(a[1])["realert"], true);
}

#[test]
fn flap_after_quiet_window_is_a_new_episode() {
    let mut d = det();
    let mut evs = Vec::new();
    for base in [0, 60_000] {
        evs.push(fdb_move(ms(base), "veth7b2", "vxlan1"));
        evs.push(fdb_move(ms(base + 1), "vxlan1", "veth7b2"));
        evs.push(fdb_move(ms(base + 2), "veth7b2", "vxlan1"));
    }
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "fdb_flap");
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].tracer.count, Some(3), "count restarts");
}

#[test]
fn flap_counts_delete_then_learn_on_another_port() {
    let mut d = det();
    let evs = [
        fdb_move(ms(0), "veth7b2", "vxlan1"),
        fdb(ms(10), Action::FdbDelete, API_MAC, "vxlan1", None),
        fdb(ms(20), Action::FdbLearn, API_MAC, "veth7b2", None),
        fdb(ms(30), Action::FdbDelete, API_MAC, "veth7b2", None),
        fdb(ms(40), Action::FdbLearn, API_MAC, "vxlan1", None),
    ];
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "fdb_flap");
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(a[0].timestamp, ms(40));
}

#[test]
fn learn_without_history_or_on_same_port_is_no_move() {
    let mut d = det();
    let evs = [
        fdb(ms(0), Action::FdbLearn, API_MAC, "veth7b2", None),
        fdb(ms(1), Action::FdbLearn, API_MAC, "vxlan1", None),
        fdb_move(ms(2), "vxlan1", "veth7b2"),
        fdb(ms(3), Action::FdbLearn, API_MAC, "veth7b2", None),
        fdb(ms(4), Action::FdbLearn, API_MAC, "veth7b2", None),
    ];
    let (out, _) = run(&mut d, &evs);
    assert!(of(&out, "fdb_flap").is_empty(), "{out:#?}");
}

// ---------------------------------------------------------------- ARP

#[test]
fn one_reply_seen_hop_by_hop_is_not_a_duplicate() {
    let mut d = det();
    let mut evs = Vec::new();
    reply_hops(ms(0), "veth7b2", &mut evs);
    let (out, _) = run(&mut d, &evs);
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn two_replies_one_via_vxlan_are_a_duplicate_listing_every_sighting() {
    let mut d = det();
    let mut evs = Vec::new();
    reply_hops(ms(0), "vxlan1", &mut evs);
    reply_hops(ms(0) + 300_000, "veth7b2", &mut evs);
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "arp_duplicate_reply");
    assert_eq!(a.len(), 1, "{out:#?}");
    let p = payload(a[0]);
    assert_eq!(p["ip"], "10.0.0.3");
    assert_eq!(p["mac"], "02-42-0A-00-00-03");
    assert_eq!(p["replies"], 2);
    assert_eq!(p["counted_at"], "eth0");
    assert_eq!(p["requester"]["ip"], "10.0.0.5");
    assert_eq!(p["requester"]["container"], "web.1");
    assert_eq!(p["vxlan"], "vxlan1");
    assert_eq!(p["diagnosis"], "vxlan_proxy_arp");
    let through: Vec<(String, u64)> = p["came_through"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["interface"].as_str().unwrap().to_string(),
                t["replies"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        through,
        vec![
            ("vxlan1".to_string(), 1),
            ("eth0".to_string(), 2),
            ("veth7b2".to_string(), 1)
        ]
    );
    assert_eq!(a[0].tracer.count, Some(2));
    assert!(
        of(&out, "ip_conflict").is_empty(),
        "same MAC is no conflict"
    );
}

#[test]
fn duplicate_window_edges() {
    let s = ("10.0.0.3", API_MAC);
    let r = ("10.0.0.5", WEB_MAC);
    let mut d = det();
    let evs = [
        arp(ms(0), s, r, ns(WEB_NS), "eth0", 2, None),
        arp(ms(1000), s, r, ns(WEB_NS), "eth0", 2, None),
    ];
    let (out, _) = run(&mut d, &evs);
    assert_eq!(
        of(&out, "arp_duplicate_reply").len(),
        1,
        "exactly 1 s apart"
    );
    let mut d = det();
    let evs = [
        arp(ms(0), s, r, ns(WEB_NS), "eth0", 2, None),
        arp(ms(1000) + 1, s, r, ns(WEB_NS), "eth0", 2, None),
    ];
    let (out, _) = run(&mut d, &evs);
    assert!(out.is_empty(), "more than 1 s apart: {out:#?}");
}

#[test]
fn replies_to_different_requesters_or_gratuitous_are_not_duplicates() {
    let s = ("10.0.0.3", API_MAC);
    let mut d = det();
    let evs = [
        arp(ms(0), s, ("10.0.0.5", WEB_MAC), ns(WEB_NS), "eth0", 2, None),
        arp(ms(1), s, ("10.0.0.6", WEB_MAC), ns(WEB_NS), "eth0", 2, None),
        arp(
            ms(2),
            s,
            ("10.0.0.3", Mac([0xff; 6])),
            ns(WEB_NS),
            "eth0",
            2,
            None,
        ),
        arp(
            ms(3),
            s,
            ("10.0.0.3", Mac([0xff; 6])),
            ns(WEB_NS),
            "eth0",
            2,
            None,
        ),
    ];
    let (out, _) = run(&mut d, &evs);
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn duplicate_realert_is_paced() {
    let s = ("10.0.0.3", API_MAC);
    let r = ("10.0.0.5", WEB_MAC);
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..12)
        .map(|i| arp(ms(i * 500), s, r, ns(WEB_NS), "eth0", 2, None))
        .collect();
    let (out, _) = run(&mut d, &evs);
    let at: Vec<i128> = of(&out, "arp_duplicate_reply")
        .iter()
        .map(|e| e.timestamp)
        .collect();
    assert_eq!(at, vec![ms(500)], "next one only after 10 s");
}

#[test]
fn ip_conflict_names_both_macs_and_owners_in_one_namespace() {
    let other = Mac([0x02, 0x42, 0x0a, 0, 0, 0x99]);
    let r = ("10.0.0.5", WEB_MAC);
    let mut a = arp(
        ms(0),
        ("10.0.0.3", API_MAC),
        r,
        ns(WEB_NS),
        "eth0",
        2,
        Some("web.1"),
    );
    a.source.container = Some(container("api.1"));
    let mut b = arp(
        ms(3000),
        ("10.0.0.3", other),
        r,
        ns(WEB_NS),
        "eth0",
        2,
        Some("web.1"),
    );
    b.source.container = Some(container("rogue.1"));
    let mut d = det();
    let (out, _) = run(&mut d, &[a.clone(), b.clone()]);
    let c = of(&out, "ip_conflict");
    assert_eq!(c.len(), 1, "{out:#?}");
    let p = payload(c[0]);
    assert_eq!(p["ip"], "10.0.0.3");
    let macs: Vec<(&str, &str)> = p["macs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["mac"].as_str().unwrap(), m["owner"].as_str().unwrap()))
        .collect();
    assert_eq!(
        macs,
        vec![
            ("02-42-0A-00-00-03", "api.1"),
            ("02-42-0A-00-00-99", "rogue.1")
        ]
    );
    let msg = c[0].message.as_deref().unwrap();
    assert!(msg.contains("api.1") && msg.contains("rogue.1"), "{msg}");
    // Both are known containers: said so, and the incident's hint shows
    // how to list each one's addresses.
    assert!(msg.contains("two containers claim the same IP"), "{msg}");
    let inc = of(&out, "incident");
    assert!(!inc.is_empty(), "{out:#?}");
    let hint = payload(inc[0])["hint"].as_str().unwrap().to_string();
    assert!(
        hint.contains("nsenter --net=$(docker inspect -f '{{.NetworkSettings.SandboxKey}}' rogue.1) ip -br addr"),
        "{hint}"
    );

    // One MAC nobody owns: "hosts", not "containers".
    let mut d = det();
    let mut anon = b.clone();
    anon.source.container = None;
    let (out, _) = run(&mut d, &[a.clone(), anon]);
    let msg = of(&out, "ip_conflict")[0].message.clone().unwrap();
    assert!(msg.contains("two hosts claim the same IP"), "{msg}");

    // Same two MACs, but seen in two different namespaces: no conflict.
    let mut d = det();
    let mut b2 = b;
    b2.tracer.netns = Some(ns(API_NS));
    let (out, _) = run(&mut d, &[a, b2]);
    assert!(of(&out, "ip_conflict").is_empty(), "{out:#?}");
}

// ---------------------------------------------------------------- TCP

#[test]
fn retransmit_burst_at_threshold_names_both_containers() {
    let mut d = det();
    let evs = [
        rtx(ms(0), 40000, "10.0.0.3", 7),
        rtx(ms(200), 40000, "10.0.0.3", 7),
        rtx(ms(600), 40000, "10.0.0.3", 7),
    ];
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "retransmit_burst");
    assert_eq!(a.len(), 1);
    let p = payload(a[0]);
    assert_eq!(p["count"], 3);
    assert_eq!(p["source"]["container"], "web.1");
    assert_eq!(p["destination"]["container"], "api.1");
    assert_eq!(p["snd_una"], 7);
    let msg = a[0].message.as_deref().unwrap();
    assert!(msg.contains("web.1") && msg.contains("api.1"), "{msg}");
}

#[test]
fn retransmits_with_progress_or_outside_window_are_quiet() {
    let mut d = det();
    let evs = [
        rtx(ms(0), 40000, "10.0.0.3", 7),
        rtx(ms(200), 40000, "10.0.0.3", 8),
        rtx(ms(600), 40000, "10.0.0.3", 9),
        rtx(ms(700), 40000, "10.0.0.3", 9),
    ];
    let (out, _) = run(&mut d, &evs);
    assert!(
        of(&out, "retransmit_burst").is_empty(),
        "progress: {out:#?}"
    );
    let mut d = det();
    let evs = [
        rtx(ms(0), 40001, "10.0.0.3", 7),
        rtx(ms(5_000), 40001, "10.0.0.3", 7),
        rtx(ms(10_000) + 1, 40001, "10.0.0.3", 7),
    ];
    let (out, _) = run(&mut d, &evs);
    assert!(of(&out, "retransmit_burst").is_empty(), "window: {out:#?}");
}

#[test]
fn interleaved_flows_are_counted_apart() {
    let mut d = det();
    let evs = [
        rtx(ms(0), 1, "10.0.0.3", 7),
        rtx(ms(1), 2, "10.0.0.3", 7),
        rtx(ms(2), 1, "10.0.0.3", 7),
        rtx(ms(3), 2, "10.0.0.3", 7),
        rtx(ms(4), 1, "10.0.0.3", 7),
    ];
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "retransmit_burst");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].source.port, Some(1));
}

#[test]
fn rollup_counts_affected_flows_per_container() {
    let mut d = det();
    let mut evs = Vec::new();
    for i in 0..3 {
        for port in [1, 2] {
            evs.push(rtx(ms(i * 100 + i64::from(port)), port, "10.0.0.3", 7));
        }
    }
    // A third flow of web.1 that retransmits once (not affected).
    evs.push(rtx(ms(500), 3, "10.0.0.3", 1));
    // Next interval starts: roll-ups of the first are due.
    evs.push(drop_ev(ms(10_000), WEB_NS, None, "NO_SOCKET", "x"));
    let (out, _) = run(&mut d, &evs);
    let r = of(&out, "retransmit_rollup");
    assert_eq!(r.len(), 2, "{out:#?}");
    let by: Vec<(String, u64, u64)> = r
        .iter()
        .map(|e| {
            let p = payload(e);
            (
                p["container"].as_str().unwrap().to_string(),
                p["flows_affected"].as_u64().unwrap(),
                p["flows_retransmitting"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by, vec![("api.1".into(), 2, 3), ("web.1".into(), 2, 3)]);
    assert_eq!(r[0].timestamp, ms(10_000));
    assert!(r[0].message.as_deref().unwrap().contains("2 of its 3"));
}

#[test]
fn reset_forgets_the_flow() {
    let mut d = det();
    let mut reset = EcsEvent::new(ms(300), Kind::Event, Action::TcpReset);
    // A received reset: source is the peer.
    reset.source.ip = Some(ip("10.0.0.3"));
    reset.source.port = Some(8080);
    reset.destination.ip = Some(ip("10.0.0.5"));
    reset.destination.port = Some(1);
    reset.tracer.netns = Some(ns(WEB_NS));
    reset.tracer.tcp = Some(Tcp {
        direction: Some("received"),
        ..Tcp::default()
    });
    let evs = [
        rtx(ms(0), 1, "10.0.0.3", 7),
        rtx(ms(100), 1, "10.0.0.3", 7),
        reset,
        rtx(ms(400), 1, "10.0.0.3", 7),
    ];
    let (out, _) = run(&mut d, &evs);
    assert!(of(&out, "retransmit_burst").is_empty(), "{out:#?}");
}

// ---------------------------------------------------------------- drops

fn drop_lines_and_counts(out: &[EcsEvent], printed: &[bool]) -> (u64, u64) {
    let lines = printed.iter().filter(|p| **p).count() as u64;
    let summarised: u64 = of(out, "drop_summary")
        .iter()
        .map(|e| e.tracer.count.unwrap())
        .sum();
    (lines, summarised)
}

#[test]
fn drop_storm_is_rate_limited_and_fully_accounted() {
    let mut d = det();
    // 3 keys, 7000 drops over 2.5 s (event time), crossing an interval at 10 s.
    let keys = [
        (WEB_NS, Some("web.1"), "NO_SOCKET", "__udp4_lib_rcv+0x10"),
        (WEB_NS, Some("web.1"), "NETFILTER_DROP", "nf_hook_slow+0x9a"),
        (API_NS, None, "NO_SOCKET", "__udp4_lib_rcv+0x10"),
    ];
    let evs: Vec<EcsEvent> = (0..7000i64)
        .map(|i| {
            let (n, c, r, l) = keys[(i % 3) as usize];
            drop_ev(ms(8_500) + i128::from(i) * 357_143, n, c, r, l)
        })
        .collect();
    let (mut out, printed) = run(&mut d, &evs);
    // Before finish, the identity holds up to the last interval boundary;
    // after it, exactly.
    d.finish(evs.last().unwrap().timestamp, &mut out);
    let (lines, summarised) = drop_lines_and_counts(&out, &printed);
    assert_eq!(lines + summarised, 7000);
    // Seconds 8, 9, 10 (partly): at most 1000 printed lines each.
    assert_eq!(lines, 3000, "1000 per second in 3 distinct seconds");
    let s = d.stats();
    assert_eq!(s.drops_seen, 7000);
    assert_eq!(s.drops_printed, lines);
    assert_eq!(s.drops_summarised, summarised);
    // Summaries carry totals; per interval, total = printed + suppressed.
    for e in of(&out, "drop_summary") {
        let p = payload(e);
        assert_eq!(e.event.kind, Kind::Metric);
        assert_eq!(
            p["total"].as_u64().unwrap(),
            p["printed"].as_u64().unwrap() + p["suppressed"].as_u64().unwrap()
        );
        assert_eq!(p["suppressed"].as_u64(), e.tracer.count);
    }
    // Two intervals × three keys.
    assert_eq!(of(&out, "drop_summary").len(), 6);
    let first = &of(&out, "drop_summary")[0];
    assert_eq!(first.timestamp, ms(10_000));
}

#[test]
fn drops_under_the_limit_are_all_printed_and_summarised_with_zero() {
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..5)
        .map(|i| drop_ev(ms(i * 10), WEB_NS, Some("web.1"), "NO_SOCKET", "x"))
        .collect();
    let (mut out, printed) = run(&mut d, &evs);
    assert!(printed.iter().all(|p| *p));
    assert!(out.is_empty());
    d.finish(ms(100), &mut out);
    let s = of(&out, "drop_summary");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].tracer.count, Some(0));
    assert_eq!(payload(s[0])["total"], 5);
    assert_eq!(s[0].tracer.reason.as_deref(), Some("NO_SOCKET"));
}

#[test]
fn drop_summaries_explain_the_reason_by_name_and_location() {
    let mut d = det();
    let evs = [
        drop_ev(
            ms(0),
            WEB_NS,
            Some("web.1"),
            "NETFILTER_DROP",
            "nf_hook_slow+0x9a",
        ),
        drop_ev(
            ms(1),
            WEB_NS,
            Some("web.1"),
            "NOT_SPECIFIED",
            "vxlan_xmit+0x4d2 [vxlan]",
        ),
        drop_ev(ms(2), WEB_NS, Some("web.1"), "FUTURE_REASON", "x"),
    ];
    let (mut out, _) = run(&mut d, &evs);
    d.finish(ms(100), &mut out);
    let s = of(&out, "drop_summary");
    assert_eq!(s.len(), 3);
    let by = |r: &str| {
        let e = s
            .iter()
            .find(|e| e.tracer.reason.as_deref() == Some(r))
            .unwrap();
        (e.message.clone().unwrap(), payload(e)["meaning"].clone())
    };
    let (m, meaning) = by("NETFILTER_DROP");
    assert!(
        m.ends_with("; a firewall rule (nftables/iptables) dropped it — check `nft list ruleset` (and `iptables-save`) in that namespace: Docker's DOCKER-USER, DOCKER and FORWARD chains, and policies set to drop"),
        "{m}"
    );
    assert_eq!(meaning, "a firewall rule (nftables/iptables) dropped it");
    let (m, meaning) = by("NOT_SPECIFIED");
    assert!(
        m.contains("the overlay (vxlan) had no destination for the frame"),
        "{m}"
    );
    assert!(meaning.as_str().unwrap().starts_with("the overlay (vxlan)"));
    let (m, meaning) = by("FUTURE_REASON");
    assert!(
        m.ends_with("; drop reason FUTURE_REASON is not known to this tracer version (newer kernel?) — see the kernel's include/net/dropreason-core.h for this reason"),
        "{m}"
    );
    assert_eq!(
        meaning,
        "drop reason FUTURE_REASON is not known to this tracer version (newer kernel?)"
    );
}

#[test]
fn drop_rate_limit_boundary_is_per_event_second() {
    let cfg = DetectConfig {
        drop_lines_per_sec: 2,
        ..DetectConfig::default()
    };
    let mut d = Detectors::new(cfg);
    let t = |s: i64, n: i64| T0 + i128::from(s) * NS_PER_S + i128::from(n);
    let evs: Vec<EcsEvent> = [
        t(0, 0),
        t(0, 1),
        t(0, 999_999_999),
        t(1, 0),
        t(1, 1),
        t(1, 2),
    ]
    .into_iter()
    .map(|ts| drop_ev(ts, WEB_NS, None, "NO_SOCKET", "x"))
    .collect();
    let (mut out, printed) = run(&mut d, &evs);
    assert_eq!(printed, vec![true, true, false, true, true, false]);
    d.finish(t(1, 3), &mut out);
    let (lines, summarised) = drop_lines_and_counts(&out, &printed);
    assert_eq!((lines, summarised), (4, 2));
}

#[test]
fn drop_table_overflow_keeps_accounting() {
    let cfg = DetectConfig {
        max_keys: 16,
        drop_lines_per_sec: 0,
        ..DetectConfig::default()
    };
    let mut d = Detectors::new(cfg);
    let evs: Vec<EcsEvent> = (0..100)
        .map(|i| drop_ev(ms(i), WEB_NS, None, &format!("R{i}"), "x"))
        .collect();
    let (mut out, printed) = run(&mut d, &evs);
    d.finish(ms(200), &mut out);
    let (lines, summarised) = drop_lines_and_counts(&out, &printed);
    assert_eq!(lines, 0);
    assert_eq!(summarised, 100);
    assert!(d.stats().drop_overflow > 0);
    assert!(of(&out, "drop_summary").len() <= 17);
}

// ---------------------------------------------------------------- bounds

#[test]
fn flood_of_distinct_flows_and_macs_stays_bounded_and_counts_evictions() {
    let cfg = DetectConfig {
        max_keys: 64,
        ..DetectConfig::default()
    };
    let mut d = Detectors::new(cfg);
    let mut out = Vec::new();
    for i in 0..10_000u32 {
        let t = ms(i64::from(i / 10));
        let mut e = rtx(t, (i % 60_000) as u16, "10.0.0.3", i);
        e.destination.ip = Some(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        d.advance(t, &mut out);
        d.observe(&e, &mut out);
        let mac = Mac([2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]);
        let mut m = fdb(t, Action::FdbMove, mac, "vxlan1", Some("veth7b2"));
        m.source.container = None;
        d.observe(&m, &mut out);
    }
    let s = d.stats();
    assert!(s.flows <= 64, "{s:?}");
    assert!(s.fdb_macs <= 64, "{s:?}");
    assert!(s.evictions > 0, "{s:?}");
    assert!(s.tracked_keys <= 6 * 64, "{s:?}");
}

#[test]
fn evictions_are_reported_in_detector_status_lines() {
    let cfg = DetectConfig {
        max_keys: 64,
        ..DetectConfig::default()
    };
    let mut d = Detectors::new(cfg);
    let mut out = Vec::new();
    // 150 s of event time: a new flow every 10 ms overflows the flow table.
    for i in 0..15_000u32 {
        let t = ms(i64::from(i) * 10);
        let mut e = rtx(t, (i % 60_000) as u16, "10.0.0.3", i);
        e.destination.ip = Some(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        d.advance(t, &mut out);
        d.observe(&e, &mut out);
    }
    // While tables overflow: one line a minute of event time, not more.
    let during = of(&out, "detector_status").len();
    assert!((1..=3).contains(&during), "{during}");
    d.finish(ms(150_000), &mut out);
    let lines = of(&out, "detector_status");
    assert_eq!(lines.len(), during + 1, "one more at the end");
    let last = lines[lines.len() - 1];
    assert_eq!(last.event.kind, Kind::State);
    let stats = last.tracer.detect.as_ref().expect("stats");
    let ev = stats["evictions"].as_u64().unwrap();
    assert_eq!(ev, d.stats().evictions);
    assert!(ev > 0);
    let msg = last.message.as_deref().unwrap();
    assert!(
        msg.contains("evicted because a table was full (--detect-max-keys 64)"),
        "{msg}"
    );

    // No overflow: no line until the end, and the end line says nothing was lost.
    let mut d = det();
    let mut out = Vec::new();
    for i in 0..200u32 {
        let t = ms(i64::from(i) * 1000);
        d.advance(t, &mut out);
        d.observe(&rtx(t, 1, "10.0.0.3", i), &mut out);
    }
    assert!(of(&out, "detector_status").is_empty());
    d.finish(ms(200_000), &mut out);
    let lines = of(&out, "detector_status");
    assert_eq!(lines.len(), 1);
    assert!(!lines[0].message.as_deref().unwrap().contains("evicted"));
}

#[test]
fn idle_state_expires() {
    let mut d = det();
    let mut out = Vec::new();
    d.observe(&rtx(ms(0), 1, "10.0.0.3", 7), &mut out);
    assert_eq!(d.stats().flows, 1);
    d.advance(ms(20_000), &mut out);
    d.advance(ms(21_500), &mut out);
    let s = d.stats();
    assert_eq!(s.flows, 0, "{s:?}");
    assert!(s.expired >= 1);
}

// ---------------------------------------------------------------- incidents

/// The field report's outage: api.1's MAC flaps between its veth and
/// vxlan1, ARP requests from web.1 get two replies, web.1's flows stall.
fn outage() -> Vec<EcsEvent> {
    let mut evs = Vec::new();
    for i in 0..6i64 {
        let (a, b) = if i % 2 == 0 {
            ("veth7b2", "vxlan1")
        } else {
            ("vxlan1", "veth7b2")
        };
        evs.push(fdb_move(ms(i * 400), a, b));
    }
    reply_hops(ms(2_500), "vxlan1", &mut evs);
    reply_hops(ms(2_501), "veth7b2", &mut evs);
    for i in 0..3i64 {
        evs.push(rtx(ms(3_000 + i * 300), 40000, "10.0.0.3", 99));
    }
    evs
}

/// (id, state) of each incident line (leaked: a test's few strings).
fn incidents(out: &[EcsEvent]) -> Vec<(&'static str, &'static str)> {
    let leak = |v: &Value| -> &'static str { v.as_str().unwrap().to_string().leak() };
    of(out, "incident")
        .iter()
        .map(|e| {
            let p = payload(e);
            (leak(&p["id"]), leak(&p["state"]))
        })
        .collect()
}

#[test]
fn a_large_incident_lists_its_first_members_and_counts_the_rest() {
    use crate::detect::incident::MAX_LISTED;
    let mut d = det();
    let n = 100u32;
    let mut evs = Vec::new();
    // web.1 (10.0.0.5) loses its flows to 100 databases: one incident.
    for i in 0..n {
        let dst = format!("10.0.{}.{}", 1 + i / 200, 1 + i % 200);
        for k in 0..3i64 {
            let mut e = rtx(ms(i as i64 * 10 + k), 40000 + i as u16, &dst, 99);
            e.destination.container = Some(container(&format!("db{i:03}")));
            evs.push(e);
        }
    }
    let (out, _) = run(&mut d, &evs);
    let lines = of(&out, "incident");
    assert!(lines.len() > 1);
    assert!(
        lines.iter().all(|l| payload(l)["id"] == "inc-1"),
        "{lines:#?}"
    );
    let last = *lines.last().unwrap();
    let p = payload(last);
    // 101 containers and 101 IPs: the first MAX_LISTED of each in sort
    // order, the rest counted.
    let listed = |k: &str| -> Vec<String> {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let containers = listed("containers");
    let want: Vec<String> = (0..MAX_LISTED).map(|i| format!("db{i:03}")).collect();
    assert_eq!(containers, want);
    assert_eq!(p["omitted_containers"], n as usize + 1 - MAX_LISTED);
    let ips: Vec<IpAddr> = listed("ips").iter().map(|s| ip(s)).collect();
    assert_eq!(ips.len(), MAX_LISTED);
    assert!(ips.windows(2).all(|w| w[0] < w[1]), "{ips:?}");
    assert_eq!(ips[0], ip("10.0.0.5"));
    assert_eq!(p["omitted_ips"], n as usize + 1 - MAX_LISTED);
    assert!(p.get("omitted_macs").is_none(), "{p}");
    let mut b = Vec::new();
    last.write_line(&mut b).unwrap();
    assert!(b.len() < 16 * 1024, "{} bytes", b.len());
}

/// The outage through a vxlan and an overlay namespace whose names a
/// hostile container chose: the hint pastes each as one quoted shell word.
#[test]
fn incident_hint_quotes_hostile_interface_and_namespace_names() {
    let vx = "vx$(touch /tmp/p)";
    let nsname = "1-x'y z";
    let rename = |mut e: EcsEvent| {
        let swap = |s: &mut Option<smol_str::SmolStr>| {
            if s.as_deref() == Some("vxlan1") {
                *s = Some(vx.into());
            }
        };
        swap(&mut e.tracer.port);
        swap(&mut e.tracer.previous_port);
        for p in [&mut e.tracer.port_peer, &mut e.tracer.previous_port_peer]
            .into_iter()
            .flatten()
        {
            if p.interface == "vxlan1" {
                p.interface = vx.into();
            }
        }
        if let Some(i) = e.tracer.interface.as_mut() {
            if i.name == "vxlan1" {
                i.name = vx.into();
            }
        }
        if let Some(n) = e.tracer.netns.as_mut() {
            if n.name.as_deref() == Some("1-8f3e2a1b") {
                n.name = Some(nsname.into());
            }
        }
        e
    };
    let evs: Vec<EcsEvent> = outage().into_iter().map(rename).collect();
    let mut d = det();
    let (out, _) = run(&mut d, &evs);
    let last = *of(&out, "incident").last().unwrap();
    let hint = payload(last)["hint"].as_str().unwrap().to_string();
    assert!(
        hint.contains(r#"ip -n '1-x'\''y z' neigh del 10.0.0.3 dev 'vx$(touch /tmp/p)'"#),
        "{hint}"
    );
    assert!(
        hint.contains(
            r#"bridge -n '1-x'\''y z' fdb del 02:42:0a:00:00:03 dev 'vx$(touch /tmp/p)'"#
        ),
        "{hint}"
    );
    assert!(
        hint.contains(r#"ln -s '/var/run/docker/netns/1-x'\''y z' '/var/run/netns/1-x'\''y z'"#),
        "{hint}"
    );
}

#[test]
fn incident_open_update_resolved() {
    let mut d = det();
    let evs = outage();
    let (mut out, _) = run(&mut d, &evs);
    assert_eq!(
        incidents(&out),
        vec![("inc-1", "open"), ("inc-1", "update"), ("inc-1", "update")],
        "{out:#?}"
    );
    let last = *of(&out, "incident").last().unwrap();
    let p = payload(last);
    let msg = last.message.as_deref().unwrap();
    assert_eq!(p["explanation"].as_str(), Some(msg));
    assert!(
        msg.starts_with("10.0.0.3 (api.1) unreachable from web.1: its MAC flapped"),
        "{msg}"
    );
    assert!(
        msg.contains("between veth7b2 and vxlan1 on overlay backend"),
        "{msg}"
    );
    assert!(msg.contains("ARP request for it got 2 replies"), "{msg}");
    assert!(
        msg.contains("a static ARP/FDB entry on vxlan1 for a local container"),
        "{msg}"
    );
    let hint = p["hint"].as_str().unwrap();
    assert!(
        hint.contains("ip -n 1-8f3e2a1b neigh del 10.0.0.3 dev vxlan1"),
        "{hint}"
    );
    assert!(
        hint.contains("bridge -n 1-8f3e2a1b fdb del 02:42:0a:00:00:03 dev vxlan1"),
        "{hint}"
    );
    let types: Vec<&str> = p["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec!["arp_duplicate_reply", "fdb_flap", "retransmit_burst"]
    );
    assert_eq!(p["containers"], serde_json::json!(["api.1", "web.1"]));
    assert_eq!(p["macs"], serde_json::json!(["02-42-0A-00-00-03"]));
    for k in ["omitted_containers", "omitted_ips", "omitted_macs"] {
        assert!(p.get(k).is_none(), "nothing left out, no {k}: {p}");
    }

    // The flap goes on (a re-alert and touches keep the incident open, no
    // new update line)...
    let more: Vec<EcsEvent> = (6..=20i64)
        .map(|i| {
            if i % 2 == 0 {
                fdb_move(ms(i * 1000), "veth7b2", "vxlan1")
            } else {
                fdb_move(ms(i * 1000), "vxlan1", "veth7b2")
            }
        })
        .collect();
    let (o2, _) = run(&mut d, &more);
    assert_eq!(of(&o2, "fdb_flap").len(), 1, "re-alert at 11 s: {o2:#?}");
    assert!(of(&o2, "incident").is_empty(), "{o2:#?}");
    // ...then stops: resolved one window after the last symptom, with the
    // flap's latest count.
    let mut o3 = Vec::new();
    d.advance(ms(20_000) + 30 * NS_PER_S - 1, &mut o3);
    assert!(of(&o3, "incident").is_empty());
    d.advance(ms(60_000), &mut o3);
    let r = of(&o3, "incident");
    assert_eq!(r.len(), 1);
    assert_eq!(payload(r[0])["state"], "resolved");
    assert_eq!(r[0].timestamp, ms(20_000) + 30 * NS_PER_S);
    assert!(
        payload(r[0])["explanation"]
            .as_str()
            .unwrap()
            .contains("its MAC flapped 21×"),
        "{:?}",
        r[0]
    );
    out.extend(o3);

    // A new alert later opens a new incident with the next id.
    let (o4, _) = run(
        &mut d,
        &[
            fdb_move(ms(100_000), "veth7b2", "vxlan1"),
            fdb_move(ms(100_001), "vxlan1", "veth7b2"),
            fdb_move(ms(100_002), "veth7b2", "vxlan1"),
        ],
    );
    assert_eq!(incidents(&o4), vec![("inc-2", "open")]);
}

#[test]
fn repeated_alert_of_same_type_and_members_is_no_update() {
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..25i64)
        .map(|i| {
            let (a, b) = if i % 2 == 0 {
                ("veth7b2", "vxlan1")
            } else {
                ("vxlan1", "veth7b2")
            };
            fdb_move(ms(i * 1000), a, b)
        })
        .collect();
    let (out, _) = run(&mut d, &evs);
    assert_eq!(of(&out, "fdb_flap").len(), 3);
    assert_eq!(incidents(&out), vec![("inc-1", "open")]);
}

#[test]
fn unrelated_alerts_are_separate_incidents_and_a_bridge_merges_them() {
    let mut d = det();
    let other = Mac([0x02, 0x42, 0x0a, 0, 0, 7]);
    let mut evs = Vec::new();
    for i in 0..3i64 {
        evs.push(fdb_move(ms(i), "veth7b2", "vxlan1"));
    }
    for i in 0..3i64 {
        let mut e = fdb(ms(10 + i), Action::FdbMove, other, "vxlan1", Some("veth1"));
        e.source.container = Some(container("db.1"));
        e.tracer.port_peer = None;
        e.tracer.previous_port_peer = None;
        evs.push(e);
    }
    let (out, _) = run(&mut d, &evs);
    assert_eq!(incidents(&out), vec![("inc-1", "open"), ("inc-2", "open")]);
    // A flow from db.1 to api.1 touches both.
    let mut bridge = Vec::new();
    for i in 0..3i64 {
        let mut e = rtx(ms(100 + i), 5, "10.0.0.3", 1);
        e.container = Some(container("db.1"));
        bridge.push(e);
    }
    let (out, _) = run(&mut d, &bridge);
    let inc = incidents(&out);
    assert_eq!(
        inc,
        vec![("inc-2", "resolved"), ("inc-1", "update")],
        "{out:#?}"
    );
    let merged = of(&out, "incident")[0];
    assert_eq!(payload(merged)["merged_into"], "inc-1");
    assert_eq!(d.stats().open_incidents, 1);
}

#[test]
fn significant_drops_open_an_incident_with_the_reason_meaning() {
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..150)
        .map(|i| {
            drop_ev(
                ms(i),
                WEB_NS,
                Some("web.1"),
                "NETFILTER_DROP",
                "nf_hook_slow+0x9a",
            )
        })
        .collect();
    let (mut out, _) = run(&mut d, &evs);
    d.advance(ms(10_000), &mut out);
    let inc = of(&out, "incident");
    assert_eq!(inc.len(), 1);
    let p = payload(inc[0]);
    // The hint says what to check, the explanation what it means
    // (crate::explain::drop_reasons).
    assert!(
        p["hint"].as_str().unwrap().contains("nft list ruleset"),
        "{p}"
    );
    let explanation = p["explanation"].as_str().unwrap();
    assert!(explanation.starts_with("web.1: 150 packets dropped"), "{p}");
    assert!(
        explanation.contains("a firewall rule (nftables/iptables) dropped it"),
        "{p}"
    );
}

// ---------------------------------------------------------------- determinism

fn serialise(lines: &[EcsEvent]) -> Vec<u8> {
    let mut b = Vec::new();
    for l in lines {
        l.write_line(&mut b).unwrap();
    }
    b
}

#[test]
fn same_events_same_bytes() {
    let mut evs = outage();
    for i in 0..3000i64 {
        let c = if i % 2 == 0 {
            Some("web.1")
        } else {
            Some("api.1")
        };
        evs.push(drop_ev(
            ms(4_000 + i),
            WEB_NS + (i % 5) as u32,
            c,
            "NO_SOCKET",
            "x",
        ));
    }
    let once = || {
        let mut d = det();
        let (mut out, printed) = run(&mut d, &evs);
        d.finish(ms(100_000), &mut out);
        (serialise(&out), printed)
    };
    let (a, pa) = once();
    let (b, pb) = once();
    assert_eq!(pa, pb);
    assert!(a == b, "output differs between two runs");
    assert!(!a.is_empty());
}

#[test]
fn alert_and_status_lines_fed_back_are_ignored() {
    let mut d = det();
    let mut out = Vec::new();
    let e = EcsEvent::new(ms(0), Kind::Alert, Action::FdbFlap);
    assert!(d.observe(&e, &mut out));
    assert!(out.is_empty());
}

// ---------------------------------------------------------------- every kind of line

/// One outage (a MAC flap, a duplicate ARP reply, a burst of drops) gives
/// a line of each kind the detectors print for it, and each of those is
/// written by the fast NDJSON writer exactly as serde writes it.
#[test]
fn each_kind_of_detector_line_of_an_outage_is_written_as_serde_writes_it() {
    let mut d = det();
    let mut evs = outage();
    let other = Mac([0x02, 0x42, 0x0a, 0, 0, 0x99]);
    let r = ("10.0.0.5", WEB_MAC);
    let mut a = arp(
        ms(4_000),
        ("10.0.0.8", Mac([2, 0x42, 10, 0, 0, 8])),
        r,
        ns(WEB_NS),
        "eth0",
        2,
        Some("web.1"),
    );
    a.source.container = Some(container("cache.1"));
    let mut b = arp(
        ms(4_100),
        ("10.0.0.8", other),
        r,
        ns(WEB_NS),
        "eth0",
        2,
        Some("web.1"),
    );
    b.source.container = Some(container("rogue.1"));
    evs.push(a);
    evs.push(b);
    for i in 0..1500i64 {
        evs.push(drop_ev(
            ms(5_000) + i128::from(i) * 100_000,
            WEB_NS,
            Some("web.1"),
            "NO_SOCKET",
            "__udp4_lib_rcv+0x10",
        ));
    }
    let (mut out, _) = run(&mut d, &evs);
    d.advance(ms(80_000), &mut out);
    d.finish(ms(80_000), &mut out);
    let mut seen = std::collections::BTreeSet::new();
    for l in &out {
        let key = (
            l.event.action.as_str(),
            l.tracer
                .incident
                .as_ref()
                .map(|i| i.value()["state"].to_string()),
        );
        if seen.insert(key) {
            let mut fast = Vec::new();
            l.write_line(&mut fast).unwrap();
            let mut serde = serde_json::to_vec(l).unwrap();
            serde.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&serde)
            );
        }
    }
    let kinds: Vec<(&str, Option<String>)> = seen.into_iter().collect();
    let has = |action: &str, state: Option<&str>| {
        kinds.iter().any(|(a, s)| {
            *a == action && s.as_deref() == state.map(|s| format!("\"{s}\"")).as_deref()
        })
    };
    for action in ["fdb_flap", "arp_duplicate_reply", "drop_summary"] {
        assert!(has(action, None), "no {action} line: {kinds:?}");
    }
    for state in ["open", "resolved"] {
        assert!(
            has("incident", Some(state)),
            "no {state} incident: {kinds:?}"
        );
    }
}

#[test]
fn failed_neighbour_resolution_keeps_an_incident_open_but_churn_does_not() {
    use crate::event::Neigh;
    let neigh = |t: i128, state: &str| {
        let mut e = EcsEvent::new(t, Kind::Event, Action::NeighUpdate);
        e.destination.ip = Some(ip("10.0.0.3"));
        e.tracer.netns = Some(ns(WEB_NS));
        e.tracer.neigh = Some(Neigh {
            family: "ipv4",
            old_state: "REACHABLE".into(),
            new_state: state.into(),
            ..Neigh::default()
        });
        e
    };
    for (state, resolved_at) in [
        ("STALE", ms(3_600) + 30 * NS_PER_S),
        ("FAILED", ms(25_000) + 30 * NS_PER_S),
    ] {
        let mut d = det();
        let mut evs = outage();
        evs.push(neigh(ms(25_000), state));
        let (mut out, _) = run(&mut d, &evs);
        d.advance(ms(120_000), &mut out);
        let r: Vec<i128> = of(&out, "incident")
            .iter()
            .filter(|e| payload(e)["state"] == "resolved")
            .map(|e| e.timestamp)
            .collect();
        assert_eq!(r, vec![resolved_at], "{state}");
    }
}

// ---------------------------------------------------------------- idle_flow_killed

const LB_NS: u32 = 4_026_532_600;

/// A retransmit of web.1's flow 10.0.0.5:40000 → 10.0.0.100:8080 (a NAT'd
/// address) with the socket's ACK age and RTO, as the kernel records them.
fn idle_rtx(t: i128, snd_una: u32, retransmits: u8, ack_age_ms: u32, rto_ms: u32) -> EcsEvent {
    let mut e = rtx(t, 40000, "10.0.0.100", snd_una);
    let tcp = e.tracer.tcp.as_mut().unwrap();
    tcp.retransmits = Some(retransmits);
    tcp.ack_age_ms = Some(ack_age_ms);
    tcp.rto_ms = Some(rto_ms);
    e
}

/// That flow's segment (or, `reverse`, its answer) dropped in the lb namespace.
fn lb_drop(t: i128, reverse: bool) -> EcsEvent {
    let mut e = drop_ev(t, LB_NS, None, "IP_INNOROUTES", "ip_error+0x4f");
    e.tracer.netns = Some(Netns {
        inode: LB_NS,
        name: Some("lb-test".into()),
        network: None,
        host: false,
    });
    e.network.transport = Some("tcp".into());
    let (c, s) = ((ip("10.0.0.5"), 40000), (ip("10.0.0.100"), 8080));
    let (a, b) = if reverse { (s, c) } else { (c, s) };
    e.source.ip = Some(a.0);
    e.source.port = Some(a.1);
    e.destination.ip = Some(b.0);
    e.destination.port = Some(b.1);
    e
}

fn idle_det() -> Detectors {
    Detectors::new(DetectConfig {
        idle_min: std::time::Duration::from_secs(5),
        ..DetectConfig::default()
    })
}

/// Idle 8 s, then the send at 0 is dropped in lb and RTO retransmits follow
/// (RTO 200 ms doubling: at 200, 600, 1400 ms).
fn idle_episode(drops: bool) -> Vec<EcsEvent> {
    let mut evs = Vec::new();
    if drops {
        evs.push(lb_drop(ms(0), false));
    }
    for (i, (at, rto)) in [(200, 200), (600, 400), (1400, 800), (3000, 1600)]
        .into_iter()
        .enumerate()
    {
        evs.push(idle_rtx(ms(at), 1000, i as u8 + 1, 8000 + at as u32, rto));
        if drops {
            evs.push(lb_drop(ms(at) + 1000, false));
        }
    }
    evs
}

#[test]
fn idle_flow_joined_with_its_drops_in_the_lb_namespace() {
    let mut d = idle_det();
    let (out, _) = run(&mut d, &idle_episode(true));
    let a = of(&out, "idle_flow_killed");
    assert_eq!(a.len(), 1, "{out:#?}");
    let p = payload(a[0]);
    assert_eq!(p["idle_s"], 8.0);
    assert_eq!(p["retransmits"], 3);
    assert_eq!(p["source"]["ip"], "10.0.0.5");
    assert_eq!(p["source"]["port"], 40000);
    assert_eq!(p["destination"]["ip"], "10.0.0.100");
    assert_eq!(p["destination"]["port"], 8080);
    assert_eq!(p["dropped_in"]["netns"]["name"], "lb-test");
    assert_eq!(p["dropped_in"]["reason"], "IP_INNOROUTES");
    let msg = a[0].message.as_deref().unwrap();
    assert!(msg.contains("idle 8.0 s"), "{msg}");
    assert!(
        msg.contains("every segment was dropped in netns lb-test"),
        "{msg}"
    );
    assert!(
        msg.contains("stateful device forgot the connection"),
        "{msg}"
    );
    assert!(p["hint"].as_str().unwrap().contains("tcp_keepalive_time"));
    assert!(p["hint"].as_str().unwrap().contains("endpoint_mode: dnsrr"));
    // Its incident says it in one sentence with the same hint.
    let inc = of(&out, "incident");
    let ip = payload(inc.last().unwrap());
    let text = inc.last().unwrap().message.as_deref().unwrap();
    assert!(text.contains("idle 8.0 s"), "{text}");
    assert!(
        text.contains("stateful device forgot the idle connection"),
        "{text}"
    );
    assert!(
        ip["hint"].as_str().unwrap().contains("tcp_keepalive_time"),
        "{ip}"
    );
}

#[test]
fn idle_flow_drops_arriving_late_or_reversed_still_join() {
    // The drops come after the retransmits that cross the threshold (other
    // CPUs' records), and one is the peer's answer (reverse tuple).
    let mut evs: Vec<EcsEvent> = idle_episode(false).into_iter().take(2).collect();
    evs.push(lb_drop(ms(700), true));
    evs.push(idle_rtx(ms(1400), 1000, 3, 9400, 800));
    let mut d = idle_det();
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "idle_flow_killed");
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(payload(a[0])["dropped_in"]["netns"]["name"], "lb-test");
    // Out of order in time: a record stamped before the previous one.
    let mut evs = idle_episode(true);
    evs.swap(1, 2);
    let (out, _) = run(&mut idle_det(), &evs);
    assert_eq!(of(&out, "idle_flow_killed").len(), 1);
}

#[test]
fn idle_flow_without_drops_here_waits_one_more_and_says_so() {
    let evs = idle_episode(false);
    let (out, _) = run(&mut idle_det(), &evs[..3]);
    assert!(of(&out, "idle_flow_killed").is_empty());
    let (out, _) = run(&mut idle_det(), &evs);
    let a = of(&out, "idle_flow_killed");
    assert_eq!(a.len(), 1);
    assert!(payload(a[0]).get("dropped_in").is_none());
    assert!(a[0]
        .message
        .as_deref()
        .unwrap()
        .contains("none of its segments was dropped on this host"));
}

#[test]
fn idle_flow_that_recovers_or_was_not_idle_does_not_alert() {
    // Progress after two retransmits: snd_una moves, the episode restarts.
    let mut evs = idle_episode(true);
    evs[5] = idle_rtx(ms(1400), 2000, 3, 9400, 800);
    let (out, _) = run(&mut idle_det(), &evs);
    assert!(of(&out, "idle_flow_killed").is_empty(), "{out:#?}");
    // A busy flow (last ACK 300 ms before the send) losing segments.
    let evs: Vec<EcsEvent> = [(200, 200), (600, 400), (1400, 800), (3000, 1600)]
        .into_iter()
        .enumerate()
        .map(|(i, (at, rto))| idle_rtx(ms(at), 1000, i as u8 + 1, 300 + at as u32, rto))
        .collect();
    let (out, _) = run(&mut idle_det(), &evs);
    assert!(of(&out, "idle_flow_killed").is_empty());
    // Records without the ACK age (older captures): no idle alert.
    let evs: Vec<EcsEvent> = (0..5)
        .map(|i| rtx(ms(i * 500), 40000, "10.0.0.100", 1000))
        .collect();
    let (out, _) = run(&mut idle_det(), &evs);
    assert!(of(&out, "idle_flow_killed").is_empty());
}

#[test]
fn idle_state_is_bounded_and_evictions_counted() {
    let mut d = Detectors::new(DetectConfig {
        max_keys: 16,
        ..DetectConfig::default()
    });
    // A storm of unrelated TCP drops only fills the fixed ring.
    let evs: Vec<EcsEvent> = (0..1000u16)
        .map(|i| {
            let mut e = lb_drop(ms(i64::from(i)), false);
            e.source.port = Some(1000 + i);
            e
        })
        .collect();
    run(&mut d, &evs);
    assert_eq!(d.stats().idle_keys, 0);
    // Retransmitting flows (each with its drop) are bounded, evictions counted.
    let mut evs = Vec::new();
    for i in 0..100u16 {
        let mut r = idle_rtx(ms(2000 + i64::from(i)), 1000, 1, 9000, 200);
        r.source.port = Some(20000 + i);
        evs.push(r);
        let mut dr = lb_drop(ms(2000 + i64::from(i)), false);
        dr.source.port = Some(20000 + i);
        evs.push(dr);
    }
    run(&mut d, &evs);
    let s = d.stats();
    assert!(s.idle_keys <= 32, "{s:?}");
    assert!(s.evictions >= 2 * 84, "{s:?}");
}

#[test]
fn otherhost_drops_on_a_promiscuous_bridge_are_its_harmless_copies() {
    let on = |t: i128, dev: &str, kind: Option<&'static str>| {
        let mut e = drop_ev(t, WEB_NS, None, "OTHERHOST", "ip_rcv_core+0x22c");
        e.tracer.interface = Some(crate::event::Interface {
            name: dev.into(),
            index: 9,
            kind,
        });
        e
    };
    let cfg = DetectConfig {
        drop_incident_threshold: 3,
        ..DetectConfig::default()
    };
    let mut d = Detectors::new(cfg.clone());
    let mut evs: Vec<EcsEvent> = (0..5)
        .map(|i| on(ms(i * 10), "br-0123456789ab", Some("bridge")))
        .collect();
    evs.push(drop_ev(ms(10_000), WEB_NS, None, "NO_SOCKET", "x"));
    let (out, _) = run(&mut d, &evs);
    let s = of(&out, "drop_summary");
    assert_eq!(s.len(), 1, "{out:#?}");
    let m = s[0].message.as_deref().unwrap();
    assert!(
        m.contains("copies of frames that bridge br-0123456789ab forwarded"),
        "{m}"
    );
    assert!(m.contains("is in promiscuous mode"), "{m}");
    assert!(m.contains("nothing was lost"), "{m}");
    assert!(payload(s[0])["meaning"]
        .as_str()
        .unwrap()
        .contains("promiscuous mode"));
    // Harmless copies open no incident however many there are.
    assert!(of(&out, "incident").is_empty(), "{out:#?}");

    // On an interface that is no bridge (or unknown): the general meaning.
    let mut d = Detectors::new(cfg);
    let mut evs: Vec<EcsEvent> = (0..5).map(|i| on(ms(i * 10), "eth0", None)).collect();
    evs.push(drop_ev(ms(10_000), WEB_NS, None, "NO_SOCKET", "x"));
    let (out, _) = run(&mut d, &evs);
    let m = of(&out, "drop_summary")[0].message.clone().unwrap();
    assert!(m.contains("addressed to another host's MAC"), "{m}");
    assert!(!of(&out, "incident").is_empty(), "{out:#?}");
}

#[test]
fn flap_on_a_vlan_aware_bridge_names_the_vlan_and_vlans_do_not_add_up() {
    let in_vlan = |mut e: EcsEvent, v: u16| {
        e.tracer.vlan = Some(v);
        e
    };
    // Moves of one MAC alternating between VLAN 10 and VLAN 20 are two
    // entries that each moved less than the threshold: no flap.
    let mut d = det();
    let evs = [
        in_vlan(fdb_move(ms(0), "veth7b2", "veth9c1"), 10),
        in_vlan(fdb_move(ms(100), "veth9c1", "veth7b2"), 20),
        in_vlan(fdb_move(ms(200), "veth7b2", "veth9c1"), 10),
        in_vlan(fdb_move(ms(300), "veth9c1", "veth7b2"), 20),
    ];
    let (out, _) = run(&mut d, &evs);
    assert!(of(&out, "fdb_flap").is_empty(), "{out:#?}");

    // Three moves in VLAN 10: a flap that says which VLAN, in its line and
    // in its incident.
    let mut d = det();
    let evs = [
        in_vlan(fdb_move(ms(0), "veth7b2", "veth9c1"), 10),
        in_vlan(fdb_move(ms(100), "veth9c1", "veth7b2"), 10),
        in_vlan(fdb_move(ms(200), "veth7b2", "veth9c1"), 10),
    ];
    let (out, _) = run(&mut d, &evs);
    let a = of(&out, "fdb_flap");
    assert_eq!(a.len(), 1, "{out:#?}");
    let m = a[0].message.as_deref().unwrap();
    assert!(m.contains("on bridge br0 VLAN 10 in"), "{m}");
    assert_eq!(payload(a[0])["vlan"], 10);
    let inc = of(&out, "incident");
    assert!(!inc.is_empty(), "{out:#?}");
    let im = inc[0].message.as_deref().unwrap();
    assert!(im.contains("on VLAN 10 in "), "{im}");

    // Untagged (VLAN 0, a bridge without VLAN filtering): no VLAN words.
    let mut d = det();
    let evs = [
        fdb_move(ms(0), "veth7b2", "veth9c1"),
        fdb_move(ms(100), "veth9c1", "veth7b2"),
        fdb_move(ms(200), "veth7b2", "veth9c1"),
    ];
    let (out, _) = run(&mut d, &evs);
    let m = of(&out, "fdb_flap")[0].message.clone().unwrap();
    assert!(!m.contains("VLAN"), "{m}");
}
