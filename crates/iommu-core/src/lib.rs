//! Shared vocabulary of the smmuman driver crates.
//!
//! * [`addr`]: typed addresses ([`PhysAddr`], [`Iova`]) so that a host-physical address can never be
//!   passed where an I/O virtual address is expected.
//! * [`ids`]: typed identifiers ([`StreamId`], [`Vmid`], [`Bdf`]).
//! * [`access`]: the permissions a DMA window grants ([`Access`]).
//! * [`backend`]: [`IommuBackend`], what the manager asks of any IOMMU (SMMUv3 now, VT-d later).
//! * [`mem`]: [`DmaMemory`], the one door through which table and queue logic touches the memory an
//!   IOMMU reads by DMA. Bare-metal code implements it over identity-mapped RAM; host tests use
//!   `fake::FakeMemory` (feature `fake`).

#![cfg_attr(not(any(test, feature = "fake")), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]
#![forbid(unsafe_code)]

pub mod access;
pub mod addr;
pub mod backend;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod ids;
pub mod mem;
pub mod reserved;

pub use access::Access;
pub use addr::{Iova, PhysAddr, PAGE_SIZE};
pub use backend::{Direction, DomainId, Fault, FaultDrain, FaultReason, IommuBackend, MapOp};
pub use ids::{Bdf, StreamId, Vmid};
pub use mem::{Cleaned, DmaMemory, OutOfMemory};
pub use reserved::ReservedRanges;
