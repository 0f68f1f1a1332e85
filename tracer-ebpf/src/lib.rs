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

/// `EventHeader::kind` values.
pub mod kind {
    /// `bridge:br_fdb_update`: a MAC learned or moved to a port. [`super::FdbEvent`]
    pub const FDB_UPDATE: u32 = 1;
    /// `bridge:fdb_delete`. [`super::FdbEvent`]
    pub const FDB_DELETE: u32 = 2;
    /// ARP reply seen on `net:netif_receive_skb`. [`super::ArpEvent`]
    pub const ARP_REPLY: u32 = 3;
    /// `neigh:neigh_update`. [`super::NeighEvent`]
    pub const NEIGH_UPDATE: u32 = 4;
    /// `tcp:tcp_retransmit_skb`. [`super::TcpEvent`]
    pub const TCP_RETRANSMIT: u32 = 5;
    /// `tcp:tcp_send_reset`. [`super::TcpEvent`]
    pub const TCP_SEND_RESET: u32 = 6;
    /// `tcp:tcp_receive_reset`. [`super::TcpEvent`]
    pub const TCP_RECEIVE_RESET: u32 = 7;
    /// `skb:kfree_skb`. [`super::DropEvent`]
    pub const SKB_DROP: u32 = 8;
    /// One past the highest kind; sizes the per-kind loss counters.
    pub const MAX: u32 = 9;
}

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
}

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

/// Sentinel for an offset or argument index BTF could not resolve.
pub const UNRESOLVED: u32 = u32::MAX;

/// Offsets (bytes) of kernel struct fields, resolved from BTF in user space
/// and written into the programs' read-only data before load (global
/// `CONFIG`). Raw-tracepoint argument positions are the tracepoints'
/// `TP_PROTO` order; user space checks each prototype against the
/// `btf_trace_<name>` typedef in BTF before attaching (a kernel whose
/// prototype differs gets that probe reported as unavailable, never misread).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    // struct net_device
    pub dev_ifindex: u32,
    pub dev_name: u32,
    pub dev_nd_net: u32,
    // struct net -> ns.inum
    pub net_ns_inum: u32,
    // struct net_bridge / net_bridge_port -> dev
    pub br_dev: u32,
    pub port_dev: u32,
    // struct net_bridge_fdb_entry
    pub fdb_addr: u32,
    pub fdb_vlan_id: u32,
    pub fdb_dst: u32,
    pub fdb_flags: u32,
    // struct sk_buff
    pub skb_dev: u32,
    pub skb_sk: u32,
    pub skb_head: u32,
    pub skb_data: u32,
    pub skb_protocol: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    // struct sock_common (at offset 0 of struct sock)
    pub sk_family: u32,
    pub sk_state: u32,
    pub sk_num: u32,
    pub sk_dport: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    pub sk_net: u32,
    // struct tcp_sock / inet_connection_sock
    pub tcp_snd_una: u32,
    pub icsk_retransmits: u32,
    // struct neighbour / neigh_table
    pub neigh_dev: u32,
    pub neigh_primary_key: u32,
    pub neigh_ha: u32,
    pub neigh_nud_state: u32,
    pub neigh_tbl: u32,
    pub tbl_family: u32,
    /// Number of entries in the `DROP_FILTER` map (reasons at or above are never filtered).
    pub drop_filter_len: u32,
    /// Drop records (the storm-prone kind) do not wake user space until this
    /// many bytes wait in the ring; user space also drains on a short timer.
    /// 0: every record may wake (kernel default).
    pub wakeup_bytes: u32,
}

impl KernelConfig {
    /// Everything unresolved.
    pub const fn unresolved() -> Self {
        let u = UNRESOLVED;
        Self {
            dev_ifindex: u,
            dev_name: u,
            dev_nd_net: u,
            net_ns_inum: u,
            br_dev: u,
            port_dev: u,
            fdb_addr: u,
            fdb_vlan_id: u,
            fdb_dst: u,
            fdb_flags: u,
            skb_dev: u,
            skb_sk: u,
            skb_head: u,
            skb_data: u,
            skb_protocol: u,
            skb_network_header: u,
            skb_transport_header: u,
            sk_family: u,
            sk_state: u,
            sk_num: u,
            sk_dport: u,
            sk_daddr: u,
            sk_rcv_saddr: u,
            sk_v6_daddr: u,
            sk_v6_rcv_saddr: u,
            sk_net: u,
            tcp_snd_una: u,
            icsk_retransmits: u,
            neigh_dev: u,
            neigh_primary_key: u,
            neigh_ha: u,
            neigh_nud_state: u,
            neigh_tbl: u,
            tbl_family: u,
            drop_filter_len: 0,
            wakeup_bytes: 0,
        }
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

/// Ring-buffer size used when the user does not choose one (bytes, power of two).
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;

const _: () = assert!(core::mem::size_of::<EventHeader>() == 40);
const _: () = assert!(core::mem::size_of::<FdbEvent>() == 80);
const _: () = assert!(core::mem::size_of::<ArpEvent>() == 64);
const _: () = assert!(core::mem::size_of::<NeighEvent>() == 88);
const _: () = assert!(core::mem::size_of::<TcpEvent>() == 88);
const _: () = assert!(core::mem::size_of::<DropEvent>() == 96);
const _: () = assert!(core::mem::size_of::<KernelConfig>() == 36 * 4);

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
}
