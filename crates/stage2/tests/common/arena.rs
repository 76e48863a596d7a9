//! A fast [`DmaMemory`] for benchmarks: 4 KiB pages in a `Vec`, physical addresses from
//! [`Arena::BASE`]. Shared by `examples/bench_map.rs` and `benches/tables.rs`.

use iommu_core::{DmaMemory, OutOfMemory, PhysAddr};

const K4: u64 = 0x1000;

/// Table memory for the benchmarks: 4 KiB pages in a `Vec`, physical addresses from `BASE`.
#[derive(Default)]
pub struct Arena {
    pages: Vec<Box<[u64; 512]>>,
    free: Vec<usize>,
}

impl Arena {
    pub const BASE: u64 = 0x80_0000_0000;

    /// Pages allocated and not freed.
    #[allow(dead_code, reason = "the example does not use it")]
    pub fn live_pages(&self) -> usize {
        self.pages.len() - self.free.len()
    }

    fn locate(pa: PhysAddr) -> (usize, usize) {
        let offset = pa.get() - Self::BASE;
        ((offset / K4) as usize, (offset % K4 / 8) as usize)
    }
}

impl DmaMemory for Arena {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        if size > 4096 || align > 4096 {
            return Err(OutOfMemory { size });
        }
        let index = match self.free.pop() {
            Some(i) => {
                self.pages[i].fill(0);
                i
            }
            None => {
                self.pages.push(Box::new([0; 512]));
                self.pages.len() - 1
            }
        };
        Ok(PhysAddr(Self::BASE + index as u64 * K4))
    }

    fn free(&mut self, pa: PhysAddr, _size: usize) {
        self.free.push(Self::locate(pa).0);
    }

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        let (page, word) = Self::locate(pa);
        self.pages[page][word]
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        let (page, word) = Self::locate(pa);
        self.pages[page][word] = value;
    }

    // Host memory standing in for a coherent device: nothing to clean.
    fn sync_for_device(&mut self, _pa: PhysAddr, _len: u64) {}

    // Nor anything a device could have written behind the CPU's back.
    fn sync_for_cpu(&mut self, _pa: PhysAddr, _len: u64) {}
}
