//! The VT-d backend driven through the manager, against the emulated unit: what a DMA does
//! (lands where, or is blocked and recorded with which source-id, address and direction).

use super::*;
use crate::fake::{DmaOutcome, SharedMem, SharedUnit};
use crate::second_level::{decode, SlEntry};
use smmuman_api::{
    AttachRequest, ClientId, CreateObjectRequest, DeviceSel, DmaWindow, DomainError, FaultBatch,
    IovaRange, IovaSpan, ManagerOps, MapFlags, MapRequest, ObjectFlags, ObjectId,
    ReadFaultsRequest, UnmapRequest,
};
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, Manager, ManagerConfig, PhysRange};

type Backend = VtdBackend<SharedMem, SharedUnit>;

const A: ClientId = ClientId(1);
const B: ClientId = ClientId(2);
const MIB: u64 = 1 << 20;

fn edu_a() -> Bdf {
    Bdf::new(0, 1, 0).unwrap()
}
fn edu_b() -> Bdf {
    Bdf::new(0, 2, 0).unwrap()
}
/// A device nobody claims (it is still behind the unit).
fn stray() -> Bdf {
    Bdf::new(0, 3, 0).unwrap()
}
const GPU_BASE: PhysAddr = PhysAddr(0x0a00_0000);

/// The manager's own memory.
const RESERVED: PhysRange = PhysRange {
    start: PhysAddr(0x4000_0000),
    len: 0x20_0000,
};

fn sid(bdf: Bdf) -> StreamId {
    StreamId(u32::from(bdf.rid()))
}

fn board(with_platform_device: bool) -> Vec<DeviceEntry> {
    let mut v: Vec<DeviceEntry> = [edu_a(), edu_b(), stray()]
        .into_iter()
        .map(|b| DeviceEntry {
            id: DeviceId::Pci(b),
            sid: sid(b),
            raw_sid_allowed: false,
        })
        .collect();
    if with_platform_device {
        v.push(DeviceEntry {
            id: DeviceId::Mmio(GPU_BASE),
            sid: StreamId(0x200),
            raw_sid_allowed: false,
        });
    }
    v
}

fn clock() -> core::time::Duration {
    core::time::Duration::from_secs(1)
}

fn manager_over<B2: IommuBackend>(backend: B2, devices: &[DeviceEntry]) -> Manager<B2> {
    let config = ManagerConfig {
        devices,
        reserved: &[RESERVED],
        iova_ranges: &[IovaRange {
            first: Iova(0),
            last: Iova((1 << 39) - 1),
        }],
        page_sizes: 1 << 12 | 1 << 21 | 1 << 30,
        fault_log_depth: 32,
        max_mappings_per_object: 64,
        max_mappings: 256,
        clock,
    };
    let mut m = Manager::new(backend, &config).unwrap();
    let grants = [
        Grant {
            range: PhysRange {
                start: PhysAddr(0),
                len: RESERVED.start.0,
            },
            kind: GrantKind::Ram,
        },
        Grant {
            range: PhysRange {
                start: PhysAddr(RESERVED.start.0 + RESERVED.len),
                len: (1 << 46) - RESERVED.start.0 - RESERVED.len,
            },
            kind: GrantKind::Ram,
        },
    ];
    // A is given edu_a, the stray function and the platform device (when the board has one),
    // B edu_b.
    let of_a: Vec<DeviceSel> = devices
        .iter()
        .filter(|d| d.id != DeviceId::Pci(edu_b()))
        .map(|d| match d.id {
            DeviceId::Pci(b) => DeviceSel::pci(b),
            DeviceId::Mmio(base) => DeviceSel::Mmio(base),
        })
        .collect();
    let of_b: Vec<DeviceSel> = devices
        .iter()
        .filter(|d| d.id == DeviceId::Pci(edu_b()))
        .map(|_| DeviceSel::pci(edu_b()))
        .collect();
    m.assign(A, &grants, &of_a).unwrap();
    m.assign(B, &grants, &of_b).unwrap();
    m
}

/// A brought-up QEMU-like unit, its backend under a manager of `devices`, and the unit.
fn rig_with(devices: &[DeviceEntry]) -> (Manager<Backend>, SharedUnit) {
    rig_caps(devices, crate::fake::QEMU_CAP)
}

/// As [`rig_with`], with the unit's CAP register `cap` (QEMU's ECAP).
fn rig_caps(devices: &[DeviceEntry], cap: u64) -> (Manager<Backend>, SharedUnit) {
    let (mut mem, unit) = crate::fake::rig(cap, crate::fake::QEMU_ECAP);
    let mut drv = Unit::new(unit.clone()).unwrap();
    drv.bring_up(&mut mem).unwrap();
    let backend = VtdBackend::new(drv, mem, 46).unwrap();
    (manager_over(backend, devices), unit)
}

fn rig() -> (Manager<Backend>, SharedUnit) {
    rig_with(&board(false))
}

fn object_with<B2: IommuBackend>(m: &mut Manager<B2>, c: ClientId, dev: Bdf) -> ObjectId {
    let object = m
        .create_object(
            c,
            CreateObjectRequest {
                flags: ObjectFlags::empty(),
            },
        )
        .unwrap()
        .object;
    m.attach(
        c,
        AttachRequest {
            object,
            device: DeviceSel::pci(dev),
        },
    )
    .unwrap();
    object
}

fn map<B2: IommuBackend>(
    m: &mut Manager<B2>,
    c: ClientId,
    object: ObjectId,
    iova: u64,
    pa: u64,
    len: u64,
) {
    m.map(
        c,
        MapRequest {
            object,
            window: DmaWindow::new(Iova(iova), PhysAddr(pa), len).unwrap(),
            access: Access::RW,
            flags: MapFlags::empty(),
        },
    )
    .unwrap();
}

fn unmap(m: &mut Manager<Backend>, c: ClientId, object: ObjectId, iova: u64, len: u64) -> u64 {
    m.unmap(
        c,
        UnmapRequest {
            object,
            span: IovaSpan::new(Iova(iova), len).unwrap(),
        },
    )
    .unwrap()
    .bytes
}

fn dma(unit: &SharedUnit, dev: Bdf, iova: u64, write: bool) -> DmaOutcome {
    unit.get().dma(dev, Iova(iova), 8, write)
}

/// `(source, addr, direction)` of every record in `object`'s ledger.
fn faults_of(
    m: &mut Manager<Backend>,
    c: ClientId,
    object: ObjectId,
) -> Vec<(StreamId, Iova, Option<iommu_core::Direction>)> {
    let page = m
        .read_faults(
            c,
            ReadFaultsRequest {
                object,
                max: FaultBatch::new(16).unwrap(),
            },
        )
        .unwrap()
        .page;
    page.records().map(|r| (r.sid, r.addr, r.dir)).collect()
}

fn unclaimed(m: &mut Manager<Backend>) -> Vec<(StreamId, Iova, Option<iommu_core::Direction>)> {
    m.on_iommu_event(clock()).unwrap();
    let page = m.read_unclaimed(FaultBatch::new(16).unwrap());
    page.records().map(|r| (r.sid, r.addr, r.dir)).collect()
}

fn landed(pa: u64) -> DmaOutcome {
    DmaOutcome::Landed(PhysAddr(pa))
}

fn blocked(o: DmaOutcome) -> bool {
    matches!(o, DmaOutcome::Blocked { recorded: true, .. })
}

/// A DMA that must be blocked and recorded; the manager then drains the record into its
/// ledgers (QEMU's unit has one fault-recording register, CAP.NFR = 0: a second fault while
/// one is pending would be compressed or overflow, as on the real unit).
fn refused(m: &mut Manager<Backend>, unit: &SharedUnit, dev: Bdf, iova: u64, write: bool) -> bool {
    let ok = blocked(dma(unit, dev, iova, write));
    m.on_iommu_event(clock()).unwrap();
    ok
}

use iommu_core::Direction::{Read, Write};

#[test]
fn every_device_is_denied_with_a_record_until_attached() {
    let (mut m, unit) = rig();
    for dev in [edu_a(), edu_b(), stray()] {
        assert!(refused(&mut m, &unit, dev, 0x1000, true), "{dev}");
    }
    let got = unclaimed(&mut m);
    assert_eq!(
        got,
        vec![
            (sid(edu_a()), Iova(0x1000), Some(Write)),
            (sid(edu_b()), Iova(0x1000), Some(Write)),
            (sid(stray()), Iova(0x1000), Some(Write)),
        ]
    );
    // Control: the same DMA lands once a window is there.
    let o = object_with(&mut m, A, edu_a());
    map(&mut m, A, o, 0, 0x8000_0000, 2 * MIB);
    assert_eq!(dma(&unit, edu_a(), 0x1000, true), landed(0x8000_1000));
}

#[test]
fn a_window_lands_and_dma_past_it_is_refused_and_recorded() {
    let (mut m, unit) = rig();
    let o = object_with(&mut m, A, edu_a());
    let (iova, pa, len) = (0x10_0000, 0x9000_0000, 2 * MIB);
    map(&mut m, A, o, iova, pa, len);
    assert_eq!(dma(&unit, edu_a(), iova, true), landed(pa));
    assert_eq!(
        dma(&unit, edu_a(), iova + len - 8, false),
        landed(pa + len - 8)
    );
    // Just past the window: blocked, recorded with the source-id, page address, direction.
    assert!(refused(&mut m, &unit, edu_a(), iova + len, false));
    assert!(refused(&mut m, &unit, edu_a(), iova + len + 0x1000, true));
    assert_eq!(
        faults_of(&mut m, A, o),
        vec![
            (sid(edu_a()), Iova(iova + len), Some(Read)),
            (sid(edu_a()), Iova(iova + len + 0x1000), Some(Write)),
        ]
    );
    // The other device, attached to nothing, is refused at the same address.
    assert!(refused(&mut m, &unit, edu_b(), iova, true));
    assert_eq!(
        unclaimed(&mut m),
        vec![(sid(edu_b()), Iova(iova), Some(Write))]
    );
}

/// The second-level leaf that maps `iova` for `dev`, found as the unit walks (context entry,
/// then the table with the unit's own decoder).
fn leaf_slot(m: &mut Manager<Backend>, dev: Bdf, iova: u64) -> PhysAddr {
    let (unit, mem) = m.backend_mut().parts();
    let ctx = unit.context_of(mem, dev).unwrap();
    let mut table = ctx.slptptr.0;
    let levels = u32::from(ctx.aw.bits() - 12) / 9;
    for l in 0..levels {
        let level = (4 - levels + l) as u8;
        let shift = 12 + 9 * (3 - u32::from(level));
        let slot = PhysAddr(table + 8 * ((iova >> shift) & 511));
        match decode(level, mem.read_u64(slot)) {
            SlEntry::Table { next } => table = next.0,
            SlEntry::Leaf { .. } => return slot,
            SlEntry::NotPresent => break,
        }
    }
    panic!("{iova:#x} is not mapped")
}

#[test]
fn unmap_and_remap_while_the_iotlb_caches_the_translation() {
    let (mut m, unit) = rig();
    let o = object_with(&mut m, A, edu_a());
    let iova = 0x20_0000;
    map(&mut m, A, o, iova, 0x8000_0000, 2 * MIB);
    // Cached by the emulated IOTLB.
    assert_eq!(dma(&unit, edu_a(), iova, true), landed(0x8000_0000));
    assert!(unit.get().iotlb_entries() > 0);
    // Unmap: blocked at once and recorded; remap elsewhere: lands at the new memory.
    assert_eq!(unmap(&mut m, A, o, iova, 2 * MIB), 2 * MIB);
    assert!(refused(&mut m, &unit, edu_a(), iova, true));
    map(&mut m, A, o, iova, 0xa000_0000, 2 * MIB);
    assert_eq!(dma(&unit, edu_a(), iova + 0x40, true), landed(0xa000_0040));
    assert_eq!(
        faults_of(&mut m, A, o),
        vec![(sid(edu_a()), Iova(iova), Some(Write))]
    );
    // Control: clearing the leaf in memory without the invalidation leaves the cached
    // translation in use: the old memory is still reached.
    let slot = leaf_slot(&mut m, edu_a(), iova);
    m.backend_mut().parts().1.write_u64(slot, 0);
    assert_eq!(dma(&unit, edu_a(), iova + 0x40, true), landed(0xa000_0040));
}

#[test]
fn a_partial_unmap_of_a_cached_superpage_blocks_only_the_hole() {
    let (mut m, unit) = rig();
    let o = object_with(&mut m, A, edu_a());
    let iova = 0x4000_0000;
    map(&mut m, A, o, iova, 0xc000_0000, 2 * MIB);
    assert_eq!(
        dma(&unit, edu_a(), iova + 0x5000, true),
        landed(0xc000_5000)
    );
    // The manager unmaps whole mappings only; drive the backend for a hole in the block.
    let domain_unmapped = m
        .backend_mut()
        .unmap(DomainId(0), Iova(iova + 0x5000), 0x1000);
    assert_eq!(domain_unmapped, Ok(0x1000));
    assert!(refused(&mut m, &unit, edu_a(), iova + 0x5000, false));
    assert_eq!(
        dma(&unit, edu_a(), iova + 0x6000, true),
        landed(0xc000_6000)
    );
    assert_eq!(
        dma(&unit, edu_a(), iova + 0x4000, true),
        landed(0xc000_4000)
    );
}

#[test]
fn two_clients_each_reach_only_their_own_window() {
    let (mut m, unit) = rig();
    let a = object_with(&mut m, A, edu_a());
    let b = object_with(&mut m, B, edu_b());
    map(&mut m, A, a, 0x10_0000, 0x8000_0000, MIB);
    map(&mut m, B, b, 0x10_0000, 0x9000_0000, MIB);
    // Same IOVA, each device's own memory.
    assert_eq!(dma(&unit, edu_a(), 0x10_0000, true), landed(0x8000_0000));
    assert_eq!(dma(&unit, edu_b(), 0x10_0000, true), landed(0x9000_0000));
    // B's window elsewhere is not A's.
    map(&mut m, B, b, 0x30_0000, 0x9100_0000, MIB);
    assert!(refused(&mut m, &unit, edu_a(), 0x30_0000, false));
    assert_eq!(dma(&unit, edu_b(), 0x30_0000, false), landed(0x9100_0000));
    // Each client reads back only its own faults.
    assert_eq!(
        faults_of(&mut m, A, a),
        vec![(sid(edu_a()), Iova(0x30_0000), Some(Read))]
    );
    assert_eq!(faults_of(&mut m, B, b), vec![]);
    // Different domain-ids in the two context entries.
    let (u, mem) = m.backend_mut().parts();
    let (ca, cb) = (
        u.context_of(mem, edu_a()).unwrap(),
        u.context_of(mem, edu_b()).unwrap(),
    );
    assert_ne!(ca.did, cb.did);
    assert_ne!(ca.slptptr, cb.slptptr);
}

#[test]
fn detach_puts_the_device_back_to_deny_with_a_record() {
    let (mut m, unit) = rig();
    let o = object_with(&mut m, A, edu_a());
    map(&mut m, A, o, 0, 0x8000_0000, MIB);
    assert_eq!(dma(&unit, edu_a(), 0, true), landed(0x8000_0000));
    m.client_gone(A);
    assert!(refused(&mut m, &unit, edu_a(), 0, true));
    assert_eq!(
        unclaimed(&mut m),
        vec![(sid(edu_a()), Iova(0), Some(Write))]
    );
    assert_eq!(m.backend().stream_domain(sid(edu_a())), Some(None));
}

#[test]
fn the_tables_use_the_vtd_format_and_unmap_frees_them() {
    let (mut m, _unit) = rig();
    let o = object_with(&mut m, A, edu_a());
    map(&mut m, A, o, 0x1000, 0x8000_1000, 0x3000);
    let slot = leaf_slot(&mut m, edu_a(), 0x1000);
    let word = m.backend_mut().parts().1.read_u64(slot);
    assert_eq!(
        word, 0x8000_1003,
        "R and W, no PS, the page frame (VT-d §9.8)"
    );
    let (_, mem) = m.backend_mut().parts();
    let before = mem.0.borrow().live_allocations();
    assert_eq!(unmap(&mut m, A, o, 0x1000, 0x3000), 0x3000);
    let (_, mem) = m.backend_mut().parts();
    let after = mem.0.borrow().live_allocations();
    assert!(
        after < before,
        "the emptied tables were freed after the invalidation"
    );
}

#[test]
fn a_platform_device_is_refused_on_vtd_and_accepted_on_the_smmu() {
    let devices = board(true);
    let (mut m, _unit) = rig_with(&devices);
    let object = m
        .create_object(
            A,
            CreateObjectRequest {
                flags: ObjectFlags::empty(),
            },
        )
        .unwrap()
        .object;
    let refusal = m
        .attach(
            A,
            AttachRequest {
                object,
                device: DeviceSel::Mmio(GPU_BASE),
            },
        )
        .unwrap_err();
    assert_eq!(refusal.error, DomainError::Unsupported);
    assert_eq!(refusal.value, GPU_BASE.0);
    assert!(!m.backend().distinguishes_platform_devices());
    // A PCI device on the same manager is still fine.
    m.attach(
        A,
        AttachRequest {
            object,
            device: DeviceSel::pci(edu_a()),
        },
    )
    .unwrap();

    // Control: the same board and request on the SMMUv3 backend is accepted.
    let smmu = smmuv3::fake_smmu::qemu_backend().unwrap();
    assert!(smmu.distinguishes_platform_devices());
    let mut m = manager_over(smmu, &devices);
    let object = m
        .create_object(
            A,
            CreateObjectRequest {
                flags: ObjectFlags::empty(),
            },
        )
        .unwrap()
        .object;
    let reply = m
        .attach(
            A,
            AttachRequest {
                object,
                device: DeviceSel::Mmio(GPU_BASE),
            },
        )
        .unwrap();
    assert_eq!(reply.devices, 1);
}

#[test]
fn faults_carry_the_requester_id_as_stream_id() {
    let r = FaultRecord {
        source: Bdf::new(3, 4, 5).unwrap(),
        addr: Iova(0x7000),
        dir: Read,
        reason: crate::FaultReasonCode(0x6),
        index: 0,
    };
    let f = fault_from_record(&r);
    assert_eq!(f.sid, StreamId(0x0325));
    assert_eq!((f.addr, f.dir, f.code), (Iova(0x7000), Some(Read), 0x6));
    // A StreamId wider than 16 bits is no requester id.
    let (mut m, _) = rig();
    assert_eq!(
        m.backend_mut().detach(StreamId(0x1_0000)),
        Err(VtdBackendError::NotARequesterId(StreamId(0x1_0000)))
    );
}

mod unconfirmed;

/// Two 2 MiB superpages, each to lose one page in one `unmap_batch` (two splits).
fn two_superpages_and_their_holes(
    m: &mut Manager<Backend>,
    unit: &SharedUnit,
) -> (DomainId, [(Iova, u64); 2]) {
    let o = object_with(m, A, edu_a());
    let iova = 0x4000_0000;
    map(m, A, o, iova, 0xc000_0000, 4 * MIB);
    // Cached by the unit, as a device in use would have them.
    for k in 0..2 {
        let at = iova + k * 2 * MIB + 0x5000;
        assert_eq!(
            dma(unit, edu_a(), at, true),
            landed(0xc000_5000 + k * 2 * MIB)
        );
    }
    let holes = [
        (Iova(iova + 0x5000), 0x1000),
        (Iova(iova + 2 * MIB + 0x5000), 0x1000),
    ];
    (DomainId(0), holes)
}

#[test]
fn an_unmap_batch_without_memory_for_every_split_unmaps_nothing() {
    let (mut m, unit) = rig();
    let (d, holes) = two_superpages_and_their_holes(&mut m, &unit);
    // Memory for one split (its table and the side page of the table that links it); the
    // batch needs two.
    m.backend_mut().parts().1 .0.borrow_mut().set_pages_left(2);
    assert_eq!(
        m.backend_mut().unmap_batch(d, &holes),
        Err(VtdBackendError::Map(MapError::OutOfMemory(
            iommu_core::OutOfMemory { size: 4096 }
        )))
    );
    // Nothing was unmapped: both holes still translate, in the tables and for the device.
    for (k, (iova, _)) in holes.iter().enumerate() {
        let pa = 0xc000_5000 + k as u64 * 2 * MIB;
        let t = m.backend().translate(d, *iova).unwrap().unwrap();
        assert_eq!(
            (t.pa, t.size),
            (PhysAddr(pa), 2 * MIB),
            "still one superpage"
        );
        assert_eq!(dma(&unit, edu_a(), iova.0, true), landed(pa));
    }
    // Control: with memory for both splits (counted per span: two tables, two side pages)
    // the same batch removes both pages, nothing else.
    m.backend_mut().parts().1 .0.borrow_mut().set_pages_left(4);
    assert_eq!(m.backend_mut().unmap_batch(d, &holes), Ok(0x2000));
    for (iova, _) in holes {
        assert!(refused(&mut m, &unit, edu_a(), iova.0, true));
        assert_eq!(
            dma(&unit, edu_a(), iova.0 + 0x1000, true),
            landed(0xc000_6000 + (iova.0 - 0x4000_5000))
        );
    }
}

/// The IOTLB invalidate descriptors (VT-d §6.5.2.3) the unit processed since `from`, as
/// (address, IH).
fn iotlb_pages_since(unit: &SharedUnit, from: usize) -> Vec<(u64, bool)> {
    unit.get().processed[from..]
        .iter()
        .filter(|d| d[0] & 0xf == 2 && d[0] & 0x30 == 0x30)
        .map(|d| (d[1] & !0xfff, d[1] & (1 << 6) != 0))
        .collect()
}

#[test]
fn a_caching_mode_map_that_links_tables_is_invalidated_without_the_hint() {
    // QEMU's unit runs in caching mode (CAP.CM = 1): every map is followed by a page-selective
    // IOTLB invalidation. IH = 1 tells the unit no paging-structure entry changed, so it may
    // keep a cached not-present non-leaf entry; that is wrong when the map linked a new table.
    let (mut m, unit) = rig();
    let object = object_with(&mut m, A, edu_a());
    let from = unit.get().processed.len();
    // The domain is empty: this map links every table below the root.
    map(&mut m, A, object, 0x10_0000, 0x5000_0000, 0x1000);
    assert_eq!(iotlb_pages_since(&unit, from), [(0x10_0000, false)]);
    // Control: the next page sits in the same last-level table, only a leaf is written, and
    // the hint is given.
    let from = unit.get().processed.len();
    map(&mut m, A, object, 0x10_1000, 0x5000_1000, 0x1000);
    assert_eq!(iotlb_pages_since(&unit, from), [(0x10_1000, true)]);
    assert_eq!(dma(&unit, edu_a(), 0x10_1008, true), landed(0x5000_1008));
}

/// `(records, possibly_lost)` of `object`'s ledger.
fn ledger_of(m: &mut Manager<Backend>, c: ClientId, object: ObjectId) -> (usize, u64) {
    let page = m
        .read_faults(
            c,
            ReadFaultsRequest {
                object,
                max: FaultBatch::PAGE,
            },
        )
        .unwrap()
        .page;
    (page.len(), page.possibly_lost())
}

/// Two requesters of two clients fault one after the other, before the manager drains the
/// unit; returns both ledgers as [`ledger_of`] and the unit's FSTS.PFO count.
fn two_requesters_fault(cap: u64) -> ((usize, u64), (usize, u64), u64) {
    let (mut m, unit) = rig_caps(&board(false), cap);
    let oa = object_with(&mut m, A, edu_a());
    let ob = object_with(&mut m, B, edu_b());
    // Neither object maps anything: both DMAs are refused and recorded, A's first.
    assert!(matches!(
        dma(&unit, edu_a(), 0x10_0000, true),
        DmaOutcome::Blocked { .. }
    ));
    assert!(matches!(
        dma(&unit, edu_b(), 0x20_0000, true),
        DmaOutcome::Blocked { .. }
    ));
    let report = m.on_iommu_event(clock()).unwrap();
    let a = ledger_of(&mut m, A, oa);
    let b = ledger_of(&mut m, B, ob);
    (a, b, report.hw_lost_at_least)
}

#[test]
fn a_requesters_record_lost_to_a_full_recording_register_is_announced_to_its_owner() {
    // QEMU's unit has one fault-recording register (CAP.NFR = 0): A's record fills it, B's
    // fault finds it full and is dropped with FSTS.PFO (VT-d §7.2.1), which names nobody. B's
    // ledger holds nothing, but says records may be missing; so does A's (the unit cannot say
    // whose were lost).
    assert_eq!(crate::fake::QEMU_CAP >> 40 & 0xff, 0);
    let (a, b, lost) = two_requesters_fault(crate::fake::QEMU_CAP);
    assert_eq!(lost, 1);
    assert_eq!(a, (1, 1));
    assert_eq!(
        b,
        (0, 1),
        "B's record was lost: its ledger says possibly lost"
    );
    // Control: with room for both (two registers), both records arrive and nothing is marked.
    let (a, b, lost) = two_requesters_fault(crate::fake::QEMU_CAP | 1 << 40);
    assert_eq!((a, b, lost), ((1, 0), (1, 0), 0));
}
