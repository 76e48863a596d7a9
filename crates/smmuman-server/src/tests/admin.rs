//! The operator's side: the admin dispatcher reads what the manager holds without changing it,
//! and only the operator's entry point serves admin ops.

use super::*;
use crate::admin::{self, HostVm, StaticHost};
use core::time::Duration;
use smmuman_admin_api::{
    AdminCallError, AdminClient, Name, OptClient, RegionKind, VmState, ADMIN_OP_BASE,
};
use smmuman_api::{FaultBatch, MapFlags, ObjectId, ProtocolError};

/// The operator's channel in-process: straight into [`admin::handle`].
struct Operator<'a>(&'a mut Manager<FakeIommu>, StaticHost<'a>);

impl Transport for Operator<'_> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        Ok(admin::handle(
            self.0,
            &mut self.1,
            Duration::from_secs(2),
            request,
            reply,
        ))
    }
}

fn vms() -> [HostVm; 3] {
    [
        HostVm {
            name: Name::new("vm1").unwrap(),
            client: Some(A),
            state: VmState::Running,
        },
        HostVm {
            name: Name::new("vm2").unwrap(),
            client: Some(B),
            state: VmState::Running,
        },
        HostVm {
            name: Name::new("vm3").unwrap(),
            client: None,
            state: VmState::Planned,
        },
    ]
}

fn window(iova: u64, pa: u64, len: u64) -> DmaWindow {
    DmaWindow::new(Iova(iova), PhysAddr(pa), len).unwrap()
}

/// A holds the edu with two windows, B the NIC with one; two edu faults, one of the NIC.
fn two_vms() -> (Rig, ObjectId, ObjectId) {
    let mut rig = Rig::new();
    let ram = everything_but_the_manager();
    rig.m
        .assign(A, &ram, &[DeviceSel::pci(pci(0, 1, 0))])
        .unwrap();
    rig.m
        .assign(B, &ram, &[DeviceSel::pci(pci(0, 2, 0))])
        .unwrap();
    let a = rig.object(A);
    let b = rig.object(B);
    let mut c = rig.as_(A);
    c.attach(a, DeviceSel::pci(pci(0, 1, 0))).unwrap();
    c.map(
        a,
        window(0, 0x5000_0000, 0x20_0000),
        Access::RW,
        MapFlags::empty(),
    )
    .unwrap();
    c.map(
        a,
        window(0x100_0000, 0x5100_0000, 0x1000),
        Access::READ,
        MapFlags::empty(),
    )
    .unwrap();
    let mut c = rig.as_(B);
    c.attach(b, DeviceSel::pci(pci(0, 2, 0))).unwrap();
    c.map(
        b,
        window(0, 0x6000_0000, 0x40_0000),
        Access::RW,
        MapFlags::empty(),
    )
    .unwrap();
    rig.fake_mut().inject_fault(fault(EDU, 0x5020_0000));
    rig.fake_mut().inject_fault(fault(EDU, 0x9000_0000));
    rig.fake_mut().inject_fault(fault(NIC, 0x0800_0000));
    (rig, a, b)
}

#[test]
fn a_vmm_client_that_sends_an_admin_op_is_refused_and_nothing_is_read() {
    let (mut rig, a, _) = two_vms();
    let before = rig.m.counters();
    // A VMM (client A) puts the operator's request on its own channel.
    let mut vmm = AdminClient::new(Direct(&mut rig.m, A));
    let err = vmm.peek_faults(a, 0).unwrap_err();
    assert_eq!(
        err,
        AdminCallError::Protocol(ProtocolError::UnknownOp {
            op: ADMIN_OP_BASE + 7
        })
    );
    for op in smmuman_admin_api::AdminOp::ALL {
        // Every admin op number is unknown to the client dispatcher.
        assert_eq!(smmuman_api::Op::from_u16(op.number()), None);
    }
    assert_eq!(
        vmm.list_vms(0).unwrap_err().to_string(),
        "the manager found the request malformed: unknown operation 260"
    );
    // Nothing was drained or read for it: the faults are still in the IOMMU.
    assert_eq!(rig.m.counters().faults, before.faults);
    assert_eq!(rig.m.counters().protocol_errors, before.protocol_errors + 2);
    // Control: the same request on the operator's entry point is served.
    let vms = vms();
    let host = StaticHost {
        vms: &vms,
        ..StaticHost::default()
    };
    let mut op = AdminClient::new(Operator(&mut rig.m, host));
    assert_eq!(op.peek_faults(a, 0).unwrap().page.len(), 2);
}

#[test]
fn the_operator_sees_devices_groups_vms_objects_and_windows_as_set_up() {
    let (mut rig, a, b) = two_vms();
    let vms = vms();
    let host = StaticHost {
        vms: &vms,
        heap: Some((4096, 1 << 20)),
        ..StaticHost::default()
    };
    let mut op = AdminClient::new(Operator(&mut rig.m, host));

    let devices = op.list_devices(0).unwrap();
    assert!(!devices.more);
    let rows: Vec<_> = devices.devices.iter().copied().collect();
    assert_eq!(rows.len(), board().len());
    assert_eq!(
        (rows[0].sid, rows[0].object, rows[0].client),
        (EDU, a, OptClient(Some(A)))
    );
    assert_eq!(rows[0].assigned, OptClient(Some(A)));
    assert_eq!(
        (rows[1].sid, rows[1].object, rows[1].client),
        (NIC, b, OptClient(Some(B)))
    );
    assert_eq!(
        (rows[2].object, rows[2].client, rows[2].assigned),
        (ObjectId(0), OptClient(None), OptClient(None))
    );
    assert_eq!(rows[2].group_devices, 2, "the bridged pair is one group");

    let groups: Vec<_> = op.list_groups(0).unwrap().groups.iter().copied().collect();
    assert_eq!(groups.len(), 5);
    assert_eq!((groups[2].sid, groups[2].devices), (BRIDGED, 2));

    let vms: Vec<_> = op.list_vms(0).unwrap().vms.iter().copied().collect();
    let named: Vec<_> = vms
        .iter()
        .map(|v| (v.name.to_string(), v.state, v.objects, v.mappings))
        .collect();
    assert_eq!(
        named,
        [
            ("vm1".to_string(), VmState::Running, 1, 2),
            ("vm2".to_string(), VmState::Running, 1, 1),
            ("vm3".to_string(), VmState::Planned, 0, 0),
        ]
    );
    assert_eq!(vms[0].mapped_bytes, 0x20_1000);
    assert_eq!(vms[0].devices, 1);

    let objects: Vec<_> = op
        .list_objects(ObjectId(0))
        .unwrap()
        .objects
        .iter()
        .copied()
        .collect();
    assert_eq!(objects.len(), 2);
    assert_eq!(
        (objects[0].object, objects[0].mappings, objects[0].devices),
        (a, 2, 1)
    );
    assert_eq!(objects[0].quota, crate::config::MAPPINGS_PER_OBJECT as u32);
    assert_eq!(
        objects[0].heap_bound,
        2 * crate::config::MAPPING_BYTES as u64
    );
    // Paging by id: from b on, only b.
    let later = op.list_objects(b).unwrap().objects;
    assert_eq!(later.iter().map(|o| o.object).collect::<Vec<_>>(), [b]);

    let windows: Vec<_> = op
        .list_windows(a, 0)
        .unwrap()
        .windows
        .iter()
        .copied()
        .collect();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0].window.pa(), PhysAddr(0x5000_0000));
    assert_eq!(windows[1].access, Access::READ);
    assert_eq!(
        op.list_windows(ObjectId(99), 0).unwrap_err(),
        AdminCallError::Refused(Refusal::new(smmuman_api::DomainError::NotFound, 99))
    );

    let usage = op.usage().unwrap();
    assert_eq!(
        (usage.objects, usage.mappings, usage.heap_used),
        (2, 3, 4096)
    );

    let grants = op.list_grants(A).unwrap().grants;
    assert_eq!(grants.len(), 2);
    let map: Vec<_> = op.memory_map(0).unwrap().regions.iter().copied().collect();
    assert_eq!(map.len(), 1);
    assert_eq!(
        (map[0].kind, map[0].start),
        (RegionKind::Daemon, RESERVED.start)
    );
}

#[test]
fn peeking_at_a_ledger_takes_nothing_and_the_cursor_shows_each_record_once() {
    let (mut rig, a, b) = two_vms();
    let vms = vms();
    let host = StaticHost {
        vms: &vms,
        ..StaticHost::default()
    };
    let mut op = AdminClient::new(Operator(&mut rig.m, host));
    // The barrier drains the IOMMU: the edu's two records are a's, the NIC's b's.
    let first = op.peek_faults(a, 0).unwrap();
    let addrs: Vec<u64> = first.page.records().map(|r| r.addr.0).collect();
    assert_eq!(addrs, [0x5020_0000, 0x9000_0000]);
    assert_eq!((first.next, first.missed), (2, 0));
    assert_eq!(
        op.peek_faults(b, 0)
            .unwrap()
            .page
            .records()
            .next()
            .unwrap()
            .sid,
        NIC
    );
    // Following: nothing new, nothing shown twice.
    let again = op.peek_faults(a, first.next).unwrap();
    assert_eq!((again.page.len(), again.next, again.missed), (0, 2, 0));
    // (The operator's borrow of the manager ends here.)
    // The VMM still reads both: the operator took nothing.
    let page = rig.as_(A).read_faults(a, FaultBatch::PAGE).unwrap().page;
    assert_eq!(page.len(), 2);
    // A new fault, read by its VMM before the operator looks, then a later one: the
    // operator sees both (the ledger's history), nothing missed.
    rig.fake_mut().inject_fault(fault(EDU, 0x9000_1000));
    rig.as_(A).read_faults(a, FaultBatch::PAGE).unwrap();
    rig.fake_mut().inject_fault(fault(EDU, 0x9000_2000));
    let host = StaticHost {
        vms: &vms,
        ..StaticHost::default()
    };
    let mut op = AdminClient::new(Operator(&mut rig.m, host));
    let later = op.peek_faults(a, 2).unwrap();
    assert_eq!(
        later
            .page
            .records()
            .map(|r| (r.seq, r.addr.0))
            .collect::<Vec<_>>(),
        [(3, 0x9000_1000), (4, 0x9000_2000)]
    );
    assert_eq!((later.next, later.missed), (4, 0));
    // The unclaimed ledger is the operator's to read too.
    assert!(op.peek_faults(ObjectId::UNCLAIMED, 0).is_ok());
}

/// `(seq, count, addr, addr_last)` of each record of a peek.
fn runs(r: &smmuman_admin_api::PeekFaultsReply) -> Vec<(u64, u32, u64, u64)> {
    r.page
        .records()
        .map(|r| (r.seq, r.count, r.addr.0, r.addr_last.0))
        .collect()
}

/// Reads every record of `obj` as its VMM does; returns how many records.
fn read_all(rig: &mut Rig, client: ClientId, obj: ObjectId) -> u64 {
    let mut n = 0;
    loop {
        let page = rig
            .as_(client)
            .read_faults(obj, FaultBatch::PAGE)
            .unwrap()
            .page;
        n += page.records().map(|r| u64::from(r.count)).sum::<u64>();
        if page.remaining() == 0 {
            return n;
        }
    }
}

#[test]
fn the_operator_sees_the_newest_runs_its_vmm_already_read_and_counts_older_ones_as_missed() {
    use crate::config::FAULT_HISTORY_DEPTH as H;
    let (mut rig, a, _) = two_vms();
    let vms = vms();
    let op = |m: &mut Manager<FakeIommu>, obj: ObjectId, after: u64| {
        let host = StaticHost {
            vms: &vms,
            ..StaticHost::default()
        };
        AdminClient::new(Operator(m, host))
            .peek_faults(obj, after)
            .unwrap()
    };
    // The edu's two records (seq 1, 2), H + 2 single faults a page apart (seq 3..=H + 4),
    // then a run of 5 records 4 bytes apart (seq H + 5..=H + 9): H + 5 runs in all.
    for i in 0..H as u64 + 2 {
        rig.fake_mut()
            .inject_fault(fault(EDU, 0x9000_0000 + 0x1000 * (i + 1)));
    }
    for i in 0..5 {
        rig.fake_mut().inject_fault(fault(EDU, 0x9100_0000 + 4 * i));
    }
    // Its VMM reads every record before the operator looks.
    assert_eq!(read_all(&mut rig, A, a), H as u64 + 9);
    // Control: what the ledger holds for its reader (all the old peek showed) is empty.
    assert_eq!(rig.m.ledger_records(a).unwrap().0.pending, 0);
    let newest = H as u64 + 9;
    let seen = op(&mut rig.m, a, 0);
    let mut want: Vec<_> = (6..=H as u64 + 4)
        .map(|seq| {
            let addr = 0x9000_0000 + 0x1000 * (seq - 2);
            (seq, 1, addr, addr)
        })
        .collect();
    want.push((H as u64 + 5, 5, 0x9100_0000, 0x9100_0010));
    assert_eq!(runs(&seen), want);
    assert_eq!(want.len(), H, "the history's depth, every run exact");
    // Older than the history: the 5 records of seq 1..=5, counted exactly.
    assert_eq!(
        (seen.missed, seen.next, seen.page.remaining()),
        (5, newest, 0)
    );
    // Following: nothing again, nothing missed.
    let again = op(&mut rig.m, a, seen.next);
    assert_eq!((again.page.len(), again.missed, again.next), (0, 0, newest));
    // 2 × H new runs read by the VMM while the operator does not look: the newest H shown,
    // the H before them missed, exactly.
    for i in 0..2 * H as u64 {
        rig.fake_mut()
            .inject_fault(fault(EDU, 0x9200_0000 + 0x1000 * i));
    }
    assert_eq!(read_all(&mut rig, A, a), 2 * H as u64);
    let later = op(&mut rig.m, a, seen.next);
    assert_eq!(later.missed, H as u64);
    assert_eq!(
        later.page.records().map(|r| r.seq).collect::<Vec<_>>(),
        (newest + H as u64 + 1..=newest + 2 * H as u64).collect::<Vec<_>>()
    );
    // The unclaimed ledger, which the host reads, likewise: a device nobody holds faults.
    rig.fake_mut().inject_fault(fault(GPU, 0x1234_0000));
    assert_eq!(rig.m.read_unclaimed(FaultBatch::PAGE).len(), 1);
    assert_eq!(rig.m.unclaimed_pending(), 0);
    let unclaimed = op(&mut rig.m, ObjectId::UNCLAIMED, 0);
    let shown: Vec<_> = unclaimed
        .page
        .records()
        .map(|r| (r.sid, r.addr.0, r.count))
        .collect();
    assert_eq!(shown, [(GPU, 0x1234_0000, 1)]);
    assert_eq!(
        unclaimed.missed,
        unclaimed.page.records().next().unwrap().seq - 1
    );
}

#[test]
fn start_and_stop_name_a_vm_of_the_plan_and_this_host_cannot_do_either() {
    let (mut rig, _, _) = two_vms();
    let vms = vms();
    let host = StaticHost {
        vms: &vms,
        ..StaticHost::default()
    };
    let mut op = AdminClient::new(Operator(&mut rig.m, host));
    let refused = |e| AdminCallError::Refused(Refusal::new(e, 0));
    use smmuman_api::DomainError::{Busy, NotFound, Unsupported};
    assert_eq!(
        op.start_vm(Name::new("vm9").unwrap()),
        Err(refused(NotFound))
    );
    assert_eq!(op.start_vm(Name::new("vm1").unwrap()), Err(refused(Busy)));
    assert_eq!(
        op.start_vm(Name::new("vm3").unwrap()),
        Err(refused(Unsupported))
    );
    assert_eq!(op.stop_vm(Name::new("vm3").unwrap()), Err(refused(Busy)));
    assert_eq!(
        op.stop_vm(Name::new("vm1").unwrap()),
        Err(refused(Unsupported))
    );
}

#[test]
fn any_bytes_on_the_operators_channel_get_a_well_formed_reply() {
    use smmuman_admin_api::client::encode_request;
    use smmuman_admin_api::{ListWindowsRequest, PeekFaultsRequest, StartVmRequest};
    let (mut rig, a, _) = two_vms();
    let vms = vms();
    let mut host = StaticHost {
        vms: &vms,
        ..StaticHost::default()
    };
    let mut seeds = Vec::new();
    let mut buf = [0u8; MAX_MESSAGE];
    let n = encode_request(
        &PeekFaultsRequest {
            object: a,
            after: 0,
        },
        1,
        &mut buf,
    );
    seeds.push(buf[..n].to_vec());
    let n = encode_request(&ListWindowsRequest { object: a, from: 0 }, 2, &mut buf);
    seeds.push(buf[..n].to_vec());
    let n = encode_request(
        &StartVmRequest {
            name: Name::new("vm3").unwrap(),
        },
        3,
        &mut buf,
    );
    seeds.push(buf[..n].to_vec());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let mut msg = seeds[i % seeds.len()].clone();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % msg.len();
            msg[at] = next() as u8;
        }
        if next() % 8 == 0 {
            msg.truncate((next() as usize) % msg.len());
        }
        let mut reply = [0u8; MAX_MESSAGE];
        let n = admin::handle(&mut rig.m, &mut host, Duration::ZERO, &msg, &mut reply);
        assert!(
            smmuman_api::message::parse_reply(&reply[..n]).is_ok(),
            "no well-formed reply to {msg:02x?}"
        );
    }
    // Nothing changed: the windows are as they were.
    assert_eq!(rig.m.object_view(a).unwrap().mappings, 2);
}
