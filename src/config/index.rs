//! `[index]`: the index processor.
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Run the index processor inside `sipas run`. Default true.
    pub enabled: bool,
    /// Names the index state's checkpoints (and prefixes a rebuild's consumer group).
    /// Default `sipas-index`.
    pub group_id: String,
    /// An event older than this behind its partition's newest event is counted as late
    /// (a metric only: it counts in its own day like any other). Default 48.
    pub allowed_lateness_hours: u32,
    /// Changed day counts are written, and the windows they change recomputed, once the
    /// oldest fold not yet written was read this long ago (also once 50,000 are pending).
    /// Default 150 ms.
    pub flush_interval_ms: u64,
    /// How often partition state is checkpointed to ClickHouse with its offset. Default 30000 ms.
    pub checkpoint_interval_ms: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "sipas-index".into(),
            allowed_lateness_hours: 48,
            flush_interval_ms: 150,
            checkpoint_interval_ms: 30_000,
        }
    }
}

impl IndexConfig {
    pub fn lateness_seconds(&self) -> i64 {
        i64::from(self.allowed_lateness_hours) * 3600
    }
}
