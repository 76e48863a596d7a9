//! What the world switch answers when a guest's system register access traps to EL2
//! (ESR_EL2.EC = 0x18), as plain data: the world switch (`hyp/world_switch.rs`) only moves the values in and out
//! of registers. The policy and its reasons are in docs/world-switch.md:
//!
//! * **ID registers** (HCR_EL2.TID3): the hardware's values with every feature the world
//!   switch does not give the guest taken out: no PMU, Armv8.0 debug, no SVE/SME/MTE/AMU/MPAM/
//!   SPE/trace, no pointer authentication (HCR_EL2.APK/API trap it), no AArch32, no EL2/EL3,
//!   a 32-bit physical address space (the guest's IPA space), no LORegions;
//! * **PMU** (MDCR_EL2.TPM/TPMCR): UNDEFINED, as on a CPU without FEAT_PMUv3, which is what
//!   ID_AA64DFR0_EL1.PMUVer = 0 tells the guest;
//! * **self-hosted debug** (MDCR_EL2.TDA/TDOSA/TDRA): reads as zero and ignores writes (the
//!   debug registers exist on every Armv8 CPU, so they cannot be UNDEFINED); OSLSR_EL1 says
//!   the OS lock exists and is unlocked. Nothing a guest writes reaches the hardware, so no
//!   breakpoint, watchpoint or step of one VM fires in another;
//! * **RAS error records** (HCR_EL2.TERR): none (ERRIDR_EL1 = 0), writes ignored;
//! * **set/way cache maintenance** (HCR_EL2.TSW): `DC ISW` and `DC CISW` run as `DC CISW`,
//!   `DC CSW` as itself, on the guest's set/way operand: clean before invalidate, so no VM can
//!   throw away dirty lines of the host or of another VM;
//! * anything else: the VMM stops the guest and names the register.

use qvm::sysreg::{SysReg, SysRegAccess};

/// What the world switch does with one trapped access.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Emulation {
    /// Write this value to Rt (unless Rt is XZR), then step past the instruction.
    Read(u64),
    /// Ignore the write, step past the instruction.
    Ignore,
    /// Run this set/way maintenance instruction with the guest's operand (Rt, masked to
    /// [`SET_WAY_OPERAND`]), step past it.
    SetWay(SetWayOp),
    /// Take an UNDEFINED exception to the guest's EL1 ([`crate::guest_exit::undef_entry`]).
    Undefined,
    /// Not the world switch's: the VMM stops the guest.
    Unhandled,
}

/// The set/way maintenance the host runs for a guest's (Arm ARM C5.3.13 DC CISW, C5.3.14 DC
/// CSW).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SetWayOp {
    /// Clean and invalidate by set/way.
    CleanInvalidate,
    /// Clean by set/way.
    Clean,
}

/// The bits of a set/way operand (Arm ARM C5.3.13): SetWay (31:4) and Level (3:1); bit 0 and
/// 63:32 are RES0.
pub const SET_WAY_OPERAND: u64 = 0xffff_fffe;

/// OSLSR_EL1 as the guest reads it (Arm ARM D19.3.31): OSLM = 0b10 (bit 3 set, bit 0 clear:
/// the OS lock is implemented), OSLK = 0 (unlocked).
pub const OSLSR_EL1_GUEST: u64 = 1 << 3;

/// ID registers the guest may read: the AArch64 ID space, Op0 = 3, Op1 = 0, CRn = 0, CRm =
/// 4..=7 (Arm ARM D19.2, table "ID register space"), indexed by `(CRm - 4) * 8 + Op2`.
/// Everything else in CRm 1..=7 (the AArch32 ID registers and unallocated encodings) reads 0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GuestIds {
    regs: [u64; 32],
}

/// The AArch64 ID registers the host reads from the hardware, as (CRm, Op2): the rest of
/// CRm 4..=7 is hidden (reads 0).
pub const PASSED_IDS: [(u8, u8); 9] = [
    (4, 0), // ID_AA64PFR0_EL1
    (4, 1), // ID_AA64PFR1_EL1
    (5, 0), // ID_AA64DFR0_EL1
    (6, 0), // ID_AA64ISAR0_EL1
    (6, 1), // ID_AA64ISAR1_EL1
    (6, 2), // ID_AA64ISAR2_EL1
    (7, 0), // ID_AA64MMFR0_EL1
    (7, 1), // ID_AA64MMFR1_EL1
    (7, 2), // ID_AA64MMFR2_EL1
];

/// The 4-bit field at `lsb`.
const fn field(v: u64, lsb: u32) -> u64 {
    (v >> lsb) & 0xf
}

/// `v` with only the 4-bit fields at `keep` (their lowest bits) left.
fn keep(v: u64, keep: &[u32]) -> u64 {
    keep.iter().fold(0, |acc, lsb| acc | (v & (0xf << lsb)))
}

/// `v` with the 4-bit fields at `clear` zeroed.
fn clear(v: u64, clear: &[u32]) -> u64 {
    clear.iter().fold(v, |acc, lsb| acc & !(0xf << lsb))
}

/// `v` with the 4-bit field at `lsb` set to `value`.
const fn set(v: u64, lsb: u32, value: u64) -> u64 {
    (v & !(0xf << lsb)) | ((value & 0xf) << lsb)
}

/// What the guest reads for ID register (CRm, Op2) whose hardware value is `hw`. Field
/// positions from the register descriptions in Arm ARM D19.2.
pub fn sanitize(crm: u8, op2: u8, hw: u64) -> u64 {
    match (crm, op2) {
        // ID_AA64PFR0_EL1 (D19.2.67): EL0 (3:0) and EL1 (7:4) AArch64 only (the world switch
        // saves no AArch32 state and its vectors stop an AArch32 guest); no EL2 (11:8), EL3
        // (15:12), SVE (35:32, CPTR_EL2.TZ traps it), SEL2 (39:36), MPAM (43:40), AMU (47:44),
        // RME (55:52); CSV2 (59:56) at most 1 (CSV2_2's SCXTNUM_ELx trap, HCR_EL2.EnSCXT = 0).
        // Kept: FP, AdvSIMD, GIC, RAS, DIT, CSV3.
        (4, 0) => {
            let v = clear(hw, &[8, 12, 32, 36, 40, 44, 52]);
            let v = set(set(v, 0, 1), 4, 1);
            set(v, 56, field(hw, 56).min(1))
        }
        // ID_AA64PFR1_EL1 (D19.2.68): BT (3:0), SSBS (7:4), RAS_frac (15:12) kept; MTE
        // (HCR_EL2.ATA = 0 traps its registers), SME (CPTR_EL2.TSM), MPAM_frac, NMI, GCS and
        // the rest hidden.
        (4, 1) => keep(hw, &[0, 4, 12]),
        // ID_AA64DFR0_EL1 (D19.2.60): DebugVer (3:0) Armv8.0 = 0b0110, BRPs (15:12), WRPs
        // (23:20), CTX_CMPs (31:28) kept, DoubleLock (39:36) 0b1111 (not implemented: OSDLR_EL1
        // ignores writes); PMUVer (11:8) 0 (no PMU), TraceVer, PMSVer (SPE), TraceFilt,
        // TraceBuffer, MTPMU, BRBE, HPMN0 and the rest 0.
        (5, 0) => keep(hw, &[12, 20, 28]) | 0b0110 | (0xf << 36),
        // ID_AA64ISAR0_EL1 (D19.2.63): instructions only (AES, SHA, CRC32, atomics, RNDR, TLBI
        // range/outer shareable forms act on the guest's own VMID): kept.
        (6, 0) => hw,
        // ID_AA64ISAR1_EL1 (D19.2.64): pointer authentication APA (7:4), API (11:8), GPA
        // (27:24), GPI (31:28) hidden (HCR_EL2.APK/API trap its keys and instructions); LS64
        // (63:60) hidden (HCRX_EL2 controls it). The rest kept.
        (6, 1) => clear(hw, &[4, 8, 24, 28, 60]),
        // ID_AA64ISAR2_EL1 (D19.2.65): RPRES (7:4), BC (23:20), CLRBHB (31:28) kept; WFxT,
        // GPA3, APA3, MOPS (HCRX_EL2.MSCEn) and the rest hidden.
        (6, 2) => keep(hw, &[4, 20, 28]),
        // ID_AA64MMFR0_EL1 (D19.2.69): PARange (3:0) = 0b0000, 32 bits: the guest's
        // intermediate physical address space (`guest_exit::cpu_stage2_config`); TGran*_2
        // (43:32) 0 (stage 2 is not the guest's); FGT (59:56) 0; ECV (63:60) at most 1. The
        // rest (ASIDBits, granules, endianness, ExS) kept.
        (7, 0) => {
            let v = clear(hw, &[0, 32, 36, 40, 56]);
            set(v, 60, field(hw, 60).min(1))
        }
        // ID_AA64MMFR1_EL1 (D19.2.70): VMIDBits (7:4), VH (11:8), XNX (31:28), TWED (35:32),
        // HCX (43:40) are EL2's, hidden; LO (19:16) hidden (HCR_EL2.TLOR traps LORegions,
        // which are UNDEFINED for the guest); TIDCP1 (55:52) and CMOW (59:56) hidden. HAFDBS,
        // HPDS, PAN, SpecSEI, ETS, AFP, nTLBPA, ECBHB kept.
        (7, 1) => clear(hw, &[4, 8, 16, 28, 32, 40, 52, 56]),
        // ID_AA64MMFR2_EL1 (D19.2.71): NV (27:24), FWB (43:40), EVT (59:56) are EL2's,
        // hidden; the rest kept.
        (7, 2) => clear(hw, &[24, 40, 56]),
        _ => 0,
    }
}

impl GuestIds {
    /// The guest's ID registers, from `hw(crm, op2)`, which reads the hardware's value of each
    /// register in [`PASSED_IDS`] (and is asked for nothing else).
    pub fn from_hw(hw: impl Fn(u8, u8) -> u64) -> Self {
        let mut regs = [0; 32];
        for (crm, op2) in PASSED_IDS {
            regs[usize::from(crm - 4) * 8 + usize::from(op2)] = sanitize(crm, op2, hw(crm, op2));
        }
        Self { regs }
    }

    /// What the guest reads for ID register (CRm, Op2) of Op0 = 3, Op1 = 0, CRn = 0.
    pub fn get(&self, crm: u8, op2: u8) -> u64 {
        match crm {
            4..=7 => self
                .regs
                .get(usize::from(crm - 4) * 8 + usize::from(op2 & 7))
                .copied()
                .unwrap_or(0),
            _ => 0,
        }
    }
}

/// Decides what to do with `access` (docs/world-switch.md, "Trapped accesses").
pub fn emulate(access: SysRegAccess, ids: &GuestIds) -> Emulation {
    let SysReg {
        op0,
        op1,
        crn,
        crm,
        op2,
    } = access.reg;
    match (op0, op1, crn, crm) {
        // The ID register space (HCR_EL2.TID3; Arm ARM D19.2): read-only.
        (3, 0, 0, 1..=7) if access.read => Emulation::Read(ids.get(crm, op2)),
        (3, 0, 0, 1..=7) => Emulation::Undefined,
        // DC ISW, DC CSW, DC CISW (HCR_EL2.TSW; Arm ARM C5.3).
        (1, 0, 7, 6 | 14) if op2 == 2 && !access.read => {
            Emulation::SetWay(SetWayOp::CleanInvalidate)
        }
        (1, 0, 7, 10) if op2 == 2 && !access.read => Emulation::SetWay(SetWayOp::Clean),
        // Self-hosted debug (Op0 = 2, Op1 = 0 or 3; MDCR_EL2.TDA/TDOSA/TDRA).
        (2, 0 | 3, _, _) if access.read => {
            Emulation::Read(if access.reg == SysReg::new(2, 0, 1, 1, 4) {
                OSLSR_EL1_GUEST
            } else {
                0
            })
        }
        (2, 0 | 3, _, _) => Emulation::Ignore,
        // Trace unit registers (Op0 = 2, Op1 = 1; CPTR_EL2.TTA): TraceVer = 0.
        (2, _, _, _) => Emulation::Undefined,
        // PMU, SPE and the trace buffer (CRn = 9; MDCR_EL2.TPM/TPMCR/TPMS), the event counters
        // and PMCCFILTR_EL0 (Op1 = 3, CRn = 14, CRm = 8..=15): PMUVer = 0.
        (3, _, 9, _) | (3, 3, 14, 8..=15) => Emulation::Undefined,
        // RAS error records (Op1 = 0, CRn = 5, CRm = 3..=5; HCR_EL2.TERR): ERRIDR_EL1 = 0.
        (3, 0, 5, 3..=5) if access.read => Emulation::Read(0),
        (3, 0, 5, 3..=5) => Emulation::Ignore,
        // LORegions (Op1 = 0, CRn = 10, CRm = 4; HCR_EL2.TLOR): LO = 0.
        (3, 0, 10, 4) => Emulation::Undefined,
        _ => Emulation::Unhandled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, read: bool) -> SysRegAccess {
        SysRegAccess {
            reg: SysReg::new(op0, op1, crn, crm, op2),
            rt: 2,
            read,
        }
    }

    /// ID registers of QEMU 10's `-cpu max` as it reported them (PMUVer 6, DebugVer 10, SVE,
    /// MTE, pointer authentication, 48-bit PA).
    fn qemu_max() -> GuestIds {
        GuestIds::from_hw(|crm, op2| match (crm, op2) {
            (4, 0) => 0x1201_1111_1111_1112,
            (4, 1) => 0x0000_0010_0102_0321,
            (5, 0) => 0x0000_0001_f0f1_f60a,
            (6, 1) => 0x0011_1110_0211_1021,
            (7, 0) => 0x1100_0000_0010_1125,
            (7, 1) => 0x1011_2112_1211_1122,
            (7, 2) => 0x1221_1111_0101_1011,
            _ => 0x1111,
        })
    }

    #[test]
    fn the_pmu_is_gone_and_debug_is_armv8_0_in_what_the_guest_reads() {
        let ids = qemu_max();
        let dfr0 = match emulate(access(3, 0, 0, 5, 0, true), &ids) {
            Emulation::Read(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!((dfr0 >> 8) & 0xf, 0, "PMUVer");
        assert_eq!(dfr0 & 0xf, 0b0110, "DebugVer");
        assert_eq!((dfr0 >> 32) & 0xf, 0, "PMSVer");
        // BRPs, WRPs, CTX_CMPs kept; DoubleLock not implemented.
        assert_eq!(dfr0, 0x0000_00f0_f0f0_f006);
        // Control: the hardware said PMUv3 and Armv8.8 debug.
        assert_eq!((0x0000_0001_f0f1_f60a_u64 >> 8) & 0xf, 6);
    }

    #[test]
    fn features_the_switch_does_not_carry_are_hidden() {
        let ids = qemu_max();
        let pfr0 = ids.get(4, 0);
        assert_eq!(pfr0 & 0xff, 0x11, "EL0/EL1 AArch64 only");
        assert_eq!((pfr0 >> 8) & 0xff, 0, "no EL2/EL3");
        assert_eq!((pfr0 >> 32) & 0xf, 0, "no SVE");
        assert_eq!((pfr0 >> 56) & 0xf, 1, "CSV2 capped");
        assert_eq!((pfr0 >> 24) & 0xf, 1, "GIC system registers kept");
        assert_eq!((ids.get(4, 1) >> 8) & 0xf, 0, "no MTE");
        assert_eq!(ids.get(6, 1) & 0xff00_0ff0, 0, "no pointer authentication");
        assert_eq!(ids.get(7, 0) & 0xf, 0, "32-bit PA: the IPA space");
        assert_eq!((ids.get(7, 1) >> 16) & 0xf, 0, "no LORegions");
        assert_eq!(ids.get(6, 0), 0x1111, "instruction features kept");
        // Hidden registers and the AArch32 ones read 0, never the hardware.
        for (crm, op2) in [(4, 4), (4, 5), (5, 1), (7, 3), (1, 0), (3, 0)] {
            assert_eq!(ids.get(crm, op2), 0, "{crm} {op2}");
        }
        assert_eq!(
            emulate(access(3, 0, 0, 4, 0, false), &ids),
            Emulation::Undefined
        );
    }

    #[test]
    fn pmu_traps_are_undefined_and_debug_ignores_writes() {
        let ids = qemu_max();
        for pmu in [
            access(3, 3, 9, 12, 0, true),   // PMCR_EL0
            access(3, 3, 9, 12, 0, false),  // PMCR_EL0
            access(3, 3, 14, 15, 7, false), // PMCCFILTR_EL0
            access(3, 3, 14, 8, 3, true),   // PMEVCNTR3_EL0
            access(3, 0, 9, 14, 1, false),  // PMINTENSET_EL1
            access(3, 0, 9, 9, 0, true),    // PMSCR_EL1 (SPE)
        ] {
            assert_eq!(emulate(pmu, &ids), Emulation::Undefined, "{pmu}");
        }
        for debug in [
            access(2, 0, 0, 0, 4, true), // DBGBVR0_EL1
            access(2, 0, 0, 2, 2, true), // MDSCR_EL1
            access(2, 3, 0, 4, 0, true), // DBGDTR_EL0
        ] {
            assert_eq!(emulate(debug, &ids), Emulation::Read(0), "{debug}");
            let write = SysRegAccess {
                read: false,
                ..debug
            };
            assert_eq!(emulate(write, &ids), Emulation::Ignore, "{write}");
        }
        assert_eq!(
            emulate(access(2, 0, 1, 1, 4, true), &ids),
            Emulation::Read(OSLSR_EL1_GUEST)
        );
        assert_eq!(
            emulate(access(2, 1, 0, 1, 0, true), &ids),
            Emulation::Undefined,
            "trace"
        );
    }

    #[test]
    fn set_way_never_invalidates_without_cleaning() {
        let ids = qemu_max();
        let op = |crm| match emulate(access(1, 0, 7, crm, 2, false), &ids) {
            Emulation::SetWay(op) => op,
            other => panic!("{other:?}"),
        };
        assert_eq!(op(6), SetWayOp::CleanInvalidate, "DC ISW");
        assert_eq!(op(14), SetWayOp::CleanInvalidate, "DC CISW");
        assert_eq!(op(10), SetWayOp::Clean, "DC CSW");
    }

    #[test]
    fn ras_records_are_absent_and_the_rest_goes_to_the_vmm() {
        let ids = qemu_max();
        assert_eq!(
            emulate(access(3, 0, 5, 3, 0, true), &ids),
            Emulation::Read(0)
        );
        assert_eq!(
            emulate(access(3, 0, 5, 4, 2, false), &ids),
            Emulation::Ignore
        );
        assert_eq!(
            emulate(access(3, 0, 10, 4, 7, true), &ids),
            Emulation::Undefined
        );
        // CNTP_CTL_EL0, ICC_SGI1R_EL1, ACTLR_EL1: nobody emulates them.
        for a in [
            access(3, 3, 14, 2, 1, false),
            access(3, 0, 12, 11, 5, false),
            access(3, 0, 1, 0, 1, true),
        ] {
            assert_eq!(emulate(a, &ids), Emulation::Unhandled, "{a}");
        }
    }
}
