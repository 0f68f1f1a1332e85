//! The live side's CPU per kernel record when recording: ~300 ns of
//! make-believe pipeline work per record (so the writer thread keeps up, as
//! in a live run), alone, plus a copy into a local batch (the floor), and
//! plus [`ThreadedWriter::write_kernel`]. First quartile and median of 30
//! interleaved rounds, calling thread's CPU time.
//!
//! `cargo bench -p tracer-bench --bench capture_writer` (moved here from an
//! `#[ignore]` unit test of tracer/src/capture/thread.rs).

use tracer::{
    capture::{Header, ThreadedWriter, BATCH_BYTES},
    kernel::btf::DropReasons,
};

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) },
        0
    );
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// ~300 ns of make-believe pipeline work on a record.
fn work(v: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for _ in 0..24 {
        for b in v.iter().step_by(8) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

fn main() {
    let dir = std::env::temp_dir().join(format!("tracer-live-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = [0x5au8; 96];
    let n = 300_000u64;
    let reasons = DropReasons::from_pairs([(2, "NOT_SPECIFIED")]);
    let path = dir.join("c");
    let mut w = ThreadedWriter::create(&path, Header::default(), &reasons, None).unwrap();
    let mut local: Vec<u8> = Vec::with_capacity(BATCH_BYTES + 4096);
    let (mut sum, mut copy, mut threaded) = (0u64, Vec::new(), Vec::new());
    let per_record = |t0: u64| (thread_cpu_ns() - t0) as f64 / n as f64;
    for _ in 0..30 {
        let t0 = thread_cpu_ns();
        for _ in 0..n {
            let v = std::hint::black_box(rec.to_vec());
            sum = sum.wrapping_add(work(&v));
        }
        let base = per_record(t0);
        let t0 = thread_cpu_ns();
        for _ in 0..n {
            let v = std::hint::black_box(rec.to_vec());
            sum = sum.wrapping_add(work(&v));
            local.extend_from_slice(&(v.len() as u32).to_le_bytes());
            local.extend_from_slice(&v);
            if local.len() >= BATCH_BYTES {
                std::hint::black_box(&local);
                local.clear();
            }
        }
        copy.push(per_record(t0) - base);
        let t0 = thread_cpu_ns();
        for _ in 0..n {
            let v = std::hint::black_box(rec.to_vec());
            sum = sum.wrapping_add(work(&v));
            w.write_kernel(&v).unwrap();
        }
        threaded.push(per_record(t0) - base);
    }
    w.finish().unwrap();
    let quartiles = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("{:.1} / {:.1}", v[v.len() / 4], v[v.len() / 2])
    };
    eprintln!(
        "added CPU per record (first quartile / median, ns): copy into a local batch {}, \
         ThreadedWriter::write_kernel {} ({})",
        quartiles(&mut copy),
        quartiles(&mut threaded),
        sum % 10
    );
    let _ = std::fs::remove_dir_all(&dir);
}
