//! [`Ecam`]: configuration access through the enhanced configuration access mechanism (PCIe
//! Base Specification §7.2.2): function `bus:dev.fn` has 4 KiB at
//! `base + (bus - bus_start) << 20 | dev << 15 | fn << 12`.

use super::config::ConfigSpace;
use crate::mmio::{Mmio, MmioRegion};
use iommu_core::Bdf;

/// ECAM configuration space.
#[derive(Debug)]
pub struct Ecam {
    region: MmioRegion,
    bus_start: u8,
    bus_end: u8,
}

impl Ecam {
    /// ECAM over `region`, whose first MiB is bus `bus_start`. Buses after `bus_end`, or beyond
    /// the region, read as absent.
    pub fn new(region: MmioRegion, bus_start: u8, bus_end: u8) -> Self {
        Self {
            region,
            bus_start,
            bus_end,
        }
    }

    /// The offset of `offset` in `bdf`'s space, when that bus is in range.
    fn offset(&self, bdf: Bdf, offset: u16, width: u16) -> Option<usize> {
        if bdf.bus < self.bus_start
            || bdf.bus > self.bus_end
            || !offset.is_multiple_of(width)
            || offset >= 4096
        {
            return None;
        }
        let function = (usize::from(bdf.bus - self.bus_start) << 20)
            | (usize::from(bdf.dev & 0x1f) << 15)
            | (usize::from(bdf.func & 7) << 12);
        let at = function + usize::from(offset);
        (at as u64 + u64::from(width) <= self.region.size()).then_some(at)
    }
}

impl ConfigSpace for Ecam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        self.offset(bdf, offset, 4)
            .map_or(u32::MAX, |at| self.region.read32(at))
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(at) = self.offset(bdf, offset, 4) {
            self.region.write32(at, value);
        }
    }

    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) {
        if let Some(at) = self.offset(bdf, offset, 2) {
            self.region.write16(at, value);
        }
    }
}
