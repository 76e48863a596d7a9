//! The operator's (admin) protocol of the smmuman manager, declared once.
//!
//! VMMs reach the manager as clients (`smmuman-api`); the operator reaches it over a channel of
//! its own (on QEMU a chardev socket, `docs/operator.md`) with `smmuctl`. Both speak the same
//! 16-byte header and field encoding (`smmuman_api::header`, `smmuman_api::wire`), but the
//! operator's ops have their own numbers, [`ADMIN_OP_BASE`] and up, which no client op uses: a
//! client that sends one gets `UnknownOp` from the client dispatcher, and the admin dispatcher
//! ([`dispatch`]) is a separate entry point that only the operator's channel calls.
//!
//! * [`interface`]: **the op table** (by the `admin_interface!` macro of [`declare`]). It
//!   generates [`AdminOp`], [`ADMIN_OPS`], every request and reply type, the server's
//!   [`AdminOps`] trait and [`dispatch`], and the typed methods of [`AdminClient`].
//! * [`types`]: the rows of the listings (units, devices, groups, VMs, objects, regions,
//!   grants), fixed-size names and the small enums.
//! * [`frame`]: how messages travel on a byte stream (the header's `payload_len` delimits
//!   them).
//! * `docs/operator-protocol.md` is generated from the declaration
//!   (`cargo run -p smmuman-admin-api --example operator_protocol -- --write
//!   docs/operator-protocol.md`); a test fails when it is stale.
//!
//! ```
//! use smmuman_admin_api::{AdminOp, ADMIN_OP_BASE};
//! // No admin op number is a client op number.
//! for op in AdminOp::ALL {
//!     assert!(op.number() >= ADMIN_OP_BASE);
//!     assert!(smmuman_api::Op::from_u16(op.number()).is_none());
//! }
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]
#![forbid(unsafe_code)]

#[macro_use]
pub mod declare;
pub mod client;
pub mod frame;
pub mod interface;
pub mod types;

pub use client::{AdminCallError, AdminClient};
pub use declare::{AdminOpInfo, RowInfo};
pub use interface::*;
pub use types::*;

/// The first admin op number. Client ops are numbered from 1 and stay below it; the op table
/// checks at compile time that no admin op number is a client op.
pub const ADMIN_OP_BASE: u16 = 0x100;

/// The version of the admin op table ([`AdminHelloReply::admin_version`]): bumped when an op's
/// layout or meaning changes. The header's version is the client protocol's (one header, one
/// field encoding).
pub const ADMIN_VERSION: u16 = 1;

#[cfg(test)]
mod tests;
