//! Kernel-side diagnostics for `tracer run --kernel-log`: warnings through
//! aya-log's ring, the target being the probe's name (user space prints it
//! with the message).
//!
//! Each message is a function of its own, never inlined (a BPF
//! subprogram): a log site in a program is a load of `CONFIG.kernel_log`,
//! a branch and, with the flag, a call, so the programs' hot paths keep
//! their code and their cost without the flag.

/// Whether user space asked for diagnostics (`CONFIG.kernel_log`).
#[inline(always)]
pub(crate) fn on() -> bool {
    off!(kernel_log) != 0
}

/// A record of `probe` lost to a full ring; `n` lost on this CPU so far.
#[inline(never)]
pub(crate) fn lost(probe: &'static str, n: u64) {
    aya_log_ebpf::warn!(
        (),
        target: probe,
        "ring buffer full: record lost ({} lost on this CPU since start)",
        n
    );
}

/// kfree_skb's one read of the `sk_buff` span failed at `skb`.
#[inline(never)]
pub(crate) fn skb_span_failed(skb: u64) {
    aya_log_ebpf::warn!(
        (),
        target: "kfree_skb",
        "reading the sk_buff span at {:x} failed: reading its fields one by one",
        skb
    );
}

/// kfree_skb could not read `sk_buff.dev` at offset `off`.
#[inline(never)]
pub(crate) fn skb_dev_unreadable(off: u32, err: i64) {
    aya_log_ebpf::warn!(
        (),
        target: "kfree_skb",
        "sk_buff.dev unreadable at offset {} (error {}): no device, no namespace",
        off,
        err
    );
}

/// `probe` could not read `net_bridge.dev` at offset `off`.
#[inline(never)]
pub(crate) fn br_dev_unreadable(probe: &'static str, off: u32, err: i64) {
    aya_log_ebpf::warn!(
        (),
        target: probe,
        "net_bridge.dev unreadable at offset {} (error {}): no bridge, no namespace",
        off,
        err
    );
}
