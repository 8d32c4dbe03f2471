//! The state of one input partition: a fold over its events, in log order, into exact,
//! additive **day counts** (the index's fact rows). Deterministic: the same partition log
//! gives the same rows, however processing is cut by restarts (the state is checkpointed
//! with the offset it belongs to).
//!
//! - A survey adds one respondent to one cell: (framework, province, day, agency, agency
//!   level, channel, respondent type, procedure).
//! - A hotline event re-folds its ticket and adds the difference of the ticket's
//!   contributions (`index::ticket`), so a late event moves counts rather than adding them.
//! - Offsets are cut into blocks of [`BLOCK_OFFSETS`]. A fact row is what one block added
//!   to one cell and day; while the block is open the row is rewritten whole (version =
//!   the last offset that changed it). Every row thus has one writer, rows of a block never
//!   depend on other partitions, and an event of any age costs one row, however old its day.
//!   The state holds only the open block's cells, the tickets and the ids seen.
//! - Nothing reads the wall clock; event time decides only which day a count belongs to.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::framework::FrameworkCatalog;
use crate::domain::time::{clickhouse_date, vietnam_day};
use crate::domain::{AgencyLevel, Channel, HotlineEvent, RespondentType, SurveySubmission};
use crate::index::rows::{HotlineDayCountRow, SurveyDayCountRow};
use crate::index::survey::SurveyCounts;
use crate::index::ticket::{HotlineCell, HotlineDayCounts, TicketState};

/// Offsets per block: a fact row sums one block's contributions to one cell and day.
pub const BLOCK_OFFSETS: i64 = 4096;

/// Tickets resolved this long before the partition's newest event are forgotten. Long:
/// a back-fill of last year's tickets arrives after this year's, and a ticket forgotten
/// before all its events arrived would count again as a new one.
pub const TICKET_RETENTION_DAYS: i64 = 400;

/// Ids of events this many days older than the partition's newest event are forgotten;
/// a copy of such an old event sent again would be counted again.
pub const ID_RETENTION_DAYS: i64 = 800;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SurveyCell {
    pub framework: String,
    pub province_code: String,
    pub day: i64,
    pub agency_id: String,
    pub agency_level: AgencyLevel,
    pub channel: Channel,
    pub respondent_type: RespondentType,
    pub procedure_code: String,
}

/// A cell of the open block: its counts and the last offset that changed them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OpenCell<C> {
    counts: C,
    version: i64,
    /// Changed since its row was last taken.
    changed: bool,
    /// What was folded into it since its row was last taken (not checkpointed: a restored
    /// cell is what was written for it).
    #[serde(skip)]
    since_taken: C,
}

/// What folding one message did, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The id was folded in before: the message was skipped.
    pub duplicate: bool,
    /// The event's day is more than the allowed lateness behind the partition's newest event.
    pub late: bool,
}

/// The days whose counts changed, for recomputing the windows that contain them, and by
/// how much.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangedDays {
    /// (framework, province) → days.
    pub surveys: BTreeMap<(String, String), Vec<i64>>,
    /// province → days.
    pub hotline: BTreeMap<String, Vec<i64>>,
    pub deltas: DayDeltas,
}

/// What folds added to the day sums since the rows were last taken, per source partition:
/// Σ (row taken − the row written for the same key before). The materialiser adds them to
/// the day sums it holds instead of reading those days back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DayDeltas {
    /// (framework, province, day, partition) → counts added.
    pub surveys: BTreeMap<(String, String, i64, u32), DayDelta<SurveyCounts>>,
    /// (province, category, day, partition) → counts added (signed).
    pub hotline: BTreeMap<(String, String, i64, u32), DayDelta<HotlineDayCounts>>,
}

/// One unit-day-partition's delta, and the top `version` of its rows once they are written
/// (the highest of the rows taken: every change since the last take lies beyond every row
/// written before). The materialiser keeps the top as a reader of the table would see it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DayDelta<C> {
    pub counts: C,
    pub top: u64,
}

impl ChangedDays {
    pub fn is_empty(&self) -> bool {
        self.surveys.is_empty() && self.hotline.is_empty()
    }

    pub fn merge(&mut self, other: ChangedDays) {
        for (key, days) in other.surveys {
            self.surveys.entry(key).or_default().extend(days);
        }
        for (key, days) in other.hotline {
            self.hotline.entry(key).or_default().extend(days);
        }
        // Keys carry their partition: two states never share one.
        self.deltas.surveys.extend(other.deltas.surveys);
        self.deltas.hotline.extend(other.deltas.hotline);
    }

    fn normalise(&mut self) {
        for days in self.surveys.values_mut().chain(self.hotline.values_mut()) {
            days.sort_unstable();
            days.dedup();
        }
    }
}

/// A fact not yet written: a cell's counts (`C`) for one block of one partition, as the
/// state holds them. Its row is built only as it is written (`row`): a survey row spells
/// the counts out as six `u32` arrays and the enums as strings, about four times the
/// memory, and a catch-up's flush holds tens of thousands of facts.
#[derive(Debug, Clone)]
pub struct Fact<K, C> {
    pub key: K,
    pub counts: C,
    pub partition: u32,
    pub block: u32,
    /// The last offset that changed it.
    pub version: i64,
}

/// A fact row's `version`: the last offset that changed it (offsets are never negative).
fn row_version(offset: i64) -> u64 {
    offset.max(0) as u64
}

/// A survey cell's fact.
pub type SurveyFact = Fact<SurveyCell, SurveyCounts>;

/// A hotline cell's fact on one day.
pub type HotlineFact = Fact<(HotlineCell, i64), HotlineDayCounts>;

impl SurveyFact {
    /// Its row, with the framework's shared id lists.
    pub fn row(&self, frameworks: &FrameworkCatalog) -> SurveyDayCountRow {
        let c = &self.key;
        let (criterion_ids, expectation_ids) = match frameworks.get(&c.framework) {
            Some(framework) => {
                let columns = framework.columns();
                (
                    Arc::clone(&columns.criterion_ids),
                    Arc::clone(&columns.expectation_ids),
                )
            }
            None => (Arc::from(Vec::new()), Arc::from(Vec::new())),
        };
        let counts = &self.counts;
        SurveyDayCountRow {
            framework: c.framework.clone(),
            province_code: c.province_code.clone(),
            day: clickhouse_date(c.day),
            agency_id: c.agency_id.clone(),
            agency_level: c.agency_level.as_str().to_owned(),
            channel: c.channel.as_str().to_owned(),
            respondent_type: c.respondent_type.as_str().to_owned(),
            procedure_code: c.procedure_code.clone(),
            source_partition: self.partition,
            source_block: self.block,
            respondents: counts.respondents,
            criterion_ids,
            criterion_n1: counts.score_counts(1),
            criterion_n2: counts.score_counts(2),
            criterion_n3: counts.score_counts(3),
            criterion_n4: counts.score_counts(4),
            criterion_n5: counts.score_counts(5),
            criterion_missing: counts.missing_counts(),
            expectation_ids,
            expectation_ticks: counts.expectation_counts(),
            version: row_version(self.version),
        }
    }
}

impl HotlineFact {
    pub fn row(&self) -> HotlineDayCountRow {
        let ((cell, day), counts) = (&self.key, &self.counts);
        HotlineDayCountRow {
            province_code: cell.province_code.clone(),
            day: clickhouse_date(*day),
            agency_id: cell.agency_id.clone(),
            category: cell.category.clone(),
            channel: cell.channel.clone(),
            source_partition: self.partition,
            source_block: self.block,
            received: counts.received,
            responded: counts.responded,
            responded_on_time: counts.responded_on_time,
            rated: counts.rated,
            rated_satisfied: counts.rated_satisfied,
            reopened: counts.reopened,
            rejected: counts.rejected,
            past_due_delta: counts.past_due_delta,
            response_bins: counts.response_bins.iter().map(|(b, _)| *b).collect(),
            response_counts: counts.response_bins.iter().map(|(_, c)| *c).collect(),
            version: row_version(self.version),
        }
    }
}

/// Fact rows taken from a state, and the days they changed.
#[derive(Debug, Default, Clone)]
pub struct TakenRows {
    pub surveys: Vec<SurveyFact>,
    pub hotline: Vec<HotlineFact>,
    pub changed: ChangedDays,
}

impl TakenRows {
    /// The survey facts' rows, in order.
    pub fn survey_rows(&self, frameworks: &FrameworkCatalog) -> Vec<SurveyDayCountRow> {
        self.surveys
            .iter()
            .map(|fact| fact.row(frameworks))
            .collect()
    }

    /// The hotline facts' rows, in order.
    pub fn hotline_rows(&self) -> Vec<HotlineDayCountRow> {
        self.hotline.iter().map(HotlineFact::row).collect()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionState {
    /// The next offset to apply; every offset below it is folded in.
    pub next_offset: i64,
    /// The partition this state folds (written into its rows).
    partition: u32,
    /// The open block (offset / BLOCK_OFFSETS).
    block: i64,
    newest_event_time: Option<i64>,
    surveys: BTreeMap<SurveyCell, OpenCell<SurveyCounts>>,
    hotline: BTreeMap<(HotlineCell, i64), OpenCell<HotlineDayCounts>>,
    /// Checkpointed apart, like the ids: the tickets changed since the last checkpoint are
    /// appended as a chunk (most tickets of a year's history do not change in a minute).
    #[serde(skip)]
    tickets: HashMap<String, TicketState>,
    /// Tickets changed (or forgotten) since the last chunk.
    #[serde(skip)]
    changed_tickets: std::collections::BTreeSet<String>,
    /// Rows of blocks that closed since the last take.
    #[serde(skip)]
    closed: TakenRows,
    /// Ids folded in (64-bit hashes) with their event day. Checkpointed apart, in
    /// append-only chunks (`index_seen_ids`), not with the rest of the state.
    #[serde(skip)]
    seen: HashMap<u64, i32>,
    /// Ids folded since the last checkpoint, and the offset that checkpoint covered.
    #[serde(skip)]
    new_ids: Vec<(u64, i32)>,
    #[serde(skip)]
    ids_from: i64,
    /// Chunks written since the last chunk that holds every id (from offset 0); `None`
    /// after a restore, so the first checkpoint writes a whole one and a later restore
    /// reads one whole chunk and the few after it.
    #[serde(skip)]
    chunks_since_whole: Option<u32>,
    /// The chunks (`[from, to)`) this state's ids and tickets are stored in, oldest first:
    /// its latest whole chunk and every chunk it appended after it. Kept in the checkpoint
    /// row, so that a restore reads this state's own chunks and never a sequence mixed with
    /// another writer's (an owner still checkpointing a revoked partition while the new
    /// owner writes chunks of its own cut at other offsets).
    chain: Vec<(i64, i64)>,
}

/// What a partition's state appends at a checkpoint besides its own row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateChunk {
    pub from_offset: i64,
    pub to_offset: i64,
    /// 64-bit id hashes with their event day.
    pub ids: Vec<(u64, i32)>,
    /// Tickets changed in `[from, to)`; `None`: forgotten.
    pub tickets: Vec<(String, Option<TicketState>)>,
}

/// A [`StateChunk`] as a checkpoint writes it, borrowing the state's tickets: it serialises
/// to the same bytes (serde writes a reference as its value, field for field), without a
/// copy of every ticket for a whole chunk (tens of MiB for a year of tickets, at the
/// moment the checkpoint's bytes are also held).
#[derive(Debug, Serialize)]
pub struct StateChunkView<'a> {
    pub from_offset: i64,
    pub to_offset: i64,
    pub ids: Vec<(u64, i32)>,
    pub tickets: Vec<(std::borrow::Cow<'a, str>, Option<&'a TicketState>)>,
}

impl StateChunkView<'_> {
    /// Whether a checkpoint stores it: a whole chunk always (a restore starts from it), an
    /// increment only when something changed.
    pub fn is_stored(&self) -> bool {
        self.from_offset == 0 || !self.ids.is_empty() || !self.tickets.is_empty()
    }
}

/// A checkpoint writes every id again (one chunk from offset 0) after this many chunks.
const CHUNKS_PER_WHOLE: u32 = 200;

/// Room for `more` rows, with at most a quarter of the rows held to spare: the rows of a
/// catch-up's closed blocks gather up to `MAX_PENDING_ROWS` over all partitions, and a
/// doubling vector would hold up to as much again unused.
fn reserve_rows<R>(rows: &mut Vec<R>, more: usize) {
    if rows.capacity() - rows.len() < more {
        rows.reserve_exact(more.max(rows.len() / 4));
    }
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

/// Sizes of a partition state, for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateStats {
    pub open_cells: usize,
    pub tickets: usize,
    pub ids: usize,
}

impl PartitionState {
    pub fn new(partition: u32, next_offset: i64) -> Self {
        Self {
            next_offset,
            partition,
            block: next_offset.div_euclid(BLOCK_OFFSETS),
            ids_from: next_offset,
            ..Default::default()
        }
    }

    pub fn stats(&self) -> StateStats {
        StateStats {
            open_cells: self.surveys.len() + self.hotline.len(),
            tickets: self.tickets.len(),
            ids: self.seen.len(),
        }
    }

    /// The newest event day folded, if any.
    pub fn newest_day(&self) -> Option<i64> {
        self.newest_event_time.map(vietnam_day)
    }

    /// False when this id was folded in before (the message is then only skipped).
    fn first_sighting(&mut self, kind: u8, id: &str, day: i64) -> bool {
        let hash = id_hash(kind, id);
        if self.seen.contains_key(&hash) {
            return false;
        }
        let day = day.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        self.seen.insert(hash, day);
        self.new_ids.push((hash, day));
        true
    }

    /// Moves to the block of `offset`, closing the open one if it differs.
    fn enter_block(&mut self, offset: i64) {
        let block = offset.div_euclid(BLOCK_OFFSETS);
        if block == self.block {
            return;
        }
        let mut closed = std::mem::take(&mut self.closed);
        self.take_open_into(&mut closed, true);
        self.closed = closed;
        self.block = block;
        self.forget_old();
    }

    fn is_late(&self, event_time: i64, lateness_seconds: i64) -> bool {
        self.newest_event_time
            .is_some_and(|newest| event_time < newest - lateness_seconds)
    }

    fn advance(&mut self, event_time: i64, offset: i64) {
        self.next_offset = self.next_offset.max(offset + 1);
        self.newest_event_time = Some(
            self.newest_event_time
                .map_or(event_time, |t| t.max(event_time)),
        );
    }

    pub fn apply_survey(
        &mut self,
        survey: &SurveySubmission,
        offset: i64,
        frameworks: &FrameworkCatalog,
        lateness_seconds: i64,
    ) -> Applied {
        self.enter_block(offset);
        let day = vietnam_day(survey.submitted_at);
        if !self.first_sighting(b's', &survey.submission_id, day) {
            self.skip(offset);
            return Applied {
                duplicate: true,
                late: false,
            };
        }
        let late = self.is_late(survey.submitted_at, lateness_seconds);
        if let Some(framework) = frameworks.get(&survey.framework) {
            let cell = SurveyCell {
                framework: survey.framework.clone(),
                province_code: survey.province_code.clone(),
                day,
                agency_id: survey.agency_id.clone(),
                agency_level: survey.agency_level,
                channel: survey.channel,
                respondent_type: survey.respondent_type,
                procedure_code: survey.procedure_code.clone().unwrap_or_default(),
            };
            let open = self.surveys.entry(cell).or_insert_with(|| OpenCell {
                counts: SurveyCounts::new(framework),
                ..Default::default()
            });
            if !open.changed {
                // Emptied (or never filled) at the last take: in the framework's shape.
                open.since_taken = SurveyCounts::new(framework);
            }
            open.counts.add(survey, framework);
            open.since_taken.add(survey, framework);
            open.version = offset;
            open.changed = true;
        }
        self.advance(survey.submitted_at, offset);
        Applied {
            duplicate: false,
            late,
        }
    }

    pub fn apply_hotline(
        &mut self,
        event: &HotlineEvent,
        offset: i64,
        lateness_seconds: i64,
    ) -> Applied {
        self.enter_block(offset);
        let day = vietnam_day(event.occurred_at);
        if !self.first_sighting(b'h', &event.event_id, day) {
            self.skip(offset);
            return Applied {
                duplicate: true,
                late: false,
            };
        }
        let late = self.is_late(event.occurred_at, lateness_seconds);
        if !self.changed_tickets.contains(&event.ticket_id) {
            self.changed_tickets.insert(event.ticket_id.clone());
        }
        let ticket = self.tickets.entry(event.ticket_id.clone()).or_default();
        for (cell, day, delta) in ticket.fold_diff(event) {
            let open = self.hotline.entry((cell, day)).or_default();
            open.counts.add(&delta, 1);
            open.since_taken.add(&delta, 1);
            open.version = offset;
            open.changed = true;
        }
        self.advance(event.occurred_at, offset);
        Applied {
            duplicate: false,
            late,
        }
    }

    /// Records that `offset` was consumed without an event for the index (e.g. invalid).
    pub fn skip(&mut self, offset: i64) {
        self.enter_block(offset);
        self.next_offset = self.next_offset.max(offset + 1);
    }

    /// Tickets resolved long ago and ids of days no one re-sends are forgotten, at block
    /// boundaries (so at the same offsets in every run).
    fn forget_old(&mut self) {
        let Some(newest) = self.newest_event_time else {
            return;
        };
        let forget_before = newest - TICKET_RETENTION_DAYS * 86_400;
        let changed = &mut self.changed_tickets;
        self.tickets.retain(|id, t| {
            let keep = !(t.resolved_at().is_some() && t.last_event_at() < forget_before);
            if !keep {
                changed.insert(id.clone());
            }
            keep
        });
        let oldest_day = vietnam_day(newest) - ID_RETENTION_DAYS;
        if self.seen.values().any(|day| i64::from(*day) < oldest_day) {
            self.seen.retain(|_, day| i64::from(*day) >= oldest_day);
        }
    }

    /// The rows changed since the last take: every changed cell of the open block (whole)
    /// and those of blocks closed meanwhile. In a deterministic order.
    pub fn take_rows(&mut self) -> TakenRows {
        let mut taken = std::mem::take(&mut self.closed);
        self.take_open_into(&mut taken, false);
        taken.changed.normalise();
        taken
    }

    /// The open block's changed cells into `taken`, with their changed days and deltas;
    /// `closing`: the block closes, and its cells move into their facts.
    fn take_open_into(&mut self, taken: &mut TakenRows, closing: bool) {
        let (partition, block) = (self.partition, self.block as u32);
        let changed = &mut taken.changed;
        take_changed(
            &mut self.surveys,
            closing,
            partition,
            block,
            &mut taken.surveys,
            |cell, since, version| {
                let unit = (cell.framework.clone(), cell.province_code.clone());
                let delta = changed
                    .deltas
                    .surveys
                    .entry((unit.0.clone(), unit.1.clone(), cell.day, partition))
                    .or_default();
                delta.counts.merge(&since);
                delta.top = delta.top.max(version);
                changed.surveys.entry(unit).or_default().push(cell.day);
            },
        );
        take_changed(
            &mut self.hotline,
            closing,
            partition,
            block,
            &mut taken.hotline,
            |(cell, day), since, version| {
                let delta = changed
                    .deltas
                    .hotline
                    .entry((
                        cell.province_code.clone(),
                        cell.category.clone(),
                        *day,
                        partition,
                    ))
                    .or_default();
                delta.counts.add(&since, 1);
                delta.top = delta.top.max(version);
                changed
                    .hotline
                    .entry(cell.province_code.clone())
                    .or_default()
                    .push(*day);
            },
        );
    }

    /// What changed since the last call, as a chunk covering `[from, next_offset)`: the ids
    /// folded and the tickets changed (`None`: forgotten). Every `CHUNKS_PER_WHOLE` calls,
    /// and on the first after a restore, a whole chunk from offset 0: every id and ticket.
    pub fn take_chunk(&mut self) -> StateChunkView<'_> {
        use std::borrow::Cow;
        let whole = self
            .chunks_since_whole
            .is_none_or(|n| n + 1 >= CHUNKS_PER_WHOLE);
        let from = if whole { 0 } else { self.ids_from };
        self.ids_from = self.next_offset;
        self.chunks_since_whole = Some(if whole {
            0
        } else {
            self.chunks_since_whole.unwrap_or(0) + 1
        });
        let changed = std::mem::take(&mut self.changed_tickets);
        let mut ids = if whole {
            self.new_ids.clear();
            self.seen.iter().map(|(h, d)| (*h, *d)).collect()
        } else {
            std::mem::take(&mut self.new_ids)
        };
        ids.sort_unstable();
        let stored = from == 0 || !ids.is_empty() || !changed.is_empty();
        if whole {
            self.chain.clear();
        }
        if stored {
            self.chain.push((from, self.ids_from));
        }
        let tickets = if whole {
            let mut tickets: Vec<_> = self
                .tickets
                .iter()
                .map(|(id, t)| (Cow::Borrowed(id.as_str()), Some(t)))
                .collect();
            tickets.sort_by(|a, b| a.0.cmp(&b.0));
            tickets
        } else {
            changed
                .into_iter()
                .map(|id| {
                    let ticket = self.tickets.get(&id);
                    (Cow::Owned(id), ticket)
                })
                .collect()
        };
        StateChunkView {
            from_offset: from,
            to_offset: self.ids_from,
            ids,
            tickets,
        }
    }

    /// The chunks a restore of this state reads, oldest first (see `chain`).
    pub fn chain(&self) -> &[(i64, i64)] {
        &self.chain
    }

    /// Restores ids and tickets from checkpointed chunks, oldest first: the chunks of its
    /// `chain` (`checkpoint::chain_chunks`).
    pub fn restore_chunks(&mut self, chunks: Vec<StateChunk>) {
        let oldest_day = self
            .newest_day()
            .map_or(i64::MIN, |newest| newest - ID_RETENTION_DAYS);
        for chunk in chunks {
            for (hash, day) in chunk.ids {
                if i64::from(day) >= oldest_day {
                    self.seen.insert(hash, day);
                }
            }
            for (id, ticket) in chunk.tickets {
                match ticket {
                    Some(ticket) => self.tickets.insert(id, ticket),
                    None => self.tickets.remove(&id),
                };
            }
        }
        self.new_ids.clear();
        self.changed_tickets.clear();
        self.ids_from = self.next_offset;
        self.chunks_since_whole = None;
    }

    /// Ids known (for tests and stats).
    pub fn seen_ids(&self) -> HashSet<u64> {
        self.seen.keys().copied().collect()
    }
}

/// The changed cells of an open block appended to `facts` (moved out when `closing`,
/// copied otherwise), each marked unchanged; `note` gets each one's key and what was folded
/// into it since it was last taken.
fn take_changed<K: Ord + Clone, C: Clone + Default>(
    cells: &mut BTreeMap<K, OpenCell<C>>,
    closing: bool,
    partition: u32,
    block: u32,
    facts: &mut Vec<Fact<K, C>>,
    mut note: impl FnMut(&K, C, u64),
) {
    reserve_rows(facts, cells.values().filter(|o| o.changed).count());
    let fact = |key, counts, version| Fact {
        key,
        counts,
        partition,
        block,
        version,
    };
    if closing {
        for (key, open) in std::mem::take(cells).into_iter().filter(|(_, o)| o.changed) {
            note(&key, open.since_taken, row_version(open.version));
            facts.push(fact(key, open.counts, open.version));
        }
    } else {
        for (key, open) in cells.iter_mut().filter(|(_, o)| o.changed) {
            open.changed = false;
            note(
                key,
                std::mem::take(&mut open.since_taken),
                row_version(open.version),
            );
            facts.push(fact(key.clone(), open.counts.clone(), open.version));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_rfc3339;
    use crate::domain::CodeSystem;
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
            agency_id: "UBND-phuong-1".into(),
            agency_level: AgencyLevel::Commune,
            procedure_code: Some("1.001".into()),
            channel: Channel::OneStop,
            respondent_type: RespondentType::Citizen,
            answers: crate::domain::event::Answers::new(
                Arc::clone(&framework.columns().criterion_ids),
                vec![score; framework.criterion_ids().count()],
            ),
            expectations: vec!["expect.shorter_time".into()],
        }
    }

    /// The rows a ReplacingMergeTree keeps: per key, the highest version.
    fn final_rows(rows: &[SurveyDayCountRow]) -> BTreeMap<String, SurveyDayCountRow> {
        let mut kept: BTreeMap<String, SurveyDayCountRow> = BTreeMap::new();
        for row in rows {
            let key = format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                row.framework,
                row.province_code,
                row.day,
                row.agency_id,
                row.agency_level,
                row.channel,
                row.respondent_type,
                row.procedure_code,
                row.source_partition,
                row.source_block
            );
            if kept.get(&key).is_none_or(|k| k.version <= row.version) {
                kept.insert(key, row.clone());
            }
        }
        kept
    }

    /// A survey fact row's counts, as a reader of the table sums them.
    fn row_counts(row: &SurveyDayCountRow) -> SurveyCounts {
        SurveyCounts::from_distribution(
            row.respondents,
            [
                &row.criterion_n1,
                &row.criterion_n2,
                &row.criterion_n3,
                &row.criterion_n4,
                &row.criterion_n5,
            ],
            &row.criterion_missing,
            &row.expectation_ticks,
        )
    }

    #[test]
    fn a_survey_adds_one_respondent_to_its_cell_and_day_with_the_distribution() {
        let f = frameworks();
        let mut state = PartitionState::new(3, 0);
        state.apply_survey(
            &survey("a", "2026-11-01T10:00:00+07:00", "01", Some(5)),
            0,
            &f,
            LATENESS,
        );
        state.apply_survey(
            &survey("b", "2026-11-01T23:59:59+07:00", "01", Some(2)),
            1,
            &f,
            LATENESS,
        );
        state.apply_survey(
            &survey("c", "2026-11-02T00:00:00+07:00", "01", None),
            2,
            &f,
            LATENESS,
        );
        let taken = state.take_rows();
        assert_eq!(taken.surveys.len(), 2, "two days, one cell each");
        let rows = taken.survey_rows(&f);
        let first = &rows[0];
        assert_eq!(
            (
                first.respondents,
                first.source_partition,
                first.source_block
            ),
            (2, 3, 0)
        );
        assert_eq!(first.criterion_n5[0], 1);
        assert_eq!(first.criterion_n2[0], 1);
        assert_eq!(first.procedure_code, "1.001");
        assert_eq!(first.criterion_ids.len(), first.criterion_n1.len());
        assert_eq!(first.version, 1, "the last offset that changed it");
        let second = &rows[1];
        assert_eq!(second.criterion_missing[0], 1);
        assert_eq!(
            taken.changed.surveys[&("BNV-2640-2017".to_owned(), "01".to_owned())],
            vec![second.day as i64 - 1, second.day as i64]
        );
        assert!(
            state.take_rows().surveys.is_empty(),
            "nothing changed since"
        );
    }

    #[test]
    fn an_old_event_updates_its_own_day_and_counts_as_late() {
        let f = frameworks();
        let mut state = PartitionState::new(0, 0);
        state.apply_survey(
            &survey("new", "2026-11-20T10:00:00+07:00", "01", Some(5)),
            0,
            &f,
            LATENESS,
        );
        let applied = state.apply_survey(
            &survey("old", "2025-12-30T10:00:00+07:00", "01", Some(1)),
            1,
            &f,
            LATENESS,
        );
        assert!(applied.late && !applied.duplicate);
        let taken = state.take_rows();
        let days: Vec<u16> = taken.survey_rows(&f).iter().map(|r| r.day).collect();
        assert_eq!(
            days,
            vec![
                clickhouse_date(vietnam_day(
                    parse_rfc3339("2025-12-30T10:00:00+07:00").unwrap()
                )),
                clickhouse_date(vietnam_day(
                    parse_rfc3339("2026-11-20T10:00:00+07:00").unwrap()
                )),
            ]
        );
    }

    #[test]
    fn blocks_close_at_fixed_offsets_and_resent_ids_count_once_across_a_checkpoint() {
        let f = frameworks();
        let mut state = PartitionState::new(0, 0);
        let at = "2026-11-01T10:00:00+07:00";
        state.apply_survey(&survey("a", at, "01", Some(5)), 10, &f, LATENESS);
        let (row, chunk) = crate::index::checkpoint::rows("g", "t", 0, &mut state, 0);
        let mut restored = crate::index::checkpoint::decode(&row.state).unwrap();
        let chunk = crate::index::checkpoint::decode_chunk(&chunk.unwrap().chunk).unwrap();
        restored.restore_chunks(vec![chunk]);
        let again = restored.apply_survey(&survey("a", at, "01", Some(1)), 11, &f, LATENESS);
        assert!(again.duplicate, "the first copy wins, also after a restore");
        assert_eq!(restored.next_offset, 12);
        // Offset 4096 opens block 1: the same cell gets a second row.
        restored.apply_survey(&survey("b", at, "01", Some(4)), BLOCK_OFFSETS, &f, LATENESS);
        let taken = restored.take_rows();
        let blocks: Vec<(u32, u32)> = taken
            .survey_rows(&f)
            .iter()
            .map(|r| (r.source_block, r.respondents))
            .collect();
        assert_eq!(blocks, vec![(0, 1), (1, 1)]);
    }

    #[test]
    fn chunks_are_incremental_with_a_whole_one_after_a_restore() {
        let f = frameworks();
        let at = "2026-11-01T10:00:00+07:00";
        let mut state = PartitionState::new(0, 0);
        state.apply_survey(&survey("a", at, "01", Some(5)), 0, &f, LATENESS);
        assert_eq!(
            state.take_chunk().from_offset,
            0,
            "the first chunk holds everything"
        );
        state.apply_survey(&survey("b", at, "01", Some(5)), 1, &f, LATENESS);
        let chunk = state.take_chunk();
        assert_eq!(
            (chunk.from_offset, chunk.to_offset, chunk.ids.len()),
            (1, 2, 1),
            "then only what is new"
        );
        let restored_ids = state.seen_ids().len();
        state.restore_chunks(Vec::new());
        let chunk = state.take_chunk();
        assert_eq!(
            (chunk.from_offset, chunk.ids.len()),
            (0, restored_ids),
            "after a restore, everything again"
        );
    }

    #[test]
    fn a_chunk_view_serialises_as_the_chunk_it_stands_for() {
        let fold = || {
            let mut state = PartitionState::new(0, 0);
            for (offset, event) in decoded_events(300, 3).iter().enumerate() {
                if let Some(crate::contract::Decoded::Hotline(h)) = event {
                    state.apply_hotline(h, offset as i64, LATENESS);
                }
            }
            state
        };
        let mut state = fold();
        let view = state.take_chunk();
        assert!(!view.tickets.is_empty());
        let owned = StateChunk {
            from_offset: view.from_offset,
            to_offset: view.to_offset,
            ids: view.ids.clone(),
            tickets: view
                .tickets
                .iter()
                .map(|(id, t)| (id.to_string(), t.cloned()))
                .collect(),
        };
        assert_eq!(
            bincode::serialize(&view).unwrap(),
            bincode::serialize(&owned).unwrap()
        );
        // As a checkpoint stores it, from a state folded the same way.
        let (_, stored) = crate::index::checkpoint::rows("g", "t", 0, &mut fold(), 0);
        let decoded = crate::index::checkpoint::decode_chunk(&stored.unwrap().chunk);
        assert_eq!(decoded, Some(owned));
    }

    /// Simulated traffic, decoded (`None`: an invalid message, only skipped).
    fn decoded_events(n: usize, seed: u64) -> Vec<Option<crate::contract::Decoded>> {
        let f = frameworks();
        let mut sim = crate::simulate::Simulator::new(
            crate::simulate::SimSettings {
                seed,
                start_unix: 1_790_000_000,
                step_seconds: 40.0,
                late_share: 0.02,
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
        (0..n)
            .map(|_| {
                let e = sim.next_event();
                decoder
                    .decode(e.kind, &e.payload, None)
                    .ok()
                    .map(|(d, _)| d)
            })
            .collect()
    }

    #[test]
    fn a_restore_reads_its_own_chunks_while_two_owners_checkpoint_one_partition() {
        use crate::index::checkpoint;
        use std::collections::HashMap as Map;
        let f = frameworks();
        let events = decoded_events(1_300, 11);
        let fold = |state: &mut PartitionState, to: i64| {
            while state.next_offset < to {
                let offset = state.next_offset;
                match &events[offset as usize] {
                    Some(crate::contract::Decoded::Survey(s)) => {
                        state.apply_survey(s, offset, &f, LATENESS);
                    }
                    Some(crate::contract::Decoded::Hotline(h)) => {
                        state.apply_hotline(h, offset, LATENESS);
                    }
                    None => state.skip(offset),
                }
            }
        };
        // Chunks by (from, to), as the table keeps them, and the latest checkpoint row.
        type Stored = Map<(i64, i64), Vec<u8>>;
        type Row = crate::index::rows::CheckpointRow;
        let mut stored: Stored = Map::new();
        let mut latest: Option<Row> = None;
        fn write(state: &mut PartitionState, stored: &mut Stored, latest: &mut Option<Row>) {
            let (row, chunk) = checkpoint::rows("g", "t", 0, state, 0);
            if let Some(chunk) = chunk {
                stored.insert((chunk.from_offset, chunk.to_offset), chunk.chunk);
            }
            if latest
                .as_ref()
                .is_none_or(|l| l.next_offset <= row.next_offset)
            {
                *latest = Some(row);
            }
        }
        macro_rules! checkpoint {
            ($state:expr) => {
                write(&mut $state, &mut stored, &mut latest)
            };
        }
        let restore = |row: &Row, stored: &Stored| {
            let mut state = checkpoint::decode(&row.state).unwrap();
            state.restore_chunks(checkpoint::chain_chunks(&state, stored).unwrap());
            state
        };
        let mut first = PartitionState::new(0, 0);
        fold(&mut first, 900);
        checkpoint!(first);
        let at_900 = latest.clone().unwrap();
        // The old owner restored the checkpoint at 900 and is revoked after its first
        // checkpoint (a whole chunk up to 901); its processor folds on to 1152 meanwhile.
        let mut old_owner = restore(&at_900, &stored);
        fold(&mut old_owner, 901);
        checkpoint!(old_owner);
        fold(&mut old_owner, 1152);
        // The new owner restored the same checkpoint before that: its first checkpoint is
        // a whole chunk up to 900, then increments cut where it checkpoints.
        let mut new_owner = restore(&at_900, &stored);
        checkpoint!(new_owner);
        fold(&mut new_owner, 1152);
        checkpoint!(new_owner);
        fold(&mut new_owner, 1180);
        checkpoint!(new_owner);
        let row = latest.clone().unwrap();
        assert_eq!(row.next_offset, 1180);
        assert!(
            stored.contains_key(&(0, 901)) && stored.contains_key(&(1152, 1180)),
            "the old owner's whole chunk lies beyond the new owner's: {:?}",
            stored.keys().collect::<Vec<_>>()
        );
        let restored = restore(&row, &stored);
        let mut reference = PartitionState::new(0, 0);
        fold(&mut reference, 1180);
        assert!(
            restored.seen == reference.seen,
            "ids folded: {} restored, {} folded",
            restored.seen.len(),
            reference.seen.len()
        );
        assert!(
            reference.tickets.len() > 50,
            "{} tickets",
            reference.tickets.len()
        );
        let differing = reference
            .tickets
            .iter()
            .filter(|(id, t)| restored.tickets.get(*id) != Some(t))
            .count();
        assert!(
            differing == 0 && restored.tickets.len() == reference.tickets.len(),
            "tickets: {differing} of {} differ, {} restored",
            reference.tickets.len(),
            restored.tickets.len()
        );
        // A chain naming a chunk that is not stored is refused, never read with a gap.
        stored.remove(&(900, 1152));
        let state = checkpoint::decode(&row.state).unwrap();
        assert_eq!(
            checkpoint::chain_chunks(&state, &stored).err(),
            Some(checkpoint::ChainError::Missing {
                from_offset: 900,
                to_offset: 1152
            })
        );
    }

    #[test]
    fn a_checkpoint_cut_anywhere_gives_the_same_final_rows() {
        let f = frameworks();
        let events = decoded_events(12_000, 3);
        type SurveySums = BTreeMap<(String, String, i64), SurveyCounts>;
        type HotlineSums = BTreeMap<(String, String, i64), HotlineDayCounts>;
        // The day sums a reader of the table would keep by adding every take's deltas.
        let absorb = |sums: &mut (SurveySums, HotlineSums), taken: &TakenRows| {
            for ((f, p, d, partition), delta) in &taken.changed.deltas.surveys {
                assert_eq!(*partition, 0);
                sums.0
                    .entry((f.clone(), p.clone(), *d))
                    .or_default()
                    .merge(&delta.counts);
            }
            for ((p, c, d, _), delta) in &taken.changed.deltas.hotline {
                sums.1
                    .entry((p.clone(), c.clone(), *d))
                    .or_default()
                    .add(&delta.counts, 1);
            }
        };
        let run = |cuts: &[usize], flush_every: usize| {
            let mut from_deltas: (SurveySums, HotlineSums) = Default::default();
            let mut state = PartitionState::new(0, 0);
            let mut chunks: Vec<(i64, i64, Vec<u8>)> = Vec::new();
            let (mut surveys, mut hotline) = (Vec::new(), Vec::new());
            let mut offset = 0usize;
            while offset < events.len() {
                if cuts.contains(&offset) {
                    // Checkpoint, then "crash": restore from the checkpoint and go on.
                    let taken = state.take_rows();
                    absorb(&mut from_deltas, &taken);
                    surveys.extend(taken.survey_rows(&f));
                    hotline.extend(taken.hotline_rows());
                    let (row, chunk) = crate::index::checkpoint::rows("g", "t", 0, &mut state, 0);
                    chunks.extend(chunk.map(|c| (c.from_offset, c.to_offset, c.chunk)));
                    state = crate::index::checkpoint::decode(&row.state).unwrap();
                    // As `checkpoint::load` reads them: the state's chain.
                    let stored = chunks
                        .iter()
                        .map(|(from, to, c)| ((*from, *to), c.clone()))
                        .collect();
                    state.restore_chunks(
                        crate::index::checkpoint::chain_chunks(&state, &stored).unwrap(),
                    );
                }
                match &events[offset] {
                    Some(crate::contract::Decoded::Survey(s)) => {
                        state.apply_survey(s, offset as i64, &f, LATENESS);
                    }
                    Some(crate::contract::Decoded::Hotline(h)) => {
                        state.apply_hotline(h, offset as i64, LATENESS);
                    }
                    None => state.skip(offset as i64),
                }
                offset += 1;
                if offset.is_multiple_of(flush_every) {
                    let taken = state.take_rows();
                    absorb(&mut from_deltas, &taken);
                    surveys.extend(taken.survey_rows(&f));
                    hotline.extend(taken.hotline_rows());
                }
                // Checkpoints without a crash: incremental chunks between the whole ones.
                if offset.is_multiple_of(700) {
                    let (_, chunk) = crate::index::checkpoint::rows("g", "t", 0, &mut state, 0);
                    chunks.extend(chunk.map(|c| (c.from_offset, c.to_offset, c.chunk)));
                }
            }
            let taken = state.take_rows();
            absorb(&mut from_deltas, &taken);
            surveys.extend(taken.survey_rows(&f));
            hotline.extend(taken.hotline_rows());
            let mut hot: BTreeMap<String, HotlineDayCountRow> = BTreeMap::new();
            for row in hotline {
                let key = format!(
                    "{}|{}|{}|{}|{}|{}",
                    row.province_code,
                    row.day,
                    row.agency_id,
                    row.category,
                    row.channel,
                    row.source_block
                );
                if hot.get(&key).is_none_or(|k| k.version <= row.version) {
                    hot.insert(key, row);
                }
            }
            // The deltas add up to the table's day sums.
            let kept = final_rows(&surveys);
            let mut table: (SurveySums, HotlineSums) = Default::default();
            for row in kept.values() {
                let counts = row_counts(row);
                let key = (
                    row.framework.clone(),
                    row.province_code.clone(),
                    i64::from(row.day),
                );
                table.0.entry(key).or_default().merge(&counts);
            }
            for row in hot.values() {
                let mut counts = HotlineDayCounts {
                    received: row.received,
                    responded: row.responded,
                    responded_on_time: row.responded_on_time,
                    rated: row.rated,
                    rated_satisfied: row.rated_satisfied,
                    reopened: row.reopened,
                    rejected: row.rejected,
                    past_due_delta: row.past_due_delta,
                    response_bins: Vec::new(),
                };
                for (bin, count) in row.response_bins.iter().zip(&row.response_counts) {
                    counts.add_bin(*bin, *count);
                }
                let key = (
                    row.province_code.clone(),
                    row.category.clone(),
                    i64::from(row.day),
                );
                table.1.entry(key).or_default().add(&counts, 1);
            }
            // Day numbers: the table's are ClickHouse dates.
            let shift = |sums: SurveySums| -> SurveySums {
                sums.into_iter()
                    .map(|((f, p, d), c)| ((f, p, i64::from(clickhouse_date(d))), c))
                    .collect()
            };
            let shift_h = |sums: HotlineSums| -> HotlineSums {
                sums.into_iter()
                    .map(|((p, c, d), v)| ((p, c, i64::from(clickhouse_date(d))), v))
                    .filter(|(_, v)| !v.is_zero())
                    .collect()
            };
            let table_h: HotlineSums = table.1.into_iter().filter(|(_, v)| !v.is_zero()).collect();
            assert!(
                shift(from_deltas.0) == table.0,
                "survey deltas add up to the table"
            );
            assert!(
                shift_h(from_deltas.1) == table_h,
                "hotline deltas add up to the table"
            );
            (kept, hot)
        };
        let whole = run(&[], 1_000_000);
        assert!(
            whole.0.len() > 1000 && whole.1.len() > 100,
            "{} / {}",
            whole.0.len(),
            whole.1.len()
        );
        let respondents: u32 = whole.0.values().map(|r| r.respondents).sum();
        assert!(respondents > 5_000, "{respondents} respondents");
        assert!(
            run(&[2500, 4096, 9001], 333) == whole,
            "same final rows with flushes every 333 events and checkpoint restores at 2500, 4096, 9001"
        );
    }

    /// The materialiser's delta protocol against a model of the table: one partition
    /// written by this process (flushing, checkpointing, crashing and restarting from its
    /// last checkpoint while its predecessor's rows are ahead of it) and by zombies (a
    /// crashed copy that keeps folding and writing). After every pass, every day the cache
    /// holds equals the table's sum, whatever the interleaving.
    mod delta_protocol {
        use super::*;
        use crate::index::day_cache::DayCache;
        use crate::index::materialiser::Writes;
        use proptest::prelude::*;

        const DAYS: [&str; 3] = [
            "2026-10-30T09:00:00+07:00",
            "2026-10-31T09:00:00+07:00",
            "2026-11-01T09:00:00+07:00",
        ];

        fn event(i: usize, choice: u8) -> SurveySubmission {
            let mut s = survey(
                &format!("s{i}"),
                DAYS[usize::from(choice % 3)],
                "01",
                Some(1 + choice % 5),
            );
            s.agency_id = format!("A{}", choice % 4);
            s
        }

        type Table = BTreeMap<String, SurveyDayCountRow>;

        fn write(table: &mut Table, rows: Vec<SurveyDayCountRow>) {
            for row in rows {
                let key = format!("{}|{}|{}", row.day, row.agency_id, row.source_block);
                // Ties keep the later write: equal versions must hold equal content.
                if table.get(&key).is_none_or(|k| k.version <= row.version) {
                    table.insert(key, row);
                }
            }
        }

        fn day_sum(table: &Table, day: u16) -> SurveyCounts {
            let mut sum = SurveyCounts::default();
            for row in table.values().filter(|r| r.day == day) {
                sum.merge(&row_counts(row));
            }
            sum
        }

        fn top(table: &Table, day: u16) -> Option<u64> {
            table
                .values()
                .filter(|r| r.day == day)
                .map(|r| r.version)
                .max()
        }

        fn restore(checkpoint: &[u8]) -> PartitionState {
            crate::index::checkpoint::decode(checkpoint).expect("checkpoint decodes")
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
            #[test]
            fn held_days_equal_the_table_after_every_pass(
                choices in prop::collection::vec(0u8..60, 40..160),
                steps in prop::collection::vec((0u8..11, 1usize..12), 1..60),
            ) {
                let f = frameworks();
                let events: Vec<SurveySubmission> =
                    choices.iter().enumerate().map(|(i, c)| event(i, *c)).collect();
                let days: Vec<i64> = DAYS
                    .iter()
                    .map(|at| vietnam_day(parse_rfc3339(at).unwrap()))
                    .collect();
                let mut table = Table::new();
                let mut state = PartitionState::new(0, 0);
                let mut checkpoint = {
                    let (row, _) = crate::index::checkpoint::rows("g", "t", 0, &mut state, 0);
                    row.state
                };
                let mut zombies: Vec<PartitionState> = Vec::new();
                let mut generation = 1u64;
                // Where this process took the partition over.
                let mut since = 0i64;
                let mut cache: DayCache<SurveyCounts> = DayCache::default();
                let mut trust = BTreeMap::new();
                let mut known = std::collections::HashMap::new();
                let mut primed = false;
                let fold = |state: &mut PartitionState, n: usize| {
                    for _ in 0..n {
                        let offset = state.next_offset;
                        if let Some(e) = events.get(offset as usize) {
                            // Small blocks: rows close and reopen often.
                            state.apply_survey(e, offset * (BLOCK_OFFSETS / 4), &f, LATENESS);
                            state.next_offset = offset + 1;
                        }
                    }
                };
                for (action, n) in steps {
                    match action {
                        0..=3 => fold(&mut state, n),
                        4..=6 => {
                            // A flush of this process, then the materialiser's pass (and
                            // with 6 a checkpoint after them, as the processor writes it).
                            let taken = state.take_rows();
                            write(&mut table, taken.survey_rows(&f));
                            let writes = Writes {
                                generation,
                                // Offsets are spread (×1024) to make blocks small.
                                through: BTreeMap::from([(0, (state.next_offset - 1) * (BLOCK_OFFSETS / 4))]),
                                since: BTreeMap::from([(0, since * (BLOCK_OFFSETS / 4))]),
                            };
                            let prints = days
                                .iter()
                                .filter_map(|d| {
                                    let date = clickhouse_date(*d);
                                    top(&table, date).map(|t| crate::index::materialiser::PrintRow {
                                        framework: "F".into(),
                                        province_code: "01".into(),
                                        d: date,
                                        p: 0,
                                        top: t,
                                    })
                                })
                                .collect();
                            let found = crate::index::materialiser::detect(
                                prints,
                                &mut known,
                                &BTreeMap::new(),
                                &writes,
                                primed,
                                days[2],
                            );
                            primed = true;
                            for day in found.foreign.values().flatten() {
                                cache.mark_stale([*day]);
                            }
                            for ((_, _, day, partition), delta) in &taken.changed.deltas.surveys {
                                if !cache.holds(*day) {
                                    continue;
                                }
                                let allowed = trust
                                    .get(day)
                                    .is_some_and(|t: &crate::index::materialiser::Trust| t.allows(&writes, *partition));
                                if allowed {
                                    cache.add_to_day("", *day, &delta.counts);
                                } else {
                                    cache.mark_stale([*day]);
                                }
                            }
                            // Read what is missing or stale, with each day's trust.
                            if let Some((a, b)) = cache.missing(days[0], days[2]) {
                                let mut read = Vec::new();
                                for day in a..=b {
                                    let date = clickhouse_date(day);
                                    let tops: Vec<(u32, u64)> =
                                        top(&table, date).map(|t| (0, t)).into_iter().collect();
                                    trust.insert(day, writes.trusted(&tops));
                                    read.push((day, day_sum(&table, date)));
                                }
                                cache.apply_read(a, b, BTreeMap::from([(String::new(), read)]), &BTreeMap::new());
                            }
                            for day in &days {
                                let held = cache
                                    .units()
                                    .get("")
                                    .and_then(|u| u.days.get(day))
                                    .cloned()
                                    .unwrap_or_default();
                                let want = day_sum(&table, clickhouse_date(*day));
                                prop_assert!(
                                    held.respondents == want.respondents && (held == want || want.respondents == 0),
                                    "day {day}: cache {} respondents, table {}",
                                    held.respondents,
                                    want.respondents
                                );
                            }
                            if action == 6 {
                                let (row, _) = crate::index::checkpoint::rows("g", "t", 0, &mut state, 0);
                                checkpoint = row.state;
                            }
                        }
                        7 => {
                            // The partition is taken over from the last checkpoint (a crash,
                            // or a rebalance while the materialiser keeps its cache); the
                            // old owner may live on as a zombie.
                            let old = std::mem::replace(&mut state, restore(&checkpoint));
                            if n % 2 == 0 {
                                zombies.push(old);
                            }
                            since = state.next_offset;
                            generation += 1;
                        }
                        10 => {
                            // The partition moves to another process, which takes it over
                            // from the last checkpoint, folds on, writes and checkpoints;
                            // then it comes back here from that checkpoint. No pass ran
                            // here meanwhile: this process's cache saw none of those rows,
                            // which are all below where it takes the partition over.
                            let mut other = restore(&checkpoint);
                            fold(&mut other, n);
                            let taken = other.take_rows();
                            write(&mut table, taken.survey_rows(&f));
                            let (row, _) = crate::index::checkpoint::rows("g", "t", 0, &mut other, 0);
                            checkpoint = row.state;
                            state = restore(&checkpoint);
                            since = state.next_offset;
                            generation += 2;
                        }
                        _ => {
                            // A zombie folds on and writes.
                            if let Some(z) = zombies.last_mut() {
                                fold(z, n);
                                let taken = z.take_rows();
                                write(&mut table, taken.survey_rows(&f));
                            }
                        }
                    }
                }
            }
        }
    }
}
