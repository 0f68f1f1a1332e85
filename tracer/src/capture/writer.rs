//! [`CaptureWriter`]: buffered, checksummed, rotating.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions, Permissions},
    io::{self, BufWriter, Write as _},
    os::unix::{
        ffi::OsStrExt as _,
        fs::{OpenOptionsExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
};

use super::{
    flags, frame_bytes, part_path, prefix_bytes, record_type, CaptureError, End, Header,
    BUFFER_BYTES, FORMAT_VERSION, FRAME_LEN, PREFIX_LEN,
};
use crate::{kernel::btf::DropReasons, pipeline::Input};

/// What [`CaptureWriter::finish`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// `FILE`, `FILE.1` … in order.
    pub parts: Vec<PathBuf>,
    /// Inputs written (state re-stated at rotations not included).
    pub inputs: u64,
    /// Of which kernel records.
    pub kernel_records: u64,
    /// Bytes written over all parts.
    pub bytes: u64,
}

/// Writes a capture. Records go through a 1 MiB buffer: call
/// [`CaptureWriter::flush`] periodically (each loss-report tick) so a
/// crash loses little, and [`CaptureWriter::finish`] at the end (a capture
/// dropped without `finish` reads back as cut short, which it was).
pub struct CaptureWriter {
    base: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    header: Header,
    drop_reasons: DropReasons,
    rotate_bytes: Option<u64>,
    part: u32,
    part_bytes: u64,
    /// See [`Self::set_manual_rotation`].
    manual_rotation: bool,
    /// Records in this part after its preamble (rotation needs at least one).
    part_records: u64,
    /// Every symbol written so far, re-stated in each new part.
    symbols: BTreeMap<u64, String>,
    /// Inputs re-stated at the start of each new part.
    state: Vec<Input>,
    json: Vec<u8>,
    stats: CaptureStats,
}

impl CaptureWriter {
    /// Creates `path` (a new file, mode 0600: never an existing file or a
    /// symbolic link, see [`create_part`]) and writes the header and the
    /// drop-reason table. With `rotate_bytes`, a part that has reached that
    /// size is closed and the capture goes on in `path.1`, `path.2` …,
    /// each created the same way. Refuses to start when `path` or any
    /// `path.N` exists ([`check_free`]): nothing is ever overwritten,
    /// truncated or removed.
    pub fn create(
        path: &Path,
        header: Header,
        drop_reasons: &DropReasons,
        rotate_bytes: Option<u64>,
    ) -> Result<Self, CaptureError> {
        check_free(path)?;
        let out = create_part(path)?;
        Self::on(path, out, header, drop_reasons, rotate_bytes)
    }

    /// A writer on `out`, an open file standing for part 0 at `path`
    /// (later parts are created next to `path`).
    pub(super) fn on(
        path: &Path,
        out: BufWriter<File>,
        header: Header,
        drop_reasons: &DropReasons,
        rotate_bytes: Option<u64>,
    ) -> Result<Self, CaptureError> {
        let mut w = Self {
            base: path.to_path_buf(),
            path: path.to_path_buf(),
            out,
            header: Header {
                format_version: FORMAT_VERSION,
                part: 0,
                ..header
            },
            drop_reasons: drop_reasons.clone(),
            rotate_bytes,
            part: 0,
            part_bytes: 0,
            manual_rotation: false,
            part_records: 0,
            symbols: BTreeMap::new(),
            state: Vec::new(),
            json: Vec::with_capacity(4096),
            stats: CaptureStats::default(),
        };
        w.stats.parts.push(path.to_path_buf());
        w.write_preamble()?;
        Ok(w)
    }

    /// The part being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kernel symbols resolved since the last call
    /// ([`crate::decode::Locations::take_new`]). Write them before the
    /// kernel record whose processing resolved them.
    pub fn write_symbols(&mut self, syms: &[(u64, String)]) -> Result<(), CaptureError> {
        if syms.is_empty() {
            return Ok(());
        }
        self.rotate_if_due()?;
        self.symbols.extend(syms.iter().cloned());
        self.json.clear();
        serde_json::to_writer(&mut self.json, syms)?;
        let json = std::mem::take(&mut self.json);
        let res = self.write_record(record_type::SYMBOLS, flags::CRITICAL, &json);
        self.json = json;
        res?;
        self.part_records += 1;
        Ok(())
    }

    /// One pipeline input, in the order the pipeline processed it.
    pub fn write_input(&mut self, input: &Input) -> Result<(), CaptureError> {
        self.rotate_if_due()?;
        self.write_input_flags(input, flags::CRITICAL)?;
        self.part_records += 1;
        self.stats.inputs += 1;
        if matches!(input, Input::Kernel(_)) {
            self.stats.kernel_records += 1;
        }
        Ok(())
    }

    /// One ring-buffer record: the same bytes on disk as
    /// `write_input(&Input::Kernel(bytes.to_vec()))`, without the `Input`
    /// (the hot path of [`super::ThreadedWriter`]).
    pub fn write_kernel(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        self.rotate_if_due()?;
        self.write_record(record_type::KERNEL, flags::CRITICAL, bytes)?;
        self.part_records += 1;
        self.stats.inputs += 1;
        self.stats.kernel_records += 1;
        Ok(())
    }

    /// Bytes counted towards the rotation size in the current part: the
    /// whole part for the first one, what follows the restated state in a
    /// rotated one ([`Self::rotation_due`] compares it with the limit).
    pub fn part_bytes(&self) -> u64 {
        self.part_bytes
    }

    /// Inputs that bring a fresh pipeline to the current state (FDB seed,
    /// identity snapshot); re-stated at the start of every later part so it
    /// replays on its own. Replace it whenever convenient; or call
    /// [`CaptureWriter::rotate`] yourself with a fresh snapshot when
    /// [`CaptureWriter::rotation_due`] says so.
    pub fn set_rotation_state(&mut self, state: Vec<Input>) {
        self.state = state;
    }

    /// The current part has reached the rotation size: the next write
    /// starts a new part (with the state from [`Self::set_rotation_state`]),
    /// unless [`Self::rotate`] is called first with a fresher one.
    pub fn rotation_due(&self) -> bool {
        self.rotate_bytes
            .is_some_and(|limit| self.part_bytes >= limit && self.part_records > 0)
    }

    /// Closes this part and starts the next: header, tables, every symbol
    /// so far and `state`, all flagged as state.
    pub fn rotate(&mut self, state: &[Input]) -> Result<(), CaptureError> {
        self.write_end(true)?;
        self.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| CaptureError::io("sync", &self.path, e))?;
        self.part = self.part.checked_add(1).ok_or_else(|| {
            CaptureError::io(
                "rotate",
                &self.path,
                io::Error::other("no part number follows u32::MAX"),
            )
        })?;
        let path = part_path(&self.base, self.part);
        let out = create_part(&path)?;
        // The old part's buffer is empty (flushed above).
        self.out = out;
        self.path = path.clone();
        self.stats.parts.push(path);
        self.part_records = 0;
        self.header.part = self.part;
        self.write_preamble()?;
        for input in state {
            self.write_input_flags(input, flags::CRITICAL | flags::STATE)?;
        }
        // The rotation size counts what is recorded after the restated
        // state: a state larger than the limit must not rotate every record.
        self.part_bytes = 0;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.out
            .flush()
            .map_err(|e| CaptureError::io("write", &self.path, e))
    }

    /// Writes the end marker, flushes and syncs.
    pub fn finish(mut self) -> Result<CaptureStats, CaptureError> {
        self.write_end(false)?;
        self.flush()?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| CaptureError::io("sync", &self.path, e))?;
        Ok(std::mem::take(&mut self.stats))
    }

    /// The caller rotates (with [`Self::rotate`] and a fresh state, after
    /// [`Self::rotation_due`]): writes never rotate on their own, so no
    /// part starts with a stale state.
    pub fn set_manual_rotation(&mut self) {
        self.manual_rotation = true;
    }

    fn rotate_if_due(&mut self) -> Result<(), CaptureError> {
        if !self.manual_rotation && self.rotation_due() {
            let state = std::mem::take(&mut self.state);
            let res = self.rotate(&state);
            self.state = state;
            res?;
        }
        Ok(())
    }

    /// Prefix, header, drop reasons; in later parts also the symbols so far.
    fn write_preamble(&mut self) -> Result<(), CaptureError> {
        let prefix = prefix_bytes(FORMAT_VERSION);
        self.out
            .write_all(&prefix)
            .map_err(|e| CaptureError::io("write", &self.path, e))?;
        self.part_bytes += PREFIX_LEN as u64;
        self.stats.bytes += PREFIX_LEN as u64;
        let state = if self.part == 0 { 0 } else { flags::STATE };
        let header = serde_json::to_vec(&self.header)?;
        self.write_record(record_type::HEADER, flags::CRITICAL, &header)?;
        let reasons = serde_json::to_vec(&self.drop_reasons)?;
        self.write_record(record_type::DROP_REASONS, flags::CRITICAL | state, &reasons)?;
        if self.part > 0 && !self.symbols.is_empty() {
            let all: Vec<(&u64, &String)> = self.symbols.iter().collect();
            let syms = serde_json::to_vec(&all)?;
            self.write_record(record_type::SYMBOLS, flags::CRITICAL | flags::STATE, &syms)?;
        }
        Ok(())
    }

    fn write_input_flags(&mut self, input: &Input, flags: u16) -> Result<(), CaptureError> {
        match input {
            Input::Kernel(bytes) => self.write_record(record_type::KERNEL, flags, bytes),
            other => {
                self.json.clear();
                serde_json::to_writer(&mut self.json, other)?;
                let json = std::mem::take(&mut self.json);
                let res = self.write_record(record_type::INPUT, flags, &json);
                self.json = json;
                res
            }
        }
    }

    fn write_end(&mut self, rotated: bool) -> Result<(), CaptureError> {
        let end = serde_json::to_vec(&End { rotated })?;
        self.write_record(record_type::END, 0, &end)
    }

    fn write_record(&mut self, rtype: u16, flags: u16, payload: &[u8]) -> Result<(), CaptureError> {
        let frame = frame_bytes(rtype, flags, payload)?;
        self.out
            .write_all(&frame)
            .and_then(|()| self.out.write_all(payload))
            .map_err(|e| CaptureError::io("write", &self.path, e))?;
        let n = (FRAME_LEN + payload.len()) as u64;
        self.part_bytes += n;
        self.stats.bytes += n;
        Ok(())
    }
}

/// A new part file, created by this call: `O_CREAT | O_EXCL | O_NOFOLLOW`,
/// mode 0600. An existing file (or a symbolic link, even a dangling one)
/// at `path` is an error and is left as it was.
fn create_part(path: &Path) -> Result<BufWriter<File>, CaptureError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => CaptureError::Exists {
                path: path.to_path_buf(),
            },
            _ => CaptureError::io("create", path, e),
        })?;
    // Our own new file: 0600 whatever the umask left of it.
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(|e| CaptureError::io("set the mode of", path, e))?;
    Ok(BufWriter::with_capacity(BUFFER_BYTES, file))
}

/// Refuses a capture path that is taken: `path` itself (any kind of file,
/// a symbolic link included) or a part name `path.N` of it (an earlier
/// recording's parts: a reader would read on into them). Checked before
/// anything is created; [`create_part`]'s `O_EXCL` is what makes each
/// creation safe against a file appearing in between.
pub fn check_free(path: &Path) -> Result<(), CaptureError> {
    match fs::symlink_metadata(path) {
        Ok(_) => {
            return Err(CaptureError::Exists {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(CaptureError::io("look at", path, e)),
    }
    let Some(name) = path.file_name() else {
        return Err(CaptureError::io(
            "create",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        ));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // No directory: the create says so.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CaptureError::io("list", dir, e)),
    };
    let mut taken: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CaptureError::io("list", dir, e))?;
        let entry_name = entry.file_name();
        let Some(suffix) = entry_name.as_bytes().strip_prefix(name.as_bytes()) else {
            continue;
        };
        let Some(digits) = suffix.strip_prefix(b".") else {
            continue;
        };
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            let n = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(u64::MAX);
            taken.push((n, entry.path()));
        }
    }
    match taken.into_iter().min() {
        Some((_, part)) => Err(CaptureError::PartExists {
            path: path.to_path_buf(),
            part,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capture::CaptureReader, testutil::TempDir};

    /// Part numbers end at u32::MAX: the writer refuses to rotate past it
    /// and the reader of a part that claims to continue past it warns
    /// instead of overflowing.
    #[test]
    fn the_last_part_number_is_not_overflowed() {
        let dir = TempDir::new("lastpart");
        let path = dir.file("c");
        let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED")]);
        let header = super::super::Header::this_host(vec!["tracer".into()], 0, None);
        let mut w = CaptureWriter::create(&path, header, &reasons, None).unwrap();
        w.part = u32::MAX - 1;
        w.write_input(&Input::Tick { boot_ns: 1 }).unwrap();
        w.rotate(&[]).unwrap();
        assert_eq!(w.part, u32::MAX);
        w.write_input(&Input::Tick { boot_ns: 2 }).unwrap();
        let err = w.rotate(&[]).unwrap_err();
        assert!(err.to_string().contains("u32::MAX"), "{err}");

        let last = part_path(&path, u32::MAX);
        let mut r = CaptureReader::open(&last).unwrap();
        while r.next_record().unwrap().is_some() {}
        assert!(
            r.warning().unwrap().contains("no part can follow it"),
            "{:?}",
            r.warning()
        );
    }
}
