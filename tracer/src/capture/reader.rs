//! [`CaptureReader`]: validates everything, allocates only what arrives.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;

use super::{
    base_of, flags, part_path, record_type, CaptureError, End, Header, Record, BUFFER_BYTES,
    FORMAT_VERSION, FRAME_LEN, MAGIC, MAX_RECORD_LEN, PREFIX_LEN,
};
use crate::{kernel::btf::DropReasons, pipeline::Input};

/// A record borrowed from the reader: kernel records are not copied out.
#[derive(Debug)]
// The hot variant is the small one; boxing the rare one would cost an
// allocation for nothing (the value is returned in place).
#[allow(clippy::large_enum_variant)]
pub enum RecordRef<'a> {
    /// The bytes of an `Input::Kernel`, valid until the next read.
    Kernel(&'a [u8]),
    /// Anything else.
    Other(Record),
}

/// Payload bytes are read in chunks of at most this, so a declared length
/// costs memory only once the bytes are really there.
pub(super) const CHUNK: usize = 1 << 20;

/// One frame read from the current part.
enum Frame {
    /// A checked record; its payload is in `scratch`.
    Record { rtype: u16, flags: u16, offset: u64 },
    /// Clean end of the part at a record boundary.
    Eof,
    /// The part ends inside the record starting at this offset (or is
    /// zero-filled from there).
    Cut { offset: u64 },
}

/// Reads a capture: `FILE`, then `FILE.1` … when the capture was rotated.
pub struct CaptureReader {
    src: BufReader<Box<dyn Read + Send>>,
    /// The part being read (a display name for [`CaptureReader::from_reader`]).
    path: PathBuf,
    /// `FILE` of `FILE.n`, when reading from files.
    base: Option<PathBuf>,
    part: u32,
    /// Offset in the current part of the next unread byte.
    offset: u64,
    header: Header,
    drop_reasons: DropReasons,
    pending: VecDeque<Record>,
    pub(super) scratch: Vec<u8>,
    /// Reading on from a previous part: skip its re-stated state.
    continuing: bool,
    done: bool,
    truncated: Option<(PathBuf, u64)>,
    warning: Option<String>,
    skipped_unknown: u64,
}

impl CaptureReader {
    /// Opens a capture part and reads its header and tables. Given `FILE`
    /// (or `FILE.n`), the reader goes on into the following parts.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|e| CaptureError::io("open", path, e))?;
        let mut r = Self::start(Box::new(file), path.to_path_buf())?;
        r.base = base_of(path, r.header.part);
        Ok(r)
    }

    /// Reads a capture from a stream (one part: no rotation). `name` is
    /// used in messages.
    pub fn from_reader(
        src: impl Read + Send + 'static,
        name: impl Into<PathBuf>,
    ) -> Result<Self, CaptureError> {
        Self::start(Box::new(src), name.into())
    }

    fn start(src: Box<dyn Read + Send>, path: PathBuf) -> Result<Self, CaptureError> {
        let mut r = Self {
            src: BufReader::with_capacity(BUFFER_BYTES, src),
            path,
            base: None,
            part: 0,
            offset: 0,
            header: Header::default(),
            drop_reasons: DropReasons::default(),
            pending: VecDeque::new(),
            scratch: Vec::new(),
            continuing: false,
            done: false,
            truncated: None,
            warning: None,
            skipped_unknown: 0,
        };
        r.read_prefix()?;
        r.header = r.read_header()?;
        r.part = r.header.part;
        // The drop-reason table comes next; unknown optional records may precede it.
        loop {
            let (rtype, flags, offset) = match r.read_frame()? {
                Frame::Record {
                    rtype,
                    flags,
                    offset,
                } => (rtype, flags, offset),
                Frame::Eof => {
                    return Err(CaptureError::TruncatedHeader {
                        path: r.path.clone(),
                        offset: r.offset,
                    })
                }
                Frame::Cut { offset } => {
                    return Err(CaptureError::TruncatedHeader {
                        path: r.path.clone(),
                        offset,
                    })
                }
            };
            match rtype {
                record_type::DROP_REASONS => {
                    r.drop_reasons = r.json(offset, "drop-reason")?;
                    break;
                }
                t if is_known(t) => {
                    return Err(r.corrupt(
                        offset,
                        format!("record type {t} where the drop-reason table should be"),
                    ))
                }
                t => r.unknown(t, flags, offset)?,
            }
        }
        r.pending.push_back(Record::Header(r.header.clone()));
        r.pending
            .push_back(Record::DropReasons(r.drop_reasons.clone()));
        Ok(r)
    }

    /// The header of the part opened.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Drop-reason names of the recording host.
    pub fn drop_reasons(&self) -> &DropReasons {
        &self.drop_reasons
    }

    /// The next record (the first two are the header and the drop-reason
    /// table). `Ok(None)` at the end: check [`Self::truncated`] then.
    pub fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        Ok(match self.next_ref()? {
            None => None,
            Some(RecordRef::Other(r)) => Some(r),
            Some(RecordRef::Kernel(b)) => Some(Record::Input(Input::Kernel(b.to_vec()))),
        })
    }

    /// Like [`Self::next_record`], but kernel records are borrowed (no
    /// allocation): the fast path for replays.
    pub fn next_ref(&mut self) -> Result<Option<RecordRef<'_>>, CaptureError> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Ok(Some(RecordRef::Other(r)));
            }
            if self.done {
                return Ok(None);
            }
            let (rtype, flags, offset) = match self.read_frame()? {
                Frame::Record {
                    rtype,
                    flags,
                    offset,
                } => (rtype, flags, offset),
                Frame::Eof => {
                    let at = self.offset;
                    self.cut_short(at, "without an end marker");
                    return Ok(None);
                }
                Frame::Cut { offset } => {
                    self.cut_short(offset, "inside a record");
                    return Ok(None);
                }
            };
            if self.continuing && flags & flags::STATE != 0 {
                continue;
            }
            match rtype {
                record_type::KERNEL => return Ok(Some(RecordRef::Kernel(&self.scratch))),
                record_type::INPUT => match serde_json::from_slice::<Input>(&self.scratch) {
                    Ok(input) => return Ok(Some(RecordRef::Other(Record::Input(input)))),
                    // Valid JSON of an Input variant this tracer does not know.
                    Err(e) if e.classify() == serde_json::error::Category::Data => {
                        self.skipped_unknown += 1;
                    }
                    Err(e) => {
                        return Err(self.corrupt(offset, format!("invalid input record: {e}")))
                    }
                },
                record_type::SYMBOLS => {
                    let syms = self.json(offset, "symbol")?;
                    return Ok(Some(RecordRef::Other(Record::Symbols(syms))));
                }
                record_type::DROP_REASONS => {
                    let d = self.json(offset, "drop-reason")?;
                    return Ok(Some(RecordRef::Other(Record::DropReasons(d))));
                }
                record_type::HEADER => {
                    let h = self.json(offset, "header")?;
                    return Ok(Some(RecordRef::Other(Record::Header(h))));
                }
                record_type::END => {
                    let end: End = self.json(offset, "end")?;
                    if end.rotated {
                        self.next_part()?;
                    } else {
                        self.done = true;
                    }
                }
                t => self.unknown(t, flags, offset)?,
            }
        }
    }

    /// Where the capture was cut short: the part and the byte offset of the
    /// first incomplete record (offset 0 of a missing part). `None` when it
    /// ended with its end marker (or has not been read to the end yet).
    pub fn truncated(&self) -> Option<(PathBuf, u64)> {
        self.truncated.clone()
    }

    /// What to tell the operator after the last record, if anything
    /// (truncation, a missing part).
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// Records of types (or inputs of kinds) this tracer does not know,
    /// skipped so far.
    pub fn skipped_unknown(&self) -> u64 {
        self.skipped_unknown
    }

    /// The part being read and the offset after the last record read.
    pub fn position(&self) -> (&Path, u64) {
        (&self.path, self.offset)
    }

    fn cut_short(&mut self, offset: u64, how: &str) {
        self.done = true;
        self.warning = Some(format!(
            "capture {} ends at byte {offset} {how}: the recording was cut short \
             (every complete record before it was replayed)",
            self.path.display()
        ));
        self.truncated = Some((self.path.clone(), offset));
    }

    fn corrupt(&self, offset: u64, what: impl Into<String>) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            offset,
            what: what.into(),
        }
    }

    fn unknown(&mut self, rtype: u16, flags: u16, offset: u64) -> Result<(), CaptureError> {
        if flags & flags::CRITICAL != 0 {
            return Err(CaptureError::UnknownCritical {
                path: self.path.clone(),
                offset,
                record_type: rtype,
            });
        }
        self.skipped_unknown += 1;
        Ok(())
    }

    fn json<T: DeserializeOwned>(&self, offset: u64, what: &str) -> Result<T, CaptureError> {
        serde_json::from_slice(&self.scratch)
            .map_err(|e| self.corrupt(offset, format!("invalid {what} record: {e}")))
    }

    /// Magic, version, crc.
    fn read_prefix(&mut self) -> Result<(), CaptureError> {
        let mut p = [0u8; PREFIX_LEN];
        let got = read_full(&mut self.src, &mut p)
            .map_err(|e| CaptureError::io("read", &self.path, e))?;
        let path = self.path.clone();
        if got == 0 {
            return Err(CaptureError::Empty { path });
        }
        let m = got.min(MAGIC.len());
        if p[..m] != MAGIC[..m] {
            return Err(CaptureError::NotACapture { path });
        }
        if got < PREFIX_LEN {
            return Err(CaptureError::TruncatedHeader {
                path,
                offset: got as u64,
            });
        }
        let crc = u32::from_le_bytes([p[12], p[13], p[14], p[15]]);
        if !crc_ok(crc, &p[..12]) {
            return Err(self.corrupt(0, "file header checksum mismatch"));
        }
        let version = u32::from_le_bytes([p[8], p[9], p[10], p[11]]);
        if version > FORMAT_VERSION {
            return Err(CaptureError::TooNew {
                path,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(self.corrupt(8, "format version 0 does not exist"));
        }
        self.offset = PREFIX_LEN as u64;
        Ok(())
    }

    /// The first record of a part: its header.
    fn read_header(&mut self) -> Result<Header, CaptureError> {
        match self.read_frame()? {
            Frame::Record {
                rtype: record_type::HEADER,
                offset,
                ..
            } => self.json(offset, "header"),
            Frame::Record { rtype, offset, .. } => Err(self.corrupt(
                offset,
                format!("the first record has type {rtype}, not a header"),
            )),
            Frame::Eof | Frame::Cut { .. } => Err(CaptureError::TruncatedHeader {
                path: self.path.clone(),
                offset: self.offset,
            }),
        }
    }

    /// After `END {"rotated": true}`: on into `FILE.n+1`, which must be the
    /// next part of the same recording.
    fn next_part(&mut self) -> Result<(), CaptureError> {
        // A header may claim any part number: u32::MAX has no next part.
        let Some(following) = self.part.checked_add(1) else {
            self.done = true;
            self.warning = Some(format!(
                "capture {} says it is part {} and continues: no part can follow it",
                self.path.display(),
                self.part
            ));
            return Ok(());
        };
        let Some(base) = self.base.clone() else {
            self.done = true;
            self.warning = Some(format!(
                "capture {} continues in a part {}.{} that was not given",
                self.path.display(),
                self.path.display(),
                following
            ));
            return Ok(());
        };
        let next = part_path(&base, following);
        let file = match File::open(&next) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.done = true;
                self.warning = Some(format!(
                    "capture {} continues in {}, which is missing: the rest of the recording is lost",
                    self.path.display(),
                    next.display()
                ));
                self.truncated = Some((next, 0));
                return Ok(());
            }
            Err(e) => return Err(CaptureError::io("open", &next, e)),
        };
        let previous = std::mem::replace(&mut self.path, next);
        self.src = BufReader::with_capacity(BUFFER_BYTES, Box::new(file));
        self.offset = 0;
        self.read_prefix()?;
        let h = self.read_header()?;
        let why = if h.part != following {
            Some(format!("it is part {}, expected part {following}", h.part))
        } else if h.started_unix_ns != self.header.started_unix_ns
            || h.hostname != self.header.hostname
        {
            Some(format!(
                "it belongs to a recording on {} started at {} ns (this one: {} at {} ns)",
                h.hostname, h.started_unix_ns, self.header.hostname, self.header.started_unix_ns
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(CaptureError::BrokenChain {
                path: self.path.clone(),
                previous,
                why,
            });
        }
        self.part = h.part;
        self.continuing = true;
        self.pending.push_back(Record::Header(h));
        Ok(())
    }

    /// Reads and checks one record frame and its payload (into `scratch`).
    fn read_frame(&mut self) -> Result<Frame, CaptureError> {
        let offset = self.offset;
        // Fast path: a whole, intact record already in the read buffer is
        // checked there and copied once. Anything else (a record across
        // the buffer's end, a bad checksum, a cut) takes the careful path
        // below, which reads the same bytes again from the same position.
        if let Some((rtype, flags, len)) = whole_record(self.src.buffer()) {
            self.scratch.clear();
            self.scratch
                .extend_from_slice(&self.src.buffer()[FRAME_LEN..FRAME_LEN + len]);
            self.src.consume(FRAME_LEN + len);
            self.offset = offset + (FRAME_LEN + len) as u64;
            return Ok(Frame::Record {
                rtype,
                flags,
                offset,
            });
        }
        let mut f = [0u8; FRAME_LEN];
        let got = read_full(&mut self.src, &mut f)
            .map_err(|e| CaptureError::io("read", &self.path, e))?;
        if got == 0 {
            return Ok(Frame::Eof);
        }
        if got < FRAME_LEN {
            return Ok(Frame::Cut { offset });
        }
        let len = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
        let rtype = u16::from_le_bytes([f[4], f[5]]);
        let flags = u16::from_le_bytes([f[6], f[7]]);
        let crc = u32::from_le_bytes([f[8], f[9], f[10], f[11]]);
        let hcrc = u32::from_le_bytes([f[12], f[13], f[14], f[15]]);
        if !crc_ok(hcrc, &f[..12]) {
            if f[FRAME_LEN - 1] == 0 && self.rest_is_zero()? {
                return Ok(Frame::Cut { offset });
            }
            return Err(self.corrupt(offset, "record frame checksum mismatch"));
        }
        if len > MAX_RECORD_LEN {
            return Err(self.corrupt(
                offset,
                format!("declared length {len} exceeds the {MAX_RECORD_LEN}-byte limit"),
            ));
        }
        // Grow the buffer only as the bytes arrive.
        let len = len as usize;
        self.scratch.clear();
        while self.scratch.len() < len {
            let start = self.scratch.len();
            let want = (len - start).min(CHUNK);
            self.scratch.resize(start + want, 0);
            let got = read_full(&mut self.src, &mut self.scratch[start..])
                .map_err(|e| CaptureError::io("read", &self.path, e))?;
            if got < want {
                self.scratch.truncate(start + got);
                return Ok(Frame::Cut { offset });
            }
        }
        if !crc_ok(crc, &self.scratch) {
            if self.scratch.last() == Some(&0) && self.rest_is_zero()? {
                return Ok(Frame::Cut { offset });
            }
            return Err(self.corrupt(offset, "checksum mismatch"));
        }
        self.offset = offset + (FRAME_LEN + len) as u64;
        Ok(Frame::Record {
            rtype,
            flags,
            offset,
        })
    }

    /// After a checksum failure whose bytes end in zeros: true when the
    /// rest of the part is zeros too (consumes it). A crash can leave a
    /// file's end zero-filled, and that is a cut, not damage.
    fn rest_is_zero(&mut self) -> Result<bool, CaptureError> {
        let mut buf = [0u8; 8192];
        loop {
            let n = read_full(&mut self.src, &mut buf)
                .map_err(|e| CaptureError::io("read", &self.path, e))?;
            if buf[..n].iter().any(|b| *b != 0) {
                return Ok(false);
            }
            if n < buf.len() {
                return Ok(true);
            }
        }
    }
}

/// Under `cfg(fuzzing)` (cargo-fuzz builds) a zero checksum field always
/// matches, so the fuzzer gets past the checksums into what they protect;
/// mismatches are still exercised with any other value.
/// (type, flags, payload length) of the record at the start of `buf`
/// when it is entirely there with valid checksums and length.
fn whole_record(buf: &[u8]) -> Option<(u16, u16, usize)> {
    let f = buf.get(..FRAME_LEN)?;
    let len = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
    let rtype = u16::from_le_bytes([f[4], f[5]]);
    let flags = u16::from_le_bytes([f[6], f[7]]);
    let crc = u32::from_le_bytes([f[8], f[9], f[10], f[11]]);
    let hcrc = u32::from_le_bytes([f[12], f[13], f[14], f[15]]);
    if len > MAX_RECORD_LEN || !crc_ok(hcrc, &f[..12]) {
        return None;
    }
    let len = len as usize;
    let payload = buf.get(FRAME_LEN..FRAME_LEN + len)?;
    crc_ok(crc, payload).then_some((rtype, flags, len))
}

fn crc_ok(stored: u32, data: &[u8]) -> bool {
    (cfg!(fuzzing) && stored == 0) || super::crc32(data) == stored
}

fn is_known(rtype: u16) -> bool {
    matches!(
        rtype,
        record_type::HEADER
            | record_type::DROP_REASONS
            | record_type::SYMBOLS
            | record_type::END
            | record_type::KERNEL
            | record_type::INPUT
    )
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
