//! `tracer report CAPTURE… -o outage.html`: the outage on one time axis, as
//! one self-contained HTML file (inline SVG drawn here, inline styles, a
//! few lines of inline script; nothing fetched when opened).
//!
//! The captures are replayed through the same [`crate::pipeline::Pipeline`]
//! as `tracer replay` (so the alerts and incidents are the same lines) and
//! the events are folded into [`BUCKETS`] time buckets as they arrive: when
//! an event falls past the last bucket, every bucket doubles its width.
//! Each chart keeps at most [`MAX_KEYS`] series (further keys are folded
//! into "other", counted) and draws the [`TOP`] largest, the rest again
//! folded into "other". Memory and file size are bounded whatever the
//! length of the capture.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    path::PathBuf,
};

use crate::{
    event::{Action, EcsEvent, Kind},
    explain::explain_drop,
    kernel::clock::format_ts,
    replay::{drive, ReplayOptions, ReplaySummary},
};

/// Time buckets across the whole capture.
pub const BUCKETS: usize = 400;
/// Series kept per chart; later keys are counted in "other".
pub const MAX_KEYS: usize = 256;
/// Series drawn per chart (the largest); the rest are drawn as "other".
pub const TOP: usize = 12;
/// MACs whose port history is drawn, and port changes kept per MAC.
const MAX_MACS: usize = 32;
const MAX_CHANGES: usize = 256;
/// Alert lines listed.
const MAX_ALERTS: usize = 200;
const MAX_INCIDENTS: usize = 100;
/// First bucket width (doubles as needed).
const FIRST_WIDTH_NS: i128 = 100_000;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Chart {
    Fdb,
    Arp,
    Retransmit,
    Reset,
    Drop,
    Alert,
}

impl Chart {
    const ALL: [Chart; 6] = [
        Chart::Alert,
        Chart::Fdb,
        Chart::Arp,
        Chart::Retransmit,
        Chart::Reset,
        Chart::Drop,
    ];
    fn title(self) -> &'static str {
        match self {
            Chart::Fdb => "FDB learns, moves and deletes per bridge port",
            Chart::Arp => "ARP replies per sender (IP is-at MAC)",
            Chart::Retransmit => "TCP retransmits per flow",
            Chart::Reset => "TCP resets per flow",
            Chart::Drop => "Packet drops per reason and location",
            Chart::Alert => "Alerts per type",
        }
    }
}

#[derive(Default)]
struct Series {
    buckets: Vec<u64>,
    total: u64,
    /// Tooltip (drop reasons: what the reason means).
    tip: Option<String>,
}

#[derive(Default)]
struct ChartData {
    series: HashMap<String, Series>,
    other: Series,
    /// Events folded into "other" because the chart was full.
    folded: u64,
}

struct MacLane {
    /// (time, port) each time the MAC was seen on a new port.
    changes: Vec<(i128, String)>,
    more: u64,
}

struct IncidentView {
    id: String,
    first: i128,
    last: i128,
    state: String,
    explanation: String,
    hint: String,
    members: String,
}

/// The aggregate a report is drawn from.
pub struct Report {
    t0: Option<i128>,
    width: i128,
    end: i128,
    charts: BTreeMap<Chart, ChartData>,
    macs: BTreeMap<String, MacLane>,
    macs_folded: u64,
    alerts: Vec<(i128, String, String)>,
    alerts_more: u64,
    incidents: BTreeMap<String, IncidentView>,
    incidents_more: u64,
    by_action: BTreeMap<&'static str, u64>,
    hosts: BTreeSet<String>,
    /// Host of each network namespace seen (merged captures): names the
    /// host of detector lines that carry a namespace but no host.
    netns_host: HashMap<u32, std::sync::Arc<str>>,
    lost: u64,
    lost_total: u64,
    filtered: u64,
    sink_dropped: u64,
    events: u64,
}

impl Default for Report {
    fn default() -> Self {
        Self::new()
    }
}

fn add(s: &mut Series, b: usize, n: u64) {
    if s.buckets.len() < BUCKETS {
        s.buckets.resize(BUCKETS, 0);
    }
    s.buckets[b] += n;
    s.total += n;
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn endpoint(e: &crate::event::Endpoint) -> String {
    let mut s = match (e.ip, e.port) {
        (Some(ip), Some(p)) => format!("{ip}:{p}"),
        (Some(ip), None) => ip.to_string(),
        _ => "?".into(),
    };
    if let Some(c) = &e.container {
        let _ = write!(s, " ({})", c.display_name());
    }
    s
}

impl Report {
    pub fn new() -> Self {
        Self {
            t0: None,
            width: FIRST_WIDTH_NS,
            end: i128::MIN,
            charts: BTreeMap::new(),
            macs: BTreeMap::new(),
            macs_folded: 0,
            alerts: Vec::new(),
            alerts_more: 0,
            incidents: BTreeMap::new(),
            incidents_more: 0,
            by_action: BTreeMap::new(),
            hosts: BTreeSet::new(),
            netns_host: HashMap::new(),
            lost: 0,
            lost_total: 0,
            filtered: 0,
            sink_dropped: 0,
            events: 0,
        }
    }

    /// The bucket of `ts`, widening the buckets when it lies past the last.
    fn bucket(&mut self, ts: i128) -> usize {
        let t0 = *self.t0.get_or_insert(ts - ts.rem_euclid(1_000_000_000));
        while ts - t0 >= self.width * BUCKETS as i128 {
            self.width *= 2;
            let merge = |s: &mut Series| {
                if s.buckets.is_empty() {
                    return;
                }
                for i in 0..BUCKETS / 2 {
                    s.buckets[i] = s.buckets[2 * i] + s.buckets[2 * i + 1];
                }
                s.buckets[BUCKETS / 2..].fill(0);
            };
            for c in self.charts.values_mut() {
                c.series.values_mut().for_each(merge);
                merge(&mut c.other);
            }
        }
        // A line a little before the first (merged hosts): the first bucket.
        usize::try_from((ts - t0) / self.width)
            .unwrap_or(0)
            .min(BUCKETS - 1)
    }

    fn count(&mut self, chart: Chart, key: String, ts: i128, n: u64, tip: impl FnOnce() -> String) {
        let b = self.bucket(ts);
        let c = self.charts.entry(chart).or_default();
        let full = c.series.len() >= MAX_KEYS;
        match c.series.get_mut(&key) {
            Some(s) => add(s, b, n),
            None if full => {
                c.folded += n;
                add(&mut c.other, b, n);
            }
            None => {
                let s = c.series.entry(key).or_default();
                s.tip = Some(tip());
                add(s, b, n);
            }
        }
    }

    /// Folds one output line into the report.
    pub fn add(&mut self, e: &EcsEvent) {
        self.events += 1;
        *self.by_action.entry(e.event.action.as_str()).or_default() += 1;
        let ts = e.timestamp;
        if e.event.kind != Kind::State {
            self.end = self.end.max(ts);
        }
        let from_netns = match (&e.host, e.netns()) {
            (Some(h), Some(ns)) => {
                if self.netns_host.len() < MAX_KEYS * 16 {
                    self.netns_host.entry(ns).or_insert_with(|| h.name.clone());
                }
                None
            }
            (None, Some(ns)) => self.netns_host.get(&ns).cloned(),
            _ => None,
        };
        let host = match e.host.as_ref().map(|h| &h.name).or(from_netns.as_ref()) {
            Some(h) => {
                if !self.hosts.contains(&**h) {
                    self.hosts.insert(h.to_string());
                }
                format!("{h}: ")
            }
            None => String::new(),
        };
        let n = e.tracer.count.unwrap_or(1).max(1);
        match e.event.action {
            Action::FdbLearn | Action::FdbMove | Action::FdbDelete => {
                let t = &e.tracer;
                let port = t.port.as_deref().unwrap_or("");
                let key = format!(
                    "{host}{} port {}",
                    t.bridge.as_deref().unwrap_or("?"),
                    if port.is_empty() { "(local)" } else { port }
                );
                self.count(Chart::Fdb, key, ts, 1, String::new);
                if let Some(mac) = e.source.mac {
                    let mkey = format!(
                        "{host}{} on {}",
                        mac.hyphenated().as_str(),
                        t.bridge.as_deref().unwrap_or("?")
                    );
                    let p = if e.event.action == Action::FdbDelete {
                        "(deleted)".to_string()
                    } else if port.is_empty() {
                        "(local)".into()
                    } else {
                        port.to_string()
                    };
                    if let Some(l) = self.macs.get_mut(&mkey) {
                        if l.changes.last().is_some_and(|(_, q)| *q != p) {
                            if l.changes.len() < MAX_CHANGES {
                                l.changes.push((ts, p));
                            } else {
                                l.more += 1;
                            }
                        }
                    } else if self.macs.len() < MAX_MACS {
                        self.macs.insert(
                            mkey,
                            MacLane {
                                changes: vec![(ts, p)],
                                more: 0,
                            },
                        );
                    } else {
                        self.macs_folded += 1;
                    }
                }
            }
            Action::ArpReply => {
                let mut key = format!(
                    "{host}{} is-at {}",
                    e.source.ip.map(|i| i.to_string()).unwrap_or_default(),
                    e.source
                        .mac
                        .map(|m| m.hyphenated().as_str().to_string())
                        .unwrap_or_default()
                );
                if let Some(c) = e.source.container.as_ref().or(e.container.as_ref()) {
                    let _ = write!(key, " ({})", c.display_name());
                }
                self.count(Chart::Arp, key, ts, 1, String::new);
            }
            Action::TcpRetransmit | Action::TcpReset => {
                let key = format!(
                    "{host}{} → {}",
                    endpoint(&e.source),
                    endpoint(&e.destination)
                );
                let chart = if e.event.action == Action::TcpReset {
                    Chart::Reset
                } else {
                    Chart::Retransmit
                };
                self.count(chart, key, ts, 1, String::new);
            }
            Action::SkbDrop | Action::DropSummary => {
                let reason = e.tracer.reason.as_deref().unwrap_or("?");
                let loc = e.tracer.location.as_deref();
                let key = format!("{host}{reason} @ {}", loc.unwrap_or("?"));
                self.count(Chart::Drop, key, ts, n, || {
                    let x = explain_drop(reason, loc);
                    format!("{} — check: {}", x.meaning, x.check)
                });
            }
            // Every detector alert (new detectors included).
            a if e.event.kind == Kind::Alert && a != Action::Incident => {
                self.count(
                    Chart::Alert,
                    e.event.action.as_str().to_string(),
                    ts,
                    1,
                    String::new,
                );
                if self.alerts.len() < MAX_ALERTS {
                    self.alerts.push((
                        ts,
                        e.event.action.as_str().to_string(),
                        e.message.clone().unwrap_or_default(),
                    ));
                } else {
                    self.alerts_more += 1;
                }
            }
            Action::Incident => self.incident(e),
            Action::LossReport => {
                self.lost += e.tracer.lost.unwrap_or(0);
                self.lost_total = self.lost_total.max(e.tracer.lost_total.unwrap_or(0));
                let sum = |m: &Option<Box<serde_json::Map<String, serde_json::Value>>>| {
                    m.as_ref()
                        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>())
                };
                self.filtered += sum(&e.tracer.filtered);
                self.sink_dropped += sum(&e.tracer.sink_dropped);
            }
            _ => {}
        }
    }

    fn incident(&mut self, e: &EcsEvent) {
        let Some(v) = e.tracer.incident.as_ref().map(|r| r.value()) else {
            return;
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let id = s("id");
        if !self.incidents.contains_key(&id) && self.incidents.len() >= MAX_INCIDENTS {
            self.incidents_more += 1;
            return;
        }
        let list = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let mut members = Vec::new();
        for (k, label) in [
            ("containers", "containers"),
            ("ips", "IPs"),
            ("macs", "MACs"),
        ] {
            let l = list(k);
            if !l.is_empty() {
                members.push(format!("{label}: {l}"));
            }
        }
        let entry = self.incidents.entry(id.clone()).or_insert(IncidentView {
            id,
            first: e.timestamp,
            last: e.timestamp,
            state: String::new(),
            explanation: String::new(),
            hint: String::new(),
            members: String::new(),
        });
        entry.first = entry.first.min(e.timestamp);
        entry.last = entry.last.max(e.timestamp);
        entry.state = s("state");
        if !s("explanation").is_empty() {
            entry.explanation = s("explanation");
        }
        if !s("hint").is_empty() {
            entry.hint = s("hint");
        }
        if let Some(m) = e
            .message
            .as_deref()
            .filter(|_| entry.explanation.is_empty())
        {
            entry.explanation = m.to_string();
        }
        entry.members = members.join("; ");
    }

    /// The HTML page.
    pub fn html(&self, title: &str, sources: &[String]) -> String {
        let mut h = String::with_capacity(1 << 20);
        let t0 = self.t0.unwrap_or(0);
        let end = self.end.max(t0 + self.width);
        let span = (end - t0).max(1);
        let _ = write!(
            h,
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
            esc(title)
        );
        let _ = write!(
            h,
            "<h1>{}</h1><p class=meta>{} → {} · {} lines · captures: {}{}</p>",
            esc(title),
            esc(&format_ts(t0)),
            esc(&format_ts(end)),
            self.events,
            esc(&sources.join(", ")),
            if self.hosts.len() > 1 {
                format!(
                    " · hosts: {}",
                    esc(&self.hosts.iter().cloned().collect::<Vec<_>>().join(", "))
                )
            } else {
                String::new()
            }
        );
        // Summary: the incidents, one paragraph each.
        h.push_str("<h2>Incidents</h2><div id=summary>");
        if self.incidents.is_empty() {
            h.push_str("<p>No incident: the detectors raised no alert in this capture.</p>");
        }
        let mut incs: Vec<&IncidentView> = self.incidents.values().collect();
        incs.sort_by_key(|i| i.first);
        for i in &incs {
            let _ = write!(h, "<p class=inc data-inc=\"{id}\"><b>{id}</b> ({state}, {a} → {b}): {x} <i>Hint: {hint}</i> <span class=members>{m}</span></p>",
                id = esc(&i.id), state = esc(&i.state), a = esc(&format_ts(i.first)), b = esc(&format_ts(i.last)),
                x = esc(&i.explanation), hint = esc(&i.hint), m = esc(&i.members));
        }
        if self.incidents_more > 0 {
            let _ = write!(
                h,
                "<p>… and {} more incidents not listed.</p>",
                self.incidents_more
            );
        }
        h.push_str("</div>");

        let x = |t: i128| -> f64 { LABEL_W + (t - t0) as f64 / span as f64 * CHART_W };
        let bands = |h: &mut String, height: f64| {
            for i in &incs {
                let (a, b) = (x(i.first), x(i.last).max(x(i.first) + 2.0));
                let _ = write!(h, "<rect class=band data-inc=\"{}\" x=\"{a:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\"><title>{}: {}</title></rect>", esc(&i.id), b - a, esc(&i.id), esc(&i.explanation));
            }
        };
        let axis = |h: &mut String, y: f64| {
            for k in 0..=5 {
                let t = t0 + span * k / 5;
                let px = x(t);
                let label = format_ts(t);
                let label = label.get(11..23).unwrap_or(&label);
                let _ = write!(h, "<line class=tick x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"0\" y2=\"{y}\"/><text class=tl x=\"{px:.1}\" y=\"{}\">{}</text>", y + 12.0, esc(label));
            }
        };

        // FDB: which port each MAC sat on over time.
        if !self.macs.is_empty() {
            let height = self.macs.len() as f64 * ROW_H + 16.0;
            let _ = write!(h, "<h2>Which port each MAC sat on (FDB)</h2><svg class=chart width=\"{W}\" height=\"{}\">", height + 4.0);
            bands(&mut h, height - 16.0);
            for (row, (mac, lane)) in self.macs.iter().enumerate() {
                let y = row as f64 * ROW_H;
                let _ = write!(
                    h,
                    "<text class=lab x=\"0\" y=\"{:.1}\">{}</text>",
                    y + ROW_H * 0.65,
                    esc(&trim(mac))
                );
                for (k, (t, port)) in lane.changes.iter().enumerate() {
                    let next = lane.changes.get(k + 1).map_or(end, |(t, _)| *t);
                    let (a, b) = (x(*t), x(next).max(x(*t) + 1.5));
                    let _ = write!(h, "<rect class=seg fill=\"{}\" x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{} on {} from {}</title></rect>", color(port), y + 3.0, b - a, ROW_H - 6.0, esc(mac), esc(port), esc(&format_ts(*t)));
                }
                if lane.more > 0 {
                    let _ = write!(
                        h,
                        "<text class=lab x=\"{:.1}\" y=\"{:.1}\">+{} changes</text>",
                        LABEL_W + CHART_W + 4.0,
                        y + ROW_H * 0.65,
                        lane.more
                    );
                }
            }
            axis(&mut h, height - 16.0);
            h.push_str("</svg>");
            if self.macs_folded > 0 {
                let _ = write!(
                    h,
                    "<p class=meta>{} FDB events of further MACs not drawn.</p>",
                    self.macs_folded
                );
            }
        }

        for chart in Chart::ALL {
            let Some(c) = self.charts.get(&chart) else {
                continue;
            };
            let mut rows: Vec<(&String, &Series)> = c.series.iter().collect();
            rows.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
            let mut other = vec![0u64; BUCKETS];
            let mut other_total = c.other.total;
            let mut other_n = 0usize;
            for (i, v) in c.other.buckets.iter().enumerate() {
                other[i] += v;
            }
            for (_, s) in rows.iter().skip(TOP) {
                other_n += 1;
                other_total += s.total;
                for (i, v) in s.buckets.iter().enumerate() {
                    other[i] += v;
                }
            }
            rows.truncate(TOP);
            let other_series = Series {
                buckets: other,
                total: other_total,
                tip: None,
            };
            let other_label = format!(
                "other ({} series{})",
                other_n,
                if c.folded > 0 {
                    format!(", {} events past the {MAX_KEYS}-series limit", c.folded)
                } else {
                    String::new()
                }
            );
            let mut all: Vec<(&str, &Series)> =
                rows.iter().map(|(k, s)| (k.as_str(), *s)).collect();
            if other_total > 0 {
                all.push((&other_label, &other_series));
            }
            let height = all.len() as f64 * ROW_H + 16.0;
            let _ = write!(
                h,
                "<h2>{}</h2><svg class=chart width=\"{W}\" height=\"{}\">",
                esc(chart.title()),
                height + 4.0
            );
            bands(&mut h, height - 16.0);
            let bw = CHART_W / BUCKETS as f64 * (self.width as f64 * BUCKETS as f64 / span as f64);
            for (row, (label, s)) in all.iter().enumerate() {
                let y = row as f64 * ROW_H;
                let max = s.buckets.iter().copied().max().unwrap_or(1).max(1) as f64;
                let tip = s
                    .tip
                    .as_deref()
                    .map(|t| format!("<title>{}</title>", esc(t)))
                    .unwrap_or_default();
                let _ = write!(h, "<text class=lab x=\"0\" y=\"{:.1}\">{}{tip}</text><line class=base x1=\"{LABEL_W}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/>", y + ROW_H * 0.65, esc(&if label.starts_with("other (") { label.to_string() } else { trim(label) }), LABEL_W + CHART_W, y + ROW_H - 2.0, y + ROW_H - 2.0);
                for (b, &v) in s.buckets.iter().enumerate() {
                    if v == 0 {
                        continue;
                    }
                    let bt = t0 + self.width * b as i128;
                    let bh = (v as f64 / max * (ROW_H - 5.0)).max(1.5);
                    let bx = x(bt).min(LABEL_W + CHART_W - 1.0);
                    let bwid = bw.max(1.0).min(LABEL_W + CHART_W - bx);
                    let _ = write!(h, "<rect class=\"bar c{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bwid:.1}\" height=\"{bh:.1}\"><title>{v} at {}</title></rect>", chart as u8, bx, y + ROW_H - 2.0 - bh, esc(&format_ts(bt)));
                }
                let _ = write!(
                    h,
                    "<text class=tot x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    LABEL_W + CHART_W + 4.0,
                    y + ROW_H * 0.65,
                    s.total
                );
            }
            axis(&mut h, height - 16.0);
            h.push_str("</svg>");
        }

        if !self.alerts.is_empty() {
            h.push_str("<h2>Alerts</h2><table>");
            for (t, a, m) in &self.alerts {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&format_ts(*t)),
                    esc(a),
                    esc(m)
                );
            }
            h.push_str("</table>");
            if self.alerts_more > 0 {
                let _ = write!(
                    h,
                    "<p class=meta>… and {} more alerts (see `tracer replay`).</p>",
                    self.alerts_more
                );
            }
        }

        // Loss accounting.
        h.push_str("<h2>Loss accounting</h2><table id=loss>");
        let rows: [(&str, u64); 4] = [
            (
                "records the kernel could not deliver (ring buffer full)",
                self.lost.max(self.lost_total),
            ),
            (
                "drops not sent by the kernel (filtered reasons)",
                self.filtered,
            ),
            (
                "lines an output could not deliver (queue full)",
                self.sink_dropped,
            ),
            ("lines in this report", self.events),
        ];
        for (k, v) in rows {
            let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
        }
        for (a, n) in &self.by_action {
            let _ = write!(h, "<tr><td>{}</td><td>{n}</td></tr>", esc(a));
        }
        let folded: u64 = self.charts.values().map(|c| c.folded).sum::<u64>() + self.macs_folded;
        let _ = write!(h, "<tr><td>events counted in \"other\" (past the series limit)</td><td>{folded}</td></tr></table>");
        let _ = write!(h, "<p class=meta>Bucket width {} ms; {BUCKETS} buckets; {TOP} largest series per chart, the rest in \"other\".</p>", self.width / 1_000_000);
        let _ = write!(h, "<script>{SCRIPT}</script></body></html>");
        h
    }
}

const W: f64 = 1360.0;
const LABEL_W: f64 = 330.0;
const CHART_W: f64 = 960.0;
const ROW_H: f64 = 22.0;

fn trim(s: &str) -> String {
    if s.chars().count() <= 52 {
        return s.to_string();
    }
    let t: String = s.chars().take(51).collect();
    format!("{t}…")
}

/// A stable colour per port name.
fn color(s: &str) -> String {
    let h = s
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    format!("hsl({},65%,50%)", h % 360)
}

const STYLE: &str = "body{font:13px sans-serif;margin:16px;color:#222;background:#fff}h1{font-size:20px}h2{font-size:15px;margin:18px 0 4px}\
.meta{color:#666}.inc{background:#fff3e0;border-left:4px solid #e65100;padding:6px 10px;margin:6px 0}.members{color:#555;display:block}\
svg.chart{display:block;border:1px solid #ddd}.lab,.tot,.tl{font:11px monospace;fill:#333}.tl{fill:#777}.tick{stroke:#eee}.base{stroke:#ddd}\
.band{fill:#e65100;fill-opacity:.12}.band.hi{fill-opacity:.35}.bar.c0{fill:#1565c0}.bar.c1{fill:#6a1b9a}.bar.c2{fill:#ef6c00}.bar.c3{fill:#c62828}\
.bar.c4{fill:#2e7d32}.bar.c5{fill:#d84315}table{border-collapse:collapse}td{border:1px solid #ddd;padding:2px 6px;font:12px monospace}";

/// Hovering an incident's paragraph highlights its bands; `data-ok`
/// tells a headless check that the script ran to its end.
const SCRIPT: &str = "(function(){var ps=document.querySelectorAll('p.inc');\
for(var i=0;i<ps.length;i++){(function(p){var id=p.getAttribute('data-inc');\
function set(on){var bs=document.querySelectorAll('rect.band');for(var j=0;j<bs.length;j++){if(bs[j].getAttribute('data-inc')===id){bs[j].classList.toggle('hi',on);}}}\
p.addEventListener('mouseenter',function(){set(true)});p.addEventListener('mouseleave',function(){set(false)});})(ps[i]);}\
document.body.dataset.charts=String(document.querySelectorAll('svg.chart').length);\
document.body.dataset.ok='1';})();";

/// Replays `paths` (one capture, or one per host) and builds the report.
pub fn build(paths: &[PathBuf], opts: &ReplayOptions) -> anyhow::Result<(Report, ReplaySummary)> {
    let mut r = Report::new();
    let summary = drive(paths, opts, &mut |batch| {
        for e in batch {
            r.add(e);
        }
        Ok(())
    })?;
    Ok((r, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_bounded_and_keep_counts() {
        let mut r = Report::new();
        let t0 = 1_700_000_000_000_000_000i128;
        for i in 0..100_000i128 {
            let mut e = EcsEvent::new(t0 + i * 7_000_000, Kind::Event, Action::SkbDrop);
            e.tracer.reason = Some(format!("R{}", i % 1000).into());
            r.add(&e);
        }
        let c = &r.charts[&Chart::Drop];
        assert_eq!(c.series.len(), MAX_KEYS);
        let total: u64 = c.series.values().map(|s| s.total).sum::<u64>() + c.other.total;
        assert_eq!(total, 100_000);
        let in_buckets: u64 = c
            .series
            .values()
            .flat_map(|s| s.buckets.iter())
            .sum::<u64>()
            + c.other.buckets.iter().sum::<u64>();
        assert_eq!(in_buckets, 100_000, "widening the buckets loses nothing");
        assert!(c.series.values().all(|s| s.buckets.len() == BUCKETS));
        let html = r.html("t", &[]);
        assert!(html.contains("other (") && html.contains("past the 256-series limit"));
        assert!(html.len() < 2 << 20, "{} bytes", html.len());
    }

    #[test]
    fn html_escapes_and_has_no_external_reference() {
        let mut r = Report::new();
        let mut e = EcsEvent::new(1, Kind::Event, Action::SkbDrop);
        e.tracer.reason = Some("<script>x</script>".into());
        r.add(&e);
        let html = r.html("a<b", &["x&y".into()]);
        assert!(!html.contains("<script>x"));
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains(" src="));
    }
}
