//! [`MapError`]: why a table operation was refused.

use core::fmt;
use iommu_core::{Access, Iova, OutOfMemory, PhysAddr};

/// Why [`Stage2Table`](crate::Stage2Table) refused an operation. Every refusal leaves the table
/// exactly as it was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// [`Stage2Config::ias_bits`](crate::Stage2Config::ias_bits) is outside 25..=48.
    IasBits(u8),
    /// [`Stage2Config::oas_bits`](crate::Stage2Config::oas_bits) is outside 32..=52.
    OasBits(u8),
    /// The length is zero or not a multiple of 4 KiB.
    Length(u64),
    /// The IOVA is not 4 KiB aligned.
    UnalignedIova(Iova),
    /// The physical address is not 4 KiB aligned.
    UnalignedPa(PhysAddr),
    /// The access grants nothing, or has bits that [`Access`] does not define.
    InvalidAccess(Access),
    /// `iova + len` goes beyond `2^ias_bits`.
    IovaOutOfRange {
        /// First IOVA of the request.
        iova: Iova,
        /// Length of the request in bytes.
        len: u64,
    },
    /// `pa + len` goes beyond `2^min(oas_bits, 48)`.
    PaOutOfRange {
        /// First physical address of the request.
        pa: PhysAddr,
        /// Length of the request in bytes.
        len: u64,
    },
    /// Part of the range is already mapped.
    Overlap {
        /// The lowest IOVA of the request that is already mapped.
        iova: Iova,
    },
    /// No DMA memory was left for a translation table.
    OutOfMemory(OutOfMemory),
}

impl From<OutOfMemory> for MapError {
    fn from(e: OutOfMemory) -> Self {
        Self::OutOfMemory(e)
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IasBits(bits) => {
                write!(f, "input address size of {bits} bits is outside 25..=48")
            }
            Self::OasBits(bits) => {
                write!(f, "output address size of {bits} bits is outside 32..=52")
            }
            Self::Length(len) => write!(f, "length {len:#x} is zero or not a multiple of 4 KiB"),
            Self::UnalignedIova(iova) => write!(f, "IOVA {iova} is not 4 KiB aligned"),
            Self::UnalignedPa(pa) => write!(f, "physical address {pa} is not 4 KiB aligned"),
            Self::InvalidAccess(access) => {
                write!(
                    f,
                    "access {:#x} grants no permission or has unknown bits",
                    access.bits()
                )
            }
            Self::IovaOutOfRange { iova, len } => {
                write!(
                    f,
                    "IOVA range {iova} + {len:#x} is beyond the input address size"
                )
            }
            Self::PaOutOfRange { pa, len } => {
                write!(
                    f,
                    "physical range {pa} + {len:#x} is beyond the output address size"
                )
            }
            Self::Overlap { iova } => write!(f, "IOVA {iova} is already mapped"),
            Self::OutOfMemory(e) => write!(f, "no memory for a translation table: {e}"),
        }
    }
}

impl core::error::Error for MapError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_value() {
        assert_eq!(
            MapError::Overlap {
                iova: Iova(0x20_0000)
            }
            .to_string(),
            "IOVA 0x0000000000200000 is already mapped"
        );
        assert_eq!(
            MapError::Length(0x1234).to_string(),
            "length 0x1234 is zero or not a multiple of 4 KiB"
        );
        assert_eq!(
            MapError::PaOutOfRange {
                pa: PhysAddr(0xfff_ffff_f000),
                len: 0x2000
            }
            .to_string(),
            "physical range 0x00000ffffffff000 + 0x2000 is beyond the output address size"
        );
        assert_eq!(
            MapError::OutOfMemory(OutOfMemory { size: 4096 }).to_string(),
            "no memory for a translation table: out of DMA memory allocating 0x1000 bytes"
        );
    }
}
