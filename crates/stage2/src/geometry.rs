//! Walk geometry of the 4 KiB granule (Arm ARM D8.2): every table is one 4 KiB page of 512
//! eight-byte entries, and each level resolves 9 bits of the input address.

use iommu_core::PhysAddr;

/// log2 of the granule: the page offset is bits \[11:0\].
pub const PAGE_SHIFT: u32 = 12;
/// Input-address bits resolved per level: 512 entries of 8 bytes fill one 4 KiB table.
pub const BITS_PER_LEVEL: u32 = 9;
/// Entries in one table.
pub const ENTRIES: u64 = 1 << BITS_PER_LEVEL;
/// Bytes of one table.
pub const TABLE_BYTES: usize = 4096;
/// The smallest level that may hold a block with the 4 KiB granule (1 GiB blocks at level 1;
/// level 0 blocks need FEAT_LPA2, Arm ARM D8.3).
pub const MIN_BLOCK_LEVEL: u8 = 1;

/// Lowest input-address bit an entry at `level` (0..=3) resolves: 39, 30, 21, 12.
pub const fn level_shift(level: u8) -> u32 {
    PAGE_SHIFT + BITS_PER_LEVEL * (3 - level as u32)
}

/// Bytes of input address one entry at `level` covers: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// Physical address of the entry for `iova` in the table at `table` of level `level`.
pub const fn entry_addr(table: PhysAddr, level: u8, iova: u64) -> PhysAddr {
    let index = (iova >> level_shift(level)) & (ENTRIES - 1);
    PhysAddr(table.0 + 8 * index)
}

/// Physical address of entry `index` of the table at `table`.
pub const fn entry_at(table: PhysAddr, index: u64) -> PhysAddr {
    PhysAddr(table.0 + 8 * index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_sizes() {
        assert_eq!(level_size(0), 512 << 30);
        assert_eq!(level_size(1), 1 << 30);
        assert_eq!(level_size(2), 2 << 20);
        assert_eq!(level_size(3), 4 << 10);
    }

    #[test]
    fn entry_index_uses_the_level_bits() {
        let iova = (3 << 39) | (5 << 30) | (7 << 21) | (9 << 12) | 0x123;
        let t = PhysAddr(0x10_0000);
        assert_eq!(entry_addr(t, 0, iova), PhysAddr(0x10_0000 + 8 * 3));
        assert_eq!(entry_addr(t, 1, iova), PhysAddr(0x10_0000 + 8 * 5));
        assert_eq!(entry_addr(t, 2, iova), PhysAddr(0x10_0000 + 8 * 7));
        assert_eq!(entry_addr(t, 3, iova), PhysAddr(0x10_0000 + 8 * 9));
        assert_eq!(entry_at(t, 511), PhysAddr(0x10_0ff8));
    }
}
