//! Harness for tracer's privileged integration tests: real network
//! namespaces, bridges, veth and vxlan (unique names per test, removed on
//! drop), sockets opened inside a namespace, and the real `tracer` binary
//! whose NDJSON output is collected and searched.
//!
//! Tests run serially (`--test-threads=1`, see `cargo xtask test`): they
//! share the kernel's tracepoints, not namespaces or addresses.

use std::{
    fs,
    io::{BufRead, BufReader},
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short unique tag for names and addresses: never shared between tests or
/// concurrent runs (pid + counter).
pub fn unique_tag() -> (String, u8) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    (
        format!("{:x}{:x}", pid % 0xfff, n % 0xff),
        ((pid + n * 7) % 250) as u8 + 1,
    )
}

/// Runs a command, panicking with its stderr when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`sh`] but ignores failure (cleanup).
pub fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes Docker objects a test created: services, then containers, then
/// networks (each network once nothing holds it, or after 30 s).
pub fn docker_rm_all(services: &[String], containers: &[String], networks: &[String]) {
    for s in services {
        sh_quiet(&["docker", "service", "rm", s]);
    }
    for c in containers {
        sh_quiet(&["docker", "rm", "-f", c]);
    }
    for n in networks {
        docker_network_rm(n);
    }
}

/// `docker network rm`, retried for up to 30 s: service tasks go away
/// asynchronously and their endpoints hold the network until then.
pub fn docker_network_rm(n: &str) {
    let docker_ok = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if docker_ok(&["network", "rm", n]) || !docker_ok(&["network", "inspect", n]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        sh_quiet(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name]);
        let ns = Self { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// Inode that tracer reports as tracer.netns.inode.
    pub fn inode(&self) -> u64 {
        fs::metadata(self.path()).expect("netns handle").ino()
    }

    /// `ip -n <ns> ARGS`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["ip", "-n", &self.name];
        a.extend_from_slice(args);
        sh(&a)
    }

    /// Runs `f` on a thread inside this namespace (sockets it creates stay
    /// in the namespace).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = fs::File::open(self.path()).expect("open netns");
        std::thread::spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    }

    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-j", "link", "show", dev]);
        let v: Value = serde_json::from_str(&out).expect("ip -j");
        v[0]["address"].as_str().expect("address").to_string()
    }

    pub fn ifindex(&self, dev: &str) -> u64 {
        let out = self.ip(&["-j", "link", "show", dev]);
        let v: Value = serde_json::from_str(&out).expect("ip -j");
        v[0]["ifindex"].as_u64().expect("ifindex")
    }

    /// The kernel's own count of UDP datagrams to closed ports here
    /// (`Udp: NoPorts` of /proc/net/snmp).
    pub fn udp_noports(&self) -> u64 {
        let snmp = sh(&["ip", "netns", "exec", &self.name, "cat", "/proc/net/snmp"]);
        let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
        let names: Vec<&str> = udp[0].split_whitespace().collect();
        let vals: Vec<&str> = udp[1].split_whitespace().collect();
        let i = names.iter().position(|n| *n == "NoPorts").expect("NoPorts");
        vals[i].parse().expect("number")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh_quiet(&["ip", "netns", "del", &self.name]);
    }
}

/// Sends exactly `n` UDP datagrams from `src_ip` (in `ns`) to `dst_ip:port`,
/// `gap` apart, retrying a transient ENOBUFS; returns the source port.
pub fn send_udp(ns: &Netns, src_ip: &str, dst_ip: &str, port: u16, n: u64, gap: Duration) -> u16 {
    let (src, dst) = (src_ip.to_string(), dst_ip.to_string());
    ns.run(move || {
        let s = std::net::UdpSocket::bind((src.as_str(), 0)).expect("bind");
        for i in 0..n {
            while s.send_to(&i.to_le_bytes(), (dst.as_str(), port)).is_err() {
                std::thread::sleep(Duration::from_micros(50));
            }
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
        s.local_addr().expect("local addr").port()
    })
}

/// Loads an nftables ruleset into the namespace (it goes with it).
pub fn nft(ns: &Netns, ruleset: &str) {
    let path = std::env::temp_dir().join(format!("tracer-test-{}.nft", ns.name));
    fs::write(&path, ruleset).expect("write ruleset");
    let p = path.to_string_lossy().into_owned();
    sh(&["ip", "netns", "exec", &ns.name, "nft", "-f", &p]);
    let _ = fs::remove_file(path);
}

/// Client — router — server, each its own namespace: two veth links, the
/// router forwarding between `10.<octet>.<net>.0/24` (client side) and
/// `10.<octet>.<net + 1>.0/24` (server side), default routes through it.
pub struct RoutedTopo {
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
    /// The router's interfaces toward the client and the server.
    pub rc: String,
    pub rs: String,
    /// The client's and the server's interface.
    pub cr: String,
    pub sr: String,
    pub client_ip: String,
    /// The router's address on the client's link.
    pub router_c_ip: String,
    pub router_s_ip: String,
    pub server_ip: String,
}

impl RoutedTopo {
    /// Namespaces `<prefix>c<tag>`, `<prefix>r<tag>`, `<prefix>s<tag>`.
    pub fn new(prefix: &str, net: u8) -> Self {
        let (tag, octet) = unique_tag();
        let client = Netns::new(&format!("{prefix}c{tag}"));
        let router = Netns::new(&format!("{prefix}r{tag}"));
        let server = Netns::new(&format!("{prefix}s{tag}"));
        let (rc, cr) = (format!("rc{tag}"), format!("cr{tag}"));
        let (rs, sr) = (format!("rs{tag}"), format!("sr{tag}"));
        router.ip(&[
            "link",
            "add",
            &rc,
            "type",
            "veth",
            "peer",
            "name",
            &cr,
            "netns",
            &client.name,
        ]);
        router.ip(&[
            "link",
            "add",
            &rs,
            "type",
            "veth",
            "peer",
            "name",
            &sr,
            "netns",
            &server.name,
        ]);
        let net_c = format!("10.{octet}.{net}");
        let net_s = format!("10.{octet}.{}", net.wrapping_add(1));
        let t = Self {
            client_ip: format!("{net_c}.2"),
            router_c_ip: format!("{net_c}.1"),
            router_s_ip: format!("{net_s}.1"),
            server_ip: format!("{net_s}.2"),
            client,
            router,
            server,
            rc,
            rs,
            cr,
            sr,
        };
        t.router.ip(&[
            "addr",
            "add",
            &format!("{}/24", t.router_c_ip),
            "dev",
            &t.rc,
        ]);
        t.router.ip(&[
            "addr",
            "add",
            &format!("{}/24", t.router_s_ip),
            "dev",
            &t.rs,
        ]);
        t.client
            .ip(&["addr", "add", &format!("{}/24", t.client_ip), "dev", &t.cr]);
        t.server
            .ip(&["addr", "add", &format!("{}/24", t.server_ip), "dev", &t.sr]);
        for (ns, dev) in [
            (&t.router, &t.rc),
            (&t.router, &t.rs),
            (&t.client, &t.cr),
            (&t.server, &t.sr),
        ] {
            ns.ip(&["link", "set", dev, "up"]);
        }
        t.client
            .ip(&["route", "add", "default", "via", &t.router_c_ip]);
        t.server
            .ip(&["route", "add", "default", "via", &t.router_s_ip]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &t.router.name,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        t
    }

    /// The three namespaces' inodes (for `--netns`).
    pub fn inodes(&self) -> [u64; 3] {
        [
            self.client.inode(),
            self.router.inode(),
            self.server.inode(),
        ]
    }
}

/// `--netns N` for each namespace.
pub fn netns_args(nss: &[u64]) -> Vec<String> {
    nss.iter()
        .flat_map(|n| ["--netns".to_string(), n.to_string()])
        .collect()
}

/// `tracer run --netns …` recording a capture (returned) for
/// [`assert_replays_identically`].
pub fn start_recording(nss: &[u64], tag: &str) -> (Tracer, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tracer-rec-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("capture dir");
    let capture = dir.join("run.capture");
    let mut args = netns_args(nss);
    args.push("--record".into());
    args.push(capture.to_string_lossy().into_owned());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    (Tracer::start(&a), capture)
}

/// The capture replays (with the same `--netns` filter) to exactly the
/// lines the live run printed; the capture's directory is removed.
pub fn assert_replays_identically(capture: &Path, nss: &[u64], raw: &[String]) {
    let out = Command::new(tracer_bin())
        .arg("replay")
        .arg(capture)
        .args(netns_args(nss))
        .output()
        .expect("run tracer replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = String::from_utf8(out.stdout).expect("utf-8");
    let live: String = raw.iter().map(|l| format!("{l}\n")).collect();
    if replayed != live {
        let first = live
            .lines()
            .zip(replayed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(live.lines().count().min(replayed.lines().count()));
        panic!(
            "replay differs at line {first}:\n live:   {:?}\n replay: {:?}",
            live.lines().nth(first),
            replayed.lines().nth(first)
        );
    }
    let _ = fs::remove_dir_all(capture.parent().expect("capture dir"));
}

/// `aa:bb:...` (ip's format) to ECS `AA-BB-...` (tracer's format).
pub fn ecs_mac(mac: &str) -> String {
    mac.replace(':', "-").to_ascii_uppercase()
}

/// Two "containers" (A, B) with veths on a bridge that lives in its own
/// namespace (like a Docker overlay namespace), plus addresses in a subnet
/// unique to this topology.
pub struct BridgeTopo {
    pub tag: String,
    pub br_ns: Netns,
    pub a: Netns,
    pub b: Netns,
    pub bridge: String,
    /// Bridge-side ports of A and B.
    pub port_a: String,
    pub port_b: String,
    /// Container-side interface names.
    pub dev_a: String,
    pub dev_b: String,
    pub ip_a: String,
    pub ip_b: String,
}

impl BridgeTopo {
    /// Seed 001's fault: a vxlan `name` (VNI `vni`, `proxy`, no learning) on
    /// the bridge, holding a static neighbour entry for A's IP and MAC, so
    /// it answers ARP for A on A's behalf.
    pub fn add_proxy_vxlan(&self, name: &str, vni: u32) {
        let vni = vni.to_string();
        self.br_ns.ip(&[
            "link",
            "add",
            name,
            "type",
            "vxlan",
            "id",
            &vni,
            "dstport",
            "4789",
            "local",
            "127.0.0.1",
            "proxy",
            "nolearning",
        ]);
        self.br_ns
            .ip(&["link", "set", name, "master", &self.bridge]);
        self.br_ns.ip(&["link", "set", name, "up"]);
        let mac_a = self.a.mac(&self.dev_a);
        self.br_ns.ip(&[
            "neigh",
            "add",
            &self.ip_a,
            "lladdr",
            &mac_a,
            "dev",
            name,
            "nud",
            "permanent",
        ]);
    }

    pub fn new() -> Self {
        let (tag, octet) = unique_tag();
        let br_ns = Netns::new(&format!("tb{tag}"));
        let a = Netns::new(&format!("ta{tag}"));
        let b = Netns::new(&format!("tc{tag}"));
        let bridge = format!("br{tag}");
        let (port_a, port_b) = (format!("pa{tag}"), format!("pb{tag}"));
        let (dev_a, dev_b) = (format!("ea{tag}"), format!("eb{tag}"));
        br_ns.ip(&["link", "add", &bridge, "type", "bridge"]);
        br_ns.ip(&["link", "set", &bridge, "up"]);
        for (ns, port, dev) in [(&a, &port_a, &dev_a), (&b, &port_b, &dev_b)] {
            br_ns.ip(&[
                "link", "add", port, "type", "veth", "peer", "name", dev, "netns", &ns.name,
            ]);
            br_ns.ip(&["link", "set", port, "master", &bridge]);
            br_ns.ip(&["link", "set", port, "up"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        let ip_a = format!("10.{octet}.{}.1", 100 + (octet % 100));
        let ip_b = format!("10.{octet}.{}.2", 100 + (octet % 100));
        a.ip(&["addr", "add", &format!("{ip_a}/24"), "dev", &dev_a]);
        b.ip(&["addr", "add", &format!("{ip_b}/24"), "dev", &dev_b]);
        Self {
            tag,
            br_ns,
            a,
            b,
            bridge,
            port_a,
            port_b,
            dev_a,
            dev_b,
            ip_a,
            ip_b,
        }
    }

    /// A locally administered MAC unique to this topology and call.
    pub fn fresh_mac(&self) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            (pid >> 8) & 0xff,
            pid & 0xff,
            (n >> 8) & 0xff,
            n & 0xff,
            0x5a
        )
    }

    /// A TCP connection A → B that has exchanged data (client, server,
    /// server port).
    pub fn established_flow(&self) -> (std::net::TcpStream, std::net::TcpStream, u16) {
        use std::io::{Read, Write};
        let ip_b = self.ip_b.clone();
        let listener = self
            .b
            .run(move || std::net::TcpListener::bind((ip_b.as_str(), 0)).expect("listen"));
        let port = listener.local_addr().expect("local addr").port();
        let target = format!("{}:{port}", self.ip_b);
        let mut client = self
            .a
            .run(move || std::net::TcpStream::connect(target).expect("connect"));
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"hello").expect("write");
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).expect("read");
        (client, server, port)
    }

    /// B can no longer answer A: A's data is never acknowledged.
    pub fn blackhole_b_to_a(&self) {
        self.b
            .ip(&["route", "add", "blackhole", &format!("{}/32", self.ip_a)]);
    }

    /// One ping from A to B (ARP request from A, reply from B).
    /// B forgets its neighbours and pings A once (1 s timeout): B asks
    /// for A's MAC afresh. The ping may fail (tests break the path on
    /// purpose), so its outcome is ignored.
    pub fn arp_b_for_a(&self) {
        self.b.ip(&["neigh", "flush", "all"]);
        let _ = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.b.name,
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                &self.ip_a,
            ])
            .output();
    }

    pub fn ping_a_to_b(&self) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.a.name,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            &self.ip_b,
        ]);
    }
}

impl Default for BridgeTopo {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends one Ethernet frame per source MAC out of `dev` inside `ns`,
/// through an AF_PACKET raw socket (what a container with CAP_NET_RAW
/// can do): destination `dst`, EtherType 0x88b5 (local experimental), a
/// 46-byte zero payload. Returns how many frames the kernel accepted.
pub fn send_frames(ns: &Netns, dev: &str, dst: [u8; 6], srcs: Vec<[u8; 6]>) -> u64 {
    let dev = std::ffi::CString::new(dev).expect("device name");
    ns.run(move || {
        // SAFETY: plain socket syscalls on a socket this closure owns and
        // closes; every pointer passed lives across the call.
        unsafe {
            let ifindex = libc::if_nametoindex(dev.as_ptr());
            assert!(ifindex != 0, "no device {dev:?}");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = ifindex as i32;
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(&dst);
            let mut frame = [0u8; 60];
            frame[..6].copy_from_slice(&dst);
            frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            let mut sent = 0u64;
            for src in srcs {
                frame[6..12].copy_from_slice(&src);
                loop {
                    let n = libc::sendto(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    if n == frame.len() as isize {
                        sent += 1;
                        break;
                    }
                    // ENOBUFS: the queue is full; retry this frame.
                    let e = std::io::Error::last_os_error();
                    assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "sendto: {e}");
                    std::thread::yield_now();
                }
            }
            libc::close(fd);
            sent
        }
    })
}

/// Path of the tracer binary under test (set by `cargo xtask test`).
pub fn tracer_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TRACER_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/debug/tracer")
}

/// A running `tracer run` with its stdout collected line by line.
pub struct Tracer {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Tracer {
    /// Starts `tracer run ARGS` and waits until every probe reported its status.
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(tracer_bin());
        cmd.arg("run").args(args);
        Self::start_command(cmd)
    }

    /// Starts `tracer run ARGS` as another host would: in a UTS namespace
    /// of its own named `hostname` (its capture header names that host).
    pub fn start_as_host(hostname: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--uts",
            "sh",
            "-c",
            "hostname \"$0\" && exec \"$@\"",
            hostname,
        ])
        .arg(tracer_bin())
        .arg("run")
        .args(args);
        Self::start_command(cmd)
    }

    /// Starts a command that execs `tracer run` and waits until every probe
    /// reported its status.
    pub fn start_command(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tracer_bin().display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let (l2, r2) = (lines.clone(), raw.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("tracer printed a non-JSON line {line:?}: {e}"));
                r2.lock().unwrap().push(line);
                l2.lock().unwrap().push(v);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[tracer stderr] {line}");
                let mut s = e2.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let t = Self {
            child: Some(child),
            lines,
            raw,
            stderr,
        };
        t.wait_for(Duration::from_secs(60), |v| {
            v["event"]["action"] == "probe_status" && v["tracer"]["probe"]["name"] == "kfree_skb"
        })
        .unwrap_or_else(|| panic!("tracer did not report its probes; stderr: {}", t.stderr()));
        t
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Process id of the running tracer (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Lines printed so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line matches `pred`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(v) = self.lines.lock().unwrap().iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT, wait for a clean exit (code 0), return every line printed.
    pub fn stop(mut self) -> (Vec<Value>, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < end, "tracer did not exit after SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let the reader threads see EOF.
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            status.success(),
            "tracer exited with {status}; stderr: {}",
            self.stderr()
        );
        (self.lines(), self.raw.lock().unwrap().clone())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lines with the given action.
pub fn with_action<'a>(lines: &'a [Value], action: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|v| v["event"]["action"] == action)
        .collect()
}

/// Is the test running with the privileges the integration tests need?
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "integration tests need root (run `cargo xtask test` as root)"
    );
}
