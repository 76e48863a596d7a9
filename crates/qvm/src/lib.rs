//! qvm: a VMM library in the spirit of QNX's `qvm`. The host links it and runs one [`Vm`] per
//! VM its host plan names; each VM is an ordinary smmuman client.
//!
//! Layers (docs/architecture.md, "Host, VMM and guest"):
//! * the **host** (smmuman-daemon) boots at EL2, brings the IOMMU up, starts the manager, reads
//!   the host plan ([`plan`]) and gives each VM its RAM (the memory authority of the board
//!   config) and a vCPU ([`vcpu::Vcpu`], implemented by the host's world switch);
//! * the **VMM** (this crate) loads the guest image ([`elf`]), writes the guest's device tree
//!   ([`guest_dt`]), builds the CPU's stage 2 and sends the *same* GPA→HPA list
//!   ([`guest_map`]) to the manager through `smmuman-api`, emulates what the guest touches
//!   outside its RAM (the console, [`mmio`], and the PCI configuration space, [`vpci`]),
//!   answers hypercalls ([`abi`]) and, when the guest stops, quiesces its devices
//!   ([`quiesce`]: bus mastering off, FLR where offered), reads its device's faults back
//!   and logs them ([`vm`]); a trapped system register access nobody emulates stops the guest
//!   with the register named ([`sysreg`]);
//!   and logs them ([`vm`]), within what one time slice may make the host do
//!   ([`slice_work`]);
//! * the **guest** runs at EL1 with its MMU off and programs its pass-through device with
//!   guest-physical addresses.
//!
//! Everything here is safe Rust over small traits, tested on the host with a scripted vCPU.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod abi;
pub mod console;
pub mod elf;
pub mod fault_log;
pub mod gpa;
pub mod guest_dt;
pub mod guest_map;
pub mod guest_ram;
pub mod mmio;
pub mod outcome;
pub mod plan;
pub mod quiesce;
pub mod slice_work;
pub mod sysreg;
pub mod vcpu;
pub mod vm;
pub mod vpci;

pub use gpa::{Gpa, GpaRange};
pub use guest_ram::{GuestRam, OutsideRam, SliceRam};
pub use vm::{Action, Device, Report, Resources, RuleProblem, StartError, StopReason, Vm, VmmHost};
