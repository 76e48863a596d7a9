//! [`IommuBackend`]: what the manager asks of an IOMMU, with no register in sight.
//!
//! SMMUv3 and (later) VT-d implement this trait side by side; the manager's policy code and its
//! host tests (against a fake backend) only see this. Every method that changes a translation
//! finishes its invalidation before it returns, so when the caller hears `Ok`, no device can
//! still use the old translation.
//!
//! # After an error
//!
//! Errors come in two kinds, and each method says which it can return:
//!
//! * **Refusals** (unknown domain, bad arguments, out of range, overlap, no memory, still in
//!   use): found before anything changed. Hardware was not touched and nothing changed.
//! * **Hardware failures** (a command the IOMMU rejected, could not fetch or did not complete
//!   in time): the change may be **half done**. The backend then keeps the state that is safe
//!   whatever the hardware did, never the optimistic one: memory that hardware may still read
//!   is not freed, and an invalidation that did not complete is owed and sent again (before
//!   anything else is done to that domain) until it completes. The caller may retry the same
//!   call; it must not assume the old state is back, nor that the new one is in effect.

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

/// One window of a [`IommuBackend::map_batch`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct MapOp {
    /// First I/O address.
    pub iova: Iova,
    /// First host-physical address.
    pub pa: PhysAddr,
    /// Length in bytes.
    pub len: u64,
    /// What the devices may do.
    pub access: Access,
}

/// An IOMMU, seen from the manager.
pub trait IommuBackend {
    /// The backend's error type; its `Display` names what was refused and why.
    type Error: fmt::Display + fmt::Debug;

    /// Whether the IOMMU can tell platform (MMIO) devices apart from each other and from PCI
    /// functions. An SMMUv3 can (each platform device has its own StreamID from the firmware,
    /// IHI 0070 §3.2); a VT-d unit cannot (it identifies requests by PCI requester id only,
    /// VT-d §3.4.1), so its backend says `false` and the manager refuses to give a platform
    /// device to a client on it.
    fn distinguishes_platform_devices(&self) -> bool {
        true
    }

    /// Creates an empty domain (no mapping: every access through it faults and is recorded).
    ///
    /// # Errors
    /// When the backend runs out of domain tags or table memory.
    fn create_domain(&mut self) -> Result<DomainId, Self::Error>;

    /// Destroys a domain that no stream is attached to, freeing its tables.
    ///
    /// # Errors
    /// Refusals: the domain does not exist; streams are attached; or a stream's STE update
    /// failed and the hardware may still be using the domain (a successful `attach` or `detach`
    /// of that stream settles it). Hardware failure: the invalidation of the domain's cached
    /// translations did not complete. After any error the domain still exists, with all its
    /// tables and mappings, and the call may be retried.
    fn destroy_domain(&mut self, domain: DomainId) -> Result<(), Self::Error>;

    /// Points `sid` at `domain`: from the return on, the stream's DMA is translated by the
    /// domain's mappings and everything else faults and is recorded.
    ///
    /// # Errors
    /// Refusals: the stream or domain is unknown to the backend; nothing changed. Hardware
    /// failure: the stream may now use `domain` **or** whatever it used before (its new
    /// configuration may be in memory without the hardware having re-read it); neither domain
    /// can be destroyed until an `attach` or `detach` of the stream succeeds.
    fn attach(&mut self, sid: StreamId, domain: DomainId) -> Result<(), Self::Error>;

    /// Puts `sid` back to default deny: every access faults and is recorded.
    ///
    /// # Errors
    /// Refusal: the stream is out of the backend's range; nothing changed. Hardware failure:
    /// the stream may still use its old domain, which cannot be destroyed until an `attach` or
    /// `detach` of the stream succeeds.
    fn detach(&mut self, sid: StreamId) -> Result<(), Self::Error>;

    /// Maps `[iova, iova + len)` to `[pa, pa + len)` with `access` in `domain`.
    ///
    /// # Errors
    /// Refusals: misaligned or out-of-range addresses, overlap with an existing mapping, no
    /// table memory; nothing changed. Hardware failure: an invalidation the domain still owed
    /// from an earlier failed `unmap` did not complete; nothing was mapped.
    fn map(
        &mut self,
        domain: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<(), Self::Error>;

    /// Removes every mapping in `[iova, iova + len)` of `domain` and invalidates the IOMMU's
    /// caches for it; returns the number of bytes whose mapping this call removed.
    ///
    /// # Errors
    /// Refusals, checked before anything is touched: a range past the domain's input address
    /// size (its own error, distinct from the others), misaligned addresses, no memory to split
    /// a block; nothing changed. Hardware failure: the mappings are gone from the tables but the
    /// IOMMU may still hold them in its caches, so devices may still reach that memory: the
    /// caller must keep treating the range as mapped (not reuse or free the memory) and retry.
    /// The backend keeps the invalidation owed and the emptied tables allocated; the retry (or
    /// any later `map`, `unmap` or `attach` of the domain) sends the invalidation first, and
    /// its `Ok` means it completed. A retry finds the entries already gone, so it may return
    /// fewer bytes (0) than the manager expected.
    fn unmap(&mut self, domain: DomainId, iova: Iova, len: u64) -> Result<u64, Self::Error>;

    /// Maps every window of `batch` in `domain`, all or nothing: on a refusal (checked for
    /// every window before the first is written, overlaps within the batch included) nothing
    /// changed. A map needs no invalidation, so a batch costs no more commands than one map.
    ///
    /// The default maps one by one and, if one is refused, unmaps the ones already made (an
    /// `unmap` each); backends override it to check first and write once.
    ///
    /// # Errors
    /// As [`IommuBackend::map`]; `Err` means nothing of the batch is mapped (or, on a hardware
    /// failure while undoing, the state `unmap`'s failure describes).
    fn map_batch(&mut self, domain: DomainId, batch: &[MapOp]) -> Result<(), Self::Error> {
        for (i, op) in batch.iter().enumerate() {
            if let Err(e) = self.map(domain, op.iova, op.pa, op.len, op.access) {
                for done in batch.iter().take(i).rev() {
                    self.unmap(domain, done.iova, done.len)?;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes every mapping inside each span of `batch` and invalidates them; returns the
    /// bytes whose mapping this call removed. Backends override it to invalidate the whole
    /// batch with one synchronisation (one CMD_SYNC on SMMUv3); the default unmaps span by
    /// span. Refusals are checked for every span before anything is touched.
    ///
    /// # Errors
    /// As [`IommuBackend::unmap`].
    fn unmap_batch(&mut self, domain: DomainId, batch: &[(Iova, u64)]) -> Result<u64, Self::Error> {
        let mut bytes = 0;
        for &(iova, len) in batch {
            bytes += self.unmap(domain, iova, len)?;
        }
        Ok(bytes)
    }

    /// Hands every recorded fault to `sink`, oldest first. Records the hardware dropped are
    /// counted in [`FaultDrain::lost_at_least`], a lower bound.
    ///
    /// # Errors
    /// When the IOMMU reports an error it could not recover from (e.g. service failure); the
    /// faults delivered before it are not delivered again.
    fn drain_faults(&mut self, sink: &mut dyn FnMut(Fault)) -> Result<FaultDrain, Self::Error>;
}
