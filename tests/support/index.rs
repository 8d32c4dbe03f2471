//! Reading the index's window tables, and comparing row lists, for the index tests.
#![allow(dead_code)]
use sipas_stream::index::rows::{HotlineKpiRow, SatisfactionRow};

use super::TestEnv;

/// Window values (daily and latest) without `version`, which records when they were computed.
#[allow(clippy::type_complexity)]
pub async fn windows(
    env: &TestEnv,
) -> (
    Vec<SatisfactionRow>,
    Vec<HotlineKpiRow>,
    Vec<SatisfactionRow>,
    Vec<HotlineKpiRow>,
) {
    let client = env.clickhouse();
    let mut daily = client
        .query("SELECT ?fields FROM satisfaction_daily FINAL ORDER BY framework, unit_type, unit_id, window, as_of")
        .fetch_all::<SatisfactionRow>()
        .await
        .unwrap();
    let mut hotline_daily = client
        .query("SELECT ?fields FROM hotline_kpi_daily FINAL ORDER BY unit_type, unit_id, window, as_of")
        .fetch_all::<HotlineKpiRow>()
        .await
        .unwrap();
    let mut latest = client
        .query("SELECT ?fields FROM satisfaction_latest FINAL ORDER BY framework, unit_type, unit_id, window")
        .fetch_all::<SatisfactionRow>()
        .await
        .unwrap();
    let mut hotline_latest = client
        .query("SELECT ?fields FROM hotline_kpi_latest FINAL ORDER BY unit_type, unit_id, window")
        .fetch_all::<HotlineKpiRow>()
        .await
        .unwrap();
    daily.iter_mut().for_each(|r| r.version = 0);
    latest.iter_mut().for_each(|r| r.version = 0);
    hotline_daily.iter_mut().for_each(|r| r.version = 0);
    hotline_latest.iter_mut().for_each(|r| r.version = 0);
    (daily, hotline_daily, latest, hotline_latest)
}

/// Equal, or a panic that shows the first differing row.
pub fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
        panic!("{what}: first difference\n got: {g:?}\nwant: {w:?}");
    }
    assert_eq!(got.len(), want.len(), "{what}: row counts");
}
