//! Kernel/user wire contract of tracer.
//!
//! Every record the eBPF programs put in the ring buffer starts with an
//! [`EventHeader`]; `EventHeader::kind` says which `#[repr(C)]` struct follows.
//! The layout contract:
//! - all fields are fixed width, little endian (bpfel), no enums/Options;
//! - IP addresses are 16 bytes: IPv4 in the first 4 bytes (network order),
//!   IPv6 in all 16;
//! - ports in host order;
//! - strings (interface names) are NUL padded `[u8; 16]` (IFNAMSIZ);
//! - sizes are asserted below, so a change on one side that the other does not
//!   follow fails to compile.
//!
//! Kernel offsets are not known at compile time: user space reads them from
//! BTF at start-up and hands them to the programs in [`KernelConfig`].
#![no_std]

/// Size of an interface name, `IFNAMSIZ`.
pub const IFNAMSIZ: usize = 16;

/// Declares the record kinds once, each with the probe that emits it: each
/// becomes a `u32` const in [`kind`], listed in `kind::ALL`, named by
/// `kind::probe`, and `kind::MAX` (sizing the per-kind loss
/// counters) is computed from them, so a new kind cannot be forgotten there.
macro_rules! record_kinds {
    ($( $(#[$doc:meta])* $name:ident = $value:literal $probe:literal, )*) => {
        /// `EventHeader::kind` values.
        pub mod kind {
            $( $(#[$doc])* pub const $name: u32 = $value; )*
            /// Every kind, in value order.
            pub const ALL: &[u32] = &[$($name),*];
            /// The probe (program) that emits records of kind `k`, for
            /// kernel-side diagnostics (`--kernel-log`); "" for no kind.
            pub const fn probe(k: u32) -> &'static str {
                match k {
                    $( $name => $probe, )*
                    _ => "",
                }
            }
            /// One past the highest kind; sizes the per-kind loss counters.
            pub const MAX: u32 = {
                let mut max = 0;
                let mut i = 0;
                while i < ALL.len() {
                    if ALL[i] > max {
                        max = ALL[i];
                    }
                    i += 1;
                }
                max + 1
            };
        }
    };
}

record_kinds! {
    /// `bridge:br_fdb_update`: a MAC learned or moved to a port. [`super::FdbEvent`]
    FDB_UPDATE = 1 "br_fdb_update",
    /// `bridge:fdb_delete`. [`super::FdbEvent`]
    FDB_DELETE = 2 "fdb_delete",
    /// ARP reply seen on `net:netif_receive_skb`. [`super::ArpEvent`]
    ARP_REPLY = 3 "netif_receive_skb",
    /// `neigh:neigh_update`. [`super::NeighEvent`]
    NEIGH_UPDATE = 4 "neigh_update",
    /// `tcp:tcp_retransmit_skb`. [`super::TcpEvent`]
    TCP_RETRANSMIT = 5 "tcp_retransmit_skb",
    /// `tcp:tcp_send_reset`. [`super::TcpEvent`]
    TCP_SEND_RESET = 6 "tcp_send_reset",
    /// `tcp:tcp_receive_reset`. [`super::TcpEvent`]
    TCP_RECEIVE_RESET = 7 "tcp_receive_reset",
    /// `skb:kfree_skb`. [`super::DropEvent`]
    SKB_DROP = 8 "kfree_skb",
    /// `sock:inet_sock_set_state` of a TCP socket that closes with an error
    /// (`sk_err`: a connect refused or unreachable, a reset, a timeout) or
    /// from `SYN_SENT` (a connect given up). [`super::TcpAbortEvent`]
    TCP_ABORT = 9 "inet_sock_set_state",
    /// `icmp:icmp_send` about a TCP packet: the kernel answers it with an
    /// ICMP error (unreachable, time exceeded...). [`super::IcmpEvent`]
    ICMP_SEND = 10 "icmp_send",
}

const _: () = assert!(kind::MAX == 11);

/// Common prefix of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// `bpf_ktime_get_boot_ns()`: nanoseconds since boot, suspend included.
    pub ts_ns: u64,
    /// One of [`kind`].
    pub kind: u32,
    /// Inode of the network namespace the event happened in (0 = unknown).
    pub netns: u32,
    /// Interface involved (receiving device, bridge port, socket's device).
    pub ifindex: u32,
    /// CPU the probe ran on.
    pub cpu: u32,
    /// Name of `ifindex` at the time of the event.
    pub ifname: [u8; IFNAMSIZ],
}

/// FDB learn/move (`FDB_UPDATE`) or delete (`FDB_DELETE`).
/// The header's interface is the bridge port; netns is the bridge's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbEvent {
    pub hdr: EventHeader,
    pub br_name: [u8; IFNAMSIZ],
    /// Tracepoint `flags` argument (update) or the entry's flags (delete).
    pub flags: u64,
    pub br_ifindex: u32,
    pub vid: u16,
    pub mac: [u8; 6],
    pub _pad: [u8; 4],
}

/// An ARP frame with opcode reply (2) received on an interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArpEvent {
    pub hdr: EventHeader,
    pub oper: u16,
    pub hw_type: u16,
    pub sender_mac: [u8; 6],
    pub target_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_ip: [u8; 4],
}

/// `neigh_update(n, lladdr, new, flags, pid)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighEvent {
    pub hdr: EventHeader,
    /// Primary key (IP); IPv4 in the first 4 bytes.
    pub key: [u8; 16],
    pub old_lladdr: [u8; 8],
    pub new_lladdr: [u8; 8],
    pub update_flags: u32,
    pub family: u16,
    pub old_state: u8,
    pub new_state: u8,
    /// Device hardware address length (6 for Ethernet).
    pub lladdr_len: u8,
    /// 1 when the update carried a new lladdr.
    pub has_new_lladdr: u8,
    pub _pad: [u8; 6],
}

/// TCP retransmit / reset. `saddr`/`sport` are the local end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpEvent {
    pub hdr: EventHeader,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// `sk_state` (TCP_ESTABLISHED = 1 ...); 0 when there was no socket.
    pub state: u8,
    /// `icsk_retransmits` for retransmits (consecutive RTO retransmits).
    pub retransmits: u8,
    /// `tcp_sock.snd_una` for retransmits: unchanged = no forward progress.
    pub snd_una: u32,
    /// 1 when the event had a socket.
    pub has_sk: u8,
    pub _pad: [u8; 3],
    /// Retransmits: milliseconds since the socket last received an ACK
    /// (`jiffies - tcp_sock.rcv_tstamp`, converted with the kernel's HZ in
    /// the program). 0 = unknown (older records, unresolved field).
    pub ack_age_ms: u32,
    /// Retransmits: the socket's current retransmission timeout
    /// (`icsk_rto`, before this timeout's back-off) in milliseconds; 0 = unknown.
    pub rto_ms: u32,
    /// Retransmits: payload bytes of the retransmitted skb (`skb->len`; it
    /// may hold several segments); 0 = unknown.
    pub seg_len: u32,
    /// Retransmits: segments in that skb and their size
    /// (`tcp_skb_cb.tcp_gso_segs`/`tcp_gso_size`); 0 = unknown.
    pub gso_segs: u16,
    pub gso_size: u16,
    /// Retransmits: the socket's current MSS (`tcp_sock.mss_cache`) and the
    /// path MTU it sends for (`icsk_pmtu_cookie`); 0 = unknown.
    pub mss: u32,
    pub pmtu: u32,
}

/// Size of a [`TcpEvent`] before `ack_age_ms`/`rto_ms` were added: captures
/// recorded then are still read (the new fields as 0, unknown).
pub const TCP_EVENT_V1_SIZE: usize = 88;

/// Size of a [`TcpEvent`] before the segment fields (`seg_len` ... `pmtu`)
/// were added; read the same way.
pub const TCP_EVENT_V2_SIZE: usize = 96;

/// `kfree_skb(skb, location, reason, ...)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    pub hdr: EventHeader,
    /// Kernel text address of the drop.
    pub location: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Raw `enum skb_drop_reason` value.
    pub reason: u32,
    pub sport: u16,
    pub dport: u16,
    /// `skb->protocol` in host order (0x0800, 0x86dd, 0x0806 ...).
    pub eth_proto: u16,
    /// IPPROTO_* of the packet, 0 when not parsed.
    pub l4proto: u8,
    /// 4 or 6 when the addresses are valid, else 0.
    pub ip_version: u8,
    pub _pad: [u8; 4],
}

/// A TCP socket changed state while its `sk_err` was set, or closed from
/// `SYN_SENT` (`inet_sock_set_state(sk, oldstate, newstate)`).
/// `saddr`/`sport` are the local end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpAbortEvent {
    pub hdr: EventHeader,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// `TCP_*` states (SYN_SENT = 2, CLOSE = 7 ...).
    pub old_state: u8,
    pub new_state: u8,
    /// `sk->sk_err`: a positive errno (ECONNREFUSED, EHOSTUNREACH ...); 0: none.
    pub sk_err: u32,
    /// `sk->sk_err_soft`: an error the socket noted without closing (an
    /// ICMP error while the connecting process held the socket); 0: none.
    pub sk_err_soft: u32,
    /// `sk->sk_protocol` (IPPROTO_TCP = 6); 0 when unknown.
    pub protocol: u16,
    pub _pad: [u8; 6],
}

/// The kernel sends an ICMP error (`icmp_send(skb, type, code)`) about a
/// TCP packet. The addresses and ports are the offending packet's; the
/// header's namespace and interface are where it arrived (the sender of the
/// ICMP error).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpEvent {
    pub hdr: EventHeader,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// ICMP type and code (3/13: destination unreachable, administratively
    /// prohibited).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// IPPROTO_* of the offending packet.
    pub l4proto: u8,
    /// 4 or 6 when the addresses are valid, else 0.
    pub ip_version: u8,
    /// First IPv4 address of the interface the packet arrived on (the
    /// source the kernel normally gives the error); zero when unknown.
    pub sender: [u8; 4],
    pub _pad: [u8; 4],
}

/// Longest packet snapshot a record carries (bytes; `--snaplen` is at most this).
pub const SNAP_MAX: u32 = 256;

/// [`Snapshot::from`]: the bytes start at the Ethernet header (`LINKTYPE_ETHERNET`).
pub const SNAP_FROM_MAC: u8 = 1;
/// [`Snapshot::from`]: the bytes start at the IPv4/IPv6 header (`LINKTYPE_RAW`).
pub const SNAP_FROM_NETWORK: u8 = 2;
/// [`Snapshot::from`]: TCP payload of a segment in the retransmit queue,
/// which holds no IP/TCP headers yet: user space rebuilds them from the
/// record's tuple and the snapshot's `seq`, `ack` and `tcp_flags`.
pub const SNAP_FROM_TCP_PAYLOAD: u8 = 3;

/// The first bytes of the packet, after an [`ArpEvent`], [`DropEvent`] or
/// [`TcpEvent`] (retransmits) when `--snaplen` is not 0: this header, then
/// `caplen` bytes, and nothing else (the record ends there). A record
/// without a snapshot is exactly the struct (older captures, `--snaplen 0`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Packet bytes that follow (at most [`SNAP_MAX`]); 0: none could be read.
    pub caplen: u16,
    /// Where the bytes start: [`SNAP_FROM_MAC`], [`SNAP_FROM_NETWORK`],
    /// [`SNAP_FROM_TCP_PAYLOAD`]; 0: nothing captured.
    pub from: u8,
    /// [`SNAP_FROM_TCP_PAYLOAD`]: the segment's TCP flags (low byte of `tcp_skb_cb.tcp_flags`).
    pub tcp_flags: u8,
    /// The packet's length from where the bytes start (>= caplen, bytes that
    /// were not linear or beyond the snapshot length included).
    pub len: u32,
    /// [`SNAP_FROM_TCP_PAYLOAD`]: sequence number of the segment (`tcp_skb_cb.seq`).
    pub seq: u32,
    /// [`SNAP_FROM_TCP_PAYLOAD`]: acknowledgement number (`tcp_sock.rcv_nxt`).
    pub ack: u32,
}

/// Largest record with a snapshot: the largest record struct, the
/// snapshot header and [`SNAP_MAX`] bytes.
pub const SNAP_RECORD_MAX: usize = {
    let (d, t, a) = (
        core::mem::size_of::<DropEvent>(),
        core::mem::size_of::<TcpEvent>(),
        core::mem::size_of::<ArpEvent>(),
    );
    let m = if d > t { d } else { t };
    let m = if m > a { m } else { a };
    m + core::mem::size_of::<Snapshot>() + SNAP_MAX as usize
};

/// Sentinel for an offset or argument index BTF could not resolve.
pub const UNRESOLVED: u32 = u32::MAX;

/// Whether a value is set: `None` for a field read through the pointer its
/// BTF path starts at, `Some(base)` for one rebased onto a `struct base *`.
macro_rules! rebased {
    () => {
        None
    };
    ($base:literal) => {
        Some($base)
    };
}

/// Declares the kernel struct fields the programs read, once. Each line
/// `Variant field: "struct.member[.member...]" [via "base"]` generates:
/// - the `u32` offset `field` of [`KernelConfig`] (same order),
/// - [`KernelConfig::unresolved`] (every offset [`UNRESOLVED`]),
/// - [`Field::Variant`], with the field's name, BTF member path and base,
///   which user space uses to resolve it from BTF and probes use to say what
///   they need (a typo fails to compile).
///
/// `via "sock"`: the programs apply the offset to a `struct sock *` although
/// the path starts at a struct that embeds `struct sock` (`tcp_sock`,
/// `inet_connection_sock`) or that `struct sock` embeds (`sock_common`).
macro_rules! kernel_fields {
    ($( $(#[$doc:meta])* $variant:ident $field:ident : $path:literal $(via $base:literal)? ,)*) => {
        /// Offsets (bytes) of kernel struct fields, resolved from BTF in user space
        /// and written into the programs' read-only data before load (global
        /// `CONFIG`). Raw-tracepoint argument positions are the tracepoints'
        /// `TP_PROTO` order; user space checks each prototype against the
        /// `btf_trace_<name>` typedef in BTF before attaching (a kernel whose
        /// prototype differs gets that probe reported as unavailable, never misread).
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct KernelConfig {
            $( $(#[$doc])* pub $field: u32, )*
            /// Number of entries in the `DROP_FILTER` map (reasons at or above are never filtered).
            pub drop_filter_len: u32,
            /// Drop records (the storm-prone kind) do not wake user space until this
            /// many bytes wait in the ring; user space also drains on a short timer.
            /// 0: every record may wake (kernel default).
            pub wakeup_bytes: u32,
            /// Non-zero: the programs log what goes wrong in them (a span read
            /// that fell back to field reads, an unreadable field they need,
            /// a record lost to a full ring) through aya-log
            /// (`tracer run --kernel-log`). 0: they pay a load and a branch.
            pub kernel_log: u32,
            /// The kernel's tick rate (`CONFIG_HZ`), for turning the jiffies
            /// stamps of `tcp_sock` into milliseconds; 0 = unknown (no idle
            /// spans in the records).
            pub hz: u32,
            /// The kernel's `TCP_SYN_SENT` and `TCP_CLOSE` (from tracefs'
            /// `sock:inet_sock_set_state` format): a socket closing from
            /// `SYN_SENT` is a connect given up. 0 = unknown (then only
            /// closes with an error are sent).
            pub tcp_syn_sent: u32,
            pub tcp_close: u32,
            /// Bytes of each dropped packet, ARP reply and retransmitted
            /// segment copied after the record (`--snaplen`, at most
            /// [`SNAP_MAX`]); 0: records carry no snapshot.
            pub snaplen: u32,
            /// Per-kind budget (index: [`kind`]): records of that kind each
            /// network namespace may send per second on each CPU; the rest
            /// are held back and counted in `BUDGET` ([`BudgetState`]).
            /// For [`kind::SKB_DROP`] the unit is the place of the drop
            /// (device or socket, reason, location: [`DropBudgetKey`]),
            /// counted in `DROP_BUDGET`. 0: no budget (every record is sent).
            pub budgets: [u32; kind::MAX as usize],
            /// The bytes of `struct sk_buff` the drop program needs (dev, sk,
            /// protocol, network_header, head, data), read with one
            /// `bpf_probe_read_kernel`: start offset and length
            /// ([`Span::covering`]); length 0: read field by field.
            pub skb_span: Span,
            /// Same for `struct net_device` (ifindex, nd_net, name).
            pub dev_span: Span,
        }

        impl KernelConfig {
            /// Every BTF field unresolved, `drop_filter_len`, `wakeup_bytes`,
            /// `kernel_log`, `hz` and `snaplen` 0.
            pub const fn unresolved() -> Self {
                Self {
                    $( $field: UNRESOLVED, )*
                    drop_filter_len: 0,
                    wakeup_bytes: 0,
                    kernel_log: 0,
                    hz: 0,
                    tcp_syn_sent: 0,
                    tcp_close: 0,
                    snaplen: 0,
                    budgets: [0; kind::MAX as usize],
                    skb_span: Span::NONE,
                    dev_span: Span::NONE,
                }
            }

            /// Offset of a BTF field.
            pub const fn get(&self, f: Field) -> u32 {
                match f {
                    $( Field::$variant => self.$field, )*
                }
            }

            /// Mutable offset of a BTF field.
            pub fn get_mut(&mut self, f: Field) -> &mut u32 {
                match f {
                    $( Field::$variant => &mut self.$field, )*
                }
            }
        }

        /// One BTF-resolved field of [`KernelConfig`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Field {
            $( $variant, )*
        }

        impl Field {
            /// Every field, in `KernelConfig` order.
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];

            /// The `KernelConfig` field name (`dev_ifindex`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( Field::$variant => stringify!($field), )*
                }
            }

            /// BTF member path (`net_device.ifindex`).
            pub const fn btf_path(self) -> &'static str {
                match self {
                    $( Field::$variant => $path, )*
                }
            }

            /// The struct whose pointer the programs apply the offset to, when it
            /// is not the root of [`Field::btf_path`] (`Some("sock")`).
            pub const fn rebased_onto(self) -> Option<&'static str> {
                match self {
                    $( Field::$variant => rebased!($($base)?), )*
                }
            }
        }
    };
}

kernel_fields! {
    /// struct net_device
    DevIfindex dev_ifindex: "net_device.ifindex",
    DevName dev_name: "net_device.name",
    DevNdNet dev_nd_net: "net_device.nd_net.net",
    /// struct net -> ns.inum
    NetNsInum net_ns_inum: "net.ns.inum",
    /// struct net_bridge / net_bridge_port -> dev
    BrDev br_dev: "net_bridge.dev",
    PortDev port_dev: "net_bridge_port.dev",
    /// struct net_bridge_fdb_entry
    FdbAddr fdb_addr: "net_bridge_fdb_entry.key.addr",
    FdbVlanId fdb_vlan_id: "net_bridge_fdb_entry.key.vlan_id",
    FdbDst fdb_dst: "net_bridge_fdb_entry.dst",
    FdbFlags fdb_flags: "net_bridge_fdb_entry.flags",
    /// struct sk_buff
    SkbDev skb_dev: "sk_buff.dev",
    SkbSk skb_sk: "sk_buff.sk",
    SkbHead skb_head: "sk_buff.head",
    SkbData skb_data: "sk_buff.data",
    SkbProtocol skb_protocol: "sk_buff.protocol",
    SkbNetworkHeader skb_network_header: "sk_buff.network_header",
    /// Packet snapshots: where the Ethernet header starts, the packet's
    /// length and the part of it that is not linear.
    SkbMacHeader skb_mac_header: "sk_buff.mac_header",
    SkbDataLen skb_data_len: "sk_buff.data_len",
    /// In `struct tcp_skb_cb` (`sk_buff.cb`, `TCP_SKB_CB()`): a
    /// retransmitted segment's sequence number and flags.
    TcbSeq tcb_seq: "tcp_skb_cb.seq",
    TcbTcpFlags tcb_tcp_flags: "tcp_skb_cb.tcp_flags",
    /// struct sock_common (at offset 0 of struct sock)
    SkFamily sk_family: "sock_common.skc_family" via "sock",
    SkState sk_state: "sock_common.skc_state" via "sock",
    SkNum sk_num: "sock_common.skc_num" via "sock",
    SkDport sk_dport: "sock_common.skc_dport" via "sock",
    SkDaddr sk_daddr: "sock_common.skc_daddr" via "sock",
    SkRcvSaddr sk_rcv_saddr: "sock_common.skc_rcv_saddr" via "sock",
    SkV6Daddr sk_v6_daddr: "sock_common.skc_v6_daddr" via "sock",
    SkV6RcvSaddr sk_v6_rcv_saddr: "sock_common.skc_v6_rcv_saddr" via "sock",
    SkNet sk_net: "sock_common.skc_net.net" via "sock",
    /// struct inet_sock: the local port in network order (kept when a
    /// closing socket gives its port back and `skc_num` becomes 0).
    InetSport inet_sport: "inet_sock.inet_sport" via "sock",
    /// struct sock: the pending socket error (a positive errno).
    SkErr sk_err: "sock.sk_err",
    SkErrSoft sk_err_soft: "sock.sk_err_soft",
    /// `u16` in current kernels (a bitfield before 5.6: unresolved there).
    SkProtocol sk_protocol: "sock.sk_protocol",
    /// struct net_device -> in_device -> in_ifaddr: an interface's IPv4 address.
    DevIpPtr dev_ip_ptr: "net_device.ip_ptr",
    InDevIfaList in_dev_ifa_list: "in_device.ifa_list",
    IfaLocal ifa_local: "in_ifaddr.ifa_local",
    /// struct tcp_sock / inet_connection_sock
    TcpSndUna tcp_snd_una: "tcp_sock.snd_una" via "sock",
    IcskRetransmits icsk_retransmits: "inet_connection_sock.icsk_retransmits" via "sock",
    /// `u32` jiffies (`tcp_jiffies32`) of the last ACK received.
    TcpRcvTstamp tcp_rcv_tstamp: "tcp_sock.rcv_tstamp" via "sock",
    /// `u32` jiffies: the current retransmission timeout.
    IcskRto icsk_rto: "inet_connection_sock.icsk_rto" via "sock",
    /// The current MSS and the path MTU it is for.
    TcpMssCache tcp_mss_cache: "tcp_sock.mss_cache" via "sock",
    IcskPmtuCookie icsk_pmtu_cookie: "inet_connection_sock.icsk_pmtu_cookie" via "sock",
    /// A retransmitted skb's length and its segments (`TCP_SKB_CB(skb)`,
    /// in `skb->cb`).
    SkbLen skb_len: "sk_buff.len",
    SkbCb skb_cb: "sk_buff.cb",
    TcbGsoSegs tcb_gso_segs: "tcp_skb_cb.tcp_gso_segs",
    TcbGsoSize tcb_gso_size: "tcp_skb_cb.tcp_gso_size",
    /// Next sequence number expected (the ACK a retransmit carries).
    TcpRcvNxt tcp_rcv_nxt: "tcp_sock.rcv_nxt" via "sock",
    /// struct neighbour / neigh_table
    NeighDev neigh_dev: "neighbour.dev",
    NeighPrimaryKey neigh_primary_key: "neighbour.primary_key",
    NeighHa neigh_ha: "neighbour.ha",
    NeighNudState neigh_nud_state: "neighbour.nud_state",
    NeighTbl neigh_tbl: "neighbour.tbl",
    TblFamily tbl_family: "neigh_table.family",
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self::unresolved()
    }
}

/// Entries of the `DROP_FILTER` array: drop reasons below this value can be
/// filtered in the kernel (counted in `DROP_FILTERED`, not sent).
pub const DROP_FILTER_SLOTS: u32 = 1024;

/// Longest [`Span`] the programs read at once (bytes; their scratch buffer).
pub const SPAN_MAX: u32 = 256;

/// A byte range of a kernel struct that holds several fields the programs
/// need, so one `bpf_probe_read_kernel` replaces one call per field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte (a multiple of 8).
    pub base: u32,
    /// Bytes; 0 when the fields are not all resolved or too far apart.
    pub len: u32,
}

impl Span {
    /// No span: read field by field.
    pub const NONE: Span = Span { base: 0, len: 0 };

    /// The span covering `(offset, size)` fields, its base rounded down to
    /// 8 bytes; [`Span::NONE`] when one is [`UNRESOLVED`] or the span
    /// exceeds [`SPAN_MAX`].
    pub fn covering(fields: &[(u32, u32)]) -> Span {
        let mut lo = u32::MAX;
        let mut hi = 0u32;
        for &(off, size) in fields {
            if off == UNRESOLVED {
                return Span::NONE;
            }
            lo = lo.min(off);
            hi = hi.max(off.saturating_add(size));
        }
        if fields.is_empty() {
            return Span::NONE;
        }
        let base = lo & !7;
        let len = hi - base;
        if len > SPAN_MAX {
            return Span::NONE;
        }
        Span { base, len }
    }
}

/// Entries of the per-CPU `BUDGET` hash: one per (record kind, network
/// namespace) that has a budget. A pair beyond this many is not budgeted
/// (its records are all sent), never miscounted.
pub const BUDGET_ENTRIES: u32 = 8192;

/// Key of the `BUDGET` map: kind in the high 32 bits, netns inode in the low.
pub const fn budget_key(kind: u32, netns: u32) -> u64 {
    ((kind as u64) << 32) | netns as u64
}

/// Value of the `BUDGET` map, per CPU: a one-second window of records sent
/// and, since load, the records held back (not sent because the window's
/// budget was spent). Exact accounting: records that happened = sent
/// (delivered + lost on a full ring) + `held_back`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetState {
    /// `bpf_ktime_get_ns()` at the start of the current window.
    pub window_start_ns: u64,
    /// Records sent in the current window.
    pub sent: u64,
    /// Records held back since load (never reset).
    pub held_back: u64,
}

/// Entries of the per-CPU `DROP_BUDGET` hash: one per place a drop
/// happens (device or socket, drop reason, code location). A place beyond
/// this many is not budgeted (its drops are all sent), never miscounted.
pub const DROP_BUDGET_ENTRIES: u32 = 4096;

/// Key of the `DROP_BUDGET` map: where a drop happened. `place` is the
/// address of the `net_device` the skb was on, or of its `sock` when it had
/// no device (0 when neither); it only tells places apart and never leaves
/// tracer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropBudgetKey {
    pub place: u64,
    /// `kfree_skb`'s `location` (a kernel text address).
    pub location: u64,
    /// The raw `enum skb_drop_reason` value.
    pub reason: u32,
    pub _pad: u32,
}

/// Value of the `DROP_BUDGET` map, per CPU: the place's one-second window
/// and what it held back (the budget of [`kind::SKB_DROP`] in
/// `KernelConfig::budgets`), plus the network namespace of the last drop
/// sent from it, so that user space can say where held-back drops happened.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropBudgetState {
    pub budget: BudgetState,
    /// Network namespace inode of the last drop sent from this place (0: unknown).
    pub netns: u32,
    pub _pad: u32,
}

/// Ring-buffer size used when the user does not choose one (bytes, power of two).
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;

const _: () = assert!(core::mem::size_of::<EventHeader>() == 40);
const _: () = assert!(core::mem::size_of::<FdbEvent>() == 80);
const _: () = assert!(core::mem::size_of::<ArpEvent>() == 64);
const _: () = assert!(core::mem::size_of::<NeighEvent>() == 88);
const _: () = assert!(core::mem::size_of::<TcpEvent>() == 112);
const _: () = assert!(core::mem::size_of::<DropEvent>() == 96);
const _: () = assert!(core::mem::size_of::<TcpAbortEvent>() == 96);
const _: () = assert!(core::mem::size_of::<IcmpEvent>() == 88);
const _: () = assert!(core::mem::size_of::<Snapshot>() == 16);
const _: () = assert!(core::mem::size_of::<KernelConfig>() == (60 + kind::MAX as usize + 4) * 4);
const _: () = assert!(core::mem::size_of::<BudgetState>() == 24);
const _: () = assert!(core::mem::size_of::<DropBudgetKey>() == 24);
const _: () = assert!(core::mem::size_of::<DropBudgetState>() == 32);
const _: () = assert!(Field::ALL.len() + 7 == 60);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all types are #[repr(C)], fixed width, no padding holes that
    // carry pointers, valid for any bit pattern.
    unsafe impl aya::Pod for KernelConfig {}
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for FdbEvent {}
    unsafe impl aya::Pod for ArpEvent {}
    unsafe impl aya::Pod for NeighEvent {}
    unsafe impl aya::Pod for TcpEvent {}
    unsafe impl aya::Pod for DropEvent {}
    unsafe impl aya::Pod for TcpAbortEvent {}
    unsafe impl aya::Pod for IcmpEvent {}
    unsafe impl aya::Pod for BudgetState {}
    unsafe impl aya::Pod for DropBudgetKey {}
    unsafe impl aya::Pod for DropBudgetState {}
    unsafe impl aya::Pod for Snapshot {}
}

/// The bytes of a wire value (user space: building records in tests and
/// synthetic captures).
#[cfg(feature = "user")]
pub fn pod_bytes<T: aya::Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod (#[repr(C)], fixed-width integers and byte arrays, valid
    // for any bit pattern); the slice covers exactly the value and borrows it.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) }
}
