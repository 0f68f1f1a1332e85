//! Kernel type information from BTF: loading, and four concerns in files
//! of their own.
//! - loading vmlinux plus the split BTF of every loaded module
//!   (`/sys/kernel/btf/<module>`: bridge, vxlan ... are modules on many
//!   hosts): [`KernelBtf`], here;
//! - walking types to member offsets ([`walker`]);
//! - the programs' [`KernelConfig`] resolved field by field ([`fields`]);
//! - raw-tracepoint prototype checks against the `btf_trace_<name>` typedefs
//!   ([`prototypes`]), so a kernel whose `TP_PROTO` differs gets that probe
//!   reported as unavailable instead of misread;
//! - drop-reason names ([`drop_reasons`]) from `enum skb_drop_reason`, with
//!   the `skb:kfree_skb` tracefs print format as the fallback source.
//!
//! [`KernelConfig`]: tracer_ebpf::KernelConfig

pub mod drop_reasons;
pub mod fields;
pub mod prototypes;
pub mod walker;

use std::{
    collections::HashSet,
    fmt, fs, io,
    path::{Path, PathBuf},
};

use btf_rs::{Btf, Type};

pub use self::{drop_reasons::DropReasons, fields::Resolved, prototypes::Param};

/// Where the kernel exposes its BTF (vmlinux and one split file per module).
pub const DEFAULT_BTF_DIR: &str = "/sys/kernel/btf";
/// The kernel's own BTF.
pub const DEFAULT_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Longest typedef/const/anonymous-member chain followed before giving up
/// (protects against malformed BTF with reference loops).
const MAX_DEPTH: usize = 64;

/// Errors from loading or querying kernel BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "kernel BTF not found at {}: tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        path.display()
    )]
    NotFound { path: PathBuf },
    #[error("cannot read kernel BTF {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("invalid BTF member path {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error(
        "{what} not found in kernel BTF (searched vmlinux and {modules} module file(s)); \
         if it belongs to a module (bridge, vxlan ...), load the module first"
    )]
    TypeNotFound { what: String, modules: usize },
    #[error("{path}: {container} has no member `{member}`")]
    MemberNotFound {
        path: String,
        member: String,
        container: String,
    },
    #[error("{path}: cannot descend into `{member}`: it is `{found}`, not a struct or union")]
    NotComposite {
        path: String,
        member: String,
        found: String,
    },
    #[error("{path}: `{member}` is a pointer: member offsets never follow pointers")]
    ThroughPointer { path: String, member: String },
    #[error("{path}: `{member}` is a {bits}-bit bitfield, which has no byte offset")]
    Bitfield {
        path: String,
        member: String,
        bits: u32,
    },
    #[error("{path}: bit offset {bit_offset} is not byte aligned")]
    Unaligned { path: String, bit_offset: u64 },
    #[error("{path}: offset does not fit in 32 bits")]
    TooLarge { path: String },
    #[error("{what}: several BTF definitions disagree (offsets {offsets:?})")]
    Ambiguous { what: String, offsets: Vec<u32> },
    #[error("struct {inner} is not embedded (by value) in struct {outer}")]
    NotEmbedded { outer: String, inner: String },
    #[error(
        "{path}: member lies before the embedded struct {base} (offset {offset} < {base_offset})"
    )]
    BeforeBase {
        path: String,
        base: String,
        offset: u32,
        base_offset: u32,
    },
    #[error(
        "raw tracepoint {tracepoint}: no `btf_trace_{tracepoint}` typedef in kernel BTF: \
         the tracepoint does not exist in this kernel (or its module is not loaded)"
    )]
    PrototypeNotFound { tracepoint: String },
    #[error(
        "raw tracepoint {tracepoint}: `btf_trace_{tracepoint}` is `{found}`, \
         not a pointer to a function prototype"
    )]
    PrototypeShape { tracepoint: String, found: String },
    #[error(
        "raw tracepoint {tracepoint}: expected at least {expected} argument(s) after `void *__data`, \
         the kernel's prototype has {found}"
    )]
    PrototypeTooShort {
        tracepoint: String,
        expected: usize,
        found: usize,
    },
    #[error("raw tracepoint {tracepoint}: argument {position} is `{found}`, expected {expected}")]
    PrototypeMismatch {
        tracepoint: String,
        /// Index as the program reads it (`ctx.arg(position)`), `__data` not counted.
        position: usize,
        expected: String,
        found: String,
    },
    #[error("drop reasons unavailable: BTF: {btf}; tracefs: {tracefs}")]
    NoDropReasons { btf: String, tracefs: String },
    #[error("malformed kernel BTF while {context}: {message}")]
    Malformed { context: String, message: String },
}

fn malformed(context: impl Into<String>, e: impl fmt::Display) -> BtfError {
    BtfError::Malformed {
        context: context.into(),
        message: e.to_string(),
    }
}

/// Split BTF of one kernel module.
struct ModuleBtf {
    name: String,
    btf: Btf,
}

/// Kernel BTF: vmlinux plus the split BTF of the loaded modules.
pub struct KernelBtf {
    vmlinux_path: PathBuf,
    vmlinux: Btf,
    modules: Vec<ModuleBtf>,
    module_errors: Vec<(String, String)>,
}

impl fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelBtf")
            .field("vmlinux", &self.vmlinux_path)
            .field(
                "modules",
                &self.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .field("module_errors", &self.module_errors)
            .finish()
    }
}

/// Candidate definitions of one named type: the BTF they live in and the type.
type Candidates<'a> = Vec<(&'a Btf, Type)>;

impl KernelBtf {
    /// Loads the vmlinux BTF at `vmlinux` (normally [`DEFAULT_VMLINUX`]) and,
    /// when the file is named `vmlinux`, every other file of its directory as
    /// module split BTF (`/sys/kernel/btf/bridge` ...). A module file that
    /// fails to parse is skipped and listed in [`KernelBtf::module_errors`].
    pub fn load(vmlinux: &Path) -> Result<Self, BtfError> {
        let mut kbtf = Self::from_vmlinux(vmlinux)?;
        if vmlinux.file_name().is_some_and(|n| n == "vmlinux") {
            if let Some(dir) = vmlinux.parent() {
                kbtf.load_modules(dir);
            }
        }
        Ok(kbtf)
    }

    /// Loads `<dir>/vmlinux` and every other file of `dir` as module split BTF.
    pub fn load_dir(dir: &Path) -> Result<Self, BtfError> {
        let mut kbtf = Self::from_vmlinux(&dir.join("vmlinux"))?;
        kbtf.load_modules(dir);
        Ok(kbtf)
    }

    fn load_modules(&mut self, dir: &Path) {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.module_errors
                    .push((dir.display().to_string(), e.to_string()));
                return;
            }
        };
        let mut files: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                (name != "vmlinux").then(|| (name, e.path()))
            })
            .collect();
        files.sort();
        for (name, path) in files {
            if let Err(e) = self.add_module(&name, &path) {
                self.module_errors.push((name, e.to_string()));
            }
        }
    }

    /// Loads vmlinux BTF only (no modules).
    pub fn from_vmlinux(path: &Path) -> Result<Self, BtfError> {
        let bytes = read_btf_file(path)?;
        let vmlinux = Btf::from_bytes(&bytes).map_err(|e| BtfError::Load {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            vmlinux_path: path.to_owned(),
            vmlinux,
            modules: Vec::new(),
            module_errors: Vec::new(),
        })
    }

    /// Builds from an in-memory vmlinux (base) BTF blob.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BtfError> {
        let vmlinux = Btf::from_bytes(bytes).map_err(|e| BtfError::Load {
            path: PathBuf::from("<memory>"),
            message: e.to_string(),
        })?;
        Ok(Self {
            vmlinux_path: PathBuf::from("<memory>"),
            vmlinux,
            modules: Vec::new(),
            module_errors: Vec::new(),
        })
    }

    /// Adds the split BTF of module `name` read from `path`.
    pub fn add_module(&mut self, name: &str, path: &Path) -> Result<(), BtfError> {
        let bytes = read_btf_file(path)?;
        self.add_module_bytes(name, &bytes).map_err(|e| match e {
            BtfError::Load { message, .. } => BtfError::Load {
                path: path.to_owned(),
                message,
            },
            e => e,
        })
    }

    /// Adds a module's split BTF from memory.
    pub fn add_module_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), BtfError> {
        let btf = Btf::from_split_bytes(bytes, &self.vmlinux).map_err(|e| BtfError::Load {
            path: PathBuf::from(name),
            message: e.to_string(),
        })?;
        self.modules.push(ModuleBtf {
            name: name.to_owned(),
            btf,
        });
        Ok(())
    }

    /// Names of the modules whose BTF was loaded.
    pub fn module_names(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().map(|m| m.name.as_str())
    }

    /// Module BTF files that could not be loaded: (module, error).
    pub fn module_errors(&self) -> &[(String, String)] {
        &self.module_errors
    }

    /// Types named `name` accepted by `accept`: vmlinux first; modules only
    /// when vmlinux has none (a module may carry a duplicate of a vmlinux type).
    fn candidates(&self, name: &str, accept: impl Fn(&Type) -> bool) -> Candidates<'_> {
        let base_ids: HashSet<u32> = self
            .vmlinux
            .resolve_ids_by_name(name)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        let mut out: Candidates<'_> = Vec::new();
        for id in &base_ids {
            if let Ok(t) = self.vmlinux.resolve_type_by_id(*id) {
                if accept(&t) {
                    out.push((&self.vmlinux, t));
                }
            }
        }
        if !out.is_empty() {
            return out;
        }
        for m in &self.modules {
            let Ok(ids) = m.btf.resolve_ids_by_name(name) else {
                continue;
            };
            for id in ids.into_iter().filter(|id| !base_ids.contains(id)) {
                if let Ok(t) = m.btf.resolve_type_by_id(id) {
                    if accept(&t) {
                        out.push((&m.btf, t));
                    }
                }
            }
        }
        out
    }

    fn structs(&self, name: &str) -> Result<Candidates<'_>, BtfError> {
        let c = self.candidates(name, |t| {
            matches!(t, Type::Struct(s) | Type::Union(s) if s.size() > 0 || !s.members.is_empty())
        });
        if c.is_empty() {
            return Err(BtfError::TypeNotFound {
                what: format!("struct {name}"),
                modules: self.modules.len(),
            });
        }
        Ok(c)
    }

    /// Runs `f` on every candidate; all successes must agree.
    fn unanimous(
        what: &str,
        cands: Candidates<'_>,
        f: impl Fn(&Btf, &Type) -> Result<u32, BtfError>,
    ) -> Result<u32, BtfError> {
        let mut first_err = None;
        let mut found: Vec<u32> = Vec::new();
        for (btf, t) in &cands {
            match f(btf, t) {
                Ok(v) => {
                    if !found.contains(&v) {
                        found.push(v);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (found.as_slice(), first_err) {
            ([v], _) => Ok(*v),
            ([], Some(e)) => Err(e),
            ([], None) => Err(malformed(what, "no candidate type")),
            (_, _) => Err(BtfError::Ambiguous {
                what: what.to_owned(),
                offsets: found,
            }),
        }
    }
}

fn read_btf_file(path: &Path) -> Result<Vec<u8>, BtfError> {
    fs::read(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            BtfError::NotFound {
                path: path.to_owned(),
            }
        } else {
            BtfError::Load {
                path: path.to_owned(),
                message: e.to_string(),
            }
        }
    })
}

#[cfg(test)]
mod tests;
