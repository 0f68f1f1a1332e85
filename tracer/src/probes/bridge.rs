//! Bridge FDB probes (group `fdb`): MAC learn, move and delete on Linux
//! bridges. Kernel side: `tracer-ebpf/src/programs/bridge.rs`.

use tracer_ebpf::Field::{BrDev, FdbAddr, FdbDst, FdbFlags, FdbVlanId, PortDev};

use super::{Group, ProbeSpec, DEV};
use crate::{
    decode::RecordKind,
    kernel::btf::Param::{Int as I, Ptr as P, PtrToStruct as S},
};

pub const GROUP: Group = Group {
    name: "fdb",
    gives: "bridge FDB learn, move and delete",
    probes: &[
        ProbeSpec {
            name: "br_fdb_update",
            category: "bridge",
            what: "bridge FDB learn and move",
            prototype: &[S("net_bridge"), S("net_bridge_port"), P, I, I],
            needs: &[DEV[0], DEV[1], DEV[2], DEV[3], BrDev, PortDev],
            emits: &[RecordKind::FdbUpdate],
        },
        ProbeSpec {
            name: "fdb_delete",
            category: "bridge",
            what: "bridge FDB delete",
            prototype: &[S("net_bridge"), S("net_bridge_fdb_entry")],
            needs: &[
                DEV[0], DEV[1], DEV[2], DEV[3], BrDev, PortDev, FdbAddr, FdbVlanId, FdbDst,
                FdbFlags,
            ],
            emits: &[RecordKind::FdbDelete],
        },
    ],
};
