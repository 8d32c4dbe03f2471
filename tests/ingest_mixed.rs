//! A mixed set through the real broker and ClickHouse: JSON and Avro, valid and each kind of
//! invalid, duplicates, 2004-system codes. Exact row counts in the dedup views and exact
//! dead-letter counts per reason.
mod support;

use std::collections::BTreeMap;

use sipas_stream::contract::avro;
use sipas_stream::contract::raw::{RawAnswer, RawHotline, RawSurvey};
use sipas_stream::simulate::generator::survey_json;
use support::*;

const PHONE: &str = "0987654321";
const EMAIL: &str = "reporter.private@example.vn";

fn survey(id: &str, province: &str, at: &str) -> RawSurvey {
    RawSurvey {
        submission_id: Some(id.into()),
        framework: Some("BNV-2640-2017".into()),
        submitted_at: Some(at.into()),
        province_code: Some(province.into()),
        province_code_system: None,
        agency_id: Some(format!("{province}-commune-001")),
        agency_level: Some("commune".into()),
        procedure_code: Some("1.000001".into()),
        channel: Some("one_stop".into()),
        respondent_type: Some("citizen".into()),
        answers: Some(vec![
            ("access.1".into(), RawAnswer::Integer(5)),
            ("procedure.2".into(), RawAnswer::Integer(3)),
            ("staff.1".into(), RawAnswer::NoAnswer),
            ("feedback.4".into(), RawAnswer::Integer(4)),
        ]),
        expectations: Some(vec!["expect.shorter_time".into()]),
    }
}

fn json_with(
    raw: &RawSurvey,
    patch: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    let mut value = sipas_stream::simulate::generator::survey_value(raw);
    patch(value.as_object_mut().unwrap());
    serde_json::to_vec(&value).unwrap()
}

fn hotline(event: &str, ticket: &str, kind: &str) -> RawHotline {
    RawHotline {
        event_id: Some(event.into()),
        ticket_id: Some(ticket.into()),
        event_type: Some(kind.into()),
        occurred_at: Some("2026-11-20T10:00:00+07:00".into()),
        province_code: Some("01".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn mixed_set_lands_exactly_once_and_bad_input_is_explained() {
    let env = TestEnv::new("mixed").await;
    let producer = env.producer();
    let (surveys, hotline_topic) = (
        env.config.kafka.surveys_topic.clone(),
        env.config.kafka.hotline_topic.clone(),
    );
    let mut expected_reasons: BTreeMap<&str, usize> = BTreeMap::new();

    // --- valid surveys: 40 JSON + 40 Avro across provinces, one pre-merger day.
    let provinces = ["01", "79", "48", "31", "52"];
    for i in 0..80 {
        let raw = survey(
            &format!("s-{i}"),
            provinces[i % provinces.len()],
            "2026-11-20T09:00:00+07:00",
        );
        let payload = if i % 2 == 0 {
            survey_json(&raw)
        } else {
            avro::encode_survey(&raw)
        };
        env.produce(
            &producer,
            &surveys,
            provinces[i % provinces.len()],
            &payload,
        )
        .await;
    }
    // 2004-system codes: implied by date (64 = Gia Lai 2004 -> 52) and explicit after the merger (74 -> 79).
    env.produce(
        &producer,
        &surveys,
        "52",
        &survey_json(&survey("s-old-implied", "64", "2025-03-01T10:00:00+07:00")),
    )
    .await;
    let mut explicit = survey("s-old-explicit", "74", "2026-11-20T09:00:00+07:00");
    explicit.province_code_system = Some("2004".into());
    env.produce(&producer, &surveys, "79", &avro::encode_survey(&explicit))
        .await;
    // Duplicates: byte-identical retries and the same submission in the other encoding.
    for i in [0, 1, 2] {
        let raw = survey(
            &format!("s-{i}"),
            provinces[i % provinces.len()],
            "2026-11-20T09:00:00+07:00",
        );
        env.produce(&producer, &surveys, "01", &survey_json(&raw))
            .await;
        env.produce(&producer, &surveys, "01", &avro::encode_survey(&raw))
            .await;
    }
    let valid_surveys = 82;

    // --- invalid surveys, one per reason.
    let base = survey("s-bad", "01", "2026-11-20T09:00:00+07:00");
    let mut bad = |reason: &'static str, payload: Vec<u8>| {
        *expected_reasons.entry(reason).or_default() += 1;
        payload
    };
    let invalid_surveys = vec![
        bad("undecodable", b"{\"submission_id\": ".to_vec()),
        bad("undecodable", avro::frame(1, &[0xff, 0xff, 0xff])),
        bad(
            "missing_field",
            json_with(&base, |o| {
                o.remove("agency_id");
            }),
        ),
        bad(
            "bad_timestamp",
            json_with(&base, |o| {
                o.insert("submitted_at".into(), "20/11/2026".into());
            }),
        ),
        bad(
            "unknown_province",
            json_with(&base, |o| {
                o.insert("province_code".into(), "64".into());
            }),
        ),
        bad(
            "unknown_framework",
            json_with(&base, |o| {
                o.insert("framework".into(), "SIPAS-1900".into());
            }),
        ),
        bad(
            "unknown_criterion",
            json_with(&base, |o| {
                o["answers"]["access.77"] = 4.into();
            }),
        ),
        bad(
            "unknown_expectation",
            json_with(&base, |o| {
                o["expectations"] = serde_json::json!(["expect.nothing"]);
            }),
        ),
        bad(
            "answer_out_of_range",
            json_with(&base, |o| {
                o["answers"]["access.1"] = 9.into();
            }),
        ),
        bad(
            "unknown_enum_value",
            json_with(&base, |o| {
                o.insert("respondent_type".into(), "robot".into());
            }),
        ),
        bad(
            "oversize",
            json_with(&base, |o| {
                o.insert("note".into(), "x".repeat(70_000).into());
            }),
        ),
    ];
    for payload in &invalid_surveys {
        env.produce(&producer, &surveys, "01", payload).await;
    }

    // --- hotline: a full ticket (JSON and Avro), with personal data.
    let mut received = hotline("h-1", "t-1", "received");
    received.channel = Some("phone".into());
    received.category = Some("traffic".into());
    received.due_at = Some("2026-11-25T10:00:00+07:00".into());
    received.reporter_phone = Some(PHONE.into());
    received.reporter_email = Some(EMAIL.into());
    let mut forwarded = hotline("h-2", "t-1", "forwarded");
    forwarded.agency_id = Some("01-commune-007".into());
    forwarded.due_at = Some("2026-11-25T10:00:00+07:00".into());
    let responded = hotline("h-3", "t-1", "responded");
    let mut rated = hotline("h-4", "t-1", "rated");
    rated.rating = Some("satisfied".into());
    let closed = hotline("h-5", "t-1", "closed");
    let mut old = hotline("h-6", "t-2", "rejected");
    old.reason = Some("duplicate report".into());
    old.occurred_at = Some("2025-05-05T10:00:00+07:00".into());
    old.province_code = Some("74".into()); // 2004 system by date: Bình Dương -> 79
    let valid_hotline = [&received, &forwarded, &responded, &rated, &closed, &old];
    for (i, event) in valid_hotline.iter().enumerate() {
        let payload = if i % 2 == 0 {
            serde_json::to_vec(event).unwrap()
        } else {
            avro::encode_hotline(event)
        };
        env.produce(&producer, &hotline_topic, "01", &payload).await;
    }
    env.produce(
        &producer,
        &hotline_topic,
        "01",
        &avro::encode_hotline(&received),
    )
    .await; // duplicate
    let mut missing_type_field = hotline("h-bad-1", "t-3", "rated");
    missing_type_field.reporter_phone = Some(PHONE.into());
    let mut unknown_type = hotline("h-bad-2", "t-3", "escalated");
    unknown_type.reporter_email = Some(EMAIL.into());
    let invalid_hotline = vec![
        bad(
            "missing_type_field",
            serde_json::to_vec(&missing_type_field).unwrap(),
        ),
        bad("unknown_enum_value", avro::encode_hotline(&unknown_type)),
        bad(
            "undecodable",
            format!("{{\"event_id\": \"h-bad-3\", \"reporter_phone\": \"{PHONE}\", ").into_bytes(),
        ),
    ];
    for payload in &invalid_hotline {
        env.produce(&producer, &hotline_topic, "01", payload).await;
    }
    let expected_letters: usize = expected_reasons.values().sum();

    // --- run the pipeline until everything is in.
    let mut pipeline = Pipeline::start(&env);
    wait_for("all valid rows", || async {
        env.count("SELECT count() AS n FROM survey_submissions_dedup")
            .await
            == valid_surveys
            && env
                .count("SELECT count() AS n FROM hotline_events_dedup")
                .await
                == valid_hotline.len() as u64
    })
    .await;
    let letters = env.dead_letters(expected_letters).await;
    let metrics = pipeline.metrics().await;
    assert!(pipeline.terminate().success(), "clean exit on SIGTERM");

    // Exact counts, after the pipeline stopped (nothing more can arrive).
    assert_eq!(
        env.count("SELECT count() AS n FROM survey_submissions_dedup")
            .await,
        valid_surveys
    );
    assert_eq!(
        env.count("SELECT uniqExact(submission_id) AS n FROM survey_submissions")
            .await,
        valid_surveys
    );
    assert!(
        env.count("SELECT count() AS n FROM survey_submissions")
            .await
            >= valid_surveys
    );
    assert_eq!(
        env.count("SELECT count() AS n FROM hotline_events_dedup")
            .await,
        6
    );
    assert_eq!(
        env.count("SELECT count() AS n FROM survey_answers WHERE submission_id = 's-0'")
            .await,
        22
    );
    assert_eq!(env.count("SELECT count() AS n FROM survey_answers WHERE submission_id = 's-0' AND score IS NOT NULL").await, 3);
    let expected_by_reason: BTreeMap<String, usize> = expected_reasons
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(letters.reasons(), expected_by_reason);
    assert_eq!(
        letters.total, expected_letters,
        "one letter per bad message"
    );
    for (reason, count) in &expected_by_reason {
        let line = format!("sipas_dlq_messages_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_sum(&metrics, &line), *count as f64, "metric {line}");
    }
    for headers in letters.by_source.values() {
        assert!(!headers["detail"].is_empty());
        assert!(headers["source_topic"] == surveys || headers["source_topic"] == hotline_topic);
    }

    // Province normalisation is stored with both codes.
    assert_eq!(env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE submission_id = 's-old-implied' AND province_code = '52' AND province_code_original = '64' AND province_code_system = 2004").await, 1);
    assert_eq!(env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE submission_id = 's-old-explicit' AND province_code = '79' AND province_code_original = '74' AND province_code_system = 2004").await, 1);
    assert_eq!(env.count("SELECT count() AS n FROM hotline_events_dedup WHERE event_id = 'h-6' AND province_code = '79' AND province_code_system = 2004").await, 1);
    // Both encodings landed (which copy of a duplicate survives is ClickHouse's choice).
    assert!(
        env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE encoding = 'avro'")
            .await
            >= 40
    );
    assert!(
        env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE encoding = 'json'")
            .await
            >= 38
    );

    // Personal data: hashed in ClickHouse, never in clear, nor in any dead letter.
    assert_eq!(env.count("SELECT count() AS n FROM hotline_events_dedup WHERE length(reporter_phone_hash) = 64 AND length(reporter_email_hash) = 64").await, 1);
    let clear = format!(
        "SELECT count() AS n FROM hotline_events WHERE position(concat(event_id, ticket_id, reporter_phone_hash, reporter_email_hash, reason, agency_id), '{}') > 0 OR position(concat(reporter_phone_hash, reporter_email_hash), '{}') > 0",
        PHONE, EMAIL
    );
    assert_eq!(env.count(&clear).await, 0);
    for payload in &letters.payloads {
        let text = String::from_utf8_lossy(payload);
        assert!(
            !text.contains(PHONE) && !text.contains(EMAIL),
            "clear personal data in a dead letter: {text}"
        );
    }
    let log =
        std::fs::read_to_string(log_path(&format!("mixed-{}.log", pipeline.metrics_port))).unwrap();
    assert!(
        !log.contains(PHONE) && !log.contains(EMAIL),
        "clear personal data in the log"
    );
}
