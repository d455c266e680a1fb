//! Keeping a long-running daemon's resident memory near what it uses.
//!
//! A pass over a large target allocates per-file maps (the scan, the base
//! rows, the plan) and frees them at its end. glibc keeps freed pages in
//! its arenas, up to eight per core, one per thread that ever allocated,
//! so without help an idle daemon sits on the peak of its last pass,
//! spread over many half-empty arenas. Two knobs fix that: few arenas
//! (set before any thread starts) and an explicit trim after each pass.

/// Limit glibc to two malloc arenas. Call before the runtime starts its
/// threads. Contention is not a concern: the daemon's hot paths are I/O.
pub(crate) fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; M_ARENA_MAX is a valid
    // parameter and any positive value is accepted.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

/// Give the memory a pass freed back to the OS. Trimming takes well under
/// a millisecond for heaps of this size; passes are seconds apart at the
/// least.
pub(crate) fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free heap
    // pages to the kernel.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
