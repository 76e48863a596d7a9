//! [`DtError`]: what is wrong with the device tree, naming the node (full path) and property.

use crate::device::Device;
use crate::irq::IrqName;
use crate::topology::CapacityExceeded;
use core::fmt;
use iommu_core::PhysAddr;

/// Longest node path kept in an error; longer paths are cut.
pub const NODE_PATH_LEN: usize = 128;
/// Longest node name kept in an error; longer names are cut.
pub const NODE_NAME_LEN: usize = 64;

/// A node's full path (`/soc/pcie@10000000`).
pub type NodePath = heapless::String<NODE_PATH_LEN>;
/// A node's name (`smmuv3@9050000`).
pub type NodeName = heapless::String<NODE_NAME_LEN>;

/// `s` in a bounded string, cut at capacity (at a character boundary).
pub(crate) fn bounded<const N: usize>(s: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// The device tree describes something the manager cannot use; it refuses to start rather
/// than guess.
#[derive(Clone, PartialEq, Debug)]
pub struct DtError {
    /// Full path of the node at fault.
    pub node: NodePath,
    /// The property at fault (empty when the node as a whole is).
    pub property: &'static str,
    /// What is wrong.
    pub kind: DtErrorKind,
}

impl DtError {
    pub(crate) fn new(node: &str, property: &'static str, kind: DtErrorKind) -> Self {
        Self {
            node: bounded(node),
            property,
            kind,
        }
    }
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.property.is_empty() {
            write!(f, "{}: {}", self.node, self.kind)
        } else {
            write!(f, "{}: {}: {}", self.node, self.property, self.kind)
        }
    }
}

/// The kinds of device-tree error, one per way a property can be wrong.
#[derive(Clone, PartialEq, Debug)]
pub enum DtErrorKind {
    /// The blob is not a flattened device tree.
    BadBlob(fdt::FdtError),
    /// The blob is corrupt, or holds what `fdt` 0.1.5 cannot read safely.
    Corrupt(super::blob::BlobError),
    /// A required property is absent.
    Missing,
    /// A property that must hold 32-bit cells has a length that is not a multiple of 4.
    NotWholeCells {
        /// Its length in bytes.
        bytes: usize,
    },
    /// A property that must be exactly one cell is not.
    NotOneCell {
        /// Its length in bytes.
        bytes: usize,
    },
    /// An address property that must be one or two cells is not.
    NotOneOrTwoCells {
        /// Its length in bytes.
        bytes: usize,
    },
    /// A list property is empty.
    Empty,
    /// `iommu-map` is not a whole number of 4-cell entries.
    IommuMapLength {
        /// Its length in cells.
        cells: usize,
    },
    /// `iommus` is not a whole number of (phandle, StreamID) pairs.
    IommusLength {
        /// Its length in cells.
        cells: usize,
    },
    /// `reg` is not a whole number of (address, size) entries.
    RegLength {
        /// Its length in cells.
        cells: usize,
        /// Cells per entry (`#address-cells` + `#size-cells` of the parent).
        entry: usize,
    },
    /// `ranges` is not a whole number of (child address, parent address, length) entries.
    RangesLength {
        /// Its length in cells.
        cells: usize,
        /// Cells per entry (the bus's `#address-cells` + its parent's `#address-cells` + the
        /// bus's `#size-cells`).
        entry: usize,
    },
    /// A non-empty `reg` or `ranges` whose entries have no cells: every `#address-cells` and
    /// `#size-cells` that sizes them is 0.
    ZeroCellEntries {
        /// Its length in bytes.
        bytes: usize,
    },
    /// `#address-cells` or `#size-cells` larger than the manager reads.
    CellsUnsupported {
        /// The value.
        cells: u32,
    },
    /// A `reg` entry of size zero, or a `reg` or `ranges` entry (a `ranges` entry on either
    /// side: child or parent address) that runs past the end of the 64-bit address space.
    BadRange {
        /// Its address.
        address: u64,
        /// Its size.
        size: u64,
    },
    /// The node's address cannot be translated to a CPU address: a parent bus has no
    /// `ranges`, or none of its entries covers the address.
    Untranslatable {
        /// The address, in the bus's address space.
        address: u64,
        /// The bus.
        bus: NodeName,
    },
    /// A phandle names no node.
    UnknownPhandle {
        /// The phandle.
        phandle: u32,
    },
    /// A phandle used as an IOMMU names a node that is not an `arm,smmu-v3`.
    NotAnSmmuV3 {
        /// The phandle.
        phandle: u32,
        /// The node it names.
        target: NodeName,
    },
    /// A phandle used as an IOMMU names an SMMUv3 that is disabled (`status`).
    IommuDisabled {
        /// The phandle.
        phandle: u32,
        /// The node it names.
        target: NodeName,
    },
    /// An SMMUv3's `#iommu-cells` is not 1.
    IommuCells {
        /// The value.
        cells: u32,
    },
    /// An `iommu-map` entry has length 0.
    EmptyIdRange {
        /// The entry (from 0).
        entry: usize,
    },
    /// An `iommu-map` entry's IDs run past 32 bits.
    IdOverflow {
        /// The entry (from 0).
        entry: usize,
        /// `"rid-base"` or `"sid-base"`.
        which: &'static str,
        /// The base.
        base: u32,
        /// The length.
        length: u32,
    },
    /// `interrupts-extended` (not read: an SMMU's lines are described with `interrupts`).
    InterruptsExtended,
    /// No `interrupt-parent` on the node or its ancestors.
    NoInterruptParent,
    /// The interrupt parent is not an Arm GIC.
    NotAGic {
        /// The interrupt parent.
        parent: NodeName,
    },
    /// The GIC's `#interrupt-cells` is below 3.
    InterruptCells {
        /// The value.
        cells: u32,
    },
    /// `interrupts` is not a whole number of specifiers.
    InterruptsLength {
        /// Its length in cells.
        cells: usize,
        /// Cells per specifier.
        per: usize,
    },
    /// `interrupt-names` and `interrupts` have different lengths.
    InterruptNamesMismatch {
        /// Number of names.
        names: usize,
        /// Number of interrupts.
        interrupts: usize,
    },
    /// A name in `interrupt-names` that an SMMUv3 does not have.
    UnknownInterruptName {
        /// The name.
        name: NodeName,
    },
    /// A name given twice in `interrupt-names`.
    DuplicateInterruptName {
        /// The name.
        name: IrqName,
    },
    /// A GIC specifier's type cell is not SPI (0) or extended SPI (2).
    NotSpi {
        /// The type cell.
        kind: u32,
        /// The number cell.
        number: u32,
    },
    /// A GIC specifier's trigger flags are neither edge nor level.
    BadTrigger {
        /// The flags cell.
        flags: u32,
    },
    /// A string property is not UTF-8.
    NotUtf8,
    /// Two SMMUs at one base address.
    DuplicateUnit {
        /// The base.
        base: PhysAddr,
        /// The other node.
        other: NodeName,
    },
    /// Two SMMUs' register frames overlap.
    UnitsOverlap {
        /// The other node.
        other: NodeName,
    },
    /// Two nodes with `iommus` at one base address.
    DuplicateDevice {
        /// The device.
        device: Device,
        /// The other node.
        other: NodeName,
    },
    /// Two PCI hosts in one PCI segment.
    DuplicatePciDomain {
        /// The segment.
        segment: u16,
        /// The other host.
        other: NodeName,
    },
    /// `linux,pci-domain` above 0xffff.
    PciDomainRange {
        /// The value.
        domain: u32,
    },
    /// `/chosen/linux,initrd-end` lies before `linux,initrd-start`.
    InitrdRange {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// The tree nests deeper than the manager walks.
    TooDeep {
        /// The deepest level walked.
        max: usize,
    },
    /// A list is full.
    TooMany(CapacityExceeded),
}

impl fmt::Display for DtErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadBlob(e) => write!(f, "not a flattened device tree: {e}"),
            Self::Corrupt(e) => write!(
                f,
                "corrupt flattened device tree: {} at offset {:#x}: {}",
                e.block, e.offset, e.kind
            ),
            Self::Missing => f.write_str("missing"),
            Self::NotWholeCells { bytes } => {
                write!(f, "{bytes} bytes is not a whole number of 32-bit cells")
            }
            Self::NotOneCell { bytes } => write!(f, "expected one cell, found {bytes} bytes"),
            Self::NotOneOrTwoCells { bytes } => {
                write!(f, "expected one or two cells, found {bytes} bytes")
            }
            Self::Empty => f.write_str("empty"),
            Self::IommuMapLength { cells } => write!(
                f,
                "{cells} cells is not a multiple of 4 (rid-base, iommu, sid-base, length)"
            ),
            Self::IommusLength { cells } => write!(
                f,
                "{cells} cells is not a whole number of (iommu, StreamID) pairs"
            ),
            Self::RegLength { cells, entry } => write!(
                f,
                "{cells} cells is not a whole number of {entry}-cell (address, size) entries"
            ),
            Self::RangesLength { cells, entry } => write!(
                f,
                "{cells} cells is not a whole number of {entry}-cell (child address, parent address, length) entries"
            ),
            Self::ZeroCellEntries { bytes } => write!(
                f,
                "{bytes} bytes, but the #address-cells and #size-cells in force make each entry 0 cells long"
            ),
            Self::CellsUnsupported { cells } => {
                write!(f, "{cells} cells per number; at most 2 are supported")
            }
            Self::BadRange { address, size } => write!(
                f,
                "range {address:#x} size {size:#x} is empty or runs past the end of the address space"
            ),
            Self::Untranslatable { address, bus } => write!(
                f,
                "address {address:#x} on bus {bus} has no CPU address (the bus has no ranges, or none covers it)"
            ),
            Self::UnknownPhandle { phandle } => write!(f, "phandle {phandle:#x} names no node"),
            Self::NotAnSmmuV3 { phandle, target } => write!(
                f,
                "phandle {phandle:#x} names {target}, which is not an arm,smmu-v3"
            ),
            Self::IommuDisabled { phandle, target } => write!(
                f,
                "phandle {phandle:#x} names {target}, which is disabled"
            ),
            Self::IommuCells { cells } => write!(
                f,
                "is {cells}; an SMMUv3 takes exactly 1 cell (the StreamID)"
            ),
            Self::EmptyIdRange { entry } => write!(f, "entry {entry} has length 0"),
            Self::IdOverflow {
                entry,
                which,
                base,
                length,
            } => write!(
                f,
                "entry {entry}: {which} {base:#x} + length {length:#x} is beyond 32 bits"
            ),
            Self::InterruptsExtended => {
                f.write_str("not supported (describe the SMMU's lines with interrupts)")
            }
            Self::NoInterruptParent => {
                f.write_str("no interrupt-parent on the node or its ancestors")
            }
            Self::NotAGic { parent } => {
                write!(f, "interrupt parent {parent} is not an Arm GIC")
            }
            Self::InterruptCells { cells } => write!(
                f,
                "the GIC's #interrupt-cells is {cells}; a GIC specifier has at least 3"
            ),
            Self::InterruptsLength { cells, per } => write!(
                f,
                "{cells} cells is not a whole number of {per}-cell specifiers"
            ),
            Self::InterruptNamesMismatch { names, interrupts } => write!(
                f,
                "{names} names for {interrupts} interrupts"
            ),
            Self::UnknownInterruptName { name } => write!(
                f,
                "\"{name}\" is not an SMMUv3 interrupt (eventq, priq, cmdq-sync, gerror, combined)"
            ),
            Self::DuplicateInterruptName { name } => write!(f, "\"{name}\" given twice"),
            Self::NotSpi { kind, number } => write!(
                f,
                "specifier <{kind} {number}> is not an SPI (type 0) or extended SPI (type 2)"
            ),
            Self::BadTrigger { flags } => write!(
                f,
                "trigger flags {flags:#x} are neither edge (1, 2) nor level (4, 8)"
            ),
            Self::NotUtf8 => f.write_str("not UTF-8 text"),
            Self::DuplicateUnit { base, other } => {
                write!(f, "base {base} is also the base of {other}")
            }
            Self::UnitsOverlap { other } => {
                write!(f, "register frame overlaps that of {other}")
            }
            Self::DuplicateDevice { device, other } => {
                write!(f, "{device} is also described by {other}")
            }
            Self::DuplicatePciDomain { segment, other } => {
                write!(f, "PCI segment {segment:#x} is also that of {other}")
            }
            Self::PciDomainRange { domain } => {
                write!(f, "{domain:#x} is above 0xffff")
            }
            Self::InitrdRange { start, end } => write!(
                f,
                "end {end:#x} lies before start {start:#x}"
            ),
            Self::TooDeep { max } => write!(f, "nested deeper than {max} levels"),
            Self::TooMany(c) => write!(f, "{c}"),
        }
    }
}
