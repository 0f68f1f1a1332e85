//! Throughput of the detectors and incident correlation alone, one core:
//! the kernel events of a synthetic capture (every record kind, decoded and
//! enriched the way `replay` does, detectors off), then 2 million of them
//! (reused in place, time moving 1 µs per event) through
//! [`Detectors::advance`] and [`Detectors::observe`].
//!
//! `cargo bench -p tracer-bench --bench detect` (moved here from an
//! `#[ignore]` unit test of tracer/src/detect/tests.rs).

use std::time::Instant;

use tracer::{
    capture::{CaptureReader, Record, RecordRef},
    decode::{Locations, Tables},
    detect::{DetectConfig, Detectors},
    event::{EcsEvent, Kind},
    kernel::btf::DropReasons,
    pipeline::{Filter, Pipeline},
};

/// The kernel events of a synthetic capture, enriched, undetected.
fn synth_events(records: u64) -> Vec<EcsEvent> {
    let dir = std::env::temp_dir().join(format!("tracer-bench-detect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("synth.capture");
    let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")]);
    tracer::synth::write(&path, records, 100, 4, &reasons).unwrap();
    let mut reader = CaptureReader::open(&path).unwrap();
    let mut p = Pipeline::new(
        Tables {
            drop_reasons: reader.drop_reasons().clone(),
            locations: Locations::default(),
            boot_to_wall_ns: reader.header().boot_to_wall_ns,
            reason_cache: Default::default(),
        },
        Filter::default(),
        None,
    );
    let mut events = Vec::new();
    while let Some(rec) = reader.next_ref().unwrap() {
        match rec {
            RecordRef::Kernel(b) => p.process_kernel(b, &mut events),
            RecordRef::Other(Record::Symbols(v)) => p.add_symbols(v),
            RecordRef::Other(Record::Input(i)) => p.process(&i, &mut events),
            RecordRef::Other(_) => {}
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    events.retain(|e| e.event.kind == Kind::Event);
    events
}

fn main() {
    const N: usize = 2_000_000;
    let mut events = synth_events(20_000);
    assert!(!events.is_empty());
    let t0 = events[0].timestamp;
    let mut d = Detectors::new(DetectConfig::default());
    let mut out = Vec::with_capacity(1 << 16);
    let (mut printed, mut lines) = (0u64, 0usize);
    let len = events.len();
    let start = Instant::now();
    for k in 0..N {
        let t = t0 + k as i128 * 1000;
        let e = &mut events[k % len];
        e.timestamp = t;
        d.advance(t, &mut out);
        printed += u64::from(d.observe(e, &mut out));
        lines += out.len();
        out.clear();
    }
    d.finish(t0 + N as i128 * 1000, &mut out);
    let el = start.elapsed();
    println!(
        "detect: {N} events ({len} distinct) in {el:?}: {:.0} events/s (detectors + correlation, one core); {printed} printed, {lines} lines of their own",
        N as f64 / el.as_secs_f64(),
    );
    println!("{:?}", d.stats());
}
