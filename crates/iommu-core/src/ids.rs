//! Typed identifiers of DMA masters and translation contexts.

use core::fmt;

/// An SMMUv3 StreamID (IHI 0070 §3.2): the number the SMMU uses to find a device's STE.
/// On PCIe it is derived from the requester ID through the firmware's `iommu-map`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(transparent)]
pub struct StreamId(pub u32);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A stage-2 virtual machine identifier (IHI 0070 §5.2 STE.S2VMID): tags the TLB entries of one
/// translation domain so that they can be invalidated together.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(transparent)]
pub struct Vmid(pub u16);

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A PCI bus/device/function triple; its 16-bit form is the PCIe requester ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Bdf {
    /// Bus number, 0..=255.
    pub bus: u8,
    /// Device number, 0..=31.
    pub dev: u8,
    /// Function number, 0..=7.
    pub func: u8,
}

/// A [`Bdf`] field was out of range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BdfError {
    /// The device number was above 31.
    Device(u8),
    /// The function number was above 7.
    Function(u8),
}

impl Bdf {
    /// A checked constructor.
    ///
    /// # Errors
    /// [`BdfError`] names the field that does not fit in the requester ID.
    pub const fn new(bus: u8, dev: u8, func: u8) -> Result<Self, BdfError> {
        if dev > 31 {
            Err(BdfError::Device(dev))
        } else if func > 7 {
            Err(BdfError::Function(func))
        } else {
            Ok(Self { bus, dev, func })
        }
    }

    /// The PCIe requester ID: `bus << 8 | dev << 3 | func`.
    pub const fn rid(self) -> u16 {
        ((self.bus as u16) << 8) | (((self.dev & 0x1f) as u16) << 3) | (self.func & 7) as u16
    }

    /// The triple from a requester ID.
    pub const fn from_rid(rid: u16) -> Self {
        Self {
            bus: (rid >> 8) as u8,
            dev: ((rid >> 3) & 0x1f) as u8,
            func: (rid & 7) as u8,
        }
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rid_round_trip() {
        let edu = Bdf::new(0, 1, 0).unwrap();
        assert_eq!(edu.rid(), 8);
        assert_eq!(
            Bdf::from_rid(0x1234),
            Bdf {
                bus: 0x12,
                dev: 6,
                func: 4
            }
        );
        assert_eq!(Bdf::from_rid(0x1234).rid(), 0x1234);
        assert_eq!(format!("{edu}"), "00:01.0");
    }

    #[test]
    fn out_of_range_fields_are_named() {
        assert_eq!(Bdf::new(0, 32, 0), Err(BdfError::Device(32)));
        assert_eq!(Bdf::new(0, 0, 8), Err(BdfError::Function(8)));
    }
}
