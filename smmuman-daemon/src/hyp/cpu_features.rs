//! What the world switch needs to know of the CPU, decoded from its ID registers without
//! touching it (host-tested); `world_switch.rs` reads the registers and calls these.

/// The CPU features the guest's traps and state depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// The GICv3 system register interface exists (ID_AA64PFR0_EL1.GIC, bits 27:24, not 0),
    /// and with it ICH_VMCR_EL2, which the world switch then swaps.
    pub gic: bool,
    /// FEAT_PAN (ID_AA64MMFR1_EL1.PAN, bits 23:20, not 0), for an UNDEFINED exception's
    /// PSTATE.
    pub pan: bool,
    /// FEAT_SSBS (ID_AA64PFR1_EL1.SSBS, bits 7:4, not 0), likewise.
    pub ssbs: bool,
    /// A PMU the guest must be kept from: ID_AA64DFR0_EL1.PMUVer (bits 11:8) neither 0 (none)
    /// nor 0xf (IMPLEMENTATION DEFINED, not the architected one). Only then may PMCR_EL0 be
    /// read (its read is UNDEFINED otherwise).
    pub pmu: bool,
}

/// The 4-bit ID register field at `lo`.
const fn id_field(reg: u64, lo: u32) -> u64 {
    (reg >> lo) & 0xf
}

impl CpuFeatures {
    /// From ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, ID_AA64MMFR1_EL1 and ID_AA64DFR0_EL1.
    pub const fn decode(pfr0: u64, pfr1: u64, mmfr1: u64, dfr0: u64) -> Self {
        let pmuver = id_field(dfr0, 8);
        Self {
            gic: id_field(pfr0, 24) != 0,
            pan: id_field(mmfr1, 20) != 0,
            ssbs: id_field(pfr1, 4) != 0,
            pmu: pmuver != 0 && pmuver != 0xf,
        }
    }
}

/// PMCR_EL0.N (bits 15:11): the number of event counters the PMU implements.
pub const fn pmcr_n(pmcr: u64) -> u64 {
    (pmcr >> 11) & 0x1f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_feature_comes_from_its_own_field() {
        assert_eq!(
            CpuFeatures::decode(0, 0, 0, 0),
            CpuFeatures {
                gic: false,
                pan: false,
                ssbs: false,
                pmu: false
            }
        );
        assert!(CpuFeatures::decode(1 << 24, 0, 0, 0).gic);
        assert!(CpuFeatures::decode(0, 0, 3 << 20, 0).pan);
        assert!(CpuFeatures::decode(0, 2 << 4, 0, 0).ssbs);
        assert!(CpuFeatures::decode(0, 0, 0, 6 << 8).pmu);
        // A neighbouring field does not count: PFR0 bits 23:20 (AdvSIMD) are not the GIC.
        assert!(!CpuFeatures::decode(0xf << 20, 0, 0, 0).gic);
        assert!(!CpuFeatures::decode(0, 0, 0xf << 24, 0).pan);
    }

    #[test]
    fn an_implementation_defined_pmu_is_no_pmu_and_its_pmcr_is_not_read() {
        assert!(!CpuFeatures::decode(0, 0, 0, 0xf << 8).pmu);
        assert_eq!(pmcr_n(0x1f << 11), 31);
        assert_eq!(pmcr_n(6 << 11 | 0x7ff), 6);
    }
}
