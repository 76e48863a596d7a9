//! The fail-safe against the emulated unit: after it, every requester's DMA is blocked and
//! recorded (reason 0x1: root entry not present), a live window included; each case has a
//! control in which the same DMA lands.

use super::{block_all_dma, NoQueueAccess, QueueAccess, QueueState};
use crate::fake::{qemu_rig, DmaOutcome, Inject, SharedMem, SharedUnit};
use crate::mmio::{Reg32, Reg64, RegisterAccess};
use crate::tests::{entry, one_page_table, up, BEHIND, EDU, NIC};
use crate::{FaultReasonCode, Unit};
use iommu_core::{Access, DmaMemory, Iova, PhysAddr};

/// Bound of every wait: small, so a stuck bit ends the test fast.
const LIMIT: u32 = 1000;

/// The reserved page of zeroes.
fn zero_page(mem: &mut SharedMem) -> PhysAddr {
    let pa = mem.alloc_zeroed(4096, 4096).unwrap();
    mem.sync_for_device(pa, 4096);
    pa
}

/// Every requester (EDU, NIC, BEHIND) is blocked at `iova` with a recorded root-entry fault
/// naming it (drained one by one: QEMU's unit has one fault-recording register).
fn assert_all_blocked(unit: &SharedUnit, iova: u64) {
    let mut drv = Unit::new(unit.clone()).unwrap();
    for who in [EDU, NIC, BEHIND] {
        let got = unit.get().dma(who, Iova(iova), 4, true);
        assert_eq!(
            got,
            DmaOutcome::Blocked {
                at: Iova(iova),
                reason: 0x1,
                recorded: true
            },
            "{who}"
        );
        let mut records = Vec::new();
        drv.drain_faults(|f| records.push(f));
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].source, who);
        assert_eq!(records[0].addr, Iova(iova));
        assert_eq!(records[0].reason, FaultReasonCode(0x1));
    }
}

/// A running unit with EDU attached to a window whose translation the unit has cached.
fn with_live_window() -> (SharedMem, SharedUnit, Unit<SharedUnit>) {
    let (mut mem, unit, mut drv) = up();
    let root = one_page_table(&mut mem, 0x10_0000, 0x4000_0000, Access::RW);
    drv.set_context(&mut mem, EDU, Some(entry(1, root)))
        .unwrap();
    // Control: the window is live (and now cached in the context cache and the IOTLB).
    assert_eq!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x4000_0000))
    );
    (mem, unit, drv)
}

#[test]
fn after_the_fail_safe_a_live_window_and_every_other_requester_are_blocked() {
    let (mut mem, mut unit, _drv) = with_live_window();
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut NoQueueAccess, LIMIT);
    assert!(report.blocking(), "{report}");
    assert_eq!(report.queue, QueueState::TurnedOff, "{report}");
    assert_eq!(report.rtaddr & !0xfff, zero.0);
    assert_all_blocked(&unit, 0x10_0000);
    // Faults stay masked (no event in the exit path); the records are there all the same.
    assert_eq!(unit.get().interrupts, 0);
    assert_ne!(unit.get().read32(Reg32::Fectl) & (1 << 31), 0);
}

#[test]
fn control_a_new_root_without_the_invalidations_leaves_the_cached_window_live() {
    // What the fail-safe's invalidations are for: hardware may keep using what it cached
    // from the old tables (VT-d §6.5), so a root switch alone does not block a device whose
    // translation is cached.
    let (mut mem, unit, _drv) = with_live_window();
    let zero = zero_page(&mut mem);
    let persistent = unit.get().read32(Reg32::Gsts) & ((1 << 31) | (1 << 26) | (1 << 25));
    unit.get().write64(Reg64::Rtaddr, zero.0);
    unit.get().write32(Reg32::Gcmd, persistent | (1 << 30));
    assert_eq!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x4000_0000))
    );
}

#[test]
fn before_bring_up_the_fail_safe_turns_translation_on_over_an_empty_root() {
    let (mut mem, mut unit) = qemu_rig();
    // Control: the reset state (translation off) lets DMA through untranslated.
    assert_eq!(
        unit.get().dma(EDU, Iova(0x1000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x1000))
    );
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut NoQueueAccess, LIMIT);
    assert!(report.blocking(), "{report}");
    assert_eq!(report.queue, QueueState::WasOff);
    assert_eq!(report.gsts_before & (1 << 31), 0);
    assert!(report.translating());
    assert_all_blocked(&unit, 0x1000);
}

#[test]
fn every_gcmd_write_keeps_the_persistent_bits_and_changes_at_most_one() {
    let (mut mem, mut unit, _drv) = with_live_window();
    // Interrupt remapping on (firmware's, say): the fail-safe must not turn it off.
    let gsts = unit.get().read32(Reg32::Gsts);
    unit.get()
        .write32(Reg32::Gcmd, (gsts & ((1 << 31) | (1 << 26))) | (1 << 25));
    unit.get().gcmd_writes.clear();
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut NoQueueAccess, LIMIT);
    assert!(report.blocking(), "{report}");
    let writes = unit.get().gcmd_writes.clone();
    // SRTP (TE, QIE, IRE kept), then QIE off (TE, IRE kept); TE was on: no third write.
    assert_eq!(
        writes,
        [
            (1 << 31) | (1 << 30) | (1 << 26) | (1 << 25),
            (1 << 31) | (1 << 25)
        ],
        "{writes:x?}"
    );
    assert_ne!(report.gsts & (1 << 25), 0, "IRE still on: {report}");
}

/// Word access to the emulated memory within `[lo, hi)` (the queue page and the status word).
struct FakeQueue {
    mem: SharedMem,
    lo: u64,
    hi: u64,
    status: PhysAddr,
}

impl QueueAccess for FakeQueue {
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> bool {
        let ok = (self.lo..self.hi).contains(&pa.0) || pa == self.status;
        if ok {
            self.mem.write_u64(pa, value);
        }
        ok
    }
    fn read_u64(&mut self, pa: PhysAddr) -> Option<u64> {
        ((self.lo..self.hi).contains(&pa.0) || pa == self.status).then(|| self.mem.read_u64(pa))
    }
    fn status_word(&self) -> PhysAddr {
        self.status
    }
}

/// A running unit with a live, cached window whose queue is stopped at a descriptor it
/// refused (FSTS.IQE never cleared, one descriptor pending): QIE cannot be turned off.
fn with_stopped_queue() -> (SharedMem, SharedUnit, Unit<SharedUnit>) {
    let (mem, unit, drv) = with_live_window();
    let tail = unit.get().read64(Reg64::Iqt);
    unit.get().inject(Inject::Iqe);
    unit.get().write64(Reg64::Iqt, tail + (1 << 4));
    assert_ne!(unit.get().read32(Reg32::Fsts) & (1 << 4), 0, "IQE set");
    (mem, unit, drv)
}

/// Access to the queue page IQA names and a status word of its own.
fn queue_access(mem: &mut SharedMem, unit: &SharedUnit) -> FakeQueue {
    let base = unit.get().read64(Reg64::Iqa) & !0xfff;
    let status = mem.alloc_zeroed(4096, 4096).unwrap();
    FakeQueue {
        mem: mem.clone(),
        lo: base,
        hi: base + 4096,
        status,
    }
}

#[test]
fn a_queue_stopped_at_an_error_is_recovered_and_its_invalidations_block_the_cached_window() {
    let (mut mem, mut unit, _drv) = with_stopped_queue();
    let mut queue = queue_access(&mut mem, &unit);
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut queue, LIMIT);
    assert_eq!(report.queue, QueueState::Recovered, "{report}");
    assert!(report.blocking(), "{report}");
    assert_eq!(unit.get().read32(Reg32::Fsts) & (1 << 4), 0, "IQE cleared");
    // The window EDU had cached is gone, as every other requester's access.
    assert_all_blocked(&unit, 0x10_0000);
}

#[test]
fn a_queue_that_never_completes_ends_the_fail_safe_bounded_and_it_says_unconfirmed() {
    let (mut mem, mut unit, _drv) = with_stopped_queue();
    // Every wait descriptor times out (FSTS.ITE): the status never arrives.
    unit.get().inject_times(Inject::Ite, u32::MAX);
    let mut queue = queue_access(&mut mem, &unit);
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut queue, LIMIT);
    assert_eq!(report.queue, QueueState::Stuck, "{report}");
    assert!(!report.blocking(), "{report}");
    // A queue the accessor does not cover is never written.
    let (mut mem, mut unit, _drv) = with_stopped_queue();
    let mut elsewhere = queue_access(&mut mem, &unit);
    elsewhere.lo = 0;
    elsewhere.hi = 0;
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut elsewhere, LIMIT);
    assert_eq!(report.queue, QueueState::Stuck, "{report}");
}

#[test]
fn a_queue_stopped_at_an_error_ends_the_fail_safe_bounded_and_it_says_unconfirmed() {
    let (mut mem, mut unit, _drv) = with_stopped_queue();
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut NoQueueAccess, LIMIT);
    assert_eq!(report.queue, QueueState::Stuck, "{report}");
    assert!(!report.context_invalidated && !report.iotlb_invalidated);
    assert!(!report.blocking(), "{report}");
    // What it could do, it did: the empty root is latched and translation is on, so every
    // requester without a cached entry is blocked ...
    assert!(report.root_latched && report.translating(), "{report}");
    assert!(matches!(
        unit.get().dma(NIC, Iova(0x10_0000), 4, true),
        DmaOutcome::Blocked { reason: 0x1, .. }
    ));
    // ... and the report's blocking=0 is the truth: the cached window is still live.
    assert_eq!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x4000_0000))
    );
}

#[test]
fn a_translation_enable_that_never_acknowledges_ends_bounded_and_says_so() {
    let (mut mem, mut unit) = qemu_rig();
    unit.get().stick(1 << 31);
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut NoQueueAccess, LIMIT);
    assert!(!report.translating() && !report.blocking(), "{report}");
    assert!(report.root_latched && report.context_invalidated && report.iotlb_invalidated);
    assert!(
        report.to_string().contains("blocking=0 translating=0"),
        "{report}"
    );
    // Nothing blocks then: the report is all the fail-safe can give.
    assert_eq!(
        unit.get().dma(EDU, Iova(0x1000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x1000))
    );
}

#[test]
fn a_root_pointer_that_never_latches_is_reported() {
    let (mut mem, mut unit) = qemu_rig();
    unit.get().stick(1 << 30);
    let zero = zero_page(&mut mem);
    let report = block_all_dma(&mut unit, zero, &mut NoQueueAccess, LIMIT);
    assert!(!report.root_latched, "{report}");
    assert!(report.translating());
    assert!(!report.blocking(), "{report}");
}
