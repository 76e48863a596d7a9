//! Batches: many windows in one request (`map_batch`, `unmap_batch`) and a page of an object's
//! mappings (`list_mappings`).
//!
//! A guest driver creates and destroys buffers all the time; one request per window costs a
//! round trip and, for an unmap, an invalidation each. A batch is all-or-nothing and costs one
//! invalidation (one CMD_SYNC on SMMUv3) in all.

use crate::types::{DmaWindow, MapFlags};
use crate::wire::{FieldError, Reader, Wire, Writer};
use iommu_core::Access;

/// One window of a batch (and one mapping of a listing): where, what the devices may do,
/// shared or not.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MapEntry {
    /// The I/O range and the host memory behind it.
    pub window: DmaWindow,
    /// READ, WRITE, EXEC (at least one).
    pub access: Access,
    /// `SHARED`, as for `map`.
    pub flags: MapFlags,
}

/// 29 bytes: `window` (24), `access` (1), `flags` (4).
impl Wire for MapEntry {
    const SIZE: usize = DmaWindow::SIZE + Access::SIZE + MapFlags::SIZE;
    fn put(&self, w: &mut Writer<'_>) {
        self.window.put(w);
        self.access.put(w);
        self.flags.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        Ok(Self {
            window: DmaWindow::get(r)?,
            access: Access::get(r)?,
            flags: MapFlags::get(r)?,
        })
    }
}

/// Up to `N` items in order: `count:u8`, 7 reserved zero bytes, then `N` slots of `T`; slots
/// past `count` are all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct List<T: Copy, const N: usize> {
    count: u8,
    items: [Option<T>; N],
}

impl<T: Copy, const N: usize> Default for List<T, N> {
    fn default() -> Self {
        Self {
            count: 0,
            items: [None; N],
        }
    }
}

impl<T: Copy, const N: usize> List<T, N> {
    /// The list of `items`; `None` when there are more than `N` (or than 255).
    pub fn new(items: &[T]) -> Option<Self> {
        let mut list = Self::default();
        for &item in items {
            if !list.push(item) {
                return None;
            }
        }
        Some(list)
    }

    /// Appends `item`; `false` when the list is full.
    pub fn push(&mut self, item: T) -> bool {
        match self.items.get_mut(usize::from(self.count)) {
            Some(slot) if self.count < u8::MAX => {
                *slot = Some(item);
                self.count += 1;
                true
            }
            _ => false,
        }
    }

    /// The items, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().flatten()
    }

    /// How many.
    pub const fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether it holds nothing.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl<T: Wire + Copy, const N: usize> Wire for List<T, N> {
    const SIZE: usize = 8 + N * T::SIZE;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(self.count);
        w.zeros(7);
        for slot in &self.items {
            match slot {
                Some(item) => item.put(w),
                None => w.zeros(T::SIZE),
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let base = r.offset();
        let count = r.u8()?;
        if usize::from(count) > N {
            return Err(Reader::reject(base, count.into()));
        }
        r.zeros(7)?;
        let mut list = Self::default();
        for i in 0..N {
            if i < usize::from(count) {
                list.push(T::get(r)?);
            } else {
                r.zeros(T::SIZE)?;
            }
        }
        Ok(list)
    }
}

/// Windows one `map_batch` carries at most.
pub const MAP_BATCH: usize = 32;
/// Spans one `unmap_batch` carries at most.
pub const UNMAP_BATCH: usize = 60;
/// Mappings one `list_mappings` reply carries at most.
pub const MAPPINGS_PER_PAGE: usize = 32;

/// The windows of a `map_batch`.
pub type MapBatch = List<MapEntry, MAP_BATCH>;
/// The spans of an `unmap_batch`.
pub type UnmapBatch = List<crate::types::IovaSpan, UNMAP_BATCH>;
/// A page of an object's mappings.
pub type MappingPage = List<MapEntry, MAPPINGS_PER_PAGE>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::IovaSpan;
    use crate::wire::{decode_exact, encode};
    use iommu_core::{Iova, PhysAddr};

    fn entry(i: u64) -> MapEntry {
        MapEntry {
            window: DmaWindow::new(Iova(i << 12), PhysAddr(0x8000_0000 + (i << 12)), 0x1000)
                .unwrap(),
            access: Access::RW,
            flags: MapFlags::empty(),
        }
    }

    #[test]
    fn lists_round_trip_zero_their_tail_and_refuse_lies() {
        let mut b = MapBatch::default();
        for i in 0..3 {
            assert!(b.push(entry(i)));
        }
        let mut buf = [0u8; MapBatch::SIZE];
        assert_eq!(encode(&b, &mut buf), MapBatch::SIZE);
        assert_eq!(decode_exact::<MapBatch>(&buf), Ok(b));
        assert!(buf[8 + 3 * MapEntry::SIZE..].iter().all(|&x| x == 0));
        let mut lie = buf;
        lie[0] = MAP_BATCH as u8 + 1;
        assert_eq!(decode_exact::<MapBatch>(&lie).unwrap_err().offset, 0);
        let mut tail = buf;
        tail[MapBatch::SIZE - 1] = 1;
        assert!(decode_exact::<MapBatch>(&tail).is_err());
        let full: std::vec::Vec<MapEntry> = (0..MAP_BATCH as u64).map(entry).collect();
        assert!(MapBatch::new(&full).is_some());
        let over: std::vec::Vec<MapEntry> = (0..=MAP_BATCH as u64).map(entry).collect();
        assert!(MapBatch::new(&over).is_none());
    }

    // (That every batch fits in one message is checked at compile time by `interface!`.)
    #[test]
    fn a_span_list_holds_what_it_was_given() {
        let s = UnmapBatch::new(&[IovaSpan::new(Iova(0), 0x1000).unwrap()]).unwrap();
        assert_eq!((s.len(), s.is_empty()), (1, false));
        assert!(UnmapBatch::default().is_empty());
    }
}
