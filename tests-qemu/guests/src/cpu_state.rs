//! The CPU state a guest can touch without asking its VMM, and two guests around it: `cpu-noisy`
//! programs every such register to its own values over and over; `cpu-check` reads them at its
//! entry (it must see reset values, never its neighbour's), writes its own values and reads them
//! back across many time slices (it must see only its own). Both say what they saw of the PMU and
//! the debug registers (trapped by the host, or reached directly) and what the ID registers
//! promise. The host's world switch decides; docs/world-switch.md says what it owes.
//!
//! Registers (Arm ARM DDI 0487): PMU (D24.5: PMCR_EL0, PMCCFILTR_EL0, PMSELR_EL0,
//! PMCNTENSET_EL0, PMUSERENR_EL0), self-hosted debug (D19.3: DBGBVR0/DBGBCR0/DBGWVR0/DBGWCR0_EL1,
//! MDSCR_EL1), the EL1 virtual timer (D19.11: CNTV_CTL_EL0, CNTV_CVAL_EL0) and the GIC CPU
//! interface (GICv3 IHI 0069 §12.2: ICC_PMR_EL1, ICC_BPR1_EL1, ICC_IGRPEN1_EL1, which a guest
//! reaches as the virtual ICV_* registers, held in ICH_VMCR_EL2).
//!
//! The accesses themselves are in `rt` ([`CpuRegs`] is the seam); the logic here is host-tested.

use crate::clock::{Clock, Deadline};
use crate::report::Checks;
use core::fmt;

/// One register the guests program.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reg {
    /// PMCR_EL0: E (bit 0), D (3), X (4), DP (5), LC (6).
    Pmcr,
    /// PMCCFILTR_EL0: P, U, NSK, NSU, NSH (bit 27: count EL2 cycles), M (bits 31:26).
    Pmccfiltr,
    /// PMSELR_EL0.SEL (bits 4:0).
    Pmselr,
    /// PMCNTENSET_EL0.C (bit 31): the cycle counter enabled.
    Pmcntenset,
    /// PMUSERENR_EL0: EN, SW, CR, ER (bits 3:0).
    Pmuserenr,
    /// DBGBVR0_EL1: breakpoint 0's address (bits 48:2).
    Dbgbvr0,
    /// DBGBCR0_EL1: BAS (8:5), PMC (2:1); E (bit 0) stays 0.
    Dbgbcr0,
    /// DBGWVR0_EL1: watchpoint 0's address (bits 48:2).
    Dbgwvr0,
    /// DBGWCR0_EL1: BAS (12:5), LSC (4:3), PAC (2:1); E stays 0.
    Dbgwcr0,
    /// MDSCR_EL1: MDE (15), KDE (13), TDCC (12).
    Mdscr,
    /// CNTV_CTL_EL0: ENABLE (bit 0), IMASK (1).
    CntvCtl,
    /// CNTV_CVAL_EL0: the compare value.
    CntvCval,
    /// ICC_PMR_EL1: the priority mask (bits 7:0).
    IccPmr,
    /// ICC_BPR1_EL1: the binary point (bits 2:0).
    IccBpr1,
    /// ICC_IGRPEN1_EL1.Enable (bit 0).
    IccIgrpen1,
}

/// Who owns a register's state, as the guests expect the host to arrange it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// The PMU: no guest reaches it.
    Pmu,
    /// Self-hosted debug: no guest reaches it.
    Debug,
    /// Each VM has its own copy (switched at every entry and exit).
    Own,
}

/// A register's name, kind, the bits compared, and what each guest writes.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Which register.
    pub reg: Reg,
    /// Its name (as in the Arm ARM, lower case).
    pub name: &'static str,
    /// Who owns it.
    pub kind: Kind,
    /// The bits written and compared.
    pub mask: u64,
    /// What `cpu-noisy` writes.
    pub noisy: u64,
    /// What `cpu-check` writes (`None`: it only looks).
    pub own: Option<u64>,
}

const ADDR: u64 = 0x0000_ffff_ffff_fffc;

/// Every register the guests program.
pub const SPECS: [Spec; 15] = [
    spec(Reg::Pmcr, "pmcr_el0", Kind::Pmu, 0x79, 0x41, Some(0x08)),
    spec(
        Reg::Pmccfiltr,
        "pmccfiltr_el0",
        Kind::Pmu,
        0xfc00_0000,
        1 << 27,
        Some(1 << 30),
    ),
    spec(Reg::Pmselr, "pmselr_el0", Kind::Pmu, 0x1f, 3, Some(1)),
    spec(
        Reg::Pmcntenset,
        "pmcntenset_el0",
        Kind::Pmu,
        1 << 31,
        1 << 31,
        None,
    ),
    spec(
        Reg::Pmuserenr,
        "pmuserenr_el0",
        Kind::Pmu,
        0xf,
        0x1,
        Some(0x4),
    ),
    spec(
        Reg::Dbgbvr0,
        "dbgbvr0_el1",
        Kind::Debug,
        ADDR,
        0x4000_1000,
        Some(0x4000_2000),
    ),
    spec(
        Reg::Dbgbcr0,
        "dbgbcr0_el1",
        Kind::Debug,
        0x1e6,
        0x1e6,
        Some(0x62),
    ),
    spec(
        Reg::Dbgwvr0,
        "dbgwvr0_el1",
        Kind::Debug,
        ADDR,
        0x4000_3000,
        Some(0x4000_4000),
    ),
    spec(
        Reg::Dbgwcr0,
        "dbgwcr0_el1",
        Kind::Debug,
        0x1ffe,
        0x1ffe,
        Some(0x1ea),
    ),
    spec(
        Reg::Mdscr,
        "mdscr_el1",
        Kind::Debug,
        0xb000,
        0xb000,
        Some(0x1000),
    ),
    spec(
        Reg::CntvCtl,
        "cntv_ctl_el0",
        Kind::Own,
        0b11,
        0b11,
        Some(0b01),
    ),
    spec(
        Reg::CntvCval,
        "cntv_cval_el0",
        Kind::Own,
        u64::MAX,
        0x00ff_ffff_0000_1111,
        Some(0x00ee_eeee_0000_2222),
    ),
    spec(
        Reg::IccPmr,
        "icc_pmr_el1",
        Kind::Own,
        0xff,
        0xa0,
        Some(0x60),
    ),
    spec(Reg::IccBpr1, "icc_bpr1_el1", Kind::Own, 0x7, 5, Some(4)),
    spec(Reg::IccIgrpen1, "icc_igrpen1_el1", Kind::Own, 1, 1, Some(0)),
];

const fn spec(
    reg: Reg,
    name: &'static str,
    kind: Kind,
    mask: u64,
    noisy: u64,
    own: Option<u64>,
) -> Spec {
    Spec {
        reg,
        name,
        kind,
        mask,
        noisy,
        own,
    }
}

/// System register accesses that may trap (an UNDEFINED instruction the guest survives).
pub trait CpuRegs {
    /// Reads `reg`; `None` when the read was UNDEFINED.
    fn read(&self, reg: Reg) -> Option<u64>;
    /// Writes `reg`; `false` when the write was UNDEFINED.
    fn write(&self, reg: Reg, value: u64) -> bool;
    /// ID_AA64DFR0_EL1 (Arm ARM D19.2.61); `None` when the read was UNDEFINED.
    fn id_aa64dfr0(&self) -> Option<u64>;
    /// `DC ISW` then `DC CISW` on set 0, way 0, level 1 (Arm ARM C5.3.13); `false` when one
    /// was UNDEFINED.
    fn set_way(&self) -> bool;
}

/// What a read showed, compared with the two guests' values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    /// The read was UNDEFINED.
    Trapped,
    /// The value this guest wrote.
    Own,
    /// The other guest's value: state leaked between VMs.
    Foreign(u64),
    /// Anything else (a reset value, or zero from a register that ignores writes).
    Other(u64),
}

impl Seen {
    /// Classifies `value` (a read of `spec`'s register) for the guest that wrote `own`.
    pub fn of(spec: &Spec, value: Option<u64>, own: Option<u64>) -> Self {
        let Some(v) = value else {
            return Self::Trapped;
        };
        let v = v & spec.mask;
        if own.is_some_and(|o| o & spec.mask == v) {
            Self::Own
        } else if v == spec.noisy & spec.mask {
            Self::Foreign(v)
        } else {
            Self::Other(v)
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trapped => f.write_str("undef"),
            Self::Own => f.write_str("own"),
            Self::Foreign(v) => write!(f, "neighbour:{v:#x}"),
            Self::Other(v) => write!(f, "{v:#x}"),
        }
    }
}

/// How the PMU and the debug registers answered, and what ID_AA64DFR0_EL1 promises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapReport {
    /// PMU accesses that were UNDEFINED / that were not.
    pub pmu_undef: u32,
    /// PMU accesses that executed.
    pub pmu_direct: u32,
    /// Debug registers that read 0 after this guest wrote them.
    pub debug_ignored: u32,
    /// Debug registers that kept what this guest wrote.
    pub debug_kept: u32,
    /// ID_AA64DFR0_EL1.PMUVer (bits 11:8) and DebugVer (3:0); `None` if the read trapped.
    pub dfr0: Option<u64>,
}

impl fmt::Display for TrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pmu_undef={} pmu_direct={} debug_ignored={} debug_kept={} ",
            self.pmu_undef, self.pmu_direct, self.debug_ignored, self.debug_kept
        )?;
        match self.dfr0 {
            Some(d) => write!(f, "pmuver={} debugver={}", (d >> 8) & 0xf, d & 0xf),
            None => f.write_str("pmuver=undef debugver=undef"),
        }
    }
}

/// Writes `value` to every register of the table (each guest its own column), and probes the PMU
/// and debug registers: how they answered goes into the returned report.
fn program(regs: &dyn CpuRegs, value: impl Fn(&Spec) -> Option<u64>) -> TrapReport {
    let mut r = TrapReport {
        dfr0: regs.id_aa64dfr0(),
        ..TrapReport::default()
    };
    for s in &SPECS {
        let Some(v) = value(s) else { continue };
        let wrote = regs.write(s.reg, v);
        let back = regs.read(s.reg);
        match s.kind {
            Kind::Pmu if wrote && back.is_some() => r.pmu_direct += 1,
            Kind::Pmu => r.pmu_undef += 1,
            Kind::Debug if back.is_some_and(|b| b & s.mask == 0) => r.debug_ignored += 1,
            Kind::Debug => r.debug_kept += 1,
            Kind::Own => {}
        }
    }
    r
}

/// Counter ticks past which two consecutive reads mean the guest was descheduled (1 ms).
fn slice_gap(clock: &dyn Clock) -> u64 {
    clock.frequency() / 1000
}

/// `cpu-noisy`: programs every register with its values, then for `ms` milliseconds rewrites
/// them and checks that it reads back its own values (never another VM's). Prints `CPU_TRAPS`
/// (what it saw of the PMU, debug and ID registers) and `CHECK name=noisy-own` and
/// `name=set-way`.
pub fn noisy(regs: &dyn CpuRegs, clock: &dyn Clock, out: &mut dyn fmt::Write, ms: u64) -> u32 {
    let mut checks = Checks::default();
    let traps = program(regs, |s| Some(s.noisy));
    let _ = writeln!(out, "CPU_TRAPS role=noisy {traps}");
    let set_way = regs.set_way();
    checks.check(
        out,
        "set-way",
        set_way,
        format_args!("dc_isw_cisw_survived={}", u8::from(set_way)),
    );
    let end = Deadline::after_ms(clock, ms);
    let (mut rounds, mut bad, mut slices) = (0u32, 0u32, 0u32);
    let mut last = clock.ticks();
    while !end.passed(clock) {
        for s in &SPECS {
            let _ = regs.write(s.reg, s.noisy);
        }
        for s in SPECS.iter().filter(|s| s.kind == Kind::Own) {
            if regs.read(s.reg).map(|v| v & s.mask) != Some(s.noisy & s.mask) {
                bad += 1;
            }
        }
        let now = clock.ticks();
        if now.saturating_sub(last) > slice_gap(clock) {
            slices += 1;
        }
        last = now;
        rounds += 1;
    }
    checks.check(
        out,
        "noisy-own",
        bad == 0 && rounds > 0,
        format_args!("rounds={rounds} slices={slices} mismatches={bad}"),
    );
    checks.status()
}

/// `cpu-check`: reads every register at entry (`CPU_SEEN when=entry`: reset values expected,
/// never `cpu-noisy`'s), writes its own values, then for `ms` milliseconds reads them back across
/// time slices (`CPU_SEEN when=slices`: its own, or what a register that ignores writes reads).
/// Prints `CPU_TRAPS` and `CHECK name=entry-reset`, `name=slices-own`.
pub fn check(regs: &dyn CpuRegs, clock: &dyn Clock, out: &mut dyn fmt::Write, ms: u64) -> u32 {
    let mut checks = Checks::default();
    let mut foreign_at_entry = 0u32;
    for s in &SPECS {
        let seen = Seen::of(s, regs.read(s.reg), None);
        if matches!(seen, Seen::Foreign(_)) {
            foreign_at_entry += 1;
        }
        let _ = writeln!(
            out,
            "CPU_SEEN role=check when=entry reg={} seen={seen}",
            s.name
        );
    }
    checks.check(
        out,
        "entry-reset",
        foreign_at_entry == 0,
        format_args!("neighbour_values={foreign_at_entry}"),
    );
    let traps = program(regs, |s| s.own);
    let _ = writeln!(out, "CPU_TRAPS role=check {traps}");
    let end = Deadline::after_ms(clock, ms);
    let (mut rounds, mut slices) = (0u32, 0u32);
    let mut first_bad: [Option<Seen>; SPECS.len()] = [None; SPECS.len()];
    let mut bad = 0u32;
    let mut last = clock.ticks();
    while !end.passed(clock) {
        for (i, s) in SPECS.iter().enumerate() {
            let seen = Seen::of(s, regs.read(s.reg), s.own);
            let wrong = match (s.kind, seen) {
                (_, Seen::Foreign(_)) => true,
                // Its own copy: exactly what it wrote.
                (Kind::Own, seen) => seen != Seen::Own,
                // Trapped or ignored: fine, as long as nobody else's value shows.
                _ => false,
            };
            if wrong {
                bad += 1;
                first_bad[i].get_or_insert(seen);
            }
        }
        let now = clock.ticks();
        if now.saturating_sub(last) > slice_gap(clock) {
            slices += 1;
        }
        last = now;
        rounds += 1;
    }
    for (s, seen) in SPECS.iter().zip(first_bad) {
        if let Some(seen) = seen {
            let _ = writeln!(
                out,
                "CPU_SEEN role=check when=slices reg={} seen={seen}",
                s.name
            );
        }
    }
    checks.check(
        out,
        "slices-own",
        bad == 0 && rounds > 0,
        format_args!("rounds={rounds} slices={slices} mismatches={bad}"),
    );
    checks.status()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// One register file, shared like the unswitched CPU would share it, or trapping like the
    /// host should make it.
    struct Fake {
        vals: RefCell<[u64; SPECS.len()]>,
        trap_pmu: bool,
        ignore_debug: bool,
        ticks: Cell<u64>,
    }

    impl Fake {
        fn new(trap_pmu: bool, ignore_debug: bool) -> Self {
            Self {
                vals: RefCell::new([0; SPECS.len()]),
                trap_pmu,
                ignore_debug,
                ticks: Cell::new(0),
            }
        }
        fn index(reg: Reg) -> usize {
            SPECS.iter().position(|s| s.reg == reg).unwrap()
        }
    }

    impl CpuRegs for Fake {
        fn read(&self, reg: Reg) -> Option<u64> {
            let s = SPECS[Self::index(reg)];
            match s.kind {
                Kind::Pmu if self.trap_pmu => None,
                Kind::Debug if self.ignore_debug => Some(0),
                _ => Some(self.vals.borrow()[Self::index(reg)]),
            }
        }
        fn write(&self, reg: Reg, value: u64) -> bool {
            let s = SPECS[Self::index(reg)];
            match s.kind {
                Kind::Pmu if self.trap_pmu => false,
                Kind::Debug if self.ignore_debug => true,
                _ => {
                    self.vals.borrow_mut()[Self::index(reg)] = value;
                    true
                }
            }
        }
        fn id_aa64dfr0(&self) -> Option<u64> {
            Some(if self.trap_pmu { 0x6 } else { 0x106 })
        }
        fn set_way(&self) -> bool {
            true
        }
    }

    impl Clock for Fake {
        fn ticks(&self) -> u64 {
            self.ticks.set(self.ticks.get() + 100);
            self.ticks.get()
        }
        fn frequency(&self) -> u64 {
            1_000_000
        }
    }

    #[test]
    fn a_shared_register_file_shows_the_neighbours_values_at_entry() {
        let cpu = Fake::new(false, false);
        let mut out = String::new();
        assert_eq!(noisy(&cpu, &cpu, &mut out, 1), 0, "{out}");
        let mut out = String::new();
        assert_eq!(check(&cpu, &cpu, &mut out, 1), 1, "{out}");
        assert!(
            out.contains("CHECK name=entry-reset ok=0 neighbour_values=15"),
            "{out}"
        );
        assert!(
            out.contains("reg=pmccfiltr_el0 seen=neighbour:0x8000000"),
            "{out}"
        );
        assert!(out.contains("CPU_TRAPS role=check pmu_undef=0 pmu_direct=4 debug_ignored=0 debug_kept=5 pmuver=1"), "{out}");
    }

    #[test]
    fn switched_and_trapped_registers_pass_both_checks() {
        let noisy_cpu = Fake::new(true, true);
        let mut out = String::new();
        assert_eq!(noisy(&noisy_cpu, &noisy_cpu, &mut out, 1), 0, "{out}");
        assert!(out.contains("CPU_TRAPS role=noisy pmu_undef=5 pmu_direct=0 debug_ignored=5 debug_kept=0 pmuver=0 debugver=6"), "{out}");
        // A fresh register file: what a switched CPU gives the other VM.
        let cpu = Fake::new(true, true);
        let mut out = String::new();
        assert_eq!(check(&cpu, &cpu, &mut out, 1), 0, "{out}");
        assert!(out.contains("CHECK name=entry-reset ok=1"), "{out}");
        assert!(out.contains("CHECK name=slices-own ok=1"), "{out}");
        assert!(out.contains("reg=pmcr_el0 seen=undef"), "{out}");
    }

    #[test]
    fn a_value_changed_mid_run_is_caught() {
        let s = SPECS[Fake::index(Reg::IccPmr)];
        assert_eq!(Seen::of(&s, Some(0x60), s.own), Seen::Own);
        assert_eq!(Seen::of(&s, Some(0xa0), s.own), Seen::Foreign(0xa0));
        assert_eq!(Seen::of(&s, Some(0), s.own), Seen::Other(0));
        assert_eq!(Seen::of(&s, None, s.own), Seen::Trapped);
    }
}
