//! Interrupts at EL2: the GICv3 (distributor, this PE's redistributor, the ICC_* CPU
//! interface) and the SMMU's wired `eventq` and `gerror` lines.
//!
//! * [`init`] (at boot, after the MMU): GICD_CTLR with affinity routing and Group 1
//!   (`crate::gic`), this PE's redistributor woken, HCR_EL2.IMO = 1 so that physical
//!   IRQs are taken to EL2 (Arm ARM D1.3.4; with IMO = 0 they would target EL1 and stay
//!   masked at EL2), ICC_SRE_EL2.SRE (IHI 0069 §12.7.8), ICC_PMR_EL1 = 0xff (§12.2.19),
//!   ICC_BPR1_EL1 = 0 (§12.2.2), ICC_IGRPEN1_EL1 = 1 (§12.2.13). PSTATE.I stays set.
//! * The EL2 physical timer's PPI (INTID 26) is enabled in Group 1: it ends a guest's time
//!   slice (`hyp/world_switch.rs`).
//! * [`route_smmu`] (at SMMU bring-up): each line's SPI as the device tree describes it (edge
//!   or level), Group 1, priority [`PRIORITY`], routed to this PE, enabled.
//! * The IRQ vector calls `handle_irq`: acknowledge (ICC_IAR1_EL1, §12.2.10), count, set
//!   the "SMMU events pending" flag, end (ICC_EOIR1_EL1, §12.2.7; EOImode 0: priority drop and
//!   deactivation in one write).
//! * [`window`]: the manager loop's only point where PSTATE.I is clear. IRQs are taken there
//!   and nowhere else, so the handler never interrupts code holding a lock; the manager then
//!   drains the event queue when [`take_smmu_pending`] says so, and also every
//!   [`POLL_BACKSTOP`] passes in case an interrupt is lost (a slow poll as a backstop).

use crate::board::{BoardInfo, Irq, SmmuIrqs};
use crate::gic::{self, Distributor, GicError};
use crate::memory::PhysRange;
use crate::mmio::MmioRegion;
use crate::runtime::console;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Priority of the SMMU's interrupts (lower is more urgent; any value below the PMR passes).
pub const PRIORITY: u8 = 0x80;
/// With interrupts on, the manager also drains every this many passes without one.
pub const POLL_BACKSTOP: u32 = 64;
/// Register reads before a GIC wait gives up.
const POLLS: u32 = 100_000;

/// The distributor's frame, once [`init`] succeeded (0: no GIC, the daemon polls).
static GICD_BASE: AtomicU64 = AtomicU64::new(0);
static GICD_SIZE: AtomicU64 = AtomicU64::new(0);
/// INTIDs of the SMMU's lines (0: not routed).
static EVENTQ_INTID: AtomicU32 = AtomicU32::new(0);
static GERROR_INTID: AtomicU32 = AtomicU32::new(0);
/// Whether SMMU_IRQ_CTRL has the lines enabled (the manager then relies on the flag).
static SMMU_IRQS_ON: AtomicBool = AtomicBool::new(false);
/// Set by the handler, taken by the manager loop.
static SMMU_PENDING: AtomicBool = AtomicBool::new(false);

/// What the interrupt path has done so far (the product reads only the interrupt counts).
#[cfg_attr(not(feature = "scenarios"), allow(dead_code))]
#[derive(Clone, Copy, Debug, Default)]
pub struct IrqStats {
    /// `eventq` interrupts acknowledged.
    pub eventq: u64,
    /// `gerror` interrupts acknowledged.
    pub gerror: u64,
    /// Other INTIDs acknowledged (and ended).
    pub other: u64,
    /// Drains started by the flag, and the records they found.
    pub flag_drains: u64,
    /// Records drained by the flag path.
    pub flag_records: u64,
    /// Drains by polling (interrupts off, or the backstop), and their records.
    pub poll_drains: u64,
    /// Records drained by polling.
    pub poll_records: u64,
}

static EVENTQ_COUNT: AtomicU64 = AtomicU64::new(0);
static GERROR_COUNT: AtomicU64 = AtomicU64::new(0);
static OTHER_COUNT: AtomicU64 = AtomicU64::new(0);
static FLAG_DRAINS: AtomicU64 = AtomicU64::new(0);
static FLAG_RECORDS: AtomicU64 = AtomicU64::new(0);
static POLL_DRAINS: AtomicU64 = AtomicU64::new(0);
static POLL_RECORDS: AtomicU64 = AtomicU64::new(0);
static PASSES: AtomicU32 = AtomicU32::new(0);

/// The counters.
pub fn stats() -> IrqStats {
    let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
    IrqStats {
        eventq: l(&EVENTQ_COUNT),
        gerror: l(&GERROR_COUNT),
        other: l(&OTHER_COUNT),
        flag_drains: l(&FLAG_DRAINS),
        flag_records: l(&FLAG_RECORDS),
        poll_drains: l(&POLL_DRAINS),
        poll_records: l(&POLL_RECORDS),
    }
}

fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 (Arm ARM D19.2.99) has no side effect.
    unsafe { core::arch::asm!("mrs {v}, mpidr_el1", v = out(reg) v, options(nomem, nostack)) };
    v
}

fn distributor() -> Option<Distributor<MmioRegion>> {
    let base = GICD_BASE.load(Ordering::SeqCst);
    if base == 0 {
        return None;
    }
    // SAFETY: `init` stored the distributor's frame from the device tree, mapped as device
    // memory. Only this module touches it, on one CPU, from code that does not interleave
    // (the IRQ handler uses the CPU interface, not the distributor).
    let regs =
        unsafe { MmioRegion::new(iommu_core::PhysAddr(base), GICD_SIZE.load(Ordering::SeqCst)) };
    Distributor::new(regs, POLLS).ok()
}

/// Brings the GIC up for this PE (see the module docs) and prints one `GIC` record; without a
/// GICv3 in the device tree, or when it does not answer, the daemon polls (`GIC` says why).
pub fn init(board: &BoardInfo<'_>) {
    let Some(node) = board.gic else {
        console::line(format_args!(
            "GIC none detail=\"no arm,gic-v3 node: the SMMU is polled\""
        ));
        return;
    };
    match bring_up(node.dist, node.redist) {
        Ok((ctlr, rd)) => {
            GICD_SIZE.store(node.dist.size(), Ordering::SeqCst);
            GICD_BASE.store(node.dist.start().0, Ordering::SeqCst);
            console::line(format_args!(
                "GIC v3 dist={} redist={} gicd_ctlr={ctlr:#x} rd_offset={rd:#x} mpidr={:#x}",
                node.dist,
                node.redist,
                mpidr()
            ));
        }
        Err(e) => console::line(format_args!(
            "GIC error detail=\"{e}\" (the SMMU is polled)"
        )),
    }
}

fn bring_up(dist: PhysRange, redist: PhysRange) -> Result<(u32, usize), GicError> {
    // SAFETY: the device tree's GICv3 distributor frame, device memory; this is the only
    // handle while `init` runs.
    let regs = unsafe { MmioRegion::new(dist.start(), dist.size()) };
    let mut d = Distributor::new(regs, POLLS)?;
    let ctlr = d.enable()?;
    // SAFETY: the device tree's redistributor region, device memory; only `init` touches it.
    let mut rd_regs = unsafe { MmioRegion::new(redist.start(), redist.size()) };
    let rd = gic::wake_redistributor(&mut rd_regs, redist.size(), mpidr(), POLLS)?;
    // The EL2 physical timer ends a guest's time slice (`hyp/world_switch.rs`): its PPI must reach EL2.
    gic::enable_ppi(&mut rd_regs, rd, gic::INTID_HYP_TIMER, PRIORITY)?;
    // SAFETY: HCR_EL2.IMO (bit 4) routes physical IRQs to EL2 (Arm ARM D19.2.49); nothing
    // runs at EL1. ICC_SRE_EL2 enables the system-register CPU interface at EL2, then the
    // priority mask, binary point and Group 1 enable (IHI 0069 §12.7.8, §12.2.19, §12.2.2,
    // §12.2.13). PSTATE.I stays set: no interrupt is taken until `window`.
    unsafe {
        core::arch::asm!(
            "mrs {t}, hcr_el2",
            "orr {t}, {t}, #(1 << 4)",
            "msr hcr_el2, {t}",
            "msr icc_sre_el2, {sre}",
            "isb",
            "msr icc_pmr_el1, {pmr}",
            "msr icc_bpr1_el1, xzr",
            "msr icc_igrpen1_el1, {one}",
            "isb",
            t = out(reg) _,
            sre = in(reg) gic::ICC_SRE_EL2_VALUE,
            pmr = in(reg) gic::ICC_PMR_ALL,
            one = in(reg) 1u64,
            options(nostack),
        );
    }
    Ok((ctlr, rd))
}

fn route(d: &mut Distributor<MmioRegion>, irq: Option<Irq>) -> Result<u32, GicError> {
    match irq {
        Some(i) => {
            d.configure_spi(i.intid, i.trigger, PRIORITY, mpidr())?;
            Ok(i.intid)
        }
        None => Ok(0),
    }
}

/// Routes the SMMU's `eventq` and `gerror` SPIs to this PE (device-tree trigger, Group 1,
/// [`PRIORITY`]). Returns whether both are routed (`false` without a GIC or an `eventq`
/// line: the daemon then polls).
///
/// # Errors
/// What the distributor refused.
pub fn route_smmu(irqs: &SmmuIrqs) -> Result<bool, GicError> {
    let Some(mut d) = distributor() else {
        return Ok(false);
    };
    if irqs.eventq.is_none() {
        return Ok(false);
    }
    EVENTQ_INTID.store(route(&mut d, irqs.eventq)?, Ordering::SeqCst);
    GERROR_INTID.store(route(&mut d, irqs.gerror)?, Ordering::SeqCst);
    Ok(true)
}

#[cfg(feature = "scenarios")]
/// Whether the GIC holds the SMMU's `eventq` interrupt pending (GICD_ISPENDR), `None` when it
/// is not routed.
pub fn smmu_eventq_pending() -> Option<bool> {
    let intid = EVENTQ_INTID.load(Ordering::SeqCst);
    let d = distributor()?;
    (intid != 0).then(|| d.is_pending(intid))
}

/// Records that SMMU_IRQ_CTRL now has the lines on (or off): with them on, the manager drains
/// on the flag plus the slow backstop; off, on every pass.
pub fn set_smmu_irqs_on(on: bool) {
    SMMU_IRQS_ON.store(on, Ordering::SeqCst);
}

/// Whether the SMMU's interrupts are in use.
pub fn smmu_irqs_on() -> bool {
    SMMU_IRQS_ON.load(Ordering::SeqCst)
}

/// Lets pending IRQs be taken, then masks them again: the manager loop's only interrupt
/// window (see the module docs).
pub fn window() {
    if GICD_BASE.load(Ordering::Relaxed) == 0 {
        return;
    }
    // SAFETY: clearing and setting PSTATE.I (Arm ARM C5.2.4 DAIFClr/DAIFSet). Between the
    // two, a pending IRQ is taken to the vector, which saves and restores every register the
    // interrupted code may hold; the ISB makes the unmask take effect before it is undone.
    unsafe {
        core::arch::asm!(
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            options(nostack)
        )
    };
}

/// Whether the handler saw an SMMU interrupt since the last call (and clears the flag).
pub fn take_smmu_pending() -> bool {
    SMMU_PENDING.swap(false, Ordering::SeqCst)
}

/// Whether the slow backstop poll is due on this pass (with interrupts on).
pub fn backstop_due() -> bool {
    PASSES.fetch_add(1, Ordering::SeqCst) % POLL_BACKSTOP == POLL_BACKSTOP - 1
}

/// Counts one drain of `records` records, by the flag (`true`) or by polling.
pub fn count_drain(by_flag: bool, records: u64) {
    let (drains, recs) = if by_flag {
        (&FLAG_DRAINS, &FLAG_RECORDS)
    } else {
        (&POLL_DRAINS, &POLL_RECORDS)
    };
    drains.fetch_add(1, Ordering::SeqCst);
    recs.fetch_add(records, Ordering::SeqCst);
}

/// The IRQ handler (called by the vector with every caller-saved register saved): acknowledge
/// each pending Group 1 interrupt, count it, flag SMMU events, end it.
#[unsafe(no_mangle)]
extern "C" fn handle_irq() {
    let eventq = EVENTQ_INTID.load(Ordering::Relaxed);
    let gerror = GERROR_INTID.load(Ordering::Relaxed);
    loop {
        let iar: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges the highest-priority pending Group 1
        // interrupt (IHI 0069 §12.2.10); the handler ends it below.
        unsafe { core::arch::asm!("mrs {v}, icc_iar1_el1", v = out(reg) iar, options(nostack)) };
        let intid = (iar & 0xff_ffff) as u32;
        if !gic::is_real_intid(intid) {
            break;
        }
        if intid == eventq && eventq != 0 {
            EVENTQ_COUNT.fetch_add(1, Ordering::SeqCst);
            SMMU_PENDING.store(true, Ordering::SeqCst);
        } else if intid == gerror && gerror != 0 {
            GERROR_COUNT.fetch_add(1, Ordering::SeqCst);
            SMMU_PENDING.store(true, Ordering::SeqCst);
        } else if intid == gic::INTID_HYP_TIMER {
            // A guest's time slice ended while the host had interrupts open (the vCPU exit
            // normally stops the timer first): stop it, or the level-sensitive PPI would fire
            // again at once.
            crate::hyp::world_switch::stop_slice_timer();
            OTHER_COUNT.fetch_add(1, Ordering::SeqCst);
        } else {
            OTHER_COUNT.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: writing the acknowledged INTID to ICC_EOIR1_EL1 drops its priority and
        // deactivates it (EOImode 0, IHI 0069 §12.2.7).
        unsafe { core::arch::asm!("msr icc_eoir1_el1, {v}", v = in(reg) iar, options(nostack)) };
    }
}
