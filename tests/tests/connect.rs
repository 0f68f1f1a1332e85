//! `connect_failed`: TCP connections that never establish, each cause
//! caused for real (nothing listens, a firewall in a router namespace, an
//! address nobody has) and the alert's facts checked: client, destination,
//! port, cause and the namespace where the kernel dropped the SYN.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{require_root, unique_tag, with_action, BridgeTopo, Netns, Tracer};

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

/// Client — router — server, each its own namespace; an nftables rule in
/// the router drops the SYNs.
#[test]
fn firewall_rule_in_a_router_namespace_is_named() {
    require_root();
    let (tag, octet) = unique_tag();
    let client = Netns::new(&format!("cc{tag}"));
    let router = Netns::new(&format!("cr{tag}"));
    let server = Netns::new(&format!("cs{tag}"));
    let (c_dev, rc_dev, rs_dev, s_dev) = (
        format!("c{tag}"),
        format!("rc{tag}"),
        format!("rs{tag}"),
        format!("s{tag}"),
    );
    router.ip(&[
        "link",
        "add",
        &rc_dev,
        "type",
        "veth",
        "peer",
        "name",
        &c_dev,
        "netns",
        &client.name,
    ]);
    router.ip(&[
        "link",
        "add",
        &rs_dev,
        "type",
        "veth",
        "peer",
        "name",
        &s_dev,
        "netns",
        &server.name,
    ]);
    let net1 = format!("10.{octet}.201");
    let net2 = format!("10.{octet}.202");
    client.ip(&["addr", "add", &format!("{net1}.2/24"), "dev", &c_dev]);
    router.ip(&["addr", "add", &format!("{net1}.1/24"), "dev", &rc_dev]);
    router.ip(&["addr", "add", &format!("{net2}.1/24"), "dev", &rs_dev]);
    server.ip(&["addr", "add", &format!("{net2}.2/24"), "dev", &s_dev]);
    for (ns, d) in [
        (&client, &c_dev),
        (&router, &rc_dev),
        (&router, &rs_dev),
        (&server, &s_dev),
    ] {
        ns.ip(&["link", "set", d, "up"]);
    }
    client.ip(&["route", "add", "default", "via", &format!("{net1}.1")]);
    server.ip(&["route", "add", "default", "via", &format!("{net2}.1")]);
    tracer_tests::sh(&[
        "ip",
        "netns",
        "exec",
        &router.name,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    let server_ip = format!("{net2}.2");
    let listener = {
        let ip = server_ip.clone();
        server.run(move || TcpListener::bind((ip.as_str(), 0)).expect("listen"))
    };
    let port = listener.local_addr().unwrap().port();
    let to: SocketAddr = format!("{server_ip}:{port}").parse().unwrap();
    // Reachable before the rule.
    connect_from(&client, to, Duration::from_secs(3)).expect("connects before the rule");
    let table = format!("t{tag}");
    let nft = |args: &[&str]| {
        let mut a = vec!["ip", "netns", "exec", router.name.as_str(), "nft"];
        a.extend_from_slice(args);
        tracer_tests::sh(&a);
    };
    nft(&["add", "table", "inet", &table]);
    nft(&[
        "add",
        "chain",
        "inet",
        &table,
        "fw",
        "{ type filter hook forward priority 0; policy accept; }",
    ]);
    nft(&[
        "add",
        "rule",
        "inet",
        &table,
        "fw",
        "tcp",
        "dport",
        &port.to_string(),
        "drop",
    ]);

    let t = start(&[client.inode(), router.inode(), server.inode()]);
    let r = connect_from(&client, to, Duration::from_secs(4));
    assert!(r.is_err(), "connect must fail through the firewall");
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
    let a = alert_to(&lines, &server_ip, port);
    assert_eq!(a.len(), 1, "{a:?}");
    let a = a[0];
    assert_eq!(a["tracer"]["alert"]["cause"], "firewall", "{a}");
    assert_eq!(a["source"]["ip"], format!("{net1}.2").as_str());
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
