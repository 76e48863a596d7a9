//! The remapping unit's register frame: the fixed block at the start of the frame, the IOTLB
//! pair at the offset ECAP.IRO names and the fault-recording registers at the offset CAP.FRO
//! names (Intel VT-d Architecture Specification rev 4.x, §11.4 "Register Descriptions", the
//! memory map in §11.4 table "Address Mapping for Remapping Hardware Registers").
//!
//! Field names are the spec's abbreviations. Only [`crate::mmio`] touches the structs;
//! everything else composes values with the bitfields below.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    /// The registers at fixed offsets (VT-d §11.4), up to the interrupt-remapping table
    /// address. Page-request, MTRR and virtual-command registers are not used.
    pub(crate) FixedRegs {
        // VT-d §11.4.1 VER_REG: architecture version (major.minor).
        (0x000 => pub ver: ReadOnly<u32, VER::Register>),
        (0x004 => _reserved0),
        // VT-d §11.4.2 CAP_REG: capabilities of second-level translation and fault recording.
        (0x008 => pub cap: ReadOnly<u64, CAP::Register>),
        // VT-d §11.4.3 ECAP_REG: extended capabilities (queued invalidation, coherency, IRO).
        (0x010 => pub ecap: ReadOnly<u64, ECAP::Register>),
        // VT-d §11.4.4 GCMD_REG: one-shot and persistent global commands (write-only).
        (0x018 => pub gcmd: ReadWrite<u32, GCMD::Register>),
        // VT-d §11.4.5 GSTS_REG: the status each command reports.
        (0x01C => pub gsts: ReadOnly<u32, GSTS::Register>),
        // VT-d §11.4.6 RTADDR_REG: root table address and translation table mode.
        (0x020 => pub rtaddr: ReadWrite<u64, RTADDR::Register>),
        // VT-d §11.4.7 CCMD_REG: register-based context-cache invalidation.
        (0x028 => pub ccmd: ReadWrite<u64, CCMD::Register>),
        (0x030 => _reserved1),
        // VT-d §11.4.9.1 FSTS_REG: fault status.
        (0x034 => pub fsts: ReadWrite<u32, FSTS::Register>),
        // VT-d §11.4.9.2 FECTL_REG: fault event interrupt mask and pending bits.
        (0x038 => pub fectl: ReadWrite<u32, FECTL::Register>),
        // VT-d §11.4.9.3 FEDATA_REG: the fault event MSI's data.
        (0x03C => pub fedata: ReadWrite<u32>),
        // VT-d §11.4.9.4 FEADDR_REG: the fault event MSI's address (low 32 bits).
        (0x040 => pub feaddr: ReadWrite<u32>),
        // VT-d §11.4.9.5 FEUADDR_REG: the fault event MSI's upper address.
        (0x044 => pub feuaddr: ReadWrite<u32>),
        (0x048 => _reserved2),
        // VT-d §11.4.12.1 IQH_REG: invalidation queue head (hardware's next descriptor).
        (0x080 => pub iqh: ReadOnly<u64, IQH::Register>),
        // VT-d §11.4.12.2 IQT_REG: invalidation queue tail (software's next free slot).
        (0x088 => pub iqt: ReadWrite<u64, IQT::Register>),
        // VT-d §11.4.12.3 IQA_REG: invalidation queue base, size and descriptor width.
        (0x090 => pub iqa: ReadWrite<u64, IQA::Register>),
        (0x098 => _reserved3),
        // VT-d §11.4.12.4 ICS_REG: invalidation completion status.
        (0x09C => pub ics: ReadWrite<u32, ICS::Register>),
        // Invalidation event, IQERCD and IRTA registers: not used.
        (0x0A0 => _reserved4),
        (0x0C0 => @END),
    },

    /// The IOTLB invalidation registers, at ECAP.IRO × 16 (VT-d §11.4.8).
    pub(crate) IotlbRegs {
        // VT-d §11.4.8.2 IVA_REG: address, mask and hint of a page-selective invalidation.
        (0x000 => pub iva: ReadWrite<u64, IVA::Register>),
        // VT-d §11.4.8.1 IOTLB_REG: register-based IOTLB invalidation command.
        (0x008 => pub iotlb: ReadWrite<u64, IOTLB::Register>),
        (0x010 => @END),
    },

    /// One 128-bit fault-recording register, at CAP.FRO × 16 + 16 × n (VT-d §11.4.9.6).
    pub(crate) FrcdRegs {
        // VT-d §11.4.9.6 FRCD_REG bits 63:0: the faulting page address (FI).
        (0x000 => pub lo: ReadWrite<u64, FRCD_LO::Register>),
        // VT-d §11.4.9.6 FRCD_REG bits 127:64: F, T, fault reason, source-id.
        (0x008 => pub hi: ReadWrite<u64, FRCD_HI::Register>),
        (0x010 => @END),
    }
}

register_bitfields! {u32,
    /// VT-d §11.4.1 VER_REG.
    pub VER [
        /// Minor version number.
        MIN OFFSET(0) NUMBITS(4) [],
        /// Major version number.
        MAX OFFSET(4) NUMBITS(4) []
    ],
    /// VT-d §11.4.4 GCMD_REG. Reads return 0: software composes every write from a shadow of
    /// the persistent bits (TE, QIE, IRE) plus at most one one-shot bit.
    pub GCMD [
        /// Compatibility format interrupts.
        CFI OFFSET(23) NUMBITS(1) [],
        /// Set interrupt remap table pointer (one-shot).
        SIRTP OFFSET(24) NUMBITS(1) [],
        /// Interrupt remapping enable (persistent).
        IRE OFFSET(25) NUMBITS(1) [],
        /// Queued invalidation enable (persistent).
        QIE OFFSET(26) NUMBITS(1) [],
        /// Write buffer flush (one-shot, only when CAP.RWBF).
        WBF OFFSET(27) NUMBITS(1) [],
        /// Enable advanced fault logging (deprecated).
        EAFL OFFSET(28) NUMBITS(1) [],
        /// Set fault log (deprecated).
        SFL OFFSET(29) NUMBITS(1) [],
        /// Set root table pointer (one-shot): latch RTADDR_REG.
        SRTP OFFSET(30) NUMBITS(1) [],
        /// Translation enable (persistent).
        TE OFFSET(31) NUMBITS(1) []
    ],
    /// VT-d §11.4.5 GSTS_REG.
    pub GSTS [
        /// Compatibility format interrupt status.
        CFIS OFFSET(23) NUMBITS(1) [],
        /// Interrupt remapping table pointer status.
        IRTPS OFFSET(24) NUMBITS(1) [],
        /// Interrupt remapping enable status.
        IRES OFFSET(25) NUMBITS(1) [],
        /// Queued invalidation enable status.
        QIES OFFSET(26) NUMBITS(1) [],
        /// Write buffer flush status (1 while a flush is in progress).
        WBFS OFFSET(27) NUMBITS(1) [],
        /// Advanced fault logging status.
        AFLS OFFSET(28) NUMBITS(1) [],
        /// Fault log status.
        FLS OFFSET(29) NUMBITS(1) [],
        /// Root table pointer status (set once RTADDR_REG was latched).
        RTPS OFFSET(30) NUMBITS(1) [],
        /// Translation enable status.
        TES OFFSET(31) NUMBITS(1) []
    ],
    /// VT-d §11.4.9.1 FSTS_REG. PFO, IQE, ICE, ITE are write-1-to-clear; PPF and FRI are
    /// read-only and follow the fault-recording registers.
    pub FSTS [
        /// Primary fault overflow: a fault was dropped because its recording register was full.
        PFO OFFSET(0) NUMBITS(1) [],
        /// Primary pending fault: at least one FRCD_REG has F set.
        PPF OFFSET(1) NUMBITS(1) [],
        /// Invalidation queue error: hardware stopped at the descriptor IQH_REG names.
        IQE OFFSET(4) NUMBITS(1) [],
        /// Invalidation completion error (device-TLB invalidation response).
        ICE OFFSET(5) NUMBITS(1) [],
        /// Invalidation time-out error (device-TLB invalidation).
        ITE OFFSET(6) NUMBITS(1) [],
        /// Fault record index: the first recording register with F set (valid with PPF).
        FRI OFFSET(8) NUMBITS(8) []
    ],
    /// VT-d §11.4.9.2 FECTL_REG.
    pub FECTL [
        /// Interrupt pending: an event arrived while masked.
        IP OFFSET(30) NUMBITS(1) [],
        /// Interrupt mask: 1 holds fault events back (the reset value).
        IM OFFSET(31) NUMBITS(1) []
    ],
    /// VT-d §11.4.12.4 ICS_REG.
    pub ICS [
        /// Invalidation wait descriptor complete (write 1 to clear).
        IWC OFFSET(0) NUMBITS(1) []
    ]
}

register_bitfields! {u64,
    /// VT-d §11.4.2 CAP_REG.
    pub CAP [
        /// Number of domains supported: 2^(4 + 2·ND) domain-ids.
        ND OFFSET(0) NUMBITS(3) [],
        /// Advanced fault logging.
        AFL OFFSET(3) NUMBITS(1) [],
        /// Required write-buffer flushing: GCMD.WBF after table updates.
        RWBF OFFSET(4) NUMBITS(1) [],
        /// Protected low-memory region.
        PLMR OFFSET(5) NUMBITS(1) [],
        /// Protected high-memory region.
        PHMR OFFSET(6) NUMBITS(1) [],
        /// Caching mode: not-present and faulting entries may be cached.
        CM OFFSET(7) NUMBITS(1) [],
        /// Supported adjusted guest address widths (bit 1: 39-bit 3-level, bit 2: 48-bit
        /// 4-level, bit 3: 57-bit 5-level).
        SAGAW OFFSET(8) NUMBITS(5) [],
        /// Maximum guest address width minus one.
        MGAW OFFSET(16) NUMBITS(6) [],
        /// Zero-length read.
        ZLR OFFSET(22) NUMBITS(1) [],
        /// Fault-recording register offset, in 16-byte units from the frame base.
        FRO OFFSET(24) NUMBITS(10) [],
        /// Second-level large page support (bit 0: 2 MiB, bit 1: 1 GiB).
        SLLPS OFFSET(34) NUMBITS(4) [],
        /// Page-selective invalidation.
        PSI OFFSET(39) NUMBITS(1) [],
        /// Number of fault-recording registers minus one.
        NFR OFFSET(40) NUMBITS(8) [],
        /// Maximum address mask value of a page-selective invalidation.
        MAMV OFFSET(48) NUMBITS(6) [],
        /// Write draining.
        DWD OFFSET(54) NUMBITS(1) [],
        /// Read draining.
        DRD OFFSET(55) NUMBITS(1) [],
        /// First-level 1 GiB pages.
        FL1GP OFFSET(56) NUMBITS(1) [],
        /// Posted interrupts.
        PI OFFSET(59) NUMBITS(1) []
    ],
    /// VT-d §11.4.3 ECAP_REG.
    pub ECAP [
        /// Page-walk coherency: 1 when hardware snoops the CPU caches when it walks tables.
        C OFFSET(0) NUMBITS(1) [],
        /// Queued invalidation support.
        QI OFFSET(1) NUMBITS(1) [],
        /// Device-TLB support.
        DT OFFSET(2) NUMBITS(1) [],
        /// Interrupt remapping support.
        IR OFFSET(3) NUMBITS(1) [],
        /// Extended interrupt mode.
        EIM OFFSET(4) NUMBITS(1) [],
        /// Pass-through (context-entry TT = 10b).
        PT OFFSET(6) NUMBITS(1) [],
        /// Snoop control (SNP bit in second-level leaves).
        SC OFFSET(7) NUMBITS(1) [],
        /// IOTLB register offset, in 16-byte units from the frame base.
        IRO OFFSET(8) NUMBITS(10) [],
        /// Maximum handle mask value (interrupt-entry-cache invalidation).
        MHMV OFFSET(20) NUMBITS(4) [],
        /// Scalable-mode translation support.
        SMTS OFFSET(43) NUMBITS(1) [],
        /// Second-level translation support (in scalable mode).
        SLTS OFFSET(46) NUMBITS(1) [],
        /// First-level translation support.
        FLTS OFFSET(47) NUMBITS(1) []
    ],
    /// VT-d §11.4.6 RTADDR_REG.
    pub RTADDR [
        /// Translation table mode: 00b legacy root/context tables, 01b scalable mode.
        TTM OFFSET(10) NUMBITS(2) [
            /// Legacy mode (VT-d §9.1 root entries, §9.3 context entries).
            Legacy = 0,
            /// Scalable mode (VT-d §9.2, §9.4).
            Scalable = 1
        ],
        /// Root table address bits 63:12 (4 KiB aligned).
        RTA OFFSET(12) NUMBITS(52) []
    ],
    /// VT-d §11.4.7 CCMD_REG.
    pub CCMD [
        /// Domain-id (domain-selective and device-selective requests).
        DID OFFSET(0) NUMBITS(16) [],
        /// Source-id (device-selective requests).
        SID OFFSET(16) NUMBITS(16) [],
        /// Function mask applied to SID's function bits.
        FM OFFSET(32) NUMBITS(2) [],
        /// Actual invalidation granularity (written by hardware).
        CAIG OFFSET(59) NUMBITS(2) [],
        /// Context invalidation request granularity.
        CIRG OFFSET(61) NUMBITS(2) [
            /// Every context-cache entry.
            Global = 1,
            /// Entries of one domain-id.
            Domain = 2,
            /// Entries of one source-id (and domain-id).
            Device = 3
        ],
        /// Invalidate context cache: set to start, hardware clears it when done.
        ICC OFFSET(63) NUMBITS(1) []
    ],
    /// VT-d §11.4.8.1 IOTLB_REG.
    pub IOTLB [
        /// Domain-id of domain- and page-selective requests.
        DID OFFSET(32) NUMBITS(16) [],
        /// Drain writes.
        DW OFFSET(48) NUMBITS(1) [],
        /// Drain reads.
        DR OFFSET(49) NUMBITS(1) [],
        /// Actual invalidation granularity (written by hardware).
        IAIG OFFSET(57) NUMBITS(2) [],
        /// IOTLB invalidation request granularity.
        IIRG OFFSET(60) NUMBITS(2) [
            /// Every IOTLB entry.
            Global = 1,
            /// Entries of one domain-id.
            Domain = 2,
            /// Entries of one domain-id within the range IVA_REG names.
            Page = 3
        ],
        /// Invalidate IOTLB: set to start, hardware clears it when done.
        IVT OFFSET(63) NUMBITS(1) []
    ],
    /// VT-d §11.4.8.2 IVA_REG.
    pub IVA [
        /// Address mask: the request covers 2^AM pages, aligned.
        AM OFFSET(0) NUMBITS(6) [],
        /// Invalidation hint: only leaf entries changed, paging-structure caches may stay.
        IH OFFSET(6) NUMBITS(1) [],
        /// Page address bits 63:12.
        ADDR OFFSET(12) NUMBITS(52) []
    ],
    /// VT-d §11.4.12.1 IQH_REG.
    pub IQH [
        /// Queue head: index of the next descriptor hardware fetches (128-bit units).
        QH OFFSET(4) NUMBITS(15) []
    ],
    /// VT-d §11.4.12.2 IQT_REG.
    pub IQT [
        /// Queue tail: index of the next descriptor software writes (128-bit units).
        QT OFFSET(4) NUMBITS(15) []
    ],
    /// VT-d §11.4.12.3 IQA_REG.
    pub IQA [
        /// Queue size: 2^QS pages of 4 KiB (256 descriptors of 128 bits per page).
        QS OFFSET(0) NUMBITS(3) [],
        /// Descriptor width: 0 = 128-bit, 1 = 256-bit (scalable mode only).
        DW OFFSET(11) NUMBITS(1) [],
        /// Queue base address bits 63:12.
        IQA OFFSET(12) NUMBITS(52) []
    ],
    /// VT-d §11.4.9.6 FRCD_REG, bits 63:0.
    pub FRCD_LO [
        /// Fault information: the page address of the faulting request (bits 63:12).
        FI OFFSET(12) NUMBITS(52) []
    ],
    /// VT-d §11.4.9.6 FRCD_REG, bits 127:64 (positions below are relative to bit 64).
    pub FRCD_HI [
        /// Source-id (requester id: bus, device, function) of the faulting request.
        SID OFFSET(0) NUMBITS(16) [],
        /// Privilege-mode requested (with PASID).
        PRIV OFFSET(29) NUMBITS(1) [],
        /// Execute requested (with PASID).
        EXE OFFSET(30) NUMBITS(1) [],
        /// PASID present.
        PP OFFSET(31) NUMBITS(1) [],
        /// Fault reason (VT-d Appendix A).
        FR OFFSET(32) NUMBITS(8) [],
        /// PASID value.
        PV OFFSET(40) NUMBITS(20) [],
        /// Address type of the request (untranslated, translation request, translated).
        AT OFFSET(60) NUMBITS(2) [],
        /// Type: 0 = write request, 1 = read (or AtomicOp) request.
        T OFFSET(62) NUMBITS(1) [],
        /// Fault: the record is valid; software writes 1 to clear it.
        F OFFSET(63) NUMBITS(1) []
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn block_sizes_and_offsets_match_the_memory_map() {
        assert_eq!(size_of::<FixedRegs>(), 0xC0);
        assert_eq!(size_of::<IotlbRegs>(), 16);
        assert_eq!(size_of::<FrcdRegs>(), 16);
        assert_eq!(offset_of!(FixedRegs, cap), 0x08);
        assert_eq!(offset_of!(FixedRegs, gsts), 0x1C);
        assert_eq!(offset_of!(FixedRegs, ccmd), 0x28);
        assert_eq!(offset_of!(FixedRegs, fsts), 0x34);
        assert_eq!(offset_of!(FixedRegs, feuaddr), 0x44);
        assert_eq!(offset_of!(FixedRegs, iqa), 0x90);
        assert_eq!(offset_of!(FixedRegs, ics), 0x9C);
        assert_eq!(offset_of!(IotlbRegs, iotlb), 8);
        assert_eq!(offset_of!(FrcdRegs, hi), 8);
    }

    #[test]
    fn bit_positions_match_the_spec() {
        assert_eq!(GCMD::TE.mask << GCMD::TE.shift, 1 << 31);
        assert_eq!(GCMD::QIE.mask << GCMD::QIE.shift, 1 << 26);
        assert_eq!(GSTS::RTPS.mask << GSTS::RTPS.shift, 1 << 30);
        assert_eq!(CCMD::ICC.mask << CCMD::ICC.shift, 1 << 63);
        assert_eq!(CCMD::CIRG::Global.value, 1 << 61);
        assert_eq!(IOTLB::IIRG::Page.value, 3 << 60);
        assert_eq!(FRCD_HI::FR.shift, 32);
        assert_eq!(FSTS::FRI.shift, 8);
    }
}
