//! [`PageChain`]: a list of 4 KiB table pages threaded through their own first word, so that a
//! `no_std` table can hold any number of spare or retired pages without an allocator of its own.
//!
//! Word 0 of each page in the chain holds the address of the next page. A 4 KiB-aligned address
//! has bit 0 clear, so, read as a descriptor, the link is an invalid entry (Arm ARM D8.3): writing
//! it into a retired table that the SMMU might still walk until the caller's invalidation
//! completes can only make that walk fault, never translate somewhere new.

use crate::geometry::TABLE_BYTES;
use iommu_core::{DmaMemory, OutOfMemory, PhysAddr};

/// A chain of whole table pages owned by one [`Stage2Table`](crate::Stage2Table).
#[derive(Debug, Default)]
pub(crate) struct PageChain {
    head: Option<PhysAddr>,
    len: usize,
}

impl PageChain {
    /// An empty chain.
    pub(crate) const fn new() -> Self {
        Self { head: None, len: 0 }
    }

    /// Number of pages in the chain.
    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    /// Allocates `count` zeroed table pages up front.
    ///
    /// # Errors
    /// [`OutOfMemory`] when an allocation fails; the pages allocated before it are freed again.
    pub(crate) fn allocate(mem: &mut impl DmaMemory, count: usize) -> Result<Self, OutOfMemory> {
        let mut chain = Self::new();
        for _ in 0..count {
            match mem.alloc_zeroed(TABLE_BYTES, TABLE_BYTES) {
                Ok(page) => chain.push(mem, page),
                Err(e) => {
                    chain.free_all(mem);
                    return Err(e);
                }
            }
        }
        Ok(chain)
    }

    /// Adds `page` to the chain, overwriting its word 0 with the link.
    pub(crate) fn push(&mut self, mem: &mut impl DmaMemory, page: PhysAddr) {
        let link = self.head.map_or(0, PhysAddr::get);
        mem.write_u64(page, link);
        self.head = Some(page);
        self.len += 1;
    }

    /// Takes a page out of the chain and zeroes its link word, so a page from
    /// [`allocate`](Self::allocate) comes back all zero.
    pub(crate) fn pop(&mut self, mem: &mut impl DmaMemory) -> Option<PhysAddr> {
        let page = self.head?;
        let link = mem.read_u64(page);
        mem.write_u64(page, 0);
        self.len -= 1;
        self.head = if self.len == 0 {
            None
        } else {
            Some(PhysAddr(link))
        };
        Some(page)
    }

    /// Frees every page of the chain. Returns how many were freed.
    pub(crate) fn free_all(&mut self, mem: &mut impl DmaMemory) -> usize {
        let freed = self.len;
        let mut next = self.head.take();
        while let Some(page) = next {
            self.len -= 1;
            next = if self.len == 0 {
                None
            } else {
                Some(PhysAddr(mem.read_u64(page)))
            };
            mem.free(page, TABLE_BYTES);
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_core::fake::FakeMemory;

    #[test]
    fn allocate_pop_and_free_account_for_every_page() {
        let mut mem = FakeMemory::default();
        let mut chain = PageChain::allocate(&mut mem, 3).unwrap();
        assert_eq!((chain.len(), mem.live_allocations()), (3, 3));
        let page = chain.pop(&mut mem).unwrap();
        assert_eq!(mem.read_u64(page), 0, "a popped page is zeroed again");
        assert_eq!(chain.len(), 2);
        assert_eq!(chain.free_all(&mut mem), 2);
        assert_eq!(mem.live_allocations(), 1);
        assert_eq!(chain.pop(&mut mem), None);
        mem.free(page, TABLE_BYTES);
    }

    #[test]
    fn the_link_word_is_an_invalid_descriptor() {
        let mut mem = FakeMemory::default();
        let mut chain = PageChain::allocate(&mut mem, 2).unwrap();
        let top = chain.pop(&mut mem).unwrap();
        chain.push(&mut mem, top);
        assert_eq!(mem.read_u64(top) & crate::descriptor::VALID, 0);
        chain.free_all(&mut mem);
        assert_eq!(mem.live_allocations(), 0);
    }

    #[test]
    fn failed_allocation_frees_what_it_took() {
        let mut mem = FakeMemory::new(PhysAddr(0x1000_0000), 2 * 4096);
        assert_eq!(
            PageChain::allocate(&mut mem, 3).unwrap_err(),
            OutOfMemory { size: 4096 }
        );
        assert_eq!(mem.live_allocations(), 0);
    }
}
