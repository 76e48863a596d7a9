//! The host-testable half of smmuman's x86-64 image (QEMU `q35` + `intel-iommu`): what the
//! firmware hands over, parsed and checked before anything trusts it.
//!
//! * [`phys`]: the [`phys::PhysRead`] seam every parser reads physical memory through (the
//!   identity map on the board, a byte vector in tests), with bounds checked by the reader.
//! * [`pvh`]: the Xen PVH `hvm_start_info` (magic, version, command line, RSDP, memory map).
//! * [`acpi`]: RSDP (both checksums), RSDT/XSDT, and the tables the image needs: MCFG (PCI
//!   ECAM), HPET (its clock) and the DMAR table, copied and checked by `vtd::dmar`.
//! * [`remapping`]: what a remapping unit looks after: the PCI functions `Dmar::unit_for` puts
//!   behind it, its RMRRs (identity-mapped for the devices they name, reserved for the manager).
//! * [`topology`]: the DMAR as board-config's firmware view, combined with `smmuman.conf`.
//! * [`msi`]: the MSI address/data a VT-d fault event is programmed with (Intel SDM §11.11).
//! * [`direct`]: the synchronous transport the image's clients reach the manager through.
//!
//! Every parser returns typed errors naming the table and byte offset; none panics on input
//! (the tests feed them corrupt tables).
//!
//! The bare-metal binary (`src/bin/smmuman-daemon-x86`, feature `bare`) adds the PVH entry,
//! the 32→64-bit trampoline, the 16550 console, the IDT, the HPET clock, the DMA pool and the
//! VT-d scenarios.

#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod acpi;
pub mod direct;
pub mod msi;
pub mod phys;
pub mod pvh;
pub mod remapping;
pub mod topology;
