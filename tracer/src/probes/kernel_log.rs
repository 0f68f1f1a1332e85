//! `tracer run --kernel-log`: what the programs say when something goes
//! wrong in them on this kernel (a span read that fell back to field
//! reads, a field they need that cannot be read, a record lost to a full
//! ring), read from aya-log's ring and printed on stderr with the probe
//! that said it:
//!
//! ```text
//! tracer: kernel: kfree_skb: ring buffer full: record lost (64 lost on this CPU since start)
//! ```
//!
//! The programs only log when `KernelConfig::kernel_log` is set; without
//! the flag they pay one load and a branch, and the log ring is a page.

use std::io::Write;

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;

/// aya-log's ring in the object.
pub const MAP: &str = "AYA_LOGS";

/// Size of aya-log's ring when nothing logs (one page; aya-log-ebpf
/// declares 128 KiB).
pub const IDLE_RING_BYTES: u32 = 4096;

/// Prints each kernel message as one stderr line: `tracer: kernel:
/// PROBE: MESSAGE` (the record's target is the probe's name).
pub struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // One write per line, so lines from other threads do not cut in.
        let line = format!("tracer: kernel: {}: {}\n", record.target(), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The reader of the programs' log ring (takes the map from `ebpf`).
pub fn logger(ebpf: &mut Ebpf) -> Result<EbpfLogger<StderrLog>, aya_log::Error> {
    EbpfLogger::init_with_logger(ebpf, StderrLog)
}

/// Prints the programs' messages as they come, until the runtime ends.
pub async fn forward(logger: EbpfLogger<StderrLog>) {
    // SAFETY: the logger owns the ring's fd for as long as the AsyncFd
    // owns the logger; nothing else closes or reuses it.
    let mut fd =
        match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                let e = e.into_parts().1;
                eprintln!("tracer: --kernel-log: cannot watch the kernel log ring: {e}");
                return;
            }
        };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
