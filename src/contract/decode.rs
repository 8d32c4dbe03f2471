//! One entry point from message bytes to a validated event or a rejection.
use std::sync::Arc;

use crate::contract::avro::{self, ReaderSchemas, SchemaCatalog};
use crate::contract::json;
use crate::contract::raw::{RawHotline, RawSurvey};
use crate::contract::reject::{Reject, RejectReason};
use crate::contract::scrub::scrub_payload;
use crate::contract::validate::Validator;
use crate::domain::time::format_vietnam;
use crate::domain::{HotlineEvent, SurveySubmission};

/// Default of `contract.max_future_skew_seconds`: an event time may be at most one day
/// after the moment its message was received.
pub const DEFAULT_MAX_FUTURE_SKEW_SECONDS: u32 = 86_400;

pub use crate::contract::kind::EventKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Avro,
}

impl Encoding {
    /// Every encoding, in the order of their discriminants (`encoding as usize` indexes it).
    pub const ALL: [Encoding; 2] = [Encoding::Json, Encoding::Avro];

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
/// when those held personal data (see `contract::scrub`): a message from either topic.
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
    /// An event time more than this many seconds after the receive instant is refused as
    /// `future_timestamp`.
    max_future_skew: i64,
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
            max_future_skew: i64::from(DEFAULT_MAX_FUTURE_SKEW_SECONDS),
        }
    }

    /// How far (seconds) an event time may lie after the moment its message was received
    /// (`contract.max_future_skew_seconds`; [`DEFAULT_MAX_FUTURE_SKEW_SECONDS`] otherwise).
    pub fn with_max_future_skew(mut self, seconds: u32) -> Self {
        self.max_future_skew = i64::from(seconds);
        self
    }

    /// An Avro schema id this message needs that the catalog does not have yet.
    pub fn missing_schema(&self, bytes: &[u8]) -> Option<u32> {
        avro::framed_schema_id(bytes).filter(|id| self.catalog.get(*id).is_none())
    }

    /// Decodes and validates one message.
    ///
    /// `received_at` is the instant (Unix seconds) the message was received: the Kafka
    /// message timestamp for `sipas run`, the wall clock when the gateway or `sipas import`
    /// read the record. A valid event whose time (`submitted_at`, `occurred_at`) is more
    /// than the configured skew after it is refused as `future_timestamp`. `None` skips
    /// that check; only for input that truly has no receive time (a Kafka message without
    /// a timestamp, tests, in-memory benchmarks).
    pub fn decode(
        &self,
        kind: EventKind,
        bytes: &[u8],
        received_at: Option<i64>,
    ) -> Result<(Decoded, Encoding), Rejected> {
        // Every refusal, whatever the topic or the reason, leaves with a scrubbed copy:
        // a message on the wrong topic, or with fields the contract does not name, can
        // carry personal data as well as a hotline event.
        self.decode_event(kind, bytes, received_at)
            .map_err(|reject| Rejected {
                dlq_payload: scrub_payload(bytes, &self.validator.pii),
                reject,
            })
    }

    fn decode_event(
        &self,
        kind: EventKind,
        bytes: &[u8],
        received_at: Option<i64>,
    ) -> Result<(Decoded, Encoding), Reject> {
        let encoding = if avro::framed_schema_id(bytes).is_some() {
            Encoding::Avro
        } else {
            Encoding::Json
        };
        if bytes.len() > self.max_message_bytes {
            return Err(Reject::new(
                RejectReason::Oversize,
                format!(
                    "message is {} bytes, the limit is {}",
                    bytes.len(),
                    self.max_message_bytes
                ),
            ));
        }
        match kind {
            EventKind::Survey => {
                let raw = match encoding {
                    Encoding::Json => json::decode_survey(bytes)?,
                    Encoding::Avro => self.avro_survey(bytes)?,
                };
                let survey = self.validator.survey(raw)?;
                self.not_in_future("submitted_at", survey.submitted_at, received_at)?;
                Ok((Decoded::Survey(survey), encoding))
            }
            EventKind::Hotline => {
                let raw = match encoding {
                    Encoding::Json => json::decode_hotline(bytes)?,
                    Encoding::Avro => self.avro_hotline(bytes)?,
                };
                let event = self.validator.hotline(raw)?;
                self.not_in_future("occurred_at", event.occurred_at, received_at)?;
                Ok((Decoded::Hotline(event), encoding))
            }
        }
    }

    /// The event-time guard, on an otherwise valid event: one comparison when it passes.
    #[inline]
    fn not_in_future(
        &self,
        field: &str,
        event_time: i64,
        received_at: Option<i64>,
    ) -> Result<(), Reject> {
        match received_at {
            Some(received) if event_time.saturating_sub(received) > self.max_future_skew => {
                Err(self.future_timestamp(field, event_time, received))
            }
            _ => Ok(()),
        }
    }

    #[cold]
    fn future_timestamp(&self, field: &str, event_time: i64, received: i64) -> Reject {
        let detail = format!(
            "{field} {} is {} after the message was received ({}; limit {})",
            format_vietnam(event_time),
            span(event_time.saturating_sub(received)),
            format_vietnam(received),
            span(self.max_future_skew),
        );
        Reject::new(RejectReason::FutureTimestamp, detail)
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
    /// (e.g. by ClickHouse), and whether they differ from the original (`contract::scrub`).
    pub fn dlq_safe_payload(&self, bytes: &[u8]) -> (Vec<u8>, bool) {
        match scrub_payload(bytes, &self.validator.pii) {
            Some(scrubbed) => (scrubbed, true),
            None => (bytes.to_vec(), false),
        }
    }
}

/// A duration for people: "3652 days", "1 day 1 second", "7 hours 30 minutes".
fn span(seconds: i64) -> String {
    if seconds == 0 {
        return "0 seconds".into();
    }
    let mut rest = seconds.unsigned_abs();
    let mut parts = Vec::new();
    for (unit, size) in [
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
        ("second", 1),
    ] {
        let count = rest / size;
        rest %= size;
        if count > 0 {
            let plural = if count == 1 { "" } else { "s" };
            parts.push(format!("{count} {unit}{plural}"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::contract::pii::PiiHasher;
    use crate::domain::time::parse_rfc3339;
    use crate::domain::{FrameworkCatalog, ProvinceRegistry};
    use std::path::Path;

    /// A decoder with the shipped frameworks and schemas (for other modules' tests too).
    pub(crate) fn decoder() -> Decoder {
        let validator = Validator {
            provinces: ProvinceRegistry::builtin(),
            frameworks: FrameworkCatalog::load_dir(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/frameworks"),
            )
            .unwrap(),
            pii: PiiHasher::new(b"decode-test-secret-1"),
        };
        Decoder::new(validator, Arc::new(SchemaCatalog::builtin()), 64 * 1024)
    }

    pub(crate) fn survey(submitted_at: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "submission_id": "s-1",
            "framework": "BNV-2640-2017",
            "submitted_at": submitted_at,
            "province_code": "79",
            "agency_id": "79-commune-001",
            "agency_level": "commune",
            "channel": "one_stop",
            "respondent_type": "citizen",
            "answers": {"access.1": 5}
        }))
        .unwrap()
    }

    pub(crate) fn hotline(occurred_at: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "event_id": "e-1",
            "ticket_id": "t-1",
            "type": "received",
            "occurred_at": occurred_at,
            "province_code": "01",
            "channel": "phone",
            "category": "traffic",
            "due_at": "2026-11-26T09:00:00+07:00",
            "reporter_phone": "0912345678",
            "reporter_email": "nguyen.van.a@example.vn"
        }))
        .unwrap()
    }

    const RECEIVED: &str = "2026-11-21T08:30:00+07:00";

    fn received() -> Option<i64> {
        Some(parse_rfc3339(RECEIVED).unwrap())
    }

    fn reason(result: Result<(Decoded, Encoding), Rejected>) -> Option<RejectReason> {
        result.err().map(|r| r.reject.reason)
    }

    #[test]
    fn an_event_exactly_at_the_limit_is_accepted_one_second_beyond_is_not() {
        let d = decoder();
        // RECEIVED + 1 day, and one second more.
        let at_limit = "2026-11-22T08:30:00+07:00";
        let beyond = "2026-11-22T08:30:01+07:00";
        assert!(d
            .decode(EventKind::Survey, &survey(at_limit), received())
            .is_ok());
        assert!(d
            .decode(EventKind::Hotline, &hotline(at_limit), received())
            .is_ok());
        assert_eq!(
            reason(d.decode(EventKind::Survey, &survey(beyond), received())),
            Some(RejectReason::FutureTimestamp)
        );
        assert_eq!(
            reason(d.decode(EventKind::Hotline, &hotline(beyond), received())),
            Some(RejectReason::FutureTimestamp)
        );
        let detail = d
            .decode(EventKind::Survey, &survey(beyond), received())
            .unwrap_err()
            .reject
            .detail;
        assert_eq!(
            detail,
            "submitted_at 2026-11-22T08:30:01+07:00 is 1 day 1 second after the message was \
             received (2026-11-21T08:30:00+07:00; limit 1 day)"
        );
    }

    #[test]
    fn a_far_future_event_is_refused_with_how_far_ahead_it_was() {
        let d = decoder();
        let rejected = d
            .decode(
                EventKind::Survey,
                &survey("2036-11-21T08:30:00+07:00"),
                received(),
            )
            .unwrap_err();
        assert_eq!(rejected.reject.reason, RejectReason::FutureTimestamp);
        assert!(
            rejected.reject.detail.starts_with(
                "submitted_at 2036-11-21T08:30:00+07:00 is 3653 days after the message was received"
            ),
            "{}",
            rejected.reject.detail
        );
        assert_eq!(
            rejected.dlq_payload, None,
            "survey letters keep their bytes"
        );
        // The offset as sent does not matter, only the instant.
        assert_eq!(
            reason(d.decode(
                EventKind::Hotline,
                &hotline("2036-11-21T01:30:00Z"),
                received()
            )),
            Some(RejectReason::FutureTimestamp)
        );
    }

    #[test]
    fn a_refused_hotline_event_leaves_no_personal_data_in_clear() {
        let d = decoder();
        let rejected = d
            .decode(
                EventKind::Hotline,
                &hotline("2030-01-01T00:00:00+07:00"),
                received(),
            )
            .unwrap_err();
        assert_eq!(rejected.reject.reason, RejectReason::FutureTimestamp);
        let letter = String::from_utf8(rejected.dlq_payload.expect("redacted")).unwrap();
        assert!(!letter.contains("912345678"), "{letter}");
        assert!(!letter.contains("nguyen.van.a"), "{letter}");
        assert!(letter.contains("hmac:"), "{letter}");
        assert!(!rejected.reject.detail.contains("912345678"));
    }

    #[test]
    fn old_events_and_events_without_a_receive_time_are_accepted() {
        let d = decoder();
        for old in [
            "2026-11-21T08:30:00+07:00",
            "2026-11-20T08:30:00+07:00",
            "2015-01-01T00:00:00+07:00",
        ] {
            assert!(d
                .decode(EventKind::Survey, &survey(old), received())
                .is_ok());
            assert!(d
                .decode(EventKind::Hotline, &hotline(old), received())
                .is_ok());
        }
        let future = "2036-11-21T08:30:00+07:00";
        assert!(d.decode(EventKind::Survey, &survey(future), None).is_ok());
        assert!(d.decode(EventKind::Hotline, &hotline(future), None).is_ok());
    }

    #[test]
    fn invalid_events_keep_their_own_reason_and_the_skew_is_configurable() {
        let d = decoder().with_max_future_skew(3_600);
        let mut bad =
            serde_json::from_slice::<serde_json::Value>(&survey("2036-11-21T08:30:00+07:00"))
                .unwrap();
        bad["channel"] = "fax".into();
        assert_eq!(
            reason(d.decode(
                EventKind::Survey,
                &serde_json::to_vec(&bad).unwrap(),
                received()
            )),
            Some(RejectReason::UnknownEnumValue)
        );
        assert!(d
            .decode(
                EventKind::Survey,
                &survey("2026-11-21T09:30:00+07:00"),
                received()
            )
            .is_ok());
        let rejected = d
            .decode(
                EventKind::Survey,
                &survey("2026-11-21T09:30:01+07:00"),
                received(),
            )
            .unwrap_err();
        assert_eq!(rejected.reject.reason, RejectReason::FutureTimestamp);
        assert!(rejected.reject.detail.ends_with("limit 1 hour)"));
        // Zero: not a second after the receive instant.
        let strict = decoder().with_max_future_skew(0);
        assert!(strict
            .decode(EventKind::Survey, &survey(RECEIVED), received())
            .is_ok());
        assert_eq!(
            reason(strict.decode(
                EventKind::Survey,
                &survey("2026-11-21T08:30:01+07:00"),
                received()
            )),
            Some(RejectReason::FutureTimestamp)
        );
    }

    #[test]
    fn a_number_typed_phone_is_not_quoted_in_the_detail_nor_kept_in_the_letter() {
        let d = decoder();
        let mut value: serde_json::Value =
            serde_json::from_slice(&hotline("2026-11-21T08:00:00+07:00")).unwrap();
        value["reporter_phone"] = 84913444555u64.into();
        let rejected = d
            .decode(
                EventKind::Hotline,
                &serde_json::to_vec(&value).unwrap(),
                received(),
            )
            .unwrap_err();
        assert_eq!(rejected.reject.reason, RejectReason::Undecodable);
        let detail = &rejected.reject.detail;
        assert!(!detail.contains("913444555"), "{detail}");
        assert!(
            detail.starts_with(
                "invalid JSON (data): invalid type: integer, expected a string at line 1 column"
            ),
            "{detail}"
        );
        let letter = String::from_utf8(rejected.dlq_payload.expect("scrubbed")).unwrap();
        assert!(!letter.contains("913444555"), "{letter}");
        assert!(!letter.contains("nguyen.van.a"), "{letter}");
        assert!(letter.contains("\"event_id\":\"e-1\""), "{letter}");
    }

    #[test]
    fn survey_letters_are_scrubbed_too_and_kept_when_there_is_nothing_to_scrub() {
        let d = decoder();
        // A hotline event on the surveys topic by mistake.
        let rejected = d
            .decode(
                EventKind::Survey,
                &hotline("2026-11-21T08:00:00+07:00"),
                received(),
            )
            .unwrap_err();
        assert_eq!(rejected.reject.reason, RejectReason::MissingField);
        let letter = String::from_utf8(rejected.dlq_payload.expect("scrubbed")).unwrap();
        assert!(
            !letter.contains("912345678") && !letter.contains("example.vn"),
            "{letter}"
        );
        assert!(letter.contains("\"reporter_phone\":\"hmac:"), "{letter}");
        // A survey with fields the contract does not have, refused for another reason.
        let mut value: serde_json::Value =
            serde_json::from_slice(&survey("2026-11-21T08:00:00+07:00")).unwrap();
        value["respondent_phone"] = "+84 912-345-678".into();
        value["respondent_email"] = "Lan.Nguyen@Example.VN".into();
        value["channel"] = "fax".into();
        let rejected = d
            .decode(
                EventKind::Survey,
                &serde_json::to_vec(&value).unwrap(),
                received(),
            )
            .unwrap_err();
        assert_eq!(rejected.reject.reason, RejectReason::UnknownEnumValue);
        assert_eq!(
            rejected.reject.detail,
            "`channel` has unknown value \"fax\""
        );
        let letter = String::from_utf8(rejected.dlq_payload.expect("scrubbed")).unwrap();
        assert!(
            !letter.contains("912-345-678") && !letter.contains("Lan.Nguyen"),
            "{letter}"
        );
        assert!(
            letter.contains("\"agency_id\":\"79-commune-001\""),
            "{letter}"
        );
        assert!(
            letter.contains("\"submitted_at\":\"2026-11-21T08:00:00+07:00\""),
            "{letter}"
        );
        // Nothing to scrub: the original bytes.
        let rejected = d
            .decode(
                EventKind::Survey,
                &survey("2036-11-21T08:00:00+07:00"),
                received(),
            )
            .unwrap_err();
        assert_eq!(rejected.dlq_payload, None);
    }

    #[test]
    fn a_value_quoted_in_a_detail_is_scrubbed() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&survey("2026-11-21T08:00:00+07:00")).unwrap();
        value["channel"] = "gọi 0912 345 678".into();
        let rejected = decoder()
            .decode(
                EventKind::Survey,
                &serde_json::to_vec(&value).unwrap(),
                received(),
            )
            .unwrap_err();
        assert_eq!(
            rejected.reject.detail,
            "`channel` has unknown value \"gọi **** *** ***\""
        );
    }

    #[test]
    fn a_hotline_reason_is_stored_without_phone_numbers_or_addresses() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&hotline("2026-11-21T08:00:00+07:00")).unwrap();
        value["type"] = "rejected".into();
        value["reason"] =
            "trùng phản ánh, liên hệ 0912.345.678 hoặc lan@example.vn ngày 21/11/2026".into();
        let (decoded, _) = decoder()
            .decode(
                EventKind::Hotline,
                &serde_json::to_vec(&value).unwrap(),
                received(),
            )
            .unwrap();
        let Decoded::Hotline(event) = decoded else {
            panic!("a hotline event")
        };
        assert_eq!(
            event.reason.as_deref(),
            Some("trùng phản ánh, liên hệ ****.***.*** hoặc ************** ngày 21/11/2026")
        );
        assert_eq!(event.reporter_phone_hash.map(|h| h.len()), Some(64));
    }

    #[test]
    fn spans_read_like_durations() {
        assert_eq!(span(86_400), "1 day");
        assert_eq!(span(86_401), "1 day 1 second");
        assert_eq!(
            span(2 * 86_400 + 7 * 3_600 + 30 * 60),
            "2 days 7 hours 30 minutes"
        );
        assert_eq!(span(0), "0 seconds");
    }
}
