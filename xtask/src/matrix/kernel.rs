//! Debian kernels for the matrix: the newest `linux-image-…-cloud-amd64-unsigned`
//! of a series, fetched with `apt-get download`, unpacked with `dpkg-deb -x`
//! and cached under target/matrix/kernels/<package>/.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::cmd::{self, say};

/// A kernel series of the matrix.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    /// Row label and `--kernel` value.
    pub label: &'static str,
    /// `apt-cache search --names-only` patterns of its image packages
    /// (anchored; `[0-9]+` is the only class used).
    pub patterns: &'static [&'static str],
}

pub const SERIES: &[Series] = &[
    Series {
        label: "6.1",
        patterns: &[r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$"],
    },
    Series {
        label: "6.12",
        // bookworm(-security) builds, and bookworm-backports' names.
        patterns: &[
            r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$",
            r"^linux-image-6\.12\.[0-9]+\+bpo-cloud-amd64-unsigned$",
        ],
    },
];

/// Where bookworm-backports comes from when a series is only there.
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/tracer-matrix-backports.list";
const BACKPORTS_LINE: &str = "deb http://deb.debian.org/debian bookworm-backports main\n";

/// An unpacked kernel package.
#[derive(Debug)]
pub struct Kernel {
    pub package: String,
    /// `uname -r`: the directory name under lib/modules.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

impl Kernel {
    fn open(dir: &Path, package: &str) -> Result<Self> {
        let modules_root = dir.join("lib/modules");
        let release = fs::read_dir(&modules_root)
            .with_context(|| format!("{} has no lib/modules", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .ok_or_else(|| anyhow!("{} is empty", modules_root.display()))?;
        let vmlinuz = dir.join("boot").join(format!("vmlinuz-{release}"));
        if !vmlinuz.is_file() {
            bail!("{} is missing", vmlinuz.display());
        }
        Ok(Self {
            package: package.to_owned(),
            modules: modules_root.join(&release),
            release,
            vmlinuz,
        })
    }

    /// The module file (`.ko`, `.ko.xz` or `.ko.zst`) of `name`, searched
    /// under kernel/. None when it is built in (or absent).
    pub fn module_file(&self, name: &str) -> Option<PathBuf> {
        fn walk(dir: &Path, names: &[String]) -> Option<PathBuf> {
            for e in fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
                let p = e.path();
                if p.is_dir() {
                    if let Some(found) = walk(&p, names) {
                        return Some(found);
                    }
                } else if names.iter().any(|n| e.file_name().to_string_lossy() == *n) {
                    return Some(p);
                }
            }
            None
        }
        let names: Vec<String> = ["ko", "ko.xz", "ko.zst"]
            .iter()
            .flat_map(|ext| {
                // Module names use `_`; some files use `-`.
                [
                    format!("{name}.{ext}"),
                    format!("{}.{ext}", name.replace('_', "-")),
                ]
            })
            .collect();
        walk(&self.modules.join("kernel"), &names)
    }

    /// True when modules.builtin lists `name`.
    pub fn builtin(&self, name: &str) -> bool {
        fs::read_to_string(self.modules.join("modules.builtin")).is_ok_and(|s| {
            s.lines().any(|l| {
                l.rsplit('/')
                    .next()
                    .and_then(|f| f.strip_suffix(".ko"))
                    .is_some_and(|f| f.replace('-', "_") == name)
            })
        })
    }
}

/// The newest package of `series`, downloaded and unpacked under `cache`.
/// Falls back to the newest one already unpacked when apt cannot say.
pub fn fetch(series: &Series, cache: &Path) -> Result<Kernel> {
    let kernels = cache.join("kernels");
    let package = match newest(series) {
        Ok(Some(p)) => p,
        Ok(None) => {
            add_backports()?;
            newest(series)?.ok_or_else(|| {
                anyhow!(
                    "no package matches {} in the apt sources, bookworm-backports included",
                    series.patterns.join(" or ")
                )
            })?
        }
        Err(e) => match cached(series, &kernels) {
            Some(p) => {
                say(format!(
                    "apt cannot list kernels ({e:#}); using the cached {p}"
                ));
                p
            }
            None => return Err(e),
        },
    };
    let dir = kernels.join(&package);
    if dir.join(".complete").is_file() {
        return Kernel::open(&dir, &package);
    }
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let deb = find_deb(&debs, &package);
    let deb = match deb {
        Some(d) => d,
        None => {
            say(format!("downloading {package}"));
            let mut dl = Command::new("apt-get");
            dl.current_dir(&debs).args(["download", "-q", &package]);
            cmd::run(&mut dl)?;
            find_deb(&debs, &package)
                .ok_or_else(|| anyhow!("apt-get download left no {package}_*.deb"))?
        }
    };
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    fs::create_dir_all(&dir)?;
    let mut x = Command::new("dpkg-deb");
    x.arg("-x").arg(&deb).arg(&dir);
    cmd::run(&mut x)?;
    fs::write(dir.join(".complete"), "")?;
    Kernel::open(&dir, &package)
}

fn find_deb(debs: &Path, package: &str) -> Option<PathBuf> {
    // apt-get download names the file <package>_<version>_<arch>.deb with
    // `+` kept and `:` (epoch) escaped; the package name is all we match.
    let prefix = format!("{package}_");
    fs::read_dir(debs)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

/// Cached package dirs of the series (newest by name).
fn cached(series: &Series, kernels: &Path) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir(kernels)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(".complete").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| matches_series(series, n))
        .collect();
    names.sort_by(|a, b| natural_cmp(a, b));
    names.pop()
}

/// True when a pattern of the series matches `name`.
fn matches_series(series: &Series, name: &str) -> bool {
    series.patterns.iter().any(|p| matches_pattern(p, name))
}

/// The patterns are plain anchored regexes whose only class is `[0-9]+`;
/// matched here without a regex engine.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let pat = pattern
        .trim_start_matches('^')
        .trim_end_matches('$')
        .replace(r"\.", ".")
        .replace(r"\+", "+");
    let mut parts = pat.split("[0-9]+");
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for lit in parts {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        match rest.strip_prefix(lit) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Compares names with digit runs as numbers (6.1.0-9 < 6.1.0-10).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut text = String::new();
        let mut num = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
            } else {
                if !num.is_empty() {
                    out.push((std::mem::take(&mut text), num.parse().unwrap_or(u64::MAX)));
                    num.clear();
                }
                text.push(c);
            }
        }
        out.push((text, num.parse().unwrap_or(0)));
        out
    }
    key(a).cmp(&key(b))
}

/// The series' package with the highest candidate version, if apt knows one.
fn newest(series: &Series) -> Result<Option<String>> {
    let mut names: Vec<String> = Vec::new();
    for pattern in series.patterns {
        let mut search = Command::new("apt-cache");
        search.args(["search", "--names-only", pattern]);
        let out = cmd::probe(&mut search).context("cannot run apt-cache")?;
        if !out.status.success() {
            bail!("`{}` failed", cmd::display(&search));
        }
        names.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| matches_series(series, n))
                .map(str::to_owned),
        );
    }
    if names.is_empty() {
        return Ok(None);
    }
    // One query for all: "pkg:\n  Installed: ...\n  Candidate: <version>".
    let mut policy = Command::new("apt-cache");
    policy.arg("policy").args(&names);
    let out = cmd::probe(&mut policy).context("cannot run apt-cache policy")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut best: Option<(String, String)> = None;
    let mut current: Option<&str> = None;
    for line in text.lines() {
        if !line.starts_with(' ') {
            current = line.strip_suffix(':');
        } else if let (Some(pkg), Some(v)) = (current, line.trim().strip_prefix("Candidate: ")) {
            if v == "(none)" {
                continue;
            }
            let newer = match &best {
                None => true,
                Some((_, bv)) => version_gt(v, bv),
            };
            if newer {
                best = Some((pkg.to_owned(), v.to_owned()));
            }
        }
    }
    Ok(best.map(|(p, _)| p))
}

fn version_gt(a: &str, b: &str) -> bool {
    cmd::probe_ok(Command::new("dpkg").args(["--compare-versions", a, "gt", b]))
}

/// Adds bookworm-backports to apt's sources (once) and updates the lists.
fn add_backports() -> Result<()> {
    if Path::new(BACKPORTS_LIST).is_file() {
        return Ok(());
    }
    say(format!("adding bookworm-backports ({BACKPORTS_LIST})"));
    fs::write(BACKPORTS_LIST, BACKPORTS_LINE)
        .with_context(|| format!("cannot write {BACKPORTS_LIST} (root needed)"))?;
    let mut update = Command::new("apt-get");
    update
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["update", "-q"]);
    cmd::run(&mut update)
}

/// `depends=` of a module file's .modinfo (uncompressed bytes).
pub fn depends(ko: &[u8]) -> Vec<String> {
    ko.split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A module's bytes, decompressed when it is `.ko.xz` / `.ko.zst`.
pub fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else {
        None
    };
    match tool {
        None => fs::read(path).with_context(|| format!("cannot read {}", path.display())),
        Some(tool) => {
            let mut dc = Command::new(tool);
            dc.arg("-dc").arg(path);
            let out = cmd::probe(&mut dc)
                .with_context(|| format!("cannot run {tool} (needed for {})", path.display()))?;
            if !out.status.success() {
                bail!("`{}` failed", cmd::display(&dc));
            }
            Ok(out.stdout)
        }
    }
}

/// `wanted` and their dependencies, dependencies first, as (name, bytes);
/// built-in modules are left out.
pub fn modules_in_order(k: &Kernel, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    fn visit(
        k: &Kernel,
        name: &str,
        out: &mut Vec<(String, Vec<u8>)>,
        seen: &mut Vec<String>,
    ) -> Result<()> {
        let name = name.replace('-', "_");
        if seen.contains(&name) {
            return Ok(());
        }
        seen.push(name.clone());
        let Some(file) = k.module_file(&name) else {
            if k.builtin(&name) {
                return Ok(());
            }
            bail!(
                "{} has no module {name} and does not build it in",
                k.package
            );
        };
        let bytes = module_bytes(&file)?;
        for dep in depends(&bytes) {
            visit(k, &dep, out, seen)?;
        }
        out.push((name, bytes));
        Ok(())
    }
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for w in wanted {
        visit(k, w, &mut out, &mut seen)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_patterns_match_debian_names() {
        let (s61, s612) = (&SERIES[0], &SERIES[1]);
        assert!(matches_series(
            s61,
            "linux-image-6.1.0-57-cloud-amd64-unsigned"
        ));
        assert!(!matches_series(s61, "linux-image-6.1.0-57-cloud-amd64"));
        assert!(!matches_series(
            s61,
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned"
        ));
        assert!(matches_series(
            s612,
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned"
        ));
        assert!(!matches_series(
            s612,
            "linux-image-6.1.0-57-cloud-amd64-unsigned"
        ));
        assert!(matches_series(
            s612,
            "linux-image-6.12.12+bpo-cloud-amd64-unsigned"
        ));
        assert!(!matches_series(s612, "linux-image-6.12.12+bpo-cloud-amd64"));
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["x-6.1.0-9-y", "x-6.1.0-57-y", "x-6.1.0-10-y"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["x-6.1.0-9-y", "x-6.1.0-10-y", "x-6.1.0-57-y"]);
    }

    #[test]
    fn modinfo_depends() {
        let ko = b"\x7fELF...\0license=GPL\0depends=llc,stp\0retpoline=Y\0";
        assert_eq!(depends(ko), ["llc", "stp"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"nothing").is_empty());
    }
}
