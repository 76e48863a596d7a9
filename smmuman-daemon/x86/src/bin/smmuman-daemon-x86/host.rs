//! The manager over the VT-d unit, started by the same code as the aarch64 daemon's over the
//! SMMUv3 (`smmuman_daemon::manager_task::setup`: sizes, I/O space, construction; the aarch64
//! side is `manager_task/smmu.rs`, `over()`): every PCI function behind the unit is a
//! device it controls (except those an RMRR keeps with the host), the image's own memory and
//! every reserved region of the combined topology (the DMAR's RMRRs, the config's `reserved`
//! lines) and the initrd are reserved, the I/O space is the unit's address width, the
//! fault-log depth and the mapping quotas are the combined topology's (`fault-log`,
//! `mappings`, `mappings-per-vm`; the latter capped by the image's heap).

// A failed start returns the `RESULT` record it becomes.
#![allow(clippy::result_large_err)]

use crate::{console, heap, hpet, ram};
use core::time::Duration;
use smmuman_daemon::clock::Clock;
use smmuman_daemon::manager_task::setup;
use smmuman_daemon::report::Outcome;
use smmuman_server::{DeviceEntry, Manager, PhysRange};
use smmuman_x86::remapping::UnitPlan;

/// The VT-d backend the manager programs: tables and queues in the image's DMA pool.
pub type Backend = vtd::backend::VtdBackend<crate::dma::Pool>;
/// The manager the image runs.
pub type Mgr = Manager<Backend>;

/// What the combined topology says about the manager's sizes, and memory it must keep from
/// every client besides the plan's regions.
pub struct Limits {
    /// Records kept per ledger (`fault-log`).
    pub fault_log: usize,
    /// Mappings in all (`mappings`).
    pub mappings: usize,
    /// Mappings one VM object may hold (`mappings-per-vm`).
    pub mappings_per_vm: usize,
    /// The initrd the config came from, if any.
    pub initrd: Option<PhysRange>,
}

impl Limits {
    /// The topology's.
    pub fn of(t: &board_config::Topology, initrd: Option<PhysRange>) -> Self {
        Self {
            fault_log: t.fault_log_size() as usize,
            mappings: t.mappings() as usize,
            mappings_per_vm: t.mappings_per_vm() as usize,
            initrd,
        }
    }
}

/// The HPET, for the time stamps of fault records the manager drains by itself.
pub static CLOCK: spin::Once<hpet::Hpet> = spin::Once::new();

/// Now, by the HPET (zero before it is known).
pub fn now() -> Duration {
    CLOCK.get().map_or(Duration::ZERO, |c| c.now())
}

/// Starts the manager over `backend`: the devices of `plan` (plus `extra`, the platform
/// devices a board would state), the image's memory and `plan`'s RMRR ranges reserved.
///
/// # Errors
/// The `RESULT` record of the failure.
pub fn start(
    backend: Backend,
    plan: &UnitPlan,
    limits: &Limits,
    extra: &[DeviceEntry],
) -> Result<Mgr, Outcome> {
    let (at, bytes) =
        heap::init().map_err(|e| Outcome::fail().with("reason", "heap").with("detail", e))?;
    console::line(format_args!(
        "HEAP mappings={} bytes={bytes:#x} at={at:#018x} given=1",
        heap::MAPPINGS
    ));
    let mut devices = plan.manager_devices();
    for d in extra {
        let _ = devices.push(*d);
    }
    let mut reserved: heapless::Vec<PhysRange, 16> = heapless::Vec::new();
    let _ = reserved.push(ram::image());
    for r in plan.reserved_ranges().chain(limits.initrd) {
        reserved.push(r).map_err(|_| {
            Outcome::fail().with("reason", "more reserved ranges than the image keeps")
        })?;
    }
    let ias = backend.stage2_config().ias_bits;
    let sizes = setup::Limits::of(setup::Requested {
        fault_log: limits.fault_log as u64,
        mappings: limits.mappings as u64,
        mappings_per_vm: limits.mappings_per_vm as u64,
        heap_mappings: Some(heap::MAPPINGS as u64),
    });
    console::line(format_args!("{}", sizes.fault_log_record()));
    console::line(format_args!(
        "QUOTA mappings={} mappings_per_vm={} requested_mappings={} requested_per_vm={} heap_capacity={}",
        sizes.max_mappings,
        sizes.max_mappings_per_object,
        limits.mappings,
        limits.mappings_per_vm,
        heap::MAPPINGS
    ));
    let manager =
        setup::new_manager(backend, &devices, &reserved, ias, &sizes, now).map_err(|e| {
            Outcome::fail()
                .with("reason", "manager configuration refused")
                .with("detail", format_args!("{e}"))
        })?;
    console::line(format_args!(
        "MANAGER up backend=vtd devices={} reserved_ranges={} iova_bits={ias} image={} manager_bytes={:#x}",
        devices.len(),
        reserved.len(),
        ram::image(),
        core::mem::size_of::<Mgr>()
    ));
    for d in &devices {
        console::line(format_args!(
            "MANAGER_DEVICE id={} sid={:#06x}",
            d.id, d.sid.0
        ));
    }
    Ok(manager)
}
