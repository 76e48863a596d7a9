//! The manager over the VT-d unit, started exactly as the aarch64 daemon starts it over the
//! SMMUv3 (`smmuman-daemon`'s `manager.rs`, `over()`): every PCI function behind the unit is a
//! device it controls (except those an RMRR keeps with the host), the image's own memory and
//! every RMRR range are reserved, the I/O space is the unit's address width, the fault-log
//! depth and the mapping quotas are the board's.

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
/// Records kept per ledger (the board's `fault-log`, boards/qemu-q35/smmuman.conf).
const FAULT_LOG: usize = 32;
/// Mappings one VM object may hold.
const MAPPINGS_PER_VM: usize = 256;

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
pub fn start(backend: Backend, plan: &UnitPlan, extra: &[DeviceEntry]) -> Result<Mgr, Outcome> {
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
    for r in plan.reserved_ranges() {
        let _ = reserved.push(r);
    }
    let ias = backend.stage2_config().ias_bits;
    let iova_ranges = [IovaRange {
        first: Iova(0),
        last: Iova((1u64 << ias) - 1),
    }];
    let fault_log_depth = FAULT_LOG.clamp(1, FAULT_LOG_DEPTH);
    console::line(format_args!(
        "FAULT_LOG requested={FAULT_LOG} depth={fault_log_depth} capacity={FAULT_LOG_DEPTH} clamped={}",
        u8::from(fault_log_depth != FAULT_LOG)
    ));
    let config = ManagerConfig {
        devices: &devices,
        reserved: &reserved,
        iova_ranges: &iova_ranges,
        page_sizes: PAGE_SIZES,
        fault_log_depth,
        max_mappings_per_object: MAPPINGS_PER_VM,
        max_mappings: heap::MAPPINGS,
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
