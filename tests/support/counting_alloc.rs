//! A global allocator that counts allocations, for the tests that prove a path allocates
//! nothing per request. Include it with `#[path]` and declare the `#[global_allocator]`
//! static in the test crate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counting;

/// Allocations (and reallocations) made so far by the whole test process.
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Allocations made so far by this thread. The test harness's own thread allocates
    /// while a test starts (its bookkeeping for the thread it spawned), so a test that
    /// measures right away and runs everything on its own thread counts only these.
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations made so far by the calling thread.
#[allow(dead_code)]
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}

fn count() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    // During thread teardown the slot may be gone; the process-wide count still has it.
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed to the system allocator unchanged; counting has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc` or `realloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from `System` and the caller's contract is the system's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
