//! Who holds which host memory: the index the manager checks every `map` against.
//!
//! The rule (docs/protocol.md, "Host memory ownership"): a host range mapped by one object is
//! refused to every other object unless both map it `SHARED`; an object may map its own memory
//! several times. A list of mappings answers that with a scan of every mapping of every object;
//! this index answers it in O(log n + k), k the regions the new range touches (usually 0 or 1).
//!
//! Host memory is cut into disjoint **regions** whose boundaries are the mappings' edges; each
//! region counts, per object, the shared and the exclusive mappings that cover it. Because of
//! the rule, a region with an exclusive mapping has exactly one holder. A region is created
//! when the first mapping covers it and removed when the last one goes, so there are at most
//! `2 × mappings + 1` of them. Ranges are kept by their last byte, so memory that ends at 2^64
//! is representable.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use smmuman_api::ObjectId;

/// How much of a region one object holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Holder {
    object: ObjectId,
    shared: u32,
    exclusive: u32,
}

/// Who holds a region: almost always one object, kept inline (no allocation per mapping).
#[derive(Clone, PartialEq, Eq, Debug)]
enum Holders {
    One(Holder),
    /// None (a hole just filled) or several (shared memory).
    Many(Vec<Holder>),
}

impl Holders {
    const NONE: Holders = Holders::Many(Vec::new());

    fn as_slice(&self) -> &[Holder] {
        match self {
            Self::One(h) => core::slice::from_ref(h),
            Self::Many(v) => v,
        }
    }

    fn find_mut(&mut self, object: ObjectId) -> Option<&mut Holder> {
        match self {
            Self::One(h) => Some(h).filter(|h| h.object == object),
            Self::Many(v) => v.iter_mut().find(|h| h.object == object),
        }
    }

    fn push(&mut self, h: Holder) {
        match self {
            Self::Many(v) if v.is_empty() => *self = Self::One(h),
            Self::Many(v) => v.push(h),
            Self::One(a) => {
                *self = Self::Many(alloc::vec![*a, h]);
            }
        }
    }

    /// Drops holders with no mapping left.
    fn prune(&mut self) {
        let live = |h: &Holder| h.shared > 0 || h.exclusive > 0;
        match self {
            Self::One(h) if !live(h) => *self = Self::NONE,
            Self::Many(v) => {
                v.retain(live);
                if let [one] = v.as_slice() {
                    *self = Self::One(*one);
                }
            }
            Self::One(_) => {}
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// A stretch of host memory covered by the same mappings.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Region {
    /// Last byte (inclusive).
    last: u64,
    holders: Holders,
}

impl Region {
    /// Whether `object` mapping this region (`shared` or not) would break the rule.
    fn refuses(&self, object: ObjectId, shared: bool) -> bool {
        self.holders
            .as_slice()
            .iter()
            .any(|h| h.object != object && (h.exclusive > 0 || !shared))
    }
}

/// The ownership index.
#[derive(Debug, Default)]
pub(crate) struct Ownership {
    /// Regions by first byte.
    regions: BTreeMap<u64, Region>,
}

impl Ownership {
    /// Where `[start, last]` meets host memory that `object` may not map (`shared` or not)
    /// because another object holds it: the first byte of the first such region (a region
    /// starts at the edge of a mapping).
    pub fn conflict(&self, object: ObjectId, start: u64, last: u64, shared: bool) -> Option<u64> {
        if self.is_free(start, last) {
            return None;
        }
        self.touching(start, last)
            .find(|(_, r)| r.refuses(object, shared))
            .map(|(s, _)| s)
    }

    /// Whether no region shares a byte with `[start, last]`: the region that starts last at or
    /// before `last` ends before `start` (one search; the common case of a new mapping).
    pub fn is_free(&self, start: u64, last: u64) -> bool {
        // As for mappings: the last region is the candidate when it starts at or before `last`.
        let candidate = match self.regions.last_key_value() {
            Some((&k, r)) if k <= last => Some(r),
            _ => self.regions.range(..=last).next_back().map(|(_, r)| r),
        };
        candidate.is_none_or(|r| r.last < start)
    }

    /// Regions that share a byte with `[start, last]`, lowest first.
    fn touching(&self, start: u64, last: u64) -> impl Iterator<Item = (u64, &Region)> {
        // The region holding `start`, if it began before it, then every region beginning
        // inside the range.
        let before = self
            .regions
            .range(..start)
            .next_back()
            .filter(|(_, r)| r.last >= start);
        before
            .into_iter()
            .chain(self.regions.range(start..=last))
            .map(|(s, r)| (*s, r))
    }

    /// Records that `object` maps `[start, last]` (`shared` or not) where no region is: the
    /// caller saw [`Ownership::is_free`] say so, with nothing added since.
    pub fn add_free(&mut self, object: ObjectId, start: u64, last: u64, shared: bool) {
        let holder = Holder {
            object,
            shared: u32::from(shared),
            exclusive: u32::from(!shared),
        };
        self.regions.insert(
            start,
            Region {
                last,
                holders: Holders::One(holder),
            },
        );
    }

    /// Records that `object` maps `[start, last]` (`shared` or not). The caller checked
    /// [`Ownership::conflict`].
    pub fn add(&mut self, object: ObjectId, start: u64, last: u64, shared: bool) {
        let holder = Holder {
            object,
            shared: u32::from(shared),
            exclusive: u32::from(!shared),
        };
        if self.is_free(start, last) {
            // Nothing there yet: one new region, no split.
            self.regions.insert(
                start,
                Region {
                    last,
                    holders: Holders::One(holder),
                },
            );
            return;
        }
        self.split_at(start);
        if let Some(after) = last.checked_add(1) {
            self.split_at(after);
        }
        // No region straddles `start` or `last + 1` now. Fill the holes between the regions
        // inside the range with empty ones, then count the mapping in each.
        let inside: Vec<(u64, u64)> = self
            .regions
            .range(start..=last)
            .map(|(s, r)| (*s, r.last))
            .collect();
        let mut holes: Vec<(u64, u64)> = Vec::new();
        let mut cursor = Some(start);
        for (s, l) in inside {
            if let Some(c) = cursor.filter(|&c| s > c) {
                holes.push((c, s - 1));
            }
            cursor = l.checked_add(1);
        }
        if let Some(c) = cursor.filter(|&c| c <= last) {
            holes.push((c, last));
        }
        for (s, l) in holes {
            self.regions.insert(
                s,
                Region {
                    last: l,
                    holders: Holders::NONE,
                },
            );
        }
        for (_, r) in self.regions.range_mut(start..=last) {
            match r.holders.find_mut(object) {
                Some(h) => bump(h, shared, true),
                None => r.holders.push(holder),
            }
        }
    }

    /// Forgets one mapping of `object` over `[start, last]` made with `shared` (as
    /// [`Ownership::add`] recorded it).
    pub fn remove(&mut self, object: ObjectId, start: u64, last: u64, shared: bool) {
        // The common case: the mapping is the only thing in its own region. Removing the
        // region leaves gaps on both sides, so nothing can merge.
        let only = Holder {
            object,
            shared: u32::from(shared),
            exclusive: u32::from(!shared),
        };
        if self
            .regions
            .get(&start)
            .is_some_and(|r| r.last == last && r.holders == Holders::One(only))
        {
            self.regions.remove(&start);
            if self.regions.is_empty() {
                self.regions = BTreeMap::new();
            }
            return;
        }
        // An earlier merge may have joined this mapping's regions with a neighbour's: cut
        // them at its edges again, so the count changes exactly over its range.
        self.split_at(start);
        if let Some(after) = last.checked_add(1) {
            self.split_at(after);
        }
        let mut emptied: Vec<u64> = Vec::new();
        for (s, r) in self.regions.range_mut(start..=last) {
            if let Some(h) = r.holders.find_mut(object) {
                bump(h, shared, false);
            }
            r.holders.prune();
            if r.holders.is_empty() {
                emptied.push(*s);
            }
        }
        for s in emptied {
            self.regions.remove(&s);
        }
        // Its edges may now separate regions held alike: merge them, so that every boundary
        // left is the edge of a live mapping (at most 2 × mappings + 1 regions, however long
        // the history).
        self.merge_at(start);
        if let Some(after) = last.checked_add(1) {
            self.merge_at(after);
        }
        if self.regions.is_empty() {
            // An emptied B-tree keeps its root node: give it back too.
            self.regions = BTreeMap::new();
        }
    }

    /// Merges the region that ends just before `at` with the one that starts at `at` when
    /// they are held alike.
    fn merge_at(&mut self, at: u64) {
        let Some(prev_start) = at.checked_sub(1).and_then(|p| {
            self.regions
                .range(..=p)
                .next_back()
                .filter(|(_, r)| r.last == p)
                .map(|(s, _)| *s)
        }) else {
            return;
        };
        let alike = match (self.regions.get(&prev_start), self.regions.get(&at)) {
            (Some(a), Some(b)) => same_holders(a.holders.as_slice(), b.holders.as_slice()),
            _ => false,
        };
        if alike {
            if let Some(b) = self.regions.remove(&at) {
                if let Some(a) = self.regions.get_mut(&prev_start) {
                    a.last = b.last;
                }
            }
        }
    }

    /// Splits the region that holds `at` (if it began before it) into two at `at`.
    fn split_at(&mut self, at: u64) {
        let Some((&s, r)) = self.regions.range(..at).next_back() else {
            return;
        };
        if r.last < at || s == at {
            return;
        }
        let tail = Region {
            last: r.last,
            holders: r.holders.clone(),
        };
        if let Some(head) = self.regions.get_mut(&s) {
            head.last = at - 1;
        }
        self.regions.insert(at, tail);
    }

    /// Regions held.
    #[cfg(test)]
    pub fn regions(&self) -> usize {
        self.regions.len()
    }
}

/// Whether two regions are held by the same objects with the same counts.
fn same_holders(a: &[Holder], b: &[Holder]) -> bool {
    a.len() == b.len() && a.iter().all(|h| b.contains(h))
}

/// Counts one more (`up`) or one fewer mapping of `h`'s object.
fn bump(h: &mut Holder, shared: bool, up: bool) {
    let n = if shared {
        &mut h.shared
    } else {
        &mut h.exclusive
    };
    *n = if up {
        n.saturating_add(1)
    } else {
        n.saturating_sub(1)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ObjectId = ObjectId(1);
    const B: ObjectId = ObjectId(2);

    /// A model: every mapping, scanned.
    #[derive(Default)]
    struct Model(Vec<(ObjectId, u64, u64, bool)>);

    impl Model {
        fn conflict(&self, o: ObjectId, s: u64, l: u64, shared: bool) -> bool {
            self.0
                .iter()
                .any(|&(mo, ms, ml, msh)| mo != o && ms <= l && s <= ml && !(msh && shared))
        }
    }

    #[test]
    fn exclusive_memory_is_refused_to_others_and_shared_memory_only_to_non_sharers() {
        let mut own = Ownership::default();
        own.add(A, 0x1000, 0x4fff, false);
        assert_eq!(own.conflict(B, 0x3000, 0x3fff, true), Some(0x1000));
        assert_eq!(own.conflict(B, 0x0, 0x1fff, false), Some(0x1000));
        assert_eq!(
            own.conflict(A, 0x3000, 0x3fff, false),
            None,
            "its own memory"
        );
        assert_eq!(own.conflict(B, 0x5000, 0x5fff, false), None, "past the end");
        own.add(A, 0x9000, 0x9fff, true);
        assert_eq!(own.conflict(B, 0x9000, 0x9fff, true), None);
        assert_eq!(own.conflict(B, 0x9000, 0x9fff, false), Some(0x9000));
        own.add(B, 0x9000, 0x9fff, true);
        own.remove(A, 0x1000, 0x4fff, false);
        assert_eq!(own.conflict(B, 0x1000, 0x4fff, false), None);
        own.remove(A, 0x9000, 0x9fff, true);
        own.remove(B, 0x9000, 0x9fff, true);
        assert_eq!(own.regions(), 0, "nothing left behind");
    }

    #[test]
    fn memory_that_ends_at_the_top_of_the_address_space_is_held() {
        let mut own = Ownership::default();
        own.add(A, u64::MAX - 0xfff, u64::MAX, false);
        assert_eq!(
            own.conflict(B, u64::MAX - 0x1fff, u64::MAX, false),
            Some(u64::MAX - 0xfff)
        );
        own.remove(A, u64::MAX - 0xfff, u64::MAX, false);
        assert_eq!(own.regions(), 0);
    }

    proptest::proptest! {
        /// Random adds and removes of overlapping ranges by three objects: every conflict
        /// answer equals the scan's, and removing everything leaves no region.
        #[test]
        fn the_index_answers_as_a_scan_of_every_mapping_would(
            ops in proptest::collection::vec(
                (0u32..3, 0u64..64, 1u64..16, proptest::bool::ANY, proptest::bool::weighted(0.3)),
                1..200,
            )
        ) {
            let mut own = Ownership::default();
            let mut model = Model::default();
            for (o, page, pages, shared, remove) in ops {
                let o = ObjectId(o + 1);
                let (s, l) = (page * 0x1000, (page + pages) * 0x1000 - 1);
                if remove {
                    if let Some(i) = model.0.iter().position(|m| m.0 == o) {
                        let (mo, ms, ml, msh) = model.0.swap_remove(i);
                        own.remove(mo, ms, ml, msh);
                    }
                    continue;
                }
                let want = model.conflict(o, s, l, shared);
                let got = own.conflict(o, s, l, shared);
                proptest::prop_assert_eq!(want, got.is_some());
                if !want {
                    own.add(o, s, l, shared);
                    model.0.push((o, s, l, shared));
                }
                proptest::prop_assert!(own.regions() <= 2 * model.0.len() + 1);
            }
            for (mo, ms, ml, msh) in model.0.drain(..) {
                own.remove(mo, ms, ml, msh);
            }
            proptest::prop_assert_eq!(own.regions(), 0);
        }
    }

    /// A model by page: which objects hold each page, shared or exclusive, how many times.
    #[derive(Default)]
    struct PageModel(std::collections::HashMap<u64, Vec<(ObjectId, bool)>>);

    impl PageModel {
        fn conflict(&self, o: ObjectId, first: u64, pages: u64, shared: bool) -> bool {
            (first..first + pages).any(|p| {
                self.0.get(&p).is_some_and(|hs| {
                    hs.iter()
                        .any(|&(ho, hshared)| ho != o && !(hshared && shared))
                })
            })
        }
        fn add(&mut self, o: ObjectId, first: u64, pages: u64, shared: bool) {
            for p in first..first + pages {
                self.0.entry(p).or_default().push((o, shared));
            }
        }
        fn remove(&mut self, o: ObjectId, first: u64, pages: u64, shared: bool) {
            for p in first..first + pages {
                if let Some(hs) = self.0.get_mut(&p) {
                    if let Some(i) = hs.iter().position(|&h| h == (o, shared)) {
                        hs.swap_remove(i);
                    }
                    if hs.is_empty() {
                        self.0.remove(&p);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3))]
        /// Tens of thousands of adds and removes by eight objects over 40,000 pages, against
        /// the page model: every answer equal, the region bound kept, nothing left at the end.
        #[test]
        fn at_scale_the_index_answers_as_the_page_model_does(
            ops in proptest::collection::vec(
                (0u32..8, 0u64..40_000, 1u64..8, proptest::bool::ANY, proptest::bool::weighted(0.25)),
                20_000..20_001,
            )
        ) {
            let mut own = Ownership::default();
            let mut model = PageModel::default();
            let mut live: Vec<(ObjectId, u64, u64, bool)> = Vec::new();
            for (k, (o, first, pages, shared, remove)) in ops.into_iter().enumerate() {
                let o = ObjectId(o + 1);
                if remove && !live.is_empty() {
                    let (mo, mf, mp, ms) = live.swap_remove(k % live.len());
                    own.remove(mo, mf * 0x1000, (mf + mp) * 0x1000 - 1, ms);
                    model.remove(mo, mf, mp, ms);
                    continue;
                }
                let (s, l) = (first * 0x1000, (first + pages) * 0x1000 - 1);
                let want = model.conflict(o, first, pages, shared);
                proptest::prop_assert_eq!(want, own.conflict(o, s, l, shared).is_some());
                if !want {
                    if own.is_free(s, l) {
                        own.add_free(o, s, l, shared);
                    } else {
                        own.add(o, s, l, shared);
                    }
                    model.add(o, first, pages, shared);
                    live.push((o, first, pages, shared));
                }
            }
            proptest::prop_assert!(live.len() > 5_000, "{} live mappings", live.len());
            proptest::prop_assert!(own.regions() <= 2 * live.len() + 1);
            for (mo, mf, mp, ms) in live.drain(..) {
                own.remove(mo, mf * 0x1000, (mf + mp) * 0x1000 - 1, ms);
            }
            proptest::prop_assert_eq!(own.regions(), 0);
        }
    }
}
