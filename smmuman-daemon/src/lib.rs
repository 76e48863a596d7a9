//! The platform of the smmuman daemon: everything it needs from the board before it can manage
//! an SMMU, written so that the logic runs in host tests.
//!
//! * [`address_map`]: what the CPU's EL2 identity map covers (RAM normal, registers device).
//! * [`board`]: what the device tree says about RAM, the console, the SMMUv3 and the PCIe host
//!   bridge, and how a PCI requester ID maps to a StreamID ([`board::BoardInfo::sid_for`]).
//! * [`bootargs`]: `/chosen/bootargs` (`scenario=<name> st=linear|2level log=<level>`).
//! * [`memory`]: the physical memory plan, the frame allocators, and the one module that touches
//!   RAM by physical address ([`memory::ram_window`]); [`memory::DaemonMemory`] implements
//!   [`iommu_core::DmaMemory`] for the SMMU's tables and queues.
//! * [`mmio`]: the MMIO access trait and its volatile implementation.
//! * [`pci`]: ECAM configuration access, enumeration and BAR assignment.
//! * [`edu`]: the QEMU `edu` device as a DMA master.
//! * [`pl011`], [`console`]: the serial console and the `log` backend.
//! * [`mailbox`]: the message channel between a client (VMM) and the manager.
//! * [`gic`]: the GICv3 distributor and redistributor the SMMU's wired interrupts go through.
//! * [`esr`]: decoding of exception syndromes for the crash report.
//! * [`guest_exit`]: the EL2 register values for running a guest and the decoding of its exits.
//! * [`guest_sysreg`]: what the world switch answers for a guest's trapped system register
//!   accesses (ID registers, PMU, debug, RAS, set/way).
//! * [`report`], [`scenario`]: machine-readable result lines and the scenario registry.
//! * [`clock`]: the time source bounded waits use.
//!
//! On the board (`aarch64-unknown-none`, feature `bare`) the library also holds the daemon
//! itself, in folders named for what they hold:
//!
//! * `arch`: the boot entry (`arch/aarch64/boot.rs`) and semihosting.
//! * [`hyp`]: the EL2 hypervisor: the world switch (`hyp/world_switch.rs`), the EL2 MMU,
//!   the exception vectors, interrupt routing (GICv3), the client tasks' context switch.
//! * `bringup`: from the device tree to a discovered `bringup::platform::Platform`: the
//!   SMMU's bring-up, a refused start.
//! * [`manager_task`]: the manager's start-up over the SMMU and its service loop.
//! * [`host`]: the host loop: the host plan's VMs, one VMM task each; its stage-2 check.
//! * `failsafe`: every way out leaves every SMMU aborting.
//! * `runtime`: console, clock, heap, the panic handler and the one exit.
//!
//! The images are thin shims over it: the product (`src/main.rs`: bring-up, then the host
//! plan) and the test image (`scenarios/main.rs`, feature `scenarios`: the test scenarios).
//! The hooks only the test image sets exist only with the `scenarios` feature.

#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod address_map;
pub mod board;
pub mod bootargs;
pub mod clock;
pub mod console;
pub mod edu;
pub mod esr;
pub mod exit_code;
pub mod gic;
pub mod guest_exit;
pub mod guest_sysreg;
pub mod initrd;
pub mod mailbox;
pub mod memory;
pub mod mmio;
pub mod operator;
pub mod pci;
pub mod pl011;
pub mod report;
pub mod scenario;

#[cfg(test)]
mod fake_mmio;

pub mod arch;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod bringup;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod failsafe;
pub mod host;
pub mod hyp;
pub mod manager_task;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod runtime;
