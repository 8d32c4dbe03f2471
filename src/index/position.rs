//! Where a partition's messages go when one consumer feeds both the raw tables and the
//! index. Pure: the consumer loop asks, this answers.
//!
//! The consumer group's committed offset is the raw tables' position; the index state's
//! `next_offset` (from its checkpoint) is the index's. They differ after a restart: raw
//! rows are acknowledged batch by batch, checkpoints every few seconds. On assignment the
//! consumer starts at the committed offset. If the index is behind, the partition is
//! re-positioned at the index's offset and the messages below the committed offset are
//! folded again but not written again (`index_only`). If the index is ahead, the raw
//! path proceeds and the index skips what it already holds.

/// What to do with one consumed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Process it: raw rows unless `index_only`, and the fold.
    Admit { index_only: bool },
    /// Seek the partition to this offset and drop the message (it will be read again).
    Seek(i64),
    /// Drop it: fetched before the seek took effect.
    Drop,
}

/// One assigned partition, from the first message after its assignment onwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPosition {
    /// The index state's next offset when the partition was assigned.
    index_from: i64,
    /// The first offset the consumer delivered: where the raw tables stand. Messages below
    /// it were acknowledged before and are only re-read for the index.
    raw_from: Option<i64>,
    /// True once the message at `index_from` (or the log's start past it) was admitted.
    aligned: bool,
    seeked: bool,
}

impl PartitionPosition {
    /// `index_from` is the index state's `next_offset` (0 for a rebuild or no checkpoint).
    pub fn new(index_from: i64) -> Self {
        Self {
            index_from,
            raw_from: None,
            aligned: false,
            seeked: false,
        }
    }

    /// A partition fed only to the index (rebuild): every message is `index_only`.
    pub fn index_only(index_from: i64) -> Self {
        Self {
            raw_from: Some(i64::MAX),
            ..Self::new(index_from)
        }
    }

    /// `log_start` is asked for only when a message arrives after a seek that did not land:
    /// if the log no longer holds `index_from` (retention), the gap is accepted from the
    /// log's first message on (later ones may still be from before the seek).
    pub fn observe(&mut self, offset: i64, log_start: impl FnOnce() -> Option<i64>) -> Verdict {
        let raw_from = *self.raw_from.get_or_insert(offset);
        if !self.aligned {
            if offset == self.index_from || offset < self.index_from {
                // At the index's position, or below it (the raw path is behind; the index
                // skips what it already holds).
                self.aligned = true;
            } else if !self.seeked {
                self.seeked = true;
                return Verdict::Seek(self.index_from);
            } else if log_start().is_some_and(|start| start > self.index_from && offset <= start) {
                // The seek fell before the log's start and the consumer went to the start.
                tracing::warn!(
                    next_offset = self.index_from,
                    offset,
                    "the log no longer holds the index state's next offset; continuing from the log start"
                );
                self.aligned = true;
            } else {
                return Verdict::Drop;
            }
        }
        Verdict::Admit {
            index_only: offset < raw_from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_start() -> Option<i64> {
        None
    }

    #[test]
    fn positions_agree() {
        let mut p = PartitionPosition::new(10);
        assert_eq!(p.observe(10, no_start), Verdict::Admit { index_only: false });
        assert_eq!(p.observe(11, no_start), Verdict::Admit { index_only: false });
    }

    #[test]
    fn index_behind_raw_seeks_back_and_refolds_without_rewriting() {
        let mut p = PartitionPosition::new(4);
        assert_eq!(p.observe(10, no_start), Verdict::Seek(4));
        // Prefetched before the seek: dropped, it will come again.
        assert_eq!(p.observe(11, no_start), Verdict::Drop);
        assert_eq!(p.observe(4, no_start), Verdict::Admit { index_only: true });
        assert_eq!(p.observe(9, no_start), Verdict::Admit { index_only: true });
        assert_eq!(p.observe(10, no_start), Verdict::Admit { index_only: false });
        assert_eq!(p.observe(11, no_start), Verdict::Admit { index_only: false });
    }

    #[test]
    fn index_ahead_of_raw_lets_raw_catch_up() {
        let mut p = PartitionPosition::new(20);
        assert_eq!(p.observe(15, no_start), Verdict::Admit { index_only: false });
        assert_eq!(p.observe(16, no_start), Verdict::Admit { index_only: false });
    }

    #[test]
    fn a_log_truncated_past_the_index_position_is_accepted() {
        let mut p = PartitionPosition::new(4);
        assert_eq!(p.observe(50, || Some(40)), Verdict::Seek(4));
        assert_eq!(p.observe(51, || Some(40)), Verdict::Drop, "fetched before the seek");
        assert_eq!(p.observe(40, || Some(40)), Verdict::Admit { index_only: true });
        // Raw rows resume at the first offset the consumer delivered.
        assert_eq!(p.observe(50, no_start), Verdict::Admit { index_only: false });
    }

    #[test]
    fn rebuild_never_writes_raw_rows() {
        let mut p = PartitionPosition::index_only(0);
        assert_eq!(p.observe(0, no_start), Verdict::Admit { index_only: true });
        assert_eq!(p.observe(1, no_start), Verdict::Admit { index_only: true });
    }
}
