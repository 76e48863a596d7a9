//! The DMA scenarios: the SMMU contains two `edu` devices, and every claim is checked against
//! memory contents and the SMMU's own fault records (`edu` cannot tell a finished DMA from a
//! faulted one).
//!
//! Device A is the first `edu` (00:01.0, StreamID 0x8 on `virt`), device B the second (00:02.0,
//! StreamID 0x10). Every scenario body leaves the IOMMU as it found it (windows unmapped,
//! domains destroyed, devices back to deny-and-record), so `demo` can run several in one boot.

// A failing step returns the `RESULT` record it becomes: a fixed-size text buffer (there is no
// heap to box it in), returned only on the failure path.
#![allow(clippy::result_large_err)]

use core::fmt;
use iommu_core::{
    Access, Bdf, Direction, DomainId, Fault, FaultReason, IommuBackend, Iova, PhysAddr, StreamId,
};
use smmuman_daemon::bringup::iommu::{self, Backend, Drained, IommuOptions};
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::edu::Edu;
use smmuman_daemon::memory::PhysRange;
use smmuman_daemon::mmio::MmioRegion;
use smmuman_daemon::report::Outcome;
use smmuman_daemon::runtime::console;
use smmuv3::{CommandErrorKind, SmmuError};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Bytes per test DMA: 64 bytes make 16 fault records (QEMU records one per 4 bytes).
const DMA_LEN: u32 = 64;
/// F_TRANSLATION (IHI 0070 §7.3.12).
const F_TRANSLATION: u8 = 0x10;

/// A scenario step failed: the `RESULT` record it becomes.
type Step<T = ()> = Result<T, Outcome>;

/// A scenario body: runs on a rig and leaves it as it found it.
type Body = fn(&mut Platform, &mut Rig) -> Step<Outcome>;

fn fail(reason: &str) -> Outcome {
    Outcome::fail().with("reason", reason)
}

/// One DMA master and its StreamID.
pub struct Device {
    /// Its driver.
    pub edu: Edu<MmioRegion>,
    /// Where it sits.
    pub bdf: Bdf,
    /// The StreamID its DMA carries.
    pub sid: StreamId,
}

/// The IOMMU and the two devices every DMA scenario uses.
pub struct Rig {
    /// The SMMUv3 backend.
    pub iommu: Backend,
    /// Device A.
    pub a: Device,
    /// Device B.
    pub b: Device,
}

/// Brings the IOMMU up and takes the first two `edu` devices.
fn rig(p: &mut Platform, opts: IommuOptions) -> Step<Rig> {
    let iommu = iommu::bring_up(p, opts).map_err(|e| {
        Outcome::fail()
            .with("reason", "iommu bring-up failed")
            .with("detail", e)
    })?;
    let found: heapless::Vec<(Bdf, Option<StreamId>), 2> =
        p.edus().take(2).map(|f| (f.bdf, f.sid)).collect();
    let [(a_bdf, Some(a_sid)), (b_bdf, Some(b_sid))] = found[..] else {
        return Err(fail("needs two edu devices behind the SMMU"));
    };
    let mut take = |bdf| {
        p.take_edu(bdf).map_err(|e| {
            Outcome::fail()
                .with("reason", "edu unavailable")
                .with("detail", e)
        })
    };
    let a = Device {
        edu: take(a_bdf)?,
        bdf: a_bdf,
        sid: a_sid,
    };
    let b = Device {
        edu: take(b_bdf)?,
        bdf: b_bdf,
        sid: b_sid,
    };
    Ok(Rig { iommu, a, b })
}

/// Runs `body` on a fresh rig, then prints the SMMU counters and checks that the run left no
/// command error behind.
fn with_rig(
    p: &mut Platform,
    opts: IommuOptions,
    body: impl FnOnce(&mut Platform, &mut Rig) -> Step<Outcome>,
) -> Outcome {
    let mut rig = match rig(p, opts) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let outcome = body(p, &mut rig).unwrap_or_else(|o| o);
    iommu::print_stats(&rig.iommu);
    outcome
}

/// A `CHECK` record; `Err` when `ok` is false.
fn check(step: &str, ok: bool, detail: impl fmt::Display) -> Step {
    console::line(format_args!(
        "CHECK step={step} ok={} {detail}",
        u8::from(ok)
    ));
    if ok {
        Ok(())
    } else {
        Err(Outcome::fail().with("failed_step", step))
    }
}

/// A plain-words line for the demo.
fn say(args: fmt::Arguments<'_>) {
    console::line(format_args!("SAY {args}"));
}

fn dma_error(what: &str, e: impl fmt::Display) -> Outcome {
    Outcome::fail()
        .with("reason", "edu DMA error")
        .with("step", what)
        .with("detail", e)
}

/// The device reads `len` bytes of memory at `iova` into its buffer.
fn dev_reads(p: &Platform, d: &mut Device, iova: Iova, len: u32) -> Step {
    d.edu
        .dma_to_device(iova, 0, len, &p.clock)
        .map(drop)
        .map_err(|e| dma_error("dma_to_device", e))
}

/// The device writes `len` bytes of its buffer to memory at `iova`.
fn dev_writes(p: &Platform, d: &mut Device, iova: Iova, len: u32) -> Step {
    d.edu
        .dma_from_device(0, iova, len, &p.clock)
        .map(drop)
        .map_err(|e| dma_error("dma_from_device", e))
}

fn alloc(p: &mut Platform, size: u64, align: u64) -> Step<PhysRange> {
    p.guest_memory.alloc(size, align).map_err(|e| {
        Outcome::fail()
            .with("reason", "guest memory")
            .with("detail", e)
    })
}

fn free(p: &mut Platform, r: PhysRange) {
    if let Err(e) = p.guest_memory.free(r) {
        log::error!("guest memory: free of {r} refused: {e}");
    }
}

fn backend_error(what: &str, e: impl fmt::Display) -> Outcome {
    Outcome::fail()
        .with("reason", "iommu refused")
        .with("step", what)
        .with("detail", e)
}

fn drain(p: &Platform, rig: &mut Rig) -> Step<Drained> {
    iommu::drain(p, &mut rig.iommu).map_err(|e| backend_error("drain", e))
}

/// Whether `f` is an F_TRANSLATION of `sid` at `addr` in direction `dir`.
fn is_fault(f: Option<Fault>, sid: StreamId, addr: u64, dir: Direction) -> bool {
    f.is_some_and(|f| {
        f.sid == sid
            && f.addr == Iova(addr)
            && f.dir == Some(dir)
            && f.reason == FaultReason::Translation
            && f.code == F_TRANSLATION
    })
}

/// The fault `FAULT` detail of a drain, for `CHECK` records.
struct Seen<'a>(&'a Drained);

impl fmt::Display for Seen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "faults={} like_first={} lost_at_least={}",
            d.totals.delivered, d.like_first, d.totals.lost_at_least
        )?;
        if let Some(first) = d.first {
            write!(
                f,
                " first_sid={} first_addr={} first_dir={}",
                first.sid,
                first.addr,
                iommu::Maybe(first.dir)
            )?;
        }
        Ok(())
    }
}

/// Checks that a DMA of `DMA_LEN` bytes by `sid` at `addr` was refused and recorded: one
/// F_TRANSLATION per 4 bytes, the first at `addr`, all of that stream and direction.
fn expect_blocked(
    p: &Platform,
    rig: &mut Rig,
    step: &str,
    sid: StreamId,
    addr: u64,
    dir: Direction,
) -> Step<Drained> {
    let d = drain(p, rig)?;
    let records = u64::from(DMA_LEN / 4);
    check(
        step,
        is_fault(d.first, sid, addr, dir)
            && d.totals.delivered == records
            && d.like_first == records
            && d.totals.lost_at_least == 0,
        Seen(&d),
    )?;
    Ok(d)
}

fn expect_no_faults(p: &Platform, rig: &mut Rig, step: &str) -> Step {
    let d = drain(p, rig)?;
    check(step, d.totals.delivered == 0, Seen(&d))
}

/// Fills `[pa, pa + len)` with pattern `seed`.
fn fill(p: &mut Platform, pa: PhysAddr, len: u64, seed: u8) {
    p.guest_memory.fill_pattern(pa, len, seed);
}

/// Checks `[pa, pa + len)` holds pattern `seed`.
fn holds(p: &Platform, step: &str, pa: PhysAddr, len: u64, seed: u8) -> Step {
    match p.guest_memory.check_pattern(pa, len, seed) {
        None => check(step, true, format_args!("pa={pa} len={len:#x}")),
        Some(m) => check(
            step,
            false,
            format_args!(
                "pa={pa} len={len:#x} mismatch_at={} found={:#04x} expected={:#04x}",
                m.pa, m.found, m.expected
            ),
        ),
    }
}

fn at(r: PhysRange, offset: u64) -> PhysAddr {
    PhysAddr(r.start().0 + offset)
}

fn new_domain(rig: &mut Rig) -> Step<DomainId> {
    rig.iommu
        .create_domain()
        .map_err(|e| backend_error("create_domain", e))
}

fn attach(rig: &mut Rig, sid: StreamId, d: DomainId) -> Step {
    rig.iommu
        .attach(sid, d)
        .map_err(|e| backend_error("attach", e))
}

fn map(rig: &mut Rig, d: DomainId, iova: u64, pa: PhysAddr, len: u64) -> Step {
    rig.iommu
        .map(d, Iova(iova), pa, len, Access::RW)
        .map_err(|e| backend_error("map", e))
}

fn unmap(rig: &mut Rig, d: DomainId, iova: u64, len: u64) -> Step<u64> {
    rig.iommu
        .unmap(d, Iova(iova), len)
        .map_err(|e| backend_error("unmap", e))
}

/// Puts `sid` back to deny-and-record and destroys `d`.
fn release(rig: &mut Rig, sid: StreamId, d: DomainId) -> Step {
    rig.iommu
        .detach(sid)
        .map_err(|e| backend_error("detach", e))?;
    rig.iommu
        .destroy_domain(d)
        .map_err(|e| backend_error("destroy_domain", e))
}

/// Scenario 1: A gets a window IOVA 0..2 MiB onto a RAM buffer; DMA in both directions inside
/// it moves the right bytes.
fn window_body(p: &mut Platform, rig: &mut Rig) -> Step<Outcome> {
    let buf = alloc(p, 2 * MIB, 2 * MIB)?;
    let d = new_domain(rig)?;
    attach(rig, rig.a.sid, d)?;
    map(rig, d, 0, buf.start(), 2 * MIB)?;
    say(format_args!(
        "Device A ({}, StreamID {}) gets a DMA window: IOVA 0x0..0x200000 -> RAM {}..+2 MiB, read/write.",
        rig.a.bdf,
        rig.a.sid,
        buf.start()
    ));
    fill(p, at(buf, 0x1000), u64::from(DMA_LEN), 1);
    dev_reads(p, &mut rig.a, Iova(0x1000), DMA_LEN)?;
    dev_writes(p, &mut rig.a, Iova(0x3000), DMA_LEN)?;
    holds(
        p,
        "window-read-then-write-lands",
        at(buf, 0x3000),
        u64::from(DMA_LEN),
        1,
    )?;
    dev_writes(p, &mut rig.a, Iova(2 * MIB - 4 * KIB), DMA_LEN)?;
    holds(
        p,
        "window-last-page-lands",
        at(buf, 2 * MIB - 4 * KIB),
        u64::from(DMA_LEN),
        1,
    )?;
    expect_no_faults(p, rig, "window-no-faults")?;
    refuses_daemon_memory(p, rig, d)?;
    say(format_args!(
        "Inside its window, A read 64 bytes at IOVA 0x1000 and wrote them at IOVA 0x3000 and 0x1ff000: the bytes are in RAM, and the SMMU recorded no fault."
    ));
    release(rig, rig.a.sid, d)?;
    free(p, buf);
    Ok(Outcome::pass()
        .with("window_pa", buf.start())
        .with("sid", rig.a.sid))
}

/// The daemon's own memory (its image, and the pool holding stream tables, queues and page
/// tables) can never be mapped, and a refused map leaves the window as it was.
fn refuses_daemon_memory(p: &Platform, rig: &mut Rig, d: DomainId) -> Step {
    let (image, _) = smmuman_daemon::arch::aarch64::boot::image_bounds();
    let pool = p.memory_plan.daemon_pool()[0];
    for (what, pa) in [("image", PhysAddr(image)), ("daemon-pool", pool.start())] {
        let pa = pa.align_down(4 * KIB);
        let result = rig.iommu.map(d, Iova(4 * MIB), pa, 4 * KIB, Access::RW);
        let refused = matches!(result, Err(smmuv3::BackendError::ReservedMemory { .. }));
        let unchanged = matches!(rig.iommu.translate(d, Iova(4 * MIB)), Ok(None));
        check(
            "window-daemon-memory-refused",
            refused && unchanged,
            format_args!("what={what} pa={pa} result={}", Show(&result)),
        )?;
    }
    Ok(())
}

/// Scenario 2: A's DMA just past its window is blocked and recorded, in both directions.
fn outside_body(p: &mut Platform, rig: &mut Rig) -> Step<Outcome> {
    // 4 MiB of RAM, of which only the first 2 MiB are A's window: if the SMMU let the access
    // past the window through, it would land in the second half.
    let ram = alloc(p, 4 * MIB, 2 * MIB)?;
    let d = new_domain(rig)?;
    attach(rig, rig.a.sid, d)?;
    map(rig, d, 0, ram.start(), 2 * MIB)?;
    fill(p, at(ram, 0x1000), u64::from(DMA_LEN), 2);
    dev_reads(p, &mut rig.a, Iova(0x1000), DMA_LEN)?;
    fill(p, at(ram, 2 * MIB), 4 * KIB, 9);
    say(format_args!(
        "A tries to write 64 bytes at IOVA 0x200000, just past its window."
    ));
    dev_writes(p, &mut rig.a, Iova(2 * MIB), DMA_LEN)?;
    holds(p, "outside-write-blocked", at(ram, 2 * MIB), 4 * KIB, 9)?;
    let w = expect_blocked(
        p,
        rig,
        "outside-write-recorded",
        rig.a.sid,
        2 * MIB,
        Direction::Write,
    )?;
    say(format_args!(
        "Blocked: RAM is unchanged and the SMMU recorded {} F_TRANSLATION faults for StreamID {} at IOVA 0x200000 (write).",
        w.totals.delivered, rig.a.sid
    ));
    dev_reads(p, &mut rig.a, Iova(2 * MIB), DMA_LEN)?;
    expect_blocked(
        p,
        rig,
        "outside-read-recorded",
        rig.a.sid,
        2 * MIB,
        Direction::Read,
    )?;
    say(format_args!(
        "Reading past the window is blocked and recorded the same way."
    ));
    release(rig, rig.a.sid, d)?;
    free(p, ram);
    Ok(Outcome::pass()
        .with("fault_sid", rig.a.sid)
        .with("fault_addr", Iova(2 * MIB))
        .with("faults_per_dma", w.totals.delivered))
}

/// Scenario 3: B, which nobody claimed, is blocked everywhere and its attempts are recorded.
fn unclaimed_body(p: &mut Platform, rig: &mut Rig) -> Step<Outcome> {
    check(
        "unclaimed-is-deny-and-record",
        rig.iommu.stream_domain(rig.b.sid) == Some(None),
        format_args!("sid={}", rig.b.sid),
    )?;
    // Aim at real RAM with IOVA == PA: were the SMMU bypassing, this is where it would land.
    let target = alloc(p, 4 * KIB, 4 * KIB)?;
    fill(p, target.start(), 4 * KIB, 7);
    say(format_args!(
        "Device B ({}, StreamID {}) has no window. It tries to write RAM at {} (IOVA == PA, as if the SMMU let it through).",
        rig.b.bdf,
        rig.b.sid,
        target.start()
    ));
    dev_writes(p, &mut rig.b, Iova(target.start().0), DMA_LEN)?;
    holds(p, "unclaimed-write-blocked", target.start(), 4 * KIB, 7)?;
    let w = expect_blocked(
        p,
        rig,
        "unclaimed-write-recorded",
        rig.b.sid,
        target.start().0,
        Direction::Write,
    )?;
    dev_reads(p, &mut rig.b, Iova(target.start().0), DMA_LEN)?;
    expect_blocked(
        p,
        rig,
        "unclaimed-read-recorded",
        rig.b.sid,
        target.start().0,
        Direction::Read,
    )?;
    dev_writes(p, &mut rig.b, Iova(0x1000), DMA_LEN)?;
    expect_blocked(
        p,
        rig,
        "unclaimed-low-iova-recorded",
        rig.b.sid,
        0x1000,
        Direction::Write,
    )?;
    say(format_args!(
        "Blocked everywhere: RAM is unchanged, and each attempt is on record with B's StreamID."
    ));
    free(p, target);
    Ok(Outcome::pass()
        .with("fault_sid", rig.b.sid)
        .with("fault_addr", Iova(target.start().0))
        .with("faults_per_dma", w.totals.delivered))
}

/// Scenario 4: unmapping half of A's window blocks that half at once (the SMMU had the 2 MiB
/// translation cached), and remapping it to other RAM sends DMA there, not to the old RAM.
fn remap_body(p: &mut Platform, rig: &mut Rig) -> Step<Outcome> {
    let old = alloc(p, 2 * MIB, 2 * MIB)?;
    let new = alloc(p, 2 * MIB, 2 * MIB)?;
    let d = new_domain(rig)?;
    attach(rig, rig.a.sid, d)?;
    map(rig, d, 0, old.start(), 2 * MIB)?;
    fill(p, at(old, 0x1000), u64::from(DMA_LEN), 3);
    dev_reads(p, &mut rig.a, Iova(0x1000), DMA_LEN)?;
    // Fill the SMMU's TLB with the 2 MiB block: this DMA lands.
    dev_writes(p, &mut rig.a, Iova(0x18_0000), DMA_LEN)?;
    holds(
        p,
        "remap-before-unmap-lands",
        at(old, 0x18_0000),
        u64::from(DMA_LEN),
        3,
    )?;
    fill(p, at(old, MIB), MIB, 11);
    say(format_args!(
        "A's window is mapped as one 2 MiB block and the SMMU has it cached. Now the upper half (IOVA 0x100000..0x200000) is unmapped."
    ));
    let removed = unmap(rig, d, MIB, MIB)?;
    check(
        "remap-unmap-size",
        removed == MIB,
        format_args!("bytes={removed:#x}"),
    )?;
    dev_writes(p, &mut rig.a, Iova(0x18_0000), DMA_LEN)?;
    holds(p, "remap-unmapped-half-blocked", at(old, MIB), MIB, 11)?;
    expect_blocked(
        p,
        rig,
        "remap-unmapped-half-recorded",
        rig.a.sid,
        0x18_0000,
        Direction::Write,
    )?;
    dev_writes(p, &mut rig.a, Iova(0x2000), DMA_LEN)?;
    holds(
        p,
        "remap-kept-half-lands",
        at(old, 0x2000),
        u64::from(DMA_LEN),
        3,
    )?;
    say(format_args!(
        "Blocked at once: the invalidation evicted the cached block, and the lower half still works."
    ));
    map(rig, d, MIB, new.start(), MIB)?;
    say(format_args!(
        "The upper half is mapped again, now to other RAM at {}.",
        new.start()
    ));
    dev_writes(p, &mut rig.a, Iova(0x18_0000), DMA_LEN)?;
    holds(
        p,
        "remap-lands-at-new-pa",
        at(new, 0x8_0000),
        u64::from(DMA_LEN),
        3,
    )?;
    holds(p, "remap-old-pa-untouched", at(old, MIB), MIB, 11)?;
    expect_no_faults(p, rig, "remap-no-new-faults")?;
    say(format_args!(
        "DMA to IOVA 0x180000 now lands in the new RAM; the old RAM is untouched."
    ));
    let _ = unmap(rig, d, 0, 2 * MIB)?;
    release(rig, rig.a.sid, d)?;
    free(p, old);
    free(p, new);
    Ok(Outcome::pass()
        .with("old_pa", old.start())
        .with("new_pa", new.start()))
}

/// Scenario 6: a rogue DMA overflows the event queue; the daemon keeps running, says it lost
/// records, and records a later fault correctly.
fn overflow_body(p: &mut Platform, rig: &mut Rig) -> Step<Outcome> {
    let target = alloc(p, 4 * KIB, 4 * KIB)?;
    fill(p, target.start(), 4 * KIB, 5);
    // 4 KiB at one record per 4 bytes: 1024 records into a 128-entry queue.
    rig.b
        .edu
        .dma_from_device(0, Iova(target.start().0), 4096, &p.clock)
        .map_err(|e| dma_error("rogue dma_from_device", e))?;
    holds(p, "overflow-rogue-blocked", target.start(), 4 * KIB, 5)?;
    let flood = drain(p, rig)?;
    check(
        "overflow-detected",
        flood.totals.lost_at_least >= 1 && flood.totals.delivered >= 1,
        Seen(&flood),
    )?;
    check(
        "overflow-records-are-b",
        flood.like_first == flood.totals.delivered
            && flood.first.is_some_and(|f| f.sid == rig.b.sid),
        Seen(&flood),
    )?;
    // A later, single fault from the other device comes through intact.
    rig.a
        .edu
        .dma_from_device(0, Iova(0x5000), 4, &p.clock)
        .map_err(|e| dma_error("later dma_from_device", e))?;
    let later = drain(p, rig)?;
    check(
        "overflow-later-fault-recorded",
        later.totals.delivered == 1
            && later.totals.lost_at_least == 0
            && is_fault(later.first, rig.a.sid, 0x5000, Direction::Write),
        Seen(&later),
    )?;
    free(p, target);
    Ok(Outcome::pass()
        .with("delivered", flood.totals.delivered)
        .with("lost_at_least", flood.totals.lost_at_least)
        .with("later_sid", rig.a.sid))
}

/// The same 4 KiB rogue DMA with the event queue the daemon sizes by default (2,048 records
/// within 64 KiB, from IDR1.EVENTQS): all 1,024 records are absorbed, none lost.
fn absorb_body(p: &mut Platform, rig: &mut Rig) -> Step<Outcome> {
    let target = alloc(p, 4 * KIB, 4 * KIB)?;
    fill(p, target.start(), 4 * KIB, 6);
    rig.b
        .edu
        .dma_from_device(0, Iova(target.start().0), 4096, &p.clock)
        .map_err(|e| dma_error("rogue dma_from_device", e))?;
    holds(p, "absorb-rogue-blocked", target.start(), 4 * KIB, 6)?;
    let flood = drain(p, rig)?;
    check(
        "absorb-every-record-delivered",
        flood.totals.delivered == 1024
            && flood.totals.lost_at_least == 0
            && flood.like_first == flood.totals.delivered,
        Seen(&flood),
    )?;
    free(p, target);
    Ok(Outcome::pass()
        .with("delivered", flood.totals.delivered)
        .with("lost_at_least", flood.totals.lost_at_least))
}

/// A bad command stops the SMMU's command queue; the driver reports it, recovers, and
/// invalidation still works afterwards (proved by DMA).
fn cmdq_error_body(p: &mut Platform, rig: &mut Rig) -> Step<Outcome> {
    let (smmu, mem) = rig.iommu.parts();
    // Opcode 0x7f is not a command (IHI 0070 §4.1): the SMMU stops with CERROR_ILL.
    let injected = smmu.submit_raw_for_fault_injection(mem, [0x7f, 0]);
    let recovered = matches!(
        injected,
        Err(SmmuError::Command {
            error: CommandErrorKind::Illegal,
            ..
        })
    );
    check(
        "cmdq-error-reported",
        recovered,
        format_args!("result={}", Show(&injected)),
    )?;
    // The queue works: a window, cached, then unmapped, must be blocked at once.
    let buf = alloc(p, 2 * MIB, 2 * MIB)?;
    let d = new_domain(rig)?;
    attach(rig, rig.a.sid, d)?;
    map(rig, d, 0, buf.start(), 2 * MIB)?;
    fill(p, at(buf, 0x1000), u64::from(DMA_LEN), 4);
    dev_reads(p, &mut rig.a, Iova(0x1000), DMA_LEN)?;
    dev_writes(p, &mut rig.a, Iova(0x4000), DMA_LEN)?;
    holds(
        p,
        "cmdq-error-window-lands",
        at(buf, 0x4000),
        u64::from(DMA_LEN),
        4,
    )?;
    let _ = unmap(rig, d, 0, 2 * MIB)?;
    fill(p, at(buf, 0x4000), 4 * KIB, 12);
    dev_writes(p, &mut rig.a, Iova(0x4000), DMA_LEN)?;
    holds(
        p,
        "cmdq-error-unmap-still-works",
        at(buf, 0x4000),
        4 * KIB,
        12,
    )?;
    expect_blocked(
        p,
        rig,
        "cmdq-error-unmap-recorded",
        rig.a.sid,
        0x4000,
        Direction::Write,
    )?;
    release(rig, rig.a.sid, d)?;
    free(p, buf);
    let stats = rig.iommu.smmu().stats();
    check(
        "cmdq-error-counted",
        stats.command_errors_recovered == 1,
        format_args!("recovered={}", stats.command_errors_recovered),
    )?;
    Ok(Outcome::pass().with("command_errors_recovered", stats.command_errors_recovered))
}

/// `Display` for a result.
struct Show<'a, T, E>(&'a Result<T, E>);

impl<T, E: fmt::Display> fmt::Display for Show<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(_) => f.write_str("ok"),
            Err(e) => write!(f, "\"{e}\""),
        }
    }
}

/// Scenario 1.
pub fn window(p: &mut Platform) -> Outcome {
    with_rig(p, IommuOptions::default(), window_body)
}

/// Scenario 2.
pub fn outside(p: &mut Platform) -> Outcome {
    with_rig(p, IommuOptions::default(), outside_body)
}

/// Scenario 3.
pub fn unclaimed(p: &mut Platform) -> Outcome {
    with_rig(p, IommuOptions::default(), unclaimed_body)
}

/// Scenario 4.
pub fn remap(p: &mut Platform) -> Outcome {
    with_rig(p, IommuOptions::default(), remap_body)
}

/// Scenario 6, with a 128-entry event queue.
pub fn overflow(p: &mut Platform) -> Outcome {
    with_rig(p, IommuOptions { evtq_log2: 7 }, overflow_body)
}

/// A 4 KiB rogue DMA into the default-sized event queue: nothing lost.
pub fn absorb(p: &mut Platform) -> Outcome {
    with_rig(p, IommuOptions::default(), absorb_body)
}

/// Command-queue error recovery.
pub fn cmdq_error(p: &mut Platform) -> Outcome {
    with_rig(p, IommuOptions::default(), cmdq_error_body)
}

/// The demonstration, in one boot and narrated: scenarios 1 to 4 on the bare IOMMU, then the
/// manager takes the IOMMU over and two VMMs program their VMs' windows through it.
pub fn demo(p: &mut Platform) -> Outcome {
    // The manager takes over later: its heap comes from the daemon pool before the IOMMU
    // takes the rest.
    if let Err(e) = smmuman_daemon::runtime::heap::ensure(p) {
        return Outcome::fail().with("reason", "heap").with("detail", e);
    }
    let mut rig = match rig(p, IommuOptions::default()) {
        Ok(r) => r,
        Err(o) => return o,
    };
    say(format_args!(
        "The SMMU is up. Global bypass is off, and every device on the PCI bus may only DMA through its StreamTable entry: none has a window yet, so all DMA is refused and recorded."
    ));
    let parts: [(&str, Body); 4] = [
        ("1. a window that works", window_body),
        ("2. just past the window", outside_body),
        ("3. a device nobody claimed", unclaimed_body),
        (
            "4. unmap and remap while the SMMU caches translations",
            remap_body,
        ),
    ];
    for (title, body) in parts {
        say(format_args!("--- {title} ---"));
        if let Err(o) = body(p, &mut rig) {
            iommu::print_stats(&rig.iommu);
            return o;
        }
    }
    iommu::print_stats(&rig.iommu);
    say(format_args!(
        "--- 5. the manager: two VMMs, each in its own execution context, program their VMs through the client library over message passing ---"
    ));
    let Rig { iommu, a, b } = rig;
    let manager = match smmuman_daemon::manager_task::over(p, iommu) {
        Ok(m) => m,
        Err(o) => return o,
    };
    match crate::vm_scenarios::two_vms(p, manager, a, b) {
        Ok(_) => {
            say(format_args!(
                "All DMA stayed inside what was granted, each VM saw only its own faults, and every refused access is on record."
            ));
            Outcome::pass().with("parts", parts.len() + 1)
        }
        Err(o) => o,
    }
}
