//! tracer: eBPF packet-loss tracer for container hosts.
//!
//! Data flows one way: kernel record ([`decode`]) → event ([`event`]) →
//! enrichment ([`fdb`]) → sinks ([`output`]). [`pipeline`] is the
//! deterministic part shared by live runs and replays.

pub mod btf;
pub mod capture;
pub mod clock;
pub mod decode;
pub mod detect;
pub mod event;
pub mod kallsyms;
pub mod tracefs;
pub mod check;
pub mod collector;
pub mod fdb;
pub mod identity;
pub mod netlink;
pub mod netns;
pub mod ndjson;
pub mod output;
pub mod pipeline;
pub mod privileges;
pub mod probes;
pub mod replay;
pub mod synth;
