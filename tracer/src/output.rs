//! NDJSON sink: serialised lines go to a dedicated writer thread, so a slow
//! reader of stdout never stalls the ring-buffer consumer directly.

use std::{
    io::{self, Write},
    sync::mpsc::{sync_channel, SyncSender},
    thread::JoinHandle,
};

use crate::event::EcsEvent;

/// Writer thread handle. Dropping the sender side via [`Output::finish`]
/// flushes and joins.
pub struct Output {
    tx: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<io::Result<u64>>>,
    buf: Vec<u8>,
    /// Lines serialised so far.
    pub lines: u64,
}

/// Name of the writer thread (`/proc/<pid>/task/<tid>/comm`).
pub const THREAD_NAME: &str = "ndjson-writer";

impl Output {
    pub fn new<W: Write + Send + 'static>(mut w: W) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(256);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || -> io::Result<u64> {
                let mut bytes = 0u64;
                for chunk in rx {
                    w.write_all(&chunk)?;
                    w.flush()?;
                    bytes += chunk.len() as u64;
                }
                w.flush()?;
                Ok(bytes)
            })
            .ok();
        Self {
            tx: Some(tx),
            thread,
            buf: Vec::with_capacity(1 << 16),
            lines: 0,
        }
    }

    pub fn push(&mut self, e: &EcsEvent) {
        // Serialising our own structs cannot fail (no maps with non-string keys).
        if e.write_line(&mut self.buf).is_ok() {
            self.lines += 1;
        }
        if self.buf.len() >= 1 << 16 {
            self.flush();
        }
    }

    /// Hands buffered lines to the writer thread.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 16));
        if let Some(tx) = &self.tx {
            // The writer only goes away on a write error (e.g. EPIPE);
            // finish() reports that.
            let _ = tx.send(chunk);
        }
    }

    /// Flushes everything and waits for the writer. Returns bytes written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.flush();
        self.tx.take();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("writer thread panicked"))),
            None => Err(io::Error::other("writer thread could not start")),
        }
    }
}
