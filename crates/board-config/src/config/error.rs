//! [`ConfigError`]: what is wrong with a config, and where (file, line, column).

use crate::device::Device;
use crate::topology::CapacityExceeded;
use core::fmt;
use iommu_core::{Bdf, PhysAddr, StreamId};

/// What the parser found where it expected something else.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Found<'a> {
    /// A token.
    Token(&'a str),
    /// Nothing more on the line.
    EndOfLine,
}

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(t) => write!(f, "\"{t}\""),
            Self::EndOfLine => f.write_str("end of line"),
        }
    }
}

/// A config error: where, and what.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConfigError<'a> {
    /// The file name given to the parser.
    pub file: &'a str,
    /// Line, from 1.
    pub line: u32,
    /// Column (in characters), from 1.
    pub column: u32,
    /// What is wrong.
    pub kind: ConfigErrorKind<'a>,
}

impl fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.kind
        )
    }
}

/// The kinds of config error, one per mistake (`docs/config.md` lists them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfigErrorKind<'a> {
    /// The file is not UTF-8 text.
    NotUtf8,
    /// A word of the syntax is wrong or missing.
    Expected {
        /// What would have been right.
        what: &'static str,
        /// What is there.
        found: Found<'a>,
    },
    /// A key this kind of section does not have.
    UnknownKey {
        /// The key.
        key: &'a str,
        /// The section it appeared in ("the top of the file", "an `[smmu]` section", ...).
        section: &'static str,
        /// The keys that section has.
        expected: &'static str,
    },
    /// A key of another kind of section.
    MisplacedKey {
        /// The key.
        key: &'a str,
        /// Where it belongs.
        belongs: &'static str,
    },
    /// A section header of an unknown kind.
    UnknownSection {
        /// The kind given.
        found: &'a str,
    },
    /// A key given twice in one section.
    DuplicateKey {
        /// The key.
        key: &'a str,
        /// Line of its first occurrence.
        first_line: u32,
    },
    /// Not a number.
    BadNumber {
        /// What the number was for ("a StreamID", "an address", ...).
        what: &'static str,
        /// The token.
        found: &'a str,
    },
    /// A bare number of two or more digits, which could be hex or decimal.
    AmbiguousNumber {
        /// The token.
        found: &'a str,
    },
    /// A number too large for what it is for.
    NumberTooLarge {
        /// What the number was for.
        what: &'static str,
        /// The token.
        found: &'a str,
        /// The largest value allowed.
        max: u64,
    },
    /// A number out of the range allowed for what it is for.
    OutOfRange {
        /// What the number was for.
        what: &'static str,
        /// The value.
        value: u64,
        /// The range allowed, in words.
        allowed: &'static str,
    },
    /// Not a `[segment:]bus:device.function` PCI address.
    BadPciAddress {
        /// The token.
        found: &'a str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not a valid unit name.
    BadName {
        /// The token.
        found: &'a str,
    },
    /// An address or length that must be aligned is not.
    Misaligned {
        /// What it is ("window iova", ...).
        what: &'static str,
        /// Its value.
        value: u64,
        /// The alignment required.
        align: u64,
    },
    /// A range runs past the end of the 64-bit address space.
    Wraps {
        /// Which range ("window pa + len", ...).
        what: &'static str,
    },
    /// `first-last` with `last < first`.
    InvertedRange {
        /// First value.
        first: u64,
        /// Last value.
        last: u64,
    },
    /// Two `[smmu]` sections with one name.
    DuplicateUnit {
        /// The name.
        name: &'a str,
        /// Line of the first section.
        first_line: u32,
    },
    /// Two units at one base address.
    DuplicateUnitBase {
        /// The base.
        base: PhysAddr,
        /// Line of the first unit's `base`.
        first_line: u32,
    },
    /// Two units' register frames overlap.
    UnitsOverlap {
        /// The other unit.
        other: &'a str,
        /// Line of its section.
        other_line: u32,
    },
    /// A device described by two sections.
    DuplicateDevice {
        /// The device.
        device: Device,
        /// Line of its first section.
        first_line: u32,
    },
    /// A `unit` that names no `[smmu]` section.
    UnknownUnit {
        /// The name.
        name: &'a str,
    },
    /// A section lacks a key it needs.
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A `[device]` section that states nothing.
    EmptySection,
    /// Two different StreamIDs for one device.
    ConflictingSid {
        /// The first StreamID.
        first: StreamId,
        /// Its line.
        first_line: u32,
        /// The second.
        second: StreamId,
    },
    /// Two devices bound to one StreamID without both saying `shared yes`.
    UndeclaredSharing {
        /// The StreamID.
        sid: StreamId,
        /// The unit.
        unit: &'a str,
        /// The other device.
        other: Device,
        /// Line of the other device's `sid`.
        other_line: u32,
    },
    /// `unclaimed bypass` without `allow-bypass yes` in the same section.
    BypassWithoutOptIn,
    /// Two reserved ranges of one unit overlap.
    ReservedOverlap {
        /// Line of the other range.
        other_line: u32,
    },
    /// Two windows of one device overlap in IOVA space.
    WindowOverlap {
        /// Line of the other window.
        other_line: u32,
    },
    /// Not a valid VM name.
    BadVmName {
        /// The token.
        found: &'a str,
    },
    /// Two `[vm]` sections with one name.
    DuplicateVm {
        /// The name.
        name: &'a str,
        /// Line of the first section.
        first_line: u32,
    },
    /// Two `ram` ranges of one VM overlap.
    RamOverlap {
        /// Start of the second range.
        start: u64,
        /// Line of the first.
        other_line: u32,
    },
    /// A `ram` range overlaps another VM's, and the two do not both say `shared`.
    RamOverlapsVm {
        /// Start of the range.
        start: u64,
        /// The other VM.
        other: &'a str,
        /// Line of the other VM's range.
        other_line: u32,
    },
    /// One VM names the same BAR of the same function twice.
    DuplicatePeer {
        /// The function.
        device: Device,
        /// The BAR.
        bar: u8,
        /// Line of the first `peer`.
        first_line: u32,
    },
    /// `sid`, `shared` or `raw-sid` for a device behind a VT-d unit, which identifies a PCI
    /// function by its requester ID.
    SidForVtd {
        /// The key.
        key: &'static str,
        /// The `[vtd]` unit.
        unit: &'a str,
    },
    /// A `[device mmio ...]` bound to a VT-d unit.
    MmioOnVtd {
        /// The `[vtd]` unit.
        unit: &'a str,
    },
    /// A PCI function bound to a VT-d unit of another segment.
    WrongSegment {
        /// The function.
        device: Device,
        /// The `[vtd]` unit.
        unit: &'a str,
        /// The unit's segment.
        segment: u16,
    },
    /// Two `[vtd]` sections of one segment both say `include-pci-all yes`.
    TwoIncludeAll {
        /// The other unit.
        other: &'a str,
        /// Line of its `include-pci-all`.
        other_line: u32,
    },
    /// A function listed twice on one `reserved` line.
    RegionDeviceTwice {
        /// The function.
        bdf: Bdf,
    },
    /// A list is full.
    TooMany(CapacityExceeded),
}

impl fmt::Display for ConfigErrorKind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotUtf8 => f.write_str("the file is not UTF-8 text"),
            Self::Expected { what, found } => write!(f, "expected {what}, found {found}"),
            Self::UnknownKey {
                key,
                section,
                expected,
            } => write!(f, "unknown key \"{key}\" in {section} (expected {expected})"),
            Self::MisplacedKey { key, belongs } => {
                write!(f, "\"{key}\" is not allowed here: it belongs {belongs}")
            }
            Self::UnknownSection { found } => write!(
                f,
                "unknown section kind \"{found}\" (expected [smmu NAME], [vtd NAME], [device pci|mmio ADDRESS] or [vm NAME])"
            ),
            Self::DuplicateKey { key, first_line } => {
                write!(f, "\"{key}\" given twice in one section (first on line {first_line})")
            }
            Self::BadNumber { what, found } => {
                write!(f, "expected {what} (number), found \"{found}\"")
            }
            Self::AmbiguousNumber { found } => write!(
                f,
                "\"{found}\" could be hex or decimal: write 0x{found} or 0d{found}"
            ),
            Self::NumberTooLarge { what, found, max } => {
                write!(f, "\"{found}\" is too large for {what} (at most {max:#x})")
            }
            Self::OutOfRange {
                what,
                value,
                allowed,
            } => write!(f, "{what} {value:#x} is out of range ({allowed})"),
            Self::BadPciAddress { found, reason } => {
                write!(f, "bad PCI address \"{found}\": {reason}")
            }
            Self::BadName { found } => write!(
                f,
                "bad unit name \"{found}\" (a letter, then letters, digits, '-' or '_'; at most {} characters)",
                crate::unit::UNIT_NAME_LEN
            ),
            Self::Misaligned { what, value, align } => {
                write!(f, "{what} {value:#x} is not a multiple of {align:#x}")
            }
            Self::Wraps { what } => write!(f, "{what} runs past the end of the address space"),
            Self::InvertedRange { first, last } => {
                write!(f, "range {first:#x}-{last:#x} ends before it starts")
            }
            Self::DuplicateUnit { name, first_line } => {
                write!(f, "unit \"{name}\" described twice (first on line {first_line})")
            }
            Self::DuplicateUnitBase { base, first_line } => write!(
                f,
                "another unit already has base {base} (line {first_line})"
            ),
            Self::UnitsOverlap { other, other_line } => write!(
                f,
                "register frame overlaps unit \"{other}\" (line {other_line})"
            ),
            Self::DuplicateDevice { device, first_line } => {
                write!(f, "{device} described twice (first on line {first_line})")
            }
            Self::UnknownUnit { name } => {
                write!(f, "no [smmu {name}] or [vtd {name}] section in this file")
            }
            Self::MissingKey { key } => write!(f, "this section needs \"{key}\""),
            Self::EmptySection => f.write_str(
                "this [device] section states nothing (expected \"unit\" and \"sid\", or \"window\")",
            ),
            Self::ConflictingSid {
                first,
                first_line,
                second,
            } => write!(
                f,
                "StreamID {second} contradicts StreamID {first} given on line {first_line}"
            ),
            Self::UndeclaredSharing {
                sid,
                unit,
                other,
                other_line,
            } => write!(
                f,
                "StreamID {sid} of {unit} is also given to {other} (line {other_line}); \
                 write \"shared yes\" in both sections if the devices really share it"
            ),
            Self::BypassWithoutOptIn => f.write_str(
                "\"unclaimed bypass\" lets unknown devices reach all memory; \
                 it needs \"allow-bypass yes\" in the same section",
            ),
            Self::ReservedOverlap { other_line } => {
                write!(f, "reserved range overlaps the one on line {other_line}")
            }
            Self::WindowOverlap { other_line } => write!(
                f,
                "window overlaps, in IOVA space, the window on line {other_line}"
            ),
            Self::BadVmName { found } => write!(
                f,
                "bad VM name \"{found}\" (1 to {} letters, digits, '-' or '_')",
                crate::vm::VM_NAME_LEN
            ),
            Self::DuplicateVm { name, first_line } => {
                write!(f, "vm \"{name}\" described twice (first on line {first_line})")
            }
            Self::RamOverlap { start, other_line } => write!(
                f,
                "ram {start:#x} overlaps this vm's ram at line {other_line}"
            ),
            Self::RamOverlapsVm {
                start,
                other,
                other_line,
            } => write!(
                f,
                "ram {start:#x} overlaps vm {other}'s ram at line {other_line}; both must say shared"
            ),
            Self::DuplicatePeer {
                device,
                bar,
                first_line,
            } => write!(
                f,
                "peer {device} bar {bar} listed twice in this vm (first on line {first_line})"
            ),
            Self::SidForVtd { key, unit } => write!(
                f,
                "\"{key}\" does not apply to a device behind VT-d unit \"{unit}\": \
                 VT-d identifies a PCI function by its requester ID"
            ),
            Self::MmioOnVtd { unit } => write!(
                f,
                "\"{unit}\" is a VT-d unit, and a VT-d unit cannot tell platform devices apart: \
                 bind MMIO devices to an SMMU"
            ),
            Self::WrongSegment {
                device,
                unit,
                segment,
            } => write!(
                f,
                "{device} is not in segment {segment:04x}, the one VT-d unit \"{unit}\" translates"
            ),
            Self::TwoIncludeAll { other, other_line } => write!(
                f,
                "unit \"{other}\" (line {other_line}) already includes every PCI function of this segment; only one may"
            ),
            Self::RegionDeviceTwice { bdf } => write!(f, "{bdf} listed twice on this line"),
            Self::TooMany(c) => write!(f, "{c}"),
        }
    }
}
