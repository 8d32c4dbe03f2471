//! `sipas import`: historical exports (CSV or NDJSON) validated by the pipeline's `Decoder`
//! and produced to the input topics. Re-importing a file creates no duplicates: every
//! record keeps its `submission_id`/`event_id`, or gets one derived from its content, and the
//! pipeline stores each id once.
pub mod csv_rows;
pub mod source;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::contract::decode::{Decoder, EventKind};
use crate::contract::{Reject, RejectReason};
use crate::domain::time::unix_now;
use crate::publish::{check, Checked, PublishError, Publisher};
pub use source::{Format, Records, SourceError, SourceRecord};

/// Records produced per round trip to the broker.
const CHUNK: usize = 500;

/// The id field of a kind of record.
pub fn id_field(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Survey => "submission_id",
        EventKind::Hotline => "event_id",
    }
}

/// A deterministic id for a record that has none: `imp-` and 32 hex digits of the SHA-256
/// of the kind and the record's canonical JSON (keys sorted). The same row imported again
/// gets the same id; rows that differ in any value get different ids. Two rows identical
/// in every value are the same record.
pub fn derived_id(kind: EventKind, object: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut text = String::from(kind.as_str());
    text.push('\n');
    canonical(&serde_json::Value::Object(object.clone()), &mut text);
    let digest = Sha256::digest(text.as_bytes());
    format!("imp-{}", &hex::encode(digest)[..32])
}

fn canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::from(key.as_str()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Gives an object without an id (absent, null or blank) its derived id.
pub fn with_id(
    kind: EventKind,
    mut object: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let field = id_field(kind);
    let has_id = match object.get(field) {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    };
    if !has_id {
        object.remove(field);
        let id = derived_id(kind, &object);
        object.insert(field.to_owned(), id.into());
    }
    object
}

/// One rejected row: the line it starts on in the file, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    pub line: u64,
    pub reject: Reject,
}

#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub rows: u64,
    pub accepted: u64,
    pub rejected: Vec<RejectedRow>,
}

impl ImportReport {
    pub fn by_reason(&self) -> BTreeMap<RejectReason, u64> {
        let mut counts = BTreeMap::new();
        for row in &self.rejected {
            *counts.entry(row.reject.reason).or_default() += 1;
        }
        counts
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0} (records before this chunk were produced; re-running the import is safe)")]
    Publish(#[from] PublishError),
}

/// Validates every record and produces the valid ones (none with `publisher = None`, a dry
/// run). `progress` gets the bytes read so far after each chunk.
pub async fn run(
    decoder: &Decoder,
    publisher: Option<&Publisher>,
    kind: EventKind,
    records: Records,
    mut progress: impl FnMut(u64, &ImportReport),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let mut chunk: Vec<Checked> = Vec::with_capacity(CHUNK);
    let mut position = 0;
    for record in records {
        let SourceRecord {
            line,
            byte_end,
            payload,
        } = record?;
        report.rows += 1;
        position = byte_end;
        // Received when read: an event dated more than `contract.max_future_skew_seconds`
        // after this is refused as `future_timestamp`.
        let received_at = unix_now();
        match payload.and_then(|bytes| check(decoder, kind, bytes, received_at)) {
            Ok(checked) => chunk.push(checked),
            Err(reject) => report.rejected.push(RejectedRow { line, reject }),
        }
        if chunk.len() >= CHUNK {
            flush(publisher, kind, &mut chunk, &mut report).await?;
            progress(position, &report);
        }
    }
    flush(publisher, kind, &mut chunk, &mut report).await?;
    progress(position, &report);
    Ok(report)
}

async fn flush(
    publisher: Option<&Publisher>,
    kind: EventKind,
    chunk: &mut Vec<Checked>,
    report: &mut ImportReport,
) -> Result<(), PublishError> {
    if let Some(publisher) = publisher {
        publisher.publish(kind, chunk).await?;
    }
    report.accepted += chunk.len() as u64;
    chunk.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::decode::tests::{decoder, survey};
    use crate::import::source::Format;

    #[tokio::test]
    async fn rows_dated_in_the_future_are_refused_old_ones_accepted() {
        let decoder = decoder();
        // Received when read (now): 2100 is far in the future, 2020 in the past.
        let mut text = Vec::new();
        for at in ["2020-01-01T00:00:00+07:00", "2100-01-01T00:00:00+07:00"] {
            text.extend(survey(at));
            text.push(b'\n');
        }
        let records = Records::open(
            EventKind::Survey,
            Format::Ndjson,
            Box::new(std::io::Cursor::new(text)),
            &crate::config::ImportConfig::default(),
        )
        .unwrap();
        let report = run(&decoder, None, EventKind::Survey, records, |_, _| {})
            .await
            .unwrap();
        assert_eq!((report.rows, report.accepted), (2, 1));
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].line, 2);
        assert_eq!(
            report.rejected[0].reject.reason,
            RejectReason::FutureTimestamp
        );
    }

    fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn derived_ids_depend_on_content_only() {
        let a = object(
            serde_json::json!({"province_code": "79", "answers": {"access.1": 5, "staff.1": null}}),
        );
        let b = object(
            serde_json::json!({"answers": {"staff.1": null, "access.1": 5}, "province_code": "79"}),
        );
        let c = object(
            serde_json::json!({"province_code": "79", "answers": {"access.1": 4, "staff.1": null}}),
        );
        assert_eq!(
            derived_id(EventKind::Survey, &a),
            derived_id(EventKind::Survey, &b)
        );
        assert_ne!(
            derived_id(EventKind::Survey, &a),
            derived_id(EventKind::Survey, &c)
        );
        assert_ne!(
            derived_id(EventKind::Survey, &a),
            derived_id(EventKind::Hotline, &a)
        );
        assert!(derived_id(EventKind::Survey, &a).starts_with("imp-"));
        assert_eq!(derived_id(EventKind::Survey, &a).len(), 36);
    }

    #[test]
    fn an_existing_id_is_kept_and_a_blank_one_replaced() {
        let kept = with_id(
            EventKind::Survey,
            object(serde_json::json!({"submission_id": "s-1"})),
        );
        assert_eq!(kept["submission_id"], "s-1");
        let blank = with_id(
            EventKind::Hotline,
            object(serde_json::json!({"event_id": " ", "ticket_id": "t"})),
        );
        let absent = with_id(
            EventKind::Hotline,
            object(serde_json::json!({"ticket_id": "t"})),
        );
        assert_eq!(blank["event_id"], absent["event_id"]);
        assert!(absent["event_id"].as_str().unwrap().starts_with("imp-"));
    }
}
