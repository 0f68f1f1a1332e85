//! `mtu_blackhole` from segment sizes, when no drop says it: a TCP flow
//! whose retransmitted segments are all full-size (as large as the socket's
//! MSS, i.e. packets as large as the path MTU it believes in) and never get
//! through, while its handshake's small packets did. That is what a sender
//! sees when a hop with a smaller MTU drops its large packets and the ICMP
//! "fragmentation needed" never comes back (a firewall filters it), and the
//! hop is on another host or in a namespace tracer does not watch: the
//! `PKT_TOO_BIG` drop the other `mtu_blackhole` rule names is not there.
//!
//! The retransmit probe reads what was retransmitted from the kernel: the
//! skb's length and its segments (`TCP_SKB_CB(skb)`), the socket's MSS
//! (`mss_cache`) and the path MTU it is cut for (`icsk_pmtu_cookie`)
//! (`tracer.tcp.seg_len`, `segs`, `mss`, `pmtu`), so a replay decides the
//! same.
//!
//! An episode of a flow counts its retransmits without progress (`snd_una`
//! unchanged). It alerts once `retransmit-threshold` of them were all
//! full-size. It ends without an alert when the flow progresses (a new
//! `snd_una`: the segment got through), when a segment smaller than the MSS
//! is retransmitted (small packets fail too: not a question of size), or
//! when the MSS shrinks (path-MTU discovery works: the kernel learned a
//! smaller MTU and cuts smaller segments, which then pass). A flow whose
//! source and destination already have a too-big drop on this host is left
//! to the drop rule, which says more (where the packets die, that hop's
//! MTU). State: one entry per retransmitting flow with segment sizes, and
//! the (source, destination) pairs of too-big drops, bounded by
//! `--detect-max-keys` (evictions counted in `detector_status` with the
//! overlay detector's).
//!
//! A peer that vanished in the middle of a bulk transfer also leaves only
//! full-size segments unanswered; the alert states the evidence (segment and
//! packet size, how many tries) and how to confirm (`ping -M do`).

use std::net::IpAddr;

use serde::Serialize;

use super::{
    alert_line,
    table::{Bounded, Stamped},
    text, Cfg, Facts, Member, NetFacts, Sink, Symptom,
};
use crate::{
    event::{Action, ContainerRef, EcsEvent, Netns},
    kernel::clock::format_ts,
};

/// Flows quiet for longer than this are forgotten: the longest gap between
/// two retransmits of one segment is Linux's `TCP_RTO_MAX` (120 s), plus a
/// margin.
const KEEP: i128 = 130 * super::NS_PER_S;

/// Smallest MSS taken as a "full-size" segment: IPv4's minimum (576-byte
/// packets) less the headers. A socket with a smaller MSS is not sending
/// large packets at all.
const MIN_MSS: u32 = 536;

/// Bytes of IPv4 + TCP headers without options, when the socket does not
/// say its path MTU.
const HEADERS: u32 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Flow {
    netns: u32,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

#[derive(Default)]
struct Episode {
    snd_una: Option<u32>,
    /// Full-size retransmits without progress.
    count: u32,
    first: i128,
    last: i128,
    /// The largest segment retransmitted and the MSS/path MTU it was cut for.
    seg: u32,
    mss: u32,
    pmtu: u32,
    alerted: bool,
}

impl Stamped for Episode {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

struct TooBig {
    last: i128,
}

impl Stamped for TooBig {
    fn last_seen(&self) -> i128 {
        self.last
    }
}

pub(crate) struct Segments {
    threshold: u32,
    flows: Bounded<Flow, Episode>,
    /// (source, destination) of too-big drops seen anywhere on this host.
    too_big: Bounded<(IpAddr, IpAddr), TooBig>,
}

#[derive(Serialize)]
struct End<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a Netns>,
    port: u16,
}

#[derive(Serialize)]
struct SegmentAlert<'a> {
    destination: End<'a>,
    evidence: &'static str,
    first_seen: String,
    hint: &'a str,
    last_seen: String,
    mss: u32,
    /// Size of the packets that do not get through (segment + headers).
    packet_len: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_interface: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pmtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recommended_mtu: Option<u32>,
    /// Full-size retransmits without progress.
    retransmits: u32,
    segment_len: u32,
    source: End<'a>,
    #[serde(rename = "type")]
    type_: &'static str,
}

impl Segments {
    pub(crate) fn new(c: &Cfg) -> Self {
        Self {
            threshold: c.rtx_threshold,
            flows: Bounded::new(c.max_keys),
            too_big: Bounded::new(c.max_keys),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.flows.len() + self.too_big.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.flows.evicted + self.too_big.evicted
    }

    pub(crate) fn expired(&self) -> u64 {
        self.flows.expired + self.too_big.expired
    }

    pub(crate) fn expire(&mut self, now: i128) {
        self.flows.expire(|e| now - e.last <= KEEP);
        self.too_big.expire(|e| now - e.last <= KEEP);
    }

    /// A too-big drop (the drop rule alerts about it): its flow is left to
    /// that rule.
    pub(crate) fn too_big(&mut self, ev: &EcsEvent, t: i128) {
        if let (Some(s), Some(d)) = (ev.source.ip, ev.destination.ip) {
            self.too_big.entry((s, d), || TooBig { last: t }).last = t;
        }
    }

    /// One retransmit. Cheap for records without segment sizes (older
    /// kernels and captures: two field checks).
    pub(crate) fn retransmit(
        &mut self,
        ev: &EcsEvent,
        t: i128,
        facts: &dyn NetFacts,
        sink: &mut Sink,
    ) {
        let Some(tcp) = ev.tracer.tcp.as_ref() else {
            return;
        };
        let (Some(seg), Some(mss)) = (tcp.seg_len, tcp.mss) else {
            return;
        };
        // Connections that never established are connect_failed's.
        if matches!(
            tcp.state,
            Some("SYN_SENT" | "SYN_RECV" | "NEW_SYN_RECV") | None
        ) {
            return;
        }
        let (Some(src), Some(sport), Some(dst), Some(dport)) = (
            ev.source.ip,
            ev.source.port,
            ev.destination.ip,
            ev.destination.port,
        ) else {
            return;
        };
        let key = Flow {
            netns: ev.netns().unwrap_or(0),
            src,
            sport,
            dst,
            dport,
        };
        let full = mss >= MIN_MSS && seg >= mss;
        if !full && self.flows.get(&key).is_none() {
            return;
        }
        let e = self.flows.entry(key, Episode::default);
        let progressed = e.count > 0 && e.snd_una != tcp.snd_una;
        let shrank = e.count > 0 && mss < e.mss;
        if progressed || shrank || !full {
            // It got through, the kernel learned a smaller MTU, or small
            // segments fail too: the episode ends (a new one may start).
            *e = Episode::default();
            if !full {
                self.flows.remove(&key);
                return;
            }
        }
        if e.count == 0 {
            e.first = t;
            e.snd_una = tcp.snd_una;
        }
        e.count += 1;
        e.last = t;
        e.seg = e.seg.max(seg);
        e.mss = mss;
        e.pmtu = tcp.pmtu.unwrap_or(0);
        if e.alerted {
            sink.touch(
                Member::Ip(dst),
                Some(Action::MtuBlackhole),
                u64::from(e.count),
            );
            return;
        }
        if e.count < self.threshold || self.too_big.get(&(src, dst)).is_some() {
            return;
        }
        e.alerted = true;
        let (count, first, seg, mss, pmtu) = (e.count, e.first, e.seg, e.mss, e.pmtu);
        let (line, sym) = alert(ev, key, count, first, seg, mss, pmtu, t, facts);
        sink.alert(line, sym);
    }
}

/// The alert line and its incident symptom.
#[allow(clippy::too_many_arguments)]
fn alert(
    ev: &EcsEvent,
    key: Flow,
    count: u32,
    first: i128,
    seg: u32,
    mss: u32,
    pmtu: u32,
    t: i128,
    facts: &dyn NetFacts,
) -> (EcsEvent, Symptom) {
    let client: Option<&ContainerRef> = ev.source.container.as_ref().or(ev.container.as_ref());
    let netns = ev.tracer.netns.as_ref();
    // The packets that die: the segment plus the headers the socket counts
    // between its path MTU and its MSS.
    let headers = if pmtu > mss { pmtu - mss } else { HEADERS };
    let packet = seg.min(mss) + headers;
    // A smaller MTU known in the sender's own namespace, else none: the
    // hop is beyond what tracer sees.
    let path = facts.smallest_mtu(key.netns).filter(|(_, m)| *m < packet);
    let recommended = path.as_ref().map(|(_, m)| *m);
    let who = match client {
        Some(c) => format!("{} ({}:{})", c.display_name(), key.src, key.sport),
        None => format!("{}:{} ({})", key.src, key.sport, text::ns_label(netns)),
    };
    let dst = match &ev.destination.container {
        Some(c) => format!("{} ({}:{})", c.display_name(), key.dst, key.dport),
        None => format!("{}:{}", key.dst, key.dport),
    };
    let flow = format!("{} → {}", key.src, key.dst);
    let message = format!(
        "{who} → {dst}: only full-size segments are retransmitted ({seg} bytes, {packet}-byte packets, {count}× without getting through) while the connection's small packets passed — an MTU blackhole: a hop on the way carries less than {packet} bytes and its ICMP \"fragmentation needed\" never reaches the sender (no drop of these packets seen on this host)"
    );
    let exec = text::NsRef::new(netns, client).cmd("ping");
    let probe = packet.saturating_sub(28);
    let hint = match recommended {
        Some(m) => format!(
            "set the network's MTU to {m} or less (docker network create --opt com.docker.network.driver.mtu={m} …), or let ICMP \"fragmentation needed\" (type 3 code 4) through every firewall on the path so path-MTU discovery works"
        ),
        None => format!(
            "find the path's MTU ({exec} -M do -s {probe} {} fails where {packet}-byte packets do not fit; lower -s until it passes) and set the network's MTU under it (docker network create --opt com.docker.network.driver.mtu=…; 1450 for a VXLAN overlay on a 1500-byte network), or let ICMP \"fragmentation needed\" (type 3 code 4) through every firewall on the path so path-MTU discovery works",
            key.dst
        ),
    };
    let payload = SegmentAlert {
        type_: "mtu_blackhole",
        evidence: "segment_sizes",
        source: End {
            container: text::container_name(client),
            ip: key.src,
            netns,
            port: key.sport,
        },
        destination: End {
            container: text::container_name(ev.destination.container.as_ref()),
            ip: key.dst,
            netns: None,
            port: key.dport,
        },
        first_seen: format_ts(first),
        last_seen: format_ts(t),
        hint: &hint,
        mss,
        packet_len: packet,
        path_interface: path.as_ref().map(|(n, _)| n.as_str()),
        path_mtu: recommended,
        pmtu: (pmtu != 0).then_some(pmtu),
        recommended_mtu: recommended,
        retransmits: count,
        segment_len: seg,
    };
    let mut line = alert_line(t, Action::MtuBlackhole, message, &payload);
    line.container = client.cloned();
    line.source = ev.source.clone();
    line.destination = ev.destination.clone();
    line.network = ev.network.clone();
    line.tracer.netns = ev.tracer.netns.clone();
    line.tracer.count = Some(u64::from(count));
    let sym = Symptom {
        kind: Action::MtuBlackhole,
        count: u64::from(count),
        containers: super::distinct_containers(
            client.into_iter().chain(ev.destination.container.as_ref()),
        ),
        ips: vec![key.src, key.dst],
        macs: Vec::new(),
        facts: Facts::Mtu {
            flow,
            place: format!("a hop on the way to {}", key.dst),
            recommended,
            hint,
            reason: format!("only full-size segments ({packet}-byte packets) retransmitted"),
        },
    };
    (line, sym)
}
