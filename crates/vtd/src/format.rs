//! One page-table walker, several descriptor formats: the seam between `stage2`'s tuned walker
//! and the descriptor formats it should serve (VMSAv8-64 stage 2 for the SMMUv3, VT-d second
//! level here), in the manner of Linux's `drivers/iommu/generic_pt` (one walker, each format a
//! handful of inline encode/decode functions).
//!
//! **Status: the trait and both formats exist and are tested against one shared suite; the
//! walker (`stage2::Stage2Table`) is not generic over it yet.** The plan, in `stage2`:
//!
//! 1. Move this trait into `stage2` (`stage2::format`), with `Vmsav8` (today's
//!    `stage2::descriptor`) as a zero-sized implementation.
//! 2. `pub struct Stage2Table<F: PtFormat = Vmsav8> { fmt: F, .. }` and the same parameter on the
//!    private `Walk`, `write_leaves`, `first_mapped`, `single_block`, `leaf_run`, `free_tree`,
//!    `audit`: every `decode(level, raw)` becomes `self.fmt.decode(level, raw)`, every
//!    `raw & VALID != 0` becomes `fmt.is_present(raw)`, `encode_page/encode_block(PhysAddr(0),
//!    access)` becomes `fmt.leaf_bits(level, access)`, the split's `| TYPE_TABLE_OR_PAGE`
//!    becomes `fmt.split_bits(block_bits)`, and `MIN_BLOCK_LEVEL` becomes
//!    `fmt.min_block_level()`. `Stage2Table::new` stays in `impl Stage2Table<Vmsav8>`, so
//!    every existing user, test and bench compiles unchanged; `Vmsav8`'s methods are `const`
//!    over a ZST and inline to today's constants, so the walk compiles to the same code (to be
//!    checked with `cargo xtask bench`, instruction counts).
//! 3. `Stage2Table::with_format(mem, cfg, fmt)` builds a VT-d table: the geometry (4 KiB
//!    granule, 9 bits per level, root level 0 for 48 bits and 1 for 39 bits) is the same, so
//!    `Stage2Config { ias_bits: 39 | 48, oas_bits }` already describes a VT-d AGAW.
//! 4. Bookkeeping side pages, deferred free, all-or-nothing maps and the returned
//!    `Invalidation` are format-independent and carry over unchanged; the VT-d backend turns an
//!    `Invalidation` into page-selective IOTLB descriptors (`qi::page_selective_plan`, IH =
//!    `leaf_only`) the way the SMMUv3 backend turns it into TLBI commands.
//!
//! A runtime value (`&self`) rather than associated constants, because the VT-d format's
//! superpage levels come from CAP.SLLPS at run time; for `Vmsav8` the value is a ZST.

use crate::second_level::{self, SlEntry};
use iommu_core::{Access, PhysAddr};

/// One decoded table word, whatever the format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Entry {
    /// Not present / invalid.
    Invalid,
    /// Points at the next-level table.
    Table {
        /// The next table.
        next: PhysAddr,
    },
    /// Maps a page or block.
    Leaf {
        /// Output address (aligned to the leaf's size).
        pa: PhysAddr,
        /// Permissions.
        access: Access,
    },
}

/// A radix-table descriptor format with a 4 KiB granule and 9 bits per level; levels are
/// numbered 0 (512 GiB entries) to 3 (4 KiB pages).
pub trait PtFormat: Copy + core::fmt::Debug {
    /// Whether a word is a present entry (valid / readable-or-writable).
    fn is_present(&self, raw: u64) -> bool;
    /// Decodes a word found at `level`.
    fn decode(&self, level: u8, raw: u64) -> Entry;
    /// A table entry pointing at `next`.
    fn encode_table(&self, next: PhysAddr) -> u64;
    /// The bits of a leaf at `level` with `access`, without its address (OR the address in).
    fn leaf_bits(&self, level: u8, access: Access) -> u64;
    /// The page bits equivalent to `block_bits` (a block split into pages keeps its
    /// permissions).
    fn split_bits(&self, block_bits: u64) -> u64;
    /// The highest level (smallest number) that may hold a leaf: 1 with 1 GiB blocks, 2 with
    /// 2 MiB only, 3 with pages only.
    fn min_block_level(&self) -> u8;
    /// Output-address bits an entry can carry.
    fn oa_bits(&self) -> u8;
}

/// VMSAv8-64 stage 2 (Arm ARM D8.3), as `stage2::descriptor` encodes it: 1 GiB and 2 MiB
/// blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vmsav8;

impl PtFormat for Vmsav8 {
    fn is_present(&self, raw: u64) -> bool {
        raw & stage2::descriptor::VALID != 0
    }
    fn decode(&self, level: u8, raw: u64) -> Entry {
        match stage2::descriptor::decode(level, raw) {
            stage2::descriptor::Descriptor::Invalid => Entry::Invalid,
            stage2::descriptor::Descriptor::Table { next } => Entry::Table { next },
            stage2::descriptor::Descriptor::Leaf { pa, access } => Entry::Leaf { pa, access },
        }
    }
    fn encode_table(&self, next: PhysAddr) -> u64 {
        stage2::descriptor::encode_table(next)
    }
    fn leaf_bits(&self, level: u8, access: Access) -> u64 {
        stage2::descriptor::encode_leaf(level, PhysAddr(0), access)
    }
    fn split_bits(&self, block_bits: u64) -> u64 {
        block_bits | stage2::descriptor::TYPE_TABLE_OR_PAGE
    }
    fn min_block_level(&self) -> u8 {
        1
    }
    fn oa_bits(&self) -> u8 {
        stage2::descriptor::OA_BITS
    }
}

/// VT-d second level (VT-d §9.8), superpages as CAP.SLLPS allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdSecondLevel {
    /// CAP.SLLPS bit 0: 2 MiB superpages.
    pub superpage_2m: bool,
    /// CAP.SLLPS bit 1: 1 GiB superpages (used only with 2 MiB ones).
    pub superpage_1g: bool,
}

impl VtdSecondLevel {
    /// The format a unit with these features walks.
    pub const fn for_unit(features: &crate::Features) -> Self {
        Self {
            superpage_2m: features.superpage_2m,
            superpage_1g: features.superpage_1g,
        }
    }
}

impl PtFormat for VtdSecondLevel {
    fn is_present(&self, raw: u64) -> bool {
        raw & (second_level::SL_R | second_level::SL_W) != 0
    }
    fn decode(&self, level: u8, raw: u64) -> Entry {
        match second_level::decode(level, raw) {
            SlEntry::NotPresent => Entry::Invalid,
            SlEntry::Table { next } => Entry::Table { next },
            SlEntry::Leaf { pa, access } => Entry::Leaf { pa, access },
        }
    }
    fn encode_table(&self, next: PhysAddr) -> u64 {
        second_level::encode_table(next)
    }
    fn leaf_bits(&self, level: u8, access: Access) -> u64 {
        second_level::leaf_bits(level, access)
    }
    fn split_bits(&self, block_bits: u64) -> u64 {
        block_bits & !second_level::SL_PS
    }
    fn min_block_level(&self) -> u8 {
        match (self.superpage_2m, self.superpage_1g) {
            (true, true) => 1,
            (true, false) => 2,
            _ => 3,
        }
    }
    fn oa_bits(&self) -> u8 {
        second_level::SL_OA_BITS
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
                        access: fmt_access(&fmt, access)
                    },
                    "{fmt:?} level {level} {access:?}"
                );
                if level < 3 {
                    let page = fmt.split_bits(fmt.leaf_bits(level, access)) | 0x5000;
                    assert_eq!(
                        fmt.decode(3, page),
                        Entry::Leaf {
                            pa: PhysAddr(0x5000),
                            access: fmt_access(&fmt, access)
                        }
                    );
                }
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
            assert!(!fmt.is_present(0));
            assert_eq!(fmt.decode(level, 0), Entry::Invalid);
        }
        assert!(fmt.oa_bits() >= 48);
    }

    /// What a format keeps of an access (VMSAv8 adds no EXEC unless asked: same set).
    fn fmt_access(_fmt: &impl PtFormat, access: Access) -> Access {
        access
    }

    #[test]
    fn both_formats_pass_the_shared_suite() {
        suite(Vmsav8);
        for (m2, g1) in [(true, true), (true, false), (false, false)] {
            suite(VtdSecondLevel {
                superpage_2m: m2,
                superpage_1g: g1,
            });
        }
    }

    #[test]
    fn vtd_superpage_levels_follow_sllps() {
        let f = |m2, g1| {
            VtdSecondLevel {
                superpage_2m: m2,
                superpage_1g: g1,
            }
            .min_block_level()
        };
        assert_eq!((f(true, true), f(true, false), f(false, false)), (1, 2, 3));
        let qemu =
            crate::Features::decode(0x10, crate::fake::QEMU_CAP, crate::fake::QEMU_ECAP).unwrap();
        assert_eq!(VtdSecondLevel::for_unit(&qemu).min_block_level(), 1);
    }
}
