//! qvm test guests: small bare-metal programs that run at EL1 with their MMU off, as a kernel
//! would, under qvm (`crates/qvm`, ABI in [`qvm::abi`]) or directly under QEMU `virt`.
//!
//! Each guest is one binary (`src/bin/`), a few lines that hand `rt::start` its `run`
//! function; the logic is here, safe, tested on the host (device tree, PCI, layout, bootargs)
//! and, whole, on plain QEMU `virt` by `tests-qemu/tests/guests.rs`:
//!
//! * [`driver`]: finds the `edu` by scanning PCI, DMAs both ways between its own RAM and the
//!   device with guest-physical addresses, checks the bytes;
//! * [`rogue`]: DMAs at the addresses its bootargs name (outside its RAM, another VM's
//!   host-physical RAM, the SMMU's registers) and says what it tried; the host judges;
//! * [`unity`]: a unity-mapped guest (GPA == HPA) that checks where it runs and tries one DMA;
//! * `looper` (binary only): prints one line and spins, for the VMM's time limit;
//! * [`cpu_state`]: `cpu-noisy` programs the PMU, debug, virtual-timer and GIC CPU-interface
//!   registers over and over, `cpu-check` checks it sees only its own values or reset values
//!   (the host's world switch keeps VMs apart).
//! * [`fairness`]: `worker` counts rounds of work, `flooder` floods its host with traps (the
//!   fairness test).
//!
//! Pieces: [`devtree`] (what the device tree says), [`pci`] (ECAM scan, BAR 0), [`edu`] (its
//! DMA engine), [`layout`] (where DMA buffers go), [`report`] (`CHECK` lines), [`bootargs`],
//! and the two seams [`phys::Phys`] (memory and registers by physical address) and
//! [`clock::Clock`]. `rt` (bare metal only) is the runtime: entry, exception vectors,
//! console, hypercalls, exit, panic handler; the one place with `unsafe`.

#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod bootargs;
pub mod clock;
pub mod cpu_state;
pub mod devtree;
pub mod driver;
pub mod edu;
pub mod fairness;
pub mod layout;
pub mod lifecycle;
pub mod pci;
pub mod phys;
pub mod report;
pub mod rogue;
pub mod unity;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod rt;

use core::fmt;

/// What a guest's `run` gets: its view of the machine.
pub struct Guest<'a> {
    /// Memory and registers by physical address (volatile accesses; the MMU is off).
    pub phys: &'a dyn phys::Phys,
    /// The generic timer, for timeouts.
    pub clock: &'a dyn clock::Clock,
    /// The console.
    pub out: &'a mut dyn fmt::Write,
    /// What the device tree says.
    pub dt: devtree::GuestInfo<'a>,
    /// The guest's own image (code, data, bss, stack): never a DMA buffer.
    pub image: layout::Range,
}

/// Where the guests are linked (set by build.rs): `qvm::abi::RAM_BASE` + 0x8_0000.
pub const LINK_BASE: &str = env!("QVM_GUEST_LINK_BASE");
/// Where the `unity` guest is linked (set by build.rs): its VM's host-physical RAM + 0x8_0000.
pub const UNITY_LINK_BASE: &str = env!("QVM_UNITY_LINK_BASE");

#[cfg(test)]
mod tests {
    #[test]
    fn guests_link_where_the_abi_puts_ram() {
        let base = u64::from_str_radix(super::LINK_BASE.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(base, qvm::abi::RAM_BASE + 0x8_0000);
        let unity =
            u64::from_str_radix(super::UNITY_LINK_BASE.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(unity, 0x5180_0000 + 0x8_0000);
    }
}
