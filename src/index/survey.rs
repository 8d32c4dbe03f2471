//! SIPAS index math over counts. Counts add up; indices are computed from summed counts,
//! so any window is the sum of its days' counts.
//!
//! - Criterion index `S_c = 100 × (n4 + n5) / (n1 + … + n5)`; unanswered answers are
//!   excluded from the denominator and counted in `missing`.
//! - Factor index = mean of its criterion indices that have data; no data → no value.
//! - SIPAS = weighted mean (framework weights) of the factors that have a value.
//! - Expectation share = respondents who ticked the item / respondents.
//! - `ci_low`/`ci_high`: 95 % Wilson score interval of the proportion `p = sipas / 100`
//!   with `n = respondents`, i.e. the overall index read as the share of satisfied
//!   respondents. Per criterion, the Wilson interval of `satisfied / valid` is exact.
//! - `ranked` = respondents ≥ the framework's `min_sample`.
use crate::domain::framework::Framework;
use crate::domain::SurveySubmission;

/// Summable counts for one unit over some days.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SurveyCounts {
    pub respondents: u32,
    /// Per criterion, in framework order.
    pub valid: Vec<u32>,
    pub satisfied: Vec<u32>,
    pub missing: Vec<u32>,
    /// Per expectation item, in framework order.
    pub expectations: Vec<u32>,
}

impl SurveyCounts {
    pub fn new(framework: &Framework) -> Self {
        let criteria = framework.criterion_ids().count();
        Self {
            respondents: 0,
            valid: vec![0; criteria],
            satisfied: vec![0; criteria],
            missing: vec![0; criteria],
            expectations: vec![0; framework.expectations.len()],
        }
    }

    /// Adds one submission. Its answers are in framework order (the validator guarantees it).
    pub fn add(&mut self, survey: &SurveySubmission, framework: &Framework) {
        self.respondents += 1;
        for (i, (_, score)) in survey.answers.iter().enumerate().take(self.valid.len()) {
            match score {
                Some(s) => {
                    self.valid[i] += 1;
                    if *s >= 4 {
                        self.satisfied[i] += 1;
                    }
                }
                None => self.missing[i] += 1,
            }
        }
        for item in &survey.expectations {
            if let Some(i) = framework.expectations.iter().position(|e| &e.id == item) {
                self.expectations[i] += 1;
            }
        }
    }

    /// Adds (`sign` = 1) or removes (`sign` = -1) another count, growing to its shape.
    pub fn add_scaled(&mut self, other: &SurveyCounts, sign: i64) {
        if self.valid.len() < other.valid.len() {
            self.valid.resize(other.valid.len(), 0);
            self.satisfied.resize(other.satisfied.len(), 0);
            self.missing.resize(other.missing.len(), 0);
        }
        if self.expectations.len() < other.expectations.len() {
            self.expectations.resize(other.expectations.len(), 0);
        }
        let apply = |a: &mut u32, b: u32| *a = (i64::from(*a) + sign * i64::from(b)).max(0) as u32;
        apply(&mut self.respondents, other.respondents);
        for (mine, theirs) in [
            (&mut self.valid, &other.valid),
            (&mut self.satisfied, &other.satisfied),
            (&mut self.missing, &other.missing),
            (&mut self.expectations, &other.expectations),
        ] {
            for (a, b) in mine.iter_mut().zip(theirs) {
                apply(a, *b);
            }
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
    pub sipas: Option<f64>,
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
    Some((100.0 * (centre - margin) / denominator, 100.0 * (centre + margin) / denominator))
}

pub fn compute(counts: &SurveyCounts, framework: &Framework) -> SurveyIndex {
    let criterion: Vec<Option<f64>> = counts
        .valid
        .iter()
        .zip(&counts.satisfied)
        .map(|(valid, satisfied)| (*valid > 0).then(|| 100.0 * f64::from(*satisfied) / f64::from(*valid)))
        .collect();
    let mut factor = Vec::with_capacity(framework.factors.len());
    let mut position = 0;
    for f in &framework.factors {
        let values: Vec<f64> = criterion[position..position + f.criteria.len()].iter().flatten().copied().collect();
        position += f.criteria.len();
        factor.push((!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64));
    }
    let (weighted, weights) = framework
        .factors
        .iter()
        .zip(&factor)
        .filter_map(|(f, value)| value.map(|v| (v * f.weight, f.weight)))
        .fold((0.0, 0.0), |(s, w), (v, fw)| (s + v, w + fw));
    let sipas = (weights > 0.0).then(|| weighted / weights);
    let n = f64::from(counts.respondents);
    let interval = sipas.and_then(|s| wilson(s / 100.0, n));
    SurveyIndex {
        respondents: counts.respondents,
        criterion,
        factor,
        sipas,
        expectation_share: counts
            .expectations
            .iter()
            .map(|c| if counts.respondents > 0 { 100.0 * f64::from(*c) / n } else { 0.0 })
            .collect(),
        ci_low: interval.map(|i| i.0),
        ci_high: interval.map(|i| i.1),
        ranked: counts.respondents >= framework.min_sample,
    }
}

/// Standard competition ranking (1, 2, 2, 4) by score descending; `None` for unranked.
pub fn competition_rank(scores: &[(Option<f64>, bool)]) -> Vec<Option<u32>> {
    scores
        .iter()
        .map(|(score, ranked)| match (score, ranked) {
            (Some(s), true) => Some(1 + scores.iter().filter(|(o, r)| *r && o.is_some_and(|o| o > *s)).count() as u32),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::framework::{Criterion, Factor};

    fn framework(weights: [f64; 2]) -> Framework {
        let criterion = |id: &str| Criterion { id: id.into(), text: String::new() };
        Framework {
            id: "T".into(),
            name: "test".into(),
            min_sample: 3,
            factors: vec![
                Factor { id: "a".into(), name: "A".into(), weight: weights[0], criteria: vec![criterion("a.1"), criterion("a.2")] },
                Factor { id: "b".into(), name: "B".into(), weight: weights[1], criteria: vec![criterion("b.1")] },
            ],
            expectations: vec![crate::domain::framework::ExpectationItem { id: "e.1".into(), text: String::new() }],
        }
    }

    fn counts(respondents: u32, valid: [u32; 3], satisfied: [u32; 3], missing: [u32; 3]) -> SurveyCounts {
        SurveyCounts { respondents, valid: valid.to_vec(), satisfied: satisfied.to_vec(), missing: missing.to_vec(), expectations: vec![1] }
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
        assert_eq!(index.sipas, Some(50.0), "not dragged down by a 0 for factor b");
        assert!(!index.ranked, "2 respondents < min_sample 3");
        let empty = compute(&counts(1, [0, 0, 0], [0, 0, 0], [1, 1, 1]), &framework([1.0, 1.0]));
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
        assert!((high - 100.0).abs() < 1e-9 && (low - 72.25).abs() < 0.01, "{low} {high}");
        assert_eq!(wilson(0.5, 0.0), None);
    }

    #[test]
    fn counts_merge_like_adding_the_submissions() {
        let mut a = counts(1, [1, 1, 0], [1, 0, 0], [0, 0, 1]);
        a.merge(&counts(2, [2, 1, 2], [1, 1, 2], [0, 1, 0]));
        assert_eq!(a, SurveyCounts { respondents: 3, valid: vec![3, 2, 2], satisfied: vec![2, 1, 2], missing: vec![0, 1, 1], expectations: vec![2] });
    }

    #[test]
    fn competition_rank_with_ties_and_unranked() {
        let ranks = competition_rank(&[(Some(90.0), true), (Some(85.0), true), (Some(90.0), true), (Some(99.0), false), (Some(80.0), true), (None, true)]);
        assert_eq!(ranks, vec![Some(1), Some(3), Some(1), None, Some(4), None]);
    }
}
