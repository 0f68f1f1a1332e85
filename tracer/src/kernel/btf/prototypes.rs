//! Raw-tracepoint prototype checks: the `btf_trace_<name>` typedef of a
//! tracepoint against the argument types a program reads (each probe names
//! its own in the registry, `crate::probes`).

use std::fmt;

use btf_rs::{Btf, Type};

use super::{
    walker::{chained, describe, name_of, strip},
    BtfError, KernelBtf,
};

/// Expected type of one raw-tracepoint argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// Pointer (through const/volatile/typedef) to `struct <name>`.
    PtrToStruct(&'static str),
    /// Any pointer.
    Ptr,
    /// Any integer type (char, u8 ... unsigned long, typedefs of them, bool).
    Int,
    /// `enum <name>` (BTF ENUM or ENUM64).
    Enum(&'static str),
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::PtrToStruct(s) => write!(f, "`struct {s} *`"),
            Param::Ptr => f.write_str("a pointer"),
            Param::Int => f.write_str("an integer"),
            Param::Enum(e) => write!(f, "`enum {e}`"),
        }
    }
}

impl KernelBtf {
    /// Checks the `btf_trace_<tracepoint>` prototype: after the leading
    /// `void *__data`, its parameters must start with `expected` (kernels
    /// append arguments at the end, so extra trailing ones are fine).
    pub fn check_prototype(&self, tracepoint: &str, expected: &[Param]) -> Result<(), BtfError> {
        let tname = format!("btf_trace_{tracepoint}");
        let cands = self.candidates(&tname, |t| matches!(t, Type::Typedef(_)));
        let Some((btf, td)) = cands.into_iter().next() else {
            return Err(BtfError::PrototypeNotFound {
                tracepoint: tracepoint.to_owned(),
            });
        };
        let shape_err = |btf: &Btf, t: &Type| BtfError::PrototypeShape {
            tracepoint: tracepoint.to_owned(),
            found: describe(btf, t),
        };
        let ptr = strip(btf, td.clone(), true)?;
        let Type::Ptr(p) = &ptr else {
            return Err(shape_err(btf, &td));
        };
        let proto = strip(btf, chained(btf, p, &tname)?, true)?;
        let Type::FuncProto(proto) = proto else {
            return Err(shape_err(btf, &td));
        };
        // Variadic marker (name 0, type 0) ends the list.
        let params: Vec<_> = proto
            .parameters
            .iter()
            .filter(|p| !p.is_variadic())
            .collect();
        let args = params.get(1..).unwrap_or_default();
        if args.len() < expected.len() {
            return Err(BtfError::PrototypeTooShort {
                tracepoint: tracepoint.to_owned(),
                expected: expected.len(),
                found: args.len(),
            });
        }
        for (position, (param, want)) in args.iter().zip(expected).enumerate() {
            let t = chained(btf, *param, &tname)?;
            if !param_matches(btf, &t, want)? {
                return Err(BtfError::PrototypeMismatch {
                    tracepoint: tracepoint.to_owned(),
                    position,
                    expected: want.to_string(),
                    found: describe(btf, &t),
                });
            }
        }
        Ok(())
    }

    /// The kernel's parameter list of `btf_trace_<tracepoint>` after
    /// `__data`, rendered as C types (for diagnostics).
    pub fn prototype_text(&self, tracepoint: &str) -> Result<Vec<String>, BtfError> {
        let tname = format!("btf_trace_{tracepoint}");
        let cands = self.candidates(&tname, |t| matches!(t, Type::Typedef(_)));
        let Some((btf, td)) = cands.into_iter().next() else {
            return Err(BtfError::PrototypeNotFound {
                tracepoint: tracepoint.to_owned(),
            });
        };
        let Type::Ptr(p) = strip(btf, td.clone(), true)? else {
            return Err(BtfError::PrototypeShape {
                tracepoint: tracepoint.to_owned(),
                found: describe(btf, &td),
            });
        };
        let Type::FuncProto(proto) = strip(btf, chained(btf, &p, &tname)?, true)? else {
            return Err(BtfError::PrototypeShape {
                tracepoint: tracepoint.to_owned(),
                found: describe(btf, &td),
            });
        };
        proto
            .parameters
            .iter()
            .skip(1)
            .map(|p| {
                if p.is_variadic() {
                    Ok("...".to_owned())
                } else {
                    Ok(describe(btf, &chained(btf, p, &tname)?))
                }
            })
            .collect()
    }
}

fn param_matches(btf: &Btf, t: &Type, want: &Param) -> Result<bool, BtfError> {
    let t = strip(btf, t.clone(), true)?;
    Ok(match want {
        Param::Ptr => matches!(t, Type::Ptr(_)),
        Param::Int => matches!(t, Type::Int(_)),
        Param::Enum(name) => match &t {
            Type::Enum(e) => name_of(btf, e) == *name,
            Type::Enum64(e) => name_of(btf, e) == *name,
            _ => false,
        },
        Param::PtrToStruct(name) => {
            let Type::Ptr(p) = &t else { return Ok(false) };
            match strip(btf, chained(btf, p, "a pointer")?, true)? {
                Type::Struct(s) => name_of(btf, &s) == *name,
                Type::Fwd(f) => !f.is_union() && name_of(btf, &f) == *name,
                _ => false,
            }
        }
    })
}
