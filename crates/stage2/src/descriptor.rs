//! Stage-2 translation table descriptors: VMSAv8-64, 4 KiB granule, 48-bit output addresses.
//!
//! Pure encoders and decoders over plain `u64` words (Arm ARM D8.3, "Translation table descriptor
//! formats", stage-2 variants). Nothing here touches memory, so every bit position is pinned by
//! host tests.
//!
//! | bits    | table (levels 0..=2)   | block (levels 1, 2) / page (level 3)              |
//! |---------|------------------------|---------------------------------------------------|
//! | 0       | valid = 1              | valid = 1                                         |
//! | 1       | 1 (table)              | 0 = block at levels 1-2, 1 = page at level 3      |
//! | 5:2     | ignored                | MemAttr\[3:0\]                                    |
//! | 7:6     | ignored                | S2AP\[1:0\]                                       |
//! | 9:8     | ignored                | SH\[1:0\]                                         |
//! | 10      | ignored                | AF                                                |
//! | 47:12   | next-level table       | output address (blocks: bits below the size RES0) |
//! | 54:53   | RES0 at stage 2        | XN\[1:0\]                                         |

use iommu_core::{Access, PhysAddr};

/// Descriptor bit 0, valid (Arm ARM D8.3). With it clear the entry is a translation fault and
/// the walker ignores every other bit; such entries are never cached (IHI 0070 §3.21.1).
pub const VALID: u64 = 1 << 0;

/// Descriptor bit 1, the type bit (Arm ARM D8.3): at levels 0..=2 set means a table descriptor and
/// clear a block descriptor; at level 3 it must be set (a page descriptor; clear is reserved).
pub const TYPE_TABLE_OR_PAGE: u64 = 1 << 1;

/// Bits \[47:12\]: the next-level table address of a table descriptor, or the output address of a
/// block or page (Arm ARM D8.3, 4 KiB granule without FEAT_LPA2, so at most 48 OA bits).
pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Number of output-address bits a descriptor can carry in this format (see [`OA_MASK`]).
pub const OA_BITS: u8 = 48;

/// Bit position of the stage-2 MemAttr\[3:0\] field, descriptor bits \[5:2\] (Arm ARM D8.3, the
/// meaning of the encoding is in D8.5 "stage 2 memory type and Cacheability attributes").
pub const MEMATTR_SHIFT: u32 = 2;
/// Mask of MemAttr\[3:0\] in a descriptor.
pub const MEMATTR_MASK: u64 = 0b1111 << MEMATTR_SHIFT;
/// MemAttr = 0b1111 with HCR_EL2.FWB / STE FWB = 0: Normal memory, MemAttr\[3:2\] = 0b11 Outer
/// Write-Back Cacheable, MemAttr\[1:0\] = 0b11 Inner Write-Back Cacheable (Arm ARM D8.5).
pub const MEMATTR_NORMAL_WB: u64 = 0b1111;
/// MemAttr = 0b0001 with FWB = 0: Device-nGnRE memory (Arm ARM D8.5), for
/// [`Access::DEVICE`] leaves (a pass-through device's registers in a guest's CPU stage 2).
pub const MEMATTR_DEVICE_NGNRE: u64 = 0b0001;

/// S2AP\[0\], descriptor bit 6: the stage-2 mapping grants read access (Arm ARM D8.3; the access
/// permission model is in D8.4).
pub const S2AP_READ: u64 = 1 << 6;
/// S2AP\[1\], descriptor bit 7: the stage-2 mapping grants write access (Arm ARM D8.3, D8.4).
pub const S2AP_WRITE: u64 = 1 << 7;

/// Bit position of the SH\[1:0\] Shareability field, descriptor bits \[9:8\] (Arm ARM D8.3).
pub const SH_SHIFT: u32 = 8;
/// Mask of SH\[1:0\] in a descriptor.
pub const SH_MASK: u64 = 0b11 << SH_SHIFT;
/// SH = 0b11: Inner Shareable (Arm ARM D8.5).
pub const SH_INNER: u64 = 0b11;

/// Descriptor bit 10, the Access Flag (Arm ARM D8.3). Set on every leaf we write: without hardware
/// AF management (QEMU has no HTTU) a leaf with AF = 0 raises an Access flag fault.
pub const AF: u64 = 1 << 10;

/// Bit position of the stage-2 XN\[1:0\] field, descriptor bits \[54:53\] (Arm ARM D8.3, FEAT_XNX
/// encoding; without FEAT_XNX bit 53 is RES0 and bit 54 alone is XN, which our two values respect).
pub const XN_SHIFT: u32 = 53;
/// Mask of XN\[1:0\] in a descriptor.
pub const XN_MASK: u64 = 0b11 << XN_SHIFT;
/// XN = 0b00: executable at EL1 and EL0 (Arm ARM D8.4).
pub const XN_EXECUTE: u64 = 0b00;
/// XN = 0b10: execute-never at both EL1 and EL0 (Arm ARM D8.4).
pub const XN_NEVER: u64 = 0b10;

/// The last level of a 4 KiB-granule walk, whose valid entries are pages.
pub const LEAF_LEVEL: u8 = 3;

/// One decoded stage-2 descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Descriptor {
    /// Not valid, or a reserved encoding (a level-0 block, a level-3 entry with the type bit
    /// clear): the walker reports a translation fault.
    Invalid,
    /// A table descriptor pointing at the next-level table.
    Table {
        /// Physical address of the next-level table.
        next: PhysAddr,
    },
    /// A block (levels 1 and 2) or page (level 3) descriptor.
    Leaf {
        /// Output address of the first byte the leaf maps.
        pa: PhysAddr,
        /// Permissions decoded from S2AP and XN.
        access: Access,
    },
}

/// Encodes a table descriptor for levels 0..=2 (Arm ARM D8.3). Stage-2 table descriptors carry no
/// hierarchical attributes, so the word is the next table's address with valid and type set.
pub const fn encode_table(next: PhysAddr) -> u64 {
    (next.0 & OA_MASK) | TYPE_TABLE_OR_PAGE | VALID
}

/// The attribute bits every leaf we write carries for `access`: Normal Write-Back memory, Inner
/// Shareable, AF = 1, S2AP from READ/WRITE, and XN = 0b10 unless EXEC is granted.
///
/// [`Access::DEVICE`] leaves are Device-nGnRE instead (Arm ARM D8.5; SH is ignored for Device
/// memory and written as Inner Shareable all the same).
#[inline(always)]
pub const fn leaf_attributes(access: Access) -> u64 {
    let mut bits = (MEMATTR_NORMAL_WB << MEMATTR_SHIFT) | (SH_INNER << SH_SHIFT) | AF;
    if access.contains(Access::READ) {
        bits |= S2AP_READ;
    }
    if access.contains(Access::WRITE) {
        bits |= S2AP_WRITE;
    }
    let xn = if access.contains(Access::EXEC) {
        XN_EXECUTE
    } else {
        XN_NEVER
    };
    bits |= xn << XN_SHIFT;
    if access.contains(Access::DEVICE) {
        device_memory(bits)
    } else {
        bits
    }
}

/// `bits` with MemAttr Device-nGnRE instead of Normal Write-Back: out of line, because the hot
/// map path never takes it (folded in, it cost a third more instructions per page in
/// `cargo bench -p stage2`, `map_4k_each`).
#[cold]
#[inline(never)]
const fn device_memory(bits: u64) -> u64 {
    (bits & !MEMATTR_MASK) | (MEMATTR_DEVICE_NGNRE << MEMATTR_SHIFT)
}

/// Encodes a block descriptor (levels 1 and 2) mapping to `pa` (Arm ARM D8.3): type bit clear.
#[inline(always)]
pub const fn encode_block(pa: PhysAddr, access: Access) -> u64 {
    (pa.0 & OA_MASK) | leaf_attributes(access) | VALID
}

/// Encodes a page descriptor (level 3) mapping to `pa` (Arm ARM D8.3): type bit set.
#[inline(always)]
pub const fn encode_page(pa: PhysAddr, access: Access) -> u64 {
    (pa.0 & OA_MASK) | leaf_attributes(access) | TYPE_TABLE_OR_PAGE | VALID
}

/// Encodes the leaf for `level`: a page at [`LEAF_LEVEL`], a block above it.
pub const fn encode_leaf(level: u8, pa: PhysAddr, access: Access) -> u64 {
    if level == LEAF_LEVEL {
        encode_page(pa, access)
    } else {
        encode_block(pa, access)
    }
}

/// The permissions a leaf word grants: READ from S2AP\[0\], WRITE from S2AP\[1\], EXEC when XN is
/// 0b00, DEVICE when MemAttr is Device-nGnRE.
#[inline(always)]
pub const fn decode_access(raw: u64) -> Access {
    let mut access = Access::empty();
    if raw & S2AP_READ != 0 {
        access = access.union(Access::READ);
    }
    if raw & S2AP_WRITE != 0 {
        access = access.union(Access::WRITE);
    }
    if (raw & XN_MASK) >> XN_SHIFT == XN_EXECUTE {
        access = access.union(Access::EXEC);
    }
    if (raw & MEMATTR_MASK) >> MEMATTR_SHIFT == MEMATTR_DEVICE_NGNRE {
        access = access.union(Access::DEVICE);
    }
    access
}

/// Decodes the word `raw` found in a table at `level` (0..=3) the way a 4 KiB-granule stage-2
/// walker would (Arm ARM D8.3). Reserved encodings decode as [`Descriptor::Invalid`]; a block's
/// output address is aligned down to its size, ignoring the RES0 bits below it.
#[inline(always)]
pub const fn decode(level: u8, raw: u64) -> Descriptor {
    if raw & VALID == 0 {
        return Descriptor::Invalid;
    }
    let is_type_set = raw & TYPE_TABLE_OR_PAGE != 0;
    match (level, is_type_set) {
        (0..=2, true) => Descriptor::Table {
            next: PhysAddr(raw & OA_MASK),
        },
        (LEAF_LEVEL, true) => Descriptor::Leaf {
            pa: PhysAddr(raw & OA_MASK),
            access: decode_access(raw),
        },
        (1 | 2, false) => {
            let size_mask = (1u64 << crate::geometry::level_shift(level)) - 1;
            Descriptor::Leaf {
                pa: PhysAddr(raw & OA_MASK & !size_mask),
                access: decode_access(raw),
            }
        }
        _ => Descriptor::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_positions_match_the_arm_arm() {
        assert_eq!(VALID, 0x1);
        assert_eq!(TYPE_TABLE_OR_PAGE, 0x2);
        assert_eq!(MEMATTR_MASK, 0x3c);
        assert_eq!(S2AP_READ, 0x40);
        assert_eq!(S2AP_WRITE, 0x80);
        assert_eq!(SH_MASK, 0x300);
        assert_eq!(AF, 0x400);
        assert_eq!(XN_MASK, 0x0060_0000_0000_0000);
        assert_eq!(OA_MASK.count_ones(), 36);
        assert_eq!(OA_MASK.trailing_zeros(), 12);
    }

    #[test]
    fn read_write_page_word_is_exact() {
        // valid|page 0x3, MemAttr 0b1111 0x3c, S2AP RW 0xc0, SH inner 0x300, AF 0x400, XN 0b10.
        let raw = encode_page(PhysAddr(0x1234_5000), Access::RW);
        assert_eq!(raw, 0x0040_0000_1234_57ff);
    }

    #[test]
    fn block_word_has_type_bit_clear() {
        let raw = encode_block(PhysAddr(0x4020_0000), Access::RW);
        assert_eq!(raw, 0x0040_0000_4020_07fd);
        assert_eq!(encode_leaf(2, PhysAddr(0x4020_0000), Access::RW), raw);
        assert_eq!(
            encode_leaf(3, PhysAddr(0x4020_0000), Access::RW),
            raw | TYPE_TABLE_OR_PAGE
        );
    }

    #[test]
    fn permissions_map_to_s2ap_and_xn() {
        let ro = encode_page(PhysAddr(0x1000), Access::READ);
        assert_eq!(ro & (S2AP_READ | S2AP_WRITE), S2AP_READ);
        let wo = encode_page(PhysAddr(0x1000), Access::WRITE);
        assert_eq!(wo & (S2AP_READ | S2AP_WRITE), S2AP_WRITE);
        assert_eq!((ro & XN_MASK) >> XN_SHIFT, 0b10);
        let rx = encode_page(PhysAddr(0x1000), Access::READ | Access::EXEC);
        assert_eq!(rx & XN_MASK, 0);
        assert_eq!(rx, 0x0000_0000_0000_177f);
    }

    #[test]
    fn device_leaves_are_device_ngnre_and_normal_leaves_write_back() {
        let dev = encode_page(PhysAddr(0x1000), Access::RW | Access::DEVICE);
        assert_eq!((dev & MEMATTR_MASK) >> MEMATTR_SHIFT, 0b0001);
        let ram = encode_page(PhysAddr(0x1000), Access::RW);
        assert_eq!((ram & MEMATTR_MASK) >> MEMATTR_SHIFT, 0b1111);
    }

    #[test]
    fn table_word_is_address_and_type() {
        assert_eq!(encode_table(PhysAddr(0x8_0000_3000)), 0x0000_0008_0000_3003);
        assert_eq!(
            decode(0, 0x0000_0008_0000_3003),
            Descriptor::Table {
                next: PhysAddr(0x8_0000_3000)
            }
        );
    }

    #[test]
    fn decode_round_trips_every_access() {
        for bits in 1..16u8 {
            let access = Access::from_bits_truncate(bits);
            let pa = PhysAddr(0xfff_ffe0_0000);
            assert_eq!(
                decode(3, encode_page(pa, access)),
                Descriptor::Leaf { pa, access }
            );
            assert_eq!(
                decode(2, encode_block(pa, access)),
                Descriptor::Leaf { pa, access }
            );
        }
    }

    #[test]
    fn decode_follows_the_level() {
        let page = encode_page(PhysAddr(0x4000_0000), Access::RW);
        // The same word is a table descriptor at levels 0..=2 and a page at level 3.
        assert_eq!(
            decode(2, page),
            Descriptor::Table {
                next: PhysAddr(0x4000_0000)
            }
        );
        // Blocks are reserved at level 0 and a type-0 word is reserved at level 3.
        let block = encode_block(PhysAddr(0x4000_0000), Access::RW);
        assert_eq!(decode(0, block), Descriptor::Invalid);
        assert_eq!(decode(3, block), Descriptor::Invalid);
        assert_eq!(
            decode(1, block),
            Descriptor::Leaf {
                pa: PhysAddr(0x4000_0000),
                access: Access::RW
            }
        );
        assert_eq!(decode(1, block & !VALID), Descriptor::Invalid);
        assert_eq!(decode(2, 0), Descriptor::Invalid);
    }

    #[test]
    fn block_output_address_ignores_bits_below_the_block_size() {
        let raw = encode_block(PhysAddr(0x4000_0000), Access::READ) | 0x1000;
        assert_eq!(
            decode(2, raw),
            Descriptor::Leaf {
                pa: PhysAddr(0x4000_0000),
                access: Access::READ
            }
        );
    }
}
