//! CAP_REG and ECAP_REG decoded (VT-d §11.4.2, §11.4.3): what this unit can do, as typed values.

use crate::regs::{CAP, ECAP, VER};
use core::fmt;
use tock_registers::fields::Field;
use tock_registers::RegisterLongName;

/// The value of `field` in `raw`.
pub(crate) fn field<R: RegisterLongName>(raw: u64, f: Field<u64, R>) -> u64 {
    (raw >> f.shift) & f.mask
}

/// A second-level address width, chosen from CAP.SAGAW (VT-d §3.6 "Second-Stage Translation",
/// §9.3 context-entry AW field).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum AddressWidth {
    /// 39-bit input addresses, 3-level table (SAGAW bit 1, context AW = 001b).
    Bits39,
    /// 48-bit input addresses, 4-level table (SAGAW bit 2, context AW = 010b).
    Bits48,
}

impl AddressWidth {
    /// Input address bits.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Bits39 => 39,
            Self::Bits48 => 48,
        }
    }

    /// Table levels walked.
    pub const fn levels(self) -> u8 {
        match self {
            Self::Bits39 => 3,
            Self::Bits48 => 4,
        }
    }

    /// The context entry's AW encoding (VT-d §9.3).
    pub const fn aw(self) -> u8 {
        match self {
            Self::Bits39 => 0b001,
            Self::Bits48 => 0b010,
        }
    }

    /// The width an AW encoding names, if this driver builds tables of it.
    pub const fn from_aw(aw: u8) -> Option<Self> {
        match aw {
            0b001 => Some(Self::Bits39),
            0b010 => Some(Self::Bits48),
            _ => None,
        }
    }
}

/// Decoded VER_REG, CAP_REG and ECAP_REG.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Features {
    /// VER_REG major.minor.
    pub version: (u8, u8),
    /// CAP.ND, raw.
    pub nd: u8,
    /// Domain-ids the unit supports: 2^(4 + 2·ND) (CAP.ND).
    pub domains: u32,
    /// CAP.RWBF: table updates need a write-buffer flush (GCMD.WBF).
    pub rwbf: bool,
    /// CAP.CM: caching mode; not-present and faulting entries may be cached, so
    /// not-present → present changes need invalidation too (VT-d §6.1).
    pub caching_mode: bool,
    /// CAP.SAGAW, raw (bit 1: 39-bit, bit 2: 48-bit, bit 3: 57-bit).
    pub sagaw: u8,
    /// Maximum guest address width in bits (CAP.MGAW + 1).
    pub mgaw_bits: u8,
    /// CAP.ZLR: zero-length reads are supported.
    pub zlr: bool,
    /// Offset of the first fault-recording register in 16-byte units (CAP.FRO).
    pub fro: u16,
    /// CAP.SLLPS bit 0: 2 MiB second-level superpages.
    pub superpage_2m: bool,
    /// CAP.SLLPS bit 1: 1 GiB second-level superpages.
    pub superpage_1g: bool,
    /// CAP.PSI: page-selective IOTLB invalidation.
    pub psi: bool,
    /// Number of fault-recording registers (CAP.NFR + 1).
    pub nfr: u16,
    /// CAP.MAMV: largest address mask of a page-selective invalidation.
    pub mamv: u8,
    /// CAP.DRD: read draining.
    pub drain_read: bool,
    /// CAP.DWD: write draining.
    pub drain_write: bool,
    /// ECAP.C: page walks snoop the CPU caches. When false every table write must be
    /// flushed from the CPU caches before the unit may walk it.
    pub coherent: bool,
    /// ECAP.QI: queued invalidation.
    pub qi: bool,
    /// ECAP.DT: device-TLBs (ATS).
    pub device_tlb: bool,
    /// ECAP.IR: interrupt remapping.
    pub ir: bool,
    /// ECAP.PT: pass-through context entries.
    pub pass_through: bool,
    /// ECAP.SC: snoop control.
    pub snoop_control: bool,
    /// Offset of IVA_REG in 16-byte units (ECAP.IRO).
    pub iro: u16,
    /// ECAP.SMTS: scalable-mode translation.
    pub scalable_mode: bool,
}

/// CAP/ECAP describe a unit this driver cannot drive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FeatureError {
    /// CAP.ND = 7 is reserved (VT-d §11.4.2).
    ReservedNd,
    /// CAP.SAGAW offers neither a 39-bit 3-level nor a 48-bit 4-level table.
    NoUsableWidth {
        /// CAP.SAGAW.
        sagaw: u8,
    },
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedNd => f.write_str("CAP_REG.ND is the reserved value 7"),
            Self::NoUsableWidth { sagaw } => write!(
                f,
                "CAP_REG.SAGAW {sagaw:#07b} offers neither 39-bit 3-level nor 48-bit 4-level tables"
            ),
        }
    }
}

impl Features {
    /// Decodes the three identification registers.
    ///
    /// # Errors
    /// [`FeatureError`] for a reserved CAP.ND or a SAGAW without a width we build.
    pub fn decode(ver: u32, cap: u64, ecap: u64) -> Result<Self, FeatureError> {
        let nd = field(cap, CAP::ND) as u8;
        if nd == 7 {
            return Err(FeatureError::ReservedNd);
        }
        let sllps = field(cap, CAP::SLLPS);
        let features = Self {
            version: (
                ((ver >> VER::MAX.shift) & VER::MAX.mask) as u8,
                ((ver >> VER::MIN.shift) & VER::MIN.mask) as u8,
            ),
            nd,
            domains: 1 << (4 + 2 * u32::from(nd)),
            rwbf: field(cap, CAP::RWBF) != 0,
            caching_mode: field(cap, CAP::CM) != 0,
            sagaw: field(cap, CAP::SAGAW) as u8,
            mgaw_bits: field(cap, CAP::MGAW) as u8 + 1,
            zlr: field(cap, CAP::ZLR) != 0,
            fro: field(cap, CAP::FRO) as u16,
            superpage_2m: sllps & 1 != 0,
            superpage_1g: sllps & 2 != 0,
            psi: field(cap, CAP::PSI) != 0,
            nfr: field(cap, CAP::NFR) as u16 + 1,
            mamv: field(cap, CAP::MAMV) as u8,
            drain_read: field(cap, CAP::DRD) != 0,
            drain_write: field(cap, CAP::DWD) != 0,
            coherent: field(ecap, ECAP::C) != 0,
            qi: field(ecap, ECAP::QI) != 0,
            device_tlb: field(ecap, ECAP::DT) != 0,
            ir: field(ecap, ECAP::IR) != 0,
            pass_through: field(ecap, ECAP::PT) != 0,
            snoop_control: field(ecap, ECAP::SC) != 0,
            iro: field(ecap, ECAP::IRO) as u16,
            scalable_mode: field(ecap, ECAP::SMTS) != 0,
        };
        features.address_width()?;
        Ok(features)
    }

    /// The widest table this driver builds that CAP.SAGAW supports: 48-bit 4-level, else
    /// 39-bit 3-level.
    ///
    /// # Errors
    /// [`FeatureError::NoUsableWidth`] when SAGAW has neither.
    pub fn address_width(&self) -> Result<AddressWidth, FeatureError> {
        if self.sagaw & 0b100 != 0 {
            Ok(AddressWidth::Bits48)
        } else if self.sagaw & 0b010 != 0 {
            Ok(AddressWidth::Bits39)
        } else {
            Err(FeatureError::NoUsableWidth { sagaw: self.sagaw })
        }
    }

    /// Input address bits a domain can use: the table's width, capped by CAP.MGAW (addresses
    /// above MGAW fault with reason 0x4 whatever the table says).
    pub fn iova_bits(&self) -> Result<u8, FeatureError> {
        Ok(self.address_width()?.bits().min(self.mgaw_bits))
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VT-d {}.{}: {} domains, SAGAW {:#07b}, MGAW {}, superpages{}{}, CM={} C={} QI={} PSI={} \
             MAMV={} NFR={} FRO={:#x} IRO={:#x}",
            self.version.0,
            self.version.1,
            self.domains,
            self.sagaw,
            self.mgaw_bits,
            if self.superpage_2m { " 2M" } else { "" },
            if self.superpage_1g { " 1G" } else { "" },
            u8::from(self.caching_mode),
            u8::from(self.coherent),
            u8::from(self.qi),
            u8::from(self.psi),
            self.mamv,
            self.nfr,
            self.fro * 16,
            self.iro * 16,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10.0.2 `intel-iommu,aw-bits=48,caching-mode=on`.
    pub(crate) const QEMU_CAP: u64 = 0x00d2_008c_222f_0686;
    pub(crate) const QEMU_ECAP: u64 = 0xf0_0f4a;

    #[test]
    fn qemu_registers_decode_as_the_facts_file_says() {
        let f = Features::decode(0x10, QEMU_CAP, QEMU_ECAP).unwrap();
        assert_eq!(f.version, (1, 0));
        assert_eq!(f.domains, 65536);
        assert!(f.caching_mode && !f.rwbf && !f.zlr);
        assert_eq!(f.sagaw, 0b00110);
        assert_eq!(f.mgaw_bits, 48);
        assert!(f.superpage_2m && f.superpage_1g);
        assert!(f.psi);
        assert_eq!(f.mamv, 18);
        assert_eq!(f.nfr, 1);
        assert_eq!(f.fro * 16, 0x220);
        assert!(f.drain_read && f.drain_write);
        assert!(!f.coherent && f.qi && f.ir && f.pass_through && !f.device_tlb);
        assert_eq!(f.iro * 16, 0xf0);
        assert_eq!(f.address_width().unwrap(), AddressWidth::Bits48);
        assert_eq!(f.iova_bits().unwrap(), 48);
    }

    #[test]
    fn widths_follow_sagaw_and_bad_values_are_named() {
        // aw-bits=39: SAGAW bit 1 only, MGAW 38.
        let cap39 = (QEMU_CAP & !(0x1f << 8) & !(0x3f << 16)) | (0b010 << 8) | (38 << 16);
        let f = Features::decode(0x10, cap39, QEMU_ECAP).unwrap();
        assert_eq!(f.address_width().unwrap(), AddressWidth::Bits39);
        assert_eq!(f.iova_bits().unwrap(), 39);
        let cap57 = (QEMU_CAP & !(0x1f << 8)) | (0b1000 << 8);
        assert_eq!(
            Features::decode(0x10, cap57, QEMU_ECAP),
            Err(FeatureError::NoUsableWidth { sagaw: 0b1000 })
        );
        assert_eq!(
            Features::decode(0x10, QEMU_CAP | 7, QEMU_ECAP),
            Err(FeatureError::ReservedNd)
        );
        assert_eq!(AddressWidth::from_aw(0b010), Some(AddressWidth::Bits48));
        assert_eq!(AddressWidth::from_aw(0b011), None);
    }
}
