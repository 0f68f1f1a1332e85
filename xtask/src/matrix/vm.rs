//! Booting a kernel under qemu with a busybox initramfs that runs guest.sh.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};

use super::kernel::{self, Kernel};
use crate::cmd::{self, say, which};

pub const GUEST_SH: &str = include_str!("guest.sh");

/// Modules the scenarios need (their dependencies are found in the modules).
pub const MODULES: &[&str] = &["bridge", "vxlan", "veth"];

/// Guest memory and CPUs: small, the host is shared.
const MEMORY: &str = "768M";

/// The binaries guest.sh runs.
pub struct Bins {
    pub tracer: PathBuf,
    pub helper: PathBuf,
}

/// Builds `dir`/initramfs.cpio for `k`: busybox, tracer, bench_helper, ip
/// and bridge with their shared libraries, the modules, guest.sh and /init.
pub fn initramfs(k: &Kernel, bins: &Bins, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("root");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot clear {}", root.display()))?;
    }
    for d in [
        "bin",
        "sbin",
        "lib/modules",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    let busybox = which("busybox").ok_or_else(|| anyhow!("busybox is not installed"))?;
    copy_exe(&busybox, &root.join("bin/busybox"))?;
    for (bin, name) in [(&bins.tracer, "tracer"), (&bins.helper, "bench_helper")] {
        let dest = root.join("bin").join(name);
        copy_exe(bin, &dest)?;
        // The release profile keeps debug info: a smaller initramfs unpacks
        // faster under TCG.
        let mut strip = Command::new("strip");
        strip.arg("--strip-debug").arg(&dest);
        if !cmd::probe_ok(&mut strip) {
            cmd::note(format!(
                "could not strip {}; packing it as is",
                dest.display()
            ));
        }
    }
    let mut elfs = vec![bins.tracer.clone(), bins.helper.clone()];
    for tool in ["ip", "bridge"] {
        let path = which(tool)
            .or_else(|| {
                ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                    .iter()
                    .map(|d| Path::new(d).join(tool))
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| anyhow!("{tool} (iproute2) is not installed"))?;
        copy_exe(&path, &root.join("sbin").join(tool))?;
        elfs.push(path);
    }
    for lib in shared_libs(&elfs)? {
        let rel = lib.strip_prefix("/").unwrap_or(&lib);
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        // Follow symlinks: the initramfs gets the file under the name ld.so asks for.
        fs::copy(&lib, &dest).with_context(|| format!("cannot copy {}", lib.display()))?;
    }
    // iproute2 reads these when present; an empty /etc is fine.
    fs::create_dir_all(root.join("etc"))?;

    let mut list = String::new();
    for (name, bytes) in kernel::modules_in_order(k, MODULES)? {
        fs::write(root.join("lib/modules").join(format!("{name}.ko")), bytes)?;
        list.push_str(&name);
        list.push('\n');
    }
    fs::write(root.join("modules.list"), list)?;
    fs::write(root.join("guest.sh"), GUEST_SH)?;
    let init = "#!/bin/busybox sh\n\
                export MATRIX_MODE=vm MATRIX_OUT=/dev/ttyS1 TRACER=/bin/tracer \
                HELPER=/bin/bench_helper MATRIX_WORK=/tmp/matrix\n\
                exec /bin/busybox sh /guest.sh\n";
    fs::write(root.join("init"), init)?;
    fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o755))?;

    let cpio = dir.join("initramfs.cpio");
    let file =
        fs::File::create(&cpio).with_context(|| format!("cannot create {}", cpio.display()))?;
    let mut pack = Command::new("sh");
    pack.current_dir(&root)
        .args(["-c", "find . -print | cpio --quiet -o -H newc"])
        .stdout(file);
    cmd::run(&mut pack)?;
    Ok(cpio)
}

fn copy_exe(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("cannot copy {}", from.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The shared libraries (and the dynamic loader) of `elfs`, from ldd.
fn shared_libs(elfs: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
    let mut libs = BTreeSet::new();
    for elf in elfs {
        let mut ldd = Command::new("ldd");
        ldd.arg(elf);
        let out = cmd::probe(&mut ldd).context("cannot run ldd")?;
        // A static binary: "not a dynamic executable", exit 1.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                libs.insert(PathBuf::from(p));
            }
        }
    }
    Ok(libs)
}

/// How qemu runs guests here.
#[derive(Clone, Debug)]
pub struct Accel {
    pub name: &'static str,
    /// Why not KVM, when TCG.
    pub why: Option<String>,
}

static ACCEL: OnceLock<Accel> = OnceLock::new();

/// KVM when a guest actually boots under it (a short boot that only says
/// it is alive), else TCG. Decided once per run.
pub fn accel(vmlinuz: &Path, initramfs: &Path, dir: &Path) -> Accel {
    ACCEL
        .get_or_init(|| {
            if !Path::new("/dev/kvm").exists() {
                return Accel {
                    name: "tcg",
                    why: Some("no /dev/kvm".into()),
                };
            }
            say("checking whether KVM guests boot here (30 s at most)");
            let boot = Boot {
                vmlinuz,
                initramfs,
                accel: "kvm",
                extra_cmdline: "matrix.probe",
                console: &dir.join("kvm-probe.console.log"),
                out: &dir.join("kvm-probe.out.log"),
                timeout: Duration::from_secs(30),
            };
            match boot.run() {
                Ok(r) if r.out.contains("@@MATRIX alive") => Accel {
                    name: "kvm",
                    why: None,
                },
                Ok(r) if r.timed_out => Accel {
                    name: "tcg",
                    why: Some("a KVM guest did not reach init within 30 s".into()),
                },
                Ok(r) => Accel {
                    name: "tcg",
                    why: Some(format!(
                        "a KVM guest did not reach init (qemu exited: {}; {})",
                        r.status,
                        last_line(&r.console)
                    )),
                },
                Err(e) => Accel {
                    name: "tcg",
                    why: Some(format!("qemu -accel kvm failed: {e:#}")),
                },
            }
        })
        .clone()
}

fn last_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no console output")
        .to_owned()
}

pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    pub accel: &'a str,
    pub extra_cmdline: &'a str,
    /// ttyS0: the kernel's console.
    pub console: &'a Path,
    /// ttyS1: guest.sh's results.
    pub out: &'a Path,
    pub timeout: Duration,
}

pub struct BootResult {
    pub status: String,
    pub timed_out: bool,
    pub console: String,
    pub out: String,
    pub seconds: f64,
}

impl Boot<'_> {
    pub fn run(&self) -> Result<BootResult> {
        for f in [self.console, self.out] {
            let _ = fs::remove_file(f);
        }
        let mut q = Command::new("qemu-system-x86_64");
        q.args(["-accel", self.accel, "-smp", "1", "-m", MEMORY]);
        if self.accel == "kvm" {
            q.args(["-cpu", "host"]);
        }
        q.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(self.vmlinuz)
        .arg("-initrd")
        .arg(self.initramfs)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 rdinit=/init panic=-1 loglevel=4 {}",
            self.extra_cmdline
        ))
        .arg("-serial")
        .arg(format!("file:{}", self.console.display()))
        .arg("-serial")
        .arg(format!("file:{}", self.out.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        eprintln!("+ {}", cmd::display(&q));
        let start = Instant::now();
        let mut child = q.spawn().context("cannot start qemu-system-x86_64")?;
        let (status, timed_out) = loop {
            if let Some(s) = child.try_wait()? {
                break (s.to_string(), false);
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                break (format!("killed after {} s", self.timeout.as_secs()), true);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut stderr);
        }
        let read =
            |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
        let console = read(self.console);
        if !stderr.trim().is_empty() && console.is_empty() {
            bail!("qemu: {}", stderr.trim());
        }
        Ok(BootResult {
            status,
            timed_out,
            console,
            out: read(self.out),
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
