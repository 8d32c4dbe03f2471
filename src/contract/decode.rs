//! One entry point from message bytes to a validated event or a rejection.
use std::sync::Arc;

use crate::contract::avro::{self, ReaderSchemas, SchemaCatalog};
use crate::contract::json;
use crate::contract::pii::scrub_unparsed;
use crate::contract::raw::RawHotline;
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
                    Encoding::Avro => {
                        avro::to_raw_survey(self.avro_value(bytes, &self.readers.survey)?)?
                    }
                };
                let survey = self.validator.survey(raw)?;
                Ok((Decoded::Survey(survey), encoding))
            }
            EventKind::Hotline => {
                let raw = match encoding {
                    Encoding::Json => json::decode_hotline(bytes),
                    Encoding::Avro => self
                        .avro_value(bytes, &self.readers.hotline)
                        .and_then(avro::to_raw_hotline),
                }
                .map_err(scrub)?;
                let redacted = raw.has_personal_data().then(|| self.redacted_json(&raw));
                let event = self.validator.hotline(raw).map_err(|reject| Rejected {
                    reject,
                    dlq_payload: redacted.clone(),
                })?;
                Ok((Decoded::Hotline(event), encoding))
            }
        }
    }

    fn avro_value(
        &self,
        bytes: &[u8],
        reader: &apache_avro::Schema,
    ) -> Result<apache_avro::types::Value, Reject> {
        let id = avro::framed_schema_id(bytes).expect("caller checked the frame");
        let writer = self.catalog.get(id).ok_or_else(|| {
            Reject::new(
                RejectReason::Undecodable,
                format!("unknown Avro schema id {id} (not in the catalog or the registry)"),
            )
        })?;
        avro::decode_datum(&writer, reader, &bytes[5..])
    }

    /// Bytes fit for the dead-letter topic for a message that decoded but was refused later
    /// (e.g. by ClickHouse): hotline personal data hashed, or masked if undecodable.
    pub fn dlq_safe_payload(&self, kind: EventKind, bytes: &[u8]) -> (Vec<u8>, bool) {
        if kind == EventKind::Survey {
            return (bytes.to_vec(), false);
        }
        let raw = match avro::framed_schema_id(bytes) {
            Some(_) => self
                .avro_value(bytes, &self.readers.hotline)
                .and_then(avro::to_raw_hotline),
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
