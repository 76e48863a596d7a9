//! Trapped guest accesses: the data abort syndrome decoded into an access, and the guest-
//! physical address decoded into what it reaches (the console page, the ECAM window, or
//! nothing).
//!
//! ISS layout (Arm ARM D17.2.37 ESR_EL2, "ISS encoding for an exception from a Data Abort"):
//! bit 24 ISV (bits 23:14 hold a valid syndrome), 23:22 SAS (access size: 1 << SAS bytes),
//! 21 SSE (sign-extend a load), 20:16 SRT (the transfer register), 15 SF (64-bit register),
//! 14 AR (acquire/release), 10 FnV, 9 EA (external abort), 8 CM (cache maintenance),
//! 7 S1PTW (the fault was on a stage-1 walk), 6 WnR (write), 5:0 DFSC (the fault status).

use crate::abi;
use crate::gpa::Gpa;
use core::fmt;

/// ISS.ISV: the syndrome of bits 23:14 is valid.
const ISV: u32 = 1 << 24;
/// ISS.SAS: bits 23:22.
const SAS_SHIFT: u32 = 22;
/// ISS.SSE.
const SSE: u32 = 1 << 21;
/// ISS.SRT: bits 20:16.
const SRT_SHIFT: u32 = 16;
/// ISS.SF.
const SF: u32 = 1 << 15;
/// ISS.AR.
const AR: u32 = 1 << 14;
/// ISS.CM.
const CM: u32 = 1 << 8;
/// ISS.S1PTW.
const S1PTW: u32 = 1 << 7;
/// ISS.WnR.
const WNR: u32 = 1 << 6;
/// ISS.DFSC: bits 5:0.
const DFSC_MASK: u32 = 0x3f;

/// Why a trapped access cannot be emulated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// ISV = 0: the instruction (a load/store pair, a post-indexed access, SIMD...) left no
    /// syndrome to emulate it from.
    NoSyndrome,
    /// A cache maintenance instruction (CM = 1) on an address that is not memory.
    CacheMaintenance,
    /// The fault happened on a stage-1 table walk (S1PTW = 1).
    Stage1Walk,
    /// A fault status other than a translation, access flag or permission fault (DFSC).
    Status {
        /// ISS.DFSC.
        dfsc: u8,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSyndrome => f.write_str(
                "the instruction gave no syndrome (ESR_EL2.ISS.ISV = 0): the VMM cannot emulate it",
            ),
            Self::CacheMaintenance => {
                f.write_str("a cache maintenance instruction on an address that is not memory")
            }
            Self::Stage1Walk => f.write_str("a fault on the guest's own stage-1 table walk"),
            Self::Status { dfsc } => write!(f, "fault status DFSC = {dfsc:#04x}"),
        }
    }
}

/// A load or store the VMM can emulate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Access {
    /// Bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// The general register read or written (31: XZR for a store, a discarded load).
    pub reg: u8,
    /// A store.
    pub write: bool,
    /// A load that sign-extends the value (LDRSB, LDRSH, LDRSW).
    pub sign_extend: bool,
    /// The register is 64 bits wide (X); a W register's upper half is zeroed on a load.
    pub sf: bool,
    /// Load-acquire or store-release (the VMM's emulation is ordered anyway).
    pub acquire_release: bool,
}

impl Access {
    /// Decodes a data abort's ISS.
    ///
    /// # Errors
    /// [`DecodeError`] when it cannot be emulated.
    pub fn decode(iss: u32) -> Result<Self, DecodeError> {
        if iss & ISV == 0 {
            return Err(DecodeError::NoSyndrome);
        }
        if iss & CM != 0 {
            return Err(DecodeError::CacheMaintenance);
        }
        if iss & S1PTW != 0 {
            return Err(DecodeError::Stage1Walk);
        }
        let dfsc = (iss & DFSC_MASK) as u8;
        // DFSC: 0b0001LL translation, 0b0010LL access flag, 0b0011LL permission fault at
        // level LL (levels 0..3); the -1 level encodings (0b101011 etc.) are not expected.
        if !matches!(dfsc >> 2, 0b0001..=0b0011) {
            return Err(DecodeError::Status { dfsc });
        }
        Ok(Self {
            size: 1 << ((iss >> SAS_SHIFT) & 3),
            reg: ((iss >> SRT_SHIFT) & 0x1f) as u8,
            write: iss & WNR != 0,
            sign_extend: iss & SSE != 0,
            sf: iss & SF != 0,
            acquire_release: iss & AR != 0,
        })
    }

    /// The low `size` bytes of a register value (what a store writes).
    pub const fn store_value(&self, reg_value: u64) -> u64 {
        match self.size {
            1 => reg_value & 0xff,
            2 => reg_value & 0xffff,
            4 => reg_value & 0xffff_ffff,
            _ => reg_value,
        }
    }

    /// What a load leaves in its register when the device returned `value`: the low `size`
    /// bytes, sign-extended when SSE, then cut to 32 bits when the register is a W register.
    pub const fn load_value(&self, value: u64) -> u64 {
        let bits = (self.size as u32) * 8;
        let v = self.store_value(value);
        let v = if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            (((v << shift) as i64) >> shift) as u64
        } else {
            v
        };
        if self.sf {
            v
        } else {
            v & 0xffff_ffff
        }
    }
}

/// What a guest-physical address reaches when the CPU stage 2 does not map it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// The console page, at this offset.
    Uart(u64),
    /// The ECAM window, at this offset.
    Ecam(u64),
    /// Nothing the VMM emulates.
    Nothing,
}

/// Where `gpa` (an access of `size` bytes) lands; an access that crosses out of a device's
/// window reaches [`Target::Nothing`].
pub fn target(gpa: Gpa, size: u8) -> Target {
    let (a, n) = (gpa.get(), u64::from(size));
    let inside =
        |base: u64, len: u64| a >= base && a.checked_add(n).is_some_and(|e| e <= base + len);
    if inside(abi::UART_BASE, 0x1000) {
        Target::Uart(a - abi::UART_BASE)
    } else if inside(abi::ECAM_BASE, abi::ECAM_SIZE) {
        Target::Ecam(a - abi::ECAM_BASE)
    } else {
        Target::Nothing
    }
}

/// The console page's answer to a read (PL011 TRM §3.3: UARTFR says idle, everything else
/// reads 0).
pub const fn uart_read(offset: u64) -> u64 {
    if offset == abi::UART_FR {
        abi::UART_FR_IDLE as u64
    } else {
        0
    }
}

/// The byte a write sends to the console, when it is a write to UARTDR (PL011 TRM §3.3.1:
/// bits 7:0 are the data; other offsets are ignored).
pub const fn uart_write(offset: u64, value: u64) -> Option<u8> {
    if offset == abi::UART_DR {
        Some(value as u8)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
