//! sipas-stream: an event-sourced pipeline for SIPAS satisfaction surveys and 1022 hotline
//! events. Pure logic lives in `domain` and `contract`; I/O in `kafka`, `sink`, `registry`
//! and `metrics`; `pipeline` wires them together; `assemble` builds the running parts
//! from configuration for the `sipas` binary (and tests).
pub mod assemble;
pub mod config;
pub mod contract;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod import;
pub mod index;
pub mod instant;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod publish;
pub mod registry;
pub mod retry;
pub mod serve;
pub mod shutdown;
pub mod simulate;
pub mod sink;
pub mod tables;

/// mimalloc instead of glibc's malloc for everything linked with this library: decoding,
/// rows and the index allocate many small strings and vectors per message, and glibc's
/// allocator took about a third of the processing instructions (BENCHMARKS.md,
/// "Processing cost from memory"). The `system-allocator` feature keeps the system's,
/// for heap profilers that hook malloc (heaptrack, valgrind).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3 keeps freed memory for 1 s (arenas 10 s) before returning it to the OS;
/// a catch-up frees batch after batch within that time, so the resident set grew by
/// the batches in flight several times over (BENCHMARKS.md, "Memory during a catch-up").
/// 10 ms, mimalloc v2's default, returns it between batches. `MIMALLOC_PURGE_DELAY` in the
/// environment still wins.
pub fn release_freed_memory_promptly() {
    #[cfg(not(feature = "system-allocator"))]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a numeric option; mimalloc reads it on each purge decision.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 10) };
    }
}

/// `mi_option_purge_delay` in mimalloc's option enum (libmimalloc-sys names only some).
#[cfg(not(feature = "system-allocator"))]
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(all(test, not(feature = "system-allocator")))]
mod allocator_tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads a numeric option.
        let before = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        // mimalloc v3's default (1000 ms) or ours: a boolean or count option would be 0..8.
        assert!(before == 1000 || before == 10, "option 15 is {before}");
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            super::release_freed_memory_promptly();
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) },
                10
            );
        }
    }
}
