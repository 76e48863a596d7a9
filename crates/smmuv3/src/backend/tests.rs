//! [`Smmuv3Backend`] against the emulated SMMU: what the SMMU would use for a stream after each
//! call, and which commands reached it before the call returned.

use super::*;
use crate::cmd::{opcode, Command};
use crate::driver::BringUpConfig;
use crate::fake_smmu::{FakeSmmu, SharedMem};
use crate::ste::SteConfig;
use crate::stream_table::StreamTableFormat;

const EDU_A: StreamId = StreamId(8);
const EDU_B: StreamId = StreamId(0x10);
const MIB: u64 = 1 << 20;

fn backend() -> (Smmuv3Backend<SharedMem, FakeSmmu>, FakeSmmu) {
    backend_with(FakeSmmu::qemu())
}

fn backend_with(fake: FakeSmmu) -> (Smmuv3Backend<SharedMem, FakeSmmu>, FakeSmmu) {
    backend_coherent(fake, true)
}

/// A backend whose platform says the SMMU is (`coherent`) or is not cache-coherent.
fn backend_coherent(
    fake: FakeSmmu,
    coherent: bool,
) -> (Smmuv3Backend<SharedMem, FakeSmmu>, FakeSmmu) {
    let mut mem = fake.mem.clone();
    let mut smmu = Smmu::with_registers(fake.clone());
    let cfg = BringUpConfig {
        stream_table: StreamTableFormat::TwoLevel,
        poll_limit: 1000,
        coherent,
        ..BringUpConfig::default()
    };
    smmu.bring_up(&mut mem, cfg).unwrap();
    (Smmuv3Backend::new(smmu, mem).unwrap(), fake)
}

/// The STE the emulated SMMU would use for `sid` right now (after its cache).
fn live_ste(fake: &FakeSmmu, sid: StreamId) -> Ste {
    Ste(fake.config(sid.0).expect("stream has a valid STE"))
}

fn opcodes(fake: &FakeSmmu) -> Vec<u8> {
    fake.st
        .borrow()
        .commands
        .iter()
        .map(|c| c[0] as u8)
        .collect()
}

/// IHI 0070 §5.2 STE.S2R, DW2 bit 58.
fn records_faults(ste: &Ste) -> bool {
    ste.0[2] >> 58 & 1 == 1
}

#[test]
fn needs_a_running_smmu() {
    let fake = FakeSmmu::qemu();
    let smmu = Smmu::with_registers(fake.clone());
    let err = Smmuv3Backend::new(smmu, fake.mem.clone()).err();
    assert_eq!(err, Some(BackendError::Smmu(SmmuError::NotRunning)));
}

/// Arm ARM AArch64.S2InvalidSL: a 4 KiB-granule walk may start at level 0 only when the PA size
/// (the SMMU's IDR5.OAS) is at least 44 bits. On a 40-bit-OAS SMMU a 40-bit IOVA space would need
/// a level-0 root (S2SL0 = 0b10, an ILLEGAL STE there), so the backend uses 39 bits from level 1.
#[test]
fn a_40_bit_oas_smmu_gets_a_level_1_root() {
    let mut idr = crate::fake_smmu::QEMU_IDR;
    idr[5] = (idr[5] & !7) | 0b010;
    let (mut b, fake) = backend_with(FakeSmmu::new(idr));
    assert_eq!(b.smmu().features().oas_bits, Some(40));
    assert_eq!(b.stage2_config().ias_bits, 39);
    b.detach(EDU_A).unwrap();
    let dw2 = live_ste(&fake, EDU_A).0[2];
    // IHI 0070 §5.2: S2T0SZ [37:32] = 64 - 39, S2SL0 [39:38] = 0b01 (level 1),
    // S2PS [50:48] = 0b010 (40 bits).
    assert_eq!(dw2 >> 32 & 0x3f, 25);
    assert_eq!(dw2 >> 38 & 3, 0b01);
    assert_eq!(dw2 >> 48 & 7, 0b010);
}

#[test]
fn unclaimed_streams_translate_nothing_and_record_faults() {
    let (mut b, fake) = backend();
    assert_eq!(b.stream_domain(EDU_B), None, "never configured");
    b.detach(EDU_B).unwrap();
    let ste = live_ste(&fake, EDU_B);
    assert_eq!(ste.config(), SteConfig::Stage2);
    assert_eq!(ste.s2vmid(), Vmid(0));
    assert!(
        records_faults(&ste),
        "S2R must be set or faults go unrecorded"
    );
    assert_eq!(b.stream_domain(EDU_B), Some(None));
    // Its table is the unclaimed one: empty.
    let probe = stage2::Stage2Table::translate(&b.unclaimed, &b.mem, Iova(0));
    assert_eq!(probe, None);
}

#[test]
fn attach_points_the_live_ste_at_the_domain() {
    let (mut b, fake) = backend();
    b.detach(EDU_A).unwrap();
    assert_eq!(live_ste(&fake, EDU_A).s2vmid(), Vmid(0));
    let d = b.create_domain().unwrap();
    b.attach(EDU_A, d).unwrap();
    let ste = live_ste(&fake, EDU_A);
    assert_eq!(ste.s2vmid(), Vmid(1));
    assert_eq!(ste.s2ttb(), b.domain(d).unwrap().table.root());
    assert!(records_faults(&ste));
    assert_eq!(b.stream_domain(EDU_A), Some(Some(d)));
}

#[test]
fn map_then_unmap_half_invalidates_exactly_that_half_before_returning() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    b.attach(EDU_A, d).unwrap();
    b.map(d, Iova(0), PhysAddr(0x4020_0000), 2 * MIB, Access::RW)
        .unwrap();
    let t = b.translate(d, Iova(MIB + 0x10)).unwrap().unwrap();
    assert_eq!(t.pa, PhysAddr(0x4030_0010));
    assert_eq!(t.size, 2 * MIB, "one 2 MiB block");

    fake.st.borrow_mut().commands.clear();
    assert_eq!(b.unmap(d, Iova(MIB), MIB).unwrap(), MIB);
    let cmds = fake.st.borrow().commands.clone();
    let tlbi: Vec<_> = cmds
        .iter()
        .filter(|c| c[0] as u8 == opcode::TLBI_S2_IPA)
        .collect();
    assert!(!tlbi.is_empty(), "the unmapped range was invalidated");
    for c in &tlbi {
        assert_eq!(c[0] >> 32 & 0xffff, 1, "TLBI tagged with the domain's VMID");
        let ipa = c[1] & 0x000f_ffff_ffff_f000;
        assert!(
            (MIB..2 * MIB).contains(&ipa),
            "IPA {ipa:#x} inside the range"
        );
    }
    assert_eq!(*opcodes(&fake).last().unwrap(), opcode::SYNC);
    assert_eq!(
        opcodes(&fake)
            .iter()
            .filter(|&&o| o == opcode::SYNC)
            .count(),
        1,
        "one CMD_SYNC for the whole unmap"
    );
    assert_eq!(b.translate(d, Iova(MIB)).unwrap(), None);
    let kept = b.translate(d, Iova(0x1000)).unwrap().unwrap();
    assert_eq!(kept.pa, PhysAddr(0x4020_1000), "the first half stays");
}

#[test]
fn map_needs_no_commands() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    fake.st.borrow_mut().commands.clear();
    b.map(d, Iova(0x1000), PhysAddr(0x5000_0000), 0x1000, Access::READ)
        .unwrap();
    assert!(fake.st.borrow().commands.is_empty());
}

#[test]
fn reserved_memory_is_never_mapped() {
    let (mut b, _fake) = backend();
    b.reserve(PhysAddr(0x4008_0000), 0x10_0000).unwrap();
    let d = b.create_domain().unwrap();
    // Overlapping the end of a larger range is caught too.
    let err = b
        .map(d, Iova(0), PhysAddr(0x4000_0000), 0x20_0000, Access::RW)
        .unwrap_err();
    assert_eq!(
        err,
        BackendError::ReservedMemory {
            pa: PhysAddr(0x4000_0000),
            len: 0x20_0000
        }
    );
    assert_eq!(b.translate(d, Iova(0)).unwrap(), None, "nothing was mapped");
    b.map(d, Iova(0), PhysAddr(0x4018_0000), 0x1000, Access::RW)
        .unwrap();
}

#[test]
fn a_refused_map_changes_nothing() {
    let (mut b, _fake) = backend();
    let d = b.create_domain().unwrap();
    b.map(d, Iova(0x2000), PhysAddr(0x5000_2000), 0x1000, Access::RW)
        .unwrap();
    let err = b
        .map(d, Iova(0), PhysAddr(0x6000_0000), 0x4000, Access::RW)
        .unwrap_err();
    assert_eq!(
        err,
        BackendError::Map(MapError::Overlap { iova: Iova(0x2000) })
    );
    assert_eq!(b.translate(d, Iova(0)).unwrap(), None);
    assert_eq!(
        b.translate(d, Iova(0x2000)).unwrap().unwrap().pa,
        PhysAddr(0x5000_2000)
    );
}

#[test]
fn destroy_refuses_while_streams_are_attached_then_frees_everything() {
    let (mut b, fake) = backend();
    let before = fake.mem.0.borrow().live_allocations();
    let d = b.create_domain().unwrap();
    b.attach(EDU_A, d).unwrap();
    b.map(d, Iova(0), PhysAddr(0x5000_0000), 0x3000, Access::RW)
        .unwrap();
    assert_eq!(
        b.destroy_domain(d).unwrap_err(),
        BackendError::DomainInUse {
            domain: d,
            streams: 1
        }
    );
    b.detach(EDU_A).unwrap();
    fake.st.borrow_mut().commands.clear();
    b.destroy_domain(d).unwrap();
    assert_eq!(
        fake.st.borrow().commands[0],
        Command::TlbiS12Vmall { vmid: Vmid(1) }.encode(),
        "the VMID's cached translations go before its tables do"
    );
    // The level-2 stream table allocated for SID 8 stays; the domain's tables are gone.
    assert_eq!(fake.mem.0.borrow().live_allocations(), before + 1);
    assert_eq!(
        b.translate(d, Iova(0)).unwrap_err(),
        BackendError::UnknownDomain(d)
    );
    // The slot (and VMID) is reused, with an empty table.
    let again = b.create_domain().unwrap();
    assert_eq!(again, d);
    assert_eq!(b.translate(again, Iova(0)).unwrap(), None);
}

#[test]
fn unknown_domains_are_named() {
    let (mut b, _fake) = backend();
    let ghost = DomainId(5);
    assert_eq!(
        b.attach(EDU_A, ghost).unwrap_err(),
        BackendError::UnknownDomain(ghost)
    );
    assert_eq!(b.stream_domain(EDU_A), None, "no STE was written");
    assert_eq!(
        b.unmap(ghost, Iova(0), 0x1000).unwrap_err(),
        BackendError::UnknownDomain(ghost)
    );
}

#[test]
fn faults_come_out_backend_neutral() {
    let (mut b, fake) = backend();
    let mut read = [
        0x0000_0008_0000_0010,
        0x0000_0280_0000_0000,
        0x20_0000,
        0x20_0000,
    ];
    fake.record_event(read);
    read[1] |= 1 << 35; // RnW
    fake.record_event(read);
    let mut seen = Vec::new();
    let drain = b.drain_faults(&mut |f| seen.push(f)).unwrap();
    assert_eq!(drain.delivered, 2);
    assert_eq!(drain.lost_at_least, 0);
    assert_eq!(
        seen[0],
        Fault {
            sid: EDU_A,
            addr: Iova(0x20_0000),
            dir: Some(Direction::Write),
            reason: FaultReason::Translation,
            code: 0x10
        }
    );
    assert_eq!(seen[1].dir, Some(Direction::Read));
}

#[test]
fn overflow_is_reported_as_a_lower_bound() {
    let (mut b, fake) = backend();
    let rec = [0x0000_0010_0000_0010, 0x0000_0280_0000_0000, 0x1000, 0x1000];
    for _ in 0..2048 + 72 {
        fake.record_event(rec); // the default queue holds 2,048 (64 KiB)
    }
    let mut n = 0;
    let drain = b.drain_faults(&mut |_| n += 1).unwrap();
    assert_eq!(drain.delivered, 2048);
    assert_eq!(drain.lost_at_least, 1);
    assert_eq!(fake.st.borrow().dropped_events, 72);
    // A later fault is still recorded and delivered.
    fake.record_event(rec);
    assert_eq!(b.drain_faults(&mut |_| ()).unwrap().delivered, 1);
}

#[test]
fn without_bbml2_an_unmap_that_would_split_a_block_is_refused_and_changes_nothing() {
    let mut idr = crate::fake_smmu::QEMU_IDR;
    idr[3] &= !(3 << 11); // IDR3.BBML = 0
    let (mut b, fake) = backend_with(FakeSmmu::new(idr));
    let d = b.create_domain().unwrap();
    b.map(d, Iova(0), PhysAddr(0x4020_0000), 2 * MIB, Access::RW)
        .unwrap();
    fake.st.borrow_mut().commands.clear();
    assert_eq!(
        b.unmap(d, Iova(MIB), MIB),
        Err(BackendError::SplitNeedsBbml2 {
            iova: Iova(MIB),
            len: MIB,
            bbml: 0
        })
    );
    assert!(
        fake.st.borrow().commands.is_empty(),
        "nothing to invalidate"
    );
    let t = b.translate(d, Iova(MIB)).unwrap().unwrap();
    assert_eq!(
        (t.pa, t.size),
        (PhysAddr(0x4030_0000), 2 * MIB),
        "still one block"
    );
    // Unmapping the whole block is fine.
    assert_eq!(b.unmap(d, Iova(0), 2 * MIB), Ok(2 * MIB));
    assert_eq!(b.translate(d, Iova(0)).unwrap(), None);
}

// ---- Failure paths: a failed invalidation never frees what the SMMU may still walk ----

use crate::fake_smmu::Tick;

const CERROR_ILL: u8 = 1;

/// A domain with EDU_A attached and three 4 KiB pages mapped (so the unmap below empties and
/// retires a level-3 table).
fn with_pages() -> (Smmuv3Backend<SharedMem, FakeSmmu>, FakeSmmu, DomainId) {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    b.attach(EDU_A, d).unwrap();
    b.map(d, Iova(0x1000), PhysAddr(0x5000_1000), 0x3000, Access::RW)
        .unwrap();
    fake.st.borrow_mut().commands.clear();
    fake.mem.clear_timeline();
    (b, fake, d)
}

fn live(fake: &FakeSmmu) -> usize {
    fake.mem.0.borrow().live_allocations()
}

/// After the failed unmap: the retry sends TLBI(s) then one CMD_SYNC, and every free comes
/// after that SYNC.
fn assert_retry_invalidates_then_frees(
    b: &mut Smmuv3Backend<SharedMem, FakeSmmu>,
    fake: &FakeSmmu,
    d: DomainId,
    held: usize,
) {
    assert_eq!(live(fake), held, "no table page freed after the failure");
    assert!(b.domain(d).unwrap().table.retired_pages() > 0);
    fake.st.borrow_mut().commands.clear();
    fake.mem.clear_timeline();
    // The manager still believes the range is mapped and retries.
    b.unmap(d, Iova(0x1000), 0x3000).unwrap();
    let t = fake.mem.timeline();
    let sync = t
        .iter()
        .rposition(|x| *x == Tick::Command(opcode::SYNC))
        .expect("the retry completes with a CMD_SYNC");
    let tlbi = t
        .iter()
        .position(|x| {
            *x == Tick::Command(opcode::TLBI_S2_IPA) || *x == Tick::Command(opcode::TLBI_S12_VMALL)
        })
        .expect("the retry invalidates again");
    let first_free = t
        .iter()
        .position(|x| matches!(x, Tick::Free(_)))
        .expect("the retired tables are freed in the end");
    assert!(tlbi < sync && sync < first_free, "{t:?}");
    assert!(live(fake) < held);
    assert_eq!(b.domain(d).unwrap().table.retired_pages(), 0);
}

#[test]
fn unmap_whose_tlbi_is_lost_keeps_tables_and_the_retry_invalidates() {
    let (mut b, fake, d) = with_pages();
    let held = live(&fake);
    fake.inject(opcode::TLBI_S2_IPA, CERROR_ILL, 1);
    let err = b.unmap(d, Iova(0x1000), 0x3000).unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::Smmu(SmmuError::Command {
                opcode: opcode::TLBI_S2_IPA,
                ..
            })
        ),
        "{err}"
    );
    assert!(!fake
        .mem
        .timeline()
        .iter()
        .any(|x| matches!(x, Tick::Free(_))));
    assert_retry_invalidates_then_frees(&mut b, &fake, d, held);
}

#[test]
fn unmap_whose_sync_times_out_keeps_tables_and_the_retry_invalidates() {
    let (mut b, fake, d) = with_pages();
    let held = live(&fake);
    fake.st.borrow_mut().hold = Some(opcode::SYNC);
    let err = b.unmap(d, Iova(0x1000), 0x3000).unwrap_err();
    assert_eq!(
        err,
        BackendError::Smmu(SmmuError::Timeout {
            register: "CMDQ_CONS",
            polls: 1000
        })
    );
    fake.st.borrow_mut().hold = None;
    assert_retry_invalidates_then_frees(&mut b, &fake, d, held);
}

#[test]
fn unmap_whose_sync_fails_with_cerror_keeps_tables_and_the_retry_invalidates() {
    let (mut b, fake, d) = with_pages();
    let held = live(&fake);
    fake.inject(opcode::SYNC, CERROR_ILL, 1);
    let err = b.unmap(d, Iova(0x1000), 0x3000).unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::Smmu(SmmuError::Command {
                opcode: opcode::SYNC,
                ..
            })
        ),
        "{err}"
    );
    assert_retry_invalidates_then_frees(&mut b, &fake, d, held);
}

/// After a lost invalidation the TLB may still translate the old IOVAs: mapping them again
/// (to other memory) must first complete the invalidation.
#[test]
fn map_after_a_failed_unmap_completes_the_invalidation_first() {
    let (mut b, fake, d) = with_pages();
    fake.inject(opcode::TLBI_S2_IPA, CERROR_ILL, 1);
    b.unmap(d, Iova(0x1000), 0x3000).unwrap_err();
    fake.st.borrow_mut().commands.clear();
    b.map(d, Iova(0x1000), PhysAddr(0x6000_1000), 0x1000, Access::RW)
        .unwrap();
    let ops = opcodes(&fake);
    assert!(ops.contains(&opcode::TLBI_S2_IPA), "{ops:?}");
    assert_eq!(ops.last(), Some(&opcode::SYNC));
}

#[test]
fn destroy_never_frees_tables_while_its_invalidation_fails() {
    let (mut b, fake, d) = with_pages();
    b.detach(EDU_A).unwrap();
    let held = live(&fake);
    fake.mem.clear_timeline();
    fake.inject(opcode::TLBI_S12_VMALL, CERROR_ILL, 1);
    assert!(b.destroy_domain(d).is_err());
    assert_eq!(live(&fake), held);
    assert!(
        b.translate(d, Iova(0x1000)).unwrap().is_some(),
        "domain kept"
    );
    fake.mem.clear_timeline();
    b.destroy_domain(d).unwrap();
    let t = fake.mem.timeline();
    let sync = t
        .iter()
        .position(|x| *x == Tick::Command(opcode::SYNC))
        .unwrap();
    assert_eq!(t[0], Tick::Command(opcode::TLBI_S12_VMALL));
    assert!(t[sync + 1..].iter().all(|x| matches!(x, Tick::Free(_))));
    assert!(t[..sync].iter().all(|x| !matches!(x, Tick::Free(_))));
}

/// IHI 0070 §3.21.3 update: the new STE is in memory, but its CMD_CFGI_STE was lost, so the SMMU
/// may use it (or the cached old one). The domain it points at must not be destroyed.
#[test]
fn attach_whose_final_cfgi_fails_keeps_the_domain_alive() {
    for (error, times) in [(CERROR_ILL, 1), (2 /* CERROR_ABT */, 100)] {
        let (mut b, fake) = backend();
        b.detach(EDU_A).unwrap();
        let d = b.create_domain().unwrap();
        b.map(d, Iova(0), PhysAddr(0x5000_0000), 0x1000, Access::RW)
            .unwrap();
        // Unclaimed -> d changes several words: break-before-make, two CFGI_STE. Fail the second.
        fake.inject_after(opcode::CFGI_STE, error, 1, times);
        assert!(b.attach(EDU_A, d).is_err());
        fake.st.borrow_mut().inject.clear();
        let (smmu, mem) = b.parts();
        let in_memory = smmu.read_ste(mem, EDU_A).unwrap();
        assert_eq!(
            in_memory.s2ttb(),
            b.domain(d).unwrap().table.root(),
            "new STE is in memory"
        );
        let held = live(&fake);
        assert_eq!(
            b.destroy_domain(d),
            Err(BackendError::SteUnconfirmed {
                domain: d,
                sid: EDU_A
            })
        );
        assert_eq!(live(&fake), held, "tables kept");
        // A successful retry settles it.
        b.attach(EDU_A, d).unwrap();
        b.detach(EDU_A).unwrap();
        b.destroy_domain(d).unwrap();
    }
}

#[test]
fn detach_whose_cfgi_times_out_keeps_the_old_domain_alive() {
    let (mut b, fake, d) = with_pages();
    fake.st.borrow_mut().hold = Some(opcode::CFGI_STE);
    assert!(b.detach(EDU_A).is_err());
    fake.st.borrow_mut().hold = None;
    let held = live(&fake);
    assert!(b.destroy_domain(d).is_err());
    assert_eq!(live(&fake), held);
    b.detach(EDU_A).unwrap();
    b.destroy_domain(d).unwrap();
}

/// The audit of issue 14 for SMMUv3: a detach whose last CMD_CFGI_STE failed leaves the deny
/// STE in memory already, so the retry changes no word of it; it must still send the owed
/// CMD_CFGI_STE + CMD_SYNC (`write_ste` always ends with one), and only then does the old
/// domain become destroyable.
#[test]
fn a_retried_detach_sends_the_owed_cfgi_although_memory_already_holds_the_deny_ste() {
    let (mut b, fake, d) = with_pages();
    // Domain -> unclaimed changes several words: break-before-make; fail the second CFGI.
    fake.inject_after(opcode::CFGI_STE, CERROR_ILL, 1, 1);
    assert!(b.detach(EDU_A).is_err());
    let (smmu, mem) = b.parts();
    let in_memory = smmu.read_ste(mem, EDU_A).unwrap();
    assert_eq!(in_memory.s2vmid(), Vmid(0), "the deny STE is in memory");
    assert_eq!(
        b.destroy_domain(d),
        Err(BackendError::SteUnconfirmed {
            domain: d,
            sid: EDU_A
        })
    );
    fake.st.borrow_mut().commands.clear();
    b.detach(EDU_A).unwrap();
    let cmds = consumed(&fake);
    assert!(
        cmds.iter()
            .any(|c| c[0] as u8 == opcode::CFGI_STE && c[0] >> 32 == u64::from(EDU_A.0)),
        "the retry re-sent CMD_CFGI_STE: {cmds:x?}"
    );
    assert_eq!(*opcodes(&fake).last().unwrap(), opcode::SYNC);
    assert_eq!(live_ste(&fake, EDU_A).s2vmid(), Vmid(0));
    b.destroy_domain(d).unwrap();
}

/// An unmap past the input address size is refused with its own error before anything else,
/// even with an invalidation outstanding: no command reaches the SMMU.
#[test]
fn unmap_past_the_input_size_is_a_distinct_error_without_hardware_access() {
    let (mut b, fake, d) = with_pages();
    fake.inject(opcode::TLBI_S2_IPA, CERROR_ILL, 1);
    b.unmap(d, Iova(0x1000), 0x3000).unwrap_err();
    fake.st.borrow_mut().commands.clear();
    let writes = fake.writes().len();
    let ias = b.stage2_config().ias_bits;
    let top = 1u64 << ias;
    for (iova, len) in [(top - 0x1000, 0x2000), (top, 0x1000), (!0xfff, 0x2000)] {
        assert_eq!(
            b.unmap(d, Iova(iova), len),
            Err(BackendError::OutOfRange {
                iova: Iova(iova),
                len,
                ias_bits: ias
            })
        );
    }
    assert!(fake.st.borrow().commands.is_empty());
    assert_eq!(fake.writes().len(), writes, "no register written");
    assert!(BackendError::OutOfRange {
        iova: Iova(top),
        len: 0x1000,
        ias_bits: ias
    }
    .to_string()
    .contains("past the"));
}

// ---- Non-coherent SMMUs (IDR0.COHACC = 0 or no `dma-coherent`) ----

/// IHI 0070 §6.3.11 SMMU_CR1 with every table and queue access Non-cacheable (IC = OC = 0b00;
/// SH is then ignored and behaves as Outer Shareable, which is what we write: 0b10).
const CR1_NON_CACHEABLE: u32 = 0b10 << 10 | 0b10 << 4;
/// The same, Write-Back cacheable and Inner Shareable.
const CR1_WRITE_BACK: u32 = 0xD75;

fn cr1(fake: &FakeSmmu) -> u32 {
    fake.st.borrow().cr1
}

/// Attach, map a page and a 2 MiB block, unmap part of the block (a split), detach: every kind
/// of STE, table and command write. After each step nothing the CPU wrote is left uncleaned,
/// and the SMMU, reading memory without snooping, sees what the CPU meant.
fn exercise(b: &mut Smmuv3Backend<SharedMem, FakeSmmu>, fake: &FakeSmmu) {
    let clean = |what: &str| {
        let dirty = fake.mem.0.borrow().dirty_lines();
        assert!(dirty.is_empty(), "after {what}: uncleaned lines {dirty:?}");
    };
    clean("bring-up");
    b.detach(EDU_B).unwrap();
    clean("detach");
    let d = b.create_domain().unwrap();
    clean("create_domain");
    b.attach(EDU_A, d).unwrap();
    clean("attach");
    let ste = live_ste(fake, EDU_A);
    assert_eq!(ste.s2ttb(), b.domain(d).unwrap().table.root());
    b.map(d, Iova(0x1000), PhysAddr(0x5000_1000), 0x1000, Access::RW)
        .unwrap();
    b.map(d, Iova(2 * MIB), PhysAddr(0x6000_0000), 2 * MIB, Access::RW)
        .unwrap();
    clean("map");
    assert_eq!(fake.translate(EDU_A.0, 0x1008), Some(0x5000_1008));
    assert_eq!(fake.translate(EDU_A.0, 3 * MIB + 8), Some(0x6010_0008));
    b.unmap(d, Iova(2 * MIB), MIB).unwrap();
    clean("unmap");
    assert_eq!(fake.translate(EDU_A.0, 2 * MIB), None);
    assert_eq!(fake.translate(EDU_A.0, 3 * MIB + 8), Some(0x6010_0008));
    b.unmap(d, Iova(0x1000), 0x1000).unwrap();
    clean("unmap");
    assert_eq!(fake.translate(EDU_A.0, 0x1008), None);
    b.detach(EDU_A).unwrap();
    b.destroy_domain(d).unwrap();
    clean("destroy");
}

#[test]
fn non_coherent_smmu_sees_every_write_only_after_maintenance() {
    let mut idr = crate::fake_smmu::QEMU_IDR;
    idr[0] &= !(1 << 4); // IDR0.COHACC = 0
                         // The device tree claims coherence; the SMMU's own COHACC = 0 wins.
    let (mut b, fake) = backend_coherent(FakeSmmu::new(idr), true);
    assert!(
        !fake.st.borrow().coherent,
        "the emulated SMMU does not snoop"
    );
    assert_eq!(cr1(&fake), CR1_NON_CACHEABLE);
    // IHI 0070 §6.3.23/§6.3.25/§6.3.28: no read/write-allocate hints for non-cacheable accesses.
    let st = fake.st.borrow();
    assert_eq!(
        (
            st.strtab_base >> 62 & 1,
            st.cmdq_base >> 62 & 1,
            st.evtq_base >> 62 & 1
        ),
        (0, 0, 0)
    );
    drop(st);
    exercise(&mut b, &fake);
    // IHI 0070 §5.2: non-cacheable, outer-shareable stage-2 walks.
    b.detach(EDU_A).unwrap();
    let dw2 = live_ste(&fake, EDU_A).0[2];
    assert_eq!(
        (dw2 >> 40 & 3, dw2 >> 42 & 3, dw2 >> 44 & 3),
        (0, 0, 0b10),
        "S2IR0, S2OR0, S2SH0"
    );
    assert!(!fake.mem.0.borrow().synced().is_empty());
}

/// A translation fault record from StreamID `sid`.
fn fault_record(sid: u32) -> [u64; 4] {
    [
        0x10 | u64::from(sid) << 32,
        0x0000_0280_0000_0000,
        0x1000,
        0x1000,
    ]
}

/// The other direction: the fault records a non-coherent SMMU writes reach memory, not the CPU
/// caches, so every record is invalidated before it is read, and each lap of the event queue
/// reads what the SMMU just wrote, not the previous lap's record in the same slot.
#[test]
fn non_coherent_smmu_faults_are_read_as_the_smmu_wrote_them() {
    let mut idr = crate::fake_smmu::QEMU_IDR;
    idr[0] &= !(1 << 4); // IDR0.COHACC = 0
    let (mut b, fake) = backend_coherent(FakeSmmu::new(idr), true);
    let mut next = 0;
    // 3 x 1,500 records through the default 2,048-record queue: two laps and more.
    for _ in 0..3 {
        for _ in 0..1500 {
            fake.record_event(fault_record(next));
            next += 1;
        }
        let mut seen = Vec::new();
        let drain = b.drain_faults(&mut |f| seen.push(f.sid.0)).unwrap();
        assert_eq!(drain.delivered, 1500);
        let first = next - 1500;
        let wrong = (first..next).zip(&seen).find(|(want, got)| want != *got);
        assert_eq!(wrong, None, "(expected, read) for records {first}..{next}");
    }
    let mem = fake.mem.0.borrow();
    assert_eq!(
        mem.synced_for_cpu().len(),
        4500,
        "one invalidation per record"
    );
    assert!(mem.synced_for_cpu().iter().all(|&(_, len)| len == 32));
}

#[test]
fn a_device_tree_without_dma_coherent_makes_a_cohacc_smmu_non_coherent() {
    let fake = FakeSmmu::qemu();
    fake.st.borrow_mut().coherent = false; // the interconnect does not snoop
    let (mut b, fake) = backend_coherent(fake, false);
    assert_eq!(cr1(&fake), CR1_NON_CACHEABLE);
    exercise(&mut b, &fake);
}

/// The control: COHACC = 1 and `dma-coherent` need no maintenance at all, and walks are
/// write-back cacheable, inner shareable.
#[test]
fn coherent_smmu_needs_no_maintenance() {
    let (mut b, fake) = backend_coherent(FakeSmmu::qemu(), true);
    assert_eq!(cr1(&fake), CR1_WRITE_BACK);
    b.detach(EDU_A).unwrap();
    let dw2 = live_ste(&fake, EDU_A).0[2];
    assert_eq!((dw2 >> 40 & 3, dw2 >> 42 & 3, dw2 >> 44 & 3), (1, 1, 0b11));
    let d = b.create_domain().unwrap();
    b.attach(EDU_A, d).unwrap();
    b.map(d, Iova(0x1000), PhysAddr(0x5000_1000), 0x1000, Access::RW)
        .unwrap();
    b.unmap(d, Iova(0x1000), 0x1000).unwrap();
    fake.record_event(fault_record(EDU_A.0));
    let mut seen = Vec::new();
    b.drain_faults(&mut |f| seen.push(f.sid)).unwrap();
    assert_eq!(seen, [EDU_A]);
    assert!(
        fake.mem.0.borrow().synced().is_empty(),
        "no cache maintenance"
    );
    assert!(
        fake.mem.0.borrow().synced_for_cpu().is_empty(),
        "no invalidation of event records either"
    );
    assert!(
        !fake.mem.0.borrow().dirty_lines().is_empty(),
        "the CPU caches hold the writes"
    );
}

// ---- Invalidation: one range TLBI per contiguous span, per-leaf without RIL ----

/// The commands the SMMU consumed since the last clear, without the STE ones.
fn consumed(fake: &FakeSmmu) -> Vec<[u64; 2]> {
    fake.st.borrow().commands.clone()
}

/// A decoded CMD_TLBI_S2_IPA (IHI 0070 §4.4.13).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Tlbi {
    vmid: u64,
    addr: u64,
    num: u64,
    scale: u64,
    tg: u64,
    ttl: u64,
    leaf: bool,
}

impl Tlbi {
    fn decode(c: [u64; 2]) -> Self {
        assert_eq!(c[0] as u8, opcode::TLBI_S2_IPA, "{c:x?}");
        Self {
            vmid: c[0] >> 32 & 0xffff,
            addr: c[1] & 0x000f_ffff_ffff_f000,
            num: c[0] >> 12 & 0x1f,
            scale: c[0] >> 20 & 0x1f,
            tg: c[1] >> 10 & 3,
            ttl: c[1] >> 8 & 3,
            leaf: c[1] & 1 == 1,
        }
    }

    /// Pages covered: (NUM + 1) * 2^SCALE in the range form, 1 in the single-address form.
    fn pages(self) -> u64 {
        if self.tg == 0 {
            1
        } else {
            (self.num + 1) << self.scale
        }
    }
}

/// The commands of one invalidation: the TLBIs, then exactly one CMD_SYNC, nothing else.
fn tlbis_then_one_sync(fake: &FakeSmmu) -> Vec<[u64; 2]> {
    let cmds = consumed(fake);
    let (last, tlbis) = cmds.split_last().expect("commands were sent");
    assert_eq!(*last, Command::Sync.encode(), "ends with CMD_SYNC");
    assert!(
        tlbis.iter().all(|c| {
            let op = c[0] as u8;
            op == opcode::TLBI_S2_IPA || op == opcode::TLBI_S12_VMALL
        }),
        "only TLBIs before the one CMD_SYNC: {cmds:x?}"
    );
    tlbis.to_vec()
}

fn no_ril() -> FakeSmmu {
    let mut idr = crate::fake_smmu::QEMU_IDR;
    idr[3] &= !(1 << 10); // IDR3.RIL = 0
    FakeSmmu::new(idr)
}

/// Every contiguous unmap of 1..=1,024 pages (and a guard page that keeps the level-3 table
/// alive for the small ones) costs one range TLBI + one CMD_SYNC, starting at the span, within
/// the bound, with TTL = 3 where only pages were removed.
#[test]
fn any_contiguous_unmap_is_one_range_tlbi_and_one_sync() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    let base = 0x4000_0000 + 0x3000;
    // Guard page right below: the level-3 table of the span's first page never empties.
    b.map(
        d,
        Iova(base - 0x1000),
        PhysAddr(0x9000_0000),
        0x1000,
        Access::RW,
    )
    .unwrap();
    for pages in 1..=1024u64 {
        let len = pages * 0x1000;
        b.map(d, Iova(base), PhysAddr(0x8000_3000), len, Access::RW)
            .unwrap();
        fake.st.borrow_mut().commands.clear();
        assert_eq!(b.unmap(d, Iova(base), len), Ok(len));
        let tlbis = tlbis_then_one_sync(&fake);
        assert_eq!(tlbis.len(), 1, "{pages} pages: {tlbis:x?}");
        let t = Tlbi::decode(tlbis[0]);
        assert_eq!((t.vmid, t.addr), (1, base), "{pages} pages");
        assert!(t.tg == 1 || (pages == 1 && t.ttl == 0), "{t:?}");
        assert!(
            t.num != 0 || t.scale != 0 || t.ttl != 0 || t.tg == 0,
            "Reserved form"
        );
        let covered = t.pages();
        assert!(
            covered >= pages && 16 * (covered - pages) < pages.max(17),
            "{pages}: {t:?}"
        );
        // Pages only, and within the guard's table: a leaf-only TTL = 3 hint. Past it, a
        // table emptied or a 2 MiB block (IOVA and PA agree modulo 2 MiB) went too: no hint.
        let in_first_table = (base & 0x1f_ffff) + len <= 0x20_0000;
        if in_first_table {
            assert_eq!((t.leaf, t.ttl), (true, 3), "{pages} pages");
        } else {
            assert_eq!(t.ttl, 0, "{pages} pages: mixed levels or a table went");
        }
    }
}

#[test]
fn a_2mib_block_unmap_is_one_tlbi_with_ttl_2_with_ril() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    b.map(d, Iova(0), PhysAddr(0x8000_0000), 4 * MIB, Access::RW)
        .unwrap();
    fake.st.borrow_mut().commands.clear();
    assert_eq!(b.unmap(d, Iova(2 * MIB), 2 * MIB), Ok(2 * MIB));
    let tlbis = tlbis_then_one_sync(&fake);
    assert_eq!(tlbis.len(), 1);
    let t = Tlbi::decode(tlbis[0]);
    assert_eq!(
        (t.addr, t.pages(), t.tg, t.ttl, t.leaf),
        (2 * MIB, 512, 1, 2, true),
        "{t:?}"
    );
    assert_eq!((t.num, t.scale), (0, 9), "2^9 pages: NUM = 0, SCALE = 9");
}

/// IDR3.RIL = 0: a 2 MiB block is one single-address TLBI at the block (not a whole-VMID
/// invalidation, not 512 page commands).
#[test]
fn without_ril_a_2mib_block_unmap_is_one_tlbi_not_a_vmid_flush() {
    let (mut b, fake) = backend_with(no_ril());
    let d = b.create_domain().unwrap();
    b.map(d, Iova(0), PhysAddr(0x8000_0000), 4 * MIB, Access::RW)
        .unwrap();
    fake.st.borrow_mut().commands.clear();
    assert_eq!(b.unmap(d, Iova(2 * MIB), 2 * MIB), Ok(2 * MIB));
    assert_eq!(
        tlbis_then_one_sync(&fake),
        vec![Command::TlbiS2Ipa {
            vmid: Vmid(1),
            ipa: Iova(2 * MIB),
            leaf: true,
            range: None
        }
        .encode()]
    );
}

/// Without RIL: one single-address TLBI per removed leaf up to 16 in the whole unmap, then one
/// CMD_TLBI_S12_VMALL.
#[test]
fn without_ril_leaves_are_invalidated_one_by_one_up_to_the_limit() {
    use crate::cmd::TLBI_PER_LEAF_LIMIT;
    let (mut b, fake) = backend_with(no_ril());
    let d = b.create_domain().unwrap();
    let guard = 0x30_0000;
    b.map(d, Iova(guard), PhysAddr(0x9000_0000), 0x1000, Access::RW)
        .unwrap();
    // Three 2 MiB blocks: one command each; then 13 pages: one each (with the three blocks'
    // 16 in all, the limit).
    let (blocks, pages) = (Iova(4 * MIB), 0x40_0000 + 6 * MIB);
    b.map(d, blocks, PhysAddr(0x8040_0000), 6 * MIB, Access::RW)
        .unwrap();
    b.map(
        d,
        Iova(pages),
        PhysAddr(0x8100_0000),
        13 * 0x1000,
        Access::RW,
    )
    .unwrap();
    fake.st.borrow_mut().commands.clear();
    b.unmap_batch(d, &[(blocks, 6 * MIB), (Iova(pages), 13 * 0x1000)])
        .unwrap();
    let tlbis = tlbis_then_one_sync(&fake);
    assert_eq!(tlbis.len(), TLBI_PER_LEAF_LIMIT);
    let addrs: Vec<u64> = tlbis.iter().map(|&c| Tlbi::decode(c).addr).collect();
    let mut want = vec![4 * MIB, 6 * MIB, 8 * MIB];
    want.extend((0..13).map(|i| pages + i * 0x1000));
    assert_eq!(addrs, want, "one per block, one per page");
    assert!(tlbis.iter().all(|&c| Tlbi::decode(c).tg == 0));
    // Blocks and pages removed by one unmap are named at the smallest size (pages): 6 MiB of
    // page addresses is past the limit, so the whole VMID (the cost of naming leaves without
    // recording each one as it goes).
    b.map(d, blocks, PhysAddr(0x8040_0000), 2 * MIB, Access::RW)
        .unwrap();
    b.map(d, Iova(pages), PhysAddr(0x8100_0000), 0x1000, Access::RW)
        .unwrap();
    fake.st.borrow_mut().commands.clear();
    b.unmap(d, blocks, 6 * MIB + 0x1000).unwrap();
    assert_eq!(
        tlbis_then_one_sync(&fake),
        vec![Command::TlbiS12Vmall { vmid: Vmid(1) }.encode()]
    );
    // 17 pages: past the limit, the whole VMID.
    b.map(d, Iova(0), PhysAddr(0x8000_0000), 17 * 0x1000, Access::RW)
        .unwrap();
    fake.st.borrow_mut().commands.clear();
    b.unmap(d, Iova(0), 17 * 0x1000).unwrap();
    assert_eq!(
        tlbis_then_one_sync(&fake),
        vec![Command::TlbiS12Vmall { vmid: Vmid(1) }.encode()]
    );
}

#[test]
fn a_mixed_unmap_drops_the_ttl_hint() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    b.map(
        d,
        Iova(0),
        PhysAddr(0x8000_0000),
        2 * MIB + 0x3000,
        Access::RW,
    )
    .unwrap();
    b.map(d, Iova(6 * MIB), PhysAddr(0x9000_0000), 2 * MIB, Access::RW)
        .unwrap();
    fake.st.borrow_mut().commands.clear();
    b.unmap(d, Iova(MIB), MIB + 0x2000).unwrap();
    let tlbis = tlbis_then_one_sync(&fake);
    assert_eq!(tlbis.len(), 1);
    let t = Tlbi::decode(tlbis[0]);
    assert_eq!(
        (t.addr, t.ttl),
        (MIB, 0),
        "a split block and pages: no hint"
    );
    assert!(t.pages() >= 258);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// Large spans at unaligned bases: one range TLBI + one CMD_SYNC, starting at the span,
    /// covering it within the bound. With `blocks`, PA and IOVA agree modulo 1 GiB, so spans of
    /// up to 16 GiB are mapped with 1 GiB and 2 MiB blocks where they fit; otherwise pages
    /// only, up to 128 MiB (the host test's time budget).
    #[test]
    fn large_unaligned_unmaps_are_one_tlbi(
        base_page in 0u64..(1 << 24),
        small in 1u64..(1 << 15),
        large in 1u64..(1 << 22),
        offset_page in 1u64..512,
        blocks: bool,
    ) {
        let (mut b, fake) = backend();
        let d = b.create_domain().unwrap();
        let (pages, offset_page) = if blocks { (large, 0) } else { (small, offset_page) };
        let iova = base_page * 0x1000;
        let pa = 0x100_0000_0000 + (base_page + offset_page) * 0x1000;
        let len = pages * 0x1000;
        b.map(d, Iova(iova), PhysAddr(pa), len, Access::RW).unwrap();
        fake.st.borrow_mut().commands.clear();
        proptest::prop_assert_eq!(b.unmap(d, Iova(iova), len), Ok(len));
        let tlbis = tlbis_then_one_sync(&fake);
        proptest::prop_assert_eq!(tlbis.len(), 1);
        let t = Tlbi::decode(tlbis[0]);
        proptest::prop_assert_eq!(t.addr, iova);
        let covered = t.pages();
        proptest::prop_assert!(covered >= pages);
        proptest::prop_assert!(covered == pages || 16 * (covered - pages) < pages);
    }
}

// ---- Batches: all or nothing, one CMD_SYNC ----

fn mem_writes(fake: &FakeSmmu) -> u64 {
    fake.mem.0.borrow().writes()
}

fn op(iova: u64, pa: u64, len: u64) -> MapOp {
    MapOp {
        iova: Iova(iova),
        pa: PhysAddr(pa),
        len,
        access: Access::RW,
    }
}

/// Whether `[iova, iova + len)` lies inside the pages one of `tlbis` covers.
fn covered_by(tlbis: &[[u64; 2]], iova: u64, len: u64) -> bool {
    tlbis.iter().any(|&c| {
        if c[0] as u8 == opcode::TLBI_S12_VMALL {
            return true;
        }
        let t = Tlbi::decode(c);
        t.addr <= iova && iova + len <= t.addr + t.pages() * 0x1000
    })
}

#[test]
fn map_batch_maps_every_window_without_commands() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    fake.st.borrow_mut().commands.clear();
    let batch = [
        op(0x1000, 0x8000_1000, 0x2000),
        op(4 * MIB, 0x8040_0000, 2 * MIB),
        op(0x4000_0000, 0x9000_0000, 0x1000),
    ];
    b.map_batch(d, &batch).unwrap();
    assert!(consumed(&fake).is_empty(), "a map needs no invalidation");
    for w in batch {
        let t = b.translate(d, w.iova).unwrap().unwrap();
        assert_eq!(t.pa, w.pa);
    }
    assert_eq!(
        b.translate(d, Iova(4 * MIB)).unwrap().unwrap().size,
        2 * MIB
    );
}

/// A window refused in the middle of a batch (overlap with a mapping, with another window,
/// misaligned, reserved memory, past the input size) leaves every byte of memory as it was
/// (no write at all, no allocation left) and sends no command.
#[test]
fn map_batch_refused_in_the_middle_changes_nothing() {
    let (mut b, fake) = backend();
    b.reserve(PhysAddr(0xa000_0000), 0x1000).unwrap();
    let d = b.create_domain().unwrap();
    b.map(
        d,
        Iova(0x10_0000),
        PhysAddr(0x8010_0000),
        0x1000,
        Access::RW,
    )
    .unwrap();
    let good_a = op(0x4000_0000, 0x9000_0000, 0x3000);
    let good_b = op(0x8000_0000, 0x9100_0000, 2 * MIB);
    let cases = [
        (
            op(0xf_f000, 0x7000_0000, 0x2000),
            BackendError::Map(MapError::Overlap {
                iova: Iova(0x10_0000),
            }),
        ),
        (
            op(0x4000_2000, 0x7000_0000, 0x1000),
            BackendError::Map(MapError::Overlap {
                iova: Iova(0x4000_2000),
            }),
        ),
        (
            op(0x20_0800, 0x7000_0000, 0x1000),
            BackendError::Map(MapError::UnalignedIova(Iova(0x20_0800))),
        ),
        (
            op(0x20_0000, 0xa000_0000, 0x1000),
            BackendError::ReservedMemory {
                pa: PhysAddr(0xa000_0000),
                len: 0x1000,
            },
        ),
        (
            op(1 << 48, 0x7000_0000, 0x1000),
            BackendError::Map(MapError::IovaOutOfRange {
                iova: Iova(1 << 48),
                len: 0x1000,
            }),
        ),
    ];
    for (bad, want) in cases {
        fake.st.borrow_mut().commands.clear();
        let (writes, allocations) = (mem_writes(&fake), live(&fake));
        assert_eq!(b.map_batch(d, &[good_a, bad, good_b]), Err(want));
        assert_eq!(mem_writes(&fake), writes, "{bad:?}: not one byte written");
        assert_eq!(live(&fake), allocations, "{bad:?}: nothing allocated");
        assert!(consumed(&fake).is_empty());
        assert_eq!(b.translate(d, good_a.iova).unwrap(), None);
        assert_eq!(b.translate(d, good_b.iova).unwrap(), None);
    }
    b.map_batch(d, &[good_a, good_b]).unwrap();
}

/// n separate spans: at most n TLBIs and one CMD_SYNC; spans that touch share one TLBI.
#[test]
fn unmap_batch_is_one_tlbi_per_separate_span_and_one_sync() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    let spans: Vec<(Iova, u64)> = (0..5u64)
        .map(|i| (Iova(0x4000_0000 + i * 0x10_0000), 0x3000))
        .collect();
    let batch: Vec<MapOp> = spans
        .iter()
        .map(|&(iova, len)| op(iova.get(), 0x8000_0000 + iova.get(), len))
        .collect();
    b.map_batch(d, &batch).unwrap();
    fake.st.borrow_mut().commands.clear();
    assert_eq!(b.unmap_batch(d, &spans), Ok(5 * 0x3000));
    let tlbis = tlbis_then_one_sync(&fake);
    assert_eq!(tlbis.len(), 5);
    for &(iova, len) in &spans {
        assert!(covered_by(&tlbis, iova.get(), len), "{iova}");
    }
    // Adjacent spans, in any order: one TLBI for the lot.
    b.map(d, Iova(0), PhysAddr(0x8000_0000), 0x8000, Access::RW)
        .unwrap();
    fake.st.borrow_mut().commands.clear();
    let touching = [
        (Iova(0x4000), 0x4000),
        (Iova(0), 0x1000),
        (Iova(0x1000), 0x3000),
    ];
    assert_eq!(b.unmap_batch(d, &touching), Ok(0x8000));
    let tlbis = tlbis_then_one_sync(&fake);
    assert_eq!(tlbis.len(), 1);
    assert_eq!(Tlbi::decode(tlbis[0]).addr, 0);
    assert_eq!(Tlbi::decode(tlbis[0]).pages(), 8);
    // Nothing mapped, nothing owed: no command at all.
    fake.st.borrow_mut().commands.clear();
    assert_eq!(b.unmap_batch(d, &touching), Ok(0));
    assert!(consumed(&fake).is_empty());
}

#[test]
fn unmap_batch_without_ril_is_per_leaf_for_the_whole_batch() {
    let (mut b, fake) = backend_with(no_ril());
    let d = b.create_domain().unwrap();
    b.map_batch(
        d,
        &[
            op(0, 0x8000_0000, 0x2000),
            op(4 * MIB, 0x8040_0000, 2 * MIB),
        ],
    )
    .unwrap();
    fake.st.borrow_mut().commands.clear();
    b.unmap_batch(d, &[(Iova(4 * MIB), 2 * MIB), (Iova(0), 0x2000)])
        .unwrap();
    let addrs: Vec<u64> = tlbis_then_one_sync(&fake)
        .iter()
        .map(|&c| Tlbi::decode(c).addr)
        .collect();
    assert_eq!(addrs, vec![4 * MIB, 0, 0x1000], "one per leaf, one SYNC");
}

#[test]
fn unmap_batch_refused_in_the_middle_touches_nothing() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    b.map(d, Iova(0), PhysAddr(0x8000_0000), 0x4000, Access::RW)
        .unwrap();
    let cases = [
        (
            (Iova(0xfff_ffff_f000), 0x2000),
            BackendError::OutOfRange {
                iova: Iova(0xfff_ffff_f000),
                len: 0x2000,
                ias_bits: 44,
            },
        ),
        (
            (Iova(0x2800), 0x1000),
            BackendError::Map(MapError::UnalignedIova(Iova(0x2800))),
        ),
        ((Iova(0x2000), 0), BackendError::Map(MapError::Length(0))),
    ];
    for (bad, want) in cases {
        fake.st.borrow_mut().commands.clear();
        let (writes, allocations) = (mem_writes(&fake), live(&fake));
        assert_eq!(
            b.unmap_batch(d, &[(Iova(0), 0x1000), bad, (Iova(0x3000), 0x1000)]),
            Err(want)
        );
        assert_eq!(mem_writes(&fake), writes, "{bad:?}: not one byte written");
        assert_eq!(live(&fake), allocations);
        assert!(consumed(&fake).is_empty(), "no hardware touched");
        assert!(b.translate(d, Iova(0)).unwrap().is_some());
    }
}

/// The batch's CMD_SYNC fails: every span is gone from the tables, nothing is freed, and the
/// next call of the domain sends an invalidation covering every span, one CMD_SYNC, and only
/// then frees the emptied tables.
#[test]
fn unmap_batch_whose_sync_fails_owes_every_span() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    b.attach(EDU_A, d).unwrap();
    // Three windows in three level-3 tables, each emptied by the batch.
    let spans = [
        (Iova(0x4000_0000), 0x2000),
        (Iova(0x4060_0000), 0x1000),
        (Iova(0x40a0_0000), 0x3000),
    ];
    let batch: Vec<MapOp> = spans
        .iter()
        .map(|&(iova, len)| op(iova.get(), 0x8000_0000 + iova.get(), len))
        .collect();
    b.map_batch(d, &batch).unwrap();
    let held = live(&fake);
    fake.st.borrow_mut().commands.clear();
    fake.mem.clear_timeline();
    fake.inject(opcode::SYNC, CERROR_ILL, 1);
    let err = b.unmap_batch(d, &spans).unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::Smmu(SmmuError::Command {
                opcode: opcode::SYNC,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(live(&fake), held, "no table freed");
    assert!(b.domain(d).unwrap().table.retired_pages() >= 3);
    for &(iova, _) in &spans {
        assert_eq!(
            b.translate(d, iova).unwrap(),
            None,
            "cleared from the table"
        );
    }
    // The retry finds nothing left to clear, sends what is owed, then frees.
    fake.st.borrow_mut().commands.clear();
    fake.mem.clear_timeline();
    assert_eq!(b.unmap_batch(d, &spans), Ok(0));
    let tlbis = tlbis_then_one_sync(&fake);
    for &(iova, len) in &spans {
        assert!(covered_by(&tlbis, iova.get(), len), "{iova} still owed");
    }
    let t = fake.mem.timeline();
    let sync = t
        .iter()
        .position(|x| *x == Tick::Command(opcode::SYNC))
        .unwrap();
    assert!(t[..sync].iter().all(|x| !matches!(x, Tick::Free(_))));
    assert!(t[sync..].iter().any(|x| matches!(x, Tick::Free(_))));
    assert_eq!(b.domain(d).unwrap().table.retired_pages(), 0);
    assert!(live(&fake) < held);
}

/// An owed invalidation goes out with the next unmap's own commands, under the same single
/// CMD_SYNC.
#[test]
fn an_owed_invalidation_shares_the_next_unmaps_sync() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    b.map_batch(
        d,
        &[
            op(0x1000, 0x8000_1000, 0x1000),
            op(0x4000_0000, 0x9000_0000, 0x1000),
        ],
    )
    .unwrap();
    fake.inject(opcode::TLBI_S2_IPA, CERROR_ILL, 1);
    b.unmap(d, Iova(0x1000), 0x1000).unwrap_err();
    fake.st.borrow_mut().commands.clear();
    b.unmap(d, Iova(0x4000_0000), 0x1000).unwrap();
    let tlbis = tlbis_then_one_sync(&fake);
    assert_eq!(tlbis.len(), 2, "the owed span and the new one");
    assert!(covered_by(&tlbis, 0x1000, 0x1000));
    assert!(covered_by(&tlbis, 0x4000_0000, 0x1000));
}

/// An `unmap_batch` that splits two 2 MiB blocks with memory for one split only: refused
/// before anything changed (the pages every split needs, tables and their side pages, are set
/// aside first), the blocks still translate. Control: with memory for both it goes through.
#[test]
fn an_unmap_batch_without_memory_for_every_split_unmaps_nothing() {
    let (mut b, fake) = backend();
    let d = b.create_domain().unwrap();
    b.attach(EDU_A, d).unwrap();
    let iova = 0x4000_0000;
    b.map(d, Iova(iova), PhysAddr(0xc000_0000), 4 * MIB, Access::RW)
        .unwrap();
    let holes = [
        (Iova(iova + 0x5000), 0x1000),
        (Iova(iova + 2 * MIB + 0x5000), 0x1000),
    ];
    // One split's table and the side page of the table that links it; the batch needs two.
    fake.mem.0.borrow_mut().set_pages_left(2);
    fake.st.borrow_mut().commands.clear();
    assert_eq!(
        b.unmap_batch(d, &holes),
        Err(BackendError::Map(MapError::OutOfMemory(
            iommu_core::OutOfMemory { size: 4096 }
        )))
    );
    assert!(consumed(&fake).is_empty(), "nothing to invalidate");
    for (k, (at, _)) in holes.iter().enumerate() {
        let pa = 0xc000_5000 + k as u64 * 2 * MIB;
        assert_eq!(fake.translate(EDU_A.0, at.0), Some(pa));
        assert_eq!(b.translate(d, *at).unwrap().unwrap().size, 2 * MIB);
    }
    // Control: memory for both splits (counted per span: two tables, two side pages).
    fake.mem.0.borrow_mut().set_pages_left(4);
    assert_eq!(b.unmap_batch(d, &holes), Ok(0x2000));
    for (at, _) in holes {
        assert_eq!(fake.translate(EDU_A.0, at.0), None);
        assert_eq!(
            fake.translate(EDU_A.0, at.0 + 0x1000),
            Some(0xc000_6000 + (at.0 - 0x4000_5000))
        );
    }
}
