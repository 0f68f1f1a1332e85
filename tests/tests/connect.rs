//! `connect_failed`: TCP connections that never establish, each cause
//! caused for real (nothing listens, a firewall in a router namespace, an
//! address nobody has) and the alert's facts checked: client, destination,
//! port, cause and the namespace where the kernel dropped the SYN.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{
    assert_replays_identically, nft, require_root, start_recording, with_action, BridgeTopo, Netns,
    RoutedTopo, Tracer,
};

fn start(nss: &[u64]) -> Tracer {
    let args: Vec<String> = nss
        .iter()
        .flat_map(|n| ["--netns".to_string(), n.to_string()])
        .collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Tracer::start(&a)
}

/// Connects from `ns` to `to`; the error (or success) is returned.
fn connect_from(ns: &Netns, to: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    ns.run(move || TcpStream::connect_timeout(&to, timeout).map(|_| ()))
}

/// A port nothing listens on in `ns` at `ip` (bound once, then closed).
fn free_port(ns: &Netns, ip: &str) -> u16 {
    let ip = ip.to_string();
    ns.run(move || {
        TcpListener::bind((ip.as_str(), 0))
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    })
}

fn alert_to<'a>(lines: &'a [Value], dst: &str, port: u16) -> Vec<&'a Value> {
    with_action(lines, "connect_failed")
        .into_iter()
        .filter(|v| v["destination"]["ip"] == dst && v["destination"]["port"] == port)
        .collect()
}

fn msg(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

#[test]
fn connect_to_a_port_nothing_listens_on_says_nothing_listens() {
    require_root();
    let topo = BridgeTopo::new();
    let port = free_port(&topo.b, &topo.ip_b);
    let t = start(&[topo.a.inode(), topo.b.inode(), topo.br_ns.inode()]);
    let to: SocketAddr = format!("{}:{port}", topo.ip_b).parse().unwrap();
    let r = connect_from(&topo.a, to, Duration::from_secs(3));
    assert_eq!(
        r.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    let got = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "connect_failed"
    });
    let (lines, raw) = t.stop();
    for l in raw
        .iter()
        .filter(|l| l.contains("\"connect_failed\"") || l.contains("\"incident\""))
    {
        eprintln!("raw line: {l}");
    }
    assert!(got.is_some(), "no connect_failed alert");
    let a = alert_to(&lines, &topo.ip_b, port);
    assert_eq!(a.len(), 1, "one alert per client/destination: {a:?}");
    let a = a[0];
    assert_eq!(a["event"]["kind"], "alert");
    assert_eq!(a["source"]["ip"], topo.ip_a.as_str());
    assert_eq!(a["tracer"]["alert"]["cause"], "nothing_listens");
    assert_eq!(a["tracer"]["netns"]["name"], topo.a.name.as_str());
    let m = msg(a);
    assert!(
        m.contains(&format!("nothing listens on port {port}")),
        "{m}"
    );
    assert!(
        m.contains(&topo.a.name) && m.contains(&topo.ip_a),
        "client named: {m}"
    );
    assert!(
        m.contains(&format!("{}:{port}", topo.ip_b)),
        "destination named: {m}"
    );
    // The server's kernel dropped the SYN as NO_SOCKET in its namespace.
    assert_eq!(
        a["tracer"]["alert"]["cause_seen"]["reason"], "NO_SOCKET",
        "{a}"
    );
    assert_eq!(
        a["tracer"]["alert"]["cause_seen"]["netns"]["name"],
        topo.b.name.as_str()
    );
    // It joins an incident with the same sentence and a hint.
    let inc = with_action(&lines, "incident");
    let i = inc
        .iter()
        .find(|v| {
            v["tracer"]["incident"]["alerts"]
                .to_string()
                .contains("connect_failed")
        })
        .unwrap_or_else(|| panic!("no incident with connect_failed: {inc:?}"));
    let text = i["tracer"]["incident"].to_string();
    assert!(text.contains("nothing listens"), "{text}");
}

/// A server listening behind the router; connects before any rule.
fn listening_server(topo: &RoutedTopo) -> (TcpListener, u16, SocketAddr) {
    let ip = topo.server_ip.clone();
    let listener = topo
        .server
        .run(move || TcpListener::bind((ip.as_str(), 0)).expect("listen"));
    let port = listener.local_addr().unwrap().port();
    let to: SocketAddr = format!("{}:{port}", topo.server_ip).parse().unwrap();
    connect_from(&topo.client, to, Duration::from_secs(3)).expect("connects before the rule");
    (listener, port, to)
}

/// A forward-chain rule for TCP to `port` in the router: `verdict` is
/// `drop` or `reject with icmp type …`.
fn router_rule(topo: &RoutedTopo, port: u16, verdict: &str) {
    nft(
        &topo.router,
        &format!(
            "table ip tracertest {{\n chain fw {{ type filter hook forward priority 0; policy accept; tcp dport {port} {verdict}; }}\n}}\n"
        ),
    );
}

fn print_alert_lines(raw: &[String]) {
    for l in raw
        .iter()
        .filter(|l| l.contains("\"connect_failed\"") || l.contains("\"incident\""))
    {
        eprintln!("raw line: {l}");
    }
}

/// Client — router — server, each its own namespace; an nftables rule in
/// the router drops the SYNs.
#[test]
fn firewall_rule_in_a_router_namespace_is_named() {
    require_root();
    let topo = RoutedTopo::new("c", 201);
    let (router, client) = (&topo.router, &topo.client);
    let (listener, port, to) = listening_server(&topo);
    router_rule(&topo, port, "drop");

    let t = start(&topo.inodes());
    let r = connect_from(client, to, Duration::from_secs(4));
    assert!(r.is_err(), "connect must fail through the firewall");
    let got = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "connect_failed"
    });
    let (lines, raw) = t.stop();
    print_alert_lines(&raw);
    assert!(got.is_some(), "no connect_failed alert");
    let a = alert_to(&lines, &topo.server_ip, port);
    assert_eq!(a.len(), 1, "{a:?}");
    let a = a[0];
    assert_eq!(a["tracer"]["alert"]["cause"], "firewall", "{a}");
    assert_eq!(a["source"]["ip"], topo.client_ip.as_str());
    assert_eq!(a["tracer"]["netns"]["name"], client.name.as_str());
    assert_eq!(
        a["tracer"]["alert"]["cause_seen"]["reason"],
        "NETFILTER_DROP"
    );
    assert_eq!(
        a["tracer"]["alert"]["cause_seen"]["netns"]["name"],
        router.name.as_str()
    );
    let m = msg(a);
    assert!(
        m.contains(&format!("a firewall rule in netns {}", router.name)),
        "{m}"
    );
    let hint = a["tracer"]["alert"]["hint"].as_str().unwrap_or("");
    assert!(
        hint.contains(&format!("ip netns exec {} nft list ruleset", router.name)),
        "{hint}"
    );
    drop(listener);
}

/// The router rejects with ICMP admin-prohibited: the alert says who
/// answered with what (the router's address and namespace), from the
/// kernel's own ICMP error and the client's socket. Two clients: a blocking
/// connect (the kernel closes the socket with EHOSTUNREACH) and a
/// non-blocking one (the ICMP error may arrive while connect() holds the
/// socket: only noted, read with SO_ERROR and cleared, the socket then
/// closed from SYN_SENT). A second tracer that sees only the client's
/// namespace still alerts for the blocking connect, from its EHOSTUNREACH
/// alone. The capture replays to the same lines.
#[test]
fn icmp_reject_in_a_router_namespace_says_who_answered() {
    require_root();
    let topo = RoutedTopo::new("i", 203);
    let (router, client) = (&topo.router, &topo.client);
    let (listener, port, to) = listening_server(&topo);
    let port2 = free_port(&topo.server, &topo.server_ip);
    let to2: SocketAddr = format!("{}:{port2}", topo.server_ip).parse().unwrap();
    router_rule(
        &topo,
        port,
        &format!("reject with icmp type admin-prohibited; tcp dport {port2} reject with icmp type admin-prohibited"),
    );

    let nss = topo.inodes();
    let (t, capture) = start_recording(&nss, "reject");
    let client_only = start(&[client.inode()]);
    let blocking = client.run(move || TcpStream::connect(to).map(|_| ()));
    let err = blocking.expect_err("connect must be rejected");
    assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");
    let err = connect_from(client, to2, Duration::from_secs(5)).expect_err("rejected");
    assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");
    let both =
        |v: &Value| v["event"]["action"] == "connect_failed" && v["destination"]["port"] == port2;
    let got = t.wait_for(Duration::from_secs(5), both);
    let got_client = client_only.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "connect_failed"
    });
    let (lines, raw) = t.stop();
    let (client_lines, client_raw) = client_only.stop();
    print_alert_lines(&raw);
    print_alert_lines(&client_raw);
    for l in raw.iter().filter(|l| {
        ["tcp_abort", "icmp_error", "tcp_retransmit"]
            .iter()
            .any(|a| l.contains(&format!("\"action\":\"{a}\"")))
    }) {
        eprintln!("kernel fact: {l}");
    }
    assert!(got.is_some(), "no connect_failed alert");
    for p in [port, port2] {
        let a = alert_to(&lines, &topo.server_ip, p);
        assert_eq!(a.len(), 1, "{a:?}");
        let a = a[0];
        let al = &a["tracer"]["alert"];
        assert_eq!(al["cause"], "rejected", "{a}");
        assert_eq!(a["source"]["ip"], topo.client_ip.as_str());
        assert_eq!(a["tracer"]["netns"]["name"], client.name.as_str());
        let seen = &al["cause_seen"];
        assert_eq!(seen["icmp"], "admin-prohibited", "{a}");
        assert_eq!(seen["icmp_sender"], topo.router_c_ip.as_str(), "{a}");
        assert_eq!(seen["netns"]["name"], router.name.as_str());
        assert_eq!(seen["netns"]["inode"], router.inode());
        let m = msg(a);
        assert!(
            m.contains(&format!(
                "{} (netns {}) answered ICMP admin-prohibited: a firewall rule there rejects the connection",
                topo.router_c_ip, router.name
            )),
            "{m}"
        );
        assert!(
            al["hint"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("ip netns exec {} nft list ruleset", router.name)),
            "{a}"
        );
        // The kernel's facts behind it: the router's ICMP error about the
        // client's SYN on the router's interface toward the client, and the
        // client's socket closed from SYN_SENT, on the alert's ports.
        let sport = a["source"]["port"].clone();
        let icmp = with_action(&lines, "icmp_error");
        assert!(
            icmp.iter()
                .any(|v| v["tracer"]["netns"]["inode"] == router.inode()
                    && v["tracer"]["interface"]["name"] == topo.rc.as_str()
                    && v["tracer"]["icmp"]["type"] == 3
                    && v["tracer"]["icmp"]["code"] == 13
                    && v["source"]["port"] == sport
                    && v["destination"]["port"] == p),
            "{icmp:?}"
        );
        let aborts = with_action(&lines, "tcp_abort");
        assert!(
            aborts
                .iter()
                .any(|v| v["tracer"]["netns"]["inode"] == client.inode()
                    && v["tracer"]["tcp"]["old_state"] == "SYN_SENT"
                    && v["tracer"]["tcp"]["state"] == "CLOSE"
                    && v["source"]["port"] == sport
                    && v["destination"]["port"] == p),
            "{aborts:?}"
        );
    }
    // The blocking connect's socket closed with the error itself.
    assert!(
        with_action(&lines, "tcp_abort")
            .iter()
            .any(|v| v["destination"]["port"] == port
                && v["tracer"]["tcp"]["error"] == "EHOSTUNREACH"),
        "{raw:?}"
    );
    // Seen from the client's namespace only, the error itself is the cause.
    assert!(
        got_client.is_some(),
        "no connect_failed from the client only"
    );
    let c = alert_to(&client_lines, &topo.server_ip, port);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["tracer"]["alert"]["cause"], "unreachable", "{}", c[0]);
    assert_eq!(c[0]["tracer"]["alert"]["connect_error"], "EHOSTUNREACH");
    assert!(
        msg(c[0]).contains("connect() failed with EHOSTUNREACH"),
        "{}",
        c[0]
    );
    assert!(with_action(&client_lines, "icmp_error").is_empty());
    for action in ["connect_failed", "icmp_error", "tcp_abort"] {
        let tag = format!("\"action\":\"{action}\"");
        if let Some(l) = raw.iter().find(|l| l.contains(&tag)) {
            eprintln!("example: {l}");
        }
    }
    if let Some(l) = client_raw
        .iter()
        .find(|l| l.contains("\"action\":\"connect_failed\""))
    {
        eprintln!("example (client only): {l}");
    }
    assert_replays_identically(&capture, &nss, &raw);
    drop(listener);
}

/// An address in the client's subnet that nobody has: ARP fails, the
/// queued SYNs are dropped as NEIGH_FAILED.
#[test]
fn address_nobody_has_says_nobody_answers_arp() {
    require_root();
    let topo = BridgeTopo::new();
    let ghost = {
        let mut parts: Vec<&str> = topo.ip_b.split('.').collect();
        parts[3] = "77";
        parts.join(".")
    };
    let t = start(&[topo.a.inode(), topo.br_ns.inode()]);
    let to: SocketAddr = format!("{ghost}:8080").parse().unwrap();
    let r = connect_from(&topo.a, to, Duration::from_secs(5));
    assert!(r.is_err());
    let got = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "connect_failed"
    });
    let (lines, raw) = t.stop();
    for l in raw
        .iter()
        .filter(|l| l.contains("\"connect_failed\"") || l.contains("\"incident\""))
    {
        eprintln!("raw line: {l}");
    }
    assert!(got.is_some(), "no connect_failed alert");
    let a = alert_to(&lines, &ghost, 8080);
    assert_eq!(a.len(), 1, "{a:?}");
    let a = a[0];
    assert_eq!(a["tracer"]["alert"]["cause"], "no_arp", "{a}");
    let m = msg(a);
    assert!(
        m.contains(&format!("nobody answers ARP for {ghost}")),
        "{m}"
    );
    assert!(m.contains(&topo.a.name), "{m}");
    // The kernel's own facts are there too: a NEIGH_FAILED drop or a
    // neighbour entry gone FAILED for the address.
    let seen = a["tracer"]["alert"]["cause_seen"]["reason"]
        .as_str()
        .unwrap_or("");
    assert!(seen == "NEIGH_FAILED" || seen == "neighbour FAILED", "{a}");
}

/// IPv6 addresses (`/64`, no duplicate address detection) on A and B of a
/// bridge topology, from the topology's own tag: A's, B's and one nobody
/// has.
fn ipv6_on(topo: &BridgeTopo) -> (String, String, String) {
    let tag = u32::from_str_radix(&topo.tag, 16).unwrap_or(0) & 0xffff;
    let net = format!("fd7a:{tag:x}:{:x}", std::process::id() & 0xffff);
    let (a, b, ghost) = (
        format!("{net}::1"),
        format!("{net}::2"),
        format!("{net}::77"),
    );
    for (ns, dev, ip) in [(&topo.a, &topo.dev_a, &a), (&topo.b, &topo.dev_b, &b)] {
        ns.ip(&["addr", "add", &format!("{ip}/64"), "dev", dev, "nodad"]);
    }
    (a, b, ghost)
}

/// IPv6 on a bridge: a closed port and an address nobody has. Addresses are
/// written `[addr]:port`, the closed port is "nothing listens" from the
/// server's NO_SOCKET drop, and the address nobody has is neighbour
/// discovery giving up (IPv6 frees the queued SYN as NOT_SPECIFIED at
/// neigh_invalidate, not NEIGH_FAILED), not an ICMP error from elsewhere.
#[test]
fn ipv6_closed_port_and_address_nobody_has_are_explained() {
    require_root();
    let topo = BridgeTopo::new();
    let (_a6, b6, ghost) = ipv6_on(&topo);
    let port = {
        let ip = b6.clone();
        topo.b.run(move || {
            TcpListener::bind((ip.as_str(), 0))
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port()
        })
    };
    let t = start(&[topo.a.inode(), topo.b.inode(), topo.br_ns.inode()]);
    let to: SocketAddr = format!("[{b6}]:{port}").parse().unwrap();
    assert!(connect_from(&topo.a, to, Duration::from_secs(3)).is_err());
    let ghost_to: SocketAddr = format!("[{ghost}]:8080").parse().unwrap();
    assert!(connect_from(&topo.a, ghost_to, Duration::from_secs(6)).is_err());
    let got = t.wait_for(Duration::from_secs(5), |v| {
        v["event"]["action"] == "connect_failed" && v["destination"]["ip"] == ghost.as_str()
    });
    let (lines, raw) = t.stop();
    print_alert_lines(&raw);
    assert!(got.is_some(), "no connect_failed alert for {ghost}");

    let a = alert_to(&lines, &b6, port);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        a[0]["tracer"]["alert"]["cause"], "nothing_listens",
        "{}",
        a[0]
    );
    let m = msg(a[0]);
    assert!(m.contains(&format!("[{b6}]:{port}")), "{m}");
    assert!(
        m.contains(&format!("nothing listens on port {port}")),
        "{m}"
    );

    let a = alert_to(&lines, &ghost, 8080);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["tracer"]["alert"]["cause"], "no_arp", "{}", a[0]);
    let m = msg(a[0]);
    assert!(m.contains(&format!("[{ghost}]:8080")), "{m}");
    assert!(
        m.contains(&format!(
            "nobody answers neighbour discovery (NDP) for {ghost}"
        )),
        "{m}"
    );
    assert!(m.contains(&topo.a.name), "{m}");
}
