//! Province satisfaction windows (`satisfaction_daily`, `satisfaction_latest`) from the
//! day counts summed over every partition, per framework.
use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::contract::kind::EventKind;
use crate::domain::framework::{Framework, FrameworkCatalog};
use crate::domain::time::format_day;
use crate::index::day_cache::Carried;
use crate::index::rows::SatisfactionRow;
use crate::index::survey::SurveyCounts;
use crate::index::values::{satisfaction_value, window_sums, UnitKey, UnitType};
use crate::index::window::{MAX_WINDOW_DAYS, WINDOWS};
use crate::sink::writer::{Abandoned, RawEventWriter};
use crate::tables;

use super::plan::{clip, months, plan, Writes};
use super::{
    clocks_of, content_hash, write_series, Clock, Held, PassInput, PassStats, Series, WindowRow,
};

#[derive(Debug, clickhouse::Row, Deserialize)]
struct SurveySumRow {
    province_code: String,
    d: u16,
    p: u32,
    top: u64,
    respondents: u64,
    n1: Vec<u64>,
    n2: Vec<u64>,
    n3: Vec<u64>,
    n4: Vec<u64>,
    n5: Vec<u64>,
    missing: Vec<u64>,
    ticks: Vec<u64>,
}

fn narrow(values: &[u64]) -> Vec<u32> {
    values
        .iter()
        .map(|v| (*v).min(u64::from(u32::MAX)) as u32)
        .collect()
}

impl Carried for SurveyCounts {
    const CARRIES: bool = false;

    fn carried(&self) -> i64 {
        0
    }
}

/// A day's sums over partitions, with each partition's top `version`.
type PartitionedSum = (SurveyCounts, Vec<(u32, u64)>);

/// The one unit of a survey cache (a province has no sub-units there).
const WHOLE: &str = "";

pub struct SurveyWindows {
    frameworks: FrameworkCatalog,
    /// Day sums by (framework, province).
    held: Held<(String, String), SurveyCounts>,
}

impl SurveyWindows {
    pub fn new(frameworks: FrameworkCatalog) -> Self {
        Self {
            frameworks,
            held: Held::default(),
        }
    }

    pub async fn pass(
        &mut self,
        writer: &RawEventWriter,
        pass: &PassInput<'_>,
        writes: &Writes,
        stats: &mut PassStats,
    ) -> Result<(), Abandoned> {
        let PassInput { own, everything } = *pass;
        let held = &mut self.held;
        held.begin(writer, everything, tables::SATISFACTION_DAILY)
            .await?;
        let reads = [
            format!(
                "SELECT toUInt16(max(day)) AS d FROM {}",
                tables::SATISFACTION_DAY_COUNTS
            ),
            format!(
                "SELECT framework, province_code, toUInt16(day) AS d, source_partition AS p, maxMerge(top) AS top FROM {} WHERE day >= toDate(?) GROUP BY framework, province_code, d, p",
                tables::SATISFACTION_DAY_PRINTS
            ),
        ];
        let Some((newest, found)) = held
            .detect(
                writer,
                reads,
                "survey fingerprints",
                &own.surveys,
                writes,
                everything,
            )
            .await?
        else {
            return Ok(());
        };
        stats.split_provinces[EventKind::Survey] = found.split;
        for (key, days) in &found.foreign {
            held.cache
                .entry(key.clone())
                .or_default()
                .mark_stale(days.iter().copied());
        }
        let deltas =
            own.deltas
                .surveys
                .iter()
                .map(|((framework, province, day, partition), delta)| {
                    (
                        (framework.clone(), province.clone()),
                        WHOLE,
                        *day,
                        *partition,
                        delta,
                    )
                });
        stats.days_from_deltas += held.add_own_deltas(deltas, writes);
        let (changed, recent) = (found.changed, found.recent);
        let plan = plan(&changed, &recent, held.written, newest, everything);
        // Read what the plan needs and the cache lacks, one query per framework.
        let mut spans: BTreeMap<String, (i64, i64, Vec<String>)> = BTreeMap::new();
        for (key, intervals) in &plan {
            let cache = held.cache.entry(key.clone()).or_default();
            for &(a, b) in intervals {
                if let Some((x, y)) = cache.missing((a - MAX_WINDOW_DAYS).max(0), b) {
                    let span = spans.entry(key.0.clone()).or_insert((x, y, Vec::new()));
                    span.0 = span.0.min(x);
                    span.1 = span.1.max(y);
                    if !span.2.contains(&key.1) {
                        span.2.push(key.1.clone());
                    }
                }
            }
        }
        let sql = format!(
            "SELECT province_code, toUInt16(day) AS d, source_partition AS p, max(version) AS top, sum(respondents) AS respondents, \
             sumForEach(criterion_n1) AS n1, sumForEach(criterion_n2) AS n2, sumForEach(criterion_n3) AS n3, \
             sumForEach(criterion_n4) AS n4, sumForEach(criterion_n5) AS n5, sumForEach(criterion_missing) AS missing, \
             sumForEach(expectation_ticks) AS ticks \
             FROM {} FINAL WHERE framework = ? AND has(?, province_code) AND day >= toDate(?) AND day <= toDate(?) \
             GROUP BY province_code, d, p",
            tables::SATISFACTION_DAY_COUNTS
        );
        // One query per framework, concurrently: each reads a whole changed day.
        let reads =
            futures::future::join_all(spans.iter().map(|(framework, (from, to, provinces))| {
                let (from_text, to_text) = (format_day(*from), format_day(*to));
                let sql = &sql;
                async move {
                    writer
                        .fetch_all::<SurveySumRow>("survey day sums", |c| {
                            c.query(sql)
                                .bind(framework)
                                .bind(provinces)
                                .bind(&from_text)
                                .bind(&to_text)
                        })
                        .await
                }
            }))
            .await;
        for ((framework, (from, to, provinces)), rows) in spans.into_iter().zip(reads) {
            let rows = rows?;
            stats.days_read += rows.len();
            // Summed over partitions; each partition's top decides whose deltas the day
            // takes from now on.
            let mut read: HashMap<String, BTreeMap<i64, PartitionedSum>> = HashMap::new();
            for row in rows {
                let counts = SurveyCounts::from_distribution(
                    row.respondents.min(u64::from(u32::MAX)) as u32,
                    [
                        &narrow(&row.n1),
                        &narrow(&row.n2),
                        &narrow(&row.n3),
                        &narrow(&row.n4),
                        &narrow(&row.n5),
                    ],
                    &narrow(&row.missing),
                    &narrow(&row.ticks),
                );
                let (sum, tops) = read
                    .entry(row.province_code)
                    .or_default()
                    .entry(i64::from(row.d))
                    .or_default();
                sum.merge(&counts);
                tops.push((row.p, row.top));
            }
            for province in provinces {
                let days = read.remove(&province).unwrap_or_default();
                let key = (framework.clone(), province);
                let trust = held.trust.entry(key.clone()).or_default();
                let mut sums = Vec::with_capacity(days.len());
                for day in from..=to {
                    let tops = days.get(&day).map_or(&[][..], |(_, tops)| tops);
                    trust.insert(day, writes.trusted(tops));
                }
                let mut clocks = Vec::with_capacity(days.len());
                for (day, (sum, tops)) in days {
                    sums.push((day, sum));
                    clocks.extend(Clock::of_day(&tops).map(|c| (day, c)));
                }
                held.take_read_clocks(&key, (from, to), clocks);
                held.cache.entry(key).or_default().apply_read(
                    from,
                    to,
                    BTreeMap::from([(WHOLE.to_owned(), sums)]),
                    &BTreeMap::new(),
                );
            }
        }
        // Computed as they are written, month by month (`write_series`): each
        // planned province's framework, unit, day sums and clocks are looked up once.
        let series: Vec<SurveySeries<'_>> = plan
            .iter()
            .filter_map(|(key, intervals)| {
                let clocks = clocks_of(&held.clocks, key);
                let framework = self.frameworks.get(&key.0)?;
                let days = &held.cache.get(key)?.units().get(WHOLE)?.days;
                let unit = UnitKey {
                    unit_type: UnitType::Province,
                    unit_id: key.1.clone(),
                    province_code: key.1.clone(),
                };
                let first = days.keys().next().copied()?;
                Some(SurveySeries {
                    framework,
                    unit,
                    days,
                    clocks,
                    first,
                    intervals: intervals.as_slice(),
                })
            })
            .collect();
        let (recomputed, written) = write_series(
            writer,
            &mut held.rows_written,
            &series,
            &months(&plan),
            newest,
        )
        .await?;
        held.finish(newest);
        stats.as_of_days += recomputed;
        stats.window_rows[EventKind::Survey] += written;
        Ok(())
    }
}

/// A planned province: its framework, unit, day sums and day clocks, first day with data and
/// planned `as_of` intervals.
struct SurveySeries<'a> {
    framework: &'a Framework,
    unit: UnitKey,
    days: &'a BTreeMap<i64, SurveyCounts>,
    clocks: &'a BTreeMap<i64, Clock>,
    first: i64,
    intervals: &'a [(i64, i64)],
}

impl Series for SurveySeries<'_> {
    type Row = SatisfactionRow;

    fn span(&self) -> Option<(i64, &[(i64, i64)])> {
        Some((self.first, self.intervals))
    }

    fn rows<'a>(
        &'a self,
        (from, to): (i64, i64),
        (newest, at_newest): (i64, bool),
    ) -> impl Iterator<Item = SatisfactionRow> + Send + 'a {
        // Days other than the newest are written where some window has respondents.
        // A window's clock covers exactly its own days, as its counts do.
        let Self {
            framework,
            unit,
            days,
            clocks,
            first,
            intervals,
        } = self;
        clip(intervals, from, to)
            .flat_map(move |(a, b)| {
                let a = a.max(*first);
                window_sums(days, a, b, &WINDOWS)
                    .into_iter()
                    .zip(window_sums(clocks, a, b, &WINDOWS))
            })
            .filter(move |((as_of, sums), _)| {
                if at_newest {
                    *as_of == newest
                } else {
                    *as_of != newest && !sums.iter().all(|s| s.respondents == 0)
                }
            })
            .flat_map(move |((as_of, sums), (_, clocks))| {
                WINDOWS
                    .iter()
                    .zip(sums)
                    .zip(clocks)
                    .map(move |((window, counts), clock)| {
                        let version = clock.version(as_of);
                        let value =
                            satisfaction_value(framework, unit, *window, as_of, &counts, version);
                        SatisfactionRow::new(&value, framework)
                    })
            })
    }
}

impl WindowRow for SatisfactionRow {
    const TABLES: [&'static str; 2] = [tables::SATISFACTION_DAILY, tables::SATISFACTION_LATEST];
    const REFUSED: &'static str = "ClickHouse refused a window row";

    fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.framework, self.unit_id, self.window, self.as_of
        )
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn content(&self) -> u64 {
        content_hash(&(
            self.respondents,
            self.sipas.map(f64::to_bits),
            &self.criterion_valid,
            &self.criterion_satisfied,
            &self.criterion_missing,
            self.expectation_shares
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
        ))
    }
}
