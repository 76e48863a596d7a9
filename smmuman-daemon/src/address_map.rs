//! [`AddressMap`]: what the CPU's EL2 identity map covers, and with which memory type.
//!
//! The daemon turns its MMU on with an identity map (VA = PA) built from this list (the
//! `hyp/mmu.rs` writes it with `aarch64-paging`): RAM from the device tree's `/memory` as
//! Normal write-back cacheable memory, and every register block the daemon touches (console,
//! SMMU frames, PCIe ECAM and BAR window, GIC) as Device-nGnRE, execute-never (Arm ARM D8.2:
//! memory types; D8.6: attributes). Everything else stays unmapped: a stray access faults
//! instead of reaching whatever lives there.

use crate::board::BoardInfo;
use crate::memory::PhysRange;
use core::fmt;
use heapless::Vec;
use iommu_core::PhysAddr;

/// Most regions the map holds.
pub const MAX_REGIONS: usize = 16;

/// Translation granule (Arm ARM D8.2: the 4 KiB granule).
pub const PAGE: u64 = 4096;

/// How the CPU sees a region.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemKind {
    /// Normal memory, inner and outer write-back cacheable, inner shareable, executable.
    Normal,
    /// Device-nGnRE, execute-never: registers.
    Device,
}

impl fmt::Display for MemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Normal => "normal",
            Self::Device => "device",
        })
    }
}

/// One mapped region.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region {
    /// What it is (for the log).
    pub name: &'static str,
    /// Its addresses, grown to whole pages.
    pub range: PhysRange,
    /// Its memory type.
    pub kind: MemKind,
}

/// The map cannot be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions,
    /// A region does not fit in the 64-bit address space once grown to whole pages.
    BadRange(&'static str),
    /// Two regions overlap with different memory types (or RAM overlaps anything).
    Overlap(&'static str, &'static str),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyRegions => write!(f, "more than {MAX_REGIONS} regions to map"),
            Self::BadRange(n) => write!(f, "region {n} does not fit the address space"),
            Self::Overlap(a, b) => write!(f, "regions {a} and {b} overlap"),
        }
    }
}

/// The regions of the identity map, sorted by address, disjoint except for device regions
/// that overlap each other (the same memory type, so mapping both is mapping their union).
#[derive(Clone, Debug, Default)]
pub struct AddressMap {
    regions: Vec<Region, MAX_REGIONS>,
}

impl AddressMap {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            regions: Vec::new(),
        }
    }

    /// Adds `[base, base + size)`, grown to whole pages.
    ///
    /// # Errors
    /// [`MapError::TooManyRegions`], [`MapError::BadRange`], [`MapError::Overlap`] when it
    /// overlaps a region of another kind, or RAM overlaps anything.
    pub fn add(
        &mut self,
        name: &'static str,
        base: PhysAddr,
        size: u64,
        kind: MemKind,
    ) -> Result<(), MapError> {
        let range = PhysRange::new(base, size)
            .and_then(|r| r.grow_to_align(PAGE))
            .ok_or(MapError::BadRange(name))?;
        if let Some(other) = self
            .regions
            .iter()
            .find(|r| r.range.overlaps(range) && (r.kind != kind || kind == MemKind::Normal))
        {
            return Err(MapError::Overlap(other.name, name));
        }
        let at = self
            .regions
            .iter()
            .position(|r| r.range.start() > range.start())
            .unwrap_or(self.regions.len());
        self.regions
            .insert(at, Region { name, range, kind })
            .map_err(|_| MapError::TooManyRegions)
    }

    /// The map the daemon needs on `board`: its RAM, console, SMMU, PCIe ECAM and 32-bit BAR
    /// window, GIC distributor and redistributors, and `more_smmus` (other SMMU frames the
    /// device tree lists, which a refusal must still reach to abort them).
    ///
    /// # Errors
    /// As [`AddressMap::add`].
    pub fn for_board(
        board: &BoardInfo<'_>,
        more_smmus: &[(PhysAddr, u64)],
    ) -> Result<Self, MapError> {
        let mut map = Self::new();
        for r in &board.ram {
            map.add("ram", r.start(), r.size(), MemKind::Normal)?;
        }
        let dev = MemKind::Device;
        map.add("uart", board.uart.base, board.uart.size, dev)?;
        if let Some(op) = board.operator_uart {
            map.add("operator-uart", op.base, op.size, dev)?;
        }
        map.add("smmu", board.smmu.base, board.smmu.size, dev)?;
        for &(base, size) in more_smmus {
            if base != board.smmu.base {
                map.add("smmu", base, size, dev)?;
            }
        }
        map.add(
            "pcie-ecam",
            board.pcie.ecam.start(),
            board.pcie.ecam.size(),
            dev,
        )?;
        let w = board.pcie.mmio32;
        map.add("pcie-mmio32", w.cpu_base, w.size, dev)?;
        if let Some(gic) = board.gic {
            map.add("gicd", gic.dist.start(), gic.dist.size(), dev)?;
            map.add("gicr", gic.redist.start(), gic.redist.size(), dev)?;
        }
        Ok(map)
    }

    /// The regions, sorted by start address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The regions of one kind.
    pub fn of_kind(&self, kind: MemKind) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(move |r| r.kind == kind)
    }

    /// One past the highest mapped address (0 for an empty map).
    pub fn end(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| r.range.end().0)
            .max()
            .unwrap_or(0)
    }

    /// Whether `pa` is mapped.
    pub fn covers(&self, pa: PhysAddr) -> bool {
        self.regions.iter().any(|r| r.range.contains_addr(pa))
    }

    /// The first page at or above `from` that no region maps (for a deliberate fault).
    pub fn first_hole(&self, from: PhysAddr) -> Option<PhysAddr> {
        let mut pa = from.0.checked_next_multiple_of(PAGE)?;
        while let Some(r) = self
            .regions
            .iter()
            .find(|r| r.range.contains_addr(PhysAddr(pa)))
        {
            pa = r.range.end().0;
        }
        Some(PhysAddr(pa))
    }

    /// An upper bound on the translation table pages a 4 KiB-granule map with a level-0 root
    /// needs for these regions (Arm ARM D8.2.7: a level-0 entry covers 512 GiB, level 1
    /// 1 GiB, level 2 2 MiB): the root, and per region at most two next-level tables at each
    /// of levels 1 to 3 (the partial blocks at either end; everything in between is a block).
    pub fn table_pages_bound(&self) -> usize {
        1 + 6 * self.regions.len()
    }
}

/// The TCR_ELx.PS / IPS encoding of `bits` physical address bits (Arm ARM D19.2, TCR_EL2.PS):
/// the smallest encoding that covers them, or `None` above 48 bits (52 needs FEAT_LPA).
pub const fn ps_for_bits(bits: u32) -> Option<u64> {
    Some(match bits {
        0..=32 => 0,
        33..=36 => 1,
        37..=40 => 2,
        41..=42 => 3,
        43..=44 => 4,
        45..=48 => 5,
        _ => return None,
    })
}

/// Physical address bits of an ID_AA64MMFR0_EL1.PARange value (Arm ARM D19.2), capped at 48
/// (what a 4 KiB granule addresses without FEAT_LPA2); `None` for a reserved value.
pub const fn parange_bits(parange: u64) -> Option<u32> {
    Some(match parange & 0xf {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 | 6 => 48,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BoardInfo;

    const QEMU_VIRT: &[u8] = include_bytes!("../fixtures/qemu-virt-10.0.dtb");

    #[test]
    fn qemu_virt_maps_ram_normal_and_every_register_block_device() {
        let board = BoardInfo::from_blob(QEMU_VIRT).unwrap();
        let map = AddressMap::for_board(&board, &[]).unwrap();
        let got: std::vec::Vec<(&str, u64, u64, MemKind)> = map
            .regions()
            .iter()
            .map(|r| (r.name, r.range.start().0, r.range.size(), r.kind))
            .collect();
        use MemKind::*;
        assert_eq!(
            got,
            [
                ("gicd", 0x800_0000, 0x1_0000, Device),
                ("gicr", 0x80a_0000, 0xf6_0000, Device),
                ("uart", 0x900_0000, 0x1000, Device),
                ("smmu", 0x905_0000, 0x2_0000, Device),
                ("pcie-mmio32", 0x1000_0000, 0x2eff_0000, Device),
                ("ram", 0x4000_0000, 0x2000_0000, Normal),
                ("pcie-ecam", 0x40_1000_0000, 0x1000_0000, Device),
            ]
        );
        assert!(map.table_pages_bound() <= 1 + 6 * MAX_REGIONS);
        assert_eq!(map.end(), 0x40_2000_0000);
        // Flash at 0 is not the daemon's: unmapped, so a stray access faults.
        assert_eq!(map.first_hole(PhysAddr(0)), Some(PhysAddr(0)));
        assert_eq!(
            map.first_hole(PhysAddr(0x4000_0000)),
            Some(PhysAddr(0x6000_0000))
        );
        assert!(map.covers(PhysAddr(0x905_0044)));
        assert!(!map.covers(PhysAddr(0x808_0000)), "the ITS is not touched");
    }

    #[test]
    fn regions_grow_to_pages_and_ram_may_overlap_nothing() {
        let mut map = AddressMap::new();
        map.add("a", PhysAddr(0x1010), 0x10, MemKind::Device)
            .unwrap();
        assert_eq!(
            map.regions()[0].range,
            PhysRange::new(PhysAddr(0x1000), 0x1000).unwrap()
        );
        // Two device blocks in one page: the same type, both mapped.
        map.add("b", PhysAddr(0x1800), 0x10, MemKind::Device)
            .unwrap();
        assert_eq!(
            map.add("ram", PhysAddr(0), 0x2000, MemKind::Normal),
            Err(MapError::Overlap("a", "ram"))
        );
        map.add("ram", PhysAddr(0x4000), 0x2000, MemKind::Normal)
            .unwrap();
        assert_eq!(
            map.add("c", PhysAddr(0x5000), 0x10, MemKind::Device),
            Err(MapError::Overlap("ram", "c"))
        );
        assert_eq!(
            map.add("d", PhysAddr(u64::MAX - 0x10), 0x8, MemKind::Device),
            Err(MapError::BadRange("d"))
        );
        assert_eq!(
            map.add("e", PhysAddr(0x9000), 0, MemKind::Device),
            Err(MapError::BadRange("e"))
        );
    }

    #[test]
    fn too_many_regions_are_refused() {
        let mut map = AddressMap::new();
        for i in 0..MAX_REGIONS as u64 {
            map.add("r", PhysAddr(i * 0x10000), 0x1000, MemKind::Device)
                .unwrap();
        }
        assert_eq!(
            map.add("r", PhysAddr(0x100_0000), 0x1000, MemKind::Device),
            Err(MapError::TooManyRegions)
        );
    }

    #[test]
    fn physical_address_sizes_encode_as_the_arm_arm_says() {
        assert_eq!(parange_bits(0), Some(32));
        assert_eq!(parange_bits(5), Some(48));
        assert_eq!(parange_bits(6), Some(48), "52 bits capped at 48");
        assert_eq!(parange_bits(7), None);
        assert_eq!(ps_for_bits(39), Some(2));
        assert_eq!(ps_for_bits(48), Some(5));
        assert_eq!(ps_for_bits(52), None);
    }
}
