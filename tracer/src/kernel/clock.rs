//! Kernel time (ns since boot, `CLOCK_BOOTTIME`) to wall-clock time.
//!
//! The offset is taken once at start and recorded in captures, so a replay
//! converts the same kernel timestamps to the same `@timestamp` strings.

use chrono::{DateTime, SecondsFormat};
use serde::Serializer;

/// `CLOCK_REALTIME - CLOCK_BOOTTIME` in ns, measured now. The two clocks are
/// read back to back three times and the pair with the shortest gap wins.
pub fn boot_to_wall_offset_ns() -> i128 {
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..3 {
        let b1 = now_ns(libc::CLOCK_BOOTTIME);
        let r = now_ns(libc::CLOCK_REALTIME);
        let b2 = now_ns(libc::CLOCK_BOOTTIME);
        let gap = b2 - b1;
        let off = r - (b1 + gap / 2);
        if best.is_none_or(|(g, _)| gap < g) {
            best = Some((gap, off));
        }
    }
    best.map(|(_, o)| o).unwrap_or(0)
}

/// Current `CLOCK_BOOTTIME` in ns (the clock of `bpf_ktime_get_boot_ns`).
pub fn boot_now_ns() -> u64 {
    now_ns(libc::CLOCK_BOOTTIME).max(0) as u64
}

/// Current `CLOCK_MONOTONIC` in ns (the clock of `bpf_ktime_get_ns`, which
/// the kernel budgets' windows use).
pub fn monotonic_now_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC).max(0) as u64
}

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; the clocks used always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// RFC 3339, nanoseconds, UTC: `2026-11-21T19:50:19.123456789Z`.
pub fn format_ts(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    match i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, nanos))
    {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Nanos, true),
        None => "1970-01-01T00:00:00.000000000Z".to_string(),
    }
}

/// `@timestamp` of every line: the date and second are formatted once per
/// second (events come in bursts within the same second), the nanoseconds
/// every time, into a stack buffer. Same output as [`format_ts`].
pub fn serialize_ts<S: Serializer>(ts: &i128, s: S) -> Result<S::Ok, S::Error> {
    use std::cell::RefCell;
    thread_local! {
        // (second, "YYYY-MM-DDTHH:MM:SS." as 20 bytes)
        static PREFIX: RefCell<(i128, [u8; 20])> = const { RefCell::new((i128::MIN, [0; 20])) };
    }
    let secs = ts.div_euclid(1_000_000_000);
    let nanos = ts.rem_euclid(1_000_000_000) as u32;
    let mut buf = [0u8; 30];
    let ok = PREFIX.with(|p| {
        let mut p = p.borrow_mut();
        if p.0 != secs {
            let Some(t) = i64::try_from(secs)
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
            else {
                return false; // out of range: slow path (and its fallback)
            };
            let full = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
            if full.len() != 30 {
                return false; // years outside 0000-9999
            }
            p.1.copy_from_slice(&full.as_bytes()[..20]);
            p.0 = secs;
        }
        buf[..20].copy_from_slice(&p.1);
        true
    });
    if !ok {
        return s.serialize_str(&format_ts(*ts));
    }
    let mut n = nanos;
    for i in (20..29).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    buf[29] = b'Z';
    // ASCII digits and punctuation only.
    s.serialize_str(std::str::from_utf8(&buf).unwrap_or("1970-01-01T00:00:00.000000000Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_nanoseconds_utc() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_ts(1_795_809_019_000_000_001),
            "2026-11-27T19:50:19.000000001Z"
        );
        // Out of range never panics.
        assert_eq!(format_ts(i128::MAX), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_ts(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn cached_serializer_matches_format_ts() {
        #[derive(serde::Serialize)]
        struct T(#[serde(serialize_with = "serialize_ts")] i128);
        for ts in [
            0i128,
            1_795_809_019_000_000_001,
            1_795_809_019_999_999_999,
            1_795_809_020_000_000_000,
            1_795_809_019_000_000_002,
            -1,
            i128::MAX,
        ] {
            let json = serde_json::to_string(&T(ts)).unwrap();
            assert_eq!(json, format!("\"{}\"", format_ts(ts)), "ts {ts}");
        }
    }

    #[test]
    fn offset_is_plausible() {
        let off = boot_to_wall_offset_ns();
        // Boot happened after 2020 and before now.
        assert!(off > 1_577_836_800_000_000_000);
    }
}
