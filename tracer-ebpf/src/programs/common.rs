//! What every program shares: the offsets (`CONFIG`), the ring buffer and
//! its loss counters, reading kernel memory, reserving a record, and filling
//! interface, namespace and packet tuple fields.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        generated::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_ktime_get_ns},
    },
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap, RingBuf},
};
use tracer_ebpf::{
    budget_key, kind, BudgetState, DropBudgetKey, DropBudgetState, EventHeader, KernelConfig, Span,
    BUDGET_ENTRIES, DEFAULT_RING_BYTES, DROP_BUDGET_ENTRIES, IFNAMSIZ, SPAN_MAX,
};

use super::klog;

/// Offsets from BTF, written by user space before load (.rodata).
#[no_mangle]
pub(crate) static CONFIG: KernelConfig = KernelConfig::unresolved();

#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Failed ring-buffer reserves, per CPU, indexed by event kind.
#[map]
pub(crate) static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::MAX, 0);

/// Per-kind, per-namespace budgets (see `KernelConfig::budgets`): the
/// current one-second window and the records held back, per CPU.
#[map]
pub(crate) static BUDGET: PerCpuHashMap<u64, BudgetState> =
    PerCpuHashMap::with_max_entries(BUDGET_ENTRIES, 0);

const WINDOW_NS: u64 = 1_000_000_000;

/// The budget of kind `k` (records per second per unit per CPU; 0: none).
#[inline(always)]
fn budget_of(k: u32) -> u64 {
    if k >= kind::MAX {
        return 0;
    }
    // SAFETY: CONFIG is a plain global patched before load; volatile so the
    // compiler does not fold the zero it holds at compile time.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(CONFIG.budgets[k as usize])) as u64 }
}

/// Spends one record of a budget window at `now`: true when it may be sent
/// (the window is renewed each second), false when the window's `limit` is
/// spent (then counted as held back).
#[inline(always)]
unsafe fn spend(s: *mut BudgetState, now: u64, limit: u64) -> bool {
    if now.wrapping_sub((*s).window_start_ns) >= WINDOW_NS {
        (*s).window_start_ns = now;
        (*s).sent = 0;
    }
    if (*s).sent < limit {
        (*s).sent += 1;
        true
    } else {
        (*s).held_back += 1;
        false
    }
}

/// A fresh window with one record sent.
#[inline(always)]
fn first_window(now: u64) -> BudgetState {
    BudgetState {
        window_start_ns: now,
        sent: 1,
        held_back: 0,
    }
}

/// Whether a record of kind `k` from namespace `netns` may be sent: true
/// when its kind has no budget or the namespace's budget for this second on
/// this CPU is not spent; otherwise counts it as held back and returns
/// false. A flood of one kind in one namespace therefore spends only its
/// own budget: other namespaces and other kinds keep theirs.
#[inline(always)]
pub(crate) fn within_budget(k: u32, netns: u32) -> bool {
    let limit = budget_of(k);
    if limit == 0 {
        return true;
    }
    let key = budget_key(k, netns);
    let now = unsafe { bpf_ktime_get_ns() };
    match BUDGET.get_ptr_mut(key) {
        Some(s) => unsafe { spend(s, now, limit) },
        None => {
            // A full map (more pairs than BUDGET_ENTRIES) leaves the pair
            // unbudgeted: sent, so still exactly accounted.
            let _ = BUDGET.insert(key, first_window(now), 0);
            true
        }
    }
}

/// Per-place drop budgets ([`DropBudgetKey`]): the window, what was held
/// back and the place's namespace, per CPU.
#[map]
pub(crate) static DROP_BUDGET: PerCpuHashMap<DropBudgetKey, DropBudgetState> =
    PerCpuHashMap::with_max_entries(DROP_BUDGET_ENTRIES, 0);

/// The outcome of [`drop_budget`] for one drop.
pub(crate) enum DropBudget {
    /// Drops have no budget: send.
    Off,
    /// Send; the place's state, to note its namespace in ([`DropBudget::sent_from`]).
    Sent(*mut DropBudgetState),
    /// Send; the place is new (inserted by [`DropBudget::sent_from`]).
    New(DropBudgetKey, u64),
    /// The place's budget for this second is spent: counted, do not send.
    HeldBack,
}

/// Spends one drop of the budget of its place: the skb's device (or socket),
/// the reason and the location. Costs one 8-byte read, a clock read and a
/// per-CPU hash lookup, so that a drop storm's drops beyond the budget cost
/// a fraction of a record each.
#[inline(always)]
pub(crate) fn drop_budget(skb: *const u8, location: u64, reason: u32) -> DropBudget {
    let limit = budget_of(kind::SKB_DROP);
    if limit == 0 {
        return DropBudget::Off;
    }
    let mut place = unsafe { rd::<u64>(skb, off!(skb_dev)) }.unwrap_or(0);
    if place == 0 {
        place = unsafe { rd::<u64>(skb, off!(skb_sk)) }.unwrap_or(0);
    }
    let key = DropBudgetKey {
        place,
        location,
        reason,
        _pad: 0,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    match DROP_BUDGET.get_ptr_mut(key) {
        Some(s) => {
            if unsafe { spend(core::ptr::addr_of_mut!((*s).budget), now, limit) } {
                DropBudget::Sent(s)
            } else {
                DropBudget::HeldBack
            }
        }
        None => DropBudget::New(key, now),
    }
}

impl DropBudget {
    /// Notes the namespace of a drop that is being sent, so that what the
    /// place holds back later can be attributed to it.
    #[inline(always)]
    pub(crate) fn sent_from(self, netns: u32) {
        match self {
            DropBudget::Sent(s) => unsafe { (*s).netns = netns },
            DropBudget::New(key, now) => {
                let init = DropBudgetState {
                    budget: first_window(now),
                    netns,
                    _pad: 0,
                };
                // A full map leaves the place unbudgeted (see DROP_BUDGET_ENTRIES).
                let _ = DROP_BUDGET.insert(key, init, 0);
            }
            DropBudget::Off | DropBudget::HeldBack => {}
        }
    }
}

pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const ETH_P_IPV6: u16 = 0x86DD;
pub(crate) const ETH_P_ARP: u16 = 0x0806;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const IPPROTO_SCTP: u8 = 132;
pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;
pub(crate) const HEADER_UNSET: u16 = 0xFFFF;

#[inline(always)]
pub(crate) unsafe fn rd<T>(base: *const u8, off: usize) -> Result<T, i32> {
    bpf_probe_read_kernel(base.wrapping_add(off) as *const T)
}

/// Counts a record of kind `k` lost to a full ring; with `--kernel-log`,
/// says so for the 1st, 2nd, 4th, 8th ... loss on this CPU (a storm does
/// not flood the log ring too).
#[inline(always)]
pub(crate) fn count_lost(k: u32) {
    if let Some(c) = LOST.get_ptr_mut(k) {
        let n = unsafe {
            *c += 1;
            *c
        };
        if klog::on() && n & (n - 1) == 0 {
            klog::lost(kind::probe(k), n);
        }
    }
}

/// Reserves a zeroed record of type `T` whose header is filled with time,
/// kind and CPU. On a full ring buffer, counts the loss and returns None.
#[inline(always)]
pub(crate) fn reserve<T: 'static>(k: u32) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
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
pub(crate) unsafe fn dev_netns(dev: *const u8) -> u32 {
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
pub(crate) unsafe fn fill_dev(h: *mut EventHeader, dev: *const u8) {
    if dev.is_null() {
        return;
    }
    fill_dev_in(h, dev, dev_netns(dev));
}

/// [`fill_dev`] when the device's namespace is already known.
#[inline(always)]
pub(crate) unsafe fn fill_dev_in(h: *mut EventHeader, dev: *const u8, netns: u32) {
    if dev.is_null() {
        return;
    }
    (*h).ifindex = rd::<i32>(dev, off!(dev_ifindex)).unwrap_or(0) as u32;
    let _ = bpf_probe_read_kernel_buf(dev.wrapping_add(off!(dev_name)), &mut (*h).ifname);
    (*h).netns = netns;
}

/// `sk->__sk_common.skc_net.net->ns.inum`.
#[inline(always)]
pub(crate) unsafe fn sk_netns(sk: *const u8) -> u32 {
    match rd::<*const u8>(sk, off!(sk_net)) {
        Ok(net) if !net.is_null() => rd::<u32>(net, off!(net_ns_inum)).unwrap_or(0),
        _ => 0,
    }
}

pub(crate) struct Tuple {
    pub(crate) saddr: [u8; 16],
    pub(crate) daddr: [u8; 16],
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) l4proto: u8,
    pub(crate) version: u8,
    pub(crate) eth_proto: u16,
}

impl Tuple {
    pub(crate) const EMPTY: Tuple = Tuple {
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
pub(crate) unsafe fn skb_tuple(skb: *const u8, t: &mut Tuple) {
    t.eth_proto = u16::from_be(rd::<u16>(skb, off!(skb_protocol)).unwrap_or(0));
    let head = match rd::<*const u8>(skb, off!(skb_head)) {
        Ok(h) if !h.is_null() => h,
        _ => return,
    };
    let nh = rd::<u16>(skb, off!(skb_network_header)).unwrap_or(HEADER_UNSET);
    if nh == HEADER_UNSET {
        return;
    }
    ip_tuple_by_field(head.wrapping_add(nh as usize), t);
}

/// [`ip_tuple`] one header field group at a time.
#[inline(always)]
unsafe fn ip_tuple_by_field(ip: *const u8, t: &mut Tuple) {
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

/// Per-CPU scratch for span reads: the first half holds an `sk_buff` span,
/// the second a `net_device` span.
#[map]
pub(crate) static SCRATCH: PerCpuArray<[u8; 2 * SPAN_MAX as usize]> =
    PerCpuArray::with_max_entries(1, 0);

/// Reads a span of `len` (1..=SPAN_MAX) bytes at `src` into `dst`.
#[inline(always)]
unsafe fn read_span(dst: *mut u8, src: *const u8, len: u32) -> bool {
    if len == 0 || len > SPAN_MAX {
        return false;
    }
    aya_ebpf::helpers::generated::bpf_probe_read_kernel(dst.cast(), len, src.cast()) == 0
}

/// The field at struct offset `off` out of a span read from offset `base`.
#[inline(always)]
unsafe fn at<T>(buf: *const u8, base: usize, off: usize) -> Option<T> {
    let idx = off.wrapping_sub(base);
    if idx > SPAN_MAX as usize - core::mem::size_of::<T>() {
        return None;
    }
    Some(core::ptr::read_unaligned(buf.add(idx) as *const T))
}

/// [`skb_tuple`] plus the receiving device and namespace, in four reads:
/// the `sk_buff` span, the packet headers, the `net_device` span and the
/// namespace inode (user space computed the spans from BTF; without a
/// `net_device` span, its fields are read one by one). The device's
/// facts go straight into the record's header `h` (not the stack: the
/// drop program is near the 512-byte stack limit on older kernels), the
/// addresses into `t`. None when the `sk_buff` span is not set or cannot
/// be read: the caller then reads field by field. Otherwise where the
/// packet's bytes are, when snapshots are on and the span holds it.
#[inline(always)]
pub(crate) unsafe fn skb_facts(
    skb: *const u8,
    h: *mut EventHeader,
    t: &mut Tuple,
) -> Option<Option<super::snap::Geom>> {
    let ss: Span = core::ptr::read_volatile(core::ptr::addr_of!(CONFIG.skb_span));
    let ds: Span = core::ptr::read_volatile(core::ptr::addr_of!(CONFIG.dev_span));
    if ss.len == 0 {
        return None;
    }
    let buf = SCRATCH.get_ptr_mut(0)? as *mut u8;
    if !read_span(buf, skb.wrapping_add(ss.base as usize), ss.len) {
        return None;
    }
    let sb = ss.base as usize;
    t.eth_proto = u16::from_be(at::<u16>(buf, sb, off!(skb_protocol))?);
    let head: *const u8 = at(buf, sb, off!(skb_head))?;
    let nh: u16 = at(buf, sb, off!(skb_network_header))?;
    if !head.is_null() && nh != HEADER_UNSET {
        ip_tuple(head.wrapping_add(nh as usize), t);
    }
    let mut geom = None;
    if !head.is_null() && super::snap::snaplen() != 0 {
        // The span covers these too (user space adds them to it).
        let data: *const u8 = at(buf, sb, off!(skb_data))?;
        geom = Some(super::snap::Geom {
            head,
            data_off: (data as usize).wrapping_sub(head as usize) as u32,
            mac: at(buf, sb, off!(skb_mac_header)).unwrap_or(HEADER_UNSET),
            nh,
            len: at(buf, sb, off!(skb_len)).unwrap_or(0),
            data_len: at(buf, sb, off!(skb_data_len)).unwrap_or(0),
        });
    }
    let dev: *const u8 = at(buf, sb, off!(skb_dev))?;
    let sk: *const u8 = at(buf, sb, off!(skb_sk))?;
    if !dev.is_null() && ds.len == 0 {
        // The device's fields are too far apart for one read (Linux 6.1,
        // before net_device's fields were grouped by use): field by field.
        fill_dev(h, dev);
    } else if !dev.is_null() {
        let d = buf.wrapping_add(SPAN_MAX as usize);
        let db = ds.base as usize;
        if read_span(d, dev.wrapping_add(db), ds.len) {
            (*h).ifindex = at::<i32>(d, db, off!(dev_ifindex)).unwrap_or(0) as u32;
            (*h).ifname = at::<[u8; IFNAMSIZ]>(d, db, off!(dev_name)).unwrap_or([0; IFNAMSIZ]);
            if let Some(net) = at::<*const u8>(d, db, off!(dev_nd_net)) {
                if !net.is_null() {
                    (*h).netns = rd::<u32>(net, off!(net_ns_inum)).unwrap_or(0);
                }
            }
        }
    }
    if (*h).netns == 0 && !sk.is_null() {
        (*h).netns = sk_netns(sk);
    }
    Some(geom)
}

/// Addresses and ports from the network header at `ip`, with one read of
/// 64 bytes (an IPv4 header with options but ihl 5, or IPv6, plus the
/// ports); field by field when that read fails (e.g. a short head).
#[inline(always)]
unsafe fn ip_tuple(ip: *const u8, t: &mut Tuple) {
    let Ok(b) = rd::<[u8; 64]>(ip, 0) else {
        ip_tuple_by_field(ip, t);
        return;
    };
    let ports_at: usize;
    if t.eth_proto == ETH_P_IP {
        if b[0] >> 4 != 4 {
            return;
        }
        t.version = 4;
        t.l4proto = b[9];
        t.saddr[..4].copy_from_slice(&b[12..16]);
        t.daddr[..4].copy_from_slice(&b[16..20]);
        if (u16::from_be_bytes([b[6], b[7]]) & 0x1FFF) != 0 {
            return;
        }
        if b[0] & 0x0F != 5 {
            // IP options: the ports are further on.
            if t.l4proto == IPPROTO_TCP || t.l4proto == IPPROTO_UDP || t.l4proto == IPPROTO_SCTP {
                let l4 = ip.wrapping_add(((b[0] & 0x0F) as usize) * 4);
                if let Ok(p) = rd::<[u8; 4]>(l4, 0) {
                    t.sport = u16::from_be_bytes([p[0], p[1]]);
                    t.dport = u16::from_be_bytes([p[2], p[3]]);
                }
            }
            return;
        }
        ports_at = 20;
    } else if t.eth_proto == ETH_P_IPV6 {
        if b[0] >> 4 != 6 {
            return;
        }
        t.version = 6;
        t.l4proto = b[6];
        t.saddr.copy_from_slice(&b[8..24]);
        t.daddr.copy_from_slice(&b[24..40]);
        ports_at = 40;
    } else {
        return;
    }
    if t.l4proto == IPPROTO_TCP || t.l4proto == IPPROTO_UDP || t.l4proto == IPPROTO_SCTP {
        if ports_at == 20 {
            t.sport = u16::from_be_bytes([b[20], b[21]]);
            t.dport = u16::from_be_bytes([b[22], b[23]]);
        } else {
            t.sport = u16::from_be_bytes([b[40], b[41]]);
            t.dport = u16::from_be_bytes([b[42], b[43]]);
        }
    }
}
