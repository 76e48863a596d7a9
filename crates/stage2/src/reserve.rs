//! [`TableReserve`]: the table pages a batch needs, allocated before it changes anything, so
//! that a batch its checks accepted cannot fail half way for want of memory. Both backends use
//! it for `map_batch` (the tables new windows link) and `unmap_batch` (the tables block splits
//! link, counted with [`Stage2Table::split_tables`](crate::Stage2Table::split_tables)).

use crate::geometry::TABLE_BYTES;
use crate::page_chain::PageChain;
use iommu_core::{DmaMemory, OutOfMemory, PhysAddr};

/// `mem` with `pages` table pages set aside: a table-page allocation (`TABLE_BYTES`, aligned to
/// it or less) takes one of them, zeroed, while any are left; everything else goes to `mem`.
/// What nobody took goes back with [`TableReserve::release`].
pub struct TableReserve<'m, M: DmaMemory + ?Sized> {
    mem: &'m mut M,
    pages: PageChain,
}

impl<'m, M: DmaMemory + ?Sized> TableReserve<'m, M> {
    /// Allocates `pages` table pages from `mem`.
    ///
    /// # Errors
    /// [`OutOfMemory`] when they do not all fit; nothing stays allocated then.
    pub fn new(mem: &'m mut M, pages: usize) -> Result<Self, OutOfMemory> {
        let pages = PageChain::allocate(&mut &mut *mem, pages)?;
        Ok(Self { mem, pages })
    }

    /// Pages set aside and not taken yet.
    pub fn left(&self) -> usize {
        self.pages.len()
    }

    /// Gives back the pages nobody took.
    pub fn release(&mut self) {
        self.pages.free_all(&mut self.mem);
    }
}

impl<M: DmaMemory + ?Sized> DmaMemory for TableReserve<'_, M> {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        if size == TABLE_BYTES && align != 0 && TABLE_BYTES.is_multiple_of(align) {
            if let Some(page) = self.pages.pop(&mut self.mem) {
                return Ok(page);
            }
        }
        self.mem.alloc_zeroed(size, align)
    }
    fn free(&mut self, pa: PhysAddr, size: usize) {
        self.mem.free(pa, size);
    }
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.mem.read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.mem.write_u64(pa, value);
    }
    fn publish(&mut self) {
        self.mem.publish();
    }
    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        self.mem.sync_for_device(pa, len);
    }
    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.mem.sync_for_cpu(pa, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_core::fake::FakeMemory;

    #[test]
    fn pages_are_taken_first_then_the_rest_given_back() {
        let mut mem = FakeMemory::default();
        let mut r = TableReserve::new(&mut mem, 2).unwrap();
        let a = r.alloc_zeroed(TABLE_BYTES, TABLE_BYTES).unwrap();
        assert_eq!(r.read_u64(a), 0, "the link word is cleared");
        assert_eq!(r.left(), 1);
        r.release();
        assert_eq!(
            mem.live_allocations(),
            1,
            "the page taken stays, the other went back"
        );
    }

    #[test]
    fn a_reserve_that_does_not_fit_holds_nothing() {
        let mut mem = FakeMemory::new(PhysAddr(0x1000_0000), TABLE_BYTES as u64);
        assert!(TableReserve::new(&mut mem, 2).is_err());
        assert_eq!(mem.live_allocations(), 0);
    }
}
