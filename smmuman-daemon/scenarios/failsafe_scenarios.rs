//! Test scenarios for the failure path ([`smmuman_daemon::failsafe`]): the SMMU and the manager come
//! up, the first `edu` gets a live identity window (IOVA = PA, 2 MiB) and bus mastering, its
//! DMA is shown to land there, and then the daemon fails on purpose: a panic
//! (`panic-after-bringup`) or a load from an unmapped address, i.e. an unexpected synchronous
//! exception (`fault-after-bringup`). Before failing each registers a DMA probe, which the
//! failure path runs after the abort: the same `edu` writes a patterned buffer inside its
//! window, and the buffer must stay unchanged. `failsafe-probe=skip-abort-control` makes the
//! failure path skip the abort instead, and the same DMA must land.
//!
//! The same probe shows the other ways out: a panic whose report panics again
//! (`panic-while-reporting`: the abort came first), a drain of the event queue the SMMU
//! refuses in the manager loop (`iommu-event-error`, injected: `FATAL reason=iommu-event`
//! ends the run through the fail-safe), and an unknown `scenario=` given with
//! `failsafe-probe=1` ([`arm_bypass_probe`]: the SMMU as QEMU resets it, which lets DMA
//! through, until the exit's fail-safe aborts it).

// A failing step returns the `RESULT` record it becomes (a fixed-size buffer, no heap).
#![allow(clippy::result_large_err)]

use iommu_core::{Access, IommuBackend, Iova, PhysAddr};
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::failsafe::{self, ProbePlan};
use smmuman_daemon::manager_task;
use smmuman_daemon::memory::PhysRange;
use smmuman_daemon::report::Outcome;
use smmuman_daemon::runtime::console;

/// The window: one 2 MiB block.
const WINDOW: u64 = 2 << 20;
/// Bytes per DMA.
const LEN: u32 = 64;
/// Pattern of what the device copies (first into its buffer, later into the target).
const SEED_SOURCE: u8 = 0x21;
/// Pattern of the probe's target.
const SEED_TARGET: u8 = 0x5e;

fn fail(reason: &str) -> Outcome {
    Outcome::fail().with("reason", reason)
}

fn with(reason: &str, detail: impl core::fmt::Display) -> Outcome {
    Outcome::fail()
        .with("reason", reason)
        .with("detail", detail)
}

/// `failsafe-probe=`: whether the control skips the abort.
fn skip_abort(p: &Platform) -> Result<bool, Outcome> {
    match p.args.get("failsafe-probe") {
        None | Some("1") => Ok(false),
        Some("skip-abort-control") => Ok(true),
        Some(_) => Err(fail("failsafe-probe takes 1 or skip-abort-control")),
    }
}

/// Everything up to the deliberate failure (see the module docs); the manager, still
/// serving, is returned.
fn arm_probe(p: &mut Platform) -> Result<manager_task::Mgr, Outcome> {
    let skip_abort = skip_abort(p)?;
    let mut m = manager_task::start(p, crate::options::iommu_options(p))?;
    let Some(&(bdf, sid)) = crate::clients::edus(p).first() else {
        return Err(fail("no edu behind the SMMU"));
    };
    let bar = p
        .pci
        .function(bdf)
        .and_then(|f| f.bars[0])
        .and_then(|b| b.cpu_address.and_then(|a| PhysRange::new(a, b.size)))
        .ok_or_else(|| fail("edu without BAR 0"))?;
    let mut edu = p.take_edu(bdf).map_err(|e| with("edu unavailable", e))?;
    let window = p
        .guest_memory
        .alloc(WINDOW, WINDOW)
        .map_err(|e| with("no guest memory", e))?;
    let base = window.start();
    let backend = m.backend_mut();
    let domain = backend
        .create_domain()
        .map_err(|e| with("create_domain", e))?;
    backend
        .map(
            domain,
            Iova(base.0),
            base,
            WINDOW,
            Access::READ | Access::WRITE,
        )
        .map_err(|e| with("map", e))?;
    backend.attach(sid, domain).map_err(|e| with("attach", e))?;
    console::line(format_args!(
        "FAILSAFE_WINDOW bdf={bdf} sid={sid} domain={domain} iova={} pa={base} len={WINDOW:#x} bus_master={}",
        Iova(base.0),
        u8::from(p.pci.is_bus_master(bdf))
    ));

    // The window is live: the device reads one buffer and writes another, and it lands.
    let source = base;
    let copy = PhysAddr(base.0 + 0x1000);
    let target = PhysAddr(base.0 + 0x2000);
    p.guest_memory
        .fill_pattern(source, u64::from(LEN), SEED_SOURCE);
    p.guest_memory.fill_pattern(copy, 0x1000, 0);
    edu.dma_to_device(Iova(source.0), 0, LEN, &p.clock)
        .map_err(|e| with("edu DMA", e))?;
    edu.dma_from_device(0, Iova(copy.0), LEN, &p.clock)
        .map_err(|e| with("edu DMA", e))?;
    let lands = p
        .guest_memory
        .check_pattern(copy, u64::from(LEN), SEED_SOURCE)
        .is_none();
    console::line(format_args!(
        "CHECK step=failsafe-window-lands ok={} bdf={bdf} target={copy}",
        u8::from(lands)
    ));
    if !lands {
        return Err(fail(
            "the window's DMA did not land: nothing to compare against",
        ));
    }

    let target_range = PhysRange::new(target, 0x1000).ok_or_else(|| fail("target range"))?;
    p.guest_memory
        .fill_pattern(target, target_range.size(), SEED_TARGET);
    failsafe::plan_probe(ProbePlan {
        bdf,
        edu_regs: bar,
        target: target_range,
        len: LEN,
        seed: SEED_TARGET,
        skip_abort,
    });
    console::line(format_args!(
        "FAILSAFE_PROBE bdf={bdf} target={target} len={LEN} mode={}",
        if skip_abort {
            "skip-abort-control"
        } else {
            "abort"
        }
    ));
    Ok(m)
}

/// Brings everything up, then panics. The manager (and with it the backend) is left as it
/// is: the daemon fails with the SMMU translating and the window live.
pub fn panic_after_bringup(p: &mut Platform) -> Outcome {
    match arm_probe(p) {
        Ok(m) => core::mem::forget(m),
        Err(o) => return o,
    }
    panic!("panic-after-bringup: failing on purpose with the SMMU up and a window live")
}

/// A panic message whose formatting panics: the panic handler's report fails.
struct PanicsWhenShown;

impl core::fmt::Display for PanicsWhenShown {
    fn fmt(&self, _: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        panic!("panic-while-reporting: the report of the first panic panicked")
    }
}

/// Brings everything up, then panics with a message whose formatting panics again: the
/// second failure comes while the first is being reported, so only an abort made before the
/// report leaves the SMMU aborting.
pub fn panic_while_reporting(p: &mut Platform) -> Outcome {
    match arm_probe(p) {
        Ok(m) => core::mem::forget(m),
        Err(o) => return o,
    }
    panic!("{}", PanicsWhenShown)
}

/// Brings everything up, then has the manager loop's next drain of the event queue fail as
/// the SMMU's would in Service Failure Mode (injected: QEMU never fails it). The loop must
/// not keep serving: `FATAL reason=iommu-event`, the fail-safe, the exit.
pub fn iommu_event_error(p: &mut Platform) -> Outcome {
    let mut m = match arm_probe(p) {
        Ok(m) => m,
        Err(o) => return o,
    };
    manager_task::INJECT_EVENT_ERROR.store(true, core::sync::atomic::Ordering::SeqCst);
    manager_task::serve_tasks(p, Some(&mut m), &mut [], 4, &mut |_, _| false);
    core::mem::forget(m);
    fail("the manager kept serving after the SMMU refused the drain")
}

/// For a run that names no known scenario: with `failsafe-probe=1|skip-abort-control`, the
/// first `edu` gets bus mastering with the SMMU as QEMU resets it (SMMUEN = 0, GBPA.ABORT =
/// 0: bypass) and a patterned target at IOVA = PA, and the exit's fail-safe runs the probe.
/// Without the abort (the control) the DMA lands.
pub fn arm_bypass_probe(p: &mut Platform) {
    let skip_abort = match (p.args.get("failsafe-probe"), skip_abort(p)) {
        (None, _) | (_, Err(_)) => return,
        (Some(_), Ok(skip)) => skip,
    };
    let Some(bdf) = p.edus().next().map(|f| f.bdf) else {
        return;
    };
    let Some(bar) = p
        .pci
        .function(bdf)
        .and_then(|f| f.bars[0])
        .and_then(|b| b.cpu_address.and_then(|a| PhysRange::new(a, b.size)))
    else {
        return;
    };
    let Ok(target) = p.guest_memory.alloc(0x1000, 0x1000) else {
        return;
    };
    p.guest_memory
        .fill_pattern(target.start(), target.size(), SEED_TARGET);
    if p.enable_bus_master(bdf).is_err() {
        return;
    }
    failsafe::plan_probe(ProbePlan {
        bdf,
        edu_regs: bar,
        target,
        len: LEN,
        seed: SEED_TARGET,
        skip_abort,
    });
    console::line(format_args!(
        "FAILSAFE_PROBE bdf={bdf} target={} len={LEN} mode={} smmu=reset",
        target.start(),
        if skip_abort {
            "skip-abort-control"
        } else {
            "abort"
        }
    ));
}

/// Brings everything up, then loads from an address the MMU does not map (an unexpected
/// synchronous exception: a data abort at EL2).
pub fn fault_after_bringup(p: &mut Platform) -> Outcome {
    match arm_probe(p) {
        Ok(m) => core::mem::forget(m),
        Err(o) => return o,
    }
    let Some(target) = smmuman_daemon::hyp::mmu::unmapped_address() else {
        return fail("the MMU is off: no unmapped address");
    };
    console::line(format_args!("SELFTEST fault_address={target:#018x}"));
    let value: u64;
    // SAFETY: nothing is mapped at `target`, so the load faults before it reads anything, and
    // the exception handler ends the run.
    unsafe {
        core::arch::asm!("ldr {v}, [{a}]", v = out(reg) value, a = in(reg) target, options(nostack, readonly));
    }
    fail("the load from an unmapped address did not fault").with("value", value)
}
