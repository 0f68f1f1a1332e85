//! deploy/: the image built with the machine's own dockerd, the stack
//! deployed on the local swarm (`docker stack deploy`), a workload on an
//! overlay, the proxy-ARP fault caused for real (a static neighbour entry on
//! vxlan0 for a local task: seed 001), and the workload's container named in
//! `docker service logs` of the tracer service.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{require_root, sh, sh_quiet, tracer_bin, unique_tag};

const IMAGE: &str = "tracer-test-busybox:latest";

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What the test created, removed on drop (stack first: its tracer).
#[derive(Default)]
struct Cleanup {
    stack: Option<String>,
    image: Option<String>,
    services: Vec<String>,
    containers: Vec<String>,
    networks: Vec<String>,
    dir: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for s in &self.services {
            sh_quiet(&["docker", "service", "rm", s]);
        }
        for c in &self.containers {
            sh_quiet(&["docker", "rm", "-f", c]);
        }
        if let Some(st) = &self.stack {
            sh_quiet(&["docker", "stack", "rm", st]);
            let svc = format!("{st}_tracer");
            wait_until(Duration::from_secs(30), || {
                !Command::new("docker")
                    .args(["service", "inspect", &svc])
                    .output()
                    .is_ok_and(|o| o.status.success())
                    && String::from_utf8_lossy(
                        &Command::new("docker")
                            .args([
                                "ps",
                                "-aq",
                                "--filter",
                                &format!("label=com.docker.stack.namespace={st}"),
                            ])
                            .output()
                            .map(|o| o.stdout)
                            .unwrap_or_default(),
                    )
                    .trim()
                    .is_empty()
            });
        }
        for n in &self.networks {
            tracer_tests::docker_network_rm(n);
        }
        if let Some(i) = &self.image {
            sh_quiet(&["docker", "image", "rm", "-f", i]);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn service_logs(svc: &str) -> Vec<Value> {
    let out = Command::new("docker")
        .args(["service", "logs", "--raw", svc])
        .output()
        .expect("docker service logs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn service_stderr(svc: &str) -> String {
    let out = Command::new("docker")
        .args(["service", "logs", "--raw", svc])
        .output()
        .expect("docker service logs");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn stack_on_the_local_swarm_names_the_workload_of_a_proxy_arp_fault() {
    require_root();
    let mut c = Cleanup::default();
    let (tag, _) = unique_tag();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");

    // The image, from the binary under test.
    let image = format!("tracer-stack-{tag}:test");
    c.image = Some(image.clone());
    sh(&[
        root.join("deploy/build-image.sh").to_str().unwrap(),
        tracer_bin().to_str().unwrap(),
        &image,
    ]);

    // The stack file as shipped, with this image and a free metrics port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stack_yml = std::fs::read_to_string(root.join("deploy/stack.yml")).unwrap();
    assert!(stack_yml.contains("image: tracer:latest") && stack_yml.contains("0.0.0.0:9464"));
    let stack_yml = stack_yml
        .replace("image: tracer:latest", &format!("image: {image}"))
        .replace("0.0.0.0:9464", &format!("127.0.0.1:{port}"));
    let dir = std::env::temp_dir().join(format!("tracer-stack-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    c.dir = Some(dir.clone());
    let file = dir.join("stack.yml");
    std::fs::write(&file, stack_yml).unwrap();
    let stack = format!("tst{tag}");
    c.stack = Some(stack.clone());
    sh(&[
        "docker",
        "stack",
        "deploy",
        "-c",
        file.to_str().unwrap(),
        &stack,
    ]);
    let svc = format!("{stack}_tracer");
    assert!(
        wait_until(Duration::from_secs(90), || service_logs(&svc).iter().any(
            |v| {
                v["event"]["action"] == "probe_status"
                    && v["tracer"]["probe"]["name"] == "kfree_skb"
                    && v["tracer"]["probe"]["status"] == "attached"
            }
        )),
        "tracer's service did not attach; its logs: {}",
        service_stderr(&svc)
    );
    let stderr = service_stderr(&svc);
    assert!(
        !stderr.contains("missing:"),
        "the stack gives every mount: {stderr}"
    );

    // A workload on an overlay: a service task, and a client container.
    let net = format!("tsto{tag}");
    sh_quiet(&["docker", "network", "rm", &net]);
    let net_id = sh(&[
        "docker",
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        &net,
    ])
    .trim()
    .to_string();
    c.networks.push(net.clone());
    let work = format!("tstw{tag}");
    c.services.push(work.clone());
    sh(&[
        "docker",
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        &work,
        "--network",
        &net,
        "--stop-grace-period",
        "1s",
        IMAGE,
        "sleep",
        "3600",
    ]);
    let client = format!("tstc{tag}");
    c.containers.push(client.clone());
    sh(&[
        "docker",
        "run",
        "-d",
        "--name",
        &client,
        "--network",
        &net,
        IMAGE,
        "sleep",
        "3600",
    ]);
    let fmt_ip = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
    let fmt_mac = format!("{{{{(index .NetworkSettings.Networks \"{net}\").MacAddress}}}}");
    let mut task = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            task = sh(&[
                "docker",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                &format!("label=com.docker.swarm.service.name={work}"),
            ])
            .trim()
            .to_string();
            !task.is_empty()
                && !sh(&["docker", "inspect", "-f", &fmt_ip, &task])
                    .trim()
                    .is_empty()
        }),
        "service {work} has no running task"
    );
    let task_name = sh(&["docker", "inspect", "-f", "{{.Name}}", &task])
        .trim()
        .trim_start_matches('/')
        .to_string();
    let task_ip = sh(&["docker", "inspect", "-f", &fmt_ip, &task])
        .trim()
        .to_string();
    let task_mac = sh(&["docker", "inspect", "-f", &fmt_mac, &task])
        .trim()
        .to_string();
    let ov_path = format!("/var/run/docker/netns/1-{}", &net_id[..10]);
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::metadata(&ov_path)
            .is_ok()),
        "no overlay namespace {ov_path}"
    );

    let client_pid = sh(&["docker", "inspect", "-f", "{{.State.Pid}}", &client])
        .trim()
        .to_string();
    // The fault: vxlan0 holds a static entry for the local task, so the
    // task's MAC flaps between vxlan0 and its veth when the client ARPs.
    sh(&[
        "nsenter",
        &format!("--net={ov_path}"),
        "ip",
        "neigh",
        "replace",
        &task_ip,
        "lladdr",
        &task_mac,
        "dev",
        "vxlan0",
        "nud",
        "permanent",
    ]);
    let named = |v: &Value| {
        let action = v["event"]["action"].as_str().unwrap_or_default();
        (action == "fdb_move" || action == "fdb_flap" || action == "incident")
            && v.to_string().contains(&task_name)
    };
    let mut found = None;
    let end = Instant::now() + Duration::from_secs(60);
    while found.is_none() && Instant::now() < end {
        // An ARP exchange from the client: its cache emptied, one ping.
        for args in [
            vec!["ip", "neigh", "flush", "all"],
            vec!["ping", "-c", "1", "-W", "2", task_ip.as_str()],
        ] {
            let _ = Command::new("nsenter")
                .args(["-t", client_pid.as_str(), "-n"])
                .args(&args)
                .output();
        }
        found = service_logs(&svc).into_iter().find(|v| named(v));
    }
    let v = found.unwrap_or_else(|| {
        panic!(
            "no fdb_move/fdb_flap/incident naming {task_name} in `docker service logs {svc}`; stderr: {}",
            service_stderr(&svc)
        )
    });
    eprintln!("found in the service logs: {v}");
}
