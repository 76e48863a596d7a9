//! Device register access: the [`Mmio`] trait drivers are written against, and [`MmioRegion`],
//! its volatile implementation over a physical register window.
//!
//! Every register block the daemon reaches is mapped Device-nGnRE, execute-never, in the EL2
//! identity map (`crate::address_map`; before the MMU is on, every access is Device-nGnRnE):
//! no merging, no speculation, accesses to one device in program order (Arm ARM B2.7.2).

use iommu_core::PhysAddr;

/// A block of device registers, addressed by byte offset.
///
/// Implementations decide what an offset outside the block means; [`MmioRegion`] treats it as a
/// driver bug and panics. Drivers only use offsets from their register map.
pub trait Mmio {
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, offset: usize, value: u32);
    /// Reads the 64-bit register at `offset` with one 64-bit access.
    fn read64(&self, offset: usize) -> u64;
    /// Writes the 64-bit register at `offset` with one 64-bit access.
    fn write64(&mut self, offset: usize, value: u64);
}

/// A window of device registers at a physical address, accessed with volatile loads and stores.
#[derive(Debug)]
pub struct MmioRegion {
    base: PhysAddr,
    size: u64,
}

// SAFETY: an `MmioRegion` is the exclusive handle on its registers (the promise of `new`); moving
// it to another context moves that exclusivity with it.
unsafe impl Send for MmioRegion {}

impl MmioRegion {
    /// The registers `[base, base + size)`.
    ///
    /// # Safety
    /// The range must be device registers (not RAM the program uses) that the CPU reaches at
    /// their physical address, and no other live `MmioRegion` or driver may access them: the
    /// caller hands exclusive ownership of the device to the returned value.
    pub const unsafe fn new(base: PhysAddr, size: u64) -> Self {
        Self { base, size }
    }

    /// Physical address of the first register.
    pub fn base(&self) -> PhysAddr {
        self.base
    }

    /// Size of the window in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The CPU address of an access of `width` bytes at `offset`, after checking it lies in
    /// the window and is naturally aligned.
    fn addr(&self, offset: usize, width: usize) -> usize {
        let end = offset.checked_add(width);
        assert!(
            end.is_some_and(|e| e as u64 <= self.size) && offset.is_multiple_of(width),
            "MMIO access of {width} bytes at offset {offset:#x} outside or misaligned in {}+{:#x}",
            self.base,
            self.size
        );
        self.base.0 as usize + offset
    }

    /// Reads the 16-bit register at `offset`.
    pub fn read16(&self, offset: usize) -> u16 {
        let a = self.addr(offset, 2);
        // SAFETY: `addr` checked the access lies in the window `new` made us the owner of.
        unsafe { core::ptr::read_volatile(a as *const u16) }
    }

    /// Writes the 16-bit register at `offset`.
    pub fn write16(&mut self, offset: usize, value: u16) {
        let a = self.addr(offset, 2);
        // SAFETY: `addr` checked the access lies in the window `new` made us the owner of.
        unsafe { core::ptr::write_volatile(a as *mut u16, value) }
    }
}

impl Mmio for MmioRegion {
    fn read32(&self, offset: usize) -> u32 {
        let a = self.addr(offset, 4);
        // SAFETY: `addr` checked the access lies in the window `new` made us the owner of.
        unsafe { core::ptr::read_volatile(a as *const u32) }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        let a = self.addr(offset, 4);
        // SAFETY: `addr` checked the access lies in the window `new` made us the owner of.
        unsafe { core::ptr::write_volatile(a as *mut u32, value) }
    }

    fn read64(&self, offset: usize) -> u64 {
        let a = self.addr(offset, 8);
        // SAFETY: `addr` checked the access lies in the window `new` made us the owner of.
        unsafe { core::ptr::read_volatile(a as *const u64) }
    }

    fn write64(&mut self, offset: usize, value: u64) {
        let a = self.addr(offset, 8);
        // SAFETY: `addr` checked the access lies in the window `new` made us the owner of.
        unsafe { core::ptr::write_volatile(a as *mut u64, value) }
    }
}
