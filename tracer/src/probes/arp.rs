//! ARP probes (group `arp`): ARP replies received and neighbour-table
//! updates. Kernel side: `tracer-ebpf/src/programs/arp.rs`.

use tracer_ebpf::Field::{
    NeighDev, NeighHa, NeighNudState, NeighPrimaryKey, NeighTbl, SkbData, SkbDev, SkbProtocol,
    TblFamily,
};

use super::{Group, ProbeSpec, DEV};
use crate::{
    decode::RecordKind,
    kernel::btf::Param::{Int as I, Ptr as P, PtrToStruct as S},
};

pub const GROUP: Group = Group {
    name: "arp",
    gives: "ARP replies received and neighbour (ARP/NDP) table updates",
    probes: &[
        ProbeSpec {
            name: "netif_receive_skb",
            category: "net",
            what: "ARP replies received",
            prototype: &[S("sk_buff")],
            needs: &[DEV[0], DEV[1], DEV[2], DEV[3], SkbProtocol, SkbData, SkbDev],
            emits: &[RecordKind::ArpReply],
        },
        ProbeSpec {
            name: "neigh_update",
            category: "neigh",
            what: "neighbour (ARP/NDP) table updates",
            prototype: &[S("neighbour"), P, I, I],
            needs: &[
                DEV[0],
                DEV[1],
                DEV[2],
                DEV[3],
                NeighDev,
                NeighPrimaryKey,
                NeighHa,
                NeighNudState,
                NeighTbl,
                TblFamily,
            ],
            emits: &[RecordKind::NeighUpdate],
        },
    ],
};
