//! What steerdns asks of the system allocator (glibc's malloc on Linux; elsewhere nothing).
//!
//! Loads and compiles free most of what they allocate (the database walk's temporaries, a
//! reload's whole previous state), on whichever thread ran them. glibc keeps freed memory in
//! the arena of the thread that freed it and gives threads their own arenas (up to eight per
//! core), so without these calls RSS stays near the load's peak, spread over arenas. Depends
//! on nothing in the crate.

/// Cap malloc's arenas at one per core, at most four, unless `MALLOC_ARENA_MAX` says
/// otherwise. Call before any thread starts. The UDP fast path does not allocate per query,
/// so fewer arenas should cost it little (not yet measured under load); with 1,000 names,
/// GeoLite2-City and an ASN database on a 2-core machine, two arenas kept about 3 MiB less
/// resident (bench/RESULTS.md).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let arenas = std::thread::available_parallelism().map_or(4, |n| n.get().min(4));
        // SAFETY: mallopt only sets an allocator parameter; called before other threads run.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
        }
    }
}

/// Give the allocator's free memory back to the system (every arena's), after a load.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
