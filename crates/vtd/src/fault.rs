//! Fault recording (VT-d §7.2 "Non-Recoverable Fault Reporting", §11.4.9.6 FRCD_REG): the
//! records hardware leaves in the fault-recording registers, decoded.
//!
//! Hardware writes a fault into the next recording register (round robin over CAP.NFR + 1
//! registers) and sets its F bit; FSTS.PPF says some record is pending and FSTS.FRI names the
//! first. When the next register still holds an unread record, the fault is dropped and
//! FSTS.PFO set: faults are lost until software clears PFO.
//!
//! **Compressed faults.** Hardware may drop a fault from a source that already has a pending
//! record (VT-d §7.2.1 leaves this to the implementation; QEMU 10 does it): a rogue 64-byte
//! DMA that faults on every 4-byte access leaves **one** record. A record therefore says "this
//! requester faulted here at least once", never how often.

use core::fmt;
use iommu_core::{Bdf, Direction, Iova};

/// A fault reason (VT-d Appendix A "Non-Recoverable Fault Reason Encodings", legacy mode).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct FaultReasonCode(pub u8);

impl FaultReasonCode {
    /// 0x1: the root entry of the requester's bus is not present.
    pub const ROOT_ENTRY_NOT_PRESENT: Self = Self(0x1);
    /// 0x2: the requester's context entry is not present.
    pub const CONTEXT_ENTRY_NOT_PRESENT: Self = Self(0x2);
    /// 0x3: the context entry is programmed wrong (e.g. an AW the unit does not support).
    pub const CONTEXT_ENTRY_INVALID: Self = Self(0x3);
    /// 0x4: the address is above the domain's address width (AGAW/MGAW).
    pub const ADDRESS_BEYOND_AGAW: Self = Self(0x4);
    /// 0x5: a write met an entry without write permission (or not present).
    pub const WRITE_NOT_PERMITTED: Self = Self(0x5);
    /// 0x6: a read met an entry without read permission (or not present).
    pub const READ_NOT_PERMITTED: Self = Self(0x6);
    /// 0x7: a second-level table address could not be accessed.
    pub const PAGING_ENTRY_INVALID: Self = Self(0x7);
    /// 0x8: the root table address could not be accessed.
    pub const ROOT_TABLE_INVALID: Self = Self(0x8);
    /// 0x9: a context table address could not be accessed.
    pub const CONTEXT_TABLE_INVALID: Self = Self(0x9);
    /// 0xA: a reserved field of a present root entry is set.
    pub const ROOT_ENTRY_RESERVED: Self = Self(0xA);
    /// 0xB: a reserved field of a present context entry is set.
    pub const CONTEXT_ENTRY_RESERVED: Self = Self(0xB);
    /// 0xC: a reserved field of a present second-level entry is set (e.g. PS where CAP.SLLPS
    /// has no such superpage).
    pub const PAGING_ENTRY_RESERVED: Self = Self(0xC);
    /// 0xD: the request type is blocked by the context entry's TT.
    pub const TRANSLATION_TYPE_BLOCKED: Self = Self(0xD);

    /// The spec's description, shortened.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x1 => "root entry not present",
            0x2 => "context entry not present",
            0x3 => "invalid context entry",
            0x4 => "address beyond AGAW",
            0x5 => "write not permitted",
            0x6 => "read not permitted",
            0x7 => "invalid paging entry address",
            0x8 => "invalid root table address",
            0x9 => "invalid context table address",
            0xA => "reserved bit in root entry",
            0xB => "reserved bit in context entry",
            0xC => "reserved bit in paging entry",
            0xD => "translation type blocked",
            0x20..=0x2F => "interrupt remapping fault",
            _ => "other",
        }
    }

    /// The reason in the terms every IOMMU shares.
    pub const fn common(self) -> iommu_core::FaultReason {
        use iommu_core::FaultReason as R;
        match self.0 {
            0x5 | 0x6 => R::Translation,
            0x4 => R::AddressSize,
            0x1..=0x3 | 0x8..=0xB | 0xD => R::BadConfig,
            _ => R::Other,
        }
    }
}

impl fmt::Display for FaultReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.name())
    }
}

/// One decoded fault record.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct FaultRecord {
    /// The requester (FRCD.SID).
    pub source: Bdf,
    /// The page address of the request (FRCD.FI; the offset within the page is not recorded).
    pub addr: Iova,
    /// FRCD.T: 0 = write, 1 = read.
    pub dir: Direction,
    /// FRCD.FR.
    pub reason: FaultReasonCode,
    /// The recording register it came from.
    pub index: u8,
}

impl FaultRecord {
    /// Decodes the two words of a recording register whose F bit is set (§11.4.9.6).
    pub fn decode(index: u8, lo: u64, hi: u64) -> Self {
        use crate::features::field;
        use crate::regs::{FRCD_HI, FRCD_LO};
        Self {
            source: Bdf::from_rid(field(hi, FRCD_HI::SID) as u16),
            addr: Iova(field(lo, FRCD_LO::FI) << 12),
            dir: if field(hi, FRCD_HI::T) != 0 {
                Direction::Read
            } else {
                Direction::Write
            },
            reason: FaultReasonCode(field(hi, FRCD_HI::FR) as u8),
            index,
        }
    }
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fault source={} addr={} dir={} reason={}",
            self.source, self.addr, self.dir, self.reason
        )
    }
}

/// What one pass over the fault-recording registers found.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FaultDrainReport {
    /// Records delivered.
    pub delivered: u64,
    /// FSTS.PFO was set (and cleared): at least one fault was dropped.
    pub overflowed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_decodes_with_the_spec_positions() {
        // F, T = read, FR = 0x6, SID = 00:01.0.
        let hi = (1 << 63) | (1 << 62) | (0x6 << 32) | 0x0008;
        let r = FaultRecord::decode(0, 0x1234_5000, hi);
        assert_eq!(r.source, Bdf::new(0, 1, 0).unwrap());
        assert_eq!(r.addr, Iova(0x1234_5000));
        assert_eq!(r.dir, Direction::Read);
        assert_eq!(r.reason, FaultReasonCode::READ_NOT_PERMITTED);
        let w = FaultRecord::decode(0, 0x1234_5000, (1 << 63) | (0x5 << 32) | 0x0110);
        assert_eq!(w.dir, Direction::Write);
        assert_eq!(format!("{}", w.source), "01:02.0");
        assert_eq!(
            format!("{w}"),
            "fault source=01:02.0 addr=0x0000000012345000 dir=write reason=0x05 (write not permitted)"
        );
    }
}
