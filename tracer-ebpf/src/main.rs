//! tracer's eBPF programs: raw tracepoints only (no kprobes, no fentry), so
//! they load on kernels that refuse tracing programs. The programs live in
//! [`programs`], one file per probe group.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
