//! `tracer replay A B C`: the captures of several hosts as one stream.
//!
//! Each capture is read with its own [`Pipeline`] (its drop-reason names,
//! kernel symbols, FDB and identity are its host's), without detectors;
//! records are taken in wall-clock order (each capture's boot-clock times
//! plus its header's boot-to-wall offset), every event is stamped with
//! its host's name, and one set of [`Detectors`] looks at the merged
//! stream, so one incident can join a MAC flapping on host 1's bridge
//! with host 2's retransmits to that MAC's IP.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    capture::{CaptureReader, Record},
    decode::{Locations, Tables},
    detect::Detectors,
    event::{EcsEvent, Host},
    pipeline::{Filter, Input, Pipeline},
    replay::{input_boot_ns, kernel_ts, Pacer, ReplayOptions, ReplaySummary},
};

struct Feed {
    reader: CaptureReader,
    pipeline: Pipeline,
    host: Host,
    boot_to_wall_ns: i128,
    /// The next record and its wall-clock time (`i128::MIN`: no time of
    /// its own, applied at once).
    next: Option<(i128, Record)>,
    last_wall: i128,
    done: bool,
}

impl Feed {
    fn fill(&mut self) -> anyhow::Result<()> {
        while self.next.is_none() && !self.done {
            match self.reader.next_record()? {
                None => self.done = true,
                // Header and tables were taken at open; later parts restate them.
                Some(Record::Header(_) | Record::DropReasons(_)) => {}
                Some(rec) => {
                    let boot = match &rec {
                        Record::Input(Input::Kernel(b)) => kernel_ts(b),
                        Record::Input(i) => input_boot_ns(i),
                        _ => None,
                    };
                    let wall = boot.map_or(i128::MIN, |b| b as i128 + self.boot_to_wall_ns);
                    self.next = Some((wall, rec));
                }
            }
        }
        Ok(())
    }
}

/// Host names as the captures name them; a name seen twice gets the
/// capture's position appended, so two captures never read as one host.
fn host_names(headers: &[String]) -> Vec<String> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = if h.is_empty() { "unknown" } else { h.as_str() };
            if headers.iter().filter(|o| o.as_str() == h).count() > 1 {
                format!("{h}#{}", i + 1)
            } else {
                h.to_string()
            }
        })
        .collect()
}

pub(crate) fn drive(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    emit: &mut dyn FnMut(&[EcsEvent]) -> anyhow::Result<()>,
) -> anyhow::Result<ReplaySummary> {
    // Scope filters apply per host; the action filter to the merged output
    // (alerts included), as in a single replay.
    let scope = Filter {
        actions: Default::default(),
        ..opts.filter.clone()
    };
    let mut readers = Vec::new();
    for p in paths {
        readers.push(CaptureReader::open(p)?);
    }
    let names = host_names(
        &readers
            .iter()
            .map(|r| r.header().hostname.clone())
            .collect::<Vec<_>>(),
    );
    let mut feeds: Vec<Feed> = readers
        .into_iter()
        .zip(names)
        .map(|(reader, name)| {
            let boot_to_wall_ns = reader.header().boot_to_wall_ns;
            let pipeline = Pipeline::new(
                Tables {
                    drop_reasons: reader.drop_reasons().clone(),
                    locations: Locations::default(),
                    boot_to_wall_ns,
                    reason_cache: Default::default(),
                },
                scope.clone(),
                None,
            );
            Feed {
                reader,
                pipeline,
                host: Host { name: name.into() },
                boot_to_wall_ns,
                next: None,
                last_wall: i128::MIN,
                done: false,
            }
        })
        .collect();
    let mut detect = opts.detect.clone().map(Detectors::new);
    let mut pacer = Pacer::new(opts.speed);
    let mut summary = ReplaySummary::default();
    let mut batch: Vec<EcsEvent> = Vec::new();
    let mut out: Vec<EcsEvent> = Vec::new();
    let mut alerts: Vec<EcsEvent> = Vec::new();

    loop {
        for f in feeds.iter_mut() {
            f.fill()
                .with_context(|| format!("reading the capture of host {}", f.host.name))?;
        }
        // The earliest record (the first capture on a tie: deterministic).
        let Some(i) = (0..feeds.len())
            .filter(|&i| feeds[i].next.is_some())
            .min_by_key(|&i| feeds[i].next.as_ref().map(|(t, _)| *t))
        else {
            break;
        };
        let f = &mut feeds[i];
        let Some((wall, rec)) = f.next.take() else {
            break;
        };
        if wall != i128::MIN {
            pacer.wait(u64::try_from(wall).ok());
            f.last_wall = f.last_wall.max(wall);
        }
        let input = match rec {
            Record::Symbols(v) => {
                f.pipeline.add_symbols(v);
                continue;
            }
            Record::Input(input) => input,
            Record::Header(_) | Record::DropReasons(_) => continue,
        };
        summary.inputs += 1;
        match &input {
            // The end of one host is not the end of the merged stream.
            Input::Finish { .. } => continue,
            Input::Tick { .. } => {
                if let Some(d) = detect.as_mut() {
                    d.advance(wall, &mut out);
                }
            }
            _ => {
                f.pipeline.process(&input, &mut batch);
                for mut ev in batch.drain(..) {
                    ev.host = Some(f.host.clone());
                    match detect.as_mut() {
                        None => out.push(ev),
                        Some(d) => {
                            // As `Pipeline::detect_last`: lines due by the
                            // event's time, the event (unless rate-limited),
                            // then what it triggered.
                            d.advance(ev.timestamp, &mut out);
                            let keep = d.observe(&ev, &mut alerts);
                            if keep {
                                out.push(ev);
                            }
                            out.append(&mut alerts);
                        }
                    }
                }
            }
        }
        if !opts.filter.actions.is_empty() {
            out.retain(|e| opts.filter.matches(e));
        }
        if !out.is_empty() {
            emit(&out)?;
            out.clear();
        }
    }
    let end = feeds.iter().map(|f| f.last_wall).max().unwrap_or(0).max(0);
    if let Some(d) = detect.as_mut() {
        d.finish(end, &mut out);
    }
    if !opts.filter.actions.is_empty() {
        out.retain(|e| opts.filter.matches(e));
    }
    emit(&out)?;
    let warnings: Vec<String> = feeds
        .iter()
        .filter_map(|f| f.reader.warning().map(str::to_string))
        .collect();
    if !warnings.is_empty() {
        summary.warning = Some(warnings.join("; "));
    }
    summary.skipped_unknown = feeds.iter().map(|f| f.reader.skipped_unknown()).sum();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_names_are_told_apart() {
        let n = host_names(&["a".into(), "b".into(), "a".into(), String::new()]);
        assert_eq!(n, ["a#1", "b", "a#3", "unknown"]);
    }
}
