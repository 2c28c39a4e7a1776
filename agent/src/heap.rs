//! Handing freed heap memory back to the operating system after the agent's big, short-lived
//! allocations: a full interface read, a snapshot or a stats report of tens of thousands of peers.
//!
//! glibc keeps what such a burst freed in the arena of the thread that allocated it (the blocking
//! pool's threads, the runtime's workers), so without this the resident size of a 60,000-peer
//! agent climbs with every report and reconcile until each arena has held its own peak
//! (measured in BENCHMARKS.md). [`limit_arenas`] caps the number of arenas at start;
//! [`release_freed`] returns the free pages after each burst. Both are no-ops off glibc.

/// Arenas glibc may create: one per thread by default (up to 8 per core), each keeping its peak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAX_ARENAS: libc::c_int = 2;

/// Caps glibc's malloc arenas; call once at start, before the runtime's threads allocate.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes a tuning parameter of glibc's allocator; it takes no
    // pointers and is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Returns free heap pages of every arena to the operating system.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` walks glibc's own arenas under their locks and releases unused
    // pages; it takes no pointers and never touches memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
