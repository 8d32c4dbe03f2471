//! The hotline ticket fold as exact, additive day counts.
//!
//! The index stores, per hotline cell (province, agency, category, channel) and Vietnam
//! day, counts that are sums of per-ticket contributions. A ticket's contributions are a
//! pure function of the **set** of its events folded so far ([`TicketState::contributions`]),
//! whatever order they arrived in: when an event arrives the processor computes
//! `before = ticket.contributions()`, folds the event, computes `after`, and writes
//! [`diff`]`(before, after)` as signed deltas. A later-arriving event can therefore move
//! counts between days and cells (a −1 on the old (cell, day), a +1 on the new one), and
//! redelivering an event changes nothing.
//!
//! # Definitions
//!
//! "Earliest" orders events by `(occurred_at, event_id)` and takes the smallest; "latest"
//! takes the largest by the same key. (Two different events that even share an id are
//! ordered by their remaining fields, so the fold stays order-independent.) Days are
//! Vietnam days ([`vietnam_day`]); `end(D)` is [`day_end`]`(D)`, exclusive.
//!
//! - **Cell.** province, category and channel are those of the earliest `received`
//!   (category `""` when it has none, channel `""` when it has none; channel is the
//!   [`HotlineChannel`] wire name). Until a `received` is known: the province of the
//!   earliest event of any type, category and channel `""`. The agency is the
//!   `agency_id` of the latest `forwarded` that carries one, `""` if none. All of a
//!   ticket's contributions go to its current cell, so a forward that changes the
//!   agency moves all of them.
//! - **received**: +1 on the day of the earliest `received`; none without a `received`
//!   (the other counts still go to the cell).
//! - **First response** = the earliest `responded`. **responded**: +1 on its day, once
//!   however many `responded` events there are.
//! - **Deadline in force at instant t** (inclusive or exclusive as stated): the `due_at`
//!   of the latest event, of any type, that carries a `due_at` and occurred at or before
//!   (resp. before) t.
//! - **responded_on_time**: +1 on the first response's day when a deadline is in force
//!   at the first response (inclusive) and the first response ≤ it. A `due_at` sent after
//!   the first response does not count; no deadline → not on time.
//! - **response_bins**: on the first response's day, one count in bin
//!   [`response_bin`]`((first_response − earliest received) / 60 minutes)`; only when a
//!   `received` is known.
//! - **reopened**: +1 on the first response's day when the ticket has at least one
//!   `reopened` event (whenever it occurred). Without a first response, no count. So
//!   `reopened ≤ responded` on every (cell, day) and the reopen rate is at most 100 %.
//! - **rated / rated_satisfied**: the latest `rated` counts: `rated` +1 on its day and
//!   `rated_satisfied` +1 if its rating is `satisfied`. A re-rating replaces (moves) it.
//! - **rejected**: +1 on the day of the earliest `rejected`.
//! - **Resolved** at the earliest `rejected` or `closed`.
//! - **Open past due as of the end of day D** ⟺ a `received` is known with
//!   `received_at < end(D)`, the deadline in force at `end(D)` (exclusive) exists and is
//!   `< end(D)`, there is no first response `< end(D)`, and the ticket is not resolved
//!   `< end(D)` ([`TicketState::open_past_due_at_end_of`]). It is encoded as toggles:
//!   `past_due_delta` is +1 on each day it becomes true (false the day before) and −1 on
//!   each day it becomes false, so `open_past_due(as_of) = Σ_{D ≤ as_of} past_due_delta`.
//!   Every condition has the form `day(x) ≤ D` for some instant x (received, first
//!   response, resolution, each deadline event, each `due_at`), so the status is constant
//!   between consecutive such days and can only change on one of them: evaluating it on
//!   those days alone finds every toggle.
//!
//! # State
//!
//! [`TicketState`] is checkpointed for every ticket still tracked, so it keeps only what
//! the definitions read: the earliest `received`'s key and attributes, the latest agency
//! forward, the earliest response / rejection / resolution instants, the latest rating,
//! a reopened flag, and the deadline events — one per `occurred_at` (the latest at that
//! instant supersedes the others for every query), and only those that occurred at or
//! before the first response (no definition reads a later one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::time::{day_end, vietnam_day};
use crate::domain::{HotlineChannel, HotlineEvent, HotlineEventType, Rating};

/// Response-time histogram: bin `i` holds responses of `[e^(i/8) - 1, e^((i+1)/8) - 1)`
/// minutes (about 13 % wide), up to ~60 days; the median is read to within one bin.
pub const RESPONSE_BINS: usize = 96;

pub fn response_bin(minutes: f64) -> usize {
    ((minutes.max(0.0) + 1.0).ln() * 8.0)
        .floor()
        .clamp(0.0, (RESPONSE_BINS - 1) as f64) as usize
}

/// A count summed in ClickHouse (the `Int64` sum of an `Int32` column) in the counts'
/// type, saturating.
pub fn narrow_sum(sum: i64) -> i32 {
    sum.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// A histogram summed in ClickHouse (`bins`, and their `counts` at the same positions) as
/// [`HotlineDayCounts::response_bins`]: zero counts removed.
pub fn summed_response_bins(bins: &[u8], counts: &[i64]) -> Vec<(u8, i32)> {
    bins.iter()
        .zip(counts)
        .filter(|(_, c)| **c != 0)
        .map(|(b, c)| (*b, narrow_sum(*c)))
        .collect()
}

/// Where a ticket's counts are added up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HotlineCell {
    pub province_code: String,
    /// `""` until forwarded.
    pub agency_id: String,
    /// `""` when unknown.
    pub category: String,
    /// [`HotlineChannel`] wire name, `""` when unknown.
    pub channel: String,
}

/// Counts of one (cell, day). Signed so that a moved contribution is a −1 on the old day
/// and a +1 on the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotlineDayCounts {
    pub received: i32,
    /// First responses.
    pub responded: i32,
    pub responded_on_time: i32,
    pub rated: i32,
    pub rated_satisfied: i32,
    /// Reopened tickets, on their first response's day.
    pub reopened: i32,
    pub rejected: i32,
    /// +1 on the day a ticket becomes open-past-due (as of that day's end), −1 on the day
    /// it stops being.
    pub past_due_delta: i32,
    /// Response-time histogram of first responses: `(bin, count)`, sorted by bin, zero
    /// counts removed; bins as [`response_bin`].
    pub response_bins: Vec<(u8, i32)>,
}

impl HotlineDayCounts {
    /// `self += sign × other`.
    pub fn add(&mut self, other: &Self, sign: i32) {
        self.received += sign * other.received;
        self.responded += sign * other.responded;
        self.responded_on_time += sign * other.responded_on_time;
        self.rated += sign * other.rated;
        self.rated_satisfied += sign * other.rated_satisfied;
        self.reopened += sign * other.reopened;
        self.rejected += sign * other.rejected;
        self.past_due_delta += sign * other.past_due_delta;
        for &(bin, count) in &other.response_bins {
            self.add_bin(bin, sign * count);
        }
    }

    /// Adds `count` to `bin`, keeping the bins sorted and free of zeros.
    pub fn add_bin(&mut self, bin: u8, count: i32) {
        if count == 0 {
            return;
        }
        match self.response_bins.binary_search_by_key(&bin, |(b, _)| *b) {
            Ok(i) => {
                self.response_bins[i].1 += count;
                if self.response_bins[i].1 == 0 {
                    self.response_bins.remove(i);
                }
            }
            Err(i) => self.response_bins.insert(i, (bin, count)),
        }
    }

    pub fn is_zero(&self) -> bool {
        self.received == 0
            && self.responded == 0
            && self.responded_on_time == 0
            && self.rated == 0
            && self.rated_satisfied == 0
            && self.reopened == 0
            && self.rejected == 0
            && self.past_due_delta == 0
            && self.response_bins.is_empty()
    }
}

/// A value taken from one event, ordered by the event's `(occurred_at, event_id)` first
/// (then by the value, so that even two events sharing an id are ordered deterministically).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Keyed<T> {
    at: i64,
    event_id: String,
    value: T,
}

/// What the ticket's cell takes from its earliest `received`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct ReceivedAttributes {
    province: String,
    category: Option<String>,
    channel: Option<HotlineChannel>,
}

/// Everything the day counts of one ticket are computed from; the same whatever order
/// its events were folded in (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketState {
    /// The earliest `received`.
    received: Option<Keyed<ReceivedAttributes>>,
    /// The province of the earliest event of any type; kept only while no `received` is known.
    province_fallback: Option<Keyed<String>>,
    /// The latest `forwarded` that carries an agency.
    agency: Option<Keyed<String>>,
    /// The earliest `responded`.
    first_response: Option<i64>,
    /// The latest `rated`.
    rating: Option<Keyed<Option<Rating>>>,
    reopened: bool,
    /// The earliest `rejected`.
    rejected_at: Option<i64>,
    /// The earliest `rejected` or `closed`.
    resolved_at: Option<i64>,
    /// Deadline-carrying events (value = `due_at`), sorted by `at`, one per `at` (the
    /// latest), none after the first response.
    deadlines: Vec<Keyed<i64>>,
    last_event_at: i64,
}

/// Replaces `slot` by `candidate` when empty or when `candidate` is smaller.
fn keep_earliest<T: Ord>(slot: &mut Option<Keyed<T>>, candidate: Keyed<T>) {
    if slot.as_ref().is_none_or(|current| candidate < *current) {
        *slot = Some(candidate);
    }
}

/// Replaces `slot` by `candidate` when empty or when `candidate` is larger.
fn keep_latest<T: Ord>(slot: &mut Option<Keyed<T>>, candidate: Keyed<T>) {
    if slot.as_ref().is_none_or(|current| candidate > *current) {
        *slot = Some(candidate);
    }
}

fn keyed<T>(event: &HotlineEvent, value: T) -> Keyed<T> {
    Keyed {
        at: event.occurred_at,
        event_id: event.event_id.clone(),
        value,
    }
}

fn min_time(slot: &mut Option<i64>, at: i64) {
    *slot = Some(slot.map_or(at, |t| t.min(at)));
}

impl TicketState {
    /// Folds one event of this ticket (idempotent; commutative with every other fold).
    pub fn fold(&mut self, event: &HotlineEvent) {
        let at = event.occurred_at;
        self.last_event_at = self.last_event_at.max(at);
        match event.event_type {
            HotlineEventType::Received => {
                keep_earliest(
                    &mut self.received,
                    keyed(
                        event,
                        ReceivedAttributes {
                            province: event.province_code.clone(),
                            category: event.category.clone(),
                            channel: event.channel,
                        },
                    ),
                );
                self.province_fallback = None;
            }
            HotlineEventType::Forwarded => {
                if let Some(agency) = &event.agency_id {
                    keep_latest(&mut self.agency, keyed(event, agency.clone()));
                }
            }
            HotlineEventType::Responded => {
                min_time(&mut self.first_response, at);
                let first = self.first_response.unwrap_or(at);
                self.deadlines.retain(|d| d.at <= first);
            }
            HotlineEventType::Rated => keep_latest(&mut self.rating, keyed(event, event.rating)),
            HotlineEventType::Reopened => self.reopened = true,
            HotlineEventType::Rejected => {
                min_time(&mut self.rejected_at, at);
                min_time(&mut self.resolved_at, at);
            }
            HotlineEventType::Closed => min_time(&mut self.resolved_at, at),
        }
        if self.received.is_none() {
            keep_earliest(
                &mut self.province_fallback,
                keyed(event, event.province_code.clone()),
            );
        }
        if let Some(due) = event.due_at {
            if self.first_response.is_none_or(|first| at <= first) {
                let candidate = keyed(event, due);
                match self.deadlines.binary_search_by_key(&at, |d| d.at) {
                    Ok(i) if candidate > self.deadlines[i] => self.deadlines[i] = candidate,
                    Ok(_) => {}
                    Err(i) => self.deadlines.insert(i, candidate),
                }
            }
        }
    }

    /// Folds `event` and returns the change of [`Self::contributions`] it caused.
    pub fn fold_diff(&mut self, event: &HotlineEvent) -> Vec<(HotlineCell, i64, HotlineDayCounts)> {
        let before = self.contributions();
        self.fold(event);
        diff(&before, &self.contributions())
    }

    /// The ticket's current cell; `None` before any event.
    pub fn cell(&self) -> Option<HotlineCell> {
        let (province, category, channel) = match (&self.received, &self.province_fallback) {
            (Some(r), _) => (
                r.value.province.clone(),
                r.value.category.clone().unwrap_or_default(),
                r.value
                    .channel
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            (None, Some(p)) => (p.value.clone(), String::new(), String::new()),
            (None, None) => return None,
        };
        Some(HotlineCell {
            province_code: province,
            agency_id: self
                .agency
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_default(),
            category,
            channel,
        })
    }

    /// Everything this ticket adds to the index, sorted by (cell, day); no zero entries.
    /// A pure function of the set of events folded so far.
    pub fn contributions(&self) -> Vec<(HotlineCell, i64, HotlineDayCounts)> {
        let Some(cell) = self.cell() else {
            return Vec::new();
        };
        let mut days: BTreeMap<i64, HotlineDayCounts> = BTreeMap::new();
        let received_at = self.received_at();
        if let Some(received) = received_at {
            days.entry(vietnam_day(received)).or_default().received += 1;
        }
        if let Some(first) = self.first_response {
            let counts = days.entry(vietnam_day(first)).or_default();
            counts.responded += 1;
            if self
                .deadline_in_force(first, true)
                .is_some_and(|due| first <= due)
            {
                counts.responded_on_time += 1;
            }
            if let Some(received) = received_at {
                counts.add_bin(response_bin((first - received) as f64 / 60.0) as u8, 1);
            }
            if self.reopened {
                counts.reopened += 1;
            }
        }
        if let Some(rating) = &self.rating {
            let counts = days.entry(vietnam_day(rating.at)).or_default();
            counts.rated += 1;
            if rating.value == Some(Rating::Satisfied) {
                counts.rated_satisfied += 1;
            }
        }
        if let Some(rejected) = self.rejected_at {
            days.entry(vietnam_day(rejected)).or_default().rejected += 1;
        }
        for (day, delta) in self.past_due_toggles() {
            days.entry(day).or_default().past_due_delta += delta;
        }
        days.into_iter()
            .filter(|(_, counts)| !counts.is_zero())
            .map(|(day, counts)| (cell.clone(), day, counts))
            .collect()
    }

    /// The `due_at` of the latest deadline-carrying event that occurred at or before
    /// (`inclusive`) or strictly before `at`.
    fn deadline_in_force(&self, at: i64, inclusive: bool) -> Option<i64> {
        let count = self
            .deadlines
            .partition_point(|d| if inclusive { d.at <= at } else { d.at < at });
        count.checked_sub(1).map(|i| self.deadlines[i].value)
    }

    /// Whether the ticket is open past its deadline as of the end of Vietnam day `day`
    /// (see the module documentation).
    pub fn open_past_due_at_end_of(&self, day: i64) -> bool {
        let end = day_end(day);
        self.received_at().is_some_and(|r| r < end)
            && self
                .deadline_in_force(end, false)
                .is_some_and(|due| due < end)
            && self.first_response.is_none_or(|first| first >= end)
            && self.resolved_at.is_none_or(|resolved| resolved >= end)
    }

    /// `(day, ±1)` on each day the open-past-due status changes, sorted by day.
    fn past_due_toggles(&self) -> Vec<(i64, i32)> {
        let Some(received) = self.received_at() else {
            return Vec::new();
        };
        let mut days = vec![vietnam_day(received)];
        days.extend(self.first_response.map(vietnam_day));
        days.extend(self.resolved_at.map(vietnam_day));
        for deadline in &self.deadlines {
            days.push(vietnam_day(deadline.at));
            days.push(vietnam_day(deadline.value));
        }
        days.sort_unstable();
        days.dedup();
        // Before the earliest of these days the ticket is not yet received: not past due.
        let mut past_due = false;
        let mut toggles = Vec::new();
        for day in days {
            let now = self.open_past_due_at_end_of(day);
            if now != past_due {
                toggles.push((day, if now { 1 } else { -1 }));
                past_due = now;
            }
        }
        toggles
    }

    /// The earliest `received`, if any.
    pub fn received_at(&self) -> Option<i64> {
        self.received.as_ref().map(|r| r.at)
    }

    /// The first response, if any.
    pub fn first_response(&self) -> Option<i64> {
        self.first_response
    }

    /// The latest event time seen (for retention: tickets resolved long ago are
    /// forgotten); 0 before any event.
    pub fn last_event_at(&self) -> i64 {
        self.last_event_at
    }

    /// The earliest `rejected` or `closed`, if any.
    pub fn resolved_at(&self) -> Option<i64> {
        self.resolved_at
    }
}

/// `after − before`, per (cell, day), zero entries dropped, sorted by (cell, day).
pub fn diff(
    before: &[(HotlineCell, i64, HotlineDayCounts)],
    after: &[(HotlineCell, i64, HotlineDayCounts)],
) -> Vec<(HotlineCell, i64, HotlineDayCounts)> {
    let mut sum: BTreeMap<(&HotlineCell, i64), HotlineDayCounts> = BTreeMap::new();
    for (entries, sign) in [(before, -1), (after, 1)] {
        for (cell, day, counts) in entries {
            sum.entry((cell, *day)).or_default().add(counts, sign);
        }
    }
    sum.into_iter()
        .filter(|(_, counts)| !counts.is_zero())
        .map(|((cell, day), counts)| (cell.clone(), day, counts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CodeSystem;
    use proptest::prelude::*;

    /// 2026-11-21, a Vietnam day.
    const D0: i64 = 20_778;

    #[test]
    fn sums_read_back_saturate_and_drop_empty_bins() {
        assert_eq!(narrow_sum(-3), -3);
        assert_eq!(narrow_sum(i64::MAX), i32::MAX);
        assert_eq!(narrow_sum(i64::MIN), i32::MIN);
        assert_eq!(
            summed_response_bins(&[2, 5, 7, 9], &[4, 0, -1, 1 << 40]),
            [(2, 4), (7, -1), (9, i32::MAX)]
        );
    }

    /// Unix seconds of `hour`:00 Vietnam time on day `D0 + day`.
    fn at(day: i64, hour: i64) -> i64 {
        day_end(D0 + day - 1) + hour * 3600
    }

    fn ev(id: &str, kind: HotlineEventType, at: i64) -> HotlineEvent {
        HotlineEvent {
            event_id: id.into(),
            ticket_id: "t".into(),
            event_type: kind,
            occurred_at: at,
            province_code: "79".into(),
            province_code_original: "79".into(),
            province_code_system: CodeSystem::Y2025,
            channel: None,
            category: None,
            agency_id: None,
            due_at: None,
            rating: None,
            reason: None,
            reporter_phone_hash: None,
            reporter_email_hash: None,
        }
    }

    fn received(id: &str, at: i64, due: Option<i64>) -> HotlineEvent {
        HotlineEvent {
            category: Some("traffic".into()),
            channel: Some(HotlineChannel::Phone),
            due_at: due,
            ..ev(id, HotlineEventType::Received, at)
        }
    }

    fn forwarded(id: &str, at: i64, agency: &str, due: Option<i64>) -> HotlineEvent {
        HotlineEvent {
            agency_id: Some(agency.into()),
            due_at: due,
            ..ev(id, HotlineEventType::Forwarded, at)
        }
    }

    fn rated(id: &str, at: i64, rating: Rating) -> HotlineEvent {
        HotlineEvent {
            rating: Some(rating),
            ..ev(id, HotlineEventType::Rated, at)
        }
    }

    fn responded(id: &str, at: i64) -> HotlineEvent {
        ev(id, HotlineEventType::Responded, at)
    }

    fn fold_all(events: &[HotlineEvent]) -> TicketState {
        let mut ticket = TicketState::default();
        events.iter().for_each(|e| ticket.fold(e));
        ticket
    }

    fn cell(agency: &str) -> HotlineCell {
        HotlineCell {
            province_code: "79".into(),
            agency_id: agency.into(),
            category: "traffic".into(),
            channel: "phone".into(),
        }
    }

    /// The counts of day `D0 + day` (all cells), zero when absent.
    fn on_day(ticket: &TicketState, day: i64) -> HotlineDayCounts {
        let mut total = HotlineDayCounts::default();
        for (_, d, counts) in ticket.contributions() {
            if d == D0 + day {
                total.add(&counts, 1);
            }
        }
        total
    }

    fn bin(minutes: f64) -> u8 {
        response_bin(minutes) as u8
    }

    #[test]
    fn on_time_uses_the_deadline_in_force_at_the_first_response() {
        // Due at day 2 08:00; answered on day 3: late, and a later extension does not help.
        let mut ticket = fold_all(&[
            received("r", at(0, 8), Some(at(2, 8))),
            responded("s", at(3, 8)),
            forwarded("f", at(4, 8), "a", Some(at(10, 8))),
        ]);
        let day3 = on_day(&ticket, 3);
        assert_eq!((day3.responded, day3.responded_on_time), (1, 0));
        // An extension sent before the answer does count: now on time.
        let change = ticket.fold_diff(&forwarded("g", at(2, 7), "a", Some(at(5, 8))));
        assert!(change
            .iter()
            .any(|(_, d, c)| *d == D0 + 3 && c.responded_on_time == 1));
        assert_eq!(on_day(&ticket, 3).responded_on_time, 1);
        // A response exactly at the deadline is on time; no deadline at all is not.
        let exact = fold_all(&[
            received("r", at(0, 8), Some(at(1, 8))),
            responded("s", at(1, 8)),
        ]);
        assert_eq!(on_day(&exact, 1).responded_on_time, 1);
        let none = fold_all(&[received("r", at(0, 8), None), responded("s", at(0, 9))]);
        assert_eq!(
            (
                on_day(&none, 0).responded,
                on_day(&none, 0).responded_on_time
            ),
            (1, 0)
        );
        // A due_at carried by an event at the very instant of the response is in force.
        let same_instant = fold_all(&[
            received("r", at(0, 8), Some(at(0, 9))),
            forwarded("f", at(0, 10), "a", Some(at(3, 0))),
            responded("s", at(0, 10)),
        ]);
        assert_eq!(on_day(&same_instant, 0).responded_on_time, 1);
    }

    #[test]
    fn an_earlier_response_arriving_late_moves_the_count() {
        let mut ticket = fold_all(&[
            received("r", at(0, 22), Some(at(2, 0))),
            responded("late", at(3, 10)),
        ]);
        // Day 3 holds the (late) first response, 60 h after receipt.
        let day3 = on_day(&ticket, 3);
        assert_eq!((day3.responded, day3.responded_on_time), (1, 0));
        assert_eq!(day3.response_bins, vec![(bin(60.0 * 60.0), 1)]);
        // An earlier answer (day 1, 01:00: 3 h after receipt, on time) arrives afterwards.
        let change = ticket.fold_diff(&responded("early", at(1, 1)));
        let expected_new = HotlineDayCounts {
            responded: 1,
            responded_on_time: 1,
            response_bins: vec![(bin(3.0 * 60.0), 1)],
            ..Default::default()
        };
        let expected_old = HotlineDayCounts {
            responded: -1,
            response_bins: vec![(bin(60.0 * 60.0), -1)],
            // Was past due at the end of day 2 (due day 2 00:00), no longer: its +1
            // on day 2 and −1 on day 3 both go.
            past_due_delta: 1,
            ..Default::default()
        };
        let expected_day2 = HotlineDayCounts {
            past_due_delta: -1,
            ..Default::default()
        };
        assert_eq!(
            change,
            vec![
                (cell(""), D0 + 1, expected_new),
                (cell(""), D0 + 2, expected_day2),
                (cell(""), D0 + 3, expected_old),
            ]
        );
        assert!(on_day(&ticket, 3).is_zero());
    }

    #[test]
    fn two_responses_count_once() {
        for events in [
            vec![
                received("r", at(0, 8), None),
                responded("a", at(0, 9)),
                responded("b", at(0, 9)),
            ],
            vec![
                received("r", at(0, 8), None),
                responded("a", at(0, 9)),
                responded("b", at(2, 9)),
            ],
        ] {
            let total: i32 = fold_all(&events)
                .contributions()
                .iter()
                .map(|(_, _, c)| c.responded)
                .sum();
            assert_eq!(total, 1);
            let reversed: Vec<_> = events.iter().rev().cloned().collect();
            assert_eq!(
                fold_all(&events).contributions(),
                fold_all(&reversed).contributions()
            );
        }
        // The same event redelivered changes nothing.
        let mut ticket = fold_all(&[received("r", at(0, 8), None), responded("a", at(0, 9))]);
        assert!(ticket.fold_diff(&responded("a", at(0, 9))).is_empty());
    }

    #[test]
    fn the_reopen_rate_never_exceeds_100_percent() {
        let reopen = |at| ev("o", HotlineEventType::Reopened, at);
        let cases = [
            // reopened before the response (in event time), after it, and without one.
            (
                vec![
                    received("r", at(0, 8), None),
                    reopen(at(0, 9)),
                    responded("s", at(1, 9)),
                ],
                1,
            ),
            (
                vec![
                    received("r", at(0, 8), None),
                    responded("s", at(0, 9)),
                    reopen(at(3, 9)),
                ],
                1,
            ),
            (vec![received("r", at(0, 8), None), reopen(at(0, 9))], 0),
            (
                vec![received("r", at(0, 8), None), responded("s", at(0, 9))],
                0,
            ),
        ];
        for (events, reopened) in cases {
            for order in [events.clone(), events.iter().rev().cloned().collect()] {
                let ticket = fold_all(&order);
                let contributions = ticket.contributions();
                let total: i32 = contributions.iter().map(|(_, _, c)| c.reopened).sum();
                assert_eq!(total, reopened);
                for (_, _, c) in &contributions {
                    assert!(c.reopened <= c.responded, "{c:?}");
                }
            }
        }
        // Reopened twice: still one count, on the response's day.
        let twice = fold_all(&[
            received("r", at(0, 8), None),
            responded("s", at(1, 9)),
            ev("o1", HotlineEventType::Reopened, at(2, 9)),
            ev("o2", HotlineEventType::Reopened, at(4, 9)),
        ]);
        assert_eq!(on_day(&twice, 1).reopened, 1);
        assert_eq!(on_day(&twice, 2).reopened + on_day(&twice, 4).reopened, 0);
    }

    #[test]
    fn the_latest_rating_wins_and_a_re_rating_moves() {
        let mut ticket = fold_all(&[
            received("r", at(0, 8), None),
            responded("s", at(0, 9)),
            rated("late", at(4, 9), Rating::NotSatisfied),
        ]);
        // An earlier rating arriving later does not replace the latest one.
        assert!(ticket
            .fold_diff(&rated("early", at(2, 9), Rating::Satisfied))
            .is_empty());
        assert_eq!(
            (on_day(&ticket, 4).rated, on_day(&ticket, 4).rated_satisfied),
            (1, 0)
        );
        // A re-rating on day 5 moves it.
        let change = ticket.fold_diff(&rated("again", at(5, 9), Rating::Satisfied));
        assert_eq!(
            change,
            vec![
                (
                    cell(""),
                    D0 + 4,
                    HotlineDayCounts {
                        rated: -1,
                        ..Default::default()
                    }
                ),
                (
                    cell(""),
                    D0 + 5,
                    HotlineDayCounts {
                        rated: 1,
                        rated_satisfied: 1,
                        ..Default::default()
                    }
                ),
            ]
        );
        // Equal timestamps: the largest event id is the latest.
        let tie = [
            rated("a", at(1, 9), Rating::Satisfied),
            rated("b", at(1, 9), Rating::NotSatisfied),
        ];
        for order in [tie.to_vec(), tie.iter().rev().cloned().collect()] {
            assert_eq!(on_day(&fold_all(&order), 1).rated_satisfied, 0);
        }
    }

    #[test]
    fn rejected_counts_the_earliest_rejection() {
        let ticket = fold_all(&[
            received("r", at(0, 8), None),
            ev("x2", HotlineEventType::Rejected, at(3, 8)),
            ev("x1", HotlineEventType::Rejected, at(1, 8)),
            ev("c", HotlineEventType::Closed, at(0, 20)),
        ]);
        assert_eq!(on_day(&ticket, 1).rejected, 1);
        assert_eq!(on_day(&ticket, 3).rejected, 0);
        assert_eq!(ticket.resolved_at(), Some(at(0, 20)));
        assert_eq!(ticket.last_event_at(), at(3, 8));
    }

    #[test]
    fn the_cell_comes_from_the_earliest_received() {
        let later = HotlineEvent {
            province_code: "01".into(),
            category: Some("water".into()),
            channel: Some(HotlineChannel::App),
            ..ev("r2", HotlineEventType::Received, at(1, 8))
        };
        // Before any received: the province of the earliest event, no category/channel.
        let mut ticket = TicketState::default();
        ticket.fold(&HotlineEvent {
            province_code: "48".into(),
            ..responded("s", at(2, 8))
        });
        assert_eq!(
            ticket.cell().unwrap(),
            HotlineCell {
                province_code: "48".into(),
                agency_id: String::new(),
                category: String::new(),
                channel: String::new(),
            }
        );
        ticket.fold(&later);
        let water = HotlineCell {
            province_code: "01".into(),
            agency_id: String::new(),
            category: "water".into(),
            channel: "app".into(),
        };
        assert_eq!(ticket.cell().unwrap(), water);
        // The earliest received arrives last: everything moves to its cell.
        let change = ticket.fold_diff(&received("r1", at(0, 8), None));
        assert!(change
            .iter()
            .filter(|(c, _, _)| *c == water)
            .all(|(_, _, counts)| counts.received <= 0 && counts.responded <= 0));
        assert!(change
            .iter()
            .any(|(c, d, counts)| *c == cell("") && *d == D0 && counts.received == 1));
        assert!(ticket
            .contributions()
            .iter()
            .all(|(c, _, _)| *c == cell("")));
        assert_eq!(
            on_day(&ticket, 1).received,
            0,
            "counted once, on the earliest"
        );
        // A received without a category gives category "".
        let bare = fold_all(&[ev("r", HotlineEventType::Received, at(0, 8))]);
        assert_eq!(bare.cell().unwrap().category, "");
        assert_eq!(bare.cell().unwrap().channel, "");
    }

    #[test]
    fn a_forward_moves_every_contribution_to_the_new_agency() {
        let mut ticket = fold_all(&[
            received("r", at(0, 8), Some(at(1, 8))),
            responded("s", at(2, 8)),
            rated("v", at(3, 8), Rating::Satisfied),
        ]);
        let before = ticket.contributions();
        assert!(before.iter().all(|(c, _, _)| c.agency_id.is_empty()));
        let change = ticket.fold_diff(&forwarded("f", at(0, 9), "so-gtvt", None));
        let moved: Vec<_> = before
            .iter()
            .map(|(c, d, counts)| {
                let mut negated = HotlineDayCounts::default();
                negated.add(counts, -1);
                (c.clone(), *d, negated)
            })
            .chain(
                before
                    .iter()
                    .map(|(_, d, counts)| (cell("so-gtvt"), *d, counts.clone())),
            )
            .collect();
        assert_eq!(change, diff(&[], &moved));
        // A later forward wins; an earlier one arriving afterwards does not.
        ticket.fold(&forwarded("g", at(1, 9), "ubnd-q1", None));
        assert!(ticket
            .fold_diff(&forwarded("e", at(0, 10), "other", None))
            .is_empty());
        assert!(ticket
            .contributions()
            .iter()
            .all(|(c, _, _)| *c == cell("ubnd-q1")));
        // A forward without an agency changes nothing.
        assert!(ticket
            .fold_diff(&ev("h", HotlineEventType::Forwarded, at(5, 9)))
            .is_empty());
    }

    /// `Σ_{d ≤ day} past_due_delta` against the definition, for every day of a range.
    fn check_past_due_against_brute_force(ticket: &TicketState, days: std::ops::Range<i64>) {
        let contributions = ticket.contributions();
        let mut open = 0;
        for day in days.clone() {
            open += contributions
                .iter()
                .filter(|(_, d, _)| *d == day)
                .map(|(_, _, c)| c.past_due_delta)
                .sum::<i32>();
            let expected = i32::from(ticket.open_past_due_at_end_of(day));
            assert_eq!(open, expected, "day {} of {ticket:?}", day - D0);
        }
        assert!(
            contributions
                .iter()
                .all(|(_, d, c)| c.past_due_delta == 0 || days.contains(d)),
            "toggles outside the checked range"
        );
    }

    #[test]
    fn past_due_toggles_match_brute_force_with_an_extension() {
        // Received day 0, due day 2 12:00; extended on day 3 to day 6 12:00; answered day 8.
        let events = [
            received("r", at(0, 8), Some(at(2, 12))),
            forwarded("f", at(3, 9), "a", Some(at(6, 12))),
            responded("s", at(8, 9)),
        ];
        let ticket = fold_all(&events);
        let toggles: Vec<_> = ticket
            .contributions()
            .into_iter()
            .filter(|(_, _, c)| c.past_due_delta != 0)
            .map(|(_, d, c)| (d - D0, c.past_due_delta))
            .collect();
        assert_eq!(toggles, vec![(2, 1), (3, -1), (6, 1), (8, -1)]);
        check_past_due_against_brute_force(&ticket, D0 - 10..D0 + 40);
        // The same, partially folded, and closed instead of answered.
        for n in 0..=events.len() {
            check_past_due_against_brute_force(&fold_all(&events[..n]), D0 - 10..D0 + 40);
        }
        let closed = fold_all(&[
            received("r", at(0, 8), Some(at(2, 12))),
            ev("c", HotlineEventType::Closed, at(4, 0)),
        ]);
        check_past_due_against_brute_force(&closed, D0 - 10..D0 + 40);
        assert_eq!(on_day(&closed, 4).past_due_delta, -1);
        // A deadline sent before receipt, and one already past when it is set.
        let odd = fold_all(&[
            forwarded("f", at(-2, 8), "a", Some(at(-1, 8))),
            received("r", at(0, 8), None),
            forwarded("g", at(5, 8), "a", Some(at(4, 8))),
        ]);
        check_past_due_against_brute_force(&odd, D0 - 10..D0 + 40);
        assert_eq!(on_day(&odd, 0).past_due_delta, 1);
        assert_eq!(on_day(&odd, 5).past_due_delta, 0, "still past due");
    }

    #[test]
    fn diff_drops_zeros_and_sorts() {
        let one = |received| HotlineDayCounts {
            received,
            ..Default::default()
        };
        let before = vec![(cell("b"), D0, one(1)), (cell("a"), D0 + 1, one(1))];
        let after = vec![(cell("b"), D0, one(1)), (cell("a"), D0, one(2))];
        assert_eq!(
            diff(&before, &after),
            vec![(cell("a"), D0, one(2)), (cell("a"), D0 + 1, one(-1))]
        );
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn the_state_survives_a_checkpoint() {
        let ticket = fold_all(&[
            received("r", at(0, 8), Some(at(2, 8))),
            forwarded("f", at(1, 8), "a", Some(at(3, 8))),
            rated("v", at(3, 8), Rating::Satisfied),
        ]);
        let bytes = bincode::serialize(&ticket).unwrap();
        let restored: TicketState = bincode::deserialize(&bytes).unwrap();
        assert_eq!(restored, ticket);
        assert_eq!(restored.contributions(), ticket.contributions());
    }

    const KINDS: [HotlineEventType; 7] = [
        HotlineEventType::Received,
        HotlineEventType::Forwarded,
        HotlineEventType::Responded,
        HotlineEventType::Rated,
        HotlineEventType::Reopened,
        HotlineEventType::Rejected,
        HotlineEventType::Closed,
    ];

    /// One random event: few ids, days, hours and values, so that ties, shared ids,
    /// duplicate types and identical redeliveries are common.
    fn arb_event() -> impl Strategy<Value = HotlineEvent> {
        (
            (
                0..KINDS.len(),
                0..6u8,
                0i64..5,
                prop::sample::select(vec![0i64, 1, 12, 23]),
            ),
            (
                prop::option::of((0i64..9, prop::sample::select(vec![0i64, 12, 23]))),
                prop::option::of(prop::sample::select(vec!["traffic", "water"])),
                prop::option::of(prop::sample::select(vec![
                    HotlineChannel::Phone,
                    HotlineChannel::Zalo,
                ])),
                prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
                prop::option::of(any::<bool>()),
                prop::sample::select(vec!["79", "01"]),
            ),
        )
            .prop_map(
                |((kind, id, day, hour), (due, category, channel, agency, satisfied, province))| {
                    HotlineEvent {
                        province_code: province.into(),
                        category: category.map(Into::into),
                        channel,
                        agency_id: agency.map(Into::into),
                        due_at: due.map(|(d, h)| at(d, h)),
                        rating: satisfied.map(|s| {
                            if s {
                                Rating::Satisfied
                            } else {
                                Rating::NotSatisfied
                            }
                        }),
                        ..ev(&format!("e{id}"), KINDS[kind], at(day, hour))
                    }
                },
            )
    }

    /// A lifecycle (possibly with redeliveries) and a permutation of it.
    fn arb_lifecycle() -> impl Strategy<Value = (Vec<HotlineEvent>, Vec<HotlineEvent>)> {
        (
            prop::collection::vec(arb_event(), 1..14),
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        )
            .prop_flat_map(|(mut events, redeliveries)| {
                for index in redeliveries {
                    let again = events[index.index(events.len())].clone();
                    events.push(again);
                }
                (Just(events.clone()), Just(events).prop_shuffle())
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn the_fold_is_independent_of_arrival_order((events, shuffled) in arb_lifecycle()) {
            let ticket = fold_all(&events);
            let mut other = TicketState::default();
            // The diffs written along the way add up to the final contributions.
            let mut written: Vec<(HotlineCell, i64, HotlineDayCounts)> = Vec::new();
            for event in &shuffled {
                let change = other.fold_diff(event);
                written = diff(&[], &[written, change].concat());
            }
            prop_assert_eq!(&other, &ticket);
            let contributions = ticket.contributions();
            prop_assert_eq!(&other.contributions(), &contributions);
            prop_assert_eq!(&written, &contributions);

            // Invariants of the day counts.
            let cells: std::collections::BTreeSet<_> =
                contributions.iter().map(|(c, _, _)| c.clone()).collect();
            prop_assert!(cells.len() <= 1);
            let mut open = 0;
            for (_, _, c) in &contributions {
                prop_assert!(!c.is_zero());
                prop_assert!((0..=1).contains(&c.responded));
                prop_assert!((0..=c.responded).contains(&c.reopened));
                prop_assert!((0..=c.responded).contains(&c.responded_on_time));
                prop_assert!((0..=c.rated).contains(&c.rated_satisfied));
                prop_assert!(c.response_bins.iter().all(|(_, n)| *n == 1));
                open += c.past_due_delta;
                prop_assert!((0..=1).contains(&open));
            }
            check_past_due_against_brute_force(&ticket, D0 - 10..D0 + 40);
        }
    }
}
