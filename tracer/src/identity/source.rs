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
    ContainerInfo, IdentityUpdate, InterfaceInfo, NetnsInfo, NetworkInfo, ServiceInfo,
    SourceConfig, SourceState,
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
    // Conflicts wait for the runtime's first answer (or its failure).
    c.docker_pending = cfg.enable_docker;
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

/// Most conflicts remembered as reported at once (each is one line).
const MAX_CONFLICTS: usize = 4096;

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
    /// Every namespace whose processes carry a container id in their
    /// cgroup path (in inode order): more than one is a conflict.
    proc_containers: BTreeMap<String, Vec<ProcContainer>>,
    docker: BTreeMap<String, DockerContainer>,
    /// Conflicts already reported (id, claimed namespace).
    reported_conflicts: BTreeSet<(String, u32)>,
    /// The Docker source is enabled and has neither delivered its first
    /// snapshot nor failed: conflicts are not judged yet.
    docker_pending: bool,
    docker_ok: bool,
    networks: BTreeMap<String, NetworkInfo>,
    services: BTreeMap<String, ServiceInfo>,
    tombstones: HashMap<String, Instant>,
    hinted: HashMap<u32, Instant>,

    sent_containers: BTreeMap<String, ContainerInfo>,
    sent_ns: BTreeMap<u32, NetnsInfo>,
    sent_ifaces: BTreeMap<u32, Vec<InterfaceInfo>>,
    sent_networks: BTreeMap<String, NetworkInfo>,
    sent_services: BTreeMap<String, ServiceInfo>,
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
            reported_conflicts: BTreeSet::new(),
            docker_pending: false,
            docker_ok: false,
            networks: BTreeMap::new(),
            services: BTreeMap::new(),
            tombstones: HashMap::new(),
            hinted: HashMap::new(),
            sent_containers: BTreeMap::new(),
            sent_ns: BTreeMap::new(),
            sent_ifaces: BTreeMap::new(),
            sent_networks: BTreeMap::new(),
            sent_services: BTreeMap::new(),
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
        self.proc_containers.clear();
        for (ino, n) in &res.namespaces {
            for (id, rt) in &n.containers {
                if self.tombstones.contains_key(id) {
                    continue;
                }
                self.proc_containers
                    .entry(id.clone())
                    .or_default()
                    .push(ProcContainer {
                        runtime: *rt,
                        netns: *ino,
                    });
            }
        }
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
                self.docker_pending = false;
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
                self.docker_pending = false;
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
            DockerMsg::Services { ts, services } => {
                self.services = services.into_iter().map(|s| (s.id.clone(), s)).collect();
                self.publish(ts).await;
            }
        }
    }

    /// The namespace identity gives container `id`, and whether the
    /// runtime said so: the runtime's answer (its process's namespace) for
    /// a container it knows, else the one namespace whose processes carry
    /// the id in their cgroup path. A cgroup path is written by whoever
    /// controls the cgroup (a container can nest a cgroup named after
    /// another container's id), so it never overrides the runtime, and
    /// two namespaces claiming one id without the runtime's word get
    /// neither.
    fn netns_of(&self, id: &str) -> (Option<u32>, bool) {
        let by_runtime = self.docker.get(id).and_then(|d| d.netns);
        match by_runtime {
            Some(n) => (Some(n), true),
            None => match self.proc_containers.get(id).map(Vec::as_slice) {
                Some([one]) => (Some(one.netns), false),
                _ => (None, false),
            },
        }
    }

    /// Claims of a container's id from namespaces other than the one
    /// identity follows ([`Self::netns_of`]), as conflict updates; none
    /// while the runtime's first answer is awaited.
    fn conflicts(&self, ts: i128) -> Vec<IdentityUpdate> {
        let mut out = Vec::new();
        if self.docker_pending {
            return out;
        }
        for (id, claims) in &self.proc_containers {
            let (netns, by_runtime) = self.netns_of(id);
            for c in claims {
                if Some(c.netns) != netns && Some(c.netns) != self.host {
                    out.push(IdentityUpdate::Conflict {
                        ts,
                        id: id.clone(),
                        runtime: by_runtime.then(|| "docker".to_string()),
                        netns,
                        claimed_netns: c.netns,
                    });
                }
            }
        }
        out
    }

    /// The merged view of every container.
    fn desired_containers(&self) -> BTreeMap<String, ContainerInfo> {
        let mut ids: BTreeSet<&String> = self.proc_containers.keys().collect();
        if self.docker_ok {
            ids.extend(self.docker.keys());
        }
        ids.into_iter()
            .map(|id| {
                let p = self.proc_containers.get(id).and_then(|c| c.first());
                let d = self.docker.get(id);
                let mode = d.and_then(|d| d.network_mode.as_deref());
                let netns = self
                    .netns_of(id)
                    .0
                    .filter(|n| Some(*n) != self.host && mode != Some("host"));
                // The runtime that knows the container names it; a cgroup
                // layout only when no runtime does.
                let runtime = d
                    .map(|_| "docker")
                    .or(p.and_then(|p| p.runtime))
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
        for (id, sv) in &self.services {
            if self.sent_services.get(id) != Some(sv) {
                ups.push(IdentityUpdate::ServiceUpsert {
                    ts,
                    service: sv.clone(),
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
        self.reported_conflicts
            .retain(|(id, _)| self.proc_containers.contains_key(id));
        for u in self.conflicts(ts) {
            if let IdentityUpdate::Conflict {
                id, claimed_netns, ..
            } = &u
            {
                let key = (id.clone(), *claimed_netns);
                if self.reported_conflicts.len() < MAX_CONFLICTS
                    && self.reported_conflicts.insert(key)
                {
                    ups.push(u);
                }
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
        for id in self
            .sent_services
            .keys()
            .filter(|i| !self.services.contains_key(*i))
        {
            ups.push(IdentityUpdate::ServiceRemove { ts, id: id.clone() });
        }
        self.sent_networks = self.networks.clone();
        self.sent_services = self.services.clone();
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

    /// `ID` claimed (cgroup path) by processes in each of `claims`.
    fn scan_with_claims(ts: i128, claims: &[u32]) -> ScanResult {
        let mut res = ScanResult {
            ts,
            host: Some(1),
            ..ScanResult::default()
        };
        res.namespaces.insert(1, Default::default());
        for &ino in claims {
            let mut ns = scan::NsScan::default();
            ns.containers.insert(ID.into(), Some("docker"));
            res.namespaces.insert(ino, ns);
        }
        res
    }

    fn upserted_netns(ups: &[IdentityUpdate]) -> Vec<Option<u32>> {
        ups.iter()
            .filter_map(|u| match u {
                IdentityUpdate::ContainerUpsert { container, .. } if container.id == ID => {
                    Some(container.netns)
                }
                _ => None,
            })
            .collect()
    }

    fn conflicts(ups: &[IdentityUpdate]) -> Vec<&IdentityUpdate> {
        ups.iter()
            .filter(|u| matches!(u, IdentityUpdate::Conflict { .. }))
            .collect()
    }

    /// A container nests a cgroup named after another container's id (the
    /// innermost id of a cgroup path wins): the runtime's answer decides,
    /// whichever namespace sorts first, and the conflict is one line.
    #[tokio::test]
    async fn a_cgroup_path_never_overrides_the_runtime_and_conflicts_are_reported_once() {
        let (mut c, mut rx) = coordinator();
        // Docker knows ID's process is in netns 7; a hostile container in
        // netns 5 puts its processes under a cgroup named ID.
        c.on_docker(DockerMsg::Container {
            ts: 10,
            container: DockerContainer {
                id: ID.into(),
                name: Some("db".into()),
                running: true,
                netns: Some(7),
                ..Default::default()
            },
        })
        .await;
        drain(&mut rx);
        c.on_scan(scan_with_claims(11, &[5, 7])).await;
        let ups = drain(&mut rx);
        assert!(
            upserted_netns(&ups).iter().all(|n| *n == Some(7)),
            "{ups:?}"
        );
        let cs = conflicts(&ups);
        assert_eq!(cs.len(), 1, "{ups:?}");
        assert!(matches!(cs[0],
            IdentityUpdate::Conflict { id, runtime: Some(rt), netns: Some(7), claimed_netns: 5, .. }
                if id == ID && rt == "docker"));
        let line = cs[0].status_event().unwrap();
        let msg = line.message.as_deref().unwrap();
        assert!(
            msg.contains("netns 5") && msg.contains("docker says its process is in netns 7"),
            "{msg}"
        );
        assert_eq!(
            line.tracer.enrichment.as_ref().unwrap()["state"],
            "conflict"
        );

        // The same conflict on the next scans: no second line.
        for ts in 12..15 {
            c.on_scan(scan_with_claims(ts, &[5, 7])).await;
        }
        let ups = drain(&mut rx);
        assert!(conflicts(&ups).is_empty(), "{ups:?}");
        assert!(upserted_netns(&ups).is_empty(), "nothing changed: {ups:?}");

        // Only the impostor's namespace claims it: still the runtime's.
        c.on_scan(scan_with_claims(16, &[5])).await;
        let ups = drain(&mut rx);
        assert!(upserted_netns(&ups).is_empty(), "{ups:?}");
    }

    /// Without the runtime, two namespaces claiming one id: neither is
    /// believed, both are reported.
    #[tokio::test]
    async fn two_claims_without_the_runtime_are_a_conflict_naming_neither() {
        let (mut c, mut rx) = coordinator();
        c.on_scan(scan_with_claims(10, &[9, 4])).await;
        let ups = drain(&mut rx);
        assert_eq!(upserted_netns(&ups), vec![None], "{ups:?}");
        let cs = conflicts(&ups);
        assert_eq!(cs.len(), 2, "{ups:?}");
        assert!(cs.iter().all(|u| matches!(
            u,
            IdentityUpdate::Conflict {
                runtime: None,
                netns: None,
                ..
            }
        )));
        let msg = cs[0].status_event().unwrap().message.unwrap();
        assert!(msg.contains("identity names neither"), "{msg}");
    }

    /// While the runtime's first answer is awaited, a claim in two
    /// namespaces is not judged (Docker answers a moment later).
    #[tokio::test]
    async fn conflicts_wait_for_the_runtime() {
        let (mut c, mut rx) = coordinator();
        c.docker_pending = true;
        c.on_scan(scan_with_claims(10, &[5, 7])).await;
        assert!(conflicts(&drain(&mut rx)).is_empty());
        c.on_docker(DockerMsg::Snapshot {
            ts: 11,
            networks: vec![],
            containers: vec![DockerContainer {
                id: ID.into(),
                running: true,
                netns: Some(7),
                ..Default::default()
            }],
        })
        .await;
        let ups = drain(&mut rx);
        let cs = conflicts(&ups);
        assert_eq!(cs.len(), 1, "{ups:?}");
        assert!(matches!(
            cs[0],
            IdentityUpdate::Conflict {
                runtime: Some(_),
                netns: Some(7),
                claimed_netns: 5,
                ..
            }
        ));
        assert_eq!(upserted_netns(&ups).last(), Some(&Some(7)), "{ups:?}");
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
