//! Which `as_of` days a pass recomputes: the days that changed (the processor's own rows,
//! and other writers' rows seen as a moved fingerprint), and the new days when the newest
//! day moves. Pure.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

use crate::index::values::merge_intervals;
use crate::index::window::{Window, MAX_WINDOW_DAYS};

use super::CACHE_DAYS;

/// A unit-day's fingerprint per source partition: the highest `version` of its rows. A
/// partition's writer gives every changed row the offset of its last change, so the top
/// rises with every change and, unlike a row count, is not moved by ClickHouse's merges.
#[derive(Debug, clickhouse::Row, Deserialize)]
pub struct PrintRow {
    pub framework: String,
    pub province_code: String,
    pub d: u16,
    pub p: u32,
    pub top: u64,
}

/// The partitions this process writes fact rows for, and how far their rows are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writes {
    /// Changes at every assignment and revocation: a day read before it is not trusted.
    pub generation: u64,
    /// Partition → the offset through which its rows are written (acknowledged).
    pub through: BTreeMap<u32, i64>,
    /// Partition → the offset from which this process folds it (where its state was
    /// taken over; 0 when absent). Rows below it are a predecessor's: written before the
    /// checkpoint this process restored, perhaps after this process last read the day.
    pub since: BTreeMap<u32, i64>,
}

impl Writes {
    /// A row of `partition` with version `top` is one this process wrote (or the same
    /// row another writer of the same log wrote, or one this process superseded): at or
    /// after where it took the partition over, and through what it has written.
    pub fn covers(&self, partition: u32, top: u64) -> bool {
        let since = self.since.get(&partition).copied().unwrap_or(0).max(0);
        self.through
            .get(&partition)
            .is_some_and(|through| *through >= 0 && top <= *through as u64 && top >= since as u64)
    }

    /// The partitions whose deltas a read may take: held, and with nothing on the day
    /// beyond what this process has written (`tops`: the read's top per partition).
    pub fn trusted(&self, tops: &[(u32, u64)]) -> Trust {
        let mut mask = 0u64;
        for partition in self.through.keys().filter(|p| **p < 64) {
            let written = tops
                .iter()
                .filter(|(p, _)| p == partition)
                .all(|(p, top)| self.covers(*p, *top));
            if written {
                mask |= 1 << partition;
            }
        }
        Trust {
            generation: self.generation,
            mask,
        }
    }
}

/// For a day read: which held partitions' deltas may be added to its sums afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    generation: u64,
    mask: u64,
}

impl Trust {
    pub fn allows(&self, writes: &Writes, partition: u32) -> bool {
        self.generation == writes.generation && partition < 64 && self.mask & (1 << partition) != 0
    }
}

/// What a fingerprint read found: the days to recompute per unit (own and others'), the
/// days others changed (to read again), the units with data near the newest day, and the
/// provinces whose recent days come from several partitions.
pub struct Detected {
    pub changed: BTreeMap<(String, String), BTreeSet<i64>>,
    pub foreign: BTreeMap<(String, String), BTreeSet<i64>>,
    pub recent: BTreeSet<(String, String)>,
    pub split: Vec<String>,
}

/// Days changed per key: ours, and those whose fingerprint moved since the last pass
/// beyond what this process wrote.
pub fn detect(
    prints: Vec<PrintRow>,
    known: &mut HashMap<(String, String, i64, u32), u64>,
    own: &BTreeMap<(String, String), Vec<i64>>,
    writes: &Writes,
    others_count: bool,
    newest: i64,
) -> Detected {
    let mut changed: BTreeMap<(String, String), BTreeSet<i64>> = own
        .iter()
        .map(|(k, days)| (k.clone(), days.iter().copied().collect()))
        .collect();
    let mut foreign: BTreeMap<(String, String), BTreeSet<i64>> = BTreeMap::new();
    let mut recent = BTreeSet::new();
    let mut sources: HashMap<(String, i64), u32> = HashMap::new();
    let mut split = BTreeSet::new();
    for print in prints {
        let day = i64::from(print.d);
        if day > newest - MAX_WINDOW_DAYS {
            let first = *sources
                .entry((print.province_code.clone(), day))
                .or_insert(print.p);
            if first != print.p {
                split.insert(print.province_code.clone());
            }
        }
        let key = (print.framework, print.province_code);
        let previous = known.insert((key.0.clone(), key.1.clone(), day, print.p), print.top);
        if others_count && previous != Some(print.top) && !writes.covers(print.p, print.top) {
            changed.entry(key.clone()).or_default().insert(day);
            foreign.entry(key.clone()).or_default().insert(day);
        }
        if day > newest - MAX_WINDOW_DAYS {
            recent.insert(key);
        }
    }
    Detected {
        changed,
        foreign,
        recent,
        split: split.into_iter().collect(),
    }
}

/// The as_of intervals to recompute per key.
pub fn plan(
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

/// The calendar months a plan's intervals touch, as `[first, last]` day spans in order.
/// A pass computes and writes its rows month by month: the `*_daily` tables are
/// partitioned by month and ClickHouse makes one part per partition an insert touches, so
/// rows written in chunks of every month at once would multiply the parts by twelve.
pub fn months(plan: &BTreeMap<(String, String), Vec<(i64, i64)>>) -> Vec<(i64, i64)> {
    let mut touched = BTreeSet::new();
    for &(a, b) in plan.values().flatten() {
        let mut first = Window::Month.start(a);
        while first <= b {
            touched.insert(first);
            first = next_month(first);
        }
    }
    touched
        .into_iter()
        .map(|first| (first, next_month(first) - 1))
        .collect()
}

/// The first day of the month after the one that begins on `first`.
fn next_month(first: i64) -> i64 {
    Window::Month.start(first + 31)
}

/// How many `as_of` days of `intervals` from `first` on fall in `[from, to]`.
pub fn as_of_days(intervals: &[(i64, i64)], first: i64, from: i64, to: i64) -> usize {
    clip(intervals, from, to)
        .map(|(a, b)| (b - a.max(first) + 1).max(0) as usize)
        .sum()
}

/// `intervals` clipped to `[from, to]`, the empty ones left out.
pub fn clip(intervals: &[(i64, i64)], from: i64, to: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
    intervals
        .iter()
        .map(move |&(a, b)| (a.max(from), b.min(to)))
        .filter(|(a, b)| a <= b)
}

pub fn print_floor(changed: &BTreeMap<(String, String), Vec<i64>>, newest: i64) -> i64 {
    let own_oldest = changed
        .values()
        .filter_map(|d| d.first().copied())
        .min()
        .unwrap_or(newest);
    (own_oldest.min(newest) - MAX_WINDOW_DAYS).min(newest - CACHE_DAYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> (String, String) {
        ("F".to_owned(), p.to_owned())
    }

    #[test]
    fn as_of_days_counts_the_clipped_days_from_the_first_with_data() {
        let intervals = [(10, 20), (25, 40)];
        // [15, 20] and [25, 30] within [0, 30], from day 15 on.
        assert_eq!(as_of_days(&intervals, 15, 0, 30), 6 + 6);
        // The first day with data after a whole interval leaves nothing of it.
        assert_eq!(as_of_days(&intervals, 21, 0, 30), 6);
        assert_eq!(as_of_days(&intervals, 0, 41, 60), 0);
        assert_eq!(as_of_days(&intervals, 0, 0, 100), 11 + 16);
    }

    #[test]
    fn a_plan_is_cut_into_the_calendar_months_it_touches() {
        use crate::index::window::{from_date, to_date};
        let day = |y: i32, m: u8, d: u8| {
            from_date(
                time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap(),
            )
        };
        let plan = BTreeMap::from([
            (key("01"), vec![(day(2025, 12, 30), day(2026, 1, 2))]),
            (
                key("02"),
                vec![
                    (day(2026, 2, 28), day(2026, 3, 1)),
                    (day(2024, 2, 29), day(2024, 2, 29)),
                ],
            ),
        ]);
        let spans: Vec<(String, String)> = months(&plan)
            .into_iter()
            .map(|(a, b)| (to_date(a).to_string(), to_date(b).to_string()))
            .collect();
        let expected = [
            ("2024-02-01", "2024-02-29"),
            ("2025-12-01", "2025-12-31"),
            ("2026-01-01", "2026-01-31"),
            ("2026-02-01", "2026-02-28"),
            ("2026-03-01", "2026-03-31"),
        ];
        assert_eq!(
            spans,
            expected.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
        );
        // Every planned day falls in exactly one month's clip.
        for intervals in plan.values() {
            let planned: i64 = intervals.iter().map(|(a, b)| b - a + 1).sum();
            let clipped: i64 = months(&plan)
                .into_iter()
                .flat_map(|(from, to)| clip(intervals, from, to).collect::<Vec<_>>())
                .map(|(a, b)| b - a + 1)
                .sum();
            assert_eq!(clipped, planned);
        }
    }

    #[test]
    fn a_changed_day_recomputes_the_as_of_days_whose_windows_contain_it() {
        let changed = BTreeMap::from([(key("01"), BTreeSet::from([100, 101, 500]))]);
        let planned = plan(&changed, &BTreeSet::new(), Some(900), 900, false);
        // [100, 465] ∪ [101, 466] ∪ [500, 865], merged.
        assert_eq!(planned[&key("01")], vec![(100, 466), (500, 865)]);
        // Never past the newest day.
        let planned = plan(&changed, &BTreeSet::new(), Some(450), 450, false);
        assert_eq!(planned[&key("01")], vec![(100, 450)]);
    }

    #[test]
    fn when_the_newest_day_moves_every_recent_unit_gets_the_new_days() {
        let recent = BTreeSet::from([key("01"), key("79")]);
        let changed = BTreeMap::from([(key("79"), BTreeSet::from([1000]))]);
        let planned = plan(&changed, &recent, Some(997), 1000, false);
        assert_eq!(
            planned[&key("01")],
            vec![(998, 1000)],
            "the quiet province too"
        );
        assert_eq!(planned[&key("79")], vec![(998, 1000)]);
        // Nothing moved and nothing changed: nothing to do.
        assert!(plan(&BTreeMap::new(), &recent, Some(1000), 1000, false).is_empty());
        // Nothing written yet: the last year for every recent unit.
        let planned = plan(&BTreeMap::new(), &recent, None, 1000, false);
        assert_eq!(planned[&key("01")], vec![(1000 - MAX_WINDOW_DAYS, 1000)]);
    }

    #[test]
    fn fingerprints_detect_other_writers_once_primed() {
        let print = |p: &str, d: u16, partition: u32, top: u64| PrintRow {
            framework: "F".into(),
            province_code: p.into(),
            d,
            p: partition,
            top,
        };
        let mut known = HashMap::new();
        let own = BTreeMap::new();
        let none = Writes::default();
        let found = detect(
            vec![print("01", 990, 0, 1)],
            &mut known,
            &own,
            &none,
            false,
            1000,
        );
        assert!(
            found.changed.is_empty(),
            "the first read only learns the fingerprints"
        );
        assert_eq!(found.recent, BTreeSet::from([key("01")]));
        assert!(found.split.is_empty());
        let found = detect(
            vec![
                print("01", 990, 0, 1),
                print("01", 990, 1, 7),
                print("79", 995, 0, 3),
            ],
            &mut known,
            &own,
            &none,
            true,
            1000,
        );
        assert_eq!(found.changed[&key("01")], BTreeSet::from([990]));
        assert_eq!(found.foreign[&key("01")], BTreeSet::from([990]));
        assert_eq!(
            found.changed[&key("79")],
            BTreeSet::from([995]),
            "a new day is a change"
        );
        assert_eq!(
            found.split,
            vec!["01".to_owned()],
            "01's day comes from two partitions"
        );
        // Nothing moved: nothing changed.
        let found = detect(
            vec![print("01", 990, 0, 1), print("01", 990, 1, 7)],
            &mut known,
            &own,
            &none,
            true,
            1000,
        );
        assert!(found.changed.is_empty());
    }

    #[test]
    fn rows_this_process_wrote_are_not_foreign_but_rows_beyond_them_are() {
        let print = |d: u16, partition: u32, top: u64| PrintRow {
            framework: "F".into(),
            province_code: "01".into(),
            d,
            p: partition,
            top,
        };
        let writes = Writes {
            generation: 1,
            through: BTreeMap::from([(0, 500)]),
            since: BTreeMap::new(),
        };
        let mut known = HashMap::new();
        let own = BTreeMap::from([(key("01"), vec![990])]);
        detect(
            vec![print(990, 0, 100)],
            &mut known,
            &own,
            &writes,
            true,
            1000,
        );
        let found = detect(
            vec![print(990, 0, 500), print(991, 0, 501), print(992, 1, 3)],
            &mut known,
            &own,
            &writes,
            true,
            1000,
        );
        assert_eq!(
            found.foreign[&key("01")],
            BTreeSet::from([991, 992]),
            "ours up to 500; 501 is a writer ahead of us, partition 1 is not ours"
        );
        assert_eq!(found.changed[&key("01")], BTreeSet::from([990, 991, 992]));
    }

    #[test]
    fn rows_below_where_this_process_took_the_partition_over_are_a_predecessors() {
        let writes = Writes {
            generation: 1,
            through: BTreeMap::from([(0, 500)]),
            since: BTreeMap::from([(0, 300)]),
        };
        assert!(writes.covers(0, 300) && writes.covers(0, 500));
        assert!(
            !writes.covers(0, 299),
            "written before the checkpoint this process restored"
        );
        assert!(!writes.covers(0, 501));
        assert!(!writes.trusted(&[(0, 120)]).allows(&writes, 0));
        let mut known = HashMap::new();
        let print = |top: u64| PrintRow {
            framework: "F".into(),
            province_code: "01".into(),
            d: 990,
            p: 0,
            top,
        };
        let own = BTreeMap::new();
        detect(vec![print(100)], &mut known, &own, &writes, true, 1000);
        let found = detect(vec![print(250)], &mut known, &own, &writes, true, 1000);
        assert_eq!(
            found.foreign[&key("01")],
            BTreeSet::from([990]),
            "the predecessor's row, written after this process last read the day"
        );
    }

    #[test]
    fn a_read_trusts_held_partitions_written_through_its_tops_until_a_rebalance() {
        let writes = Writes {
            generation: 4,
            through: BTreeMap::from([(0, 500), (2, 90)]),
            since: BTreeMap::new(),
        };
        let trust = writes.trusted(&[(0, 480), (2, 91), (3, 7)]);
        assert!(trust.allows(&writes, 0));
        assert!(!trust.allows(&writes, 2), "a row of 2 beyond what we wrote");
        assert!(!trust.allows(&writes, 3), "not held when read");
        let empty = writes.trusted(&[]);
        assert!(
            empty.allows(&writes, 2),
            "no rows at all: nothing to supersede"
        );
        let moved = Writes {
            generation: 5,
            ..writes.clone()
        };
        assert!(
            !trust.allows(&moved, 0),
            "assignments changed since the read"
        );
    }
}
