//! [`Clock`]: the time source that bounds every wait on a device.

use core::time::Duration;

/// A monotonic clock.
pub trait Clock {
    /// Time since an arbitrary fixed origin (boot, on the board).
    fn now(&self) -> Duration;
}

/// The time `ticks` of a counter running at `hz` make (the Arm generic timer: CNTPCT_EL0
/// ticks at CNTFRQ_EL0 Hz, Arm ARM D12.1), exact to the nanosecond below, saturating at
/// `u64::MAX` nanoseconds; a frequency of 0 (firmware left CNTFRQ_EL0 unset) counts as 1 Hz.
pub fn ticks_to_duration(ticks: u64, hz: u64) -> Duration {
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(hz.max(1));
    Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
}

/// Polls `done` until it returns true or `timeout` has passed on `clock`.
///
/// Returns the time waited, or `Err` with the time waited when the deadline passed first.
///
/// # Errors
/// The elapsed time, when `done` never returned true before the deadline.
pub fn wait_until(
    clock: &impl Clock,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, Duration> {
    let start = clock.now();
    loop {
        if done() {
            return Ok(clock.now().saturating_sub(start));
        }
        let waited = clock.now().saturating_sub(start);
        if waited >= timeout {
            return Err(waited);
        }
        core::hint::spin_loop();
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A clock that advances a fixed step on every reading.

    use super::*;
    use core::cell::Cell;

    /// Each `now()` returns the previous reading plus `step`.
    pub struct StepClock {
        pub now: Cell<Duration>,
        pub step: Duration,
    }

    impl StepClock {
        pub fn new(step: Duration) -> Self {
            Self {
                now: Cell::new(Duration::ZERO),
                step,
            }
        }
    }

    impl Clock for StepClock {
        fn now(&self) -> Duration {
            let t = self.now.get() + self.step;
            self.now.set(t);
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::StepClock;
    use super::*;

    #[test]
    fn counter_ticks_become_time_at_the_counter_frequency() {
        // QEMU's virt: 62.5 MHz.
        assert_eq!(
            ticks_to_duration(62_500_000, 62_500_000),
            Duration::from_secs(1)
        );
        assert_eq!(
            ticks_to_duration(625, 62_500_000),
            Duration::from_micros(10)
        );
        // A whole day at 1 GHz does not overflow the intermediate product.
        assert_eq!(
            ticks_to_duration(86_400_000_000_000, 1_000_000_000),
            Duration::from_secs(86_400)
        );
        // Saturates instead of wrapping; an unset frequency counts as 1 Hz.
        assert_eq!(
            ticks_to_duration(u64::MAX, 1),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(ticks_to_duration(3, 0), Duration::from_secs(3));
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let clock = StepClock::new(Duration::from_millis(10));
        let waited = wait_until(&clock, Duration::from_millis(100), || false).unwrap_err();
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_millis(200));
    }

    #[test]
    fn returns_as_soon_as_done() {
        let clock = StepClock::new(Duration::from_millis(10));
        let mut polls = 0;
        assert!(wait_until(&clock, Duration::from_secs(1), || {
            polls += 1;
            polls == 3
        })
        .is_ok());
        assert_eq!(polls, 3);
    }
}
