//! The view for people (`--format text` in a real terminal: tmux), the
//! operator filters (`--container`, `--service`) and `host.name`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{require_root, sh, tracer_bin, unique_tag, Tracer};

/// A file in a directory of its own, removed on drop.
struct TempCapture(PathBuf);

impl std::ops::Deref for TempCapture {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempCapture {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempCapture {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A synthetic capture (swarm tasks svc0.1 … svc5.1 of services svc0 …
/// svc5 on an overlay, with the vxlan proxy-ARP fault, retransmits, ARP
/// duplicates and drops), in a fresh directory removed on drop.
fn synth_capture(tag: &str) -> TempCapture {
    let dir = std::env::temp_dir().join(format!("tracer-view-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("synth.capture");
    let out = Command::new(tracer_bin())
        .args(["synth-capture", "--events", "20000", "--containers", "6"])
        .args(["--peers", "2", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    TempCapture(path)
}

/// `tracer replay CAPTURE ARGS` with stdout piped: its lines.
fn replay_piped(capture: &Path, args: &[&str]) -> String {
    let out = Command::new(tracer_bin())
        .arg("replay")
        .arg(capture)
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON {l:?}: {e}")))
        .collect()
}

/// A tmux session running one command in a 200×50 terminal; killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    /// Runs `command` (through the shell) in a new detached session, then
    /// waits until it printed `DONE` (the command's last act) and returns
    /// the whole pane, history included; `escapes`: with SGR escapes.
    fn run(command: &str, escapes: bool) -> (Self, String) {
        let (tag, _) = unique_tag();
        let t = Self {
            name: format!("tracer-view-{tag}"),
        };
        let script = format!("{command}; echo DONE-{tag}; sleep 30");
        let st = Command::new("tmux")
            .args(["new-session", "-d", "-x", "200", "-y", "50", "-s", &t.name])
            .arg(&script)
            .status()
            .unwrap();
        assert!(st.success(), "tmux new-session failed");
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            let pane = t.capture(escapes);
            if pane.contains(&format!("DONE-{tag}")) {
                return (t, pane);
            }
            assert!(Instant::now() < end, "command did not finish: {pane}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn capture(&self, escapes: bool) -> String {
        let mut c = Command::new("tmux");
        c.args(["capture-pane", "-p", "-S", "-", "-t", &self.name]);
        if escapes {
            c.arg("-e");
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// On a terminal, without --format: sentences with containers and hint,
/// raw events condensed in one status block (redrawn in place, so it is
/// on the screen once), probe and loss status on one line, colour.
#[test]
fn text_view_in_a_terminal_reads_as_sentences_with_counts() {
    let cap = synth_capture("tty");
    let cmd = format!(
        "env -u NO_COLOR {} replay {}",
        shell_quote(&tracer_bin()),
        shell_quote(&cap)
    );
    let (_t, pane) = Tmux::run(&cmd, false);
    assert!(
        !pane.contains("{\"@timestamp\""),
        "NDJSON on a terminal: {pane}"
    );
    let incident = pane
        .lines()
        .find(|l| l.contains(" INCIDENT ") && l.contains("svc3.1") && l.contains("svc4.1"))
        .unwrap_or_else(|| panic!("no incident sentence naming svc3.1 and svc4.1: {pane}"));
    assert!(incident.contains(':'), "starts with the time: {incident}");
    assert!(
        pane.contains("unreachable from svc3.1: an ARP request for it got 2 replies"),
        "{pane}"
    );
    assert!(
        pane.lines()
            .any(|l| l.starts_with("  hint: find the second responder")),
        "the hint on a line of its own: {pane}"
    );
    assert!(pane.lines().all(|l| l.chars().count() <= 200));
    assert_eq!(
        pane.matches("raw events, by container").count(),
        1,
        "the status block is redrawn in place, not printed again: {pane}"
    );
    let row = pane
        .lines()
        .find(|l| l.trim_start().starts_with("svc0.1 "))
        .unwrap_or_else(|| panic!("no count row for svc0.1: {pane}"));
    assert!(
        row.contains("fdb_move ") && row.contains("tcp_retransmit "),
        "{row}"
    );
    assert!(
        pane.lines()
            .any(|l| l.starts_with("probes: ") && l.contains(" · lost: 0 kernel records")),
        "probe and loss status on one line: {pane}"
    );
    // Colour on a terminal (NO_COLOR unset).
    let (_t2, coloured) = Tmux::run(&cmd, true);
    assert!(coloured.contains("\x1b["), "no SGR escapes on a terminal");
}

/// NO_COLOR=1 (https://no-color.org): the same view without colour.
#[test]
fn text_view_respects_no_color() {
    let cap = synth_capture("nocolor");
    let cmd = format!(
        "NO_COLOR=1 {} replay {}",
        shell_quote(&tracer_bin()),
        shell_quote(&cap)
    );
    let (_t, pane) = Tmux::run(&cmd, true);
    assert!(pane.contains(" INCIDENT "), "{pane}");
    // tmux -e shows every attribute as an SGR escape: there are none.
    assert!(!pane.contains("\x1b["), "colour despite NO_COLOR: {pane:?}");
    // --color always overrides NO_COLOR.
    let (_t2, forced) = Tmux::run(&format!("{cmd} --color always"), true);
    assert!(forced.contains("\x1b["), "--color always gives colour");
}

/// Piped, without --format: NDJSON, every line with the capture's host.name.
#[test]
fn piped_output_is_ndjson_with_host_name_from_the_capture_header() {
    let cap = synth_capture("pipe");
    let lines = json_lines(&replay_piped(&cap, &[]));
    assert!(lines.len() > 10_000, "{}", lines.len());
    for v in &lines {
        assert_eq!(v["host"]["name"], "synth-host", "{v}");
    }
    // Text asked for, not a terminal: sentences and plain summary lines,
    // no cursor movement, no colour.
    let text = replay_piped(&cap, &["--format", "text"]);
    assert!(!text.contains('\x1b'), "escapes off a terminal");
    assert!(text.contains(" INCIDENT "), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.contains(" STATUS ") && last.contains(" raw events (svc"),
        "{last}"
    );
}

/// Every container an NDJSON line names (its own, source, destination,
/// bridge port peers, incident list).
fn named(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in [
        &v["container"],
        &v["source"]["container"],
        &v["destination"]["container"],
        &v["tracer"]["port_peer"]["container"],
        &v["tracer"]["previous_port_peer"]["container"],
    ] {
        if let Some(n) = c["name"].as_str() {
            out.push(n.to_string());
        }
    }
    if let Some(list) = v["tracer"]["incident"]["containers"].as_array() {
        out.extend(list.iter().filter_map(|c| c.as_str().map(str::to_string)));
    }
    out
}

/// --container by name, by id prefix and --service keep exactly the
/// container's events, and its alerts.
#[test]
fn container_and_service_filters_keep_one_containers_events_and_alerts() {
    let cap = synth_capture("filter");
    let all = json_lines(&replay_piped(&cap, &[]));
    let by_name = replay_piped(&cap, &["--container", "svc3.1"]);
    let lines = json_lines(&by_name);
    let events: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"]["kind"] == "event")
        .collect();
    assert!(events.len() > 100, "{}", events.len());
    for v in &events {
        assert!(named(v).iter().any(|n| n == "svc3.1"), "{v}");
    }
    // What was left out: events of the other containers only.
    let others = all
        .iter()
        .filter(|v| v["event"]["kind"] == "event")
        .filter(|v| !named(v).iter().any(|n| n == "svc3.1"))
        .count();
    assert!(
        others > 1000,
        "the capture has other containers' events: {others}"
    );
    let alerts: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"]["kind"] == "alert")
        .collect();
    assert!(!alerts.is_empty(), "svc3.1's alerts are kept");
    for v in &alerts {
        assert!(
            v.to_string().contains("svc3.1"),
            "an alert about svc3.1: {v}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|v| v["event"]["action"] == "incident" && named(v).iter().any(|n| n == "svc3.1")),
        "its incident"
    );
    // The same by full id and by swarm service. (Synthetic ids differ only
    // in their last characters, so id prefixes are tested in the unit
    // tests of pipeline::Filter.)
    let id = events
        .iter()
        .find_map(|v| {
            [
                &v["container"],
                &v["source"]["container"],
                &v["destination"]["container"],
            ]
            .into_iter()
            .find(|c| c["name"] == "svc3.1")
            .and_then(|c| c["id"].as_str())
        })
        .expect("svc3.1's id");
    assert!(
        replay_piped(&cap, &["--container", id]) == by_name,
        "--container {id} differs from --container svc3.1"
    );
    assert!(
        replay_piped(&cap, &["--service", "svc3"]) == by_name,
        "--service svc3 differs from --container svc3.1"
    );
    // An unknown name keeps status lines only.
    let none = json_lines(&replay_piped(&cap, &["--container", "nope"]));
    assert!(none.iter().all(|v| v["event"]["kind"] != "event"));
}

/// A live run: every line carries the host's name (uname -n), or
/// --host-name; a capture of it replays with the same name.
#[test]
fn live_lines_carry_host_name() {
    require_root();
    let node = sh(&["uname", "-n"]).trim().to_string();
    let t = Tracer::start(&["--netns", "1"]);
    let (lines, _) = t.stop();
    assert!(lines.len() >= 8, "{}", lines.len());
    for v in &lines {
        assert_eq!(v["host"]["name"].as_str(), Some(node.as_str()), "{v}");
    }
    let dir = std::env::temp_dir().join(format!("tracer-view-{}-live", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cap = dir.join("run.capture");
    let cap_s = cap.display().to_string();
    let t = Tracer::start(&[
        "--netns",
        "1",
        "--host-name",
        "node-7.example",
        "--record",
        &cap_s,
    ]);
    let (lines, raw) = t.stop();
    for v in &lines {
        assert_eq!(v["host"]["name"], "node-7.example", "{v}");
    }
    // The capture holds every namespace's records; the live run showed
    // the host's only: replay with the same scope (other tests' sockets
    // may still be retransmitting in their namespaces meanwhile).
    let replayed = replay_piped(&cap, &["--netns", "1"]);
    let live: String = raw.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(replayed, live, "replay prints the recorded host.name");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A live run on a terminal: the text view by default, with every probe
/// counted as attached on the status line, and a clean exit.
#[test]
fn live_lines_carry_host_name_and_the_text_view_shows_probe_status() {
    require_root();
    let cmd = format!(
        "{} run --netns 1 --duration 4s; echo exit=$?",
        shell_quote(&tracer_bin())
    );
    let (_t, pane) = Tmux::run(&cmd, false);
    assert!(pane.contains("exit=0"), "{pane}");
    assert!(
        !pane.contains("{\"@timestamp\""),
        "NDJSON on a terminal: {pane}"
    );
    let status = pane
        .lines()
        .find(|l| l.starts_with("probes: "))
        .unwrap_or_else(|| panic!("no status line: {pane}"));
    let attached: u32 = status
        .trim_start_matches("probes: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        attached >= 8 && status.contains(" attached, 0 failed"),
        "{status}"
    );
    assert_eq!(
        pane.matches("raw events, by container").count(),
        1,
        "{pane}"
    );
}
