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
//! category).
//!
//! A window row's `version` says what it was computed from, not when ([`Clock`]): of two
//! instances that compute a row from views of the table taken at different moments (around
//! a takeover), the fresher view's row wins, in whatever order the two are written.
//!
//! Rooms: `plan` (pure: which as_of days a pass recomputes), `survey` and `hotline` (each
//! kind's reads, computation and rows); here, what each kind keeps from pass to pass
//! (`Held`: its cached day sums, the trust in them, the fingerprints seen, the rows last
//! written) with the steps every kind's pass takes on it. The two kinds run concurrently:
//! they share nothing but the ClickHouse client.
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;

use clickhouse::{RowOwned, RowWrite};
use serde::Deserialize;

use crate::contract::kind::{EventKind, PerKind};
use crate::domain::framework::FrameworkCatalog;
use crate::domain::time::format_day;
use crate::index::day_cache::{Carried, DayCache};
use crate::index::state::{ChangedDays, DayDelta};
use crate::index::values::Counts;
use crate::index::window::MAX_WINDOW_DAYS;
use crate::sink::writer::{Abandoned, RawEventWriter};

mod hotline;
mod plan;
mod survey;

use hotline::HotlineWindows;
pub use plan::Writes;
pub(crate) use plan::{detect, PrintRow, Trust};
use plan::{print_floor, Detected};
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
}

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct PassStats {
    /// Window rows written, per kind (`satisfaction_*`, `hotline_kpi_*`).
    pub window_rows: PerKind<usize>,
    /// Unit-days of sums read from ClickHouse.
    pub days_read: usize,
    /// Unit-day sums updated with the processor's own deltas instead.
    pub days_from_deltas: usize,
    /// (unit, as_of) pairs recomputed.
    pub as_of_days: usize,
    /// Per kind, the provinces whose day counts of the last year come from several
    /// partitions.
    pub split_provinces: PerKind<Vec<String>>,
}

impl PassStats {
    /// Adds what another part of the pass did.
    fn merge(&mut self, other: PassStats) {
        for kind in EventKind::ALL {
            self.window_rows[kind] += other.window_rows[kind];
        }
        self.days_read += other.days_read;
        self.days_from_deltas += other.days_from_deltas;
        self.as_of_days += other.as_of_days;
        let mut split = other.split_provinces;
        for kind in EventKind::ALL {
            self.split_provinces[kind].append(&mut split[kind]);
        }
    }
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

/// A window row as the newest-day filter and [`Held::finish`] see it.
trait WindowRow: Clone + RowOwned + RowWrite {
    /// Its `version` ([`Clock::version`]).
    fn version(&self) -> u64;
    /// Its tables: every `as_of`'s (`*_daily`) and the newest day's (`*_latest`).
    const TABLES: [&'static str; 2];
    /// What the log says of a row ClickHouse refused.
    const REFUSED: &'static str;
    /// What identifies the row in its table.
    fn key(&self) -> String;
    /// Its content without `version`, hashed (stable within a process).
    fn content(&self) -> u64;
}

/// Logs the window rows ClickHouse refused.
fn log_refused<R: WindowRow>(failures: Vec<crate::sink::writer::InsertFailure>) {
    for failure in failures {
        tracing::error!(message = %failure.message, "{}", R::REFUSED);
    }
}

impl WrittenRows {
    /// Drops from `rows` (of the newest day `day`) those whose content is what was last
    /// written under their key, and remembers the others' content.
    fn drop_unchanged<R: WindowRow>(&mut self, day: i64, rows: &mut Vec<R>) {
        if self.day != Some(day) {
            self.hashes.clear();
            self.day = Some(day);
        }
        // With its version: a row whose inputs moved is written again even when its
        // content did not change, since another instance may have written the key from an
        // older view in between, and only a higher version supersedes that.
        rows.retain(|row| {
            let (key, hash) = (row.key(), content_hash(&(row.content(), row.version())));
            self.hashes.insert(key, hash) != Some(hash)
        });
    }
}

/// What a window row was computed from, as a number that rises with every change of its
/// inputs: Σ over the days it covers and their source partitions of the top `version` of
/// its province's fact rows there (of the day-count table's rows of that framework and
/// province, or of every hotline category of the province). A partition's writer gives a
/// changed row the offset of its last change, beyond every row written on that partition
/// before, so each (day, partition) term rises with every change and never falls
/// (ClickHouse's merges keep the highest version); their sum rises whenever any input
/// changes. So a row computed from a fresher view of the table has the higher clock, and
/// two rows with one clock were computed from the same inputs, hence are equal. A view
/// fresher on one day and older on another may have either clock; the instance that later
/// sees the other day's change computes the row again, from inputs at least as fresh as
/// both.
///
/// Held per province-day, as a reader of the table sees it: from the same query as the
/// day's sums, or raised by this process's own deltas (which carry their rows' top). A
/// day of one partition keeps that partition and its top; of several, their sum only
/// ([`Clock::SEVERAL`]: a delta then cannot raise it, and the day is read again). Summed
/// over days like counts, so [`window_sums`] gives every window's clock beside its counts
/// (the sums wrap, exactly, modulo 2⁶⁴).
///
/// [`window_sums`]: crate::index::values::window_sums
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Clock {
    partition: u32,
    value: u64,
}

impl Counts for Clock {
    fn add(&mut self, other: &Self, sign: i64) {
        self.value = self
            .value
            .wrapping_add(other.value.wrapping_mul(sign as u64));
        self.partition = Self::SEVERAL;
    }
}

/// Bits of a row's `version` below its `as_of` day.
const CLOCK_BITS: u32 = 48;

impl Clock {
    /// The partition of a day whose rows come from several, or of a sum of days.
    const SEVERAL: u32 = u32::MAX;

    /// A day's clock from its partitions' tops (as read); `None`: no rows.
    fn of_day(tops: &[(u32, u64)]) -> Option<Self> {
        match tops {
            [] => None,
            [(partition, top)] => Some(Self {
                partition: *partition,
                value: *top,
            }),
            _ => Some(Self {
                partition: Self::SEVERAL,
                value: tops
                    .iter()
                    .fold(0u64, |sum, (_, top)| sum.wrapping_add(*top)),
            }),
        }
    }

    /// Raises the day's top of `partition` to `top`; false if the day's rows come from
    /// another partition too (its share of the sum is not known).
    fn raise(day: &mut Option<Self>, partition: u32, top: u64) -> bool {
        match day {
            None => {
                *day = Some(Self {
                    partition,
                    value: top,
                });
                true
            }
            Some(clock) if clock.partition == partition => {
                clock.value = clock.value.max(top);
                true
            }
            Some(_) => false,
        }
    }

    /// The row `version` of a window at `as_of` with this clock: the day in the high bits,
    /// so that a `*_latest` table (keyed without `as_of`) keeps the newest day's row, and
    /// the clock below. A clock beyond 48 bits (2.8·10¹⁴: Σ of tops over 366 days, each
    /// an offset) is cut to the largest; rows of one day with cut clocks then tie and the
    /// last written wins. An `as_of` after January 1970 puts the version above every
    /// snapshot time in microseconds (until the year 2100) that rows were versioned by
    /// before, so these supersede those.
    fn version(self, as_of: i64) -> u64 {
        let day = as_of.clamp(0, i64::from(u16::MAX)) as u64;
        (day << CLOCK_BITS) | self.value.min((1 << CLOCK_BITS) - 1)
    }
}

/// The clocks of `key`'s days held (of a [`Held`]'s `clocks`, borrowed apart from the rest).
fn clocks_of<'a, K: Eq + Hash>(
    clocks: &'a HashMap<K, BTreeMap<i64, Clock>>,
    key: &K,
) -> &'a BTreeMap<i64, Clock> {
    static NONE: BTreeMap<i64, Clock> = BTreeMap::new();
    clocks.get(key).unwrap_or(&NONE)
}

/// A value hashed (stable within a process).
fn content_hash<T: std::hash::Hash>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// What a kind's windows keep from pass to pass: the day sums by cache key `K` (a
/// framework's province, or a province) with whose deltas each cached day may take, the
/// fingerprints seen, the newest `as_of` written and the newest day's rows last written.
/// The kind's pass does its own reads and computation between [`Held::begin`] and
/// [`Held::finish`].
struct Held<K, C> {
    cache: HashMap<K, DayCache<C>>,
    /// Per day held, its [`Clock`].
    clocks: HashMap<K, BTreeMap<i64, Clock>>,
    /// Per cached day: whose deltas may be added to it (see [`Writes::trusted`]).
    trust: HashMap<K, BTreeMap<i64, Trust>>,
    prints: HashMap<(String, String, i64, u32), u64>,
    /// The newest `as_of` written, once known.
    written: Option<i64>,
    /// Fingerprints were read once; before that nothing counts as changed by others.
    primed: bool,
    rows_written: WrittenRows,
}

impl<K, C> Default for Held<K, C> {
    fn default() -> Self {
        Self {
            cache: HashMap::new(),
            clocks: HashMap::new(),
            trust: HashMap::new(),
            prints: HashMap::new(),
            written: None,
            primed: false,
            rows_written: WrittenRows::default(),
        }
    }
}

impl<K: Eq + Hash + Clone, C: Carried + Counts> Held<K, C> {
    /// A pass's start: a rebuild forgets what is held; otherwise the newest `as_of`
    /// written to `daily_table` is read, once.
    async fn begin(
        &mut self,
        writer: &RawEventWriter,
        everything: bool,
        daily_table: &str,
    ) -> Result<(), Abandoned> {
        if everything {
            self.cache.clear();
            self.clocks.clear();
            self.trust.clear();
            self.prints.clear();
        }
        if self.written.is_none() && !everything {
            self.written = newest_day(
                writer,
                format!(
                    "SELECT toUInt16(max(as_of)) AS d FROM {daily_table} WHERE unit_type = 'province'"
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// The newest day with data, read by `newest_sql`, and what changed: this process's own
    /// changed days `own` and the days whose fingerprint moved beyond what this process
    /// wrote (`writes`). The fingerprints are read by `prints_sql` (named `what` in the
    /// log, its day bound to the first day read) beside the newest day, from below the
    /// last newest day on: one round trip less per pass, and a newer day only makes the
    /// floor lower. `None`: no data.
    async fn detect(
        &mut self,
        writer: &RawEventWriter,
        [newest_sql, prints_sql]: [String; 2],
        what: &str,
        own: &BTreeMap<(String, String), Vec<i64>>,
        writes: &Writes,
        everything: bool,
    ) -> Result<Option<(i64, Detected)>, Abandoned> {
        let floor = match self.written {
            Some(previous) if !everything => print_floor(own, previous),
            _ => 0,
        };
        let floor_text = format_day(floor.max(0));
        let (newest, prints) = tokio::join!(
            newest_day(writer, newest_sql),
            writer.fetch_all::<PrintRow>(what, |c| c.query(&prints_sql).bind(&floor_text)),
        );
        let Some(newest) = newest? else {
            return Ok(None);
        };
        let found = detect(
            prints?,
            &mut self.prints,
            own,
            writes,
            self.primed || everything,
            newest,
        );
        Ok(Some((newest, found)))
    }

    /// This process's new rows (`deltas`: each one's cache key, unit, day and source
    /// partition), added to the days held; a day whose read does not allow it (read
    /// before a rebalance, or with rows beyond what this process wrote) is read again
    /// instead. A delta before the days held changes nothing held, unless the counts
    /// carry over ([`Carried::CARRIES`]): then it is part of the carried base, and its
    /// key is read again whole.
    fn add_own_deltas<'a>(
        &mut self,
        deltas: impl IntoIterator<Item = (K, &'a str, i64, u32, &'a DayDelta<C>)>,
        writes: &Writes,
    ) -> usize
    where
        C: 'a,
    {
        let mut added = 0;
        for (key, unit, day, partition, delta) in deltas {
            let Some(cache) = self.cache.get_mut(&key) else {
                continue; // nothing held: a read will include it
            };
            if C::CARRIES && cache.from().is_some_and(|from| day < from) {
                self.cache.remove(&key);
                self.clocks.remove(&key);
                self.trust.remove(&key);
                continue;
            }
            if !cache.holds(day) {
                continue; // before the days held (nothing carried), or to be read anyway
            }
            let trusted = self
                .trust
                .get(&key)
                .and_then(|t| t.get(&day))
                .is_some_and(|t| t.allows(writes, partition));
            let clocks = self.clocks.entry(key).or_default();
            let mut clock = clocks.get(&day).copied();
            if trusted && Clock::raise(&mut clock, partition, delta.top) {
                cache.add_to_day(unit, day, &delta.counts);
                clocks.extend(clock.map(|c| (day, c)));
                added += 1;
            } else {
                cache.mark_stale([day]);
            }
        }
        added
    }

    /// Takes the clocks of a read of `key`'s days `[from, to]` (a day absent from `read`
    /// has no rows).
    fn take_read_clocks(
        &mut self,
        key: &K,
        (from, to): (i64, i64),
        read: impl IntoIterator<Item = (i64, Clock)>,
    ) {
        let clocks = self.clocks.entry(key.clone()).or_default();
        clocks.retain(|day, _| *day < from || *day > to);
        clocks.extend(read);
    }

    /// A pass's end, once its rows are written ([`write_series`]): keeps `newest` as
    /// written and drops what is held of the days before the cache's.
    fn finish(&mut self, newest: i64) {
        self.written = Some(self.written.map_or(newest, |w| w.max(newest)));
        let keep_from = newest - CACHE_DAYS;
        for cache in self.cache.values_mut() {
            cache.trim(keep_from);
        }
        self.cache.retain(|_, c| !c.is_empty());
        for (key, clocks) in self.clocks.iter_mut() {
            match self.cache.get(key) {
                Some(_) => *clocks = clocks.split_off(&keep_from),
                None => clocks.clear(),
            }
        }
        self.clocks.retain(|_, c| !c.is_empty());
        for (key, trust) in self.trust.iter_mut() {
            match self.cache.get(key) {
                Some(_) => *trust = trust.split_off(&keep_from),
                None => trust.clear(),
            }
        }
        self.trust.retain(|_, t| !t.is_empty());
        self.prints.retain(|(_, _, d, _), _| *d >= keep_from);
        self.primed = true;
    }
}

/// One planned unit of a pass, as its kind computes its window rows.
trait Series: Sync {
    type Row: WindowRow + Send + Sync;
    /// Its first day with data and its planned `as_of` intervals; `None`: no data.
    fn span(&self) -> Option<(i64, &[(i64, i64)])>;
    /// Its window rows at its planned `as_of` days within `range`: with `at_newest`, those
    /// of the newest day only (always); otherwise every other day's with something to show.
    fn rows<'a>(
        &'a self,
        range: (i64, i64),
        newest_and_at_newest: (i64, bool),
    ) -> impl Iterator<Item = Self::Row> + Send + 'a;
}

/// The units' rows of the days of `month` before `newest`.
fn month_rows<S: Series>(
    series: &[S],
    month: (i64, i64),
    newest: i64,
) -> impl Iterator<Item = S::Row> + Send + '_ {
    series
        .iter()
        .flat_map(move |unit| unit.rows(month, (newest, false)))
}

/// A pass's window writing, as [`write_series`] returns it: (unit, as_of) pairs recomputed
/// and rows written.
type BoxedWrite<'a> = Pin<Box<dyn Future<Output = Result<(usize, usize), Abandoned>> + Send + 'a>>;

/// A pass's window rows of `series` computed and written. `months`: the calendar months of
/// the plan ([`plan::months`]); each month's rows of the days before `newest` go to
/// `*_daily` in one INSERT that sends them as they are computed
/// ([`RawEventWriter::insert_streamed`]): a pass over a year of changed days (a catch-up, a
/// back-fill) would otherwise hold them (a month is about 19,000 survey rows at 34
/// provinces × 3 frameworks), and an INSERT per month makes no more parts than one per pass,
/// as `*_daily` is partitioned by month. The newest day's rows unchanged since they were
/// last written (`rows_written`: its kind's [`Held`]'s, whose day sums `series` borrows) are
/// dropped; the others go to `*_latest` and, with their month's, to `*_daily`.
///
/// Boxed: in the processor's future, rustc cannot prove the unboxed one `Send` for every
/// lifetime of the kinds' borrowed series ("implementation of `Series` is not general
/// enough"); boxed, it is proven here, once per kind.
fn write_series<'a, S: Series>(
    writer: &'a RawEventWriter,
    rows_written: &'a mut WrittenRows,
    series: &'a [S],
    months: &'a [(i64, i64)],
    newest: i64,
) -> BoxedWrite<'a> {
    Box::pin(async move {
        let recomputed = series
            .iter()
            .filter_map(S::span)
            .map(|(first, intervals)| plan::as_of_days(intervals, first, i64::MIN, i64::MAX))
            .sum();
        let mut latest: Vec<S::Row> = series
            .iter()
            .flat_map(|unit| unit.rows((newest, newest), (newest, true)))
            .collect();
        rows_written.drop_unchanged(newest, &mut latest);
        let [daily_table, latest_table] = S::Row::TABLES;
        let newest_month = months
            .iter()
            .copied()
            .find(|(first, last)| (*first..=*last).contains(&newest));
        let mut written = 0;
        for &month in months.iter().filter(|m| Some(**m) != newest_month) {
            let (rows, refused) = writer
                .insert_streamed(daily_table, || month_rows(series, month, newest))
                .await?;
            log_refused::<S::Row>(refused);
            written += rows;
        }
        // The newest day last, in one INSERT per table (with its month's rows in `*_daily`):
        // a restarted materialiser takes the newest day in `*_daily` as written for every
        // unit.
        let daily = writer.insert_streamed(daily_table, || {
            // Not `flat_map` over the month: rustc then finds the opaque row iterators of
            // two lifetimes ("one type is more general than the other").
            let month = newest_month.map(|month| month_rows(series, month, newest));
            month.into_iter().flatten().chain(latest.iter().cloned())
        });
        let (daily, refused) = tokio::join!(daily, writer.insert(latest_table, &latest));
        let (rows, daily_refused) = daily?;
        log_refused::<S::Row>(daily_refused);
        log_refused::<S::Row>(refused?);
        Ok((recomputed, written + rows + latest.len()))
    })
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
    /// `writes` says per kind) and other writers' changes require. With `everything`,
    /// every unit at every day with data (a rebuild).
    pub async fn pass(
        &mut self,
        changed: &ChangedDays,
        writes: &PerKind<Writes>,
        everything: bool,
    ) -> Result<PassStats, Abandoned> {
        let (mut survey, mut hotline) = (PassStats::default(), PassStats::default());
        // A rebuild recomputes every day with data, its own writes included.
        let none = PerKind::default();
        let writes = if everything { &none } else { writes };
        let input = PassInput {
            own: changed,
            everything,
        };
        // Each kind's windows are their own computation; they share only the client.
        let (a, b) = tokio::join!(
            self.surveys.pass(
                &self.writer,
                &input,
                &writes[EventKind::Survey],
                &mut survey
            ),
            self.hotline.pass(
                &self.writer,
                &input,
                &writes[EventKind::Hotline],
                &mut hotline
            ),
        );
        a?;
        b?;
        survey.merge(hotline);
        Ok(survey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window row reduced to its key and content.
    #[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Serialize, Deserialize)]
    struct Row {
        key: String,
        value: u32,
        version: u64,
    }

    impl WindowRow for Row {
        const TABLES: [&'static str; 2] = ["daily", "latest"];
        const REFUSED: &'static str = "refused";

        fn key(&self) -> String {
            self.key.clone()
        }

        fn content(&self) -> u64 {
            content_hash(&self.value)
        }

        fn version(&self) -> u64 {
            self.version
        }
    }

    fn rows(pairs: &[(&str, u32)]) -> Vec<Row> {
        pairs
            .iter()
            .map(|(key, value)| Row {
                key: (*key).to_owned(),
                value: *value,
                version: 1,
            })
            .collect()
    }

    #[test]
    fn the_newest_days_rows_are_written_again_only_when_they_changed() {
        let mut written = WrittenRows::default();
        let mut first = rows(&[("a", 1), ("b", 2)]);
        written.drop_unchanged(100, &mut first);
        assert_eq!(first, rows(&[("a", 1), ("b", 2)]), "nothing written yet");
        let mut second = rows(&[("a", 1), ("b", 3), ("c", 4)]);
        written.drop_unchanged(100, &mut second);
        assert_eq!(second, rows(&[("b", 3), ("c", 4)]));
        let mut next_day = rows(&[("a", 1)]);
        written.drop_unchanged(101, &mut next_day);
        assert_eq!(next_day, rows(&[("a", 1)]), "a new day forgets the old one");
        // Another instance may have written "a" from an older view meanwhile: the same
        // content from newer inputs is written again, to supersede it.
        let mut newer = rows(&[("a", 1)]);
        newer[0].version = 2;
        written.drop_unchanged(101, &mut newer);
        assert_eq!(newer.len(), 1);
    }

    #[test]
    fn a_clock_rises_with_every_change_of_an_input_and_the_day_comes_first() {
        let day = |tops: &[(u32, u64)]| Clock::of_day(tops).unwrap();
        let before = day(&[(0, 100), (1, 7)]);
        // A change on either partition lies beyond all of that partition's rows.
        assert!(day(&[(0, 101), (1, 7)]).version(20_000) > before.version(20_000));
        assert!(day(&[(0, 100), (1, 8)]).version(20_000) > before.version(20_000));
        // Summed over the days a window covers, as counts are, and taken off again.
        let mut window = before;
        window.add(&day(&[(0, 50)]), 1);
        assert_eq!(window.value, 157);
        window.add(&day(&[(0, 50)]), -1);
        assert_eq!(window.value, before.value);
        // A delta raises a day of its own partition, not a day of several.
        let mut one = Some(day(&[(3, 10)]));
        assert!(Clock::raise(&mut one, 3, 12));
        assert_eq!(one, Some(day(&[(3, 12)])));
        assert!(
            !Clock::raise(&mut one, 4, 13),
            "partition 3's share unknown then"
        );
        let mut none = None;
        assert!(Clock::raise(&mut none, 4, 13));
        assert_eq!(none, Some(day(&[(4, 13)])));
        // A newer day wins in `*_latest`, whatever the clocks.
        assert!(day(&[(0, 0)]).version(20_001) > day(&[(0, 1 << 40)]).version(20_000));
        // Above the snapshot-time versions of earlier rows (microseconds, until 2100) from
        // the 31st day on.
        assert!(day(&[(0, 0)]).version(31) > 4_102_444_800_000_000);
        // A clock beyond its bits is cut, not carried into the day.
        assert_eq!(day(&[(0, u64::MAX)]).version(5) >> CLOCK_BITS, 5);
    }

    /// A count per unit-day, carried over from earlier days or not.
    #[derive(Debug, Clone, Default, PartialEq)]
    struct N<const CARRIES: bool>(i64);

    impl<const CARRIES: bool> Carried for N<CARRIES> {
        const CARRIES: bool = CARRIES;

        fn carried(&self) -> i64 {
            if CARRIES {
                self.0
            } else {
                0
            }
        }
    }

    impl<const CARRIES: bool> Counts for N<CARRIES> {
        fn add(&mut self, other: &Self, sign: i64) {
            self.0 += sign * other.0;
        }
    }

    /// Province "p" holds days 10..=20 (unit "u": 1 on day 12), read when partition 0 was
    /// written through offset 100; partition 1 is not this process's.
    fn holding<const CARRIES: bool>() -> (Held<String, N<CARRIES>>, Writes) {
        let writes = Writes {
            generation: 3,
            through: BTreeMap::from([(0, 100)]),
            since: BTreeMap::new(),
        };
        let mut held = Held::default();
        let cache: &mut DayCache<N<CARRIES>> = held.cache.entry("p".to_owned()).or_default();
        cache.apply_read(
            10,
            20,
            BTreeMap::from([("u".to_owned(), vec![(12, N(1))])]),
            &BTreeMap::new(),
        );
        let trust = (10..=20).map(|day| (day, writes.trusted(&[(0, 90)])));
        held.trust.insert("p".to_owned(), trust.collect());
        (held, writes)
    }

    /// An own delta of `n` whose rows' top is 95.
    fn delta<const CARRIES: bool>(n: i64) -> DayDelta<N<CARRIES>> {
        DayDelta {
            counts: N(n),
            top: 95,
        }
    }

    fn day<const CARRIES: bool>(held: &Held<String, N<CARRIES>>, day: i64) -> Option<i64> {
        let units = held.cache.get("p")?.units();
        units.get("u")?.days.get(&day).map(|n| n.0)
    }

    #[test]
    fn own_deltas_are_added_to_trusted_held_days_and_others_are_read_again() {
        let (mut held, writes) = holding::<false>();
        let delta = |n| DayDelta {
            counts: N(n),
            top: 95,
        };
        let (five, two, seven) = (delta(5), delta(2), delta(7));
        let deltas = [
            ("p".to_owned(), "u", 12, 0, &five),
            ("p".to_owned(), "u", 14, 1, &two),
            ("q".to_owned(), "u", 12, 0, &seven),
        ];
        assert_eq!(held.add_own_deltas(deltas, &writes), 1);
        assert_eq!(day(&held, 12), Some(6));
        assert_eq!(
            clocks_of(&held.clocks, &"p".to_owned()).get(&12),
            Clock::of_day(&[(0, 95)]).as_ref(),
            "the day's top raised with the delta"
        );
        let cache = &held.cache["p"];
        assert!(!cache.holds(14), "another partition's delta: read again");
        assert!(cache.holds(13));
        assert!(
            !held.cache.contains_key("q"),
            "nothing held: a read includes it"
        );

        // After a rebalance the reads are not trusted any more.
        let later = Writes {
            generation: 4,
            ..writes
        };
        assert_eq!(
            held.add_own_deltas([("p".to_owned(), "u", 13, 0, &five)], &later),
            0
        );
        assert!(!held.cache["p"].holds(13));
        assert_eq!(day(&held, 12), Some(6));
    }

    #[test]
    fn a_delta_before_the_days_held_drops_the_key_only_when_counts_carry_over() {
        let (mut held, writes) = holding::<false>();
        assert_eq!(
            held.add_own_deltas([("p".to_owned(), "u", 9, 0, &delta(5))], &writes),
            0
        );
        assert_eq!(day(&held, 12), Some(1), "nothing held changes");
        assert!(held.trust.contains_key("p"));

        let (mut held, writes) = holding::<true>();
        assert_eq!(
            held.add_own_deltas([("p".to_owned(), "u", 9, 0, &delta(5))], &writes),
            0
        );
        assert!(
            !held.cache.contains_key("p") && !held.trust.contains_key("p"),
            "the carried base changed: the province is read again whole"
        );
    }
}
