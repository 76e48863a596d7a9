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
//! The binary (`src/bin/smmuman-daemon`, feature `bare`) adds boot code, exception vectors and the
//! panic handler, and wires these pieces together.

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
pub mod pci;
pub mod pl011;
pub mod report;
pub mod scenario;

#[cfg(test)]
mod fake_mmio;
