//! [`ThreadedWriter`]: a [`CaptureWriter`] on a thread of its own, so that
//! recording costs the ring-buffer consumer a memcpy per kernel record
//! instead of two CRC-32s, the framing and the write() system calls.
//!
//! The live side appends each kernel record, length-prefixed, to a batch
//! and hands the batch over a bounded channel when it reaches
//! [`BATCH_BYTES`] (and on every [`ThreadedWriter::flush`], i.e. every
//! tick). Other inputs, symbols and rotations are rare: they go over the
//! same channel as owned values, after the batch before them, so the
//! writer thread sees everything in the order the pipeline processed it.
//! The `capture-writer` thread frames, checksums and writes.
//!
//! Rotation stays where the synchronous writer puts it: the live side
//! counts each part's bytes exactly as [`CaptureWriter`] does (a kernel
//! record is [`FRAME_LEN`] + its payload; any other record is serialised
//! once more on the live side just to learn its length, which is cheap for
//! inputs this rare), so [`ThreadedWriter::rotation_due`] answers at once,
//! after the same input, and the caller's state snapshot is taken on the
//! live thread at that moment.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{sync_channel, Receiver, SyncSender},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use thiserror::Error;

use super::{CaptureError, CaptureStats, CaptureWriter, Header, FRAME_LEN, MAX_RECORD_LEN};
use crate::{kernel::btf::DropReasons, pipeline::Input};

/// A batch of kernel records is handed to the writer thread at this size.
pub const BATCH_BYTES: usize = 64 << 10;
/// Messages (batches, other inputs, flushes) in flight at most: with full
/// batches, ~4 MiB besides the writer's own 1 MiB buffer.
pub const CHANNEL_DEPTH: usize = 64;
/// [`ThreadedWriter::congested`] once this many messages are in flight:
/// the rest of the channel is headroom for the few non-kernel messages
/// (identity, ticks, loss reports, the end) that follow, so that those
/// sends never wait either.
const CONGESTED_AT: usize = CHANNEL_DEPTH - 16;
/// Name of the writer thread (`/proc/<pid>/task/<tid>/comm`).
pub const THREAD_NAME: &str = "capture-writer";
/// Emptied batches the writer thread hands back for reuse.
const SPARE_BATCHES: usize = 4;

/// What goes to the writer thread, in stream order.
enum Msg {
    /// Kernel records, each as its length (u32, little-endian) and bytes.
    Kernel(Vec<u8>),
    Symbols(Vec<(u64, String)>),
    /// Any input but a kernel record (boxed: a channel slot is as large as
    /// its largest message).
    Input(Box<Input>),
    /// Close the part and start the next with this state. `part_bytes` is
    /// what the live side counted for the closing part (checked in debug
    /// builds: the two counts must never differ).
    Rotate {
        state: Vec<Input>,
        part_bytes: u64,
    },
    /// Flush the writer's buffer to the file.
    Flush,
    /// The [`ThreadedWriter`] was dropped without `finish`: stop without
    /// the end marker, as a dropped [`CaptureWriter`] does.
    Abandon,
}

/// How the writer thread ended.
enum Ended {
    Finished(CaptureStats),
    Failed(CaptureError),
    FinishFailed(CaptureError),
    Abandoned,
}

/// Why [`ThreadedWriter::finish`] has no complete capture to show.
#[derive(Debug, Error)]
pub enum FinishError {
    /// A write failed before the end (disk full…): the capture stops at
    /// the last record written, without its end marker.
    #[error("{0}")]
    Stopped(CaptureError),
    /// Every record was written, but the end marker, the flush or the
    /// sync failed.
    #[error("{0}")]
    Finishing(CaptureError),
}

/// A capture written by a thread of its own; same files, records and
/// rotation points as [`CaptureWriter`] with manual rotation, fed the same
/// calls. Every method but `finish` only queues work, so an I/O error
/// surfaces on a later call (the next batch handed over, or the next
/// [`Self::flush`]); after an error, drop the writer: the capture ends
/// there.
///
/// Back-pressure: when the writer thread falls behind (a slow disk), the
/// live side must not drop records: a capture with holes would replay to
/// something else than the live run printed. It must not block either (the
/// live loop answers signals and ticks): it asks [`Self::congested`]
/// before each kernel record and, while the writer is behind, leaves the
/// records in the kernel's ring buffer, which absorbs bursts (and counts
/// what it cannot hold, which the capture then records as loss). A disk
/// that takes nothing for long is given up with [`Self::abandon`].
pub struct ThreadedWriter {
    path: PathBuf,
    tx: Option<SyncSender<Msg>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Ended>>,
    batch: Vec<u8>,
    rotate_bytes: Option<u64>,
    /// [`CaptureWriter::part_bytes`] as it will be once everything sent
    /// so far is written.
    part_bytes: u64,
    /// Records in this part after its preamble.
    part_records: u64,
    /// Messages sent and not yet taken by the writer thread.
    in_flight: Arc<AtomicUsize>,
    /// Set by [`Self::abandon`]: the thread stops without the end marker.
    abandoned: Arc<AtomicBool>,
}

impl ThreadedWriter {
    /// [`CaptureWriter::create`] (here, so that an error is the caller's at
    /// once), then the writer thread. Rotation is manual: call
    /// [`Self::rotate`] when [`Self::rotation_due`].
    pub fn create(
        path: &Path,
        header: Header,
        drop_reasons: &DropReasons,
        rotate_bytes: Option<u64>,
    ) -> Result<Self, CaptureError> {
        let w = CaptureWriter::create(path, header, drop_reasons, rotate_bytes)?;
        Self::start(path, w, rotate_bytes)
    }

    /// The writer thread over `w` (created by the caller).
    fn start(
        path: &Path,
        mut w: CaptureWriter,
        rotate_bytes: Option<u64>,
    ) -> Result<Self, CaptureError> {
        w.set_manual_rotation();
        let part_bytes = w.part_bytes();
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let (spare_tx, spare) = sync_channel(SPARE_BATCHES);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let abandoned = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn({
                let (in_flight, abandoned) = (Arc::clone(&in_flight), Arc::clone(&abandoned));
                move || {
                    no_wakeup_preemption();
                    write_all(w, rx, spare_tx, &in_flight, &abandoned)
                }
            })
            .map_err(|e| CaptureError::io("start the writer thread for", path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tx: Some(tx),
            spare,
            thread: Some(thread),
            batch: new_batch(),
            rotate_bytes,
            part_bytes,
            part_records: 0,
            in_flight,
            abandoned,
        })
    }

    /// The writer thread is behind: the caller should hold further kernel
    /// records back (they wait in the ring buffer) rather than hand them
    /// over, which could wait for the disk.
    #[inline]
    pub fn congested(&self) -> bool {
        // A thread that ended (on an error) takes nothing more: the next
        // hand-over says why.
        self.in_flight.load(Ordering::Relaxed) >= CONGESTED_AT
            && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Gives the capture up without waiting for the writer thread (a disk
    /// that takes nothing): the thread stops after the write it is in,
    /// without the end marker, so the capture reads back as cut short at
    /// its last complete record.
    pub fn abandon(mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
        self.tx = None;
        // Detached: it ends with its write, or with the process.
        self.thread.take();
    }

    /// [`Self::finish_sink`], waiting at most `wait` for the writer thread;
    /// after that the capture is left as [`Self::abandon`] leaves it.
    pub fn finish_sink_within(self, wait: Duration) -> crate::sink::SinkStats {
        let name = format!("capture {}", self.path.display());
        let abandoned = Arc::clone(&self.abandoned);
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("capture-finish".into())
            .spawn(move || {
                let _ = tx.send(self.finish_sink());
            });
        let error = match spawned {
            Ok(_) => match rx.recv_timeout(wait) {
                Ok(stats) => return stats,
                Err(_) => format!(
                    "the disk took no writes for {} s at exit: the capture ends at its last complete record (replay warns where)",
                    wait.as_secs_f64()
                ),
            },
            Err(e) => format!("cannot start a thread to finish it: {e}"),
        };
        abandoned.store(true, Ordering::Relaxed);
        crate::sink::SinkStats {
            name,
            delivered: 0,
            dropped: 0,
            error: Some(crate::sink::SinkError::new(
                "finishing the capture",
                io::Error::new(io::ErrorKind::TimedOut, error),
            )),
        }
    }

    /// One ring-buffer record: appended to the batch (no checksum, no
    /// system call), which goes to the writer when full.
    #[inline]
    pub fn write_kernel(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        if bytes.len() > MAX_RECORD_LEN as usize {
            return Err(too_large(bytes.len()));
        }
        self.batch
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.batch.extend_from_slice(bytes);
        self.counted(FRAME_LEN + bytes.len());
        if self.batch.len() >= BATCH_BYTES {
            return self.hand_off();
        }
        Ok(())
    }

    /// [`CaptureWriter::write_symbols`]. Called before every input, nearly
    /// always with nothing new: that check stays inline.
    #[inline]
    pub fn write_symbols(&mut self, syms: Vec<(u64, String)>) -> Result<(), CaptureError> {
        if syms.is_empty() {
            return Ok(());
        }
        self.send_symbols(syms)
    }

    #[inline(never)]
    fn send_symbols(&mut self, syms: Vec<(u64, String)>) -> Result<(), CaptureError> {
        self.counted(FRAME_LEN + json_len(&syms)?);
        self.send_after_batch(Msg::Symbols(syms))
    }

    /// [`CaptureWriter::write_input`].
    pub fn write_input(&mut self, input: Input) -> Result<(), CaptureError> {
        if let Input::Kernel(bytes) = &input {
            return self.write_kernel(bytes);
        }
        self.counted(FRAME_LEN + json_len(&input)?);
        self.send_after_batch(Msg::Input(Box::new(input)))
    }

    /// [`CaptureWriter::rotation_due`], for everything written so far.
    #[inline]
    pub fn rotation_due(&self) -> bool {
        self.rotate_bytes
            .is_some_and(|limit| self.part_bytes >= limit && self.part_records > 0)
    }

    /// [`CaptureWriter::rotate`].
    pub fn rotate(&mut self, state: Vec<Input>) -> Result<(), CaptureError> {
        let part_bytes = self.part_bytes;
        // As the writer counts: from after the restated state.
        self.part_bytes = 0;
        self.part_records = 0;
        self.send_after_batch(Msg::Rotate { state, part_bytes })
    }

    /// Hands the batch to the writer thread, which writes it and flushes
    /// its buffer to the file ([`CaptureWriter::flush`]).
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.send_after_batch(Msg::Flush)
    }

    /// Hands over what is left and waits for the writer thread, which
    /// writes the end marker, flushes and syncs ([`CaptureWriter::finish`]).
    pub fn finish(mut self) -> Result<CaptureStats, FinishError> {
        // A failed send means the thread has stopped: its error is below.
        let _ = self.hand_off();
        self.tx = None;
        match self.join() {
            Ended::Finished(stats) => Ok(stats),
            Ended::Failed(e) => Err(FinishError::Stopped(e)),
            Ended::FinishFailed(e) => Err(FinishError::Finishing(e)),
            Ended::Abandoned => Err(FinishError::Stopped(self.gone())),
        }
    }

    /// [`Self::finish`], reported as every sink reports its end: records
    /// written, and why the capture stopped early if it did.
    pub fn finish_sink(self) -> crate::sink::SinkStats {
        let name = format!("capture {}", self.path.display());
        let (delivered, error) = match self.finish() {
            Ok(stats) => {
                log::debug!("capture: {stats:?}");
                (stats.inputs, None)
            }
            // A write failed since the last hand-over (disk full...).
            Err(FinishError::Stopped(e)) => (0, Some(("recording stopped", e))),
            Err(FinishError::Finishing(e)) => (0, Some(("finishing the capture", e))),
        };
        crate::sink::SinkStats {
            name,
            delivered,
            dropped: 0,
            error: error.map(|(what, e)| crate::sink::SinkError::new(what, io::Error::other(e))),
        }
    }

    #[inline]
    fn counted(&mut self, bytes: usize) {
        self.part_bytes += bytes as u64;
        self.part_records += 1;
    }

    /// The batch first, then `msg`: the writer sees the stream in order.
    fn send_after_batch(&mut self, msg: Msg) -> Result<(), CaptureError> {
        self.hand_off()?;
        self.send(msg)
    }

    #[inline(never)]
    fn hand_off(&mut self) -> Result<(), CaptureError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let next = self.spare.try_recv().unwrap_or_else(|_| new_batch());
        let full = std::mem::replace(&mut self.batch, next);
        self.send(Msg::Kernel(full))
    }

    /// Blocks while the channel is full (see the type's documentation).
    /// Fails once the writer thread has stopped, with its error.
    fn send(&mut self, msg: Msg) -> Result<(), CaptureError> {
        let Some(tx) = &self.tx else {
            return Err(self.gone());
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if tx.send(msg).is_ok() {
            return Ok(());
        }
        // The receiver is gone: the thread returned (only an error does
        // that while we hold the sender).
        self.tx = None;
        Err(match self.join() {
            Ended::Failed(e) | Ended::FinishFailed(e) => e,
            Ended::Finished(_) | Ended::Abandoned => self.gone(),
        })
    }

    fn join(&mut self) -> Ended {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(ended)) => ended,
            Some(Err(_)) => Ended::Failed(CaptureError::io(
                "write",
                &self.path,
                io::Error::other("the capture writer thread panicked"),
            )),
            None => Ended::Failed(self.gone()),
        }
    }

    fn gone(&self) -> CaptureError {
        CaptureError::io(
            "write",
            &self.path,
            io::Error::other("the capture writer thread has stopped"),
        )
    }
}

impl Drop for ThreadedWriter {
    /// Without `finish`: what was handed in is written and flushed, but no
    /// end marker, so the capture reads back as cut short (as a dropped
    /// [`CaptureWriter`]'s does).
    fn drop(&mut self) {
        if self.tx.is_some() {
            if self.hand_off().is_ok() {
                let _ = self.send(Msg::Abandon);
            }
            self.tx = None;
            self.join();
        }
    }
}

/// Puts the calling thread (the writer) in `SCHED_BATCH`: same share of
/// the CPU as before, but its wake-ups no longer preempt the running task.
/// Without it, each batch handed over woke the writer onto the ring
/// consumer's own CPU, preempting it (one involuntary context switch of the
/// live path per batch, and caches refilled after the writer's burst of
/// checksums and copies); now the writer waits for an idle CPU or the next
/// tick. The 64-deep channel gives it the slack (~4 MiB). Best effort: no
/// privilege is needed to lower a thread's policy, but a failure is only
/// logged.
fn no_wakeup_preemption() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        log::debug!(
            "capture writer: SCHED_BATCH: {}",
            io::Error::last_os_error()
        );
    }
}

#[cold]
fn too_large(len: usize) -> CaptureError {
    CaptureError::TooLarge { len }
}

fn new_batch() -> Vec<u8> {
    // Room for a few records past the threshold without reallocating.
    Vec::with_capacity(BATCH_BYTES + (4 << 10))
}

/// Bytes of `v` as JSON, as the writer will serialise it.
fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> Result<usize, CaptureError> {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    serde_json::to_writer(&mut c, v)?;
    Ok(c.0)
}

/// The writer thread: everything in the order received, until the live
/// side finishes (end marker, flush, sync) or a write fails.
fn write_all(
    mut w: CaptureWriter,
    rx: Receiver<Msg>,
    spare: SyncSender<Vec<u8>>,
    in_flight: &AtomicUsize,
    abandoned: &AtomicBool,
) -> Ended {
    for msg in rx {
        in_flight.fetch_sub(1, Ordering::Relaxed);
        if abandoned.load(Ordering::Relaxed) {
            // Dropping `w` flushes its buffer: whole records.
            return Ended::Abandoned;
        }
        let res = match msg {
            Msg::Kernel(mut batch) => {
                let res = write_batch(&mut w, &batch);
                batch.clear();
                // The live side may have enough spares already.
                let _ = spare.try_send(batch);
                res
            }
            Msg::Symbols(syms) => w.write_symbols(&syms),
            Msg::Input(input) => w.write_input(&input),
            Msg::Rotate { state, part_bytes } => {
                debug_assert_eq!(w.part_bytes(), part_bytes, "live and writer part sizes");
                debug_assert!(w.rotation_due(), "rotation not due at {part_bytes} bytes");
                w.rotate(&state)
            }
            Msg::Flush => w.flush(),
            // Dropping `w` flushes its buffer.
            Msg::Abandon => return Ended::Abandoned,
        };
        if let Err(e) = res {
            return Ended::Failed(e);
        }
    }
    if abandoned.load(Ordering::Relaxed) {
        return Ended::Abandoned;
    }
    match w.finish() {
        Ok(stats) => Ended::Finished(stats),
        Err(e) => Ended::FinishFailed(e),
    }
}

fn write_batch(w: &mut CaptureWriter, mut batch: &[u8]) -> Result<(), CaptureError> {
    while let Some((len, rest)) = batch.split_first_chunk::<4>() {
        let (record, rest) = rest.split_at(u32::from_le_bytes(*len) as usize);
        w.write_kernel(record)?;
        batch = rest;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path, time::Duration};

    use tracer_ebpf::{kind, DropEvent, EventHeader};

    use super::*;
    use crate::{
        capture::{part_path, CaptureReader, Record, FORMAT_VERSION},
        decode::{Locations, Tables},
        fdb::SeedEntry,
        identity::{ContainerInfo, IdentityUpdate, NetnsInfo},
        kernel::kallsyms,
        pipeline::{Filter, Pipeline},
        testutil::TempDir,
    };

    const BOOT_TO_WALL: i128 = 1_700_000_000_000_000_000;
    const UDP_RCV: u64 = 0xffff_ffff_8100_0000;
    const NS: u32 = 4026532001;

    fn header() -> Header {
        Header {
            format_version: FORMAT_VERSION,
            tracer_version: "0.1.0".into(),
            hostname: "node-7".into(),
            kernel_release: "6.12.0-test".into(),
            boot_to_wall_ns: BOOT_TO_WALL,
            started_unix_ns: 1_700_000_123_000_000_000,
            args: vec!["tracer".into(), "run".into(), "--record".into(), "x".into()],
            part: 0,
            host_name: None,
        }
    }

    fn reasons() -> DropReasons {
        DropReasons::from_pairs([(2, "NOT_SPECIFIED"), (3, "NO_SOCKET")])
    }

    fn drop_record(ts_ns: u64, netns: u32, location: u64, reason: u32) -> Vec<u8> {
        let mut hdr = EventHeader {
            ts_ns,
            kind: kind::SKB_DROP,
            netns,
            ifindex: 2,
            cpu: 1,
            ..Default::default()
        };
        hdr.ifname[..4].copy_from_slice(b"eth0");
        let ev = DropEvent {
            hdr,
            location,
            saddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            reason,
            sport: 4242,
            dport: 9,
            eth_proto: 0x0800,
            l4proto: 17,
            ip_version: 4,
            ..Default::default()
        };
        tracer_ebpf::pod_bytes(&ev).to_vec()
    }

    fn container(n: u32) -> Input {
        Input::Identity(IdentityUpdate::ContainerUpsert {
            ts: BOOT_TO_WALL + 1_000 * i128::from(n),
            container: ContainerInfo {
                id: format!("{:064x}", 0x5eed_0000 + n),
                name: Some(format!("web{n}")),
                image: Some("registry.example/web:1".into()),
                runtime: Some("docker".into()),
                netns: Some(NS + n),
                ..Default::default()
            },
        })
    }

    /// Identity, FDB seed and probe status, then drops (new locations, so
    /// new symbols, every 250 records) with ticks, a loss report and
    /// identity changes in between, and the end.
    fn mixed_inputs(kernel: u64) -> Vec<Input> {
        let mut inputs = vec![
            Input::Identity(IdentityUpdate::NetnsUpsert {
                ts: BOOT_TO_WALL,
                netns: NetnsInfo {
                    inode: NS,
                    docker_names: vec!["0123456789ab".into()],
                    ..Default::default()
                },
            }),
            container(0),
            Input::FdbSeed(vec![SeedEntry {
                netns: NS,
                bridge: 3,
                port: 5,
                port_name: "veth1".into(),
                mac: [2, 0, 0, 0, 0, 9],
                vlan: 0,
            }]),
            Input::ProbeStatus {
                boot_ns: 10,
                name: "kfree_skb".into(),
                tracepoint: "skb/kfree_skb".into(),
                status: "attached".into(),
                error: None,
            },
        ];
        for i in 0..kernel {
            let ts = 1_000_000 + i * 10_000;
            let ns = NS + (i % 3) as u32;
            let location = UDP_RCV + 0x10 + i / 250;
            inputs.push(Input::Kernel(drop_record(
                ts,
                ns,
                location,
                2 + (i % 2) as u32,
            )));
            if i % 700 == 699 {
                inputs.push(Input::Tick { boot_ns: ts + 1 });
            }
            if i == kernel / 3 {
                inputs.push(container(1));
            }
            if i == kernel / 2 {
                inputs.push(Input::Loss {
                    boot_ns: ts + 2,
                    lost: vec![(1, 17)],
                    filtered: vec![(2, 5)],
                    lost_total: 17,
                    sinks: Vec::new(),
                    held_back: Vec::new(),
                    drops_held_back: Vec::new(),
                });
                inputs.push(container(2));
            }
        }
        inputs.push(Input::Finish {
            boot_ns: 1_000_000 + kernel * 10_000 + 5,
        });
        inputs
    }

    fn live_pipeline() -> Pipeline {
        let kallsyms = format!("{UDP_RCV:016x} T __udp4_lib_rcv\nffffffff81002000 T other\n");
        Pipeline::new(
            Tables {
                drop_reasons: reasons(),
                locations: Locations::live(kallsyms::Symbols::parse(&kallsyms).unwrap()),
                boot_to_wall_ns: BOOT_TO_WALL,
                reason_cache: Default::default(),
            },
            Filter::default(),
            None,
        )
    }

    /// Records `inputs` as `Live::record` does: process, the symbols it
    /// resolved, the input, then a rotation with the pipeline's state when
    /// due; with the synchronous writer or the threaded one. Returns what
    /// the pipeline printed and the stats.
    fn record(
        path: &Path,
        inputs: &[Input],
        rotate: Option<u64>,
        threaded: bool,
    ) -> (Vec<u8>, CaptureStats) {
        let mut live = live_pipeline();
        let mut out = Vec::new();
        let mut batch = Vec::new();
        let mut process = |live: &mut Pipeline, input: &Input| {
            batch.clear();
            live.process(input, &mut batch);
            for e in &batch {
                e.write_line(&mut out).unwrap();
            }
        };
        let stats = if threaded {
            let mut w = ThreadedWriter::create(path, header(), &reasons(), rotate).unwrap();
            for input in inputs {
                process(&mut live, input);
                w.write_symbols(live.take_new_symbols()).unwrap();
                w.write_input(input.clone()).unwrap();
                if w.rotation_due() {
                    w.rotate(live.state_snapshot()).unwrap();
                }
            }
            w.finish().unwrap()
        } else {
            let mut w = CaptureWriter::create(path, header(), &reasons(), rotate).unwrap();
            w.set_manual_rotation();
            for input in inputs {
                process(&mut live, input);
                w.write_symbols(&live.take_new_symbols()).unwrap();
                w.write_input(input).unwrap();
                if w.rotation_due() {
                    w.rotate(&live.state_snapshot()).unwrap();
                }
            }
            w.finish().unwrap()
        };
        (out, stats)
    }

    fn file_names(stats: &CaptureStats) -> Vec<String> {
        stats
            .parts
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn replay_to_string(path: &Path) -> String {
        let mut out = Vec::new();
        crate::replay::replay(
            &crate::replay::ReplayOptions {
                path: path.to_path_buf(),
                speed: 0.0,
                filter: Filter::default(),
                detect: None,
                text: None,
                pcapng: None,
            },
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The threaded writer writes the synchronous one's bytes, part by part,
    /// rotating after the same inputs with the same state; and the capture
    /// replays to what the live pipeline printed.
    #[test]
    fn same_parts_and_bytes_as_the_synchronous_writer() {
        let dir = TempDir::new("same");
        let inputs = mixed_inputs(2500);
        // No rotation (batches fill up between ticks); small parts (a
        // rotation every ~45 records, some right after an identity update
        // or a tick); parts larger than a batch.
        for (i, rotate) in [None, Some(5_000), Some(150_000)].into_iter().enumerate() {
            let sync = dir.file(&format!("sync-{i}"));
            let threaded = dir.file(&format!("threaded-{i}"));
            let (sync_out, sync_stats) = record(&sync, &inputs, rotate, false);
            let (thr_out, thr_stats) = record(&threaded, &inputs, rotate, true);
            assert_eq!(thr_out, sync_out);
            assert_eq!(
                file_names(&thr_stats),
                file_names(&sync_stats)
                    .iter()
                    .map(|n| n.replacen("sync", "threaded", 1))
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                (thr_stats.inputs, thr_stats.kernel_records, thr_stats.bytes),
                (
                    sync_stats.inputs,
                    sync_stats.kernel_records,
                    sync_stats.bytes
                )
            );
            let parts = sync_stats.parts.len();
            match rotate {
                None => assert_eq!(parts, 1),
                Some(5_000) => assert!(parts > 40, "{parts} parts"),
                Some(_) => assert!((2..=4).contains(&parts), "{parts} parts"),
            }
            for (a, b) in sync_stats.parts.iter().zip(&thr_stats.parts) {
                let (a, b) = (fs::read(a).unwrap(), fs::read(b).unwrap());
                assert!(a == b, "{} differs", b.len());
            }
            // Symbols and identity made it in; the capture replays to the live output.
            let live = String::from_utf8(thr_out).unwrap();
            assert!(live.contains("__udp4_lib_rcv+0x19"), "a late symbol");
            assert!(live.contains("\"name\":\"web2\""), "a late container");
            assert_eq!(replay_to_string(&threaded), live);
        }
    }

    #[test]
    fn write_kernel_writes_what_write_input_writes() {
        let dir = TempDir::new("write-kernel");
        let (a, b) = (dir.file("input"), dir.file("kernel"));
        // Automatic rotation: write_kernel rotates as write_input does.
        let mut wa = CaptureWriter::create(&a, header(), &reasons(), Some(1_000)).unwrap();
        let mut wb = CaptureWriter::create(&b, header(), &reasons(), Some(1_000)).unwrap();
        wa.set_rotation_state(vec![container(0)]);
        wb.set_rotation_state(vec![container(0)]);
        for i in 0..100u64 {
            let rec = drop_record(i, NS, UDP_RCV + i % 7, 2);
            if i % 7 == 0 {
                let syms = vec![(UDP_RCV + i, format!("__udp4_lib_rcv+{i:#x}"))];
                wa.write_symbols(&syms).unwrap();
                wb.write_symbols(&syms).unwrap();
            }
            wa.write_input(&Input::Kernel(rec.clone())).unwrap();
            wb.write_kernel(&rec).unwrap();
            assert_eq!(wa.part_bytes(), wb.part_bytes());
        }
        let (sa, sb) = (wa.finish().unwrap(), wb.finish().unwrap());
        assert!(sa.parts.len() > 5);
        assert_eq!(sa.parts.len(), sb.parts.len());
        assert_eq!(
            (sa.inputs, sa.kernel_records, sa.bytes),
            (sb.inputs, sb.kernel_records, sb.bytes)
        );
        for (pa, pb) in sa.parts.iter().zip(&sb.parts) {
            assert_eq!(fs::read(pa).unwrap(), fs::read(pb).unwrap());
        }
    }

    /// A part that cannot be created (a directory took its name) stops the
    /// writer thread; a later call on the live side reports its error.
    #[test]
    fn a_write_error_is_reported_by_a_later_call() {
        let dir = TempDir::new("error");
        let path = dir.file("c");
        let mut w = ThreadedWriter::create(&path, header(), &reasons(), Some(1_000)).unwrap();
        // Taken after the start: the rotation into it fails.
        fs::create_dir(part_path(&path, 1)).unwrap();
        let mut err = None;
        for i in 0..5_000u64 {
            let res = w
                .write_kernel(&drop_record(i, NS, UDP_RCV, 2))
                .and_then(|()| match w.rotation_due() {
                    true => w.rotate(vec![container(0)]),
                    false => Ok(()),
                })
                .and_then(|()| w.flush());
            if let Err(e) = res {
                err = Some(e);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let err = err.expect("the error reached the live side").to_string();
        assert!(
            err.contains("already exists") && err.contains("c.1"),
            "{err}"
        );
        // Stopped for good: later calls fail at once, finish says so.
        assert!(w.write_kernel(&drop_record(0, NS, UDP_RCV, 2)).is_ok());
        assert!(w.flush().is_err());
        assert!(matches!(w.finish(), Err(FinishError::Stopped(_))));
        // The first part holds every record up to the rotation.
        let mut r = CaptureReader::open(&path).unwrap();
        let mut kernel = 0;
        while let Some(rec) = r.next_record().unwrap_or(None) {
            kernel += matches!(rec, Record::Input(Input::Kernel(_))) as usize;
        }
        // Part 0's header and tables count towards its 1000 bytes too.
        assert_eq!(kernel, 6);
    }

    /// The same error, when it happens after the last hand-over: `finish`
    /// reports it as the recording having stopped.
    #[test]
    fn finish_reports_an_error_of_the_last_batch() {
        let dir = TempDir::new("error-finish");
        let path = dir.file("c");
        let mut w = ThreadedWriter::create(&path, header(), &reasons(), Some(1_000)).unwrap();
        // Taken after the start: the rotation into it fails.
        fs::create_dir(part_path(&path, 1)).unwrap();
        for i in 0..20u64 {
            w.write_kernel(&drop_record(i, NS, UDP_RCV, 2)).unwrap();
            if w.rotation_due() {
                w.rotate(Vec::new()).unwrap();
            }
        }
        match w.finish() {
            Err(FinishError::Stopped(e)) => assert!(e.to_string().contains("c.1"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    /// A full disk: the writer writes to `/dev/full` (every write is
    /// ENOSPC), opened as part 0 (a capture file is never an existing
    /// file, so `create` cannot be pointed at it).
    #[test]
    fn disk_full_stops_the_recording() {
        let dir = TempDir::new("full");
        let path = dir.file("c");
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let cw = CaptureWriter::on(
            &path,
            io::BufWriter::with_capacity(crate::capture::BUFFER_BYTES, full),
            header(),
            &reasons(),
            None,
        )
        .unwrap();
        let mut w = ThreadedWriter::start(&path, cw, None).unwrap();
        let mut err = None;
        for i in 0..5_000u64 {
            let res = w
                .write_kernel(&drop_record(i, NS, UDP_RCV, 2))
                .and_then(|()| w.flush());
            if let Err(e) = res {
                err = Some(e);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        match err.expect("ENOSPC reached the live side") {
            CaptureError::Io { source, .. } => {
                assert_eq!(
                    source.raw_os_error(),
                    Some(nix::errno::Errno::ENOSPC as i32)
                )
            }
            e => panic!("{e}"),
        }
        drop(w);
    }

    /// A writer that takes nothing (a pipe nobody reads stands for a hung
    /// disk): `congested` says so before any call would wait, so a caller
    /// that asks never blocks; `abandon` and `finish_sink_within` return
    /// at once / after their bound.
    #[test]
    fn a_stuck_disk_is_congestion_not_a_wait() {
        use std::os::fd::AsRawFd as _;
        let dir = TempDir::new("stuck");
        let path = dir.file("c");
        for finish in [false, true] {
            let (r, w) = nix::unistd::pipe().unwrap();
            assert!(w.as_raw_fd() > 2);
            let cw = CaptureWriter::on(
                &path,
                io::BufWriter::with_capacity(crate::capture::BUFFER_BYTES, fs::File::from(w)),
                header(),
                &reasons(),
                None,
            )
            .unwrap();
            let mut w = ThreadedWriter::start(&path, cw, None).unwrap();
            let t0 = std::time::Instant::now();
            let mut written = 0u64;
            while !w.congested() {
                w.write_kernel(&drop_record(written, NS, UDP_RCV, 2))
                    .unwrap();
                written += 1;
                assert!(written < 10_000_000, "never congested");
            }
            // Far more than the pipe holds went in, and nothing waited long.
            assert!(written > 10_000, "{written}");
            assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
            // The headroom takes the few other inputs without waiting.
            w.write_input(Input::Tick { boot_ns: 1 }).unwrap();
            w.flush().unwrap();
            let t0 = std::time::Instant::now();
            if finish {
                let stats = w.finish_sink_within(Duration::from_millis(300));
                let e = stats.error.expect("not finished");
                assert_eq!(e.kind(), io::ErrorKind::TimedOut);
                assert!(e.to_string().contains("the disk took no writes"), "{e}");
            } else {
                w.abandon();
            }
            assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
            // The stuck thread ends once its writes fail.
            drop(r);
        }
    }

    /// Dropped without `finish`: what was handed in is on disk, without an
    /// end marker, byte for byte what a dropped synchronous writer leaves.
    #[test]
    fn dropped_without_finish_reads_as_cut_short() {
        let dir = TempDir::new("dropped");
        let (a, b) = (dir.file("sync"), dir.file("threaded"));
        let mut wa = CaptureWriter::create(&a, header(), &reasons(), None).unwrap();
        let mut wb = ThreadedWriter::create(&b, header(), &reasons(), None).unwrap();
        for i in 0..1_000u64 {
            let rec = drop_record(i, NS, UDP_RCV, 2);
            wa.write_kernel(&rec).unwrap();
            wb.write_kernel(&rec).unwrap();
        }
        wa.write_input(&Input::Tick { boot_ns: 5 }).unwrap();
        wb.write_input(Input::Tick { boot_ns: 5 }).unwrap();
        drop(wa);
        drop(wb);
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        let mut r = CaptureReader::open(&b).unwrap();
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            n += matches!(rec, Record::Input(_)) as usize;
        }
        assert_eq!(n, 1_001);
        assert!(r.truncated().is_some());
    }

    #[test]
    fn the_writer_thread_is_named() {
        let dir = TempDir::new("name");
        let w = ThreadedWriter::create(&dir.file("c"), header(), &reasons(), None).unwrap();
        // The thread names itself once it runs.
        let named = || {
            fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .filter_map(|t| fs::read_to_string(t.path().join("comm")).ok())
                .any(|comm| comm.trim_end() == THREAD_NAME)
        };
        let mut tries = 0;
        while !named() {
            tries += 1;
            assert!(tries < 500, "no thread named {THREAD_NAME}");
            std::thread::sleep(Duration::from_millis(10));
        }
        w.finish().unwrap();
    }
}
