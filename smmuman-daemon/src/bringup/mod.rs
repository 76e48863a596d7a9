//! Bring-up: from the device tree in x0 to a [`platform::Platform`] whose SMMU the manager may
//! program, or a refused start.
//!
//! * [`start`]: the device tree checked and parsed, the console, the fail-safe armed, the
//!   EL2 MMU on, the interrupts, the boot arguments, then discovery.
//! * [`platform`]: what discovery found (board, config, memory plan, PCI), and each device's
//!   registers handed over once.
//! * [`iommu`]: the SMMU's bring-up, its event drain and its abort.
//! * [`refusal`]: a start refused by the config (`FATAL reason=config`), every SMMU aborting.

pub mod iommu;
pub mod platform;
pub mod refusal;
mod start;

pub use start::{start, StartOptions, Started};
