//! Turns a batch of input messages into raw rows, dead letters and the per-partition
//! offsets that become safe to commit once all of them are acknowledged.
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::contract::decode::{Decoded, Decoder, Encoding, EventKind};
use crate::contract::kind::PerKind;
use crate::contract::reject::RejectReason;
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
    /// The message's Kafka timestamp (the producer's create time, or the broker's
    /// log-append time), for freshness and as the receive instant of the event-time guard.
    pub produced_ms: Option<i64>,
    /// Already acknowledged as raw rows (below the group's committed offset) and re-read
    /// only because the index state starts earlier: it is folded, not written again.
    pub index_only: bool,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// One kind's raw rows, each with the index of its message in the batch.
#[derive(Debug)]
pub struct KindRows<R> {
    pub rows: Vec<R>,
    /// For each row, the index of its message in the batch.
    pub sources: Vec<usize>,
}

impl<R> Default for KindRows<R> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            sources: Vec::new(),
        }
    }
}

impl<R> KindRows<R> {
    fn reserve_exact(&mut self, rows: usize) {
        self.rows.reserve_exact(rows);
        self.sources.reserve_exact(rows);
    }

    fn push(&mut self, row: R, source: usize) {
        self.rows.push(row);
        self.sources.push(source);
    }
}

/// Each kind's raw rows. Their types differ, so a kind is a field here rather than a
/// value of a `PerKind`: filled by `BatchOutput::build`, inserted by `pipeline::deliver`,
/// which takes this apart field by field, so that a kind left out there does not compile.
#[derive(Debug, Default)]
pub struct RawRows {
    pub surveys: KindRows<SurveyRow>,
    pub hotline: KindRows<HotlineRow>,
}

#[derive(Debug, Default)]
pub struct BatchOutput {
    pub rows: RawRows,
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
    /// Decodes and validates every message. Deterministic: no clock except `ingested_at`
    /// (event times are checked against each message's own Kafka timestamp).
    /// With `fold`, every message is also handed on in `folds` (decoded once for both).
    pub fn build(
        decoder: &Decoder,
        messages: &[InputMessage],
        ingested_at: i64,
        fold: bool,
    ) -> Self {
        let mut out = BatchOutput::default();
        // Sized exactly up front: three batches are in flight in a catch-up, and doubling
        // vectors of rows would hold up to as much again unused.
        let mut rows_by_kind: PerKind<usize> = PerKind::default();
        for message in messages.iter().filter(|m| !m.index_only) {
            rows_by_kind[message.kind] += 1;
        }
        out.rows
            .surveys
            .reserve_exact(rows_by_kind[EventKind::Survey]);
        out.rows
            .hotline
            .reserve_exact(rows_by_kind[EventKind::Hotline]);
        if fold {
            out.folds.reserve_exact(messages.len());
        }
        // Per (topic, partition) and per (kind, encoding) tallies, kept in small arrays while
        // the batch is read (a batch holds a few partitions) and moved into the maps at the
        // end: a map entry per message cost a String and a B-tree search each.
        let mut next_offsets: Vec<(&Arc<str>, i32, i64)> = Vec::new();
        let mut valid: PerKind<[u64; Encoding::ALL.len()]> = PerKind::default();
        for (index, message) in messages.iter().enumerate() {
            let decoded = message
                .payload
                .as_deref()
                .map(|payload| decoder.decode(message.kind, payload, message.received_at()));
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
                    valid[message.kind][encoding as usize] += 1;
                    let event_time = match &decoded {
                        Decoded::Survey(survey) => survey.submitted_at,
                        Decoded::Hotline(event) => event.occurred_at,
                    };
                    out.newest_event_time = out.newest_event_time.max(Some(event_time));
                    // Without the fold the event moves into its row; with it, the row
                    // copies what it needs and the event goes on to the index.
                    let encoding = encoding.as_str();
                    let rows = &mut out.rows;
                    match (decoded, fold) {
                        (Decoded::Survey(survey), false) => {
                            let row = SurveyRow::from_owned(survey, encoding, &at);
                            rows.surveys.push(row, index);
                        }
                        (Decoded::Survey(survey), true) => {
                            rows.surveys
                                .push(SurveyRow::new(&survey, encoding, &at), index);
                            out.folds
                                .push(fold_input(message, Some(Decoded::Survey(survey))));
                        }
                        (Decoded::Hotline(event), false) => {
                            let row = HotlineRow::from_owned(event, encoding, &at);
                            rows.hotline.push(row, index);
                        }
                        (Decoded::Hotline(event), true) => {
                            rows.hotline
                                .push(HotlineRow::new(&event, encoding, &at), index);
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
        for (kind, counts) in valid.iter() {
            for encoding in Encoding::ALL {
                let count = counts[encoding as usize];
                if count > 0 {
                    out.valid_by_kind
                        .insert((kind.as_str(), encoding.as_str()), count);
                }
            }
        }
        out
    }
}

impl InputMessage {
    /// When the message was received, in Unix seconds: its Kafka timestamp. The same on
    /// every read of the message, so a replay (index rebuild, re-delivery) refuses exactly
    /// what the first read refused. `None` only for a message without a timestamp.
    pub fn received_at(&self) -> Option<i64> {
        self.produced_ms.map(|ms| ms.div_euclid(1000))
    }
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
        // Producers key by province; one keying by reporter must not put them in the DLQ.
        key: message
            .key
            .as_deref()
            .map(|key| crate::contract::scrub::mask_bytes(key).unwrap_or_else(|| key.to_vec())),
        reason: reason.code(),
        // Not only the contract's details: a ClickHouse error may quote a value of the row.
        detail: crate::contract::scrub::scrub_string(detail),
        source_topic: message.topic.to_string(),
        source_partition: message.partition,
        source_offset: message.offset,
        redacted,
    }
}

/// The messages of one partition in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    pub topic: Arc<str>,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub messages: usize,
}

impl PartitionRange {
    /// Per partition, in first-seen order (a batch holds few partitions).
    pub fn of(batch: &[InputMessage]) -> Vec<PartitionRange> {
        let mut ranges: Vec<PartitionRange> = Vec::new();
        for message in batch {
            match ranges
                .iter_mut()
                // The topic names are shared `Arc`s: usually one pointer comparison.
                .find(|r| {
                    r.partition == message.partition
                        && (Arc::ptr_eq(&r.topic, &message.topic) || r.topic == message.topic)
                }) {
                Some(range) => {
                    range.first_offset = range.first_offset.min(message.offset);
                    range.last_offset = range.last_offset.max(message.offset);
                    range.messages += 1;
                }
                None => ranges.push(PartitionRange {
                    topic: Arc::clone(&message.topic),
                    partition: message.partition,
                    first_offset: message.offset,
                    last_offset: message.offset,
                    messages: 1,
                }),
            }
        }
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::decode::tests::{decoder, hotline, survey};
    use crate::domain::time::parse_rfc3339;

    fn message(
        kind: EventKind,
        offset: i64,
        produced_ms: Option<i64>,
        payload: Vec<u8>,
    ) -> InputMessage {
        InputMessage {
            kind,
            topic: Arc::from(match kind {
                EventKind::Survey => "sipas.surveys",
                EventKind::Hotline => "sipas.hotline",
            }),
            partition: 0,
            offset,
            produced_ms,
            index_only: false,
            key: Some(b"79".to_vec()),
            payload: Some(payload),
        }
    }

    #[test]
    fn event_times_are_checked_against_each_message_s_kafka_timestamp() {
        let decoder = decoder();
        // Kafka timestamps are milliseconds; 999 ms into the second still counts as that second.
        let produced = parse_rfc3339("2026-11-21T08:30:00+07:00").unwrap() * 1000 + 999;
        let tomorrow = "2026-11-22T08:30:00+07:00";
        let too_far = "2026-11-22T08:30:01+07:00";
        let messages = vec![
            message(EventKind::Survey, 0, Some(produced), survey(tomorrow)),
            message(EventKind::Survey, 1, Some(produced), survey(too_far)),
            message(EventKind::Hotline, 2, Some(produced), hotline(too_far)),
            // A message without a timestamp has no receive time to compare with.
            message(
                EventKind::Survey,
                3,
                None,
                survey("2036-11-21T08:30:00+07:00"),
            ),
        ];
        let out = BatchOutput::build(&decoder, &messages, 0, true);
        assert_eq!(out.rows.surveys.sources, vec![0, 3]);
        assert!(out.rows.hotline.rows.is_empty());
        let letters: Vec<(i64, &str, bool)> = out
            .dead_letters
            .iter()
            .map(|l| (l.source_offset, l.reason, l.redacted))
            .collect();
        assert_eq!(
            letters,
            vec![
                (1, "future_timestamp", false),
                (2, "future_timestamp", true)
            ]
        );
        let hotline_letter = String::from_utf8_lossy(&out.dead_letters[1].payload);
        assert!(!hotline_letter.contains("912345678"), "{hotline_letter}");
        // Refused events are not folded: they cannot move a province's "today".
        let folded: Vec<bool> = out.folds.iter().map(|f| f.event.is_some()).collect();
        assert_eq!(folded, vec![true, false, false, true]);
        assert_eq!(
            out.newest_event_time,
            Some(parse_rfc3339("2036-11-21T08:30:00+07:00").unwrap())
        );
        assert_eq!(
            out.next_offsets.get(&("sipas.surveys".to_string(), 0)),
            Some(&4),
            "refused messages are consumed like any other"
        );
    }

    #[test]
    fn a_survey_letter_is_scrubbed_in_its_payload_key_and_detail() {
        let decoder = decoder();
        let mut value: serde_json::Value =
            serde_json::from_slice(&survey("2026-11-21T08:30:00+07:00")).unwrap();
        value["respondent_phone"] = 84913444555u64.into();
        value["channel"] = "lan@example.vn".into();
        let mut message = message(
            EventKind::Survey,
            3,
            None,
            serde_json::to_vec(&value).unwrap(),
        );
        message.key = Some(b"0912 345 678".to_vec());
        let out = BatchOutput::build(&decoder, &[message], 0, false);
        let letter = &out.dead_letters[0];
        assert_eq!(letter.reason, "unknown_enum_value");
        assert_eq!(
            letter.detail,
            "`channel` has unknown value \"**************\""
        );
        assert_eq!(letter.key.as_deref(), Some(&b"**** *** ***"[..]));
        assert!(letter.redacted);
        let payload = String::from_utf8_lossy(&letter.payload);
        assert!(
            !payload.contains("913444555") && !payload.contains("example.vn"),
            "{payload}"
        );
        assert!(payload.contains("\"submission_id\":\"s-1\""), "{payload}");
    }

    #[test]
    fn a_replayed_message_is_refused_as_it_was_the_first_time() {
        let decoder = decoder();
        let produced = parse_rfc3339("2026-11-21T08:30:00+07:00").unwrap() * 1000;
        let mut replayed = message(
            EventKind::Survey,
            7,
            Some(produced),
            survey("2026-12-24T08:30:00+07:00"),
        );
        replayed.index_only = true;
        // Built much later than the message was produced: only its own timestamp counts.
        let out = BatchOutput::build(&decoder, &[replayed], produced / 1000 + 90 * 86_400, true);
        assert_eq!(out.folds.len(), 1);
        assert!(out.folds[0].event.is_none());
        assert!(
            out.dead_letters.is_empty(),
            "index-only: not dead-lettered again"
        );
    }

    #[test]
    fn partition_ranges_span_each_partition_s_offsets() {
        let at = |kind, partition, offset| InputMessage {
            partition,
            ..message(kind, offset, None, Vec::new())
        };
        let batch = vec![
            at(EventKind::Survey, 1, 7),
            at(EventKind::Hotline, 1, 3),
            at(EventKind::Survey, 1, 9),
            at(EventKind::Survey, 0, 2),
            at(EventKind::Survey, 1, 8),
        ];
        let ranges: Vec<(&str, i32, i64, i64, usize)> = PartitionRange::of(&batch)
            .iter()
            .map(|r| {
                (
                    &*r.topic,
                    r.partition,
                    r.first_offset,
                    r.last_offset,
                    r.messages,
                )
            })
            .map(|(t, p, f, l, n)| (if t == "sipas.surveys" { "s" } else { "h" }, p, f, l, n))
            .collect();
        assert_eq!(
            ranges,
            [("s", 1, 7, 9, 3), ("h", 1, 3, 3, 1), ("s", 0, 2, 2, 1)]
        );
        assert!(PartitionRange::of(&[]).is_empty());
    }
}
