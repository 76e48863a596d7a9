//! The daemon's heap: the manager's mappings and host-memory ownership index live in it
//! (`smmuman-server` keeps them in B-trees, `alloc`).
//!
//! Why a heap and not an arena of fixed records: a B-tree gives the manager O(log n) map,
//! unmap and ownership checks at any number of mappings, and `alloc`'s B-tree is the well-
//! tested one; what a safety-minded user needs is that the worst case is known at boot, and it
//! is: the heap is one block carved from the daemon pool at start-up ([`HEAP_BYTES`]), and the
//! manager's mapping quota is `HEAP_BYTES / MAPPING_BYTES` (`smmuman_server::config`), each
//! mapping costing at most `MAPPING_BYTES` (a host test measures it). The allocator is `talc`
//! (a well-kept `no_std` allocator: constant-time bins, no fragmentation trouble at this fill)
//! behind a spin lock.
//!
//! Exhaustion cannot happen below the quota; were it to happen anyway, `alloc` calls the
//! allocation-error handler, which panics, and the panic path leaves every SMMU aborting.

use crate::platform::Platform;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use talc::{ErrOnOom, Span, Talc};

/// Bytes of heap carved from the daemon pool at start-up.
pub const HEAP_BYTES: u64 = 64 << 20;

/// `talc` behind a spin lock, as the global allocator.
pub struct Heap(spin::Mutex<Talc<ErrOnOom>>);

#[global_allocator]
static HEAP: Heap = Heap(spin::Mutex::new(Talc::new(ErrOnOom)));

// SAFETY: `talc` hands out disjoint blocks of the memory it was given, aligned as asked; the
// lock serialises every call.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `GlobalAlloc` callers never ask for zero bytes, `malloc`'s one requirement.
        unsafe { self.0.lock().malloc(layout) }.map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block this allocator gave out with `layout`.
            unsafe { self.0.lock().free(p, layout) }
        }
    }
}

/// Whether the heap has its memory.
static GIVEN: AtomicBool = AtomicBool::new(false);

/// Gives the heap [`HEAP_BYTES`] of the daemon pool, once (later calls do nothing).
///
/// # Errors
/// What went wrong, for the `RESULT` record: the pool is gone or too small.
pub fn ensure(p: &mut Platform) -> Result<(), &'static str> {
    if GIVEN.load(Ordering::SeqCst) {
        return Ok(());
    }
    let block = p
        .alloc_daemon_block(HEAP_BYTES, 2 << 20)
        .ok_or("no room for the heap in the daemon pool")?;
    let base = block.start().0 as usize as *mut u8;
    let size = usize::try_from(block.size()).map_err(|_| "heap too large")?;
    // SAFETY: the block was just taken from the daemon pool, which never hands it out again;
    // it is identity-mapped RAM (Normal memory), used from now on only through the allocator.
    unsafe { HEAP.0.lock().claim(Span::from_base_size(base, size)) }
        .map_err(|_| "the allocator refused the heap block")?;
    GIVEN.store(true, Ordering::SeqCst);
    Ok(())
}
