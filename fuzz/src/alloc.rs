//! A counting global allocator, to catch inputs that make a reader allocate far more than
//! the input could justify (a length field of 0xFFFFFFFF turned into `Vec::with_capacity`).
//!
//! Install it in the binary or test that runs the fuzzer:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: avsc_fuzz::alloc::CountingAlloc = avsc_fuzz::alloc::CountingAlloc;
//! ```
//!
//! Per thread it counts the live bytes, their peak and the largest single request since
//! [`reset`]; the engine compares them with a cap after every input. A single request above
//! [`HARD_LIMIT`] is not served at all: the requesting thread records its size in
//! [`refused`] and stalls, and the engine's watchdog reports the input and ends the process
//! (allocating it could take the machine's memory; failing it would abort the process
//! before the input is saved).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests above this many bytes are refused (see the module docs).
pub const HARD_LIMIT: usize = 1 << 30;

/// The global allocator: the system allocator plus per-thread counters.
pub struct CountingAlloc;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (frees of other threads' memory
    /// can make it negative).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` since the last [`reset`].
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// The largest single request since the last [`reset`].
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Size of a refused request (0: none); read by the watchdog thread.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let live = LIVE.get().wrapping_add(size as isize);
    LIVE.set(live);
    if live > PEAK.get() {
        PEAK.set(live);
    }
}

fn shrank(size: usize) {
    LIVE.set(LIVE.get().wrapping_sub(size as isize));
}

/// Record a request of `size` bytes; stall the thread if it is above [`HARD_LIMIT`].
fn admit(size: usize) {
    if size > LARGEST.get() {
        LARGEST.set(size);
    }
    if size > HARD_LIMIT {
        REFUSED.store(size, Ordering::SeqCst);
        // No allocation, no unwinding out of the allocator: wait for the watchdog to end
        // the process.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// bookkeeping touches only const-initialised thread-locals and atomics (no allocation).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        admit(layout.size());
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        admit(layout.size());
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        admit(new_size);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

/// This thread's allocations since a [`reset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The peak of live bytes above what was live at the reset.
    pub peak: usize,
    /// The largest single request.
    pub largest: usize,
}

/// Start measuring this thread's allocations; returns the baseline for [`usage`].
pub fn reset() -> isize {
    let live = LIVE.get();
    PEAK.set(live);
    LARGEST.set(0);
    live
}

/// This thread's allocations since the [`reset`] that returned `baseline`.
pub fn usage(baseline: isize) -> Usage {
    Usage { peak: PEAK.get().saturating_sub(baseline).max(0) as usize, largest: LARGEST.get() }
}

/// The size of a request above [`HARD_LIMIT`] some thread is stalled on, if any.
pub fn refused() -> Option<usize> {
    match REFUSED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// Whether [`CountingAlloc`] is the global allocator (the counters are live).
pub fn installed() -> bool {
    let before = LARGEST.get();
    LARGEST.set(0);
    let probe = std::hint::black_box(Vec::<u8>::with_capacity(4096));
    let seen = LARGEST.get() >= 4096;
    drop(probe);
    LARGEST.set(before.max(LARGEST.get()));
    seen
}
