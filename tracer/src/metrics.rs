//! `--metrics ADDR:PORT`: Prometheus exposition (OpenMetrics text, through
//! `prometheus-client`) at `/metrics`, fed from the pipeline's output lines.
//!
//! [`Observer`] looks at every event the live run prints (only when
//! `--metrics` is given: off, it costs nothing) and updates counters and
//! gauges; [`serve`] answers scrapes on a tokio task. What is counted:
//!
//! | metric | labels |
//! |---|---|
//! | `tracer_events_total` | `action` |
//! | `tracer_drops_total` | `reason`, `container`, `netns` (drops printed and drops a `drop_summary` counted) |
//! | `tracer_alerts_total` | `type` |
//! | `tracer_incidents_open` | `type` (first alert type of the incident) |
//! | `tracer_ring_lost_total` | `probe` (kernel records the ring buffer could not take) |
//! | `tracer_sink_dropped_total` | `sink` (lines an `--output` could not deliver) |
//! | `tracer_enrichment_up` | `source` (1: available, 0: degraded) |
//! | `tracer_probe_status` | `probe`, `status` (1 for the probe's current status) |
//! | `tracer_label_folded_total` | `label` (values folded into `other`) |
//!
//! Label cardinality is bounded: beyond [`MAX_CONTAINERS`] distinct
//! containers (and as many namespaces) new values are reported as `other`,
//! and each such event counts in `tracer_label_folded_total`.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::event::{Action, EcsEvent, Kind};

/// Distinct container (and namespace) label values kept; more fold into
/// `other`.
pub const MAX_CONTAINERS: usize = 200;

type Labels = Vec<(&'static str, String)>;

/// What `probe_status` says of a probe.
const PROBE_STATES: [&str; 3] = ["attached", "failed", "disabled"];

/// Parses `--metrics`: `PORT` (loopback), `ADDR:PORT`, `[V6]:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?}: use PORT (loopback) or ADDR:PORT, e.g. 0.0.0.0:9464"))
}

/// Updates the metrics from output events (the live run's thread).
pub struct Observer {
    events: Vec<Counter>,
    drops: Family<Labels, Counter>,
    alerts: Family<Labels, Counter>,
    incidents_open: Family<Labels, Gauge>,
    ring_lost: Family<Labels, Counter>,
    sink_dropped: Family<Labels, Counter>,
    enrichment: Family<Labels, Gauge>,
    probes: Family<Labels, Gauge>,
    folded: Family<Labels, Counter>,
    containers: HashSet<String>,
    netns: HashSet<String>,
    limit: usize,
    /// Open incidents: id → type.
    open: HashMap<String, String>,
}

/// Builds the registry and its observer.
pub fn new(limit: usize) -> (Observer, Arc<Registry>) {
    let mut r = Registry::with_prefix("tracer");
    let events_family = Family::<Labels, Counter>::default();
    r.register(
        "events",
        "Lines printed, per event.action",
        events_family.clone(),
    );
    let events = Action::ALL
        .iter()
        .map(|a| {
            events_family
                .get_or_create(&vec![("action", a.as_str().to_string())])
                .clone()
        })
        .collect();
    let o = Observer {
        events,
        drops: Default::default(),
        alerts: Default::default(),
        incidents_open: Default::default(),
        ring_lost: Default::default(),
        sink_dropped: Default::default(),
        enrichment: Default::default(),
        probes: Default::default(),
        folded: Default::default(),
        containers: HashSet::new(),
        netns: HashSet::new(),
        limit,
        open: HashMap::new(),
    };
    r.register(
        "drops",
        "Packets the kernel dropped, per reason, container and network namespace",
        o.drops.clone(),
    );
    r.register("alerts", "Detector alerts, per type", o.alerts.clone());
    r.register(
        "incidents_open",
        "Incidents open now, per type",
        o.incidents_open.clone(),
    );
    r.register(
        "ring_lost",
        "Kernel records lost because the ring buffer was full, per probe",
        o.ring_lost.clone(),
    );
    r.register(
        "sink_dropped",
        "Lines an output could not deliver, per output",
        o.sink_dropped.clone(),
    );
    r.register(
        "enrichment_up",
        "Container identity source available (1) or degraded (0)",
        o.enrichment.clone(),
    );
    r.register(
        "probe_status",
        "Probe status: 1 for each probe's current status (attached, failed, disabled)",
        o.probes.clone(),
    );
    r.register(
        "label_folded",
        "Events whose label value was folded into `other` (cardinality bound)",
        o.folded.clone(),
    );
    (o, Arc::new(r))
}

impl Observer {
    /// A bounded label value: `v` while fewer than the limit were seen.
    fn bounded(&mut self, which: &'static str, v: String) -> String {
        let (set, limit) = match which {
            "container" => (&mut self.containers, self.limit),
            _ => (&mut self.netns, self.limit),
        };
        if v.is_empty() || set.contains(&v) {
            return v;
        }
        if set.len() < limit {
            set.insert(v.clone());
            return v;
        }
        self.folded
            .get_or_create(&vec![("label", which.to_string())])
            .inc();
        "other".into()
    }

    pub fn observe(&mut self, e: &EcsEvent) {
        let action = e.event.action;
        if let Some(c) = Action::ALL
            .iter()
            .position(|a| *a == action)
            .and_then(|i| self.events.get(i))
        {
            c.inc();
        }
        match action {
            Action::SkbDrop | Action::DropSummary => {
                let n = match action {
                    Action::SkbDrop => 1,
                    _ => e.tracer.count.unwrap_or(0),
                };
                let reason = e.tracer.reason.as_deref().unwrap_or("").to_string();
                let container = e
                    .container
                    .as_ref()
                    .map(|c| c.display_name())
                    .unwrap_or_default();
                let netns = e
                    .tracer
                    .netns
                    .as_ref()
                    .map(|n| match &n.name {
                        Some(name) => name.to_string(),
                        None => n.inode.to_string(),
                    })
                    .unwrap_or_default();
                let container = self.bounded("container", container);
                let netns = self.bounded("netns", netns);
                self.drops
                    .get_or_create(&vec![
                        ("reason", reason),
                        ("container", container),
                        ("netns", netns),
                    ])
                    .inc_by(n);
            }
            Action::Incident => self.incident(e),
            Action::LossReport => {
                for (map, fam) in [
                    (&e.tracer.lost_by_probe, &self.ring_lost),
                    (&e.tracer.sink_dropped, &self.sink_dropped),
                ] {
                    let label = if std::ptr::eq(fam, &self.ring_lost) {
                        "probe"
                    } else {
                        "sink"
                    };
                    for (k, v) in map.iter().flat_map(|m| m.iter()) {
                        if let Some(n) = v.as_u64() {
                            fam.get_or_create(&vec![(label, k.clone())]).inc_by(n);
                        }
                    }
                }
            }
            Action::EnrichmentStatus => {
                if let Some(m) = e.tracer.enrichment.as_deref() {
                    let source = m["source"].as_str().unwrap_or("").to_string();
                    let up = i64::from(m["state"] == "ok");
                    self.enrichment
                        .get_or_create(&vec![("source", source)])
                        .set(up);
                }
            }
            Action::ProbeStatus => {
                if let Some(p) = e.tracer.probe.as_deref() {
                    // One series per probe and status: 1 for the status it has now.
                    for s in PROBE_STATES.iter().copied().chain([p.status]) {
                        let labels = vec![("probe", p.name.clone()), ("status", s.to_string())];
                        if s == p.status {
                            self.probes.get_or_create(&labels).set(1);
                        } else if let Some(g) = self.probes.get(&labels) {
                            g.set(0);
                        }
                    }
                }
            }
            _ if e.event.kind == Kind::Alert => {
                self.alerts
                    .get_or_create(&vec![("type", action.as_str().to_string())])
                    .inc();
            }
            _ => {}
        }
    }

    fn incident(&mut self, e: &EcsEvent) {
        let Some(raw) = &e.tracer.incident else {
            return;
        };
        #[derive(serde::Deserialize)]
        struct Inc {
            id: String,
            state: String,
            #[serde(default)]
            alerts: Vec<AlertRef>,
        }
        #[derive(serde::Deserialize)]
        struct AlertRef {
            #[serde(rename = "type")]
            type_: String,
        }
        let Ok(inc) = serde_json::from_str::<Inc>(raw.get()) else {
            return;
        };
        match inc.state.as_str() {
            "resolved" => {
                if let Some(t) = self.open.remove(&inc.id) {
                    self.incidents_open.get_or_create(&vec![("type", t)]).dec();
                }
            }
            _ if !self.open.contains_key(&inc.id) => {
                let t = inc
                    .alerts
                    .first()
                    .map(|a| a.type_.clone())
                    .unwrap_or_default();
                self.incidents_open
                    .get_or_create(&vec![("type", t.clone())])
                    .inc();
                self.open.insert(inc.id, t);
            }
            _ => {}
        }
    }
}

/// Serves `/metrics` on `addr` until the task is dropped. Binding happens
/// before it returns (an address in use is the caller's error).
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    answer(conn, &registry),
                )
                .await;
            });
        }
    });
    Ok((local, task))
}

/// One HTTP/1.x request, one answer, then close.
async fn answer(mut conn: tokio::net::TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() > 16 << 10 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, ctype, body) = if method != b"GET" && method != b"HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".to_string(),
        )
    } else if path == b"/metrics" {
        let mut body = String::new();
        match encode(&mut body, registry) {
            Ok(()) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            ),
            Err(_) => (
                "500 Internal Server Error",
                "text/plain",
                "encoding failed\n".into(),
            ),
        }
    } else {
        (
            "404 Not Found",
            "text/plain",
            "metrics are at /metrics\n".to_string(),
        )
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != b"HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    conn.write_all(&out).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ContainerData, ContainerRef, Netns};

    fn drop_in(container: Option<&str>, inode: u32, reason: &str) -> EcsEvent {
        let mut e = EcsEvent::new(1, Kind::Event, Action::SkbDrop);
        e.tracer.reason = Some(reason.into());
        e.tracer.netns = Some(Netns {
            inode,
            ..Default::default()
        });
        e.container = container.map(|n| {
            ContainerRef::new(ContainerData {
                id: format!("{n}-id"),
                name: Some(n.into()),
                ..Default::default()
            })
        });
        e
    }

    fn text(r: &Registry) -> String {
        let mut s = String::new();
        encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn drops_are_counted_per_reason_and_containers_fold_beyond_the_limit() {
        let (mut o, r) = new(2);
        for c in ["a", "b", "a", "c", "d"] {
            o.observe(&drop_in(Some(c), 7, "NO_SOCKET"));
        }
        let t = text(&r);
        assert!(
            t.contains(r#"tracer_drops_total{reason="NO_SOCKET",container="a",netns="7"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"tracer_drops_total{reason="NO_SOCKET",container="other",netns="7"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"tracer_label_folded_total{label="container"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"tracer_events_total{action="skb_drop"} 5"#),
            "{t}"
        );
    }

    #[test]
    fn sink_loss_adds_up_per_output() {
        let (mut o, r) = new(10);
        let mut e = EcsEvent::new(1, Kind::Metric, Action::LossReport);
        let mut m = serde_json::Map::new();
        m.insert("tcp://x:1".into(), 4.into());
        e.tracer.sink_dropped = Some(Box::new(m.clone()));
        o.observe(&e);
        o.observe(&e);
        let t = text(&r);
        assert!(
            t.contains(r#"tracer_sink_dropped_total{sink="tcp://x:1"} 8"#),
            "{t}"
        );
    }

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(parse_addr("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(parse_addr("0.0.0.0:1").unwrap().to_string(), "0.0.0.0:1");
        assert_eq!(parse_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(parse_addr("nope").is_err());
    }
}
