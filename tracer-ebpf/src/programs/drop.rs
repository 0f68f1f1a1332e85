//! The drop program (group `drop`; user side `tracer/src/probes/drop.rs`).

use core::mem::size_of;

use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::{Array, PerCpuArray},
    programs::RawTracePointContext,
};
use tracer_ebpf::{kind, DropEvent, DROP_FILTER_SLOTS};

use super::{
    common::{
        drop_budget, fill_dev, rd, reserve, sk_netns, skb_facts, skb_tuple, DropBudget, Tuple,
        CONFIG,
    },
    klog,
    snap::{begin, drop_wakeup, output, skb_geom, snap_packet, snaplen, Geom},
};

/// Non-zero at index `reason`: do not send drops with that reason, count them.
#[map]
static DROP_FILTER: Array<u8> = Array::with_max_entries(DROP_FILTER_SLOTS, 0);

/// Drops filtered in the kernel, per CPU, indexed by reason.
#[map]
static DROP_FILTERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_FILTER_SLOTS, 0);

/// `kfree_skb(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn kfree_skb(ctx: RawTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason = ctx.arg::<u64>(2) as u32;
    if reason < off!(drop_filter_len) as u32 {
        if let Some(f) = DROP_FILTER.get(reason) {
            if *f != 0 {
                if let Some(c) = DROP_FILTERED.get_ptr_mut(reason) {
                    unsafe { *c += 1 };
                }
                return 0;
            }
        }
    }
    // A storm's drops beyond their place's budget stop here, counted.
    let budget = drop_budget(skb, location, reason);
    if let DropBudget::HeldBack = budget {
        return 0;
    }
    if snaplen() != 0 {
        return kfree_skb_snap(skb, location, reason, budget);
    }
    let Some(mut e) = reserve::<DropEvent>(kind::SKB_DROP) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        fill_drop(p, skb, location, reason, false);
        budget.sent_from((*p).hdr.netns);
    }
    submit_drop(e)
}

/// [`kfree_skb`] with a packet snapshot (`--snaplen`): the record is built
/// in the scratch buffer and copied into the ring at its real length.
#[inline(always)]
fn kfree_skb_snap(skb: *const u8, location: u64, reason: u32, budget: DropBudget) -> i32 {
    let Some(buf) = begin::<DropEvent>(kind::SKB_DROP) else {
        return 0;
    };
    let p = buf as *mut DropEvent;
    unsafe {
        let len = match fill_drop(p, skb, location, reason, true) {
            Some(g) => snap_packet(buf, size_of::<DropEvent>(), &g, (*p).eth_proto),
            None => size_of::<DropEvent>() + size_of::<tracer_ebpf::Snapshot>(),
        };
        budget.sent_from((*p).hdr.netns);
        output(buf, len, kind::SKB_DROP, drop_wakeup());
    }
    0
}

/// Fills a drop record; with `geom`, also returns where the packet's bytes
/// are (from the skb span when there is one, else read field by field).
#[inline(always)]
unsafe fn fill_drop(
    p: *mut DropEvent,
    skb: *const u8,
    location: u64,
    reason: u32,
    geom: bool,
) -> Option<Geom> {
    (*p).location = location;
    (*p).reason = reason;
    let mut t = Tuple::EMPTY;
    if let Some(g) = skb_facts(skb, &mut (*p).hdr, &mut t) {
        (*p).saddr = t.saddr;
        (*p).daddr = t.daddr;
        (*p).sport = t.sport;
        (*p).dport = t.dport;
        (*p).l4proto = t.l4proto;
        (*p).ip_version = t.version;
        (*p).eth_proto = t.eth_proto;
        return if geom { g } else { None };
    }
    // Spans set but not read: the fallback below is the slow path.
    if klog::on() && core::ptr::read_volatile(core::ptr::addr_of!(CONFIG.skb_span.len)) != 0 {
        klog::skb_span_failed(skb as u64);
    }
    // The span path may have filled part of the tuple and header before
    // it gave up: start again.
    t = Tuple::EMPTY;
    (*p).hdr.ifindex = 0;
    (*p).hdr.ifname = [0; tracer_ebpf::IFNAMSIZ];
    (*p).hdr.netns = 0;
    skb_tuple(skb, &mut t);
    (*p).saddr = t.saddr;
    (*p).daddr = t.daddr;
    (*p).sport = t.sport;
    (*p).dport = t.dport;
    (*p).l4proto = t.l4proto;
    (*p).ip_version = t.version;
    (*p).eth_proto = t.eth_proto;
    let dev = match rd::<*const u8>(skb, off!(skb_dev)) {
        Ok(d) => d,
        Err(err) => {
            if klog::on() {
                klog::skb_dev_unreadable(off!(skb_dev) as u32, err as i64);
            }
            core::ptr::null()
        }
    };
    fill_dev(&mut (*p).hdr, dev);
    if (*p).hdr.netns == 0 {
        let sk = rd::<*const u8>(skb, off!(skb_sk)).unwrap_or_default();
        if !sk.is_null() {
            (*p).hdr.netns = sk_netns(sk);
        }
    }
    if geom {
        skb_geom(skb)
    } else {
        None
    }
}

#[inline(always)]
fn submit_drop(e: aya_ebpf::maps::ring_buf::RingBufEntry<DropEvent>) -> i32 {
    // Drops come in storms: batch them. Wake user space only once enough
    // is waiting (it also drains on a short timer), so a flood costs one
    // wake-up per batch instead of one per packet.
    e.submit(drop_wakeup());
    0
}
