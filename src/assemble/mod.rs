//! Builds the running parts from configuration: the decoder every input path shares, the
//! ingest gateway, the supervision of `sipas run`'s tasks, and the end offsets `sipas
//! rebuild` stops at. The binary's commands call these; tests can too.
pub mod decoder;
pub mod end_offsets;
pub mod gateway;
pub mod supervise;

pub use decoder::{decoder, DecoderError};
pub use end_offsets::{end_offsets, EndOffsetsError};
pub use gateway::{gateway, GatewayError};
pub use supervise::{supervise, SuperviseError};
