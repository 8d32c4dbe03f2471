//! Window values computed from day counts (pure). A window's counts are the sum of its
//! days' counts, so every window at every `as_of` day follows from the day counts alone:
//! this is how late and back-filled days reach every window that contains them.
use std::collections::BTreeMap;

use crate::domain::framework::Framework;
use crate::index::hotline::{kpi, HotlineKpi};
use crate::index::survey::{compute, SurveyCounts, SurveyIndex};
use crate::index::ticket::HotlineDayCounts;
use crate::index::window::Window;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnitType {
    Province,
    Agency,
    /// A hotline category within a province (`unit_id` = `province/category`).
    Category,
}

impl UnitType {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitType::Province => "province",
            UnitType::Agency => "agency",
            UnitType::Category => "category",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitKey {
    pub unit_type: UnitType,
    pub unit_id: String,
    pub province_code: String,
}

/// A window value of one unit, ready to become a row.
#[derive(Debug, Clone, PartialEq)]
pub struct SatisfactionValue {
    pub framework: String,
    pub unit: UnitKey,
    pub window: Window,
    pub as_of: i64,
    pub counts: SurveyCounts,
    pub index: SurveyIndex,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HotlineValue {
    pub unit: UnitKey,
    pub window: Window,
    pub as_of: i64,
    pub kpi: HotlineKpi,
    pub version: u64,
}

/// Counts that add up across days.
pub trait Counts: Clone + Default {
    fn add(&mut self, other: &Self, sign: i64);
}

impl Counts for SurveyCounts {
    fn add(&mut self, other: &Self, sign: i64) {
        self.add_scaled(other, sign);
    }
}

impl Counts for HotlineDayCounts {
    fn add(&mut self, other: &Self, sign: i64) {
        HotlineDayCounts::add(self, other, sign as i32);
    }
}

/// For every `as_of` in `[from, to]`, the sums of `days` over each window ending there
/// (in `windows` order). Sliding sums: each day is added once and removed once per
/// rolling window; calendar windows restart on their first day.
pub fn window_sums<C: Counts>(
    days: &BTreeMap<i64, C>,
    from: i64,
    to: i64,
    windows: &[Window],
) -> Vec<(i64, Vec<C>)> {
    if from > to {
        return Vec::new();
    }
    let sum_range = |a: i64, b: i64| {
        let mut sum = C::default();
        for (_, c) in days.range(a..=b) {
            sum.add(c, 1);
        }
        sum
    };
    let mut sums: Vec<C> = windows
        .iter()
        .map(|w| sum_range(w.start(from), from))
        .collect();
    let mut out = Vec::with_capacity((to - from + 1) as usize);
    out.push((from, sums.clone()));
    for as_of in from + 1..=to {
        let today = days.get(&as_of);
        for (w, window) in windows.iter().enumerate() {
            match window {
                Window::Rolling(n) => {
                    if let Some(gone) = days.get(&(as_of - i64::from(*n))) {
                        sums[w].add(gone, -1);
                    }
                }
                _ if window.start(as_of) != window.start(as_of - 1) => sums[w] = C::default(),
                _ => {}
            }
            if let Some(today) = today {
                sums[w].add(today, 1);
            }
        }
        out.push((as_of, sums.clone()));
    }
    out
}

pub fn satisfaction_value(
    framework: &Framework,
    unit: &UnitKey,
    window: Window,
    as_of: i64,
    counts: &SurveyCounts,
    version: u64,
) -> SatisfactionValue {
    // Empty sums have no per-criterion slots yet; give them the framework's shape.
    let columns = framework.columns();
    let sized = if counts.criteria() == columns.criterion_ids.len()
        && counts.expectation_items() == columns.expectation_ids.len()
    {
        counts.clone()
    } else {
        let mut sized = SurveyCounts::new(framework);
        sized.add_scaled(counts, 1);
        sized
    };
    SatisfactionValue {
        framework: framework.id.clone(),
        unit: unit.clone(),
        window,
        as_of,
        index: compute(&sized, framework),
        counts: sized,
        version,
    }
}

pub fn hotline_value(
    unit: &UnitKey,
    window: Window,
    as_of: i64,
    counts: &HotlineDayCounts,
    open_past_due: i64,
    version: u64,
) -> HotlineValue {
    HotlineValue {
        unit: unit.clone(),
        window,
        as_of,
        kpi: kpi(counts, open_past_due),
        version,
    }
}

/// Merges `[from, to]` intervals (sorted, overlapping or adjacent ones joined).
pub fn merge_intervals(mut intervals: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    intervals.retain(|(a, b)| a <= b);
    intervals.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (a, b) in intervals {
        match merged.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::window::WINDOWS;

    fn counts(n: u32) -> SurveyCounts {
        SurveyCounts::from_parts(n, &[n], &[n], &[0], &[])
    }

    #[test]
    fn sliding_sums_equal_direct_sums_for_every_window_and_day() {
        let mut days = BTreeMap::new();
        // Irregular days across a year boundary and a leap day.
        for (i, day) in [
            20_440_i64, 20_441, 20_455, 20_470, 20_500, 20_610, 20_700, 20_800, 20_805,
        ]
        .into_iter()
        .enumerate()
        {
            days.insert(day, counts(i as u32 + 1));
        }
        let (from, to) = (20_430, 20_900);
        let sums = window_sums(&days, from, to, &WINDOWS);
        assert_eq!(sums.len(), (to - from + 1) as usize);
        for (as_of, values) in sums {
            for (w, window) in WINDOWS.iter().enumerate() {
                let direct: u32 = days
                    .range(window.start(as_of)..=as_of)
                    .map(|(_, c)| c.respondents)
                    .sum();
                assert_eq!(
                    values[w].respondents,
                    direct,
                    "{} at {as_of}",
                    window.label()
                );
            }
        }
    }

    #[test]
    fn intervals_merge() {
        assert_eq!(
            merge_intervals(vec![(5, 9), (1, 3), (4, 4), (20, 25), (22, 30), (40, 39)]),
            vec![(1, 9), (20, 30)]
        );
    }
}
