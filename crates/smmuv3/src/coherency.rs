//! Cache maintenance for an SMMU that does not snoop the CPU caches.
//!
//! When SMMU_IDR0.COHACC is 0 (IHI 0070 §6.3.1: the SMMU's accesses to tables and queues are not
//! IO-coherent), or the platform says the SMMU's interconnect is not coherent (no `dma-coherent`
//! in the device tree), what the CPU writes may sit in its caches where the SMMU never looks.
//! The driver then tells the SMMU to make Non-cacheable accesses (SMMU_CR1 §6.3.11, STE
//! S2IR0/S2OR0/S2SH0 §5.2) and cleans every line it writes to the point of coherency.
//!
//! [`Dma`] does the cleaning: every table and queue update goes through it, so no writer can
//! forget. It cleans each word right after writing it (and a whole allocation right after it
//! is zeroed), before any barrier or MMIO write that lets the SMMU read it: the order the
//! writers already keep (a table filled before it is linked, an STE's other words before word
//! 0, commands before CMDQ_PROD) is therefore the order in which the SMMU can see the writes.
//!
//! The other direction: the only memory the SMMU writes is the event queue (no hardware
//! access/dirty flag updates are enabled). A non-coherent SMMU's record goes to memory, not
//! into the CPU's cache, which may still hold an older copy of the slot (the previous lap's
//! record, or a line fetched speculatively). [`Dma::invalidate_for_cpu`] makes the event-queue
//! drain invalidate each record before reading it.

use iommu_core::{DmaMemory, OutOfMemory, PhysAddr};

/// `mem`, cleaning what is written to it when the SMMU is not coherent (and, on request,
/// invalidating what the SMMU wrote before the CPU reads it: [`Dma::invalidate_for_cpu`]).
pub(crate) struct Dma<'m, M: DmaMemory + ?Sized> {
    mem: &'m mut M,
    non_coherent: bool,
}

impl<'m, M: DmaMemory + ?Sized> Dma<'m, M> {
    /// `mem` as seen by an SMMU that is `coherent` (no maintenance) or not.
    pub(crate) fn new(mem: &'m mut M, coherent: bool) -> Self {
        Self {
            mem,
            non_coherent: !coherent,
        }
    }

    /// `[pa, pa + len)`, which the SMMU wrote, is about to be read by the CPU: when the SMMU
    /// is not coherent, invalidate the CPU's cached copy first
    /// ([`DmaMemory::sync_for_cpu`]). A coherent SMMU's writes snoop the caches, so then
    /// nothing is done.
    pub(crate) fn invalidate_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        if self.non_coherent {
            self.mem.sync_for_cpu(pa, len);
        }
    }
}

impl<M: DmaMemory + ?Sized> DmaMemory for Dma<'_, M> {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        let pa = self.mem.alloc_zeroed(size, align)?;
        if self.non_coherent {
            // The zeroes are CPU writes too: memory may still hold an old table or queue.
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
