//! Bridge FDB programs (group `fdb`; user side `tracer/src/probes/bridge.rs`).

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_buf, macros::raw_tracepoint, programs::RawTracePointContext,
};
use tracer_ebpf::{kind, FdbEvent};

use super::{
    common::{dev_netns, rd, reserve, within_budget},
    klog,
};

/// `br_fdb_update(struct net_bridge *br, struct net_bridge_port *source,
///                const unsigned char *addr, u16 vid, unsigned long flags)`
/// Fires when an entry is created or its port/flags change.
#[raw_tracepoint(tracepoint = "br_fdb_update")]
pub fn br_fdb_update(ctx: RawTracePointContext) -> i32 {
    let br: *const u8 = ctx.arg(0);
    let port: *const u8 = ctx.arg(1);
    let addr: *const u8 = ctx.arg(2);
    let vid: u64 = ctx.arg(3);
    let flags: u64 = ctx.arg(4);
    // A random-source-MAC flood learns a new entry per frame: each
    // namespace has its own budget, so the moves in other bridges survive.
    let brdev = unsafe { bridge_dev(br, "br_fdb_update") };
    let netns = unsafe { dev_netns(brdev) };
    if !within_budget(kind::FDB_UPDATE, netns) {
        return 0;
    }
    let Some(mut e) = reserve::<FdbEvent>(kind::FDB_UPDATE) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        let _ = bpf_probe_read_kernel_buf(addr, &mut (*p).mac);
        (*p).vid = vid as u16;
        (*p).flags = flags;
        fill_bridge(p, brdev, netns, port);
    }
    e.submit(0);
    0
}

/// `br->dev`, null when unreadable (logged with `--kernel-log`: the
/// record then names no bridge and no namespace).
#[inline(always)]
unsafe fn bridge_dev(br: *const u8, probe: &'static str) -> *const u8 {
    match rd::<*const u8>(br, off!(br_dev)) {
        Ok(d) => d,
        Err(err) => {
            if klog::on() {
                klog::br_dev_unreadable(probe, off!(br_dev) as u32, err as i64);
            }
            core::ptr::null()
        }
    }
}

/// Bridge and port fields; `netns` is the bridge device's namespace.
#[inline(always)]
unsafe fn fill_bridge(p: *mut FdbEvent, brdev: *const u8, netns: u32, port: *const u8) {
    if !brdev.is_null() {
        (*p).br_ifindex = rd::<i32>(brdev, off!(dev_ifindex)).unwrap_or(0) as u32;
        let _ = bpf_probe_read_kernel_buf(brdev.wrapping_add(off!(dev_name)), &mut (*p).br_name);
        (*p).hdr.netns = netns;
    }
    if !port.is_null() {
        if let Ok(pdev) = rd::<*const u8>(port, off!(port_dev)) {
            if !pdev.is_null() {
                (*p).hdr.ifindex = rd::<i32>(pdev, off!(dev_ifindex)).unwrap_or(0) as u32;
                let _ = bpf_probe_read_kernel_buf(
                    pdev.wrapping_add(off!(dev_name)),
                    &mut (*p).hdr.ifname,
                );
            }
        }
    }
}

/// `fdb_delete(struct net_bridge *br, struct net_bridge_fdb_entry *f)`
/// Ageing, flush, port removal and user deletes all pass here.
#[raw_tracepoint(tracepoint = "fdb_delete")]
pub fn fdb_delete(ctx: RawTracePointContext) -> i32 {
    let br: *const u8 = ctx.arg(0);
    let f: *const u8 = ctx.arg(1);
    let Some(mut e) = reserve::<FdbEvent>(kind::FDB_DELETE) else {
        return 0;
    };
    let p = e.as_mut_ptr();
    unsafe {
        let _ = bpf_probe_read_kernel_buf(f.wrapping_add(off!(fdb_addr)), &mut (*p).mac);
        (*p).vid = rd::<u16>(f, off!(fdb_vlan_id)).unwrap_or(0);
        (*p).flags = rd::<u64>(f, off!(fdb_flags)).unwrap_or(0);
        let port = rd::<*const u8>(f, off!(fdb_dst)).unwrap_or_default();
        let brdev = bridge_dev(br, "fdb_delete");
        fill_bridge(p, brdev, dev_netns(brdev), port);
    }
    e.submit(0);
    0
}
