//! [`IommuBackend`]: what the manager asks of an IOMMU, with no register in sight.
//!
//! SMMUv3 and (later) VT-d implement this trait side by side; the manager's policy code and its
//! host tests (against a fake backend) only see this. Every method that changes a translation
//! finishes its invalidation before it returns, so when the caller hears `Ok`, no device can
//! still use the old translation.

use crate::access::Access;
use crate::addr::{Iova, PhysAddr};
use crate::ids::StreamId;
use core::fmt;

/// A translation domain: one set of IOVA → PA mappings shared by every device attached to it
/// (a VM's DMA window).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DomainId(pub u16);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain{}", self.0)
    }
}

/// Direction of the access that faulted, as the device issued it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Direction {
    /// The device read memory (DMA to the device).
    Read,
    /// The device wrote memory (DMA from the device).
    Write,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Read => "read",
            Direction::Write => "write",
        })
    }
}

/// Why the IOMMU refused an access, in terms common to every IOMMU.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FaultReason {
    /// No translation for the address (outside every window).
    Translation,
    /// A translation exists but does not allow this access (e.g. a write to a read-only window).
    Permission,
    /// The translation is not marked accessed (a table-construction bug, never expected).
    AccessFlag,
    /// The address is wider than the translation regime allows.
    AddressSize,
    /// The stream has no valid configuration (unclaimed StreamID, or a rejected configuration).
    BadConfig,
    /// Any other recorded event.
    Other,
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultReason::Translation => "translation",
            FaultReason::Permission => "permission",
            FaultReason::AccessFlag => "access-flag",
            FaultReason::AddressSize => "address-size",
            FaultReason::BadConfig => "bad-config",
            FaultReason::Other => "other",
        })
    }
}

/// One access the IOMMU refused and recorded.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Fault {
    /// The stream that issued the access.
    pub sid: StreamId,
    /// The address the device used (before translation).
    pub addr: Iova,
    /// Read or write, where the record says.
    pub dir: Option<Direction>,
    /// Why it was refused.
    pub reason: FaultReason,
    /// The hardware's own event code (SMMUv3 event type, VT-d fault reason), for the log.
    pub code: u8,
}

/// What one pass over the IOMMU's fault records found.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FaultDrain {
    /// Records handed to the callback.
    pub delivered: u64,
    /// Records the hardware had to drop because its queue was full. Hardware only says *that*
    /// records were lost, not how many, so this is a lower bound (one per overflow seen).
    pub lost_at_least: u64,
}

/// An IOMMU, seen from the manager.
pub trait IommuBackend {
    /// The backend's error type; its `Display` names what was refused and why.
    type Error: fmt::Display + fmt::Debug;

    /// Creates an empty domain (no mapping: every access through it faults and is recorded).
    ///
    /// # Errors
    /// When the backend runs out of domain tags or table memory.
    fn create_domain(&mut self) -> Result<DomainId, Self::Error>;

    /// Destroys a domain that no stream is attached to, freeing its tables.
    ///
    /// # Errors
    /// When the domain does not exist or streams are still attached.
    fn destroy_domain(&mut self, domain: DomainId) -> Result<(), Self::Error>;

    /// Points `sid` at `domain`: from the return on, the stream's DMA is translated by the
    /// domain's mappings and everything else faults and is recorded.
    ///
    /// # Errors
    /// When the stream or domain is unknown to the backend.
    fn attach(&mut self, sid: StreamId, domain: DomainId) -> Result<(), Self::Error>;

    /// Puts `sid` back to default deny: every access faults and is recorded.
    ///
    /// # Errors
    /// When the stream is out of the backend's range.
    fn detach(&mut self, sid: StreamId) -> Result<(), Self::Error>;

    /// Maps `[iova, iova + len)` to `[pa, pa + len)` with `access` in `domain`.
    ///
    /// # Errors
    /// Misaligned or out-of-range addresses, overlap with an existing mapping, no table memory.
    /// On error nothing changed.
    fn map(
        &mut self,
        domain: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<(), Self::Error>;

    /// Removes every mapping in `[iova, iova + len)` of `domain` and invalidates the IOMMU's
    /// caches for it; returns the number of bytes that were mapped.
    ///
    /// # Errors
    /// Misaligned or out-of-range addresses, or no memory to split a block. On error nothing
    /// changed.
    fn unmap(&mut self, domain: DomainId, iova: Iova, len: u64) -> Result<u64, Self::Error>;

    /// Hands every recorded fault to `sink`, oldest first.
    ///
    /// # Errors
    /// When the IOMMU reports an error it could not recover from.
    fn drain_faults(&mut self, sink: &mut dyn FnMut(Fault)) -> Result<FaultDrain, Self::Error>;
}
