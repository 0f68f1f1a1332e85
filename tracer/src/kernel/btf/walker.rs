//! Type walking: dotted member paths to byte offsets, through anonymous
//! members and typedefs, never through pointers; embedded structs; enums.

use btf_rs::{Btf, Member, Struct, Type};

use super::{malformed, BtfError, KernelBtf, MAX_DEPTH};

impl KernelBtf {
    /// Byte offset of a dotted member path, e.g. `"sk_buff.dev"` or
    /// `"net_device.nd_net.net"`. The first component names a struct; the
    /// others are members, found through anonymous struct/union members and
    /// typedef/const/volatile, never through pointers. A bitfield is an error.
    pub fn member_offset(&self, path: &str) -> Result<u32, BtfError> {
        let mut comps = path.split('.');
        let root = comps.next().unwrap_or_default();
        let members: Vec<&str> = comps.collect();
        if root.is_empty() || members.is_empty() || members.iter().any(|m| m.is_empty()) {
            return Err(BtfError::BadPath {
                path: path.to_owned(),
                reason: "expected struct.member[.member...]",
            });
        }
        let cands = self.structs(root)?;
        Self::unanimous(path, cands, |btf, t| offset_in(btf, t, path, &members))
    }

    /// Offset of the first `struct inner` embedded by value (directly, in an
    /// anonymous member, or in a nested embedded struct) in `struct outer`.
    pub fn embedded_offset(&self, outer: &str, inner: &str) -> Result<u32, BtfError> {
        let cands = self.structs(outer)?;
        let what = format!("struct {inner} in struct {outer}");
        Self::unanimous(&what, cands, |btf, t| {
            let s = match t {
                Type::Struct(s) | Type::Union(s) => s,
                _ => return Err(malformed(&what, "not a struct")),
            };
            match find_embedded(btf, s, inner, 0)? {
                Some(bits) if bits.is_multiple_of(8) => {
                    u32::try_from(bits / 8).map_err(|_| BtfError::TooLarge { path: what.clone() })
                }
                Some(bits) => Err(BtfError::Unaligned {
                    path: what.clone(),
                    bit_offset: bits,
                }),
                None => Err(BtfError::NotEmbedded {
                    outer: outer.to_owned(),
                    inner: inner.to_owned(),
                }),
            }
        })
    }

    /// Rebases `off` (an offset inside the root struct of `path`) onto a
    /// pointer to `struct base`: the root either embeds `base` (subtract
    /// where it sits) or is embedded in it (add where it sits).
    pub(super) fn relative_to(&self, path: &str, off: u32, base: &str) -> Result<u32, BtfError> {
        let root = path.split('.').next().unwrap_or_default();
        if root == base {
            return Ok(off);
        }
        match self.embedded_offset(base, root) {
            Ok(at) => off
                .checked_add(at)
                .ok_or_else(|| BtfError::TooLarge { path: path.into() }),
            Err(BtfError::NotEmbedded { .. }) => {
                let at = self.embedded_offset(root, base)?;
                off.checked_sub(at).ok_or_else(|| BtfError::BeforeBase {
                    path: path.to_owned(),
                    base: base.to_owned(),
                    offset: off,
                    base_offset: at,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Members of enum `name` (ENUM or ENUM64) as (name, value).
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, u64)>, BtfError> {
        let cands = self.candidates(name, |t| match t {
            Type::Enum(e) => !e.members.is_empty(),
            Type::Enum64(e) => !e.members.is_empty(),
            _ => false,
        });
        let Some((btf, t)) = cands.into_iter().next() else {
            return Err(BtfError::TypeNotFound {
                what: format!("enum {name}"),
                modules: self.modules.len(),
            });
        };
        let ctx = || format!("reading enum {name}");
        let mut out = Vec::new();
        match t {
            Type::Enum(e) => {
                for m in &e.members {
                    let n = btf.resolve_name(m).map_err(|e| malformed(ctx(), e))?;
                    // 32-bit values: sign-extend signed enums.
                    let v = if e.is_signed() {
                        m.val() as i32 as i64 as u64
                    } else {
                        u64::from(m.val())
                    };
                    out.push((n, v));
                }
            }
            Type::Enum64(e) => {
                for m in &e.members {
                    let n = btf.resolve_name(m).map_err(|e| malformed(ctx(), e))?;
                    out.push((n, m.val()));
                }
            }
            _ => return Err(malformed(ctx(), "not an enum")),
        }
        Ok(out)
    }
}

pub(super) fn chained<T: btf_rs::BtfType + ?Sized>(
    btf: &Btf,
    t: &T,
    ctx: &str,
) -> Result<Type, BtfError> {
    btf.resolve_chained_type(t)
        .map_err(|e| malformed(format!("resolving a type referenced by {ctx}"), e))
}

/// Follows const/volatile/restrict/type tags (and typedefs when `typedefs`).
pub(super) fn strip(btf: &Btf, mut t: Type, typedefs: bool) -> Result<Type, BtfError> {
    for _ in 0..MAX_DEPTH {
        t = match &t {
            Type::Const(m) | Type::Volatile(m) | Type::Restrict(m) => {
                chained(btf, m, "a modifier")?
            }
            Type::TypeTag(m) => chained(btf, m, "a type tag")?,
            Type::Typedef(m) if typedefs => chained(btf, m, "a typedef")?,
            _ => return Ok(t),
        };
    }
    Err(malformed("following typedefs", "reference chain too long"))
}

pub(super) fn name_of<T: btf_rs::BtfType + ?Sized>(btf: &Btf, t: &T) -> String {
    btf.resolve_name(t).unwrap_or_default()
}

/// C-like rendering of a type for error messages.
pub(super) fn describe(btf: &Btf, t: &Type) -> String {
    describe_depth(btf, t, 0)
}

fn describe_depth(btf: &Btf, t: &Type, depth: usize) -> String {
    if depth > 8 {
        return "...".to_owned();
    }
    let inner = |x: &dyn btf_rs::BtfType| -> String {
        match btf.resolve_chained_type(x) {
            Ok(t) => describe_depth(btf, &t, depth + 1),
            Err(_) => "?".to_owned(),
        }
    };
    let named = |kw: &str, n: String| {
        if n.is_empty() {
            format!("{kw} <anon>")
        } else {
            format!("{kw} {n}")
        }
    };
    match t {
        Type::Void => "void".to_owned(),
        Type::Int(i) => name_of(btf, i),
        Type::Float(f) => name_of(btf, f),
        Type::Ptr(p) => format!("{} *", inner(p)),
        Type::Array(a) => format!("{}[{}]", inner(a), a.len()),
        Type::Struct(s) => named("struct", name_of(btf, s)),
        Type::Union(s) => named("union", name_of(btf, s)),
        Type::Enum(e) => named("enum", name_of(btf, e)),
        Type::Enum64(e) => named("enum", name_of(btf, e)),
        Type::Fwd(f) => named(
            if f.is_union() { "union" } else { "struct" },
            name_of(btf, f),
        ),
        Type::Typedef(td) => name_of(btf, td),
        Type::Const(c) => format!("const {}", inner(c)),
        Type::Volatile(v) => format!("volatile {}", inner(v)),
        Type::Restrict(r) => format!("{} restrict", inner(r)),
        Type::TypeTag(tt) => inner(tt),
        Type::FuncProto(_) => "function".to_owned(),
        other => other.name().to_owned(),
    }
}

/// Bit offset of `path`'s members inside `root`.
fn offset_in(btf: &Btf, root: &Type, path: &str, members: &[&str]) -> Result<u32, BtfError> {
    let mut cur = root.clone();
    let mut container = describe(btf, root);
    let mut prev: &str = path.split('.').next().unwrap_or_default();
    let mut bits: u64 = 0;
    for comp in members {
        let s = match strip(btf, cur.clone(), true)? {
            Type::Struct(s) | Type::Union(s) => s,
            Type::Ptr(_) => {
                return Err(BtfError::ThroughPointer {
                    path: path.to_owned(),
                    member: prev.to_owned(),
                })
            }
            other => {
                return Err(BtfError::NotComposite {
                    path: path.to_owned(),
                    member: prev.to_owned(),
                    found: describe(btf, &other),
                })
            }
        };
        let Some((off, m)) = find_member(btf, &s, comp, 0)? else {
            return Err(BtfError::MemberNotFound {
                path: path.to_owned(),
                member: (*comp).to_owned(),
                container,
            });
        };
        if let Some(width) = m.bitfield_size().filter(|w| *w != 0) {
            return Err(BtfError::Bitfield {
                path: path.to_owned(),
                member: (*comp).to_owned(),
                bits: width,
            });
        }
        bits += off;
        cur = chained(btf, &m, path)?;
        container = describe(btf, &cur);
        prev = comp;
    }
    if !bits.is_multiple_of(8) {
        // kind_flag == 0 structs encode bitfields in the int type; a
        // non-byte-aligned offset is how they show here.
        return Err(BtfError::Unaligned {
            path: path.to_owned(),
            bit_offset: bits,
        });
    }
    u32::try_from(bits / 8).map_err(|_| BtfError::TooLarge {
        path: path.to_owned(),
    })
}

/// Finds member `name` in `s`, looking into anonymous struct/union members.
/// Returns its bit offset from the start of `s`.
fn find_member(
    btf: &Btf,
    s: &Struct,
    name: &str,
    depth: usize,
) -> Result<Option<(u64, Member)>, BtfError> {
    if depth > MAX_DEPTH {
        return Err(malformed(
            format!("looking for member {name}"),
            "anonymous members nested too deep",
        ));
    }
    for m in &s.members {
        let mname = btf
            .resolve_name(m)
            .map_err(|e| malformed(format!("looking for member {name}"), e))?;
        if mname == name {
            return Ok(Some((u64::from(m.bit_offset()), m.clone())));
        }
        if mname.is_empty() {
            if let Type::Struct(inner) | Type::Union(inner) =
                strip(btf, chained(btf, m, name)?, true)?
            {
                if let Some((off, found)) = find_member(btf, &inner, name, depth + 1)? {
                    return Ok(Some((u64::from(m.bit_offset()) + off, found)));
                }
            }
        }
    }
    Ok(None)
}

/// Bit offset of the first `struct inner` embedded by value in `s`.
fn find_embedded(
    btf: &Btf,
    s: &Struct,
    inner: &str,
    depth: usize,
) -> Result<Option<u64>, BtfError> {
    if depth > MAX_DEPTH {
        return Ok(None);
    }
    for m in &s.members {
        if m.bitfield_size().is_some_and(|w| w != 0) {
            continue;
        }
        if let Type::Struct(t) | Type::Union(t) = strip(btf, chained(btf, m, inner)?, true)? {
            if name_of(btf, &t) == inner {
                return Ok(Some(u64::from(m.bit_offset())));
            }
            if let Some(off) = find_embedded(btf, &t, inner, depth + 1)? {
                return Ok(Some(u64::from(m.bit_offset()) + off));
            }
        }
    }
    Ok(None)
}
