//! The EL2 side of running a guest, as plain data: the register values the host's world switch
//! (`src/bin/smmuman-daemon/vcpu.rs`) programs, and the decoding of what it saved at a guest
//! exit into a [`qvm::vcpu::Exit`]. Host-tested; the binary only moves these values in and out
//! of system registers.

use crate::esr::Syndrome;
use qvm::vcpu::Exit;
use stage2::Stage2Config;

/// Vector-table index (Arm ARM D1.3.1) of a synchronous exception from a lower EL in AArch64.
pub const VECTOR_SYNC_LOWER: u64 = 8;
/// IRQ from a lower EL in AArch64.
pub const VECTOR_IRQ_LOWER: u64 = 9;
/// FIQ from a lower EL in AArch64.
pub const VECTOR_FIQ_LOWER: u64 = 10;
/// SError from a lower EL in AArch64.
pub const VECTOR_SERROR_LOWER: u64 = 11;

/// ESR_EL2.EC values a guest causes (Arm ARM D17.2.37, "EC, bits \[31:26\]").
pub mod ec {
    /// WFI or WFE trapped by HCR_EL2.TWI/TWE.
    pub const WFX: u8 = 0x01;
    /// HVC executed in AArch64 state.
    pub const HVC64: u8 = 0x16;
    /// SMC executed in AArch64 state, trapped by HCR_EL2.TSC.
    pub const SMC64: u8 = 0x17;
    /// Instruction Abort from a lower Exception level.
    pub const IABT_LOWER: u8 = 0x20;
    /// Data Abort from a lower Exception level.
    pub const DABT_LOWER: u8 = 0x24;
    /// SError (reported as EC 0x2f when the vector is the SError one).
    pub const SERROR: u8 = 0x2f;
}

/// What the exit path saved: the vector taken and the syndrome registers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SavedExit {
    /// Index of the vector-table entry taken (8..=11 for an AArch64 guest).
    pub vector: u64,
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// HPFAR_EL2.
    pub hpfar: u64,
    /// The EL2 physical timer had fired (CNTHP_CTL_EL2.ISTATUS with ENABLE).
    pub timer_fired: bool,
}

/// The faulting IPA of a stage-2 abort: HPFAR_EL2.FIPA (bits \[43:4\] hold IPA\[51:12\], Arm ARM
/// D17.2.64) with the page offset from FAR_EL2\[11:0\].
pub const fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    (((hpfar >> 4) & ((1 << 40) - 1)) << 12) | (far & 0xfff)
}

/// Decodes a guest exit.
pub fn decode(saved: SavedExit) -> Exit {
    let esr = Syndrome(saved.esr);
    let iss = esr.iss();
    match saved.vector {
        VECTOR_SYNC_LOWER => match esr.ec() {
            ec::HVC64 => Exit::Hvc {
                imm: (iss & 0xffff) as u16,
            },
            ec::SMC64 => Exit::Smc {
                imm: (iss & 0xffff) as u16,
            },
            ec::WFX => Exit::Wfx {
                // ISS.TI, bits [1:0]: 0b00 WFI, 0b01 WFE (0b1x: the FEAT_WFxT forms).
                wfe: iss & 0b11 == 0b01,
            },
            ec::DABT_LOWER => Exit::DataAbort {
                ipa: fault_ipa(saved.hpfar, saved.far),
                iss,
                il32: esr.il(),
            },
            ec::IABT_LOWER => Exit::InstructionAbort {
                ipa: fault_ipa(saved.hpfar, saved.far),
                iss,
            },
            other => Exit::Other {
                ec: other,
                iss,
                far: saved.far,
            },
        },
        VECTOR_IRQ_LOWER | VECTOR_FIQ_LOWER if saved.timer_fired => Exit::Timer,
        VECTOR_IRQ_LOWER | VECTOR_FIQ_LOWER => Exit::HostIrq,
        _ => Exit::Other {
            ec: ec::SERROR,
            iss,
            far: saved.far,
        },
    }
}

/// HCR_EL2 while a guest runs (Arm ARM D19.2.49): VM (bit 0, stage 2 on), SWIO (1), FMO, IMO,
/// AMO (3..5: physical FIQ, IRQ and SError go to EL2 and are never masked by the guest), TWI,
/// TWE (13, 14: WFI/WFE trap), TSC (19: SMC traps), TIDCP (20: implementation-defined
/// registers trap), TACR (21: auxiliary control registers trap), RW (31: EL1 is AArch64).
pub const HCR_GUEST: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 13)
    | (1 << 14)
    | (1 << 19)
    | (1 << 20)
    | (1 << 21)
    | (1 << 31);

/// SPSR_EL2 for the guest's first entry: EL1h (M\[3:0\] = 0b0101) with D, A, I, F masked
/// (bits 9..6), as the Linux arm64 boot protocol asks.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// SCTLR_EL1 at the guest's first entry: only the RES1 bits of Armv8.0 (29, 28, 23, 22, 20,
/// 11; Arm ARM D19.2.118): MMU, caches and alignment checks off, as after reset.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// CPACR_EL1 for the guest: FPEN = 0b11 (bits 21:20), FP/SIMD does not trap at EL1/EL0.
pub const CPACR_EL1_FP: u64 = 0b11 << 20;

/// CNTHCTL_EL2 while a guest runs (E2H = 0, Arm ARM D19.11.2): EL1PCTEN (bit 0) lets it read
/// the physical counter; EL1PCEN (bit 1) clear, so its physical timer registers trap.
pub const CNTHCTL_GUEST: u64 = 1 << 0;

/// The guest's CPU stage 2: 4 KiB granule, 32-bit IPA space (the guest ABI's map lies below
/// 4 GiB), output size from ID_AA64MMFR0_EL1.PARange.
pub fn cpu_stage2_config(pa_range: u8) -> Stage2Config {
    Stage2Config {
        ias_bits: 32,
        oas_bits: pa_bits(pa_range),
    }
}

/// ID_AA64MMFR0_EL1.PARange (Arm ARM D19.2.64) in bits, capped at 48 (what a 4 KiB-granule
/// stage 2 without FEAT_LPA2 can output).
pub const fn pa_bits(pa_range: u8) -> u8 {
    match pa_range {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    }
}

/// VTCR_EL2.PS for a physical size in bits (same encoding as PARange).
const fn ps_field(bits: u8) -> u64 {
    match bits {
        0..=32 => 0,
        33..=36 => 1,
        37..=40 => 2,
        41..=42 => 3,
        43..=44 => 4,
        _ => 5,
    }
}

/// VTCR_EL2 for `cfg` (Arm ARM D19.2.163): T0SZ (bits 5:0) = 64 - IAS, SL0 (7:6) from the root
/// level, IRGN0/ORGN0 (9:8, 11:10) = 0b01 write-back write-allocate walks, SH0 (13:12) = 0b11
/// inner shareable, TG0 (15:14) = 0b00 4 KiB, PS (18:16) the output size, VS (19) = 0 8-bit
/// VMIDs, RES1 bit 31.
pub fn vtcr(cfg: Stage2Config) -> u64 {
    u64::from(cfg.t0sz())
        | (u64::from(cfg.sl0()) << 6)
        | (0b01 << 8)
        | (0b01 << 10)
        | (0b11 << 12)
        | (ps_field(cfg.pa_bits()) << 16)
        | (1 << 31)
}

/// VTTBR_EL2 (Arm ARM D19.2.166): the root table's address (BADDR, bits 47:1) and the VMID in
/// bits 55:48 (8-bit VMIDs).
pub const fn vttbr(root: u64, vmid: u8) -> u64 {
    (root & 0x0000_ffff_ffff_fffe) | ((vmid as u64) << 48)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(esr: u64) -> SavedExit {
        SavedExit {
            vector: VECTOR_SYNC_LOWER,
            esr,
            far: 0x3000_0ffc,
            hpfar: 0x0003_0000 << 4,
            timer_fired: false,
        }
    }

    #[test]
    fn hvc_smc_and_wfx_are_told_apart_by_the_exception_class() {
        assert_eq!(
            decode(sync((0x16 << 26) | (1 << 25) | 7)),
            Exit::Hvc { imm: 7 }
        );
        assert_eq!(decode(sync((0x17 << 26) | (1 << 25))), Exit::Smc { imm: 0 });
        assert_eq!(decode(sync((0x01 << 26) | 1)), Exit::Wfx { wfe: true });
        assert_eq!(decode(sync(0x01 << 26)), Exit::Wfx { wfe: false });
    }

    #[test]
    fn a_stage2_data_abort_carries_the_ipa_from_hpfar_and_far() {
        // A 32-bit write of x3 (ISV, SAS = 0b10, SRT = 3, WnR), translation fault level 3.
        let iss = (1 << 24) | (0b10 << 22) | (3 << 16) | (1 << 6) | 0b000111;
        let exit = decode(sync((0x24 << 26) | (1 << 25) | iss));
        assert_eq!(
            exit,
            Exit::DataAbort {
                ipa: 0x3000_0ffc,
                iss: iss as u32,
                il32: true
            }
        );
        // Control: an instruction abort is not a data abort.
        assert!(matches!(
            decode(sync(0x20 << 26)),
            Exit::InstructionAbort {
                ipa: 0x3000_0ffc,
                ..
            }
        ));
    }

    #[test]
    fn an_irq_is_the_time_slice_only_when_the_el2_timer_fired() {
        let irq = SavedExit {
            vector: VECTOR_IRQ_LOWER,
            ..SavedExit::default()
        };
        assert_eq!(decode(irq), Exit::HostIrq);
        assert_eq!(
            decode(SavedExit {
                timer_fired: true,
                ..irq
            }),
            Exit::Timer
        );
    }

    #[test]
    fn unknown_classes_and_serrors_stop_the_guest() {
        assert!(matches!(
            decode(sync(0x18 << 26)),
            Exit::Other { ec: 0x18, .. }
        ));
        let serror = SavedExit {
            vector: VECTOR_SERROR_LOWER,
            ..SavedExit::default()
        };
        assert!(matches!(decode(serror), Exit::Other { ec: 0x2f, .. }));
    }

    #[test]
    fn vtcr_matches_a_32_bit_level_1_walk() {
        let cfg = cpu_stage2_config(5);
        // T0SZ 32, SL0 1 (level 1), IRGN0/ORGN0 WB, SH0 inner, TG0 4K, PS 48 bits, RES1.
        assert_eq!(vtcr(cfg), 0x8005_3560);
        assert_eq!(pa_bits(4), 44);
        assert_eq!(vttbr(0x4123_4000, 2), 0x0002_0000_4123_4000);
    }
}
