//! [`FakeMemory`]: a host-memory [`DmaMemory`] for tests.

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::mem::{DmaMemory, OutOfMemory};
use std::collections::{BTreeMap, BTreeSet};

/// The cache line size the fake models, in bytes.
pub const FAKE_CACHE_LINE: u64 = 64;

/// What a non-coherent device reads from memory the CPU zeroed or wrote but never cleaned to
/// the point of coherency: whatever was there before (here a recognisable pattern).
pub const STALE: u64 = 0xdead_dead_dead_dead;

/// A [`DmaMemory`] backed by host pages, with bookkeeping that tests assert on.
///
/// Physical addresses are handed out upwards from `base`; freed ranges are not reused, so a
/// use-after-free shows up as an access to an address with no allocation (a panic, in a test).
///
/// It also models the CPU cache in front of a **non-coherent** device, in both directions.
/// There are two views of every cache line: the CPU's (its cache, read by
/// [`DmaMemory::read_u64`]) and memory at the point of coherency (what a non-coherent device
/// reads and writes).
///
/// * CPU to device: [`DmaMemory::write_u64`] (and the zeroing of a new allocation) change only
///   the CPU's view and leave the line dirty; the device's view
///   ([`FakeMemory::read_u64_device`]) changes only when [`DmaMemory::sync_for_device`] cleans
///   it. Until then the device reads what the line held at its last clean, or [`STALE`] if it
///   was never cleaned since it was allocated.
/// * Device to CPU: [`FakeMemory::write_u64_device`] changes only memory; the CPU keeps
///   reading its cached copy until [`DmaMemory::sync_for_cpu`] invalidates the line. The CPU
///   is assumed to hold *every* line cached all the time, since an Arm CPU may allocate a
///   Normal cacheable line speculatively whenever it likes: the worst case, and the one a
///   driver must survive. `sync_for_cpu` models `DC CIVAC`: a line the CPU dirtied (including
///   a never-cleaned zeroing) is written back first, overwriting what the device wrote there.
///
/// A device that snoops the CPU caches uses [`DmaMemory::read_u64`] and
/// [`FakeMemory::write_u64_snooping`] instead. Every maintenance operation is recorded
/// ([`FakeMemory::synced`], [`FakeMemory::synced_for_cpu`]).
#[derive(Debug)]
pub struct FakeMemory {
    next: u64,
    limit: u64,
    /// Live allocations: start address → size in bytes (rounded up to pages).
    allocations: BTreeMap<u64, u64>,
    words: BTreeMap<u64, u64>,
    writes: u64,
    /// Cache lines written by the CPU since their last clean.
    dirty: BTreeSet<u64>,
    /// Lines cleaned (or cleaned and invalidated) at least once since their allocation; the
    /// others still hold the allocation's uncleaned zeroes.
    cleaned: BTreeSet<u64>,
    /// The point-of-coherency copy of every line cleaned, or written by a device, since its
    /// allocation.
    device_lines: BTreeMap<u64, [u64; 8]>,
    /// Every `sync_for_device` range, in order.
    synced: Vec<(PhysAddr, u64)>,
    /// Every `sync_for_cpu` range, in order.
    synced_for_cpu: Vec<(PhysAddr, u64)>,
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
            dirty: BTreeSet::new(),
            cleaned: BTreeSet::new(),
            device_lines: BTreeMap::new(),
            synced: Vec::new(),
            synced_for_cpu: Vec::new(),
        }
    }

    /// Every range passed to [`DmaMemory::sync_for_device`] so far, in order.
    pub fn synced(&self) -> &[(PhysAddr, u64)] {
        &self.synced
    }

    /// Forgets the recorded [`FakeMemory::synced`] ranges.
    pub fn clear_synced(&mut self) {
        self.synced.clear();
    }

    /// Every range passed to [`DmaMemory::sync_for_cpu`] so far, in order.
    pub fn synced_for_cpu(&self) -> &[(PhysAddr, u64)] {
        &self.synced_for_cpu
    }

    /// Forgets the recorded [`FakeMemory::synced_for_cpu`] ranges.
    pub fn clear_synced_for_cpu(&mut self) {
        self.synced_for_cpu.clear();
    }

    /// Start addresses of the cache lines the CPU wrote and did not clean since.
    pub fn dirty_lines(&self) -> Vec<PhysAddr> {
        self.dirty.iter().map(|&l| PhysAddr(l)).collect()
    }

    /// Whether every byte of `[pa, pa + len)` (within live allocations) reads the same for a
    /// non-coherent device as for the CPU: cleaned since its last write and since allocation.
    pub fn device_sees(&self, pa: PhysAddr, len: u64) -> bool {
        (pa.0..pa.0 + len)
            .step_by(8)
            .all(|a| self.read_u64_device(PhysAddr(a & !7)) == self.read_u64(PhysAddr(a & !7)))
    }

    /// The word at `pa` as a device that does not snoop the CPU caches reads it: the value at
    /// the line's last clean, or [`STALE`] when it was never cleaned since allocation.
    pub fn read_u64_device(&self, pa: PhysAddr) -> u64 {
        self.check(pa);
        let line = pa.0 & !(FAKE_CACHE_LINE - 1);
        self.device_lines
            .get(&line)
            .map_or(STALE, |words| words[((pa.0 - line) / 8) as usize])
    }

    /// A write of the word at `pa` by a device that does **not** snoop the CPU caches (e.g. an
    /// event record of a non-coherent SMMU): it reaches memory only. The CPU keeps reading its
    /// cached copy of the line until [`DmaMemory::sync_for_cpu`] invalidates it. The rest of a
    /// line that was never cleaned reads as [`STALE`] in memory.
    pub fn write_u64_device(&mut self, pa: PhysAddr, value: u64) {
        self.check(pa);
        let line = pa.0 & !(FAKE_CACHE_LINE - 1);
        let words = self.device_lines.entry(line).or_insert([STALE; 8]);
        words[((pa.0 - line) / 8) as usize] = value;
    }

    /// A write of the word at `pa` by a device that snoops the CPU caches (a coherent SMMU):
    /// the CPU reads it at once, with no maintenance.
    pub fn write_u64_snooping(&mut self, pa: PhysAddr, value: u64) {
        self.check(pa);
        self.set_word(pa.0, value);
        let line = pa.0 & !(FAKE_CACHE_LINE - 1);
        if let Some(words) = self.device_lines.get_mut(&line) {
            words[((pa.0 - line) / 8) as usize] = value;
        }
    }

    /// Sets the CPU's view of the word at `pa`.
    fn set_word(&mut self, pa: u64, value: u64) {
        if value == 0 {
            self.words.remove(&pa);
        } else {
            self.words.insert(pa, value);
        }
    }

    /// The start of every cache line `[pa, pa + len)` touches that lies in a live allocation.
    /// Lines outside every allocation are skipped: maintenance of memory nobody owns is
    /// harmless on hardware, and there is nothing to model there.
    fn owned_lines(&self, pa: PhysAddr, len: u64) -> Vec<u64> {
        let first = pa.0 & !(FAKE_CACHE_LINE - 1);
        let end = pa.0.saturating_add(len);
        (first..end)
            .step_by(FAKE_CACHE_LINE as usize)
            .filter(|&line| {
                self.allocations
                    .range(..=line)
                    .next_back()
                    .is_some_and(|(start, size)| line < start + size)
            })
            .collect()
    }

    /// `DC C*VAC`'s clean of one line: when the CPU's copy is dirty (written since the last
    /// clean, or the allocation's zeroes never cleaned), it is written back to memory.
    fn clean_line(&mut self, line: u64) {
        if self.dirty.remove(&line) || !self.cleaned.contains(&line) {
            self.device_lines.insert(line, self.line_words(line));
        }
        self.cleaned.insert(line);
    }

    /// The CPU's view of the eight words of `line`.
    fn line_words(&self, line: u64) -> [u64; 8] {
        core::array::from_fn(|i| self.words.get(&(line + 8 * i as u64)).copied().unwrap_or(0))
    }

    /// From now on, only `pages` more 4 KiB pages can be allocated (tests of what runs out of
    /// memory half way).
    pub fn set_pages_left(&mut self, pages: u64) {
        self.limit = self.next.saturating_add(pages.saturating_mul(PAGE_SIZE));
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
        let range = pa.0..pa.0 + bytes;
        self.dirty.retain(|l| !range.contains(l));
        self.cleaned.retain(|l| !range.contains(l));
        self.device_lines.retain(|l, _| !range.contains(l));
    }

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.check(pa);
        self.words.get(&pa.0).copied().unwrap_or(0)
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.check(pa);
        self.writes += 1;
        self.dirty.insert(pa.0 & !(FAKE_CACHE_LINE - 1));
        self.set_word(pa.0, value);
    }

    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        self.synced.push((pa, len));
        for line in self.owned_lines(pa, len) {
            self.clean_line(line);
        }
    }

    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.synced_for_cpu.push((pa, len));
        for line in self.owned_lines(pa, len) {
            // DC CIVAC: clean (a dirty line overwrites memory), then invalidate, so that the
            // CPU's next read of the line fetches it from memory.
            self.clean_line(line);
            if let Some(words) = self.device_lines.get(&line).copied() {
                for (i, w) in words.into_iter().enumerate() {
                    self.set_word(line + 8 * i as u64, w);
                }
            }
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
    fn a_non_coherent_device_sees_only_cleaned_lines() {
        let mut m = FakeMemory::default();
        let a = m.alloc_zeroed(4096, 4096).unwrap();
        assert_eq!(m.read_u64(a), 0);
        assert_eq!(m.read_u64_device(a), STALE, "zeroing was never cleaned");
        m.sync_for_device(a, 4096);
        assert_eq!(m.read_u64_device(a), 0);
        m.write_u64(a.checked_add(8).unwrap(), 7);
        assert_eq!(m.dirty_lines(), vec![a]);
        assert_eq!(
            m.read_u64_device(a.checked_add(8).unwrap()),
            0,
            "stale until cleaned"
        );
        assert!(!m.device_sees(a, 64));
        m.sync_for_device(a.checked_add(8).unwrap(), 8);
        assert_eq!(m.read_u64_device(a.checked_add(8).unwrap()), 7);
        assert!(m.device_sees(a, 4096));
        assert!(m.dirty_lines().is_empty());
        assert_eq!(m.synced(), &[(a, 4096), (a.checked_add(8).unwrap(), 8)]);
    }

    #[test]
    fn the_cpu_sees_a_non_coherent_device_write_only_after_sync_for_cpu() {
        let mut m = FakeMemory::default();
        let a = m.alloc_zeroed(4096, 4096).unwrap();
        m.sync_for_device(a, 4096);
        let w = a.checked_add(16).unwrap();
        m.write_u64_device(w, 9);
        assert_eq!(m.read_u64_device(w), 9, "memory holds it");
        assert_eq!(m.read_u64(w), 0, "the CPU's cached copy is stale");
        m.sync_for_cpu(w, 8);
        assert_eq!(m.read_u64(w), 9);
        assert!(m.dirty_lines().is_empty());
        // A second lap at the same slot: stale again until the next invalidate.
        m.write_u64_device(w, 10);
        assert_eq!(m.read_u64(w), 9);
        m.sync_for_cpu(a, 64);
        assert_eq!(m.read_u64(w), 10);
        assert_eq!(m.synced_for_cpu(), &[(w, 8), (a, 64)]);
        // Lines outside every allocation are ignored.
        m.sync_for_cpu(PhysAddr(0x10), 8);
    }

    #[test]
    fn sync_for_cpu_writes_a_dirty_line_back_over_the_device_write() {
        // Why memory a device writes must be clean beforehand: DC CIVAC on a line the CPU
        // dirtied writes the CPU's copy back over the device's data (DC IVAC would instead
        // discard the CPU's write; either loses something).
        let mut m = FakeMemory::default();
        let a = m.alloc_zeroed(4096, 4096).unwrap();
        m.sync_for_device(a, 4096);
        m.write_u64(a, 1);
        m.write_u64_device(a.checked_add(8).unwrap(), 2);
        m.sync_for_cpu(a, 64);
        assert_eq!(m.read_u64(a), 1, "the CPU's write survives");
        assert_eq!(
            m.read_u64(a.checked_add(8).unwrap()),
            0,
            "the device's is lost"
        );
        assert_eq!(m.read_u64_device(a.checked_add(8).unwrap()), 0);
        // Never-cleaned zeroes count as dirty too.
        let b = m.alloc_zeroed(4096, 4096).unwrap();
        m.write_u64_device(b, 3);
        m.sync_for_cpu(b, 8);
        assert_eq!(m.read_u64(b), 0);
    }

    #[test]
    fn a_snooping_device_write_is_seen_at_once() {
        let mut m = FakeMemory::default();
        let a = m.alloc_zeroed(4096, 4096).unwrap();
        m.write_u64_snooping(a.checked_add(16).unwrap(), 9);
        assert_eq!(m.read_u64(a.checked_add(16).unwrap()), 9);
        assert!(m.dirty_lines().is_empty());
        assert!(m.synced_for_cpu().is_empty());
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
