//! What an SMMU implements, decoded from SMMU_IDR0..5 and SMMU_AIDR (IHI 0070 §6.3.1-§6.3.8).

use crate::regs::{AIDR, IDR0, IDR1, IDR3, IDR5};
use core::fmt;
use tock_registers::LocalRegisterCopy;

/// Translation table formats the SMMU walks (IHI 0070 §6.3.1 IDR0.TTF).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TableFormat {
    /// Reserved encoding 0b00.
    Reserved,
    /// AArch32 (LPAE) tables only.
    AArch32,
    /// AArch64 tables only.
    AArch64,
    /// Both AArch32 and AArch64 tables.
    Both,
}

impl TableFormat {
    /// Whether AArch64 translation tables are supported.
    pub const fn aarch64(self) -> bool {
        matches!(self, Self::AArch64 | Self::Both)
    }
}

/// Endianness of table walks (IHI 0070 §6.3.1 IDR0.TTENDIAN).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TableEndian {
    /// Both, selected per table.
    Mixed,
    /// Reserved encoding 0b01.
    Reserved,
    /// Little-endian only.
    Little,
    /// Big-endian only.
    Big,
}

/// Stall support (IHI 0070 §6.3.1 IDR0.STALL_MODEL).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StallModel {
    /// Stall and terminate models both supported.
    StallAndTerminate,
    /// Only terminate: faulting transactions are never stalled.
    TerminateOnly,
    /// Stall is forced for faults that can stall.
    StallForced,
    /// Reserved encoding 0b11.
    Reserved,
}

/// Identification of the architecture revision (IHI 0070 §6.3.8 AIDR).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ArchVersion {
    /// Major revision: 3 for SMMUv3 (AIDR.ArchMajorRev 0 means v3).
    pub major: u8,
    /// Minor revision (SMMUv3.x).
    pub minor: u8,
}

impl fmt::Display for ArchVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SMMUv{}.{}", self.major, self.minor)
    }
}

/// The SMMU's capabilities.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Features {
    /// IDR0.S1P: stage-1 translation.
    pub s1p: bool,
    /// IDR0.S2P: stage-2 translation.
    pub s2p: bool,
    /// IDR0.TTF: table formats.
    pub ttf: TableFormat,
    /// IDR0.COHACC: the SMMU's own table/queue accesses are IO-coherent.
    pub cohacc: bool,
    /// IDR0.BTM: broadcast TLB maintenance.
    pub btm: bool,
    /// IDR0.HTTU: hardware access/dirty flag updates (0 none, 1 access, 2 access and dirty).
    pub httu: u8,
    /// IDR0.HYP: EL2 (hypervisor) stage-1 contexts.
    pub hyp: bool,
    /// IDR0.ATS: PCIe ATS.
    pub ats: bool,
    /// IDR0.ASID16: 16-bit ASIDs.
    pub asid16: bool,
    /// IDR0.MSI: message-signalled interrupts.
    pub msi: bool,
    /// IDR0.SEV: the SMMU can send WFE wake-up events.
    pub sev: bool,
    /// IDR0.PRI: PCIe page request interface.
    pub pri: bool,
    /// IDR0.VMID16: 16-bit VMIDs (otherwise 8-bit).
    pub vmid16: bool,
    /// IDR0.CD2L: 2-level context descriptor tables.
    pub cd2l: bool,
    /// IDR0.TTENDIAN: table walk endianness.
    pub ttendian: TableEndian,
    /// IDR0.STALL_MODEL.
    pub stall_model: StallModel,
    /// IDR0.TERM_MODEL: terminated transactions always abort (never RAZ/WI).
    pub term_abort_only: bool,
    /// IDR0.ST_LEVEL == 0b01: 2-level stream tables are supported.
    pub two_level_stream_table: bool,
    /// IDR1.SIDSIZE: StreamID width in bits.
    pub sid_bits: u8,
    /// IDR1.SSIDSIZE: SubstreamID width in bits.
    pub ssid_bits: u8,
    /// IDR1.PRIQS: log2 of the maximum PRI queue entries.
    pub priq_log2: u8,
    /// IDR1.EVENTQS: log2 of the maximum event queue entries.
    pub eventq_log2: u8,
    /// IDR1.CMDQS: log2 of the maximum command queue entries.
    pub cmdq_log2: u8,
    /// IDR1.ATTR_TYPES_OVR: the STE and GBPA memory-type, allocation and shareability overrides
    /// (MTCFG/MemAttr, ALLOCCFG, SHCFG) are implemented; otherwise those fields are RES0.
    pub attr_types_ovr: bool,
    /// IDR1.TABLES_PRESET: the stream table base is fixed by the implementation.
    pub tables_preset: bool,
    /// IDR1.QUEUES_PRESET: the queue bases are fixed by the implementation.
    pub queues_preset: bool,
    /// IDR3.HAD: hierarchical attribute disables.
    pub had: bool,
    /// IDR3.XNX: stage-2 XN distinguishes EL0/EL1 execute.
    pub xnx: bool,
    /// IDR3.RIL: range invalidation (TLBI commands with NUM/SCALE/TG/TTL).
    pub ril: bool,
    /// IDR3.BBML: break-before-make level (0, 1 or 2).
    pub bbml: u8,
    /// IDR5.OAS decoded to bits, `None` for a reserved encoding.
    pub oas_bits: Option<u8>,
    /// IDR5.OAS as encoded (the S2PS code of the largest supported size).
    pub oas_code: u8,
    /// IDR5.GRAN4K.
    pub gran4k: bool,
    /// IDR5.GRAN16K.
    pub gran16k: bool,
    /// IDR5.GRAN64K.
    pub gran64k: bool,
    /// AIDR: architecture revision.
    pub version: ArchVersion,
    /// The raw IDR0..5 values, for logging.
    pub idr: [u32; 6],
    /// The raw AIDR value.
    pub aidr: u32,
}

/// Address size in bits for a PA-size code (IHI 0070 §6.3.6 IDR5.OAS, §5.2 STE.S2PS).
pub const fn pa_bits_from_code(code: u8) -> Option<u8> {
    match code {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        _ => None,
    }
}

/// PA-size code for an address size in bits (the inverse of [`pa_bits_from_code`]): the S2PS
/// value for a stage-2 context whose output addresses are `bits` wide. `None` when `bits` is not
/// one of the architected sizes.
pub const fn pa_code_from_bits(bits: u8) -> Option<u8> {
    match bits {
        32 => Some(0),
        36 => Some(1),
        40 => Some(2),
        42 => Some(3),
        44 => Some(4),
        48 => Some(5),
        52 => Some(6),
        _ => None,
    }
}

impl Features {
    /// Decodes the identification registers. Total: every value decodes (reserved encodings
    /// become `Reserved`/`None`).
    pub fn decode(idr: [u32; 6], aidr: u32) -> Self {
        let i0 = LocalRegisterCopy::<u32, IDR0::Register>::new(idr[0]);
        let i1 = LocalRegisterCopy::<u32, IDR1::Register>::new(idr[1]);
        let i3 = LocalRegisterCopy::<u32, IDR3::Register>::new(idr[3]);
        let i5 = LocalRegisterCopy::<u32, IDR5::Register>::new(idr[5]);
        let a = LocalRegisterCopy::<u32, AIDR::Register>::new(aidr);
        let oas_code = i5.read(IDR5::OAS) as u8;
        Self {
            s1p: i0.is_set(IDR0::S1P),
            s2p: i0.is_set(IDR0::S2P),
            ttf: match i0.read(IDR0::TTF) {
                1 => TableFormat::AArch32,
                2 => TableFormat::AArch64,
                3 => TableFormat::Both,
                _ => TableFormat::Reserved,
            },
            cohacc: i0.is_set(IDR0::COHACC),
            btm: i0.is_set(IDR0::BTM),
            httu: i0.read(IDR0::HTTU) as u8,
            hyp: i0.is_set(IDR0::HYP),
            ats: i0.is_set(IDR0::ATS),
            asid16: i0.is_set(IDR0::ASID16),
            msi: i0.is_set(IDR0::MSI),
            sev: i0.is_set(IDR0::SEV),
            pri: i0.is_set(IDR0::PRI),
            vmid16: i0.is_set(IDR0::VMID16),
            cd2l: i0.is_set(IDR0::CD2L),
            ttendian: match i0.read(IDR0::TTENDIAN) {
                0 => TableEndian::Mixed,
                2 => TableEndian::Little,
                3 => TableEndian::Big,
                _ => TableEndian::Reserved,
            },
            stall_model: match i0.read(IDR0::STALL_MODEL) {
                0 => StallModel::StallAndTerminate,
                1 => StallModel::TerminateOnly,
                2 => StallModel::StallForced,
                _ => StallModel::Reserved,
            },
            term_abort_only: i0.is_set(IDR0::TERM_MODEL),
            two_level_stream_table: i0.read(IDR0::ST_LEVEL) == 1,
            sid_bits: i1.read(IDR1::SIDSIZE) as u8,
            ssid_bits: i1.read(IDR1::SSIDSIZE) as u8,
            priq_log2: i1.read(IDR1::PRIQS) as u8,
            eventq_log2: i1.read(IDR1::EVENTQS) as u8,
            cmdq_log2: i1.read(IDR1::CMDQS) as u8,
            attr_types_ovr: i1.is_set(IDR1::ATTR_TYPES_OVR),
            tables_preset: i1.is_set(IDR1::TABLES_PRESET),
            queues_preset: i1.is_set(IDR1::QUEUES_PRESET),
            had: i3.is_set(IDR3::HAD),
            xnx: i3.is_set(IDR3::XNX),
            ril: i3.is_set(IDR3::RIL),
            bbml: i3.read(IDR3::BBML) as u8,
            oas_bits: pa_bits_from_code(oas_code),
            oas_code,
            gran4k: i5.is_set(IDR5::GRAN4K),
            gran16k: i5.is_set(IDR5::GRAN16K),
            gran64k: i5.is_set(IDR5::GRAN64K),
            version: ArchVersion {
                // ArchMajorRev 0 is SMMUv3; later majors count up from there.
                major: 3 + a.read(AIDR::ArchMajorRev) as u8,
                minor: a.read(AIDR::ArchMinorRev) as u8,
            },
            idr,
            aidr,
        }
    }

    /// Width of a VMID in bits (IHI 0070 §6.3.1 IDR0.VMID16).
    pub const fn vmid_bits(&self) -> u8 {
        if self.vmid16 {
            16
        } else {
            8
        }
    }
}

impl fmt::Display for Features {
    /// One line for the boot log, e.g.
    /// `SMMUv3.1 S1P S2P ttf=AArch64 LE coherent sid=16b ssid=0b oas=44b gran=4K,16K,64K ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.version)?;
        for (on, name) in [(self.s1p, "S1P"), (self.s2p, "S2P")] {
            if on {
                write!(f, " {name}")?;
            }
        }
        write!(f, " ttf={:?} endian={:?}", self.ttf, self.ttendian)?;
        if self.cohacc {
            write!(f, " coherent")?;
        }
        write!(
            f,
            " sid={}b ssid={}b vmid={}b",
            self.sid_bits,
            self.ssid_bits,
            self.vmid_bits()
        )?;
        match self.oas_bits {
            Some(bits) => write!(f, " oas={bits}b")?,
            None => write!(f, " oas=reserved({})", self.oas_code)?,
        }
        write!(f, " gran=")?;
        let mut sep = "";
        for (on, name) in [
            (self.gran4k, "4K"),
            (self.gran16k, "16K"),
            (self.gran64k, "64K"),
        ] {
            if on {
                write!(f, "{sep}{name}")?;
                sep = ",";
            }
        }
        write!(
            f,
            " strtab={} cmdq<=2^{} evtq<=2^{}",
            if self.two_level_stream_table {
                "2-level"
            } else {
                "linear"
            },
            self.cmdq_log2,
            self.eventq_log2
        )?;
        for (on, name) in [
            (self.ril, "RIL"),
            (self.had, "HAD"),
            (self.xnx, "XNX"),
            (self.hyp, "HYP"),
            (self.msi, "MSI"),
            (self.ats, "ATS"),
            (self.pri, "PRI"),
            (self.btm, "BTM"),
            (self.sev, "SEV"),
        ] {
            if on {
                write!(f, " {name}")?;
            }
        }
        if self.bbml != 0 {
            write!(f, " BBML{}", self.bbml)?;
        }
        write!(f, " stall={:?}", self.stall_model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IDR values QEMU 10.0 `virt` presents (docs/qemu-virt-facts.md; IDR3 from the model's
    /// init: HAD | XNX | RIL | BBML=2).
    pub(crate) const QEMU_IDR: [u32; 6] = [0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x74];

    #[test]
    fn decodes_qemu_virt() {
        let f = Features::decode(QEMU_IDR, 1);
        assert!(f.s1p);
        assert!(f.s2p);
        assert_eq!(f.ttf, TableFormat::AArch64);
        assert!(f.ttf.aarch64());
        assert!(f.cohacc);
        assert!(!f.btm);
        assert_eq!(f.httu, 0);
        assert!(!f.hyp);
        assert!(!f.ats);
        assert!(f.asid16);
        assert!(!f.msi);
        assert!(!f.sev);
        assert!(!f.pri);
        assert!(f.vmid16);
        assert!(!f.cd2l);
        assert_eq!(f.ttendian, TableEndian::Little);
        assert_eq!(f.stall_model, StallModel::TerminateOnly);
        assert!(f.term_abort_only);
        assert!(f.two_level_stream_table);
        assert_eq!(f.sid_bits, 16);
        assert_eq!(f.ssid_bits, 0);
        assert_eq!(f.priq_log2, 0);
        assert_eq!(f.eventq_log2, 19);
        assert_eq!(f.cmdq_log2, 19);
        assert!(!f.attr_types_ovr, "IDR1 bit 27 is clear on QEMU");
        assert!(!f.tables_preset);
        assert!(!f.queues_preset);
        assert!(f.had);
        assert!(f.xnx);
        assert!(f.ril);
        assert_eq!(f.bbml, 2);
        assert_eq!(f.oas_bits, Some(44));
        assert_eq!(f.oas_code, 4);
        assert!(f.gran4k && f.gran16k && f.gran64k);
        assert_eq!(f.version, ArchVersion { major: 3, minor: 1 });
        assert_eq!(f.vmid_bits(), 16);
    }

    #[test]
    fn decodes_stage2_only_smmu() {
        // `-machine virt-9.1 -global arm-smmuv3.stage=2`: IDR0 = 0x0d441019.
        let f = Features::decode([0x0d44_1019, 0x0273_0010, 0, 0, 0, 0x74], 1);
        assert!(f.s2p);
        assert!(!f.s1p);
        assert!(!f.ril);
    }

    #[test]
    fn reserved_encodings_do_not_panic() {
        let f = Features::decode([u32::MAX; 6], u32::MAX);
        assert_eq!(f.oas_bits, None);
        assert_eq!(f.oas_code, 7);
        assert_eq!(f.ttendian, TableEndian::Big);
        assert_eq!(f.stall_model, StallModel::Reserved);
        assert_eq!(
            f.version,
            ArchVersion {
                major: 18,
                minor: 15
            }
        );
        let f = Features::decode([0; 6], 0);
        assert_eq!(f.ttf, TableFormat::Reserved);
        assert!(!f.ttf.aarch64());
        assert_eq!(f.ttendian, TableEndian::Mixed);
        assert_eq!(f.vmid_bits(), 8);
    }

    #[test]
    fn pa_size_codes_round_trip() {
        for code in 0..=6 {
            let bits = pa_bits_from_code(code).unwrap();
            assert_eq!(pa_code_from_bits(bits), Some(code));
        }
        assert_eq!(pa_code_from_bits(44), Some(4));
        assert_eq!(pa_code_from_bits(43), None);
        assert_eq!(pa_bits_from_code(7), None);
    }

    #[test]
    fn summary_line() {
        let s = format!("{}", Features::decode(QEMU_IDR, 1));
        assert_eq!(
            s,
            "SMMUv3.1 S1P S2P ttf=AArch64 endian=Little coherent sid=16b ssid=0b vmid=16b \
             oas=44b gran=4K,16K,64K strtab=2-level cmdq<=2^19 evtq<=2^19 RIL HAD XNX BBML2 \
             stall=TerminateOnly"
        );
    }
}
