//! Kernel facts: what this kernel is and offers, read at start-up by `check`
//! and `run` alike (never hard-coded).

pub mod btf;
/// Boot and wall clocks, and their offset.
pub mod clock;
/// The host's `/proc` (`--host-proc`).
pub mod hostproc;
/// `CONFIG_HZ`: the unit of the jiffies stamps in `tcp_sock`.
pub mod hz;
/// `/proc/kallsyms`: kernel addresses to `symbol+0xoff`.
pub mod kallsyms;
/// rtnetlink queries: links, neighbours, FDB entries, per namespace.
pub mod netlink;
/// Network namespaces: inodes, named namespaces, entering them.
pub mod netns;
/// Capabilities tracer needs, and the one-line error when they are missing.
pub mod privileges;
/// tracefs: mounting it, tracepoint formats and their symbol tables.
pub mod tracefs;

use std::{collections::BTreeSet, path::Path};

use thiserror::Error;

use self::{
    btf::{BtfError, DropReasons, KernelBtf},
    tracefs::TracefsError,
};

/// What start-up resolved from the kernel: BTF, names, symbols.
pub struct KernelInfo {
    pub btf: KernelBtf,
    pub drop_reasons: DropReasons,
    pub symbols: Option<kallsyms::Symbols>,
    pub warnings: Vec<String>,
}

/// Why [`kernel_info`] or [`resolve_reasons`] failed.
#[derive(Debug, Error)]
pub enum KernelError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("drop reasons: not in BTF ({btf}) and tracefs unavailable")]
    NoDropReasons {
        /// Why BTF had no drop reasons.
        btf: String,
        #[source]
        source: TracefsError,
    },
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error(
        "unknown drop reason {0:?}: this kernel's enum skb_drop_reason has e.g. NOT_SPECIFIED, NO_SOCKET (see `tracer check --drop-reasons`)"
    )]
    UnknownDropReason(String),
}

/// Loads BTF (vmlinux at `btf_path` plus modules), the drop-reason names and
/// the kernel symbols; what falls back or is missing is in `warnings`.
pub fn kernel_info(btf_path: &Path) -> Result<KernelInfo, KernelError> {
    let btf = KernelBtf::load(btf_path)?;
    let mut warnings = Vec::new();
    let drop_reasons = match DropReasons::from_btf(&btf) {
        Ok(r) => r,
        Err(e) => {
            let root = match tracefs::ensure_mounted() {
                Ok(root) => root,
                Err(source) => {
                    return Err(KernelError::NoDropReasons {
                        btf: e.to_string(),
                        source,
                    })
                }
            };
            warnings.push(format!("drop reasons from tracefs (BTF: {e})"));
            DropReasons::from_tracefs(&root)?
        }
    };
    let symbols = match kallsyms::Symbols::load() {
        Ok(s) => Some(s),
        Err(e) => {
            warnings.push(format!("drop locations shown as addresses: {e}"));
            None
        }
    };
    Ok(KernelInfo {
        btf,
        drop_reasons,
        symbols,
        warnings,
    })
}

/// Drop-reason names (as given to --ignore-drop-reason) to raw values.
pub fn resolve_reasons(
    reasons: &DropReasons,
    names: &[String],
) -> Result<BTreeSet<u32>, KernelError> {
    let mut out = BTreeSet::new();
    for n in names {
        match reasons.value(n) {
            Some(v) => {
                out.insert(v);
            }
            None => return Err(KernelError::UnknownDropReason(n.clone())),
        }
    }
    Ok(out)
}
