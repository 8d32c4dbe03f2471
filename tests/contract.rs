//! The event contract end to end in memory: both encodings, schema evolution, dead-letter
//! payloads without personal data, and a property test that no input makes a decoder panic.
use std::path::Path;
use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::Schema;
use proptest::prelude::*;

use sipas_stream::contract::avro::{self, SchemaCatalog};
use sipas_stream::contract::pii::PiiHasher;
use sipas_stream::contract::raw::{RawAnswer, RawHotline, RawSurvey};
use sipas_stream::contract::validate::Validator;
use sipas_stream::contract::{Decoded, Decoder, Encoding, EventKind, RejectReason};
use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn decoder_with(catalog: SchemaCatalog) -> Decoder {
    let validator = Validator {
        provinces: ProvinceRegistry::builtin(),
        frameworks: FrameworkCatalog::load_dir(&root().join("config/frameworks")).unwrap(),
        pii: PiiHasher::new(b"contract-test-secret"),
    };
    Decoder::new(validator, Arc::new(catalog), 64 * 1024)
}

fn decoder() -> &'static Decoder {
    static DECODER: std::sync::LazyLock<Decoder> = std::sync::LazyLock::new(|| {
        decoder_with(SchemaCatalog::load_dir(&root().join("schemas")).unwrap())
    });
    &DECODER
}

/// A receive instant after the fixtures' event times (2026-11-21).
fn received() -> Option<i64> {
    Some(sipas_stream::domain::time::parse_rfc3339("2026-11-21T12:00:00+07:00").unwrap())
}

fn survey() -> RawSurvey {
    RawSurvey {
        submission_id: Some("s-42".into()),
        framework: Some("BNV-2640-2017".into()),
        submitted_at: Some("2026-11-21T09:30:00+07:00".into()),
        province_code: Some("79".into()),
        province_code_system: None,
        agency_id: Some("79-province-000".into()),
        agency_level: Some("province".into()),
        procedure_code: None,
        channel: Some("online".into()),
        respondent_type: Some("organization".into()),
        answers: Some(vec![
            ("access.1".into(), RawAnswer::Integer(4)),
            ("feedback.4".into(), RawAnswer::NoAnswer),
        ]),
        expectations: None,
    }
}

#[test]
fn json_and_avro_decode_to_the_same_event() {
    let decoder = decoder();
    let json = sipas_stream::simulate::generator::survey_json(&survey());
    let avro = avro::encode_survey(&survey());
    let (from_json, e1) = decoder
        .decode(EventKind::Survey, &json, received())
        .unwrap();
    let (from_avro, e2) = decoder
        .decode(EventKind::Survey, &avro, received())
        .unwrap();
    assert_eq!((e1, e2), (Encoding::Json, Encoding::Avro));
    assert_eq!(from_json, from_avro);
    let Decoded::Survey(s) = from_json else {
        panic!("a survey")
    };
    assert_eq!(s.answers.iter().filter(|(_, a)| a.is_some()).count(), 1);
}

fn v2_schema() -> Schema {
    Schema::parse_str(
        &std::fs::read_to_string(root().join("tests/fixtures/survey_submission.v2.avsc")).unwrap(),
    )
    .unwrap()
}

fn v2_record(device: Option<&str>) -> Value {
    let raw = survey();
    let s = |v: &Option<String>| Value::String(v.clone().unwrap_or_default());
    let opt = |v: Option<&str>| match v {
        Some(v) => Value::Union(1, Box::new(Value::String(v.into()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let answers = [(
        "access.1".to_string(),
        Value::Union(1, Box::new(Value::Int(5))),
    )]
    .into_iter()
    .collect();
    Value::Record(vec![
        ("submission_id".into(), s(&raw.submission_id)),
        ("framework".into(), s(&raw.framework)),
        ("submitted_at".into(), s(&raw.submitted_at)),
        ("province_code".into(), s(&raw.province_code)),
        ("province_code_system".into(), opt(None)),
        ("agency_id".into(), s(&raw.agency_id)),
        ("agency_level".into(), s(&raw.agency_level)),
        ("procedure_code".into(), opt(Some("1.000001"))),
        ("channel".into(), s(&raw.channel)),
        ("respondent_type".into(), s(&raw.respondent_type)),
        ("answers".into(), Value::Map(answers)),
        (
            "expectations".into(),
            Value::Union(0, Box::new(Value::Null)),
        ),
        ("device".into(), opt(device)),
    ])
}

#[test]
fn a_newer_writer_with_an_added_optional_field_is_read_by_this_reader() {
    let catalog = SchemaCatalog::builtin();
    catalog.insert(3, v2_schema());
    let decoder = decoder_with(catalog);
    let datum = apache_avro::to_avro_datum(&v2_schema(), v2_record(Some("kiosk-7"))).unwrap();
    let (event, encoding) = decoder
        .decode(EventKind::Survey, &avro::frame(3, &datum), None)
        .unwrap();
    assert_eq!(encoding, Encoding::Avro);
    let Decoded::Survey(s) = event else {
        panic!("a survey")
    };
    assert_eq!(s.submission_id, "s-42");
    assert_eq!(s.procedure_code.as_deref(), Some("1.000001"));
}

#[test]
fn an_older_writer_is_read_by_a_newer_reader_with_the_default() {
    let v1_bytes = avro::encode_survey(&survey());
    let v1 = Schema::parse_str(avro::SURVEY_SCHEMA_V1).unwrap();
    let value = avro::decode_datum(&v1, &v2_schema(), &v1_bytes[5..]).unwrap();
    let Value::Record(fields) = value else {
        panic!("a record")
    };
    let device = fields
        .iter()
        .find(|(name, _)| name == "device")
        .map(|(_, v)| v.clone());
    assert_eq!(device, Some(Value::Union(0, Box::new(Value::Null))));
}

#[test]
fn unknown_schema_id_is_undecodable() {
    let datum = apache_avro::to_avro_datum(&v2_schema(), v2_record(None)).unwrap();
    let rejected = decoder()
        .decode(EventKind::Survey, &avro::frame(99, &datum), None)
        .unwrap_err();
    assert_eq!(rejected.reject.reason, RejectReason::Undecodable);
    assert!(rejected.reject.detail.contains("99"));
}

#[test]
fn oversize_is_checked_before_decoding() {
    let mut value = serde_json::to_value(RawHotline {
        event_id: Some("e".into()),
        ..Default::default()
    })
    .unwrap();
    value["padding"] = "x".repeat(65 * 1024).into();
    let rejected = decoder()
        .decode(
            EventKind::Hotline,
            &serde_json::to_vec(&value).unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(rejected.reject.reason, RejectReason::Oversize);
}

#[test]
fn hotline_dead_letters_never_carry_clear_personal_data() {
    let decoder = decoder();
    let phone = "0912345678";
    let email = "nguyen.van.a@example.vn";
    let invalid = RawHotline {
        event_id: Some("e-1".into()),
        ticket_id: Some("t-1".into()),
        event_type: Some("received".into()),
        occurred_at: Some("2026-11-21T09:00:00+07:00".into()),
        province_code: Some("01".into()),
        // missing channel/category/due_at -> missing_type_field
        reporter_phone: Some(phone.into()),
        reporter_email: Some(email.into()),
        ..Default::default()
    };
    // Valid, but dated in the future: refused after validation, from the original bytes.
    let future = RawHotline {
        event_type: Some("closed".into()),
        occurred_at: Some("2036-11-21T09:00:00+07:00".into()),
        ..invalid.clone()
    };
    let payloads = [
        serde_json::to_vec(&invalid).unwrap(),
        avro::encode_hotline(&invalid),
        serde_json::to_vec(&future).unwrap(),
        avro::encode_hotline(&future),
        format!(
            r#"{{"event_id": "e-2", "reporter_phone": "{phone}", "reporter_email": "{email}", "#
        )
        .into_bytes(),
    ];
    for payload in payloads {
        let rejected = decoder
            .decode(EventKind::Hotline, &payload, received())
            .unwrap_err();
        let letter = rejected.dlq_payload.expect("hotline letters are redacted");
        let text = String::from_utf8_lossy(&letter);
        assert!(
            !text.contains(phone) && !text.contains("912345678"),
            "{text}"
        );
        assert!(!text.contains(email), "{text}");
        assert!(!rejected.reject.detail.contains(phone) && !rejected.reject.detail.contains(email));
    }
}

/// The payloads of `tests/fixtures/pii_corpus.toml`, refused on either topic: neither the
/// letter nor the detail holds what the corpus lists as absent.
#[test]
fn corpus_payloads_are_refused_without_their_personal_data_on_either_topic() {
    #[derive(serde::Deserialize)]
    struct Corpus {
        payload: Vec<Payload>,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        name: String,
        input: String,
        absent: Vec<String>,
    }
    let corpus: Corpus =
        toml::from_str(include_str!("fixtures/pii_corpus.toml")).expect("the corpus parses");
    let readable = |text: &str| -> String {
        text.replace("\\u0040", "@")
            .chars()
            .filter_map(|c| match c {
                '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
                c if " .-/_()\u{a0}\u{3000}".contains(c) => None,
                c => Some(c),
            })
            .collect()
    };
    for case in corpus.payload {
        for kind in [EventKind::Survey, EventKind::Hotline] {
            let Err(rejected) = decoder().decode(kind, case.input.as_bytes(), received()) else {
                continue;
            };
            let letter = rejected
                .dlq_payload
                .unwrap_or_else(|| case.input.clone().into_bytes());
            let letter = readable(&String::from_utf8_lossy(&letter));
            let detail = readable(&rejected.reject.detail);
            for absent in &case.absent {
                let absent = readable(absent);
                assert!(
                    !letter.contains(&absent) && !detail.contains(&absent),
                    "{} on {kind:?}: {absent} in {letter} / {detail}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn survey_dead_letters_keep_the_original_bytes() {
    let rejected = decoder()
        .decode(EventKind::Survey, b"not json", None)
        .unwrap_err();
    assert_eq!(rejected.reject.reason, RejectReason::Undecodable);
    assert_eq!(rejected.dlq_payload, None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_bytes_make_the_decoder_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), hotline in any::<bool>(), received in any::<Option<i64>>()) {
        let kind = if hotline { EventKind::Hotline } else { EventKind::Survey };
        let _ = decoder().decode(kind, &bytes, received);
        let mut framed = avro::frame(if hotline { 2 } else { 1 }, &[]);
        framed.extend_from_slice(&bytes);
        let _ = decoder().decode(kind, &framed, received);
    }

    #[test]
    fn mutated_valid_messages_never_panic_and_rejections_have_reasons(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        avro_encoded in any::<bool>(),
        received in any::<i64>(),
    ) {
        let mut bytes = if avro_encoded { avro::encode_survey(&survey()) } else { sipas_stream::simulate::generator::survey_json(&survey()) };
        for (index, byte) in flips {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        if let Err(rejected) = decoder().decode(EventKind::Survey, &bytes, Some(received)) {
            prop_assert!(!rejected.reject.detail.is_empty());
        }
    }
}

#[test]
fn a_valid_event_from_the_future_is_refused_in_both_encodings() {
    let decoder = decoder();
    let mut future = survey();
    future.submitted_at = Some("2036-11-21T08:30:00+07:00".into());
    for payload in [
        sipas_stream::simulate::generator::survey_json(&future),
        avro::encode_survey(&future),
    ] {
        let rejected = decoder
            .decode(EventKind::Survey, &payload, received())
            .unwrap_err();
        assert_eq!(rejected.reject.reason, RejectReason::FutureTimestamp);
        assert_eq!(rejected.reject.reason.code(), "future_timestamp");
        assert!(
            rejected.reject.detail.contains("3652 days")
                && rejected.reject.detail.contains("limit 1 day"),
            "{}",
            rejected.reject.detail
        );
        assert_eq!(
            rejected.dlq_payload, None,
            "survey letters keep their bytes"
        );
        // Without a receive time there is nothing to compare with.
        assert!(decoder.decode(EventKind::Survey, &payload, None).is_ok());
    }
    // Old events stay accepted, however old.
    let mut old = survey();
    old.submitted_at = Some("2016-01-04T08:00:00+07:00".into());
    assert!(decoder
        .decode(EventKind::Survey, &avro::encode_survey(&old), received())
        .is_ok());
}
