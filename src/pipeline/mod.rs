//! The ingest pipeline: consume -> decode/validate -> hand to the index, write raw rows and
//! dead letters -> store offsets. `batch` is the pure part (turning messages into rows,
//! letters, folds and the offsets they release); `ingest` drives the I/O; `service`
//! assembles it with the index processor; `stall` (pure) tells whether assigned partitions
//! advance.
pub mod batch;
pub mod deliver;
pub mod ingest;
pub mod service;

pub use batch::{BatchOutput, InputMessage};
pub use ingest::{IngestPipeline, PipelineError};
