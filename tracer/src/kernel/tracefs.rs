//! tracefs: finding (or mounting) it and parsing event `format` files.
//!
//! tracefs is not always mounted at boot; [`ensure_mounted`] mounts it at
//! `/sys/kernel/tracing` when neither usual place has an `events/` directory.
//! [`Format`] parses `events/<category>/<event>/format`; [`print_symbolic`]
//! extracts the value → name table of a `__print_symbolic(REC->field, ...)`
//! in its print format (drop-reason names when BTF lacks the enum).

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

/// Where tracefs is mounted on current kernels.
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// Where older setups expose it (through debugfs).
pub const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Errors from tracefs.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it at {} failed: {source}: run as root \
         (CAP_SYS_ADMIN) or mount it yourself: mount -t tracefs tracefs {}",
        path.display(),
        path.display()
    )]
    Mount { path: PathBuf, source: nix::Error },
    #[error(
        "tracefs mounted at {} has no events/ directory: the kernel has no tracepoint support \
         (CONFIG_TRACEPOINTS/CONFIG_EVENT_TRACING)",
        path.display()
    )]
    NoEvents { path: PathBuf },
    #[error("tracepoint {category}:{event} not found ({} missing): this kernel does not have it", path.display())]
    EventNotFound {
        category: String,
        event: String,
        path: PathBuf,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot parse tracefs format{}: line {line}: {reason}", in_path(path))]
    Parse {
        path: Option<PathBuf>,
        line: usize,
        reason: String,
    },
    #[error("{event}: print format has no __print_symbolic table for field `{field}`")]
    NoSymbols { event: String, field: String },
}

fn in_path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

fn has_events(root: &Path) -> bool {
    root.join("events").is_dir()
}

/// Returns the tracefs root: `/sys/kernel/tracing` if it has `events/`, else
/// `/sys/kernel/debug/tracing` if that has, else mounts tracefs at
/// `/sys/kernel/tracing` and returns it.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        let root = Path::new(root);
        if has_events(root) {
            return Ok(root.to_owned());
        }
    }
    let path = PathBuf::from(TRACEFS);
    nix::mount::mount(
        Some("tracefs"),
        &path,
        Some("tracefs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .or_else(|e| {
        // Lost a race with another mounter: fine if it is usable now.
        if e == nix::Error::EBUSY && has_events(&path) {
            Ok(())
        } else {
            Err(TracefsError::Mount {
                path: path.clone(),
                source: e,
            })
        }
    })?;
    if has_events(&path) {
        Ok(path)
    } else {
        Err(TracefsError::NoEvents { path })
    }
}

/// One field of an event record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Declaration as printed, e.g. `char name[16]`, `__data_loc char[] name`.
    pub decl: String,
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

impl Field {
    /// `__data_loc` field: the record holds `u32 (len << 16 | offset)`.
    pub fn is_data_loc(&self) -> bool {
        self.decl.trim_start().starts_with("__data_loc")
    }

    /// `Some(n)` for a fixed array field `T name[n]`.
    pub fn array_len(&self) -> Option<u32> {
        if self.is_data_loc() {
            return None;
        }
        let open = self.decl.rfind('[')?;
        let close = self.decl[open..].find(']')? + open;
        self.decl[open + 1..close].trim().parse().ok()
    }
}

/// A parsed `events/<category>/<event>/format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    pub id: u32,
    /// All fields, the `common_*` ones included, in file order.
    pub fields: Vec<Field>,
    pub print_fmt: String,
}

impl Format {
    /// Parses the text of a format file.
    pub fn parse(text: &str) -> Result<Format, TracefsError> {
        let err = |line: usize, reason: String| TracefsError::Parse {
            path: None,
            line,
            reason,
        };
        let mut name = None;
        let mut id = None;
        let mut fields = Vec::new();
        let mut print_fmt = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if let Some(v) = line.strip_prefix("name:") {
                name = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("ID:") {
                id = Some(
                    v.trim()
                        .parse::<u32>()
                        .map_err(|e| err(line_no, format!("bad ID {:?}: {e}", v.trim())))?,
                );
            } else if let Some(v) = line.strip_prefix("print fmt:") {
                print_fmt = Some(v.trim().to_owned());
            } else if line.starts_with("field:") || line.starts_with("field ") {
                fields.push(parse_field(line).map_err(|r| err(line_no, r))?);
            }
        }
        Ok(Format {
            name: name.ok_or_else(|| err(0, "no `name:` line".to_owned()))?,
            id: id.ok_or_else(|| err(0, "no `ID:` line".to_owned()))?,
            fields,
            print_fmt: print_fmt.unwrap_or_default(),
        })
    }

    /// Reads and parses `<root>/events/<category>/<event>/format`.
    pub fn read(root: &Path, category: &str, event: &str) -> Result<Format, TracefsError> {
        let path = root
            .join("events")
            .join(category)
            .join(event)
            .join("format");
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                TracefsError::EventNotFound {
                    category: category.to_owned(),
                    event: event.to_owned(),
                    path: path.clone(),
                }
            } else {
                TracefsError::Read {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        Format::parse(&text).map_err(|e| match e {
            TracefsError::Parse { line, reason, .. } => TracefsError::Parse {
                path: Some(path),
                line,
                reason,
            },
            e => e,
        })
    }

    /// Field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// `field:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;`
/// (`field special:` on old kernels; `signed:` is absent on very old ones).
fn parse_field(line: &str) -> Result<Field, String> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once(':') else {
            return Err(format!("expected key:value, found {part:?}"));
        };
        let num = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|e| format!("bad {key} {v:?}: {e}"))
        };
        match key.trim() {
            "field" | "field special" => decl = Some(value.trim().to_owned()),
            "offset" => offset = Some(num(value)?),
            "size" => size = Some(num(value)?),
            "signed" => signed = num(value)? != 0,
            _ => {}
        }
    }
    let decl = decl.ok_or("no field declaration")?;
    let name = field_name(&decl).ok_or_else(|| format!("no field name in {decl:?}"))?;
    Ok(Field {
        name,
        decl,
        offset: offset.ok_or("no offset")?,
        size: size.ok_or("no size")?,
        signed,
    })
}

/// Last identifier of a declaration, ignoring `[...]` parts:
/// `char name[16]` → `name`, `__data_loc char[] name` → `name`.
fn field_name(decl: &str) -> Option<String> {
    let mut plain = String::with_capacity(decl.len());
    let mut depth = 0u32;
    for c in decl.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.trim_end();
    let start = plain
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map(|(i, _)| i)?;
    let name = &plain[start..];
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then(|| name.to_owned())
}

/// Value → name table of every `__print_symbolic(REC->field, { v, "name" }, ...)`
/// in a print format. Values may be decimal, hex (`0x10`) or negative
/// (stored as two's complement). Malformed entries are skipped.
pub fn print_symbolic(print_fmt: &str, field: &str) -> BTreeMap<u64, String> {
    const CALL: &str = "__print_symbolic";
    let mut out = BTreeMap::new();
    let bytes = print_fmt.as_bytes();
    let mut from = 0;
    while let Some(pos) = print_fmt.get(from..).and_then(|s| s.find(CALL)) {
        let after = from + pos + CALL.len();
        from = after;
        let Some(open) = print_fmt[after..]
            .find(|c: char| !c.is_whitespace())
            .map(|i| after + i)
            .filter(|i| bytes.get(*i) == Some(&b'('))
        else {
            continue;
        };
        let Some(close) = matching_paren(bytes, open) else {
            break;
        };
        let args = split_top(&print_fmt[open + 1..close]);
        let Some((first, entries)) = args.split_first() else {
            continue;
        };
        if !refers_to(first, field) {
            continue;
        }
        for e in entries {
            if let Some((v, n)) = parse_entry(e) {
                out.insert(v, n);
            }
        }
    }
    out
}

/// Index of the `)` matching the `(` at `open`, skipping string and char literals.
fn matching_paren(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => i = skip_literal(b, i)?,
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Given a quote at `start`, index of the closing quote.
fn skip_literal(b: &[u8], start: usize) -> Option<usize> {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Splits at commas outside brackets and literals.
fn split_top(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => match skip_literal(b, i) {
                Some(end) => i = end,
                None => break,
            },
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(s[start..].trim());
    parts
}

/// True when `expr` reads `REC->field` (casts and parentheses allowed).
fn refers_to(expr: &str, field: &str) -> bool {
    let needle = format!("REC->{field}");
    let mut from = 0;
    while let Some(p) = expr.get(from..).and_then(|s| s.find(&needle)) {
        let end = from + p + needle.len();
        let next = expr[end..].chars().next();
        if !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            return true;
        }
        from = end;
    }
    false
}

/// `{ 0x10, "NAME" }` → (16, "NAME").
fn parse_entry(e: &str) -> Option<(u64, String)> {
    let inner = e.trim().strip_prefix('{')?.strip_suffix('}')?;
    let parts = split_top(inner);
    let [value, name] = parts.as_slice() else {
        return None;
    };
    Some((parse_value(value)?, parse_string(name)?))
}

fn parse_value(v: &str) -> Option<u64> {
    let mut v = v.trim();
    while let Some(inner) = v.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
        v = inner.trim();
    }
    let v = v.trim_end_matches(['u', 'U', 'l', 'L']);
    let (neg, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest.trim()),
        None => (false, v),
    };
    let n = if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        v.parse::<u64>().ok()?
    };
    Some(if neg { n.wrapping_neg() } else { n })
}

fn parse_string(s: &str) -> Option<String> {
    let s = s.trim().strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KFREE_SKB: &str = r#"name: kfree_skb
ID: 2310
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:void * skbaddr;	offset:8;	size:8;	signed:0;
	field:void * location;	offset:16;	size:8;	signed:0;
	field:void * rx_sk;	offset:24;	size:8;	signed:0;
	field:unsigned short protocol;	offset:32;	size:2;	signed:0;
	field:enum skb_drop_reason reason;	offset:36;	size:4;	signed:0;

print fmt: "skbaddr=%p rx_sk=%p protocol=%u location=%pS reason: %s", REC->skbaddr, REC->rx_sk, REC->protocol, REC->location, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 4, "SOCKET_CLOSE" }, { 0x10, "HEX, \"QUOTED\" (x)" }, { 128, "MAX" })
"#;

    const BR_FDB_UPDATE: &str = r#"name: br_fdb_update
ID: 1500
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:__data_loc char[] br_dev;	offset:8;	size:4;	signed:0;
	field:__data_loc char[] dev;	offset:12;	size:4;	signed:0;
	field:unsigned char addr[6];	offset:16;	size:6;	signed:0;
	field:u16 vid;	offset:22;	size:2;	signed:0;
	field:unsigned long flags;	offset:24;	size:8;	signed:0;

print fmt: "br_dev %s source %s addr %02x:%02x:%02x:%02x:%02x:%02x vid %u flags 0x%lx", __get_str(br_dev), __get_str(dev), REC->addr[0], REC->addr[1], REC->addr[2], REC->addr[3], REC->addr[4], REC->addr[5], REC->vid, REC->flags
"#;

    #[test]
    fn parses_kfree_skb() {
        let f = match Format::parse(KFREE_SKB) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(f.name, "kfree_skb");
        assert_eq!(f.id, 2310);
        assert_eq!(f.fields.len(), 9);
        let r = f.field("reason").cloned();
        assert_eq!(
            r,
            Some(Field {
                decl: "enum skb_drop_reason reason".into(),
                name: "reason".into(),
                offset: 36,
                size: 4,
                signed: false,
            })
        );
        assert_eq!(f.field("common_pid").map(|f| f.signed), Some(true));
        assert_eq!(f.field("skbaddr").map(|f| f.offset), Some(8));
        assert!(f.print_fmt.starts_with("\"skbaddr=%p"));
        let t = print_symbolic(&f.print_fmt, "reason");
        assert_eq!(t.get(&2).map(String::as_str), Some("NOT_SPECIFIED"));
        assert_eq!(t.get(&3).map(String::as_str), Some("NO_SOCKET"));
        assert_eq!(t.get(&16).map(String::as_str), Some("HEX, \"QUOTED\" (x)"));
        assert_eq!(t.len(), 5);
        assert!(print_symbolic(&f.print_fmt, "reaso").is_empty());
        assert!(print_symbolic(&f.print_fmt, "protocol").is_empty());
    }

    #[test]
    fn parses_arrays_and_data_loc() {
        let f = match Format::parse(BR_FDB_UPDATE) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let names: Vec<_> = f.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "common_type",
                "common_flags",
                "common_preempt_count",
                "common_pid",
                "br_dev",
                "dev",
                "addr",
                "vid",
                "flags"
            ]
        );
        let addr = f.field("addr");
        assert_eq!(addr.and_then(Field::array_len), Some(6));
        assert_eq!(addr.map(|a| (a.offset, a.size)), Some((16, 6)));
        assert!(f.field("br_dev").is_some_and(Field::is_data_loc));
        assert_eq!(f.field("br_dev").and_then(Field::array_len), None);
        assert_eq!(f.field("flags").map(|a| a.size), Some(8));
    }

    #[test]
    fn names_and_values() {
        assert_eq!(field_name("char name[16]").as_deref(), Some("name"));
        assert_eq!(
            field_name("__data_loc char[] name").as_deref(),
            Some("name")
        );
        assert_eq!(
            field_name("__u8 saddr_v6[sizeof(struct in6_addr)]").as_deref(),
            Some("saddr_v6")
        );
        assert_eq!(field_name("void * skbaddr").as_deref(), Some("skbaddr"));
        assert_eq!(field_name("int").as_deref(), Some("int"));
        assert_eq!(field_name("[4]"), None);
        assert_eq!(parse_value("0x10"), Some(16));
        assert_eq!(parse_value("(3)"), Some(3));
        assert_eq!(parse_value("4UL"), Some(4));
        assert_eq!(parse_value("-1"), Some(u64::MAX));
        assert_eq!(parse_value("FOO"), None);
    }

    #[test]
    fn nested_and_cast_symbolic() {
        let fmt = r#""%s %s", __print_symbolic(((int)REC->state), { 1, "ONE" }, { 2, "TWO" }), __print_flags(REC->flags, "|", { 0x1, "F" }), __print_symbolic(REC->state2, { 1, "OTHER" })"#;
        let t = print_symbolic(fmt, "state");
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&2).map(String::as_str), Some("TWO"));
        assert_eq!(
            print_symbolic(fmt, "state2").get(&1).map(String::as_str),
            Some("OTHER")
        );
        assert!(print_symbolic(fmt, "flags").is_empty());
        // Truncated input never panics.
        assert!(print_symbolic("__print_symbolic(REC->x, { 1, \"A", "x").is_empty());
        assert!(print_symbolic("__print_symbolic", "x").is_empty());
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            Format::parse("name: x\nformat:\n"),
            Err(TracefsError::Parse { .. })
        ));
        let bad = "name: x\nID: 1\nformat:\n\tfield:int a;\toffset:zz;\tsize:4;\n";
        let e = Format::parse(bad).err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("line 4")), "{e:?}");
    }

    /// The live kernel's kfree_skb format parses (tracefs mounted if needed).
    #[test]
    fn real_kfree_skb_format() {
        let root = match ensure_mounted() {
            Ok(r) => r,
            Err(e) => {
                println!("skipped: {e}");
                return;
            }
        };
        let f = match Format::read(&root, "skb", "kfree_skb") {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(f.name, "kfree_skb");
        assert!(f.field("reason").is_some());
        let t = print_symbolic(&f.print_fmt, "reason");
        assert!(t.values().any(|n| n == "NO_SOCKET"), "{t:?}");
        assert!(matches!(
            Format::read(&root, "skb", "no_such_event"),
            Err(TracefsError::EventNotFound { .. })
        ));
    }
}
