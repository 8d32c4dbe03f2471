//! Personal data outside the contract's reporter fields, through the real broker and
//! ClickHouse: a hotline event on the surveys topic, a survey with `respondent_phone` /
//! `respondent_email` extras, a phone sent as a JSON number, a message that is not JSON
//! with fullwidth digits and an escaped `@`, and hotline reasons holding a phone number and
//! an address. No dead letter (payload or header), no `hotline_events` row, no gateway
//! answer, no import report and no log line holds them in clear; each still says why.
mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value};
use support::gateway::{start_serve, tokens_file};
use support::*;

const TOKEN: &str = "pii-token-7c1e04b9d2a6";

/// The parts of the personal values sent that must never be read back: each phone's
/// last 9 digits, each address's local part and domain.
const SECRETS: &[&str] = &[
    "913444555",
    "912345678",
    "987654321",
    "lan.nguyen",
    "nguyễn.văn.a",
    "example.vn",
    "bộ-công-an",
];

/// Digits as ASCII without phone separators, escapes of `@` decoded: what a reader could
/// dial or mail.
fn readable(text: &str) -> String {
    text.replace("\\u0040", "@")
        .replace("%40", "@")
        .chars()
        .filter_map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
            c if " .-/_()\u{a0}\u{3000}".contains(c) => None,
            c => Some(c),
        })
        .collect()
}

fn assert_no_clear(what: &str, text: &str) {
    let readable = readable(text);
    for secret in SECRETS {
        assert!(
            !readable.contains(&readable_secret(secret)),
            "{what} holds {secret:?} in clear: {text}"
        );
    }
}

fn readable_secret(secret: &str) -> String {
    // Separators inside an address part are dropped on both sides alike.
    readable(secret)
}

fn hotline_received(id: &str) -> Value {
    json!({"event_id": id, "ticket_id": format!("T-{id}"), "type": "received",
           "occurred_at": "2026-11-20T08:00:00+07:00", "province_code": "79", "channel": "phone",
           "category": "traffic", "due_at": "2026-11-22T08:00:00+07:00"})
}

fn hotline_rejected(id: &str, reason: &str) -> Value {
    json!({"event_id": id, "ticket_id": format!("T-{id}"), "type": "rejected",
           "occurred_at": "2026-11-20T09:00:00+07:00", "province_code": "79", "reason": reason})
}

fn survey(id: &str) -> Value {
    json!({"submission_id": id, "framework": "BNV-2640-2017", "submitted_at": "2026-11-20T09:00:00+07:00",
           "province_code": "79", "agency_id": "79-commune-001", "agency_level": "commune",
           "procedure_code": "1.001234.000.00.00.H79", "channel": "online", "respondent_type": "citizen",
           "answers": {"access.1": 5, "staff.2": 4},
           "respondent_phone": "0912-345-678", "respondent_email": "lan.nguyen@example.vn"})
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// POST through curl; (status, body).
async fn post(base: &str, path: &str, body: &[u8]) -> (u16, String) {
    let name = path.rsplit('/').next().unwrap_or_default();
    let file = log_path(&format!("pii-body-{}-{name}", std::process::id()));
    std::fs::write(&file, body).unwrap();
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "Expect:",
        ])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-H", "Content-Type: application/x-ndjson"])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{base}{path}"))
        .output()
        .await
        .expect("curl runs");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn personal_data_outside_the_contract_fields_is_never_kept_or_answered_in_clear() {
    let env = TestEnv::new("pii").await;
    let (surveys_topic, hotline_topic) = (
        env.config.kafka.surveys_topic.clone(),
        env.config.kafka.hotline_topic.clone(),
    );

    // --- the gateway answers the sender without quoting what it refused.
    let tokens = tokens_file("pii", &[("pii", TOKEN, &["79"])]);
    let (mut server, base) = start_serve(&env, &tokens, Vec::new()).await;
    let serve_log = log_path(&format!("pii-{}.log", server.metrics_port));

    let mut number_phone = hotline_received("pii-g1");
    number_phone["reporter_phone"] = json!(84913444555u64);
    let gateway_reason = "người dân gọi lại 0912_345_678, lan.nguyen@example.vn";
    let body = [
        number_phone.to_string(),
        hotline_rejected("pii-g2", gateway_reason).to_string(),
    ]
    .join("\n");
    let (status, answer) = post(&base, "/api/v1/hotline", body.as_bytes()).await;
    assert_eq!(status, 202, "{answer}");
    assert_no_clear("the gateway's answer", &answer);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["results"][0]["reason"], "undecodable");
    let detail = answer["results"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("invalid JSON (data): invalid type: integer, expected a string"),
        "{detail}"
    );
    assert_eq!(answer["results"][1]["status"], "accepted");

    let mut fax = survey("pii-gs");
    fax["channel"] = json!("fax");
    let (status, answer) = post(&base, "/api/v1/surveys", fax.to_string().as_bytes()).await;
    assert_eq!(status, 422, "{answer}");
    assert_no_clear("the gateway's answer", &answer);
    assert!(answer.contains("unknown_enum_value"), "{answer}");
    server.terminate();

    // --- the importer's report.
    let ndjson = log_path(&format!("pii-import-{}.ndjson", std::process::id()));
    let mut channel_phone = hotline_received("pii-i2");
    channel_phone["channel"] = json!("gọi 0987 654 321");
    std::fs::write(&ndjson, format!("{}\n{}\n", number_phone, channel_phone)).unwrap();
    let import = Command::new(env!("CARGO_BIN_EXE_sipas"))
        .args(["import", "--kind", "hotline", "--dry-run"])
        .arg(&ndjson)
        .current_dir(root())
        .env_clear()
        .envs(env.child_env(free_port()))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("sipas import runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&import.stdout),
        String::from_utf8_lossy(&import.stderr)
    );
    assert_no_clear("the import report", &report);
    assert!(
        report.contains("line 1: undecodable: invalid JSON (data)"),
        "{report}"
    );
    assert!(report.contains("line 2: unknown_enum_value"), "{report}");

    // --- straight to the topics: what the pipeline dead-letters and stores.
    let producer = env.producer();
    let mut wrong_topic = hotline_received("pii-s1");
    wrong_topic["reporter_phone"] = json!("+84 987 654 321");
    wrong_topic["reporter_email"] = json!("nguyễn.văn.a@bộ-công-an.vn");
    let stored_reason =
        "trùng phản ánh T-pii-0; SĐT 0987.654.321, email Nguyễn.Văn.A@Bộ-Công-An.vn";
    let not_json = "{\"event_id\":\"pii-h3\",\"reporter_phone\":\"０９１２/３４５/６７８\",\
                    \"reporter_email\":\"lan.nguyen\\u0040example.vn\",\"reason\":\"0912_345_678";
    let sent: Vec<(&str, &str, Vec<u8>)> = vec![
        ("surveys", "missing_field", bytes(&wrong_topic)),
        ("surveys", "unknown_enum_value", bytes(&fax)),
        ("surveys", "", bytes(&survey("pii-s3"))),
        ("hotline", "undecodable", bytes(&number_phone)),
        ("hotline", "undecodable", not_json.as_bytes().to_vec()),
        (
            "hotline",
            "",
            bytes(&hotline_rejected("pii-h2", stored_reason)),
        ),
    ];
    for (topic, _, payload) in &sent {
        let topic = if *topic == "surveys" {
            &surveys_topic
        } else {
            &hotline_topic
        };
        env.produce(&producer, topic, "79", payload).await;
    }
    let expected: BTreeMap<String, usize> = sent
        .iter()
        .filter(|(_, reason, _)| !reason.is_empty())
        .fold(BTreeMap::new(), |mut m, (_, reason, _)| {
            *m.entry(reason.to_string()).or_default() += 1;
            m
        });
    let letters_expected: usize = expected.values().sum();

    let mut pipeline = Pipeline::start(&env);
    wait_for("the valid events in ClickHouse", || async {
        env.count("SELECT count() AS n FROM hotline_events_dedup")
            .await
            == 2
            && env
                .count("SELECT count() AS n FROM survey_submissions_dedup")
                .await
                == 1
    })
    .await;
    let letters = env.dead_letters(letters_expected).await;
    assert!(pipeline.terminate().success(), "clean exit on SIGTERM");

    assert_eq!(letters.reasons(), expected);
    for (source, headers) in &letters.by_source {
        let payload = String::from_utf8_lossy(&letters.payload_by_source[source]).into_owned();
        assert_no_clear("a dead letter", &payload);
        for (name, value) in headers {
            assert_no_clear(&format!("the {name} header"), value);
        }
        assert_eq!(headers["redacted"], "true", "{source:?}: {payload}");
        assert!(!headers["detail"].is_empty());
        // Enough left to diagnose: the ids and the event time.
        assert!(
            payload.contains("pii-") || payload.contains("2026-11-20"),
            "{payload}"
        );
    }
    let number_letter = letters
        .by_source
        .iter()
        .find(|(_, h)| h["detail"].contains("invalid type: integer"))
        .map(|(source, _)| String::from_utf8_lossy(&letters.payload_by_source[source]).into_owned())
        .expect("the number-typed phone's letter");
    assert!(
        number_letter.contains("\"reporter_phone\":\"hmac:"),
        "{number_letter}"
    );

    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Reason {
        event_id: String,
        reason: String,
    }
    let rows = env
        .clickhouse()
        .query("SELECT event_id, reason FROM hotline_events ORDER BY event_id")
        .fetch_all::<Reason>()
        .await
        .unwrap();
    let reasons: BTreeMap<String, String> =
        rows.into_iter().map(|r| (r.event_id, r.reason)).collect();
    for reason in reasons.values() {
        assert_no_clear("a stored reason", reason);
    }
    // Each byte of an address becomes a `*`; the rest of the text is kept.
    assert_eq!(
        reasons["pii-h2"],
        format!(
            "trùng phản ánh T-pii-0; SĐT ****.***.***, email {}",
            "*".repeat("Nguyễn.Văn.A@Bộ-Công-An.vn".len())
        )
    );
    assert_eq!(
        reasons["pii-g2"],
        format!("người dân gọi lại ****_***_***, {}", "*".repeat(21))
    );

    for log in [
        serve_log,
        log_path(&format!("pii-{}.log", pipeline.metrics_port)),
    ] {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_no_clear("the log", &text);
    }
}
