use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
};

use tracer_ebpf::{kind, EventHeader, Snapshot};

use super::*;
use crate::{
    event::{Action, ContainerData, ContainerRef, EcsEvent, Interface, Kind, Netns},
    sink::Sink,
};

/// A block as read back: type and body (between the two lengths).
#[derive(Debug)]
struct Block {
    kind: u32,
    body: Vec<u8>,
}

/// Splits a pcapng byte stream into blocks, checking that each block's
/// two length fields agree, are multiples of 4 and cover the stream.
fn blocks(mut b: &[u8]) -> Vec<Block> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let kind = u32::from_le_bytes(b[0..4].try_into().unwrap());
        let len = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
        assert_eq!(len % 4, 0, "block length {len} not padded");
        assert!(len >= 12 && len <= b.len(), "block length {len}");
        let trailer = u32::from_le_bytes(b[len - 4..len].try_into().unwrap()) as usize;
        assert_eq!(trailer, len, "trailing length differs");
        out.push(Block {
            kind,
            body: b[8..len - 4].to_vec(),
        });
        b = &b[len..];
    }
    out
}

/// Options from `b` (code, value), checking padding and the end marker.
fn options(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let code = u16::from_le_bytes([b[0], b[1]]);
        let len = u16::from_le_bytes([b[2], b[3]]) as usize;
        if code == OPT_END {
            assert_eq!(len, 0);
            assert_eq!(b.len(), 4, "bytes after opt_endofopt");
            return out;
        }
        let padded = len.div_ceil(4) * 4;
        assert!(
            b[4 + len..4 + padded].iter().all(|&x| x == 0),
            "padding not zero"
        );
        out.push((code, b[4..4 + len].to_vec()));
        b = &b[4 + padded..];
    }
}

fn opt_str(opts: &[(u16, Vec<u8>)], code: u16) -> String {
    let v = opts
        .iter()
        .find(|(c, _)| *c == code)
        .unwrap_or_else(|| panic!("option {code} missing"));
    String::from_utf8(v.1.clone()).unwrap()
}

fn packet(netns: u32, ifindex: u32, linktype: u16, data: &[u8], comment: &str) -> Packet {
    Packet {
        ts_ns: 1_796_000_000_123_456_789,
        iface: IfaceKey {
            host: None,
            netns,
            ifindex,
            linktype,
        },
        if_name: format!("veth{ifindex}"),
        if_description: format!("netns {netns}"),
        data: data.to_vec(),
        orig_len: data.len() as u32 + 100,
        comment: comment.into(),
    }
}

#[test]
fn blocks_are_padded_and_interfaces_described_once_per_key() {
    let mut e = Encoder::default();
    let mut out = Vec::new();
    // 5 bytes of data (3 of padding), a 3-byte comment (1 of padding).
    e.packet(&packet(7, 2, LINKTYPE_ETHERNET, b"abcde", "c:1"), &mut out);
    e.packet(&packet(7, 2, LINKTYPE_ETHERNET, b"xy", "second"), &mut out);
    e.packet(&packet(7, 2, LINKTYPE_RAW, b"\x45", "raw"), &mut out);
    e.packet(
        &packet(8, 2, LINKTYPE_ETHERNET, b"12345678", "other ns"),
        &mut out,
    );
    let b = blocks(&out);
    let kinds: Vec<u32> = b.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [SHB, IDB, EPB, EPB, IDB, EPB, IDB, EPB]);
    assert_eq!(e.interfaces(), 3);

    // Section header: byte-order magic, version 1.0, unknown length.
    let shb = &b[0].body;
    assert_eq!(&shb[0..4], &BYTE_ORDER_MAGIC.to_le_bytes());
    assert_eq!(&shb[4..8], &[1, 0, 0, 0]);
    assert_eq!(&shb[8..16], &[0xff; 8]);
    assert!(opt_str(&options(&shb[16..]), SHB_USERAPPL).starts_with("tracer "));

    // Interface: link type, snaplen 0, name, description, ns resolution.
    let idb = &b[1].body;
    assert_eq!(u16::from_le_bytes([idb[0], idb[1]]), LINKTYPE_ETHERNET);
    assert_eq!(&idb[4..8], &[0; 4]);
    let o = options(&idb[8..]);
    assert_eq!(opt_str(&o, IF_NAME), "veth2");
    assert_eq!(opt_str(&o, IF_DESCRIPTION), "netns 7");
    assert_eq!(o.iter().find(|(c, _)| *c == IF_TSRESOL).unwrap().1, [9]);
    assert_eq!(
        u16::from_le_bytes([b[4].body[0], b[4].body[1]]),
        LINKTYPE_RAW
    );

    // Packets: interface id, ns timestamp, lengths, data, comment.
    let epb = |i: usize| {
        let p = &b[i].body;
        let id = u32::from_le_bytes(p[0..4].try_into().unwrap());
        let ts = ((u32::from_le_bytes(p[4..8].try_into().unwrap()) as u64) << 32)
            | u32::from_le_bytes(p[8..12].try_into().unwrap()) as u64;
        let cap = u32::from_le_bytes(p[12..16].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(p[16..20].try_into().unwrap());
        let data = p[20..20 + cap].to_vec();
        let o = options(&p[20 + cap.div_ceil(4) * 4..]);
        (id, ts, orig, data, opt_str(&o, OPT_COMMENT))
    };
    assert_eq!(
        epb(2),
        (
            0,
            1_796_000_000_123_456_789,
            105,
            b"abcde".to_vec(),
            "c:1".into()
        )
    );
    assert_eq!(epb(3).0, 0, "same interface, no second description");
    assert_eq!((epb(5).0, epb(5).4.as_str()), (1, "raw"));
    assert_eq!((epb(7).0, epb(7).3.len()), (2, 8));
}

#[test]
fn checksum_and_rebuilt_tcp_headers() {
    // RFC 1071's example.
    assert_eq!(
        checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        !0xddf2
    );
    let snap = Snap {
        hdr: Snapshot {
            caplen: 3,
            from: tracer_ebpf::SNAP_FROM_TCP_PAYLOAD,
            tcp_flags: 0x18,
            len: 1000,
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0d,
        },
        bytes: b"abc",
    };
    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let h = tcp_headers(src, dst, 40000, 8080, &snap).unwrap();
    assert_eq!(h.len(), 40);
    assert_eq!(h[0], 0x45);
    assert_eq!(u16::from_be_bytes([h[2], h[3]]), 1040, "total length");
    assert_eq!(h[9], 6);
    assert_eq!(checksum(&h[..20]), 0, "a valid header sums to 0");
    assert_eq!(u16::from_be_bytes([h[20], h[21]]), 40000);
    assert_eq!(u16::from_be_bytes([h[22], h[23]]), 8080);
    assert_eq!(&h[24..28], &[1, 2, 3, 4]);
    assert_eq!(&h[28..32], &[0x0a, 0x0b, 0x0c, 0x0d]);
    assert_eq!((h[32], h[33]), (0x50, 0x18));
    let v6 = IpAddr::V6("fd00::1".parse().unwrap());
    assert!(
        tcp_headers(src, v6, 1, 2, &snap).is_none(),
        "mixed families"
    );
    assert_eq!(tcp_headers(v6, v6, 1, 2, &snap).unwrap().len(), 60);
}

fn event(action: Action) -> EcsEvent {
    let mut ev = EcsEvent::new(5_000_000_000, Kind::Event, action);
    ev.tracer.netns = Some(Netns {
        inode: 4026532291,
        name: Some("ns-web".into()),
        network: None,
        host: false,
    });
    ev.tracer.interface = Some(Interface {
        name: "eth0".into(),
        index: 9,
        kind: None,
    });
    ev.container = Some(ContainerRef::new(ContainerData {
        id: "0123456789abcdef".into(),
        name: Some("web-1".into()),
        ..Default::default()
    }));
    ev
}

fn header(k: u32, ifname: &[u8]) -> EventHeader {
    let mut h = EventHeader {
        ts_ns: 5,
        kind: k,
        netns: 4026532291,
        ifindex: 9,
        cpu: 0,
        ifname: [0; 16],
    };
    h.ifname[..ifname.len()].copy_from_slice(ifname);
    h
}

#[test]
fn a_drop_packet_names_reason_location_namespace_and_container() {
    let mut ev = event(Action::SkbDrop);
    ev.tracer.reason = Some("NO_SOCKET".into());
    ev.tracer.location = Some("__udp4_lib_rcv+0x4bc".into());
    ev.destination.container = ev.container.clone();
    let snap = Snap {
        hdr: Snapshot {
            caplen: 4,
            from: tracer_ebpf::SNAP_FROM_MAC,
            len: 60,
            ..Default::default()
        },
        bytes: &[1, 2, 3, 4],
    };
    let p = Packet::new(&ev, &header(kind::SKB_DROP, b"eth0"), &snap).unwrap();
    assert_eq!(p.iface.linktype, LINKTYPE_ETHERNET);
    assert_eq!((p.data.len(), p.orig_len), (4, 60));
    assert_eq!(p.if_name, "eth0");
    assert_eq!(
        p.if_description,
        "netns 4026532291 (ns-web), container web-1"
    );
    assert_eq!(
        p.comment,
        "skb_drop NO_SOCKET at __udp4_lib_rcv+0x4bc on eth0 in netns 4026532291 (container web-1); to web-1"
    );
    // From the network header: raw IP, said in the interface's description.
    let raw = Snap {
        hdr: Snapshot {
            from: tracer_ebpf::SNAP_FROM_NETWORK,
            ..snap.hdr
        },
        ..snap
    };
    let p = Packet::new(&ev, &header(kind::SKB_DROP, b"eth0"), &raw).unwrap();
    assert_eq!(p.iface.linktype, LINKTYPE_RAW);
    assert!(p
        .if_description
        .ends_with("without their link-layer header"));
}

#[test]
fn a_retransmit_gets_rebuilt_headers_and_says_so() {
    let mut ev = event(Action::TcpRetransmit);
    ev.tracer.interface = None;
    ev.source.ip = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    ev.destination.ip = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    ev.source.port = Some(40000);
    ev.destination.port = Some(8080);
    let snap = Snap {
        hdr: Snapshot {
            caplen: 0,
            from: tracer_ebpf::SNAP_FROM_TCP_PAYLOAD,
            tcp_flags: 0x18,
            len: 13,
            seq: 7,
            ack: 9,
        },
        bytes: &[],
    };
    let mut h = header(kind::TCP_RETRANSMIT, b"");
    h.ifindex = 0;
    let p = Packet::new(&ev, &h, &snap).unwrap();
    assert_eq!((p.data.len(), p.orig_len), (40, 53));
    assert_eq!(p.if_name, "tcp-sockets");
    assert!(p.comment.contains("headers rebuilt"), "{}", p.comment);
    assert!(p.comment.contains("0 of 13 payload bytes"), "{}", p.comment);
    // Without its tuple, no packet (never a made-up one).
    ev.source.port = None;
    assert!(Packet::new(&ev, &h, &snap).is_none());
}

/// Keeps what it is given; drops every batch while `full` is set.
struct Flaky {
    kept: Arc<Mutex<Vec<u8>>>,
    full: Arc<Mutex<bool>>,
    dropped: u64,
}

impl Sink for Flaky {
    fn name(&self) -> &str {
        "pcapng"
    }
    fn push(&mut self, batch: Batch) -> Result<(), SinkError> {
        if *self.full.lock().unwrap() {
            self.dropped += batch.lines;
        } else {
            self.kept.lock().unwrap().extend_from_slice(&batch.bytes);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn dropped(&self) -> u64 {
        self.dropped
    }
    fn finish(self: Box<Self>) -> SinkStats {
        SinkStats {
            name: "pcapng".into(),
            delivered: 0,
            dropped: self.dropped,
            error: None,
        }
    }
}

#[test]
fn a_dropped_batch_describes_its_interfaces_again() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let full = Arc::new(Mutex::new(true));
    let mut out = PcapOut::new(Box::new(Flaky {
        kept: kept.clone(),
        full: full.clone(),
        dropped: 0,
    }));
    // The first batch (section header, interface 0, a packet) is lost.
    out.write(&packet(1, 1, LINKTYPE_ETHERNET, b"lost", "lost"))
        .unwrap();
    out.flush().unwrap();
    *full.lock().unwrap() = false;
    out.write(&packet(1, 1, LINKTYPE_ETHERNET, b"kept", "kept"))
        .unwrap();
    out.write(&packet(2, 1, LINKTYPE_ETHERNET, b"kept", "kept"))
        .unwrap();
    let stats = out.finish();
    assert_eq!(stats.dropped, 1);
    let b = blocks(&kept.lock().unwrap());
    let kinds: Vec<u32> = b.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [SHB, IDB, EPB, IDB, EPB]);
    // Ids follow the descriptions in the file: 0, then 1.
    assert_eq!(&b[2].body[0..4], &[0; 4]);
    assert_eq!(&b[4].body[0..4], &[1, 0, 0, 0]);
}

#[test]
fn an_empty_run_still_writes_a_section_header() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let out = PcapOut::new(Box::new(Flaky {
        kept: kept.clone(),
        full: Arc::new(Mutex::new(false)),
        dropped: 0,
    }));
    out.finish();
    let b = blocks(&kept.lock().unwrap());
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].kind, SHB);
}
