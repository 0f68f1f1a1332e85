//! `cargo xtask setup`: everything the build and the tests need, installed
//! idempotently. Each step checks first and does nothing when satisfied.

use std::{
    fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::{
    apt::{self, Set},
    cmd::{self, is_root, note, say, warn},
    ws::Workspace,
};

/// The bpf-linker release PLATFORM.md verified with the nightly's libLLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// LLVM majors bpf-linker 0.13.0 has a `llvm-N` feature for.
const BPF_LINKER_LLVM_MAJORS: std::ops::RangeInclusive<u32> = 21..=23;

/// Runs every step. `sets` are the Debian package sets to ensure on top of
/// [`Set::Base`].
pub fn run(ws: &Workspace, sets: &[Set]) -> Result<()> {
    let started = Instant::now();
    let sysroot = nightly_sysroot()?;
    ensure_rust_src(&sysroot)?;
    let mut all = vec![Set::Base];
    all.extend(sets.iter().copied().filter(|s| *s != Set::Base));
    apt::ensure_sets(&all)?;
    ensure_bpf_linker(ws, &sysroot)?;
    ensure_mounts()?;
    note(format!(
        "setup complete in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `rustc +nightly --print sysroot`, with a clear error when there is no nightly.
pub fn nightly_sysroot() -> Result<PathBuf> {
    let mut print = Command::new("rustc");
    print.args(["+nightly", "--print", "sysroot"]);
    let out = cmd::probe(&mut print).context(
        "cannot run `rustc`: install rustup (https://rustup.rs) and \
         `rustup toolchain install nightly --component rust-src`",
    )?;
    if !out.status.success() {
        bail!(
            "the nightly toolchain is missing (the eBPF programs need it): run \
             `rustup toolchain install nightly --component rust-src`\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !sysroot.is_dir() {
        bail!("`rustc +nightly --print sysroot` printed {sysroot:?}, which is not a directory");
    }
    Ok(sysroot)
}

/// rust-src for `-Z build-std=core` (what aya-build runs).
fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    let library = sysroot.join("lib/rustlib/src/rust/library");
    if library.is_dir() {
        note(format!("rust-src present: {}", library.display()));
        return Ok(());
    }
    say("installing rust-src for the nightly toolchain (needed by -Z build-std)");
    let mut add = Command::new("rustup");
    add.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    cmd::run(&mut add)?;
    if !library.is_dir() {
        bail!(
            "rust-src was installed but {} is still missing",
            library.display()
        );
    }
    Ok(())
}

/// The nightly's own `libLLVM.so.<major>.<minor>-rust-*` (the soname
/// bpf-linker links against) and its LLVM major version.
fn nightly_libllvm(sysroot: &Path) -> Result<(PathBuf, u32)> {
    let lib = sysroot.join("lib");
    let mut found = Vec::new();
    for entry in fs::read_dir(&lib).with_context(|| format!("cannot list {}", lib.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(version) = name.strip_prefix("libLLVM.so.") {
            if name.contains("-rust-") {
                found.push((lib.join(&*name), version.to_owned()));
            }
        }
    }
    let [(path, version)] = <[_; 1]>::try_from(found).map_err(|found| {
        anyhow!(
            "expected exactly one libLLVM.so.*-rust-* in {}, found {:?}",
            lib.display(),
            found.iter().map(|(p, _)| p).collect::<Vec<_>>()
        )
    })?;
    let major = version
        .split(['.', '-'])
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| anyhow!("cannot read the LLVM version of {}", path.display()))?;
    Ok((path, major))
}

/// bpf-linker built against the nightly's libLLVM (PLATFORM.md's recipe):
///
/// ```text
/// ln -sf $SYSROOT/lib/libLLVM.so.22.1-rust-* $PFX/lib/
/// ln -sf $SYSROOT/lib/libLLVM.so.22.1-rust-* $PFX/lib/libLLVM.so
/// LLVM_PREFIX=$PFX cargo install bpf-linker@0.13.0 --no-default-features --features llvm-22 --root $TOOLS
/// ```
///
/// Skipped when the installed binary reports 0.13.0 and was linked against
/// the current nightly's libLLVM file name; rebuilt otherwise.
fn ensure_bpf_linker(ws: &Workspace, sysroot: &Path) -> Result<()> {
    let (libllvm, major) = nightly_libllvm(sysroot)?;
    let soname = libllvm
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("non UTF-8 file name {}", libllvm.display()))?
        .to_owned();
    let pfx_lib = ws.llvm_prefix().join("lib");
    fs::create_dir_all(&pfx_lib).with_context(|| format!("cannot create {}", pfx_lib.display()))?;
    // Stale links of a previous nightly go; the two current ones point at this sysroot.
    for entry in fs::read_dir(&pfx_lib)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name {
            if name.starts_with("libLLVM.so.") && name != soname {
                say(format!("removing stale link {}", path.display()));
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    ensure_symlink(&pfx_lib.join(&soname), &libllvm)?;
    ensure_symlink(&pfx_lib.join("libLLVM.so"), &libllvm)?;

    let bin = ws.bpf_linker();
    if bin.exists() {
        let needed = elf_needed(&bin).unwrap_or_default();
        if !needed.contains(&soname) {
            say(format!(
                "{} was linked against {needed:?}, the nightly ships {soname}: rebuilding",
                bin.display()
            ));
        } else {
            match cmd::probe_stdout(Command::new(&bin).arg("--version")) {
                Some(v) if v.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION) => {
                    note(format!("{v} present: {}", bin.display()));
                    return Ok(());
                }
                Some(v) => say(format!(
                    "{} reports {v:?}, want {BPF_LINKER_VERSION}: rebuilding",
                    bin.display()
                )),
                None => say(format!(
                    "{} does not run (`--version` failed): rebuilding",
                    bin.display()
                )),
            }
        }
    }
    if !BPF_LINKER_LLVM_MAJORS.contains(&major) {
        bail!(
            "the nightly ships LLVM {major} ({soname}); bpf-linker {BPF_LINKER_VERSION} \
             supports LLVM {}..={}: use a matching nightly",
            BPF_LINKER_LLVM_MAJORS.start(),
            BPF_LINKER_LLVM_MAJORS.end()
        );
    }
    say(format!(
        "building bpf-linker {BPF_LINKER_VERSION} against {soname} (about a minute)"
    ));
    let mut install = ws.cargo()?;
    install
        .env("LLVM_PREFIX", ws.llvm_prefix())
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
            "--root",
        ])
        .arg(ws.bpf_linker_root());
    if ws.bpf_linker_root().join(".crates.toml").exists() {
        // cargo install otherwise says "already installed" and keeps the old binary.
        install.arg("--force");
    }
    cmd::run(&mut install)?;
    let version = cmd::probe_stdout(Command::new(&bin).arg("--version"))
        .ok_or_else(|| anyhow!("{} was installed but does not run", bin.display()))?;
    say(format!("installed {version}: {}", bin.display()));
    Ok(())
}

/// `link -> target`, replacing whatever `link` was.
fn ensure_symlink(link: &Path, target: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", link.display())),
    }
    say(format!("ln -s {} {}", target.display(), link.display()));
    symlink(target, link)
        .with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))
}

/// DT_NEEDED entries of a 64-bit little-endian ELF file.
pub fn elf_needed(path: &Path) -> Result<Vec<String>> {
    let data = fs::read(path)?;
    let bad = || anyhow!("{} is not a 64-bit little-endian ELF file", path.display());
    let bytes = |off: u64, len: usize| -> Result<&[u8]> {
        let off = usize::try_from(off)?;
        data.get(off..off.checked_add(len).ok_or_else(bad)?)
            .ok_or_else(bad)
    };
    let u16_at = |off: u64| -> Result<u16> { Ok(u16::from_le_bytes(bytes(off, 2)?.try_into()?)) };
    let u32_at = |off: u64| -> Result<u32> { Ok(u32::from_le_bytes(bytes(off, 4)?.try_into()?)) };
    let u64_at = |off: u64| -> Result<u64> { Ok(u64::from_le_bytes(bytes(off, 8)?.try_into()?)) };
    if bytes(0, 6)? != b"\x7fELF\x02\x01" {
        return Err(bad());
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?);
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..u64::from(phnum) {
        let ph = phoff + i * u64::from(phentsize);
        let (p_type, p_offset, p_vaddr, p_filesz) = (
            u32_at(ph)?,
            u64_at(ph + 8)?,
            u64_at(ph + 16)?,
            u64_at(ph + 32)?,
        );
        match p_type {
            PT_LOAD => loads.push((p_vaddr, p_offset, p_filesz)),
            PT_DYNAMIC => dynamic = Some((p_offset, p_filesz)),
            _ => {}
        }
    }
    let Some((dyn_off, dyn_size)) = dynamic else {
        return Ok(Vec::new()); // statically linked
    };
    const DT_NULL: u64 = 0;
    const DT_NEEDED: u64 = 1;
    const DT_STRTAB: u64 = 5;
    let mut needed_offsets = Vec::new();
    let mut strtab = None;
    for i in 0..dyn_size / 16 {
        let (tag, val) = (u64_at(dyn_off + i * 16)?, u64_at(dyn_off + i * 16 + 8)?);
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(val),
            DT_STRTAB => strtab = Some(val),
            _ => {}
        }
    }
    let strtab_vaddr = strtab.ok_or_else(bad)?;
    let strtab_off = loads
        .iter()
        .find(|(vaddr, _, size)| (*vaddr..vaddr + size).contains(&strtab_vaddr))
        .map(|(vaddr, off, _)| strtab_vaddr - vaddr + off)
        .ok_or_else(bad)?;
    needed_offsets
        .into_iter()
        .map(|off| {
            let start = usize::try_from(strtab_off + off)?;
            let tail = data.get(start..).ok_or_else(bad)?;
            let end = tail.iter().position(|b| *b == 0).ok_or_else(bad)?;
            Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
        })
        .collect()
}

fn mounted(mount_point: &str, fs_type: &str) -> bool {
    fs::read_to_string("/proc/self/mounts").is_ok_and(|mounts| {
        mounts.lines().any(|l| {
            let mut fields = l.split_whitespace();
            fields.nth(1) == Some(mount_point) && fields.next() == Some(fs_type)
        })
    })
}

/// tracefs (tracepoint formats and ids) and bpffs (pinning).
fn ensure_mounts() -> Result<()> {
    const TRACING: &str = "/sys/kernel/tracing";
    const BPF: &str = "/sys/fs/bpf";
    let root = is_root();
    if Path::new(TRACING).join("events").is_dir() {
        note(format!("tracefs mounted at {TRACING}"));
    } else if !root {
        warn(format!(
            "tracefs is not mounted at {TRACING}; as root: `mount -t tracefs tracefs {TRACING}`"
        ));
    } else {
        say(format!("mounting tracefs at {TRACING}"));
        let mut mount = Command::new("mount");
        mount.args(["-t", "tracefs", "tracefs", TRACING]);
        cmd::run(&mut mount).context("the tracer needs tracefs for its tracepoints")?;
    }
    if mounted(BPF, "bpf") {
        note(format!("bpffs mounted at {BPF}"));
    } else if !root {
        note(format!(
            "bpffs is not mounted at {BPF} (not root: left alone)"
        ));
    } else {
        say(format!("mounting bpffs at {BPF}"));
        let mut mount = Command::new("mount");
        mount.args(["-t", "bpf", "bpf", BPF]);
        if !cmd::run_status(&mut mount)?.success() {
            warn(format!(
                "could not mount bpffs at {BPF}; pinning will not work"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dt_needed_of_this_test_binary() {
        let needed = elf_needed(Path::new("/proc/self/exe")).unwrap();
        assert!(
            needed.iter().any(|n| n.starts_with("libc.so")),
            "{needed:?}"
        );
    }

    #[test]
    fn finds_the_nightly_libllvm() {
        let dir = std::env::temp_dir().join(format!("xtask-sysroot-{}", std::process::id()));
        fs::create_dir_all(dir.join("lib")).unwrap();
        for f in [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-x.so",
        ] {
            fs::write(dir.join("lib").join(f), "").unwrap();
        }
        let (path, major) = nightly_libllvm(&dir).unwrap();
        assert_eq!(
            path.file_name().unwrap(),
            "libLLVM.so.22.1-rust-1.97.0-nightly"
        );
        assert_eq!(major, 22);
        fs::remove_dir_all(&dir).unwrap();
    }
}
