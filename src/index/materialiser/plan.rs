//! Which `as_of` days a pass recomputes: the days that changed (the processor's own rows,
//! and other writers' rows seen as a moved fingerprint), and the new days when the newest
//! day moves. Pure.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

use crate::index::values::merge_intervals;
use crate::index::window::MAX_WINDOW_DAYS;

use super::CACHE_DAYS;

/// A unit-day's fingerprint: its fact rows and the sum of their versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Print {
    pub rows: u64,
    pub versions: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
pub struct PrintRow {
    pub framework: String,
    pub province_code: String,
    pub d: u16,
    pub rows: u64,
    pub versions: u64,
    pub partitions: u64,
}

/// What a fingerprint read found: changed days per unit, the units with data near the
/// newest day, and the provinces whose recent days come from several partitions.
pub type Detected = (
    BTreeMap<(String, String), BTreeSet<i64>>,
    BTreeSet<(String, String)>,
    Vec<String>,
);
/// Days changed per key: ours, and those whose fingerprint moved since the last pass.
/// Returns them with the keys that have data near the newest day.
pub fn detect(
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
            detect(vec![print("01", 990, 1, 1)], &mut known, &own, false, 1000);
        assert!(
            changed.is_empty(),
            "the first read only learns the fingerprints"
        );
        assert_eq!(recent, BTreeSet::from([key("01")]));
        assert!(split.is_empty());
        let (changed, _, split) = detect(
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
