//! A trapped system register access as the syndrome describes it (ESR_EL2.EC = 0x18, Arm ARM
//! DDI 0487 D24.2.40 "ISS encoding for an exception from MSR, MRS, or System instruction
//! execution in AArch64 state"): which register (Op0, Op1, CRn, CRm, Op2), which general
//! register (Rt) and which direction. The host's world switch emulates what it owns
//! (docs/world-switch.md); any other trapped access stops the guest with this decoded.

use core::fmt;

/// The encoding of a system register or system instruction (Arm ARM C5.1.2, "op0, op1, CRn,
/// CRm, op2").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct SysReg {
    /// Op0 (2 bits): 0b01 system instructions, 0b10 debug, 0b11 the rest.
    pub op0: u8,
    /// Op1 (3 bits).
    pub op1: u8,
    /// CRn (4 bits).
    pub crn: u8,
    /// CRm (4 bits).
    pub crm: u8,
    /// Op2 (3 bits).
    pub op2: u8,
}

impl SysReg {
    /// The register with this encoding.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }

    /// Its architectural name, when this table knows it.
    pub fn name(self) -> Option<&'static str> {
        let Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        } = self;
        let fixed = NAMES
            .iter()
            .find(|(r, _)| *r == self)
            .map(|(_, name)| *name);
        if fixed.is_some() {
            return fixed;
        }
        // The numbered ones: DBGB/W{V,C}R<n>_EL1 (Arm ARM D19.3: op0=2, op1=0, CRn=0, CRm=n,
        // op2=4..7), PMEVCNTR<n>_EL0 / PMEVTYPER<n>_EL0 (D24.5: op0=3, op1=3, CRn=14,
        // CRm=0b10:n[4:3] / 0b11:n[4:3], op2=n[2:0]).
        match (op0, op1, crn, crm, op2) {
            (2, 0, 0, n, 4) => DBGBVR.get(usize::from(n)).copied(),
            (2, 0, 0, n, 5) => DBGBCR.get(usize::from(n)).copied(),
            (2, 0, 0, n, 6) => DBGWVR.get(usize::from(n)).copied(),
            (2, 0, 0, n, 7) => DBGWCR.get(usize::from(n)).copied(),
            (3, 3, 14, 8..=11, _) => Some("PMEVCNTR<n>_EL0"),
            (3, 3, 14, 12..=15, _) => Some("PMEVTYPER<n>_EL0"),
            _ => None,
        }
    }
}

impl fmt::Display for SysReg {
    /// The name, else the generic form `S<op0>_<op1>_C<n>_C<m>_<op2>` assemblers accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(
                f,
                "S{}_{}_C{}_C{}_{}",
                self.op0, self.op1, self.crn, self.crm, self.op2
            ),
        }
    }
}

/// One trapped `MRS`, `MSR` or `SYS` instruction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysRegAccess {
    /// The register or system instruction.
    pub reg: SysReg,
    /// The general register transferred (31: XZR).
    pub rt: u8,
    /// `MRS` (a read into Rt); else `MSR` or `SYS` (a write from Rt).
    pub read: bool,
}

impl SysRegAccess {
    /// Decodes ESR_EL2.ISS of EC 0x18: Direction bit 0 (1 = read), CRm bits 4:1, Rt 9:5, CRn
    /// 13:10, Op1 16:14, Op2 19:17, Op0 21:20.
    pub fn from_iss(iss: u32) -> Self {
        let field = |shift: u32, bits: u32| ((iss >> shift) & ((1 << bits) - 1)) as u8;
        Self {
            reg: SysReg {
                op0: field(20, 2),
                op1: field(14, 3),
                crn: field(10, 4),
                crm: field(1, 4),
                op2: field(17, 3),
            },
            rt: field(5, 5),
            read: iss & 1 != 0,
        }
    }
}

impl fmt::Display for SysRegAccess {
    /// `mrs x3, PMCR_EL0 (op0=3 op1=3 crn=9 crm=12 op2=0 rt=3 dir=read)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.reg;
        let gpr = Gpr(self.rt);
        match (self.read, r.op0) {
            (true, _) => write!(f, "mrs {gpr}, {r}")?,
            (false, 1) => write!(f, "sys {r}, {gpr}")?,
            (false, _) => write!(f, "msr {r}, {gpr}")?,
        }
        write!(
            f,
            " (op0={} op1={} crn={} crm={} op2={} rt={} dir={})",
            r.op0,
            r.op1,
            r.crn,
            r.crm,
            r.op2,
            self.rt,
            if self.read { "read" } else { "write" }
        )
    }
}

/// `x<n>`, or `xzr` for 31.
struct Gpr(u8);

impl fmt::Display for Gpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 31 {
            f.write_str("xzr")
        } else {
            write!(f, "x{}", self.0)
        }
    }
}

macro_rules! numbered {
    ($name:ident, $prefix:literal) => {
        const $name: [&str; 16] = [
            concat!($prefix, "0_EL1"),
            concat!($prefix, "1_EL1"),
            concat!($prefix, "2_EL1"),
            concat!($prefix, "3_EL1"),
            concat!($prefix, "4_EL1"),
            concat!($prefix, "5_EL1"),
            concat!($prefix, "6_EL1"),
            concat!($prefix, "7_EL1"),
            concat!($prefix, "8_EL1"),
            concat!($prefix, "9_EL1"),
            concat!($prefix, "10_EL1"),
            concat!($prefix, "11_EL1"),
            concat!($prefix, "12_EL1"),
            concat!($prefix, "13_EL1"),
            concat!($prefix, "14_EL1"),
            concat!($prefix, "15_EL1"),
        ];
    };
}
numbered!(DBGBVR, "DBGBVR");
numbered!(DBGBCR, "DBGBCR");
numbered!(DBGWVR, "DBGWVR");
numbered!(DBGWCR, "DBGWCR");

const fn r(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> SysReg {
    SysReg::new(op0, op1, crn, crm, op2)
}

/// Registers a guest may touch that trap to EL2 (encodings from the Arm ARM's register
/// descriptions, D19 and D24; GICv3 IHI 0069 §12).
const NAMES: &[(SysReg, &str)] = &[
    // Debug (D19.3).
    (r(2, 0, 0, 0, 2), "OSDTRRX_EL1"),
    (r(2, 0, 0, 2, 0), "MDCCINT_EL1"),
    (r(2, 0, 0, 2, 2), "MDSCR_EL1"),
    (r(2, 0, 0, 3, 2), "OSDTRTX_EL1"),
    (r(2, 0, 0, 6, 2), "OSECCR_EL1"),
    (r(2, 0, 1, 0, 0), "MDRAR_EL1"),
    (r(2, 0, 1, 0, 4), "OSLAR_EL1"),
    (r(2, 0, 1, 1, 4), "OSLSR_EL1"),
    (r(2, 0, 1, 3, 4), "OSDLR_EL1"),
    (r(2, 0, 1, 4, 4), "DBGPRCR_EL1"),
    (r(2, 0, 7, 8, 6), "DBGCLAIMSET_EL1"),
    (r(2, 0, 7, 9, 6), "DBGCLAIMCLR_EL1"),
    (r(2, 0, 7, 14, 6), "DBGAUTHSTATUS_EL1"),
    (r(2, 3, 0, 1, 0), "MDCCSR_EL0"),
    (r(2, 3, 0, 4, 0), "DBGDTR_EL0"),
    (r(2, 3, 0, 5, 0), "DBGDTRRX_EL0"),
    // Set/way cache maintenance (C5.3).
    (r(1, 0, 7, 6, 2), "DC ISW"),
    (r(1, 0, 7, 10, 2), "DC CSW"),
    (r(1, 0, 7, 14, 2), "DC CISW"),
    // ID registers (D19.2, trapped by HCR_EL2.TID3).
    (r(3, 0, 0, 4, 0), "ID_AA64PFR0_EL1"),
    (r(3, 0, 0, 4, 1), "ID_AA64PFR1_EL1"),
    (r(3, 0, 0, 4, 2), "ID_AA64PFR2_EL1"),
    (r(3, 0, 0, 4, 4), "ID_AA64ZFR0_EL1"),
    (r(3, 0, 0, 4, 5), "ID_AA64SMFR0_EL1"),
    (r(3, 0, 0, 5, 0), "ID_AA64DFR0_EL1"),
    (r(3, 0, 0, 5, 1), "ID_AA64DFR1_EL1"),
    (r(3, 0, 0, 5, 4), "ID_AA64AFR0_EL1"),
    (r(3, 0, 0, 5, 5), "ID_AA64AFR1_EL1"),
    (r(3, 0, 0, 6, 0), "ID_AA64ISAR0_EL1"),
    (r(3, 0, 0, 6, 1), "ID_AA64ISAR1_EL1"),
    (r(3, 0, 0, 6, 2), "ID_AA64ISAR2_EL1"),
    (r(3, 0, 0, 7, 0), "ID_AA64MMFR0_EL1"),
    (r(3, 0, 0, 7, 1), "ID_AA64MMFR1_EL1"),
    (r(3, 0, 0, 7, 2), "ID_AA64MMFR2_EL1"),
    (r(3, 0, 0, 7, 3), "ID_AA64MMFR3_EL1"),
    (r(3, 0, 1, 0, 1), "ACTLR_EL1"),
    // RAS (D19.6, trapped by HCR_EL2.TERR).
    (r(3, 0, 5, 3, 0), "ERRIDR_EL1"),
    (r(3, 0, 5, 3, 1), "ERRSELR_EL1"),
    (r(3, 0, 5, 4, 0), "ERXFR_EL1"),
    (r(3, 0, 5, 4, 1), "ERXCTLR_EL1"),
    (r(3, 0, 5, 4, 2), "ERXSTATUS_EL1"),
    (r(3, 0, 5, 4, 3), "ERXADDR_EL1"),
    (r(3, 0, 5, 5, 0), "ERXMISC0_EL1"),
    (r(3, 0, 5, 5, 1), "ERXMISC1_EL1"),
    // PMU (D24.5).
    (r(3, 0, 9, 14, 1), "PMINTENSET_EL1"),
    (r(3, 0, 9, 14, 2), "PMINTENCLR_EL1"),
    (r(3, 0, 9, 14, 6), "PMMIR_EL1"),
    (r(3, 3, 9, 12, 0), "PMCR_EL0"),
    (r(3, 3, 9, 12, 1), "PMCNTENSET_EL0"),
    (r(3, 3, 9, 12, 2), "PMCNTENCLR_EL0"),
    (r(3, 3, 9, 12, 3), "PMOVSCLR_EL0"),
    (r(3, 3, 9, 12, 4), "PMSWINC_EL0"),
    (r(3, 3, 9, 12, 5), "PMSELR_EL0"),
    (r(3, 3, 9, 12, 6), "PMCEID0_EL0"),
    (r(3, 3, 9, 12, 7), "PMCEID1_EL0"),
    (r(3, 3, 9, 13, 0), "PMCCNTR_EL0"),
    (r(3, 3, 9, 13, 1), "PMXEVTYPER_EL0"),
    (r(3, 3, 9, 13, 2), "PMXEVCNTR_EL0"),
    (r(3, 3, 9, 14, 0), "PMUSERENR_EL0"),
    (r(3, 3, 9, 14, 3), "PMOVSSET_EL0"),
    (r(3, 3, 14, 15, 7), "PMCCFILTR_EL0"),
    // LORegions (D19.2, trapped by HCR_EL2.TLOR).
    (r(3, 0, 10, 4, 0), "LORSA_EL1"),
    (r(3, 0, 10, 4, 1), "LOREA_EL1"),
    (r(3, 0, 10, 4, 2), "LORN_EL1"),
    (r(3, 0, 10, 4, 3), "LORC_EL1"),
    (r(3, 0, 10, 4, 7), "LORID_EL1"),
    // GIC CPU interface (GICv3 §12.2) that traps with HCR_EL2.IMO/FMO.
    (r(3, 0, 12, 11, 5), "ICC_SGI1R_EL1"),
    (r(3, 0, 12, 11, 6), "ICC_ASGI1R_EL1"),
    (r(3, 0, 12, 11, 7), "ICC_SGI0R_EL1"),
    // Generic timer (D19.11): the EL1 physical timer traps (CNTHCTL_EL2.EL1PCEN = 0).
    (r(3, 3, 14, 0, 0), "CNTFRQ_EL0"),
    (r(3, 3, 14, 0, 1), "CNTPCT_EL0"),
    (r(3, 3, 14, 0, 2), "CNTVCT_EL0"),
    (r(3, 3, 14, 2, 0), "CNTP_TVAL_EL0"),
    (r(3, 3, 14, 2, 1), "CNTP_CTL_EL0"),
    (r(3, 3, 14, 2, 2), "CNTP_CVAL_EL0"),
    (r(3, 3, 14, 3, 0), "CNTV_TVAL_EL0"),
    (r(3, 3, 14, 3, 1), "CNTV_CTL_EL0"),
    (r(3, 3, 14, 3, 2), "CNTV_CVAL_EL0"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The ISS of an access, built from the fields as the Arm ARM lays them out.
    fn iss(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, rt: u32, read: bool) -> u32 {
        (op0 << 20)
            | (op2 << 17)
            | (op1 << 14)
            | (crn << 10)
            | (rt << 5)
            | (crm << 1)
            | u32::from(read)
    }

    #[test]
    fn a_physical_timer_write_is_named_with_its_fields() {
        let a = SysRegAccess::from_iss(iss(3, 3, 14, 2, 1, 3, false));
        assert_eq!(a.reg, SysReg::new(3, 3, 14, 2, 1));
        assert_eq!(
            a.to_string(),
            "msr CNTP_CTL_EL0, x3 (op0=3 op1=3 crn=14 crm=2 op2=1 rt=3 dir=write)"
        );
    }

    #[test]
    fn reads_numbered_and_unknown_registers_are_spelled_out() {
        let a = SysRegAccess::from_iss(iss(3, 3, 9, 12, 0, 31, true));
        assert_eq!(
            a.to_string(),
            "mrs xzr, PMCR_EL0 (op0=3 op1=3 crn=9 crm=12 op2=0 rt=31 dir=read)"
        );
        assert_eq!(SysReg::new(2, 0, 0, 5, 7).name(), Some("DBGWCR5_EL1"));
        assert_eq!(SysReg::new(3, 3, 14, 9, 2).name(), Some("PMEVCNTR<n>_EL0"));
        let unknown = SysRegAccess::from_iss(iss(3, 7, 15, 15, 7, 0, false));
        assert!(unknown.to_string().starts_with("msr S3_7_C15_C15_7, x0"));
        let sys = SysRegAccess::from_iss(iss(1, 0, 7, 6, 2, 4, false));
        assert!(sys.to_string().starts_with("sys DC ISW, x4"));
    }

    #[test]
    fn every_iss_decodes_within_field_ranges() {
        for iss in [0, u32::MAX, 0x1ff_ffff, 0x155_5555] {
            let a = SysRegAccess::from_iss(iss);
            assert!(a.reg.op0 < 4 && a.reg.op1 < 8 && a.reg.crn < 16 && a.reg.crm < 16);
            assert!(a.reg.op2 < 8 && a.rt < 32);
            let _ = a.to_string();
        }
    }
}
