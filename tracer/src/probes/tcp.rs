//! TCP probes (group `tcp`): retransmits and resets sent and received.
//! Kernel side: `tracer-ebpf/src/programs/tcp.rs`.

use tracer_ebpf::Field::{
    self, IcskRetransmits, NetNsInum, SkDaddr, SkDport, SkFamily, SkNet, SkNum, SkRcvSaddr,
    SkState, SkV6Daddr, SkV6RcvSaddr, SkbDev, SkbHead, SkbNetworkHeader, SkbProtocol, TcpSndUna,
};

use super::{Group, ProbeSpec, DEV};
use crate::{decode::RecordKind, kernel::btf::Param::PtrToStruct as S};

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
    gives: "TCP retransmits and resets sent and received",
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
    ],
};
