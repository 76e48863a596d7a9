//! The memory the IOMMU reads and writes by DMA: stream tables, queues, page tables.
//!
//! Table and queue logic never holds a pointer: it names memory by [`PhysAddr`] and reads or writes
//! whole 64-bit words through a [`DmaMemory`]. A 64-bit write is single-copy atomic on the real
//! implementation, so the IOMMU never observes a torn descriptor (IHI 0070 §3.21.3 requires STE and
//! descriptor updates to be observed as whole 64-bit words).

use crate::addr::PhysAddr;
use core::fmt;

/// No memory was left for an allocation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutOfMemory {
    /// The size that was asked for, in bytes.
    pub size: usize,
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "out of DMA memory allocating {:#x} bytes", self.size)
    }
}

/// Physically contiguous memory shared with a DMA-capable IOMMU.
///
/// Implementations decide how physical addresses are reached (identity map on bare metal, a hash
/// map of pages in host tests). Callers only use addresses inside allocations they own; an
/// implementation may treat anything else as a bug and panic, since no caller input ever reaches
/// these addresses directly.
pub trait DmaMemory {
    /// Allocates `size` bytes of zeroed memory aligned to `align` bytes.
    ///
    /// `size` is rounded up to whole 4 KiB pages; `align` is a power of two (at least 4 KiB is
    /// always honoured).
    ///
    /// # Errors
    /// [`OutOfMemory`] when no suitable contiguous range is free.
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory>;

    /// Returns an allocation made by [`DmaMemory::alloc_zeroed`] with the same `size`.
    fn free(&mut self, pa: PhysAddr, size: usize);

    /// Reads the 64-bit word at `pa` (8-byte aligned).
    fn read_u64(&self, pa: PhysAddr) -> u64;

    /// Writes the 64-bit word at `pa` (8-byte aligned) as one single-copy-atomic store.
    fn write_u64(&mut self, pa: PhysAddr, value: u64);

    /// Makes all earlier writes visible to the IOMMU's table walker before any later MMIO write
    /// (a `DSB` on Arm). Called before a command that tells the IOMMU to re-read memory.
    fn publish(&mut self) {}

    /// Makes the bytes `[pa, pa + len)` that the CPU wrote visible to a device that does **not**
    /// snoop the CPU caches (a non-coherent IOMMU: SMMU_IDR0.COHACC = 0, or a device tree
    /// without `dma-coherent`), and waits until that is done: on Arm, `DC CVAC` (clean to the
    /// point of coherency) over every cache line the range touches, then `DSB`.
    ///
    /// The driver calls it after every write to a table or queue, and over every new
    /// allocation (zeroing is a write too), when and only when the IOMMU is non-coherent.
    /// Deliberately without a default: an implementation that forgot it would let a
    /// non-coherent IOMMU walk stale memory. Memory that is never cached (e.g. reached with the
    /// MMU off) may implement it as the barrier alone.
    fn sync_for_device(&mut self, pa: PhysAddr, len: u64);

    /// Makes what a device that does **not** snoop the CPU caches wrote to `[pa, pa + len)`
    /// (e.g. event records of a non-coherent IOMMU) visible to the CPU's next reads, and waits
    /// until that is done: on Arm, `DC CIVAC` (clean and invalidate to the point of coherency)
    /// over every cache line the range touches, then `DSB`. Without it the CPU may keep
    /// reading a copy of the line it cached earlier, e.g. the previous lap's record in the
    /// same queue slot.
    ///
    /// Call it after learning that the device finished writing (e.g. after reading the
    /// queue's producer index) and before reading the range. Lines the CPU dirtied are written
    /// back first (that is the "clean" in `DC CIVAC`) and so overwrite what the device wrote
    /// there: memory a device writes must not share a cache line with CPU writes that were not
    /// cleaned ([`DmaMemory::sync_for_device`]) before the device wrote it.
    ///
    /// The driver calls it before reading each event record, when and only when the IOMMU is
    /// non-coherent. Deliberately without a default, like [`DmaMemory::sync_for_device`]: an
    /// implementation that forgot it would hand stale records to the daemon. Memory that is
    /// never cached may implement it as the barrier alone.
    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64);
}

impl<M: DmaMemory + ?Sized> DmaMemory for &mut M {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        (**self).alloc_zeroed(size, align)
    }
    fn free(&mut self, pa: PhysAddr, size: usize) {
        (**self).free(pa, size)
    }
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        (**self).read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        (**self).write_u64(pa, value)
    }
    fn publish(&mut self) {
        (**self).publish()
    }
    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        (**self).sync_for_device(pa, len)
    }
    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        (**self).sync_for_cpu(pa, len)
    }
}

/// `mem` as an IOMMU that may not snoop the CPU caches sees it: when it is not coherent
/// (SMMUv3: SMMU_IDR0.COHACC = 0 or no `dma-coherent`, IHI 0070 §6.3.1; VT-d: ECAP.C = 0,
/// VT-d spec §11.4.3), every word written is cleaned to memory right after the write
/// ([`DmaMemory::sync_for_device`]), and so is every new allocation (its zeroes are CPU writes
/// too: memory may still hold an old table). A coherent IOMMU gets no maintenance.
///
/// Every table and queue update of a driver goes through it, so no writer can forget; the order
/// in which writers already publish (a table filled before it is linked, an entry's other words
/// before the word that makes it valid) is then the order in which the IOMMU can see the
/// writes.
pub struct Cleaned<'m, M: DmaMemory + ?Sized> {
    mem: &'m mut M,
    non_coherent: bool,
}

impl<'m, M: DmaMemory + ?Sized> Cleaned<'m, M> {
    /// `mem` as seen by an IOMMU that is `coherent` (no maintenance) or not.
    pub fn new(mem: &'m mut M, coherent: bool) -> Self {
        Self {
            mem,
            non_coherent: !coherent,
        }
    }

    /// `[pa, pa + len)`, which the IOMMU wrote (e.g. an event record), is about to be read by
    /// the CPU: when the IOMMU is not coherent, invalidate the CPU's cached copy first
    /// ([`DmaMemory::sync_for_cpu`]). A coherent IOMMU's writes snoop the caches, so then
    /// nothing is done.
    pub fn invalidate_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        if self.non_coherent {
            self.mem.sync_for_cpu(pa, len);
        }
    }
}

impl<M: DmaMemory + ?Sized> DmaMemory for Cleaned<'_, M> {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        let pa = self.mem.alloc_zeroed(size, align)?;
        if self.non_coherent {
            self.mem.sync_for_device(pa, size as u64);
        }
        Ok(pa)
    }

    fn free(&mut self, pa: PhysAddr, size: usize) {
        self.mem.free(pa, size);
    }

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.mem.read_u64(pa)
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.mem.write_u64(pa, value);
        if self.non_coherent {
            self.mem.sync_for_device(pa, 8);
        }
    }

    fn publish(&mut self) {
        self.mem.publish();
    }

    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        self.mem.sync_for_device(pa, len);
    }

    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.mem.sync_for_cpu(pa, len);
    }
}
