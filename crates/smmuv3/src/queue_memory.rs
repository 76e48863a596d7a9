//! [`QueueMemory`]: the DMA memory of one SMMU queue, shared by the command and event queues.

use crate::error::SmmuError;
use crate::queue::QueueGeometry;
use crate::regs::addr_bits;
use iommu_core::{DmaMemory, PhysAddr};

/// 2^LOG2SIZE entries of `entry_size` bytes in DMA memory, aligned to the queue's size with a
/// minimum of 32 bytes (IHI 0070 §6.3.25 SMMU_CMDQ_BASE.ADDR, §6.3.28 SMMU_EVENTQ_BASE.ADDR).
#[derive(Debug)]
pub(crate) struct QueueMemory {
    /// First entry.
    pub base: PhysAddr,
    /// Size and pointer arithmetic.
    pub geom: QueueGeometry,
    entry_size: u64,
}

impl QueueMemory {
    /// Allocates a zeroed queue of 2^`log2size` entries of `entry_size` bytes.
    pub(crate) fn alloc(
        mem: &mut (impl DmaMemory + ?Sized),
        log2size: u8,
        entry_size: u64,
    ) -> Result<Self, SmmuError> {
        let geom = QueueGeometry::new(log2size);
        let bytes = Self::bytes(geom, entry_size);
        let base = mem.alloc_zeroed(bytes, bytes.max(32))?;
        Ok(Self {
            base,
            geom,
            entry_size,
        })
    }

    fn bytes(geom: QueueGeometry, entry_size: u64) -> usize {
        geom.entries() as usize * entry_size as usize
    }

    /// Returns the memory.
    pub(crate) fn free(self, mem: &mut (impl DmaMemory + ?Sized)) {
        mem.free(self.base, Self::bytes(self.geom, self.entry_size));
    }

    /// Address of the entry pointer `p` designates (its wrap flag ignored).
    pub(crate) fn slot(&self, p: u32) -> PhysAddr {
        PhysAddr(self.base.get() + u64::from(self.geom.index(p)) * self.entry_size)
    }

    /// The ADDR field of the queue's BASE register (bits [51:5]).
    pub(crate) fn addr_field(&self) -> u64 {
        addr_bits(self.base.get(), 5)
    }
}
