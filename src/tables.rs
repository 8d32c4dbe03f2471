//! The names of every ClickHouse table and view: the migrations create them
//! (`src/sink/migrations/`), the writers insert into them, `serve` and the benchmarks
//! read them, `sipas status` counts them. A new table or view gets its constant here and
//! its place in one of the lists; `sink::migrations`' tests check the lists against the
//! migrations.

/// Raw events as consumed, one row per message (with duplicates until merges).
pub const SURVEY_SUBMISSIONS: &str = "survey_submissions";
pub const HOTLINE_EVENTS: &str = "hotline_events";
/// The raw tables' views: one row per event id, and each survey's answers.
pub const SURVEY_SUBMISSIONS_DEDUP: &str = "survey_submissions_dedup";
pub const HOTLINE_EVENTS_DEDUP: &str = "hotline_events_dedup";
pub const SURVEY_ANSWERS: &str = "survey_answers";

/// The 2025 province table (code and name), filled by the migration.
pub const PROVINCES: &str = "provinces";

/// The index's tables: day-count facts, window values, the processor's checkpoints.
pub const SATISFACTION_DAY_COUNTS: &str = "satisfaction_day_counts";
pub const HOTLINE_DAY_COUNTS: &str = "hotline_day_counts";
/// The day counts' fingerprints (top `version` per unit, day and source partition), kept
/// by materialised views on the day-count tables.
pub const SATISFACTION_DAY_PRINTS: &str = "satisfaction_day_prints";
pub const HOTLINE_DAY_PRINTS: &str = "hotline_day_prints";
pub const SATISFACTION_DAILY: &str = "satisfaction_daily";
pub const SATISFACTION_LATEST: &str = "satisfaction_latest";
pub const HOTLINE_KPI_DAILY: &str = "hotline_kpi_daily";
pub const HOTLINE_KPI_LATEST: &str = "hotline_kpi_latest";
pub const INDEX_CHECKPOINTS: &str = "index_checkpoints";
pub const INDEX_STATE_CHUNKS: &str = "index_state_chunks";

/// The index's views for analysts and the read API.
pub const SATISFACTION_DAY_TOTALS: &str = "satisfaction_day_totals";
pub const HOTLINE_DAY_TOTALS: &str = "hotline_day_totals";
pub const PROVINCE_RANKING_DAILY: &str = "province_ranking_daily";
pub const PROVINCE_RANKING_LATEST: &str = "province_ranking_latest";
pub const NATION_DAILY: &str = "nation_daily";
pub const NATION_LATEST: &str = "nation_latest";

/// The versions of the migrations applied (created by `sink::migrations::migrate`
/// itself, not by a migration).
pub const SCHEMA_MIGRATIONS: &str = "schema_migrations";

/// The raw tables and their views, in the order `sipas status` prints them.
pub const RAW: &[&str] = &[
    SURVEY_SUBMISSIONS,
    SURVEY_SUBMISSIONS_DEDUP,
    SURVEY_ANSWERS,
    HOTLINE_EVENTS,
    HOTLINE_EVENTS_DEDUP,
];

/// Every table the index writes, for `sipas status`.
pub const INDEX: &[&str] = &[
    SATISFACTION_DAY_COUNTS,
    HOTLINE_DAY_COUNTS,
    SATISFACTION_DAY_PRINTS,
    HOTLINE_DAY_PRINTS,
    SATISFACTION_DAILY,
    SATISFACTION_LATEST,
    HOTLINE_KPI_DAILY,
    HOTLINE_KPI_LATEST,
    INDEX_CHECKPOINTS,
    INDEX_STATE_CHUNKS,
];

/// The rest the migrations create: the province table and the index's views.
pub const REFERENCE_AND_VIEWS: &[&str] = &[
    PROVINCES,
    SATISFACTION_DAY_TOTALS,
    HOTLINE_DAY_TOTALS,
    PROVINCE_RANKING_DAILY,
    PROVINCE_RANKING_LATEST,
    NATION_DAILY,
    NATION_LATEST,
];

/// The materialised views that keep the fingerprint tables as day counts arrive.
pub const SATISFACTION_DAY_PRINTS_MV: &str = "satisfaction_day_prints_mv";
pub const HOTLINE_DAY_PRINTS_MV: &str = "hotline_day_prints_mv";
pub const FEEDS: &[&str] = &[SATISFACTION_DAY_PRINTS_MV, HOTLINE_DAY_PRINTS_MV];

/// Every table and view the migrations create.
pub fn migrated() -> impl Iterator<Item = &'static str> {
    RAW.iter()
        .chain(INDEX)
        .chain(REFERENCE_AND_VIEWS)
        .chain(FEEDS)
        .copied()
}
