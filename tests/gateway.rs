//! The ingest gateway inside `sipas serve`, against the real broker and ClickHouse:
//! per-record results with 202 after acknowledgement, 401, 403 with nothing produced, 413
//! (body and record count), 429 (per-token bucket), 422 when nothing was valid; the accepted
//! records, and only those, arrive in the topics (keyed by province) and in ClickHouse.
mod support;

use serde_json::{json, Value};
use sipas_stream::gateway::tokens::hash_token;
use support::gateway::{post, read_topic, start_serve};
use support::*;

const HCM_TOKEN: &str = "hcm-token-4f1d9c0a7b2e";
const HANOI_TOKEN: &str = "hanoi-token-93ab51c7e0d4";

fn survey(id: &str, province: &str) -> Value {
    json!({
        "submission_id": id, "framework": "BNV-2640-2017", "submitted_at": "2026-11-20T09:00:00+07:00",
        "province_code": province, "agency_id": format!("{province}-commune-001"), "agency_level": "commune",
        "channel": "online", "respondent_type": "citizen",
        "answers": {"access.1": 5, "staff.2": 4, "result.1": null}
    })
}

fn hotline(id: &str) -> Value {
    json!({"event_id": id, "ticket_id": format!("t-{id}"), "type": "received", "occurred_at": "2026-11-20T08:00:00+07:00",
           "province_code": "01", "channel": "app", "category": "lighting", "due_at": "2026-11-22T08:00:00+07:00",
           "reporter_email": "nguoi.dan@example.vn"})
}

fn ndjson(records: &[Value]) -> Vec<u8> {
    records
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn gateway_validates_authorises_limits_and_produces() {
    let env = TestEnv::new("gateway").await;
    let tokens = log_path(&format!("gateway-tokens-{}.toml", std::process::id()));
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"hcm\"\nsha256 = \"{}\"\nprovinces = [\"79\"]\n\n\
             [[tokens]]\nname = \"hanoi\"\nsha256 = \"{}\"\nprovinces = [\"01\"]\nburst = 2\nrequests_per_second = 0.001\n",
            hash_token(HCM_TOKEN),
            hash_token(HANOI_TOKEN)
        ),
    )
    .unwrap();
    let settings: Vec<(String, String)> = [
        ("SIPAS__GATEWAY__MAX_RECORDS", "5".into()),
        ("SIPAS__GATEWAY__MAX_BODY_BYTES", "16384".into()),
        // Generous for hcm; the per-token setting makes hanoi's third request the one refused.
        ("SIPAS__GATEWAY__BURST", "100".into()),
        ("SIPAS__GATEWAY__REQUESTS_PER_SECOND", "0.001".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (mut server, base) = start_serve(&env, &tokens, settings).await;
    let log = log_path(&format!("gateway-{}.log", server.metrics_port));

    // 401: no token, another scheme, an unknown token.
    let body = ndjson(&[survey("g-401", "79")]);
    for token in [None, Some("not-a-configured-token")] {
        let reply = post(&base, "/api/v1/surveys", token, &body).await;
        assert_eq!(reply.status, 401, "{:?}", reply.body);
        assert!(reply.headers.contains("www-authenticate: bearer"));
        assert_eq!(reply.body["error"], "unauthorized");
    }

    // 202 with per-record results, in request order.
    let mut old_code = survey("g-2", "74");
    old_code["province_code_system"] = json!(2004); // Bình Dương (2004) is part of 79 now
    let mut robot = survey("g-3", "79");
    robot["respondent_type"] = json!("robot");
    let mut text = ndjson(&[survey("g-1", "79"), old_code, robot]);
    text.extend_from_slice(b"\n\n");
    text.extend_from_slice(&ndjson(&[survey("g-4", "79")]));
    let reply = post(&base, "/api/v1/surveys", Some(HCM_TOKEN), &text).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    assert_eq!(reply.body["accepted"], 3);
    assert_eq!(reply.body["rejected"], 1);
    let results = reply.body["results"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
                r["reason"].as_str().or(r["id"].as_str()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "accepted", "g-1"),
            (2, "accepted", "g-2"),
            (3, "rejected", "unknown_enum_value"),
            (5, "accepted", "g-4")
        ]
    );
    assert!(results[2]["detail"]
        .as_str()
        .unwrap()
        .contains("respondent_type"));

    // One pretty-printed object is one record.
    let single = serde_json::to_vec_pretty(&survey("g-5", "79")).unwrap();
    let reply = post(&base, "/api/v1/surveys", Some(HCM_TOKEN), &single).await;
    assert_eq!(
        (reply.status, reply.body["accepted"].as_u64()),
        (202, Some(1)),
        "{:?}",
        reply.body
    );

    // 403: one record for a province the token may not submit for refuses the whole request.
    let reply = post(
        &base,
        "/api/v1/surveys",
        Some(HCM_TOKEN),
        &ndjson(&[survey("g-403-a", "79"), survey("g-403-b", "01")]),
    )
    .await;
    assert_eq!(reply.status, 403, "{:?}", reply.body);
    assert_eq!(reply.body["error"], "province_not_allowed");
    assert_eq!(reply.body["results"][0]["index"], 1);

    // 422: nothing valid.
    let reply = post(
        &base,
        "/api/v1/surveys",
        Some(HCM_TOKEN),
        b"{\"submission_id\": \"g-bad\"}",
    )
    .await;
    assert_eq!(reply.status, 422, "{:?}", reply.body);
    assert_eq!(reply.body["results"][0]["reason"], "missing_field");

    // 413: too many records, too large a body.
    let six: Vec<Value> = (0..6)
        .map(|i| survey(&format!("g-413-{i}"), "79"))
        .collect();
    let reply = post(&base, "/api/v1/surveys", Some(HCM_TOKEN), &ndjson(&six)).await;
    assert_eq!(
        (reply.status, reply.body["error"].as_str()),
        (413, Some("too_many_records")),
        "{:?}",
        reply.body
    );
    let mut big = survey("g-413-big", "79");
    big["note"] = json!("x".repeat(20_000));
    let reply = post(&base, "/api/v1/surveys", Some(HCM_TOKEN), &ndjson(&[big])).await;
    assert_eq!(
        (reply.status, reply.body["error"].as_str()),
        (413, Some("body_too_large")),
        "{:?}",
        reply.body
    );

    // 429: hanoi's bucket holds two requests.
    for id in ["h-g-1", "h-g-2"] {
        let reply = post(
            &base,
            "/api/v1/hotline",
            Some(HANOI_TOKEN),
            &ndjson(&[hotline(id)]),
        )
        .await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
    }
    let reply = post(
        &base,
        "/api/v1/hotline",
        Some(HANOI_TOKEN),
        &ndjson(&[hotline("h-g-3")]),
    )
    .await;
    assert_eq!(reply.status, 429, "{:?}", reply.body);
    assert!(reply.headers.contains("retry-after:"));
    assert_eq!(reply.body["error"], "rate_limited");

    // Exactly the accepted records are in the topics, keyed by their 2025 province code.
    let k = &env.config.kafka;
    assert_eq!(topic_messages(&env, &k.surveys_topic).await, 4);
    assert_eq!(topic_messages(&env, &k.hotline_topic).await, 2);
    let surveys = read_topic(&env, &k.surveys_topic, 4).await;
    let mut ids: Vec<&str> = surveys
        .iter()
        .map(|(_, v)| v["submission_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["g-1", "g-2", "g-4", "g-5"]);
    assert!(surveys.iter().all(|(key, _)| key == "79"), "{surveys:?}");
    let hotline_messages = read_topic(&env, &k.hotline_topic, 2).await;
    assert!(hotline_messages.iter().all(|(key, _)| key == "01"));

    let metrics = server_metrics(&base).await;
    assert_eq!(
        metric_sum(
            &metrics,
            "sipas_gateway_records_total{kind=\"survey\",outcome=\"accepted\"}"
        ),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "sipas_gateway_requests_total{status=\"403\"}"),
        1.0
    );
    assert_eq!(
        metric_sum(&metrics, "sipas_gateway_requests_total{status=\"429\"}"),
        1.0
    );
    // The gateway's producer reports the broker it delivered to.
    assert_eq!(
        metric_sum(&metrics, "sipas_kafka_broker_up "),
        1.0,
        "{metrics}"
    );

    // ... and in ClickHouse once the pipeline has run.
    let pipeline = Pipeline::start(&env);
    wait_for("gateway records stored", || async {
        env.count("SELECT count() AS n FROM survey_submissions_dedup")
            .await
            == 4
            && env
                .count("SELECT count() AS n FROM hotline_events_dedup")
                .await
                == 2
    })
    .await;
    assert_eq!(env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE submission_id = 'g-2' AND province_code = '79' AND province_code_original = '74'").await, 1);
    assert_eq!(env.count("SELECT count() AS n FROM hotline_events_dedup WHERE event_id IN ('h-g-1', 'h-g-2') AND length(reporter_email_hash) = 64").await, 2);
    drop(pipeline);

    assert!(server.terminate().success(), "clean exit on SIGTERM");
    let log = std::fs::read_to_string(&log).unwrap();
    for secret in [HCM_TOKEN, HANOI_TOKEN, "nguoi.dan@example.vn"] {
        assert!(!log.contains(secret), "{secret} in the server log");
    }
}

async fn server_metrics(base: &str) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["-fsS", &format!("{base}/metrics")])
        .output()
        .await
        .expect("curl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
