//! The safe state on every failure: once the SMMU's register base is known, a panic or an
//! unexpected exception leaves every SMMU the device tree lists terminating all DMA before
//! the daemon exits, as a refused start does (`refusal.rs`).
//!
//! [`arm`] stores the frames as soon as the device tree is parsed. [`leave_safe`], called by
//! the panic handler and the exception handler, then sets SMMU_GBPA.ABORT (with the
//! GBPA.Update handshake, IHI 0070 §6.3.14) and SMMU_CR0 = 0 (SMMUEN and the queues off,
//! waiting for SMMU_CR0ACK, §6.3.9/§6.3.10) on each, reads both back and prints one
//! `SMMU_ABORT` record per SMMU. With SMMUEN = 0 the SMMU no longer reads STEs or page tables
//! at all: GBPA alone decides, so every window the failing daemon had granted is closed too.
//!
//! This path takes no lock: the failing code may hold the console's or anything else's. It
//! writes only through the console's emergency path and reaches the SMMU through a fresh
//! register handle (the code that held the first one never runs again).
//!
//! ## The DMA probe (test scenarios only)
//!
//! `panic-after-bringup` and `fault-after-bringup` (`failsafe_scenarios.rs`) register a
//! [`ProbePlan`] before failing on purpose: the failure path then lets an `edu`, which had a
//! live identity window and bus mastering, write a patterned buffer inside that window at
//! IOVA = PA, and checks the buffer is unchanged (`CHECK step=failsafe-dma-blocked`). With
//! `failsafe-probe=skip-abort-control` the plan asks to skip the abort, and the same DMA lands
//! through the still-live window (`CHECK step=failsafe-control-dma-lands`): the check can
//! fail. Without a plan (every product path) nothing but the abort runs, and the abort is
//! never skipped.

use crate::clock::GenericTimer;
use crate::console;
use crate::iommu::{self, AbortRecord};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use iommu_core::{Bdf, Iova, PhysAddr};
use smmuman_daemon::edu::Edu;
use smmuman_daemon::memory::{GuestMemory, PhysRange, RamWindow};
use smmuman_daemon::mmio::{Mmio, MmioRegion};

/// SMMU_CR0ACK (IHI 0070 §6.3.10), read before the abort for the record.
const SMMU_CR0ACK: usize = 0x24;
/// SMMU_GBPA (IHI 0070 §6.3.14), likewise.
const SMMU_GBPA: usize = 0x44;

/// Most SMMU frames remembered.
const MAX_FRAMES: usize = crate::refusal::MAX_ABORTED;

static BASES: [AtomicU64; MAX_FRAMES] = [const { AtomicU64::new(0) }; MAX_FRAMES];
static SIZES: [AtomicU64; MAX_FRAMES] = [const { AtomicU64::new(0) }; MAX_FRAMES];
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Set once the failure path started: a failure inside it does not start it again.
static LEAVING: AtomicBool = AtomicBool::new(false);
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

/// Makes every remembered SMMU terminate all traffic (unless a control probe asks to skip
/// it), printing `FAILSAFE` and one `SMMU_ABORT` per SMMU, then runs the probe if a scenario
/// planned one. `trigger` names the failure (`panic`, `exception`).
pub fn leave_safe(trigger: &str) {
    if LEAVING.swap(true, Ordering::SeqCst) {
        return;
    }
    let plan = PLAN.get().copied();
    let n = COUNT.load(Ordering::SeqCst);
    if plan.is_some_and(|p| p.skip_abort) {
        console::emergency(format_args!(
            "FAILSAFE trigger={trigger} smmus={n} abort=skipped detail=\"control run (failsafe-probe=skip-abort-control): the SMMU keeps translating\""
        ));
    } else {
        console::emergency(format_args!(
            "FAILSAFE trigger={trigger} smmus={n} abort=all"
        ));
        for i in 0..n {
            let base = PhysAddr(BASES[i].load(Ordering::SeqCst));
            // SAFETY: `arm` stored an SMMUv3 register frame from the device tree, mapped as
            // device memory. The code that held the other handle failed and never runs again,
            // so this handle is the only one in use; it only lives for this call.
            let mut regs = unsafe { MmioRegion::new(base, SIZES[i].load(Ordering::SeqCst)) };
            console::emergency(format_args!(
                "SMMU_BEFORE_ABORT base={base} gbpa={:#010x} cr0ack={:#010x}",
                regs.read32(SMMU_GBPA),
                regs.read32(SMMU_CR0ACK)
            ));
            let state = iommu::abort_all_traffic(&mut regs);
            console::emergency(format_args!("{}", AbortRecord(base, &state)));
        }
    }
    if let Some(plan) = plan {
        probe(&plan);
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
