//! TCP programs (group `tcp`; user side `tracer/src/probes/tcp.rs`).

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_jiffies64},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_ebpf::{kind, TcpEvent};

use super::common::{
    fill_dev, rd, reserve, sk_netns, skb_tuple, Tuple, AF_INET, AF_INET6, IPPROTO_TCP,
};

/// Local/remote addresses, ports, family and state from `struct sock_common`.
#[inline(always)]
unsafe fn fill_sock(p: *mut TcpEvent, sk: *const u8) {
    (*p).has_sk = 1;
    let family = rd::<u16>(sk, off!(sk_family)).unwrap_or(0);
    (*p).family = family;
    (*p).state = rd::<u8>(sk, off!(sk_state)).unwrap_or(0);
    (*p).sport = rd::<u16>(sk, off!(sk_num)).unwrap_or(0);
    (*p).dport = u16::from_be(rd::<u16>(sk, off!(sk_dport)).unwrap_or(0));
    if family == AF_INET6 {
        let _ = bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_v6_rcv_saddr)), &mut (*p).saddr);
        let _ = bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_v6_daddr)), &mut (*p).daddr);
    } else {
        let _ = bpf_probe_read_kernel_buf(
            sk.wrapping_add(off!(sk_rcv_saddr)),
            &mut (&mut (*p).saddr)[..4],
        );
        let _ =
            bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_daddr)), &mut (&mut (*p).daddr)[..4]);
    }
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

/// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, ...)`
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return 0;
    }
    let Some(mut e) = reserve::<TcpEvent>(kind::TCP_RETRANSMIT) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        fill_sock(p, sk);
        (*p).snd_una = rd::<u32>(sk, off!(tcp_snd_una)).unwrap_or(0);
        (*p).retransmits = rd::<u8>(sk, off!(icsk_retransmits)).unwrap_or(0);
        fill_idle(p, sk);
    }
    e.submit(0);
    0
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
