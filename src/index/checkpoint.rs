//! Index state checkpoints in ClickHouse. `index_checkpoints` holds one row per partition
//! (the latest by `next_offset` wins): the open block's cells. The ids folded and the
//! tickets, which grow with history, are appended apart to `index_state_chunks`, one chunk
//! per checkpoint with what changed over the offsets folded since the previous one, so a
//! checkpoint writes only what changed. Every 200 checkpoints, and on the first after a
//! restore, the chunk holds every id and ticket (from offset 0). The checkpoint row names
//! the chunks its state was stored in (`PartitionState::chain`: its latest whole chunk and
//! those it appended after it), and a restore reads exactly those. Not "the latest whole
//! chunk below `next_offset` and every chunk after it": around a takeover two processes
//! checkpoint the same partition for a while (the old owner until the revocation reaches
//! its processor, the new one from the checkpoint it restored), each cutting chunks at its
//! own offsets, and a whole chunk of one followed by the other's increments could leave
//! out the tickets and ids of the offsets between them. A chunk is a function of the log
//! over its offsets, so whichever process wrote `[from, to)` wrote the same chunk.
use bincode::Options;

use crate::index::rows::{CheckpointRow, StateChunkRow};
use crate::index::state::{PartitionState, StateChunk};
use crate::tables;

/// Bumped whenever `PartitionState`'s layout changes; older checkpoints are ignored
/// (the partition is then rebuilt from the log).
pub const STATE_FORMAT: u8 = 7;

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
    let chunk = chunk.is_stored().then(|| StateChunkRow {
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

/// Why a restored state's chunks cannot be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// A chunk the checkpoint names is not stored.
    Missing { from_offset: i64, to_offset: i64 },
    /// A chunk of another format.
    Undecodable { from_offset: i64, to_offset: i64 },
    /// A state past offset 0 that names no chunk.
    Empty,
}

/// The chunks of `state`'s chain, in its order, out of the partition's stored chunks
/// (`(from_offset, to_offset)` → bytes; others, such as another writer's, are ignored).
pub fn chain_chunks(
    state: &PartitionState,
    stored: &std::collections::HashMap<(i64, i64), Vec<u8>>,
) -> Result<Vec<StateChunk>, ChainError> {
    if state.chain().is_empty() && state.next_offset > 0 {
        return Err(ChainError::Empty);
    }
    state
        .chain()
        .iter()
        .map(|&(from_offset, to_offset)| {
            let bytes = stored
                .get(&(from_offset, to_offset))
                .ok_or(ChainError::Missing {
                    from_offset,
                    to_offset,
                })?;
            decode_chunk(bytes).ok_or(ChainError::Undecodable {
                from_offset,
                to_offset,
            })
        })
        .collect()
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
            // The state's chain: its whole chunk and the ones after it (the query also
            // returns other writers' chunks in that span; `chain_chunks` leaves them out).
            let whole = state.chain().first().map_or(0, |&(_, to)| to);
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
            let stored = chunks
                .into_iter()
                .map(|c| ((c.from_offset, c.to_offset), c.chunk))
                .collect();
            let decoded = match chain_chunks(&state, &stored) {
                Ok(decoded) => decoded,
                Err(error) => {
                    tracing::warn!(
                        topic,
                        partition,
                        next_offset = state.next_offset,
                        ?error,
                        "the checkpoint's state chunks cannot be read; folding the partition from the beginning"
                    );
                    return Ok(PartitionState::new(partition as u32, 0));
                }
            };
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
