//! [`DmarError`]: what is wrong with a DMAR table, naming the byte offset, the structure and the
//! field, and [`ResolveError`]: why a device-scope path names no device on the running bus.

use core::fmt;
use iommu_core::Bdf;

/// A corrupt or inconsistent DMAR table: where, in which structure and field, and what.
///
/// `offset` counts bytes from the first byte of the table (the `D` of the signature) and points
/// at the field that is wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DmarError {
    /// Byte offset of the offending field from the start of the table.
    pub offset: usize,
    /// The structure, as the VT-d spec names it (`"header"`, `"DRHD"`, `"RMRR device scope"`, ...).
    pub structure: &'static str,
    /// The field, as the spec names it (`"Length"`, `"Checksum"`, `"Path"`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub kind: DmarErrorKind,
}

/// The rule a length field broke.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LengthRule {
    /// The structure needs at least this many bytes.
    AtLeast(usize),
    /// The structure has exactly this many bytes.
    Exactly(usize),
    /// A device scope is 6 bytes plus whole 2-byte path entries (VT-d §8.3.1).
    HeaderPlusPathEntries,
}

/// What is wrong with an RMRR's range (VT-d §8.4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RangeProblem {
    /// The base is not 4 KiB aligned.
    BaseUnaligned,
    /// The limit is not the last byte of a 4 KiB page (limit + 1 is not 4 KiB aligned).
    LimitUnaligned,
    /// The limit lies below the base.
    LimitBelowBase,
}

/// What is wrong with a device scope's path (VT-d §8.3.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PathProblem {
    /// The path has no entry: it names no device.
    Empty,
    /// A path entry's device number is above 31.
    Device(u8),
    /// A path entry's function number is above 7.
    Function(u8),
}

/// What is wrong with a DMAR table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DmarErrorKind {
    /// The table (or a structure, or a device scope) needs more bytes than its container holds.
    Truncated {
        /// Bytes it needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The signature is not `DMAR` (ACPI §5.2.6).
    BadSignature {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The table's bytes do not sum to zero (ACPI §5.2.6).
    BadChecksum {
        /// The checksum byte that would make them sum to zero.
        expected: u8,
        /// The checksum byte in the table.
        found: u8,
    },
    /// A length field breaks its structure's rule.
    BadLength {
        /// The length the field states.
        length: usize,
        /// The rule it breaks.
        rule: LengthRule,
    },
    /// Host Address Width + 1 is more than 64 bits (VT-d §8.1).
    HostAddressWidth {
        /// The field's value (N; the width is N + 1).
        field: u8,
    },
    /// A DRHD's register base address is not 4 KiB aligned (VT-d §8.3).
    UnalignedRegisterBase {
        /// The address.
        base: u64,
    },
    /// An RMRR's range is not a non-empty run of whole 4 KiB pages (VT-d §8.4).
    RmrrRange {
        /// Reserved Memory Region Base Address.
        base: u64,
        /// Reserved Memory Region Limit Address (inclusive).
        limit: u64,
        /// What is wrong.
        problem: RangeProblem,
    },
    /// A second DRHD with INCLUDE_PCI_ALL for the same segment (VT-d §8.3: at most one per
    /// segment).
    DuplicateIncludeAll {
        /// The segment.
        segment: u16,
        /// Offset of the first INCLUDE_PCI_ALL DRHD of that segment.
        first_at: usize,
    },
    /// A DRHD follows the INCLUDE_PCI_ALL DRHD of its segment (VT-d §8.3: that one is listed
    /// last for its segment).
    IncludeAllNotLast {
        /// The segment.
        segment: u16,
        /// Offset of the INCLUDE_PCI_ALL DRHD it follows.
        include_all_at: usize,
    },
    /// A device scope's path is malformed.
    ScopePath {
        /// What is wrong with it.
        problem: PathProblem,
    },
}

impl fmt::Display for LengthRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtLeast(n) => write!(f, "at least {n} bytes"),
            Self::Exactly(n) => write!(f, "exactly {n} bytes"),
            Self::HeaderPlusPathEntries => {
                f.write_str("6 bytes plus whole 2-byte (device, function) path entries")
            }
        }
    }
}

impl fmt::Display for RangeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BaseUnaligned => "the base is not 4 KiB aligned",
            Self::LimitUnaligned => "limit + 1 is not 4 KiB aligned",
            Self::LimitBelowBase => "the limit lies below the base",
        })
    }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the path has no (device, function) entry"),
            Self::Device(d) => write!(f, "device number {d} is above 31"),
            Self::Function(n) => write!(f, "function number {n} is above 7"),
        }
    }
}

impl fmt::Display for DmarErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "needs {needed} bytes but only {available} are there")
            }
            Self::BadSignature { found } => {
                write!(f, "signature is {found:02x?}, not \"DMAR\"")
            }
            Self::BadChecksum { expected, found } => write!(
                f,
                "the table's bytes do not sum to zero: checksum is {found:#04x}, should be {expected:#04x}"
            ),
            Self::BadLength { length, rule } => {
                write!(f, "length {length} breaks the rule: {rule}")
            }
            Self::HostAddressWidth { field } => write!(
                f,
                "host address width {field} + 1 is more than 64 bits"
            ),
            Self::UnalignedRegisterBase { base } => {
                write!(f, "register base address {base:#018x} is not 4 KiB aligned")
            }
            Self::RmrrRange {
                base,
                limit,
                problem,
            } => write!(
                f,
                "reserved region {base:#018x}..={limit:#018x} is not whole 4 KiB pages: {problem}"
            ),
            Self::DuplicateIncludeAll { segment, first_at } => write!(
                f,
                "segment {segment:#06x} already has an INCLUDE_PCI_ALL DRHD (at byte {first_at:#x})"
            ),
            Self::IncludeAllNotLast {
                segment,
                include_all_at,
            } => write!(
                f,
                "this DRHD of segment {segment:#06x} follows the segment's INCLUDE_PCI_ALL DRHD \
                 (at byte {include_all_at:#x}), which must be listed last"
            ),
            Self::ScopePath { problem } => write!(f, "{problem}"),
        }
    }
}

impl fmt::Display for DmarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DMAR byte {:#x}: {} {}: {}",
            self.offset, self.structure, self.field, self.kind
        )
    }
}

/// Why a device-scope path names no device on the running bus (VT-d §8.3.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ResolveError {
    /// The path has no entry.
    EmptyPath,
    /// A path entry is out of range (device above 31 or function above 7).
    BadEntry {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
    },
    /// A bridge on the path has no secondary bus (absent, or not a configured bridge).
    NoSecondaryBus {
        /// The bridge.
        bridge: Bdf,
    },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyPath => f.write_str("device scope path has no entry"),
            Self::BadEntry { device, function } => write!(
                f,
                "device scope path entry ({device:#x}, {function:#x}) is out of range"
            ),
            Self::NoSecondaryBus { bridge } => write!(
                f,
                "bridge {bridge} on the device scope path has no secondary bus"
            ),
        }
    }
}
