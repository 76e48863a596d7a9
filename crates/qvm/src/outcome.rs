//! What a VM's start, run and finish come to: why it did not start ([`StartError`]), why it
//! stopped ([`StopReason`]), what the vCPU loop does next ([`Action`]) and the final
//! [`Report`].

use crate::elf::ElfError;
use crate::gpa::{Gpa, GpaRange};
use crate::guest_dt::TooSmall;
use crate::guest_map::MapListError;
use crate::guest_ram::OutsideRam;
use crate::mmio::DecodeError;
use crate::vpci::VpciError;
use core::fmt;
use iommu_core::{Bdf, StreamId};
use smmuman_api::{CallError, DeviceSel};

/// Why a VM did not start.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StartError {
    /// The client rules refused it (the `VMM vm=<name> refused:` line has the full message).
    Refused {
        /// The first device the rules found a problem with.
        device: DeviceSel,
        /// What: the manager is not running, it does not know the device, or it gave no
        /// answer.
        problem: RuleProblem,
        /// How many devices have a problem.
        problems: usize,
    },
    /// The RAM the host gave does not match the plan.
    Ram {
        /// Where the plan puts it.
        expected: Option<GpaRange>,
        /// What the host's [`GuestRam`](crate::GuestRam) covers.
        got: GpaRange,
    },
    /// A unity VM's RAM overlaps the guest's device windows (console, PCI, ECAM).
    UnityOverlap {
        /// The RAM.
        ram: GpaRange,
    },
    /// The number of functions differs from the plan's.
    Functions {
        /// The plan's.
        planned: usize,
        /// The host's.
        given: usize,
    },
    /// The manager refused or failed a step.
    Manager {
        /// The step (`create_object`, `attach 00:01.0`, ...).
        step: &'static str,
        /// Its error.
        error: CallError,
    },
    /// The virtual PCI bus refused a function.
    Vpci(VpciError),
    /// The GPA→HPA list or the CPU stage 2.
    Map(MapListError),
    /// The guest image.
    Elf(ElfError),
    /// The device tree.
    Dt(TooSmall),
    /// Writing the guest's RAM.
    Write(OutsideRam),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused {
                device,
                problem,
                problems,
            } => write!(
                f,
                "the client rules refuse to start it: {device}: {problem} ({problems} device(s) \
                 with a problem)"
            ),
            Self::Ram {
                expected: Some(e),
                got,
            } => {
                write!(f, "the host gave RAM at {got}, the plan puts it at {e}")
            }
            Self::Ram {
                expected: None,
                got,
            } => {
                write!(f, "the host gave RAM at {got}, the plan's RAM does not fit")
            }
            Self::UnityOverlap { ram } => write!(
                f,
                "unity RAM {ram} overlaps the guest's console, PCI window or ECAM"
            ),
            Self::Functions { planned, given } => write!(
                f,
                "the plan passes {planned} functions through, the host gave {given}"
            ),
            Self::Manager { step, error } => write!(f, "smmuman refused {step}: {error}"),
            Self::Vpci(e) => write!(f, "{e}"),
            Self::Map(e) => write!(f, "{e}"),
            Self::Elf(e) => write!(f, "guest image: {e}"),
            Self::Dt(e) => write!(f, "{e}"),
            Self::Write(e) => write!(f, "{e}"),
        }
    }
}

/// What the client rules found wrong with a device.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RuleProblem {
    /// The manager is not running.
    NoManager,
    /// The manager does not know the device (no IOMMU controls it).
    UnknownDevice,
    /// The manager gave no answer about it.
    NoAnswer,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoManager => "the smmuman manager is not running",
            Self::UnknownDevice => "smmuman does not know it (no IOMMU controls it)",
            Self::NoAnswer => "smmuman gave no answer about it",
        })
    }
}

/// Why the guest stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StopReason {
    /// `QVM_EXIT` with this status.
    Exited {
        /// x1.
        status: u64,
    },
    /// PSCI SYSTEM_OFF.
    SystemOff,
    /// The plan's time limit passed.
    TimeLimit {
        /// The limit.
        ms: u64,
    },
    /// A load or store outside RAM and the emulated devices.
    OutsideDevices {
        /// The address.
        gpa: Gpa,
        /// Bytes.
        size: u8,
        /// A store.
        write: bool,
    },
    /// A trapped access the VMM cannot emulate.
    Unemulatable {
        /// The address.
        gpa: Gpa,
        /// Why.
        why: DecodeError,
    },
    /// An instruction fetch outside RAM.
    InstructionAbort {
        /// The address.
        gpa: Gpa,
    },
    /// A trapped system register access nobody emulates (ESR_EL2.EC = 0x18).
    SysReg {
        /// The register, Rt and direction, from the syndrome.
        access: crate::sysreg::SysRegAccess,
    },
    /// Another exception.
    Exception {
        /// ESR_EL2.EC.
        ec: u8,
        /// ESR_EL2.ISS.
        iss: u32,
        /// FAR_EL2.
        far: u64,
    },
    /// Changing the CPU stage 2 for a BAR failed.
    Stage2(MapListError),
    /// The host asked the VM to stop ([`crate::vm::VmmHost::stop_requested`]: the operator).
    Requested,
}

impl StopReason {
    /// A short name for records: `exit`, `system-off`, `time-limit`, `outside`, `unemulatable`,
    /// `instruction-abort`, `exception`, `stage2`, `requested`.
    pub const fn tag(&self) -> &'static str {
        match self {
            Self::Exited { .. } => "exit",
            Self::SystemOff => "system-off",
            Self::TimeLimit { .. } => "time-limit",
            Self::OutsideDevices { .. } => "outside",
            Self::Unemulatable { .. } => "unemulatable",
            Self::InstructionAbort { .. } => "instruction-abort",
            Self::SysReg { .. } => "sysreg",
            Self::Exception { .. } => "exception",
            Self::Stage2(_) => "stage2",
            Self::Requested => "requested",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited { status } => write!(f, "the guest exited with status {status}"),
            Self::SystemOff => f.write_str("the guest called PSCI SYSTEM_OFF"),
            Self::TimeLimit { ms } => write!(f, "the guest ran past its time limit of {ms} ms"),
            Self::OutsideDevices { gpa, size, write } => write!(
                f,
                "guest {} {size} bytes at GPA {gpa} outside its RAM and devices",
                if *write { "wrote" } else { "read" }
            ),
            Self::Unemulatable { gpa, why } => write!(f, "guest access at GPA {gpa}: {why}"),
            Self::InstructionAbort { gpa } => {
                write!(
                    f,
                    "guest fetched an instruction at GPA {gpa} outside its RAM"
                )
            }
            Self::SysReg { access } => write!(
                f,
                "trapped system register access nobody emulates: {access}"
            ),
            Self::Exception { ec, iss, far } => write!(
                f,
                "unexpected guest exception: EC {ec:#04x} ISS {iss:#09x} FAR {far:#018x}"
            ),
            Self::Stage2(e) => write!(f, "remapping a BAR: {e}"),
            Self::Requested => f.write_str("the host asked the VM to stop"),
        }
    }
}

/// What the vCPU loop does next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Enter the guest again.
    Resume,
    /// Give the CPU away, then enter the guest again.
    Yield,
    /// The guest is done.
    Stop(StopReason),
}

/// What [`Vm::finish`](crate::Vm::finish) found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Report {
    /// The guest's exit status (`QVM_EXIT`'s x1; 0 for SYSTEM_OFF), if it exited.
    pub exit_status: Option<u64>,
    /// Why it stopped (`None`: it never ran to a stop).
    pub stop: Option<StopReason>,
    /// Fault records read back and logged.
    pub faults: u64,
    /// Fault records the manager dropped because the ledger was full.
    pub dropped: u64,
    /// Times the IOMMU lost fault records that may have been the VM's (it cannot say whose:
    /// an SMMUv3 event queue overflow, a VT-d FSTS.PFO). 0: none of the VM's can be missing.
    pub possibly_lost: u64,
    /// Whether the guest's DMA was confined by smmuman.
    pub isolated: bool,
    /// Time slices that ended early because the guest reached a bound of what one slice may
    /// make the host do ([`crate::slice_work`]).
    pub throttled: u64,
    /// The manager refused a clean-up step (reading faults, destroying the object).
    pub cleanup_error: Option<CallError>,
}

/// One pass-through function of the VM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Device {
    /// Its host address.
    pub host: Bdf,
    /// Its address on the guest's bus.
    pub guest: Bdf,
    /// Its StreamID, when the manager knows it.
    pub sid: Option<StreamId>,
}
