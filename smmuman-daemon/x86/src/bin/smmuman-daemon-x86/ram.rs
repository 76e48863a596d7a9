//! [`HostRam`]: RAM outside the image that the host hands to VMs (the clients' assignments)
//! and whose contents the scenarios check after a DMA. Taken from the PVH memory map
//! (`hvm_start_info`, type 1 = RAM) above the image's end, whole 2 MiB blocks, reached through
//! the identity map (write-back: the first GiB). The image reserves its own memory with the
//! manager; this RAM is what the host may assign.

use core::ptr;
use iommu_core::PhysAddr;
use smmuman_server::PhysRange;
use smmuman_x86::pvh::{StartInfo, MEMMAP_RAM};

/// One 2 MiB block.
pub const BLOCK: u64 = 2 << 20;
/// Blocks taken at most.
pub const MAX_BLOCKS: u64 = 16;
/// The identity map's write-back part (boot.rs maps the first GiB write-back).
const WB_END: u64 = 1 << 30;

extern "C" {
    /// End of the image (linker script `image.ld`).
    static __image_end: u8;
    /// Start of the image (linker script `image.ld`).
    static __image_start: u8;
}

/// The image's own memory: `[__image_start, __image_end)`.
pub fn image() -> PhysRange {
    let start = (&raw const __image_start) as u64;
    let end = (&raw const __image_end) as u64;
    PhysRange {
        start: PhysAddr(start),
        len: end.saturating_sub(start).max(1),
    }
}

/// RAM blocks for VMs, handed out in order.
pub struct HostRam {
    base: u64,
    blocks: u64,
    next: u64,
}

impl HostRam {
    /// The first run of up to [`MAX_BLOCKS`] 2 MiB blocks of RAM above the image (and above
    /// `avoid`, the initrd, when that lies in the way), in the write-back identity map. `None`
    /// when there is none.
    pub fn find(start: &StartInfo, avoid: Option<PhysRange>) -> Option<Self> {
        let floor = (image().start.0 + image().len).next_multiple_of(BLOCK);
        start
            .memmap
            .iter()
            .filter(|r| r.kind == MEMMAP_RAM)
            .find_map(|r| {
                let mut base = r.addr.max(floor).next_multiple_of(BLOCK);
                let mut end = r.end().min(WB_END) & !(BLOCK - 1);
                if let Some(a) =
                    avoid.filter(|a| a.overlaps(PhysAddr(base), end.saturating_sub(base)))
                {
                    // Keep the larger side of the initrd.
                    let below = a.start.0 & !(BLOCK - 1);
                    let above = (a.start.0 + a.len).next_multiple_of(BLOCK);
                    if below.saturating_sub(base) >= end.saturating_sub(above) {
                        end = below;
                    } else {
                        base = above;
                    }
                }
                (end > base).then(|| Self {
                    base,
                    blocks: ((end - base) / BLOCK).min(MAX_BLOCKS),
                    next: 0,
                })
            })
    }

    /// The whole region.
    pub fn range(&self) -> PhysRange {
        PhysRange {
            start: PhysAddr(self.base),
            len: self.blocks * BLOCK,
        }
    }

    /// The next `n` blocks (contiguous), zeroed.
    pub fn take(&mut self, n: u64) -> Option<PhysRange> {
        if self.next + n > self.blocks {
            return None;
        }
        let r = PhysRange {
            start: PhysAddr(self.base + self.next * BLOCK),
            len: n * BLOCK,
        };
        self.next += n;
        self.fill(r.start, r.len, 0);
        Some(r)
    }

    fn owns(&self, pa: PhysAddr, len: u64) -> bool {
        pa.0 >= self.base && pa.0.saturating_add(len) <= self.base + self.blocks * BLOCK
    }

    /// Fills `[pa, pa + len)` with `byte`; `false` (nothing written) outside the region.
    pub fn fill(&mut self, pa: PhysAddr, len: u64, byte: u8) -> bool {
        if !self.owns(pa, len) {
            return false;
        }
        // SAFETY: inside the region (checked), RAM the image does not otherwise use, identity
        // mapped; volatile because devices read it by DMA.
        (0..len).for_each(|i| unsafe { ptr::write_volatile((pa.0 + i) as *mut u8, byte) });
        true
    }

    /// Counts the bytes of `[pa, pa + len)` equal to `byte` (0 outside the region).
    pub fn count(&self, pa: PhysAddr, len: u64, byte: u8) -> u64 {
        if !self.owns(pa, len) {
            return 0;
        }
        (0..len)
            // SAFETY: inside the region (checked); volatile because devices write it by DMA.
            .filter(|i| unsafe { ptr::read_volatile((pa.0 + i) as *const u8) } == byte)
            .count() as u64
    }
}

/// RAM outside the image, the VMs' [`HostRam`] and the initrd that a scenario fills and
/// checks itself (scenario `reserved`: a region the topology reserves for a device, or the
/// same address without it as the control).
pub struct Scratch {
    range: PhysRange,
}

impl Scratch {
    /// `range`, when it is RAM by the PVH memory map in the write-back identity map and shares
    /// no byte with the image or any of `avoid`.
    pub fn new(start: &StartInfo, range: PhysRange, avoid: &[PhysRange]) -> Option<Self> {
        let end = range.start.0.checked_add(range.len)?;
        let in_ram = start
            .memmap
            .iter()
            .any(|r| r.kind == MEMMAP_RAM && r.addr <= range.start.0 && end <= r.end());
        let clear = core::iter::once(image())
            .chain(avoid.iter().copied())
            .all(|a| !a.overlaps(range.start, range.len));
        (range.start.0 != 0 && end <= WB_END && in_ram && clear).then_some(Self { range })
    }

    fn owns(&self, pa: PhysAddr, len: u64) -> bool {
        pa.0 >= self.range.start.0
            && pa.0.saturating_add(len) <= self.range.start.0 + self.range.len
    }

    /// Fills `[pa, pa + len)` with `byte`; `false` (nothing written) outside the range.
    pub fn fill(&mut self, pa: PhysAddr, len: u64, byte: u8) -> bool {
        if !self.owns(pa, len) {
            return false;
        }
        // SAFETY: inside the range (checked), RAM that neither the image nor anything it hands
        // out uses (checked at `new`), identity mapped; volatile because devices DMA to it.
        (0..len).for_each(|i| unsafe { ptr::write_volatile((pa.0 + i) as *mut u8, byte) });
        true
    }

    /// Counts the bytes of `[pa, pa + len)` equal to `byte` (0 outside the range).
    pub fn count(&self, pa: PhysAddr, len: u64, byte: u8) -> u64 {
        if !self.owns(pa, len) {
            return 0;
        }
        (0..len)
            // SAFETY: inside the range (checked); volatile because devices write it by DMA.
            .filter(|i| unsafe { ptr::read_volatile((pa.0 + i) as *const u8) } == byte)
            .count() as u64
    }
}
