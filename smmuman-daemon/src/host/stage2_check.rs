//! The stage-2 check: before a guest's first instruction, the host compares, page by page,
//! where the CPU sends each guest-physical address of the VM's RAM (`AT S12E1R` through the
//! VM's VTTBR_EL2, Arm ARM C5.5) with where the SMMU sends it for the VM's device (the
//! manager's stage-2 table). A VM whose two translations disagree on any page, or that has no
//! RAM to compare, never runs. The walk over the pages and the verdict are here; the host loop
//! supplies the two translations.

use core::fmt;
use qvm::gpa::GpaRange;

/// The granule the check steps by (both tables map 4 KiB pages at the finest).
pub const PAGE: u64 = 4096;

/// The first page the two translations disagree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The guest-physical page.
    pub gpa: u64,
    /// Where the CPU sends it (`None`: the CPU's walk faults).
    pub cpu: Option<u64>,
    /// Where the SMMU sends it (`None`: no translation for the device).
    pub smmu: Option<u64>,
}

/// What one comparison found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// Pages compared.
    pub pages: u64,
    /// Pages the two translations disagree on, or that the CPU does not translate.
    pub mismatches: u64,
    /// The first of those.
    pub first: Option<Mismatch>,
}

impl Comparison {
    /// Whether the guest may run: at least one page (a `GpaRange` is never empty; kept so
    /// that a zero count can never pass), and the two agree on every one.
    pub fn agrees(&self) -> bool {
        self.mismatches == 0 && self.pages > 0
    }
}

/// Compares `cpu` and `smmu` (guest-physical address → host-physical address) on every page
/// of `ram`. A page the CPU does not translate is a mismatch even when the SMMU does not
/// either: the guest's own RAM must be reachable by both.
pub fn compare(
    ram: GpaRange,
    mut cpu: impl FnMut(u64) -> Option<u64>,
    mut smmu: impl FnMut(u64) -> Option<u64>,
) -> Comparison {
    let mut c = Comparison {
        pages: 0,
        mismatches: 0,
        first: None,
    };
    let start = ram.start().0;
    for off in (0..ram.len()).step_by(PAGE as usize) {
        let gpa = start + off;
        let (on_cpu, on_smmu) = (cpu(gpa), smmu(gpa));
        c.pages += 1;
        if on_cpu.is_none() || on_cpu != on_smmu {
            c.mismatches += 1;
            c.first.get_or_insert(Mismatch {
                gpa,
                cpu: on_cpu,
                smmu: on_smmu,
            });
        }
    }
    c
}

/// `none`, or `gpa->cpu:PA|unmapped/smmu:PA|unmapped` of the first mismatch (the `first=`
/// field of the `STAGE2_CHECK` record).
pub struct FirstMismatch(pub Option<Mismatch>);

impl fmt::Display for FirstMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pa = |f: &mut fmt::Formatter<'_>, v: Option<u64>| match v {
            Some(v) => write!(f, "{v:#x}"),
            None => f.write_str("unmapped"),
        };
        match self.0 {
            None => f.write_str("none"),
            Some(m) => {
                write!(f, "{:#x}->cpu:", m.gpa)?;
                pa(f, m.cpu)?;
                f.write_str("/smmu:")?;
                pa(f, m.smmu)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvm::gpa::Gpa;

    const GPA: u64 = 0x4000_0000;
    const HPA: u64 = 0x5000_0000;

    fn ram(len: u64) -> GpaRange {
        GpaRange::new(Gpa(GPA), len).unwrap()
    }

    fn linear(gpa: u64) -> Option<u64> {
        Some(gpa - GPA + HPA)
    }

    #[test]
    fn two_tables_that_agree_on_every_page_let_the_guest_run() {
        let c = compare(ram(4 << 20), linear, linear);
        assert_eq!((c.pages, c.mismatches, c.first), (1024, 0, None));
        assert!(c.agrees());
        assert_eq!(FirstMismatch(c.first).to_string(), "none");
    }

    #[test]
    fn one_page_sent_elsewhere_stops_the_guest_and_is_named() {
        // The control: the SMMU sends one page (the 3rd) to another VM's RAM.
        let smmu = |gpa| {
            if gpa == GPA + 2 * PAGE {
                Some(0x6000_0000)
            } else {
                linear(gpa)
            }
        };
        let c = compare(ram(16 * PAGE), linear, smmu);
        assert_eq!((c.pages, c.mismatches), (16, 1));
        assert!(!c.agrees());
        assert_eq!(
            FirstMismatch(c.first).to_string(),
            "0x40002000->cpu:0x50002000/smmu:0x60000000"
        );
    }

    #[test]
    fn a_page_the_cpu_or_the_smmu_does_not_translate_is_not_agreement() {
        let c = compare(ram(2 * PAGE), |_| None, |_| None);
        assert_eq!(c.mismatches, 2);
        assert_eq!(
            FirstMismatch(c.first).to_string(),
            "0x40000000->cpu:unmapped/smmu:unmapped"
        );
        let smmu_missing = compare(ram(PAGE), linear, |_| None);
        assert!(!smmu_missing.agrees());
        // RAM shorter than a page is still one page compared.
        assert_eq!(compare(ram(100), linear, linear).pages, 1);
    }
}
