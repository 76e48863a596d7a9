//! [`ReservedRanges`]: host-physical ranges no domain may ever map (the manager's own memory,
//! the IOMMU's tables, firmware-reserved regions). Every backend keeps one and refuses a map
//! that touches it, whatever its caller checked before.

use crate::addr::PhysAddr;

/// At most `N` ranges `[start, start + len)`, checked for overlap with a request.
#[derive(Clone, Debug)]
pub struct ReservedRanges<const N: usize> {
    ranges: [(PhysAddr, u64); N],
    len: usize,
}

impl<const N: usize> Default for ReservedRanges<N> {
    fn default() -> Self {
        Self {
            ranges: [(PhysAddr(0), 0); N],
            len: 0,
        }
    }
}

/// All `N` slots are in use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Full;

impl<const N: usize> ReservedRanges<N> {
    /// Adds `[pa, pa + len)`.
    ///
    /// # Errors
    /// [`Full`] when all `N` slots are in use (nothing changes).
    pub fn reserve(&mut self, pa: PhysAddr, len: u64) -> Result<(), Full> {
        let slot = self.ranges.get_mut(self.len).ok_or(Full)?;
        *slot = (pa, len);
        self.len += 1;
        Ok(())
    }

    /// Whether `[pa, pa + len)` overlaps a reserved range (ends saturate at 2^64).
    pub fn overlaps(&self, pa: PhysAddr, len: u64) -> bool {
        let end = pa.0.saturating_add(len);
        self.ranges[..self.len]
            .iter()
            .any(|&(r, rlen)| pa.0 < r.0.saturating_add(rlen) && r.0 < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_touching_a_reserved_range_overlaps_and_one_beside_it_does_not() {
        let mut r = ReservedRanges::<2>::default();
        r.reserve(PhysAddr(0x4000_0000), 0x1000).unwrap();
        assert!(r.overlaps(PhysAddr(0x4000_0fff), 1));
        assert!(r.overlaps(PhysAddr(0x3fff_f000), 0x1001));
        // Control: the bytes just before and just after.
        assert!(!r.overlaps(PhysAddr(0x3fff_f000), 0x1000));
        assert!(!r.overlaps(PhysAddr(0x4000_1000), 0x1000));
        // Near the top of the address space the ends saturate instead of wrapping.
        r.reserve(PhysAddr(u64::MAX - 0xfff), 0x2000).unwrap();
        assert!(r.overlaps(PhysAddr(u64::MAX - 1), 1));
        assert_eq!(r.reserve(PhysAddr(0), 1), Err(Full));
    }
}
