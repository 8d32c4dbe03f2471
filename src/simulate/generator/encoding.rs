//! The JSON forms of generated events (producers' JSON, NDJSON lines) and reading back
//! what the generator encoded.
use super::SimEvent;
use crate::contract::decode::EventKind;
use crate::contract::raw::{RawAnswer, RawHotline, RawSurvey};

pub(super) fn decode_generated_survey(payload: &[u8]) -> RawSurvey {
    if let Some(id) = crate::contract::avro::framed_schema_id(payload) {
        let catalog = crate::contract::avro::SchemaCatalog::builtin();
        let schema = catalog.get(id).expect("generated with a shipped schema");
        let value = crate::contract::avro::decode_datum(&schema, &schema, &payload[5..])
            .expect("generated Avro decodes");
        return crate::contract::avro::to_raw_survey(value).expect("a survey record");
    }
    crate::contract::json::decode_survey(payload).expect("generated JSON decodes")
}

pub(super) fn decode_generated_hotline(payload: &[u8]) -> RawHotline {
    if let Some(id) = crate::contract::avro::framed_schema_id(payload) {
        let catalog = crate::contract::avro::SchemaCatalog::builtin();
        let schema = catalog.get(id).expect("generated with a shipped schema");
        let value = crate::contract::avro::decode_datum(&schema, &schema, &payload[5..])
            .expect("generated Avro decodes");
        return crate::contract::avro::to_raw_hotline(value).expect("a hotline record");
    }
    crate::contract::json::decode_hotline(payload).expect("generated JSON decodes")
}

/// The JSON form of a survey, as producers send it.
pub fn survey_value(raw: &RawSurvey) -> serde_json::Value {
    let answers: serde_json::Map<String, serde_json::Value> = raw
        .answers
        .iter()
        .flatten()
        .map(|(criterion, answer)| {
            let value = match answer {
                RawAnswer::Integer(i) => serde_json::Value::from(*i),
                RawAnswer::NoAnswer | RawAnswer::NotAnInteger(_) => serde_json::Value::Null,
            };
            (criterion.clone(), value)
        })
        .collect();
    let mut object = serde_json::Map::new();
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(v) = value {
            object.insert(key.into(), v.clone().into());
        }
    };
    put("submission_id", &raw.submission_id);
    put("framework", &raw.framework);
    put("submitted_at", &raw.submitted_at);
    put("province_code", &raw.province_code);
    put("province_code_system", &raw.province_code_system);
    put("agency_id", &raw.agency_id);
    put("agency_level", &raw.agency_level);
    put("procedure_code", &raw.procedure_code);
    put("channel", &raw.channel);
    put("respondent_type", &raw.respondent_type);
    object.insert("answers".into(), answers.into());
    if let Some(items) = &raw.expectations {
        object.insert("expectations".into(), items.clone().into());
    }
    serde_json::Value::Object(object)
}

pub fn survey_json(raw: &RawSurvey) -> Vec<u8> {
    serde_json::to_vec(&survey_value(raw)).expect("serialisable")
}

/// One NDJSON line for a generated event: Avro payloads are converted to their JSON form,
/// undecodable payloads are kept as they are (with newlines escaped away).
pub fn as_json_line(event: &SimEvent) -> Vec<u8> {
    if crate::contract::avro::framed_schema_id(&event.payload).is_none() {
        return event
            .payload
            .iter()
            .map(|b| if *b == b'\n' { b' ' } else { *b })
            .collect();
    }
    match event.kind {
        EventKind::Survey => survey_json(&decode_generated_survey(&event.payload)),
        EventKind::Hotline => {
            serde_json::to_vec(&decode_generated_hotline(&event.payload)).expect("serialisable")
        }
    }
}
