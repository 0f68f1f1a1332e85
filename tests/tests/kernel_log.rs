//! `tracer run --kernel-log`: the eBPF programs' own diagnostics (aya-log)
//! reach stderr with the name of the probe that logged them.

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{require_root, with_action, BridgeTopo, Tracer};

/// Drop records the kernel could not put in the ring, from every
/// `loss_report` so far (each says what was lost since the one before).
fn kfree_skb_lost(lines: &[Value]) -> u64 {
    with_action(lines, "loss_report")
        .iter()
        .map(|v| {
            v["tracer"]["lost_by_probe"]["kfree_skb"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

/// The smallest ring (4K: ~40 drop records) and a UDP flood to a closed
/// port: drop records are lost to the full ring, as `loss_report` counts,
/// and the drop program says so on stderr, with its name, from the kernel:
/// `tracer: kernel: kfree_skb: ring buffer full: record lost (N lost on
/// this CPU since start)`, for the 1st, 2nd, 4th ... loss on each CPU.
#[test]
fn kernel_log_reports_drop_records_lost_to_a_full_ring() {
    require_root();
    let topo = BridgeTopo::new();
    let b_inode = topo.b.inode().to_string();
    let t = Tracer::start(&[
        "--probes",
        "drop",
        "--netns",
        &b_inode,
        "--ring-buffer-size",
        "4K",
        "--kernel-log",
        "--loss-interval",
        "200ms",
    ]);
    let end = Instant::now() + Duration::from_secs(60);
    while kfree_skb_lost(&t.lines()) == 0 {
        assert!(
            Instant::now() < end,
            "no drop record lost to a 4K ring in 60 s of flooding"
        );
        let (ip_a, ip_b) = (topo.ip_a.clone(), topo.ip_b.clone());
        topo.a.run(move || {
            let s = UdpSocket::bind((ip_a.as_str(), 0)).unwrap();
            for i in 0u64..20_000 {
                let _ = s.send_to(&i.to_le_bytes(), (ip_b.as_str(), 9));
            }
        });
        std::thread::sleep(Duration::from_millis(500));
    }
    let prefix = "tracer: kernel: kfree_skb: ring buffer full: record lost (";
    let messages = |stderr: &str| -> Vec<u64> {
        stderr
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no count in {rest:?}"))
            })
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(10);
    while messages(&t.stderr()).is_empty() {
        assert!(
            Instant::now() < end,
            "records were lost but the kernel logged nothing; stderr:\n{}",
            t.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = t.stderr();
    let (lines, _) = t.stop();
    let lost = kfree_skb_lost(&lines);
    let counts = messages(&stderr);
    // Every CPU's first loss is logged as 1, later ones at powers of two;
    // none can claim more than was lost in all.
    assert!(counts.contains(&1), "no first loss logged: {counts:?}");
    for n in &counts {
        assert!(
            n.is_power_of_two(),
            "logged count {n} is not a power of two"
        );
        assert!(
            *n <= lost,
            "kernel logged {n} losses on one CPU, loss_report counted {lost} in all"
        );
    }
}
