//! Static checks of the container setup: docker-compose.yml, the Dockerfile, .dockerignore,
//! the ClickHouse accounts (docker/clickhouse/users.xml) and scripts/compose-secrets.sh. No
//! Docker engine or running services needed.
//!
//! Every rule is a function from the files' text to the problems it finds (`problems`), so
//! `every_break_is_rejected` applies known-bad edits to in-memory copies of the shipped files
//! and requires each one to be refused, for the reason it breaks. The shipped files must pass
//! every rule. Besides, the healthcheck commands are run against a local HTTP server, and the
//! configuration each service gets is loaded by the real loader with secrets made by the
//! real script.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::{Mapping, Value};
use sha2::Digest;
use sipas_stream::config::{Config, ENV_PREFIX};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    let path = root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The texts the rules look at.
#[derive(Clone)]
struct Files {
    compose: String,
    dockerfile: String,
    dockerignore: String,
    gitignore: String,
    users_xml: String,
}

impl Files {
    fn shipped() -> Self {
        Self {
            compose: read("docker-compose.yml"),
            dockerfile: read("Dockerfile"),
            dockerignore: read(".dockerignore"),
            gitignore: read(".gitignore"),
            users_xml: read(USERS_XML),
        }
    }
}

const USERS_XML: &str = "docker/clickhouse/users.xml";
/// How many version numbers a tag needs to name one release (Debian's point releases have
/// two, `13.7`; ClickHouse's four, `26.8.20.9`). Fewer float.
fn release_numbers(image_name: &str) -> usize {
    match image_name {
        "clickhouse/clickhouse-server" => 4,
        "debian" => 2,
        _ => 3,
    }
}

// ------------------------------------------------------------------ compose helpers

fn parse_compose(text: &str) -> Result<Value, String> {
    let mut doc: Value =
        serde_yaml::from_str(text).map_err(|e| format!("docker-compose.yml: {e}"))?;
    doc.apply_merge()
        .map_err(|e| format!("docker-compose.yml merge keys: {e}"))?;
    Ok(doc)
}

fn services(doc: &Value) -> Vec<(String, &Value)> {
    doc.get("services")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v))
                .collect()
        })
        .unwrap_or_default()
}

fn service<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc.get("services").and_then(|s| s.get(name))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// A service's `environment`, written either as a mapping or as a list of `KEY=value`.
fn environment(service: &Value) -> Vec<(String, String)> {
    match service.get("environment") {
        Some(Value::Mapping(map)) => map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|entry| {
                let entry = scalar(entry);
                match entry.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    // `- KEY` alone passes the host's value through.
                    None => (entry, String::new()),
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn env_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `depends_on` as (service, condition); the short list form means `service_started`.
fn depends_on(service: &Value) -> Vec<(String, String)> {
    match service.get("depends_on") {
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|s| (scalar(s), "service_started".to_owned()))
            .collect(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let condition = v
                    .get("condition")
                    .and_then(Value::as_str)
                    .unwrap_or("service_started");
                (scalar(k), condition.to_owned())
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The names in a service's `secrets:` (short or long form).
fn service_secrets(service: &Value) -> Vec<(String, String)> {
    service
        .get("secrets")
        .and_then(Value::as_sequence)
        .map(|list| {
            list.iter()
                .map(|entry| match entry {
                    Value::String(name) => (name.clone(), format!("/run/secrets/{name}")),
                    other => {
                        let source = other.get("source").map(scalar).unwrap_or_default();
                        let target = other
                            .get("target")
                            .map(scalar)
                            .map(|t| {
                                if t.starts_with('/') {
                                    t
                                } else {
                                    format!("/run/secrets/{t}")
                                }
                            })
                            .unwrap_or_else(|| format!("/run/secrets/{source}"));
                        (source, target)
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The healthcheck command as one string.
fn healthcheck_test(service: &Value) -> Option<String> {
    let check = service.get("healthcheck")?;
    if check.get("disable").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    match check.get("test")? {
        Value::String(s) => Some(s.clone()),
        Value::Sequence(list) => Some(list.iter().map(scalar).collect::<Vec<_>>().join(" ")),
        _ => None,
    }
}

fn port_of(listen: &str) -> &str {
    listen.rsplit(':').next().unwrap_or_default()
}

/// The sub-command a service runs (`run`, `serve`, …).
fn subcommand(service: &Value) -> String {
    match service.get("command") {
        Some(Value::Sequence(list)) => list.first().map(scalar).unwrap_or_default(),
        Some(Value::String(s)) => s.split_whitespace().next().unwrap_or_default().to_owned(),
        // The image's CMD.
        _ => "run".into(),
    }
}

fn built_here(service: &Value) -> bool {
    service.get("build").is_some()
}

// ------------------------------------------------------------------ the rules

/// Every problem the files have; empty for a sound setup.
fn problems(files: &Files) -> Vec<String> {
    let mut found = Vec::new();
    interpolation(&files.compose, &mut found);
    match parse_compose(&files.compose) {
        Ok(doc) => {
            kafka(&doc, &mut found);
            healthchecks(&doc, &mut found);
            start_order(&doc, &mut found);
            hardening(&doc, &mut found);
            images(&doc, &mut found);
            secrets(&doc, files, &mut found);
            clickhouse_accounts(&doc, &files.users_xml, &mut found);
        }
        Err(e) => found.push(e),
    }
    dockerfile(files, &mut found);
    found
}

/// Compose interpolates `${…}` for every subcommand (`logs`, `down`, `run`): a variable
/// that must be exported makes them all fail, and a secret kept in a shell is soon lost.
fn interpolation(text: &str, found: &mut Vec<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let end = text[i..].find('}').map(|e| i + e).unwrap_or(text.len());
                let expr = &text[i + 2..end];
                let name_end = expr
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(expr.len());
                let rest = &expr[name_end..];
                if !(rest.starts_with(":-") || rest.starts_with('-')) {
                    found.push(format!(
                        "docker-compose.yml interpolates ${{{expr}}} from the host environment without a default: every compose command fails unless it is exported"
                    ));
                }
                i = end;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push(format!(
                    "docker-compose.yml interpolates ${name} from the host environment (write $$ for a literal $)"
                ));
                i += 1 + name.len();
            }
            _ => i += 1,
        }
    }
}

fn kafka(doc: &Value, found: &mut Vec<String>) {
    let Some(kafka) = service(doc, "kafka") else {
        found.push("service `kafka` missing".into());
        return;
    };
    let env = environment(kafka);
    let roles = env_value(&env, "KAFKA_PROCESS_ROLES").unwrap_or_default();
    for role in ["broker", "controller"] {
        if !roles.split(',').any(|r| r.trim() == role) {
            found.push(format!(
                "kafka: KAFKA_PROCESS_ROLES must include {role} (one KRaft node), got {roles:?}"
            ));
        }
    }
    for key in [
        "KAFKA_NODE_ID",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_LISTENERS",
    ] {
        if env_value(&env, key).is_none() {
            found.push(format!("kafka: {key} missing"));
        }
    }
    // The image formats its storage with CLUSTER_ID: a KRaft cluster id is 16 bytes in
    // URL-safe base64 without padding (22 characters), and a fixed one reuses the volume.
    match env_value(&env, "CLUSTER_ID") {
        None => found.push("kafka: CLUSTER_ID missing (KRaft storage is formatted with it)".into()),
        Some(id)
            if id.len() != 22
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            found.push(format!(
                "kafka: CLUSTER_ID {id:?} is not a KRaft cluster id (22 characters of URL-safe base64)"
            ))
        }
        Some(_) => {}
    }
    // Clients connect to what the broker advertises: it must be the name other containers
    // reach it by, and it must be what the sipas services bootstrap from.
    let names: Vec<String> = ["kafka".to_owned()]
        .into_iter()
        .chain(kafka.get("hostname").map(scalar))
        .collect();
    let advertised = env_value(&env, "KAFKA_ADVERTISED_LISTENERS").unwrap_or_default();
    if advertised.is_empty() {
        found.push("kafka: KAFKA_ADVERTISED_LISTENERS missing".into());
    }
    let mut addresses = Vec::new();
    for listener in advertised.split(',').filter(|l| !l.trim().is_empty()) {
        let address = listener
            .split_once("://")
            .map(|(_, a)| a)
            .unwrap_or(listener);
        let host = address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address);
        if !names.iter().any(|n| n == host) {
            found.push(format!(
                "kafka: KAFKA_ADVERTISED_LISTENERS advertises {address:?}; other containers reach the broker as {:?}",
                names[0]
            ));
        }
        addresses.push(address.to_owned());
    }
    for (name, svc) in services(doc) {
        let env = environment(svc);
        if let Some(brokers) = env_value(&env, "SIPAS__KAFKA__BROKERS") {
            for broker in brokers.split(',') {
                if !addresses.iter().any(|a| a == broker.trim()) {
                    found.push(format!(
                        "{name}: SIPAS__KAFKA__BROKERS {broker:?} is not an advertised Kafka listener {addresses:?}"
                    ));
                }
            }
        }
    }
}

fn healthchecks(doc: &Value, found: &mut Vec<String>) {
    let metrics_port = service(doc, "sipas")
        .map(environment)
        .and_then(|env| {
            env_value(&env, "SIPAS__METRICS__LISTEN")
                .map(port_of)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "9100".into());
    let serve_port = service(doc, "dashboard")
        .map(environment)
        .and_then(|env| {
            env_value(&env, "SIPAS__SERVE__LISTEN")
                .map(port_of)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "8080".into());
    let expected: [(&str, Vec<String>, &str); 4] = [
        (
            "kafka",
            vec![
                "kafka-broker-api-versions.sh".into(),
                "--bootstrap-server".into(),
                ":9092".into(),
            ],
            "the broker answering on its listener",
        ),
        (
            "clickhouse",
            vec!["/8123".into(), "GET /ping ".into()],
            "ClickHouse's /ping on 8123",
        ),
        (
            "sipas",
            vec![format!("/{metrics_port}"), "GET /health ".into()],
            "the pipeline's /health on its metrics port (open once set up)",
        ),
        (
            "dashboard",
            vec![format!("/{serve_port}"), "GET /api/v1/health ".into()],
            "sipas serve's /api/v1/health on serve.listen",
        ),
    ];
    for (name, needles, what) in expected {
        let Some(svc) = service(doc, name) else {
            continue;
        };
        match healthcheck_test(svc) {
            None => found.push(format!("{name}: no healthcheck (it must probe {what})")),
            Some(test) => {
                if let Some(missing) = needles.iter().find(|n| !test.contains(n.as_str())) {
                    found.push(format!(
                        "{name}: the healthcheck `{test}` does not probe {what} (no {missing:?})"
                    ));
                }
            }
        }
    }
}

/// Nothing starts before what it needs is ready: `service_started` is only "the process
/// exists" (the dashboard would query tables the pipeline has not created yet).
fn start_order(doc: &Value, found: &mut Vec<String>) {
    let needs = [
        ("sipas", vec!["kafka", "clickhouse"]),
        ("dashboard", vec!["sipas"]),
        ("simulator", vec!["sipas"]),
    ];
    for (name, wanted) in needs {
        let Some(svc) = service(doc, name) else {
            found.push(format!("service `{name}` missing"));
            continue;
        };
        let deps = depends_on(svc);
        for dependency in wanted {
            let condition = deps
                .iter()
                .find(|(s, _)| s == dependency)
                .map(|(_, c)| c.as_str());
            if condition != Some("service_healthy") {
                found.push(format!(
                    "{name} must wait for {dependency} with condition service_healthy, got {condition:?}"
                ));
            }
            if service(doc, dependency)
                .and_then(healthcheck_test)
                .is_none()
            {
                found.push(format!(
                    "{dependency} has no healthcheck, so `{name}` cannot wait for it"
                ));
            }
        }
    }
}

fn hardening(doc: &Value, found: &mut Vec<String>) {
    for (name, svc) in services(doc) {
        let no_new_privileges = svc
            .get("security_opt")
            .and_then(Value::as_sequence)
            .is_some_and(|opts| {
                opts.iter().any(|o| {
                    matches!(
                        scalar(o).as_str(),
                        "no-new-privileges:true" | "no-new-privileges"
                    )
                })
            });
        if !no_new_privileges {
            found.push(format!("{name}: security_opt lacks no-new-privileges:true"));
        }
        let logging = svc.get("logging");
        let driver = logging.and_then(|l| l.get("driver")).map(scalar);
        let option = |key: &str| {
            logging
                .and_then(|l| l.get("options"))
                .and_then(|o| o.get(key))
                .map(scalar)
        };
        if driver.as_deref() != Some("json-file")
            || option("max-size").is_none()
            || option("max-file").is_none()
        {
            found.push(format!(
                "{name}: logs are not rotated (logging: driver json-file with options max-size and max-file)"
            ));
        }
        let limits = svc
            .get("deploy")
            .and_then(|d| d.get("resources"))
            .and_then(|r| r.get("limits"));
        for key in ["cpus", "memory"] {
            if limits.and_then(|l| l.get(key)).is_none() {
                found.push(format!(
                    "{name}: no resource limit deploy.resources.limits.{key}"
                ));
            }
        }
        if svc.get("privileged").and_then(Value::as_bool) == Some(true) {
            found.push(format!("{name}: privileged"));
        }
        if let Some(user) = svc.get("user").map(scalar) {
            if is_root(&user) {
                found.push(format!("{name}: runs as user {user}"));
            }
        }
        if built_here(svc) {
            if svc.get("read_only").and_then(Value::as_bool) != Some(true) {
                found.push(format!(
                    "{name}: the sipas image writes nothing; read_only: true"
                ));
            }
            let drops_all = svc
                .get("cap_drop")
                .and_then(Value::as_sequence)
                .is_some_and(|caps| caps.iter().any(|c| scalar(c) == "ALL"));
            if !drops_all {
                found.push(format!(
                    "{name}: cap_drop: [ALL] (sipas needs no capability)"
                ));
            }
        }
    }
}

fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or_default().trim();
    name == "root" || name == "0"
}

/// A tag that is not a full release moves under the stack (`latest`, `24.8`, `1-bookworm`).
fn pin_problem(image: &str) -> Option<String> {
    if image.contains("@sha256:") {
        return None;
    }
    let Some((name, tag)) = image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) else {
        return Some(format!("image {image} has no tag (it means latest)"));
    };
    let version: String = tag
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let numbers = version.split('.').filter(|p| !p.is_empty()).count();
    let needed = release_numbers(name);
    (numbers < needed).then(|| {
        format!("image {image}: tag {tag} floats; pin a full release ({needed} version numbers)")
    })
}

fn images(doc: &Value, found: &mut Vec<String>) {
    for (name, svc) in services(doc) {
        let image = svc.get("image").map(scalar);
        match (image, built_here(svc)) {
            (Some(image), false) => {
                found.extend(pin_problem(&image).map(|p| format!("{name}: {p}")))
            }
            (None, false) => found.push(format!("{name}: neither image nor build")),
            _ => {}
        }
    }
    for (name, wanted) in [
        ("kafka", "apache/kafka:"),
        ("clickhouse", "clickhouse/clickhouse-server:"),
    ] {
        let image = service(doc, name).and_then(|s| s.get("image")).map(scalar);
        if !image.as_deref().is_some_and(|i| i.starts_with(wanted)) {
            found.push(format!("{name}: image {image:?} is not {wanted}…"));
        }
    }
}

fn secrets(doc: &Value, files: &Files, found: &mut Vec<String>) {
    let defined: BTreeMap<String, String> = doc
        .get("secrets")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (scalar(k), v.get("file").map(scalar).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for (secret, file) in &defined {
        if !file.starts_with("./secrets/") {
            found.push(format!(
                "secret {secret}: file {file:?} is not under ./secrets/ (git-ignored, made by scripts/compose-secrets.sh)"
            ));
        }
    }
    for (pattern, file, why) in [
        ("secrets/", ".gitignore", "never committed"),
        ("secrets/", ".dockerignore", "never sent to a build"),
    ] {
        let text = if file == ".gitignore" {
            &files.gitignore
        } else {
            &files.dockerignore
        };
        if !text
            .lines()
            .any(|l| l.trim().trim_start_matches('/') == pattern)
        {
            found.push(format!("{file} must list {pattern} ({why})"));
        }
    }
    for (name, svc) in services(doc) {
        let env = environment(svc);
        let mounted = service_secrets(svc);
        for (source, _) in &mounted {
            if !defined.contains_key(source) {
                found.push(format!(
                    "{name}: secret {source} is not defined at the top level"
                ));
            }
        }
        for (key, value) in &env {
            let upper = key.to_ascii_uppercase();
            let holds_secret = upper.contains("PASSWORD") || upper.contains("SECRET");
            if holds_secret && !upper.ends_with("_FILE") && !value.is_empty() {
                found.push(format!(
                    "{name}: {key} carries a password or secret in the compose file; mount it from ./secrets/ (…_FILE)"
                ));
            }
            if upper.ends_with("_FILE") && !mounted.iter().any(|(_, target)| target == value) {
                found.push(format!(
                    "{name}: {key} = {value} is not one of the service's mounted secrets {mounted:?}"
                ));
            }
        }
        // Every command that validates events pseudonymises reporters with the HMAC key.
        if built_here(svc)
            && matches!(
                subcommand(svc).as_str(),
                "run" | "serve" | "gateway" | "import" | "rebuild"
            )
            && env_value(&env, "SIPAS__PII__HMAC_SECRET_FILE").is_none()
        {
            found.push(format!(
                "{name}: `sipas {}` needs the HMAC secret: SIPAS__PII__HMAC_SECRET_FILE",
                subcommand(svc)
            ));
        }
    }
}

/// The text between `<tag>` and `</tag>` (first occurrence).
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// XML without its comments.
fn uncommented(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("-->")
            .map(|e| &rest[start + e + 3..])
            .unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn grants(user: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut rest = element(user, "grants").unwrap_or_default();
    while let Some(query) = element(rest, "query") {
        all.push(query.trim().to_owned());
        rest = &rest[rest.find("</query>").unwrap() + 8..];
    }
    all
}

/// The pipeline writes and migrates; `sipas serve` only reads: two accounts, the reader
/// unable to write, and no password in a committed file.
fn clickhouse_accounts(doc: &Value, users_xml: &str, found: &mut Vec<String>) {
    let Some(clickhouse) = service(doc, "clickhouse") else {
        found.push("service `clickhouse` missing".into());
        return;
    };
    let env = environment(clickhouse);
    if env_value(&env, "CLICKHOUSE_SKIP_USER_SETUP") != Some("1") {
        found.push("clickhouse: CLICKHOUSE_SKIP_USER_SETUP must be 1 (the accounts come from users.d, not the image's entrypoint)".into());
    }
    for key in [
        "CLICKHOUSE_USER",
        "CLICKHOUSE_PASSWORD",
        "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT",
    ] {
        if env_value(&env, key).is_some() {
            found.push(format!(
                "clickhouse: {key} makes the image create an admin account"
            ));
        }
    }
    let mounts_users = clickhouse
        .get("volumes")
        .and_then(Value::as_sequence)
        .is_some_and(|v| {
            v.iter().any(|m| {
                let m = scalar(m);
                m.starts_with(&format!("./{USERS_XML}:/etc/clickhouse-server/users.d/"))
            })
        });
    if !mounts_users {
        found.push(format!(
            "clickhouse: {USERS_XML} is not mounted into /etc/clickhouse-server/users.d/"
        ));
    }
    if !service_secrets(clickhouse)
        .iter()
        .any(|(_, target)| target.starts_with("/etc/clickhouse-server/users.d/"))
    {
        found.push("clickhouse: the password hashes (secret clickhouse_passwords) are not mounted into users.d".into());
    }

    let user_of = |name: &str| {
        service(doc, name)
            .map(environment)
            .and_then(|env| env_value(&env, "SIPAS__CLICKHOUSE__USER").map(str::to_owned))
    };
    let writer = user_of("sipas");
    let reader = user_of("dashboard");
    let (Some(writer), Some(reader)) = (writer, reader) else {
        found.push(
            "sipas and dashboard must each name their ClickHouse user (SIPAS__CLICKHOUSE__USER)"
                .into(),
        );
        return;
    };
    if writer == reader {
        found.push(format!(
            "sipas and dashboard share the ClickHouse user {writer}: serve must use a read-only account of its own"
        ));
    }
    let xml = uncommented(users_xml);
    if xml.contains("<password>")
        || xml.contains("<password_sha256_hex>")
        || xml.contains("<password_double_sha1_hex>")
    {
        found.push(format!(
            "{USERS_XML} holds a password; hashes come from ./secrets/"
        ));
    }
    if !xml.contains(r#"<default remove="remove"/>"#) {
        found.push(format!(
            "{USERS_XML}: the image's passwordless `default` admin must be removed"
        ));
    }
    let users = element(&xml, "users").unwrap_or_default();
    for account in [&writer, &reader] {
        if account == "default" {
            found.push(
                "the `default` ClickHouse account is an admin; use sipas_writer/sipas_reader"
                    .into(),
            );
        }
        match element(users, account) {
            None => found.push(format!("{USERS_XML} does not define the user {account}")),
            Some(user) => {
                if element(user, "access_management").is_some_and(|v| v.trim() != "0") {
                    found.push(format!("{account}: access_management (an admin)"));
                }
            }
        }
    }
    if let Some(user) = element(users, &reader) {
        let grants = grants(user);
        let select_only = !grants.is_empty()
            && grants.iter().all(|g| {
                let g = g.to_ascii_uppercase();
                g.starts_with("GRANT SELECT ON ") && !g.contains(',')
            });
        if !select_only {
            found.push(format!(
                "{reader} (sipas serve) must be read-only: grants {grants:?}, want only GRANT SELECT ON …"
            ));
        }
        let profile = element(user, "profile").unwrap_or("default").trim();
        let readonly = element(&xml, "profiles")
            .and_then(|p| element(p, profile))
            .and_then(|p| element(p, "readonly"))
            .map(str::trim);
        if !matches!(readonly, Some("1" | "2")) {
            found.push(format!(
                "{reader}: profile {profile} must set readonly (no writes or DDL whatever the grants)"
            ));
        }
    }
    if let Some(user) = element(users, &writer) {
        let grants = grants(user).join(" ").to_ascii_uppercase();
        for needed in ["INSERT", "CREATE TABLE", "CREATE DATABASE", "SELECT"] {
            if !grants.contains(needed) {
                found.push(format!("{writer} (sipas run, migrations) lacks {needed}"));
            }
        }
    }
}

// ------------------------------------------------------------------ Dockerfile

/// Dockerfile instructions with `\` continuations joined into one line each.
fn instructions(text: &str) -> Vec<String> {
    let mut all = Vec::new();
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
                all.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

fn keyword(instruction: &str) -> String {
    instruction
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// The source arguments of a `COPY` from the build context (flags and destination dropped).
fn copy_sources(instruction: &str) -> Vec<String> {
    let args: Vec<&str> = instruction
        .split_whitespace()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    args[..args.len().saturating_sub(1)]
        .iter()
        .map(|s| s.trim_end_matches('/').trim_start_matches("./").to_owned())
        .collect()
}

fn is_cargo_build_of_sipas(instruction: &str) -> bool {
    let words: Vec<&str> = instruction.split_whitespace().collect();
    keyword(instruction) == "RUN"
        && instruction.contains("cargo build")
        && words.contains(&"--locked")
        && words.contains(&"--release")
        && words
            .windows(2)
            .any(|w| w == ["--bin", "sipas"] || w[0] == "--bin=sipas")
}

fn dockerfile(files: &Files, found: &mut Vec<String>) {
    let all = instructions(&files.dockerfile);
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, i)| keyword(i) == "FROM")
        .map(|(n, _)| n)
        .collect();
    if stages.len() < 2 {
        found.push("Dockerfile: expected a multi-stage build (builder, runtime)".into());
        return;
    }
    for &at in &stages {
        let image = all[at].split_whitespace().nth(1).unwrap_or_default();
        if let Some(p) = pin_problem(image) {
            found.push(format!("Dockerfile: {p}"));
        }
    }
    let builder = &all[stages[0]..stages[1]];
    let runtime = &all[*stages.last().unwrap()..];

    // The build of the real sources: after they are copied, leaving the binary where the
    // runtime stage takes it from. (A dependency-only build before COPY src does not count.)
    let sources_at = builder
        .iter()
        .position(|i| keyword(i) == "COPY" && copy_sources(i).iter().any(|s| s == "src"));
    let real_build = sources_at.and_then(|at| {
        builder[at..]
            .iter()
            .find(|i| is_cargo_build_of_sipas(i) && i.contains("/usr/local/bin/sipas"))
    });
    if real_build.is_none() {
        found.push(
            "Dockerfile: no `cargo build --release --locked --bin sipas` of the copied sources (after COPY src) installing /usr/local/bin/sipas".into(),
        );
    }
    // FEATURES reaches every cargo build, and the builder has what kafka-ssl links.
    if !builder.iter().any(|i| {
        keyword(i) == "ARG"
            && i.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.starts_with("FEATURES"))
    }) {
        found.push("Dockerfile: no `ARG FEATURES` in the builder stage".into());
    }
    for build in builder.iter().filter(|i| is_cargo_build_of_sipas(i)) {
        if !build.contains("--features \"$FEATURES\"") {
            found.push(format!(
                "Dockerfile: `{build}` ignores the FEATURES build argument"
            ));
        }
    }
    for package in ["libssl-dev", "pkg-config"] {
        if !builder.iter().any(|i| {
            keyword(i) == "RUN"
                && i.contains("apt-get install")
                && i.split_whitespace().any(|w| w == package)
        }) {
            found.push(format!(
                "Dockerfile: the builder does not install {package} (needed by --features kafka-ssl)"
            ));
        }
    }

    // No configuration file, and above all not the development one with its secret.
    for instruction in &all {
        if keyword(instruction) == "COPY" && instruction.contains("local.toml") {
            found.push(format!(
                "Dockerfile copies the development configuration: `{instruction}`"
            ));
        }
    }
    if !files
        .dockerignore
        .lines()
        .any(|l| l.trim().trim_start_matches('/') == "config/local.toml")
    {
        found.push(".dockerignore must list config/local.toml (the development secret)".into());
    }
    let allowed = ["config/frameworks", "schemas"];
    let mut copied = Vec::new();
    for instruction in runtime.iter().filter(|i| keyword(i) == "COPY") {
        if instruction.contains("--from") {
            continue;
        }
        for source in copy_sources(instruction) {
            if !allowed.contains(&source.as_str()) {
                found.push(format!(
                    "Dockerfile: the runtime image copies {source:?}; only {allowed:?} (read at run time) belong there"
                ));
            }
            copied.push(source);
        }
    }
    for needed in allowed {
        if !copied.iter().any(|c| c == needed) {
            found.push(format!(
                "Dockerfile: the runtime image lacks {needed} (read at run time)"
            ));
        }
    }
    if !runtime.iter().any(|i| {
        keyword(i) == "COPY" && i.contains("--from=builder") && i.contains("/usr/local/bin/sipas")
    }) {
        found.push("Dockerfile: the runtime stage must copy the built /usr/local/bin/sipas".into());
    }

    // Runs as the unprivileged user it creates.
    let user = runtime
        .iter()
        .rev()
        .find(|i| keyword(i) == "USER")
        .and_then(|i| i.split_whitespace().nth(1))
        .map(str::to_owned);
    match user {
        None => {
            found.push("Dockerfile: the runtime stage has no USER (it would run as root)".into())
        }
        Some(user) if is_root(&user) => {
            found.push(format!("Dockerfile: the runtime stage runs as {user}"))
        }
        Some(user) => {
            let name = user.split(':').next().unwrap_or_default();
            let created = runtime.iter().any(|i| {
                keyword(i) == "RUN"
                    && i.contains("useradd")
                    && i.split_whitespace().any(|w| w == name)
            });
            if !created {
                found.push(format!(
                    "Dockerfile: USER {user} is not created (useradd) in the runtime stage"
                ));
            }
        }
    }
    if !runtime
        .iter()
        .any(|i| i.replace(' ', "") == r#"ENTRYPOINT["sipas"]"#)
    {
        found.push("Dockerfile: ENTRYPOINT [\"sipas\"] missing".into());
    }
    for instruction in all
        .iter()
        .filter(|i| matches!(keyword(i).as_str(), "ENV" | "ARG"))
    {
        let upper = instruction.to_ascii_uppercase();
        if upper.contains("SECRET") || upper.contains("PASSWORD") {
            found.push(format!(
                "Dockerfile: `{instruction}` bakes a secret into the image"
            ));
        }
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn the_shipped_files_pass_every_rule() {
    let problems = problems(&Files::shipped());
    assert!(
        problems.is_empty(),
        "problems:\n  {}",
        problems.join("\n  ")
    );
}

/// A known-bad edit of the shipped files.
struct Break {
    name: &'static str,
    /// A word the rejection must name (case-insensitive).
    reason: &'static str,
    apply: Box<dyn Fn(&mut Files)>,
}

fn replace(text: &mut String, from: &str, to: &str) {
    assert!(
        text.contains(from),
        "the shipped file no longer contains {from:?}"
    );
    *text = text.replacen(from, to, 1);
}

/// Edits docker-compose.yml as data (merge keys applied) and writes it back as YAML.
fn compose_edit(edit: impl Fn(&mut Mapping) + 'static) -> Box<dyn Fn(&mut Files)> {
    Box::new(move |files: &mut Files| {
        let mut doc = parse_compose(&files.compose).unwrap();
        let services = doc
            .get_mut("services")
            .and_then(Value::as_mapping_mut)
            .unwrap();
        edit(services);
        files.compose = serde_yaml::to_string(&doc).unwrap();
    })
}

fn svc<'a>(services: &'a mut Mapping, name: &str) -> &'a mut Mapping {
    services
        .get_mut(name)
        .and_then(Value::as_mapping_mut)
        .unwrap_or_else(|| panic!("service {name}"))
}

fn env_of<'a>(services: &'a mut Mapping, name: &str) -> &'a mut Mapping {
    svc(services, name)
        .get_mut("environment")
        .and_then(Value::as_mapping_mut)
        .unwrap_or_else(|| panic!("{name} environment"))
}

fn remove(map: &mut Mapping, key: &str) {
    assert!(map.remove(key).is_some(), "the shipped file has no {key}");
}

fn set(map: &mut Mapping, key: &str, value: &str) {
    map.insert(key.into(), value.into());
}

fn dockerfile_edit(edit: impl Fn(&mut Vec<String>) + 'static) -> Box<dyn Fn(&mut Files)> {
    Box::new(move |files: &mut Files| {
        let mut all = instructions(&files.dockerfile);
        let before = all.clone();
        edit(&mut all);
        assert_ne!(all, before, "the Dockerfile edit changed nothing");
        files.dockerfile = all.join("\n");
    })
}

fn text_edit(
    pick: fn(&mut Files) -> &mut String,
    from: &'static str,
    to: &'static str,
) -> Box<dyn Fn(&mut Files)> {
    Box::new(move |files: &mut Files| replace(pick(files), from, to))
}

fn breaks() -> Vec<Break> {
    let exit_1 = |name: &'static str| {
        compose_edit(move |s| {
            let check = svc(s, name)
                .get_mut("healthcheck")
                .and_then(Value::as_mapping_mut)
                .unwrap();
            check.insert(
                "test".into(),
                Value::Sequence(vec!["CMD-SHELL".into(), "exit 1".into()]),
            );
        })
    };
    let started = |name: &'static str, dependency: &'static str| {
        compose_edit(move |s| {
            let deps = svc(s, name)
                .get_mut("depends_on")
                .and_then(Value::as_mapping_mut)
                .unwrap();
            let entry = deps
                .get_mut(dependency)
                .and_then(Value::as_mapping_mut)
                .unwrap();
            set(entry, "condition", "service_started");
        })
    };
    let image = |name: &'static str, image: &'static str| {
        compose_edit(move |s| set(svc(s, name), "image", image))
    };
    let env_set = |name: &'static str, key: &'static str, value: &'static str| {
        compose_edit(move |s| set(env_of(s, name), key, value))
    };
    let env_removed =
        |name: &'static str, key: &'static str| compose_edit(move |s| remove(env_of(s, name), key));
    let removed =
        |name: &'static str, key: &'static str| compose_edit(move |s| remove(svc(s, name), key));
    let dockerfile_text = |from, to| text_edit(|f| &mut f.dockerfile, from, to);
    let users_text = |from, to| text_edit(|f| &mut f.users_xml, from, to);
    let dockerfile_line = |line: &'static str| dockerfile_edit(move |all| all.push(line.into()));
    vec![
        Break {
            name: "advertised listener localhost",
            reason: "KAFKA_ADVERTISED_LISTENERS",
            apply: env_set(
                "kafka",
                "KAFKA_ADVERTISED_LISTENERS",
                "PLAINTEXT://localhost:9092",
            ),
        },
        Break {
            name: "no CLUSTER_ID",
            reason: "CLUSTER_ID",
            apply: env_removed("kafka", "CLUSTER_ID"),
        },
        Break {
            name: "CLUSTER_ID not a KRaft id",
            reason: "CLUSTER_ID",
            apply: env_set("kafka", "CLUSTER_ID", "sipas-cluster"),
        },
        Break {
            name: "brokers not advertised",
            reason: "SIPAS__KAFKA__BROKERS",
            apply: env_set("sipas", "SIPAS__KAFKA__BROKERS", "broker:9092"),
        },
        Break {
            name: "kafka healthcheck exit 1",
            reason: "healthcheck",
            apply: exit_1("kafka"),
        },
        Break {
            name: "clickhouse healthcheck exit 1",
            reason: "healthcheck",
            apply: exit_1("clickhouse"),
        },
        Break {
            name: "sipas healthcheck exit 1",
            reason: "healthcheck",
            apply: exit_1("sipas"),
        },
        Break {
            name: "dashboard healthcheck exit 1",
            reason: "healthcheck",
            apply: exit_1("dashboard"),
        },
        Break {
            name: "sipas healthcheck disabled",
            reason: "healthcheck",
            apply: compose_edit(|s| {
                let check = svc(s, "sipas")
                    .get_mut("healthcheck")
                    .and_then(Value::as_mapping_mut)
                    .unwrap();
                check.insert("disable".into(), true.into());
            }),
        },
        Break {
            name: "sipas healthcheck on the wrong port",
            reason: "healthcheck",
            apply: text_edit(
                |f| &mut f.compose,
                "/dev/tcp/127.0.0.1/9100",
                "/dev/tcp/127.0.0.1/9101",
            ),
        },
        Break {
            name: "USER root",
            reason: "root",
            apply: dockerfile_text("USER sipas:sipas", "USER root"),
        },
        Break {
            name: "USER 0:0",
            reason: "runs as 0:0",
            apply: dockerfile_text("USER sipas:sipas", "USER 0:0"),
        },
        Break {
            name: "no USER",
            reason: "no USER",
            apply: dockerfile_edit(|all| all.retain(|i| keyword(i) != "USER")),
        },
        Break {
            name: "compose runs a service as root",
            reason: "runs as user root",
            apply: compose_edit(|s| set(svc(s, "sipas"), "user", "root")),
        },
        Break {
            name: "real build step deleted",
            reason: "cargo build",
            apply: dockerfile_edit(|all| {
                let at = all
                    .iter()
                    .position(|i| keyword(i) == "COPY" && i.contains(" src "))
                    .unwrap();
                let build = all[at..]
                    .iter()
                    .position(|i| is_cargo_build_of_sipas(i))
                    .unwrap()
                    + at;
                all.remove(build);
            }),
        },
        Break {
            name: "FEATURES build argument dropped",
            reason: "FEATURES",
            apply: dockerfile_edit(|all| all.retain(|i| !i.starts_with("ARG FEATURES"))),
        },
        Break {
            name: "FEATURES not passed to the real build",
            reason: "FEATURES",
            apply: dockerfile_edit(|all| {
                let last = all
                    .iter()
                    .rposition(|i| is_cargo_build_of_sipas(i))
                    .unwrap();
                all[last] = all[last].replace(" ${FEATURES:+--features \"$FEATURES\"}", "");
            }),
        },
        Break {
            name: "no OpenSSL headers for kafka-ssl",
            reason: "libssl-dev",
            apply: dockerfile_text(" libssl-dev", ""),
        },
        Break {
            name: "secret variable required at interpolation",
            reason: "interpolates",
            apply: compose_edit(|s| {
                let env = env_of(s, "sipas");
                remove(env, "SIPAS__PII__HMAC_SECRET_FILE");
                set(
                    env,
                    "SIPAS__PII__HMAC_SECRET",
                    "${SIPAS_HMAC_SECRET:?set SIPAS_HMAC_SECRET}",
                );
            }),
        },
        Break {
            name: "host variable without default",
            reason: "interpolates",
            apply: env_set("sipas", "RUST_LOG", "${RUST_LOG}"),
        },
        Break {
            name: "committed ClickHouse password",
            reason: "password",
            apply: env_set("clickhouse", "CLICKHOUSE_PASSWORD", "sipas-local"),
        },
        Break {
            name: "password for sipas in the compose file",
            reason: "password",
            apply: compose_edit(|s| {
                let env = env_of(s, "sipas");
                remove(env, "SIPAS__CLICKHOUSE__PASSWORD_FILE");
                set(env, "SIPAS__CLICKHOUSE__PASSWORD", "sipas-local");
            }),
        },
        Break {
            name: "password file not mounted",
            reason: "mounted secrets",
            apply: compose_edit(|s| {
                svc(s, "sipas").insert(
                    "secrets".into(),
                    Value::Sequence(vec!["hmac_secret".into()]),
                );
            }),
        },
        Break {
            name: "dashboard without the HMAC secret",
            reason: "HMAC",
            apply: env_removed("dashboard", "SIPAS__PII__HMAC_SECRET_FILE"),
        },
        Break {
            name: "one account for writer and reader",
            reason: "read-only",
            apply: env_set("dashboard", "SIPAS__CLICKHOUSE__USER", "sipas_writer"),
        },
        Break {
            name: "reader may insert",
            reason: "read-only",
            apply: users_text("GRANT SELECT ON sipas.*", "GRANT SELECT, INSERT ON sipas.*"),
        },
        Break {
            name: "reader without a readonly profile",
            reason: "readonly",
            apply: users_text("<readonly>2</readonly>", "<readonly>0</readonly>"),
        },
        Break {
            name: "passwordless default admin kept",
            reason: "default",
            apply: users_text(r#"<default remove="remove"/>"#, ""),
        },
        Break {
            name: "password committed in the users file",
            reason: "password",
            apply: users_text(
                "<sipas_writer>",
                "<sipas_writer><password>sipas-local</password>",
            ),
        },
        Break {
            name: "image entrypoint creates its own admin",
            reason: "CLICKHOUSE_SKIP_USER_SETUP",
            apply: env_removed("clickhouse", "CLICKHOUSE_SKIP_USER_SETUP"),
        },
        Break {
            name: "dev config copied into the image",
            reason: "copies \"config\"",
            apply: dockerfile_text(
                "COPY --chown=root:root config/frameworks ./config/frameworks",
                "COPY --chown=root:root config ./config",
            ),
        },
        Break {
            name: "local.toml copied",
            reason: "development configuration",
            apply: dockerfile_line("COPY config/local.toml ./config/local.toml"),
        },
        Break {
            name: "local.toml in the build context",
            reason: "config/local.toml",
            apply: text_edit(|f| &mut f.dockerignore, "config/local.toml\n", ""),
        },
        Break {
            name: "secrets in the build context",
            reason: ".dockerignore",
            apply: text_edit(|f| &mut f.dockerignore, "secrets/\n", ""),
        },
        Break {
            name: "secrets not git-ignored",
            reason: ".gitignore",
            apply: text_edit(|f| &mut f.gitignore, "secrets/\n", ""),
        },
        Break {
            name: "secret in an ENV",
            reason: "bakes a secret",
            apply: dockerfile_line("ENV SIPAS__PII__HMAC_SECRET=0123456789abcdef"),
        },
        Break {
            name: "floating kafka tag",
            reason: "floats",
            apply: image("kafka", "apache/kafka:4"),
        },
        Break {
            name: "kafka latest",
            reason: "floats",
            apply: image("kafka", "apache/kafka:latest"),
        },
        Break {
            name: "kafka untagged",
            reason: "no tag",
            apply: image("kafka", "apache/kafka"),
        },
        Break {
            name: "floating clickhouse tag",
            reason: "floats",
            apply: image("clickhouse", "clickhouse/clickhouse-server:26.8"),
        },
        Break {
            name: "floating rust tag",
            reason: "floats",
            apply: dockerfile_text("FROM rust:1.99.0-trixie", "FROM rust:1-trixie"),
        },
        Break {
            name: "floating debian tag",
            reason: "floats",
            apply: dockerfile_text("FROM debian:13.7-slim", "FROM debian:trixie-slim"),
        },
        Break {
            name: "dashboard waits only for service_started",
            reason: "service_healthy",
            apply: started("dashboard", "sipas"),
        },
        Break {
            name: "simulator waits only for service_started",
            reason: "service_healthy",
            apply: started("simulator", "sipas"),
        },
        Break {
            name: "sipas waits only for kafka to start",
            reason: "service_healthy",
            apply: started("sipas", "kafka"),
        },
        Break {
            name: "no limits for sipas",
            reason: "limits",
            apply: removed("sipas", "deploy"),
        },
        Break {
            name: "no memory limit for kafka",
            reason: "limits.memory",
            apply: compose_edit(|s| {
                let limits = svc(s, "kafka")
                    .get_mut("deploy")
                    .and_then(|d| d.get_mut("resources"))
                    .and_then(|r| r.get_mut("limits"))
                    .and_then(Value::as_mapping_mut)
                    .unwrap();
                remove(limits, "memory");
            }),
        },
        Break {
            name: "no log rotation",
            reason: "rotated",
            apply: removed("clickhouse", "logging"),
        },
        Break {
            name: "privileges may be gained",
            reason: "no-new-privileges",
            apply: removed("dashboard", "security_opt"),
        },
        Break {
            name: "sipas with a writable root",
            reason: "read_only",
            apply: removed("sipas", "read_only"),
        },
    ]
}

#[test]
fn every_break_is_rejected() {
    let shipped = Files::shipped();
    assert!(
        problems(&shipped).is_empty(),
        "the shipped files have problems"
    );
    let mut missed = Vec::new();
    for b in breaks() {
        let mut files = shipped.clone();
        (b.apply)(&mut files);
        let problems = problems(&files);
        let named = problems
            .iter()
            .any(|p| p.to_lowercase().contains(&b.reason.to_lowercase()));
        if !named {
            missed.push(format!(
                "{}: expected a problem naming {:?}, got {problems:?}",
                b.name, b.reason
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "breaks not rejected:\n  {}",
        missed.join("\n  ")
    );
}

// ------------------------------------------------------------------ executed checks

/// Answers every request with `status`, once per connection, and records request lines.
fn http_server(status: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            // Rest of the head.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let _ = tx.send(line.trim_end().to_owned());
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        }
    });
    (port, rx)
}

/// Runs a healthcheck `test` (CMD form) with its port replaced; its exit status.
fn run_probe(test: &[String], from_port: &str, to_port: u16) -> bool {
    assert_eq!(test.first().map(String::as_str), Some("CMD"), "{test:?}");
    let args: Vec<String> = test[1..]
        .iter()
        .map(|a| a.replace(&format!("/{from_port}"), &format!("/{to_port}")))
        .collect();
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the healthcheck {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ClickHouse, sipas and dashboard healthchecks, run as written (bash and coreutils, as
/// in the images): healthy on 200 from the right path, unhealthy on 503 or with nothing
/// listening.
#[test]
fn healthchecks_probe_the_endpoints_they_name() {
    let doc = parse_compose(&Files::shipped().compose).unwrap();
    for (name, port_key, path) in [
        ("clickhouse", "", "/ping"),
        ("sipas", "SIPAS__METRICS__LISTEN", "/health"),
        ("dashboard", "SIPAS__SERVE__LISTEN", "/api/v1/health"),
    ] {
        let svc = service(&doc, name).unwrap();
        let env = environment(svc);
        let port = env_value(&env, port_key)
            .map(port_of)
            .unwrap_or("8123")
            .to_owned();
        let test: Vec<String> = svc["healthcheck"]["test"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(scalar)
            .collect();

        let (ok_port, requests) = http_server("200 OK");
        assert!(run_probe(&test, &port, ok_port), "{name}: unhealthy on 200");
        let request = requests
            .recv_timeout(Duration::from_secs(5))
            .expect("the probe sent no request within 5 s");
        assert_eq!(request, format!("GET {path} HTTP/1.1"), "{name}");

        let (failing_port, _requests) = http_server("503 Service Unavailable");
        assert!(
            !run_probe(&test, &port, failing_port),
            "{name}: healthy on 503"
        );

        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(
            !run_probe(&test, &port, closed),
            "{name}: healthy with nothing listening"
        );
    }
}

/// A scratch directory, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sipas-compose-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn compose_secrets(dir: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(root().join("scripts/compose-secrets.sh"))
        .arg(dir)
        .output()
        .expect("running scripts/compose-secrets.sh")
}

/// Each service's `SIPAS__…` variables, with the secrets it mounts made by
/// scripts/compose-secrets.sh, load through the real configuration loader: a renamed key or
/// a missing secret fails here, as it would in the container.
#[test]
fn every_service_configuration_loads_with_the_generated_secrets() {
    let scratch = TempDir::new("secrets");
    let dir = scratch.0.join("secrets");
    let output = compose_secrets(&dir);
    assert!(output.status.success(), "compose-secrets.sh: {output:?}");
    let read_secret = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();

    let doc = parse_compose(&Files::shipped().compose).unwrap();
    // Host file of each compose secret, as the script made it.
    let files: BTreeMap<String, PathBuf> = doc["secrets"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let file = scalar(&v["file"]);
            let file = file.strip_prefix("./secrets/").unwrap();
            (scalar(k), dir.join(file))
        })
        .collect();
    for (secret, path) in &files {
        assert!(
            path.is_file(),
            "compose-secrets.sh did not make {secret} ({})",
            path.display()
        );
    }

    let mut checked = 0;
    for (name, svc) in services(&doc) {
        if !built_here(svc) {
            continue;
        }
        let mounted = service_secrets(svc);
        let vars: Vec<(String, String)> = environment(svc)
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .map(
                |(k, v)| match mounted.iter().find(|(_, target)| *target == v) {
                    Some((source, _)) => (k, files[source].display().to_string()),
                    None => (k, v),
                },
            )
            .collect();
        checked += vars.len();
        let config = Config::load_with_env(None, vars.clone()).unwrap_or_else(|e| {
            panic!("service `{name}`: its SIPAS__ variables {vars:?} are rejected: {e}")
        });
        if matches!(subcommand(svc).as_str(), "run" | "serve") {
            assert_eq!(
                config
                    .pii
                    .secret()
                    .unwrap_or_else(|e| panic!("service `{name}`: {e}")),
                read_secret("hmac_secret").into_bytes(),
                "{name}"
            );
            let password_file = match config.clickhouse.user.as_str() {
                "sipas_writer" => "clickhouse_writer_password",
                "sipas_reader" => "clickhouse_reader_password",
                other => panic!("{name}: ClickHouse user {other}"),
            };
            assert_eq!(
                config.clickhouse.password,
                read_secret(password_file),
                "{name}"
            );
        }
    }
    assert!(
        checked >= 10,
        "expected SIPAS__ variables in the compose file, found {checked}"
    );

    // The server's hashes are those of the passwords the services send.
    let xml = std::fs::read_to_string(&files["clickhouse_passwords"]).unwrap();
    for (user, password_file) in [
        ("sipas_writer", "clickhouse_writer_password"),
        ("sipas_reader", "clickhouse_reader_password"),
    ] {
        let hash = element(element(&xml, user).unwrap(), "password_sha256_hex").unwrap();
        let want = hex::encode(sha2::Sha256::digest(read_secret(password_file).as_bytes()));
        assert_eq!(hash, want, "{user}");
    }

    // The check above has teeth: a misspelt key is an error.
    let bogus = vec![("SIPAS__KAFKA__BROKER".to_owned(), "kafka:9092".to_owned())];
    assert!(Config::load_with_env(None, bogus).is_err());
}

/// Once made, a secret is kept: running the script again (before every `up`, after a
/// checkout) must not change a pseudonym.
#[test]
fn compose_secrets_keeps_what_exists_and_refuses_bad_files() {
    let scratch = TempDir::new("keep");
    let dir = scratch.0.join("secrets");
    let secrets = || -> Vec<String> {
        [
            "hmac_secret",
            "clickhouse_writer_password",
            "clickhouse_reader_password",
        ]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect()
    };
    assert!(compose_secrets(&dir).status.success());
    let before = secrets();
    assert!(before
        .iter()
        .all(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())));
    assert!(compose_secrets(&dir).status.success());
    assert_eq!(before, secrets());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(&dir),
            0o700,
            "the secrets directory is its owner's only"
        );
        assert_eq!(
            mode(&dir.join("hmac_secret")),
            0o644,
            "readable by the containers' users"
        );
    }

    // A password ClickHouse would hash differently from what sipas sends is refused.
    std::fs::write(dir.join("clickhouse_reader_password"), "two words\n").unwrap();
    let output = compose_secrets(&dir);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("clickhouse_reader_password"));
}
