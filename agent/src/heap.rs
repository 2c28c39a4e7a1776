//! Handing freed heap memory back to the operating system after the agent's big, short-lived
//! allocations: a full interface read, a snapshot or a stats report of tens of thousands of peers.
//!
//! glibc keeps what such a burst freed in the arena of the thread that allocated it (the blocking
//! pool's threads, the runtime's workers), so without this the resident size of a 60,000-peer
//! agent climbs with every report and reconcile until each arena has held its own peak
//! (measured in BENCHMARKS.md). [`limit_arenas`] caps the number of arenas at start and keeps
//! big blocks (an interface read's vector, the address book's tables) out of them;
//! [`release_freed`] returns the free pages after each burst. Both are no-ops off glibc.
//!
//! [`one_burst`] keeps the bursts apart: the stats report and a reconcile each read the whole
//! interface, and their peaks, at 60,000 peers over 10 MB each, would otherwise add up whenever
//! the two timers meet.

/// Arenas glibc may create: one per thread by default (up to 8 per core), each keeping its peak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAX_ARENAS: libc::c_int = 2;

/// Blocks at least this big get pages of their own, given back the moment they are freed.
/// Setting it also stops glibc from raising it after each such free (its default), which would
/// move the next 10 MB vector into an arena, where its pages stay until trimmed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Caps glibc's malloc arenas and fixes its mmap threshold; call once at start, before the
/// runtime's threads allocate.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes a tuning parameter of glibc's allocator; it takes no
    // pointers and is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
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

/// The permit to hold a whole-node burst (an interface read, a snapshot, a stats report).
static BURST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other burst is in flight; the burst lasts while the guard lives. Holders keep
/// it only over work that ends on its own (interface calls, Redis commands with timeouts).
pub async fn one_burst() -> tokio::sync::MutexGuard<'static, ()> {
    BURST.lock().await
}
