//! `event.action`: what a line says happened, typed.
//!
//! The serialiser writes [`Action::as_str`] and the detectors match on the
//! variants, so renaming an output string cannot silently switch a
//! detector off: the two can only change together, here.

use std::fmt;

use serde::{Serialize, Serializer};

/// Every `event.action` tracer prints.
///
/// Ordered by printed name, so maps keyed by actions list them as the
/// strings sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    // Kernel events (`event.kind: "event"`).
    /// A bridge learned a MAC on a port.
    FdbLearn,
    /// A learned MAC moved to another port of its bridge.
    FdbMove,
    /// A bridge forgot a MAC.
    FdbDelete,
    /// An ARP reply was received.
    ArpReply,
    /// A neighbour (ARP/NDP) entry changed state.
    NeighUpdate,
    /// A TCP segment was retransmitted.
    TcpRetransmit,
    /// A TCP reset was sent or received.
    TcpReset,
    /// The kernel freed a packet as dropped.
    SkbDrop,
    /// A TCP socket was closed with an error (connect refused, unreachable,
    /// timed out; reset).
    TcpAbort,
    /// The kernel sent an ICMP error about a TCP packet.
    IcmpError,
    // Detector lines (`alert`/`metric`).
    /// `fdb_flap` alert.
    FdbFlap,
    /// `arp_duplicate_reply` alert.
    ArpDuplicateReply,
    /// `ip_conflict` alert.
    IpConflict,
    /// `retransmit_burst` alert.
    RetransmitBurst,
    /// `retransmit_rollup` alert.
    RetransmitRollup,
    /// `connect_failed` alert: a TCP connection that never establishes.
    ConnectFailed,
    /// `idle_flow_killed` alert.
    IdleFlowKilled,
    /// `drop_summary` metric.
    DropSummary,
    /// `overlay_multicast_dropped` alert.
    OverlayMulticastDropped,
    /// `overlay_underlay_blocked` alert.
    OverlayUnderlayBlocked,
    /// `mtu_blackhole` alert.
    MtuBlackhole,
    /// `incident` lifecycle line.
    Incident,
    // tracer's own state.
    /// A probe attached or failed.
    ProbeStatus,
    /// Records the kernel side could not deliver.
    LossReport,
    /// Detector tables and what they had to forget.
    DetectorStatus,
    /// Container identity sources.
    EnrichmentStatus,
    /// A record that could not be decoded.
    DecodeError,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 27] = [
        Action::FdbLearn,
        Action::FdbMove,
        Action::FdbDelete,
        Action::ArpReply,
        Action::NeighUpdate,
        Action::TcpRetransmit,
        Action::TcpReset,
        Action::SkbDrop,
        Action::TcpAbort,
        Action::IcmpError,
        Action::FdbFlap,
        Action::ArpDuplicateReply,
        Action::IpConflict,
        Action::RetransmitBurst,
        Action::RetransmitRollup,
        Action::ConnectFailed,
        Action::IdleFlowKilled,
        Action::DropSummary,
        Action::OverlayMulticastDropped,
        Action::OverlayUnderlayBlocked,
        Action::MtuBlackhole,
        Action::Incident,
        Action::ProbeStatus,
        Action::LossReport,
        Action::DetectorStatus,
        Action::EnrichmentStatus,
        Action::DecodeError,
    ];

    /// The JSON string of `event.action`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::FdbLearn => "fdb_learn",
            Action::FdbMove => "fdb_move",
            Action::FdbDelete => "fdb_delete",
            Action::ArpReply => "arp_reply",
            Action::NeighUpdate => "neigh_update",
            Action::TcpRetransmit => "tcp_retransmit",
            Action::TcpReset => "tcp_reset",
            Action::SkbDrop => "skb_drop",
            Action::TcpAbort => "tcp_abort",
            Action::IcmpError => "icmp_error",
            Action::FdbFlap => "fdb_flap",
            Action::ArpDuplicateReply => "arp_duplicate_reply",
            Action::IpConflict => "ip_conflict",
            Action::RetransmitBurst => "retransmit_burst",
            Action::RetransmitRollup => "retransmit_rollup",
            Action::ConnectFailed => "connect_failed",
            Action::IdleFlowKilled => "idle_flow_killed",
            Action::DropSummary => "drop_summary",
            Action::OverlayMulticastDropped => "overlay_multicast_dropped",
            Action::OverlayUnderlayBlocked => "overlay_underlay_blocked",
            Action::MtuBlackhole => "mtu_blackhole",
            Action::Incident => "incident",
            Action::ProbeStatus => "probe_status",
            Action::LossReport => "loss_report",
            Action::DetectorStatus => "detector_status",
            Action::EnrichmentStatus => "enrichment_status",
            Action::DecodeError => "decode_error",
        }
    }

    /// ECS `event.category` / `event.type` of this action.
    pub const fn category(self) -> (&'static str, &'static str) {
        match self {
            Action::FdbLearn => ("network", "creation"),
            Action::FdbMove | Action::NeighUpdate => ("network", "change"),
            Action::FdbDelete => ("network", "deletion"),
            Action::SkbDrop | Action::IcmpError => ("network", "denied"),
            Action::TcpAbort => ("network", "connection"),
            Action::ProbeStatus | Action::LossReport | Action::DetectorStatus => ("host", "info"),
            Action::ArpReply
            | Action::TcpRetransmit
            | Action::TcpReset
            | Action::FdbFlap
            | Action::ArpDuplicateReply
            | Action::IpConflict
            | Action::RetransmitBurst
            | Action::RetransmitRollup
            | Action::ConnectFailed
            | Action::IdleFlowKilled
            | Action::DropSummary
            | Action::OverlayMulticastDropped
            | Action::OverlayUnderlayBlocked
            | Action::MtuBlackhole
            | Action::Incident
            | Action::EnrichmentStatus
            | Action::DecodeError => ("network", "info"),
        }
    }

    /// The action printed as `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl Ord for Action {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Action {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_plain_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for a in Action::ALL {
            let s = a.as_str();
            assert!(seen.insert(s), "{s} twice");
            // Written as is into JSON: no escaping ever needed.
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert_eq!(Action::from_name(s), Some(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(Action::from_name("fdb_flapping"), None);
    }

    #[test]
    fn order_is_the_order_of_the_names() {
        let mut by_action = Action::ALL;
        by_action.sort();
        let mut by_name = Action::ALL.map(Action::as_str);
        by_name.sort();
        assert_eq!(by_action.map(Action::as_str), by_name);
        assert!(Action::ArpDuplicateReply < Action::FdbFlap);
    }

    #[test]
    fn categories_as_before() {
        // The table `category_of` held before actions were typed.
        let old = |a: &str| match a {
            "fdb_learn" => ("network", "creation"),
            "fdb_move" => ("network", "change"),
            "fdb_delete" => ("network", "deletion"),
            "neigh_update" => ("network", "change"),
            "probe_status" => ("host", "info"),
            "loss_report" => ("host", "info"),
            "detector_status" => ("host", "info"),
            "skb_drop" => ("network", "denied"),
            // New since: an ICMP error is a refusal, a socket error ends a connection.
            "icmp_error" => ("network", "denied"),
            "tcp_abort" => ("network", "connection"),
            _ => ("network", "info"),
        };
        for a in Action::ALL {
            assert_eq!(a.category(), old(a.as_str()), "{a}");
        }
    }
}
