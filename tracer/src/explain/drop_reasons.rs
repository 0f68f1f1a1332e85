//! What each kernel drop reason means, in words an operator understands, and
//! what to check: keyed by the reason's *name* (`NETFILTER_DROP`), never by
//! its number, which differs between kernels.
//!
//! The table covers every name of `enum skb_drop_reason` of the kernels
//! tracer supports (5.17, where the enum appeared, up to 6.18, including names
//! later renamed or removed: `TCP_FILTER`, `PTYPE_ABSENT`, `FRAG_BPF_EINVAL`,
//! `TC_ERROR`, `VXLAN_NO_REMOTE`), the subsystems of
//! `enum skb_drop_reason_subsys` (a subsystem reason is named
//! `SUBSYS_<NAME>:0x<raw>` by [`crate::kernel::btf::DropReasons::name`]) and Open
//! vSwitch's `enum ovs_drop_reason`. A unit test reads the running kernel's
//! BTF and fails when one of its names has no entry here.
//!
//! `NOT_SPECIFIED` says nothing by itself; where the kernel function that
//! freed the packet is telling (`vxlan_xmit`, `br_*`, `ip_error` ...), the
//! explanation comes from the location instead ([`LOCATIONS`]).
//!
//! Everything is `'static`: [`explain_drop`] allocates nothing.

use std::borrow::Cow;

/// What a drop means and what to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// What happened, in plain words ("a firewall rule (nftables/iptables)
    /// dropped it"). For an unknown name, a generic sentence: use
    /// [`Explanation::meaning_of`] to have the name in it.
    pub meaning: &'static str,
    /// What to check or do next, starting with a verb ("check `nft list
    /// ruleset` in that namespace ...").
    pub check: &'static str,
    /// Whether the name is in the table (false: a newer kernel's reason).
    pub known: bool,
}

impl Explanation {
    /// The meaning, naming the reason when tracer does not know it:
    /// "drop reason X is not known to this tracer version (newer kernel?)".
    /// Borrowed (no allocation) for every known name.
    pub fn meaning_of(&self, name: &str) -> Cow<'static, str> {
        if self.known {
            Cow::Borrowed(self.meaning)
        } else {
            Cow::Owned(format!(
                "drop reason {name} is not known to this tracer version (newer kernel?)"
            ))
        }
    }

    /// "meaning — check", the sentence drop summaries end with.
    pub fn sentence(&self, name: &str) -> String {
        format!("{} — {}", self.meaning_of(name), self.check)
    }
}

/// One reason name and its explanation.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Name without the `SKB_DROP_REASON_` prefix, as tracer prints it.
    pub name: &'static str,
    pub meaning: &'static str,
    pub check: &'static str,
}

const fn r(name: &'static str, meaning: &'static str, check: &'static str) -> Entry {
    Entry {
        name,
        meaning,
        check,
    }
}

/// A kernel function (prefix) whose drops mean something specific.
#[derive(Clone, Copy, Debug)]
pub struct Location {
    /// Function-name prefixes (`vxlan_xmit` matches `vxlan_xmit_one`).
    pub prefixes: &'static [&'static str],
    /// Reasons this applies to besides `NOT_SPECIFIED` (which always
    /// consults the location).
    pub also_for: &'static [&'static str],
    pub meaning: &'static str,
    pub check: &'static str,
}

const UNKNOWN: Explanation = Explanation {
    meaning: "this drop reason is not known to this tracer version (newer kernel?)",
    check: "see the kernel's include/net/dropreason-core.h for this reason",
    known: false,
};

const PREFIX: &str = "SKB_DROP_REASON_";

/// Explains drop reason `name` (with or without the `SKB_DROP_REASON_`
/// prefix; a subsystem reason as `SUBSYS_<NAME>:0x<raw>`) dropped at
/// `location` (a kallsyms location such as `vxlan_xmit+0x1a4 [vxlan]`, or
/// just a function name).
///
/// `NOT_SPECIFIED` is explained by its location when the location is
/// telling; an unknown name gets `known: false` and says so.
pub fn explain_drop(name: &str, location: Option<&str>) -> Explanation {
    let name = name.strip_prefix(PREFIX).unwrap_or(name);
    if let Some(func) = location.map(function_of) {
        if let Some(l) = by_location(name, func) {
            return Explanation {
                meaning: l.meaning,
                check: l.check,
                known: true,
            };
        }
    }
    // `SUBSYS_OPENVSWITCH:0x30001` → the subsystem's entry.
    let key = match name.split_once(':') {
        Some((sub, _)) if sub.starts_with("SUBSYS_") => sub,
        _ => name,
    };
    match entry(key) {
        Some(e) => Explanation {
            meaning: e.meaning,
            check: e.check,
            known: true,
        },
        None => UNKNOWN,
    }
}

/// The table entry of a reason name (exact, prefix already stripped).
pub fn entry(name: &str) -> Option<&'static Entry> {
    REASONS
        .binary_search_by(|e| e.name.cmp(name))
        .ok()
        .map(|i| &REASONS[i])
}

/// Every entry, sorted by name.
pub fn entries() -> &'static [Entry] {
    REASONS
}

/// `vxlan_xmit+0x1a4 [vxlan]` → `vxlan_xmit`; a bare name stays as is.
pub fn function_of(location: &str) -> &str {
    let s = location.trim();
    let s = s.split_once(' ').map_or(s, |(f, _)| f);
    s.split_once('+').map_or(s, |(f, _)| f)
}

fn by_location(name: &str, func: &str) -> Option<&'static Location> {
    if func.is_empty() {
        return None;
    }
    let generic = name == "NOT_SPECIFIED";
    LOCATIONS.iter().find(|l| {
        (generic || l.also_for.contains(&name)) && l.prefixes.iter().any(|p| func.starts_with(p))
    })
}

/// Locations that explain a `NOT_SPECIFIED` drop (and the listed reasons),
/// first match wins: more specific prefixes come first.
pub static LOCATIONS: &[Location] = &[
    Location {
        prefixes: &["vxlan_mdb_xmit"],
        also_for: &["NO_TX_TARGET", "VXLAN_NO_REMOTE"],
        meaning: "the overlay (vxlan) had no remote for this multicast group: overlay networks do not carry multicast between hosts",
        check: "check `bridge mdb show` and `bridge fdb show dev <vxlan>` in the overlay's namespace; use unicast discovery (e.g. a TCP/IP member list) or a multicast-capable network driver",
    },
    Location {
        prefixes: &["vxlan_xmit", "vxlan_encap_bypass"],
        also_for: &[],
        meaning: "the overlay (vxlan) had no destination for the frame: no FDB entry or remote for that MAC — multicast/broadcast on an overlay without a remote, or an unknown unicast MAC",
        check: "check `bridge fdb show dev <vxlan>` in the overlay's namespace for the destination MAC; overlay networks do not carry multicast between hosts (use unicast discovery)",
    },
    Location {
        prefixes: &["vxlan_rcv", "vxlan_udp_encap_recv", "vxlan_set_mac", "vxlan_snoop"],
        also_for: &[],
        meaning: "the vxlan device refused an incoming overlay packet (unknown VNI, bad header, or an invalid inner source MAC)",
        check: "check that both hosts agree on the overlay's VNI and port (`ip -d link show type vxlan`) and that the overlay network exists on this host",
    },
    Location {
        prefixes: &["geneve_"],
        also_for: &[],
        meaning: "the geneve tunnel device dropped the packet (no destination, bad header or unknown VNI)",
        check: "check the geneve device (`ip -d link show type geneve`) and its peers",
    },
    Location {
        prefixes: &["ip6_mc_input"],
        also_for: &[],
        meaning: "IPv6 multicast for a group this interface has not joined (usually harmless chatter such as MLD or router solicitations)",
        check: "nothing to do unless the application uses IPv6 multicast; filter it with `--ignore-drop-reason` if noisy",
    },
    Location {
        prefixes: &["ip_rcv_finish_core", "ip_rcv_finish", "ip_route_input", "ip_mkroute_input"],
        also_for: &[],
        meaning: "the input route lookup rejected the packet (martian source or destination, or no route back to the source)",
        check: "check `ip route` and rp_filter (`sysctl net.ipv4.conf.all.rp_filter`) in that namespace; `nstat -az IpInAddrErrors` counts these",
    },
    Location {
        prefixes: &["ip_error"],
        also_for: &[],
        meaning: "the host could not route the packet (network or host unreachable, or forwarding disabled)",
        check: "check `ip route get <destination>` and `sysctl net.ipv4.ip_forward` in that namespace",
    },
    Location {
        prefixes: &["ip_forward", "ip6_forward"],
        also_for: &[],
        meaning: "forwarding refused the packet (TTL ran out — a routing loop —, forwarding disabled, or an IPsec policy)",
        check: "check `sysctl net.ipv4.ip_forward` and the routes in that namespace for a loop (`ip route get <destination>`)",
    },
    Location {
        prefixes: &["ip_rcv_core", "ip6_rcv_core", "ipv6_rcv"],
        also_for: &[],
        meaning: "the IP input checks refused the packet (bad header, not for this host, or the interface cannot take it)",
        check: "capture it (`tcpdump -vv`) and check the sender; `nstat -az IpInHdrErrors` counts these",
    },
    Location {
        prefixes: &["ip_local_deliver", "ip_protocol_deliver", "ip6_protocol_deliver"],
        also_for: &[],
        meaning: "no handler on this host for the packet's IP protocol",
        check: "check which protocol the sender uses and that its kernel module is loaded (`lsmod`)",
    },
    Location {
        prefixes: &["__netif_receive_skb", "netif_receive_skb", "deliver_ptype"],
        also_for: &[],
        meaning: "no handler for the frame's protocol (an ethertype nobody listens for; usually harmless chatter such as LLDP or STP)",
        check: "nothing to do unless the traffic matters; otherwise check which protocol the sender uses",
    },
    Location {
        prefixes: &["enqueue_to_backlog", "netif_rx"],
        also_for: &[],
        meaning: "the per-CPU input backlog is full: packets arrive faster than this CPU processes them",
        check: "check `cat /proc/net/softnet_stat` (second column) and raise net.core.netdev_max_backlog, or spread the load (RPS)",
    },
    Location {
        prefixes: &["br_", "__br_", "nbp_"],
        also_for: &[],
        meaning: "the Linux bridge discarded the frame (port not forwarding, VLAN filtering, a frame sent back out the port it came in on, or a port being removed)",
        check: "check `bridge link show` (port state), `bridge vlan show` and `bridge fdb show` for the bridge in that namespace",
    },
    Location {
        prefixes: &["nf_hook_slow", "nft_", "ipt_do_table", "ip6t_do_table", "ebt_do_table", "nf_queue"],
        also_for: &[],
        meaning: "a firewall rule (nftables/iptables) dropped it",
        check: "check `nft list ruleset` (and `iptables-save`) in that namespace: Docker's DOCKER-USER, DOCKER and FORWARD chains, and policies set to drop",
    },
    Location {
        prefixes: &["nf_conntrack", "nf_ct_", "__nf_conntrack", "nf_nat"],
        also_for: &[],
        meaning: "connection tracking dropped it (table full, or a packet conntrack considers invalid)",
        check: "check `conntrack -S` (drop, insert_failed) and `sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max`; `dmesg` says \"table full\" when it overflows",
    },
    Location {
        prefixes: &["neigh_", "__neigh_", "arp_solicit", "ndisc_solicit"],
        also_for: &[],
        meaning: "neighbour (ARP/NDP) resolution of the next hop failed or its queue overflowed: nobody answers for that address",
        check: "check `ip neigh show` in that namespace (FAILED/INCOMPLETE entries) and whether the address exists on that network",
    },
    Location {
        prefixes: &["arp_", "parp_redo"],
        also_for: &[],
        meaning: "an ARP packet was discarded (not for this host, invalid, or refused by arp_ignore/arp_filter)",
        check: "usually harmless; if ARP for a container fails, check `ip neigh show` and net.ipv4.conf.<interface>.arp_ignore in that namespace",
    },
    Location {
        prefixes: &["icmp_", "icmpv6_", "ping_"],
        also_for: &[],
        meaning: "an ICMP message was discarded (rate limited, broadcast echo ignored, or no socket wants it)",
        check: "usually harmless; check net.ipv4.icmp_ratelimit and net.ipv4.icmp_echo_ignore_broadcasts if ICMP matters",
    },
    Location {
        prefixes: &["igmp", "ip_mc_", "ip_check_mc", "mld_"],
        also_for: &[],
        meaning: "multicast for a group this interface has not joined, or an IGMP/MLD message discarded",
        check: "nothing to do unless the application uses multicast; check `ip maddr show` in that namespace",
    },
    Location {
        prefixes: &["sk_stream_kill_queues", "__sk_destruct", "inet_sock_destruct", "sk_common_release", "tcp_close", "__tcp_close", "inet_release"],
        also_for: &["QUEUE_PURGE"],
        meaning: "a socket was closed with data still queued: the application closed a connection before reading everything (not a loss on the network)",
        check: "check the application closing connections early (crash, restart, short timeouts)",
    },
    Location {
        prefixes: &["tcp_", "__tcp_", "inet_csk_"],
        also_for: &[],
        meaning: "TCP discarded a segment its connection state does not accept",
        check: "look at the retransmit and reset lines of the same flow; a middlebox that forgot the connection or a closed socket are the usual causes",
    },
    Location {
        prefixes: &["udp", "__udp"],
        also_for: &[],
        meaning: "UDP discarded a datagram (no socket, full receive buffer or bad checksum)",
        check: "check that something listens on the port (`ss -lnu`) and `nstat -az UdpRcvbufErrors UdpNoPorts`",
    },
    Location {
        prefixes: &["unix_"],
        also_for: &[],
        meaning: "a local (Unix) socket dropped data: not network traffic",
        check: "nothing on the network to check; look at the processes using that Unix socket",
    },
    Location {
        prefixes: &["packet_rcv", "tpacket_rcv", "packet_"],
        also_for: &[],
        meaning: "a packet socket (tcpdump, DHCP client, LLDP agent) did not take its copy: the original packet is not lost",
        check: "nothing to do for the traffic itself",
    },
    Location {
        prefixes: &["veth_"],
        also_for: &[],
        meaning: "the veth pair could not pass the packet to its other end (the peer is down — e.g. the container stopped — or its queue is full)",
        check: "check `ip link show` for both ends of the veth pair (the container may be stopping or restarting)",
    },
    Location {
        prefixes: &["__dev_forward_skb", "dev_forward_skb", "____dev_forward_skb"],
        also_for: &[],
        meaning: "handing the packet to the peer device failed (peer down, or the packet is larger than the peer's MTU)",
        check: "check `ip link show` for the peer device: its state and MTU",
    },
    Location {
        prefixes: &["__dev_queue_xmit", "dev_queue_xmit", "dev_hard_start_xmit", "sch_", "__qdisc_", "qdisc_", "pfifo_", "fq_codel_", "dev_qdisc_enqueue"],
        also_for: &[],
        meaning: "the outgoing queue dropped it (queue full, device down, or a shaper limits the rate)",
        check: "check `tc -s qdisc show dev <interface>` and the interface's state (`ip link show`)",
    },
    Location {
        prefixes: &["xfrm", "esp_", "esp4_", "esp6_"],
        also_for: &[],
        meaning: "IPsec (xfrm) dropped it: no matching policy or security association, or decryption failed (encrypted overlays use IPsec between hosts)",
        check: "check `ip xfrm policy` and `ip xfrm state` in that namespace, and that ESP (IP protocol 50) passes the firewalls between hosts",
    },
    Location {
        prefixes: &["ipvlan_", "macvlan_"],
        also_for: &[],
        meaning: "the macvlan/ipvlan device dropped it (no matching sub-interface, or mode restrictions)",
        check: "check the macvlan/ipvlan devices and their mode (`ip -d link show`)",
    },
    Location {
        prefixes: &["tun_", "tap_"],
        also_for: &[],
        meaning: "the tun/tap device dropped it (nobody reads the device, its queue is full, or its filter refused it)",
        check: "check the program that owns the tun/tap device (VPN, VM)",
    },
    Location {
        prefixes: &["ip_tunnel_", "__ip6_tnl_", "ip6_tnl_", "ipip_", "ipgre_", "gre_", "ip6gre_"],
        also_for: &[],
        meaning: "an IP tunnel (ipip/gre) dropped it (no matching tunnel, or the packet does not fit)",
        check: "check the tunnel devices (`ip -d link show`) and their MTU",
    },
    Location {
        prefixes: &["ip_defrag", "ip_frag_", "ip_expire", "ipv6_frag", "ip6_frag_", "inet_frag_"],
        also_for: &[],
        meaning: "IP fragment reassembly failed (a fragment lost, late or duplicated)",
        check: "check for fragment loss on the path (MTU, firewalls dropping fragments); better avoid fragmentation (MTU)",
    },
    Location {
        prefixes: &["ip_fragment", "ip_do_fragment", "ip_finish_output", "ip6_fragment", "ip6_finish_output", "ip_output", "ip6_output", "__ip_finish_output"],
        also_for: &[],
        meaning: "sending failed after routing (packet too big to fragment, or no neighbour for the next hop)",
        check: "check the MTUs on the path (`ip link`) and `ip neigh show` for the next hop in that namespace",
    },
];

/// Every reason name known to tracer, sorted by name (binary-searched by
/// [`entry`]).
static REASONS: &[Entry] = &[
    r(
        "ARP_PVLAN_DISABLE",
        "proxy ARP for private VLAN is disabled, so the ARP request was not answered here",
        "check net.ipv4.conf.<interface>.proxy_arp_pvlan if hosts on the same port must reach each other",
    ),
    r(
        "BPF_CGROUP_EGRESS",
        "a cgroup BPF program (e.g. a container's network policy) dropped it on the way out",
        "check the cgroup BPF programs (`bpftool cgroup tree`) installed by the container runtime or security tools",
    ),
    r(
        "BRIDGE_INGRESS_STP_STATE",
        "the bridge port is not forwarding (STP state blocking, listening or disabled)",
        "check `bridge link show` for the port's state and the bridge's STP settings",
    ),
    r(
        "CAKE_FLOOD",
        "the CAKE qdisc dropped it as flood protection",
        "check `tc -s qdisc show dev <interface>`",
    ),
    r(
        "CANFD_RX_INVALID_FRAME",
        "an invalid CAN FD frame (not IP networking)",
        "check the CAN device",
    ),
    r(
        "CANXL_RX_INVALID_FRAME",
        "an invalid CAN XL frame (not IP networking)",
        "check the CAN device",
    ),
    r(
        "CAN_RX_INVALID_FRAME",
        "an invalid CAN bus frame (not IP networking)",
        "check the CAN device",
    ),
    r(
        "CPU_BACKLOG",
        "the per-CPU input backlog is full: packets arrive faster than this CPU processes them",
        "check `cat /proc/net/softnet_stat` (second column) and raise net.core.netdev_max_backlog, or spread the load (RPS)",
    ),
    r(
        "DEV_HDR",
        "the device-specific header or metadata of the packet is invalid",
        "check the interface's driver (tun/tap, virtio) and the program writing into it",
    ),
    r(
        "DEV_READY",
        "the interface was down or not ready (for a veth: the other end is down, e.g. the container stopped)",
        "check `ip link show` for the interface and its peer in that namespace",
    ),
    r(
        "DUALPI2_STEP_DROP",
        "the DualPI2 qdisc dropped it (L4S step threshold)",
        "check `tc -s qdisc show dev <interface>`",
    ),
    r(
        "DUP_FRAG",
        "a duplicate IP fragment was discarded",
        "usually harmless; many mean retransmissions of fragmented packets",
    ),
    r(
        "FQ_BAND_LIMIT",
        "the fq qdisc's band is over its packet limit",
        "check `tc -s qdisc show dev <interface>`",
    ),
    r(
        "FQ_FLOW_LIMIT",
        "the fq qdisc's per-flow limit is reached: one flow sends faster than it may",
        "check `tc -s qdisc show dev <interface>` (flow_limit)",
    ),
    r(
        "FQ_HORIZON_LIMIT",
        "the fq qdisc dropped a packet timestamped too far in the future",
        "check `tc -s qdisc show dev <interface>` (horizon setting)",
    ),
    r(
        "FRAG_BPF_EINVAL",
        "a BPF program passed invalid arguments to IP defragmentation",
        "check the BPF programs that reassemble fragments",
    ),
    r(
        "FRAG_REASM_TIMEOUT",
        "an IP packet's fragments never all arrived: reassembly timed out",
        "check for loss of fragments on the path (MTU, firewalls dropping fragments); better avoid fragmentation (MTU)",
    ),
    r(
        "FRAG_TOO_FAR",
        "an IP fragment arrived too far out of order (ipfrag_max_dist)",
        "check reordering on the path and net.ipv4.ipfrag_max_dist",
    ),
    r(
        "FULL_RING",
        "the device's ring buffer is full",
        "check the interface's ring sizes and drops (`ethtool -g <interface>`, `ethtool -S <interface>`)",
    ),
    r(
        "HDR_TRUNC",
        "a protocol header could not be read: the packet is truncated",
        "capture the packet and check the sender (or a tunnel that truncates)",
    ),
    r(
        "ICMP_CSUM",
        "ICMP checksum error: the packet was corrupted on the way",
        "check the NIC's error counters (`ip -s link`) and checksum offloads (`ethtool -k <interface>`)",
    ),
    r(
        "INVALID_PROTO",
        "the packet breaks its protocol's rules (e.g. an ICMP timestamp sent to broadcast)",
        "check the sender",
    ),
    r(
        "IPV6DISABLED",
        "IPv6 is disabled on the receiving interface (usually harmless IPv6 chatter such as router solicitations)",
        "nothing to do unless the application uses IPv6; otherwise check net.ipv6.conf.<interface>.disable_ipv6 in that namespace",
    ),
    r(
        "IPV6_BAD_EXTHDR",
        "invalid IPv6 extension header",
        "capture the packet and check the sender",
    ),
    r(
        "IPV6_NDISC_BAD_CODE",
        "an IPv6 neighbour discovery packet with an invalid ICMPv6 code",
        "check the sender",
    ),
    r(
        "IPV6_NDISC_BAD_OPTIONS",
        "an IPv6 neighbour discovery packet with invalid options",
        "check the sender",
    ),
    r(
        "IPV6_NDISC_FRAG",
        "an IPv6 neighbour discovery packet arrived fragmented (not allowed)",
        "check the sender; usually an attack or a broken stack",
    ),
    r(
        "IPV6_NDISC_HOP_LIMIT",
        "an IPv6 neighbour discovery packet with a wrong hop limit (it did not come from the local link)",
        "check the sender; neighbour discovery must come from the same link",
    ),
    r(
        "IPV6_NDISC_NS_OTHERHOST",
        "an IPv6 neighbour solicitation for another host's address (harmless)",
        "nothing to do",
    ),
    r(
        "IP_CSUM",
        "IPv4 header checksum error: the packet was corrupted on the way",
        "check the NIC's error counters (`ip -s link`) and offloads (`ethtool -k <interface>`) on the path",
    ),
    r(
        "IP_INADDRERRORS",
        "the destination address is invalid or unreachable (host unreachable)",
        "check `ip route get <destination>` and the destination address the sender uses",
    ),
    r(
        "IP_INHDR",
        "the IP header is invalid (bad version, length or TTL)",
        "capture the packet (`tcpdump -vv`) and check the sender; `nstat -az IpInHdrErrors` counts these",
    ),
    r(
        "IP_INNOROUTES",
        "no route for a received packet: network unreachable",
        "check `ip route` in that namespace, and net.ipv4.ip_forward when the packet should be forwarded",
    ),
    r(
        "IP_INVALID_DEST",
        "the destination address is invalid (martian: zero or loopback)",
        "check the sender's destination address",
    ),
    r(
        "IP_INVALID_SOURCE",
        "the packet's source address is invalid (martian: multicast, broadcast, zero or loopback)",
        "check the sender's address configuration; `sysctl net.ipv4.conf.all.log_martians=1` logs them",
    ),
    r(
        "IP_LOCALNET",
        "a packet from or to 127.0.0.0/8 arrived on a non-loopback interface",
        "check for a container publishing on 127.0.0.1 reached through a bridge; enable net.ipv4.conf.<interface>.route_localnet only if that is intended",
    ),
    r(
        "IP_LOCAL_SOURCE",
        "the packet's source address is one of this host's own addresses (spoofed or looped back)",
        "check for a routing loop or a duplicate IP address",
    ),
    r(
        "IP_NOPROTO",
        "no handler for the packet's IP protocol on this host",
        "check which protocol the sender uses (e.g. a tunnel or SCTP module not loaded: `lsmod`)",
    ),
    r(
        "IP_OUTNOROUTES",
        "no route to the destination when sending",
        "check `ip route get <destination>` in that namespace: a missing default route or a blackhole/unreachable route",
    ),
    r(
        "IP_RPFILTER",
        "reverse-path filter: the source address is not routable back through the interface the packet came in on",
        "check `sysctl net.ipv4.conf.all.rp_filter` and the interface's rp_filter in that namespace, and the routes back to the source (asymmetric routing)",
    ),
    r(
        "IP_TUNNEL_ECN",
        "the tunnel dropped it because of an invalid ECN combination between outer and inner header",
        "check ECN handling of the tunnel peers",
    ),
    r(
        "LOCAL_MAC",
        "the frame's source MAC is one of this host's own (a loop or duplicate MAC)",
        "check for a bridging loop or a duplicate MAC address (`bridge fdb show`)",
    ),
    r(
        "MAC_IEEE_MAC_CONTROL",
        "an IEEE 802.3 MAC control frame (e.g. pause) reached the bridge, which never forwards them",
        "nothing to do; these frames stay on the link",
    ),
    r(
        "MAC_INVALID_SOURCE",
        "the frame's source MAC is invalid (zero, multicast or broadcast)",
        "check the sender's MAC address",
    ),
    r(
        "NEIGH_CREATEFAIL",
        "the neighbour (ARP/NDP) table could not create an entry: it is full",
        "check the number of entries in `ip neigh show` against `sysctl net.ipv4.neigh.default.gc_thresh3` in that namespace",
    ),
    r(
        "NEIGH_DEAD",
        "the neighbour entry was removed while packets waited for it (interface going down or cache flushed)",
        "check for interfaces or containers going down at that moment",
    ),
    r(
        "NEIGH_FAILED",
        "nobody answered ARP/NDP for the next hop: the address is not on the link (container gone, wrong IP, or a VIP nobody serves)",
        "check `ip neigh show` in that namespace (FAILED entries) and whether the destination or gateway address exists on that network",
    ),
    r(
        "NEIGH_HH_FILLFAIL",
        "the kernel could not build the link-layer header for the next hop",
        "check the outgoing interface's state (`ip link`) at that moment",
    ),
    r(
        "NEIGH_QUEUEFULL",
        "too many packets waited for ARP/NDP resolution of the next hop, which is slow or not answering",
        "check `ip neigh show` in that namespace and whether the next hop answers ARP",
    ),
    r(
        "NETFILTER_DROP",
        "a firewall rule (nftables/iptables) dropped it",
        "check `nft list ruleset` (and `iptables-save`) in that namespace: Docker's DOCKER-USER, DOCKER and FORWARD chains, and policies set to drop",
    ),
    r(
        "NOMEM",
        "the kernel ran out of memory for the packet",
        "check memory pressure on the host (`free`, `dmesg` for allocation failures)",
    ),
    r(
        "NOT_SPECIFIED",
        "the kernel freed the packet without giving a reason; the location says which code path dropped it",
        "look at the location (kernel function) of the drop; the other drops of the same flow usually name the cause",
    ),
    r(
        "NO_SOCKET",
        "nothing listens on the destination port (closed port, service not started yet, or the wrong port)",
        "check that the service listens on that address and port (`ss -lntu` in the destination's namespace) and that the client uses the right port",
    ),
    r(
        "NO_TX_TARGET",
        "the overlay (vxlan) had no destination for the frame: no FDB entry or remote for that MAC — multicast/broadcast on an overlay without a remote, or an unknown unicast MAC",
        "check `bridge fdb show dev <vxlan>` in the overlay's namespace; overlay networks do not carry multicast between hosts (use unicast discovery)",
    ),
    r(
        "OTHERHOST",
        "the frame was addressed to another host's MAC (the interface is promiscuous, or a stale ARP/FDB entry points here)",
        "check the sender's neighbour entry for this address (`ip neigh show`) and the bridge FDB (`bridge fdb show`); a moved container or a stale entry sends frames to the wrong MAC",
    ),
    r(
        "OVS_DROP_ACTION_ERROR",
        "Open vSwitch dropped it because an action failed",
        "check `ovs-appctl dpctl/dump-flows` and the OVS logs",
    ),
    r(
        "OVS_DROP_CONNTRACK",
        "Open vSwitch's conntrack action dropped it",
        "check the OVS conntrack flows and `ovs-appctl dpctl/dump-conntrack`",
    ),
    r(
        "OVS_DROP_DEFERRED_LIMIT",
        "Open vSwitch hit its limit of deferred actions",
        "check the OVS flows for too many recirculations",
    ),
    r(
        "OVS_DROP_EXPLICIT",
        "Open vSwitch dropped it on purpose (an explicit drop action)",
        "check the OVS flow rules that drop this traffic",
    ),
    r(
        "OVS_DROP_EXPLICIT_WITH_ERROR",
        "Open vSwitch dropped it with an explicit drop action carrying an error",
        "check the OVS flows and logs",
    ),
    r(
        "OVS_DROP_FRAG_INVALID_PROTO",
        "Open vSwitch could not fragment the packet: not IPv4/IPv6",
        "check the MTUs on the OVS path",
    ),
    r(
        "OVS_DROP_FRAG_L2_TOO_LONG",
        "Open vSwitch could not fragment the packet: its L2 header is too long",
        "check the MTUs on the OVS path",
    ),
    r(
        "OVS_DROP_IP_TTL",
        "Open vSwitch dropped it because the TTL ran out (a loop)",
        "check the OVS flows for loops",
    ),
    r(
        "OVS_DROP_LAST_ACTION",
        "Open vSwitch dropped it: the flow's actions end without output (a drop flow)",
        "check the OVS flows that match the packet (`ovs-appctl dpctl/dump-flows`)",
    ),
    r(
        "OVS_DROP_METER",
        "an Open vSwitch meter (rate limit) dropped it",
        "check `ovs-ofctl meter-stats`",
    ),
    r(
        "OVS_DROP_RECURSION_LIMIT",
        "Open vSwitch hit its recursion limit (a loop in the flows)",
        "check the OVS flows for loops",
    ),
    r(
        "PACKET_SOCK_ERROR",
        "a packet socket (tcpdump, DHCP client, LLDP agent) could not take its copy: the original packet is not lost",
        "nothing to do for the traffic itself; check the capturing program's buffer if its capture matters",
    ),
    r(
        "PFMEMALLOC",
        "a packet allocated from emergency memory reserves went to a socket not allowed to use them",
        "check memory pressure on the host (`free`, swap over network)",
    ),
    r(
        "PKT_TOO_BIG",
        "the packet is bigger than the path's MTU and cannot be fragmented (MTU blackhole on an overlay or tunnel)",
        "check the MTUs along the path (`ip link` on veth, bridge, vxlan and the underlay); overlay networks need a smaller MTU (`com.docker.network.driver.mtu`)",
    ),
    r(
        "PKT_TOO_SMALL",
        "the packet is shorter than its headers claim (truncated or malformed)",
        "capture it (`tcpdump -i <interface> -e -vv`) and check the sender; a broken NIC offload or a buggy tunnel can truncate packets",
    ),
    r(
        "PROTO_MEM",
        "the protocol is over its memory limit: too much data is queued in sockets host-wide",
        "check `cat /proc/net/sockstat` against `sysctl net.ipv4.tcp_mem net.ipv4.udp_mem`; slow readers or many sockets hold the memory",
    ),
    r(
        "PSP_INPUT",
        "PSP (encryption) rejected the incoming packet",
        "check the PSP configuration of both peers",
    ),
    r(
        "PSP_OUTPUT",
        "PSP (encryption) rejected the outgoing packet",
        "check the PSP configuration of both peers",
    ),
    r(
        "PTYPE_ABSENT",
        "no handler for the frame's protocol (older kernels' name for UNHANDLED_PROTO; usually harmless chatter)",
        "nothing to do unless the traffic matters; otherwise check which protocol the sender uses",
    ),
    r(
        "QDISC_CONGESTED",
        "the outgoing queue (qdisc) dropped it to signal congestion (AQM such as CoDel/fq_codel)",
        "check `tc -s qdisc show dev <interface>`; the link is saturated",
    ),
    r(
        "QDISC_DROP",
        "the outgoing queue (qdisc) dropped it: the queue is full or a shaper limits the rate",
        "check `tc -s qdisc show dev <interface>` for drops and the limits set on the interface",
    ),
    r(
        "QDISC_OVERLIMIT",
        "the outgoing queue (qdisc) is over its limit",
        "check `tc -s qdisc show dev <interface>`; raise the limit or reduce the traffic",
    ),
    r(
        "QUEUE_PURGE",
        "a queue was flushed with packets still in it (a socket closed or a device went down)",
        "check for connections or interfaces going away at that moment",
    ),
    r(
        "RECURSION_LIMIT",
        "the packet looped through too many devices or tunnels (nested transmit limit)",
        "check for a routing or tunnel loop (a tunnel routed through itself)",
    ),
    r(
        "SECURITY_HOOK",
        "a security module (LSM: SELinux, AppArmor, BPF-LSM) refused the packet",
        "check the host's LSM policy and audit log (`ausearch -m AVC`, `dmesg`)",
    ),
    r(
        "SKB_CONSUMED",
        "not a loss: the packet was delivered and then freed normally",
        "nothing to do; filter it with `--ignore-drop-reason SKB_CONSUMED` if it is noisy",
    ),
    r(
        "SKB_CSUM",
        "the kernel failed to compute or verify a checksum for the packet",
        "check checksum offloads on the path (`ethtool -k <interface>`); this points at a driver or tunnel offload problem",
    ),
    r(
        "SKB_GSO_SEG",
        "the kernel failed to segment a large (GSO) packet",
        "check the offloads of the interfaces on the path (`ethtool -k <interface>`) and their MTUs",
    ),
    r(
        "SKB_NOT_DROPPED_YET",
        "not a drop: the kernel marks a packet that is still in flight this way",
        "nothing to do; if it shows up as a drop, report it as a tracer bug",
    ),
    r(
        "SKB_UCOPY_FAULT",
        "copying the application's data into the packet failed",
        "check the sending application (it passed a bad buffer)",
    ),
    r(
        "SOCKET_BACKLOG",
        "the socket's backlog is full: the application or the kernel cannot keep up with incoming data",
        "check the receiving application's CPU use and its socket buffers (SO_RCVBUF, net.core.rmem_max); `nstat -az TcpExtTCPBacklogDrop` counts these",
    ),
    r(
        "SOCKET_CLOSE",
        "the socket was closed while packets for it were still arriving or queued",
        "check whether the application closes connections early (crash, restart, short timeouts)",
    ),
    r(
        "SOCKET_FILTER",
        "a BPF filter attached to the socket rejected the packet",
        "check the application's socket filters (SO_ATTACH_FILTER / SO_ATTACH_BPF), e.g. with `ss -0 -p` or `bpftool prog`",
    ),
    r(
        "SOCKET_RCVBUFF",
        "the socket's receive buffer is full: the application reads too slowly",
        "check the receiving application's load; raise its receive buffer (SO_RCVBUF, net.core.rmem_max) or read faster; `nstat -az UdpRcvbufErrors` counts these",
    ),
    r(
        "SUBSYS_CORE",
        "a core kernel drop reason",
        "look at the location of the drop",
    ),
    r(
        "SUBSYS_MAC80211_MONITOR",
        "the Wi-Fi stack (mac80211) discarded a frame still sent to monitor interfaces",
        "check the wireless interface; not container networking",
    ),
    r(
        "SUBSYS_MAC80211_UNUSABLE",
        "the Wi-Fi stack (mac80211) discarded an unusable frame",
        "check the wireless interface; not container networking",
    ),
    r(
        "SUBSYS_OPENVSWITCH",
        "Open vSwitch dropped it (a flow rule, meter, conntrack or an action error)",
        "check the OVS flows and drop counters (`ovs-appctl dpctl/dump-flows`, `ovs-appctl coverage/show`)",
    ),
    r(
        "TAP_FILTER",
        "a BPF filter on a tun/tap device dropped it",
        "check the program that owns the tun/tap device (VPN, VM)",
    ),
    r(
        "TAP_TXFILTER",
        "the tun/tap device's filter dropped it",
        "check the program that owns the tun/tap device (VPN, VM)",
    ),
    r(
        "TCP_ABORT_ON_DATA",
        "data arrived on a TCP connection the application had already closed, so the kernel reset it",
        "check the application: it closes connections while the peer still sends",
    ),
    r(
        "TCP_ACK_UNSENT_DATA",
        "a TCP ACK for data this host has not sent yet",
        "check for a NAT/load balancer mixing up connections",
    ),
    r(
        "TCP_AOFAILURE",
        "the TCP-AO signature is wrong: the peers' keys differ",
        "check that both peers use the same TCP-AO keys",
    ),
    r(
        "TCP_AOKEYNOTFOUND",
        "the TCP-AO key named by the packet is unknown here",
        "check that both peers have the same TCP-AO keys",
    ),
    r(
        "TCP_AONOTFOUND",
        "a TCP-AO signature was expected but missing",
        "check that both peers configure TCP-AO alike",
    ),
    r(
        "TCP_AOUNEXPECTED",
        "a TCP-AO signature arrived that this host does not expect",
        "check that both peers configure TCP-AO alike",
    ),
    r(
        "TCP_AUTH_HDR",
        "TCP authentication options (MD5 or TCP-AO) were duplicated or malformed",
        "check the TCP-MD5/TCP-AO configuration of both peers (typically BGP sessions)",
    ),
    r(
        "TCP_CLOSE",
        "the segment arrived for a TCP connection already closed",
        "usually late packets after close; many mean the peer keeps sending after the connection ended (check both applications' timeouts)",
    ),
    r(
        "TCP_CSUM",
        "TCP checksum error: the packet was corrupted, or checksum offload is broken",
        "check `ethtool -k <interface>` offloads on the path (try `ethtool -K <interface> tx off rx off` on veth/vxlan) and the NIC's error counters (`ip -s link`)",
    ),
    r(
        "TCP_FASTOPEN",
        "a TCP Fast Open request was dropped",
        "check net.ipv4.tcp_fastopen on both ends",
    ),
    r(
        "TCP_FILTER",
        "a BPF filter attached to the socket rejected the packet (older kernels' name for SOCKET_FILTER)",
        "check the application's socket filters (SO_ATTACH_FILTER / SO_ATTACH_BPF), e.g. with `bpftool prog`",
    ),
    r(
        "TCP_FLAGS",
        "a TCP segment carried flags invalid for the connection's state",
        "usually a stray or late segment; check for a middlebox that rewrites or replays TCP (NAT, load balancer) if it repeats",
    ),
    r(
        "TCP_INVALID_ACK_SEQUENCE",
        "a TCP ACK for data never sent or long acknowledged",
        "check for a NAT/load balancer mixing up connections, or a peer that lost its state",
    ),
    r(
        "TCP_INVALID_END_SEQUENCE",
        "a TCP segment whose end lies outside the receive window",
        "check for a middlebox rewriting TCP or a misbehaving peer",
    ),
    r(
        "TCP_INVALID_SEQUENCE",
        "a TCP segment with an unacceptable sequence number",
        "check for a NAT/load balancer that mixes up connections, or a peer that lost its state (restart) and resends",
    ),
    r(
        "TCP_INVALID_SYN",
        "a SYN arrived on a connection already established",
        "check for a client reconnecting with the same ports (NAT port reuse) or a middlebox that forgot the connection",
    ),
    r(
        "TCP_LISTEN_OVERFLOW",
        "the listening socket's accept queue is full: the server does not accept connections fast enough",
        "check the server's accept loop and its backlog (`ss -lnt`: Recv-Q vs Send-Q; net.core.somaxconn)",
    ),
    r(
        "TCP_MD5FAILURE",
        "the TCP-MD5 signature is wrong: the peers' keys differ",
        "check that both peers use the same TCP-MD5 key",
    ),
    r(
        "TCP_MD5NOTFOUND",
        "a TCP-MD5 signature was expected but missing",
        "check that both peers configure the same TCP-MD5 key (typically BGP sessions)",
    ),
    r(
        "TCP_MD5UNEXPECTED",
        "a TCP-MD5 signature arrived that this host does not expect",
        "check that both peers configure TCP-MD5 alike (typically BGP sessions)",
    ),
    r(
        "TCP_MINTTL",
        "the packet's TTL/hop limit is below the socket's minimum (IP_MINTTL), a protection used by BGP",
        "check the peers' TTL security settings and the hop count between them",
    ),
    r(
        "TCP_OFOMERGE",
        "out-of-order TCP data that was already queued",
        "usually harmless; frequent ones mean reordering or loss on the path",
    ),
    r(
        "TCP_OFO_DROP",
        "TCP data that is already in the receive queue",
        "usually harmless; frequent ones mean reordering or retransmissions",
    ),
    r(
        "TCP_OFO_QUEUE_PRUNE",
        "out-of-order TCP data pruned under memory pressure",
        "check socket memory (`cat /proc/net/sockstat`, net.ipv4.tcp_rmem) and loss on the path that causes reordering",
    ),
    r(
        "TCP_OLD_ACK",
        "an old (but in-window) TCP ACK",
        "usually harmless",
    ),
    r(
        "TCP_OLD_DATA",
        "duplicate TCP data: a retransmission of something already received (the first copy or its ACK was delayed)",
        "usually harmless; many of them mean packets or ACKs are lost or delayed on the path: look at retransmit lines of the same flow",
    ),
    r(
        "TCP_OLD_SEQUENCE",
        "a duplicate TCP segment with an old sequence number",
        "usually harmless; many mean retransmissions on the path",
    ),
    r(
        "TCP_OVERWINDOW",
        "a TCP segment lies beyond the receive window",
        "check for a middlebox rewriting sequence numbers or a misbehaving peer",
    ),
    r(
        "TCP_RESET",
        "a TCP reset was ignored or the segment belonged to a connection being reset",
        "check which side resets (the `tcp_receive_reset` / retransmit lines of the same flow)",
    ),
    r(
        "TCP_RFC7323_PAWS",
        "TCP timestamp check (PAWS) failed: the segment's timestamp is older than the connection's",
        "check for NAT/load balancing that mixes several clients behind one address (net.ipv4.tcp_timestamps), or a reused port after a restart",
    ),
    r(
        "TCP_RFC7323_PAWS_ACK",
        "TCP timestamp check (PAWS) failed on a pure ACK",
        "usually harmless; frequent ones point at NAT mixing clients behind one address",
    ),
    r(
        "TCP_RFC7323_TSECR",
        "the TCP timestamp echo (TSecr) is invalid",
        "check for a middlebox that rewrites TCP timestamps",
    ),
    r(
        "TCP_RFC7323_TW_PAWS",
        "TCP timestamp check (PAWS) failed for a connection in TIME-WAIT",
        "check for clients reusing ports quickly behind NAT (net.ipv4.tcp_timestamps, tcp_tw_reuse)",
    ),
    r(
        "TCP_TOO_OLD_ACK",
        "a TCP ACK too old to be valid",
        "usually harmless; many point at a middlebox delaying or duplicating packets",
    ),
    r(
        "TCP_ZEROWINDOW",
        "the receiver advertised a zero window: the receiving application does not read",
        "check the receiving application (stalled, overloaded); `ss -tmi` shows its receive queue",
    ),
    r(
        "TC_CHAIN_NOTFOUND",
        "a tc action jumped to a chain that does not exist",
        "check `tc chain show` / `tc filter show` on the interface",
    ),
    r(
        "TC_COOKIE_ERROR",
        "tc could not process a filter's extension cookie",
        "check `tc filter show` on the interface",
    ),
    r(
        "TC_EGRESS",
        "a tc (traffic control) filter on the outgoing interface dropped it",
        "check `tc filter show dev <interface> egress` and BPF programs attached by CNI/security tools (`bpftool net`)",
    ),
    r(
        "TC_ERROR",
        "an internal tc error dropped the packet (e.g. a goto to a missing chain)",
        "check `tc filter show` / `tc chain show` on the interface",
    ),
    r(
        "TC_INGRESS",
        "a tc (traffic control) filter on the incoming interface dropped it",
        "check `tc filter show dev <interface> ingress` and BPF programs attached by CNI/security tools (`bpftool net`)",
    ),
    r(
        "TC_RECLASSIFY_LOOP",
        "tc reclassified the packet too many times (a loop in the filters)",
        "check `tc filter show` on the interface for reclassify loops",
    ),
    r(
        "TUNNEL_TXINFO",
        "a packet without tunnel metadata reached a tunnel device in external (collect_metadata) mode",
        "check the program (tc/BPF, OVS) that should set the tunnel key before sending to the device",
    ),
    r(
        "UDP_CSUM",
        "UDP checksum error: the packet was corrupted, or checksum offload is broken (a classic with VXLAN on some NICs)",
        "check `ethtool -k <interface>` offloads on the path (try `ethtool -K <interface> tx off` on vxlan/veth) and the NIC's error counters (`ip -s link`)",
    ),
    r(
        "UNHANDLED_PROTO",
        "no handler for the frame's protocol (e.g. an ethertype or tunnel nobody listens for; usually harmless chatter such as LLDP)",
        "nothing to do unless the traffic matters; otherwise check which protocol the sender uses and that its module is loaded",
    ),
    r(
        "UNICAST_IN_L2_MULTICAST",
        "a unicast IP packet arrived in a link-layer multicast or broadcast frame",
        "check the sender's neighbour entry (`ip neigh show`): it sends to a broadcast/multicast MAC",
    ),
    r(
        "UNIX_DISCONNECT",
        "a local (Unix) socket peer disconnected with data still queued: not network traffic",
        "check the local processes talking over that Unix socket; nothing on the network is involved",
    ),
    r(
        "UNIX_SKIP_OOB",
        "out-of-band data on a local (Unix) socket was skipped by a read without MSG_OOB: not network traffic",
        "nothing on the network to check; it concerns the application's Unix socket use",
    ),
    r(
        "VXLAN_ENTRY_EXISTS",
        "the VXLAN forwarding entry for the source already exists and could not be updated",
        "check `bridge fdb show dev <vxlan>` for static entries conflicting with the sender",
    ),
    r(
        "VXLAN_INVALID_HDR",
        "a VXLAN packet with an invalid header arrived",
        "check the sender's VXLAN configuration (port, flags, GBP) against this host's",
    ),
    r(
        "VXLAN_NO_REMOTE",
        "the overlay had no destination for the frame: no FDB entry or remote for that MAC (older kernels' name for NO_TX_TARGET)",
        "check `bridge fdb show dev <vxlan>` in the overlay's namespace; multicast/broadcast is not carried between hosts on overlays",
    ),
    r(
        "VXLAN_VNI_NOT_FOUND",
        "a VXLAN packet for a VNI (overlay network id) this host has no device for",
        "check that the overlay network exists on this host (`ip -d link show type vxlan`, `docker network inspect`) and that both hosts agree on the VNI",
    ),
    r(
        "XDP",
        "an XDP program dropped it",
        "check the XDP programs attached to the interface (`ip link show dev <interface>`, `bpftool net`)",
    ),
    r(
        "XFRM_POLICY",
        "an IPsec (xfrm) policy rejected the packet: no matching security association, or the policy says block",
        "check `ip xfrm policy` and `ip xfrm state` in that namespace (encrypted overlay networks use IPsec between hosts)",
    ),
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::kernel::btf::{DropReasons, KernelBtf, DEFAULT_VMLINUX};

    /// The running kernel's BTF. Absent BTF fails the test: on this project's
    /// machines and CI the file exists, and a skipped check would let a new
    /// kernel's reasons go unexplained unnoticed.
    fn kernel_btf() -> KernelBtf {
        let path = Path::new(DEFAULT_VMLINUX);
        assert!(
            path.exists(),
            "{DEFAULT_VMLINUX} is missing: this test needs the running kernel's BTF \
             (CONFIG_DEBUG_INFO_BTF) to check that every drop reason is explained"
        );
        match KernelBtf::load(path) {
            Ok(b) => b,
            Err(e) => panic!("loading {DEFAULT_VMLINUX}: {e}"),
        }
    }

    #[test]
    fn every_reason_of_the_running_kernel_is_explained() {
        let btf = kernel_btf();
        let reasons = match DropReasons::from_btf(&btf) {
            Ok(r) => r,
            Err(e) => panic!("reading enum skb_drop_reason from {DEFAULT_VMLINUX}: {e}"),
        };
        // 5.17 had a dozen; every kernel tracer supports has far more.
        assert!(
            reasons.len() > 50,
            "only {} drop reasons read from BTF: the reader is broken",
            reasons.len()
        );
        let missing: Vec<String> = reasons
            .iter()
            .map(|(_, n)| n)
            .filter(|n| entry(n).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "drop reasons of this kernel without an explanation in explain/drop_reasons.rs: {missing:?}"
        );
        for (_, n) in reasons.iter() {
            let e = explain_drop(&n, None);
            assert!(e.known, "{n}");
            assert_eq!(e.meaning_of(&n), e.meaning, "{n}");
        }
    }

    #[test]
    fn every_subsystem_of_the_running_kernel_is_explained() {
        let btf = kernel_btf();
        // Kernels before 6.5 have no subsystems: nothing to check then.
        let Ok(subs) = btf.enum_values("skb_drop_reason_subsys") else {
            println!("this kernel has no enum skb_drop_reason_subsys");
            return;
        };
        for (n, v) in subs {
            let n = n.strip_prefix(PREFIX).unwrap_or(&n);
            if n.ends_with("_NUM") {
                continue;
            }
            assert!(entry(n).is_some(), "subsystem {n} has no explanation");
            // As DropReasons::name prints a reason of that subsystem.
            let printed = format!("{n}:{:#x}", (v << 16) | 1);
            assert!(explain_drop(&printed, None).known, "{printed}");
        }
    }

    #[test]
    fn table_is_sorted_unique_and_complete_sentences() {
        for w in REASONS.windows(2) {
            assert!(
                w[0].name < w[1].name,
                "REASONS must be sorted and unique: {} then {}",
                w[0].name,
                w[1].name
            );
        }
        for e in REASONS.iter() {
            assert!(!e.meaning.is_empty() && !e.check.is_empty(), "{}", e.name);
            assert!(
                !e.meaning.ends_with('.') && !e.check.ends_with('.'),
                "{}",
                e.name
            );
            assert_eq!(entry(e.name).map(|f| f.name), Some(e.name));
        }
        for l in LOCATIONS {
            assert!(!l.prefixes.is_empty() && !l.meaning.is_empty() && !l.check.is_empty());
            for r in l.also_for {
                assert!(entry(r).is_some(), "location rule for unknown reason {r}");
            }
        }
    }

    #[test]
    fn names_older_kernels_had_are_explained() {
        // Renamed or removed since: 5.17's TCP_FILTER (→ SOCKET_FILTER),
        // 5.18-rc's PTYPE_ABSENT (→ UNHANDLED_PROTO), 6.1's FRAG_BPF_EINVAL,
        // 6.7's TC_ERROR (split in 6.8), 6.13's VXLAN_NO_REMOTE (→ NO_TX_TARGET).
        for n in [
            "TCP_FILTER",
            "PTYPE_ABSENT",
            "FRAG_BPF_EINVAL",
            "TC_ERROR",
            "VXLAN_NO_REMOTE",
            // 5.17's first twelve.
            "NOT_SPECIFIED",
            "NO_SOCKET",
            "PKT_TOO_SMALL",
            "TCP_CSUM",
            "UDP_CSUM",
            "NETFILTER_DROP",
            "OTHERHOST",
            "IP_CSUM",
            "IP_INHDR",
            "IP_RPFILTER",
            "UNICAST_IN_L2_MULTICAST",
            // Subsystems and Open vSwitch.
            "SUBSYS_MAC80211_MONITOR",
            "OVS_DROP_LAST_ACTION",
            "OVS_DROP_IP_TTL",
        ] {
            assert!(explain_drop(n, None).known, "{n}");
        }
    }

    #[test]
    fn names_with_the_kernel_prefix() {
        assert_eq!(
            explain_drop("SKB_DROP_REASON_NETFILTER_DROP", None),
            explain_drop("NETFILTER_DROP", None)
        );
        let e = explain_drop("NETFILTER_DROP", Some("nf_hook_slow+0x91"));
        assert!(e.meaning.contains("firewall"), "{e:?}");
        assert!(e.check.contains("nft list ruleset"), "{e:?}");
    }

    #[test]
    fn not_specified_is_explained_by_its_location() {
        let generic = explain_drop("NOT_SPECIFIED", None);
        let cases = [
            ("vxlan_xmit+0x4d2 [vxlan]", "no destination"),
            ("vxlan_xmit_one+0x1f [vxlan]", "no destination"),
            ("vxlan_mdb_xmit+0x10 [vxlan]", "multicast"),
            ("ip6_mc_input+0x1c4", "multicast"),
            ("ip_rcv_finish_core+0x3a0", "route"),
            ("ip_error+0x52", "could not route"),
            ("__netif_receive_skb_core+0x6b1", "no handler"),
            ("br_handle_frame+0x2b0 [bridge]", "bridge"),
            ("br_dev_xmit", "bridge"),
            ("nf_hook_slow+0x91", "firewall"),
            ("veth_xmit+0x77 [veth]", "veth"),
            ("sk_stream_kill_queues+0x5e", "closed"),
            ("neigh_invalidate+0x8a", "neighbour"),
            ("packet_rcv+0x40", "not lost"),
        ];
        for (loc, word) in cases {
            let e = explain_drop("NOT_SPECIFIED", Some(loc));
            assert!(e.known, "{loc}");
            assert!(
                e.meaning.contains(word),
                "NOT_SPECIFIED at {loc}: {:?} lacks {word:?}",
                e.meaning
            );
            assert_ne!(e, generic, "{loc}");
        }
        // A location that says nothing keeps the generic sentence.
        assert_eq!(
            explain_drop("NOT_SPECIFIED", Some("kfree_skb_list_reason+0x20")),
            generic
        );
        assert_eq!(explain_drop("NOT_SPECIFIED", Some("")), generic);
        assert_eq!(
            explain_drop("NOT_SPECIFIED", Some("0xffffffffc0a01234")),
            generic
        );
    }

    #[test]
    fn specific_reasons_keep_their_meaning_wherever_they_happen() {
        // NO_SOCKET at a UDP function is NO_SOCKET, not the UDP location rule.
        let e = explain_drop("NO_SOCKET", Some("__udp4_lib_rcv+0x9a4"));
        assert_eq!(e, explain_drop("NO_SOCKET", None));
        assert!(e.meaning.contains("nothing listens"), "{e:?}");
        // ... unless a rule names the reason: multicast without a remote.
        let mdb = explain_drop("NO_TX_TARGET", Some("vxlan_mdb_xmit+0x10 [vxlan]"));
        assert!(mdb.meaning.contains("multicast"), "{mdb:?}");
        let plain = explain_drop("NO_TX_TARGET", Some("vxlan_xmit+0x10 [vxlan]"));
        assert_eq!(plain, explain_drop("NO_TX_TARGET", None));
        assert!(plain.meaning.contains("no destination"), "{plain:?}");
    }

    #[test]
    fn unknown_names_say_so() {
        let e = explain_drop("QUANTUM_FLUX", Some("vxlan_rcv+0x10"));
        assert!(!e.known);
        assert_eq!(
            e.meaning_of("QUANTUM_FLUX"),
            "drop reason QUANTUM_FLUX is not known to this tracer version (newer kernel?)"
        );
        assert!(e.check.contains("include/net/dropreason-core.h"));
        assert_eq!(
            e.sentence("QUANTUM_FLUX"),
            "drop reason QUANTUM_FLUX is not known to this tracer version (newer kernel?) — see the kernel's include/net/dropreason-core.h for this reason"
        );
        // What DropReasons::name prints for values it has no name for.
        assert!(!explain_drop("UNKNOWN_4242", None).known);
        assert!(!explain_drop("SUBSYS_FUTURE:0x90001", None).known);
        assert!(explain_drop("SUBSYS_OPENVSWITCH:0x30001", None).known);
    }

    #[test]
    fn functions_of_locations() {
        assert_eq!(function_of("vxlan_xmit+0x4d2 [vxlan]"), "vxlan_xmit");
        assert_eq!(function_of("ip_error+0x52"), "ip_error");
        assert_eq!(function_of("ip_error"), "ip_error");
        assert_eq!(function_of(" br_forward [bridge]"), "br_forward");
        assert_eq!(function_of(""), "");
    }
}
