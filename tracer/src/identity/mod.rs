//! Container identity: which container, namespace and Docker network an
//! event belongs to, and who owns the addresses it names.
//!
//! Split in two halves so that output stays reproducible from a capture:
//!
//! - [`IdentityIndex`] is a pure in-memory structure changed only through
//!   [`IdentityUpdate`] values (serialisable, each with its event-time
//!   timestamp). Live, the collector applies them in arrival order and
//!   records them; a replay applies the recorded ones in the same order.
//!   [`IdentityIndex::enrich`] reads only the index: no I/O, no clock, no
//!   lock, so it never holds up the ring-buffer reader.
//! - [`spawn`] starts the live sources in the background: `/proc` (process →
//!   network namespace and cgroup → container id), the named namespace
//!   directories, every namespace's interfaces over rtnetlink, and the Docker
//!   Engine API (names, images, labels, networks, and its event stream).
//!   They send updates over a channel; a slow or absent Docker daemon only
//!   produces a `degraded` [`IdentityUpdate::Status`] and is retried with
//!   backoff.

mod cgroup;
mod docker;
mod index;
pub(crate) mod names;
mod procfs;
mod scan;
mod source;

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use cgroup::{parse_cgroup_file, parse_cgroup_path, CgroupContainer};
pub use index::{IdentityIndex, IndexStats};
pub use names::{parse_netns_name, NetnsName};
use serde::{Deserialize, Serialize};
pub use source::{spawn, IdentityHints};

use crate::event::{Action, EcsEvent, Kind};

/// Default grace period: how long an exited container (or a vanished
/// namespace) keeps its identity for late events, in event time.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Labels Docker (swarm mode) and Compose put on containers.
pub const LABEL_SWARM_SERVICE: &str = "com.docker.swarm.service.name";
pub const LABEL_SWARM_TASK: &str = "com.docker.swarm.task.name";
pub const LABEL_COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// One change to the identity index. Every variant carries `ts`, the Unix
/// time (ns) at which the source observed the change; the index's notion of
/// "now" (for grace periods) advances only through these.
///
/// Updates are incremental per object but each carries that object's whole
/// state (a container's endpoints, a namespace's interfaces), so applying
/// one never depends on remembering a diff.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityUpdate {
    /// A container appeared or changed (replaces what was known about it;
    /// a removed container that is upserted again is live again).
    ContainerUpsert { ts: i128, container: ContainerInfo },
    /// A container stopped. It keeps its identity for the grace period.
    ContainerRemove { ts: i128, id: String },
    /// A network namespace exists (with its names, if any).
    NetnsUpsert { ts: i128, netns: NetnsInfo },
    /// All interfaces of one namespace (replaces the previous list).
    NetnsInterfaces {
        ts: i128,
        inode: u32,
        interfaces: Vec<InterfaceInfo>,
    },
    /// A namespace is gone. It keeps its identity for the grace period.
    NetnsRemove { ts: i128, inode: u32 },
    /// A Docker network exists (id → name, driver, bridge device).
    NetworkUpsert { ts: i128, network: NetworkInfo },
    /// A Docker network was removed.
    NetworkRemove { ts: i128, id: String },
    /// A swarm service exists (its VIPs per network, its endpoint mode);
    /// replaces what was known about it.
    ServiceUpsert { ts: i128, service: ServiceInfo },
    /// A swarm service was removed.
    ServiceRemove { ts: i128, id: String },
    /// A source became degraded or recovered. Turned into one
    /// `enrichment_status` state line by [`IdentityUpdate::status_event`].
    Status {
        ts: i128,
        source: String,
        state: SourceState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A source delivered its first complete snapshot.
    Synced { ts: i128, source: String },
    /// Two sources disagree about a container's namespace: processes in
    /// `claimed_netns` carry its id in their cgroup path, while `runtime`
    /// (when it knows the container) says its process is in `netns`.
    /// Identity follows `netns`; without the runtime, processes in more
    /// than one namespace claim the id, and identity names neither (`netns`
    /// absent). Sent once per conflict; turned into one `enrichment_status`
    /// state line (state `conflict`).
    Conflict {
        ts: i128,
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runtime: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns: Option<u32>,
        claimed_netns: u32,
    },
}

impl IdentityUpdate {
    /// Event time of the update (Unix ns).
    pub fn ts(&self) -> i128 {
        match self {
            Self::ContainerUpsert { ts, .. }
            | Self::ContainerRemove { ts, .. }
            | Self::NetnsUpsert { ts, .. }
            | Self::NetnsInterfaces { ts, .. }
            | Self::NetnsRemove { ts, .. }
            | Self::NetworkUpsert { ts, .. }
            | Self::NetworkRemove { ts, .. }
            | Self::ServiceUpsert { ts, .. }
            | Self::ServiceRemove { ts, .. }
            | Self::Status { ts, .. }
            | Self::Synced { ts, .. }
            | Self::Conflict { ts, .. } => *ts,
        }
    }

    /// The `enrichment_status` state line for a [`IdentityUpdate::Status`]
    /// (`None` for every other variant). Deterministic: built from the
    /// update alone.
    pub fn status_event(&self) -> Option<EcsEvent> {
        if let Self::Conflict {
            ts,
            id,
            runtime,
            netns,
            claimed_netns,
        } = self
        {
            return Some(conflict_event(
                *ts,
                id,
                runtime.as_deref(),
                *netns,
                *claimed_netns,
            ));
        }
        let Self::Status {
            ts,
            source,
            state,
            reason,
        } = self
        else {
            return None;
        };
        let mut e = EcsEvent::new(*ts, Kind::State, Action::EnrichmentStatus);
        let ok = *state == SourceState::Ok;
        e.event.outcome = Some(if ok { "success" } else { "failure" });
        e.message = Some(match (ok, reason) {
            (true, _) => format!("container identity from {source} is available"),
            (false, Some(r)) => format!(
                "container identity from {source} is degraded: {r}; events keep namespace-level identity, retrying in the background"
            ),
            (false, None) => format!(
                "container identity from {source} is degraded; events keep namespace-level identity, retrying in the background"
            ),
        });
        let mut m = serde_json::Map::new();
        m.insert("source".into(), source.clone().into());
        m.insert("state".into(), state.as_str().into());
        if let Some(r) = reason {
            m.insert("reason".into(), r.clone().into());
        }
        e.tracer.enrichment = Some(Box::new(serde_json::Value::Object(m)));
        Some(e)
    }
}

/// The `enrichment_status` line of an [`IdentityUpdate::Conflict`].
fn conflict_event(
    ts: i128,
    id: &str,
    runtime: Option<&str>,
    netns: Option<u32>,
    claimed: u32,
) -> EcsEvent {
    // Ids are hex, but a hostile one is cut by characters, never bytes.
    let short: String = id.chars().take(12).collect();
    let mut e = EcsEvent::new(ts, Kind::State, Action::EnrichmentStatus);
    e.event.outcome = Some("failure");
    let follows = match netns {
        Some(n) => format!("netns {n}"),
        None => "no namespace".to_string(),
    };
    e.message = Some(match runtime {
        Some(rt) => format!(
            "container {short}: processes in netns {claimed} carry its id in their cgroup path, but {rt} says its process is in {follows}; identity follows {rt} (a container may be posing as another)"
        ),
        None => format!(
            "container {short}: processes in netns {claimed} and in another namespace carry its id in their cgroup path and no runtime says which is right; identity names neither (a container may be posing as another)"
        ),
    });
    let mut m = serde_json::Map::new();
    m.insert("source".into(), runtime.unwrap_or("netns").into());
    m.insert("state".into(), "conflict".into());
    m.insert("container_id".into(), id.into());
    m.insert("claimed_netns".into(), claimed.into());
    if let Some(n) = netns {
        m.insert("netns".into(), n.into());
    }
    e.tracer.enrichment = Some(Box::new(serde_json::Value::Object(m)));
    e
}

/// Health of one identity source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    Ok,
    Degraded,
}

impl SourceState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
        }
    }
}

/// What is known about one container (the merge of `/proc` and the runtime
/// API). Strings come from untrusted sources (names, labels): they are only
/// ever serialised (JSON-escaped), never interpreted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerInfo {
    /// Full id (64 hex for every runtime recognised).
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `docker`, `containerd`, `cri-o`, `podman`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm_task: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
    /// Inode of its network namespace (never the host's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
    /// Joined another container's namespace (`--network container:…`): it
    /// is named for that namespace only when no other container is.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shares_netns: bool,
    /// Its attachments to Docker networks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointInfo>,
}

/// One attachment of a container to a network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointInfo {
    pub network_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
}

/// A network namespace and its names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetnsInfo {
    pub inode: u32,
    /// `ip netns` names (`/var/run/netns`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Docker's names (`/var/run/docker/netns`): sandbox keys, `1-<network
    /// id prefix>` overlay namespaces, `lb_<network id prefix>`,
    /// `ingress_sbox`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub docker_names: Vec<String>,
    /// The host's (initial) namespace: never a container's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host: bool,
}

/// One interface of a namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterfaceInfo {
    pub index: u32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
    /// IFLA_INFO_KIND (`veth`, `bridge`, `vxlan`, …); none for physical NICs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Ifindex of the bridge (or bond) it is enslaved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<u32>,
    /// The other end of a veth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<VethPeer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<IpAddr>,
    /// IFLA_MTU (absent in captures made before it was recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// A vxlan's UDP destination port (IFLA_VXLAN_PORT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
}

impl InterfaceInfo {
    /// An interface with only its index, name and link kind set (synthetic
    /// hosts of tests and benchmarks).
    pub fn named(index: u32, name: &str, kind: Option<&str>) -> Self {
        Self {
            index,
            name: name.into(),
            kind: kind.map(str::to_string),
            ..Default::default()
        }
    }

    /// A veth whose other end is interface `peer` of namespace `peer_ns`.
    pub fn veth(index: u32, name: &str, peer: u32, peer_ns: u32) -> Self {
        Self {
            peer: Some(VethPeer {
                ifindex: peer,
                netns: Some(peer_ns),
            }),
            ..Self::named(index, name, Some("veth"))
        }
    }
}

impl NetnsInfo {
    /// A namespace with its `ip netns` and Docker names.
    pub fn named(inode: u32, names: &[&str], docker_names: &[&str], host: bool) -> Self {
        Self {
            inode,
            names: names.iter().map(|s| s.to_string()).collect(),
            docker_names: docker_names.iter().map(|s| s.to_string()).collect(),
            host,
        }
    }
}

/// The other end of a veth: its ifindex, and its namespace when resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VethPeer {
    pub ifindex: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
}

/// A Docker network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The swarm routing-mesh network (`ingress_sbox` belongs to it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ingress: bool,
    /// Linux bridge device of a `bridge` network in the host namespace
    /// (`docker0`, `br-<id prefix>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// A swarm service (Docker API `GET /services`): its endpoint mode and
/// its virtual IPs, one per network it is attached to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    /// `Endpoint.Spec.Mode`: `vip` (the default) or `dnsrr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<String>,
    /// `Endpoint.VirtualIPs`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<ServiceVip>,
}

/// One virtual IP of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceVip {
    pub network_id: String,
    pub ip: IpAddr,
}

/// Configuration of the live sources.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Docker Engine API socket.
    pub docker_socket: PathBuf,
    /// Background full refresh (all namespaces, Docker lists).
    pub refresh: Duration,
    /// Ask the Docker Engine API for names, images, labels and networks.
    pub enable_docker: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            refresh: Duration::from_secs(10),
            enable_docker: true,
        }
    }
}

/// Wall-clock now as Unix ns (the sources' timestamps; never read by the index).
pub(crate) fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_round_trip_through_json() {
        let u = vec![
            IdentityUpdate::ContainerUpsert {
                ts: 1_700_000_000_123_456_789,
                container: ContainerInfo {
                    id: "a".repeat(64),
                    name: Some("web \"1\"\n".into()),
                    netns: Some(4026532543),
                    endpoints: vec![EndpointInfo {
                        network_id: "n1".into(),
                        network: Some("backend".into()),
                        ips: vec!["10.0.1.2".parse().unwrap(), "fd00::2".parse().unwrap()],
                        mac: Some([2, 0x42, 10, 0, 1, 2]),
                    }],
                    ..Default::default()
                },
            },
            IdentityUpdate::NetnsInterfaces {
                ts: 5,
                inode: 7,
                interfaces: vec![InterfaceInfo {
                    index: 16,
                    name: "veth0".into(),
                    kind: Some("veth".into()),
                    master: Some(2),
                    peer: Some(VethPeer {
                        ifindex: 15,
                        netns: Some(9),
                    }),
                    ..Default::default()
                }],
            },
            IdentityUpdate::Status {
                ts: 9,
                source: "docker".into(),
                state: SourceState::Degraded,
                reason: Some("timed out".into()),
            },
        ];
        let s = serde_json::to_string(&u).unwrap();
        let back: Vec<IdentityUpdate> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, u);
        assert!(s.contains("\"container_upsert\""), "{s}");
    }

    #[test]
    fn status_becomes_one_state_line_with_escaped_reason() {
        let u = IdentityUpdate::Status {
            ts: 1_700_000_000_000_000_000,
            source: "docker".into(),
            state: SourceState::Degraded,
            reason: Some("socket \"/x\"\n gone".into()),
        };
        let e = u.status_event().unwrap();
        let mut out = Vec::new();
        e.write_line(&mut out).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line.lines().count(), 1, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"]["action"], "enrichment_status");
        assert_eq!(v["event"]["kind"], "state");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["tracer"]["enrichment"]["state"], "degraded");
        assert_eq!(v["tracer"]["enrichment"]["source"], "docker");
        assert_eq!(v["tracer"]["enrichment"]["reason"], "socket \"/x\"\n gone");
        assert!(IdentityUpdate::Synced {
            ts: 1,
            source: "docker".into()
        }
        .status_event()
        .is_none());
    }
}
