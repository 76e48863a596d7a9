//! Faults are charged to whoever owned the device when the IOMMU raised them; the fault barrier;
//! bursts logged as one line with exact counts; refusal order; client errors never reach the
//! IOMMU.

use super::*;
use core::time::Duration;
use smmuman_api::{DeviceSel, DomainError, FaultBatch, IovaSpan, PciMatch};

fn edu() -> DeviceSel {
    DeviceSel::pci(pci(0, 1, 0))
}

#[test]
fn faults_raised_under_one_owner_are_never_charged_to_the_next() {
    // Two objects of the client the host gave the edu: `oa` holds it first, then `ob`.
    let mut rig = Rig::new();
    let oa = rig.object(A);
    let ob = rig.object(A);
    rig.as_(A).attach(oa, edu()).unwrap();
    // A refused DMA under oa, not yet drained, then oa lets go and ob takes the device at once.
    rig.fake_mut().inject_fault(fault(EDU, 0xa000));
    rig.as_(A).detach(oa, edu()).unwrap();
    rig.as_(A).attach(ob, edu()).unwrap();
    rig.m.on_iommu_event(Duration::ZERO).unwrap();
    let a = rig.as_(A).read_faults(oa, FaultBatch::PAGE).unwrap().page;
    let b = rig.as_(A).read_faults(ob, FaultBatch::PAGE).unwrap().page;
    assert_eq!(a.records().map(|r| r.addr.0).collect::<Vec<_>>(), [0xa000]);
    assert_eq!(b.len(), 0, "ob never owned the device when it faulted");

    // The same when ob is destroyed (its ledger goes with it) ...
    rig.fake_mut().inject_fault(fault(EDU, 0xb000));
    rig.as_(A).destroy_object(ob).unwrap();
    rig.as_(A).attach(oa, edu()).unwrap();
    let a = rig.as_(A).read_faults(oa, FaultBatch::PAGE).unwrap().page;
    assert_eq!(a.len(), 0, "ob's record stayed ob's");
    // ... and a record raised while the device was free is the host's, not the next owner's.
    rig.as_(A).detach(oa, edu()).unwrap();
    rig.fake_mut().inject_fault(fault(EDU, 0xc000));
    rig.as_(A).attach(oa, edu()).unwrap();
    let a = rig.as_(A).read_faults(oa, FaultBatch::PAGE).unwrap().page;
    assert_eq!(a.len(), 0);
    let host = rig.m.read_unclaimed(FaultBatch::PAGE);
    assert_eq!(
        host.records().map(|r| r.addr.0).collect::<Vec<_>>(),
        [0xc000]
    );
}

#[test]
fn read_faults_is_a_barrier_for_everything_raised_before_it() {
    let mut rig = Rig::new();
    let oa = rig.object(A);
    rig.as_(A).attach(oa, edu()).unwrap();
    // One page apart: no record continues another's run, so a full ledger drops them.
    for i in 0..40 {
        rig.fake_mut().inject_fault(fault(EDU, 0x1000 + 0x1000 * i));
    }
    // Control: nothing has drained the IOMMU yet, so the ledger is empty.
    assert_eq!(rig.as_(A).object_status(oa).unwrap().pending, 0);
    // No on_iommu_event: the read itself drains first, and a page carries 20 records.
    let page = rig.as_(A).read_faults(oa, FaultBatch::PAGE).unwrap().page;
    assert_eq!(page.len(), smmuman_api::FAULTS_PER_PAGE);
    assert_eq!(page.records().next().map(|r| r.addr.0), Some(0x1000));
    assert_eq!(page.remaining(), 12, "32 kept (the ledger's depth)");
    assert_eq!(
        page.dropped(),
        8,
        "40 raised, 32 kept, 8 dropped and counted"
    );
    assert_eq!(
        page.records().next().map(|r| r.time_ns),
        Some(1_000_000_000),
        "stamped with the manager's clock"
    );
}

#[test]
fn a_burst_is_one_log_line_with_exact_counts_and_every_record_is_kept() {
    logs::start();
    let mut rig = manager_rig_with_depth(32);
    let oa = rig.object(A);
    rig.as_(A).attach(oa, edu()).unwrap();
    let _ = logs::take();
    // 16 records of one 64-byte DMA, one of another stream, then 20 more of the first.
    for i in 0..16 {
        rig.fake_mut().inject_fault(fault(EDU, 0x20_0000 + 4 * i));
    }
    rig.fake_mut().inject_fault(fault(NIC, 0x30_0000));
    for i in 0..20 {
        rig.fake_mut().inject_fault(fault(EDU, 0x40_0000 + 4 * i));
    }
    let report = rig.m.on_iommu_event(Duration::ZERO).unwrap();
    // The ledger is full after 32; the last 4 continue the newest record's run: folded.
    assert_eq!((report.records, report.dropped), (37, 0));
    let lines: Vec<String> = logs::take()
        .into_iter()
        .filter(|l| l.contains("smmuman::fault FAULT "))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].contains(
        "seq=1 seq_last=16 count=16 obj=1 sid=0x8 dev=00:01.0 addr=0x0000000000200000 \
         addr_last=0x000000000020003c dir=write reason=translation code=0x10 kept=16 dropped=0"
    ));
    assert!(lines[1].contains("count=1 obj=unclaimed sid=0x10"));
    assert!(
        lines[2].contains("seq=17 seq_last=36 count=20 obj=1 sid=0x8")
            && lines[2].contains("kept=20 dropped=0"),
        "{}",
        lines[2]
    );
    // The ledger kept 32 entries, the newest a run of 5, and every record is counted.
    let mut counts = Vec::new();
    loop {
        let page = rig.as_(A).read_faults(oa, FaultBatch::PAGE).unwrap().page;
        assert_eq!(page.dropped(), 0);
        counts.extend(page.records().map(|r| r.count));
        if page.remaining() == 0 {
            break;
        }
    }
    assert_eq!(counts.len(), 32);
    assert_eq!(counts.last(), Some(&5));
    assert_eq!(counts.iter().sum::<u32>(), 36);
}

fn manager_rig_with_depth(depth: usize) -> Rig {
    Rig {
        m: manager_with_depth(crate::fake::FakeIommu::new(), depth),
    }
}

#[test]
fn attach_refusals_come_in_the_documented_order_whatever_the_group_order() {
    // Two functions sharing a StreamID first in the table, then edu: a request for "every
    // function 0"
    // covers part of the bridged group (GroupSplit) and edu, which another object owns (Busy).
    let devices = [
        DeviceEntry {
            id: DeviceId::Pci(pci(1, 0, 0)),
            sid: BRIDGED,
            raw_sid_allowed: false,
        },
        DeviceEntry {
            id: DeviceId::Pci(pci(1, 0, 1)),
            sid: BRIDGED,
            raw_sid_allowed: false,
        },
        DeviceEntry {
            id: DeviceId::Pci(pci(0, 1, 0)),
            sid: EDU,
            raw_sid_allowed: false,
        },
    ];
    let mut rig = Rig {
        m: manager_of(crate::fake::FakeIommu::new(), &devices, 32),
    };
    let oa = rig.object(A);
    let ob = rig.object(A);
    let every_fn0 = DeviceSel::Pci(PciMatch::new(None, None, Some(0)).unwrap());
    // Control: with edu free the same request is a GroupSplit.
    assert_eq!(
        refusal(rig.as_(A).attach(oa, every_fn0)).error,
        DomainError::GroupSplit
    );
    rig.as_(A).attach(ob, edu()).unwrap();
    assert_eq!(
        refusal(rig.as_(A).attach(oa, every_fn0)),
        Refusal::new(DomainError::Busy, EDU.0.into())
    );
    // A client the host gave none of them hears DeviceNotAssigned before either: about the
    // first group the request touches, whoever holds what.
    let oc = rig.object(B);
    assert_eq!(
        refusal(rig.as_(B).attach(oc, every_fn0)),
        Refusal::new(DomainError::DeviceNotAssigned, BRIDGED.0.into())
    );
}

#[test]
fn an_unmap_past_the_input_address_size_is_the_clients_error_not_the_iommus() {
    let mut rig = Rig::new();
    let oa = rig.object(A);
    let before = rig.fake().counts();
    let span = IovaSpan::new(Iova(IOVA_LAST + 1), 0x1000).unwrap();
    assert_eq!(
        refusal(rig.as_(A).unmap(oa, span)),
        Refusal::new(DomainError::OutOfRange, IOVA_LAST + 1)
    );
    let straddles = IovaSpan::new(Iova(IOVA_LAST + 1 - 0x1000), 0x2000).unwrap();
    assert_eq!(
        refusal(rig.as_(A).unmap(oa, straddles)).error,
        DomainError::OutOfRange
    );
    assert_eq!(rig.m.counters().iommu_errors, 0);
    assert_eq!(rig.fake().counts(), before, "the IOMMU was not touched");
    // Control: a span inside the range is served (nothing mapped there: 0 bytes).
    let inside = IovaSpan::new(Iova(0), 0x1000).unwrap();
    assert_eq!(rig.as_(A).unmap(oa, inside).unwrap().bytes, 0);
}
