//! [`IommuMap`]: the PCI host bridge's `iommu-map` and `iommu-map-mask` (Linux
//! Documentation/devicetree/bindings/pci/pci-iommu.txt), which turn a PCI requester ID into the
//! StreamID an IOMMU sees (IHI 0070 §3.2: for PCIe, StreamID is derived from the RID).
//!
//! Each entry is `(rid-base, iommu-phandle, iommu-base, length)`: requester IDs
//! `rid-base .. rid-base + length` map to StreamIDs `iommu-base ..` of that IOMMU. The RID is
//! ANDed with the mask first. A RID no entry covers has no StreamID: that device's DMA does not go
//! through an IOMMU described here.

use core::fmt;
use heapless::Vec;
use iommu_core::StreamId;

/// Most `iommu-map` entries the daemon keeps.
pub const MAX_IOMMU_MAP_ENTRIES: usize = 8;

/// One `iommu-map` entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IommuMapEntry {
    /// First requester ID (after masking) covered.
    pub rid_base: u32,
    /// Phandle of the IOMMU the IDs go to.
    pub iommu: u32,
    /// StreamID of `rid_base`.
    pub sid_base: u32,
    /// Number of requester IDs covered (never zero).
    pub length: u32,
}

impl IommuMapEntry {
    /// The StreamID for the (masked) requester ID `rid`, if this entry covers it.
    pub fn translate(&self, rid: u32) -> Option<StreamId> {
        let offset = rid.checked_sub(self.rid_base)?;
        (offset < self.length).then(|| StreamId(self.sid_base.wrapping_add(offset)))
    }
}

impl fmt::Display for IommuMapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rid {:#x}..{:#x} -> iommu {:#x} sid {:#x}",
            self.rid_base,
            u64::from(self.rid_base) + u64::from(self.length),
            self.iommu,
            self.sid_base
        )
    }
}

/// The host bridge's RID-to-StreamID map.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct IommuMap {
    /// `iommu-map-mask`: ANDed with the RID before the lookup (all ones when absent).
    pub mask: u32,
    /// The entries, in device-tree order (the first that covers a RID wins).
    pub entries: Vec<IommuMapEntry, MAX_IOMMU_MAP_ENTRIES>,
}

impl IommuMap {
    /// A map without entries: no device is behind an IOMMU.
    pub fn empty() -> Self {
        Self {
            mask: u32::MAX,
            entries: Vec::new(),
        }
    }

    /// The IOMMU phandle and StreamID for requester ID `rid`, or `None` when no entry covers it.
    pub fn lookup(&self, rid: u16) -> Option<(u32, StreamId)> {
        let masked = u32::from(rid) & self.mask;
        self.entries
            .iter()
            .find_map(|e| e.translate(masked).map(|sid| (e.iommu, sid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(mask: u32, entries: &[(u32, u32, u32, u32)]) -> IommuMap {
        IommuMap {
            mask,
            entries: entries
                .iter()
                .map(|&(rid_base, iommu, sid_base, length)| IommuMapEntry {
                    rid_base,
                    iommu,
                    sid_base,
                    length,
                })
                .collect(),
        }
    }

    #[test]
    fn qemu_virt_identity_map() {
        let m = map(u32::MAX, &[(0, 0x8004, 0, 0x10000)]);
        assert_eq!(m.lookup(0x08), Some((0x8004, StreamId(0x8))));
        assert_eq!(m.lookup(0x10), Some((0x8004, StreamId(0x10))));
        assert_eq!(m.lookup(0xffff), Some((0x8004, StreamId(0xffff))));
    }

    #[test]
    fn several_entries_with_offsets_and_a_hole() {
        // Bus 0 -> SIDs 0x100.., bus 2 -> SIDs 0x400.. of another IOMMU, bus 1 uncovered.
        let m = map(
            u32::MAX,
            &[(0x000, 1, 0x100, 0x100), (0x200, 2, 0x400, 0x100)],
        );
        assert_eq!(m.lookup(0x008), Some((1, StreamId(0x108))));
        assert_eq!(m.lookup(0x108), None, "bus 1 has no StreamID");
        assert_eq!(m.lookup(0x210), Some((2, StreamId(0x410))));
        assert_eq!(m.lookup(0x300), None);
    }

    #[test]
    fn the_mask_is_applied_before_the_lookup() {
        // Only the function number survives the mask: all functions of all devices share 8 SIDs.
        let m = map(0x7, &[(0, 1, 0x20, 8)]);
        assert_eq!(m.lookup(0x0b), Some((1, StreamId(0x23))));
    }

    #[test]
    fn an_empty_map_gives_no_stream_ids() {
        assert_eq!(IommuMap::empty().lookup(8), None);
    }
}
