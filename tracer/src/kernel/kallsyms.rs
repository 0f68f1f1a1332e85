//! Kernel text symbols from `/proc/kallsyms`, to name drop locations
//! (`kfree_skb`'s `location`) as `tcp_v4_rcv+0x1a2`.
//!
//! A capture carries only the symbols it references ([`Symbols::subset`] →
//! [`SymbolTable`]), so an offline replay prints exactly what the live run
//! printed.

use std::{collections::HashMap, fs, io, path::PathBuf};

use serde::{Deserialize, Serialize};

/// Where the kernel lists its symbols.
pub const KALLSYMS: &str = "/proc/kallsyms";

/// Addresses further than this past the nearest symbol are not attributed
/// to it (kallsyms has no symbol sizes; this keeps an address in data or in
/// an unmapped gap from printing as `last_symbol+0x3fffe000`).
pub const MAX_SYMBOL_OFFSET: u64 = 1 << 20;

/// Module index meaning "vmlinux" (no module).
const NO_MODULE: u16 = u16::MAX;

/// Errors from reading kernel symbols.
#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("kernel symbol addresses are hidden (kptr_restrict): run as root")]
    Hidden,
    #[error("no kernel text symbols found in {source_name}")]
    Empty { source_name: String },
    #[error("too many kernel modules in kallsyms (more than {max})")]
    TooManyModules { max: usize },
}

#[derive(Clone, Copy, Debug)]
struct Sym {
    addr: u64,
    /// Byte range of the name in `Symbols::names`.
    name_start: u32,
    name_len: u32,
    module: u16,
    global: bool,
}

/// Sorted kernel text symbols (types `t T w W`; vmlinux and modules).
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    syms: Vec<Sym>,
    names: String,
    modules: Vec<String>,
}

/// A resolved address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    pub name: &'a str,
    /// Module the symbol belongs to; `None` for vmlinux.
    pub module: Option<&'a str>,
    /// Address of the symbol.
    pub start: u64,
    /// Offset of the looked-up address from `start`.
    pub offset: u64,
}

impl Symbol<'_> {
    fn render(&self) -> String {
        render(self.name, self.offset, self.module)
    }
}

/// `name+0xoff`, with ` [module]` for module symbols.
fn render(name: &str, offset: u64, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("{name}+{offset:#x} [{m}]"),
        None => format!("{name}+{offset:#x}"),
    }
}

fn unknown(addr: u64) -> String {
    format!("{addr:#018x}")
}

impl Symbols {
    /// Reads `/proc/kallsyms`.
    pub fn load() -> Result<Symbols, KallsymsError> {
        let text = fs::read_to_string(KALLSYMS).map_err(|source| KallsymsError::Read {
            path: PathBuf::from(KALLSYMS),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses kallsyms text (`ffffffff81000000 T _stext`,
    /// `ffffffffc0a01000 t br_handle_frame\t[bridge]`). Malformed lines and
    /// non-text symbols are skipped. All-zero addresses mean kptr_restrict
    /// hides them from this user: [`KallsymsError::Hidden`].
    pub fn parse(text: &str) -> Result<Symbols, KallsymsError> {
        let mut syms = Vec::with_capacity(text.len() / 40);
        let mut names = String::with_capacity(text.len() / 2);
        let mut modules: Vec<String> = Vec::new();
        let mut module_idx: HashMap<&str, u16> = HashMap::new();
        let mut last_module: Option<(&str, u16)> = None;
        let mut text_lines = 0usize;

        for line in text.lines() {
            let Some((addr, rest)) = line.split_once(' ') else {
                continue;
            };
            let Some((kind, rest)) = rest.split_once(' ') else {
                continue;
            };
            let global = match kind {
                "T" | "W" => true,
                "t" | "w" => false,
                _ => continue,
            };
            let (name, module) = match rest.split_once('\t') {
                Some((n, m)) => {
                    let m = m.trim();
                    let m = m
                        .strip_prefix('[')
                        .and_then(|m| m.strip_suffix(']'))
                        .unwrap_or(m);
                    (n.trim_end(), (!m.is_empty()).then_some(m))
                }
                None => (rest.trim_end(), None),
            };
            if name.is_empty() {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            text_lines += 1;
            if addr == 0 {
                continue;
            }
            let module = match module {
                None => NO_MODULE,
                Some(m) => match last_module {
                    Some((lm, i)) if lm == m => i,
                    _ => {
                        let i = match module_idx.get(m) {
                            Some(i) => *i,
                            None => {
                                let i = u16::try_from(modules.len())
                                    .ok()
                                    .filter(|i| *i != NO_MODULE)
                                    .ok_or(KallsymsError::TooManyModules {
                                        max: usize::from(NO_MODULE),
                                    })?;
                                modules.push(m.to_owned());
                                module_idx.insert(m, i);
                                i
                            }
                        };
                        last_module = Some((m, i));
                        i
                    }
                },
            };
            let (Ok(name_start), Ok(name_len)) =
                (u32::try_from(names.len()), u32::try_from(name.len()))
            else {
                continue;
            };
            names.push_str(name);
            syms.push(Sym {
                addr,
                name_start,
                name_len,
                module,
                global,
            });
        }
        if syms.is_empty() {
            return Err(if text_lines > 0 {
                KallsymsError::Hidden
            } else {
                KallsymsError::Empty {
                    source_name: KALLSYMS.to_owned(),
                }
            });
        }
        // Aliases at one address: prefer a global symbol, then file order.
        syms.sort_unstable_by_key(|s| (s.addr, !s.global, s.name_start));
        syms.dedup_by_key(|s| s.addr);
        syms.shrink_to_fit();
        Ok(Symbols {
            syms,
            names,
            modules,
        })
    }

    fn name(&self, s: &Sym) -> &str {
        let start = s.name_start as usize;
        self.names
            .get(start..start + s.name_len as usize)
            .unwrap_or_default()
    }

    fn module(&self, s: &Sym) -> Option<&str> {
        if s.module == NO_MODULE {
            None
        } else {
            self.modules.get(usize::from(s.module)).map(String::as_str)
        }
    }

    /// Number of distinct symbol addresses.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// Symbol containing `addr` (nearest at or below it, within
    /// [`MAX_SYMBOL_OFFSET`]).
    pub fn lookup(&self, addr: u64) -> Option<Symbol<'_>> {
        let idx = self.syms.partition_point(|s| s.addr <= addr);
        let s = self.syms.get(idx.checked_sub(1)?)?;
        let offset = addr - s.addr;
        (offset <= MAX_SYMBOL_OFFSET).then(|| Symbol {
            name: self.name(s),
            module: self.module(s),
            start: s.addr,
            offset,
        })
    }

    /// (name, offset) of `addr`.
    pub fn resolve(&self, addr: u64) -> Option<(&str, u64)> {
        self.lookup(addr).map(|s| (s.name, s.offset))
    }

    /// `tcp_v4_rcv+0x1a2` (` [module]` appended for module symbols), or the
    /// address in hex (`0xffffffff81234567`) when unknown.
    pub fn format(&self, addr: u64) -> String {
        match self.lookup(addr) {
            Some(s) => s.render(),
            None => unknown(addr),
        }
    }

    /// Address of the symbol named `name` (first match), for tests and tools.
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.syms
            .iter()
            .find(|s| self.name(s) == name)
            .map(|s| s.addr)
    }

    /// The symbols needed to format `addrs`, for a capture file.
    pub fn subset(&self, addrs: impl IntoIterator<Item = u64>) -> SymbolTable {
        let mut t = SymbolTable::default();
        self.extend_table(&mut t, addrs);
        t
    }

    /// Adds the entries for `addrs` not yet in `table`.
    pub fn extend_table(&self, table: &mut SymbolTable, addrs: impl IntoIterator<Item = u64>) {
        for addr in addrs {
            if table.get(addr).is_some() {
                continue;
            }
            if let Some(s) = self.lookup(addr) {
                table.insert(SymbolEntry {
                    addr,
                    start: s.start,
                    name: s.name.to_owned(),
                    module: s.module.map(str::to_owned),
                });
            }
        }
    }
}

/// One resolved address of a [`SymbolTable`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolEntry {
    /// The address that was looked up.
    pub addr: u64,
    /// Address of the symbol containing it.
    pub start: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// Resolved addresses carried in a capture: [`SymbolTable::format`] gives
/// the same text as [`Symbols::format`] did for those addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<SymbolEntry>", into = "Vec<SymbolEntry>")]
pub struct SymbolTable {
    /// Sorted by `addr`, unique.
    entries: Vec<SymbolEntry>,
}

impl From<Vec<SymbolEntry>> for SymbolTable {
    fn from(mut entries: Vec<SymbolEntry>) -> Self {
        entries.sort_by_key(|e| e.addr);
        entries.dedup_by_key(|e| e.addr);
        Self { entries }
    }
}

impl From<SymbolTable> for Vec<SymbolEntry> {
    fn from(t: SymbolTable) -> Self {
        t.entries
    }
}

impl SymbolTable {
    fn get(&self, addr: u64) -> Option<&SymbolEntry> {
        self.entries
            .binary_search_by_key(&addr, |e| e.addr)
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Inserts (or replaces) the entry for `e.addr`.
    pub fn insert(&mut self, e: SymbolEntry) {
        match self.entries.binary_search_by_key(&e.addr, |x| x.addr) {
            Ok(i) => self.entries[i] = e,
            Err(i) => self.entries.insert(i, e),
        }
    }

    /// Adds `other`'s entries (`other` wins on conflicts).
    pub fn merge(&mut self, other: SymbolTable) {
        for e in other.entries {
            self.insert(e);
        }
    }

    /// (name, offset) of a recorded address.
    pub fn resolve(&self, addr: u64) -> Option<(&str, u64)> {
        self.get(addr)
            .map(|e| (e.name.as_str(), addr.wrapping_sub(e.start)))
    }

    /// Same text as [`Symbols::format`] gave for this address.
    pub fn format(&self, addr: u64) -> String {
        match self.get(addr) {
            Some(e) => render(&e.name, addr.wrapping_sub(e.start), e.module.as_deref()),
            None => unknown(addr),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &SymbolEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const FIXTURE: &str = "\
ffffffff81000000 T _stext
ffffffff81000000 t _text
ffffffff81001000 T tcp_v4_rcv
ffffffff81001000 t tcp_v4_rcv_alias
ffffffff81002000 D some_data
ffffffff81003000 W weak_fn
ffffffff81004000 r rodata_thing
ffffffffc0a00000 t br_handle_frame\t[bridge]
ffffffffc0a00400 T br_fdb_update\t[bridge]
ffffffffc0b00000 t vxlan_rcv\t[vxlan]
garbage line
ffffffffzzzz0000 T bad_addr
";

    fn fixture() -> Symbols {
        match Symbols::parse(FIXTURE) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn resolves() {
        let s = fixture();
        // _stext _text(dup) tcp_v4_rcv alias(dup) weak_fn br x2 vxlan
        assert_eq!(s.len(), 6);
        assert_eq!(s.resolve(0xffffffff81001000), Some(("tcp_v4_rcv", 0)));
        assert_eq!(s.resolve(0xffffffff810011a2), Some(("tcp_v4_rcv", 0x1a2)));
        assert_eq!(s.format(0xffffffff810011a2), "tcp_v4_rcv+0x1a2");
        assert_eq!(s.resolve(0xffffffff81000010), Some(("_stext", 0x10)));
        // data symbols are not text: the address falls in tcp_v4_rcv
        assert_eq!(s.resolve(0xffffffff81002000), Some(("tcp_v4_rcv", 0x1000)));
        assert_eq!(s.resolve(0xffffffff81003004), Some(("weak_fn", 4)));
        assert_eq!(s.format(0xffffffffc0a00410), "br_fdb_update+0x10 [bridge]");
        assert_eq!(
            s.lookup(0xffffffffc0a00410).and_then(|x| x.module),
            Some("bridge")
        );
        assert_eq!(s.format(0xffffffffc0b00001), "vxlan_rcv+0x1 [vxlan]");
        assert_eq!(s.resolve(0x1000), None);
        assert_eq!(s.format(0xffffffff80000000), "0xffffffff80000000");
        // beyond MAX_SYMBOL_OFFSET from the last symbol
        assert_eq!(s.resolve(0xffffffffc0b00000 + MAX_SYMBOL_OFFSET + 1), None);
        assert_eq!(s.address_of("br_fdb_update"), Some(0xffffffffc0a00400));
    }

    #[test]
    fn hidden_and_empty() {
        let hidden = "0000000000000000 T _stext\n0000000000000000 t foo\t[bridge]\n";
        assert!(matches!(Symbols::parse(hidden), Err(KallsymsError::Hidden)));
        assert_eq!(
            Symbols::parse(hidden)
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("kernel symbol addresses are hidden (kptr_restrict): run as root")
        );
        assert!(matches!(
            Symbols::parse("ffffffff81000000 D data\n"),
            Err(KallsymsError::Empty { .. })
        ));
    }

    #[test]
    fn subset_formats_identically() {
        let s = fixture();
        let addrs = [
            0xffffffff810011a2,
            0xffffffffc0a00410,
            0x1234,
            0xffffffff810011a2,
            0xffffffff81000000,
        ];
        let t = s.subset(addrs);
        assert_eq!(t.len(), 3);
        for a in addrs {
            assert_eq!(t.format(a), s.format(a), "{a:#x}");
            assert_eq!(t.resolve(a), s.resolve(a), "{a:#x}");
        }
        let json = serde_json::to_string(&t).unwrap_or_default();
        let back: Option<SymbolTable> = serde_json::from_str(&json).ok();
        assert_eq!(back.as_ref(), Some(&t));
        // Unsorted input is fine.
        let mut v: Vec<SymbolEntry> = t.clone().into();
        v.reverse();
        assert_eq!(SymbolTable::from(v), t);
        let mut m = SymbolTable::default();
        m.merge(t.clone());
        assert_eq!(m, t);
    }

    /// The live /proc/kallsyms: fast to parse, resolves known functions.
    #[test]
    fn real_kallsyms() {
        let t0 = Instant::now();
        let text = match fs::read_to_string(KALLSYMS) {
            Ok(t) => t,
            Err(e) => {
                println!("skipped: {e}");
                return;
            }
        };
        let t1 = Instant::now();
        let s = match Symbols::parse(&text) {
            Ok(s) => s,
            Err(KallsymsError::Hidden) => {
                println!("skipped: kallsyms addresses hidden (not root)");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let (read, parse) = (t1 - t0, t1.elapsed());
        println!("{} symbols: read {read:?}, parse {parse:?}", s.len());
        // Reading is kernel-bound (~50 ms here: seq_file hands out one page
        // per read); parsing is ~15 ms optimized, several times that in debug.
        if !cfg!(debug_assertions) {
            assert!(parse.as_millis() < 100, "parsing kallsyms took {parse:?}");
        }
        assert!(s.len() > 1000);
        let Some(a) = s
            .address_of("kfree_skb_reason")
            .or_else(|| s.address_of("sk_skb_reason_drop"))
        else {
            panic!("no kfree_skb_reason / sk_skb_reason_drop symbol");
        };
        let f = s.format(a + 0x10);
        assert!(f.ends_with("+0x10"), "{f}");
        assert_eq!(s.subset([a + 0x10]).format(a + 0x10), f);
    }
}
