//! Which IOMMU controls which DMA device, learned at start-up from firmware and from the
//! user's configuration.
//!
//! * [`dt::from_fdt`] reads firmware's view from the flattened device tree: `arm,smmu-v3`
//!   nodes, PCI hosts' `iommu-map`/`iommu-map-mask`, platform devices' `iommus`.
//! * [`vtd::from_dmar`] converts firmware's VT-d view (the daemon fills a
//!   [`vtd::FirmwareVtd`] from the ACPI DMAR table) into the same kind of topology.
//! * [`config::parse`] reads the user's `smmuman.conf` (format: `docs/config.md`).
//! * [`combine()`] applies the user's statements to firmware's, in `override` (default) or
//!   `merge` mode.
//! * [`load()`] does all three, as the daemon does at start-up.
//! * [`Topology::vm`] answers which host-physical memory a VM's devices may be granted: the
//!   config's `[vm NAME]` sections ([`vm`], memory authority; firmware never assigns memory).
//!
//! All three give a [`Topology`] (or a typed error that says where the input is wrong; the
//! manager then refuses to start and leaves every SMMU aborting DMA). The manager asks the
//! final topology [`Topology::sid_for`] each device it finds.
//!
//! ```
//! use board_config::{combine, config, Device};
//! use iommu_core::{Bdf, StreamId};
//!
//! // Firmware said nothing useful here; the user describes the board.
//! let firmware = board_config::Topology::new();
//! let user = config::parse(
//!     "smmuman.conf",
//!     "[smmu smmu0]\nbase 0x0905_0000\n[device pci 00:01.0]\nunit smmu0\nsid 0x8\n",
//! )
//! .unwrap();
//! let board = combine(&firmware, Some(&user)).unwrap();
//! let edu = Device::pci(Bdf::new(0, 1, 0).unwrap());
//! let (unit, sid) = board.sid_for(edu).unwrap().unwrap();
//! assert_eq!((board.unit(unit).unwrap().name.as_str(), sid), ("smmu0", StreamId(8)));
//! ```
//!
//! `no_std` and allocation-free: every list is a `heapless` vector whose capacity is a
//! documented constant ([`MAX_UNITS`], [`MAX_BINDINGS`], [`MAX_RESERVED`], [`MAX_WINDOWS`]);
//! exceeding one is an error, never a truncation.

#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]
#![forbid(unsafe_code)]

pub mod combine;
pub mod config;
pub mod device;
pub mod dt;
pub mod irq;
pub mod load;
pub mod number;
pub mod topology;
pub mod unit;
pub mod vm;
pub mod vtd;

pub use combine::{combine, CombineError, FirmwareSource};
pub use device::{Device, PciRange, StreamSource};
pub use irq::{Irq, IrqName, SmmuIrqs, Trigger};
pub use load::{load, ConfigFile, LoadError};
pub use topology::{
    CapacityExceeded, LookupError, Mode, Origin, ReservedRegion, ReservedSids, SidGroup,
    SidRangeError, StaticWindow, StreamBinding, Topology, DEFAULT_FAULT_LOG, DEFAULT_MAPPINGS,
    DEFAULT_MAPPINGS_PER_VM, MAX_BINDINGS, MAX_FAULT_LOG, MAX_MAPPINGS, MAX_REGIONS,
    MAX_REGION_DEVICES, MAX_RESERVED, MAX_UNITS, MAX_WINDOWS,
};
pub use unit::{
    IommuKind, IommuUnit, Stated, Unclaimed, UnitId, UnitName, SMMUV3_FRAME_SIZE, VTD_FRAME_SIZE,
};
pub use vm::{
    PeerBar, RamGrant, VmAssignment, VmName, MAX_PEERS_PER_VM, MAX_RAM_PER_VM, MAX_VMS, VM_NAME_LEN,
};
