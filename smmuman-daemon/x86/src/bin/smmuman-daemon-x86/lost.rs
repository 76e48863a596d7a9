//! Scenario `lost-records`: a fault record the unit lost is announced to every VM that may miss
//! it, and the fault interrupt keeps such losses rare.
//!
//! QEMU's unit has one fault-recording register (CAP.NFR = 0, VT-d §11.4.2): while it holds a
//! record nobody read, the next fault from another requester is dropped and only FSTS.PFO
//! says so (VT-d §7.2.1, §11.4.9.1), naming nobody. Two clients' edus (vm1's, then vm2's)
//! each DMA past their window, one after the other.
//!
//! * `vtd-irq=off` (the loss): nothing drains the unit between the two faults. vm1's record
//!   arrives; vm2's is lost, so vm2's ledger holds nothing, yet says `possibly_lost=1` (so
//!   does vm1's: the unit cannot say whose record went).
//! * `vtd-irq=on` (default): the fault event is an MSI ([`crate::irq`]) and the manager drains
//!   the unit on it, between the two DMAs: both records arrive, neither ledger is marked.

// A failing step returns the `RESULT` record it becomes.
#![allow(clippy::result_large_err)]

use crate::clients::{manager, start_vm, Vm};
use crate::scenarios::{check, Rig, Step, SUPERPAGE, WINDOW_IOVA};
use crate::{console, irq};
use core::time::Duration;
use iommu_core::Iova;
use smmuman_api::FaultBatch;
use smmuman_daemon::report::Outcome;

/// How long the service loop waits for the fault interrupt after each DMA.
const WAIT: Duration = Duration::from_millis(20);

/// `(records, possibly_lost)` of the VM's ledger, and whether its records are its edu's at
/// the address past its window.
fn ledger(vm: &mut Vm<'_>) -> Step<(usize, u64, bool)> {
    let page = vm
        .client
        .read_faults(vm.object, FaultBatch::PAGE)
        .map_err(|e| {
            Outcome::fail()
                .with("reason", "read-faults")
                .with("detail", e)
        })?
        .page;
    let past = Iova(WINDOW_IOVA + SUPERPAGE);
    let own = page.records().all(|f| f.sid == vm.sid && f.addr == past);
    console::line(format_args!(
        "LEDGER vm={} records={} possibly_lost={} dropped={}",
        vm.name,
        page.len(),
        page.possibly_lost(),
        page.dropped()
    ));
    Ok((page.len(), page.possibly_lost(), own))
}

/// Scenario `lost-records` (see the module docs); `irq_on` false shows the loss.
pub fn lost_records(r: &mut Rig<'_>, irq_on: bool) -> Step {
    let m = manager(r, &[])?;
    let mut vm1 = start_vm(r, &m, 0, "vm1", 0x11)?;
    let mut vm2 = start_vm(r, &m, 1, "vm2", 0x22)?;
    if irq_on {
        let mut mgr = m.borrow_mut();
        let (unit, _) = mgr.backend_mut().parts();
        irq::arm_fault_event(unit)?;
    }
    let past = WINDOW_IOVA + SUPERPAGE;
    // Without the fault event armed no interrupt window is opened at all: the legacy 8259
    // stays unmasked until `lapic::init`, and its timer would arrive on an exception vector.
    let serve = |m| irq_on && irq::serve_faults(m, r.clock, WAIT);
    r.dev_writes(vm1.edu, past)?;
    let first = serve(&m);
    r.dev_writes(vm2.edu, past)?;
    let second = serve(&m);
    if irq_on {
        let mut mgr = m.borrow_mut();
        let (unit, _) = mgr.backend_mut().parts();
        unit.set_fault_events(false);
    }
    let (n1, lost1, own1) = ledger(&mut vm1)?;
    let (n2, lost2, own2) = ledger(&mut vm2)?;
    let detail = format_args!(
        "irq={} drained_on_irq={}{} vm1_records={n1} vm1_possibly_lost={lost1} vm2_records={n2} vm2_possibly_lost={lost2}",
        if irq_on { "on" } else { "off" },
        u8::from(first),
        u8::from(second)
    );
    if irq_on {
        check(
            "lost-records-drained-on-irq",
            first && second && (n1, lost1, n2, lost2) == (1, 0, 1, 0) && own1 && own2,
            detail,
        )
    } else {
        check(
            "lost-records-announced",
            !first && (n1, n2) == (1, 0) && lost1 == 1 && lost2 == 1 && own1,
            detail,
        )
    }
}
