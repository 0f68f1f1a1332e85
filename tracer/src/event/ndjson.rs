//! Hand-written NDJSON serialiser for [`EcsEvent`]: the same bytes as the
//! serde derive (`serde_json::to_writer`) for every event, several times
//! faster (static keys are byte literals, strings are escaped by scanning
//! eight bytes at a time, numbers go through `itoa`, no `Serializer` state
//! machine per field).
//!
//! The serde derive in [`super`] ([`crate::event`]) stays the reference: the tests
//! below check this writer against it byte for byte. Every struct is
//! destructured exhaustively, so a new field does not compile until it is
//! written here too (and then the tests check where and how).

use std::{
    cell::Cell,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use chrono::{DateTime, SecondsFormat};

use super::{
    ContainerRef, EcsEvent, Endpoint, EventMeta, Icmp, Interface, Kind, Mac, Neigh, Netns, Network,
    Peer, ProbeInfo, RawJson, SmolStr, Tcp, TracerFields,
};

/// `,"key":value` when the `Option` holds something (serde's
/// `skip_serializing_if = "Option::is_none"`). With `serde`, the value goes
/// through `serde_json` (free-form maps and values) and its error returns.
macro_rules! optional {
    ($out:ident, $key:literal, $val:expr) => {
        if let Some(v) = $val {
            $out.extend_from_slice(concat!(",\"", $key, "\":").as_bytes());
            Json::write_json(v, $out);
        }
    };
    ($out:ident, $key:literal, $val:expr, serde) => {
        if let Some(v) = $val {
            $out.extend_from_slice(concat!(",\"", $key, "\":").as_bytes());
            serde_json::to_writer(&mut *$out, &**v)?;
        }
    };
}
/// `,"key":value` for a field that is always there.
macro_rules! required {
    ($out:ident, $key:literal, $val:expr) => {
        $out.extend_from_slice(concat!(",\"", $key, "\":").as_bytes());
        Json::write_json($val, $out);
    };
}
/// Appends `e` as one JSON object and a newline to `out`.
///
/// Only the rare free-form parts (`tracer.enrichment`/`detect`,
/// `tracer.lost_by_probe`/`filtered`/`sink_dropped`) go through
/// `serde_json`; their errors (none are possible for a `Value`) are
/// returned, with `out` then holding a partial line, as
/// `serde_json::to_writer` would leave it.
pub fn write_line(e: &EcsEvent, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let EcsEvent {
        timestamp,
        event,
        message,
        container,
        source,
        destination,
        network,
        host,
        tracer,
    } = e;
    out.reserve(1024);
    out.extend_from_slice(b"{\"@timestamp\":");
    write_ts(out, *timestamp);
    out.extend_from_slice(b",\"event\":");
    event.write_json(out);
    optional!(out, "message", message);
    optional!(out, "container", container);
    optional!(out, "source", Some(source).filter(|s| !s.is_empty()));
    optional!(
        out,
        "destination",
        Some(destination).filter(|d| !d.is_empty())
    );
    optional!(out, "network", Some(network).filter(|n| !n.is_empty()));
    out.extend_from_slice(b",\"tracer\":");
    write_tracer(out, tracer)?;
    if let Some(h) = host {
        out.extend_from_slice(b",\"host\":{\"name\":");
        h.name.write_json(out);
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// `"host":{"name":…}` (ECS), the same on every line of a run: rendered
/// once, then appended as the last field of each line. It belongs to the
/// run, not to an event, so it is not an [`EcsEvent`] field; a line without
/// one is exactly what [`write_line`] writes.
#[derive(Clone, Debug, PartialEq)]
pub struct HostField(Box<[u8]>);

impl HostField {
    pub fn new(name: &str) -> Self {
        let mut v = b",\"host\":{\"name\":".to_vec();
        name.write_json(&mut v);
        v.extend_from_slice(b"}}\n");
        Self(v.into_boxed_slice())
    }

    /// Appends the field to the line `write_line` just wrote at the end of
    /// `out` (replacing its closing `}` and newline).
    #[inline]
    pub fn append(&self, out: &mut Vec<u8>) {
        if out.ends_with(b"}\n") {
            out.truncate(out.len() - 2);
            out.extend_from_slice(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------
// One value, one field.

/// A value this writer serialises itself, exactly as its serde form.
trait Json {
    fn write_json(&self, out: &mut Vec<u8>);
}

/// An object whose fields each start with a comma: the first comma
/// becomes the opening brace (or the whole thing is `{}` when nothing was
/// written, as serde_json does).
#[inline]
fn object(out: &mut Vec<u8>, fields: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    fields(out);
    if out.len() == start {
        out.extend_from_slice(b"{}");
    } else {
        out[start] = b'{';
        out.push(b'}');
    }
}

impl<T: Json + ?Sized> Json for &T {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out)
    }
}

impl<T: Json + ?Sized> Json for Box<T> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out)
    }
}

impl Json for str {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self)
    }
}

impl Json for super::Action {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self.as_str())
    }
}

macro_rules! json_as_str {
    ($($t:ty),*) => {$(
        impl Json for $t {
            #[inline]
            fn write_json(&self, out: &mut Vec<u8>) {
                write_str(out, self)
            }
        }
    )*};
}
json_as_str!(String, SmolStr, Arc<str>);

macro_rules! json_as_uint {
    ($($t:ty),*) => {$(
        impl Json for $t {
            #[inline]
            fn write_json(&self, out: &mut Vec<u8>) {
                write_uint(out, *self)
            }
        }
    )*};
}
json_as_uint!(u8, u16, u32, u64);

impl Json for Mac {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_mac(out, self)
    }
}

impl Json for IpAddr {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_ip(out, self)
    }
}

/// Serialised once, when the container became known.
impl Json for ContainerRef {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.raw_json().as_bytes())
    }
}

impl Json for RawJson {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.get().as_bytes())
    }
}

// ---------------------------------------------------------------------------
// The schema's objects, every struct destructured exhaustively.

impl Json for EventMeta {
    fn write_json(&self, out: &mut Vec<u8>) {
        let EventMeta {
            kind,
            action,
            category,
            type_,
            outcome,
        } = self;
        // The key, the kind and the next key with its opening quote as one
        // literal; action names are lower-case identifiers, nothing to
        // escape (`action_names_need_no_escaping` checks every one).
        out.extend_from_slice(match kind {
            Kind::Event => b"{\"kind\":\"event\",\"action\":\"",
            Kind::Alert => b"{\"kind\":\"alert\",\"action\":\"",
            Kind::Metric => b"{\"kind\":\"metric\",\"action\":\"",
            Kind::State => b"{\"kind\":\"state\",\"action\":\"",
        });
        out.extend_from_slice(action.as_str().as_bytes());
        out.extend_from_slice(b"\",\"category\":");
        write_str(out, category);
        required!(out, "type", type_);
        optional!(out, "outcome", outcome);
        out.push(b'}');
    }
}

impl Json for Endpoint {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Endpoint {
            ip,
            port,
            mac,
            container,
        } = self;
        object(out, |out| {
            optional!(out, "ip", ip);
            optional!(out, "port", port);
            optional!(out, "mac", mac);
            optional!(out, "container", container);
        });
    }
}

impl Json for Network {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Network { type_, transport } = self;
        object(out, |out| {
            optional!(out, "type", type_);
            optional!(out, "transport", transport);
        });
    }
}

impl Json for Peer {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Peer {
            kind,
            interface,
            container,
            network,
            netns,
        } = self;
        out.extend_from_slice(b"{\"kind\":");
        write_str(out, kind);
        required!(out, "interface", interface);
        optional!(out, "container", container);
        optional!(out, "network", network);
        optional!(out, "netns", netns);
        out.push(b'}');
    }
}

impl Json for Netns {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Netns {
            inode,
            name,
            network,
            host: _,
        } = self;
        out.extend_from_slice(b"{\"inode\":");
        write_uint(out, *inode);
        optional!(out, "name", name);
        optional!(out, "network", network);
        out.push(b'}');
    }
}

impl Json for Interface {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Interface { name, index, .. } = self;
        out.extend_from_slice(b"{\"name\":");
        write_str(out, name);
        required!(out, "index", index);
        out.push(b'}');
    }
}

impl Json for Neigh {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Neigh {
            family,
            old_state,
            new_state,
            old_mac,
            flags,
        } = self;
        out.extend_from_slice(b"{\"family\":");
        write_str(out, family);
        required!(out, "old_state", old_state);
        required!(out, "new_state", new_state);
        optional!(out, "old_mac", old_mac);
        required!(out, "flags", flags);
        out.push(b'}');
    }
}

impl Json for Tcp {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Tcp {
            state,
            direction,
            snd_una,
            retransmits,
            ack_age_ms,
            rto_ms,
            seg_len,
            segs,
            mss,
            pmtu,
            old_state,
            error,
        } = self;
        object(out, |out| {
            optional!(out, "state", state);
            optional!(out, "direction", direction);
            optional!(out, "snd_una", snd_una);
            optional!(out, "retransmits", retransmits);
            optional!(out, "ack_age_ms", ack_age_ms);
            optional!(out, "rto_ms", rto_ms);
            optional!(out, "seg_len", seg_len);
            optional!(out, "segs", segs);
            optional!(out, "mss", mss);
            optional!(out, "pmtu", pmtu);
            optional!(out, "old_state", old_state);
            optional!(out, "error", error);
        });
    }
}

impl Json for Icmp {
    fn write_json(&self, out: &mut Vec<u8>) {
        let Icmp {
            type_,
            code,
            name,
            sender,
        } = self;
        out.extend_from_slice(b"{\"type\":");
        type_.write_json(out);
        required!(out, "code", code);
        required!(out, "name", name);
        optional!(out, "sender", sender);
        out.push(b'}');
    }
}

impl Json for ProbeInfo {
    fn write_json(&self, out: &mut Vec<u8>) {
        let ProbeInfo {
            name,
            tracepoint,
            status,
            error,
        } = self;
        out.extend_from_slice(b"{\"name\":");
        write_str(out, name);
        required!(out, "tracepoint", tracepoint);
        required!(out, "status", status);
        optional!(out, "error", error);
        out.push(b'}');
    }
}

/// `tracer.*`: the only object with free-form parts (hence the `Result`).
fn write_tracer(out: &mut Vec<u8>, t: &TracerFields) -> serde_json::Result<()> {
    let TracerFields {
        netns,
        interface,
        bridge,
        port,
        previous_port,
        port_peer,
        previous_port_peer,
        vlan,
        reason,
        reason_raw,
        location,
        neigh,
        tcp,
        icmp,
        service,
        probe,
        lost,
        lost_total,
        lost_by_probe,
        filtered,
        sink_dropped,
        held_back,
        held_back_by_probe,
        count,
        cpu,
        schema_version,
        alert,
        incident,
        enrichment,
        detect,
    } = t;
    let start = out.len();
    optional!(out, "netns", netns);
    optional!(out, "interface", interface);
    optional!(out, "bridge", bridge);
    optional!(out, "port", port);
    optional!(out, "previous_port", previous_port);
    optional!(out, "port_peer", port_peer);
    optional!(out, "previous_port_peer", previous_port_peer);
    optional!(out, "vlan", vlan);
    optional!(out, "reason", reason);
    optional!(out, "reason_raw", reason_raw);
    optional!(out, "location", location);
    optional!(out, "neigh", neigh);
    optional!(out, "tcp", tcp);
    optional!(out, "icmp", icmp);
    optional!(out, "service", service, serde);
    optional!(out, "probe", probe);
    optional!(out, "lost", lost);
    optional!(out, "lost_total", lost_total);
    optional!(out, "lost_by_probe", lost_by_probe, serde);
    optional!(out, "filtered", filtered, serde);
    optional!(out, "sink_dropped", sink_dropped, serde);
    optional!(out, "held_back", held_back);
    optional!(out, "held_back_by_probe", held_back_by_probe, serde);
    optional!(out, "count", count);
    optional!(out, "cpu", cpu);
    optional!(out, "schema_version", schema_version);
    optional!(out, "alert", alert);
    optional!(out, "incident", incident);
    optional!(out, "enrichment", enrichment, serde);
    optional!(out, "detect", detect, serde);
    // As [`object`], with `?` inside.
    if out.len() == start {
        out.extend_from_slice(b"{}");
    } else {
        out[start] = b'{';
        out.push(b'}');
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scalars.

#[inline]
fn write_uint<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// `"02-42-0A-00-00-03"` (the `Display` of [`Mac`]).
#[inline]
fn write_mac(out: &mut Vec<u8>, m: &Mac) {
    let mut buf = [b'-'; 19];
    buf[0] = b'"';
    for (i, &o) in m.0.iter().enumerate() {
        buf[1 + 3 * i] = HEX_UPPER[(o >> 4) as usize];
        buf[2 + 3 * i] = HEX_UPPER[(o & 0xf) as usize];
    }
    buf[18] = b'"';
    out.extend_from_slice(&buf);
}

/// An address in its `Display` form, quoted (serde's human-readable form).
#[inline]
fn write_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => write_ipv4(out, a),
        IpAddr::V6(a) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail. v6 addresses are rare here;
            // std's Display handles the compression and v4-mapped forms.
            let _ = write!(out, "\"{a}\"");
        }
    }
}

#[inline]
fn write_ipv4(out: &mut Vec<u8>, a: &Ipv4Addr) {
    let mut buf = [0u8; 17];
    buf[0] = b'"';
    let mut n = 1;
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + (o / 10) % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    buf[n] = b'"';
    // The whole buffer (a fixed-size copy, no memcpy call), then the
    // bytes past the address cut off again.
    let len = out.len();
    out.extend_from_slice(&buf);
    out.truncate(len + n + 1);
}

thread_local! {
    /// (Unix second, `"YYYY-MM-DDTHH:MM:SS.`) of the last timestamp written.
    static TS_PREFIX: Cell<(i128, [u8; 21])> = const { Cell::new((i128::MIN, [0; 21])) };
}

/// `@timestamp`, quoted: the same string as [`crate::kernel::clock::serialize_ts`]
/// (and [`crate::kernel::clock::format_ts`]), the date and time of day formatted
/// once per second.
#[inline]
fn write_ts(out: &mut Vec<u8>, ts: i128) {
    // i128 division is a library call: i64 covers the years 1677-2262.
    let (secs, nanos) = match i64::try_from(ts) {
        Ok(t) => (
            t.div_euclid(1_000_000_000) as i128,
            t.rem_euclid(1_000_000_000) as u32,
        ),
        Err(_) => (
            ts.div_euclid(1_000_000_000),
            ts.rem_euclid(1_000_000_000) as u32,
        ),
    };
    let (cached, mut prefix) = TS_PREFIX.get();
    if cached != secs {
        match ts_prefix(secs) {
            Some(p) => {
                prefix = p;
                TS_PREFIX.set((secs, p));
            }
            None => return write_str(out, &crate::kernel::clock::format_ts(ts)),
        }
    }
    let mut buf = [0u8; 32];
    buf[..21].copy_from_slice(&prefix);
    let mut n = nanos;
    for i in (21..30).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    buf[30] = b'Z';
    buf[31] = b'"';
    out.extend_from_slice(&buf);
}

/// `"YYYY-MM-DDTHH:MM:SS.` of a Unix second, or None outside the years
/// 0000-9999 (or chrono's range), which take the slow path.
#[cold]
fn ts_prefix(secs: i128) -> Option<[u8; 21]> {
    let t = DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)?;
    let full = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    if full.len() != 30 {
        return None;
    }
    let mut p = [b'"'; 21];
    p[1..].copy_from_slice(&full.as_bytes()[..20]);
    Some(p)
}

// ---------------------------------------------------------------------------
// Strings, escaped exactly as serde_json does: `"` `\` and the C0 controls,
// with the short forms for \b \t \n \f \r and `\u00xx` (lower-case hex) for
// the others; everything else (including `/`, DEL, non-ASCII) as is.

/// Per byte: 0 (as is), or the letter after the backslash (`u`: \u00xx).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// 0x80 in each byte of `w` (little-endian) that needs escaping (< 0x20,
/// `"`, `\\`), 0 in the others. Exact per byte: no carry crosses bytes, so
/// the lowest set bit is the first such byte.
#[inline(always)]
fn escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = ONES * 0x7f;
    // High bit set where the byte is >= 0x20.
    let printable = ((w & LOW7) + ONES * 0x60) | w;
    // High bit set where the byte is not `c`.
    let not = |c: u8| {
        let x = w ^ (ONES * c as u64);
        ((x & LOW7) + LOW7) | x
    };
    !(printable & not(b'"') & not(b'\\')) & (ONES * 0x80)
}

#[inline(always)]
fn load8(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Index of the first byte at or after `i` that needs escaping, or `b.len()`.
#[inline(always)]
fn next_escape(b: &[u8], mut i: usize) -> usize {
    let len = b.len();
    while i + 8 <= len {
        let m = escape_mask(load8(b, i));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let rest = len - i;
    if rest == 0 {
        return len;
    }
    if len >= 8 {
        // The last eight bytes, the ones before `i` (already seen) shifted out.
        let m = escape_mask(load8(b, len - 8)) >> (8 * (8 - rest));
        return if m != 0 {
            i + (m.trailing_zeros() / 8) as usize
        } else {
            len
        };
    }
    if rest >= 4 {
        // Short string: the first and the last four bytes (they may overlap).
        // One bounds check and a fixed-size copy each (not one per byte).
        let mut lo = [0u8; 4];
        lo.copy_from_slice(&b[i..i + 4]);
        let mut hi = [0u8; 4];
        hi.copy_from_slice(&b[len - 4..]);
        let (lo, hi) = (u32::from_le_bytes(lo), u32::from_le_bytes(hi));
        let m = escape_mask(lo as u64 | (hi as u64) << 32);
        return match m.trailing_zeros() {
            64 => len,
            z @ 0..32 => i + (z / 8) as usize,
            z => len - 4 + ((z - 32) / 8) as usize,
        };
    }
    b[i..]
        .iter()
        .position(|&c| ESCAPE[c as usize] != 0)
        .map_or(len, |p| i + p)
}

/// A JSON string: quotes, and the clean runs of `s` copied as they are.
#[inline]
fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let i = next_escape(b, start);
        if i == b.len() {
            break;
        }
        out.extend_from_slice(&b[start..i]);
        write_escape(out, b[i]);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cold]
fn write_escape(out: &mut Vec<u8>, c: u8) {
    match ESCAPE[c as usize] {
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX_LOWER[(c >> 4) as usize],
            HEX_LOWER[(c & 0xf) as usize],
        ]),
        e => out.extend_from_slice(&[b'\\', e]),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr, Ipv6Addr},
        sync::Arc,
    };

    use serde_json::{json, Map, Value};

    use super::*;
    use crate::event::{
        Action, Compose, ContainerData, ContainerRef, Image, RawJson, ServiceRef, SmolStr, Swarm,
    };

    #[test]
    fn action_names_need_no_escaping() {
        for a in Action::ALL {
            let name = a.as_str();
            assert!(
                !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'),
                "{name}"
            );
        }
    }

    fn reference(e: &EcsEvent) -> Vec<u8> {
        let mut v = serde_json::to_vec(e).unwrap();
        v.push(b'\n');
        v
    }

    fn ours(e: &EcsEvent) -> Vec<u8> {
        let mut v = Vec::new();
        write_line(e, &mut v).unwrap();
        v
    }

    #[track_caller]
    fn check(e: &EcsEvent) {
        let (want, got) = (reference(e), ours(e));
        if want != got {
            panic!(
                "serialisers differ for {e:#?}\nserde: {}\nours:  {}",
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            );
        }
        // Appends, never clears.
        let mut v = b"prefix".to_vec();
        write_line(e, &mut v).unwrap();
        assert_eq!(&v[..6], b"prefix");
        assert_eq!(&v[6..], &want[..]);
    }

    fn container(all: bool) -> ContainerRef {
        ContainerRef::new(ContainerData {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            name: all.then(|| "web.1 \"quoted\" \\ \n é".into()),
            image: all.then(|| Image {
                name: "registry.example/app:1.2.3".into(),
            }),
            runtime: all.then(|| "docker".into()),
            swarm: all.then(|| Swarm {
                service: Some("svc".into()),
                task: Some("svc.1.abc".into()),
            }),
            compose: all.then(|| Compose {
                project: Some("proj".into()),
                service: Some("db".into()),
            }),
        })
    }

    fn map(pairs: &[(&str, u64)]) -> Box<Map<String, Value>> {
        Box::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(*v)))
                .collect(),
        )
    }

    fn peer(all: bool) -> Box<Peer> {
        Box::new(Peer {
            kind: "container",
            interface: "veth\"0".into(),
            container: all.then(|| container(true)),
            network: all.then(|| "backend".into()),
            netns: all.then(|| "ns-1".into()),
        })
    }

    /// Every field of every struct set.
    fn full() -> EcsEvent {
        let mut e = EcsEvent::new(1_795_809_019_123_456_789, Kind::Alert, Action::FdbFlap);
        e.event.outcome = Some("success");
        e.message = Some("MAC 02-42 \"x\" \\ / \u{1}\u{7f} é 中 😀\n".into());
        e.container = Some(container(true));
        e.source = Endpoint {
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 200, 3))),
            port: Some(u16::MAX),
            mac: Some(Mac([0x02, 0x42, 0x0a, 0, 0, 3])),
            container: Some(container(true)),
        };
        e.destination = Endpoint {
            ip: Some("2001:db8::1".parse().unwrap()),
            port: Some(0),
            mac: Some(Mac([0xff; 6])),
            container: Some(container(false)),
        };
        e.network = Network {
            type_: Some("ipv4"),
            transport: Some("tcp".into()),
        };
        e.tracer = TracerFields {
            netns: Some(Netns {
                inode: u32::MAX,
                name: Some(Arc::from("1-abc")),
                network: Some(Arc::from("backend")),
                host: false,
            }),
            interface: Some(Interface {
                name: "eth0".into(),
                index: 7,
                kind: None,
            }),
            bridge: Some("br0".into()),
            port: Some("".into()),
            previous_port: Some("vxlan0".into()),
            port_peer: Some(peer(true)),
            previous_port_peer: Some(peer(false)),
            vlan: Some(4095),
            reason: Some("NO_SOCKET".into()),
            reason_raw: Some(3),
            location: Some("__udp4_lib_rcv+0x9a4".into()),
            neigh: Some(Neigh {
                family: "ipv4",
                old_state: "STALE".into(),
                new_state: "REACHABLE".into(),
                old_mac: Some(Mac([0; 6])),
                flags: u32::MAX,
            }),
            tcp: Some(Tcp {
                state: Some("ESTABLISHED"),
                direction: Some("sent"),
                snd_una: Some(u32::MAX),
                retransmits: Some(u8::MAX),
                ack_age_ms: Some(u32::MAX),
                rto_ms: Some(u32::MAX),
                seg_len: Some(1448),
                segs: Some(u16::MAX),
                mss: Some(1448),
                pmtu: Some(u32::MAX),
                old_state: Some("SYN_SENT"),
                error: Some("EHOSTUNREACH".into()),
            }),
            icmp: Some(Icmp {
                type_: u8::MAX,
                code: 13,
                name: "admin-prohibited",
                sender: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1))),
            }),
            service: Some(Arc::new(ServiceRef {
                name: "web".into(),
                id: "x2\u{1}".into(),
                endpoint_mode: Some("vip".into()),
                network: Some("backend".into()),
                vip: true,
            })),
            probe: Some(Box::new(ProbeInfo {
                name: "skb_drop".into(),
                tracepoint: "skb:kfree_skb".into(),
                status: "failed",
                error: Some("permission \"denied\"\t(EPERM)".into()),
            })),
            lost: Some(u64::MAX),
            lost_total: Some(0),
            lost_by_probe: Some(map(&[("skb_drop", 5), ("fdb\"x", u64::MAX)])),
            filtered: Some(map(&[])),
            sink_dropped: Some(map(&[("stdout", 7), ("tcp://h\"x", u64::MAX)])),
            held_back: Some(u64::MAX),
            held_back_by_probe: Some(map(&[("br_fdb_update", 9)])),
            count: Some(u64::MAX),
            cpu: Some(u32::MAX),
            schema_version: Some(crate::event::SCHEMA_VERSION),
            alert: RawJson::of(&json!({
                "type": "fdb_flap", "count": 3, "ratio": 0.001, "neg": -12,
                "big": u64::MAX, "f": 1e300, "s": "a\"b\\c\n\u{0}é", "null": null,
                "t": true, "list": [1, "x", {"k": []}, 2.5, false],
            })),
            incident: RawJson::of(&json!({"state": "open", "id": 1})),
            enrichment: Some(Box::new(json!("degraded"))),
            detect: Some(Box::new(json!({"tracked_keys": 3, "evictions": u64::MAX}))),
        };
        e
    }

    type Clear = fn(&mut EcsEvent);
    type Set = fn(&mut EcsEvent, &EcsEvent);

    /// One edit per optional part of an event: clearing it (applied to
    /// [`full`]) and setting it alone (applied to a bare event by copying
    /// it from [`full`]).
    const FIELDS: &[(&str, Clear, Set)] = &[
        (
            "outcome",
            |e| e.event.outcome = None,
            |e, f| e.event.outcome = f.event.outcome,
        ),
        (
            "message",
            |e| e.message = None,
            |e, f| e.message = f.message.clone(),
        ),
        (
            "container",
            |e| e.container = None,
            |e, f| e.container = f.container.clone(),
        ),
        (
            "source.ip",
            |e| e.source.ip = None,
            |e, f| e.source.ip = f.source.ip,
        ),
        (
            "source.port",
            |e| e.source.port = None,
            |e, f| e.source.port = f.source.port,
        ),
        (
            "source.mac",
            |e| e.source.mac = None,
            |e, f| e.source.mac = f.source.mac,
        ),
        (
            "source.container",
            |e| e.source.container = None,
            |e, f| e.source.container = f.source.container.clone(),
        ),
        (
            "destination.ip",
            |e| e.destination.ip = None,
            |e, f| e.destination.ip = f.destination.ip,
        ),
        (
            "destination.port",
            |e| e.destination.port = None,
            |e, f| e.destination.port = f.destination.port,
        ),
        (
            "destination.mac",
            |e| e.destination.mac = None,
            |e, f| e.destination.mac = f.destination.mac,
        ),
        (
            "destination.container",
            |e| e.destination.container = None,
            |e, f| e.destination.container = f.destination.container.clone(),
        ),
        (
            "network.type",
            |e| e.network.type_ = None,
            |e, f| e.network.type_ = f.network.type_,
        ),
        (
            "network.transport",
            |e| e.network.transport = None,
            |e, f| e.network.transport = f.network.transport.clone(),
        ),
        (
            "netns",
            |e| e.tracer.netns = None,
            |e, f| e.tracer.netns = f.tracer.netns.clone(),
        ),
        (
            "netns.name",
            |e| e.tracer.netns.as_mut().unwrap().name = None,
            |e, f| {
                e.tracer.netns = Some(Netns {
                    inode: 0,
                    name: f.tracer.netns.as_ref().unwrap().name.clone(),
                    network: None,
                    host: false,
                })
            },
        ),
        (
            "netns.network",
            |e| e.tracer.netns.as_mut().unwrap().network = None,
            |e, f| {
                e.tracer.netns = Some(Netns {
                    inode: 0,
                    name: None,
                    network: f.tracer.netns.as_ref().unwrap().network.clone(),
                    host: false,
                })
            },
        ),
        (
            "interface",
            |e| e.tracer.interface = None,
            |e, f| e.tracer.interface = f.tracer.interface.clone(),
        ),
        (
            "bridge",
            |e| e.tracer.bridge = None,
            |e, f| e.tracer.bridge = f.tracer.bridge.clone(),
        ),
        (
            "port",
            |e| e.tracer.port = None,
            |e, f| e.tracer.port = f.tracer.port.clone(),
        ),
        (
            "previous_port",
            |e| e.tracer.previous_port = None,
            |e, f| e.tracer.previous_port = f.tracer.previous_port.clone(),
        ),
        (
            "port_peer",
            |e| e.tracer.port_peer = None,
            |e, f| e.tracer.port_peer = f.tracer.port_peer.clone(),
        ),
        (
            "port_peer.container",
            |e| e.tracer.port_peer.as_mut().unwrap().container = None,
            |e, _| {
                e.tracer.port_peer = Some(Box::new(Peer {
                    container: Some(container(false)),
                    ..Peer::default()
                }))
            },
        ),
        (
            "port_peer.network",
            |e| e.tracer.port_peer.as_mut().unwrap().network = None,
            |e, _| {
                e.tracer.port_peer = Some(Box::new(Peer {
                    network: Some("n".into()),
                    ..Peer::default()
                }))
            },
        ),
        (
            "port_peer.netns",
            |e| e.tracer.port_peer.as_mut().unwrap().netns = None,
            |e, _| {
                e.tracer.port_peer = Some(Box::new(Peer {
                    netns: Some("n".into()),
                    ..Peer::default()
                }))
            },
        ),
        (
            "previous_port_peer",
            |e| e.tracer.previous_port_peer = None,
            |e, f| e.tracer.previous_port_peer = f.tracer.previous_port_peer.clone(),
        ),
        (
            "vlan",
            |e| e.tracer.vlan = None,
            |e, f| e.tracer.vlan = f.tracer.vlan,
        ),
        (
            "reason",
            |e| e.tracer.reason = None,
            |e, f| e.tracer.reason = f.tracer.reason.clone(),
        ),
        (
            "reason_raw",
            |e| e.tracer.reason_raw = None,
            |e, f| e.tracer.reason_raw = f.tracer.reason_raw,
        ),
        (
            "location",
            |e| e.tracer.location = None,
            |e, f| e.tracer.location = f.tracer.location.clone(),
        ),
        (
            "neigh",
            |e| e.tracer.neigh = None,
            |e, f| e.tracer.neigh = f.tracer.neigh.clone(),
        ),
        (
            "neigh.old_mac",
            |e| e.tracer.neigh.as_mut().unwrap().old_mac = None,
            |e, _| e.tracer.neigh = Some(Neigh::default()),
        ),
        (
            "tcp",
            |e| e.tracer.tcp = None,
            |e, f| e.tracer.tcp = f.tracer.tcp.clone(),
        ),
        (
            "tcp.state",
            |e| e.tracer.tcp.as_mut().unwrap().state = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    state: Some("CLOSE"),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.direction",
            |e| e.tracer.tcp.as_mut().unwrap().direction = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    direction: Some("received"),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.snd_una",
            |e| e.tracer.tcp.as_mut().unwrap().snd_una = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    snd_una: Some(0),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.retransmits",
            |e| e.tracer.tcp.as_mut().unwrap().retransmits = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    retransmits: Some(0),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.ack_age_ms",
            |e| e.tracer.tcp.as_mut().unwrap().ack_age_ms = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    ack_age_ms: Some(0),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.rto_ms",
            |e| e.tracer.tcp.as_mut().unwrap().rto_ms = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    rto_ms: Some(0),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.seg_len",
            |e| e.tracer.tcp.as_mut().unwrap().seg_len = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    seg_len: Some(1),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.segs",
            |e| e.tracer.tcp.as_mut().unwrap().segs = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    segs: Some(1),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.mss",
            |e| e.tracer.tcp.as_mut().unwrap().mss = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    mss: Some(1),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.pmtu",
            |e| e.tracer.tcp.as_mut().unwrap().pmtu = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    pmtu: Some(1),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.old_state",
            |e| e.tracer.tcp.as_mut().unwrap().old_state = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    old_state: Some("SYN_SENT"),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.error",
            |e| e.tracer.tcp.as_mut().unwrap().error = None,
            |e, _| {
                e.tracer.tcp = Some(Tcp {
                    error: Some("ECONNREFUSED".into()),
                    ..Tcp::default()
                })
            },
        ),
        (
            "tcp.all",
            |e| e.tracer.tcp = Some(Tcp::default()),
            |e, _| e.tracer.tcp = Some(Tcp::default()),
        ),
        (
            "icmp",
            |e| e.tracer.icmp = None,
            |e, f| e.tracer.icmp = f.tracer.icmp.clone(),
        ),
        (
            "icmp.sender",
            |e| e.tracer.icmp.as_mut().unwrap().sender = None,
            |e, _| e.tracer.icmp = Some(Icmp::default()),
        ),
        (
            "service",
            |e| e.tracer.service = None,
            |e, _| {
                e.tracer.service = Some(std::sync::Arc::new(ServiceRef {
                    name: "web\"x".into(),
                    id: "svc1".into(),
                    endpoint_mode: Some("vip".into()),
                    network: None,
                    vip: true,
                }))
            },
        ),
        (
            "probe",
            |e| e.tracer.probe = None,
            |e, f| e.tracer.probe = f.tracer.probe.clone(),
        ),
        (
            "probe.error",
            |e| e.tracer.probe.as_mut().unwrap().error = None,
            |e, _| e.tracer.probe = Some(Box::default()),
        ),
        (
            "lost",
            |e| e.tracer.lost = None,
            |e, f| e.tracer.lost = f.tracer.lost,
        ),
        (
            "lost_total",
            |e| e.tracer.lost_total = None,
            |e, f| e.tracer.lost_total = f.tracer.lost_total,
        ),
        (
            "lost_by_probe",
            |e| e.tracer.lost_by_probe = None,
            |e, f| e.tracer.lost_by_probe = f.tracer.lost_by_probe.clone(),
        ),
        (
            "filtered",
            |e| e.tracer.filtered = None,
            |e, f| e.tracer.filtered = f.tracer.filtered.clone(),
        ),
        (
            "sink_dropped",
            |e| e.tracer.sink_dropped = None,
            |e, f| e.tracer.sink_dropped = f.tracer.sink_dropped.clone(),
        ),
        (
            "count",
            |e| e.tracer.count = None,
            |e, f| e.tracer.count = f.tracer.count,
        ),
        (
            "cpu",
            |e| e.tracer.cpu = None,
            |e, f| e.tracer.cpu = f.tracer.cpu,
        ),
        (
            "schema_version",
            |e| e.tracer.schema_version = None,
            |e, f| e.tracer.schema_version = f.tracer.schema_version,
        ),
        (
            "alert",
            |e| e.tracer.alert = None,
            |e, f| e.tracer.alert = f.tracer.alert.clone(),
        ),
        (
            "incident",
            |e| e.tracer.incident = None,
            |e, f| e.tracer.incident = f.tracer.incident.clone(),
        ),
        (
            "enrichment",
            |e| e.tracer.enrichment = None,
            |e, f| e.tracer.enrichment = f.tracer.enrichment.clone(),
        ),
        (
            "detect",
            |e| e.tracer.detect = None,
            |e, f| e.tracer.detect = f.tracer.detect.clone(),
        ),
    ];

    #[test]
    fn every_field_both_ways() {
        let f = full();
        check(&f);
        for kind in [Kind::Event, Kind::Alert, Kind::Metric, Kind::State] {
            check(&EcsEvent::new(0, kind, Action::ProbeStatus));
            let mut e = full();
            e.event.kind = kind;
            check(&e);
        }
        for (name, clear, set) in FIELDS {
            let mut e = full();
            clear(&mut e);
            assert_ne!(reference(&e), reference(&f), "{name} changes nothing");
            check(&e);
            let mut e = EcsEvent::new(1, Kind::Event, Action::ArpReply);
            set(&mut e, &f);
            check(&e);
        }
        // Cumulatively: from everything down to nothing.
        let mut e = full();
        for (_, clear, _) in FIELDS.iter().rev() {
            clear(&mut e);
            check(&e);
        }
    }

    #[test]
    fn strings_escape_like_serde_json() {
        fn str_check(s: &str) {
            let mut got = Vec::new();
            write_str(&mut got, s);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
        let specials: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain([
                'é',
                'ÿ',
                '\u{80}',
                '\u{2028}',
                '中',
                '\u{fffd}',
                '😀',
                '\u{10ffff}',
            ])
            .collect();
        // Every special at every position of strings of 0..=24 bytes (the
        // eight-byte scan, its tail, several escapes in one word).
        for len in 0..=24 {
            str_check(&"a".repeat(len));
            for pos in 0..len {
                for &c in &specials {
                    let mut s: String = "x".repeat(pos);
                    s.push(c);
                    s.push_str(&"y".repeat(len - pos));
                    str_check(&s);
                    s.push(c);
                    s.insert(0, c);
                    str_check(&s);
                }
            }
        }
        str_check(&specials.iter().collect::<String>());
        // Every Unicode scalar value.
        str_check(
            &(0..=0x10ffff)
                .filter_map(char::from_u32)
                .collect::<String>(),
        );
        for s in [
            "",
            "\"",
            "\\",
            "\"\"\"\"\"\"\"\"\"",
            "/",
            "\\/",
            "\u{7f}",
            "\r\n\t\u{8}\u{c}",
        ] {
            str_check(s);
        }
        // In an event, every string field at once.
        for &c in &specials {
            let s = format!("a{c}b{c}{c}");
            let leaked: &'static str = Box::leak(s.clone().into_boxed_str());
            let mut e = full();
            e.event.category = leaked;
            e.event.type_ = leaked;
            e.event.outcome = Some(leaked);
            e.message = Some(s.clone());
            e.network.type_ = Some(leaked);
            e.network.transport = Some(SmolStr::new(&s));
            let t = &mut e.tracer;
            t.netns.as_mut().unwrap().name = Some(Arc::from(s.as_str()));
            t.netns.as_mut().unwrap().network = Some(Arc::from(s.as_str()));
            t.interface.as_mut().unwrap().name = SmolStr::new(&s);
            t.bridge = Some(SmolStr::new(&s));
            t.port = Some(SmolStr::new(&s));
            t.previous_port = Some(SmolStr::new(&s));
            for p in [
                t.port_peer.as_mut().unwrap(),
                t.previous_port_peer.as_mut().unwrap(),
            ] {
                p.kind = leaked;
                p.interface = SmolStr::new(&s);
                p.network = Some(SmolStr::new(&s));
                p.netns = Some(SmolStr::new(&s));
            }
            t.reason = Some(SmolStr::new(&s));
            t.location = Some(SmolStr::new(&s));
            let n = t.neigh.as_mut().unwrap();
            n.family = leaked;
            n.old_state = SmolStr::new(&s);
            n.new_state = SmolStr::new(&s);
            let tcp = t.tcp.as_mut().unwrap();
            tcp.state = Some(leaked);
            tcp.direction = Some(leaked);
            tcp.old_state = Some(leaked);
            tcp.error = Some(SmolStr::new(&s));
            t.icmp.as_mut().unwrap().name = leaked;
            let p = t.probe.as_mut().unwrap();
            p.name = s.clone();
            p.tracepoint = s.clone();
            p.status = leaked;
            p.error = Some(s.clone());
            t.lost_by_probe = Some(Box::new(
                [(s.clone(), Value::from(1))].into_iter().collect(),
            ));
            t.alert = RawJson::of(&json!({ s.clone(): s.clone() }));
            e.container = Some(ContainerRef::new(ContainerData {
                id: s.clone(),
                name: Some(s.clone()),
                ..Default::default()
            }));
            check(&e);
        }
    }

    #[test]
    fn timestamps_match_the_cached_serde_path() {
        const S: i128 = 1_000_000_000;
        let edges = [
            0,
            1,
            -1,
            999_999_999,
            -999_999_999,
            -S,
            -S - 1,
            1_795_809_019_000_000_001,
            1_795_809_019_999_999_999,
            1_795_809_020_000_000_000,
            1_795_809_019_000_000_002,
            // 0000-01-01T00:00:00 and the nanosecond before (year -1).
            -62_167_219_200 * S,
            -62_167_219_200 * S - 1,
            // 9999-12-31T23:59:59.999999999 and year 10000.
            253_402_300_800 * S - 1,
            253_402_300_800 * S,
            // chrono's and i64's limits.
            8_210_298_412_799 * S + 999_999_999,
            8_210_298_412_800 * S,
            -8_334_632_851_200 * S,
            -8_334_632_851_200 * S - 1,
            i64::MAX as i128 * S,
            (i64::MAX as i128 + 1) * S,
            i64::MIN as i128 * S,
            i64::MAX as i128,
            i64::MIN as i128,
            i128::MAX,
            i128::MIN,
            i128::MAX - 1,
            i128::MIN + 1,
        ];
        // Each alone, then every pair in order (cache hits and misses,
        // slow path between two hits of the same second).
        for &a in &edges {
            check(&EcsEvent::new(a, Kind::Event, Action::ArpReply));
            for &b in &edges {
                check(&EcsEvent::new(a, Kind::Event, Action::ArpReply));
                check(&EcsEvent::new(b, Kind::Event, Action::ArpReply));
                check(&EcsEvent::new(
                    a.saturating_add(b % S),
                    Kind::Event,
                    Action::ArpReply,
                ));
            }
        }
        // A day, in steps of 7.3 s, with several events per second.
        let mut ts = 1_795_809_019 * S;
        for i in 0..12_000i128 {
            check(&EcsEvent::new(ts, Kind::Event, Action::ArpReply));
            ts += if i % 3 == 2 {
                7_300_000_000
            } else {
                123_456_789
            };
        }
    }

    #[test]
    fn addresses_match_display() {
        let mut e = EcsEvent::new(0, Kind::Event, Action::ArpReply);
        for o in 0..=255u8 {
            for ip in [
                [o, 0, 0, 0],
                [0, o, 1, 0],
                [9, 99, o, 100],
                [255, 10, 1, o],
                [o; 4],
            ] {
                e.source.ip = Some(IpAddr::V4(Ipv4Addr::from(ip)));
                e.destination.mac = Some(Mac([o, !o, o / 3, 0, 0xff, o ^ 0x5a]));
                check(&e);
            }
        }
        let v6 = [
            "::",
            "::1",
            "1::",
            "::ffff:1.2.3.4",
            "::ffff:0.0.0.0",
            "::1.2.3.4",
            "::ffff:0:1.2.3.4",
            "64:ff9b::10.0.0.1",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1::1",
            "fe80::1:2:3:4",
            "1:0:0:1:0:0:0:1",
            "0:0:1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:0",
            "0:2:3:4:5:6:7:8",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::",
            "ff02::1:ff00:1",
        ];
        for s in v6 {
            let a: Ipv6Addr = s.parse().unwrap();
            e.source.ip = Some(IpAddr::V6(a));
            check(&e);
        }
        for m in [[0; 6], [0xff; 6], [0x02, 0x42, 0x0a, 0, 0, 3]] {
            e.source.mac = Some(Mac(m));
            check(&e);
        }
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn coin(&mut self) -> bool {
            self.next() & 1 == 1
        }
        fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
            self.coin().then(|| f(self))
        }
        /// Edge values often, anything otherwise.
        fn int(&mut self, max: u64) -> u64 {
            match self.below(6) {
                0 => 0,
                1 => max,
                2 => self.below(10),
                3 => max - self.below(10).min(max),
                _ => self.next() & max,
            }
        }
        fn string(&mut self) -> String {
            const PIECES: &[&str] = &[
                "a",
                "Z",
                "0",
                " ",
                "eth0",
                "veth1a2b3c",
                "\"",
                "\\",
                "/",
                "\n",
                "\r",
                "\t",
                "\u{8}",
                "\u{c}",
                "\u{0}",
                "\u{1}",
                "\u{1f}",
                "\u{7f}",
                "é",
                "ÿ",
                "中",
                "😀",
                "\u{2028}",
                "\u{fffd}",
                "long run of plain text ",
            ];
            let n = self.below(12) as usize;
            (0..n)
                .map(|_| {
                    if self.below(3) == 0 {
                        // Any Unicode scalar value.
                        char::from_u32(self.below(0x11_0000) as u32)
                            .unwrap_or('x')
                            .to_string()
                    } else {
                        PIECES[self.below(PIECES.len() as u64) as usize].to_string()
                    }
                })
                .collect()
        }
        fn static_str(&mut self) -> &'static str {
            if self.below(4) == 0 {
                Box::leak(self.string().into_boxed_str())
            } else {
                ["event", "", "ESTABLISHED", "a\"b", "\\", "tab\t"][self.below(6) as usize]
            }
        }
        fn action(&mut self) -> Action {
            Action::ALL[self.below(Action::ALL.len() as u64) as usize]
        }
        fn smol(&mut self) -> SmolStr {
            SmolStr::new(self.string())
        }
        fn mac(&mut self) -> Mac {
            let b = self.next().to_le_bytes();
            Mac([b[0], b[1], b[2], b[3], b[4], b[5]])
        }
        fn ip(&mut self) -> IpAddr {
            if self.coin() {
                IpAddr::V4(Ipv4Addr::from(self.next() as u32))
            } else {
                // Runs of zero groups, so every compression case comes up.
                let mut g = [0u16; 8];
                for x in &mut g {
                    *x = match self.below(3) {
                        0 => 0,
                        1 => 0xffff,
                        _ => self.next() as u16,
                    };
                }
                IpAddr::V6(Ipv6Addr::from(g))
            }
        }
        fn container(&mut self) -> ContainerRef {
            ContainerRef::new(ContainerData {
                id: self.string(),
                name: self.opt(Self::string),
                image: self.opt(|r| Image { name: r.string() }),
                runtime: self.opt(Self::string),
                swarm: self.opt(|r| Swarm {
                    service: r.opt(Self::string),
                    task: r.opt(Self::string),
                }),
                compose: self.opt(|r| Compose {
                    project: r.opt(Self::string),
                    service: r.opt(Self::string),
                }),
            })
        }
        fn endpoint(&mut self) -> Endpoint {
            Endpoint {
                ip: self.opt(Self::ip),
                port: self.opt(|r| r.int(u16::MAX as u64) as u16),
                mac: self.opt(Self::mac),
                container: self.opt(Self::container),
            }
        }
        fn peer(&mut self) -> Box<Peer> {
            Box::new(Peer {
                kind: self.static_str(),
                interface: self.smol(),
                container: self.opt(Self::container),
                network: self.opt(Self::smol),
                netns: self.opt(Self::smol),
            })
        }
        fn value(&mut self, depth: u32) -> Value {
            match self.below(if depth == 0 { 5 } else { 7 }) {
                0 => Value::Null,
                1 => Value::Bool(self.coin()),
                2 => match self.below(3) {
                    0 => Value::from(self.next()),
                    1 => Value::from(self.next() as i64),
                    _ => Value::from(f64::from_bits(self.next())),
                },
                3 | 4 => Value::String(self.string()),
                5 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
                _ => Value::Object(
                    (0..self.below(4))
                        .map(|_| (self.string(), self.value(depth - 1)))
                        .collect(),
                ),
            }
        }
        fn map(&mut self) -> Box<Map<String, Value>> {
            Box::new(
                (0..self.below(4))
                    .map(|_| (self.string(), Value::from(self.int(u64::MAX))))
                    .collect(),
            )
        }
        fn timestamp(&mut self) -> i128 {
            match self.below(4) {
                0 => 1_795_000_000_000_000_000 + self.below(1 << 40) as i128,
                1 => self.next() as i64 as i128,
                2 => {
                    (self.next() as i64 as i128) * 1_000_000_000 + self.below(1_000_000_000) as i128
                }
                _ => ((self.next() as i128) << 64 | self.next() as i128) >> self.below(128),
            }
        }
        fn event(&mut self) -> EcsEvent {
            let kind =
                [Kind::Event, Kind::Alert, Kind::Metric, Kind::State][self.below(4) as usize];
            let mut e = EcsEvent::new(self.timestamp(), kind, self.action());
            e.event.category = self.static_str();
            e.event.type_ = self.static_str();
            e.event.outcome = self.opt(Self::static_str);
            e.message = self.opt(Self::string);
            e.container = self.opt(Self::container);
            e.source = self.endpoint();
            e.destination = self.endpoint();
            e.network = Network {
                type_: self.opt(Self::static_str),
                transport: self.opt(Self::smol),
            };
            e.tracer = TracerFields {
                netns: self.opt(|r| Netns {
                    inode: r.int(u32::MAX as u64) as u32,
                    name: r.opt(|r| Arc::from(r.string())),
                    network: r.opt(|r| Arc::from(r.string())),
                    host: false,
                }),
                interface: self.opt(|r| Interface {
                    name: r.smol(),
                    index: r.int(u32::MAX as u64) as u32,
                    kind: None,
                }),
                bridge: self.opt(Self::smol),
                port: self.opt(Self::smol),
                previous_port: self.opt(Self::smol),
                port_peer: self.opt(Self::peer),
                previous_port_peer: self.opt(Self::peer),
                vlan: self.opt(|r| r.int(u16::MAX as u64) as u16),
                reason: self.opt(Self::smol),
                reason_raw: self.opt(|r| r.int(u32::MAX as u64) as u32),
                location: self.opt(Self::smol),
                neigh: self.opt(|r| Neigh {
                    family: r.static_str(),
                    old_state: r.smol(),
                    new_state: r.smol(),
                    old_mac: r.opt(Self::mac),
                    flags: r.int(u32::MAX as u64) as u32,
                }),
                tcp: self.opt(|r| Tcp {
                    state: r.opt(Self::static_str),
                    direction: r.opt(Self::static_str),
                    snd_una: r.opt(|r| r.int(u32::MAX as u64) as u32),
                    retransmits: r.opt(|r| r.int(u8::MAX as u64) as u8),
                    ack_age_ms: r.opt(|r| r.int(u32::MAX as u64) as u32),
                    rto_ms: r.opt(|r| r.int(u32::MAX as u64) as u32),
                    seg_len: r.opt(|r| r.int(u32::MAX as u64) as u32),
                    segs: r.opt(|r| r.int(u16::MAX as u64) as u16),
                    mss: r.opt(|r| r.int(u32::MAX as u64) as u32),
                    pmtu: r.opt(|r| r.int(u32::MAX as u64) as u32),
                    old_state: r.opt(Self::static_str),
                    error: r.opt(Self::smol),
                }),
                icmp: self.opt(|r| Icmp {
                    type_: r.int(u8::MAX as u64) as u8,
                    code: r.int(u8::MAX as u64) as u8,
                    name: r.static_str(),
                    sender: r.opt(Self::ip),
                }),
                service: self.opt(|r| {
                    std::sync::Arc::new(ServiceRef {
                        name: r.string(),
                        id: r.string(),
                        endpoint_mode: r.opt(Self::string),
                        network: r.opt(Self::string),
                        vip: r.int(1) == 1,
                    })
                }),
                probe: self.opt(|r| {
                    Box::new(ProbeInfo {
                        name: r.string(),
                        tracepoint: r.string(),
                        status: r.static_str(),
                        error: r.opt(Self::string),
                    })
                }),
                lost: self.opt(|r| r.int(u64::MAX)),
                lost_total: self.opt(|r| r.int(u64::MAX)),
                lost_by_probe: self.opt(Self::map),
                filtered: self.opt(Self::map),
                sink_dropped: self.opt(Self::map),
                held_back: self.opt(|r| r.int(u64::MAX)),
                held_back_by_probe: self.opt(Self::map),
                count: self.opt(|r| r.int(u64::MAX)),
                cpu: self.opt(|r| r.int(u32::MAX as u64) as u32),
                schema_version: self.opt(|r| r.int(u32::MAX as u64) as u32),
                alert: self.opt(|r| r.value(3)).and_then(|v| RawJson::of(&v)),
                incident: self.opt(|r| r.value(3)).and_then(|v| RawJson::of(&v)),
                enrichment: self.opt(|r| Box::new(r.value(3))),
                detect: self.opt(|r| Box::new(r.value(3))),
            };
            e
        }
    }

    #[test]
    fn random_events_match_serde() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            check(&rng.event());
        }
    }

    /// The events of a synthetic capture (every record kind, enrichment,
    /// detectors), produced the way `replay` produces them.
    fn synth_events(records: u64, tag: &str) -> (Vec<EcsEvent>, Vec<u8>) {
        use crate::{
            kernel::btf::DropReasons,
            replay::{replay, ReplayOptions},
        };
        let dir = crate::testutil::TempDir::new(&format!("ndjson-{tag}"));
        let path = dir.file("synth.capture");
        let reasons = DropReasons::from_pairs([(2u32, "NOT_SPECIFIED"), (3, "NO_SOCKET")]);
        crate::synth::write(&path, records, 100, 4, &reasons).unwrap();

        let events = crate::synth::replay_events(&path, Some(Default::default())).unwrap();
        let mut replayed = Vec::new();
        replay(
            &ReplayOptions {
                path,
                speed: 0.0,
                filter: Default::default(),
                detect: Some(Default::default()),
                text: None,
                pcapng: None,
            },
            &mut replayed,
        )
        .unwrap();
        (events, replayed)
    }

    #[test]
    fn synthetic_replay_matches_serde_line_by_line() {
        let (events, replayed) = synth_events(20_000, "eq");
        assert!(events.len() > 10_000, "{}", events.len());
        let mut all = Vec::new();
        let mut actions = std::collections::BTreeSet::new();
        // The synthetic capture's header names its host: every replayed
        // line ends with it.
        let host = HostField::new(crate::synth::SYNTH_HOST);
        for e in &events {
            check(e);
            actions.insert(e.event.action.as_str());
            let mut line = reference(e);
            host.append(&mut line);
            all.extend_from_slice(&line);
        }
        let first = replayed.split(|&b| b == b'\n').next().unwrap();
        assert!(
            first.ends_with(br#","host":{"name":"synth-host"}}"#),
            "{}",
            String::from_utf8_lossy(first)
        );
        for a in [
            "fdb_flap",
            "incident",
            "drop_summary",
            "skb_drop",
            "neigh_update",
        ] {
            assert!(actions.contains(a), "{a} missing from {actions:?}");
        }
        // `tracer replay` (its own writer) prints exactly the serde lines.
        assert!(all == replayed, "replay output differs from serde's");
    }
}
