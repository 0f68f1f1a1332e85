//! `--pcapng FILE`: the packet snapshots of drop, ARP-reply and retransmit
//! records as a pcapng file for Wireshark/tshark
//! (<https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-03.html>).
//!
//! One Section Header Block, then for each (host, network namespace,
//! interface, link type) seen an Interface Description Block (`if_name`,
//! `if_description` naming the namespace and its container or network,
//! `if_tsresol` 9: nanoseconds) before its first packet, and one Enhanced
//! Packet Block per snapshot with an `opt_comment` naming the action, the
//! drop reason and location, and the containers. Packets are made in the
//! [`crate::pipeline::Pipeline`], from the enriched event (container names
//! known) and the record's snapshot; [`PcapOut`] encodes them and hands
//! the bytes to a [`Sink`] (queued live, direct in a replay).
//!
//! A snapshot that starts at the Ethernet header is `LINKTYPE_ETHERNET`; one
//! that starts at the IP header (no link-layer header in the skb) is
//! `LINKTYPE_RAW`, on an interface of its own (same name; its description
//! says so). A retransmitted segment is taken from the retransmit queue,
//! where it has no IP/TCP headers yet: they are rebuilt from the record
//! (addresses, ports, sequence and acknowledgement numbers, flags) and the
//! packet's comment says so.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use bytes::Bytes;
use tracer_ebpf::{EventHeader, SNAP_FROM_MAC, SNAP_FROM_NETWORK, SNAP_FROM_TCP_PAYLOAD};

use crate::{
    decode::Snap,
    event::{ifname, EcsEvent},
    sink::{Batch, Sink, SinkError, SinkStats},
};

/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// `LINKTYPE_RAW`: an IPv4 or IPv6 header first.
pub const LINKTYPE_RAW: u16 = 101;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;

/// Which interface a packet was seen on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    /// Several hosts' captures replayed together: the host's name.
    pub host: Option<Arc<str>>,
    pub netns: u32,
    pub ifindex: u32,
    pub linktype: u16,
}

/// One packet for the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Wall-clock time, ns since the epoch.
    pub ts_ns: i128,
    pub iface: IfaceKey,
    pub if_name: String,
    /// What the interface's namespace is (used for its first packet).
    pub if_description: String,
    pub data: Vec<u8>,
    /// The packet's length on the wire (>= `data.len()`).
    pub orig_len: u32,
    pub comment: String,
}

impl Packet {
    /// The packet of an enriched event and its record's snapshot; None
    /// when the snapshot holds nothing usable.
    pub fn new(ev: &EcsEvent, hdr: &EventHeader, snap: &Snap<'_>) -> Option<Packet> {
        let mut comment = describe(ev);
        let (linktype, data, orig_len) = match snap.hdr.from {
            SNAP_FROM_MAC => (
                LINKTYPE_ETHERNET,
                snap.bytes.to_vec(),
                snap.hdr.len.max(snap.bytes.len() as u32),
            ),
            SNAP_FROM_NETWORK => (
                LINKTYPE_RAW,
                snap.bytes.to_vec(),
                snap.hdr.len.max(snap.bytes.len() as u32),
            ),
            SNAP_FROM_TCP_PAYLOAD => {
                let (src, dst) = (ev.source.ip?, ev.destination.ip?);
                let (sport, dport) = (ev.source.port?, ev.destination.port?);
                let mut data = tcp_headers(src, dst, sport, dport, snap)?;
                let headers = data.len() as u32;
                data.extend_from_slice(snap.bytes);
                comment.push_str(&format!(
                    "; IP and TCP headers rebuilt from the socket (the segment was in the retransmit queue: \
                     seq, ack and flags are the segment's; window and checksums are not); \
                     {} of {} payload bytes captured",
                    snap.bytes.len(),
                    snap.hdr.len
                ));
                (
                    LINKTYPE_RAW,
                    data,
                    headers.saturating_add(snap.hdr.len.max(snap.bytes.len() as u32)),
                )
            }
            _ => return None,
        };
        let name = ifname(&hdr.ifname);
        let mut if_description = namespace(ev, hdr.netns);
        let if_name = if !name.is_empty() {
            name.to_string()
        } else if hdr.ifindex != 0 {
            format!("if{}", hdr.ifindex)
        } else if hdr.kind == tracer_ebpf::kind::TCP_RETRANSMIT {
            // A retransmit is the socket's: no device yet.
            if_description.push_str("; segments its TCP sockets retransmitted (no interface yet)");
            "tcp-sockets".to_string()
        } else {
            if_description.push_str("; packets without a device");
            "no-device".to_string()
        };
        if linktype == LINKTYPE_RAW {
            if_description.push_str("; IP packets without their link-layer header");
        }
        Some(Packet {
            ts_ns: ev.timestamp,
            iface: IfaceKey {
                host: None,
                netns: hdr.netns,
                ifindex: hdr.ifindex,
                linktype,
            },
            if_name,
            if_description,
            data,
            orig_len,
            comment,
        })
    }
}

/// `netns 4026532291 (name), network backend, container web-1`.
fn namespace(ev: &EcsEvent, inode: u32) -> String {
    let mut s = if inode == 0 {
        "netns unknown".to_string()
    } else {
        format!("netns {inode}")
    };
    if let Some(ns) = &ev.tracer.netns {
        if let Some(n) = &ns.name {
            s.push_str(&format!(" ({n})"));
        }
        if let Some(n) = &ns.network {
            s.push_str(&format!(", network {n}"));
        }
    }
    if let Some(c) = &ev.container {
        s.push_str(&format!(", container {}", c.display_name()));
    }
    s
}

/// The packet's comment: action, drop reason and location, namespace,
/// containers.
fn describe(ev: &EcsEvent) -> String {
    let mut s = ev.event.action.as_str().to_string();
    if let Some(r) = &ev.tracer.reason {
        s.push_str(&format!(" {r}"));
    }
    if let Some(l) = &ev.tracer.location {
        s.push_str(&format!(" at {l}"));
    }
    if let Some(i) = &ev.tracer.interface {
        s.push_str(&format!(" on {}", i.name));
    }
    if let Some(ns) = ev.netns() {
        s.push_str(&format!(" in netns {ns}"));
    }
    if let Some(c) = &ev.container {
        s.push_str(&format!(" (container {})", c.display_name()));
    }
    let end = |e: &crate::event::Endpoint| e.container.as_ref().map(|c| c.display_name());
    match (end(&ev.source), end(&ev.destination)) {
        (Some(a), Some(b)) => s.push_str(&format!("; from {a} to {b}")),
        (Some(a), None) => s.push_str(&format!("; from {a}")),
        (None, Some(b)) => s.push_str(&format!("; to {b}")),
        (None, None) => {}
    }
    s
}

/// IPv4 (20 bytes, DF, TTL 64, header checksum) or IPv6 (40 bytes, hop
/// limit 64) and a 20-byte TCP header for a retransmitted segment.
fn tcp_headers(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    snap: &Snap<'_>,
) -> Option<Vec<u8>> {
    const TCP_LEN: usize = 20;
    let payload = snap.hdr.len as usize;
    let mut v = Vec::with_capacity(60 + snap.bytes.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + TCP_LEN + payload).min(u16::MAX as usize) as u16;
            v.extend_from_slice(&[0x45, 0]);
            v.extend_from_slice(&total.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            v.extend_from_slice(&s.octets());
            v.extend_from_slice(&d.octets());
            let sum = checksum(&v);
            v[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let plen = (TCP_LEN + payload).min(u16::MAX as usize) as u16;
            v.extend_from_slice(&[0x60, 0, 0, 0]);
            v.extend_from_slice(&plen.to_be_bytes());
            v.extend_from_slice(&[6, 64]);
            v.extend_from_slice(&s.octets());
            v.extend_from_slice(&d.octets());
        }
        _ => return None,
    }
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&snap.hdr.seq.to_be_bytes());
    v.extend_from_slice(&snap.hdr.ack.to_be_bytes());
    v.push((TCP_LEN as u8 / 4) << 4);
    v.push(snap.hdr.tcp_flags);
    // Window, checksum, urgent pointer: not known.
    v.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    Some(v)
}

/// The Internet checksum (RFC 1071) of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Appends a block: type, total length, `body`, padding to 4, total length.
fn block(out: &mut Vec<u8>, kind: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    body(out);
    pad4(out);
    let total = (out.len() - start + 4) as u32;
    out.extend_from_slice(&total.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Appends an option (code, length, value padded to 4). Values longer
/// than an option can say are cut (comments, names: never that long).
fn opt(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = &value[..value.len().min(u16::MAX as usize - 3)];
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    pad4(out);
}

fn end_of_options(out: &mut Vec<u8>) {
    out.extend_from_slice(&OPT_END.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
}

/// Turns packets into pcapng blocks: the section header first, an
/// interface description before the first packet of each interface.
#[derive(Debug, Default)]
pub struct Encoder {
    ifaces: HashMap<IfaceKey, u32>,
    /// Interfaces (and the section header) known to be in the file: what a
    /// dropped batch rolls back to.
    committed: usize,
    header_done: bool,
    header_committed: bool,
}

impl Encoder {
    /// Appends what `p` needs: the section header and its interface's
    /// description when not written yet, then the packet.
    pub fn packet(&mut self, p: &Packet, out: &mut Vec<u8>) {
        if !self.header_done {
            section_header(out);
            self.header_done = true;
        }
        let id = match self.ifaces.get(&p.iface) {
            Some(&id) => id,
            None => {
                let id = self.ifaces.len() as u32;
                interface(out, p);
                self.ifaces.insert(p.iface.clone(), id);
                id
            }
        };
        block(out, EPB, |b| {
            let ts = p.ts_ns.clamp(0, u64::MAX as i128) as u64;
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            b.extend_from_slice(&(ts as u32).to_le_bytes());
            b.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
            b.extend_from_slice(&p.orig_len.max(p.data.len() as u32).to_le_bytes());
            b.extend_from_slice(&p.data);
            pad4(b);
            opt(b, OPT_COMMENT, p.comment.as_bytes());
            end_of_options(b);
        });
    }

    /// What was encoded so far reached the file.
    pub fn commit(&mut self) {
        self.committed = self.ifaces.len();
        self.header_committed = self.header_done;
    }

    /// What was encoded since the last [`Self::commit`] was dropped (a full
    /// queue): interfaces described in it are described again before
    /// their next packet, with the same ids (ids are the order of
    /// descriptions in the file).
    pub fn rollback(&mut self) {
        let keep = self.committed as u32;
        self.ifaces.retain(|_, id| *id < keep);
        self.header_done = self.header_committed;
    }

    /// Interfaces described so far.
    pub fn interfaces(&self) -> usize {
        self.ifaces.len()
    }
}

fn section_header(out: &mut Vec<u8>) {
    block(out, SHB, |b| {
        b.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        // Section length: not known.
        b.extend_from_slice(&(-1i64).to_le_bytes());
        let app = concat!("tracer ", env!("CARGO_PKG_VERSION"));
        opt(b, SHB_USERAPPL, app.as_bytes());
        end_of_options(b);
    });
}

fn interface(out: &mut Vec<u8>, p: &Packet) {
    block(out, IDB, |b| {
        b.extend_from_slice(&p.iface.linktype.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        // Snapshot length: no limit (rebuilt headers come on top of the bytes captured).
        b.extend_from_slice(&0u32.to_le_bytes());
        opt(b, IF_NAME, p.if_name.as_bytes());
        let desc = match &p.iface.host {
            Some(h) => format!("host {h}, {}", p.if_description),
            None => p.if_description.clone(),
        };
        opt(b, IF_DESCRIPTION, desc.as_bytes());
        opt(b, IF_TSRESOL, &[9]);
        end_of_options(b);
    });
}

/// Bytes of blocks gathered before they go to the sink.
const PCAPNG_BATCH: usize = 1 << 16;

/// The pcapng output: an [`Encoder`] in front of a [`Sink`]. A batch the
/// sink drops (a full queue, live) is counted there like lines of any
/// output, and the interfaces it described are described again.
pub struct PcapOut {
    enc: Encoder,
    buf: Vec<u8>,
    pending: u64,
    sink: Box<dyn Sink>,
}

impl PcapOut {
    pub fn new(sink: Box<dyn Sink>) -> Self {
        Self {
            enc: Encoder::default(),
            buf: Vec::with_capacity(PCAPNG_BATCH + 4096),
            pending: 0,
            sink,
        }
    }

    /// The sink (its name, its drops).
    pub fn sink(&self) -> &dyn Sink {
        self.sink.as_ref()
    }

    pub fn sink_mut(&mut self) -> &mut dyn Sink {
        self.sink.as_mut()
    }

    /// Encodes one packet; hands a batch on once enough is gathered.
    pub fn write(&mut self, p: &Packet) -> Result<(), SinkError> {
        self.enc.packet(p, &mut self.buf);
        self.pending += 1;
        if self.buf.len() >= PCAPNG_BATCH {
            return self.hand_off();
        }
        Ok(())
    }

    fn hand_off(&mut self) -> Result<(), SinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            bytes: Bytes::copy_from_slice(&self.buf),
            lines: self.pending,
        };
        self.buf.clear();
        self.pending = 0;
        let before = self.sink.dropped();
        let res = self.sink.push(batch);
        if self.sink.dropped() > before {
            self.enc.rollback();
        } else {
            self.enc.commit();
        }
        res
    }

    /// Hands on what is gathered and asks the sink to write it.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.hand_off()?;
        self.sink.flush()
    }

    /// Writes everything and says what happened (packets delivered, dropped).
    pub fn finish(mut self) -> SinkStats {
        // An empty run still makes a valid (empty) pcapng file.
        if !self.enc.header_done {
            section_header(&mut self.buf);
            self.enc.header_done = true;
        }
        let res = self.hand_off();
        let mut stats = self.sink.finish();
        if stats.error.is_none() {
            stats.error = res.err();
        }
        stats
    }
}

/// Opens `path` for a pcapng file: a new file (`O_CREAT | O_EXCL |
/// O_NOFOLLOW`, mode 0600: it holds packet bytes); an existing file or a
/// symbolic link at `path` is refused and left as it was.
pub fn create(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

#[cfg(test)]
mod tests;
