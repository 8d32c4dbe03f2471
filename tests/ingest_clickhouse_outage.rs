//! ClickHouse goes away mid-stream and comes back: the pipeline pauses, retries the same
//! batch and loses nothing. Runs against a private ClickHouse started through
//! scripts/services.sh (own data directory and ports) so other tests are not disturbed.
mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use sipas_stream::contract::decode::EventKind;
use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};
use sipas_stream::simulate::generator::{Expected, SimSettings, Simulator};
use support::*;

struct PrivateClickHouse {
    home: std::path::PathBuf,
    http_port: u16,
    tcp_port: u16,
}

impl PrivateClickHouse {
    fn services(&self, action: &str) {
        let status = Command::new(root().join("scripts/services.sh"))
            .args([action, "clickhouse"])
            .env("SIPAS_HOME", &self.home)
            .env("SIPAS_CH_HTTP_PORT", self.http_port.to_string())
            .env("SIPAS_CH_TCP_PORT", self.tcp_port.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("services.sh runs");
        assert!(status.success(), "services.sh {action} clickhouse failed");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.services("down");
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn clickhouse_outage_mid_stream_loses_nothing() {
    const EVENTS: u64 = 30_000;
    let clickhouse = PrivateClickHouse {
        home: root().join(format!("target/test-clickhouse-{}", std::process::id())),
        http_port: free_port(),
        tcp_port: free_port(),
    };
    clickhouse.services("up");
    let env = TestEnv::with_clickhouse("outage", &clickhouse.url()).await;
    let frameworks = FrameworkCatalog::load_dir(&root().join("config/frameworks")).unwrap();
    let settings = SimSettings {
        seed: 5,
        start_unix: 1_790_000_000,
        invalid_share: 0.0,
        duplicate_share: 0.01,
        ..Default::default()
    };
    let mut sim = Simulator::new(
        settings,
        &ProvinceRegistry::builtin(),
        frameworks.get("BNV-2640-2017").unwrap().clone(),
    );
    let (mut surveys, mut hotline) = (HashSet::new(), HashSet::new());
    let producer = env.producer();
    let mut produce = |n: u64| {
        for _ in 0..n {
            let event = sim.next_event();
            match (&event.expected, event.kind) {
                (Expected::Valid(id), EventKind::Survey) => surveys.insert(id.clone()),
                (Expected::Valid(id), EventKind::Hotline) => hotline.insert(id.clone()),
                _ => false,
            };
            let topic = if event.kind == EventKind::Survey {
                &env.config.kafka.surveys_topic
            } else {
                &env.config.kafka.hotline_topic
            };
            producer
                .send_result(
                    rdkafka::producer::FutureRecord::to(topic)
                        .key(&event.key)
                        .payload(&event.payload),
                )
                .map_err(|(e, _)| e)
                .expect("queued");
        }
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(120)).expect("produced");
    };

    let pipeline = Pipeline::start(&env);
    produce(EVENTS / 3);
    wait_for("first rows", || async {
        env.try_count("SELECT count() AS n FROM survey_submissions")
            .await
            .unwrap_or(0)
            > 0
    })
    .await;

    clickhouse.services("down");
    produce(EVENTS / 3);
    wait_for("the pipeline to notice the outage and retry", || async {
        metric_sum(&pipeline.metrics().await, "sipas_insert_retries_total") >= 2.0
    })
    .await;
    assert_eq!(
        metric_sum(&pipeline.metrics().await, "sipas_consumption_paused"),
        1.0,
        "paused while ClickHouse is down"
    );
    produce(EVENTS - 2 * (EVENTS / 3));
    clickhouse.services("up");

    wait_for("every valid event after ClickHouse came back", || async {
        env.try_count("SELECT count() AS n FROM survey_submissions_dedup")
            .await
            == Some(surveys.len() as u64)
            && env
                .try_count("SELECT count() AS n FROM hotline_events_dedup")
                .await
                == Some(hotline.len() as u64)
    })
    .await;
    let mut pipeline = pipeline;
    assert!(pipeline.terminate().success());
    assert_eq!(
        env.count("SELECT count() AS n FROM survey_submissions_dedup")
            .await,
        surveys.len() as u64
    );
    assert_eq!(
        env.count("SELECT count() AS n FROM hotline_events_dedup")
            .await,
        hotline.len() as u64
    );
}
