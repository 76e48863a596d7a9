//! [`PcieHost`]: the `pci-host-ecam-generic` node (Linux Documentation/devicetree/bindings/pci/
//! host-generic-pci.yaml; PCI bus binding, IEEE 1275 PCI supplement §2.2.1 for `ranges`).

use super::error::BoardError;
use super::iommu_map::{IommuMap, IommuMapEntry};
use super::tree::{be_cells, be_u32, cell_sizes, first_reg, required_bytes, required_u32, Placed};
use crate::memory::PhysRange;
use core::fmt;
use fdt::Fdt;
use iommu_core::PhysAddr;

/// `compatible` of a generic ECAM host bridge.
pub const PCIE_ECAM_COMPATIBLE: &str = "pci-host-ecam-generic";

/// Bytes of ECAM configuration space per bus (PCIe Base Specification §7.2.2: 32 devices x 8
/// functions x 4 KiB).
pub const ECAM_BUS_SIZE: u64 = 1 << 20;

/// The host bridge's window for 32-bit non-prefetchable memory BARs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PciWindow {
    /// Where the CPU reaches the window.
    pub cpu_base: PhysAddr,
    /// The PCI bus address of `cpu_base` (what goes into a BAR).
    pub pci_base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl PciWindow {
    /// The CPU address of PCI bus address `pci`, if it lies in the window.
    pub fn cpu_address(&self, pci: u64) -> Option<PhysAddr> {
        let offset = pci.checked_sub(self.pci_base)?;
        (offset < self.size).then(|| PhysAddr(self.cpu_base.0 + offset))
    }
}

impl fmt::Display for PciWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}", self.cpu_base, self.size)?;
        if self.cpu_base.0 != self.pci_base {
            write!(f, "(pci {:#x})", self.pci_base)?;
        }
        Ok(())
    }
}

/// What the device tree says about the PCIe host bridge.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PcieHost {
    /// The ECAM configuration space; its first MiB is bus `bus_start`.
    pub ecam: PhysRange,
    /// First bus number (`bus-range`).
    pub bus_start: u8,
    /// Last bus number (`bus-range`).
    pub bus_end: u8,
    /// The 32-bit memory window BARs are assigned from.
    pub mmio32: PciWindow,
    /// How requester IDs become StreamIDs.
    pub iommu_map: IommuMap,
    /// `dma-coherent`: device DMA snoops the CPU caches.
    pub coherent: bool,
}

impl PcieHost {
    /// Reads the host bridge node.
    ///
    /// # Errors
    /// A [`BoardError`] naming the missing or malformed property.
    pub(super) fn parse<'a>(fdt: &Fdt<'a>, placed: Placed<'_, 'a>) -> Result<Self, BoardError<'a>> {
        let node = placed.node;
        let bad = |property, reason| BoardError::BadProperty {
            node: node.name,
            property,
            reason,
        };
        let (ecam_base, ecam_size) = first_reg(placed)?;
        let (bus_start, bus_end) = match node.property("bus-range") {
            None => (0, 255),
            Some(p) if p.value.len() == 8 => {
                let s = be_u32(p.value).unwrap_or(0);
                let e = be_u32(&p.value[4..]).unwrap_or(0);
                if s > e || e > 255 {
                    return Err(bad("bus-range", "start after end, or bus above 255"));
                }
                (s as u8, e as u8)
            }
            Some(_) => return Err(bad("bus-range", "expected two cells")),
        };
        let buses = u64::from(bus_end - bus_start) + 1;
        if ecam_size < buses * ECAM_BUS_SIZE {
            return Err(bad("reg", "ECAM smaller than 1 MiB per bus of bus-range"));
        }
        let ecam =
            PhysRange::new(PhysAddr(ecam_base), ecam_size).ok_or(bad("reg", "wrapping range"))?;
        let mmio32 = mmio32_window(placed)?;
        let iommu_map = iommu_map(fdt, placed)?;
        Ok(Self {
            ecam,
            bus_start,
            bus_end,
            mmio32,
            iommu_map,
            coherent: node.property("dma-coherent").is_some(),
        })
    }
}

/// The first non-prefetchable 32-bit memory entry of `ranges`.
fn mmio32_window<'a>(placed: Placed<'_, 'a>) -> Result<PciWindow, BoardError<'a>> {
    let node = placed.node;
    let bad = |reason| BoardError::BadProperty {
        node: node.name,
        property: "ranges",
        reason,
    };
    let (child_ac, child_sc) = cell_sizes(node)?;
    if child_ac != 3 {
        return Err(BoardError::BadProperty {
            node: node.name,
            property: "#address-cells",
            reason: "a PCI bus needs 3 address cells",
        });
    }
    let (parent_ac, _) = match placed.parent {
        Some(parent) => cell_sizes(parent)?,
        None => (2, 1),
    };
    if parent_ac > 2 {
        return Err(BoardError::Unsupported {
            node: node.name,
            property: "ranges",
            reason: "parent #address-cells above 2",
        });
    }
    let bytes = required_bytes(node, "ranges")?;
    let entry = (child_ac + parent_ac + child_sc) * 4;
    if bytes.is_empty() || bytes.len() % entry != 0 {
        return Err(bad("length is not a whole number of entries"));
    }
    for chunk in bytes.chunks_exact(entry) {
        // phys.hi: bits 25:24 are the space code (0b10: 32-bit memory), bit 30 prefetchable.
        let hi = be_u32(chunk).unwrap_or(0);
        let space = (hi >> 24) & 0b11;
        let prefetchable = hi & (1 << 30) != 0;
        if space != 0b10 || prefetchable {
            continue;
        }
        let pci = be_cells(&chunk[4..], 2).unwrap_or(0);
        let cpu = be_cells(&chunk[12..], parent_ac).unwrap_or(0);
        let size = be_cells(&chunk[(3 + parent_ac) * 4..], child_sc).unwrap_or(0);
        if size == 0 || pci.checked_add(size).is_none_or(|end| end > 1 << 32) {
            return Err(bad("32-bit memory window empty or beyond 4 GiB"));
        }
        if cpu.checked_add(size).is_none() {
            return Err(bad("32-bit memory window wraps the CPU address space"));
        }
        return Ok(PciWindow {
            cpu_base: PhysAddr(cpu),
            pci_base: pci,
            size,
        });
    }
    Err(bad("no non-prefetchable 32-bit memory window"))
}

/// `iommu-map` and `iommu-map-mask`; entries must use one cell per IOMMU specifier.
fn iommu_map<'a>(fdt: &Fdt<'a>, placed: Placed<'_, 'a>) -> Result<IommuMap, BoardError<'a>> {
    let node = placed.node;
    let bad = |property, reason| BoardError::BadProperty {
        node: node.name,
        property,
        reason,
    };
    let Some(map) = node.property("iommu-map") else {
        return Ok(IommuMap::empty());
    };
    let mask = match node.property("iommu-map-mask") {
        None => u32::MAX,
        Some(p) if p.value.len() == 4 => be_u32(p.value).unwrap_or(u32::MAX),
        Some(_) => return Err(bad("iommu-map-mask", "expected one cell")),
    };
    let mut out = IommuMap {
        mask,
        entries: heapless::Vec::new(),
    };
    let mut rest = map.value;
    while !rest.is_empty() {
        let cell = |n: usize| be_u32(rest.get(n * 4..).unwrap_or(&[]));
        let (Some(rid_base), Some(iommu)) = (cell(0), cell(1)) else {
            return Err(bad("iommu-map", "truncated entry"));
        };
        let target = fdt.find_phandle(iommu).ok_or(BoardError::UnknownPhandle {
            node: node.name,
            property: "iommu-map",
            phandle: iommu,
        })?;
        if required_u32(target, "#iommu-cells")? != 1 {
            return Err(BoardError::Unsupported {
                node: node.name,
                property: "iommu-map",
                reason: "IOMMU with #iommu-cells other than 1",
            });
        }
        let (Some(sid_base), Some(length)) = (cell(2), cell(3)) else {
            return Err(bad("iommu-map", "truncated entry"));
        };
        if length == 0
            || u64::from(rid_base) + u64::from(length) > 1 << 32
            || u64::from(sid_base) + u64::from(length) > 1 << 32
        {
            return Err(bad("iommu-map", "entry empty or beyond 32-bit IDs"));
        }
        out.entries
            .push(IommuMapEntry {
                rid_base,
                iommu,
                sid_base,
                length,
            })
            .map_err(|_| BoardError::Unsupported {
                node: node.name,
                property: "iommu-map",
                reason: "more entries than the daemon keeps",
            })?;
        rest = &rest[16..];
    }
    Ok(out)
}
