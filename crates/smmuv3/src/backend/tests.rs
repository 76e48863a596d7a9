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
