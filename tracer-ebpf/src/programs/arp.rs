//! ARP programs (group `arp`; user side `tracer/src/probes/arp.rs`).

use core::mem::size_of;

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_buf, macros::raw_tracepoint, programs::RawTracePointContext,
};
use tracer_ebpf::{kind, ArpEvent, NeighEvent};

use super::{
    common::{
        dev_netns, fill_dev, fill_dev_in, rd, reserve, within_budget, AF_INET, AF_INET6, ETH_P_ARP,
    },
    snap::{begin, output, skb_geom, snap_packet, snaplen},
};

/// `netif_receive_skb(struct sk_buff *skb)`: every received frame; anything
/// that is not ARP leaves after one 2-byte read.
#[raw_tracepoint(tracepoint = "netif_receive_skb")]
pub fn netif_receive_skb(ctx: RawTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    unsafe {
        match rd::<u16>(skb, off!(skb_protocol)) {
            Ok(p) if u16::from_be(p) == ETH_P_ARP => {}
            _ => return 0,
        }
        // eth_type_trans has pulled the Ethernet header: data is the ARP header.
        let Ok(data) = rd::<*const u8>(skb, off!(skb_data)) else {
            return 0;
        };
        let Ok(a) = rd::<[u8; 28]>(data, 0) else {
            return 0;
        };
        // hlen 6, plen 4, ptype IPv4, oper reply (2)
        if a[4] != 6 || a[5] != 4 || a[2] != 0x08 || a[3] != 0x00 || a[6] != 0 || a[7] != 2 {
            return 0;
        }
        // ARP replies can be flooded (CAP_NET_RAW): each namespace has its
        // own budget, so one flood cannot fill the ring for the others.
        let dev = rd::<*const u8>(skb, off!(skb_dev)).unwrap_or_default();
        let netns = dev_netns(dev);
        if !within_budget(kind::ARP_REPLY, netns) {
            return 0;
        }
        if snaplen() != 0 {
            let Some(buf) = begin::<ArpEvent>(kind::ARP_REPLY) else {
                return 0;
            };
            fill_arp(buf as *mut ArpEvent, &a, dev, netns);
            let len = match skb_geom(skb) {
                Some(mut g) => {
                    // The network header is set after this tracepoint:
                    // data is the ARP header (see above).
                    g.nh = g.data_off as u16;
                    snap_packet(buf, size_of::<ArpEvent>(), &g, ETH_P_ARP)
                }
                None => size_of::<ArpEvent>() + size_of::<tracer_ebpf::Snapshot>(),
            };
            output(buf, len, kind::ARP_REPLY, 0);
            return 0;
        }
        let Some(mut e) = reserve::<ArpEvent>(kind::ARP_REPLY) else {
            return 0;
        };
        fill_arp(e.as_mut_ptr(), &a, dev, netns);
        e.submit(0);
    }
    0
}

/// The reply's fields and the receiving device.
#[inline(always)]
unsafe fn fill_arp(p: *mut ArpEvent, a: &[u8; 28], dev: *const u8, netns: u32) {
    (*p).oper = 2;
    (*p).hw_type = u16::from_be_bytes([a[0], a[1]]);
    (*p).sender_mac.copy_from_slice(&a[8..14]);
    (*p).sender_ip.copy_from_slice(&a[14..18]);
    (*p).target_mac.copy_from_slice(&a[18..24]);
    (*p).target_ip.copy_from_slice(&a[24..28]);
    fill_dev_in(&mut (*p).hdr, dev, netns);
}

/// `neigh_update(struct neighbour *n, const u8 *lladdr, u8 new, u32 flags, u32 nlmsg_pid)`
#[raw_tracepoint(tracepoint = "neigh_update")]
pub fn neigh_update(ctx: RawTracePointContext) -> i32 {
    let n: *const u8 = ctx.arg(0);
    let lladdr: *const u8 = ctx.arg(1);
    let new: u64 = ctx.arg(2);
    let flags: u64 = ctx.arg(3);
    let Some(mut e) = reserve::<NeighEvent>(kind::NEIGH_UPDATE) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        let tbl = rd::<*const u8>(n, off!(neigh_tbl)).unwrap_or_default();
        let family = if tbl.is_null() {
            0
        } else {
            rd::<i32>(tbl, off!(tbl_family)).unwrap_or(0) as u16
        };
        (*p).family = family;
        let key = n.wrapping_add(off!(neigh_primary_key));
        if family == AF_INET6 {
            let _ = bpf_probe_read_kernel_buf(key, &mut (*p).key);
        } else if family == AF_INET {
            let _ = bpf_probe_read_kernel_buf(key, &mut (&mut (*p).key)[..4]);
        }
        let _ = bpf_probe_read_kernel_buf(
            n.wrapping_add(off!(neigh_ha)),
            &mut (&mut (*p).old_lladdr)[..6],
        );
        (*p).lladdr_len = 6;
        (*p).old_state = rd::<u8>(n, off!(neigh_nud_state)).unwrap_or(0);
        (*p).new_state = new as u8;
        (*p).update_flags = flags as u32;
        if !lladdr.is_null() {
            (*p).has_new_lladdr = 1;
            let _ = bpf_probe_read_kernel_buf(lladdr, &mut (&mut (*p).new_lladdr)[..6]);
        }
        let dev = rd::<*const u8>(n, off!(neigh_dev)).unwrap_or_default();
        fill_dev(&mut (*p).hdr, dev);
    }
    e.submit(0);
    0
}
