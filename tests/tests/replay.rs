//! Record and replay: a capture recorded during real faults replays,
//! unprivileged, to exactly the lines the live run printed.

use std::{os::unix::fs::PermissionsExt, process::Command, time::Duration};

use tracer_tests::{require_root, send_udp, tracer_bin, BridgeTopo, Tracer};

fn tmp_capture(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-capture-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.capture")
}

#[test]
fn live_run_replays_byte_identical_without_privileges() {
    require_root();
    let topo = BridgeTopo::new();
    // The vxlan proxy fault, so alerts and incidents are part of the golden output.
    let vx = format!("vx{}", topo.tag);
    topo.add_proxy_vxlan(&vx, 4244);

    let capture = tmp_capture("golden");
    let cap = capture.to_str().unwrap().to_string();
    let t = Tracer::start(&["--record", &cap]);
    for _ in 0..4 {
        topo.arp_b_for_a();
    }
    send_udp(&topo.a, &topo.ip_a, &topo.ip_b, 9, 50, Duration::ZERO);
    t.wait_for(Duration::from_secs(10), |v| {
        v["event"]["action"] == "fdb_flap"
    })
    .expect("the fault was seen live");
    let (_, raw) = t.stop();
    let live: String = raw.iter().map(|l| format!("{l}\n")).collect();

    let mode = std::fs::metadata(&capture).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "capture must be created 0600");

    // Replay as an unprivileged user, from a copy it may read.
    let copy = capture.with_file_name("copy.capture");
    std::fs::copy(&capture, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        capture.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(tracer_bin())
        .arg("replay")
        .arg(&copy)
        .output()
        .expect("run tracer replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        live.lines().count() > 20,
        "live output too small to be a meaningful golden test"
    );
    assert!(
        live.contains("\"action\":\"incident\""),
        "no incident in the golden output"
    );
    if replayed != live {
        let first = live
            .lines()
            .zip(replayed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(live.lines().count().min(replayed.lines().count()));
        panic!(
            "replay differs at line {first}:\n live:   {:?}\n replay: {:?}\n({} live lines, {} replayed)",
            live.lines().nth(first),
            replayed.lines().nth(first),
            live.lines().count(),
            replayed.lines().count()
        );
    }
    let _ = std::fs::remove_dir_all(capture.parent().unwrap());
}

#[test]
fn capture_cut_short_replays_complete_records_and_warns() {
    require_root();
    let topo = BridgeTopo::new();
    let capture = tmp_capture("cut");
    let cap = capture.to_str().unwrap().to_string();
    let t = Tracer::start(&["--record", &cap]);
    topo.ping_a_to_b();
    std::thread::sleep(Duration::from_millis(1500));
    drop(t); // SIGKILL: the writer never finishes the capture
    let len = std::fs::metadata(&capture).unwrap().len();
    assert!(len > 0, "nothing was recorded before the kill");
    // Cut inside the last record as well, as a dying disk would.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&capture)
        .unwrap();
    f.set_len(len - 3).unwrap();
    let out = Command::new(tracer_bin())
        .arg("replay")
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("byte"),
        "no truncation warning: {err}"
    );
    let lines = String::from_utf8_lossy(&out.stdout);
    assert!(
        lines.contains("probe_status"),
        "complete records were not replayed"
    );
    let _ = std::fs::remove_dir_all(capture.parent().unwrap());
}

#[test]
fn garbage_is_a_clear_error_not_a_panic() {
    let dir = tmp_capture("garbage");
    let bad = dir.with_file_name("bad.capture");
    std::fs::copy("/bin/sh", &bad).unwrap();
    let out = Command::new(tracer_bin())
        .arg("replay")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a tracer capture"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let missing = Command::new(tracer_bin())
        .arg("replay")
        .arg("/nonexistent/x")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}
