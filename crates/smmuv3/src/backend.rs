//! [`Smmuv3Backend`]: the [`IommuBackend`] the manager programs, built from the SMMUv3 driver
//! and `stage2` tables.
//!
//! * A **domain** is one stage-2 table and one VMID; every stream attached to it gets a stage-2
//!   STE (IHI 0070 §5.2, Config = 0b110) over that table.
//! * **Default deny with a record**: a stream nobody claimed is attached to the reserved
//!   *unclaimed* domain (VMID 0), an empty table with STE.S2R = 1, so each access it makes faults
//!   as F_TRANSLATION and is recorded. `Config = abort` would block silently (IHI 0070 §5.2 says
//!   no event is recorded for it), and an unrecorded attack is one nobody can investigate.
//! * **Invalidation before return**: an unmap issues the fewest TLBI commands for the range that
//!   went away (range form when IDR3.RIL) and one CMD_SYNC, then frees the tables the unmap
//!   emptied (after the SYNC: the SMMU's walk caches may hold them until then).
//! * **Never map the manager's memory**: ranges given to [`Smmuv3Backend::reserve`] (the image,
//!   stacks, the pool holding tables and queues) are refused by `map`.

use crate::driver::Smmu;
use crate::error::SmmuError;
use crate::event::{Direction as EvDirection, Event, EventType};
use crate::features::pa_code_from_bits;
use crate::gerror::GerrorFlags;
use crate::mmio::{Mmio, RegisterAccess};
use crate::ste::{S2Context, Ste};
use core::fmt;
use iommu_core::{
    Access, Direction, DmaMemory, DomainId, Fault, FaultDrain, FaultReason, IommuBackend, Iova,
    PhysAddr, StreamId, Vmid,
};
use stage2::{MapError, Stage2Config, Stage2Table};

/// Most domains one backend serves at once (besides the unclaimed one).
pub const MAX_DOMAINS: usize = 64;
/// Most streams one backend tracks.
pub const MAX_STREAMS: usize = 256;
/// Most reserved (never mappable) physical ranges.
pub const MAX_RESERVED: usize = 16;

/// Everything [`Smmuv3Backend`] can refuse.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BackendError {
    /// The driver failed (command error, timeout, out of memory, bad STE field).
    Smmu(SmmuError),
    /// The page-table change was refused (alignment, range, overlap, out of memory).
    Map(MapError),
    /// No such domain.
    UnknownDomain(DomainId),
    /// The domain still has streams attached.
    DomainInUse {
        /// The domain.
        domain: DomainId,
        /// How many streams are attached.
        streams: usize,
    },
    /// All [`MAX_DOMAINS`] domains are in use.
    TooManyDomains,
    /// All [`MAX_STREAMS`] stream slots are in use.
    TooManyStreams,
    /// All [`MAX_RESERVED`] reserved-range slots are in use.
    TooManyReserved,
    /// The unmap would split a live block, which needs IDR3.BBML = 2 (IHI 0070 §3.21.1.3) and
    /// this SMMU has less; unmap whole mappings instead.
    SplitNeedsBbml2 {
        /// Start of the refused unmap.
        iova: Iova,
        /// Its length.
        len: u64,
        /// The SMMU's IDR3.BBML.
        bbml: u8,
    },
    /// The physical range overlaps memory the manager keeps for itself.
    ReservedMemory {
        /// Start of the refused range.
        pa: PhysAddr,
        /// Its length.
        len: u64,
    },
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Smmu(e) => write!(f, "SMMU: {e}"),
            Self::Map(e) => write!(f, "page table: {e}"),
            Self::UnknownDomain(d) => write!(f, "no such domain: {d}"),
            Self::DomainInUse { domain, streams } => {
                write!(f, "{domain} still has {streams} stream(s) attached")
            }
            Self::TooManyDomains => write!(f, "all {MAX_DOMAINS} domains are in use"),
            Self::TooManyStreams => write!(f, "all {MAX_STREAMS} stream slots are in use"),
            Self::TooManyReserved => write!(f, "all {MAX_RESERVED} reserved ranges are in use"),
            Self::SplitNeedsBbml2 { iova, len, bbml } => write!(
                f,
                "unmapping {iova}+{len:#x} would split a block, which this SMMU (BBML {bbml}) cannot do live"
            ),
            Self::ReservedMemory { pa, len } => write!(
                f,
                "physical range {pa}+{len:#x} overlaps the manager's own memory"
            ),
        }
    }
}

impl From<SmmuError> for BackendError {
    fn from(e: SmmuError) -> Self {
        Self::Smmu(e)
    }
}

impl From<MapError> for BackendError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

#[derive(Debug)]
struct Domain {
    vmid: Vmid,
    table: Stage2Table,
}

/// An [`IommuBackend`] over one SMMUv3 (see the module docs for the rules it keeps).
#[derive(Debug)]
pub struct Smmuv3Backend<M: DmaMemory, R: RegisterAccess = Mmio> {
    smmu: Smmu<R>,
    mem: M,
    s2: Stage2Config,
    s2ps: u8,
    unclaimed: Stage2Table,
    domains: heapless::Vec<Option<Domain>, MAX_DOMAINS>,
    streams: heapless::Vec<(StreamId, Option<DomainId>), MAX_STREAMS>,
    reserved: heapless::Vec<(PhysAddr, u64), MAX_RESERVED>,
}

/// The reserved VMID of the unclaimed domain; domain `n` uses VMID `n + 1`.
const UNCLAIMED_VMID: Vmid = Vmid(0);

impl<M: DmaMemory, R: RegisterAccess> Smmuv3Backend<M, R> {
    /// A backend over a brought-up `smmu` whose tables live in `mem`.
    ///
    /// The IOVA space of every domain is the SMMU's whole output size (IHI 0070 §3.4: with
    /// stage 2 only, IAS = OAS), capped at 48 bits, and at 39 bits when the OAS is below 44
    /// (see [`Stage2Config::widest_for_oas`]).
    ///
    /// # Errors
    /// [`BackendError::Smmu`] when the SMMU is not running or its sizes give a stage-2
    /// context it would reject; [`BackendError::Map`] when the unclaimed table cannot be made.
    pub fn new(smmu: Smmu<R>, mut mem: M) -> Result<Self, BackendError> {
        if !smmu.is_running() {
            return Err(SmmuError::NotRunning.into());
        }
        let oas = smmu.features().oas_bits.unwrap_or(48).min(48);
        // IAS = OAS, except below a 44-bit OAS where a level-0 root is ILLEGAL (Arm ARM
        // AArch64.S2InvalidSL) and the IOVA space stops at 39 bits.
        let s2 = Stage2Config::widest_for_oas(oas);
        let s2ps = pa_code_from_bits(oas).ok_or(SmmuError::InvalidConfig {
            what: "OAS",
            value: oas.into(),
        })?;
        let unclaimed = Stage2Table::new(&mut mem, s2)?;
        let backend = Self {
            smmu,
            mem,
            s2,
            s2ps,
            unclaimed,
            domains: heapless::Vec::new(),
            streams: heapless::Vec::new(),
            reserved: heapless::Vec::new(),
        };
        backend
            .context(UNCLAIMED_VMID, &backend.unclaimed)
            .validate(backend.smmu.features())?;
        Ok(backend)
    }

    /// The driver, for statistics and diagnostics.
    pub fn smmu(&self) -> &Smmu<R> {
        &self.smmu
    }

    /// The driver and the memory its tables live in, for operations the backend does not wrap
    /// (fault injection in tests, reading an STE back).
    pub fn parts(&mut self) -> (&mut Smmu<R>, &mut M) {
        (&mut self.smmu, &mut self.mem)
    }

    /// The stage-2 geometry every domain uses.
    pub fn stage2_config(&self) -> Stage2Config {
        self.s2
    }

    /// Marks `[pa, pa + len)` as the manager's own memory: no domain may ever map it.
    ///
    /// # Errors
    /// [`BackendError::TooManyReserved`].
    pub fn reserve(&mut self, pa: PhysAddr, len: u64) -> Result<(), BackendError> {
        self.reserved
            .push((pa, len))
            .map_err(|_| BackendError::TooManyReserved)
    }

    /// Whether `[pa, pa + len)` overlaps a reserved range.
    pub fn is_reserved(&self, pa: PhysAddr, len: u64) -> bool {
        let end = pa.0.saturating_add(len);
        self.reserved
            .iter()
            .any(|&(r, rlen)| pa.0 < r.0.saturating_add(rlen) && r.0 < end)
    }

    /// The domain `sid` is attached to: `Some(None)` when it is known but unclaimed, `None`
    /// when the backend has never configured it.
    pub fn stream_domain(&self, sid: StreamId) -> Option<Option<DomainId>> {
        self.streams
            .iter()
            .find(|(s, _)| *s == sid)
            .map(|(_, d)| *d)
    }

    /// Where `iova` goes in `domain`, for diagnostics: `None` when it is not mapped.
    ///
    /// # Errors
    /// [`BackendError::UnknownDomain`].
    pub fn translate(
        &self,
        domain: DomainId,
        iova: Iova,
    ) -> Result<Option<stage2::table::Translation>, BackendError> {
        Ok(self.domain(domain)?.table.translate(&self.mem, iova))
    }

    fn context(&self, vmid: Vmid, table: &Stage2Table) -> S2Context {
        S2Context {
            vmid,
            s2ttb: table.root(),
            s2t0sz: table.t0sz(),
            s2sl0: table.sl0(),
            s2ps: self.s2ps,
            record_faults: true,
        }
    }

    fn domain(&self, id: DomainId) -> Result<&Domain, BackendError> {
        self.domains
            .get(usize::from(id.0))
            .and_then(Option::as_ref)
            .ok_or(BackendError::UnknownDomain(id))
    }

    fn set_stream(&mut self, sid: StreamId, domain: Option<DomainId>) -> Result<(), BackendError> {
        let ste = match domain {
            Some(id) => {
                let d = self.domain(id)?;
                Ste::s2_translate(&self.context(d.vmid, &d.table))
            }
            None => Ste::s2_translate(&self.context(UNCLAIMED_VMID, &self.unclaimed)),
        };
        let slot = self.streams.iter().position(|(s, _)| *s == sid);
        if slot.is_none() && self.streams.is_full() {
            return Err(BackendError::TooManyStreams);
        }
        self.smmu.install_ste(&mut self.mem, sid, &ste)?;
        match slot {
            Some(i) => self.streams[i].1 = domain,
            // Cannot fail: fullness was checked above.
            None => self
                .streams
                .push((sid, domain))
                .map_err(|_| BackendError::TooManyStreams)?,
        }
        Ok(())
    }
}

/// The backend-neutral view of an SMMU event record.
pub fn fault_from_event(ev: &Event) -> Fault {
    let reason = match ev.kind {
        EventType::FTranslation => FaultReason::Translation,
        EventType::FPermission => FaultReason::Permission,
        EventType::FAccess => FaultReason::AccessFlag,
        EventType::FAddrSize => FaultReason::AddressSize,
        EventType::CBadSte
        | EventType::CBadStreamId
        | EventType::FStreamDisabled
        | EventType::FTranslForbidden
        | EventType::CBadSubstreamId
        | EventType::CBadCd
        | EventType::FSteFetch
        | EventType::FCdFetch => FaultReason::BadConfig,
        _ => FaultReason::Other,
    };
    Fault {
        sid: ev.sid,
        addr: ev.input_addr.unwrap_or_default(),
        dir: ev.access.map(|a| match a.dir {
            EvDirection::Read => Direction::Read,
            EvDirection::Write => Direction::Write,
        }),
        reason,
        code: ev.kind.code(),
    }
}

impl<M: DmaMemory, R: RegisterAccess> IommuBackend for Smmuv3Backend<M, R> {
    type Error = BackendError;

    fn create_domain(&mut self) -> Result<DomainId, BackendError> {
        let slot = match self.domains.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.domains.is_full() => return Err(BackendError::TooManyDomains),
            None => {
                // Cannot fail: fullness was checked above.
                self.domains
                    .push(None)
                    .map_err(|_| BackendError::TooManyDomains)?;
                self.domains.len() - 1
            }
        };
        // Slot n uses VMID n + 1; VMID 0 is the unclaimed domain's.
        let vmid = Vmid(u16::try_from(slot + 1).map_err(|_| BackendError::TooManyDomains)?);
        let table = Stage2Table::new(&mut self.mem, self.s2)?;
        self.domains[slot] = Some(Domain { vmid, table });
        Ok(DomainId(slot as u16))
    }

    fn destroy_domain(&mut self, domain: DomainId) -> Result<(), BackendError> {
        let vmid = self.domain(domain)?.vmid;
        let streams = self
            .streams
            .iter()
            .filter(|(_, d)| *d == Some(domain))
            .count();
        if streams != 0 {
            return Err(BackendError::DomainInUse { domain, streams });
        }
        // The VMID is reused by the next domain in this slot: drop everything cached under it
        // before its tables go back to the allocator.
        self.smmu.invalidate_vmid(&mut self.mem, vmid)?;
        if let Some(d) = self.domains[usize::from(domain.0)].take() {
            d.table.destroy(&mut self.mem);
        }
        Ok(())
    }

    fn attach(&mut self, sid: StreamId, domain: DomainId) -> Result<(), BackendError> {
        self.domain(domain)?;
        self.set_stream(sid, Some(domain))
    }

    fn detach(&mut self, sid: StreamId) -> Result<(), BackendError> {
        self.set_stream(sid, None)
    }

    fn map(
        &mut self,
        domain: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<(), BackendError> {
        if self.is_reserved(pa, len) {
            return Err(BackendError::ReservedMemory { pa, len });
        }
        let Self { mem, domains, .. } = self;
        let d = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
            .ok_or(BackendError::UnknownDomain(domain))?;
        // Only invalid entries are filled; the SMMU caches none, so nothing to invalidate.
        d.table.map(mem, iova, pa, len, access)?;
        Ok(())
    }

    fn unmap(&mut self, domain: DomainId, iova: Iova, len: u64) -> Result<u64, BackendError> {
        let bbml = self.smmu.features().bbml;
        let Self { mem, domains, .. } = self;
        let d = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
            .ok_or(BackendError::UnknownDomain(domain))?;
        // Splitting a live block in place is only safe with IHI 0070 §3.21.1.3 level 2.
        if bbml < 2 && d.table.split_tables(mem, iova, len)? > 0 {
            return Err(BackendError::SplitNeedsBbml2 { iova, len, bbml });
        }
        let unmapped = d.table.unmap(mem, iova, len)?;
        let vmid = d.vmid;
        if let Some((start, span)) = unmapped.invalidation.range() {
            let leaf = unmapped.invalidation.leaf_only();
            self.smmu
                .invalidate_s2(&mut self.mem, vmid, start, span, leaf)?;
        }
        // The SYNC has completed: no walk cache can still hold the tables the unmap emptied.
        let Self { mem, domains, .. } = self;
        if let Some(d) = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
        {
            d.table.reclaim(mem);
        }
        Ok(unmapped.bytes)
    }

    fn drain_faults(&mut self, sink: &mut dyn FnMut(Fault)) -> Result<FaultDrain, BackendError> {
        let mut total = FaultDrain::default();
        loop {
            let report = self
                .smmu
                .drain_events(&mut self.mem, |ev| sink(fault_from_event(&ev)))?;
            total.delivered += u64::from(report.delivered);
            total.lost_at_least += u64::from(report.overflow_episodes);
            if !report.more_pending {
                break;
            }
        }
        let gerror = self.smmu.poll_gerror();
        if gerror.active.contains(GerrorFlags::SFM_ERR) {
            return Err(SmmuError::ServiceFailure.into());
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests;
