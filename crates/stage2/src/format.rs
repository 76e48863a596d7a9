//! One walker, several descriptor formats: the seam between [`Stage2Table`](crate::Stage2Table)'s
//! walker and the table-entry formats it writes, in the manner of Linux's
//! `drivers/iommu/generic_pt` (the radix walk written once, each IOMMU format a handful of
//! inline encode/decode functions beside it).
//!
//! Both formats here share the walk geometry of [`geometry`](crate::geometry): a 4 KiB granule,
//! 512 eight-byte entries per table, levels 0 (512 GiB per entry) to 3 (4 KiB pages). What
//! differs is only the meaning of the bits of one entry, which is what [`PtFormat`] abstracts:
//!
//! * [`Vmsav8`]: VMSAv8-64 stage 2 (Arm ARM D8.3), for the SMMUv3; the default format of
//!   [`Stage2Table`](crate::Stage2Table), a zero-sized type whose methods inline to the
//!   constants of [`descriptor`] (no more code than before);
//! * [`VtdSecondLevel`]: Intel VT-d second-level paging entries (VT-d spec §9.8), for a VT-d
//!   remapping unit in legacy mode, with superpages as CAP.SLLPS allows and SNP as ECAP.SC
//!   allows (a run-time value, hence `&self` rather than associated constants).
//!
//! What the walker may rely on, for every format:
//! * a word of 0 is not present, and so is any 4 KiB-aligned address with the low 12 bits clear
//!   (the link word the table threads through retired tables must never read
//!   as a present entry);
//! * [`PtFormat::decode`] of [`PtFormat::encode_table`] is that table at levels 0..=2, and of
//!   `leaf_bits(level, access) | pa` is that leaf with the same access, at every level from
//!   [`PtFormat::min_block_level`] to 3.

use crate::descriptor::{self, Descriptor};
use iommu_core::{Access, PhysAddr};

/// One decoded table entry, whatever the format: not present, a table, or a leaf.
pub type Entry = Descriptor;

/// A radix-table descriptor format with a 4 KiB granule and 9 bits per level; levels are
/// numbered 0 (512 GiB entries) to 3 (4 KiB pages).
pub trait PtFormat: Copy + core::fmt::Debug {
    /// Whether `raw` is a present entry, one the IOMMU would follow or translate through
    /// (VMSAv8: valid bit set; VT-d: R or W set, so a write-only leaf has bit 0 clear).
    fn is_present(&self, raw: u64) -> bool;
    /// Decodes a word found in a table at `level`.
    fn decode(&self, level: u8, raw: u64) -> Entry;
    /// A table entry pointing at the table at `next` (levels 0..=2).
    fn encode_table(&self, next: PhysAddr) -> u64;
    /// The bits of a leaf at `level` granting `access`, without its address (OR the output
    /// address in).
    fn leaf_bits(&self, level: u8, access: Access) -> u64;
    /// The highest level (smallest number) that may hold a leaf: 1 with 1 GiB blocks, 2 with
    /// 2 MiB blocks only, 3 with pages only.
    fn min_block_level(&self) -> u8;
    /// Output-address bits an entry can carry.
    fn oa_bits(&self) -> u8;
    /// Whether the IOMMU can start a walk with a root table at `level` (VT-d has no 2-level
    /// table: its AGAW is 39 or 48 bits).
    fn root_level_ok(&self, level: u8) -> bool {
        level <= 2
    }
}

/// VMSAv8-64 stage 2 (Arm ARM D8.3), as [`descriptor`] encodes it: 1 GiB and 2 MiB blocks,
/// 48 output-address bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vmsav8;

impl PtFormat for Vmsav8 {
    #[inline(always)]
    fn is_present(&self, raw: u64) -> bool {
        raw & descriptor::VALID != 0
    }
    #[inline(always)]
    fn decode(&self, level: u8, raw: u64) -> Entry {
        descriptor::decode(level, raw)
    }
    #[inline(always)]
    fn encode_table(&self, next: PhysAddr) -> u64 {
        descriptor::encode_table(next)
    }
    #[inline(always)]
    fn leaf_bits(&self, level: u8, access: Access) -> u64 {
        // A page sets the type bit that a block clears (Arm ARM D8.3).
        if level == descriptor::LEAF_LEVEL {
            descriptor::encode_page(PhysAddr(0), access)
        } else {
            descriptor::encode_block(PhysAddr(0), access)
        }
    }
    #[inline(always)]
    fn min_block_level(&self) -> u8 {
        // Level 0 blocks need FEAT_LPA2 (Arm ARM D8.3), which we do not use.
        crate::geometry::MIN_BLOCK_LEVEL
    }
    #[inline(always)]
    fn oa_bits(&self) -> u8 {
        descriptor::OA_BITS
    }
}

/// Intel VT-d second-level paging entries (VT-d spec §9.8, "Second-Stage Paging Entries", legacy
/// mode), superpages as CAP.SLLPS allows.
///
/// | bits  | table entry (PML4E, PDPE, PDE) | leaf (PDPE/PDE with PS = 1, PTE)             |
/// |-------|--------------------------------|----------------------------------------------|
/// | 0     | R: reads may pass              | R: read permission                           |
/// | 1     | W: writes may pass             | W: write permission                          |
/// | 7     | PS = 0                         | PS = 1 for 2 MiB / 1 GiB; ignored in a PTE   |
/// | 11    | ignored                        | SNP (only with ECAP.SC)                      |
/// | 51:12 | next table                     | page frame (superpages: low bits reserved)   |
///
/// An entry with R = W = 0 is not present. The unit ANDs R and W along the walk, so table
/// entries carry both and the leaf decides. The walker's level 0..=3 is VT-d's level 4 (PML4E)
/// down to 1 (PTE). EMT/IPAT (bits 6:3) and TM (bit 62) are left 0. The bit positions are
/// restated here rather than taken from the `vtd` crate, whose emulated unit decodes entries
/// with its own copy: two readings of §9.8 that the host tests check against each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtdSecondLevel {
    /// CAP.SLLPS bit 0 (VT-d §11.4.2): 2 MiB superpages (a PDE with PS = 1).
    pub superpage_2m: bool,
    /// CAP.SLLPS bit 1: 1 GiB superpages (a PDPE with PS = 1); used only together with 2 MiB
    /// ones, so that the walker's "largest leaf that fits" never skips a level.
    pub superpage_1g: bool,
    /// ECAP.SC (VT-d §11.4.3, snoop control): set SNP in every leaf, so the unit snoops the
    /// processor caches for the page even when the request says No Snoop. Without ECAP.SC the
    /// bit is reserved and must stay 0.
    pub snoop: bool,
}

impl VtdSecondLevel {
    /// Bit 0, R: read permission (VT-d §9.8). In a table entry, reads may pass to the next level.
    pub const R: u64 = 1 << 0;
    /// Bit 1, W: write permission (VT-d §9.8); likewise for writes in a table entry.
    pub const W: u64 = 1 << 1;
    /// Bit 7, PS: set in a PDPE or PDE that maps a 1 GiB or 2 MiB superpage (VT-d §9.8).
    pub const PS: u64 = 1 << 7;
    /// Bit 11, SNP: snoop behaviour of a leaf (VT-d §9.8), honoured with ECAP.SC.
    pub const SNP: u64 = 1 << 11;
    /// Bits 51:12: next-table address or page frame (VT-d §9.8, at most 52 address bits).
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    /// Output-address bits an entry can carry.
    pub const OA_BITS: u8 = 52;
}

impl PtFormat for VtdSecondLevel {
    #[inline]
    fn is_present(&self, raw: u64) -> bool {
        raw & (Self::R | Self::W) != 0
    }
    #[inline]
    fn decode(&self, level: u8, raw: u64) -> Entry {
        if !self.is_present(raw) {
            return Entry::Invalid;
        }
        // PS makes a PDPE or PDE a leaf; in a PML4E it is reserved, and in a PTE ignored.
        let leaf = level == 3 || (level > 0 && raw & Self::PS != 0);
        if !leaf {
            return Entry::Table {
                next: PhysAddr(raw & Self::ADDR_MASK),
            };
        }
        let size_mask = crate::geometry::level_size(level) - 1;
        let mut access = Access::empty();
        if raw & Self::R != 0 {
            access = access.union(Access::READ);
        }
        if raw & Self::W != 0 {
            access = access.union(Access::WRITE);
        }
        Entry::Leaf {
            pa: PhysAddr(raw & Self::ADDR_MASK & !size_mask),
            access,
        }
    }
    #[inline]
    fn encode_table(&self, next: PhysAddr) -> u64 {
        (next.0 & Self::ADDR_MASK) | Self::R | Self::W
    }
    #[inline]
    fn leaf_bits(&self, level: u8, access: Access) -> u64 {
        // READ → R, WRITE → W; EXEC and DEVICE have no second-level encoding.
        let mut bits = 0;
        if access.contains(Access::READ) {
            bits |= Self::R;
        }
        if access.contains(Access::WRITE) {
            bits |= Self::W;
        }
        if level < 3 {
            bits |= Self::PS;
        }
        if self.snoop {
            bits |= Self::SNP;
        }
        bits
    }
    #[inline]
    fn min_block_level(&self) -> u8 {
        match (self.superpage_2m, self.superpage_1g) {
            (true, true) => 1,
            (true, false) => 2,
            _ => 3,
        }
    }
    #[inline]
    fn oa_bits(&self) -> u8 {
        Self::OA_BITS
    }
    #[inline]
    fn root_level_ok(&self, level: u8) -> bool {
        // A 4-level table (AGAW 48, root at walker level 0) or a 3-level one (AGAW 39, level 1);
        // VT-d §3.6 / CAP.SAGAW: there is no 2-level second-level table.
        level <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite every format must pass (as generic_pt runs one kunit suite per format).
    fn suite(fmt: impl PtFormat) {
        for level in fmt.min_block_level()..=3 {
            let size_bits = 12 + 9 * (3 - u32::from(level));
            let pa = 0x40u64 << size_bits;
            for access in [Access::READ, Access::WRITE, Access::RW] {
                let raw = fmt.leaf_bits(level, access) | pa;
                assert!(fmt.is_present(raw));
                assert_eq!(
                    fmt.decode(level, raw),
                    Entry::Leaf {
                        pa: PhysAddr(pa),
                        access
                    },
                    "{fmt:?} level {level} {access:?}"
                );
            }
        }
        for level in 0..3 {
            let t = fmt.encode_table(PhysAddr(0x1234_5000));
            assert!(fmt.is_present(t));
            assert_eq!(
                fmt.decode(level, t),
                Entry::Table {
                    next: PhysAddr(0x1234_5000)
                }
            );
        }
        for level in 0..=3 {
            // Zero and a page-chain link (a 4 KiB-aligned address) are not present.
            for raw in [0, 0x1234_5000] {
                assert!(!fmt.is_present(raw));
                assert_eq!(fmt.decode(level, raw), Entry::Invalid);
            }
        }
        assert!(fmt.oa_bits() >= 48);
    }

    const VTD: [VtdSecondLevel; 4] = [
        VtdSecondLevel {
            superpage_2m: true,
            superpage_1g: true,
            snoop: false,
        },
        VtdSecondLevel {
            superpage_2m: true,
            superpage_1g: false,
            snoop: false,
        },
        VtdSecondLevel {
            superpage_2m: false,
            superpage_1g: false,
            snoop: false,
        },
        VtdSecondLevel {
            superpage_2m: true,
            superpage_1g: true,
            snoop: true,
        },
    ];

    #[test]
    fn both_formats_pass_the_shared_suite() {
        suite(Vmsav8);
        for fmt in VTD {
            suite(fmt);
        }
    }

    #[test]
    fn vtd_bit_positions_match_section_9_8() {
        let f = VTD[0];
        assert_eq!(f.leaf_bits(3, Access::RW) | 0x1234_5000, 0x1234_5003);
        assert_eq!(f.leaf_bits(2, Access::READ) | 0x4020_0000, 0x4020_0081);
        assert_eq!(f.leaf_bits(1, Access::WRITE) | 0x4000_0000, 0x4000_0082);
        assert_eq!(f.encode_table(PhysAddr(0x8_0000_1000)), 0x8_0000_1003);
        // A write-only page has bit 0 clear and is present all the same.
        assert!(f.is_present(0x5002));
        assert!(!Vmsav8.is_present(0x5002));
        // EXEC and DEVICE have no encoding; SNP only with snoop control.
        let all = Access::RW | Access::EXEC | Access::DEVICE;
        assert_eq!(f.leaf_bits(3, all), 0x3);
        assert_eq!(VTD[3].leaf_bits(3, Access::READ), 0x801);
        // PS in a PML4E is not a leaf; PS is ignored in a PTE.
        assert!(matches!(f.decode(0, 0x5000 | 0x81), Entry::Table { .. }));
        assert_eq!(
            f.decode(3, 0x5000 | 0x82),
            Entry::Leaf {
                pa: PhysAddr(0x5000),
                access: Access::WRITE
            }
        );
    }

    #[test]
    fn vtd_superpage_levels_follow_sllps_and_roots_are_3_or_4_levels() {
        let levels: Vec<u8> = VTD[..3].iter().map(|f| f.min_block_level()).collect();
        assert_eq!(levels, [1, 2, 3]);
        assert!(VTD[0].root_level_ok(0) && VTD[0].root_level_ok(1));
        assert!(!VTD[0].root_level_ok(2));
        assert!(Vmsav8.root_level_ok(2));
    }
}
