//! The client library of the smmuman manager, and the declaration of its interface.
//!
//! VMM processes ("qvm-like" clients) talk to the resident manager by message passing to give
//! their VMs' pass-through DMA devices a window onto the VM's memory and to read back the faults
//! the IOMMU recorded. This crate is everything both sides share, and everything a client needs:
//!
//! * [`interface`]: **the op table**, declared once (by the `interface!` macro in [`declare`]).
//!   It generates [`Op`], [`OPS`], every request/reply type with its wire encoding, the
//!   server-side [`ManagerOps`] trait and [`dispatch`], and the typed methods of [`Client`].
//! * [`wire`], [`header`], [`message`]: the versioned, little-endian, fixed-layout wire format
//!   (`docs/protocol.md`). Decoding trusts no byte: sizes, version, op, and every field's range.
//! * [`error`]: protocol errors (the message was malformed) kept apart from domain errors (the
//!   manager's rules refused it), and [`CallError`] for clients.
//! * [`transport`]: [`Transport`], the one thing a VMM swaps to link this library elsewhere;
//!   `loopback` (feature `loopback`) is the host-test transport.
//! * [`policy`]: [`VmmDmaPolicy`], the start-up rules every VMM must apply (no manager → no
//!   DMA pass-through, unknown device → refuse, unity-mapped → start with a loud warning).
//!
//! ```
//! use smmuman_api::{Client, NoManager, CallError, TransportError};
//! // No manager running: connecting says so.
//! let err = Client::connect(NoManager).unwrap_err();
//! assert_eq!(err, CallError::Transport(TransportError::NoManager));
//! assert_eq!(
//!     err.to_string(),
//!     "the smmuman manager is not running (nothing answers on its channel)"
//! );
//! ```

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]
#![forbid(unsafe_code)]

#[macro_use]
pub mod declare;
pub mod batch;
pub mod client;
pub mod error;
pub mod header;
pub mod interface;
#[cfg(feature = "loopback")]
pub mod loopback;
pub mod message;
pub mod policy;
pub mod transport;
pub mod types;
pub mod wire;

pub use batch::{
    MapBatch, MapEntry, MappingPage, UnmapBatch, MAPPINGS_PER_PAGE, MAP_BATCH, UNMAP_BATCH,
};
pub use client::Client;
pub use declare::{FieldInfo, OpHeading, OpInfo};
pub use error::{CallError, DomainError, ProtocolError, Refusal, ReplyError, TransportError};
pub use interface::*;
pub use policy::{
    Decision, Known, PassThrough, Problem, Reachability, VmDescription, VmmDmaPolicy,
};
pub use transport::{NoManager, Transport};
pub use types::{
    is_window_access, ClientId, DeviceSel, DmaWindow, FaultBatch, FaultPage, FaultRecord,
    IovaRange, IovaRanges, IovaSpan, MapFlags, NotifyState, ObjectFlags, ObjectId, PciMatch,
    FAULTS_PER_PAGE, FAULT_RUN_GAP, WINDOW_ACCESS,
};
pub use wire::{MAX_MESSAGE, VERSION};

#[cfg(test)]
mod tests;
