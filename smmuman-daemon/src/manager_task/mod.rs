//! The manager task: the manager (`smmuman_server::Manager`) started over the board's IOMMU and
//! served.
//!
//! * [`setup`]: what both images share, over any `IommuBackend` (the aarch64 daemon over the
//!   SMMUv3, the x86-64 image over VT-d), host-tested: the manager's sizes from the board
//!   configuration (fault-log depth, quotas), its I/O address space, its construction, and one
//!   service pass (drain the IOMMU's fault records, retry orphaned objects).
//! * the aarch64 daemon's start-up over the SMMUv3 and its loop over the clients' mailboxes
//!   (`smmu.rs`, on the board only), re-exported here.

pub mod setup;

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
mod smmu;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub use smmu::*;
