//! Configuration: a TOML file (optional) overlaid with `SIPAS__SECTION__KEY` environment
//! variables, deserialised into structs that reject unknown keys. Every default is written
//! next to its field and repeated in `config/default.toml`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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

/// Limits of every HTTP server `sipas` runs (`serve`, `gateway`, the `/metrics` of `run`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A connection must send a request's head within this, also when idle between
    /// keep-alive requests; it is closed otherwise. Default 10000 ms.
    pub header_read_timeout_ms: u64,
    /// A request body must have arrived this long after its head (the gateway answers
    /// 408 otherwise). Default 30000 ms.
    pub body_read_timeout_ms: u64,
    /// Open connections per server; further ones wait in the listen backlog. Default 1024.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 1024,
        }
    }
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json` (one object per line, for log shippers).
    /// `--log-format` overrides it.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address of `sipas serve` (API, dashboard, `/metrics`). Default `127.0.0.1:8080`.
    pub listen: String,
    /// A response is recomputed from ClickHouse at most this often per distinct request;
    /// also the `Cache-Control` max-age and the SSE polling period. Default 5000 ms.
    pub refresh_interval_ms: u64,
    /// A ClickHouse query slower than this fails the request (503). Default 10000 ms.
    pub query_timeout_ms: u64,
    /// Distinct cached requests kept; stale ones are dropped beyond this. Default 10000.
    pub cache_max_entries: usize,
    /// Framework of requests that name none. Default `BNV-2640-2017`.
    pub default_framework: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            refresh_interval_ms: 5_000,
            query_timeout_ms: 10_000,
            cache_max_entries: 10_000,
            default_framework: "BNV-2640-2017".into(),
        }
    }
}

/// How `sipas import` reads CSV files. A `--mapping FILE` holds the same keys and replaces
/// this section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// CSV field separator (one character). Default `,`.
    pub delimiter: String,
    /// Separator of the ids inside an `expectations` cell. Default `;`.
    pub list_separator: String,
    pub surveys: CsvMapping,
    pub hotline: CsvMapping,
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            delimiter: ",".into(),
            list_separator: ";".into(),
            surveys: CsvMapping::default(),
            hotline: CsvMapping::default(),
        }
    }
}

/// Header mapping of one kind of CSV file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CsvMapping {
    /// Column header in the file -> contract field, criterion id, `expectation:<item id>`,
    /// or `-` (ignore the column). Headers not listed are read as they are named.
    pub columns: BTreeMap<String, String>,
    /// Contract field -> value, for fields the file has no column for (e.g. `framework`).
    pub defaults: BTreeMap<String, String>,
}

/// The ingest gateway (`POST /api/v1/surveys`, `POST /api/v1/hotline`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address of `sipas gateway`. Default `127.0.0.1:8090`.
    pub listen: String,
    /// Largest accepted request body. Default 1048576 (1 MiB).
    pub max_body_bytes: usize,
    /// Most records in one request. Default 1000.
    pub max_records: usize,
    /// Sustained requests per second per token. Default 5.
    pub requests_per_second: f64,
    /// Requests a token may send at once above the sustained rate. Default 10.
    pub burst: u32,
    /// Bearer tokens, stored as SHA-256 hashes (`sipas gateway-token`).
    pub tokens: Vec<GatewayToken>,
    /// A TOML file with more `[[tokens]]` entries (e.g. a mounted secret).
    pub tokens_file: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
            max_body_bytes: 1024 * 1024,
            max_records: 1000,
            requests_per_second: 5.0,
            burst: 10,
            tokens: Vec::new(),
            tokens_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayToken {
    /// Who holds the token; the only thing about a token that is ever logged.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// 2025-system province codes the token may submit for; `*` = every province.
    pub provinces: Vec<String>,
    /// This token's own rate, instead of `gateway.requests_per_second`.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// This token's own burst, instead of `gateway.burst`.
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<GatewayToken>,
}

impl GatewayConfig {
    /// Tokens from the configuration and from `tokens_file`.
    pub fn all_tokens(&self) -> Result<Vec<GatewayToken>, ConfigError> {
        let mut tokens = self.tokens.clone();
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file: TokensFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
            tokens.extend(file.tokens);
        }
        for token in &tokens {
            if token.sha256.len() != 64 || !token.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "gateway token {:?}: sha256 must be 64 hex digits (see `sipas gateway-token`)",
                    token.name
                )));
            }
            if token.burst == Some(0)
                || token
                    .requests_per_second
                    .is_some_and(|r| !(r.is_finite() && r > 0.0))
            {
                return Err(ConfigError::Invalid(format!(
                    "gateway token {:?}: rate limits must be positive",
                    token.name
                )));
            }
            if token.provinces.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "gateway token {:?}: provinces must not be empty",
                    token.name
                )));
            }
        }
        Ok(tokens)
    }
}

impl ImportConfig {
    /// The `--mapping` file: the keys of the `[import]` section.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: ImportConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.delimiter.len() != 1 {
            return Err(ConfigError::Invalid(
                "import.delimiter must be one ASCII character".into(),
            ));
        }
        if self.list_separator.is_empty() {
            return Err(ConfigError::Invalid(
                "import.list_separator must not be empty".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Run the index processor inside `sipas run`. Default true.
    pub enabled: bool,
    /// Names the index state's checkpoints (and prefixes a rebuild's consumer group).
    /// Default `sipas-index`.
    pub group_id: String,
    /// An event older than this behind its partition's newest event is counted as late
    /// (a metric only: it counts in its own day like any other). Default 48.
    pub allowed_lateness_hours: u32,
    /// Changed day counts are written, and the windows they change recomputed, once the
    /// oldest fold not yet written was read this long ago (also once 50,000 are pending).
    /// Default 150 ms.
    pub flush_interval_ms: u64,
    /// How often partition state is checkpointed to ClickHouse with its offset. Default 30000 ms.
    pub checkpoint_interval_ms: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "sipas-index".into(),
            allowed_lateness_hours: 48,
            flush_interval_ms: 150,
            checkpoint_interval_ms: 30_000,
        }
    }
}

impl IndexConfig {
    pub fn lateness_seconds(&self) -> i64 {
        i64::from(self.allowed_lateness_hours) * 3600
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Consumer group of `sipas run`. Default `sipas-ingest`.
    pub group_id: String,
    /// Default `sipas.surveys`.
    pub surveys_topic: String,
    /// Default `sipas.hotline`.
    pub hotline_topic: String,
    /// Dead letters of both input topics. Default `sipas.dlq`.
    pub dlq_topic: String,
    /// Partitions for topics created by `sipas topics`. Default 4.
    pub partitions: i32,
    /// Replication factor for topics created by `sipas topics`. Default 1.
    pub replication_factor: i32,
    /// Optional Confluent Schema Registry base URL for Avro ids not in the local catalog.
    pub schema_registry_url: Option<String>,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`).
    pub properties: BTreeMap<String, String>,
    /// Extra librdkafka properties for producers only (DLQ, simulator).
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "sipas-ingest".into(),
            surveys_topic: "sipas.surveys".into(),
            hotline_topic: "sipas.hotline".into(),
            dlq_topic: "sipas.dlq".into(),
            partitions: 4,
            replication_factor: 1,
            schema_registry_url: None,
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface. Default `http://127.0.0.1:8123`.
    pub url: String,
    /// Default `sipas`.
    pub database: String,
    /// Default `default`.
    pub user: String,
    /// Default empty.
    pub password: String,
    /// A file holding the password (contents trimmed), e.g. a mounted secret; read when the
    /// configuration is loaded. Exclusive with `password`. Default none.
    pub password_file: Option<PathBuf>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "sipas".into(),
            user: "default".into(),
            password: String::new(),
            password_file: None,
        }
    }
}

impl ClickHouseConfig {
    /// Fills `password` from `password_file`, so that every client built from this
    /// configuration logs in with it.
    fn resolve_password_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(());
        };
        if !self.password.is_empty() {
            return Err(ConfigError::Invalid(
                "set either clickhouse.password or clickhouse.password_file, not both".into(),
            ));
        }
        self.password = read_secret_file("clickhouse.password_file", path)?;
        Ok(())
    }
}

/// How often the ingest consumer's librdkafka reports statistics (lag, offsets).
pub const STATISTICS_INTERVAL_MS: u64 = 5_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// A batch is written when it holds this many messages. Default 10000 (a catch-up holds a
    /// few batches at once: their messages, decoded events and rows).
    pub batch_max_messages: usize,
    /// ...or when its first message is this old. Default 100 ms (index freshness
    /// includes it).
    pub batch_max_wait_ms: u64,
    /// Messages larger than this go to the DLQ as `oversize`. Default 65536 (64 KiB).
    pub max_message_bytes: usize,
    /// First retry delay after a failed ClickHouse insert or DLQ write. Default 200 ms.
    pub retry_initial_ms: u64,
    /// Cap of the exponential retry delay. Default 10000 ms.
    pub retry_max_ms: u64,
    /// How often stored offsets are committed to Kafka. Default 1000 ms.
    pub commit_interval_ms: u64,
    /// An assigned partition whose position has not moved for this long while its log has
    /// messages ahead is reported stalled (`sipas_partition_stalled`, a warning). Also the
    /// grace period after a rebalance before an instance holding no partitions is warned
    /// about. At least 10000 (twice the statistics interval). Default 60000 ms.
    pub stall_after_ms: u64,
    /// librdkafka's `max.poll.interval.ms` for the ingest consumer: a consumer loop held
    /// longer than this (a long ClickHouse or DLQ outage) leaves its group, and rejoins at
    /// its next poll. At least `session.timeout.ms`. Default 600000 ms.
    pub max_poll_interval_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max_messages: 10_000,
            batch_max_wait_ms: 100,
            max_message_bytes: 64 * 1024,
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
            commit_interval_ms: 1_000,
            stall_after_ms: 60_000,
            max_poll_interval_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    /// Directory of framework files (`*.toml`). Default `config/frameworks`.
    pub frameworks_dir: PathBuf,
    /// Directory with `catalog.toml` and the Avro schemas. Default `schemas`.
    pub schemas_dir: PathBuf,
    /// An event time (`submitted_at`, `occurred_at`) more than this many seconds after the
    /// message was received (its Kafka timestamp; for the gateway and `sipas import` the
    /// moment the record was read) is refused as `future_timestamp`. Default 86400 (1 day).
    pub max_future_skew_seconds: u32,
}

impl Default for ContractConfig {
    fn default() -> Self {
        Self {
            frameworks_dir: "config/frameworks".into(),
            schemas_dir: "schemas".into(),
            max_future_skew_seconds: crate::contract::decode::DEFAULT_MAX_FUTURE_SKEW_SECONDS,
        }
    }
}

/// Shortest accepted HMAC secret, in bytes.
pub const MIN_HMAC_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PiiConfig {
    /// Secret key of the HMAC that replaces reporters' phone numbers and emails, at least
    /// 16 bytes. Required by every command that validates events; no default. Prefer
    /// `SIPAS__PII__HMAC_SECRET` or `hmac_secret_file`. Exclusive with `hmac_secret_file`.
    pub hmac_secret: Option<String>,
    /// A file holding the secret (its contents, trimmed), e.g. a mounted Docker/Kubernetes
    /// secret. Exclusive with `hmac_secret`.
    pub hmac_secret_file: Option<PathBuf>,
}

impl PiiConfig {
    /// The secret from exactly one of `hmac_secret` and `hmac_secret_file`.
    pub fn secret(&self) -> Result<Vec<u8>, ConfigError> {
        let (secret, source) = match (&self.hmac_secret, &self.hmac_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set either pii.hmac_secret or pii.hmac_secret_file, not both".into(),
                ))
            }
            (Some(secret), None) => (secret.clone(), "pii.hmac_secret".to_owned()),
            (None, Some(path)) => (
                read_secret_file("pii.hmac_secret_file", path)?,
                format!("pii.hmac_secret_file {}", path.display()),
            ),
            (None, None) => {
                return Err(ConfigError::Invalid(format!(
                    "pii.hmac_secret or pii.hmac_secret_file must be set (a secret of at least {MIN_HMAC_SECRET_LEN} bytes)"
                )))
            }
        };
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(ConfigError::Invalid(format!(
                "{source}: the secret is {} bytes long, at least {MIN_HMAC_SECRET_LEN} are required",
                secret.len()
            )));
        }
        Ok(secret.into_bytes())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus `/metrics` endpoint. Default `127.0.0.1:9100`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9100".into(),
        }
    }
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

    fn check(&self) -> Result<(), ConfigError> {
        let p = &self.pipeline;
        if p.batch_max_messages == 0 || p.max_message_bytes == 0 || p.retry_initial_ms == 0 {
            return Err(ConfigError::Invalid(
                "pipeline sizes and delays must be positive".into(),
            ));
        }
        if p.retry_max_ms < p.retry_initial_ms {
            return Err(ConfigError::Invalid(
                "pipeline.retry_max_ms must be >= pipeline.retry_initial_ms".into(),
            ));
        }
        let k = &self.kafka;
        if [&k.surveys_topic, &k.hotline_topic, &k.dlq_topic]
            .iter()
            .any(|t| t.is_empty())
        {
            return Err(ConfigError::Invalid(
                "kafka topic names must not be empty".into(),
            ));
        }
        if k.dlq_topic == k.surveys_topic
            || k.dlq_topic == k.hotline_topic
            || k.surveys_topic == k.hotline_topic
        {
            return Err(ConfigError::Invalid(
                "kafka.surveys_topic, kafka.hotline_topic and kafka.dlq_topic must differ".into(),
            ));
        }
        if !self
            .clickhouse
            .database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || self.clickhouse.database.is_empty()
        {
            return Err(ConfigError::Invalid(
                "clickhouse.database must be a plain identifier ([A-Za-z0-9_]+)".into(),
            ));
        }
        self.import.check()?;
        let g = &self.gateway;
        if g.max_body_bytes == 0
            || g.max_records == 0
            || g.burst == 0
            || !(g.requests_per_second.is_finite() && g.requests_per_second > 0.0)
        {
            return Err(ConfigError::Invalid(
                "gateway limits must be positive".into(),
            ));
        }
        if self.pipeline.stall_after_ms < 2 * STATISTICS_INTERVAL_MS {
            // Offsets are observed once per statistics interval: a shorter threshold would
            // call a partition stalled between two observations of it advancing.
            return Err(ConfigError::Invalid(format!(
                "pipeline.stall_after_ms must be at least {} (twice the consumer's statistics interval)",
                2 * STATISTICS_INTERVAL_MS
            )));
        }
        let h = &self.http;
        if h.header_read_timeout_ms == 0
            || h.body_read_timeout_ms == 0
            || h.max_connections == 0
            || h.max_connections > tokio::sync::Semaphore::MAX_PERMITS
            || u32::try_from(h.max_connections).is_err()
        {
            return Err(ConfigError::Invalid(
                "http.header_read_timeout_ms, body_read_timeout_ms and max_connections must be positive (max_connections at most 2^32 - 1)".into(),
            ));
        }
        let s = &self.serve;
        if s.refresh_interval_ms == 0 || s.query_timeout_ms == 0 || s.cache_max_entries == 0 {
            return Err(ConfigError::Invalid("serve.refresh_interval_ms, query_timeout_ms and cache_max_entries must be positive".into()));
        }
        Ok(())
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
