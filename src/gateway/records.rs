//! A request body as records: one JSON object, or NDJSON (one object per line).
use serde::Serialize;

/// Splits a body into (1-based line, record bytes). A body that is one JSON value (even
/// spread over lines) is one record; otherwise every non-blank line is a record.
pub fn split(body: &[u8]) -> Vec<(usize, &[u8])> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        let first_line = 1 + body
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .filter(|b| **b == b'\n')
            .count();
        return vec![(first_line, body)];
    }
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| (i + 1, line))
        .collect()
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
        assert_eq!(batch[2].1, b"not json");
    }
}
