//! Synthetic traffic: realistic survey submissions and hotline ticket lifecycles for all
//! 34 provinces, with knobs for encodings, invalid, duplicate, late and out-of-order events
//! and old (2004-system) province codes. The generator is pure and seeded: the same
//! settings give the same log. `sink` writes it to Kafka or NDJSON files.
pub mod generator;
pub mod sink;

pub use generator::{Expected, SimEvent, SimSettings, Simulator};
