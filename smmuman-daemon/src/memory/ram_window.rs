//! [`RamWindow`]: the one place that reads and writes RAM by physical address.
//!
//! The daemon's memory is identity mapped (VA = PA, with the MMU and data caches on, or with
//! the MMU off before `hyp/mmu.rs` turns it on), so a physical address is also the address the CPU
//! uses.
//! Every access is checked against the ranges the window was opened over (the allocator's pools)
//! and is volatile, because a DMA master or the SMMU reads and writes the same memory behind the
//! compiler's back. An access outside the window is a bug in the daemon (no external input
//! reaches these addresses unchecked), so it panics rather than corrupting memory.

use super::range::PhysRange;
use heapless::Vec;
use iommu_core::PhysAddr;

/// Most disjoint ranges a window covers.
pub const MAX_WINDOW_RANGES: usize = 8;

/// Checked volatile access to a set of physical RAM ranges.
#[derive(Debug)]
pub struct RamWindow {
    ranges: Vec<PhysRange, MAX_WINDOW_RANGES>,
    /// Added (wrapping) to a physical address to get the CPU address: 0 on bare metal.
    offset: usize,
}

impl RamWindow {
    /// A window over `ranges` of identity-mapped physical memory (VA = PA).
    ///
    /// Ranges beyond [`MAX_WINDOW_RANGES`] are left out of the window.
    ///
    /// # Safety
    /// Every byte of every range must be RAM that nothing else in the program reads or writes
    /// through a Rust reference while the window exists (the daemon's image, stacks and device
    /// tree must not be inside), and the CPU must reach it at its physical address.
    pub unsafe fn identity(ranges: &[PhysRange]) -> Self {
        // SAFETY: the caller's promise, with an offset of zero (identity map).
        unsafe { Self::with_offset(ranges, 0) }
    }

    /// A window whose CPU addresses are `physical + offset` (wrapping), e.g. a host buffer
    /// standing in for RAM in a test.
    ///
    /// # Safety
    /// For every byte of every range, `pa + offset` must be valid for reads and writes for as
    /// long as the window exists, and nothing else may access it through a Rust reference
    /// meanwhile.
    pub unsafe fn with_offset(ranges: &[PhysRange], offset: usize) -> Self {
        Self {
            ranges: ranges.iter().copied().take(MAX_WINDOW_RANGES).collect(),
            offset,
        }
    }

    /// The ranges this window covers.
    pub fn ranges(&self) -> &[PhysRange] {
        &self.ranges
    }

    /// Whether all of `[pa, pa + len)` is inside one range of the window.
    pub fn covers(&self, pa: PhysAddr, len: u64) -> bool {
        PhysRange::new(pa, len).is_some_and(|r| self.ranges.iter().any(|w| w.contains(r)))
    }

    /// The CPU address of `[pa, pa + len)`, after checking that it is inside the window and
    /// aligned to `align`.
    fn checked(&self, pa: PhysAddr, len: u64, align: u64) -> usize {
        assert!(
            pa.is_aligned(align),
            "RAM access at {pa} is not {align}-byte aligned"
        );
        assert!(
            self.covers(pa, len),
            "RAM access at {pa}+{len:#x} outside the RAM window"
        );
        (pa.0 as usize).wrapping_add(self.offset)
    }

    /// Reads the 64-bit word at `pa` (8-byte aligned).
    ///
    /// # Panics
    /// When `pa` is unaligned or outside the window (a bug in the caller).
    pub fn read_u64(&self, pa: PhysAddr) -> u64 {
        let va = self.checked(pa, 8, 8);
        // SAFETY: `checked` proved the word lies in the window, which `new` promised is valid
        // RAM not accessed through references; the address is 8-byte aligned.
        unsafe { core::ptr::read_volatile(va as *const u64) }
    }

    /// Writes the 64-bit word at `pa` (8-byte aligned) with one 64-bit store, so that an
    /// observer (the SMMU) never sees half of it.
    ///
    /// # Panics
    /// When `pa` is unaligned or outside the window (a bug in the caller).
    pub fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        let va = self.checked(pa, 8, 8);
        // SAFETY: as in `read_u64`; `&mut self` makes this the only writer through the window.
        unsafe { core::ptr::write_volatile(va as *mut u64, value) }
    }

    /// Reads the byte at `pa`.
    ///
    /// # Panics
    /// When `pa` is outside the window (a bug in the caller).
    pub fn read_u8(&self, pa: PhysAddr) -> u8 {
        let va = self.checked(pa, 1, 1);
        // SAFETY: `checked` proved the byte lies in the window, which is valid RAM.
        unsafe { core::ptr::read_volatile(va as *const u8) }
    }

    /// Writes the byte at `pa`.
    ///
    /// # Panics
    /// When `pa` is outside the window (a bug in the caller).
    pub fn write_u8(&mut self, pa: PhysAddr, value: u8) {
        let va = self.checked(pa, 1, 1);
        // SAFETY: `checked` proved the byte lies in the window, which is valid RAM.
        unsafe { core::ptr::write_volatile(va as *mut u8, value) }
    }

    /// Zeroes `range` (page aligned) with 64-bit stores.
    ///
    /// # Panics
    /// When the range is not 8-byte aligned or not inside the window (a bug in the caller).
    pub fn zero(&mut self, range: PhysRange) {
        let va = self.checked(range.start(), range.size(), 8);
        assert!(
            range.size().is_multiple_of(8),
            "zeroing {range}: size not a multiple of 8"
        );
        for i in 0..(range.size() / 8) as usize {
            // SAFETY: `checked` proved all of `range` lies in the window; `va` is 8-byte
            // aligned and `i * 8 < range.size()`.
            unsafe { core::ptr::write_volatile((va as *mut u64).add(i), 0) }
        }
    }

    /// Makes the bytes `[pa, pa + len)` the CPU wrote visible to a device that does not snoop
    /// the CPU caches (a non-coherent SMMU), and waits until that is done: `DC CVAC` (clean by
    /// address to the point of coherency, Arm ARM C5.3) over every data-cache line the range
    /// touches, then `DSB SY`. The line size is read from CTR_EL0.DminLine, the smallest data
    /// cache line of any cache the maintenance reaches, so stepping by it never skips a line.
    /// On the host (tests) it is a fence.
    ///
    /// # Panics
    /// When the range is not inside the window (a bug in the caller).
    pub fn sync_for_device(&self, pa: PhysAddr, len: u64) {
        self.each_line(pa, len, |_va| {
            #[cfg(target_arch = "aarch64")]
            // SAFETY: DC CVAC writes the line holding `va` back to memory if it is dirty and
            // changes no value a program can observe; `each_line` proved the range lies in RAM
            // this window owns.
            unsafe {
                core::arch::asm!("dc cvac, {va}", va = in(reg) _va, options(nostack, preserves_flags));
            }
        });
    }

    /// Makes what a device that does not snoop the CPU caches (a non-coherent SMMU's event
    /// records) wrote to `[pa, pa + len)` visible to the CPU's next reads, and waits until that
    /// is done: `DC CIVAC` (clean and invalidate by address to the point of coherency, Arm ARM
    /// C5.3) over every data-cache line the range touches, stepping by CTR_EL0.DminLine as
    /// [`RamWindow::sync_for_device`] does, then `DSB SY` so that the invalidation has
    /// completed before any later read. On the host (tests) it is a fence.
    ///
    /// Why `DC CIVAC` and not `DC IVAC` (invalidate only): on a line the CPU has dirtied,
    /// `DC IVAC` throws the CPU's writes away, including writes to bytes outside the range
    /// that merely share its first or last line, and nothing would say so. `DC CIVAC` writes
    /// such a line back first, so no CPU write is ever lost; on a clean line the two do the
    /// same thing. The event queue's lines are never dirty when this runs: the SMMU alone
    /// writes the slots, and the zeroing at allocation was cleaned right after it (the driver
    /// cleans every write on a non-coherent SMMU), so here the choice costs nothing and
    /// `DC CIVAC` is simply the one that stays safe for any other caller.
    ///
    /// # Panics
    /// When the range is not inside the window (a bug in the caller).
    pub fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.each_line(pa, len, |_va| {
            #[cfg(target_arch = "aarch64")]
            // SAFETY: DC CIVAC writes the line holding `va` back to memory if it is dirty and
            // then drops the CPU's copy, so the next read fetches memory's; it loses no CPU
            // write and changes no value other than what a device wrote there. The asm is not
            // `nomem`, so the compiler keeps the (volatile) reads of the range after it.
            // `each_line` proved the range lies in RAM this window owns.
            unsafe {
                core::arch::asm!("dc civac, {va}", va = in(reg) _va, options(nostack, preserves_flags));
            }
        });
    }

    /// Runs `maintain` on the address of every data-cache line `[pa, pa + len)` touches
    /// (stepping by CTR_EL0.DminLine), then `DSB SY` so that it has completed; on the host a
    /// fence. Panics when the range is not inside the window (a bug in the caller).
    fn each_line(&self, pa: PhysAddr, len: u64, maintain: impl Fn(usize)) {
        if len == 0 {
            return;
        }
        let start = self.checked(pa, len, 1);
        #[cfg(target_arch = "aarch64")]
        {
            let line = dcache_line_bytes();
            let end = start.wrapping_add(len as usize);
            let mut va = start & !(line - 1);
            while va < end {
                maintain(va);
                va += line;
            }
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            let _ = (start, &maintain);
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Makes every earlier write to RAM visible to other observers (the SMMU's table walker and
    /// DMA masters) before any later access, MMIO included: `DSB SY` (Arm ARM B2.3.12).
    pub fn publish(&self) {
        #[cfg(target_arch = "aarch64")]
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
        #[cfg(not(target_arch = "aarch64"))]
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// The smallest data cache line in bytes: 4 << CTR_EL0.DminLine (bits [19:16], log2 of the
/// line size in 4-byte words; Arm ARM D23.2 CTR_EL0).
#[cfg(target_arch = "aarch64")]
fn dcache_line_bytes() -> usize {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effect and is permitted at EL1 and EL2.
    unsafe {
        core::arch::asm!("mrs {ctr}, ctr_el0", ctr = out(reg) ctr, options(nomem, nostack, preserves_flags));
    }
    4 << ((ctr >> 16) & 0xf)
}

#[cfg(test)]
pub(crate) mod host {
    //! A host buffer standing in for physical RAM.

    use super::*;

    /// Host memory pretending to live at `base`.
    pub struct HostRam {
        words: std::vec::Vec<u64>,
        base: PhysAddr,
    }

    impl HostRam {
        /// `size` bytes (a multiple of 8) of zeroed memory at `base`.
        pub fn new(base: PhysAddr, size: u64) -> Self {
            Self {
                words: vec![0; (size / 8) as usize],
                base,
            }
        }

        /// A window over `ranges`, which must lie inside this memory.
        pub fn window(&mut self, ranges: &[PhysRange]) -> RamWindow {
            let size = self.words.len() as u64 * 8;
            let all = PhysRange::new(self.base, size).unwrap();
            assert!(ranges.iter().all(|r| all.contains(*r)));
            let offset = (self.words.as_mut_ptr() as usize).wrapping_sub(self.base.0 as usize);
            // SAFETY: the ranges lie inside `words`, which the test keeps alive (and does not
            // otherwise touch) for as long as it uses the window.
            unsafe { RamWindow::with_offset(ranges, offset) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host::HostRam;
    use super::*;

    fn r(start: u64, size: u64) -> PhysRange {
        PhysRange::new(PhysAddr(start), size).unwrap()
    }

    #[test]
    fn words_and_bytes_round_trip_little_endian() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x2000);
        let mut w = ram.window(&[r(0x4000_1000, 0x1000)]);
        w.write_u64(PhysAddr(0x4000_1008), 0x1122_3344_5566_7788);
        assert_eq!(w.read_u64(PhysAddr(0x4000_1008)), 0x1122_3344_5566_7788);
        assert_eq!(w.read_u8(PhysAddr(0x4000_1008)), 0x88);
        w.write_u8(PhysAddr(0x4000_100f), 0xaa);
        assert_eq!(w.read_u64(PhysAddr(0x4000_1008)), 0xaa22_3344_5566_7788);
        w.zero(r(0x4000_1000, 0x1000));
        assert_eq!(w.read_u64(PhysAddr(0x4000_1008)), 0);
    }

    #[test]
    #[should_panic(expected = "outside the RAM window")]
    fn access_outside_the_window_is_caught() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x2000);
        let w = ram.window(&[r(0x4000_1000, 0x1000)]);
        w.read_u64(PhysAddr(0x4000_0ff8));
    }

    #[test]
    #[should_panic(expected = "outside the RAM window")]
    fn access_straddling_the_window_end_is_caught() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x2000);
        let mut w = ram.window(&[r(0x4000_0000, 0x1000)]);
        w.zero(r(0x4000_0000, 0x2000));
    }

    #[test]
    fn sync_for_device_accepts_any_range_inside_the_window() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x2000);
        let w = ram.window(&[r(0x4000_1000, 0x1000)]);
        w.sync_for_device(PhysAddr(0x4000_1004), 3);
        w.sync_for_device(PhysAddr(0x4000_1000), 0x1000);
        w.sync_for_device(PhysAddr(0x4000_0000), 0);
    }

    #[test]
    fn sync_for_cpu_accepts_any_range_inside_the_window_and_keeps_the_data() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x2000);
        let mut w = ram.window(&[r(0x4000_1000, 0x1000)]);
        w.write_u64(PhysAddr(0x4000_1020), 0x1234);
        w.sync_for_cpu(PhysAddr(0x4000_1020), 32);
        w.sync_for_cpu(PhysAddr(0x4000_1004), 3);
        w.sync_for_cpu(PhysAddr(0x4000_1000), 0x1000);
        w.sync_for_cpu(PhysAddr(0x4000_0000), 0);
        assert_eq!(w.read_u64(PhysAddr(0x4000_1020)), 0x1234);
    }

    #[test]
    #[should_panic(expected = "outside the RAM window")]
    fn sync_for_cpu_outside_the_window_is_caught() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x2000);
        let mut w = ram.window(&[r(0x4000_1000, 0x1000)]);
        w.sync_for_cpu(PhysAddr(0x4000_1fe0), 0x40);
    }

    #[test]
    #[should_panic(expected = "outside the RAM window")]
    fn sync_for_device_outside_the_window_is_caught() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x2000);
        let w = ram.window(&[r(0x4000_1000, 0x1000)]);
        w.sync_for_device(PhysAddr(0x4000_0fc0), 0x80);
    }

    #[test]
    #[should_panic(expected = "not 8-byte aligned")]
    fn unaligned_word_access_is_caught() {
        let mut ram = HostRam::new(PhysAddr(0x4000_0000), 0x1000);
        let w = ram.window(&[r(0x4000_0000, 0x1000)]);
        w.read_u64(PhysAddr(0x4000_0004));
    }
}
