//! The scenarios of the kernel matrix and the facts each one must show.
//!
//! guest.sh (run inside a VM, or on the host) builds the topologies, causes
//! the kernel events and writes `@@`-prefixed lines: the facts it set up
//! (names, addresses, MACs, namespace inodes) and every NDJSON line tracer
//! printed. Everything tracer is expected to report is decided here, from
//! those lines, with the same assertions as the host integration tests
//! (tests/tests/foundation.rs and detect.rs).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// What guest.sh wrote, parsed.
#[derive(Debug, Default)]
pub struct Capture {
    /// `uname -r` of the kernel it ran on.
    pub release: Option<String>,
    /// `tracer check --json`: one probe_status line per probe.
    pub check: Vec<Value>,
    /// The same before bridge/vxlan/veth were loaded (VMs only).
    pub premod: Vec<Value>,
    pub facts: HashMap<String, HashMap<String, String>>,
    /// Scenarios whose set-up the kernel refused, with the reason.
    pub skipped: HashMap<String, String>,
    /// NDJSON lines of `tracer run`.
    pub lines: Vec<Value>,
    /// Lines that were not JSON (a fault in itself).
    pub bad_lines: Vec<String>,
    pub stderr: Vec<String>,
    /// tracer's exit code after SIGINT.
    pub exit: Option<i32>,
    /// How long the script's scenarios took (without a lock wait or boot).
    pub seconds: Option<u64>,
    /// `@@MATRIX end` was seen: the script ran to its end.
    pub complete: bool,
}

impl Capture {
    pub fn parse(text: &str) -> Self {
        let mut c = Self::default();
        for line in text.lines() {
            // A serial line discipline may add \r; console noise may precede the marker.
            let line = line.trim_end_matches('\r');
            let Some(at) = line.find("@@") else { continue };
            let line = &line[at + 2..];
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "MATRIX" => match rest.split_once(' ') {
                    Some(("begin", release)) => c.release = Some(release.trim().to_owned()),
                    _ if rest == "end" => c.complete = true,
                    _ => {}
                },
                "check" | "premod" => {
                    if let Ok(v) = serde_json::from_str(rest) {
                        if tag == "check" {
                            &mut c.check
                        } else {
                            &mut c.premod
                        }
                        .push(v);
                    }
                }
                "fact" => {
                    let mut it = rest.splitn(3, ' ');
                    if let (Some(id), Some(key), Some(value)) = (it.next(), it.next(), it.next()) {
                        c.facts
                            .entry(id.to_owned())
                            .or_default()
                            .insert(key.to_owned(), value.trim().to_owned());
                    }
                }
                "skip" => {
                    let (id, why) = rest.split_once(' ').unwrap_or((rest, ""));
                    c.skipped.insert(id.to_owned(), why.trim().to_owned());
                }
                "tracer" => match serde_json::from_str(rest) {
                    Ok(v) => c.lines.push(v),
                    Err(_) => c.bad_lines.push(rest.to_owned()),
                },
                "stderr" => c.stderr.push(rest.to_owned()),
                "exit" => c.exit = rest.trim().parse().ok(),
                "seconds" => c.seconds = rest.trim().parse().ok(),
                _ => {}
            }
        }
        c
    }

    /// Probe name → None when attached, Some(reason) otherwise, from the
    /// probe_status lines of the run (or of `tracer check` when the run
    /// printed none).
    pub fn probes(&self) -> BTreeMap<String, Option<String>> {
        let from_run: Vec<&Value> = with_action(&self.lines, "probe_status");
        if from_run.is_empty() {
            probe_map(self.check.iter())
        } else {
            probe_map(from_run.into_iter())
        }
    }

    /// [`Self::probes`] before the modules were loaded (empty on the host).
    pub fn probes_before_modules(&self) -> BTreeMap<String, Option<String>> {
        probe_map(self.premod.iter())
    }
}

/// Probe name → None when attached, Some(reason) otherwise.
fn probe_map<'a>(lines: impl Iterator<Item = &'a Value>) -> BTreeMap<String, Option<String>> {
    lines
        .filter_map(|v| {
            let name = v["tracer"]["probe"]["name"].as_str()?.to_owned();
            let status = v["tracer"]["probe"]["status"].as_str().unwrap_or("?");
            let why = (status != "attached").then(|| {
                let reason = v["tracer"]["probe"]["error"]
                    .as_str()
                    .or_else(|| v["message"].as_str())
                    .unwrap_or("no reason given");
                format!("{status}: {reason}")
            });
            Some((name, why))
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

type Facts = HashMap<String, String>;

/// Why a check did not pass.
#[derive(Debug)]
enum Miss {
    Fail(String),
    /// The kernel does not report it (a documented kernel difference).
    Skip(String),
}

impl From<String> for Miss {
    fn from(s: String) -> Self {
        Self::Fail(s)
    }
}

impl From<&str> for Miss {
    fn from(s: &str) -> Self {
        Self::Fail(s.to_owned())
    }
}

/// What a check sees.
struct Ctx<'a> {
    facts: &'a Facts,
    lines: &'a [Value],
    /// (major, minor) of the kernel it ran on.
    version: Option<(u32, u32)>,
}

type Check = fn(&Ctx) -> Result<(), Miss>;

pub struct Scenario {
    /// guest.sh's id for its set-up and facts.
    pub id: &'static str,
    /// Column title.
    pub title: &'static str,
    /// The probes whose events it asserts.
    pub probes: &'static [&'static str],
    check: Check,
}

/// The probes every run must report on (foundation.rs).
pub const PROBES: [&str; 10] = [
    "br_fdb_update",
    "fdb_delete",
    "netif_receive_skb",
    "neigh_update",
    "tcp_retransmit_skb",
    "tcp_send_reset",
    "tcp_receive_reset",
    "inet_sock_set_state",
    "icmp_send",
    "kfree_skb",
];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "fdb",
        title: "FDB learn + move",
        probes: &["br_fdb_update"],
        check: fdb,
    },
    Scenario {
        id: "seed",
        title: "FDB seed → move",
        probes: &["br_fdb_update"],
        check: seed,
    },
    Scenario {
        id: "del",
        title: "FDB delete",
        probes: &["fdb_delete"],
        check: del,
    },
    Scenario {
        id: "arp",
        title: "ARP reply + neigh",
        probes: &["netif_receive_skb", "neigh_update"],
        check: arp,
    },
    Scenario {
        id: "retx",
        title: "TCP retransmit + burst",
        probes: &["tcp_retransmit_skb"],
        check: retx,
    },
    Scenario {
        id: "rst",
        title: "TCP reset received",
        probes: &["tcp_receive_reset"],
        check: rst_received,
    },
    Scenario {
        id: "rst",
        title: "TCP reset sent (closed port)",
        probes: &["tcp_send_reset"],
        check: rst_sent,
    },
    Scenario {
        id: "udp",
        title: "drop NO_SOCKET",
        probes: &["kfree_skb"],
        check: udp,
    },
    Scenario {
        id: "flap",
        title: "vxlan proxy-ARP flap",
        probes: &["br_fdb_update", "netif_receive_skb"],
        check: flap,
    },
    Scenario {
        id: "cfl",
        title: "IP conflict",
        probes: &["netif_receive_skb"],
        check: conflict,
    },
];

/// The outcome of the probe check: every probe reports a status, the run
/// exits cleanly after SIGINT with a final loss report.
pub fn probes_outcome(c: &Capture) -> Outcome {
    match probes_check(c) {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(e),
    }
}

fn probes_check(c: &Capture) -> Result<(), String> {
    if !c.complete {
        return Err("the scenario script did not run to its end (see the console log)".into());
    }
    if c.check.is_empty() {
        return Err(format!(
            "`tracer check --json` printed nothing; {}",
            stderr_tail(c)
        ));
    }
    let probes = c.probes();
    for p in PROBES {
        if !probes.contains_key(p) {
            return Err(format!("no probe_status for {p}"));
        }
    }
    if let Some(bad) = c.bad_lines.first() {
        return Err(format!("tracer printed a non-JSON line: {bad:?}"));
    }
    if c.exit != Some(0) {
        return Err(format!(
            "tracer run exited with {:?} after SIGINT; {}",
            c.exit,
            stderr_tail(c)
        ));
    }
    let last = with_action(&c.lines, "loss_report")
        .last()
        .copied()
        .ok_or("no final loss_report")?;
    eq(last, "event.kind", "metric")?;
    if !at(last, "tracer.lost_total").is_u64() {
        return Err(format!("loss_report without lost_total: {last}"));
    }
    Ok(())
}

fn stderr_tail(c: &Capture) -> String {
    let tail: Vec<&str> = c
        .stderr
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    if tail.is_empty() {
        "no stderr".into()
    } else {
        format!("stderr: {}", tail.join(" | "))
    }
}

/// Decides one scenario.
pub fn outcome(s: &Scenario, c: &Capture) -> Outcome {
    if let Some(why) = c.skipped.get(s.id) {
        return Outcome::Skipped(why.clone());
    }
    if !c.complete {
        return Outcome::Failed("the scenario script did not run to its end".into());
    }
    let probes = c.probes();
    for p in s.probes {
        match probes.get(*p) {
            Some(None) => {}
            Some(Some(why)) => return Outcome::Skipped(format!("probe {p} {why}")),
            None => return Outcome::Skipped(format!("probe {p} not reported")),
        }
    }
    let Some(facts) = c.facts.get(s.id) else {
        return Outcome::Failed("the script recorded no facts for it".into());
    };
    let ctx = Ctx {
        facts,
        lines: &c.lines,
        version: c.release.as_deref().and_then(version),
    };
    match (s.check)(&ctx) {
        Ok(()) => Outcome::Passed,
        Err(Miss::Fail(e)) => Outcome::Failed(e),
        Err(Miss::Skip(e)) => Outcome::Skipped(e),
    }
}

/// `6.1.0-57-cloud-amd64` → (6, 1).
fn version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

// ---- helpers ---------------------------------------------------------------

fn with_action<'a>(lines: &'a [Value], action: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|v| v["event"]["action"] == action)
        .collect()
}

/// `a.b.c` inside a JSON value (Null when absent).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn fact<'a>(f: &'a Facts, key: &str) -> Result<&'a str, String> {
    f.get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("fact {key} missing"))
}

fn fact_u64(f: &Facts, key: &str) -> Result<u64, String> {
    fact(f, key)?
        .parse()
        .map_err(|_| format!("fact {key} is not a number"))
}

/// `aa:bb:...` (ip's format) to ECS `AA-BB-...` (tracer's format).
fn ecs(mac: &str) -> String {
    mac.replace(':', "-").to_ascii_uppercase()
}

fn eq(v: &Value, path: &str, want: impl Into<Value>) -> Result<(), String> {
    let want = want.into();
    let got = at(v, path);
    if *got == want {
        Ok(())
    } else {
        Err(format!("{path} is {got}, expected {want}"))
    }
}

fn find<'a>(
    lines: &'a [Value],
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<&'a Value, String> {
    lines
        .iter()
        .find(|v| pred(v))
        .ok_or_else(|| format!("no {what}"))
}

fn is(v: &Value, action: &str) -> bool {
    v["event"]["action"] == action
}

// ---- the scenarios ---------------------------------------------------------

/// foundation.rs: mac_moving_between_bridge_ports_is_a_move_naming_both_ports
fn fdb(cx: &Ctx) -> Result<(), Miss> {
    let (f, lines) = (cx.facts, cx.lines);
    let mac = ecs(fact(f, "mac_new")?);
    let br = fact_u64(f, "br_inode")?;
    let (bridge, pa, pb) = (fact(f, "bridge")?, fact(f, "port_a")?, fact(f, "port_b")?);
    let learn = find(lines, "fdb_learn for A's new MAC", |v| {
        is(v, "fdb_learn") && v["source"]["mac"] == mac.as_str()
    })?;
    eq(learn, "tracer.netns.inode", br)?;
    eq(learn, "tracer.bridge", bridge)?;
    eq(learn, "tracer.port", pa)?;
    eq(learn, "tracer.interface.name", pa)?;
    let mv = find(lines, "fdb_move for A's MAC", |v| {
        is(v, "fdb_move") && v["source"]["mac"] == mac.as_str()
    })?;
    eq(mv, "tracer.netns.inode", br)?;
    eq(mv, "tracer.bridge", bridge)?;
    eq(mv, "tracer.port", pb)?;
    eq(mv, "tracer.previous_port", pa)?;
    eq(mv, "tracer.vlan", 0)?;
    eq(mv, "event.kind", "event")?;
    Ok(())
}

/// foundation.rs: fdb_seed_makes_first_move_after_start_a_move
fn seed(cx: &Ctx) -> Result<(), Miss> {
    let (f, lines) = (cx.facts, cx.lines);
    let mac = ecs(fact(f, "mac_a")?);
    let mv = find(lines, "fdb_move for A's MAC learned before start", |v| {
        is(v, "fdb_move") && v["source"]["mac"] == mac.as_str()
    })?;
    eq(mv, "tracer.netns.inode", fact_u64(f, "br_inode")?)?;
    eq(mv, "tracer.previous_port", fact(f, "port_a")?)?;
    eq(mv, "tracer.port", fact(f, "port_b")?)?;
    Ok(())
}

/// foundation.rs: fdb_delete_is_reported_when_a_port_goes
fn del(cx: &Ctx) -> Result<(), Miss> {
    let (f, lines) = (cx.facts, cx.lines);
    let mac = ecs(fact(f, "mac_b")?);
    let d = find(lines, "fdb_delete for B's MAC", |v| {
        is(v, "fdb_delete") && v["source"]["mac"] == mac.as_str()
    })?;
    eq(d, "tracer.bridge", fact(f, "bridge")?)?;
    eq(d, "tracer.port", fact(f, "port_b")?)?;
    eq(d, "tracer.netns.inode", fact_u64(f, "br_inode")?)?;
    Ok(())
}

/// foundation.rs: arp_reply_names_both_ends_interface_and_netns
fn arp(cx: &Ctx) -> Result<(), Miss> {
    let (f, lines) = (cx.facts, cx.lines);
    let a_inode = fact_u64(f, "a_inode")?;
    let (ip_a, ip_b) = (fact(f, "ip_a")?, fact(f, "ip_b")?);
    let (mac_a, mac_b) = (ecs(fact(f, "mac_a")?), ecs(fact(f, "mac_b")?));
    let dev_a = fact(f, "dev_a")?;
    let reply = find(lines, "arp_reply from B seen in A", |v| {
        is(v, "arp_reply") && v["source"]["ip"] == ip_b && v["tracer"]["netns"]["inode"] == a_inode
    })?;
    eq(reply, "tracer.interface.name", dev_a)?;
    eq(reply, "tracer.interface.index", fact_u64(f, "ifindex_a")?)?;
    eq(reply, "source.mac", mac_b.as_str())?;
    eq(reply, "destination.ip", ip_a)?;
    eq(reply, "destination.mac", mac_a.as_str())?;
    eq(reply, "network.type", "arp")?;
    find(lines, "neigh_update of B to REACHABLE in A", |v| {
        is(v, "neigh_update")
            && v["destination"]["ip"] == ip_b
            && v["destination"]["mac"] == mac_b.as_str()
            && v["tracer"]["neigh"]["new_state"] == "REACHABLE"
            && v["tracer"]["interface"]["name"] == dev_a
    })?;
    Ok(())
}

/// foundation.rs: blackholed_tcp_connection_retransmits, and detect.rs:
/// blackholed_flow_is_a_retransmit_burst
fn retx(cx: &Ctx) -> Result<(), Miss> {
    let (f, lines) = (cx.facts, cx.lines);
    let (ip_a, ip_b) = (fact(f, "ip_a")?, fact(f, "ip_b")?);
    let port = fact_u64(f, "port")?;
    let ours = |v: &&Value| {
        is(v, "tcp_retransmit")
            && v["source"]["ip"] == ip_a
            && v["destination"]["ip"] == ip_b
            && v["destination"]["port"] == port
    };
    let r = find(lines, "tcp_retransmit from A to B", |v| ours(&v))?;
    eq(r, "tracer.netns.inode", fact_u64(f, "a_inode")?)?;
    eq(r, "network.transport", "tcp")?;
    eq(r, "tracer.tcp.state", "ESTABLISHED")?;
    let sport = &r["source"]["port"];
    let same: Vec<&Value> = lines
        .iter()
        .filter(ours)
        .filter(|v| v["source"]["port"] == *sport)
        .collect();
    if same.len() < 2 {
        return Err(format!(
            "{} tcp_retransmit of the flow, expected repeated ones",
            same.len()
        )
        .into());
    }
    let una: Vec<&Value> = same
        .iter()
        .map(|v| &v["tracer"]["tcp"]["snd_una"])
        .collect();
    if !una.windows(2).all(|w| w[0] == w[1]) {
        return Err(format!("snd_una moved: {una:?}").into());
    }
    let burst = find(lines, "retransmit_burst alert", |v| {
        is(v, "retransmit_burst") && v["source"]["ip"] == ip_a && v["destination"]["ip"] == ip_b
    })?;
    eq(burst, "event.kind", "alert")?;
    eq(burst, "destination.port", port)?;
    let count = burst["tracer"]["alert"]["count"].as_u64().unwrap_or(0);
    if count < 3 {
        return Err(format!("retransmit_burst count {count} < 3").into());
    }
    Ok(())
}

fn is_reset(v: &Value, dir: &str, from: &str, to: &str) -> bool {
    is(v, "tcp_reset")
        && v["tracer"]["tcp"]["direction"] == dir
        && v["source"]["ip"] == from
        && v["destination"]["ip"] == to
}

/// foundation.rs: connection_to_closed_port_is_reset_both_ways (A's side)
fn rst_received(cx: &Ctx) -> Result<(), Miss> {
    let f = cx.facts;
    let (ip_a, ip_b) = (fact(f, "ip_a")?, fact(f, "ip_b")?);
    let received = find(cx.lines, "tcp_reset received by A", |v| {
        is_reset(v, "received", ip_b, ip_a)
    })?;
    eq(received, "tracer.netns.inode", fact_u64(f, "a_inode")?)?;
    eq(received, "source.port", fact_u64(f, "port")?)?;
    eq(received, "tracer.tcp.state", "SYN_SENT")?;
    Ok(())
}

/// foundation.rs: connection_to_closed_port_is_reset_both_ways (B's side).
/// Before 6.10, tcp:tcp_send_reset fired only for resets sent on behalf of
/// a full socket, not for one answering a segment that matched no socket
/// (6.10's "trace: tcp: fully support trace_tcp_send_reset"). There the
/// SYN's drop (NO_SOCKET in tcp_v4_rcv) is what tracer can show: asserted
/// instead, and the sent reset is reported as skipped.
fn rst_sent(cx: &Ctx) -> Result<(), Miss> {
    let f = cx.facts;
    let (ip_a, ip_b) = (fact(f, "ip_a")?, fact(f, "ip_b")?);
    let port = fact_u64(f, "port")?;
    let b_inode = fact_u64(f, "b_inode")?;
    let sent = cx.lines.iter().find(|v| is_reset(v, "sent", ip_b, ip_a));
    let Some(sent) = sent else {
        if cx.version.is_some_and(|v| v < (6, 10)) {
            let syn = find(
                cx.lines,
                "tcp_reset sent by B, nor the SYN's skb_drop in B",
                |v| {
                    is(v, "skb_drop")
                        && v["source"]["ip"] == ip_a
                        && v["destination"]["ip"] == ip_b
                        && v["destination"]["port"] == port
                },
            )?;
            eq(syn, "tracer.netns.inode", b_inode)?;
            eq(syn, "tracer.reason", "NO_SOCKET")?;
            eq(syn, "network.transport", "tcp")?;
            return Err(Miss::Skip(
                "kernel < 6.10: tcp:tcp_send_reset does not fire for a reset answering a \
                 segment that matches no socket; tracer reports the SYN as skb_drop \
                 NO_SOCKET (checked) and the reset received by the peer"
                    .into(),
            ));
        }
        return Err("no tcp_reset sent by B".into());
    };
    eq(sent, "tracer.netns.inode", b_inode)?;
    eq(sent, "source.port", port)?;
    Ok(())
}

/// foundation.rs: udp_to_closed_port_is_dropped_with_reason_no_socket
fn udp(cx: &Ctx) -> Result<(), Miss> {
    let (f, lines) = (cx.facts, cx.lines);
    let (ip_a, ip_b) = (fact(f, "ip_a")?, fact(f, "ip_b")?);
    let port = fact_u64(f, "port")?;
    let d = find(lines, "skb_drop of the UDP datagram", |v| {
        is(v, "skb_drop") && v["source"]["ip"] == ip_a && v["destination"]["port"] == port
    })?;
    eq(d, "tracer.reason", "NO_SOCKET")?;
    if !d["tracer"]["reason_raw"].is_u64() {
        return Err(format!("no reason_raw: {d}").into());
    }
    eq(d, "tracer.netns.inode", fact_u64(f, "b_inode")?)?;
    eq(d, "tracer.interface.name", fact(f, "dev_b")?)?;
    eq(d, "destination.ip", ip_b)?;
    eq(d, "network.transport", "udp")?;
    let loc = d["tracer"]["location"].as_str().unwrap_or_default();
    if !loc.contains("udp") {
        return Err(format!("drop location {loc:?} is not in the UDP receive path").into());
    }
    Ok(())
}

/// detect.rs: vxlan_proxy_arp_flap_is_diagnosed
fn flap(cx: &Ctx) -> Result<(), Miss> {
    let (f, lines) = (cx.facts, cx.lines);
    let mac = ecs(fact(f, "mac_a")?);
    let (vx, pa) = (fact(f, "vxlan")?, fact(f, "port_a")?);
    let (ip_a, ip_b) = (fact(f, "ip_a")?, fact(f, "ip_b")?);
    let fl = find(lines, "fdb_flap alert", |v| {
        is(v, "fdb_flap") && v["tracer"]["alert"]["mac"] == mac.as_str()
    })?;
    eq(fl, "event.kind", "alert")?;
    eq(fl, "tracer.alert.bridge", fact(f, "bridge")?)?;
    eq(fl, "tracer.netns.inode", fact_u64(f, "br_inode")?)?;
    eq(fl, "tracer.alert.vxlan", vx)?;
    eq(fl, "tracer.alert.diagnosis", "vxlan_proxy_arp")?;
    let count = fl["tracer"]["alert"]["count"].as_u64().unwrap_or(0);
    if count < 3 {
        return Err(format!("fdb_flap count {count} < 3").into());
    }
    let ports: Vec<&str> = fl["tracer"]["alert"]["ports"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["port"].as_str()).collect())
        .unwrap_or_default();
    if !(ports.contains(&pa) && ports.contains(&vx)) {
        return Err(format!("fdb_flap ports {ports:?} lack {pa} or {vx}").into());
    }
    let msg = fl["message"].as_str().unwrap_or_default();
    if !(msg.contains(vx) && msg.contains("vxlan")) {
        return Err(format!("fdb_flap message {msg:?}").into());
    }

    let dup = find(lines, "arp_duplicate_reply alert", |v| {
        is(v, "arp_duplicate_reply") && v["source"]["ip"] == ip_a
    })?;
    eq(dup, "source.mac", mac.as_str())?;
    eq(dup, "destination.ip", ip_b)?;
    let through: Vec<&str> = dup["tracer"]["alert"]["came_through"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["interface"].as_str()).collect())
        .unwrap_or_default();
    if !(through.contains(&vx) && through.contains(&pa)) {
        return Err(format!("came_through {through:?} lacks {vx} or {pa}").into());
    }

    let inc = lines
        .iter()
        .rev()
        .find(|v| {
            let types: Vec<&str> = v["tracer"]["incident"]["alerts"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["type"].as_str()).collect())
                .unwrap_or_default();
            is(v, "incident")
                && types.contains(&"fdb_flap")
                && types.contains(&"arp_duplicate_reply")
        })
        .ok_or("no incident joining fdb_flap and arp_duplicate_reply")?;
    let text = inc["message"].as_str().unwrap_or_default();
    if !(text.contains(ip_a)
        && text.contains("flapped")
        && text.contains(vx)
        && text.contains("2 replies"))
    {
        return Err(format!("incident message {text:?}").into());
    }
    let hint = inc["tracer"]["incident"]["hint"]
        .as_str()
        .unwrap_or_default();
    if !(hint.contains("neigh del") && hint.contains(ip_a)) {
        return Err(format!("incident hint {hint:?}").into());
    }
    Ok(())
}

/// detect.rs: duplicate_ip_is_an_ip_conflict_naming_both_macs
fn conflict(cx: &Ctx) -> Result<(), Miss> {
    let (f, lines) = (cx.facts, cx.lines);
    let ip_b = fact(f, "ip_b")?;
    let (mac_b, mac_x) = (ecs(fact(f, "mac_b")?), ecs(fact(f, "mac_x")?));
    // The bridge's namespace sees both replies too; the host test traces
    // A's namespace only, so its alert is the one asserted.
    let a_inode = fact_u64(f, "a_inode")?;
    let c = find(lines, "ip_conflict alert in A's namespace", |v| {
        is(v, "ip_conflict")
            && v["tracer"]["netns"]["inode"] == a_inode
            && v.to_string().contains(ip_b)
    })?;
    let text = c.to_string();
    if !(text.contains(&mac_b) && text.contains(&mac_x)) {
        return Err(format!("ip_conflict does not name both {mac_b} and {mac_x}: {text}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "\
noise @@MATRIX begin 6.1.0-57-cloud-amd64\r
@@check {\"event\":{\"action\":\"probe_status\"},\"tracer\":{\"probe\":{\"name\":\"kfree_skb\",\"status\":\"attached\"}}}
@@fact udp ip_a 10.250.7.1
@@fact udp ip_b 10.250.7.2
@@fact udp b_inode 4026532000
@@fact udp dev_b ebudp
@@fact udp port 9
@@skip flap set-up refused by this kernel: Error: Unknown device type.
@@exit 0
@@tracer {\"event\":{\"action\":\"probe_status\",\"kind\":\"state\"},\"tracer\":{\"probe\":{\"name\":\"kfree_skb\",\"status\":\"attached\"}}}
@@tracer {\"event\":{\"action\":\"probe_status\",\"kind\":\"state\"},\"tracer\":{\"probe\":{\"name\":\"fdb_delete\",\"status\":\"failed\",\"error\":\"no tracepoint bridge:fdb_delete\"}}}
@@tracer {\"event\":{\"action\":\"skb_drop\"},\"source\":{\"ip\":\"10.250.7.1\",\"port\":40000},\"destination\":{\"ip\":\"10.250.7.2\",\"port\":9},\"network\":{\"transport\":\"udp\"},\"tracer\":{\"reason\":\"NO_SOCKET\",\"reason_raw\":3,\"location\":\"__udp4_lib_rcv+0x1\",\"netns\":{\"inode\":4026532000},\"interface\":{\"name\":\"ebudp\"}}}
@@MATRIX end\r
";

    fn scenario(id: &str) -> &'static Scenario {
        SCENARIOS.iter().find(|s| s.id == id).unwrap()
    }

    #[test]
    fn parses_and_decides() {
        let c = Capture::parse(OUT);
        assert_eq!(c.release.as_deref(), Some("6.1.0-57-cloud-amd64"));
        assert!(c.complete);
        assert_eq!(c.exit, Some(0));
        assert_eq!(outcome(scenario("udp"), &c), Outcome::Passed);
        // The kernel refused the set-up: skipped with its reason.
        assert!(
            matches!(outcome(scenario("flap"), &c), Outcome::Skipped(r) if r.contains("Unknown device type"))
        );
        // A probe that did not attach skips the scenarios that need it.
        assert!(
            matches!(outcome(scenario("del"), &c), Outcome::Skipped(r) if r.contains("fdb_delete failed: no tracepoint"))
        );
        // Not every probe reported, no loss report: the probe check fails.
        assert!(matches!(probes_outcome(&c), Outcome::Failed(_)));
    }

    #[test]
    fn wrong_fact_fails_with_the_field() {
        let c = Capture::parse(&OUT.replace("\"NO_SOCKET\"", "\"NOT_SPECIFIED\""));
        match outcome(scenario("udp"), &c) {
            Outcome::Failed(why) => assert!(why.contains("tracer.reason"), "{why}"),
            other => panic!("{other:?}"),
        }
        let c = Capture::parse(&OUT.replace("@@MATRIX end", ""));
        assert!(matches!(outcome(scenario("udp"), &c), Outcome::Failed(_)));
    }

    #[test]
    fn reset_without_tracepoint_before_6_10_is_a_skip_with_evidence() {
        let facts = "\
@@fact rst ip_a 10.250.6.1
@@fact rst ip_b 10.250.6.2
@@fact rst a_inode 11
@@fact rst b_inode 22
@@fact rst port 7
@@tracer {\"event\":{\"action\":\"probe_status\"},\"tracer\":{\"probe\":{\"name\":\"tcp_send_reset\",\"status\":\"attached\"}}}
";
        let syn = "@@tracer {\"event\":{\"action\":\"skb_drop\"},\"source\":{\"ip\":\"10.250.6.1\"},\"destination\":{\"ip\":\"10.250.6.2\",\"port\":7},\"network\":{\"transport\":\"tcp\"},\"tracer\":{\"reason\":\"NO_SOCKET\",\"netns\":{\"inode\":22}}}\n";
        let sent = SCENARIOS
            .iter()
            .find(|s| s.title.starts_with("TCP reset sent"))
            .unwrap();
        let run = |release: &str, extra: &str| {
            let text = format!("@@MATRIX begin {release}\n{facts}{extra}@@MATRIX end\n");
            outcome(sent, &Capture::parse(&text))
        };
        assert!(
            matches!(run("6.1.0-57-cloud-amd64", syn), Outcome::Skipped(r) if r.contains("6.10"))
        );
        // Without the drop as evidence it is a failure, also on 6.1.
        assert!(matches!(
            run("6.1.0-57-cloud-amd64", ""),
            Outcome::Failed(_)
        ));
        // From 6.10 on the kernel traces it: missing is a failure.
        assert!(matches!(
            run("6.12.117+deb12-cloud-amd64", syn),
            Outcome::Failed(_)
        ));
        assert_eq!(version("6.12.117+deb12-cloud-amd64"), Some((6, 12)));
    }
}
