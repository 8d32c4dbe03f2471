//! The ingest pipeline: consume -> decode/validate -> write raw rows and dead letters ->
//! store offsets. `batch` is the pure part (turning messages into rows, letters and the
//! offsets they release); `ingest` drives the I/O.
pub mod batch;
pub mod ingest;

pub use batch::{BatchOutput, InputMessage};
pub use ingest::{IngestPipeline, PipelineError};
