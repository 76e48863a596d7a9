//! `libsmmu`: the smmuman client library ([`smmuman_api`]) for VMMs written in C.
//!
//! A static library (`libsmmu.a`, built by `crates/libsmmu`) with a generated header (`include/smmu.h`, made by `cbindgen`
//! from this crate; `tests/header.rs` fails when the committed one is stale), shaped like QNX's
//! `libsmmu`: connect, create and destroy a VM object, add PCI or MMIO devices to it, add and
//! remove mappings with arrays of ranges, read its faults; every call returns a status code
//! (`smmu_strerror` gives its fixed text, `smmu_last_error` the full message of a client's last
//! failure). `docs/c-api.md` has an example.
//!
//! * Same rules as the Rust client: every argument goes through the client library's own
//!   constructors before anything is sent (`calls`), so C cannot send what Rust would refuse.
//! * No OS assumed: C hands in its transport (`smmu_transport`: a context and one function
//!   that sends a request and waits for the reply), and the library holds its clients in a
//!   fixed table (`clients`): no heap, `no_std` on bare metal.
//! * No unwinding across the boundary: the code cannot panic (no indexing, `unwrap`, `expect`,
//!   arithmetic that can overflow: clippy denies them below), so no panic can reach C. The
//!   archive itself is `crates/libsmmu` (a staticlib of this crate, with the panic handler a
//!   bare-metal archive needs); a Rust image that links C VMMs depends on this rlib and keeps
//!   its own panic handler.
//! * Test-only: feature `test-manager` adds an in-process manager over the model IOMMU
//!   (`smmu_test_manager_*`) for the C smoke test; the product archive never has it.

#![cfg_attr(target_os = "none", no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::arithmetic_side_effects
    )
)]

pub mod calls;
pub mod clients;
pub mod policy;
pub mod status;
#[cfg(feature = "test-manager")]
pub mod test_manager;
pub mod transport;
pub mod types;

pub use calls::*;
pub use clients::{smmu_client_t, SMMU_MAX_CLIENTS, SMMU_NO_CLIENT};
pub use policy::*;
pub use status::*;
pub use transport::*;
pub use types::*;

#[cfg(test)]
mod tests;
