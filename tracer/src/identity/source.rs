//! The live side: runs the scanner thread and the Docker source, merges what
//! they know, and sends the index only what changed, as [`IdentityUpdate`]s.
//!
//! Triggers: a full refresh every `refresh` (the first at once); a Docker
//! container start/stop (its namespace, the Docker namespaces and the host's
//! are rescanned); a hint from the pipeline about a namespace it has never
//! heard of (a rescan that finds its processes and names).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    docker::{self, DockerContainer, DockerMsg},
    now_ns,
    scan::{self, RawLink, ScanRequest, ScanResult},
    ContainerInfo, IdentityUpdate, InterfaceInfo, NetnsInfo, NetworkInfo, SourceConfig,
    SourceState,
};

const UPDATES_CAPACITY: usize = 4096;
const HINTS_CAPACITY: usize = 256;
/// A namespace hinted about is not rescanned for again within this time.
const HINT_QUIET: Duration = Duration::from_secs(2);
/// How long a container that Docker reported stopped is not revived by a
/// scan that raced with its exit.
const TOMBSTONE: Duration = Duration::from_secs(60);

pub const SOURCE_DOCKER: &str = "docker";
pub const SOURCE_NETNS: &str = "netns";

/// Lets the pipeline ask the sources about a namespace it saw in an event
/// but the index does not know. Cheap, never blocks, never fails: a hint
/// that does not fit in the queue is dropped (the periodic refresh will
/// find the namespace anyway).
#[derive(Clone, Debug)]
pub struct IdentityHints {
    tx: mpsc::Sender<u32>,
}

impl IdentityHints {
    pub fn hint_netns(&self, inode: u32) {
        let _ = self.tx.try_send(inode);
    }

    /// Hints that go nowhere (replays, `--no-identity`).
    pub fn disconnected() -> Self {
        let (tx, _) = mpsc::channel(1);
        Self { tx }
    }
}

/// Starts the background sources (must be called inside a Tokio runtime)
/// and returns the stream of updates, beginning with a full snapshot's
/// worth, plus the hint handle. Never blocks the caller. The sources stop
/// when the receiver is dropped.
pub fn spawn(cfg: SourceConfig) -> (mpsc::Receiver<IdentityUpdate>, IdentityHints) {
    let (out, rx) = mpsc::channel(UPDATES_CAPACITY);
    let (hint_tx, hint_rx) = mpsc::channel(HINTS_CAPACITY);
    let proc_root = crate::kernel::hostproc::root().to_path_buf();
    tokio::spawn(run(cfg, out, hint_rx, proc_root));
    (rx, IdentityHints { tx: hint_tx })
}

async fn run(
    cfg: SourceConfig,
    out: mpsc::Sender<IdentityUpdate>,
    mut hints: mpsc::Receiver<u32>,
    proc_root: PathBuf,
) {
    let (scan_res_tx, mut scan_rx) = mpsc::channel::<ScanResult>(4);
    let mut c = Coordinator::new(out.clone());
    match scan::spawn_scanner(proc_root, scan_res_tx) {
        Ok(tx) => c.scan_tx = Some(tx),
        Err(e) => {
            c.status(
                now_ns(),
                SOURCE_NETNS,
                SourceState::Degraded,
                Some(format!("cannot start the namespace scanner thread: {e}")),
            )
            .await;
        }
    }
    let (docker_tx, mut docker_rx) = mpsc::channel::<DockerMsg>(256);
    let docker_task = cfg.enable_docker.then(|| {
        tokio::spawn(docker::run(
            cfg.docker_socket.clone(),
            cfg.refresh,
            docker_tx,
        ))
    });
    let mut refresh = tokio::time::interval(cfg.refresh.max(Duration::from_millis(100)));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(res) = scan_rx.recv() => {
                c.scanning = false;
                c.on_scan(res).await;
                if let Some(p) = c.pending.take() {
                    c.request(p);
                }
            }
            Some(m) = docker_rx.recv(), if docker_task.is_some() => c.on_docker(m).await,
            Some(inode) = hints.recv() => c.on_hint(inode),
            _ = refresh.tick() => c.request(ScanRequest::full()),
            _ = out.closed() => break,
        }
        if out.is_closed() {
            break;
        }
    }
    if let Some(t) = docker_task {
        t.abort();
    }
}

/// What one Docker-less scan knows about a container.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProcContainer {
    runtime: Option<&'static str>,
    netns: u32,
}

struct Coordinator {
    out: mpsc::Sender<IdentityUpdate>,
    scan_tx: Option<std::sync::mpsc::Sender<ScanRequest>>,
    scanning: bool,
    pending: Option<ScanRequest>,

    host: Option<u32>,
    ns: BTreeMap<u32, NetnsInfo>,
    links: BTreeMap<u32, Vec<RawLink>>,
    proc_containers: BTreeMap<String, ProcContainer>,
    docker: BTreeMap<String, DockerContainer>,
    docker_ok: bool,
    networks: BTreeMap<String, NetworkInfo>,
    tombstones: HashMap<String, Instant>,
    hinted: HashMap<u32, Instant>,

    sent_containers: BTreeMap<String, ContainerInfo>,
    sent_ns: BTreeMap<u32, NetnsInfo>,
    sent_ifaces: BTreeMap<u32, Vec<InterfaceInfo>>,
    sent_networks: BTreeMap<String, NetworkInfo>,
    sent_status: BTreeMap<&'static str, SourceState>,
    synced: BTreeSet<&'static str>,
}

impl Coordinator {
    fn new(out: mpsc::Sender<IdentityUpdate>) -> Self {
        Self {
            out,
            scan_tx: None,
            scanning: false,
            pending: None,
            host: None,
            ns: BTreeMap::new(),
            links: BTreeMap::new(),
            proc_containers: BTreeMap::new(),
            docker: BTreeMap::new(),
            docker_ok: false,
            networks: BTreeMap::new(),
            tombstones: HashMap::new(),
            hinted: HashMap::new(),
            sent_containers: BTreeMap::new(),
            sent_ns: BTreeMap::new(),
            sent_ifaces: BTreeMap::new(),
            sent_networks: BTreeMap::new(),
            // The namespace source is assumed fine until it is not: only
            // its failures and recoveries are worth a line.
            sent_status: BTreeMap::from([(SOURCE_NETNS, SourceState::Ok)]),
            synced: BTreeSet::new(),
        }
    }

    async fn send(&self, u: IdentityUpdate) {
        let _ = self.out.send(u).await;
    }

    fn request(&mut self, req: ScanRequest) {
        if self.scanning {
            match &mut self.pending {
                Some(p) => p.merge(req),
                None => self.pending = Some(req),
            }
            return;
        }
        if let Some(tx) = &self.scan_tx {
            if tx.send(req).is_ok() {
                self.scanning = true;
            }
        }
    }

    /// Emits a status update when the source's state changes.
    async fn status(
        &mut self,
        ts: i128,
        source: &'static str,
        state: SourceState,
        reason: Option<String>,
    ) {
        if self.sent_status.get(source) == Some(&state) {
            return;
        }
        self.sent_status.insert(source, state);
        self.send(IdentityUpdate::Status {
            ts,
            source: source.to_string(),
            state,
            reason: if state == SourceState::Ok {
                None
            } else {
                reason
            },
        })
        .await;
    }

    async fn synced(&mut self, ts: i128, source: &'static str) {
        if self.synced.insert(source) {
            self.send(IdentityUpdate::Synced {
                ts,
                source: source.to_string(),
            })
            .await;
        }
    }

    fn on_hint(&mut self, inode: u32) {
        if self.sent_ns.contains_key(&inode) {
            return;
        }
        let now = Instant::now();
        if self
            .hinted
            .get(&inode)
            .is_some_and(|t| now.duration_since(*t) < HINT_QUIET)
        {
            return;
        }
        self.hinted
            .retain(|_, t| now.duration_since(*t) < HINT_QUIET);
        self.hinted.insert(inode, now);
        self.request(ScanRequest {
            dump: [inode].into(),
            ..ScanRequest::default()
        });
    }

    async fn on_scan(&mut self, res: ScanResult) {
        let ts = res.ts;
        self.host = res.host;
        self.ns = res
            .namespaces
            .iter()
            .map(|(ino, n)| {
                (
                    *ino,
                    NetnsInfo {
                        inode: *ino,
                        names: n.names.clone(),
                        docker_names: n.docker_names.clone(),
                        host: res.host == Some(*ino),
                    },
                )
            })
            .collect();
        self.links.retain(|ino, _| res.namespaces.contains_key(ino));
        self.links.extend(res.links);
        let now = Instant::now();
        self.tombstones
            .retain(|_, t| now.duration_since(*t) < TOMBSTONE);
        self.proc_containers = res
            .namespaces
            .iter()
            .flat_map(|(ino, n)| {
                n.containers.iter().map(|(id, rt)| {
                    (
                        id.clone(),
                        ProcContainer {
                            runtime: *rt,
                            netns: *ino,
                        },
                    )
                })
            })
            .filter(|(id, _)| !self.tombstones.contains_key(id))
            .collect();
        self.publish(ts).await;
        match res.errors.first() {
            None => self.status(ts, SOURCE_NETNS, SourceState::Ok, None).await,
            Some(e) => {
                let reason = if res.errors.len() > 1 {
                    format!("{e} (and {} more)", res.errors.len() - 1)
                } else {
                    e.clone()
                };
                self.status(ts, SOURCE_NETNS, SourceState::Degraded, Some(reason))
                    .await
            }
        }
        self.synced(ts, SOURCE_NETNS).await;
    }

    async fn on_docker(&mut self, m: DockerMsg) {
        match m {
            DockerMsg::Status { ts, error } => {
                self.docker_ok = error.is_none();
                let state = if self.docker_ok {
                    SourceState::Ok
                } else {
                    SourceState::Degraded
                };
                self.status(ts, SOURCE_DOCKER, state, error).await;
            }
            DockerMsg::Snapshot {
                ts,
                networks,
                containers,
            } => {
                self.networks = networks.into_iter().map(|n| (n.id.clone(), n)).collect();
                let mut fresh: BTreeMap<String, DockerContainer> = BTreeMap::new();
                for mut c in containers {
                    // Lists do not carry the process: keep what an inspect found.
                    if let Some(old) = self.docker.get(&c.id) {
                        c.netns = c.netns.or(old.netns);
                    }
                    self.tombstones.remove(&c.id);
                    fresh.insert(c.id.clone(), c);
                }
                self.docker = fresh;
                self.docker_ok = true;
                self.publish(ts).await;
                self.synced(ts, SOURCE_DOCKER).await;
            }
            DockerMsg::Container { ts, container } => {
                let netns = container.netns;
                self.tombstones.remove(&container.id);
                self.docker.insert(container.id.clone(), container);
                self.publish(ts).await;
                // Its namespace is new; the overlay namespaces and the host's
                // bridges gained a port.
                let mut dump: BTreeSet<u32> = netns.into_iter().collect();
                dump.extend(self.host);
                self.request(ScanRequest {
                    dump_docker: true,
                    dump,
                    ..ScanRequest::default()
                });
            }
            DockerMsg::Removed { ts, id } => {
                self.docker.remove(&id);
                self.proc_containers.remove(&id);
                self.tombstones.insert(id.clone(), Instant::now());
                if self.sent_containers.remove(&id).is_some() {
                    self.send(IdentityUpdate::ContainerRemove { ts, id }).await;
                }
                self.request(ScanRequest {
                    dump_docker: true,
                    ..ScanRequest::default()
                });
            }
            DockerMsg::Networks { ts, networks } => {
                self.networks = networks.into_iter().map(|n| (n.id.clone(), n)).collect();
                self.publish(ts).await;
            }
        }
    }

    /// The merged view of every container.
    fn desired_containers(&self) -> BTreeMap<String, ContainerInfo> {
        let mut ids: BTreeSet<&String> = self.proc_containers.keys().collect();
        if self.docker_ok {
            ids.extend(self.docker.keys());
        }
        ids.into_iter()
            .map(|id| {
                let p = self.proc_containers.get(id);
                let d = self.docker.get(id);
                let mode = d.and_then(|d| d.network_mode.as_deref());
                let netns = p
                    .map(|p| p.netns)
                    .or_else(|| d.and_then(|d| d.netns))
                    .filter(|n| Some(*n) != self.host && mode != Some("host"));
                let runtime = p
                    .and_then(|p| p.runtime)
                    .or(d.map(|_| "docker"))
                    .map(str::to_string);
                let info = ContainerInfo {
                    id: id.clone(),
                    name: d.and_then(|d| d.name.clone()),
                    image: d.and_then(|d| d.image.clone()),
                    runtime,
                    swarm_service: d.and_then(|d| d.swarm_service.clone()),
                    swarm_task: d.and_then(|d| d.swarm_task.clone()),
                    compose_project: d.and_then(|d| d.compose_project.clone()),
                    compose_service: d.and_then(|d| d.compose_service.clone()),
                    netns,
                    shares_netns: mode.is_some_and(|m| m.starts_with("container:")),
                    endpoints: d.map(|d| d.endpoints.clone()).unwrap_or_default(),
                };
                (id.clone(), info)
            })
            .collect()
    }

    /// Sends what changed since the last publish, in dependency order:
    /// networks, namespaces, interfaces, containers, then removals.
    async fn publish(&mut self, ts: i128) {
        let mut ups = Vec::new();
        for (id, n) in &self.networks {
            if self.sent_networks.get(id) != Some(n) {
                ups.push(IdentityUpdate::NetworkUpsert {
                    ts,
                    network: n.clone(),
                });
            }
        }
        for (ino, n) in &self.ns {
            if self.sent_ns.get(ino) != Some(n) {
                ups.push(IdentityUpdate::NetnsUpsert {
                    ts,
                    netns: n.clone(),
                });
            }
        }
        let ifaces = scan::interfaces(&self.links);
        for (ino, list) in &ifaces {
            if self.sent_ifaces.get(ino) != Some(list) {
                ups.push(IdentityUpdate::NetnsInterfaces {
                    ts,
                    inode: *ino,
                    interfaces: list.clone(),
                });
            }
        }
        let desired = self.desired_containers();
        for (id, c) in &desired {
            if self.sent_containers.get(id) != Some(c) {
                ups.push(IdentityUpdate::ContainerUpsert {
                    ts,
                    container: c.clone(),
                });
            }
        }
        for id in self
            .sent_containers
            .keys()
            .filter(|id| !desired.contains_key(*id))
        {
            ups.push(IdentityUpdate::ContainerRemove { ts, id: id.clone() });
        }
        for ino in self.sent_ns.keys().filter(|i| !self.ns.contains_key(i)) {
            ups.push(IdentityUpdate::NetnsRemove { ts, inode: *ino });
        }
        for id in self
            .sent_networks
            .keys()
            .filter(|i| !self.networks.contains_key(*i))
        {
            ups.push(IdentityUpdate::NetworkRemove { ts, id: id.clone() });
        }
        self.sent_networks = self.networks.clone();
        self.sent_ns = self.ns.clone();
        self.sent_ifaces = ifaces;
        self.sent_containers = desired;
        for u in ups {
            self.send(u).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator() -> (Coordinator, mpsc::Receiver<IdentityUpdate>) {
        let (tx, rx) = mpsc::channel(1024);
        (Coordinator::new(tx), rx)
    }

    fn drain(rx: &mut mpsc::Receiver<IdentityUpdate>) -> Vec<IdentityUpdate> {
        let mut v = Vec::new();
        while let Ok(u) = rx.try_recv() {
            v.push(u);
        }
        v
    }

    const ID: &str = "3a991567d09b06b229c6f68980cb7abacd8a906f8d4e16f40a99ebdf7d0db515";

    fn scan_with_container(ts: i128) -> ScanResult {
        let mut res = ScanResult {
            ts,
            host: Some(1),
            ..ScanResult::default()
        };
        res.namespaces.insert(1, Default::default());
        let mut ns = scan::NsScan::default();
        ns.containers.insert(ID.into(), Some("docker"));
        ns.docker_names.push("e1ddbd169773".into());
        res.namespaces.insert(7, ns);
        res
    }

    #[tokio::test]
    async fn docker_down_then_up_is_two_status_lines_and_names_merge_in() {
        let (mut c, mut rx) = coordinator();
        c.on_scan(scan_with_container(10)).await;
        let ups = drain(&mut rx);
        assert!(
            ups.iter().any(|u| matches!(u,
            IdentityUpdate::ContainerUpsert { container, .. }
                if container.id == ID && container.netns == Some(7) && container.name.is_none()
                    && container.runtime.as_deref() == Some("docker"))),
            "{ups:?}"
        );
        assert!(ups
            .iter()
            .any(|u| matches!(u, IdentityUpdate::Synced { source, .. } if source == "netns")));
        assert!(
            !ups.iter()
                .any(|u| matches!(u, IdentityUpdate::Status { .. })),
            "netns ok is silent"
        );

        for _ in 0..3 {
            c.on_docker(DockerMsg::Status {
                ts: 11,
                error: Some("socket gone".into()),
            })
            .await;
        }
        let ups = drain(&mut rx);
        assert_eq!(
            ups.len(),
            1,
            "one degraded line, not one per retry: {ups:?}"
        );
        assert!(
            matches!(&ups[0], IdentityUpdate::Status { state: SourceState::Degraded, reason: Some(r), .. } if r == "socket gone")
        );

        c.on_docker(DockerMsg::Snapshot {
            ts: 12,
            networks: vec![],
            containers: vec![DockerContainer {
                id: ID.into(),
                name: Some("web".into()),
                running: true,
                ..Default::default()
            }],
        })
        .await;
        c.on_docker(DockerMsg::Status {
            ts: 12,
            error: None,
        })
        .await;
        let ups = drain(&mut rx);
        assert!(
            ups.iter().any(|u| matches!(u,
            IdentityUpdate::ContainerUpsert { container, .. }
                if container.name.as_deref() == Some("web") && container.netns == Some(7))),
            "{ups:?}"
        );
        assert!(ups.iter().any(|u| matches!(
            u,
            IdentityUpdate::Status {
                state: SourceState::Ok,
                ..
            }
        )));

        // Nothing changed: nothing sent.
        c.on_scan(scan_with_container(13)).await;
        assert!(drain(&mut rx).is_empty());
    }

    #[tokio::test]
    async fn stop_is_removed_at_event_time_and_not_revived_by_a_racing_scan() {
        let (mut c, mut rx) = coordinator();
        c.on_scan(scan_with_container(10)).await;
        drain(&mut rx);
        c.on_docker(DockerMsg::Removed {
            ts: 20,
            id: ID.into(),
        })
        .await;
        let ups = drain(&mut rx);
        assert_eq!(
            ups,
            vec![IdentityUpdate::ContainerRemove {
                ts: 20,
                id: ID.into()
            }]
        );
        // A scan that walked /proc before the processes were gone.
        c.on_scan(scan_with_container(21)).await;
        let ups = drain(&mut rx);
        assert!(
            !ups.iter()
                .any(|u| matches!(u, IdentityUpdate::ContainerUpsert { .. })),
            "{ups:?}"
        );
    }

    #[tokio::test]
    async fn vanished_namespace_is_removed() {
        let (mut c, mut rx) = coordinator();
        c.on_scan(scan_with_container(10)).await;
        drain(&mut rx);
        let mut res = ScanResult {
            ts: 30,
            host: Some(1),
            ..ScanResult::default()
        };
        res.namespaces.insert(1, Default::default());
        c.on_scan(res).await;
        let ups = drain(&mut rx);
        assert!(
            ups.contains(&IdentityUpdate::NetnsRemove { ts: 30, inode: 7 }),
            "{ups:?}"
        );
        assert!(
            ups.contains(&IdentityUpdate::ContainerRemove {
                ts: 30,
                id: ID.into()
            }),
            "{ups:?}"
        );
    }

    #[tokio::test]
    async fn hints_for_known_or_recent_namespaces_are_ignored() {
        let (mut c, _rx) = coordinator();
        let (tx, rx) = std::sync::mpsc::channel();
        c.scan_tx = Some(tx);
        c.on_hint(99);
        c.on_hint(99);
        assert_eq!(rx.try_recv().unwrap().dump, [99].into());
        assert!(c.scanning);
        assert!(c.pending.is_none(), "the repeated hint was dropped");
        c.sent_ns.insert(5, NetnsInfo::default());
        c.on_hint(5);
        assert!(c.pending.is_none());
    }
}
