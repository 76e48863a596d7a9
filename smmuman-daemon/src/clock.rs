//! [`Clock`]: the time source that bounds every wait on a device.

use core::time::Duration;

/// A monotonic clock.
pub trait Clock {
    /// Time since an arbitrary fixed origin (boot, on the board).
    fn now(&self) -> Duration;
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
