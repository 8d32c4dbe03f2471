//! SIPAS index math over counts. Counts add up; indices are computed from summed counts,
//! so any window is the sum of its days' counts.
//!
//! - Criterion index `S_c = 100 × (n4 + n5) / (n1 + … + n5)`; unanswered answers are
//!   excluded from the denominator and counted in `missing`.
//! - Factor index = mean of its criterion indices that have data; no data → no value.
//! - SIPAS = weighted mean (framework weights) of the factors that have a value.
//! - Expectation share = respondents who ticked the item / respondents.
//! - Intervals are 95 % Wilson score intervals whose `n` is the number of valid answers
//!   behind the value: a criterion's valid answers; for a factor, the smallest valid count
//!   among its criteria with data; for the overall index, the smallest factor `n`. (With
//!   `n` = respondents, a factor few answered would look more precise than it is.)
//! - `ranked` = respondents ≥ the framework's `min_sample`.
//! - Ranks: standard competition rank by the unrounded value, but values equal after
//!   rounding to 9 decimals tie, so float summation order cannot split a tie.
use crate::domain::framework::Framework;
use crate::domain::SurveySubmission;

/// Counters stored at the narrowest width that holds them. Most unit-days of an agency
/// hold a handful of respondents, so their counts fit in bytes; a year of state for
/// thousands of agencies then takes a quarter of the memory (and checkpoint) of `u32`s.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Counters {
    U8(Box<[u8]>),
    U16(Box<[u16]>),
    U32(Box<[u32]>),
}

impl Default for Counters {
    fn default() -> Self {
        Counters::U8(Box::default())
    }
}

impl Counters {
    fn zeros(len: usize) -> Self {
        Counters::U8(vec![0; len].into_boxed_slice())
    }

    fn len(&self) -> usize {
        match self {
            Counters::U8(v) => v.len(),
            Counters::U16(v) => v.len(),
            Counters::U32(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> u32 {
        match self {
            Counters::U8(v) => u32::from(v[i]),
            Counters::U16(v) => u32::from(v[i]),
            Counters::U32(v) => v[i],
        }
    }

    fn to_vec(&self) -> Vec<u32> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    fn set(&mut self, i: usize, value: u32) {
        match self {
            Counters::U8(v) if value <= u32::from(u8::MAX) => v[i] = value as u8,
            Counters::U16(v) if value <= u32::from(u16::MAX) => v[i] = value as u16,
            Counters::U32(v) => v[i] = value,
            _ => {
                // Widen once, then store.
                let values = self.to_vec();
                *self = if value <= u32::from(u16::MAX) {
                    Counters::U16(values.iter().map(|&x| x as u16).collect())
                } else {
                    Counters::U32(values.into_boxed_slice())
                };
                self.set(i, value);
            }
        }
    }

    fn is_zero(&self) -> bool {
        (0..self.len()).all(|i| self.get(i) == 0)
    }

    /// `self[i] = max(0, self[i] + sign × other[i])` for every `i`, done slice by slice when
    /// both have the same length and every result fits this width (the common case when
    /// days are summed into windows). Returns false, with nothing changed, otherwise.
    fn try_add_in_place(&mut self, other: &Counters, sign: i64) -> bool {
        fn with_other<T: Copy + Into<u32> + TryFrom<u32>>(
            mine: &mut [T],
            other: &Counters,
            sign: i64,
        ) -> bool {
            match other {
                Counters::U8(o) => add(mine, o, sign),
                Counters::U16(o) => add(mine, o, sign),
                Counters::U32(o) => add(mine, o, sign),
            }
        }
        fn add<T: Copy + Into<u32> + TryFrom<u32>, U: Copy + Into<u32>>(
            mine: &mut [T],
            other: &[U],
            sign: i64,
        ) -> bool {
            let value =
                |a: T, b: U| (i64::from(a.into()) + sign * i64::from(b.into())).max(0) as u32;
            if mine.len() != other.len()
                || !mine
                    .iter()
                    .zip(other)
                    .all(|(a, b)| T::try_from(value(*a, *b)).is_ok())
            {
                return false;
            }
            for (a, b) in mine.iter_mut().zip(other) {
                if let Ok(v) = T::try_from(value(*a, *b)) {
                    *a = v;
                }
            }
            true
        }
        match self {
            Counters::U8(mine) => with_other(mine, other, sign),
            Counters::U16(mine) => with_other(mine, other, sign),
            Counters::U32(mine) => with_other(mine, other, sign),
        }
    }
}

/// Counter sections per criterion: scores 1..=5 and missing.
const SECTIONS: usize = 6;

/// Summable counts for one unit over some days. Per criterion (framework order): the
/// answers of each score 1..=5 and the missing (unanswered / not applicable) answers; per
/// expectation item: ticks. Valid = n1 + … + n5, satisfied = n4 + n5.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SurveyCounts {
    pub respondents: u32,
    criteria: u16,
    /// `[n1 × criteria, …, n5 × criteria, missing × criteria, expectations…]`.
    counters: Counters,
}

impl PartialEq for SurveyCounts {
    fn eq(&self, other: &Self) -> bool {
        self.respondents == other.respondents
            && self.criteria == other.criteria
            && self.counters.len() == other.counters.len()
            && (0..self.counters.len()).all(|i| self.counters.get(i) == other.counters.get(i))
    }
}

impl Eq for SurveyCounts {}

impl SurveyCounts {
    pub fn new(framework: &Framework) -> Self {
        Self::with_shape(
            framework.criterion_ids().count(),
            framework.expectations.len(),
        )
    }

    fn with_shape(criteria: usize, expectations: usize) -> Self {
        Self {
            respondents: 0,
            criteria: criteria as u16,
            counters: Counters::zeros(SECTIONS * criteria + expectations),
        }
    }

    /// Counts given as a distribution: `scores[k]` holds, per criterion, the answers of
    /// score `k + 1`.
    pub fn from_distribution(
        respondents: u32,
        scores: [&[u32]; 5],
        missing: &[u32],
        expectations: &[u32],
    ) -> Self {
        let mut counts = Self::with_shape(missing.len(), expectations.len());
        counts.respondents = respondents;
        let values = scores
            .iter()
            .flat_map(|s| s.iter())
            .chain(missing)
            .chain(expectations);
        for (i, value) in values.enumerate() {
            counts.counters.set(i, *value);
        }
        counts
    }

    /// Counts given as valid / satisfied / missing per criterion (tests): the satisfied
    /// answers are read as 4s, the other valid ones as 1s.
    pub fn from_parts(
        respondents: u32,
        valid: &[u32],
        satisfied: &[u32],
        missing: &[u32],
        expectations: &[u32],
    ) -> Self {
        let unsatisfied: Vec<u32> = valid.iter().zip(satisfied).map(|(v, s)| v - s).collect();
        let zeros = vec![0; valid.len()];
        Self::from_distribution(
            respondents,
            [&unsatisfied, &zeros, &zeros, satisfied, &zeros],
            missing,
            expectations,
        )
    }

    pub fn criteria(&self) -> usize {
        usize::from(self.criteria)
    }

    pub fn expectation_items(&self) -> usize {
        self.counters
            .len()
            .saturating_sub(SECTIONS * self.criteria())
    }

    /// Answers of `score` (1..=5) to a criterion.
    pub fn score(&self, criterion: usize, score: u8) -> u32 {
        debug_assert!((1..=5).contains(&score));
        self.counters
            .get(usize::from(score - 1) * self.criteria() + criterion)
    }

    pub fn valid(&self, criterion: usize) -> u32 {
        (1..=5).map(|k| self.score(criterion, k)).sum()
    }

    pub fn satisfied(&self, criterion: usize) -> u32 {
        self.score(criterion, 4) + self.score(criterion, 5)
    }

    pub fn missing(&self, criterion: usize) -> u32 {
        self.counters.get(5 * self.criteria() + criterion)
    }

    pub fn expectation(&self, item: usize) -> u32 {
        self.counters.get(SECTIONS * self.criteria() + item)
    }

    /// Per criterion, the answers of `score` (1..=5).
    pub fn score_counts(&self, score: u8) -> Vec<u32> {
        (0..self.criteria()).map(|c| self.score(c, score)).collect()
    }

    pub fn valid_counts(&self) -> Vec<u32> {
        (0..self.criteria()).map(|c| self.valid(c)).collect()
    }

    pub fn satisfied_counts(&self) -> Vec<u32> {
        (0..self.criteria()).map(|c| self.satisfied(c)).collect()
    }

    pub fn missing_counts(&self) -> Vec<u32> {
        (0..self.criteria()).map(|c| self.missing(c)).collect()
    }

    pub fn expectation_counts(&self) -> Vec<u32> {
        (0..self.expectation_items())
            .map(|e| self.expectation(e))
            .collect()
    }

    pub fn is_zero(&self) -> bool {
        self.respondents == 0 && self.counters.is_zero()
    }

    fn bump(&mut self, i: usize) {
        let value = self.counters.get(i) + 1;
        self.counters.set(i, value);
    }

    /// Adds one submission. Its answers are in framework order (the validator guarantees it).
    pub fn add(&mut self, survey: &SurveySubmission, framework: &Framework) {
        self.respondents += 1;
        let criteria = self.criteria();
        for (i, &score) in survey.answers.scores().iter().enumerate().take(criteria) {
            match score {
                Some(s @ 1..=5) => self.bump(usize::from(s - 1) * criteria + i),
                // The validator admits 1..=5 only; anything else is not an answer.
                Some(_) | None => self.bump(5 * criteria + i),
            }
        }
        for item in &survey.expectations {
            if let Some(i) = framework.expectations.iter().position(|e| &e.id == item) {
                if i < self.expectation_items() {
                    self.bump(SECTIONS * criteria + i);
                }
            }
        }
    }

    /// Grows to at least the other's shape, keeping the counts.
    fn grow_to(&mut self, criteria: usize, expectations: usize) {
        if self.criteria() >= criteria && self.expectation_items() >= expectations {
            return;
        }
        let (c, e) = (
            self.criteria().max(criteria),
            self.expectation_items().max(expectations),
        );
        let mut grown = Self::with_shape(c, e);
        grown.respondents = self.respondents;
        let mine = self.criteria();
        for section in 0..SECTIONS {
            for k in 0..mine {
                grown
                    .counters
                    .set(section * c + k, self.counters.get(section * mine + k));
            }
        }
        for k in 0..self.expectation_items() {
            grown.counters.set(SECTIONS * c + k, self.expectation(k));
        }
        *self = grown;
    }

    /// Adds (`sign` = 1) or removes (`sign` = -1) another count, growing to its shape.
    pub fn add_scaled(&mut self, other: &SurveyCounts, sign: i64) {
        self.grow_to(other.criteria(), other.expectation_items());
        let apply = |a: u32, b: u32| (i64::from(a) + sign * i64::from(b)).max(0) as u32;
        self.respondents = apply(self.respondents, other.respondents);
        if self.criteria == other.criteria && self.counters.try_add_in_place(&other.counters, sign)
        {
            return;
        }
        // Different shapes, or a counter outgrows its width: element by element.
        let (mine, theirs) = (self.criteria(), other.criteria());
        for section in 0..SECTIONS {
            for k in 0..theirs {
                let i = section * mine + k;
                let value = apply(
                    self.counters.get(i),
                    other.counters.get(section * theirs + k),
                );
                self.counters.set(i, value);
            }
        }
        for k in 0..other.expectation_items() {
            let i = SECTIONS * mine + k;
            let value = apply(self.counters.get(i), other.expectation(k));
            self.counters.set(i, value);
        }
    }

    pub fn merge(&mut self, other: &SurveyCounts) {
        self.add_scaled(other, 1);
    }
}

/// Indices computed from counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyIndex {
    pub respondents: u32,
    pub criterion: Vec<Option<f64>>,
    pub factor: Vec<Option<f64>>,
    /// Per factor, the `n` of its interval: the smallest valid count among its criteria
    /// with data (0 when none has data).
    pub factor_n: Vec<u32>,
    pub sipas: Option<f64>,
    /// The `n` of the overall interval: the smallest factor `n` among factors with a value.
    pub interval_n: u32,
    pub expectation_share: Vec<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ranked: bool,
}

/// 95 % Wilson score interval for `successes / n`, as percentages.
pub fn wilson(p: f64, n: f64) -> Option<(f64, f64)> {
    if n <= 0.0 || !p.is_finite() {
        return None;
    }
    const Z: f64 = 1.959_963_984_540_054;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let margin = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let denominator = 1.0 + z2 / n;
    Some((
        100.0 * (centre - margin) / denominator,
        100.0 * (centre + margin) / denominator,
    ))
}

pub fn compute(counts: &SurveyCounts, framework: &Framework) -> SurveyIndex {
    let criterion: Vec<Option<f64>> = (0..counts.criteria())
        .map(|c| {
            (counts.valid(c) > 0)
                .then(|| 100.0 * f64::from(counts.satisfied(c)) / f64::from(counts.valid(c)))
        })
        .collect();
    let mut factor = Vec::with_capacity(framework.factors.len());
    let mut factor_n = Vec::with_capacity(framework.factors.len());
    let mut position = 0;
    for f in &framework.factors {
        // Summed in criterion order, without a vector per factor and row.
        let range = position..(position + f.criteria.len()).min(criterion.len());
        let (sum, n) = criterion[range.clone()]
            .iter()
            .flatten()
            .fold((0.0, 0usize), |(sum, n), v| (sum + v, n + 1));
        let smallest_valid = range
            .map(|c| counts.valid(c))
            .filter(|v| *v > 0)
            .min()
            .unwrap_or(0);
        position += f.criteria.len();
        factor.push((n > 0).then(|| sum / n as f64));
        factor_n.push(smallest_valid);
    }
    let (weighted, weights) = framework
        .factors
        .iter()
        .zip(&factor)
        .filter_map(|(f, value)| value.map(|v| (v * f.weight, f.weight)))
        .fold((0.0, 0.0), |(s, w), (v, fw)| (s + v, w + fw));
    let sipas = (weights > 0.0).then(|| weighted / weights);
    let interval_n = factor
        .iter()
        .zip(&factor_n)
        .filter(|(value, _)| value.is_some())
        .map(|(_, n)| *n)
        .min()
        .unwrap_or(0);
    let interval = sipas.and_then(|s| wilson(s / 100.0, f64::from(interval_n)));
    let n = f64::from(counts.respondents);
    SurveyIndex {
        respondents: counts.respondents,
        criterion,
        factor,
        factor_n,
        sipas,
        interval_n,
        expectation_share: (0..counts.expectation_items())
            .map(|e| {
                if counts.respondents > 0 {
                    100.0 * f64::from(counts.expectation(e)) / n
                } else {
                    0.0
                }
            })
            .collect(),
        ci_low: interval.map(|i| i.0),
        ci_high: interval.map(|i| i.1),
        ranked: counts.respondents >= framework.min_sample,
    }
}

/// A value as ranks compare it: rounded to 9 decimals, so that values that are
/// mathematically equal but summed in another order tie.
pub fn rank_key(value: f64) -> f64 {
    (value * 1e9).round() / 1e9
}

/// Standard competition ranking (1, 2, 2, 4) by score descending; `None` for unranked.
/// Scores equal after rounding to 9 decimals tie.
pub fn competition_rank(scores: &[(Option<f64>, bool)]) -> Vec<Option<u32>> {
    scores
        .iter()
        .map(|(score, ranked)| match (score, ranked) {
            (Some(s), true) => Some(
                1 + scores
                    .iter()
                    .filter(|(o, r)| *r && o.is_some_and(|o| rank_key(o) > rank_key(*s)))
                    .count() as u32,
            ),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::framework::{Criterion, Factor};

    fn framework(weights: [f64; 2]) -> Framework {
        let criterion = |id: &str| Criterion {
            id: id.into(),
            text: String::new(),
        };
        Framework {
            id: "T".into(),
            name: "test".into(),
            min_sample: 3,
            factors: vec![
                Factor {
                    id: "a".into(),
                    name: "A".into(),
                    weight: weights[0],
                    criteria: vec![criterion("a.1"), criterion("a.2")],
                },
                Factor {
                    id: "b".into(),
                    name: "B".into(),
                    weight: weights[1],
                    criteria: vec![criterion("b.1")],
                },
            ],
            expectations: vec![crate::domain::framework::ExpectationItem {
                id: "e.1".into(),
                text: String::new(),
            }],
            columns: Default::default(),
        }
    }

    fn counts(
        respondents: u32,
        valid: [u32; 3],
        satisfied: [u32; 3],
        missing: [u32; 3],
    ) -> SurveyCounts {
        SurveyCounts::from_parts(respondents, &valid, &satisfied, &missing, &[1])
    }

    #[test]
    fn hand_computed_indices() {
        // a.1: 3 of 4 satisfied = 75; a.2: 1 of 2 = 50 -> factor a = 62.5; b.1: 4 of 4 = 100.
        let c = counts(4, [4, 2, 4], [3, 1, 4], [0, 2, 0]);
        let index = compute(&c, &framework([1.0, 1.0]));
        assert_eq!(index.criterion, vec![Some(75.0), Some(50.0), Some(100.0)]);
        assert_eq!(index.factor, vec![Some(62.5), Some(100.0)]);
        assert_eq!(index.sipas, Some(81.25));
        assert_eq!(index.expectation_share, vec![25.0]);
        assert!(index.ranked);
        // Weights 3:1 -> (62.5*3 + 100) / 4 = 71.875.
        assert_eq!(compute(&c, &framework([3.0, 1.0])).sipas, Some(71.875));
    }

    #[test]
    fn a_factor_without_data_has_no_value_and_is_skipped() {
        let c = counts(2, [2, 0, 0], [1, 0, 0], [0, 2, 2]);
        let index = compute(&c, &framework([1.0, 1.0]));
        assert_eq!(index.criterion, vec![Some(50.0), None, None]);
        assert_eq!(index.factor, vec![Some(50.0), None]);
        assert_eq!(
            index.sipas,
            Some(50.0),
            "not dragged down by a 0 for factor b"
        );
        assert!(!index.ranked, "2 respondents < min_sample 3");
        let empty = compute(
            &counts(1, [0, 0, 0], [0, 0, 0], [1, 1, 1]),
            &framework([1.0, 1.0]),
        );
        assert_eq!(empty.sipas, None);
        assert_eq!((empty.ci_low, empty.ci_high), (None, None));
    }

    #[test]
    fn wilson_bounds_match_reference_values() {
        // p = 0.8, n = 100: 95 % Wilson interval = [71.1, 86.7] (reference: 0.7112, 0.8666).
        let (low, high) = wilson(0.8, 100.0).unwrap();
        assert!((low - 71.12).abs() < 0.01, "{low}");
        assert!((high - 86.66).abs() < 0.01, "{high}");
        // p = 1, n = 10: upper bound 100, lower 72.25.
        let (low, high) = wilson(1.0, 10.0).unwrap();
        assert!(
            (high - 100.0).abs() < 1e-9 && (low - 72.25).abs() < 0.01,
            "{low} {high}"
        );
        assert_eq!(wilson(0.5, 0.0), None);
    }

    #[test]
    fn counts_merge_like_adding_the_submissions() {
        let mut a = counts(1, [1, 1, 0], [1, 0, 0], [0, 0, 1]);
        a.merge(&counts(2, [2, 1, 2], [1, 1, 2], [0, 1, 0]));
        assert_eq!(
            a,
            SurveyCounts::from_parts(3, &[3, 2, 2], &[2, 1, 2], &[0, 1, 1], &[2])
        );
    }

    #[test]
    fn counters_widen_past_a_byte_and_a_short_and_subtract_back() {
        let one = counts(1, [1, 1, 0], [1, 0, 0], [0, 0, 1]);
        let mut total = SurveyCounts::default();
        for _ in 0..70_000 {
            total.merge(&one);
        }
        assert_eq!(
            total,
            SurveyCounts::from_parts(
                70_000,
                &[70_000, 70_000, 0],
                &[70_000, 0, 0],
                &[0, 0, 70_000],
                &[70_000]
            )
        );
        for _ in 0..69_999 {
            total.add_scaled(&one, -1);
        }
        assert_eq!(
            total, one,
            "equal whatever width the counters were widened to"
        );
        total.add_scaled(&one, -1);
        assert!(total.is_zero());
    }

    #[test]
    fn competition_rank_with_ties_and_unranked() {
        let ranks = competition_rank(&[
            (Some(90.0), true),
            (Some(85.0), true),
            (Some(90.0), true),
            (Some(99.0), false),
            (Some(80.0), true),
            (None, true),
        ]);
        assert_eq!(ranks, vec![Some(1), Some(3), Some(1), None, Some(4), None]);
        // 0.1 + 0.2 and 0.3 differ in the last bit; they tie.
        let ranks = competition_rank(&[
            (Some(0.1 + 0.2), true),
            (Some(0.3), true),
            (Some(0.2), true),
        ]);
        assert_eq!(ranks, vec![Some(1), Some(1), Some(3)]);
    }

    #[test]
    fn interval_n_is_the_valid_answers_behind_the_value() {
        // a.1: 4 valid, a.2: 2 valid -> factor a n = 2; b.1: 4 valid -> factor b n = 4.
        let c = counts(10, [4, 2, 4], [3, 1, 4], [6, 8, 6]);
        let index = compute(&c, &framework([1.0, 1.0]));
        assert_eq!(index.factor_n, vec![2, 4]);
        assert_eq!(
            index.interval_n, 2,
            "the smallest factor n, not 10 respondents"
        );
        let expected = wilson(index.sipas.unwrap() / 100.0, 2.0).unwrap();
        assert_eq!(
            (index.ci_low, index.ci_high),
            (Some(expected.0), Some(expected.1))
        );
        // A factor without data does not pull n to 0.
        let c = counts(5, [5, 3, 0], [5, 3, 0], [0, 2, 5]);
        let index = compute(&c, &framework([1.0, 1.0]));
        assert_eq!(index.factor_n, vec![3, 0]);
        assert_eq!(index.interval_n, 3);
    }

    #[test]
    fn the_distribution_is_kept() {
        let c = SurveyCounts::from_distribution(
            3,
            [&[1, 0, 0], &[0, 0, 0], &[1, 1, 0], &[0, 1, 2], &[1, 0, 1]],
            &[0, 1, 0],
            &[2],
        );
        assert_eq!((c.valid(0), c.satisfied(0), c.score(0, 5)), (3, 1, 1));
        assert_eq!((c.valid(1), c.satisfied(1), c.missing(1)), (2, 1, 1));
        assert_eq!(c.score_counts(4), vec![0, 1, 2]);
        assert_eq!(c.expectation(0), 2);
    }
}
