//! Code that only an Arm CPU runs: the boot entry and semihosting (`aarch64`).

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod aarch64;
