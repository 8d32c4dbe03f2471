//! Events as they arrive, before validation: every field optional so that a missing field
//! is reported as `missing_field` (with its name) rather than as a decoding failure.
//! Unknown fields are ignored: producers may add optional fields without breaking readers.
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RawSurvey {
    pub submission_id: Option<String>,
    pub framework: Option<String>,
    pub submitted_at: Option<String>,
    pub province_code: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub province_code_system: Option<String>,
    pub agency_id: Option<String>,
    pub agency_level: Option<String>,
    pub procedure_code: Option<String>,
    pub channel: Option<String>,
    pub respondent_type: Option<String>,
    #[serde(default, deserialize_with = "answers_map")]
    pub answers: Option<Vec<(String, RawAnswer)>>,
    pub expectations: Option<Vec<String>>,
}

/// One answer as sent: `null`, an integer, or something else (kept for the error message).
#[derive(Debug, Clone, PartialEq)]
pub enum RawAnswer {
    NoAnswer,
    Integer(i64),
    NotAnInteger(String),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RawHotline {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub province_code_system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agency_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter_phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter_email: Option<String>,
}

/// Accepts `"2004"` as well as `2004`.
fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or an integer")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
    }
    deserializer.deserialize_option(V)
}

impl<'de> Deserialize<'de> for RawAnswer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAnswer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an answer: null or an integer")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawAnswer, E> {
                Ok(RawAnswer::NoAnswer)
            }
            fn visit_none<E: de::Error>(self) -> Result<RawAnswer, E> {
                Ok(RawAnswer::NoAnswer)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawAnswer, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawAnswer, E> {
                Ok(RawAnswer::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawAnswer, E> {
                // Lazily: every answer from JSON arrives here, and formatting the number
                // for an error message that is rarely needed cost an allocation each.
                Ok(i64::try_from(v)
                    .map(RawAnswer::Integer)
                    .unwrap_or_else(|_| RawAnswer::NotAnInteger(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawAnswer, E> {
                Ok(RawAnswer::NotAnInteger(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawAnswer, E> {
                Ok(RawAnswer::NotAnInteger(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAnswer, E> {
                Ok(RawAnswer::NotAnInteger(format!("{v:?}")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawAnswer, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(RawAnswer::NotAnInteger("a list".into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAnswer, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(RawAnswer::NotAnInteger("an object".into()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A JSON object `{criterion: answer}` kept in arrival order.
fn answers_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<(String, RawAnswer)>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<(String, RawAnswer)>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of criterion id -> answer")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut answers = Vec::with_capacity(map.size_hint().unwrap_or(24));
            while let Some((criterion, answer)) = map.next_entry::<String, RawAnswer>()? {
                answers.push((criterion, answer));
            }
            Ok(Some(answers))
        }
    }
    deserializer.deserialize_option(V)
}
