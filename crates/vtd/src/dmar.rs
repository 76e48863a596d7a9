//! The ACPI DMA Remapping Reporting table (DMAR, VT-d chapter 8 "BIOS Considerations"), read in
//! place: which remapping units the platform has, which devices each translates, which memory
//! some devices must keep reaching, which root ports pass ATS on.
//!
//! [`Dmar::parse`] checks the whole table once (ACPI header and checksum, every structure's and
//! every device scope's length, field values, the INCLUDE_PCI_ALL rules) and answers a typed
//! [`DmarError`] naming the byte offset, the structure and the field of the first fault. A
//! [`Dmar`] that parsed only borrows the bytes; its accessors walk them again without failing and
//! without allocating.
//!
//! ```
//! # fn demo(table: &[u8]) -> Result<(), vtd::dmar::DmarError> {
//! use iommu_core::Bdf;
//! use vtd::dmar::{BridgeBuses, Dmar, PciSegment};
//! let dmar = Dmar::parse(table)?;
//! for (index, unit) in dmar.units() {
//!     log::info!("unit {index}: {} segment {}", unit.register_base, unit.segment);
//! }
//! for region in dmar.reserved_regions() {
//!     log::info!("reserved {}..={}", region.base, region.limit);
//! }
//! let edu = Bdf::new(0, 1, 0).unwrap();
//! let no_bridges = |_: Bdf| -> Option<BridgeBuses> { None };
//! let unit = dmar.unit_for(PciSegment(0), edu, no_bridges);
//! # let _ = unit; Ok(()) }
//! ```
//!
//! Layout: the header and the summary here; `structure` (DRHD, RMRR, ATSR, RHSA, ANDD, SATC),
//! `scope` (device scopes and their paths) and `error` beside it.

mod error;
mod read;
mod scope;
mod structure;

pub use error::{DmarError, DmarErrorKind, LengthRule, PathProblem, RangeProblem, ResolveError};
pub use scope::{DeviceScope, DeviceScopes, PathEntry, ScopeIter, ScopePath, ScopeType};
pub use structure::{
    Andd, Atsr, Drhd, PciSegment, RemappingStructure, Rhsa, Rmrr, Satc, StructureType,
};

use core::fmt;
use iommu_core::Bdf;
use read::{bytes_at, u32_at, u8_at};
use structure::CheckedStructures;

/// The table's signature (ACPI §5.2.6, VT-d §8.1).
pub const SIGNATURE: [u8; 4] = *b"DMAR";

/// Bytes before the first remapping structure: the 36-byte ACPI header (ACPI §5.2.6), Host
/// Address Width, Flags and 10 reserved bytes (VT-d §8.1).
pub const FIXED_LEN: usize = 48;

/// The header's fields as ACPI §5.2.6 and VT-d §8.1 lay them out: (offset, name, size).
const HEADER_FIELDS: [(usize, &str, usize); 12] = [
    (0, "Signature", 4),
    (4, "Length", 4),
    (8, "Revision", 1),
    (9, "Checksum", 1),
    (10, "OEMID", 6),
    (16, "OEM Table ID", 8),
    (24, "OEM Revision", 4),
    (28, "Creator ID", 4),
    (32, "Creator Revision", 4),
    (36, "Host Address Width", 1),
    (37, "Flags", 1),
    (38, "Reserved", 10),
];

/// The DMAR header's Flags (VT-d §8.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct DmarFlags(pub u8);

impl DmarFlags {
    /// Bit 0 INTR_REMAP: the platform supports interrupt remapping.
    pub const fn intr_remap(self) -> bool {
        self.0 & 1 != 0
    }

    /// Bit 1 X2APIC_OPT_OUT: firmware asks the OS not to enable x2APIC mode.
    pub const fn x2apic_opt_out(self) -> bool {
        self.0 & 2 != 0
    }

    /// Bit 2 DMA_CTRL_PLATFORM_OPT_IN: firmware ran with DMA protection and asks the OS to keep
    /// remapping on.
    pub const fn dma_ctrl_platform_opt_in(self) -> bool {
        self.0 & 4 != 0
    }
}

/// Which remapping unit: the position of its DRHD among the table's DRHDs, first is 0.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct UnitIndex(pub usize);

impl fmt::Display for UnitIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A PCI-to-PCI bridge's bus numbers (type 1 config header: Secondary Bus Number at 0x19,
/// Subordinate Bus Number at 0x1a): the buses below it are `secondary..=subordinate`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct BridgeBuses {
    /// The bus right below the bridge.
    pub secondary: u8,
    /// The highest bus below the bridge.
    pub subordinate: u8,
}

/// A DMAR table that parsed: every accessor reads the borrowed bytes again, without failing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Dmar<'a> {
    /// The table, exactly its Length long.
    table: &'a [u8],
}

impl<'a> Dmar<'a> {
    /// Checks `bytes` as a DMAR table: the header (ACPI §5.2.6), the checksum over Length bytes,
    /// Host Address Width, every remapping structure (VT-d §8.2–§8.8) and device scope
    /// (§8.3.1), and the INCLUDE_PCI_ALL rules of §8.3. Bytes after Length are ignored.
    ///
    /// # Errors
    /// The first fault found, as a [`DmarError`] naming its byte offset, structure and field.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DmarError> {
        let table = check_header(bytes)?;
        let dmar = Self { table };
        let mut drhds = 0usize;
        for structure in CheckedStructures::new(table, FIXED_LEN) {
            let structure = structure?;
            if let Some(scopes) = structure.scopes() {
                for scope in scopes.checked() {
                    scope?;
                }
            }
            if let RemappingStructure::Drhd(drhd) = structure {
                dmar.check_include_all_order(drhd, drhds)?;
                drhds += 1;
            }
        }
        Ok(dmar)
    }

    /// §8.3: at most one INCLUDE_PCI_ALL DRHD per segment, and no DRHD of that segment after it.
    /// `earlier` DRHDs precede `drhd`.
    fn check_include_all_order(&self, drhd: Drhd<'a>, earlier: usize) -> Result<(), DmarError> {
        let include_all_before = self
            .units()
            .take(earlier)
            .map(|(_, unit)| unit)
            .find(|unit| unit.segment == drhd.segment && unit.include_pci_all);
        let Some(first) = include_all_before else {
            return Ok(());
        };
        let segment = drhd.segment.0;
        Err(if drhd.include_pci_all {
            DmarError {
                offset: drhd.offset + 4,
                structure: "DRHD",
                field: "Flags",
                kind: DmarErrorKind::DuplicateIncludeAll {
                    segment,
                    first_at: first.offset,
                },
            }
        } else {
            DmarError {
                offset: drhd.offset + 6,
                structure: "DRHD",
                field: "Segment Number",
                kind: DmarErrorKind::IncludeAllNotLast {
                    segment,
                    include_all_at: first.offset,
                },
            }
        })
    }

    /// The table's bytes (exactly its Length).
    pub const fn bytes(&self) -> &'a [u8] {
        self.table
    }

    /// The header's Revision (ACPI §5.2.6).
    pub fn revision(&self) -> u8 {
        u8_at(self.table, 8).unwrap_or(0)
    }

    /// The header's OEMID (ACPI §5.2.6).
    pub fn oem_id(&self) -> [u8; 6] {
        bytes_at(self.table, 10).unwrap_or_default()
    }

    /// The header's OEM Table ID (ACPI §5.2.6).
    pub fn oem_table_id(&self) -> [u8; 8] {
        bytes_at(self.table, 16).unwrap_or_default()
    }

    /// The header's OEM Revision (ACPI §5.2.6).
    pub fn oem_revision(&self) -> u32 {
        u32_at(self.table, 24).unwrap_or(0)
    }

    /// The platform's maximum DMA physical address width in bits: the Host Address Width field
    /// N plus one (VT-d §8.1), between 1 and 64.
    pub fn host_address_width(&self) -> u8 {
        u8_at(self.table, 36).unwrap_or(0).saturating_add(1)
    }

    /// The header's Flags (VT-d §8.1).
    pub fn flags(&self) -> DmarFlags {
        DmarFlags(u8_at(self.table, 37).unwrap_or(0))
    }

    /// Every remapping structure, in table order.
    pub fn structures(&self) -> impl Iterator<Item = RemappingStructure<'a>> + 'a {
        // `parse` walked these already: none fails here.
        CheckedStructures::new(self.table, FIXED_LEN).map_while(Result::ok)
    }

    /// The remapping units (DRHDs) in table order, with their index.
    pub fn units(&self) -> impl Iterator<Item = (UnitIndex, Drhd<'a>)> + 'a {
        self.structures()
            .filter_map(|s| match s {
                RemappingStructure::Drhd(d) => Some(d),
                _ => None,
            })
            .enumerate()
            .map(|(i, d)| (UnitIndex(i), d))
    }

    /// The unit at `index`.
    pub fn unit(&self, index: UnitIndex) -> Option<Drhd<'a>> {
        self.units().nth(index.0).map(|(_, d)| d)
    }

    /// The reserved memory regions (RMRRs, VT-d §8.4) with the devices that keep reaching them:
    /// the manager identity-maps each for its devices and reports it reserved.
    pub fn reserved_regions(&self) -> impl Iterator<Item = Rmrr<'a>> + 'a {
        self.structures().filter_map(|s| match s {
            RemappingStructure::Rmrr(r) => Some(r),
            _ => None,
        })
    }

    /// The root-port ATS reports (ATSRs, VT-d §8.5).
    pub fn atsr(&self) -> impl Iterator<Item = Atsr<'a>> + 'a {
        self.structures().filter_map(|s| match s {
            RemappingStructure::Atsr(a) => Some(a),
            _ => None,
        })
    }

    /// The units' proximity domains (RHSAs, VT-d §8.6).
    pub fn rhsa(&self) -> impl Iterator<Item = Rhsa> + 'a {
        self.structures().filter_map(|s| match s {
            RemappingStructure::Rhsa(r) => Some(r),
            _ => None,
        })
    }

    /// The ACPI namespace device declarations (ANDDs, VT-d §8.7).
    pub fn andd(&self) -> impl Iterator<Item = Andd<'a>> + 'a {
        self.structures().filter_map(|s| match s {
            RemappingStructure::Andd(a) => Some(a),
            _ => None,
        })
    }

    /// The SoC ATC reports (SATCs).
    pub fn satc(&self) -> impl Iterator<Item = Satc<'a>> + 'a {
        self.structures().filter_map(|s| match s {
            RemappingStructure::Satc(a) => Some(a),
            _ => None,
        })
    }

    /// The unit that translates `bdf` on `segment`, by the rule of VT-d §8.3: the DRHD whose
    /// device scope names the device (a PCI endpoint scope that resolves to it, or a PCI
    /// sub-hierarchy scope whose bridge is it or has its bus below), else the segment's
    /// INCLUDE_PCI_ALL DRHD, else none (the device is not translated).
    ///
    /// `bridges` reads a bridge's bus numbers from config space (None: no such bridge), both to
    /// follow scope paths through bridges (§8.3.2) and to see which buses a sub-hierarchy
    /// spans. A scope whose path does not resolve names no present device and is passed over.
    pub fn unit_for(
        &self,
        segment: PciSegment,
        bdf: Bdf,
        bridges: impl Fn(Bdf) -> Option<BridgeBuses>,
    ) -> Option<UnitIndex> {
        let secondary = |b: Bdf| bridges(b).map(|buses| buses.secondary);
        let listed = self.units().find(|(_, unit)| {
            unit.segment == segment
                && !unit.include_pci_all
                && unit.scopes.iter().any(|scope| {
                    let Ok(named) = scope.path.resolve(secondary) else {
                        return false;
                    };
                    match scope.scope_type {
                        ScopeType::PciEndpoint => named == bdf,
                        ScopeType::PciSubHierarchy => {
                            named == bdf
                                || bridges(named).is_some_and(|b| {
                                    b.secondary != 0
                                        && (b.secondary..=b.subordinate).contains(&bdf.bus)
                                })
                        }
                        _ => false,
                    }
                })
        });
        listed
            .or_else(|| {
                self.units()
                    .find(|(_, unit)| unit.segment == segment && unit.include_pci_all)
            })
            .map(|(index, _)| index)
    }
}

/// The header checks of ACPI §5.2.6 and VT-d §8.1; the table cut to its Length.
fn check_header(bytes: &[u8]) -> Result<&[u8], DmarError> {
    let header = |offset, field, kind| DmarError {
        offset,
        structure: "header",
        field,
        kind,
    };
    // The first header field that `bytes` does not hold entirely.
    if let Some(&(offset, field, _)) = HEADER_FIELDS
        .iter()
        .find(|(offset, _, size)| offset + size > bytes.len())
    {
        // Still name a wrong signature before a short table: it says "not a DMAR" sooner.
        if let Some(found) = bytes_at::<4>(bytes, 0) {
            if found != SIGNATURE {
                return Err(header(
                    0,
                    "Signature",
                    DmarErrorKind::BadSignature { found },
                ));
            }
        }
        return Err(header(
            offset,
            field,
            DmarErrorKind::Truncated {
                needed: FIXED_LEN,
                available: bytes.len(),
            },
        ));
    }
    let (Some(found), Some(length), Some(checksum), Some(haw)) = (
        bytes_at::<4>(bytes, 0),
        u32_at(bytes, 4),
        u8_at(bytes, 9),
        u8_at(bytes, 36),
    ) else {
        // Unreachable: every header field was found present above.
        return Err(header(
            0,
            "Signature",
            DmarErrorKind::Truncated {
                needed: FIXED_LEN,
                available: bytes.len(),
            },
        ));
    };
    if found != SIGNATURE {
        return Err(header(
            0,
            "Signature",
            DmarErrorKind::BadSignature { found },
        ));
    }
    // ACPI §5.2.6: Length counts the whole table, header included.
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    if length < FIXED_LEN {
        return Err(header(
            4,
            "Length",
            DmarErrorKind::BadLength {
                length,
                rule: LengthRule::AtLeast(FIXED_LEN),
            },
        ));
    }
    let Some(table) = bytes.get(..length) else {
        return Err(header(
            4,
            "Length",
            DmarErrorKind::Truncated {
                needed: length,
                available: bytes.len(),
            },
        ));
    };
    // ACPI §5.2.6: all Length bytes, Checksum included, add up to zero modulo 256.
    let sum = table.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
    if sum != 0 {
        return Err(header(
            9,
            "Checksum",
            DmarErrorKind::BadChecksum {
                expected: checksum.wrapping_sub(sum),
                found: checksum,
            },
        ));
    }
    // VT-d §8.1: the width is N + 1 bits; beyond 64 it names no address.
    if haw > 63 {
        return Err(header(
            36,
            "Host Address Width",
            DmarErrorKind::HostAddressWidth { field: haw },
        ));
    }
    Ok(table)
}
