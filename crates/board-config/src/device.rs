//! DMA masters as the manager names them ([`Device`]) and the statements that give them
//! StreamIDs ([`StreamSource`]: one device, or a whole requester-ID range of a PCI host).

use core::fmt;
use iommu_core::{Bdf, PhysAddr, StreamId};

/// A DMA master.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Device {
    /// A PCI function. `segment` is the PCI domain of its host bridge: the host's
    /// `linux,pci-domain` in the device tree, else the host's position among the device tree's
    /// PCI hosts (first = 0). A config writes it as `SSSS:` before the bus, default 0.
    Pci {
        /// PCI segment (domain) of the host bridge.
        segment: u16,
        /// Bus, device and function.
        bdf: Bdf,
    },
    /// A platform (non-PCI) device, named by the CPU physical address of its first register
    /// window (the first `reg` entry of its device-tree node, translated through its parents'
    /// `ranges`).
    Mmio(PhysAddr),
}

impl Device {
    /// A PCI function in segment 0.
    pub const fn pci(bdf: Bdf) -> Self {
        Self::Pci { segment: 0, bdf }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci { segment, bdf } => write!(f, "pci {segment:04x}:{bdf}"),
            Self::Mmio(base) => write!(f, "mmio {base}"),
        }
    }
}

/// The `iommu-map` entry of a PCI host bridge (Linux
/// `Documentation/devicetree/bindings/pci/pci-iommu.txt`): every requester ID `rid` of the
/// host's segment with `rid & mask` in `rid_base .. rid_base + len` reaches the IOMMU as
/// StreamID `sid_base + (rid & mask) - rid_base` (IHI 0070 §3.2: a PCIe StreamID is derived
/// from the requester ID).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PciRange {
    /// PCI segment (domain) of the host bridge.
    pub segment: u16,
    /// First requester ID (after masking) covered.
    pub rid_base: u32,
    /// Number of requester IDs covered; never zero.
    pub len: u32,
    /// The host's `iommu-map-mask`, ANDed with the requester ID first (all ones when absent).
    pub mask: u32,
}

impl PciRange {
    /// The StreamID of `bdf` relative to a range that starts at `sid_base`, if the range covers
    /// it (same segment, masked requester ID inside the range).
    pub fn translate(&self, segment: u16, bdf: Bdf, sid_base: StreamId) -> Option<StreamId> {
        if segment != self.segment {
            return None;
        }
        let rid = u32::from(bdf.rid()) & self.mask;
        let offset = rid.checked_sub(self.rid_base)?;
        if offset >= self.len {
            return None;
        }
        // Discovery and parsing refuse ranges whose last StreamID does not fit in 32 bits.
        sid_base.0.checked_add(offset).map(StreamId)
    }

    /// The last requester ID covered (before masking), `rid_base + len - 1`.
    pub fn rid_last(&self) -> u64 {
        u64::from(self.rid_base) + u64::from(self.len) - 1
    }
}

/// What a [`crate::StreamBinding`] gives a StreamID to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StreamSource {
    /// One device.
    Device(Device),
    /// A host bridge's requester-ID range; the binding's StreamID is that of `rid_base`.
    PciRange(PciRange),
}

impl fmt::Display for StreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(d) => write!(f, "{d}"),
            Self::PciRange(r) => {
                write!(
                    f,
                    "pci {:04x}: requester IDs {:#x}..={:#x}",
                    r.segment,
                    r.rid_base,
                    r.rid_last()
                )?;
                if r.mask != u32::MAX {
                    write!(f, " (mask {:#x})", r.mask)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
        Bdf::new(bus, dev, func).unwrap()
    }

    #[test]
    fn a_range_maps_rid_minus_base_plus_sid_base() {
        let r = PciRange {
            segment: 0,
            rid_base: 0x100,
            len: 0x100,
            mask: u32::MAX,
        };
        assert_eq!(
            r.translate(0, bdf(1, 1, 0), StreamId(0x4000)),
            Some(StreamId(0x4008))
        );
        assert_eq!(r.translate(0, bdf(0, 1, 0), StreamId(0x4000)), None);
        assert_eq!(r.translate(0, bdf(2, 0, 0), StreamId(0x4000)), None);
        assert_eq!(
            r.translate(1, bdf(1, 1, 0), StreamId(0x4000)),
            None,
            "another segment"
        );
    }

    #[test]
    fn the_mask_applies_before_the_range() {
        // Only the function number survives: every function 1 shares one StreamID.
        let r = PciRange {
            segment: 0,
            rid_base: 0,
            len: 8,
            mask: 0x7,
        };
        assert_eq!(
            r.translate(0, bdf(3, 4, 1), StreamId(0x20)),
            Some(StreamId(0x21))
        );
        assert_eq!(
            r.translate(0, bdf(0, 0, 1), StreamId(0x20)),
            Some(StreamId(0x21))
        );
    }

    #[test]
    fn display_names_segment_and_range() {
        let d = Device::pci(bdf(0, 1, 0));
        assert_eq!(d.to_string(), "pci 0000:00:01.0");
        assert_eq!(
            Device::Mmio(PhysAddr(0x1c09_0000)).to_string(),
            "mmio 0x000000001c090000"
        );
        let r = StreamSource::PciRange(PciRange {
            segment: 0,
            rid_base: 0,
            len: 0x10000,
            mask: u32::MAX,
        });
        assert_eq!(r.to_string(), "pci 0000: requester IDs 0x0..=0xffff");
    }
}
