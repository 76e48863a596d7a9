//! The HPET main counter as the [`Clock`] that bounds every wait (IA-PC HPET Specification
//! 1.0a §2.3.4 General Capabilities and ID register at 0x000, bits 63:32 COUNTER_CLK_PERIOD in
//! femtoseconds; §2.3.5 General Configuration at 0x010, bit 0 ENABLE_CNF; §2.3.7 Main Counter
//! Value at 0x0F0). Under `-icount` the counter follows virtual time, so waits are
//! deterministic.

use core::time::Duration;
use smmuman_daemon::clock::Clock;
use smmuman_daemon::mmio::{Mmio, MmioRegion};

const GCAP_ID: usize = 0x000;
const GEN_CONF: usize = 0x010;
const MAIN_COUNTER: usize = 0x0f0;
const ENABLE_CNF: u64 = 1 << 0;
/// The specification's bound on COUNTER_CLK_PERIOD (100 ns).
const MAX_PERIOD_FS: u64 = 100_000_000;

/// The HPET's counter.
pub struct Hpet {
    regs: MmioRegion,
    period_fs: u64,
}

impl Hpet {
    /// Starts the main counter; `None` when the period is 0 or above the specification's bound.
    pub fn new(mut regs: MmioRegion) -> Option<Self> {
        let period_fs = regs.read64(GCAP_ID) >> 32;
        if period_fs == 0 || period_fs > MAX_PERIOD_FS {
            return None;
        }
        let conf = regs.read64(GEN_CONF);
        regs.write64(GEN_CONF, conf | ENABLE_CNF);
        Some(Self { regs, period_fs })
    }

    /// Counter period in femtoseconds.
    pub fn period_fs(&self) -> u64 {
        self.period_fs
    }
}

impl Clock for Hpet {
    fn now(&self) -> Duration {
        let ticks = u128::from(self.regs.read64(MAIN_COUNTER));
        let ns = ticks * u128::from(self.period_fs) / 1_000_000;
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}
