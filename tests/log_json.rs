//! `SIPAS__LOG__FORMAT=json` / `--log-format json`: every line of `sipas run` and `sipas
//! serve` is a JSON object, and the spans carry what an operator follows a batch and a
//! partition by (README, Logs): batch number and offsets from poll to the stored and
//! committed offsets, the index flush and checkpoint, the gateway's token name (never the
//! token) and the API request. No personal data in any line.
mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use sipas_stream::simulate::generator::SimSettings;
use support::gateway::{start_serve, tokens_file};
use support::*;

const TOKEN: &str = "json-log-token-7c41e9a2b8";

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn message(line: &Value) -> &str {
    line["message"].as_str().unwrap_or_default()
}

/// The names of the line's spans, outermost first.
fn span_names(line: &Value) -> Vec<&str> {
    line["spans"]
        .as_array()
        .map(|spans| spans.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default()
}

fn span<'a>(line: &'a Value, name: &str) -> &'a Value {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no span {name} in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn json_lines_carry_the_span_fields_and_no_personal_data() {
    let env = TestEnv::new("log_json").await;
    let events = simulated_events(
        SimSettings {
            seed: 3,
            start_unix: 1_790_000_000,
            step_seconds: 60.0,
            avro_share: 0.0,
            hotline_share: 0.5,
            ..Default::default()
        },
        300,
    );
    // Personal values the events carry; none may reach the log.
    let mut personal: Vec<String> = Vec::new();
    for event in &events {
        if let Ok(value) = serde_json::from_slice::<Value>(&event.payload) {
            for field in ["reporter_phone", "reporter_email"] {
                if let Some(text) = value[field].as_str() {
                    personal.push(text.to_owned());
                }
            }
        }
    }
    assert!(
        !personal.is_empty(),
        "the simulated hotline events carry personal data"
    );
    env.produce_events(&events);
    let total = topic_messages(&env, &env.config.kafka.surveys_topic).await
        + topic_messages(&env, &env.config.kafka.hotline_topic).await;

    let json = [
        ("SIPAS__LOG__FORMAT".to_string(), "json".to_string()),
        (
            "RUST_LOG".to_string(),
            "info,sipas_stream=debug,rdkafka=warn".to_string(),
        ),
    ];
    let mut pipeline = Pipeline::start_command_with(&env, &["run"], &json);
    let log = log_path(&format!("{}-{}.log", env.name, pipeline.metrics_port));
    // Every partition's last stored offset committed, and a checkpoint written.
    wait_for(
        "every message's offset committed and a checkpoint logged",
        || async {
            let lines = lines(&log);
            let mut stored: BTreeMap<(String, i64), i64> = BTreeMap::new();
            for line in lines.iter().filter(|l| message(l) == "offsets stored") {
                let partition = span(line, "partition");
                let key = (
                    partition["topic"].as_str().unwrap().to_owned(),
                    partition["partition"].as_i64().unwrap(),
                );
                let next = line["next_offset"].as_i64().unwrap();
                let entry = stored.entry(key).or_default();
                *entry = (*entry).max(next);
            }
            let committed: String = lines
                .iter()
                .filter(|l| message(l) == "offsets committed")
                .map(|l| format!("{} ", l["offsets"].as_str().unwrap_or_default()))
                .collect();
            stored.values().sum::<i64>() == total
                && stored
                    .iter()
                    .all(|((t, p), next)| committed.contains(&format!("{t}/{p}:{next} ")))
                && lines
                    .iter()
                    .any(|l| message(l) == "index checkpoint written")
        },
    )
    .await;
    assert!(pipeline.terminate().success(), "clean exit on SIGTERM");
    let run = lines(&log);

    for line in &run {
        for field in ["timestamp", "level", "target"] {
            assert!(line[field].is_string(), "{field} missing: {line}");
        }
    }
    // A batch from poll to stored offsets: the same batch number in both.
    let stored: Vec<&Value> = run
        .iter()
        .filter(|l| message(l) == "offsets stored")
        .collect();
    let first = stored[0];
    assert_eq!(
        span_names(first),
        ["consumer", "batch", "deliver", "partition"],
        "{first}"
    );
    assert_eq!(span(first, "consumer")["group"], env.config.kafka.group_id);
    let batch = span(first, "batch");
    let partition = span(first, "partition");
    let (topic, number, first_offset, last_offset) = (
        partition["topic"].as_str().unwrap(),
        partition["partition"].as_i64().unwrap(),
        partition["first_offset"].as_i64().unwrap(),
        partition["last_offset"].as_i64().unwrap(),
    );
    assert!(first_offset <= last_offset && partition["messages"].as_i64().unwrap() >= 1);
    assert_eq!(first["next_offset"].as_i64().unwrap(), last_offset + 1);
    assert!(
        batch["offsets"]
            .as_str()
            .unwrap()
            .contains(&format!("{topic}/{number}:{first_offset}-{last_offset}")),
        "{batch}"
    );
    assert!(batch["valid"].as_u64().is_some() && batch["dead_letters"].as_u64().is_some());
    assert!(
        run.iter().any(|l| message(l) == "batch polled"
            && l["span"]["name"] == "batch"
            && l["span"]["batch"] == batch["batch"]),
        "no `batch polled` line for batch {}",
        batch["batch"]
    );
    // A partition across a rebalance: positioned in an `assign` rebalance span.
    let positioned = run
        .iter()
        .find(|l| message(l) == "partition positioned")
        .expect("a partition positioned");
    assert_eq!(span(positioned, "rebalance")["kind"], "assign");
    assert!(positioned["topic"].is_string() && positioned["index_next_offset"].is_i64());
    // The index flush and checkpoint.
    let checkpoint = run
        .iter()
        .find(|l| message(l) == "index checkpoint written" && l["level"] == "INFO")
        .unwrap();
    assert_eq!(
        span_names(checkpoint),
        ["index", "index_flush", "checkpoint"]
    );
    assert!(checkpoint["positions"]
        .as_str()
        .unwrap()
        .contains(&format!("{topic}/{number}:")));
    assert!(span(checkpoint, "index_flush")["flush"].is_u64());

    // --- sipas serve: the API request and the gateway request with the token's name.
    let tokens = tokens_file("log-json", &[("json-province", TOKEN, &["79"])]);
    let (mut server, base) = start_serve(&env, &tokens, json.to_vec()).await;
    let serve_log = log_path(&format!("{}-{}.log", env.name, server.metrics_port));
    let ranking = serve::get(&format!("{base}/api/v1/rankings?window=week"), &[]).await;
    assert_eq!(ranking.status, 400);
    let body = format!(
        "{{\"submission_id\": \"x\", \"reporter_phone\": \"{}\"}}",
        personal[0]
    );
    let posted = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &format!("{base}/api/v1/surveys"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&posted.stdout), "422");
    wait_for("the gateway request logged", || async {
        lines(&serve_log)
            .iter()
            .any(|l| message(l) == "gateway request answered")
    })
    .await;
    assert!(server.terminate().success());
    let serve_lines = lines(&serve_log);
    let gateway = serve_lines
        .iter()
        .find(|l| message(l) == "gateway request answered")
        .unwrap();
    let request = &gateway["span"];
    assert_eq!(request["name"], "gateway_request", "{gateway}");
    assert_eq!(request["token"], "json-province");
    assert_eq!(request["status"], 422);
    assert_eq!(request["records"], 1);
    let api = serve_lines
        .iter()
        .find(|l| message(l) == "request answered" && l["span"]["path"] == "/api/v1/rankings")
        .expect("the API request logged");
    assert_eq!(api["span"]["name"], "api_request");
    assert_eq!(api["span"]["method"], "GET");
    assert_eq!(api["span"]["status"], 400);
    assert!(api["span"]["request"].is_u64());

    let text =
        std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(&serve_log).unwrap();
    for secret in personal
        .iter()
        .map(String::as_str)
        .chain([TOKEN, HMAC_SECRET])
    {
        assert!(!text.contains(secret), "{secret} is in the log");
    }
}
