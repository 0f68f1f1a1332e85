//! [`Queued`]: a sink whose writes happen on a thread of its own, fed
//! through a bounded queue. Pushing never waits for the writer: a batch
//! that does not fit in the queue is dropped and counted, so a slow reader
//! of stdout (or, later, a slow file or socket) costs lines, never the
//! ring-buffer reader's time. A write error stops the writer, which says
//! so at once through the [`StopNotice`] (the live loop stops on it);
//! [`Sink::finish`] waits for the writer at most [`FINISH_WAIT`], so a
//! reader that takes nothing cannot hold tracer's exit forever.

use std::{
    collections::VecDeque,
    io::{self, Write},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{Batch, Sink, SinkError, SinkStats, StopNotice};

/// How often an idle writer looks whether its reader is gone
/// ([`Queued::watch_reader`]).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How long [`Sink::finish`] waits for the writer to write what is queued.
pub const FINISH_WAIT: Duration = Duration::from_secs(5);

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
    /// Told when the writer stops on an error.
    notice: Option<StopNotice>,
    /// The writer thread has returned.
    done: bool,
    /// See [`Queued::watch_reader`].
    watch: Option<std::os::fd::RawFd>,
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
    /// Lines queued so far (delivered, queued or lost in a failed write).
    queued: u64,
    finish_wait: Duration,
    shared: Arc<Shared>,
    capacity: usize,
    dropped: u64,
    /// The writer's error was reported once already.
    reported: bool,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// SIGHUP reopens the destination with this (a file output: logrotate).
    on_reopen: Option<fn()>,
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
        let name = name.into();
        let thread = {
            let shared = Arc::clone(&shared);
            let what = format!("writing to {name}");
            std::thread::Builder::new()
                .name(thread_name.into())
                .spawn(move || {
                    let res = write_all(w, &shared, &what);
                    let mut st = shared.lock();
                    st.done = true;
                    drop(st);
                    shared.ready.notify_all();
                    res
                })?
        };
        Ok(Self {
            name,
            queued: 0,
            finish_wait: FINISH_WAIT,
            shared,
            capacity,
            dropped: 0,
            reported: false,
            thread: Some(thread),
            on_reopen: None,
        })
    }

    /// SIGHUP calls `reopen` (which makes the writer reopen its destination
    /// before its next write) instead of stopping the run.
    pub fn reopen_with(mut self, reopen: fn()) -> Self {
        self.on_reopen = Some(reopen);
        self
    }

    /// While idle, the writer looks every [`WATCH_INTERVAL`] whether the
    /// reader of `fd` (the descriptor it writes to) is gone: a pipe whose
    /// reader exited, a socket closed by its peer. That ends the sink as a
    /// failed write with EPIPE would, without waiting for the next line
    /// (on a quiet host, `tracer run | head -3` would otherwise run on
    /// until the next event). `fd` must stay open as long as the sink.
    pub fn watch_reader(self, fd: std::os::fd::RawFd) -> Self {
        self.shared.lock().watch = Some(fd);
        self.shared.ready.notify_all();
        self
    }

    /// [`Sink::finish`] waits this long at most (tests).
    pub fn with_finish_wait(mut self, wait: Duration) -> Self {
        self.finish_wait = wait;
        self
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

    fn reopenable(&self) -> bool {
        self.on_reopen.is_some()
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        if let Some(f) = self.on_reopen {
            f();
        }
        Ok(())
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
        self.queued += batch.lines;
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

    fn notify_stop(&mut self, notice: StopNotice) {
        let mut st = self.shared.lock();
        match &st.error {
            // Stopped before anyone listened.
            Some((kind, msg)) => notice.stop(&self.error(*kind, msg)),
            None => st.notice = Some(notice),
        }
    }

    /// Waits for the writer to write everything queued, for at most
    /// [`FINISH_WAIT`]: a writer still stuck then (a reader that takes
    /// nothing) is left behind, and the lines it did not write are the
    /// error.
    fn finish(mut self: Box<Self>) -> SinkStats {
        let done = self.close_and_wait();
        let delivered = self.shared.delivered.load(Ordering::Relaxed);
        let ended = if done {
            match self.thread.take().map(JoinHandle::join) {
                Some(Ok(res)) => res,
                Some(Err(_)) => Err(io::Error::other("the writer thread panicked")),
                None => Err(io::Error::other("the writer thread is gone")),
            }
        } else {
            // Detached: it ends with the process.
            self.thread.take();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} lines not written: the reader took nothing for {} s at exit",
                    self.queued.saturating_sub(delivered),
                    self.finish_wait.as_secs_f64()
                ),
            ))
        };
        SinkStats {
            name: self.name.clone(),
            delivered,
            dropped: self.dropped,
            error: ended
                .err()
                .map(|source| SinkError::new(format!("writing to {}", self.name), source)),
        }
    }
}

impl Queued {
    /// Tells the writer to finish and waits for it, at most `finish_wait`;
    /// whether it ended.
    fn close_and_wait(&self) -> bool {
        let deadline = Instant::now() + self.finish_wait;
        let mut st = self.shared.lock();
        st.closed = true;
        self.shared.ready.notify_all();
        while !st.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .ready
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.done
    }
}

impl Drop for Queued {
    /// Without `finish`: the writer still writes what was queued (waited
    /// for as long as `finish` would).
    fn drop(&mut self) {
        if self.thread.is_some() && self.close_and_wait() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The writer thread: batches in order until closed and empty, or until a
/// write fails (then the queue is emptied and the error kept for the
/// producer).
fn write_all<W: Write>(mut w: W, shared: &Shared, what: &str) -> io::Result<()> {
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
                match st.watch {
                    Some(fd) => {
                        if reader_gone(fd) {
                            drop(st);
                            let e = io::Error::new(
                                io::ErrorKind::BrokenPipe,
                                "the reader closed its end",
                            );
                            return Err(stopped(shared, what, e));
                        }
                        st = shared
                            .ready
                            .wait_timeout(st, WATCH_INTERVAL)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    None => st = shared.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                }
            }
        };
        if let Err(e) = w.write_all(&batch.bytes).and_then(|()| w.flush()) {
            return Err(stopped(shared, what, e));
        }
        shared.delivered.fetch_add(batch.lines, Ordering::Relaxed);
    }
}

/// The writer stopped on `e`: kept for the producer, told to the notice.
fn stopped(shared: &Shared, what: &str, e: io::Error) -> io::Error {
    let mut st = shared.lock();
    st.error = Some((e.kind(), e.to_string()));
    st.queue.clear();
    st.bytes = 0;
    let notice = st.notice.take();
    drop(st);
    if let Some(n) = notice {
        n.stop(&SinkError::new(
            what,
            io::Error::new(e.kind(), e.to_string()),
        ));
    }
    e
}

/// Is the reader of `fd` gone? (`poll` says POLLERR for a pipe whose
/// read end is closed, POLLHUP for a socket closed by its peer.)
fn reader_gone(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
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
            let bytes = b.bytes.clone();
            // Which batches are kept depends on when the writer takes the
            // first one (then stuck in write, freeing a slot for a later
            // batch): what was accepted is what must come out, in order.
            let before = s.dropped();
            s.push(b).unwrap();
            if s.dropped() == before {
                want.extend_from_slice(&bytes);
            }
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

    /// A failed write is told at once, from the writer thread, to whoever
    /// listens (the live loop), even with nothing pushed afterwards.
    #[test]
    fn a_write_error_fires_the_stop_notice() {
        let notice = StopNotice::default();
        let mut s = Box::new(Queued::new("test", "test-writer", Broken, 1 << 20).unwrap());
        s.notify_stop(notice.clone());
        assert!(notice.error().is_none());
        s.push(batch(0, 10)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), notice.stopped()).await
            })
            .expect("the notice fired");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert!(e.to_string().starts_with("writing to test: "), "{e}");
        // A listener that comes late hears it too.
        let late = StopNotice::default();
        s.notify_stop(late.clone());
        assert_eq!(
            late.error().map(|e| e.kind()),
            Some(io::ErrorKind::BrokenPipe)
        );
    }

    /// A pipe whose reader exits ends the sink at once, with nothing
    /// written after (a quiet host: `tracer run | head -3`).
    #[test]
    fn a_closed_pipe_is_noticed_without_a_write() {
        use std::os::fd::AsRawFd;
        let (r, w) = nix::unistd::pipe().unwrap();
        let fd = w.as_raw_fd();
        let notice = StopNotice::default();
        let mut s = Box::new(
            Queued::new("pipe", "test-writer", std::fs::File::from(w), 1 << 20)
                .unwrap()
                .watch_reader(fd),
        );
        s.notify_stop(notice.clone());
        s.push(batch(0, 10)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(notice.error().is_none(), "the reader is still there");
        drop(r);
        let t0 = std::time::Instant::now();
        while notice.error().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(5), "not noticed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            notice.error().map(|e| e.kind()),
            Some(io::ErrorKind::BrokenPipe)
        );
        let stats = s.finish();
        assert_eq!(stats.delivered, 1);
    }

    /// A reader that takes nothing: finish gives up after its wait and
    /// says how many lines were not written.
    #[test]
    fn finish_does_not_wait_forever_for_a_stuck_writer() {
        let (_go, rx) = sync_channel::<()>(1);
        let gate = Gate {
            go: rx,
            open: false,
            got: Default::default(),
        };
        let s = Queued::new("test", "test-writer", gate, 1 << 20)
            .unwrap()
            .with_finish_wait(Duration::from_millis(300));
        let mut s = Box::new(s);
        for i in 0..10 {
            s.push(batch(i, 100)).unwrap();
        }
        let t0 = std::time::Instant::now();
        let stats = s.finish();
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        let e = stats.error.expect("not written");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("10 lines not written"), "{e}");
        assert_eq!(stats.delivered, 0);
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
