//! What a feeder (the consumer loop of `sipas run`, or a rebuild's) hands the index
//! processor, in the order it consumed: assignments with their restored state, folds,
//! revocations.
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::contract::decode::Decoded;
use crate::index::state::PartitionState;

/// A message as the index folds it: its valid event, or `None` for an offset that only
/// advances the partition (invalid input is the dead-letter topic's).
#[derive(Debug)]
pub struct FoldInput {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub produced_ms: Option<i64>,
    pub event: Option<Decoded>,
}

/// What a feeder sends, in the order it consumed.
#[derive(Debug)]
pub enum IndexInput {
    /// A partition was assigned, with the state its messages continue.
    Assign {
        topic: String,
        partition: i32,
        state: Box<PartitionState>,
    },
    Fold(Vec<FoldInput>),
    /// Partitions were revoked: their state is dropped (the next owner restores it).
    Revoke(Vec<(String, i32)>),
}

/// The feeder's end of the channel.
#[derive(Clone)]
pub struct IndexHandle {
    pub(crate) sender: mpsc::Sender<IndexInput>,
}

/// The processor is gone (it stopped on a fatal error or at shutdown).
#[derive(Debug, thiserror::Error)]
#[error("the index processor has stopped")]
pub struct IndexStopped;

impl IndexHandle {
    pub async fn assign(
        &self,
        topic: String,
        partition: i32,
        state: PartitionState,
    ) -> Result<(), IndexStopped> {
        self.sender
            .send(IndexInput::Assign {
                topic,
                partition,
                state: Box::new(state),
            })
            .await
            .map_err(|_| IndexStopped)
    }

    pub async fn fold(&self, folds: Vec<FoldInput>) -> Result<(), IndexStopped> {
        if folds.is_empty() {
            return Ok(());
        }
        self.sender
            .send(IndexInput::Fold(folds))
            .await
            .map_err(|_| IndexStopped)
    }

    pub async fn revoke(&self, partitions: Vec<(String, i32)>) -> Result<(), IndexStopped> {
        if partitions.is_empty() {
            return Ok(());
        }
        self.sender
            .send(IndexInput::Revoke(partitions))
            .await
            .map_err(|_| IndexStopped)
    }
}
