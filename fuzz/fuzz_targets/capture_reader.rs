//! Arbitrary bytes into the capture reader: it must return records or an
//! error, never panic, hang or allocate without bound.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tracer::capture::{CaptureReader, RecordRef};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::from_reader(Cursor::new(data.to_vec()), "fuzz") else {
        return;
    };
    let _ = reader.header();
    let _ = reader.drop_reasons();
    // The borrowing path (what replays use) and, after it, the owned one.
    let mut n = 0u32;
    loop {
        match reader.next_ref() {
            Ok(Some(RecordRef::Kernel(bytes))) => {
                // What the pipeline does with a kernel record.
                let _ = tracer::decode::parse(bytes);
            }
            Ok(Some(RecordRef::Other(_))) => {}
            Ok(None) | Err(_) => break,
        }
        n += 1;
        if n == 8 {
            break;
        }
    }
    while let Ok(Some(_)) = reader.next_record() {}
    let _ = reader.truncated();
    let _ = reader.warning();
    let _ = reader.skipped_unknown();
});
