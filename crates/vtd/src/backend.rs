//! [`VtdBackend`]: the [`IommuBackend`] the manager programs, built from the VT-d [`Unit`] and
//! `stage2` tables in the VT-d second-level format ([`VtdSecondLevel`]), mirroring the SMMUv3
//! backend above the same seam.
//!
//! * A **domain** is one `Stage2Table<VtdSecondLevel>` (3 or 4 levels, as CAP.SAGAW allows) and
//!   one domain-id (DID, VT-d §9.3); domain slot `n` uses DID `n + 1` (DID 0 is reserved when
//!   caching mode is on, VT-d §6.2.2, and we never use it).
//! * **StreamId = requester id**: the manager's `StreamId` is the PCI requester id
//!   (`bus << 8 | devfn`), which is also the source-id of the unit's fault records (VT-d
//!   §3.4.1). A unit cannot tell platform (MMIO) devices apart, so
//!   [`IommuBackend::distinguishes_platform_devices`] is `false`.
//! * **Default deny with a record**: [`Unit::bring_up`] leaves every requester without a
//!   present context entry; `detach` makes the requester's entry not present again
//!   ([`Unit::set_context`] with `None`), so each of its requests faults and is recorded.
//! * **Map**: the table is written (cache lines cleaned when ECAP.C = 0, then GCMD.WBF when
//!   CAP.RWBF, [`Unit::table_written`]), then [`Unit::mapped`]: with CAP.CM = 1 the unit may
//!   have cached the not-present entries just filled (VT-d §6.1), so they are invalidated like
//!   an unmap (page-selective IOTLB invalidation, VT-d §6.5.2.3; IH set only when the batch
//!   wrote leaves alone, clear when it linked a new table); with CM = 0 nothing is sent.
//! * **Unmap**: the entries are cleared, then the returned [`Invalidation`] becomes
//!   page-selective IOTLB descriptors for its range ([`Unit::invalidate_range`], IH set when
//!   only leaves went, VT-d §6.5.2.3) followed by a wait descriptor (§6.5.2.8); only once it
//!   completed are the tables the unmap emptied freed ([`Stage2Table::reclaim`]): until then
//!   the unit's paging-structure caches may still point into them.
//! * **Partial unmap of a superpage**: the walker replaces the 2 MiB / 1 GiB leaf, in one
//!   64-bit store, with a table mapping the rest of it as before, then the hole is invalidated
//!   (a page-selective invalidation evicts every IOTLB entry overlapping its range, superpages
//!   included, VT-d §6.5.2.3). VT-d has no break-before-make rule for this change: both the old
//!   and the new entry translate every address outside the hole the same way.
//! * **A failed invalidation stays owed** (merged with later ones) and the tables stay
//!   allocated; every later `map`, `unmap` and `attach` of the domain sends it first.
//! * **An unconfirmed context entry keeps its domains**: when [`Unit::set_context`] wrote the
//!   entry but its invalidation failed, the unit may use the old entry or the new one; both
//!   domains are refused to `destroy_domain` until a later update of that requester succeeds.
//! * **Never map the manager's memory**: ranges given to [`VtdBackend::reserve`] are refused.

use crate::context::{ContextEntry, DomainTag};
use crate::driver::Unit;
use crate::error::VtdError;
use crate::fault::FaultRecord;
use crate::features::AddressWidth;
use crate::mmio::{Mmio, RegisterAccess};
use crate::qi::InvDescriptor;
use core::fmt;
use iommu_core::{
    Access, Bdf, DmaMemory, DomainId, Fault, FaultDrain, IommuBackend, Iova, MapOp, PhysAddr,
    StreamId,
};
use stage2::format::VtdSecondLevel;
use stage2::{Invalidation, MapError, Stage2Config, Stage2Table, TableReserve};

/// Most domains one backend serves at once.
pub const MAX_DOMAINS: usize = 64;
/// Most requesters one backend tracks.
pub const MAX_STREAMS: usize = 256;
/// Most reserved (never mappable) physical ranges.
pub const MAX_RESERVED: usize = 16;

/// Everything [`VtdBackend`] can refuse.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VtdBackendError {
    /// The driver failed (queue error, timeout, out of memory, not running).
    Vtd(VtdError),
    /// The page-table change was refused (alignment, range, overlap, out of memory).
    Map(MapError),
    /// No such domain.
    UnknownDomain(DomainId),
    /// The domain still has requesters attached.
    DomainInUse {
        /// The domain.
        domain: DomainId,
        /// How many requesters are attached.
        streams: usize,
    },
    /// All [`MAX_DOMAINS`] domains are in use (or the unit has fewer domain-ids, CAP.ND).
    TooManyDomains,
    /// All [`MAX_STREAMS`] requester slots are in use.
    TooManyStreams,
    /// All [`MAX_RESERVED`] reserved-range slots are in use.
    TooManyReserved,
    /// The StreamId is not a 16-bit PCI requester id, the only thing a VT-d unit can tell
    /// apart.
    NotARequesterId(StreamId),
    /// The physical range overlaps memory the manager keeps for itself.
    ReservedMemory {
        /// Start of the refused range.
        pa: PhysAddr,
        /// Its length.
        len: u64,
    },
    /// `[iova, iova + len)` reaches past the domain's input address width (the AGAW).
    OutOfRange {
        /// Start of the refused range.
        iova: Iova,
        /// Its length.
        len: u64,
        /// The domain's input address width in bits.
        ias_bits: u8,
    },
    /// A requester's last context-entry update was written but its invalidation did not
    /// complete, so the unit may still use an entry that points at `domain`.
    ContextUnconfirmed {
        /// The domain that may still be in use.
        domain: DomainId,
        /// The requester whose update was not confirmed.
        sid: StreamId,
    },
}

impl fmt::Display for VtdBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vtd(e) => write!(f, "VT-d: {e}"),
            Self::Map(e) => write!(f, "page table: {e}"),
            Self::UnknownDomain(d) => write!(f, "no such domain: {d}"),
            Self::DomainInUse { domain, streams } => {
                write!(f, "{domain} still has {streams} requester(s) attached")
            }
            Self::TooManyDomains => write!(f, "no domain-id left"),
            Self::TooManyStreams => write!(f, "all {MAX_STREAMS} requester slots are in use"),
            Self::TooManyReserved => write!(f, "all {MAX_RESERVED} reserved ranges are in use"),
            Self::NotARequesterId(sid) => {
                write!(f, "StreamID {sid} is not a PCI requester id (VT-d)")
            }
            Self::ReservedMemory { pa, len } => {
                write!(f, "{pa}+{len:#x} overlaps the manager's own memory")
            }
            Self::OutOfRange {
                iova,
                len,
                ias_bits,
            } => write!(
                f,
                "{iova}+{len:#x} reaches past the domain's {ias_bits}-bit address width"
            ),
            Self::ContextUnconfirmed { domain, sid } => write!(
                f,
                "{domain} may still be used by requester {sid} (context update not confirmed)"
            ),
        }
    }
}

impl From<VtdError> for VtdBackendError {
    fn from(e: VtdError) -> Self {
        Self::Vtd(e)
    }
}

impl From<MapError> for VtdBackendError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

#[derive(Debug)]
struct Domain {
    did: DomainTag,
    table: Stage2Table<VtdSecondLevel>,
    /// Invalidation owed for entries already cleared whose IOTLB invalidation failed.
    pending: Invalidation,
}

#[derive(Clone, Copy, Debug)]
struct StreamRecord {
    sid: StreamId,
    /// The domain the context entry in memory points at (`None`: not present, deny).
    domain: Option<DomainId>,
    /// Bit `n`: the unit may still use an entry pointing at domain slot `n`.
    unconfirmed: u64,
}

const fn domain_bit(d: DomainId) -> u64 {
    1u64.wrapping_shl(d.0 as u32)
}

/// `mem`, with each word written cleaned to memory when the unit does not snoop (ECAP.C = 0,
/// VT-d §11.4.3): its page walks read memory, not the CPU caches.
type Flushed<'m, M> = iommu_core::Cleaned<'m, M>;

/// The manager's view of one VT-d remapping unit.
#[derive(Debug)]
pub struct VtdBackend<M: DmaMemory, R: RegisterAccess = Mmio> {
    unit: Unit<R>,
    mem: M,
    cfg: Stage2Config,
    fmt: VtdSecondLevel,
    aw: AddressWidth,
    domains: heapless::Vec<Option<Domain>, MAX_DOMAINS>,
    streams: heapless::Vec<StreamRecord, MAX_STREAMS>,
    reserved: iommu_core::ReservedRanges<MAX_RESERVED>,
}

/// The requester id a StreamId names on VT-d.
fn bdf_of(sid: StreamId) -> Result<Bdf, VtdBackendError> {
    u16::try_from(sid.0)
        .map(Bdf::from_rid)
        .map_err(|_| VtdBackendError::NotARequesterId(sid))
}

/// The backend-neutral view of a VT-d fault record: the source-id (requester id) is the
/// StreamId, the page address, the direction FRCD.T gives, and the reason FRCD.FR.
pub fn fault_from_record(r: &FaultRecord) -> Fault {
    Fault {
        sid: StreamId(u32::from(r.source.rid())),
        addr: r.addr,
        dir: Some(r.dir),
        reason: r.reason.common(),
        code: r.reason.0,
    }
}

impl<M: DmaMemory, R: RegisterAccess> VtdBackend<M, R> {
    /// A backend over a brought-up `unit` whose tables live in `mem`. Every domain translates
    /// the unit's widest supported address width (CAP.SAGAW: 48 bits with 4-level tables, else
    /// 39 with 3 levels) to host addresses below `2^host_address_bits` (the DMAR's HAW + 1).
    ///
    /// # Errors
    /// [`VtdError::NotRunning`] when the unit is not translating, the feature error when it
    /// supports neither 3- nor 4-level tables, [`MapError`] for a host width out of range.
    pub fn new(unit: Unit<R>, mem: M, host_address_bits: u8) -> Result<Self, VtdBackendError> {
        if !unit.translating() {
            return Err(VtdError::NotRunning.into());
        }
        let aw = unit.features().address_width().map_err(VtdError::from)?;
        let cfg = Stage2Config {
            ias_bits: aw.bits(),
            oas_bits: host_address_bits,
        };
        cfg.validate()?;
        let f = unit.features();
        let fmt = VtdSecondLevel {
            superpage_2m: f.superpage_2m,
            superpage_1g: f.superpage_1g,
            snoop: f.snoop_control,
        };
        Ok(Self {
            unit,
            mem,
            cfg,
            fmt,
            aw,
            domains: heapless::Vec::new(),
            streams: heapless::Vec::new(),
            reserved: iommu_core::ReservedRanges::default(),
        })
    }

    /// The driver, for statistics and diagnostics.
    pub fn unit(&self) -> &Unit<R> {
        &self.unit
    }

    /// The driver and the memory its tables live in, for what the backend does not wrap.
    pub fn parts(&mut self) -> (&mut Unit<R>, &mut M) {
        (&mut self.unit, &mut self.mem)
    }

    /// The table geometry every domain uses.
    pub fn stage2_config(&self) -> Stage2Config {
        self.cfg
    }

    /// The second-level format every domain's table is written in.
    pub fn format(&self) -> VtdSecondLevel {
        self.fmt
    }

    /// Marks `[pa, pa + len)` as the manager's own memory: no domain may ever map it.
    ///
    /// # Errors
    /// [`VtdBackendError::TooManyReserved`].
    pub fn reserve(&mut self, pa: PhysAddr, len: u64) -> Result<(), VtdBackendError> {
        self.reserved
            .reserve(pa, len)
            .map_err(|_| VtdBackendError::TooManyReserved)
    }

    /// Whether `[pa, pa + len)` overlaps a reserved range.
    pub fn is_reserved(&self, pa: PhysAddr, len: u64) -> bool {
        self.reserved.overlaps(pa, len)
    }

    /// The domain `sid` is attached to: `Some(None)` when known but denied, `None` when the
    /// backend never configured it.
    pub fn stream_domain(&self, sid: StreamId) -> Option<Option<DomainId>> {
        self.streams.iter().find(|r| r.sid == sid).map(|r| r.domain)
    }

    /// Where `iova` goes in `domain`, for diagnostics.
    ///
    /// # Errors
    /// [`VtdBackendError::UnknownDomain`].
    pub fn translate(
        &self,
        domain: DomainId,
        iova: Iova,
    ) -> Result<Option<stage2::table::Translation>, VtdBackendError> {
        Ok(self.domain(domain)?.table.translate(&self.mem, iova))
    }

    fn domain(&self, id: DomainId) -> Result<&Domain, VtdBackendError> {
        self.domains
            .get(usize::from(id.0))
            .and_then(Option::as_ref)
            .ok_or(VtdBackendError::UnknownDomain(id))
    }

    fn coherent(&self) -> bool {
        self.unit.features().coherent
    }

    /// Invalidates `inv` (which must include what `domain` owed) in `domain`'s DID and waits;
    /// then nothing is owed and the tables its unmaps retired are freed.
    ///
    /// # Errors
    /// The driver's; `inv` then stays owed and the tables stay allocated.
    fn flush(&mut self, domain: DomainId, inv: Invalidation) -> Result<(), VtdBackendError> {
        let Self {
            unit, mem, domains, ..
        } = self;
        let d = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
            .ok_or(VtdBackendError::UnknownDomain(domain))?;
        if let Some((iova, len)) = inv.range() {
            d.pending = inv;
            unit.invalidate_range(mem, d.did, iova, len, inv.leaf_only())?;
            d.pending = Invalidation::none();
        }
        // The wait descriptor completed: no cache of the unit can still point into the
        // tables the unmaps emptied (VT-d §6.5.2.8).
        d.table.reclaim(mem);
        Ok(())
    }

    /// Sends what `domain` still owes, if anything.
    fn settle(&mut self, domain: DomainId) -> Result<(), VtdBackendError> {
        let owed = self.domain(domain)?.pending;
        self.flush(domain, owed)
    }

    fn set_stream(
        &mut self,
        sid: StreamId,
        domain: Option<DomainId>,
    ) -> Result<(), VtdBackendError> {
        let bdf = bdf_of(sid)?;
        let entry = match domain {
            Some(id) => {
                let d = self.domain(id)?;
                Some(ContextEntry {
                    did: d.did,
                    aw: self.aw,
                    slptptr: d.table.root(),
                })
            }
            None => None,
        };
        let slot = self.streams.iter().position(|r| r.sid == sid);
        if slot.is_none() && self.streams.is_full() {
            return Err(VtdBackendError::TooManyStreams);
        }
        let result = self.unit.set_context(&mut self.mem, bdf, entry);
        let old = slot.map_or(
            StreamRecord {
                sid,
                domain: None,
                unconfirmed: 0,
            },
            |i| self.streams[i],
        );
        let unconfirmed = match &result {
            Ok(()) => 0,
            // Refused before anything was written.
            Err(VtdError::DomainIdOutOfRange { .. } | VtdError::NotRunning) => {
                return result.map_err(Into::into)
            }
            Err(_) => {
                log::error!(
                    "vtd backend: context update of requester {bdf} not confirmed; keeping the \
                     domains it may point at"
                );
                let mut bits = old.unconfirmed;
                for d in [old.domain, domain].into_iter().flatten() {
                    bits |= domain_bit(d);
                }
                bits
            }
        };
        let record = StreamRecord {
            sid,
            domain,
            unconfirmed,
        };
        match slot {
            Some(i) => self.streams[i] = record,
            None => self
                .streams
                .push(record)
                .map_err(|_| VtdBackendError::TooManyStreams)?,
        }
        result.map_err(Into::into)
    }

    /// Unmaps `batch` from `domain`'s table (no invalidation) with `splits` pages set aside
    /// first for the superpages it splits (tables and their side pages) (so the batch cannot run out of memory half
    /// way); returns the bytes removed and the invalidation owed, merged with what the domain
    /// already owed.
    ///
    /// # Errors
    /// [`VtdBackendError::UnknownDomain`]; [`MapError::OutOfMemory`] when the `splits` pages
    /// are not there: nothing was touched.
    fn clear(
        &mut self,
        domain: DomainId,
        batch: &[(Iova, u64)],
        splits: usize,
    ) -> Result<(u64, Invalidation, Option<MapError>), VtdBackendError> {
        let coherent = self.coherent();
        let Self { mem, domains, .. } = self;
        let d = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
            .ok_or(VtdBackendError::UnknownDomain(domain))?;
        let mut reserve = TableReserve::new(mem, splits).map_err(MapError::from)?;
        let mut inv = d.pending;
        let mut bytes = 0u64;
        let mut failed = None;
        for &(iova, len) in batch {
            match d
                .table
                .unmap(&mut Flushed::new(&mut reserve, coherent), iova, len)
            {
                Ok(u) => {
                    bytes = bytes.saturating_add(u.bytes);
                    inv = inv.merge(u.invalidation);
                    // Gone from memory, maybe not from the IOTLB: owed until the wait completes.
                    d.pending = inv;
                }
                // Not reached for a batch whose splits were counted (they are set aside).
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        reserve.release();
        Ok((bytes, inv, failed))
    }
}

impl<M: DmaMemory, R: RegisterAccess> IommuBackend for VtdBackend<M, R> {
    type Error = VtdBackendError;

    /// A VT-d unit identifies requests by PCI requester id only (VT-d §3.4.1).
    fn distinguishes_platform_devices(&self) -> bool {
        false
    }

    fn create_domain(&mut self) -> Result<DomainId, VtdBackendError> {
        let slot = match self.domains.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.domains
                    .push(None)
                    .map_err(|_| VtdBackendError::TooManyDomains)?;
                self.domains.len() - 1
            }
        };
        let did = DomainTag(u16::try_from(slot + 1).map_err(|_| VtdBackendError::TooManyDomains)?);
        if self.unit.check_did(did).is_err() {
            return Err(VtdBackendError::TooManyDomains);
        }
        let coherent = self.coherent();
        let table = Stage2Table::with_format(
            &mut Flushed::new(&mut self.mem, coherent),
            self.cfg,
            self.fmt,
        )?;
        self.domains[slot] = Some(Domain {
            did,
            table,
            pending: Invalidation::none(),
        });
        Ok(DomainId(slot as u16))
    }

    fn destroy_domain(&mut self, domain: DomainId) -> Result<(), VtdBackendError> {
        let did = self.domain(domain)?.did;
        if let Some(r) = self
            .streams
            .iter()
            .find(|r| r.unconfirmed & domain_bit(domain) != 0)
        {
            return Err(VtdBackendError::ContextUnconfirmed { domain, sid: r.sid });
        }
        let streams = self
            .streams
            .iter()
            .filter(|r| r.domain == Some(domain))
            .count();
        if streams != 0 {
            return Err(VtdBackendError::DomainInUse { domain, streams });
        }
        // The DID is reused by the next domain in this slot: drop everything cached under it
        // (VT-d §6.5.2.3, domain-selective) before its tables go back to the allocator.
        self.unit
            .submit(&mut self.mem, &[InvDescriptor::IotlbDomain { did }])?;
        if let Some(d) = self.domains[usize::from(domain.0)].take() {
            d.table.destroy(&mut self.mem);
        }
        Ok(())
    }

    fn attach(&mut self, sid: StreamId, domain: DomainId) -> Result<(), VtdBackendError> {
        bdf_of(sid)?;
        self.settle(domain)?;
        self.set_stream(sid, Some(domain))
    }

    fn detach(&mut self, sid: StreamId) -> Result<(), VtdBackendError> {
        self.set_stream(sid, None)
    }

    fn map(
        &mut self,
        domain: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<(), VtdBackendError> {
        self.map_batch(
            domain,
            &[MapOp {
                iova,
                pa,
                len,
                access,
            }],
        )
    }

    fn unmap(&mut self, domain: DomainId, iova: Iova, len: u64) -> Result<u64, VtdBackendError> {
        self.unmap_batch(domain, &[(iova, len)])
    }

    /// Checks every window first (reserved memory, the domain, each window as
    /// [`Stage2Table::map`] would, overlaps inside the batch), completes what the domain owed,
    /// writes the windows, then (CAP.CM) invalidates the not-present entries they replaced.
    ///
    /// # Errors
    /// Refusals, nothing changed. Hardware failure: of the owed invalidation, nothing mapped;
    /// of the caching-mode invalidation, the windows are unmapped again (their invalidation
    /// owed) and the error returned.
    fn map_batch(&mut self, domain: DomainId, batch: &[MapOp]) -> Result<(), VtdBackendError> {
        if let Some(op) = batch.iter().find(|op| self.is_reserved(op.pa, op.len)) {
            return Err(VtdBackendError::ReservedMemory {
                pa: op.pa,
                len: op.len,
            });
        }
        self.domain(domain)?;
        let coherent = self.coherent();
        {
            let Self { mem, domains, .. } = &mut *self;
            let d = domains
                .get_mut(usize::from(domain.0))
                .and_then(Option::as_mut)
                .ok_or(VtdBackendError::UnknownDomain(domain))?;
            for op in batch {
                d.table.map_tables(mem, op.iova, op.pa, op.len, op.access)?;
            }
        }
        for (i, a) in batch.iter().enumerate() {
            for b in &batch[..i] {
                let (a_end, b_end) = (a.iova.0 + a.len, b.iova.0 + b.len);
                if a.iova.0 < b_end && b.iova.0 < a_end {
                    let iova = Iova(a.iova.0.max(b.iova.0));
                    return Err(MapError::Overlap { iova }.into());
                }
            }
        }
        // An owed invalidation means the IOTLB may still send these IOVAs to their old memory.
        self.settle(domain)?;
        let Self {
            unit, mem, domains, ..
        } = &mut *self;
        let d = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
            .ok_or(VtdBackendError::UnknownDomain(domain))?;
        let mut written = 0;
        let mut failed: Option<VtdBackendError> = None;
        // Whether any window linked a new table (a non-leaf entry changed): its caching-mode
        // invalidation then goes without the IH hint ([`Unit::mapped`]).
        let mut tables_linked = false;
        for op in batch {
            let tables_before = d.table.table_pages();
            match d.table.map(
                &mut Flushed::new(&mut *mem, coherent),
                op.iova,
                op.pa,
                op.len,
                op.access,
            ) {
                Ok(_none) => written += 1,
                Err(e) => {
                    failed = Some(e.into());
                    break;
                }
            }
            tables_linked |= d.table.table_pages() != tables_before;
        }
        // Visible to the walker (cleaned above when ECAP.C = 0; GCMD.WBF when CAP.RWBF).
        let root = d.table.root();
        if let Err(e) = unit.table_written(mem, root, 8) {
            failed = failed.or(Some(e.into()));
        }
        if failed.is_none() {
            for op in batch {
                if let Err(e) = unit.mapped(mem, d.did, op.iova, op.len, tables_linked) {
                    failed = Some(e.into());
                    break;
                }
            }
        }
        let Some(e) = failed else {
            return Ok(());
        };
        log::error!("vtd backend: map_batch failed after its checks ({e}); undoing it");
        let spans: heapless::Vec<(Iova, u64), 64> = batch[..written]
            .iter()
            .map(|op| (op.iova, op.len))
            .take(64)
            .collect();
        let (_, inv, _) = self.clear(domain, &spans, 0)?;
        self.flush(domain, inv)?;
        Err(e)
    }

    /// Checks every span's range first and counts the pages its superpage splits need
    /// ([`Stage2Table::split_pages`]; an upper bound: the sum over the spans), sets them aside, clears every span, then
    /// invalidates the hull of what went with page-selective descriptors and one wait, and
    /// only then frees emptied tables. So a batch is all or nothing: without memory for every
    /// split, nothing is unmapped.
    ///
    /// # Errors
    /// Refusals, nothing touched: [`VtdBackendError::UnknownDomain`],
    /// [`VtdBackendError::OutOfRange`], [`VtdBackendError::Map`] (length, alignment, memory
    /// for a superpage split). Hardware failure: the spans are cleared from the tables but
    /// maybe not from the IOTLB; the invalidation stays owed and the tables allocated.
    fn unmap_batch(
        &mut self,
        domain: DomainId,
        batch: &[(Iova, u64)],
    ) -> Result<u64, VtdBackendError> {
        let ias_bits = self.cfg.ias_bits;
        self.domain(domain)?;
        if let Some(&(iova, len)) = batch.iter().find(|&&(iova, len)| {
            iova.get()
                .checked_add(len)
                .is_none_or(|end| end > 1u64 << ias_bits)
        }) {
            return Err(VtdBackendError::OutOfRange {
                iova,
                len,
                ias_bits,
            });
        }
        let mut splits = 0usize;
        {
            let coherent = self.coherent();
            let Self { mem, domains, .. } = &mut *self;
            let d = domains
                .get_mut(usize::from(domain.0))
                .and_then(Option::as_mut)
                .ok_or(VtdBackendError::UnknownDomain(domain))?;
            for &(iova, len) in batch {
                let pages = d
                    .table
                    .split_pages(&mut Flushed::new(mem, coherent), iova, len)?;
                splits = splits.saturating_add(pages);
            }
        }
        let (bytes, inv, failed) = self.clear(domain, batch, splits)?;
        let root = self.domain(domain)?.table.root();
        self.unit.table_written(&mut self.mem, root, 8)?;
        self.flush(domain, inv)?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(bytes),
        }
    }

    fn drain_faults(&mut self, sink: &mut dyn FnMut(Fault)) -> Result<FaultDrain, VtdBackendError> {
        let report = self.unit.drain_faults(|r| sink(fault_from_record(&r)));
        Ok(FaultDrain {
            delivered: report.delivered,
            lost_at_least: u64::from(report.overflowed),
        })
    }
}

#[cfg(test)]
mod tests;
