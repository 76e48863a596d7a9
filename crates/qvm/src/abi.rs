//! The guest ABI: what a guest finds when it starts and how it talks to its VMM. Guests
//! (`tests-qemu/guests`) and the VMM both use these constants; docs/guest-abi.md explains them.
//!
//! # Guest-physical address map
//! | range | what | how |
//! |---|---|---|
//! | [`UART_BASE`] + 4 KiB | console, a PL011 subset | trapped, emulated ([`UART_DR`], [`UART_FR`]) |
//! | [`PCI_MMIO_BASE`] + [`PCI_MMIO_SIZE`] | PCI memory window (CPU address = PCI address) | the pass-through BARs, mapped in the CPU stage 2 as Device-nGnRE |
//! | [`ECAM_BASE`] + [`ECAM_SIZE`] | PCI configuration space, bus 0 only | trapped, emulated: the VMM's virtual host bridge |
//! | [`RAM_BASE`] + plan size | RAM (a unity VM's RAM sits at its host-physical address instead) | mapped read/write/execute in the CPU stage 2 and read/write in the SMMU |
//!
//! # Entry
//! The VMM loads the guest ELF's `PT_LOAD` segments at their physical addresses (all inside
//! RAM), writes the device tree at the top of RAM ([`DTB_MAX`] bytes below its end, also listed
//! as `/memreserve/`), and enters at `e_entry` at EL1h with x0 = the device tree's address,
//! x1..x3 = 0, DAIF masked, SCTLR_EL1 at its reset value (MMU and caches off), as the Linux
//! arm64 boot protocol does.
//!
//! # Hypercalls
//! `HVC #0` with an SMCCC function id in w0 (SMC Calling Convention, Arm DEN 0028, §2.5: bit 31
//! fast call, bit 30 SMC64, bits \[29:24\] the owning entity, 4 = standard secure (PSCI),
//! 6 = vendor-specific hypervisor service). The result comes back in x0.

/// Guest-physical base of the console page (a PL011 subset, Arm DDI 0183).
pub const UART_BASE: u64 = 0x0900_0000;
/// UARTDR, the data register (PL011 TRM §3.3.1): a write sends its low byte.
pub const UART_DR: u64 = 0x000;
/// UARTFR, the flag register (PL011 TRM §3.3.3): reads as TXFE | RXFE (never busy, never full).
pub const UART_FR: u64 = 0x018;
/// UARTFR's value: TXFE (bit 7) | RXFE (bit 4).
pub const UART_FR_IDLE: u32 = (1 << 7) | (1 << 4);

/// Guest-physical base of the PCI memory window the guest's BARs live in.
pub const PCI_MMIO_BASE: u64 = 0x1000_0000;
/// Size of the PCI memory window.
pub const PCI_MMIO_SIZE: u64 = 0x1000_0000;
/// Guest-physical base of the emulated ECAM (PCIe Base Specification §7.2.2: bus << 20 |
/// device << 15 | function << 12 | register).
pub const ECAM_BASE: u64 = 0x3000_0000;
/// One bus of ECAM: 32 devices × 8 functions × 4 KiB.
pub const ECAM_SIZE: u64 = 1 << 20;
/// Guest-physical base of RAM for a VM that is not unity-mapped.
pub const RAM_BASE: u64 = 0x4000_0000;
/// The device tree's room at the top of RAM.
pub const DTB_MAX: u64 = 64 << 10;

/// `HVC` immediate the VMM answers; others return [`RET_NOT_SUPPORTED`].
pub const HVC_IMM: u16 = 0;
/// PSCI_VERSION (Arm DEN 0022, §5.1.1): returns [`PSCI_VERSION_1_0`].
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// Major 1, minor 0.
pub const PSCI_VERSION_1_0: u64 = 0x0001_0000;
/// PSCI SYSTEM_OFF (DEN 0022 §5.10): the guest stops; its exit status counts as 0.
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
/// qvm vendor call: write `x2` bytes (at most [`CONSOLE_WRITE_MAX`]) from guest-physical `x1`
/// to the console. Returns the bytes written, or [`RET_INVALID_PARAMETER`] when the buffer is
/// not inside the guest's RAM or too long.
pub const QVM_CONSOLE_WRITE: u32 = 0xc600_0001;
/// qvm vendor call: the guest is done; `x1` is its exit status (0 = every check passed).
pub const QVM_EXIT: u32 = 0xc600_0002;
/// Longest [`QVM_CONSOLE_WRITE`].
pub const CONSOLE_WRITE_MAX: u64 = 256;
/// SMCCC NOT_SUPPORTED (DEN 0028 §5.2), as a 64-bit value in x0.
pub const RET_NOT_SUPPORTED: u64 = -1i64 as u64;
/// SMCCC INVALID_PARAMETER (DEN 0028 §5.2; PSCI's value too).
pub const RET_INVALID_PARAMETER: u64 = -2i64 as u64;

/// Guest console lines that carry a check, parsed by the tests: `CHECK name=<step> ok=0|1 ...`.
pub const CHECK_PREFIX: &str = "CHECK ";
