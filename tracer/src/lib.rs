//! tracer: eBPF packet-loss tracer for container hosts.
//!
//! Data flows one way: kernel record ([`decode`]) → event ([`event`]) →
//! enrichment ([`fdb`]) → sinks ([`output`]). [`pipeline`] is the
//! deterministic part shared by live runs and replays.

pub mod capture;
pub mod check;
pub mod collector;
pub mod decode;
pub mod detect;
pub mod event;
pub mod explain;
pub mod fdb;
pub mod identity;
pub mod kernel;
pub mod ndjson;
pub mod output;
pub mod pipeline;
pub mod probes;
pub mod replay;
pub mod synth;
