//! One entry point from message bytes to a validated event or a rejection.
use std::sync::Arc;

use crate::contract::avro::{self, ReaderSchemas, SchemaCatalog};
use crate::contract::json;
use crate::contract::pii::scrub_unparsed;
use crate::contract::raw::{RawHotline, RawSurvey};
use crate::contract::reject::{Reject, RejectReason};
use crate::contract::validate::Validator;
use crate::domain::{HotlineEvent, SurveySubmission};

/// Which contract a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Survey,
    Hotline,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Survey => "survey",
            EventKind::Hotline => "hotline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Avro,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Avro => "avro",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Survey(SurveySubmission),
    Hotline(HotlineEvent),
}

/// A rejected message. `dlq_payload` replaces the original bytes on the dead-letter topic
/// when those could carry personal data in clear (hotline messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reject: Reject,
    pub dlq_payload: Option<Vec<u8>>,
}

impl From<Reject> for Rejected {
    fn from(reject: Reject) -> Self {
        Self {
            reject,
            dlq_payload: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Decoder {
    pub validator: Validator,
    pub catalog: Arc<SchemaCatalog>,
    readers: ReaderSchemas,
    max_message_bytes: usize,
}

impl Decoder {
    pub fn new(
        validator: Validator,
        catalog: Arc<SchemaCatalog>,
        max_message_bytes: usize,
    ) -> Self {
        // No Avro length prefix inside a message can be honestly larger than the message.
        apache_avro::util::max_allocation_bytes(max_message_bytes.max(1024));
        Self {
            validator,
            catalog,
            readers: ReaderSchemas::default(),
            max_message_bytes,
        }
    }

    /// An Avro schema id this message needs that the catalog does not have yet.
    pub fn missing_schema(&self, bytes: &[u8]) -> Option<u32> {
        avro::framed_schema_id(bytes).filter(|id| self.catalog.get(*id).is_none())
    }

    pub fn decode(&self, kind: EventKind, bytes: &[u8]) -> Result<(Decoded, Encoding), Rejected> {
        let encoding = if avro::framed_schema_id(bytes).is_some() {
            Encoding::Avro
        } else {
            Encoding::Json
        };
        let scrub = |reject: Reject| Rejected {
            reject,
            dlq_payload: (kind == EventKind::Hotline).then(|| scrub_unparsed(bytes)),
        };
        if bytes.len() > self.max_message_bytes {
            return Err(scrub(Reject::new(
                RejectReason::Oversize,
                format!(
                    "message is {} bytes, the limit is {}",
                    bytes.len(),
                    self.max_message_bytes
                ),
            )));
        }
        match kind {
            EventKind::Survey => {
                let raw = match encoding {
                    Encoding::Json => json::decode_survey(bytes)?,
                    Encoding::Avro => self.avro_survey(bytes)?,
                };
                let survey = self.validator.survey(raw)?;
                Ok((Decoded::Survey(survey), encoding))
            }
            EventKind::Hotline => {
                let raw = match encoding {
                    Encoding::Json => json::decode_hotline(bytes),
                    Encoding::Avro => self.avro_hotline(bytes),
                }
                .map_err(scrub)?;
                // Redacted only when refused: hashing the personal data twice (once for
                // the event, once for a dead letter that is not written) cost more than
                // the rest of validating the event.
                let event = self
                    .validator
                    .hotline_or_back(raw)
                    .map_err(|(reject, raw)| Rejected {
                        reject,
                        dlq_payload: raw.has_personal_data().then(|| self.redacted_json(&raw)),
                    })?;
                Ok((Decoded::Hotline(event), encoding))
            }
        }
    }

    /// The writer schema of a framed message.
    fn writer(&self, bytes: &[u8]) -> Result<avro::WriterSchema, Reject> {
        let id = avro::framed_schema_id(bytes).expect("caller checked the frame");
        self.catalog.writer(id).ok_or_else(|| {
            Reject::new(
                RejectReason::Undecodable,
                format!("unknown Avro schema id {id} (not in the catalog or the registry)"),
            )
        })
    }

    /// Written with the shipped v1 schema: read directly; otherwise resolved by apache-avro.
    fn avro_survey(&self, bytes: &[u8]) -> Result<RawSurvey, Reject> {
        let writer = self.writer(bytes)?;
        if writer.v1_of == Some(EventKind::Survey) {
            return avro::decode_v1_survey(&bytes[5..]);
        }
        avro::to_raw_survey(avro::decode_datum(
            &writer.schema,
            &self.readers.survey,
            &bytes[5..],
        )?)
    }

    fn avro_hotline(&self, bytes: &[u8]) -> Result<RawHotline, Reject> {
        let writer = self.writer(bytes)?;
        if writer.v1_of == Some(EventKind::Hotline) {
            return avro::decode_v1_hotline(&bytes[5..]);
        }
        avro::to_raw_hotline(avro::decode_datum(
            &writer.schema,
            &self.readers.hotline,
            &bytes[5..],
        )?)
    }

    /// Bytes fit for the dead-letter topic for a message that decoded but was refused later
    /// (e.g. by ClickHouse): hotline personal data hashed, or masked if undecodable.
    pub fn dlq_safe_payload(&self, kind: EventKind, bytes: &[u8]) -> (Vec<u8>, bool) {
        if kind == EventKind::Survey {
            return (bytes.to_vec(), false);
        }
        let raw = match avro::framed_schema_id(bytes) {
            Some(_) => self.avro_hotline(bytes),
            None => json::decode_hotline(bytes),
        };
        match raw {
            Ok(raw) if raw.has_personal_data() => (self.redacted_json(&raw), true),
            Ok(_) => (bytes.to_vec(), false),
            Err(_) => (scrub_unparsed(bytes), true),
        }
    }

    fn redacted_json(&self, raw: &RawHotline) -> Vec<u8> {
        serde_json::to_vec(&raw.redacted(&self.validator.pii)).unwrap_or_default()
    }
}
