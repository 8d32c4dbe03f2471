//! `sipas serve` over a running stack: simulated traffic goes through the real broker,
//! `sipas run` and ClickHouse; the API's answers are compared with ClickHouse (the
//! materialised tables, and for values computed at query time an independent computation
//! from the raw `survey_submissions_dedup`), then its caching (304, one computation per
//! interval under concurrent pollers), its 400s, its OpenAPI document (schemathesis) and
//! the SSE stream after new events.
mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use sipas_stream::simulate::generator::survey_json;
use support::serve::*;
use support::*;

fn day(days: u16) -> String {
    sipas_stream::serve::params::format_day(i64::from(days))
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Equal up to floating-point noise: the index processor may rewrite a latest value
/// between the API's query and the test's (same value, summed in another order).
fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (None, None) => true,
        _ => false,
    }
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct Ranked {
    province_code: String,
    province_name: String,
    as_of: u16,
    sipas: Option<f64>,
    staff: Option<f64>,
    respondents: u32,
    ci_low: Option<f64>,
    rank: Option<u32>,
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct Daily {
    unit_id: String,
    as_of: u16,
    sipas: Option<f64>,
}

/// SIPAS per unit (`column` of the raw tables) over `[from, to]`, computed from the raw
/// submissions by the SIPAS.md §3 formulas, independently of the index: respondents and
/// the equal-weight mean of factor means of criterion shares.
async fn raw_values(
    ch: &clickhouse::Client,
    column: &str,
    province: Option<&str>,
    from: u16,
    to: u16,
) -> BTreeMap<String, (u64, Option<f64>)> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Respondents {
        unit: String,
        n: u64,
    }
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Criterion {
        unit: String,
        factor_id: String,
        valid: u64,
        satisfied: u64,
    }
    let filter = format!(
        "framework = 'BNV-2640-2017' AND submitted_date >= toDate('{}') AND submitted_date <= toDate('{}'){}",
        day(from),
        day(to),
        province.map_or(String::new(), |p| format!(" AND province_code = '{p}'"))
    );
    let respondents: Vec<Respondents> = ch
        .query(&format!(
            "SELECT {column} AS unit, count() AS n FROM survey_submissions_dedup WHERE {filter} GROUP BY unit"
        ))
        .fetch_all()
        .await
        .unwrap();
    let criteria: Vec<Criterion> = ch
        .query(&format!(
            "SELECT {column} AS unit, factor_id, countIf(ifNull(score, 0) >= 1) AS valid, \
             countIf(ifNull(score, 0) >= 4) AS satisfied FROM survey_answers WHERE {filter} \
             GROUP BY unit, criterion_id, factor_id"
        ))
        .fetch_all()
        .await
        .unwrap();
    let mut factors: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for c in criteria.iter().filter(|c| c.valid > 0) {
        factors
            .entry((c.unit.clone(), c.factor_id.clone()))
            .or_default()
            .push(100.0 * c.satisfied as f64 / c.valid as f64);
    }
    let mut means: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for ((unit, _), values) in factors {
        means
            .entry(unit)
            .or_default()
            .push(values.iter().sum::<f64>() / values.len() as f64);
    }
    respondents
        .into_iter()
        .map(|r| {
            let sipas = means
                .get(&r.unit)
                .map(|f| f.iter().sum::<f64>() / f.len() as f64);
            (r.unit, (r.n, sipas))
        })
        .collect()
}

/// Standard competition ranks among units with at least 30 respondents (values equal
/// after rounding to 9 decimals tie), computed here from `values`.
fn ranks(values: &BTreeMap<String, (u64, Option<f64>)>) -> BTreeMap<String, u32> {
    let key = |v: f64| (v * 1e9).round() / 1e9;
    let ranked: Vec<(&String, f64)> = values
        .iter()
        .filter_map(|(unit, (n, sipas))| sipas.filter(|_| *n >= 30).map(|s| (unit, s)))
        .collect();
    ranked
        .iter()
        .map(|(unit, s)| {
            let above = ranked.iter().filter(|(_, o)| key(*o) > key(*s)).count();
            ((*unit).clone(), 1 + above as u32)
        })
        .collect()
}

/// The listed units (each named by its `key` field) are exactly those of `raw`, each with
/// the respondents, SIPAS and rank computed from the raw submissions.
fn assert_as_raw(listed: &[Value], key: &str, raw: &BTreeMap<String, (u64, Option<f64>)>) {
    let raw_ranks = ranks(raw);
    assert_eq!(listed.len(), raw.len());
    for unit in listed {
        let id = unit[key].as_str().unwrap();
        let (n, sipas) = raw[id];
        assert_eq!(unit["respondents"].as_u64(), Some(n), "{id}");
        assert!(
            same(num(&unit["sipas"]), sipas),
            "{id}: {} vs {sipas:?}",
            unit["sipas"]
        );
        assert_eq!(
            unit["rank"].as_u64().map(|r| r as u32),
            raw_ranks.get(id).copied(),
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn read_api_answers_from_clickhouse_with_caching_and_clear_errors() {
    let env = TestEnv::new("serve").await;
    // The same agency id in two provinces: two agencies (all 5s in Hà Nội, all 2s in TP.HCM).
    let recent = sipas_stream::domain::time::unix_now() - 2 * 86_400;
    let mut shared = Vec::new();
    for n in 0..35 {
        shared.push(survey(
            &env,
            &format!("shared-01-{n}"),
            "01",
            "shared-agency",
            "postal",
            5,
            recent,
        ));
    }
    for n in 0..40 {
        shared.push(survey(
            &env,
            &format!("shared-79-{n}"),
            "79",
            "shared-agency",
            "postal",
            2,
            recent,
        ));
    }
    let pipeline = fill_with(&env, 4_000, 75.0, 11, &shared).await;
    let ch = env.clickhouse();
    // Long refresh interval: every response below comes from one computation per request.
    let serve = Serve::start(&env, 600_000).await;

    // --- Rankings equal the ranking view, with the change against 30 days earlier.
    let api = serve.json("/api/v1/rankings?window=30d").await;
    let expected: Vec<Ranked> = ch
        .query("SELECT ?fields FROM province_ranking_latest WHERE window = '30d' AND framework = 'BNV-2640-2017' ORDER BY isNull(rank), rank, province_code")
        .fetch_all()
        .await
        .unwrap();
    let rows = api["provinces"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    assert!(
        expected.len() >= 30,
        "the simulation covers the provinces: {}",
        expected.len()
    );
    assert!(
        expected.iter().any(|r| r.rank.is_some()),
        "some provinces are ranked"
    );
    for (row, want) in rows.iter().zip(&expected) {
        assert_eq!(row["province_code"], want.province_code.as_str());
        assert_eq!(row["province_name"], want.province_name.as_str());
        assert_eq!(
            row["rank"].as_u64().map(|r| r as u32),
            want.rank,
            "{}",
            want.province_code
        );
        assert!(
            same(num(&row["sipas"]), want.sipas),
            "{}",
            want.province_code
        );
        assert!(same(num(&row["factors"]["staff"]), want.staff));
        assert!(same(num(&row["ci_low"]), want.ci_low));
        assert_eq!(
            row["respondents"].as_u64(),
            Some(u64::from(want.respondents))
        );
        assert_eq!(row["as_of"], day(want.as_of).as_str());
        assert_eq!(row["ranked"], want.rank.is_some());
    }
    let previous: Vec<Daily> = ch
        .query("SELECT unit_id, as_of, sipas FROM satisfaction_daily FINAL WHERE unit_type = 'province' AND window = '30d'")
        .fetch_all()
        .await
        .unwrap();
    let previous: BTreeMap<(String, String), Option<f64>> = previous
        .into_iter()
        .map(|d| ((d.unit_id, day(d.as_of)), d.sipas))
        .collect();
    let mut compared = 0;
    for (row, want) in rows.iter().zip(&expected) {
        let previous_day = day(want.as_of - 30);
        assert_eq!(row["change"]["previous_as_of"], previous_day.as_str());
        let then = previous
            .get(&(want.province_code.clone(), previous_day))
            .copied()
            .flatten();
        assert!(
            same(num(&row["change"]["previous_sipas"]), then),
            "{}",
            want.province_code
        );
        if let (Some(now), Some(then)) = (want.sipas, then) {
            assert!(same(num(&row["change"]["sipas_delta"]), Some(now - then)));
            compared += 1;
        }
    }
    assert!(
        compared > 0,
        "75 days of history give 30-day values 30 days ago"
    );
    for (row, want) in rows.iter().zip(&expected) {
        // 75 days of history hold nothing a year earlier (29 February → 28 February).
        let date = time::Date::from_julian_day(i32::from(want.as_of) + 2_440_588).unwrap();
        let year_before = date
            .replace_year(date.year() - 1)
            .or_else(|_| {
                date.replace_day(28)
                    .and_then(|d| d.replace_year(date.year() - 1))
            })
            .unwrap();
        assert_eq!(
            row["previous_year"]["previous_as_of"],
            year_before.to_string().as_str()
        );
        assert!(row["previous_year"]["previous_sipas"].is_null());
        assert!(row["previous_year"]["significant"].is_null());
        assert!(
            row["change"]["significant"].is_boolean() || row["change"]["previous_sipas"].is_null()
        );
        assert!(row["ci_n"].as_u64().unwrap() <= row["respondents"].as_u64().unwrap());
    }

    // --- The nation: nation_daily at the ranking's day, the mean of the ranked provinces.
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct NationRow {
        provinces: u64,
        sipas_mean_of_provinces: Option<f64>,
        ci_low: Option<f64>,
        ci_high: Option<f64>,
    }
    let nation: NationRow = ch
        .query("SELECT provinces, sipas_mean_of_provinces, ci_low, ci_high FROM nation_daily WHERE framework = 'BNV-2640-2017' AND window = '30d' AND as_of = toDate(?)")
        .bind(day(expected[0].as_of))
        .fetch_one()
        .await
        .unwrap();
    let got = &api["nation"];
    assert_eq!(got["as_of"], api["as_of"]);
    assert_eq!(got["provinces"].as_u64(), Some(nation.provinces));
    assert!(same(num(&got["sipas"]), nation.sipas_mean_of_provinces));
    assert!(same(num(&got["ci_low"]), nation.ci_low));
    assert!(same(num(&got["ci_high"]), nation.ci_high));
    let ranked: Vec<f64> = rows
        .iter()
        .filter(|r| r["ranked"] == true)
        .filter_map(|r| r["sipas"].as_f64())
        .collect();
    assert_eq!(ranked.len() as u64, nation.provinces);
    assert!(same(
        num(&got["sipas"]),
        Some(ranked.iter().sum::<f64>() / ranked.len() as f64)
    ));
    assert!(num(&got["ci_low"]) < num(&got["sipas"]) && num(&got["sipas"]) < num(&got["ci_high"]));

    // --- A window that is not materialised (45 days) is computed from the day counts at the
    // same day: every province equals the raw submissions' values and ranks.
    let as_of_day = expected[0].as_of;
    let computed = serve.json("/api/v1/rankings?window=45d").await;
    assert_eq!(computed["as_of"], day(as_of_day).as_str());
    let raw = raw_values(&ch, "province_code", None, as_of_day - 44, as_of_day).await;
    let provinces = computed["provinces"].as_array().unwrap();
    assert_as_raw(provinces, "province_code", &raw);
    for p in provinces {
        assert_eq!(
            p["previous_year"]["previous_as_of"].as_str().map(str::len),
            Some(10)
        );
    }
    assert!(computed["nation"]["sipas"].is_number());

    // A historical ranking names its day.
    let as_of = day(expected[0].as_of - 5);
    let historical = serve
        .json(&format!("/api/v1/rankings?window=30d&as_of={as_of}"))
        .await;
    assert_eq!(historical["latest"], false);
    assert!(historical["provinces"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["as_of"] == as_of.as_str()));
    assert!(!historical["provinces"].as_array().unwrap().is_empty());

    // --- A province: values, criteria and history equal the index tables.
    let unit = serve.json("/api/v1/units/79?window=30d&days=20").await;
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Latest {
        sipas: Option<f64>,
        respondents: u32,
        as_of: u16,
        criterion_ids: Vec<String>,
        criterion_valid: Vec<u32>,
    }
    let latest: Latest = ch
        .query("SELECT ?fields FROM satisfaction_latest FINAL WHERE unit_type = 'province' AND unit_id = '79' AND window = '30d'")
        .fetch_one()
        .await
        .unwrap();
    assert!(same(num(&unit["sipas"]), latest.sipas));
    assert_eq!(
        unit["respondents"].as_u64(),
        Some(u64::from(latest.respondents))
    );
    assert_eq!(unit["province_name"], "Thành phố Hồ Chí Minh");
    let criteria: BTreeMap<String, u64> = unit["factors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| {
            f["criteria"].as_array().unwrap().iter().map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["valid"].as_u64().unwrap(),
                )
            })
        })
        .collect();
    assert_eq!(criteria.len(), 22);
    for (id, valid) in latest.criterion_ids.iter().zip(&latest.criterion_valid) {
        assert_eq!(criteria[id], u64::from(*valid), "{id}");
    }
    let history_days = env
        .count(&format!(
            "SELECT count() AS n FROM satisfaction_daily FINAL WHERE unit_type = 'province' AND unit_id = '79' AND window = '30d' AND as_of > toDate('{}') - 20 AND as_of <= toDate('{}')",
            day(latest.as_of),
            day(latest.as_of)
        ))
        .await;
    assert_eq!(
        unit["history"].as_array().unwrap().len() as u64,
        history_days
    );
    assert!(history_days > 0);

    // --- Agencies are unique only within their province: the same id is two agencies.
    let hanoi = serve
        .json("/api/v1/provinces/01/agencies/shared-agency?window=30d&days=5")
        .await;
    let hcm = serve
        .json("/api/v1/provinces/79/agencies/shared-agency?window=30d&days=5")
        .await;
    assert_eq!(
        (hanoi["unit_type"].as_str(), hanoi["province_code"].as_str()),
        (Some("agency"), Some("01"))
    );
    assert_eq!(hcm["province_code"], "79");
    assert_eq!(
        (hanoi["respondents"].as_u64(), num(&hanoi["sipas"])),
        (Some(35), Some(100.0))
    );
    assert_eq!(
        (hcm["respondents"].as_u64(), num(&hcm["sipas"])),
        (Some(40), Some(0.0))
    );
    assert_eq!(hcm["as_of"], day(as_of_day).as_str());
    assert!(!hcm["history"].as_array().unwrap().is_empty());
    assert!(hcm["history"].as_array().unwrap().len() <= 5);
    let bare = serve.get("/api/v1/units/shared-agency", &[]).await;
    assert_eq!(bare.status, 400, "a bare agency id names no unit");
    assert_eq!(bare.json()["parameter"], "province");

    // --- The agency ranking of a province equals the raw submissions of that province.
    let agencies = serve.json("/api/v1/provinces/79/agencies?window=30d").await;
    assert_eq!(agencies["as_of"], day(as_of_day).as_str());
    let raw = raw_values(&ch, "agency_id", Some("79"), as_of_day - 29, as_of_day).await;
    let listed = agencies["agencies"].as_array().unwrap();
    assert_as_raw(listed, "agency_id", &raw);
    assert!(listed.len() > 1);
    for a in listed {
        let id = a["agency_id"].as_str().unwrap();
        assert_eq!(a["ranked"], raw[id].0 >= 30, "{id}");
    }
    assert!(
        listed[0].get("change").is_none(),
        "no comparison unless asked"
    );
    // With compare=true, each agency against the previous 30 days, from the raw submissions.
    let compared = serve
        .json("/api/v1/provinces/79/agencies?window=30d&compare=true")
        .await;
    let before = raw_values(&ch, "agency_id", Some("79"), as_of_day - 59, as_of_day - 30).await;
    assert!(
        !before.is_empty(),
        "the log has agencies in the previous period"
    );
    for a in compared["agencies"].as_array().unwrap() {
        let id = a["agency_id"].as_str().unwrap();
        assert_eq!(a["change"]["previous_as_of"], day(as_of_day - 30).as_str());
        let want = before.get(id).and_then(|(_, sipas)| *sipas);
        assert!(
            same(num(&a["change"]["previous_sipas"]), want),
            "{id}: previous {} vs {want:?}",
            a["change"]["previous_sipas"]
        );
        assert!(a["previous_year"].is_object(), "{id}");
    }
    let shared_entry = listed
        .iter()
        .find(|a| a["agency_id"] == "shared-agency")
        .unwrap();
    assert_eq!(
        shared_entry["respondents"].as_u64(),
        Some(40),
        "only TP.HCM's"
    );
    let hcm_total: u64 = listed
        .iter()
        .map(|a| a["respondents"].as_u64().unwrap())
        .sum();
    let hcm_ranked = rows.iter().find(|r| r["province_code"] == "79").unwrap();
    assert_eq!(Some(hcm_total), hcm_ranked["respondents"].as_u64());

    // --- A breakdown by channel sums to the province's respondents.
    let split = serve
        .json("/api/v1/breakdown?province=79&by=channel&window=30d")
        .await;
    let parts = split["values"].as_array().unwrap();
    let sum: u64 = parts
        .iter()
        .map(|p| p["respondents"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(sum), hcm_ranked["respondents"].as_u64());
    assert_eq!(split["respondents"].as_u64(), Some(sum));
    assert!(parts.iter().any(|p| p["value"] == "postal"));
    assert!(
        (parts
            .iter()
            .map(|p| p["share"].as_f64().unwrap())
            .sum::<f64>()
            - 100.0)
            .abs()
            < 1e-6
    );
    let procedures = serve
        .json("/api/v1/breakdown?province=79&by=procedure&window=30d")
        .await;
    assert_eq!(procedures["respondents"].as_u64(), Some(sum));

    // --- Hotline KPIs by category in a province equal hotline_kpi_latest.
    let kpis = serve
        .json("/api/v1/hotline/kpis?province=79&window=30d")
        .await;
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Kpi {
        unit_id: String,
        received: u32,
        on_time_rate: Option<f64>,
    }
    let want: Vec<Kpi> = ch
        .query("SELECT ?fields FROM hotline_kpi_latest FINAL WHERE unit_type = 'category' AND province_code = '79' AND window = '30d'")
        .fetch_all()
        .await
        .unwrap();
    let units = kpis["units"].as_array().unwrap();
    assert_eq!(units.len(), want.len());
    assert!(!want.is_empty());
    for w in &want {
        let got = units
            .iter()
            .find(|u| u["unit_id"] == w.unit_id.as_str())
            .unwrap();
        assert_eq!(got["received"].as_u64(), Some(u64::from(w.received)));
        assert!(same(num(&got["on_time_rate"]), w.on_time_rate));
        assert_eq!(got["category"], w.unit_id.split('/').nth(1).unwrap());
    }
    // Agencies and channels (at query time) add up to the province's materialised KPIs.
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct ProvinceKpi {
        received: u32,
        responded: u32,
        open_past_due: u32,
    }
    let province: ProvinceKpi = ch
        .query("SELECT received, responded, open_past_due FROM hotline_kpi_latest FINAL WHERE unit_type = 'province' AND unit_id = '79' AND window = '30d'")
        .fetch_one()
        .await
        .unwrap();
    for by in ["agency", "channel"] {
        let split = serve
            .json(&format!(
                "/api/v1/hotline/kpis?province=79&window=30d&by={by}"
            ))
            .await;
        let units = split["units"].as_array().unwrap();
        assert!(!units.is_empty(), "{by}");
        let total = |field: &str| -> u64 { units.iter().map(|u| u[field].as_u64().unwrap()).sum() };
        assert_eq!(total("received"), u64::from(province.received), "{by}");
        assert_eq!(total("responded"), u64::from(province.responded), "{by}");
        assert_eq!(
            total("open_past_due"),
            u64::from(province.open_past_due),
            "{by}"
        );
        assert!(units
            .iter()
            .all(|u| u["unit_type"] == by && u["province_code"] == "79"));
        assert!(units.iter().all(|u| u[if by == "agency" {
            "agency_id"
        } else {
            "channel"
        }]
        .is_string()));
    }

    // --- Hotline KPIs at an earlier day: the materialised daily values of that day, and
    // the agencies summed at query time add up to the province's value of that day.
    let earlier: u16 = ch
        .query("SELECT toUInt16(max(as_of) - 2) FROM hotline_kpi_daily FINAL WHERE unit_type = 'province' AND unit_id = '79' AND window = '30d'")
        .fetch_one()
        .await
        .unwrap();
    let at_day = |by: &str| {
        format!(
            "/api/v1/hotline/kpis?province=79&window=30d&by={by}&as_of={}",
            day(earlier)
        )
    };
    let kpis = serve.json(&at_day("category")).await;
    assert_eq!(kpis["as_of"], day(earlier).as_str());
    let want: Vec<Kpi> = ch
        .query("SELECT ?fields FROM hotline_kpi_daily FINAL WHERE unit_type = 'category' AND province_code = '79' AND window = '30d' AND as_of = toDate(?)")
        .bind(day(earlier))
        .fetch_all()
        .await
        .unwrap();
    let units = kpis["units"].as_array().unwrap();
    assert!(!want.is_empty(), "categories of 79 on {}", day(earlier));
    assert_eq!(units.len(), want.len());
    for w in &want {
        let got = units
            .iter()
            .find(|u| u["unit_id"] == w.unit_id.as_str())
            .unwrap();
        assert_eq!(got["received"].as_u64(), Some(u64::from(w.received)));
        assert_eq!(got["as_of"], day(earlier).as_str());
    }
    let province: ProvinceKpi = ch
        .query("SELECT received, responded, open_past_due FROM hotline_kpi_daily FINAL WHERE unit_type = 'province' AND unit_id = '79' AND window = '30d' AND as_of = toDate(?)")
        .bind(day(earlier))
        .fetch_one()
        .await
        .unwrap();
    let agencies = serve.json(&at_day("agency")).await;
    let units = agencies["units"].as_array().unwrap();
    let total = |field: &str| -> u64 { units.iter().map(|u| u[field].as_u64().unwrap()).sum() };
    assert_eq!(total("received"), u64::from(province.received));
    assert_eq!(total("responded"), u64::from(province.responded));
    assert_eq!(total("open_past_due"), u64::from(province.open_past_due));
    assert!(units.iter().all(|u| u["as_of"] == day(earlier).as_str()));

    // --- ETag and 304.
    let first = serve.get("/api/v1/rankings?window=30d", &[]).await;
    let etag = first.header("etag").expect("an ETag");
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "a strong ETag: {etag}"
    );
    let max_age: u64 = first
        .header("cache-control")
        .unwrap()
        .strip_prefix("public, max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        max_age <= 600,
        "max-age is bounded by the refresh interval: {max_age}"
    );
    let again = serve
        .get("/api/v1/rankings?window=30d", &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag").as_deref(), Some(etag.as_str()));
    let stale = serve
        .get(
            "/api/v1/rankings?window=30d",
            &[("if-none-match", "\"something-else\"")],
        )
        .await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, first.body);

    // --- Many concurrent pollers of a new request: one computation (three statements: the
    // provinces, the earlier periods and the nation), and none for a request already cached.
    let queries = || async {
        serve
            .metric("sipas_serve_clickhouse_queries_total{endpoint=\"rankings\"}")
            .await
    };
    let before = queries().await;
    let url = serve.url("/api/v1/rankings?window=90d");
    let pollers: Vec<_> = (0..200).map(|_| get(&url, &[])).collect();
    let answers = futures::future::join_all(pollers).await;
    assert!(answers.iter().all(|a| a.status == 200));
    let tags: std::collections::BTreeSet<_> = answers.iter().map(|a| a.header("etag")).collect();
    assert_eq!(tags.len(), 1, "every poller got the same body");
    assert_eq!(
        queries().await - before,
        3.0,
        "200 concurrent pollers, one computation"
    );
    let url = serve.url("/api/v1/rankings?window=90d&framework=BNV-2640-2017");
    let cached: Vec<_> = (0..100).map(|_| get(&url, &[])).collect();
    assert!(futures::future::join_all(cached)
        .await
        .iter()
        .all(|a| a.status == 200));
    assert_eq!(
        queries().await - before,
        3.0,
        "the default framework spelled out is the same request"
    );

    // --- Invalid parameters: 400 naming the parameter; nothing reaches ClickHouse.
    let all_queries = serve.metric("sipas_serve_clickhouse_queries_total").await;
    for (path, parameter) in [
        ("/api/v1/rankings?window=367d", "window"),
        ("/api/v1/rankings?window=0d", "window"),
        ("/api/v1/rankings?window=week", "window"),
        ("/api/v1/rankings?window=30d%27%20OR%201%3D1", "window"),
        ("/api/v1/rankings?as_of=2026-02-30", "as_of"),
        ("/api/v1/rankings?framework=nope", "framework"),
        ("/api/v1/rankings?windows=30d", "windows"),
        ("/api/v1/units/79?days=0", "days"),
        ("/api/v1/units/79?days=ninety", "days"),
        ("/api/v1/units/79-agency", "province"),
        ("/api/v1/provinces/99/agencies", "province"),
        ("/api/v1/provinces/79/agencies?windo=30d", "windo"),
        ("/api/v1/provinces/79/agencies/x?days=400", "days"),
        ("/api/v1/provinces/79x/agencies/x", "province"),
        ("/api/v1/breakdown?by=agency", "by"),
        ("/api/v1/breakdown?province=7", "province"),
        ("/api/v1/breakdown?as_of=yesterday", "as_of"),
        ("/api/v1/hotline/kpis?as_of=2026-13-01", "as_of"),
        ("/api/v1/hotline/kpis?province=99", "province"),
        ("/api/v1/hotline/kpis?by=ward", "by"),
        ("/api/v1/stream?window=week", "window"),
        // Only YYYY-MM-DD: no sign, no other number of digits.
        ("/api/v1/rankings?as_of=-0001-01-01", "as_of"),
        ("/api/v1/rankings?as_of=%2B2026-11-01", "as_of"),
        ("/api/v1/breakdown?as_of=20261-11-01", "as_of"),
        // Path segments that do not decode to UTF-8.
        ("/api/v1/units/%FF", "unit_id"),
        ("/api/v1/provinces/%C3%28/agencies", "province"),
        ("/api/v1/provinces/79/agencies/%FF%FE", "agency_id"),
    ] {
        let response = serve.get(path, &[]).await;
        assert_eq!(response.status, 400, "{path}");
        let body = response.json();
        assert_eq!(body["parameter"], parameter, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains(parameter),
            "{path}: {body}"
        );
    }
    assert_eq!(
        serve.metric("sipas_serve_clickhouse_queries_total").await,
        all_queries
    );
    let missing = serve
        .get("/api/v1/provinces/79/agencies/no-such-agency", &[])
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    // Paths and methods the API does not know answer the same JSON shape.
    for (path, status) in [("/api/v1/%FF", 404), ("/api/v1/no-such-endpoint", 404)] {
        let response = serve.get(path, &[]).await;
        assert_eq!(response.status, status, "{path}");
        assert!(
            response.json()["error"].is_string(),
            "{path}: {}",
            response.text()
        );
    }

    // --- Health and metrics.
    let health = serve.json("/api/v1/health").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["clickhouse"]["reachable"], true);
    assert_eq!(health["kafka"]["reachable"], true);
    assert!(
        serve
            .metric("sipas_serve_responses_total{endpoint=\"rankings\",status=\"304\"}")
            .await
            >= 1.0
    );

    // --- The OpenAPI document matches the responses (schemathesis, property-based).
    schemathesis(
        None,
        &serve.url("/api/v1/openapi.json"),
        // The event stream never ends; it is tested below.
        &["--exclude-path".into(), "/api/v1/stream".into()],
    );

    // --- SSE: a stream on a short refresh interval pushes a changed ranking row after new
    // events for Hà Nội.
    let fast = Serve::start(&env, 300).await;
    let mut stream = EventStream::open(fast.port, "/api/v1/stream?window=30d").await;
    let snapshot = stream.next_event("ranking").await;
    let hanoi = |data: &Value| {
        data["provinces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["province_code"] == "01")
            .cloned()
    };
    let before = hanoi(&snapshot).expect("the first push holds every province");
    let before_n = before["respondents"].as_u64().unwrap();
    let producer = env.producer();
    let now = sipas_stream::domain::time::unix_now();
    for n in 0..5 {
        let raw = survey(&env, &format!("sse-{n}"), "01", "01-sse", "online", 5, now);
        env.produce(
            &producer,
            &env.config.kafka.surveys_topic,
            "01",
            &survey_json(&raw),
        )
        .await;
    }
    let update = loop {
        let event = stream.next_event("ranking").await;
        if let Some(row) = hanoi(&event) {
            if row["respondents"].as_u64().unwrap() == before_n + 5 {
                break event;
            }
        }
    };
    assert!(
        update["provinces"].as_array().unwrap().len() < rows.len(),
        "only changed rows are pushed"
    );
    drop(fast);
    drop(serve);
    drop(pipeline);
}

/// A minimal server-sent events reader.
struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl EventStream {
    async fn open(port: u16, path: &str) -> Self {
        use http_body_util::Empty;
        use hyper_util::client::legacy::Client;
        let client: Client<_, Empty<hyper::body::Bytes>> =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let request = hyper::Request::get(format!("http://127.0.0.1:{port}{path}"))
            .header("accept", "text/event-stream")
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The data of the next event named `name`.
    async fn next_event(&mut self, name: &str) -> Value {
        use http_body_util::BodyExt;
        let started = std::time::Instant::now();
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = if e.trim() == name { name } else { "other" };
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if event == name {
                    return serde_json::from_str(&data).unwrap();
                }
            }
            assert!(started.elapsed() < PATIENCE, "no `{name}` event");
            let Ok(frame) =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.body.frame()).await
            else {
                continue;
            };
            let frame = frame.expect("the stream ended").expect("stream error");
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}
