//! Where serialised NDJSON lines go: the [`Sink`] interface, shared by the
//! live run and `tracer replay`.
//!
//! [`Lines`] serialises each [`EcsEvent`] once into a buffer and hands
//! whole lines to its sinks in [`Batch`]es (a [`Bytes`]: shared, not
//! copied, between sinks and threads). A sink then either writes at once
//! ([`Direct`]: replay, which must be complete and byte-identical) or
//! queues the batch for a thread of its own ([`Queued`]: the live run,
//! whose ring-buffer reader must never wait for a slow reader of stdout).
//! A queued sink's queue is bounded; what does not fit is dropped, counted,
//! and reported in `loss_report` (`tracer.sink_dropped`) and at exit.
//!
//! A sink that stops for good (a closed pipe, a full disk) says so through
//! the [`StopNotice`] its [`Lines`] hands it, from whatever thread found
//! the error: the live run waits on it in its loop and stops (a closed
//! pipe: quietly, exit 0; any other error: reported at once, exit 1).
//!
//! A new sink implements [`Sink`] (or is a [`Queued`] over its own
//! [`std::io::Write`]), gets a `--output` spelling in [`output`], and the
//! live run adds it to its [`Lines`]. The live run's targets: stdout,
//! `file:` ([`file::RotatingFile`] behind a [`Queued`]), `tcp://` and
//! `unix:` ([`stream::Stream`]). A file sink that can be reopened
//! (logrotate) says so with [`Sink::reopenable`]: SIGHUP then calls
//! [`Sink::reopen`] instead of stopping the run.

mod direct;
pub mod file;
pub mod output;
mod queued;
pub mod stream;
pub mod text;

use std::{
    io,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use self::text::TextView;
pub use self::{
    direct::Direct,
    output::{Output, Target},
    queued::{Queued, QUEUE_BYTES},
};
use crate::event::{ndjson::HostField, EcsEvent};

/// Whole NDJSON lines, each ending in `\n`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub bytes: Bytes,
    pub lines: u64,
}

impl Batch {
    /// One line (with its newline).
    pub fn line(line: &[u8]) -> Self {
        Self {
            bytes: Bytes::copy_from_slice(line),
            lines: 1,
        }
    }
}

/// A sink stopped: its writes failed.
#[derive(Debug, Error)]
#[error("{what}: {source}")]
pub struct SinkError {
    /// What failed ("writing to stdout", "recording stopped").
    pub what: String,
    #[source]
    pub source: io::Error,
}

impl SinkError {
    pub fn new(what: impl Into<String>, source: io::Error) -> Self {
        Self {
            what: what.into(),
            source,
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// Tells the owner of some sinks, from any thread, that one of them
/// stopped for good, and why (the first one that did).
#[derive(Clone, Debug, Default)]
pub struct StopNotice {
    token: CancellationToken,
    /// (what failed, error kind, message) of the first stop.
    first: Arc<Mutex<Option<(String, io::ErrorKind, String)>>>,
}

impl StopNotice {
    /// A sink stopped on `e` (later calls keep the first error).
    pub fn stop(&self, e: &SinkError) {
        {
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some((e.what.clone(), e.kind(), e.source.to_string()));
            }
        }
        self.token.cancel();
    }

    /// The first sink's error, once one stopped.
    pub fn error(&self) -> Option<SinkError> {
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first.as_ref().map(|(what, kind, msg)| {
            SinkError::new(what.clone(), io::Error::new(*kind, msg.clone()))
        })
    }

    /// Waits until a sink stopped; returns its error.
    pub async fn stopped(&self) -> SinkError {
        self.token.cancelled().await;
        self.error()
            .unwrap_or_else(|| SinkError::new("a sink", io::Error::other("stopped")))
    }
}

/// What a sink did, at the end (or so far).
#[derive(Debug)]
pub struct SinkStats {
    /// As in `loss_report`'s `tracer.sink_dropped` (`stdout`, ...).
    pub name: String,
    /// Lines (records, for the capture) written.
    pub delivered: u64,
    /// Lines dropped because the sink's queue was full.
    pub dropped: u64,
    /// Why it stopped early, if it did.
    pub error: Option<SinkError>,
}

/// Takes batches of lines; never blocks its caller for long unless it is
/// a direct sink (see the module documentation).
pub trait Sink {
    /// Short name, for `loss_report` and messages.
    fn name(&self) -> &str;

    /// A batch of whole lines. An error means the sink has stopped (later
    /// pushes are ignored); a queued sink reports it on a later call.
    fn push(&mut self, batch: Batch) -> Result<(), SinkError>;

    /// One line (with its newline).
    fn push_line(&mut self, line: &[u8]) -> Result<(), SinkError> {
        self.push(Batch::line(line))
    }

    /// Makes what was pushed so far visible to the reader (a queued sink:
    /// asks its thread to, without waiting).
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Lines dropped so far because the queue was full (0 for a direct sink).
    fn dropped(&self) -> u64;

    /// Where to say that this sink stopped for good when that is found on
    /// another thread (a queued sink's writer). The default does nothing:
    /// a sink that fails on the caller's thread returns the error from
    /// `push`/`flush`, which [`Lines`] passes on to the same notice.
    fn notify_stop(&mut self, _notice: StopNotice) {}

    /// Can [`Self::reopen`] start over (a file sink, for logrotate)? Then
    /// SIGHUP reopens instead of stopping the live run.
    fn reopenable(&self) -> bool {
        false
    }

    /// Closes and reopens the destination (SIGHUP); only called when
    /// [`Self::reopenable`].
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Writes everything queued, flushes, and says what happened.
    fn finish(self: Box<Self>) -> SinkStats;
}

/// Pieces handed to the sinks: large enough that a write() carries many
/// lines, small enough that lines are not held back for long.
pub const BATCH_BYTES: usize = 1 << 16;
/// A batch smaller than this is copied out of the buffer, which is kept.
const SMALL_BATCH: usize = 4 << 10;

/// The serialising front of one or more sinks: each event is serialised
/// once, batches are shared between the sinks.
pub struct Lines<'a> {
    sinks: Vec<Box<dyn Sink + 'a>>,
    buf: Vec<u8>,
    /// Lines in `buf`.
    pending: u64,
    /// A batch goes out once `buf` holds more than this.
    batch_bytes: usize,
    /// Lines serialised so far.
    lines: u64,
    /// `dropped()` of each sink at the last [`Self::take_dropped`].
    reported: Vec<u64>,
    /// `host.name`, appended to every NDJSON line.
    host: Option<HostField>,
    /// `--format text`: the lines are sentences and a status block, not
    /// NDJSON (a line counts one event).
    text: Option<Box<TextView>>,
    /// Fired when a sink stops for good.
    notice: StopNotice,
}

impl<'a> Lines<'a> {
    pub fn new(mut sinks: Vec<Box<dyn Sink + 'a>>, batch_bytes: usize) -> Self {
        let reported = vec![0; sinks.len()];
        let notice = StopNotice::default();
        for s in &mut sinks {
            s.notify_stop(notice.clone());
        }
        Self {
            notice,
            sinks,
            buf: Vec::with_capacity(batch_bytes + (1 << 16)),
            pending: 0,
            batch_bytes,
            lines: 0,
            reported,
            host: None,
            text: None,
        }
    }

    /// Every NDJSON line carries `host.name` = `name`.
    pub fn with_host_name(mut self, name: Option<&str>) -> Self {
        self.host = name.map(HostField::new);
        self
    }

    /// Renders events for a person instead of as NDJSON (`--format text`).
    pub fn with_text(mut self, view: Option<TextView>) -> Self {
        self.text = view.map(Box::new);
        self
    }

    /// Lines serialised so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Fired when any sink stops for good (see [`StopNotice`]).
    pub fn stop_notice(&self) -> StopNotice {
        self.notice.clone()
    }

    /// SIGHUP: reopens every reopenable sink. `false` when there is none
    /// (the caller then stops, as on SIGTERM).
    pub fn reopen(&mut self) -> Result<bool, SinkError> {
        let mut any = false;
        for s in &mut self.sinks {
            if s.reopenable() {
                any = true;
                if let Err(e) = s.reopen() {
                    self.notice.stop(&e);
                    return Err(e);
                }
            }
        }
        Ok(any)
    }

    /// Serialises `e` (one line); hands a batch on when the buffer is full.
    pub fn push(&mut self, e: &EcsEvent) -> Result<(), SinkError> {
        self.serialise(e);
        self.hand_off_when_full()
    }

    /// Every event of `batch`, in order; a batch is handed on (at most one)
    /// after the last, so the lines of one input leave together.
    pub fn push_all(&mut self, batch: &[EcsEvent]) -> Result<(), SinkError> {
        for e in batch {
            self.serialise(e);
        }
        self.hand_off_when_full()
    }

    #[inline]
    fn serialise(&mut self, e: &EcsEvent) {
        if let Some(t) = self.text.as_mut() {
            t.render(e, &mut self.buf);
            self.pending += 1;
            self.lines += 1;
            return;
        }
        let len = self.buf.len();
        if let Err(err) = e.write_line(&mut self.buf) {
            // Never half a line: serialising our own structs cannot fail
            // (no maps with non-string keys), but if it did the line is lost.
            self.buf.truncate(len);
            log::warn!("an event could not be serialised: {err}");
            return;
        }
        if let Some(h) = &self.host {
            h.append(&mut self.buf);
        }
        self.pending += 1;
        self.lines += 1;
    }

    #[inline]
    fn hand_off_when_full(&mut self) -> Result<(), SinkError> {
        if self.buf.len() > self.batch_bytes {
            return self.hand_off();
        }
        Ok(())
    }

    /// Hands what is buffered to the sinks, and flushes them.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        if let Some(t) = self.text.as_mut() {
            t.refresh(&mut self.buf);
        }
        let res = self.hand_off();
        let mut first = res;
        for s in &mut self.sinks {
            let r = s.flush();
            if let Err(e) = &r {
                self.notice.stop(e);
            }
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// The buffer, without copying, as a batch for every sink.
    fn hand_off(&mut self) -> Result<(), SinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = if self.buf.len() < SMALL_BATCH {
            // A few lines (a quiet host): copied, so that a queue of small
            // batches does not hold a large buffer each.
            let b = Bytes::copy_from_slice(&self.buf);
            self.buf.clear();
            b
        } else {
            // Moved, not copied.
            let next = Vec::with_capacity(self.batch_bytes + (1 << 16));
            Bytes::from(std::mem::replace(&mut self.buf, next))
        };
        let batch = Batch {
            bytes,
            lines: std::mem::take(&mut self.pending),
        };
        let mut first = Ok(());
        for s in &mut self.sinks {
            let r = s.push(batch.clone());
            if let Err(e) = &r {
                self.notice.stop(e);
            }
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Per sink, lines dropped since the last call (only sinks that
    /// dropped some): what the next `loss_report` says.
    pub fn take_dropped(&mut self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (s, prev) in self.sinks.iter().zip(&mut self.reported) {
            let now = s.dropped();
            if now > *prev {
                out.push((s.name().to_string(), now - *prev));
            }
            *prev = now;
        }
        out
    }

    /// Hands over what is left and finishes every sink.
    pub fn finish(mut self) -> Vec<SinkStats> {
        if let Some(t) = self.text.as_mut() {
            t.finish(&mut self.buf);
        }
        // A failure here is the sink's, and its stats say so.
        let _ = self.hand_off();
        self.sinks.into_iter().map(|s| s.finish()).collect()
    }
}

/// One line on stderr for a sink that stopped or dropped lines; `None`
/// when there is nothing to say. A closed pipe (`tracer run | head`) is
/// the reader's choice, not an error.
pub fn problem(stats: &SinkStats) -> Option<String> {
    let mut parts = Vec::new();
    if stats.dropped > 0 {
        // The pcapng output's items are packets.
        let unit = if stats.name == "pcapng" {
            "packets"
        } else {
            "lines"
        };
        parts.push(format!(
            "{}: {} {unit} dropped (not delivered: its queue was full, or its peer was away at exit)",
            stats.name, stats.dropped
        ));
    }
    match &stats.error {
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Some(e) => parts.push(e.to_string()),
        None => {}
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Name of the stdout writer thread (benchmarks find it by name).
pub const STDOUT_THREAD: &str = "ndjson-writer";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Kind;

    /// A sink that keeps what it is given.
    struct Keep(std::sync::Arc<std::sync::Mutex<Vec<u8>>>, u64);

    impl Sink for Keep {
        fn name(&self) -> &str {
            "keep"
        }
        fn push(&mut self, b: Batch) -> Result<(), SinkError> {
            self.0.lock().unwrap().extend_from_slice(&b.bytes);
            self.1 += b.lines;
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        fn dropped(&self) -> u64 {
            0
        }
        fn finish(self: Box<Self>) -> SinkStats {
            SinkStats {
                name: "keep".into(),
                delivered: self.1,
                dropped: 0,
                error: None,
            }
        }
    }

    fn event(i: u64) -> EcsEvent {
        let mut e = EcsEvent::new(
            1_700_000_000_000_000_000 + i as i128,
            Kind::Event,
            crate::event::Action::SkbDrop,
        );
        e.tracer.count = Some(i);
        e
    }

    /// Every sink gets every line, in order, as serde would write it, in
    /// batches of about the requested size.
    #[test]
    fn lines_reach_every_sink_in_order() {
        let (a, b) = (Default::default(), Default::default());
        let mut lines = Lines::new(
            vec![
                Box::new(Keep(std::sync::Arc::clone(&a), 0)),
                Box::new(Keep(std::sync::Arc::clone(&b), 0)),
            ],
            1000,
        );
        let mut want = Vec::new();
        for i in 0..500 {
            let e = event(i);
            want.extend(serde_json::to_vec(&e).unwrap());
            want.push(b'\n');
            lines.push(&e).unwrap();
            if i == 250 {
                lines.flush().unwrap();
            }
        }
        assert!(
            a.lock().unwrap().len() < want.len(),
            "batched, not all at once"
        );
        let stats = lines.finish();
        assert_eq!(
            stats.iter().map(|s| s.delivered).collect::<Vec<_>>(),
            [500, 500]
        );
        assert_eq!(*a.lock().unwrap(), want);
        assert_eq!(*b.lock().unwrap(), want);
    }

    /// A writer that never returns until told to.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl io::Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What a stuck queued sink drops is what the next loss report says,
    /// once; the other sink gets everything.
    #[test]
    fn drops_are_taken_once_per_sink() {
        let (go, rx) = std::sync::mpsc::channel();
        let kept = Default::default();
        let mut lines = Lines::new(
            vec![
                Box::new(Queued::new("stuck", "test-stuck", Stuck(rx), 4096).unwrap()),
                Box::new(Keep(std::sync::Arc::clone(&kept), 0)),
            ],
            100,
        );
        for i in 0..200 {
            lines.push(&event(i)).unwrap();
        }
        let dropped = lines.take_dropped();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert_eq!(dropped[0].0, "stuck");
        assert!(dropped[0].1 > 100, "{dropped:?}");
        assert!(lines.take_dropped().is_empty(), "reported once");
        drop(go);
        let stats = lines.finish();
        assert_eq!(stats[0].dropped, dropped[0].1);
        assert_eq!(stats[0].delivered + stats[0].dropped, 200);
        assert_eq!(stats[1].delivered, 200);
        assert_eq!(
            kept.lock().unwrap().iter().filter(|&&b| b == b'\n').count(),
            200
        );
    }

    #[test]
    fn problems_are_worded_and_a_closed_pipe_is_not_one() {
        let mut s = SinkStats {
            name: "stdout".into(),
            delivered: 1,
            dropped: 0,
            error: None,
        };
        assert_eq!(problem(&s), None);
        s.error = Some(SinkError::new(
            "writing to stdout",
            io::ErrorKind::BrokenPipe.into(),
        ));
        assert_eq!(problem(&s), None);
        s.dropped = 3;
        s.error = Some(SinkError::new(
            "writing to stdout",
            io::Error::from_raw_os_error(28),
        ));
        let p = problem(&s).unwrap();
        assert!(p.starts_with("stdout: 3 lines dropped"), "{p}");
        assert!(
            p.contains("writing to stdout: No space left on device"),
            "{p}"
        );
    }
}
