//! Index state checkpoints in ClickHouse (`index_checkpoints`): one row per partition and
//! flush, keyed by `index.group_id`; the row with the highest `next_offset` is the latest.
use crate::index::state::PartitionState;
use crate::sink::index_rows::CheckpointRow;

/// Bumped whenever `PartitionState`'s layout changes; older checkpoints are ignored
/// (the partition is then rebuilt from the log).
pub const STATE_FORMAT: u8 = 4;

pub fn encode(state: &PartitionState) -> Vec<u8> {
    let mut bytes = vec![STATE_FORMAT];
    bytes.extend(bincode::serialize(state).expect("state serialises"));
    bytes
}

/// The state in a checkpoint, if it has the current format.
pub fn decode(bytes: &[u8]) -> Option<PartitionState> {
    match bytes.split_first() {
        Some((&STATE_FORMAT, rest)) => bincode::deserialize(rest).ok(),
        _ => None,
    }
}

/// The latest usable checkpoint of a partition, or an empty state at offset 0.
/// A ClickHouse error is returned, never mistaken for "no checkpoint".
pub async fn load(
    client: &clickhouse::Client,
    key: &str,
    topic: &str,
    partition: i32,
) -> Result<PartitionState, clickhouse::error::Error> {
    let row = client
        .query("SELECT ?fields FROM index_checkpoints FINAL WHERE consumer_group = ? AND topic = ? AND partition = ? ORDER BY next_offset DESC LIMIT 1")
        .bind(key)
        .bind(topic)
        .bind(partition as u32)
        .fetch_optional::<CheckpointRow>()
        .await?;
    match row.as_ref().and_then(|row| decode(&row.state)) {
        Some(state) => {
            tracing::info!(
                topic,
                partition,
                next_offset = state.next_offset,
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
            Ok(PartitionState::new(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_of_another_format_is_not_used() {
        let state = PartitionState::new(42);
        let bytes = encode(&state);
        assert_eq!(decode(&bytes).map(|s| s.next_offset), Some(42));
        let mut older = bytes.clone();
        older[0] = STATE_FORMAT - 1;
        assert!(decode(&older).is_none());
        assert!(decode(&[]).is_none());
    }
}
