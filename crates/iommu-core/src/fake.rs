//! [`FakeMemory`]: a host-memory [`DmaMemory`] for tests.

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::mem::{DmaMemory, OutOfMemory};
use std::collections::BTreeMap;

/// A [`DmaMemory`] backed by host pages, with bookkeeping that tests assert on.
///
/// Physical addresses are handed out upwards from `base`; freed ranges are not reused, so a
/// use-after-free shows up as an access to an address with no allocation (a panic, in a test).
#[derive(Debug)]
pub struct FakeMemory {
    next: u64,
    limit: u64,
    /// Live allocations: start address → size in bytes (rounded up to pages).
    allocations: BTreeMap<u64, u64>,
    words: BTreeMap<u64, u64>,
    writes: u64,
}

impl Default for FakeMemory {
    fn default() -> Self {
        Self::new(PhysAddr(0x8_0000_0000), 1 << 32)
    }
}

impl FakeMemory {
    /// Memory that allocates from `base` up to `base + size`.
    pub fn new(base: PhysAddr, size: u64) -> Self {
        Self {
            next: base.0,
            limit: base.0 + size,
            allocations: BTreeMap::new(),
            words: BTreeMap::new(),
            writes: 0,
        }
    }

    /// Number of live allocations.
    pub fn live_allocations(&self) -> usize {
        self.allocations.len()
    }

    /// Bytes in live allocations.
    pub fn live_bytes(&self) -> u64 {
        self.allocations.values().sum()
    }

    /// How many 64-bit words have been written so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    fn check(&self, pa: PhysAddr) {
        assert!(
            pa.0.is_multiple_of(8),
            "unaligned DMA-memory access at {pa}"
        );
        let inside = self
            .allocations
            .range(..=pa.0)
            .next_back()
            .is_some_and(|(start, size)| pa.0 < start + size);
        assert!(
            inside,
            "DMA-memory access at {pa} outside every live allocation"
        );
    }
}

impl DmaMemory for FakeMemory {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        let align = (align as u64).max(PAGE_SIZE);
        assert!(
            align.is_power_of_two(),
            "alignment {align:#x} is not a power of two"
        );
        let bytes = (size as u64).div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE;
        let start = self.next.next_multiple_of(align);
        let end = start.checked_add(bytes).ok_or(OutOfMemory { size })?;
        if end > self.limit {
            return Err(OutOfMemory { size });
        }
        self.next = end;
        self.allocations.insert(start, bytes);
        Ok(PhysAddr(start))
    }

    fn free(&mut self, pa: PhysAddr, size: usize) {
        let bytes = (size as u64).div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE;
        match self.allocations.remove(&pa.0) {
            Some(b) if b == bytes => {}
            Some(b) => panic!("free of {pa} with size {bytes:#x}, allocated with {b:#x}"),
            None => panic!("free of {pa}, which is not a live allocation"),
        }
        let keys: Vec<u64> = self
            .words
            .range(pa.0..pa.0 + bytes)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.words.remove(&k);
        }
    }

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.check(pa);
        self.words.get(&pa.0).copied().unwrap_or(0)
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.check(pa);
        self.writes += 1;
        if value == 0 {
            self.words.remove(&pa.0);
        } else {
            self.words.insert(pa.0, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_zeroed_and_accounted() {
        let mut m = FakeMemory::default();
        let a = m.alloc_zeroed(100, 4096).unwrap();
        let b = m.alloc_zeroed(0x4000, 0x4000).unwrap();
        assert!(b.is_aligned(0x4000));
        assert_eq!(m.read_u64(b), 0);
        m.write_u64(b.checked_add(8).unwrap(), 7);
        assert_eq!(m.read_u64(b.checked_add(8).unwrap()), 7);
        assert_eq!(m.live_bytes(), 0x5000);
        m.free(a, 100);
        m.free(b, 0x4000);
        assert_eq!(m.live_allocations(), 0);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mut m = FakeMemory::new(PhysAddr(0x1000), 0x2000);
        assert!(m.alloc_zeroed(0x2000, 4096).is_ok());
        assert_eq!(m.alloc_zeroed(1, 4096), Err(OutOfMemory { size: 1 }));
    }

    #[test]
    #[should_panic(expected = "outside every live allocation")]
    fn access_after_free_is_caught() {
        let mut m = FakeMemory::default();
        let a = m.alloc_zeroed(4096, 4096).unwrap();
        m.free(a, 4096);
        m.read_u64(a);
    }
}
