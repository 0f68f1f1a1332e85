//! Drop-reason names: `enum skb_drop_reason` from BTF, with the
//! `skb:kfree_skb` tracefs print format as the fallback.

use std::{borrow::Cow, collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use super::{malformed, BtfError, KernelBtf};
use crate::kernel::tracefs::{self, TracefsError};

const REASON_PREFIX: &str = "SKB_DROP_REASON_";

/// `SKB_DROP_REASON_NO_SOCKET` → `NO_SOCKET`. Only that prefix goes:
/// `SKB_DROP_REASON_SKB_CSUM` is `SKB_CSUM` (as tracefs prints it), and the
/// two values outside the prefix stay `SKB_NOT_DROPPED_YET` / `SKB_CONSUMED`.
fn short_reason(name: &str) -> &str {
    strip_prefix_ci(name, REASON_PREFIX).unwrap_or(name)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Names of `enum skb_drop_reason` values (`kfree_skb`'s `reason`), prefix
/// stripped (`NO_SOCKET`, `NOT_SPECIFIED` ...). Serializable so a capture can
/// carry the names of the kernel it was recorded on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropReasons {
    reasons: BTreeMap<u32, String>,
    /// `enum skb_drop_reason_subsys`: subsystem id (upper 16 bits of a
    /// reason) → name (`SUBSYS_MAC80211_UNUSABLE`).
    #[serde(default)]
    subsystems: BTreeMap<u32, String>,
}

impl DropReasons {
    /// From (value, name) pairs; names may carry the `SKB_DROP_REASON_`
    /// prefix. `MAX` entries and values with the subsystem bits set are skipped.
    pub fn from_pairs<I, S>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (u32, S)>,
        S: AsRef<str>,
    {
        let mut reasons = BTreeMap::new();
        for (v, n) in pairs {
            let n = short_reason(n.as_ref());
            if n.eq_ignore_ascii_case("MAX") || n.is_empty() || v > 0xffff {
                continue;
            }
            reasons.insert(v, n.to_ascii_uppercase());
        }
        Self {
            reasons,
            subsystems: BTreeMap::new(),
        }
    }

    /// Adds subsystem names (`enum skb_drop_reason_subsys` id, name).
    pub fn with_subsystems<I, S>(mut self, subsystems: I) -> Self
    where
        I: IntoIterator<Item = (u32, S)>,
        S: AsRef<str>,
    {
        for (id, n) in subsystems {
            let n = strip_prefix_ci(n.as_ref(), REASON_PREFIX).unwrap_or(n.as_ref());
            if n.ends_with("_NUM") {
                continue;
            }
            self.subsystems.insert(id, n.to_owned());
        }
        self
    }

    /// From BTF `enum skb_drop_reason` (and `enum skb_drop_reason_subsys`
    /// when present).
    pub fn from_btf(btf: &KernelBtf) -> Result<Self, BtfError> {
        let pairs = btf.enum_values("skb_drop_reason")?;
        let pairs = pairs
            .iter()
            .filter(|(n, _)| !n.ends_with("_MAX"))
            .filter_map(|(n, v)| u32::try_from(*v).ok().map(|v| (v, n.as_str())));
        let mut out = Self::from_pairs(pairs);
        if let Ok(subs) = btf.enum_values("skb_drop_reason_subsys") {
            out = out.with_subsystems(
                subs.iter()
                    .filter_map(|(n, v)| u32::try_from(*v).ok().map(|v| (v, n.as_str()))),
            );
        }
        if out.is_empty() {
            return Err(malformed("reading enum skb_drop_reason", "no values"));
        }
        Ok(out)
    }

    /// From the `__print_symbolic` table of `skb:kfree_skb`'s print format
    /// under the tracefs `root` (fallback for kernels whose BTF lacks the enum).
    pub fn from_tracefs(root: &Path) -> Result<Self, TracefsError> {
        let fmt = tracefs::Format::read(root, "skb", "kfree_skb")?;
        let table = tracefs::print_symbolic(&fmt.print_fmt, "reason");
        let out = Self::from_pairs(
            table
                .iter()
                .filter_map(|(v, n)| u32::try_from(*v).ok().map(|v| (v, n.as_str()))),
        );
        if out.is_empty() {
            return Err(TracefsError::NoSymbols {
                event: "skb:kfree_skb".to_owned(),
                field: "reason".to_owned(),
            });
        }
        Ok(out)
    }

    /// BTF first, then tracefs (`tracefs_root`, when given).
    pub fn detect(btf: &KernelBtf, tracefs_root: Option<&Path>) -> Result<Self, BtfError> {
        let btf_err = match Self::from_btf(btf) {
            Ok(r) => return Ok(r),
            Err(e) => e.to_string(),
        };
        let tracefs = match tracefs_root {
            Some(root) => match Self::from_tracefs(root) {
                Ok(r) => return Ok(r),
                Err(e) => e.to_string(),
            },
            None => "not available".to_owned(),
        };
        Err(BtfError::NoDropReasons {
            btf: btf_err,
            tracefs,
        })
    }

    /// Name of a raw reason value: the known name, `SUBSYS_<NAME>:0x<raw>` for
    /// subsystem reasons (upper 16 bits set), else `UNKNOWN_<raw>`.
    pub fn name(&self, raw: u32) -> Cow<'_, str> {
        if let Some(n) = self.reasons.get(&raw) {
            return Cow::Borrowed(n);
        }
        let sub = raw >> 16;
        if sub != 0 {
            if let Some(s) = self.subsystems.get(&sub) {
                return Cow::Owned(format!("{s}:{raw:#x}"));
            }
        }
        Cow::Owned(format!("UNKNOWN_{raw}"))
    }

    /// Value of a reason name, case-insensitive, with or without the
    /// `SKB_DROP_REASON_` prefix.
    pub fn value(&self, name: &str) -> Option<u32> {
        let n = short_reason(name.trim());
        self.reasons
            .iter()
            .find(|(_, v)| v.eq_ignore_ascii_case(n))
            .map(|(k, _)| *k)
    }

    /// (value, name) in value order (names cloned).
    pub fn iter(&self) -> impl Iterator<Item = (u32, String)> + '_ {
        self.reasons.iter().map(|(k, v)| (*k, v.clone()))
    }

    pub fn len(&self) -> usize {
        self.reasons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }
}
