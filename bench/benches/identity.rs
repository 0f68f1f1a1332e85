//! The identity index at its performance target: enrichment with 10,000
//! containers and 100,000 IP/MAC addresses (ns per event, index memory),
//! and a snapshot of 10,000 containers (what every rotated capture part
//! starts with) and the rebuild from it.
//!
//! `cargo bench -p tracer-bench --bench identity` (moved here from
//! `#[ignore]` unit tests of tracer/src/identity/index/tests.rs).
//! `IDENTITY_BENCH=enrich|snapshot` runs only that one.

use std::{net::IpAddr, time::Duration};

use tracer::{
    event::{Action, EcsEvent, Kind, Mac, Netns},
    identity::{
        ContainerInfo, EndpointInfo, IdentityIndex, IdentityUpdate, InterfaceInfo, NetnsInfo,
    },
};

const S: i128 = 1_000_000_000;
const T0: i128 = 1_700_000_000 * S;
const HOST: u32 = 1;
const NS_OV: u32 = 30;
const OV_ID: &str = "4zd4qm3u2hy1czgdz9lcy1fwa";

fn ns(inode: u32, names: &[&str], docker: &[&str]) -> IdentityUpdate {
    IdentityUpdate::NetnsUpsert {
        ts: T0,
        netns: NetnsInfo::named(inode, names, docker, inode == HOST),
    }
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

/// A fresh index fed `ix`'s snapshot (what a rotated part replays).
fn restored(ix: &IdentityIndex, grace: Duration) -> IdentityIndex {
    let mut r = IdentityIndex::new(grace);
    for u in ix.snapshot() {
        r.apply(&u);
    }
    r
}

fn main() {
    let only = std::env::var("IDENTITY_BENCH").unwrap_or_default();
    if only.is_empty() || only == "enrich" {
        bench_enrich_10k_containers_100k_addresses();
    }
    if only.is_empty() || only == "snapshot" {
        bench_snapshot_10k_containers();
    }
}

/// Synthetic index at the performance target: 10,000 containers and
/// 100,000 IP/MAC addresses. Prints ns/event and approximate memory.
fn bench_enrich_10k_containers_100k_addresses() {
    const CONTAINERS: u32 = 10_000;
    const ADDRESSES: u32 = 100_000;
    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
    /// CPU time of this thread (ns): robust against other load on the machine.
    fn cpu_ns() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
    }
    let mac_of = |i: u32| {
        [
            2,
            0x42,
            (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ]
    };
    let ip_of = |i: u32| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    let per = ADDRESSES / CONTAINERS / 2; // IPs and MACs per container
    let rss0 = rss_kib();
    let t_build = std::time::Instant::now();
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    ix.apply(&ns(HOST, &[], &[]));
    let mut host_ifaces = vec![InterfaceInfo::named(5, "br0", Some("bridge"))];
    for c in 0..CONTAINERS {
        let inode = 100_000 + c;
        ix.apply(&ns(inode, &[], &[&format!("{:012x}", c)]));
        let mut ifaces = Vec::new();
        let mut eps = Vec::new();
        for k in 0..per {
            let a = c * per + k;
            ifaces.push(InterfaceInfo {
                mac: Some(mac_of(a)),
                addrs: vec![ip_of(a)],
                ..InterfaceInfo::veth(2 + k, &format!("eth{k}"), 1000 + a, HOST)
            });
            eps.push(EndpointInfo {
                network_id: format!("net{k}"),
                network: Some(format!("network-{k}")),
                ips: vec![ip_of(a)],
                mac: Some(mac_of(a)),
            });
            host_ifaces.push(InterfaceInfo::veth(
                1000 + a,
                &format!("veth{a:x}"),
                2 + k,
                inode,
            ));
        }
        ix.apply(&IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode,
            interfaces: ifaces,
        });
        ix.apply(&IdentityUpdate::ContainerUpsert {
            ts: T0,
            container: ContainerInfo {
                id: format!("{:064x}", c),
                name: Some(format!("service-{c}.1.abcdefghijklmnopqrstuvwxy")),
                image: Some("registry.example/team/app:1.2.3".into()),
                runtime: Some("docker".into()),
                swarm_service: Some(format!("service-{c}")),
                swarm_task: Some(format!("service-{c}.1.abcdefghijklmnopqrstuvwxy")),
                netns: Some(inode),
                endpoints: eps,
                ..Default::default()
            },
        });
    }
    ix.apply(&IdentityUpdate::NetnsInterfaces {
        ts: T0,
        inode: HOST,
        interfaces: host_ifaces,
    });
    let build = t_build.elapsed();
    let rss1 = rss_kib();
    let stats = ix.stats();
    assert_eq!(stats.containers, CONTAINERS as usize);
    assert!(
        stats.addresses + stats.macs >= ADDRESSES as usize,
        "{stats:?}"
    );

    // A mix of event kinds, all resolving (the expensive case).
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut events = Vec::new();
    for i in 0..20_000u32 {
        let a = (next() % (CONTAINERS * per) as u64) as u32;
        let b = (next() % (CONTAINERS * per) as u64) as u32;
        let c = a / per;
        let e = match i % 4 {
            0 => {
                let mut e = fdb(
                    T0 + S,
                    Action::FdbLearn,
                    HOST,
                    "br0",
                    &format!("veth{a:x}"),
                    None,
                    mac_of(a),
                );
                e.tracer.previous_port = Some(format!("veth{b:x}").into());
                e
            }
            1 => {
                let mut e = event(T0 + S, Action::ArpReply, 100_000 + c);
                e.source.ip = Some(ip_of(b));
                e.source.mac = Some(Mac(mac_of(b)));
                e.destination.ip = Some(ip_of(a));
                e.destination.mac = Some(Mac(mac_of(a)));
                e
            }
            2 => {
                let mut e = event(T0 + S, Action::TcpRetransmit, 100_000 + c);
                e.source.ip = Some(ip_of(a));
                e.destination.ip = Some(ip_of(b));
                e
            }
            _ => {
                let mut e = event(T0 + S, Action::SkbDrop, 100_000 + c);
                e.source.ip = Some(ip_of(b));
                e.destination.ip = Some(ip_of(a));
                e
            }
        };
        events.push(e);
    }
    // Warm up, then measure enrich alone (clone cost measured separately).
    for e in events.iter().take(2000) {
        let mut e = e.clone();
        ix.enrich(&mut e);
    }
    let rounds = 5;
    let t_clone = cpu_ns();
    for _ in 0..rounds {
        for e in &events {
            std::hint::black_box(e.clone());
        }
    }
    let clone_ns = cpu_ns() - t_clone;
    let t = cpu_ns();
    let mut named = 0usize;
    for _ in 0..rounds {
        for e in &events {
            let mut e = e.clone();
            ix.enrich(&mut e);
            named += e.container.is_some() as usize + e.tracer.port_peer.is_some() as usize;
            std::hint::black_box(&e);
        }
    }
    let total = cpu_ns() - t;
    let t_resolve = cpu_ns();
    let mut resolved = 0usize;
    for _ in 0..rounds {
        for e in &events {
            resolved += ix.resolve_count(std::hint::black_box(e));
        }
    }
    let resolve_ns = cpu_ns() - t_resolve;
    std::hint::black_box(resolved);
    let n = (rounds * events.len()) as f64;
    let per_event = ((total - clone_ns) / n).max(0.0);
    assert!(
        named as f64 >= n * 0.99,
        "look-ups must resolve ({named} of {n})"
    );
    // ns_per_event: enrich as called (look-ups plus the strings it adds);
    // lookup_ns_per_event: the look-ups alone (what enrich costs once
    // ContainerRef clones are cheap).
    println!(
        "identity_bench containers={} addresses={} macs={} netns={} build_ms={} ns_per_event={:.0} lookup_ns_per_event={:.0} index_rss_mib={:.1}",
        stats.containers,
        stats.addresses,
        stats.macs,
        stats.netns,
        build.as_millis(),
        per_event,
        resolve_ns / n,
        rss1.saturating_sub(rss0) as f64 / 1024.0
    );
    drop(ix);
}

/// Cost of a snapshot at 10,000 containers, each in its own namespace
/// behind a veth of one overlay namespace, and of rebuilding from it.
fn bench_snapshot_10k_containers() {
    const CONTAINERS: u32 = 10_000;
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    ix.apply(&ns(HOST, &[], &[]));
    ix.apply(&ns(NS_OV, &[], &["1-4zd4qm3u2h"]));
    let mut overlay = vec![
        InterfaceInfo::named(2, "br0", Some("bridge")),
        InterfaceInfo::named(3, "vxlan0", Some("vxlan")),
    ];
    for c in 0..CONTAINERS {
        let inode = 100_000 + c;
        let a = IpAddr::from([10, 1, (c >> 8) as u8, c as u8]);
        let m = [2, 0x42, 10, 1, (c >> 8) as u8, c as u8];
        ix.apply(&ns(inode, &[], &[&format!("{c:012x}")]));
        ix.apply(&IdentityUpdate::NetnsInterfaces {
            ts: T0,
            inode,
            interfaces: vec![
                InterfaceInfo::named(1, "lo", None),
                InterfaceInfo {
                    mac: Some(m),
                    addrs: vec![a],
                    ..InterfaceInfo::veth(2, "eth0", 100 + c, NS_OV)
                },
            ],
        });
        overlay.push(InterfaceInfo::veth(
            100 + c,
            &format!("veth{c:x}"),
            2,
            inode,
        ));
        ix.apply(&IdentityUpdate::ContainerUpsert {
            ts: T0,
            container: ContainerInfo {
                id: format!("{c:064x}"),
                name: Some(format!(
                    "service-{}.{}.abcdefghijklmnopqrstuvwxy",
                    c % 50,
                    c / 50
                )),
                image: Some("registry.example/team/app:1.2.3".into()),
                runtime: Some("docker".into()),
                swarm_service: Some(format!("service-{}", c % 50)),
                swarm_task: Some(format!(
                    "service-{}.{}.abcdefghijklmnopqrstuvwxy",
                    c % 50,
                    c / 50
                )),
                netns: Some(inode),
                endpoints: vec![EndpointInfo {
                    network_id: OV_ID.into(),
                    network: Some("backend".into()),
                    ips: vec![a],
                    mac: Some(m),
                }],
                ..Default::default()
            },
        });
    }
    ix.apply(&IdentityUpdate::NetnsInterfaces {
        ts: T0,
        inode: NS_OV,
        interfaces: overlay,
    });
    let t = std::time::Instant::now();
    let snap = ix.snapshot();
    let took = t.elapsed();
    let t = std::time::Instant::now();
    let bytes: usize = snap
        .iter()
        .map(|u| {
            serde_json::to_vec(&tracer::pipeline::Input::Identity(u.clone()))
                .unwrap()
                .len()
        })
        .sum();
    let ser = t.elapsed();
    let t = std::time::Instant::now();
    let r = restored(&ix, Duration::from_secs(30));
    let rebuild = t.elapsed();
    assert_eq!(r.stats(), ix.stats());
    eprintln!(
        "snapshot of {CONTAINERS} containers: {} updates in {took:?}; {bytes} bytes of JSON in {ser:?}; rebuilt in {rebuild:?}",
        snap.len()
    );
}
