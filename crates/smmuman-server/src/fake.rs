//! [`FakeIommu`]: a model IOMMU for host tests (feature `fake`).
//!
//! Domains are maps of I/O ranges to host ranges; streams point at a domain or nowhere (deny).
//! [`FakeIommu::translate`] answers what a DMA from a stream at an address would reach, which
//! is what tests assert on. Faults can be injected, and any operation can be told to fail.
//! Invalidations are counted the way the SMMUv3 backend issues CMD_SYNC (one per attach,
//! detach, domain destruction, non-empty unmap and non-empty `unmap_batch` as a whole; none
//! per map or `map_batch`, which only fill empty entries). Batches are all or nothing: every
//! window or span is checked (an injected [`FakeOp::Map`] / [`FakeOp::Unmap`] failure counts
//! per window or span and refuses the whole batch) before anything changes.

use core::fmt;
use iommu_core::{
    Access, DomainId, Fault, FaultDrain, IommuBackend, Iova, MapOp, PhysAddr, StreamId, PAGE_SIZE,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec::Vec;

/// The operations of [`IommuBackend`], to make one of them fail.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FakeOp {
    /// `create_domain`.
    Create,
    /// `destroy_domain`.
    Destroy,
    /// `attach`.
    Attach,
    /// `detach`.
    Detach,
    /// `map`.
    Map,
    /// `unmap`.
    Unmap,
    /// `drain_faults` (fails after delivering what is queued, like a service failure).
    Drain,
}

/// What the fake refuses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FakeError {
    /// No such domain.
    UnknownDomain(DomainId),
    /// Streams are still attached.
    DomainInUse(DomainId),
    /// No domain id left.
    TooManyDomains,
    /// Not 4 KiB aligned, or empty.
    Misaligned(u64),
    /// The I/O range is already mapped.
    Overlap(Iova),
    /// A failure the test asked for.
    Injected(FakeOp),
}

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownDomain(d) => write!(f, "no such domain: {d}"),
            Self::DomainInUse(d) => write!(f, "{d} still has streams"),
            Self::TooManyDomains => f.write_str("no domain left"),
            Self::Misaligned(v) => write!(f, "{v:#x} is not page aligned"),
            Self::Overlap(iova) => write!(f, "{iova} is already mapped"),
            Self::Injected(op) => write!(f, "injected failure of {op:?}"),
        }
    }
}

/// What a region of a domain maps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Region {
    len: u64,
    pa: u64,
    access: Access,
}

/// Calls the fake has seen.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FakeCounts {
    /// Windows mapped: one per successful `map` call, one per window of a successful
    /// `map_batch`.
    pub maps: u64,
    /// Spans unmapped: one per successful `unmap` call, one per span of a successful
    /// `unmap_batch`.
    pub unmaps: u64,
    /// Successful `map_batch` calls.
    pub map_batches: u64,
    /// Successful `unmap_batch` calls.
    pub unmap_batches: u64,
    /// Successful `attach` calls.
    pub attaches: u64,
    /// Successful `detach` calls.
    pub detaches: u64,
    /// CMD_SYNCs the SMMUv3 backend would have issued.
    pub syncs: u64,
    /// Failures injected so far.
    pub injected: u64,
}

/// A model IOMMU.
#[derive(Debug, Default)]
pub struct FakeIommu {
    domains: BTreeMap<u16, BTreeMap<u64, Region>>,
    max_domains: Option<usize>,
    streams: BTreeMap<StreamId, DomainId>,
    faults: VecDeque<Fault>,
    lost: u64,
    failures: Vec<(FakeOp, usize)>,
    counts: FakeCounts,
}

impl FakeIommu {
    /// An IOMMU with no domain, every stream denied.
    pub fn new() -> Self {
        Self::default()
    }

    /// An IOMMU with room for at most `n` domains.
    pub fn with_max_domains(n: usize) -> Self {
        Self {
            max_domains: Some(n),
            ..Self::default()
        }
    }

    /// Where a DMA by `sid` at `iova` lands, and with which permissions; `None` when it faults.
    pub fn translate(&self, sid: StreamId, iova: Iova) -> Option<(PhysAddr, Access)> {
        let domain = self.streams.get(&sid)?;
        let regions = self.domains.get(&domain.0)?;
        let (start, r) = regions.range(..=iova.0).next_back()?;
        let off = iova.0 - start;
        (off < r.len).then(|| (PhysAddr(r.pa + off), r.access))
    }

    /// The domain `sid` is attached to.
    pub fn domain_of(&self, sid: StreamId) -> Option<DomainId> {
        self.streams.get(&sid).copied()
    }

    /// Domains alive.
    pub fn live_domains(&self) -> usize {
        self.domains.len()
    }

    /// A domain's mappings: `(iova, pa, len, access)`, by I/O address.
    pub fn mappings(&self, domain: DomainId) -> Vec<(Iova, PhysAddr, u64, Access)> {
        self.domains
            .get(&domain.0)
            .map(|m| {
                m.iter()
                    .map(|(i, r)| (Iova(*i), PhysAddr(r.pa), r.len, r.access))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Calls seen so far.
    pub fn counts(&self) -> FakeCounts {
        self.counts
    }

    /// Queues a fault record, as the IOMMU would record it.
    pub fn inject_fault(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    /// Says that the event queue overflowed once (records were lost).
    pub fn inject_overflow(&mut self) {
        self.lost += 1;
    }

    /// Makes the `skip + 1`-th next call of `op` fail (`skip = 0`: the very next one).
    pub fn fail(&mut self, op: FakeOp, skip: usize) {
        self.failures.push((op, skip));
    }

    /// Whether a failure of `op` is still pending.
    pub fn failure_pending(&self) -> bool {
        !self.failures.is_empty()
    }

    /// Cancels every pending failure.
    pub fn clear_failures(&mut self) {
        self.failures.clear();
    }

    fn check(&mut self, op: FakeOp) -> Result<(), FakeError> {
        let mut hit = false;
        self.failures.retain_mut(|(o, skip)| {
            if *o != op || hit {
                return true;
            }
            if *skip == 0 {
                hit = true;
                false
            } else {
                *skip -= 1;
                true
            }
        });
        if hit {
            self.counts.injected += 1;
            Err(FakeError::Injected(op))
        } else {
            Ok(())
        }
    }

    fn regions(&mut self, domain: DomainId) -> Result<&mut BTreeMap<u64, Region>, FakeError> {
        self.domains
            .get_mut(&domain.0)
            .ok_or(FakeError::UnknownDomain(domain))
    }
}

fn aligned(v: u64) -> Result<(), FakeError> {
    if v.is_multiple_of(PAGE_SIZE) {
        Ok(())
    } else {
        Err(FakeError::Misaligned(v))
    }
}

/// A non-empty, page-aligned window.
fn check_window(iova: Iova, len: u64) -> Result<(), FakeError> {
    aligned(iova.0)?;
    aligned(len)?;
    if len == 0 {
        return Err(FakeError::Misaligned(0));
    }
    Ok(())
}

/// A window `map` accepts: page-aligned IOVA, PA and length (checked in that order), non-empty.
fn check_map_window(iova: Iova, pa: PhysAddr, len: u64) -> Result<(), FakeError> {
    aligned(iova.0)?;
    aligned(pa.0)?;
    check_window(iova, len)
}

/// The start of a mapping that `[iova, iova + len)` (non-empty) overlaps, if any.
fn overlap_in(regions: &BTreeMap<u64, Region>, iova: Iova, len: u64) -> Option<Iova> {
    let end = iova.0.saturating_add(len - 1);
    let (s, r) = regions.range(..=end).next_back()?;
    (s + (r.len - 1) >= iova.0).then_some(Iova(*s))
}

/// Removes every mapping inside `[iova, iova + len)` (non-empty), splitting the mappings that
/// straddle its ends; returns the bytes removed.
fn remove(regions: &mut BTreeMap<u64, Region>, iova: Iova, len: u64) -> u64 {
    let (start, end) = (iova.0, iova.0.saturating_add(len - 1));
    // Regions never overlap: the one before `start` (if it reaches it) and those that begin
    // inside the span (a search, not a scan: the scale tests hold tens of thousands).
    let before = regions
        .range(..start)
        .next_back()
        .filter(|(s, r)| *s + (r.len - 1) >= start);
    let hit: Vec<(u64, Region)> = before
        .into_iter()
        .chain(regions.range(start..=end))
        .map(|(s, r)| (*s, *r))
        .collect();
    let mut bytes = 0;
    for (s, r) in hit {
        regions.remove(&s);
        let r_end = s + (r.len - 1);
        if s < start {
            regions.insert(
                s,
                Region {
                    len: start - s,
                    ..r
                },
            );
        }
        if r_end > end {
            let keep = end + 1;
            regions.insert(
                keep,
                Region {
                    len: r_end - end,
                    pa: r.pa + (keep - s),
                    access: r.access,
                },
            );
        }
        bytes += r_end.min(end) - s.max(start) + 1;
    }
    bytes
}

impl IommuBackend for FakeIommu {
    type Error = FakeError;

    fn create_domain(&mut self) -> Result<DomainId, FakeError> {
        self.check(FakeOp::Create)?;
        if self.max_domains.is_some_and(|m| self.domains.len() >= m) {
            return Err(FakeError::TooManyDomains);
        }
        // Lowest free id, like a hardware tag allocator: stale ids get reused.
        let id = (0..=u16::MAX)
            .find(|i| !self.domains.contains_key(i))
            .ok_or(FakeError::TooManyDomains)?;
        self.domains.insert(id, BTreeMap::new());
        Ok(DomainId(id))
    }

    fn destroy_domain(&mut self, domain: DomainId) -> Result<(), FakeError> {
        self.check(FakeOp::Destroy)?;
        self.regions(domain)?;
        if self.streams.values().any(|d| *d == domain) {
            return Err(FakeError::DomainInUse(domain));
        }
        self.domains.remove(&domain.0);
        self.counts.syncs += 1;
        Ok(())
    }

    fn attach(&mut self, sid: StreamId, domain: DomainId) -> Result<(), FakeError> {
        self.check(FakeOp::Attach)?;
        self.regions(domain)?;
        self.streams.insert(sid, domain);
        self.counts.attaches += 1;
        self.counts.syncs += 1;
        Ok(())
    }

    fn detach(&mut self, sid: StreamId) -> Result<(), FakeError> {
        self.check(FakeOp::Detach)?;
        self.streams.remove(&sid);
        self.counts.detaches += 1;
        self.counts.syncs += 1;
        Ok(())
    }

    fn map(
        &mut self,
        domain: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<(), FakeError> {
        self.check(FakeOp::Map)?;
        check_map_window(iova, pa, len)?;
        let regions = self.regions(domain)?;
        if let Some(at) = overlap_in(regions, iova, len) {
            return Err(FakeError::Overlap(at));
        }
        regions.insert(
            iova.0,
            Region {
                len,
                pa: pa.0,
                access,
            },
        );
        self.counts.maps += 1;
        Ok(())
    }

    fn unmap(&mut self, domain: DomainId, iova: Iova, len: u64) -> Result<u64, FakeError> {
        self.check(FakeOp::Unmap)?;
        check_window(iova, len)?;
        let bytes = remove(self.regions(domain)?, iova, len);
        self.counts.unmaps += 1;
        if bytes > 0 {
            self.counts.syncs += 1;
        }
        Ok(bytes)
    }

    /// Checks every window (an injected `Map` failure per window, alignment, the domain,
    /// overlap with mappings and between windows) before mapping any; no CMD_SYNC counted.
    fn map_batch(&mut self, domain: DomainId, batch: &[MapOp]) -> Result<(), FakeError> {
        for (i, op) in batch.iter().enumerate() {
            self.check(FakeOp::Map)?;
            check_map_window(op.iova, op.pa, op.len)?;
            let regions = self.regions(domain)?;
            if let Some(at) = overlap_in(regions, op.iova, op.len) {
                return Err(FakeError::Overlap(at));
            }
            let end = op.iova.0.saturating_add(op.len);
            if let Some(other) = batch[..i]
                .iter()
                .find(|o| o.iova.0 < end && op.iova.0 < o.iova.0.saturating_add(o.len))
            {
                return Err(FakeError::Overlap(Iova(other.iova.0.max(op.iova.0))));
            }
        }
        let regions = self.regions(domain)?;
        for op in batch {
            regions.insert(
                op.iova.0,
                Region {
                    len: op.len,
                    pa: op.pa.0,
                    access: op.access,
                },
            );
        }
        self.counts.maps += batch.len() as u64;
        self.counts.map_batches += 1;
        Ok(())
    }

    /// Checks every span (an injected `Unmap` failure per span, alignment, the domain) before
    /// removing any; one CMD_SYNC counted for the whole batch when it removed anything.
    fn unmap_batch(&mut self, domain: DomainId, batch: &[(Iova, u64)]) -> Result<u64, FakeError> {
        for &(iova, len) in batch {
            self.check(FakeOp::Unmap)?;
            check_window(iova, len)?;
        }
        let regions = self.regions(domain)?;
        let bytes = batch
            .iter()
            .map(|&(iova, len)| remove(regions, iova, len))
            .sum::<u64>();
        self.counts.unmaps += batch.len() as u64;
        self.counts.unmap_batches += 1;
        if bytes > 0 {
            self.counts.syncs += 1;
        }
        Ok(bytes)
    }

    fn drain_faults(&mut self, sink: &mut dyn FnMut(Fault)) -> Result<FaultDrain, FakeError> {
        let mut drain = FaultDrain::default();
        while let Some(f) = self.faults.pop_front() {
            sink(f);
            drain.delivered += 1;
        }
        drain.lost_at_least = core::mem::take(&mut self.lost);
        self.check(FakeOp::Drain)?;
        Ok(drain)
    }
}

/// A [`FakeIommu`] the test keeps a handle on while the manager, in another thread, owns the
/// other (the test plays the hardware: it injects faults and reads translations back).
#[derive(Clone, Debug, Default)]
pub struct SharedFake(pub Arc<Mutex<FakeIommu>>);

impl SharedFake {
    /// The model, locked.
    pub fn lock(&self) -> MutexGuard<'_, FakeIommu> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl IommuBackend for SharedFake {
    type Error = FakeError;
    fn create_domain(&mut self) -> Result<DomainId, FakeError> {
        self.lock().create_domain()
    }
    fn destroy_domain(&mut self, domain: DomainId) -> Result<(), FakeError> {
        self.lock().destroy_domain(domain)
    }
    fn attach(&mut self, sid: StreamId, domain: DomainId) -> Result<(), FakeError> {
        self.lock().attach(sid, domain)
    }
    fn detach(&mut self, sid: StreamId) -> Result<(), FakeError> {
        self.lock().detach(sid)
    }
    fn map(
        &mut self,
        domain: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<(), FakeError> {
        self.lock().map(domain, iova, pa, len, access)
    }
    fn unmap(&mut self, domain: DomainId, iova: Iova, len: u64) -> Result<u64, FakeError> {
        self.lock().unmap(domain, iova, len)
    }
    fn map_batch(&mut self, domain: DomainId, batch: &[MapOp]) -> Result<(), FakeError> {
        self.lock().map_batch(domain, batch)
    }
    fn unmap_batch(&mut self, domain: DomainId, batch: &[(Iova, u64)]) -> Result<u64, FakeError> {
        self.lock().unmap_batch(domain, batch)
    }
    fn drain_faults(&mut self, sink: &mut dyn FnMut(Fault)) -> Result<FaultDrain, FakeError> {
        self.lock().drain_faults(sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_follows_attach_map_unmap_detach() {
        let mut f = FakeIommu::new();
        let d = f.create_domain().unwrap();
        let sid = StreamId(8);
        f.map(d, Iova(0x1000), PhysAddr(0x8000_0000), 0x3000, Access::RW)
            .unwrap();
        assert_eq!(f.translate(sid, Iova(0x1000)), None, "not attached: deny");
        f.attach(sid, d).unwrap();
        assert_eq!(
            f.translate(sid, Iova(0x2008)),
            Some((PhysAddr(0x8000_1008), Access::RW))
        );
        assert_eq!(
            f.map(d, Iova(0x3000), PhysAddr(0), 0x1000, Access::READ),
            Err(FakeError::Overlap(Iova(0x1000)))
        );
        // Unmapping the middle page splits the region.
        assert_eq!(f.unmap(d, Iova(0x2000), 0x1000), Ok(0x1000));
        assert_eq!(f.translate(sid, Iova(0x2000)), None);
        assert_eq!(
            f.translate(sid, Iova(0x3000)),
            Some((PhysAddr(0x8000_2000), Access::RW))
        );
        assert_eq!(f.destroy_domain(d), Err(FakeError::DomainInUse(d)));
        f.detach(sid).unwrap();
        assert_eq!(f.translate(sid, Iova(0x1000)), None);
        f.destroy_domain(d).unwrap();
        assert_eq!(f.live_domains(), 0);
    }

    #[test]
    fn injected_failures_hit_the_chosen_call_and_change_nothing() {
        let mut f = FakeIommu::new();
        let d = f.create_domain().unwrap();
        f.fail(FakeOp::Map, 1);
        f.map(d, Iova(0), PhysAddr(0), 0x1000, Access::READ)
            .unwrap();
        assert_eq!(
            f.map(d, Iova(0x1000), PhysAddr(0), 0x1000, Access::READ),
            Err(FakeError::Injected(FakeOp::Map))
        );
        assert_eq!(f.mappings(d).len(), 1);
        assert!(!f.failure_pending());
        assert_eq!(f.counts().injected, 1);
    }

    #[test]
    fn batches_are_all_or_nothing_with_one_sync() {
        let mut f = FakeIommu::new();
        let d = f.create_domain().unwrap();
        let w = |iova: u64, len: u64| MapOp {
            iova: Iova(iova),
            pa: PhysAddr(0x8000_0000 + iova),
            len,
            access: Access::RW,
        };
        f.map(d, Iova(0x10_0000), PhysAddr(0), 0x1000, Access::READ)
            .unwrap();
        // Refused in the middle: overlap with a mapping, with another window, misaligned.
        for (bad, want) in [
            (w(0xf_f000, 0x2000), FakeError::Overlap(Iova(0x10_0000))),
            (w(0x1000, 0x1000), FakeError::Overlap(Iova(0x1000))),
            (w(0x2800, 0x1000), FakeError::Misaligned(0x2800)),
        ] {
            assert_eq!(
                f.map_batch(d, &[w(0, 0x2000), bad, w(0x4000, 0x1000)]),
                Err(want)
            );
            assert_eq!(f.mappings(d).len(), 1, "nothing of the batch mapped");
        }
        // An injected failure of the second window refuses the whole batch.
        f.fail(FakeOp::Map, 1);
        assert_eq!(
            f.map_batch(d, &[w(0, 0x1000), w(0x4000, 0x1000)]),
            Err(FakeError::Injected(FakeOp::Map))
        );
        assert_eq!(f.mappings(d).len(), 1);
        f.map_batch(d, &[w(0, 0x2000), w(0x4000, 0x1000)]).unwrap();
        let c = f.counts();
        assert_eq!((c.maps, c.map_batches, c.syncs), (3, 1, 0));
        // Refused span: nothing removed.
        assert_eq!(
            f.unmap_batch(d, &[(Iova(0), 0x1000), (Iova(0x4000), 0x800)]),
            Err(FakeError::Misaligned(0x800))
        );
        assert_eq!(f.mappings(d).len(), 3);
        assert_eq!(
            f.unmap_batch(
                d,
                &[
                    (Iova(0), 0x2000),
                    (Iova(0x4000), 0x1000),
                    (Iova(0x10_0000), 0x1000)
                ]
            ),
            Ok(0x4000)
        );
        let c = f.counts();
        assert_eq!(
            (c.unmaps, c.unmap_batches, c.syncs),
            (3, 1, 1),
            "one SYNC per batch"
        );
        assert_eq!(f.unmap_batch(d, &[(Iova(0), 0x1000)]), Ok(0));
        assert_eq!(
            f.counts().syncs,
            1,
            "nothing removed, nothing to invalidate"
        );
    }

    #[test]
    fn syncs_are_counted_like_the_smmuv3_backend() {
        let mut f = FakeIommu::new();
        let d = f.create_domain().unwrap();
        f.map(d, Iova(0), PhysAddr(0), 0x1000, Access::READ)
            .unwrap();
        assert_eq!(f.counts().syncs, 0);
        assert_eq!(f.unmap(d, Iova(0x10_0000), 0x1000), Ok(0));
        assert_eq!(
            f.counts().syncs,
            0,
            "nothing unmapped, nothing to invalidate"
        );
        f.unmap(d, Iova(0), 0x1000).unwrap();
        assert_eq!(f.counts().syncs, 1);
    }
}
