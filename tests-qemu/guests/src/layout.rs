//! Physical ranges and where a guest puts its DMA buffers: in its RAM, clear of its image, the
//! device tree and anything the device tree reserves.

use core::fmt;

/// Bytes of a 2 MiB block (VMSAv8-64 level-2 block, 4 KiB granule; Arm ARM D8.3).
pub const BLOCK: u64 = 2 << 20;
/// Bytes of a 4 KiB page.
pub const PAGE: u64 = 4 << 10;
/// The DMA area reaches this far on each side of its 2 MiB boundary.
pub const HALF_AREA: u64 = 64 << 10;

/// A physical range `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Range {
    /// First address.
    pub base: u64,
    /// Bytes.
    pub size: u64,
}

impl Range {
    /// The range `[base, base + size)`.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last address (saturating).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// Whether `other` lies wholly inside.
    pub fn covers(&self, other: &Range) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }

    /// Whether the two share an address.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.base, self.size)
    }
}

/// A 2 MiB boundary `X` of `ram` such that `[X - HALF_AREA, X + HALF_AREA)` is in `ram` and
/// touches nothing in `avoid`; the lowest such. Buffers on both sides of `X` lie in different
/// 2 MiB blocks, and each side spans several 4 KiB pages.
pub fn dma_area(ram: Range, avoid: &[Range]) -> Option<u64> {
    let first = ram.base.checked_add(BLOCK - 1)? & !(BLOCK - 1);
    let mut x = first.max(BLOCK);
    while x < ram.end() {
        let area = Range::new(x - HALF_AREA, 2 * HALF_AREA);
        if ram.covers(&area) && !avoid.iter().any(|r| r.overlaps(&area)) {
            return Some(x);
        }
        x = x.checked_add(BLOCK)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_area_straddles_the_first_free_2mib_boundary() {
        let ram = Range::new(0x4000_0000, 4 << 20);
        let image = Range::new(0x4008_0000, 0x3_0000);
        let dtb = Range::new(0x403f_0000, 0x1_0000);
        assert_eq!(dma_area(ram, &[image, dtb]), Some(0x4020_0000));
        // An image across the first boundary pushes the area to the next one.
        let big = Range::new(0x4008_0000, 0x19_0000);
        assert_eq!(
            dma_area(Range::new(0x4000_0000, 8 << 20), &[big]),
            Some(0x4040_0000)
        );
        // The unity VM: 4 MiB at 0x5180_0000; 0x5180_0000 itself has no room below.
        let unity = Range::new(0x5180_0000, 4 << 20);
        assert_eq!(
            dma_area(unity, &[Range::new(0x5188_0000, 0x2_0000)]),
            Some(0x51a0_0000)
        );
    }

    #[test]
    fn ram_without_a_free_boundary_has_no_area() {
        assert_eq!(dma_area(Range::new(0x4000_0000, 2 << 20), &[]), None);
        let ram = Range::new(0x4000_0000, 4 << 20);
        assert_eq!(dma_area(ram, &[Range::new(0x401f_ff00, 0x200)]), None);
        assert_eq!(dma_area(Range::new(u64::MAX - 0x1000, 0x1000), &[]), None);
    }
}
