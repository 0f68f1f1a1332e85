//! tracer's eBPF programs: raw tracepoints only (no kprobes, no fentry), so
//! they load on kernels that refuse tracing programs.
//!
//! Each program names the kernel prototype it depends on. Argument positions
//! are the `TP_PROTO` order, checked by user space against BTF's
//! `btf_trace_<name>` typedefs before attaching; struct offsets come from BTF
//! through `CONFIG`.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
        helpers::{
            bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
            generated::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
        },
        macros::{map, raw_tracepoint},
        maps::{Array, PerCpuArray, RingBuf},
        programs::RawTracePointContext,
    };
    use tracer_ebpf::{
        kind, ArpEvent, DropEvent, EventHeader, FdbEvent, KernelConfig, NeighEvent, TcpEvent,
        DEFAULT_RING_BYTES, DROP_FILTER_SLOTS,
    };

    /// Offsets from BTF, written by user space before load (.rodata).
    #[no_mangle]
    static CONFIG: KernelConfig = KernelConfig::unresolved();

    #[map]
    static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

    /// Failed ring-buffer reserves, per CPU, indexed by event kind.
    #[map]
    static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::MAX, 0);

    /// Non-zero at index `reason`: do not send drops with that reason, count them.
    #[map]
    static DROP_FILTER: Array<u8> = Array::with_max_entries(DROP_FILTER_SLOTS, 0);

    /// Drops filtered in the kernel, per CPU, indexed by reason.
    #[map]
    static DROP_FILTERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_FILTER_SLOTS, 0);

    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86DD;
    const ETH_P_ARP: u16 = 0x0806;
    const IPPROTO_TCP: u8 = 6;
    const IPPROTO_UDP: u8 = 17;
    const IPPROTO_SCTP: u8 = 132;
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    const HEADER_UNSET: u16 = 0xFFFF;

    macro_rules! off {
        ($field:ident) => {
            // Volatile: the value is patched into .rodata at load time.
            {
                #[allow(unused_unsafe)]
                let v = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(CONFIG.$field)) };
                v as usize
            }
        };
    }

    #[inline(always)]
    unsafe fn rd<T>(base: *const u8, off: usize) -> Result<T, i32> {
        bpf_probe_read_kernel(base.wrapping_add(off) as *const T)
    }

    #[inline(always)]
    fn count_lost(k: u32) {
        if let Some(c) = LOST.get_ptr_mut(k) {
            unsafe { *c += 1 };
        }
    }

    /// Reserves a zeroed record of type `T` whose header is filled with time,
    /// kind and CPU. On a full ring buffer, counts the loss and returns None.
    #[inline(always)]
    fn reserve<T: 'static>(k: u32) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
        match EVENTS.reserve::<T>(0) {
            Some(mut e) => {
                let p = e.as_mut_ptr();
                unsafe {
                    core::ptr::write_bytes(p as *mut u8, 0, core::mem::size_of::<T>());
                    let h = p as *mut EventHeader;
                    (*h).ts_ns = bpf_ktime_get_boot_ns();
                    (*h).kind = k;
                    (*h).cpu = bpf_get_smp_processor_id();
                }
                Some(e)
            }
            None => {
                count_lost(k);
                None
            }
        }
    }

    /// `dev->nd_net.net->ns.inum`, 0 when unreadable.
    #[inline(always)]
    unsafe fn dev_netns(dev: *const u8) -> u32 {
        if dev.is_null() {
            return 0;
        }
        match rd::<*const u8>(dev, off!(dev_nd_net)) {
            Ok(net) if !net.is_null() => rd::<u32>(net, off!(net_ns_inum)).unwrap_or(0),
            _ => 0,
        }
    }

    /// Fills ifindex, name and netns of a header from a `struct net_device *`.
    #[inline(always)]
    unsafe fn fill_dev(h: *mut EventHeader, dev: *const u8) {
        if dev.is_null() {
            return;
        }
        (*h).ifindex = rd::<i32>(dev, off!(dev_ifindex)).unwrap_or(0) as u32;
        let _ = bpf_probe_read_kernel_buf(dev.wrapping_add(off!(dev_name)), &mut (*h).ifname);
        (*h).netns = dev_netns(dev);
    }

    /// `sk->__sk_common.skc_net.net->ns.inum`.
    #[inline(always)]
    unsafe fn sk_netns(sk: *const u8) -> u32 {
        match rd::<*const u8>(sk, off!(sk_net)) {
            Ok(net) if !net.is_null() => rd::<u32>(net, off!(net_ns_inum)).unwrap_or(0),
            _ => 0,
        }
    }

    struct Tuple {
        saddr: [u8; 16],
        daddr: [u8; 16],
        sport: u16,
        dport: u16,
        l4proto: u8,
        version: u8,
        eth_proto: u16,
    }

    impl Tuple {
        const EMPTY: Tuple = Tuple {
            saddr: [0; 16],
            daddr: [0; 16],
            sport: 0,
            dport: 0,
            l4proto: 0,
            version: 0,
            eth_proto: 0,
        };
    }

    /// Parses IPv4/IPv6 + TCP/UDP/SCTP ports from an skb's network header.
    #[inline(always)]
    unsafe fn skb_tuple(skb: *const u8, t: &mut Tuple) {
        t.eth_proto = u16::from_be(rd::<u16>(skb, off!(skb_protocol)).unwrap_or(0));
        let head = match rd::<*const u8>(skb, off!(skb_head)) {
            Ok(h) if !h.is_null() => h,
            _ => return,
        };
        let nh = rd::<u16>(skb, off!(skb_network_header)).unwrap_or(HEADER_UNSET);
        if nh == HEADER_UNSET {
            return;
        }
        let ip = head.wrapping_add(nh as usize);
        let l4: *const u8;
        if t.eth_proto == ETH_P_IP {
            let Ok(b) = rd::<[u8; 20]>(ip, 0) else { return };
            if b[0] >> 4 != 4 {
                return;
            }
            t.version = 4;
            t.l4proto = b[9];
            t.saddr[..4].copy_from_slice(&b[12..16]);
            t.daddr[..4].copy_from_slice(&b[16..20]);
            // Fragment offset non-zero: no transport header in this skb.
            if (u16::from_be_bytes([b[6], b[7]]) & 0x1FFF) != 0 {
                return;
            }
            l4 = ip.wrapping_add(((b[0] & 0x0F) as usize) * 4);
        } else if t.eth_proto == ETH_P_IPV6 {
            let Ok(b) = rd::<[u8; 40]>(ip, 0) else { return };
            if b[0] >> 4 != 6 {
                return;
            }
            t.version = 6;
            t.l4proto = b[6];
            t.saddr.copy_from_slice(&b[8..24]);
            t.daddr.copy_from_slice(&b[24..40]);
            l4 = ip.wrapping_add(40);
        } else {
            return;
        }
        if t.l4proto == IPPROTO_TCP || t.l4proto == IPPROTO_UDP || t.l4proto == IPPROTO_SCTP {
            if let Ok(p) = rd::<[u8; 4]>(l4, 0) {
                t.sport = u16::from_be_bytes([p[0], p[1]]);
                t.dport = u16::from_be_bytes([p[2], p[3]]);
            }
        }
    }

    // ---------------------------------------------------------------- bridge

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
        let Some(mut e) = reserve::<FdbEvent>(kind::FDB_UPDATE) else { return 0 };
        let p = e.as_mut_ptr();
        unsafe {
            let _ = bpf_probe_read_kernel_buf(addr, &mut (*p).mac);
            (*p).vid = vid as u16;
            (*p).flags = flags;
            fill_bridge(p, br, port);
        }
        e.submit(0);
        0
    }

    #[inline(always)]
    unsafe fn fill_bridge(p: *mut FdbEvent, br: *const u8, port: *const u8) {
        if let Ok(brdev) = rd::<*const u8>(br, off!(br_dev)) {
            if !brdev.is_null() {
                (*p).br_ifindex = rd::<i32>(brdev, off!(dev_ifindex)).unwrap_or(0) as u32;
                let _ = bpf_probe_read_kernel_buf(
                    brdev.wrapping_add(off!(dev_name)),
                    &mut (*p).br_name,
                );
                (*p).hdr.netns = dev_netns(brdev);
            }
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
        let Some(mut e) = reserve::<FdbEvent>(kind::FDB_DELETE) else { return 0 };
        let p = e.as_mut_ptr();
        unsafe {
            let _ = bpf_probe_read_kernel_buf(f.wrapping_add(off!(fdb_addr)), &mut (*p).mac);
            (*p).vid = rd::<u16>(f, off!(fdb_vlan_id)).unwrap_or(0);
            (*p).flags = rd::<u64>(f, off!(fdb_flags)).unwrap_or(0);
            let port = rd::<*const u8>(f, off!(fdb_dst)).unwrap_or(core::ptr::null());
            fill_bridge(p, br, port);
        }
        e.submit(0);
        0
    }

    // ------------------------------------------------------------------- ARP

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
            let Ok(data) = rd::<*const u8>(skb, off!(skb_data)) else { return 0 };
            let Ok(a) = rd::<[u8; 28]>(data, 0) else { return 0 };
            // hlen 6, plen 4, ptype IPv4, oper reply (2)
            if a[4] != 6 || a[5] != 4 || a[2] != 0x08 || a[3] != 0x00 || a[6] != 0 || a[7] != 2 {
                return 0;
            }
            let Some(mut e) = reserve::<ArpEvent>(kind::ARP_REPLY) else { return 0 };
            let p = e.as_mut_ptr();
            (*p).oper = 2;
            (*p).hw_type = u16::from_be_bytes([a[0], a[1]]);
            (*p).sender_mac.copy_from_slice(&a[8..14]);
            (*p).sender_ip.copy_from_slice(&a[14..18]);
            (*p).target_mac.copy_from_slice(&a[18..24]);
            (*p).target_ip.copy_from_slice(&a[24..28]);
            let dev = rd::<*const u8>(skb, off!(skb_dev)).unwrap_or(core::ptr::null());
            fill_dev(&mut (*p).hdr, dev);
            e.submit(0);
        }
        0
    }

    /// `neigh_update(struct neighbour *n, const u8 *lladdr, u8 new, u32 flags, u32 nlmsg_pid)`
    #[raw_tracepoint(tracepoint = "neigh_update")]
    pub fn neigh_update(ctx: RawTracePointContext) -> i32 {
        let n: *const u8 = ctx.arg(0);
        let lladdr: *const u8 = ctx.arg(1);
        let new: u64 = ctx.arg(2);
        let flags: u64 = ctx.arg(3);
        let Some(mut e) = reserve::<NeighEvent>(kind::NEIGH_UPDATE) else { return 0 };
        let p = e.as_mut_ptr();
        unsafe {
            let tbl = rd::<*const u8>(n, off!(neigh_tbl)).unwrap_or(core::ptr::null());
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
            let dev = rd::<*const u8>(n, off!(neigh_dev)).unwrap_or(core::ptr::null());
            fill_dev(&mut (*p).hdr, dev);
        }
        e.submit(0);
        0
    }

    // ------------------------------------------------------------------- TCP

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
            let _ = bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_rcv_saddr)), &mut (&mut (*p).saddr)[..4]);
            let _ = bpf_probe_read_kernel_buf(sk.wrapping_add(off!(sk_daddr)), &mut (&mut (*p).daddr)[..4]);
        }
        (*p).hdr.netns = sk_netns(sk);
    }

    /// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, ...)`
    #[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
    pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> i32 {
        let sk: *const u8 = ctx.arg(0);
        if sk.is_null() {
            return 0;
        }
        let Some(mut e) = reserve::<TcpEvent>(kind::TCP_RETRANSMIT) else { return 0 };
        let p = e.as_mut_ptr();
        unsafe {
            fill_sock(p, sk);
            (*p).snd_una = rd::<u32>(sk, off!(tcp_snd_una)).unwrap_or(0);
            (*p).retransmits = rd::<u8>(sk, off!(icsk_retransmits)).unwrap_or(0);
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
        let Some(mut e) = reserve::<TcpEvent>(kind::TCP_SEND_RESET) else { return 0 };
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
                    let dev = rd::<*const u8>(skb, off!(skb_dev)).unwrap_or(core::ptr::null());
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
        let Some(mut e) = reserve::<TcpEvent>(kind::TCP_RECEIVE_RESET) else { return 0 };
        unsafe { fill_sock(e.as_mut_ptr(), sk) };
        e.submit(0);
        0
    }

    // ----------------------------------------------------------------- drops

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
        let Some(mut e) = reserve::<DropEvent>(kind::SKB_DROP) else { return 0 };
        let p = e.as_mut_ptr();
        unsafe {
            (*p).location = location;
            (*p).reason = reason;
            let mut t = Tuple::EMPTY;
            skb_tuple(skb, &mut t);
            (*p).saddr = t.saddr;
            (*p).daddr = t.daddr;
            (*p).sport = t.sport;
            (*p).dport = t.dport;
            (*p).l4proto = t.l4proto;
            (*p).ip_version = t.version;
            (*p).eth_proto = t.eth_proto;
            let dev = rd::<*const u8>(skb, off!(skb_dev)).unwrap_or(core::ptr::null());
            fill_dev(&mut (*p).hdr, dev);
            if (*p).hdr.netns == 0 {
                let sk = rd::<*const u8>(skb, off!(skb_sk)).unwrap_or(core::ptr::null());
                if !sk.is_null() {
                    (*p).hdr.netns = sk_netns(sk);
                }
            }
        }
        // Drops come in storms: batch them. Wake user space only once enough
        // is waiting (it also drains on a short timer), so a flood costs one
        // wake-up per batch instead of one per packet.
        let watermark = off!(wakeup_bytes) as u64;
        let flags = if watermark == 0 {
            0
        } else if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= watermark {
            BPF_RB_FORCE_WAKEUP as u64
        } else {
            BPF_RB_NO_WAKEUP as u64
        };
        e.submit(flags);
        0
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
