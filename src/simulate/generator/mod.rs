//! The seeded event generator: settings, the simulated clock and provinces, and which
//! message comes next. Each kind of message is made apart: `survey`, `hotline` (ticket
//! lifecycles), `corrupt` (invalid messages), `encoding` (their JSON forms).
mod corrupt;
mod encoding;
mod hotline;
mod survey;

pub use corrupt::corrupt_payload;
pub use encoding::{as_json_line, survey_json, survey_value};

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::contract::decode::EventKind;
use crate::contract::reject::RejectReason;
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

pub struct Simulator {
    settings: SimSettings,
    rng: SmallRng,
    provinces: Vec<ProvinceProfile>,
    /// Surveys are spread uniformly over these frameworks (the first when there is one).
    frameworks: Vec<Framework>,
    index: u64,
    pending: BinaryHeap<Reverse<(i64, u64)>>,
    pending_events: std::collections::HashMap<u64, hotline::PendingHotline>,
    pending_seq: u64,
    recent_valid: Vec<SimEvent>,
    next_ticket: u64,
}

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
