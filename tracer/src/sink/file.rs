//! [`RotatingFile`]: the writer behind a `file:PATH` sink (a [`Queued`]
//! sink over it, so a slow disk costs lines, never the ring reader's time).
//!
//! - Created `0640` (before the umask), opened with `O_APPEND`,
//!   `O_NOFOLLOW` (a symlink planted at the path is refused) and
//!   `O_CLOEXEC`.
//! - Size-based rotation (`file:PATH?rotate=SIZE&keep=N`): once the file
//!   holds `SIZE` bytes, after a whole batch of lines, `PATH.N-1` →
//!   `PATH.N`, ..., `PATH` → `PATH.1`, and a new `PATH` is opened.
//! - Reopened after SIGHUP ([`request_reopen`]), for logrotate's
//!   rename-then-signal (`postrotate kill -HUP`): the next line goes to a
//!   new file at `PATH`.
//!
//! [`Queued`]: super::Queued

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Bumped by SIGHUP: every file sink reopens its path before its next line.
static REOPEN: AtomicU64 = AtomicU64::new(0);

/// Asks every file sink to reopen its path (SIGHUP).
pub fn request_reopen() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
}

/// Rotated files kept when `keep` is not given.
pub const DEFAULT_KEEP: u32 = 5;

/// Rotation of a file sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file holds this many bytes (None: never).
    pub size: Option<u64>,
    /// Rotated files kept (`PATH.1` .. `PATH.keep`).
    pub keep: u32,
}

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    rotation: Rotation,
    generation: u64,
    /// The last byte written ended a line (or nothing was written yet).
    at_line_start: bool,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    format!("{} is a symbolic link (refused)", path.display()),
                )
            } else {
                io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
            }
        })
}

impl RotatingFile {
    /// Opens (creates, or appends to) `path`.
    pub fn open(path: impl Into<PathBuf>, rotation: Rotation) -> io::Result<Self> {
        let path = path.into();
        let file = open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            size,
            rotation,
            generation: REOPEN.load(Ordering::Relaxed),
            at_line_start: true,
        })
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file = open(&self.path)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        p.into()
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.keep.max(1);
        for n in (1..keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.reopen()
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.at_line_start {
            let g = REOPEN.load(Ordering::Relaxed);
            if g != self.generation {
                self.generation = g;
                self.reopen()?;
            }
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        if n > 0 {
            self.at_line_start = buf[n - 1] == b'\n';
        }
        Ok(n)
    }

    /// After each batch (whole lines): rotates when the file is full.
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.at_line_start && self.rotation.size.is_some_and(|s| self.size >= s) {
            self.rotate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tracer-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rotates_by_size_keeping_n_and_whole_lines() {
        let d = dir("rot");
        let p = d.join("out.ndjson");
        let mut f = RotatingFile::open(
            &p,
            Rotation {
                size: Some(100),
                keep: 2,
            },
        )
        .unwrap();
        for i in 0..10 {
            // 60 bytes per batch: every second batch rotates.
            f.write_all(format!("{i:059}\n").as_bytes()).unwrap();
            f.flush().unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&p), "");
        assert!(read(&d.join("out.ndjson.1")).starts_with(&format!("{:059}\n", 8)));
        assert!(read(&d.join("out.ndjson.2")).starts_with(&format!("{:059}\n", 6)));
        assert!(!d.join("out.ndjson.3").exists());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
    }

    #[test]
    fn a_symlink_at_the_path_is_refused() {
        let d = dir("link");
        std::os::unix::fs::symlink(d.join("target"), d.join("out")).unwrap();
        let e = RotatingFile::open(d.join("out"), Rotation::default())
            .err()
            .expect("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!d.join("target").exists());
    }

    /// logrotate: rename, then SIGHUP; the next line goes to a new file.
    #[test]
    fn reopens_after_rename_and_request() {
        let d = dir("hup");
        let p = d.join("out");
        let mut f = RotatingFile::open(&p, Rotation::default()).unwrap();
        f.write_all(b"one\n").unwrap();
        std::fs::rename(&p, d.join("out.old")).unwrap();
        f.write_all(b"two\n").unwrap();
        request_reopen();
        f.write_all(b"three\n").unwrap();
        f.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("out.old")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three\n");
    }
}
