//! `sipas run`'s two long-lived tasks, the consumer loop and the index processor, and
//! what happens when one of them ends before the other.
use tokio::task::JoinError;

use crate::index::processor::IndexProcessor;
use crate::pipeline::deliver::RunSummary;
use crate::pipeline::ingest::{IngestPipeline, PipelineError};
use crate::shutdown::{Shutdown, ShutdownTrigger};

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("ingest task")]
    IngestTask(#[source] JoinError),
    #[error("index processor task")]
    IndexTask(#[source] JoinError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("index processor stopped unexpectedly")]
    IndexStopped,
}

/// Runs the consumer loop and, if there is one, the index processor until both end.
/// When either ends on its own (a failure), `trigger` stops the other: a supervisor
/// restarts the process and the index state resumes from its checkpoints. `stop` tells
/// a requested shutdown from an early end.
pub async fn supervise(
    pipeline: IngestPipeline,
    index: Option<IndexProcessor>,
    stop: &Shutdown,
    trigger: &ShutdownTrigger,
) -> Result<RunSummary, SuperviseError> {
    let mut ingest = tokio::spawn(pipeline.run());
    let Some(index) = index else {
        return Ok(ingest.await.map_err(SuperviseError::IngestTask)??);
    };
    let mut index = tokio::spawn(index.run());
    tokio::select! {
        summary = &mut ingest => {
            let summary = summary.map_err(SuperviseError::IngestTask);
            if !matches!(summary, Ok(Ok(_))) {
                trigger.trigger();
            }
            index.await.map_err(SuperviseError::IndexTask)?;
            Ok(summary??)
        }
        finished = &mut index => {
            finished.map_err(SuperviseError::IndexTask)?;
            if !stop.is_triggered() {
                // It only ends early when its writes were abandoned.
                trigger.trigger();
                let _ = ingest.await;
                return Err(SuperviseError::IndexStopped);
            }
            Ok(ingest.await.map_err(SuperviseError::IngestTask)??)
        }
    }
}
