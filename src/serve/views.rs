//! JSON responses of the read API, built from index rows (pure). The shapes are the ones
//! documented in `openapi.json`; values are unrounded (clients round for display).
//!
//! Every survey value arrives as a [`SatisfactionRow`], whether read from the materialised
//! tables or computed at query time from the day counts (`serve::sums`), so both paths
//! share these views. Ranks are computed here, among the rows of one `as_of` day, with
//! the index's [`competition_rank`].
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::params::{format_day, previous_as_of, previous_year_as_of, BreakdownBy, HotlineBy};
use super::rows::NationRow;
use crate::domain::{Framework, ProvinceRegistry};
use crate::index::hotline::HotlineKpi;
use crate::index::rows::{HotlineKpiRow, SatisfactionRow};
use crate::index::survey::{competition_rank, wilson};
use crate::index::window::Window;

/// The two-sided 95 % critical value of the standard normal (as in `wilson`).
const Z_95: f64 = 1.959_963_984_540_054;

/// Whether two values (percentages of satisfied answers) differ at 95 %: a pooled
/// two-proportion z-test on the values as shares with their interval `n` (SIPAS.md §3).
/// `None` when either value is missing or has no `n`.
pub fn significant(now: Option<f64>, now_n: u32, then: Option<f64>, then_n: u32) -> Option<bool> {
    let (now, then) = (now? / 100.0, then? / 100.0);
    if now_n == 0 || then_n == 0 || !now.is_finite() || !then.is_finite() {
        return None;
    }
    let (n1, n2) = (f64::from(now_n), f64::from(then_n));
    let pooled = (now * n1 + then * n2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se.is_nan() || se <= 0.0 {
        // Both all-satisfied (or all not): equal shares, nothing to reject.
        return Some(false);
    }
    Some(((now - then) / se).abs() > Z_95)
}

fn position(ids: &[String], id: &str) -> Option<usize> {
    ids.iter().position(|x| x == id)
}

fn factor(row: &SatisfactionRow, id: &str) -> Option<f64> {
    position(&row.factor_ids, id).and_then(|i| row.factor_values.get(i).copied().flatten())
}

/// Factor values by factor id (for the endpoints whose framework is not fixed).
fn factor_map(row: &SatisfactionRow) -> BTreeMap<String, Option<f64>> {
    row.factor_ids
        .iter()
        .cloned()
        .zip(row.factor_values.iter().copied())
        .collect()
}

/// Standard competition ranks of `rows` (all of one `as_of` day) by SIPAS among ranked rows.
fn ranks(rows: &[&SatisfactionRow]) -> Vec<Option<u32>> {
    let scores: Vec<(Option<f64>, bool)> = rows.iter().map(|r| (r.sipas, r.ranked == 1)).collect();
    competition_rank(&scores)
}

/// The 2025 province's name (`""` for a code that names none).
fn province_name(provinces: &ProvinceRegistry, code: &str) -> String {
    provinces.name_2025(code).unwrap_or_default().to_owned()
}

/// Ranked first (by rank), then the unranked, each by `tie` (the unit id).
fn rank_order(rank: Option<u32>, tie: &str) -> (bool, u32, String) {
    (rank.is_none(), rank.unwrap_or(0), tie.to_owned())
}

/// A value with its interval, as the unit, history, agency and breakdown views show it
/// (each embeds it whole, where these fields stood in its own list).
#[derive(Debug, Serialize)]
pub struct Estimate {
    pub sipas: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The `n` of the interval: valid answers behind the value (SIPAS.md §3).
    pub ci_n: u32,
    /// At least `min_sample` respondents.
    pub ranked: bool,
}

impl Estimate {
    fn of(row: &SatisfactionRow) -> Self {
        Self {
            sipas: row.sipas,
            ci_low: row.ci_low,
            ci_high: row.ci_high,
            ci_n: row.ci_n,
            ranked: row.ranked == 1,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Rankings {
    pub framework: String,
    pub window: String,
    /// True for the latest values, false for a requested `as_of` day.
    pub latest: bool,
    /// The one day every province is compared at (the requested day for historical rankings).
    pub as_of: Option<String>,
    /// The nation at `as_of`: null when no province has a value.
    pub nation: Option<Nation>,
    pub provinces: Vec<RankingEntry>,
}

/// "Trung bình cả nước": the plain mean of the ranked provinces' SIPAS with a 95 %
/// interval from the provinces' own (as `nation_daily`), beside a respondent-weighted mean.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Nation {
    pub as_of: String,
    /// Ranked provinces in the mean.
    pub provinces: u64,
    pub sipas: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Every province with a value, weighted by respondents.
    pub sipas_respondent_weighted: Option<f64>,
    pub respondents: u64,
}

fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

impl Nation {
    pub fn from_row(row: NationRow, as_of: i64) -> Self {
        Self {
            as_of: format_day(as_of),
            provinces: row.provinces,
            sipas: finite(row.sipas_mean_of_provinces),
            ci_low: finite(row.ci_low),
            ci_high: finite(row.ci_high),
            sipas_respondent_weighted: finite(row.sipas_respondent_weighted),
            respondents: row.total_respondents,
        }
    }

    /// The nation of province rows of one day, computed as `nation_daily` computes it:
    /// the mean of ranked provinces ± 1.96 × sqrt(Σ p(1−p)/n) / k (normal approximation of a
    /// mean of independent shares, `n` = each province's interval `n`), within 0..100.
    pub fn of(rows: &[SatisfactionRow], as_of: i64) -> Option<Self> {
        let valued: Vec<(&SatisfactionRow, f64)> = rows
            .iter()
            .filter_map(|r| r.sipas.filter(|s| s.is_finite()).map(|s| (r, s)))
            .collect();
        if valued.is_empty() {
            return None;
        }
        let ranked: Vec<(&SatisfactionRow, f64)> = valued
            .iter()
            .copied()
            .filter(|(r, _)| r.ranked == 1)
            .collect();
        let k = ranked.len() as f64;
        let mean = (!ranked.is_empty()).then(|| ranked.iter().map(|(_, s)| s).sum::<f64>() / k);
        let variance: f64 = ranked
            .iter()
            .filter(|(r, _)| r.ci_n > 0)
            .map(|(r, s)| (s / 100.0) * (1.0 - s / 100.0) / f64::from(r.ci_n))
            .sum();
        let margin = 196.0 * variance.sqrt() / k;
        let respondents: u64 = valued.iter().map(|(r, _)| u64::from(r.respondents)).sum();
        let weighted: f64 = valued
            .iter()
            .map(|(r, s)| s * f64::from(r.respondents))
            .sum();
        Some(Self {
            as_of: format_day(as_of),
            provinces: ranked.len() as u64,
            sipas: mean,
            ci_low: mean.map(|m| (m - margin).max(0.0)),
            ci_high: mean.map(|m| (m + margin).min(100.0)),
            sipas_respondent_weighted: finite(Some(weighted / respondents as f64)),
            respondents,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Factors {
    pub access: Option<f64>,
    pub procedure: Option<f64>,
    pub staff: Option<f64>,
    pub result: Option<f64>,
    pub feedback: Option<f64>,
}

impl Factors {
    fn of(row: &SatisfactionRow) -> Self {
        Self {
            access: factor(row, "access"),
            procedure: factor(row, "procedure"),
            staff: factor(row, "staff"),
            result: factor(row, "result"),
            feedback: factor(row, "feedback"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RankingEntry {
    /// Competition rank among ranked provinces; null when the sample is too small.
    pub rank: Option<u32>,
    pub province_code: String,
    pub province_name: String,
    pub as_of: String,
    pub period: String,
    pub sipas: Option<f64>,
    pub factors: Factors,
    pub respondents: u32,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The `n` of the interval: valid answers behind the value (SIPAS.md §3).
    pub ci_n: u32,
    pub ranked: bool,
    /// Against the previous period of the same length (see `params::previous_as_of`).
    pub change: Change,
    /// Against the same period of the previous year (see `params::previous_year_as_of`).
    pub previous_year: Change,
}

/// A comparison with an earlier period of the same window.
#[derive(Debug, Serialize)]
pub struct Change {
    pub previous_as_of: String,
    pub previous_sipas: Option<f64>,
    pub sipas_delta: Option<f64>,
    pub previous_rank: Option<u32>,
    /// Places gained (previous rank − rank); positive means moved up.
    pub rank_delta: Option<i64>,
    /// The change is significant at 95 % (two-proportion z-test); null without both values.
    pub significant: Option<bool>,
}

/// A value with its rank and interval `n`, looked up by province and day.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    sipas: Option<f64>,
    rank: Option<u32>,
    ci_n: u32,
}

impl Ranked {
    fn of(row: &SatisfactionRow, rank: Option<u32>) -> Self {
        Self {
            sipas: row.sipas,
            rank,
            ci_n: row.ci_n,
        }
    }
}

/// Ranks rows of any number of days, each day among its own rows.
fn ranked_by_day(rows: &[SatisfactionRow]) -> HashMap<(&str, u16), Ranked> {
    let mut days: BTreeMap<u16, Vec<&SatisfactionRow>> = BTreeMap::new();
    for row in rows {
        days.entry(row.as_of).or_default().push(row);
    }
    let mut out = HashMap::new();
    for (day, rows) in days {
        for (row, rank) in rows.iter().zip(ranks(&rows)) {
            out.insert((row.unit_id.as_str(), day), Ranked::of(row, rank));
        }
    }
    out
}

fn change(now: Ranked, day: i64, earlier: &HashMap<(&str, u16), Ranked>, code: &str) -> Change {
    let then = u16::try_from(day)
        .ok()
        .and_then(|d| earlier.get(&(code, d)))
        .copied();
    let previous_sipas = then.and_then(|t| t.sipas);
    let previous_rank = then.and_then(|t| t.rank);
    Change {
        previous_as_of: format_day(day),
        previous_sipas,
        sipas_delta: now.sipas.zip(previous_sipas).map(|(a, b)| a - b),
        previous_rank,
        rank_delta: now
            .rank
            .zip(previous_rank)
            .map(|(now, then)| i64::from(then) - i64::from(now)),
        significant: significant(
            now.sipas,
            now.ci_n,
            previous_sipas,
            then.map_or(0, |t| t.ci_n),
        ),
    }
}

/// A value's comparisons with the previous period and with the same period of the
/// previous year.
fn changes(
    now: Ranked,
    window: Window,
    day: i64,
    earlier: &HashMap<(&str, u16), Ranked>,
    code: &str,
) -> (Change, Change) {
    let previous_year = previous_year_as_of(window, day).unwrap_or(day - 365);
    (
        change(now, previous_as_of(window, day), earlier, code),
        change(now, previous_year, earlier, code),
    )
}

/// What a ranking is built from: the provinces at one day and their values in the
/// earlier periods (previous period and previous year, any order, other days ignored).
pub struct RankingInput<'a> {
    pub framework: &'a str,
    pub window: Window,
    pub requested: Option<i64>,
    pub current: Vec<SatisfactionRow>,
    pub earlier: &'a [SatisfactionRow],
    pub nation: Option<Nation>,
    pub provinces: &'a ProvinceRegistry,
}

pub fn rankings(input: RankingInput<'_>) -> Rankings {
    let earlier = ranked_by_day(input.earlier);
    let as_of = input
        .requested
        .or_else(|| input.current.iter().map(|r| i64::from(r.as_of)).max());
    let refs: Vec<&SatisfactionRow> = input.current.iter().collect();
    let rank = ranks(&refs);
    let mut provinces: Vec<RankingEntry> = input
        .current
        .iter()
        .zip(rank)
        .map(|(r, rank)| {
            let day = i64::from(r.as_of);
            let code = r.unit_id.as_str();
            let (change, previous_year) =
                changes(Ranked::of(r, rank), input.window, day, &earlier, code);
            RankingEntry {
                change,
                previous_year,
                rank,
                province_name: province_name(input.provinces, code),
                province_code: code.to_owned(),
                as_of: format_day(day),
                period: r.period.clone(),
                sipas: r.sipas,
                factors: Factors::of(r),
                respondents: r.respondents,
                ci_low: r.ci_low,
                ci_high: r.ci_high,
                ci_n: r.ci_n,
                ranked: r.ranked == 1,
            }
        })
        .collect();
    provinces.sort_by_key(|p| rank_order(p.rank, &p.province_code));
    Rankings {
        framework: input.framework.to_owned(),
        window: input.window.label(),
        latest: input.requested.is_none(),
        as_of: as_of.map(format_day),
        nation: input.nation,
        provinces,
    }
}

/// Every agency of one province at one day, ranked among the ranked agencies.
#[derive(Debug, Serialize)]
pub struct AgencyRanking {
    pub framework: String,
    pub window: String,
    pub province_code: String,
    pub province_name: String,
    #[serde(flatten)]
    pub span: Span,
    pub min_sample: u32,
    pub agencies: Vec<AgencyEntry>,
}

#[derive(Debug, Serialize)]
pub struct AgencyEntry {
    pub rank: Option<u32>,
    pub agency_id: String,
    pub agency_level: String,
    pub respondents: u32,
    #[serde(flatten)]
    pub estimate: Estimate,
    pub factors: BTreeMap<String, Option<f64>>,
    /// With `compare=true`: against the previous period, ranked among that period's agencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// With `compare=true`: against the same period of the previous year.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_year: Option<Change>,
}

/// The day an answer is at and the span of its window there (the agency ranking and the
/// breakdown embed it whole, where these fields stood in their own lists).
#[derive(Debug, Serialize)]
pub struct Span {
    /// True for the latest values, false for a requested `as_of` day.
    pub latest: bool,
    pub as_of: Option<String>,
    /// Where the window ending on `as_of` starts.
    pub window_start: Option<String>,
    /// Which period the window ending on `as_of` is.
    pub period: Option<String>,
}

impl Span {
    fn of(window: Window, requested: Option<i64>, as_of: Option<i64>) -> Self {
        let (window_start, period) = match as_of {
            Some(day) if super::params::storable_day(day) => (
                Some(format_day(window.start(day))),
                Some(window.period(day)),
            ),
            _ => (None, None),
        };
        Self {
            latest: requested.is_none(),
            as_of: as_of.map(format_day),
            window_start,
            period,
        }
    }
}

pub struct AgencyRankingInput<'a> {
    pub framework: &'a Framework,
    pub window: Window,
    pub province: &'a str,
    pub requested: Option<i64>,
    pub as_of: Option<i64>,
    /// Agency rows (unit id = agency id) with each agency's level.
    pub agencies: Vec<(SatisfactionRow, String)>,
    /// With a comparison: the agencies' rows at the earlier days (any order).
    pub earlier: Option<Vec<SatisfactionRow>>,
    pub provinces: &'a ProvinceRegistry,
}

pub fn agency_ranking(input: AgencyRankingInput<'_>) -> AgencyRanking {
    let refs: Vec<&SatisfactionRow> = input.agencies.iter().map(|(r, _)| r).collect();
    let rank = ranks(&refs);
    let earlier = input.earlier.as_deref().map(ranked_by_day);
    let mut agencies: Vec<AgencyEntry> = input
        .agencies
        .iter()
        .zip(rank)
        .map(|((r, level), rank)| {
            let (change, previous_year) = earlier
                .as_ref()
                .map(|earlier| {
                    let day = i64::from(r.as_of);
                    changes(Ranked::of(r, rank), input.window, day, earlier, &r.unit_id)
                })
                .unzip();
            AgencyEntry {
                change,
                previous_year,
                rank,
                agency_id: r.unit_id.clone(),
                agency_level: level.clone(),
                respondents: r.respondents,
                estimate: Estimate::of(r),
                factors: factor_map(r),
            }
        })
        .collect();
    agencies.sort_by_key(|a| rank_order(a.rank, &a.agency_id));
    AgencyRanking {
        framework: input.framework.id.clone(),
        window: input.window.label(),
        province_code: input.province.to_owned(),
        province_name: province_name(input.provinces, input.province),
        span: Span::of(input.window, input.requested, input.as_of),
        min_sample: input.framework.min_sample,
        agencies,
    }
}

/// A unit's respondents split by one column, each part with its own values.
#[derive(Debug, Serialize)]
pub struct Breakdown {
    pub framework: String,
    pub window: String,
    pub by: String,
    /// The province, or null for every province pooled.
    pub province_code: Option<String>,
    pub province_name: Option<String>,
    #[serde(flatten)]
    pub span: Span,
    pub respondents: u64,
    pub values: Vec<BreakdownEntry>,
}

#[derive(Debug, Serialize)]
pub struct BreakdownEntry {
    /// The channel, respondent type, agency level or procedure code ('' = none named).
    pub value: String,
    pub respondents: u32,
    /// Share (%) of the unit's respondents.
    pub share: f64,
    #[serde(flatten)]
    pub estimate: Estimate,
    pub factors: BTreeMap<String, Option<f64>>,
}

pub struct BreakdownInput<'a> {
    pub framework: &'a str,
    pub window: Window,
    pub by: BreakdownBy,
    pub province: Option<&'a str>,
    pub requested: Option<i64>,
    pub as_of: Option<i64>,
    /// One row per value (unit id = the value).
    pub parts: Vec<SatisfactionRow>,
    pub provinces: &'a ProvinceRegistry,
}

pub fn breakdown(input: BreakdownInput<'_>) -> Breakdown {
    let total: u64 = input.parts.iter().map(|p| u64::from(p.respondents)).sum();
    let mut values: Vec<BreakdownEntry> = input
        .parts
        .into_iter()
        .map(|p| BreakdownEntry {
            share: if total > 0 {
                100.0 * f64::from(p.respondents) / total as f64
            } else {
                0.0
            },
            factors: factor_map(&p),
            estimate: Estimate::of(&p),
            respondents: p.respondents,
            value: p.unit_id,
        })
        .collect();
    values.sort_by(|a, b| {
        b.respondents
            .cmp(&a.respondents)
            .then(a.value.cmp(&b.value))
    });
    Breakdown {
        framework: input.framework.to_owned(),
        window: input.window.label(),
        by: input.by.as_str().to_owned(),
        province_code: input.province.map(str::to_owned),
        province_name: input
            .province
            .and_then(|p| input.provinces.name_2025(p))
            .map(str::to_owned),
        span: Span::of(input.window, input.requested, input.as_of),
        respondents: total,
        values,
    }
}

#[derive(Debug, Serialize)]
pub struct Unit {
    pub unit_type: String,
    pub unit_id: String,
    pub province_code: String,
    pub province_name: String,
    pub framework: String,
    pub window: String,
    pub period: String,
    pub as_of: String,
    pub window_start: String,
    pub respondents: u32,
    #[serde(flatten)]
    pub estimate: Estimate,
    pub min_sample: u32,
    pub factors: Vec<FactorDetail>,
    pub expectations: Vec<Expectation>,
    pub history: Vec<HistoryPoint>,
}

#[derive(Debug, Serialize)]
pub struct FactorDetail {
    pub id: String,
    pub name: String,
    pub value: Option<f64>,
    /// Wilson interval of the factor value; `n` = the smallest valid count among its
    /// criteria with data.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub n: u32,
    pub criteria: Vec<CriterionDetail>,
}

#[derive(Debug, Serialize)]
pub struct CriterionDetail {
    pub id: String,
    pub text: String,
    /// Share (%) of valid answers that are 4 or 5.
    pub value: Option<f64>,
    pub valid: u32,
    pub satisfied: u32,
    pub missing: u32,
    /// Wilson interval of satisfied / valid.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Expectation {
    pub id: String,
    pub text: String,
    /// Share (%) of respondents who ticked it.
    pub share: f64,
}

#[derive(Debug, Serialize)]
pub struct HistoryPoint {
    pub as_of: String,
    pub respondents: u32,
    #[serde(flatten)]
    pub estimate: Estimate,
    pub factors: BTreeMap<String, Option<f64>>,
}

fn interval(value: Option<f64>, n: u32) -> (Option<f64>, Option<f64>) {
    match value.and_then(|v| wilson(v / 100.0, f64::from(n))) {
        Some((low, high)) => (Some(low), Some(high)),
        None => (None, None),
    }
}

/// A unit's latest values with the daily history of the same window.
pub fn unit(
    unit_type: &str,
    row: &SatisfactionRow,
    history: &[SatisfactionRow],
    framework: &Framework,
    provinces: &ProvinceRegistry,
) -> Unit {
    let factors = framework
        .factors
        .iter()
        .map(|f| {
            let i = position(&row.factor_ids, &f.id);
            let value = i.and_then(|i| row.factor_values.get(i).copied().flatten());
            let n = i.and_then(|i| row.factor_n.get(i).copied()).unwrap_or(0);
            let (ci_low, ci_high) = interval(value, n);
            let criteria = f
                .criteria
                .iter()
                .map(|c| {
                    let i = position(&row.criterion_ids, &c.id);
                    let at = |v: &[u32]| i.and_then(|i| v.get(i).copied()).unwrap_or(0);
                    let value = i.and_then(|i| row.criterion_values.get(i).copied().flatten());
                    let valid = at(&row.criterion_valid);
                    let (ci_low, ci_high) = interval(value, valid);
                    CriterionDetail {
                        id: c.id.clone(),
                        text: c.text.clone(),
                        value,
                        valid,
                        satisfied: at(&row.criterion_satisfied),
                        missing: at(&row.criterion_missing),
                        ci_low,
                        ci_high,
                    }
                })
                .collect();
            FactorDetail {
                id: f.id.clone(),
                name: f.name.clone(),
                value,
                ci_low,
                ci_high,
                n,
                criteria,
            }
        })
        .collect();
    let expectations = framework
        .expectations
        .iter()
        .map(|e| Expectation {
            id: e.id.clone(),
            text: e.text.clone(),
            share: position(&row.expectation_ids, &e.id)
                .and_then(|i| row.expectation_shares.get(i).copied())
                .unwrap_or(0.0),
        })
        .collect();
    let history = history
        .iter()
        .map(|h| HistoryPoint {
            as_of: format_day(i64::from(h.as_of)),
            respondents: h.respondents,
            estimate: Estimate::of(h),
            factors: factor_map(h),
        })
        .collect();
    Unit {
        province_name: province_name(provinces, &row.province_code),
        unit_type: unit_type.to_owned(),
        unit_id: row.unit_id.clone(),
        province_code: row.province_code.clone(),
        framework: framework.id.clone(),
        window: row.window.clone(),
        period: row.period.clone(),
        as_of: format_day(i64::from(row.as_of)),
        window_start: format_day(i64::from(row.window_start)),
        respondents: row.respondents,
        estimate: Estimate::of(row),
        min_sample: row.min_sample,
        factors,
        expectations,
        history,
    }
}

#[derive(Debug, Serialize)]
pub struct HotlineKpis {
    pub window: String,
    pub by: String,
    pub province: Option<String>,
    pub as_of: Option<String>,
    pub units: Vec<HotlineUnit>,
}

#[derive(Debug, Serialize)]
pub struct HotlineUnit {
    pub unit_type: String,
    /// Unique within the answer: the province code, `province/category`,
    /// `province/agency_id`, or the channel.
    pub unit_id: String,
    pub province_code: String,
    pub province_name: String,
    /// The category for `by=category`.
    pub category: Option<String>,
    /// The agency for `by=agency` (unique only within its province).
    pub agency_id: Option<String>,
    /// The channel for `by=channel` (a ticket's channel is that of its first `received`).
    pub channel: Option<String>,
    pub as_of: String,
    pub period: String,
    /// Last, so that its fields follow `period` in the JSON as they did when listed here.
    #[serde(flatten)]
    pub kpi: HotlineKpi,
}

/// The part of `province/part` after the province.
fn within_province(unit_id: &str) -> String {
    unit_id
        .split_once('/')
        .map_or(unit_id, |(_, rest)| rest)
        .to_owned()
}

pub fn hotline(
    window: &str,
    by: HotlineBy,
    province: Option<String>,
    requested: Option<i64>,
    rows: Vec<HotlineKpiRow>,
    provinces: &ProvinceRegistry,
) -> HotlineKpis {
    // The requested day, even with no values at it; else the day the values are at.
    let as_of = requested.map(format_day).or_else(|| {
        rows.iter()
            .map(|r| r.as_of)
            .max()
            .map(|d| format_day(i64::from(d)))
    });
    let mut units: Vec<HotlineUnit> = rows
        .into_iter()
        .map(|r| HotlineUnit {
            kpi: r.kpi(),
            category: (by == HotlineBy::Category).then(|| within_province(&r.unit_id)),
            agency_id: (by == HotlineBy::Agency).then(|| within_province(&r.unit_id)),
            channel: (by == HotlineBy::Channel).then(|| r.unit_id.clone()),
            province_name: province_name(provinces, &r.province_code),
            unit_type: by.as_str().to_owned(),
            unit_id: r.unit_id,
            province_code: r.province_code,
            as_of: format_day(i64::from(r.as_of)),
            period: r.period,
        })
        .collect();
    units.sort_by(|a, b| {
        b.kpi
            .received
            .cmp(&a.kpi.received)
            .then(a.unit_id.cmp(&b.unit_id))
    });
    HotlineKpis {
        window: window.to_owned(),
        by: by.as_str().to_owned(),
        province,
        as_of,
        units,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FrameworkCatalog;
    use crate::index::survey::{compute, SurveyCounts};
    use crate::index::values::{satisfaction_value, UnitKey, UnitType};
    use crate::index::window::from_date;

    fn frameworks() -> FrameworkCatalog {
        FrameworkCatalog::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/frameworks"),
        )
        .unwrap()
    }

    /// A province row whose SIPAS is `satisfied` of `valid` on every criterion.
    fn row(
        framework: &Framework,
        code: &str,
        as_of: i64,
        respondents: u32,
        valid: u32,
        satisfied: u32,
    ) -> SatisfactionRow {
        let n = framework.criterion_ids().count();
        let counts = SurveyCounts::from_parts(
            respondents,
            &vec![valid; n],
            &vec![satisfied; n],
            &vec![respondents - valid; n],
            &vec![0; framework.expectations.len()],
        );
        let unit = UnitKey {
            unit_type: UnitType::Province,
            unit_id: code.into(),
            province_code: code.into(),
        };
        SatisfactionRow::new(
            &satisfaction_value(framework, &unit, Window::Rolling(30), as_of, &counts, 0),
            framework,
        )
    }

    #[test]
    fn significance_is_a_two_proportion_z_test() {
        // 80 % of 400 vs 70 % of 400: z ≈ 3.27 → significant; 80 % of 40 vs 75 % of 40: no.
        assert_eq!(significant(Some(80.0), 400, Some(70.0), 400), Some(true));
        assert_eq!(significant(Some(80.0), 40, Some(75.0), 40), Some(false));
        // Hand-computed boundary: p1 = 0.6, p2 = 0.5, n = 200 each: pooled 0.55,
        // se = sqrt(0.55 × 0.45 × 0.01) = 0.04975, z = 2.01 > 1.96.
        assert_eq!(significant(Some(60.0), 200, Some(50.0), 200), Some(true));
        // n = 180 each: se = 0.05244, z = 1.907 < 1.96.
        assert_eq!(significant(Some(60.0), 180, Some(50.0), 180), Some(false));
        assert_eq!(significant(Some(100.0), 50, Some(100.0), 60), Some(false));
        assert_eq!(significant(None, 50, Some(80.0), 60), None);
        assert_eq!(significant(Some(80.0), 0, Some(80.0), 60), None);
        assert_eq!(significant(Some(f64::NAN), 10, Some(80.0), 60), None);
    }

    #[test]
    fn rankings_rank_one_day_and_compare_with_both_earlier_periods() {
        let catalog = frameworks();
        let f = catalog.get("BNV-2640-2017").unwrap();
        let as_of = from_date(time::macros::date!(2026 - 11 - 20));
        let before = as_of - 30;
        let year_before = from_date(time::macros::date!(2025 - 11 - 20));
        let current = vec![
            row(f, "79", as_of, 400, 400, 320), // 80 %
            row(f, "01", as_of, 400, 400, 360), // 90 %
            row(f, "48", as_of, 400, 400, 320), // 80 %, ties with 79
            row(f, "92", as_of, 10, 10, 10),    // 100 %, unranked
        ];
        let earlier = vec![
            row(f, "79", before, 400, 400, 280), // 70 % → +10, significant
            row(f, "01", before, 400, 400, 356), // 89 % → +1, not significant
            row(f, "79", year_before, 400, 400, 320),
            row(f, "79", as_of - 31, 400, 400, 0), // another day: ignored
        ];
        let registry = ProvinceRegistry::builtin();
        let nation = Nation::of(&current, as_of);
        let r = rankings(RankingInput {
            framework: "BNV-2640-2017",
            window: Window::Rolling(30),
            requested: None,
            current,
            earlier: &earlier,
            nation: nation.clone(),
            provinces: &registry,
        });
        assert!(r.latest);
        assert_eq!(r.as_of, Some(format_day(as_of)));
        let order: Vec<(&str, Option<u32>)> = r
            .provinces
            .iter()
            .map(|p| (p.province_code.as_str(), p.rank))
            .collect();
        assert_eq!(
            order,
            vec![
                ("01", Some(1)),
                ("48", Some(2)),
                ("79", Some(2)),
                ("92", None)
            ]
        );
        let hcm = &r.provinces[2];
        assert_eq!(hcm.province_name, "Thành phố Hồ Chí Minh");
        assert_eq!(hcm.ci_n, 400);
        assert_eq!(hcm.change.previous_as_of, format_day(before));
        assert!((hcm.change.sipas_delta.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(
            hcm.change.previous_rank,
            Some(2),
            "ranked among that day's rows"
        );
        assert_eq!(hcm.change.rank_delta, Some(0));
        assert_eq!(hcm.change.significant, Some(true));
        assert_eq!(hcm.previous_year.previous_as_of, format_day(year_before));
        assert_eq!(hcm.previous_year.previous_rank, Some(1));
        assert_eq!(hcm.previous_year.sipas_delta, Some(0.0));
        assert_eq!(hcm.previous_year.significant, Some(false));
        let hanoi = &r.provinces[0];
        assert_eq!(hanoi.change.significant, Some(false));
        assert_eq!(hanoi.previous_year.previous_sipas, None);
        assert_eq!(hanoi.previous_year.significant, None);
        assert_eq!(r.provinces[3].change.previous_sipas, None);
        // The nation: mean of the three ranked provinces (80, 90, 80).
        let nation = r.nation.unwrap();
        assert_eq!(nation.provinces, 3);
        assert!((nation.sipas.unwrap() - 250.0 / 3.0).abs() < 1e-9);
        let margin = 196.0 * (2.0 * 0.8 * 0.2 / 400.0 + 0.9 * 0.1 / 400.0_f64).sqrt() / 3.0;
        assert!((nation.ci_low.unwrap() - (250.0 / 3.0 - margin)).abs() < 1e-9);
        assert!((nation.ci_high.unwrap() - (250.0 / 3.0 + margin)).abs() < 1e-9);
        assert_eq!(nation.respondents, 1210);
        let weighted = (80.0 * 800.0 + 90.0 * 400.0 + 100.0 * 10.0) / 1210.0;
        assert!((nation.sipas_respondent_weighted.unwrap() - weighted).abs() < 1e-9);
        let json = serde_json::to_value(&r.provinces[0]).unwrap();
        assert_eq!(json["factors"]["staff"], 90.0);
        assert!(json["previous_year"]["significant"].is_null());
    }

    #[test]
    fn the_nation_without_ranked_provinces_has_no_mean() {
        let catalog = frameworks();
        let f = catalog.get("BNV-2640-2017").unwrap();
        assert_eq!(Nation::of(&[], 1), None);
        let small = Nation::of(&[row(f, "79", 1, 5, 5, 4)], 1).unwrap();
        assert_eq!(
            (small.provinces, small.sipas, small.ci_low),
            (0, None, None)
        );
        assert_eq!(small.respondents, 5);
        let from_view = Nation::from_row(
            NationRow {
                provinces: 0,
                sipas_mean_of_provinces: Some(f64::NAN),
                ci_low: None,
                ci_high: None,
                sipas_respondent_weighted: Some(80.0),
                total_respondents: 5,
            },
            1,
        );
        assert_eq!(from_view.sipas, None, "NaN (avg of nothing) is no value");
    }

    #[test]
    fn agency_ranking_and_breakdown_shapes() {
        let catalog = frameworks();
        let f = catalog.get("BNV-2640-2017").unwrap();
        let registry = ProvinceRegistry::builtin();
        let as_of = from_date(time::macros::date!(2026 - 11 - 20));
        let mut a = row(f, "a", as_of, 40, 40, 20);
        a.province_code = "79".into();
        let mut b = row(f, "b", as_of, 50, 50, 40);
        b.province_code = "79".into();
        let c = row(f, "c", as_of, 3, 3, 3);
        let ranking = agency_ranking(AgencyRankingInput {
            framework: f,
            window: Window::Month,
            province: "79",
            requested: None,
            as_of: Some(as_of),
            agencies: vec![
                (a.clone(), "commune".into()),
                (c.clone(), "province".into()),
                (b.clone(), "province".into()),
            ],
            earlier: None,
            provinces: &registry,
        });
        assert!(
            ranking.agencies[0].change.is_none(),
            "no comparison unless asked"
        );
        let ids: Vec<(&str, Option<u32>)> = ranking
            .agencies
            .iter()
            .map(|e| (e.agency_id.as_str(), e.rank))
            .collect();
        assert_eq!(ids, vec![("b", Some(1)), ("a", Some(2)), ("c", None)]);
        assert_eq!(ranking.span.window_start.as_deref(), Some("2026-11-01"));
        assert_eq!(ranking.span.period.as_deref(), Some("2026-11"));
        assert_eq!(ranking.agencies[0].factors["access"], Some(80.0));
        assert_eq!(ranking.agencies[1].agency_level, "commune");
        // The embedded span and estimate keep the fields' places in the JSON.
        let json = serde_json::to_string(&ranking).unwrap();
        assert!(
            json.starts_with(concat!(
                r#"{"framework":"BNV-2640-2017","window":"month","province_code":"79","#,
                r#""province_name":"Thành phố Hồ Chí Minh","latest":true,"as_of":"2026-11-20","#,
                r#""window_start":"2026-11-01","period":"2026-11","min_sample":30,"#,
                r#""agencies":[{"rank":1,"agency_id":"b","agency_level":"province","#,
                r#""respondents":50,"sipas":80.0,"ci_low":66.9628940677746,"#,
                r#""ci_high":88.7562499842239,"ci_n":50,"ranked":true,"factors":{"access":80.0,"#,
            )),
            "{json}"
        );

        // Compared with the previous month: a was alone there (rank 1, now 2).
        let october = previous_as_of(Window::Month, as_of);
        let mut a_before = row(f, "a", october, 45, 45, 45);
        a_before.province_code = "79".into();
        let compared = agency_ranking(AgencyRankingInput {
            framework: f,
            window: Window::Month,
            province: "79",
            requested: None,
            as_of: Some(as_of),
            agencies: vec![
                (a.clone(), "commune".into()),
                (b.clone(), "province".into()),
            ],
            earlier: Some(vec![a_before.clone()]),
            provinces: &registry,
        });
        let a_entry = compared
            .agencies
            .iter()
            .find(|e| e.agency_id == "a")
            .unwrap();
        let change = a_entry.change.as_ref().unwrap();
        assert_eq!(change.previous_as_of, format_day(october));
        assert_eq!(change.previous_sipas, a_before.sipas);
        assert_eq!(change.previous_rank, Some(1));
        assert_eq!(change.rank_delta, Some(-1));
        let b_entry = compared
            .agencies
            .iter()
            .find(|e| e.agency_id == "b")
            .unwrap();
        assert_eq!(b_entry.change.as_ref().unwrap().previous_sipas, None);
        assert_eq!(b_entry.previous_year.as_ref().unwrap().previous_sipas, None);

        let parts = vec![a, b, c];
        let split = breakdown(BreakdownInput {
            framework: "BNV-2640-2017",
            window: Window::Rolling(45),
            by: BreakdownBy::Channel,
            province: Some("79"),
            requested: Some(as_of),
            as_of: Some(as_of),
            parts,
            provinces: &registry,
        });
        assert_eq!(split.respondents, 93);
        assert_eq!(split.values[0].value, "b");
        assert!((split.values.iter().map(|v| v.share).sum::<f64>() - 100.0).abs() < 1e-9);
        assert_eq!(
            split.province_name.as_deref(),
            Some("Thành phố Hồ Chí Minh")
        );
        assert_eq!(split.window, "45d");
        assert!(!split.span.latest);
        let json = serde_json::to_string(&split).unwrap();
        assert!(
            json.starts_with(concat!(
                r#"{"framework":"BNV-2640-2017","window":"45d","by":"channel","#,
                r#""province_code":"79","province_name":"Thành phố Hồ Chí Minh","#,
                r#""latest":false,"as_of":"2026-11-20","window_start":"2026-10-07","#,
                r#""period":"","respondents":93,"values":[{"value":"b","respondents":50,"#,
                r#""share":53.763440860215056,"sipas":80.0,"ci_low":66.9628940677746,"#,
                r#""ci_high":88.7562499842239,"ci_n":50,"ranked":true,"factors":{"access":80.0,"#,
            )),
            "{json}"
        );
    }

    #[test]
    fn unit_breakdown_follows_the_framework_with_intervals() {
        let catalog = frameworks();
        let framework = catalog.get("BNV-2640-2017").unwrap();
        let n = framework.criterion_ids().count();
        // Criterion 0 has 10 valid answers, every other 40: access's n is 10.
        let mut valid = vec![40; n];
        valid[0] = 10;
        let mut satisfied = vec![30; n];
        satisfied[0] = 5;
        let missing: Vec<u32> = valid.iter().map(|v| 50 - v).collect();
        let mut ticks = vec![0; framework.expectations.len()];
        ticks[0] = 5;
        let counts = SurveyCounts::from_parts(50, &valid, &satisfied, &missing, &ticks);
        let unit_key = UnitKey {
            unit_type: UnitType::Province,
            unit_id: "79".into(),
            province_code: "79".into(),
        };
        let as_of = 20_000;
        let value =
            satisfaction_value(framework, &unit_key, Window::Rolling(30), as_of, &counts, 0);
        let latest = SatisfactionRow::new(&value, framework);
        let history = vec![latest.clone()];
        let u = unit(
            "province",
            &latest,
            &history,
            framework,
            &ProvinceRegistry::builtin(),
        );
        assert_eq!(u.province_name, "Thành phố Hồ Chí Minh");
        assert_eq!(u.window, "30d");
        assert_eq!(u.factors.len(), 5);
        assert_eq!(u.factors.iter().map(|f| f.criteria.len()).sum::<usize>(), n);
        let c = &u.factors[0].criteria[0];
        assert_eq!(
            (c.value, c.valid, c.satisfied, c.missing),
            (Some(50.0), 10, 5, 40)
        );
        let (low, high) = wilson(0.5, 10.0).unwrap();
        assert_eq!((c.ci_low, c.ci_high), (Some(low), Some(high)));
        let access = &u.factors[0];
        assert_eq!(access.n, 10, "the smallest valid count among its criteria");
        let (low, high) = wilson(access.value.unwrap() / 100.0, 10.0).unwrap();
        assert_eq!((access.ci_low, access.ci_high), (Some(low), Some(high)));
        let index = compute(&counts, framework);
        assert_eq!(u.estimate.ci_n, index.interval_n);
        assert_eq!(u.estimate.sipas, index.sipas);
        assert_eq!(u.expectations[0].share, 10.0);
        assert!(u.expectations[1..].iter().all(|e| e.share == 0.0));
        assert_eq!(u.history[0].factors["access"], access.value);
        assert_eq!(u.history[0].as_of, format_day(as_of));
        let json = serde_json::to_string(&u).unwrap();
        assert!(
            json.contains(concat!(
                r#""window_start":"2024-09-05","respondents":50,"sipas":73.75,"#,
                r#""ci_low":43.0601985174722,"ci_high":91.25699348904057,"ci_n":10,"#,
                r#""ranked":true,"min_sample":30,"factors":[{"#,
            )),
            "{json}"
        );
        assert!(
            json.ends_with(concat!(
                r#""history":[{"as_of":"2024-10-04","respondents":50,"sipas":73.75,"#,
                r#""ci_low":43.0601985174722,"ci_high":91.25699348904057,"ci_n":10,"#,
                r#""ranked":true,"factors":{"access":68.75,"feedback":75.0,"procedure":75.0,"#,
                r#""result":75.0,"staff":75.0}}]}"#,
            )),
            "{json}"
        );
    }

    #[test]
    fn hotline_parts_are_split_from_unit_ids() {
        let row = |unit_id: &str, received| HotlineKpiRow {
            unit_type: "category".into(),
            unit_id: unit_id.into(),
            province_code: "79".into(),
            window: "30d".into(),
            period: String::new(),
            as_of: 20000,
            window_start: 19971,
            received,
            responded: 8,
            responded_on_time: 6,
            on_time_rate: Some(75.0),
            median_response_hours: Some(3.0),
            rated: 4,
            satisfaction_rate: Some(50.0),
            reopened: 1,
            reopen_rate: Some(12.5),
            rejected: 0,
            open_past_due: 2,
            version: 0,
        };
        let registry = ProvinceRegistry::builtin();
        let k = hotline(
            "30d",
            HotlineBy::Category,
            Some("79".into()),
            None,
            vec![row("79/water", 10), row("79/traffic", 12)],
            &registry,
        );
        assert_eq!(
            k.units[0].category.as_deref(),
            Some("traffic"),
            "most tickets first"
        );
        assert_eq!(k.units[1].category.as_deref(), Some("water"));
        assert_eq!(k.as_of, Some(format_day(20000)));
        let k = hotline(
            "30d",
            HotlineBy::Agency,
            None,
            None,
            vec![row("79/a/b", 1)],
            &registry,
        );
        assert_eq!(k.units[0].agency_id.as_deref(), Some("a/b"));
        assert_eq!(k.units[0].unit_type, "agency");
        assert_eq!(k.units[0].category, None);
        let k = hotline(
            "30d",
            HotlineBy::Channel,
            None,
            None,
            vec![row("zalo", 1)],
            &registry,
        );
        assert_eq!(k.units[0].channel.as_deref(), Some("zalo"));
        // The embedded KPI set follows `period`, in its own order.
        assert_eq!(
            serde_json::to_string(&k.units[0]).unwrap(),
            concat!(
                r#"{"unit_type":"channel","unit_id":"zalo","province_code":"79","#,
                r#""province_name":"Thành phố Hồ Chí Minh","category":null,"agency_id":null,"#,
                r#""channel":"zalo","as_of":"2024-10-04","period":"","received":1,"#,
                r#""responded":8,"responded_on_time":6,"on_time_rate":75.0,"#,
                r#""median_response_hours":3.0,"rated":4,"satisfaction_rate":50.0,"#,
                r#""reopened":1,"reopen_rate":12.5,"rejected":0,"open_past_due":2}"#,
            )
        );
        // A requested day is answered as that day, with or without values at it.
        let k = hotline(
            "30d",
            HotlineBy::Province,
            None,
            Some(19990),
            Vec::new(),
            &registry,
        );
        assert_eq!(k.as_of, Some(format_day(19990)));
        assert!(k.units.is_empty());
    }
}
