//! Helpers shared by the integration tests: an independent walker over our tables, a reference
//! model of the IOVA space, and an adapter for Google's `aarch64-paging`.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod theirs;

use iommu_core::fake::FakeMemory;
use iommu_core::{Access, DmaMemory, Iova, PhysAddr};
use stage2::{MapError, Stage2Config, Stage2Table};
use std::collections::BTreeMap;

pub const K4: u64 = 0x1000;
pub const M2: u64 = 0x20_0000;
pub const G1: u64 = 0x4000_0000;

/// Bits [47:12] of a descriptor.
const OA: u64 = 0x0000_ffff_ffff_f000;

/// One valid leaf: where it starts, its level, and its raw descriptor word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leaf {
    pub iova: u64,
    pub level: u8,
    pub raw: u64,
}

impl Leaf {
    pub fn size(&self) -> u64 {
        1 << (12 + 9 * (3 - u32::from(self.level)))
    }
    pub fn pa(&self) -> u64 {
        self.raw & OA
    }
    /// The attribute bits, without the address and the block/page type bit.
    pub fn attrs(&self) -> u64 {
        self.raw & !OA & !2
    }
}

/// Every leaf of `table`, in IOVA order, read straight from the memory the SMMU walks.
pub fn leaves(mem: &FakeMemory, table: &Stage2Table) -> Vec<Leaf> {
    fn walk(mem: &FakeMemory, t: u64, level: u8, base: u64, out: &mut Vec<Leaf>) {
        let shift = 12 + 9 * (3 - u32::from(level));
        for i in 0..512u64 {
            let raw = mem.read_u64(PhysAddr(t + 8 * i));
            let iova = base + (i << shift);
            if raw & 1 == 0 {
                continue;
            }
            if raw & 2 != 0 && level < 3 {
                walk(mem, raw & OA, level + 1, iova, out);
            } else {
                out.push(Leaf { iova, level, raw });
            }
        }
    }
    let mut out = Vec::new();
    walk(mem, table.root().get(), table.start_level(), 0, &mut out);
    out
}

/// Number of reachable non-root tables without a single valid entry (should stay 0).
pub fn empty_tables(mem: &FakeMemory, table: &Stage2Table) -> usize {
    fn walk(mem: &FakeMemory, t: u64, level: u8, root: bool) -> usize {
        let mut empty = 0;
        let mut valid = 0;
        for i in 0..512u64 {
            let raw = mem.read_u64(PhysAddr(t + 8 * i));
            if raw & 1 != 0 {
                valid += 1;
                if raw & 2 != 0 && level < 3 {
                    empty += walk(mem, raw & OA, level + 1, false);
                }
            }
        }
        empty + usize::from(valid == 0 && !root)
    }
    walk(mem, table.root().get(), table.start_level(), true)
}

/// A stretch of IOVA space translated linearly: `[start, end)` → `pa..`, with `attrs`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Run {
    pub start: u64,
    pub end: u64,
    pub pa: u64,
    pub attrs: u64,
}

/// Merges leaves into maximal runs, so that two tables translating every IOVA the same way
/// give the same runs whatever their block/page split.
pub fn runs(leaves: impl IntoIterator<Item = Leaf>) -> Vec<Run> {
    merge(leaves.into_iter().map(|l| Run {
        start: l.iova,
        end: l.iova + l.size(),
        pa: l.pa(),
        attrs: l.attrs(),
    }))
}

/// Joins runs (in IOVA order) that continue each other.
pub fn merge(runs: impl IntoIterator<Item = Run>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for run in runs {
        match out.last_mut() {
            Some(last)
                if last.end == run.start
                    && last.pa + (last.end - last.start) == run.pa
                    && last.attrs == run.attrs =>
            {
                last.end = run.end;
            }
            _ => out.push(run),
        }
    }
    out
}

/// The attribute bits our leaves carry for `access` (as [`Leaf::attrs`] reads them).
pub fn attrs_of(access: Access) -> u64 {
    stage2::descriptor::encode_page(PhysAddr(0), access) & !OA & !2
}

/// The reference model: disjoint mapped intervals, start → (end, pa, access).
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub cfg: Option<Stage2Config>,
    map: BTreeMap<u64, (u64, u64, Access)>,
}

impl Model {
    pub fn new(cfg: Stage2Config) -> Self {
        Self {
            cfg: Some(cfg),
            map: BTreeMap::new(),
        }
    }

    fn cfg(&self) -> Stage2Config {
        self.cfg.expect("model without a config")
    }

    fn check_iova(&self, iova: u64, len: u64) -> Result<u64, MapError> {
        if len == 0 || !len.is_multiple_of(K4) {
            return Err(MapError::Length(len));
        }
        if !iova.is_multiple_of(K4) {
            return Err(MapError::UnalignedIova(Iova(iova)));
        }
        Ok(len)
    }

    fn iova_end(&self, iova: u64, len: u64) -> Result<u64, MapError> {
        match iova.checked_add(len) {
            Some(end) if end <= 1 << self.cfg().ias_bits => Ok(end),
            _ => Err(MapError::IovaOutOfRange {
                iova: Iova(iova),
                len,
            }),
        }
    }

    /// Mapped intervals overlapping `[start, end)`, clipped to it.
    fn overlaps(&self, start: u64, end: u64) -> Vec<(u64, u64, u64, Access)> {
        let first = self
            .map
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        self.map
            .range(first..end)
            .filter(|(_, &(e, _, _))| e > start)
            .map(|(&s, &(e, pa, a))| {
                let (cs, ce) = (s.max(start), e.min(end));
                (cs, ce, pa + (cs - s), a)
            })
            .collect()
    }

    /// What `Stage2Table::map` must answer, applying it when it succeeds.
    pub fn map(&mut self, iova: u64, pa: u64, len: u64, access: Access) -> Result<(), MapError> {
        self.check_iova(iova, len)?;
        if !pa.is_multiple_of(K4) {
            return Err(MapError::UnalignedPa(PhysAddr(pa)));
        }
        if access.is_empty() {
            return Err(MapError::InvalidAccess(access));
        }
        let end = self.iova_end(iova, len)?;
        let pa_bits = self.cfg().oas_bits.min(48);
        if pa.checked_add(len).is_none_or(|e| e > 1 << pa_bits) {
            return Err(MapError::PaOutOfRange {
                pa: PhysAddr(pa),
                len,
            });
        }
        if let Some(&(first, ..)) = self.overlaps(iova, end).first() {
            return Err(MapError::Overlap { iova: Iova(first) });
        }
        self.map.insert(iova, (end, pa, access));
        Ok(())
    }

    /// What `Stage2Table::unmap` must answer: bytes removed and the span they covered.
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<(u64, Option<(u64, u64)>), MapError> {
        self.check_iova(iova, len)?;
        let end = self.iova_end(iova, len)?;
        let hits = self.overlaps(iova, end);
        let mut bytes = 0;
        for &(cs, ce, _, _) in &hits {
            bytes += ce - cs;
        }
        let span = hits.first().map(|f| (f.0, hits.last().map_or(0, |l| l.1)));
        // Rebuild the intervals touching the range without the removed part.
        let first = self
            .map
            .range(..=iova)
            .next_back()
            .map_or(iova, |(&s, _)| s);
        let touched: Vec<u64> = self
            .map
            .range(first..end)
            .filter(|(_, &(e, _, _))| e > iova)
            .map(|(&s, _)| s)
            .collect();
        for s in touched {
            let (e, pa, a) = self.map.remove(&s).unwrap();
            if s < iova {
                self.map.insert(s, (iova, pa, a));
            }
            if e > end {
                self.map.insert(end, (e, pa + (end - s), a));
            }
        }
        Ok((bytes, span))
    }

    pub fn translate(&self, iova: u64) -> Option<(u64, Access)> {
        let (&s, &(e, pa, a)) = self.map.range(..=iova).next_back()?;
        (iova < e).then_some((pa + (iova - s), a))
    }

    /// The model as runs with the attributes our leaves must carry.
    pub fn runs(&self) -> Vec<Run> {
        merge(self.map.iter().map(|(&start, &(end, pa, a))| Run {
            start,
            end,
            pa,
            attrs: attrs_of(a),
        }))
    }

    /// Bytes mapped.
    pub fn bytes(&self) -> u64 {
        self.map.iter().map(|(&s, &(e, _, _))| e - s).sum()
    }
}
