//! A synthetic capture for the pipeline benchmark (`tracer synth-capture`):
//! a swarm-like host with N containers on one overlay network, then a
//! deterministic mix of every kernel record kind between them, with the
//! identity updates that let enrichment name them. Replaying it exercises
//! decode + enrich + detect + serialise like a real capture does.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use tracer_ebpf::{
    kind, ArpEvent, DropEvent, EventHeader, FdbEvent, NeighEvent, Snapshot, TcpEvent,
    SNAP_FROM_MAC, SNAP_FROM_TCP_PAYLOAD,
};

use crate::{
    capture::{
        CaptureError, CaptureReader, CaptureStats, CaptureWriter, Header, Record, RecordRef,
    },
    decode::{Locations, Tables},
    detect::DetectConfig,
    event::EcsEvent,
    identity::{
        ContainerInfo, EndpointInfo, IdentityUpdate, InterfaceInfo, NetnsInfo, NetworkInfo,
        VethPeer,
    },
    kernel::btf::DropReasons,
    pipeline::{Filter, Input, Pipeline},
};

const OVERLAY_NS: u32 = 4_026_530_000;
const NS_BASE: u32 = 4_026_540_000;
const LOCATION: u64 = 0xffff_ffff_8123_4567;
const BOOT_TO_WALL: i128 = 1_795_000_000_000_000_000;

fn bytes_of<T: aya::Pod>(v: &T) -> Vec<u8> {
    tracer_ebpf::pod_bytes(v).to_vec()
}

fn name16(s: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = s.len().min(15);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

/// Host number `c + 1` spread over the last three octets of 10.1.0.0/8:
/// `10.1.0.c+1` for the first 255 containers (the addresses of every
/// capture made so far), then on without overflow (`10.1.1.0` …).
fn host_octets(c: u32) -> [u8; 3] {
    let h = c.wrapping_add(1);
    [1u8.wrapping_add((h >> 16) as u8), (h >> 8) as u8, h as u8]
}

fn ip_of(c: u32) -> [u8; 4] {
    let [a, b, d] = host_octets(c);
    [10, a, b, d]
}

fn mac_of(c: u32) -> [u8; 6] {
    let [a, b, d] = host_octets(c);
    [0x02, 0x42, 10, a, b, d]
}

/// `host.name` of a synthetic capture's lines (a fixed name: the same
/// capture replays the same everywhere).
pub const SYNTH_HOST: &str = "synth-host";

fn hdr(ts: u64, k: u32, netns: u32, ifindex: u32, ifname: &str) -> EventHeader {
    EventHeader {
        ts_ns: ts,
        kind: k,
        netns,
        ifindex,
        cpu: 0,
        ifname: name16(ifname),
    }
}

/// Identity of the synthetic host: an overlay namespace with a bridge, a
/// vxlan and one veth per container; each container's namespace.
fn identity(containers: u32, ts: i128) -> Vec<IdentityUpdate> {
    let mut out = vec![
        IdentityUpdate::NetworkUpsert {
            ts,
            network: NetworkInfo {
                id: "synthbackend0123456789".into(),
                name: "backend".into(),
                driver: Some("overlay".into()),
                ..Default::default()
            },
        },
        IdentityUpdate::NetnsUpsert {
            ts,
            netns: NetnsInfo {
                inode: OVERLAY_NS,
                docker_names: vec!["1-synthbacke".into()],
                ..Default::default()
            },
        },
    ];
    let mut overlay = vec![
        InterfaceInfo {
            index: 2,
            name: "br0".into(),
            kind: Some("bridge".into()),
            ..Default::default()
        },
        InterfaceInfo {
            index: 3,
            name: "vxlan0".into(),
            kind: Some("vxlan".into()),
            master: Some(2),
            ..Default::default()
        },
    ];
    for c in 0..containers {
        let ns = NS_BASE + c;
        let ip = IpAddr::V4(Ipv4Addr::from(ip_of(c)));
        overlay.push(InterfaceInfo {
            index: 100 + c,
            name: format!("veth{c:x}"),
            kind: Some("veth".into()),
            master: Some(2),
            peer: Some(VethPeer {
                ifindex: 2,
                netns: Some(ns),
            }),
            ..Default::default()
        });
        out.push(IdentityUpdate::NetnsUpsert {
            ts,
            netns: NetnsInfo {
                inode: ns,
                docker_names: vec![format!("{:012x}", 0xabc000 + c)],
                ..Default::default()
            },
        });
        out.push(IdentityUpdate::NetnsInterfaces {
            ts,
            inode: ns,
            interfaces: vec![InterfaceInfo {
                index: 2,
                name: "eth0".into(),
                mac: Some(mac_of(c)),
                kind: Some("veth".into()),
                peer: Some(VethPeer {
                    ifindex: 100 + c,
                    netns: Some(OVERLAY_NS),
                }),
                addrs: vec![ip],
                ..Default::default()
            }],
        });
        out.push(IdentityUpdate::ContainerUpsert {
            ts,
            container: ContainerInfo {
                id: format!("{:064x}", 0x5eed_0000_u64 + c as u64),
                name: Some(format!("svc{}.{}", c % 50, c / 50 + 1)),
                image: Some("registry.example/app:1.2.3".into()),
                runtime: Some("docker".into()),
                swarm_service: Some(format!("svc{}", c % 50)),
                swarm_task: Some(format!("svc{}.{}.synth{c:x}", c % 50, c / 50 + 1)),
                netns: Some(ns),
                endpoints: vec![EndpointInfo {
                    network_id: "synthbackend0123456789".into(),
                    network: Some("backend".into()),
                    ips: vec![ip],
                    mac: Some(mac_of(c)),
                }],
                ..Default::default()
            },
        });
    }
    out.push(IdentityUpdate::NetnsInterfaces {
        ts,
        inode: OVERLAY_NS,
        interfaces: overlay,
    });
    out
}

/// xorshift: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % n.max(1) as u64) as u32
    }
}

/// Per-run state of the mix.
struct Mix {
    rng: Rng,
    containers: u32,
    /// Peers each container talks to (long-lived connections); 0: a random
    /// peer for every record (flow churn: every pair of containers).
    peers: u32,
    no_socket: u32,
    /// Sequence numbers for ARP pairs (a pair repeats only every
    /// containers² replies, as in a real cache) and FDB flaps.
    arp_seq: u64,
    fdb_seq: u64,
    /// Packet snapshot bytes after drop, ARP-reply and retransmit records
    /// (as `tracer run --snaplen`); 0: none (the records of older captures).
    snaplen: u32,
}

/// Appends a snapshot of `packet` (cut to `snaplen`) to `rec`.
fn snap(rec: &mut Vec<u8>, snaplen: u32, from: u8, packet: &[u8], len: u32, hdr: Snapshot) {
    let n = packet.len().min(snaplen as usize);
    let s = Snapshot {
        caplen: n as u16,
        from,
        len,
        ..hdr
    };
    rec.extend_from_slice(tracer_ebpf::pod_bytes(&s));
    rec.extend_from_slice(&packet[..n]);
}

/// An Ethernet frame from `a` to `b` carrying `ethertype` and `payload`.
fn ether(a: u32, b: u32, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&mac_of(b));
    f.extend_from_slice(&mac_of(a));
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram `a:sport` → `b:dport` in IPv4 (header checksum 0).
fn udp4(a: u32, b: u32, sport: u16, dport: u16) -> Vec<u8> {
    let data = b"synthetic-drop!!";
    let total = (20 + 8 + data.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&ip_of(a));
    p.extend_from_slice(&ip_of(b));
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(data);
    p
}

impl Mix {
    /// One kernel record of the mix at time `ts` (boot ns).
    fn record(&mut self, ts: u64) -> Vec<u8> {
        let containers = self.containers;
        let r = &mut self.rng;
        let a = r.below(containers);
        let b = if self.peers == 0 {
            (a + 1 + r.below(containers - 1)) % containers
        } else {
            // The k-th peer of a: a fixed stride keeps pairs stable.
            (a + 1 + (r.below(self.peers) * 37) % (containers - 1)) % containers
        };
        let (ns_a, ns_b) = (NS_BASE + a, NS_BASE + b);
        match r.below(10) {
            // Drops: UDP to closed ports between containers (rate limited).
            0..=3 => {
                let mut d = DropEvent {
                    hdr: hdr(ts, kind::SKB_DROP, ns_b, 2, "eth0"),
                    location: LOCATION,
                    reason: self.no_socket,
                    sport: 30000 + (a as u16 % 1000),
                    dport: 9000 + (r.below(4) as u16),
                    eth_proto: 0x0800,
                    l4proto: 17,
                    ip_version: 4,
                    ..Default::default()
                };
                d.saddr[..4].copy_from_slice(&ip_of(a));
                d.daddr[..4].copy_from_slice(&ip_of(b));
                let mut rec = bytes_of(&d);
                if self.snaplen > 0 {
                    let f = ether(a, b, 0x0800, &udp4(a, b, d.sport, d.dport));
                    let len = f.len() as u32;
                    snap(
                        &mut rec,
                        self.snaplen,
                        SNAP_FROM_MAC,
                        &f,
                        len,
                        Snapshot::default(),
                    );
                }
                rec
            }
            // Retransmits: one flow per container pair; flows from every
            // 7th container make no progress.
            4..=6 => {
                let mut t = TcpEvent {
                    hdr: hdr(ts, kind::TCP_RETRANSMIT, ns_a, 2, "eth0"),
                    sport: 40000 + (b as u16 % 2000),
                    dport: 8080,
                    family: 2,
                    state: 1,
                    retransmits: 1,
                    snd_una: if a.is_multiple_of(7) {
                        1000
                    } else {
                        r.next() as u32
                    },
                    has_sk: 1,
                    ..Default::default()
                };
                t.saddr[..4].copy_from_slice(&ip_of(a));
                t.daddr[..4].copy_from_slice(&ip_of(b));
                let mut rec = bytes_of(&t);
                if self.snaplen > 0 {
                    // Payload in page fragments, as a real segment's: none captured.
                    let seg = Snapshot {
                        tcp_flags: 0x18,
                        seq: t.snd_una,
                        ack: 1,
                        ..Default::default()
                    };
                    snap(&mut rec, self.snaplen, SNAP_FROM_TCP_PAYLOAD, &[], 100, seg);
                }
                rec
            }
            // ARP replies seen in the requester's namespace: with long-lived
            // peers, a container resolves the peers it talks to (as its
            // neighbour cache entries expire); with flow churn, the pairs
            // sweep every container pair (a pair repeats only every
            // containers² replies: distinct keys flooding the ARP tables).
            7 => {
                let (a, b) = if self.peers > 0 {
                    (a, b)
                } else {
                    let n = self.arp_seq;
                    self.arp_seq += 1;
                    let c = containers as u64;
                    let a = (n % c) as u32;
                    (a, ((a as u64 + 1 + (n / c) % (c - 1)) % c) as u32)
                };
                let mut rec = bytes_of(&ArpEvent {
                    hdr: hdr(ts, kind::ARP_REPLY, NS_BASE + a, 2, "eth0"),
                    oper: 2,
                    hw_type: 1,
                    sender_mac: mac_of(b),
                    target_mac: mac_of(a),
                    sender_ip: ip_of(b),
                    target_ip: ip_of(a),
                });
                if self.snaplen > 0 {
                    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
                    arp.extend_from_slice(&mac_of(b));
                    arp.extend_from_slice(&ip_of(b));
                    arp.extend_from_slice(&mac_of(a));
                    arp.extend_from_slice(&ip_of(a));
                    let f = ether(b, a, 0x0806, &arp);
                    let len = f.len() as u32;
                    snap(
                        &mut rec,
                        self.snaplen,
                        SNAP_FROM_MAC,
                        &f,
                        len,
                        Snapshot::default(),
                    );
                }
                rec
            }
            // FDB moves on the overlay bridge: the MACs of a few containers
            // flip between their veth and the vxlan (the outage).
            8 => {
                let n = self.fdb_seq;
                self.fdb_seq += 1;
                let a = ((n / 2) % (containers as u64 / 11).max(1)) as u32 * 11;
                let (idx, name) = if n.is_multiple_of(2) {
                    (3, "vxlan0".to_string())
                } else {
                    (100 + a, format!("veth{a:x}"))
                };
                bytes_of(&FdbEvent {
                    hdr: hdr(ts, kind::FDB_UPDATE, OVERLAY_NS, idx, &name),
                    br_name: name16("br0"),
                    br_ifindex: 2,
                    mac: mac_of(a),
                    ..Default::default()
                })
            }
            // Neighbour updates (REACHABLE -> STALE).
            _ => {
                let mut n = NeighEvent {
                    hdr: hdr(ts, kind::NEIGH_UPDATE, ns_a, 2, "eth0"),
                    family: 2,
                    old_state: 0x02,
                    new_state: 0x04,
                    lladdr_len: 6,
                    ..Default::default()
                };
                n.key[..4].copy_from_slice(&ip_of(b));
                n.old_lladdr[..6].copy_from_slice(&mac_of(b));
                bytes_of(&n)
            }
        }
    }
}

/// The lines a replay of the capture at `path` makes (every record through
/// one pipeline, unfiltered; `detect`: with these detectors), as events:
/// what the benchmarks and tests of the stages after decoding start from.
pub fn replay_events(
    path: &Path,
    detect: Option<DetectConfig>,
) -> Result<Vec<EcsEvent>, CaptureError> {
    let mut reader = CaptureReader::open(path)?;
    let mut p = Pipeline::new(
        Tables {
            drop_reasons: reader.drop_reasons().clone(),
            locations: Locations::default(),
            boot_to_wall_ns: reader.header().boot_to_wall_ns,
            reason_cache: Default::default(),
        },
        Filter::default(),
        detect,
    );
    let mut events = Vec::new();
    while let Some(rec) = reader.next_ref()? {
        match rec {
            RecordRef::Kernel(b) => p.process_kernel(b, &mut events),
            RecordRef::Other(Record::Symbols(v)) => p.add_symbols(v),
            RecordRef::Other(Record::Input(i)) => p.process(&i, &mut events),
            RecordRef::Other(_) => {}
        }
    }
    Ok(events)
}

/// [`replay_events`] of a synthetic capture of `records` records (see
/// [`write`]; drop reasons `NOT_SPECIFIED` = 2 and `NO_SOCKET` = 3), written
/// to a temporary file that is removed afterwards.
pub fn events(
    records: u64,
    containers: u32,
    peers: u32,
    detect: Option<DetectConfig>,
) -> Result<Vec<EcsEvent>, CaptureError> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("tracer-synth-{}-{n}.capture", std::process::id()));
    let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")]);
    let events = write(&path, records, containers, peers, &reasons)
        .and_then(|_| replay_events(&path, detect));
    let _ = std::fs::remove_file(&path);
    events
}

/// Writes a capture of `events` kernel records (1 µs of kernel time apart)
/// between `containers` containers, without packet snapshots.
pub fn write(
    path: &Path,
    events: u64,
    containers: u32,
    peers: u32,
    drop_reasons: &DropReasons,
) -> Result<CaptureStats, CaptureError> {
    write_with(path, events, containers, peers, drop_reasons, 0)
}

/// [`write`], drop, ARP-reply and retransmit records carrying packet
/// snapshots of up to `snaplen` bytes (`synth-capture --snaplen`).
pub fn write_with(
    path: &Path,
    events: u64,
    containers: u32,
    peers: u32,
    drop_reasons: &DropReasons,
    snaplen: u32,
) -> Result<CaptureStats, CaptureError> {
    let containers = containers.max(2);
    let no_socket = drop_reasons.value("NO_SOCKET").unwrap_or(3);
    let header = Header::this_host(
        vec!["tracer".into(), "synth-capture".into()],
        BOOT_TO_WALL,
        Some(SYNTH_HOST.to_string()),
    );
    let mut w = CaptureWriter::create(path, header, drop_reasons, None)?;
    w.write_symbols(&[(LOCATION, "__udp4_lib_rcv+0x9a4".to_string())])?;
    let t0: u64 = 1_000_000_000_000;
    for u in identity(containers, t0 as i128 + BOOT_TO_WALL) {
        w.write_input(&Input::Identity(u))?;
    }
    let mut mix = Mix {
        rng: Rng(0x2545_f491_4f6c_dd1d),
        containers,
        peers,
        no_socket,
        arp_seq: 0,
        fdb_seq: 0,
        snaplen,
    };
    let mut next_tick = t0 + 1_000_000_000;
    for i in 0..events {
        let ts = t0 + i * 1_000;
        if ts >= next_tick {
            w.write_input(&Input::Tick { boot_ns: ts })?;
            next_tick += 1_000_000_000;
        }
        w.write_input(&Input::Kernel(mix.record(ts)))?;
    }
    w.write_input(&Input::Loss {
        boot_ns: t0 + events * 1_000,
        lost: Vec::new(),
        filtered: Vec::new(),
        lost_total: 0,
        sinks: Vec::new(),
        held_back: Vec::new(),
        drops_held_back: Vec::new(),
    })?;
    w.write_input(&Input::Finish {
        boot_ns: t0 + events * 1_000,
    })?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{replay, ReplayOptions};

    #[test]
    fn synthetic_capture_replays_with_names_alerts_and_summaries() {
        let dir = crate::testutil::TempDir::new("synth");
        let path = dir.file("synth.capture");
        let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")]);
        let stats = write(&path, 20_000, 100, 4, &reasons).unwrap();
        assert!(stats.kernel_records == 20_000, "{stats:?}");
        let mut out = Vec::new();
        let s = replay(
            &ReplayOptions {
                path: path.clone(),
                speed: 0.0,
                filter: Default::default(),
                detect: Some(Default::default()),
                text: None,
                pcapng: None,
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(s.lines > 10_000, "{}", s.lines);
        assert!(text.contains("\"name\":\"svc"), "containers are named");
        assert!(
            text.contains("\"action\":\"fdb_flap\""),
            "flapping MACs alert"
        );
        assert!(text.contains("\"action\":\"retransmit_burst\""));
        assert!(text.contains("\"action\":\"drop_summary\""));
    }

    #[test]
    fn addresses_stay_distinct_past_255_containers() {
        assert_eq!(
            ip_of(0),
            [10, 1, 0, 1],
            "the first 255 keep their addresses"
        );
        assert_eq!(ip_of(254), [10, 1, 0, 255]);
        assert_eq!(ip_of(255), [10, 1, 1, 0]);
        let ips: std::collections::HashSet<_> = (0..70_000).map(ip_of).collect();
        assert_eq!(ips.len(), 70_000);
        let macs: std::collections::HashSet<_> = (0..70_000).map(mac_of).collect();
        assert_eq!(macs.len(), 70_000);
        let dir = crate::testutil::TempDir::new("synth300");
        let path = dir.file("synth.capture");
        let reasons = DropReasons::from_pairs([(3u32, "NO_SOCKET")]);
        let stats = write(&path, 2_000, 300, 4, &reasons).unwrap();
        assert_eq!(stats.kernel_records, 2_000);
    }
}
