//! A request body as records: one JSON object, or NDJSON (one object per line). Pure: the
//! handler reads the body; this decides what the records are, or why there are none.
use serde::Serialize;

/// Media types the ingest routes read (parameters other than `charset=utf-8` refused).
/// A request without `Content-Type` is read the same way.
pub const MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
];

/// Why a body holds no records to validate. `code` is the answer's `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(
        "Content-Type {0:?} is not accepted; send application/json or application/x-ndjson (UTF-8)"
    )]
    UnsupportedMediaType(String),
    #[error("Content-Encoding {0:?} is not accepted; send the body uncompressed")]
    UnsupportedEncoding(String),
    #[error("the body is empty; send one JSON object or NDJSON (one object per line)")]
    Empty,
    #[error("{count} records in one request; the limit is {limit}")]
    TooManyRecords { count: usize, limit: usize },
}

impl BodyError {
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::UnsupportedMediaType(_) => "unsupported_media_type",
            BodyError::UnsupportedEncoding(_) => "unsupported_content_encoding",
            BodyError::Empty => "empty_body",
            BodyError::TooManyRecords { .. } => "too_many_records",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::UnsupportedMediaType(_) | BodyError::UnsupportedEncoding(_) => 415,
            BodyError::Empty => 400,
            BodyError::TooManyRecords { .. } => 413,
        }
    }
}

/// Checks a `Content-Type` header (`None`: absent; `Some(Err)`: not visible ASCII).
pub fn check_media_type(header: Option<Result<&str, ()>>) -> Result<(), BodyError> {
    let value = match header {
        None => return Ok(()),
        Some(Ok(value)) => value,
        Some(Err(())) => return Err(BodyError::UnsupportedMediaType("(not ASCII)".into())),
    };
    let refused = || BodyError::UnsupportedMediaType(value.chars().take(100).collect());
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !MEDIA_TYPES.iter().any(|t| t.eq_ignore_ascii_case(essence)) {
        return Err(refused());
    }
    for parameter in parts.filter(|p| !p.trim().is_empty()) {
        let (name, value) = parameter.split_once('=').ok_or_else(refused)?;
        let utf8 = name.trim().eq_ignore_ascii_case("charset")
            && matches!(
                value.trim().trim_matches('"').to_ascii_lowercase().as_str(),
                "utf-8" | "utf8"
            );
        if !utf8 {
            return Err(refused());
        }
    }
    Ok(())
}

/// Checks a `Content-Encoding` header: the body is read as sent, so only `identity` (or
/// none) is accepted; a compressed body would otherwise be judged as garbled JSON.
pub fn check_content_encoding(header: Option<Result<&str, ()>>) -> Result<(), BodyError> {
    match header {
        None => Ok(()),
        Some(Ok(value)) if value.trim().eq_ignore_ascii_case("identity") => Ok(()),
        Some(Ok(value)) => Err(BodyError::UnsupportedEncoding(
            value.chars().take(100).collect(),
        )),
        Some(Err(())) => Err(BodyError::UnsupportedEncoding("(not ASCII)".into())),
    }
}

/// The records of a body as (1-based line, record bytes), at most `max_records` of them.
/// A UTF-8 byte order mark at the start is dropped. A body that is one JSON value (even
/// spread over lines) is one record; otherwise every non-blank line, without its line
/// ending (`\n` or `\r\n`), is a record. What a record holds is the decoder's to judge.
pub fn records(body: &[u8], max_records: usize) -> Result<Vec<(usize, &[u8])>, BodyError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut parts = lines(body);
    // Kept up to the limit; beyond it only counted, so a body of blank-free short lines
    // costs no more than its own size.
    let kept: Vec<(usize, &[u8])> = parts.by_ref().take(max_records).collect();
    if kept.is_empty() {
        return Err(BodyError::Empty);
    }
    let more = parts.count();
    if more > 0 {
        return Err(BodyError::TooManyRecords {
            count: kept.len() + more,
            limit: max_records,
        });
    }
    Ok(kept)
}

/// Splits a body into (1-based line, record bytes). A body that is one JSON value (even
/// spread over lines) is one record; otherwise every non-blank line is a record.
pub fn split(body: &[u8]) -> Vec<(usize, &[u8])> {
    lines(body).collect()
}

fn lines(body: &[u8]) -> Box<dyn Iterator<Item = (usize, &[u8])> + '_> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Box::new(std::iter::empty());
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        let first_line = 1 + body
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .filter(|b| **b == b'\n')
            .count();
        return Box::new(std::iter::once((first_line, body)));
    }
    Box::new(
        body.split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line))),
    )
}

/// The outcome of one record, in request order.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordResult {
    /// 0-based position in the request.
    pub index: usize,
    /// 1-based line of the body where the record starts.
    pub line: usize,
    /// `accepted` or `rejected`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A stable rejection reason code of the contract.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<RecordResult>,
}

/// The body of every non-2xx answer.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<RecordResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_or_ndjson() {
        assert!(split(b" \n ").is_empty());
        let single = split(b"\n{\n  \"a\": 1\n}\n");
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].0, 2);
        let batch = split(b"{\"a\":1}\n\n{\"a\":2}\r\nnot json\n");
        assert_eq!(
            batch.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        assert_eq!(batch[1].1, b"{\"a\":2}");
        assert_eq!(batch[2].1, b"not json");
    }

    #[test]
    fn a_byte_order_mark_is_dropped_and_the_record_count_is_capped() {
        let parts = records(b"\xEF\xBB\xBF{\"a\":1}\n{\"a\":2}", 5).unwrap();
        assert_eq!(parts[0], (1, &b"{\"a\":1}"[..]));
        assert_eq!(records(b"\xEF\xBB\xBF \r\n", 5), Err(BodyError::Empty));
        assert_eq!(
            records(b"{}\n{}\n\n{}\n", 2),
            Err(BodyError::TooManyRecords { count: 3, limit: 2 })
        );
        assert_eq!(records(b"{}\n{}\n", 2).unwrap().len(), 2);
    }

    #[test]
    fn json_media_types_with_utf8_only() {
        for accepted in [
            None,
            Some(Ok("application/json")),
            Some(Ok("Application/X-NDJSON; charset=UTF-8")),
            Some(Ok("application/jsonl;charset=\"utf-8\"")),
            Some(Ok("application/json;")),
        ] {
            assert_eq!(check_media_type(accepted), Ok(()), "{accepted:?}");
        }
        for refused in [
            Some(Ok("text/plain")),
            Some(Ok("application/x-www-form-urlencoded")),
            Some(Ok("multipart/form-data; boundary=x")),
            Some(Ok("application/json; charset=latin1")),
            Some(Ok("application/json; boundary")),
            Some(Ok("")),
            Some(Err(())),
        ] {
            let error = check_media_type(refused).unwrap_err();
            assert_eq!(
                (error.code(), error.status()),
                ("unsupported_media_type", 415)
            );
        }
    }
}
