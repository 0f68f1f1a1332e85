//! The Docker Engine API source (bollard): containers with their names,
//! images, labels and network endpoints, the networks, and the event stream
//! so that starts and stops are seen as they happen.
//!
//! Every call has a deadline; any failure ends the session with a reason,
//! reported once as `degraded`, and the source reconnects with exponential
//! backoff. The API version is negotiated with the engine (20.10 speaks
//! 1.41; newer engines are used at bollard's own version).

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::{
    errors::Error as BollardError,
    models::{
        ContainerInspectResponse, ContainerSummary, EndpointSettings, EndpointSpecModeEnum,
        EventMessage, EventMessageTypeEnum, Network, Service,
    },
    query_parameters::{
        EventsOptions, ListContainersOptions, ListNetworksOptions, ListServicesOptions,
    },
    Docker, API_DEFAULT_VERSION,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{
    now_ns, procfs, EndpointInfo, NetworkInfo, ServiceInfo, ServiceVip, LABEL_COMPOSE_PROJECT,
    LABEL_COMPOSE_SERVICE, LABEL_SWARM_SERVICE, LABEL_SWARM_TASK,
};

/// Deadline of every request (connect, version, lists, inspect).
pub(crate) const API_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A container as the Docker API describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DockerContainer {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub swarm_service: Option<String>,
    pub swarm_task: Option<String>,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub endpoints: Vec<EndpointInfo>,
    /// `HostConfig.NetworkMode`: `bridge`, `host`, `container:<id>`, a network name.
    pub network_mode: Option<String>,
    /// Namespace of its main process (from an inspect; lists do not say).
    pub netns: Option<u32>,
    /// Running (lists only return running containers).
    pub running: bool,
}

/// What the Docker source tells the coordinator.
#[derive(Debug)]
pub(crate) enum DockerMsg {
    /// The session works (`None`) or failed (`Some(reason)`).
    Status { ts: i128, error: Option<String> },
    /// Complete lists of running containers and networks.
    Snapshot {
        ts: i128,
        networks: Vec<NetworkInfo>,
        containers: Vec<DockerContainer>,
    },
    /// One container started or changed (at the event's time).
    Container {
        ts: i128,
        container: DockerContainer,
    },
    /// One container stopped (at the event's time).
    Removed { ts: i128, id: String },
    /// The networks changed.
    Networks {
        ts: i128,
        networks: Vec<NetworkInfo>,
    },
    /// The complete list of swarm services (empty when this engine is not a
    /// swarm manager: workers cannot list services).
    Services {
        ts: i128,
        services: Vec<ServiceInfo>,
    },
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn parse_ip(s: Option<&String>) -> Option<IpAddr> {
    s.filter(|s| !s.is_empty()).and_then(|s| s.parse().ok())
}

fn endpoints(networks: Option<&HashMap<String, EndpointSettings>>) -> Vec<EndpointInfo> {
    let mut out: Vec<EndpointInfo> = networks
        .into_iter()
        .flatten()
        .map(|(name, ep)| EndpointInfo {
            network_id: capped(ep.network_id.clone().unwrap_or_default()),
            network: Some(capped(name.clone())),
            ips: [
                parse_ip(ep.ip_address.as_ref()),
                parse_ip(ep.global_ipv6_address.as_ref()),
            ]
            .into_iter()
            .flatten()
            .collect(),
            mac: ep.mac_address.as_deref().and_then(parse_mac),
        })
        .collect();
    out.sort_by(|a, b| {
        a.network_id
            .cmp(&b.network_id)
            .then(a.network.cmp(&b.network))
    });
    out
}

/// Longest id, name, image or label value kept from the engine (bytes). A
/// container's creator chooses its name, image reference and labels; a
/// longer string is cut at a character boundary so one container cannot
/// blow up every line that names it.
pub(crate) const MAX_STRING: usize = 256;

/// `s` cut to at most [`MAX_STRING`] bytes, at a character boundary.
pub(crate) fn capped(mut s: String) -> String {
    if s.len() > MAX_STRING {
        let mut end = MAX_STRING;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn label(labels: Option<&HashMap<String, String>>, key: &str) -> Option<String> {
    labels
        .and_then(|l| l.get(key))
        .filter(|v| !v.is_empty())
        .cloned()
        .map(capped)
}

fn with_labels(
    mut c: DockerContainer,
    labels: Option<&HashMap<String, String>>,
) -> DockerContainer {
    c.swarm_service = label(labels, LABEL_SWARM_SERVICE);
    c.swarm_task = label(labels, LABEL_SWARM_TASK);
    c.compose_project = label(labels, LABEL_COMPOSE_PROJECT);
    c.compose_service = label(labels, LABEL_COMPOSE_SERVICE);
    c
}

fn trim_name(n: &str) -> String {
    capped(n.strip_prefix('/').unwrap_or(n).to_string())
}

pub(crate) fn from_summary(s: &ContainerSummary) -> Option<DockerContainer> {
    let id = s.id.clone().filter(|i| !i.is_empty()).map(capped)?;
    let c = DockerContainer {
        id,
        name: s
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| trim_name(n)),
        image: s.image.clone().filter(|i| !i.is_empty()).map(capped),
        endpoints: endpoints(
            s.network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref()),
        ),
        network_mode: s.host_config.as_ref().and_then(|h| h.network_mode.clone()),
        running: true,
        ..Default::default()
    };
    Some(with_labels(c, s.labels.as_ref()))
}

fn netns_of_pid(pid: i64) -> Option<u32> {
    if pid <= 0 {
        return None;
    }
    let link = std::fs::read_link(crate::kernel::hostproc::netns_of(pid)).ok()?;
    procfs::parse_ns_link(link.to_str()?)
}

pub(crate) fn from_inspect(r: &ContainerInspectResponse) -> Option<DockerContainer> {
    let id = r.id.clone().filter(|i| !i.is_empty()).map(capped)?;
    let config = r.config.as_ref();
    let running = r.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let c = DockerContainer {
        id,
        name: r.name.as_deref().map(trim_name),
        image: config
            .and_then(|c| c.image.clone())
            .filter(|i| !i.is_empty())
            .map(capped),
        endpoints: endpoints(
            r.network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref()),
        ),
        network_mode: r.host_config.as_ref().and_then(|h| h.network_mode.clone()),
        netns: if running {
            r.state.as_ref().and_then(|s| s.pid).and_then(netns_of_pid)
        } else {
            None
        },
        running,
        ..Default::default()
    };
    Some(with_labels(c, config.and_then(|c| c.labels.as_ref())))
}

pub(crate) fn from_network(n: &Network) -> Option<NetworkInfo> {
    let id = n.id.clone().filter(|i| !i.is_empty()).map(capped)?;
    let driver = n.driver.clone().filter(|d| !d.is_empty()).map(capped);
    let bridge = n
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name"))
        .filter(|b| !b.is_empty())
        .cloned()
        .map(capped)
        .or_else(|| {
            // `get`: an id that is not ASCII hex has no byte 12 boundary
            // to cut at (and no such bridge).
            (driver.as_deref() == Some("bridge"))
                .then(|| id.get(..12).map(|p| format!("br-{p}")))
                .flatten()
        });
    Some(NetworkInfo {
        name: n.name.clone().map(capped).unwrap_or_else(|| id.clone()),
        id,
        driver,
        ingress: n.ingress.unwrap_or(false),
        bridge,
    })
}

fn mode_name(m: &EndpointSpecModeEnum) -> Option<String> {
    match m {
        EndpointSpecModeEnum::VIP => Some("vip".into()),
        EndpointSpecModeEnum::DNSRR => Some("dnsrr".into()),
        EndpointSpecModeEnum::EMPTY => None,
    }
}

/// A service as identity keeps it: id, name, endpoint mode, VIPs
/// (`Addr` is `10.0.5.2/24`).
pub(crate) fn from_service(s: &Service) -> Option<ServiceInfo> {
    let id = s.id.clone().filter(|i| !i.is_empty())?;
    let spec = s.spec.as_ref();
    let name = spec
        .and_then(|sp| sp.name.clone())
        .unwrap_or_else(|| id.clone());
    let ep = s.endpoint.as_ref();
    let endpoint_mode = ep
        .and_then(|e| e.spec.as_ref())
        .and_then(|sp| sp.mode.as_ref())
        .or_else(|| {
            spec.and_then(|sp| sp.endpoint_spec.as_ref())
                .and_then(|e| e.mode.as_ref())
        })
        .and_then(mode_name);
    let mut vips: Vec<ServiceVip> = ep
        .and_then(|e| e.virtual_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let addr = v.addr.as_deref()?;
            let ip = addr.split('/').next()?.parse().ok()?;
            Some(ServiceVip {
                network_id: v.network_id.clone().unwrap_or_default(),
                ip,
            })
        })
        .collect();
    vips.sort_by(|a, b| (&a.network_id, a.ip).cmp(&(&b.network_id, b.ip)));
    Some(ServiceInfo {
        id,
        name,
        endpoint_mode,
        vips,
    })
}

/// Swarm services; none when the engine is not a manager (or not in a
/// swarm): that is not a failure of the source.
async fn list_services(docker: &Docker) -> Result<Vec<ServiceInfo>, String> {
    let r = tokio::time::timeout(
        API_TIMEOUT,
        docker.list_services(None::<ListServicesOptions>),
    )
    .await;
    match r {
        Ok(Ok(list)) => {
            let mut out: Vec<ServiceInfo> = list.iter().filter_map(from_service).collect();
            out.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(out)
        }
        // 503: "This node is not a swarm manager".
        Ok(Err(BollardError::DockerResponseServerError { .. })) => Ok(Vec::new()),
        Ok(Err(e)) => Err(format!("listing services: {e}")),
        Err(_) => Err(format!(
            "listing services: no answer within {} s",
            API_TIMEOUT.as_secs()
        )),
    }
}

/// A request with a deadline, failures as text (the status reason).
async fn call<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, BollardError>>,
) -> Result<T, String> {
    match tokio::time::timeout(API_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(BollardError::RequestTimeoutError)) | Err(_) => Err(format!(
            "{what}: no answer within {} s (engine overloaded or hung)",
            API_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

async fn list_networks(docker: &Docker) -> Result<Vec<NetworkInfo>, String> {
    let nets = call(
        "listing networks",
        docker.list_networks(None::<ListNetworksOptions>),
    )
    .await?;
    let mut out: Vec<NetworkInfo> = nets.iter().filter_map(from_network).collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Most containers a snapshot inspects for their namespace (the rest are
/// inspected at the next snapshots, this many at a time).
const INSPECTS_PER_SNAPSHOT: usize = 256;

/// Lists networks and containers. A list does not say which namespace a
/// container's process is in; each container not yet inspected in this
/// session is inspected once (`netns`: id → namespace, kept here), so the
/// runtime's own answer (its process's namespace) is what identity trusts
/// over the cgroup paths a container can write itself.
async fn snapshot(
    docker: &Docker,
    tx: &mpsc::Sender<DockerMsg>,
    netns: &mut HashMap<String, Option<u32>>,
) -> Result<(), String> {
    let ts = now_ns();
    let networks = list_networks(docker).await?;
    let list = call(
        "listing containers",
        docker.list_containers(Some(ListContainersOptions::default())),
    )
    .await?;
    let mut containers: Vec<DockerContainer> = list.iter().filter_map(from_summary).collect();
    containers.sort_by(|a, b| a.id.cmp(&b.id));
    netns.retain(|id, _| containers.iter().any(|c| &c.id == id));
    let mut inspected = 0;
    for c in &mut containers {
        if let Some(ns) = netns.get(&c.id) {
            c.netns = *ns;
            continue;
        }
        if inspected == INSPECTS_PER_SNAPSHOT {
            continue;
        }
        inspected += 1;
        let found = inspect(docker, &c.id).await?.and_then(|i| i.netns);
        netns.insert(c.id.clone(), found);
        c.netns = found;
    }
    let services = list_services(docker).await?;
    let _ = tx
        .send(DockerMsg::Snapshot {
            ts,
            networks,
            containers,
        })
        .await;
    let _ = tx.send(DockerMsg::Services { ts, services }).await;
    Ok(())
}

/// Inspects one container; `None` when it is gone already.
async fn inspect(docker: &Docker, id: &str) -> Result<Option<DockerContainer>, String> {
    let what = format!("inspecting container {id}");
    match tokio::time::timeout(API_TIMEOUT, docker.inspect_container(id, None)).await {
        Ok(Ok(r)) => Ok(from_inspect(&r)),
        Ok(Err(e)) if is_not_found(&e) => Ok(None),
        Ok(Err(BollardError::RequestTimeoutError)) | Err(_) => Err(format!(
            "{what}: no answer within {} s",
            API_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
    }
}

fn event_ts(m: &EventMessage) -> i128 {
    match (m.time_nano, m.time) {
        (Some(n), _) if n > 0 => n as i128,
        (_, Some(s)) if s > 0 => s as i128 * 1_000_000_000,
        _ => now_ns(),
    }
}

async fn handle_event(
    docker: &Docker,
    m: EventMessage,
    tx: &mpsc::Sender<DockerMsg>,
    netns: &mut HashMap<String, Option<u32>>,
) -> Result<(), String> {
    let ts = event_ts(&m);
    let action = m.action.as_deref().unwrap_or("");
    let actor = m.actor.as_ref();
    match m.typ {
        Some(EventMessageTypeEnum::CONTAINER) => {
            let Some(id) = actor.and_then(|a| a.id.clone()) else {
                return Ok(());
            };
            match action {
                "start" | "restart" | "unpause" | "rename" | "update" => {
                    // Not running any more by the time of the inspect: its
                    // `die` event follows.
                    if let Some(c) = inspect(docker, &id).await?.filter(|c| c.running) {
                        netns.insert(c.id.clone(), c.netns);
                        let _ = tx.send(DockerMsg::Container { ts, container: c }).await;
                    }
                }
                "die" | "destroy" => {
                    netns.remove(&id);
                    let _ = tx.send(DockerMsg::Removed { ts, id }).await;
                }
                _ => {}
            }
        }
        Some(EventMessageTypeEnum::NETWORK) => match action {
            "connect" | "disconnect" => {
                let id = actor
                    .and_then(|a| a.attributes.as_ref())
                    .and_then(|a| a.get("container"))
                    .cloned();
                if let Some(id) = id {
                    if let Some(c) = inspect(docker, &id).await?.filter(|c| c.running) {
                        netns.insert(c.id.clone(), c.netns);
                        let _ = tx.send(DockerMsg::Container { ts, container: c }).await;
                    }
                }
            }
            "create" | "destroy" | "remove" | "update" => {
                let networks = list_networks(docker).await?;
                let _ = tx.send(DockerMsg::Networks { ts, networks }).await;
            }
            _ => {}
        },
        Some(EventMessageTypeEnum::SERVICE) => {
            // Its VIPs are allocated with it; an update may change the
            // endpoint mode.
            let services = list_services(docker).await?;
            let _ = tx.send(DockerMsg::Services { ts, services }).await;
        }
        _ => {}
    }
    Ok(())
}

/// One connection: snapshot, then events and periodic snapshots until
/// something fails (the reason is returned) or the receiver goes away.
async fn session(
    socket: &Path,
    refresh: Duration,
    tx: &mpsc::Sender<DockerMsg>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let path = socket.to_string_lossy();
    // bollard's own deadline (response headers) is a backstop behind ours.
    let docker = Docker::connect_with_unix(&path, 2 * API_TIMEOUT.as_secs(), API_DEFAULT_VERSION)
        .map_err(|e| format!("cannot use the Docker Engine API at {path}: {e}"))?;
    let docker = call(
        &format!("negotiating the API version with {path}"),
        docker.negotiate_version(),
    )
    .await?;
    // Events since just before the first snapshot: nothing falls between.
    let since = now_ns();
    let mut netns = HashMap::new();
    snapshot(&docker, tx, &mut netns).await?;
    let _ = tx
        .send(DockerMsg::Status {
            ts: now_ns(),
            error: None,
        })
        .await;
    *backoff = BACKOFF_START;
    let filters = HashMap::from([(
        "type".to_string(),
        vec![
            "container".to_string(),
            "network".to_string(),
            "service".to_string(),
        ],
    )]);
    let mut events = docker.events(Some(EventsOptions {
        since: Some(format!(
            "{}.{:09}",
            since.div_euclid(1_000_000_000),
            since.rem_euclid(1_000_000_000)
        )),
        until: None,
        filters: Some(filters),
    }));
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                None => return Err("the Docker event stream ended (engine restarted?)".into()),
                Some(Err(e)) => return Err(format!("Docker event stream: {e}")),
                Some(Ok(m)) => handle_event(&docker, m, tx, &mut netns).await?,
            },
            _ = tick.tick() => snapshot(&docker, tx, &mut netns).await?,
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// Runs the Docker source until `tx` closes: sessions, with a `Status`
/// after each success or failure and exponential backoff between attempts.
pub(crate) async fn run(socket: PathBuf, refresh: Duration, tx: mpsc::Sender<DockerMsg>) {
    let mut backoff = BACKOFF_START;
    loop {
        match session(&socket, refresh, &tx, &mut backoff).await {
            Ok(()) => return,
            Err(reason) => {
                if tx
                    .send(DockerMsg::Status {
                        ts: now_ns(),
                        error: Some(reason),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:42:0a:00:01:02"), Some([2, 0x42, 10, 0, 1, 2]));
        assert_eq!(parse_mac("02-42-0A-00-01-02"), Some([2, 0x42, 10, 0, 1, 2]));
        assert_eq!(parse_mac(""), None);
        assert_eq!(parse_mac("02:42:0a:00:01"), None);
        assert_eq!(parse_mac("02:42:0a:00:01:02:03"), None);
        assert_eq!(parse_mac("zz:42:0a:00:01:02"), None);
    }

    #[test]
    fn hostile_engine_strings_are_capped_and_never_sliced_mid_character() {
        let long = "é".repeat(1000);
        let inspect: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": long,
            "Name": format!("/{long}"),
            "Config": {"Image": long, "Labels": {"com.docker.swarm.service.name": long}},
        }))
        .unwrap();
        let c = from_inspect(&inspect).unwrap();
        for s in [
            &c.id,
            c.name.as_ref().unwrap(),
            c.image.as_ref().unwrap(),
            c.swarm_service.as_ref().unwrap(),
        ] {
            assert!(
                s.len() <= MAX_STRING && s.len() >= MAX_STRING - 3,
                "{}",
                s.len()
            );
            assert!(s.chars().all(|ch| ch == 'é'));
        }
        // A bridge network whose id is not ASCII: no panic, no bridge name
        // cut through a character.
        let n: Network = serde_json::from_value(serde_json::json!({
            "Id": "aéééééééééééé", "Name": "x", "Driver": "bridge"
        }))
        .unwrap();
        let info = from_network(&n).unwrap();
        assert_eq!(info.bridge, None);
        let n: Network = serde_json::from_value(serde_json::json!({
            "Id": "0123456789abcdef", "Name": "x", "Driver": "bridge"
        }))
        .unwrap();
        assert_eq!(
            from_network(&n).unwrap().bridge.as_deref(),
            Some("br-0123456789ab")
        );
    }

    #[test]
    fn service_json_maps_to_vips_and_mode() {
        // Shape as `GET /services` returns it (API 1.41).
        let svc: Service = serde_json::from_value(serde_json::json!({
            "ID": "x2ypq0l1hvbqe1o3d9y2dz5c9",
            "Spec": {"Name": "web", "EndpointSpec": {"Mode": "vip"}},
            "Endpoint": {"Spec": {"Mode": "vip"}, "VirtualIPs": [
                {"NetworkID": "4zd4qm3u2hy1czgdz9lcy1fwa", "Addr": "10.0.5.2/24"},
                {"NetworkID": "qc7yx7w7ysr3kovyvln2wy8gr", "Addr": "10.255.0.7/16"}
            ]}
        }))
        .unwrap();
        let s = from_service(&svc).unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.endpoint_mode.as_deref(), Some("vip"));
        assert_eq!(s.vips.len(), 2);
        assert_eq!(s.vips[0].network_id, "4zd4qm3u2hy1czgdz9lcy1fwa");
        assert_eq!(s.vips[0].ip, "10.0.5.2".parse::<IpAddr>().unwrap());
        let dnsrr: Service = serde_json::from_value(serde_json::json!({
            "ID": "y", "Spec": {"Name": "db", "EndpointSpec": {"Mode": "dnsrr"}}, "Endpoint": {}
        }))
        .unwrap();
        let d = from_service(&dnsrr).unwrap();
        assert_eq!(d.endpoint_mode.as_deref(), Some("dnsrr"));
        assert!(d.vips.is_empty());
    }

    #[test]
    fn engine_json_maps_to_identity() {
        // Shapes as Docker 20.10 (API 1.41) returns them.
        let inspect: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": "3a991567d09b06b229c6f68980cb7abacd8a906f8d4e16f40a99ebdf7d0db515",
            "Name": "/web.1.evo7mrblco9ck1y25uqdwlewa",
            "State": {"Status": "exited", "Running": false, "Pid": 0},
            "Config": {"Image": "tracer-test-busybox:latest", "Labels": {
                "com.docker.swarm.service.name": "web",
                "com.docker.swarm.task.name": "web.1.evo7mrblco9ck1y25uqdwlewa",
                "com.docker.compose.project": "",
                "other": "x"
            }},
            "HostConfig": {"NetworkMode": "default"},
            "NetworkSettings": {"SandboxKey": "/var/run/docker/netns/e1ddbd169773",
                "Networks": {"backend": {"NetworkID": "4zd4qm3u2hy1czgdz9lcy1fwa",
                    "IPAddress": "10.0.1.2", "GlobalIPv6Address": "", "MacAddress": "02:42:0a:00:01:02"}}}
        }))
        .unwrap();
        let c = from_inspect(&inspect).unwrap();
        assert_eq!(c.name.as_deref(), Some("web.1.evo7mrblco9ck1y25uqdwlewa"));
        assert_eq!(c.image.as_deref(), Some("tracer-test-busybox:latest"));
        assert_eq!(c.swarm_service.as_deref(), Some("web"));
        assert_eq!(c.compose_project, None, "empty labels are absent");
        assert_eq!(c.netns, None, "not running");
        assert!(!c.running);
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!(c.endpoints[0].network.as_deref(), Some("backend"));
        assert_eq!(
            c.endpoints[0].ips,
            vec!["10.0.1.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(c.endpoints[0].mac, Some([2, 0x42, 10, 0, 1, 2]));

        let net: Network = serde_json::from_value(serde_json::json!({
            "Name": "probebr", "Id": "ecc1d7b96a6c3d106d1a37eb18e8259ec880d7113b57b13c4c0b4b46e0f9c628",
            "Scope": "local", "Driver": "bridge", "Ingress": false, "Options": {}
        }))
        .unwrap();
        let n = from_network(&net).unwrap();
        assert_eq!(n.bridge.as_deref(), Some("br-ecc1d7b96a6c"));
        let net: Network = serde_json::from_value(serde_json::json!({
            "Name": "bridge", "Id": "f89c50a9bd7702cfb58e20481533121e7174700da1979e290aea2993ea2b2a1a",
            "Driver": "bridge", "Options": {"com.docker.network.bridge.name": "docker0"}
        }))
        .unwrap();
        assert_eq!(
            from_network(&net).unwrap().bridge.as_deref(),
            Some("docker0")
        );
        let net: Network = serde_json::from_value(serde_json::json!({
            "Name": "ingress", "Id": "qc7yx7w7ysr3kovyvln2wy8gr", "Driver": "overlay", "Ingress": true
        }))
        .unwrap();
        let n = from_network(&net).unwrap();
        assert!(n.ingress && n.bridge.is_none());
    }

    #[tokio::test]
    async fn absent_socket_is_degraded_with_the_path_in_the_reason() {
        let (tx, mut rx) = mpsc::channel(8);
        let dir = crate::testutil::TempDir::new("no-docker");
        let path = dir.file("docker.sock");
        let task = tokio::spawn(run(path.clone(), Duration::from_secs(10), tx));
        let m = rx.recv().await.unwrap();
        task.abort();
        let DockerMsg::Status {
            error: Some(reason),
            ..
        } = m
        else {
            panic!("expected a failure status, got {m:?}")
        };
        assert!(reason.contains(&*path.to_string_lossy()), "{reason}");
    }

    #[tokio::test]
    async fn a_hung_engine_times_out_instead_of_blocking() {
        // A socket that accepts connections and never answers.
        let dir = crate::testutil::TempDir::new("hung-docker");
        let path = dir.file("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let (tx, mut rx) = mpsc::channel(8);
        let start = std::time::Instant::now();
        let task = tokio::spawn(run(path.clone(), Duration::from_secs(10), tx));
        let m = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a status within the deadline")
            .unwrap();
        task.abort();
        hold.abort();
        let DockerMsg::Status {
            error: Some(reason),
            ..
        } = m
        else {
            panic!("expected a failure status, got {m:?}")
        };
        assert!(reason.contains("no answer within"), "{reason}");
        assert!(start.elapsed() < API_TIMEOUT * 3, "{:?}", start.elapsed());
    }
}
