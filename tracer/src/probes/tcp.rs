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
                // spans), the segment fields (`skb->len`, `TCP_SKB_CB`'s
                // gso segs/size, `mss_cache`, `icsk_pmtu_cookie`) are read
                // when they resolve and left 0 otherwise.
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
            what: "TCP sockets closed with an error (connect refused, unreachable, timed out; resets) or while connecting",
            prototype: &[S("sock"), I, I],
            needs: &[
                NetNsInum, SOCK[0], SOCK[2], SOCK[3], SOCK[4], SOCK[5], SOCK[6], SOCK[7], SOCK[8],
                SkErr,
                InetSport,
                // Not required: `sk_protocol` (a bitfield before 5.6) is
                // read when it resolves and 0 (taken as TCP) otherwise;
                // `sk_err_soft` is 0 when unresolved.
            ],
            emits: &[RecordKind::TcpAbort],
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

/// The kernel's `TCP_SYN_SENT` and `TCP_CLOSE` values, from the
/// `__print_symbolic` table of `sock:inet_sock_set_state`'s format under the
/// tracefs `root`; (0, 0) when it cannot be read (the program then sends
/// only closes with an error).
pub fn tcp_states(root: Option<&std::path::Path>) -> (u32, u32) {
    let Some(fmt) = root
        .and_then(|r| crate::kernel::tracefs::Format::read(r, "sock", "inet_sock_set_state").ok())
    else {
        return (0, 0);
    };
    let table = crate::kernel::tracefs::print_symbolic(&fmt.print_fmt, "oldstate");
    let find = |name: &str| {
        table
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .and_then(|(v, _)| u32::try_from(*v).ok())
    };
    match (find("TCP_SYN_SENT"), find("TCP_CLOSE")) {
        (Some(s), Some(c)) => (s, c),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tcp_states_come_from_the_tracepoint_format() {
        let dir = std::env::temp_dir().join(format!("tracer-tcp-states-{}", std::process::id()));
        let ev = dir.join("events/sock/inet_sock_set_state");
        std::fs::create_dir_all(&ev).unwrap();
        // Linux 6.18's format, shortened.
        std::fs::write(
            ev.join("format"),
            "name: inet_sock_set_state\nID: 1\nformat:\n\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\n\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;\n\nprint fmt: \"oldstate=%s newstate=%s\", __print_symbolic(REC->oldstate, { 1, \"TCP_ESTABLISHED\" }, { 2, \"TCP_SYN_SENT\" }, { 7, \"TCP_CLOSE\" }), __print_symbolic(REC->newstate, { 1, \"TCP_ESTABLISHED\" }, { 2, \"TCP_SYN_SENT\" }, { 7, \"TCP_CLOSE\" })\n",
        )
        .unwrap();
        assert_eq!(super::tcp_states(Some(&dir)), (2, 7));
        assert_eq!(super::tcp_states(None), (0, 0));
        assert_eq!(super::tcp_states(Some(&dir.join("nope"))), (0, 0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
