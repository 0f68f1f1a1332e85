//! Words: how namespaces, ports and peers are named in messages and how
//! durations are written (what a drop reason means is in
//! [`crate::explain`]).

use std::{borrow::Cow, fmt::Write as _, net::IpAddr};

use serde::Serialize;

use crate::event::{ContainerRef, EcsEvent, Mac, Netns, Peer};

/// "overlay backend", "the host's namespace", "netns 1-8f3e2a1b" or
/// "netns 4026532281".
pub(crate) fn ns_label(ns: Option<&Netns>) -> String {
    match ns {
        Some(Netns { host: true, .. }) => "the host's namespace".to_string(),
        Some(Netns {
            network: Some(net), ..
        }) => format!("overlay {net}"),
        Some(Netns {
            name: Some(name), ..
        }) => format!("netns {name}"),
        Some(n) => format!("netns {}", n.inode),
        None => "an unknown namespace".to_string(),
    }
}

/// `cmd` run in a namespace known by its name: as it is in the host's
/// namespace (Docker's handle for it is `default`, no `ip netns` name);
/// through its file for a name Docker gives (`/var/run/docker/netns`,
/// which `ip netns exec` does not open); else `ip netns exec NAME`. None for
/// a namespace without a name.
pub(crate) fn in_named_ns(ns: Option<&Netns>, cmd: &str) -> Option<String> {
    use crate::identity::names::{parse_netns_name, NetnsName};
    let ns = ns?;
    if ns.host {
        return Some(cmd.to_string());
    }
    let name = ns.name.as_deref()?;
    Some(match parse_netns_name(name) {
        NetnsName::Other => format!("ip netns exec {} {cmd}", sh(name)),
        _ => format!(
            "nsenter --net={} {cmd}",
            sh(&format!("/var/run/docker/netns/{name}"))
        ),
    })
}

/// One word of a shell command built from a name that a container, its
/// creator or a capture chose (interface, namespace, network, container
/// names): as is when it holds only characters no POSIX shell treats
/// specially, else in single quotes (each `'` written `'\''`), so
/// `vx$(reboot)` is pasted as the literal name `'vx$(reboot)'`. A name
/// with control characters (a newline would end the pasted command) is
/// left out: `<unprintable name>`, which a shell refuses to run.
pub(crate) fn sh(word: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return Cow::Borrowed(word);
    }
    if word.chars().any(char::is_control) {
        return Cow::Borrowed("<unprintable name>");
    }
    let mut q = String::with_capacity(word.len() + 2);
    q.push('\'');
    for c in word.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    Cow::Owned(q)
}

/// A namespace as hints refer to it: by name, else by its container.
#[derive(Clone, Debug, Default)]
pub(crate) struct NsRef {
    pub(crate) ns: Option<Netns>,
    pub(crate) container: Option<ContainerRef>,
}

impl NsRef {
    pub(crate) fn new(ns: Option<&Netns>, container: Option<&ContainerRef>) -> Self {
        Self {
            ns: ns.cloned(),
            container: container.cloned(),
        }
    }

    /// The name `ip -n` takes, if the namespace has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.ns.as_ref().and_then(|n| n.name.as_deref())
    }

    /// `cmd` (an `ip ...`, `bridge ...` or any command line, its own names
    /// already quoted with [`sh`]) run in this namespace: `ip -n NAME ...`
    /// for a named one, else through the container's sandbox, else through
    /// a process of the namespace. Names are quoted with [`sh`].
    pub(crate) fn cmd(&self, cmd: &str) -> String {
        // The host's namespace is where an operator's shell already is
        // (Docker names it `default` in /var/run/docker/netns, which
        // `ip netns` does not know).
        if self.ns.as_ref().is_some_and(|n| n.host) {
            return cmd.to_string();
        }
        if let Some(name) = self.name() {
            let name = sh(name);
            for tool in ["ip ", "bridge "] {
                if let Some(rest) = cmd.strip_prefix(tool) {
                    return format!("{tool}-n {name} {rest}");
                }
            }
            return format!("ip netns exec {name} {cmd}");
        }
        if let Some(c) = &self.container {
            return format!(
                "nsenter --net=$(docker inspect -f '{{{{.NetworkSettings.SandboxKey}}}}' {}) {cmd}",
                sh(&c.display_name())
            );
        }
        match &self.ns {
            Some(n) => format!(
                "nsenter --net=/proc/<pid in netns {}>/ns/net {cmd}",
                n.inode
            ),
            None => cmd.to_string(),
        }
    }

    /// "overlay backend", "web.1's namespace", "netns 4026532281".
    pub(crate) fn label(&self) -> String {
        match (&self.ns, &self.container) {
            (
                Some(Netns {
                    network: Some(_), ..
                }),
                _,
            )
            | (_, None) => ns_label(self.ns.as_ref()),
            (_, Some(c)) => format!("{}'s namespace", c.display_name()),
        }
    }
}

/// Who claims one IP, from the owners of the MACs that answer for it:
/// "two containers" when identity knows each as a container, else "two
/// hosts".
pub(crate) fn claimants<'a>(owners: impl ExactSizeIterator<Item = Option<&'a str>>) -> String {
    let n = owners.len();
    let mut owners = owners;
    let who = if owners.all(|o| o.is_some()) {
        "containers"
    } else {
        "hosts"
    };
    let n = match n {
        2 => "two".to_string(),
        3 => "three".to_string(),
        n => n.to_string(),
    };
    format!("{n} {who}")
}

/// A port is a vxlan when its peer says so: by the interface's link kind
/// (rtnetlink `IFLA_INFO_KIND`), never by its name, which a container with
/// CAP_NET_ADMIN chooses. A port identity does not know is not a vxlan.
pub(crate) fn is_vxlan(_port: &str, peer: Option<&Peer>) -> bool {
    peer.is_some_and(|p| p.kind == "vxlan")
}

/// What is behind a port, in words: "container api.1", "overlay backend".
pub(crate) fn peer_label(port: &str, peer: Option<&Peer>) -> String {
    let vx = is_vxlan(port, peer);
    match peer {
        Some(p) => match (p.kind, &p.container, &p.network, &p.netns) {
            (_, Some(c), _, _) => format!("container {}", c.display_name()),
            ("vxlan", _, Some(n), _) => format!("overlay {n}"),
            (_, _, Some(n), _) if vx => format!("overlay {n}"),
            (_, _, _, Some(ns)) => format!("netns {ns}"),
            _ if vx => "vxlan".to_string(),
            (k, _, Some(n), _) => format!("{k} {n}"),
            (k, ..) => k.to_string(),
        },
        None if vx => "vxlan".to_string(),
        None => "unknown".to_string(),
    }
}

pub(crate) fn peer_kind(port: &str, peer: Option<&Peer>) -> &'static str {
    match peer {
        Some(p) if !p.kind.is_empty() && p.kind != "unknown" => p.kind,
        _ if is_vxlan(port, peer) => "vxlan",
        _ => "unknown",
    }
}

pub(crate) fn container_name(c: Option<&ContainerRef>) -> Option<String> {
    c.map(ContainerRef::display_name)
}

/// `02:42:0a:00:00:03`, the spelling `bridge fdb` and `ip neigh` take.
pub(crate) fn mac_cmd(m: &Mac) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in m.0.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Seconds as a short decimal for messages: `10 s`, `1.5 s`, `250 ms`.
pub(crate) fn dur(ns: i128) -> String {
    if ns < 1_000_000_000 && ns % 1_000_000 == 0 && ns > 0 {
        return format!("{} ms", ns / 1_000_000);
    }
    let s = secs(ns);
    if s.fract() == 0.0 {
        format!("{} s", s as i64)
    } else {
        format!("{s:.1} s")
    }
}

/// ns → seconds as f64 (JSON `*_s` fields), rounded to the millisecond.
pub(crate) fn secs(ns: i128) -> f64 {
    ((ns / 1_000_000) as f64) / 1000.0
}

/// "a, b and c".
pub(crate) fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [a] => a.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_macs() {
        assert_eq!(dur(10_000_000_000), "10 s");
        assert_eq!(dur(1_500_000_000), "1.5 s");
        assert_eq!(dur(250_000_000), "250 ms");
        assert_eq!(mac_cmd(&Mac([2, 0x42, 10, 0, 0, 3])), "02:42:0a:00:00:03");
        assert_eq!(
            join_and(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
    }

    #[test]
    fn vxlan_by_link_kind_only() {
        let p = Peer {
            kind: "vxlan",
            interface: "x".into(),
            network: Some("backend".into()),
            ..Peer::default()
        };
        assert!(is_vxlan("x", Some(&p)));
        assert_eq!(peer_label("x", Some(&p)), "overlay backend");
        // Unknown to identity: not a vxlan, whatever its name.
        assert!(!is_vxlan("vxlan1", None));
        assert!(!is_vxlan("vx-001001-abcde", None));
        assert_eq!(peer_kind("vxlan1", None), "unknown");
        assert_eq!(peer_label("vxlan1", None), "unknown");
        assert!(!is_vxlan("veth7b2", None));
        let c = Peer {
            kind: "container",
            interface: "vxfoo".into(),
            ..Peer::default()
        };
        assert!(!is_vxlan("vxfoo", Some(&c)), "peer kind wins over name");
    }

    #[test]
    fn shell_words_are_quoted_or_left_out() {
        assert_eq!(sh("vxlan0"), "vxlan0");
        assert_eq!(sh("1-rzas19f222"), "1-rzas19f222");
        assert_eq!(sh("02:42:0a:00:00:03"), "02:42:0a:00:00:03");
        assert_eq!(sh("vx$(touch /tmp/x)"), "'vx$(touch /tmp/x)'");
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), "'it'\\''s'");
        assert_eq!(sh("`id`;rm"), "'`id`;rm'");
        assert_eq!(sh(""), "''");
        assert_eq!(sh("a\nb"), "<unprintable name>");
        assert_eq!(sh("é"), "'é'");
        // What a POSIX shell makes of each quoted word: the name itself.
        for name in ["vx$(touch /tmp/x)", "it's", "a b", "`id`", "x'\"$y\\"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh(name)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), name);
        }
        let hostile = NsRef::new(
            Some(&Netns {
                inode: 1,
                name: Some("ns$(id)".into()),
                network: None,
                host: false,
            }),
            None,
        );
        assert_eq!(hostile.cmd("ip neigh show"), "ip -n 'ns$(id)' neigh show");
        assert_eq!(hostile.cmd("ping x"), "ip netns exec 'ns$(id)' ping x");
    }

    #[test]
    fn commands_in_a_namespace() {
        let named = NsRef::new(
            Some(&Netns {
                inode: 1,
                name: Some("1-abc".into()),
                network: None,
                host: false,
            }),
            None,
        );
        assert_eq!(named.cmd("ip neigh show"), "ip -n 1-abc neigh show");
        assert_eq!(named.cmd("bridge fdb show"), "bridge -n 1-abc fdb show");
        assert_eq!(named.cmd("ping x"), "ip netns exec 1-abc ping x");
        let c = ContainerRef::new(crate::event::ContainerData {
            id: "abc".into(),
            name: Some("web.1".into()),
            ..Default::default()
        });
        let by_container = NsRef::new(
            Some(&Netns {
                inode: 2,
                ..Netns::default()
            }),
            Some(&c),
        );
        assert_eq!(
            by_container.cmd("ip route get 10.0.0.3"),
            "nsenter --net=$(docker inspect -f '{{.NetworkSettings.SandboxKey}}' web.1) ip route get 10.0.0.3"
        );
        assert_eq!(by_container.label(), "web.1's namespace");
    }
}

/// One end of a flow in an alert payload (keys in alphabetical order, as
/// every payload has them).
#[derive(Serialize)]
pub(crate) struct FlowEnd<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container: Option<String>,
    pub(crate) ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) netns: Option<&'a Netns>,
    pub(crate) port: u16,
}

impl<'a> FlowEnd<'a> {
    /// Source and destination of the flow of a TCP event whose remote
    /// address is `rip`: the source in the event's namespace (its address
    /// `rip` when the event has none), the destination without one.
    pub(crate) fn pair(
        ev: &'a EcsEvent,
        rip: IpAddr,
        src: Option<&ContainerRef>,
        dst: Option<&ContainerRef>,
    ) -> (Self, Self) {
        (
            Self {
                ip: ev.source.ip.unwrap_or(rip),
                port: ev.source.port.unwrap_or(0),
                container: container_name(src),
                netns: ev.tracer.netns.as_ref(),
            },
            Self {
                ip: rip,
                port: ev.destination.port.unwrap_or(0),
                container: container_name(dst),
                netns: None,
            },
        )
    }
}
