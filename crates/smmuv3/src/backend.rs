//! [`Smmuv3Backend`]: the [`IommuBackend`] the manager programs, built from the SMMUv3 driver
//! and `stage2` tables.
//!
//! * A **domain** is one stage-2 table and one VMID; every stream attached to it gets a stage-2
//!   STE (IHI 0070 §5.2, Config = 0b110) over that table.
//! * **Default deny with a record**: a stream nobody claimed is attached to the reserved
//!   *unclaimed* domain (VMID 0), an empty table with STE.S2R = 1, so each access it makes faults
//!   as F_TRANSLATION and is recorded. `Config = abort` would block silently (IHI 0070 §5.2 says
//!   no event is recorded for it), and an unrecorded attack is one nobody can investigate.
//! * **Invalidation before return** (IHI 0070 §4.4.13 CMD_TLBI_S2_IPA, §4.7.3 CMD_SYNC): an
//!   unmap, or a whole [`IommuBackend::unmap_batch`], ends with exactly one CMD_SYNC, then frees
//!   the tables it emptied (after the SYNC: the SMMU's walk caches may hold them until then).
//!   Before the SYNC: with IDR3.RIL, **one** range-form CMD_TLBI_S2_IPA per contiguous IPA span
//!   that lost its translation (spans that touch are joined; [`MAX_FLUSH_RANGES`] separate
//!   spans at most, else one over their hull), starting at the span's first page and covering
//!   less than 1/16 more pages than the span ([`crate::TlbiRange::covering`]), with TG = 4 KiB
//!   and TTL = the level of the removed leaves when they were all at one level and no table
//!   went (else TTL = 0). Without RIL: one single-address CMD_TLBI_S2_IPA per removed block
//!   or page (a 2 MiB block is one command) up to [`TLBI_PER_LEAF_LIMIT`] in the whole batch,
//!   else one CMD_TLBI_S12_VMALL.
//! * **A failed invalidation stays owed**: when the TLBI or its CMD_SYNC fails, the entries are
//!   already gone from memory but maybe not from the SMMU's caches. The domain keeps that
//!   invalidation (merged with any later one: the hull of the ranges, the union of the removed
//!   leaves, so it is still one range command, or per-leaf commands / VMALL without RIL) and
//!   the tables it retired; every later `map`, `unmap` and `attach` of the domain sends it
//!   first (in the same batch as the unmap's own commands) and frees those tables only after
//!   its CMD_SYNC completed; `destroy_domain` frees nothing unless its CMD_TLBI_S12_VMALL
//!   completed.
//! * **An unconfirmed STE keeps its domains**: when an STE update was written but its
//!   CMD_CFGI_STE + CMD_SYNC failed, the SMMU may use the old entry or the new one, so both
//!   domains are refused to `destroy_domain` ([`BackendError::SteUnconfirmed`]) until a later
//!   update of that stream succeeds.
//! * **Never map the manager's memory**: ranges given to [`Smmuv3Backend::reserve`] (the image,
//!   stacks, the pool holding tables and queues) are refused by `map`.

use crate::cmd::{tlbi_s2_covering, Command, S2Span, TLBI_PER_LEAF_LIMIT};
use crate::coherency::Dma;
use crate::driver::Smmu;
use crate::error::SmmuError;
use crate::event::{Direction as EvDirection, Event, EventType};
use crate::features::{pa_code_from_bits, Features};
use crate::gerror::GerrorFlags;
use crate::mmio::{Mmio, RegisterAccess};
use crate::ste::{S2Context, Ste};
use core::fmt;
use iommu_core::{
    Access, Direction, DmaMemory, DomainId, Fault, FaultDrain, FaultReason, IommuBackend, Iova,
    MapOp, PhysAddr, StreamId, Vmid,
};
use stage2::{Invalidation, MapError, Stage2Config, Stage2Table, TableReserve};

/// Most domains one backend serves at once (besides the unclaimed one).
pub const MAX_DOMAINS: usize = 64;
/// Most streams one backend tracks.
pub const MAX_STREAMS: usize = 256;
/// Most reserved (never mappable) physical ranges.
pub const MAX_RESERVED: usize = 16;
/// Most separate IPA ranges one invalidation (one CMD_SYNC) sends a range command each for, on
/// an SMMU with IDR3.RIL; a batch that leaves more gets one range command over their hull.
pub const MAX_FLUSH_RANGES: usize = 32;

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
    /// `[iova, iova + len)` reaches past the domain's input address size (2^`ias_bits`; IHI
    /// 0070 §3.4: the stage-2 input size is STE.S2T0SZ's). A caller's mistake, found before
    /// anything (hardware included) was touched.
    OutOfRange {
        /// Start of the refused range.
        iova: Iova,
        /// Its length.
        len: u64,
        /// The domain's input address size in bits.
        ias_bits: u8,
    },
    /// A stream's last STE update was written to memory but its CMD_CFGI_STE + CMD_SYNC did not
    /// complete, so the SMMU may still be using an STE that points at `domain`: its tables
    /// stay until that stream's STE is rewritten successfully (retry `attach` or `detach`).
    SteUnconfirmed {
        /// The domain that may still be in use.
        domain: DomainId,
        /// The stream whose STE update was not confirmed.
        sid: StreamId,
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
            Self::OutOfRange {
                iova,
                len,
                ias_bits,
            } => write!(
                f,
                "IOVA range {iova}+{len:#x} reaches past the {ias_bits}-bit input address space"
            ),
            Self::SteUnconfirmed { domain, sid } => write!(
                f,
                "{domain} may still be used by StreamID {sid}: its last STE update was not \
                 confirmed by the SMMU (retry attach or detach)"
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
    /// Invalidation owed for entries already cleared from `table` whose CMD_TLBI / CMD_SYNC
    /// failed: until it completes, the SMMU's TLB and walk caches may still hold them, so the
    /// tables those unmaps retired stay allocated and every later change of the domain sends
    /// it first.
    pending: Invalidation,
}

/// What the backend knows of one stream's STE.
#[derive(Clone, Copy, Debug)]
struct StreamRecord {
    sid: StreamId,
    /// The domain the STE in memory points at (`None`: the unclaimed domain).
    domain: Option<DomainId>,
    /// Bit `n`: the SMMU may still be using an STE that points at domain slot `n`, because an
    /// STE update was written but its CMD_CFGI_STE + CMD_SYNC did not complete (IHI 0070
    /// §3.21.3: until then the SMMU may use the old entry or the new one). Cleared by the next
    /// successful update of the stream.
    unconfirmed: u64,
}

/// `unconfirmed` bit of a domain slot (slots are below [`MAX_DOMAINS`] = 64).
const fn domain_bit(d: DomainId) -> u64 {
    1u64.wrapping_shl(d.0 as u32)
}

/// Whether an `install_ste` failure may have left a changed STE in memory: every failure after
/// the entry was written (command errors, timeouts, service failure). The ones before it
/// (no level-2 table, StreamID out of range, driver not running) changed nothing.
const fn ste_may_have_changed(e: &SmmuError) -> bool {
    !matches!(
        e,
        SmmuError::NotRunning | SmmuError::StreamIdOutOfRange { .. } | SmmuError::OutOfMemory(_)
    )
}

/// The span of `inv`, with its Leaf and TTL hints.
fn span_of(inv: &Invalidation) -> Option<S2Span> {
    inv.range().map(|(iova, len)| S2Span {
        iova,
        len,
        leaf: inv.leaf_only(),
        ttl: inv.ttl().unwrap_or(0),
    })
}

/// Commands one flush may send: a range command per separate span, or per-leaf commands.
const FLUSH_COMMANDS: usize = if MAX_FLUSH_RANGES > TLBI_PER_LEAF_LIMIT {
    MAX_FLUSH_RANGES
} else {
    TLBI_PER_LEAF_LIMIT
};

/// The invalidation one CMD_SYNC completes for a domain: what a (batch of) unmap(s) removed,
/// plus whatever the domain still owed.
#[derive(Debug)]
struct Flush {
    /// Everything, merged: what stays owed if the flush fails.
    total: Invalidation,
    /// Each invalidation as added (without RIL: each names its own leaf addresses, so a batch
    /// of a block here and pages there stays per-leaf); `None` once more came than it holds.
    parts: Option<heapless::Vec<Invalidation, MAX_FLUSH_RANGES>>,
    /// The separate spans, those that touch joined, for one range command each (RIL).
    spans: heapless::Vec<S2Span, MAX_FLUSH_RANGES>,
    /// More separate spans than `spans` holds: one range command over `total`'s hull instead.
    hull_only: bool,
}

impl Flush {
    fn new() -> Self {
        Self {
            total: Invalidation::none(),
            parts: Some(heapless::Vec::new()),
            spans: heapless::Vec::new(),
            hull_only: false,
        }
    }

    fn add(&mut self, inv: Invalidation) {
        let Some(mut span) = span_of(&inv) else {
            return;
        };
        self.total = self.total.merge(inv);
        if let Some(parts) = self.parts.as_mut() {
            if parts.push(inv).is_err() {
                self.parts = None;
            }
        }
        if self.hull_only {
            return;
        }
        // Join with every span it touches (a join may make it touch another).
        let mut i = 0;
        while i < self.spans.len() {
            match self.spans[i].join(span) {
                Some(joined) => {
                    span = joined;
                    self.spans.swap_remove(i);
                    i = 0;
                }
                None => i += 1,
            }
        }
        if self.spans.push(span).is_err() {
            self.hull_only = true;
        }
    }

    /// The commands, without the CMD_SYNC (see the module docs for the rule).
    fn commands(&self, features: &Features, vmid: Vmid) -> heapless::Vec<Command, FLUSH_COMMANDS> {
        let mut out = heapless::Vec::new();
        let Some(hull) = span_of(&self.total) else {
            return out;
        };
        let vmall = |out: &mut heapless::Vec<Command, FLUSH_COMMANDS>| {
            out.clear();
            // Cannot fail: the vector was just emptied.
            let _ = out.push(Command::TlbiS12Vmall { vmid });
        };
        if features.ril {
            let mut spans = self.spans.clone();
            if self.hull_only {
                spans.clear();
                // Cannot fail: the vector was just emptied.
                let _ = spans.push(hull);
            }
            spans.sort_unstable_by_key(|s| s.iova.get());
            for cmd in spans.iter().filter_map(|&s| tlbi_s2_covering(vmid, s)) {
                if out.push(cmd).is_err() {
                    vmall(&mut out);
                    break;
                }
            }
        } else {
            // One address per leaf of each part (an address that hits it, at the part's
            // smallest leaf size), up to the limit; past it, or when a part would need more,
            // the whole VMID.
            let Some(parts) = self.parts.as_ref() else {
                vmall(&mut out);
                return out;
            };
            'parts: for part in parts {
                let Some(leaves) = part.leaves() else {
                    vmall(&mut out);
                    break;
                };
                for (ipa, _size) in leaves {
                    let cmd = Command::TlbiS2Ipa {
                        vmid,
                        ipa,
                        leaf: part.leaf_only(),
                        range: None,
                    };
                    if out.len() == TLBI_PER_LEAF_LIMIT || out.push(cmd).is_err() {
                        vmall(&mut out);
                        break 'parts;
                    }
                }
            }
            if out.is_empty() {
                // A range with no address named: never made by stage2, but never skip it.
                vmall(&mut out);
            }
        }
        out
    }
}

/// Whether two windows share an IOVA; the first shared one if so.
fn overlap(a: (Iova, u64), b: (Iova, u64)) -> Option<Iova> {
    let (a_end, b_end) = (a.0.get().saturating_add(a.1), b.0.get().saturating_add(b.1));
    (a.0.get() < b_end && b.0.get() < a_end).then(|| Iova(a.0.get().max(b.0.get())))
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
    streams: heapless::Vec<StreamRecord, MAX_STREAMS>,
    reserved: iommu_core::ReservedRanges<MAX_RESERVED>,
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
        let unclaimed = Stage2Table::new(&mut Dma::new(&mut mem, smmu.is_coherent()), s2)?;
        let backend = Self {
            smmu,
            mem,
            s2,
            s2ps,
            unclaimed,
            domains: heapless::Vec::new(),
            streams: heapless::Vec::new(),
            reserved: iommu_core::ReservedRanges::default(),
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
            .reserve(pa, len)
            .map_err(|_| BackendError::TooManyReserved)
    }

    /// Whether `[pa, pa + len)` overlaps a reserved range.
    pub fn is_reserved(&self, pa: PhysAddr, len: u64) -> bool {
        self.reserved.overlaps(pa, len)
    }

    /// The domain `sid` is attached to: `Some(None)` when it is known but unclaimed, `None`
    /// when the backend has never configured it.
    pub fn stream_domain(&self, sid: StreamId) -> Option<Option<DomainId>> {
        self.streams.iter().find(|r| r.sid == sid).map(|r| r.domain)
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

    /// Sends the invalidation `domain` still owes (see [`Domain::pending`]) and waits for its
    /// CMD_SYNC; only then frees the tables its unmaps retired. Nothing is sent when nothing
    /// is owed.
    ///
    /// # Errors
    /// The driver's; the invalidation then stays owed and the tables stay allocated.
    fn settle(&mut self, domain: DomainId) -> Result<(), BackendError> {
        let mut flush = Flush::new();
        flush.add(self.domain(domain)?.pending);
        self.flush(domain, &flush)
    }

    /// Sends `flush` (which must include what `domain` owed) followed by exactly one CMD_SYNC
    /// (IHI 0070 §4.7.3) and waits for it; then nothing is owed and the retired tables are
    /// freed. Sends nothing when there is nothing to invalidate.
    ///
    /// # Errors
    /// The driver's; `flush` then stays owed (merged into [`Domain::pending`]) and the tables
    /// stay allocated.
    fn flush(&mut self, domain: DomainId, flush: &Flush) -> Result<(), BackendError> {
        let Self {
            smmu, mem, domains, ..
        } = self;
        let d = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
            .ok_or(BackendError::UnknownDomain(domain))?;
        let cmds = flush.commands(smmu.features(), d.vmid);
        if !cmds.is_empty() {
            // Owed until the CMD_SYNC completes (`flush.total` includes what was owed).
            d.pending = flush.total;
            smmu.submit(mem, &cmds)?;
            d.pending = Invalidation::none();
        }
        // The CMD_SYNC has completed: no walk cache can still hold the tables the unmaps
        // emptied (IHI 0070 §3.21.1).
        d.table.reclaim(mem);
        Ok(())
    }

    fn set_stream(&mut self, sid: StreamId, domain: Option<DomainId>) -> Result<(), BackendError> {
        let ste = match domain {
            Some(id) => {
                let d = self.domain(id)?;
                Ste::s2_translate(&self.context(d.vmid, &d.table))
            }
            None => Ste::s2_translate(&self.context(UNCLAIMED_VMID, &self.unclaimed)),
        };
        let slot = self.streams.iter().position(|r| r.sid == sid);
        if slot.is_none() && self.streams.is_full() {
            return Err(BackendError::TooManyStreams);
        }
        let result = self.smmu.install_ste(&mut self.mem, sid, &ste);
        let unconfirmed = match &result {
            Ok(()) => 0,
            Err(e) if ste_may_have_changed(e) => {
                // The SMMU may use the old STE (cached) or the new one (in memory): both
                // domains stay alive until a later update of this stream succeeds.
                let old = slot.map_or(
                    StreamRecord {
                        sid,
                        domain: None,
                        unconfirmed: 0,
                    },
                    |i| self.streams[i],
                );
                let mut bits = old.unconfirmed;
                for d in [old.domain, domain].into_iter().flatten() {
                    bits |= domain_bit(d);
                }
                log::error!(
                    "smmuv3 backend: STE update of StreamID {sid} not confirmed; keeping the \
                     domains it may point at"
                );
                bits
            }
            Err(e) => return Err((*e).into()),
        };
        let record = StreamRecord {
            sid,
            domain,
            unconfirmed,
        };
        match slot {
            Some(i) => self.streams[i] = record,
            // Cannot fail: fullness was checked above.
            None => self
                .streams
                .push(record)
                .map_err(|_| BackendError::TooManyStreams)?,
        }
        result.map_err(Into::into)
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
        let coherent = self.smmu.is_coherent();
        let table = Stage2Table::new(&mut Dma::new(&mut self.mem, coherent), self.s2)?;
        self.domains[slot] = Some(Domain {
            vmid,
            table,
            pending: Invalidation::none(),
        });
        Ok(DomainId(slot as u16))
    }

    fn destroy_domain(&mut self, domain: DomainId) -> Result<(), BackendError> {
        let vmid = self.domain(domain)?.vmid;
        if let Some(r) = self
            .streams
            .iter()
            .find(|r| r.unconfirmed & domain_bit(domain) != 0)
        {
            return Err(BackendError::SteUnconfirmed { domain, sid: r.sid });
        }
        let streams = self
            .streams
            .iter()
            .filter(|r| r.domain == Some(domain))
            .count();
        if streams != 0 {
            return Err(BackendError::DomainInUse { domain, streams });
        }
        // The VMID is reused by the next domain in this slot: drop everything cached under it
        // before its tables go back to the allocator. This also covers an invalidation the
        // domain still owes; on failure the domain and all its tables stay.
        self.smmu.invalidate_vmid(&mut self.mem, vmid)?;
        if let Some(d) = self.domains[usize::from(domain.0)].take() {
            d.table.destroy(&mut self.mem);
        }
        Ok(())
    }

    fn attach(&mut self, sid: StreamId, domain: DomainId) -> Result<(), BackendError> {
        // A stream joining the domain shares its VMID's TLB entries: stale ones go first.
        self.settle(domain)?;
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

    fn unmap(&mut self, domain: DomainId, iova: Iova, len: u64) -> Result<u64, BackendError> {
        self.unmap_batch(domain, &[(iova, len)])
    }

    /// Checks every window before writing any: reserved memory, then the domain, then each
    /// window as [`Stage2Table::map`] would (length, alignment, access, range, overlap with
    /// existing mappings), then overlaps between windows of the batch. Then it completes an
    /// invalidation the domain still owed, allocates every table the batch may need (the sum
    /// of each window's count, an upper bound) and only then writes. A map fills invalid
    /// entries only, which the SMMU never caches (IHI 0070 §3.21.1), so no command is sent.
    ///
    /// # Errors
    /// Refusals, nothing changed: [`BackendError::ReservedMemory`],
    /// [`BackendError::UnknownDomain`], [`BackendError::Map`] (for an overlap inside the batch,
    /// [`MapError::Overlap`] names the first IOVA both windows hold; out of memory for the
    /// tables). Hardware failure of the owed invalidation: nothing mapped, still owed.
    fn map_batch(&mut self, domain: DomainId, batch: &[MapOp]) -> Result<(), BackendError> {
        if let Some(op) = batch.iter().find(|op| self.is_reserved(op.pa, op.len)) {
            return Err(BackendError::ReservedMemory {
                pa: op.pa,
                len: op.len,
            });
        }
        self.domain(domain)?;
        let coherent = self.smmu.is_coherent();
        let mut tables = 0usize;
        {
            let Self { mem, domains, .. } = &mut *self;
            let d = domains
                .get_mut(usize::from(domain.0))
                .and_then(Option::as_mut)
                .ok_or(BackendError::UnknownDomain(domain))?;
            let mem = &mut Dma::new(mem, coherent);
            for op in batch {
                tables = tables
                    .saturating_add(d.table.map_tables(mem, op.iova, op.pa, op.len, op.access)?);
            }
        }
        for (i, a) in batch.iter().enumerate() {
            for b in &batch[..i] {
                if let Some(iova) = overlap((a.iova, a.len), (b.iova, b.len)) {
                    return Err(MapError::Overlap { iova }.into());
                }
            }
        }
        // An invalidation still owed means the TLB may translate these IOVAs to their old
        // memory: complete it before they can be given new memory.
        self.settle(domain)?;
        let Self { mem, domains, .. } = self;
        let d = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
            .ok_or(BackendError::UnknownDomain(domain))?;
        let mut reserve = TableReserve::new(&mut *mem, tables).map_err(MapError::from)?;
        let mut written = 0;
        let mut failed = None;
        for op in batch {
            let mut dma = Dma::new(&mut reserve, coherent);
            match d.table.map(&mut dma, op.iova, op.pa, op.len, op.access) {
                Ok(_none) => written += 1,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        reserve.release();
        let Some(e) = failed else {
            return Ok(());
        };
        // Not reached: every window was checked and its tables reserved. Should it happen,
        // undo the windows already written; devices may have used them, so this is an unmap
        // with its invalidation (owed if it fails).
        log::error!("smmuv3 backend: map_batch failed after its checks ({e}); undoing it");
        let mut flush = Flush::new();
        flush.add(d.pending);
        let mem = &mut Dma::new(mem, coherent);
        for op in &batch[..written] {
            if let Ok(u) = d.table.unmap(mem, op.iova, op.len) {
                flush.add(u.invalidation);
                d.pending = flush.total;
            }
        }
        self.flush(domain, &flush)?;
        Err(e.into())
    }

    /// Checks every span first (input range, then length and alignment, then, below IDR3.BBML
    /// = 2, whether it would split a block), allocates every table its block splits need,
    /// clears every span, then invalidates them all with one CMD_SYNC (see the module docs for
    /// the commands) and only then frees the emptied tables.
    ///
    /// # Errors
    /// Refusals, nothing touched: [`BackendError::UnknownDomain`], [`BackendError::OutOfRange`],
    /// [`BackendError::Map`] (length, alignment, out of memory for splits),
    /// [`BackendError::SplitNeedsBbml2`]. Hardware failure (a TLBI or the CMD_SYNC): every span
    /// is cleared from the tables but maybe not from the SMMU's caches; the whole batch's
    /// invalidation stays owed (merged with earlier debts, see the module docs) and the emptied
    /// tables stay allocated until a later `map`, `unmap`, `unmap_batch` or `attach` of the
    /// domain completes it.
    fn unmap_batch(
        &mut self,
        domain: DomainId,
        batch: &[(Iova, u64)],
    ) -> Result<u64, BackendError> {
        let bbml = self.smmu.features().bbml;
        let ias_bits = self.s2.ias_bits;
        self.domain(domain)?;
        // Checked before anything else, hardware included: a caller's mistake, its own error.
        if let Some(&(iova, len)) = batch.iter().find(|&&(iova, len)| {
            iova.get()
                .checked_add(len)
                .is_none_or(|end| end > 1u64 << ias_bits)
        }) {
            return Err(BackendError::OutOfRange {
                iova,
                len,
                ias_bits,
            });
        }
        let coherent = self.smmu.is_coherent();
        let Self { mem, domains, .. } = &mut *self;
        let d = domains
            .get_mut(usize::from(domain.0))
            .and_then(Option::as_mut)
            .ok_or(BackendError::UnknownDomain(domain))?;
        let mut splits = 0usize;
        for &(iova, len) in batch {
            // Tables the splits link and their side pages: set aside below, so the batch
            // cannot run out of memory half way.
            let pages = d
                .table
                .split_pages(&mut Dma::new(mem, coherent), iova, len)?;
            // Splitting a live block in place is only safe with IHI 0070 §3.21.1.3 level 2
            // (a split always links a table; side pages come only with one).
            if bbml < 2 && pages > 0 {
                return Err(BackendError::SplitNeedsBbml2 { iova, len, bbml });
            }
            splits = splits.saturating_add(pages);
        }
        let mut reserve = TableReserve::new(&mut *mem, splits).map_err(MapError::from)?;
        let mut flush = Flush::new();
        flush.add(d.pending);
        let mut bytes = 0u64;
        let mut failed = None;
        for &(iova, len) in batch {
            match d
                .table
                .unmap(&mut Dma::new(&mut reserve, coherent), iova, len)
            {
                Ok(u) => {
                    bytes = bytes.saturating_add(u.bytes);
                    flush.add(u.invalidation);
                    // From here the entries are gone from memory but maybe not from the
                    // SMMU's caches: owed until the CMD_SYNC completes.
                    d.pending = flush.total;
                }
                // Not reached (checked, tables reserved); the spans cleared so far are still
                // invalidated below, and the error returned.
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        reserve.release();
        self.flush(domain, &flush)?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(bytes),
        }
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
