//! Static checks of the container setup (docker-compose.yml and Dockerfile); no Docker
//! engine or running services needed. In particular every `SIPAS__…` variable the compose
//! file sets must be accepted by the real configuration loader, so a renamed config key
//! cannot silently break the stack.
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use sipas_stream::config::{Config, ENV_PREFIX};

/// Stands in for values that compose interpolates from the host (`${VAR:?…}`).
const DUMMY: &str = "0123456789abcdef0123456789abcdef";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let path = root().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn services(doc: &Value) -> &serde_yaml::Mapping {
    doc.get("services")
        .and_then(Value::as_mapping)
        .expect("top-level `services` mapping")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("service `{name}` missing"))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("environment value is not a scalar: {other:?}"),
    }
}

/// A service's `environment`, written either as a mapping or as a list of `KEY=value`.
fn environment(service: &Value) -> Vec<(String, String)> {
    match service.get("environment") {
        None => Vec::new(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().expect("environment key is a string").to_owned(),
                    scalar(v),
                )
            })
            .collect(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|entry| {
                let entry = entry.as_str().expect("environment entry is a string");
                match entry.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    // `- KEY` alone passes the host's value through.
                    None => (entry.to_owned(), String::new()),
                }
            })
            .collect(),
        Some(other) => panic!("`environment` must be a mapping or a list, got {other:?}"),
    }
}

fn env_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `depends_on` as (service, condition); the short list form means `service_started`.
fn depends_on(service: &Value) -> Vec<(String, String)> {
    match service.get("depends_on") {
        None => Vec::new(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|s| {
                (
                    s.as_str().expect("service name").to_owned(),
                    "service_started".to_owned(),
                )
            })
            .collect(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let condition = v
                    .get("condition")
                    .and_then(Value::as_str)
                    .unwrap_or("service_started");
                (
                    k.as_str().expect("service name").to_owned(),
                    condition.to_owned(),
                )
            })
            .collect(),
        Some(other) => panic!("`depends_on` must be a mapping or a list, got {other:?}"),
    }
}

#[test]
fn compose_defines_the_stack() {
    let doc = compose();
    assert!(
        doc.get("version").is_none(),
        "the obsolete top-level `version:` key should not be used"
    );
    for name in ["kafka", "clickhouse", "sipas"] {
        service(&doc, name);
    }

    let kafka = service(&doc, "kafka");
    let image = kafka
        .get("image")
        .and_then(Value::as_str)
        .expect("kafka image");
    assert!(image.starts_with("apache/kafka"), "kafka image is {image}");
    let kafka_env = environment(kafka);
    let roles = env_value(&kafka_env, "KAFKA_PROCESS_ROLES").expect("KAFKA_PROCESS_ROLES (KRaft)");
    assert!(
        roles.split(',').any(|r| r.trim() == "controller"),
        "KRaft needs a controller role, got {roles}"
    );
    assert!(
        roles.split(',').any(|r| r.trim() == "broker"),
        "single node must also be a broker, got {roles}"
    );
    for key in [
        "KAFKA_NODE_ID",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
    ] {
        assert!(env_value(&kafka_env, key).is_some(), "kafka needs {key}");
    }
    assert!(
        kafka.get("healthcheck").is_some(),
        "kafka needs a healthcheck (sipas waits for service_healthy)"
    );
    assert!(
        service(&doc, "clickhouse").get("healthcheck").is_some(),
        "clickhouse needs a healthcheck"
    );

    let sipas = service(&doc, "sipas");
    let sipas_env = environment(sipas);
    for key in [
        "SIPAS__KAFKA__BROKERS",
        "SIPAS__CLICKHOUSE__URL",
        "SIPAS__PII__HMAC_SECRET",
        "SIPAS__METRICS__LISTEN",
    ] {
        assert!(
            env_value(&sipas_env, key).is_some(),
            "sipas service environment lacks {key}"
        );
    }
    assert_eq!(
        env_value(&sipas_env, "SIPAS__KAFKA__BROKERS"),
        Some("kafka:9092")
    );

    // The pipeline must log in to ClickHouse with the password the server was given.
    let ch_env = environment(service(&doc, "clickhouse"));
    if let Some(password) = env_value(&ch_env, "CLICKHOUSE_PASSWORD") {
        assert_eq!(
            env_value(&sipas_env, "SIPAS__CLICKHOUSE__PASSWORD"),
            Some(password),
            "ClickHouse password mismatch"
        );
    }

    let deps = depends_on(sipas);
    for needed in ["kafka", "clickhouse"] {
        let condition = deps
            .iter()
            .find(|(s, _)| s == needed)
            .map(|(_, c)| c.as_str());
        assert_eq!(
            condition,
            Some("service_healthy"),
            "sipas must wait for {needed} to be healthy"
        );
    }
}

#[test]
fn every_sipas_variable_in_compose_is_a_valid_config_key() {
    let doc = compose();
    let mut checked = 0;
    for (name, svc) in services(&doc) {
        let name = name.as_str().expect("service name");
        let vars: Vec<(String, String)> = environment(svc)
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .map(|(k, v)| {
                if v.contains("${") {
                    (k, DUMMY.to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        if vars.is_empty() {
            continue;
        }
        checked += vars.len();
        let config = Config::load_with_env(None, vars.clone()).unwrap_or_else(|e| {
            panic!("service `{name}`: its SIPAS__ variables {vars:?} are rejected: {e}")
        });
        if env_value(&vars, "SIPAS__PII__HMAC_SECRET").is_some() {
            config
                .pii
                .secret()
                .unwrap_or_else(|e| panic!("service `{name}`: {e}"));
        }
    }
    assert!(
        checked >= 4,
        "expected SIPAS__ variables in the compose file, found {checked}"
    );

    // The check above has teeth: a misspelt key is an error.
    let bogus = vec![("SIPAS__KAFKA__BROKER".to_owned(), "kafka:9092".to_owned())];
    assert!(
        Config::load_with_env(None, bogus).is_err(),
        "unknown SIPAS__ keys must be rejected"
    );
}

/// Dockerfile instructions with `\` continuations joined into one line each.
fn dockerfile_instructions(path: &PathBuf) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        instructions.push(current);
    }
    instructions
}

fn keyword(instruction: &str) -> String {
    instruction
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

#[test]
fn dockerfile_builds_the_binary_and_ships_config_and_schemas() {
    let path = root().join("Dockerfile");
    assert!(path.is_file(), "Dockerfile missing");
    let instructions = dockerfile_instructions(&path);

    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| keyword(i) == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(stages.len() >= 2, "expected a multi-stage build");
    let final_stage = &instructions[*stages.last().unwrap()..];

    let builds_sipas = instructions
        .iter()
        .filter(|i| keyword(i) == "RUN")
        .any(|i| {
            let words: Vec<&str> = i.split_whitespace().collect();
            i.contains("cargo build")
                && words.contains(&"--locked")
                && words.contains(&"--release")
                && words
                    .windows(2)
                    .any(|w| w == ["--bin", "sipas"] || w[0] == "--bin=sipas")
        });
    assert!(
        builds_sipas,
        "no `cargo build --release --locked --bin sipas` step"
    );

    let copies = |what: &str| {
        final_stage
            .iter()
            .filter(|i| keyword(i) == "COPY" && !i.contains("--from"))
            .any(|i| {
                let args: Vec<&str> = i
                    .split_whitespace()
                    .skip(1)
                    .filter(|a| !a.starts_with("--"))
                    .collect();
                let sources = &args[..args.len().saturating_sub(1)];
                sources
                    .iter()
                    .any(|s| s.trim_end_matches('/').trim_start_matches("./") == what)
            })
    };
    assert!(copies("config"), "final stage must COPY config/");
    assert!(copies("schemas"), "final stage must COPY schemas/");
    assert!(
        final_stage.iter().any(|i| keyword(i) == "COPY"
            && i.contains("--from")
            && i.contains("/usr/local/bin/sipas")),
        "final stage must copy the binary to /usr/local/bin/sipas"
    );
    assert!(
        final_stage.iter().any(|i| keyword(i) == "USER"),
        "final stage should run as a non-root user"
    );
    assert!(
        final_stage
            .iter()
            .any(|i| i.replace(' ', "") == r#"ENTRYPOINT["sipas"]"#),
        "ENTRYPOINT [\"sipas\"] missing"
    );
}
