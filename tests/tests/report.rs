//! `tracer report` rendered by a real browser, and several hosts in one
//! replay: two recorders, each scoped to its own namespaces, during one
//! fault that spans them.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{require_root, send_udp, tracer_bin, unique_tag, BridgeTopo, Tracer};

fn tmp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-report-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tracer(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = Command::new(tracer_bin())
        .args(args)
        .output()
        .expect("run tracer");
    assert!(
        out.status.success(),
        "tracer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What headless Chromium made of a page: its DOM after the scripts ran,
/// and how many pixels of the screenshot are coloured (chart bars, bands,
/// FDB segments: the text is grey).
struct Rendered {
    dom: String,
    coloured: usize,
    pixels: usize,
}

fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium (cargo xtask setup installs it)")
}

fn render(page: &Path) -> Rendered {
    let dom = chromium(&["--dump-dom"], page);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let png_path = page.with_extension("png");
    let shot = chromium(
        &[
            "--screenshot=".to_string() + png_path.to_str().unwrap(),
            "--window-size=1400,2000".into(),
        ]
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        page,
    );
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).expect("screenshot written"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let bpp = info.color_type.samples();
    assert!(bpp >= 3, "{:?}", info.color_type);
    let (w, h) = (info.width as usize, info.height as usize);
    assert_eq!((w, h), (1400, 2000));
    let mut coloured = 0;
    for px in buf[..info.buffer_size()].chunks(bpp) {
        let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
        if r.max(g).max(b) - r.min(g).min(b) > 60 {
            coloured += 1;
        }
    }
    Rendered {
        dom: String::from_utf8_lossy(&dom.stdout).into_owned(),
        coloured,
        pixels: w * h,
    }
}

/// The page ran its script to the end (a script error leaves `data-ok`
/// unset) and drew its charts.
fn assert_drawn(r: &Rendered) {
    let body = r.dom.find("<body").map(|i| &r.dom[i..]).unwrap_or("");
    let tag = &body[..body.find('>').unwrap_or(0)];
    assert!(
        tag.contains("data-ok=\"1\""),
        "the page script did not finish: {tag}"
    );
    assert!(!tag.contains("data-charts=\"0\""), "no chart: {tag}");
    // Bars, FDB segments and the incident paragraph's border are drawn in
    // colour (text and grid are grey); a blank or unstyled page has none.
    assert!(
        r.coloured > 3000,
        "screenshot nearly blank: {} coloured pixels of {}",
        r.coloured,
        r.pixels
    );
}

#[test]
fn report_of_a_synthetic_capture_draws_in_chromium() {
    let dir = tmp_dir("synth");
    let cap = dir.join("synth.capture");
    let html = dir.join("outage.html");
    tracer(&[
        "synth-capture".as_ref(),
        "--events".as_ref(),
        "50000".as_ref(),
        "--containers".as_ref(),
        "5".as_ref(),
        "--peers".as_ref(),
        "2".as_ref(),
        "--output".as_ref(),
        cap.as_os_str(),
    ]);
    tracer(&[
        "report".as_ref(),
        cap.as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]);
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        !text.contains("http://") && !text.contains("https://"),
        "the page fetches nothing"
    );
    let r = render(&html);
    assert_drawn(&r);
    // The incident sentences the replay printed are on the page.
    let out = tracer(&[
        "replay".as_ref(),
        cap.as_os_str(),
        "--action".as_ref(),
        "incident".as_ref(),
    ]);
    let first: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let id = first["tracer"]["incident"]["id"]
        .as_str()
        .expect("an incident")
        .to_string();
    assert!(
        r.dom.contains(&format!("<b>{id}</b>")),
        "incident {id} not in the summary"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Host 1: a bridge whose vxlan port answers ARP for a local container
/// (seed 001's proxy-ARP FDB flap): that container's MAC flaps between the
/// vxlan port and its veth. Host 2: a container whose TCP connection to the
/// flapping container's IP gets no answer and retransmits. Each host's
/// recorder is scoped (`--netns`) to its own namespaces and named by its
/// own UTS namespace; the merged replay joins the two into one incident.
#[test]
fn two_hosts_one_incident() {
    require_root();
    let h1 = BridgeTopo::new();
    let h2 = BridgeTopo::new();
    let (tag, _) = unique_tag();
    let (name1, name2) = (format!("node-a{tag}"), format!("node-b{tag}"));
    let dir = tmp_dir("hosts");
    let (cap1, cap2) = (dir.join("node-a.capture"), dir.join("node-b.capture"));

    // Host 1's fault.
    let vx = format!("vx{}", h1.tag);
    h1.add_proxy_vxlan(&vx, 4245);
    let mac_a = h1.a.mac(&h1.dev_a);

    // Host 2 reaches host 1's container IP (here served by its B, as the
    // overlay would deliver it); then the answers stop.
    let target = h1.ip_a.clone();
    h2.b.ip(&["addr", "add", &format!("{target}/32"), "dev", &h2.dev_b]);
    h2.a.ip(&["route", "add", &format!("{target}/32"), "dev", &h2.dev_a]);
    let t = target.clone();
    let listener =
        h2.b.run(move || std::net::TcpListener::bind((t.as_str(), 0)).expect("listen"));
    let port = listener.local_addr().unwrap().port();
    let t = format!("{target}:{port}");
    let mut client =
        h2.a.run(move || std::net::TcpStream::connect(t).expect("connect"));
    let (server, _) = listener.accept().expect("accept");

    let scope = |topo: &BridgeTopo| -> Vec<String> {
        [&topo.br_ns, &topo.a, &topo.b]
            .iter()
            .flat_map(|ns| ["--netns".to_string(), ns.inode().to_string()])
            .collect()
    };
    let args = |topo: &BridgeTopo, cap: &Path| -> Vec<String> {
        let mut a = scope(topo);
        a.extend([
            "--no-docker".into(),
            "--record".into(),
            cap.display().to_string(),
        ]);
        a
    };
    let a1 = args(&h1, &cap1);
    let a2 = args(&h2, &cap2);
    let r1 = Tracer::start_as_host(&name1, &a1.iter().map(String::as_str).collect::<Vec<_>>());
    let r2 = Tracer::start_as_host(&name2, &a2.iter().map(String::as_str).collect::<Vec<_>>());

    h2.b.ip(&["route", "add", "blackhole", &format!("{}/32", h2.ip_a)]);
    client.write_all(b"are you there?").unwrap();
    for _ in 0..4 {
        h1.arp_b_for_a();
    }
    send_udp(&h1.a, &h1.ip_a, &h1.ip_b, 9, 20, Duration::ZERO);
    let flap = r1.wait_for(Duration::from_secs(15), |v| {
        v["event"]["action"] == "fdb_flap"
    });
    let burst = r2.wait_for(Duration::from_secs(20), |v| {
        v["event"]["action"] == "retransmit_burst"
    });
    let (l1, _) = r1.stop();
    let (l2, _) = r2.stop();
    drop((client, server));
    assert!(flap.is_some(), "host 1 saw no flap live");
    assert!(burst.is_some(), "host 2 saw no retransmit burst live");
    // Each recorder alone: its own fault only, no joined incident.
    let types = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|v| v["event"]["action"] == "incident")
            .flat_map(|v| {
                v["tracer"]["incident"]["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|a| a["type"].as_str().map(str::to_string))
            .collect()
    };
    assert!(
        !types(&l1).contains(&"retransmit_burst".to_string()),
        "host 1 saw host 2's flow"
    );
    assert!(
        !types(&l2).contains(&"fdb_flap".to_string()),
        "host 2 saw host 1's bridge"
    );

    // The merged replay.
    let out = tracer(&["replay".as_ref(), cap1.as_os_str(), cap2.as_os_str()]);
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let host_of = |action: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|v| v["event"]["action"] == action)
            .filter_map(|v| v["host"]["name"].as_str().map(str::to_string))
            .collect()
    };
    assert!(host_of("fdb_move").iter().all(|h| *h == name1) && !host_of("fdb_move").is_empty());
    assert!(
        host_of("tcp_retransmit").iter().all(|h| *h == name2)
            && !host_of("tcp_retransmit").is_empty()
    );
    assert!(
        host_of("fdb_flap").contains(&name1),
        "{:?}",
        host_of("fdb_flap")
    );
    assert!(
        host_of("retransmit_burst").contains(&name2),
        "{:?}",
        host_of("retransmit_burst")
    );
    let mac = tracer_tests::ecs_mac(&mac_a);
    let joined = lines
        .iter()
        .filter(|v| v["event"]["action"] == "incident")
        .find(|v| {
            let inc = &v["tracer"]["incident"];
            let has =
                |k: &str, x: &str| inc[k].as_array().is_some_and(|a| a.iter().any(|e| e == x));
            let ty = |x: &str| {
                inc["alerts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["type"] == x))
            };
            ty("fdb_flap") && ty("retransmit_burst") && has("macs", &mac) && has("ips", &target)
        });
    let joined = joined.unwrap_or_else(|| {
        panic!(
            "no incident joins host 1's flap of {mac} and host 2's retransmits to {target}:\n{}",
            lines
                .iter()
                .filter(|v| v["event"]["action"] == "incident")
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let id = joined["tracer"]["incident"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Both hosts on one time axis, drawn by a browser.
    let html = dir.join("outage.html");
    tracer(&[
        "report".as_ref(),
        cap1.as_os_str(),
        cap2.as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]);
    let r = render(&html);
    assert_drawn(&r);
    assert!(
        r.dom.contains(&format!("<b>{id}</b>")),
        "incident {id} not in the summary"
    );
    assert!(
        r.dom.contains(&name1) && r.dom.contains(&name2),
        "both hosts on the page"
    );
    assert!(
        r.dom.contains(&format!("{name1}: ")),
        "host 1's series are named by host"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
