//! [`Pool`]: the memory the remapping unit and `edu` reach by DMA (VT-d tables, the
//! invalidation queue, DMA buffers): a static, 2 MiB-aligned region of the image, handed out by
//! a bump allocator, reached through the identity map (IOVA tests use physical = virtual).
//!
//! # Non-coherent table walks (VT-d §6.8, ECAP.C)
//! With ECAP.C = 0 the unit's table walks do not snoop the CPU caches, so a table entry the CPU
//! wrote must reach memory before the unit is told to look: [`DmaMemory::sync_for_device`]
//! writes back every cache line of the range with `CLFLUSH` and then `MFENCE`s.
//!
//! `CLFLUSH` rather than `CLFLUSHOPT`: `CLFLUSH` is in every x86-64 CPU (CPUID.01H:EDX.CLFSH,
//! part of the SSE2 baseline), `CLFLUSHOPT` needs CPUID.(EAX=07H,ECX=0):EBX\[23\] (QEMU's default
//! `qemu64` model lacks it) and is only faster for long ranges because its flushes are not
//! ordered with each other; the driver flushes a few lines per table change. Both are ordered
//! with later stores only by a fence (SDM Vol. 2A "CLFLUSH"/"CLFLUSHOPT"): the `MFENCE` makes
//! the write-backs complete before the MMIO write that tells the unit to re-read memory
//! (invalidation-queue tail, GCMD).
//!
//! [`DmaMemory::sync_for_cpu`] flushes too (the line is then re-read from memory): the unit's
//! inbound writes (invalidation wait status) are snooped on x86, so this is belt and braces.

use core::cell::UnsafeCell;
use iommu_core::{DmaMemory, OutOfMemory, PhysAddr};

/// Bytes in the pool.
pub const POOL_BYTES: usize = 16 << 20;

#[repr(C, align(2097152))]
struct Region(UnsafeCell<[u8; POOL_BYTES]>);

// SAFETY: the region is only reached through the one `Pool`, which `take` hands out once.
unsafe impl Sync for Region {}

static REGION: Region = Region(UnsafeCell::new([0; POOL_BYTES]));
static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The DMA pool (a bump allocator; `free` keeps nothing: the scenarios allocate a bounded,
/// small amount).
pub struct Pool {
    base: u64,
    next: u64,
    line: u64,
}

impl Pool {
    /// The pool; `None` after the first call.
    pub fn take() -> Option<Self> {
        if TAKEN.swap(true, core::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let base = REGION.0.get() as u64;
        Some(Self {
            base,
            next: base,
            line: clflush_line(),
        })
    }

    /// Whether `[pa, pa + len)` lies in the pool.
    fn owns(&self, pa: u64, len: u64) -> bool {
        pa >= self.base && pa.saturating_add(len) <= self.base + POOL_BYTES as u64
    }

    /// Fills `[pa, pa + len)` with `byte` (a DMA buffer the scenario owns).
    pub fn fill(&mut self, pa: PhysAddr, len: u64, byte: u8) {
        assert!(self.owns(pa.0, len), "fill outside the DMA pool");
        // SAFETY: the range lies in the pool (checked), which this value owns exclusively.
        unsafe { core::ptr::write_bytes(pa.0 as *mut u8, byte, len as usize) }
    }

    /// Counts the bytes of `[pa, pa + len)` equal to `byte`.
    pub fn count(&self, pa: PhysAddr, len: u64, byte: u8) -> u64 {
        assert!(self.owns(pa.0, len), "read outside the DMA pool");
        (0..len)
            // SAFETY: in the pool (checked); volatile because a device writes it by DMA.
            .filter(|i| unsafe { core::ptr::read_volatile((pa.0 + i) as *const u8) } == byte)
            .count() as u64
    }
}

/// CPUID.01H:EBX\[15:8\] × 8: the CLFLUSH line size (SDM Vol. 2A "CPUID").
fn clflush_line() -> u64 {
    // SAFETY: CPUID leaf 1 exists on every x86-64 CPU.
    #[allow(unused_unsafe)]
    let r = unsafe { core::arch::x86_64::__cpuid(1) };
    let line = u64::from((r.ebx >> 8) & 0xff) * 8;
    if line == 0 {
        64
    } else {
        line
    }
}

impl DmaMemory for Pool {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        let align = (align.max(4096)) as u64;
        let size64 = (size as u64).next_multiple_of(4096);
        let start = self.next.next_multiple_of(align);
        let end = start.checked_add(size64).ok_or(OutOfMemory { size })?;
        if end > self.base + POOL_BYTES as u64 {
            return Err(OutOfMemory { size });
        }
        self.next = end;
        // SAFETY: `[start, end)` lies in the pool, which this value owns; nothing else holds it.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, size64 as usize) }
        Ok(PhysAddr(start))
    }

    fn free(&mut self, _pa: PhysAddr, _size: usize) {}

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        assert!(
            self.owns(pa.0, 8) && pa.0.is_multiple_of(8),
            "DMA read outside the pool"
        );
        // SAFETY: an aligned word in the pool (checked).
        unsafe { core::ptr::read_volatile(pa.0 as *const u64) }
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        assert!(
            self.owns(pa.0, 8) && pa.0.is_multiple_of(8),
            "DMA write outside the pool"
        );
        // SAFETY: an aligned word in the pool (checked); an aligned 64-bit store is atomic
        // (SDM Vol. 3A §10.1.1), so the unit never sees half an entry.
        unsafe { core::ptr::write_volatile(pa.0 as *mut u64, value) }
    }

    fn publish(&mut self) {
        // SAFETY: a fence has no memory-safety effect.
        unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) }
    }

    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        self.flush(pa.0, len);
    }

    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.flush(pa.0, len);
    }
}

impl Pool {
    fn flush(&self, pa: u64, len: u64) {
        flush_lines(pa, len, self.line);
    }
}

/// Writes `[pa, pa + len)` back to memory (`CLFLUSH` each line, then `MFENCE`): what a
/// non-snooping table walk (ECAP.C = 0) needs before the unit is told to look. For the
/// fail-safe's empty root table, which no [`Pool`] holds.
pub fn flush(pa: u64, len: u64) {
    flush_lines(pa, len, clflush_line());
}

fn flush_lines(pa: u64, len: u64, line: u64) {
    let start = pa & !(line - 1);
    let end = pa.saturating_add(len);
    let mut at = start;
    while at < end {
        // SAFETY: CLFLUSH of an address in the identity map writes back and invalidates its
        // line; it changes no memory contents.
        unsafe { core::arch::asm!("clflush [{}]", in(reg) at, options(nostack, preserves_flags)) }
        at += line;
    }
    // SAFETY: a fence has no memory-safety effect.
    unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) }
}

/// The word the fail-safe's queued wait descriptor writes its status to.
#[repr(C, align(64))]
struct StatusWord(UnsafeCell<u64>);

// SAFETY: only the fail-safe (`QueueWords`, one unit at a time) writes and reads it.
unsafe impl Sync for StatusWord {}

static STATUS: StatusWord = StatusWord(UnsafeCell::new(0));

/// Word access to the DMA pool (where the driver put every invalidation queue) and a status
/// word of its own, lent to [`vtd::block_all_dma`] for a queue that will not turn off. Any
/// other address is refused, whatever IQA_REG says.
pub struct QueueWords;

impl QueueWords {
    fn allowed(pa: PhysAddr) -> bool {
        let base = REGION.0.get() as u64;
        pa.0.is_multiple_of(8)
            && ((pa.0 >= base && pa.0 + 8 <= base + POOL_BYTES as u64)
                || pa.0 == STATUS.0.get() as u64)
    }
}

impl vtd::QueueAccess for QueueWords {
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> bool {
        if !Self::allowed(pa) {
            return false;
        }
        // SAFETY: an aligned word of the pool or the status word (checked). The fail-safe
        // runs only once the code that owned the pool failed or finished and never runs again.
        unsafe { core::ptr::write_volatile(pa.0 as *mut u64, value) }
        flush(pa.0, 8);
        true
    }

    fn read_u64(&mut self, pa: PhysAddr) -> Option<u64> {
        if !Self::allowed(pa) {
            return None;
        }
        flush(pa.0, 8);
        // SAFETY: as in `write_u64`; volatile because the unit writes it.
        Some(unsafe { core::ptr::read_volatile(pa.0 as *const u64) })
    }

    fn status_word(&self) -> PhysAddr {
        PhysAddr(STATUS.0.get() as u64)
    }
}
