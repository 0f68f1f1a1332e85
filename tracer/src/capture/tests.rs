use std::{
    fs,
    io::Cursor,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use tracer_ebpf::{kind, DropEvent, EventHeader};

use super::*;
use crate::{
    decode::{Locations, Tables},
    fdb::SeedEntry,
    kernel::kallsyms,
    pipeline::{Filter, Pipeline},
    testutil::TempDir,
};

fn header() -> Header {
    Header {
        format_version: FORMAT_VERSION,
        tracer_version: "0.1.0".into(),
        hostname: "node-7".into(),
        kernel_release: "6.12.0-test".into(),
        boot_to_wall_ns: 1_700_000_000_000_000_000,
        started_unix_ns: 1_700_000_123_000_000_000,
        args: vec!["tracer".into(), "run".into(), "--record".into(), "x".into()],
        part: 0,
        host_name: None,
    }
}

fn reasons() -> DropReasons {
    DropReasons::from_pairs([(2, "NOT_SPECIFIED"), (3, "NO_SOCKET"), (5, "TCP_CSUM")])
}

fn bytes_of<T: aya::Pod>(v: &T) -> Vec<u8> {
    tracer_ebpf::pod_bytes(v).to_vec()
}

const UDP_RCV: u64 = 0xffff_ffff_8100_0000;
const TCP_RCV: u64 = 0xffff_ffff_8100_1000;

fn drop_record(ts_ns: u64, location: u64, reason: u32) -> Vec<u8> {
    let mut hdr = EventHeader {
        ts_ns,
        kind: kind::SKB_DROP,
        netns: 4026531840,
        ifindex: 7,
        cpu: 1,
        ..Default::default()
    };
    hdr.ifname[..4].copy_from_slice(b"eth0");
    bytes_of(&DropEvent {
        hdr,
        location,
        saddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        reason,
        sport: 4242,
        dport: 53,
        eth_proto: 0x0800,
        l4proto: 17,
        ip_version: 4,
        ..Default::default()
    })
}

fn seed() -> Input {
    Input::FdbSeed(vec![SeedEntry {
        netns: 4026531840,
        bridge: 3,
        port: 5,
        port_name: "veth1".into(),
        mac: [2, 0, 0, 0, 0, 9],
        vlan: 0,
    }])
}

/// One input of every kind.
fn every_input() -> Vec<Input> {
    vec![
        seed(),
        Input::ProbeStatus {
            boot_ns: 10,
            name: "kfree_skb".into(),
            tracepoint: "skb/kfree_skb".into(),
            status: "attached".into(),
            error: None,
        },
        Input::ProbeStatus {
            boot_ns: 10,
            name: "fdb_delete".into(),
            tracepoint: "bridge/fdb_delete".into(),
            status: "failed".into(),
            error: Some("no such tracepoint \"é\"".into()),
        },
        Input::Kernel(drop_record(1_000, UDP_RCV + 0x10, 2)),
        Input::Kernel(vec![1, 2, 3]),
        Input::Kernel(Vec::new()),
        Input::Loss {
            boot_ns: 2_000,
            lost: vec![(kind::SKB_DROP, 4)],
            filtered: vec![(3, 10)],
            lost_total: 4,
            sinks: Vec::new(),
            held_back: vec![(kind::FDB_UPDATE, 4026532000, 7)],
            drops_held_back: Vec::new(),
        },
        Input::Tick { boot_ns: 3_000 },
        Input::Identity(crate::identity::IdentityUpdate::NetnsRemove {
            ts: -1_700_000_000_000_000_123,
            inode: 4026532000,
        }),
        Input::Kernel(drop_record(4_000, TCP_RCV + 0x20, 3)),
        Input::Finish { boot_ns: 5_000 },
    ]
}

fn symbols() -> Vec<(u64, String)> {
    vec![
        (UDP_RCV + 0x10, "__udp4_lib_rcv+0x10".into()),
        (u64::MAX, "top".into()),
    ]
}

/// The records of a small capture of every kind, as written.
fn write_every_kind(path: &Path) -> Vec<Record> {
    let mut w = CaptureWriter::create(path, header(), &reasons(), None).unwrap();
    let mut expected = vec![Record::Header(header()), Record::DropReasons(reasons())];
    for (i, input) in every_input().into_iter().enumerate() {
        if i == 3 {
            w.write_symbols(&symbols()).unwrap();
            expected.push(Record::Symbols(symbols()));
        }
        w.write_symbols(&[]).unwrap(); // nothing new: nothing written
        w.write_input(&input).unwrap();
        expected.push(Record::Input(input));
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.parts, vec![path.to_path_buf()]);
    assert_eq!(stats.inputs, every_input().len() as u64);
    assert_eq!(stats.kernel_records, 4);
    assert_eq!(stats.bytes, fs::metadata(path).unwrap().len());
    expected
}

fn read_all(r: &mut CaptureReader) -> Result<Vec<Record>, CaptureError> {
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push(rec);
    }
    Ok(out)
}

/// Inputs only (what a replay feeds the pipeline).
fn inputs_of(records: &[Record]) -> Vec<Input> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Input(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

/// A small valid capture as bytes.
fn small_capture() -> Vec<u8> {
    let dir = TempDir::new("small");
    let path = dir.file("c");
    write_every_kind(&path);
    fs::read(&path).unwrap()
}

fn from_bytes(bytes: &[u8]) -> Result<CaptureReader, CaptureError> {
    CaptureReader::from_reader(Cursor::new(bytes.to_vec()), "mem")
}

/// Offsets where each record of a capture ends, after the header and tables.
fn record_ends(bytes: &[u8]) -> (u64, Vec<u64>) {
    let mut r = from_bytes(bytes).unwrap();
    // Header and drop reasons are consumed by the constructor.
    let tables_end = r.position().1;
    let mut ends = Vec::new();
    r.next_record().unwrap();
    r.next_record().unwrap();
    while r.next_record().unwrap().is_some() {
        ends.push(r.position().1);
    }
    (tables_end, ends)
}

#[test]
fn round_trip_every_record_kind() {
    let dir = TempDir::new("round-trip");
    let path = dir.file("c");
    let expected = write_every_kind(&path);
    let mut r = CaptureReader::open(&path).unwrap();
    assert_eq!(r.header(), &header());
    assert_eq!(r.drop_reasons(), &reasons());
    assert_eq!(read_all(&mut r).unwrap(), expected);
    assert_eq!(r.truncated(), None);
    assert_eq!(r.warning(), None);
    assert_eq!(r.skipped_unknown(), 0);
    // Reading on after the end stays at the end.
    assert!(r.next_record().unwrap().is_none());

    // The borrowing API yields the same.
    let mut r = CaptureReader::open(&path).unwrap();
    let mut got = Vec::new();
    while let Some(rec) = r.next_ref().unwrap() {
        got.push(match rec {
            RecordRef::Kernel(b) => Record::Input(Input::Kernel(b.to_vec())),
            RecordRef::Other(o) => o,
        });
    }
    assert_eq!(got, expected);
}

#[test]
fn header_for_this_host_is_filled_in() {
    let h = Header::this_host(vec!["tracer".into()], 42, super::host_name());
    assert_eq!(h.format_version, FORMAT_VERSION);
    assert_eq!(h.tracer_version, env!("CARGO_PKG_VERSION"));
    assert!(!h.hostname.is_empty() && !h.kernel_release.is_empty());
    assert!(h.started_unix_ns > 1_600_000_000_000_000_000);
    let uname = nix::sys::utsname::uname().unwrap();
    assert_eq!(h.host_name.as_deref(), uname.nodename().to_str());
}

/// The header records host.name; a header of an older tracer (without it)
/// reads back as None, and one without it writes no key at all.
#[test]
fn header_host_name_is_optional_and_old_headers_read() {
    let mut h = header();
    let old = serde_json::to_string(&h).unwrap();
    assert!(!old.contains("host_name"), "{old}");
    assert_eq!(
        serde_json::from_str::<Header>(&old).unwrap().host_name,
        None
    );
    h.host_name = Some("node-7.example".into());
    let new = serde_json::to_string(&h).unwrap();
    assert_eq!(serde_json::from_str::<Header>(&new).unwrap(), h);
}

#[test]
fn truncation_at_every_byte_replays_the_complete_records() {
    let bytes = small_capture();
    let full = read_all(&mut from_bytes(&bytes).unwrap()).unwrap();
    let (tables_end, ends) = record_ends(&bytes);
    let end_marker_start = *ends.last().unwrap();
    assert_eq!(ends.len() + 2, full.len());
    for len in 0..=bytes.len() {
        let cut = &bytes[..len];
        let r = from_bytes(cut);
        if (len as u64) < tables_end {
            match r {
                Err(CaptureError::Empty { .. }) => assert_eq!(len, 0),
                Err(CaptureError::TruncatedHeader { offset, .. }) => assert!(offset <= len as u64),
                Err(e) => panic!("{len}: unexpected error {e}"),
                Ok(_) => panic!("{len}: opened a capture without its tables"),
            }
            continue;
        }
        let mut r = r.unwrap_or_else(|e| panic!("{len}: {e}"));
        let got = read_all(&mut r).unwrap_or_else(|e| panic!("{len}: {e}"));
        let complete = ends.iter().filter(|e| **e <= len as u64).count();
        assert_eq!(got[..], full[..complete + 2], "prefix of {len} bytes");
        if len == bytes.len() {
            assert_eq!(r.truncated(), None);
        } else {
            let last_end = ends
                .iter()
                .copied()
                .filter(|e| *e <= len as u64)
                .max()
                .unwrap_or(tables_end);
            assert_eq!(
                r.truncated(),
                Some((PathBuf::from("mem"), last_end)),
                "prefix of {len} bytes"
            );
            let w = r.warning().unwrap();
            assert!(w.contains(&format!("byte {last_end}")), "{w}");
            assert!(w.contains("cut short"), "{w}");
            // Stays at the end.
            assert!(r.next_record().unwrap().is_none());
        }
    }
    // Cut exactly before the end marker: every input, but no end marker.
    let mut r = from_bytes(&bytes[..end_marker_start as usize]).unwrap();
    assert_eq!(inputs_of(&read_all(&mut r).unwrap()), every_input());
    assert!(r.warning().unwrap().contains("without an end marker"));
}

#[test]
fn truncated_file_reports_its_path_and_offset() {
    let dir = TempDir::new("truncated-file");
    let path = dir.file("c");
    write_every_kind(&path);
    let bytes = fs::read(&path).unwrap();
    let (_, ends) = record_ends(&bytes);
    fs::write(&path, &bytes[..ends[3] as usize + 5]).unwrap();
    let mut r = CaptureReader::open(&path).unwrap();
    assert_eq!(read_all(&mut r).unwrap().len(), 2 + 4);
    assert_eq!(r.truncated(), Some((path.clone(), ends[3])));
    assert!(r.warning().unwrap().contains(&path.display().to_string()));
}

#[test]
fn zero_filled_tail_is_a_cut_not_corruption() {
    let bytes = small_capture();
    let (_, ends) = record_ends(&bytes);
    for (cut_at, zeros) in [
        (ends[2] as usize, 100),
        (ends[2] as usize + 7, 4096),
        (ends[2] as usize + 20, 3),
    ] {
        let mut b = bytes[..cut_at].to_vec();
        b.resize(cut_at + zeros, 0);
        let mut r = from_bytes(&b).unwrap();
        assert_eq!(
            read_all(&mut r).unwrap().len(),
            2 + 3,
            "cut at {cut_at} + {zeros} zeros"
        );
        assert_eq!(r.truncated().map(|t| t.1), Some(ends[2]));
    }
}

#[test]
fn corrupted_checksum_is_an_error_naming_the_offset() {
    let bytes = small_capture();
    let (_, ends) = record_ends(&bytes);
    // A payload byte of the 5th record.
    let start = ends[3];
    let mut b = bytes.clone();
    b[start as usize + FRAME_LEN + 2] ^= 0x40;
    let mut r = from_bytes(&b).unwrap();
    let err = read_all(&mut r).unwrap_err();
    assert!(
        matches!(err, CaptureError::Corrupt { offset, .. } if offset == start),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("corrupt record at byte {start} in mem: checksum mismatch")
    );
    // The length field of the same record.
    let mut b = bytes.clone();
    b[start as usize] ^= 0x01;
    let err = read_all(&mut from_bytes(&b).unwrap()).unwrap_err();
    assert!(err.to_string().contains(&format!("byte {start}")), "{err}");
    assert!(err.to_string().contains("frame checksum mismatch"), "{err}");
    // The file header.
    let mut b = bytes.clone();
    b[9] ^= 1;
    let err = from_bytes(&b).err().unwrap();
    assert!(
        err.to_string().contains("file header checksum mismatch"),
        "{err}"
    );
    // Zeroed checksums pass only in fuzz builds.
    let err = from_bytes(&zero_checksums(&bytes)).err().unwrap();
    assert!(
        err.to_string().contains("file header checksum mismatch"),
        "{err}"
    );
}

#[test]
fn wrong_magic_is_not_a_capture() {
    let dir = TempDir::new("magic");
    let path = dir.file("notes.txt");
    fs::write(&path, b"hello, this is a text file and not a capture\n").unwrap();
    let err = CaptureReader::open(&path).err().unwrap();
    assert!(matches!(err, CaptureError::NotACapture { .. }));
    assert_eq!(
        err.to_string(),
        format!("{} is not a tracer capture (bad magic)", path.display())
    );
    // Even a short file that starts like the magic and then differs.
    let err = from_bytes(b"\x89TRX").err().unwrap();
    assert!(matches!(err, CaptureError::NotACapture { .. }), "{err}");
    // A short file that is a prefix of the magic is a cut capture.
    let err = from_bytes(b"\x89TRA").err().unwrap();
    assert!(
        matches!(err, CaptureError::TruncatedHeader { offset: 4, .. }),
        "{err}"
    );
}

#[test]
fn empty_file_is_a_clear_error() {
    let dir = TempDir::new("empty");
    let path = dir.file("empty");
    fs::write(&path, b"").unwrap();
    let err = CaptureReader::open(&path).err().unwrap();
    assert!(matches!(err, CaptureError::Empty { .. }));
    assert!(err.to_string().contains("is empty"), "{err}");
    let err = CaptureReader::open(&dir.file("missing")).err().unwrap();
    assert!(err.to_string().starts_with("cannot open "), "{err}");
}

#[test]
fn a_file_of_another_kind_is_not_a_capture() {
    let elf = fs::read("/bin/sh")
        .unwrap_or_else(|_| b"\x7fELF\x02\x01\x01\0rest of an elf file".to_vec());
    let err = from_bytes(&elf).err().unwrap();
    assert!(matches!(err, CaptureError::NotACapture { .. }), "{err}");
    let err = from_bytes(br#"{"@timestamp":"2026-01-01T00:00:00Z"}"#)
        .err()
        .unwrap();
    assert!(matches!(err, CaptureError::NotACapture { .. }), "{err}");
}

#[test]
fn future_version_asks_for_an_upgrade() {
    let mut b = small_capture();
    b[..PREFIX_LEN].copy_from_slice(&prefix_bytes(7));
    let err = from_bytes(&b).err().unwrap();
    assert!(matches!(
        err,
        CaptureError::TooNew {
            found: 7,
            supported: 1,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "mem: capture format version 7 is newer than this tracer understands (1): upgrade tracer"
    );
}

/// Bytes of one raw record.
fn raw_record(rtype: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = frame_bytes(rtype, flags, payload).unwrap().to_vec();
    v.extend_from_slice(payload);
    v
}

/// `bytes` with `extra` inserted after the record ending at `at`.
fn insert_at(bytes: &[u8], at: u64, extra: &[u8]) -> Vec<u8> {
    let mut b = bytes[..at as usize].to_vec();
    b.extend_from_slice(extra);
    b.extend_from_slice(&bytes[at as usize..]);
    b
}

#[test]
fn unknown_record_types_are_skipped_and_counted() {
    let bytes = small_capture();
    let (tables_end, ends) = record_ends(&bytes);
    let full = read_all(&mut from_bytes(&bytes).unwrap()).unwrap();
    // The header record ends where the drop-reason frame starts.
    let header_len = u32::from_le_bytes(bytes[PREFIX_LEN..PREFIX_LEN + 4].try_into().unwrap());
    let after_header = (PREFIX_LEN + FRAME_LEN) as u64 + u64::from(header_len);
    assert!(after_header < tables_end);
    // Inserted from the back so the earlier offsets stay valid.
    let mut b = insert_at(
        &bytes,
        ends[4],
        &raw_record(0x7777, 0, b"something from the future"),
    );
    // An input of a kind this tracer does not know (valid JSON).
    let future_input = br#"{"FromTheFuture":{"x":1}}"#;
    b = insert_at(
        &b,
        ends[1],
        &raw_record(record_type::INPUT, flags::CRITICAL, future_input),
    );
    // Between the header and the drop-reason table.
    b = insert_at(&b, after_header, &raw_record(0x7778, 0, b""));
    let mut r = from_bytes(&b).unwrap();
    assert_eq!(read_all(&mut r).unwrap(), full);
    assert_eq!(r.skipped_unknown(), 3);
    assert_eq!(r.truncated(), None);
}

#[test]
fn unknown_critical_record_stops_with_upgrade_hint() {
    let bytes = small_capture();
    let (_, ends) = record_ends(&bytes);
    let b = insert_at(&bytes, ends[2], &raw_record(0x7777, flags::CRITICAL, b"{}"));
    let mut r = from_bytes(&b).unwrap();
    let err = read_all(&mut r).unwrap_err();
    assert!(
        matches!(err, CaptureError::UnknownCritical { record_type: 0x7777, offset, .. } if offset == ends[2]),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade tracer"), "{err}");
}

#[test]
fn invalid_json_with_a_valid_checksum_is_corrupt() {
    let bytes = small_capture();
    let (_, ends) = record_ends(&bytes);
    let b = insert_at(
        &bytes,
        ends[2],
        &raw_record(record_type::INPUT, flags::CRITICAL, b"{not json"),
    );
    let err = read_all(&mut from_bytes(&b).unwrap()).unwrap_err();
    assert!(err.to_string().contains("invalid input record"), "{err}");
    assert!(
        err.to_string().contains(&format!("byte {}", ends[2])),
        "{err}"
    );
}

#[test]
fn huge_declared_length_does_not_allocate() {
    let bytes = small_capture();
    let (tables_end, _) = record_ends(&bytes);
    let head = &bytes[..tables_end as usize];

    // Over the limit: refused from the frame alone.
    let mut f = [0u8; FRAME_LEN];
    f[0..4].copy_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
    f[4..6].copy_from_slice(&record_type::KERNEL.to_le_bytes());
    let hcrc = crc32fast::hash(&f[..12]);
    f[12..16].copy_from_slice(&hcrc.to_le_bytes());
    let mut b = head.to_vec();
    b.extend_from_slice(&f);
    let mut r = from_bytes(&b).unwrap();
    let err = read_all(&mut r).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the 67108864-byte limit"),
        "{err}"
    );
    assert!(r.scratch.capacity() < 1 << 16);

    // At the limit but the bytes are not there: a cut, and the buffer grew
    // by one chunk at most.
    f[0..4].copy_from_slice(&MAX_RECORD_LEN.to_le_bytes());
    let hcrc = crc32fast::hash(&f[..12]);
    f[12..16].copy_from_slice(&hcrc.to_le_bytes());
    let mut b = head.to_vec();
    b.extend_from_slice(&f);
    b.extend_from_slice(&[7u8; 100]);
    let mut r = from_bytes(&b).unwrap();
    read_all(&mut r).unwrap();
    assert_eq!(r.truncated().map(|t| t.1), Some(tables_end));
    assert!(
        r.scratch.capacity() <= super::reader::CHUNK,
        "{}",
        r.scratch.capacity()
    );

    // The writer refuses to write what the reader would refuse.
    let dir = TempDir::new("huge");
    let mut w = CaptureWriter::create(&dir.file("c"), header(), &reasons(), None).unwrap();
    let err = w
        .write_input(&Input::Kernel(vec![0; MAX_RECORD_LEN as usize + 1]))
        .unwrap_err();
    assert!(matches!(err, CaptureError::TooLarge { .. }), "{err}");
}

#[test]
fn files_are_created_0600() {
    let dir = TempDir::new("mode");
    let path = dir.file("c");
    let mut w = CaptureWriter::create(&path, header(), &reasons(), Some(200)).unwrap();
    for i in 0..20 {
        w.write_input(&Input::Kernel(drop_record(i, UDP_RCV, 2)))
            .unwrap();
    }
    let stats = w.finish().unwrap();
    assert!(stats.parts.len() > 2, "{stats:?}");
    for p in &stats.parts {
        let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
}

/// Writes `n` kernel records with symbols and losses mixed in, rotating at
/// `rotate` bytes; returns the inputs in order.
fn write_rotating(path: &Path, n: u64, rotate: u64) -> (Vec<Input>, CaptureStats) {
    let mut w = CaptureWriter::create(path, header(), &reasons(), Some(rotate)).unwrap();
    let mut inputs = vec![seed()];
    w.write_input(&inputs[0]).unwrap();
    w.set_rotation_state(vec![seed()]);
    for i in 0..n {
        if i % 7 == 3 {
            w.write_symbols(&[(UDP_RCV + i, format!("__udp4_lib_rcv+{i:#x}"))])
                .unwrap();
        }
        let input = if i % 10 == 9 {
            Input::Loss {
                boot_ns: i,
                lost: vec![],
                filtered: vec![(2, i)],
                lost_total: 0,
                sinks: Vec::new(),
                held_back: Vec::new(),
                drops_held_back: Vec::new(),
            }
        } else {
            Input::Kernel(drop_record(i, UDP_RCV + i, 2))
        };
        w.write_input(&input).unwrap();
        inputs.push(input);
    }
    (inputs, w.finish().unwrap())
}

#[test]
fn rotation_makes_self_describing_parts_read_in_order() {
    let dir = TempDir::new("rotation");
    let path = dir.file("c");
    let (inputs, stats) = write_rotating(&path, 100, 1500);
    assert!(stats.parts.len() >= 4, "{stats:?}");
    for (n, p) in stats.parts.iter().enumerate() {
        assert_eq!(p, &part_path(&path, n as u32));
        // The limit counts what follows a part's restated preamble and
        // state (header, drop reasons, every symbol so far, FDB seed: under
        // 2 KB here), plus at most one record beyond it.
        assert!(
            fs::metadata(p).unwrap().len() < 2000 + 1500 + 200,
            "{}",
            p.display()
        );
    }
    // FILE reads on through every part; the re-stated state is skipped.
    let mut r = CaptureReader::open(&path).unwrap();
    let all = read_all(&mut r).unwrap();
    assert_eq!(inputs_of(&all), inputs);
    assert_eq!(r.truncated(), None);
    let headers: Vec<u32> = all
        .iter()
        .filter_map(|r| match r {
            Record::Header(h) => Some(h.part),
            _ => None,
        })
        .collect();
    assert_eq!(headers, (0..stats.parts.len() as u32).collect::<Vec<_>>());
    let syms: Vec<(u64, String)> = all
        .iter()
        .filter_map(|r| match r {
            Record::Symbols(s) => Some(s.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        syms.len(),
        (0..100).filter(|i| i % 7 == 3).count(),
        "each symbol once"
    );

    // Each part on its own: header, tables, the symbols so far, the state.
    for (n, p) in stats.parts.iter().enumerate().skip(1) {
        let mut r = CaptureReader::open(p).unwrap();
        assert_eq!(r.header().part, n as u32);
        assert_eq!(r.drop_reasons(), &reasons());
        let recs = read_all(&mut r).unwrap();
        assert!(matches!(recs[0], Record::Header(_)));
        assert!(matches!(recs[1], Record::DropReasons(_)));
        assert!(matches!(recs[2], Record::Symbols(_)));
        assert_eq!(recs[3], Record::Input(seed()));
        // Opened at part n, it goes on to the last part.
        assert_eq!(r.truncated(), None);
        let tail = inputs_of(&recs);
        assert_eq!(tail[1..], inputs[inputs.len() - (tail.len() - 1)..]);
    }
}

/// Every file in `dir`, with its contents (symbolic links as their target).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let p = e.path();
            let meta = fs::symlink_metadata(&p).unwrap();
            let body = if meta.file_type().is_symlink() {
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                fs::read(&p).unwrap()
            };
            (e.file_name().to_string_lossy().into_owned(), body)
        })
        .collect();
    v.sort();
    v
}

/// An existing FILE, a symbolic link (even a dangling one) or an
/// existing part FILE.N is refused with one clear error, before anything
/// is created; nothing in the directory changes.
#[test]
fn a_taken_path_is_refused_and_left_untouched() {
    let dir = TempDir::new("taken");
    let path = dir.file("c");
    let target = dir.file("target");

    fs::write(&path, b"an earlier capture").unwrap();
    let before = snapshot(dir.path());
    let err = CaptureWriter::create(&path, header(), &reasons(), None)
        .err()
        .expect("refused");
    assert!(matches!(err, CaptureError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
    fs::remove_file(&path).unwrap();

    // A dangling symbolic link: its target is not created.
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let before = snapshot(dir.path());
    let err = CaptureWriter::create(&path, header(), &reasons(), None)
        .err()
        .expect("refused");
    assert!(matches!(err, CaptureError::Exists { .. }), "{err}");
    assert!(!target.exists(), "followed the link");
    assert_eq!(snapshot(dir.path()), before);
    fs::remove_file(&path).unwrap();

    // A part of an earlier recording (whatever its contents): FILE itself
    // is not created either.
    for n in [1, 2, 17] {
        let part = part_path(&path, n);
        fs::write(&part, prefix_bytes(1)).unwrap();
        let before = snapshot(dir.path());
        let err = CaptureWriter::create(&path, header(), &reasons(), Some(1 << 20))
            .err()
            .expect("refused");
        assert!(matches!(err, CaptureError::PartExists { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("{} exists", part.display())),
            "{err}"
        );
        assert!(!path.exists());
        assert_eq!(snapshot(dir.path()), before);
        fs::remove_file(&part).unwrap();
    }
    // Names that are not parts are no obstacle.
    fs::write(dir.file("c.old"), b"x").unwrap();
    fs::write(dir.file("c.1x"), b"x").unwrap();
    fs::write(dir.file("cc.1"), b"x").unwrap();
    CaptureWriter::create(&path, header(), &reasons(), None)
        .unwrap()
        .finish()
        .unwrap();
}

/// A part name taken while recording (someone created FILE.2, or a link
/// there): the rotation fails with a clear error, the file is untouched,
/// and the parts before it are complete.
#[test]
fn rotation_never_overwrites_a_part_that_appeared() {
    let dir = TempDir::new("rotate-taken");
    let path = dir.file("c");
    let mut w = CaptureWriter::create(&path, header(), &reasons(), Some(300)).unwrap();
    w.set_manual_rotation();
    let squatter = part_path(&path, 2);
    fs::write(&squatter, b"not ours").unwrap();
    let mut err = None;
    for i in 0..100 {
        if w.rotation_due() {
            if let Err(e) = w.rotate(&[]) {
                err = Some(e);
                break;
            }
        }
        w.write_input(&Input::Kernel(drop_record(i, UDP_RCV, 2)))
            .unwrap();
    }
    let err = err.expect("the rotation into c.2 failed");
    assert!(matches!(err, CaptureError::Exists { .. }), "{err}");
    assert_eq!(fs::read(&squatter).unwrap(), b"not ours");
    drop(w);
    // FILE and FILE.1 hold every record up to the failed rotation; the
    // reader then finds c.2 is not a part of this capture.
    let mut r = CaptureReader::open(&path).unwrap();
    let mut kernel = 0;
    let end = loop {
        match r.next_record() {
            Ok(Some(Record::Input(Input::Kernel(_)))) => kernel += 1,
            Ok(Some(_)) => {}
            other => break other,
        }
    };
    assert!(kernel > 2, "{kernel} records");
    assert!(end.is_err(), "{end:?}");
}

#[test]
fn rotation_with_a_fresh_state_snapshot() {
    let dir = TempDir::new("rotate-explicit");
    let path = dir.file("c");
    let mut w = CaptureWriter::create(&path, header(), &reasons(), Some(300)).unwrap();
    let mut rotations = 0;
    for i in 0..10 {
        if w.rotation_due() {
            rotations += 1;
            w.rotate(&[Input::Tick { boot_ns: 1000 + i }]).unwrap();
        }
        w.write_input(&Input::Kernel(drop_record(i, UDP_RCV, 2)))
            .unwrap();
        w.flush().unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.parts.len(), rotations + 1);
    assert!(rotations > 1);
    let mut r = CaptureReader::open(&part_path(&path, 1)).unwrap();
    let recs = read_all(&mut r).unwrap();
    assert!(
        matches!(recs[2], Record::Input(Input::Tick { .. })),
        "{:?}",
        recs[2]
    );
    let mut r = CaptureReader::open(&path).unwrap();
    assert_eq!(inputs_of(&read_all(&mut r).unwrap()).len(), 10);
}

#[test]
fn missing_or_foreign_next_part() {
    let dir = TempDir::new("chain");
    let path = dir.file("c");
    let (inputs, stats) = write_rotating(&path, 60, 1500);
    assert!(stats.parts.len() >= 3);

    // The last part is gone: everything before it, then a warning.
    let last = stats.parts.last().unwrap();
    let saved = fs::read(last).unwrap();
    fs::remove_file(last).unwrap();
    let mut r = CaptureReader::open(&path).unwrap();
    let got = inputs_of(&read_all(&mut r).unwrap());
    assert_eq!(got[..], inputs[..got.len()]);
    assert_eq!(r.truncated(), Some((last.clone(), 0)));
    assert!(
        r.warning().unwrap().contains("which is missing"),
        "{:?}",
        r.warning()
    );

    // A part of another recording in its place: a clear error.
    let other = dir.file("other");
    let mut h = header();
    h.started_unix_ns += 1;
    let mut w = CaptureWriter::create(&other, h, &reasons(), Some(200)).unwrap();
    for i in 0..30 {
        w.write_input(&Input::Kernel(drop_record(i, UDP_RCV, 2)))
            .unwrap();
    }
    let ostats = w.finish().unwrap();
    fs::copy(&ostats.parts[stats.parts.len() - 1], last).unwrap();
    let mut r = CaptureReader::open(&path).unwrap();
    let err = read_all(&mut r).unwrap_err();
    assert!(matches!(err, CaptureError::BrokenChain { .. }), "{err}");
    assert!(err.to_string().contains("does not continue"), "{err}");
    fs::write(last, saved).unwrap();

    // A stream cannot go on into the next part: it says so.
    let mut r = CaptureReader::from_reader(Cursor::new(fs::read(&path).unwrap()), "stdin").unwrap();
    read_all(&mut r).unwrap();
    assert!(
        r.warning().unwrap().contains("continues in a part"),
        "{:?}",
        r.warning()
    );
}

#[test]
fn part_paths() {
    let base = Path::new("/tmp/run.capture");
    assert_eq!(part_path(base, 0), base);
    assert_eq!(part_path(base, 12), Path::new("/tmp/run.capture.12"));
    assert_eq!(base_of(Path::new("/tmp/run.capture.12"), 12).unwrap(), base);
    assert_eq!(base_of(Path::new("/tmp/run.capture.3"), 12), None);
}

/// NDJSON of what `inputs` make a pipeline print.
fn ndjson(p: &mut Pipeline, input: &Input, out: &mut Vec<u8>) {
    let mut batch = Vec::new();
    p.process(input, &mut batch);
    for e in &batch {
        e.write_line(out).unwrap();
    }
}

fn pipeline(tables: Tables) -> Pipeline {
    Pipeline::new(tables, Filter::default(), Some(Default::default()))
}

/// The requirement: a live run recorded and replayed prints the same bytes.
#[test]
fn replay_prints_what_the_live_run_printed() {
    let dir = TempDir::new("replay");
    let path = dir.file("c");
    let kallsyms = format!(
        "{UDP_RCV:016x} T __udp4_lib_rcv\n{TCP_RCV:016x} T tcp_v4_rcv\nffffffff81002000 T other\n"
    );
    let live_tables = Tables {
        drop_reasons: reasons(),
        locations: Locations::live(kallsyms::Symbols::parse(&kallsyms).unwrap()),
        boot_to_wall_ns: header().boot_to_wall_ns,
        reason_cache: Default::default(),
    };
    let mut live = pipeline(live_tables);
    let mut w = CaptureWriter::create(&path, header(), &reasons(), Some(4096)).unwrap();
    let mut live_out = Vec::new();
    let mut inputs = vec![seed()];
    for i in 0..300u64 {
        let loc = [UDP_RCV + 0x10, TCP_RCV + 0x20, UDP_RCV + 0x10 + i % 5][(i % 3) as usize];
        inputs.push(Input::Kernel(drop_record(
            1_000_000 * i,
            loc,
            2 + (i % 2) as u32,
        )));
        if i % 50 == 49 {
            inputs.push(Input::Tick {
                boot_ns: 1_000_000 * i + 1,
            });
        }
    }
    inputs.push(Input::Finish {
        boot_ns: 400_000_000,
    });
    for input in &inputs {
        // Live: process, then record the symbols it resolved, then the input.
        ndjson(&mut live, input, &mut live_out);
        w.write_symbols(&live.take_new_symbols()).unwrap();
        w.write_input(input).unwrap();
    }
    let stats = w.finish().unwrap();
    assert!(stats.parts.len() > 2);
    assert!(String::from_utf8_lossy(&live_out).contains("tcp_v4_rcv+0x20"));

    // Replay: tables from the capture, symbols as they come.
    let mut r = CaptureReader::open(&path).unwrap();
    let mut p = pipeline(Tables {
        drop_reasons: r.drop_reasons().clone(),
        locations: Locations::default(),
        boot_to_wall_ns: r.header().boot_to_wall_ns,
        reason_cache: Default::default(),
    });
    let mut replay_out = Vec::new();
    while let Some(rec) = r.next_ref().unwrap() {
        match rec {
            RecordRef::Kernel(bytes) => {
                let mut batch = Vec::new();
                p.process_kernel(bytes, &mut batch);
                for e in &batch {
                    e.write_line(&mut replay_out).unwrap();
                }
            }
            RecordRef::Other(Record::Input(input)) => ndjson(&mut p, &input, &mut replay_out),
            RecordRef::Other(Record::Symbols(syms)) => {
                p.add_symbols(syms);
            }
            RecordRef::Other(Record::Header(_) | Record::DropReasons(_)) => {}
        }
    }
    assert_eq!(r.truncated(), None);
    assert_eq!(
        String::from_utf8(replay_out).unwrap(),
        String::from_utf8(live_out).unwrap()
    );
}

/// What the `pipeline` fuzz target does with `bytes`: the whole replay
/// (reader, identity, detectors, serialiser); every printed line must be a
/// JSON object. Returns the lines printed.
fn replay_bytes_as_the_fuzzer_does(bytes: &[u8]) -> usize {
    let Ok(reader) = from_bytes(bytes) else {
        return 0;
    };
    let opts = crate::replay::ReplayOptions {
        path: "fuzz".into(),
        speed: 0.0,
        filter: Default::default(),
        detect: Some(Default::default()),
        text: None,
        pcapng: None,
    };
    let mut out = Vec::new();
    let _ = crate::replay::replay_reader(reader, &opts, &mut out);
    let mut n = 0;
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line).unwrap_or_else(
            |e| panic!("not a JSON object ({e}): {}", String::from_utf8_lossy(line)),
        );
        n += 1;
    }
    n
}

/// The checksums [`zero_checksums`] zeroed, computed again (a checksum
/// that is not zero is left as it is, wrong or not): what a fuzz build
/// (which accepts a zero checksum) reads in a `-nocrc` seed, a normal build
/// reads in the result.
fn restore_checksums(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if b.len() < PREFIX_LEN {
        return b;
    }
    if b[12..16] == [0; 4] {
        let crc = crc32fast::hash(&b[..12]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    let mut off = PREFIX_LEN;
    while off + FRAME_LEN <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let Some(end) = (off + FRAME_LEN).checked_add(len).filter(|e| *e <= b.len()) else {
            break;
        };
        if b[off + 8..off + 12] == [0; 4] {
            let crc = crc32fast::hash(&b[off + FRAME_LEN..end]);
            b[off + 8..off + 12].copy_from_slice(&crc.to_le_bytes());
        }
        if b[off + 12..off + 16] == [0; 4] {
            let crc = crc32fast::hash(&b[off..off + 12]);
            b[off + 12..off + 16].copy_from_slice(&crc.to_le_bytes());
        }
        off = end;
    }
    b
}

/// Every file of the fuzz corpora and every regression input goes through
/// the reader and through the whole pipeline without a panic, printing
/// only JSON objects. A `-nocrc` seed (checksums zeroed, for fuzz builds)
/// is also read with its checksums restored, so a normal build gets past
/// the header too, as far as its twin with checksums does.
#[test]
fn fuzz_corpus_and_regressions_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    let mut lines = 0;
    for dir in [
        "corpus/capture_reader",
        "corpus/pipeline",
        "regressions/capture_reader",
        "regressions/pipeline",
    ] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "md") {
                continue;
            }
            let bytes = fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut inputs = vec![bytes.clone()];
            if let Some(twin) = name.strip_suffix("-nocrc") {
                let restored = restore_checksums(&bytes);
                if let Ok(twin_bytes) = fs::read(path.with_file_name(twin)) {
                    assert_eq!(
                        from_bytes(&restored).is_ok(),
                        from_bytes(&twin_bytes).is_ok(),
                        "{name} with checksums restored opens as {twin} does"
                    );
                }
                inputs.push(restored);
            }
            for input in inputs {
                if let Ok(mut r) = from_bytes(&input) {
                    while let Ok(Some(_)) = r.next_record() {}
                }
                lines += replay_bytes_as_the_fuzzer_does(&input);
            }
            n += 1;
        }
    }
    assert!(n >= 18, "the seed corpus is there: {n} inputs");
    assert!(lines > 0, "some seeds replay to lines");
    eprintln!("{n} fuzz inputs read, {lines} lines replayed");
}

/// `bytes` with the checksums of the prefix and of every complete record zeroed.
fn zero_checksums(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if b.len() < PREFIX_LEN {
        return b;
    }
    b[12..16].fill(0);
    let mut off = PREFIX_LEN;
    while off + FRAME_LEN <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        b[off + 8..off + 16].fill(0);
        off += FRAME_LEN + len;
    }
    b
}

/// Where [`fuzz_seeds`] writes the fuzz seed corpus: `$TRACER_FUZZ_SEEDS`
/// (`cargo xtask fuzz` sets it to `target/fuzz-seeds` and fuzzes from
/// there, so the seeds always have the current format), else a temporary
/// directory.
const FUZZ_SEEDS_ENV: &str = "TRACER_FUZZ_SEEDS";

/// Records of the capture in `bytes` up to its end, or the first error.
fn count_to_end(bytes: &[u8]) -> Result<usize, CaptureError> {
    let mut r = from_bytes(bytes)?;
    let mut n = 0;
    while r.next_record()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// The fuzz seed corpus: captures valid and broken in each way the reader
/// must handle, and a synthetic host for the pipeline target. Each seed is
/// what its name says: the valid ones read to their end, the broken ones
/// fail, and the `-nocrc` variants (every checksum zeroed, which only fuzz
/// builds accept, so that mutations reach the record decoding) fail here.
#[test]
fn fuzz_seeds() {
    let tmp = TempDir::new("fuzz-seeds");
    let root = std::env::var_os(FUZZ_SEEDS_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let out = root.join("capture_reader");
    fs::create_dir_all(&out).unwrap();
    let bytes = small_capture();
    let (tables_end, ends) = record_ends(&bytes);
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("valid-every-kind", bytes.clone()),
        ("cut-in-header", bytes[..tables_end as usize - 9].to_vec()),
        ("cut-in-record", bytes[..ends[3] as usize + 11].to_vec()),
        (
            "no-end-marker",
            bytes[..*ends.last().unwrap() as usize].to_vec(),
        ),
        (
            "unknown-record",
            insert_at(&bytes, ends[1], &raw_record(0x7777, 0, b"future")),
        ),
        ("prefix-only", prefix_bytes(1).to_vec()),
    ];
    let mut corrupt = bytes.clone();
    corrupt[ends[2] as usize + FRAME_LEN + 1] ^= 0x10;
    seeds.push(("bad-checksum", corrupt));
    let dir = TempDir::new("seeds");
    let path = dir.file("c");
    let (_, stats) = write_rotating(&path, 12, 600);
    seeds.push(("rotated-part-0", fs::read(&stats.parts[0]).unwrap()));
    seeds.push(("rotated-part-1", fs::read(&stats.parts[1]).unwrap()));
    let whole = count_to_end(&bytes).unwrap();
    assert!(whole > 8, "every kind in the valid seed: {whole} records");
    for (name, data) in seeds {
        let read = count_to_end(&data);
        match name {
            // Read to the end; an unknown record is skipped, a missing end
            // marker is a capture cut between records.
            "valid-every-kind" | "unknown-record" | "no-end-marker" => {
                assert_eq!(read.as_ref().ok(), Some(&whole), "{name}: {read:?}")
            }
            // A cut record is left out: the records before it read.
            "cut-in-record" => assert!(
                matches!(read, Ok(n) if n > 0 && n < whole),
                "{name}: {read:?}"
            ),
            "cut-in-header" | "prefix-only" => assert!(
                matches!(read, Err(CaptureError::TruncatedHeader { .. })),
                "{name}: {read:?}"
            ),
            "bad-checksum" => assert!(
                matches!(read, Err(CaptureError::Corrupt { .. })),
                "{name}: {read:?}"
            ),
            _ => assert!(matches!(read, Ok(n) if n > 0), "{name}: {read:?}"),
        }
        // The same with every checksum zeroed: fuzz builds accept a zero
        // checksum, so mutations of these reach the record decoding; other
        // builds refuse them.
        let nocrc = zero_checksums(&data);
        let read = count_to_end(&nocrc);
        assert!(
            matches!(read, Err(CaptureError::Corrupt { .. })),
            "{name}-nocrc: {read:?}"
        );
        fs::write(out.join(format!("{name}-nocrc")), nocrc).unwrap();
        fs::write(out.join(name), data).unwrap();
    }

    // The pipeline target's own seeds: a small synthetic host (identity of
    // an overlay with containers, every record kind, alerts, incidents).
    let out = root.join("pipeline");
    fs::create_dir_all(&out).unwrap();
    let path = dir.file("synth");
    let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")]);
    crate::synth::write(&path, 400, 4, 2, &reasons).unwrap();
    let data = fs::read(&path).unwrap();
    fs::write(out.join("synth-4-containers-nocrc"), zero_checksums(&data)).unwrap();
    fs::write(out.join("synth-4-containers"), data).unwrap();
}

// ---- rotated parts restate identity ----

const SVC_OVERLAY_NS: u32 = 4_026_530_000;
const SVC_NS: u32 = 4_026_540_000;
const SVCS: u32 = 4;
/// Boot clock of the first identity update; events follow it.
const SVC_T0: u64 = 1_000_000_000_000;

fn svc_ip(c: u32) -> [u8; 4] {
    [10, 1, 0, c as u8 + 2]
}

fn svc_mac(c: u32) -> [u8; 6] {
    [0x02, 0x42, 10, 1, 0, c as u8 + 2]
}

/// A swarm-like host: an overlay network `backend` whose namespace holds a
/// bridge, a vxlan and one veth per container `svcN`, each container in its
/// namespace; Docker degraded, then recovered (two status lines); `svc3`
/// stops right away and stays named for its grace period.
fn svc_identity() -> Vec<Input> {
    use crate::identity::{
        ContainerInfo, EndpointInfo, IdentityUpdate as U, InterfaceInfo, NetnsInfo, NetworkInfo,
        SourceState, VethPeer,
    };
    let ts = SVC_T0 as i128 + header().boot_to_wall_ns;
    let mut u = vec![
        U::Status {
            ts,
            source: "docker".into(),
            state: SourceState::Degraded,
            reason: Some("timed out".into()),
        },
        U::NetworkUpsert {
            ts,
            network: NetworkInfo {
                id: "svcbackend0123456789".into(),
                name: "backend".into(),
                driver: Some("overlay".into()),
                ..Default::default()
            },
        },
        U::NetnsUpsert {
            ts,
            netns: NetnsInfo {
                inode: SVC_OVERLAY_NS,
                docker_names: vec!["1-svcbackend".into()],
                ..Default::default()
            },
        },
    ];
    let mut overlay = vec![
        InterfaceInfo {
            index: 2,
            name: "br0".into(),
            kind: Some("bridge".into()),
            ..Default::default()
        },
        InterfaceInfo {
            index: 3,
            name: "vxlan0".into(),
            kind: Some("vxlan".into()),
            master: Some(2),
            ..Default::default()
        },
    ];
    for c in 0..SVCS {
        let ns = SVC_NS + c;
        let ip = std::net::IpAddr::from(svc_ip(c));
        overlay.push(InterfaceInfo {
            index: 100 + c,
            name: format!("veth{c}"),
            kind: Some("veth".into()),
            master: Some(2),
            peer: Some(VethPeer {
                ifindex: 2,
                netns: Some(ns),
            }),
            ..Default::default()
        });
        u.push(U::NetnsUpsert {
            ts,
            netns: NetnsInfo {
                inode: ns,
                docker_names: vec![format!("{:012x}", 0xabc000 + c)],
                ..Default::default()
            },
        });
        u.push(U::NetnsInterfaces {
            ts,
            inode: ns,
            interfaces: vec![InterfaceInfo {
                index: 2,
                name: "eth0".into(),
                mac: Some(svc_mac(c)),
                kind: Some("veth".into()),
                peer: Some(VethPeer {
                    ifindex: 100 + c,
                    netns: Some(SVC_OVERLAY_NS),
                }),
                addrs: vec![ip],
                ..Default::default()
            }],
        });
        u.push(U::ContainerUpsert {
            ts,
            container: ContainerInfo {
                id: format!("{:064x}", 0x5eed_0000 + c),
                name: Some(format!("svc{c}")),
                image: Some("registry.example/app:1.2.3".into()),
                runtime: Some("docker".into()),
                netns: Some(ns),
                endpoints: vec![EndpointInfo {
                    network_id: "svcbackend0123456789".into(),
                    network: Some("backend".into()),
                    ips: vec![ip],
                    mac: Some(svc_mac(c)),
                }],
                ..Default::default()
            },
        });
    }
    u.push(U::NetnsInterfaces {
        ts,
        inode: SVC_OVERLAY_NS,
        interfaces: overlay,
    });
    u.push(U::Status {
        ts: ts + 1_000,
        source: "docker".into(),
        state: SourceState::Ok,
        reason: None,
    });
    u.push(U::ContainerRemove {
        ts: ts + 1_000_000,
        id: format!("{:064x}", 0x5eed_0000 + 3),
    });
    u.into_iter().map(Input::Identity).collect()
}

/// A UDP drop in `to`'s namespace, from `from`.
fn svc_drop(ts_ns: u64, from: u32, to: u32) -> Vec<u8> {
    let mut hdr = EventHeader {
        ts_ns,
        kind: kind::SKB_DROP,
        netns: SVC_NS + to,
        ifindex: 2,
        ..Default::default()
    };
    hdr.ifname[..4].copy_from_slice(b"eth0");
    let (mut saddr, mut daddr) = ([0u8; 16], [0u8; 16]);
    saddr[..4].copy_from_slice(&svc_ip(from));
    daddr[..4].copy_from_slice(&svc_ip(to));
    bytes_of(&DropEvent {
        hdr,
        location: UDP_RCV + 0x10 + u64::from(to),
        saddr,
        daddr,
        reason: 3,
        sport: 40000,
        dport: 9000,
        eth_proto: 0x0800,
        l4proto: 17,
        ip_version: 4,
        ..Default::default()
    })
}

/// `c`'s MAC learnt on the overlay bridge through its veth or the vxlan.
fn svc_fdb(ts_ns: u64, c: u32, vxlan: bool) -> Vec<u8> {
    let (ifindex, port) = if vxlan {
        (3, "vxlan0".to_string())
    } else {
        (100 + c, format!("veth{c}"))
    };
    let mut hdr = EventHeader {
        ts_ns,
        kind: kind::FDB_UPDATE,
        netns: SVC_OVERLAY_NS,
        ifindex,
        ..Default::default()
    };
    hdr.ifname[..port.len()].copy_from_slice(port.as_bytes());
    let mut e = tracer_ebpf::FdbEvent {
        hdr,
        br_ifindex: 2,
        mac: svc_mac(c),
        ..Default::default()
    };
    e.br_name[..3].copy_from_slice(b"br0");
    bytes_of(&e)
}

/// Identity, the FDB seed, then drops between the containers (also from
/// the stopped one) and MACs moving between veths and the vxlan.
fn svc_inputs() -> Vec<Input> {
    let mut inputs = svc_identity();
    inputs.push(seed());
    for i in 0..400u64 {
        let ts = SVC_T0 + 2_000_000 + i * 1_000_000;
        let c = (i / 4 % u64::from(SVCS)) as u32;
        inputs.push(Input::Kernel(match i % 4 {
            0 | 1 => svc_drop(ts, c, (c + 1) % SVCS),
            2 => svc_fdb(ts, c, i % 8 == 2),
            _ => svc_drop(ts, 3, c),
        }));
        if i % 100 == 99 {
            inputs.push(Input::Tick { boot_ns: ts + 1 });
        }
    }
    inputs.push(Input::Finish {
        boot_ns: SVC_T0 + 500_000_000,
    });
    inputs
}

/// Records `inputs` as the live run does (process, record the symbols it
/// resolved, the input, then rotate with the pipeline's state when due).
/// Returns what the live run printed and where in it each part starts.
fn record_live(path: &Path, inputs: &[Input], detect: bool) -> (Vec<u8>, Vec<usize>) {
    let kallsyms = format!("{UDP_RCV:016x} T __udp4_lib_rcv\n");
    let mut live = Pipeline::new(
        Tables {
            drop_reasons: reasons(),
            locations: Locations::live(kallsyms::Symbols::parse(&kallsyms).unwrap()),
            boot_to_wall_ns: header().boot_to_wall_ns,
            reason_cache: Default::default(),
        },
        Filter::default(),
        detect.then(Default::default),
    );
    let mut w = CaptureWriter::create(path, header(), &reasons(), Some(12 << 10)).unwrap();
    let (mut out, mut starts) = (Vec::new(), vec![0]);
    for input in inputs {
        ndjson(&mut live, input, &mut out);
        w.write_symbols(&live.take_new_symbols()).unwrap();
        w.write_input(input).unwrap();
        if matches!(input, Input::Identity(_)) {
            assert_eq!(w.path(), path, "identity changes only in the first part");
        }
        if w.rotation_due() {
            w.rotate(&live.state_snapshot()).unwrap();
            starts.push(out.len());
        }
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.parts.len(), starts.len());
    (out, starts)
}

fn replay_to_string(path: &Path, detect: bool) -> String {
    let mut out = Vec::new();
    crate::replay::replay(
        &crate::replay::ReplayOptions {
            path: path.to_path_buf(),
            speed: 0.0,
            filter: Filter::default(),
            detect: detect.then(Default::default),
            text: None,
            pcapng: None,
        },
        &mut out,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

/// A rotated part replayed on its own names containers, namespaces,
/// networks and bridge ports as the live run did (the identity was
/// restated at the rotation) and prints nothing the live run did not; the
/// whole capture still replays byte for byte.
#[test]
fn a_rotated_part_alone_replays_with_identity() {
    let dir = TempDir::new("rotate-identity");
    let inputs = svc_inputs();
    for detect in [true, false] {
        let path = dir.file(if detect { "detect" } else { "plain" });
        let (live, starts) = record_live(&path, &inputs, detect);
        assert!(starts.len() >= 4, "{starts:?}");
        let live = String::from_utf8(live).unwrap();
        assert_eq!(live.matches("enrichment_status").count(), 2);

        // The whole capture: what the live run printed (restated state skipped).
        assert_eq!(replay_to_string(&path, detect), live);

        // The last part alone.
        let last = part_path(&path, starts.len() as u32 - 1);
        let alone = replay_to_string(&last, detect);
        let tail = &live[*starts.last().unwrap()..];
        assert!(!alone.is_empty() && !tail.is_empty());
        for needle in [
            "\"name\":\"svc0\"",
            "\"name\":\"svc3\"", // stopped, within its grace period
            "\"network\":\"backend\"",
            "\"name\":\"1-svcbackend\"",
            "\"name\":\"000000abc000\"",
            "\"port_peer\":{\"kind\":\"container\"",
            "\"kind\":\"vxlan\"",
        ] {
            assert!(tail.contains(needle), "{needle} not in the live tail");
            assert!(alone.contains(needle), "{needle} not in the part alone");
        }
        assert!(
            !alone.contains("enrichment_status"),
            "status not re-printed"
        );
        if !detect {
            // Without detector state to rebuild: exactly the live lines.
            assert_eq!(alone, tail);
        } else {
            // Events (not alerts, whose history started in earlier parts)
            // are the live ones.
            let events = |s: &str| -> Vec<String> {
                s.lines()
                    .filter(|l| l.contains("\"kind\":\"event\""))
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(events(&alone), events(tail));
        }
    }
}

#[test]
fn a_state_larger_than_the_rotation_size_does_not_rotate_every_record() {
    let dir = TempDir::new("bigstate");
    let path = dir.file("c");
    let big = Input::FdbSeed(
        (0..300u32)
            .map(|i| SeedEntry {
                netns: 4026531840,
                bridge: 3,
                port: 5 + i,
                port_name: format!("veth{i:x}"),
                mac: [2, 0, 0, 0, (i >> 8) as u8, i as u8],
                vlan: 0,
            })
            .collect(),
    );
    let mut w = CaptureWriter::create(&path, header(), &reasons(), Some(2000)).unwrap();
    w.set_manual_rotation();
    let mut parts = 0;
    for i in 0..100u64 {
        w.write_input(&Input::Kernel(drop_record(i, UDP_RCV, 2)))
            .unwrap();
        if w.rotation_due() {
            w.rotate(std::slice::from_ref(&big)).unwrap();
            parts += 1;
        }
    }
    let stats = w.finish().unwrap();
    // ~100 records of ~110 bytes in 2000-byte parts: about 6 rotations,
    // however large the restated state (here ~20 KB) is.
    assert!((3..=10).contains(&parts), "{parts} rotations");
    assert_eq!(stats.parts.len(), parts + 1);
    // And every part replays on its own.
    for p in &stats.parts {
        let mut r = CaptureReader::open(p).unwrap();
        read_all(&mut r).unwrap();
    }
}

#[test]
fn a_writer_with_manual_rotation_never_rotates_by_itself() {
    let dir = TempDir::new("manual");
    let path = dir.file("c");
    let mut w = CaptureWriter::create(&path, header(), &reasons(), Some(1000)).unwrap();
    w.set_manual_rotation();
    for i in 0..50u64 {
        w.write_symbols(&[(UDP_RCV + i, format!("__udp4_lib_rcv+{i:#x}"))])
            .unwrap();
        w.write_input(&Input::Kernel(drop_record(i, UDP_RCV + i, 2)))
            .unwrap();
    }
    assert!(w.rotation_due());
    let stats = w.finish().unwrap();
    assert_eq!(stats.parts.len(), 1, "{stats:?}");
}
