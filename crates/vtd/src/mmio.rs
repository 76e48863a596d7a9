//! Register access: the only code that touches the remapping unit's MMIO frame.
//!
//! The driver names registers with [`Reg32`]/[`Reg64`] and goes through [`RegisterAccess`]. The
//! real implementation, [`Mmio`], maps each name to a field of the `register_structs!` blocks
//! in `regs` (plain volatile accesses of the register's size, as VT-d §11.2 asks: 64-bit
//! registers are read and written as one 64-bit access); host tests plug in the emulated unit
//! of the `fake` module (feature `fake`) instead.

use crate::regs::{FixedRegs, FrcdRegs, IotlbRegs};
use crate::RegisterName;
use tock_registers::interfaces::{Readable, Writeable};

/// A 32-bit register, named as in VT-d §11.4.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Reg32 {
    /// VER_REG (§11.4.1).
    Ver,
    /// GCMD_REG (§11.4.4), write-only.
    Gcmd,
    /// GSTS_REG (§11.4.5).
    Gsts,
    /// FSTS_REG (§11.4.9.1).
    Fsts,
    /// FECTL_REG (§11.4.9.2).
    Fectl,
    /// FEDATA_REG (§11.4.9.3).
    Fedata,
    /// FEADDR_REG (§11.4.9.4).
    Feaddr,
    /// FEUADDR_REG (§11.4.9.5).
    Feuaddr,
    /// ICS_REG (§11.4.12.4).
    Ics,
}

/// A 64-bit register (one 64-bit access), named as in VT-d §11.4.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Reg64 {
    /// CAP_REG (§11.4.2).
    Cap,
    /// ECAP_REG (§11.4.3).
    Ecap,
    /// RTADDR_REG (§11.4.6).
    Rtaddr,
    /// CCMD_REG (§11.4.7).
    Ccmd,
    /// IQH_REG (§11.4.12.1).
    Iqh,
    /// IQT_REG (§11.4.12.2).
    Iqt,
    /// IQA_REG (§11.4.12.3).
    Iqa,
    /// IVA_REG (§11.4.8.2), at ECAP.IRO × 16.
    Iva,
    /// IOTLB_REG (§11.4.8.1), at ECAP.IRO × 16 + 8.
    Iotlb,
    /// Bits 63:0 of fault-recording register `n` (§11.4.9.6), at CAP.FRO × 16 + 16·n.
    FrcdLo(u8),
    /// Bits 127:64 of fault-recording register `n` (§11.4.9.6), at CAP.FRO × 16 + 16·n + 8.
    FrcdHi(u8),
}

impl Reg32 {
    /// Offset from the frame base (VT-d §11.4 memory map).
    pub const fn offset(self) -> usize {
        match self {
            Self::Ver => 0x00,
            Self::Gcmd => 0x18,
            Self::Gsts => 0x1C,
            Self::Fsts => 0x34,
            Self::Fectl => 0x38,
            Self::Fedata => 0x3C,
            Self::Feaddr => 0x40,
            Self::Feuaddr => 0x44,
            Self::Ics => 0x9C,
        }
    }

    /// The register's name, for error messages.
    pub const fn name(self) -> RegisterName {
        RegisterName(match self {
            Self::Ver => "VER_REG",
            Self::Gcmd => "GCMD_REG",
            Self::Gsts => "GSTS_REG",
            Self::Fsts => "FSTS_REG",
            Self::Fectl => "FECTL_REG",
            Self::Fedata => "FEDATA_REG",
            Self::Feaddr => "FEADDR_REG",
            Self::Feuaddr => "FEUADDR_REG",
            Self::Ics => "ICS_REG",
        })
    }
}

impl Reg64 {
    /// Offset from the frame base, given the unit's ECAP.IRO and CAP.FRO (in 16-byte units).
    pub const fn offset(self, iro: u16, fro: u16) -> usize {
        let iotlb = iro as usize * 16;
        let frcd = fro as usize * 16;
        match self {
            Self::Cap => 0x08,
            Self::Ecap => 0x10,
            Self::Rtaddr => 0x20,
            Self::Ccmd => 0x28,
            Self::Iqh => 0x80,
            Self::Iqt => 0x88,
            Self::Iqa => 0x90,
            Self::Iva => iotlb,
            Self::Iotlb => iotlb + 8,
            Self::FrcdLo(n) => frcd + 16 * n as usize,
            Self::FrcdHi(n) => frcd + 16 * n as usize + 8,
        }
    }

    /// The register's name, for error messages.
    pub const fn name(self) -> RegisterName {
        RegisterName(match self {
            Self::Cap => "CAP_REG",
            Self::Ecap => "ECAP_REG",
            Self::Rtaddr => "RTADDR_REG",
            Self::Ccmd => "CCMD_REG",
            Self::Iqh => "IQH_REG",
            Self::Iqt => "IQT_REG",
            Self::Iqa => "IQA_REG",
            Self::Iva => "IVA_REG",
            Self::Iotlb => "IOTLB_REG",
            Self::FrcdLo(_) | Self::FrcdHi(_) => "FRCD_REG",
        })
    }
}

/// Access to a remapping unit's register frame.
///
/// Implementations other than [`Mmio`] exist for tests (the emulated unit); they need no
/// `unsafe`. The driver only names fault-recording registers below CAP.NFR + 1 and reads
/// CAP/ECAP before it names IVA/IOTLB/FRCD.
pub trait RegisterAccess {
    /// Reads a 32-bit register.
    fn read32(&self, reg: Reg32) -> u32;
    /// Writes a 32-bit register.
    fn write32(&mut self, reg: Reg32, value: u32);
    /// Reads a 64-bit register.
    fn read64(&self, reg: Reg64) -> u64;
    /// Writes a 64-bit register.
    fn write64(&mut self, reg: Reg64, value: u64);
}

/// Why a register frame cannot be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// A register block CAP/ECAP places lies outside the mapped frame or over the fixed
    /// registers.
    BlockOutside {
        /// The register whose offset is wrong.
        register: RegisterName,
        /// Offset of the block, in bytes.
        offset: usize,
        /// Length of the block, in bytes.
        len: usize,
        /// Size of the mapped frame, in bytes.
        frame_len: usize,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BlockOutside {
                register,
                offset,
                len,
                frame_len,
            } => write!(
                f,
                "{register} block at {offset:#x}+{len:#x} lies outside the {frame_len:#x}-byte frame \
                 or over the fixed registers"
            ),
        }
    }
}

/// Checks that `[offset, offset + len)` lies in the frame and past the fixed registers.
pub(crate) fn check_block(
    register: RegisterName,
    offset: usize,
    len: usize,
    frame_len: usize,
) -> Result<(), FrameError> {
    let fixed = core::mem::size_of::<FixedRegs>();
    match offset.checked_add(len) {
        Some(end) if offset >= fixed && end <= frame_len => Ok(()),
        _ => Err(FrameError::BlockOutside {
            register,
            offset,
            len,
            frame_len,
        }),
    }
}

/// The real register frame, reached through uncached MMIO.
pub struct Mmio {
    fixed: &'static FixedRegs,
    iotlb: &'static IotlbRegs,
    /// The fault-recording registers, CAP.NFR + 1 of them.
    frcd: &'static [FrcdRegs],
}

impl core::fmt::Debug for Mmio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Mmio({:#x})", core::ptr::from_ref(self.fixed) as usize)
    }
}

// SAFETY: `Mmio::new`'s contract gives the value exclusive use of the frame, so moving it to
// another thread moves that exclusive use with it; nothing else aliases the registers.
unsafe impl Send for Mmio {}

impl Mmio {
    /// Register access at `base`, a frame of `frame_len` bytes (4 KiB unless the DRHD's size
    /// field says more). Reads CAP and ECAP to find the IOTLB and fault-recording registers.
    ///
    /// # Errors
    /// [`FrameError`] when CAP.FRO/NFR or ECAP.IRO place a block outside the frame.
    ///
    /// # Safety
    /// `base..base + frame_len` is the unit's register frame, mapped uncached, 8-byte aligned,
    /// used by nothing else for the lifetime of the value.
    pub unsafe fn new(base: usize, frame_len: usize) -> Result<Self, FrameError> {
        // SAFETY: the caller guarantees the frame is mapped uncached, aligned and exclusively
        // ours for the value's lifetime; the fixed block is 0xC0 bytes of volatile cells and a
        // frame is at least 4 KiB.
        let fixed: &'static FixedRegs = unsafe { &*(base as *const FixedRegs) };
        let cap = fixed.cap.get();
        let ecap = fixed.ecap.get();
        let iro = crate::features::field(ecap, crate::regs::ECAP::IRO) as usize * 16;
        let fro = crate::features::field(cap, crate::regs::CAP::FRO) as usize * 16;
        let nfr = crate::features::field(cap, crate::regs::CAP::NFR) as usize + 1;
        check_block(Reg64::Iotlb.name(), iro, 16, frame_len)?;
        check_block(Reg64::FrcdHi(0).name(), fro, 16 * nfr, frame_len)?;
        // SAFETY: both blocks were just checked to lie inside the frame the caller handed us,
        // past the fixed registers, so they alias nothing else; they are 16-byte blocks of
        // volatile cells at 16-byte multiples of the base.
        unsafe {
            Ok(Self {
                fixed,
                iotlb: &*((base + iro) as *const IotlbRegs),
                frcd: core::slice::from_raw_parts((base + fro) as *const FrcdRegs, nfr),
            })
        }
    }
}

impl RegisterAccess for Mmio {
    fn read32(&self, reg: Reg32) -> u32 {
        let r = self.fixed;
        match reg {
            Reg32::Ver => r.ver.get(),
            // GCMD_REG reads as 0 (VT-d §11.4.4); never read it.
            Reg32::Gcmd => 0,
            Reg32::Gsts => r.gsts.get(),
            Reg32::Fsts => r.fsts.get(),
            Reg32::Fectl => r.fectl.get(),
            Reg32::Fedata => r.fedata.get(),
            Reg32::Feaddr => r.feaddr.get(),
            Reg32::Feuaddr => r.feuaddr.get(),
            Reg32::Ics => r.ics.get(),
        }
    }

    fn write32(&mut self, reg: Reg32, value: u32) {
        let r = self.fixed;
        match reg {
            Reg32::Gcmd => r.gcmd.set(value),
            Reg32::Fsts => r.fsts.set(value),
            Reg32::Fectl => r.fectl.set(value),
            Reg32::Fedata => r.fedata.set(value),
            Reg32::Feaddr => r.feaddr.set(value),
            Reg32::Feuaddr => r.feuaddr.set(value),
            Reg32::Ics => r.ics.set(value),
            // Read-only.
            Reg32::Ver | Reg32::Gsts => {}
        }
    }

    fn read64(&self, reg: Reg64) -> u64 {
        let r = self.fixed;
        match reg {
            Reg64::Cap => r.cap.get(),
            Reg64::Ecap => r.ecap.get(),
            Reg64::Rtaddr => r.rtaddr.get(),
            Reg64::Ccmd => r.ccmd.get(),
            Reg64::Iqh => r.iqh.get(),
            Reg64::Iqt => r.iqt.get(),
            Reg64::Iqa => r.iqa.get(),
            Reg64::Iva => self.iotlb.iva.get(),
            Reg64::Iotlb => self.iotlb.iotlb.get(),
            Reg64::FrcdLo(n) => self.frcd.get(n as usize).map_or(0, |f| f.lo.get()),
            Reg64::FrcdHi(n) => self.frcd.get(n as usize).map_or(0, |f| f.hi.get()),
        }
    }

    fn write64(&mut self, reg: Reg64, value: u64) {
        let r = self.fixed;
        match reg {
            Reg64::Rtaddr => r.rtaddr.set(value),
            Reg64::Ccmd => r.ccmd.set(value),
            Reg64::Iqt => r.iqt.set(value),
            Reg64::Iqa => r.iqa.set(value),
            Reg64::Iva => self.iotlb.iva.set(value),
            Reg64::Iotlb => self.iotlb.iotlb.set(value),
            Reg64::FrcdLo(n) => {
                if let Some(f) = self.frcd.get(n as usize) {
                    f.lo.set(value)
                }
            }
            Reg64::FrcdHi(n) => {
                if let Some(f) = self.frcd.get(n as usize) {
                    f.hi.set(value)
                }
            }
            // Read-only.
            Reg64::Cap | Reg64::Ecap | Reg64::Iqh => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn names_and_offsets_agree_with_the_layout() {
        assert_eq!(Reg32::Gsts.offset(), offset_of!(FixedRegs, gsts));
        assert_eq!(Reg32::Fectl.offset(), offset_of!(FixedRegs, fectl));
        assert_eq!(Reg32::Ics.offset(), offset_of!(FixedRegs, ics));
        assert_eq!(Reg64::Iqt.offset(0, 0), offset_of!(FixedRegs, iqt));
        assert_eq!(Reg64::Rtaddr.offset(0, 0), offset_of!(FixedRegs, rtaddr));
        // QEMU: IRO = 0xf, FRO = 0x22.
        assert_eq!(Reg64::Iotlb.offset(0xf, 0x22), 0xF8);
        assert_eq!(Reg64::FrcdHi(0).offset(0xf, 0x22), 0x228);
        assert_eq!(Reg64::FrcdLo(2).offset(0xf, 0x22), 0x240);
    }

    #[test]
    fn mmio_reads_and_writes_the_frame_and_refuses_blocks_outside_it() {
        let mut frame = vec![0u64; 0x1000 / 8];
        frame[1] = 0x00d2_008c_222f_0686; // CAP
        frame[2] = 0xf0_0f4a; // ECAP
        frame[0x228 / 8] = 0x8000_0000_0000_0008; // FRCD0 hi: F, SID 8
        let base = frame.as_mut_ptr() as usize;
        {
            // SAFETY: `frame` is 4 KiB, 8-byte aligned, outlives `mmio` and is not otherwise
            // accessed while `mmio` is in use.
            let mut mmio = unsafe { Mmio::new(base, 0x1000) }.unwrap();
            assert_eq!(mmio.read64(Reg64::FrcdHi(0)), 0x8000_0000_0000_0008);
            assert_eq!(
                mmio.read64(Reg64::FrcdHi(1)),
                0,
                "only NFR + 1 records exist"
            );
            mmio.write64(Reg64::Iva, 0x1234_5041);
            mmio.write64(Reg64::Cap, 0); // ignored: read-only
            assert_eq!(mmio.read64(Reg64::Cap), 0x00d2_008c_222f_0686);
        }
        assert_eq!(frame[0xF0 / 8], 0x1234_5041);
        // SAFETY: as above.
        let small = unsafe { Mmio::new(base, 0x200) };
        assert!(matches!(
            small,
            Err(FrameError::BlockOutside { offset: 0x220, .. })
        ));
    }
}
