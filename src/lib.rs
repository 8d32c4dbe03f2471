//! sipas-stream: an event-sourced pipeline for SIPAS satisfaction surveys and 1022 hotline
//! events. Pure logic lives in `domain` and `contract`; I/O in `kafka`, `sink`, `registry`
//! and `metrics`; `pipeline` wires them together.
pub mod config;
pub mod contract;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod import;
pub mod index;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod publish;
pub mod registry;
pub mod serve;
pub mod shutdown;
pub mod simulate;
pub mod sink;

/// mimalloc instead of glibc's malloc for everything linked with this library: decoding,
/// rows and the index allocate many small strings and vectors per message, and glibc's
/// allocator took about a third of the processing instructions (BENCHMARKS.md,
/// "Processing cost from memory"). The `system-allocator` feature keeps the system's,
/// for heap profilers that hook malloc (heaptrack, valgrind).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
