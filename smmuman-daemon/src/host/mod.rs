//! The host: what the product image does once the platform is up (the host loop, `run.rs`,
//! on the board only, re-exported here), and what it decides without the board
//! ([`stage2_check`], host-tested), with the VMs' run-time life cycle ([`lifecycle`]: the
//! start/stop/state API the operator's channel calls).

pub mod lifecycle;
pub mod stage2_check;

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
mod run;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub use run::*;
