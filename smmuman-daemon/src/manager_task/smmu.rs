//! The resident manager: `smmuman_server::Manager` over the SMMUv3 backend, serving client
//! VMMs that run in their own execution contexts ([`crate::hyp::tasks`]) and reach it only through
//! their mailboxes ([`crate::mailbox`]).
//!
//! The loop, on the boot stack: resume each client until it waits; answer every mailbox that holds
//! a request (`Manager::handle`) or whose client went away (`Manager::client_gone`); drain the
//! SMMU's event queue (`Manager::on_iommu_event`, the explicit handler) when the SMMU's interrupt
//! flagged it, taken in the loop's interrupt window (`irq.rs`), with a slow poll as the backstop
//! (every pass without interrupts); retry orphaned objects at a bounded rate
//! (`Manager::retry_orphans_paced`); deliver fired notifications to their mailboxes. A drain the
//! SMMU refuses (`FATAL reason=iommu-event`) ends the run through the fail-safe (`crate::runtime::exit`):
//! nothing is served once the SMMU cannot be trusted.

// A failed start returns the `RESULT` record it becomes: a fixed-size text buffer (there is no
// heap to box it in), returned only on the failure path.
#![allow(clippy::result_large_err)]

use super::setup::{self, Limits, Requested};
use crate::bringup::iommu::{self, Backend, IommuOptions};
use crate::bringup::platform::Platform;
use crate::clock::Clock;
use crate::hyp::tasks::Task;
use crate::mailbox::{Mailbox, Served};
use crate::report::Outcome;
use crate::runtime::console;
use smmuman_api::ClientId;
use smmuman_server::{DeviceEntry, DeviceId, Manager, PhysRange};

/// Clients (mailboxes) the daemon serves at once.
pub const MAX_CLIENTS: usize = 4;

#[cfg(feature = "scenarios")]
/// Test image only: the next drain of the event queue fails as the SMMU's would in Service
/// Failure Mode (`failsafe_scenarios::iommu_event_error`).
pub static INJECT_EVENT_ERROR: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// The mailboxes: client `i` (ClientId `i + 1`) talks through `MAILBOXES[i]`.
pub static MAILBOXES: [Mailbox; MAX_CLIENTS] = [const { Mailbox::new() }; MAX_CLIENTS];

/// The manager the daemon runs.
pub type Mgr = Manager<Backend>;

/// The client id of mailbox (and host-plan VM) `index`.
pub fn client_id(index: usize) -> ClientId {
    ClientId(index as u32 + 1)
}

/// Brings the IOMMU up and starts the manager over it: every PCI function and platform device
/// behind the SMMU is a device it controls (functions that share a StreamID form one group) unless the board
/// reserves its StreamID or gave it a static window, and the daemon's own memory (with the
/// static windows' RAM) is reserved. The product passes `IommuOptions::default()`; only the
/// test image passes others (`evtq-log2=`).
///
/// # Errors
/// The `RESULT` record of the failure.
pub fn start(p: &mut Platform, options: IommuOptions) -> Result<Mgr, Outcome> {
    crate::runtime::heap::ensure(p)
        .map_err(|e| Outcome::fail().with("reason", "heap").with("detail", e))?;
    let backend = iommu::bring_up(p, options).map_err(|e| {
        Outcome::fail()
            .with("reason", "iommu bring-up failed")
            .with("detail", e)
    })?;
    over(p, backend)
}

/// Starts the manager over an IOMMU that is already up (see [`start`]).
///
/// # Errors
/// The `RESULT` record of the failure.
pub fn over(p: &Platform, backend: Backend) -> Result<Mgr, Outcome> {
    // Every PCI function and platform device behind the SMMU, selectable by raw StreamID only
    // where the board config says `raw-sid yes`.
    let pci = p.pci.functions().iter().filter_map(|f| {
        f.sid.map(|sid| DeviceEntry {
            id: DeviceId::Pci(f.bdf),
            sid,
            raw_sid_allowed: p.binding_of(f.bdf).is_some_and(|b| b.raw_sid),
        })
    });
    let mmio = p.mmio_devices().map(|(base, sid, b)| DeviceEntry {
        id: DeviceId::Mmio(base),
        sid,
        raw_sid_allowed: b.raw_sid,
    });
    let devices: heapless::Vec<DeviceEntry, 64> = pci
        .chain(mmio)
        // StreamIDs the board reserves for the system, and devices the config gave a static
        // window at start-up, are not the clients' to claim.
        .filter(|d| !p.is_reserved_sid(d.sid) && !p.is_static_window_sid(d.sid))
        .collect();
    let mut reserved: heapless::Vec<PhysRange, 16> = heapless::Vec::new();
    let plan = &p.memory_plan;
    for r in plan.daemon_pool() {
        let _ = reserved.push(PhysRange {
            start: r.start(),
            len: r.size(),
        });
    }
    for r in plan.reserved() {
        let _ = reserved.push(PhysRange {
            start: r.range.start(),
            len: r.range.size(),
        });
    }
    // RAM the config's static windows map belongs to those devices from start-up.
    for r in p.static_window_ranges() {
        let _ = reserved.push(PhysRange {
            start: r.start(),
            len: r.size(),
        });
    }
    let ias = backend.stage2_config().ias_bits;
    // The config's fault-log (within what the manager's ledgers can hold) and quotas; the
    // heap was sized for them (`crate::runtime::heap`).
    let limits = Limits::of(Requested {
        fault_log: u64::from(p.fault_log_size()),
        mappings: u64::from(p.topology.mappings()),
        mappings_per_vm: u64::from(p.topology.mappings_per_vm()),
        heap_mappings: None,
    });
    console::line(format_args!("{}", limits.fault_log_record()));
    if limits.fault_log_clamped() {
        log::warn!(
            "fault-log {} is more than the manager keeps per ledger: using {}",
            limits.requested.fault_log,
            limits.fault_log_depth
        );
    }
    let manager =
        setup::new_manager(backend, &devices, &reserved, ias, &limits, now).map_err(|e| {
            Outcome::fail()
                .with("reason", "manager configuration refused")
                .with("detail", format_args!("{e}"))
        })?;
    console::line(format_args!(
        "MANAGER up devices={} reserved_ranges={} iova_bits={ias} clients={MAX_CLIENTS}",
        devices.len(),
        reserved.len()
    ));
    Ok(manager)
}

/// The generic timer, for the fault records the manager drains by itself.
fn now() -> core::time::Duration {
    use crate::clock::Clock;
    crate::runtime::clock::GenericTimer::new().now()
}

/// Opens every mailbox: from now on a client that connects finds the manager.
pub fn open_mailboxes() {
    for mb in &MAILBOXES {
        mb.open();
    }
}

/// Hands the manager the host's grants for client `index` (the VM `name`): its memory and its
/// pass-through devices; prints one `ASSIGN` record and one `ASSIGN_DEVICE` per device, or a
/// `FATAL reason=assignment` record. Returns whether it was accepted.
pub fn assign(
    m: &mut Mgr,
    index: usize,
    name: &str,
    grants: &[smmuman_server::Grant],
    devices: &[smmuman_api::DeviceSel],
) -> bool {
    let client = client_id(index);
    match m.assign(client, grants, devices) {
        Ok(()) => {
            console::line(format_args!(
                "ASSIGN vm={name} client={client} grants={} devices={}",
                grants.len(),
                devices.len()
            ));
            for d in devices {
                console::line(format_args!("ASSIGN_DEVICE vm={name} device=\"{d}\""));
            }
            true
        }
        Err(e) => {
            console::line(format_args!(
                "FATAL reason=assignment vm={name} detail=\"{e}\""
            ));
            false
        }
    }
}

/// What [`serve_tasks`] runs after every round: the manager (if any) and the task slots in;
/// whether to go on with no task running out.
pub type EachRound<'a> = dyn FnMut(Option<&mut Mgr>, &mut [Option<Task>]) -> bool + 'a;

/// Resumes the client `tasks` in turn (task `i` talks through mailbox `i`) and serves their
/// mailboxes and the SMMU's events with `manager` between rounds, until every task has
/// finished and `each_round` has no more to come, or `max_rounds` rounds with a task running
/// have passed (the rest are then abandoned, and the manager cleans up after them as after a
/// VMM that died). `each_round` runs after every round with the manager (if any) and the task
/// slots (the host's own checks, its life cycle: it may put new tasks in empty slots); it
/// returns whether the loop should go on even with no task running (a VM about to start, a
/// resident host).
pub fn serve_tasks(
    p: &Platform,
    mut manager: Option<&mut Mgr>,
    tasks: &mut [Option<Task>],
    max_rounds: u32,
    each_round: &mut EachRound<'_>,
) {
    let n = tasks.len();
    let mut rounds = 0;
    loop {
        let mut running = 0;
        for (i, slot) in tasks.iter_mut().enumerate() {
            if let Some(task) = slot {
                if task.resume() {
                    if !task.stack_intact() {
                        // Memory next to the task's stack may be corrupt: nothing more runs
                        // but the fail-safe.
                        console::line(format_args!("FATAL reason=stack-overflow client={i}"));
                        crate::runtime::exit(crate::exit_code::EXCEPTION, "stack-overflow");
                    }
                    *slot = None;
                } else {
                    running += 1;
                }
            }
        }
        if let Some(m) = manager.as_deref_mut() {
            serve_once(p, m, n);
        } else {
            // No manager: still let the host's interrupts (a guest's time slice) be taken.
            crate::hyp::irq::window();
        }
        let more = each_round(manager.as_deref_mut(), tasks);
        // The bound counts rounds since the last moment no task ran (a resident host serves
        // for as long as it is left running).
        if running > 0 {
            rounds += 1;
        } else {
            rounds = 0;
        }
        if (running == 0 && !more) || rounds >= max_rounds {
            if running != 0 {
                console::line(format_args!(
                    "FATAL reason=clients-stuck running={running} rounds={rounds}"
                ));
            }
            break;
        }
    }
    // A client abandoned above never closed its mailbox: the manager still cleans up after it.
    for mb in MAILBOXES.iter().take(n) {
        mb.close();
    }
    if let Some(m) = manager {
        serve_once(p, m, n);
    }
}

/// One pass of the manager over the first `n` mailboxes and the SMMU's event queue.
fn serve_once(p: &Platform, m: &mut Mgr, n: usize) {
    for (i, mb) in MAILBOXES.iter().enumerate().take(n) {
        let client = client_id(i);
        match mb.serve(|request, reply| m.handle(client, request, reply)) {
            Served::ClientGone => {
                let released = m.client_gone(client);
                console::line(format_args!(
                    "CLIENT_GONE client={client} objects_released={released}"
                ));
            }
            Served::Answered | Served::Nothing => {}
        }
    }
    // The SMMU's interrupts are taken here and only here (`irq::window`): the handler sets a
    // flag, and the event queue is drained when it is set. With the interrupts on, a slow
    // poll every `irq::POLL_BACKSTOP` passes is the backstop for a lost interrupt; without
    // them (no GIC, `smmu-irq=off`) every pass polls.
    crate::hyp::irq::window();
    let flagged = crate::hyp::irq::take_smmu_pending();
    #[cfg(feature = "scenarios")]
    let injected = INJECT_EVENT_ERROR.swap(false, core::sync::atomic::Ordering::SeqCst);
    #[cfg(not(feature = "scenarios"))]
    let injected = false;
    let due =
        injected || flagged || !crate::hyp::irq::smmu_irqs_on() || crate::hyp::irq::backstop_due();
    // Drain when due, then retry orphans (objects of departed clients the SMMU would not
    // release give their devices and memory back once it confirms; retried at most every
    // ORPHAN_RETRY_PERIOD, so a pass costs a scan of the objects, not SMMU commands).
    let pass = if injected {
        // Test image only: the SMMU's answer when it entered Service Failure Mode
        // (GERROR.SFM_ERR, IHI 0070 §6.3.17), which QEMU never does.
        Err(smmuv3::SmmuError::ServiceFailure.into())
    } else {
        setup::service_pass(m, p.clock.now(), due)
    };
    match pass {
        Ok(pass) => {
            if let Some(report) = pass.drained {
                crate::hyp::irq::count_drain(flagged, report.records);
                if flagged {
                    let s = crate::hyp::irq::stats();
                    console::line(format_args!(
                        "IRQ smmu-eventq count={} gerror_count={} drained={} path=flag",
                        s.eventq, s.gerror, report.records
                    ));
                }
            }
            if pass.orphans_released > 0 {
                console::line(format_args!(
                    "ORPHANS_RELEASED objects={} left={}",
                    pass.orphans_released,
                    m.orphan_count()
                ));
            }
        }
        // The SMMU can no longer be trusted to record or stop anything: nothing is served
        // any more, every SMMU is left aborting (the exit's fail-safe) and the run ends.
        Err(e) => {
            console::line(format_args!("FATAL reason=iommu-event detail=\"{e}\""));
            crate::runtime::exit(crate::exit_code::FAIL, "iommu-event")
        }
    }
    while let Some(note) = m.take_notification() {
        if let Some(mb) = note
            .client
            .0
            .checked_sub(1)
            .and_then(|i| MAILBOXES.get(i as usize))
        {
            mb.notify();
        }
    }
}
