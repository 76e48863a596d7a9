//! What a guest learns from its device tree (Devicetree Specification v0.4): its RAM (`/memory`
//! `reg`, §3.4), reserved memory (the memory reservation block, §5.3), the console
//! (`/chosen/stdout-path`, §3.6), the boot arguments (`/chosen/bootargs`) and the PCI host
//! bridge (`pci-host-ecam-generic`: `reg` = ECAM, `ranges` = the windows).
//!
//! `#address-cells`/`#size-cells` are read here, checked (1 or 2 cells, §2.3.5), never
//! trusted: a malformed tree gives a [`DtError`], not a panic. The nodes read are children of
//! the root, as on QEMU `virt` and in the trees qvm writes.

use crate::layout::Range;
use core::fmt;
use fdt::Fdt;

/// Most memory reservations kept.
pub const MAX_RESERVED: usize = 8;

/// What the device tree says, in the form the guests use.
#[derive(Clone, Copy, Debug)]
pub struct GuestInfo<'a> {
    /// The first `/memory` range.
    pub ram: Range,
    /// The device tree blob itself.
    pub dtb: Range,
    /// `/memreserve/` entries (up to [`MAX_RESERVED`]).
    pub reserved: [Range; MAX_RESERVED],
    /// How many of `reserved` are used.
    pub reserved_count: usize,
    /// The console UART's base, from `stdout-path`, if there is one.
    pub uart: Option<u64>,
    /// `/chosen/bootargs` ("" when absent).
    pub bootargs: &'a str,
    /// The PCI host bridge, if there is one.
    pub pci: Option<PciHost>,
}

/// A `pci-host-ecam-generic` host bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciHost {
    /// ECAM (`reg`): bus 0 starts here.
    pub ecam: Range,
    /// The 32-bit non-prefetchable memory window (`ranges`), as CPU addresses.
    pub mem32: Range,
    /// PCI address of `mem32.base` (equal to the CPU address on `virt` and under qvm).
    pub mem32_pci: u64,
}

impl GuestInfo<'_> {
    /// The reservations in use.
    pub fn reserved(&self) -> &[Range] {
        self.reserved.get(..self.reserved_count).unwrap_or(&[])
    }
}

/// The device tree cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The blob's header is wrong (`fdt` crate's verdict).
    Header,
    /// A required node is missing.
    NoNode(&'static str),
    /// A property is missing or malformed.
    Property {
        /// The node.
        node: &'static str,
        /// The property.
        property: &'static str,
    },
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header => write!(f, "device tree header is not valid"),
            Self::NoNode(n) => write!(f, "device tree has no {n} node"),
            Self::Property { node, property } => {
                write!(
                    f,
                    "device tree node {node}: property {property} is missing or malformed"
                )
            }
        }
    }
}

/// A big-endian number of `cells` 32-bit cells (1 or 2) from the front of `bytes`, and the rest.
fn cells(bytes: &[u8], cells: usize) -> Option<(u64, &[u8])> {
    let len = cells.checked_mul(4).filter(|_| cells == 1 || cells == 2)?;
    let (head, rest) = bytes.split_at_checked(len)?;
    let value = head.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Some((value, rest))
}

/// A `u32` property of `node` (`#address-cells` and the like).
fn u32_prop(node: fdt::node::FdtNode<'_, '_>, name: &str) -> Option<u32> {
    let bytes: [u8; 4] = node.property(name)?.value.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// `#address-cells` and `#size-cells` of `node` (defaults 2 and 1, Devicetree spec §2.3.5).
fn cell_sizes(node: fdt::node::FdtNode<'_, '_>) -> (usize, usize) {
    let ac = u32_prop(node, "#address-cells").unwrap_or(2);
    let sc = u32_prop(node, "#size-cells").unwrap_or(1);
    (ac as usize, sc as usize)
}

/// The first `(address, size)` of a root child's `reg`.
fn first_reg(
    node: fdt::node::FdtNode<'_, '_>,
    root: (usize, usize),
    name: &'static str,
) -> Result<Range, DtError> {
    let bad = DtError::Property {
        node: name,
        property: "reg",
    };
    let reg = node.property("reg").ok_or(bad)?.value;
    let (base, rest) = cells(reg, root.0).ok_or(bad)?;
    let (size, _) = cells(rest, root.1).ok_or(bad)?;
    Ok(Range::new(base, size))
}

/// Reads what the guests need from the blob at `dtb_addr`.
///
/// # Errors
/// [`DtError`] when the header, `/memory`, `/chosen` or the PCI node is malformed.
pub fn read(blob: &[u8], dtb_addr: u64) -> Result<GuestInfo<'_>, DtError> {
    let fdt = Fdt::new(blob).map_err(|_| DtError::Header)?;
    let root_node = fdt.find_node("/").ok_or(DtError::NoNode("/"))?;
    let root = cell_sizes(root_node);
    let memory = fdt.find_node("/memory").ok_or(DtError::NoNode("/memory"))?;
    let ram = first_reg(memory, root, "/memory")?;
    let mut reserved = [Range::default(); MAX_RESERVED];
    let mut reserved_count = 0;
    for (slot, r) in reserved.iter_mut().zip(fdt.memory_reservations()) {
        *slot = Range::new(r.address() as u64, r.size() as u64);
        reserved_count += 1;
    }
    let chosen = fdt.find_node("/chosen");
    let bootargs = chosen
        .and_then(|c| c.property("bootargs"))
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let uart = match chosen
        .and_then(|c| c.property("stdout-path"))
        .and_then(|p| p.as_str())
    {
        // "path[:options]" (§3.6): the part before ':' names the node.
        Some(path) => {
            let path = path.split(':').next().unwrap_or(path);
            let node = fdt.find_node(path).ok_or(DtError::NoNode("stdout-path"))?;
            Some(first_reg(node, root, "stdout-path")?.base)
        }
        None => None,
    };
    let pci = match fdt.find_compatible(&["pci-host-ecam-generic"]) {
        Some(node) => Some(pci_host(node, root)?),
        None => None,
    };
    Ok(GuestInfo {
        ram,
        dtb: Range::new(dtb_addr, fdt.total_size() as u64),
        reserved,
        reserved_count,
        uart,
        bootargs,
        pci,
    })
}

/// ECAM and the 32-bit memory window of a `pci-host-ecam-generic` node.
///
/// `ranges` entries are (PCI address: 3 cells, CPU address: the root's `#address-cells`,
/// size: the bridge's `#size-cells`). The PCI address's first cell, `phys.hi`, is
/// `npt000ss bbbbbbbb dddddfff rrrrrrrr` (PCI Bus Binding to IEEE Std 1275-1994, §2.2.1.1):
/// `ss` = 0b10 is 32-bit memory space, `p` (bit 30) prefetchable.
fn pci_host(node: fdt::node::FdtNode<'_, '_>, root: (usize, usize)) -> Result<PciHost, DtError> {
    const NAME: &str = "pci-host-ecam-generic";
    let ecam = first_reg(node, root, NAME)?;
    let bad = DtError::Property {
        node: NAME,
        property: "ranges",
    };
    let (child_ac, child_sc) = cell_sizes(node);
    if child_ac != 3 {
        return Err(bad);
    }
    let mut rest = node.property("ranges").ok_or(bad)?.value;
    while !rest.is_empty() {
        let (hi, r) = cells(rest, 1).ok_or(bad)?;
        let (pci, r) = cells(r, 2).ok_or(bad)?;
        let (cpu, r) = cells(r, root.0).ok_or(bad)?;
        let (size, r) = cells(r, child_sc).ok_or(bad)?;
        rest = r;
        let space = (hi >> 24) & 0b11;
        let prefetchable = hi & (1 << 30) != 0;
        if space == 0b10 && !prefetchable {
            return Ok(PciHost {
                ecam,
                mem32: Range::new(cpu, size),
                mem32_pci: pci,
            });
        }
    }
    Err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10.0 `virt`'s own tree (the daemon's fixture, dumped with `dumpdtb`).
    const VIRT: &[u8] = include_bytes!("../../../smmuman-daemon/fixtures/qemu-virt-10.0.dtb");

    #[test]
    fn qemu_virt_tree_gives_ram_console_and_pci() {
        let info = read(VIRT, 0x4800_0000).unwrap();
        assert_eq!(info.ram.base, 0x4000_0000);
        assert_eq!(info.uart, Some(0x0900_0000));
        assert_eq!(info.dtb.base, 0x4800_0000);
        assert!(info.dtb.size > 0x1000);
        let pci = info.pci.unwrap();
        assert_eq!(pci.ecam, Range::new(0x40_1000_0000, 0x1000_0000));
        assert_eq!(pci.mem32, Range::new(0x1000_0000, 0x2eff_0000));
        assert_eq!(pci.mem32_pci, 0x1000_0000);
    }

    #[test]
    fn cells_are_one_or_two_and_never_read_past_the_end() {
        assert_eq!(cells(&[0, 0, 1, 0, 9], 1), Some((0x100, &[9u8][..])));
        assert_eq!(
            cells(&[0, 0, 0, 1, 0, 0, 0, 2], 2),
            Some((0x1_0000_0002, &[][..]))
        );
        assert_eq!(cells(&[0, 0, 1], 1), None);
        assert_eq!(cells(&[0; 12], 3), None);
        assert_eq!(cells(&[0; 12], usize::MAX), None);
        assert_eq!(read(&VIRT[..100], 0).unwrap_err(), DtError::Header);
    }
}
