//! Driver tests against the emulated unit: what a device sees (its DMA lands or is blocked and
//! recorded), each security check with a control that shows it could fail.

use crate::fake::{qemu_rig, rig, DmaOutcome, Inject, SharedMem, SharedUnit, QEMU_CAP, QEMU_ECAP};
use crate::mmio::{Reg32, Reg64, RegisterAccess};
use crate::second_level::{encode_leaf, encode_table};
use crate::{
    AddressWidth, ContextEntry, DomainTag, FaultReasonCode, InvDescriptor, Unit, VtdError,
};
use iommu_core::{Access, Bdf, Direction, DmaMemory, Iova, PhysAddr};

pub(crate) const EDU: Bdf = Bdf {
    bus: 0,
    dev: 1,
    func: 0,
};
pub(crate) const NIC: Bdf = Bdf {
    bus: 0,
    dev: 2,
    func: 0,
};
pub(crate) const BEHIND: Bdf = Bdf {
    bus: 3,
    dev: 0,
    func: 0,
};

pub(crate) fn up() -> (SharedMem, SharedUnit, Unit<SharedUnit>) {
    let (mut mem, unit) = qemu_rig();
    let mut drv = Unit::new(unit.clone()).unwrap();
    drv.bring_up(&mut mem).unwrap();
    (mem, unit, drv)
}

/// A 4-level table mapping one page `iova` → `pa`, written and flushed as the driver must.
pub(crate) fn one_page_table(mem: &mut SharedMem, iova: u64, pa: u64, access: Access) -> PhysAddr {
    let mut tables = [PhysAddr(0); 4];
    for t in &mut tables {
        *t = mem.alloc_zeroed(4096, 4096).unwrap();
    }
    for level in 0..3u8 {
        let shift = 12 + 9 * (3 - u32::from(level));
        let at = PhysAddr(tables[level as usize].0 + ((iova >> shift) & 511) * 8);
        mem.write_u64(at, encode_table(tables[level as usize + 1]));
    }
    let at = PhysAddr(tables[3].0 + ((iova >> 12) & 511) * 8);
    mem.write_u64(at, encode_leaf(3, PhysAddr(pa), access));
    for t in tables {
        mem.sync_for_device(t, 4096);
    }
    tables[0]
}

pub(crate) fn entry(did: u16, root: PhysAddr) -> ContextEntry {
    ContextEntry {
        did: DomainTag(did),
        aw: AddressWidth::Bits48,
        slptptr: root,
    }
}

#[test]
fn before_bring_up_dma_lands_untranslated_and_after_it_every_requester_is_denied_with_a_record() {
    let (mut mem, unit) = qemu_rig();
    // Control: translation off means no protection at all.
    assert_eq!(
        unit.get().dma(EDU, Iova(0x1000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x1000))
    );
    let mut drv = Unit::new(unit.clone()).unwrap();
    drv.bring_up(&mut mem).unwrap();
    assert!(drv.translating());
    for (who, write) in [(EDU, true), (NIC, false), (BEHIND, true)] {
        assert_eq!(
            unit.get().dma(who, Iova(0x1000), 4, write),
            DmaOutcome::Blocked {
                at: Iova(0x1000),
                reason: 0x2,
                recorded: true
            }
        );
        let mut got = Vec::new();
        drv.drain_faults(|f| got.push(f));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source, who);
        assert_eq!(got[0].addr, Iova(0x1000));
        assert_eq!(
            got[0].dir,
            if write {
                Direction::Write
            } else {
                Direction::Read
            }
        );
        assert_eq!(got[0].reason, FaultReasonCode::CONTEXT_ENTRY_NOT_PRESENT);
    }
}

#[test]
fn no_gcmd_write_ever_drops_translation_once_it_is_on() {
    let (mut mem, unit) = qemu_rig();
    // Firmware left translation on.
    unit.get().write32(Reg32::Gcmd, 1 << 31);
    assert!(unit.get().read32(Reg32::Gsts) & (1 << 31) != 0);
    unit.get().gcmd_writes.clear();
    let mut drv = Unit::new(unit.clone()).unwrap();
    drv.bring_up(&mut mem).unwrap();
    let root = one_page_table(&mut mem, 0x10_0000, 0x4000_0000, Access::RW);
    drv.set_context(&mut mem, EDU, Some(entry(1, root)))
        .unwrap();
    drv.set_context(&mut mem, EDU, None).unwrap();
    let writes = unit.get().gcmd_writes.clone();
    assert!(!writes.is_empty());
    assert!(writes.iter().all(|w| w & (1 << 31) != 0), "{writes:x?}");
    assert!(drv.translating());
    // Control: the emulated unit does act on GSTS ^ value, so a bare SRTP turns TE off.
    unit.get().write32(Reg32::Gcmd, 1 << 30);
    assert!(!drv.translating());
}

#[test]
fn an_attached_device_reaches_its_page_only_and_detach_denies_it_again() {
    let (mut mem, unit, mut drv) = up();
    let root = one_page_table(&mut mem, 0x10_0000, 0x4000_0000, Access::READ);
    drv.set_context(&mut mem, EDU, Some(entry(1, root)))
        .unwrap();
    assert_eq!(
        unit.get().dma(EDU, Iova(0x10_0010), 4, false),
        DmaOutcome::Landed(PhysAddr(0x4000_0010))
    );
    // Read-only: a write is refused and recorded as reason 0x5 ... once the IOTLB does not
    // hold the page (QEMU does not record a permission fault on a cached translation).
    drv.submit(&mut mem, &[InvDescriptor::IotlbGlobal]).unwrap();
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, true),
        DmaOutcome::Blocked {
            reason: 0x5,
            recorded: true,
            ..
        }
    ));
    // Outside the page.
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_1000), 4, false),
        DmaOutcome::Blocked { reason: 0x6, .. }
    ));
    // Another requester on the same bus is still denied.
    assert!(matches!(
        unit.get().dma(NIC, Iova(0x10_0000), 4, false),
        DmaOutcome::Blocked { reason: 0x2, .. }
    ));
    drv.set_context(&mut mem, EDU, None).unwrap();
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_0010), 4, false),
        DmaOutcome::Blocked { reason: 0x2, .. }
    ));
}

#[test]
fn with_caching_mode_an_attach_is_invalidated_and_without_it_the_device_stays_denied() {
    let (mut mem, unit, mut drv) = up();
    // Cache the "not present" context entry (CM = 1 may).
    let _ = unit.get().dma(EDU, Iova(0x10_0000), 4, false);
    let root = one_page_table(&mut mem, 0x10_0000, 0x4000_0000, Access::RW);
    // Control: the entry written without invalidation is not seen.
    let table = {
        drv.set_context(&mut mem, NIC, Some(entry(2, root)))
            .unwrap(); // gives bus 0 a table
        drv.context_of(&mem, NIC).unwrap();
        let _ = unit.get().dma(EDU, Iova(0x10_0000), 4, false); // cache not-present again
        drv.root_table().unwrap()
    };
    let ct = mem.read_u64(table) & !0xfff;
    let at = PhysAddr(ct + u64::from(EDU.rid() & 0xff) * 16);
    let [lo, hi] = entry(1, root).encode();
    mem.write_u64(PhysAddr(at.0 + 8), hi);
    mem.write_u64(at, lo);
    mem.sync_for_device(at, 16);
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, false),
        DmaOutcome::Blocked { reason: 0x2, .. }
    ));
    // The driver's attach invalidates.
    drv.set_context(&mut mem, EDU, Some(entry(1, root)))
        .unwrap();
    assert_eq!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, false),
        DmaOutcome::Landed(PhysAddr(0x4000_0000))
    );
}

#[test]
fn tables_the_walker_cannot_see_without_a_flush_are_flushed() {
    // ECAP.C = 0 (QEMU): the fake walks memory as a non-snooping device.
    let (mut mem, unit, mut drv) = up();
    assert!(!drv.features().coherent);
    let root = one_page_table(&mut mem, 0x10_0000, 0x4000_0000, Access::RW);
    drv.set_context(&mut mem, BEHIND, Some(entry(1, root)))
        .unwrap();
    assert_eq!(
        unit.get().dma(BEHIND, Iova(0x10_0000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x4000_0000))
    );
    // Control: a leaf written without the flush is invisible to the walk.
    let leaf_table = {
        let m = mem.0.borrow();
        let mut t = root.0;
        for level in 0..3u32 {
            let shift = 12 + 9 * (3 - level);
            t = m.read_u64(PhysAddr(t + ((0x10_0000u64 >> shift) & 511) * 8)) & !0xfff;
        }
        t
    };
    mem.write_u64(
        PhysAddr(leaf_table + 257 * 8),
        encode_leaf(3, PhysAddr(0x4000_1000), Access::RW),
    );
    assert!(matches!(
        unit.get().dma(BEHIND, Iova(0x10_1000), 4, true),
        DmaOutcome::Blocked { .. }
    ));
    drv.table_written(&mut mem, PhysAddr(leaf_table + 257 * 8), 8)
        .unwrap();
    drv.submit(
        &mut mem,
        &[InvDescriptor::IotlbDomain { did: DomainTag(1) }],
    )
    .unwrap();
    assert_eq!(
        unit.get().dma(BEHIND, Iova(0x10_1000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x4000_1000))
    );
}

#[test]
fn queue_errors_are_reported_and_the_queue_runs_on() {
    let (mut mem, unit, mut drv) = up();
    unit.get().inject(Inject::Iqe);
    let e = drv
        .submit(&mut mem, &[InvDescriptor::IotlbGlobal])
        .unwrap_err();
    assert!(
        matches!(e, VtdError::InvalidDescriptor { words, .. } if words == InvDescriptor::IotlbGlobal.encode()),
        "{e:?}"
    );
    assert_eq!(unit.get().read32(Reg32::Fsts) & (1 << 4), 0, "IQE cleared");
    drv.submit(&mut mem, &[InvDescriptor::IotlbGlobal]).unwrap();

    unit.get().inject(Inject::Ite);
    assert_eq!(
        drv.submit(&mut mem, &[InvDescriptor::ContextGlobal]),
        Err(VtdError::InvalidationTimeout)
    );
    drv.submit(&mut mem, &[InvDescriptor::ContextGlobal])
        .unwrap();

    unit.get().inject(Inject::Ice);
    assert_eq!(
        drv.submit(&mut mem, &[InvDescriptor::ContextGlobal]),
        Err(VtdError::InvalidationCompletion)
    );
    drv.submit(&mut mem, &[]).unwrap();
    assert_eq!(drv.stats().queue_errors, 3);

    // A page-selective request beyond CAP.MAMV is refused by the unit (IQE) and named.
    let bad = InvDescriptor::IotlbPages {
        did: DomainTag(1),
        addr: Iova(0),
        am: 40,
        ih: false,
    };
    assert!(matches!(
        drv.submit(&mut mem, &[bad]),
        Err(VtdError::InvalidDescriptor { .. })
    ));
    drv.submit(&mut mem, &[]).unwrap();
}

#[test]
fn register_based_invalidation_is_ignored_once_queued_invalidation_is_on() {
    let (_mem, unit, _drv) = up();
    unit.get().write64(Reg64::Ccmd, (1 << 63) | (1 << 61));
    assert_ne!(unit.get().read64(Reg64::Ccmd) >> 63, 0, "ICC never clears");
}

#[test]
fn a_full_fault_register_drops_and_counts_an_overflow_and_faults_compress_per_source() {
    let (_mem, unit, mut drv) = up();
    // QEMU has one recording register.
    assert_eq!(drv.features().nfr, 1);
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x1000), 64, true),
        DmaOutcome::Blocked { recorded: true, .. }
    ));
    // Same source again: compressed.
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x2000), 4, true),
        DmaOutcome::Blocked {
            recorded: false,
            ..
        }
    ));
    // Another source: the register is full, PFO.
    assert!(matches!(
        unit.get().dma(NIC, Iova(0x3000), 4, false),
        DmaOutcome::Blocked {
            recorded: false,
            ..
        }
    ));
    let mut got = Vec::new();
    let report = drv.drain_faults(|f| got.push(f));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].source, EDU);
    assert!(report.overflowed);
    assert_eq!(drv.stats().fault_overflows, 1);
    // Drained and PFO cleared: recording works again.
    assert!(matches!(
        unit.get().dma(NIC, Iova(0x3000), 4, false),
        DmaOutcome::Blocked { recorded: true, .. }
    ));
    let report = drv.drain_faults(|f| got.push(f));
    assert!(!report.overflowed);
    assert_eq!(got[1].source, NIC);
}

#[test]
fn fault_events_stay_masked_until_unmasked_then_arrive_as_interrupts() {
    let (_mem, unit, mut drv) = up();
    let _ = unit.get().dma(EDU, Iova(0x1000), 4, true);
    assert_eq!(unit.get().interrupts, 0, "FECTL.IM = 1 after bring-up");
    drv.set_fault_msi(0xfee0_0000, 0x41);
    drv.set_fault_events(true);
    assert_eq!(
        unit.get().interrupts,
        1,
        "the pending event is delivered on unmask"
    );
    drv.drain_faults(|_| {});
    let _ = unit.get().dma(NIC, Iova(0x1000), 4, true);
    assert_eq!(unit.get().interrupts, 2);
    assert_eq!(unit.get().read32(Reg32::Fedata), 0x41);
}

#[test]
fn units_without_queued_invalidation_or_usable_widths_are_refused() {
    let (mut mem, unit) = rig(QEMU_CAP, QEMU_ECAP & !2);
    let mut drv = Unit::new(unit).unwrap();
    assert_eq!(drv.bring_up(&mut mem), Err(VtdError::NoQueuedInvalidation));
    let (_, unit) = rig(QEMU_CAP & !(0x1f << 8), QEMU_ECAP);
    assert!(matches!(Unit::new(unit), Err(VtdError::Features(_))));
}

#[test]
fn domain_ids_are_checked_against_cap_nd() {
    let (mut mem, _unit, mut drv) = up();
    let root = one_page_table(&mut mem, 0, 0, Access::RW);
    assert!(matches!(
        drv.set_context(&mut mem, EDU, Some(entry(0, root))),
        Err(VtdError::DomainIdOutOfRange { .. })
    ));
    // ND = 0: 16 domains.
    let (mut mem, unit) = rig(QEMU_CAP & !7, QEMU_ECAP);
    let mut drv = Unit::new(unit).unwrap();
    drv.bring_up(&mut mem).unwrap();
    assert!(matches!(
        drv.set_context(&mut mem, EDU, Some(entry(16, root))),
        Err(VtdError::DomainIdOutOfRange { domains: 16, .. })
    ));
}

/// The leaf-level table of `root` for `iova` (a 4-level table built by `one_page_table`).
fn leaf_table_of(mem: &SharedMem, root: PhysAddr, iova: u64) -> u64 {
    let m = mem.0.borrow();
    let mut t = root.0;
    for level in 0..3u32 {
        let shift = 12 + 9 * (3 - level);
        t = m.read_u64(PhysAddr(t + ((iova >> shift) & 511) * 8)) & !0xfff;
    }
    t
}

#[test]
fn with_caching_mode_a_new_map_faults_until_it_is_invalidated() {
    let (mut mem, unit, mut drv) = up();
    assert!(drv.features().caching_mode);
    let root = one_page_table(&mut mem, 0x10_0000, 0x4000_0000, Access::RW);
    drv.set_context(&mut mem, EDU, Some(entry(1, root)))
        .unwrap();
    // The page next door is not mapped: the fault is cached (CM = 1).
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_1000), 4, true),
        DmaOutcome::Blocked { reason: 0x5, .. }
    ));
    let t = leaf_table_of(&mem, root, 0x10_1000);
    mem.write_u64(
        PhysAddr(t + 257 * 8),
        encode_leaf(3, PhysAddr(0x5000_0000), Access::RW),
    );
    drv.table_written(&mut mem, PhysAddr(t + 257 * 8), 8)
        .unwrap();
    // Control: without the invalidation the new map still faults.
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_1000), 4, true),
        DmaOutcome::Blocked { .. }
    ));
    drv.mapped(&mut mem, DomainTag(1), Iova(0x10_1000), 0x1000, false)
        .unwrap();
    assert_eq!(
        unit.get().dma(EDU, Iova(0x10_1000), 4, true),
        DmaOutcome::Landed(PhysAddr(0x5000_0000))
    );
    // The descriptor sent was page-selective with IH.
    let last_iotlb = unit
        .get()
        .processed
        .iter()
        .rev()
        .find(|d| d[0] & 0xf == 2)
        .copied()
        .unwrap();
    assert_eq!(last_iotlb[0] & 0x30, 0x30, "page-selective");
    assert_eq!(last_iotlb[1], 0x10_1000 | 1 << 6, "address, IH, AM = 0");
}

#[test]
fn an_unmap_blocks_at_once_only_with_the_range_invalidated() {
    let (mut mem, unit, mut drv) = up();
    let root = one_page_table(&mut mem, 0x10_0000, 0x4000_0000, Access::RW);
    drv.set_context(&mut mem, EDU, Some(entry(1, root)))
        .unwrap();
    // Cache the translation.
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, true),
        DmaOutcome::Landed(_)
    ));
    let t = leaf_table_of(&mem, root, 0x10_0000);
    mem.write_u64(PhysAddr(t + 256 * 8), 0);
    drv.table_written(&mut mem, PhysAddr(t + 256 * 8), 8)
        .unwrap();
    // Control: the IOTLB still holds it, the DMA still lands.
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, true),
        DmaOutcome::Landed(_)
    ));
    drv.invalidate_range(&mut mem, DomainTag(1), Iova(0x10_0000), 0x1000, true)
        .unwrap();
    assert!(matches!(
        unit.get().dma(EDU, Iova(0x10_0000), 4, true),
        DmaOutcome::Blocked { reason: 0x5, .. }
    ));
}

#[test]
fn without_psi_a_range_is_invalidated_domain_wide() {
    let (mut mem, unit) = rig(QEMU_CAP & !(1 << 39), QEMU_ECAP);
    let mut drv = Unit::new(unit.clone()).unwrap();
    drv.bring_up(&mut mem).unwrap();
    drv.invalidate_range(&mut mem, DomainTag(3), Iova(0x1000), 0x1000, false)
        .unwrap();
    let d = unit.get().processed.iter().rev().nth(1).copied().unwrap();
    assert_eq!(
        d[0],
        InvDescriptor::IotlbDomain { did: DomainTag(3) }.encode()[0]
    );
}
