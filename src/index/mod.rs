//! The rolling index engine. Pure parts: windows, survey index math, hotline ticket folds
//! and the per-partition state machine. `processor` drives them from Kafka into ClickHouse.
pub mod hotline;
pub mod processor;
pub mod state;
pub mod survey;
pub mod window;
