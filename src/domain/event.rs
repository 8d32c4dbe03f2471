//! Validated events: what the rest of the pipeline works with. Construction happens only
//! in `contract::validate`, so every value here has passed the contract's checks.
use std::fmt;
use std::sync::Arc;

/// Which GSO code system a province code is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeSystem {
    Y2004,
    Y2025,
}

impl CodeSystem {
    pub fn year(self) -> u16 {
        match self {
            CodeSystem::Y2004 => 2004,
            CodeSystem::Y2025 => 2025,
        }
    }

    /// The system implied by an event time when the event does not name one.
    pub fn implied_by(unix: i64) -> Self {
        if unix < crate::domain::time::PROVINCE_MERGER_UNIX {
            CodeSystem::Y2004
        } else {
            CodeSystem::Y2025
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2004" => Some(CodeSystem::Y2004),
            "2025" => Some(CodeSystem::Y2025),
            _ => None,
        }
    }
}

/// Declares a closed string enumeration with its wire names.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

wire_enum!(AgencyLevel { Province = "province", District = "district", Commune = "commune", Ministry = "ministry" });
wire_enum!(Channel { OneStop = "one_stop", Online = "online", Postal = "postal", Interview = "interview", Phone = "phone" });
wire_enum!(RespondentType { Citizen = "citizen", Organization = "organization" });
wire_enum!(HotlineEventType {
    Received = "received",
    Forwarded = "forwarded",
    Responded = "responded",
    Rated = "rated",
    Reopened = "reopened",
    Rejected = "rejected",
    Closed = "closed",
});
wire_enum!(
    /// Channels through which a 1022 report arrives.
    HotlineChannel { Phone = "phone", App = "app", Web = "web", Zalo = "zalo", Facebook = "facebook", Email = "email", Sms = "sms" }
);
wire_enum!(Rating { Satisfied = "satisfied", NotSatisfied = "not_satisfied" });

/// A valid survey submission.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveySubmission {
    pub submission_id: String,
    pub framework: String,
    pub submitted_at: i64,
    /// 2025-system code.
    pub province_code: String,
    pub province_code_original: String,
    pub province_code_system: CodeSystem,
    pub agency_id: String,
    pub agency_level: AgencyLevel,
    pub procedure_code: Option<String>,
    pub channel: Channel,
    pub respondent_type: RespondentType,
    pub answers: Answers,
    pub expectations: Vec<String>,
}

/// A survey's answers: a score (1..=5, or `None` for no answer) for every criterion of its
/// framework, in the framework's order. The criterion ids are the framework's own list,
/// shared: a decoded survey waiting for its raw row and its fold holds two bytes per
/// criterion, not a copy of every id.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    criteria: Arc<[String]>,
    scores: Vec<Option<u8>>,
}

impl Answers {
    /// `scores[i]` answers `criteria[i]`; criteria without a score are unanswered, scores
    /// beyond the criteria are dropped.
    pub fn new(criteria: Arc<[String]>, mut scores: Vec<Option<u8>>) -> Self {
        scores.resize(criteria.len(), None);
        Self { criteria, scores }
    }

    pub fn criteria(&self) -> &Arc<[String]> {
        &self.criteria
    }

    pub fn scores(&self) -> &[Option<u8>] {
        &self.scores
    }

    /// (criterion id, score), in the framework's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<u8>)> + '_ {
        self.criteria
            .iter()
            .map(String::as_str)
            .zip(self.scores.iter().copied())
    }

    /// The score given to `criterion`; `None` when it is not one of the framework's.
    #[cfg(test)]
    pub fn score(&self, criterion: &str) -> Option<Option<u8>> {
        self.iter().find(|(c, _)| *c == criterion).map(|(_, s)| s)
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// A valid hotline event; personal data already replaced by keyed hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct HotlineEvent {
    pub event_id: String,
    pub ticket_id: String,
    pub event_type: HotlineEventType,
    pub occurred_at: i64,
    pub province_code: String,
    pub province_code_original: String,
    pub province_code_system: CodeSystem,
    pub channel: Option<HotlineChannel>,
    pub category: Option<String>,
    pub agency_id: Option<String>,
    pub due_at: Option<i64>,
    pub rating: Option<Rating>,
    pub reason: Option<String>,
    pub reporter_phone_hash: Option<String>,
    pub reporter_email_hash: Option<String>,
}

/// Hotline report categories (TP.HCM's list), as wire names.
pub const HOTLINE_CATEGORIES: &[&str] = &[
    "infrastructure",
    "traffic",
    "urban_order",
    "environment",
    "water",
    "trees",
    "lighting",
    "electricity",
    "telecoms",
    "public_transport",
    "health",
    "tourism",
    "administrative_procedures",
    "other",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_have_a_score_slot_for_every_criterion() {
        let criteria: Arc<[String]> = ["a.1", "a.2", "b.1"].map(String::from).into();
        let short = Answers::new(Arc::clone(&criteria), vec![Some(5)]);
        assert_eq!(short.scores(), &[Some(5), None, None]);
        assert_eq!(short.score("a.2"), Some(None));
        assert_eq!(short.score("c.1"), None);
        let long = Answers::new(Arc::clone(&criteria), vec![Some(1); 5]);
        assert_eq!(long.len(), 3);
        let pairs: Vec<(&str, Option<u8>)> = long.iter().collect();
        assert_eq!(
            pairs,
            vec![("a.1", Some(1)), ("a.2", Some(1)), ("b.1", Some(1))]
        );
    }

    #[test]
    fn wire_names_round_trip() {
        for level in AgencyLevel::ALL {
            assert_eq!(AgencyLevel::parse(level.as_str()), Some(*level));
        }
        for kind in HotlineEventType::ALL {
            assert_eq!(HotlineEventType::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(Channel::parse("one_stop"), Some(Channel::OneStop));
        assert_eq!(Channel::parse("One_Stop"), None);
    }

    #[test]
    fn code_system_is_implied_by_the_merger_date() {
        let merger = crate::domain::time::PROVINCE_MERGER_UNIX;
        assert_eq!(CodeSystem::implied_by(merger - 1), CodeSystem::Y2004);
        assert_eq!(CodeSystem::implied_by(merger), CodeSystem::Y2025);
    }
}
