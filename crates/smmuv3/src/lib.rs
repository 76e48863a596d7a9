//! A register-level driver for the Arm SMMUv3 (Arm IHI 0070), `no_std` and host-testable.

#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod features;
pub mod mmio;
mod regs;

pub use features::{pa_bits_from_code, pa_code_from_bits, Features};
pub use mmio::{Mmio, Reg32, Reg64, RegisterAccess};
