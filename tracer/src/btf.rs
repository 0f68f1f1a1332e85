//! Kernel type information from BTF.
//!
//! - struct member offsets for the programs' [`KernelConfig`]
//!   ([`KernelBtf::resolve_config`]), read from `/sys/kernel/btf/vmlinux` plus
//!   the split BTF of every loaded module (`/sys/kernel/btf/<module>`: bridge,
//!   vxlan ... are modules on many hosts);
//! - raw-tracepoint prototype checks against the `btf_trace_<name>` typedefs
//!   ([`KernelBtf::check_prototype`]), so a kernel whose `TP_PROTO` differs
//!   gets that probe reported as unavailable instead of misread;
//! - drop-reason names ([`DropReasons`]) from `enum skb_drop_reason`, with the
//!   `skb:kfree_skb` tracefs print format as the fallback source.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashSet},
    fmt, fs, io,
    path::{Path, PathBuf},
};

use btf_rs::{Btf, Member, Struct, Type};
use serde::{Deserialize, Serialize};
use tracer_ebpf::KernelConfig;

use crate::tracefs::{self, TracefsError};

/// Where the kernel exposes its BTF (vmlinux and one split file per module).
pub const DEFAULT_BTF_DIR: &str = "/sys/kernel/btf";
/// The kernel's own BTF.
pub const DEFAULT_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Longest typedef/const/anonymous-member chain followed before giving up
/// (protects against malformed BTF with reference loops).
const MAX_DEPTH: usize = 64;

/// `KernelConfig` field → BTF member path (`struct.member[.member...]`).
///
/// Fields in [`SOCK_RELATIVE`] are stored relative to a `struct sock *`
/// (see [`KernelBtf::resolve_config`]); `drop_filter_len` is not a BTF field.
pub const FIELD_PATHS: &[(&str, &str)] = &[
    ("dev_ifindex", "net_device.ifindex"),
    ("dev_name", "net_device.name"),
    ("dev_nd_net", "net_device.nd_net.net"),
    ("net_ns_inum", "net.ns.inum"),
    ("br_dev", "net_bridge.dev"),
    ("port_dev", "net_bridge_port.dev"),
    ("fdb_addr", "net_bridge_fdb_entry.key.addr"),
    ("fdb_vlan_id", "net_bridge_fdb_entry.key.vlan_id"),
    ("fdb_dst", "net_bridge_fdb_entry.dst"),
    ("fdb_flags", "net_bridge_fdb_entry.flags"),
    ("skb_dev", "sk_buff.dev"),
    ("skb_sk", "sk_buff.sk"),
    ("skb_head", "sk_buff.head"),
    ("skb_data", "sk_buff.data"),
    ("skb_protocol", "sk_buff.protocol"),
    ("skb_network_header", "sk_buff.network_header"),
    ("skb_transport_header", "sk_buff.transport_header"),
    ("sk_family", "sock_common.skc_family"),
    ("sk_state", "sock_common.skc_state"),
    ("sk_num", "sock_common.skc_num"),
    ("sk_dport", "sock_common.skc_dport"),
    ("sk_daddr", "sock_common.skc_daddr"),
    ("sk_rcv_saddr", "sock_common.skc_rcv_saddr"),
    ("sk_v6_daddr", "sock_common.skc_v6_daddr"),
    ("sk_v6_rcv_saddr", "sock_common.skc_v6_rcv_saddr"),
    ("sk_net", "sock_common.skc_net.net"),
    ("tcp_snd_una", "tcp_sock.snd_una"),
    ("icsk_retransmits", "inet_connection_sock.icsk_retransmits"),
    ("neigh_dev", "neighbour.dev"),
    ("neigh_primary_key", "neighbour.primary_key"),
    ("neigh_ha", "neighbour.ha"),
    ("neigh_nud_state", "neighbour.nud_state"),
    ("neigh_tbl", "neighbour.tbl"),
    ("tbl_family", "neigh_table.family"),
];

/// `KernelConfig` fields the programs apply to a `struct sock *`, although
/// their path starts at a struct that embeds `struct sock` (`tcp_sock`,
/// `inet_connection_sock`) or that `struct sock` embeds (`sock_common`).
pub const SOCK_RELATIVE: &[&str] = &[
    "sk_family",
    "sk_state",
    "sk_num",
    "sk_dport",
    "sk_daddr",
    "sk_rcv_saddr",
    "sk_v6_daddr",
    "sk_v6_rcv_saddr",
    "sk_net",
    "tcp_snd_una",
    "icsk_retransmits",
];

/// BTF path of a `KernelConfig` field, `None` for fields that do not come
/// from BTF.
pub fn field_path(field: &str) -> Option<&'static str> {
    FIELD_PATHS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, p)| *p)
}

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
    #[error("no known raw-tracepoint prototype for program {0:?}")]
    UnknownProgram(String),
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

/// Expected type of one raw-tracepoint argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// Pointer (through const/volatile/typedef) to `struct <name>`.
    PtrToStruct(&'static str),
    /// Any pointer.
    Ptr,
    /// Any integer type (char, u8 ... unsigned long, typedefs of them, bool).
    Int,
    /// `enum <name>` (BTF ENUM or ENUM64).
    Enum(&'static str),
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::PtrToStruct(s) => write!(f, "`struct {s} *`"),
            Param::Ptr => f.write_str("a pointer"),
            Param::Int => f.write_str("an integer"),
            Param::Enum(e) => write!(f, "`enum {e}`"),
        }
    }
}

use Param::{Enum as E, Int as I, Ptr as P, PtrToStruct as S};

/// Raw tracepoint (= program name) → the `TP_PROTO` prefix the program reads.
pub const PROTOTYPES: &[(&str, &[Param])] = &[
    (
        "br_fdb_update",
        &[S("net_bridge"), S("net_bridge_port"), P, I, I],
    ),
    ("fdb_delete", &[S("net_bridge"), S("net_bridge_fdb_entry")]),
    ("netif_receive_skb", &[S("sk_buff")]),
    ("neigh_update", &[S("neighbour"), P, I, I]),
    ("tcp_retransmit_skb", &[S("sock"), S("sk_buff")]),
    ("tcp_send_reset", &[S("sock"), S("sk_buff")]),
    ("tcp_receive_reset", &[S("sock")]),
    ("kfree_skb", &[S("sk_buff"), P, E("skb_drop_reason")]),
];

/// Expected prototype prefix of one of tracer's raw-tracepoint programs;
/// empty for a name not in [`PROTOTYPES`] (see [`KernelBtf::check_program`],
/// which rejects unknown names instead).
pub fn prototype_for(program: &str) -> &'static [Param] {
    PROTOTYPES
        .iter()
        .find(|(p, _)| *p == program)
        .map(|(_, params)| *params)
        .unwrap_or_default()
}

/// Offsets resolved by [`KernelBtf::resolve_config`].
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Every field BTF resolved; the others are [`tracer_ebpf::UNRESOLVED`].
    pub config: KernelConfig,
    /// `KernelConfig` field name → why it could not be resolved.
    pub missing: Vec<(&'static str, String)>,
}

impl Resolved {
    /// True when every BTF field resolved.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Mutable access to a `KernelConfig` field by name.
pub fn config_field_mut<'a>(c: &'a mut KernelConfig, field: &str) -> Option<&'a mut u32> {
    Some(match field {
        "dev_ifindex" => &mut c.dev_ifindex,
        "dev_name" => &mut c.dev_name,
        "dev_nd_net" => &mut c.dev_nd_net,
        "net_ns_inum" => &mut c.net_ns_inum,
        "br_dev" => &mut c.br_dev,
        "port_dev" => &mut c.port_dev,
        "fdb_addr" => &mut c.fdb_addr,
        "fdb_vlan_id" => &mut c.fdb_vlan_id,
        "fdb_dst" => &mut c.fdb_dst,
        "fdb_flags" => &mut c.fdb_flags,
        "skb_dev" => &mut c.skb_dev,
        "skb_sk" => &mut c.skb_sk,
        "skb_head" => &mut c.skb_head,
        "skb_data" => &mut c.skb_data,
        "skb_protocol" => &mut c.skb_protocol,
        "skb_network_header" => &mut c.skb_network_header,
        "skb_transport_header" => &mut c.skb_transport_header,
        "sk_family" => &mut c.sk_family,
        "sk_state" => &mut c.sk_state,
        "sk_num" => &mut c.sk_num,
        "sk_dport" => &mut c.sk_dport,
        "sk_daddr" => &mut c.sk_daddr,
        "sk_rcv_saddr" => &mut c.sk_rcv_saddr,
        "sk_v6_daddr" => &mut c.sk_v6_daddr,
        "sk_v6_rcv_saddr" => &mut c.sk_v6_rcv_saddr,
        "sk_net" => &mut c.sk_net,
        "tcp_snd_una" => &mut c.tcp_snd_una,
        "icsk_retransmits" => &mut c.icsk_retransmits,
        "neigh_dev" => &mut c.neigh_dev,
        "neigh_primary_key" => &mut c.neigh_primary_key,
        "neigh_ha" => &mut c.neigh_ha,
        "neigh_nud_state" => &mut c.neigh_nud_state,
        "neigh_tbl" => &mut c.neigh_tbl,
        "tbl_family" => &mut c.tbl_family,
        "drop_filter_len" => &mut c.drop_filter_len,
        _ => return None,
    })
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

    /// Byte offset of a dotted member path, e.g. `"sk_buff.dev"` or
    /// `"net_device.nd_net.net"`. The first component names a struct; the
    /// others are members, found through anonymous struct/union members and
    /// typedef/const/volatile, never through pointers. A bitfield is an error.
    pub fn member_offset(&self, path: &str) -> Result<u32, BtfError> {
        let mut comps = path.split('.');
        let root = comps.next().unwrap_or_default();
        let members: Vec<&str> = comps.collect();
        if root.is_empty() || members.is_empty() || members.iter().any(|m| m.is_empty()) {
            return Err(BtfError::BadPath {
                path: path.to_owned(),
                reason: "expected struct.member[.member...]",
            });
        }
        let cands = self.structs(root)?;
        Self::unanimous(path, cands, |btf, t| offset_in(btf, t, path, &members))
    }

    /// Offset of the first `struct inner` embedded by value (directly, in an
    /// anonymous member, or in a nested embedded struct) in `struct outer`.
    pub fn embedded_offset(&self, outer: &str, inner: &str) -> Result<u32, BtfError> {
        let cands = self.structs(outer)?;
        let what = format!("struct {inner} in struct {outer}");
        Self::unanimous(&what, cands, |btf, t| {
            let s = match t {
                Type::Struct(s) | Type::Union(s) => s,
                _ => return Err(malformed(&what, "not a struct")),
            };
            match find_embedded(btf, s, inner, 0)? {
                Some(bits) if bits.is_multiple_of(8) => {
                    u32::try_from(bits / 8).map_err(|_| BtfError::TooLarge { path: what.clone() })
                }
                Some(bits) => Err(BtfError::Unaligned {
                    path: what.clone(),
                    bit_offset: bits,
                }),
                None => Err(BtfError::NotEmbedded {
                    outer: outer.to_owned(),
                    inner: inner.to_owned(),
                }),
            }
        })
    }

    /// Offset of `KernelConfig` field `field` (see [`FIELD_PATHS`]), relative
    /// to the pointer the programs hold ([`SOCK_RELATIVE`] fields: `struct sock *`).
    pub fn config_field_offset(&self, field: &str) -> Result<u32, BtfError> {
        let path = field_path(field).ok_or_else(|| BtfError::BadPath {
            path: field.to_owned(),
            reason: "not a BTF-resolved KernelConfig field",
        })?;
        let off = self.member_offset(path)?;
        if !SOCK_RELATIVE.contains(&field) {
            return Ok(off);
        }
        self.relative_to(path, off, "sock")
    }

    /// Rebases `off` (an offset inside the root struct of `path`) onto a
    /// pointer to `struct base`: the root either embeds `base` (subtract
    /// where it sits) or is embedded in it (add where it sits).
    fn relative_to(&self, path: &str, off: u32, base: &str) -> Result<u32, BtfError> {
        let root = path.split('.').next().unwrap_or_default();
        if root == base {
            return Ok(off);
        }
        match self.embedded_offset(base, root) {
            Ok(at) => off
                .checked_add(at)
                .ok_or_else(|| BtfError::TooLarge { path: path.into() }),
            Err(BtfError::NotEmbedded { .. }) => {
                let at = self.embedded_offset(root, base)?;
                off.checked_sub(at).ok_or_else(|| BtfError::BeforeBase {
                    path: path.to_owned(),
                    base: base.to_owned(),
                    offset: off,
                    base_offset: at,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Resolves every BTF field of [`KernelConfig`]. Fields that do not
    /// resolve stay [`tracer_ebpf::UNRESOLVED`] and are listed in `missing`.
    /// `drop_filter_len` is left 0.
    pub fn resolve_config(&self) -> Resolved {
        let mut config = KernelConfig::unresolved();
        let mut missing = Vec::new();
        for &(field, _) in FIELD_PATHS {
            match self.config_field_offset(field) {
                Ok(off) => match config_field_mut(&mut config, field) {
                    Some(slot) => *slot = off,
                    None => missing.push((field, "not a KernelConfig field".to_owned())),
                },
                Err(e) => missing.push((field, e.to_string())),
            }
        }
        config.drop_filter_len = 0;
        Resolved { config, missing }
    }

    /// Checks the `btf_trace_<tracepoint>` prototype: after the leading
    /// `void *__data`, its parameters must start with `expected` (kernels
    /// append arguments at the end, so extra trailing ones are fine).
    pub fn check_prototype(&self, tracepoint: &str, expected: &[Param]) -> Result<(), BtfError> {
        let tname = format!("btf_trace_{tracepoint}");
        let cands = self.candidates(&tname, |t| matches!(t, Type::Typedef(_)));
        let Some((btf, td)) = cands.into_iter().next() else {
            return Err(BtfError::PrototypeNotFound {
                tracepoint: tracepoint.to_owned(),
            });
        };
        let shape_err = |btf: &Btf, t: &Type| BtfError::PrototypeShape {
            tracepoint: tracepoint.to_owned(),
            found: describe(btf, t),
        };
        let ptr = strip(btf, td.clone(), true)?;
        let Type::Ptr(p) = &ptr else {
            return Err(shape_err(btf, &td));
        };
        let proto = strip(btf, chained(btf, p, &tname)?, true)?;
        let Type::FuncProto(proto) = proto else {
            return Err(shape_err(btf, &td));
        };
        // Variadic marker (name 0, type 0) ends the list.
        let params: Vec<_> = proto
            .parameters
            .iter()
            .filter(|p| !p.is_variadic())
            .collect();
        let args = params.get(1..).unwrap_or_default();
        if args.len() < expected.len() {
            return Err(BtfError::PrototypeTooShort {
                tracepoint: tracepoint.to_owned(),
                expected: expected.len(),
                found: args.len(),
            });
        }
        for (position, (param, want)) in args.iter().zip(expected).enumerate() {
            let t = chained(btf, *param, &tname)?;
            if !param_matches(btf, &t, want)? {
                return Err(BtfError::PrototypeMismatch {
                    tracepoint: tracepoint.to_owned(),
                    position,
                    expected: want.to_string(),
                    found: describe(btf, &t),
                });
            }
        }
        Ok(())
    }

    /// [`KernelBtf::check_prototype`] with the prototype from [`PROTOTYPES`].
    pub fn check_program(&self, program: &str) -> Result<(), BtfError> {
        let expected = PROTOTYPES
            .iter()
            .find(|(p, _)| *p == program)
            .map(|(_, params)| *params)
            .ok_or_else(|| BtfError::UnknownProgram(program.to_owned()))?;
        self.check_prototype(program, expected)
    }

    /// The kernel's parameter list of `btf_trace_<tracepoint>` after
    /// `__data`, rendered as C types (for diagnostics).
    pub fn prototype_text(&self, tracepoint: &str) -> Result<Vec<String>, BtfError> {
        let tname = format!("btf_trace_{tracepoint}");
        let cands = self.candidates(&tname, |t| matches!(t, Type::Typedef(_)));
        let Some((btf, td)) = cands.into_iter().next() else {
            return Err(BtfError::PrototypeNotFound {
                tracepoint: tracepoint.to_owned(),
            });
        };
        let Type::Ptr(p) = strip(btf, td.clone(), true)? else {
            return Err(BtfError::PrototypeShape {
                tracepoint: tracepoint.to_owned(),
                found: describe(btf, &td),
            });
        };
        let Type::FuncProto(proto) = strip(btf, chained(btf, &p, &tname)?, true)? else {
            return Err(BtfError::PrototypeShape {
                tracepoint: tracepoint.to_owned(),
                found: describe(btf, &td),
            });
        };
        proto
            .parameters
            .iter()
            .skip(1)
            .map(|p| {
                if p.is_variadic() {
                    Ok("...".to_owned())
                } else {
                    Ok(describe(btf, &chained(btf, p, &tname)?))
                }
            })
            .collect()
    }

    /// Members of enum `name` (ENUM or ENUM64) as (name, value).
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, u64)>, BtfError> {
        let cands = self.candidates(name, |t| match t {
            Type::Enum(e) => !e.members.is_empty(),
            Type::Enum64(e) => !e.members.is_empty(),
            _ => false,
        });
        let Some((btf, t)) = cands.into_iter().next() else {
            return Err(BtfError::TypeNotFound {
                what: format!("enum {name}"),
                modules: self.modules.len(),
            });
        };
        let ctx = || format!("reading enum {name}");
        let mut out = Vec::new();
        match t {
            Type::Enum(e) => {
                for m in &e.members {
                    let n = btf.resolve_name(m).map_err(|e| malformed(ctx(), e))?;
                    // 32-bit values: sign-extend signed enums.
                    let v = if e.is_signed() {
                        m.val() as i32 as i64 as u64
                    } else {
                        u64::from(m.val())
                    };
                    out.push((n, v));
                }
            }
            Type::Enum64(e) => {
                for m in &e.members {
                    let n = btf.resolve_name(m).map_err(|e| malformed(ctx(), e))?;
                    out.push((n, m.val()));
                }
            }
            _ => return Err(malformed(ctx(), "not an enum")),
        }
        Ok(out)
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

fn chained<T: btf_rs::BtfType + ?Sized>(btf: &Btf, t: &T, ctx: &str) -> Result<Type, BtfError> {
    btf.resolve_chained_type(t)
        .map_err(|e| malformed(format!("resolving a type referenced by {ctx}"), e))
}

/// Follows const/volatile/restrict/type tags (and typedefs when `typedefs`).
fn strip(btf: &Btf, mut t: Type, typedefs: bool) -> Result<Type, BtfError> {
    for _ in 0..MAX_DEPTH {
        t = match &t {
            Type::Const(m) | Type::Volatile(m) | Type::Restrict(m) => {
                chained(btf, m, "a modifier")?
            }
            Type::TypeTag(m) => chained(btf, m, "a type tag")?,
            Type::Typedef(m) if typedefs => chained(btf, m, "a typedef")?,
            _ => return Ok(t),
        };
    }
    Err(malformed("following typedefs", "reference chain too long"))
}

fn name_of<T: btf_rs::BtfType + ?Sized>(btf: &Btf, t: &T) -> String {
    btf.resolve_name(t).unwrap_or_default()
}

/// C-like rendering of a type for error messages.
fn describe(btf: &Btf, t: &Type) -> String {
    describe_depth(btf, t, 0)
}

fn describe_depth(btf: &Btf, t: &Type, depth: usize) -> String {
    if depth > 8 {
        return "...".to_owned();
    }
    let inner = |x: &dyn btf_rs::BtfType| -> String {
        match btf.resolve_chained_type(x) {
            Ok(t) => describe_depth(btf, &t, depth + 1),
            Err(_) => "?".to_owned(),
        }
    };
    let named = |kw: &str, n: String| {
        if n.is_empty() {
            format!("{kw} <anon>")
        } else {
            format!("{kw} {n}")
        }
    };
    match t {
        Type::Void => "void".to_owned(),
        Type::Int(i) => name_of(btf, i),
        Type::Float(f) => name_of(btf, f),
        Type::Ptr(p) => format!("{} *", inner(p)),
        Type::Array(a) => format!("{}[{}]", inner(a), a.len()),
        Type::Struct(s) => named("struct", name_of(btf, s)),
        Type::Union(s) => named("union", name_of(btf, s)),
        Type::Enum(e) => named("enum", name_of(btf, e)),
        Type::Enum64(e) => named("enum", name_of(btf, e)),
        Type::Fwd(f) => named(
            if f.is_union() { "union" } else { "struct" },
            name_of(btf, f),
        ),
        Type::Typedef(td) => name_of(btf, td),
        Type::Const(c) => format!("const {}", inner(c)),
        Type::Volatile(v) => format!("volatile {}", inner(v)),
        Type::Restrict(r) => format!("{} restrict", inner(r)),
        Type::TypeTag(tt) => inner(tt),
        Type::FuncProto(_) => "function".to_owned(),
        other => other.name().to_owned(),
    }
}

fn param_matches(btf: &Btf, t: &Type, want: &Param) -> Result<bool, BtfError> {
    let t = strip(btf, t.clone(), true)?;
    Ok(match want {
        Param::Ptr => matches!(t, Type::Ptr(_)),
        Param::Int => matches!(t, Type::Int(_)),
        Param::Enum(name) => match &t {
            Type::Enum(e) => name_of(btf, e) == *name,
            Type::Enum64(e) => name_of(btf, e) == *name,
            _ => false,
        },
        Param::PtrToStruct(name) => {
            let Type::Ptr(p) = &t else { return Ok(false) };
            match strip(btf, chained(btf, p, "a pointer")?, true)? {
                Type::Struct(s) => name_of(btf, &s) == *name,
                Type::Fwd(f) => !f.is_union() && name_of(btf, &f) == *name,
                _ => false,
            }
        }
    })
}

/// Bit offset of `path`'s members inside `root`.
fn offset_in(btf: &Btf, root: &Type, path: &str, members: &[&str]) -> Result<u32, BtfError> {
    let mut cur = root.clone();
    let mut container = describe(btf, root);
    let mut prev: &str = path.split('.').next().unwrap_or_default();
    let mut bits: u64 = 0;
    for comp in members {
        let s = match strip(btf, cur.clone(), true)? {
            Type::Struct(s) | Type::Union(s) => s,
            Type::Ptr(_) => {
                return Err(BtfError::ThroughPointer {
                    path: path.to_owned(),
                    member: prev.to_owned(),
                })
            }
            other => {
                return Err(BtfError::NotComposite {
                    path: path.to_owned(),
                    member: prev.to_owned(),
                    found: describe(btf, &other),
                })
            }
        };
        let Some((off, m)) = find_member(btf, &s, comp, 0)? else {
            return Err(BtfError::MemberNotFound {
                path: path.to_owned(),
                member: (*comp).to_owned(),
                container,
            });
        };
        if let Some(width) = m.bitfield_size().filter(|w| *w != 0) {
            return Err(BtfError::Bitfield {
                path: path.to_owned(),
                member: (*comp).to_owned(),
                bits: width,
            });
        }
        bits += off;
        cur = chained(btf, &m, path)?;
        container = describe(btf, &cur);
        prev = comp;
    }
    if !bits.is_multiple_of(8) {
        // kind_flag == 0 structs encode bitfields in the int type; a
        // non-byte-aligned offset is how they show here.
        return Err(BtfError::Unaligned {
            path: path.to_owned(),
            bit_offset: bits,
        });
    }
    u32::try_from(bits / 8).map_err(|_| BtfError::TooLarge {
        path: path.to_owned(),
    })
}

/// Finds member `name` in `s`, looking into anonymous struct/union members.
/// Returns its bit offset from the start of `s`.
fn find_member(
    btf: &Btf,
    s: &Struct,
    name: &str,
    depth: usize,
) -> Result<Option<(u64, Member)>, BtfError> {
    if depth > MAX_DEPTH {
        return Err(malformed(
            format!("looking for member {name}"),
            "anonymous members nested too deep",
        ));
    }
    for m in &s.members {
        let mname = btf
            .resolve_name(m)
            .map_err(|e| malformed(format!("looking for member {name}"), e))?;
        if mname == name {
            return Ok(Some((u64::from(m.bit_offset()), m.clone())));
        }
        if mname.is_empty() {
            if let Type::Struct(inner) | Type::Union(inner) =
                strip(btf, chained(btf, m, name)?, true)?
            {
                if let Some((off, found)) = find_member(btf, &inner, name, depth + 1)? {
                    return Ok(Some((u64::from(m.bit_offset()) + off, found)));
                }
            }
        }
    }
    Ok(None)
}

/// Bit offset of the first `struct inner` embedded by value in `s`.
fn find_embedded(
    btf: &Btf,
    s: &Struct,
    inner: &str,
    depth: usize,
) -> Result<Option<u64>, BtfError> {
    if depth > MAX_DEPTH {
        return Ok(None);
    }
    for m in &s.members {
        if m.bitfield_size().is_some_and(|w| w != 0) {
            continue;
        }
        if let Type::Struct(t) | Type::Union(t) = strip(btf, chained(btf, m, inner)?, true)? {
            if name_of(btf, &t) == inner {
                return Ok(Some(u64::from(m.bit_offset())));
            }
            if let Some(off) = find_embedded(btf, &t, inner, depth + 1)? {
                return Ok(Some(u64::from(m.bit_offset()) + off));
            }
        }
    }
    Ok(None)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

    fn real_btf() -> Option<KernelBtf> {
        if !Path::new(VMLINUX).exists() {
            println!("skipped: {VMLINUX} not present (kernel without CONFIG_DEBUG_INFO_BTF)");
            return None;
        }
        match KernelBtf::load(Path::new(DEFAULT_VMLINUX)) {
            Ok(b) => Some(b),
            Err(e) => panic!("loading kernel BTF: {e}"),
        }
    }

    /// Minimal BTF writer for hand-built fixtures.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }
        fn s(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn u32(&mut self, v: u32) {
            self.types.extend_from_slice(&v.to_le_bytes());
        }
        fn head(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kflag: bool,
            size_or_type: u32,
        ) -> u32 {
            let n = self.s(name);
            self.u32(n);
            self.u32((kind << 24) | vlen | (u32::from(kflag) << 31));
            self.u32(size_or_type);
            let id = self.next_id;
            self.next_id += 1;
            id
        }
        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.head(name, 1, 0, false, size);
            self.u32(size * 8);
            id
        }
        fn ptr(&mut self, to: u32) -> u32 {
            self.head("", 2, 0, false, to)
        }
        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.head(name, 8, 0, false, to)
        }
        fn konst(&mut self, to: u32) -> u32 {
            self.head("", 10, 0, false, to)
        }
        /// members: (name, type, bit offset, bitfield size)
        fn composite(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            kflag: bool,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let id = self.head(
                name,
                if union { 5 } else { 4 },
                members.len() as u32,
                kflag,
                size,
            );
            for (n, t, off, bits) in members {
                let n = self.s(n);
                self.u32(n);
                self.u32(*t);
                self.u32(if kflag { (bits << 24) | off } else { *off });
            }
            id
        }
        fn enumeration(&mut self, name: &str, vals: &[(&str, u32)]) -> u32 {
            let id = self.head(name, 6, vals.len() as u32, false, 4);
            for (n, v) in vals {
                let n = self.s(n);
                self.u32(n);
                self.u32(*v);
            }
            id
        }
        fn proto(&mut self, ret: u32, params: &[u32]) -> u32 {
            let id = self.head("", 13, params.len() as u32, false, ret);
            for p in params {
                self.u32(0);
                self.u32(*p);
            }
            id
        }
        fn finish(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xEB9F_u16.to_le_bytes());
            out.push(1); // version
            out.push(0); // flags
            out.extend_from_slice(&24u32.to_le_bytes()); // hdr_len
            out.extend_from_slice(&0u32.to_le_bytes()); // type_off
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes()); // str_off
            out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A tiny kernel: anonymous unions, typedef'd embedded struct, a
    /// kind_flag bitfield struct, sock embedding, a raw-tracepoint typedef.
    fn fixture() -> KernelBtf {
        let mut b = Builder::new();
        let u8t = b.int("unsigned char", 1);
        let u16t = b.int("unsigned short", 2);
        let u32t = b.int("unsigned int", 4);
        let u16td = b.typedef("u16", u16t);
        let dev = b.composite(false, "net_device", 64, false, &[("ifindex", u32t, 0, 0)]);
        let devp = b.ptr(dev);
        // union { struct { u8 pad; u16 x; }; struct net_device *dev; }
        let anon_s = b.composite(
            false,
            "",
            4,
            false,
            &[("pad", u8t, 0, 0), ("x", u16td, 16, 0)],
        );
        let anon_u = b.composite(
            true,
            "",
            8,
            false,
            &[("", anon_s, 0, 0), ("dev", devp, 0, 0)],
        );
        // kind_flag struct: bits:3 at bit 0, width 3; proto at byte 2.
        let skb = b.composite(
            false,
            "sk_buff",
            32,
            true,
            &[
                ("next", devp, 0, 0),
                ("", anon_u, 64, 0),
                ("bits", u8t, 128, 3),
                ("protocol", u16t, 144, 0),
            ],
        );
        let pnet = b.composite(false, "", 8, false, &[("net", devp, 0, 0)]);
        let possible = b.typedef("possible_net_t", pnet);
        let cpossible = b.konst(possible);
        let common = b.composite(
            false,
            "sock_common",
            24,
            false,
            &[("skc_family", u16t, 0, 0), ("skc_net", cpossible, 64, 0)],
        );
        let sock = b.composite(false, "sock", 40, false, &[("__sk_common", common, 0, 0)]);
        let tcp = b.composite(
            false,
            "tcp_sock",
            64,
            false,
            &[("sk", sock, 0, 0), ("snd_una", u32t, 40 * 8, 0)],
        );
        let sockp = b.ptr(sock);
        let csock = b.konst(sock);
        let csockp = b.ptr(csock);
        let skbp = b.ptr(skb);
        let voidp = b.ptr(0);
        let reason = b.enumeration(
            "skb_drop_reason",
            &[
                ("SKB_NOT_DROPPED_YET", 0),
                ("SKB_CONSUMED", 1),
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_NO_SOCKET", 3),
                ("SKB_DROP_REASON_MAX", 4),
                ("SKB_DROP_REASON_SUBSYS_MASK", 0xffff0000),
            ],
        );
        b.enumeration(
            "skb_drop_reason_subsys",
            &[
                ("SKB_DROP_REASON_SUBSYS_CORE", 0),
                ("SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1),
                ("SKB_DROP_REASON_SUBSYS_NUM", 2),
            ],
        );
        let p1 = b.proto(0, &[voidp, skbp, voidp, reason, sockp]);
        let p1p = b.ptr(p1);
        b.typedef("btf_trace_kfree_skb", p1p);
        let p2 = b.proto(0, &[voidp, csockp, u16td]);
        let p2p = b.ptr(p2);
        b.typedef("btf_trace_tcp_receive_reset", p2p);
        let _ = (tcp, sockp);
        match KernelBtf::from_bytes(&b.finish()) {
            Ok(k) => k,
            Err(e) => panic!("fixture BTF: {e}"),
        }
    }

    #[test]
    fn fixture_offsets() {
        let k = fixture();
        assert_eq!(k.member_offset("sk_buff.next").ok(), Some(0));
        assert_eq!(k.member_offset("sk_buff.dev").ok(), Some(8));
        // anonymous union → anonymous struct → typedef'd member
        assert_eq!(k.member_offset("sk_buff.x").ok(), Some(10));
        // kind_flag struct: offset is the low 24 bits
        assert_eq!(k.member_offset("sk_buff.protocol").ok(), Some(18));
        assert!(matches!(
            k.member_offset("sk_buff.bits"),
            Err(BtfError::Bitfield { bits: 3, .. })
        ));
        assert_eq!(k.member_offset("sock_common.skc_net.net").ok(), Some(8));
        assert!(matches!(
            k.member_offset("sk_buff.dev.ifindex"),
            Err(BtfError::ThroughPointer { .. })
        ));
        assert!(matches!(
            k.member_offset("sk_buff.nope"),
            Err(BtfError::MemberNotFound { .. })
        ));
        assert!(matches!(
            k.member_offset("nope.x"),
            Err(BtfError::TypeNotFound { .. })
        ));
        assert!(matches!(
            k.member_offset("sk_buff"),
            Err(BtfError::BadPath { .. })
        ));
        assert_eq!(k.embedded_offset("tcp_sock", "sock").ok(), Some(0));
        assert_eq!(k.embedded_offset("sock", "sock_common").ok(), Some(0));
        assert_eq!(k.config_field_offset("sk_net").ok(), Some(8));
        assert_eq!(k.config_field_offset("tcp_snd_una").ok(), Some(40));
    }

    #[test]
    fn fixture_prototypes() {
        let k = fixture();
        assert!(k.check_program("kfree_skb").is_ok());
        // pointer to const struct sock, extra trailing param is fine
        assert!(k.check_prototype("tcp_receive_reset", &[S("sock")]).is_ok());
        let e = k
            .check_prototype("tcp_receive_reset", &[S("sock"), E("x")])
            .err();
        match e {
            Some(BtfError::PrototypeMismatch {
                position, found, ..
            }) => {
                assert_eq!(position, 1);
                assert_eq!(found, "u16");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = k
            .check_prototype("kfree_skb", &[S("sock")])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("raw tracepoint kfree_skb: argument 0 is `struct sk_buff *`, expected `struct sock *`")
        );
        assert!(matches!(
            k.check_prototype("kfree_skb", &[S("sk_buff"), P, E("skb_drop_reason"), P, I]),
            Err(BtfError::PrototypeTooShort {
                expected: 5,
                found: 4,
                ..
            })
        ));
        assert!(matches!(
            k.check_program("neigh_update"),
            Err(BtfError::PrototypeNotFound { .. })
        ));
        assert_eq!(
            k.prototype_text("tcp_receive_reset").ok(),
            Some(vec!["const struct sock *".to_owned(), "u16".to_owned()])
        );
    }

    #[test]
    fn fixture_drop_reasons() {
        let r = DropReasons::from_btf(&fixture()).unwrap_or_default();
        assert_eq!(r.len(), 4);
        assert_eq!(r.name(3), "NO_SOCKET");
        assert_eq!(r.name(1), "SKB_CONSUMED");
        assert_eq!(r.value("skb_consumed"), Some(1));
        assert_eq!(r.name(4), "UNKNOWN_4");
        assert_eq!(r.name(0x10003), "SUBSYS_MAC80211_UNUSABLE:0x10003");
        assert_eq!(r.name(0x50003), "UNKNOWN_327683");
        assert_eq!(r.value("no_socket"), Some(3));
        assert_eq!(r.value("SKB_DROP_REASON_NOT_SPECIFIED"), Some(2));
        assert_eq!(r.value("MAX"), None);
        let json = serde_json::to_string(&r).unwrap_or_default();
        let back: Option<DropReasons> = serde_json::from_str(&json).ok();
        assert_eq!(back.as_ref(), Some(&r));
    }

    #[test]
    fn missing_vmlinux_message() {
        let e = KernelBtf::load(Path::new("/nonexistent/btf/vmlinux"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("CONFIG_DEBUG_INFO_BTF=y"), "{e}");
        assert!(e.contains("/nonexistent/btf/vmlinux"), "{e}");
    }

    #[test]
    fn field_table_covers_config() {
        assert_eq!(FIELD_PATHS.len(), 34);
        let mut c = KernelConfig::unresolved();
        for (f, _) in FIELD_PATHS {
            match config_field_mut(&mut c, f) {
                Some(slot) => *slot = 0,
                None => panic!("{f} is not a KernelConfig field"),
            }
        }
        // Every field (drop_filter_len already 0) was reachable through the table.
        let fields = [
            c.dev_ifindex,
            c.dev_name,
            c.dev_nd_net,
            c.net_ns_inum,
            c.br_dev,
            c.port_dev,
            c.fdb_addr,
            c.fdb_vlan_id,
            c.fdb_dst,
            c.fdb_flags,
            c.skb_dev,
            c.skb_sk,
            c.skb_head,
            c.skb_data,
            c.skb_protocol,
            c.skb_network_header,
            c.skb_transport_header,
            c.sk_family,
            c.sk_state,
            c.sk_num,
            c.sk_dport,
            c.sk_daddr,
            c.sk_rcv_saddr,
            c.sk_v6_daddr,
            c.sk_v6_rcv_saddr,
            c.sk_net,
            c.tcp_snd_una,
            c.icsk_retransmits,
            c.neigh_dev,
            c.neigh_primary_key,
            c.neigh_ha,
            c.neigh_nud_state,
            c.neigh_tbl,
            c.tbl_family,
            c.drop_filter_len,
        ];
        assert!(fields.iter().all(|v| *v == 0), "{c:?}");
        for f in SOCK_RELATIVE {
            assert!(field_path(f).is_some(), "{f}");
        }
    }

    /// This machine: every offset resolves, every prototype checks, and the
    /// BTF drop reasons agree with the tracefs print format.
    #[test]
    fn real_kernel() {
        let Some(k) = real_btf() else { return };
        let r = k.resolve_config();
        for (f, why) in &r.missing {
            println!("unresolved {f}: {why}");
        }
        assert!(r.is_complete(), "missing: {:?}", r.missing);
        for (f, p) in FIELD_PATHS {
            let mut c = r.config;
            let v = config_field_mut(&mut c, f).map(|v| *v);
            println!("{f:22} {p:40} {v:?}");
            assert_ne!(v, Some(tracer_ebpf::UNRESOLVED), "{f}");
        }
        assert_eq!(r.config.drop_filter_len, 0);
        // struct sock embeddings the programs rely on.
        assert_eq!(k.embedded_offset("sock", "sock_common").ok(), Some(0));
        assert_eq!(k.embedded_offset("tcp_sock", "sock").ok(), Some(0));
        assert_eq!(
            k.embedded_offset("inet_connection_sock", "sock").ok(),
            Some(0)
        );
        for (prog, _) in PROTOTYPES {
            let text = k.prototype_text(prog).unwrap_or_default();
            println!("btf_trace_{prog}: {}", text.join(", "));
            if let Err(e) = k.check_program(prog) {
                panic!("{e}");
            }
        }

        let btf_reasons = match DropReasons::from_btf(&k) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let ns = btf_reasons.value("NO_SOCKET");
        let nsp = btf_reasons.value("NOT_SPECIFIED");
        assert!(ns.is_some() && nsp.is_some());

        let root = match tracefs::ensure_mounted() {
            Ok(r) => r,
            Err(e) => {
                println!("skipped tracefs comparison: {e}");
                return;
            }
        };
        let tf = match DropReasons::from_tracefs(&root) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert!(!tf.is_empty());
        for (v, name) in tf.iter() {
            assert_eq!(btf_reasons.name(v), name.as_str(), "reason {v}");
        }
        assert_eq!(tf.value("NO_SOCKET"), ns);
        assert_eq!(tf.value("NOT_SPECIFIED"), nsp);
    }
}
