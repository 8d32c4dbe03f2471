//! Hostile requests against a running `sipas gateway` with the real broker: malformed and
//! truncated JSON, bodies nested 100,000 deep, huge numbers, a 100 MB body (declared and
//! chunked), a million-line NDJSON body, wrong content types and encodings, a token used for another
//! province, no token, unknown paths and methods. Every answer is a 4xx with a JSON body
//! naming the problem; the process's resident memory stays bounded; nothing of a refused
//! request reaches the topics; and the gateway still accepts a valid request afterwards.
mod support;

use serde_json::{json, Value};
use support::gateway::{memory_kib, post_with, request, start_gateway, tokens_file, Reply};
use support::*;

const HCM_TOKEN: &str = "hostile-hcm-token-3c9e0a71f2";
/// Resident memory the gateway must stay under (its body limit here is 8 MiB): a bound on
/// memory, not on time.
const MEMORY_BOUND_KIB: u64 = 512 * 1024;

fn survey(id: &str, province: &str) -> Value {
    json!({
        "submission_id": id, "framework": "BNV-2640-2017", "submitted_at": "2026-11-20T09:00:00+07:00",
        "province_code": province, "agency_id": format!("{province}-commune-001"), "agency_level": "commune",
        "channel": "online", "respondent_type": "citizen", "answers": {"access.1": 5, "staff.2": 4}
    })
}

fn line(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// A survey line with `answer` written verbatim as the value of `access.1`.
fn with_answer(id: &str, answer: &str) -> Vec<u8> {
    String::from_utf8(line(&survey(id, "79")))
        .unwrap()
        .replace("\"access.1\":5", &format!("\"access.1\":{answer}"))
        .into_bytes()
}

fn ndjson_headers(content_type: &str) -> Vec<String> {
    vec![
        format!("Content-Type: {content_type}"),
        format!("Authorization: Bearer {HCM_TOKEN}"),
    ]
}

/// A refused request: its status, the `error` code and, for 422/403, the first record's reason.
struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<String>,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
    record_reason: Option<&'static str>,
}

fn case(what: &'static str, body: Vec<u8>, status: u16, error: &'static str) -> Case {
    Case {
        what,
        method: "POST",
        path: "/api/v1/surveys",
        headers: ndjson_headers("application/x-ndjson"),
        body,
        status,
        error,
        record_reason: None,
    }
}

fn assert_refused(case: &Case, reply: &Reply) {
    let what = case.what;
    assert_eq!(
        reply.status,
        case.status,
        "{what}: {}",
        &reply.text[..reply.text.len().min(500)]
    );
    assert!(
        reply.headers.contains("content-type: application/json"),
        "{what}: {}",
        reply.headers
    );
    assert_eq!(reply.body["error"], case.error, "{what}: {}", reply.body);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.len() >= 10,
        "{what}: no message naming the problem: {}",
        reply.body
    );
    if let Some(reason) = case.record_reason {
        let first = &reply.body["results"][0];
        assert_eq!(first["status"], "rejected", "{what}: {}", reply.body);
        assert_eq!(first["reason"], reason, "{what}: {}", reply.body);
        assert!(
            first["detail"].as_str().is_some_and(|d| d.len() >= 10),
            "{what}: {}",
            reply.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn hostile_requests_are_refused_with_reasons_in_bounded_memory_and_produce_nothing() {
    let env = TestEnv::new("gateway_hostile").await;
    let tokens = tokens_file("gateway-hostile", &[("hcm", HCM_TOKEN, &["79"])]);
    // 8 MiB bodies, so that a million NDJSON lines reach the record count; no rate limit.
    let (gateway, base) = start_gateway(
        &env,
        &tokens,
        &[
            ("SIPAS__GATEWAY__MAX_BODY_BYTES", "8388608"),
            ("SIPAS__GATEWAY__BURST", "1000000"),
            ("SIPAS__GATEWAY__REQUESTS_PER_SECOND", "1000000"),
        ],
    )
    .await;
    let pid = gateway.child.id();
    let (peak_before, _) = memory_kib(pid);

    let hundred_mb = vec![b'{'; 100 * 1024 * 1024];
    let million_lines = "{}\n".repeat(1_000_000).into_bytes();
    let mut cases = vec![
        Case {
            record_reason: Some("undecodable"),
            ..case(
                "malformed JSON",
                b"{\"submission_id\": \"x\",".to_vec(),
                422,
                "all_rejected",
            )
        },
        Case {
            record_reason: Some("undecodable"),
            ..case(
                "truncated NDJSON",
                [&line(&survey("hx-1", "79"))[..40], b"\n{\"a\":"].concat(),
                422,
                "all_rejected",
            )
        },
        Case {
            record_reason: Some("oversize"),
            ..case(
                "arrays nested 100,000 deep",
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
                422,
                "all_rejected",
            )
        },
        Case {
            record_reason: Some("oversize"),
            ..case(
                "objects nested 100,000 deep",
                format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)).into_bytes(),
                422,
                "all_rejected",
            )
        },
        Case {
            record_reason: Some("answer_out_of_range"),
            ..case(
                "an answer nested 20,000 deep (within the record size)",
                with_answer(
                    "hx-deep",
                    &format!("{}5{}", "[".repeat(20_000), "]".repeat(20_000)),
                ),
                422,
                "all_rejected",
            )
        },
        Case {
            record_reason: Some("undecodable"),
            ..case(
                "1e400",
                with_answer("hx-e400", "1e400"),
                422,
                "all_rejected",
            )
        },
        Case {
            record_reason: Some("answer_out_of_range"),
            ..case(
                "99999999999999999999999",
                with_answer("hx-big", "99999999999999999999999"),
                422,
                "all_rejected",
            )
        },
        Case {
            record_reason: Some("undecodable"),
            ..case("NaN", with_answer("hx-nan", "NaN"), 422, "all_rejected")
        },
        Case {
            record_reason: Some("undecodable"),
            ..case(
                "invalid UTF-8",
                String::from_utf8(line(&survey("hx-utf8", "79")))
                    .unwrap()
                    .into_bytes()
                    .into_iter()
                    .map(|b| if b == b'c' { 0xFF } else { b })
                    .collect(),
                422,
                "all_rejected",
            )
        },
        Case {
            record_reason: Some("undecodable"),
            ..case("NUL bytes", b"\0\0\0\n\0{}".to_vec(), 422, "all_rejected")
        },
        case("100 MB body", hundred_mb.clone(), 413, "body_too_large"),
        Case {
            headers: [
                ndjson_headers("application/x-ndjson"),
                vec!["Transfer-Encoding: chunked".into()],
            ]
            .concat(),
            ..case("100 MB chunked body", hundred_mb, 413, "body_too_large")
        },
        case(
            "a million NDJSON lines",
            million_lines,
            413,
            "too_many_records",
        ),
        case(
            "a million blank lines",
            "\n".repeat(1_000_000).into_bytes(),
            400,
            "empty_body",
        ),
        case("an empty body", Vec::new(), 400, "empty_body"),
        Case {
            record_reason: Some("province_not_allowed"),
            ..case(
                "a token for 79 sending for 01 (with a record for 79)",
                [
                    line(&survey("hx-79", "79")),
                    b"\n".to_vec(),
                    line(&survey("hx-01", "01")),
                ]
                .concat(),
                403,
                "province_not_allowed",
            )
        },
        Case {
            headers: vec!["Content-Type: application/x-ndjson".into()],
            ..case(
                "no token",
                line(&survey("hx-anon", "79")),
                401,
                "unauthorized",
            )
        },
        Case {
            headers: vec![
                "Content-Type: application/x-ndjson".into(),
                "Authorization: Bearer not-a-token".into(),
            ],
            ..case(
                "an unknown token",
                line(&survey("hx-unknown", "79")),
                401,
                "unauthorized",
            )
        },
        Case {
            method: "GET",
            ..case(
                "GET on an ingest route",
                Vec::new(),
                405,
                "method_not_allowed",
            )
        },
        Case {
            path: "/api/v1/surveys%00'%20OR%201=1",
            ..case(
                "an unknown path",
                line(&survey("hx-path", "79")),
                404,
                "not_found",
            )
        },
    ];
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=iso-8859-1",
        "application/json, text/plain",
    ] {
        cases.push(Case {
            headers: ndjson_headers(content_type),
            ..case(
                "a wrong content type",
                line(&survey("hx-type", "79")),
                415,
                "unsupported_media_type",
            )
        });
    }
    cases.push(Case {
        headers: [
            ndjson_headers("application/x-ndjson"),
            vec!["Content-Encoding: gzip".into()],
        ]
        .concat(),
        ..case(
            "a compressed body",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00".to_vec(),
            415,
            "unsupported_content_encoding",
        )
    });
    for case in &cases {
        let reply = if case.method == "POST" {
            post_with(&base, case.path, &case.headers, &case.body).await
        } else {
            request(&base, case.method, case.path, &case.headers, None).await
        };
        assert_refused(case, &reply);
    }

    let (peak_after, resident_after) = memory_kib(pid);
    eprintln!("gateway memory: peak {peak_before} KiB before, {peak_after} KiB after ({resident_after} KiB resident)");
    assert!(
        peak_after < MEMORY_BOUND_KIB,
        "the gateway's peak resident memory reached {peak_after} KiB (bound {MEMORY_BOUND_KIB} KiB)"
    );

    // Nothing of a refused request was produced.
    let k = &env.config.kafka;
    assert_eq!(topic_messages(&env, &k.surveys_topic).await, 0);
    assert_eq!(topic_messages(&env, &k.hotline_topic).await, 0);

    // Still serving: a valid request (with a BOM and CRLF, as an editor on Windows writes it).
    let valid = [
        b"\xEF\xBB\xBF".to_vec(),
        line(&survey("hx-ok-1", "79")),
        b"\r\n".to_vec(),
        line(&survey("hx-ok-2", "79")),
        b"\r\n".to_vec(),
    ]
    .concat();
    let reply = post_with(
        &base,
        "/api/v1/surveys",
        &ndjson_headers("application/x-ndjson; charset=utf-8"),
        &valid,
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.body["accepted"], 2, "{}", reply.body);
    assert_eq!(topic_messages(&env, &k.surveys_topic).await, 2);
    let produced = support::gateway::read_topic(&env, &k.surveys_topic, 2).await;
    let mut ids: Vec<&str> = produced
        .iter()
        .map(|(_, v)| v["submission_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["hx-ok-1", "hx-ok-2"]);

    let metrics = request(&base, "GET", "/metrics", &[], None).await.text;
    for (status, n) in [("413", 3.0), ("415", 7.0), ("422", 10.0), ("202", 1.0)] {
        assert_eq!(
            metric_sum(
                &metrics,
                &format!("sipas_gateway_requests_total{{status=\"{status}\"}}")
            ),
            n,
            "{status}: {metrics}"
        );
    }
}
