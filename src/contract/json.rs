//! JSON encoding of the contract (one object per message).
use crate::contract::raw::{RawHotline, RawSurvey};
use crate::contract::reject::{Reject, RejectReason};
use crate::contract::scrub::unquote;

pub fn decode_survey(bytes: &[u8]) -> Result<RawSurvey, Reject> {
    from_bytes(bytes)
}

pub fn decode_hotline(bytes: &[u8]) -> Result<RawHotline, Reject> {
    from_bytes(bytes)
}

/// A message that is valid UTF-8 as a whole (nearly all) is parsed as `str`, so that
/// serde_json does not check each string again; any other message takes the byte path,
/// which accepts or refuses it exactly as before (it does not check ignored fields).
fn from_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Reject> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
    .map_err(undecodable)
}

fn undecodable(error: serde_json::Error) -> Reject {
    // serde_json's messages quote the offending value (a phone sent as a number, say):
    // only the kind of value, what was expected and the position are kept.
    let category = match error.classify() {
        serde_json::error::Category::Io => "I/O",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data",
        serde_json::error::Category::Eof => "end of input",
    };
    Reject::new(
        RejectReason::Undecodable,
        format!("invalid JSON ({category}): {}", unquote(&error.to_string())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::raw::RawAnswer;

    #[test]
    fn keeps_answers_in_order_and_distinguishes_null_and_garbage() {
        let raw = decode_survey(br#"{"submission_id":"s1","answers":{"b.1":5,"a.1":null,"c.1":"x","d.1":2.5},"province_code_system":2004}"#).unwrap();
        assert_eq!(raw.submission_id.as_deref(), Some("s1"));
        assert_eq!(raw.province_code_system.as_deref(), Some("2004"));
        let answers = raw.answers.unwrap();
        assert_eq!(answers[0], ("b.1".to_string(), RawAnswer::Integer(5)));
        assert_eq!(answers[1], ("a.1".to_string(), RawAnswer::NoAnswer));
        assert!(matches!(answers[2].1, RawAnswer::NotAnInteger(_)));
        assert!(matches!(answers[3].1, RawAnswer::NotAnInteger(_)));
    }

    #[test]
    fn unknown_fields_are_ignored_and_garbage_is_undecodable() {
        assert!(decode_survey(br#"{"submission_id":"s1","new_optional_field":{"x":1}}"#).is_ok());
        let err = decode_survey(b"\xff\xfe not json").unwrap_err();
        assert_eq!(err.reason, RejectReason::Undecodable);
        let err = decode_survey(br#"{"submission_id": 12}"#).unwrap_err();
        assert_eq!(err.reason, RejectReason::Undecodable);
        assert!(decode_hotline(br#"[1,2]"#).is_err());
    }
}
