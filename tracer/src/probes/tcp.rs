//! TCP probes (group `tcp`): retransmits and resets sent and received.
//! Kernel side: `tracer-ebpf/src/programs/tcp.rs`.

use tracer_ebpf::Field::{
    self, IcskRetransmits, InetSport, NetNsInum, SkDaddr, SkDport, SkErr, SkFamily, SkNet, SkNum,
    SkRcvSaddr, SkState, SkV6Daddr, SkV6RcvSaddr, SkbDev, SkbHead, SkbNetworkHeader, SkbProtocol,
    SkbSk, TcpSndUna,
};

use super::{Group, ProbeSpec, DEV};
use crate::{
    decode::RecordKind,
    kernel::btf::Param::{Int as I, PtrToStruct as S},
};

/// What `fill_sock` reads from `struct sock_common`.
const SOCK: [Field; 9] = [
    SkFamily,
    SkState,
    SkNum,
    SkDport,
    SkDaddr,
    SkRcvSaddr,
    SkV6Daddr,
    SkV6RcvSaddr,
    SkNet,
];

pub const GROUP: Group = Group {
    name: "tcp",
    gives: "TCP retransmits, resets sent and received, sockets closed with an error, and the ICMP errors the kernel sends about TCP packets",
    probes: &[
        ProbeSpec {
            name: "tcp_retransmit_skb",
            category: "tcp",
            what: "TCP retransmits",
            prototype: &[S("sock"), S("sk_buff")],
            needs: &[
                NetNsInum,
                SOCK[0],
                SOCK[1],
                SOCK[2],
                SOCK[3],
                SOCK[4],
                SOCK[5],
                SOCK[6],
                SOCK[7],
                SOCK[8],
                TcpSndUna,
                IcskRetransmits,
                // Not required: `tcp_rcv_tstamp` and `icsk_rto` (idle
                // spans) are read when they resolve and left 0 otherwise.
            ],
            emits: &[RecordKind::TcpRetransmit],
        },
        ProbeSpec {
            name: "tcp_send_reset",
            category: "tcp",
            what: "TCP resets sent",
            prototype: &[S("sock"), S("sk_buff")],
            needs: &[
                DEV[0],
                DEV[1],
                DEV[2],
                DEV[3],
                SOCK[0],
                SOCK[1],
                SOCK[2],
                SOCK[3],
                SOCK[4],
                SOCK[5],
                SOCK[6],
                SOCK[7],
                SOCK[8],
                SkbDev,
                SkbHead,
                SkbProtocol,
                SkbNetworkHeader,
            ],
            emits: &[RecordKind::TcpSendReset],
        },
        ProbeSpec {
            name: "tcp_receive_reset",
            category: "tcp",
            what: "TCP resets received",
            prototype: &[S("sock")],
            needs: &[
                NetNsInum, SOCK[0], SOCK[1], SOCK[2], SOCK[3], SOCK[4], SOCK[5], SOCK[6], SOCK[7],
                SOCK[8],
            ],
            emits: &[RecordKind::TcpReceiveReset],
        },
        ProbeSpec {
            name: "inet_sock_set_state",
            category: "sock",
            what: "TCP sockets closed with an error (connect refused, unreachable, timed out; resets)",
            prototype: &[S("sock"), I, I],
            needs: &[
                NetNsInum, SOCK[0], SOCK[2], SOCK[3], SOCK[4], SOCK[5], SOCK[6], SOCK[7], SOCK[8],
                SkErr,
                InetSport,
                // Not required: `sk_protocol` (a bitfield before 5.6) is
                // read when it resolves and 0 (taken as TCP) otherwise.
            ],
            emits: &[RecordKind::SockError],
        },
        ProbeSpec {
            name: "icmp_send",
            category: "icmp",
            what: "ICMP errors the kernel sends about TCP packets (unreachable, admin prohibited, fragmentation needed), and in which namespace",
            prototype: &[S("sk_buff"), I, I],
            needs: &[
                DEV[0],
                DEV[1],
                DEV[2],
                DEV[3],
                SkbDev,
                SkbSk,
                SkbHead,
                SkbProtocol,
                SkbNetworkHeader,
                SkNet,
                // Not required: the interface's address (`ip_ptr`,
                // `ifa_list`, `ifa_local`), left zero when unresolved.
            ],
            emits: &[RecordKind::IcmpSend],
        },
    ],
};
