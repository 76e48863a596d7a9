//! Decoding of the exception syndrome (ESR_ELx, Arm ARM D23.2.41) for crash reports.

use core::fmt;

/// The sixteen vector-table entries (Arm ARM D1.3.1): which one an exception came through.
pub const VECTOR_NAMES: [&str; 16] = [
    "sync_current_sp0",
    "irq_current_sp0",
    "fiq_current_sp0",
    "serror_current_sp0",
    "sync_current_spx",
    "irq_current_spx",
    "fiq_current_spx",
    "serror_current_spx",
    "sync_lower_a64",
    "irq_lower_a64",
    "fiq_lower_a64",
    "serror_lower_a64",
    "sync_lower_a32",
    "irq_lower_a32",
    "fiq_lower_a32",
    "serror_lower_a32",
];

/// A decoded syndrome register value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Syndrome(pub u64);

impl Syndrome {
    /// ESR.EC, bits 31:26: the exception class.
    pub const fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// ESR.IL, bit 25: the trapped instruction was 32 bits long.
    pub const fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// ESR.ISS, bits 24:0: the class-specific syndrome.
    pub const fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// Whether this is an instruction or data abort, whose ISS holds a fault status code.
    pub const fn is_abort(self) -> bool {
        matches!(self.ec(), 0x20 | 0x21 | 0x24 | 0x25)
    }

    /// For data aborts, ISS.WnR (bit 6): the access was a write.
    pub const fn is_write(self) -> bool {
        self.ec() & 0x3c == 0x24 && self.iss() & (1 << 6) != 0
    }

    /// For aborts, ISS.xFSC (bits 5:0): the fault status code.
    pub const fn fault_status(self) -> u8 {
        (self.iss() & 0x3f) as u8
    }
}

/// A short name for an exception class (Arm ARM D23.2.41, ESR_ELx.EC).
pub const fn ec_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "unknown",
        0x01 => "wfi_wfe",
        0x07 => "fp_simd_access",
        0x0e => "illegal_execution_state",
        0x15 => "svc_a64",
        0x16 => "hvc_a64",
        0x17 => "smc_a64",
        0x18 => "msr_mrs_trap",
        0x19 => "sve_access",
        0x20 => "instruction_abort_lower_el",
        0x21 => "instruction_abort_same_el",
        0x22 => "pc_alignment",
        0x24 => "data_abort_lower_el",
        0x25 => "data_abort_same_el",
        0x26 => "sp_alignment",
        0x2c => "fp_exception",
        0x2f => "serror",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software_step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "brk",
        _ => "other",
    }
}

/// A short name for an abort's fault status code (Arm ARM D23.2.41, ISS encoding for aborts).
pub const fn fault_status_name(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 => "address_size_fault",
        0x04..=0x07 => "translation_fault",
        0x09..=0x0b => "access_flag_fault",
        0x0d..=0x0f => "permission_fault",
        0x10 => "synchronous_external_abort",
        0x11 => "tag_check_fault",
        0x14..=0x17 => "external_abort_on_walk",
        0x18 => "parity_error",
        0x21 => "alignment_fault",
        0x30 => "tlb_conflict",
        _ => "other",
    }
}

impl fmt::Display for Syndrome {
    /// `esr=0x... ec=0x.. ec_name=...` and, for aborts, `fsc=0x.. fsc_name=... wnr=0|1`; for a
    /// trapped system register (EC 0x18), `access="msr CNTP_CTL_EL0, x3 (op0=3 ...)"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "esr={:#x} ec={:#04x} ec_name={}",
            self.0,
            self.ec(),
            ec_name(self.ec())
        )?;
        if self.is_abort() {
            write!(
                f,
                " fsc={:#04x} fsc_name={} wnr={}",
                self.fault_status(),
                fault_status_name(self.fault_status()),
                u8::from(self.is_write())
            )?;
        }
        if self.ec() == 0x18 {
            // The ISS names the register, Rt and the direction (FAR is not set by this class).
            write!(
                f,
                " access=\"{}\"",
                qvm::sysreg::SysRegAccess::from_iss(self.iss())
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_data_abort_write_alignment_fault() {
        // EC=0x25, IL=1, WnR=1, DFSC=0x21.
        let esr = Syndrome((0x25 << 26) | (1 << 25) | (1 << 6) | 0x21);
        assert_eq!(esr.ec(), 0x25);
        assert!(esr.il() && esr.is_abort() && esr.is_write());
        assert_eq!(
            format!("{esr}"),
            "esr=0x96000061 ec=0x25 ec_name=data_abort_same_el fsc=0x21 fsc_name=alignment_fault wnr=1"
        );
    }

    #[test]
    fn non_aborts_have_no_fault_status() {
        let esr = Syndrome(0x3c << 26 | 1 << 25 | 0x1234);
        assert_eq!(format!("{esr}"), "esr=0xf2001234 ec=0x3c ec_name=brk");
        assert!(!esr.is_write());
    }

    #[test]
    fn a_trapped_system_register_is_named_from_the_iss() {
        // MRS x5, PMCR_EL0: Op0 3, Op2 0, Op1 3, CRn 9, Rt 5, CRm 12, read.
        let iss = (3 << 20) | (3 << 14) | (9 << 10) | (5 << 5) | (12 << 1) | 1;
        let esr = Syndrome((0x18 << 26) | (1 << 25) | iss);
        assert_eq!(
            format!("{esr}"),
            "esr=0x6230e4b9 ec=0x18 ec_name=msr_mrs_trap access=\"mrs x5, PMCR_EL0 (op0=3 op1=3 crn=9 crm=12 op2=0 rt=5 dir=read)\""
        );
    }

    #[test]
    fn translation_faults_at_every_level_are_named() {
        for fsc in 4..=7 {
            assert_eq!(fault_status_name(fsc), "translation_fault");
        }
        assert_eq!(VECTOR_NAMES[4], "sync_current_spx");
    }
}
