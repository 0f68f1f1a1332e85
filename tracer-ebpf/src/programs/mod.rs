//! tracer's eBPF programs, one file per probe group (beside the user-side
//! slices in `tracer/src/probes/`), and the helpers they share.
//!
//! Each program names the kernel prototype it depends on. Argument positions
//! are the `TP_PROTO` order, checked by user space against BTF's
//! `btf_trace_<name>` typedefs before attaching; struct offsets come from BTF
//! through `CONFIG`.

/// Offset of a `KernelConfig` field, read from `CONFIG`.
macro_rules! off {
    ($field:ident) => {
        // Volatile: the value is patched into .rodata at load time.
        {
            #[allow(unused_unsafe)]
            let v = unsafe {
                core::ptr::read_volatile(core::ptr::addr_of!(
                    $crate::programs::common::CONFIG.$field
                ))
            };
            v as usize
        }
    };
}

mod arp;
mod bridge;
mod common;
mod drop;
mod klog;
mod snap;
mod tcp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
