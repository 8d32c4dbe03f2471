//! Reading an export file record by record, with the line each record starts on.
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::ImportConfig;
use crate::contract::decode::EventKind;
use crate::contract::{Reject, RejectReason};
use crate::import::csv_rows::{Layout, LayoutError};
use crate::import::with_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// From the file name: `.csv` or `.ndjson`/`.jsonl`/`.json`.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the CSV file: {0}")]
    Csv(#[from] csv::Error),
    #[error("CSV header: {0}")]
    Layout(#[from] LayoutError),
    #[error("the CSV file has no header row")]
    NoHeader,
    #[error("the CSV record starting on line {line} is longer than {limit} bytes (an unclosed quote?); the rest of the file was not read")]
    CsvRecordTooLong { line: u64, limit: u64 },
}

/// One record of the file: a contract message, or why it could not be made into one.
#[derive(Debug)]
pub struct SourceRecord {
    /// 1-based line on which the record starts.
    pub line: u64,
    /// Bytes of the file read so far (for progress).
    pub byte_end: u64,
    pub payload: Result<Vec<u8>, Reject>,
}

pub enum Records {
    Csv {
        reader: Box<csv::Reader<Bounded>>,
        layout: Layout,
        kind: EventKind,
        budget: Arc<ReadBudget>,
        /// Where the next record starts (for the error when it is too long).
        next_line: u64,
    },
    Ndjson {
        reader: Box<dyn BufRead + Send>,
        kind: EventKind,
        line: u64,
        bytes: u64,
        max_record_bytes: usize,
    },
}

/// Longest NDJSON line kept in memory unless [`Records::with_max_record_bytes`] says
/// otherwise; a longer one is read past and rejected as `oversize`.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// A CSV record may be this many times the record limit before reading stops: longer rows
/// are read and rejected as `oversize` by the decoder, but a record this long is an
/// unclosed quote swallowing the rest of the file, which would otherwise all be held.
const CSV_RECORD_READ_FACTOR: u64 = 16;

/// What a CSV reader has read and where its current record started.
#[derive(Debug, Default)]
pub struct ReadBudget {
    read: AtomicU64,
    record_start: AtomicU64,
    limit: AtomicU64,
}

/// The CSV input, failing with [`RecordTooLong`] once the current record passes its budget.
pub struct Bounded {
    inner: Box<dyn Read + Send>,
    budget: Arc<ReadBudget>,
}

#[derive(Debug, thiserror::Error)]
#[error("a CSV record is longer than the limit")]
struct RecordTooLong;

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let b = &self.budget;
        let current = b.read.load(Ordering::Relaxed) - b.record_start.load(Ordering::Relaxed);
        if current > b.limit.load(Ordering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                RecordTooLong,
            ));
        }
        let n = self.inner.read(buf)?;
        b.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn too_long(error: &csv::Error) -> bool {
    match error.kind() {
        csv::ErrorKind::Io(e) => e.get_ref().is_some_and(|e| e.is::<RecordTooLong>()),
        _ => false,
    }
}

impl Records {
    pub fn open(
        kind: EventKind,
        format: Format,
        input: Box<dyn Read + Send>,
        config: &ImportConfig,
    ) -> Result<Self, SourceError> {
        match format {
            Format::Csv => {
                let budget = Arc::new(ReadBudget::default());
                budget.limit.store(
                    DEFAULT_MAX_RECORD_BYTES as u64 * CSV_RECORD_READ_FACTOR,
                    Ordering::Relaxed,
                );
                let input = Bounded {
                    inner: input,
                    budget: Arc::clone(&budget),
                };
                // Records end at `\n` only: with the default (`\r`, `\n` or `\r\n`) the csv
                // crate reports the lines of a CRLF file one too low. The `\r` before it
                // stays in the last cell, and cells and header names are trimmed.
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(config.delimiter.as_bytes().first().copied().unwrap_or(b','))
                    .terminator(csv::Terminator::Any(b'\n'))
                    .flexible(true)
                    .from_reader(input);
                let header = match reader.byte_headers() {
                    Ok(header) => header.clone(),
                    Err(e) if too_long(&e) => {
                        return Err(SourceError::CsvRecordTooLong {
                            line: 1,
                            limit: budget.limit.load(Ordering::Relaxed),
                        })
                    }
                    Err(e) => return Err(e.into()),
                };
                budget
                    .record_start
                    .store(reader.position().byte(), Ordering::Relaxed);
                if header.is_empty() {
                    return Err(SourceError::NoHeader);
                }
                let names: Vec<String> = header
                    .iter()
                    .enumerate()
                    .map(|(i, cell)| {
                        let text = String::from_utf8_lossy(cell).into_owned();
                        // Spreadsheet programs start UTF-8 exports with a byte order mark.
                        if i == 0 {
                            text.trim_start_matches('\u{feff}').to_owned()
                        } else {
                            text
                        }
                    })
                    .collect();
                let mapping = match kind {
                    EventKind::Survey => &config.surveys,
                    EventKind::Hotline => &config.hotline,
                };
                let layout = Layout::new(kind, &names, mapping, &config.list_separator)?;
                Ok(Records::Csv {
                    next_line: reader.position().line(),
                    reader: Box::new(reader),
                    layout,
                    kind,
                    budget,
                })
            }
            Format::Ndjson => Ok(Records::Ndjson {
                reader: Box::new(std::io::BufReader::new(input)),
                kind,
                line: 0,
                bytes: 0,
                max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            }),
        }
    }

    /// NDJSON lines longer than `limit` (the decoder's `pipeline.max_message_bytes`) are
    /// rejected as `oversize` without being held in memory; a CSV record longer than 16
    /// times `limit` stops the reading.
    pub fn with_max_record_bytes(mut self, limit: usize) -> Self {
        match &mut self {
            Records::Ndjson {
                max_record_bytes, ..
            } => *max_record_bytes = limit,
            Records::Csv { budget, .. } => budget.limit.store(
                (limit as u64).saturating_mul(CSV_RECORD_READ_FACTOR),
                Ordering::Relaxed,
            ),
        }
        self
    }
}

/// Reads one line (with its `\n`) into `buffer`, keeping at most `limit + 1` bytes of it;
/// returns the line's whole length (0 at the end of the input).
fn read_line_bounded(
    reader: &mut dyn BufRead,
    buffer: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        let room = (limit + 1).saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        total += used;
        reader.consume(used);
        if done {
            return Ok(total);
        }
    }
}

impl Iterator for Records {
    type Item = Result<SourceRecord, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Records::Csv {
                reader,
                layout,
                kind,
                budget,
                next_line,
            } => loop {
                let mut record = csv::ByteRecord::new();
                let read = reader.read_byte_record(&mut record);
                budget
                    .record_start
                    .store(reader.position().byte(), Ordering::Relaxed);
                let line = std::mem::replace(next_line, reader.position().line());
                match read {
                    Ok(false) => return None,
                    Err(error) if too_long(&error) => {
                        return Some(Err(SourceError::CsvRecordTooLong {
                            line,
                            limit: budget.limit.load(Ordering::Relaxed),
                        }))
                    }
                    Err(error) => return Some(Err(error.into())),
                    // A blank line (here: a lone `\r` of a CRLF file) is no row.
                    Ok(true)
                        if record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace) =>
                    {
                        continue
                    }
                    Ok(true) => {
                        let line = record.position().map(|p| p.line()).unwrap_or(0);
                        let byte_end = reader.position().byte();
                        return Some(Ok(SourceRecord {
                            line,
                            byte_end,
                            payload: csv_payload(*kind, layout, &record),
                        }));
                    }
                }
            },
            Records::Ndjson {
                reader,
                kind,
                line,
                bytes,
                max_record_bytes,
            } => loop {
                let mut buffer = Vec::new();
                match read_line_bounded(reader.as_mut(), &mut buffer, *max_record_bytes) {
                    Ok(0) => return None,
                    Err(error) => return Some(Err(error.into())),
                    Ok(n) => {
                        *line += 1;
                        *bytes += n as u64;
                        // Editors on Windows start UTF-8 files with a byte order mark.
                        if *line == 1 && buffer.starts_with(b"\xEF\xBB\xBF") {
                            buffer.drain(..3);
                        }
                        if buffer.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        // The record is the line's text: decoder messages then point into
                        // it, and the gateway produces the same bytes for the same line.
                        if buffer.ends_with(b"\n") {
                            buffer.pop();
                            if buffer.ends_with(b"\r") {
                                buffer.pop();
                            }
                        }
                        let payload = if n > *max_record_bytes {
                            Err(Reject::new(
                                RejectReason::Oversize,
                                format!("the line is {n} bytes, the limit is {max_record_bytes}"),
                            ))
                        } else {
                            Ok(ndjson_payload(*kind, buffer))
                        };
                        return Some(Ok(SourceRecord {
                            line: *line,
                            byte_end: *bytes,
                            payload,
                        }));
                    }
                }
            },
        }
    }
}

fn csv_payload(
    kind: EventKind,
    layout: &Layout,
    record: &csv::ByteRecord,
) -> Result<Vec<u8>, Reject> {
    if record.len() != layout.columns() {
        return Err(Reject::new(
            RejectReason::Undecodable,
            format!(
                "the row has {} cells, the header has {}",
                record.len(),
                layout.columns()
            ),
        ));
    }
    let mut cells = Vec::with_capacity(record.len());
    for (i, cell) in record.iter().enumerate() {
        let text = std::str::from_utf8(cell).map_err(|_| {
            Reject::new(
                RejectReason::Undecodable,
                format!("cell {} is not UTF-8 (export the file as UTF-8)", i + 1),
            )
        })?;
        cells.push(text);
    }
    let object = with_id(kind, layout.row(&cells));
    Ok(serde_json::to_vec(&object).unwrap_or_default())
}

/// An object without an id gets its derived id; anything else goes to the decoder as it is
/// (which rejects what is not a valid record, with the pipeline's reason).
fn ndjson_payload(kind: EventKind, line: Vec<u8>) -> Vec<u8> {
    let field = crate::import::id_field(kind);
    match serde_json::from_slice::<serde_json::Value>(&line) {
        Ok(serde_json::Value::Object(object)) => {
            let before = object.get(field).cloned();
            let object = with_id(kind, object);
            if object.get(field) == before.as_ref() {
                line
            } else {
                serde_json::to_vec(&object).unwrap_or(line)
            }
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(kind: EventKind, format: Format, text: &str) -> Vec<SourceRecord> {
        let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
        Records::open(kind, format, input, &ImportConfig::default())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn csv_lines_count_quoted_newlines_and_bad_rows_are_rejected() {
        let text = "\u{feff}submission_id,agency_id,access.1\ns-1,\"a\nb\",5\ns-2,x\ns-3,y,4\n";
        let rows = records(EventKind::Survey, Format::Csv, text);
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 4, 5]
        );
        let first: serde_json::Value =
            serde_json::from_slice(rows[0].payload.as_ref().unwrap()).unwrap();
        assert_eq!(first["submission_id"], "s-1");
        assert_eq!(first["answers"]["access.1"], 5);
        assert_eq!(
            rows[1].payload.as_ref().unwrap_err().reason,
            RejectReason::Undecodable
        );
        assert_eq!(rows[2].byte_end, text.len() as u64);
    }

    #[test]
    fn csv_lines_are_right_with_crlf_endings() {
        let text = "submission_id,access.1\r\ns-1,5\r\n\r\ns-2,\"a\r\nb\"\r\ns-3,4\r\n";
        let rows = records(EventKind::Survey, Format::Csv, text);
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 4, 6]
        );
        let last: serde_json::Value =
            serde_json::from_slice(rows[2].payload.as_ref().unwrap()).unwrap();
        assert_eq!(last["answers"]["access.1"], 4);
    }

    #[test]
    fn ndjson_skips_blank_lines_and_adds_missing_ids_only() {
        let text = "{\"submission_id\":\"s-1\"}\n\n{\"agency_id\":\"x\"}\nnot json\n";
        let rows = records(EventKind::Survey, Format::Ndjson, text);
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        assert_eq!(
            rows[0].payload.as_ref().unwrap(),
            b"{\"submission_id\":\"s-1\"}"
        );
        let second: serde_json::Value =
            serde_json::from_slice(rows[1].payload.as_ref().unwrap()).unwrap();
        assert!(second["submission_id"]
            .as_str()
            .unwrap()
            .starts_with("imp-"));
        assert_eq!(rows[2].payload.as_ref().unwrap(), b"not json");
    }

    #[test]
    fn ndjson_drops_a_byte_order_mark_and_refuses_overlong_lines_unread() {
        let text = format!(
            "\u{feff}{{\"submission_id\":\"s-1\"}}\n{}\n{{}}\n",
            "x".repeat(100)
        );
        let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(text.into_bytes()));
        let rows: Vec<SourceRecord> = Records::open(
            EventKind::Survey,
            Format::Ndjson,
            input,
            &ImportConfig::default(),
        )
        .unwrap()
        .with_max_record_bytes(50)
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            rows[0].payload.as_ref().unwrap(),
            b"{\"submission_id\":\"s-1\"}"
        );
        let long = rows[1].payload.as_ref().unwrap_err();
        assert_eq!(long.reason, RejectReason::Oversize);
        assert!(long.detail.contains("101 bytes"), "{}", long.detail);
        assert_eq!((rows[2].line, rows[2].payload.is_ok()), (3, true));
    }

    #[test]
    fn an_unclosed_csv_quote_stops_the_reading_instead_of_swallowing_the_file() {
        let mut text = String::from("submission_id,agency_id\ns-1,a\ns-2,\"unclosed\n");
        for i in 0..10_000 {
            text.push_str(&format!("s-{i},row {i}\n"));
        }
        let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(text.into_bytes()));
        let mut rows = Records::open(
            EventKind::Survey,
            Format::Csv,
            input,
            &ImportConfig::default(),
        )
        .unwrap()
        .with_max_record_bytes(1000);
        assert_eq!(rows.next().unwrap().unwrap().line, 2);
        let error = rows.next().unwrap().unwrap_err();
        assert!(
            matches!(
                error,
                SourceError::CsvRecordTooLong {
                    line: 3,
                    limit: 16_000
                }
            ),
            "{error}"
        );
        // Long rows within the budget are read (the decoder refuses them as `oversize`).
        let long = format!("submission_id,agency_id\ns-1,{}\ns-2,b\n", "x".repeat(5000));
        let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(long.into_bytes()));
        let rows: Vec<SourceRecord> = Records::open(
            EventKind::Survey,
            Format::Csv,
            input,
            &ImportConfig::default(),
        )
        .unwrap()
        .with_max_record_bytes(1000)
        .map(Result::unwrap)
        .collect();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(
            Format::from_path(Path::new("x/export.CSV")),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::from_path(Path::new("a.jsonl")),
            Some(Format::Ndjson)
        );
        assert_eq!(Format::from_path(Path::new("a.xlsx")), None);
    }
}
