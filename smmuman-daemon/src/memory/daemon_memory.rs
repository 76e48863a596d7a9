//! [`DaemonMemory`]: the daemon's pool, as the [`DmaMemory`] the SMMU driver allocates from.

use super::frame_alloc::{FrameAllocator, FrameError};
use super::ram_window::RamWindow;
use super::range::PhysRange;
use iommu_core::{DmaMemory, OutOfMemory, PhysAddr, PAGE_SIZE};

/// Identity-mapped RAM for the SMMU's stream tables, queues and page tables.
#[derive(Debug)]
pub struct DaemonMemory {
    frames: FrameAllocator,
    window: RamWindow,
}

impl DaemonMemory {
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

    /// Allocates a zeroed block with a typed error (the [`DmaMemory`] method only reports the
    /// size).
    ///
    /// # Errors
    /// Whatever [`FrameAllocator::alloc`] refuses.
    pub fn alloc_block(&mut self, size: u64, align: u64) -> Result<PhysRange, FrameError> {
        let block = self.frames.alloc(size, align)?;
        self.window.zero(block);
        Ok(block)
    }
}

/// `[pa, pa + size)` grown to whole pages, as [`DmaMemory::free`] describes its argument.
fn page_block(pa: PhysAddr, size: usize) -> Option<PhysRange> {
    let bytes = (size as u64).max(1).checked_next_multiple_of(PAGE_SIZE)?;
    PhysRange::new(pa, bytes)
}

impl DmaMemory for DaemonMemory {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        match self.alloc_block(size as u64, align as u64) {
            Ok(block) => Ok(block.start()),
            Err(e) => {
                log::warn!("daemon pool: allocation of {size:#x} bytes aligned {align:#x}: {e}");
                Err(OutOfMemory { size })
            }
        }
    }

    fn free(&mut self, pa: PhysAddr, size: usize) {
        let result = match page_block(pa, size) {
            Some(block) => self.frames.free(block),
            None => Err(FrameError::OutOfMemory {
                size: size as u64,
                align: PAGE_SIZE,
            }),
        };
        if let Err(e) = result {
            log::error!("daemon pool: free of {pa} ({size:#x} bytes) refused, block leaked: {e}");
        }
    }

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.window.read_u64(pa)
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.window.write_u64(pa, value)
    }

    fn publish(&mut self) {
        self.window.publish()
    }

    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        self.window.sync_for_device(pa, len)
    }

    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.window.sync_for_cpu(pa, len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ram_window::host::HostRam;
    use super::*;

    fn r(start: u64, size: u64) -> PhysRange {
        PhysRange::new(PhysAddr(start), size).unwrap()
    }

    #[test]
    fn allocations_are_zeroed_aligned_and_reusable() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x10_0000);
        let mut mem = DaemonMemory::new(ram.window(&[r(0x4000_0000, 0x10_0000)])).unwrap();
        let a = mem.alloc_zeroed(0x8000, 0x8000).unwrap();
        assert!(a.is_aligned(0x8000));
        mem.write_u64(a, 0xdead_beef);
        assert_eq!(mem.read_u64(a), 0xdead_beef);
        mem.free(a, 0x8000);
        let b = mem.alloc_zeroed(0x8000, 0x8000).unwrap();
        assert_eq!(b, a, "the freed block is reused");
        assert_eq!(mem.read_u64(b), 0, "and handed out zeroed again");
    }

    #[test]
    fn exhaustion_reports_the_size() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x4000);
        let mut mem = DaemonMemory::new(ram.window(&[r(0x4000_0000, 0x4000)])).unwrap();
        assert_eq!(
            mem.alloc_zeroed(0x8000, 0x1000),
            Err(OutOfMemory { size: 0x8000 })
        );
    }

    #[test]
    fn a_bad_free_leaks_instead_of_corrupting_the_pool() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x4000);
        let mut mem = DaemonMemory::new(ram.window(&[r(0x4000_0000, 0x4000)])).unwrap();
        let a = mem.alloc_zeroed(0x1000, 0x1000).unwrap();
        mem.free(a, 0x1000);
        mem.free(a, 0x1000);
        assert_eq!(
            mem.frames().free_bytes(),
            0x4000,
            "the double free changed nothing"
        );
    }
}
