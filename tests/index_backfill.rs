//! Back-fill: after a live run, `sipas import` of older records (a month around a year
//! boundary, eleven months back, in shuffled order) changes the daily values, daily
//! rankings and year values to exactly what one run over the merged log in time order gives.
mod support;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use sipas_stream::contract::decode::EventKind;
use sipas_stream::domain::time::parse_rfc3339;
use sipas_stream::simulate::generator::{as_json_line, SimEvent, SimSettings};
use support::index::{assert_same, assert_windows_add_up, window_values};
use support::*;

fn events(seed: u64, start: &str, count: usize, step_seconds: f64) -> Vec<SimEvent> {
    simulated_events(
        SimSettings {
            seed,
            start_unix: parse_rfc3339(start).unwrap(),
            step_seconds,
            // The importer refuses invalid records (they never reach the log), so the
            // merged reference log holds none either.
            invalid_share: 0.0,
            ..Default::default()
        },
        count as u64,
    )
}

async fn logged(env: &TestEnv) -> f64 {
    (topic_messages(env, &env.config.kafka.surveys_topic).await
        + topic_messages(env, &env.config.kafka.hotline_topic).await) as f64
}

#[derive(clickhouse::Row, serde::Deserialize, Debug, PartialEq)]
struct YearValue {
    province_code: String,
    respondents: u32,
    sipas: Option<f64>,
}

async fn year_values(env: &TestEnv, as_of: &str) -> Vec<YearValue> {
    env.clickhouse()
        .query("SELECT province_code, respondents, sipas FROM province_ranking_daily WHERE window = 'year' AND as_of = toDate(?) ORDER BY province_code")
        .bind(as_of)
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn an_import_of_older_records_gives_what_the_merged_log_gives() {
    // Live: ten days of November 2026. Old: 2025-12-20 .. 2026-01-14, across the new year.
    let live = events(41, "2026-11-01T00:00:00+07:00", 5_000, 170.0);
    let old = events(42, "2025-12-20T00:00:00+07:00", 3_000, 750.0);

    let env = TestEnv::new("backfill").await;
    env.produce_events(&live);
    let pipeline = Pipeline::start(&env);
    wait_for("the live log to be folded", || async {
        pipeline.index_position().await == live.len() as f64
    })
    .await;
    let year_2026_before = year_values(&env, "2026-11-10").await;
    let window_rows =
        |text: &str| metric_sum(text, "sipas_index_window_rows_total{kind=\"satisfaction\"}");
    let rows_before = window_rows(&pipeline.metrics().await);
    assert!(
        year_values(&env, "2026-01-10").await.is_empty(),
        "no January data yet"
    );

    // The older records, shuffled, through `sipas import` while the pipeline runs.
    let mut shuffled: Vec<&SimEvent> = old.iter().collect();
    shuffled.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(7));
    let dir = std::env::temp_dir().join(format!("sipas-backfill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (kind, name) in [
        (EventKind::Survey, "surveys"),
        (EventKind::Hotline, "hotline"),
    ] {
        let lines: Vec<u8> = shuffled
            .iter()
            .filter(|e| e.kind == kind)
            .flat_map(|e| {
                let mut line = as_json_line(e);
                line.push(b'\n');
                line
            })
            .collect();
        let path = dir.join(format!("{name}.ndjson"));
        std::fs::write(&path, lines).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sipas"))
            .args(["import", "--kind", name, &path.display().to_string()])
            .current_dir(root())
            .env_clear()
            .envs(env.child_env(free_port()))
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .expect("sipas import runs");
        assert!(
            output.status.success(),
            "import {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let total = logged(&env).await;
    assert_eq!(
        total,
        (live.len() + old.len()) as f64,
        "every old record was imported"
    );
    wait_for("the imported records to be folded", || async {
        pipeline.index_position().await == total
    })
    .await;
    // The hidden cost of the back-fill: the window rows it rewrote. Each flush rewrites, per
    // province with a changed day, at most the 366 as_of days whose windows contain it
    // (6 windows each): here the old days span 26 days, so at most 34 × 6 × (26 + 366)
    // rows per flush that carried old records.
    let rewritten = window_rows(&pipeline.metrics().await) - rows_before;
    let per_flush_bound = 34.0 * 6.0 * (26.0 + 366.0);
    eprintln!(
        "back-fill of {} records rewrote {rewritten} satisfaction window rows ({:.1} × the per-flush bound {per_flush_bound})",
        old.len(),
        rewritten / per_flush_bound
    );
    assert!(
        rewritten > 0.0,
        "the back-filled days' windows were rewritten"
    );
    drop(pipeline);

    // The reference: one run over the merged log, in event-time order.
    let merged_env = TestEnv::new("backfillref").await;
    let mut merged: Vec<&SimEvent> = old.iter().chain(&live).collect();
    merged.sort_by_key(|e| e.event_time);
    merged_env.produce_events(merged);
    let reference = Pipeline::start(&merged_env);
    wait_for("the merged log to be folded", || async {
        reference.index_position().await == total
    })
    .await;
    drop(reference);

    // History of the back-filled days exists, and the year values moved.
    let january = year_values(&env, "2026-01-10").await;
    assert!(
        january.len() > 20,
        "{} provinces with January values",
        january.len()
    );
    let year_2026_after = year_values(&env, "2026-11-10").await;
    assert_ne!(
        year_2026_before, year_2026_after,
        "January's records are in 2026's year"
    );
    assert!(
        !year_values(&env, "2025-12-31").await.is_empty(),
        "2025 has its own year value"
    );

    assert_windows_add_up(&env).await;
    let (got, want) = (window_values(&env).await, window_values(&merged_env).await);
    assert!(
        got.0.len() > 1000,
        "{} daily satisfaction rows",
        got.0.len()
    );
    assert_same("satisfaction_daily after a back-fill", &got.0, &want.0);
    assert_same("hotline_kpi_daily after a back-fill", &got.1, &want.1);
    assert_same("satisfaction_latest after a back-fill", &got.2, &want.2);
    assert_same("hotline_kpi_latest after a back-fill", &got.3, &want.3);
    for as_of in ["2025-12-31", "2026-01-14", "2026-11-10"] {
        assert_eq!(
            year_values(&env, as_of).await,
            year_values(&merged_env, as_of).await,
            "{as_of}"
        );
    }
}
