//! `libsmmu.a`: the static library a C VMM links; its entry points are `smmuman-capi`'s (see
//! that crate and `docs/c-api.md`), declared in `crates/smmuman-capi/include/smmu.h`.
//!
//! On bare metal (`--target aarch64-unknown-none`) the archive is `no_std` and brings the panic
//! handler a staticlib needs. Nothing in `smmuman-capi` panics (clippy denies what could), so
//! it is never reached; were it reached, stopping the CPU is all that is safe.

#![cfg_attr(target_os = "none", no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]
#![forbid(unsafe_code)]

pub use smmuman_capi::*;

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
