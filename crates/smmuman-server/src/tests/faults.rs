//! The fault ledger: attribution, sequence numbers, exact drop counts, notifications, the log.

use super::*;
use crate::config::FAULT_LOG_DEPTH;
use crate::fake::FakeOp;
use core::time::Duration;
use iommu_core::{Direction, Fault, FaultReason};
use smmuman_api::{DeviceSel, DomainError, FaultBatch, NotifyState, ObjectId, Refusal};

#[test]
fn the_configured_fault_log_depth_bounds_every_ledger() {
    let mut rig = Rig::new();
    rig.m = manager_with_depth(FakeIommu::new(), 3);
    assert_eq!(rig.as_(A).query().unwrap().fault_log_depth, 3);
    let obj = rig.object(A);
    rig.as_(A)
        .attach(obj, DeviceSel::pci(pci(0, 1, 0)))
        .unwrap();
    for i in 0..5 {
        rig.fake_mut().inject_fault(fault(EDU, 0x1000 * i));
        rig.fake_mut().inject_fault(fault(NIC, 0x1000 * i));
    }
    let report = rig.m.on_iommu_event(Duration::ZERO).unwrap();
    assert_eq!(
        (report.records, report.dropped),
        (10, 4),
        "2 of 5 dropped per ledger"
    );
    let page = rig.as_(A).read_faults(obj, FaultBatch::PAGE).unwrap().page;
    assert_eq!((page.records().count(), page.dropped()), (3, 2));
    let page = rig.m.read_unclaimed(FaultBatch::PAGE);
    assert_eq!((page.records().count(), page.dropped()), (3, 2));
}

#[test]
fn faults_go_to_the_object_holding_the_device_or_to_unclaimed() {
    logs::start();
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A)
        .attach(obj, DeviceSel::pci(pci(0, 1, 0)))
        .unwrap();
    rig.fake_mut().inject_fault(fault(EDU, 0x20_0000));
    rig.fake_mut().inject_fault(fault(NIC, 0x30_0000));
    rig.fake_mut().inject_fault(Fault {
        dir: None,
        reason: FaultReason::BadConfig,
        code: 0x04,
        ..fault(StreamId(0x77), 0)
    });
    let report = rig.m.on_iommu_event(Duration::from_micros(1500)).unwrap();
    assert_eq!(
        (report.records, report.unclaimed, report.dropped),
        (3, 2, 0)
    );

    let page = rig.as_(A).read_faults(obj, FaultBatch::PAGE).unwrap().page;
    let recs: Vec<_> = page.records().copied().collect();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        (recs[0].seq, recs[0].sid, recs[0].addr),
        (1, EDU, Iova(0x20_0000))
    );
    assert_eq!(recs[0].time_ns, 1_500_000);
    assert_eq!(recs[0].dir, Some(Direction::Write));
    // The unclaimed ledger is the host's: no client may read it (a control: the host can).
    assert_eq!(
        refusal(
            rig.as_(B)
                .read_faults(ObjectId::UNCLAIMED, FaultBatch::PAGE)
        ),
        Refusal::new(DomainError::NotFound, ObjectId::UNCLAIMED.0.into())
    );
    let page = rig.m.read_unclaimed(FaultBatch::PAGE);
    let sids: Vec<_> = page.records().map(|r| (r.seq, r.sid)).collect();
    assert_eq!(sids, [(1, NIC), (2, StreamId(0x77))]);

    let lines: Vec<String> = logs::take()
        .into_iter()
        .filter(|l| l.contains("smmuman::fault"))
        .collect();
    assert_eq!(
        lines,
        [
            "WARN smmuman::fault FAULT seq=1 seq_last=1 count=1 obj=1 sid=0x8 dev=00:01.0 \
             addr=0x0000000000200000 addr_last=0x0000000000200000 dir=write \
             reason=translation code=0x10 kept=1 dropped=0",
            "WARN smmuman::fault FAULT seq=1 seq_last=1 count=1 obj=unclaimed sid=0x10 \
             dev=00:02.0 addr=0x0000000000300000 addr_last=0x0000000000300000 dir=write \
             reason=translation code=0x10 kept=1 dropped=0",
            "WARN smmuman::fault FAULT seq=2 seq_last=2 count=1 obj=unclaimed sid=0x77 dev=? \
             addr=0x0000000000000000 addr_last=0x0000000000000000 dir=? reason=bad-config \
             code=0x4 kept=1 dropped=0",
        ]
    );
}

#[test]
fn a_group_faults_as_one_and_the_log_says_so() {
    logs::start();
    let mut rig = Rig::new();
    rig.fake_mut().inject_fault(fault(BRIDGED, 0x1000));
    rig.m.on_iommu_event(Duration::ZERO).unwrap();
    let lines = logs::take();
    assert!(
        lines.iter().any(|l| l.contains("sid=0x100 dev=01:00.0+1 ")),
        "{lines:?}"
    );
}

#[test]
fn a_full_ledger_drops_new_records_and_counts_them_exactly() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A)
        .attach(obj, DeviceSel::pci(pci(0, 1, 0)))
        .unwrap();
    let extra = 11;
    for i in 0..(FAULT_LOG_DEPTH + extra) as u64 {
        rig.fake_mut().inject_fault(fault(EDU, i << 12));
    }
    rig.fake_mut().inject_overflow();
    let report = rig.m.on_iommu_event(Duration::ZERO).unwrap();
    assert_eq!(report.dropped, extra as u64);
    assert_eq!(report.hw_lost_at_least, 1);

    let st = rig.as_(A).object_status(obj).unwrap();
    assert_eq!(st.pending, FAULT_LOG_DEPTH as u32);
    assert_eq!(st.dropped, extra as u64);
    assert_eq!(st.recorded, (FAULT_LOG_DEPTH + extra) as u64);
    // Reading pops, oldest first, page by page; the sequence numbers have no gap until the drop.
    let mut seqs = Vec::new();
    loop {
        let page = rig.as_(A).read_faults(obj, FaultBatch::PAGE).unwrap().page;
        assert_eq!(page.dropped(), extra as u64);
        seqs.extend(page.records().map(|r| r.seq));
        if page.remaining() == 0 {
            break;
        }
    }
    assert_eq!(seqs, (1..=FAULT_LOG_DEPTH as u64).collect::<Vec<_>>());
    // The next record shows the gap.
    rig.fake_mut().inject_fault(fault(EDU, 0));
    rig.m.on_iommu_event(Duration::ZERO).unwrap();
    let page = rig.as_(A).read_faults(obj, FaultBatch::PAGE).unwrap().page;
    assert_eq!(
        page.records().map(|r| r.seq).collect::<Vec<_>>(),
        [(FAULT_LOG_DEPTH + extra + 1) as u64]
    );
    let s = rig.as_(A).stats().unwrap();
    assert_eq!((s.faults, s.dropped, s.hw_lost_at_least), (44, 11, 1));
}

#[test]
fn an_armed_notification_fires_once_for_the_client_that_armed_it() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A)
        .attach(obj, DeviceSel::pci(pci(0, 1, 0)))
        .unwrap();
    assert_eq!(rig.as_(A).arm_notify(obj).unwrap().pending, 0);
    assert_eq!(
        rig.as_(A).object_status(obj).unwrap().notify,
        NotifyState::Armed
    );
    assert_eq!(rig.m.take_notification(), None);
    rig.fake_mut().inject_fault(fault(EDU, 0));
    rig.fake_mut().inject_fault(fault(EDU, 0x1000));
    rig.m.on_iommu_event(Duration::ZERO).unwrap();
    assert_eq!(
        rig.m.take_notification(),
        Some(crate::Notification {
            client: A,
            object: obj
        })
    );
    assert_eq!(rig.m.take_notification(), None, "one-shot");
    // Records are waiting: arming says so and does not arm.
    assert_eq!(rig.as_(A).arm_notify(obj).unwrap().pending, 2);
    assert_eq!(
        rig.as_(A).object_status(obj).unwrap().notify,
        NotifyState::Idle
    );
}

#[test]
fn destroying_an_object_discards_its_ledger_and_later_faults_are_unclaimed() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A)
        .attach(obj, DeviceSel::pci(pci(0, 1, 0)))
        .unwrap();
    rig.as_(A).arm_notify(obj).unwrap();
    rig.as_(A).destroy_object(obj).unwrap();
    rig.fake_mut().inject_fault(fault(EDU, 0));
    let report = rig.m.on_iommu_event(Duration::ZERO).unwrap();
    assert_eq!(report.unclaimed, 1);
    assert_eq!(rig.m.take_notification(), None);
}

#[test]
fn an_iommu_failure_while_draining_keeps_what_was_drained() {
    let mut rig = Rig::new();
    rig.fake_mut().inject_fault(fault(NIC, 0));
    rig.fake_mut().fail(FakeOp::Drain, 0);
    assert!(rig.m.on_iommu_event(Duration::ZERO).is_err());
    assert_eq!(rig.m.unclaimed_pending(), 1);
    assert_eq!(rig.m.counters().iommu_errors, 1);
}

#[test]
fn records_the_iommu_lost_mark_every_ledger_that_may_miss_some() {
    // An SMMUv3 event queue overflow (or a VT-d FSTS.PFO) says records were lost, not whose:
    // every object with a device attached may miss some, and so may the host's ledger.
    let mut rig = Rig::new();
    // A passes the edu through, B the NIC.
    for (c, d) in [(A, pci(0, 1, 0)), (B, pci(0, 2, 0))] {
        rig.m
            .assign(c, &everything_but_the_manager(), &[DeviceSel::pci(d)])
            .unwrap();
    }
    let oa = rig.object(A);
    rig.as_(A).attach(oa, DeviceSel::pci(pci(0, 1, 0))).unwrap();
    let ob = rig.object(B);
    rig.as_(B).attach(ob, DeviceSel::pci(pci(0, 2, 0))).unwrap();
    // An object without a device cannot have faulted.
    let idle = rig.object(A);
    rig.as_(B).arm_notify(ob).unwrap();
    // Control: a fault and no loss leaves every ledger unmarked.
    rig.fake_mut().inject_fault(fault(EDU, 0x1000));
    rig.m.on_iommu_event(Duration::ZERO).unwrap();
    let lost = |rig: &mut Rig, c, o| {
        rig.as_(c)
            .read_faults(o, FaultBatch::PAGE)
            .unwrap()
            .page
            .possibly_lost()
    };
    assert_eq!(
        (
            lost(&mut rig, A, oa),
            lost(&mut rig, B, ob),
            lost(&mut rig, A, idle)
        ),
        (0, 0, 0)
    );
    assert_eq!(rig.m.read_unclaimed(FaultBatch::PAGE).possibly_lost(), 0);
    assert_eq!(
        rig.as_(B).object_status(ob).unwrap().notify,
        NotifyState::Armed
    );

    rig.fake_mut().inject_overflow();
    let report = rig.m.on_iommu_event(Duration::ZERO).unwrap();
    assert_eq!(report.hw_lost_at_least, 1);
    // B's ledger holds no record, yet it learns that some of its records may be missing, and
    // its armed notification fires.
    assert_eq!(
        rig.as_(B).object_status(ob).unwrap().notify,
        NotifyState::Fired
    );
    let page = rig.as_(B).read_faults(ob, FaultBatch::PAGE).unwrap().page;
    assert_eq!((page.len(), page.possibly_lost()), (0, 1));
    assert_eq!(lost(&mut rig, A, oa), 1);
    assert_eq!(lost(&mut rig, A, idle), 0, "no device, nothing lost");
    assert_eq!(rig.m.read_unclaimed(FaultBatch::PAGE).possibly_lost(), 1);
    // After a detach the device's later losses are no longer the object's.
    rig.as_(A).detach(oa, DeviceSel::pci(pci(0, 1, 0))).unwrap();
    rig.fake_mut().inject_overflow();
    rig.m.on_iommu_event(Duration::ZERO).unwrap();
    assert_eq!((lost(&mut rig, A, oa), lost(&mut rig, B, ob)), (1, 2));
}

#[test]
fn object_status_says_how_often_records_may_have_been_lost() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A)
        .attach(obj, DeviceSel::pci(pci(0, 1, 0)))
        .unwrap();
    let idle = rig.object(A);
    let status = |rig: &mut Rig, o| rig.as_(A).object_status(o).unwrap().possibly_lost;
    // Control: a fault the IOMMU kept marks nothing.
    rig.fake_mut().inject_fault(fault(EDU, 0x1000));
    rig.m.on_iommu_event(Duration::ZERO).unwrap();
    assert_eq!((status(&mut rig, obj), status(&mut rig, idle)), (0, 0));
    for _ in 0..2 {
        rig.fake_mut().inject_overflow();
        rig.m.on_iommu_event(Duration::ZERO).unwrap();
    }
    // Without reading its faults the VMM sees that some may be missing, as read_faults says.
    assert_eq!(status(&mut rig, obj), 2);
    assert_eq!(status(&mut rig, idle), 0, "no device, nothing lost");
    let page = rig.as_(A).read_faults(obj, FaultBatch::PAGE).unwrap().page;
    assert_eq!(page.possibly_lost(), 2);
    assert_eq!(
        status(&mut rig, obj),
        2,
        "a count since creation: reading keeps it"
    );
}
