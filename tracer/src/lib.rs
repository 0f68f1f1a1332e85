//! tracer: eBPF packet-loss tracer for container hosts.
//!
//! Data flows one way: kernel record ([`decode`]) → event ([`event`]) →
//! enrichment ([`fdb`]) → sinks ([`output`]). [`pipeline`] is the
//! deterministic part shared by live runs and replays.

pub mod btf;
pub mod capture;
pub mod check;
pub mod clock;
pub mod collector;
pub mod decode;
pub mod detect;
pub mod event;
pub mod fdb;
pub mod identity;
pub mod kallsyms;
pub mod ndjson;
pub mod netlink;
pub mod netns;
pub mod output;
pub mod pipeline;
pub mod privileges;
pub mod probes;
pub mod replay;
pub mod synth;
pub mod tracefs;
