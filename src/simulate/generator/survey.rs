//! Survey submissions: a respondent's answers shaped by the province, the agency and
//! their mood.
use rand::Rng;

use super::encoding::survey_json;
use super::{Expected, SimEvent, Simulator};
use crate::contract::avro::encode_survey;
use crate::contract::decode::EventKind;
use crate::contract::raw::{RawAnswer, RawSurvey};
use crate::domain::time::format_vietnam;

const ANSWER_MISSING_SHARE: f64 = 0.04;

impl Simulator {
    pub(super) fn survey_event(&mut self) -> SimEvent {
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
}
