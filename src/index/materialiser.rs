//! Window values of provinces (satisfaction and hotline) and of hotline categories,
//! computed from the day counts **summed over every source partition** and written to
//! `satisfaction_daily` / `hotline_kpi_daily` for every `as_of` day, and to the `*_latest`
//! tables at the newest day with data anywhere (the same day for every unit).
//!
//! A pass runs after the processor's fact rows were acknowledged. It recomputes:
//! - for every day whose counts changed (the processor's own rows, or another instance's,
//!   seen as a changed fingerprint `(rows, Σ version)` of that province-day), the window
//!   values of the days that contain it: as_of ∈ [day, day + 365];
//! - when the newest day moves, every unit at the new days.
//!
//! So the cost of a late event is bounded: its province's day sums are read (once, then
//! cached), and at most 366 `as_of` days × 6 windows are rewritten for its province (and
//! category). Rows carry the snapshot time as `version`: the latest snapshot wins.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

use crate::domain::framework::FrameworkCatalog;
use crate::domain::time::format_day;
use crate::index::day_cache::{Carried, DayCache};
use crate::index::rows::{tables, HotlineKpiRow, SatisfactionRow};
use crate::index::state::ChangedDays;
use crate::index::survey::SurveyCounts;
use crate::index::ticket::HotlineDayCounts;
use crate::index::values::{
    hotline_value, merge_intervals, satisfaction_value, window_sums, UnitKey, UnitType,
};
use crate::index::window::{MAX_WINDOW_DAYS, WINDOWS};
use crate::sink::writer::{Abandoned, RawEventWriter};

/// Days kept in the cache behind the newest day (and covered by the fingerprints).
const CACHE_DAYS: i64 = MAX_WINDOW_DAYS + 30;

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct PassStats {
    pub satisfaction_rows: usize,
    pub hotline_rows: usize,
    /// Unit-days of sums read from ClickHouse.
    pub days_read: usize,
    /// (unit, as_of) pairs recomputed.
    pub as_of_days: usize,
    /// Provinces whose day counts of the last year come from several partitions.
    pub split_survey_provinces: Vec<String>,
    pub split_hotline_provinces: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Print {
    rows: u64,
    versions: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct PrintRow {
    framework: String,
    province_code: String,
    d: u16,
    rows: u64,
    versions: u64,
    partitions: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct DayRow {
    d: u16,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct SurveySumRow {
    province_code: String,
    d: u16,
    respondents: u64,
    n1: Vec<u64>,
    n2: Vec<u64>,
    n3: Vec<u64>,
    n4: Vec<u64>,
    n5: Vec<u64>,
    missing: Vec<u64>,
    ticks: Vec<u64>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct HotlineSumRow {
    province_code: String,
    category: String,
    d: u16,
    received: i64,
    responded: i64,
    responded_on_time: i64,
    rated: i64,
    rated_satisfied: i64,
    reopened: i64,
    rejected: i64,
    past_due_delta: i64,
    bins: Vec<u8>,
    bin_counts: Vec<i64>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct PastDueBaseRow {
    province_code: String,
    category: String,
    base: i64,
}

fn narrow(values: &[u64]) -> Vec<u32> {
    values
        .iter()
        .map(|v| (*v).min(u64::from(u32::MAX)) as u32)
        .collect()
}

fn narrow_signed(value: i64) -> i32 {
    value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// What a fingerprint read found: changed days per unit, the units with data near the
/// newest day, and the provinces whose recent days come from several partitions.
type Detected = (
    BTreeMap<(String, String), BTreeSet<i64>>,
    BTreeSet<(String, String)>,
    Vec<String>,
);

impl Carried for SurveyCounts {
    fn carried(&self) -> i64 {
        0
    }
}

impl Carried for HotlineDayCounts {
    fn carried(&self) -> i64 {
        i64::from(self.past_due_delta)
    }
}

/// The one unit of a survey cache (a province has no sub-units there).
const WHOLE: &str = "";

pub struct Materialiser {
    writer: RawEventWriter,
    frameworks: FrameworkCatalog,
    /// (framework, province) → day sums.
    surveys: HashMap<(String, String), DayCache<SurveyCounts>>,
    survey_prints: HashMap<(String, String, i64), Print>,
    /// province → day sums per category.
    hotline: HashMap<String, DayCache<HotlineDayCounts>>,
    hotline_prints: HashMap<(String, i64), Print>,
    /// The newest `as_of` written, once known.
    survey_written: Option<i64>,
    hotline_written: Option<i64>,
    /// Fingerprints were read once; before that nothing counts as changed by others.
    primed: bool,
    /// Content hashes (without `version`) of the rows last written for the newest day: a
    /// recomputed row that did not change is not written again (between flushes most of a
    /// changed province's categories and windows stay the same).
    survey_rows_written: WrittenRows,
    hotline_rows_written: WrittenRows,
}

/// Content hashes of the rows written for one day (the newest), by row key.
#[derive(Default)]
struct WrittenRows {
    day: Option<i64>,
    hashes: HashMap<String, u64>,
}

impl WrittenRows {
    /// The hashes of `day`; those of an older day are dropped.
    fn for_day(&mut self, day: i64) -> &mut HashMap<String, u64> {
        if self.day != Some(day) {
            self.hashes.clear();
            self.day = Some(day);
        }
        &mut self.hashes
    }
}

/// A row's content without its version, hashed (stable within a process).
fn content_hash<T: std::hash::Hash>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl Materialiser {
    pub fn new(writer: RawEventWriter, frameworks: FrameworkCatalog) -> Self {
        Self {
            writer,
            frameworks,
            surveys: HashMap::new(),
            survey_prints: HashMap::new(),
            hotline: HashMap::new(),
            hotline_prints: HashMap::new(),
            survey_written: None,
            hotline_written: None,
            primed: false,
            survey_rows_written: WrittenRows::default(),
            hotline_rows_written: WrittenRows::default(),
        }
    }

    async fn day(&self, sql: String) -> Result<Option<i64>, Abandoned> {
        let rows: Vec<DayRow> = self
            .writer
            .fetch_all("newest day", |c| c.query(&sql))
            .await?;
        Ok(rows.first().map(|r| i64::from(r.d)).filter(|d| *d > 0))
    }

    /// Recomputes what `changed` (the caller's own fact rows) and other writers' changes
    /// require. With `everything`, every unit at every day with data (a rebuild).
    pub async fn pass(
        &mut self,
        changed: &ChangedDays,
        everything: bool,
    ) -> Result<PassStats, Abandoned> {
        let version = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        if everything {
            self.surveys.clear();
            self.hotline.clear();
            self.survey_prints.clear();
            self.hotline_prints.clear();
        }
        let mut stats = PassStats::default();
        self.survey_pass(changed, everything, version, &mut stats)
            .await?;
        self.hotline_pass(changed, everything, version, &mut stats)
            .await?;
        self.primed = true;
        Ok(stats)
    }

    /// Days changed per key: ours, and those whose fingerprint moved since the last pass.
    /// Returns them with the keys that have data near the newest day.
    fn detect(
        prints: Vec<PrintRow>,
        known: &mut HashMap<(String, String, i64), Print>,
        own: &BTreeMap<(String, String), Vec<i64>>,
        others_count: bool,
        newest: i64,
    ) -> Detected {
        let mut changed: BTreeMap<(String, String), BTreeSet<i64>> = own
            .iter()
            .map(|(k, days)| (k.clone(), days.iter().copied().collect()))
            .collect();
        let mut recent = BTreeSet::new();
        let mut split = BTreeSet::new();
        for p in prints {
            let day = i64::from(p.d);
            if p.partitions > 1 && day > newest - MAX_WINDOW_DAYS {
                split.insert(p.province_code.clone());
            }
            let key = (p.framework, p.province_code);
            let print = Print {
                rows: p.rows,
                versions: p.versions,
            };
            let previous = known.insert((key.0.clone(), key.1.clone(), day), print);
            if others_count && previous != Some(print) {
                changed.entry(key.clone()).or_default().insert(day);
            }
            if day > newest - MAX_WINDOW_DAYS {
                recent.insert(key);
            }
        }
        (changed, recent, split.into_iter().collect())
    }

    /// The as_of intervals to recompute per key.
    fn plan(
        changed: &BTreeMap<(String, String), BTreeSet<i64>>,
        recent: &BTreeSet<(String, String)>,
        written: Option<i64>,
        newest: i64,
        everything: bool,
    ) -> BTreeMap<(String, String), Vec<(i64, i64)>> {
        let mut plan: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
        for (key, days) in changed {
            let intervals = plan.entry(key.clone()).or_default();
            for day in days {
                intervals.push((*day, (*day + MAX_WINDOW_DAYS - 1).min(newest)));
            }
        }
        // The newest day moved: every unit with recent data gets the new days.
        let moved_from = match written {
            _ if everything => None,
            Some(w) if w >= newest => None,
            Some(w) => Some((w + 1).max(newest - MAX_WINDOW_DAYS)),
            None => Some(newest - MAX_WINDOW_DAYS),
        };
        if let Some(from) = moved_from {
            for key in recent {
                plan.entry(key.clone()).or_default().push((from, newest));
            }
        }
        plan.into_iter()
            .map(|(k, v)| (k, merge_intervals(v)))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    fn print_floor(changed: &BTreeMap<(String, String), Vec<i64>>, newest: i64) -> i64 {
        let own_oldest = changed
            .values()
            .filter_map(|d| d.first().copied())
            .min()
            .unwrap_or(newest);
        (own_oldest.min(newest) - MAX_WINDOW_DAYS).min(newest - CACHE_DAYS)
    }

    async fn survey_pass(
        &mut self,
        own: &ChangedDays,
        everything: bool,
        version: u64,
        stats: &mut PassStats,
    ) -> Result<(), Abandoned> {
        let Some(newest) = self
            .day(format!(
                "SELECT toUInt16(max(day)) AS d FROM {}",
                tables::SATISFACTION_DAY_COUNTS
            ))
            .await?
        else {
            return Ok(());
        };
        if self.survey_written.is_none() && !everything {
            self.survey_written = self
                .day(format!(
                    "SELECT toUInt16(max(as_of)) AS d FROM {} WHERE unit_type = 'province'",
                    tables::SATISFACTION_DAILY
                ))
                .await?;
        }
        let floor = if everything {
            0
        } else {
            Self::print_floor(&own.surveys, newest)
        };
        let sql = format!(
            "SELECT framework, province_code, toUInt16(day) AS d, count() AS rows, sum(version) AS versions, uniqExact(source_partition) AS partitions FROM {} WHERE day >= toDate(?) GROUP BY framework, province_code, d",
            tables::SATISFACTION_DAY_COUNTS
        );
        let floor_text = format_day(floor.max(0));
        let prints: Vec<PrintRow> = self
            .writer
            .fetch_all("survey fingerprints", |c| c.query(&sql).bind(&floor_text))
            .await?;
        let (changed, recent, split) = Self::detect(
            prints,
            &mut self.survey_prints,
            &own.surveys,
            self.primed || everything,
            newest,
        );
        stats.split_survey_provinces = split;
        for (key, days) in &changed {
            self.surveys
                .entry(key.clone())
                .or_default()
                .mark_stale(days.iter().copied());
        }
        let plan = Self::plan(&changed, &recent, self.survey_written, newest, everything);
        // Read what the plan needs and the cache lacks, one query per framework.
        let mut spans: BTreeMap<String, (i64, i64, Vec<String>)> = BTreeMap::new();
        for (key, intervals) in &plan {
            let cache = self.surveys.entry(key.clone()).or_default();
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
            "SELECT province_code, toUInt16(day) AS d, sum(respondents) AS respondents, \
             sumForEach(criterion_n1) AS n1, sumForEach(criterion_n2) AS n2, sumForEach(criterion_n3) AS n3, \
             sumForEach(criterion_n4) AS n4, sumForEach(criterion_n5) AS n5, sumForEach(criterion_missing) AS missing, \
             sumForEach(expectation_ticks) AS ticks \
             FROM {} FINAL WHERE framework = ? AND has(?, province_code) AND day >= toDate(?) AND day <= toDate(?) \
             GROUP BY province_code, d",
            tables::SATISFACTION_DAY_COUNTS
        );
        for (framework, (from, to, provinces)) in spans {
            let (from_text, to_text) = (format_day(from), format_day(to));
            let rows: Vec<SurveySumRow> = self
                .writer
                .fetch_all("survey day sums", |c| {
                    c.query(&sql)
                        .bind(&framework)
                        .bind(&provinces)
                        .bind(&from_text)
                        .bind(&to_text)
                })
                .await?;
            stats.days_read += rows.len();
            let mut read: HashMap<String, Vec<(i64, SurveyCounts)>> = HashMap::new();
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
                read.entry(row.province_code)
                    .or_default()
                    .push((i64::from(row.d), counts));
            }
            for province in provinces {
                let days = read.remove(&province).unwrap_or_default();
                self.surveys
                    .entry((framework.clone(), province))
                    .or_default()
                    .apply_read(
                        from,
                        to,
                        BTreeMap::from([(WHOLE.to_owned(), days)]),
                        &BTreeMap::new(),
                    );
            }
        }
        // Compute and write.
        let mut daily = Vec::new();
        let mut latest = Vec::new();
        for (key, intervals) in &plan {
            let Some(framework) = self.frameworks.get(&key.0) else {
                continue;
            };
            let Some(days) = self.surveys.get(key).and_then(|c| c.units().get(WHOLE)) else {
                continue;
            };
            let days = &days.days;
            let unit = UnitKey {
                unit_type: UnitType::Province,
                unit_id: key.1.clone(),
                province_code: key.1.clone(),
            };
            for &(a, b) in intervals {
                let first = days.keys().next().copied().unwrap_or(b + 1);
                for (as_of, sums) in window_sums(days, a.max(first), b, &WINDOWS) {
                    stats.as_of_days += 1;
                    if as_of != newest && sums.iter().all(|s| s.respondents == 0) {
                        continue;
                    }
                    for (window, counts) in WINDOWS.iter().zip(&sums) {
                        let value =
                            satisfaction_value(framework, &unit, *window, as_of, counts, version);
                        let row = SatisfactionRow::new(&value, framework);
                        if as_of == newest {
                            latest.push(row.clone());
                        }
                        daily.push(row);
                    }
                }
            }
        }
        let today = crate::domain::time::clickhouse_date(newest);
        let key_of = |row: &SatisfactionRow| {
            format!(
                "{}|{}|{}|{}",
                row.framework, row.unit_id, row.window, row.as_of
            )
        };
        let written = self.survey_rows_written.for_day(newest);
        let mut unchanged = std::collections::HashSet::new();
        for row in daily.iter().filter(|r| r.as_of == today) {
            let hash = content_hash(&(
                row.respondents,
                row.sipas.map(f64::to_bits),
                &row.criterion_valid,
                &row.criterion_satisfied,
                &row.criterion_missing,
                row.expectation_shares
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
            ));
            let key = key_of(row);
            if written.insert(key.clone(), hash) == Some(hash) {
                unchanged.insert(key);
            }
        }
        daily.retain(|row| !unchanged.contains(&key_of(row)));
        latest.retain(|row| !unchanged.contains(&key_of(row)));
        stats.satisfaction_rows += daily.len() + latest.len();
        let (a, b) = tokio::join!(
            self.writer.insert(tables::SATISFACTION_DAILY, &daily),
            self.writer.insert(tables::SATISFACTION_LATEST, &latest),
        );
        for failure in a?.into_iter().chain(b?) {
            tracing::error!(message = %failure.message, "ClickHouse refused a window row");
        }
        self.survey_written = Some(self.survey_written.map_or(newest, |w| w.max(newest)));
        let keep_from = newest - CACHE_DAYS;
        for cache in self.surveys.values_mut() {
            cache.trim(keep_from);
        }
        self.surveys.retain(|_, c| !c.is_empty());
        self.survey_prints.retain(|(_, _, d), _| *d >= keep_from);
        Ok(())
    }

    async fn hotline_pass(
        &mut self,
        own: &ChangedDays,
        everything: bool,
        version: u64,
        stats: &mut PassStats,
    ) -> Result<(), Abandoned> {
        let Some(newest) = self
            .day(format!(
                // Days with events; a deadline's past-due toggle can lie ahead of them.
                "SELECT toUInt16(max(day)) AS d FROM {} WHERE received != 0 OR responded != 0 OR rated != 0 OR reopened != 0 OR rejected != 0",
                tables::HOTLINE_DAY_COUNTS
            ))
            .await?
        else {
            return Ok(());
        };
        if self.hotline_written.is_none() && !everything {
            self.hotline_written = self
                .day(format!(
                    "SELECT toUInt16(max(as_of)) AS d FROM {} WHERE unit_type = 'province'",
                    tables::HOTLINE_KPI_DAILY
                ))
                .await?;
        }
        // Keyed like the survey side, with an empty framework.
        let own_days: BTreeMap<(String, String), Vec<i64>> = own
            .hotline
            .iter()
            .map(|(p, d)| ((String::new(), p.clone()), d.clone()))
            .collect();
        let floor = if everything {
            0
        } else {
            Self::print_floor(&own_days, newest)
        };
        let sql = format!(
            "SELECT '' AS framework, province_code, toUInt16(day) AS d, count() AS rows, sum(version) AS versions, uniqExact(source_partition) AS partitions FROM {} WHERE day >= toDate(?) GROUP BY province_code, d",
            tables::HOTLINE_DAY_COUNTS
        );
        let floor_text = format_day(floor.max(0));
        let prints: Vec<PrintRow> = self
            .writer
            .fetch_all("hotline fingerprints", |c| c.query(&sql).bind(&floor_text))
            .await?;
        let mut known: HashMap<(String, String, i64), Print> = self
            .hotline_prints
            .drain()
            .map(|((p, d), print)| ((String::new(), p, d), print))
            .collect();
        let (changed, recent, split) = Self::detect(
            prints,
            &mut known,
            &own_days,
            self.primed || everything,
            newest,
        );
        stats.split_hotline_provinces = split;
        self.hotline_prints = known
            .into_iter()
            .map(|((_, p, d), print)| ((p, d), print))
            .collect();
        let plan = Self::plan(&changed, &recent, self.hotline_written, newest, everything);
        for ((_, province), days) in &changed {
            if let Some(cache) = self.hotline.get_mut(province) {
                cache.mark_stale(days.iter().copied());
            }
        }
        // The span to read per province (all its categories at once).
        let mut spans: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for ((_, province), intervals) in &plan {
            let cache = self.hotline.get(province);
            for &(a, b) in intervals {
                let need_from = (a - MAX_WINDOW_DAYS).max(0);
                let missing = cache.map_or(Some((need_from, b)), |c| c.missing(need_from, b));
                if let Some((x, y)) = missing {
                    let span = spans.entry(province.clone()).or_insert((x, y));
                    span.0 = span.0.min(x);
                    span.1 = span.1.max(y);
                }
            }
        }
        if !spans.is_empty() {
            let from = spans.values().map(|s| s.0).min().unwrap_or(0);
            let to = spans.values().map(|s| s.1).max().unwrap_or(newest);
            let provinces: Vec<String> = spans.keys().cloned().collect();
            let sql = format!(
                "SELECT province_code, category, toUInt16(day) AS d, sum(received) AS received, sum(responded) AS responded, \
                 sum(responded_on_time) AS responded_on_time, sum(rated) AS rated, sum(rated_satisfied) AS rated_satisfied, \
                 sum(reopened) AS reopened, sum(rejected) AS rejected, sum(past_due_delta) AS past_due_delta, \
                 tupleElement(sumMap(response_bins, response_counts), 1) AS bins, \
                 arrayMap(x -> toInt64(x), tupleElement(sumMap(response_bins, response_counts), 2)) AS bin_counts \
                 FROM {} FINAL WHERE has(?, province_code) AND day >= toDate(?) AND day <= toDate(?) \
                 GROUP BY province_code, category, d",
                tables::HOTLINE_DAY_COUNTS
            );
            let (from_text, to_text) = (format_day(from), format_day(to));
            let rows: Vec<HotlineSumRow> = self
                .writer
                .fetch_all("hotline day sums", |c| {
                    c.query(&sql)
                        .bind(&provinces)
                        .bind(&from_text)
                        .bind(&to_text)
                })
                .await?;
            stats.days_read += rows.len();
            let base_sql = format!(
                "SELECT province_code, category, sum(past_due_delta) AS base FROM {} FINAL \
                 WHERE has(?, province_code) AND day < toDate(?) GROUP BY province_code, category",
                tables::HOTLINE_DAY_COUNTS
            );
            let bases: Vec<PastDueBaseRow> = self
                .writer
                .fetch_all("hotline past-due base", |c| {
                    c.query(&base_sql).bind(&provinces).bind(&from_text)
                })
                .await?;
            type Read = BTreeMap<String, Vec<(i64, HotlineDayCounts)>>;
            let mut read: BTreeMap<String, Read> = BTreeMap::new();
            for row in rows {
                let counts = HotlineDayCounts {
                    received: narrow_signed(row.received),
                    responded: narrow_signed(row.responded),
                    responded_on_time: narrow_signed(row.responded_on_time),
                    rated: narrow_signed(row.rated),
                    rated_satisfied: narrow_signed(row.rated_satisfied),
                    reopened: narrow_signed(row.reopened),
                    rejected: narrow_signed(row.rejected),
                    past_due_delta: narrow_signed(row.past_due_delta),
                    response_bins: row
                        .bins
                        .iter()
                        .zip(&row.bin_counts)
                        .filter(|(_, c)| **c != 0)
                        .map(|(b, c)| (*b, narrow_signed(*c)))
                        .collect(),
                };
                read.entry(row.province_code)
                    .or_default()
                    .entry(row.category)
                    .or_default()
                    .push((i64::from(row.d), counts));
            }
            let mut carried: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            for b in bases {
                carried
                    .entry(b.province_code)
                    .or_default()
                    .insert(b.category, b.base);
            }
            for province in provinces {
                let days = read.remove(&province).unwrap_or_default();
                let carried = carried.remove(&province).unwrap_or_default();
                self.hotline
                    .entry(province)
                    .or_default()
                    .apply_read(from, to, days, &carried);
            }
        }
        // Compute and write: the province (all categories) and each category.
        let mut daily = Vec::new();
        let mut latest = Vec::new();
        for ((_, province), intervals) in &plan {
            let mut total: BTreeMap<i64, HotlineDayCounts> = BTreeMap::new();
            let mut total_base = 0;
            let mut units: Vec<(UnitKey, &BTreeMap<i64, HotlineDayCounts>, i64)> = Vec::new();
            let categories = self.hotline.get(province).map(|c| c.units());
            for (category, cache) in categories.into_iter().flatten() {
                for (day, counts) in &cache.days {
                    total.entry(*day).or_default().add(counts, 1);
                }
                total_base += cache.carried;
                if !category.is_empty() {
                    units.push((
                        UnitKey {
                            unit_type: UnitType::Category,
                            unit_id: format!("{province}/{category}"),
                            province_code: province.clone(),
                        },
                        &cache.days,
                        cache.carried,
                    ));
                }
            }
            let province_unit = UnitKey {
                unit_type: UnitType::Province,
                unit_id: province.clone(),
                province_code: province.clone(),
            };
            units.push((province_unit, &total, total_base));
            for (unit, days, base) in units {
                let Some(first) = days.keys().next().copied() else {
                    continue;
                };
                for &(a, b) in intervals {
                    let a = a.max(first);
                    if a > b {
                        continue;
                    }
                    // Open past due as of a day = every delta up to it.
                    let mut open = base
                        + days
                            .range(..a)
                            .map(|(_, c)| i64::from(c.past_due_delta))
                            .sum::<i64>();
                    for (as_of, sums) in window_sums(days, a, b, &WINDOWS) {
                        stats.as_of_days += 1;
                        if let Some(c) = days.get(&as_of) {
                            open += i64::from(c.past_due_delta);
                        }
                        if as_of != newest && open == 0 && sums.iter().all(|s| s.is_zero()) {
                            continue;
                        }
                        for (window, counts) in WINDOWS.iter().zip(&sums) {
                            let row = HotlineKpiRow::new(&hotline_value(
                                &unit, *window, as_of, counts, open, version,
                            ));
                            if as_of == newest {
                                latest.push(row.clone());
                            }
                            daily.push(row);
                        }
                    }
                }
            }
        }
        let today = crate::domain::time::clickhouse_date(newest);
        let key_of = |row: &HotlineKpiRow| {
            format!(
                "{}|{}|{}|{}",
                row.unit_type, row.unit_id, row.window, row.as_of
            )
        };
        let written = self.hotline_rows_written.for_day(newest);
        let mut unchanged = std::collections::HashSet::new();
        for row in daily.iter().filter(|r| r.as_of == today) {
            let hash = content_hash(&(
                row.received,
                row.responded,
                row.responded_on_time,
                row.median_response_hours.map(f64::to_bits),
                row.rated,
                row.satisfaction_rate.map(f64::to_bits),
                row.reopened,
                row.rejected,
                row.open_past_due,
            ));
            let key = key_of(row);
            if written.insert(key.clone(), hash) == Some(hash) {
                unchanged.insert(key);
            }
        }
        daily.retain(|row| !unchanged.contains(&key_of(row)));
        latest.retain(|row| !unchanged.contains(&key_of(row)));
        stats.hotline_rows += daily.len() + latest.len();
        let (a, b) = tokio::join!(
            self.writer.insert(tables::HOTLINE_KPI_DAILY, &daily),
            self.writer.insert(tables::HOTLINE_KPI_LATEST, &latest),
        );
        for failure in a?.into_iter().chain(b?) {
            tracing::error!(message = %failure.message, "ClickHouse refused a hotline KPI row");
        }
        self.hotline_written = Some(self.hotline_written.map_or(newest, |w| w.max(newest)));
        let keep_from = newest - CACHE_DAYS;
        for cache in self.hotline.values_mut() {
            cache.trim(keep_from);
        }
        self.hotline.retain(|_, c| !c.is_empty());
        self.hotline_prints.retain(|(_, d), _| *d >= keep_from);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> (String, String) {
        ("F".to_owned(), p.to_owned())
    }

    #[test]
    fn a_changed_day_recomputes_the_as_of_days_whose_windows_contain_it() {
        let changed = BTreeMap::from([(key("01"), BTreeSet::from([100, 101, 500]))]);
        let plan = Materialiser::plan(&changed, &BTreeSet::new(), Some(900), 900, false);
        // [100, 465] ∪ [101, 466] ∪ [500, 865], merged.
        assert_eq!(plan[&key("01")], vec![(100, 466), (500, 865)]);
        // Never past the newest day.
        let plan = Materialiser::plan(&changed, &BTreeSet::new(), Some(450), 450, false);
        assert_eq!(plan[&key("01")], vec![(100, 450)]);
    }

    #[test]
    fn when_the_newest_day_moves_every_recent_unit_gets_the_new_days() {
        let recent = BTreeSet::from([key("01"), key("79")]);
        let changed = BTreeMap::from([(key("79"), BTreeSet::from([1000]))]);
        let plan = Materialiser::plan(&changed, &recent, Some(997), 1000, false);
        assert_eq!(
            plan[&key("01")],
            vec![(998, 1000)],
            "the quiet province too"
        );
        assert_eq!(plan[&key("79")], vec![(998, 1000)]);
        // Nothing moved and nothing changed: nothing to do.
        assert!(Materialiser::plan(&BTreeMap::new(), &recent, Some(1000), 1000, false).is_empty());
        // Nothing written yet: the last year for every recent unit.
        let plan = Materialiser::plan(&BTreeMap::new(), &recent, None, 1000, false);
        assert_eq!(plan[&key("01")], vec![(1000 - MAX_WINDOW_DAYS, 1000)]);
    }

    #[test]
    fn fingerprints_detect_other_writers_once_primed() {
        let print = |p: &str, d: u16, rows: u64, partitions: u64| PrintRow {
            framework: "F".into(),
            province_code: p.into(),
            d,
            rows,
            versions: rows * 10,
            partitions,
        };
        let mut known = HashMap::new();
        let own = BTreeMap::new();
        let (changed, recent, split) =
            Materialiser::detect(vec![print("01", 990, 1, 1)], &mut known, &own, false, 1000);
        assert!(
            changed.is_empty(),
            "the first read only learns the fingerprints"
        );
        assert_eq!(recent, BTreeSet::from([key("01")]));
        assert!(split.is_empty());
        let (changed, _, split) = Materialiser::detect(
            vec![print("01", 990, 2, 2), print("79", 995, 1, 1)],
            &mut known,
            &own,
            true,
            1000,
        );
        assert_eq!(changed[&key("01")], BTreeSet::from([990]));
        assert_eq!(
            changed[&key("79")],
            BTreeSet::from([995]),
            "a new day is a change"
        );
        assert_eq!(
            split,
            vec!["01".to_owned()],
            "01's day comes from two partitions"
        );
    }
}
