//! The SMMUv3 programming interface: layout of register pages 0 and 1 and the fields of each
//! register (IHI 0070 §6.2 memory map, §6.3 register descriptions).
//!
//! The frame is 128 KiB: page 0 at +0x0 holds identification, control and the queue bases; page 1
//! at +0x10000 holds the event and PRI queue PROD/CONS pointers (IHI 0070 §6.2). Field names are
//! the spec's abbreviations. Only [`crate::mmio`] touches the structs; everything else composes
//! values with the bitfields below.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

/// Size of one register page (IHI 0070 §6.2).
pub(crate) const PAGE_SIZE: usize = 0x1_0000;

register_structs! {
    /// Register page 0 (IHI 0070 §6.2, offsets relative to the SMMU base).
    pub(crate) Page0Regs {
        // IHI 0070 §6.3.1 SMMU_IDR0: stages, table formats, stream-table levels.
        (0x000 => pub idr0: ReadOnly<u32, IDR0::Register>),
        // IHI 0070 §6.3.2 SMMU_IDR1: StreamID/SubstreamID widths, queue size limits.
        (0x004 => pub idr1: ReadOnly<u32, IDR1::Register>),
        // IHI 0070 §6.3.3 SMMU_IDR2: VATOS page base (unused here).
        (0x008 => pub idr2: ReadOnly<u32>),
        // IHI 0070 §6.3.4 SMMU_IDR3: optional architecture features (RIL, BBML, ...).
        (0x00C => pub idr3: ReadOnly<u32, IDR3::Register>),
        // IHI 0070 §6.3.5 SMMU_IDR4: IMPLEMENTATION DEFINED.
        (0x010 => pub idr4: ReadOnly<u32>),
        // IHI 0070 §6.3.6 SMMU_IDR5: output address size and granules.
        (0x014 => pub idr5: ReadOnly<u32, IDR5::Register>),
        // IHI 0070 §6.3.7 SMMU_IIDR: implementer identification.
        (0x018 => pub iidr: ReadOnly<u32>),
        // IHI 0070 §6.3.8 SMMU_AIDR: architecture revision.
        (0x01C => pub aidr: ReadOnly<u32, AIDR::Register>),
        // IHI 0070 §6.3.9 SMMU_CR0: enables; each change is acknowledged in CR0ACK.
        (0x020 => pub cr0: ReadWrite<u32, CR0::Register>),
        // IHI 0070 §6.3.10 SMMU_CR0ACK.
        (0x024 => pub cr0ack: ReadOnly<u32, CR0::Register>),
        // IHI 0070 §6.3.11 SMMU_CR1: cacheability/shareability of table and queue accesses.
        (0x028 => pub cr1: ReadWrite<u32, CR1::Register>),
        // IHI 0070 §6.3.12 SMMU_CR2.
        (0x02C => pub cr2: ReadWrite<u32, CR2::Register>),
        (0x030 => _reserved0),
        // IHI 0070 §6.3.13 SMMU_STATUSR.
        (0x040 => pub statusr: ReadOnly<u32>),
        // IHI 0070 §6.3.14 SMMU_GBPA: what happens to traffic while SMMUEN == 0.
        (0x044 => pub gbpa: ReadWrite<u32, GBPA::Register>),
        // IHI 0070 §6.3.15 SMMU_AGBPA: IMPLEMENTATION DEFINED attributes (unused).
        (0x048 => pub agbpa: ReadWrite<u32>),
        (0x04C => _reserved1),
        // IHI 0070 §6.3.16 SMMU_IRQ_CTRL.
        (0x050 => pub irq_ctrl: ReadWrite<u32, IRQ_CTRL::Register>),
        // IHI 0070 §6.3.17 SMMU_IRQ_CTRLACK.
        (0x054 => pub irq_ctrl_ack: ReadOnly<u32, IRQ_CTRL::Register>),
        (0x058 => _reserved2),
        // IHI 0070 §6.3.18 SMMU_GERROR: global errors, active while different from GERRORN.
        (0x060 => pub gerror: ReadOnly<u32, GERROR::Register>),
        // IHI 0070 §6.3.19 SMMU_GERRORN: software acknowledges by toggling to match GERROR.
        (0x064 => pub gerrorn: ReadWrite<u32, GERROR::Register>),
        // IHI 0070 §6.3.20 SMMU_GERROR_IRQ_CFG0 (MSI address; unused, we poll).
        (0x068 => pub gerror_irq_cfg0: ReadWrite<u64>),
        // IHI 0070 §6.3.21 SMMU_GERROR_IRQ_CFG1.
        (0x070 => pub gerror_irq_cfg1: ReadWrite<u32>),
        // IHI 0070 §6.3.22 SMMU_GERROR_IRQ_CFG2.
        (0x074 => pub gerror_irq_cfg2: ReadWrite<u32>),
        (0x078 => _reserved3),
        // IHI 0070 §6.3.23 SMMU_STRTAB_BASE.
        (0x080 => pub strtab_base: ReadWrite<u64, STRTAB_BASE::Register>),
        // IHI 0070 §6.3.24 SMMU_STRTAB_BASE_CFG.
        (0x088 => pub strtab_base_cfg: ReadWrite<u32, STRTAB_BASE_CFG::Register>),
        (0x08C => _reserved4),
        // IHI 0070 §6.3.25 SMMU_CMDQ_BASE.
        (0x090 => pub cmdq_base: ReadWrite<u64, CMDQ_BASE::Register>),
        // IHI 0070 §6.3.26 SMMU_CMDQ_PROD.
        (0x098 => pub cmdq_prod: ReadWrite<u32, CMDQ_PROD::Register>),
        // IHI 0070 §6.3.27 SMMU_CMDQ_CONS.
        (0x09C => pub cmdq_cons: ReadWrite<u32, CMDQ_CONS::Register>),
        // IHI 0070 §6.3.28 SMMU_EVENTQ_BASE.
        (0x0A0 => pub eventq_base: ReadWrite<u64, EVENTQ_BASE::Register>),
        // 0xA8/0xAC: EVENTQ_PROD/CONS live in page 1; their page-0 aliases are optional.
        (0x0A8 => _reserved5),
        // IHI 0070 §6.3.31 SMMU_EVENTQ_IRQ_CFG0 (unused, we poll).
        (0x0B0 => pub eventq_irq_cfg0: ReadWrite<u64>),
        // IHI 0070 §6.3.32 SMMU_EVENTQ_IRQ_CFG1.
        (0x0B8 => pub eventq_irq_cfg1: ReadWrite<u32>),
        // IHI 0070 §6.3.33 SMMU_EVENTQ_IRQ_CFG2.
        (0x0BC => pub eventq_irq_cfg2: ReadWrite<u32>),
        // IHI 0070 §6.3.34 SMMU_PRIQ_BASE (PRI is not used).
        (0x0C0 => pub priq_base: ReadWrite<u64>),
        (0x0C8 => _reserved6),
        // IHI 0070 §6.3.37 SMMU_PRIQ_IRQ_CFG0..2.
        (0x0D0 => pub priq_irq_cfg0: ReadWrite<u64>),
        (0x0D8 => pub priq_irq_cfg1: ReadWrite<u32>),
        (0x0DC => pub priq_irq_cfg2: ReadWrite<u32>),
        // GATOS, MPAM, secure aliases and IMPLEMENTATION DEFINED space up to the page end.
        (0x0E0 => _reserved7),
        (0x1_0000 => @END),
    },

    /// Register page 1 (IHI 0070 §6.2, offsets relative to SMMU base + 0x10000).
    pub(crate) Page1Regs {
        (0x000 => _reserved0),
        // IHI 0070 §6.3.29 SMMU_EVENTQ_PROD (page 1).
        (0x0A8 => pub eventq_prod: ReadWrite<u32, EVENTQ_PROD::Register>),
        // IHI 0070 §6.3.30 SMMU_EVENTQ_CONS (page 1).
        (0x0AC => pub eventq_cons: ReadWrite<u32, EVENTQ_CONS::Register>),
        (0x0B0 => _reserved1),
        // IHI 0070 §6.3.35 SMMU_PRIQ_PROD (page 1).
        (0x0C8 => pub priq_prod: ReadWrite<u32>),
        // IHI 0070 §6.3.36 SMMU_PRIQ_CONS (page 1).
        (0x0CC => pub priq_cons: ReadWrite<u32>),
        (0x0D0 => _reserved2),
        (0x1_0000 => @END),
    }
}

register_bitfields! {u32,
    /// IHI 0070 §6.3.1 SMMU_IDR0.
    pub(crate) IDR0 [
        S2P OFFSET(0) NUMBITS(1) [],
        S1P OFFSET(1) NUMBITS(1) [],
        TTF OFFSET(2) NUMBITS(2) [AArch32 = 1, AArch64 = 2, Both = 3],
        COHACC OFFSET(4) NUMBITS(1) [],
        BTM OFFSET(5) NUMBITS(1) [],
        HTTU OFFSET(6) NUMBITS(2) [],
        DORMHINT OFFSET(8) NUMBITS(1) [],
        HYP OFFSET(9) NUMBITS(1) [],
        ATS OFFSET(10) NUMBITS(1) [],
        NS1ATS OFFSET(11) NUMBITS(1) [],
        ASID16 OFFSET(12) NUMBITS(1) [],
        MSI OFFSET(13) NUMBITS(1) [],
        SEV OFFSET(14) NUMBITS(1) [],
        ATOS OFFSET(15) NUMBITS(1) [],
        PRI OFFSET(16) NUMBITS(1) [],
        VMW OFFSET(17) NUMBITS(1) [],
        VMID16 OFFSET(18) NUMBITS(1) [],
        CD2L OFFSET(19) NUMBITS(1) [],
        VATOS OFFSET(20) NUMBITS(1) [],
        TTENDIAN OFFSET(21) NUMBITS(2) [Mixed = 0, Little = 2, Big = 3],
        ATSRECERR OFFSET(23) NUMBITS(1) [],
        STALL_MODEL OFFSET(24) NUMBITS(2) [],
        TERM_MODEL OFFSET(26) NUMBITS(1) [],
        ST_LEVEL OFFSET(27) NUMBITS(2) [Linear = 0, TwoLevel = 1],
    ],
    /// IHI 0070 §6.3.2 SMMU_IDR1.
    pub(crate) IDR1 [
        SIDSIZE OFFSET(0) NUMBITS(6) [],
        SSIDSIZE OFFSET(6) NUMBITS(5) [],
        PRIQS OFFSET(11) NUMBITS(5) [],
        EVENTQS OFFSET(16) NUMBITS(5) [],
        CMDQS OFFSET(21) NUMBITS(5) [],
        ATTR_PERMS_OVR OFFSET(26) NUMBITS(1) [],
        ATTR_TYPES_OVR OFFSET(27) NUMBITS(1) [],
        REL OFFSET(28) NUMBITS(1) [],
        QUEUES_PRESET OFFSET(29) NUMBITS(1) [],
        TABLES_PRESET OFFSET(30) NUMBITS(1) [],
        ECMDQ OFFSET(31) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.4 SMMU_IDR3.
    pub(crate) IDR3 [
        HAD OFFSET(2) NUMBITS(1) [],
        PBHA OFFSET(3) NUMBITS(1) [],
        XNX OFFSET(4) NUMBITS(1) [],
        PPS OFFSET(5) NUMBITS(1) [],
        MPAM OFFSET(7) NUMBITS(1) [],
        FWB OFFSET(8) NUMBITS(1) [],
        STT OFFSET(9) NUMBITS(1) [],
        RIL OFFSET(10) NUMBITS(1) [],
        BBML OFFSET(11) NUMBITS(2) [],
        E0PD OFFSET(13) NUMBITS(1) [],
        PTWNNC OFFSET(14) NUMBITS(1) [],
        DPT OFFSET(15) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.6 SMMU_IDR5.
    pub(crate) IDR5 [
        OAS OFFSET(0) NUMBITS(3) [],
        GRAN4K OFFSET(4) NUMBITS(1) [],
        GRAN16K OFFSET(5) NUMBITS(1) [],
        GRAN64K OFFSET(6) NUMBITS(1) [],
        VAX OFFSET(10) NUMBITS(2) [],
        STALL_MAX OFFSET(16) NUMBITS(16) [],
    ],
    /// IHI 0070 §6.3.8 SMMU_AIDR.
    pub(crate) AIDR [
        ArchMinorRev OFFSET(0) NUMBITS(4) [],
        ArchMajorRev OFFSET(4) NUMBITS(4) [],
    ],
    /// IHI 0070 §6.3.9 SMMU_CR0 (and §6.3.10 CR0ACK, same layout).
    pub(crate) CR0 [
        SMMUEN OFFSET(0) NUMBITS(1) [],
        PRIQEN OFFSET(1) NUMBITS(1) [],
        EVENTQEN OFFSET(2) NUMBITS(1) [],
        CMDQEN OFFSET(3) NUMBITS(1) [],
        ATSCHK OFFSET(4) NUMBITS(1) [],
        VMW OFFSET(6) NUMBITS(3) [],
    ],
    /// IHI 0070 §6.3.11 SMMU_CR1: attributes the SMMU uses for its own queue and table accesses.
    pub(crate) CR1 [
        QUEUE_IC OFFSET(0) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        QUEUE_OC OFFSET(2) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        QUEUE_SH OFFSET(4) NUMBITS(2) [NonShareable = 0, OuterShareable = 2, InnerShareable = 3],
        TABLE_IC OFFSET(6) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        TABLE_OC OFFSET(8) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        TABLE_SH OFFSET(10) NUMBITS(2) [NonShareable = 0, OuterShareable = 2, InnerShareable = 3],
    ],
    /// IHI 0070 §6.3.12 SMMU_CR2.
    pub(crate) CR2 [
        E2H OFFSET(0) NUMBITS(1) [],
        RECINVSID OFFSET(1) NUMBITS(1) [],
        PTM OFFSET(2) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.14 SMMU_GBPA.
    pub(crate) GBPA [
        MemAttr OFFSET(0) NUMBITS(4) [],
        MTCFG OFFSET(4) NUMBITS(1) [],
        ALLOCCFG OFFSET(8) NUMBITS(4) [],
        SHCFG OFFSET(12) NUMBITS(2) [],
        PRIVCFG OFFSET(16) NUMBITS(2) [],
        INSTCFG OFFSET(18) NUMBITS(2) [],
        ABORT OFFSET(20) NUMBITS(1) [],
        UPDATE OFFSET(31) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.16 SMMU_IRQ_CTRL (and §6.3.17 IRQ_CTRLACK).
    pub(crate) IRQ_CTRL [
        GERROR_IRQEN OFFSET(0) NUMBITS(1) [],
        PRIQ_IRQEN OFFSET(1) NUMBITS(1) [],
        EVENTQ_IRQEN OFFSET(2) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.18 SMMU_GERROR (and §6.3.19 GERRORN, same layout).
    pub(crate) GERROR [
        CMDQ_ERR OFFSET(0) NUMBITS(1) [],
        EVENTQ_ABT_ERR OFFSET(2) NUMBITS(1) [],
        PRIQ_ABT_ERR OFFSET(3) NUMBITS(1) [],
        MSI_CMDQ_ABT_ERR OFFSET(4) NUMBITS(1) [],
        MSI_EVENTQ_ABT_ERR OFFSET(5) NUMBITS(1) [],
        MSI_PRIQ_ABT_ERR OFFSET(6) NUMBITS(1) [],
        MSI_GERROR_ABT_ERR OFFSET(7) NUMBITS(1) [],
        SFM_ERR OFFSET(8) NUMBITS(1) [],
        CMDQP_ERR OFFSET(9) NUMBITS(1) [],
        DPT_ERR OFFSET(10) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.24 SMMU_STRTAB_BASE_CFG.
    pub(crate) STRTAB_BASE_CFG [
        LOG2SIZE OFFSET(0) NUMBITS(6) [],
        SPLIT OFFSET(6) NUMBITS(5) [],
        FMT OFFSET(16) NUMBITS(2) [Linear = 0, TwoLevel = 1],
    ],
    /// IHI 0070 §6.3.26 SMMU_CMDQ_PROD.
    pub(crate) CMDQ_PROD [
        WR OFFSET(0) NUMBITS(20) [],
    ],
    /// IHI 0070 §6.3.27 SMMU_CMDQ_CONS.
    pub(crate) CMDQ_CONS [
        RD OFFSET(0) NUMBITS(20) [],
        ERR OFFSET(24) NUMBITS(7) [],
    ],
    /// IHI 0070 §6.3.29 SMMU_EVENTQ_PROD.
    pub(crate) EVENTQ_PROD [
        WR OFFSET(0) NUMBITS(20) [],
        OVFLG OFFSET(31) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.30 SMMU_EVENTQ_CONS.
    pub(crate) EVENTQ_CONS [
        RD OFFSET(0) NUMBITS(20) [],
        OVACKFLG OFFSET(31) NUMBITS(1) [],
    ]
}

register_bitfields! {u64,
    /// IHI 0070 §6.3.23 SMMU_STRTAB_BASE.
    pub(crate) STRTAB_BASE [
        ADDR OFFSET(6) NUMBITS(46) [],
        RA OFFSET(62) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.25 SMMU_CMDQ_BASE.
    pub(crate) CMDQ_BASE [
        LOG2SIZE OFFSET(0) NUMBITS(5) [],
        ADDR OFFSET(5) NUMBITS(47) [],
        RA OFFSET(62) NUMBITS(1) [],
    ],
    /// IHI 0070 §6.3.28 SMMU_EVENTQ_BASE.
    pub(crate) EVENTQ_BASE [
        LOG2SIZE OFFSET(0) NUMBITS(5) [],
        ADDR OFFSET(5) NUMBITS(47) [],
        WA OFFSET(62) NUMBITS(1) [],
    ]
}

/// Bits `[51:lo]` of a physical address, left in place: the `ADDR` fields of the base registers
/// (and of table descriptors) hold address bits at their own positions.
pub(crate) const fn addr_bits(pa: u64, lo: u32) -> u64 {
    pa & (((1u64 << 52) - 1) & !((1u64 << lo) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn pages_are_64k() {
        assert_eq!(size_of::<Page0Regs>(), PAGE_SIZE);
        assert_eq!(size_of::<Page1Regs>(), PAGE_SIZE);
    }

    #[test]
    fn offsets_match_the_spec_memory_map() {
        assert_eq!(offset_of!(Page0Regs, idr0), 0x00);
        assert_eq!(offset_of!(Page0Regs, idr5), 0x14);
        assert_eq!(offset_of!(Page0Regs, aidr), 0x1C);
        assert_eq!(offset_of!(Page0Regs, cr0), 0x20);
        assert_eq!(offset_of!(Page0Regs, cr0ack), 0x24);
        assert_eq!(offset_of!(Page0Regs, gbpa), 0x44);
        assert_eq!(offset_of!(Page0Regs, irq_ctrl), 0x50);
        assert_eq!(offset_of!(Page0Regs, gerror), 0x60);
        assert_eq!(offset_of!(Page0Regs, gerrorn), 0x64);
        assert_eq!(offset_of!(Page0Regs, strtab_base), 0x80);
        assert_eq!(offset_of!(Page0Regs, strtab_base_cfg), 0x88);
        assert_eq!(offset_of!(Page0Regs, cmdq_base), 0x90);
        assert_eq!(offset_of!(Page0Regs, cmdq_prod), 0x98);
        assert_eq!(offset_of!(Page0Regs, cmdq_cons), 0x9C);
        assert_eq!(offset_of!(Page0Regs, eventq_base), 0xA0);
        assert_eq!(offset_of!(Page0Regs, eventq_irq_cfg0), 0xB0);
        assert_eq!(offset_of!(Page1Regs, eventq_prod), 0xA8);
        assert_eq!(offset_of!(Page1Regs, eventq_cons), 0xAC);
        assert_eq!(offset_of!(Page1Regs, priq_prod), 0xC8);
    }

    #[test]
    fn field_positions() {
        assert_eq!(GBPA::ABORT::SET.value, 1 << 20);
        assert_eq!(GBPA::UPDATE::SET.value, 1 << 31);
        assert_eq!(CR0::CMDQEN::SET.value, 1 << 3);
        assert_eq!(CR0::EVENTQEN::SET.value, 1 << 2);
        assert_eq!(CR2::RECINVSID::SET.value, 1 << 1);
        assert_eq!(CR2::PTM::SET.value, 1 << 2);
        assert_eq!(CMDQ_CONS::ERR.val(0x7f).value, 0x7f << 24);
        assert_eq!(EVENTQ_PROD::OVFLG::SET.value, 1 << 31);
        assert_eq!(STRTAB_BASE_CFG::FMT::TwoLevel.value, 1 << 16);
        assert_eq!(STRTAB_BASE_CFG::SPLIT.val(8).value, 8 << 6);
        let cr1 = CR1::QUEUE_IC::WriteBack
            + CR1::QUEUE_OC::WriteBack
            + CR1::QUEUE_SH::InnerShareable
            + CR1::TABLE_IC::WriteBack
            + CR1::TABLE_OC::WriteBack
            + CR1::TABLE_SH::InnerShareable;
        assert_eq!(cr1.value, 0xD75);
        assert_eq!(CMDQ_BASE::RA::SET.value, 1 << 62);
        assert_eq!(addr_bits(0xFFFF_FFFF_FFFF_FFFF, 5), 0x000F_FFFF_FFFF_FFE0);
    }
}
