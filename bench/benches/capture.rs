//! Throughput of recording and replaying, in process: the live path
//! (decode, enrich, serialise) without and with recording, alternated,
//! best of three; writing alone; reading alone (borrowed records, then
//! owned); replay end to end with detectors off and on. The records are a
//! synthetic capture's (every kind), reused (`CAPTURE_BENCH_EVENTS`,
//! default 10 million).
//!
//! `cargo bench -p tracer-bench --bench capture` (moved here from an
//! `#[ignore]` unit test of tracer/src/capture/tests.rs).

use std::time::Instant;

use tracer::{
    capture::{CaptureReader, CaptureWriter, Record, RecordRef},
    decode::{Locations, Tables},
    kernel::btf::DropReasons,
    pipeline::{Filter, Input, Pipeline},
};

fn main() {
    let n: u64 = std::env::var("CAPTURE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::temp_dir().join(format!("tracer-bench-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let synth = dir.join("synth.capture");
    let path = dir.join("c");
    let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")]);
    tracer::synth::write(&synth, 4096, 20, 2, &reasons).unwrap();

    // The synthetic capture's kernel records and symbols.
    let mut reader = CaptureReader::open(&synth).unwrap();
    let header = reader.header().clone();
    let mut symbols: Vec<(u64, String)> = Vec::new();
    let mut records: Vec<Input> = Vec::new();
    while let Some(rec) = reader.next_ref().unwrap() {
        match rec {
            RecordRef::Kernel(b) => records.push(Input::Kernel(b.to_vec())),
            RecordRef::Other(Record::Symbols(s)) => symbols.extend(s),
            RecordRef::Other(_) => {}
        }
    }
    assert!(!records.is_empty());
    let tables = || Tables {
        drop_reasons: reasons.clone(),
        locations: Locations::from_table(symbols.clone()),
        boot_to_wall_ns: header.boot_to_wall_ns,
        reason_cache: Default::default(),
    };
    let per_s = |n: u64, t: Instant| n as f64 / t.elapsed().as_secs_f64();
    let at = |i: u64| &records[(i % records.len() as u64) as usize];
    let mut batch = Vec::new();
    let mut line = Vec::with_capacity(1 << 16);

    // The live path without and with recording, alternated, best of three.
    let m = n.min(2_000_000);
    let (mut live, mut recorded) = (0f64, 0f64);
    for _ in 0..3 {
        for record in [false, true] {
            let _ = std::fs::remove_file(&path);
            let mut p = Pipeline::new(tables(), Filter::default(), None);
            let mut w = record
                .then(|| CaptureWriter::create(&path, header.clone(), &reasons, None).unwrap());
            let t = Instant::now();
            for i in 0..m {
                let input = at(i);
                batch.clear();
                p.process(input, &mut batch);
                line.clear();
                for e in &batch {
                    e.write_line(&mut line).unwrap();
                }
                if let Some(w) = w.as_mut() {
                    w.write_input(input).unwrap();
                }
            }
            if let Some(w) = w {
                w.finish().unwrap();
            }
            let r = per_s(m, t);
            if record {
                recorded = recorded.max(r);
            } else {
                live = live.max(r);
            }
        }
    }
    println!(
        "capture: live path {live:.0} ev/s, with recording {recorded:.0} ev/s: recording costs {:.1}%",
        (1.0 - recorded / live) * 100.0
    );

    // Writing alone, n records.
    let _ = std::fs::remove_file(&path);
    let mut w = CaptureWriter::create(&path, header.clone(), &reasons, None).unwrap();
    w.write_symbols(&symbols).unwrap();
    let t = Instant::now();
    for i in 0..n {
        w.write_input(at(i)).unwrap();
    }
    let stats = w.finish().unwrap();
    println!(
        "capture: write {n} records, {} MB, {:.0} rec/s",
        stats.bytes >> 20,
        per_s(n, t)
    );

    // Reading alone: borrowed, then owned.
    let mut r = CaptureReader::open(&path).unwrap();
    let t = Instant::now();
    let mut k = 0u64;
    while let Some(rec) = r.next_ref().unwrap() {
        if let RecordRef::Kernel(b) = rec {
            k += b.len() as u64 & 1;
        }
    }
    println!("capture: read (next_ref) {:.0} rec/s ({k})", per_s(n, t));
    let mut r = CaptureReader::open(&path).unwrap();
    let t = Instant::now();
    while r.next_record().unwrap().is_some() {}
    println!("capture: read (next_record) {:.0} rec/s", per_s(n, t));

    // Replay end to end: read, decode, enrich, serialise (every event a line).
    for detect in [false, true] {
        let mut r = CaptureReader::open(&path).unwrap();
        let mut p = Pipeline::new(
            Tables {
                drop_reasons: r.drop_reasons().clone(),
                locations: Locations::default(),
                boot_to_wall_ns: r.header().boot_to_wall_ns,
                reason_cache: Default::default(),
            },
            Filter::default(),
            detect.then(Default::default),
        );
        let mut lines = 0u64;
        let t = Instant::now();
        while let Some(rec) = r.next_ref().unwrap() {
            batch.clear();
            match rec {
                RecordRef::Kernel(bytes) => p.process_kernel(bytes, &mut batch),
                RecordRef::Other(Record::Input(input)) => p.process(&input, &mut batch),
                RecordRef::Other(Record::Symbols(s)) => p.add_symbols(s),
                RecordRef::Other(_) => {}
            }
            for e in &batch {
                e.write_line(&mut line).unwrap();
                lines += 1;
            }
            if line.len() > 1 << 16 {
                line.clear();
            }
        }
        println!(
            "capture: replay end to end (detectors {}) {:.0} ev/s, {lines} lines",
            if detect { "on" } else { "off" },
            per_s(n, t)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
