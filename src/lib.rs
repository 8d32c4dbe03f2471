//! sipas-stream: an event-sourced pipeline for SIPAS satisfaction surveys and 1022 hotline
//! events. Pure logic lives in `domain` and `contract`; I/O in `kafka`, `sink`, `registry`
//! and `metrics`; `pipeline` wires them together.
pub mod config;
pub mod contract;
pub mod domain;
pub mod gateway;
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
