//! The manager's start-up and service pass, one piece of code for both images: the aarch64
//! daemon (over `smmuv3::Smmuv3Backend`) and the x86-64 image (over `vtd::backend::VtdBackend`).
//! Each image gathers its devices and reserved memory from its own discovery (device tree or
//! ACPI, and the board configuration) and prints the records; the decisions are made here:
//!
//! * [`Limits::of`]: the fault ledgers' depth (the configuration's `fault-log`, within
//!   1..=`FAULT_LOG_DEPTH`) and the mapping quotas (`mappings`, `mappings-per-vm`, capped by
//!   what the image's heap can hold when it is of fixed size);
//! * [`iova_space`]: the one I/O range, the IOMMU's whole input address space;
//! * [`new_manager`]: the `ManagerConfig` and the manager;
//! * [`service_pass`]: what the manager loop does on every pass besides answering clients:
//!   drain the IOMMU's fault records when due (`Manager::on_iommu_event`), then retry orphaned
//!   objects at a bounded rate (`Manager::retry_orphans_paced`).

use core::fmt;
use core::time::Duration;
use iommu_core::{IommuBackend, Iova};
use smmuman_api::IovaRange;
use smmuman_server::config::{ConfigError, FAULT_LOG_DEPTH};
use smmuman_server::{DeviceEntry, DrainReport, Manager, ManagerConfig, PhysRange};

/// Page sizes both IOMMUs' second-stage tables map: 4 KiB pages, 2 MiB and 1 GiB blocks
/// (`stage2`: VMSAv8-64 stage 2, Arm ARM D8; VT-d second level, VT-d §3.7 and §9.8).
pub const PAGE_SIZES: u64 = (1 << 12) | (1 << 21) | (1 << 30);

/// What the board configuration asks of the manager, and what the image can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requested {
    /// Records each fault ledger keeps (`fault-log`).
    pub fault_log: u64,
    /// Mappings in all VM objects (`mappings`).
    pub mappings: u64,
    /// Mappings one VM object may hold (`mappings-per-vm`).
    pub mappings_per_vm: u64,
    /// Mappings the image's heap holds when its size is fixed at build time (the x86-64
    /// image); `None` when the heap was sized from the configuration (the aarch64 daemon).
    pub heap_mappings: Option<u64>,
}

/// The manager's sizes, decided from a [`Requested`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// What was asked.
    pub requested: Requested,
    /// Records kept per ledger: `fault-log` within 1..=`FAULT_LOG_DEPTH`.
    pub fault_log_depth: usize,
    /// Mappings in all objects: `mappings`, at most what the heap holds.
    pub max_mappings: usize,
    /// Mappings one object may hold: `mappings-per-vm`, at most `max_mappings`.
    pub max_mappings_per_object: usize,
}

impl Limits {
    /// The sizes the manager runs with for `requested`.
    pub fn of(requested: Requested) -> Self {
        let fault_log_depth = usize::try_from(requested.fault_log)
            .unwrap_or(usize::MAX)
            .clamp(1, FAULT_LOG_DEPTH);
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let max_mappings = match requested.heap_mappings {
            Some(heap) => requested.mappings.min(heap),
            None => requested.mappings,
        };
        let max_mappings_per_object = match requested.heap_mappings {
            Some(_) => requested.mappings_per_vm.min(max_mappings),
            None => requested.mappings_per_vm,
        };
        Self {
            requested,
            fault_log_depth,
            max_mappings: to_usize(max_mappings),
            max_mappings_per_object: to_usize(max_mappings_per_object),
        }
    }

    /// Whether the ledgers keep fewer (or more) records than `fault-log` asked.
    pub fn fault_log_clamped(&self) -> bool {
        self.fault_log_depth as u64 != self.requested.fault_log
    }

    /// The `FAULT_LOG requested= depth= capacity= clamped=` record.
    pub fn fault_log_record(&self) -> impl fmt::Display + '_ {
        FaultLogRecord(self)
    }
}

struct FaultLogRecord<'a>(&'a Limits);

impl fmt::Display for FaultLogRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FAULT_LOG requested={} depth={} capacity={FAULT_LOG_DEPTH} clamped={}",
            self.0.requested.fault_log,
            self.0.fault_log_depth,
            u8::from(self.0.fault_log_clamped())
        )
    }
}

/// The IOMMU's whole input address space of `ias_bits` bits as the one I/O range clients may
/// map (SMMU_IDR5.OAS / the stage-2 input size, IHI 0070 §6.3.6; VT-d CAP_REG.MGAW, §11.4.2). A
/// width of 64 bits or more is the whole 64-bit space; 0 is refused by the manager (an empty
/// range).
pub fn iova_space(ias_bits: u8) -> IovaRange {
    let last = match ias_bits {
        0 => 0,
        64.. => u64::MAX,
        bits => (1u64 << bits) - 1,
    };
    IovaRange {
        first: Iova(0),
        last: Iova(last),
    }
}

/// The manager over `backend`: `devices` are the DMA masters it controls (each put in default
/// deny now), `reserved` the memory no client may ever map, the I/O space `ias_bits` wide,
/// the sizes `limits`, fault records stamped with `clock`.
///
/// # Errors
/// What the manager refuses of the configuration (too many devices, a reserved range that
/// wraps...) or the IOMMU's error putting a device in deny.
pub fn new_manager<B: IommuBackend>(
    backend: B,
    devices: &[DeviceEntry],
    reserved: &[PhysRange],
    ias_bits: u8,
    limits: &Limits,
    clock: fn() -> Duration,
) -> Result<Manager<B>, ConfigError<B::Error>> {
    let iova_ranges = [iova_space(ias_bits)];
    let config = ManagerConfig {
        devices,
        reserved,
        iova_ranges: &iova_ranges,
        page_sizes: PAGE_SIZES,
        fault_log_depth: limits.fault_log_depth,
        max_mappings_per_object: limits.max_mappings_per_object,
        max_mappings: limits.max_mappings,
        clock,
    };
    Manager::new(backend, &config)
}

/// What one [`service_pass`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    /// The drain's report, when the drain was due.
    pub drained: Option<DrainReport>,
    /// Orphaned objects released (the IOMMU confirmed their devices left their domains).
    pub orphans_released: usize,
}

/// One pass of the manager loop besides the clients' requests, at `now`: when `drain_due`,
/// the IOMMU's fault records go to their owners' ledgers; then orphaned objects are retried,
/// at most once per `ORPHAN_RETRY_PERIOD` and only while there is one.
///
/// # Errors
/// The IOMMU refused the drain (e.g. an SMMU in Service Failure Mode): the IOMMU can no longer
/// be trusted to record or to confirm anything, so no orphan is retried on this pass. The
/// caller decides what follows (the aarch64 daemon stops serving and leaves every SMMU
/// aborting).
pub fn service_pass<B: IommuBackend>(
    m: &mut Manager<B>,
    now: Duration,
    drain_due: bool,
) -> Result<Pass, B::Error> {
    let drained = if drain_due {
        Some(m.on_iommu_event(now)?)
    } else {
        None
    };
    let orphans_released = m.retry_orphans_paced(now);
    Ok(Pass {
        drained,
        orphans_released,
    })
}

#[cfg(test)]
mod tests;
