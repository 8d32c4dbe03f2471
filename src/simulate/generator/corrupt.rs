//! Invalid messages: a valid event broken in one specific way, with the reason the
//! pipeline must give.
use rand::Rng;

use super::encoding::{decode_generated_hotline, decode_generated_survey, survey_value};
use super::{Expected, SimEvent, Simulator};
use crate::contract::decode::EventKind;
use crate::contract::reject::RejectReason;

impl Simulator {
    /// Breaks a valid event in one specific way.
    pub(super) fn corrupt(&mut self, event: SimEvent) -> SimEvent {
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
