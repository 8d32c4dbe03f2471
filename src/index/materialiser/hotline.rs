//! Hotline KPI windows of provinces and of their categories (`hotline_kpi_daily`,
//! `hotline_kpi_latest`) from the day counts summed over every partition.
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::contract::kind::EventKind;
use crate::domain::time::format_day;
use crate::index::day_cache::Carried;
use crate::index::rows::HotlineKpiRow;
use crate::index::ticket::{narrow_sum, summed_response_bins, HotlineDayCounts};
use crate::index::values::{hotline_value, window_sums, UnitKey, UnitType};
use crate::index::window::{Window, MAX_WINDOW_DAYS, WINDOWS};
use crate::sink::writer::{Abandoned, RawEventWriter};
use crate::tables;

use super::plan::{clip, months, plan, Writes};
use super::{
    clocks_of, content_hash, write_series, Clock, Held, PassInput, PassStats, Series, WindowRow,
};

#[derive(Debug, clickhouse::Row, Deserialize)]
struct HotlineSumRow {
    province_code: String,
    category: String,
    d: u16,
    p: u32,
    top: u64,
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

impl Carried for HotlineDayCounts {
    const CARRIES: bool = true;

    fn carried(&self) -> i64 {
        i64::from(self.past_due_delta)
    }
}

#[derive(Default)]
pub struct HotlineWindows {
    /// Day sums per category, by province.
    held: Held<String, HotlineDayCounts>,
}

impl HotlineWindows {
    pub async fn pass(
        &mut self,
        writer: &RawEventWriter,
        pass: &PassInput<'_>,
        writes: &Writes,
        stats: &mut PassStats,
    ) -> Result<(), Abandoned> {
        let PassInput { own, everything } = *pass;
        let held = &mut self.held;
        held.begin(writer, everything, tables::HOTLINE_KPI_DAILY)
            .await?;
        // Keyed like the survey side, with an empty framework.
        let own_days: BTreeMap<(String, String), Vec<i64>> = own
            .hotline
            .iter()
            .map(|(p, d)| ((String::new(), p.clone()), d.clone()))
            .collect();
        let reads = [
            format!(
                // Days with events; a deadline's past-due toggle can lie ahead of them.
                "SELECT toUInt16(max(day)) AS d FROM {} WHERE received != 0 OR responded != 0 OR rated != 0 OR reopened != 0 OR rejected != 0",
                tables::HOTLINE_DAY_COUNTS
            ),
            format!(
                "SELECT '' AS framework, province_code, toUInt16(day) AS d, source_partition AS p, maxMerge(top) AS top FROM {} WHERE day >= toDate(?) GROUP BY province_code, d, p",
                tables::HOTLINE_DAY_PRINTS
            ),
        ];
        let Some((newest, found)) = held
            .detect(
                writer,
                reads,
                "hotline fingerprints",
                &own_days,
                writes,
                everything,
            )
            .await?
        else {
            return Ok(());
        };
        stats.split_provinces[EventKind::Hotline] = found.split;
        for ((_, province), days) in &found.foreign {
            if let Some(cache) = held.cache.get_mut(province) {
                cache.mark_stale(days.iter().copied());
            }
        }
        let deltas =
            own.deltas
                .hotline
                .iter()
                .map(|((province, category, day, partition), delta)| {
                    (province.clone(), category.as_str(), *day, *partition, delta)
                });
        stats.days_from_deltas += held.add_own_deltas(deltas, writes);
        let plan = plan(
            &found.changed,
            &found.recent,
            held.written,
            newest,
            everything,
        );
        // The span to read per province (all its categories at once).
        let mut spans: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for ((_, province), intervals) in &plan {
            let cache = held.cache.get(province);
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
                "SELECT province_code, category, toUInt16(day) AS d, source_partition AS p, max(version) AS top, sum(received) AS received, sum(responded) AS responded, \
                 sum(responded_on_time) AS responded_on_time, sum(rated) AS rated, sum(rated_satisfied) AS rated_satisfied, \
                 sum(reopened) AS reopened, sum(rejected) AS rejected, sum(past_due_delta) AS past_due_delta, \
                 tupleElement(sumMap(response_bins, response_counts), 1) AS bins, \
                 arrayMap(x -> toInt64(x), tupleElement(sumMap(response_bins, response_counts), 2)) AS bin_counts \
                 FROM {} FINAL WHERE has(?, province_code) AND day >= toDate(?) AND day <= toDate(?) \
                 GROUP BY province_code, category, d, p",
                tables::HOTLINE_DAY_COUNTS
            );
            let (from_text, to_text) = (format_day(from), format_day(to));
            let rows: Vec<HotlineSumRow> = writer
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
            let bases: Vec<PastDueBaseRow> = writer
                .fetch_all("hotline past-due base", |c| {
                    c.query(&base_sql).bind(&provinces).bind(&from_text)
                })
                .await?;
            type Read = BTreeMap<String, BTreeMap<i64, HotlineDayCounts>>;
            let mut read: BTreeMap<String, Read> = BTreeMap::new();
            // Per province-day, each partition's top (over categories): the trust in the
            // day, and its clock.
            let mut tops: BTreeMap<(String, i64), Vec<(u32, u64)>> = BTreeMap::new();
            for row in rows {
                let counts = HotlineDayCounts {
                    received: narrow_sum(row.received),
                    responded: narrow_sum(row.responded),
                    responded_on_time: narrow_sum(row.responded_on_time),
                    rated: narrow_sum(row.rated),
                    rated_satisfied: narrow_sum(row.rated_satisfied),
                    reopened: narrow_sum(row.reopened),
                    rejected: narrow_sum(row.rejected),
                    past_due_delta: narrow_sum(row.past_due_delta),
                    response_bins: summed_response_bins(&row.bins, &row.bin_counts),
                };
                let day = i64::from(row.d);
                let day_tops = tops.entry((row.province_code.clone(), day)).or_default();
                match day_tops.iter_mut().find(|(p, _)| *p == row.p) {
                    Some((_, top)) => *top = (*top).max(row.top),
                    None => day_tops.push((row.p, row.top)),
                }
                read.entry(row.province_code)
                    .or_default()
                    .entry(row.category)
                    .or_default()
                    .entry(day)
                    .or_default()
                    .add(&counts, 1);
            }
            let mut carried: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            for b in bases {
                carried
                    .entry(b.province_code)
                    .or_default()
                    .insert(b.category, b.base);
            }
            for province in provinces {
                let trust = held.trust.entry(province.clone()).or_default();
                for day in from..=to {
                    let day_tops = tops
                        .get(&(province.clone(), day))
                        .map_or(&[][..], Vec::as_slice);
                    trust.insert(day, writes.trusted(day_tops));
                }
                let days = read
                    .remove(&province)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(category, days)| (category, days.into_iter().collect()))
                    .collect();
                let carried = carried.remove(&province).unwrap_or_default();
                let span = (province.clone(), from)..=(province.clone(), to);
                let clocks = tops
                    .range(span)
                    .filter_map(|((_, day), day_tops)| Some((*day, Clock::of_day(day_tops)?)));
                held.take_read_clocks(&province, (from, to), clocks.collect::<Vec<_>>());
                held.cache
                    .entry(province)
                    .or_default()
                    .apply_read(from, to, days, &carried);
            }
        }
        // Computed as they are written, month by month (`write_series`): the
        // province (all categories) and each category.
        // Each planned province's sum over its categories and the base carried into it,
        // summed once for every month.
        let totals: Vec<(BTreeMap<i64, HotlineDayCounts>, i64)> = plan
            .keys()
            .map(|(_, province)| {
                let (mut total, mut base) = (BTreeMap::<i64, HotlineDayCounts>::new(), 0);
                let categories = held.cache.get(province).map(|c| c.units());
                for cache in categories.into_iter().flat_map(|c| c.values()) {
                    for (day, counts) in &cache.days {
                        total.entry(*day).or_default().add(counts, 1);
                    }
                    base += cache.carried;
                }
                (total, base)
            })
            .collect();
        // Every unit: its key, day counts, carried base, clocks (its province's: a category's
        // row moves with any of the province's, and so is written again at the newest day
        // when another category changed) and planned intervals.
        let mut series: Vec<UnitSeries<'_>> = Vec::new();
        for (((_, province), intervals), (total, total_base)) in plan.iter().zip(&totals) {
            let clocks = clocks_of(&held.clocks, province);
            let categories = held.cache.get(province).map(|c| c.units());
            for (category, cache) in categories.into_iter().flatten() {
                if !category.is_empty() {
                    series.push(UnitSeries {
                        unit: UnitKey {
                            unit_type: UnitType::Category,
                            unit_id: format!("{province}/{category}"),
                            province_code: province.clone(),
                        },
                        days: &cache.days,
                        base: cache.carried,
                        clocks,
                        intervals,
                    });
                }
            }
            series.push(UnitSeries {
                unit: UnitKey {
                    unit_type: UnitType::Province,
                    unit_id: province.clone(),
                    province_code: province.clone(),
                },
                days: total,
                base: *total_base,
                clocks,
                intervals,
            });
        }
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
        stats.window_rows[EventKind::Hotline] += written;
        Ok(())
    }
}

impl Series for UnitSeries<'_> {
    type Row = HotlineKpiRow;

    fn span(&self) -> Option<(i64, &[(i64, i64)])> {
        Some((*self.days.keys().next()?, self.intervals))
    }

    fn rows<'a>(
        &'a self,
        (from, to): (i64, i64),
        (newest, at_newest): (i64, bool),
    ) -> impl Iterator<Item = HotlineKpiRow> + Send + 'a {
        // Days other than the newest are written where some window has counts or tickets are open past due.
        let Self {
            unit,
            days,
            base,
            clocks,
            intervals,
        } = self;
        let first = days.keys().next().copied();
        first
            .into_iter()
            .flat_map(move |first| clip(intervals, from, to).map(move |(a, b)| (a.max(first), b)))
            .filter(|(a, b)| a <= b)
            .flat_map(move |(a, b)| {
                // Open past due as of a day = every delta up to it.
                let mut open = base
                    + days
                        .range(..a)
                        .map(|(_, c)| i64::from(c.past_due_delta))
                        .sum::<i64>();
                window_sums(days, a, b, &WINDOWS)
                    .into_iter()
                    .zip(window_sums(clocks, a, b, &[CLOCK_SPAN]))
                    .filter_map(move |((as_of, sums), (_, clock))| {
                        if let Some(c) = days.get(&as_of) {
                            open += i64::from(c.past_due_delta);
                        }
                        let keep = if at_newest {
                            as_of == newest
                        } else {
                            as_of != newest && !(open == 0 && sums.iter().all(|s| s.is_zero()))
                        };
                        keep.then_some((as_of, sums, open, clock[0].version(as_of)))
                    })
            })
            .flat_map(move |(as_of, sums, open, version)| {
                WINDOWS.iter().zip(sums).map(move |(window, counts)| {
                    HotlineKpiRow::new(&hotline_value(unit, *window, as_of, &counts, open, version))
                })
            })
    }
}

/// The days a hotline row's clock covers, for every window: its open past-due count
/// depends on days before the window's own. A change of a day further back moves that
/// count but not the clock (then rows of one clock can differ and the later write wins);
/// a pass recomputes a changed day's `as_of` days up to 366 days later only, in any case.
const CLOCK_SPAN: Window = Window::Rolling(MAX_WINDOW_DAYS as u16);

/// A unit's key, its day counts, the open past-due count carried into them, its day clocks
/// and its planned `as_of` intervals.
struct UnitSeries<'a> {
    unit: UnitKey,
    days: &'a BTreeMap<i64, HotlineDayCounts>,
    base: i64,
    clocks: &'a BTreeMap<i64, Clock>,
    intervals: &'a [(i64, i64)],
}

impl WindowRow for HotlineKpiRow {
    const TABLES: [&'static str; 2] = [tables::HOTLINE_KPI_DAILY, tables::HOTLINE_KPI_LATEST];
    const REFUSED: &'static str = "ClickHouse refused a hotline KPI row";

    fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.unit_type, self.unit_id, self.window, self.as_of
        )
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn content(&self) -> u64 {
        content_hash(&(
            self.received,
            self.responded,
            self.responded_on_time,
            self.median_response_hours.map(f64::to_bits),
            self.rated,
            self.satisfaction_rate.map(f64::to_bits),
            self.reopened,
            self.rejected,
            self.open_past_due,
        ))
    }
}
