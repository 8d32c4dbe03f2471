//! Turns a batch of input messages into raw rows, dead letters and the per-partition
//! offsets that become safe to commit once all of them are acknowledged.
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::contract::decode::{Decoded, Decoder, Encoding, EventKind};
use crate::contract::reject::RejectReason;
use crate::domain::SurveySubmission;
use crate::index::input::FoldInput;
use crate::kafka::dlq::DeadLetter;
use crate::sink::rows::{HotlineRow, KafkaCoordinates, SurveyRow};

/// A consumed message, detached from the consumer.
#[derive(Debug, Clone)]
pub struct InputMessage {
    pub kind: EventKind,
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The broker's (or producer's) timestamp, for freshness.
    pub produced_ms: Option<i64>,
    /// Already acknowledged as raw rows (below the group's committed offset) and re-read
    /// only because the index state starts earlier: it is folded, not written again.
    pub index_only: bool,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct BatchOutput {
    pub surveys: Vec<SurveyRow>,
    /// For each survey row, the index of its message in the batch.
    pub survey_sources: Vec<usize>,
    pub hotline: Vec<HotlineRow>,
    pub hotline_sources: Vec<usize>,
    pub dead_letters: Vec<DeadLetter>,
    /// (topic, partition) -> next offset to consume, once this batch is acknowledged.
    pub next_offsets: BTreeMap<(String, i32), i64>,
    /// Newest event time among the valid events.
    pub newest_event_time: Option<i64>,
    pub valid_by_kind: BTreeMap<(&'static str, &'static str), u64>,
    /// Every message in order, for the index (only when asked for).
    pub folds: Vec<FoldInput>,
}

impl BatchOutput {
    /// Decodes and validates every message. Deterministic: no clock except `ingested_at`.
    /// With `fold`, every message is also handed on in `folds` (decoded once for both).
    pub fn build(
        decoder: &Decoder,
        messages: &[InputMessage],
        ingested_at: i64,
        fold: bool,
    ) -> Self {
        let mut out = BatchOutput::default();
        // Per (topic, partition) and per (kind, encoding) tallies, kept in small arrays while
        // the batch is read (a batch holds a few partitions) and moved into the maps at the
        // end: a map entry per message cost a String and a B-tree search each.
        let mut next_offsets: Vec<(&Arc<str>, i32, i64)> = Vec::new();
        let mut valid = [[0u64; 2]; 2];
        for (index, message) in messages.iter().enumerate() {
            let decoded = message
                .payload
                .as_deref()
                .map(|payload| decoder.decode(message.kind, payload));
            if message.index_only {
                if fold {
                    out.folds.push(fold_input(
                        message,
                        decoded.and_then(Result::ok).map(|(d, _)| d),
                    ));
                }
                continue;
            }
            match next_offsets
                .iter_mut()
                .find(|(t, p, _)| *p == message.partition && **t == message.topic)
            {
                Some((_, _, next)) => *next = (*next).max(message.offset + 1),
                None => next_offsets.push((&message.topic, message.partition, message.offset + 1)),
            }
            let Some(decoded) = decoded else {
                out.dead_letters.push(dead_letter(
                    message,
                    Vec::new(),
                    RejectReason::Undecodable,
                    "message has no payload".into(),
                    false,
                ));
                if fold {
                    out.folds.push(fold_input(message, None));
                }
                continue;
            };
            match decoded {
                Ok((decoded, encoding)) => {
                    let at = KafkaCoordinates {
                        topic: Arc::clone(&message.topic),
                        partition: message.partition,
                        offset: message.offset,
                        ingested_at,
                    };
                    valid[message.kind as usize][encoding as usize] += 1;
                    // Without the fold the event moves into its row; with it, the row
                    // copies what it needs and the event goes on to the index.
                    match &decoded {
                        Decoded::Survey(survey) => {
                            out.newest_event_time =
                                out.newest_event_time.max(Some(survey.submitted_at));
                            out.survey_sources.push(index);
                        }
                        Decoded::Hotline(event) => {
                            out.newest_event_time =
                                out.newest_event_time.max(Some(event.occurred_at));
                            out.hotline_sources.push(index);
                        }
                    }
                    let encoding = encoding.as_str();
                    match (decoded, fold) {
                        (Decoded::Survey(survey), false) => {
                            let row = match criteria(decoder, &survey) {
                                Some(ids) => SurveyRow::from_owned(survey, ids, encoding, &at),
                                None => SurveyRow::new(&survey, encoding, &at),
                            };
                            out.surveys.push(row);
                        }
                        (Decoded::Survey(survey), true) => {
                            out.surveys.push(match criteria(decoder, &survey) {
                                Some(ids) => SurveyRow::with_criteria(&survey, ids, encoding, &at),
                                None => SurveyRow::new(&survey, encoding, &at),
                            });
                            out.folds
                                .push(fold_input(message, Some(Decoded::Survey(survey))));
                        }
                        (Decoded::Hotline(event), false) => {
                            out.hotline
                                .push(HotlineRow::from_owned(event, encoding, &at));
                        }
                        (Decoded::Hotline(event), true) => {
                            out.hotline.push(HotlineRow::new(&event, encoding, &at));
                            out.folds
                                .push(fold_input(message, Some(Decoded::Hotline(event))));
                        }
                    }
                }
                Err(rejected) => {
                    if fold {
                        out.folds.push(fold_input(message, None));
                    }
                    let redacted = rejected.dlq_payload.is_some();
                    let payload = rejected
                        .dlq_payload
                        .unwrap_or_else(|| message.payload.clone().unwrap_or_default());
                    out.dead_letters.push(dead_letter(
                        message,
                        payload,
                        rejected.reject.reason,
                        rejected.reject.detail,
                        redacted,
                    ));
                }
            }
        }
        for (topic, partition, next) in next_offsets {
            let entry = out
                .next_offsets
                .entry((topic.to_string(), partition))
                .or_insert(0);
            *entry = (*entry).max(next);
        }
        for kind in [EventKind::Survey, EventKind::Hotline] {
            for encoding in [Encoding::Json, Encoding::Avro] {
                let count = valid[kind as usize][encoding as usize];
                if count > 0 {
                    out.valid_by_kind
                        .insert((kind.as_str(), encoding.as_str()), count);
                }
            }
        }
        out
    }

    pub fn message_count(&self) -> usize {
        self.surveys.len() + self.hotline.len() + self.dead_letters.len()
    }
}

/// The criterion ids of a survey's framework, shared by its rows.
fn criteria<'a>(decoder: &'a Decoder, survey: &SurveySubmission) -> Option<&'a Arc<[String]>> {
    decoder
        .validator
        .frameworks
        .get(&survey.framework)
        .map(|f| &f.columns().criterion_ids)
}

fn fold_input(message: &InputMessage, event: Option<Decoded>) -> FoldInput {
    FoldInput {
        topic: Arc::clone(&message.topic),
        partition: message.partition,
        offset: message.offset,
        produced_ms: message.produced_ms,
        event,
    }
}

pub fn dead_letter(
    message: &InputMessage,
    payload: Vec<u8>,
    reason: RejectReason,
    detail: String,
    redacted: bool,
) -> DeadLetter {
    DeadLetter {
        payload,
        key: message.key.clone(),
        reason: reason.code(),
        detail,
        source_topic: message.topic.to_string(),
        source_partition: message.partition,
        source_offset: message.offset,
        redacted,
    }
}
