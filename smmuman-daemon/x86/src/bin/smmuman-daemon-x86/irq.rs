//! The VT-d fault event as an interrupt, and scenario `irq-fault`.
//!
//! The unit's fault event is an MSI (VT-d §5.1.6) built from FEDATA/FEADDR (§11.4.9.3,
//! §11.4.9.4; `smmuman_x86::msi`): a fixed, edge-triggered [`VTD_FAULT_VECTOR`] to the boot
//! CPU's local APIC ([`crate::lapic`]), sent when a fault is recorded (FSTS.PPF set) while
//! FECTL.IM = 0 (§11.4.9.2); while IM = 1 the unit only sets FECTL.IP. The handler
//! ([`vtd_fault_interrupt`]) counts it, flags a drain and ends it (EOI); the records are read
//! by the service loop, never in the handler.
//!
//! Interrupts stay disabled (RFLAGS.IF = 0) except in [`window`], a `STI; NOP; CLI` the service
//! loop opens once a pass, as the aarch64 daemon's manager loop opens its IRQ window.
//!
//! Scenario `irq-fault`: edu's DMA to an address nobody mapped is refused and recorded; the
//! record arrives through the interrupt (`IRQ vtd-fault count=1 ... path=irq`, the `FAULT`
//! record `when=irq`). Control `vtd-irq=off`: FECTL stays masked, no interrupt is taken
//! (count=0, FECTL.IP = 1), and the loop's poll still finds the record (`path=poll`).

// A failing step returns the `RESULT` record it becomes (as in `scenarios.rs`).
#![allow(clippy::result_large_err)]

use crate::scenarios::{check, Rig, Step};
use crate::{console, lapic};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::time::Duration;
use iommu_core::{Direction, Iova};
use smmuman_daemon::clock::Clock;
use smmuman_daemon::report::Outcome;
use smmuman_x86::msi;
use vtd::{Reg32, RegisterAccess};

/// The IDT vector of the VT-d fault event (above the exceptions, SDM Vol. 3A §7.2).
pub const VTD_FAULT_VECTOR: u8 = 0x40;
/// FECTL.IM (VT-d §11.4.9.2, bit 31): fault events masked.
const FECTL_IM: u32 = 1 << 31;
/// FECTL.IP (bit 30): an event was due while masked.
const FECTL_IP: u32 = 1 << 30;
/// Where edu's refused DMA goes: 256 MiB, mapped for nobody.
const UNMAPPED_IOVA: u64 = 0x1000_0000;
/// How long the service loop waits for the interrupt before it polls.
const WAIT: Duration = Duration::from_millis(20);

/// Fault-event interrupts taken.
static COUNT: AtomicU32 = AtomicU32::new(0);
/// Set by the handler, cleared by the loop: drain the fault records.
static PENDING: AtomicBool = AtomicBool::new(false);

/// The fault event's handler, called by the vector's stub (`idt.rs`) with the caller-saved
/// registers saved: count, flag a drain, end the interrupt.
#[no_mangle]
extern "C" fn vtd_fault_interrupt() {
    COUNT.fetch_add(1, Ordering::SeqCst);
    PENDING.store(true, Ordering::SeqCst);
    lapic::eoi();
}

/// Opens the interrupt window: a pending interrupt is taken between `STI` and `CLI`.
pub fn window() {
    // SAFETY: STI sets RFLAGS.IF and interrupts are recognised after the next instruction (SDM
    // Vol. 2B "STI"), so a pending one is taken after the NOP, through the IDT's stubs, which
    // save and restore every register they touch; CLI closes the window. No memory option:
    // the handler writes the atomics this module reads after the window.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nostack)) };
}

/// Whether the handler flagged a drain since the last call (and clears the flag).
fn take_pending() -> bool {
    PENDING.swap(false, Ordering::SeqCst)
}

/// Sends the unit's fault event as the MSI [`VTD_FAULT_VECTOR`] to this CPU's local APIC and
/// unmasks it (FEDATA/FEADDR, then FECTL.IM = 0: VT-d §11.4.9.2-5).
///
/// # Errors
/// The local APIC's, as the `RESULT` record.
pub fn arm_fault_event(unit: &mut vtd::Unit<impl RegisterAccess>) -> Step<lapic::Lapic> {
    let apic =
        lapic::init().map_err(|e| Outcome::fail().with("reason", "lapic").with("detail", e))?;
    unit.set_fault_msi(
        msi::address(apic.id).into(),
        msi::data(VTD_FAULT_VECTOR).unwrap_or(0),
    );
    unit.set_fault_events(true);
    Ok(apic)
}

/// The manager's service loop for up to `wait`: an interrupt window each pass, and the
/// manager drains the unit as soon as the fault event's handler flagged it, so the unit's
/// recording registers are free again before the next fault (QEMU has one: CAP.NFR = 0, and a
/// fault that finds it full is lost with FSTS.PFO). Returns whether an interrupt led to a
/// drain.
pub fn serve_faults(
    m: &core::cell::RefCell<crate::host::Mgr>,
    clock: &impl Clock,
    wait: Duration,
) -> bool {
    let deadline = clock.now() + wait;
    loop {
        window();
        if take_pending() {
            let drained = m.borrow_mut().on_iommu_event(crate::host::now());
            if let Ok(d) = drained {
                console::line(format_args!(
                    "IRQ vtd-fault drain records={} hw_lost_at_least={}",
                    d.records, d.hw_lost_at_least
                ));
            }
            return true;
        }
        if clock.now() >= deadline {
            return false;
        }
    }
}

/// Scenario `irq-fault` (see the module comment); `irq_on` false is the control.
pub fn fault(r: &mut Rig<'_>, irq_on: bool) -> Step {
    let apic =
        lapic::init().map_err(|e| Outcome::fail().with("reason", "lapic").with("detail", e))?;
    console::line(format_args!(
        "LAPIC mode=xapic base={:#018x} id={} version={:#x} svr={:#x}",
        apic.base, apic.id, apic.version, apic.svr
    ));
    let address = msi::address(apic.id);
    let data = msi::data(VTD_FAULT_VECTOR).unwrap_or(0);
    let (edu, _) = r.edu0()?;
    let fectl = {
        let (unit, _) = r.backend()?.parts();
        if irq_on {
            unit.set_fault_msi(address.into(), data);
            unit.set_fault_events(true);
        }
        let regs = unit.regs();
        (
            regs.read32(Reg32::Fectl),
            regs.read32(Reg32::Feaddr),
            regs.read32(Reg32::Fedata),
        )
    };
    let (fectl, feaddr, fedata) = fectl;
    console::line(format_args!(
        "VTD_FAULT_EVENT irq={} fectl={fectl:#010x} masked={} feaddr={feaddr:#010x} fedata={fedata:#06x} msi_address={address:#010x} msi_data={data:#06x} vector={VTD_FAULT_VECTOR:#04x} dest_apic={}",
        if irq_on { "on" } else { "off" },
        u8::from(fectl & FECTL_IM != 0),
        apic.id
    ));
    let before = r.faults.len();
    r.dev_writes(0, UNMAPPED_IOVA)?;
    // The service loop: an interrupt window each pass; the records are drained when the
    // handler flags them, or by the poll once WAIT has passed without an interrupt.
    let deadline = r.clock.now() + WAIT;
    let (path, records, passes) = {
        let mut passes = 0u32;
        loop {
            passes += 1;
            window();
            if take_pending() {
                break ("irq", r.drain("irq"), passes);
            }
            if r.clock.now() >= deadline {
                break ("poll", r.drain("poll"), passes);
            }
        }
    };
    let (unit, _) = r.backend()?.parts();
    let fectl_after = unit.regs().read32(Reg32::Fectl);
    unit.set_fault_events(false);
    let count = COUNT.load(Ordering::SeqCst);
    console::line(format_args!(
        "IRQ vtd-fault count={count} vector={VTD_FAULT_VECTOR:#04x} records={records} passes={passes} fectl={fectl_after:#010x} fectl_ip={} path={path}",
        u8::from(fectl_after & FECTL_IP != 0)
    ));
    let recorded = r.faults[before..]
        .iter()
        .any(|f| f.source == edu && f.addr == Iova(UNMAPPED_IOVA) && f.dir == Direction::Write);
    if irq_on {
        check(
            "irq-fault-delivered",
            count == 1 && path == "irq" && recorded,
            format_args!(
                "bdf={edu} addr={UNMAPPED_IOVA:#018x} count={count} recorded={} path={path}",
                u8::from(recorded)
            ),
        )
    } else {
        check(
            "irq-off-polled",
            count == 0 && path == "poll" && recorded && fectl & FECTL_IM != 0,
            format_args!(
                "bdf={edu} addr={UNMAPPED_IOVA:#018x} count={count} recorded={} masked={} path={path}",
                u8::from(recorded),
                u8::from(fectl & FECTL_IM != 0)
            ),
        )
    }
}
