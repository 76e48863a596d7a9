//! Exit codes the daemon reports to QEMU (through semihosting) and therefore to the test harness.

/// The scenario passed.
pub const PASS: u32 = 0;
/// The scenario ran and failed.
pub const FAIL: u32 = 1;
/// The boot arguments named an unknown scenario or were malformed.
pub const BAD_BOOTARGS: u32 = 2;
/// An unexpected exception was taken.
pub const EXCEPTION: u32 = 3;
/// The boot environment was unusable: wrong exception level, no or malformed device tree,
/// unusable memory layout, PCI enumeration failure.
pub const BAD_BOARD: u32 = 4;
/// The daemon panicked.
pub const PANIC: u32 = 101;
