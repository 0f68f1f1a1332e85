//! `--output` targets: where the live run's NDJSON goes (repeatable).
//!
//! - `stdout` (the default when no `--output` is given);
//! - `file:PATH[?rotate=SIZE][&keep=N][&queue=SIZE]`: appended, rotated by
//!   size, reopened on SIGHUP ([`super::file`]);
//! - `tcp://HOST:PORT[?queue=SIZE]` and `unix:PATH[?queue=SIZE]`: NDJSON
//!   over a stream socket, reconnected with backoff ([`super::stream`]).
//!
//! Every target has its own bounded queue (`queue=`, default
//! [`QUEUE_BYTES`]); what does not fit is counted per target in
//! `loss_report` (`tracer.sink_dropped`, keyed by the target's name).

use std::{io, path::PathBuf};

use thiserror::Error;

use super::{
    file::{RotatingFile, Rotation, DEFAULT_KEEP},
    stream::{Peer, Stream},
    Queued, Sink, QUEUE_BYTES, STDOUT_THREAD,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File { path: PathBuf, rotation: Rotation },
    Stream(Peer),
}

/// One `--output`: a target and its queue bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub target: Target,
    pub queue_bytes: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OutputError {
    #[error("{0:?}: use stdout, file:PATH, tcp://HOST:PORT or unix:PATH")]
    Unknown(String),
    #[error("{0:?}: unknown option {1:?} (file: rotate, keep, queue; tcp/unix: queue)")]
    Option(String, String),
    #[error("{0:?}: {1}")]
    Value(String, String),
}

/// Parses a size (`64K`, `100M`, `1G`, or bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => {
            let m = match t[i..].to_ascii_uppercase().trim_end_matches(['B', 'I']) {
                "" => 1u64,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_string())
}

impl std::str::FromStr for Output {
    type Err = OutputError;

    fn from_str(spec: &str) -> Result<Self, OutputError> {
        let (base, query) = match spec.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (spec, None),
        };
        let mut target = if base == "stdout" || base == "-" {
            Target::Stdout
        } else if let Some(p) = base.strip_prefix("file:") {
            if p.is_empty() {
                return Err(OutputError::Value(spec.into(), "a path is needed".into()));
            }
            Target::File {
                path: p.into(),
                rotation: Rotation {
                    size: None,
                    keep: DEFAULT_KEEP,
                },
            }
        } else if let Some(a) = base.strip_prefix("tcp://") {
            if a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(OutputError::Value(
                    spec.into(),
                    "use tcp://HOST:PORT".into(),
                ));
            }
            Target::Stream(Peer::Tcp(a.into()))
        } else if let Some(p) = base.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(OutputError::Value(spec.into(), "a path is needed".into()));
            }
            Target::Stream(Peer::Unix(p.into()))
        } else {
            return Err(OutputError::Unknown(spec.into()));
        };
        let mut queue_bytes = QUEUE_BYTES;
        for kv in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|s| !s.is_empty())
        {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let bad = |m: String| OutputError::Value(spec.into(), format!("{k}: {m}"));
            match (k, &mut target) {
                ("queue", _) => {
                    let n = parse_size(v).map_err(bad)?;
                    if n < 4096 {
                        return Err(bad("at least 4K".into()));
                    }
                    queue_bytes = usize::try_from(n).map_err(|_| bad("too large".into()))?;
                }
                ("rotate", Target::File { rotation, .. }) => {
                    let n = parse_size(v).map_err(bad)?;
                    if n < 4096 {
                        return Err(bad("rotate at 4K or more".into()));
                    }
                    rotation.size = Some(n);
                }
                ("keep", Target::File { rotation, .. }) => {
                    rotation.keep = v
                        .parse::<u32>()
                        .ok()
                        .filter(|&n| (1..=1000).contains(&n))
                        .ok_or_else(|| bad("a count from 1 to 1000".into()))?;
                }
                _ => return Err(OutputError::Option(spec.into(), k.into())),
            }
        }
        Ok(Output {
            target,
            queue_bytes,
        })
    }
}

impl Output {
    /// The name in `loss_report`'s `tracer.sink_dropped` and in messages.
    pub fn name(&self) -> String {
        match &self.target {
            Target::Stdout => "stdout".into(),
            Target::File { path, .. } => format!("file:{}", path.display()),
            Target::Stream(p) => p.to_string(),
        }
    }

    /// Opens the target (a file is created now: an error is the caller's;
    /// a socket connects on its own thread, later).
    pub fn open(&self) -> io::Result<Box<dyn Sink + Send>> {
        Ok(match &self.target {
            Target::Stdout => Box::new(
                Queued::new("stdout", STDOUT_THREAD, io::stdout(), self.queue_bytes)?
                    // `tracer run | head -3` ends when head does, even on a
                    // quiet host.
                    .watch_reader(libc::STDOUT_FILENO),
            ),
            Target::File { path, rotation } => Box::new(
                Queued::new(
                    self.name(),
                    "sink-file",
                    RotatingFile::open(path, *rotation)?,
                    self.queue_bytes,
                )?
                // SIGHUP: the file is reopened at its path (logrotate).
                .reopen_with(super::file::request_reopen),
            ),
            Target::Stream(peer) => Box::new(Stream::new(peer.clone(), self.queue_bytes)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let o: Output = "file:/var/log/tracer.ndjson?rotate=100M&keep=3"
            .parse()
            .unwrap();
        assert_eq!(
            o.target,
            Target::File {
                path: "/var/log/tracer.ndjson".into(),
                rotation: Rotation {
                    size: Some(100 << 20),
                    keep: 3
                }
            }
        );
        assert_eq!(o.name(), "file:/var/log/tracer.ndjson");
        let o: Output = "tcp://vector.local:9000?queue=1M".parse().unwrap();
        assert_eq!(
            o.target,
            Target::Stream(Peer::Tcp("vector.local:9000".into()))
        );
        assert_eq!(o.queue_bytes, 1 << 20);
        assert_eq!(o.name(), "tcp://vector.local:9000");
        let o: Output = "unix:/run/fluent.sock".parse().unwrap();
        assert_eq!(o.name(), "unix:/run/fluent.sock");
        assert_eq!("stdout".parse::<Output>().unwrap().target, Target::Stdout);
        for bad in [
            "udp://x:1",
            "tcp://nohost",
            "tcp://:80",
            "file:",
            "tcp://h:1?rotate=1M",
            "file:/x?keep=0",
            "file:/x?queue=1",
            "file:/x?bogus=1",
        ] {
            assert!(bad.parse::<Output>().is_err(), "{bad}");
        }
    }
}
