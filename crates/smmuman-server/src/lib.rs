//! The smmuman manager's server: VM objects, device groups, host-memory ownership and the fault
//! ledger, over any [`iommu_core::IommuBackend`].
//!
//! * [`Manager`] holds the state and implements [`smmuman_api::ManagerOps`], one method per
//!   operation of the op table; [`Manager::handle`] runs one encoded request.
//! * [`serve()`] is the resident receive → dispatch → reply loop over an [`Endpoint`] (the
//!   daemon's transport), with the explicit handlers for a client going away
//!   ([`Manager::client_gone`]) and for the IOMMU's event/GERROR interrupt
//!   ([`Manager::on_iommu_event`]).
//! * [`admin`] is the operator's side: the admin ops (`smmuman-admin-api`) over the manager's
//!   read-only views and a [`admin::Host`], behind their own entry point [`admin::handle`]
//!   (only the operator's channel calls it; client messages go to [`Manager::handle`]).
//! * [`config`] is what the manager is told at start (the device table, its own memory, the
//!   I/O space) and its capacities; groups are derived from shared StreamIDs.
//! * `fake` (feature `fake`) is a model IOMMU for host tests (`FakeIommu`, `SharedFake`).
//!
//! Rules it keeps (the "why" is in `docs/protocol.md`): a refused request changes nothing; every
//! change is invalidated in the IOMMU before the reply; a group moves as a whole; the manager's
//! own memory is never mapped; a client maps only host memory and attaches only devices the
//! host assigned it ([`Manager::assign`], [`authority`]); a host range belongs to one object unless both sides
//! share it; faults are charged to whoever owned the device when the IOMMU raised them.
//!
//! `no_std`, no heap: every table is a `heapless` collection with the capacities of [`config`].

#![cfg_attr(not(any(test, feature = "fake")), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod admin;
pub mod authority;
pub mod config;
mod devices;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod ledger;
mod manager;
mod mappings;
mod ownership;
pub mod serve;

pub use authority::{AssignError, Grant, GrantKind};
pub use config::{ConfigError, DeviceEntry, DeviceId, ManagerConfig, PhysRange};
pub use manager::view::{DeviceView, GroupView, LedgerView, LimitsView, ObjectView};
pub use manager::{Counters, DrainReport, Manager, Notification};
pub use serve::{serve, step, Clock, Endpoint, Received, Step};

#[cfg(test)]
mod tests;
