//! JSON responses of the read API, built from index rows (pure). The shapes are the ones
//! documented in `openapi.json`; values are unrounded (clients round for display).
use std::collections::HashMap;

use serde::Serialize;

use super::params::format_day;
use super::rows::{HistoryRow, HotlineRow, PreviousRow, RankingRow, UnitRow};
use crate::domain::{Framework, ProvinceRegistry};
use crate::index::survey::wilson;

#[derive(Debug, Serialize)]
pub struct Rankings {
    pub framework: String,
    pub window: String,
    /// True for the latest values, false for a requested `as_of` day.
    pub latest: bool,
    /// Newest `as_of` among the rows (the requested day for historical rankings).
    pub as_of: Option<String>,
    pub provinces: Vec<RankingEntry>,
}

#[derive(Debug, Serialize)]
pub struct Factors {
    pub access: Option<f64>,
    pub procedure: Option<f64>,
    pub staff: Option<f64>,
    pub result: Option<f64>,
    pub feedback: Option<f64>,
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
    pub ranked: bool,
    pub change: Change,
}

/// Against the previous period of the same length (see `params::previous_as_of`).
#[derive(Debug, Serialize)]
pub struct Change {
    pub previous_as_of: String,
    pub previous_sipas: Option<f64>,
    pub sipas_delta: Option<f64>,
    pub previous_rank: Option<u32>,
    /// Places gained (previous rank − rank); positive means moved up.
    pub rank_delta: Option<i64>,
}

pub fn rankings(
    framework: &str,
    window: &str,
    requested: Option<i64>,
    rows: Vec<RankingRow>,
    previous: &[PreviousRow],
    previous_of: impl Fn(i64) -> i64,
) -> Rankings {
    let before: HashMap<(&str, u16), &PreviousRow> = previous
        .iter()
        .map(|p| ((p.province_code.as_str(), p.as_of), p))
        .collect();
    let as_of = match requested {
        Some(day) => Some(format_day(day)),
        None => rows
            .iter()
            .map(|r| r.as_of)
            .max()
            .map(|d| format_day(i64::from(d))),
    };
    let provinces = rows
        .into_iter()
        .map(|r| {
            let previous_day = previous_of(i64::from(r.as_of));
            let earlier = u16::try_from(previous_day)
                .ok()
                .and_then(|d| before.get(&(r.province_code.as_str(), d)));
            let previous_sipas = earlier.and_then(|p| p.sipas);
            let previous_rank = earlier.and_then(|p| p.rank);
            RankingEntry {
                change: Change {
                    previous_as_of: format_day(previous_day),
                    previous_sipas,
                    sipas_delta: r.sipas.zip(previous_sipas).map(|(now, then)| now - then),
                    previous_rank,
                    rank_delta: r
                        .rank
                        .zip(previous_rank)
                        .map(|(now, then)| i64::from(then) - i64::from(now)),
                },
                rank: r.rank,
                as_of: format_day(i64::from(r.as_of)),
                period: r.period,
                sipas: r.sipas,
                factors: Factors {
                    access: r.access,
                    procedure: r.procedure,
                    staff: r.staff,
                    result: r.result,
                    feedback: r.feedback,
                },
                respondents: r.respondents,
                ci_low: r.ci_low,
                ci_high: r.ci_high,
                ranked: r.ranked == 1,
                province_name: r.province_name,
                province_code: r.province_code,
            }
        })
        .collect();
    Rankings {
        framework: framework.to_owned(),
        window: window.to_owned(),
        latest: requested.is_none(),
        as_of,
        provinces,
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
    pub sipas: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ranked: bool,
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
    /// Wilson interval of the factor value with n = respondents (as for SIPAS).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
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
    pub sipas: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ranked: bool,
    pub factors: HashMap<String, Option<f64>>,
}

fn interval(value: Option<f64>, n: u32) -> (Option<f64>, Option<f64>) {
    match value.and_then(|v| wilson(v / 100.0, f64::from(n))) {
        Some((low, high)) => (Some(low), Some(high)),
        None => (None, None),
    }
}

pub fn unit(
    row: UnitRow,
    history: Vec<HistoryRow>,
    framework: &Framework,
    window: &str,
    provinces: &ProvinceRegistry,
) -> Unit {
    let position = |ids: &[String], id: &str| ids.iter().position(|x| x == id);
    let factors = framework
        .factors
        .iter()
        .map(|f| {
            let value = position(&row.factor_ids, &f.id)
                .and_then(|i| row.factor_values.get(i).copied().flatten());
            let (ci_low, ci_high) = interval(value, row.respondents);
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
        .into_iter()
        .map(|h| HistoryPoint {
            as_of: format_day(i64::from(h.as_of)),
            respondents: h.respondents,
            sipas: h.sipas,
            ci_low: h.ci_low,
            ci_high: h.ci_high,
            ranked: h.ranked == 1,
            factors: h.factor_ids.into_iter().zip(h.factor_values).collect(),
        })
        .collect();
    Unit {
        province_name: provinces
            .name_2025(&row.province_code)
            .unwrap_or_default()
            .to_owned(),
        unit_type: row.unit_type,
        unit_id: row.unit_id,
        province_code: row.province_code,
        framework: framework.id.clone(),
        window: window.to_owned(),
        period: row.period,
        as_of: format_day(i64::from(row.as_of)),
        window_start: format_day(i64::from(row.window_start)),
        respondents: row.respondents,
        sipas: row.sipas,
        ci_low: row.ci_low,
        ci_high: row.ci_high,
        ranked: row.ranked == 1,
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
    pub unit_id: String,
    pub province_code: String,
    pub province_name: String,
    /// The category for `by=category` (unit ids are `province/category`).
    pub category: Option<String>,
    pub as_of: String,
    pub period: String,
    pub received: u32,
    pub responded: u32,
    pub responded_on_time: u32,
    pub on_time_rate: Option<f64>,
    pub median_response_hours: Option<f64>,
    pub rated: u32,
    pub satisfaction_rate: Option<f64>,
    pub reopened: u32,
    pub reopen_rate: Option<f64>,
    pub rejected: u32,
    pub open_past_due: u32,
}

pub fn hotline(
    window: &str,
    by: &str,
    province: Option<String>,
    rows: Vec<HotlineRow>,
    provinces: &ProvinceRegistry,
) -> HotlineKpis {
    let as_of = rows
        .iter()
        .map(|r| r.as_of)
        .max()
        .map(|d| format_day(i64::from(d)));
    let units = rows
        .into_iter()
        .map(|r| HotlineUnit {
            category: (r.unit_type == "category").then(|| {
                r.unit_id
                    .split_once('/')
                    .map_or(r.unit_id.as_str(), |(_, c)| c)
                    .to_owned()
            }),
            province_name: provinces
                .name_2025(&r.province_code)
                .unwrap_or_default()
                .to_owned(),
            unit_type: r.unit_type,
            unit_id: r.unit_id,
            province_code: r.province_code,
            as_of: format_day(i64::from(r.as_of)),
            period: r.period,
            received: r.received,
            responded: r.responded,
            responded_on_time: r.responded_on_time,
            on_time_rate: r.on_time_rate,
            median_response_hours: r.median_response_hours,
            rated: r.rated,
            satisfaction_rate: r.satisfaction_rate,
            reopened: r.reopened,
            reopen_rate: r.reopen_rate,
            rejected: r.rejected,
            open_past_due: r.open_past_due,
        })
        .collect();
    HotlineKpis {
        window: window.to_owned(),
        by: by.to_owned(),
        province,
        as_of,
        units,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(code: &str, as_of: u16, sipas: f64, rank: Option<u32>) -> RankingRow {
        RankingRow {
            province_code: code.into(),
            province_name: format!("P{code}"),
            period: String::new(),
            as_of,
            sipas: Some(sipas),
            access: Some(1.0),
            procedure: None,
            staff: Some(2.0),
            result: Some(3.0),
            feedback: Some(4.0),
            respondents: 40,
            ci_low: Some(sipas - 5.0),
            ci_high: Some(sipas + 5.0),
            ranked: u8::from(rank.is_some()),
            rank,
        }
    }

    #[test]
    fn change_compares_with_the_previous_period_of_each_row() {
        let rows = vec![
            ranking("01", 100, 80.0, Some(1)),
            ranking("79", 99, 70.0, Some(2)),
            ranking("92", 100, 90.0, None),
        ];
        let previous = vec![
            PreviousRow {
                province_code: "01".into(),
                as_of: 70,
                sipas: Some(75.0),
                rank: Some(2),
            },
            PreviousRow {
                province_code: "79".into(),
                as_of: 69,
                sipas: Some(72.5),
                rank: Some(1),
            },
            // Not the previous period of 79: ignored.
            PreviousRow {
                province_code: "79".into(),
                as_of: 70,
                sipas: Some(10.0),
                rank: Some(9),
            },
        ];
        let r = rankings("F", "30d", None, rows, &previous, |d| d - 30);
        assert_eq!(r.as_of.as_deref(), Some(format_day(100).as_str()));
        assert!(r.latest);
        let first = &r.provinces[0].change;
        assert_eq!(
            (
                first.previous_sipas,
                first.sipas_delta,
                first.previous_rank,
                first.rank_delta
            ),
            (Some(75.0), Some(5.0), Some(2), Some(1))
        );
        assert_eq!(first.previous_as_of, format_day(70));
        let second = &r.provinces[1].change;
        assert_eq!(
            (second.sipas_delta, second.rank_delta),
            (Some(-2.5), Some(-1))
        );
        let unranked = &r.provinces[2];
        assert_eq!(
            (
                unranked.rank,
                unranked.ranked,
                unranked.change.previous_sipas
            ),
            (None, false, None)
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["provinces"][0]["factors"]["procedure"],
            serde_json::Value::Null
        );
        assert_eq!(json["provinces"][0]["factors"]["feedback"], 4.0);
    }

    #[test]
    fn unit_breakdown_follows_the_framework_with_intervals() {
        let framework = crate::domain::FrameworkCatalog::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/frameworks"),
        )
        .unwrap();
        let framework = framework.get("BNV-2640-2017").unwrap();
        let criterion_ids: Vec<String> = framework.criterion_ids().map(str::to_owned).collect();
        let n = criterion_ids.len();
        let row = UnitRow {
            unit_type: "province".into(),
            unit_id: "79".into(),
            province_code: "79".into(),
            period: String::new(),
            as_of: 20000,
            window_start: 19971,
            respondents: 50,
            sipas: Some(80.0),
            ci_low: Some(70.0),
            ci_high: Some(88.0),
            ranked: 1,
            min_sample: 30,
            factor_ids: framework.factors.iter().map(|f| f.id.clone()).collect(),
            factor_values: vec![Some(80.0); 5],
            criterion_valid: vec![40; n],
            criterion_satisfied: vec![30; n],
            criterion_missing: vec![10; n],
            criterion_values: vec![Some(75.0); n],
            criterion_ids,
            expectation_ids: vec![framework.expectations[0].id.clone()],
            expectation_shares: vec![12.5],
        };
        let history = vec![HistoryRow {
            as_of: 19999,
            respondents: 49,
            sipas: Some(79.0),
            ci_low: None,
            ci_high: None,
            ranked: 1,
            factor_ids: vec!["access".into()],
            factor_values: vec![Some(1.0)],
        }];
        let u = unit(row, history, framework, "30d", &ProvinceRegistry::builtin());
        assert_eq!(u.province_name, "Thành phố Hồ Chí Minh");
        assert_eq!(u.factors.len(), 5);
        assert_eq!(u.factors.iter().map(|f| f.criteria.len()).sum::<usize>(), n);
        let c = &u.factors[0].criteria[0];
        assert_eq!(
            (c.value, c.valid, c.satisfied, c.missing),
            (Some(75.0), 40, 30, 10)
        );
        let (low, high) = wilson(0.75, 40.0).unwrap();
        assert_eq!((c.ci_low, c.ci_high), (Some(low), Some(high)));
        assert_eq!(u.expectations[0].share, 12.5);
        assert!(u.expectations[1..].iter().all(|e| e.share == 0.0));
        assert_eq!(u.history[0].factors["access"], Some(1.0));
    }

    #[test]
    fn hotline_categories_are_split_from_unit_ids() {
        let row = HotlineRow {
            unit_type: "category".into(),
            unit_id: "79/water".into(),
            province_code: "79".into(),
            period: String::new(),
            as_of: 20000,
            window_start: 19971,
            received: 10,
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
        };
        let k = hotline(
            "30d",
            "category",
            Some("79".into()),
            vec![row],
            &ProvinceRegistry::builtin(),
        );
        assert_eq!(k.units[0].category.as_deref(), Some("water"));
        assert_eq!(k.as_of, Some(format_day(20000)));
    }
}
