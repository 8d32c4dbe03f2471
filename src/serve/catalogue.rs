//! Every statement the read API sends, rendered with sample values into
//! `scripts/serve-queries.sql`, which `scripts/check-sql-current.py` runs on the current
//! ClickHouse (chdb) and on a 18.16 server, checking the column types the rows decode.
//! The file is compared here with what the code builds; `SIPAS_UPDATE_SERVE_QUERIES=1`
//! rewrites it.
use clickhouse::query::Query;
use clickhouse::Row;

use super::api::hotline::{self, HotlineRequest};
use super::api::rankings::{self, RankingsRequest};
use super::api::units::{self, UnitRequest};
use super::db::{newest_day_sql, HOTLINE_EVENTS, SURVEY_EVENTS};
use super::params::HotlineBy;
use super::rows::{HotlineSumRow, NationRow, SurveySumRow};
use super::sums::{hotline_query, survey_query, HotlineGroup, SurveyGroup, SurveyScope};
use crate::domain::FrameworkCatalog;
use crate::index::rows::{HotlineKpiRow, SatisfactionRow};
use crate::index::values::{UnitKey, UnitType};
use crate::index::window::{from_date, Window};
use crate::tables;

const PATH: &str = "scripts/serve-queries.sql";

/// The ClickHouse types a computed row decodes (the same on 18.16 and current releases).
const SURVEY_SUM_TYPES: &str = "key String, level String, period UInt32, respondents UInt64, \
    n1 Array(UInt64), n2 Array(UInt64), n3 Array(UInt64), n4 Array(UInt64), n5 Array(UInt64), \
    missing Array(UInt64), ticks Array(UInt64)";
const HOTLINE_SUM_TYPES: &str = "province String, key String, received Int64, responded Int64, \
    responded_on_time Int64, rated Int64, rated_satisfied Int64, reopened Int64, rejected Int64, \
    open_past_due Int64, bins Array(UInt8), bin_counts Array(Int64)";
const NATION_TYPES: &str = "provinces UInt64, sipas_mean_of_provinces Nullable(Float64), \
    ci_low Nullable(Float64), ci_high Nullable(Float64), \
    sipas_respondent_weighted Nullable(Float64), total_respondents UInt64";
const DAY_TYPES: &str = "d UInt16";

struct Entry {
    name: &'static str,
    types: Option<&'static str>,
    sql: String,
}

/// The query's text with `?fields` spelled out as `T`'s columns.
fn render<T: Row>(query: Query) -> String {
    let columns: Vec<String> = T::COLUMN_NAMES.iter().map(|c| format!("`{c}`")).collect();
    query
        .sql_display()
        .to_string()
        .replace("?fields", &columns.join(","))
}

fn entry<T: Row>(name: &'static str, types: Option<&'static str>, query: Option<Query>) -> Entry {
    Entry {
        name,
        types,
        sql: query.map(render::<T>).unwrap_or_default(),
    }
}

fn entries() -> Vec<Entry> {
    let client = clickhouse::Client::default();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut catalog = FrameworkCatalog::load_dir(&root.join("config/frameworks")).unwrap();
    let mut framework = catalog.get("BNV-2640-2017").unwrap().clone();
    framework.id = "F".into();
    catalog.add(framework);
    let framework = catalog.get("F").unwrap();
    let as_of = from_date(time::macros::date!(2026 - 11 - 20));
    let ranking = |window, as_of| RankingsRequest {
        framework: "F".into(),
        window,
        as_of,
    };
    let unit = UnitRequest {
        framework: "F".into(),
        province: "79".into(),
        agency: None,
        window: Window::Rolling(30),
        days: 90,
    };
    let province = UnitKey {
        unit_type: UnitType::Province,
        unit_id: "79".into(),
        province_code: "79".into(),
    };
    let hotline_request = |by, province: Option<&str>, as_of| HotlineRequest {
        by,
        province: province.map(str::to_owned),
        window: Window::Rolling(30),
        as_of,
    };
    let in_province = SurveyScope {
        framework,
        province: Some("79"),
        agency: None,
    };
    let nationwide = SurveyScope {
        province: None,
        ..in_province
    };
    let agency = SurveyScope {
        agency: Some("a"),
        ..in_province
    };
    let month = Window::Month.start(as_of);
    let [survey_bounded, survey_whole] = newest_day_sql(
        tables::SATISFACTION_DAY_COUNTS,
        tables::SATISFACTION_LATEST,
        SURVEY_EVENTS,
    );
    let [hotline_bounded, hotline_whole] = newest_day_sql(
        tables::HOTLINE_DAY_COUNTS,
        tables::HOTLINE_KPI_LATEST,
        HOTLINE_EVENTS,
    );
    vec![
        entry::<SatisfactionRow>(
            "rankings: provinces at the latest day",
            None,
            Some(rankings::current_query(
                &client,
                &ranking(Window::Rolling(30), None),
            )),
        ),
        entry::<SatisfactionRow>(
            "rankings: provinces at a day",
            None,
            Some(rankings::current_query(
                &client,
                &ranking(Window::Month, Some(as_of)),
            )),
        ),
        entry::<SatisfactionRow>(
            "rankings: earlier days",
            None,
            Some(rankings::earlier_query(
                &client,
                &ranking(Window::Rolling(30), None),
                &[as_of - 30, as_of - 365],
            )),
        ),
        entry::<NationRow>(
            "rankings: the nation",
            Some(NATION_TYPES),
            Some(rankings::nation_query(
                &client,
                &ranking(Window::Rolling(30), None),
                as_of,
            )),
        ),
        entry::<SurveySumRow>(
            "rankings: provinces at query time, three periods",
            Some(SURVEY_SUM_TYPES),
            survey_query(
                &client,
                nationwide,
                SurveyGroup::Province,
                &[
                    (as_of - 44, as_of),
                    (as_of - 89, as_of - 45),
                    (as_of - 409, as_of - 365),
                ],
            ),
        ),
        entry::<SatisfactionRow>(
            "units: a province's latest values",
            None,
            Some(units::latest_query(&client, &unit, &province)),
        ),
        entry::<SatisfactionRow>(
            "units: a province's history",
            None,
            Some(units::history_query(
                &client,
                &unit,
                &province,
                as_of - 89,
                as_of,
            )),
        ),
        entry::<SurveySumRow>(
            "units: an agency's day sums",
            Some(SURVEY_SUM_TYPES),
            survey_query(&client, agency, SurveyGroup::Day, &[(as_of - 119, as_of)]),
        ),
        entry::<SurveySumRow>(
            "agencies: a province's agencies over a window",
            Some(SURVEY_SUM_TYPES),
            survey_query(&client, in_province, SurveyGroup::Agency, &[(month, as_of)]),
        ),
        entry::<SurveySumRow>(
            "agencies: compared with the previous period and the previous year (compare=true)",
            Some(SURVEY_SUM_TYPES),
            survey_query(
                &client,
                in_province,
                SurveyGroup::Agency,
                &[
                    (as_of - 29, as_of),
                    (as_of - 59, as_of - 30),
                    (as_of - 394, as_of - 365),
                ],
            ),
        ),
        entry::<SurveySumRow>(
            "breakdown: a province by procedure",
            Some(SURVEY_SUM_TYPES),
            survey_query(
                &client,
                in_province,
                SurveyGroup::Procedure,
                &[(month, as_of)],
            ),
        ),
        entry::<SurveySumRow>(
            "breakdown: every province by channel",
            Some(SURVEY_SUM_TYPES),
            survey_query(&client, nationwide, SurveyGroup::Channel, &[(month, as_of)]),
        ),
        entry::<HotlineKpiRow>(
            "hotline: materialised provinces",
            None,
            Some(hotline::materialised_query(
                &client,
                &hotline_request(HotlineBy::Province, None, None),
            )),
        ),
        entry::<HotlineKpiRow>(
            "hotline: materialised categories of a province",
            None,
            Some(hotline::materialised_query(
                &client,
                &hotline_request(HotlineBy::Category, Some("79"), None),
            )),
        ),
        entry::<HotlineKpiRow>(
            "hotline: materialised categories of a province at a requested day",
            None,
            Some(hotline::materialised_query(
                &client,
                &hotline_request(HotlineBy::Category, Some("79"), Some(as_of)),
            )),
        ),
        entry::<HotlineSumRow>(
            "hotline: a province's agencies at query time",
            Some(HOTLINE_SUM_TYPES),
            hotline_query(
                &client,
                Some("79"),
                HotlineGroup::Agency,
                Window::Rolling(30),
                as_of,
            ),
        ),
        entry::<HotlineSumRow>(
            "hotline: channels of every province at query time",
            Some(HOTLINE_SUM_TYPES),
            hotline_query(&client, None, HotlineGroup::Channel, Window::Month, as_of),
        ),
        Entry {
            name: "newest survey day (bounded by the latest table)",
            types: Some(DAY_TYPES),
            sql: survey_bounded,
        },
        Entry {
            name: "newest survey day",
            types: Some(DAY_TYPES),
            sql: survey_whole,
        },
        Entry {
            name: "newest hotline day (bounded by the latest table)",
            types: Some(DAY_TYPES),
            sql: hotline_bounded,
        },
        Entry {
            name: "newest hotline day",
            types: Some(DAY_TYPES),
            sql: hotline_whole,
        },
    ]
}

fn document() -> String {
    let mut out = String::from(
        "-- The read API's statements with sample values (generated by the test \
         serve::catalogue; SIPAS_UPDATE_SERVE_QUERIES=1 cargo test --lib catalogue rewrites it).\n\
         -- scripts/check-sql-current.py runs each; `types:` are the types its row decodes.\n",
    );
    for e in entries() {
        out.push_str(&format!("\n-- query: {}\n", e.name));
        if let Some(types) = e.types {
            out.push_str(&format!(
                "-- types: {}\n",
                types.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        out.push_str(&e.sql);
        out.push_str(";\n");
    }
    out
}

#[test]
fn the_checked_statements_are_the_ones_the_api_sends() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH);
    let want = document();
    assert!(
        entries()
            .iter()
            .all(|e| !e.sql.is_empty() && !e.sql.contains('?')),
        "every statement is fully bound"
    );
    if std::env::var_os("SIPAS_UPDATE_SERVE_QUERIES").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{PATH} is not what the API sends: run SIPAS_UPDATE_SERVE_QUERIES=1 cargo test --lib catalogue, then scripts/check-sql-current.py"
    );
}
