//! The fail-safe's DMA probe (test scenarios only): shows by a real `edu` DMA that the
//! fail-safe ([`crate::failsafe`]) leaves the VT-d unit blocking.
//!
//! A scenario plans the probe before it ends on purpose; [`crate::failsafe::leave_safe`] runs
//! it after the block and its report. The planned `edu` keeps bus mastering until then (so
//! only the unit can stop its DMA), writes its buffer (a pattern it loaded while its DMA
//! still landed) over a patterned target at IOVA = PA, and the probe checks the target
//! (`CHECK step=failsafe-dma-blocked ... landed=0 recorded=1 reason=0x01`: unchanged, and the
//! unit recorded the write with edu's source-id, the target's page and reason 0x1, root entry
//! not present). With `failsafe-probe=skip-block-control` the plan asks the fail-safe to skip
//! the block, and the same DMA lands (`CHECK step=failsafe-control-dma-lands ... landed=1`).
//!
//! * [`arm_window`] (`exit-after-bringup`, `fatal-after-bringup`, `panic-after-bringup`,
//!   `fault-after-bringup`, `queue-error-after-bringup`): the unit is up and edu has a live 2 MiB identity window through
//!   the backend, its DMA shown to land there first (`CHECK step=failsafe-window-lands`).
//! * [`arm_reset`] (an unknown `scenario=` with `failsafe-probe=1|skip-block-control`): a start
//!   refused before bring-up; the unit is as QEMU resets it, translation off, and edu's DMA
//!   lands untranslated until the exit's fail-safe blocks the unit.

// A failing step returns the `RESULT` record it becomes (a fixed-size buffer, no heap).
#![allow(clippy::result_large_err)]

use crate::scenarios::{check, vtd_error, Rig, Step, DMA_LEN};
use crate::{console, failsafe, Machine};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use iommu_core::{Access, Bdf, Direction, IommuBackend, Iova, PhysAddr};
use smmuman_daemon::bootargs::BootArgs;
use smmuman_daemon::edu::Edu;
use smmuman_daemon::mmio::MmioRegion;
use smmuman_daemon::report::Outcome;

/// What edu's buffer holds (loaded from a source page while its DMA still lands).
const SOURCE_BYTE: u8 = 0x3c;
/// What the probe's target holds before the probe.
const TARGET_BYTE: u8 = 0xe7;

/// What the probe does.
#[derive(Clone, Copy)]
struct Plan {
    bdf: Bdf,
    /// edu's BAR 0.
    bar0: PhysAddr,
    /// The HPET's registers (the probe's clock).
    hpet: PhysAddr,
    /// The target page (IOVA = PA).
    target: PhysAddr,
    /// The unit whose fault records the probe reads.
    unit: PhysAddr,
    /// The control: the fail-safe skips the block.
    skip_block: bool,
}

static PLAN: spin::Once<Plan> = spin::Once::new();
static PROBED: AtomicBool = AtomicBool::new(false);

/// Whether a probe is planned.
pub fn planned() -> bool {
    PLAN.get().is_some()
}

/// Whether the control asks the fail-safe to skip the block.
pub fn skips_block() -> bool {
    PLAN.get().is_some_and(|p| p.skip_block)
}

/// Whether the function with requester id `rid` must keep bus mastering (the probe has not
/// run yet).
pub fn keeps_master(rid: u64) -> bool {
    PLAN.get()
        .is_some_and(|p| u64::from(p.bdf.rid()) == rid && !PROBED.load(Ordering::SeqCst))
}

/// `failsafe-probe=`: `None` when absent, else whether the control skips the block.
fn mode(args: &BootArgs<'_>) -> Result<Option<bool>, Outcome> {
    match args.get("failsafe-probe") {
        None => Ok(None),
        Some("1") => Ok(Some(false)),
        Some("skip-block-control") => Ok(Some(true)),
        Some(_) => {
            Err(Outcome::fail().with("reason", "failsafe-probe takes 1 or skip-block-control"))
        }
    }
}

fn plan(p: Plan) {
    PLAN.call_once(|| p);
    console::line(format_args!(
        "FAILSAFE_PROBE bdf={} target={} len={DMA_LEN} mode={}",
        p.bdf,
        p.target,
        if p.skip_block {
            "skip-block-control"
        } else {
            "block"
        }
    ));
}

/// For the scenarios that end on purpose after bring-up: edu 0 gets a live identity window
/// (2 MiB of host RAM, through the backend), its DMA is shown to land there, and the probe is
/// planned on a patterned page inside it.
pub fn arm_window(r: &mut Rig<'_>, bar0: PhysAddr, hpet: PhysAddr, args: &BootArgs<'_>) -> Step {
    let skip_block = mode(args)?.unwrap_or(false);
    let (bdf, sid) = r.edu0()?;
    let ram = r
        .ram
        .take(1)
        .ok_or_else(|| Outcome::fail().with("reason", "no host RAM"))?;
    let (source, copy, target) = (ram.start.0, ram.start.0 + 0x1000, ram.start.0 + 0x2000);
    r.ram.fill(PhysAddr(source), 4096, SOURCE_BYTE);
    r.ram.fill(PhysAddr(copy), 4096, 0);
    r.ram.fill(PhysAddr(target), 4096, TARGET_BYTE);
    let b = r.backend()?;
    let domain = b
        .create_domain()
        .map_err(|e| vtd_error("create_domain", e))?;
    b.map(domain, Iova(source), ram.start, ram.len, Access::RW)
        .map_err(|e| vtd_error("map", e))?;
    b.attach(sid, domain).map_err(|e| vtd_error("attach", e))?;
    console::line(format_args!(
        "FAILSAFE_WINDOW bdf={bdf} domain={} iova={:#018x} pa={} len={:#x}",
        domain.0, source, ram.start, ram.len
    ));
    r.dev_reads(0, source)?;
    r.dev_writes(0, copy)?;
    let lands = r.landed_ram(PhysAddr(copy), SOURCE_BYTE);
    check(
        "failsafe-window-lands",
        lands,
        format_args!("bdf={bdf} target={copy:#018x} landed={}", u8::from(lands)),
    )?;
    plan(Plan {
        bdf,
        bar0,
        hpet,
        target: PhysAddr(target),
        unit: r.plan.register_base,
        skip_block,
    });
    Ok(())
}

/// Leaves the unit's invalidation queue stopped at a descriptor it refuses (type 0 is no
/// descriptor, VT-d §6.5.2: FSTS.IQE, hardware halts at it with IQH_REG pointing there) and
/// IQE not cleared: a queue that cannot be turned off (QEMU refuses GCMD.QIE = 0 while IQH
/// != IQT), as a failure in the middle of a submission would leave it.
pub fn stop_queue(r: &mut Rig<'_>) -> Step {
    use vtd::{Reg32, Reg64, RegisterAccess};
    let (unit, pool) = r.backend()?.parts();
    let base = unit.regs().read64(Reg64::Iqa) & !0xfff;
    let tail = (unit.regs().read64(Reg64::Iqt) >> 4) & 0xff;
    let at = PhysAddr(base + tail * 16);
    iommu_core::DmaMemory::write_u64(pool, at, 0);
    iommu_core::DmaMemory::write_u64(pool, PhysAddr(at.0 + 8), 0);
    iommu_core::DmaMemory::publish(pool);
    unit.regs_mut().write64(Reg64::Iqt, ((tail + 1) % 256) << 4);
    let fsts = unit.regs().read32(Reg32::Fsts);
    let (iqh, iqt) = (
        unit.regs().read64(Reg64::Iqh),
        unit.regs().read64(Reg64::Iqt),
    );
    check(
        "queue-stopped",
        fsts & (1 << 4) != 0 && iqh != iqt,
        format_args!("fsts={fsts:#010x} iqh={iqh:#x} iqt={iqt:#x}"),
    )
}

/// Two pages in the image: edu's source and the probe's target for a start refused before
/// bring-up (the unit does not translate then: IOVA = PA reaches them).
#[repr(C, align(4096))]
struct Pages(UnsafeCell<[u8; 8192]>);

// SAFETY: written only by `arm_reset`, once, before the probe's DMA; read by the probe.
unsafe impl Sync for Pages {}

static PAGES: Pages = Pages(UnsafeCell::new([0; 8192]));

/// For a start refused before bring-up (an unknown `scenario=`), when `failsafe-probe=` asks:
/// edu 0 loads its buffer by DMA (untranslated: the unit is off) and keeps bus mastering, and
/// the probe is planned on the target page.
pub fn arm_reset(m: &mut Machine, args: &BootArgs<'_>) {
    let Ok(Some(skip_block)) = mode(args) else {
        return;
    };
    let (Some(&(bdf, bar0)), Some(unit)) = (m.edus.first(), failsafe::unit_base(0)) else {
        return;
    };
    let pages = PAGES.0.get().cast::<u8>();
    // SAFETY: the two static pages, written here only, before any DMA into them.
    unsafe {
        core::ptr::write_bytes(pages, SOURCE_BYTE, 4096);
        core::ptr::write_bytes(pages.add(4096), TARGET_BYTE, 4096);
    }
    let (source, target) = (pages as u64, pages as u64 + 4096);
    failsafe::add_master(bdf);
    if m.pci.enable_bus_master(bdf).is_err() {
        return;
    }
    // SAFETY: edu's BAR 0 (1 MiB of registers) in the uncached PCI window; no scenario
    // drives edu in this run.
    let Ok(mut edu) = Edu::new(unsafe { MmioRegion::new(bar0, 1 << 20) }) else {
        return;
    };
    edu.set_timeout(Duration::from_secs(2));
    if edu
        .dma_to_device(Iova(source), 0, DMA_LEN, &m.clock)
        .is_err()
    {
        return;
    }
    plan(Plan {
        bdf,
        bar0,
        hpet: PhysAddr(m.acpi.hpet),
        target: PhysAddr(target),
        unit,
        skip_block,
    });
}

/// Runs the planned probe once (after the fail-safe's block and report); whether it ran.
pub fn run() -> bool {
    let Some(p) = PLAN.get().copied() else {
        return false;
    };
    if PROBED.swap(true, Ordering::SeqCst) {
        return false;
    }
    let step = if p.skip_block {
        "failsafe-control-dma-lands"
    } else {
        "failsafe-dma-blocked"
    };
    // SAFETY: the HPET's 1 KiB register block (ACPI HPET table), uncached in the identity map;
    // the clock that held it before is not used again.
    let Some(clock) = crate::hpet::Hpet::new(unsafe { MmioRegion::new(p.hpet, 0x400) }) else {
        console::emergency(format_args!("CHECK step={step} ok=0 reason=\"no HPET\""));
        return true;
    };
    // SAFETY: the planning scenario's edu handle is never used again; this is the only one.
    let mut edu = match Edu::new(unsafe { MmioRegion::new(p.bar0, 1 << 20) }) {
        Ok(e) => e,
        Err(e) => {
            console::emergency(format_args!("CHECK step={step} ok=0 reason=\"edu: {e}\""));
            return true;
        }
    };
    edu.set_timeout(Duration::from_secs(2));
    // The unit's fault records, through a fresh handle (the driver's is gone): older records
    // are drained first, so the one the probe reads is its own.
    // SAFETY: the DRHD register frame of the unit the fail-safe just blocked, uncached below
    // 4 GiB; the fail-safe's own handle is gone, so this is the only one in use.
    let mut unit = unsafe { vtd::Mmio::new(p.unit.0 as usize, 0x1000) }
        .ok()
        .and_then(|regs| vtd::Unit::new(regs).ok());
    if let Some(u) = unit.as_mut() {
        u.drain_faults(|_| {});
    }
    let dma = edu.dma_from_device(0, Iova(p.target.0), DMA_LEN, &clock);
    let landed = (0..u64::from(DMA_LEN))
        // SAFETY: the target page the scenario filled and gave to the probe, RAM in the
        // identity map; volatile because the device may have written it.
        .all(|i| unsafe { core::ptr::read_volatile((p.target.0 + i) as *const u8) } == SOURCE_BYTE);
    let mut record = None;
    if let Some(u) = unit.as_mut() {
        u.drain_faults(|f| {
            if f.source == p.bdf && f.addr == Iova(p.target.0 & !0xfff) && f.dir == Direction::Write
            {
                record = Some(f.reason.0);
            }
        });
    }
    let ok = dma.is_ok() && landed == p.skip_block && (p.skip_block || record.is_some());
    console::emergency(format_args!(
        "CHECK step={step} ok={} bdf={} target={} len={DMA_LEN} landed={} dma={} recorded={} reason={:#04x}",
        u8::from(ok),
        p.bdf,
        p.target,
        u8::from(landed),
        if dma.is_ok() { "done" } else { "error" },
        u8::from(record.is_some()),
        record.unwrap_or(0)
    ));
    true
}
