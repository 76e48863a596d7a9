//! Time for bounded waits: the generic timer's physical count (CNTPCT_EL0) and its frequency
//! (CNTFRQ_EL0), Arm ARM DDI 0487, D12.1 "About the Generic Timer".

/// A monotonic counter.
pub trait Clock {
    /// The count now.
    fn ticks(&self) -> u64;
    /// Counts per second.
    fn frequency(&self) -> u64;
}

/// A point in time after which a wait gives up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    end: u64,
}

impl Deadline {
    /// `ms` milliseconds from now.
    pub fn after_ms(clock: &dyn Clock, ms: u64) -> Self {
        let ticks = clock.frequency().saturating_mul(ms) / 1000;
        Self {
            end: clock.ticks().saturating_add(ticks),
        }
    }

    /// Whether the deadline has passed.
    pub fn passed(&self, clock: &dyn Clock) -> bool {
        clock.ticks() >= self.end
    }
}
