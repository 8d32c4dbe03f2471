//! A generated log with known answers across provinces and days goes through the real
//! broker, the pipeline and ClickHouse; every 30-day value in `satisfaction_daily` and every
//! row of `province_ranking_latest` is compared with an independent computation here.
mod support;

use std::collections::BTreeMap;

use sipas_stream::contract::raw::{RawAnswer, RawSurvey};
use sipas_stream::simulate::generator::survey_json;
use support::*;

/// BNV-2640-2017, written out independently of the framework file: criteria per factor.
const FACTORS: [(&str, usize); 5] = [
    ("access", 4),
    ("procedure", 5),
    ("staff", 6),
    ("result", 3),
    ("feedback", 4),
];
const PROVINCES: [&str; 5] = ["01", "79", "48", "31", "92"];
const DAYS: i64 = 10;

fn criterion_ids() -> Vec<String> {
    FACTORS
        .iter()
        .flat_map(|(f, n)| (1..=*n).map(move |i| format!("{f}.{i}")))
        .collect()
}

/// Answer of respondent `n` of province `p` on day `d` to criterion `k` (None = no answer).
fn answer(p: usize, d: i64, n: usize, k: usize) -> Option<i64> {
    if (n + k + p) % 7 == 0 {
        return None;
    }
    let mix = (p * 31 + d as usize * 17 + n * 7 + k * 3 + p * k) % 10;
    // Provinces lean differently: p adds satisfaction.
    Some(match mix + p {
        0..=1 => 1,
        2 => 2,
        3..=4 => 3,
        5..=8 => 4,
        _ => 5,
    })
}

fn respondents(p: usize, d: i64) -> usize {
    if PROVINCES[p] == "92" {
        2
    } else {
        3 + (p + d as usize) % 4
    }
}

#[derive(Default, Clone)]
struct Expected {
    respondents: u32,
    valid: Vec<u32>,
    satisfied: Vec<u32>,
}

impl Expected {
    fn add(&mut self, answers: &[Option<i64>]) {
        if self.valid.is_empty() {
            self.valid = vec![0; answers.len()];
            self.satisfied = vec![0; answers.len()];
        }
        self.respondents += 1;
        for (k, a) in answers.iter().enumerate() {
            if let Some(score) = a {
                self.valid[k] += 1;
                self.satisfied[k] += u32::from(*score >= 4);
            }
        }
    }

    fn factors(&self) -> Vec<Option<f64>> {
        let mut k = 0;
        FACTORS
            .iter()
            .map(|(_, n)| {
                let values: Vec<f64> = (k..k + n)
                    .filter(|i| self.valid[*i] > 0)
                    .map(|i| 100.0 * self.satisfied[i] as f64 / self.valid[i] as f64)
                    .collect();
                k += n;
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
            })
            .collect()
    }

    fn sipas(&self) -> f64 {
        let factors: Vec<f64> = self.factors().into_iter().flatten().collect();
        factors.iter().sum::<f64>() / factors.len() as f64
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_values_and_the_ranking_match_an_independent_computation() {
    let env = TestEnv::new("index").await;
    let producer = env.producer();
    let topic = env.config.kafka.surveys_topic.clone();
    let criteria = criterion_ids();
    // Day 0 = 2026-10-01 (Vietnam time).
    let day0 = sipas_stream::index::window::from_date(time::macros::date!(2026 - 10 - 01));
    let at = |d: i64, minute: usize| {
        sipas_stream::domain::time::format_vietnam(
            (day0 + d) * 86_400 - 7 * 3600 + 8 * 3600 + minute as i64 * 60,
        )
    };

    let mut by_day: BTreeMap<(usize, i64), Vec<Vec<Option<i64>>>> = BTreeMap::new();
    let mut messages = 0u64;
    let mut send = |p: usize, d: i64, n: usize, answers: Vec<Option<i64>>| {
        let raw = RawSurvey {
            submission_id: Some(format!("{}-{d}-{n}", PROVINCES[p])),
            framework: Some("BNV-2640-2017".into()),
            submitted_at: Some(at(d, n)),
            province_code: Some(PROVINCES[p].into()),
            province_code_system: None,
            agency_id: Some(format!("{}-agency", PROVINCES[p])),
            agency_level: Some("province".into()),
            procedure_code: None,
            channel: Some("one_stop".into()),
            respondent_type: Some("citizen".into()),
            answers: Some(
                criteria
                    .iter()
                    .cloned()
                    .zip(
                        answers
                            .iter()
                            .map(|a| a.map_or(RawAnswer::NoAnswer, RawAnswer::Integer)),
                    )
                    .collect(),
            ),
            expectations: None,
        };
        by_day.entry((p, d)).or_default().push(answers);
        (PROVINCES[p], survey_json(&raw))
    };
    let mut log = Vec::new();
    for d in 0..DAYS {
        for p in 0..PROVINCES.len() {
            for n in 0..respondents(p, d) {
                let answers = (0..criteria.len()).map(|k| answer(p, d, n, k)).collect();
                log.push(send(p, d, n, answers));
            }
        }
    }
    // One last submission per province on day 13 moves every partition's watermark
    // (newest - 48 h) past the end of day 10.
    for p in 0..PROVINCES.len() {
        log.push(send(p, 13, 99, vec![Some(5); criteria.len()]));
    }
    // Every 7th submission is sent a second time, later in the log (a province resending):
    // the independent computation counts it once, so must the index.
    let resent: Vec<_> = log.iter().step_by(7).cloned().collect();
    log.extend(resent);
    for (key, payload) in &log {
        env.produce(&producer, &topic, key, payload).await;
        messages += 1;
    }

    let pipeline = Pipeline::start(&env);
    wait_for("the index processor to fold every message", || async {
        pipeline.index_position().await == messages as f64
    })
    .await;

    // --- satisfaction_daily, province units, 30-day window: days 0..=10 are closed.
    #[derive(clickhouse::Row, serde::Deserialize, Debug)]
    struct Daily {
        province_code: String,
        as_of: u16,
        respondents: u32,
        sipas: Option<f64>,
        factor_values: Vec<Option<f64>>,
        ci_low: Option<f64>,
        ci_high: Option<f64>,
        ranked: u8,
    }
    let rows: Vec<Daily> = env
        .clickhouse()
        .query("SELECT ?fields FROM satisfaction_daily FINAL WHERE unit_type = 'province' AND window = '30d' ORDER BY province_code, as_of")
        .fetch_all()
        .await
        .unwrap();
    let mut expected_rows = Vec::new();
    for p in 0..PROVINCES.len() {
        for as_of in 0..=10 {
            let mut e = Expected::default();
            for ((province, d), submissions) in &by_day {
                if *province == p && *d <= as_of {
                    submissions.iter().for_each(|s| e.add(s));
                }
            }
            expected_rows.push((PROVINCES[p].to_string(), (day0 + as_of) as u16, e));
        }
    }
    expected_rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        rows.len(),
        expected_rows.len(),
        "one row per province and closed day with data"
    );
    for (row, (province, as_of, e)) in rows.iter().zip(&expected_rows) {
        assert_eq!((&row.province_code, row.as_of), (province, *as_of));
        assert_eq!(row.respondents, e.respondents, "{province} day {as_of}");
        assert!(
            close(row.sipas.unwrap(), e.sipas()),
            "{province} day {as_of}: {:?} vs {}",
            row.sipas,
            e.sipas()
        );
        for (got, want) in row.factor_values.iter().zip(e.factors()) {
            assert!(close(got.unwrap(), want.unwrap()));
        }
        // 95 % Wilson interval of p = sipas/100 with n = respondents.
        let (p, n, z) = (
            e.sipas() / 100.0,
            e.respondents as f64,
            1.959_963_984_540_054_f64,
        );
        let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
        let margin = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
        assert!(
            close(row.ci_low.unwrap(), 100.0 * (centre - margin))
                && close(row.ci_high.unwrap(), 100.0 * (centre + margin))
        );
        assert_eq!(row.ranked, u8::from(e.respondents >= 30));
    }

    // --- province_ranking_latest, 30-day window on day 13: every submission counts.
    #[derive(clickhouse::Row, serde::Deserialize, Debug)]
    struct Ranked {
        province_code: String,
        province_name: String,
        as_of: u16,
        sipas: Option<f64>,
        access: Option<f64>,
        respondents: u32,
        rank: Option<u32>,
    }
    let ranking: Vec<Ranked> = env
        .clickhouse()
        .query("SELECT province_code, province_name, as_of, sipas, access, respondents, rank FROM province_ranking_latest WHERE window = '30d' ORDER BY province_code")
        .fetch_all()
        .await
        .unwrap();
    let mut latest: BTreeMap<&str, Expected> = BTreeMap::new();
    for ((p, _), submissions) in &by_day {
        submissions
            .iter()
            .for_each(|s| latest.entry(PROVINCES[*p]).or_default().add(s));
    }
    assert_eq!(ranking.len(), PROVINCES.len());
    for row in &ranking {
        let e = &latest[row.province_code.as_str()];
        assert_eq!(row.as_of as i64, day0 + 13);
        assert_eq!(row.respondents, e.respondents);
        assert!(close(row.sipas.unwrap(), e.sipas()));
        assert!(close(row.access.unwrap(), e.factors()[0].unwrap()));
        let expected_rank = (e.respondents >= 30).then(|| {
            1 + latest
                .values()
                .filter(|o| o.respondents >= 30 && o.sipas() > e.sipas())
                .count() as u32
        });
        assert_eq!(row.rank, expected_rank, "{}", row.province_code);
    }
    assert_eq!(
        ranking
            .iter()
            .find(|r| r.province_code == "92")
            .unwrap()
            .rank,
        None,
        "22 respondents < 30: not ranked"
    );
    assert_eq!(
        ranking
            .iter()
            .find(|r| r.province_code == "79")
            .unwrap()
            .province_name,
        "Thành phố Hồ Chí Minh"
    );
    assert!(ranking.iter().filter(|r| r.rank.is_some()).count() == 4);

    // The nation: plain mean of provincial values.
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Nation {
        sipas_mean_of_provinces: Option<f64>,
    }
    let nation: Nation = env
        .clickhouse()
        .query("SELECT sipas_mean_of_provinces FROM nation_latest WHERE window = '30d'")
        .fetch_one()
        .await
        .unwrap();
    let mean = latest.values().map(Expected::sipas).sum::<f64>() / latest.len() as f64;
    assert!(
        close(nation.sipas_mean_of_provinces.unwrap(), mean),
        "{:?} vs {mean}",
        nation.sipas_mean_of_provinces
    );
    drop(pipeline);
}
