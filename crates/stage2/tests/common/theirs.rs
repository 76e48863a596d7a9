//! Google's `aarch64-paging` as a reference: a stage-2 [`Mapping`] over host-heap tables, with
//! the same leaf attributes as ours, a table counter, and a leaf walker.

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::idmap::IdTranslation;
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable, Stage2, Translation};
use aarch64_paging::Mapping;
use core::ptr::NonNull;
use iommu_core::Access;

/// [`IdTranslation`] (tables on the host heap, "physical" address = pointer) that counts the
/// tables alive.
#[derive(Default)]
pub struct Counting {
    inner: IdTranslation<Stage2Attributes>,
    pub live: usize,
}

impl Translation<Stage2Attributes> for Counting {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        self.live += 1;
        self.inner.allocate_table()
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        self.live -= 1;
        // SAFETY: our caller guarantees `table` came from `allocate_table` on this translation,
        // which got it from `inner`, and was not freed yet: exactly `inner`'s contract.
        unsafe { self.inner.deallocate_table(table) }
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        self.inner.physical_to_virtual(pa)
    }
}

/// A stage-2 table built by `aarch64-paging`.
pub struct Theirs {
    pub mapping: Mapping<Counting, Stage2>,
    pub ias_bits: u8,
}

/// The `aarch64-paging` flags equal to our leaf attributes for `access` (MemAttr 0b1111, SH
/// inner, AF, S2AP from READ/WRITE, XN unless EXEC).
pub fn flags(access: Access) -> Stage2Attributes {
    let mut f = Stage2Attributes::VALID
        | Stage2Attributes::MEMATTR_NORMAL_INNER_WB
        | Stage2Attributes::MEMATTR_NORMAL_OUTER_WB
        | Stage2Attributes::SH_INNER
        | Stage2Attributes::ACCESS_FLAG;
    if access.contains(Access::READ) {
        f |= Stage2Attributes::S2AP_ACCESS_RO;
    }
    if access.contains(Access::WRITE) {
        f |= Stage2Attributes::S2AP_ACCESS_WO;
    }
    if !access.contains(Access::EXEC) {
        f |= Stage2Attributes::XN;
    }
    f
}

impl Theirs {
    pub fn new(root_level: u8, ias_bits: u8) -> Self {
        let mapping = Mapping::new(Counting::default(), usize::from(root_level), Stage2);
        Self { mapping, ias_bits }
    }

    pub fn tables(&self) -> usize {
        self.mapping.translation().live
    }

    pub fn map(&mut self, iova: u64, pa: u64, len: u64, access: Access) {
        let region = MemoryRegion::new(iova as usize, (iova + len) as usize);
        let pa = PhysicalAddress(pa as usize);
        self.mapping
            .map_range(&region, pa, flags(access), Constraints::empty())
            .unwrap();
    }

    pub fn unmap(&mut self, iova: u64, len: u64) {
        let region = MemoryRegion::new(iova as usize, (iova + len) as usize);
        // Without VALID in the flags, map_range writes invalid entries. The address is unused,
        // but passing the IOVA keeps its "already mapped like this?" check from underflowing.
        let pa = PhysicalAddress(iova as usize);
        let flags = Stage2Attributes::empty();
        self.mapping
            .map_range(&region, pa, flags, Constraints::empty())
            .unwrap();
    }

    /// [`unmap`](Self::unmap), then free the tables left empty, as ours does.
    pub fn unmap_and_compact(&mut self, iova: u64, len: u64) {
        self.unmap(iova, len);
        self.mapping.compact_subtables();
    }

    /// Every valid leaf as `(iova, level, descriptor word)`.
    pub fn leaves(&self, start: u64, end: u64) -> Vec<(u64, u8, u64)> {
        let mut out = Vec::new();
        let region = MemoryRegion::new(start as usize, end as usize);
        self.mapping
            .walk_range(&region, &mut |mr, desc, level| {
                if desc.is_valid() {
                    let raw = desc.output_address().0 as u64 | desc.flags().bits() as u64;
                    let size = 1u64 << (12 + 9 * (3 - level as u32));
                    let base = mr.start().0 as u64 & !(size - 1);
                    if out.last().is_none_or(|&(b, _, _)| b != base) {
                        out.push((base, level as u8, raw));
                    }
                }
                Ok(())
            })
            .unwrap();
        out
    }

    /// Where `iova` leads: (pa, descriptor word, leaf size).
    pub fn translate(&self, iova: u64) -> Option<(u64, u64, u64)> {
        let l = self.leaves(iova, iova + 0x1000);
        l.first().map(|&(base, level, raw)| {
            let size = 1u64 << (12 + 9 * (3 - u32::from(level)));
            ((raw & 0x0000_ffff_ffff_f000) + (iova - base), raw, size)
        })
    }
}
