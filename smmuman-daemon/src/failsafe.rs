//! The safe state on every way out: once the SMMU's register base is known, every exit of
//! the daemon (a normal shutdown, a `FATAL` record, a refused start, a panic, an unexpected
//! exception; product and test image alike) leaves every SMMU the device tree lists
//! terminating all DMA. It is structural: `crate::runtime::exit` is the only way to end the run, and
//! it runs [`leave_safe`] before anything else.
//!
//! [`arm`] stores the frames as soon as the device tree is parsed. [`abort`] then sets
//! SMMU_GBPA.ABORT (with the GBPA.Update handshake, IHI 0070 §6.3.14) and SMMU_CR0 = 0
//! (SMMUEN and the queues off, waiting for SMMU_CR0ACK, §6.3.9/§6.3.10) on each, and keeps
//! what it read back. With SMMUEN = 0 the SMMU no longer reads STEs or page tables at all:
//! GBPA alone decides, so every window the daemon had granted is closed too. The abort
//! prints nothing: the panic and exception handlers call it first, before their report, so a
//! second failure while reporting still leaves the SMMUs aborting; entered again, it goes on
//! with the SMMUs it has not taken on yet. [`leave_safe`] is the abort, then the report (one
//! `FAILSAFE` record, `SMMU_BEFORE_ABORT` and `SMMU_ABORT` per SMMU) once, then the probe.
//!
//! This path takes no lock failing code could hold: it writes only through the console's
//! emergency path and reaches the SMMU through a fresh register handle (the code that held
//! the first one never runs again).
//!
//! ## The DMA probe (test scenarios only)
//!
//! `panic-after-bringup`, `fault-after-bringup`, `panic-while-reporting` and
//! `iommu-event-error` (`scenarios/failsafe_scenarios.rs`) register a [`ProbePlan`] before failing on
//! purpose, as does an unknown `scenario=` with `failsafe-probe=1`: the fail-safe then lets
//! an `edu`, which had a live identity window (or, for the unknown scenario, the SMMU as
//! QEMU resets it: bypass) and bus mastering, write a patterned buffer at IOVA = PA, and
//! checks the buffer is unchanged (`CHECK step=failsafe-dma-blocked`). With
//! `failsafe-probe=skip-abort-control` the plan asks to skip the abort, and the same DMA
//! lands (`CHECK step=failsafe-control-dma-lands`): the check can fail. Without a plan
//! (every product path) nothing but the abort runs, and the abort is never skipped.

use crate::bringup::iommu::{self, AbortRecord};
use crate::edu::Edu;
use crate::memory::{GuestMemory, PhysRange, RamWindow};
use crate::mmio::{Mmio, MmioRegion};
use crate::runtime::clock::GenericTimer;
use crate::runtime::console;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use iommu_core::{Bdf, Iova, PhysAddr};
use smmuv3::AbortState;

/// SMMU_CR0ACK (IHI 0070 §6.3.10), read before the abort for the record.
const SMMU_CR0ACK: usize = 0x24;
/// SMMU_GBPA (IHI 0070 §6.3.14), likewise.
const SMMU_GBPA: usize = 0x44;

/// Most SMMU frames remembered.
const MAX_FRAMES: usize = crate::bringup::refusal::MAX_ABORTED;

static BASES: [AtomicU64; MAX_FRAMES] = [const { AtomicU64::new(0) }; MAX_FRAMES];
static SIZES: [AtomicU64; MAX_FRAMES] = [const { AtomicU64::new(0) }; MAX_FRAMES];
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The DMA probe a test scenario asked for.
static PLAN: spin::Once<ProbePlan> = spin::Once::new();

/// Remembers the SMMU register frames the failure path must abort. Later calls replace the
/// list.
pub fn arm(frames: &[(PhysAddr, u64)]) {
    COUNT.store(0, Ordering::SeqCst);
    for (i, (base, size)) in frames.iter().take(MAX_FRAMES).enumerate() {
        BASES[i].store(base.0, Ordering::SeqCst);
        SIZES[i].store(*size, Ordering::SeqCst);
    }
    COUNT.store(frames.len().min(MAX_FRAMES), Ordering::SeqCst);
}

/// What the failure path's DMA probe does (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct ProbePlan {
    /// The `edu` that masters the bus.
    pub bdf: Bdf,
    /// Its BAR 0.
    pub edu_regs: PhysRange,
    /// The patterned buffer it writes, at IOVA = PA.
    pub target: PhysRange,
    /// Bytes written.
    pub len: u32,
    /// The pattern's seed.
    pub seed: u8,
    /// Control run: skip the abort, the DMA must land.
    pub skip_abort: bool,
}

#[cfg(feature = "scenarios")]
/// Registers the probe a test scenario wants run on its deliberate failure (once).
pub fn plan_probe(plan: ProbePlan) {
    PLAN.call_once(|| plan);
}

/// What the abort found and left on one SMMU, for the report.
#[derive(Clone, Copy)]
struct Aborted {
    gbpa_before: u32,
    cr0ack_before: u32,
    state: AbortState,
}

/// Index of the next SMMU [`abort`] takes on: a failure in the middle of the abort (a fault
/// on one SMMU's registers) continues with the next one when the path is entered again.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// What the abort left on each SMMU (written once per SMMU, before the report reads it).
static ABORTED: spin::Mutex<[Option<Aborted>; MAX_FRAMES]> = spin::Mutex::new([None; MAX_FRAMES]);
/// Set once the report started; set once the probe started.
static REPORTED: AtomicBool = AtomicBool::new(false);
static PROBED: AtomicBool = AtomicBool::new(false);

/// The abort alone, first thing on every failure and at every exit: every remembered SMMU
/// terminates all traffic (unless a control probe asks to skip it). Prints nothing, takes no
/// lock that failing code could hold (the record store is only locked here, one SMMU at a
/// time, with `try_lock`), and is safe to enter again: each SMMU is taken on at most once.
pub fn abort() {
    if PLAN.get().is_some_and(|p| p.skip_abort) {
        return;
    }
    let n = COUNT.load(Ordering::SeqCst);
    loop {
        let i = NEXT.fetch_add(1, Ordering::SeqCst);
        if i >= n {
            return;
        }
        let base = PhysAddr(BASES[i].load(Ordering::SeqCst));
        // SAFETY: `arm` stored an SMMUv3 register frame from the device tree, mapped as
        // device memory. The code that held the other handle failed or has finished and never
        // runs again, so this handle is the only one in use; it only lives for this call.
        let mut regs = unsafe { MmioRegion::new(base, SIZES[i].load(Ordering::SeqCst)) };
        let gbpa_before = regs.read32(SMMU_GBPA);
        let cr0ack_before = regs.read32(SMMU_CR0ACK);
        let state = iommu::abort_all_traffic(&mut regs);
        if let Some(mut done) = ABORTED.try_lock() {
            if let Some(slot) = done.get_mut(i) {
                *slot = Some(Aborted {
                    gbpa_before,
                    cr0ack_before,
                    state,
                });
            }
        }
    }
}

/// The fail-safe, on every way out of the daemon (`crate::runtime::exit`) and first on every failure:
/// [`abort`], then the report (`FAILSAFE`, and `SMMU_BEFORE_ABORT` / `SMMU_ABORT` per SMMU,
/// once), then the probe a test scenario planned (once). `trigger` names the way out
/// (`panic`, `exception`, `shutdown`, a `FATAL` reason).
pub fn leave_safe(trigger: &str) {
    abort();
    if !REPORTED.swap(true, Ordering::SeqCst) {
        report(trigger);
    }
    if let Some(plan) = PLAN.get().copied() {
        if !PROBED.swap(true, Ordering::SeqCst) {
            probe(&plan);
        }
    }
}

/// Prints what [`abort`] did.
fn report(trigger: &str) {
    let n = COUNT.load(Ordering::SeqCst);
    if PLAN.get().is_some_and(|p| p.skip_abort) {
        console::emergency(format_args!(
            "FAILSAFE trigger={trigger} smmus={n} abort=skipped detail=\"control run (failsafe-probe=skip-abort-control): the SMMU keeps translating\""
        ));
        return;
    }
    console::emergency(format_args!(
        "FAILSAFE trigger={trigger} smmus={n} abort=all"
    ));
    let done = ABORTED.try_lock().map(|d| *d);
    for (i, base) in BASES.iter().enumerate().take(n) {
        let base = PhysAddr(base.load(Ordering::SeqCst));
        match done.and_then(|d| d.get(i).copied().flatten()) {
            Some(a) => {
                console::emergency(format_args!(
                    "SMMU_BEFORE_ABORT base={base} gbpa={:#010x} cr0ack={:#010x}",
                    a.gbpa_before, a.cr0ack_before
                ));
                console::emergency(format_args!("{}", AbortRecord(base, &a.state)));
            }
            None => console::emergency(format_args!(
                "SMMU_ABORT base={base} aborting=0 detail=\"the abort of this SMMU did not complete\""
            )),
        }
    }
}

/// The DMA probe: the planned `edu` writes into the patterned buffer; one `CHECK` record.
fn probe(plan: &ProbePlan) {
    let step = if plan.skip_abort {
        "failsafe-control-dma-lands"
    } else {
        "failsafe-dma-blocked"
    };
    // SAFETY: the scenario that planned the probe took this edu's BAR 0 and failed; its
    // handle is never used again, so this one is the only one in use.
    let regs = unsafe { MmioRegion::new(plan.edu_regs.start(), plan.edu_regs.size()) };
    let mut edu = match Edu::new(regs) {
        Ok(e) => e,
        Err(e) => {
            console::emergency(format_args!("CHECK step={step} ok=0 reason=\"edu: {e}\""));
            return;
        }
    };
    let dma = edu.dma_from_device(
        0,
        Iova(plan.target.start().0),
        plan.len,
        &GenericTimer::new(),
    );
    // SAFETY: the target is a guest-pool buffer the failed scenario allocated and filled and
    // never touches again; RAM is identity-mapped.
    let window = unsafe { RamWindow::identity(&[plan.target]) };
    let landed = match GuestMemory::new(window) {
        Ok(mem) => mem
            .check_pattern(plan.target.start(), plan.target.size(), plan.seed)
            .is_some(),
        Err(e) => {
            console::emergency(format_args!(
                "CHECK step={step} ok=0 reason=\"memory: {e}\""
            ));
            return;
        }
    };
    let ok = landed == plan.skip_abort && dma.is_ok();
    console::emergency(format_args!(
        "CHECK step={step} ok={} bdf={} target={} len={} landed={} dma={}",
        u8::from(ok),
        plan.bdf,
        plan.target.start(),
        plan.len,
        u8::from(landed),
        if dma.is_ok() { "done" } else { "error" }
    ));
}
