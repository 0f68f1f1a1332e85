//! Workspace paths and the environment of child cargo processes.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{anyhow, Context as _, Result};

/// Overrides `<workspace>/target/tools` (e.g. to rehearse a fresh install).
pub const TOOLS_DIR_ENV: &str = "XTASK_TOOLS_DIR";

pub struct Workspace {
    /// The workspace root (parent of the xtask crate).
    pub root: PathBuf,
    /// Where xtask keeps what it installs: `<root>/target/tools`.
    pub tools: PathBuf,
}

impl Workspace {
    pub fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .ok_or_else(|| anyhow!("{} has no parent directory", manifest_dir.display()))?
            .to_path_buf();
        let tools = match env::var_os(TOOLS_DIR_ENV) {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target").join("tools"),
        };
        Ok(Self { root, tools })
    }

    /// cargo's target directory (honours CARGO_TARGET_DIR).
    pub fn target_dir(&self) -> PathBuf {
        match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => self.root.join(dir),
            _ => self.root.join("target"),
        }
    }

    /// `cargo install --root` of bpf-linker.
    pub fn bpf_linker_root(&self) -> PathBuf {
        self.tools.join("bpf-linker")
    }

    pub fn bpf_linker_bin_dir(&self) -> PathBuf {
        self.bpf_linker_root().join("bin")
    }

    pub fn bpf_linker(&self) -> PathBuf {
        self.bpf_linker_bin_dir().join("bpf-linker")
    }

    /// `LLVM_PREFIX` of the bpf-linker build: `lib/` holds symlinks to the
    /// nightly's libLLVM; the binary finds it there through its rpath.
    pub fn llvm_prefix(&self) -> PathBuf {
        self.tools.join("llvm")
    }

    /// PATH with xtask's bpf-linker first (aya-build, run by tracer/build.rs,
    /// looks it up there).
    pub fn path_with_tools(&self) -> Result<OsString> {
        let mut dirs = vec![self.bpf_linker_bin_dir()];
        if let Some(path) = env::var_os("PATH") {
            dirs.extend(env::split_paths(&path));
        }
        env::join_paths(dirs).context("cannot build PATH")
    }

    /// `cargo` (the one running xtask) in the workspace root, with the tools on PATH.
    pub fn cargo(&self) -> Result<Command> {
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.root)
            .env("PATH", self.path_with_tools()?);
        Ok(cmd)
    }
}
