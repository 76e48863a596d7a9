//! Register-level tests of [`Smmu`] against the emulated SMMU in [`crate::fake_smmu`].

use super::*;
use crate::cmd::{opcode, TlbiRange};
use crate::error::CommandErrorKind;
use crate::fake_smmu::{FakeSmmu, Overflow, SharedMem, Write, QEMU_IDR};
use crate::ste::S2Context;
use iommu_core::PhysAddr;

fn cfg() -> BringUpConfig {
    BringUpConfig {
        stream_table: StreamTableFormat::TwoLevel,
        sid_bits: 16,
        cmdq_log2: 8,
        evtq_bytes: 128 * 32,
        poll_limit: 1000,
        coherent: true,
    }
}

fn up_with(fake: FakeSmmu, cfg: BringUpConfig) -> (Smmu<FakeSmmu>, FakeSmmu, SharedMem) {
    let mem = fake.mem.clone();
    let mut smmu = Smmu::with_registers(fake.clone());
    smmu.bring_up(&mut mem.clone(), cfg).unwrap();
    (smmu, fake, mem)
}

fn up() -> (Smmu<FakeSmmu>, FakeSmmu, SharedMem) {
    up_with(FakeSmmu::qemu(), cfg())
}

fn s2(vmid: u16, ttb: u64) -> Ste {
    Ste::s2_translate(&S2Context {
        vmid: Vmid(vmid),
        s2ttb: PhysAddr(ttb),
        s2t0sz: 32,
        s2sl0: 1,
        s2ps: 4,
        record_faults: true,
    })
}

/// `ste` as install_ste writes it on this SMMU: QEMU's IDR1.ATTR_TYPES_OVR is 0, so STE.SHCFG
/// is RES0 there and written as zero (IHI 0070 §5.2 STE.SHCFG).
fn installed(smmu: &Smmu<FakeSmmu>, ste: Ste) -> Ste {
    let got = ste.for_smmu(smmu.features());
    assert_eq!(
        got.0[1], 0,
        "SHCFG cleared on an SMMU without ATTR_TYPES_OVR"
    );
    got
}

fn opcodes(fake: &FakeSmmu) -> Vec<u8> {
    fake.st
        .borrow()
        .commands
        .iter()
        .map(|c| c[0] as u8)
        .collect()
}

fn position(writes: &[Write], pred: impl Fn(&Write) -> bool) -> usize {
    writes.iter().position(pred).expect("write not found")
}

const QEMU_FAULT: [u64; 4] = [
    0x0000_0008_0000_0010,
    0x0000_0280_0000_0000,
    0x20_0000,
    0x20_0000,
];

#[test]
fn bring_up_sets_gbpa_abort_before_anything_else() {
    let (smmu, fake, _mem) = up();
    let w = fake.writes();
    assert_eq!(
        w[0],
        Write::R32(Reg32::Gbpa, 0x1000 | 1 << 20 | 1 << 31),
        "first write: GBPA.ABORT with UPDATE"
    );
    assert_eq!(w[1], Write::R32(Reg32::Cr0, 0), "then everything off");
    let strtab = position(&w, |x| matches!(x, Write::R64(Reg64::StrtabBase, _)));
    let cmdq = position(&w, |x| matches!(x, Write::R64(Reg64::CmdqBase, _)));
    let cmdqen = position(&w, |x| *x == Write::R32(Reg32::Cr0, 0b1000));
    let evtq = position(&w, |x| matches!(x, Write::R64(Reg64::EventqBase, _)));
    let queues = position(&w, |x| *x == Write::R32(Reg32::Cr0, 0b1100));
    let smmuen = position(&w, |x| *x == Write::R32(Reg32::Cr0, 0b1101));
    assert!(
        1 < strtab
            && strtab < cmdq
            && cmdq < cmdqen
            && cmdqen < evtq
            && evtq < queues
            && queues < smmuen
    );
    assert_eq!(smmuen, w.len() - 1, "SMMUEN is the last write");
    // The invalidation ran between CMDQEN and EVENTQEN.
    let prod = position(
        &w,
        |x| matches!(x, Write::R32(Reg32::CmdqProd, p) if *p != 0),
    );
    assert!(cmdqen < prod && prod < evtq);
    assert_eq!(
        opcodes(&fake),
        vec![opcode::CFGI_STE_RANGE, opcode::TLBI_NSNH_ALL, opcode::SYNC]
    );
    assert_eq!(
        fake.st.borrow().commands[0][1],
        31,
        "CFGI_ALL has Range = 31"
    );

    let st = fake.st.borrow();
    assert_eq!(st.gbpa & (1 << 20), 1 << 20, "GBPA.ABORT stays set");
    assert_eq!(st.cr0ack, 0b1101);
    assert_eq!(st.cr1, 0xD75, "WB/WB/ISH for queues and tables");
    // RECINVSID only: PTM is RES0 without IDR0.BTM, which QEMU lacks (IHI 0070 §6.3.12).
    assert_eq!(st.cr2, 0b010, "RECINVSID");
    assert_eq!(st.irq_ctrl, 0);
    assert_eq!(st.strtab_cfg, 1 << 16 | 8 << 6 | 16);
    assert_eq!(st.cmdq_base & 0x1f, 8);
    assert_eq!(st.cmdq_base >> 62, 1, "RA");
    assert_eq!(st.evtq_base & 0x1f, 7);
    assert_eq!(
        smmu.stream_table_layout(),
        Some((StreamTableFormat::TwoLevel, 16))
    );
    assert_eq!(smmu.stats().commands, 2);
    assert_eq!(smmu.stats().syncs, 1);
}

#[test]
fn unconfigured_streams_are_refused() {
    let (_smmu, fake, _mem) = up();
    // StreamID 8's level-2 table does not exist: C_BAD_STREAMID; beyond 16 bits likewise.
    assert_eq!(fake.config(8), Err(0x02));
    assert_eq!(fake.config(0x1_0000), Err(0x02));
}

#[test]
fn bring_up_polls_a_slow_smmu() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().lazy = Some(1);
    let (smmu, fake, _mem) = up_with(fake, cfg());
    assert!(smmu.is_running());
    assert_eq!(
        opcodes(&fake),
        vec![opcode::CFGI_STE_RANGE, opcode::TLBI_NSNH_ALL, opcode::SYNC]
    );
}

#[test]
fn bring_up_refuses_unsuitable_smmus_without_writing() {
    let cases = [
        (0x0d44_101a, 0x74, Requirement::Stage2), // stage 1 only
        (0x0d44_1017, 0x74, Requirement::AArch64Tables), // TTF = AArch32
        (0x0d64_101b, 0x74, Requirement::LittleEndianTables), // TTENDIAN = BE
        (0x0d44_101b, 0x64, Requirement::Granule4K), // no GRAN4K
        (0x0d44_101b, 0x77, Requirement::OutputAddressSize), // OAS reserved
    ];
    for (idr0, idr5, req) in cases {
        let mut idr = QEMU_IDR;
        idr[0] = idr0;
        idr[5] = idr5;
        let fake = FakeSmmu::new(idr);
        let mut mem = fake.mem.clone();
        let mut smmu = Smmu::with_registers(fake.clone());
        assert_eq!(
            smmu.bring_up(&mut mem, cfg()),
            Err(SmmuError::Unsupported(req)),
            "{idr0:#x} {idr5:#x}"
        );
        assert!(fake.writes().is_empty());
        assert_eq!(mem.0.borrow().live_allocations(), 0);
    }
    let mut idr = QEMU_IDR;
    idr[0] &= !(3 << 27); // ST_LEVEL = linear only
    let fake = FakeSmmu::new(idr);
    let mut smmu = Smmu::with_registers(fake.clone());
    assert_eq!(
        smmu.bring_up(&mut fake.mem.clone(), cfg()),
        Err(SmmuError::Unsupported(Requirement::TwoLevelStreamTable))
    );
}

#[test]
fn stage2_only_smmu_with_linear_table() {
    let mut idr = QEMU_IDR;
    idr[0] = 0x0d44_1019;
    idr[3] = 0;
    let c = BringUpConfig {
        stream_table: StreamTableFormat::Linear,
        sid_bits: 8,
        ..cfg()
    };
    let (mut smmu, fake, mut mem) = up_with(FakeSmmu::new(idr), c);
    assert_eq!(fake.st.borrow().strtab_cfg, 8);
    smmu.install_ste(&mut mem, StreamId(8), &s2(1, 0x4010_0000))
        .unwrap();
    assert_eq!(
        fake.config(8).unwrap(),
        installed(&smmu, s2(1, 0x4010_0000)).0
    );
    // No RIL: two single-page invalidations.
    fake.st.borrow_mut().commands.clear();
    smmu.invalidate_s2(&mut mem, Vmid(1), Iova(0x1800), 0x1000, true)
        .unwrap();
    assert_eq!(
        opcodes(&fake),
        vec![opcode::TLBI_S2_IPA, opcode::TLBI_S2_IPA, opcode::SYNC]
    );
}

#[test]
fn cr0ack_timeout_is_named_and_memory_returned() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().cr0ack_stuck = true;
    let mut mem = fake.mem.clone();
    let mut smmu = Smmu::with_registers(fake.clone());
    assert_eq!(
        smmu.bring_up(&mut mem, cfg()),
        Err(SmmuError::Timeout {
            register: "CR0ACK",
            polls: 1000
        })
    );
    assert!(!smmu.is_running());
    // Disabled again with GBPA.ABORT, and nothing leaked.
    let st = fake.st.borrow();
    assert_eq!(st.cr0, 0);
    assert_ne!(st.gbpa & 1 << 20, 0);
    assert_eq!(mem.0.borrow().live_allocations(), 0);
}

#[test]
fn stale_command_error_is_cleared_before_the_queue_starts() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().gerror = 1; // CMDQ_ERR left active by a previous owner
    let (_smmu, fake, _mem) = up_with(fake, cfg());
    let st = fake.st.borrow();
    assert_eq!(st.gerror ^ st.gerrorn, 0);
    assert_eq!(st.commands.len(), 3);
}

#[test]
fn service_failure_stops_bring_up() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().sfm_on_eventqen = true;
    let mut mem = fake.mem.clone();
    let mut smmu = Smmu::with_registers(fake.clone());
    assert_eq!(
        smmu.bring_up(&mut mem, cfg()),
        Err(SmmuError::ServiceFailure)
    );
    assert_eq!(fake.st.borrow().cr0, 0, "never enabled");
    assert_eq!(mem.0.borrow().live_allocations(), 0);
}

#[test]
fn second_bring_up_is_refused() {
    let (mut smmu, _fake, mut mem) = up();
    assert_eq!(
        smmu.bring_up(&mut mem, cfg()),
        Err(SmmuError::AlreadyRunning)
    );
}

#[test]
fn not_running_before_bring_up() {
    let fake = FakeSmmu::qemu();
    let mut mem = fake.mem.clone();
    let mut smmu = Smmu::with_registers(fake);
    assert_eq!(
        smmu.install_ste(&mut mem, StreamId(8), &Ste::abort()),
        Err(SmmuError::NotRunning)
    );
    assert_eq!(
        smmu.invalidate_vmid(&mut mem, Vmid(1)),
        Err(SmmuError::NotRunning)
    );
    assert_eq!(
        smmu.drain_events(&mut mem, |_| {}),
        Err(SmmuError::NotRunning)
    );
    assert_eq!(smmu.read_ste(&mem, StreamId(8)), Err(SmmuError::NotRunning));
    assert_eq!(smmu.shutdown(&mut mem), Err(SmmuError::NotRunning));
}

#[test]
fn install_ste_is_seen_by_the_smmu_only_after_invalidation() {
    let (mut smmu, fake, mut mem) = up();
    smmu.install_ste(&mut mem, StreamId(8), &s2(1, 0x4010_0000))
        .unwrap();
    assert_eq!(
        fake.config(8).unwrap(),
        installed(&smmu, s2(1, 0x4010_0000)).0
    );
    assert_eq!(
        smmu.read_ste(&mem, StreamId(8)).unwrap(),
        installed(&smmu, s2(1, 0x4010_0000))
    );
    // Its neighbours in the same level-2 table are invalid: C_BAD_STE.
    assert_eq!(fake.config(9), Err(0x04));

    // The SMMU caches the STE: a raw memory change is not seen ...
    let addr = smmu
        .running
        .as_ref()
        .unwrap()
        .strtab
        .ste_addr(&mem, StreamId(8))
        .unwrap()
        .unwrap();
    mem.write_u64(PhysAddr(addr.get() + 24), 0x5000_0000);
    assert_eq!(fake.config(8).unwrap()[3], 0x4010_0000);
    // ... while install_ste invalidates (break-before-make: two CFGI_STE + SYNC pairs).
    fake.st.borrow_mut().commands.clear();
    smmu.install_ste(&mut mem, StreamId(8), &s2(2, 0x4020_0000))
        .unwrap();
    assert_eq!(
        opcodes(&fake),
        vec![
            opcode::CFGI_STE,
            opcode::SYNC,
            opcode::CFGI_STE,
            opcode::SYNC
        ]
    );
    assert_eq!(fake.st.borrow().commands[0][0] >> 32, 8);
    assert_eq!(
        fake.config(8).unwrap(),
        installed(&smmu, s2(2, 0x4020_0000)).0
    );

    assert_eq!(
        smmu.install_ste(&mut mem, StreamId(0x1_0000), &Ste::abort()),
        Err(SmmuError::StreamIdOutOfRange {
            sid: StreamId(0x1_0000),
            sid_bits: 16
        })
    );
}

/// IHI 0070 §5.2 STE.SHCFG: RES0 (written as zero) unless SMMU_IDR1.ATTR_TYPES_OVR, where
/// 0b01 = incoming must be kept (0b00 would force Non-shareable).
#[test]
fn install_ste_writes_shcfg_only_where_the_smmu_implements_it() {
    let (mut smmu, fake, mut mem) = up();
    smmu.install_ste(&mut mem, StreamId(8), &s2(1, 0x4010_0000))
        .unwrap();
    assert_eq!(
        fake.config(8).unwrap()[1],
        0,
        "QEMU: IDR1.ATTR_TYPES_OVR = 0"
    );

    let mut idr = QEMU_IDR;
    idr[1] |= 1 << 27;
    let (mut smmu, fake, mut mem) = up_with(FakeSmmu::new(idr), cfg());
    smmu.install_ste(&mut mem, StreamId(8), &s2(1, 0x4010_0000))
        .unwrap();
    assert_eq!(
        fake.config(8).unwrap()[1],
        1 << 44,
        "SHCFG = 0b01 (incoming)"
    );
    assert_eq!(fake.config(8).unwrap(), s2(1, 0x4010_0000).0);
}

/// IHI 0070 §6.3.12 SMMU_CR2: RECINVSID (bit 1) always; PTM (bit 2) only when IDR0.BTM (bit 5)
/// is set, RES0 (written as zero) otherwise; E2H (bit 0) never.
#[test]
fn cr2_sets_ptm_only_with_broadcast_tlb_maintenance() {
    let (_smmu, fake, _mem) = up();
    assert_eq!(fake.st.borrow().cr2, 0b010, "QEMU: IDR0.BTM = 0");

    let mut idr = QEMU_IDR;
    idr[0] |= 1 << 5;
    let (_smmu, fake, _mem) = up_with(FakeSmmu::new(idr), cfg());
    assert_eq!(fake.st.borrow().cr2, 0b110);
}

#[test]
fn illegal_command_is_recovered_and_the_queue_keeps_working() {
    let (mut smmu, fake, mut mem) = up();
    fake.st.borrow_mut().commands.clear();
    let got = smmu.submit_raw_for_fault_injection(&mut mem, [0xff, 0]);
    assert_eq!(
        got,
        Err(SmmuError::Command {
            index: 0,
            opcode: 0xff,
            error: CommandErrorKind::Illegal
        })
    );
    {
        let st = fake.st.borrow();
        assert_eq!(st.gerror ^ st.gerrorn, 0, "CMDQ_ERR acknowledged");
        assert!(cmdq_empty(&st));
    }
    // The replaced entry ran as a CMD_SYNC, then the batch's own CMD_SYNC.
    assert_eq!(opcodes(&fake), vec![opcode::SYNC, opcode::SYNC]);
    assert_eq!(smmu.stats().command_errors_recovered, 1);
    smmu.invalidate_vmid(&mut mem, Vmid(3)).unwrap();
    assert_eq!(fake.st.borrow().commands[2], [0x3_0000_0028, 0]);
}

fn cmdq_empty(st: &crate::fake_smmu::State) -> bool {
    crate::queue::QueueGeometry::new((st.cmdq_base & 0x1f) as u8)
        .is_empty(st.cmdq_prod, st.cmdq_cons)
}

#[test]
fn several_bad_commands_in_one_batch() {
    let (mut smmu, fake, mut mem) = up();
    fake.st.borrow_mut().commands.clear();
    let good = Command::CfgiSte {
        sid: StreamId(1),
        leaf: true,
    }
    .encode();
    let bad = [0x7f, 0];
    let run = smmu.running.as_mut().unwrap();
    let got = run.cmdq.submit(
        &mut smmu.regs,
        &mut mem,
        [good, bad, good, bad, good],
        1000,
        &mut smmu.stats,
    );
    assert_eq!(
        got,
        Err(SmmuError::Command {
            index: 1,
            opcode: 0x7f,
            error: CommandErrorKind::Illegal
        })
    );
    assert_eq!(smmu.stats.command_errors_recovered, 2);
    let ops = opcodes(&fake);
    assert_eq!(ops, vec![3, opcode::SYNC, 3, opcode::SYNC, 3, opcode::SYNC]);
}

#[test]
fn queue_wraps_and_waits_when_full() {
    for lazy in [None, Some(1), Some(3)] {
        let fake = FakeSmmu::qemu();
        fake.st.borrow_mut().lazy = lazy;
        let (mut smmu, fake, mut mem) = up_with(
            fake,
            BringUpConfig {
                cmdq_log2: 2,
                ..cfg()
            },
        );
        fake.st.borrow_mut().commands.clear();
        let cmds: Vec<Command> = (0..10)
            .map(|i| Command::TlbiS12Vmall { vmid: Vmid(i) })
            .collect();
        smmu.submit(&mut mem, &cmds).unwrap();
        smmu.submit(&mut mem, &cmds[..3]).unwrap();
        let st = fake.st.borrow();
        let vmids: Vec<u64> = st
            .commands
            .iter()
            .filter(|c| c[0] as u8 == opcode::TLBI_S12_VMALL)
            .map(|c| c[0] >> 32)
            .collect();
        assert_eq!(
            vmids,
            (0..10).chain(0..3).collect::<Vec<u64>>(),
            "lazy {lazy:?}"
        );
        assert_eq!(
            st.commands
                .iter()
                .filter(|c| c[0] as u8 == opcode::SYNC)
                .count(),
            2
        );
        // 3 (bring-up) + 11 + 4 entries went through a 4-entry queue.
        assert_eq!(st.cmdq_prod & 7, (3 + 11 + 4) % 8);
    }
}

#[test]
fn stalled_queue_times_out_on_cmdq_cons() {
    let (mut smmu, fake, mut mem) = up();
    fake.st.borrow_mut().lazy = Some(0);
    assert_eq!(
        smmu.invalidate_vmid(&mut mem, Vmid(1)),
        Err(SmmuError::Timeout {
            register: "CMDQ_CONS",
            polls: 1000
        })
    );
}

#[test]
fn invalidate_s2_uses_range_commands_with_ril() {
    let (mut smmu, fake, mut mem) = up();
    fake.st.borrow_mut().commands.clear();
    smmu.invalidate_s2(&mut mem, Vmid(1), Iova(0x10_0000), 0x10_0000, true)
        .unwrap();
    let expect = Command::TlbiS2Ipa {
        vmid: Vmid(1),
        ipa: Iova(0x10_0000),
        leaf: true,
        range: TlbiRange::new(1, 8, 0),
    };
    assert_eq!(
        fake.st.borrow().commands,
        vec![expect.encode(), Command::Sync.encode()]
    );
    fake.st.borrow_mut().commands.clear();
    smmu.invalidate_s2(&mut mem, Vmid(1), Iova(0x10_0000), 0, true)
        .unwrap();
    assert!(
        fake.st.borrow().commands.is_empty(),
        "nothing for an empty range"
    );
    smmu.invalidate_vmid(&mut mem, Vmid(7)).unwrap();
    assert_eq!(fake.st.borrow().commands[0], [0x7_0000_0028, 0]);
}

#[test]
fn drain_delivers_decoded_events() {
    let (mut smmu, fake, mut mem) = up();
    let mut read = QEMU_FAULT;
    read[1] |= 1 << 35;
    fake.record_event(QEMU_FAULT);
    fake.record_event(read);
    let mut seen = Vec::new();
    let report = smmu.drain_events(&mut mem, |ev| seen.push(ev)).unwrap();
    assert_eq!(
        report,
        DrainReport {
            delivered: 2,
            overflowed: false,
            overflow_episodes: 0,
            more_pending: false
        }
    );
    assert_eq!(seen[0].to_string(), "fault type=F_TRANSLATION sid=0x8 addr=0x0000000000200000 ipa=0x0000000000200000 dir=write stage=2 class=IN");
    assert_eq!(seen[1].access.unwrap().dir, crate::event::Direction::Read);
    {
        let st = fake.st.borrow();
        assert_eq!(st.evtq_cons, st.evtq_prod, "CONS caught up with PROD");
    }
    assert_eq!(
        smmu.drain_events(&mut mem, |_| panic!("queue should be empty"))
            .unwrap()
            .delivered,
        0
    );
    assert_eq!(smmu.stats().events_delivered, 2);
}

#[test]
fn events_wrap_around_the_queue() {
    let (mut smmu, fake, mut mem) = up_with(
        FakeSmmu::qemu(),
        BringUpConfig {
            evtq_bytes: 4 * 32,
            ..cfg()
        },
    );
    let mut n = 0;
    for round in 0..5u64 {
        for i in 0..3u64 {
            fake.record_event([0x10 | (round * 3 + i) << 32, 0, 0, 0]);
        }
        smmu.drain_events(&mut mem, |ev| {
            assert_eq!(u64::from(ev.sid.0), n);
            n += 1;
        })
        .unwrap();
    }
    assert_eq!(n, 15);
    assert_eq!(smmu.stats().event_overflows, 0);
}

#[test]
fn qemu_style_overflow_is_counted_and_acknowledged() {
    let (mut smmu, fake, mut mem) = up_with(
        FakeSmmu::qemu(),
        BringUpConfig {
            evtq_bytes: 4 * 32,
            ..cfg()
        },
    );
    for _ in 0..6 {
        fake.record_event(QEMU_FAULT);
    }
    assert_eq!(fake.st.borrow().dropped_events, 2);
    let report = smmu.drain_events(&mut mem, |_| {}).unwrap();
    assert_eq!(
        report,
        DrainReport {
            delivered: 4,
            overflowed: true,
            overflow_episodes: 1,
            more_pending: false
        }
    );
    {
        let st = fake.st.borrow();
        assert_eq!(
            (st.gerror ^ st.gerrorn) & 4,
            0,
            "EVENTQ_ABT_ERR acknowledged"
        );
    }
    let s = smmu.stats();
    assert_eq!(
        (
            s.event_overflows,
            s.events_lost_at_least,
            s.events_delivered
        ),
        (1, 1, 4)
    );
    // A new episode is seen again; a drain without loss is not an overflow.
    fake.record_event(QEMU_FAULT);
    assert!(!smmu.drain_events(&mut mem, |_| {}).unwrap().overflowed);
    for _ in 0..5 {
        fake.record_event(QEMU_FAULT);
    }
    assert!(smmu.drain_events(&mut mem, |_| {}).unwrap().overflowed);
    assert_eq!(smmu.stats().events_lost_at_least, 2);
}

#[test]
fn spec_style_overflow_is_counted_and_acknowledged() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().overflow = Overflow::Spec;
    let (mut smmu, fake, mut mem) = up_with(
        fake,
        BringUpConfig {
            evtq_bytes: 4 * 32,
            ..cfg()
        },
    );
    for _ in 0..5 {
        fake.record_event(QEMU_FAULT);
    }
    let report = smmu.drain_events(&mut mem, |_| {}).unwrap();
    assert_eq!(
        report,
        DrainReport {
            delivered: 4,
            overflowed: true,
            overflow_episodes: 1,
            more_pending: false
        }
    );
    {
        let st = fake.st.borrow();
        assert_eq!(
            st.evtq_cons >> 31,
            st.evtq_prod >> 31,
            "OVACKFLG copied from OVFLG"
        );
        assert_eq!(st.evtq_prod >> 31, 1);
    }
    assert!(!smmu.drain_events(&mut mem, |_| {}).unwrap().overflowed);
    for _ in 0..5 {
        fake.record_event(QEMU_FAULT);
    }
    assert_eq!(
        fake.st.borrow().evtq_prod >> 31,
        0,
        "second episode toggles back"
    );
    assert_eq!(
        smmu.drain_events(&mut mem, |_| {})
            .unwrap()
            .overflow_episodes,
        1
    );
    assert_eq!(smmu.stats().events_lost_at_least, 2);
}

#[test]
fn poll_gerror_acks_only_what_it_handles() {
    let (mut smmu, fake, _mem) = up();
    assert!(smmu.poll_gerror().is_clean());
    fake.st.borrow_mut().gerror ^= 0b1_0011_0101; // CMDQ, EVENTQ_ABT, MSI_CMDQ, MSI_EVENTQ, SFM
    let r = smmu.poll_gerror();
    assert_eq!(
        r.active,
        GerrorFlags::CMDQ_ERR
            | GerrorFlags::EVENTQ_ABT_ERR
            | GerrorFlags::MSI_CMDQ_ABT_ERR
            | GerrorFlags::MSI_EVENTQ_ABT_ERR
            | GerrorFlags::SFM_ERR
    );
    assert_eq!(
        r.acked,
        GerrorFlags::MSI_CMDQ_ABT_ERR | GerrorFlags::MSI_EVENTQ_ABT_ERR | GerrorFlags::SFM_ERR
    );
    let st = fake.st.borrow();
    assert_eq!(st.gerror ^ st.gerrorn, 0b101);
}

#[test]
fn shutdown_aborts_traffic_and_returns_memory() {
    let (mut smmu, fake, mut mem) = up();
    smmu.install_ste(&mut mem, StreamId(0x0108), &s2(1, 0x4010_0000))
        .unwrap();
    assert!(mem.0.borrow().live_allocations() > 3);
    smmu.shutdown(&mut mem).unwrap();
    assert_eq!(mem.0.borrow().live_allocations(), 0);
    let st = fake.st.borrow();
    assert_eq!((st.cr0, st.cr0ack), (0, 0));
    assert_ne!(st.gbpa & 1 << 20, 0);
    assert!(!smmu.is_running());
}

#[test]
fn mmio_over_plain_memory_times_out_on_gbpa() {
    // Plain memory does not clear GBPA.UPDATE: the bounded wait must fail cleanly and name it.
    let mut frame = vec![0u64; 0x2_0000 / 8];
    frame[0] = u64::from(QEMU_IDR[0]) | u64::from(QEMU_IDR[1]) << 32;
    frame[1] = u64::from(QEMU_IDR[3]) << 32;
    frame[2] = u64::from(QEMU_IDR[5]) << 32;
    frame[3] = 1 << 32; // AIDR
    let mem = SharedMem::default();
    {
        // SAFETY: `frame` is 128 KiB, outlives `smmu`, and nothing else touches it meanwhile.
        let mut smmu = unsafe { Smmu::new(frame.as_mut_ptr() as usize) };
        assert_eq!(smmu.features().idr, QEMU_IDR);
        assert_eq!(smmu.features().version.minor, 1);
        let got = smmu.bring_up(
            &mut mem.clone(),
            BringUpConfig {
                poll_limit: 5,
                ..cfg()
            },
        );
        assert_eq!(
            got,
            Err(SmmuError::Timeout {
                register: "GBPA.UPDATE",
                polls: 5
            })
        );
    }
    assert_eq!(
        frame[0x44 / 8] >> 32,
        u64::from(1u32 << 31 | 1 << 20),
        "GBPA written with ABORT | UPDATE"
    );
    assert_eq!(
        mem.0.borrow().live_allocations(),
        3,
        "SMMU never acknowledged: memory deliberately kept"
    );
}

#[test]
fn invalid_config_is_rejected() {
    let fake = FakeSmmu::qemu();
    let mut mem = fake.mem.clone();
    let mut smmu = Smmu::with_registers(fake.clone());
    assert_eq!(
        smmu.bring_up(
            &mut mem,
            BringUpConfig {
                sid_bits: 40,
                ..cfg()
            }
        ),
        Err(SmmuError::InvalidConfig {
            what: "sid_bits",
            value: 40
        })
    );
    assert!(fake.writes().is_empty());
    // Oversized queue requests are clamped to IDR1 (19) and the register width.
    let c = BringUpConfig {
        stream_table: StreamTableFormat::Auto,
        sid_bits: 8,
        cmdq_log2: 30,
        evtq_bytes: 64,
        poll_limit: 0,
        coherent: true,
    };
    smmu.bring_up(&mut mem, c).unwrap();
    assert_eq!(fake.st.borrow().cmdq_base & 0x1f, 19);
    assert_eq!(
        smmu.stream_table_layout(),
        Some((StreamTableFormat::Linear, 8))
    );
}

#[test]
fn abort_all_traffic_sets_gbpa_abort_first_then_disables() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().cr0 = 1; // firmware left it enabled
    fake.st.borrow_mut().cr0ack = 1;
    let mut smmu = Smmu::with_registers(fake.clone());
    let state = smmu.abort_all_traffic(100).unwrap();
    assert!(state.aborting() && state.acknowledged, "{state:?}");
    let writes = fake.writes();
    assert!(
        matches!(writes[0], Write::R32(Reg32::Gbpa, v) if v & GBPA::ABORT::SET.value != 0),
        "GBPA.ABORT is the first write: {writes:?}"
    );
    assert_eq!(writes[1], Write::R32(Reg32::Cr0, 0));
    assert_eq!(writes.len(), 2, "nothing else is touched: {writes:?}");
}

#[test]
fn abort_all_traffic_reports_an_smmu_that_does_not_acknowledge() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().cr0 = 1;
    fake.st.borrow_mut().cr0ack = 1;
    fake.st.borrow_mut().cr0ack_stuck = true;
    let mut smmu = Smmu::with_registers(fake.clone());
    let state = smmu.abort_all_traffic(10).unwrap();
    assert!(!state.acknowledged);
    assert!(
        !state.aborting(),
        "SMMUEN still acknowledged as set: {state:?}"
    );
}

#[test]
fn abort_all_traffic_refuses_a_running_smmu() {
    let (mut smmu, _fake, _mem) = up();
    assert_eq!(smmu.abort_all_traffic(10), Err(SmmuError::AlreadyRunning));
}

// ---- Failure paths (IHI 0070 §7.1 command errors, §6.3.18 SFM_ERR, §6.3.1 STALL_MODEL) ----

const CERROR_ILL: u8 = 1;
const CERROR_ABT: u8 = 2;
const CERROR_ATC_INV_SYNC: u8 = 3;

/// IHI 0070 §7.1: CERROR_ABT means the SMMU could not fetch the command; the command itself is
/// fine, so it is fetched again and must then run, and the operation succeeds.
#[test]
fn command_fetch_abort_is_retried_and_the_command_runs() {
    let (mut smmu, fake, mut mem) = up();
    fake.st.borrow_mut().commands.clear();
    fake.inject(opcode::TLBI_S12_VMALL, CERROR_ABT, 2);
    smmu.invalidate_vmid(&mut mem, Vmid(5)).unwrap();
    assert_eq!(
        fake.st.borrow().commands,
        vec![
            Command::TlbiS12Vmall { vmid: Vmid(5) }.encode(),
            Command::Sync.encode()
        ],
        "the TLBI itself ran, not a CMD_SYNC in its place"
    );
    assert_eq!(smmu.stats().command_errors_recovered, 2);
}

/// A fetch that keeps aborting is given up after a bounded number of attempts with a typed
/// error (never reported as success), and the queue keeps working afterwards.
#[test]
fn command_fetch_abort_gives_up_after_bounded_retries() {
    let (mut smmu, fake, mut mem) = up();
    fake.st.borrow_mut().commands.clear();
    fake.inject(opcode::TLBI_S12_VMALL, CERROR_ABT, 1000);
    let got = smmu.invalidate_vmid(&mut mem, Vmid(5));
    assert_eq!(
        got,
        Err(SmmuError::CommandRetriesExhausted {
            index: 0,
            opcode: opcode::TLBI_S12_VMALL,
            error: CommandErrorKind::Abort,
            attempts: crate::cmdq::COMMAND_ATTEMPTS,
        })
    );
    assert!(
        !opcodes(&fake).contains(&opcode::TLBI_S12_VMALL),
        "the TLBI never ran"
    );
    fake.st.borrow_mut().inject.clear();
    smmu.invalidate_vmid(&mut mem, Vmid(6)).unwrap();
    assert!(fake
        .st
        .borrow()
        .commands
        .contains(&Command::TlbiS12Vmall { vmid: Vmid(6) }.encode()));
}

/// CERROR_ILL: the command is skipped (replaced by a CMD_SYNC) and the operation it belonged
/// to reports the loss: a lost TLBI is never a success.
#[test]
fn illegal_tlbi_is_skipped_and_reported() {
    let (mut smmu, fake, mut mem) = up();
    fake.st.borrow_mut().commands.clear();
    fake.inject(opcode::TLBI_S2_IPA, CERROR_ILL, 1);
    let got = smmu.invalidate_s2(&mut mem, Vmid(1), Iova(0x1000), 0x1000, true);
    assert_eq!(
        got,
        Err(SmmuError::Command {
            index: 0,
            opcode: opcode::TLBI_S2_IPA,
            error: CommandErrorKind::Illegal
        })
    );
    assert_eq!(opcodes(&fake), vec![opcode::SYNC, opcode::SYNC]);
}

/// IHI 0070 §7.1: CERROR_ATC_INV_SYNC leaves CONS at the CMD_SYNC; as Linux does, the SYNC is
/// run again rather than replaced, and succeeds once the ATC answers.
#[test]
fn atc_invalidation_sync_timeout_retries_the_sync() {
    let (mut smmu, fake, mut mem) = up();
    fake.st.borrow_mut().commands.clear();
    fake.inject(opcode::SYNC, CERROR_ATC_INV_SYNC, 1);
    smmu.invalidate_vmid(&mut mem, Vmid(2)).unwrap();
    assert_eq!(opcodes(&fake), vec![opcode::TLBI_S12_VMALL, opcode::SYNC]);

    fake.inject(opcode::SYNC, CERROR_ATC_INV_SYNC, 1000);
    assert!(matches!(
        smmu.invalidate_vmid(&mut mem, Vmid(2)),
        Err(SmmuError::CommandRetriesExhausted {
            error: CommandErrorKind::AtcInvSync,
            ..
        })
    ));
}

/// IHI 0070 §6.3.18: an SMMU in service failure mode before bring-up is refused, and traffic
/// stays terminated (GBPA.ABORT set, SMMUEN = 0); the error is not acknowledged away.
#[test]
fn service_failure_left_by_firmware_refuses_bring_up() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().gerror = 1 << 8;
    let mut mem = fake.mem.clone();
    let mut smmu = Smmu::with_registers(fake.clone());
    assert_eq!(
        smmu.bring_up(&mut mem, cfg()),
        Err(SmmuError::ServiceFailureBeforeBringUp)
    );
    assert!(!smmu.is_running());
    let st = fake.st.borrow();
    assert_eq!(st.cr0, 0, "SMMUEN never set");
    assert_ne!(st.gbpa & GBPA::ABORT::SET.value, 0, "GBPA.ABORT stays set");
    assert_eq!(
        (st.gerror ^ st.gerrorn) & 1 << 8,
        1 << 8,
        "SFM_ERR still visible"
    );
    assert!(st.commands.is_empty(), "the queue was never started");
    assert_eq!(mem.0.borrow().live_allocations(), 0);
}

/// IHI 0070 §6.3.1 IDR0.STALL_MODEL = 0b10 (stall forced): smmuman never sends CMD_RESUME, so a
/// faulting device would hang. Refused before anything is written.
#[test]
fn forced_stall_model_is_refused() {
    for model in [0b10u32, 0b11] {
        let mut idr = QEMU_IDR;
        idr[0] = (idr[0] & !(3 << 24)) | model << 24;
        let fake = FakeSmmu::new(idr);
        let mut mem = fake.mem.clone();
        let mut smmu = Smmu::with_registers(fake.clone());
        let err = smmu.bring_up(&mut mem, cfg()).unwrap_err();
        assert_eq!(err, SmmuError::Unsupported(Requirement::TerminateModel));
        assert!(err.to_string().contains("STALL_MODEL"), "{err}");
        assert!(fake.writes().is_empty());
    }
}

/// With STALL_MODEL = 0b00 stalling is optional and chosen per STE: smmuman's STEs keep
/// STE.S2S = 0 (IHI 0070 §5.2), so faults terminate and are recorded.
#[test]
fn stall_optional_smmu_gets_s2s_clear() {
    let mut idr = QEMU_IDR;
    idr[0] &= !(3 << 24);
    let (mut smmu, fake, mut mem) = up_with(FakeSmmu::new(idr), cfg());
    assert_eq!(
        smmu.features().stall_model,
        crate::features::StallModel::StallAndTerminate
    );
    smmu.install_ste(&mut mem, StreamId(8), &s2(1, 0x4010_0000))
        .unwrap();
    let ste = fake.config(8).unwrap();
    assert_eq!(ste[2] >> 57 & 1, 0, "STE.S2S");
    assert_eq!(ste[2] >> 58 & 1, 1, "STE.S2R");
}

/// The event queue gets 2^min(IDR1.EVENTQS, log2(budget / 32)) records (IHI 0070 §6.3.2
/// IDR1.EVENTQS, §6.3.28 EVENTQ_BASE.LOG2SIZE; a record is 32 bytes, §7.3), and never more
/// memory than the budget.
#[test]
fn event_queue_size_follows_eventqs_and_the_budget() {
    let k = 1024u64;
    let cases = [
        (19, 64 * k, 11), // the daemon's default: 2,048 records
        (19, 96 * k, 11), // rounded down to a power of two
        (19, 64 * k + 31, 11),
        (7, 64 * k, 7), // the SMMU's limit wins
        (19, 32, 0),    // one record
        (19, u64::MAX, 19),
    ];
    for (eventqs, budget, want) in cases {
        let mut idr = QEMU_IDR;
        idr[1] = (idr[1] & !(0x1f << 16)) | eventqs << 16;
        let fake = FakeSmmu::new(idr);
        let mut mem = fake.mem.clone();
        let mut smmu = Smmu::with_registers(fake.clone());
        let before = mem.0.borrow().live_bytes();
        let c = BringUpConfig {
            evtq_bytes: budget,
            ..cfg()
        };
        smmu.bring_up(&mut mem, c).unwrap();
        assert_eq!(
            smmu.evtq_log2(),
            Some(want),
            "EVENTQS {eventqs}, {budget} bytes"
        );
        assert_eq!(fake.st.borrow().evtq_base & 0x1f, u64::from(want));
        let bytes = 32u64 << want;
        assert!(bytes <= budget);
        assert!(mem.0.borrow().live_bytes() - before >= bytes);
        // Filling it exactly loses nothing.
        if want > 11 {
            continue;
        }
        let n = 1u64 << want;
        for _ in 0..n {
            fake.record_event(QEMU_FAULT);
        }
        let r = smmu.drain_events(&mut mem, |_| {}).unwrap();
        assert_eq!((u64::from(r.delivered), r.overflow_episodes), (n, 0));
    }
    let fake = FakeSmmu::qemu();
    let mut smmu = Smmu::with_registers(fake.clone());
    assert_eq!(
        smmu.bring_up(
            &mut fake.mem.clone(),
            BringUpConfig {
                evtq_bytes: 31,
                ..cfg()
            }
        ),
        Err(SmmuError::InvalidConfig {
            what: "event queue budget (bytes, at least one 32-byte record)",
            value: 31
        })
    );
    assert!(fake.writes().is_empty());
}

#[test]
fn wired_interrupts_are_enabled_with_the_irq_ctrlack_handshake() {
    let (mut smmu, fake, _mem) = up();
    assert_eq!(
        fake.read32(Reg32::IrqCtrl),
        0,
        "bring-up leaves interrupts off"
    );
    // IHI 0070 §6.3.16: GERROR_IRQEN is bit 0, EVENTQ_IRQEN bit 2.
    assert_eq!(smmu.set_irqs(true, true), Ok(0b101));
    assert_eq!(fake.read32(Reg32::IrqCtrlAck), 0b101);
    assert_eq!(smmu.set_irqs(true, false), Ok(0b100));
    assert_eq!(smmu.set_irqs(false, false), Ok(0));
    let mut idle = Smmu::with_registers(FakeSmmu::new(QEMU_IDR));
    assert_eq!(idle.set_irqs(true, true), Err(SmmuError::NotRunning));
}

// ---- Event records from an SMMU that does not snoop the CPU caches ----
//
// The emulated memory models the CPU's cache as holding every line all the time (an Arm CPU
// may allocate a Normal cacheable line speculatively whenever it likes): a record the
// non-coherent SMMU writes reaches memory only, and the CPU sees it only after invalidating
// the line ([`iommu_core::DmaMemory::sync_for_cpu`]).

/// Up with a 4-record event queue, on an SMMU whose IDR0.COHACC says it snoops, or not.
fn up_evtq4(coherent: bool) -> (Smmu<FakeSmmu>, FakeSmmu, SharedMem) {
    let mut idr = QEMU_IDR;
    if !coherent {
        idr[0] &= !(1 << 4); // IDR0.COHACC = 0
    }
    let (smmu, fake, mem) = up_with(
        FakeSmmu::new(idr),
        BringUpConfig {
            evtq_bytes: 4 * 32,
            ..cfg() // the platform claims coherence: COHACC decides
        },
    );
    assert_eq!(smmu.is_coherent(), coherent);
    assert_eq!(fake.st.borrow().coherent, coherent);
    (smmu, fake, mem)
}

/// EVENTQ_BASE.ADDR (IHI 0070 §6.3.28).
fn evtq_addr(fake: &FakeSmmu) -> u64 {
    fake.st.borrow().evtq_base & 0x000f_ffff_ffff_ffe0
}

/// A translation fault from StreamID `sid`, so that each record says which one it is.
fn fault_from(sid: u64) -> [u64; 4] {
    let mut raw = QEMU_FAULT;
    raw[0] = (raw[0] & 0xffff_ffff) | sid << 32;
    raw
}

/// Drains once; the StreamIDs of the records, in order.
fn drain_sids(smmu: &mut Smmu<FakeSmmu>, mem: &mut SharedMem) -> Vec<u64> {
    let mut seen = Vec::new();
    smmu.drain_events(mem, |ev| seen.push(u64::from(ev.sid.0)))
        .unwrap();
    seen
}

#[test]
fn non_coherent_smmu_records_are_invalidated_before_they_are_read() {
    let (mut smmu, fake, mut mem) = up_evtq4(false);
    let base = evtq_addr(&fake);
    // Lap 0: the CPU happens to fetch the records fresh (as if its copies of the queue had
    // been evicted just before), so it now caches the lap-0 records in every slot.
    for sid in 0..4 {
        fake.record_event(fault_from(sid));
    }
    mem.0.borrow_mut().sync_for_cpu(PhysAddr(base), 4 * 32);
    assert_eq!(drain_sids(&mut smmu, &mut mem), [0, 1, 2, 3]);
    // Laps 1 to 3 reuse the slots. Without invalidating, the CPU reads the previous lap's
    // record from its cache instead of the one the SMMU just wrote.
    for lap in 1..4u64 {
        mem.0.borrow_mut().clear_synced_for_cpu();
        for i in 0..4 {
            fake.record_event(fault_from(lap * 4 + i));
        }
        assert_eq!(
            drain_sids(&mut smmu, &mut mem),
            (lap * 4..lap * 4 + 4).collect::<Vec<_>>(),
            "lap {lap}: stale records from the previous lap"
        );
        // Exactly each record's 32 bytes (IHI 0070 §7.3), slot by slot.
        let want: Vec<_> = (0..4).map(|i| (PhysAddr(base + 32 * i), 32)).collect();
        assert_eq!(mem.0.borrow().synced_for_cpu(), want);
    }
    assert_eq!(smmu.stats().events_delivered, 16);
}

#[test]
fn non_coherent_smmu_records_wrap_around_the_queue() {
    // As `events_wrap_around_the_queue`: 3 records per drain on a 4-record queue, so every
    // drain reads slots that an earlier drain read on an earlier lap.
    let (mut smmu, fake, mut mem) = up_evtq4(false);
    let mut want = Vec::new();
    let mut seen = Vec::new();
    for sid in 0..15u64 {
        fake.record_event(fault_from(sid));
        want.push(sid);
        if sid % 3 == 2 {
            seen.extend(drain_sids(&mut smmu, &mut mem));
        }
    }
    assert_eq!(seen, want);
    assert_eq!(mem.0.borrow().synced_for_cpu().len(), 15, "one per record");
    assert_eq!(smmu.stats().event_overflows, 0);
}

/// The control: an SMMU that snoops the CPU caches gets no invalidation at all.
#[test]
fn coherent_smmu_records_need_no_invalidation() {
    let (mut smmu, fake, mut mem) = up_evtq4(true);
    for lap in 0..4u64 {
        for i in 0..4 {
            fake.record_event(fault_from(lap * 4 + i));
        }
        assert_eq!(
            drain_sids(&mut smmu, &mut mem),
            (lap * 4..lap * 4 + 4).collect::<Vec<_>>()
        );
    }
    assert!(
        mem.0.borrow().synced_for_cpu().is_empty(),
        "no sync_for_cpu on a coherent SMMU"
    );
    assert!(mem.0.borrow().synced().is_empty(), "nor any clean");
}
