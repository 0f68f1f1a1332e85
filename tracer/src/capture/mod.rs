//! Capture files: `tracer run --record FILE` writes one, `tracer replay FILE`
//! reads it back and prints the same NDJSON without privileges.
//!
//! A capture holds the [`Input`]s of a live run in the order the pipeline
//! saw them, plus what decoding needs off the host: a [`Header`] (host,
//! kernel, boot-clock → wall-clock offset), the drop-reason names, and the
//! kernel symbols the drop locations resolved to.
//!
//! [`CaptureWriter`] writes a capture on the caller's thread; the live run
//! records through [`ThreadedWriter`], which runs one on a thread of its
//! own so that the ring-buffer consumer only copies each kernel record.
//!
//! # On-disk layout (all integers little-endian)
//!
//! ```text
//! file   := prefix record*
//! prefix := MAGIC[8] = 89 54 52 41 43 45 52 0a ("\x89TRACER\n")
//!           version u32          FORMAT_VERSION (1); a reader refuses a larger one
//!           crc     u32          CRC-32 (IEEE) of the 12 bytes before it
//! record := len     u32          payload length, at most MAX_RECORD_LEN (64 MiB)
//!           type    u16          record_type::*
//!           flags   u16          flags::* (CRITICAL, STATE); other bits ignored
//!           crc     u32          CRC-32 of the payload
//!           hcrc    u32          CRC-32 of the 12 bytes before it (len, type, flags, crc)
//!           payload[len]
//! ```
//!
//! Every part starts `prefix, HEADER, DROP_REASONS`; the reader insists on
//! that order (unknown, non-critical records may sit in between). A part
//! written to the end finishes with an `END` record; a part without one was
//! cut short. `END {"rotated": true}` says the capture continues in the
//! next part: `FILE`, `FILE.1`, `FILE.2` … Each rotated part re-states the
//! tables and the caller's state (FDB, identity) in records flagged
//! [`flags::STATE`], so it replays on its own; a reader continuing from the
//! previous part skips them.
//!
//! Payloads: `KERNEL` is the ring-buffer record verbatim; `INPUT` is any
//! other [`Input`] as JSON (serde's externally tagged form); `HEADER`,
//! `DROP_REASONS`, `SYMBOLS` (`[[addr, "sym+0x1a"], …]`) and `END` are JSON.
//!
//! # Compatibility
//!
//! New versions add record types (or `Input` variants) instead of changing
//! old ones, and keep `FORMAT_VERSION`. A reader skips (and counts) record
//! types and `Input` variants it does not know, unless the record is flagged
//! [`flags::CRITICAL`] *and* its type is unknown: then it stops with "upgrade
//! tracer". `FORMAT_VERSION` changes only for a change old readers must not
//! try to read.
//!
//! # Errors vs. truncation
//!
//! A capture that simply ends early (kill -9, the host died, disk full)
//! yields every complete record, then [`CaptureReader::truncated`] says
//! where it stopped; a zero-filled tail (what a crash can leave behind a
//! file's last write) counts as such an end. Anything else that does not
//! check out (checksum, length, JSON) is a [`CaptureError::Corrupt`] naming
//! the file and byte offset. No length is trusted before it is checked
//! against [`MAX_RECORD_LEN`], and a payload buffer grows only as bytes
//! actually arrive.

mod reader;
mod thread;
mod writer;

#[cfg(test)]
mod tests;

use std::{
    ffi::{OsStr, OsString},
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use self::{
    reader::{CaptureReader, RecordRef},
    thread::{FinishError, ThreadedWriter, BATCH_BYTES, THREAD_NAME},
    writer::{check_free, CaptureStats, CaptureWriter},
};
use crate::{kernel::btf::DropReasons, pipeline::Input};

/// First bytes of every capture part. The high first byte and the trailing
/// newline catch 7-bit and newline-translating transfers, as PNG's do.
pub const MAGIC: [u8; 8] = *b"\x89TRACER\n";
/// The layout described in the module documentation.
pub const FORMAT_VERSION: u32 = 1;
/// No record payload is larger; a larger declared length is corruption.
pub const MAX_RECORD_LEN: u32 = 64 << 20;
/// Bytes of the file prefix (magic, version, crc).
pub const PREFIX_LEN: usize = 16;
/// Bytes of a record's frame before its payload.
pub const FRAME_LEN: usize = 16;
/// Reader and writer buffer size.
pub const BUFFER_BYTES: usize = 1 << 20;

/// Record types. Values are never reused.
pub mod record_type {
    /// [`super::Header`] as JSON. First record of every part.
    pub const HEADER: u16 = 1;
    /// [`crate::kernel::btf::DropReasons`] as JSON. Second record of every part.
    pub const DROP_REASONS: u16 = 2;
    /// `[[addr, name], …]`: kernel symbols resolved since the previous one.
    pub const SYMBOLS: u16 = 3;
    /// `{"rotated": bool}`: the part was written to its end.
    pub const END: u16 = 4;
    /// One ring-buffer record, raw.
    pub const KERNEL: u16 = 0x10;
    /// Any other [`crate::pipeline::Input`], as JSON.
    pub const INPUT: u16 = 0x11;
}

/// Record flags.
pub mod flags {
    /// A reader that does not know this record type must stop rather than skip it.
    pub const CRITICAL: u16 = 1 << 0;
    /// Re-stated at the start of a rotated part (tables, FDB, identity):
    /// skipped when reading on from the previous part.
    pub const STATE: u16 = 1 << 1;
}

/// Who recorded what, where. First record of every part.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Header {
    /// Set by the writer to [`FORMAT_VERSION`].
    pub format_version: u32,
    pub tracer_version: String,
    pub hostname: String,
    pub kernel_release: String,
    /// `CLOCK_REALTIME - CLOCK_BOOTTIME` at the start ([`crate::decode::Tables::boot_to_wall_ns`]).
    pub boot_to_wall_ns: i128,
    /// Wall clock at the start; with the host name it identifies the
    /// recording, so a part of another recording is not read on into.
    pub started_unix_ns: i128,
    /// Command line of the recording run.
    pub args: Vec<String>,
    /// 0 in `FILE`, n in `FILE.n`. Set by the writer.
    #[serde(default)]
    pub part: u32,
    /// What the recording run printed as `host.name` (the host's uname
    /// nodename, or `--host-name`); replay prints it on every line.
    /// Absent from captures of older tracers: their replays print no
    /// `host.name` (as those tracers did), never a guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
}

impl Header {
    /// A header for a recording starting now on this host, whose events
    /// carry `host_name` (see [`host_name`]).
    pub fn this_host(args: Vec<String>, boot_to_wall_ns: i128, host_name: Option<String>) -> Self {
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let kernel_release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let started_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            format_version: FORMAT_VERSION,
            tracer_version: env!("CARGO_PKG_VERSION").to_string(),
            hostname,
            kernel_release,
            boot_to_wall_ns,
            started_unix_ns,
            args,
            part: 0,
            host_name,
        }
    }
}

/// This host's name for `host.name`: the kernel's nodename (`uname -n`),
/// which is the host's even in a container that shares the host's UTS
/// namespace (`--uts=host`, swarm services with host networking do not
/// change it) and needs no host `/etc` mounted. None when unreadable.
pub fn host_name() -> Option<String> {
    let u = nix::sys::utsname::uname().ok()?;
    let n = u.nodename().to_string_lossy().trim().to_string();
    (!n.is_empty()).then_some(n)
}

/// What a capture holds, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Start of a part (the first one is also [`CaptureReader::header`]).
    Header(Header),
    DropReasons(DropReasons),
    /// Kernel symbols resolved since the last `Symbols` record; precedes the
    /// first kernel record that needs them.
    Symbols(Vec<(u64, String)>),
    Input(Input),
}

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} already exists: choose a new capture file (tracer never overwrites, truncates or removes a file)", path.display())]
    Exists { path: PathBuf },
    #[error("{} exists (a part of an earlier capture at {}?): choose another capture file name, or move the old parts away (tracer never overwrites, truncates or removes a file)", part.display(), path.display())]
    PartExists { path: PathBuf, part: PathBuf },
    #[error("{} is empty: not a tracer capture (or the recording died before writing anything)", path.display())]
    Empty { path: PathBuf },
    #[error("{} is not a tracer capture (bad magic)", path.display())]
    NotACapture { path: PathBuf },
    #[error("{}: capture format version {found} is newer than this tracer understands ({supported}): upgrade tracer", path.display())]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("corrupt record at byte {offset} in {}: {what}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{} ends at byte {offset}, before its header and decoding tables were complete: nothing to replay", path.display())]
    TruncatedHeader { path: PathBuf, offset: u64 },
    #[error("record at byte {offset} in {} has type {record_type}, unknown to this tracer and marked as required: upgrade tracer", path.display())]
    UnknownCritical {
        path: PathBuf,
        offset: u64,
        record_type: u16,
    },
    #[error("{} does not continue {}: {why}", path.display(), previous.display())]
    BrokenChain {
        path: PathBuf,
        previous: PathBuf,
        why: String,
    },
    #[error(
        "a {len}-byte record is larger than the capture format allows ({MAX_RECORD_LEN} bytes)"
    )]
    TooLarge { len: usize },
    #[error("cannot encode a capture record: {0}")]
    Encode(#[from] serde_json::Error),
}

impl CaptureError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `FILE` for part 0, `FILE.n` after.
pub fn part_path(base: &Path, part: u32) -> PathBuf {
    if part == 0 {
        return base.to_path_buf();
    }
    let mut s = OsString::from(base.as_os_str());
    s.push(format!(".{part}"));
    PathBuf::from(s)
}

/// The base (`FILE`) of a part path `FILE.n`, when its name ends so.
fn base_of(path: &Path, part: u32) -> Option<PathBuf> {
    if part == 0 {
        return Some(path.to_path_buf());
    }
    let suffix = format!(".{part}");
    let stem = path
        .as_os_str()
        .as_bytes()
        .strip_suffix(suffix.as_bytes())?;
    (!stem.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(stem)))
}

/// CRC-32 (IEEE) of `data`, as `crc32fast::hash` computes it, without its
/// CPU-feature detection on every call (two CRCs per record: the detection
/// cost as much as the 12-byte header CRC itself).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    static TEMPLATE: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    let mut h = TEMPLATE.get_or_init(crc32fast::Hasher::new).clone();
    h.update(data);
    h.finalize()
}

fn prefix_bytes(version: u32) -> [u8; PREFIX_LEN] {
    let mut p = [0u8; PREFIX_LEN];
    p[..8].copy_from_slice(&MAGIC);
    p[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32(&p[..12]);
    p[12..16].copy_from_slice(&crc.to_le_bytes());
    p
}

fn frame_bytes(
    record_type: u16,
    flags: u16,
    payload: &[u8],
) -> Result<[u8; FRAME_LEN], CaptureError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD_LEN)
        .ok_or(CaptureError::TooLarge { len: payload.len() })?;
    let mut f = [0u8; FRAME_LEN];
    f[0..4].copy_from_slice(&len.to_le_bytes());
    f[4..6].copy_from_slice(&record_type.to_le_bytes());
    f[6..8].copy_from_slice(&flags.to_le_bytes());
    f[8..12].copy_from_slice(&crc32(payload).to_le_bytes());
    let hcrc = crc32(&f[..12]);
    f[12..16].copy_from_slice(&hcrc.to_le_bytes());
    Ok(f)
}

/// Payload of an `END` record.
#[derive(Serialize, Deserialize)]
struct End {
    /// The capture continues in the next part.
    rotated: bool,
}
