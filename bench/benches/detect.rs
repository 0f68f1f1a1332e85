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
    detect::{DetectConfig, Detectors},
    event::{EcsEvent, Kind},
};

/// The kernel events of a synthetic capture, enriched, undetected.
fn synth_events(records: u64) -> Vec<EcsEvent> {
    let mut events = tracer::synth::events(records, 100, 4, None).unwrap();
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
