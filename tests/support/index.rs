//! Reading the index's window tables, and comparing row lists, for the index tests.
#![allow(dead_code)]
use sipas_stream::index::rows::{
    HotlineDayCountRow, HotlineKpiRow, SatisfactionRow, SurveyDayCountRow,
};

use std::collections::BTreeMap;

use super::TestEnv;

/// The window tables' rows: satisfaction daily, hotline daily, satisfaction latest,
/// hotline latest.
pub type Windows = (
    Vec<SatisfactionRow>,
    Vec<HotlineKpiRow>,
    Vec<SatisfactionRow>,
    Vec<HotlineKpiRow>,
);

/// The window tables (daily and latest), each row with its `version`: what it was computed
/// from (the day counts' versions), so one log gives the same versions however it was cut.
pub async fn windows(env: &TestEnv) -> Windows {
    let client = env.clickhouse();
    let daily = client
        .query("SELECT ?fields FROM satisfaction_daily FINAL ORDER BY framework, unit_type, unit_id, window, as_of")
        .fetch_all::<SatisfactionRow>()
        .await
        .unwrap();
    let hotline_daily = client
        .query("SELECT ?fields FROM hotline_kpi_daily FINAL ORDER BY unit_type, unit_id, window, as_of")
        .fetch_all::<HotlineKpiRow>()
        .await
        .unwrap();
    let latest = client
        .query("SELECT ?fields FROM satisfaction_latest FINAL ORDER BY framework, unit_type, unit_id, window")
        .fetch_all::<SatisfactionRow>()
        .await
        .unwrap();
    let hotline_latest = client
        .query("SELECT ?fields FROM hotline_kpi_latest FINAL ORDER BY unit_type, unit_id, window")
        .fetch_all::<HotlineKpiRow>()
        .await
        .unwrap();
    (daily, hotline_daily, latest, hotline_latest)
}

/// [`windows`] without `version`: for comparing the windows of two different logs of the
/// same events (whose offsets, hence versions, differ).
pub async fn window_values(env: &TestEnv) -> Windows {
    let (mut daily, mut hotline_daily, mut latest, mut hotline_latest) = windows(env).await;
    daily.iter_mut().for_each(|r| r.version = 0);
    latest.iter_mut().for_each(|r| r.version = 0);
    hotline_daily.iter_mut().for_each(|r| r.version = 0);
    hotline_latest.iter_mut().for_each(|r| r.version = 0);
    (daily, hotline_daily, latest, hotline_latest)
}

/// The fact rows, every column (their `version` is the log offset that last changed them).
pub async fn facts(env: &TestEnv) -> (Vec<SurveyDayCountRow>, Vec<HotlineDayCountRow>) {
    let client = env.clickhouse();
    let surveys = client
        .query("SELECT ?fields FROM satisfaction_day_counts FINAL ORDER BY framework, province_code, day, agency_id, agency_level, channel, respondent_type, procedure_code, source_partition, source_block")
        .fetch_all::<SurveyDayCountRow>()
        .await
        .unwrap();
    let hotline = client
        .query("SELECT ?fields FROM hotline_day_counts FINAL ORDER BY province_code, day, agency_id, category, channel, source_partition, source_block")
        .fetch_all::<HotlineDayCountRow>()
        .await
        .unwrap();
    (surveys, hotline)
}

/// Facts and windows of `got` equal those of `want`.
pub async fn assert_equivalent(what: &str, got: &TestEnv, want: &TestEnv) {
    // Each table read once, both sides at the same time.
    let ((got_facts, got_windows), (want_facts, want_windows)) =
        tokio::join!(async { tokio::join!(facts(got), windows(got)) }, async {
            tokio::join!(facts(want), windows(want))
        },);
    assert_windows_add_up_to(got, &got_windows).await;
    let (g, w) = (got_facts, want_facts);
    assert_same(&format!("satisfaction_day_counts {what}"), &g.0, &w.0);
    assert_same(&format!("hotline_day_counts {what}"), &g.1, &w.1);
    let (g, w) = (got_windows, want_windows);
    assert_same(&format!("satisfaction_daily {what}"), &g.0, &w.0);
    assert_same(&format!("hotline_kpi_daily {what}"), &g.1, &w.1);
    assert_same(&format!("satisfaction_latest {what}"), &g.2, &w.2);
    assert_same(&format!("hotline_kpi_latest {what}"), &g.3, &w.3);
}

/// Equal, or a panic that shows the first differing row.
pub fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
        panic!("{what}: first difference\n got: {g:?}\nwant: {w:?}");
    }
    assert_eq!(got.len(), want.len(), "{what}: row counts");
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct HotlineDay {
    province_code: String,
    category: String,
    d: u16,
    received: i64,
    responded: i64,
    rejected: i64,
}

/// A unit-day-partition's top fact `version`.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct DayTop {
    unit: String,
    d: u16,
    top: u64,
}

/// Per unit, per day: Σ over source partitions of the top fact `version`, read by `sql`.
async fn day_clocks(env: &TestEnv, sql: &str) -> BTreeMap<String, BTreeMap<u16, u128>> {
    let tops: Vec<DayTop> = env.clickhouse().query(sql).fetch_all().await.unwrap();
    let mut clocks: BTreeMap<String, BTreeMap<u16, u128>> = BTreeMap::new();
    for row in tops {
        *clocks
            .entry(row.unit)
            .or_default()
            .entry(row.d)
            .or_default() += u128::from(row.top);
    }
    clocks
}

/// The `version` a window row at `as_of` must have: the day, then Σ of `clocks` over `[from, as_of]`.
fn expected_version(clocks: Option<&BTreeMap<u16, u128>>, from: u16, as_of: u16) -> u64 {
    let clock: u128 = clocks.map_or(0, |c| c.range(from..=as_of).map(|(_, t)| t).sum());
    (u64::from(as_of) << 48) | clock.min((1 << 48) - 1) as u64
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct SurveyDay {
    framework: String,
    province_code: String,
    d: u16,
    respondents: u64,
}

/// Sum of `days` (day → count) over `[from, to]`.
fn sum_over(days: &BTreeMap<u16, i64>, from: u16, to: u16) -> i64 {
    days.range(from..=to).map(|(_, n)| n).sum()
}

/// Every window row's counts equal the fact rows summed over its days, and every unit has
/// a row at every `as_of` whose 30-day window holds data: an independent check of the
/// materialiser's incremental recomputation and caching.
pub async fn assert_windows_add_up(env: &TestEnv) {
    assert_windows_add_up_to(env, &windows(env).await).await;
}

/// Every window row's `version` is its `as_of`, then the clock of the fact rows it was
/// computed from, computed here from the fact tables: a survey row's, Σ over its window's
/// days and their source partitions of the top fact `version` of its framework and
/// province; a hotline row's, the same over the 366 days to its `as_of` for its province.
pub async fn assert_window_versions(env: &TestEnv) {
    assert_window_versions_of(env, &windows(env).await).await;
}

async fn assert_window_versions_of(env: &TestEnv, windows: &Windows) {
    // A row's version: its day, then the tops of its window's days.
    let survey_clocks = day_clocks(
        env,
        "SELECT concat(framework, '|', province_code) AS unit, toUInt16(day) AS d, max(version) AS top \
         FROM satisfaction_day_counts FINAL GROUP BY framework, province_code, d, source_partition",
    )
    .await;
    let provinces = windows.0.iter().chain(&windows.2);
    for row in provinces.filter(|r| r.unit_type == "province") {
        let unit = format!("{}|{}", row.framework, row.unit_id);
        let want = expected_version(survey_clocks.get(&unit), row.window_start, row.as_of);
        assert_eq!(row.version, want, "version of {row:?}");
    }
    // A row's version: its day, then the tops of its province's fact rows (every
    // category's) over the 366 days to `as_of`.
    let hotline_clocks = day_clocks(
        env,
        "SELECT province_code AS unit, toUInt16(day) AS d, max(version) AS top \
         FROM hotline_day_counts FINAL GROUP BY province_code, d, source_partition",
    )
    .await;
    for row in windows.1.iter().chain(&windows.3) {
        let want = expected_version(
            hotline_clocks.get(&row.province_code),
            row.as_of.saturating_sub(365),
            row.as_of,
        );
        assert_eq!(row.version, want, "version of {row:?}");
    }
}

/// `assert_windows_add_up` on window rows already read by [`windows`].
async fn assert_windows_add_up_to(env: &TestEnv, windows: &Windows) {
    assert_window_versions_of(env, windows).await;
    let client = env.clickhouse();
    let hotline: Vec<HotlineDay> = client
        .query("SELECT province_code, category, toUInt16(day) AS d, sum(received) AS received, sum(responded) AS responded, sum(rejected) AS rejected FROM hotline_day_totals GROUP BY province_code, category, d")
        .fetch_all()
        .await
        .unwrap();
    // unit id → count name → day → count
    let mut facts: BTreeMap<String, [BTreeMap<u16, i64>; 3]> = BTreeMap::new();
    for row in &hotline {
        for unit in [
            row.province_code.clone(),
            format!("{}/{}", row.province_code, row.category),
        ] {
            let entry = facts.entry(unit).or_default();
            for (i, n) in [row.received, row.responded, row.rejected]
                .into_iter()
                .enumerate()
            {
                *entry[i].entry(row.d).or_default() += n;
            }
        }
    }
    let kpi = &windows.1;
    assert!(!kpi.is_empty(), "hotline window rows exist");
    let mut seen: std::collections::BTreeSet<(String, u16)> = Default::default();
    for row in kpi {
        let Some(days) = facts.get(&row.unit_id) else {
            panic!("a hotline window row without facts: {row:?}");
        };
        let got = [row.received, row.responded, row.rejected].map(i64::from);
        let want = [0, 1, 2].map(|i| sum_over(&days[i], row.window_start, row.as_of));
        assert_eq!(got, want, "received/responded/rejected of {row:?}");
        if row.window == "30d" {
            seen.insert((row.unit_id.clone(), row.as_of));
        }
    }
    let newest = kpi.iter().map(|r| r.as_of).max().unwrap();
    for (unit, days) in &facts {
        let first = *days[0].keys().next().unwrap();
        for as_of in first..=newest {
            if sum_over(&days[0], as_of.saturating_sub(29), as_of) != 0 {
                assert!(
                    seen.contains(&(unit.clone(), as_of)),
                    "a 30d hotline row of {unit} at day {as_of}"
                );
            }
        }
    }

    let surveys: Vec<SurveyDay> = client
        .query("SELECT framework, province_code, toUInt16(day) AS d, sum(respondents) AS respondents FROM satisfaction_day_totals GROUP BY framework, province_code, d")
        .fetch_all()
        .await
        .unwrap();
    let mut facts: BTreeMap<(String, String), BTreeMap<u16, i64>> = BTreeMap::new();
    for row in &surveys {
        *facts
            .entry((row.framework.clone(), row.province_code.clone()))
            .or_default()
            .entry(row.d)
            .or_default() += row.respondents as i64;
    }
    let daily = &windows.0;
    assert!(!daily.is_empty(), "satisfaction window rows exist");
    let mut seen: std::collections::BTreeSet<(String, String, u16)> = Default::default();
    for row in daily.iter().filter(|r| r.unit_type == "province") {
        let days = &facts[&(row.framework.clone(), row.unit_id.clone())];
        assert_eq!(
            i64::from(row.respondents),
            sum_over(days, row.window_start, row.as_of),
            "respondents of {row:?}"
        );
        if row.window == "30d" {
            seen.insert((row.framework.clone(), row.unit_id.clone(), row.as_of));
        }
    }
    let newest = daily.iter().map(|r| r.as_of).max().unwrap();
    for ((framework, province), days) in &facts {
        let first = *days.keys().next().unwrap();
        for as_of in first..=newest {
            if sum_over(days, as_of.saturating_sub(29), as_of) != 0 {
                assert!(
                    seen.contains(&(framework.clone(), province.clone(), as_of)),
                    "a 30d satisfaction row of {framework}/{province} at day {as_of}"
                );
            }
        }
    }
}
