//! Packet snapshots (`--snaplen`): the first bytes of a dropped packet, an
//! ARP reply or a retransmitted segment, after the record.
//!
//! A record with a snapshot has a variable length (the record struct, a
//! [`Snapshot`] header, `caplen` bytes), which `bpf_ringbuf_reserve` cannot
//! give (its size must be a constant): it is built in a per-CPU scratch
//! buffer and copied into the ring with `bpf_ringbuf_output`, so it takes
//! only the room it needs. With `--snaplen 0` the programs keep reserving
//! the plain struct in the ring, exactly as without this module.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::{
        bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_probe_read_kernel as read_raw,
    },
    macros::map,
    maps::PerCpuArray,
};
use tracer_ebpf::{
    EventHeader, Snapshot, SNAP_FROM_MAC, SNAP_FROM_NETWORK, SNAP_FROM_TCP_PAYLOAD, SNAP_MAX,
    SNAP_RECORD_MAX, UNRESOLVED,
};

use super::common::{count_lost, rd, ETH_P_IP, ETH_P_IPV6, EVENTS, HEADER_UNSET};

/// The record being built, per CPU (programs do not nest on one CPU for
/// the tracepoints we attach to: each runs with preemption off and the
/// kernel does not re-enter a raw tracepoint program on the same CPU).
#[map]
static SNAP_RECORD: PerCpuArray<[u8; SNAP_RECORD_MAX]> = PerCpuArray::with_max_entries(1, 0);

const SNAP_HDR: usize = core::mem::size_of::<Snapshot>();
const ETH_HLEN: u16 = 14;

/// The snapshot length asked for (`--snaplen`, at most [`SNAP_MAX`]); 0: off.
#[inline(always)]
pub(crate) fn snaplen() -> u32 {
    let n = off!(snaplen) as u32;
    if n > SNAP_MAX {
        SNAP_MAX
    } else {
        n
    }
}

/// Where an skb's bytes are: `head`, offsets from it, its length and the
/// part of that length not in the linear area.
pub(crate) struct Geom {
    pub(crate) head: *const u8,
    /// `data - head`.
    pub(crate) data_off: u32,
    pub(crate) mac: u16,
    pub(crate) nh: u16,
    pub(crate) len: u32,
    pub(crate) data_len: u32,
}

impl Geom {
    /// End of the linear area, as an offset from `head`.
    #[inline(always)]
    fn linear_end(&self) -> u32 {
        self.data_off
            .wrapping_add(self.len.wrapping_sub(self.data_len))
    }
}

/// [`Geom`] of an skb, field by field (the drop program takes it from its
/// span instead). None when `head` or `data` cannot be read.
#[inline(always)]
pub(crate) unsafe fn skb_geom(skb: *const u8) -> Option<Geom> {
    let head = rd::<*const u8>(skb, off!(skb_head)).ok()?;
    let data = rd::<*const u8>(skb, off!(skb_data)).ok()?;
    if head.is_null() {
        return None;
    }
    Some(Geom {
        head,
        data_off: (data as usize).wrapping_sub(head as usize) as u32,
        mac: rd::<u16>(skb, off!(skb_mac_header)).unwrap_or(HEADER_UNSET),
        nh: rd::<u16>(skb, off!(skb_network_header)).unwrap_or(HEADER_UNSET),
        len: rd::<u32>(skb, off!(skb_len)).unwrap_or(0),
        data_len: rd::<u32>(skb, off!(skb_data_len)).unwrap_or(0),
    })
}

/// Starts a record of type `T` in the per-CPU scratch buffer: the struct
/// and the snapshot header zeroed, the event header's time, kind and CPU
/// filled. None when the buffer cannot be had (never expected; counted as
/// lost like a full ring).
#[inline(always)]
pub(crate) fn begin<T>(k: u32) -> Option<*mut u8> {
    let Some(buf) = SNAP_RECORD.get_ptr_mut(0) else {
        count_lost(k);
        return None;
    };
    let buf = buf as *mut u8;
    unsafe {
        core::ptr::write_bytes(buf, 0, core::mem::size_of::<T>() + SNAP_HDR);
        let h = buf as *mut EventHeader;
        (*h).ts_ns = bpf_ktime_get_boot_ns();
        (*h).kind = k;
        (*h).cpu = bpf_get_smp_processor_id();
    }
    Some(buf)
}

/// Copies up to `want` bytes at `head + start` (bounded by the linear end
/// `lin_end`) after the snapshot header at `buf + at`; returns the bytes copied.
#[inline(always)]
unsafe fn copy(buf: *mut u8, at: usize, head: *const u8, start: u32, lin_end: u32) -> u32 {
    if lin_end <= start {
        return 0;
    }
    // 64-bit throughout: the verifier must see the bound on the very
    // register passed as the size.
    let mut n = (lin_end - start) as u64;
    let want = snaplen() as u64;
    if n > want {
        n = want;
    }
    if n > SNAP_MAX as u64 {
        n = SNAP_MAX as u64;
    }
    if n == 0 {
        return 0;
    }
    let dst = buf.add(at + SNAP_HDR);
    if read_raw(
        dst.cast(),
        n as u32,
        head.wrapping_add(start as usize).cast(),
    ) != 0
    {
        return 0;
    }
    n as u32
}

/// The packet's first bytes after the record of `at` bytes at `buf`: from
/// the Ethernet header when the skb has one (14 bytes before the network
/// header), else from the network header of an IPv4/IPv6 packet; nothing
/// when neither is set. Returns the record's total length.
#[inline(always)]
pub(crate) unsafe fn snap_packet(buf: *mut u8, at: usize, g: &Geom, eth_proto: u16) -> usize {
    let sh = buf.add(at) as *mut Snapshot;
    let (start, from) = if g.mac != HEADER_UNSET
        && g.nh != HEADER_UNSET
        && g.nh > g.mac
        && g.nh - g.mac == ETH_HLEN
    {
        (g.mac as u32, SNAP_FROM_MAC)
    } else if g.nh != HEADER_UNSET && (eth_proto == ETH_P_IP || eth_proto == ETH_P_IPV6) {
        (g.nh as u32, SNAP_FROM_NETWORK)
    } else {
        return at + SNAP_HDR;
    };
    let n = copy(buf, at, g.head, start, g.linear_end());
    // Length from `start`: skb->len counts from data.
    let total = (g.len as i64) + (g.data_off as i64) - (start as i64);
    (*sh).len = if total < n as i64 {
        n
    } else if total > u32::MAX as i64 {
        u32::MAX
    } else {
        total as u32
    };
    (*sh).caplen = n as u16;
    (*sh).from = from;
    at + SNAP_HDR + n as usize
}

/// A segment in the TCP retransmit queue: no IP/TCP headers yet (they are
/// built at transmit), so the snapshot holds the linear payload and what
/// user space needs to rebuild the headers: the segment's sequence number
/// and flags (`tcp_skb_cb`, in `skb->cb`) and the socket's `rcv_nxt`.
#[inline(always)]
pub(crate) unsafe fn snap_tcp_segment(
    buf: *mut u8,
    at: usize,
    sk: *const u8,
    skb: *const u8,
) -> usize {
    // Without the control block's or the socket's offsets there is nothing
    // honest to rebuild the headers from: the record goes without a snapshot.
    let unresolved = UNRESOLVED as usize;
    if off!(skb_cb) == unresolved
        || off!(tcb_seq) == unresolved
        || off!(tcb_tcp_flags) == unresolved
        || off!(tcp_rcv_nxt) == unresolved
    {
        return at;
    }
    let sh = buf.add(at) as *mut Snapshot;
    let cb = off!(skb_cb);
    (*sh).seq = rd::<u32>(skb, cb.wrapping_add(off!(tcb_seq))).unwrap_or(0);
    // The low byte holds FIN..CWR whether the field is 8 or 16 bits wide.
    (*sh).tcp_flags = rd::<u8>(skb, cb.wrapping_add(off!(tcb_tcp_flags))).unwrap_or(0);
    (*sh).ack = rd::<u32>(sk, off!(tcp_rcv_nxt)).unwrap_or(0);
    (*sh).from = SNAP_FROM_TCP_PAYLOAD;
    let Some(g) = skb_geom(skb) else {
        return at + SNAP_HDR;
    };
    (*sh).len = g.len;
    let n = copy(buf, at, g.head, g.data_off, g.linear_end());
    (*sh).caplen = n as u16;
    at + SNAP_HDR + n as usize
}

/// Wake-up flags for a drop record: wake user space only once
/// `wakeup_bytes` wait in the ring (0: the kernel's default).
#[inline(always)]
pub(crate) fn drop_wakeup() -> u64 {
    let watermark = off!(wakeup_bytes) as u64;
    if watermark == 0 {
        0
    } else if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= watermark {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Copies the `len`-byte record at `buf` into the ring; a full ring is
/// counted as a loss of kind `k`.
#[inline(always)]
pub(crate) fn output(buf: *mut u8, len: usize, k: u32, flags: u64) {
    let len = if len > SNAP_RECORD_MAX {
        SNAP_RECORD_MAX
    } else {
        len
    };
    // SAFETY: `buf` is the per-CPU scratch value of SNAP_RECORD_MAX bytes
    // and `len` is at most that.
    let rec = unsafe { core::slice::from_raw_parts(buf as *const u8, len) };
    if EVENTS.output::<[u8]>(rec, flags).is_err() {
        count_lost(k);
    }
}
