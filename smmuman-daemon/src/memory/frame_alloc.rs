//! [`FrameAllocator`]: physically contiguous, size-aligned blocks of 4 KiB pages.
//!
//! Pure bookkeeping over [`PhysRange`]s (it never touches the memory it manages), so it runs in
//! host tests. Free space is a sorted list of disjoint ranges; an allocation takes the lowest
//! block that satisfies the alignment, a free merges the block back with its neighbours.

use super::range::PhysRange;
use core::fmt;
use heapless::Vec;
use iommu_core::{PhysAddr, PAGE_SIZE};

/// Most disjoint free ranges the allocator tracks. Each allocation can split one range in two,
/// so this bounds fragmentation, not the number of live allocations.
pub const MAX_FREE_RANGES: usize = 128;

/// Most disjoint ranges an allocator can be built over.
pub const MAX_MANAGED_RANGES: usize = 8;

/// Why the allocator refused a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// A zero-byte allocation was requested.
    ZeroSize,
    /// The alignment is not a power of two.
    BadAlignment(u64),
    /// No free block of `size` bytes aligned to `align` is left.
    OutOfMemory {
        /// Requested size in bytes (rounded up to pages).
        size: u64,
        /// Requested alignment in bytes.
        align: u64,
    },
    /// The request fits, but the free list is full and cannot record the split.
    TooFragmented,
    /// A freed or constructed block is not page aligned.
    Unaligned(PhysRange),
    /// A freed block lies (partly) outside the memory this allocator manages.
    NotManaged(PhysRange),
    /// A freed block is (partly) free already.
    DoubleFree(PhysRange),
    /// More managed ranges than [`MAX_MANAGED_RANGES`], or overlapping ones.
    BadPool,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSize => write!(f, "zero-byte frame allocation"),
            Self::BadAlignment(a) => write!(f, "alignment {a:#x} is not a power of two"),
            Self::OutOfMemory { size, align } => {
                write!(f, "no free block of {size:#x} bytes aligned to {align:#x}")
            }
            Self::TooFragmented => write!(f, "free list full: memory too fragmented"),
            Self::Unaligned(r) => write!(f, "block {r} is not page aligned"),
            Self::NotManaged(r) => write!(f, "block {r} is outside the managed memory"),
            Self::DoubleFree(r) => write!(f, "block {r} is already (partly) free"),
            Self::BadPool => write!(f, "managed ranges overlap or are too many"),
        }
    }
}

/// Hands out page-granular blocks of the ranges it was built over.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    managed: Vec<PhysRange, MAX_MANAGED_RANGES>,
    /// Sorted by start address, disjoint, never adjacent (adjacent ranges are merged).
    free: Vec<PhysRange, MAX_FREE_RANGES>,
}

impl FrameAllocator {
    /// An allocator over the given ranges, each shrunk inwards to whole pages (ranges smaller
    /// than a page are dropped).
    ///
    /// # Errors
    /// [`FrameError::BadPool`] when the ranges overlap or there are more than
    /// [`MAX_MANAGED_RANGES`] of them.
    pub fn new(ranges: &[PhysRange]) -> Result<Self, FrameError> {
        let mut managed: Vec<PhysRange, MAX_MANAGED_RANGES> = Vec::new();
        for r in ranges.iter().filter_map(|r| r.shrink_to_align(PAGE_SIZE)) {
            if managed.iter().any(|m| m.overlaps(r)) {
                return Err(FrameError::BadPool);
            }
            managed.push(r).map_err(|_| FrameError::BadPool)?;
        }
        managed.sort_unstable();
        let mut alloc = Self {
            managed: managed.clone(),
            free: Vec::new(),
        };
        for r in managed {
            alloc.insert_free(r)?;
        }
        Ok(alloc)
    }

    /// The ranges this allocator manages (page aligned, sorted).
    pub fn managed(&self) -> &[PhysRange] {
        &self.managed
    }

    /// Whether all of `range` lies inside one managed range.
    pub fn manages(&self, range: PhysRange) -> bool {
        self.managed.iter().any(|m| m.contains(range))
    }

    /// Whether `range` shares a byte with any managed range.
    pub fn overlaps(&self, range: PhysRange) -> bool {
        self.managed.iter().any(|m| m.overlaps(range))
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.size()).sum()
    }

    /// Bytes managed in total.
    pub fn total_bytes(&self) -> u64 {
        self.managed.iter().map(|r| r.size()).sum()
    }

    /// The lowest free block of `size` bytes (rounded up to pages) whose start is a multiple of
    /// `align` (a power of two; at least a page is always honoured).
    ///
    /// # Errors
    /// [`FrameError::ZeroSize`], [`FrameError::BadAlignment`], [`FrameError::OutOfMemory`] when
    /// no free block fits, [`FrameError::TooFragmented`] when the split cannot be recorded.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<PhysRange, FrameError> {
        if size == 0 {
            return Err(FrameError::ZeroSize);
        }
        if !align.is_power_of_two() {
            return Err(FrameError::BadAlignment(align));
        }
        let align = align.max(PAGE_SIZE);
        let oom = FrameError::OutOfMemory { size, align };
        let size = size.checked_next_multiple_of(PAGE_SIZE).ok_or(oom)?;
        let oom = FrameError::OutOfMemory { size, align };
        let (index, block) = self
            .free
            .iter()
            .enumerate()
            .find_map(|(i, r)| {
                let start = r.start().0.checked_next_multiple_of(align)?;
                let block = PhysRange::new(PhysAddr(start), size)?;
                r.contains(block).then_some((i, block))
            })
            .ok_or(oom)?;
        let range = self.free[index];
        let before = PhysRange::from_bounds(range.start(), block.start());
        let after = PhysRange::from_bounds(block.end(), range.end());
        match (before, after) {
            (None, None) => {
                self.free.remove(index);
            }
            (Some(part), None) | (None, Some(part)) => self.free[index] = part,
            (Some(b), Some(a)) => {
                self.free
                    .insert(index + 1, a)
                    .map_err(|_| FrameError::TooFragmented)?;
                self.free[index] = b;
            }
        }
        Ok(block)
    }

    /// Returns a block from [`FrameAllocator::alloc`] (or any page-aligned part of one).
    ///
    /// # Errors
    /// [`FrameError::Unaligned`], [`FrameError::NotManaged`], [`FrameError::DoubleFree`] when the
    /// block overlaps free space, [`FrameError::TooFragmented`] when it cannot be recorded (the
    /// block then stays allocated).
    pub fn free(&mut self, block: PhysRange) -> Result<(), FrameError> {
        if !block.start().is_aligned(PAGE_SIZE) || !block.size().is_multiple_of(PAGE_SIZE) {
            return Err(FrameError::Unaligned(block));
        }
        if !self.manages(block) {
            return Err(FrameError::NotManaged(block));
        }
        if self.free.iter().any(|r| r.overlaps(block)) {
            return Err(FrameError::DoubleFree(block));
        }
        self.insert_free(block)
    }

    /// Inserts a range known to be disjoint from the free list, merging with its neighbours.
    fn insert_free(&mut self, block: PhysRange) -> Result<(), FrameError> {
        let index = self.free.partition_point(|r| r.start() < block.start());
        let merge_prev = index > 0 && self.free[index - 1].end() == block.start();
        let merge_next = index < self.free.len() && self.free[index].start() == block.end();
        match (merge_prev, merge_next) {
            (true, true) => {
                let next = self.free.remove(index);
                let prev = &mut self.free[index - 1];
                *prev = PhysRange::from_bounds(prev.start(), next.end()).unwrap_or(*prev);
            }
            (true, false) => {
                let prev = &mut self.free[index - 1];
                *prev = PhysRange::from_bounds(prev.start(), block.end()).unwrap_or(*prev);
            }
            (false, true) => {
                let next = &mut self.free[index];
                *next = PhysRange::from_bounds(block.start(), next.end()).unwrap_or(*next);
            }
            (false, false) => {
                self.free
                    .insert(index, block)
                    .map_err(|_| FrameError::TooFragmented)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn r(start: u64, size: u64) -> PhysRange {
        PhysRange::new(PhysAddr(start), size).unwrap()
    }

    #[test]
    fn blocks_are_aligned_to_the_request() {
        let mut a = FrameAllocator::new(&[r(0x4000_1000, 64 * MIB)]).unwrap();
        let small = a.alloc(100, 1).unwrap();
        assert_eq!(
            small,
            r(0x4000_1000, 0x1000),
            "a byte request takes one page"
        );
        let q = a.alloc(0x8000, 0x8000).unwrap();
        assert!(q.start().is_aligned(0x8000));
        let big = a.alloc(2 * MIB, 2 * MIB).unwrap();
        assert!(big.start().is_aligned(2 * MIB));
        assert_eq!(big.size(), 2 * MIB);
        assert!(!big.overlaps(q) && !q.overlaps(small));
    }

    #[test]
    fn exhaustion_is_an_error_naming_the_request() {
        let mut a = FrameAllocator::new(&[r(0x1000, 0x4000)]).unwrap();
        assert!(a.alloc(0x4000, 0x1000).is_ok());
        assert_eq!(
            a.alloc(1, 1),
            Err(FrameError::OutOfMemory {
                size: 0x1000,
                align: 0x1000
            })
        );
        let mut b = FrameAllocator::new(&[r(0x1000, 0x4000)]).unwrap();
        assert_eq!(
            b.alloc(0x4000, 0x4000),
            Err(FrameError::OutOfMemory {
                size: 0x4000,
                align: 0x4000
            }),
            "the range holds 4 pages but no 16 KiB-aligned block of 4 pages"
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut a = FrameAllocator::new(&[r(0x1000, 0x4000)]).unwrap();
        assert_eq!(a.alloc(0, 0x1000), Err(FrameError::ZeroSize));
        assert_eq!(
            a.alloc(0x1000, 0x3000),
            Err(FrameError::BadAlignment(0x3000))
        );
        assert_eq!(
            a.alloc(u64::MAX, 1),
            Err(FrameError::OutOfMemory {
                size: u64::MAX,
                align: 0x1000
            })
        );
    }

    #[test]
    fn freed_blocks_are_reused_and_merged() {
        let mut a = FrameAllocator::new(&[r(0x10_0000, MIB)]).unwrap();
        let blocks: std::vec::Vec<_> = (0..4).map(|_| a.alloc(0x4000, 0x1000).unwrap()).collect();
        for b in &blocks {
            a.free(*b).unwrap();
        }
        assert_eq!(a.free_bytes(), MIB);
        // Everything merged back: the whole megabyte is one block again.
        assert_eq!(a.alloc(MIB, MIB).unwrap(), r(0x10_0000, MIB));
    }

    #[test]
    fn double_free_and_foreign_blocks_are_caught() {
        let mut a = FrameAllocator::new(&[r(0x10_0000, MIB)]).unwrap();
        let b = a.alloc(0x2000, 0x1000).unwrap();
        a.free(b).unwrap();
        assert_eq!(a.free(b), Err(FrameError::DoubleFree(b)));
        let outside = r(0x20_0000, 0x1000);
        assert_eq!(a.free(outside), Err(FrameError::NotManaged(outside)));
        let crooked = r(0x10_0800, 0x1000);
        assert_eq!(a.free(crooked), Err(FrameError::Unaligned(crooked)));
    }

    #[test]
    fn reserved_holes_are_never_handed_out() {
        // Two pools around a hole at 0x4800_0000..0x4810_0000 (a device tree, say).
        let low = r(0x4000_0000, 0x800_0000);
        let high = r(0x4810_0000, 0x7f0_0000);
        let hole = r(0x4800_0000, 0x10_0000);
        let mut a = FrameAllocator::new(&[high, low]).unwrap();
        let mut got = 0;
        while let Ok(b) = a.alloc(0x10_0000, 0x1000) {
            assert!(!b.overlaps(hole), "{b} overlaps the hole");
            got += b.size();
        }
        assert_eq!(got, low.size() + high.size());
    }

    #[test]
    fn ranges_are_trimmed_to_pages_and_overlaps_refused() {
        let a = FrameAllocator::new(&[r(0x1234, 0x3000)]).unwrap();
        assert_eq!(a.managed(), &[r(0x2000, 0x2000)]);
        assert_eq!(
            FrameAllocator::new(&[r(0x1000, 0x2000), r(0x2000, 0x1000)]).unwrap_err(),
            FrameError::BadPool
        );
    }

    #[test]
    fn fragmentation_beyond_the_free_list_is_an_error_not_a_loss() {
        let mut a = FrameAllocator::new(&[r(0, 0x1000 * 1024)]).unwrap();
        let blocks: std::vec::Vec<_> = (0..1024)
            .map(|_| a.alloc(0x1000, 0x1000).unwrap())
            .collect();
        // Free every other page: 512 disjoint holes, more than the free list holds.
        let mut refused = 0;
        for b in blocks.iter().step_by(2) {
            match a.free(*b) {
                Ok(()) => {}
                Err(FrameError::TooFragmented) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(refused, 512 - MAX_FREE_RANGES);
        assert_eq!(a.free_bytes(), MAX_FREE_RANGES as u64 * 0x1000);
    }
}
