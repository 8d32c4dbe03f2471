//! Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the
//! Avro binary datum. Writer schemas are looked up by id in a catalog (the files listed in
//! `schemas/catalog.toml`, plus any fetched from a Schema Registry); the datum is resolved
//! against the reader schema this build was written for, so producers may add optional
//! fields (with defaults) without breaking this reader and vice versa.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use apache_avro::types::Value;
use apache_avro::Schema;
use serde::Deserialize;

use crate::contract::kind::EventKind;
use crate::contract::raw::{RawAnswer, RawHotline, RawSurvey};
use crate::contract::reject::{Reject, RejectReason};

pub const MAGIC_BYTE: u8 = 0;
pub const SURVEY_SCHEMA_V1: &str = include_str!("../../schemas/survey_submission.v1.avsc");
pub const HOTLINE_SCHEMA_V1: &str = include_str!("../../schemas/hotline_event.v1.avsc");
/// Ids of the shipped schemas in `schemas/catalog.toml`.
pub const SURVEY_SCHEMA_ID: u32 = 1;
pub const HOTLINE_SCHEMA_ID: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    schema: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    id: u32,
    file: String,
}

/// Writer schemas by id. Shared between decoding threads; grows when a registry answers.
#[derive(Debug, Default)]
pub struct SchemaCatalog {
    by_id: RwLock<HashMap<u32, WriterSchema>>,
}

/// A writer schema, and which contract's shipped v1 schema it is, if it is one: datums
/// written with it are read by `avro_v1` without schema resolution.
#[derive(Debug, Clone)]
pub struct WriterSchema {
    pub schema: Arc<Schema>,
    pub v1_of: Option<EventKind>,
}

/// The kind whose shipped v1 schema `schema` is (compared structurally, as apache-avro
/// compares schemas, so a logical type or a different field makes it another schema).
fn v1_of(schema: &Schema) -> Option<EventKind> {
    static V1: std::sync::OnceLock<ReaderSchemas> = std::sync::OnceLock::new();
    let v1 = V1.get_or_init(ReaderSchemas::default);
    if *schema == *v1.survey {
        Some(EventKind::Survey)
    } else if *schema == *v1.hotline {
        Some(EventKind::Hotline)
    } else {
        None
    }
}

impl SchemaCatalog {
    /// The schemas compiled into this build, under their catalog ids.
    pub fn builtin() -> Self {
        let catalog = Self::default();
        catalog.insert(
            SURVEY_SCHEMA_ID,
            Schema::parse_str(SURVEY_SCHEMA_V1).expect("valid survey schema"),
        );
        catalog.insert(
            HOTLINE_SCHEMA_ID,
            Schema::parse_str(HOTLINE_SCHEMA_V1).expect("valid hotline schema"),
        );
        catalog
    }

    /// Loads `catalog.toml` from `dir` (on top of the built-in schemas).
    pub fn load_dir(dir: &Path) -> Result<Self, CatalogError> {
        let catalog = Self::builtin();
        let path = dir.join("catalog.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| CatalogError::Read {
            path: path.clone(),
            source,
        })?;
        let file: CatalogFile = toml::from_str(&text).map_err(|e| CatalogError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for entry in file.schema {
            let schema_path = dir.join(&entry.file);
            let text =
                std::fs::read_to_string(&schema_path).map_err(|source| CatalogError::Read {
                    path: schema_path.clone(),
                    source,
                })?;
            let schema = Schema::parse_str(&text).map_err(|e| CatalogError::Invalid {
                path: schema_path.clone(),
                message: e.to_string(),
            })?;
            catalog.insert(entry.id, schema);
        }
        Ok(catalog)
    }

    pub fn insert(&self, id: u32, schema: Schema) {
        let writer = WriterSchema {
            v1_of: v1_of(&schema),
            schema: Arc::new(schema),
        };
        self.by_id
            .write()
            .expect("schema catalog lock")
            .insert(id, writer);
    }

    pub fn get(&self, id: u32) -> Option<Arc<Schema>> {
        self.writer(id).map(|w| w.schema)
    }

    pub fn writer(&self, id: u32) -> Option<WriterSchema> {
        self.by_id
            .read()
            .expect("schema catalog lock")
            .get(&id)
            .cloned()
    }
}

/// The schema id of a Confluent-framed message, or `None` if the bytes are not framed.
pub fn framed_schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Frames an Avro datum in the Confluent wire format.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// The reader schemas of this build.
#[derive(Debug, Clone)]
pub struct ReaderSchemas {
    pub survey: Arc<Schema>,
    pub hotline: Arc<Schema>,
}

impl Default for ReaderSchemas {
    fn default() -> Self {
        Self {
            survey: Arc::new(Schema::parse_str(SURVEY_SCHEMA_V1).expect("valid survey schema")),
            hotline: Arc::new(Schema::parse_str(HOTLINE_SCHEMA_V1).expect("valid hotline schema")),
        }
    }
}

/// Decodes the Avro datum after the 5-byte header with `writer`, resolved to `reader`.
pub fn decode_datum(writer: &Schema, reader: &Schema, datum: &[u8]) -> Result<Value, Reject> {
    let mut cursor = datum;
    let value = apache_avro::from_avro_datum(writer, &mut cursor, Some(reader)).map_err(|e| {
        Reject::new(
            RejectReason::Undecodable,
            format!("invalid Avro datum: {}", short(&e.to_string())),
        )
    })?;
    if !cursor.is_empty() {
        return Err(Reject::new(
            RejectReason::Undecodable,
            format!("{} bytes left after the Avro datum", cursor.len()),
        ));
    }
    Ok(value)
}

/// A datum of the shipped v1 survey schema, read directly (see `avro_v1`).
pub fn decode_v1_survey(datum: &[u8]) -> Result<RawSurvey, Reject> {
    v1_result(crate::contract::avro_v1::survey(datum))
}

/// A datum of the shipped v1 hotline schema, read directly (see `avro_v1`).
pub fn decode_v1_hotline(datum: &[u8]) -> Result<RawHotline, Reject> {
    v1_result(crate::contract::avro_v1::hotline(datum))
}

fn v1_result<T>(
    result: Result<(T, usize), crate::contract::avro_v1::Invalid>,
) -> Result<T, Reject> {
    match result {
        Ok((raw, 0)) => Ok(raw),
        Ok((_, left)) => Err(Reject::new(
            RejectReason::Undecodable,
            format!("{left} bytes left after the Avro datum"),
        )),
        Err(invalid) => Err(Reject::new(
            RejectReason::Undecodable,
            format!("invalid Avro datum: {}", invalid.message()),
        )),
    }
}

/// Avro errors may quote the offending value: drop what is quoted, keep the message short.
fn short(message: &str) -> String {
    crate::contract::scrub::unquote(message)
        .chars()
        .take(200)
        .collect()
}

pub fn to_raw_survey(value: Value) -> Result<RawSurvey, Reject> {
    let mut raw = RawSurvey::default();
    for (name, field) in record_fields(value, EventKind::Survey)? {
        match name.as_str() {
            "submission_id" => raw.submission_id = string(field),
            "framework" => raw.framework = string(field),
            "submitted_at" => raw.submitted_at = string(field),
            "province_code" => raw.province_code = string(field),
            "province_code_system" => raw.province_code_system = string(field),
            "agency_id" => raw.agency_id = string(field),
            "agency_level" => raw.agency_level = string(field),
            "procedure_code" => raw.procedure_code = string(field),
            "channel" => raw.channel = string(field),
            "respondent_type" => raw.respondent_type = string(field),
            "answers" => raw.answers = answers(field),
            "expectations" => raw.expectations = strings(field),
            _ => {}
        }
    }
    Ok(raw)
}

pub fn to_raw_hotline(value: Value) -> Result<RawHotline, Reject> {
    let mut raw = RawHotline::default();
    for (name, field) in record_fields(value, EventKind::Hotline)? {
        let slot = match name.as_str() {
            "event_id" => &mut raw.event_id,
            "ticket_id" => &mut raw.ticket_id,
            "type" => &mut raw.event_type,
            "occurred_at" => &mut raw.occurred_at,
            "province_code" => &mut raw.province_code,
            "province_code_system" => &mut raw.province_code_system,
            "channel" => &mut raw.channel,
            "category" => &mut raw.category,
            "agency_id" => &mut raw.agency_id,
            "due_at" => &mut raw.due_at,
            "rating" => &mut raw.rating,
            "reason" => &mut raw.reason,
            "reporter_phone" => &mut raw.reporter_phone,
            "reporter_email" => &mut raw.reporter_email,
            _ => continue,
        };
        *slot = string(field);
    }
    Ok(raw)
}

fn record_fields(value: Value, kind: EventKind) -> Result<Vec<(String, Value)>, Reject> {
    match value {
        Value::Record(fields) => Ok(fields),
        _ => Err(Reject::new(
            RejectReason::Undecodable,
            format!("Avro datum is not a {} record", kind.as_str()),
        )),
    }
}

fn unwrap_union(value: Value) -> Value {
    match value {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

fn string(value: Value) -> Option<String> {
    match unwrap_union(value) {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn strings(value: Value) -> Option<Vec<String>> {
    match unwrap_union(value) {
        Value::Array(items) => Some(items.into_iter().filter_map(string).collect()),
        _ => None,
    }
}

fn answers(value: Value) -> Option<Vec<(String, RawAnswer)>> {
    match unwrap_union(value) {
        Value::Map(map) => {
            let mut answers: Vec<(String, RawAnswer)> = map
                .into_iter()
                .map(|(criterion, answer)| {
                    let answer = match unwrap_union(answer) {
                        Value::Null => RawAnswer::NoAnswer,
                        Value::Int(i) => RawAnswer::Integer(i64::from(i)),
                        Value::Long(i) => RawAnswer::Integer(i),
                        other => {
                            RawAnswer::NotAnInteger(format!("{other:?}").chars().take(40).collect())
                        }
                    };
                    (criterion, answer)
                })
                .collect();
            // Avro maps have no order; sort for deterministic error messages.
            answers.sort_by(|a, b| a.0.cmp(&b.0));
            Some(answers)
        }
        _ => None,
    }
}

/// Avro binary encoding of the shipped v1 records, written by hand so that map entries keep
/// their given order (apache-avro's `Value::Map` is a HashMap, which would make the same
/// event encode to different bytes from run to run).
#[derive(Default)]
struct DatumWriter {
    out: Vec<u8>,
}

impl DatumWriter {
    fn long(&mut self, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let byte = (zigzag & 0x7f) as u8;
            zigzag >>= 7;
            if zigzag == 0 {
                self.out.push(byte);
                return;
            }
            self.out.push(byte | 0x80);
        }
    }

    fn string(&mut self, value: &str) {
        self.long(value.len() as i64);
        self.out.extend_from_slice(value.as_bytes());
    }

    fn required(&mut self, value: &Option<String>) {
        self.string(value.as_deref().unwrap_or_default());
    }

    /// `["null", "string"]`
    fn optional(&mut self, value: &Option<String>) {
        match value {
            Some(v) => {
                self.long(1);
                self.string(v);
            }
            None => self.long(0),
        }
    }
}

/// Encodes a survey with the shipped v1 schema (Confluent-framed). Used by the simulator
/// and tests; missing required strings are written as empty strings.
pub fn encode_survey(raw: &RawSurvey) -> Vec<u8> {
    let mut w = DatumWriter {
        out: frame(SURVEY_SCHEMA_ID, &[]),
    };
    w.required(&raw.submission_id);
    w.required(&raw.framework);
    w.required(&raw.submitted_at);
    w.required(&raw.province_code);
    w.optional(&raw.province_code_system);
    w.required(&raw.agency_id);
    w.required(&raw.agency_level);
    w.optional(&raw.procedure_code);
    w.required(&raw.channel);
    w.required(&raw.respondent_type);
    let answers = raw.answers.as_deref().unwrap_or_default();
    if !answers.is_empty() {
        w.long(answers.len() as i64);
        for (criterion, answer) in answers {
            w.string(criterion);
            match answer {
                RawAnswer::Integer(i) => {
                    w.long(1);
                    w.long(i64::from(i32::try_from(*i).unwrap_or(i32::MAX)));
                }
                _ => w.long(0),
            }
        }
    }
    w.long(0);
    match &raw.expectations {
        Some(items) => {
            w.long(1);
            if !items.is_empty() {
                w.long(items.len() as i64);
                items.iter().for_each(|item| w.string(item));
            }
            w.long(0);
        }
        None => w.long(0),
    }
    w.out
}

/// Encodes a hotline event with the shipped v1 schema (Confluent-framed).
pub fn encode_hotline(raw: &RawHotline) -> Vec<u8> {
    let mut w = DatumWriter {
        out: frame(HOTLINE_SCHEMA_ID, &[]),
    };
    w.required(&raw.event_id);
    w.required(&raw.ticket_id);
    w.required(&raw.event_type);
    w.required(&raw.occurred_at);
    w.required(&raw.province_code);
    for optional in [
        &raw.province_code_system,
        &raw.channel,
        &raw.category,
        &raw.agency_id,
        &raw.due_at,
        &raw.rating,
        &raw.reason,
        &raw.reporter_phone,
        &raw.reporter_email,
    ] {
        w.optional(optional);
    }
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey() -> RawSurvey {
        RawSurvey {
            submission_id: Some("s-1".into()),
            framework: Some("BNV-2640-2017".into()),
            submitted_at: Some("2026-11-21T08:00:00+07:00".into()),
            province_code: Some("79".into()),
            province_code_system: None,
            agency_id: Some("79-commune-001".into()),
            agency_level: Some("commune".into()),
            procedure_code: Some("1.000123".into()),
            channel: Some("one_stop".into()),
            respondent_type: Some("citizen".into()),
            answers: Some(vec![
                ("access.1".into(), RawAnswer::Integer(5)),
                ("staff.2".into(), RawAnswer::NoAnswer),
            ]),
            expectations: Some(vec!["expect.shorter_time".into()]),
        }
    }

    #[test]
    fn hand_encoding_matches_the_schema_and_round_trips() {
        let bytes = encode_survey(&survey());
        assert_eq!(framed_schema_id(&bytes), Some(SURVEY_SCHEMA_ID));
        let readers = ReaderSchemas::default();
        let value = decode_datum(&readers.survey, &readers.survey, &bytes[5..]).unwrap();
        let raw = to_raw_survey(value).unwrap();
        let mut expected = survey();
        expected
            .answers
            .as_mut()
            .unwrap()
            .sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(raw, expected);
        assert_eq!(encode_survey(&survey()), bytes, "deterministic");

        let hotline = RawHotline {
            event_id: Some("e".into()),
            ticket_id: Some("t".into()),
            event_type: Some("rated".into()),
            occurred_at: Some("2026-11-21T08:00:00+07:00".into()),
            province_code: Some("01".into()),
            rating: Some("satisfied".into()),
            reporter_phone: Some("0901234567".into()),
            ..Default::default()
        };
        let bytes = encode_hotline(&hotline);
        let value = decode_datum(&readers.hotline, &readers.hotline, &bytes[5..]).unwrap();
        assert_eq!(to_raw_hotline(value).unwrap(), hotline);
    }

    #[test]
    fn truncated_or_garbage_datums_are_rejected() {
        let readers = ReaderSchemas::default();
        let bytes = encode_survey(&survey());
        // apache-avro tolerates a missing block terminator at the very end, so not every cut
        // fails; none may panic, and cuts inside the leading string fields must fail.
        let failures = (5..bytes.len())
            .filter(|cut| decode_datum(&readers.survey, &readers.survey, &bytes[5..*cut]).is_err())
            .count();
        assert!(
            failures >= bytes.len() - 10,
            "{failures} of {} cuts rejected",
            bytes.len() - 5
        );
        for cut in 5..40 {
            assert!(
                decode_datum(&readers.survey, &readers.survey, &bytes[5..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = bytes[5..].to_vec();
        trailing.push(0);
        assert!(decode_datum(&readers.survey, &readers.survey, &trailing).is_err());
    }
}
