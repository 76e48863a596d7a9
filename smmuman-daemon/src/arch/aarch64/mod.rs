//! The AArch64 boot entry and the console of last resort.
//!
//! * [`boot`]: the arm64 `Image` header, stacks, .bss, VBAR_EL2, then `rust_main` (defined by
//!   the image's shim, `src/main.rs` or `scenarios/main.rs`).
//! * [`semihosting`]: Arm semihosting, for errors found before the UART is known.

pub mod boot;
pub mod semihosting;
