//! [`PhysRange`]: a non-empty range of physical addresses.

use core::fmt;
use iommu_core::PhysAddr;

/// A non-empty, non-wrapping range of physical addresses `[start, start + size)`.
///
/// Printed as `start+size`, e.g. `0x0000000040000000+0x20000000`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PhysRange {
    start: PhysAddr,
    size: u64,
}

impl PhysRange {
    /// The range `[start, start + size)`, or `None` when `size` is zero or the range would wrap
    /// past the end of the 64-bit address space.
    pub const fn new(start: PhysAddr, size: u64) -> Option<Self> {
        if size == 0 || start.0.checked_add(size).is_none() {
            None
        } else {
            Some(Self { start, size })
        }
    }

    /// The range `[start, end)`, or `None` when it is empty or reversed.
    pub const fn from_bounds(start: PhysAddr, end: PhysAddr) -> Option<Self> {
        if end.0 <= start.0 {
            None
        } else {
            Some(Self {
                start,
                size: end.0 - start.0,
            })
        }
    }

    /// First address of the range.
    pub const fn start(self) -> PhysAddr {
        self.start
    }

    /// Size in bytes (never zero).
    pub const fn size(self) -> u64 {
        self.size
    }

    /// First address after the range.
    pub const fn end(self) -> PhysAddr {
        PhysAddr(self.start.0 + self.size)
    }

    /// Whether `pa` lies inside the range.
    pub const fn contains_addr(self, pa: PhysAddr) -> bool {
        pa.0 >= self.start.0 && pa.0 < self.end().0
    }

    /// Whether all of `other` lies inside the range.
    pub const fn contains(self, other: PhysRange) -> bool {
        other.start.0 >= self.start.0 && other.end().0 <= self.end().0
    }

    /// Whether the two ranges share at least one byte.
    pub const fn overlaps(self, other: PhysRange) -> bool {
        self.start.0 < other.end().0 && other.start.0 < self.end().0
    }

    /// The largest range inside `self` whose bounds are multiples of `align` (a power of two),
    /// or `None` when no whole aligned block fits.
    pub const fn shrink_to_align(self, align: u64) -> Option<Self> {
        let start = match self.start.0.checked_next_multiple_of(align) {
            Some(s) => s,
            None => return None,
        };
        let end = self.end().0 & !(align - 1);
        Self::from_bounds(PhysAddr(start), PhysAddr(end))
    }

    /// The smallest range containing `self` whose bounds are multiples of `align` (a power of
    /// two), or `None` when it would wrap past the end of the address space.
    pub const fn grow_to_align(self, align: u64) -> Option<Self> {
        let start = self.start.0 & !(align - 1);
        match self.end().0.checked_next_multiple_of(align) {
            Some(end) => Self::from_bounds(PhysAddr(start), PhysAddr(end)),
            None => None,
        }
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}", self.start, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, size: u64) -> PhysRange {
        PhysRange::new(PhysAddr(start), size).unwrap()
    }

    #[test]
    fn empty_and_wrapping_ranges_are_refused() {
        assert_eq!(PhysRange::new(PhysAddr(0x1000), 0), None);
        assert_eq!(PhysRange::new(PhysAddr(u64::MAX), 2), None);
        assert_eq!(
            PhysRange::from_bounds(PhysAddr(0x2000), PhysAddr(0x1000)),
            None
        );
    }

    #[test]
    fn overlap_and_containment() {
        let a = r(0x1000, 0x2000);
        assert!(a.overlaps(r(0x2fff, 1)));
        assert!(!a.overlaps(r(0x3000, 1)));
        assert!(!a.overlaps(r(0, 0x1000)));
        assert!(a.contains(r(0x1000, 0x2000)));
        assert!(!a.contains(r(0x1000, 0x2001)));
        assert!(a.contains_addr(PhysAddr(0x2fff)));
        assert!(!a.contains_addr(PhysAddr(0x3000)));
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(
            r(0x1234, 0x3000).shrink_to_align(0x1000),
            Some(r(0x2000, 0x2000))
        );
        assert_eq!(r(0x1234, 0x100).shrink_to_align(0x1000), None);
        assert_eq!(
            r(0x1234, 0x100).grow_to_align(0x1000),
            Some(r(0x1000, 0x1000))
        );
    }

    #[test]
    fn prints_start_plus_size() {
        assert_eq!(
            format!("{}", r(0x4000_0000, 0x2000_0000)),
            "0x0000000040000000+0x20000000"
        );
    }
}
