//! Tests of the overlay rules (multicast, underlay, MTU) on synthetic drops.

use std::{net::IpAddr, time::Duration};

use serde_json::Value;

use super::*;
use crate::event::{ContainerData, Interface, Netns};

const T0: i128 = 1_700_000_000 * NS_PER_S;
const OVERLAY_NS: u32 = 4_026_532_300;
const HOST_NS: u32 = 4_026_531_840;
const ROUTER_NS: u32 = 4_026_532_700;
const HZ_NS: u32 = 4_026_532_800;

fn ms(ms: i64) -> i128 {
    T0 + i128::from(ms) * 1_000_000
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn container(name: &str) -> ContainerRef {
    ContainerRef::new(ContainerData {
        id: format!("{name}-0123456789abcdef"),
        name: Some(name.to_string()),
        ..Default::default()
    })
}

/// What identity would know: host addresses, MTUs, vxlan ports.
#[derive(Default)]
struct Facts {
    local: Vec<(u32, IpAddr)>,
    mtus: Vec<(u32, &'static str, u32)>,
    vxlan: Vec<(u16, Vec<String>)>,
}

impl NetFacts for Facts {
    fn mtu(&self, netns: u32, ifname: &str) -> Option<u32> {
        self.mtus
            .iter()
            .find(|(n, i, _)| *n == netns && *i == ifname)
            .map(|m| m.2)
    }
    fn smallest_mtu(&self, netns: u32) -> Option<(String, u32)> {
        self.mtus
            .iter()
            .filter(|(n, _, _)| *n == netns)
            .min_by_key(|m| m.2)
            .map(|m| (m.1.to_string(), m.2))
    }
    fn is_local(&self, netns: u32, ip: IpAddr) -> bool {
        self.local.contains(&(netns, ip))
    }
    fn vxlan_ports(&self) -> Vec<(u16, Vec<String>)> {
        self.vxlan.clone()
    }
}

fn det() -> Detectors {
    Detectors::new(DetectConfig::default())
}

#[allow(clippy::too_many_arguments)]
fn drop_ev(
    t: i128,
    netns: Netns,
    reason: &str,
    location: &str,
    transport: &str,
    src: (&str, u16),
    dst: (&str, u16),
    ifname: &str,
) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::SkbDrop);
    e.tracer.netns = Some(netns);
    e.tracer.reason = Some(reason.into());
    e.tracer.reason_raw = Some(1);
    e.tracer.location = Some(location.into());
    e.tracer.interface = Some(Interface {
        name: ifname.into(),
        index: 7,
        kind: None,
    });
    e.network.type_ = Some(if src.0.contains(':') { "ipv6" } else { "ipv4" });
    e.network.transport = Some(transport.into());
    e.source.ip = Some(ip(src.0));
    e.source.port = (src.1 != 0).then_some(src.1);
    e.destination.ip = Some(ip(dst.0));
    e.destination.port = (dst.1 != 0).then_some(dst.1);
    e
}

fn overlay_ns() -> Netns {
    Netns {
        inode: OVERLAY_NS,
        name: Some("1-8f3e2a1b".into()),
        network: Some("backend".into()),
        host: false,
    }
}

fn plain_ns(inode: u32, name: &str) -> Netns {
    Netns {
        inode,
        name: Some(name.into()),
        network: None,
        host: false,
    }
}

/// Hazelcast in `hz.1` multicasting its join to 224.2.2.3:54327, dropped
/// at the overlay's vxlan.
fn hz_join(t: i128, reason: &str, location: &str) -> EcsEvent {
    let mut e = drop_ev(
        t,
        overlay_ns(),
        reason,
        location,
        "udp",
        ("10.0.1.5", 54328),
        ("224.2.2.3", 54327),
        "vxlan0",
    );
    e.source.container = Some(container("hz.1"));
    e
}

fn run(d: &mut Detectors, facts: &dyn NetFacts, evs: &[EcsEvent]) -> Vec<EcsEvent> {
    let mut out = Vec::new();
    for e in evs {
        d.advance(e.timestamp, &mut out);
        d.observe_with(e, facts, &mut out);
    }
    out
}

fn of(out: &[EcsEvent], action: Action) -> Vec<&EcsEvent> {
    out.iter().filter(|e| e.event.action == action).collect()
}

fn payload(e: &EcsEvent) -> Value {
    e.tracer
        .alert
        .as_ref()
        .or(e.tracer.incident.as_ref())
        .expect("payload")
        .value()
}

fn msg(e: &EcsEvent) -> &str {
    e.message.as_deref().unwrap_or("")
}

// ------------------------------------------------------------- multicast

#[test]
fn multicast_dropped_at_the_vxlan_alerts_once_naming_sender_group_and_overlay() {
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..10)
        .map(|i| hz_join(ms(i * 100), "NO_TX_TARGET", "vxlan_xmit+0x2f1"))
        .collect();
    let out = run(&mut d, &NoFacts, &evs);
    let alerts = of(&out, Action::OverlayMulticastDropped);
    assert_eq!(alerts.len(), 1, "one alert for one sender/group");
    let a = alerts[0];
    let m = msg(a);
    assert!(m.contains("hz.1 (10.0.1.5)"), "{m}");
    assert!(m.contains("224.2.2.3:54327"), "{m}");
    assert!(m.contains("overlay backend"), "{m}");
    assert!(m.contains("do not carry multicast between hosts"), "{m}");
    let p = payload(a);
    assert_eq!(p["sender"]["container"], "hz.1");
    assert_eq!(p["group"], "224.2.2.3");
    assert_eq!(p["port"], 54327);
    assert_eq!(p["network"], "backend");
    assert!(p["hint"].as_str().unwrap().contains("tcp-ip join"));
    assert_eq!(a.container.as_ref().unwrap().display_name(), "hz.1");
    // The incident says the same, with the hint, and keeps the count.
    let inc = of(&out, Action::Incident);
    assert_eq!(inc.len(), 1, "{inc:?}");
    let p = payload(inc[0]);
    let expl = p["explanation"].as_str().unwrap();
    assert!(expl.starts_with("hz.1 (10.0.1.5)"), "{expl}");
    assert!(expl.contains("224.2.2.3:54327"), "{expl}");
    assert!(expl.contains("do not carry multicast"), "{expl}");
    assert!(p["hint"].as_str().unwrap().contains("tcp-ip join"));
    assert_eq!(d.stats().overlay_keys, 1);
}

#[test]
fn older_kernels_not_specified_at_vxlan_xmit_counts_other_drops_do_not() {
    let mut d = det();
    let mut unicast = hz_join(ms(0), "NO_TX_TARGET", "vxlan_xmit+0x2f1");
    unicast.destination.ip = Some(ip("10.0.1.9"));
    let mut igmp = hz_join(ms(1), "NO_TX_TARGET", "vxlan_xmit+0x2f1");
    igmp.network.transport = Some("igmp".into());
    igmp.destination.ip = Some(ip("224.0.0.22"));
    let elsewhere = hz_join(ms(2), "NOT_SPECIFIED", "br_dev_xmit+0x10");
    let out = run(&mut d, &NoFacts, &[unicast, igmp, elsewhere]);
    assert!(of(&out, Action::OverlayMulticastDropped).is_empty());

    let out = run(
        &mut d,
        &NoFacts,
        &[hz_join(ms(3), "NOT_SPECIFIED", "vxlan_xmit+0x11")],
    );
    assert_eq!(of(&out, Action::OverlayMulticastDropped).len(), 1);
}

#[test]
fn multicast_out_of_order_is_one_fault_and_recovery_alerts_again() {
    let mut d = det();
    // Per-CPU timestamps a little out of order: still one fault.
    let evs = [
        hz_join(ms(500), "NO_TX_TARGET", "vxlan_xmit+0x2f1"),
        hz_join(ms(100), "NO_TX_TARGET", "vxlan_xmit+0x2f1"),
        hz_join(ms(300), "NO_TX_TARGET", "vxlan_xmit+0x2f1"),
    ];
    let out = run(&mut d, &NoFacts, &evs);
    assert_eq!(of(&out, Action::OverlayMulticastDropped).len(), 1);
    // Quiet for longer than the window: the incident resolves and the
    // fault is forgotten...
    let window = DetectConfig::default().incident_window;
    let later = ms(500) + window.as_nanos() as i128 + 2 * NS_PER_S;
    let mut out = Vec::new();
    d.advance(later, &mut out);
    let resolved: Vec<_> = of(&out, Action::Incident)
        .into_iter()
        .filter(|e| payload(e)["state"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(d.stats().overlay_keys, 0, "recovered fault forgotten");
    // ...and when it breaks again it is a new alert and a new incident.
    let out = run(
        &mut d,
        &NoFacts,
        &[hz_join(
            later + NS_PER_S,
            "NO_TX_TARGET",
            "vxlan_xmit+0x2f1",
        )],
    );
    assert_eq!(of(&out, Action::OverlayMulticastDropped).len(), 1);
    let inc = of(&out, Action::Incident);
    assert_eq!(payload(inc[0])["state"], "open");
    assert_eq!(payload(inc[0])["id"], "inc-2");
}

// --------------------------------------------------------------- underlay

fn host_facts() -> Facts {
    Facts {
        local: vec![(HOST_NS, ip("192.168.50.2"))],
        vxlan: vec![(4789, vec!["backend".into(), "frontend".into()])],
        ..Facts::default()
    }
}

fn host_ns() -> Netns {
    plain_ns(HOST_NS, "hostb")
}

#[test]
fn vxlan_from_a_peer_dropped_by_a_firewall_names_peer_port_and_overlays() {
    let mut d = det();
    let f = host_facts();
    let evs: Vec<EcsEvent> = (0..5)
        .map(|i| {
            drop_ev(
                ms(i * 10),
                host_ns(),
                "NETFILTER_DROP",
                "nf_hook_slow+0x9b",
                "udp",
                ("192.168.50.1", 40000 + i as u16),
                ("192.168.50.2", 4789),
                "ul0",
            )
        })
        .collect();
    let out = run(&mut d, &f, &evs);
    let a = of(&out, Action::OverlayUnderlayBlocked);
    assert_eq!(
        a.len(),
        1,
        "source ports vary per flow: still one peer/port"
    );
    let m = msg(a[0]);
    assert!(m.contains("from peer host 192.168.50.1"), "{m}");
    assert!(m.contains("VXLAN data path udp/4789"), "{m}");
    assert!(m.contains("overlays backend and frontend"), "{m}");
    assert!(m.contains("a firewall rule dropped it"), "{m}");
    assert!(m.contains("tcp+udp/7946"), "{m}");
    let p = payload(a[0]);
    assert_eq!(p["peer"], "192.168.50.1");
    assert_eq!(p["port"], 4789);
    assert_eq!(p["protocol"], "udp");
    assert_eq!(p["direction"], "incoming");
    assert_eq!(p["overlays"][0], "backend");
    let inc = of(&out, Action::Incident);
    let p = payload(inc[0]);
    let expl = p["explanation"].as_str().unwrap();
    assert!(expl.starts_with("peer host 192.168.50.1"), "{expl}");
    assert!(expl.contains("blocked"), "{expl}");
    assert!(p["hint"].as_str().unwrap().contains("udp/4789"));
}

#[test]
fn outgoing_gossip_reply_and_esp_name_the_other_host() {
    let mut d = det();
    let f = host_facts();
    // Our gossip answer to the peer, dropped on its way out.
    let out_ev = drop_ev(
        ms(0),
        host_ns(),
        "NETFILTER_DROP",
        "nf_hook_slow+0x9b",
        "tcp",
        ("192.168.50.2", 7946),
        ("192.168.50.7", 51000),
        "ul0",
    );
    let esp = drop_ev(
        ms(1),
        host_ns(),
        "XFRM_POLICY",
        "__xfrm_policy_check+0x1",
        "50",
        ("192.168.50.8", 0),
        ("192.168.50.2", 0),
        "ul0",
    );
    let out = run(&mut d, &f, &[out_ev, esp]);
    let a = of(&out, Action::OverlayUnderlayBlocked);
    assert_eq!(a.len(), 2);
    let p = payload(a[0]);
    assert_eq!(p["peer"], "192.168.50.7");
    assert_eq!(p["direction"], "outgoing");
    // Gossip carries every overlay of the host.
    assert_eq!(p["overlays"][1], "frontend");
    assert_eq!(p["port"], 7946);
    assert!(msg(a[0]).contains("to peer host 192.168.50.7 (gossip tcp/7946)"));
    let p = payload(a[1]);
    assert_eq!(p["peer"], "192.168.50.8");
    assert_eq!(p["protocol"], "esp");
    assert!(p.get("port").is_none());
    assert!(msg(a[1]).contains("IPsec"), "{}", msg(a[1]));
}

#[test]
fn no_socket_on_another_data_path_port_says_the_ports_differ() {
    let mut d = det();
    let f = Facts {
        vxlan: vec![(4790, vec!["backend".into()])],
        ..host_facts()
    };
    let e = drop_ev(
        ms(0),
        host_ns(),
        "NO_SOCKET",
        "__udp4_lib_rcv+0x5d",
        "udp",
        ("192.168.50.1", 40000),
        ("192.168.50.2", 4789),
        "ul0",
    );
    let out = run(&mut d, &f, &[e]);
    let a = of(&out, Action::OverlayUnderlayBlocked);
    assert_eq!(a.len(), 1);
    let m = msg(a[0]);
    assert!(m.contains("this host's overlays use udp/4790"), "{m}");
    assert!(m.contains("disagree on the data-path port"), "{m}");
    assert!(payload(a[0])["hint"]
        .as_str()
        .unwrap()
        .contains("--data-path-port"));
}

#[test]
fn other_ports_and_container_namespaces_are_not_underlay() {
    let mut d = det();
    let f = host_facts();
    let web = drop_ev(
        ms(0),
        host_ns(),
        "NETFILTER_DROP",
        "nf_hook_slow+0x9b",
        "tcp",
        ("192.168.50.1", 40000),
        ("192.168.50.2", 80),
        "ul0",
    );
    let mut in_container = drop_ev(
        ms(1),
        plain_ns(HZ_NS, "abc"),
        "NETFILTER_DROP",
        "nf_hook_slow+0x9b",
        "udp",
        ("10.0.1.5", 40000),
        ("10.0.1.6", 7946),
        "eth0",
    );
    in_container.container = Some(container("app.1"));
    let out = run(&mut d, &f, &[web, in_container]);
    assert!(of(&out, Action::OverlayUnderlayBlocked).is_empty());
}

// -------------------------------------------------------------------- MTU

fn router_facts() -> Facts {
    Facts {
        mtus: vec![
            (ROUTER_NS, "lo", 65536),
            (ROUTER_NS, "ra", 1500),
            (ROUTER_NS, "rb", 1400),
        ],
        ..Facts::default()
    }
}

fn too_big(t: i128, dport: u16) -> EcsEvent {
    drop_ev(
        t,
        plain_ns(ROUTER_NS, "rtr"),
        "PKT_TOO_BIG",
        "ip_forward+0x1c4",
        if dport == 4789 { "udp" } else { "tcp" },
        ("10.9.1.2", 45000),
        ("10.9.2.2", dport),
        "ra",
    )
}

#[test]
fn packet_too_big_names_the_namespace_interface_mtus_and_the_mtu_to_use() {
    let mut d = det();
    let f = router_facts();
    let evs: Vec<EcsEvent> = (0..8).map(|i| too_big(ms(i * 200), 5201)).collect();
    let out = run(&mut d, &f, &evs);
    let a = of(&out, Action::MtuBlackhole);
    assert_eq!(a.len(), 1);
    let m = msg(a[0]);
    assert!(m.contains("10.9.1.2 → 10.9.2.2"), "{m}");
    assert!(m.contains("netns rtr, arriving on ra (MTU 1500)"), "{m}");
    assert!(m.contains("the smallest MTU there is rb's 1400"), "{m}");
    let p = payload(a[0]);
    assert_eq!(p["interface"], "ra");
    assert_eq!(p["interface_mtu"], 1500);
    assert_eq!(p["path_interface"], "rb");
    assert_eq!(p["path_mtu"], 1400);
    assert_eq!(p["recommended_mtu"], 1400);
    assert!(p["hint"]
        .as_str()
        .unwrap()
        .contains("com.docker.network.driver.mtu=1400"));
    let inc = of(&out, Action::Incident);
    let p = payload(inc[0]);
    let expl = p["explanation"].as_str().unwrap();
    assert!(expl.contains("an MTU blackhole"), "{expl}");
    assert!(expl.contains("netns rtr"), "{expl}");
    // Later drops update the incident's count, without new alert lines.
    let last = of(&out, Action::Incident);
    assert!(last.len() <= 2, "{last:?}");
}

#[test]
fn vxlan_frames_too_big_leave_room_for_the_encapsulation() {
    let mut d = det();
    let out = run(&mut d, &router_facts(), &[too_big(ms(0), 4789)]);
    let a = of(&out, Action::MtuBlackhole);
    let p = payload(a[0]);
    assert_eq!(p["vxlan"], true);
    assert_eq!(p["recommended_mtu"], 1350);
}

#[test]
fn without_mtus_the_hint_says_how_to_find_them_and_recovery_realerts() {
    let mut d = det();
    let out = run(&mut d, &NoFacts, &[too_big(ms(0), 5201)]);
    let a = of(&out, Action::MtuBlackhole);
    let p = payload(a[0]);
    assert!(p.get("recommended_mtu").is_none());
    assert!(p["hint"].as_str().unwrap().contains("ip -n rtr link"));
    // Quiet for a window: recovered; then too big again: a new alert.
    let w = DetectConfig::default().incident_window;
    let again = ms(0) + w.as_nanos() as i128 + 5 * NS_PER_S;
    let out = run(&mut d, &NoFacts, &[too_big(again, 5201)]);
    assert_eq!(of(&out, Action::MtuBlackhole).len(), 1);
}

#[test]
fn overlay_fault_table_is_bounded_and_counts_evictions() {
    let cfg = DetectConfig {
        max_keys: 64,
        incident_window: Duration::from_secs(30),
        ..DetectConfig::default()
    };
    let mut d = Detectors::new(cfg);
    let f = host_facts();
    let evs: Vec<EcsEvent> = (0..500u32)
        .map(|i| {
            let peer = format!("172.16.{}.{}", i / 250, i % 250 + 1);
            let mut e = drop_ev(
                ms(i as i64),
                host_ns(),
                "NETFILTER_DROP",
                "nf_hook_slow+0x9b",
                "udp",
                ("192.168.50.1", 40000),
                ("192.168.50.2", 4789),
                "ul0",
            );
            e.source.ip = Some(ip(&peer));
            e
        })
        .collect();
    run(&mut d, &f, &evs);
    let s = d.stats();
    assert!(s.overlay_keys <= 64, "{s:?}");
    assert!(s.evictions > 0, "{s:?}");
}

#[test]
fn retransmits_of_the_blackholed_flow_join_the_mtu_incident_and_keep_its_diagnosis() {
    let mut d = det();
    let f = router_facts();
    let mut evs = vec![too_big(ms(0), 5201)];
    for i in 0..4 {
        let mut e = EcsEvent::new(ms(200 + i * 200), Kind::Event, Action::TcpRetransmit);
        e.source.ip = Some(ip("10.9.1.2"));
        e.source.port = Some(45000);
        e.destination.ip = Some(ip("10.9.2.2"));
        e.destination.port = Some(5201);
        e.tracer.netns = Some(plain_ns(HZ_NS, "client"));
        e.tracer.tcp = Some(crate::event::Tcp {
            state: Some("ESTABLISHED"),
            snd_una: Some(7),
            retransmits: Some(1),
            ..Default::default()
        });
        evs.push(e);
        evs.push(too_big(ms(250 + i * 200), 5201));
    }
    let out = run(&mut d, &f, &evs);
    assert_eq!(of(&out, Action::MtuBlackhole).len(), 1);
    assert_eq!(of(&out, Action::RetransmitBurst).len(), 1);
    let inc = of(&out, Action::Incident);
    let last = payload(inc.last().unwrap());
    assert_eq!(last["id"], "inc-1", "one incident: {inc:?}");
    let types: Vec<&str> = last["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["mtu_blackhole", "retransmit_burst"]);
    let expl = last["explanation"].as_str().unwrap();
    assert!(expl.contains("retransmits without progress"), "{expl}");
    assert!(
        expl.contains("an MTU blackhole (the path fits 1400-byte packets)"),
        "{expl}"
    );
    assert!(last["hint"].as_str().unwrap().contains("mtu=1400"));
}

// ------------------------------------------------- MTU from segment sizes

const CLIENT_NS: u32 = 4_026_532_900;

/// The client's flow 10.9.1.2:45000 → 10.9.2.2:5201 retransmits a
/// `seg`-byte segment cut for `mss` (path MTU 1500), `snd_una` as given.
fn rtx(t: i128, snd_una: u32, seg: u32, mss: u32) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::TcpRetransmit);
    e.tracer.netns = Some(plain_ns(CLIENT_NS, "cli"));
    e.container = Some(container("client.1"));
    e.source.ip = Some(ip("10.9.1.2"));
    e.source.port = Some(45000);
    e.destination.ip = Some(ip("10.9.2.2"));
    e.destination.port = Some(5201);
    e.network.transport = Some("tcp".into());
    e.tracer.tcp = Some(crate::event::Tcp {
        state: Some("ESTABLISHED"),
        snd_una: Some(snd_una),
        retransmits: Some(1),
        seg_len: Some(seg),
        segs: Some(1),
        mss: Some(mss),
        pmtu: Some(mss + 52),
        ..Default::default()
    });
    e
}

#[test]
fn only_full_size_segments_retransmitted_is_an_mtu_blackhole() {
    let mut d = det();
    // Backed-off RTOs: 0.2, 0.6, 1.4 s.
    let evs = [
        rtx(ms(200), 7, 1448, 1448),
        rtx(ms(600), 7, 1448, 1448),
        rtx(ms(1400), 7, 1448, 1448),
        rtx(ms(3000), 7, 1448, 1448),
    ];
    let out = run(&mut d, &NoFacts, &evs);
    let a = of(&out, Action::MtuBlackhole);
    assert_eq!(a.len(), 1, "{out:#?}");
    let m = msg(a[0]);
    assert!(
        m.contains("client.1 (10.9.1.2:45000) → 10.9.2.2:5201: only full-size segments are retransmitted (1448 bytes, 1500-byte packets, 3× without getting through)"),
        "{m}"
    );
    let p = payload(a[0]);
    assert_eq!(p["evidence"], "segment_sizes");
    assert_eq!(p["segment_len"], 1448);
    assert_eq!(p["packet_len"], 1500);
    assert_eq!(p["mss"], 1448);
    assert_eq!(p["pmtu"], 1500);
    assert_eq!(p["retransmits"], 3);
    assert_eq!(p["source"]["netns"]["name"], "cli");
    assert!(p.get("recommended_mtu").is_none(), "{p}");
    let hint = p["hint"].as_str().unwrap();
    assert!(
        hint.contains("ip netns exec cli ping -M do -s 1472 10.9.2.2"),
        "{hint}"
    );
    assert!(hint.contains("com.docker.network.driver.mtu"), "{hint}");
    // The flow's retransmit_burst opened the incident; the MTU alert
    // updates its sentence and hint.
    let inc = of(&out, Action::Incident);
    let last = payload(inc[inc.len() - 1]);
    let expl = last["explanation"].as_str().unwrap().to_string();
    assert!(expl.contains("an MTU blackhole"), "{expl}");
    assert!(expl.contains("only full-size segments"), "{expl}");
    assert!(
        last["hint"].as_str().unwrap().contains("ping -M do"),
        "{last}"
    );
}

#[test]
fn a_smaller_mtu_in_the_senders_namespace_is_the_one_to_use() {
    let mut d = det();
    let f = Facts {
        mtus: vec![(CLIENT_NS, "eth0", 1500), (CLIENT_NS, "wg0", 1420)],
        ..Facts::default()
    };
    let evs: Vec<EcsEvent> = (0..3).map(|i| rtx(ms(200 << i), 7, 1448, 1448)).collect();
    let out = run(&mut d, &f, &evs);
    let p = payload(of(&out, Action::MtuBlackhole)[0]);
    assert_eq!(p["recommended_mtu"], 1420);
    assert_eq!(p["path_interface"], "wg0");
    assert!(p["hint"]
        .as_str()
        .unwrap()
        .contains("com.docker.network.driver.mtu=1420"));
}

#[test]
fn a_flow_that_recovers_or_shrinks_its_segments_never_alerts() {
    // Progress between full-size retransmits: they got through.
    let mut d = det();
    let evs = [
        rtx(ms(200), 7, 1448, 1448),
        rtx(ms(600), 7, 1448, 1448),
        rtx(ms(700), 1455, 1448, 1448),
        rtx(ms(900), 1455, 1448, 1448),
    ];
    assert!(of(&run(&mut d, &NoFacts, &evs), Action::MtuBlackhole).is_empty());
    // Path-MTU discovery works: the MSS shrinks, smaller segments pass.
    let mut d = det();
    let evs = [
        rtx(ms(200), 7, 1448, 1448),
        rtx(ms(600), 7, 1448, 1448),
        rtx(ms(601), 7, 1348, 1348),
        rtx(ms(1000), 7, 1348, 1348),
    ];
    assert!(of(&run(&mut d, &NoFacts, &evs), Action::MtuBlackhole).is_empty());
}

#[test]
fn small_segments_failing_too_is_no_mtu_problem() {
    let mut d = det();
    let evs = [
        rtx(ms(200), 7, 1448, 1448),
        rtx(ms(600), 7, 100, 1448),
        rtx(ms(1400), 7, 1448, 1448),
        rtx(ms(3000), 7, 1448, 1448),
    ];
    assert!(of(&run(&mut d, &NoFacts, &evs), Action::MtuBlackhole).is_empty());
    // Nor a socket that never sends large packets.
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..5).map(|i| rtx(ms(200 << i), 7, 500, 500)).collect();
    assert!(of(&run(&mut d, &NoFacts, &evs), Action::MtuBlackhole).is_empty());
    // Nor records without segment sizes (older kernels and captures).
    let mut d = det();
    let evs: Vec<EcsEvent> = (0..5)
        .map(|i| {
            let mut e = rtx(ms(200 << i), 7, 1448, 1448);
            let tcp = e.tracer.tcp.as_mut().unwrap();
            (tcp.seg_len, tcp.mss, tcp.pmtu, tcp.segs) = (None, None, None, None);
            e
        })
        .collect();
    assert!(of(&run(&mut d, &NoFacts, &evs), Action::MtuBlackhole).is_empty());
}

#[test]
fn a_too_big_drop_of_the_pair_is_left_to_the_drop_rule() {
    let mut d = det();
    let f = router_facts();
    let mut evs = vec![too_big(ms(100), 5201)];
    evs.extend((0..4).map(|i| rtx(ms(200 << i), 7, 1448, 1448)));
    let out = run(&mut d, &f, &evs);
    let a = of(&out, Action::MtuBlackhole);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(payload(a[0])["reason"], "PKT_TOO_BIG");
}
