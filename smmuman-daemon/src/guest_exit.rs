//! The EL2 side of running a guest, as plain data: the register values the host's world switch
//! (`src/hyp/world_switch.rs`) programs, and the decoding of what it saved at a guest
//! exit into a [`qvm::vcpu::Exit`]. Host-tested; the world switch only moves these values in and out
//! of system registers.

use crate::esr::Syndrome;
use qvm::sysreg::SysRegAccess;
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
    /// MSR, MRS or System instruction trapped (ISS: [`qvm::sysreg::SysRegAccess`]).
    pub const SYSREG: u8 = 0x18;
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

/// The trapped system register access of a synchronous exit (EC 0x18), if it is one.
pub fn sysreg_access(saved: &SavedExit) -> Option<SysRegAccess> {
    let esr = Syndrome(saved.esr);
    (saved.vector == VECTOR_SYNC_LOWER && esr.ec() == ec::SYSREG)
        .then(|| SysRegAccess::from_iss(esr.iss()))
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
            ec::SYSREG => Exit::SysReg {
                access: SysRegAccess::from_iss(iss),
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
/// TWE (13, 14: WFI/WFE trap), TID3 (18: ID group 3 reads trap, answered with sanitized values,
/// [`crate::guest_sysreg`]), TSC (19: SMC traps), TIDCP (20: implementation-defined registers
/// trap), TACR (21: auxiliary control registers trap), TSW (22: set/way cache maintenance
/// traps), RW (31: EL1 is AArch64). APK/API (40, 41) stay 0: pointer authentication keys and
/// instructions trap. [`hcr_guest`] adds the traps of optional features the CPU has.
pub const HCR_GUEST: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 13)
    | (1 << 14)
    | (1 << 18)
    | (1 << 19)
    | (1 << 20)
    | (1 << 21)
    | (1 << 22)
    | (1 << 31);

/// HCR_EL2.TLOR (bit 35): LORegion registers trap (FEAT_LOR).
pub const HCR_TLOR: u64 = 1 << 35;
/// HCR_EL2.TERR (bit 36): RAS error record registers trap (FEAT_RAS).
pub const HCR_TERR: u64 = 1 << 36;

/// HCR_EL2 for a guest on a CPU whose ID_AA64PFR0_EL1 is `pfr0` and ID_AA64MMFR1_EL1 is
/// `mmfr1`: [`HCR_GUEST`], plus TERR when RAS is implemented (PFR0.RAS, bits 31:28) and TLOR
/// when LORegions are (MMFR1.LO, bits 19:16); both bits are RES0 otherwise.
pub const fn hcr_guest(pfr0: u64, mmfr1: u64) -> u64 {
    let mut hcr = HCR_GUEST;
    if (pfr0 >> 28) & 0xf != 0 {
        hcr |= HCR_TERR;
    }
    if (mmfr1 >> 16) & 0xf != 0 {
        hcr |= HCR_TLOR;
    }
    hcr
}

/// MDCR_EL2 bits (Arm ARM D19.3.21): TPMCR (5), TPM (6), TDA (9), TDOSA (10), TDRA (11),
/// TPMS (14), TTRF (19); HPMN is bits 4:0.
pub mod mdcr {
    /// PMCR_EL0 accesses trap.
    pub const TPMCR: u64 = 1 << 5;
    /// Every PMU register access traps.
    pub const TPM: u64 = 1 << 6;
    /// Debug register accesses trap (the breakpoint/watchpoint registers, MDSCR_EL1, the DCC).
    pub const TDA: u64 = 1 << 9;
    /// OS lock and power-down register accesses trap (OSLAR, OSLSR, OSDLR, DBGPRCR).
    pub const TDOSA: u64 = 1 << 10;
    /// MDRAR_EL1 (the debug ROM address) traps.
    pub const TDRA: u64 = 1 << 11;
    /// Statistical Profiling (SPE) register accesses trap.
    pub const TPMS: u64 = 1 << 14;
    /// TRFCR_EL1 (trace filter) accesses trap.
    pub const TTRF: u64 = 1 << 19;
    /// HPMN: how many event counters EL1 and EL0 own (the rest are EL2's).
    pub const HPMN: u64 = 0x1f;
}

/// MDCR_EL2 while a guest runs, on a CPU whose ID_AA64DFR0_EL1 is `dfr0` and whose PMCR_EL0.N
/// (bits 15:11, the number of event counters) is `pmcr_n`: every debug register traps (TDA,
/// TDOSA, TDRA); with a PMU (PMUVer, bits 11:8, neither 0 nor 0xf) every PMU register traps
/// (TPM, TPMCR) and HPMN keeps its reset value N (HPMN = 0 is CONSTRAINED UNPREDICTABLE without
/// FEAT_HPMN0); with SPE (PMSVer, 35:32) its registers trap (TPMS), with FEAT_TRF (TraceFilt,
/// 43:40) TRFCR_EL1 traps (TTRF). TDE stays 0: the guest's own debug exceptions (BRK) go to
/// its EL1.
pub const fn mdcr_guest(dfr0: u64, pmcr_n: u64) -> u64 {
    let mut v = mdcr::TDA | mdcr::TDOSA | mdcr::TDRA;
    let pmuver = (dfr0 >> 8) & 0xf;
    if pmuver != 0 && pmuver != 0xf {
        v |= mdcr::TPM | mdcr::TPMCR | (pmcr_n & mdcr::HPMN);
    }
    if (dfr0 >> 32) & 0xf != 0 {
        v |= mdcr::TPMS;
    }
    if (dfr0 >> 40) & 0xf != 0 {
        v |= mdcr::TTRF;
    }
    v
}

/// CPTR_EL2 bits (E2H = 0, Arm ARM D19.2.31) added while a guest runs to the host's value
/// (which already traps SVE, TZ, and SME, TSM): TTA (20) trace registers trap, and TAM (30)
/// activity monitors trap when FEAT_AMUv1 is implemented (ID_AA64PFR0_EL1.AMU, bits 47:44;
/// the bit is RES0 otherwise). The host itself uses neither.
pub const fn cptr_guest_traps(pfr0: u64) -> u64 {
    let mut v = 1 << 20;
    if (pfr0 >> 44) & 0xf != 0 {
        v |= 1 << 30;
    }
    v
}

/// What taking an UNDEFINED exception to the guest's EL1 sets (Arm ARM D1.3.2 "Exception
/// entry"): where it resumes, with which PSTATE, and its EL1 exception registers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UndefEntry {
    /// The new PC: VBAR_EL1 + the vector offset.
    pub pc: u64,
    /// The new PSTATE (written to SPSR_EL2 for the ERET).
    pub pstate: u64,
    /// ELR_EL1: the undefined instruction.
    pub elr_el1: u64,
    /// SPSR_EL1: the PSTATE the guest had.
    pub spsr_el1: u64,
    /// ESR_EL1: EC 0 (unknown reason), IL 1.
    pub esr_el1: u64,
}

/// ESR_ELx for an UNDEFINED instruction (Arm ARM D24.2.40): EC = 0x00 "Unknown reason", IL
/// (bit 25) = 1, ISS = 0.
pub const ESR_UNDEFINED: u64 = 1 << 25;

/// The exception entry of an UNDEFINED instruction at `pc`, taken to EL1 from a guest whose
/// PSTATE was `spsr` (SPSR_EL2), with its VBAR_EL1 and SCTLR_EL1; `pan` and `ssbs` say whether
/// FEAT_PAN and FEAT_SSBS exist (their PSTATE bits are RES0 otherwise). As KVM's
/// `enter_exception64`:
/// * vector offset 0x000 from EL1 with SP_EL0, 0x200 from EL1 with SP_EL1, 0x400 from AArch64
///   EL0, 0x600 from AArch32 (SPSR.M\[4\]); the synchronous entry is at +0;
/// * PSTATE: EL1h (M = 0b0101), D, A, I, F set; DIT (bit 24) kept; PAN (22) set when
///   SCTLR_EL1.SPAN (bit 23) is 0, else kept; SSBS (12) = SCTLR_EL1.DSSBS (bit 44); everything
///   else (SS, IL, UAO, BTYPE, TCO) 0.
pub const fn undef_entry(
    pc: u64,
    spsr: u64,
    vbar_el1: u64,
    sctlr_el1: u64,
    pan: bool,
    ssbs: bool,
) -> UndefEntry {
    let offset = if spsr & (1 << 4) != 0 {
        0x600
    } else if (spsr >> 2) & 0b11 == 0 {
        0x400
    } else if spsr & 1 != 0 {
        0x200
    } else {
        0x000
    };
    let mut pstate = 0x3c5 | (spsr & (1 << 24));
    if pan && (sctlr_el1 & (1 << 23) == 0 || spsr & (1 << 22) != 0) {
        pstate |= 1 << 22;
    }
    if ssbs && sctlr_el1 & (1 << 44) != 0 {
        pstate |= 1 << 12;
    }
    UndefEntry {
        pc: (vbar_el1 & !0x7ff) + offset,
        pstate,
        elr_el1: pc,
        spsr_el1: spsr,
        esr_el1: ESR_UNDEFINED,
    }
}

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
    fn a_trapped_register_is_decoded_from_the_syndrome_not_the_far() {
        // MSR CNTP_CTL_EL0, x3: Op0 3, Op2 1, Op1 3, CRn 14, Rt 3, CRm 2, write.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (3 << 5) | (2 << 1);
        let saved = sync((0x18 << 26) | (1 << 25) | iss);
        let Exit::SysReg { access } = decode(saved) else {
            panic!("{:?}", decode(saved));
        };
        assert_eq!(access.reg.name(), Some("CNTP_CTL_EL0"));
        assert_eq!((access.rt, access.read), (3, false));
        assert_eq!(sysreg_access(&saved), Some(access));
        // Control: an HVC is no register access.
        assert_eq!(sysreg_access(&sync((0x16 << 26) | (1 << 25))), None);
    }

    #[test]
    fn the_guest_traps_follow_the_cpus_features() {
        // TID3 and TSW always; TERR and TLOR only with RAS and LORegions.
        assert_eq!(HCR_GUEST & (1 << 18 | 1 << 22), 1 << 18 | 1 << 22);
        assert_eq!(hcr_guest(0, 0), HCR_GUEST);
        assert_eq!(hcr_guest(1 << 28, 1 << 16), HCR_GUEST | HCR_TERR | HCR_TLOR);
        // PMUv3 with N = 6 counters: everything traps, HPMN = N. No PMU: no PMU bits.
        let dfr0 = 0x0000_0001_f0f1_f60a;
        assert_eq!(
            mdcr_guest(dfr0, 6),
            mdcr::TDA | mdcr::TDOSA | mdcr::TDRA | mdcr::TPM | mdcr::TPMCR | mdcr::TPMS | 6
        );
        assert_eq!(mdcr_guest(0x6, 6), mdcr::TDA | mdcr::TDOSA | mdcr::TDRA);
        assert_eq!(cptr_guest_traps(0), 1 << 20);
        assert_eq!(cptr_guest_traps(1 << 44), (1 << 20) | (1 << 30));
    }

    #[test]
    fn an_undefined_instruction_enters_the_guests_el1_vector() {
        // From EL1h (SPSR 0x3c5, PAN clear), SCTLR_EL1.SPAN = 0: PAN set on entry.
        let e = undef_entry(0x4008_1234, 0x3c5, 0x4008_0800, 0, true, true);
        assert_eq!(e.pc, 0x4008_0800 + 0x200);
        assert_eq!(e.pstate, 0x3c5 | (1 << 22));
        assert_eq!(
            (e.elr_el1, e.spsr_el1, e.esr_el1),
            (0x4008_1234, 0x3c5, 0x0200_0000)
        );
        // From EL1t, EL0 and AArch32; SPAN = 1 keeps PAN clear; DSSBS sets SSBS; DIT kept.
        let sctlr = (1 << 23) | (1 << 44);
        assert_eq!(undef_entry(0, 0x3c4, 0x800, sctlr, true, true).pc, 0x800);
        assert_eq!(undef_entry(0, 0, 0x800, sctlr, true, true).pc, 0xc00);
        assert_eq!(undef_entry(0, 0x10, 0x800, sctlr, true, true).pc, 0xe00);
        let e = undef_entry(0, 1 << 24, 0x800, sctlr, true, true);
        assert_eq!(e.pstate, 0x3c5 | (1 << 24) | (1 << 12));
        // Without FEAT_PAN/FEAT_SSBS those bits stay 0.
        assert_eq!(undef_entry(0, 0x3c5, 0x800, 0, false, false).pstate, 0x3c5);
    }

    #[test]
    fn unknown_classes_and_serrors_stop_the_guest() {
        assert!(matches!(
            decode(sync(0x3c << 26)),
            Exit::Other { ec: 0x3c, .. }
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
