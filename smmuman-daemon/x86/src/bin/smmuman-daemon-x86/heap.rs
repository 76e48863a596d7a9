//! The image's heap: the manager keeps its mappings and host-memory ownership in B-trees
//! (`smmuman-server`, `alloc`). As on aarch64 (`smmuman-daemon`'s `heap.rs`) the allocator is
//! `talc` behind a spin lock over one block fixed at boot, so the worst case is known: here a
//! static block of the image (`.bss`), sized for [`MAPPINGS`] mappings at
//! `smmuman_server::config::MAPPING_BYTES` each plus 256 KiB for the rest. The manager's quota
//! ([`MAPPINGS`]) keeps it below that; exhaustion anyway calls the allocation-error handler,
//! which panics, and the panic path leaves the safe state.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use talc::{ErrOnOom, Span, Talc};

/// Mappings the manager holds at most in all (its `max_mappings` quota).
pub const MAPPINGS: usize = 1024;
/// Bytes in the heap.
pub const HEAP_BYTES: usize = MAPPINGS * smmuman_server::config::MAPPING_BYTES + (256 << 10);

#[repr(C, align(4096))]
struct Block(UnsafeCell<[u8; HEAP_BYTES]>);

// SAFETY: the block is handed to the allocator once ([`init`]) and reached only through it.
unsafe impl Sync for Block {}

static BLOCK: Block = Block(UnsafeCell::new([0; HEAP_BYTES]));
static GIVEN: AtomicBool = AtomicBool::new(false);

/// `talc` behind a spin lock, as the global allocator.
pub struct Heap(spin::Mutex<Talc<ErrOnOom>>);

#[global_allocator]
static HEAP: Heap = Heap(spin::Mutex::new(Talc::new(ErrOnOom)));

// SAFETY: `talc` hands out disjoint blocks of the memory it was given, aligned as asked; the
// lock serialises every call (one CPU, no allocation from interrupt handlers).
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

/// Gives the allocator its block (once; later calls do nothing). Returns the block's address
/// and size, for the `HEAP` record.
///
/// # Errors
/// When the allocator refuses the block.
pub fn init() -> Result<(u64, usize), &'static str> {
    let base = BLOCK.0.get().cast::<u8>();
    if GIVEN.swap(true, Ordering::SeqCst) {
        return Ok((base as u64, HEAP_BYTES));
    }
    // SAFETY: the static block is used by nothing but the allocator from now on (`GIVEN`
    // makes this run once); it is RAM of the image, write-back in the identity map.
    unsafe { HEAP.0.lock().claim(Span::from_base_size(base, HEAP_BYTES)) }
        .map_err(|_| "the allocator refused the heap block")?;
    Ok((base as u64, HEAP_BYTES))
}
