//! A register-level driver for Intel VT-d DMA-remapping units (Intel Virtualization Technology
//! for Directed I/O Architecture Specification, rev 4.x; "VT-d §n" below), `no_std` and
//! host-testable.
//!
//! smmuman uses a remapping unit for one thing: keeping DMA masters inside the memory they were
//! granted, through legacy-mode root/context tables and second-level page tables. The driver
//! brings a unit up without ever opening a window, points requesters at domains, invalidates
//! the unit's caches through the invalidation queue and drains fault records:
//!
//! ```no_run
//! # use iommu_core::{Bdf, DmaMemory, PhysAddr};
//! # fn demo(mut mem: impl DmaMemory, base: usize) -> Result<(), vtd::VtdError> {
//! use vtd::{ContextEntry, DomainTag, Mmio, Unit};
//! // SAFETY: `base` is the DRHD's register frame (4 KiB), mapped uncached, used by nothing else.
//! let regs = unsafe { Mmio::new(base, 0x1000) }?;
//! let mut unit = Unit::new(regs)?;
//! unit.bring_up(&mut mem)?; // every requester denied with a record, translation on
//! let aw = unit.features().address_width()?;
//! let edu = Bdf::new(0, 1, 0).unwrap();
//! let entry = ContextEntry { did: DomainTag(1), aw, slptptr: PhysAddr(0x10_0000) };
//! unit.set_context(&mut mem, edu, Some(entry))?;
//! unit.drain_faults(|f| log::warn!("{f}"));
//! # Ok(()) }
//! ```
//!
//! Layout:
//! * `regs` (private) and [`mmio`]: the register map and the one `unsafe` door, [`Mmio::new`];
//! * [`features`]: VER/CAP/ECAP decoded;
//! * [`context`], [`second_level`], [`qi`], [`fault`]: pure encoders/decoders of root and
//!   context entries, second-level entries, invalidation descriptors and fault records;
//! * [`Unit`] ties them together over [`iommu_core::DmaMemory`];
//! * [`failsafe`]: [`block_all_dma`], the unit made to block every DMA from its registers
//!   alone (a panic handler's fail-safe);
//! * [`format`]: the descriptor-format seam of the shared page-table walker;
//! * `fake` (feature `fake`): an emulated unit that behaves as QEMU 10's `intel-iommu`.

#![cfg_attr(not(any(test, feature = "fake")), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod context;
pub mod dmar;
mod driver;
mod error;
pub mod failsafe;
pub mod fault;
pub mod features;
pub mod format;
pub mod mmio;

mod owed;
pub mod qi;
mod regs;
pub mod second_level;

/// The emulated remapping unit of the host tests (feature `fake`).
#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use context::{ContextEntry, DomainTag};
pub use driver::{Stats, Unit, POLL_LIMIT, QUEUE_ENTRIES};
pub use error::{RegisterName, VtdError};
pub use failsafe::{block_all_dma, BlockReport, NoQueueAccess, QueueAccess, QueueState};
pub use fault::{FaultDrainReport, FaultReasonCode, FaultRecord};
pub use features::{AddressWidth, FeatureError, Features};
pub use mmio::{FrameError, Mmio, Reg32, Reg64, RegisterAccess};
pub use qi::InvDescriptor;

pub mod backend;
#[cfg(test)]
mod tests;
