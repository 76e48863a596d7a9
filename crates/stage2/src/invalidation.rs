//! What the caller must invalidate after a table change: [`Invalidation`] and [`Unmapped`].

use crate::geometry::level_size;
use iommu_core::{Iova, PAGE_SIZE};

/// Most removed leaves an [`Invalidation`] names one by one ([`Invalidation::leaves`]); past it
/// only the range and the levels are kept. An SMMU without range invalidation (IDR3.RIL = 0)
/// can then invalidate leaf by leaf, one CMD_TLBI_S2_IPA per block or page, up to this many.
pub const LEAF_LIST_CAPACITY: usize = 16;

/// The TLB and walk-cache maintenance a table change needs, for the caller to turn into the
/// fewest SMMU commands (e.g. CMD_TLBI_S2_IPA with Leaf and TTL hints, IHI 0070 §4.4.3.1, then
/// CMD_SYNC).
///
/// The SMMU caches valid translations only (IHI 0070 §3.21.1), so writing a previously-invalid
/// entry needs nothing: [`Stage2Table::map`](crate::Stage2Table::map) always returns
/// [`Invalidation::none`]. Removing or replacing a valid descriptor needs an invalidation of the
/// IOVAs it translated, completed before the removed memory can be reused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Invalidation {
    range: Option<(Iova, u64)>,
    leaf_only: bool,
    /// Bit `n` set: a leaf at level `n` was removed or replaced.
    leaf_levels: u8,
    /// The first [`LEAF_LIST_CAPACITY`] removed leaves, each as the first IOVA of its removed
    /// part (4 KiB aligned) with its level in bits \[1:0\]; unused slots are 0.
    leaves: [u64; LEAF_LIST_CAPACITY],
    /// How many of `leaves` are used; `LEAF_LIST_CAPACITY + 1` once more leaves were removed
    /// than the list holds.
    leaf_count: u8,
}

/// `leaf_count` of a list that overflowed.
const LEAVES_OVERFLOWED: u8 = LEAF_LIST_CAPACITY as u8 + 1;

impl Default for Invalidation {
    fn default() -> Self {
        Self::none()
    }
}

impl Invalidation {
    /// Nothing to invalidate.
    pub const fn none() -> Self {
        Self {
            range: None,
            leaf_only: true,
            leaf_levels: 0,
            leaves: [0; LEAF_LIST_CAPACITY],
            leaf_count: 0,
        }
    }

    /// An invalidation of `[iova, iova + len)` after leaves at the levels in `leaf_levels` (bit `n`
    /// = level `n`) were removed, and table descriptors too unless `leaf_only`. The leaves
    /// themselves are added with [`Invalidation::add_leaf`].
    pub(crate) const fn new(iova: Iova, len: u64, leaf_only: bool, leaf_levels: u8) -> Self {
        Self {
            range: Some((iova, len)),
            leaf_only,
            leaf_levels,
            leaves: [0; LEAF_LIST_CAPACITY],
            leaf_count: 0,
        }
    }

    /// Names one removed leaf at `level` by an IOVA it translated (`iova` is aligned down to
    /// 4 KiB); past [`LEAF_LIST_CAPACITY`] the list is marked overflowed.
    pub(crate) fn add_leaf(&mut self, iova: u64, level: u8) {
        let n = usize::from(self.leaf_count);
        if n < LEAF_LIST_CAPACITY {
            self.leaves[n] = (iova & !(PAGE_SIZE - 1)) | u64::from(level & 3);
            self.leaf_count += 1;
        } else {
            self.leaf_count = LEAVES_OVERFLOWED;
        }
    }

    /// Marks the leaf list overflowed (more leaves went than it holds).
    pub(crate) fn overflow_leaves(&mut self) {
        self.leaf_count = LEAVES_OVERFLOWED;
    }

    /// `self` with the leaf list of `from`.
    pub(crate) const fn with_leaves_of(mut self, from: &Self) -> Self {
        self.leaves = from.leaves;
        self.leaf_count = from.leaf_count;
        self
    }

    /// Every removed leaf, as `(an IOVA it translated, its size)`, or `None` when more than
    /// [`LEAF_LIST_CAPACITY`] were removed. One address-based invalidation (CMD_TLBI_S2_IPA
    /// without range, IHI 0070 §4.4.13) per item reaches every stale TLB entry: an entry
    /// is hit by any address it translates, whatever its size. The IOVA is the first one of
    /// the leaf that was removed: for a block split by a partial unmap, the first IOVA of the
    /// hole. Where a table descriptor was removed ([`leaf_only`](Self::leaf_only) is
    /// `false`), a non-leaf invalidation at these addresses also reaches the walk-cache
    /// entries of that table (an emptied table with no leaf removed is named by one of its
    /// IOVAs, at level 3).
    pub fn leaves(&self) -> Option<impl Iterator<Item = (Iova, u64)> + '_> {
        let n = usize::from(self.leaf_count);
        (n <= LEAF_LIST_CAPACITY).then(|| {
            self.leaves[..n].iter().map(|&w| {
                let level = (w & 3) as u8;
                (Iova(w & !(PAGE_SIZE - 1)), level_size(level))
            })
        })
    }

    /// Whether there is nothing to invalidate.
    pub const fn is_none(&self) -> bool {
        self.range.is_none()
    }

    /// The IOVA range `(start, length in bytes)` to invalidate, or `None`. It spans exactly the
    /// IOVAs whose translation was removed (from the lowest to the highest), never the whole table.
    pub const fn range(&self) -> Option<(Iova, u64)> {
        self.range
    }

    /// `true` when only leaf descriptors (blocks, pages) changed, so a leaf-only invalidation
    /// (CMD_TLBI_S2_IPA with Leaf = 1) suffices. `false` when a table descriptor was removed: walk
    /// caches may hold it, and the invalidation must cover non-leaf entries too (Leaf = 0).
    pub const fn leaf_only(&self) -> bool {
        self.leaf_only
    }

    /// The smallest leaf size (4 KiB, 2 MiB or 1 GiB) among the removed or replaced leaves.
    /// Stepping through [`range`](Self::range) by this size, one invalidation per address, reaches
    /// every stale TLB entry. `None` when no leaf was removed.
    pub const fn min_leaf_size(&self) -> Option<u64> {
        if self.leaf_levels == 0 {
            return None;
        }
        // The deepest level has the smallest entries.
        let deepest = 7 - self.leaf_levels.leading_zeros() as u8;
        Some(level_size(deepest))
    }

    /// The TTL hint (IHI 0070 §4.4.1.1: with the 4 KiB granule, TTL = the level of the leaf), when
    /// every removed leaf was at one level and no table descriptor was removed; otherwise `None`,
    /// meaning "no hint" (a wrong hint could leave a stale entry of another size behind).
    pub const fn ttl(&self) -> Option<u8> {
        if !self.leaf_only || self.leaf_levels.count_ones() != 1 {
            return None;
        }
        Some(self.leaf_levels.trailing_zeros() as u8)
    }

    /// The one invalidation that covers both `self` and `other`, so a batch of operations can be
    /// flushed together: the range grows to span both (invalidating the gap between them is
    /// harmless), a table removal in either makes it non-leaf, and the leaf sizes accumulate.
    #[must_use]
    pub const fn merge(self, other: Self) -> Self {
        let range = match (self.range, other.range) {
            (None, r) | (r, None) => r,
            (Some((a, alen)), Some((b, blen))) => {
                let start = if a.0 < b.0 { a.0 } else { b.0 };
                let a_end = a.0 + alen;
                let b_end = b.0 + blen;
                let end = if a_end > b_end { a_end } else { b_end };
                Some((Iova(start), end - start))
            }
        };
        let mut merged = Self {
            range,
            leaf_only: self.leaf_only && other.leaf_only,
            leaf_levels: self.leaf_levels | other.leaf_levels,
            leaves: self.leaves,
            leaf_count: self.leaf_count,
        };
        let (a, b) = (self.leaf_count as usize, other.leaf_count as usize);
        if a > LEAF_LIST_CAPACITY || b > LEAF_LIST_CAPACITY || a + b > LEAF_LIST_CAPACITY {
            merged.leaves = [0; LEAF_LIST_CAPACITY];
            merged.leaf_count = LEAVES_OVERFLOWED;
        } else {
            let mut i = 0;
            while i < b {
                merged.leaves[a + i] = other.leaves[i];
                i += 1;
            }
            merged.leaf_count = (a + b) as u8;
        }
        merged
    }
}

/// What [`Stage2Table::unmap`](crate::Stage2Table::unmap) removed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[must_use = "the caller must issue the invalidation before the IOVAs or the tables are reused"]
pub struct Unmapped {
    /// Bytes of IOVA space whose translation was removed (holes in the range do not count).
    pub bytes: u64,
    /// The invalidation the caller must issue (and complete with CMD_SYNC) next.
    pub invalidation: Invalidation,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGES: u8 = 1 << 3;
    const BLOCKS_2M: u8 = 1 << 2;

    #[test]
    fn none_is_neutral_for_merge() {
        let a = Invalidation::new(Iova(0x1000), 0x2000, true, PAGES);
        assert_eq!(Invalidation::none().merge(a), a);
        assert_eq!(a.merge(Invalidation::none()), a);
        assert!(Invalidation::none().is_none());
        assert_eq!(Invalidation::none().min_leaf_size(), None);
        assert_eq!(Invalidation::none().ttl(), None);
    }

    #[test]
    fn merge_spans_both_ranges() {
        let a = Invalidation::new(Iova(0x10_0000), 0x1000, true, PAGES);
        let b = Invalidation::new(Iova(0x4000), 0x2000, true, PAGES);
        let m = a.merge(b);
        assert_eq!(m.range(), Some((Iova(0x4000), 0x10_1000 - 0x4000)));
        assert!(m.leaf_only());
        assert_eq!(m.ttl(), Some(3));
        assert_eq!(m.min_leaf_size(), Some(0x1000));
    }

    #[test]
    fn mixed_sizes_drop_the_ttl_hint_and_keep_the_smallest_size() {
        let a = Invalidation::new(Iova(0), 0x20_0000, true, BLOCKS_2M);
        assert_eq!(a.ttl(), Some(2));
        assert_eq!(a.min_leaf_size(), Some(0x20_0000));
        let m = a.merge(Invalidation::new(Iova(0x20_0000), 0x1000, true, PAGES));
        assert_eq!(m.ttl(), None);
        assert_eq!(m.min_leaf_size(), Some(0x1000));
    }

    #[test]
    fn a_table_removal_makes_the_merge_non_leaf() {
        let a = Invalidation::new(Iova(0), 0x1000, true, PAGES);
        let b = Invalidation::new(Iova(0x1000), 0x1000, false, PAGES);
        let m = a.merge(b);
        assert!(!m.leaf_only());
        assert_eq!(m.ttl(), None);
    }
}
