//! The programs' [`KernelConfig`] resolved from BTF, field by field. The
//! field table itself ([`Field`]: name, BTF path, base) is declared once, in
//! `tracer_ebpf`'s `kernel_fields!`.

use tracer_ebpf::{Field, KernelConfig};

use super::{BtfError, KernelBtf};

/// Offsets resolved by [`KernelBtf::resolve_config`].
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Every field BTF resolved; the others are [`tracer_ebpf::UNRESOLVED`].
    pub config: KernelConfig,
    /// Field → why it could not be resolved.
    pub missing: Vec<(Field, String)>,
}

impl Resolved {
    /// True when every BTF field resolved.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

impl KernelBtf {
    /// Offset of `KernelConfig` field `field` (its [`Field::btf_path`]),
    /// relative to the pointer the programs hold (for a field with a
    /// [`Field::rebased_onto`] base: a pointer to that struct).
    pub fn config_field_offset(&self, field: Field) -> Result<u32, BtfError> {
        let path = field.btf_path();
        let off = self.member_offset(path)?;
        match field.rebased_onto() {
            None => Ok(off),
            Some(base) => self.relative_to(path, off, base),
        }
    }

    /// Resolves every BTF field of [`KernelConfig`]. Fields that do not
    /// resolve stay [`tracer_ebpf::UNRESOLVED`] and are listed in `missing`.
    /// `drop_filter_len` is left 0.
    pub fn resolve_config(&self) -> Resolved {
        let mut config = KernelConfig::unresolved();
        let mut missing = Vec::new();
        for &field in Field::ALL {
            match self.config_field_offset(field) {
                Ok(off) => *config.get_mut(field) = off,
                Err(e) => missing.push((field, e.to_string())),
            }
        }
        config.drop_filter_len = 0;
        Resolved { config, missing }
    }
}
