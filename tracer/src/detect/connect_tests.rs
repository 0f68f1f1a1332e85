//! `connect_failed` correlation rules on synthetic event sequences: each
//! cause, across namespaces, in either order, and recovery.

use std::{net::IpAddr, sync::Arc};

use serde_json::Value;

use super::*;
use crate::event::{Action, ContainerRef, EcsEvent, Kind, Neigh, Netns, ServiceRef, Tcp};

const T0: i128 = 1_700_000_000 * NS_PER_S;
const CLIENT_NS: u32 = 4_026_532_600;
const ROUTER_NS: u32 = 4_026_532_700;
const SERVER_NS: u32 = 4_026_532_800;

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

fn named_ns(inode: u32, name: &str, network: Option<&str>) -> Netns {
    Netns {
        inode,
        name: Some(name.into()),
        network: network.map(Into::into),
        host: false,
    }
}

/// A retransmit of the client's flow 10.0.1.2:40000 → `dst`:80 in `state`.
fn syn(t: i128, dst: &str, state: &'static str) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::TcpRetransmit);
    e.source.ip = Some(ip("10.0.1.2"));
    e.source.port = Some(40000);
    e.destination.ip = Some(ip(dst));
    e.destination.port = Some(80);
    e.container = Some(container("client.1"));
    e.tracer.netns = Some(named_ns(CLIENT_NS, "cf-client", None));
    e.network.transport = Some("tcp".into());
    e.tracer.tcp = Some(Tcp {
        state: Some(state),
        snd_una: Some(7),
        retransmits: Some(1),
        ..Tcp::default()
    });
    e
}

fn drop_at(t: i128, netns: Netns, reason: &str, location: &str, dst: &str) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::SkbDrop);
    e.tracer.netns = Some(netns);
    e.tracer.reason = Some(reason.into());
    e.tracer.reason_raw = Some(1);
    e.tracer.location = Some(location.into());
    e.source.ip = Some(ip("10.0.1.2"));
    e.source.port = Some(40000);
    e.destination.ip = Some(ip(dst));
    e.destination.port = Some(80);
    e.network.transport = Some("tcp".into());
    e
}

fn reset_received(t: i128, dst: &str) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::TcpReset);
    e.source.ip = Some(ip(dst));
    e.source.port = Some(80);
    e.destination.ip = Some(ip("10.0.1.2"));
    e.destination.port = Some(40000);
    e.container = Some(container("client.1"));
    e.tracer.netns = Some(named_ns(CLIENT_NS, "cf-client", None));
    e.tracer.tcp = Some(Tcp {
        state: Some("SYN_SENT"),
        direction: Some("received"),
        ..Tcp::default()
    });
    e
}

fn neigh_failed(t: i128, netns: Netns, who: &str) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::NeighUpdate);
    e.destination.ip = Some(ip(who));
    e.tracer.netns = Some(netns);
    e.tracer.neigh = Some(Neigh {
        family: "ipv4",
        old_state: "INCOMPLETE".into(),
        new_state: "FAILED".into(),
        old_mac: None,
        flags: 0,
    });
    e
}

fn run(evs: &[EcsEvent]) -> Vec<EcsEvent> {
    run_with(DetectConfig::default(), evs)
}

fn run_with(cfg: DetectConfig, evs: &[EcsEvent]) -> Vec<EcsEvent> {
    let mut d = Detectors::new(cfg);
    let mut out = Vec::new();
    for e in evs {
        d.advance(e.timestamp, &mut out);
        d.observe(e, &mut out);
    }
    out
}

fn alerts(out: &[EcsEvent]) -> Vec<&EcsEvent> {
    out.iter()
        .filter(|e| e.event.action == Action::ConnectFailed)
        .collect()
}

fn payload(e: &EcsEvent) -> Value {
    e.tracer.alert.as_ref().expect("payload").value()
}

fn msg(e: &EcsEvent) -> &str {
    e.message.as_deref().unwrap_or("")
}

#[test]
fn no_socket_drop_in_the_server_then_reset_says_nothing_listens() {
    let server = named_ns(SERVER_NS, "cf-server", None);
    let out = run(&[
        drop_at(ms(0), server, "NO_SOCKET", "tcp_v4_rcv", "10.0.1.3"),
        reset_received(ms(1), "10.0.1.3"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let m = msg(a[0]);
    assert!(m.contains("client.1 (10.0.1.2)"), "{m}");
    assert!(m.contains("10.0.1.3:80"), "{m}");
    assert!(m.contains("nothing listens on port 80"), "{m}");
    assert!(m.contains("NO_SOCKET in netns cf-server"), "{m}");
    let p = payload(a[0]);
    assert_eq!(p["cause"], "nothing_listens");
    assert_eq!(p["cause_seen"]["netns"]["name"], "cf-server");
    assert_eq!(p["client"]["container"], "client.1");
}

#[test]
fn a_reset_alone_is_enough() {
    let out = run(&[reset_received(ms(0), "10.0.1.3")]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1);
    assert!(msg(a[0]).contains("answered with a reset"), "{}", msg(a[0]));
}

#[test]
fn reset_in_an_established_flow_is_not_a_failed_connect() {
    let mut r = reset_received(ms(0), "10.0.1.3");
    r.tracer.tcp.as_mut().unwrap().state = Some("ESTABLISHED");
    assert!(alerts(&run(&[r])).is_empty());
}

#[test]
fn firewall_drop_in_a_router_namespace_before_the_retransmit() {
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        drop_at(
            ms(0),
            router.clone(),
            "NETFILTER_DROP",
            "nf_hook_slow",
            "10.0.2.3",
        ),
        syn(ms(1000), "10.0.2.3", "SYN_SENT"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let m = msg(a[0]);
    assert!(
        m.contains("a firewall rule in netns cf-router dropped the SYN"),
        "{m}"
    );
    assert!(m.contains("nf_hook_slow"), "{m}");
    let p = payload(a[0]);
    assert_eq!(p["cause"], "firewall");
    assert!(p["hint"]
        .as_str()
        .unwrap()
        .contains("ip netns exec cf-router nft list ruleset"));
}

#[test]
fn firewall_drop_after_the_retransmit_still_correlates() {
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        syn(ms(1000), "10.0.2.3", "SYN_SENT"),
        drop_at(
            ms(1001),
            router,
            "NETFILTER_DROP",
            "nf_hook_slow",
            "10.0.2.3",
        ),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(payload(a[0])["cause"], "firewall");
}

#[test]
fn neigh_failed_for_the_destination_names_arp() {
    let out = run(&[
        syn(ms(1000), "10.0.1.99", "SYN_SENT"),
        neigh_failed(
            ms(3000),
            named_ns(CLIENT_NS, "cf-client", None),
            "10.0.1.99",
        ),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert!(
        msg(a[0]).contains("nobody answers ARP for 10.0.1.99"),
        "{}",
        msg(a[0])
    );
    assert_eq!(payload(a[0])["cause"], "no_arp");
}

#[test]
fn neigh_failed_drop_before_the_attempt() {
    let out = run(&[
        drop_at(
            ms(0),
            named_ns(CLIENT_NS, "cf-client", None),
            "NEIGH_FAILED",
            "__neigh_event_send",
            "10.0.1.99",
        ),
        syn(ms(1000), "10.0.1.99", "SYN_SENT"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(payload(a[0])["cause"], "no_arp");
}

#[test]
fn no_route() {
    let out = run(&[
        drop_at(
            ms(0),
            named_ns(ROUTER_NS, "cf-router", None),
            "IP_INNOROUTES",
            "ip_route_input_slow",
            "10.9.0.1",
        ),
        syn(ms(1000), "10.9.0.1", "SYN_SENT"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1);
    assert!(msg(a[0]).contains("no route to 10.9.0.1"), "{}", msg(a[0]));
}

#[test]
fn most_telling_cause_wins() {
    let out = run(&[
        drop_at(
            ms(0),
            named_ns(ROUTER_NS, "cf-router", None),
            "NEIGH_FAILED",
            "x",
            "10.0.2.3",
        ),
        drop_at(
            ms(1),
            named_ns(ROUTER_NS, "cf-router", None),
            "NETFILTER_DROP",
            "nf_hook_slow",
            "10.0.2.3",
        ),
        syn(ms(1000), "10.0.2.3", "SYN_SENT"),
    ]);
    assert_eq!(payload(alerts(&out)[0])["cause"], "firewall");
}

#[test]
fn unanswered_syns_without_a_cause_alert_at_the_threshold_only() {
    // Linux's SYN timer: 1 s, then 3 s, then 7 s after the first SYN.
    let evs: Vec<EcsEvent> = [1000, 3000, 7000]
        .into_iter()
        .map(|t| syn(ms(t), "10.0.3.3", "SYN_SENT"))
        .collect();
    assert!(alerts(&run(&evs[..2])).is_empty());
    let out = run(&evs);
    let a = alerts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(payload(a[0])["cause"], "no_answer");
}

#[test]
fn a_flow_that_establishes_is_forgotten_silently() {
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        syn(ms(1000), "10.0.3.3", "SYN_SENT"),
        syn(ms(3000), "10.0.3.3", "SYN_SENT"),
        // Progress: the same flow retransmits data, it established.
        syn(ms(5000), "10.0.3.3", "ESTABLISHED"),
        // A late drop of another packet to the address: no attempt waits.
        drop_at(
            ms(5001),
            router,
            "NETFILTER_DROP",
            "nf_hook_slow",
            "10.0.3.3",
        ),
    ]);
    assert!(alerts(&out).is_empty(), "{out:#?}");
}

#[test]
fn one_alert_per_client_and_destination_per_window() {
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let mut evs = vec![drop_at(
        ms(0),
        router,
        "NETFILTER_DROP",
        "nf_hook_slow",
        "10.0.2.3",
    )];
    for i in 0..5 {
        let mut s = syn(ms(1000 + i * 10), "10.0.2.3", "SYN_SENT");
        s.source.port = Some(40000 + i as u16);
        evs.push(s);
    }
    let out = run(&evs);
    assert_eq!(alerts(&out).len(), 1);
}

#[test]
fn vip_of_a_swarm_service_not_served_says_so_with_the_hint() {
    let svc = Arc::new(ServiceRef {
        name: "web".into(),
        id: "svc1".into(),
        endpoint_mode: Some("vip".into()),
        network: Some("backend".into()),
        vip: true,
    });
    let mut s = syn(ms(1000), "10.0.5.2", "SYN_SENT");
    s.tracer.service = Some(svc.clone());
    let out = run(&[
        s,
        drop_at(
            ms(1100),
            named_ns(CLIENT_NS, "cf-client", None),
            "NEIGH_FAILED",
            "__neigh_event_send",
            "10.0.5.2",
        ),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let m = msg(a[0]);
    assert!(
        m.contains("swarm service web at its VIP 10.0.5.2:80"),
        "{m}"
    );
    assert!(m.contains("not served on this host"), "{m}");
    let p = payload(a[0]);
    assert_eq!(p["vip_not_served"], true);
    assert_eq!(p["destination"]["service"]["name"], "web");
    let h = p["hint"].as_str().unwrap();
    assert!(h.contains("ip_vs") && h.contains("dnsrr"), "{h}");
    // The incident carries the same sentence and hint.
    let inc = out
        .iter()
        .find(|e| e.event.action == Action::Incident)
        .expect("incident");
    let ip = inc.tracer.incident.as_ref().unwrap().value();
    let text = ip.to_string();
    assert!(text.contains("not served on this host"), "{text}");
    assert!(text.contains("dnsrr"), "{text}");
}

#[test]
fn load_balancer_namespace_is_named_by_role() {
    let lb = named_ns(ROUTER_NS, "lb_4zd4qm3u2", Some("backend"));
    assert_eq!(
        connect::place(Some(&lb), None),
        "the load balancer of network backend (netns lb_4zd4qm3u2)"
    );
    let ing = named_ns(ROUTER_NS, "ingress_sbox", Some("ingress"));
    assert!(connect::place(Some(&ing), None).contains("ingress sandbox"));
}

#[test]
fn state_is_bounded_and_evictions_counted() {
    let mut d = Detectors::new(DetectConfig {
        max_keys: 16,
        ..DetectConfig::default()
    });
    let mut out = Vec::new();
    for i in 0..200u32 {
        let mut s = syn(ms(i64::from(i)), "10.0.3.3", "SYN_SENT");
        s.destination.ip = Some(IpAddr::from([10, 1, (i >> 8) as u8, i as u8]));
        d.advance(s.timestamp, &mut out);
        d.observe(&s, &mut out);
    }
    let st = d.stats();
    assert!(st.connect_keys <= 4 * 16, "{st:?}");
    assert!(st.evictions > 0, "{st:?}");
}

#[test]
fn quick_retransmits_wait_for_a_late_neighbour_failure() {
    // Three SYN retransmits within 2 s (no "no answer" yet), then the
    // neighbour resolution fails and drops the queued SYN.
    let out = run(&[
        syn(ms(1000), "10.0.1.99", "SYN_SENT"),
        syn(ms(2000), "10.0.1.99", "SYN_SENT"),
        syn(ms(3000), "10.0.1.99", "SYN_SENT"),
        drop_at(
            ms(3100),
            named_ns(CLIENT_NS, "cf-client", None),
            "NEIGH_FAILED",
            "__neigh_event_send",
            "10.0.1.99",
        ),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(payload(a[0])["cause"], "no_arp");
}

/// The kernel in `netns` answers the client's SYN to `dst`:80 with ICMP
/// 3/`code`, from `sender`.
fn icmp_sent(t: i128, netns: Netns, code: u8, sender: &str, dst: &str) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::IcmpError);
    e.tracer.netns = Some(netns);
    e.source.ip = Some(ip("10.0.1.2"));
    e.source.port = Some(40000);
    e.destination.ip = Some(ip(dst));
    e.destination.port = Some(80);
    e.network.transport = Some("tcp".into());
    e.tracer.icmp = Some(crate::event::Icmp {
        type_: 3,
        code,
        name: crate::decode::icmp_name(3, code),
        sender: Some(ip(sender)),
    });
    e
}

/// The client's socket to `dst`:80 closes from `old` with `err` ("": none).
fn abort(t: i128, dst: &str, old: &'static str, err: &str) -> EcsEvent {
    let mut e = EcsEvent::new(t, Kind::Event, Action::TcpAbort);
    e.source.ip = Some(ip("10.0.1.2"));
    e.source.port = Some(40000);
    e.destination.ip = Some(ip(dst));
    e.destination.port = Some(80);
    e.container = Some(container("client.1"));
    e.tracer.netns = Some(named_ns(CLIENT_NS, "cf-client", None));
    e.network.transport = Some("tcp".into());
    e.tracer.tcp = Some(Tcp {
        state: Some("CLOSE"),
        old_state: Some(old),
        error: (!err.is_empty()).then(|| err.into()),
        ..Tcp::default()
    });
    e
}

#[test]
fn icmp_admin_prohibited_from_a_router_says_who_rejects() {
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        icmp_sent(ms(0), router, 13, "10.0.3.1", "10.0.2.3"),
        abort(ms(1), "10.0.2.3", "SYN_SENT", "EHOSTUNREACH"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let m = msg(a[0]);
    assert!(
        m.contains("10.0.3.1 (netns cf-router) answered ICMP admin-prohibited: a firewall rule there rejects the connection"),
        "{m}"
    );
    assert!(m.contains("(connect() failed with EHOSTUNREACH)"), "{m}");
    let p = payload(a[0]);
    assert_eq!(p["cause"], "rejected");
    assert_eq!(p["connect_error"], "EHOSTUNREACH");
    assert_eq!(p["cause_seen"]["icmp"], "admin-prohibited");
    assert_eq!(p["cause_seen"]["icmp_sender"], "10.0.3.1");
    assert_eq!(p["cause_seen"]["netns"]["inode"], ROUTER_NS);
    assert_eq!(p["syn_retransmits"], 0);
    assert!(p["hint"]
        .as_str()
        .unwrap()
        .contains("ip netns exec cf-router nft list ruleset"));
}

#[test]
fn icmp_port_unreachable_for_tcp_is_a_reject_rule() {
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        icmp_sent(ms(0), router, 3, "10.0.3.1", "10.0.2.3"),
        abort(ms(1), "10.0.2.3", "SYN_SENT", "ECONNREFUSED"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(payload(a[0])["cause"], "rejected");
    assert!(msg(a[0]).contains("answered ICMP port-unreachable"));
}

#[test]
fn a_rejection_concludes_an_attempt_that_retransmits() {
    // A reject rule added while SYNs are already retransmitted: the ICMP
    // error alone ends the attempt (the socket error follows, nothing more).
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        syn(ms(1000), "10.0.2.3", "SYN_SENT"),
        icmp_sent(ms(2500), router, 10, "10.0.3.1", "10.0.2.3"),
        abort(ms(2501), "10.0.2.3", "SYN_SENT", "EHOSTUNREACH"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert!(msg(a[0]).contains("answered ICMP host-prohibited"));
}

#[test]
fn a_plain_connect_error_without_any_drop_still_alerts() {
    let out = run(&[abort(ms(0), "10.0.2.3", "SYN_SENT", "EHOSTUNREACH")]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let p = payload(a[0]);
    assert_eq!(p["cause"], "unreachable");
    assert_eq!(p["connect_error"], "EHOSTUNREACH");
    let m = msg(a[0]);
    assert!(
        m.contains("connect() failed with EHOSTUNREACH: an ICMP unreachable answered the SYN, from a router or firewall tracer does not see"),
        "{m}"
    );
    // Said once, not twice.
    assert_eq!(m.matches("EHOSTUNREACH").count(), 1, "{m}");

    let out = run(&[abort(ms(0), "10.0.2.3", "SYN_SENT", "ECONNREFUSED")]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(payload(a[0])["cause"], "nothing_listens");
    assert!(msg(a[0]).contains("nothing listens on port 80 (the connection was refused"));
}

#[test]
fn a_neighbour_failure_explains_a_routers_host_unreachable() {
    // The router cannot resolve the destination: it answers host-unreachable
    // and drops the queued SYN as NEIGH_FAILED. The ARP failure is the cause.
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        syn(ms(1000), "10.0.2.9", "SYN_SENT"),
        icmp_sent(ms(3000), router.clone(), 1, "10.0.3.1", "10.0.2.9"),
        drop_at(
            ms(3001),
            router,
            "NEIGH_FAILED",
            "__neigh_event_send",
            "10.0.2.9",
        ),
        abort(ms(3002), "10.0.2.9", "SYN_SENT", "EHOSTUNREACH"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(payload(a[0])["cause"], "no_arp", "{}", msg(a[0]));
}

#[test]
fn a_routers_host_unreachable_alone_names_the_router() {
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        icmp_sent(ms(0), router, 1, "10.0.3.1", "10.0.2.9"),
        abort(ms(1), "10.0.2.9", "SYN_SENT", "EHOSTUNREACH"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let m = msg(a[0]);
    assert!(
        m.contains(
            "10.0.3.1 (netns cf-router) answered ICMP host-unreachable: it cannot reach 10.0.2.9"
        ),
        "{m}"
    );
    assert!(payload(a[0])["hint"]
        .as_str()
        .unwrap()
        .contains("ip netns exec cf-router ip route get 10.0.2.9"));
}

#[test]
fn socket_errors_that_are_no_failed_connect_say_nothing() {
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        // An established connection reset, one timed out.
        abort(ms(0), "10.0.2.3", "ESTABLISHED", "ECONNRESET"),
        abort(ms(10), "10.0.2.4", "ESTABLISHED", "ETIMEDOUT"),
        // Fragmentation needed is no connect failure.
        icmp_sent(ms(20), router, 4, "10.0.3.1", "10.0.2.5"),
    ]);
    assert!(alerts(&out).is_empty(), "{out:#?}");
}

#[test]
fn a_reset_then_the_socket_error_is_one_alert() {
    let out = run(&[
        reset_received(ms(0), "10.0.1.3"),
        abort(ms(1), "10.0.1.3", "SYN_SENT", "ECONNREFUSED"),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert!(msg(a[0]).contains("answered with a reset"), "{}", msg(a[0]));
}

#[test]
fn a_connect_given_up_after_an_icmp_error_it_read_is_the_rejection() {
    // A non-blocking connect whose ICMP error arrived while the process
    // held the socket: the process reads it (SO_ERROR clears it) and
    // closes; the socket leaves SYN_SENT with no error of its own.
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let out = run(&[
        icmp_sent(ms(0), router, 13, "10.0.3.1", "10.0.2.3"),
        abort(ms(1), "10.0.2.3", "SYN_SENT", ""),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let p = payload(a[0]);
    assert_eq!(p["cause"], "rejected");
    assert!(p.get("connect_error").is_none(), "{p}");
    assert!(!msg(a[0]).contains("connect() failed"), "{}", msg(a[0]));
}

#[test]
fn a_connect_given_up_with_nothing_against_it_says_nothing() {
    let out = run(&[abort(ms(0), "10.0.2.3", "SYN_SENT", "")]);
    assert!(alerts(&out).is_empty(), "{out:#?}");
}

#[test]
fn a_connect_given_up_after_unanswered_syns_is_no_answer() {
    let out = run(&[
        syn(ms(1000), "10.0.2.3", "SYN_SENT"),
        abort(ms(2000), "10.0.2.3", "SYN_SENT", ""),
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(payload(a[0])["cause"], "no_answer");
    assert_eq!(payload(a[0])["syn_retransmits"], 1);
}

#[test]
fn the_thresholds_are_settings() {
    let one_syn = DetectConfig {
        connect_syn_threshold: 1,
        connect_no_answer_after: std::time::Duration::ZERO,
        ..DetectConfig::default()
    };
    let evs = [syn(ms(1000), "10.0.2.3", "SYN_SENT")];
    assert!(alerts(&run(&evs)).is_empty());
    let out = run_with(one_syn, &evs);
    assert_eq!(alerts(&out).len(), 1, "{out:#?}");
    assert_eq!(payload(alerts(&out)[0])["cause"], "no_answer");

    // A cause older than --connect-cause-ttl is forgotten.
    let router = named_ns(ROUTER_NS, "cf-router", None);
    let evs = [
        drop_at(ms(0), router, "NETFILTER_DROP", "nf_hook_slow", "10.0.2.3"),
        syn(ms(3000), "10.0.2.3", "SYN_SENT"),
    ];
    assert_eq!(payload(alerts(&run(&evs))[0])["cause"], "firewall");
    let short_ttl = DetectConfig {
        connect_cause_ttl: std::time::Duration::from_secs(1),
        ..DetectConfig::default()
    };
    assert!(alerts(&run_with(short_ttl, &evs)).is_empty());
}

/// The host's namespace (Docker names it `default`): what a rule in
/// DOCKER-USER drops between two containers on one bridge network.
fn host_ns() -> Netns {
    Netns {
        inode: 4_026_531_833,
        name: Some("default".into()),
        network: None,
        host: true,
    }
}

#[test]
fn firewall_drop_in_the_host_between_two_containers_names_the_forward_hook_and_iptables() {
    let mut d = drop_at(
        ms(0),
        host_ns(),
        "NETFILTER_DROP",
        "nft_do_chain+0x46f",
        "10.0.2.3",
    );
    d.tracer.interface = Some(crate::event::Interface {
        name: "veth1234".into(),
        index: 7,
        kind: None,
    });
    let mut s = syn(ms(1000), "10.0.2.3", "SYN_SENT");
    s.destination.container = Some(container("db.1"));
    let out = run(&[d, s]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let m = msg(a[0]);
    assert!(
        m.contains("a firewall rule in the host's namespace dropped the SYN it forwarded from veth1234 (NETFILTER_DROP at nft_do_chain+0x46f, FORWARD hook)"),
        "{m}"
    );
    assert!(
        m.contains("client.1 (10.0.1.2)") && m.contains("db.1 (10.0.2.3:80)"),
        "{m}"
    );
    let p = payload(a[0]);
    assert_eq!(p["cause"], "firewall");
    let hint = p["hint"].as_str().unwrap();
    // Runnable as is in the operator's shell: no `ip netns exec default`,
    // which fails (Docker's `default` is no `ip netns` name).
    assert!(!hint.contains("ip netns exec"), "{hint}");
    assert!(
        hint.contains("iptables -nvL DOCKER-USER --line-numbers"),
        "{hint}"
    );
    assert!(hint.contains("pkts counter"), "{hint}");
}

#[test]
fn ipv6_neighbour_discovery_giving_up_is_nobody_answers_ndp() {
    // IPv6 frees the SYN it queued for an address nobody answers as a plain
    // kfree_skb (NOT_SPECIFIED at neigh_invalidate), then the connect fails
    // with EHOSTUNREACH from the client's own stack: no ICMP from elsewhere.
    let client = named_ns(CLIENT_NS, "cf-client", None);
    let mut d = drop_at(
        ms(0),
        client,
        "NOT_SPECIFIED",
        "neigh_invalidate+0x7e",
        "fd00::99",
    );
    d.source.ip = Some(ip("fd00::1"));
    let mut a = abort(ms(1), "fd00::99", "SYN_SENT", "EHOSTUNREACH");
    a.source.ip = Some(ip("fd00::1"));
    let out = run(&[d, a]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let p = payload(a[0]);
    assert_eq!(p["cause"], "no_arp", "{p}");
    let m = msg(a[0]);
    assert!(m.contains("[fd00::99]:80"), "{m}");
    assert!(
        m.contains("nobody answers neighbour discovery (NDP) for fd00::99 (NOT_SPECIFIED at neigh_invalidate+0x7e in"),
        "{m}"
    );
    assert!(!m.contains("ARP"), "{m}");
    // Other unspecified drops stay no cause.
    let out = run(&[drop_at(
        ms(0),
        named_ns(CLIENT_NS, "cf-client", None),
        "NOT_SPECIFIED",
        "ip6_mc_input+0x15e",
        "fd00::99",
    )]);
    assert!(alerts(&out).is_empty(), "{out:#?}");
}

#[test]
fn an_incident_of_one_client_says_where_its_other_retransmitting_flow_goes() {
    // One client, two problems within the incident window: a refused
    // connection to 10.0.1.3 and SYNs to 10.0.2.9 nobody answers. The
    // incident is about 10.0.1.3; the retransmitting flow is not its.
    let mut evs = vec![reset_received(ms(0), "10.0.1.3")];
    for i in 0..4 {
        let mut s = syn(ms(100 + i * 1000), "10.0.2.9", "SYN_SENT");
        s.source.port = Some(40001);
        evs.push(s);
    }
    let out = run(&evs);
    let inc: Vec<&EcsEvent> = out
        .iter()
        .filter(|e| e.event.action == Action::Incident)
        .collect();
    let about = inc
        .iter()
        .rev()
        .find(|e| msg(e).starts_with("10.0.1.3:80 unreachable") && msg(e).contains("retransmit"))
        .unwrap_or_else(|| panic!("{out:#?}"));
    let m = msg(about);
    assert!(
        m.contains("1 TCP flow to 10.0.2.9 retransmits without progress"),
        "{m}"
    );
}

#[test]
fn a_firewall_in_a_docker_named_namespace_is_listed_through_its_docker_handle() {
    // `ip netns exec lb_4zd4qm3u2` fails on a Docker host: the handle is in
    // /var/run/docker/netns, which `ip netns` does not read.
    for (name, want) in [
        (
            "lb_4zd4qm3u2",
            "nsenter --net=/var/run/docker/netns/lb_4zd4qm3u2 nft list ruleset",
        ),
        (
            "e1ddbd169773",
            "nsenter --net=/var/run/docker/netns/e1ddbd169773 nft list ruleset",
        ),
        ("cf-router", "ip netns exec cf-router nft list ruleset"),
    ] {
        let out = run(&[
            drop_at(
                ms(0),
                named_ns(ROUTER_NS, name, None),
                "NETFILTER_DROP",
                "nft_do_chain+0x46f",
                "10.0.2.3",
            ),
            syn(ms(1000), "10.0.2.3", "SYN_SENT"),
        ]);
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{out:#?}");
        let p = payload(a[0]);
        let hint = p["hint"].as_str().unwrap();
        assert!(hint.contains(want), "{name}: {hint}");
    }
}
