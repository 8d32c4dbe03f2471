//! The state of one input partition: a fold over its events, in log order. Deterministic:
//! the same partition log gives the same state and the same output rows, however the
//! processing is cut by restarts (the state is checkpointed with the offset it belongs to).
//!
//! Days close on event time only: the watermark is the newest event time seen minus the
//! allowed lateness; a day is closed once the watermark passes its end. Closing a day
//! emits the final daily rows of every unit that had data in a window ending on that day.
//! Events for a closed day ("beyond lateness") still update the unit's counts, so they
//! are in the latest rolling values, but rows already emitted are never rewritten.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::domain::framework::{Framework, FrameworkCatalog};
use crate::domain::time::vietnam_day;
use crate::domain::{HotlineEvent, SurveySubmission};
use crate::index::hotline::{day_end, kpi, HotlineCounts, HotlineKpi, PendingHotline, Ticket};
use crate::index::survey::{compute, SurveyCounts, SurveyIndex};
use crate::index::window::{Window, MAX_WINDOW_DAYS, WINDOWS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum UnitType {
    Province,
    Agency,
    /// A hotline category within a province (`unit_id` = `province/category`).
    Category,
}

impl UnitType {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitType::Province => "province",
            UnitType::Agency => "agency",
            UnitType::Category => "category",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnitKey {
    pub unit_type: UnitType,
    pub unit_id: String,
    pub province_code: String,
}

/// Counts that add up across days.
pub trait Counts: Clone + Default {
    fn add(&mut self, other: &Self, sign: i64);
    fn is_empty(&self) -> bool;
}

impl Counts for SurveyCounts {
    fn add(&mut self, other: &Self, sign: i64) {
        self.add_scaled(other, sign);
    }

    fn is_empty(&self) -> bool {
        self.respondents == 0
    }
}

impl Counts for HotlineCounts {
    fn add(&mut self, other: &Self, sign: i64) {
        self.merge(other, sign);
    }

    fn is_empty(&self) -> bool {
        HotlineCounts::is_empty(self)
    }
}

/// Day -> counts, as a vector sorted by day: a unit's days arrive almost in order, and a
/// vector costs a third of a B-tree's memory per entry (most series hold few days).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DayMap<C>(Vec<(i32, C)>);

impl<C> Default for DayMap<C> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<C: Default> DayMap<C> {
    fn position(&self, day: i64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&day, |(d, _)| i64::from(*d))
    }

    fn get(&self, day: i64) -> Option<&C> {
        self.position(day).ok().map(|i| &self.0[i].1)
    }

    fn get_or_default(&mut self, day: i64) -> &mut C {
        let i = match self.position(day) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (day as i32, C::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    /// Counts of the days in `[from, to]`, in day order.
    fn range(&self, from: i64, to: i64) -> impl Iterator<Item = &C> {
        let start = self.0.partition_point(|(d, _)| i64::from(*d) < from);
        self.0[start..]
            .iter()
            .take_while(move |(d, _)| i64::from(*d) <= to)
            .map(|(_, c)| c)
    }

    fn drop_before(&mut self, day: i64) {
        let end = self.0.partition_point(|(d, _)| i64::from(*d) < day);
        if end > 0 {
            self.0.drain(..end);
            if self.0.capacity() > 2 * self.0.len() + 4 {
                self.0.shrink_to_fit();
            }
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One unit's daily counts and its running window sums as of the last closed day.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Series<C> {
    buckets: DayMap<C>,
    /// Indexed like `WINDOWS`.
    running: Vec<C>,
}

impl<C: Counts> Series<C> {
    fn running(&mut self) -> &mut Vec<C> {
        if self.running.len() != WINDOWS.len() {
            self.running = vec![C::default(); WINDOWS.len()];
        }
        &mut self.running
    }

    /// Adds counts to `day`. A day already closed also updates the running sums it is in.
    fn add(&mut self, day: i64, counts: &C, last_closed: i64) {
        self.buckets.get_or_default(day).add(counts, 1);
        if day <= last_closed {
            for (w, window) in WINDOWS.iter().enumerate() {
                if window.start(last_closed) <= day {
                    self.running()[w].add(counts, 1);
                }
            }
        }
    }

    /// Moves the running sums from `day - 1` to `day`.
    fn close(&mut self, day: i64) {
        self.running();
        // Buckets are read in place (not cloned) while the running sums change.
        let Series { buckets, running } = self;
        let bucket = buckets.get(day);
        let previous = day - 1;
        for (w, window) in WINDOWS.iter().enumerate() {
            match window {
                Window::Rolling(n) => {
                    if let Some(expired) = buckets.get(day - i64::from(*n)) {
                        running[w].add(expired, -1);
                    }
                }
                _ if window.start(day) != window.start(previous) => running[w] = C::default(),
                _ => {}
            }
            if let Some(bucket) = bucket {
                running[w].add(bucket, 1);
            }
        }
        self.buckets.drop_before(day - MAX_WINDOW_DAYS + 1);
    }

    /// Window sums ending on `as_of` ≥ `last_closed`, from the running sums and open days.
    fn sums_at(&self, as_of: i64, last_closed: i64, extra: Option<&BTreeMap<i64, C>>) -> Vec<C> {
        let bucket_sum = |from: i64, to: i64| {
            let mut sum = C::default();
            for c in self.buckets.range(from, to) {
                sum.add(c, 1);
            }
            if let Some(extra) = extra {
                for (_, c) in extra.range(from..=to) {
                    sum.add(c, 1);
                }
            }
            sum
        };
        WINDOWS
            .iter()
            .enumerate()
            .map(|(w, window)| {
                let running = self.running.get(w).cloned().unwrap_or_default();
                let start = window.start(as_of);
                match window {
                    Window::Rolling(n) => {
                        let mut sum = running;
                        sum.add(&bucket_sum(last_closed + 1, as_of), 1);
                        sum.add(&bucket_sum(last_closed - i64::from(*n) + 1, start - 1), -1);
                        sum
                    }
                    _ if start == window.start(last_closed) && as_of > last_closed => {
                        let mut sum = running;
                        sum.add(&bucket_sum(last_closed + 1, as_of), 1);
                        sum
                    }
                    _ if as_of == last_closed => running,
                    _ => bucket_sum(start, as_of),
                }
            })
            .collect()
    }

    fn is_idle(&self) -> bool {
        self.buckets.is_empty() && self.running.iter().all(Counts::is_empty)
    }
}

/// A window value of one unit, ready to become a row.
#[derive(Debug, Clone, PartialEq)]
pub struct SatisfactionValue {
    pub framework: String,
    pub unit: UnitKey,
    pub window: Window,
    pub as_of: i64,
    pub counts: SurveyCounts,
    pub index: SurveyIndex,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HotlineValue {
    pub unit: UnitKey,
    pub window: Window,
    pub as_of: i64,
    pub kpi: HotlineKpi,
    pub version: u64,
}

/// Rows produced by applying events.
#[derive(Debug, Default)]
pub struct Emitted {
    pub satisfaction_daily: Vec<SatisfactionValue>,
    pub hotline_daily: Vec<HotlineValue>,
    /// Events whose day was already closed when they arrived.
    pub beyond_lateness: u64,
    /// Events whose id was already folded in (skipped).
    pub duplicates: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionState {
    /// The next offset to apply; every offset below it is folded in.
    pub next_offset: i64,
    newest_event_time: Option<i64>,
    last_closed: Option<i64>,
    surveys: BTreeMap<(String, UnitKey), Series<SurveyCounts>>,
    hotline: BTreeMap<UnitKey, Series<HotlineCounts>>,
    tickets: HashMap<String, Ticket>,
    /// Hotline events waiting for their day to close, by day.
    pending: BTreeMap<i64, Vec<PendingHotline>>,
    /// Units changed since the last `latest` computation.
    dirty_surveys: BTreeSet<(String, UnitKey)>,
    dirty_hotline: BTreeSet<UnitKey>,
    /// (as_of, last closed day) of the last latest values written; when either moves,
    /// every unit's windows (or its open-past-due count) move with it.
    latest_written_at: Option<(i64, i64)>,
    /// Ids already folded in, as 64-bit hashes, so a resent submission or hotline event
    /// counts once (the first copy in log order wins). Kept per event day for as long as
    /// that day can be in a window.
    seen_ids: HashSet<u64>,
    seen_ids_by_day: BTreeMap<i64, Vec<u64>>,
}

/// FNV-1a, 64 bit: stable across processes and versions (unlike std's hasher), so the
/// hashes stored in checkpoints keep meaning the same ids.
fn id_hash(kind: u8, id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(kind).chain(id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Tickets resolved this long before the watermark are forgotten.
const TICKET_RETENTION_SECONDS: i64 = 60 * 86_400;

/// Sizes of a partition state, for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateStats {
    pub series: usize,
    pub buckets: usize,
    pub tickets: usize,
}

impl PartitionState {
    pub fn new(next_offset: i64) -> Self {
        Self {
            next_offset,
            ..Default::default()
        }
    }

    pub fn stats(&self) -> StateStats {
        StateStats {
            series: self.surveys.len() + self.hotline.len(),
            buckets: self
                .surveys
                .values()
                .map(|s| s.buckets.len())
                .sum::<usize>()
                + self
                    .hotline
                    .values()
                    .map(|s| s.buckets.len())
                    .sum::<usize>(),
            tickets: self.tickets.len(),
        }
    }

    /// The day the latest values are computed for: the newest event's day.
    pub fn latest_day(&self) -> Option<i64> {
        self.newest_event_time.map(vietnam_day)
    }

    fn last_closed_or_init(&mut self, day: i64, lateness_seconds: i64) -> i64 {
        // Before anything closed, pretend the days before the first event minus the
        // lateness are closed (they are empty), so out-of-order days still get rows.
        *self
            .last_closed
            .get_or_insert(day - lateness_seconds.div_euclid(86_400) - 2)
    }

    /// False when this id was folded in before (the message is then only skipped).
    fn first_sighting(&mut self, kind: u8, id: &str, day: i64) -> bool {
        let hash = id_hash(kind, id);
        if !self.seen_ids.insert(hash) {
            return false;
        }
        self.seen_ids_by_day.entry(day).or_default().push(hash);
        true
    }

    pub fn apply_survey(
        &mut self,
        survey: &SurveySubmission,
        offset: i64,
        frameworks: &FrameworkCatalog,
        lateness_seconds: i64,
    ) -> Emitted {
        let mut emitted = Emitted::default();
        let day = vietnam_day(survey.submitted_at);
        if !self.first_sighting(b's', &survey.submission_id, day) {
            emitted.duplicates += 1;
            self.skip(offset);
            return emitted;
        }
        let last_closed = self.last_closed_or_init(day, lateness_seconds);
        if let Some(framework) = frameworks.get(&survey.framework) {
            let mut one = SurveyCounts::new(framework);
            one.add(survey, framework);
            for unit in [
                UnitKey {
                    unit_type: UnitType::Province,
                    unit_id: survey.province_code.clone(),
                    province_code: survey.province_code.clone(),
                },
                UnitKey {
                    unit_type: UnitType::Agency,
                    unit_id: survey.agency_id.clone(),
                    province_code: survey.province_code.clone(),
                },
            ] {
                let key = (survey.framework.clone(), unit);
                // The key is copied only for a unit's first series, not for every survey.
                match self.surveys.get_mut(&key) {
                    Some(series) => series.add(day, &one, last_closed),
                    None => {
                        self.surveys
                            .entry(key.clone())
                            .or_default()
                            .add(day, &one, last_closed)
                    }
                }
                self.dirty_surveys.insert(key);
            }
        }
        if day <= last_closed {
            emitted.beyond_lateness += 1;
        }
        self.advance(
            survey.submitted_at,
            offset,
            frameworks,
            lateness_seconds,
            &mut emitted,
        );
        emitted
    }

    pub fn apply_hotline(
        &mut self,
        event: &HotlineEvent,
        offset: i64,
        frameworks: &FrameworkCatalog,
        lateness_seconds: i64,
    ) -> Emitted {
        let mut emitted = Emitted::default();
        let day = vietnam_day(event.occurred_at);
        if !self.first_sighting(b'h', &event.event_id, day) {
            emitted.duplicates += 1;
            self.skip(offset);
            return emitted;
        }
        let last_closed = self.last_closed_or_init(day, lateness_seconds);
        let ticket = self.tickets.entry(event.ticket_id.clone()).or_default();
        let duplicate_response = event.event_type == crate::domain::HotlineEventType::Responded
            && ticket.first_response == Some(event.occurred_at);
        ticket.fold(event);
        let pending = PendingHotline {
            ticket_id: event.ticket_id.clone(),
            event_type: event.event_type,
            occurred_at: event.occurred_at,
            rating: event.rating,
            first_of_its_kind: !duplicate_response,
        };
        for unit in ticket_units(ticket) {
            self.dirty_hotline.insert(unit);
        }
        if day <= last_closed {
            // Beyond lateness: attribute now, with what the ticket knows now.
            emitted.beyond_lateness += 1;
            let ticket = &self.tickets[&event.ticket_id];
            let contribution = ticket.contribution(&pending);
            for unit in ticket_units(ticket) {
                self.hotline
                    .entry(unit)
                    .or_default()
                    .add(day, &contribution, last_closed);
            }
        } else {
            self.pending.entry(day).or_default().push(pending);
        }
        self.advance(
            event.occurred_at,
            offset,
            frameworks,
            lateness_seconds,
            &mut emitted,
        );
        emitted
    }

    /// Records that `offset` was consumed without an event for the index (e.g. invalid).
    pub fn skip(&mut self, offset: i64) {
        self.next_offset = self.next_offset.max(offset + 1);
    }

    fn advance(
        &mut self,
        event_time: i64,
        offset: i64,
        frameworks: &FrameworkCatalog,
        lateness_seconds: i64,
        emitted: &mut Emitted,
    ) {
        self.next_offset = self.next_offset.max(offset + 1);
        self.newest_event_time = Some(
            self.newest_event_time
                .map_or(event_time, |t| t.max(event_time)),
        );
        let watermark = self.newest_event_time.expect("just set") - lateness_seconds;
        // Day d is closed once the watermark reaches its end.
        while let Some(last) = self.last_closed {
            let next = last + 1;
            if day_end(next) > watermark {
                break;
            }
            self.close_day(next, frameworks, emitted);
        }
    }

    fn close_day(&mut self, day: i64, frameworks: &FrameworkCatalog, emitted: &mut Emitted) {
        let version = self.next_offset as u64;
        // Hotline events of the day are attributed now that the day is complete.
        for event in self.pending.remove(&day).unwrap_or_default() {
            let Some(ticket) = self.tickets.get(&event.ticket_id) else {
                continue;
            };
            let contribution = ticket.contribution(&event);
            for unit in ticket_units(ticket) {
                self.hotline
                    .entry(unit)
                    .or_default()
                    .add(day, &contribution, day - 1);
            }
        }
        for ((framework_id, unit), series) in self.surveys.iter_mut() {
            series.close(day);
            let Some(framework) = frameworks.get(framework_id) else {
                continue;
            };
            for (w, window) in WINDOWS.iter().enumerate() {
                let counts = &series.running()[w];
                if !counts.is_empty() {
                    emitted.satisfaction_daily.push(satisfaction_value(
                        framework, unit, *window, day, counts, version,
                    ));
                }
            }
        }
        let past_due = self.open_past_due(day_end(day));
        for (unit, series) in self.hotline.iter_mut() {
            series.close(day);
            let open = past_due.get(unit).copied().unwrap_or(0);
            for (w, window) in WINDOWS.iter().enumerate() {
                let counts = &series.running()[w];
                if !counts.is_empty() || open > 0 {
                    emitted.hotline_daily.push(HotlineValue {
                        unit: unit.clone(),
                        window: *window,
                        as_of: day,
                        kpi: kpi(counts, open),
                        version,
                    });
                }
            }
        }
        // Units that fall idle get one last (empty) latest value, so that the latest
        // tables end up the same whenever they were flushed.
        let idle_surveys: Vec<_> = self
            .surveys
            .iter()
            .filter(|(_, s)| s.is_idle())
            .map(|(k, _)| k.clone())
            .collect();
        let idle_hotline: Vec<_> = self
            .hotline
            .iter()
            .filter(|(_, s)| s.is_idle())
            .map(|(k, _)| k.clone())
            .collect();
        self.dirty_surveys.extend(idle_surveys);
        self.dirty_hotline.extend(idle_hotline);
        self.surveys.retain(|_, s| !s.is_idle());
        self.hotline.retain(|_, s| !s.is_idle());
        let forget_before = day_end(day) - TICKET_RETENTION_SECONDS;
        let pending_tickets: BTreeSet<&String> = self
            .pending
            .values()
            .flatten()
            .map(|p| &p.ticket_id)
            .collect();
        let forget: Vec<String> = self
            .tickets
            .iter()
            .filter(|(id, t)| {
                t.resolved_at.is_some()
                    && t.last_event_at < forget_before
                    && !pending_tickets.contains(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in forget {
            self.tickets.remove(&id);
        }
        // Ids of days no window can reach any more; a copy arriving later would only touch
        // a day outside every window.
        let keep_from = day - MAX_WINDOW_DAYS - TICKET_RETENTION_SECONDS / 86_400;
        while let Some(entry) = self.seen_ids_by_day.first_entry() {
            if *entry.key() >= keep_from {
                break;
            }
            for hash in entry.remove() {
                self.seen_ids.remove(&hash);
            }
        }
        self.last_closed = Some(day);
    }

    fn open_past_due(&self, at: i64) -> HashMap<UnitKey, u32> {
        let mut counts = HashMap::new();
        for ticket in self.tickets.values().filter(|t| t.open_past_due(at)) {
            for unit in ticket_units(ticket) {
                *counts.entry(unit).or_default() += 1;
            }
        }
        counts
    }

    /// Latest values (window ending on the newest event's day, open days included) of
    /// every unit changed since the last call.
    pub fn take_latest(
        &mut self,
        frameworks: &FrameworkCatalog,
    ) -> (Vec<SatisfactionValue>, Vec<HotlineValue>) {
        let (Some(as_of), Some(last_closed)) = (self.latest_day(), self.last_closed) else {
            return (Vec::new(), Vec::new());
        };
        let as_of = as_of.max(last_closed);
        let moved = self.latest_written_at != Some((as_of, last_closed));
        if moved {
            self.dirty_surveys.extend(self.surveys.keys().cloned());
            self.dirty_hotline.extend(self.hotline.keys().cloned());
            self.latest_written_at = Some((as_of, last_closed));
        }
        let version = self.next_offset as u64;
        let mut satisfaction = Vec::new();
        // Every window of a changed unit is written, empty ones too: an emptied window must
        // replace the value written while it had data.
        let empty_survey_series = Series::default();
        for key in std::mem::take(&mut self.dirty_surveys) {
            let Some(framework) = frameworks.get(&key.0) else {
                continue;
            };
            let series = self.surveys.get(&key).unwrap_or(&empty_survey_series);
            for (window, counts) in WINDOWS.iter().zip(series.sums_at(as_of, last_closed, None)) {
                satisfaction.push(satisfaction_value(
                    framework, &key.1, *window, as_of, &counts, version,
                ));
            }
        }
        // Open days' hotline events, attributed provisionally with what tickets know now.
        let mut provisional: HashMap<UnitKey, BTreeMap<i64, HotlineCounts>> = HashMap::new();
        for (day, events) in self.pending.range(last_closed + 1..) {
            for event in events {
                let Some(ticket) = self.tickets.get(&event.ticket_id) else {
                    continue;
                };
                let contribution = ticket.contribution(event);
                for unit in ticket_units(ticket) {
                    provisional
                        .entry(unit)
                        .or_default()
                        .entry(*day)
                        .or_default()
                        .add(&contribution, 1);
                }
            }
        }
        if moved {
            // Units known only from open days' events have no series yet; they move too.
            self.dirty_hotline.extend(provisional.keys().cloned());
        }
        // Open tickets past due as of the end of the last closed day (the watermark, to
        // the day), so the count is the same whenever it is written.
        let past_due = self.open_past_due(day_end(last_closed));
        let mut hotline = Vec::new();
        for unit in std::mem::take(&mut self.dirty_hotline) {
            let empty = Series::default();
            let series = self.hotline.get(&unit).unwrap_or(&empty);
            let open = past_due.get(&unit).copied().unwrap_or(0);
            for (window, counts) in
                WINDOWS
                    .iter()
                    .zip(series.sums_at(as_of, last_closed, provisional.get(&unit)))
            {
                hotline.push(HotlineValue {
                    unit: unit.clone(),
                    window: *window,
                    as_of,
                    kpi: kpi(&counts, open),
                    version,
                });
            }
        }
        (satisfaction, hotline)
    }
}

fn ticket_units(ticket: &Ticket) -> Vec<UnitKey> {
    let province = ticket.province.clone();
    let mut units = vec![UnitKey {
        unit_type: UnitType::Province,
        unit_id: province.clone(),
        province_code: province.clone(),
    }];
    if let Some((_, agency)) = &ticket.agency {
        units.push(UnitKey {
            unit_type: UnitType::Agency,
            unit_id: agency.clone(),
            province_code: province.clone(),
        });
    }
    if let Some(category) = &ticket.category {
        units.push(UnitKey {
            unit_type: UnitType::Category,
            unit_id: format!("{province}/{category}"),
            province_code: province,
        });
    }
    units
}

fn satisfaction_value(
    framework: &Framework,
    unit: &UnitKey,
    window: Window,
    as_of: i64,
    counts: &SurveyCounts,
    version: u64,
) -> SatisfactionValue {
    // Empty sums have no per-criterion slots yet; give them the framework's shape.
    let columns = framework.columns();
    let sized = if counts.criteria() == columns.criterion_ids.len()
        && counts.expectation_items() == columns.expectation_ids.len()
    {
        counts.clone()
    } else {
        let mut sized = SurveyCounts::new(framework);
        Counts::add(&mut sized, counts, 1);
        sized
    };
    SatisfactionValue {
        framework: framework.id.clone(),
        unit: unit.clone(),
        window,
        as_of,
        index: compute(&sized, framework),
        counts: sized,
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_rfc3339;
    use crate::domain::{AgencyLevel, Channel, CodeSystem, RespondentType};
    use std::path::Path;

    const LATENESS: i64 = 2 * 86_400;

    fn frameworks() -> FrameworkCatalog {
        FrameworkCatalog::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/frameworks"))
            .unwrap()
    }

    /// A submission whose every criterion has `score` (None = all unanswered).
    fn survey(id: &str, at: &str, province: &str, score: Option<u8>) -> SurveySubmission {
        let framework = frameworks().get("BNV-2640-2017").unwrap().clone();
        SurveySubmission {
            submission_id: id.into(),
            framework: framework.id.clone(),
            submitted_at: parse_rfc3339(at).unwrap(),
            province_code: province.into(),
            province_code_original: province.into(),
            province_code_system: CodeSystem::Y2025,
            agency_id: format!("{province}-a"),
            agency_level: AgencyLevel::Commune,
            procedure_code: None,
            channel: Channel::OneStop,
            respondent_type: RespondentType::Citizen,
            answers: framework
                .criterion_ids()
                .map(|c| (c.to_owned(), score))
                .collect(),
            expectations: vec!["expect.shorter_time".into()],
        }
    }

    fn day(date: &str) -> i64 {
        vietnam_day(parse_rfc3339(&format!("{date}T12:00:00+07:00")).unwrap())
    }

    fn find<'a>(
        rows: &'a [SatisfactionValue],
        unit: &str,
        window: Window,
        as_of: &str,
    ) -> Option<&'a SatisfactionValue> {
        rows.iter().find(|r| {
            r.unit.unit_type == UnitType::Province
                && r.unit.unit_id == unit
                && r.window == window
                && r.as_of == day(as_of)
        })
    }

    #[test]
    fn days_close_on_the_watermark_and_windows_sum_their_days() {
        let f = frameworks();
        let mut state = PartitionState::new(0);
        let mut rows = Vec::new();
        let events = [
            survey("a", "2026-10-31T10:00:00+07:00", "01", Some(5)),
            survey("b", "2026-11-01T00:30:00+07:00", "01", Some(2)),
            survey("c", "2026-11-01T23:59:59+07:00", "01", Some(4)),
            // Out of order, within lateness: still lands on 2026-10-31.
            survey("d", "2026-10-31T23:00:00+07:00", "01", Some(1)),
        ];
        for (offset, e) in events.iter().enumerate() {
            rows.extend(
                state
                    .apply_survey(e, offset as i64, &f, LATENESS)
                    .satisfaction_daily,
            );
        }
        assert!(
            find(&rows, "01", Window::Rolling(30), "2026-10-31").is_none(),
            "not closed yet: watermark is 2026-10-30 ~00:00"
        );
        // An event on 2026-11-03 00:00:01 moves the watermark past the end of 2026-10-31.
        rows.extend(
            state
                .apply_survey(
                    &survey("e", "2026-11-03T00:00:01+07:00", "79", Some(5)),
                    4,
                    &f,
                    LATENESS,
                )
                .satisfaction_daily,
        );
        let oct31 =
            find(&rows, "01", Window::Rolling(30), "2026-10-31").expect("2026-10-31 closed");
        assert_eq!(oct31.index.respondents, 2);
        assert_eq!(oct31.index.sipas, Some(50.0), "one all-5, one all-1");
        assert!(
            find(&rows, "01", Window::Rolling(30), "2026-11-01").is_none(),
            "2026-11-01 still open"
        );
        rows.extend(
            state
                .apply_survey(
                    &survey("f", "2026-11-04T00:00:00+07:00", "79", Some(5)),
                    5,
                    &f,
                    LATENESS,
                )
                .satisfaction_daily,
        );
        let nov1 = find(&rows, "01", Window::Rolling(30), "2026-11-01").expect("2026-11-01 closed");
        assert_eq!(nov1.index.respondents, 4);
        assert_eq!(nov1.index.sipas, Some(50.0), "5,2,4,1 -> satisfied 2 of 4");
        let month = find(&rows, "01", Window::Month, "2026-11-01").unwrap();
        assert_eq!(
            month.index.respondents, 2,
            "the month window restarts on 11-01"
        );
        assert_eq!(month.index.sipas, Some(50.0));
        assert_eq!(
            month.index.expectation_share,
            vec![0.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert!(!month.index.ranked);
        let agency = rows.iter().find(|r| {
            r.unit.unit_type == UnitType::Agency
                && r.unit.unit_id == "01-a"
                && r.window == Window::Rolling(30)
                && r.as_of == day("2026-11-01")
        });
        assert_eq!(agency.unwrap().index.respondents, 4);
        // 30 days later the early days leave the 30-day window, but not the 90-day one.
        rows.clear();
        rows.extend(
            state
                .apply_survey(
                    &survey("g", "2026-12-04T00:00:00+07:00", "79", Some(5)),
                    6,
                    &f,
                    LATENESS,
                )
                .satisfaction_daily,
        );
        assert_eq!(
            find(&rows, "01", Window::Rolling(30), "2026-11-29")
                .unwrap()
                .index
                .respondents,
            4,
            "[10-31, 11-29] still has 10-31"
        );
        assert_eq!(
            find(&rows, "01", Window::Rolling(30), "2026-11-30")
                .unwrap()
                .index
                .respondents,
            2,
            "[11-01, 11-30] lost 10-31"
        );
        assert!(
            find(&rows, "01", Window::Rolling(30), "2026-12-01").is_none(),
            "no data left in the 30-day window"
        );
        assert_eq!(
            find(&rows, "01", Window::Rolling(90), "2026-12-01")
                .unwrap()
                .index
                .respondents,
            4
        );
        assert!(find(&rows, "01", Window::Month, "2026-12-01").is_none());
        assert_eq!(
            find(&rows, "01", Window::Quarter, "2026-12-01")
                .unwrap()
                .index
                .respondents,
            4
        );
    }

    #[test]
    fn late_events_beyond_lateness_update_latest_but_not_emitted_days() {
        let f = frameworks();
        let mut state = PartitionState::new(0);
        let mut rows = Vec::new();
        rows.extend(
            state
                .apply_survey(
                    &survey("a", "2026-11-01T10:00:00+07:00", "01", Some(5)),
                    0,
                    &f,
                    LATENESS,
                )
                .satisfaction_daily,
        );
        rows.extend(
            state
                .apply_survey(
                    &survey("b", "2026-11-05T10:00:00+07:00", "01", Some(5)),
                    1,
                    &f,
                    LATENESS,
                )
                .satisfaction_daily,
        );
        let before = find(&rows, "01", Window::Rolling(30), "2026-11-02")
            .unwrap()
            .clone();
        assert_eq!(before.index.respondents, 1);
        let late = state.apply_survey(
            &survey("late", "2026-11-01T11:00:00+07:00", "01", Some(1)),
            2,
            &f,
            LATENESS,
        );
        assert_eq!(late.beyond_lateness, 1);
        assert!(late.satisfaction_daily.is_empty());
        let (latest, _) = state.take_latest(&f);
        let latest_30 = latest
            .iter()
            .find(|r| r.unit.unit_id == "01" && r.window == Window::Rolling(30))
            .unwrap();
        assert_eq!(latest_30.as_of, day("2026-11-05"));
        assert_eq!(latest_30.index.respondents, 3, "a, b and the late one");
        // Days closed afterwards include the late event.
        let next = state
            .apply_survey(
                &survey("c", "2026-11-06T10:00:00+07:00", "79", Some(5)),
                3,
                &f,
                LATENESS,
            )
            .satisfaction_daily;
        assert_eq!(
            find(&next, "01", Window::Rolling(30), "2026-11-03")
                .unwrap()
                .index
                .respondents,
            2
        );
    }

    #[test]
    fn a_resent_submission_counts_once_even_across_a_checkpoint() {
        let f = frameworks();
        let mut state = PartitionState::new(0);
        let first = survey("same-id", "2026-10-31T10:00:00+07:00", "01", Some(5));
        let mut resent = survey("same-id", "2026-10-31T11:00:00+07:00", "01", Some(1));
        assert_eq!(state.apply_survey(&first, 0, &f, LATENESS).duplicates, 0);
        let bytes = bincode::serialize(&state).unwrap();
        let mut state: PartitionState = bincode::deserialize(&bytes).unwrap();
        assert_eq!(
            state.apply_survey(&resent, 1, &f, LATENESS).duplicates,
            1,
            "the first copy wins"
        );
        assert_eq!(state.next_offset, 2, "a duplicate is still consumed");
        resent.submission_id = "other-id".into();
        state.apply_survey(&resent, 2, &f, LATENESS);
        let mut rows = Vec::new();
        rows.extend(
            state
                .apply_survey(
                    &survey("late", "2026-11-03T00:00:01+07:00", "79", Some(5)),
                    3,
                    &f,
                    LATENESS,
                )
                .satisfaction_daily,
        );
        let oct31 =
            find(&rows, "01", Window::Rolling(30), "2026-10-31").expect("2026-10-31 closed");
        assert_eq!(oct31.index.respondents, 2, "same-id once, other-id once");
        assert_eq!(oct31.index.sipas, Some(50.0));
    }

    #[test]
    fn a_checkpoint_round_trip_changes_nothing() {
        let f = frameworks();
        let mut sim = crate::simulate::Simulator::new(
            crate::simulate::SimSettings {
                seed: 3,
                start_unix: 1_790_000_000,
                step_seconds: 40.0,
                ..Default::default()
            },
            &crate::domain::ProvinceRegistry::builtin(),
            f.get("BNV-2640-2017").unwrap().clone(),
        );
        let decoder = crate::contract::Decoder::new(
            crate::contract::validate::Validator {
                provinces: crate::domain::ProvinceRegistry::builtin(),
                frameworks: f.clone(),
                pii: crate::contract::pii::PiiHasher::new(b"state-test-secret-1"),
            },
            std::sync::Arc::new(crate::contract::avro::SchemaCatalog::builtin()),
            65536,
        );
        let events: Vec<_> = (0..6000).map(|_| sim.next_event()).collect();
        let run = |cut: Option<usize>| {
            let mut state = PartitionState::new(0);
            let mut out: Vec<(String, String, i64, Option<f64>, u32, u64)> = Vec::new();
            let mut hot: Vec<(String, String, i64, u32, u32, u32)> = Vec::new();
            for (offset, e) in events.iter().enumerate() {
                if Some(offset) == cut {
                    let bytes = bincode::serialize(&state).unwrap();
                    state = bincode::deserialize(&bytes).unwrap();
                }
                let emitted = match decoder.decode(e.kind, &e.payload, None) {
                    Ok((crate::contract::Decoded::Survey(s), _)) => {
                        state.apply_survey(&s, offset as i64, &f, LATENESS)
                    }
                    Ok((crate::contract::Decoded::Hotline(h), _)) => {
                        state.apply_hotline(&h, offset as i64, &f, LATENESS)
                    }
                    Err(_) => {
                        state.skip(offset as i64);
                        Emitted::default()
                    }
                };
                out.extend(emitted.satisfaction_daily.iter().map(|r| {
                    (
                        r.unit.unit_id.clone(),
                        r.window.label(),
                        r.as_of,
                        r.index.sipas,
                        r.index.respondents,
                        r.version,
                    )
                }));
                hot.extend(emitted.hotline_daily.iter().map(|r| {
                    (
                        r.unit.unit_id.clone(),
                        r.window.label(),
                        r.as_of,
                        r.kpi.received,
                        r.kpi.responded,
                        r.kpi.open_past_due,
                    )
                }));
            }
            (out, hot)
        };
        let whole = run(None);
        assert!(
            whole.0.len() > 1000 && whole.1.len() > 100,
            "{} / {} rows",
            whole.0.len(),
            whole.1.len()
        );
        assert!(
            run(Some(2500)) == whole,
            "same rows with a checkpoint round trip at offset 2500"
        );
    }
}
