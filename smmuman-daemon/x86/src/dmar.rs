//! A minimal DMAR walker (Intel VT-d Specification §8.1 "DMA Remapping Reporting Structure",
//! §8.3 DRHD, §8.3.1 device scopes): the remapping units' register bases, their
//! INCLUDE_PCI_ALL flag and device scopes, and a count of the structures not handled here.
//!
//! Kept in one module with one entry point ([`parse`]) so that the integrator can swap it for
//! `vtd::dmar` (which adds RMRR and ATSR handling) without touching its callers.
//!
//! Layout read here (offsets in bytes):
//! * DMAR: the 36-byte ACPI header, Host Address Width u8 at 36 (the width minus one), Flags u8
//!   at 37 (bit 0 INTR_REMAP, bit 1 X2APIC_OPT_OUT, bit 2 DMA_CTRL_PLATFORM_OPT_IN), 10 reserved
//!   bytes, then remapping structures from 48, each starting with Type u16 and Length u16.
//! * DRHD (type 0): Flags u8 at 4 (bit 0 INCLUDE_PCI_ALL), Size u8 at 5 (register set spans
//!   2^Size 4 KiB pages), Segment u16 at 6, Register Base Address u64 at 8, device scopes from 16.
//! * Device scope: Type u8 at 0 (1 PCI endpoint, 2 PCI sub-hierarchy, 3 IOAPIC, 4 HPET,
//!   5 ACPI namespace device), Length u8 at 1, Enumeration ID u8 at 4, Start Bus u8 at 5, then
//!   (device, function) pairs from 6: the path from the start bus down to the device.

use crate::acpi::{Table, HEADER_BYTES};
use crate::phys::{PhysRead, Unreachable};
use core::fmt;
use heapless::Vec;
use iommu_core::Bdf;

/// Most remapping units kept.
pub const MAX_UNITS: usize = 4;
/// Most device scopes kept per unit.
pub const MAX_SCOPES: usize = 16;
/// Offset of the first remapping structure.
pub const FIRST_STRUCTURE: u32 = 48;
/// Remapping structure type of a DRHD.
pub const TYPE_DRHD: u16 = 0;
/// Remapping structure type of an RMRR.
pub const TYPE_RMRR: u16 = 1;
/// DRHD.Flags bit 0: the unit covers every PCI device of its segment not listed by another.
pub const DRHD_INCLUDE_PCI_ALL: u8 = 1 << 0;

/// What a device scope names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScopeKind {
    /// A PCI endpoint (type 1).
    Endpoint,
    /// A PCI bridge and everything below it (type 2).
    Bridge,
    /// An I/O APIC (type 3).
    IoApic,
    /// An HPET (type 4).
    Hpet,
    /// An ACPI namespace device (type 5) or a type this walker does not know.
    Other(u8),
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Endpoint => f.write_str("endpoint"),
            Self::Bridge => f.write_str("bridge"),
            Self::IoApic => f.write_str("ioapic"),
            Self::Hpet => f.write_str("hpet"),
            Self::Other(t) => write!(f, "type{t}"),
        }
    }
}

/// One device scope. Only the first path element is kept: for a device on the start bus (the
/// only kind QEMU lists) that is its address; deeper paths are counted in `path_len`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Scope {
    /// What it names.
    pub kind: ScopeKind,
    /// Start bus + first (device, function).
    pub bdf: Bdf,
    /// Path elements.
    pub path_len: u8,
    /// Enumeration ID (I/O APIC or HPET number).
    pub enumeration_id: u8,
}

/// One remapping unit (DRHD).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Drhd {
    /// Byte offset of the DRHD in the DMAR table.
    pub offset: u32,
    /// Physical address of its register set.
    pub register_base: u64,
    /// Bytes of its register set (2^Size pages).
    pub register_bytes: u64,
    /// PCI segment.
    pub segment: u16,
    /// INCLUDE_PCI_ALL.
    pub include_pci_all: bool,
    /// Its device scopes (the first [`MAX_SCOPES`]).
    pub scopes: Vec<Scope, MAX_SCOPES>,
}

impl Drhd {
    /// Whether this unit's scopes name PCI function `bdf` (as an endpoint on the start bus, or
    /// as a bridge whose hierarchy we cannot see from here: then `false`), or the unit covers
    /// everything on its segment.
    pub fn covers(&self, bdf: Bdf) -> bool {
        self.include_pci_all
            || self
                .scopes
                .iter()
                .any(|s| s.kind == ScopeKind::Endpoint && s.path_len == 1 && s.bdf == bdf)
    }
}

/// The DMAR table, as far as the image uses it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Dmar {
    /// Host Address Width (bits).
    pub host_address_width: u8,
    /// Flags.
    pub flags: u8,
    /// The remapping units.
    pub units: Vec<Drhd, MAX_UNITS>,
    /// RMRR structures seen (not handled: the image refuses to run with any).
    pub rmrrs: u16,
    /// Other structures seen and skipped (ATSR, RHSA, ANDD, SATC, ...).
    pub skipped: u16,
}

/// The DMAR table is corrupt or has more than this walker keeps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DmarError {
    /// A read left the table.
    Unreachable(Unreachable),
    /// A structure's length is shorter than its header or runs past the table.
    StructureLength {
        /// Byte offset of the structure.
        offset: u32,
        /// Its length field.
        length: u16,
    },
    /// A device scope's length is short, odd or runs past its DRHD.
    ScopeLength {
        /// Byte offset of the scope.
        offset: u32,
        /// Its length field.
        length: u8,
    },
    /// More than [`MAX_UNITS`] DRHDs.
    TooManyUnits {
        /// Byte offset of the one that did not fit.
        offset: u32,
    },
    /// No DRHD at all.
    NoUnit,
    /// A DRHD whose register base is 0 or not 4 KiB aligned.
    RegisterBase {
        /// Byte offset of the DRHD.
        offset: u32,
        /// The address.
        base: u64,
    },
}

impl From<Unreachable> for DmarError {
    fn from(e: Unreachable) -> Self {
        Self::Unreachable(e)
    }
}

impl fmt::Display for DmarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(e) => write!(f, "{e}"),
            Self::StructureLength { offset, length } => write!(
                f,
                "remapping structure at offset {offset:#x}: length {length} out of bounds"
            ),
            Self::ScopeLength { offset, length } => write!(
                f,
                "device scope at offset {offset:#x}: length {length} out of bounds"
            ),
            Self::TooManyUnits { offset } => write!(
                f,
                "DRHD at offset {offset:#x}: more than {MAX_UNITS} remapping units"
            ),
            Self::NoUnit => write!(f, "no DRHD (remapping unit)"),
            Self::RegisterBase { offset, base } => write!(
                f,
                "DRHD at offset {offset:#x}: register base {base:#018x} not a 4 KiB page"
            ),
        }
    }
}

/// Walks the checked DMAR `table`.
///
/// # Errors
/// A [`DmarError`] naming the byte offset of what is wrong.
pub fn parse(mem: &impl PhysRead, table: &Table) -> Result<Dmar, DmarError> {
    let mut dmar = Dmar {
        host_address_width: table.u8(mem, HEADER_BYTES)?.saturating_add(1),
        flags: table.u8(mem, HEADER_BYTES + 1)?,
        units: Vec::new(),
        rmrrs: 0,
        skipped: 0,
    };
    let mut off = FIRST_STRUCTURE;
    while off + 4 <= table.length {
        let kind = table.u16(mem, off)?;
        let length = table.u16(mem, off + 2)?;
        let end = off + u32::from(length);
        if length < 4 || end > table.length {
            return Err(DmarError::StructureLength {
                offset: off,
                length,
            });
        }
        match kind {
            TYPE_DRHD => {
                if length < 16 {
                    return Err(DmarError::StructureLength {
                        offset: off,
                        length,
                    });
                }
                let drhd = drhd(mem, table, off, end)?;
                dmar.units
                    .push(drhd)
                    .map_err(|_| DmarError::TooManyUnits { offset: off })?;
            }
            TYPE_RMRR => dmar.rmrrs = dmar.rmrrs.saturating_add(1),
            _ => dmar.skipped = dmar.skipped.saturating_add(1),
        }
        off = end;
    }
    if dmar.units.is_empty() {
        return Err(DmarError::NoUnit);
    }
    Ok(dmar)
}

fn drhd(mem: &impl PhysRead, table: &Table, off: u32, end: u32) -> Result<Drhd, DmarError> {
    let flags = table.u8(mem, off + 4)?;
    let size = table.u8(mem, off + 5)?;
    let base = table.u64(mem, off + 8)?;
    if base == 0 || base & 0xfff != 0 {
        return Err(DmarError::RegisterBase { offset: off, base });
    }
    let mut unit = Drhd {
        offset: off,
        register_base: base,
        // Size is 0 on units older than rev 3 (one page); cap the shift.
        register_bytes: 0x1000u64 << size.min(16),
        segment: table.u16(mem, off + 6)?,
        include_pci_all: flags & DRHD_INCLUDE_PCI_ALL != 0,
        scopes: Vec::new(),
    };
    let mut s = off + 16;
    while s < end {
        if s + 2 > end {
            return Err(DmarError::ScopeLength {
                offset: s,
                length: 0,
            });
        }
        let kind = table.u8(mem, s)?;
        let length = table.u8(mem, s + 1)?;
        let scope_end = s + u32::from(length);
        if length < 8 || length % 2 != 0 || scope_end > end {
            return Err(DmarError::ScopeLength { offset: s, length });
        }
        let bus = table.u8(mem, s + 5)?;
        let dev = table.u8(mem, s + 6)?;
        let func = table.u8(mem, s + 7)?;
        let kind = match kind {
            1 => ScopeKind::Endpoint,
            2 => ScopeKind::Bridge,
            3 => ScopeKind::IoApic,
            4 => ScopeKind::Hpet,
            t => ScopeKind::Other(t),
        };
        let scope = Scope {
            kind,
            bdf: Bdf {
                bus,
                dev: dev & 0x1f,
                func: func & 7,
            },
            path_len: (length - 6) / 2,
            enumeration_id: table.u8(mem, s + 4)?,
        };
        // Scopes past MAX_SCOPES are dropped; `covers` then answers false for them, which is
        // the safe direction (a device not known to be covered is refused).
        let _ = unit.scopes.push(scope);
        s = scope_end;
    }
    Ok(unit)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::acpi::tests::{fix, q35, table};
    use crate::acpi::{table_at, Signature};
    use crate::phys::Image;

    fn scope(kind: u8, id: u8, bus: u8, dev: u8, func: u8) -> [u8; 8] {
        [kind, 8, 0, 0, id, bus, dev, func]
    }

    /// The DMAR body QEMU 10 builds for q35 + intel-iommu + edu (00:03.0, after 00:00.0,
    /// 00:01.0 VGA-less, 00:02.0 ...): one DRHD at 0xfed90000, flags 0, IOAPIC + endpoints.
    pub fn q35_body() -> std::vec::Vec<u8> {
        let mut b = std::vec![47u8, 0x1];
        b.resize(12, 0);
        let mut scopes = std::vec::Vec::new();
        scopes.extend_from_slice(&scope(3, 0, 0xff, 0, 0));
        for (dev, func) in [(0, 0), (1, 0), (3, 0), (0x1f, 0), (0x1f, 2), (0x1f, 3)] {
            scopes.extend_from_slice(&scope(1, 0, 0, dev, func));
        }
        let len = 16 + scopes.len() as u16;
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
        b.extend_from_slice(&scopes);
        b
    }

    fn load(body: &[u8]) -> Result<Dmar, DmarError> {
        let mut m = Image::new(0x1000, 0x1000);
        let t = table(b"DMAR", 1, body);
        m.put(0x1000, &t);
        let t = table_at(&m, 0x1000, Some(Signature(*b"DMAR"))).unwrap();
        parse(&m, &t)
    }

    #[test]
    fn the_q35_unit_and_its_scopes() {
        let d = load(&q35_body()).unwrap();
        assert_eq!(d.host_address_width, 48);
        assert_eq!(d.units.len(), 1);
        let u = &d.units[0];
        assert_eq!((u.register_base, u.register_bytes), (0xfed9_0000, 0x1000));
        assert!(!u.include_pci_all);
        assert_eq!(u.scopes.len(), 7);
        assert!(u.covers(Bdf::new(0, 3, 0).unwrap()));
        assert!(!u.covers(Bdf::new(0, 4, 0).unwrap()));
        assert_eq!(u.scopes[0].kind, ScopeKind::IoApic);
        let _ = q35();
    }

    #[test]
    fn corrupt_structures_are_named_by_offset() {
        let mut short = q35_body();
        short[14] = 2; // DRHD length 2
        short[15] = 0;
        assert_eq!(
            load(&short),
            Err(DmarError::StructureLength {
                offset: 48,
                length: 2
            })
        );
        let mut scope = q35_body();
        scope[12 + 16 + 1] = 3; // first scope length 3
        assert_eq!(
            load(&scope),
            Err(DmarError::ScopeLength {
                offset: 64,
                length: 3
            })
        );
        let mut base = q35_body();
        base[12 + 8] = 0x10;
        assert!(matches!(load(&base), Err(DmarError::RegisterBase { .. })));
        assert_eq!(
            load(&[47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DmarError::NoUnit)
        );
        let mut t = table(b"DMAR", 1, &q35_body());
        fix(&mut t, 9);
    }

    #[test]
    fn any_body_bytes_parse_or_fail_without_panicking() {
        // A cheap deterministic fuzz: xorshift bytes after a valid prefix.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut body = q35_body();
            let n = (x % 40) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % body.len();
                body[at] = (x >> 32) as u8;
            }
            let _ = load(&body);
        }
    }
}
