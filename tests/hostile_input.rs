//! Hostile input at the edges, in memory: the gateway's request body → records
//! (`gateway::records`) and the importer's CSV and NDJSON readers (`import::Records`), each
//! record through the pipeline's decoder as the gateway and `sipas import` do. A seed corpus
//! (`tests/fixtures/hostile/`, outcomes in `expected.toml`) and property tests over it and
//! over arbitrary bytes: nothing panics, every rejection names its problem, valid records
//! round-trip unchanged.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use sipas_stream::config::ImportConfig;
use sipas_stream::contract::avro::SchemaCatalog;
use sipas_stream::contract::pii::PiiHasher;
use sipas_stream::contract::validate::Validator;
use sipas_stream::contract::{Decoder, EventKind, Reject, RejectReason};
use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};
use sipas_stream::gateway::records::{self, BodyError};
use sipas_stream::import::{Format, Records};
use sipas_stream::publish::check;

const MAX_RECORDS: usize = 1000;
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir() -> PathBuf {
    root().join("tests/fixtures/hostile")
}

fn frameworks() -> FrameworkCatalog {
    FrameworkCatalog::load_dir(&root().join("config/frameworks")).unwrap()
}

fn decoder() -> &'static Decoder {
    static DECODER: std::sync::LazyLock<Decoder> = std::sync::LazyLock::new(|| {
        let validator = Validator {
            provinces: ProvinceRegistry::builtin(),
            frameworks: frameworks(),
            pii: PiiHasher::new(b"hostile-input-test-secret"),
        };
        Decoder::new(
            validator,
            Arc::new(SchemaCatalog::load_dir(&root().join("schemas")).unwrap()),
            MAX_MESSAGE_BYTES,
        )
    });
    &DECODER
}

/// After every event time of the corpus (2026-11-20), so that none is from the future.
fn received() -> i64 {
    sipas_stream::domain::time::parse_rfc3339("2026-11-21T12:00:00+07:00").unwrap()
}

/// What became of one record: accepted with its id, or rejected with a reason and detail.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Accepted { id: String, payload: Vec<u8> },
    Rejected(Reject),
}

/// Checks one record as the gateway and the importer do.
fn judge(kind: EventKind, payload: Result<Vec<u8>, Reject>) -> Outcome {
    match payload.and_then(|bytes| check(decoder(), kind, bytes, received())) {
        Ok(checked) => Outcome::Accepted {
            id: checked.id,
            payload: checked.payload,
        },
        Err(reject) => Outcome::Rejected(reject),
    }
}

/// The gateway's view of a body: why it holds no records, or each record's line and outcome.
fn through_gateway(kind: EventKind, body: &[u8]) -> Result<Vec<(u64, Outcome)>, BodyError> {
    let parts = records::records(body, MAX_RECORDS)?;
    Ok(parts
        .into_iter()
        .map(|(line, bytes)| (line as u64, judge(kind, Ok(bytes.to_vec()))))
        .collect())
}

/// The importer's view of a file: each record's line and outcome, then the error that
/// stopped the reading (if one did).
fn through_importer(
    kind: EventKind,
    format: Format,
    file: &[u8],
) -> (Vec<(u64, Outcome)>, Option<String>) {
    let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(file.to_vec()));
    let records = match Records::open(kind, format, input, &ImportConfig::default()) {
        Ok(records) => records.with_max_record_bytes(MAX_MESSAGE_BYTES),
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut outcomes = Vec::new();
    for record in records {
        match record {
            Ok(record) => outcomes.push((record.line, judge(kind, record.payload))),
            Err(e) => return (outcomes, Some(e.to_string())),
        }
    }
    (outcomes, None)
}

/// Every rejection carries one of the contract's reason codes and a detail saying what was
/// wrong; lines are 1-based and ascending.
fn assert_explained(outcomes: &[(u64, Outcome)], context: &str) {
    let mut previous = 0;
    for (line, outcome) in outcomes {
        assert!(*line > previous, "{context}: line {line} after {previous}");
        previous = *line;
        if let Outcome::Rejected(reject) = outcome {
            assert!(
                RejectReason::from_code(reject.reason.code()) == Some(reject.reason),
                "{context}: line {line}: unknown reason {:?}",
                reject.reason
            );
            assert!(
                reject.detail.trim().len() >= 10,
                "{context}: line {line}: {} without a detail naming the problem: {:?}",
                reject.reason.code(),
                reject.detail
            );
        }
    }
}

fn assert_body_error_explained(error: &BodyError, context: &str) {
    assert!(
        !error.code().is_empty() && error.to_string().len() >= 10,
        "{context}: {error:?}"
    );
    assert!(
        (400..500).contains(&error.status()),
        "{context}: {error:?} is answered {}",
        error.status()
    );
}

/// `LINE accepted [ID]` or `LINE REASON[: DETAIL-SUBSTRING]`, as written in expected.toml.
fn matches(expected: &str, (line, outcome): &(u64, Outcome)) -> bool {
    let (want_line, rest) = expected.split_once(' ').unwrap_or((expected, ""));
    if want_line.parse::<u64>().ok() != Some(*line) {
        return false;
    }
    let (what, detail) = rest.split_once(": ").unwrap_or((rest, ""));
    let mut words = what.split_whitespace();
    match (words.next(), outcome) {
        (Some("accepted"), Outcome::Accepted { id, .. }) => words.next().is_none_or(|w| w == id),
        (Some(reason), Outcome::Rejected(reject)) => {
            reject.reason.code() == reason && reject.detail.contains(detail)
        }
        _ => false,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    kind: String,
    /// One entry per record, in order (see [`matches`]).
    outcomes: Vec<String>,
    /// For a file the importer stops reading: a substring of its error.
    #[serde(default)]
    import_error: Option<String>,
}

fn kind_named(name: &str) -> EventKind {
    match name {
        "survey" => EventKind::Survey,
        "hotline" => EventKind::Hotline,
        other => panic!("unknown kind {other:?} in expected.toml"),
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("csv" | "ndjson")
            )
        })
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn show(outcomes: &[(u64, Outcome)]) -> String {
    outcomes
        .iter()
        .map(|(line, outcome)| match outcome {
            Outcome::Accepted { id, .. } => format!("{line} accepted {id}"),
            Outcome::Rejected(r) => format!("{line} {}: {}", r.reason.code(), r.detail),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every corpus file has its expected outcomes, through the importer and (NDJSON) the
/// gateway, which agree record by record.
#[test]
fn the_seed_corpus_is_judged_as_expected() {
    let expected: Expected =
        toml::from_str(&std::fs::read_to_string(corpus_dir().join("expected.toml")).unwrap())
            .unwrap();
    let files = corpus();
    for (name, _) in &files {
        assert!(
            expected.case.iter().any(|c| &c.file == name),
            "{name} has no case in expected.toml"
        );
    }
    let mut failures = Vec::new();
    for case in &expected.case {
        let kind = kind_named(&case.kind);
        let bytes = &files
            .iter()
            .find(|(name, _)| *name == case.file)
            .unwrap_or_else(|| panic!("{} is not in the corpus", case.file))
            .1;
        let format = Format::from_path(Path::new(&case.file)).unwrap();
        let (imported, error) = through_importer(kind, format, bytes);
        let context = format!("import {}", case.file);
        assert_explained(&imported, &context);
        let error_as_expected = match (&case.import_error, &error) {
            (None, None) => true,
            (Some(want), Some(got)) => got.contains(want.as_str()),
            _ => false,
        };
        let outcomes_as_expected = imported.len() == case.outcomes.len()
            && case
                .outcomes
                .iter()
                .zip(&imported)
                .all(|(e, o)| matches(e, o));
        if !(error_as_expected && outcomes_as_expected) {
            failures.push(format!(
                "{context}: got\n{}\n(error {error:?})\nexpected\n{}\n(error {:?})",
                show(&imported),
                case.outcomes.join("\n"),
                case.import_error
            ));
        }
        if format == Format::Ndjson {
            let context = format!("gateway {}", case.file);
            let through = through_gateway(kind, bytes).unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_explained(&through, &context);
            if show(&through) != show(&imported) {
                failures.push(format!(
                    "{context}: differs from import:\n{}",
                    show(&through)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn bodies_without_records_are_refused_with_their_reason() {
    for (body, code) in [
        (&b""[..], "empty_body"),
        (b" \r\n\t\n", "empty_body"),
        (b"\xEF\xBB\xBF\n", "empty_body"),
    ] {
        let error = records::records(body, MAX_RECORDS).unwrap_err();
        assert_eq!(error.code(), code);
        assert_body_error_explained(&error, code);
    }
    // A million lines: counted, refused, none kept.
    let million = "{}\n".repeat(1_000_000);
    let error = records::records(million.as_bytes(), MAX_RECORDS).unwrap_err();
    assert_eq!(
        error,
        BodyError::TooManyRecords {
            count: 1_000_000,
            limit: MAX_RECORDS
        }
    );
    assert!(error.to_string().contains("1000000 records"), "{error}");
}

#[test]
fn deep_nesting_huge_lines_and_huge_bodies_are_rejected_not_fatal() {
    // Nested 100,000 deep: serde_json's recursion limit, on the split and in the decoder.
    for body in [
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)),
        "[".repeat(100_000),
    ] {
        let outcomes = through_gateway(EventKind::Survey, body.as_bytes()).unwrap();
        assert_explained(&outcomes, "deep nesting");
        assert!(
            matches!(&outcomes[..], [(1, Outcome::Rejected(r))] if r.reason == RejectReason::Oversize || r.detail.contains("recursion limit")),
            "{}",
            show(&outcomes)
        );
        let (imported, error) =
            through_importer(EventKind::Survey, Format::Ndjson, body.as_bytes());
        assert!(error.is_none());
        assert_explained(&imported, "deep nesting, import");
    }
    // Nested 20,000 deep fits the decoder's 64 KiB: undecodable, in an answer or anywhere.
    for within in [
        format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)),
        String::from_utf8(survey_line("deep")).unwrap().replace(
            "\"access.1\":5",
            &format!("\"access.1\":{}5{}", "[".repeat(20_000), "]".repeat(20_000)),
        ),
        format!(
            "{{\"submission_id\":{}1{}}}",
            "{\"a\":".repeat(10_000),
            "}".repeat(10_000)
        ),
    ] {
        let outcomes = through_gateway(EventKind::Survey, within.trim().as_bytes()).unwrap();
        assert_explained(&outcomes, "deep nesting within the size limit");
        assert!(
            matches!(&outcomes[..], [(1, Outcome::Rejected(r))] if matches!(r.reason, RejectReason::Undecodable | RejectReason::AnswerOutOfRange)),
            "{}",
            show(&outcomes)
        );
    }
    // An overlong NDJSON line is refused by its length, the lines around it still read.
    let mut file = survey_line("long-0");
    file.extend_from_slice(
        format!(
            "{{\"submission_id\":\"x\",\"pad\":\"{}\"}}\n",
            "x".repeat(200_000)
        )
        .as_bytes(),
    );
    file.extend(survey_line("long-2"));
    for outcomes in [
        through_importer(EventKind::Survey, Format::Ndjson, &file).0,
        through_gateway(EventKind::Survey, &file).unwrap(),
    ] {
        assert_explained(&outcomes, "overlong line");
        assert_eq!(outcomes.len(), 3, "{}", show(&outcomes));
        assert!(
            matches!(&outcomes[1], (2, Outcome::Rejected(r)) if r.reason == RejectReason::Oversize && r.detail.contains("200"))
        );
        assert!(matches!(&outcomes[2], (3, Outcome::Accepted { id, .. }) if id == "hs-long-2"));
    }
}

/// An unclosed quote early in a large CSV file: the reading stops at a bound, naming the
/// line, instead of holding the rest of the file as one cell.
#[test]
fn an_unclosed_csv_quote_stops_the_import_at_a_bound() {
    let mut file = std::fs::read(corpus_dir().join("bom_crlf.csv")).unwrap();
    file.extend_from_slice(b"hs-open,\"never closed\r\n");
    for i in 0..40_000 {
        file.extend_from_slice(format!("hs-{i},BNV-2640-2017,2026-11-20T09:00:00+07:00,79,a,commune,online,citizen,5,4\r\n").as_bytes());
    }
    let (outcomes, error) = through_importer(EventKind::Survey, Format::Csv, &file);
    assert_eq!(outcomes.len(), 2, "{}", show(&outcomes));
    let error = error.expect("the reading stops");
    assert!(
        error.contains("starting on line 4") && error.contains("1048576 bytes"),
        "{error}"
    );
}

fn survey_value(id: &str) -> Value {
    json!({"submission_id": format!("hs-{id}"), "framework": "BNV-2640-2017",
           "submitted_at": "2026-11-20T09:00:00+07:00", "province_code": "79",
           "agency_id": "79-commune-001", "agency_level": "commune", "channel": "online",
           "respondent_type": "citizen", "answers": {"access.1": 5}})
}

fn survey_line(id: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&survey_value(id)).unwrap();
    line.push(b'\n');
    line
}

/// Corpus files, mutated: bytes replaced, cut short, spliced with another file, lines
/// repeated.
fn mutated_corpus() -> impl Strategy<Value = (String, Vec<u8>)> {
    let files = corpus();
    let count = files.len();
    (
        0..count,
        0..count,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        0..4u8,
    )
        .prop_map(move |(a, b, flips, cut, splice_at, how)| {
            let (name, mut bytes) = files[a].clone();
            for (index, byte) in flips {
                if !bytes.is_empty() {
                    let i = index.index(bytes.len());
                    bytes[i] = byte;
                }
            }
            match how {
                0 => bytes.truncate(cut.index(bytes.len() + 1)),
                1 => {
                    let at = splice_at.index(bytes.len() + 1);
                    let other = &files[b].1;
                    let mut spliced = bytes[..at].to_vec();
                    spliced.extend_from_slice(&other[cut.index(other.len() + 1)..]);
                    bytes = spliced;
                }
                2 => {
                    let copy = bytes.clone();
                    bytes.extend_from_slice(&copy);
                }
                _ => {}
            }
            (name, bytes)
        })
}

fn assert_nothing_unexplained(bytes: &[u8], context: &str) {
    for kind in [EventKind::Survey, EventKind::Hotline] {
        match through_gateway(kind, bytes) {
            Ok(outcomes) => assert_explained(&outcomes, context),
            Err(error) => assert_body_error_explained(&error, context),
        }
        for format in [Format::Ndjson, Format::Csv] {
            let (outcomes, error) = through_importer(kind, format, bytes);
            assert_explained(&outcomes, &format!("{context} as {format:?}"));
            if let Some(error) = error {
                assert!(error.len() >= 10, "{context}: import error {error:?}");
            }
        }
    }
}

/// A valid survey with an id of unusual characters (quotes, separators, line breaks,
/// Vietnamese letters), any province of three, any subset of criteria with any answers.
fn valid_survey() -> impl Strategy<Value = Value> {
    let criteria: Vec<String> = frameworks()
        .get("BNV-2640-2017")
        .unwrap()
        .criterion_ids()
        .map(str::to_owned)
        .collect();
    (
        "[A-Za-z0-9Đđàáạảãươ\"',;\n\r =-]{0,16}",
        prop::sample::select(vec!["79", "01", "48"]),
        proptest::sample::subsequence(criteria.clone(), 0..=criteria.len()),
        proptest::collection::vec(proptest::option::of(1..=5i64), criteria.len()),
        prop::sample::select(vec!["one_stop", "online", "postal", "interview", "phone"]),
        0..600u32,
    )
        .prop_map(|(id, province, chosen, scores, channel, minutes)| {
            let answers: Map<String, Value> = chosen
                .into_iter()
                .zip(scores)
                .map(|(criterion, score)| (criterion, score.map_or(Value::Null, Value::from)))
                .collect();
            json!({"submission_id": format!("hs-{id}-x"), "framework": "BNV-2640-2017",
                   "submitted_at": format!("2026-11-20T{:02}:{:02}:00+07:00", minutes / 60, minutes % 60),
                   "province_code": province, "agency_id": format!("{province}-commune-001"),
                   "agency_level": "commune", "channel": channel, "respondent_type": "citizen",
                   "answers": answers})
        })
}

fn accepted_values(outcomes: &[(u64, Outcome)]) -> Vec<(u64, Value)> {
    outcomes
        .iter()
        .map(|(line, outcome)| match outcome {
            Outcome::Accepted { id, payload } => {
                let value: Value = serde_json::from_slice(payload).unwrap();
                assert_eq!(value["submission_id"], json!(id));
                (*line, value)
            }
            Outcome::Rejected(r) => panic!("line {line}: {} {}", r.reason.code(), r.detail),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_files_never_panic_and_every_rejection_is_explained((name, bytes) in mutated_corpus()) {
        assert_nothing_unexplained(&bytes, &name);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_every_rejection_is_explained(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        assert_nothing_unexplained(&bytes, "arbitrary bytes");
    }

    /// Valid records framed any way the gateway reads them (LF or CRLF, blank lines, a BOM,
    /// no final newline) come out accepted, in order, at their lines, byte for byte as sent.
    #[test]
    fn valid_records_round_trip_through_the_gateway_and_the_ndjson_importer(
        surveys in proptest::collection::vec(valid_survey(), 1..12),
        crlf in any::<bool>(),
        blank_after in proptest::collection::vec(any::<bool>(), 12),
        bom in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut body = Vec::new();
        if bom {
            body.extend_from_slice(b"\xEF\xBB\xBF");
        }
        let mut lines = Vec::new();
        let mut line = 1;
        for (i, survey) in surveys.iter().enumerate() {
            body.extend(serde_json::to_vec(survey).unwrap());
            lines.push(line);
            if i + 1 < surveys.len() || final_newline {
                body.extend_from_slice(newline);
            }
            line += 1;
            if blank_after[i] && i + 1 < surveys.len() {
                body.extend_from_slice(newline);
                line += 1;
            }
        }
        let gateway = accepted_values(&through_gateway(EventKind::Survey, &body).unwrap());
        let imported = accepted_values(&through_importer(EventKind::Survey, Format::Ndjson, &body).0);
        for got in [gateway, imported] {
            let expected: Vec<(u64, Value)> = lines.iter().copied().zip(surveys.iter().cloned()).collect();
            prop_assert_eq!(got, expected);
        }
    }

    /// A survey written as a spreadsheet row (every criterion a column, unanswered = empty
    /// cell, quoting as a CSV writer does) is read back into the same record.
    #[test]
    fn valid_records_round_trip_through_the_csv_importer(
        surveys in proptest::collection::vec(valid_survey(), 1..8),
        crlf in any::<bool>(),
    ) {
        let criteria: Vec<String> = frameworks().get("BNV-2640-2017").unwrap().criterion_ids().map(str::to_owned).collect();
        let fields = ["submission_id", "framework", "submitted_at", "province_code", "agency_id", "agency_level", "channel", "respondent_type"];
        let mut writer = csv::WriterBuilder::new()
            .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
            .from_writer(Vec::new());
        writer.write_record(fields.iter().copied().chain(criteria.iter().map(String::as_str))).unwrap();
        for survey in &surveys {
            let cells = fields.iter().map(|f| survey[*f].as_str().unwrap().to_owned()).chain(
                criteria.iter().map(|c| survey["answers"].get(c).and_then(Value::as_i64).map(|s| s.to_string()).unwrap_or_default()),
            );
            writer.write_record(cells.collect::<Vec<_>>()).unwrap();
        }
        let file = writer.into_inner().unwrap();
        let (outcomes, error) = through_importer(EventKind::Survey, Format::Csv, &file);
        prop_assert!(error.is_none(), "{:?}", error);
        let got = accepted_values(&outcomes);
        prop_assert_eq!(got.len(), surveys.len());
        for ((_, value), survey) in got.iter().zip(&surveys) {
            let mut expected = survey.clone();
            // Every criterion is a column: one not answered is an empty cell, read as null.
            let answers: Map<String, Value> = criteria.iter().map(|c| (c.clone(), survey["answers"].get(c).cloned().unwrap_or(Value::Null))).collect();
            expected["answers"] = Value::Object(answers);
            // Cells are trimmed: an id that ends in white space is read without it.
            expected["submission_id"] = json!(survey["submission_id"].as_str().unwrap().trim());
            prop_assert_eq!(value, &expected);
        }
    }
}
