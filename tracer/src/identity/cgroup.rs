//! Container ids from cgroup paths (`/proc/<pid>/cgroup`), for every
//! runtime's layout, so identity works without any runtime API.
//!
//! Layouts recognised (innermost container wins, so Docker-in-Docker names
//! the inner one):
//! - Docker: cgroup v1 / cgroupfs driver `/docker/<id>`, systemd driver
//!   `/system.slice/docker-<id>.scope`
//! - containerd (CRI): `…/cri-containerd-<id>.scope`, cgroupfs driver
//!   `/kubepods/<qos>/pod<uid>/<id>`; nerdctl `nerdctl-<id>.scope`
//! - CRI-O: `…/crio-<id>.scope` (not `crio-conmon-<id>.scope`: the monitor
//!   runs in the host's namespaces)
//! - Podman: `libpod-<id>.scope` (also `…/libpod-<id>.scope/container`),
//!   cgroupfs `/libpod_parent/libpod-<id>/ctr` (not `libpod-conmon-…`)

/// A container recognised in a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupContainer {
    /// 64 hex digits.
    pub id: String,
    /// `docker`, `containerd`, `cri-o`, `podman`; `None` when the layout
    /// does not say.
    pub runtime: Option<&'static str>,
}

const PREFIXES: &[(&str, &str)] = &[
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("nerdctl-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
];

fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The container a cgroup path belongs to, if any.
pub fn parse_cgroup_path(path: &str) -> Option<CgroupContainer> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, seg) in segs.iter().enumerate().rev() {
        let base = seg.strip_suffix(".scope").unwrap_or(seg);
        for (prefix, runtime) in PREFIXES {
            if let Some(id) = base.strip_prefix(prefix) {
                // `crio-conmon-<id>`, `libpod-conmon-<id>`: the monitor process.
                if is_id(id) {
                    return Some(CgroupContainer {
                        id: id.to_string(),
                        runtime: Some(runtime),
                    });
                }
            }
        }
        if is_id(seg) {
            let parents = &segs[..i];
            let runtime = if parents.contains(&"docker") {
                Some("docker")
            } else if parents.iter().any(|p| p.starts_with("libpod")) {
                Some("podman")
            } else if parents.iter().any(|p| p.starts_with("kubepods")) {
                // kubelet's cgroupfs driver: containerd is the common runtime.
                Some("containerd")
            } else {
                None
            };
            return Some(CgroupContainer {
                id: seg.to_string(),
                runtime,
            });
        }
    }
    None
}

/// The container a process belongs to, from the whole `/proc/<pid>/cgroup`
/// file (`hierarchy:controllers:path` lines; the v2 line `0::…` first).
pub fn parse_cgroup_file(contents: &str) -> Option<CgroupContainer> {
    let paths = || {
        contents
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2).map(|p| (l.starts_with("0::"), p)))
    };
    paths()
        .filter(|(v2, _)| *v2)
        .chain(paths().filter(|(v2, _)| !*v2))
        .find_map(|(_, p)| parse_cgroup_path(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3a991567d09b06b229c6f68980cb7abacd8a906f8d4e16f40a99ebdf7d0db515";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(path: &str) -> Option<(String, Option<&'static str>)> {
        parse_cgroup_path(path).map(|c| (c.id, c.runtime))
    }

    #[test]
    fn docker_v1_and_v2() {
        assert_eq!(
            p(&format!("/docker/{ID}")),
            Some((ID.into(), Some("docker")))
        );
        assert_eq!(
            p(&format!("/system.slice/docker-{ID}.scope")),
            Some((ID.into(), Some("docker")))
        );
        // Docker in Docker: the innermost container.
        assert_eq!(
            p(&format!("/docker/{ID}/docker/{ID2}")),
            Some((ID2.into(), Some("docker")))
        );
    }

    #[test]
    fn containerd() {
        assert_eq!(
            p(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e.slice/cri-containerd-{ID}.scope"
            )),
            Some((ID.into(), Some("containerd")))
        );
        assert_eq!(
            p(&format!(
                "/kubepods/burstable/pod0b5a6d1e-aaaa-bbbb-cccc-0123456789ab/{ID}"
            )),
            Some((ID.into(), Some("containerd")))
        );
        assert_eq!(
            p(&format!("/kubepods/besteffort/pod1/{ID}")),
            Some((ID.into(), Some("containerd")))
        );
        assert_eq!(
            p(&format!("/system.slice/nerdctl-{ID}.scope")),
            Some((ID.into(), Some("containerd")))
        );
        // containerd namespace layout: the id, runtime unknown.
        assert_eq!(p(&format!("/default/{ID}")), Some((ID.into(), None)));
    }

    #[test]
    fn crio() {
        assert_eq!(
            p(&format!(
                "/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"
            )),
            Some((ID.into(), Some("cri-o")))
        );
        // The monitor is not the container.
        assert_eq!(
            p(&format!(
                "/kubepods.slice/kubepods-pod1.slice/crio-conmon-{ID}.scope"
            )),
            None
        );
    }

    #[test]
    fn podman() {
        assert_eq!(
            p(&format!("/machine.slice/libpod-{ID}.scope")),
            Some((ID.into(), Some("podman")))
        );
        assert_eq!(
            p(&format!("/machine.slice/libpod-{ID}.scope/container")),
            Some((ID.into(), Some("podman")))
        );
        assert_eq!(
            p(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            )),
            Some((ID.into(), Some("podman")))
        );
        assert_eq!(
            p(&format!("/libpod_parent/libpod-{ID}/ctr")),
            Some((ID.into(), Some("podman")))
        );
        assert_eq!(p(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
    }

    #[test]
    fn not_containers() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/docker/abc",
            // Upper-case or short: not an id.
            &format!("/docker/{}", ID.to_uppercase()),
            &format!("/docker/{}", &ID[..63]),
            "/init.scope",
        ] {
            assert_eq!(p(path), None, "{path}");
        }
    }

    #[test]
    fn whole_file_prefers_the_v2_line() {
        let v1 = format!("12:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/docker/{ID2}\n");
        assert_eq!(parse_cgroup_file(&v1).map(|c| c.id), Some(ID2.into()));
        let v1_only = format!("3:cpu,cpuacct:/\n2:pids:/system.slice/docker-{ID}.scope\n");
        assert_eq!(parse_cgroup_file(&v1_only).map(|c| c.id), Some(ID.into()));
        assert_eq!(parse_cgroup_file("0::/init.scope\n"), None);
        assert_eq!(parse_cgroup_file(""), None);
        assert_eq!(parse_cgroup_file("garbage\n::\n"), None);
    }
}
