//! `sipas import` against the real broker and ClickHouse: a spreadsheet-style CSV with good
//! and bad rows gives exact accepted/rejected counts with line numbers, `sipas run` stores
//! exactly the accepted records, and importing the same files again changes nothing in the
//! deduplicated views.
mod support;

use std::path::Path;
use std::process::Command;

use support::*;

const CRITERIA: &[&str] = &[
    "access.1",
    "access.2",
    "procedure.1",
    "staff.1",
    "result.1",
    "feedback.1",
];

/// Header mapping as an operator would write it for a Vietnamese export.
const MAPPING: &str = r#"
delimiter = ";"
[surveys.columns]
"STT" = "-"
"Mã phiếu" = "submission_id"
"Thời điểm" = "submitted_at"
"Tỉnh" = "province_code"
"Cơ quan" = "agency_id"
"Cấp" = "agency_level"
"Kênh" = "channel"
"Đối tượng" = "respondent_type"
"Rút ngắn thời gian" = "expectation:expect.shorter_time"
[surveys.defaults]
framework = "BNV-2640-2017"
"#;

fn row(n: u32, id: &str, at: &str, province: &str, scores: [&str; 6], tick: &str) -> String {
    format!(
        "{n};{id};{at};{province};{province}-commune-001;commune;one_stop;citizen;{};{tick}\n",
        scores.join(";")
    )
}

/// (file text, accepted, rejected lines with reasons, distinct accepted submissions)
fn survey_csv() -> (String, usize, Vec<(u64, &'static str)>, usize) {
    let mut text = format!(
        "\u{feff}STT;Mã phiếu;Thời điểm;Tỉnh;Cơ quan;Cấp;Kênh;Đối tượng;{};Rút ngắn thời gian\n",
        CRITERIA.join(";")
    );
    let at = "2026-11-20T09:00:00+07:00";
    // line 2..6: good rows with ids; 1 = Hà Nội without its leading zero.
    text += &row(1, "csv-1", at, "1", ["5", "4", "3", "", "5", "4"], "x");
    text += &row(2, "csv-2", at, "79", ["4", "4", "4", "4", "4", "4"], "");
    text += &row(3, "csv-3", at, "48", ["1", "2", "", "", "", "5"], "1");
    text += &row(
        4,
        "csv-4",
        "2025-03-01T10:00:00+07:00",
        "64",
        ["5", "5", "5", "5", "5", "5"],
        "",
    ); // 2004 code -> 52
    text += &row(5, "csv-5", at, "79", ["3", "3", "3", "3", "3", "3"], "");
    // line 7, 8: no id: derived from the content; line 8 repeats line 7 (same derived id).
    text += &row(6, "", at, "31", ["5", "5", "4", "4", "3", "3"], "");
    text += &row(6, "", at, "31", ["5", "5", "4", "4", "3", "3"], "");
    // line 9: a quoted cell with a line break (the row spans lines 9-10).
    text +=
        &format!("7;csv-7;{at};01;\"01-commune\n002\";commune;online;organization;5;5;5;5;5;5;\n");
    // bad rows: line 11..16
    text += &row(8, "csv-bad-1", at, "99", ["5", "5", "5", "5", "5", "5"], "");
    text += &row(9, "csv-bad-2", at, "79", ["5", "6", "5", "5", "5", "5"], "");
    text += &row(
        10,
        "csv-bad-3",
        "20/11/2026 09:00",
        "79",
        ["5", "5", "5", "5", "5", "5"],
        "",
    );
    text += &row(
        11,
        "csv-bad-4",
        at,
        "79",
        ["5", "tốt", "5", "5", "5", "5"],
        "",
    );
    text += "12;csv-bad-5;2026-11-20T09:00:00+07:00;79\n";
    text += &format!("13;csv-bad-6;{at};79;;commune;one_stop;citizen;5;5;5;5;5;5;\n");
    let rejected = vec![
        (11, "unknown_province"),
        (12, "answer_out_of_range"),
        (13, "bad_timestamp"),
        (14, "answer_out_of_range"),
        (15, "undecodable"),
        (16, "missing_field"),
    ];
    (text, 8, rejected, 7)
}

const HOTLINE_NDJSON: &str = r#"{"ticket_id":"t-imp-1","type":"received","occurred_at":"2026-11-20T08:00:00+07:00","province_code":"79","channel":"phone","category":"traffic","due_at":"2026-11-22T08:00:00+07:00","reporter_phone":"0901234567"}

{"event_id":"h-imp-2","ticket_id":"t-imp-1","type":"responded","occurred_at":"2026-11-20T12:00:00+07:00","province_code":"79"}
{"event_id":"h-imp-3","ticket_id":"t-imp-1","type":"rated","rating":"satisfied","occurred_at":"2026-11-20T13:00:00+07:00","province_code":"79"}
not json at all
"#;

struct Output {
    stdout: String,
    stderr: String,
    success: bool,
}

fn sipas(env: &TestEnv, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_sipas"))
        .args(args)
        .current_dir(root())
        .env_clear()
        .envs(env.child_env(free_port()))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("sipas runs");
    Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        success: output.status.success(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn csv_and_ndjson_import_exactly_once() {
    let env = TestEnv::new("import").await;
    let dir = log_path(&format!("import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (csv_text, accepted, rejected, distinct) = survey_csv();
    let csv = write(&dir, "surveys.csv", &csv_text);
    let mapping = write(&dir, "mapping.toml", MAPPING);
    let ndjson = write(&dir, "hotline.ndjson", HOTLINE_NDJSON);

    // A dry run reports the same and produces nothing (checked below through the counts).
    let dry = sipas(
        &env,
        &[
            "import",
            "--kind",
            "surveys",
            "--mapping",
            &mapping,
            "--dry-run",
            &csv,
        ],
    );
    assert!(dry.success, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("dry run, nothing produced"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        topic_messages(&env, &env.config.kafka.surveys_topic).await,
        0
    );

    let first = sipas(
        &env,
        &["import", "--kind", "surveys", "--mapping", &mapping, &csv],
    );
    assert!(first.success, "import failed: {}", first.stderr);
    let summary = format!(
        "{} rows, {accepted} accepted (produced to {}), {} rejected",
        accepted + rejected.len(),
        env.config.kafka.surveys_topic,
        rejected.len()
    );
    assert!(
        first.stdout.contains(&summary),
        "expected {summary:?} in:\n{}",
        first.stdout
    );
    let lines: Vec<(u64, String)> = first
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("line "))
        .map(|l| {
            let (n, rest) = l.split_once(": ").unwrap();
            (
                n.parse().unwrap(),
                rest.split(':').next().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = rejected.iter().map(|(n, r)| (*n, r.to_string())).collect();
    assert_eq!(lines, expected, "{}", first.stdout);

    assert_eq!(
        topic_messages(&env, &env.config.kafka.surveys_topic).await,
        accepted as i64
    );

    let hotline = sipas(&env, &["import", "--kind", "hotline", &ndjson]);
    assert!(hotline.success, "{}", hotline.stderr);
    assert!(
        hotline.stdout.contains("4 rows, 3 accepted"),
        "{}",
        hotline.stdout
    );
    assert!(
        hotline.stdout.contains("line 5: undecodable"),
        "{}",
        hotline.stdout
    );
    assert!(!hotline.stdout.contains("0901234567") && !hotline.stderr.contains("0901234567"));

    let pipeline = Pipeline::start(&env);
    let inserted = |table: &'static str| {
        let pipeline = &pipeline;
        async move {
            metric_sum(
                &pipeline.metrics().await,
                &format!("sipas_inserted_rows_total{{table=\"{table}\"}}"),
            )
        }
    };
    wait_for("first import stored", || async {
        inserted("survey_submissions").await >= accepted as f64
            && inserted("hotline_events").await >= 3.0
    })
    .await;
    let dedup_surveys = "SELECT count() AS n FROM survey_submissions_dedup";
    assert_eq!(env.count(dedup_surveys).await, distinct as u64);
    assert_eq!(
        env.count("SELECT count() AS n FROM hotline_events_dedup")
            .await,
        3
    );
    // Values as the file had them.
    assert_eq!(env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE submission_id = 'csv-1' AND province_code = '01' AND has(expectations, 'expect.shorter_time')").await, 1);
    assert_eq!(env.count("SELECT count() AS n FROM survey_answers WHERE submission_id = 'csv-1' AND score IS NOT NULL").await, 5);
    assert_eq!(env.count("SELECT count() AS n FROM survey_answers WHERE submission_id = 'csv-3' AND criterion_id = 'access.1' AND score = 1").await, 1);
    assert_eq!(env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE submission_id = 'csv-4' AND province_code = '52' AND province_code_original = '64'").await, 1);
    assert_eq!(env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE submission_id = 'csv-7' AND agency_id = '01-commune\n002' AND channel = 'online'").await, 1);
    assert_eq!(env.count("SELECT count() AS n FROM survey_submissions_dedup WHERE startsWith(submission_id, 'imp-') AND province_code = '31'").await, 1);
    assert_eq!(env.count("SELECT count() AS n FROM hotline_events_dedup WHERE startsWith(event_id, 'imp-') AND length(reporter_phone_hash) = 64").await, 1);

    // The same files again: every record reaches ClickHouse a second time and collapses.
    let second = sipas(
        &env,
        &["import", "--kind", "surveys", "--mapping", &mapping, &csv],
    );
    assert!(
        second.success && second.stdout.contains(&summary),
        "{}",
        second.stdout
    );
    let again = sipas(&env, &["import", "--kind", "hotline", &ndjson]);
    assert!(again.success, "{}", again.stderr);
    assert_eq!(
        topic_messages(&env, &env.config.kafka.surveys_topic).await,
        2 * accepted as i64
    );
    wait_for("second import stored", || async {
        inserted("survey_submissions").await >= 2.0 * accepted as f64
            && inserted("hotline_events").await >= 6.0
    })
    .await;
    assert_eq!(env.count(dedup_surveys).await, distinct as u64);
    assert_eq!(
        env.count("SELECT uniqExact(submission_id) AS n FROM survey_submissions")
            .await,
        distinct as u64
    );
    assert_eq!(
        env.count("SELECT count() AS n FROM hotline_events_dedup")
            .await,
        3
    );
    assert_eq!(
        env.count("SELECT count() AS n FROM survey_answers").await,
        distinct as u64 * 22
    );
}
