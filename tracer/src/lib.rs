//! tracer: eBPF packet-loss tracer for container hosts.
//!
//! Data flows one way: kernel record ([`decode`]) → event ([`event`], the
//! schema and its NDJSON writer) → enrichment ([`identity`]: containers,
//! namespaces, networks; [`fdb`] tracks which bridge port each MAC is on)
//! → detectors ([`detect`]) → sinks ([`sink`]). [`pipeline`] is the
//! deterministic part shared by the live run ([`live`]) and replays
//! ([`replay`]); [`capture`] records and reads back its inputs.

pub mod capture;
pub mod check;
pub mod decode;
pub mod detect;
pub mod event;
pub mod explain;
pub mod fdb;
pub mod identity;
pub mod kernel;
pub mod live;
mod merge;
pub mod metrics;
pub mod pcapng;
pub mod pipeline;
pub mod probes;
pub mod replay;
pub mod report;
pub mod sink;
pub mod synth;
#[cfg(test)]
pub(crate) mod testutil;
