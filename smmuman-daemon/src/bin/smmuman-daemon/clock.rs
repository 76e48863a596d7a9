//! The Arm generic timer's physical count as the daemon's [`Clock`] (Arm ARM D12.1).

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::time::Duration;
use smmuman_daemon::clock::Clock;

/// CNTPCT_EL0 scaled by CNTFRQ_EL0.
#[derive(Clone, Copy, Debug)]
pub struct GenericTimer {
    hz: u64,
}

impl GenericTimer {
    /// Reads the counter frequency firmware programmed into CNTFRQ_EL0.
    pub fn new() -> Self {
        Self {
            hz: CNTFRQ_EL0.get().max(1),
        }
    }

    /// Counter frequency in Hz.
    pub fn hz(&self) -> u64 {
        self.hz
    }
}

impl Clock for GenericTimer {
    fn now(&self) -> Duration {
        let ticks = u128::from(CNTPCT_EL0.get());
        let nanos = ticks * 1_000_000_000 / u128::from(self.hz);
        Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }
}
