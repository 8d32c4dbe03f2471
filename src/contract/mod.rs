//! The event contract: decoding (JSON and Confluent-framed Avro), validation into domain
//! events, the stable rejection reasons that go to the dead-letter topic, and the masking
//! of personal data in everything that is not a validated code (`scrub`).
//! Pure code: no network, no clocks. Shared by the pipeline, the simulator and tests.
pub mod avro;
mod avro_v1;
pub mod decode;
pub mod json;
pub mod kind;
pub mod pii;
pub mod raw;
pub mod reject;
pub mod scrub;
pub mod validate;

pub use decode::{Decoded, Decoder, Encoding, EventKind};
pub use reject::{Reject, RejectReason};
