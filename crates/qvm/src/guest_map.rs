//! The one GPA→HPA list a VM is built from (in the spirit of Jailhouse's memory-region list):
//! its RAM and its pass-through BARs. Two translations come out of it:
//!
//! * the **CPU stage 2** ([`GuestMap::cpu_stage2`], Arm ARM D8, built with `crates/stage2`):
//!   RAM read/write/execute as Normal memory, each BAR read/write as Device-nGnRE;
//! * the **SMMU windows** ([`GuestMap::smmu_batches`]): the RAM only, read/write, sent to the
//!   manager through `smmuman-api`. A BAR never becomes an SMMU window: peer-to-peer DMA is not
//!   something a guest gets by default.
//!
//! [`GuestMap::compare`] checks the two page by page: every RAM page must translate to the
//! same host page on both, every BAR page on the CPU only, and the pages next to each region
//! on neither.

use crate::gpa::{Gpa, GpaRange};
use core::fmt;
use iommu_core::{Access, DmaMemory, Iova, PhysAddr, PAGE_SIZE};
use smmuman_api::{DmaWindow, MapBatch, MapEntry, MapFlags, MAP_BATCH};
use stage2::{MapError, Stage2Config, Stage2Table};

/// Regions one VM's list holds at most.
pub const MAX_REGIONS: usize = 40;

/// What a region is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RegionKind {
    /// Guest RAM: CPU read/write/execute, SMMU read/write.
    Ram,
    /// A pass-through BAR: CPU read/write as device memory, never in the SMMU.
    Bar {
        /// Guest PCI device number.
        device: u8,
        /// BAR index.
        bar: u8,
    },
}

/// One entry of the list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region {
    /// Guest-physical range (page-aligned).
    pub gpa: GpaRange,
    /// Host-physical base (page-aligned).
    pub hpa: PhysAddr,
    /// What it is.
    pub kind: RegionKind,
}

impl Region {
    /// The CPU stage-2 permissions (Arm ARM D8.4: S2AP and XN; D8.5: memory type).
    pub fn cpu_access(&self) -> Access {
        match self.kind {
            RegionKind::Ram => Access::RW | Access::EXEC,
            RegionKind::Bar { .. } => Access::DEVICE | Access::RW,
        }
    }

    /// The SMMU's permissions, or `None` when the SMMU must not map it.
    pub fn smmu_access(&self) -> Option<Access> {
        match self.kind {
            RegionKind::Ram => Some(Access::RW),
            RegionKind::Bar { .. } => None,
        }
    }

    /// The host address of `gpa` inside the region.
    pub fn hpa_of(&self, gpa: u64) -> Option<u64> {
        let off = gpa.checked_sub(self.gpa.start().get())?;
        (off < self.gpa.len()).then(|| self.hpa.get() + off)
    }
}

/// Why the list or a table built from it is wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapListError {
    /// A region that is empty, not page-aligned, or wraps.
    Shape {
        /// Its guest address.
        gpa: Gpa,
        /// Its host address.
        hpa: PhysAddr,
        /// Its length.
        len: u64,
    },
    /// Two regions overlap in guest-physical space.
    Overlap {
        /// The new region's start.
        gpa: Gpa,
        /// The region in the way.
        other: Gpa,
    },
    /// More than [`MAX_REGIONS`].
    Full,
    /// The stage-2 table refused (bad configuration, out of memory).
    Table(MapError),
}

impl fmt::Display for MapListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shape { gpa, hpa, len } => write!(
                f,
                "region GPA {gpa} -> HPA {hpa} of {len:#x} bytes is empty, not 4 KiB-aligned \
                 or wraps"
            ),
            Self::Overlap { gpa, other } => {
                write!(f, "region at GPA {gpa} overlaps the region at GPA {other}")
            }
            Self::Full => write!(f, "more than {MAX_REGIONS} regions"),
            Self::Table(e) => write!(f, "CPU stage 2: {e}"),
        }
    }
}

/// Where the two translations disagree.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mismatch {
    /// The guest page.
    pub gpa: Gpa,
    /// Where the CPU goes (`None`: nowhere).
    pub cpu: Option<u64>,
    /// Where the SMMU goes.
    pub smmu: Option<u64>,
    /// Where the list says both should go (`None`: neither; for a BAR the SMMU never).
    pub expected: Option<u64>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GPA {}: CPU -> {}, SMMU -> {}, the list says {}",
            self.gpa,
            Target(self.cpu),
            Target(self.smmu),
            Target(self.expected)
        )
    }
}

/// Prints a translation's result: the host address, or `unmapped`.
struct Target(Option<u64>);

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a:#018x}"),
            None => f.write_str("unmapped"),
        }
    }
}

/// The list.
#[derive(Clone, Debug, Default)]
pub struct GuestMap {
    regions: heapless::Vec<Region, MAX_REGIONS>,
}

impl GuestMap {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            regions: heapless::Vec::new(),
        }
    }

    /// Adds a region.
    ///
    /// # Errors
    /// [`MapListError::Shape`], [`MapListError::Overlap`], [`MapListError::Full`].
    pub fn add(
        &mut self,
        gpa: Gpa,
        hpa: PhysAddr,
        len: u64,
        kind: RegionKind,
    ) -> Result<Region, MapListError> {
        let shape = MapListError::Shape { gpa, hpa, len };
        if !len.is_multiple_of(PAGE_SIZE)
            || !gpa.get().is_multiple_of(PAGE_SIZE)
            || !hpa.is_aligned(PAGE_SIZE)
        {
            return Err(shape);
        }
        hpa.checked_add(len).ok_or(shape)?;
        let range = GpaRange::new(gpa, len).ok_or(shape)?;
        if let Some(o) = self.regions.iter().find(|r| r.gpa.overlaps(&range)) {
            return Err(MapListError::Overlap {
                gpa,
                other: o.gpa.start(),
            });
        }
        let region = Region {
            gpa: range,
            hpa,
            kind,
        };
        self.regions.push(region).map_err(|_| MapListError::Full)?;
        Ok(region)
    }

    /// Removes the region of `kind` (a BAR whose decoding went off, or that moves); returns it.
    pub fn remove(&mut self, kind: RegionKind) -> Option<Region> {
        let i = self.regions.iter().position(|r| r.kind == kind)?;
        Some(self.regions.swap_remove(i))
    }

    /// The regions.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region holding `gpa`.
    pub fn find(&self, gpa: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.gpa.contains(gpa, 1))
    }

    /// Builds the CPU stage 2 of every region.
    ///
    /// # Errors
    /// [`MapListError::Table`]; the partly built table is destroyed.
    pub fn cpu_stage2(
        &self,
        mem: &mut impl DmaMemory,
        cfg: Stage2Config,
    ) -> Result<Stage2Table, MapListError> {
        let mut table = Stage2Table::new(mem, cfg).map_err(MapListError::Table)?;
        for r in &self.regions {
            if let Err(e) = map_cpu(&mut table, mem, r) {
                table.destroy(mem);
                return Err(e);
            }
        }
        Ok(table)
    }

    /// The SMMU windows: the RAM regions, read/write, GPA as the I/O address; never a BAR.
    pub fn smmu_windows(&self) -> impl Iterator<Item = MapEntry> + '_ {
        self.regions.iter().filter_map(|r| {
            let access = r.smmu_access()?;
            let window = DmaWindow::new(Iova(r.gpa.start().get()), r.hpa, r.gpa.len()).ok()?;
            Some(MapEntry {
                window,
                access,
                flags: MapFlags::empty(),
            })
        })
    }

    /// [`Self::smmu_windows`] in batches of up to [`MAP_BATCH`] for
    /// `Client::map_batch`.
    pub fn smmu_batches(&self) -> impl Iterator<Item = MapBatch> + '_ {
        let mut windows = self.smmu_windows();
        core::iter::from_fn(move || {
            let mut batch = MapBatch::default();
            for _ in 0..MAP_BATCH {
                match windows.next() {
                    Some(e) => {
                        batch.push(e);
                    }
                    None => break,
                }
            }
            (!batch.is_empty()).then_some(batch)
        })
    }

    /// Compares the CPU table with the SMMU's translation (`smmu(gpa)` = the host address the
    /// SMMU sends a DMA at `gpa` to) page by page over every region and the page on each side
    /// of it; returns the pages compared.
    ///
    /// # Errors
    /// The first [`Mismatch`].
    pub fn compare(
        &self,
        cpu: &Stage2Table,
        mem: &impl DmaMemory,
        smmu: impl Fn(u64) -> Option<u64>,
    ) -> Result<u64, Mismatch> {
        let mut pages = 0u64;
        let check = |gpa: u64| -> Result<(), Mismatch> {
            let c = cpu.translate(mem, Iova(gpa)).map(|t| t.pa.get());
            let s = smmu(gpa);
            let region = self.find(gpa);
            let expected = region.and_then(|r| r.hpa_of(gpa));
            let want_smmu = region.filter(|r| r.smmu_access().is_some()).and(expected);
            if c != expected || s != want_smmu {
                return Err(Mismatch {
                    gpa: Gpa(gpa),
                    cpu: c,
                    smmu: s,
                    expected,
                });
            }
            Ok(())
        };
        for r in &self.regions {
            let start = r.gpa.start().get();
            if let Some(before) = start.checked_sub(PAGE_SIZE) {
                check(before)?;
                pages += 1;
            }
            let mut gpa = start;
            while gpa < r.gpa.end() {
                check(gpa)?;
                pages += 1;
                gpa += PAGE_SIZE;
            }
            check(r.gpa.end())?;
            pages += 1;
        }
        Ok(pages)
    }
}

/// Maps one region into a CPU table.
///
/// # Errors
/// [`MapListError::Table`].
pub fn map_cpu(
    table: &mut Stage2Table,
    mem: &mut impl DmaMemory,
    r: &Region,
) -> Result<(), MapListError> {
    table
        .map(
            mem,
            Iova(r.gpa.start().get()),
            r.hpa,
            r.gpa.len(),
            r.cpu_access(),
        )
        .map(|_| ())
        .map_err(MapListError::Table)
}

/// Unmaps one region from a CPU table. The caller invalidates the CPU's TLBs for it and only
/// then calls [`Stage2Table::reclaim`] (until then the walk caches may hold the freed tables).
///
/// # Errors
/// [`MapListError::Table`].
pub fn unmap_cpu(
    table: &mut Stage2Table,
    mem: &mut impl DmaMemory,
    r: &Region,
) -> Result<(), MapListError> {
    table
        .unmap(mem, Iova(r.gpa.start().get()), r.gpa.len())
        .map(|_| ())
        .map_err(MapListError::Table)
}

#[cfg(test)]
mod tests;
