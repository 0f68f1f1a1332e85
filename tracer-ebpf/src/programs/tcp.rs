//! TCP programs (group `tcp`; user side `tracer/src/probes/tcp.rs`).

use core::mem::size_of;

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_jiffies64},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_ebpf::{kind, IcmpEvent, TcpAbortEvent, TcpEvent};

use super::{
    common::{fill_dev, rd, reserve, sk_netns, skb_tuple, Tuple, AF_INET, AF_INET6, IPPROTO_TCP},
    snap::{begin, output, snap_tcp_segment, snaplen},
};

/// Local and remote address of a socket (`struct sock_common`) into
/// `saddr`/`daddr`; returns (local port, remote port, family).
#[inline(always)]
unsafe fn sock_ends(sk: *const u8, saddr: &mut [u8; 16], daddr: &mut [u8; 16]) -> (u16, u16, u16) {
    let family = rd::<u16>(sk, off!(sk_family)).unwrap_or(0);
    let sport = rd::<u16>(sk, off!(sk_num)).unwrap_or(0);
    let dport = u16::from_be(rd::<u16>(sk, off!(sk_dport)).unwrap_or(0));
    if family == AF_INET6 {
        let _ = bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_v6_rcv_saddr)), saddr);
        let _ = bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_v6_daddr)), daddr);
    } else {
        let _ = bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_rcv_saddr)), &mut saddr[..4]);
        let _ = bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_daddr)), &mut daddr[..4]);
    }
    (sport, dport, family)
}

/// Local/remote addresses, ports, family and state from `struct sock_common`.
#[inline(always)]
unsafe fn fill_sock(p: *mut TcpEvent, sk: *const u8) {
    (*p).has_sk = 1;
    let (sport, dport, family) = sock_ends(sk, &mut (*p).saddr, &mut (*p).daddr);
    (*p).family = family;
    (*p).state = rd::<u8>(sk, off!(sk_state)).unwrap_or(0);
    (*p).sport = sport;
    (*p).dport = dport;
    (*p).hdr.netns = sk_netns(sk);
}

/// How long the socket has heard no ACK, and its RTO, in milliseconds.
///
/// `tcp_sock.rcv_tstamp` and `icsk_rto` are in jiffies (`rcv_tstamp` is
/// `tcp_jiffies32`, the low 32 bits of `jiffies`); now is `bpf_jiffies64()`
/// truncated the same way, so the wrapping difference is exact. User space
/// hands the tick rate in `CONFIG.hz` (from the kernel's config); without it,
/// or when a field did not resolve, the fields stay 0 (unknown).
#[inline(always)]
unsafe fn fill_idle(p: *mut TcpEvent, sk: *const u8) {
    let hz = off!(hz) as u64;
    if hz == 0 {
        return;
    }
    if let Ok(stamp) = rd::<u32>(sk, off!(tcp_rcv_tstamp)) {
        let now = bpf_jiffies64() as u32;
        let age = now.wrapping_sub(stamp) as u64;
        (*p).ack_age_ms = (age * 1000 / hz).min(u32::MAX as u64) as u32;
    }
    if let Ok(rto) = rd::<u32>(sk, off!(icsk_rto)) {
        (*p).rto_ms = (rto as u64 * 1000 / hz).min(u32::MAX as u64) as u32;
    }
}

/// What was retransmitted and the MSS/path MTU it was cut for: the skb's
/// length and segments (`TCP_SKB_CB(skb)`), `mss_cache`, `icsk_pmtu_cookie`.
/// Fields that do not resolve stay 0 (unknown).
#[inline(always)]
unsafe fn fill_segment(p: *mut TcpEvent, sk: *const u8, skb: *const u8) {
    if !skb.is_null() {
        (*p).seg_len = rd::<u32>(skb, off!(skb_len)).unwrap_or(0);
        let cb = skb.wrapping_add(off!(skb_cb));
        (*p).gso_segs = rd::<u16>(cb, off!(tcb_gso_segs)).unwrap_or(0);
        (*p).gso_size = rd::<u16>(cb, off!(tcb_gso_size)).unwrap_or(0);
    }
    (*p).mss = rd::<u32>(sk, off!(tcp_mss_cache)).unwrap_or(0);
    (*p).pmtu = rd::<u32>(sk, off!(icsk_pmtu_cookie)).unwrap_or(0);
}

/// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, ...)`
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return 0;
    }
    let skb: *const u8 = ctx.arg(1);
    if snaplen() != 0 {
        let Some(buf) = begin::<TcpEvent>(kind::TCP_RETRANSMIT) else {
            return 0;
        };
        unsafe {
            let p = buf as *mut TcpEvent;
            fill_retransmit(p, sk);
            fill_segment(p, sk, skb);
            let len = if skb.is_null() {
                size_of::<TcpEvent>() + size_of::<tracer_ebpf::Snapshot>()
            } else {
                snap_tcp_segment(buf, size_of::<TcpEvent>(), sk, skb)
            };
            output(buf, len, kind::TCP_RETRANSMIT, 0);
        }
        return 0;
    }
    let Some(mut e) = reserve::<TcpEvent>(kind::TCP_RETRANSMIT) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        fill_retransmit(p, sk);
        fill_segment(p, sk, skb);
    }
    e.submit(0);
    0
}

#[inline(always)]
unsafe fn fill_retransmit(p: *mut TcpEvent, sk: *const u8) {
    fill_sock(p, sk);
    (*p).snd_una = rd::<u32>(sk, off!(tcp_snd_una)).unwrap_or(0);
    (*p).retransmits = rd::<u8>(sk, off!(icsk_retransmits)).unwrap_or(0);
    fill_idle(p, sk);
}

/// `tcp_send_reset(const struct sock *sk, const struct sk_buff *skb, ...)`:
/// either may be NULL. Like the kernel's own tracepoint, the tuple comes
/// from the skb (reversed: the reset answers it) when there is one.
#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: RawTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    let skb: *const u8 = ctx.arg(1);
    let Some(mut e) = reserve::<TcpEvent>(kind::TCP_SEND_RESET) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        if !sk.is_null() {
            fill_sock(p, sk);
        }
        if !skb.is_null() {
            let mut t = Tuple::EMPTY;
            skb_tuple(skb, &mut t);
            if t.l4proto == IPPROTO_TCP {
                (*p).saddr = t.daddr;
                (*p).daddr = t.saddr;
                (*p).sport = t.dport;
                (*p).dport = t.sport;
                (*p).family = if t.version == 6 { AF_INET6 } else { AF_INET };
            }
            if sk.is_null() {
                let dev = rd::<*const u8>(skb, off!(skb_dev)).unwrap_or_default();
                fill_dev(&mut (*p).hdr, dev);
            }
        }
    }
    e.submit(0);
    0
}

/// `tcp_receive_reset(struct sock *sk)`
#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: RawTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return 0;
    }
    let Some(mut e) = reserve::<TcpEvent>(kind::TCP_RECEIVE_RESET) else {
        return 0;
    };
    unsafe { fill_sock(e.as_mut_ptr(), sk) };
    e.submit(0);
    0
}

/// `inet_sock_set_state(const struct sock *sk, const int oldstate, const int newstate)`:
/// only a TCP socket the kernel closes with an error (`sk_err` set: a
/// connect refused, unreachable or timed out, a connection reset), or one
/// closing from `SYN_SENT` (a connect given up: its process may have read
/// and cleared the error). Ordinary state changes (every connection makes
/// several) cost one read (`sk_err`) and send nothing.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return 0;
    }
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if old == new {
        return 0;
    }
    let err = unsafe { rd::<i32>(sk, off!(sk_err)) }.unwrap_or(0);
    let syn_sent = off!(tcp_syn_sent) as i32;
    let gave_up = syn_sent != 0 && old == syn_sent && new == off!(tcp_close) as i32;
    if err <= 0 && !gave_up {
        return 0;
    }
    let Some(mut e) = reserve::<TcpAbortEvent>(kind::TCP_ABORT) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        let (_, dport, family) = sock_ends(sk, &mut (*p).saddr, &mut (*p).daddr);
        // `skc_num` is already 0 when a closing socket gave its port back.
        (*p).sport = u16::from_be(rd::<u16>(sk, off!(inet_sport)).unwrap_or(0));
        (*p).dport = dport;
        (*p).family = family;
        (*p).old_state = old as u8;
        (*p).new_state = new as u8;
        (*p).sk_err = err.max(0) as u32;
        (*p).sk_err_soft = rd::<i32>(sk, off!(sk_err_soft)).unwrap_or(0).max(0) as u32;
        (*p).protocol = rd::<u16>(sk, off!(sk_protocol)).unwrap_or(0);
        (*p).hdr.netns = sk_netns(sk);
    }
    e.submit(0);
    0
}

/// `icmp_send(const struct sk_buff *skb, int type, int code)` (where the kernel has it):
/// the kernel answers `skb` with an ICMP error. Only errors about TCP
/// packets are sent (a UDP flood to closed ports makes one per datagram,
/// and its `NO_SOCKET` drops already say it). The header names where the
/// packet arrived (`skb->dev`, else the socket's namespace); `sender` is
/// that interface's first IPv4 address.
#[raw_tracepoint(tracepoint = "icmp_send")]
pub fn icmp_send(ctx: RawTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    if skb.is_null() {
        return 0;
    }
    let mut t = Tuple::EMPTY;
    unsafe { skb_tuple(skb, &mut t) };
    if t.l4proto != IPPROTO_TCP {
        return 0;
    }
    let icmp_type: i32 = ctx.arg(1);
    let icmp_code: i32 = ctx.arg(2);
    let Some(mut e) = reserve::<IcmpEvent>(kind::ICMP_SEND) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        (*p).saddr = t.saddr;
        (*p).daddr = t.daddr;
        (*p).sport = t.sport;
        (*p).dport = t.dport;
        (*p).l4proto = t.l4proto;
        (*p).ip_version = t.version;
        (*p).icmp_type = icmp_type as u8;
        (*p).icmp_code = icmp_code as u8;
        let dev = rd::<*const u8>(skb, off!(skb_dev)).unwrap_or_default();
        if !dev.is_null() {
            fill_dev(&mut (*p).hdr, dev);
            if let Ok(ind) = rd::<*const u8>(dev, off!(dev_ip_ptr)) {
                if !ind.is_null() {
                    if let Ok(ifa) = rd::<*const u8>(ind, off!(in_dev_ifa_list)) {
                        if !ifa.is_null() {
                            (*p).sender = rd::<[u8; 4]>(ifa, off!(ifa_local)).unwrap_or([0; 4]);
                        }
                    }
                }
            }
        }
        if (*p).hdr.netns == 0 {
            let sk = rd::<*const u8>(skb, off!(skb_sk)).unwrap_or_default();
            if !sk.is_null() {
                (*p).hdr.netns = sk_netns(sk);
            }
        }
    }
    e.submit(0);
    0
}
