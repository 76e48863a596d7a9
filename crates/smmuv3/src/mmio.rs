//! Register access: the only code that touches the SMMU's MMIO frame.
//!
//! The driver names registers with [`Reg32`]/[`Reg64`] and goes through [`RegisterAccess`]. The
//! real implementation, [`Mmio`], maps each name to a field of the `register_structs!` layout in
//! `regs` (plain volatile accesses, single-copy atomic at their size); host tests plug in
//! an emulated SMMU instead, so bring-up, command and event queue logic run without hardware.

use crate::regs::{Page0Regs, Page1Regs, PAGE_SIZE};
use tock_registers::interfaces::{Readable, Writeable};

/// A 32-bit SMMU register, named as in IHI 0070 §6.3.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Reg32 {
    /// SMMU_IDR0 (§6.3.1).
    Idr0,
    /// SMMU_IDR1 (§6.3.2).
    Idr1,
    /// SMMU_IDR2 (§6.3.3).
    Idr2,
    /// SMMU_IDR3 (§6.3.4).
    Idr3,
    /// SMMU_IDR4 (§6.3.5).
    Idr4,
    /// SMMU_IDR5 (§6.3.6).
    Idr5,
    /// SMMU_IIDR (§6.3.7).
    Iidr,
    /// SMMU_AIDR (§6.3.8).
    Aidr,
    /// SMMU_CR0 (§6.3.9).
    Cr0,
    /// SMMU_CR0ACK (§6.3.10).
    Cr0Ack,
    /// SMMU_CR1 (§6.3.11).
    Cr1,
    /// SMMU_CR2 (§6.3.12).
    Cr2,
    /// SMMU_STATUSR (§6.3.13).
    Statusr,
    /// SMMU_GBPA (§6.3.14).
    Gbpa,
    /// SMMU_IRQ_CTRL (§6.3.16).
    IrqCtrl,
    /// SMMU_IRQ_CTRLACK (§6.3.17).
    IrqCtrlAck,
    /// SMMU_GERROR (§6.3.18).
    Gerror,
    /// SMMU_GERRORN (§6.3.19).
    Gerrorn,
    /// SMMU_STRTAB_BASE_CFG (§6.3.24).
    StrtabBaseCfg,
    /// SMMU_CMDQ_PROD (§6.3.26).
    CmdqProd,
    /// SMMU_CMDQ_CONS (§6.3.27).
    CmdqCons,
    /// SMMU_EVENTQ_PROD (§6.3.29, page 1).
    EventqProd,
    /// SMMU_EVENTQ_CONS (§6.3.30, page 1).
    EventqCons,
}

impl Reg32 {
    /// Offset from the SMMU base (page 1 registers include the +0x10000).
    pub const fn offset(self) -> usize {
        match self {
            Self::Idr0 => 0x00,
            Self::Idr1 => 0x04,
            Self::Idr2 => 0x08,
            Self::Idr3 => 0x0C,
            Self::Idr4 => 0x10,
            Self::Idr5 => 0x14,
            Self::Iidr => 0x18,
            Self::Aidr => 0x1C,
            Self::Cr0 => 0x20,
            Self::Cr0Ack => 0x24,
            Self::Cr1 => 0x28,
            Self::Cr2 => 0x2C,
            Self::Statusr => 0x40,
            Self::Gbpa => 0x44,
            Self::IrqCtrl => 0x50,
            Self::IrqCtrlAck => 0x54,
            Self::Gerror => 0x60,
            Self::Gerrorn => 0x64,
            Self::StrtabBaseCfg => 0x88,
            Self::CmdqProd => 0x98,
            Self::CmdqCons => 0x9C,
            Self::EventqProd => PAGE_SIZE + 0xA8,
            Self::EventqCons => PAGE_SIZE + 0xAC,
        }
    }

    /// The spec's name, for error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Idr0 => "IDR0",
            Self::Idr1 => "IDR1",
            Self::Idr2 => "IDR2",
            Self::Idr3 => "IDR3",
            Self::Idr4 => "IDR4",
            Self::Idr5 => "IDR5",
            Self::Iidr => "IIDR",
            Self::Aidr => "AIDR",
            Self::Cr0 => "CR0",
            Self::Cr0Ack => "CR0ACK",
            Self::Cr1 => "CR1",
            Self::Cr2 => "CR2",
            Self::Statusr => "STATUSR",
            Self::Gbpa => "GBPA",
            Self::IrqCtrl => "IRQ_CTRL",
            Self::IrqCtrlAck => "IRQ_CTRLACK",
            Self::Gerror => "GERROR",
            Self::Gerrorn => "GERRORN",
            Self::StrtabBaseCfg => "STRTAB_BASE_CFG",
            Self::CmdqProd => "CMDQ_PROD",
            Self::CmdqCons => "CMDQ_CONS",
            Self::EventqProd => "EVENTQ_PROD",
            Self::EventqCons => "EVENTQ_CONS",
        }
    }

    /// Whether software may write the register (the others are read-only, IHI 0070 §6.3).
    pub const fn is_writable(self) -> bool {
        matches!(
            self,
            Self::Cr0
                | Self::Cr1
                | Self::Cr2
                | Self::Gbpa
                | Self::IrqCtrl
                | Self::Gerrorn
                | Self::StrtabBaseCfg
                | Self::CmdqProd
                | Self::CmdqCons
                | Self::EventqProd
                | Self::EventqCons
        )
    }
}

/// A 64-bit SMMU register (accessed as one 64-bit access, IHI 0070 §6.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Reg64 {
    /// SMMU_STRTAB_BASE (§6.3.23).
    StrtabBase,
    /// SMMU_CMDQ_BASE (§6.3.25).
    CmdqBase,
    /// SMMU_EVENTQ_BASE (§6.3.28).
    EventqBase,
}

impl Reg64 {
    /// Offset from the SMMU base.
    pub const fn offset(self) -> usize {
        match self {
            Self::StrtabBase => 0x80,
            Self::CmdqBase => 0x90,
            Self::EventqBase => 0xA0,
        }
    }

    /// The spec's name, for error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::StrtabBase => "STRTAB_BASE",
            Self::CmdqBase => "CMDQ_BASE",
            Self::EventqBase => "EVENTQ_BASE",
        }
    }
}

/// Access to an SMMUv3 register frame.
///
/// The driver only writes registers whose [`Reg32::is_writable`] is true. Implementations other
/// than [`Mmio`] exist for tests (an emulated SMMU); they need no `unsafe`.
pub trait RegisterAccess {
    /// Reads a 32-bit register.
    fn read32(&self, reg: Reg32) -> u32;
    /// Writes a 32-bit register.
    fn write32(&mut self, reg: Reg32, value: u32);
    /// Reads a 64-bit register.
    fn read64(&self, reg: Reg64) -> u64;
    /// Writes a 64-bit register.
    fn write64(&mut self, reg: Reg64, value: u64);
    /// Orders earlier register reads before later memory reads, and earlier memory reads
    /// before later register writes (used around queue-entry reads). No-op by default.
    fn io_barrier(&self) {}
}

/// The real register frame, reached through device-memory MMIO.
pub struct Mmio {
    page0: &'static Page0Regs,
    page1: &'static Page1Regs,
}

impl core::fmt::Debug for Mmio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Mmio({:#x})", core::ptr::from_ref(self.page0) as usize)
    }
}

// SAFETY: `Mmio::new`'s contract gives the value exclusive use of the frame, so moving it to
// another thread moves that exclusive use with it; nothing else aliases the registers.
unsafe impl Send for Mmio {}

impl Mmio {
    /// Register access at `base`.
    ///
    /// # Safety
    /// `base` is the 128 KiB SMMU register frame, mapped as device memory, not used by anything
    /// else for the lifetime of the value.
    pub(crate) unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees that `base..base + 0x20000` is the SMMU frame, mapped as
        // device memory and used by nothing else while this value lives; both pages are 64 KiB
        // `repr(C)` blocks of volatile cells, valid for shared references for that long (the
        // references never leave this value).
        unsafe {
            Self {
                page0: &*(base as *const Page0Regs),
                page1: &*((base + PAGE_SIZE) as *const Page1Regs),
            }
        }
    }
}

impl RegisterAccess for Mmio {
    fn read32(&self, reg: Reg32) -> u32 {
        let (p0, p1) = (self.page0, self.page1);
        match reg {
            Reg32::Idr0 => p0.idr0.get(),
            Reg32::Idr1 => p0.idr1.get(),
            Reg32::Idr2 => p0.idr2.get(),
            Reg32::Idr3 => p0.idr3.get(),
            Reg32::Idr4 => p0.idr4.get(),
            Reg32::Idr5 => p0.idr5.get(),
            Reg32::Iidr => p0.iidr.get(),
            Reg32::Aidr => p0.aidr.get(),
            Reg32::Cr0 => p0.cr0.get(),
            Reg32::Cr0Ack => p0.cr0ack.get(),
            Reg32::Cr1 => p0.cr1.get(),
            Reg32::Cr2 => p0.cr2.get(),
            Reg32::Statusr => p0.statusr.get(),
            Reg32::Gbpa => p0.gbpa.get(),
            Reg32::IrqCtrl => p0.irq_ctrl.get(),
            Reg32::IrqCtrlAck => p0.irq_ctrl_ack.get(),
            Reg32::Gerror => p0.gerror.get(),
            Reg32::Gerrorn => p0.gerrorn.get(),
            Reg32::StrtabBaseCfg => p0.strtab_base_cfg.get(),
            Reg32::CmdqProd => p0.cmdq_prod.get(),
            Reg32::CmdqCons => p0.cmdq_cons.get(),
            Reg32::EventqProd => p1.eventq_prod.get(),
            Reg32::EventqCons => p1.eventq_cons.get(),
        }
    }

    fn write32(&mut self, reg: Reg32, value: u32) {
        let (p0, p1) = (self.page0, self.page1);
        match reg {
            Reg32::Cr0 => p0.cr0.set(value),
            Reg32::Cr1 => p0.cr1.set(value),
            Reg32::Cr2 => p0.cr2.set(value),
            Reg32::Gbpa => p0.gbpa.set(value),
            Reg32::IrqCtrl => p0.irq_ctrl.set(value),
            Reg32::Gerrorn => p0.gerrorn.set(value),
            Reg32::StrtabBaseCfg => p0.strtab_base_cfg.set(value),
            Reg32::CmdqProd => p0.cmdq_prod.set(value),
            Reg32::CmdqCons => p0.cmdq_cons.set(value),
            Reg32::EventqProd => p1.eventq_prod.set(value),
            Reg32::EventqCons => p1.eventq_cons.set(value),
            // Read-only registers: the driver never writes them (a host test checks this).
            Reg32::Idr0
            | Reg32::Idr1
            | Reg32::Idr2
            | Reg32::Idr3
            | Reg32::Idr4
            | Reg32::Idr5
            | Reg32::Iidr
            | Reg32::Aidr
            | Reg32::Cr0Ack
            | Reg32::Statusr
            | Reg32::IrqCtrlAck
            | Reg32::Gerror => {}
        }
    }

    fn read64(&self, reg: Reg64) -> u64 {
        match reg {
            Reg64::StrtabBase => self.page0.strtab_base.get(),
            Reg64::CmdqBase => self.page0.cmdq_base.get(),
            Reg64::EventqBase => self.page0.eventq_base.get(),
        }
    }

    fn write64(&mut self, reg: Reg64, value: u64) {
        match reg {
            Reg64::StrtabBase => self.page0.strtab_base.set(value),
            Reg64::CmdqBase => self.page0.cmdq_base.set(value),
            Reg64::EventqBase => self.page0.eventq_base.set(value),
        }
    }

    fn io_barrier(&self) {
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `DSB SY` only waits for earlier memory and device accesses to complete; it
        // reads and writes no memory or registers the compiler knows about.
        unsafe {
            core::arch::asm!("dsb sy", options(nostack, preserves_flags));
        }
        #[cfg(not(target_arch = "aarch64"))]
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn names_and_offsets_agree_with_the_layout() {
        assert_eq!(Reg32::Cr0Ack.offset(), offset_of!(Page0Regs, cr0ack));
        assert_eq!(Reg32::Gerrorn.offset(), offset_of!(Page0Regs, gerrorn));
        assert_eq!(Reg32::CmdqCons.offset(), offset_of!(Page0Regs, cmdq_cons));
        assert_eq!(
            Reg32::StrtabBaseCfg.offset(),
            offset_of!(Page0Regs, strtab_base_cfg)
        );
        assert_eq!(
            Reg32::EventqProd.offset(),
            0x1_0000 + offset_of!(Page1Regs, eventq_prod)
        );
        assert_eq!(Reg32::EventqCons.offset(), 0x1_00AC);
        assert_eq!(Reg64::CmdqBase.offset(), offset_of!(Page0Regs, cmdq_base));
        assert_eq!(
            Reg64::EventqBase.offset(),
            offset_of!(Page0Regs, eventq_base)
        );
        assert_eq!(Reg32::Cr0Ack.name(), "CR0ACK");
        assert!(!Reg32::Gerror.is_writable());
        assert!(Reg32::Gerrorn.is_writable());
    }

    #[test]
    fn mmio_reads_and_writes_the_frame() {
        // A 128 KiB block of host memory stands in for the device frame.
        let mut frame = vec![0u64; 0x2_0000 / 8];
        frame[0x14 / 8] = 0x74 << 32; // IDR5 at 0x14 (upper half of the word at 0x10)
        let base = frame.as_mut_ptr() as usize;
        {
            // SAFETY: `frame` is 128 KiB, 8-byte aligned, outlives `mmio`, and is not otherwise
            // accessed while `mmio` is in use.
            let mut mmio = unsafe { Mmio::new(base) };
            assert_eq!(mmio.read32(Reg32::Idr5), 0x74);
            mmio.write32(Reg32::EventqCons, 0x8000_0003);
            mmio.write64(Reg64::CmdqBase, 0x1234_5000 | 8);
            mmio.write32(Reg32::Idr0, 0xdead); // ignored: read-only
            assert_eq!(mmio.read32(Reg32::EventqCons), 0x8000_0003);
            assert_eq!(mmio.read64(Reg64::CmdqBase), 0x1234_5008);
            assert_eq!(mmio.read32(Reg32::Idr0), 0);
        }
        assert_eq!(frame[(0x1_00A8) / 8] >> 32, 0x8000_0003);
        assert_eq!(frame[0x90 / 8], 0x1234_5008);
    }
}
