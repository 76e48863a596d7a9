//! The seam between guest logic and the machine: loads and stores at physical addresses.
//!
//! A guest runs with its MMU off (SCTLR_EL1.M = 0), so every data access is to a physical
//! address and is treated as Device-nGnRnE (Arm ARM DDI 0487, D8.2.11 "The effects of disabling
//! an address translation stage"): RAM and registers alike are read and written with single,
//! naturally aligned volatile accesses. The bare-metal implementation is `rt::Volatile`; host
//! tests use a fake machine.

/// Single-copy-atomic, naturally aligned accesses at physical addresses.
pub trait Phys {
    /// Reads one byte.
    fn read8(&self, pa: u64) -> u8;
    /// Writes one byte.
    fn write8(&self, pa: u64, value: u8);
    /// Reads a 32-bit word (`pa` 4-byte aligned).
    fn read32(&self, pa: u64) -> u32;
    /// Writes a 32-bit word (`pa` 4-byte aligned).
    fn write32(&self, pa: u64, value: u32);
    /// Reads a 64-bit word (`pa` 8-byte aligned).
    fn read64(&self, pa: u64) -> u64;
    /// Writes a 64-bit word (`pa` 8-byte aligned).
    fn write64(&self, pa: u64, value: u64);
}
