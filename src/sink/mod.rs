//! ClickHouse: migrations, row types and the idempotent raw-event writer.
pub mod client;
pub mod migrations;
pub mod rows;
pub mod writer;

pub use client::{connect, ClickHouseError};
pub use rows::{HotlineRow, KafkaCoordinates, SurveyRow};
pub use writer::{InsertFailure, RawEventWriter};
