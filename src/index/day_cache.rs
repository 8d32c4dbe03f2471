//! The materialiser's copy of one province's day sums (per unit: its hotline categories,
//! or the single survey unit), as read from ClickHouse. Pure: the reads are done by the
//! caller, which asks [`DayCache::missing`] what to read and hands the result to
//! [`DayCache::apply_read`].
//!
//! Invariants, for `from = Some(f)`:
//! - every unit's `days` hold exactly the day sums of days ≥ f, except the `stale` days
//!   (changed since they were read);
//! - every unit's `carried` is Σ [`Carried::carried`] of its days before f (the hotline's
//!   open past-due count needs every delta since the beginning);
//! - every unit with any day before f is present (so a unit first met in a read of days
//!   ≥ f has nothing before f: its `carried` is 0).
use std::collections::{BTreeMap, BTreeSet};

use crate::index::values::Counts;

/// The part of a day's counts that is carried over from all earlier days.
pub trait Carried {
    /// Whether any part is (else `carried` is always 0): then a change before the days
    /// held changes a unit's `carried`.
    const CARRIES: bool;

    fn carried(&self) -> i64;
}

/// One unit's day sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitDays<C> {
    pub days: BTreeMap<i64, C>,
    pub carried: i64,
}

impl<C> Default for UnitDays<C> {
    fn default() -> Self {
        Self {
            days: BTreeMap::new(),
            carried: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DayCache<C> {
    from: Option<i64>,
    stale: BTreeSet<i64>,
    units: BTreeMap<String, UnitDays<C>>,
}

impl<C> Default for DayCache<C> {
    fn default() -> Self {
        Self {
            from: None,
            stale: BTreeSet::new(),
            units: BTreeMap::new(),
        }
    }
}

impl<C: Carried> DayCache<C> {
    pub fn units(&self) -> &BTreeMap<String, UnitDays<C>> {
        &self.units
    }

    /// Days whose sums changed since they were read.
    pub fn mark_stale(&mut self, days: impl IntoIterator<Item = i64>) {
        self.stale.extend(days);
    }

    /// The span to read so that `[need_from, to]` is complete (None: it is).
    pub fn missing(&self, need_from: i64, to: i64) -> Option<(i64, i64)> {
        let mut span = match self.from {
            None => Some((need_from, to)),
            // Contiguous with what is held, so the cache stays one span.
            Some(from) if need_from < from => Some((need_from, from - 1)),
            Some(_) => None,
        };
        for day in self.stale.range(need_from..=to) {
            span = Some(span.map_or((*day, *day), |(a, b)| (a.min(*day), b.max(*day))));
        }
        span
    }

    /// Takes a read of every unit's day sums on `[from, to]`. `carried_before` is, per
    /// unit, Σ carried of its days before `from`; it is used when the read extends the
    /// cache downwards (or starts it). The read must touch or overlap what is held.
    pub fn apply_read(
        &mut self,
        from: i64,
        to: i64,
        read: BTreeMap<String, Vec<(i64, C)>>,
        carried_before: &BTreeMap<String, i64>,
    ) {
        if self.from.is_some_and(|held| to + 1 < held) {
            // A gap between the read and what is held: `missing` never asks for one.
            debug_assert!(false, "a read of [{from}, {to}] not touching the cache");
            tracing::error!(
                from,
                to,
                "a day-sum read not touching the cache; the cache starts over"
            );
            *self = Self::default();
            return;
        }
        let extends_down = self.from.is_none_or(|held| from < held);
        let mut names: BTreeSet<String> = self.units.keys().cloned().collect();
        names.extend(read.keys().cloned());
        if extends_down {
            names.extend(carried_before.keys().cloned());
        }
        let mut read = read;
        for name in names {
            let unit = self.units.entry(name.clone()).or_default();
            let mut inside = unit.days.split_off(&from);
            let mut after = inside.split_off(&(to + 1));
            unit.days.append(&mut after);
            unit.days.extend(read.remove(&name).unwrap_or_default());
            if extends_down {
                unit.carried = carried_before.get(&name).copied().unwrap_or(0);
            }
        }
        self.stale.retain(|d| *d < from || *d > to);
        if extends_down {
            self.from = Some(from);
        }
    }

    /// The first day held, once anything was read.
    pub fn from(&self) -> Option<i64> {
        self.from
    }

    /// Whether the sums of `day` are held as they are in ClickHouse (read, and not changed
    /// since; a day after every read is held as empty).
    pub fn holds(&self, day: i64) -> bool {
        self.from.is_some_and(|from| day >= from) && !self.stale.contains(&day)
    }

    /// Adds what a writer's new rows changed on a held day (see [`DayCache::holds`]), so
    /// that the day need not be read again.
    pub fn add_to_day(&mut self, unit: &str, day: i64, delta: &C)
    where
        C: Counts,
    {
        debug_assert!(self.holds(day), "a delta for day {day}, not held");
        self.units
            .entry(unit.to_owned())
            .or_default()
            .days
            .entry(day)
            .or_default()
            .add(delta, 1);
    }

    /// Folds the days before `keep_from` into `carried`.
    pub fn trim(&mut self, keep_from: i64) {
        let Some(from) = self.from else { return };
        if from >= keep_from {
            return;
        }
        if self.stale.range(..keep_from).next().is_some() {
            // A changed day that was never read would be carried with its old sums.
            *self = Self::default();
            return;
        }
        for unit in self.units.values_mut() {
            let kept = unit.days.split_off(&keep_from);
            unit.carried += unit.days.values().map(Carried::carried).sum::<i64>();
            unit.days = kept;
        }
        self.from = Some(keep_from);
    }

    /// Nothing held that a read would not give again.
    pub fn is_empty(&self) -> bool {
        self.stale.is_empty()
            && self
                .units
                .values()
                .all(|u| u.days.is_empty() && u.carried == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Count(i64);

    impl Carried for Count {
        const CARRIES: bool = true;

        fn carried(&self) -> i64 {
            self.0
        }
    }

    type Truth = BTreeMap<(String, i64), i64>;

    fn read_of(truth: &Truth, from: i64, to: i64) -> BTreeMap<String, Vec<(i64, Count)>> {
        let mut read: BTreeMap<String, Vec<(i64, Count)>> = BTreeMap::new();
        for ((unit, day), n) in truth {
            if (from..=to).contains(day) {
                read.entry(unit.clone())
                    .or_default()
                    .push((*day, Count(*n)));
            }
        }
        read
    }

    fn carried_of(truth: &Truth, before: i64) -> BTreeMap<String, i64> {
        let mut carried: BTreeMap<String, i64> = BTreeMap::new();
        for ((unit, day), n) in truth {
            if *day < before {
                *carried.entry(unit.clone()).or_default() += n;
            }
        }
        carried
    }

    /// What the materialiser does for one changed day: read what is missing.
    fn refresh(cache: &mut DayCache<Count>, truth: &Truth, need_from: i64, to: i64) {
        if let Some((a, b)) = cache.missing(need_from, to) {
            cache.apply_read(a, b, read_of(truth, a, b), &carried_of(truth, a));
        }
    }

    fn assert_complete(cache: &DayCache<Count>, truth: &Truth, need_from: i64, to: i64) {
        let from = cache.from.expect("read");
        assert!(from <= need_from);
        let units: BTreeSet<&String> = truth.keys().map(|(u, _)| u).collect();
        for unit in units {
            let held = cache.units.get(unit).cloned().unwrap_or_default();
            let want: BTreeMap<i64, Count> = truth
                .iter()
                .filter(|((u, d), _)| u == unit && (from..=to).contains(d))
                .map(|((_, d), n)| (*d, Count(*n)))
                .collect();
            let got: BTreeMap<i64, Count> =
                held.days.range(from..=to).map(|(d, c)| (*d, *c)).collect();
            assert_eq!(got, want, "days of {unit}");
            assert_eq!(
                held.carried,
                carried_of(truth, from).get(unit).copied().unwrap_or(0),
                "carried of {unit}"
            );
        }
    }

    #[test]
    fn a_read_of_a_changed_day_keeps_the_older_days() {
        let mut truth: Truth = (0..10).map(|d| (("a".to_owned(), d), 1)).collect();
        let mut cache = DayCache::default();
        refresh(&mut cache, &truth, 0, 9);
        truth.insert(("a".to_owned(), 9), 5);
        truth.insert(("b".to_owned(), 9), 2);
        cache.mark_stale([9]);
        assert_eq!(cache.missing(3, 9), Some((9, 9)));
        refresh(&mut cache, &truth, 3, 9);
        assert_complete(&cache, &truth, 3, 9);
        assert_eq!(
            cache.units["a"].days.len(),
            10,
            "days before the changed one are kept"
        );
        cache.trim(5);
        assert_eq!(cache.units["a"].carried, 5);
        assert_complete(&cache, &truth, 5, 9);
    }

    proptest! {
        /// Any sequence of changes (new units, days before the cache, days of the
        /// newest), reads and trims leaves the cache equal to the truth where it claims
        /// to be complete.
        #[test]
        fn the_cache_equals_the_truth_after_any_sequence(
            steps in prop::collection::vec((0u8..4, 0i64..60, 1i64..4, 0u8..3), 1..80)
        ) {
            let mut truth: Truth = BTreeMap::new();
            let mut cache: DayCache<Count> = DayCache::default();
            let mut newest = 40;
            for (unit, day, n, action) in steps {
                let unit = format!("u{unit}");
                match action {
                    0 | 1 => {
                        // A changed day, then the pass: windows of [day, newest] need
                        // [day - 10, newest].
                        newest = newest.max(day);
                        *truth.entry((unit, day)).or_default() += n;
                        cache.mark_stale([day]);
                        let need_from = (day - 10).max(0);
                        refresh(&mut cache, &truth, need_from, newest);
                        assert_complete(&cache, &truth, need_from, newest);
                    }
                    _ => {
                        cache.trim(newest - 15);
                        if cache.from.is_some() {
                            let from = cache.from.unwrap();
                            assert_complete(&cache, &truth, from, newest);
                        }
                    }
                }
            }
        }
    }
}
