//! Configuration: a TOML file (optional) overlaid with `SIPAS__SECTION__KEY` environment
//! variables, deserialised into structs that reject unknown keys. Every default is written
//! next to its field and repeated in `config/default.toml`. One file per section holds its
//! struct, defaults and checks; the environment overlay and loading are here.
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod clickhouse;
mod contract;
mod gateway;
mod http;
mod import;
mod index;
mod kafka;
mod log;
mod metrics;
mod pii;
mod pipeline;
mod serve;

pub use clickhouse::ClickHouseConfig;
pub use contract::ContractConfig;
pub use gateway::{GatewayConfig, GatewayToken};
pub use http::HttpConfig;
pub use import::{CsvMapping, ImportConfig};
pub use index::IndexConfig;
pub use kafka::KafkaConfig;
pub use log::{LogConfig, LogFormat};
pub use metrics::MetricsConfig;
pub use pii::{PiiConfig, MIN_HMAC_SECRET_LEN};
pub use pipeline::{PipelineConfig, STATISTICS_INTERVAL_MS};
pub use serve::ServeConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A secret read from a file (`pii.hmac_secret_file`, `clickhouse.password_file`); the
    /// message never quotes the file's contents.
    #[error("{key} {path}: {reason}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The contents of a secret file, trimmed (editors and `echo` add a final newline).
/// Missing, unreadable, non-UTF-8 and empty files are errors naming `key` and the path.
fn read_secret_file(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let error = |reason: String| ConfigError::SecretFile {
        key,
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => error("no such file".into()),
        std::io::ErrorKind::InvalidData => error("not UTF-8 text".into()),
        _ => error(format!("cannot be read: {e}")),
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(error("is empty".into()));
    }
    Ok(secret.to_owned())
}

pub const ENV_PREFIX: &str = "SIPAS__";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub pipeline: PipelineConfig,
    pub contract: ContractConfig,
    pub pii: PiiConfig,
    pub metrics: MetricsConfig,
    pub index: IndexConfig,
    pub import: ImportConfig,
    pub gateway: GatewayConfig,
    pub serve: ServeConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
}

impl Config {
    /// Reads `path` (if given) and applies `SIPAS__…` overrides from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        for (name, value) in overrides {
            apply_override(&mut table, &name, &value)?;
        }
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path
                        .map(Path::to_owned)
                        .unwrap_or_else(|| PathBuf::from("<environment>")),
                    message: e.to_string(),
                })?;
        config.check()?;
        config.clickhouse.resolve_password_file()?;
        Ok(config)
    }

    /// Each section's own checks.
    fn check(&self) -> Result<(), ConfigError> {
        self.pipeline.check()?;
        self.kafka.check()?;
        self.clickhouse.check()?;
        self.import.check()?;
        self.gateway.check()?;
        self.http.check()?;
        self.serve.check()
    }
}

/// `SIPAS__KAFKA__BROKERS=x` sets `kafka.brokers`; `SIPAS__KAFKA__PROPERTIES__SASL_MECHANISM`
/// style keys are not needed: properties use their dotted names under `properties`,
/// e.g. `SIPAS__KAFKA__PROPERTIES__security.protocol=SASL_SSL`.
fn apply_override(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .enumerate()
        // Section and field names are lower-case; property names under `properties` keep their case.
        .map(|(i, part)| {
            if i < 2 {
                part.to_lowercase()
            } else {
                part.to_owned()
            }
        })
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            name: name.into(),
            message: "empty key segment".into(),
        });
    }
    let (last, parents) = path.split_last().expect("non-empty");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            name: name.into(),
            message: format!("`{part}` is not a section"),
        })?;
    }
    let is_property = matches!(
        parents.last().map(String::as_str),
        Some("properties" | "producer_properties")
    );
    current.insert(last.clone(), env_value(value, is_property));
    Ok(())
}

/// Numbers and booleans are typed so that `SIPAS__PIPELINE__BATCH_MAX_MESSAGES=100` (and
/// `SIPAS__GATEWAY__REQUESTS_PER_SECOND=0.5`) work;
/// librdkafka properties are always strings.
fn env_value(value: &str, always_string: bool) -> toml::Value {
    if !always_string {
        if let Ok(i) = value.parse::<i64>() {
            return toml::Value::Integer(i);
        }
        if let Ok(b) = value.parse::<bool>() {
            return toml::Value::Boolean(b);
        }
        if value.contains('.') {
            if let Ok(f) = value.parse::<f64>() {
                return toml::Value::Float(f);
            }
        }
    }
    toml::Value::String(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file_or_env() {
        let config = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(config.kafka.surveys_topic, "sipas.surveys");
        assert_eq!(config.kafka.hotline_topic, "sipas.hotline");
        for kind in crate::contract::kind::EventKind::ALL {
            let topic = format!("sipas.{}", kind.stream_name());
            assert_eq!(
                config.kafka.topic(kind),
                topic,
                "the default topic: the stream's name"
            );
        }
        assert_eq!(config.kafka.dlq_topic, "sipas.dlq");
        assert_eq!(config.pipeline.max_message_bytes, 65536);
        assert_eq!(config.clickhouse.database, "sipas");
        assert_eq!(config.contract.max_future_skew_seconds, 86_400);
    }

    #[test]
    fn max_future_skew_from_the_environment() {
        let config = Config::load_with_env(
            None,
            env(&[("SIPAS__CONTRACT__MAX_FUTURE_SKEW_SECONDS", "3600")]),
        )
        .unwrap();
        assert_eq!(config.contract.max_future_skew_seconds, 3600);
        for bad in ["-1", "1 day", "4294967296"] {
            assert!(
                Config::load_with_env(
                    None,
                    env(&[("SIPAS__CONTRACT__MAX_FUTURE_SKEW_SECONDS", bad)])
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    /// The fault tests shorten it to exceed it within a test.
    #[test]
    fn max_poll_interval_defaults_to_ten_minutes_and_is_overridden_from_the_environment() {
        let default = Config::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(default.pipeline.max_poll_interval_ms, 600_000);
        let config = Config::load_with_env(
            None,
            env(&[("SIPAS__PIPELINE__MAX_POLL_INTERVAL_MS", "10000")]),
        )
        .unwrap();
        assert_eq!(config.pipeline.max_poll_interval_ms, 10_000);
    }

    #[test]
    fn environment_overrides_file_and_types_values() {
        let dir = std::env::temp_dir().join(format!("sipas-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[kafka]\nbrokers = \"file:9092\"\n[pipeline]\nbatch_max_messages = 5\n",
        )
        .unwrap();
        let config = Config::load_with_env(
            Some(&file),
            env(&[
                ("SIPAS__KAFKA__BROKERS", "env:9092"),
                ("SIPAS__PIPELINE__BATCH_MAX_WAIT_MS", "42"),
                ("SIPAS__GATEWAY__REQUESTS_PER_SECOND", "0.5"),
                ("SIPAS__KAFKA__PROPERTIES__security.protocol", "SASL_SSL"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka.brokers, "env:9092");
        assert_eq!(config.pipeline.batch_max_messages, 5);
        assert_eq!(config.pipeline.batch_max_wait_ms, 42);
        assert_eq!(config.gateway.requests_per_second, 0.5);
        assert_eq!(
            config
                .kafka
                .properties
                .get("security.protocol")
                .map(String::as_str),
            Some("SASL_SSL")
        );
    }

    #[test]
    fn unknown_keys_are_rejected_from_file_and_env() {
        let err = Config::load_with_env(None, env(&[("SIPAS__KAFKA__BROKER", "x")])).unwrap_err();
        assert!(err.to_string().contains("broker"), "{err}");
        assert!(Config::load_with_env(None, env(&[("SIPAS__NOPE__X", "1")])).is_err());
    }

    #[test]
    fn log_format_and_http_limits_from_the_environment() {
        let config = Config::load_with_env(
            None,
            env(&[
                ("SIPAS__LOG__FORMAT", "json"),
                ("SIPAS__HTTP__MAX_CONNECTIONS", "16"),
            ]),
        )
        .unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.http.max_connections, 16);
        assert_eq!(Config::default().log.format, LogFormat::Text);
        assert!(Config::load_with_env(None, env(&[("SIPAS__LOG__FORMAT", "yaml")])).is_err());
        assert!(
            Config::load_with_env(None, env(&[("SIPAS__HTTP__MAX_CONNECTIONS", "0")])).is_err()
        );
    }

    #[test]
    fn shipped_config_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in ["config/default.toml", "config/local.toml"] {
            Config::load_with_env(Some(&root.join(name)), env(&[]))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn stall_threshold_is_at_least_two_statistics_intervals() {
        let with =
            |ms: &str| Config::load_with_env(None, env(&[("SIPAS__PIPELINE__STALL_AFTER_MS", ms)]));
        assert!(with("9999").is_err());
        assert_eq!(with("10000").unwrap().pipeline.stall_after_ms, 10_000);
        assert_eq!(
            Config::load_with_env(None, env(&[]))
                .unwrap()
                .pipeline
                .stall_after_ms,
            60_000
        );
    }

    /// The local stack notices a killed member as fast as the tests do (tests/support).
    #[test]
    fn local_config_has_the_tests_session_timeout() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let local = Config::load_with_env(Some(&root.join("config/local.toml")), env(&[])).unwrap();
        let property = |key: &str| local.kafka.properties.get(key).map(String::as_str);
        assert_eq!(property("session.timeout.ms"), Some("6000"));
        assert_eq!(property("heartbeat.interval.ms"), Some("1000"));
    }

    #[test]
    fn secret_is_required_and_not_short() {
        let err = PiiConfig::default().secret().unwrap_err().to_string();
        assert!(
            err.contains("pii.hmac_secret or pii.hmac_secret_file must be set"),
            "{err}"
        );
        let ok = PiiConfig {
            hmac_secret: Some("0123456789abcdef".into()),
            hmac_secret_file: None,
        };
        assert_eq!(ok.secret().unwrap().len(), 16);
        let short = PiiConfig {
            hmac_secret: Some("0123456789abcde".into()),
            hmac_secret_file: None,
        };
        let err = short.secret().unwrap_err().to_string();
        assert!(err.contains("15 bytes long, at least 16"), "{err}");
        assert!(
            !err.contains("0123456789abcde"),
            "the error quotes the secret: {err}"
        );
    }

    /// A directory of its own per test, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("sipas-config-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn from_file(path: PathBuf) -> PiiConfig {
        PiiConfig {
            hmac_secret: None,
            hmac_secret_file: Some(path),
        }
    }

    #[test]
    fn secret_file_contents_are_trimmed() {
        let dir = TempDir::new("secret-trimmed");
        let path = dir.file("hmac", b"  0123456789abcdef0123\n");
        assert_eq!(
            from_file(path).secret().unwrap(),
            b"0123456789abcdef0123".to_vec()
        );
        // The same secret from the environment, as a compose service would set it.
        let path = dir.file("hmac-env", b"0123456789abcdef0123\r\n");
        let config = Config::load_with_env(
            None,
            env(&[("SIPAS__PII__HMAC_SECRET_FILE", path.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(
            config.pii.secret().unwrap(),
            b"0123456789abcdef0123".to_vec()
        );
    }

    #[test]
    fn secret_file_missing_empty_or_short_is_a_clear_error() {
        let dir = TempDir::new("secret-errors");
        let missing = dir.0.join("absent");
        let err = from_file(missing.clone()).secret().unwrap_err().to_string();
        assert_eq!(
            err,
            format!("pii.hmac_secret_file {}: no such file", missing.display())
        );

        let empty = dir.file("empty", b" \n\n");
        let err = from_file(empty.clone()).secret().unwrap_err().to_string();
        assert_eq!(
            err,
            format!("pii.hmac_secret_file {}: is empty", empty.display())
        );

        let short = dir.file("short", b"tooshort\n");
        let err = from_file(short.clone()).secret().unwrap_err().to_string();
        assert!(err.contains(&short.display().to_string()), "{err}");
        assert!(err.contains("8 bytes long, at least 16"), "{err}");
        assert!(
            !err.contains("tooshort"),
            "the error quotes the secret: {err}"
        );

        let binary = dir.file("binary", &[0xff, 0xfe, 0x00, 0x41]);
        let err = from_file(binary).secret().unwrap_err().to_string();
        assert!(err.ends_with("not UTF-8 text"), "{err}");
    }

    #[test]
    fn secret_and_secret_file_are_exclusive() {
        let dir = TempDir::new("secret-both");
        let path = dir.file("hmac", b"0123456789abcdef");
        let both = PiiConfig {
            hmac_secret: Some("0123456789abcdef".into()),
            hmac_secret_file: Some(path),
        };
        let err = both.secret().unwrap_err().to_string();
        assert!(
            err.contains("either pii.hmac_secret or pii.hmac_secret_file"),
            "{err}"
        );
    }

    #[test]
    fn clickhouse_password_file_is_read_at_load() {
        let dir = TempDir::new("clickhouse-password");
        let path = dir.file("writer", b"s3cret-writer\n");
        let config = Config::load_with_env(
            None,
            env(&[
                ("SIPAS__CLICKHOUSE__USER", "sipas_writer"),
                ("SIPAS__CLICKHOUSE__PASSWORD_FILE", path.to_str().unwrap()),
            ]),
        )
        .unwrap();
        assert_eq!(config.clickhouse.user, "sipas_writer");
        assert_eq!(config.clickhouse.password, "s3cret-writer");

        let both = Config::load_with_env(
            None,
            env(&[
                ("SIPAS__CLICKHOUSE__PASSWORD", "inline"),
                ("SIPAS__CLICKHOUSE__PASSWORD_FILE", path.to_str().unwrap()),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("either clickhouse.password or clickhouse.password_file"),
            "{both}"
        );

        let missing = dir.0.join("absent");
        let err = Config::load_with_env(
            None,
            env(&[(
                "SIPAS__CLICKHOUSE__PASSWORD_FILE",
                missing.to_str().unwrap(),
            )]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!(
                "clickhouse.password_file {}: no such file",
                missing.display()
            )
        );

        let empty = dir.file("empty", b"\n");
        let err = Config::load_with_env(
            None,
            env(&[("SIPAS__CLICKHOUSE__PASSWORD_FILE", empty.to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.ends_with("is empty"), "{err}");

        // Without a file the inline password (default empty) is kept.
        let inline =
            Config::load_with_env(None, env(&[("SIPAS__CLICKHOUSE__PASSWORD", "inline")])).unwrap();
        assert_eq!(inline.clickhouse.password, "inline");
    }
}
