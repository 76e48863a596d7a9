//! The event queue (IHI 0070 §3.5, §7.2, §6.3.28-§6.3.30): 32-byte records the SMMU writes
//! and software consumes, with overflow accounting.
//!
//! The SMMU cannot say how many records it dropped, only *that* it dropped some. Overflow shows
//! up two ways and both are handled:
//!
//! * the architected way: EVENTQ_PROD.OVFLG differs from EVENTQ_CONS.OVACKFLG (acknowledged by
//!   copying OVFLG into OVACKFLG, IHI 0070 §7.2);
//! * QEMU's way: when its queue is full QEMU raises GERROR.EVENTQ_ABT_ERR instead (acknowledged
//!   by toggling GERRORN.EVENTQ_ABT_ERR).
//!
//! Each such signal is one *overflow episode* in which at least one record was lost, so the
//! driver counts episodes and reports `lost_at_least` = number of episodes: a lower bound, never
//! an estimate.
//!
//! Reading a record (IHI 0070 §3.5, producer/consumer queues): the SMMU writes a record and
//! only then moves EVENTQ_PROD past it, and guarantees that an agent that observes the new
//! PROD also observes the record in memory. So the driver reads PROD, orders that read before
//! anything it reads from the queue (a `DSB SY`, [`RegisterAccess::io_barrier`]), and reads
//! only the records PROD covers. On an SMMU that does not snoop the CPU caches ("in memory" is
//! not "in the CPU's cache": the CPU may hold an older copy of the slot, such as the record of
//! the previous lap, or a line it fetched speculatively before the SMMU wrote it), it also
//! invalidates each record's 32 bytes ([`DmaMemory::sync_for_cpu`]: `DC CIVAC`, then
//! `DSB SY`) after that barrier and right before reading them. Invalidating any earlier (say,
//! when the slot is handed back) would not do: the CPU may refetch the line before the SMMU
//! writes the next record there.

use crate::coherency::Dma;
use crate::driver::Stats;
use crate::error::SmmuError;
use crate::event::Event;
use crate::gerror::GerrorFlags;
use crate::mmio::{Reg32, RegisterAccess};
use crate::queue::QueueGeometry;
use crate::queue_memory::QueueMemory;
use crate::regs::{EVENTQ_BASE, EVENTQ_PROD};
use iommu_core::{DmaMemory, PhysAddr};

/// Size of one event record (IHI 0070 §7.3: four 64-bit words).
pub(crate) const ENTRY_SIZE: u64 = 32;

/// What one [`crate::Smmu::drain_events`] call did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DrainReport {
    /// Records handed to the callback.
    pub delivered: u32,
    /// Records were lost since the previous drain (at least one per episode).
    pub overflowed: bool,
    /// Overflow episodes seen by this drain (OVFLG toggles plus EVENTQ_ABT_ERR), which is also
    /// the lower bound on records lost.
    pub overflow_episodes: u32,
    /// The drain stopped at its budget (twice the queue size) with records still queued.
    pub more_pending: bool,
}

/// An event queue in DMA memory and the driver's copy of EVENTQ_CONS.
#[derive(Debug)]
pub(crate) struct EventQueue {
    q: QueueMemory,
    cons: u32,
    ovack: bool,
}

impl EventQueue {
    /// Allocates a queue of 2^`log2size` records.
    pub(crate) fn alloc(
        mem: &mut (impl DmaMemory + ?Sized),
        log2size: u8,
    ) -> Result<Self, SmmuError> {
        Ok(Self {
            q: QueueMemory::alloc(mem, log2size, ENTRY_SIZE)?,
            cons: 0,
            ovack: false,
        })
    }

    /// Returns the memory.
    pub(crate) fn free(self, mem: &mut (impl DmaMemory + ?Sized)) {
        self.q.free(mem);
    }

    /// The queue's geometry.
    pub(crate) fn geometry(&self) -> QueueGeometry {
        self.q.geom
    }

    /// The SMMU_EVENTQ_BASE value: WA (write-allocate), ADDR and LOG2SIZE (IHI 0070 §6.3.28).
    pub(crate) fn base_reg(&self) -> u64 {
        (EVENTQ_BASE::WA::SET + EVENTQ_BASE::LOG2SIZE.val(self.q.geom.log2size().into())).value
            | self.q.addr_field()
    }

    fn cons_reg(&self) -> u32 {
        self.cons | (u32::from(self.ovack) << 31)
    }

    /// Pops every queued record into `f`, advancing EVENTQ_CONS after each one, then
    /// acknowledges overflow. Stops after twice the queue size records so that an event storm
    /// cannot keep the caller here forever. `mem` invalidates each record before it is read
    /// when the SMMU is not coherent (see the module documentation).
    pub(crate) fn drain<R, M>(
        &mut self,
        regs: &mut R,
        mem: &mut Dma<'_, M>,
        mut f: impl FnMut(Event),
        stats: &mut Stats,
    ) -> DrainReport
    where
        R: RegisterAccess + ?Sized,
        M: DmaMemory + ?Sized,
    {
        let abt = GerrorFlags::active(regs.read32(Reg32::Gerror), regs.read32(Reg32::Gerrorn))
            .contains(GerrorFlags::EVENTQ_ABT_ERR);
        let budget = self.q.geom.entries().saturating_mul(2);
        let mut report = DrainReport::default();
        let mut prod = regs.read32(Reg32::EventqProd);
        'drain: loop {
            // Records up to PROD are complete (IHI 0070 §3.5); read them, and invalidate them
            // on a non-coherent SMMU, only after reading PROD.
            regs.io_barrier();
            while !self.q.geom.is_empty(prod, self.cons) {
                if report.delivered >= budget {
                    report.more_pending = true;
                    break 'drain;
                }
                let slot = self.q.slot(self.cons);
                // Non-coherent: drop the CPU's possibly stale copy of this record (the
                // previous lap's, say) so that the reads below fetch what the SMMU wrote.
                mem.invalidate_for_cpu(slot, ENTRY_SIZE);
                let slot = slot.get();
                let raw = [0, 8, 16, 24].map(|off| mem.read_u64(PhysAddr(slot + off)));
                f(Event::decode(raw));
                report.delivered += 1;
                self.cons = self.q.geom.advance(self.cons, 1);
                // The slot is read before the SMMU may reuse it.
                regs.io_barrier();
                regs.write32(Reg32::EventqCons, self.cons_reg());
            }
            let again = regs.read32(Reg32::EventqProd);
            let done = self.q.geom.is_empty(again, self.cons);
            prod = again;
            if done {
                break;
            }
        }
        // IHI 0070 §7.2: OVFLG toggled since the last acknowledgement.
        let ovflg = EVENTQ_PROD::OVFLG.is_set(prod);
        if ovflg != self.ovack {
            self.ovack = ovflg;
            regs.write32(Reg32::EventqCons, self.cons_reg());
            report.overflow_episodes += 1;
        }
        // QEMU: a full queue raises GERROR.EVENTQ_ABT_ERR.
        if abt {
            let bit = GerrorFlags::EVENTQ_ABT_ERR.bits();
            let gerror = regs.read32(Reg32::Gerror);
            let gerrorn = regs.read32(Reg32::Gerrorn);
            regs.write32(Reg32::Gerrorn, (gerrorn & !bit) | (gerror & bit));
            report.overflow_episodes += 1;
        }
        report.overflowed = report.overflow_episodes > 0;
        if report.overflowed {
            log::warn!(
                "smmuv3: event queue overflowed ({} episode(s)); at least {} event(s) lost",
                report.overflow_episodes,
                report.overflow_episodes
            );
        }
        stats.events_delivered += u64::from(report.delivered);
        stats.event_overflows += u64::from(report.overflow_episodes);
        stats.events_lost_at_least += u64::from(report.overflow_episodes);
        report
    }
}
