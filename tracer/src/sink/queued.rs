//! [`Queued`]: a sink whose writes happen on a thread of its own, fed
//! through a bounded queue. Pushing never waits for the writer: a batch
//! that does not fit in the queue is dropped and counted, so a slow reader
//! of stdout (or, later, a slow file or socket) costs lines, never the
//! ring-buffer reader's time.

use std::{
    collections::VecDeque,
    io::{self, Write},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    thread::JoinHandle,
};

use super::{Batch, Sink, SinkError, SinkStats};

/// Bytes of lines a queued sink holds at most (beyond them, batches are
/// dropped): a few seconds of a busy host's output.
pub const QUEUE_BYTES: usize = 16 << 20;
/// Batches it holds at most (however small).
const QUEUE_BATCHES: usize = 4096;

#[derive(Default)]
struct State {
    queue: VecDeque<Batch>,
    bytes: usize,
    /// The producer is done: write what is queued, then stop.
    closed: bool,
    /// The writer stopped on this error.
    error: Option<(io::ErrorKind, String)>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    delivered: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters: go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Queued {
    name: String,
    shared: Arc<Shared>,
    capacity: usize,
    dropped: u64,
    /// The writer's error was reported once already.
    reported: bool,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Queued {
    /// Starts the writer thread `thread_name` over `w`, with a queue of at
    /// most `capacity` bytes.
    pub fn new<W: Write + Send + 'static>(
        name: impl Into<String>,
        thread_name: &str,
        w: W,
        capacity: usize,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(thread_name.into())
                .spawn(move || write_all(w, &shared))?
        };
        Ok(Self {
            name: name.into(),
            shared,
            capacity,
            dropped: 0,
            reported: false,
            thread: Some(thread),
        })
    }

    fn error(&self, kind: io::ErrorKind, msg: &str) -> SinkError {
        SinkError::new(
            format!("writing to {}", self.name),
            io::Error::new(kind, msg.to_string()),
        )
    }
}

impl Sink for Queued {
    fn name(&self) -> &str {
        &self.name
    }

    /// Queues the batch, or drops it (counted) when the queue is full.
    /// Once the writer has stopped, the first push says why.
    fn push(&mut self, batch: Batch) -> Result<(), SinkError> {
        let mut st = self.shared.lock();
        if let Some((kind, msg)) = &st.error {
            if !self.reported {
                self.reported = true;
                let e = self.error(*kind, msg);
                return Err(e);
            }
            return Ok(());
        }
        let len = batch.bytes.len();
        if st.bytes + len > self.capacity || st.queue.len() >= QUEUE_BATCHES {
            drop(st);
            self.dropped += batch.lines;
            return Ok(());
        }
        st.bytes += len;
        st.queue.push_back(batch);
        drop(st);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Nothing to do: the writer flushes after every batch.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Waits for the writer to write everything queued.
    fn finish(mut self: Box<Self>) -> SinkStats {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        let ended = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(res)) => res,
            Some(Err(_)) => Err(io::Error::other("the writer thread panicked")),
            None => Err(io::Error::other("the writer thread is gone")),
        };
        SinkStats {
            name: self.name.clone(),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            dropped: self.dropped,
            error: ended
                .err()
                .map(|source| SinkError::new(format!("writing to {}", self.name), source)),
        }
    }
}

impl Drop for Queued {
    /// Without `finish`: the writer still writes what was queued.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.lock().closed = true;
            self.shared.ready.notify_one();
            let _ = t.join();
        }
    }
}

/// The writer thread: batches in order until closed and empty, or until a
/// write fails (then the queue is emptied and the error kept for the
/// producer).
fn write_all<W: Write>(mut w: W, shared: &Shared) -> io::Result<()> {
    loop {
        let batch = {
            let mut st = shared.lock();
            loop {
                if let Some(b) = st.queue.pop_front() {
                    st.bytes -= b.bytes.len();
                    break b;
                }
                if st.closed {
                    drop(st);
                    return w.flush();
                }
                st = shared.ready.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        if let Err(e) = w.write_all(&batch.bytes).and_then(|()| w.flush()) {
            let mut st = shared.lock();
            st.error = Some((e.kind(), e.to_string()));
            st.queue.clear();
            st.bytes = 0;
            return Err(e);
        }
        shared.delivered.fetch_add(batch.lines, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::mpsc::{sync_channel, Receiver},
        time::Duration,
    };

    use super::*;

    /// A writer that blocks until told to go on, then keeps what it gets.
    struct Gate {
        go: Receiver<()>,
        open: bool,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.open {
                let _ = self.go.recv();
                self.open = true;
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn batch(i: u32, len: usize) -> Batch {
        let mut v = format!("{i:08}").into_bytes();
        v.resize(len - 1, b'x');
        v.push(b'\n');
        Batch {
            bytes: v.into(),
            lines: 1,
        }
    }

    /// A stuck writer: pushes return at once, what exceeds the queue is
    /// dropped and counted, and what was queued is written in order once
    /// the writer moves again.
    #[test]
    fn a_stuck_writer_costs_lines_not_time() {
        let (go, rx) = sync_channel(1);
        let got = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate {
            go: rx,
            open: false,
            got: Arc::clone(&got),
        };
        let mut s = Box::new(Queued::new("test", "test-writer", gate, 10_000).unwrap());
        let t0 = std::time::Instant::now();
        let mut want = Vec::new();
        for i in 0..100 {
            let b = batch(i, 1000);
            // The first batch may be taken by the writer (stuck in write).
            if i < 11 {
                want.extend_from_slice(&b.bytes);
            }
            s.push(b).unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "pushes did not wait");
        let dropped = s.dropped();
        // 10 queued (+1 in the writer's hands, or 10 and none): the rest dropped.
        assert!((89..=90).contains(&dropped), "{dropped} dropped");
        go.send(()).unwrap();
        let stats = s.finish();
        assert!(stats.error.is_none());
        assert_eq!(stats.delivered + stats.dropped, 100);
        let got = got.lock().unwrap();
        assert_eq!(*got, want[..got.len()], "written in order");
        assert_eq!(got.len() as u64, stats.delivered * 1000);
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A failed write stops the sink; a later push reports it once, finish
    /// returns it.
    #[test]
    fn a_write_error_is_reported_once_then_by_finish() {
        let mut s = Box::new(Queued::new("test", "test-writer", Broken, 1 << 20).unwrap());
        s.push(batch(0, 10)).unwrap();
        let mut errors = 0;
        for i in 1..1000 {
            if let Err(e) = s.push(batch(i, 10)) {
                assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
                errors += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(errors, 1);
        let stats = s.finish();
        assert_eq!(stats.delivered, 0);
        assert_eq!(stats.dropped, 0);
        let e = stats.error.expect("the error");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert!(e.to_string().starts_with("writing to test: "), "{e}");
    }
}
