//! The seeded event generator.
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::contract::avro::{encode_hotline, encode_survey};
use crate::contract::decode::EventKind;
use crate::contract::raw::{RawAnswer, RawHotline, RawSurvey};
use crate::contract::reject::RejectReason;
use crate::domain::event::{HotlineChannel, HOTLINE_CATEGORIES};
use crate::domain::time::format_vietnam;
use crate::domain::{CodeSystem, Framework, ProvinceRegistry};

#[derive(Debug, Clone)]
pub struct SimSettings {
    pub seed: u64,
    /// Event time of the first event (Unix seconds).
    pub start_unix: i64,
    /// Event-time distance between consecutive events, in seconds.
    pub step_seconds: f64,
    /// Share of hotline events among all events.
    pub hotline_share: f64,
    pub avro_share: f64,
    pub invalid_share: f64,
    pub duplicate_share: f64,
    /// Events whose time lies 3–10 days in the past (beyond the default lateness).
    pub late_share: f64,
    /// Events whose time lies 1–30 hours in the past.
    pub out_of_order_share: f64,
    /// Valid events that carry a 2004-system province code (explicitly marked).
    pub old_code_share: f64,
    /// Agencies per province (one province-level department per 10, the rest communes).
    pub agencies_per_province: usize,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            seed: 1,
            start_unix: 1_780_000_000,
            step_seconds: 1.0,
            hotline_share: 0.35,
            avro_share: 0.3,
            invalid_share: 0.01,
            duplicate_share: 0.01,
            late_share: 0.005,
            out_of_order_share: 0.02,
            old_code_share: 0.05,
            agencies_per_province: 20,
        }
    }
}

/// What the pipeline should do with a generated message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A new valid event with this id.
    Valid(String),
    /// A byte-identical copy of an earlier valid event (must collapse).
    Duplicate(String),
    /// Must go to the DLQ with this reason.
    Invalid(RejectReason),
}

#[derive(Debug, Clone)]
pub struct SimEvent {
    pub kind: EventKind,
    /// Message key: the 2025 province code.
    pub key: String,
    pub payload: Vec<u8>,
    pub expected: Expected,
    pub event_time: i64,
}

struct ProvinceProfile {
    code_2025: String,
    /// 2004 codes that merged into this province.
    old_codes: Vec<String>,
    base_satisfaction: f64,
    agency_effects: Vec<f64>,
}

/// A hotline event waiting for its time to come.
struct PendingHotline {
    at: i64,
    raw: RawHotline,
}

pub struct Simulator {
    settings: SimSettings,
    rng: SmallRng,
    provinces: Vec<ProvinceProfile>,
    /// Surveys are spread uniformly over these frameworks (the first when there is one).
    frameworks: Vec<Framework>,
    index: u64,
    pending: BinaryHeap<Reverse<(i64, u64)>>,
    pending_events: std::collections::HashMap<u64, PendingHotline>,
    pending_seq: u64,
    recent_valid: Vec<SimEvent>,
    next_ticket: u64,
}

const ANSWER_MISSING_SHARE: f64 = 0.04;

impl Simulator {
    pub fn new(settings: SimSettings, provinces: &ProvinceRegistry, framework: Framework) -> Self {
        let mut rng = SmallRng::seed_from_u64(settings.seed);
        let profiles = provinces
            .provinces_2025()
            .into_iter()
            .map(|p| {
                let old_codes = provinces
                    .codes_2004()
                    .into_iter()
                    .filter(|c| provinces.to_2025(c, CodeSystem::Y2004) == Some(p.code.as_str()))
                    .collect();
                // Published 2023 provincial figures span about 75..91 %, national ≈ 83 %.
                let base_satisfaction = 0.75 + 0.16 * beta_like(&mut rng);
                let agency_effects = (0..settings.agencies_per_province.max(1))
                    .map(|_| (rng.random::<f64>() - 0.5) * 0.08)
                    .collect();
                ProvinceProfile {
                    code_2025: p.code,
                    old_codes,
                    base_satisfaction,
                    agency_effects,
                }
            })
            .collect();
        Self {
            settings,
            rng,
            provinces: profiles,
            frameworks: vec![framework],
            index: 0,
            pending: BinaryHeap::new(),
            pending_events: Default::default(),
            pending_seq: 0,
            recent_valid: Vec::new(),
            next_ticket: 0,
        }
    }

    /// Spreads surveys over several frameworks (e.g. for state-size benchmarks).
    pub fn with_frameworks(mut self, frameworks: Vec<Framework>) -> Self {
        if !frameworks.is_empty() {
            self.frameworks = frameworks;
        }
        self
    }

    fn clock(&self) -> i64 {
        self.settings.start_unix + (self.index as f64 * self.settings.step_seconds) as i64
    }

    /// The next message of the log.
    pub fn next_event(&mut self) -> SimEvent {
        self.index += 1;
        let roll: f64 = self.rng.random();
        if roll < self.settings.duplicate_share && !self.recent_valid.is_empty() {
            let original =
                self.recent_valid[self.rng.random_range(0..self.recent_valid.len())].clone();
            let Expected::Valid(id) = original.expected else {
                unreachable!("only valid events are kept")
            };
            return SimEvent {
                expected: Expected::Duplicate(id),
                ..original
            };
        }
        let invalid = roll < self.settings.duplicate_share + self.settings.invalid_share;
        let hotline = self.rng.random::<f64>() < self.settings.hotline_share;
        let mut event = if hotline {
            self.hotline_event()
        } else {
            self.survey_event()
        };
        if invalid {
            event = self.corrupt(event);
        } else {
            if self.recent_valid.len() < 1024 {
                self.recent_valid.push(event.clone());
            } else {
                let slot = self.rng.random_range(0..self.recent_valid.len());
                self.recent_valid[slot] = event.clone();
            }
        }
        event
    }

    fn province(&mut self) -> usize {
        self.rng.random_range(0..self.provinces.len())
    }

    /// Event time for a new event: now, or shifted into the past for late/out-of-order.
    fn event_time(&mut self) -> i64 {
        let now = self.clock();
        let roll: f64 = self.rng.random();
        if roll < self.settings.late_share {
            now - self.rng.random_range(3 * 86_400..10 * 86_400)
        } else if roll < self.settings.late_share + self.settings.out_of_order_share {
            now - self.rng.random_range(3_600..30 * 3_600)
        } else {
            now
        }
    }

    /// (code as sent, explicit system if any) for a province.
    fn province_code(&mut self, province: usize, at: i64) -> (String, Option<String>) {
        let profile = &self.provinces[province];
        let use_old = self.rng.random::<f64>() < self.settings.old_code_share
            && !profile.old_codes.is_empty();
        let implied = CodeSystem::implied_by(at);
        if use_old || implied == CodeSystem::Y2004 {
            let code = profile.old_codes[self.rng.random_range(0..profile.old_codes.len())].clone();
            let system = (implied != CodeSystem::Y2004).then(|| "2004".to_string());
            (code, system)
        } else {
            (profile.code_2025.clone(), None)
        }
    }

    fn survey_event(&mut self) -> SimEvent {
        let province = self.province();
        let at = self.event_time();
        let agency = self
            .rng
            .random_range(0..self.provinces[province].agency_effects.len());
        let code_2025 = self.provinces[province].code_2025.clone();
        let satisfaction = (self.provinces[province].base_satisfaction
            + self.provinces[province].agency_effects[agency])
            .clamp(0.05, 0.99);
        // A respondent's mood shifts all their answers together.
        let mood = (self.rng.random::<f64>() - 0.5) * 0.3;
        let chosen = match self.frameworks.len() {
            1 => 0,
            n => self.rng.random_range(0..n),
        };
        let framework_id = self.frameworks[chosen].id.clone();
        let mut answers = Vec::new();
        for criterion in self.frameworks[chosen]
            .criterion_ids()
            .map(str::to_owned)
            .collect::<Vec<_>>()
        {
            let answer = if self.rng.random::<f64>() < ANSWER_MISSING_SHARE {
                RawAnswer::NoAnswer
            } else {
                let p = (satisfaction + mood + (self.rng.random::<f64>() - 0.5) * 0.1)
                    .clamp(0.01, 0.99);
                let score = if self.rng.random::<f64>() < p {
                    if self.rng.random::<f64>() < 0.4 {
                        5
                    } else {
                        4
                    }
                } else {
                    [1, 2, 3, 3, 3][self.rng.random_range(0..5)]
                };
                RawAnswer::Integer(score)
            };
            answers.push((criterion, answer));
        }
        let expectation_ids: Vec<String> = self.frameworks[chosen]
            .expectations
            .iter()
            .map(|e| e.id.clone())
            .collect();
        let expectations: Vec<String> = expectation_ids
            .into_iter()
            .filter(|_| self.rng.random::<f64>() < 0.25)
            .collect();
        let (code, system) = self.province_code(province, at);
        let id = format!("S-{}-{:016x}", self.settings.seed, self.index);
        let level = if agency % 10 == 0 {
            "province"
        } else {
            "commune"
        };
        let raw = RawSurvey {
            submission_id: Some(id.clone()),
            framework: Some(framework_id),
            submitted_at: Some(format_vietnam(at)),
            province_code: Some(code),
            province_code_system: system,
            agency_id: Some(format!("{code_2025}-{level}-{agency:03}")),
            agency_level: Some(level.into()),
            procedure_code: (self.rng.random::<f64>() < 0.7)
                .then(|| format!("1.{:06}", self.rng.random_range(0..2000))),
            channel: Some(
                [
                    "one_stop",
                    "one_stop",
                    "one_stop",
                    "online",
                    "postal",
                    "interview",
                    "phone",
                ][self.rng.random_range(0..7)]
                .into(),
            ),
            respondent_type: Some(
                if self.rng.random::<f64>() < 0.85 {
                    "citizen"
                } else {
                    "organization"
                }
                .into(),
            ),
            answers: Some(answers),
            expectations: Some(expectations),
        };
        let payload = if self.rng.random::<f64>() < self.settings.avro_share {
            encode_survey(&raw)
        } else {
            survey_json(&raw)
        };
        SimEvent {
            kind: EventKind::Survey,
            key: code_2025,
            payload,
            expected: Expected::Valid(id),
            event_time: at,
        }
    }

    fn hotline_event(&mut self) -> SimEvent {
        let now = self.clock();
        let due = self
            .pending
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now);
        let (at, raw) = if due {
            let Reverse((_, seq)) = self.pending.pop().expect("peeked");
            let pending = self.pending_events.remove(&seq).expect("pending event");
            (pending.at, pending.raw)
        } else {
            self.new_ticket()
        };
        let code_2025 = self
            .provinces
            .iter()
            .find(|p| Some(&p.code_2025) == raw.province_code.as_ref())
            .map(|p| p.code_2025.clone());
        let mut raw = raw;
        let province = self
            .provinces
            .iter()
            .position(|p| Some(&p.code_2025) == raw.province_code.as_ref())
            .unwrap_or(0);
        let (code, system) = self.province_code(province, at);
        raw.province_code = Some(code);
        raw.province_code_system = system;
        raw.occurred_at = Some(format_vietnam(at));
        let id = raw.event_id.clone().unwrap_or_default();
        let payload = if self.rng.random::<f64>() < self.settings.avro_share {
            encode_hotline(&raw)
        } else {
            serde_json::to_vec(&raw).expect("serialisable")
        };
        SimEvent {
            kind: EventKind::Hotline,
            key: code_2025.unwrap_or_default(),
            payload,
            expected: Expected::Valid(id),
            event_time: at,
        }
    }

    fn schedule(&mut self, at: i64, raw: RawHotline) {
        self.pending_seq += 1;
        self.pending.push(Reverse((at, self.pending_seq)));
        self.pending_events
            .insert(self.pending_seq, PendingHotline { at, raw });
    }

    /// Creates a ticket: returns its `received` event and schedules the rest of its life.
    fn new_ticket(&mut self) -> (i64, RawHotline) {
        self.next_ticket += 1;
        let province = self.province();
        let code = self.provinces[province].code_2025.clone();
        let ticket = format!("T-{}-{:08}", self.settings.seed, self.next_ticket);
        let at = self.event_time();
        let due = at + 5 * 86_400;
        let base = RawHotline {
            ticket_id: Some(ticket.clone()),
            province_code: Some(code.clone()),
            ..Default::default()
        };
        let event = |n: u32, kind: &str| RawHotline {
            event_id: Some(format!("{ticket}-{n}")),
            event_type: Some(kind.into()),
            ..base.clone()
        };
        let channels = HotlineChannel::ALL;
        let mut received = event(1, "received");
        received.channel = Some(
            channels[self.rng.random_range(0..channels.len())]
                .as_str()
                .into(),
        );
        received.category =
            Some(HOTLINE_CATEGORIES[self.rng.random_range(0..HOTLINE_CATEGORIES.len())].into());
        received.due_at = Some(format_vietnam(due));
        received.reporter_phone =
            Some(format!("09{:08}", self.rng.random_range(0..100_000_000u32)));
        if self.rng.random::<f64>() < 0.2 {
            received.reporter_email = Some(format!(
                "citizen{}@example.vn",
                self.rng.random_range(0..1_000_000u32)
            ));
        }
        if self.rng.random::<f64>() < 0.03 {
            let mut rejected = event(2, "rejected");
            rejected.reason = Some("out_of_scope".into());
            let rejected_at = at + self.rng.random_range(600..7_200);
            self.schedule(rejected_at, rejected);
            return (at, received);
        }
        let agency = self
            .rng
            .random_range(0..self.provinces[province].agency_effects.len());
        let mut forwarded = event(2, "forwarded");
        forwarded.agency_id = Some(format!("{code}-commune-{agency:03}"));
        forwarded.due_at = Some(format_vietnam(due));
        let forwarded_at = at + self.rng.random_range(60..900);
        self.schedule(forwarded_at, forwarded);
        // Most tickets are answered within the 5-day deadline.
        let answer_after = if self.rng.random::<f64>() < 0.88 {
            self.rng.random_range(3_600..5 * 86_400)
        } else {
            self.rng.random_range(5 * 86_400..9 * 86_400)
        };
        let responded_at = forwarded_at + answer_after;
        self.schedule(responded_at, event(3, "responded"));
        let mut rated = event(4, "rated");
        let satisfied = self.rng.random::<f64>() < self.provinces[province].base_satisfaction;
        rated.rating = Some(
            if satisfied {
                "satisfied"
            } else {
                "not_satisfied"
            }
            .into(),
        );
        let rated_at = responded_at + self.rng.random_range(600..86_400);
        self.schedule(rated_at, rated);
        let mut last = rated_at;
        let mut n = 5;
        if !satisfied && self.rng.random::<f64>() < 0.3 {
            last += self.rng.random_range(3_600..3 * 86_400);
            self.schedule(last, event(n, "reopened"));
            n += 1;
            last += self.rng.random_range(3_600..3 * 86_400);
            self.schedule(last, event(n, "responded"));
            n += 1;
        }
        let closed_at = last + self.rng.random_range(600..86_400);
        self.schedule(closed_at, event(n, "closed"));
        (at, received)
    }

    /// Breaks a valid event in one specific way.
    fn corrupt(&mut self, event: SimEvent) -> SimEvent {
        let reasons: &[RejectReason] = match event.kind {
            EventKind::Survey => &[
                RejectReason::Undecodable,
                RejectReason::MissingField,
                RejectReason::BadTimestamp,
                RejectReason::UnknownProvince,
                RejectReason::UnknownFramework,
                RejectReason::UnknownCriterion,
                RejectReason::AnswerOutOfRange,
                RejectReason::UnknownEnumValue,
                RejectReason::Oversize,
            ],
            EventKind::Hotline => &[
                RejectReason::Undecodable,
                RejectReason::MissingField,
                RejectReason::BadTimestamp,
                RejectReason::UnknownProvince,
                RejectReason::UnknownEnumValue,
                RejectReason::MissingTypeField,
            ],
        };
        let reason = reasons[self.rng.random_range(0..reasons.len())];
        let payload = corrupt_payload(event.kind, &event.payload, reason);
        SimEvent {
            payload,
            expected: Expected::Invalid(reason),
            ..event
        }
    }
}

/// Re-encodes `payload` (JSON or Avro, as generated) as JSON with one defect.
pub fn corrupt_payload(kind: EventKind, payload: &[u8], reason: RejectReason) -> Vec<u8> {
    if reason == RejectReason::Undecodable {
        let mut garbage = b"{\"submission_id\": \"broken".to_vec();
        garbage.extend_from_slice(&payload[..payload.len().min(8)]);
        return garbage;
    }
    let mut value: serde_json::Value = match kind {
        EventKind::Survey => survey_value(&decode_generated_survey(payload)),
        EventKind::Hotline => {
            serde_json::to_value(decode_generated_hotline(payload)).expect("serialisable")
        }
    };
    let object = value.as_object_mut().expect("an object");
    match (kind, reason) {
        (EventKind::Survey, RejectReason::MissingField) => {
            object.remove("submission_id");
        }
        (EventKind::Hotline, RejectReason::MissingField) => {
            object.remove("event_id");
        }
        (EventKind::Survey, RejectReason::BadTimestamp) => {
            object.insert("submitted_at".into(), "21/11/2026 08:00".into());
        }
        (EventKind::Hotline, RejectReason::BadTimestamp) => {
            object.insert("occurred_at".into(), "yesterday".into());
        }
        (_, RejectReason::UnknownProvince) => {
            object.insert("province_code".into(), "99".into());
            object.insert("province_code_system".into(), "2025".into());
        }
        (_, RejectReason::UnknownFramework) => {
            object.insert("framework".into(), "BNV-0000-1999".into());
        }
        (_, RejectReason::UnknownCriterion) => {
            object["answers"]
                .as_object_mut()
                .expect("answers")
                .insert("access.99".into(), 4.into());
        }
        (_, RejectReason::AnswerOutOfRange) => {
            object["answers"]
                .as_object_mut()
                .expect("answers")
                .insert("staff.1".into(), 7.into());
        }
        (EventKind::Survey, RejectReason::UnknownEnumValue) => {
            object.insert("channel".into(), "fax".into());
        }
        (EventKind::Hotline, RejectReason::UnknownEnumValue) => {
            object.insert("type".into(), "escalated".into());
        }
        (_, RejectReason::Oversize) => {
            object.insert("padding".into(), "x".repeat(70 * 1024).into());
        }
        (_, RejectReason::MissingTypeField) => {
            object.insert("type".into(), "rated".into());
            object.remove("rating");
        }
        _ => {}
    }
    serde_json::to_vec(&value).expect("serialisable")
}

fn decode_generated_survey(payload: &[u8]) -> RawSurvey {
    if let Some(id) = crate::contract::avro::framed_schema_id(payload) {
        let catalog = crate::contract::avro::SchemaCatalog::builtin();
        let schema = catalog.get(id).expect("generated with a shipped schema");
        let value = crate::contract::avro::decode_datum(&schema, &schema, &payload[5..])
            .expect("generated Avro decodes");
        return crate::contract::avro::to_raw_survey(value).expect("a survey record");
    }
    crate::contract::json::decode_survey(payload).expect("generated JSON decodes")
}

fn decode_generated_hotline(payload: &[u8]) -> RawHotline {
    if let Some(id) = crate::contract::avro::framed_schema_id(payload) {
        let catalog = crate::contract::avro::SchemaCatalog::builtin();
        let schema = catalog.get(id).expect("generated with a shipped schema");
        let value = crate::contract::avro::decode_datum(&schema, &schema, &payload[5..])
            .expect("generated Avro decodes");
        return crate::contract::avro::to_raw_hotline(value).expect("a hotline record");
    }
    crate::contract::json::decode_hotline(payload).expect("generated JSON decodes")
}

/// The JSON form of a survey, as producers send it.
pub fn survey_value(raw: &RawSurvey) -> serde_json::Value {
    let answers: serde_json::Map<String, serde_json::Value> = raw
        .answers
        .iter()
        .flatten()
        .map(|(criterion, answer)| {
            let value = match answer {
                RawAnswer::Integer(i) => serde_json::Value::from(*i),
                RawAnswer::NoAnswer | RawAnswer::NotAnInteger(_) => serde_json::Value::Null,
            };
            (criterion.clone(), value)
        })
        .collect();
    let mut object = serde_json::Map::new();
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(v) = value {
            object.insert(key.into(), v.clone().into());
        }
    };
    put("submission_id", &raw.submission_id);
    put("framework", &raw.framework);
    put("submitted_at", &raw.submitted_at);
    put("province_code", &raw.province_code);
    put("province_code_system", &raw.province_code_system);
    put("agency_id", &raw.agency_id);
    put("agency_level", &raw.agency_level);
    put("procedure_code", &raw.procedure_code);
    put("channel", &raw.channel);
    put("respondent_type", &raw.respondent_type);
    object.insert("answers".into(), answers.into());
    if let Some(items) = &raw.expectations {
        object.insert("expectations".into(), items.clone().into());
    }
    serde_json::Value::Object(object)
}

pub fn survey_json(raw: &RawSurvey) -> Vec<u8> {
    serde_json::to_vec(&survey_value(raw)).expect("serialisable")
}

/// A number in 0..1 bunched towards the middle (mean of three uniforms).
fn beta_like(rng: &mut SmallRng) -> f64 {
    (rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>()) / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::avro::SchemaCatalog;
    use crate::contract::decode::{Decoder, Rejected};
    use crate::contract::pii::PiiHasher;
    use crate::contract::validate::Validator;
    use crate::domain::FrameworkCatalog;
    use std::path::Path;
    use std::sync::Arc;

    fn decoder() -> (Decoder, Framework) {
        let frameworks = FrameworkCatalog::load_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/frameworks"),
        )
        .unwrap();
        let framework = frameworks.get("BNV-2640-2017").unwrap().clone();
        let validator = Validator {
            provinces: ProvinceRegistry::builtin(),
            frameworks,
            pii: PiiHasher::new(b"test-secret-0123456789"),
        };
        (
            Decoder::new(validator, Arc::new(SchemaCatalog::builtin()), 64 * 1024),
            framework,
        )
    }

    #[test]
    fn every_generated_event_meets_its_expectation() {
        let (decoder, framework) = decoder();
        let settings = SimSettings {
            invalid_share: 0.1,
            duplicate_share: 0.05,
            old_code_share: 0.2,
            ..Default::default()
        };
        let mut sim = Simulator::new(settings, &ProvinceRegistry::builtin(), framework);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5_000 {
            let event = sim.next_event();
            match (
                &event.expected,
                decoder.decode(event.kind, &event.payload, None),
            ) {
                (Expected::Valid(id), Ok(_)) => assert!(seen.insert(id.clone()), "ids are unique"),
                (Expected::Duplicate(id), Ok(_)) => assert!(seen.contains(id)),
                (Expected::Invalid(reason), Err(Rejected { reject, .. })) => {
                    assert_eq!(*reason, reject.reason, "{}", reject.detail)
                }
                (expected, got) => panic!("expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn scrubbing_generated_events_changes_nothing_but_the_reporter_fields() {
        // Realistic ids, dates, agency and procedure codes, answers: no false positives.
        let (decoder, framework) = decoder();
        let settings = SimSettings {
            invalid_share: 0.0,
            old_code_share: 0.2,
            ..Default::default()
        };
        let mut sim = Simulator::new(settings, &ProvinceRegistry::builtin(), framework);
        let pii = &decoder.validator.pii;
        let (mut json, mut scrubbed) = (0, 0);
        for _ in 0..5_000 {
            let event = sim.next_event();
            let Ok(mut before) = serde_json::from_slice::<serde_json::Value>(&event.payload) else {
                // Avro: masked in place, covered by the scrubber's own tests.
                continue;
            };
            json += 1;
            let Some(after) = crate::contract::scrub::scrub_payload(&event.payload, pii) else {
                continue;
            };
            scrubbed += 1;
            let mut after: serde_json::Value = serde_json::from_slice(&after).unwrap();
            for value in [&mut before, &mut after] {
                let object = value.as_object_mut().unwrap();
                object.remove("reporter_phone");
                object.remove("reporter_email");
            }
            assert_eq!(before, after);
        }
        assert!(
            json > 1_000 && scrubbed > 100,
            "{json} JSON events, {scrubbed} scrubbed"
        );
    }

    #[test]
    fn no_event_is_dated_after_the_simulated_clock() {
        // `sipas simulate` paces production so that the simulated clock never runs ahead
        // of the wall clock (its Kafka timestamps): events dated after the clock would be
        // refused as `future_timestamp`. Not even a second ahead, hotline follow-ups included.
        let (decoder, framework) = decoder();
        let decoder = decoder.with_max_future_skew(0);
        let settings = SimSettings {
            step_seconds: 30.0,
            invalid_share: 0.0,
            late_share: 0.05,
            out_of_order_share: 0.1,
            ..Default::default()
        };
        let mut sim = Simulator::new(settings, &ProvinceRegistry::builtin(), framework);
        for _ in 0..5_000 {
            let event = sim.next_event();
            let clock = sim.clock();
            assert!(event.event_time <= clock, "{} > {clock}", event.event_time);
            if let Err(rejected) = decoder.decode(event.kind, &event.payload, Some(clock)) {
                panic!("{:?}: {}", event.expected, rejected.reject);
            }
        }
    }

    #[test]
    fn same_seed_same_log() {
        let (_, framework) = decoder();
        let mut a = Simulator::new(
            SimSettings::default(),
            &ProvinceRegistry::builtin(),
            framework.clone(),
        );
        let mut b = Simulator::new(
            SimSettings::default(),
            &ProvinceRegistry::builtin(),
            framework.clone(),
        );
        let mut c = Simulator::new(
            SimSettings {
                seed: 2,
                ..Default::default()
            },
            &ProvinceRegistry::builtin(),
            framework,
        );
        let log = |s: &mut Simulator| (0..500).map(|_| s.next_event().payload).collect::<Vec<_>>();
        let (la, lb, lc) = (log(&mut a), log(&mut b), log(&mut c));
        assert!(la == lb, "same seed, same bytes");
        assert!(la != lc, "another seed, another log");
    }
}

/// One NDJSON line for a generated event: Avro payloads are converted to their JSON form,
/// undecodable payloads are kept as they are (with newlines escaped away).
pub fn as_json_line(event: &SimEvent) -> Vec<u8> {
    if crate::contract::avro::framed_schema_id(&event.payload).is_none() {
        return event
            .payload
            .iter()
            .map(|b| if *b == b'\n' { b' ' } else { *b })
            .collect();
    }
    match event.kind {
        EventKind::Survey => survey_json(&decode_generated_survey(&event.payload)),
        EventKind::Hotline => {
            serde_json::to_vec(&decode_generated_hotline(&event.payload)).expect("serialisable")
        }
    }
}
