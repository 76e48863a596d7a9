//! Physical memory: the plan ([`layout`]), the allocators ([`frame_alloc`]), the checked RAM
//! accessor ([`ram_window`]) and the two pools built from them:
//!
//! * [`DaemonMemory`]: the daemon's own pool, from which the SMMU's stream tables, queues and
//!   page tables are allocated; implements [`iommu_core::DmaMemory`].
//! * [`GuestMemory`]: the pool from which DMA target buffers are carved, with byte-level access
//!   for scenarios that fill a buffer, let a device copy it, and compare.

pub mod frame_alloc;
pub mod layout;
pub mod ram_window;
pub mod range;

mod daemon_memory;
mod guest_memory;

pub use daemon_memory::DaemonMemory;
pub use frame_alloc::{FrameAllocator, FrameError};
pub use guest_memory::{pattern_byte, GuestMemory, Mismatch};
pub use layout::{LayoutError, MemoryPlan, Reserved, ReservedKind};
pub use ram_window::RamWindow;
pub use range::PhysRange;
