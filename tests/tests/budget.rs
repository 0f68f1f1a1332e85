//! Per-kind budgets: a flood of one kind in one namespace cannot push
//! another namespace's evidence out of the ring, and what it costs is
//! counted exactly.

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;
use tracer_tests::{ecs_mac, require_root, send_frames, with_action, BridgeTopo, Tracer};

/// Frames with distinct source MACs sent through the flooded bridge.
const FLOOD: u32 = 200_000;
/// `--budget br_fdb_update=` for the run: records per second per namespace per CPU.
const BUDGET: u32 = 200;

/// Sum of `tracer.held_back_by_probe.<probe>.<netns>` over loss reports.
fn held_back(lines: &[Value], probe: &str, netns: u64) -> u64 {
    with_action(lines, "loss_report")
        .iter()
        .filter_map(|v| v["tracer"]["held_back_by_probe"][probe][netns.to_string()].as_u64())
        .sum()
}

/// A random-source-MAC flood (a container with CAP_NET_RAW) through one
/// bridge while a MAC flaps between two ports of another bridge: every
/// move of the flap and its fdb_flap alert are reported; the flood's
/// records beyond its budget are held back and reported for its
/// namespace, and learned + held back + lost = the flood's MACs.
#[test]
fn mac_flood_in_one_namespace_does_not_hide_a_flap_in_another() {
    require_root();
    let flood = BridgeTopo::new();
    let flap = BridgeTopo::new();
    let (flood_ns, flap_ns) = (flood.br_ns.inode(), flap.br_ns.inode());
    let budget = format!("br_fdb_update={BUDGET}");
    let t = Tracer::start(&[
        "--netns",
        &flood_ns.to_string(),
        "--netns",
        &flap_ns.to_string(),
        "--budget",
        &budget,
        "--loss-interval",
        "200ms",
        // FDB records only: the flood's broadcasts are also dropped in the
        // other namespaces, and drops are not what this test is about.
        "--probes",
        "fdb",
    ]);

    // The flood: FLOOD distinct locally administered unicast MACs, from A.
    let prefix = [0x02, 0xfe, flood.tag.len() as u8];
    let srcs: Vec<[u8; 6]> = (0..FLOOD)
        .map(|i| {
            let b = i.to_be_bytes();
            [prefix[0], prefix[1], prefix[2], b[1], b[2], b[3]]
        })
        .collect();
    let bcast = [0xff; 6];
    let mac = flap.fresh_mac();
    let mac_bytes: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    let m: [u8; 6] = mac_bytes.try_into().expect("6 bytes");
    std::thread::scope(|s| {
        let flooder = s.spawn(|| send_frames(&flood.a, &flood.dev_a, bcast, srcs));
        // Meanwhile, the flap: one MAC speaks from A, then B, then A ... 8 times.
        for i in 0..8 {
            let (ns, dev) = if i % 2 == 0 {
                (&flap.a, &flap.dev_a)
            } else {
                (&flap.b, &flap.dev_b)
            };
            assert_eq!(send_frames(ns, dev, bcast, vec![m]), 1);
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(flooder.join().expect("flood thread"), FLOOD as u64);
    });

    let ecs = ecs_mac(&mac);
    let alert = t.wait_for(Duration::from_secs(15), |v| {
        v["event"]["action"] == "fdb_flap" && v["tracer"]["alert"]["mac"] == ecs.as_str()
    });
    // Wait until the flood's held-back records have been reported.
    std::thread::sleep(Duration::from_secs(2));
    let (lines, _) = t.stop();

    // The flap is reported in full: 7 moves, and its alert.
    let moves: Vec<&Value> = with_action(&lines, "fdb_move")
        .into_iter()
        .filter(|v| v["source"]["mac"] == ecs.as_str())
        .collect();
    assert_eq!(moves.len(), 7, "every move of the flap: {moves:?}");
    for v in &moves {
        assert_eq!(v["tracer"]["netns"]["inode"], flap_ns);
    }
    let alert = alert.expect("fdb_flap alert for the flapping MAC during the flood");
    assert_eq!(alert["tracer"]["netns"]["inode"], flap_ns);
    assert_eq!(held_back(&lines, "br_fdb_update", flap_ns), 0);

    // The flood spent its own budget: held back and reported for its namespace.
    let held = held_back(&lines, "br_fdb_update", flood_ns);
    assert!(held > 0, "the flood's excess is held back and reported");
    let learned = with_action(&lines, "fdb_learn")
        .into_iter()
        .filter(|v| {
            v["tracer"]["netns"]["inode"] == flood_ns
                && v["source"]["mac"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&format!("02-FE-{:02X}-", prefix[2])))
        })
        .count() as u64;
    assert!(
        learned < FLOOD as u64 / 2,
        "the budget let {learned} of {FLOOD} learns through"
    );
    // Exact accounting. The ring's losses are host-wide (other probes,
    // other namespaces), and a handful of the namespace's own records
    // (the veths' and bridge's addresses) share its budget: at most 8.
    let lost: u64 = with_action(&lines, "loss_report")
        .iter()
        .filter_map(|v| v["tracer"]["lost_by_probe"]["br_fdb_update"].as_u64())
        .sum();
    eprintln!("learned {learned}, held back {held}, lost {lost} of {FLOOD} MACs");
    if let Some(v) = with_action(&lines, "loss_report")
        .into_iter()
        .find(|v| v["tracer"]["held_back"].as_u64().is_some())
    {
        eprintln!("{v}");
    }
    assert!(
        learned + held <= FLOOD as u64 + 8 && learned + held + lost >= FLOOD as u64,
        "learned {learned} + held back {held} + lost {lost} vs {FLOOD} MACs"
    );
    let per_ns: BTreeMap<String, u64> = with_action(&lines, "loss_report")
        .iter()
        .filter_map(|v| v["tracer"]["held_back_by_probe"]["br_fdb_update"].as_object())
        .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))))
        .fold(BTreeMap::new(), |mut acc, (k, v)| {
            *acc.entry(k).or_default() += v;
            acc
        });
    assert!(per_ns.contains_key(&flood_ns.to_string()), "{per_ns:?}");
}
