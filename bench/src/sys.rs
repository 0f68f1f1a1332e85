//! The few libc calls the benchmarks need, declared here by hand (they
//! were written when this code lived in xtask, which has no libc
//! dependency): signal handling for Ctrl-C clean-up, `kill`, and `wait4`,
//! which returns the child's own resource usage (CPU time of all its
//! threads, peak RSS).

use std::{
    fmt,
    os::raw::{c_int, c_long},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{bail, Result};

pub const SIGHUP: c_int = 1;
pub const SIGINT: c_int = 2;
pub const SIGKILL: c_int = 9;
pub const SIGTERM: c_int = 15;
const WNOHANG: c_int = 1;
const EINTR: i32 = 4;

/// `struct rusage` of Linux (x86_64 and aarch64): two timevals, 14 longs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Rusage {
    utime_sec: c_long,
    utime_usec: c_long,
    stime_sec: c_long,
    stime_usec: c_long,
    /// Peak resident set size, KiB.
    maxrss: c_long,
    rest: [c_long; 13],
}

impl Rusage {
    /// User + system CPU seconds.
    pub fn cpu_s(&self) -> f64 {
        self.utime_sec as f64
            + self.stime_sec as f64
            + (self.utime_usec + self.stime_usec) as f64 / 1e6
    }

    pub fn maxrss_kib(&self) -> u64 {
        self.maxrss.max(0) as u64
    }
}

extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, rusage: *mut Rusage) -> c_int;
    fn _exit(status: c_int) -> !;
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: c_int) {
    // Only async-signal-safe work here: a flag, or a hard exit on the second signal.
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { _exit(130) }
    }
}

/// SIGINT, SIGTERM and SIGHUP set a flag that the benchmarks check between
/// steps, so that namespaces, processes and sysctls are restored by the
/// normal `Drop` path. A second signal exits at once.
pub fn install_signal_handlers() {
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        // SAFETY: the handler only touches an atomic and calls _exit.
        unsafe {
            signal(sig, on_signal as extern "C" fn(c_int) as usize);
        }
    }
}

/// Effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The error returned when the run was interrupted.
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted (Ctrl-C / SIGTERM): cleaned up and stopped")
    }
}

impl std::error::Error for Interrupted {}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with [`Interrupted`] once a signal arrived.
pub fn check() -> Result<()> {
    if interrupted() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Sleeps, waking early (with an error) when interrupted.
pub fn sleep(d: Duration) -> Result<()> {
    let end = std::time::Instant::now() + d;
    loop {
        check()?;
        let now = std::time::Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

pub fn send_signal(pid: u32, sig: c_int) -> Result<()> {
    // SAFETY: plain syscall wrapper.
    let r = unsafe { kill(pid as c_int, sig) };
    if r != 0 {
        bail!(
            "kill({pid}, {sig}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// How a child ended.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// Raw wait status.
    pub status: c_int,
    pub rusage: Rusage,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Exited normally, or was stopped by one of the signals we send to stop it.
    pub fn clean_or_signalled(&self) -> bool {
        self.success() || matches!(self.status & 0x7f, SIGINT | SIGTERM)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sig = self.status & 0x7f;
        if sig == 0 {
            write!(f, "exit status {}", (self.status >> 8) & 0xff)
        } else {
            write!(f, "killed by signal {sig}")
        }
    }
}

/// Non-blocking `wait4`: `Some` once the child has exited (and is reaped).
pub fn try_wait(pid: u32) -> Result<Option<Exit>> {
    loop {
        let mut status: c_int = 0;
        let mut rusage = Rusage::default();
        // SAFETY: both pointers are valid for the duration of the call.
        let r = unsafe { wait4(pid as c_int, &mut status, WNOHANG, &mut rusage) };
        if r == pid as c_int {
            return Ok(Some(Exit { status, rusage }));
        }
        if r == 0 {
            return Ok(None);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(EINTR) {
            continue;
        }
        bail!("wait4({pid}) failed: {err}");
    }
}
