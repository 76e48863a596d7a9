//! The Arm generic timer's physical count as the daemon's [`Clock`] (Arm ARM D12.1).

use crate::clock::{ticks_to_duration, Clock};
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::time::Duration;

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

impl Default for GenericTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for GenericTimer {
    fn now(&self) -> Duration {
        ticks_to_duration(CNTPCT_EL0.get(), self.hz)
    }
}
