//! Ring-buffer records → typed kernel records → [`EcsEvent`]s.
//!
//! Parsing never trusts the input: short, unknown or oversized records are
//! errors, not panics (captures replayed from disk go through here too).

use std::{
    collections::HashMap,
    mem::{size_of, MaybeUninit},
    net::IpAddr,
};

use thiserror::Error;
use tracer_ebpf::{
    kind, ArpEvent, DropEvent, EventHeader, FdbEvent, IcmpEvent, NeighEvent, Snapshot,
    TcpAbortEvent, TcpEvent, IFNAMSIZ, SNAP_FROM_MAC, SNAP_FROM_NETWORK, SNAP_FROM_TCP_PAYLOAD,
};

use crate::{
    event::{
        ifname, ip_from_wire, transport_name, Action, EcsEvent, Endpoint, Icmp, Interface, Kind,
        Mac, Neigh, Netns, Network, SmolStr, Tcp,
    },
    kernel::btf::DropReasons,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte {what}")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

/// One kernel record, copied out of the ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    FdbUpdate(FdbEvent),
    FdbDelete(FdbEvent),
    ArpReply(ArpEvent),
    Neigh(NeighEvent),
    Tcp(TcpEvent),
    Drop(DropEvent),
    TcpAbort(TcpAbortEvent),
    Icmp(IcmpEvent),
}

impl Record {
    pub fn header(&self) -> &EventHeader {
        match self {
            Record::FdbUpdate(e) | Record::FdbDelete(e) => &e.hdr,
            Record::ArpReply(e) => &e.hdr,
            Record::Neigh(e) => &e.hdr,
            Record::Tcp(e) => &e.hdr,
            Record::Drop(e) => &e.hdr,
            Record::TcpAbort(e) => &e.hdr,
            Record::Icmp(e) => &e.hdr,
        }
    }
}

/// Copies a `T` out of the front of `bytes` after checking the length.
fn read_pod<T: aya::Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            what,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked above; T is a Pod (#[repr(C)], fixed-width
    // integers and byte arrays only) so every bit pattern is a valid T;
    // read_unaligned copes with any alignment of the ring-buffer slice.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// A [`TcpEvent`]; a record of an earlier layout (older captures: before
/// `ack_age_ms`/`rto_ms`, [`tracer_ebpf::TCP_EVENT_V1_SIZE`] bytes, or before
/// the segment fields, [`tracer_ebpf::TCP_EVENT_V2_SIZE`]) reads with the
/// fields it lacks as 0 (unknown).
fn read_tcp(bytes: &[u8]) -> Result<TcpEvent, DecodeError> {
    if bytes.len() >= size_of::<TcpEvent>() {
        return read_pod(bytes, "tcp event");
    }
    let v1 = tracer_ebpf::TCP_EVENT_V1_SIZE;
    let n = if bytes.len() >= tracer_ebpf::TCP_EVENT_V2_SIZE {
        tracer_ebpf::TCP_EVENT_V2_SIZE
    } else {
        v1
    };
    let Some(prefix) = bytes.get(..n) else {
        return Err(DecodeError::Short {
            what: "tcp event",
            len: bytes.len(),
            need: v1,
        });
    };
    let mut full = [0u8; size_of::<TcpEvent>()];
    full[..n].copy_from_slice(prefix);
    read_pod(&full, "tcp event")
}

/// What a kernel record is: `EventHeader::kind` as an enum. Still a `u32` on
/// the wire (the [`tracer_ebpf::kind`] consts); matches on it are exhaustive,
/// without a `_ =>` arm, so a new kind is handled everywhere or fails to compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    FdbUpdate,
    FdbDelete,
    ArpReply,
    NeighUpdate,
    TcpRetransmit,
    TcpSendReset,
    TcpReceiveReset,
    SkbDrop,
    TcpAbort,
    IcmpSend,
}

/// A `u32` that is not one of [`tracer_ebpf::kind`].
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("unknown record kind {0}")]
pub struct UnknownKind(pub u32);

impl RecordKind {
    /// Every kind, in wire-value order.
    pub const ALL: [RecordKind; 10] = [
        RecordKind::FdbUpdate,
        RecordKind::FdbDelete,
        RecordKind::ArpReply,
        RecordKind::NeighUpdate,
        RecordKind::TcpRetransmit,
        RecordKind::TcpSendReset,
        RecordKind::TcpReceiveReset,
        RecordKind::SkbDrop,
        RecordKind::TcpAbort,
        RecordKind::IcmpSend,
    ];

    /// The wire value (`EventHeader::kind`).
    pub const fn wire(self) -> u32 {
        match self {
            RecordKind::FdbUpdate => kind::FDB_UPDATE,
            RecordKind::FdbDelete => kind::FDB_DELETE,
            RecordKind::ArpReply => kind::ARP_REPLY,
            RecordKind::NeighUpdate => kind::NEIGH_UPDATE,
            RecordKind::TcpRetransmit => kind::TCP_RETRANSMIT,
            RecordKind::TcpSendReset => kind::TCP_SEND_RESET,
            RecordKind::TcpReceiveReset => kind::TCP_RECEIVE_RESET,
            RecordKind::SkbDrop => kind::SKB_DROP,
            RecordKind::TcpAbort => kind::TCP_ABORT,
            RecordKind::IcmpSend => kind::ICMP_SEND,
        }
    }

    /// Name of the probe (program) that emits it (loss reports, status lines).
    pub const fn probe_name(self) -> &'static str {
        match self {
            RecordKind::FdbUpdate => "br_fdb_update",
            RecordKind::FdbDelete => "fdb_delete",
            RecordKind::ArpReply => "netif_receive_skb",
            RecordKind::NeighUpdate => "neigh_update",
            RecordKind::TcpRetransmit => "tcp_retransmit_skb",
            RecordKind::TcpSendReset => "tcp_send_reset",
            RecordKind::TcpReceiveReset => "tcp_receive_reset",
            RecordKind::SkbDrop => "kfree_skb",
            RecordKind::TcpAbort => "inet_sock_set_state",
            RecordKind::IcmpSend => "icmp_send",
        }
    }
}

// Every wire kind has a RecordKind (the round trip is tested below).
const _: () = assert!(RecordKind::ALL.len() == kind::ALL.len());

impl TryFrom<u32> for RecordKind {
    type Error = UnknownKind;

    fn try_from(k: u32) -> Result<Self, UnknownKind> {
        Ok(match k {
            kind::FDB_UPDATE => RecordKind::FdbUpdate,
            kind::FDB_DELETE => RecordKind::FdbDelete,
            kind::ARP_REPLY => RecordKind::ArpReply,
            kind::NEIGH_UPDATE => RecordKind::NeighUpdate,
            kind::TCP_RETRANSMIT => RecordKind::TcpRetransmit,
            kind::TCP_SEND_RESET => RecordKind::TcpSendReset,
            kind::TCP_RECEIVE_RESET => RecordKind::TcpReceiveReset,
            kind::SKB_DROP => RecordKind::SkbDrop,
            kind::TCP_ABORT => RecordKind::TcpAbort,
            kind::ICMP_SEND => RecordKind::IcmpSend,
            k => return Err(UnknownKind(k)),
        })
    }
}

/// The record kind of a TCP record (its header says which of the three).
pub fn tcp_kind(e: &TcpEvent) -> Option<RecordKind> {
    RecordKind::try_from(e.hdr.kind).ok()
}

/// Parses one ring-buffer record.
pub fn parse(bytes: &[u8]) -> Result<Record, DecodeError> {
    let hdr: EventHeader = read_pod(bytes, "event header")?;
    let k = RecordKind::try_from(hdr.kind).map_err(|UnknownKind(k)| DecodeError::UnknownKind(k))?;
    Ok(match k {
        RecordKind::FdbUpdate => Record::FdbUpdate(read_pod(bytes, "fdb event")?),
        RecordKind::FdbDelete => Record::FdbDelete(read_pod(bytes, "fdb event")?),
        RecordKind::ArpReply => Record::ArpReply(read_pod(bytes, "arp event")?),
        RecordKind::NeighUpdate => Record::Neigh(read_pod(bytes, "neigh event")?),
        RecordKind::TcpRetransmit | RecordKind::TcpSendReset | RecordKind::TcpReceiveReset => {
            Record::Tcp(read_tcp(bytes)?)
        }
        RecordKind::SkbDrop => Record::Drop(read_pod(bytes, "drop event")?),
        RecordKind::TcpAbort => Record::TcpAbort(read_pod(bytes, "socket error event")?),
        RecordKind::IcmpSend => Record::Icmp(read_pod(bytes, "icmp event")?),
    })
}

/// A packet snapshot carried after a record (`--snaplen`; see
/// [`tracer_ebpf::Snapshot`]): its header and the bytes captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snap<'a> {
    pub hdr: Snapshot,
    pub bytes: &'a [u8],
}

/// The snapshot after a drop, ARP-reply or retransmit record, when it
/// carries one. Records without (older captures, `--snaplen 0`) and
/// snapshots that claim more bytes than the record holds give None: the
/// record itself decodes the same either way ([`parse`] reads the struct
/// at the front).
pub fn snapshot(bytes: &[u8]) -> Option<Snap<'_>> {
    let hdr: EventHeader = read_pod(bytes, "event header").ok()?;
    let base = match RecordKind::try_from(hdr.kind).ok()? {
        RecordKind::ArpReply => size_of::<ArpEvent>(),
        RecordKind::SkbDrop => size_of::<DropEvent>(),
        RecordKind::TcpRetransmit => size_of::<TcpEvent>(),
        RecordKind::FdbUpdate
        | RecordKind::FdbDelete
        | RecordKind::NeighUpdate
        | RecordKind::TcpSendReset
        | RecordKind::TcpReceiveReset
        | RecordKind::TcpAbort
        | RecordKind::IcmpSend => return None,
    };
    let rest = bytes.get(base..)?;
    let sh: Snapshot = read_pod(rest, "snapshot").ok()?;
    let data = rest.get(size_of::<Snapshot>()..size_of::<Snapshot>() + sh.caplen as usize)?;
    let usable = match sh.from {
        SNAP_FROM_MAC | SNAP_FROM_NETWORK => sh.caplen > 0,
        // The headers are rebuilt: a segment without linear payload still is one.
        SNAP_FROM_TCP_PAYLOAD => hdr.kind == kind::TCP_RETRANSMIT,
        _ => false,
    };
    usable.then_some(Snap {
        hdr: sh,
        bytes: data,
    })
}

/// Kernel timestamp (`EventHeader::ts_ns`, boot clock) of a raw record,
/// `None` when it is too short to have one.
pub fn record_ts(bytes: &[u8]) -> Option<u64> {
    const AT: usize = std::mem::offset_of!(EventHeader, ts_ns);
    bytes
        .get(AT..AT + size_of::<u64>())
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Network-namespace inode (`EventHeader::netns`) of a raw record, `None`
/// when it is too short to have one.
pub fn record_netns(bytes: &[u8]) -> Option<u32> {
    const AT: usize = std::mem::offset_of!(EventHeader, netns);
    bytes
        .get(AT..AT + size_of::<u32>())
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

/// Name of a probe by wire record kind (loss reports): `unknown` for a value
/// that is not a kind (the loss counters have a slot 0).
pub fn kind_name(k: u32) -> &'static str {
    match RecordKind::try_from(k) {
        Ok(k) => k.probe_name(),
        Err(UnknownKind(_)) => "unknown",
    }
}

/// Most addresses [`Locations`] caches. A kernel has a few hundred drop
/// sites; a hostile capture can name any number of addresses, each
/// resolved fresh once the cache is full (the same text, uncached).
pub const MAX_LOCATIONS: usize = 1 << 16;

/// Longest symbol text kept from a capture's symbol table (bytes): kernel
/// symbols are far shorter; a longer one is cut at a character boundary.
pub const MAX_SYMBOL_LEN: usize = 256;

/// Kernel code addresses to `symbol+0xoff`, cached: the live run resolves
/// from /proc/kallsyms, a replay from the table recorded in the capture.
/// At most [`MAX_LOCATIONS`] entries, whatever the capture holds.
#[derive(Default)]
pub struct Locations {
    cache: HashMap<u64, SmolStr, foldhash::fast::RandomState>,
    source: Option<crate::kernel::kallsyms::Symbols>,
    /// Addresses resolved since the last [`Locations::take_new`] (for captures).
    new: Vec<(u64, String)>,
}

fn cap_symbol(s: &str) -> &str {
    if s.len() <= MAX_SYMBOL_LEN {
        return s;
    }
    let mut end = MAX_SYMBOL_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Locations {
    pub fn live(symbols: crate::kernel::kallsyms::Symbols) -> Self {
        Self {
            source: Some(symbols),
            ..Self::default()
        }
    }

    /// A table of already-resolved addresses (replay).
    pub fn from_table(entries: impl IntoIterator<Item = (u64, String)>) -> Self {
        let mut l = Self::default();
        l.extend(entries);
        l
    }

    pub fn format(&mut self, addr: u64) -> SmolStr {
        if let Some(s) = self.cache.get(&addr) {
            return s.clone();
        }
        let s = match &self.source {
            Some(sym) => sym.format(addr),
            None => format!("{addr:#x}"),
        };
        let shared = SmolStr::new(&s);
        // Full: not cached. Live, it is still recorded each time it is
        // resolved, so a replay prints the same name.
        if self.cache.len() < MAX_LOCATIONS {
            self.cache.insert(addr, shared.clone());
            self.new.push((addr, s));
        } else if self.source.is_some() && self.new.len() < MAX_LOCATIONS {
            self.new.push((addr, s));
        }
        shared
    }

    /// Adds recorded resolutions (replay), up to [`MAX_LOCATIONS`] in all.
    pub fn extend(&mut self, entries: impl IntoIterator<Item = (u64, String)>) {
        for (a, s) in entries {
            if self.cache.len() >= MAX_LOCATIONS && !self.cache.contains_key(&a) {
                continue;
            }
            self.cache.insert(a, SmolStr::new(cap_symbol(&s)));
        }
    }

    /// Cached addresses.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Resolutions made since the last call, to be recorded with the capture.
    pub fn take_new(&mut self) -> Vec<(u64, String)> {
        std::mem::take(&mut self.new)
    }
}

/// Largest clock offset [`Tables::wall`] applies (ns, either sign).
pub const MAX_BOOT_TO_WALL: i128 = 1 << 96;

/// What decoding needs beyond the record: names and the clock offset.
pub struct Tables {
    pub drop_reasons: DropReasons,
    pub locations: Locations,
    /// Wall clock minus boot clock, ns.
    pub boot_to_wall_ns: i128,
    /// Drop-reason names already looked up (shared, not re-allocated per drop).
    pub reason_cache: HashMap<u32, SmolStr, foldhash::fast::RandomState>,
}

impl Tables {
    /// Name of a raw drop reason (cached).
    pub fn reason_name(&mut self, raw: u32) -> SmolStr {
        if let Some(n) = self.reason_cache.get(&raw) {
            return n.clone();
        }
        let n = SmolStr::new(self.drop_reasons.name(raw));
        // Bounded: garbage reasons in a corrupt capture could be many.
        if self.reason_cache.len() < 4096 {
            self.reason_cache.insert(raw, n.clone());
        }
        n
    }

    pub fn wall(&self, boot_ns: u64) -> i128 {
        // A capture's header can claim any offset: held to ±2^96 ns (far
        // beyond any clock), event times and the detectors' arithmetic on
        // them (windows, intervals) never overflow.
        boot_ns as i128
            + self
                .boot_to_wall_ns
                .clamp(-MAX_BOOT_TO_WALL, MAX_BOOT_TO_WALL)
    }
}

fn netns_iface(e: &mut EcsEvent, h: &EventHeader) {
    if h.netns != 0 {
        e.tracer.netns = Some(Netns {
            inode: h.netns,
            ..Netns::default()
        });
    }
    if h.ifindex != 0 || h.ifname[0] != 0 {
        e.tracer.interface = Some(Interface {
            name: ifname(&h.ifname),
            index: h.ifindex,
            kind: None,
        });
    }
    e.tracer.cpu = Some(h.cpu);
}

/// Bridge port name from an FDB record (empty: entry without a port, e.g. the
/// bridge's own address).
pub fn port_name(e: &FdbEvent) -> SmolStr {
    ifname(&e.hdr.ifname[..IFNAMSIZ])
}

// The record decoders write their event into a slot they are handed (the
// pipeline's output vector) rather than return it: an event is ~800 bytes,
// and returning it cost a copy of those per record.

/// An FDB record as an event, written into `slot`. `previous_port` (from
/// [`crate::fdb`]) turns an update into a move.
pub fn fdb_event_in<'a>(
    t: &Tables,
    e: &FdbEvent,
    delete: bool,
    previous_port: Option<SmolStr>,
    slot: &'a mut MaybeUninit<EcsEvent>,
) -> &'a mut EcsEvent {
    let action = match (delete, &previous_port) {
        (true, _) => Action::FdbDelete,
        (false, Some(_)) => Action::FdbMove,
        (false, None) => Action::FdbLearn,
    };
    let ev = slot.write(EcsEvent::new(t.wall(e.hdr.ts_ns), Kind::Event, action));
    netns_iface(ev, &e.hdr);
    ev.source.mac = Some(Mac(e.mac));
    ev.tracer.bridge = Some(ifname(&e.br_name));
    // Entries of the bridge itself (local addresses) have no port.
    let port = port_name(e);
    ev.tracer.port = (!port.is_empty()).then_some(port);
    ev.tracer.previous_port = previous_port;
    ev.tracer.vlan = Some(e.vid);
    ev
}

pub fn arp_event_in<'a>(
    t: &Tables,
    e: &ArpEvent,
    slot: &'a mut MaybeUninit<EcsEvent>,
) -> &'a mut EcsEvent {
    let ev = slot.write(EcsEvent::new(
        t.wall(e.hdr.ts_ns),
        Kind::Event,
        Action::ArpReply,
    ));
    netns_iface(ev, &e.hdr);
    ev.source = Endpoint {
        ip: Some(IpAddr::from(e.sender_ip)),
        port: None,
        mac: Some(Mac(e.sender_mac)),
        container: None,
    };
    ev.destination = Endpoint {
        ip: Some(IpAddr::from(e.target_ip)),
        port: None,
        mac: Some(Mac(e.target_mac)),
        container: None,
    };
    ev.network.type_ = Some("arp");
    ev
}

/// `NUD_*` states (uapi/linux/neighbour.h, a stable user-space ABI).
pub fn nud_state_name(s: u8) -> SmolStr {
    const NAMES: [(u8, &str); 8] = [
        (0x01, "INCOMPLETE"),
        (0x02, "REACHABLE"),
        (0x04, "STALE"),
        (0x08, "DELAY"),
        (0x10, "PROBE"),
        (0x20, "FAILED"),
        (0x40, "NOARP"),
        (0x80, "PERMANENT"),
    ];
    if s == 0 {
        return SmolStr::new_static("NONE");
    }
    // One state (nearly always): no allocation.
    if let Some((_, n)) = NAMES.iter().find(|(bit, _)| *bit == s) {
        return SmolStr::new_static(n);
    }
    let parts: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| s & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    SmolStr::new(parts.join("|"))
}

pub fn neigh_event_in<'a>(
    t: &Tables,
    e: &NeighEvent,
    slot: &'a mut MaybeUninit<EcsEvent>,
) -> &'a mut EcsEvent {
    const AF_INET6: u16 = 10;
    let ev = slot.write(EcsEvent::new(
        t.wall(e.hdr.ts_ns),
        Kind::Event,
        Action::NeighUpdate,
    ));
    netns_iface(ev, &e.hdr);
    let v6 = e.family == AF_INET6;
    let ip = ip_from_wire(&e.key, v6);
    let mac_of = |b: &[u8; 8]| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        Mac(m)
    };
    let old = mac_of(&e.old_lladdr);
    let new = if e.has_new_lladdr != 0 {
        mac_of(&e.new_lladdr)
    } else {
        old
    };
    ev.destination = Endpoint {
        ip: Some(ip),
        port: None,
        mac: (!new.is_zero()).then_some(new),
        container: None,
    };
    ev.network.type_ = Some(if v6 { "ipv6" } else { "ipv4" });
    ev.tracer.neigh = Some(Neigh {
        family: if v6 { "ipv6" } else { "ipv4" },
        old_state: nud_state_name(e.old_state),
        new_state: nud_state_name(e.new_state),
        old_mac: (!old.is_zero()).then_some(old),
        flags: e.update_flags,
    });
    ev
}

/// `TCP_*` socket states (include/net/tcp_states.h, exposed to user space
/// through /proc/net/tcp and sock_diag, so stable).
pub fn tcp_state_name(s: u8) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        13 => "BOUND_INACTIVE",
        _ => "UNKNOWN",
    }
}

pub fn tcp_event_in<'a>(
    t: &Tables,
    e: &TcpEvent,
    slot: &'a mut MaybeUninit<EcsEvent>,
) -> &'a mut EcsEvent {
    const AF_INET6: u16 = 10;
    let k = tcp_kind(e);
    let (action, direction) = match k {
        Some(RecordKind::TcpRetransmit) => (Action::TcpRetransmit, None),
        Some(RecordKind::TcpSendReset) => (Action::TcpReset, Some("sent")),
        // What parse() never hands over is read as a received reset, as before.
        Some(
            RecordKind::TcpReceiveReset
            | RecordKind::FdbUpdate
            | RecordKind::FdbDelete
            | RecordKind::ArpReply
            | RecordKind::NeighUpdate
            | RecordKind::SkbDrop
            | RecordKind::TcpAbort
            | RecordKind::IcmpSend,
        )
        | None => (Action::TcpReset, Some("received")),
    };
    let ev = slot.write(EcsEvent::new(t.wall(e.hdr.ts_ns), Kind::Event, action));
    netns_iface(ev, &e.hdr);
    let v6 = e.family == AF_INET6;
    let local = Endpoint {
        ip: Some(ip_from_wire(&e.saddr, v6)),
        port: Some(e.sport),
        mac: None,
        container: None,
    };
    let remote = Endpoint {
        ip: Some(ip_from_wire(&e.daddr, v6)),
        port: Some(e.dport),
        mac: None,
        container: None,
    };
    // ECS source is the sender of the segment the event is about: the local
    // end for retransmits and sent resets, the peer for received resets.
    if direction == Some("received") {
        ev.source = remote;
        ev.destination = local;
    } else {
        ev.source = local;
        ev.destination = remote;
    }
    let is_v4 = matches!(ev.source.ip, Some(IpAddr::V4(_)));
    ev.network = Network {
        type_: Some(if is_v4 { "ipv4" } else { "ipv6" }),
        transport: Some("tcp".into()),
    };
    let retrans = k == Some(RecordKind::TcpRetransmit);
    ev.tracer.tcp = Some(Tcp {
        state: (e.has_sk != 0).then(|| tcp_state_name(e.state)),
        direction,
        snd_una: retrans.then_some(e.snd_una),
        retransmits: retrans.then_some(e.retransmits),
        ack_age_ms: (retrans && e.ack_age_ms != 0).then_some(e.ack_age_ms),
        rto_ms: (retrans && e.rto_ms != 0).then_some(e.rto_ms),
        // The largest segment: the skb's MSS when it holds several.
        seg_len: (retrans && e.seg_len != 0).then(|| {
            if e.gso_segs > 1 && e.gso_size != 0 {
                u32::from(e.gso_size)
            } else {
                e.seg_len
            }
        }),
        segs: (retrans && e.gso_segs != 0).then_some(e.gso_segs),
        mss: (retrans && e.mss != 0).then_some(e.mss),
        pmtu: (retrans && e.pmtu != 0).then_some(e.pmtu),
        old_state: None,
        error: None,
    });
    ev
}

/// Name of a Linux errno (the values are the kernel's user-space ABI,
/// `asm-generic/errno.h`, the same on every architecture tracer runs on);
/// `E<n>` for one not listed.
pub fn errno_name(e: u32) -> SmolStr {
    let n = match e {
        1 => "EPERM",
        4 => "EINTR",
        5 => "EIO",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        22 => "EINVAL",
        32 => "EPIPE",
        64 => "ENONET",
        71 => "EPROTO",
        90 => "EMSGSIZE",
        92 => "ENOPROTOOPT",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        102 => "ENETRESET",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        _ => return SmolStr::new(format!("E{e}")),
    };
    SmolStr::new_static(n)
}

/// nftables' name of an ICMP (v4) type and code (RFC 792, 1812), as
/// `reject with icmp <name>` spells it where it can.
pub fn icmp_name(t: u8, code: u8) -> &'static str {
    match (t, code) {
        (3, 0) => "net-unreachable",
        (3, 1) => "host-unreachable",
        (3, 2) => "prot-unreachable",
        (3, 3) => "port-unreachable",
        (3, 4) => "frag-needed",
        (3, 5) => "source-route-failed",
        (3, 6) => "net-unknown",
        (3, 7) => "host-unknown",
        (3, 9) => "net-prohibited",
        (3, 10) => "host-prohibited",
        (3, 11) => "net-unreachable-for-tos",
        (3, 12) => "host-unreachable-for-tos",
        (3, 13) => "admin-prohibited",
        (3, _) => "destination-unreachable",
        (4, _) => "source-quench",
        (5, _) => "redirect",
        (11, _) => "time-exceeded",
        (12, _) => "parameter-problem",
        _ => "other",
    }
}

/// A socket closed with an error or from `SYN_SENT` (`tcp_abort`): the
/// local end is the source.
pub fn tcp_abort_event(t: &Tables, e: &TcpAbortEvent) -> EcsEvent {
    const AF_INET6: u16 = 10;
    let mut ev = EcsEvent::new(t.wall(e.hdr.ts_ns), Kind::Event, Action::TcpAbort);
    netns_iface(&mut ev, &e.hdr);
    let v6 = e.family == AF_INET6;
    ev.source = Endpoint {
        ip: Some(ip_from_wire(&e.saddr, v6)),
        port: Some(e.sport),
        mac: None,
        container: None,
    };
    ev.destination = Endpoint {
        ip: Some(ip_from_wire(&e.daddr, v6)),
        port: Some(e.dport),
        mac: None,
        container: None,
    };
    ev.network = Network {
        type_: Some(if v6 { "ipv6" } else { "ipv4" }),
        transport: Some(match u8::try_from(e.protocol) {
            Ok(0) => "tcp".into(),
            Ok(p) => transport_name(p),
            Err(_) => SmolStr::new(e.protocol.to_string()),
        }),
    };
    // The error the socket closed with, else the one it noted (a process
    // may close a connecting socket after reading a soft error).
    let err = if e.sk_err != 0 {
        e.sk_err
    } else {
        e.sk_err_soft
    };
    ev.tracer.tcp = Some(Tcp {
        state: Some(tcp_state_name(e.new_state)),
        old_state: Some(tcp_state_name(e.old_state)),
        error: (err != 0).then(|| errno_name(err)),
        ..Tcp::default()
    });
    ev
}

/// An ICMP error the kernel sent about a TCP packet (`icmp_error`): the
/// packet's addresses and ports, where it arrived, the type and code.
pub fn icmp_event(t: &Tables, e: &IcmpEvent) -> EcsEvent {
    let mut ev = EcsEvent::new(t.wall(e.hdr.ts_ns), Kind::Event, Action::IcmpError);
    netns_iface(&mut ev, &e.hdr);
    if e.ip_version == 4 || e.ip_version == 6 {
        let v6 = e.ip_version == 6;
        let has_ports = matches!(e.l4proto, 6 | 17 | 132);
        ev.source.ip = Some(ip_from_wire(&e.saddr, v6));
        ev.destination.ip = Some(ip_from_wire(&e.daddr, v6));
        if has_ports {
            ev.source.port = Some(e.sport);
            ev.destination.port = Some(e.dport);
        }
        ev.network = Network {
            type_: Some(if v6 { "ipv6" } else { "ipv4" }),
            transport: Some(transport_name(e.l4proto)),
        };
    }
    ev.tracer.icmp = Some(Icmp {
        type_: e.icmp_type,
        code: e.icmp_code,
        name: icmp_name(e.icmp_type, e.icmp_code),
        sender: (e.sender != [0; 4]).then(|| IpAddr::from(e.sender)),
    });
    ev
}

pub fn drop_event_in<'a>(
    t: &mut Tables,
    e: &DropEvent,
    slot: &'a mut MaybeUninit<EcsEvent>,
) -> &'a mut EcsEvent {
    let ev = slot.write(EcsEvent::new(
        t.wall(e.hdr.ts_ns),
        Kind::Event,
        Action::SkbDrop,
    ));
    netns_iface(ev, &e.hdr);
    if e.ip_version == 4 || e.ip_version == 6 {
        let v6 = e.ip_version == 6;
        let has_ports = matches!(e.l4proto, 6 | 17 | 132);
        ev.source.ip = Some(ip_from_wire(&e.saddr, v6));
        ev.destination.ip = Some(ip_from_wire(&e.daddr, v6));
        if has_ports {
            ev.source.port = Some(e.sport);
            ev.destination.port = Some(e.dport);
        }
        ev.network = Network {
            type_: Some(if v6 { "ipv6" } else { "ipv4" }),
            transport: Some(transport_name(e.l4proto)),
        };
    } else if e.eth_proto == 0x0806 {
        ev.network.type_ = Some("arp");
    }
    ev.tracer.reason = Some(t.reason_name(e.reason));
    ev.tracer.reason_raw = Some(e.reason);
    ev.tracer.location = Some(t.locations.format(e.location));
    ev
}

/// A decoder's event as an owned value (tests, and the pipeline's events
/// that are not kernel records: drops the kernel held back).
fn owned(f: impl FnOnce(&mut MaybeUninit<EcsEvent>) -> &mut EcsEvent) -> EcsEvent {
    let mut slot = MaybeUninit::uninit();
    let ev = f(&mut slot);
    // The slot keeps an empty event (nothing on the heap) and is never dropped.
    std::mem::replace(ev, EcsEvent::new(0, Kind::Event, Action::SkbDrop))
}

#[cfg(test)]
pub fn arp_event(t: &Tables, e: &ArpEvent) -> EcsEvent {
    owned(|s| arp_event_in(t, e, s))
}

#[cfg(test)]
pub fn neigh_event(t: &Tables, e: &NeighEvent) -> EcsEvent {
    owned(|s| neigh_event_in(t, e, s))
}

#[cfg(test)]
pub fn tcp_event(t: &Tables, e: &TcpEvent) -> EcsEvent {
    owned(|s| tcp_event_in(t, e, s))
}

/// [`drop_event_in`], returned.
pub fn drop_event(t: &mut Tables, e: &DropEvent) -> EcsEvent {
    owned(|s| drop_event_in(t, e, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: aya::Pod>(v: &T) -> Vec<u8> {
        tracer_ebpf::pod_bytes(v).to_vec()
    }

    #[test]
    fn a_hostile_clock_offset_never_overflows_event_time() {
        for off in [i128::MAX, i128::MIN, 1 << 100, -(1 << 100)] {
            let t = Tables {
                drop_reasons: Default::default(),
                locations: Locations::default(),
                boot_to_wall_ns: off,
                reason_cache: Default::default(),
            };
            let w = t.wall(u64::MAX);
            assert!(w.abs() <= MAX_BOOT_TO_WALL + u64::MAX as i128, "{w}");
            // What the detectors add to event times (a day-long window).
            assert!(w.checked_add(86_400 * 1_000_000_000).is_some());
        }
    }

    #[test]
    fn locations_stay_bounded_in_a_hostile_capture() {
        let mut l = Locations::default();
        // A capture's symbol tables naming far more addresses than a
        // kernel has drop sites, with absurdly long names.
        l.extend((0..MAX_LOCATIONS as u64 + 5000).map(|a| (a, "é".repeat(1000))));
        assert_eq!(l.len(), MAX_LOCATIONS);
        let s = l.format(7);
        assert!(s.len() <= MAX_SYMBOL_LEN && s.chars().all(|c| c == 'é'));
        // Addresses past the bound still print, uncached.
        let far = MAX_LOCATIONS as u64 + 100;
        assert_eq!(l.format(far), format!("{far:#x}"));
        for a in 0..10_000u64 {
            l.format(u64::MAX - a);
        }
        assert_eq!(l.len(), MAX_LOCATIONS);
        // A re-stated table updates what is cached.
        l.extend([(7, "ip_rcv+0x1".to_string())]);
        assert_eq!(l.format(7), "ip_rcv+0x1");
    }

    #[test]
    fn record_kinds_round_trip_the_wire_values() {
        let wire: Vec<u32> = RecordKind::ALL.iter().map(|k| k.wire()).collect();
        assert_eq!(wire, kind::ALL);
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::try_from(k.wire()), Ok(k));
            assert_eq!(kind_name(k.wire()), k.probe_name());
            assert!(k.wire() < kind::MAX);
        }
        assert_eq!(RecordKind::try_from(0), Err(UnknownKind(0)));
        assert_eq!(RecordKind::try_from(kind::MAX), Err(UnknownKind(kind::MAX)));
        assert_eq!(kind_name(0), "unknown");
    }

    #[test]
    fn record_ts_reads_the_header_only() {
        let h = hdr(kind::SKB_DROP);
        assert_eq!(record_ts(&bytes_of(&h)), Some(5));
        assert_eq!(record_ts(&bytes_of(&h)[..8]), Some(5));
        assert_eq!(record_ts(&bytes_of(&h)[..7]), None);
        assert_eq!(record_netns(&bytes_of(&h)), Some(4026531840));
        assert_eq!(record_netns(&bytes_of(&h)[..16]), Some(4026531840));
        assert_eq!(record_netns(&bytes_of(&h)[..15]), None);
    }

    fn tables() -> Tables {
        Tables {
            drop_reasons: DropReasons::from_pairs([
                (2, "NOT_SPECIFIED".to_string()),
                (3, "NO_SOCKET".to_string()),
            ]),
            locations: Locations::from_table([(
                0xffff_ffff_8100_0010,
                "__udp4_lib_rcv+0x10".to_string(),
            )]),
            boot_to_wall_ns: 1_000_000_000_000_000_000,
            reason_cache: Default::default(),
        }
    }

    fn hdr(k: u32) -> EventHeader {
        let mut h = EventHeader {
            ts_ns: 5,
            kind: k,
            netns: 4026531840,
            ifindex: 7,
            cpu: 1,
            ifname: [0; 16],
        };
        h.ifname[..5].copy_from_slice(b"veth1");
        h
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert!(matches!(parse(&[]), Err(DecodeError::Short { .. })));
        let h = hdr(kind::SKB_DROP);
        assert!(matches!(
            parse(&bytes_of(&h)),
            Err(DecodeError::Short { need: 96, .. })
        ));
        let h = hdr(999);
        assert_eq!(parse(&bytes_of(&h)), Err(DecodeError::UnknownKind(999)));
    }

    #[test]
    fn drop_record_decodes_udp_tuple_reason_and_location() {
        let mut d = DropEvent {
            hdr: hdr(kind::SKB_DROP),
            location: 0xffff_ffff_8100_0010,
            reason: 3,
            sport: 40000,
            dport: 9,
            eth_proto: 0x0800,
            l4proto: 17,
            ip_version: 4,
            ..Default::default()
        };
        d.saddr[..4].copy_from_slice(&[10, 1, 0, 1]);
        d.daddr[..4].copy_from_slice(&[10, 1, 0, 2]);
        let rec = parse(&bytes_of(&d)).unwrap();
        let Record::Drop(d2) = rec else {
            panic!("wrong kind {rec:?}")
        };
        let ev = drop_event(&mut tables(), &d2);
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["event"]["action"], "skb_drop");
        assert_eq!(v["source"]["ip"], "10.1.0.1");
        assert_eq!(v["source"]["port"], 40000);
        assert_eq!(v["destination"]["ip"], "10.1.0.2");
        assert_eq!(v["destination"]["port"], 9);
        assert_eq!(v["network"]["transport"], "udp");
        assert_eq!(v["tracer"]["reason"], "NO_SOCKET");
        assert_eq!(v["tracer"]["reason_raw"], 3);
        assert_eq!(v["tracer"]["location"], "__udp4_lib_rcv+0x10");
        assert_eq!(v["tracer"]["interface"]["name"], "veth1");
        assert_eq!(v["tracer"]["netns"]["inode"], 4026531840u32);
        assert_eq!(v["@timestamp"], "2001-09-09T01:46:40.000000005Z");
    }

    #[test]
    fn arp_reply_decodes_both_ends() {
        let a = ArpEvent {
            hdr: hdr(kind::ARP_REPLY),
            oper: 2,
            hw_type: 1,
            sender_mac: [2, 0x42, 10, 0, 0, 3],
            target_mac: [2, 0x42, 10, 0, 0, 2],
            sender_ip: [10, 0, 0, 3],
            target_ip: [10, 0, 0, 2],
        };
        let Record::ArpReply(a) = parse(&bytes_of(&a)).unwrap() else {
            panic!()
        };
        let v = serde_json::to_value(arp_event(&tables(), &a)).unwrap();
        assert_eq!(v["source"]["ip"], "10.0.0.3");
        assert_eq!(v["source"]["mac"], "02-42-0A-00-00-03");
        assert_eq!(v["destination"]["mac"], "02-42-0A-00-00-02");
        assert_eq!(v["network"]["type"], "arp");
    }

    #[test]
    fn received_reset_puts_peer_in_source() {
        let mut t = TcpEvent {
            hdr: hdr(kind::TCP_RECEIVE_RESET),
            sport: 5555,
            dport: 80,
            family: 2,
            state: 1,
            has_sk: 1,
            ..Default::default()
        };
        t.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[10, 0, 0, 9]);
        let Record::Tcp(t) = parse(&bytes_of(&t)).unwrap() else {
            panic!()
        };
        let v = serde_json::to_value(tcp_event(&tables(), &t)).unwrap();
        assert_eq!(v["event"]["action"], "tcp_reset");
        assert_eq!(v["source"]["ip"], "10.0.0.9");
        assert_eq!(v["source"]["port"], 80);
        assert_eq!(v["destination"]["port"], 5555);
        assert_eq!(v["tracer"]["tcp"]["direction"], "received");
        assert_eq!(v["tracer"]["tcp"]["state"], "ESTABLISHED");
    }

    #[test]
    fn retransmit_carries_ack_age_and_old_records_still_decode() {
        let mut t = TcpEvent {
            hdr: hdr(kind::TCP_RETRANSMIT),
            sport: 40000,
            dport: 8080,
            family: 2,
            state: 1,
            has_sk: 1,
            snd_una: 7,
            retransmits: 1,
            ack_age_ms: 903_412,
            rto_ms: 204,
            ..Default::default()
        };
        t.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[10, 0, 0, 9]);
        let full = bytes_of(&t);
        let Record::Tcp(e) = parse(&full).unwrap() else {
            panic!()
        };
        let v = serde_json::to_value(tcp_event(&tables(), &e)).unwrap();
        assert_eq!(v["tracer"]["tcp"]["ack_age_ms"], 903_412);
        assert_eq!(v["tracer"]["tcp"]["rto_ms"], 204);
        // A record of the first layout (older captures): no ACK age.
        let v1 = &full[..tracer_ebpf::TCP_EVENT_V1_SIZE];
        let Record::Tcp(e) = parse(v1).unwrap() else {
            panic!()
        };
        assert_eq!((e.snd_una, e.ack_age_ms, e.rto_ms), (7, 0, 0));
        let v = serde_json::to_value(tcp_event(&tables(), &e)).unwrap();
        assert!(v["tracer"]["tcp"].get("ack_age_ms").is_none(), "{v}");
        assert_eq!(v["tracer"]["tcp"]["snd_una"], 7);
        assert!(parse(&full[..tracer_ebpf::TCP_EVENT_V1_SIZE - 1]).is_err());
    }

    #[test]
    fn retransmit_carries_segment_sizes_and_v2_records_still_decode() {
        let mut t = TcpEvent {
            hdr: hdr(kind::TCP_RETRANSMIT),
            sport: 40000,
            dport: 5201,
            family: 2,
            state: 1,
            has_sk: 1,
            snd_una: 7,
            ack_age_ms: 450,
            rto_ms: 200,
            seg_len: 2896,
            gso_segs: 2,
            gso_size: 1448,
            mss: 1448,
            pmtu: 1500,
            ..Default::default()
        };
        t.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[10, 0, 0, 9]);
        let full = bytes_of(&t);
        let Record::Tcp(e) = parse(&full).unwrap() else {
            panic!()
        };
        let v = serde_json::to_value(tcp_event(&tables(), &e)).unwrap();
        // Two segments in the skb: the segment is the skb's MSS.
        assert_eq!(v["tracer"]["tcp"]["seg_len"], 1448);
        assert_eq!(v["tracer"]["tcp"]["segs"], 2);
        assert_eq!(v["tracer"]["tcp"]["mss"], 1448);
        assert_eq!(v["tracer"]["tcp"]["pmtu"], 1500);
        // One segment: its length.
        t.gso_segs = 1;
        t.seg_len = 900;
        let v = serde_json::to_value(tcp_event(&tables(), &t)).unwrap();
        assert_eq!(v["tracer"]["tcp"]["seg_len"], 900);
        // A record of the second layout (before the segment fields).
        let v2 = &full[..tracer_ebpf::TCP_EVENT_V2_SIZE];
        let Record::Tcp(e) = parse(v2).unwrap() else {
            panic!()
        };
        assert_eq!((e.ack_age_ms, e.seg_len, e.mss, e.pmtu), (450, 0, 0, 0));
        let v = serde_json::to_value(tcp_event(&tables(), &e)).unwrap();
        assert!(v["tracer"]["tcp"].get("seg_len").is_none(), "{v}");
        assert!(v["tracer"]["tcp"].get("mss").is_none(), "{v}");
        assert_eq!(v["tracer"]["tcp"]["ack_age_ms"], 450);
    }

    #[test]
    fn records_with_and_without_a_snapshot_decode_alike() {
        let mut d = DropEvent {
            hdr: hdr(kind::SKB_DROP),
            reason: 3,
            eth_proto: 0x0800,
            ..Default::default()
        };
        d.saddr[..4].copy_from_slice(&[10, 1, 0, 1]);
        let plain = bytes_of(&d);
        let snap = Snapshot {
            caplen: 5,
            from: tracer_ebpf::SNAP_FROM_NETWORK,
            len: 84,
            ..Default::default()
        };
        let mut with = plain.clone();
        with.extend_from_slice(tracer_ebpf::pod_bytes(&snap));
        with.extend_from_slice(&[0x45, 0, 0, 84, 9]);
        // The record itself is the same either way.
        assert_eq!(parse(&plain), parse(&with));
        assert_eq!(snapshot(&plain), None);
        let s = snapshot(&with).unwrap();
        assert_eq!((s.hdr, s.bytes), (snap, &[0x45, 0, 0, 84, 9][..]));
        // A snapshot claiming more bytes than the record holds: none.
        assert_eq!(snapshot(&with[..with.len() - 1]), None);
        // Kinds that never carry one, and an empty capture: none.
        let mut n = bytes_of(&NeighEvent {
            hdr: hdr(kind::NEIGH_UPDATE),
            ..Default::default()
        });
        n.extend_from_slice(tracer_ebpf::pod_bytes(&snap));
        assert_eq!(snapshot(&n), None);
        let mut empty = plain.clone();
        empty.extend_from_slice(tracer_ebpf::pod_bytes(&Snapshot::default()));
        assert_eq!(snapshot(&empty), None);
        // A retransmit without payload still is a segment (headers rebuilt).
        let mut t = bytes_of(&TcpEvent {
            hdr: hdr(kind::TCP_RETRANSMIT),
            ..Default::default()
        });
        let seg = Snapshot {
            from: tracer_ebpf::SNAP_FROM_TCP_PAYLOAD,
            seq: 1,
            ..Default::default()
        };
        t.extend_from_slice(tracer_ebpf::pod_bytes(&seg));
        assert_eq!(snapshot(&t).map(|s| s.hdr.seq), Some(1));
        assert!(matches!(parse(&t), Ok(Record::Tcp(_))));
    }

    #[test]
    fn neigh_update_without_new_lladdr_keeps_old() {
        let mut n = NeighEvent {
            hdr: hdr(kind::NEIGH_UPDATE),
            family: 2,
            old_state: 0x02,
            new_state: 0x04,
            lladdr_len: 6,
            ..Default::default()
        };
        n.key[..4].copy_from_slice(&[10, 0, 0, 3]);
        n.old_lladdr[..6].copy_from_slice(&[2, 0x42, 10, 0, 0, 3]);
        let Record::Neigh(n) = parse(&bytes_of(&n)).unwrap() else {
            panic!()
        };
        let v = serde_json::to_value(neigh_event(&tables(), &n)).unwrap();
        assert_eq!(v["destination"]["ip"], "10.0.0.3");
        assert_eq!(v["destination"]["mac"], "02-42-0A-00-00-03");
        assert_eq!(v["tracer"]["neigh"]["old_state"], "REACHABLE");
        assert_eq!(v["tracer"]["neigh"]["new_state"], "STALE");
    }

    #[test]
    fn nud_names() {
        assert_eq!(nud_state_name(0), "NONE");
        assert_eq!(nud_state_name(0x80), "PERMANENT");
        assert_eq!(nud_state_name(0x0c), "STALE|DELAY");
    }
}
