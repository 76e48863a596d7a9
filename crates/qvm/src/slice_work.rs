//! What one VM may make its host do in one time slice.
//!
//! The host charges the time it spends on a VM's exits to that VM's slice (the slice is a
//! deadline, not a fresh interval per entry: `smmuman-daemon`'s `hyp/world_switch.rs`). On top of that,
//! the work a trap can cause is bounded per slice, so that a guest cannot make its host do an
//! unbounded amount of work for it before the next scheduling point: console output (every
//! byte becomes host console output), CPU stage-2 remaps (a BAR move unmaps, maps and
//! invalidates TLBs), ECAM accesses (each one a trap and, for a passed-through register, a
//! real configuration access), hypercalls, and exits in all. Past any bound the VMM gives the
//! CPU away ([`crate::Action::Yield`]): the VM continues in its next slice, with a fresh
//! budget.

/// The kinds of host work a guest can cause.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Work {
    /// Guest console bytes (UART data register writes and `QVM_CONSOLE_WRITE`).
    ConsoleBytes,
    /// Changes to the CPU stage 2 (a BAR mapped, unmapped or moved).
    Remaps,
    /// Accesses to the emulated ECAM.
    EcamAccesses,
    /// Hypercalls (`HVC`, `SMC`).
    Hypercalls,
    /// Exits of any kind.
    Exits,
}

impl Work {
    /// The name in records (`throttled_by=`).
    pub const fn tag(self) -> &'static str {
        match self {
            Self::ConsoleBytes => "console-bytes",
            Self::Remaps => "remaps",
            Self::EcamAccesses => "ecam-accesses",
            Self::Hypercalls => "hypercalls",
            Self::Exits => "exits",
        }
    }
}

/// Bounds per time slice, one per [`Work`] kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WorkLimits {
    /// Console bytes (four full `QVM_CONSOLE_WRITE`s).
    pub console_bytes: u32,
    /// CPU stage-2 changes.
    pub remaps: u32,
    /// ECAM accesses (a full scan of bus 0 reads a few words of each of 32 slots).
    pub ecam_accesses: u32,
    /// Hypercalls.
    pub hypercalls: u32,
    /// Exits.
    pub exits: u32,
}

impl WorkLimits {
    /// What every VM gets: far above what a guest that does its own work needs (a PCI scan,
    /// a few lines of output, one BAR placement), small enough that the host's work for one
    /// slice stays a fraction of a slice.
    pub const DEFAULT: Self = Self {
        console_bytes: 1024,
        remaps: 8,
        ecam_accesses: 512,
        hypercalls: 256,
        exits: 2048,
    };

    /// No bounds (`u32::MAX` never runs out; the test image's control run, which restores the
    /// old accounting).
    pub const UNBOUNDED: Self = Self {
        console_bytes: u32::MAX,
        remaps: u32::MAX,
        ecam_accesses: u32::MAX,
        hypercalls: u32::MAX,
        exits: u32::MAX,
    };

    const fn of(&self, w: Work) -> u32 {
        match w {
            Work::ConsoleBytes => self.console_bytes,
            Work::Remaps => self.remaps,
            Work::EcamAccesses => self.ecam_accesses,
            Work::Hypercalls => self.hypercalls,
            Work::Exits => self.exits,
        }
    }
}

impl Default for WorkLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

const KINDS: [Work; 5] = [
    Work::ConsoleBytes,
    Work::Remaps,
    Work::EcamAccesses,
    Work::Hypercalls,
    Work::Exits,
];

/// The work one VM caused in its current slice, against its [`WorkLimits`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SliceWork {
    limits: WorkLimits,
    used: [u32; KINDS.len()],
    /// Slices ended early because a bound was reached.
    throttled: u64,
}

impl SliceWork {
    /// A fresh budget under `limits`.
    pub const fn new(limits: WorkLimits) -> Self {
        Self {
            limits,
            used: [0; KINDS.len()],
            throttled: 0,
        }
    }

    /// The bounds.
    pub const fn limits(&self) -> WorkLimits {
        self.limits
    }

    /// Counts `n` units of `w`.
    pub fn charge(&mut self, w: Work, n: u32) {
        if let Some(u) = self.used.get_mut(w as usize) {
            *u = u.saturating_add(n);
        }
    }

    /// The first kind of work whose bound this slice has reached, if any.
    pub fn exhausted(&self) -> Option<Work> {
        KINDS
            .iter()
            .zip(self.used.iter())
            .find(|(w, used)| {
                let limit = self.limits.of(**w);
                limit != u32::MAX && **used >= limit
            })
            .map(|(w, _)| *w)
    }

    /// Ends the slice early because of `w` (counted), and starts a new budget.
    pub fn throttle(&mut self) {
        self.throttled = self.throttled.saturating_add(1);
        self.reset();
    }

    /// A new slice: nothing used yet.
    pub fn reset(&mut self) {
        self.used = [0; KINDS.len()];
    }

    /// Units of `w` used in this slice.
    pub fn used(&self, w: Work) -> u32 {
        self.used.get(w as usize).copied().unwrap_or(0)
    }

    /// Slices ended early so far.
    pub const fn throttled(&self) -> u64 {
        self.throttled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_is_reached_at_its_limit_and_a_reset_starts_over() {
        for w in KINDS {
            let mut s = SliceWork::new(WorkLimits::DEFAULT);
            let limit = WorkLimits::DEFAULT.of(w);
            s.charge(w, limit - 1);
            assert_eq!(s.exhausted(), None, "{w:?}");
            s.charge(w, 1);
            assert_eq!(s.exhausted(), Some(w), "{w:?}");
            s.throttle();
            assert_eq!(s.exhausted(), None, "{w:?}");
            assert_eq!(s.used(w), 0);
            assert_eq!(s.throttled(), 1);
        }
    }

    #[test]
    fn unbounded_never_runs_out() {
        let mut s = SliceWork::new(WorkLimits::UNBOUNDED);
        for w in KINDS {
            s.charge(w, u32::MAX - 1);
        }
        assert_eq!(s.exhausted(), None);
        s.charge(Work::Exits, 10);
        assert_eq!(s.exhausted(), None);
    }
}
