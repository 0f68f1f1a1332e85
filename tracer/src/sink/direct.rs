//! [`Direct`]: writes each batch on the caller's thread. For `tracer
//! replay`, whose output must be complete: nothing is ever dropped, a slow
//! reader slows the replay down.

use std::io::Write;

use super::{Batch, Sink, SinkError, SinkStats};

pub struct Direct<W: Write> {
    name: String,
    w: W,
    delivered: u64,
    /// Set once a write failed; later pushes are ignored.
    failed: bool,
}

impl<W: Write> Direct<W> {
    pub fn new(name: impl Into<String>, w: W) -> Self {
        Self {
            name: name.into(),
            w,
            delivered: 0,
            failed: false,
        }
    }

    fn error(&mut self, op: &'static str, source: std::io::Error) -> SinkError {
        self.failed = true;
        SinkError::new(format!("{op} {}", self.name), source)
    }
}

impl<W: Write> Sink for Direct<W> {
    fn name(&self) -> &str {
        &self.name
    }

    /// Writes and flushes the batch (a batch is a large piece, or what a
    /// paced replay has due now).
    fn push(&mut self, batch: Batch) -> Result<(), SinkError> {
        if self.failed {
            return Ok(());
        }
        if let Err(e) = self.w.write_all(&batch.bytes).and_then(|()| self.w.flush()) {
            return Err(self.error("writing to", e));
        }
        self.delivered += batch.lines;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if self.failed {
            return Ok(());
        }
        self.w.flush().map_err(|e| self.error("flushing", e))
    }

    fn dropped(&self) -> u64 {
        0
    }

    fn finish(mut self: Box<Self>) -> SinkStats {
        let error = self.flush().err();
        SinkStats {
            name: self.name.clone(),
            delivered: self.delivered,
            dropped: 0,
            error,
        }
    }
}
