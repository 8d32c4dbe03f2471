//! Shared harness for the integration tests. They run against the real broker and the real
//! ClickHouse started by `scripts/test.sh` (addresses come from SIPAS__KAFKA__BROKERS and
//! SIPAS__CLICKHOUSE__URL). Every test gets its own topics, consumer group and database.
//! Each such test is `#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]`:
//! a plain `cargo test` lists it as ignored, `scripts/test.sh` runs it (`--include-ignored`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use sipas_stream::config::Config;
use sipas_stream::contract::decode::EventKind;
use sipas_stream::simulate::generator::{SimEvent, SimSettings, Simulator};
use sipas_stream::tables;

pub const HMAC_SECRET: &str = "integration-test-secret-0123456789";
/// Upper bound for waiting on the pipeline; a guard against hanging, not a speed assertion.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// The simulator of the framework BNV-2640-2017 (`config/frameworks`) from `settings`.
pub fn simulator(settings: SimSettings) -> Simulator {
    let frameworks =
        sipas_stream::domain::FrameworkCatalog::load_dir(&root().join("config/frameworks"))
            .unwrap();
    Simulator::new(
        settings,
        &sipas_stream::domain::ProvinceRegistry::builtin(),
        frameworks.get("BNV-2640-2017").unwrap().clone(),
    )
}

/// `n` simulated events of [`simulator`]`(settings)`, for tests that produce one fixed log
/// (possibly in parts, or twice).
pub fn simulated_events(settings: SimSettings, n: u64) -> Vec<SimEvent> {
    let mut sim = simulator(settings);
    (0..n).map(|_| sim.next_event()).collect()
}

/// The view that holds each event of `kind` once, and its id column.
pub fn dedup_view(kind: EventKind) -> (&'static str, &'static str) {
    match kind {
        EventKind::Survey => (tables::SURVEY_SUBMISSIONS_DEDUP, "submission_id"),
        EventKind::Hotline => (tables::HOTLINE_EVENTS_DEDUP, "event_id"),
    }
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests with ./scripts/test.sh, which starts the broker and ClickHouse")
    })
}

pub struct TestEnv {
    pub name: String,
    pub config: Config,
}

impl TestEnv {
    /// Fresh topics, group and database named after the test.
    pub async fn new(name: &str) -> Self {
        Self::with_clickhouse(name, &required_env("SIPAS__CLICKHOUSE__URL")).await
    }

    pub async fn with_clickhouse(name: &str, clickhouse_url: &str) -> Self {
        Self::create(
            name,
            clickhouse_url,
            &required_env("SIPAS__KAFKA__BROKERS"),
            4,
        )
        .await
    }

    /// Like `new`, on the broker at `brokers` (a private one).
    pub async fn with_broker(name: &str, brokers: &str) -> Self {
        Self::create(name, &required_env("SIPAS__CLICKHOUSE__URL"), brokers, 4).await
    }

    /// On a private ClickHouse and a private broker.
    pub async fn with_services(name: &str, clickhouse_url: &str, brokers: &str) -> Self {
        Self::create(name, clickhouse_url, brokers, 4).await
    }

    /// Like `new`, with `partitions` per input topic.
    pub async fn with_partitions(name: &str, partitions: i32) -> Self {
        Self::create(
            name,
            &required_env("SIPAS__CLICKHOUSE__URL"),
            &required_env("SIPAS__KAFKA__BROKERS"),
            partitions,
        )
        .await
    }

    async fn create(name: &str, clickhouse_url: &str, brokers: &str, partitions: i32) -> Self {
        let unique = format!(
            "{}_{}",
            std::process::id(),
            sipas_stream::domain::time::unix_now_millis()
        );
        let mut config = Config::load_with_env(None, Vec::new()).unwrap();
        config.kafka.brokers = brokers.to_owned();
        config.kafka.surveys_topic = format!("it.{name}.{unique}.surveys");
        config.kafka.hotline_topic = format!("it.{name}.{unique}.hotline");
        config.kafka.dlq_topic = format!("it.{name}.{unique}.dlq");
        config.kafka.group_id = format!("it-{name}-{unique}");
        config.kafka.partitions = partitions;
        // See config/local.toml: tansu skips the rest of a batch when a fetch starts inside it.
        config
            .kafka
            .producer_properties
            .insert("batch.num.messages".into(), "1".into());
        config.clickhouse.url = clickhouse_url.to_owned();
        config.clickhouse.database = format!("it_{name}_{unique}");
        config.pii.hmac_secret = Some(HMAC_SECRET.into());
        config.contract.frameworks_dir = root().join("config/frameworks");
        config.contract.schemas_dir = root().join("schemas");
        config.pipeline.batch_max_messages = 5_000;
        config.pipeline.retry_max_ms = 2_000;
        let env = Self {
            name: name.to_owned(),
            config,
        };
        sipas_stream::sink::migrations::migrate(&env.config.clickhouse)
            .await
            .expect("migrations apply");
        let k = &env.config.kafka;
        sipas_stream::kafka::admin::ensure_topics(
            k,
            &[&k.surveys_topic, &k.hotline_topic, &k.dlq_topic],
        )
        .await
        .expect("topics are created");
        env
    }

    /// Same topics, another database and other consumer groups: a second, independent
    /// pipeline over the same log.
    pub async fn sibling(&self, suffix: &str) -> TestEnv {
        let mut config = self.config.clone();
        config.clickhouse.database = format!("{}_{suffix}", self.config.clickhouse.database);
        config.kafka.group_id = format!("{}-{suffix}", self.config.kafka.group_id);
        config.kafka.dlq_topic = format!("{}.{suffix}", self.config.kafka.dlq_topic);
        sipas_stream::sink::migrations::migrate(&config.clickhouse)
            .await
            .expect("migrations apply");
        sipas_stream::kafka::admin::ensure_topics(&config.kafka, &[&config.kafka.dlq_topic])
            .await
            .expect("DLQ topic is created");
        TestEnv {
            name: format!("{}-{suffix}", self.name),
            config,
        }
    }

    /// Environment for a `sipas` child process with this test's configuration.
    pub fn child_env(&self, metrics_port: u16) -> Vec<(String, String)> {
        let c = &self.config;
        vec![
            ("SIPAS__KAFKA__BROKERS".into(), c.kafka.brokers.clone()),
            (
                "SIPAS__KAFKA__SURVEYS_TOPIC".into(),
                c.kafka.surveys_topic.clone(),
            ),
            (
                "SIPAS__KAFKA__HOTLINE_TOPIC".into(),
                c.kafka.hotline_topic.clone(),
            ),
            ("SIPAS__KAFKA__DLQ_TOPIC".into(), c.kafka.dlq_topic.clone()),
            ("SIPAS__KAFKA__GROUP_ID".into(), c.kafka.group_id.clone()),
            ("SIPAS__CLICKHOUSE__URL".into(), c.clickhouse.url.clone()),
            (
                "SIPAS__CLICKHOUSE__DATABASE".into(),
                c.clickhouse.database.clone(),
            ),
            ("SIPAS__PII__HMAC_SECRET".into(), HMAC_SECRET.into()),
            (
                "SIPAS__PIPELINE__BATCH_MAX_MESSAGES".into(),
                c.pipeline.batch_max_messages.to_string(),
            ),
            (
                "SIPAS__PIPELINE__BATCH_MAX_WAIT_MS".into(),
                c.pipeline.batch_max_wait_ms.to_string(),
            ),
            (
                "SIPAS__PIPELINE__RETRY_MAX_MS".into(),
                c.pipeline.retry_max_ms.to_string(),
            ),
            (
                "SIPAS__METRICS__LISTEN".into(),
                format!("127.0.0.1:{metrics_port}"),
            ),
            (
                "SIPAS__INDEX__GROUP_ID".into(),
                format!("{}-index", c.kafka.group_id),
            ),
            ("SIPAS__INDEX__CHECKPOINT_INTERVAL_MS".into(), "500".into()),
            ("SIPAS__INDEX__FLUSH_INTERVAL_MS".into(), "300".into()),
            (
                "SIPAS__KAFKA__PRODUCER_PROPERTIES__batch.num.messages".into(),
                "1".into(),
            ),
            // A SIGKILLed member is noticed after 6 s instead of librdkafka's default 45 s.
            (
                "SIPAS__KAFKA__PROPERTIES__session.timeout.ms".into(),
                "6000".into(),
            ),
            (
                "SIPAS__KAFKA__PROPERTIES__heartbeat.interval.ms".into(),
                "1000".into(),
            ),
        ]
    }

    pub fn clickhouse(&self) -> clickhouse::Client {
        sipas_stream::sink::connect(&self.config.clickhouse)
    }

    /// The `n` of `sql`'s one row.
    async fn fetch_count(&self, sql: &str) -> clickhouse::error::Result<u64> {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct N {
            n: u64,
        }
        let row = self.clickhouse().query(sql).fetch_one::<N>().await?;
        Ok(row.n)
    }

    pub async fn count(&self, sql: &str) -> u64 {
        self.fetch_count(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Like `count`, but `None` while ClickHouse is unreachable.
    pub async fn try_count(&self, sql: &str) -> Option<u64> {
        self.fetch_count(sql).await.ok()
    }

    pub fn producer(&self) -> FutureProducer {
        sipas_stream::kafka::producer::idempotent_producer(&self.config.kafka).expect("producer")
    }

    pub async fn produce(&self, producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
    }

    /// Produces generated events to their topics, keyed by province, and waits for every
    /// acknowledgement.
    pub fn produce_events<'a>(&self, events: impl IntoIterator<Item = &'a SimEvent>) {
        let producer = self.producer();
        let mut deliveries = Vec::new();
        for event in events {
            let topic = self.config.kafka.topic(event.kind);
            deliveries.push(
                producer
                    .send_result(
                        FutureRecord::to(topic)
                            .key(&event.key)
                            .payload(&event.payload),
                    )
                    .map_err(|(e, _)| e)
                    .expect("queued"),
            );
        }
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(120)).expect("produced");
        assert_delivered(deliveries);
    }

    /// Produces to one partition, whatever the key (a producer not keyed by province).
    pub async fn produce_to(
        &self,
        producer: &FutureProducer,
        topic: &str,
        partition: i32,
        key: &str,
        payload: &[u8],
    ) {
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(key)
                    .payload(payload),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"));
    }

    /// Reads the DLQ from the beginning until `expected` distinct source messages were seen
    /// (or patience runs out). Returns letters per reason, counted once per source offset,
    /// and every payload.
    pub async fn dead_letters(&self, expected: usize) -> DeadLetters {
        let consumer: StreamConsumer = sipas_stream::kafka::client_config(&self.config.kafka)
            .set(
                "group.id",
                format!(
                    "{}-dlq-reader-{}",
                    self.config.kafka.group_id,
                    std::process::id()
                ),
            )
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("DLQ consumer");
        consumer.subscribe(&[&self.config.kafka.dlq_topic]).unwrap();
        let mut letters = DeadLetters::default();
        let started = Instant::now();
        while letters.by_source.len() < expected && started.elapsed() < PATIENCE {
            let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await
            else {
                continue;
            };
            let mut headers = BTreeMap::new();
            if let Some(h) = message.headers() {
                for header in h.iter() {
                    headers.insert(
                        header.key.to_owned(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            let source = (
                headers.get("source_topic").cloned().unwrap_or_default(),
                headers.get("source_partition").cloned().unwrap_or_default(),
                headers.get("source_offset").cloned().unwrap_or_default(),
            );
            let payload = message.payload().unwrap_or_default().to_vec();
            letters.payloads.push(payload.clone());
            letters.total += 1;
            letters.payload_by_source.insert(source.clone(), payload);
            letters.by_source.insert(source, headers);
        }
        letters
    }
}

#[derive(Default, Debug)]
pub struct DeadLetters {
    pub total: usize,
    /// (source topic, partition, offset) -> headers of its letter.
    pub by_source: BTreeMap<(String, String, String), BTreeMap<String, String>>,
    /// (source topic, partition, offset) -> payload of its letter.
    pub payload_by_source: BTreeMap<(String, String, String), Vec<u8>>,
    pub payloads: Vec<Vec<u8>>,
}

impl DeadLetters {
    pub fn reasons(&self) -> BTreeMap<String, usize> {
        let mut reasons = BTreeMap::new();
        for headers in self.by_source.values() {
            *reasons
                .entry(headers.get("reason").cloned().unwrap_or_default())
                .or_default() += 1;
        }
        reasons
    }
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `sipas run` child process, killed when dropped.
pub struct Pipeline {
    pub child: Child,
    pub metrics_port: u16,
    /// Its standard error (the log).
    pub log: PathBuf,
}

impl Pipeline {
    pub fn start(env: &TestEnv) -> Self {
        Self::start_command(env, &["run"])
    }

    /// Runs `sipas <args>` with the test's configuration.
    pub fn start_command(env: &TestEnv, args: &[&str]) -> Self {
        Self::start_command_with(env, args, &[])
    }

    /// Like `start_command`, with extra environment variables (e.g. `SIPAS__GATEWAY__…`,
    /// `RUST_LOG`).
    pub fn start_command_with(
        env: &TestEnv,
        args: &[&str],
        extra_env: &[(String, String)],
    ) -> Self {
        let metrics_port = free_port();
        let log_file = log_path(&format!("{}-{}.log", env.name, metrics_port));
        let log = std::fs::File::create(&log_file).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sipas"))
            .args(args)
            .current_dir(root())
            .env_clear()
            .envs(env.child_env(metrics_port))
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("SIPAS_TEST_CHILD_LOG")
                    .unwrap_or_else(|_| "info,rdkafka=warn".into()),
            )
            // Last, so a test can set RUST_LOG too.
            .envs(extra_env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sipas starts");
        Self {
            child,
            metrics_port,
            log: log_file,
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        // Child::kill sends SIGKILL on Unix.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Waits for it to exit by itself (a `sipas rebuild`), at most `patience`.
    pub fn wait_exit(&mut self, patience: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < patience,
                "sipas did not exit within {} s (see {})",
                patience.as_secs(),
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "sipas did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sum of the index processor's written positions (= messages folded, for fresh topics).
    pub async fn index_position(&self) -> f64 {
        metric_sum(&self.metrics().await, "sipas_index_position")
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let output = tokio::process::Command::new("curl")
            .args(["-fsS", &url])
            .output()
            .await
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where child logs go: target/test-logs/.
pub fn log_path(name: &str) -> PathBuf {
    let dir = root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Panics unless the broker stored every record, naming the first it did not. Call it
/// after the producer's flush: every delivery is reported by then. A record the broker
/// refused (tansu fences an idempotent producer now and then) would otherwise leave a test
/// waiting for events that are not in the log, beside a pipeline that is idle because it
/// is caught up.
#[track_caller]
pub fn assert_delivered(deliveries: Vec<rdkafka::producer::DeliveryFuture>) {
    let total = deliveries.len();
    let mut refused = Vec::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        match futures::executor::block_on(delivery) {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => refused.push(format!("record {i}: {error}")),
            Err(_) => refused.push(format!("record {i}: no delivery report")),
        }
    }
    assert!(
        refused.is_empty(),
        "the broker did not store {} of {total} records (the test would wait for events not in the log); first: {}",
        refused.len(),
        refused.first().map(String::as_str).unwrap_or_default()
    );
}

/// Polls `probe` until it returns true; panics with `what` after `PATIENCE`.
pub async fn wait_for<F, Fut>(what: &str, probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for_within(what, PATIENCE, probe).await
}

/// Like `wait_for`, with its own bound (a soak's catch-up).
pub async fn wait_for_within<F, Fut>(what: &str, patience: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(
            started.elapsed() < patience,
            "gave up waiting for: {what} (after {} s)",
            patience.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Value of a Prometheus sample line `name{labels} value`, summed over matching lines.
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
pub mod gateway;
pub mod index;
pub mod serve;
pub mod services;

/// The high watermark of every partition of the test's two input topics.
pub async fn partition_ends(env: &TestEnv) -> BTreeMap<(String, i32), i64> {
    let mut ends = BTreeMap::new();
    for topic in [
        &env.config.kafka.surveys_topic,
        &env.config.kafka.hotline_topic,
    ] {
        for (partition, end) in high_watermarks(env, topic).await {
            ends.insert((topic.clone(), partition), end);
        }
    }
    ends
}

/// Messages in a topic: the sum of its partitions' high watermarks (topics here start empty).
pub async fn topic_messages(env: &TestEnv, topic: &str) -> i64 {
    high_watermarks(env, topic).await.values().sum()
}

/// Each partition's high watermark.
pub async fn high_watermarks(env: &TestEnv, topic: &str) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::BaseConsumer;
    let kafka = env.config.kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = sipas_stream::kafka::client_config(&kafka)
            .set("group.id", "it-watermarks")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(30))
            .expect("topic metadata");
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions
            .iter()
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, *p, Duration::from_secs(30))
                    .expect("watermarks");
                (*p, high)
            })
            .collect()
    })
    .await
    .unwrap()
}

/// Simulated traffic produced in parts, with what the pipeline must end up holding: the
/// valid ids per kind and the number of invalid messages (one dead letter each).
pub struct SimFeed {
    sim: Simulator,
    producer: FutureProducer,
    pub surveys: std::collections::HashSet<String>,
    pub hotline: std::collections::HashSet<String>,
    pub invalid: usize,
    pub produced: u64,
}

impl SimFeed {
    pub fn new(env: &TestEnv, settings: SimSettings) -> Self {
        Self {
            sim: simulator(settings),
            producer: env.producer(),
            surveys: Default::default(),
            hotline: Default::default(),
            invalid: 0,
            produced: 0,
        }
    }

    /// Queues the next event, noting what it must leave behind; its delivery report is
    /// the returned future.
    pub fn send(&mut self, env: &TestEnv) -> rdkafka::producer::DeliveryFuture {
        use sipas_stream::simulate::generator::Expected;
        let event = self.sim.next_event();
        match (&event.expected, event.kind) {
            (Expected::Valid(id), EventKind::Survey) => {
                assert!(self.surveys.insert(id.clone()), "a valid id twice: {id}");
            }
            (Expected::Valid(id), EventKind::Hotline) => {
                assert!(self.hotline.insert(id.clone()), "a valid id twice: {id}");
            }
            (Expected::Invalid(_), _) => self.invalid += 1,
            (Expected::Duplicate(_), _) => {}
        }
        self.produced += 1;
        let topic = env.config.kafka.topic(event.kind);
        self.producer
            .send_result(
                FutureRecord::to(topic)
                    .key(&event.key)
                    .payload(&event.payload),
            )
            .map_err(|(e, _)| e)
            .expect("queued")
    }

    /// Waits until every queued event is sent.
    pub fn flush(&self) {
        rdkafka::producer::Producer::flush(&self.producer, Duration::from_secs(120))
            .expect("produced");
    }

    /// Produces the next `n` events and waits for every acknowledgement.
    pub fn produce(&mut self, env: &TestEnv, n: u64) {
        for _ in 0..n {
            self.send(env);
        }
        self.flush();
    }

    /// Whether the `*_dedup` views hold exactly the valid ids produced so far (`None`
    /// while ClickHouse does not answer).
    pub async fn raw_complete(&self, env: &TestEnv) -> bool {
        env.try_count("SELECT count() AS n FROM survey_submissions_dedup")
            .await
            == Some(self.surveys.len() as u64)
            && env
                .try_count("SELECT count() AS n FROM hotline_events_dedup")
                .await
                == Some(self.hotline.len() as u64)
    }

    /// The `*_dedup` views hold exactly the produced valid ids (each once), and the DLQ
    /// exactly one letter per invalid message.
    pub async fn assert_stored_exactly(&self, env: &TestEnv) {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Id {
            id: String,
        }
        for (kind, want) in [
            (EventKind::Survey, &self.surveys),
            (EventKind::Hotline, &self.hotline),
        ] {
            let (view, column) = dedup_view(kind);
            let rows: Vec<Id> = env
                .clickhouse()
                .query(&format!("SELECT {column} AS id FROM {view}"))
                .fetch_all()
                .await
                .unwrap();
            let got: std::collections::HashSet<String> =
                rows.iter().map(|r| r.id.clone()).collect();
            assert_eq!(got.len(), rows.len(), "{view}: an id is stored twice");
            assert!(
                &got == want,
                "{view}: {} ids stored, {} produced valid; missing {:?}, unexpected {:?}",
                got.len(),
                want.len(),
                want.difference(&got).take(5).collect::<Vec<_>>(),
                got.difference(want).take(5).collect::<Vec<_>>()
            );
        }
        let letters = env.dead_letters(self.invalid).await;
        assert_eq!(
            letters.by_source.len(),
            self.invalid,
            "one dead letter per invalid message (by source offset): {:?}",
            letters.reasons()
        );
        assert!(
            !letters.reasons().contains_key("clickhouse_rejected"),
            "no valid message dead-lettered: {:?}",
            letters.reasons()
        );
    }

    /// The end of a fault test: stops `pipeline` (it must exit cleanly), checks the raw
    /// views and the DLQ against what was produced ([`assert_stored_exactly`]), rebuilds
    /// the index from the same log into a sibling database and asserts the pipeline's
    /// index equals it.
    ///
    /// [`assert_stored_exactly`]: Self::assert_stored_exactly
    pub async fn assert_stored_and_index_equals_rebuild(
        &self,
        what: &str,
        env: &TestEnv,
        pipeline: &mut Pipeline,
    ) {
        assert!(pipeline.terminate().success());
        self.assert_stored_exactly(env).await;
        let rebuilt = env.sibling("rebuild").await;
        let mut rebuild = Pipeline::start_command(&rebuilt, &["rebuild"]);
        assert!(
            rebuild.wait_exit(PATIENCE).success(),
            "sipas rebuild succeeded"
        );
        index::assert_equivalent(what, env, &rebuilt).await;
    }
}
