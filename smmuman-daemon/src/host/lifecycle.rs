//! The run-time life cycle of the host's VMs: which of the plan's VMs run, which stop, which may
//! start again, and the API the operator's channel calls ([`start_vm`], [`stop_vm`],
//! [`vm_states`]).
//!
//! A VM's states, in order:
//!
//! ```text
//!  Starting ──(its VMM task runs)──► Running ──(guest stops / stop_vm)──► Stopping
//!     ▲                                                                      │
//!     └──────────── start_vm (or the plan's `restart N`) ◄── Stopped ◄───────┘
//! ```
//!
//! `Stopping` covers, in this order: the VM's devices quiesced (bus mastering off, FLR where
//! offered, `qvm::quiesce`), its VM object destroyed (its devices back to deny), its RAM
//! scrubbed (zeroed and cleaned to the point of coherency). Only then is the VM `Stopped`,
//! and only a `Stopped` VM's RAM is handed out again (by [`start_vm`]). The host loop
//! (`host/run.rs`, on the board) acts on the requests once per pass (`service_pass`).
//!
//! The table is plain data, host-tested; the daemon keeps one ([`LIFECYCLE`]).

use core::fmt;
use spin::Mutex;

/// VMs the table holds (the host plan's limit).
pub const MAX_VMS: usize = qvm::plan::MAX_VMS;

/// Where one VM of the plan is in its life cycle.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VmState {
    /// Asked to start: the host loop gives it a VMM task at its next pass.
    Starting,
    /// Its VMM runs it (started, running its guest, or stopping it).
    Running,
    /// Its guest stopped: devices being quiesced, object destroyed, RAM being scrubbed.
    Stopping,
    /// Stopped, RAM scrubbed: it may be started again.
    Stopped,
}

impl VmState {
    /// The record's name.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }
}

/// Why a life-cycle request was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LifeError {
    /// The plan names no VM of that name.
    UnknownVm,
    /// Only a stopped VM (RAM scrubbed) may start; this one is in the given state.
    NotStopped(VmState),
    /// Only a starting or running VM may be stopped; this one is in the given state.
    NotRunning(VmState),
}

impl fmt::Display for LifeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVm => f.write_str("the host plan names no such VM"),
            Self::NotStopped(s) => write!(f, "the VM is {}, not stopped", s.tag()),
            Self::NotRunning(s) => write!(f, "the VM is {}, not running", s.tag()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    name: &'static str,
    state: VmState,
    stop_requested: bool,
    last_ok: Option<bool>,
}

/// The life-cycle table: one slot per VM of the plan, in plan order (slot `i` is VM client `i`).
#[derive(Debug)]
pub struct Lifecycle {
    slots: [Option<Slot>; MAX_VMS],
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            slots: [None; MAX_VMS],
        }
    }

    /// Enters the plan's VM `name` as slot `index`, `Starting`. `false` when `index` is out of
    /// range.
    pub fn add(&mut self, index: usize, name: &'static str) -> bool {
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        *slot = Some(Slot {
            name,
            state: VmState::Starting,
            stop_requested: false,
            last_ok: None,
        });
        true
    }

    fn find(&mut self, name: &str) -> Result<(usize, &mut Slot), LifeError> {
        self.slots
            .iter_mut()
            .enumerate()
            .find_map(|(i, s)| s.as_mut().filter(|s| s.name == name).map(|s| (i, s)))
            .ok_or(LifeError::UnknownVm)
    }

    /// Asks a stopped VM to start again (same plan entry, same RAM, same devices).
    ///
    /// # Errors
    /// [`LifeError::UnknownVm`], [`LifeError::NotStopped`].
    pub fn request_start(&mut self, name: &str) -> Result<usize, LifeError> {
        let (i, s) = self.find(name)?;
        if s.state != VmState::Stopped {
            return Err(LifeError::NotStopped(s.state));
        }
        s.state = VmState::Starting;
        s.stop_requested = false;
        Ok(i)
    }

    /// Asks a starting or running VM to stop: its VMM stops the guest at its next yield
    /// (`stopped reason=requested`), then quiesces, destroys and scrubs as for any stop.
    ///
    /// # Errors
    /// [`LifeError::UnknownVm`], [`LifeError::NotRunning`].
    pub fn request_stop(&mut self, name: &str) -> Result<usize, LifeError> {
        let (i, s) = self.find(name)?;
        match s.state {
            VmState::Running => s.stop_requested = true,
            // Not given a task yet: it simply stays stopped.
            VmState::Starting => s.state = VmState::Stopped,
            other => return Err(LifeError::NotRunning(other)),
        }
        Ok(i)
    }

    /// Whether slot `index`'s VM was asked to stop.
    pub fn stop_requested(&self, index: usize) -> bool {
        self.slot(index).is_some_and(|s| s.stop_requested)
    }

    /// Slot `index`'s state.
    pub fn state(&self, index: usize) -> Option<VmState> {
        self.slot(index).map(|s| s.state)
    }

    fn slot(&self, index: usize) -> Option<&Slot> {
        self.slots.get(index).and_then(Option::as_ref)
    }

    /// Moves slot `index` to `state` (the host's own transitions: its VMM task runs, its guest
    /// stopped, its RAM is scrubbed). A VM that stops forgets a pending stop request.
    pub fn set(&mut self, index: usize, state: VmState) {
        if let Some(s) = self.slots.get_mut(index).and_then(Option::as_mut) {
            s.state = state;
            if state == VmState::Stopped {
                s.stop_requested = false;
            }
        }
    }

    /// The next VM that waits for a VMM task (`Starting`) and whose index `ready` accepts (its
    /// previous task is gone), now `Running`.
    pub fn take_start(&mut self, ready: impl Fn(usize) -> bool) -> Option<usize> {
        let (i, s) = self.slots.iter_mut().enumerate().find_map(|(i, s)| {
            s.as_mut()
                .filter(|s| s.state == VmState::Starting && ready(i))
                .map(|s| (i, s))
        })?;
        s.state = VmState::Running;
        Some(i)
    }

    /// Records how slot `index`'s last run ended: `ok` when its guest exited with status 0
    /// (or powered off); not when its VMM refused it, it crashed or ran out of time.
    pub fn set_last_ok(&mut self, index: usize, ok: bool) {
        if let Some(s) = self.slots.get_mut(index).and_then(Option::as_mut) {
            s.last_ok = Some(ok);
        }
    }

    /// Slot `index`: its name, state, and how its last run ended (`None`: no run ended yet).
    pub fn vm_at(&self, index: usize) -> Option<(&'static str, VmState, Option<bool>)> {
        self.slot(index).map(|s| (s.name, s.state, s.last_ok))
    }

    /// Whether any VM is not `Stopped`.
    pub fn any_active(&self) -> bool {
        self.slots
            .iter()
            .flatten()
            .any(|s| s.state != VmState::Stopped)
    }

    /// Every VM of the plan with its state, in plan order.
    pub fn states(&self) -> impl Iterator<Item = (&'static str, VmState)> + '_ {
        self.slots.iter().flatten().map(|s| (s.name, s.state))
    }
}

/// The daemon's life-cycle table, filled from the host plan by the host loop.
pub static LIFECYCLE: Mutex<Lifecycle> = Mutex::new(Lifecycle::new());

/// Starts the plan's VM `name` again (the operator's `start`): it must be stopped, its RAM
/// scrubbed; the host loop gives it a VMM task at its next pass, in the same RAM with the same
/// devices. Returns the VM's index (its client is `index + 1`).
///
/// # Errors
/// [`LifeError`]: an unknown name, or a VM that is not stopped.
pub fn start_vm(name: &str) -> Result<usize, LifeError> {
    LIFECYCLE.lock().request_start(name)
}

/// Stops the plan's VM `name` (the operator's `stop`): its guest stops at its VMM's next
/// yield; its devices are quiesced, its object destroyed and its RAM scrubbed before it is
/// `Stopped`. Returns the VM's index.
///
/// # Errors
/// [`LifeError`]: an unknown name, or a VM that is not starting or running.
pub fn stop_vm(name: &str) -> Result<usize, LifeError> {
    LIFECYCLE.lock().request_stop(name)
}

/// The plan's VM at `index` (plan order; its manager client is `ClientId(index + 1)` while
/// its VMM runs): its name, its state and how its last run ended (`Some(false)`: refused,
/// crashed, out of time or a non-zero exit). `None` past the last.
pub fn vm_at(index: usize) -> Option<(&'static str, VmState, Option<bool>)> {
    LIFECYCLE.lock().vm_at(index)
}

/// Calls `each(name, state)` for every VM of the plan, in plan order.
pub fn vm_states(mut each: impl FnMut(&str, VmState)) {
    let table = LIFECYCLE.lock();
    for (name, state) in table.states() {
        each(name, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Lifecycle {
        let mut t = Lifecycle::new();
        assert!(t.add(0, "vm1"));
        assert!(t.add(1, "vm2"));
        assert!(!t.add(MAX_VMS, "vm9"), "past the table");
        t
    }

    #[test]
    fn a_vm_goes_round_its_cycle_and_starts_again_only_once_stopped() {
        let mut t = table();
        assert_eq!(
            t.take_start(|i| i != 0),
            Some(1),
            "vm1's task is not gone yet"
        );
        assert_eq!(t.take_start(|_| true), Some(0));
        assert_eq!(t.take_start(|_| true), None);
        assert_eq!(t.state(0), Some(VmState::Running));
        // Running or stopping (its RAM not scrubbed yet): no start.
        assert_eq!(
            t.request_start("vm1"),
            Err(LifeError::NotStopped(VmState::Running))
        );
        t.set(0, VmState::Stopping);
        assert_eq!(
            t.request_start("vm1"),
            Err(LifeError::NotStopped(VmState::Stopping))
        );
        t.set(0, VmState::Stopped);
        assert_eq!(t.request_start("vm1"), Ok(0));
        assert_eq!(t.state(0), Some(VmState::Starting));
        assert_eq!(t.take_start(|_| true), Some(0));
    }

    #[test]
    fn stop_is_asked_of_a_running_vm_and_forgotten_once_it_stopped() {
        let mut t = table();
        t.take_start(|_| true);
        assert_eq!(t.request_stop("vm1"), Ok(0));
        assert!(t.stop_requested(0));
        assert!(!t.stop_requested(1));
        t.set(0, VmState::Stopping);
        assert_eq!(
            t.request_stop("vm1"),
            Err(LifeError::NotRunning(VmState::Stopping))
        );
        t.set(0, VmState::Stopped);
        assert!(!t.stop_requested(0));
        assert_eq!(
            t.request_stop("vm1"),
            Err(LifeError::NotRunning(VmState::Stopped))
        );
    }

    #[test]
    fn a_vm_stopped_before_its_task_ran_stays_stopped() {
        let mut t = table();
        assert_eq!(t.request_stop("vm2"), Ok(1));
        assert_eq!(t.state(1), Some(VmState::Stopped));
        assert_eq!(t.take_start(|_| true), Some(0), "vm2 gets no task");
        assert_eq!(t.take_start(|_| true), None);
    }

    #[test]
    fn unknown_names_are_refused_and_states_listed_in_plan_order() {
        let mut t = table();
        assert_eq!(t.request_start("vm3"), Err(LifeError::UnknownVm));
        assert_eq!(t.request_stop(""), Err(LifeError::UnknownVm));
        assert_eq!(
            LifeError::NotStopped(VmState::Running).to_string(),
            "the VM is running, not stopped"
        );
        let states: Vec<_> = t.states().collect();
        assert_eq!(
            states,
            [("vm1", VmState::Starting), ("vm2", VmState::Starting)]
        );
        assert!(t.any_active());
        t.set(0, VmState::Stopped);
        t.set(1, VmState::Stopped);
        assert!(!t.any_active());
        assert_eq!(t.vm_at(1), Some(("vm2", VmState::Stopped, None)));
        t.set_last_ok(1, false);
        assert_eq!(t.vm_at(1), Some(("vm2", VmState::Stopped, Some(false))));
        assert_eq!(t.vm_at(2), None);
    }
}
