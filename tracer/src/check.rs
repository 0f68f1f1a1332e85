//! `tracer check`: can each probe attach here, and if not, why.
//! It really loads and attaches (then detaches) rather than guessing.

use std::{collections::BTreeSet, fmt::Write as _, path::Path};

use crate::{
    event::{Action, EcsEvent, Kind, ProbeInfo, SCHEMA_VERSION},
    kernel::{self, clock, privileges},
    probes::{self, LoadOptions, ProbeStatus},
};

pub struct Report {
    pub kernel: String,
    pub notes: Vec<String>,
    pub probes: Vec<ProbeStatus>,
    pub drop_reasons: Vec<(u32, String)>,
}

impl Report {
    pub fn attached(&self) -> usize {
        self.probes
            .iter()
            .filter(|p| p.status == "attached")
            .count()
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "kernel: {}", self.kernel);
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(
            s,
            "{:<20} {:<28} {:<9} WHY",
            "PROBE", "TRACEPOINT", "STATUS"
        );
        for p in &self.probes {
            let what = probes::spec(p.name).map(|s| s.what).unwrap_or("");
            let why = match &p.error {
                Some(e) => e.clone(),
                None => format!("ok: {what}"),
            };
            let status = if p.status == "attached" {
                "ok"
            } else {
                p.status
            };
            let _ = writeln!(
                s,
                "{:<20} {:<28} {:<9} {}",
                p.name, p.tracepoint, status, why
            );
        }
        let _ = writeln!(
            s,
            "{} of {} probes can attach",
            self.attached(),
            self.probes.len()
        );
        if !self.drop_reasons.is_empty() {
            let _ = writeln!(s, "drop reasons (enum skb_drop_reason):");
            for (v, n) in &self.drop_reasons {
                let _ = writeln!(s, "  {v:>5} {n}");
            }
        }
        s
    }

    pub fn ndjson(&self) -> String {
        let ts = clock::boot_now_ns() as i128 + clock::boot_to_wall_offset_ns();
        let mut buf = Vec::new();
        for p in &self.probes {
            let mut e = EcsEvent::new(ts, Kind::State, Action::ProbeStatus);
            e.event.outcome = Some(if p.status == "attached" {
                "success"
            } else {
                "failure"
            });
            e.tracer.probe = Some(Box::new(ProbeInfo {
                name: p.name.to_string(),
                tracepoint: p.tracepoint.clone(),
                status: p.status,
                error: p.error.clone(),
            }));
            e.tracer.schema_version = Some(SCHEMA_VERSION);
            let start = buf.len();
            if let Err(err) = e.write_line(&mut buf) {
                // Never half a line.
                buf.truncate(start);
                log::warn!("a probe_status line could not be serialised: {err}");
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs the check. Fails (with the reason) only when nothing can be tried:
/// no privileges or no BTF.
pub fn run(btf: &Path, list_reasons: bool) -> anyhow::Result<Report> {
    privileges::check()?;
    privileges::raise_memlock();
    let info = kernel::kernel_info(btf)?;
    let mut notes = info.warnings.clone();
    match kernel::tracefs::ensure_mounted() {
        Ok(p) => notes.push(format!("tracefs at {}", p.display())),
        Err(e) => notes.push(format!(
            "tracefs unavailable ({e}): tracepoint existence not pre-checked"
        )),
    }
    let loaded = probes::load(
        &info.btf,
        &LoadOptions {
            groups: Vec::new(),
            ring_bytes: 1 << 16,
            drop_filter: BTreeSet::new(),
            budgets: probes::default_budgets(),
            // What `run` loads by default (the verifier sees the value).
            snaplen: probes::DEFAULT_SNAPLEN,
            kernel_log: false,
        },
    )?;
    let drop_reasons = if list_reasons {
        info.drop_reasons.iter().collect()
    } else {
        Vec::new()
    };
    Ok(Report {
        kernel: kernel_release(),
        notes,
        probes: loaded.status,
        drop_reasons,
    })
}
