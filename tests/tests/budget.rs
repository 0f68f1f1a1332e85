//! Per-kind budgets: a flood of one kind in one namespace cannot push
//! another namespace's evidence out of the ring, and what it costs is
//! counted exactly.

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;
use tracer_tests::{
    ecs_mac, require_root, send_frames, send_udp, tracer_bin, with_action, BridgeTopo, Tracer,
};

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

/// `tracer.held_back_by_probe.kfree_skb` budget for the drop-storm test:
/// drops per second per place (device, reason, location) per CPU.
const DROP_BUDGET: u64 = 100;

/// Issue 13's kernel cost: a UDP flood to a closed port in B is a storm of
/// drops at one place (B's device, NO_SOCKET, the same location). Beyond
/// the place's budget the kernel only counts them; the counts come back in
/// the loss reports and in B's drop_summary, so lines + summaries = the
/// kernel's own NoPorts count. Meanwhile a trickle of drops at another
/// place (A's closed port) arrives drop by drop, nothing held back. The
/// run's capture replays to the same lines.
#[test]
fn drop_storm_at_one_place_is_counted_in_the_kernel_and_others_still_arrive() {
    require_root();
    let topo = BridgeTopo::new();
    let (a_inode, b_inode) = (topo.a.inode(), topo.b.inode());
    let (a, b) = (a_inode.to_string(), b_inode.to_string());
    let dir = std::env::temp_dir().join(format!("tracer-budget-{}", topo.tag));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let capture = dir.join("storm.capture");
    let cap = capture.to_str().expect("utf-8 path");
    // What the pipeline does (the same live and in replay).
    let view = [
        "--netns",
        &a,
        "--netns",
        &b,
        // User space prints every drop it gets: what is held back is the
        // kernel's doing alone.
        "--drop-lines-per-sec",
        "1000000",
        "--drop-summary-interval",
        "1s",
    ];
    let budget = format!("kfree_skb={DROP_BUDGET}");
    let mut args = view.to_vec();
    args.extend([
        "--budget",
        &budget,
        "--probes",
        "drop",
        "--loss-interval",
        "200ms",
        "--record",
        cap,
    ]);
    let t = Tracer::start(&args);
    let (b_before, a_before) = (topo.b.udp_noports(), topo.a.udp_noports());
    const FLOOD: u64 = 30_000;
    const TRICKLE: u64 = 10;
    std::thread::scope(|s| {
        let flood = s.spawn(|| send_udp(&topo.a, &topo.ip_a, &topo.ip_b, 9, FLOOD, Duration::ZERO));
        send_udp(
            &topo.b,
            &topo.ip_b,
            &topo.ip_a,
            10,
            TRICKLE,
            Duration::from_millis(50),
        );
        flood.join().expect("flood thread");
    });
    // Let the final summaries and loss reports come.
    std::thread::sleep(Duration::from_millis(1500));
    let (b_kernel, a_kernel) = (
        topo.b.udp_noports() - b_before,
        topo.a.udp_noports() - a_before,
    );
    let (lines, raw) = t.stop();
    assert!(
        b_kernel >= FLOOD && a_kernel >= TRICKLE,
        "{b_kernel} {a_kernel}"
    );
    let replay = std::process::Command::new(tracer_bin())
        .arg("replay")
        .arg(&capture)
        .args(view)
        .output()
        .expect("tracer replay");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let live: String = raw.iter().map(|l| format!("{l}\n")).collect();
    assert!(
        String::from_utf8_lossy(&replay.stdout) == live,
        "the capture replays to the live lines (held-back drops included)"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let ours = |v: &&Value, ns: u64| {
        v["tracer"]["netns"]["inode"] == ns && v["tracer"]["reason"] == "NO_SOCKET"
    };
    let printed = |ns: u64| {
        with_action(&lines, "skb_drop")
            .into_iter()
            .filter(|v| ours(v, ns))
            .count() as u64
    };
    let summarised = |ns: u64| -> u64 {
        with_action(&lines, "drop_summary")
            .into_iter()
            .filter(|v| ours(v, ns))
            .map(|v| v["tracer"]["count"].as_u64().unwrap_or(0))
            .sum()
    };
    let lost: u64 = with_action(&lines, "loss_report")
        .iter()
        .filter_map(|v| v["tracer"]["lost_by_probe"]["kfree_skb"].as_u64())
        .sum();
    let held_b = held_back(&lines, "kfree_skb", b_inode);
    let (printed_b, summarised_b) = (printed(b_inode), summarised(b_inode));
    eprintln!(
        "B: kernel {b_kernel}, printed {printed_b}, summarised {summarised_b} (held back {held_b}), lost {lost}"
    );
    // The storm was held back in the kernel, for B's namespace.
    assert!(held_b > FLOOD / 2, "held back {held_b} of {FLOOD}");
    assert!(
        printed_b < FLOOD / 4,
        "{printed_b} records of the storm sent"
    );
    // Held-back drops count in B's summaries: nothing goes unaccounted.
    assert!(
        summarised_b >= held_b,
        "{summarised_b} summarised < {held_b} held back"
    );
    assert!(
        printed_b + summarised_b <= b_kernel && printed_b + summarised_b + lost >= b_kernel,
        "accounting: {printed_b} lines + {summarised_b} summarised + {lost} lost vs kernel {b_kernel}"
    );
    // The other place kept its budget: every one of its drops is a line.
    assert_eq!(held_back(&lines, "kfree_skb", a_inode), 0);
    assert_eq!(printed(a_inode), a_kernel, "A's drops, one line each");
}
