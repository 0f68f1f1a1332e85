//! `--metrics`: a real Prometheus server (Debian's `prometheus`, run as a
//! plain process) scrapes tracer; its HTTP API must show the drops tracer
//! saw, with the right reason label.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{require_root, send_udp, BridgeTopo, Tracer};

/// A loopback port free right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` on 127.0.0.1:`port`; the body.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    // "HTTP/1.0 200 OK" from Prometheus (it answers in the request's version).
    let status = head.lines().next()?;
    (status.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// The Prometheus server, killed on drop.
struct Prometheus(Child, std::path::PathBuf);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[test]
fn prometheus_scrapes_drops_with_their_reason() {
    require_root();
    let topo = BridgeTopo::new();
    let b_inode = topo.b.inode();
    let metrics_port = free_port();
    let t = Tracer::start(&[
        "--netns",
        &b_inode.to_string(),
        "--no-detect",
        "--metrics",
        &metrics_port.to_string(),
    ]);
    assert!(
        t.stderr().contains(&format!(
            "metrics at http://127.0.0.1:{metrics_port}/metrics"
        )),
        "{}",
        t.stderr()
    );
    // UDP to a closed port of B: NO_SOCKET drops.
    send_udp(&topo.a, &topo.ip_a, &topo.ip_b, 9, 5, Duration::ZERO);

    let dir = std::env::temp_dir().join(format!("tracer-prom-{}", topo.tag));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tracer\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let web_port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (cargo xtask test installs Debian's package)");
    let _prom = Prometheus(child, dir);

    // Ask Prometheus (not tracer) until the scraped series is there.
    let query = "/api/v1/query?query=tracer_drops_total%7Breason%3D%22NO_SOCKET%22%7D";
    let end = Instant::now() + Duration::from_secs(60);
    let series = loop {
        let found = get(web_port, query)
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| {
                v["data"]["result"].as_array().and_then(|r| {
                    r.iter()
                        .find(|s| {
                            let ns = s["metric"]["netns"].as_str().unwrap_or_default();
                            ns == topo.b.name || ns == b_inode.to_string()
                        })
                        .cloned()
                })
            });
        if let Some(s) = found {
            let n: f64 = s["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0);
            if n >= 5.0 {
                break s;
            }
        }
        assert!(
            Instant::now() < end,
            "Prometheus never showed the drops; tracer's own /metrics: {:?}",
            get(metrics_port, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(series["metric"]["reason"], "NO_SOCKET");
    assert_eq!(series["metric"]["job"], "tracer");
    // Probe status came through too.
    let up = get(
        web_port,
        "/api/v1/query?query=tracer_probe_status%7Bprobe%3D%22kfree_skb%22%2Cstatus%3D%22attached%22%7D",
    )
    .expect("query");
    let v: Value = serde_json::from_str(&up).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
    t.stop();
}
