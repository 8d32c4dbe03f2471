//! Hotline tickets: each `received` event schedules the rest of its ticket's life
//! (forwarded, responded, rated, maybe reopened, closed), released when its time comes.
use std::cmp::Reverse;

use rand::Rng;

use super::{Expected, SimEvent, Simulator};
use crate::contract::avro::encode_hotline;
use crate::contract::decode::EventKind;
use crate::contract::raw::RawHotline;
use crate::domain::event::{HotlineChannel, HOTLINE_CATEGORIES};
use crate::domain::time::format_vietnam;

/// A hotline event waiting for its time to come.
pub(super) struct PendingHotline {
    at: i64,
    raw: RawHotline,
}

impl Simulator {
    pub(super) fn hotline_event(&mut self) -> SimEvent {
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
}
