//! Words: how namespaces, ports and peers are named in messages, what a drop
//! reason means, and how durations are written.

use std::fmt::Write as _;

use crate::event::{ContainerRef, Mac, Netns, Peer};

/// "overlay backend", "netns 1-8f3e2a1b" or "netns 4026532281".
pub(crate) fn ns_label(ns: Option<&Netns>) -> String {
    match ns {
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

    /// `cmd` (an `ip ...`, `bridge ...` or any command line) run in this
    /// namespace: `ip -n NAME ...` for a named one, else through the
    /// container's sandbox, else through a process of the namespace.
    pub(crate) fn cmd(&self, cmd: &str) -> String {
        if let Some(name) = self.name() {
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
                c.display_name()
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

/// A port is a vxlan when its peer says so, else by its name.
pub(crate) fn is_vxlan(port: &str, peer: Option<&Peer>) -> bool {
    match peer {
        Some(p) if p.kind != "unknown" && !p.kind.is_empty() => p.kind == "vxlan",
        _ => port.starts_with("vxlan") || port.starts_with("vx"),
    }
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

/// What a kernel drop reason means and what to look at.
pub(crate) fn drop_reason_meaning(reason: &str) -> &'static str {
    match reason {
        "NOT_SPECIFIED" => "the kernel gave no reason; the location says where it was freed",
        "NO_SOCKET" => "no socket listens on the destination port (closed port, service not up or wrong port)",
        "SOCKET_FILTER" => "a socket BPF filter rejected the packet",
        "SOCKET_RCVBUFF" => "the socket receive buffer is full: the application reads too slowly",
        "PROTO_MEM" => "the protocol is over its memory limit (net.ipv4.tcp_mem / udp_mem)",
        "NETFILTER_DROP" => "a netfilter (iptables/nftables) rule dropped the packet: check the DOCKER-USER / FORWARD chains",
        "OTHERHOST" => "the frame was addressed to another host's MAC (stale ARP/FDB entry pointing here)",
        "IP_CSUM" | "TCP_CSUM" | "UDP_CSUM" | "ICMP_CSUM" | "SKB_CSUM" => {
            "bad checksum: broken offload or corruption on the path"
        }
        "IP_INHDR" => "invalid IP header",
        "IP_RPFILTER" => "reverse-path filter: the source is not routable back through the receiving interface (rp_filter)",
        "IP_NOPROTO" | "UNHANDLED_PROTO" | "INVALID_PROTO" => "no handler for the protocol",
        "IP_OUTNOROUTES" | "IP_INNOROUTES" => "no route to the destination (missing or blackhole route)",
        "IP_INADDRERRORS" => "invalid destination address",
        "PKT_TOO_SMALL" | "HDR_TRUNC" => "truncated packet",
        "PKT_TOO_BIG" => "packet bigger than the MTU and not fragmentable: check the MTU of the overlay/veth path",
        "NEIGH_FAILED" => "neighbour (ARP/NDP) resolution failed: the next hop does not answer ARP",
        "NEIGH_QUEUEFULL" => "too many packets waiting for ARP resolution of the next hop",
        "NEIGH_CREATEFAIL" => "the neighbour table could not create an entry (gc_thresh limits)",
        "NEIGH_DEAD" => "the neighbour entry was removed while packets waited",
        "QDISC_DROP" => "the egress queue discipline dropped it (queue full or shaping)",
        "CPU_BACKLOG" => "the per-CPU backlog is full (netdev_max_backlog)",
        "FULL_RING" => "the device ring is full",
        "NOMEM" => "out of memory allocating for the packet",
        "TC_INGRESS" | "TC_EGRESS" => "a tc filter dropped it",
        "XDP" => "an XDP program dropped it",
        "BPF_CGROUP_EGRESS" => "a cgroup BPF program dropped it",
        "DEV_READY" => "the device was down",
        "DEV_HDR" => "invalid link-layer header",
        "TCP_RESET" => "the packet belonged to a reset connection",
        "TCP_CLOSE" => "the packet arrived for a closed connection",
        "TCP_ZEROWINDOW" => "the receiver advertised a zero window",
        "TCP_OLD_DATA" | "TCP_OLD_ACK" | "TCP_TOO_OLD_ACK" => "duplicate or stale TCP segment (retransmission already received)",
        "TCP_OVERWINDOW" | "TCP_INVALID_SEQUENCE" => "TCP segment outside the receive window",
        "TCP_FLAGS" | "TCP_INVALID_SYN" => "invalid TCP flags for the connection state",
        "TCP_OFOMERGE" | "TCP_OFO_DROP" | "TCP_OFO_QUEUE_PRUNE" => "out-of-order queue pruned (memory pressure)",
        "UNICAST_IN_L2_MULTICAST" => "unicast IP in a link-layer multicast frame",
        "XFRM_POLICY" => "an IPsec policy rejected the packet",
        "VXLAN_INVALID_HDR" | "VXLAN_VNI_NOT_FOUND" => "vxlan packet for an unknown VNI or with a bad header",
        "VXLAN_NO_REMOTE" => "the vxlan has no remote for the destination (missing FDB entry)",
        "VXLAN_ENTRY_EXISTS" => "vxlan FDB entry already exists",
        "MAC_INVALID_SOURCE" | "MAC_IS_MULTICAST" => "invalid source MAC",
        "FRAG_REASM_TIMEOUT" | "FRAG_TOO_FAR" | "DUP_FRAG" => "IP fragment reassembly failed",
        "QUEUE_PURGE" => "the queue was purged (device or socket going away)",
        _ => "see the kernel's enum skb_drop_reason for this reason",
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
    fn vxlan_by_peer_then_name() {
        let p = Peer {
            kind: "vxlan",
            interface: "x".into(),
            network: Some("backend".into()),
            ..Peer::default()
        };
        assert!(is_vxlan("x", Some(&p)));
        assert_eq!(peer_label("x", Some(&p)), "overlay backend");
        assert!(is_vxlan("vxlan1", None));
        assert!(is_vxlan("vx-001001-abcde", None));
        assert!(!is_vxlan("veth7b2", None));
        let c = Peer {
            kind: "container",
            interface: "vxfoo".into(),
            ..Peer::default()
        };
        assert!(!is_vxlan("vxfoo", Some(&c)), "peer kind wins over name");
    }

    #[test]
    fn commands_in_a_namespace() {
        let named = NsRef::new(
            Some(&Netns {
                inode: 1,
                name: Some("1-abc".into()),
                network: None,
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
