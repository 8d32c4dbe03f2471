//! Index state checkpoints in ClickHouse. `index_checkpoints` holds one row per partition
//! (the latest by `next_offset` wins): the open block's cells. The ids folded and the
//! tickets, which grow with history, are appended apart to `index_state_chunks`, one chunk
//! per checkpoint with what changed over the offsets folded since the previous one, so a
//! checkpoint writes only what changed. A restored state takes the chunks that lie wholly below its
//! `next_offset` (a chunk written before a crash, past the checkpoint that survived, is
//! left out: its ids are folded again by the replay). Every 200 checkpoints, and on the
//! first after a restore, the chunk holds every id and ticket (from offset 0), so a restore reads
//! that one and those after it, not every chunk ever written.
use bincode::Options;

use crate::index::rows::{CheckpointRow, StateChunkRow};
use crate::index::state::{PartitionState, StateChunk};
use crate::tables;

/// Bumped whenever `PartitionState`'s layout changes; older checkpoints are ignored
/// (the partition is then rebuilt from the log).
pub const STATE_FORMAT: u8 = 6;

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Offset {
    offset: i64,
}

/// Variable-length integers: most counters of an open block are small.
fn options() -> impl Options {
    bincode::DefaultOptions::new()
}

pub fn encode(state: &PartitionState) -> Vec<u8> {
    let mut bytes = vec![STATE_FORMAT];
    bytes.extend(options().serialize(state).expect("state serialises"));
    bytes
}

/// The state in a checkpoint, if it has the current format.
pub fn decode(bytes: &[u8]) -> Option<PartitionState> {
    match bytes.split_first() {
        Some((&STATE_FORMAT, rest)) => options().deserialize(rest).ok(),
        _ => None,
    }
}

/// The rows that checkpoint a state: its own, and the chunk of what changed since the last
/// checkpoint (taken from the state; none when nothing did).
pub fn rows(
    key: &str,
    topic: &str,
    partition: i32,
    state: &mut PartitionState,
    now: u32,
) -> (CheckpointRow, Option<StateChunkRow>) {
    let chunk = state.take_chunk();
    let whole = chunk.from_offset == 0;
    let chunk =
        (whole || !chunk.ids.is_empty() || !chunk.tickets.is_empty()).then(|| StateChunkRow {
            consumer_group: key.to_owned(),
            topic: topic.to_owned(),
            partition: partition as u32,
            from_offset: chunk.from_offset,
            to_offset: chunk.to_offset,
            chunk: options().serialize(&chunk).expect("chunk serialises"),
        });
    let row = CheckpointRow {
        consumer_group: key.to_owned(),
        topic: topic.to_owned(),
        partition: partition as u32,
        next_offset: state.next_offset,
        state: encode(state),
        written_at: now,
    };
    (row, chunk)
}

/// A stored chunk.
pub fn decode_chunk(bytes: &[u8]) -> Option<StateChunk> {
    options().deserialize(bytes).ok()
}

/// The latest usable checkpoint of a partition with its ids, or an empty state at offset 0.
/// A ClickHouse error is returned, never mistaken for "no checkpoint".
pub async fn load(
    client: &clickhouse::Client,
    key: &str,
    topic: &str,
    partition: i32,
) -> Result<PartitionState, clickhouse::error::Error> {
    let sql = format!(
        "SELECT ?fields FROM {} FINAL WHERE consumer_group = ? AND topic = ? AND partition = ? ORDER BY next_offset DESC LIMIT 1",
        tables::INDEX_CHECKPOINTS
    );
    let row = client
        .query(&sql)
        .bind(key)
        .bind(topic)
        .bind(partition as u32)
        .fetch_optional::<CheckpointRow>()
        .await?;
    match row.as_ref().and_then(|row| decode(&row.state)) {
        Some(mut state) => {
            // The latest whole chunk (from offset 0), and the chunks after it.
            let sql = format!(
                "SELECT max(to_offset) AS offset FROM {} WHERE consumer_group = ? AND topic = ? AND partition = ? AND from_offset = 0 AND to_offset <= ?",
                tables::INDEX_STATE_CHUNKS
            );
            let whole = client
                .query(&sql)
                .bind(key)
                .bind(topic)
                .bind(partition as u32)
                .bind(state.next_offset)
                .fetch_optional::<Offset>()
                .await?
                .map_or(0, |o| o.offset);
            let sql = format!(
                "SELECT ?fields FROM {} FINAL WHERE consumer_group = ? AND topic = ? AND partition = ? AND to_offset <= ? AND ((from_offset = 0 AND to_offset = ?) OR from_offset >= ?) ORDER BY from_offset",
                tables::INDEX_STATE_CHUNKS
            );
            let chunks = client
                .query(&sql)
                .bind(key)
                .bind(topic)
                .bind(partition as u32)
                .bind(state.next_offset)
                .bind(whole)
                .bind(whole)
                .fetch_all::<StateChunkRow>()
                .await?;
            let mut decoded = Vec::with_capacity(chunks.len());
            for chunk in &chunks {
                // A chunk that does not decode is another format's: start from scratch.
                let Some(chunk) = decode_chunk(&chunk.chunk) else {
                    tracing::warn!(
                        topic,
                        partition,
                        "a state chunk does not decode; folding the partition from the beginning"
                    );
                    return Ok(PartitionState::new(partition as u32, 0));
                };
                decoded.push(chunk);
            }
            state.restore_chunks(decoded);
            tracing::info!(
                topic,
                partition,
                next_offset = state.next_offset,
                ids = state.stats().ids,
                tickets = state.stats().tickets,
                "index state restored from checkpoint"
            );
            Ok(state)
        }
        None => {
            tracing::info!(
                topic,
                partition,
                found = row.is_some(),
                "no usable checkpoint; folding the partition from the beginning"
            );
            Ok(PartitionState::new(partition as u32, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_of_another_format_is_not_used() {
        let state = PartitionState::new(3, 42);
        let bytes = encode(&state);
        assert_eq!(decode(&bytes).map(|s| s.next_offset), Some(42));
        let mut older = bytes.clone();
        older[0] = STATE_FORMAT - 1;
        assert!(decode(&older).is_none());
        assert!(decode(&[]).is_none());
    }
}
