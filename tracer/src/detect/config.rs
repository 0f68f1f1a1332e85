//! Every detector setting in one table: its flag, default, allowed range and
//! help text. [`DetectConfig::DEFAULT`] is made of the defaults, the command
//! line takes its defaults, help and validation from here
//! ([`Setting::parse`]), and [`Cfg::from`] holds library callers to the same
//! ranges.

use std::{fmt, time::Duration};

use thiserror::Error;

/// Every threshold and window of the detectors. `Default` gives the
/// documented defaults (the [`setting`] table); windows are event time.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectConfig {
    /// `fdb_flap`: moves of one MAC between ports of one bridge...
    pub fdb_flap_threshold: u32,
    /// ...within this window (edges included).
    pub fdb_flap_window: Duration,
    /// `arp_duplicate_reply`: replies for one IP, with one MAC, to one
    /// requester, counted per receiving (netns, interface)...
    pub arp_duplicate_threshold: u32,
    /// ...within this window.
    pub arp_duplicate_window: Duration,
    /// `ip_conflict`: two MACs answering for one IP in one namespace within
    /// this window.
    pub ip_conflict_window: Duration,
    /// Least time between two alerts for the same ARP key
    /// (`arp_duplicate_reply`, `ip_conflict`).
    pub arp_realert_interval: Duration,
    /// `retransmit_burst`: retransmits of one flow without forward progress
    /// (`snd_una` unchanged)...
    pub retransmit_threshold: u32,
    /// ...within this window.
    pub retransmit_window: Duration,
    /// `retransmit_rollup`: one line per container per interval with affected flows.
    pub retransmit_rollup_interval: Duration,
    /// Least number of affected flows for a container roll-up line.
    pub retransmit_rollup_min_flows: u32,
    /// `idle_flow_killed`: least silence (no ACK from the peer) before a
    /// flow's first unacknowledged send for it to count as idle.
    pub idle_min: Duration,
    /// `connect_failed`: SYN retransmits of one attempt, with no cause seen,
    /// before it alerts "no answer"...
    pub connect_syn_threshold: u32,
    /// ...spread over at least this long.
    pub connect_no_answer_after: Duration,
    /// `connect_failed`: how long a cause (a drop, a failed neighbour, an
    /// ICMP error) is remembered for an attempt seen later.
    pub connect_cause_ttl: Duration,
    /// `drop_summary` interval.
    pub drop_summary_interval: Duration,
    /// Individual `skb_drop` lines printed per second of event time; the
    /// rest are only counted in `drop_summary`. `u64::MAX`: no limit; 0: no
    /// individual lines.
    pub drop_lines_per_sec: u64,
    /// Drops of one key in one interval from which the summary also counts
    /// as a symptom for incidents (0: drops never open incidents).
    pub drop_incident_threshold: u64,
    /// Alerts sharing a container/IP/MAC within this window join one
    /// incident; an incident with no symptom for this long is resolved.
    pub incident_window: Duration,
    /// Most keys per table (MACs, ARP keys, flows, drop keys, incidents);
    /// the least recently seen are evicted beyond that.
    pub max_keys: usize,
}

/// One detector setting: the command-line flag that sets it, its default
/// and the range it is held to (both ends included).
#[derive(Clone, Copy, Debug)]
pub struct Setting<T> {
    /// Long flag name, without the dashes.
    pub flag: &'static str,
    /// One line of `--help` (no closing full stop, as clap prints doc comments).
    pub help: &'static str,
    pub default: T,
    pub min: T,
    pub max: T,
}

/// A detector setting given out of its range or not understood.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingError {
    #[error("--{flag} {value}: must be between {min} and {max} (default {default})")]
    OutOfRange {
        flag: &'static str,
        value: String,
        min: String,
        max: String,
        default: String,
    },
    #[error("--{flag} {value:?}: {reason}")]
    Unreadable {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

/// The kinds of values settings have: how they are read and shown.
pub trait SettingValue: Copy + PartialOrd {
    fn read(s: &str) -> Result<Self, String>;
    fn show(self) -> String;
}

macro_rules! number_value {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn read(s: &str) -> Result<Self, String> {
                s.trim().parse().map_err(|e| format!("not a whole number: {e}"))
            }
            fn show(self) -> String {
                self.to_string()
            }
        }
    )*};
}
number_value!(u32, u64, usize);

impl SettingValue for Duration {
    fn read(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s)
            .map_err(|e| format!("not a duration (e.g. 500ms, 10s, 5m): {e}"))
    }
    fn show(self) -> String {
        humantime::format_duration(self).to_string()
    }
}

impl<T: SettingValue> Setting<T> {
    /// `v` held to the range (library callers: out-of-range values are
    /// clamped, never trusted).
    pub fn clamp(&self, v: T) -> T {
        if v < self.min {
            self.min
        } else if v > self.max {
            self.max
        } else {
            v
        }
    }

    /// `v` if it is in range, else an error naming the flag and the range.
    pub fn check(&self, v: T) -> Result<T, SettingError> {
        if v < self.min || v > self.max {
            return Err(SettingError::OutOfRange {
                flag: self.flag,
                value: v.show(),
                min: self.min.show(),
                max: self.max.show(),
                default: self.default.show(),
            });
        }
        Ok(v)
    }

    /// The command line's reading of this setting: parsed and in range.
    pub fn parse(&self, s: &str) -> Result<T, SettingError> {
        let v = T::read(s).map_err(|reason| SettingError::Unreadable {
            flag: self.flag,
            value: s.to_string(),
            reason,
        })?;
        self.check(v)
    }
}

/// A duration as the command line shows and reads it (`10s`, `1m 30s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Setting<Duration> {
    /// The default as the command line shows it.
    pub const fn default_span(&self) -> Span {
        Span(self.default)
    }

    /// [`Setting::parse`] for a command-line [`Span`].
    pub fn parse_span(&self, s: &str) -> Result<Span, SettingError> {
        self.parse(s).map(Span)
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Longest window or interval any detector accepts.
const DAY: Duration = secs(24 * 3600);
/// Most occurrences a threshold can ask for. Each tracked key keeps that
/// many timestamps (16 bytes each) once it has more than four, so this
/// bounds the memory a key costs (1.6 kB) whatever `--detect-max-keys` is.
const MAX_THRESHOLD: u32 = 100;

/// The table: one row per setting.
pub mod setting {
    use super::{secs, Setting, DAY, MAX_THRESHOLD};
    use std::time::Duration;

    pub const FLAP_THRESHOLD: Setting<u32> = Setting {
        flag: "flap-threshold",
        help: "fdb_flap: moves of one MAC between ports of one bridge...",
        default: 3,
        min: 1,
        max: MAX_THRESHOLD,
    };
    pub const FLAP_WINDOW: Setting<Duration> = Setting {
        flag: "flap-window",
        help: "...within this window",
        default: secs(10),
        min: Duration::ZERO,
        max: DAY,
    };
    pub const ARP_DUPLICATE_THRESHOLD: Setting<u32> = Setting {
        flag: "arp-duplicate-threshold",
        help: "arp_duplicate_reply: replies for one IP with the same MAC to one requester...",
        default: 2,
        min: 2,
        max: MAX_THRESHOLD,
    };
    pub const ARP_DUPLICATE_WINDOW: Setting<Duration> = Setting {
        flag: "arp-duplicate-window",
        help: "...within this window",
        default: secs(1),
        min: Duration::ZERO,
        max: DAY,
    };
    pub const IP_CONFLICT_WINDOW: Setting<Duration> = Setting {
        flag: "ip-conflict-window",
        help: "ip_conflict: two MACs answering for one IP in one namespace within this window",
        default: secs(10),
        min: Duration::ZERO,
        max: DAY,
    };
    /// Not on the command line.
    pub const ARP_REALERT_INTERVAL: Setting<Duration> = Setting {
        flag: "arp-realert-interval",
        help: "Least time between two alerts for the same ARP key",
        default: secs(10),
        min: Duration::ZERO,
        max: DAY,
    };
    pub const RETRANSMIT_THRESHOLD: Setting<u32> = Setting {
        flag: "retransmit-threshold",
        help: "retransmit_burst: retransmits of one flow without forward progress...",
        default: 3,
        min: 1,
        max: MAX_THRESHOLD,
    };
    pub const RETRANSMIT_WINDOW: Setting<Duration> = Setting {
        flag: "retransmit-window",
        help: "...within this window",
        default: secs(10),
        min: Duration::ZERO,
        max: DAY,
    };
    /// Not on the command line. At least 1 ms so time always moves forward.
    pub const RETRANSMIT_ROLLUP_INTERVAL: Setting<Duration> = Setting {
        flag: "retransmit-rollup-interval",
        help: "retransmit_rollup: one line per container per interval with affected flows",
        default: secs(10),
        min: Duration::from_millis(1),
        max: DAY,
    };
    /// Not on the command line.
    pub const RETRANSMIT_ROLLUP_MIN_FLOWS: Setting<u32> = Setting {
        flag: "retransmit-rollup-min-flows",
        help: "Least number of affected flows for a container roll-up line",
        default: 1,
        min: 1,
        max: u32::MAX,
    };
    pub const IDLE_MIN: Setting<Duration> = Setting {
        flag: "idle-min",
        help: "idle_flow_killed: least silence before a TCP flow's first send that then \
               retransmits without progress (retransmit-threshold times) for it to count as an idle \
               connection a stateful device forgot",
        default: secs(60),
        min: Duration::from_millis(100),
        max: DAY,
    };
    pub const CONNECT_SYN_THRESHOLD: Setting<u32> = Setting {
        flag: "connect-syn-threshold",
        help: "connect_failed: SYN retransmits of one connection attempt with no cause seen before it \
               alerts \"no answer\"...",
        default: 3,
        min: 1,
        max: MAX_THRESHOLD,
    };
    pub const CONNECT_NO_ANSWER_AFTER: Setting<Duration> = Setting {
        flag: "connect-no-answer-after",
        help: "...spread over at least this long (a failing ARP resolution takes about 3 s, and a \
               cause seen meanwhile is named instead)",
        default: secs(5),
        min: Duration::ZERO,
        max: DAY,
    };
    pub const CONNECT_CAUSE_TTL: Setting<Duration> = Setting {
        flag: "connect-cause-ttl",
        help: "connect_failed: how long a cause (a drop, a failed neighbour, an ICMP error) is \
               remembered for a connection attempt seen after it",
        default: secs(30),
        min: Duration::from_millis(1),
        max: DAY,
    };
    pub const DROP_SUMMARY_INTERVAL: Setting<Duration> = Setting {
        flag: "drop-summary-interval",
        help:
            "How often drop_summary lines (per namespace/container, reason, location) are printed",
        default: secs(10),
        min: Duration::from_millis(100),
        max: DAY,
    };
    pub const DROP_LINES_PER_SEC: Setting<u64> = Setting {
        flag: "drop-lines-per-sec",
        help: "Individual skb_drop lines per second; the rest are counted in drop_summary lines",
        default: 1000,
        min: 0,
        max: u64::MAX,
    };
    /// Not on the command line.
    pub const DROP_INCIDENT_THRESHOLD: Setting<u64> = Setting {
        flag: "drop-incident-threshold",
        help:
            "Drops of one key in one interval from which a drop_summary joins incidents (0: never)",
        default: 100,
        min: 0,
        max: u64::MAX,
    };
    pub const INCIDENT_WINDOW: Setting<Duration> = Setting {
        flag: "incident-window",
        help: "Alerts touching the same container/IP/MAC within this window join one incident; \
               an incident quiet for this long is resolved",
        default: secs(30),
        min: Duration::ZERO,
        max: DAY,
    };
    pub const MAX_KEYS: Setting<usize> = Setting {
        flag: "detect-max-keys",
        help: "Most keys (MACs, flows, drop keys...) each detector tracks; older ones are evicted and counted",
        default: 100_000,
        min: 16,
        max: 10_000_000,
    };
}

impl DetectConfig {
    /// The documented defaults.
    pub const DEFAULT: DetectConfig = {
        use setting::*;
        DetectConfig {
            fdb_flap_threshold: FLAP_THRESHOLD.default,
            fdb_flap_window: FLAP_WINDOW.default,
            arp_duplicate_threshold: ARP_DUPLICATE_THRESHOLD.default,
            arp_duplicate_window: ARP_DUPLICATE_WINDOW.default,
            ip_conflict_window: IP_CONFLICT_WINDOW.default,
            arp_realert_interval: ARP_REALERT_INTERVAL.default,
            retransmit_threshold: RETRANSMIT_THRESHOLD.default,
            retransmit_window: RETRANSMIT_WINDOW.default,
            retransmit_rollup_interval: RETRANSMIT_ROLLUP_INTERVAL.default,
            retransmit_rollup_min_flows: RETRANSMIT_ROLLUP_MIN_FLOWS.default,
            idle_min: IDLE_MIN.default,
            connect_syn_threshold: CONNECT_SYN_THRESHOLD.default,
            connect_no_answer_after: CONNECT_NO_ANSWER_AFTER.default,
            connect_cause_ttl: CONNECT_CAUSE_TTL.default,
            drop_summary_interval: DROP_SUMMARY_INTERVAL.default,
            drop_lines_per_sec: DROP_LINES_PER_SEC.default,
            drop_incident_threshold: DROP_INCIDENT_THRESHOLD.default,
            incident_window: INCIDENT_WINDOW.default,
            max_keys: MAX_KEYS.default,
        }
    };
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the detectors run on: every setting held to its range, windows in ns.
#[derive(Clone, Debug)]
pub(crate) struct Cfg {
    pub(crate) flap_threshold: u32,
    pub(crate) flap_window: i128,
    pub(crate) dup_threshold: u32,
    pub(crate) dup_window: i128,
    pub(crate) conflict_window: i128,
    pub(crate) arp_realert: i128,
    pub(crate) rtx_threshold: u32,
    pub(crate) rtx_window: i128,
    pub(crate) rollup_interval: i128,
    pub(crate) rollup_min_flows: u32,
    pub(crate) idle_min: i128,
    pub(crate) syn_threshold: u32,
    pub(crate) no_answer_after: i128,
    pub(crate) cause_ttl: i128,
    pub(crate) drop_interval: i128,
    pub(crate) drop_lines_per_sec: u64,
    pub(crate) drop_incident_threshold: u64,
    pub(crate) incident_window: i128,
    pub(crate) max_keys: usize,
}

fn ns(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

impl Cfg {
    pub(crate) fn from(c: &DetectConfig) -> Self {
        use setting::*;
        let span = |s: Setting<Duration>, v: Duration| ns(s.clamp(v));
        Self {
            flap_threshold: FLAP_THRESHOLD.clamp(c.fdb_flap_threshold),
            flap_window: span(FLAP_WINDOW, c.fdb_flap_window),
            dup_threshold: ARP_DUPLICATE_THRESHOLD.clamp(c.arp_duplicate_threshold),
            dup_window: span(ARP_DUPLICATE_WINDOW, c.arp_duplicate_window),
            conflict_window: span(IP_CONFLICT_WINDOW, c.ip_conflict_window),
            arp_realert: span(ARP_REALERT_INTERVAL, c.arp_realert_interval),
            rtx_threshold: RETRANSMIT_THRESHOLD.clamp(c.retransmit_threshold),
            rtx_window: span(RETRANSMIT_WINDOW, c.retransmit_window),
            rollup_interval: span(RETRANSMIT_ROLLUP_INTERVAL, c.retransmit_rollup_interval),
            rollup_min_flows: RETRANSMIT_ROLLUP_MIN_FLOWS.clamp(c.retransmit_rollup_min_flows),
            idle_min: span(IDLE_MIN, c.idle_min),
            syn_threshold: CONNECT_SYN_THRESHOLD.clamp(c.connect_syn_threshold),
            no_answer_after: span(CONNECT_NO_ANSWER_AFTER, c.connect_no_answer_after),
            cause_ttl: span(CONNECT_CAUSE_TTL, c.connect_cause_ttl),
            drop_interval: span(DROP_SUMMARY_INTERVAL, c.drop_summary_interval),
            drop_lines_per_sec: DROP_LINES_PER_SEC.clamp(c.drop_lines_per_sec),
            drop_incident_threshold: DROP_INCIDENT_THRESHOLD.clamp(c.drop_incident_threshold),
            incident_window: span(INCIDENT_WINDOW, c.incident_window),
            max_keys: MAX_KEYS.clamp(c.max_keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{setting::*, *};

    #[test]
    fn defaults_are_the_documented_ones_and_in_range() {
        let d = DetectConfig::default();
        assert_eq!(d.fdb_flap_threshold, 3);
        assert_eq!(d.fdb_flap_window, secs(10));
        assert_eq!(d.arp_duplicate_threshold, 2);
        assert_eq!(d.arp_duplicate_window, secs(1));
        assert_eq!(d.ip_conflict_window, secs(10));
        assert_eq!(d.arp_realert_interval, secs(10));
        assert_eq!(d.retransmit_threshold, 3);
        assert_eq!(d.retransmit_window, secs(10));
        assert_eq!(d.retransmit_rollup_interval, secs(10));
        assert_eq!(d.retransmit_rollup_min_flows, 1);
        assert_eq!(d.connect_syn_threshold, 3);
        assert_eq!(d.connect_no_answer_after, secs(5));
        assert_eq!(d.connect_cause_ttl, secs(30));
        assert_eq!(d.drop_summary_interval, secs(10));
        assert_eq!(d.drop_lines_per_sec, 1000);
        assert_eq!(d.drop_incident_threshold, 100);
        assert_eq!(d.incident_window, secs(30));
        assert_eq!(d.max_keys, 100_000);
        // Held to their ranges, the defaults are unchanged.
        let c = Cfg::from(&d);
        assert_eq!(c.flap_threshold, 3);
        assert_eq!(c.dup_threshold, 2);
        assert_eq!(c.rtx_threshold, 3);
        assert_eq!(c.syn_threshold, 3);
        assert_eq!(c.no_answer_after, ns(secs(5)));
        assert_eq!(c.cause_ttl, ns(secs(30)));
        assert_eq!(c.flap_window, ns(secs(10)));
        assert_eq!(c.drop_interval, ns(secs(10)));
        assert_eq!(c.incident_window, ns(secs(30)));
        assert_eq!(c.max_keys, 100_000);
    }

    #[test]
    fn library_values_are_clamped_to_the_table() {
        let c = Cfg::from(&DetectConfig {
            fdb_flap_threshold: 100_000_000,
            arp_duplicate_threshold: 0,
            retransmit_threshold: 0,
            retransmit_rollup_interval: Duration::ZERO,
            drop_summary_interval: Duration::from_millis(1),
            retransmit_rollup_min_flows: 0,
            max_keys: 1,
            incident_window: Duration::MAX,
            connect_syn_threshold: 0,
            connect_cause_ttl: Duration::ZERO,
            ..DetectConfig::DEFAULT
        });
        assert_eq!(c.syn_threshold, 1);
        assert_eq!(c.cause_ttl, 1_000_000);
        assert_eq!(c.flap_threshold, 100);
        assert_eq!(c.dup_threshold, 2);
        assert_eq!(c.rtx_threshold, 1);
        assert_eq!(c.rollup_interval, 1_000_000);
        assert_eq!(c.drop_interval, 100_000_000);
        assert_eq!(c.rollup_min_flows, 1);
        assert_eq!(c.max_keys, 16);
        assert_eq!(c.incident_window, ns(DAY));
    }

    #[test]
    fn command_line_values_out_of_range_are_refused_with_the_range() {
        let e = FLAP_THRESHOLD.parse("100000000").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--flap-threshold 100000000: must be between 1 and 100 (default 3)"
        );
        assert!(FLAP_THRESHOLD.parse("0").is_err());
        assert_eq!(FLAP_THRESHOLD.parse("1"), Ok(1));
        assert_eq!(FLAP_THRESHOLD.parse("100"), Ok(100));
        assert_eq!(
            ARP_DUPLICATE_THRESHOLD.parse("1").unwrap_err().to_string(),
            "--arp-duplicate-threshold 1: must be between 2 and 100 (default 2)"
        );
        assert_eq!(
            DROP_SUMMARY_INTERVAL.parse("10ms").unwrap_err().to_string(),
            "--drop-summary-interval 10ms: must be between 100ms and 1day (default 10s)"
        );
        assert_eq!(DROP_SUMMARY_INTERVAL.parse_span("1s"), Ok(Span(secs(1))));
        assert_eq!(
            MAX_KEYS.parse("15").unwrap_err().to_string(),
            "--detect-max-keys 15: must be between 16 and 10000000 (default 100000)"
        );
        let e = FLAP_WINDOW.parse("ten seconds").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--flap-window \"ten seconds\": not a duration"),
            "{e}"
        );
        assert_eq!(
            CONNECT_SYN_THRESHOLD.parse("0").unwrap_err().to_string(),
            "--connect-syn-threshold 0: must be between 1 and 100 (default 3)"
        );
        assert!(DROP_LINES_PER_SEC.parse("-1").is_err());
        assert_eq!(DROP_LINES_PER_SEC.parse("0"), Ok(0));
    }

    #[test]
    fn spans_show_as_the_command_line_reads_them() {
        for s in [
            FLAP_WINDOW,
            ARP_DUPLICATE_WINDOW,
            IP_CONFLICT_WINDOW,
            RETRANSMIT_WINDOW,
            IDLE_MIN,
            CONNECT_NO_ANSWER_AFTER,
            CONNECT_CAUSE_TTL,
            DROP_SUMMARY_INTERVAL,
            INCIDENT_WINDOW,
        ] {
            let text = s.default_span().to_string();
            assert_eq!(s.parse_span(&text), Ok(s.default_span()), "{}", s.flag);
        }
        assert_eq!(FLAP_WINDOW.default_span().to_string(), "10s");
        assert_eq!(ARP_DUPLICATE_WINDOW.default_span().to_string(), "1s");
    }
}
