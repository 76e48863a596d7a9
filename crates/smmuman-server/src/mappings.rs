//! [`Mappings`]: one object's DMA windows, ordered by I/O address.
//!
//! Windows of one object never overlap in I/O space (the manager refuses `Overlap`), so the one
//! that can overlap a range is the last one that starts at or before the range's last byte:
//! every question the manager asks (overlap, what a span covers, whole-mapping unmap) is a
//! B-tree search plus the mappings it returns, never a scan of all of them.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use iommu_core::{Access, Iova, PhysAddr};

/// One DMA window of an object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Mapping {
    pub iova: Iova,
    pub pa: PhysAddr,
    pub len: u64,
    pub access: Access,
    /// Made with `MapFlags::SHARED`.
    pub shared: bool,
}

impl Mapping {
    /// Last I/O byte (inclusive).
    pub fn last(&self) -> u64 {
        self.iova.0.saturating_add(self.len.saturating_sub(1))
    }

    /// Last host byte (inclusive).
    pub fn pa_last(&self) -> u64 {
        self.pa.0.saturating_add(self.len.saturating_sub(1))
    }
}

/// What an unmap of a span would take.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Span {
    /// Whole mappings only: their count and bytes.
    Whole { count: usize, bytes: u64 },
    /// This mapping crosses an edge of the span.
    Splits(Iova),
}

/// An object's windows by I/O address.
#[derive(Debug, Default)]
pub(crate) struct Mappings {
    by_iova: BTreeMap<u64, Mapping>,
    bytes: u64,
}

impl Mappings {
    /// How many.
    pub fn len(&self) -> usize {
        self.by_iova.len()
    }

    /// Bytes mapped.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every mapping, by I/O address.
    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.by_iova.values()
    }

    /// Mappings from I/O address `from` on, in order.
    pub fn from(&self, from: u64) -> impl Iterator<Item = &Mapping> {
        self.by_iova.range(from..).map(|(_, m)| m)
    }

    /// A mapping that shares an I/O byte with `[iova, last]`, if any.
    pub fn overlapping(&self, iova: u64, last: u64) -> Option<&Mapping> {
        // The last mapping of all is the candidate when it starts at or before `last` (a VMM
        // that maps at rising addresses): one descent to the right edge instead of a range.
        let candidate = match self.by_iova.last_key_value() {
            Some((&k, m)) if k <= last => Some(m),
            _ => self.by_iova.range(..=last).next_back().map(|(_, m)| m),
        };
        candidate.filter(|m| m.last() >= iova)
    }

    /// Adds `m` (the caller checked it overlaps nothing).
    pub fn insert(&mut self, m: Mapping) {
        self.bytes = self.bytes.saturating_add(m.len);
        self.by_iova.insert(m.iova.0, m);
    }

    /// The mappings inside `[start, last]`, or the one crossing its edge.
    pub fn span(&self, start: u64, last: u64) -> Span {
        // The common case, one search: a mapping that is exactly the span (nothing else can
        // then start inside it or reach into it).
        if let Some(m) = self.by_iova.get(&start).filter(|m| m.last() == last) {
            return Span::Whole {
                count: 1,
                bytes: m.len,
            };
        }
        if let Some(m) = self.overlapping(start, start) {
            if m.iova.0 < start {
                return Span::Splits(m.iova);
            }
        }
        let (mut count, mut bytes) = (0, 0u64);
        for m in self.by_iova.range(start..=last).map(|(_, m)| m) {
            if m.last() > last {
                return Span::Splits(m.iova);
            }
            count += 1;
            bytes = bytes.saturating_add(m.len);
        }
        Span::Whole { count, bytes }
    }

    /// Removes the mappings that start inside `[start, last]`, handing each to `gone`.
    pub fn take(&mut self, start: u64, last: u64, mut gone: impl FnMut(Mapping)) {
        if let Some(m) = self
            .by_iova
            .get(&start)
            .copied()
            .filter(|m| m.last() >= last)
        {
            // One mapping from the span's start to (at least) its end: nothing else starts
            // inside.
            self.by_iova.remove(&start);
            self.bytes = self.bytes.saturating_sub(m.len);
            gone(m);
        } else {
            let keys: Vec<u64> = self.by_iova.range(start..=last).map(|(k, _)| *k).collect();
            for k in keys {
                if let Some(m) = self.by_iova.remove(&k) {
                    self.bytes = self.bytes.saturating_sub(m.len);
                    gone(m);
                }
            }
        }
        if self.by_iova.is_empty() {
            // An emptied B-tree keeps its root node: give it back too.
            self.by_iova = BTreeMap::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(iova: u64, len: u64) -> Mapping {
        Mapping {
            iova: Iova(iova),
            pa: PhysAddr(0x8000_0000 + iova),
            len,
            access: Access::RW,
            shared: false,
        }
    }

    #[test]
    fn overlap_span_and_take_follow_the_io_addresses() {
        let mut ms = Mappings::default();
        ms.insert(m(0x1000, 0x2000));
        ms.insert(m(0x5000, 0x1000));
        ms.insert(m(0x8000, 0x4000));
        assert_eq!(
            ms.overlapping(0x2fff, 0x2fff).map(|m| m.iova.0),
            Some(0x1000)
        );
        assert_eq!(ms.overlapping(0x3000, 0x4fff), None);
        assert_eq!(
            ms.overlapping(0x0, 0xffff_ffff).map(|m| m.iova.0),
            Some(0x8000)
        );
        assert_eq!(
            ms.span(0x0, 0x6fff),
            Span::Whole {
                count: 2,
                bytes: 0x3000
            }
        );
        assert_eq!(ms.span(0x2000, 0x6fff), Span::Splits(Iova(0x1000)));
        assert_eq!(ms.span(0x4000, 0x9fff), Span::Splits(Iova(0x8000)));
        assert_eq!(ms.bytes(), 0x7000);
        let mut gone = Vec::new();
        ms.take(0x0, 0x6fff, |m| gone.push(m));
        assert_eq!(gone.len(), 2);
        assert_eq!((ms.len(), ms.bytes()), (1, 0x4000));
        assert_eq!(ms.iter().next().map(|m| m.iova.0), Some(0x8000));
    }
}
