//! The index engine. The fact is exact, additive day counts; every window, ranking and
//! breakdown is computed from them.
//!
//! Pure: `survey` (SIPAS math), `ticket` (a hotline ticket's order-independent fold into
//! day counts), `hotline` (KPIs), `window` (Vietnam-day windows), `values` (window values
//! from day counts), `state` (one partition's fold into day-count rows), `position`
//! (where an assigned partition starts), `input` (what the consumer loop hands over),
//! `rows` (the index tables' rows and names), `day_cache` (the materialiser's copy of day
//! sums and what it lacks).
//! I/O: `checkpoint` (partition state and ids in ClickHouse), `processor` (folds and writes
//! the facts), `materialiser` (province and category windows from the summed facts).
pub mod checkpoint;
pub mod day_cache;
pub mod hotline;
pub mod input;
pub mod materialiser;
pub mod position;
pub mod processor;
pub mod rows;
pub mod state;
pub mod survey;
pub mod ticket;
pub mod values;
pub mod window;
