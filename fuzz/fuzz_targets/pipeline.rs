//! Arbitrary bytes as a capture through the whole replay pipeline: capture
//! reader → identity index → decode and enrichment → detectors and
//! incidents → NDJSON serialiser. It must print lines or return an error,
//! never panic, hang or allocate without bound, and every line it prints
//! must be one valid JSON object, whatever names, symbols and identity the
//! capture carries.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tracer::{
    capture::CaptureReader,
    detect::DetectConfig,
    replay::{replay_reader, ReplayOptions},
};

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = CaptureReader::from_reader(Cursor::new(data.to_vec()), "fuzz") else {
        return;
    };
    let opts = ReplayOptions {
        path: "fuzz".into(),
        speed: 0.0,
        filter: Default::default(),
        detect: Some(DetectConfig::default()),
        text: None,
        pcapng: None,
    };
    let mut out = Vec::new();
    let _ = replay_reader(reader, &opts, &mut out);
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Err(e) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line) {
            panic!("not a JSON object ({e}): {}", String::from_utf8_lossy(line));
        }
    }
});
