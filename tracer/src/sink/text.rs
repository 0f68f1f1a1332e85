//! `--format text`: what a person at a terminal reads.
//!
//! Alerts, incidents, drop summaries and tracer's own notices become
//! sentences: time, what, the containers involved, the message wrapped to
//! the terminal's width and the hint on a line of its own. Raw kernel
//! events are not printed one by one; they are counted per container and
//! kind, and shown in a status block with probe and loss status on one
//! line. On a terminal the block stays at the bottom and is redrawn in
//! place (ANSI cursor movement, at most [`REDRAW_EVERY`] apart); when text
//! goes to a file or pipe the same counts are printed as a plain summary
//! line every [`SUMMARY_EVERY`] of event time and at the end.
//!
//! The view renders into the byte stream [`super::Lines`] hands its sinks,
//! so it works over any sink. Colour (SGR escapes) only when asked for:
//! see [`TextOptions`].

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use crate::{
    event::{Action, EcsEvent, Kind},
    kernel::clock::format_ts,
};

/// Shortest time between two redraws of the status block on a terminal.
pub const REDRAW_EVERY: Duration = Duration::from_millis(250);
/// Event time between two summary lines when not on a terminal.
pub const SUMMARY_EVERY_NS: i128 = 10_000_000_000;
/// Containers listed in the status block (the busiest; the rest are summed).
const STATUS_CONTAINERS: usize = 8;
/// Column the wrapped text of a sentence starts at.
const INDENT: usize = 2;

/// How the text view writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextOptions {
    /// Redraw the status block in place (stdout is a terminal).
    pub terminal: bool,
    /// SGR colours (a terminal, `NO_COLOR` unset or empty, or `--color always`).
    pub colour: bool,
    /// Columns to wrap at.
    pub width: usize,
}

impl TextOptions {
    /// The terminal's width, from `COLUMNS` or the tty, else 100.
    pub fn terminal_width() -> usize {
        if let Some(n) = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
        {
            return n.clamp(40, 400);
        }
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 {
            (ws.ws_col as usize).clamp(40, 400)
        } else {
            100
        }
    }
}

/// SGR sequences (empty without colour).
struct Palette {
    on: bool,
}

impl Palette {
    fn paint(&self, out: &mut String, sgr: &str, text: &str) {
        if self.on {
            let _ = write!(out, "\x1b[{sgr}m{text}\x1b[0m");
        } else {
            out.push_str(text);
        }
    }
}

const RED: &str = "1;31";
const MAGENTA: &str = "1;35";
const YELLOW: &str = "33";
const CYAN: &str = "36";
const DIM: &str = "2";
const BOLD: &str = "1";

/// The text renderer (state: counts, probe and loss status, what is on screen).
pub struct TextView {
    opts: TextOptions,
    pal: Palette,
    /// Raw events per container (display name; `-` for none) and action.
    counts: BTreeMap<String, BTreeMap<&'static str, u64>>,
    events: u64,
    probes_ok: u32,
    probes_failed: Vec<String>,
    lost_total: u64,
    sink_dropped: u64,
    /// Newest event time seen.
    now: i128,
    /// Lines of the status block now on screen (terminal).
    drawn: usize,
    last_draw: Option<Instant>,
    /// Counts changed since the block was drawn (or the summary printed).
    dirty: bool,
    /// Event time of the next summary line (not a terminal).
    next_summary: Option<i128>,
}

impl TextView {
    pub fn new(opts: TextOptions) -> Self {
        Self {
            opts,
            pal: Palette { on: opts.colour },
            counts: BTreeMap::new(),
            events: 0,
            probes_ok: 0,
            probes_failed: Vec::new(),
            lost_total: 0,
            sink_dropped: 0,
            now: 0,
            drawn: 0,
            last_draw: None,
            dirty: false,
            next_summary: None,
        }
    }

    /// One event into `out` (bytes for the sinks).
    pub fn render(&mut self, e: &EcsEvent, out: &mut Vec<u8>) {
        self.now = self.now.max(e.timestamp);
        let mut text = String::new();
        match e.event.action {
            Action::ProbeStatus => {
                let ok = e.event.outcome == Some("success");
                match &e.tracer.probe {
                    Some(p) if !ok => self.probes_failed.push(p.name.clone()),
                    Some(_) => self.probes_ok += 1,
                    None => {}
                }
                if !ok {
                    self.sentence(&mut text, e, "PROBE", YELLOW);
                }
                self.dirty = true;
            }
            Action::LossReport => {
                self.lost_total = e.tracer.lost_total.unwrap_or(self.lost_total);
                let sink: u64 = e
                    .tracer
                    .sink_dropped
                    .as_ref()
                    .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
                    .unwrap_or(0);
                self.sink_dropped += sink;
                if e.tracer.lost.unwrap_or(0) > 0 || sink > 0 {
                    self.sentence(&mut text, e, "LOSS", YELLOW);
                }
                self.dirty = true;
            }
            Action::Incident => self.sentence(&mut text, e, "INCIDENT", MAGENTA),
            _ if e.event.kind == Kind::Alert => self.sentence(&mut text, e, "ALERT", RED),
            Action::DropSummary | Action::RetransmitRollup => {
                self.sentence(&mut text, e, "SUMMARY", YELLOW)
            }
            _ if e.event.kind == Kind::Event => {
                let who = containers(e)
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "-".into());
                *self
                    .counts
                    .entry(who)
                    .or_default()
                    .entry(e.event.action.as_str())
                    .or_default() += 1;
                self.events += 1;
                self.dirty = true;
            }
            // Tracer's own state lines (enrichment, detectors, decode errors).
            _ => self.sentence(&mut text, e, "NOTE", DIM),
        }
        if self.opts.terminal {
            let due = self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW_EVERY);
            if !text.is_empty() || (self.dirty && due) {
                self.erase(out);
                out.extend_from_slice(text.as_bytes());
                self.draw(out);
            }
        } else {
            out.extend_from_slice(text.as_bytes());
            let next = *self
                .next_summary
                .get_or_insert(e.timestamp + SUMMARY_EVERY_NS);
            if e.timestamp >= next && self.dirty {
                self.summary_line(out);
                self.next_summary = Some(e.timestamp + SUMMARY_EVERY_NS);
            }
        }
    }

    /// Called when the output is flushed: a terminal's block catches up.
    pub fn refresh(&mut self, out: &mut Vec<u8>) {
        let due = self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW_EVERY);
        if self.opts.terminal && self.dirty && due {
            self.erase(out);
            self.draw(out);
        }
    }

    /// The end: the final status (redrawn, or one last summary line).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.opts.terminal {
            self.erase(out);
            self.draw(out);
        } else if self.dirty || self.events == 0 {
            self.summary_line(out);
        }
    }

    /// Removes the status block from the screen (cursor to its first line).
    fn erase(&mut self, out: &mut Vec<u8>) {
        if self.drawn > 0 {
            // Line by line, upwards: CR, then cursor up (CUU) and erase
            // the line (EL) for each line of the block. Not ED ("erase to
            // the end of the screen"): from the top-left corner that clears
            // the whole screen, which tmux (scroll-on-clear) and some
            // terminals answer by pushing the screen into the scrollback.
            out.push(b'\r');
            for _ in 0..self.drawn {
                out.extend_from_slice(b"\x1b[A\x1b[2K");
            }
            self.drawn = 0;
        }
    }

    /// Draws the status block below what was printed.
    fn draw(&mut self, out: &mut Vec<u8>) {
        let mut s = String::new();
        let mut lines = 0;
        let header = format!("── {} raw events, by container ", self.events);
        let fill = self.opts.width.saturating_sub(header.chars().count() + 1);
        self.pal
            .paint(&mut s, DIM, &format!("{header}{}", "─".repeat(fill)));
        s.push('\n');
        lines += 1;
        let mut rows: Vec<(&String, u64, &BTreeMap<&'static str, u64>)> = self
            .counts
            .iter()
            .map(|(c, m)| (c, m.values().sum(), m))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (c, _, m) in rows.iter().take(STATUS_CONTAINERS) {
            s.push_str("  ");
            self.pal.paint(&mut s, BOLD, &format!("{c:<20}"));
            let mut row = String::new();
            for (a, n) in m.iter() {
                let _ = write!(row, " {a} {n}");
            }
            s.push_str(&truncate(&row, self.opts.width.saturating_sub(23)));
            s.push('\n');
            lines += 1;
        }
        if rows.len() > STATUS_CONTAINERS {
            let rest: u64 = rows[STATUS_CONTAINERS..].iter().map(|r| r.1).sum();
            let _ = writeln!(
                s,
                "  … {} more containers, {rest} events",
                rows.len() - STATUS_CONTAINERS
            );
            lines += 1;
        }
        s.push_str(&self.status_line());
        s.push('\n');
        lines += 1;
        out.extend_from_slice(s.as_bytes());
        self.drawn = lines;
        self.last_draw = Some(Instant::now());
        self.dirty = false;
    }

    /// Probe and loss status, one line.
    fn status_line(&self) -> String {
        let mut s = String::new();
        let probes = format!(
            "probes: {} attached, {} failed",
            self.probes_ok,
            self.probes_failed.len()
        );
        if self.probes_failed.is_empty() {
            s.push_str(&probes);
        } else {
            self.pal.paint(
                &mut s,
                YELLOW,
                &format!("{probes} ({})", self.probes_failed.join(", ")),
            );
        }
        s.push_str(" · ");
        let loss = format!(
            "lost: {} kernel records, {} output lines",
            self.lost_total, self.sink_dropped
        );
        if self.lost_total > 0 || self.sink_dropped > 0 {
            self.pal.paint(&mut s, YELLOW, &loss);
        } else {
            s.push_str(&loss);
        }
        s.push_str(" · ");
        self.pal
            .paint(&mut s, DIM, &format!("at {}", clock(self.now)));
        s
    }

    /// Not a terminal: the counts as one plain line.
    fn summary_line(&mut self, out: &mut Vec<u8>) {
        let mut s = format!("{} STATUS  {} raw events", clock(self.now), self.events);
        let mut rows: Vec<(&String, u64, &BTreeMap<&'static str, u64>)> = self
            .counts
            .iter()
            .map(|(c, m)| (c, m.values().sum(), m))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = rows
            .iter()
            .take(STATUS_CONTAINERS)
            .map(|(c, _, m)| {
                let kinds: Vec<String> = m.iter().map(|(a, n)| format!("{a} {n}")).collect();
                format!("{c}: {}", kinds.join(", "))
            })
            .collect();
        if !shown.is_empty() {
            let _ = write!(s, " ({}", shown.join("; "));
            if rows.len() > STATUS_CONTAINERS {
                let _ = write!(s, "; {} more containers", rows.len() - STATUS_CONTAINERS);
            }
            s.push(')');
        }
        let _ = writeln!(
            s,
            "; probes: {} attached, {} failed; lost: {} kernel records, {} output lines",
            self.probes_ok,
            self.probes_failed.len(),
            self.lost_total,
            self.sink_dropped
        );
        out.extend_from_slice(s.as_bytes());
        self.dirty = false;
    }

    /// `HH:MM:SS.mmm LABEL action [containers]`, the message wrapped, the
    /// hint on its own line.
    fn sentence(&self, s: &mut String, e: &EcsEvent, label: &str, colour: &str) {
        self.pal.paint(s, DIM, &clock(e.timestamp));
        s.push(' ');
        self.pal.paint(s, colour, &format!("{label:<8}"));
        s.push(' ');
        s.push_str(e.event.action.as_str());
        let who = containers(e);
        if !who.is_empty() {
            s.push_str("  ");
            self.pal.paint(s, BOLD, &who.join(", "));
        }
        s.push('\n');
        let width = self.opts.width.max(40);
        // The hint is printed on its own line below: not twice.
        let hint = hint(e);
        if let Some(m) = &e.message {
            let m = match &hint {
                Some(h) => m
                    .strip_suffix(h.as_str())
                    .map(|m| m.trim_end_matches([' ', '—', '-', ';', ':']).trim_end())
                    .unwrap_or(m),
                None => m,
            };
            wrap(s, m, INDENT, width);
        }
        if let Some(h) = hint {
            s.push_str(&" ".repeat(INDENT));
            self.pal.paint(s, CYAN, "hint:");
            let mut rest = String::new();
            wrap(&mut rest, &h, INDENT + 6, width);
            // The first line continues after "hint:".
            s.push(' ');
            s.push_str(rest.trim_start());
        }
    }
}

/// `HH:MM:SS.mmm` (UTC, like the NDJSON).
fn clock(ns: i128) -> String {
    if ns == 0 {
        return "--:--:--.---".into();
    }
    let t = format_ts(ns);
    t.get(11..23).map(str::to_string).unwrap_or(t)
}

/// The hint of an incident or alert payload, when it has one.
fn hint(e: &EcsEvent) -> Option<String> {
    let payload = e.tracer.incident.as_ref().or(e.tracer.alert.as_ref())?;
    let v = payload.value();
    v.get("hint")?.as_str().map(str::to_string)
}

/// The containers an event names, most specific first, each once.
fn containers(e: &EcsEvent) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(inc) = &e.tracer.incident {
        if let Some(list) = inc.value().get("containers").and_then(|c| c.as_array()) {
            out.extend(list.iter().filter_map(|c| c.as_str().map(str::to_string)));
        }
    }
    let peer = |p: &Option<Box<crate::event::Peer>>| p.as_ref().and_then(|p| p.container.clone());
    for c in [
        e.container.clone(),
        e.source.container.clone(),
        e.destination.container.clone(),
        peer(&e.tracer.port_peer),
        peer(&e.tracer.previous_port_peer),
    ]
    .into_iter()
    .flatten()
    {
        let n = c.display_name();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Words of `text` into lines of at most `width` columns, each indented.
fn wrap(out: &mut String, text: &str, indent: usize, width: usize) {
    let room = width.saturating_sub(indent).max(20);
    let mut line = String::new();
    let mut cols = 0;
    for word in text.split_whitespace() {
        let w = word.chars().count();
        if cols > 0 && cols + 1 + w > room {
            push_line(out, &line, indent);
            line.clear();
            cols = 0;
        }
        if cols > 0 {
            line.push(' ');
            cols += 1;
        }
        line.push_str(word);
        cols += w;
    }
    if !line.is_empty() {
        push_line(out, &line, indent);
    }
}

fn push_line(out: &mut String, line: &str, indent: usize) {
    for _ in 0..indent {
        out.push(' ');
    }
    out.push_str(line);
    out.push('\n');
}

/// At most `n` characters (an ellipsis when cut).
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ContainerData, ContainerRef, RawJson};

    fn view(terminal: bool, colour: bool) -> TextView {
        TextView::new(TextOptions {
            terminal,
            colour,
            width: 60,
        })
    }

    fn drop_in(name: &str, t: i128) -> EcsEvent {
        let mut e = EcsEvent::new(t, Kind::Event, Action::SkbDrop);
        e.container = Some(ContainerRef::new(ContainerData {
            id: "ab".repeat(32),
            name: Some(name.into()),
            ..Default::default()
        }));
        e
    }

    fn incident(t: i128) -> EcsEvent {
        let mut e = EcsEvent::new(t, Kind::Alert, Action::Incident);
        let hint = "check proxy ARP (sysctl net.ipv4.conf.<if>.proxy_arp) and static entries";
        e.message = Some("10.1.0.5 (svc4.1) unreachable from svc2.1: an ARP request for it got 2 replies — something answers ARP on its behalf".into());
        e.tracer.incident = RawJson::of(&serde_json::json!({
            "containers": ["svc2.1", "svc4.1"],
            "hint": hint,
        }));
        e
    }

    fn render(v: &mut TextView, events: &[EcsEvent]) -> String {
        let mut out = Vec::new();
        for e in events {
            v.render(e, &mut out);
        }
        v.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    const T0: i128 = 1_700_000_000_000_000_000;

    #[test]
    fn an_incident_is_a_wrapped_sentence_with_its_hint_on_a_line_of_its_own() {
        let s = render(&mut view(false, false), &[incident(T0)]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0], "22:13:20.000 INCIDENT incident  svc2.1, svc4.1",
            "{s}"
        );
        assert!(
            lines[1].starts_with("  10.1.0.5 (svc4.1) unreachable"),
            "{s}"
        );
        assert!(
            lines
                .iter()
                .filter(|l| !l.contains(" STATUS "))
                .all(|l| l.chars().count() <= 60),
            "{s}"
        );
        let h = lines
            .iter()
            .position(|l| l.starts_with("  hint: check proxy ARP"))
            .unwrap();
        assert!(
            lines[h + 1].starts_with("        "),
            "hint continues indented: {s}"
        );
        assert!(!s.contains('\x1b'), "no colour asked for: {s}");
    }

    #[test]
    fn raw_events_are_counted_per_container_and_kind() {
        let evs: Vec<EcsEvent> = (0..5)
            .map(|i| drop_in(if i < 3 { "web" } else { "db" }, T0 + i))
            .collect();
        let s = render(&mut view(false, false), &evs);
        assert_eq!(s.lines().count(), 1, "one summary line at the end: {s}");
        assert!(
            s.contains("5 raw events (web: skb_drop 3; db: skb_drop 2)"),
            "{s}"
        );
        assert!(
            s.contains("probes: 0 attached, 0 failed; lost: 0 kernel records"),
            "{s}"
        );
    }

    #[test]
    fn not_a_terminal_prints_a_summary_every_interval_of_event_time() {
        let evs: Vec<EcsEvent> = (0..4)
            .map(|i| drop_in("web", T0 + i * 6_000_000_000))
            .collect();
        let s = render(&mut view(false, false), &evs);
        let n = s.lines().filter(|l| l.contains("STATUS")).count();
        assert_eq!(n, 2, "one after 10 s of event time, one at the end: {s}");
    }

    #[test]
    fn a_terminal_redraws_the_block_in_place_with_colour() {
        let mut v = view(true, true);
        let s = render(&mut v, &[drop_in("web", T0), incident(T0 + 1)]);
        assert!(s.contains("\x1b[1;35mINCIDENT"), "{s:?}");
        // Block drawn after the first event (3 lines: heading, web, status),
        // erased before the sentence, then drawn again (and at the end).
        let erase = "\r\x1b[A\x1b[2K\x1b[A\x1b[2K\x1b[A\x1b[2K";
        assert!(s.contains(erase), "{s:?}");
        let sentence = s.find("INCIDENT").unwrap();
        let erased = s.find(erase).unwrap();
        assert!(
            erased < sentence && s[sentence..].contains("skb_drop 1"),
            "{s:?}"
        );
        assert!(s.contains("web"), "{s:?}");
    }
}
