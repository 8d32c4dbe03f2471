//! Window values of provinces (satisfaction and hotline) and of hotline categories,
//! computed from the day counts **summed over every source partition** and written to
//! `satisfaction_daily` / `hotline_kpi_daily` for every `as_of` day, and to the `*_latest`
//! tables at the newest day with data anywhere (the same day for every unit).
//!
//! A pass runs after the processor's fact rows were acknowledged. It recomputes:
//! - for every day whose counts changed (the processor's own rows, or another writer's,
//!   seen as a risen fingerprint: the top `version` per source partition of that
//!   province-day), the window values of the days that contain it: as_of ∈ [day, day + 365];
//! - when the newest day moves, every unit at the new days.
//!
//! Day sums are read from ClickHouse once and cached. The processor's own rows then change
//! them by the deltas it folded (`ChangedDays::deltas`), without a read, on days whose read
//! showed nothing of a held partition beyond what this process had written, and only until
//! the next rebalance ([`Writes`]). Why that is exact: a partition's rows are written by
//! one log position at a time; once this process has written through offset `t`, every key
//! of that partition with a row at version ≤ `t` holds what this process last wrote for it
//! (or the same content, or is superseded by it), so a sum read then plus the
//! differences of the later rows is the sum of the table. Other writers' rows, and rows
//! beyond `t`, move the fingerprint and the day is read again. So do a predecessor's rows
//! below the offset where this process took the partition over: written before the
//! checkpoint it restored, perhaps after this process last read the day (when it did not
//! hold the partition), they are not this process's writes whatever `t` is.
//!
//! So the cost of a late event is bounded: its province's day sums are read (once, then
//! cached), and at most 366 `as_of` days × 6 windows are rewritten for its province (and
//! category). Rows carry the snapshot time as `version`: the latest snapshot wins.
//!
//! Rooms: `plan` (pure: which as_of days a pass recomputes), `survey` and `hotline` (each
//! kind's reads, cache and writes). The two kinds run concurrently: they share nothing
//! but the ClickHouse client.
use std::collections::HashMap;

use serde::Deserialize;

use crate::domain::framework::FrameworkCatalog;
use crate::index::state::ChangedDays;
use crate::index::window::MAX_WINDOW_DAYS;
use crate::sink::writer::{Abandoned, RawEventWriter};

mod hotline;
mod plan;
mod survey;

use hotline::HotlineWindows;
pub use plan::Writes;
#[cfg(test)]
pub(crate) use plan::{detect, PrintRow, Trust};
use survey::SurveyWindows;

/// Days kept in the cache behind the newest day (and covered by the fingerprints).
const CACHE_DAYS: i64 = MAX_WINDOW_DAYS + 30;

/// What a pass of either kind is given besides its kind's [`Writes`].
#[derive(Clone, Copy)]
struct PassInput<'a> {
    /// The processor's own changed days and their deltas.
    own: &'a ChangedDays,
    /// A rebuild: every unit at every day with data.
    everything: bool,
    /// The rows' `version` (the snapshot time).
    version: u64,
}

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct PassStats {
    pub satisfaction_rows: usize,
    pub hotline_rows: usize,
    /// Unit-days of sums read from ClickHouse.
    pub days_read: usize,
    /// Unit-day sums updated with the processor's own deltas instead.
    pub days_from_deltas: usize,
    /// (unit, as_of) pairs recomputed.
    pub as_of_days: usize,
    /// Provinces whose day counts of the last year come from several partitions.
    pub split_survey_provinces: Vec<String>,
    pub split_hotline_provinces: Vec<String>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct DayRow {
    d: u16,
}

/// A day (`toUInt16(…) AS d`) read by `sql`, if there is one.
async fn newest_day(writer: &RawEventWriter, sql: String) -> Result<Option<i64>, Abandoned> {
    let rows: Vec<DayRow> = writer.fetch_all("newest day", |c| c.query(&sql)).await?;
    Ok(rows.first().map(|r| i64::from(r.d)).filter(|d| *d > 0))
}

/// Content hashes (without `version`) of the rows last written for the newest day, by row
/// key: a recomputed row that did not change is not written again (between flushes most
/// of a changed province's categories and windows stay the same).
#[derive(Default)]
struct WrittenRows {
    day: Option<i64>,
    hashes: HashMap<String, u64>,
}

/// A window row as the newest-day filter sees it.
trait WindowRow {
    /// The day the row is for (ClickHouse `Date`).
    fn as_of(&self) -> u16;
    /// What identifies the row in its table.
    fn key(&self) -> String;
    /// Its content without `version`, hashed (stable within a process).
    fn content(&self) -> u64;
}

impl WrittenRows {
    /// Drops from `daily` and `latest` the rows of the newest day `day` whose content is
    /// what was last written under their key, and remembers the others' content.
    fn drop_unchanged<R: WindowRow>(&mut self, day: i64, daily: &mut Vec<R>, latest: &mut Vec<R>) {
        if self.day != Some(day) {
            self.hashes.clear();
            self.day = Some(day);
        }
        let today = crate::domain::time::clickhouse_date(day);
        let mut unchanged = std::collections::HashSet::new();
        for row in daily.iter().filter(|r| r.as_of() == today) {
            let (key, hash) = (row.key(), row.content());
            if self.hashes.insert(key.clone(), hash) == Some(hash) {
                unchanged.insert(key);
            }
        }
        if unchanged.is_empty() {
            return;
        }
        let changed = |row: &R| row.as_of() != today || !unchanged.contains(&row.key());
        daily.retain(changed);
        latest.retain(changed);
    }
}

/// A value hashed (stable within a process).
fn content_hash<T: std::hash::Hash>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

pub struct Materialiser {
    writer: RawEventWriter,
    surveys: SurveyWindows,
    hotline: HotlineWindows,
}

impl Materialiser {
    pub fn new(writer: RawEventWriter, frameworks: FrameworkCatalog) -> Self {
        Self {
            writer,
            surveys: SurveyWindows::new(frameworks),
            hotline: HotlineWindows::default(),
        }
    }

    /// Recomputes what `changed` (the caller's own fact rows, acknowledged, written as
    /// `survey_writes` and `hotline_writes` say) and other writers' changes require. With
    /// `everything`, every unit at every day with data (a rebuild).
    pub async fn pass(
        &mut self,
        changed: &ChangedDays,
        survey_writes: &Writes,
        hotline_writes: &Writes,
        everything: bool,
    ) -> Result<PassStats, Abandoned> {
        let version = crate::domain::time::unix_now_micros();
        let (mut survey, mut hotline) = (PassStats::default(), PassStats::default());
        // A rebuild recomputes every day with data, its own writes included.
        let none = Writes::default();
        let (survey_writes, hotline_writes) = if everything {
            (&none, &none)
        } else {
            (survey_writes, hotline_writes)
        };
        let input = PassInput {
            own: changed,
            everything,
            version,
        };
        let (a, b) = tokio::join!(
            self.surveys
                .pass(&self.writer, &input, survey_writes, &mut survey),
            self.hotline
                .pass(&self.writer, &input, hotline_writes, &mut hotline),
        );
        a?;
        b?;
        Ok(PassStats {
            satisfaction_rows: survey.satisfaction_rows,
            hotline_rows: hotline.hotline_rows,
            days_read: survey.days_read + hotline.days_read,
            days_from_deltas: survey.days_from_deltas + hotline.days_from_deltas,
            as_of_days: survey.as_of_days + hotline.as_of_days,
            split_survey_provinces: survey.split_survey_provinces,
            split_hotline_provinces: hotline.split_hotline_provinces,
        })
    }
}
