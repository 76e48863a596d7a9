//! The remapping structures that follow the DMAR header (VT-d §8.2 "Remapping Structure Types"):
//! each starts with a 2-byte Type and a 2-byte Length that covers the whole structure, its
//! device scopes included.

use super::error::{DmarError, DmarErrorKind, LengthRule, RangeProblem};
use super::read::{u16_at, u32_at, u64_at, u8_at};
use super::scope::DeviceScopes;
use core::fmt;
use iommu_core::{PhysAddr, PAGE_SIZE};

/// A PCI segment (PCI Express "segment group") number, as DRHD, RMRR, ATSR and SATC carry it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct PciSegment(pub u16);

impl fmt::Display for PciSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

/// Type and Length: the first four bytes of every remapping structure (VT-d §8.2).
pub(crate) const STRUCTURE_HEADER_LEN: usize = 4;

/// A remapping structure's Type field (VT-d §8.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum StructureType {
    /// 0: DMA Remapping Hardware Unit Definition (§8.3).
    Drhd,
    /// 1: Reserved Memory Region Reporting (§8.4).
    Rmrr,
    /// 2: Root Port ATS Capability Reporting (§8.5).
    Atsr,
    /// 3: Remapping Hardware Static Affinity (§8.6).
    Rhsa,
    /// 4: ACPI Name-space Device Declaration (§8.7).
    Andd,
    /// 5: SoC Integrated Address Translation Cache reporting (SATC).
    Satc,
    /// Any other type: reserved when the table was written against our spec revision; skipped
    /// by its Length.
    Unknown(u16),
}

impl StructureType {
    /// The type from its encoding.
    pub const fn from_raw(raw: u16) -> Self {
        match raw {
            0 => Self::Drhd,
            1 => Self::Rmrr,
            2 => Self::Atsr,
            3 => Self::Rhsa,
            4 => Self::Andd,
            5 => Self::Satc,
            other => Self::Unknown(other),
        }
    }

    /// The encoding.
    pub const fn raw(self) -> u16 {
        match self {
            Self::Drhd => 0,
            Self::Rmrr => 1,
            Self::Atsr => 2,
            Self::Rhsa => 3,
            Self::Andd => 4,
            Self::Satc => 5,
            Self::Unknown(raw) => raw,
        }
    }

    /// The spec's abbreviation (`"remapping structure"` for an unknown type).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Drhd => "DRHD",
            Self::Rmrr => "RMRR",
            Self::Atsr => "ATSR",
            Self::Rhsa => "RHSA",
            Self::Andd => "ANDD",
            Self::Satc => "SATC",
            Self::Unknown(_) => "remapping structure",
        }
    }

    /// The label of its device scopes in errors.
    const fn scope_name(self) -> &'static str {
        match self {
            Self::Drhd => "DRHD device scope",
            Self::Rmrr => "RMRR device scope",
            Self::Atsr => "ATSR device scope",
            Self::Satc => "SATC device scope",
            _ => "device scope",
        }
    }

    /// The Length rule of the fixed part, before any device scope or name.
    const fn length_rule(self) -> LengthRule {
        match self {
            // §8.3: Flags, Size, Segment Number, Register Base Address: 16 bytes.
            Self::Drhd => LengthRule::AtLeast(16),
            // §8.4: Reserved, Segment Number, Base and Limit Address: 24 bytes.
            Self::Rmrr => LengthRule::AtLeast(24),
            // §8.5: Flags, Reserved, Segment Number: 8 bytes.
            Self::Atsr => LengthRule::AtLeast(8),
            // §8.6: Reserved, Register Base Address, Proximity Domain: exactly 20 bytes.
            Self::Rhsa => LengthRule::Exactly(20),
            // §8.7: 3 reserved bytes and the ACPI Device Number, then the name.
            Self::Andd => LengthRule::AtLeast(8),
            // SATC: Flags, Reserved, Segment Number: 8 bytes.
            Self::Satc => LengthRule::AtLeast(8),
            Self::Unknown(_) => LengthRule::AtLeast(STRUCTURE_HEADER_LEN),
        }
    }
}

impl fmt::Display for StructureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(raw) => write!(f, "remapping structure type {raw}"),
            known => f.write_str(known.name()),
        }
    }
}

/// A DMA Remapping Hardware Unit Definition (VT-d §8.3): one remapping unit, its register
/// frame and the devices it translates.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Drhd<'a> {
    /// Byte offset of the structure from the start of the table.
    pub offset: usize,
    /// Flags, raw (bit 0 INCLUDE_PCI_ALL).
    pub flags: u8,
    /// Flags.INCLUDE_PCI_ALL: the unit translates every PCI device of its segment that no other
    /// DRHD lists (and only I/O APIC, HPET and ACPI-namespace scopes are listed).
    pub include_pci_all: bool,
    /// Size, raw: bits 3:0 are N, the register set is 2^N 4 KiB pages (bits 7:4 reserved).
    pub size: u8,
    /// Segment Number: the PCI segment of the devices it translates.
    pub segment: PciSegment,
    /// Register Base Address: the unit's register frame.
    pub register_base: PhysAddr,
    /// Device Scope entries.
    pub scopes: DeviceScopes<'a>,
}

impl Drhd<'_> {
    /// Bytes of the register set: 2^N 4 KiB pages, N = Size bits 3:0 (VT-d §8.3).
    ///
    /// Tables written before the spec defined the field hold 0 there (it was reserved), which
    /// reads as one 4 KiB page: the size every unit of that time had. So the field needs no
    /// revision check.
    pub const fn register_set_size(&self) -> u64 {
        PAGE_SIZE << (self.size & 0xf)
    }
}

/// A Reserved Memory Region Reporting structure (VT-d §8.4): memory that the listed devices
/// keep reaching by DMA (USB legacy emulation, UMA graphics, ...); it must stay identity-mapped
/// for them and is reserved from everyone else.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rmrr<'a> {
    /// Byte offset of the structure from the start of the table.
    pub offset: usize,
    /// Segment Number of the listed devices.
    pub segment: PciSegment,
    /// Reserved Memory Region Base Address (4 KiB aligned).
    pub base: PhysAddr,
    /// Reserved Memory Region Limit Address: the region's last byte (limit + 1 is 4 KiB
    /// aligned).
    pub limit: PhysAddr,
    /// The devices that use the region.
    pub scopes: DeviceScopes<'a>,
}

impl Rmrr<'_> {
    /// The region's length in 4 KiB pages (at least 1; counted so a region reaching the top of
    /// the 64-bit space does not overflow).
    pub const fn pages(&self) -> u64 {
        (self.limit.0.saturating_sub(self.base.0) >> 12) + 1
    }
}

/// A Root Port ATS Capability Reporting structure (VT-d §8.5): which root ports pass Address
/// Translation Services requests on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Atsr<'a> {
    /// Byte offset of the structure from the start of the table.
    pub offset: usize,
    /// Flags, raw (bit 0 ALL_PORTS).
    pub flags: u8,
    /// Flags.ALL_PORTS: every root port of the segment supports ATS; the scopes are then empty.
    pub all_ports: bool,
    /// Segment Number.
    pub segment: PciSegment,
    /// The ATS-capable root ports (PCI sub-hierarchy scopes) when ALL_PORTS is clear.
    pub scopes: DeviceScopes<'a>,
}

/// A Remapping Hardware Static Affinity structure (VT-d §8.6): the NUMA proximity domain of a
/// unit, named by its register base.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rhsa {
    /// Byte offset of the structure from the start of the table.
    pub offset: usize,
    /// Register Base Address of the DRHD it speaks of.
    pub register_base: PhysAddr,
    /// Proximity Domain (as the SRAT numbers them).
    pub proximity_domain: u32,
}

/// An ACPI Name-space Device Declaration (VT-d §8.7): gives an ACPI device number (used as the
/// Enumeration ID of ACPI-namespace device scopes) to an ACPI object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Andd<'a> {
    /// Byte offset of the structure from the start of the table.
    pub offset: usize,
    /// ACPI Device Number.
    pub acpi_device_number: u8,
    /// ACPI Object Name: the bytes up to its terminating NUL (or the structure's end).
    pub object_name: &'a [u8],
}

/// A SoC Integrated Address Translation Cache reporting structure (SATC, VT-d §8.8, added in
/// spec rev 3.x): SoC-integrated devices that carry an address translation cache.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Satc<'a> {
    /// Byte offset of the structure from the start of the table.
    pub offset: usize,
    /// Flags, raw (bit 0 ATC_REQUIRED).
    pub flags: u8,
    /// Flags.ATC_REQUIRED: the devices need their ATC enabled to work.
    pub atc_required: bool,
    /// Segment Number.
    pub segment: PciSegment,
    /// The devices.
    pub scopes: DeviceScopes<'a>,
}

/// One remapping structure, parsed when we know its type, skipped by length when we do not.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RemappingStructure<'a> {
    /// A remapping unit (§8.3).
    Drhd(Drhd<'a>),
    /// A reserved memory region (§8.4).
    Rmrr(Rmrr<'a>),
    /// ATS-capable root ports (§8.5).
    Atsr(Atsr<'a>),
    /// A unit's proximity domain (§8.6).
    Rhsa(Rhsa),
    /// An ACPI namespace device (§8.7).
    Andd(Andd<'a>),
    /// SoC devices with an ATC.
    Satc(Satc<'a>),
    /// A type this walker does not know: its Type, offset and bytes (header included).
    Unknown {
        /// Type.
        type_raw: u16,
        /// Byte offset of the structure from the start of the table.
        offset: usize,
        /// The structure's bytes, Type and Length included.
        bytes: &'a [u8],
    },
}

impl RemappingStructure<'_> {
    /// Its type.
    pub const fn structure_type(&self) -> StructureType {
        match self {
            Self::Drhd(_) => StructureType::Drhd,
            Self::Rmrr(_) => StructureType::Rmrr,
            Self::Atsr(_) => StructureType::Atsr,
            Self::Rhsa(_) => StructureType::Rhsa,
            Self::Andd(_) => StructureType::Andd,
            Self::Satc(_) => StructureType::Satc,
            Self::Unknown { type_raw, .. } => StructureType::Unknown(*type_raw),
        }
    }

    /// Byte offset of the structure from the start of the table.
    pub const fn offset(&self) -> usize {
        match self {
            Self::Drhd(s) => s.offset,
            Self::Rmrr(s) => s.offset,
            Self::Atsr(s) => s.offset,
            Self::Rhsa(s) => s.offset,
            Self::Andd(s) => s.offset,
            Self::Satc(s) => s.offset,
            Self::Unknown { offset, .. } => *offset,
        }
    }

    /// Its device scopes, for the types that have them.
    pub const fn scopes(&self) -> Option<DeviceScopes<'_>> {
        match self {
            Self::Drhd(s) => Some(s.scopes),
            Self::Rmrr(s) => Some(s.scopes),
            Self::Atsr(s) => Some(s.scopes),
            Self::Satc(s) => Some(s.scopes),
            _ => None,
        }
    }
}

/// The structure walk that checks every length and field as it reads; stops after the first
/// error.
#[derive(Clone, Debug)]
pub(crate) struct CheckedStructures<'a> {
    /// The table, exactly its Length long.
    table: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> CheckedStructures<'a> {
    /// The walk over `table` (exactly its Length long) from byte `first`.
    pub(crate) const fn new(table: &'a [u8], first: usize) -> Self {
        Self {
            table,
            at: first,
            failed: false,
        }
    }

    fn read(&mut self) -> Result<RemappingStructure<'a>, DmarError> {
        let table = self.table;
        let at = self.at;
        let available = table.len().saturating_sub(at);
        let fail = |structure, offset, field, kind| DmarError {
            offset,
            structure,
            field,
            kind,
        };
        // §8.2: Type (2 bytes) and Length (2 bytes) open every structure.
        let (true, Some(raw_type), Some(length)) = (
            available >= STRUCTURE_HEADER_LEN,
            u16_at(table, at),
            u16_at(table, at + 2),
        ) else {
            return Err(fail(
                "remapping structure",
                at,
                "Type",
                DmarErrorKind::Truncated {
                    needed: STRUCTURE_HEADER_LEN,
                    available,
                },
            ));
        };
        let kind = StructureType::from_raw(raw_type);
        let name = kind.name();
        let length = usize::from(length);
        let rule = kind.length_rule();
        let length_ok = match rule {
            LengthRule::AtLeast(n) => length >= n,
            LengthRule::Exactly(n) => length == n,
            LengthRule::HeaderPlusPathEntries => false,
        };
        if !length_ok {
            return Err(fail(
                name,
                at + 2,
                "Length",
                DmarErrorKind::BadLength { length, rule },
            ));
        }
        let end = at + length;
        let Some(bytes) = table.get(at..end) else {
            return Err(fail(
                name,
                at + 2,
                "Length",
                DmarErrorKind::Truncated {
                    needed: length,
                    available,
                },
            ));
        };
        // Fields at fixed offsets within `bytes`; the length rule above guarantees they are there.
        let missing = || {
            fail(
                name,
                at + 2,
                "Length",
                DmarErrorKind::Truncated {
                    needed: length,
                    available,
                },
            )
        };
        let b8 = |o: usize| u8_at(bytes, o).ok_or_else(missing);
        let b16 = |o: usize| u16_at(bytes, o).ok_or_else(missing);
        let b64 = |o: usize| u64_at(bytes, o).ok_or_else(missing);
        let scopes = |first: usize| DeviceScopes::new(table, at + first, end, kind.scope_name());
        let structure = match kind {
            StructureType::Drhd => {
                // §8.3: Flags @4, Size @5, Segment Number @6, Register Base Address @8,
                // device scopes @16.
                let flags = b8(4)?;
                let base = b64(8)?;
                if !base.is_multiple_of(PAGE_SIZE) {
                    return Err(fail(
                        name,
                        at + 8,
                        "Register Base Address",
                        DmarErrorKind::UnalignedRegisterBase { base },
                    ));
                }
                RemappingStructure::Drhd(Drhd {
                    offset: at,
                    flags,
                    include_pci_all: flags & 1 != 0,
                    size: b8(5)?,
                    segment: PciSegment(b16(6)?),
                    register_base: PhysAddr(base),
                    scopes: scopes(16),
                })
            }
            StructureType::Rmrr => {
                // §8.4: Reserved @4, Segment Number @6, Base @8, Limit @16, device scopes @24.
                let base = b64(8)?;
                let limit = b64(16)?;
                let problem = if !base.is_multiple_of(PAGE_SIZE) {
                    Some((
                        8,
                        "Reserved Memory Region Base Address",
                        RangeProblem::BaseUnaligned,
                    ))
                } else if limit % PAGE_SIZE != PAGE_SIZE - 1 {
                    Some((
                        16,
                        "Reserved Memory Region Limit Address",
                        RangeProblem::LimitUnaligned,
                    ))
                } else if limit < base {
                    Some((
                        16,
                        "Reserved Memory Region Limit Address",
                        RangeProblem::LimitBelowBase,
                    ))
                } else {
                    None
                };
                if let Some((field_at, field, problem)) = problem {
                    return Err(fail(
                        name,
                        at + field_at,
                        field,
                        DmarErrorKind::RmrrRange {
                            base,
                            limit,
                            problem,
                        },
                    ));
                }
                RemappingStructure::Rmrr(Rmrr {
                    offset: at,
                    segment: PciSegment(b16(6)?),
                    base: PhysAddr(base),
                    limit: PhysAddr(limit),
                    scopes: scopes(24),
                })
            }
            StructureType::Atsr => {
                // §8.5: Flags @4, Reserved @5, Segment Number @6, device scopes @8.
                let flags = b8(4)?;
                RemappingStructure::Atsr(Atsr {
                    offset: at,
                    flags,
                    all_ports: flags & 1 != 0,
                    segment: PciSegment(b16(6)?),
                    scopes: scopes(8),
                })
            }
            StructureType::Rhsa => {
                // §8.6: Reserved @4, Register Base Address @8, Proximity Domain @16.
                RemappingStructure::Rhsa(Rhsa {
                    offset: at,
                    register_base: PhysAddr(b64(8)?),
                    proximity_domain: u32_at(bytes, 16).ok_or_else(missing)?,
                })
            }
            StructureType::Andd => {
                // §8.7: Reserved @4..7, ACPI Device Number @7, ACPI Object Name @8 (NUL-ended).
                let name_bytes = bytes.get(8..).unwrap_or(&[]);
                let name_len = name_bytes
                    .iter()
                    .position(|&c| c == 0)
                    .unwrap_or(name_bytes.len());
                RemappingStructure::Andd(Andd {
                    offset: at,
                    acpi_device_number: b8(7)?,
                    object_name: name_bytes.get(..name_len).unwrap_or(&[]),
                })
            }
            StructureType::Satc => {
                // SATC: Flags @4, Reserved @5, Segment Number @6, device scopes @8.
                let flags = b8(4)?;
                RemappingStructure::Satc(Satc {
                    offset: at,
                    flags,
                    atc_required: flags & 1 != 0,
                    segment: PciSegment(b16(6)?),
                    scopes: scopes(8),
                })
            }
            StructureType::Unknown(type_raw) => RemappingStructure::Unknown {
                type_raw,
                offset: at,
                bytes,
            },
        };
        self.at = end;
        Ok(structure)
    }
}

impl<'a> Iterator for CheckedStructures<'a> {
    type Item = Result<RemappingStructure<'a>, DmarError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.table.len() {
            return None;
        }
        let item = self.read();
        self.failed = item.is_err();
        Some(item)
    }
}
