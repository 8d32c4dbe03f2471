//! A generated log with known answers across provinces and days goes through the real
//! broker, the pipeline and ClickHouse; the day counts, every 30-day value in
//! `satisfaction_daily` at every `as_of`, every row of `province_ranking_latest` and the
//! nation are compared with an independent computation here. The log also holds: a
//! province whose last events are 4 days older than the others' (ranked at the same
//! `as_of`), one agency id used in two provinces (two units), a province whose events arrive
//! on two partitions (counted exactly), one event ten years ahead (`future_timestamp`), and
//! resent submissions (counted once).
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
    if (n + k + p).is_multiple_of(7) {
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
    /// Answers of score k + 1 per criterion, and missing ones.
    scores: [Vec<u32>; 5],
    missing: Vec<u32>,
}

impl Expected {
    fn add(&mut self, answers: &[Option<i64>]) {
        if self.valid.is_empty() {
            self.valid = vec![0; answers.len()];
            self.satisfied = vec![0; answers.len()];
            self.missing = vec![0; answers.len()];
            self.scores = std::array::from_fn(|_| vec![0; answers.len()]);
        }
        self.respondents += 1;
        for (k, a) in answers.iter().enumerate() {
            match a {
                Some(score) => {
                    self.valid[k] += 1;
                    self.satisfied[k] += u32::from(*score >= 4);
                    self.scores[(*score - 1) as usize][k] += 1;
                }
                None => self.missing[k] += 1,
            }
        }
    }

    /// The interval's n: per factor the smallest valid count among its criteria with data;
    /// overall the smallest of those.
    fn interval_n(&self) -> u32 {
        let mut k = 0;
        FACTORS
            .iter()
            .filter_map(|(_, n)| {
                let smallest = (k..k + n).map(|i| self.valid[i]).filter(|v| *v > 0).min();
                k += n;
                smallest
            })
            .min()
            .unwrap_or(0)
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
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
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
        // The same agency id in two provinces: two units.
        let agency = if p < 2 {
            "UBND-phuong-1".to_owned()
        } else {
            format!("{}-agency", PROVINCES[p])
        };
        let scores = answers
            .iter()
            .map(|a| a.map_or(RawAnswer::NoAnswer, RawAnswer::Integer));
        let raw = support::serve::bnv_survey(
            &format!("{}-{d}-{n}", PROVINCES[p]),
            PROVINCES[p],
            &agency,
            "one_stop",
            at(d, n),
            criteria.iter().cloned().zip(scores).collect(),
        );
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
    // One last submission on day 13 for every province but 92, whose last events are on
    // day 9: it is ranked at day 13 all the same, with its windows ending there.
    for p in 0..PROVINCES.len() - 1 {
        log.push(send(p, 13, 99, vec![Some(5); criteria.len()]));
    }
    // Every 7th submission is sent a second time, later in the log (a province resending):
    // the independent computation counts it once, so must the index.
    let resent: Vec<_> = log.iter().step_by(7).cloned().collect();
    log.extend(resent);
    for (key, payload) in &log {
        if *key == "48" {
            // Province 48 arrives on every partition, whatever its key maps to. A resent
            // copy goes where its first copy went: ids are de-duplicated per partition
            // (a copy on another partition would be counted again).
            let partition = payload.iter().map(|b| u32::from(*b)).sum::<u32>() % 4;
            env.produce_to(&producer, &topic, partition as i32, key, payload)
                .await;
        } else {
            env.produce(&producer, &topic, key, payload).await;
        }
        messages += 1;
    }
    // Ten years ahead of its message timestamp: refused, and no province's "today" moves.
    let future = RawSurvey {
        submission_id: Some("from-the-future".into()),
        framework: Some("BNV-2640-2017".into()),
        submitted_at: Some("2036-11-21T08:30:00+07:00".into()),
        province_code: Some("01".into()),
        agency_id: Some("UBND-phuong-1".into()),
        agency_level: Some("commune".into()),
        channel: Some("online".into()),
        respondent_type: Some("citizen".into()),
        answers: Some(
            criteria
                .iter()
                .map(|c| (c.clone(), RawAnswer::Integer(5)))
                .collect(),
        ),
        ..Default::default()
    };
    env.produce(&producer, &topic, "01", &survey_json(&future))
        .await;
    messages += 1;

    let pipeline = Pipeline::start(&env);
    wait_for("the index processor to fold every message", || async {
        pipeline.index_position().await == messages as f64
    })
    .await;

    // --- The day counts, summed over sources: per province and day, the distribution.
    #[derive(clickhouse::Row, serde::Deserialize, Debug)]
    struct DayTotal {
        province_code: String,
        d: u16,
        respondents: u64,
        n1: Vec<u64>,
        n2: Vec<u64>,
        n3: Vec<u64>,
        n4: Vec<u64>,
        n5: Vec<u64>,
        missing: Vec<u64>,
    }
    let totals: Vec<DayTotal> = env
        .clickhouse()
        .query("SELECT province_code, toUInt16(day) AS d, sum(respondents) AS respondents, sumForEach(criterion_n1) AS n1, sumForEach(criterion_n2) AS n2, sumForEach(criterion_n3) AS n3, sumForEach(criterion_n4) AS n4, sumForEach(criterion_n5) AS n5, sumForEach(criterion_missing) AS missing FROM satisfaction_day_totals GROUP BY province_code, d ORDER BY province_code, d")
        .fetch_all()
        .await
        .unwrap();
    let mut expected_totals: Vec<(String, u16, Expected)> = by_day
        .iter()
        .map(|((p, d), submissions)| {
            let mut e = Expected::default();
            submissions.iter().for_each(|s| e.add(s));
            (PROVINCES[*p].to_string(), (day0 + d) as u16, e)
        })
        .collect();
    expected_totals.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        totals.len(),
        expected_totals.len(),
        "one total per province and day with data"
    );
    let wide = |v: &[u32]| v.iter().map(|x| u64::from(*x)).collect::<Vec<_>>();
    for (got, (province, day, e)) in totals.iter().zip(&expected_totals) {
        assert_eq!((&got.province_code, got.d), (province, *day));
        assert_eq!(
            got.respondents,
            u64::from(e.respondents),
            "{province} {day}"
        );
        for (k, column) in [&got.n1, &got.n2, &got.n3, &got.n4, &got.n5]
            .iter()
            .enumerate()
        {
            assert_eq!(
                **column,
                wide(&e.scores[k]),
                "{province} {day} score {}",
                k + 1
            );
        }
        assert_eq!(got.missing, wide(&e.missing));
    }

    // --- The same agency id in provinces 01 and 79: two units.
    #[derive(clickhouse::Row, serde::Deserialize, Debug)]
    struct Agency {
        province_code: String,
        agency_id: String,
        respondents: u64,
    }
    let agencies: Vec<Agency> = env
        .clickhouse()
        .query("SELECT province_code, agency_id, sum(respondents) AS respondents FROM satisfaction_day_totals WHERE agency_id = 'UBND-phuong-1' GROUP BY province_code, agency_id ORDER BY province_code")
        .fetch_all()
        .await
        .unwrap();
    let province_total = |p: usize| -> u64 {
        by_day
            .iter()
            .filter(|((q, _), _)| *q == p)
            .map(|(_, s)| s.len() as u64)
            .sum()
    };
    assert_eq!(agencies.len(), 2, "{agencies:?}");
    assert!(agencies.iter().all(|a| a.agency_id == "UBND-phuong-1"));
    assert_eq!(
        (agencies[0].province_code.as_str(), agencies[0].respondents),
        ("01", province_total(0))
    );
    assert_eq!(
        (agencies[1].province_code.as_str(), agencies[1].respondents),
        ("79", province_total(1))
    );

    // --- satisfaction_daily, province units, 30-day window, at every as_of day 0..=13.
    #[derive(clickhouse::Row, serde::Deserialize, Debug)]
    struct Daily {
        province_code: String,
        as_of: u16,
        respondents: u32,
        sipas: Option<f64>,
        factor_values: Vec<Option<f64>>,
        ci_low: Option<f64>,
        ci_high: Option<f64>,
        ci_n: u32,
        ranked: u8,
    }
    let rows: Vec<Daily> = env
        .clickhouse()
        .query("SELECT ?fields FROM satisfaction_daily FINAL WHERE unit_type = 'province' AND window = '30d' ORDER BY province_code, as_of")
        .fetch_all()
        .await
        .unwrap();
    let mut expected_rows = Vec::new();
    for (p, code) in PROVINCES.iter().enumerate() {
        for as_of in 0..=13 {
            let mut e = Expected::default();
            for ((province, d), submissions) in &by_day {
                if *province == p && *d <= as_of {
                    submissions.iter().for_each(|s| e.add(s));
                }
            }
            expected_rows.push((code.to_string(), (day0 + as_of) as u16, e));
        }
    }
    expected_rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        rows.len(),
        expected_rows.len(),
        "one row per province and as_of day up to the newest day with data"
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
        // 95 % Wilson interval of p = sipas/100 with n = the valid answers behind it.
        let (p, n, z) = (
            e.sipas() / 100.0,
            f64::from(e.interval_n()),
            1.959_963_984_540_054_f64,
        );
        assert_eq!(row.ci_n, e.interval_n(), "{province} day {as_of}");
        assert!(
            row.ci_n < e.respondents,
            "some criteria were left unanswered"
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

    // The nation: plain mean of the ranked provinces' values, at the same as_of.
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Nation {
        as_of: u16,
        provinces: u64,
        sipas_mean_of_provinces: Option<f64>,
        ci_low: Option<f64>,
        ci_high: Option<f64>,
    }
    let nation: Nation = env
        .clickhouse()
        .query("SELECT as_of, provinces, sipas_mean_of_provinces, ci_low, ci_high FROM nation_latest WHERE window = '30d'")
        .fetch_one()
        .await
        .unwrap();
    let ranked: Vec<&Expected> = latest.values().filter(|e| e.respondents >= 30).collect();
    let mean = ranked.iter().map(|e| e.sipas()).sum::<f64>() / ranked.len() as f64;
    assert_eq!(
        (nation.as_of as i64, nation.provinces),
        (day0 + 13, ranked.len() as u64)
    );
    assert!(
        close(nation.sipas_mean_of_provinces.unwrap(), mean),
        "{:?} vs {mean}",
        nation.sipas_mean_of_provinces
    );
    let spread = ranked
        .iter()
        .map(|e| {
            let p = e.sipas() / 100.0;
            p * (1.0 - p) / f64::from(e.interval_n())
        })
        .sum::<f64>()
        .sqrt()
        * 196.0
        / ranked.len() as f64;
    assert!(
        close(nation.ci_low.unwrap(), mean - spread)
            && close(nation.ci_high.unwrap(), mean + spread)
    );

    // --- Province 48 arrived on several partitions: counted exactly (above), and flagged.
    let metrics = pipeline.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "sipas_index_provinces_on_several_partitions{kind=\"surveys\"}"
        ) >= 1.0,
        "the split province is counted in the metric"
    );
    // Its window rows' versions (and every other's) are the clocks of the facts they came
    // from, over both partitions.
    support::index::assert_window_versions(&env).await;
    // --- The future-dated survey went to the DLQ with its own reason, and moved no "today".
    // (The dead letter is written after the message is handed to the index.)
    wait_for("the future-dated survey's dead letter", || async {
        metric_sum(
            &pipeline.metrics().await,
            "sipas_dlq_messages_total{reason=\"future_timestamp\"}",
        ) == 1.0
    })
    .await;
    let letters = env.dead_letters(1).await;
    assert_eq!(
        letters.reasons().get("future_timestamp"),
        Some(&1),
        "{:?}",
        letters.reasons()
    );
    drop(pipeline);
}
