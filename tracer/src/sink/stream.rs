//! [`Stream`]: NDJSON over a TCP or Unix stream socket (what Vector's
//! `socket` source, Fluent Bit's `tcp` input, rsyslog `imtcp` and Logstash's
//! `tcp` input read), from a thread of its own running a small tokio
//! runtime. Pushing never waits: batches go into a queue bounded in bytes;
//! what does not fit is dropped and counted. While the peer is away the
//! writer reconnects with exponential backoff (100 ms doubling to 5 s) and
//! the queue holds what arrives meanwhile (up to its bound), so a short
//! outage costs nothing and a long one costs counted lines.
//!
//! A batch whose write failed is counted as dropped (the peer may have
//! read part of it). Lines the kernel had accepted before the peer went
//! away without a word cannot be known, and are not counted.

use std::{
    io,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use futures_util::SinkExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite},
    sync::mpsc,
};
use tokio_util::codec::{BytesCodec, FramedWrite};

use super::{Batch, Sink, SinkError, SinkStats};

/// Where a [`Stream`] connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `HOST:PORT` (resolved at every connection attempt).
    Tcp(String),
    Unix(PathBuf),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "tcp://{a}"),
            Peer::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// First wait after a failed connection; doubled up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// At the end, how long the writer tries to deliver what is queued.
const FINISH_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Shared {
    /// Bytes queued (pushed, not yet taken by the writer).
    bytes: AtomicUsize,
    delivered: AtomicU64,
    /// Lines the writer lost (a failed write, or still queued at the end).
    lost: AtomicU64,
    connected: AtomicBool,
    /// Connections made (the first, then every reconnect).
    connections: AtomicU64,
    /// The last connection or write error, for `finish`.
    last_error: Mutex<Option<String>>,
}

pub struct Stream {
    name: String,
    tx: Option<mpsc::UnboundedSender<Batch>>,
    shared: Arc<Shared>,
    capacity: usize,
    /// Lines that did not fit in the queue.
    dropped: u64,
    thread: Option<JoinHandle<()>>,
}

impl Stream {
    /// Starts the writer thread for `peer`, with a queue of at most
    /// `capacity` bytes. Connecting happens on that thread (a peer that is
    /// not there yet is not an error: lines wait in the queue).
    pub fn new(peer: Peer, capacity: usize) -> io::Result<Self> {
        let name = peer.to_string();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sink-stream".into())
                .spawn(move || rt.block_on(write_loop(peer, rx, &shared)))?
        };
        Ok(Self {
            name,
            tx: Some(tx),
            shared,
            capacity,
            dropped: 0,
            thread: Some(thread),
        })
    }

    /// Whether the writer is connected now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Connections made so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Sink for Stream {
    fn name(&self) -> &str {
        &self.name
    }

    fn push(&mut self, batch: Batch) -> Result<(), SinkError> {
        let len = batch.bytes.len();
        let queued = self.shared.bytes.load(Ordering::Relaxed);
        let Some(tx) = self.tx.as_ref().filter(|_| queued + len <= self.capacity) else {
            self.dropped += batch.lines;
            return Ok(());
        };
        self.shared.bytes.fetch_add(len, Ordering::Relaxed);
        let lines = batch.lines;
        if tx.send(batch).is_err() {
            // The writer thread is gone (it only ends when told to).
            self.shared.bytes.fetch_sub(len, Ordering::Relaxed);
            self.dropped += lines;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn dropped(&self) -> u64 {
        self.dropped + self.shared.lost.load(Ordering::Relaxed)
    }

    /// Closes the queue and waits (at most a few seconds) for the writer
    /// to deliver what is queued.
    fn finish(mut self: Box<Self>) -> SinkStats {
        self.tx = None;
        let panicked = self
            .thread
            .take()
            .map(JoinHandle::join)
            .is_some_and(|r| r.is_err());
        let lost = self.shared.lost.load(Ordering::Relaxed);
        let error = if panicked {
            Some("the writer thread panicked".to_string())
        } else if lost > 0 {
            self.shared
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        } else {
            None
        };
        SinkStats {
            name: self.name.clone(),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            dropped: self.dropped + lost,
            error: error
                .map(|e| SinkError::new(format!("writing to {}", self.name), io::Error::other(e))),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

async fn connect(peer: &Peer) -> io::Result<Box<dyn Conn>> {
    Ok(match peer {
        Peer::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
        Peer::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
    })
}

impl Shared {
    fn took(&self, b: &Batch) {
        self.bytes.fetch_sub(b.bytes.len(), Ordering::Relaxed);
    }

    fn lose(&self, b: &Batch, why: String) {
        self.lost.fetch_add(b.lines, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

/// Connects (with backoff), writes batches in order, reconnects when the
/// peer goes away; ends when the queue is closed and empty (or, then,
/// when [`FINISH_GRACE`] has passed without a connection).
async fn write_loop(peer: Peer, mut rx: mpsc::UnboundedReceiver<Batch>, shared: &Shared) {
    let mut backoff = BACKOFF_MIN;
    // A batch taken from the queue, not yet written (waiting for a peer).
    let mut pending: Option<Batch> = None;
    let mut closed_at: Option<tokio::time::Instant> = None;
    let mut warned = false;
    loop {
        let conn = match connect(&peer).await {
            Ok(c) => c,
            Err(e) => {
                if !warned {
                    eprintln!("tracer: warning: {peer}: cannot connect ({e}); retrying with backoff, lines wait in its queue");
                    warned = true;
                }
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("cannot connect: {e}"));
                // The producer is done and nobody listens: give up after a grace.
                if rx.is_closed() || closed_at.is_some() {
                    let t = *closed_at.get_or_insert_with(tokio::time::Instant::now);
                    if t.elapsed() >= FINISH_GRACE {
                        break;
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        warned = false;
        shared.connected.store(true, Ordering::Relaxed);
        shared.connections.fetch_add(1, Ordering::Relaxed);
        if shared.connections.load(Ordering::Relaxed) > 1 {
            eprintln!("tracer: {peer}: reconnected");
        }
        let (mut rd, wr) = tokio::io::split(conn);
        let mut out = FramedWrite::new(wr, BytesCodec::new());
        let mut scratch = [0u8; 512];
        let ended = loop {
            let batch = match pending.take() {
                Some(b) => b,
                None => tokio::select! {
                    b = rx.recv() => match b {
                        Some(b) => { shared.took(&b); b }
                        None => break true,
                    },
                    // NDJSON readers send nothing: EOF or an error is the peer leaving.
                    r = rd.read(&mut scratch) => match r {
                        Ok(0) | Err(_) => break false,
                        Ok(_) => continue,
                    },
                },
            };
            match out.send(batch.bytes.clone()).await {
                Ok(()) => {
                    shared.delivered.fetch_add(batch.lines, Ordering::Relaxed);
                }
                Err(e) => {
                    shared.lose(&batch, format!("write failed: {e}"));
                    break false;
                }
            }
        };
        shared.connected.store(false, Ordering::Relaxed);
        if ended {
            let _ = SinkExt::<bytes::Bytes>::close(&mut out).await;
            return;
        }
        eprintln!("tracer: warning: {peer}: connection lost; reconnecting");
    }
    // Gave up at the end: what is still queued is lost, and counted.
    if let Some(b) = pending.take() {
        shared.lost.fetch_add(b.lines, Ordering::Relaxed);
    }
    rx.close();
    while let Ok(b) = rx.try_recv() {
        shared.took(&b);
        shared.lost.fetch_add(b.lines, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader},
        net::TcpListener,
        time::Instant,
    };

    use super::*;

    fn line(i: u32) -> Batch {
        Batch::line(format!("{{\"n\":{i}}}\n").as_bytes())
    }

    fn read_lines(l: &TcpListener, n: usize) -> Vec<String> {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        BufReader::new(s)
            .lines()
            .take(n)
            .map(|l| l.unwrap())
            .collect()
    }

    /// Lines pushed before the listener exists wait in the queue and arrive
    /// in order once it does; a listener that goes away and comes back is
    /// reconnected to; pushes never wait; what exceeds the queue meanwhile
    /// is counted.
    #[test]
    fn reconnects_and_counts_what_did_not_fit() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut s = Box::new(Stream::new(Peer::Tcp(addr.to_string()), 64).unwrap());
        for i in 0..3 {
            s.push(line(i)).unwrap();
        }
        assert_eq!(read_lines(&l, 3), ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
        // The listener goes away (its accepted socket was dropped above).
        drop(l);
        let t0 = Instant::now();
        while s.connected() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!s.connected(), "noticed the peer leaving");
        let t0 = Instant::now();
        for i in 3..1003 {
            s.push(line(i)).unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "pushes did not wait");
        let dropped = s.dropped();
        assert!(dropped >= 990, "{dropped} counted");
        // It comes back on the same port.
        let l = TcpListener::bind(addr).unwrap();
        let got = read_lines(&l, 1003 - 3 - dropped as usize);
        assert_eq!(got[0], "{\"n\":3}", "the queue was kept, in order");
        s.push(line(2000)).unwrap();
        let stats = s.finish();
        assert_eq!(stats.delivered + stats.dropped, 1004, "{stats:?}");
        assert_eq!(stats.dropped, dropped);
    }

    /// Nobody ever listens: finish gives up after the grace, and counts.
    #[test]
    fn unix_peer_absent_at_exit_is_counted() {
        let dir = std::env::temp_dir().join(format!("tracer-stream-{}", std::process::id()));
        let s = Box::new(Stream::new(Peer::Unix(dir.join("absent.sock")), 1 << 20).unwrap());
        let mut s = s;
        for i in 0..5 {
            s.push(line(i)).unwrap();
        }
        let t0 = Instant::now();
        let stats = s.finish();
        assert!(t0.elapsed() < Duration::from_secs(8));
        assert_eq!((stats.delivered, stats.dropped), (0, 5));
        let e = stats.error.expect("why");
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }
}
