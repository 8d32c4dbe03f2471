-- The fingerprints of the day counts: the top `version` per (unit, day, source partition),
-- kept up to date by ClickHouse as fact rows arrive. The materialiser reads them at every
-- pass to see other writers' changes; from here that read covers a few rows per province-day
-- instead of every fact row of the last 396 days. `max` is idempotent, so the back-fill
-- below may overlap rows the views already saw (and may run again after an interruption).

CREATE TABLE IF NOT EXISTS {db}.satisfaction_day_prints
(
    framework String,
    province_code String,
    day Date,
    source_partition UInt32,
    top AggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, framework, province_code, source_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.satisfaction_day_prints_mv
TO {db}.satisfaction_day_prints
AS SELECT framework, province_code, day, source_partition, maxState(version) AS top
FROM {db}.satisfaction_day_counts
GROUP BY framework, province_code, day, source_partition;

INSERT INTO {db}.satisfaction_day_prints
SELECT framework, province_code, day, source_partition, maxState(version) AS top
FROM {db}.satisfaction_day_counts
GROUP BY framework, province_code, day, source_partition;

CREATE TABLE IF NOT EXISTS {db}.hotline_day_prints
(
    province_code String,
    day Date,
    source_partition UInt32,
    top AggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, province_code, source_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.hotline_day_prints_mv
TO {db}.hotline_day_prints
AS SELECT province_code, day, source_partition, maxState(version) AS top
FROM {db}.hotline_day_counts
GROUP BY province_code, day, source_partition;

INSERT INTO {db}.hotline_day_prints
SELECT province_code, day, source_partition, maxState(version) AS top
FROM {db}.hotline_day_counts
GROUP BY province_code, day, source_partition;
