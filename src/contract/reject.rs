//! Why an input message was not accepted. The codes are stable: dashboards, alerts and
//! the DLQ's `reason` header depend on them.
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not JSON, not Avro in the Confluent wire format, unknown schema id, or wrong types.
    Undecodable,
    MissingField,
    BadTimestamp,
    /// Province code unknown in its code system (2004 or 2025).
    UnknownProvince,
    UnknownFramework,
    UnknownCriterion,
    UnknownExpectation,
    AnswerOutOfRange,
    UnknownEnumValue,
    /// Message larger than `pipeline.max_message_bytes`.
    Oversize,
    /// A hotline event lacks the field its type requires (e.g. `rating` on `rated`).
    MissingTypeField,
    /// ClickHouse refused the derived row as data (not an availability problem).
    ClickhouseRejected,
    /// The event time is more than `contract.max_future_skew_seconds` after the moment the
    /// message was received (a wrong device clock must not move a province's "today").
    FutureTimestamp,
}

impl RejectReason {
    pub const ALL: &'static [RejectReason] = &[
        RejectReason::Undecodable,
        RejectReason::MissingField,
        RejectReason::BadTimestamp,
        RejectReason::UnknownProvince,
        RejectReason::UnknownFramework,
        RejectReason::UnknownCriterion,
        RejectReason::UnknownExpectation,
        RejectReason::AnswerOutOfRange,
        RejectReason::UnknownEnumValue,
        RejectReason::Oversize,
        RejectReason::MissingTypeField,
        RejectReason::ClickhouseRejected,
        RejectReason::FutureTimestamp,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RejectReason::Undecodable => "undecodable",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::UnknownProvince => "unknown_province",
            RejectReason::UnknownFramework => "unknown_framework",
            RejectReason::UnknownCriterion => "unknown_criterion",
            RejectReason::UnknownExpectation => "unknown_expectation",
            RejectReason::AnswerOutOfRange => "answer_out_of_range",
            RejectReason::UnknownEnumValue => "unknown_enum_value",
            RejectReason::Oversize => "oversize",
            RejectReason::MissingTypeField => "missing_type_field",
            RejectReason::ClickhouseRejected => "clickhouse_rejected",
            RejectReason::FutureTimestamp => "future_timestamp",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.code() == code)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejection with a human-readable detail. The detail may quote a code as sent (an
/// unknown enum value, a province code) for diagnosis, but never personal data: it is
/// scrubbed here, the one way every detail is made (DLQ header, gateway answer, import
/// report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: crate::contract::scrub::scrub_string(detail.into()),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut codes: Vec<&str> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), RejectReason::ALL.len());
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::from_code(reason.code()), Some(*reason));
        }
        assert_eq!(
            RejectReason::from_code("future_timestamp"),
            Some(RejectReason::FutureTimestamp)
        );
    }
}
