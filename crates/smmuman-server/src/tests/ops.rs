//! Each operation's rules, observed through the client library and the IOMMU's effective
//! translations.

use super::*;
use crate::config::{ConfigError, MAX_OBJECTS, OBJECTS_PER_CLIENT};
use crate::fake::{FakeError, FakeOp};
use smmuman_api::{
    DeviceSel, DomainError, FaultBatch, IovaSpan, MapFlags, ObjectFlags, ObjectId, PciMatch,
};

fn span(iova: u64, len: u64) -> IovaSpan {
    IovaSpan::new(Iova(iova), len).unwrap()
}

#[test]
fn a_device_reaches_exactly_what_its_object_maps_and_is_denied_after_destroy() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    assert_eq!(obj, ObjectId(1));
    a.map(obj, win(0x1000_0000, 0x8000_0000, 0x1_0000), RW, NONE)
        .unwrap();
    // Mapped but not attached: the device is still denied.
    assert_eq!(rig.dma(EDU, 0x1000_0000), None);
    let mut a = rig.as_(A);
    a.attach(obj, sel(pci(0, 1, 0))).unwrap();
    assert_eq!(rig.dma(EDU, 0x1000_0000), Some(0x8000_0000));
    assert_eq!(rig.dma(EDU, 0x1000_fff8), Some(0x8000_fff8));
    assert_eq!(
        rig.dma(EDU, 0x1001_0000),
        None,
        "one byte past the window faults"
    );
    assert_eq!(
        rig.dma(NIC, 0x1000_0000),
        None,
        "another device sees nothing"
    );

    rig.as_(A).destroy_object(obj).unwrap();
    assert_eq!(rig.dma(EDU, 0x1000_0000), None, "back to default deny");
    assert_eq!(rig.fake().domain_of(EDU), None);
    assert_eq!(rig.fake().live_domains(), 0);
    assert_eq!(rig.m.object_count(), 0);
}

#[test]
fn all_devices_of_an_object_share_its_mappings() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    a.attach(obj, sel(pci(0, 1, 0))).unwrap();
    a.map(obj, win(0x2000, 0x9000_0000, 0x1000), RW, NONE)
        .unwrap();
    a.attach(obj, sel(pci(0, 2, 0))).unwrap();
    a.map(obj, win(0x4000, 0x9000_4000, 0x1000), Access::READ, NONE)
        .unwrap();
    for sid in [EDU, NIC] {
        assert_eq!(rig.dma_access(sid, 0x2000), Some((0x9000_0000, RW)));
        assert_eq!(
            rig.dma_access(sid, 0x4000),
            Some((0x9000_4000, Access::READ))
        );
    }
}

#[test]
fn attach_is_idempotent_and_reports_what_it_added() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    let r = a.attach(obj, sel(pci(0, 1, 0))).unwrap();
    assert_eq!((r.devices, r.groups), (1, 1));
    let r = a.attach(obj, bus(0)).unwrap();
    assert_eq!((r.devices, r.groups), (1, 1), "only 00:02.0 is new");
    let r = a.attach(obj, bus(0)).unwrap();
    assert_eq!((r.devices, r.groups), (0, 0));
}

#[test]
fn a_group_moves_as_a_whole() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    // 01:00.0 alone would leave 01:01.0 (same StreamID) with the host.
    let r = refusal(a.attach(obj, sel(pci(1, 0, 0))));
    assert_eq!(
        (r.error, r.value),
        (DomainError::GroupSplit, BRIDGED.0.into())
    );
    let r = a.attach(obj, bus(1)).unwrap();
    assert_eq!((r.devices, r.groups), (2, 1));
    // Once the group is attached, naming one of its devices again is harmless...
    assert_eq!(a.attach(obj, sel(pci(1, 1, 0))).unwrap().groups, 0);
    // ...but detaching one of them alone would split it.
    let r = refusal(a.detach(obj, sel(pci(1, 0, 0))));
    assert_eq!(r.error, DomainError::GroupSplit);
    a.map(obj, win(0, 0x8000_0000, 0x1000), RW, NONE).unwrap();
    assert_eq!(rig.dma(BRIDGED, 0), Some(0x8000_0000));
    let r = rig.as_(A).detach(obj, bus(1)).unwrap();
    assert_eq!((r.devices, r.groups), (2, 1));
    assert_eq!(rig.dma(BRIDGED, 0), None);
}

#[test]
fn a_device_of_another_object_is_busy_and_stays_where_it_is() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let oa = a.create_object(ObjectFlags::empty()).unwrap().object;
    a.attach(oa, sel(pci(0, 1, 0))).unwrap();
    a.map(oa, win(0, 0x8000_0000, 0x1000), RW, NONE).unwrap();
    // Another object of the same client: Busy.
    let oa2 = a.create_object(ObjectFlags::empty()).unwrap().object;
    let r = refusal(a.attach(oa2, sel(pci(0, 1, 0))));
    assert_eq!((r.error, r.value), (DomainError::Busy, EDU.0.into()));
    // A wildcard that covers it is refused whole: 00:02.0 does not move either.
    let r = refusal(a.attach(oa2, bus(0)));
    assert_eq!(r.error, DomainError::Busy);
    assert_eq!(rig.fake().domain_of(NIC), None);
    assert_eq!(rig.dma(EDU, 0), Some(0x8000_0000));
    // Another client (the host gave it no device) hears DeviceNotAssigned, not Busy.
    let mut b = rig.as_(B);
    let ob = b.create_object(ObjectFlags::empty()).unwrap().object;
    let r = refusal(b.attach(ob, sel(pci(0, 1, 0))));
    assert_eq!(
        (r.error, r.value),
        (DomainError::DeviceNotAssigned, EDU.0.into())
    );
    assert_eq!(rig.dma(EDU, 0), Some(0x8000_0000));
    // The same object attaching it again is fine.
    let r = rig.as_(A).attach(oa, sel(pci(0, 1, 0))).unwrap();
    assert_eq!((r.devices, r.groups), (0, 0));
}

#[test]
fn another_clients_object_looks_absent() {
    let mut rig = Rig::new();
    let oa = rig.object(A);
    let mut b = rig.as_(B);
    for r in [
        refusal(b.map(oa, win(0, 0x8000_0000, 0x1000), RW, NONE)),
        refusal(b.attach(oa, sel(pci(0, 1, 0)))),
        refusal(b.destroy_object(oa)),
        refusal(b.read_faults(oa, FaultBatch::PAGE)),
        refusal(b.object_status(oa)),
    ] {
        assert_eq!((r.error, r.value), (DomainError::NotFound, oa.0.into()));
    }
    assert_eq!(rig.m.object_count(), 1);
}

#[test]
fn devices_are_selected_by_pattern_base_or_allowed_raw_sid() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    assert_eq!(a.attach(obj, DeviceSel::Mmio(DSP_BASE)).unwrap().devices, 1);
    let r = refusal(a.attach(obj, DeviceSel::Sid(DSP)));
    assert_eq!((r.error, r.value), (DomainError::Unsupported, DSP.0.into()));
    assert_eq!(a.attach(obj, DeviceSel::Sid(GPU)).unwrap().devices, 1);
    let r = refusal(a.attach(obj, DeviceSel::Sid(StreamId(0x999))));
    assert_eq!((r.error, r.value), (DomainError::NotFound, 0));
    let r = refusal(a.attach(obj, sel(pci(3, 0, 0))));
    assert_eq!(r.error, DomainError::NotFound);
    assert_eq!(rig.fake().domain_of(GPU), rig.fake().domain_of(DSP));
    assert!(rig.fake().domain_of(GPU).is_some());
}

#[test]
fn map_checks_alignment_range_and_overlap() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    a.map(obj, win(0x10_0000, 0x8000_0000, 0x2000), RW, NONE)
        .unwrap();
    let cases = [
        (
            win(0x10_0800, 0x8010_0000, 0x1000),
            DomainError::Misaligned,
            0x10_0800,
        ),
        (
            win(0x20_0000, 0x8010_0800, 0x1000),
            DomainError::Misaligned,
            0x8010_0800,
        ),
        (
            win(IOVA_LAST + 1, 0x8010_0000, 0x1000),
            DomainError::OutOfRange,
            IOVA_LAST + 1,
        ),
        (
            win(IOVA_LAST - 0xfff, 0x8010_0000, 0x2000),
            DomainError::OutOfRange,
            IOVA_LAST - 0xfff,
        ),
        (
            win(0x10_1000, 0x8010_0000, 0x1000),
            DomainError::Overlap,
            0x10_0000,
        ),
        (
            win(0xf_f000, 0x8010_0000, 0x2000),
            DomainError::Overlap,
            0x10_0000,
        ),
        (
            win(0x30_0000, 0x4010_0000, 0x1000),
            DomainError::NotOwned,
            0x4010_0000,
        ),
        (
            win(0x30_0000, 0x3fff_f000, 0x2000),
            DomainError::NotOwned,
            0x3fff_f000,
        ),
    ];
    for (w, error, value) in cases {
        let r = refusal(a.map(obj, w, RW, NONE));
        assert_eq!((r.error, r.value), (error, value), "{w:?}");
    }
    let st = a.object_status(obj).unwrap();
    assert_eq!((st.mappings, st.mapped_bytes), (1, 0x2000));
    assert_eq!(
        rig.fake().counts().maps,
        1,
        "no refused map reached the IOMMU"
    );
}

#[test]
fn the_managers_own_memory_is_never_mappable_even_unity() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::UNITY).unwrap().object;
    let r = refusal(a.map(
        obj,
        win(0x4000_0000, 0x4000_0000, 0x1000),
        RW,
        MapFlags::SHARED,
    ));
    assert_eq!(r.error, DomainError::NotOwned);
}

#[test]
fn unity_objects_map_only_iova_equal_pa() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::UNITY).unwrap().object;
    a.attach(obj, sel(pci(0, 1, 0))).unwrap();
    let r = refusal(a.map(obj, win(0x8000_0000, 0x9000_0000, 0x1000), RW, NONE));
    assert_eq!((r.error, r.value), (DomainError::NotUnity, 0x8000_0000));
    a.map(obj, win(0x8000_0000, 0x8000_0000, 0x1000), RW, NONE)
        .unwrap();
    assert_eq!(rig.dma(EDU, 0x8000_0000), Some(0x8000_0000));
    assert_eq!(
        rig.as_(A).object_status(obj).unwrap().flags,
        ObjectFlags::UNITY
    );
}

#[test]
fn host_memory_belongs_to_the_first_mapper_unless_both_share() {
    let mut rig = Rig::new();
    let oa = rig.object(A);
    let ob = rig.object(B);
    let shared = MapFlags::SHARED;
    rig.as_(A)
        .map(oa, win(0, 0x8000_0000, 0x4000), RW, NONE)
        .unwrap();
    // B may not map any byte of it, shared or not.
    let r = refusal(rig.as_(B).map(ob, win(0, 0x8000_3000, 0x1000), RW, shared));
    assert_eq!((r.error, r.value), (DomainError::Busy, 0x8000_0000));
    // A itself may alias its own memory at another I/O address.
    rig.as_(A)
        .map(oa, win(0x10_0000, 0x8000_0000, 0x1000), Access::READ, NONE)
        .unwrap();
    // Shared on both sides: allowed.
    rig.as_(A)
        .map(oa, win(0x20_0000, 0x9000_0000, 0x1000), RW, shared)
        .unwrap();
    rig.as_(B)
        .map(ob, win(0x20_0000, 0x9000_0000, 0x1000), RW, shared)
        .unwrap();
    // Shared by A but not by B: refused; and the other way round.
    let r = refusal(
        rig.as_(B)
            .map(ob, win(0x30_0000, 0x9000_0000, 0x1000), RW, NONE),
    );
    assert_eq!(r.error, DomainError::Busy);
    // Once A unmaps, the memory is free for B.
    assert_eq!(rig.as_(A).unmap(oa, span(0, 0x4000)).unwrap().bytes, 0x4000);
    assert_eq!(
        refusal(rig.as_(B).map(ob, win(0, 0x8000_0000, 0x1000), RW, NONE)).value,
        0x8000_0000,
        "A's alias at 0x100000 still holds the first page"
    );
    rig.as_(B)
        .map(ob, win(0, 0x8000_1000, 0x1000), RW, NONE)
        .unwrap();
}

#[test]
fn unmap_takes_whole_mappings_with_one_invalidation() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    a.attach(obj, sel(pci(0, 1, 0))).unwrap();
    for i in 0..4u64 {
        a.map(
            obj,
            win(0x10_0000 + i * 0x2000, 0x8000_0000 + i * 0x2000, 0x2000),
            RW,
            NONE,
        )
        .unwrap();
    }
    // Cutting a mapping in two is refused.
    let r = refusal(a.unmap(obj, span(0x10_1000, 0x2000)));
    assert_eq!((r.error, r.value), (DomainError::WouldSplit, 0x10_0000));
    let r = refusal(a.unmap(obj, span(0x10_0000, 0x3000)));
    assert_eq!((r.error, r.value), (DomainError::WouldSplit, 0x10_2000));
    let syncs = rig.fake().counts().syncs;
    // Two whole mappings (and the hole around them): one IOMMU call, one CMD_SYNC.
    let bytes = rig
        .as_(A)
        .unmap(obj, span(0xf_0000, 0x1_4000))
        .unwrap()
        .bytes;
    assert_eq!(bytes, 0x4000);
    assert_eq!(rig.fake().counts().syncs - syncs, 1);
    assert_eq!(rig.fake().counts().unmaps, 1);
    assert_eq!(rig.dma(EDU, 0x10_2000), None);
    assert_eq!(rig.dma(EDU, 0x10_4000), Some(0x8000_4000));
    // Nothing mapped there: 0 bytes, no IOMMU call, not an error.
    assert_eq!(
        rig.as_(A)
            .unmap(obj, span(0x100_0000, 0x1000))
            .unwrap()
            .bytes,
        0
    );
    assert_eq!(rig.fake().counts().unmaps, 1);
}

#[test]
fn a_map_costs_no_sync_and_an_unmap_at_most_one() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    a.attach(obj, bus(0)).unwrap();
    let before = rig.fake().counts().syncs;
    let mut a = rig.as_(A);
    a.map(obj, win(0, 0x8000_0000, 0x40_0000), RW, NONE)
        .unwrap();
    a.map(obj, win(0x40_0000, 0x8040_0000, 0x1000), RW, NONE)
        .unwrap();
    a.unmap(obj, span(0, 0x40_1000)).unwrap();
    assert_eq!(rig.fake().counts().syncs - before, 1);
}

#[test]
fn quotas_are_enforced_and_reported() {
    // Small configured limits: 32 per object, 40 in all.
    let mut rig = Rig {
        m: manager_limited(FakeIommu::new(), &board(), 32, (32, 40)),
    };
    let mut a = rig.as_(A);
    let obj = a.create_object(ObjectFlags::empty()).unwrap().object;
    for i in 0..32 {
        a.map(obj, win(i << 12, 0x8000_0000 + (i << 12), 0x1000), RW, NONE)
            .unwrap();
    }
    let r = refusal(a.map(obj, win(1 << 30, 0x9000_0000, 0x1000), RW, NONE));
    assert_eq!((r.error, r.value), (DomainError::QuotaExceeded, 32));
    // The manager-wide limit: 8 more in another object, then refused.
    let other = a.create_object(ObjectFlags::empty()).unwrap().object;
    for i in 0..8 {
        a.map(
            other,
            win(i << 12, 0xa000_0000 + (i << 12), 0x1000),
            RW,
            NONE,
        )
        .unwrap();
    }
    let r = refusal(a.map(other, win(1 << 30, 0x9000_0000, 0x1000), RW, NONE));
    assert_eq!((r.error, r.value), (DomainError::QuotaExceeded, 40));
    // Unmapping gives the room back.
    a.unmap(other, span(0, 0x1000)).unwrap();
    a.map(other, win(1 << 30, 0x9000_0000, 0x1000), RW, NONE)
        .unwrap();
    a.destroy_object(other).unwrap();

    for _ in 1..OBJECTS_PER_CLIENT {
        a.create_object(ObjectFlags::empty()).unwrap();
    }
    let r = refusal(a.create_object(ObjectFlags::empty()));
    assert_eq!(
        (r.error, r.value),
        (DomainError::QuotaExceeded, OBJECTS_PER_CLIENT as u64)
    );
    for c in 2..=(MAX_OBJECTS / OBJECTS_PER_CLIENT) as u32 {
        let mut other = rig.as_(ClientId(c));
        for _ in 0..OBJECTS_PER_CLIENT {
            other.create_object(ObjectFlags::empty()).unwrap();
        }
    }
    let r = refusal(rig.as_(ClientId(99)).create_object(ObjectFlags::empty()));
    assert_eq!(
        (r.error, r.value),
        (DomainError::QuotaExceeded, MAX_OBJECTS as u64)
    );
    let q = rig.as_(A).query().unwrap();
    assert_eq!(
        (q.max_objects, q.objects_per_client, q.mappings_per_object),
        (MAX_OBJECTS as u16, OBJECTS_PER_CLIENT as u16, 32)
    );
}

#[test]
fn object_ids_are_never_reused() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let first = a.create_object(ObjectFlags::empty()).unwrap().object;
    a.destroy_object(first).unwrap();
    let second = a.create_object(ObjectFlags::empty()).unwrap().object;
    assert_ne!(first, second);
    assert_eq!(
        refusal(a.destroy_object(first)).error,
        DomainError::NotFound
    );
}

#[test]
fn a_map_the_iommu_fails_leaves_nothing_mapped() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, sel(pci(0, 1, 0))).unwrap();
    rig.fake_mut().fail(FakeOp::Map, 0);
    let r = refusal(rig.as_(A).map(obj, win(0, 0x8000_0000, 0x1000), RW, NONE));
    assert_eq!(r.error, DomainError::Iommu);
    assert_eq!(rig.dma(EDU, 0), None);
    assert_eq!(rig.as_(A).object_status(obj).unwrap().mappings, 0);
    // And the host memory was not claimed: another object can take it.
    let ob = rig.object(B);
    rig.as_(B)
        .map(ob, win(0, 0x8000_0000, 0x1000), RW, NONE)
        .unwrap();
    assert_eq!(rig.m.counters().iommu_errors, 1);
}

#[test]
fn a_wildcard_attach_the_iommu_fails_half_way_is_undone() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A)
        .map(obj, win(0, 0x8000_0000, 0x1000), RW, NONE)
        .unwrap();
    // 00:*.* is two groups; the second attach fails.
    rig.fake_mut().fail(FakeOp::Attach, 1);
    let r = refusal(rig.as_(A).attach(obj, bus(0)));
    assert_eq!((r.error, r.value), (DomainError::Iommu, NIC.0.into()));
    assert_eq!(
        rig.dma(EDU, 0),
        None,
        "the first group was put back to deny"
    );
    assert_eq!(rig.dma(NIC, 0), None);
    let l = rig.as_(A).lookup_device(bus(0)).unwrap();
    assert_eq!((l.free, l.mine), (2, 0));
}

#[test]
fn a_detach_the_iommu_fails_half_way_is_undone() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, bus(0)).unwrap();
    rig.as_(A)
        .map(obj, win(0, 0x8000_0000, 0x1000), RW, NONE)
        .unwrap();
    rig.fake_mut().fail(FakeOp::Detach, 1);
    let r = refusal(rig.as_(A).detach(obj, bus(0)));
    assert_eq!(r.error, DomainError::Iommu);
    assert_eq!(rig.dma(EDU, 0), Some(0x8000_0000), "re-attached");
    assert_eq!(rig.dma(NIC, 0), Some(0x8000_0000));
    assert_eq!(rig.as_(A).lookup_device(bus(0)).unwrap().mine, 2);
}

#[test]
fn a_destroy_the_iommu_fails_keeps_the_object_until_retried() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, sel(pci(0, 1, 0))).unwrap();
    rig.as_(A)
        .map(obj, win(0, 0x8000_0000, 0x1000), RW, NONE)
        .unwrap();
    rig.fake_mut().fail(FakeOp::Detach, 0);
    assert_eq!(
        refusal(rig.as_(A).destroy_object(obj)).error,
        DomainError::Iommu
    );
    assert_eq!(rig.dma(EDU, 0), Some(0x8000_0000));
    rig.as_(A).destroy_object(obj).unwrap();
    assert_eq!(rig.dma(EDU, 0), None);
    assert_eq!(rig.fake().live_domains(), 0);
}

#[test]
fn a_client_going_away_releases_everything_it_held() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A);
    let o1 = a.create_object(ObjectFlags::empty()).unwrap().object;
    let o2 = a.create_object(ObjectFlags::UNITY).unwrap().object;
    a.attach(o1, sel(pci(0, 1, 0))).unwrap();
    a.attach(o2, bus(1)).unwrap();
    a.map(o1, win(0, 0x8000_0000, 0x1_0000), RW, NONE).unwrap();
    a.map(o2, win(0x9000_0000, 0x9000_0000, 0x1000), RW, NONE)
        .unwrap();

    assert_eq!(rig.m.client_gone(A), 2);
    for sid in [EDU, BRIDGED] {
        assert_eq!(rig.fake().domain_of(sid), None);
    }
    assert_eq!(rig.dma(EDU, 0), None);
    assert_eq!(rig.fake().live_domains(), 0, "no domain is left");
    // Its devices and memory are free for others: its device assignment went with it, so the
    // host may give the edu to B.
    assert_eq!(rig.m.assigned_devices(A).count(), 0);
    rig.m
        .assign(B, &everything_but_the_manager(), &[sel(pci(0, 1, 0))])
        .unwrap();
    let ob = rig.object(B);
    let mut b = rig.as_(B);
    b.attach(ob, sel(pci(0, 1, 0))).unwrap();
    b.map(ob, win(0, 0x8000_0000, 0x1_0000), RW, NONE).unwrap();
    assert_eq!(rig.dma(EDU, 0x8000), Some(0x8000_8000));
    assert_eq!(rig.m.client_gone(A), 0);
}

#[test]
fn a_client_whose_devices_cannot_be_released_leaves_an_orphan_nobody_can_use() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, sel(pci(0, 1, 0))).unwrap();
    rig.as_(A)
        .map(obj, win(0, 0x8000_0000, 0x1000), RW, NONE)
        .unwrap();
    rig.fake_mut().fail(FakeOp::Detach, 0);
    assert_eq!(rig.m.client_gone(A), 0);
    assert_eq!(rig.m.counters().orphaned_objects, 1);
    // Still holds its device and its memory (the IOMMU says so); nobody can reach it: the
    // device went back to nobody's assignment, and the host cannot give it to anyone while
    // the orphan holds it.
    let ob = rig.object(B);
    assert_eq!(
        refusal(rig.as_(B).attach(ob, sel(pci(0, 1, 0)))).error,
        DomainError::DeviceNotAssigned
    );
    assert_eq!(
        rig.m.assign(ClientId(3), &[], &[sel(pci(0, 1, 0))]),
        Err(crate::AssignError::DeviceAttached(DeviceId::Pci(pci(
            0, 1, 0
        ))))
    );
    assert_eq!(
        refusal(rig.as_(B).map(ob, win(0, 0x8000_0000, 0x1000), RW, NONE)).error,
        DomainError::Busy
    );
    assert_eq!(
        refusal(rig.as_(A).destroy_object(obj)).error,
        DomainError::NotFound
    );
}

#[test]
fn lookup_says_whether_the_manager_knows_a_device_and_who_holds_it() {
    let mut rig = Rig::new();
    let oa = rig.object(A);
    rig.as_(A).attach(oa, sel(pci(0, 1, 0))).unwrap();
    let any = DeviceSel::Pci(PciMatch::ANY);
    assert_eq!(rig.looked(A, any), (4, 3, 0, 3, 1, 0, EDU.0));
    // B was given none of them: it hears that they exist, not who holds them.
    assert_eq!(rig.looked(B, any), (4, 3, 4, 0, 0, 0, EDU.0));
    let r = refusal(rig.as_(B).lookup_device(sel(pci(0, 9, 0))));
    assert_eq!((r.error, r.value), (DomainError::NotFound, 0));
    assert_eq!(rig.fake().counts().attaches, 1, "lookups change nothing");
}

#[test]
fn query_reports_the_configuration() {
    let mut rig = Rig::new();
    let q = rig.as_(A).query().unwrap();
    assert_eq!(q.page_sizes, PAGE_SIZES);
    assert_eq!(
        q.iova_ranges.as_slice(),
        [IovaRange {
            first: Iova(0),
            last: Iova(IOVA_LAST)
        }]
    );
    assert_eq!(usize::from(q.faults_per_page), smmuman_api::FAULTS_PER_PAGE);
    assert!(q.faults_per_page > 7);
}

#[test]
fn statistics_count_requests_errors_and_refusals() {
    let mut rig = Rig::new();
    let mut a = rig.as_(A); // hello: 1 request
    assert_eq!(
        refusal(a.destroy_object(ObjectId(5))).error,
        DomainError::NotFound
    );
    let mut junk = [0u8; MAX_MESSAGE];
    rig.m.handle(A, &[0xff; 20], &mut junk);
    let s = rig.as_(A).stats().unwrap();
    // hello, destroy, junk, hello, stats (counted before it runs)
    assert_eq!((s.requests, s.protocol_errors, s.refusals), (5, 1, 1));
}

#[test]
fn the_configuration_is_checked() {
    let devices = board();
    let ok = test_config(&devices);
    let err = |c: ManagerConfig<'_>| Manager::new(FakeIommu::new(), &c).unwrap_err();
    assert_eq!(
        err(ManagerConfig {
            page_sizes: 1 << 11 | 1 << 12,
            ..ok
        }),
        ConfigError::PageSizes(1 << 11 | 1 << 12)
    );
    assert_eq!(
        err(ManagerConfig {
            page_sizes: 0,
            ..ok
        }),
        ConfigError::PageSizes(0)
    );
    let odd = IovaRange {
        first: Iova(0x800),
        last: Iova(0xffff),
    };
    assert_eq!(
        err(ManagerConfig {
            iova_ranges: &[odd],
            ..ok
        }),
        ConfigError::BadIovaRange(odd)
    );
    assert_eq!(
        err(ManagerConfig {
            iova_ranges: &[],
            ..ok
        }),
        ConfigError::IovaRangeCount(0)
    );
    for depth in [0, crate::config::FAULT_LOG_DEPTH + 1] {
        assert_eq!(
            err(ManagerConfig {
                fault_log_depth: depth,
                ..ok
            }),
            ConfigError::FaultLogDepth(depth)
        );
    }
    let empty = PhysRange {
        start: PhysAddr(0),
        len: 0,
    };
    assert_eq!(
        err(ManagerConfig {
            reserved: &[empty],
            ..ok
        }),
        ConfigError::BadReserved(empty)
    );
    let mut fake = FakeIommu::new();
    fake.fail(FakeOp::Detach, 2);
    assert_eq!(
        Manager::new(fake, &ok).unwrap_err(),
        ConfigError::Backend(FakeError::Injected(FakeOp::Detach))
    );
    // A good configuration puts every device in default deny.
    let m = Manager::new(FakeIommu::new(), &ok).unwrap();
    assert_eq!(m.backend().counts().detaches, 5);
}

#[test]
fn the_manager_fits_in_a_static_of_known_size() {
    let size = core::mem::size_of::<Manager<FakeIommu>>() - core::mem::size_of::<FakeIommu>();
    println!("Manager state: {size} bytes");
    // docs/protocol.md ("Limits") tells the daemon to budget 48 KiB for it (45 KiB today).
    assert!(size < 48 * 1024, "{size}");
}

#[test]
fn a_map_batch_is_all_or_nothing_and_checks_windows_against_each_other() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, sel(pci(0, 1, 0))).unwrap();
    let e = |iova: u64, pa: u64| smmuman_api::MapEntry {
        window: win(iova, pa, 0x1000),
        access: RW,
        flags: NONE,
    };
    let batch = |es: &[smmuman_api::MapEntry]| smmuman_api::MapBatch::new(es).unwrap();
    // The third window is the manager's memory: nothing of the batch is mapped.
    let bad = batch(&[
        e(0x0, 0x8000_0000),
        e(0x1000, 0x8000_1000),
        e(0x2000, RESERVED.start.0),
    ]);
    let before = rig.fake().counts();
    let r = refusal(rig.as_(A).map_batch(obj, bad));
    assert_eq!(r, Refusal::new(DomainError::NotOwned, RESERVED.start.0));
    assert_eq!(rig.dma(EDU, 0x0), None);
    assert_eq!(rig.fake().counts().maps, before.maps);
    // Two windows of the batch that overlap each other: the later one is named.
    let twice = batch(&[e(0x0, 0x8000_0000), e(0x0, 0x8000_1000)]);
    assert_eq!(
        refusal(rig.as_(A).map_batch(obj, twice)),
        Refusal::new(DomainError::Overlap, 0x0)
    );
    assert_eq!(rig.dma(EDU, 0x0), None);
    // Control: a good batch maps every window.
    let good: Vec<_> = (0..32)
        .map(|i| e(i << 12, 0x8000_0000 + (i << 12)))
        .collect();
    assert_eq!(rig.as_(A).map_batch(obj, batch(&good)).unwrap().mapped, 32);
    assert_eq!(rig.dma(EDU, 31 << 12), Some(0x8000_0000 + (31 << 12)));
    assert_eq!(rig.as_(A).object_status(obj).unwrap().mappings, 32);
}

#[test]
fn an_unmap_batch_takes_whole_mappings_of_every_span_with_one_sync() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, sel(pci(0, 1, 0))).unwrap();
    for i in 0..40u64 {
        rig.as_(A)
            .map(obj, win(i << 13, 0x8000_0000 + (i << 12), 0x1000), RW, NONE)
            .unwrap();
    }
    let spans: Vec<_> = (0..20u64).map(|i| span(i << 14, 0x2000)).collect();
    let before = rig.fake().counts().syncs;
    let r = rig
        .as_(A)
        .unmap_batch(obj, smmuman_api::UnmapBatch::new(&spans).unwrap())
        .unwrap();
    assert_eq!((r.bytes, r.mappings), (20 * 0x1000, 20));
    assert_eq!(
        rig.fake().counts().syncs - before,
        1,
        "one CMD_SYNC for the batch"
    );
    assert_eq!(rig.dma(EDU, 0), None);
    assert_eq!(
        rig.dma(EDU, 1 << 13),
        Some(0x8000_1000),
        "the odd ones stay"
    );
    // Spans that overlap each other: refused, the later one named, nothing removed.
    let overlapping = [span(1 << 13, 0x4000), span(2 << 13, 0x1000)];
    let r = refusal(
        rig.as_(A)
            .unmap_batch(obj, smmuman_api::UnmapBatch::new(&overlapping).unwrap()),
    );
    assert_eq!(r, Refusal::new(DomainError::Overlap, 2 << 13));
    assert_eq!(rig.dma(EDU, 1 << 13), Some(0x8000_1000));
    // All or nothing: a span that would cut a mapping refuses the whole batch.
    rig.as_(A)
        .map(obj, win(0x100_0000, 0x9000_0000, 0x2000), RW, NONE)
        .unwrap();
    let cut = [span(1 << 13, 0x1000), span(0x100_1000, 0x1000)];
    let r = refusal(
        rig.as_(A)
            .unmap_batch(obj, smmuman_api::UnmapBatch::new(&cut).unwrap()),
    );
    assert_eq!(r, Refusal::new(DomainError::WouldSplit, 0x100_0000));
    assert_eq!(
        rig.dma(EDU, 1 << 13),
        Some(0x8000_1000),
        "the first span kept too"
    );
}

#[test]
fn list_mappings_pages_through_every_mapping_in_order() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    for i in 0..70u64 {
        let flags = if i % 7 == 0 { MapFlags::SHARED } else { NONE };
        rig.as_(A)
            .map(
                obj,
                win(i << 16, 0x8000_0000 + (i << 12), 0x1000),
                RW,
                flags,
            )
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut from = 0;
    let mut pages = 0;
    loop {
        let page = rig.as_(A).list_mappings(obj, from).unwrap();
        pages += 1;
        for m in page.mappings.iter() {
            seen.push((
                m.window.iova().0,
                m.window.pa().0,
                m.flags.contains(MapFlags::SHARED),
            ));
        }
        if !page.more {
            break;
        }
        from = page.next;
    }
    assert_eq!(pages, 3);
    let want: Vec<_> = (0..70u64)
        .map(|i| (i << 16, 0x8000_0000 + (i << 12), i % 7 == 0))
        .collect();
    assert_eq!(seen, want);
    // Another client's object is not listed.
    assert_eq!(
        refusal(rig.as_(B).list_mappings(obj, 0)).error,
        DomainError::NotFound
    );
}

/// One access check for both paths: the wire refuses an empty (or `DEVICE`) access set as
/// malformed, and the manager refuses the same set handed to it in-process, so a listing of
/// the object never carries a mapping its own reply check would refuse.
#[test]
fn an_access_set_the_wire_refuses_is_refused_in_process_too() {
    use smmuman_api::ManagerOps;
    use smmuman_api::{CallError, MapBatch, MapBatchRequest, MapEntry, MapRequest};
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, sel(pci(0, 1, 0))).unwrap();
    // Over the wire: a protocol error, before any method runs.
    let r = rig
        .as_(A)
        .map(obj, win(0, 0x8000_0000, 0x1000), Access::empty(), NONE);
    assert!(matches!(r, Err(CallError::Protocol(_))), "{r:?}");
    // In-process: refused, naming the bits.
    for bad in [Access::empty(), Access::DEVICE, Access::RW | Access::DEVICE] {
        let request = MapRequest {
            object: obj,
            window: win(0, 0x8000_0000, 0x1000),
            access: bad,
            flags: NONE,
        };
        let r = rig.m.map(A, request).unwrap_err();
        assert_eq!(
            (r.error, r.value),
            (DomainError::Unsupported, u64::from(bad.bits()))
        );
        let entry = MapEntry {
            window: win(0x1000, 0x8000_1000, 0x1000),
            access: bad,
            flags: NONE,
        };
        let good = MapEntry {
            window: win(0, 0x8000_0000, 0x1000),
            access: RW,
            flags: NONE,
        };
        let windows = MapBatch::new(&[good, entry]).unwrap();
        let r = rig
            .m
            .map_batch(
                A,
                MapBatchRequest {
                    object: obj,
                    windows,
                },
            )
            .unwrap_err();
        assert_eq!(r.error, DomainError::Unsupported);
    }
    assert_eq!(rig.dma(EDU, 0), None, "nothing was mapped");
    // The listing passes the protocol's own reply check (before, it failed on such a mapping).
    let page = rig.as_(A).list_mappings(obj, 0).unwrap();
    assert_eq!(page.mappings.len(), 0);
    // Control: a valid set goes through both paths and lists back.
    rig.as_(A)
        .map(obj, win(0, 0x8000_0000, 0x1000), RW, NONE)
        .unwrap();
    let request = MapRequest {
        object: obj,
        window: win(0x1000, 0x8000_1000, 0x1000),
        access: Access::READ,
        flags: NONE,
    };
    rig.m.map(A, request).unwrap();
    assert_eq!(rig.as_(A).list_mappings(obj, 0).unwrap().mappings.len(), 2);
}
