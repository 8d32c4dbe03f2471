//! Raw events -> domain events, or a rejection with a stable reason.
use std::sync::Arc;

use crate::contract::pii::PiiHasher;
use crate::contract::raw::{RawAnswer, RawHotline, RawSurvey};
use crate::contract::reject::{Reject, RejectReason};
use crate::contract::scrub::scrub_string;
use crate::domain::event::{Answers, HOTLINE_CATEGORIES};
use crate::domain::time::{in_storable_range, parse_rfc3339};
use crate::domain::{
    AgencyLevel, Channel, CodeSystem, FrameworkCatalog, HotlineChannel, HotlineEvent,
    HotlineEventType, ProvinceRegistry, Rating, RespondentType, SurveySubmission,
};

#[derive(Debug, Clone)]
pub struct Validator {
    pub provinces: ProvinceRegistry,
    pub frameworks: FrameworkCatalog,
    pub pii: PiiHasher,
}

fn missing(field: &str) -> Reject {
    Reject::new(
        RejectReason::MissingField,
        format!("required field `{field}` is missing or empty"),
    )
}

fn is_blank(value: &str) -> bool {
    value.trim().is_empty()
}

/// A required, non-blank string field.
fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, Reject> {
    match value.as_deref() {
        Some(v) if !is_blank(v) => Ok(v),
        _ => Err(missing(field)),
    }
}

/// A required field, moved out once every check has passed.
fn take_required(value: Option<String>) -> String {
    value.expect("checked by `required`")
}

fn timestamp(text: &str, field: &str) -> Result<i64, Reject> {
    let unix = parse_rfc3339(text)
        .map_err(|e| Reject::new(RejectReason::BadTimestamp, format!("`{field}`: {e}")))?;
    if !in_storable_range(unix) {
        return Err(Reject::new(
            RejectReason::BadTimestamp,
            format!("`{field}` {text:?} is outside 1970..2106"),
        ));
    }
    Ok(unix)
}

fn enum_value<T>(
    text: &Option<String>,
    field: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, Reject> {
    let text = required(text, field)?;
    parse(text).ok_or_else(|| {
        Reject::new(
            RejectReason::UnknownEnumValue,
            format!("`{field}` has unknown value {text:?}"),
        )
    })
}

fn optional_enum<T>(
    text: &Option<String>,
    field: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, Reject> {
    match text.as_deref() {
        None => Ok(None),
        Some(t) if is_blank(t) => Ok(None),
        Some(_) => enum_value(text, field, parse).map(Some),
    }
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !is_blank(v))
}

/// What validating a hotline event found, before its strings are moved into the event.
struct CheckedHotline {
    event_type: HotlineEventType,
    occurred_at: i64,
    province_code: String,
    province_code_system: CodeSystem,
    channel: Option<HotlineChannel>,
    category: Option<&'static str>,
    rating: Option<Rating>,
    due_at: Option<i64>,
}

impl Validator {
    /// Resolves a province code to the 2025 system. Returns (2025 code, system).
    fn province(
        &self,
        code: &Option<String>,
        system: &Option<String>,
        event_time: i64,
    ) -> Result<(String, CodeSystem), Reject> {
        let code = required(code, "province_code")?;
        let system = match system.as_deref().filter(|s| !is_blank(s)) {
            None => CodeSystem::implied_by(event_time),
            Some(text) => CodeSystem::parse(text).ok_or_else(|| {
                Reject::new(
                    RejectReason::UnknownEnumValue,
                    format!(
                        "`province_code_system` has unknown value {text:?} (expected 2004 or 2025)"
                    ),
                )
            })?,
        };
        let code_2025 = self.provinces.to_2025(code, system).ok_or_else(|| {
            Reject::new(
                RejectReason::UnknownProvince,
                format!(
                    "province code {code:?} does not exist in the {} system",
                    system.year()
                ),
            )
        })?;
        Ok((code_2025.to_owned(), system))
    }

    pub fn survey(&self, raw: RawSurvey) -> Result<SurveySubmission, Reject> {
        required(&raw.submission_id, "submission_id")?;
        let framework_id = required(&raw.framework, "framework")?;
        let submitted_at = timestamp(required(&raw.submitted_at, "submitted_at")?, "submitted_at")?;
        let (province_code, province_code_system) =
            self.province(&raw.province_code, &raw.province_code_system, submitted_at)?;
        required(&raw.agency_id, "agency_id")?;
        let agency_level = enum_value(&raw.agency_level, "agency_level", AgencyLevel::parse)?;
        let channel = enum_value(&raw.channel, "channel", Channel::parse)?;
        let respondent_type = enum_value(
            &raw.respondent_type,
            "respondent_type",
            RespondentType::parse,
        )?;
        let indexed = self.frameworks.indexed(framework_id).ok_or_else(|| {
            Reject::new(
                RejectReason::UnknownFramework,
                format!(
                    "framework {framework_id:?} is not configured (known: {})",
                    self.frameworks.ids().join(", ")
                ),
            )
        })?;
        let raw_answers = raw.answers.ok_or_else(|| missing("answers"))?;

        // Every criterion of the framework gets a slot; criteria not sent are unanswered.
        let ids = &indexed.framework.columns().criterion_ids;
        let mut scores: Vec<Option<u8>> = vec![None; ids.len()];
        let mut next = 0;
        for (criterion, answer) in raw_answers {
            // Producers mostly send answers in framework order: try the slot after the
            // previous answer's before hashing.
            let position = match ids.get(next) {
                Some(id) if *id == criterion => Some(next),
                _ => indexed.criterion_position(&criterion),
            };
            let position = position.ok_or_else(|| {
                Reject::new(
                    RejectReason::UnknownCriterion,
                    format!("criterion {criterion:?} is not in framework {framework_id}"),
                )
            })?;
            let score = match answer {
                RawAnswer::NoAnswer => None,
                RawAnswer::Integer(score @ 1..=5) => Some(score as u8),
                RawAnswer::Integer(other) => {
                    return Err(Reject::new(
                        RejectReason::AnswerOutOfRange,
                        format!("criterion {criterion}: {other} is outside 1..5"),
                    ))
                }
                RawAnswer::NotAnInteger(what) => {
                    return Err(Reject::new(
                        RejectReason::AnswerOutOfRange,
                        format!("criterion {criterion}: {what} is not an integer 1..5"),
                    ))
                }
            };
            scores[position] = score;
            next = position + 1;
        }
        let answers = Answers::new(Arc::clone(ids), scores);

        let mut expectations = raw.expectations.unwrap_or_default();
        for item in &expectations {
            if !indexed.has_expectation(item) {
                return Err(Reject::new(
                    RejectReason::UnknownExpectation,
                    format!("expectation item {item:?} is not in framework {framework_id}"),
                ));
            }
        }
        expectations.sort();
        expectations.dedup();

        Ok(SurveySubmission {
            submission_id: take_required(raw.submission_id),
            framework: take_required(raw.framework),
            submitted_at,
            province_code,
            province_code_original: take_required(raw.province_code),
            province_code_system,
            agency_id: take_required(raw.agency_id),
            agency_level,
            procedure_code: non_blank(raw.procedure_code),
            channel,
            respondent_type,
            answers,
            expectations,
        })
    }

    pub fn hotline(&self, raw: RawHotline) -> Result<HotlineEvent, Reject> {
        let checked = self.check_hotline(&raw)?;
        Ok(self.hotline_event(raw, checked))
    }

    fn check_hotline(&self, raw: &RawHotline) -> Result<CheckedHotline, Reject> {
        required(&raw.event_id, "event_id")?;
        required(&raw.ticket_id, "ticket_id")?;
        let event_type = enum_value(&raw.event_type, "type", HotlineEventType::parse)?;
        let occurred_at = timestamp(required(&raw.occurred_at, "occurred_at")?, "occurred_at")?;
        let (province_code, province_code_system) =
            self.province(&raw.province_code, &raw.province_code_system, occurred_at)?;
        let channel = optional_enum(&raw.channel, "channel", HotlineChannel::parse)?;
        let category = optional_enum(&raw.category, "category", |c| {
            HOTLINE_CATEGORIES.iter().find(|k| **k == c).copied()
        })?;
        let rating = optional_enum(&raw.rating, "rating", Rating::parse)?;
        let due_at = match raw.due_at.as_deref().filter(|t| !is_blank(t)) {
            Some(text) => Some(timestamp(text, "due_at")?),
            None => None,
        };
        let has = |value: &Option<String>| value.as_deref().is_some_and(|v| !is_blank(v));

        let needs = |present: bool, field: &str| -> Result<(), Reject> {
            if present {
                Ok(())
            } else {
                Err(Reject::new(
                    RejectReason::MissingTypeField,
                    format!("a `{}` event needs `{field}`", event_type.as_str()),
                ))
            }
        };
        match event_type {
            HotlineEventType::Received => {
                needs(channel.is_some(), "channel")?;
                needs(category.is_some(), "category")?;
                needs(due_at.is_some(), "due_at")?;
            }
            HotlineEventType::Forwarded => {
                needs(has(&raw.agency_id), "agency_id")?;
                needs(due_at.is_some(), "due_at")?;
            }
            HotlineEventType::Rated => needs(rating.is_some(), "rating")?,
            HotlineEventType::Rejected => needs(has(&raw.reason), "reason")?,
            HotlineEventType::Responded | HotlineEventType::Reopened | HotlineEventType::Closed => {
            }
        }
        Ok(CheckedHotline {
            event_type,
            occurred_at,
            province_code,
            province_code_system,
            channel,
            category,
            rating,
            due_at,
        })
    }

    fn hotline_event(&self, raw: RawHotline, checked: CheckedHotline) -> HotlineEvent {
        HotlineEvent {
            event_id: take_required(raw.event_id),
            ticket_id: take_required(raw.ticket_id),
            event_type: checked.event_type,
            occurred_at: checked.occurred_at,
            province_code: checked.province_code,
            province_code_original: take_required(raw.province_code),
            province_code_system: checked.province_code_system,
            channel: checked.channel,
            category: checked.category.map(str::to_owned),
            agency_id: non_blank(raw.agency_id),
            due_at: checked.due_at,
            rating: checked.rating,
            // Free text: people write phone numbers and addresses into it.
            reason: non_blank(raw.reason).map(scrub_string),
            reporter_phone_hash: non_blank(raw.reporter_phone).map(|p| self.pii.phone(&p)),
            reporter_email_hash: non_blank(raw.reporter_email).map(|e| self.pii.email(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::json;
    use std::path::Path;

    fn validator() -> Validator {
        Validator {
            provinces: ProvinceRegistry::builtin(),
            frameworks: FrameworkCatalog::load_dir(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/frameworks"),
            )
            .unwrap(),
            pii: PiiHasher::new(b"unit-test-secret-123"),
        }
    }

    fn survey_json(
        patch: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Result<SurveySubmission, Reject> {
        let mut value = serde_json::json!({
            "submission_id": "s-1",
            "framework": "BNV-2640-2017",
            "submitted_at": "2026-11-21T09:30:00+07:00",
            "province_code": "79",
            "agency_id": "79-commune-001",
            "agency_level": "commune",
            "channel": "one_stop",
            "respondent_type": "citizen",
            "answers": {"access.1": 5, "staff.2": null, "result.3": 1},
            "expectations": ["expect.shorter_time", "expect.shorter_time"]
        });
        patch(value.as_object_mut().unwrap());
        validator().survey(json::decode_survey(&serde_json::to_vec(&value).unwrap())?)
    }

    fn reason(result: Result<SurveySubmission, Reject>) -> RejectReason {
        result.expect_err("should be rejected").reason
    }

    #[test]
    fn valid_survey_fills_every_criterion_in_framework_order() {
        let survey = survey_json(|_| {}).unwrap();
        assert_eq!(survey.answers.len(), 22);
        assert_eq!(survey.answers.iter().next(), Some(("access.1", Some(5))));
        assert_eq!(survey.answers.score("staff.2"), Some(None));
        assert_eq!(survey.answers.score("result.3"), Some(Some(1)));
        let unsent = ("feedback.4", survey.answers.score("feedback.4").unwrap());
        assert_eq!(unsent.1, None, "criteria not sent count as unanswered");
        assert_eq!(survey.expectations, vec!["expect.shorter_time".to_string()]);
        assert_eq!(survey.province_code_system, CodeSystem::Y2025);
    }

    #[test]
    fn each_defect_has_its_reason() {
        assert_eq!(
            reason(survey_json(|o| {
                o.remove("submission_id");
            })),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert("agency_id".into(), "  ".into());
            })),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.remove("answers");
            })),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert("submitted_at".into(), "2026-11-21 09:30".into());
            })),
            RejectReason::BadTimestamp
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert("submitted_at".into(), "1969-12-31T00:00:00Z".into());
            })),
            RejectReason::BadTimestamp
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert("province_code".into(), "99".into());
            })),
            RejectReason::UnknownProvince
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert("framework".into(), "X".into());
            })),
            RejectReason::UnknownFramework
        );
        assert_eq!(
            reason(survey_json(|o| {
                o["answers"]["access.9"] = 3.into();
            })),
            RejectReason::UnknownCriterion
        );
        assert_eq!(
            reason(survey_json(|o| {
                o["answers"]["access.1"] = 0.into();
            })),
            RejectReason::AnswerOutOfRange
        );
        assert_eq!(
            reason(survey_json(|o| {
                o["answers"]["access.1"] = 6.into();
            })),
            RejectReason::AnswerOutOfRange
        );
        assert_eq!(
            reason(survey_json(|o| {
                o["answers"]["access.1"] = "5".into();
            })),
            RejectReason::AnswerOutOfRange
        );
        assert_eq!(
            reason(survey_json(|o| {
                o["answers"]["access.1"] = 4.5.into();
            })),
            RejectReason::AnswerOutOfRange
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert("channel".into(), "fax".into());
            })),
            RejectReason::UnknownEnumValue
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert("agency_level".into(), "village".into());
            })),
            RejectReason::UnknownEnumValue
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert("province_code_system".into(), "1999".into());
            })),
            RejectReason::UnknownEnumValue
        );
        assert_eq!(
            reason(survey_json(|o| {
                o.insert(
                    "expectations".into(),
                    serde_json::json!(["expect.free_tea"]),
                );
            })),
            RejectReason::UnknownExpectation
        );
    }

    #[test]
    fn province_codes_are_normalised_by_system_and_date() {
        // Before the merger a code is read in the 2004 system: 64 (Gia Lai, 2004) -> 52.
        let old = survey_json(|o| {
            o.insert("submitted_at".into(), "2025-06-30T23:59:59+07:00".into());
            o.insert("province_code".into(), "64".into());
        })
        .unwrap();
        assert_eq!(
            (
                old.province_code.as_str(),
                old.province_code_original.as_str(),
                old.province_code_system
            ),
            ("52", "64", CodeSystem::Y2004)
        );
        // The same instant one second later is in the 2025 system, where 64 does not exist.
        let after = survey_json(|o| {
            o.insert("submitted_at".into(), "2025-07-01T00:00:00+07:00".into());
            o.insert("province_code".into(), "64".into());
        });
        assert_eq!(reason(after), RejectReason::UnknownProvince);
        // An explicit system wins over the date: 52 in 2004 was Bình Định, now part of Gia Lai (52).
        let explicit = survey_json(|o| {
            o.insert("province_code".into(), "52".into());
            o.insert("province_code_system".into(), 2004.into());
        })
        .unwrap();
        assert_eq!(explicit.province_code, "52");
        let hcm = survey_json(|o| {
            o.insert("province_code".into(), "74".into());
            o.insert("province_code_system".into(), "2004".into());
        })
        .unwrap();
        assert_eq!(
            hcm.province_code, "79",
            "Bình Dương (74) merged into TP.HCM (79)"
        );
    }

    fn hotline(value: serde_json::Value) -> Result<HotlineEvent, Reject> {
        validator().hotline(json::decode_hotline(&serde_json::to_vec(&value).unwrap())?)
    }

    #[test]
    fn hotline_type_specific_fields_and_pii_hashing() {
        let base = serde_json::json!({"event_id": "e1", "ticket_id": "t1", "occurred_at": "2026-11-21T09:00:00+07:00", "province_code": "01"});
        let with = |extra: serde_json::Value| {
            let mut v = base.clone();
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        let received = hotline(with(serde_json::json!({"type": "received", "channel": "zalo", "category": "traffic", "due_at": "2026-11-26T09:00:00+07:00", "reporter_phone": "+84 912 345 678", "reporter_email": "a@b.vn"}))).unwrap();
        let phone_hash = received.reporter_phone_hash.clone().unwrap();
        assert_eq!(phone_hash.len(), 64);
        assert!(
            !format!("{received:?}").contains("912"),
            "no clear phone anywhere in the event"
        );
        assert!(!format!("{received:?}").contains("a@b.vn"));
        let missing = |extra: serde_json::Value| hotline(with(extra)).unwrap_err().reason;
        assert_eq!(
            missing(
                serde_json::json!({"type": "received", "channel": "zalo", "due_at": "2026-11-26T09:00:00+07:00"})
            ),
            RejectReason::MissingTypeField
        );
        assert_eq!(
            missing(
                serde_json::json!({"type": "forwarded", "due_at": "2026-11-26T09:00:00+07:00"})
            ),
            RejectReason::MissingTypeField
        );
        assert_eq!(
            missing(serde_json::json!({"type": "rated"})),
            RejectReason::MissingTypeField
        );
        assert_eq!(
            missing(serde_json::json!({"type": "rejected"})),
            RejectReason::MissingTypeField
        );
        assert_eq!(
            missing(serde_json::json!({"type": "rated", "rating": "meh"})),
            RejectReason::UnknownEnumValue
        );
        assert_eq!(
            missing(serde_json::json!({"type": "escalated"})),
            RejectReason::UnknownEnumValue
        );
        assert_eq!(
            missing(
                serde_json::json!({"type": "received", "channel": "zalo", "category": "traffic", "due_at": "soon"})
            ),
            RejectReason::BadTimestamp
        );
        assert!(hotline(with(serde_json::json!({"type": "closed"}))).is_ok());
        assert!(hotline(with(
            serde_json::json!({"type": "rated", "rating": "not_satisfied"})
        ))
        .is_ok());
    }
}
