//! Where a partition starts when one consumer feeds both the raw tables and the index.
//! Pure: the rebalance callback asks, this answers.
//!
//! The consumer group's committed offset is the raw tables' position; the index state's
//! `next_offset` (from its checkpoint) is the index's. They differ after a restart: raw
//! rows are acknowledged batch by batch, checkpoints every few seconds. If the index is
//! behind, the partition starts at the index's offset and the messages below the committed
//! offset are folded again but not written again (`index_only`). If the index is ahead (or
//! nothing was committed), the partition starts where the group would and the index skips
//! what its state already holds.

/// How an assigned partition is consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Offset to start at instead of the committed one.
    pub seek_to: Option<i64>,
    /// Messages below this offset were acknowledged as raw rows before: fold only.
    pub raw_from: Option<i64>,
}

/// `index_next` is the restored state's next offset; `committed` the group's offset for
/// the partition, if it has one.
pub fn start(index_next: i64, committed: Option<i64>) -> Start {
    match committed {
        Some(committed) if index_next < committed => Start {
            seek_to: Some(index_next),
            raw_from: Some(committed),
        },
        _ => Start {
            seek_to: None,
            raw_from: None,
        },
    }
}

/// A rebuild starts every partition at its beginning and writes no raw rows.
pub fn rebuild_start() -> Start {
    Start {
        seek_to: Some(0),
        raw_from: Some(i64::MAX),
    }
}

impl Start {
    pub fn index_only(&self, offset: i64) -> bool {
        self.raw_from.is_some_and(|raw_from| offset < raw_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_agree() {
        let s = start(10, Some(10));
        assert_eq!(s.seek_to, None);
        assert!(!s.index_only(10));
    }

    #[test]
    fn index_behind_raw_starts_at_the_index_and_refolds_without_rewriting() {
        let s = start(4, Some(10));
        assert_eq!(s.seek_to, Some(4));
        assert!(s.index_only(4));
        assert!(s.index_only(9));
        assert!(!s.index_only(10));
    }

    #[test]
    fn index_ahead_of_raw_lets_raw_catch_up() {
        let s = start(20, Some(15));
        assert_eq!(s.seek_to, None);
        assert!(!s.index_only(15));
    }

    #[test]
    fn nothing_committed_starts_where_the_group_would() {
        let s = start(20, None);
        assert_eq!(s.seek_to, None);
        assert!(!s.index_only(0));
    }

    #[test]
    fn rebuild_never_writes_raw_rows() {
        let s = rebuild_start();
        assert_eq!(s.seek_to, Some(0));
        assert!(s.index_only(0));
        assert!(s.index_only(1_000_000));
    }
}
