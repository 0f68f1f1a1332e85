//! `--output` sinks against real readers: a TCP listener that goes away and
//! comes back, and a file renamed under the tracer (logrotate) then SIGHUP.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{require_root, send_udp, BridgeTopo, Tracer};

/// `n` UDP datagrams from A to a closed port of B: `n` skb_drop events
/// (NO_SOCKET); returns A's source port, which names them.
fn udp_drops(topo: &BridgeTopo, n: usize) -> u16 {
    send_udp(&topo.a, &topo.ip_a, &topo.ip_b, 9, n as u64, Duration::ZERO)
}

fn start(topo: &BridgeTopo, outputs: &[String]) -> Tracer {
    let mut args = vec![
        "--netns".to_string(),
        topo.b.inode().to_string(),
        "--no-detect".into(),
        "--loss-interval".into(),
        "200ms".into(),
        "-o".into(),
        "stdout".into(),
    ];
    for o in outputs {
        args.push("-o".into());
        args.push(o.clone());
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Tracer::start(&a)
}

fn drops_from(lines: &[Value], sport: u16) -> usize {
    lines
        .iter()
        .filter(|v| v["event"]["action"] == "skb_drop" && v["source"]["port"] == sport)
        .count()
}

/// Accepts one connection and collects its lines until it closes.
fn collect(l: &TcpListener) -> (std::net::TcpStream, Arc<Mutex<Vec<Value>>>) {
    l.set_nonblocking(false).unwrap();
    let (s, _) = l.accept().expect("tracer connects");
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let r = s.try_clone().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).expect("NDJSON on the socket");
            g.lock().unwrap().push(v);
        }
    });
    (s, got)
}

fn wait(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tcp_output_reconnects_counts_its_loss_and_never_blocks_stdout() {
    require_root();
    let topo = BridgeTopo::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let name = format!("tcp://{addr}");
    // A small queue, so that the outage below overflows it.
    let t = start(&topo, &[format!("{name}?queue=4K")]);
    let (conn, got) = collect(&l);
    let sport = udp_drops(&topo, 3);
    wait(Duration::from_secs(10), "drops over TCP", || {
        drops_from(&got.lock().unwrap(), sport) == 3
    });
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .any(|v| v["event"]["action"] == "probe_status"),
        "the socket gets every line, from the start"
    );

    // The reader goes away: connection and listener closed.
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    drop(conn);
    drop(l);
    std::thread::sleep(Duration::from_millis(300));
    let sport = udp_drops(&topo, 60);
    // stdout keeps flowing, and the loss is counted for that output only.
    wait(Duration::from_secs(10), "drops on stdout", || {
        drops_from(&t.lines(), sport) == 60
    });
    let report = t
        .wait_for(Duration::from_secs(10), |v| {
            v["event"]["action"] == "loss_report" && v["tracer"]["sink_dropped"][&name].is_u64()
        })
        .unwrap_or_else(|| panic!("no loss_report for {name}; stderr: {}", t.stderr()));
    assert!(
        report["tracer"]["sink_dropped"].get("stdout").is_none(),
        "{report}"
    );
    let lost = report["tracer"]["sink_dropped"][&name].as_u64().unwrap();
    assert!(lost > 0);

    // It comes back on the same port: tracer reconnects (backoff ≤ 5 s).
    let l = TcpListener::bind(addr).expect("the port again");
    let (_conn, got) = collect(&l);
    let sport = udp_drops(&topo, 3);
    wait(
        Duration::from_secs(15),
        "drops over TCP after reconnecting",
        || drops_from(&got.lock().unwrap(), sport) == 3,
    );
    let stderr = t.stderr();
    let (lines, _) = t.stop();
    assert!(stderr.contains(&format!("{name}: reconnected")), "{stderr}");
    // The final report names the output; stdout itself lost nothing.
    let total: u64 = lines
        .iter()
        .filter(|v| v["event"]["action"] == "loss_report")
        .filter_map(|v| v["tracer"]["sink_dropped"][&name].as_u64())
        .sum();
    assert!(total >= lost, "{total} < {lost}");
    assert!(lines
        .iter()
        .all(|v| v["tracer"]["sink_dropped"].get("stdout").is_none()));
}

fn file_drops(path: &Path, sport: u16) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"]["action"] == "skb_drop" && v["source"]["port"] == sport)
        .count()
}

#[test]
fn file_output_is_reopened_after_logrotate_rename_and_sighup() {
    require_root();
    let topo = BridgeTopo::new();
    let dir = std::env::temp_dir().join(format!("tracer-sinks-{}", topo.tag));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tracer.ndjson");
    let t = start(&topo, &[format!("file:{}", path.display())]);
    let before = udp_drops(&topo, 3);
    wait(Duration::from_secs(10), "drops in the file", || {
        file_drops(&path, before) == 3
    });
    // logrotate's default: rename, then `postrotate kill -HUP`.
    let rotated = dir.join("tracer.ndjson.1");
    std::fs::rename(&path, &rotated).unwrap();
    let pid = nix::unistd::Pid::from_raw(t.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = udp_drops(&topo, 3);
    wait(Duration::from_secs(10), "drops in the new file", || {
        file_drops(&path, after) == 3
    });
    t.stop();
    assert_eq!(file_drops(&rotated, before), 3);
    assert_eq!(
        file_drops(&rotated, after),
        0,
        "nothing new in the renamed file"
    );
    assert_eq!(file_drops(&path, before), 0);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "created 0640 at most: {mode:o}");
    let _ = std::fs::remove_dir_all(&dir);
}
