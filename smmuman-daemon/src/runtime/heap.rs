//! The daemon's heap: the manager's mappings and host-memory ownership index live in it
//! (`smmuman-server` keeps them in B-trees, `alloc`).
//!
//! Why a heap and not an arena of fixed records: a B-tree gives the manager O(log n) map,
//! unmap and ownership checks at any number of mappings, and `alloc`'s B-tree is the well-
//! tested one; what a safety-minded user needs is that the worst case is known at boot, and it
//! is: the heap is one block carved from the daemon pool at start-up, sized from the board
//! config's `mappings` (the manager's quota in all VMs) at `MAPPING_BYTES` a mapping
//! (`smmuman_server::config`; a host test measures the real cost) plus [`FIXED_BYTES`]. The allocator is `talc`
//! (a well-kept `no_std` allocator: constant-time bins, no fragmentation trouble at this fill)
//! behind a spin lock.
//!
//! Exhaustion cannot happen below the quota; were it to happen anyway, `alloc` calls the
//! allocation-error handler, which panics, and the panic path leaves every SMMU aborting.

use crate::bringup::platform::Platform;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use talc::{ErrOnOom, Span, Talc};

/// Heap for what is not per mapping (B-tree roots, the odd vector).
pub const FIXED_BYTES: u64 = 1 << 20;

/// The heap `mappings` need, rounded up to 2 MiB.
pub fn bytes_for(mappings: u32) -> u64 {
    let need = u64::from(mappings) * smmuman_server::config::MAPPING_BYTES as u64 + FIXED_BYTES;
    need.div_ceil(2 << 20) * (2 << 20)
}

/// `talc` behind a spin lock, as the global allocator.
pub struct Heap(spin::Mutex<Talc<ErrOnOom>>);

#[global_allocator]
static HEAP: Heap = Heap(spin::Mutex::new(Talc::new(ErrOnOom)));

// SAFETY: `talc` hands out disjoint blocks of the memory it was given, aligned as asked; the
// lock serialises every call.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `GlobalAlloc` callers never ask for zero bytes, `malloc`'s one requirement.
        let p =
            unsafe { self.0.lock().malloc(layout) }.map_or(core::ptr::null_mut(), NonNull::as_ptr);
        if !p.is_null() {
            IN_USE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block this allocator gave out with `layout`.
            unsafe { self.0.lock().free(p, layout) }
            IN_USE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
    }
}

/// Whether the heap has its memory.
static GIVEN: AtomicBool = AtomicBool::new(false);
/// Bytes handed out and not freed (what callers asked for, without the allocator's overhead).
static IN_USE: AtomicU64 = AtomicU64::new(0);
/// Bytes the heap was given.
static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Heap bytes in use and in all, once the heap has its memory (the operator's `smmuctl vms`).
pub fn usage() -> Option<(u64, u64)> {
    GIVEN.load(Ordering::SeqCst).then(|| {
        (
            IN_USE.load(Ordering::Relaxed),
            TOTAL.load(Ordering::Relaxed),
        )
    })
}

/// Gives the heap what the config's `mappings` need ([`bytes_for`]) from the daemon pool, once
/// (later calls do nothing), and prints it as one `HEAP` record.
///
/// # Errors
/// What went wrong, for the `RESULT` record: the pool is gone or too small for the config's
/// `mappings`.
pub fn ensure(p: &mut Platform) -> Result<(), &'static str> {
    if GIVEN.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mappings = p.topology.mappings();
    let bytes = bytes_for(mappings);
    let Some(block) = p.alloc_daemon_block(bytes, 2 << 20) else {
        crate::runtime::console::line(format_args!(
            "HEAP mappings={mappings} bytes={bytes:#x} given=0"
        ));
        return Err("the daemon pool has no room for the heap the config's mappings need");
    };
    let base = block.start().0 as usize as *mut u8;
    let size = usize::try_from(block.size()).map_err(|_| "heap too large")?;
    // SAFETY: the block was just taken from the daemon pool, which never hands it out again;
    // it is identity-mapped RAM (Normal memory), used from now on only through the allocator.
    unsafe { HEAP.0.lock().claim(Span::from_base_size(base, size)) }
        .map_err(|_| "the allocator refused the heap block")?;
    TOTAL.store(block.size(), Ordering::Relaxed);
    GIVEN.store(true, Ordering::SeqCst);
    crate::runtime::console::line(format_args!(
        "HEAP mappings={mappings} per_vm={} bytes={bytes:#x} at={} given=1",
        p.topology.mappings_per_vm(),
        block.start()
    ));
    Ok(())
}
