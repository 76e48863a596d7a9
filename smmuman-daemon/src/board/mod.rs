//! Board discovery from the flattened device tree QEMU (or firmware) passes in `x0`.
//!
//! Nothing about the board is hard-coded: RAM, the console UART, the SMMUv3, the PCIe host
//! bridge and the requester-ID-to-StreamID map all come from here. Anything malformed or
//! ambiguous is a [`BoardError`] that names the node and property; the daemon does not guess.
//!
//! Parsing is staged so that the console can come up before the rest is checked:
//! [`open`], then [`console`], then [`BoardInfo::parse`]. Which StreamID each device has, and
//! what the user's config adds, come from `board_config::load`; [`discovery`] applies that
//! topology to the enumerated functions and the memory plan.

pub mod discovery;
pub mod error;
pub mod gic;
pub mod interrupts;
pub mod iommu_map;
pub mod pcie;
pub mod smmu;
mod tree;

#[cfg(test)]
mod fdt_builder;
#[cfg(test)]
mod tests;

pub use error::BoardError;
pub use gic::{GicNode, GIC_V3_COMPATIBLE};
pub use interrupts::{Irq, Trigger};
pub use iommu_map::{IommuMap, IommuMapEntry};
pub use pcie::{PciWindow, PcieHost, PCIE_ECAM_COMPATIBLE};
pub use smmu::{SmmuIrqs, SmmuNode, SMMU_V3_COMPATIBLE};

use crate::memory::PhysRange;
use fdt::Fdt;
use heapless::Vec;
use iommu_core::{Bdf, PhysAddr, StreamId};
use tree::{find_path, find_unique, first_reg, is_compatible, regs, str_prop, walk, Placed};

/// Most RAM regions kept.
pub const MAX_RAM_REGIONS: usize = 4;
/// Most firmware-reserved ranges kept.
pub const MAX_FIRMWARE_RESERVED: usize = 8;

/// `compatible` of the PL011 UART.
pub const PL011_COMPATIBLE: &str = "arm,pl011";

/// Validates the blob: its header (magic, `totalsize` against the slice), then the whole of
/// it with [`board_config::dt::validate_blob`], so that `fdt`'s walks cannot panic on it
/// ([`board_config::dt::blob`] lists the few `fdt` calls that stay unsafe on any tree).
///
/// # Errors
/// [`BoardError::BadBlob`] for a blob that is not a device tree,
/// [`BoardError::CorruptBlob`] for a corrupt one.
pub fn open(blob: &[u8]) -> Result<Fdt<'_>, BoardError<'_>> {
    // `Fdt::new` reads the header only; nothing walks the tree before `validate_blob`.
    let fdt = Fdt::new(blob).map_err(BoardError::BadBlob)?;
    board_config::dt::validate_blob(blob).map_err(BoardError::CorruptBlob)?;
    Ok(fdt)
}

/// The console UART.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UartNode {
    /// Base of its registers.
    pub base: PhysAddr,
    /// Size of its register window.
    pub size: u64,
}

/// The UART `/chosen/stdout-path` names (options after `:` ignored); it must be a PL011.
///
/// # Errors
/// [`BoardError::MissingNode`] without `/chosen`, [`BoardError::MissingProperty`] without
/// `stdout-path`, [`BoardError::StdoutNotFound`], [`BoardError::Unsupported`] for a UART other
/// than a PL011, or a `reg` error.
pub fn console<'a>(fdt: &Fdt<'a>) -> Result<UartNode, BoardError<'a>> {
    let chosen = find_path(fdt, "/chosen").ok_or(BoardError::MissingNode { what: "/chosen" })?;
    let path = str_prop(chosen.node, "stdout-path")?.ok_or(BoardError::MissingProperty {
        node: "chosen",
        property: "stdout-path",
    })?;
    let path = path.split(':').next().unwrap_or(path);
    let uart = find_path(fdt, path).ok_or(BoardError::StdoutNotFound { path })?;
    if !is_compatible(uart.node, PL011_COMPATIBLE) {
        return Err(BoardError::Unsupported {
            node: uart.node.name,
            property: "compatible",
            reason: "the console is not an arm,pl011",
        });
    }
    let (base, size) = first_reg(uart)?;
    Ok(UartNode {
        base: PhysAddr(base),
        size,
    })
}

/// The operator's UART: the PL011 `/aliases/serial1` names, when it is not the console
/// (QEMU 10's `virt` has a second non-secure PL011 at 0x0904_0000 for its second `-serial`).
/// `None` when the board has none: the daemon then opens no operator channel.
///
/// # Errors
/// A `reg` error of the node the alias names.
pub fn operator_uart<'a>(
    fdt: &Fdt<'a>,
    console: UartNode,
) -> Result<Option<UartNode>, BoardError<'a>> {
    let Some(aliases) = find_path(fdt, "/aliases") else {
        return Ok(None);
    };
    let Some(path) = str_prop(aliases.node, "serial1")? else {
        return Ok(None);
    };
    let Some(uart) = find_path(fdt, path) else {
        return Ok(None);
    };
    if !is_compatible(uart.node, PL011_COMPATIBLE) {
        return Ok(None);
    }
    let (base, size) = first_reg(uart)?;
    let node = UartNode {
        base: PhysAddr(base),
        size,
    };
    Ok((node.base != console.base).then_some(node))
}

/// Everything the daemon needs to know about the board.
#[derive(Clone, Debug)]
pub struct BoardInfo<'a> {
    /// RAM regions (`device_type = "memory"`), sorted by address.
    pub ram: Vec<PhysRange, MAX_RAM_REGIONS>,
    /// Ranges firmware reserved (`/memreserve/` and `/reserved-memory` children with `reg`).
    pub reserved: Vec<PhysRange, MAX_FIRMWARE_RESERVED>,
    /// Size of the device tree blob (`totalsize`), which must stay untouched.
    pub dtb_size: u64,
    /// The console.
    pub uart: UartNode,
    /// The operator's channel, a second PL011 ([`operator_uart`]), if the board has one.
    pub operator_uart: Option<UartNode>,
    /// The SMMUv3.
    pub smmu: SmmuNode,
    /// The PCIe host bridge.
    pub pcie: PcieHost,
    /// The GICv3, when the board has one: the SMMU's wired interrupts go through it.
    pub gic: Option<GicNode>,
    /// `/chosen/bootargs` (empty when absent).
    pub bootargs: &'a str,
}

impl<'a> BoardInfo<'a> {
    /// Reads the whole board description.
    ///
    /// # Errors
    /// A [`BoardError`] naming the first missing, malformed, ambiguous or unsupported item.
    pub fn parse(fdt: &Fdt<'a>) -> Result<Self, BoardError<'a>> {
        let ram = ram_regions(fdt)?;
        let reserved = firmware_reserved(fdt)?;
        let uart = console(fdt)?;
        let operator_uart = operator_uart(fdt, uart)?;
        let smmu_node = find_unique(fdt, SMMU_V3_COMPATIBLE)?;
        let smmu = SmmuNode::parse(fdt, smmu_node)?;
        let pcie_node = find_unique(fdt, PCIE_ECAM_COMPATIBLE)?;
        let pcie = PcieHost::parse(fdt, pcie_node)?;
        let gic = GicNode::find(fdt)?;
        let chosen =
            find_path(fdt, "/chosen").ok_or(BoardError::MissingNode { what: "/chosen" })?;
        let bootargs = str_prop(chosen.node, "bootargs")?.unwrap_or("");
        Ok(Self {
            ram,
            reserved,
            dtb_size: fdt.total_size() as u64,
            uart,
            operator_uart,
            smmu,
            pcie,
            gic,
            bootargs,
        })
    }

    /// [`open`] then [`BoardInfo::parse`].
    ///
    /// # Errors
    /// As those two.
    pub fn from_blob(blob: &'a [u8]) -> Result<Self, BoardError<'a>> {
        Self::parse(&open(blob)?)
    }

    /// The StreamID the SMMU sees for DMA carrying requester ID `bdf`, or `None` when the host
    /// bridge's `iommu-map` sends that requester ID to no IOMMU or to another one: such a device
    /// is not behind this SMMU. Pass the function's DMA alias
    /// ([`crate::pci::PciFunction::dma_alias`]): behind a PCIe-to-PCI bridge, DMA carries the
    /// bridge's ID, not the device's.
    pub fn sid_for(&self, bdf: Bdf) -> Option<StreamId> {
        self.pcie
            .iommu_map
            .lookup(bdf.rid())
            .and_then(|(iommu, sid)| (iommu == self.smmu.phandle).then_some(sid))
    }

    /// The RAM region containing `pa`.
    pub fn ram_containing(&self, pa: PhysAddr) -> Option<PhysRange> {
        self.ram.iter().copied().find(|r| r.contains_addr(pa))
    }
}

fn ram_regions<'a>(fdt: &Fdt<'a>) -> Result<Vec<PhysRange, MAX_RAM_REGIONS>, BoardError<'a>> {
    let mut memory_nodes: Vec<Placed<'_, 'a>, MAX_RAM_REGIONS> = Vec::new();
    let mut too_many = false;
    walk(fdt, &mut |p| {
        let is_memory = p
            .node
            .property("device_type")
            .is_some_and(|d| d.value == b"memory\0");
        if is_memory && memory_nodes.push(p).is_err() {
            too_many = true;
        }
    });
    let too_many_err = BoardError::Unsupported {
        node: "memory",
        property: "reg",
        reason: "more RAM regions than the daemon keeps",
    };
    if too_many {
        return Err(too_many_err);
    }
    let mut ram: Vec<PhysRange, MAX_RAM_REGIONS> = Vec::new();
    for node in memory_nodes {
        let mut full = false;
        regs(node, &mut |base, size| {
            if let Some(r) = PhysRange::new(PhysAddr(base), size) {
                full |= ram.push(r).is_err();
            }
            false
        })?;
        if full {
            return Err(too_many_err);
        }
    }
    if ram.is_empty() {
        return Err(BoardError::MissingNode {
            what: "memory (device_type = \"memory\")",
        });
    }
    ram.sort_unstable();
    if ram.windows(2).any(|w| w[0].overlaps(w[1])) {
        return Err(BoardError::BadProperty {
            node: "memory",
            property: "reg",
            reason: "RAM regions overlap",
        });
    }
    Ok(ram)
}

fn firmware_reserved<'a>(
    fdt: &Fdt<'a>,
) -> Result<Vec<PhysRange, MAX_FIRMWARE_RESERVED>, BoardError<'a>> {
    let too_many = BoardError::Unsupported {
        node: "reserved-memory",
        property: "reg",
        reason: "more reserved ranges than the daemon keeps",
    };
    let mut out: Vec<PhysRange, MAX_FIRMWARE_RESERVED> = Vec::new();
    for r in fdt.memory_reservations() {
        if let Some(range) = PhysRange::new(PhysAddr(r.address() as u64), r.size() as u64) {
            out.push(range).map_err(|_| too_many)?;
        }
    }
    if let Some(parent) = find_path(fdt, "/reserved-memory") {
        for child in parent.node.children() {
            if child.property("reg").is_none() {
                continue;
            }
            let placed = Placed {
                node: child,
                parent: Some(parent.node),
                interrupt_parent: None,
            };
            let mut full = false;
            regs(placed, &mut |base, size| {
                if let Some(range) = PhysRange::new(PhysAddr(base), size) {
                    full |= out.push(range).is_err();
                }
                false
            })?;
            if full {
                return Err(too_many);
            }
        }
    }
    Ok(out)
}
