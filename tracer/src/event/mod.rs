//! Event schema v1: one ECS-style JSON object per line.
//!
//! ECS field sets used: `@timestamp`, `event.*`, `source.*`, `destination.*`,
//! `network.*`, `message`; everything tracer-specific lives under `tracer.*`.
//! Field order is fixed by these structs, so the same inputs always
//! serialise to the same bytes (replay relies on it).
//!
//! The schema (these structs, whose serde derive is the reference) and its
//! fast hand-written writer ([`ndjson`]) live together: a field added here
//! does not compile until [`ndjson`] writes it too.

pub mod ndjson;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::{Serialize, Serializer};
pub use smol_str::SmolStr;

pub use self::action::Action;

mod action;

/// Version of this schema, carried by `probe_status`/state lines.
pub const SCHEMA_VERSION: u32 = 1;

/// `event.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Event,
    Alert,
    Metric,
    State,
}

/// A MAC address, serialised the ECS way: upper-case hex octets separated by
/// hyphens (RFC 7042), e.g. `02-42-0A-00-00-03`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl Mac {
    /// The text form, `02-42-0A-00-00-03`, without formatting machinery
    /// (MACs are printed by the hundred in incident lines).
    pub fn hyphenated(&self) -> MacText {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut t = [b'-'; 17];
        for (i, &o) in self.0.iter().enumerate() {
            t[3 * i] = HEX[(o >> 4) as usize];
            t[3 * i + 1] = HEX[(o & 0xf) as usize];
        }
        MacText(t)
    }
}

/// [`Mac::hyphenated`]: 17 ASCII bytes.
pub struct MacText([u8; 17]);

impl MacText {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and hyphens are ever written.
        std::str::from_utf8(&self.0).unwrap_or("??-??-??-??-??-??")
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hyphenated().as_str())
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.hyphenated().as_str())
    }
}

/// `event.*`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventMeta {
    pub kind: Kind,
    pub action: Action,
    /// ECS `event.category`.
    pub category: &'static str,
    /// ECS `event.type`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// ECS `event.outcome` for probe status (`success`/`failure`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
}

/// `container.image`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Image {
    pub name: String,
}

/// Swarm-mode service and task of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Swarm {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// Compose project and service of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Compose {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// ECS `container.*` (plus swarm/compose identity), used for the event's
/// own container and for `source.container` / `destination.container`.
///
/// A shared handle: the identity index builds one per container and every
/// event naming it clones the `Arc`, not six strings. Its JSON is rendered
/// once, at creation, and written as is into every line that names it.
#[derive(Clone, Debug)]
pub struct ContainerRef(std::sync::Arc<ContainerInner>);

/// `json` first: it is what every line naming the container reads, and it
/// then shares a cache line with the reference count cloning just touched.
#[derive(Debug)]
#[repr(C)]
struct ContainerInner {
    json: Box<serde_json::value::RawValue>,
    data: ContainerData,
}

impl ContainerRef {
    pub fn new(data: ContainerData) -> Self {
        // Serialising our own struct of strings cannot fail; fall back to
        // an empty object rather than panic if it ever did.
        let json = serde_json::value::to_raw_value(&data).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("{}".into())
                .unwrap_or_else(|_| unreachable_raw())
        });
        Self(std::sync::Arc::new(ContainerInner { data, json }))
    }

    /// The most human name available: name, or short id.
    pub fn display_name(&self) -> String {
        self.0.data.display_name()
    }

    /// Identity of this handle (not of the container: two handles may
    /// name one container). Stable while the handle lives.
    pub fn addr(&self) -> usize {
        std::sync::Arc::as_ptr(&self.0) as usize
    }

    /// Same container (same handle, or same id).
    pub fn same(&self, other: &ContainerRef) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.data.id == other.0.data.id
    }

    /// The pre-rendered JSON object (what `Serialize` writes).
    pub fn raw_json(&self) -> &str {
        self.0.json.get()
    }
}

/// `{}` as a RawValue (never reached: "{}" is valid JSON).
fn unreachable_raw() -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&serde_json::Map::new())
        .unwrap_or_else(|_| unreachable!("an empty JSON object always serialises"))
}

impl Default for ContainerRef {
    fn default() -> Self {
        Self::new(ContainerData::default())
    }
}

impl PartialEq for ContainerRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.data == other.0.data
    }
}

impl Eq for ContainerRef {}

impl Serialize for ContainerRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.json.serialize(s)
    }
}

impl std::ops::Deref for ContainerRef {
    type Target = ContainerData;
    fn deref(&self) -> &ContainerData {
        &self.0.data
    }
}

impl From<ContainerData> for ContainerRef {
    fn from(d: ContainerData) -> Self {
        Self::new(d)
    }
}

/// The fields behind a [`ContainerRef`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerData {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// `docker`, `containerd`, `cri-o`, `podman`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<Swarm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose: Option<Compose>,
}

impl ContainerData {
    /// The most human name available: name, or short id.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        self.id.chars().take(12).collect()
    }
}

/// What sits behind a bridge port (or any interface).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// `container` (veth to a container), `vxlan` (overlay tunnel),
    /// `uplink`, `bridge`, `namespace` (veth to a non-container namespace),
    /// `unknown`.
    pub kind: &'static str,
    /// Interface name the peer is reached through (the port).
    pub interface: SmolStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
    /// Docker network (overlay/bridge network name) behind a vxlan or bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<SmolStr>,
    /// Named namespace on the other end of a veth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<SmolStr>,
}

/// `source.*` / `destination.*`
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Endpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// The container that owns this address, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
}

impl Endpoint {
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.port.is_none() && self.mac.is_none() && self.container.is_none()
    }
}

/// `network.*`
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Network {
    /// `ipv4`, `ipv6`, `arp`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<&'static str>,
    /// `tcp`, `udp`, `sctp`, `icmp`, or the protocol number as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<SmolStr>,
}

impl Network {
    pub fn is_empty(&self) -> bool {
        self.type_.is_none() && self.transport.is_none()
    }
}

/// `tracer.netns`
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Netns {
    pub inode: u32,
    /// `ip netns` name, Docker sandbox/overlay namespace name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<std::sync::Arc<str>>,
    /// Docker network whose namespace this is (overlay namespaces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<std::sync::Arc<str>>,
    /// The host's (initial) namespace, as identity knows it (Docker names
    /// it `default`): messages call it "the host's namespace" and hints run
    /// their commands there as they are. Filled by enrichment (identity
    /// updates carry it, so a replay knows it too); not printed.
    #[serde(skip)]
    pub host: bool,
}

/// `tracer.interface`
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Interface {
    pub name: SmolStr,
    pub index: u32,
    /// What the interface is by its link kind (rtnetlink `IFLA_INFO_KIND`,
    /// carried in identity updates so a replay knows it too): `vxlan`,
    /// `veth`, `bridge`, `uplink`, `other`; none when identity does not
    /// know the interface. Filled by enrichment for ARP replies, for the
    /// detectors; not printed.
    #[serde(skip)]
    pub kind: Option<&'static str>,
}

/// `tracer.neigh`: neighbour-table details.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Neigh {
    pub family: &'static str,
    pub old_state: SmolStr,
    pub new_state: SmolStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_mac: Option<Mac>,
    /// `NEIGH_UPDATE_F_*` flags as raw bits.
    pub flags: u32,
}

/// `tracer.tcp`: socket details.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tcp {
    /// `ESTABLISHED`, `SYN_SENT`, ...; absent when the event had no socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// `sent` or `received` for resets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    /// First unacknowledged sequence number (retransmits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snd_una: Option<u32>,
    /// Consecutive RTO retransmits of the socket (retransmits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<u8>,
    /// Milliseconds since the socket last received an ACK (retransmits;
    /// from `tcp_sock.rcv_tstamp`), absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_age_ms: Option<u32>,
    /// The socket's retransmission timeout in milliseconds (retransmits;
    /// `icsk_rto`), absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_ms: Option<u32>,
    /// Payload bytes of the (largest) segment retransmitted (retransmits;
    /// absent when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seg_len: Option<u32>,
    /// Segments in the retransmitted skb (retransmits; absent when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segs: Option<u16>,
    /// The socket's MSS (`mss_cache`) and the path MTU it is cut for
    /// (`icsk_pmtu_cookie`) when it retransmitted; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pmtu: Option<u32>,
    /// The state the socket left (`tcp_abort`: `SYN_SENT` for a connect
    /// that failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_state: Option<&'static str>,
    /// The socket's error (`tcp_abort`): `ECONNREFUSED`, `EHOSTUNREACH`,
    /// `ENETUNREACH`, `ETIMEDOUT`, `ECONNRESET` ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SmolStr>,
}

/// `tracer.icmp`: an ICMP error the kernel sent about a packet (the
/// event's `source`/`destination` are that packet's; `tracer.netns` and
/// `tracer.interface` where it arrived, i.e. who sent the error).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub type_: u8,
    pub code: u8,
    /// nftables' name of the type/code (`host-unreachable`,
    /// `admin-prohibited`, `frag-needed`, `time-exceeded` ...).
    pub name: &'static str,
    /// The address the error normally comes from (the first IPv4 address
    /// of that interface); absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<IpAddr>,
}

/// `tracer.service`: the swarm service whose virtual IP (VIP) the event's
/// destination address is. ECS has no field for "the service behind a
/// destination address" (`service.*` describes the observed service, not a
/// peer), so it lives under `tracer.*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
/// Fields in alphabetical order (it also goes into alert payloads).
pub struct ServiceRef {
    /// `vip` (Docker's default: one virtual IP, load-balanced by IPVS) or
    /// `dnsrr` (DNS round robin, no VIP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<String>,
    /// Service id.
    pub id: String,
    /// Service name (`docker service ls`).
    pub name: String,
    /// Docker network of the VIP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The destination address is the service's VIP.
    pub vip: bool,
}

/// `tracer.probe`: status of one kernel probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProbeInfo {
    pub name: String,
    pub tracepoint: String,
    /// `attached`, `failed`, `disabled`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A JSON value rendered once, when the line that carries it is made, and
/// copied as is into the line (alert and incident payloads: rendering them
/// straight from their structs costs a fraction of building a
/// `serde_json::Value` tree and serialising that).
///
/// Object keys come out in the order the payload struct declares them.
/// The payload structs declare them in alphabetical order, the order
/// tracer has always printed (a `serde_json::Value` sorts its keys); debug
/// builds check that every payload renders exactly as its `Value` would.
#[derive(Clone, Debug)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    /// Renders `v` as compact JSON. None if it cannot be rendered (a map
    /// with keys that are not strings).
    pub fn of(v: &impl Serialize) -> Option<Self> {
        let raw = serde_json::value::to_raw_value(v).ok()?;
        #[cfg(debug_assertions)]
        {
            let canonical = serde_json::to_value(v)
                .and_then(|v| serde_json::to_string(&v))
                .expect("a payload that renders also renders as a Value");
            assert_eq!(
                raw.get(),
                canonical,
                "payload keys out of alphabetical order (see RawJson)"
            );
        }
        Some(Self(raw))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parsed back (tests and tools; never on the hot path).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// `tracer.*`
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TracerFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<Netns>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
    /// Bridge name (FDB events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<SmolStr>,
    /// Bridge port the MAC is on now (FDB events; empty for a local entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<SmolStr>,
    /// Port the MAC was on before a move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_port: Option<SmolStr>,
    /// What is behind `port` (FDB events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_peer: Option<Box<Peer>>,
    /// What is behind `previous_port` (FDB moves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_port_peer: Option<Box<Peer>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Drop reason name from the kernel's `enum skb_drop_reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SmolStr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_raw: Option<u32>,
    /// Kernel symbol of the drop location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<SmolStr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neigh: Option<Neigh>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Tcp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<Icmp>,
    /// Swarm service whose VIP the destination is (see [`ServiceRef`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<std::sync::Arc<ServiceRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Box<ProbeInfo>>,
    /// Records the kernel could not deliver (ring buffer full), since the last report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Same, since start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_total: Option<u64>,
    /// Per probe breakdown of `lost` (only non-zero entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_by_probe: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Drops not sent by the kernel because their reason is filtered, by reason, since the last report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Lines each output (sink) could not deliver since the last report
    /// (its queue was full), by sink name (only non-zero entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink_dropped: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Records the kernel's per-kind budgets held back (not sent) since the last report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back: Option<u64>,
    /// `held_back` by probe, then by network namespace inode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back_by_probe: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Number of occurrences this line stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// CPU the probe ran on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Detector verdict (`event.kind: alert`), see [`crate::detect`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<RawJson>,
    /// Incident lifecycle (`event.action: incident`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<RawJson>,
    /// Enrichment state (`event.action: enrichment_status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<Box<serde_json::Value>>,
    /// Detector tables (`event.action: detector_status`): keys held,
    /// evictions, expiries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detect: Option<Box<serde_json::Value>>,
}

/// One output line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EcsEvent {
    #[serde(
        rename = "@timestamp",
        serialize_with = "crate::kernel::clock::serialize_ts"
    )]
    pub timestamp: i128,
    pub event: EventMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// ECS `container.*`: the container whose namespace the event happened in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
    #[serde(skip_serializing_if = "Endpoint::is_empty")]
    pub source: Endpoint,
    #[serde(skip_serializing_if = "Endpoint::is_empty")]
    pub destination: Endpoint,
    #[serde(skip_serializing_if = "Network::is_empty")]
    pub network: Network,
    pub tracer: TracerFields,
    /// ECS `host.*` of this event, when a replay merges several hosts'
    /// captures (otherwise the sink appends one `host.name` to every line).
    /// Last, where the sink's field goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
}

/// ECS `host.*`: the host that saw the event (from its capture header).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Host {
    pub name: std::sync::Arc<str>,
}

impl EcsEvent {
    /// An event with only the ECS envelope set. `timestamp` is Unix ns.
    /// Inlined: the record decoders then write it straight into its slot
    /// instead of copying 800 bytes from the stack.
    #[inline]
    pub fn new(timestamp: i128, kind: Kind, action: Action) -> Self {
        let (category, type_) = action.category();
        Self {
            timestamp,
            event: EventMeta {
                kind,
                action,
                category,
                type_,
                outcome: None,
            },
            message: None,
            container: None,
            source: Endpoint::default(),
            destination: Endpoint::default(),
            network: Network::default(),
            host: None,
            tracer: TracerFields::default(),
        }
    }

    /// Serialises as one JSON line (with the trailing newline) into `out`.
    /// Same bytes as `serde_json::to_writer` + `\n`, faster: see [`ndjson`].
    pub fn write_line(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        ndjson::write_line(self, out)
    }

    /// Network namespace inode of the event, if it has one.
    pub fn netns(&self) -> Option<u32> {
        self.tracer.netns.as_ref().map(|n| n.inode)
    }
}

/// 16 wire bytes to an IP address of the given version (4 or 6).
pub fn ip_from_wire(bytes: &[u8; 16], v6: bool) -> IpAddr {
    if v6 {
        let a = Ipv6Addr::from(*bytes);
        // A v4-mapped address on a dual-stack socket is an IPv4 peer.
        match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        }
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

/// Transport protocol name for an IPPROTO number.
pub fn transport_name(proto: u8) -> SmolStr {
    SmolStr::new_static(match proto {
        0 => "ipv6-hopopt",
        1 => "icmp",
        4 => "ipip",
        41 => "ipv6",
        43 => "ipv6-route",
        44 => "ipv6-frag",
        60 => "ipv6-opts",
        112 => "vrrp",
        6 => "tcp",
        17 => "udp",
        58 => "ipv6-icmp",
        132 => "sctp",
        2 => "igmp",
        47 => "gre",
        50 => "esp",
        n => return SmolStr::new(n.to_string()),
    })
}

/// NUL-padded kernel name (interface, bridge: at most 15 bytes) to an
/// inline string, no allocation (lossy: names are bytes).
pub fn ifname(bytes: &[u8]) -> SmolStr {
    // Every wire name is 16 bytes, and a run sees few interfaces: a small
    // per-thread cache of names by their 16 bytes (a hit costs a fifth of
    // the NUL search, UTF-8 check and copy, once or twice per record).
    const SLOTS: usize = 64;
    type Slots = [Option<(u128, SmolStr)>; SLOTS];
    thread_local! {
        static NAMES: std::cell::RefCell<Slots> =
            const { std::cell::RefCell::new([const { None }; SLOTS]) };
    }
    let Ok(b16) = <&[u8; 16]>::try_from(bytes) else {
        return ifname_uncached(bytes);
    };
    let key = u128::from_ne_bytes(*b16);
    let mix = (key as u64 ^ (key >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let i = (mix >> (64 - SLOTS.trailing_zeros())) as usize;
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        match &names[i] {
            Some((k, name)) if *k == key => name.clone(),
            _ => {
                let name = ifname_uncached(bytes);
                names[i] = Some((key, name.clone()));
                name
            }
        }
    })
}

fn ifname_uncached(bytes: &[u8]) -> SmolStr {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    match std::str::from_utf8(&bytes[..end]) {
        Ok(s) => SmolStr::new(s),
        Err(_) => SmolStr::new(String::from_utf8_lossy(&bytes[..end])),
    }
}

/// NUL-padded kernel name to a String (lossy: names are bytes).
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_ecs_formatted() {
        assert_eq!(
            Mac([0x02, 0x42, 0x0a, 0, 0, 3]).to_string(),
            "02-42-0A-00-00-03"
        );
    }

    #[test]
    fn v4_mapped_is_v4() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[10, 0, 0, 3]);
        assert_eq!(
            ip_from_wire(&b, true),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[192, 168, 1, 2]);
        assert_eq!(ip_from_wire(&v4, false).to_string(), "192.168.1.2");
    }

    #[test]
    fn cstr_stops_at_nul_and_survives_garbage() {
        assert_eq!(cstr(b"eth0\0\0\0\0"), "eth0");
        assert_eq!(cstr(b"abc"), "abc");
        assert_eq!(cstr(&[0xff, b'x', 0]), "\u{fffd}x");
    }

    #[test]
    fn empty_sections_are_omitted_and_order_is_fixed() {
        let mut e = EcsEvent::new(1_700_000_000_123_456_789, Kind::Event, Action::ArpReply);
        e.tracer.netns = Some(Netns {
            inode: 42,
            ..Netns::default()
        });
        let mut out = Vec::new();
        e.write_line(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "{\"@timestamp\":\"2023-11-14T22:13:20.123456789Z\",\"event\":{\"kind\":\"event\",\"action\":\"arp_reply\",\"category\":\"network\",\"type\":\"info\"},\"tracer\":{\"netns\":{\"inode\":42}}}\n"
        );
    }
}
