//! The manager over the VT-d unit, started exactly as the aarch64 daemon starts it over the
//! SMMUv3 (`smmuman-daemon`'s `manager.rs`, `over()`): every PCI function behind the unit is a
//! device it controls (except those an RMRR keeps with the host), the image's own memory and
//! every reserved region of the combined topology (the DMAR's RMRRs, the config's `reserved`
//! lines) and the initrd are reserved, the I/O space is the unit's address width, the
//! fault-log depth and the mapping quotas are the combined topology's (`fault-log`,
//! `mappings`, `mappings-per-vm`; the latter capped by the image's heap).

// A failed start returns the `RESULT` record it becomes.
#![allow(clippy::result_large_err)]

use crate::{console, heap, hpet, ram};
use core::time::Duration;
use iommu_core::Iova;
use smmuman_api::IovaRange;
use smmuman_daemon::clock::Clock;
use smmuman_daemon::report::Outcome;
use smmuman_server::config::FAULT_LOG_DEPTH;
use smmuman_server::{DeviceEntry, Manager, ManagerConfig, PhysRange};
use smmuman_x86::remapping::UnitPlan;

/// The VT-d backend the manager programs: tables and queues in the image's DMA pool.
pub type Backend = vtd::backend::VtdBackend<crate::dma::Pool>;
/// The manager the image runs.
pub type Mgr = Manager<Backend>;

/// Page sizes the second-level tables map: 4 KiB pages, 2 MiB and 1 GiB superpages (what
/// QEMU's CAP.SLLPS offers; the walker maps what the format allows).
const PAGE_SIZES: u64 = (1 << 12) | (1 << 21) | (1 << 30);
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
    let iova_ranges = [IovaRange {
        first: Iova(0),
        last: Iova((1u64 << ias) - 1),
    }];
    let requested = limits.fault_log;
    let fault_log_depth = requested.clamp(1, FAULT_LOG_DEPTH);
    console::line(format_args!(
        "FAULT_LOG requested={requested} depth={fault_log_depth} capacity={FAULT_LOG_DEPTH} clamped={}",
        u8::from(fault_log_depth != requested)
    ));
    let max_mappings = limits.mappings.min(heap::MAPPINGS);
    let per_vm = limits.mappings_per_vm.min(max_mappings);
    console::line(format_args!(
        "QUOTA mappings={max_mappings} mappings_per_vm={per_vm} requested_mappings={} requested_per_vm={} heap_capacity={}",
        limits.mappings,
        limits.mappings_per_vm,
        heap::MAPPINGS
    ));
    let config = ManagerConfig {
        devices: &devices,
        reserved: &reserved,
        iova_ranges: &iova_ranges,
        page_sizes: PAGE_SIZES,
        fault_log_depth,
        max_mappings_per_object: per_vm,
        max_mappings,
        clock: now,
    };
    let manager = Manager::new(backend, &config).map_err(|e| {
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
