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

/// The scope a recording was started with (`--netns`, `--interface` in
/// its header's command line): a run scoped to some namespaces recorded
/// every kernel record, but stood for those namespaces only, so in a
/// merged replay its host contributes only them (two recorders on one
/// machine do not each claim the other's events).
fn recorded_scope(args: &[String]) -> Filter {
    let mut f = Filter::default();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if flag != "--netns" && flag != "--interface" {
            continue;
        }
        let Some(v) = inline.or_else(|| it.next().cloned()) else {
            break;
        };
        match flag {
            "--netns" => f.netns.extend(v.parse::<u32>().ok()),
            _ => {
                f.interfaces.insert(v);
            }
        }
    }
    f
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
            .map(|r| {
                let h = r.header();
                h.host_name.clone().unwrap_or_else(|| h.hostname.clone())
            })
            .collect::<Vec<_>>(),
    );
    let mut feeds: Vec<Feed> = readers
        .into_iter()
        .zip(names)
        .map(|(reader, name)| {
            let boot_to_wall_ns = reader.header().boot_to_wall_ns;
            let recorded = recorded_scope(&reader.header().args);
            let mut scope = scope.clone();
            if scope.netns.is_empty() {
                scope.netns = recorded.netns;
            }
            if scope.interfaces.is_empty() {
                scope.interfaces = recorded.interfaces;
            }
            let pipeline = Pipeline::new(
                Tables {
                    drop_reasons: reader.drop_reasons().clone(),
                    locations: Locations::default(),
                    boot_to_wall_ns,
                    reason_cache: Default::default(),
                },
                scope,
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
    let mut pcap = crate::replay::open_pcapng(opts)?;
    if pcap.is_some() {
        for f in feeds.iter_mut() {
            f.pipeline.collect_packets();
        }
    }
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
                if let Some(pc) = pcap.as_mut() {
                    for mut p in f.pipeline.drain_packets() {
                        // Interfaces of several hosts: told apart by host.
                        p.iface.host = Some(f.host.name.clone());
                        pc.write(&p).context("writing pcapng")?;
                    }
                }
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
                            // An alert an event triggered is that host's
                            // (incidents, which join hosts, name none).
                            for a in alerts.iter_mut() {
                                if a.event.action != crate::event::Action::Incident {
                                    a.host = ev.host.clone();
                                }
                            }
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
    crate::replay::finish_pcapng(pcap)?;
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
    fn scope_comes_from_the_recording_command_line() {
        let args: Vec<String> = [
            "tracer",
            "run",
            "--netns",
            "7",
            "--netns=9",
            "--record",
            "x",
            "--interface",
            "br0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = recorded_scope(&args);
        assert_eq!(f.netns.into_iter().collect::<Vec<_>>(), [7, 9]);
        assert_eq!(f.interfaces.into_iter().collect::<Vec<_>>(), ["br0"]);
        assert!(recorded_scope(&["tracer".into(), "run".into()])
            .netns
            .is_empty());
    }

    /// Several hosts' packets in one pcapng file: their interfaces told
    /// apart by host, every packet written; the same captures without
    /// snapshots give a file with none.
    #[test]
    fn two_hosts_snapshots_go_to_one_pcapng_with_interfaces_per_host() {
        use crate::kernel::btf::DropReasons;
        let dir = crate::testutil::TempDir::new("merge-pcapng");
        let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")]);
        let (a, b) = (dir.file("a.capture"), dir.file("b.capture"));
        crate::synth::write_with(&a, 2_000, 6, 2, &reasons, 128).unwrap();
        crate::synth::write_with(&b, 1_000, 6, 2, &reasons, 128).unwrap();
        let out = dir.file("both.pcapng");
        let opts = ReplayOptions {
            path: a.clone(),
            speed: 0.0,
            filter: Default::default(),
            detect: None,
            text: None,
            pcapng: Some(out.clone()),
        };
        let mut drops_arp_retrans = 0;
        crate::replay::drive(&[a.clone(), b.clone()], &opts, &mut |batch| {
            drops_arp_retrans += batch
                .iter()
                .filter(|e| {
                    matches!(
                        e.event.action,
                        crate::event::Action::SkbDrop
                            | crate::event::Action::ArpReply
                            | crate::event::Action::TcpRetransmit
                    )
                })
                .count();
            Ok(())
        })
        .unwrap();
        // Walk the blocks: (type, body).
        let bytes = std::fs::read(&out).unwrap();
        let mut blocks = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let kind = u32::from_le_bytes(rest[0..4].try_into().unwrap());
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            blocks.push((kind, rest[8..len - 4].to_vec()));
            rest = &rest[len..];
        }
        assert_eq!(blocks[0].0, 0x0A0D_0D0A);
        let packets = blocks.iter().filter(|(k, _)| *k == 6).count();
        assert_eq!(packets, drops_arp_retrans, "every packet written");
        let described = |host: &str| {
            blocks
                .iter()
                .filter(|(k, body)| {
                    *k == 1
                        && String::from_utf8_lossy(body).contains(&format!("host {host}, netns"))
                })
                .count()
        };
        assert!(described("synth-host#1") > 0 && described("synth-host#2") > 0);
        // An existing file is refused, before anything is read.
        let e = crate::replay::drive(&[a, b], &opts, &mut |_| Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("cannot create"), "{e:#}");
    }

    #[test]
    fn two_captures_merge_in_time_order_with_their_hosts() {
        use crate::{event::Kind, kernel::btf::DropReasons};
        let dir = crate::testutil::TempDir::new("merge");
        let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")]);
        let (a, b) = (dir.file("a.capture"), dir.file("b.capture"));
        crate::synth::write(&a, 5_000, 10, 2, &reasons).unwrap();
        crate::synth::write(&b, 3_000, 10, 2, &reasons).unwrap();
        let opts = ReplayOptions {
            path: a.clone(),
            speed: 0.0,
            filter: Default::default(),
            detect: Some(Default::default()),
            text: None,
            pcapng: None,
        };
        let mut events = Vec::new();
        let s = crate::replay::drive(&[a, b], &opts, &mut |batch| {
            events.extend(batch.iter().cloned());
            Ok(())
        })
        .unwrap();
        assert!(s.inputs >= 8_000, "{}", s.inputs);
        let kernel: Vec<&EcsEvent> = events
            .iter()
            .filter(|e| e.event.kind == Kind::Event)
            .collect();
        assert!(
            kernel.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
            "merged in time order"
        );
        let hosts: std::collections::BTreeSet<String> = kernel
            .iter()
            .map(|e| {
                e.host
                    .as_ref()
                    .expect("every event names its host")
                    .name
                    .to_string()
            })
            .collect();
        assert_eq!(hosts.len(), 2, "{hosts:?}");
        assert!(events
            .iter()
            .any(|e| e.event.action == crate::event::Action::Incident));
    }

    #[test]
    fn same_host_names_are_told_apart() {
        let n = host_names(&["a".into(), "b".into(), "a".into(), String::new()]);
        assert_eq!(n, ["a#1", "b", "a#3", "unknown"]);
    }
}
