//! Drop probe (group `drop`): every packet the kernel frees as dropped, with
//! the kernel's drop reason. Kernel side: `tracer-ebpf/src/programs/drop.rs`.

use tracer_ebpf::Field::{SkNet, SkbDev, SkbHead, SkbNetworkHeader, SkbProtocol, SkbSk};

use super::{Group, ProbeSpec, DEV};
use crate::{
    decode::RecordKind,
    kernel::btf::Param::{Enum as E, Ptr as P, PtrToStruct as S},
};

pub const GROUP: Group = Group {
    name: "drop",
    gives: "packet drops with the kernel's drop reason",
    probes: &[ProbeSpec {
        name: "kfree_skb",
        category: "skb",
        what: "packet drops with the kernel's drop reason",
        prototype: &[S("sk_buff"), P, E("skb_drop_reason")],
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
        ],
        emits: &[RecordKind::SkbDrop],
    }],
};
