//! Helpers for the ingest gateway tests: token files, a `sipas gateway` child, requests by
//! curl (any method, headers and body file) and the messages of a topic.
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde_json::Value;
use sipas_stream::gateway::tokens::hash_token;

use super::*;

/// A `[[tokens]]` file: (name, token, provinces).
pub fn tokens_file(label: &str, tokens: &[(&str, &str, &[&str])]) -> PathBuf {
    let path = log_path(&format!("{label}-tokens-{}.toml", std::process::id()));
    let mut text = String::new();
    for (name, token, provinces) in tokens {
        let provinces: Vec<String> = provinces.iter().map(|p| format!("{p:?}")).collect();
        text.push_str(&format!(
            "[[tokens]]\nname = {name:?}\nsha256 = \"{}\"\nprovinces = [{}]\n\n",
            hash_token(token),
            provinces.join(", ")
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `sipas gateway` with the test's configuration, `tokens` and `settings`, answering on
/// `/health`; returns it and its base URL.
pub async fn start_gateway(
    env: &TestEnv,
    tokens: &Path,
    settings: &[(&str, &str)],
) -> (Pipeline, String) {
    let settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    start_with_tokens(env, Mounted::Gateway, tokens, settings).await
}

/// `sipas serve`, the gateway mounted in it, with the test's configuration, `tokens` and
/// `settings`, answering on `/api/v1/health`; returns it and its base URL.
pub async fn start_serve(
    env: &TestEnv,
    tokens: &Path,
    settings: Vec<(String, String)>,
) -> (Pipeline, String) {
    start_with_tokens(env, Mounted::Serve, tokens, settings).await
}

/// The commands that take gateway requests.
#[derive(Clone, Copy)]
enum Mounted {
    Gateway,
    Serve,
}

async fn start_with_tokens(
    env: &TestEnv,
    command: Mounted,
    tokens: &Path,
    settings: Vec<(String, String)>,
) -> (Pipeline, String) {
    let (name, listen, health) = match command {
        Mounted::Gateway => ("gateway", "SIPAS__GATEWAY__LISTEN", "/health"),
        Mounted::Serve => ("serve", "SIPAS__SERVE__LISTEN", "/api/v1/health"),
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut all: Vec<(String, String)> = vec![
        (listen.into(), format!("127.0.0.1:{port}")),
        (
            "SIPAS__GATEWAY__TOKENS_FILE".into(),
            tokens.display().to_string(),
        ),
    ];
    all.extend(settings);
    let mut child = Pipeline::start_command_with(env, &[name], &all);
    let log = log_path(&format!("{}-{}.log", env.name, child.metrics_port));
    wait_for(&format!("sipas {name} answering {health}"), || async {
        request(&base, "GET", health, &[], None).await.status != 0
            || std::fs::read_to_string(&log)
                .map(|l| l.contains("Error:"))
                .unwrap_or(false)
    })
    .await;
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "sipas {name} exited: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (child, base)
}

pub struct Reply {
    pub status: u16,
    /// The head, lower-cased.
    pub headers: String,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
    pub text: String,
}

/// `method base+path` by curl with `headers` (`Name: value`; `Name:` removes curl's own)
/// and the body read from `body`. Status 0 if there was no HTTP answer.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&Path>,
) -> Reply {
    let mut command = tokio::process::Command::new("curl");
    command.args(["-sS", "-i", "-X", method, "-H", "Expect:"]);
    for header in headers {
        command.args(["-H", header]);
    }
    if let Some(body) = body {
        command
            .arg("--data-binary")
            .arg(format!("@{}", body.display()));
    }
    let output = command
        .arg(format!("{base}{path}"))
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    let Some((head, body)) = text.split_once("\n\n") else {
        return Reply {
            status: 0,
            headers: String::new(),
            body: Value::Null,
            text: format!("{text}{}", String::from_utf8_lossy(&output.stderr)),
        };
    };
    Reply {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        headers: head.to_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        text: body.to_owned(),
    }
}

/// POSTs `body` as NDJSON with the token (if any).
pub async fn post(base: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    let mut headers = vec!["Content-Type: application/x-ndjson".to_owned()];
    if let Some(token) = token {
        headers.push(format!("Authorization: Bearer {token}"));
    }
    post_with(base, path, &headers, body).await
}

/// POSTs `body` (through a file, so it may be large or binary) with `headers`.
pub async fn post_with(base: &str, path: &str, headers: &[String], body: &[u8]) -> Reply {
    static REQUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = log_path(&format!("gateway-body-{}-{n}", std::process::id()));
    std::fs::write(&file, body).unwrap();
    let reply = request(base, "POST", path, headers, Some(&file)).await;
    let _ = std::fs::remove_file(&file);
    reply
}

/// Every message of a topic as (key, payload), read from the beginning until `expected`
/// arrived (or patience ran out).
pub async fn read_topic(env: &TestEnv, topic: &str, expected: usize) -> Vec<(String, Value)> {
    let consumer: StreamConsumer = sipas_stream::kafka::client_config(&env.config.kafka)
        .set(
            "group.id",
            format!("{}-reader-{topic}", env.config.kafka.group_id),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut messages = Vec::new();
    let started = std::time::Instant::now();
    while messages.len() < expected && started.elapsed() < PATIENCE {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await
        else {
            continue;
        };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        messages.push((
            key,
            serde_json::from_slice(message.payload().unwrap_or_default()).unwrap(),
        ));
    }
    messages
}

/// Peak and current resident memory of a process in KiB (`VmHWM`, `VmRSS`).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}
