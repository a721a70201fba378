//! The process's allocator: mimalloc, told to keep the memory it frees.
//!
//! A training step on the CPU allocates and frees tensors of tens to hundreds of MB (the
//! stem's patches alone are 270 MB at batch 32). glibc's malloc serves every block over
//! 32 MB with a fresh `mmap` and unmaps it when freed, so each step faults all of that memory
//! in again, page by page, and the kernel zeroes it: measured 12 % of a tiny audio-network step
//! (`cargo bench -p avsc-host --bench train_step`, 1 thread). mimalloc with purging disabled
//! hands the same pages back to the next step; the price is that the resident size stays at
//! its peak, which a training run reaches every step anyway.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`: after `mi_option_eager_commit_delay`,
/// 14, before `mi_option_use_numa_nodes`, 16; libmimalloc-sys names neither).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never return freed memory to the operating system (call once, early in `main`).
pub fn keep_freed_memory() {
    // SAFETY: sets a process-wide integer option; -1 is documented as "no purging at all".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    debug_assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
}
