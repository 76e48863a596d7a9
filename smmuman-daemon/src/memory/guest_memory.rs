//! [`GuestMemory`]: the pool DMA target buffers come from, with byte access for scenarios.

use super::frame_alloc::{FrameAllocator, FrameError};
use super::ram_window::RamWindow;
use super::range::PhysRange;
use iommu_core::PhysAddr;

/// The byte at `offset` of the test pattern `seed`: cheap to compute, different for every
/// offset within 251 bytes and for every seed, so a copy from the wrong place or a shifted copy
/// does not compare equal by accident.
pub const fn pattern_byte(seed: u8, offset: u64) -> u8 {
    ((offset % 251) as u8).wrapping_add(seed.wrapping_mul(31)) ^ 0x5a
}

/// The first byte of a buffer that differs from what was expected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mismatch {
    /// Address of the byte.
    pub pa: PhysAddr,
    /// The byte found there.
    pub found: u8,
    /// The byte expected.
    pub expected: u8,
}

/// RAM that may be granted to DMA masters.
#[derive(Debug)]
pub struct GuestMemory {
    frames: FrameAllocator,
    window: RamWindow,
}

impl GuestMemory {
    /// A pool over every range of `window`.
    ///
    /// # Errors
    /// [`FrameError::BadPool`] when the window's ranges overlap.
    pub fn new(window: RamWindow) -> Result<Self, FrameError> {
        Ok(Self {
            frames: FrameAllocator::new(window.ranges())?,
            window,
        })
    }

    /// The allocator (for statistics and the log).
    pub fn frames(&self) -> &FrameAllocator {
        &self.frames
    }

    /// A zeroed buffer of `size` bytes (rounded up to pages) aligned to `align` (a power of two;
    /// 2 MiB for a buffer that stage 2 maps with one block).
    ///
    /// # Errors
    /// Whatever [`FrameAllocator::alloc`] refuses.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<PhysRange, FrameError> {
        let block = self.frames.alloc(size, align)?;
        self.window.zero(block);
        Ok(block)
    }

    /// Returns a buffer from [`GuestMemory::alloc`].
    ///
    /// # Errors
    /// Whatever [`FrameAllocator::free`] refuses.
    pub fn free(&mut self, block: PhysRange) -> Result<(), FrameError> {
        self.frames.free(block)
    }

    /// Whether all of `[pa, pa + len)` is guest memory this pool manages.
    pub fn covers(&self, pa: PhysAddr, len: u64) -> bool {
        self.window.covers(pa, len)
    }

    /// Zeroes `[pa, pa + len)` with 8-byte stores when `pa` and `len` are multiples of 8, byte
    /// by byte otherwise.
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the caller).
    pub fn zero(&mut self, pa: PhysAddr, len: u64) {
        match PhysRange::new(pa, len) {
            Some(r) if pa.0.is_multiple_of(8) && len.is_multiple_of(8) => {
                self.assert_covers(pa, len);
                self.window.zero(r);
            }
            _ => self.fill_with(pa, len, |_| 0),
        }
    }

    /// Writes `byte_at(i)` to `pa + i` for `i` in `0..len`.
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the scenario).
    pub fn fill_with(&mut self, pa: PhysAddr, len: u64, byte_at: impl Fn(u64) -> u8) {
        self.assert_covers(pa, len);
        for i in 0..len {
            self.window.write_u8(PhysAddr(pa.0 + i), byte_at(i));
        }
        self.window.publish();
    }

    /// Fills `[pa, pa + len)` with the test pattern `seed` (see [`pattern_byte`]).
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the scenario).
    pub fn fill_pattern(&mut self, pa: PhysAddr, len: u64, seed: u8) {
        self.fill_with(pa, len, |i| pattern_byte(seed, i));
    }

    /// Copies `bytes` to `pa`.
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the scenario).
    pub fn write_bytes(&mut self, pa: PhysAddr, bytes: &[u8]) {
        self.fill_with(pa, bytes.len() as u64, |i| bytes[i as usize]);
    }

    /// Makes the CPU's writes to `[pa, pa + len)` visible to non-cacheable readers: a device
    /// that does not snoop, or a guest running with its MMU off
    /// ([`RamWindow::sync_for_device`]).
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the caller).
    pub fn sync_for_device(&self, pa: PhysAddr, len: u64) {
        self.assert_covers(pa, len);
        self.window.sync_for_device(pa, len);
    }

    /// Makes what non-cacheable writers (a guest with its MMU off, a non-snooping device)
    /// wrote to `[pa, pa + len)` visible to the CPU's next reads ([`RamWindow::sync_for_cpu`]).
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the caller).
    pub fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.assert_covers(pa, len);
        self.window.sync_for_cpu(pa, len);
    }

    /// Copies `buf.len()` bytes from `pa` into `buf`.
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the scenario).
    pub fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) {
        self.assert_covers(pa, buf.len() as u64);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.window.read_u8(PhysAddr(pa.0 + i as u64));
        }
    }

    /// The first byte of `[pa, pa + len)` that differs from `expected(i)`, or `None` when all
    /// match.
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the scenario).
    pub fn first_mismatch(
        &self,
        pa: PhysAddr,
        len: u64,
        expected: impl Fn(u64) -> u8,
    ) -> Option<Mismatch> {
        self.assert_covers(pa, len);
        (0..len).find_map(|i| {
            let at = PhysAddr(pa.0 + i);
            let found = self.window.read_u8(at);
            let want = expected(i);
            (found != want).then_some(Mismatch {
                pa: at,
                found,
                expected: want,
            })
        })
    }

    /// [`GuestMemory::first_mismatch`] against the test pattern `seed`.
    ///
    /// # Panics
    /// When the range is not inside the pool (a bug in the scenario).
    pub fn check_pattern(&self, pa: PhysAddr, len: u64, seed: u8) -> Option<Mismatch> {
        self.first_mismatch(pa, len, |i| pattern_byte(seed, i))
    }

    fn assert_covers(&self, pa: PhysAddr, len: u64) {
        assert!(
            len == 0 || self.window.covers(pa, len),
            "{pa}+{len:#x} is not guest memory"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::ram_window::host::HostRam;
    use super::*;

    const MIB: u64 = 1 << 20;

    fn r(start: u64, size: u64) -> PhysRange {
        PhysRange::new(PhysAddr(start), size).unwrap()
    }

    #[test]
    fn buffers_are_2mib_aligned_when_asked() {
        let mut ram = HostRam::new(PhysAddr(0x5000_0000), 8 * MIB);
        let mut g = GuestMemory::new(ram.window(&[r(0x5000_1000, 8 * MIB - 0x1000)])).unwrap();
        let b = g.alloc(4096, 2 * MIB).unwrap();
        assert_eq!(b.start(), PhysAddr(0x5020_0000));
    }

    #[test]
    fn pattern_fill_and_compare_find_the_first_wrong_byte() {
        let mut ram = HostRam::new(PhysAddr(0x5000_0000), 0x2000);
        let mut g = GuestMemory::new(ram.window(&[r(0x5000_0000, 0x2000)])).unwrap();
        let b = g.alloc(0x1000, 0x1000).unwrap();
        g.fill_pattern(b.start(), 0x1000, 7);
        assert_eq!(g.check_pattern(b.start(), 0x1000, 7), None);
        let wrong = g.check_pattern(b.start(), 0x1000, 8).unwrap();
        assert_eq!(wrong.pa, b.start());
        g.write_bytes(PhysAddr(b.start().0 + 0x10), &[0]);
        let m = g.check_pattern(b.start(), 0x1000, 7).unwrap();
        assert_eq!(m.pa, PhysAddr(b.start().0 + 0x10));
        assert_eq!(m.found, 0);
        assert_eq!(m.expected, pattern_byte(7, 0x10));
        let mut buf = [0u8; 4];
        g.read_bytes(PhysAddr(b.start().0 + 0x11), &mut buf);
        assert_eq!(buf[0], pattern_byte(7, 0x11));
    }

    #[test]
    fn patterns_differ_by_seed_and_shift() {
        assert!((0..4096).any(|i| pattern_byte(1, i) != pattern_byte(2, i)));
        assert!((0..4096).any(|i| pattern_byte(1, i) != pattern_byte(1, i + 1)));
    }

    #[test]
    #[should_panic(expected = "is not guest memory")]
    fn access_outside_the_pool_is_caught() {
        let mut ram = HostRam::new(PhysAddr(0x5000_0000), 0x2000);
        let mut g = GuestMemory::new(ram.window(&[r(0x5000_1000, 0x1000)])).unwrap();
        g.fill_pattern(PhysAddr(0x5000_0ff0), 0x20, 1);
    }
}
