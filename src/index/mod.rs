//! The rolling index engine. Pure parts: windows, survey index math, hotline ticket folds
//! and the per-partition state machine. `position` reconciles a partition's raw and index offsets; `processor` drives the
//! states from the consumer loop into ClickHouse.
pub mod checkpoint;
pub mod hotline;
pub mod position;
pub mod processor;
pub mod state;
pub mod survey;
pub mod ticket;
pub mod window;
