//! The two guests of the fairness test (`tests-qemu/tests/fairness.rs`).
//!
//! * `worker` counts rounds of fixed CPU work ([`work_round`]) for a window of its own clock
//!   ([`count_rounds`]) and prints `WORKER rounds=<n> window_ms=<ms> max_gap_ms=<ms>`: how
//!   much CPU it got, and the longest time it did not run.
//! * `flooder` makes its host work for it as hard as a guest can for a window of its own
//!   clock ([`flood`]): ECAM sweeps of bus 0, BAR 0 moved back and forth with memory decoding
//!   on (each move a CPU stage-2 unmap, map and TLB invalidation in its VMM), console bytes
//!   through the UART and through `QVM_CONSOLE_WRITE`, and `PSCI_VERSION` hypercalls; then it
//!   prints `FLOODER iterations=<n> ...`.

use crate::clock::Clock;
use crate::layout::Range;
use crate::pci;
use crate::Guest;

/// What `worker` measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounds {
    /// Rounds of work done in the window.
    pub rounds: u64,
    /// The longest time between two finished rounds (or the start and the first), in ticks.
    pub max_gap_ticks: u64,
}

/// Iterations of one round of work (about 0.1 ms of TCG time: far less than a 10 ms slice).
pub const ROUND_STEPS: u32 = 20_000;

/// One round of fixed work: `ROUND_STEPS` xorshift64 steps (Marsaglia 2003) from `seed`.
pub fn work_round(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..ROUND_STEPS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    core::hint::black_box(x)
}

/// Runs `round` again and again until `window_ms` of `clock` have passed since the call.
pub fn count_rounds(clock: &dyn Clock, window_ms: u64, mut round: impl FnMut()) -> Rounds {
    let window = clock.frequency().saturating_mul(window_ms) / 1000;
    let start = clock.ticks();
    let mut last = start;
    let mut r = Rounds {
        rounds: 0,
        max_gap_ticks: 0,
    };
    loop {
        round();
        let now = clock.ticks();
        r.rounds += 1;
        r.max_gap_ticks = r.max_gap_ticks.max(now.saturating_sub(last));
        last = now;
        if now.saturating_sub(start) >= window {
            return r;
        }
    }
}

/// `ticks` of `clock` in milliseconds.
pub fn ms(clock: &dyn Clock, ticks: u64) -> u64 {
    ticks.saturating_mul(1000) / clock.frequency().max(1)
}

/// What `flooder` made its host do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flood {
    /// Rounds of the flood.
    pub iterations: u64,
    /// ECAM reads (32 slots per sweep).
    pub ecam_reads: u64,
    /// BAR 0 writes, each moving it.
    pub bar_moves: u64,
    /// Console bytes, both ways.
    pub console_bytes: u64,
    /// Hypercalls.
    pub hypercalls: u64,
}

/// Why the flood could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodError {
    /// The device tree names no PCI host.
    NoPci,
    /// No `edu` on bus 0.
    NoEdu,
    /// BAR 0 could not be placed.
    Bar(pci::BarError),
    /// The window has no room for BAR 0 at a second address.
    NoSecondPlace,
}

impl core::fmt::Display for FloodError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoPci => f.write_str("no PCI host in the device tree"),
            Self::NoEdu => f.write_str("no edu on bus 0"),
            Self::Bar(e) => write!(f, "{e}"),
            Self::NoSecondPlace => f.write_str("no room to move BAR 0"),
        }
    }
}

/// Hypercalls per flood round.
const HYPERCALLS_PER_ROUND: u64 = 16;
/// The UART line each round writes (48 bytes).
const LINE: &str = "FLOOD the host works for this guest .........\n";

/// Floods the host for `window_ms` of the guest's clock. `hvc(function, a1, a2)` makes a
/// hypercall; `text` is a buffer in the guest's RAM (guest-physical address, length) that
/// each round also writes with `QVM_CONSOLE_WRITE`.
///
/// # Errors
/// [`FloodError`] when there is no `edu` whose BAR 0 can be moved.
pub fn flood(
    g: &mut Guest<'_>,
    window_ms: u64,
    hvc: &mut dyn FnMut(u32, u64, u64) -> u64,
    text: (u64, u64),
) -> Result<Flood, FloodError> {
    let host = g.dt.pci.ok_or(FloodError::NoPci)?;
    let f = pci::find(g.phys, host.ecam, crate::edu::VENDOR, crate::edu::DEVICE)
        .ok_or(FloodError::NoEdu)?;
    let bar = pci::enable_bar0(g.phys, f, host.mem32).map_err(FloodError::Bar)?;
    let other = bar
        .base
        .checked_add(bar.size)
        .filter(|b| host.mem32.covers(&Range::new(*b, bar.size)))
        .ok_or(FloodError::NoSecondPlace)?;
    let places = [bar.base, other];
    let window = g.clock.frequency().saturating_mul(window_ms) / 1000;
    let start = g.clock.ticks();
    let mut n = Flood::default();
    while g.clock.ticks().saturating_sub(start) < window {
        for dev in 0..32u64 {
            let at = host.ecam.base + (dev << 15);
            if at < host.ecam.end() {
                core::hint::black_box(g.phys.read32(at));
                n.ecam_reads += 1;
            }
        }
        let to = places[(n.iterations % 2) as usize ^ 1];
        g.phys
            .write32(f.config + 0x10, u32::try_from(to).unwrap_or(0));
        n.bar_moves += 1;
        let _ = g.out.write_str(LINE);
        n.console_bytes += LINE.len() as u64;
        if hvc(qvm::abi::QVM_CONSOLE_WRITE, text.0, text.1) == text.1 {
            n.console_bytes += text.1;
        }
        n.hypercalls += 1;
        for _ in 0..HYPERCALLS_PER_ROUND {
            hvc(qvm::abi::PSCI_VERSION, 0, 0);
            n.hypercalls += 1;
        }
        n.iterations += 1;
    }
    // Leave BAR 0 where it started.
    g.phys
        .write32(f.config + 0x10, u32::try_from(bar.base).unwrap_or(0));
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    /// A clock that advances `step` ticks per read, at 1 kHz.
    struct Stepping {
        now: Cell<u64>,
        step: u64,
    }

    impl Clock for Stepping {
        fn ticks(&self) -> u64 {
            let t = self.now.get();
            self.now.set(t + self.step);
            t
        }
        fn frequency(&self) -> u64 {
            1000
        }
    }

    #[test]
    fn rounds_are_counted_until_the_window_ends_and_the_longest_gap_is_kept() {
        let clock = Stepping {
            now: Cell::new(0),
            step: 1,
        };
        let mut i = 0;
        let r = count_rounds(&clock, 100, || {
            i += 1;
            // The guest was descheduled for 40 ms during its tenth round.
            if i == 10 {
                clock.now.set(clock.now.get() + 40);
            }
        });
        assert_eq!(r.max_gap_ticks, 41);
        assert_eq!(r.rounds, 60);
        assert_eq!(ms(&clock, r.max_gap_ticks), 41);
    }

    #[test]
    fn a_round_of_work_is_deterministic() {
        assert_eq!(work_round(7), work_round(7));
        assert_ne!(work_round(7), work_round(8));
    }
}
