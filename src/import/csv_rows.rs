//! CSV rows (a spreadsheet export: one column per criterion id) to contract JSON objects.
//! Pure: the caller reads the file; validation happens afterwards in the pipeline's
//! `Decoder`, so this module only reshapes cells and never judges their values.
use serde_json::{Map, Value};

use crate::config::CsvMapping;
use crate::contract::decode::EventKind;

pub const SURVEY_FIELDS: &[&str] = &[
    "submission_id",
    "framework",
    "submitted_at",
    "province_code",
    "province_code_system",
    "agency_id",
    "agency_level",
    "procedure_code",
    "channel",
    "respondent_type",
    "expectations",
];

pub const HOTLINE_FIELDS: &[&str] = &[
    "event_id",
    "ticket_id",
    "type",
    "occurred_at",
    "province_code",
    "province_code_system",
    "channel",
    "category",
    "agency_id",
    "due_at",
    "rating",
    "reason",
    "reporter_phone",
    "reporter_email",
];

pub fn fields(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::Survey => SURVEY_FIELDS,
        EventKind::Hotline => HOTLINE_FIELDS,
    }
}

/// What one column becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Field(&'static str),
    Answer(String),
    Expectation(String),
    Skip,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("column {column} ({header:?}): {message}")]
    Column {
        column: usize,
        header: String,
        message: String,
    },
    #[error("default for {field:?}: not a {kind} contract field")]
    Default { field: String, kind: &'static str },
    #[error("two columns map to {0:?}")]
    Duplicate(String),
}

/// How the columns of one file map to the contract, decided once from its header.
#[derive(Debug, Clone)]
pub struct Layout {
    kind: EventKind,
    targets: Vec<Target>,
    defaults: Vec<(&'static str, String)>,
    list_separator: String,
}

impl Layout {
    pub fn new(
        kind: EventKind,
        header: &[String],
        mapping: &CsvMapping,
        list_separator: &str,
    ) -> Result<Self, LayoutError> {
        let known = fields(kind);
        let mut targets = Vec::with_capacity(header.len());
        let mut seen = std::collections::HashSet::new();
        for (index, raw_header) in header.iter().enumerate() {
            let header = raw_header.trim();
            let name = mapping
                .columns
                .get(header)
                .map(String::as_str)
                .unwrap_or(header);
            let column_error = |message: String| LayoutError::Column {
                column: index + 1,
                header: header.to_owned(),
                message,
            };
            let target = if name == "-" {
                Target::Skip
            } else if let Some(field) = known.iter().find(|f| **f == name) {
                Target::Field(field)
            } else if let Some(item) = name.strip_prefix("expectation:") {
                if kind == EventKind::Hotline {
                    return Err(column_error("hotline events have no expectations".into()));
                }
                Target::Expectation(item.trim().to_owned())
            } else if kind == EventKind::Survey && !name.is_empty() {
                // A criterion id; the framework decides whether it exists (unknown_criterion).
                Target::Answer(name.to_owned())
            } else {
                return Err(column_error(format!(
                    "not a {} contract field; map it in [import.{}.columns] or ignore it with \"-\"",
                    kind.as_str(),
                    kind.stream_name()
                )));
            };
            let unique = match &target {
                Target::Field(f) => Some(f.to_string()),
                Target::Answer(c) => Some(c.clone()),
                Target::Expectation(e) => Some(format!("expectation:{e}")),
                Target::Skip => None,
            };
            if let Some(unique) = unique {
                if !seen.insert(unique.clone()) {
                    return Err(LayoutError::Duplicate(unique));
                }
            }
            targets.push(target);
        }
        let mut defaults = Vec::new();
        for (field, value) in &mapping.defaults {
            let field = known
                .iter()
                .find(|f| *f == field)
                .ok_or_else(|| LayoutError::Default {
                    field: field.clone(),
                    kind: kind.as_str(),
                })?;
            defaults.push((*field, value.clone()));
        }
        Ok(Self {
            kind,
            targets,
            defaults,
            list_separator: list_separator.to_owned(),
        })
    }

    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    /// One row as a contract JSON object. Empty cells are absent fields (so a required one
    /// is reported as `missing_field`) or unanswered criteria (`null`).
    pub fn row(&self, cells: &[&str]) -> Map<String, Value> {
        let mut object = Map::new();
        let mut answers = Map::new();
        let mut expectations: Vec<Value> = Vec::new();
        for (target, cell) in self.targets.iter().zip(cells) {
            let cell = cell.trim();
            match target {
                Target::Skip => {}
                Target::Field("expectations") => {
                    expectations.extend(
                        cell.split(self.list_separator.as_str())
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(Value::from),
                    );
                }
                Target::Field(_) if cell.is_empty() => {}
                Target::Field(field) => {
                    object.insert((*field).to_owned(), Value::from(field_value(field, cell)));
                }
                Target::Answer(criterion) => {
                    answers.insert(criterion.clone(), answer_value(cell));
                }
                Target::Expectation(item) => {
                    if ticked(cell) {
                        expectations.push(Value::from(item.as_str()));
                    }
                }
            }
        }
        for (field, value) in &self.defaults {
            object
                .entry(field.to_string())
                .or_insert_with(|| Value::from(field_value(field, value)));
        }
        if self.kind == EventKind::Survey {
            object.insert("answers".into(), Value::Object(answers));
            if !expectations.is_empty() {
                object.insert("expectations".into(), Value::Array(expectations));
            }
        }
        object
    }
}

/// Spreadsheets drop the leading zero of province codes ("01" -> 1); GSO codes have two digits.
fn field_value(field: &str, cell: &str) -> String {
    if field == "province_code" && cell.len() == 1 && cell.as_bytes()[0].is_ascii_digit() {
        return format!("0{cell}");
    }
    cell.to_owned()
}

/// Empty = unanswered; an integer stays an integer (the validator checks 1..5); anything
/// else is passed on as text so that the validator rejects it as `answer_out_of_range`.
fn answer_value(cell: &str) -> Value {
    if cell.is_empty() {
        return Value::Null;
    }
    match cell.parse::<i64>() {
        Ok(score) => Value::from(score),
        Err(_) => Value::from(cell),
    }
}

/// An expectation column is ticked by any mark except blanks and explicit negatives.
fn ticked(cell: &str) -> bool {
    !cell.is_empty()
        && !matches!(
            cell.to_lowercase().as_str(),
            "0" | "no" | "false" | "không" | "khong" | "n"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn survey_columns_become_fields_answers_and_expectations() {
        let mut mapping = CsvMapping::default();
        mapping
            .columns
            .insert("Mã phiếu".into(), "submission_id".into());
        mapping.columns.insert("STT".into(), "-".into());
        mapping.columns.insert(
            "Rút ngắn thời gian".into(),
            "expectation:expect.shorter_time".into(),
        );
        mapping
            .defaults
            .insert("framework".into(), "BNV-2640-2017".into());
        let layout = Layout::new(
            EventKind::Survey,
            &header(&[
                "STT",
                "Mã phiếu",
                "province_code",
                "access.1",
                "staff.1",
                "result.3",
                "Rút ngắn thời gian",
                "expectations",
            ]),
            &mapping,
            ";",
        )
        .unwrap();
        let row = layout.row(&["7", " s-1 ", "1", "5", "", "x", "x", "expect.a; expect.b"]);
        assert_eq!(row["submission_id"], "s-1");
        assert_eq!(row["province_code"], "01");
        assert_eq!(row["framework"], "BNV-2640-2017");
        assert!(!row.contains_key("STT"));
        assert_eq!(row["answers"]["access.1"], 5);
        assert_eq!(row["answers"]["staff.1"], Value::Null);
        assert_eq!(row["answers"]["result.3"], "x");
        assert_eq!(
            row["expectations"],
            serde_json::json!(["expect.shorter_time", "expect.a", "expect.b"])
        );
        let unticked = layout.row(&["8", "s-2", "79", "4", "4", "4", "0", ""]);
        assert!(!unticked.contains_key("expectations"));
        assert_eq!(unticked["province_code"], "79");
    }

    #[test]
    fn empty_cells_leave_fields_absent_and_defaults_do_not_override_cells() {
        let mut mapping = CsvMapping::default();
        mapping
            .defaults
            .insert("framework".into(), "DEFAULT".into());
        let layout = Layout::new(
            EventKind::Survey,
            &header(&["submission_id", "framework", "agency_id"]),
            &mapping,
            ";",
        )
        .unwrap();
        let row = layout.row(&["s-1", "OTHER", ""]);
        assert_eq!(row["framework"], "OTHER");
        assert!(!row.contains_key("agency_id"));
        assert_eq!(layout.row(&["s-1", "", ""])["framework"], "DEFAULT");
    }

    #[test]
    fn hotline_rejects_unknown_columns_and_bad_mappings() {
        let mapping = CsvMapping::default();
        let err = Layout::new(
            EventKind::Hotline,
            &header(&["event_id", "Ghi chú"]),
            &mapping,
            ";",
        )
        .unwrap_err();
        assert!(
            matches!(err, LayoutError::Column { column: 2, .. }),
            "{err}"
        );
        let layout = Layout::new(
            EventKind::Hotline,
            &header(&["event_id", "type", "reporter_phone"]),
            &mapping,
            ";",
        )
        .unwrap();
        let row = layout.row(&["h-1", "received", "0901234567"]);
        assert_eq!(row["type"], "received");
        assert!(!row.contains_key("answers"));
        let err = Layout::new(
            EventKind::Survey,
            &header(&["access.1", "access.1"]),
            &mapping,
            ";",
        )
        .unwrap_err();
        assert_eq!(err, LayoutError::Duplicate("access.1".into()));
        let mut bad_default = CsvMapping::default();
        bad_default.defaults.insert("nope".into(), "x".into());
        assert!(Layout::new(
            EventKind::Survey,
            &header(&["submission_id"]),
            &bad_default,
            ";"
        )
        .is_err());
    }
}
