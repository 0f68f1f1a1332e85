//! Do we have what loading eBPF needs? Checked up front so the operator gets
//! one clear line instead of an EPERM from deep inside the loader.

use std::fs;

use thiserror::Error;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "insufficient privileges: run tracer as root, or grant CAP_BPF and CAP_PERFMON \
     (plus CAP_NET_ADMIN and CAP_SYS_ADMIN to read other network namespaces); missing: {missing}"
)]
pub struct PrivilegeError {
    pub missing: String,
}

/// Effective capability mask from a /proc/<pid>/status text.
pub fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Checks a capability mask for what loading and attaching needs.
pub fn check_mask(eff: u64) -> Result<(), PrivilegeError> {
    let has = |c: u32| eff & (1u64 << c) != 0;
    // CAP_SYS_ADMIN alone covers BPF and perf on every kernel.
    if has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing.push("CAP_SYS_ADMIN");
    Err(PrivilegeError {
        missing: missing.join(", "),
    })
}

pub fn check() -> Result<(), PrivilegeError> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    check_mask(cap_eff(&status).unwrap_or(0))
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF maps to it.
pub fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct; failure is harmless on
    // kernels that account BPF memory to the cgroup (5.11+).
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(cap_eff(s), Some(0x1ff_ffff_ffff));
        assert_eq!(cap_eff("nothing"), None);
    }

    #[test]
    fn root_and_bpf_perfmon_pass_nothing_fails() {
        assert!(check_mask(u64::MAX).is_ok());
        assert!(check_mask((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_ok());
        let e = check_mask(0).unwrap_err();
        assert!(e.to_string().contains("run tracer as root"));
        assert!(e.missing.contains("CAP_BPF"));
        let e = check_mask(1 << CAP_BPF).unwrap_err();
        assert!(e.missing.starts_with("CAP_PERFMON"), "{}", e.missing);
    }
}
