//! Raw events -> domain events, or a rejection with a stable reason.
use crate::contract::pii::PiiHasher;
use crate::contract::raw::{RawAnswer, RawHotline, RawSurvey};
use crate::contract::reject::{Reject, RejectReason};
use crate::domain::event::HOTLINE_CATEGORIES;
use crate::domain::time::{in_storable_range, parse_rfc3339};
use crate::domain::{
    AgencyLevel, Channel, CodeSystem, FrameworkCatalog, HotlineChannel, HotlineEvent, HotlineEventType,
    ProvinceRegistry, Rating, RespondentType, SurveySubmission,
};

#[derive(Debug, Clone)]
pub struct Validator {
    pub provinces: ProvinceRegistry,
    pub frameworks: FrameworkCatalog,
    pub pii: PiiHasher,
}

fn missing(field: &str) -> Reject {
    Reject::new(RejectReason::MissingField, format!("required field `{field}` is missing or empty"))
}

/// A required, non-blank string field.
fn required(value: Option<String>, field: &str) -> Result<String, Reject> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(missing(field)),
    }
}

fn timestamp(text: &str, field: &str) -> Result<i64, Reject> {
    let unix = parse_rfc3339(text).map_err(|e| Reject::new(RejectReason::BadTimestamp, format!("`{field}`: {e}")))?;
    if !in_storable_range(unix) {
        return Err(Reject::new(RejectReason::BadTimestamp, format!("`{field}` {text:?} is outside 1970..2106")));
    }
    Ok(unix)
}

fn enum_value<T>(text: Option<String>, field: &str, parse: fn(&str) -> Option<T>) -> Result<T, Reject> {
    let text = required(text, field)?;
    parse(&text).ok_or_else(|| Reject::new(RejectReason::UnknownEnumValue, format!("`{field}` has unknown value {text:?}")))
}

fn optional_enum<T>(text: Option<String>, field: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>, Reject> {
    match text {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Ok(None),
        some => enum_value(some, field, parse).map(Some),
    }
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl Validator {
    /// Resolves a province code to the 2025 system. Returns (2025 code, original, system).
    fn province(&self, code: Option<String>, system: Option<String>, event_time: i64) -> Result<(String, String, CodeSystem), Reject> {
        let code = required(code, "province_code")?;
        let system = match non_blank(system) {
            None => CodeSystem::implied_by(event_time),
            Some(text) => CodeSystem::parse(&text).ok_or_else(|| {
                Reject::new(RejectReason::UnknownEnumValue, format!("`province_code_system` has unknown value {text:?} (expected 2004 or 2025)"))
            })?,
        };
        let code_2025 = self.provinces.to_2025(&code, system).ok_or_else(|| {
            Reject::new(RejectReason::UnknownProvince, format!("province code {code:?} does not exist in the {} system", system.year()))
        })?;
        Ok((code_2025.to_owned(), code, system))
    }

    pub fn survey(&self, raw: RawSurvey) -> Result<SurveySubmission, Reject> {
        let submission_id = required(raw.submission_id, "submission_id")?;
        let framework_id = required(raw.framework, "framework")?;
        let submitted_at = timestamp(&required(raw.submitted_at, "submitted_at")?, "submitted_at")?;
        let (province_code, province_code_original, province_code_system) =
            self.province(raw.province_code, raw.province_code_system, submitted_at)?;
        let agency_id = required(raw.agency_id, "agency_id")?;
        let agency_level = enum_value(raw.agency_level, "agency_level", AgencyLevel::parse)?;
        let channel = enum_value(raw.channel, "channel", Channel::parse)?;
        let respondent_type = enum_value(raw.respondent_type, "respondent_type", RespondentType::parse)?;
        let framework = self.frameworks.get(&framework_id).ok_or_else(|| {
            Reject::new(RejectReason::UnknownFramework, format!("framework {framework_id:?} is not configured (known: {})", self.frameworks.ids().join(", ")))
        })?;
        let raw_answers = raw.answers.ok_or_else(|| missing("answers"))?;

        // Every criterion of the framework gets a slot; criteria not sent are unanswered.
        let mut answers: Vec<(String, Option<u8>)> = framework.criterion_ids().map(|id| (id.to_owned(), None)).collect();
        for (criterion, answer) in raw_answers {
            let position = self.frameworks.criterion_position(&framework_id, &criterion).ok_or_else(|| {
                Reject::new(RejectReason::UnknownCriterion, format!("criterion {criterion:?} is not in framework {framework_id}"))
            })?;
            answers[position].1 = match answer {
                RawAnswer::NoAnswer => None,
                RawAnswer::Integer(score @ 1..=5) => Some(score as u8),
                RawAnswer::Integer(other) => {
                    return Err(Reject::new(RejectReason::AnswerOutOfRange, format!("criterion {criterion}: {other} is outside 1..5")))
                }
                RawAnswer::NotAnInteger(what) => {
                    return Err(Reject::new(RejectReason::AnswerOutOfRange, format!("criterion {criterion}: {what} is not an integer 1..5")))
                }
            };
        }

        let mut expectations = raw.expectations.unwrap_or_default();
        for item in &expectations {
            if !self.frameworks.has_expectation(&framework_id, item) {
                return Err(Reject::new(RejectReason::UnknownExpectation, format!("expectation item {item:?} is not in framework {framework_id}")));
            }
        }
        expectations.sort();
        expectations.dedup();

        Ok(SurveySubmission {
            submission_id,
            framework: framework_id,
            submitted_at,
            province_code,
            province_code_original,
            province_code_system,
            agency_id,
            agency_level,
            procedure_code: non_blank(raw.procedure_code),
            channel,
            respondent_type,
            answers,
            expectations,
        })
    }

    pub fn hotline(&self, raw: RawHotline) -> Result<HotlineEvent, Reject> {
        let event_id = required(raw.event_id, "event_id")?;
        let ticket_id = required(raw.ticket_id, "ticket_id")?;
        let event_type = enum_value(raw.event_type, "type", HotlineEventType::parse)?;
        let occurred_at = timestamp(&required(raw.occurred_at, "occurred_at")?, "occurred_at")?;
        let (province_code, province_code_original, province_code_system) =
            self.province(raw.province_code, raw.province_code_system, occurred_at)?;
        let channel = optional_enum(raw.channel, "channel", HotlineChannel::parse)?;
        let category = optional_enum(raw.category, "category", |c| HOTLINE_CATEGORIES.iter().find(|k| **k == c).map(|k| (*k).to_owned()))?;
        let rating = optional_enum(raw.rating, "rating", Rating::parse)?;
        let due_at = match non_blank(raw.due_at) {
            Some(text) => Some(timestamp(&text, "due_at")?),
            None => None,
        };
        let agency_id = non_blank(raw.agency_id);
        let reason = non_blank(raw.reason);

        let needs = |present: bool, field: &str| -> Result<(), Reject> {
            if present {
                Ok(())
            } else {
                Err(Reject::new(RejectReason::MissingTypeField, format!("a `{}` event needs `{field}`", event_type.as_str())))
            }
        };
        match event_type {
            HotlineEventType::Received => {
                needs(channel.is_some(), "channel")?;
                needs(category.is_some(), "category")?;
                needs(due_at.is_some(), "due_at")?;
            }
            HotlineEventType::Forwarded => {
                needs(agency_id.is_some(), "agency_id")?;
                needs(due_at.is_some(), "due_at")?;
            }
            HotlineEventType::Rated => needs(rating.is_some(), "rating")?,
            HotlineEventType::Rejected => needs(reason.is_some(), "reason")?,
            HotlineEventType::Responded | HotlineEventType::Reopened | HotlineEventType::Closed => {}
        }

        Ok(HotlineEvent {
            event_id,
            ticket_id,
            event_type,
            occurred_at,
            province_code,
            province_code_original,
            province_code_system,
            channel,
            category,
            agency_id,
            due_at,
            rating,
            reason,
            reporter_phone_hash: non_blank(raw.reporter_phone).map(|p| self.pii.phone(&p)),
            reporter_email_hash: non_blank(raw.reporter_email).map(|e| self.pii.email(&e)),
        })
    }
}
