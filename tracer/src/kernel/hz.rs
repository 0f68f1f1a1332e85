//! The kernel's tick rate (`CONFIG_HZ`): the unit of the jiffies stamps the
//! TCP probe reads from `tcp_sock` (`rcv_tstamp`) and
//! `inet_connection_sock` (`icsk_rto`). Read from the kernel's own
//! configuration: `/proc/config.gz` (CONFIG_IKCONFIG_PROC), else
//! `/boot/config-<release>`. Never assumed: when neither is readable the
//! probe reports no idle spans (the records carry 0, "unknown").

use std::path::Path;

/// `CONFIG_HZ` of the running kernel, `None` when no config is readable.
pub fn kernel_hz() -> Option<u32> {
    if let Some(hz) = std::fs::read("/proc/config.gz")
        .ok()
        .and_then(|gz| gunzip(&gz))
        .and_then(|c| hz_from_config(&String::from_utf8_lossy(&c)))
    {
        return Some(hz);
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let path = Path::new("/boot").join(format!("config-{}", release.trim()));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|c| hz_from_config(&c))
}

/// `CONFIG_HZ=<n>` of a kernel config text.
pub fn hz_from_config(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&hz| hz > 0)
}

/// Decompresses a gzip member (RFC 1952): the header is skipped by hand,
/// the deflate stream inflated by miniz_oxide.
fn gunzip(gz: &[u8]) -> Option<Vec<u8>> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    if gz.len() < 10 || gz[0] != 0x1f || gz[1] != 0x8b || gz[2] != 8 {
        return None;
    }
    let flags = gz[3];
    let mut at = 10usize;
    if flags & FEXTRA != 0 {
        let len = u16::from_le_bytes([*gz.get(at)?, *gz.get(at + 1)?]) as usize;
        at = at.checked_add(2 + len)?;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let nul = gz.get(at..)?.iter().position(|&b| b == 0)?;
            at += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    miniz_oxide::inflate::decompress_to_vec(gz.get(at..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_hz() {
        assert_eq!(
            hz_from_config("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"),
            Some(250)
        );
        assert_eq!(hz_from_config("CONFIG_HZ_PERIODIC=y\n"), None);
        assert_eq!(hz_from_config("CONFIG_HZ=0\n"), None);
    }

    #[test]
    fn rejects_non_gzip() {
        assert_eq!(gunzip(b"not gzip at all"), None);
        assert_eq!(
            gunzip(&[0x1f, 0x8b, 8, FNAME_ONLY, 0, 0, 0, 0, 0, 0, b'x']),
            None
        );
    }

    const FNAME_ONLY: u8 = 0x08;

    /// The running kernel's config, when it has one, names a tick rate.
    #[test]
    fn running_kernel_hz_is_plausible() {
        if let Some(hz) = kernel_hz() {
            assert!((24..=10_000).contains(&hz), "{hz}");
        }
    }
}
