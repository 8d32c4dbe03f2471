//! Hotline KPIs. A ticket's state is the fold of its own events, whatever their order;
//! each event is attributed to the Vietnam day it happened on, to the ticket's province,
//! agency (from the latest `forwarded`) and category (from `received`), once that day is
//! closed (so out-of-order events within the allowed lateness are attributed correctly).

use serde::{Deserialize, Serialize};

use crate::domain::time::{vietnam_day, VIETNAM_OFFSET_SECONDS};
use crate::domain::{HotlineEvent, HotlineEventType, Rating};

/// Response-time histogram: bin `i` holds responses of `[e^(i/8) - 1, e^((i+1)/8) - 1)`
/// minutes (about 13 % wide), up to ~60 days; the median is read to within one bin.
pub const RESPONSE_BINS: usize = 96;

/// The response-time bin of a response `minutes` after its ticket was received (clamped to
/// `0..RESPONSE_BINS`; negative times fall in bin 0).
pub fn response_bin(minutes: f64) -> usize {
    ((minutes.max(0.0) + 1.0).ln() * 8.0)
        .floor()
        .clamp(0.0, (RESPONSE_BINS - 1) as f64) as usize
}

fn bin_midpoint_hours(bin: usize) -> f64 {
    let low = (bin as f64 / 8.0).exp() - 1.0;
    let high = ((bin + 1) as f64 / 8.0).exp() - 1.0;
    // Geometric midpoint in the (minutes + 1) space the bins are built on.
    (((low + 1.0) * (high + 1.0)).sqrt() - 1.0) / 60.0
}

/// Summable KPI counts for one unit over some days.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HotlineCounts {
    pub received: u32,
    /// First responses.
    pub responded: u32,
    pub responded_on_time: u32,
    pub rated: u32,
    pub satisfied: u32,
    pub reopened: u32,
    pub rejected: u32,
    /// Response-time histogram; sparse because most unit-days have few responses.
    pub response_minutes: SparseHistogram,
}

/// `(bin, count)` pairs sorted by bin, zero counts removed. A sorted vector: a unit-day
/// usually holds one or two bins, where a map node would cost ten times the memory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SparseHistogram(Vec<(u8, u32)>);

impl SparseHistogram {
    /// Adds `sign × count` to `bin` (never below zero).
    pub fn add(&mut self, bin: u8, count: u32, sign: i64) {
        match self.0.binary_search_by_key(&bin, |(b, _)| *b) {
            Ok(i) => {
                let value = (i64::from(self.0[i].1) + sign * i64::from(count)).max(0) as u32;
                if value == 0 {
                    self.0.remove(i);
                } else {
                    self.0[i].1 = value;
                }
            }
            Err(i) if sign > 0 && count > 0 => self.0.insert(i, (bin, count)),
            Err(_) => {}
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u8, u32)> + '_ {
        self.0.iter().copied()
    }

    pub fn total(&self) -> u32 {
        self.0.iter().map(|(_, c)| c).sum()
    }
}

impl HotlineCounts {
    pub fn merge(&mut self, other: &HotlineCounts, sign: i64) {
        let add = |a: &mut u32, b: u32| *a = (i64::from(*a) + sign * i64::from(b)).max(0) as u32;
        add(&mut self.received, other.received);
        add(&mut self.responded, other.responded);
        add(&mut self.responded_on_time, other.responded_on_time);
        add(&mut self.rated, other.rated);
        add(&mut self.satisfied, other.satisfied);
        add(&mut self.reopened, other.reopened);
        add(&mut self.rejected, other.rejected);
        for (bin, count) in other.response_minutes.iter() {
            self.response_minutes.add(bin, count, sign);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.received + self.responded + self.rated + self.reopened + self.rejected == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HotlineKpi {
    pub received: u32,
    pub responded: u32,
    pub responded_on_time: u32,
    pub on_time_rate: Option<f64>,
    pub median_response_hours: Option<f64>,
    pub rated: u32,
    pub satisfaction_rate: Option<f64>,
    pub reopened: u32,
    pub reopen_rate: Option<f64>,
    pub rejected: u32,
    pub open_past_due: u32,
}

fn rate(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| 100.0 * f64::from(part) / f64::from(whole))
}

pub fn kpi(counts: &HotlineCounts, open_past_due: u32) -> HotlineKpi {
    let total = counts.response_minutes.total();
    let median_response_hours = (total > 0).then(|| {
        let half = total.div_ceil(2);
        let mut seen = 0;
        let bin = counts.response_minutes.iter().find(|(_, c)| {
            seen += *c;
            seen >= half
        });
        bin_midpoint_hours(bin.map_or(0, |(b, _)| usize::from(b)))
    });
    HotlineKpi {
        received: counts.received,
        responded: counts.responded,
        responded_on_time: counts.responded_on_time,
        on_time_rate: rate(counts.responded_on_time, counts.responded),
        median_response_hours,
        rated: counts.rated,
        satisfaction_rate: rate(counts.satisfied, counts.rated),
        reopened: counts.reopened,
        reopen_rate: rate(counts.reopened, counts.responded),
        rejected: counts.rejected,
        open_past_due,
    }
}

/// Everything known about one ticket; the same whatever order its events came in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ticket {
    pub province: String,
    pub received_at: Option<i64>,
    pub category: Option<String>,
    /// (occurred_at, deadline) of the latest `received`/`forwarded` that set a deadline.
    pub due: Option<(i64, i64)>,
    /// (occurred_at, agency) of the latest `forwarded`.
    pub agency: Option<(i64, String)>,
    pub first_response: Option<i64>,
    /// Earliest `rejected` or `closed`.
    pub resolved_at: Option<i64>,
    pub last_event_at: i64,
}

impl Ticket {
    pub fn fold(&mut self, event: &HotlineEvent) {
        let at = event.occurred_at;
        self.province = event.province_code.clone();
        self.last_event_at = self.last_event_at.max(at);
        fn later<T>(current: &Option<(i64, T)>, at: i64) -> bool {
            current.as_ref().is_none_or(|(t, _)| at >= *t)
        }
        match event.event_type {
            HotlineEventType::Received => {
                self.received_at = Some(self.received_at.map_or(at, |r| r.min(at)));
                if event.category.is_some() {
                    self.category = event.category.clone();
                }
            }
            HotlineEventType::Forwarded => {
                if let Some(agency) = &event.agency_id {
                    if later(&self.agency, at) {
                        self.agency = Some((at, agency.clone()));
                    }
                }
            }
            HotlineEventType::Responded => {
                self.first_response = Some(self.first_response.map_or(at, |r| r.min(at)))
            }
            HotlineEventType::Rejected | HotlineEventType::Closed => {
                self.resolved_at = Some(self.resolved_at.map_or(at, |r| r.min(at)))
            }
            HotlineEventType::Rated | HotlineEventType::Reopened => {}
        }
        if let Some(due) = event.due_at {
            if later(&self.due, at) {
                self.due = Some((at, due));
            }
        }
    }

    /// Open (not answered, not resolved) and past its deadline at instant `at`.
    pub fn open_past_due(&self, at: i64) -> bool {
        self.received_at.is_some_and(|r| r <= at)
            && self.due.is_some_and(|(_, due)| due < at)
            && !self.first_response.is_some_and(|r| r <= at)
            && !self.resolved_at.is_some_and(|r| r <= at)
    }

    /// The counts one event of this ticket contributes.
    pub fn contribution(&self, event: &PendingHotline) -> HotlineCounts {
        let mut c = HotlineCounts::default();
        match event.event_type {
            HotlineEventType::Received => c.received = 1,
            HotlineEventType::Responded
                if self.first_response == Some(event.occurred_at) && event.first_of_its_kind =>
            {
                c.responded = 1;
                if self.due.is_some_and(|(_, due)| event.occurred_at <= due) {
                    c.responded_on_time = 1;
                }
                if let Some(received) = self.received_at {
                    c.response_minutes.add(
                        response_bin((event.occurred_at - received) as f64 / 60.0) as u8,
                        1,
                        1,
                    );
                }
            }
            HotlineEventType::Rated => {
                c.rated = 1;
                c.satisfied = u32::from(event.rating == Some(Rating::Satisfied));
            }
            HotlineEventType::Reopened => c.reopened = 1,
            HotlineEventType::Rejected => c.rejected = 1,
            _ => {}
        }
        c
    }
}

/// What is kept of a hotline event until its day closes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingHotline {
    pub ticket_id: String,
    pub event_type: HotlineEventType,
    pub occurred_at: i64,
    pub rating: Option<Rating>,
    /// False for a second `responded` at the very same instant (counted once).
    pub first_of_its_kind: bool,
}

/// End of a Vietnam day (exclusive), as Unix seconds.
pub fn day_end(day: i64) -> i64 {
    (day + 1) * 86_400 - VIETNAM_OFFSET_SECONDS
}

pub fn event_day(event: &HotlineEvent) -> i64 {
    vietnam_day(event.occurred_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CodeSystem;

    fn event(kind: HotlineEventType, at: i64) -> HotlineEvent {
        HotlineEvent {
            event_id: format!("{kind:?}-{at}"),
            ticket_id: "t".into(),
            event_type: kind,
            occurred_at: at,
            province_code: "79".into(),
            province_code_original: "79".into(),
            province_code_system: CodeSystem::Y2025,
            channel: None,
            category: (kind == HotlineEventType::Received).then(|| "traffic".into()),
            agency_id: (kind == HotlineEventType::Forwarded).then(|| format!("agency-{at}")),
            due_at: matches!(
                kind,
                HotlineEventType::Received | HotlineEventType::Forwarded
            )
            .then_some(at + 5 * 86_400),
            rating: (kind == HotlineEventType::Rated).then_some(Rating::Satisfied),
            reason: None,
            reporter_phone_hash: None,
            reporter_email_hash: None,
        }
    }

    #[test]
    fn the_fold_does_not_depend_on_event_order() {
        let t0 = 1_790_000_000;
        let events = [
            event(HotlineEventType::Received, t0),
            event(HotlineEventType::Forwarded, t0 + 600),
            event(HotlineEventType::Forwarded, t0 + 1200),
            event(HotlineEventType::Responded, t0 + 86_400),
            event(HotlineEventType::Responded, t0 + 2 * 86_400),
            event(HotlineEventType::Closed, t0 + 3 * 86_400),
        ];
        let mut in_order = Ticket::default();
        events.iter().for_each(|e| in_order.fold(e));
        let mut reversed = Ticket::default();
        events.iter().rev().for_each(|e| reversed.fold(e));
        assert_eq!(in_order, reversed);
        assert_eq!(
            in_order.agency,
            Some((t0 + 1200, format!("agency-{}", t0 + 1200)))
        );
        assert_eq!(in_order.first_response, Some(t0 + 86_400));
        assert_eq!(in_order.due, Some((t0 + 1200, t0 + 1200 + 5 * 86_400)));
        assert!(!in_order.open_past_due(t0 + 10 * 86_400));
    }

    #[test]
    fn open_past_due_and_on_time() {
        let t0 = 1_790_000_000;
        let mut ticket = Ticket::default();
        ticket.fold(&event(HotlineEventType::Received, t0));
        assert!(!ticket.open_past_due(t0 + 5 * 86_400 - 1));
        assert!(ticket.open_past_due(t0 + 5 * 86_400 + 1));
        let late = event(HotlineEventType::Responded, t0 + 6 * 86_400);
        ticket.fold(&late);
        let pending = PendingHotline {
            ticket_id: "t".into(),
            event_type: late.event_type,
            occurred_at: late.occurred_at,
            rating: None,
            first_of_its_kind: true,
        };
        let c = ticket.contribution(&pending);
        assert_eq!((c.responded, c.responded_on_time), (1, 0));
        assert!(!ticket.open_past_due(t0 + 7 * 86_400));
        assert!(
            ticket.open_past_due(t0 + 6 * 86_400 - 1),
            "it was open and past due before the answer"
        );
    }

    #[test]
    fn kpi_rates_and_median() {
        let mut c = HotlineCounts {
            received: 10,
            responded: 4,
            responded_on_time: 3,
            rated: 2,
            satisfied: 1,
            reopened: 1,
            rejected: 0,
            ..Default::default()
        };
        for minutes in [60.0, 120.0, 24.0 * 60.0, 48.0 * 60.0, 49.0 * 60.0] {
            c.response_minutes.add(response_bin(minutes) as u8, 1, 1);
        }
        let k = kpi(&c, 2);
        assert_eq!(k.on_time_rate, Some(75.0));
        assert_eq!(k.satisfaction_rate, Some(50.0));
        assert_eq!(k.reopen_rate, Some(25.0));
        let median = k.median_response_hours.unwrap();
        assert!(
            (median - 24.0).abs() / 24.0 < 0.15,
            "median {median} within one bin of 24 h"
        );
        assert_eq!(
            kpi(&HotlineCounts::default(), 0).median_response_hours,
            None
        );
    }
}
