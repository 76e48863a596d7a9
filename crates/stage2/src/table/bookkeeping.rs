//! Per-table bookkeeping: how many entries of each table are valid, kept beside the tables where
//! the SMMU never looks.
//!
//! # Where the counts live, and why there
//! Every table `T` below the root has one 64-bit `Meta` word: its count of valid entries, its
//! count of table descriptors, and the address of its own *side page*. That word is not in `T`
//! and not in any descriptor: it is word `i` of the side page of `T`'s parent, where `i` is the
//! index of the parent's entry that links `T`. A side page is a plain 4 KiB page from the same
//! [`DmaMemory`](iommu_core::DmaMemory), 512 `Meta` words, one per entry of the table it
//! belongs to; the root's `Meta` is a field of [`Stage2Table`](crate::Stage2Table).
//!
//! * **Hardware never reads it.** No descriptor points at a side page, so no walk reaches one.
//!   The alternative, a count in the descriptors' software bits, was rejected: a stage-2 leaf has
//!   only bits \[58:55\] reserved for software (Arm ARM D8.3, "Stage 2 Block and Page
//!   descriptor" upper attributes), four bits where a count up to 512 needs ten; a table
//!   descriptor has more ignored bits (\[11:2\], \[58:51\], Arm ARM D8.3 "Table descriptor
//!   format"), but bit 10 becomes the table Access flag with FEAT_HAFT and bits \[9:8\] part of
//!   the next-level address with FEAT_LPA2, and every count change would rewrite a live
//!   descriptor that the SMMU may be walking (and clean it to memory on a non-coherent SMMU).
//! * **Found on the way down.** A walk that reads the descriptor of entry `i` reads word `i` of the
//!   same table's side page next: no search, no hash, one extra read per level.
//! * **Bounded, and only where needed.** A table has a side page only while it links at least one
//!   table (so leaf tables, tables of blocks only, and the root of a block-only domain have none):
//!   at most one side page per table that itself points at tables, that is at most 1/512 of the
//!   tables of a dense mapping and at most the level count minus one for each lone page. The side
//!   page is allocated with the first child table (in the same all-or-nothing reservation as the
//!   table) and given up with the last one; like an unlinked table it is freed by
//!   [`Stage2Table::reclaim`](crate::Stage2Table::reclaim), so an unmap frees nothing.
//!
//! The counts replace scans: an unmap knows a table became empty when its count reaches zero, and
//! unlinking a whole table of pages adds `count × 4 KiB` to the bytes removed without reading the
//! table, except its first and last valid entries for the invalidation range.

use crate::descriptor::OA_MASK;
use iommu_core::PhysAddr;

/// Bits \[10:1\]: valid entries (0..=512). Bit 0 stays clear.
const LIVE_SHIFT: u32 = 1;
/// Bit 11: the table has a side page, at bits \[47:12\].
const HAS_SIDE: u64 = 1 << 11;
/// Bits \[57:48\]: table descriptors among the valid entries.
const TABLES_SHIFT: u32 = 48;
/// A 10-bit count.
const COUNT_MASK: u64 = 0x3ff;

/// The bookkeeping of one table.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Meta {
    /// Valid entries (leaves and table descriptors).
    pub(crate) live: u64,
    /// Valid entries that are table descriptors.
    pub(crate) tables: u64,
    /// The side page holding the [`Meta`] of each child table; present exactly while
    /// `tables > 0`.
    pub(crate) side: Option<PhysAddr>,
}

impl Meta {
    /// A new, empty table.
    pub(crate) const EMPTY: Self = Self {
        live: 0,
        tables: 0,
        side: None,
    };

    /// Reads a word of a side page.
    pub(crate) const fn decode(word: u64) -> Self {
        Self {
            live: (word >> LIVE_SHIFT) & COUNT_MASK,
            tables: (word >> TABLES_SHIFT) & COUNT_MASK,
            side: if word & HAS_SIDE != 0 {
                Some(PhysAddr(word & OA_MASK))
            } else {
                None
            },
        }
    }

    /// The word for a side page. Bit 0 is always clear, so the word never looks like a valid
    /// descriptor to anyone who mistakes a side page for a table.
    pub(crate) const fn encode(self) -> u64 {
        let side = match self.side {
            Some(pa) => (pa.0 & OA_MASK) | HAS_SIDE,
            None => 0,
        };
        side | (self.live & COUNT_MASK) << LIVE_SHIFT | (self.tables & COUNT_MASK) << TABLES_SHIFT
    }

    /// Address of the word in this table's side page for child entry `index`.
    ///
    /// # Panics
    /// When the table has no side page: only called for an entry that holds a table descriptor,
    /// and a table with one always has a side page.
    pub(crate) fn child_word(&self, index: u64) -> PhysAddr {
        match self.side {
            Some(side) => PhysAddr(side.0 + 8 * index),
            None => panic!("stage2: a table links a table but has no side page"),
        }
    }
}

/// One valid entry, as a difference of encoded words: the fast paths count in the word itself.
pub(crate) const ONE_LIVE: u64 = 1 << LIVE_SHIFT;

/// The valid-entry count of an encoded word.
pub(crate) const fn live_of(word: u64) -> u64 {
    (word >> LIVE_SHIFT) & COUNT_MASK
}

/// [`Meta::child_word`] of an encoded word.
pub(crate) fn child_word_of(word: u64, index: u64) -> PhysAddr {
    Meta::decode(word).child_word(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_are_never_valid_descriptors() {
        for meta in [
            Meta::EMPTY,
            Meta {
                live: 512,
                tables: 512,
                side: Some(PhysAddr(0xffff_ffff_f000)),
            },
            Meta {
                live: 3,
                tables: 1,
                side: Some(PhysAddr(0)),
            },
            Meta {
                live: 511,
                tables: 0,
                side: None,
            },
        ] {
            let word = meta.encode();
            assert_eq!(Meta::decode(word), meta);
            assert_eq!(word & crate::descriptor::VALID, 0);
        }
        assert_eq!(Meta::decode(0), Meta::EMPTY);
    }
}
