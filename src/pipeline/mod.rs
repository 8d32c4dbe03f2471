//! The ingest pipeline: consume -> decode/validate -> hand to the index, write raw rows and
//! dead letters -> store offsets. `batch` is the pure part (turning messages into rows,
//! letters, folds and the offsets they release); `ingest` drives the I/O, `deliver` its
//! second stage, `offsets` the offsets that stage stores (and skips for partitions revoked
//! meanwhile); `service` assembles it with the index processor.
pub mod batch;
pub mod deliver;
pub mod ingest;
pub mod offsets;
pub mod service;

pub use batch::{BatchOutput, InputMessage};
pub use ingest::{IngestPipeline, PipelineError};
