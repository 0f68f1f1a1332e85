//! Serialisation cost per line on the events of a synthetic capture:
//! tracer's own NDJSON writer ([`tracer::event::ndjson::write_line`]) against
//! `serde_json::to_writer`. "hot": each batch of 16 events serialised 8 times
//! in a row (replay serialises events it has just built, in cache); "cold":
//! every event once (memory latency included). `NDJSON_BENCH=ours|serde`
//! runs only that one, hot, for a profiler.
//!
//! `cargo bench -p tracer-bench --bench ndjson` (moved here from an
//! `#[ignore]` unit test of tracer/src/event/ndjson.rs).

use tracer::event::{ndjson::write_line, EcsEvent};

/// The events of a synthetic capture (every record kind, enrichment,
/// detectors), produced the way `replay` produces them.
fn synth_events(records: u64) -> Vec<EcsEvent> {
    tracer::synth::events(records, 100, 4, Some(Default::default())).unwrap()
}

fn reference(e: &EcsEvent) -> Vec<u8> {
    let mut v = serde_json::to_vec(e).unwrap();
    v.push(b'\n');
    v
}

fn main() {
    use std::time::Instant;
    let events = synth_events(200_000);
    let bytes = events.iter().map(|e| reference(e).len()).sum::<usize>();
    let n = events.len() as f64;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut run = |serde: bool, reps: usize| {
        let t = Instant::now();
        for chunk in events.chunks(16) {
            for _ in 0..reps {
                buf.clear();
                for e in chunk {
                    if serde {
                        serde_json::to_writer(&mut buf, e).unwrap();
                        buf.push(b'\n');
                    } else {
                        write_line(e, &mut buf).unwrap();
                    }
                }
                std::hint::black_box(&buf);
            }
        }
        t.elapsed().as_secs_f64() / (n * reps as f64) * 1e9
    };
    if let Ok(only) = std::env::var("NDJSON_BENCH") {
        let ns = (0..10)
            .map(|_| run(only == "serde", 8))
            .fold(f64::MAX, f64::min);
        println!("{only}: {ns:.1} ns/line");
        return;
    }
    println!(
        "{} lines, {:.0} bytes/line; best of 7, ns/line (MB/s)",
        events.len(),
        bytes as f64 / n
    );
    for (mode, reps) in [("hot", 8), ("cold", 1)] {
        let mut best = [f64::MAX; 2];
        for _ in 0..7 {
            for (i, b) in best.iter_mut().enumerate() {
                *b = b.min(run(i == 0, reps));
            }
        }
        let mbs = |ns: f64| bytes as f64 / n / ns * 1e3;
        println!(
            "{mode:>4}: serde_json {:6.1} ({:4.0}), ndjson {:6.1} ({:4.0}), speed-up {:.2}x",
            best[0],
            mbs(best[0]),
            best[1],
            mbs(best[1]),
            best[0] / best[1]
        );
    }
}
