//! Index updates and enrichment of each event kind from a hand-built index
//! (its benchmarks: `cargo bench -p tracer-bench --bench identity`).

use std::net::IpAddr;

use super::*;
use crate::{
    event::{Action, EcsEvent, Kind, Mac, Netns},
    identity::{EndpointInfo, VethPeer},
};

const S: i128 = 1_000_000_000;
const T0: i128 = 1_700_000_000 * S;

const HOST: u32 = 1;
const NS_A: u32 = 10;
const NS_B: u32 = 20;
const NS_OV: u32 = 30;
const NS_S: u32 = 40;
const NS_LB: u32 = 50;
const NS_IP: u32 = 60;

const MAC_A: [u8; 6] = [2, 0x42, 0xac, 0x12, 0, 2];
const MAC_B: [u8; 6] = [2, 0x42, 0xac, 0x12, 0, 3];
const MAC_S: [u8; 6] = [2, 0x42, 10, 0, 1, 2];
const OV_ID: &str = "4zd4qm3u2hy1czgdz9lcy1fwa";
const BR_ID: &str = "ecc1d7b96a6c3d106d1a37eb18e8259ec880d7113b57b13c4c0b4b46e0f9c628";

fn id(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn iface(index: u32, name: &str, kind: Option<&str>) -> InterfaceInfo {
    InterfaceInfo::named(index, name, kind)
}

fn veth(index: u32, name: &str, peer: u32, peer_ns: u32) -> InterfaceInfo {
    InterfaceInfo::veth(index, name, peer, peer_ns)
}

fn ns(inode: u32, names: &[&str], docker: &[&str]) -> IdentityUpdate {
    IdentityUpdate::NetnsUpsert {
        ts: T0,
        netns: NetnsInfo::named(inode, names, docker, inode == HOST),
    }
}

fn container(c: char, name: &str, netns: u32, ips: &[&str], mac: Option<[u8; 6]>) -> ContainerInfo {
    ContainerInfo {
        id: id(c),
        name: Some(name.into()),
        image: Some("tracer-test-busybox:latest".into()),
        runtime: Some("docker".into()),
        netns: Some(netns),
        endpoints: vec![EndpointInfo {
            network_id: BR_ID.into(),
            network: Some("probebr".into()),
            ips: ips.iter().map(|s| ip(s)).collect(),
            mac,
        }],
        ..Default::default()
    }
}

/// Host with a Docker bridge (two containers A, B), an overlay namespace
/// with one swarm task S behind veth0, the overlay's lb sandbox and a plain
/// `ip netns` namespace.
fn updates() -> Vec<IdentityUpdate> {
    let mut u = vec![
        IdentityUpdate::NetworkUpsert {
            ts: T0,
            network: NetworkInfo {
                id: BR_ID.into(),
                name: "probebr".into(),
                driver: Some("bridge".into()),
                ingress: false,
                bridge: Some("br-ecc1d7b96a6c".into()),
            },
        },
        ns(HOST, &[], &[]),
        ns(NS_A, &[], &["a0dba506778c"]),
        ns(NS_B, &[], &["ef505918eb1a"]),
        ns(NS_OV, &[], &["1-4zd4qm3u2h"]),
        ns(NS_S, &[], &["e1ddbd169773"]),
        ns(NS_LB, &[], &["lb_4zd4qm3u2"]),
        ns(NS_IP, &["blue"], &[]),
        IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode: HOST,
            interfaces: vec![
                iface(1, "lo", None),
                iface(2, "eth0", None),
                iface(5, "br-ecc1d7b96a6c", Some("bridge")),
                veth(7, "vethA", 6, NS_A),
                veth(9, "vethB", 8, NS_B),
                veth(11, "vethX", 10, NS_IP),
                iface(12, "tap0", Some("tun")),
            ],
        },
        IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode: NS_A,
            interfaces: vec![InterfaceInfo {
                mac: Some(MAC_A),
                addrs: vec![ip("172.18.0.2"), ip("127.0.0.1")],
                ..veth(6, "eth0", 7, HOST)
            }],
        },
        IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode: NS_B,
            interfaces: vec![InterfaceInfo {
                mac: Some(MAC_B),
                addrs: vec![ip("172.18.0.3")],
                ..veth(8, "eth0", 9, HOST)
            }],
        },
        IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode: NS_OV,
            interfaces: vec![
                InterfaceInfo {
                    addrs: vec![ip("10.0.1.1")],
                    ..iface(2, "br0", Some("bridge"))
                },
                iface(14, "vxlan0", Some("vxlan")),
                veth(16, "veth0", 15, NS_S),
                veth(18, "veth1", 17, NS_LB),
            ],
        },
        IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode: NS_S,
            interfaces: vec![InterfaceInfo {
                mac: Some(MAC_S),
                addrs: vec![ip("10.0.1.2")],
                ..veth(15, "eth0", 16, NS_OV)
            }],
        },
        IdentityUpdate::ContainerUpsert {
            ts: T0,
            container: container('a', "alpha", NS_A, &["172.18.0.2"], Some(MAC_A)),
        },
        IdentityUpdate::ContainerUpsert {
            ts: T0,
            container: container('b', "bravo", NS_B, &["172.18.0.3"], Some(MAC_B)),
        },
        IdentityUpdate::ContainerUpsert {
            ts: T0,
            container: ContainerInfo {
                swarm_service: Some("web".into()),
                swarm_task: Some("web.1.evo7mrblco9ck1y25uqdwlewa".into()),
                compose_project: None,
                ..container('5', "web.1.evo7mrblco9ck1y25uqdwlewa", NS_S, &[], None)
            },
        },
    ];
    // The overlay network is announced last: resolution must not depend on order.
    u.push(IdentityUpdate::NetworkUpsert {
        ts: T0,
        network: NetworkInfo {
            id: OV_ID.into(),
            name: "backend".into(),
            driver: Some("overlay".into()),
            ..Default::default()
        },
    });
    u
}

fn index() -> IdentityIndex {
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    for u in updates() {
        ix.apply(&u);
    }
    ix
}

fn event(ts: i128, action: Action, netns: u32) -> EcsEvent {
    let mut e = EcsEvent::new(ts, Kind::Event, action);
    e.tracer.netns = Some(Netns {
        inode: netns,
        ..Netns::default()
    });
    e
}

fn fdb(
    ts: i128,
    action: Action,
    netns: u32,
    bridge: &str,
    port: &str,
    prev: Option<&str>,
    mac: [u8; 6],
) -> EcsEvent {
    let mut e = event(ts, action, netns);
    e.source.mac = Some(Mac(mac));
    e.tracer.bridge = Some(bridge.into());
    e.tracer.port = Some(port.into());
    e.tracer.previous_port = prev.map(Into::into);
    e
}

fn name(c: &Option<ContainerRef>) -> Option<&str> {
    c.as_ref().and_then(|c| c.name.as_deref())
}

#[test]
fn overlay_fdb_move_names_network_task_and_both_ports() {
    let ix = index();
    let mut e = fdb(
        T0 + S,
        Action::FdbMove,
        NS_OV,
        "br0",
        "vxlan0",
        Some("veth0"),
        MAC_S,
    );
    ix.enrich(&mut e);
    let n = e.tracer.netns.as_ref().unwrap();
    assert_eq!(n.name.as_deref(), Some("1-4zd4qm3u2h"));
    assert_eq!(n.network.as_deref(), Some("backend"));
    assert!(
        e.container.is_none(),
        "an overlay namespace is no container's"
    );
    let src = e.source.container.as_ref().expect("owner of the MAC");
    assert_eq!(
        src.swarm.as_ref().and_then(|s| s.service.as_deref()),
        Some("web")
    );
    assert_eq!(src.runtime.as_deref(), Some("docker"));
    let now = e.tracer.port_peer.as_ref().unwrap();
    assert_eq!((now.kind, now.interface.as_str()), ("vxlan", "vxlan0"));
    assert_eq!(now.network.as_deref(), Some("backend"));
    let before = e.tracer.previous_port_peer.as_ref().unwrap();
    assert_eq!(before.kind, "container");
    assert_eq!(
        name(&before.container),
        Some("web.1.evo7mrblco9ck1y25uqdwlewa")
    );
    assert_eq!(before.network.as_deref(), Some("backend"));

    // The lb sandbox is a namespace, not a container.
    let mut e = fdb(
        T0 + S,
        Action::FdbLearn,
        NS_OV,
        "br0",
        "veth1",
        None,
        [2, 0, 0, 0, 0, 0x77],
    );
    ix.enrich(&mut e);
    let p = e.tracer.port_peer.as_ref().unwrap();
    assert_eq!(p.kind, "namespace");
    assert_eq!(p.netns.as_deref(), Some("lb_4zd4qm3u2"));
    assert_eq!(p.network.as_deref(), Some("backend"));
    assert!(e.source.container.is_none(), "unknown MAC");
}

#[test]
fn host_bridge_fdb_names_the_container_behind_each_port() {
    let ix = index();
    let mut e = fdb(
        T0 + S,
        Action::FdbLearn,
        HOST,
        "br-ecc1d7b96a6c",
        "vethA",
        None,
        MAC_A,
    );
    ix.enrich(&mut e);
    assert!(e.container.is_none(), "the host namespace is nobody's");
    assert_eq!(name(&e.source.container), Some("alpha"));
    let p = e.tracer.port_peer.as_ref().unwrap();
    assert_eq!(p.kind, "container");
    assert_eq!(name(&p.container), Some("alpha"));
    assert_eq!(p.network.as_deref(), Some("probebr"));
    assert!(e.tracer.previous_port_peer.is_none());

    for (port, kind) in [
        ("eth0", "uplink"),
        ("br-ecc1d7b96a6c", "bridge"),
        ("vethX", "namespace"),
        ("tap0", "unknown"),
        ("nosuch", "unknown"),
    ] {
        let mut e = fdb(
            T0 + S,
            Action::FdbDelete,
            HOST,
            "br-ecc1d7b96a6c",
            port,
            None,
            MAC_B,
        );
        ix.enrich(&mut e);
        let p = e.tracer.port_peer.as_ref().unwrap();
        assert_eq!(p.kind, kind, "{port}");
        assert_eq!(p.interface, port);
        if port == "vethX" {
            assert_eq!(p.netns.as_deref(), Some("blue"));
        }
        if port == "br-ecc1d7b96a6c" {
            assert_eq!(p.network.as_deref(), Some("probebr"));
        }
    }
    // A local entry (no port) gets no peer.
    let mut e = fdb(
        T0 + S,
        Action::FdbLearn,
        HOST,
        "br-ecc1d7b96a6c",
        "",
        None,
        MAC_B,
    );
    ix.enrich(&mut e);
    assert!(e.tracer.port_peer.is_none());
}

#[test]
fn arp_and_neigh_name_both_ends() {
    let ix = index();
    let mut e = event(T0 + S, Action::ArpReply, NS_A);
    e.source.ip = Some(ip("172.18.0.3"));
    e.source.mac = Some(Mac(MAC_B));
    e.destination.ip = Some(ip("172.18.0.2"));
    e.destination.mac = Some(Mac(MAC_A));
    ix.enrich(&mut e);
    assert_eq!(name(&e.container), Some("alpha"));
    assert_eq!(name(&e.source.container), Some("bravo"));
    assert_eq!(name(&e.destination.container), Some("alpha"));
    let n = e.tracer.netns.as_ref().unwrap();
    assert_eq!(n.name.as_deref(), Some("a0dba506778c"));
    assert!(n.network.is_none());
    assert!(
        e.tracer.port_peer.is_none(),
        "only FDB events get port peers"
    );

    // neigh_update: by IP alone (incomplete entry, no MAC yet).
    let mut e = event(T0 + S, Action::NeighUpdate, NS_A);
    e.destination.ip = Some(ip("172.18.0.3"));
    ix.enrich(&mut e);
    assert_eq!(name(&e.destination.container), Some("bravo"));
    // The MAC decides over the IP when both resolve (what frames go to).
    let mut e = event(T0 + S, Action::NeighUpdate, NS_A);
    e.destination.ip = Some(ip("172.18.0.3"));
    e.destination.mac = Some(Mac(MAC_A));
    ix.enrich(&mut e);
    assert_eq!(name(&e.destination.container), Some("alpha"));
    // Broadcast and zero MACs are nobody's: the IP decides.
    let mut e = event(T0 + S, Action::ArpReply, NS_A);
    e.destination.ip = Some(ip("172.18.0.3"));
    e.destination.mac = Some(Mac([0; 6]));
    e.source.ip = Some(ip("172.18.0.2"));
    e.source.mac = Some(Mac([0xff; 6]));
    ix.enrich(&mut e);
    assert_eq!(name(&e.destination.container), Some("bravo"));
    assert_eq!(name(&e.source.container), Some("alpha"));
}

/// An ARP reply's interface gets its link kind from identity (what the ARP
/// detector decides "vxlan" by), never from its name.
#[test]
fn arp_reply_interface_kind_is_the_link_kind_not_the_name() {
    let mut ix = index();
    ix.apply(&IdentityUpdate::NetnsInterfaces {
        ts: T0,
        inode: NS_IP,
        interfaces: vec![
            iface(30, "vxfoo", Some("veth")),
            iface(31, "tun$(id)", Some("vxlan")),
        ],
    });
    let kind = |netns: u32, name: &str| {
        let mut e = event(T0 + S, Action::ArpReply, netns);
        e.tracer.interface = Some(crate::event::Interface {
            name: name.into(),
            index: 1,
            kind: None,
        });
        ix.enrich(&mut e);
        e.tracer.interface.unwrap().kind
    };
    assert_eq!(kind(NS_OV, "vxlan0"), Some("vxlan"));
    assert_eq!(kind(NS_OV, "veth0"), Some("veth"));
    assert_eq!(kind(NS_IP, "vxfoo"), Some("veth"));
    assert_eq!(kind(NS_IP, "tun$(id)"), Some("vxlan"));
    assert_eq!(kind(NS_IP, "vxlan9"), None, "unknown to identity");
    assert_eq!(kind(12345, "vxlan0"), None, "unknown namespace");
}

#[test]
fn tcp_and_drops_name_local_and_remote_containers() {
    let ix = index();
    let mut e = event(T0 + S, Action::TcpRetransmit, NS_A);
    e.source.ip = Some(ip("172.18.0.2"));
    e.source.port = Some(40000);
    e.destination.ip = Some(ip("172.18.0.3"));
    e.destination.port = Some(5000);
    ix.enrich(&mut e);
    assert_eq!(name(&e.container), Some("alpha"));
    assert_eq!(name(&e.source.container), Some("alpha"));
    assert_eq!(name(&e.destination.container), Some("bravo"));

    let mut e = event(T0 + S, Action::SkbDrop, NS_B);
    e.source.ip = Some(ip("172.18.0.2"));
    e.destination.ip = Some(ip("172.18.0.3"));
    ix.enrich(&mut e);
    assert_eq!(name(&e.container), Some("bravo"));
    assert_eq!(name(&e.source.container), Some("alpha"));

    // Remote address of nobody known, loopback: nothing.
    let mut e = event(T0 + S, Action::TcpReset, NS_B);
    e.source.ip = Some(ip("192.0.2.7"));
    e.destination.ip = Some(ip("127.0.0.1"));
    ix.enrich(&mut e);
    assert_eq!(name(&e.container), Some("bravo"));
    assert!(e.source.container.is_none() && e.destination.container.is_none());

    // A container reached only through its namespace's address (no API):
    // the overlay IP of the task is known from its interfaces.
    let mut e = event(T0 + S, Action::SkbDrop, NS_S);
    e.source.ip = Some(ip("10.0.1.2"));
    ix.enrich(&mut e);
    assert_eq!(
        e.container
            .as_ref()
            .and_then(|c| c.swarm.as_ref())
            .and_then(|s| s.task.as_deref()),
        Some("web.1.evo7mrblco9ck1y25uqdwlewa")
    );
    assert_eq!(name(&e.source.container), name(&e.container));
    // The overlay's gateway address is in a namespace without a container.
    let mut e = event(T0 + S, Action::SkbDrop, NS_S);
    e.destination.ip = Some(ip("10.0.1.1"));
    ix.enrich(&mut e);
    assert!(e.destination.container.is_none());
}

#[test]
fn unknown_namespace_and_fields_already_set() {
    let ix = index();
    let mut e = event(T0 + S, Action::SkbDrop, 999);
    ix.enrich(&mut e);
    assert!(e.container.is_none());
    assert_eq!(e.tracer.netns.as_ref().unwrap().name, None);
    assert!(!ix.knows_netns(999));
    assert!(ix.knows_netns(NS_A));

    let mut e = event(T0 + S, Action::SkbDrop, NS_A);
    e.container = Some(ContainerRef::new(crate::event::ContainerData {
        id: "given".into(),
        ..Default::default()
    }));
    e.tracer.netns.as_mut().unwrap().name = Some("given".into());
    ix.enrich(&mut e);
    assert_eq!(e.container.as_ref().unwrap().id, "given");
    assert_eq!(
        e.tracer.netns.as_ref().unwrap().name.as_deref(),
        Some("given")
    );

    // An event without a namespace still gets its endpoints.
    let mut e = EcsEvent::new(T0 + S, Kind::Event, Action::SkbDrop);
    e.destination.ip = Some(ip("172.18.0.3"));
    ix.enrich(&mut e);
    assert_eq!(name(&e.destination.container), Some("bravo"));
}

#[test]
fn named_namespaces_prefer_ip_netns_names_and_resolve_lb_and_ingress() {
    let mut ix = index();
    ix.apply(&ns(NS_A, &["mine"], &["a0dba506778c"]));
    ix.apply(&ns(70, &[], &["ingress_sbox"]));
    ix.apply(&IdentityUpdate::NetworkUpsert {
        ts: T0,
        network: NetworkInfo {
            id: "qc7yx7w7ysr3kovyvln2wy8gr".into(),
            name: "ingress".into(),
            driver: Some("overlay".into()),
            ingress: true,
            bridge: None,
        },
    });
    for (inode, want_name, want_net) in [
        (NS_A, Some("mine"), None),
        (NS_LB, Some("lb_4zd4qm3u2"), Some("backend")),
        (70, Some("ingress_sbox"), Some("ingress")),
        (NS_IP, Some("blue"), None),
        (HOST, None, None),
    ] {
        let mut e = event(T0 + S, Action::SkbDrop, inode);
        ix.enrich(&mut e);
        let n = e.tracer.netns.unwrap();
        assert_eq!(n.name.as_deref(), want_name, "{inode}");
        assert_eq!(n.network.as_deref(), want_net, "{inode}");
    }
    // The network goes: namespaces lose the name with it.
    ix.apply(&IdentityUpdate::NetworkRemove {
        ts: T0,
        id: OV_ID.into(),
    });
    let mut e = event(T0 + S, Action::SkbDrop, NS_OV);
    ix.enrich(&mut e);
    assert_eq!(e.tracer.netns.unwrap().network, None);
}

#[test]
fn exited_container_keeps_identity_for_the_grace_period_then_is_pruned() {
    let mut ix = index();
    let before = ix.stats();
    let gone = T0 + 100 * S;
    ix.apply(&IdentityUpdate::ContainerRemove {
        ts: gone,
        id: id('b'),
    });
    assert_eq!(ix.stats().containers_exited, 1);
    for (ts, named) in [
        (gone - S, true),       // before it stopped
        (gone + 10 * S, true),  // late event within grace
        (gone + 30 * S, true),  // exactly at the end
        (gone + 31 * S, false), // past grace
    ] {
        let mut e = event(ts, Action::SkbDrop, NS_B);
        e.source.ip = Some(ip("172.18.0.3"));
        ix.enrich(&mut e);
        assert_eq!(
            name(&e.container).is_some(),
            named,
            "ts +{}",
            (ts - gone) / S
        );
        assert_eq!(name(&e.source.container).is_some(), named);
    }
    // Removal twice keeps the first time.
    ix.apply(&IdentityUpdate::ContainerRemove {
        ts: gone + 20 * S,
        id: id('b'),
    });
    let mut e = event(gone + 25 * S, Action::SkbDrop, NS_B);
    ix.enrich(&mut e);
    assert_eq!(name(&e.container), Some("bravo"));
    // Time passes (an update's timestamp): pruned for good.
    ix.apply(&IdentityUpdate::Synced {
        ts: gone + 31 * S,
        source: "netns".into(),
    });
    let after = ix.stats();
    assert_eq!(after.containers, before.containers - 1);
    assert_eq!(after.containers_exited, 0);
    let mut e = event(gone, Action::SkbDrop, NS_B);
    e.destination.mac = Some(Mac(MAC_B));
    ix.enrich(&mut e);
    assert!(e.container.is_none());
    assert!(
        e.destination.container.is_none(),
        "pruned: even its time is forgotten"
    );
}

#[test]
fn restarted_container_is_live_again_and_old_expiry_does_not_prune_it() {
    let mut ix = index();
    ix.apply(&IdentityUpdate::ContainerRemove {
        ts: T0 + 10 * S,
        id: id('b'),
    });
    ix.apply(&IdentityUpdate::ContainerUpsert {
        ts: T0 + 12 * S,
        container: container('b', "bravo", NS_B, &["172.18.0.3"], Some(MAC_B)),
    });
    ix.apply(&IdentityUpdate::Synced {
        ts: T0 + 100 * S,
        source: "netns".into(),
    });
    let mut e = event(T0 + 100 * S, Action::SkbDrop, NS_B);
    ix.enrich(&mut e);
    assert_eq!(name(&e.container), Some("bravo"));
    assert_eq!(ix.stats().containers_exited, 0);
}

#[test]
fn reused_ip_names_the_new_container_and_late_events_the_old_one() {
    let mut ix = index();
    let gone = T0 + 10 * S;
    ix.apply(&IdentityUpdate::ContainerRemove {
        ts: gone,
        id: id('b'),
    });
    ix.apply(&IdentityUpdate::ContainerUpsert {
        ts: gone + S,
        container: container(
            'c',
            "charlie",
            80,
            &["172.18.0.3"],
            Some([2, 0x42, 0xac, 0x12, 0, 9]),
        ),
    });
    let mut now = event(gone + 2 * S, Action::TcpReset, NS_A);
    now.destination.ip = Some(ip("172.18.0.3"));
    ix.enrich(&mut now);
    assert_eq!(name(&now.destination.container), Some("charlie"));
    let mut late = event(gone - S, Action::TcpReset, NS_A);
    late.destination.ip = Some(ip("172.18.0.3"));
    ix.enrich(&mut late);
    assert_eq!(name(&late.destination.container), Some("bravo"));
}

#[test]
fn interfaces_replace_addresses_and_namespaces_vanish_after_grace() {
    let mut ix = index();
    ix.apply(&IdentityUpdate::NetnsInterfaces {
        ts: T0 + S,
        inode: NS_S,
        interfaces: vec![InterfaceInfo {
            mac: Some(MAC_S),
            addrs: vec![ip("10.0.1.9")],
            ..veth(15, "eth0", 16, NS_OV)
        }],
    });
    let lookup = |ix: &IdentityIndex, a: &str, ts: i128| {
        let mut e = event(ts, Action::SkbDrop, HOST);
        e.destination.ip = Some(ip(a));
        ix.enrich(&mut e);
        e.destination.container.is_some()
    };
    assert!(
        !lookup(&ix, "10.0.1.2", T0 + 2 * S),
        "old address forgotten"
    );
    assert!(lookup(&ix, "10.0.1.9", T0 + 2 * S));

    ix.apply(&IdentityUpdate::NetnsRemove {
        ts: T0 + 5 * S,
        inode: NS_OV,
    });
    let mut e = fdb(
        T0 + 6 * S,
        Action::FdbDelete,
        NS_OV,
        "br0",
        "veth0",
        None,
        MAC_S,
    );
    ix.enrich(&mut e);
    assert_eq!(
        e.tracer.port_peer.as_ref().unwrap().kind,
        "container",
        "within grace"
    );
    ix.apply(&IdentityUpdate::Synced {
        ts: T0 + 60 * S,
        source: "netns".into(),
    });
    assert!(!ix.knows_netns(NS_OV));
    let mut e = fdb(
        T0 + 60 * S,
        Action::FdbDelete,
        NS_OV,
        "br0",
        "veth0",
        None,
        MAC_S,
    );
    ix.enrich(&mut e);
    assert_eq!(e.tracer.port_peer.as_ref().unwrap().kind, "unknown");
    assert!(e.tracer.netns.as_ref().unwrap().name.is_none());
}

#[test]
fn host_namespace_never_names_a_container() {
    let mut ix = index();
    // A host-network container claiming the host's namespace.
    ix.apply(&IdentityUpdate::ContainerUpsert {
        ts: T0,
        container: ContainerInfo {
            id: id('h'),
            name: Some("hostnet".into()),
            netns: Some(HOST),
            ..Default::default()
        },
    });
    let mut e = event(T0 + S, Action::SkbDrop, HOST);
    ix.enrich(&mut e);
    assert!(e.container.is_none());
    // Even when the host namespace is announced after the container.
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    ix.apply(&IdentityUpdate::ContainerUpsert {
        ts: T0,
        container: ContainerInfo {
            id: id('h'),
            netns: Some(HOST),
            ..Default::default()
        },
    });
    ix.apply(&ns(HOST, &[], &[]));
    let mut e = event(T0 + S, Action::SkbDrop, HOST);
    ix.enrich(&mut e);
    assert!(e.container.is_none());
}

#[test]
fn shared_namespace_is_named_for_its_owner() {
    let mut ix = index();
    ix.apply(&IdentityUpdate::ContainerUpsert {
        ts: T0 + S,
        container: ContainerInfo {
            id: id('j'),
            name: Some("joiner".into()),
            netns: Some(NS_A),
            shares_netns: true,
            ..Default::default()
        },
    });
    let mut e = event(T0 + 2 * S, Action::SkbDrop, NS_A);
    ix.enrich(&mut e);
    assert_eq!(name(&e.container), Some("alpha"));
}

#[test]
fn container_known_before_its_namespace_is_named() {
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    ix.apply(&IdentityUpdate::ContainerUpsert {
        ts: T0,
        container: container('a', "alpha", NS_A, &["172.18.0.2"], Some(MAC_A)),
    });
    assert!(
        !ix.knows_netns(NS_A),
        "a placeholder is not a scanned namespace"
    );
    let mut e = event(T0, Action::SkbDrop, NS_A);
    ix.enrich(&mut e);
    assert_eq!(name(&e.container), Some("alpha"));
    ix.apply(&IdentityUpdate::ContainerRemove {
        ts: T0,
        id: id('a'),
    });
    ix.apply(&IdentityUpdate::Synced {
        ts: T0 + 100 * S,
        source: "docker".into(),
    });
    assert_eq!(ix.stats().netns, 0, "placeholder pruned with its container");
    assert_eq!(ix.stats().addresses, 0);
    assert_eq!(ix.stats().macs, 0);
}

#[test]
fn replay_of_recorded_updates_gives_the_same_enrichment() {
    let recorded = serde_json::to_string(&updates()).unwrap();
    let replayed: Vec<IdentityUpdate> = serde_json::from_str(&recorded).unwrap();
    let mut a = index();
    let mut b = IdentityIndex::new(Duration::from_secs(30));
    for u in &replayed {
        b.apply(u);
    }
    let extra = IdentityUpdate::ContainerRemove {
        ts: T0 + 5 * S,
        id: id('a'),
    };
    a.apply(&extra);
    b.apply(&extra);
    let events = || {
        vec![
            fdb(
                T0 + 6 * S,
                Action::FdbMove,
                NS_OV,
                "br0",
                "vxlan0",
                Some("veth0"),
                MAC_S,
            ),
            fdb(
                T0 + 6 * S,
                Action::FdbLearn,
                HOST,
                "br-ecc1d7b96a6c",
                "vethA",
                None,
                MAC_A,
            ),
            {
                let mut e = event(T0 + 6 * S, Action::ArpReply, NS_A);
                e.source.ip = Some(ip("172.18.0.3"));
                e.destination.mac = Some(Mac(MAC_A));
                e
            },
        ]
    };
    let lines = |ix: &IdentityIndex| {
        let mut out = Vec::new();
        for mut e in events() {
            ix.enrich(&mut e);
            e.write_line(&mut out).unwrap();
        }
        String::from_utf8(out).unwrap()
    };
    assert_eq!(lines(&a), lines(&b));
    assert_eq!(a.stats(), b.stats());
}

#[test]
fn untrusted_names_stay_inside_their_json_string() {
    let mut ix = index();
    let evil = "x\",\"injected\":true,\"y\":\"\n$(rm -rf /)";
    ix.apply(&IdentityUpdate::ContainerUpsert {
        ts: T0,
        container: ContainerInfo {
            compose_project: Some(evil.into()),
            ..container('a', evil, NS_A, &["172.18.0.2"], Some(MAC_A))
        },
    });
    let mut e = event(T0 + S, Action::SkbDrop, NS_A);
    ix.enrich(&mut e);
    let mut out = Vec::new();
    e.write_line(&mut out).unwrap();
    let line = String::from_utf8(out).unwrap();
    assert_eq!(line.matches('\n').count(), 1);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["container"]["name"], evil);
    assert_eq!(v["container"]["compose"]["project"], evil);
    assert!(v.get("injected").is_none());
}

#[test]
fn stats_count_what_is_known() {
    let mut ix = index();
    let s = ix.stats();
    assert_eq!(s.containers, 3);
    assert_eq!(s.netns, 7);
    assert_eq!(s.networks, 2);
    // 172.18.0.2/.3 (API and interfaces: one entry each), 10.0.1.1, 10.0.1.2.
    assert_eq!(s.addresses, 4);
    assert_eq!(s.macs, 3);
    assert!(s.degraded.is_empty());
    ix.apply(&IdentityUpdate::Status {
        ts: T0,
        source: "docker".into(),
        state: SourceState::Degraded,
        reason: Some("x".into()),
    });
    assert_eq!(ix.stats().degraded, vec!["docker".to_string()]);
}

/// The cached answers (one probe per look-up) must equal full resolution
/// at every event time, whatever the order of updates.
#[test]
fn cached_answers_match_full_resolution_under_random_updates() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    ix.apply(&ns(HOST, &[], &[]));
    let mut t = T0;
    for step in 0..3000 {
        t += (next(3) as i128) * S;
        let c = next(12) as u8;
        let netns = 200 + next(8) as u32;
        let addr = |k: u64| ip(&format!("10.9.0.{}", 1 + k));
        let mac = |k: u64| [2, 0x42, 10, 9, 0, 1 + k as u8];
        let u = match next(7) {
            0 | 1 => IdentityUpdate::ContainerUpsert {
                ts: t,
                container: ContainerInfo {
                    id: format!("{c:064x}"),
                    netns: if next(5) == 0 {
                        Some(HOST)
                    } else {
                        Some(netns)
                    },
                    shares_netns: next(6) == 0,
                    endpoints: vec![EndpointInfo {
                        network_id: "n".into(),
                        network: None,
                        ips: vec![addr(next(10))],
                        mac: Some(mac(next(10))),
                    }],
                    ..Default::default()
                },
            },
            2 => IdentityUpdate::ContainerRemove {
                ts: t,
                id: format!("{c:064x}"),
            },
            3 => IdentityUpdate::NetnsInterfaces {
                ts: t,
                inode: netns,
                interfaces: vec![InterfaceInfo {
                    mac: Some(mac(next(10))),
                    addrs: vec![addr(next(10))],
                    ..iface(2, "eth0", Some("veth"))
                }],
            },
            4 => IdentityUpdate::NetnsRemove {
                ts: t,
                inode: netns,
            },
            5 => ns(netns, &[], &[]),
            _ => IdentityUpdate::Synced {
                ts: t,
                source: "x".into(),
            },
        };
        let u = match u {
            IdentityUpdate::NetnsUpsert { netns, .. } => {
                IdentityUpdate::NetnsUpsert { ts: t, netns }
            }
            u => u,
        };
        ix.apply(&u);
        for dt in [-40, -10, 0, 1, 10, 29, 31, 60] {
            let at = t + dt * S;
            for (k, a) in &ix.ips {
                assert_eq!(
                    ix.owner_of(a, at),
                    ix.owner_full(a, at),
                    "step {step} ip {k} dt {dt}: {u:?}"
                );
            }
            for (k, a) in &ix.macs {
                assert_eq!(
                    ix.owner_of(a, at),
                    ix.owner_full(a, at),
                    "step {step} mac {k:?} dt {dt}: {u:?}"
                );
            }
            for (k, e) in &ix.netns {
                assert_eq!(
                    ix.netns_container(e, at),
                    ix.netns_container_full(e, at),
                    "step {step} netns {k} dt {dt}: {u:?}"
                );
            }
        }
    }
    assert!(ix.stats().containers > 0);
}

// ---- snapshot: the updates that rebuild an index ----

/// An index rebuilt from `ix`'s snapshot.
fn restored(ix: &IdentityIndex) -> IdentityIndex {
    let mut r = IdentityIndex::new(Duration::from_nanos(ix.grace as u64));
    for u in ix.snapshot() {
        r.apply(&u);
    }
    r
}

/// Everything of an index that enrichment and later updates depend on, in
/// a canonical order (neither hash-map order nor the order of a list of
/// owners changes an answer). Source status, which changes no answer, is
/// left out; so are removal times already overtaken (see
/// [`IdentityIndex::snapshot`]).
fn shape(ix: &IdentityIndex) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "grace {} now {}", ix.grace, ix.now);
    for (k, c) in ix.slots.iter().enumerate() {
        let _ = match c {
            Some(c) => writeln!(
                s,
                "slot {k}: {:?} first {} removed {:?}",
                c.info, c.first_seen, c.removed_at
            ),
            None => writeln!(s, "slot {k}: free"),
        };
    }
    let _ = writeln!(s, "free {:?}", ix.free);
    let mut ids: Vec<_> = ix.by_id.iter().collect();
    ids.sort();
    let _ = writeln!(s, "ids {ids:?}");
    let mut netns: Vec<_> = ix.netns.iter().collect();
    netns.sort_by_key(|(k, _)| **k);
    for (k, e) in netns {
        let mut containers = e.containers.clone();
        containers.sort_unstable();
        let mut ifaces: Vec<_> = e
            .ifaces
            .iter()
            .map(|(n, i)| (n.to_string(), i.kind, i.peer_netns))
            .collect();
        ifaces.sort_by(|a, b| a.0.cmp(&b.0));
        let mut ips = e.ips.clone();
        ips.sort_unstable();
        let mut macs = e.macs.clone();
        macs.sort_unstable();
        let _ = writeln!(
            s,
            "netns {k}: known {} host {} name {:?} key {:?} network {:?} containers {containers:?} \
             primary {:?} ifaces {ifaces:?} ips {ips:?} macs {macs:?} removed {:?}",
            e.known, e.host, e.name, e.network_key, e.network, e.primary, e.removed_at
        );
    }
    let _ = writeln!(s, "networks {:?}", ix.networks);
    let mut bridges: Vec<_> = ix.bridge_networks.iter().collect();
    bridges.sort();
    let _ = writeln!(s, "bridges {bridges:?}");
    let owners = |a: &AddrEntry| {
        let mut o: Vec<(u8, u32)> = a
            .owners
            .as_slice()
            .iter()
            .map(|o| match *o {
                Owner::Container(s) => (0, s),
                Owner::Netns(n) => (1, n),
            })
            .collect();
        o.sort_unstable();
        (o, a.cached)
    };
    let mut ips: Vec<_> = ix.ips.iter().map(|(k, a)| (*k, owners(a))).collect();
    ips.sort_by_key(|(k, _)| *k);
    let _ = writeln!(s, "ips {ips:?}");
    let mut macs: Vec<_> = ix.macs.iter().map(|(k, a)| (*k, owners(a))).collect();
    macs.sort_by_key(|(k, _)| *k);
    let _ = writeln!(s, "macs {macs:?}");
    // Pending expiries for what is removed now, in the order they fire.
    let mut seen = Vec::new();
    for (&(due, _), &(what, removed_at)) in &ix.expiries {
        let current = match what {
            Expiry::Container(slot) => ix.slots[slot as usize]
                .as_ref()
                .is_some_and(|c| c.removed_at == Some(removed_at)),
            Expiry::Netns(inode) => ix
                .netns
                .get(&inode)
                .is_some_and(|e| e.removed_at == Some(removed_at)),
        };
        if current && !seen.contains(&what) {
            seen.push(what);
            let _ = writeln!(s, "expiry {due} {what:?} {removed_at}");
        }
    }
    s
}

/// Enriched NDJSON of `events`.
fn enriched(ix: &IdentityIndex, events: &[EcsEvent]) -> String {
    let mut out = Vec::new();
    for e in events {
        let mut e = e.clone();
        ix.enrich(&mut e);
        e.write_line(&mut out).unwrap();
    }
    String::from_utf8(out).unwrap()
}

const MAC_C: [u8; 6] = [2, 0x42, 0xac, 0x12, 0, 9];
const MAC_Q: [u8; 6] = [2, 0x42, 0xac, 0x12, 0, 0x10];
const NS_POD: u32 = 90;
const NS_IFONLY: u32 = 95;

/// The hand-built host, then a history: containers that exited long ago
/// (pruned: free slots, taken again by the next four containers but one), a
/// pod namespace with one container, a container
/// that joins another's namespace, a host-network one, an exited container
/// (in its grace period) whose address a later container took, a restarted
/// one, a vanished namespace (in grace), a namespace only interfaces name,
/// a removed network and Docker degraded.
fn history() -> IdentityIndex {
    let mut ix = index();
    let mut apply = |u: IdentityUpdate| ix.apply(&u);
    for (k, c) in ['d', 'e', 'f', 'm', 'n'].into_iter().enumerate() {
        apply(IdentityUpdate::ContainerUpsert {
            ts: T0 + S,
            container: container(
                c,
                &format!("gone{k}"),
                70 + k as u32,
                &[&format!("172.18.0.{}", 20 + k)],
                Some([2, 0x42, 0xac, 0x12, 0, 20 + k as u8]),
            ),
        });
    }
    // Pruned in this order: slots 4, 3, 5, 7, 6 are free, in that order.
    for c in ['e', 'd', 'f', 'n', 'm'] {
        apply(IdentityUpdate::ContainerRemove {
            ts: T0 + 2 * S,
            id: id(c),
        });
    }
    apply(IdentityUpdate::Synced {
        ts: T0 + 40 * S,
        source: "docker".into(),
    });
    apply(ns(NS_POD, &[], &["0123456789ab"]));
    apply(IdentityUpdate::ContainerUpsert {
        ts: T0 + 50 * S,
        container: container('p', "pod-app", NS_POD, &["172.18.0.30"], None),
    });
    apply(IdentityUpdate::ContainerUpsert {
        ts: T0 + 60 * S,
        container: ContainerInfo {
            id: id('j'),
            name: Some("joiner".into()),
            netns: Some(NS_A),
            shares_netns: true,
            ..Default::default()
        },
    });
    apply(IdentityUpdate::ContainerUpsert {
        ts: T0 + 60 * S,
        container: ContainerInfo {
            id: id('h'),
            name: Some("hostnet".into()),
            netns: Some(HOST),
            ..Default::default()
        },
    });
    apply(IdentityUpdate::ContainerRemove {
        ts: T0 + 70 * S,
        id: id('a'),
    });
    apply(IdentityUpdate::ContainerUpsert {
        ts: T0 + 80 * S,
        container: container('a', "alpha", NS_A, &["172.18.0.2"], Some(MAC_A)),
    });
    apply(IdentityUpdate::NetnsInterfaces {
        ts: T0 + 85 * S,
        inode: NS_IFONLY,
        interfaces: vec![
            iface(1, "lo", None),
            InterfaceInfo {
                mac: Some([2, 0, 0, 0, 0x95, 1]),
                addrs: vec![ip("192.168.95.1"), ip("fd00::95")],
                ..veth(2, "eth0", 3, HOST)
            },
            InterfaceInfo {
                mac: Some([2, 0, 0, 0, 0x95, 2]),
                ..iface(4, "eth1", Some("macvlan"))
            },
        ],
    });
    apply(IdentityUpdate::NetworkUpsert {
        ts: T0 + 86 * S,
        network: NetworkInfo {
            id: "zzgone".into(),
            name: "gone".into(),
            bridge: Some("br-gone".into()),
            ..Default::default()
        },
    });
    apply(IdentityUpdate::NetworkRemove {
        ts: T0 + 87 * S,
        id: "zzgone".into(),
    });
    apply(IdentityUpdate::Status {
        ts: T0 + 90 * S,
        source: "docker".into(),
        state: SourceState::Degraded,
        reason: Some("timed out".into()),
    });
    apply(IdentityUpdate::NetnsRemove {
        ts: T0 + 95 * S,
        inode: NS_LB,
    });
    apply(IdentityUpdate::ContainerRemove {
        ts: T0 + 100 * S,
        id: id('b'),
    });
    apply(IdentityUpdate::ContainerUpsert {
        ts: T0 + 101 * S,
        container: container('c', "charlie", 80, &["172.18.0.3"], Some(MAC_C)),
    });
    ix
}

/// Events touching every namespace, address and bridge port of
/// [`history`], at times before, within and past the grace periods.
fn probe_events() -> Vec<EcsEvent> {
    let ips = [
        "172.18.0.2",
        "172.18.0.3",
        "172.18.0.20",
        "172.18.0.30",
        "10.0.1.1",
        "10.0.1.2",
        "192.168.95.1",
        "fd00::95",
        "127.0.0.1",
    ];
    let macs = [
        MAC_A,
        MAC_B,
        MAC_C,
        MAC_S,
        MAC_Q,
        [2, 0x42, 0xac, 0x12, 0, 20],
        [2, 0, 0, 0, 0x95, 1],
        [2, 0, 0, 0, 0x95, 2],
    ];
    let netns = [
        HOST, NS_A, NS_B, NS_OV, NS_S, NS_LB, NS_IP, 70, 80, NS_POD, NS_IFONLY, 999,
    ];
    let ports = [
        (NS_OV, "br0", ["veth0", "veth1", "vxlan0", "br0", "nope"]),
        (
            HOST,
            "br-ecc1d7b96a6c",
            ["vethA", "vethB", "vethX", "eth0", "tap0"],
        ),
        (
            HOST,
            "br-gone",
            ["br-ecc1d7b96a6c", "br-gone", "vethA", "lo", "x"],
        ),
        (NS_IFONLY, "br9", ["eth0", "eth1", "lo", "", "x"]),
    ];
    let mut out = Vec::new();
    for dt in [0, 49, 55, 75, 99, 101, 110, 125, 126, 130, 131, 200] {
        let ts = T0 + dt * S;
        for &n in &netns {
            for (k, a) in ips.iter().enumerate() {
                let mut e = event(ts, Action::TcpReset, n);
                e.source.ip = Some(ip(a));
                e.destination.mac = Some(Mac(macs[k % macs.len()]));
                out.push(e);
            }
        }
        for (n, bridge, ports) in ports {
            for (k, p) in ports.iter().enumerate() {
                let prev = ports[(k + 1) % ports.len()];
                out.push(fdb(ts, Action::FdbMove, n, bridge, p, Some(prev), macs[k]));
            }
        }
    }
    out
}

#[test]
fn snapshot_rebuilds_an_index_that_enriches_identically() {
    let ix = history();
    assert_eq!(ix.free, vec![4], "one free slot");
    let snap = ix.snapshot();
    // What it is made of: no status (it would print a line), the time first.
    assert!(snap.iter().all(|u| u.status_event().is_none()), "{snap:#?}");
    assert_eq!(
        snap[0],
        IdentityUpdate::Synced {
            ts: T0 + 101 * S,
            source: IdentityIndex::SNAPSHOT_SOURCE.into()
        }
    );
    assert!(snap.iter().all(|u| u.ts() <= T0 + 101 * S));
    // It survives a capture (JSON) and rebuilds the same index.
    let json = serde_json::to_string(&snap).unwrap();
    let back: Vec<IdentityUpdate> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    let r = restored(&ix);
    assert_eq!(shape(&r), shape(&ix));
    let events = probe_events();
    let before = enriched(&ix, &events);
    assert_eq!(enriched(&r, &events), before);
    // The events do exercise it: names, exited-in-grace, networks, peers.
    for needle in [
        "\"name\":\"bravo\"",
        "\"name\":\"charlie\"",
        "\"name\":\"alpha\"",
        "\"name\":\"pod-app\"",
        "\"network\":\"backend\"",
        "\"network\":\"probebr\"",
        "\"name\":\"blue\"",
        "\"name\":\"lb_4zd4qm3u2\"",
        "\"kind\":\"vxlan\"",
        "\"kind\":\"uplink\"",
        "\"kind\":\"bridge\"",
        "\"kind\":\"namespace\"",
        "\"kind\":\"container\"",
    ] {
        assert!(before.contains(needle), "{needle} never enriched");
    }
    // Same sizes; source status is not restated.
    let (mut a, b) = (ix.stats(), r.stats());
    assert_eq!(a.degraded, vec!["docker".to_string()]);
    a.degraded.clear();
    assert_eq!(a, b);
    // Deterministic, and a snapshot of the rebuilt index is the same.
    assert_eq!(ix.snapshot(), snap);
    assert_eq!(r.snapshot(), snap);

    // Both go on alike. A second container of the pod, from the same
    // source batch (same time) as the first: the lower slot names the pod's
    // namespace, and the free slot it gets is the same in both.
    let (mut ix, mut r) = (ix, r);
    let more = [
        IdentityUpdate::ContainerUpsert {
            ts: T0 + 50 * S,
            container: container('q', "pod-sidecar", NS_POD, &["172.18.0.31"], Some(MAC_Q)),
        },
        IdentityUpdate::ContainerUpsert {
            ts: T0 + 120 * S,
            container: container('g', "golf", 81, &["172.18.0.40"], None),
        },
        // Past bravo's and the lb namespace's grace: pruned in both.
        IdentityUpdate::Synced {
            ts: T0 + 131 * S,
            source: "netns".into(),
        },
        IdentityUpdate::ContainerUpsert {
            ts: T0 + 132 * S,
            container: container('k', "kilo", 82, &["172.18.0.41"], None),
        },
        IdentityUpdate::ContainerRemove {
            ts: T0 + 133 * S,
            id: id('c'),
        },
    ];
    for u in &more {
        ix.apply(u);
        r.apply(u);
        assert_eq!(shape(&r), shape(&ix), "after {u:?}");
        assert_eq!(enriched(&r, &events), enriched(&ix, &events), "after {u:?}");
    }
    let mut e = event(T0 + 140 * S, Action::SkbDrop, NS_POD);
    r.enrich(&mut e);
    assert_eq!(
        name(&e.container),
        Some("pod-sidecar"),
        "it took the free slot 4, below pod-app's 6"
    );
}

#[test]
fn snapshot_of_an_empty_index_is_empty_and_kinds_map_back() {
    let ix = IdentityIndex::new(Duration::from_secs(30));
    assert!(ix.snapshot().is_empty());
    assert_eq!(shape(&restored(&ix)), shape(&ix));
    for k in [
        IfKind::Veth,
        IfKind::Vxlan,
        IfKind::Bridge,
        IfKind::Uplink,
        IfKind::Other,
    ] {
        assert_eq!(if_kind(IdentityIndex::snapshot_kind(k)), k);
    }
    // Only a status: the time, not the status.
    let mut ix = ix;
    ix.apply(&IdentityUpdate::Status {
        ts: T0,
        source: "docker".into(),
        state: SourceState::Degraded,
        reason: None,
    });
    assert_eq!(
        ix.snapshot(),
        vec![IdentityUpdate::Synced {
            ts: T0,
            source: IdentityIndex::SNAPSHOT_SOURCE.into()
        }]
    );
}

/// Random histories: at many points, the index rebuilt from a snapshot has
/// the same shape and enriches alike, and both stay alike under the updates
/// that follow.
#[test]
fn snapshot_rebuilds_the_same_index_under_random_updates() {
    let mut rng = 0x0ddb_1a5e_5f00_d5edu64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let networks = [
        ("4zd4qm3u2hy1czgdz9lcy1fwa", "backend", None),
        ("qc7yx7w7y0000000000000000", "ingress", None),
        (
            "ecc1d7b96a6c0000000000000",
            "probebr",
            Some("br-ecc1d7b96a6c"),
        ),
    ];
    let netns_names = [
        "1-4zd4qm3u2h",
        "lb_4zd4qm3u2",
        "ingress_sbox",
        "1-qc7yx7w7y0",
        "a0dba506778c",
        "blue",
    ];
    let addr = |k: u64| ip(&format!("10.9.0.{}", 1 + k));
    let mac = |k: u64| [2, 0x42, 10, 9, 0, 1 + k as u8];
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    ix.apply(&ns(HOST, &[], &[]));
    // A (container or namespace) removal at the very nanosecond of its
    // previous one is left out (see `IdentityIndex::snapshot`).
    let mut last_removal: std::collections::HashMap<(bool, u64), i128> = Default::default();
    let mut t = T0;
    let mut followers: Vec<(IdentityIndex, usize)> = Vec::new();
    let (mut checked, mut with_free) = (0, 0);
    for step in 0..1500 {
        t += (next(3) as i128) * S;
        let c = next(14);
        let inode = 200 + next(8) as u32;
        let u = match next(10) {
            0..=2 => IdentityUpdate::ContainerUpsert {
                ts: t,
                container: ContainerInfo {
                    id: format!("{c:064x}"),
                    name: Some(format!("c{c}")),
                    swarm_service: (c % 3 == 0).then(|| format!("svc{}", c % 5)),
                    netns: match next(6) {
                        0 => Some(HOST),
                        1 => None,
                        _ => Some(inode),
                    },
                    shares_netns: next(6) == 0,
                    endpoints: (0..next(3))
                        .map(|_| EndpointInfo {
                            network_id: "n".into(),
                            network: None,
                            ips: vec![addr(next(10))],
                            mac: (next(3) > 0).then(|| mac(next(10))),
                        })
                        .collect(),
                    ..Default::default()
                },
            },
            3 if last_removal.get(&(false, c)) != Some(&t) => {
                last_removal.insert((false, c), t);
                IdentityUpdate::ContainerRemove {
                    ts: t,
                    id: format!("{c:064x}"),
                }
            }
            4 => {
                let names = ["eth0", "eth1", "br0", "vxlan0", "lo", "tap0"];
                let kinds = [
                    Some("veth"),
                    None,
                    Some("bridge"),
                    Some("vxlan"),
                    Some("tun"),
                ];
                IdentityUpdate::NetnsInterfaces {
                    ts: t,
                    inode,
                    interfaces: (0..next(4))
                        .map(|_| InterfaceInfo {
                            name: names[next(6) as usize].into(),
                            kind: kinds[next(5) as usize].map(Into::into),
                            peer: (next(2) == 0).then(|| VethPeer {
                                ifindex: 9,
                                netns: (next(4) > 0).then(|| 200 + next(9) as u32),
                            }),
                            mac: (next(2) == 0).then(|| mac(next(10))),
                            addrs: (0..next(3)).map(|_| addr(next(10))).collect(),
                            ..Default::default()
                        })
                        .collect(),
                }
            }
            5 if last_removal.get(&(true, inode as u64)) != Some(&t) => {
                last_removal.insert((true, inode as u64), t);
                IdentityUpdate::NetnsRemove { ts: t, inode }
            }
            6 => IdentityUpdate::NetnsUpsert {
                ts: t,
                netns: NetnsInfo {
                    inode,
                    names: (next(4) == 0)
                        .then(|| "blue".to_string())
                        .into_iter()
                        .collect(),
                    docker_names: (0..next(3))
                        .map(|_| netns_names[next(6) as usize].to_string())
                        .collect(),
                    host: false,
                },
            },
            7 => {
                let (id, name, bridge) = networks[next(3) as usize];
                if next(4) == 0 {
                    IdentityUpdate::NetworkRemove {
                        ts: t,
                        id: id.into(),
                    }
                } else {
                    IdentityUpdate::NetworkUpsert {
                        ts: t,
                        network: NetworkInfo {
                            id: id.into(),
                            name: name.into(),
                            ingress: name == "ingress",
                            bridge: bridge.map(Into::into),
                            ..Default::default()
                        },
                    }
                }
            }
            8 => IdentityUpdate::Status {
                ts: t,
                source: "docker".into(),
                state: SourceState::Degraded,
                reason: None,
            },
            _ => IdentityUpdate::Synced {
                ts: t,
                source: "x".into(),
            },
        };
        ix.apply(&u);
        for (f, _) in &mut followers {
            f.apply(&u);
        }
        let fresh = step % 61 == 30;
        if fresh {
            with_free += usize::from(!ix.free.is_empty());
            let r = restored(&ix);
            assert_eq!(r.snapshot(), ix.snapshot(), "step {step}");
            followers.push((r, step));
        }
        // Followers are dropped after a while: keep the test fast.
        followers.retain(|(_, since)| step - since < 150);
        if followers.is_empty() {
            continue;
        }
        let want = shape(&ix);
        for (f, since) in &followers {
            assert!(
                shape(f) == want,
                "rebuilt at step {since}, differs at step {step}:\n{}\n{want}",
                shape(f)
            );
        }
        if !fresh && step % 100 != 0 {
            continue;
        }
        let mut events = Vec::new();
        for dt in [-40, 0, 1, 31] {
            let ts = t + dt * S;
            for n in [HOST, 200, 201, 202, 203, 204, 205, 206, 207, 208] {
                for k in 0..10 {
                    let mut e = event(ts, Action::ArpReply, n);
                    e.source.ip = Some(addr(k));
                    e.destination.mac = Some(Mac(mac((k + 3) % 10)));
                    events.push(e);
                }
                for (k, p) in ["eth0", "br0", "vxlan0", "tap0", "eth1"].iter().enumerate() {
                    events.push(fdb(
                        ts,
                        Action::FdbLearn,
                        n,
                        "br-ecc1d7b96a6c",
                        p,
                        None,
                        mac(k as u64),
                    ));
                }
            }
        }
        let want = enriched(&ix, &events);
        for (f, since) in &followers {
            assert!(
                enriched(f, &events) == want,
                "rebuilt at step {since}, enriches differently at step {step}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
    assert!(with_free > 5, "free slots restated {with_free} times");
}

#[test]
fn mtus_local_addresses_and_vxlan_ports_survive_a_snapshot() {
    const H: u32 = 4_026_539_001;
    const O: u32 = 4_026_539_002;
    let mut idx = IdentityIndex::new(Duration::from_secs(30));
    for u in [
        ns(H, &["hosta"], &[]),
        ns(O, &["ovl"], &[]),
        IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode: H,
            interfaces: vec![
                InterfaceInfo {
                    mtu: Some(65536),
                    ..iface(1, "lo", None)
                },
                InterfaceInfo {
                    mtu: Some(1500),
                    addrs: vec![ip("192.168.77.2")],
                    ..iface(2, "ul0", Some("veth"))
                },
                InterfaceInfo {
                    mtu: Some(1400),
                    ..iface(3, "ul1", Some("veth"))
                },
                InterfaceInfo {
                    mtu: Some(1450),
                    vxlan_port: Some(4790),
                    ..iface(4, "vx0", Some("vxlan"))
                },
            ],
        },
        IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode: O,
            // A vxlan whose port was not reported (an older capture).
            interfaces: vec![iface(5, "vxlan0", Some("vxlan"))],
        },
    ] {
        idx.apply(&u);
    }
    let check = |idx: &IdentityIndex| {
        assert_eq!(idx.mtu(H, "ul0"), Some(1500));
        assert_eq!(idx.mtu(H, "nope"), None);
        assert_eq!(idx.smallest_mtu(H), Some(("ul1".to_string(), 1400)));
        assert!(idx.is_local(H, ip("192.168.77.2")));
        assert!(!idx.is_local(H, ip("192.168.77.1")));
        assert_eq!(
            idx.vxlan_ports(),
            vec![
                (4789, vec!["ovl".to_string()]),
                (4790, vec!["hosta".to_string()])
            ]
        );
    };
    check(&idx);
    let mut again = IdentityIndex::new(Duration::from_secs(30));
    for u in idx.snapshot() {
        again.apply(&u);
    }
    check(&again);
}
