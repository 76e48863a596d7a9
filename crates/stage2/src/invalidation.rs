//! What the caller must invalidate after a table change: [`Invalidation`] and [`Unmapped`].

use crate::geometry::level_size;
use iommu_core::{Iova, PAGE_SIZE};

/// Most addresses [`Invalidation::leaves`] names one by one; past it, `None` (the caller
/// invalidates more widely). An SMMU without range invalidation (IDR3.RIL = 0) can then
/// invalidate leaf by leaf, one CMD_TLBI_S2_IPA per block or page, up to this many.
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
}

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
        }
    }

    /// Addresses that together hit every removed leaf, as `(IOVA, step)`: the range stepped
    /// through by the smallest removed leaf size, from the range's start aligned down to it;
    /// `None` when that takes more than [`LEAF_LIST_CAPACITY`] addresses. One address-based
    /// invalidation (CMD_TLBI_S2_IPA without range, IHI 0070 §4.4.13) per item reaches every
    /// stale TLB entry: an entry is hit by any address it translates, and every removed leaf is
    /// at least `step` long and aligned to its size, so one of the addresses lies in it. (Holes
    /// in the range are invalidated too: harmless.) Where a table descriptor was removed
    /// ([`leaf_only`](Self::leaf_only) is `false`), a non-leaf invalidation at these addresses
    /// also reaches the walk-cache entries of that table. Computed, not recorded: unmapping
    /// costs nothing per page for it.
    pub fn leaves(&self) -> Option<impl Iterator<Item = (Iova, u64)>> {
        let (iova, len) = self.range.unwrap_or((Iova(0), 0));
        // A table removed with no leaf under it is named at page granularity.
        let size = self.min_leaf_size().unwrap_or(PAGE_SIZE);
        // Every removed leaf is at least `size` and aligned to its own size, so the
        // `size`-aligned addresses from the range's start (aligned down) to its end hit each.
        let first = iova.0 & !(size - 1);
        let n = (iova.0 + len - first).div_ceil(size);
        (len == 0 || n <= LEAF_LIST_CAPACITY as u64)
            .then(|| (0..if len == 0 { 0 } else { n }).map(move |k| (Iova(first + k * size), size)))
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
        Self {
            range,
            leaf_only: self.leaf_only && other.leaf_only,
            leaf_levels: self.leaf_levels | other.leaf_levels,
        }
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
