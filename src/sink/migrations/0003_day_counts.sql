-- The index model: exact, additive day counts are the fact; windows, rankings and
-- breakdowns are computed from them. The tables of version 2 held one row per unit,
-- window and closed day, computed per input partition; they are replaced (everything
-- here is derived from the log: `sipas rebuild` refills it).
DROP TABLE IF EXISTS {db}.province_ranking_latest;
DROP TABLE IF EXISTS {db}.province_ranking_daily;
DROP TABLE IF EXISTS {db}.nation_latest;
DROP TABLE IF EXISTS {db}.satisfaction_daily;
DROP TABLE IF EXISTS {db}.satisfaction_latest;
DROP TABLE IF EXISTS {db}.hotline_kpi_daily;
DROP TABLE IF EXISTS {db}.hotline_kpi_latest;
DROP TABLE IF EXISTS {db}.index_checkpoints;

-- Survey day counts at the finest grain: one row per (unit, day, breakdown) and source.
-- A row is the sum of what one block of offsets (`source_block`, 4096 offsets) of one
-- input partition contributed to that cell, rewritten whole (with a higher `version`, the
-- last offset that changed it) while the block is open. Every row has a single writer;
-- a cell's count is the sum over sources. Read with FINAL (or `satisfaction_day_totals`).
CREATE TABLE IF NOT EXISTS {db}.satisfaction_day_counts
(
    framework String,
    province_code String,
    day Date,
    agency_id String,
    agency_level String,
    channel String,
    respondent_type String,
    procedure_code String,
    source_partition UInt32,
    source_block UInt32,
    respondents UInt32,
    criterion_ids Array(String),
    criterion_n1 Array(UInt32),
    criterion_n2 Array(UInt32),
    criterion_n3 Array(UInt32),
    criterion_n4 Array(UInt32),
    criterion_n5 Array(UInt32),
    criterion_missing Array(UInt32),
    expectation_ids Array(String),
    expectation_ticks Array(UInt32),
    version UInt64,
    criterion_valid Array(UInt32) ALIAS arrayMap((a, b, c, d, e) -> a + b + c + d + e, criterion_n1, criterion_n2, criterion_n3, criterion_n4, criterion_n5),
    criterion_satisfied Array(UInt32) ALIAS arrayMap((d, e) -> d + e, criterion_n4, criterion_n5)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (framework, province_code, day, agency_id, agency_level, channel, respondent_type, procedure_code, source_partition, source_block);

-- Hotline day counts per (province, day, agency, category, channel) and source. Signed:
-- when a ticket's later-arriving event moves a contribution (an earlier first response,
-- a re-rating, a forward to another agency), its block holds -1 on the old cell and +1 on
-- the new one. `past_due_delta`: +1 on the day a ticket becomes open past due, -1 on the
-- day it stops being; open past due as of a day = the sum of all deltas up to that day.
CREATE TABLE IF NOT EXISTS {db}.hotline_day_counts
(
    province_code String,
    day Date,
    agency_id String,
    category String,
    channel String,
    source_partition UInt32,
    source_block UInt32,
    received Int32,
    responded Int32,
    responded_on_time Int32,
    rated Int32,
    rated_satisfied Int32,
    reopened Int32,
    rejected Int32,
    past_due_delta Int32,
    response_bins Array(UInt8),
    response_counts Array(Int32),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (province_code, day, agency_id, category, channel, source_partition, source_block);

-- Exact totals per cell and day (summed over sources), for analysts' own windows and
-- breakdowns. Procedure codes are '' when the survey named none.
CREATE VIEW IF NOT EXISTS {db}.satisfaction_day_totals AS
SELECT
    framework, province_code, day, agency_id, agency_level, channel, respondent_type, procedure_code,
    sum(respondents) AS respondents,
    any(criterion_ids) AS criterion_ids,
    sumForEach(criterion_n1) AS criterion_n1,
    sumForEach(criterion_n2) AS criterion_n2,
    sumForEach(criterion_n3) AS criterion_n3,
    sumForEach(criterion_n4) AS criterion_n4,
    sumForEach(criterion_n5) AS criterion_n5,
    sumForEach(criterion_missing) AS criterion_missing,
    any(expectation_ids) AS expectation_ids,
    sumForEach(expectation_ticks) AS expectation_ticks
FROM {db}.satisfaction_day_counts FINAL
GROUP BY framework, province_code, day, agency_id, agency_level, channel, respondent_type, procedure_code;

CREATE VIEW IF NOT EXISTS {db}.hotline_day_totals AS
SELECT
    province_code, day, agency_id, category, channel,
    sum(received) AS received,
    sum(responded) AS responded,
    sum(responded_on_time) AS responded_on_time,
    sum(rated) AS rated,
    sum(rated_satisfied) AS rated_satisfied,
    sum(reopened) AS reopened,
    sum(rejected) AS rejected,
    sum(past_due_delta) AS past_due_delta
FROM {db}.hotline_day_counts FINAL
GROUP BY province_code, day, agency_id, category, channel;

-- Window values of provinces (and of hotline categories within a province), computed from
-- the day counts summed over every source partition, for every `as_of` day up to the
-- newest day with data anywhere; rewritten when a late event changes an input day.
-- `version` orders snapshots of the day counts (later snapshot wins).
CREATE TABLE IF NOT EXISTS {db}.satisfaction_daily
(
    framework String,
    unit_type String,
    unit_id String,
    province_code String,
    window String,
    period String,
    as_of Date,
    window_start Date,
    respondents UInt32,
    sipas Nullable(Float64),
    ci_low Nullable(Float64),
    ci_high Nullable(Float64),
    ci_n UInt32,
    ranked UInt8,
    min_sample UInt32,
    factor_ids Array(String),
    factor_values Array(Nullable(Float64)),
    factor_n Array(UInt32),
    criterion_ids Array(String),
    criterion_values Array(Nullable(Float64)),
    criterion_valid Array(UInt32),
    criterion_satisfied Array(UInt32),
    criterion_missing Array(UInt32),
    expectation_ids Array(String),
    expectation_shares Array(Float64),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(as_of)
ORDER BY (framework, unit_type, unit_id, window, as_of);

-- The rows of satisfaction_daily at the newest day with data (the same day for every unit).
CREATE TABLE IF NOT EXISTS {db}.satisfaction_latest
(
    framework String,
    unit_type String,
    unit_id String,
    province_code String,
    window String,
    period String,
    as_of Date,
    window_start Date,
    respondents UInt32,
    sipas Nullable(Float64),
    ci_low Nullable(Float64),
    ci_high Nullable(Float64),
    ci_n UInt32,
    ranked UInt8,
    min_sample UInt32,
    factor_ids Array(String),
    factor_values Array(Nullable(Float64)),
    factor_n Array(UInt32),
    criterion_ids Array(String),
    criterion_values Array(Nullable(Float64)),
    criterion_valid Array(UInt32),
    criterion_satisfied Array(UInt32),
    criterion_missing Array(UInt32),
    expectation_ids Array(String),
    expectation_shares Array(Float64),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (framework, unit_type, unit_id, window);

CREATE TABLE IF NOT EXISTS {db}.hotline_kpi_daily
(
    unit_type String,
    unit_id String,
    province_code String,
    window String,
    period String,
    as_of Date,
    window_start Date,
    received UInt32,
    responded UInt32,
    responded_on_time UInt32,
    on_time_rate Nullable(Float64),
    median_response_hours Nullable(Float64),
    rated UInt32,
    satisfaction_rate Nullable(Float64),
    reopened UInt32,
    reopen_rate Nullable(Float64),
    rejected UInt32,
    open_past_due UInt32,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(as_of)
ORDER BY (unit_type, unit_id, window, as_of);

CREATE TABLE IF NOT EXISTS {db}.hotline_kpi_latest
(
    unit_type String,
    unit_id String,
    province_code String,
    window String,
    period String,
    as_of Date,
    window_start Date,
    received UInt32,
    responded UInt32,
    responded_on_time UInt32,
    on_time_rate Nullable(Float64),
    median_response_hours Nullable(Float64),
    rated UInt32,
    satisfaction_rate Nullable(Float64),
    reopened UInt32,
    reopen_rate Nullable(Float64),
    rejected UInt32,
    open_past_due UInt32,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (unit_type, unit_id, window);

-- Partition state (the open block's cells) with the offset it belongs to; the ids folded
-- and the tickets are kept apart, appended per checkpoint as the chunk of what changed, so
-- a checkpoint does not copy them all again.
CREATE TABLE IF NOT EXISTS {db}.index_checkpoints
(
    consumer_group String,
    topic String,
    partition UInt32,
    next_offset Int64,
    state String,
    written_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (consumer_group, topic, partition);

-- What a partition's state changed at offsets [from_offset, to_offset): ids folded and
-- tickets changed; a chunk from offset 0 holds them all.
CREATE TABLE IF NOT EXISTS {db}.index_state_chunks
(
    consumer_group String,
    topic String,
    partition UInt32,
    from_offset Int64,
    to_offset Int64,
    chunk String
)
ENGINE = ReplacingMergeTree()
ORDER BY (consumer_group, topic, partition, from_offset, to_offset);

-- Standard competition rank (1, 2, 2, 4) by sipas among ranked provinces of the same
-- framework, window and day; unranked provinces have a NULL rank; values equal after
-- rounding to 9 decimals tie. Built with arrays (no window functions, no joins) so that it
-- runs on ClickHouse 18.16 and current releases. NULLs travel through the arrays as -1.
CREATE VIEW IF NOT EXISTS {db}.province_ranking_daily AS
SELECT
    framework, window, period, as_of, province_code,
    transform(province_code, {province_codes}, {province_names}, '') AS province_name,
    nullIf(sipas_or_minus1, -1) AS sipas,
    nullIf(access_or_minus1, -1) AS access,
    nullIf(procedure_or_minus1, -1) AS procedure,
    nullIf(staff_or_minus1, -1) AS staff,
    nullIf(result_or_minus1, -1) AS result,
    nullIf(feedback_or_minus1, -1) AS feedback,
    respondents,
    nullIf(ci_low_or_minus1, -1) AS ci_low,
    nullIf(ci_high_or_minus1, -1) AS ci_high,
    ranked,
    if(ranked = 1 AND sipas_or_minus1 >= 0, toNullable(toUInt32(1 + arrayCount(x -> x > round(sipas_or_minus1, 9), ranked_scores))), NULL) AS rank
FROM
(
    SELECT
        framework, window, as_of,
        groupArray(period) AS periods, groupArray(province_code) AS codes,
        groupArray(ifNull(sipas, -1)) AS scores,
        groupArray(respondents) AS ns,
        groupArray(ifNull(ci_low, -1)) AS lows,
        groupArray(ifNull(ci_high, -1)) AS highs,
        groupArray(ranked) AS flags,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'access')], -1)) AS f_access,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'procedure')], -1)) AS f_procedure,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'staff')], -1)) AS f_staff,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'result')], -1)) AS f_result,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'feedback')], -1)) AS f_feedback,
        arrayMap(s -> round(s, 9), arrayFilter((s, f) -> f = 1 AND s >= 0, scores, flags)) AS ranked_scores
    FROM {db}.satisfaction_daily FINAL
    WHERE unit_type = 'province' AND respondents > 0
    GROUP BY framework, window, as_of
)
ARRAY JOIN
    periods AS period, codes AS province_code, scores AS sipas_or_minus1, ns AS respondents,
    lows AS ci_low_or_minus1, highs AS ci_high_or_minus1, flags AS ranked,
    f_access AS access_or_minus1, f_procedure AS procedure_or_minus1, f_staff AS staff_or_minus1,
    f_result AS result_or_minus1, f_feedback AS feedback_or_minus1;

-- The ranking at the newest Vietnam day with data anywhere: every province at that one
-- day (a province without data that day shows its windows ending that day). Read from
-- satisfaction_latest (the rows of that day, a few hundred) rather than a year of daily rows.
CREATE VIEW IF NOT EXISTS {db}.province_ranking_latest AS
SELECT
    framework, window, period, as_of, province_code,
    transform(province_code, {province_codes}, {province_names}, '') AS province_name,
    nullIf(sipas_or_minus1, -1) AS sipas,
    nullIf(access_or_minus1, -1) AS access,
    nullIf(procedure_or_minus1, -1) AS procedure,
    nullIf(staff_or_minus1, -1) AS staff,
    nullIf(result_or_minus1, -1) AS result,
    nullIf(feedback_or_minus1, -1) AS feedback,
    respondents,
    nullIf(ci_low_or_minus1, -1) AS ci_low,
    nullIf(ci_high_or_minus1, -1) AS ci_high,
    ranked,
    if(ranked = 1 AND sipas_or_minus1 >= 0, toNullable(toUInt32(1 + arrayCount(x -> x > round(sipas_or_minus1, 9), ranked_scores))), NULL) AS rank
FROM
(
    SELECT
        framework, window, as_of,
        groupArray(period) AS periods, groupArray(province_code) AS codes,
        groupArray(ifNull(sipas, -1)) AS scores,
        groupArray(respondents) AS ns,
        groupArray(ifNull(ci_low, -1)) AS lows,
        groupArray(ifNull(ci_high, -1)) AS highs,
        groupArray(ranked) AS flags,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'access')], -1)) AS f_access,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'procedure')], -1)) AS f_procedure,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'staff')], -1)) AS f_staff,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'result')], -1)) AS f_result,
        groupArray(ifNull(factor_values[indexOf(factor_ids, 'feedback')], -1)) AS f_feedback,
        arrayMap(s -> round(s, 9), arrayFilter((s, f) -> f = 1 AND s >= 0, scores, flags)) AS ranked_scores
    FROM {db}.satisfaction_latest FINAL
    WHERE unit_type = 'province' AND respondents > 0
      AND as_of = (SELECT max(as_of) FROM {db}.satisfaction_latest WHERE unit_type = 'province')
    GROUP BY framework, window, as_of
)
ARRAY JOIN
    periods AS period, codes AS province_code, scores AS sipas_or_minus1, ns AS respondents,
    lows AS ci_low_or_minus1, highs AS ci_high_or_minus1, flags AS ranked,
    f_access AS access_or_minus1, f_procedure AS procedure_or_minus1, f_staff AS staff_or_minus1,
    f_result AS result_or_minus1, f_feedback AS feedback_or_minus1;

-- The nation at every day: the plain mean of the ranked provinces' SIPAS (as the ministry
-- reports "trung bình cả nước"), with a 95 % interval from the provinces' own (normal
-- approximation of a mean of independent shares: 1.96 × sqrt(Σ p(1-p)/n) / k), beside a
-- respondent-weighted mean over every province with a value.
CREATE VIEW IF NOT EXISTS {db}.nation_daily AS
SELECT
    framework, window, as_of,
    countIf(ranked = 1) AS provinces,
    avgIf(sipas, ranked = 1) AS sipas_mean_of_provinces,
    if(provinces > 0, greatest(0., sipas_mean_of_provinces - 196 * sqrt(ifNull(sumIf((sipas / 100) * (1 - sipas / 100) / greatest(ci_n, 1), ranked = 1 AND ci_n > 0), 0)) / provinces), NULL) AS ci_low,
    if(provinces > 0, least(100., sipas_mean_of_provinces + 196 * sqrt(ifNull(sumIf((sipas / 100) * (1 - sipas / 100) / greatest(ci_n, 1), ranked = 1 AND ci_n > 0), 0)) / provinces), NULL) AS ci_high,
    sum(sipas * respondents) / sum(respondents) AS sipas_respondent_weighted,
    sum(respondents) AS total_respondents
FROM {db}.satisfaction_daily FINAL
WHERE unit_type = 'province' AND isNotNull(sipas)
GROUP BY framework, window, as_of;

CREATE VIEW IF NOT EXISTS {db}.nation_latest AS
SELECT
    framework, window, as_of,
    countIf(ranked = 1) AS provinces,
    avgIf(sipas, ranked = 1) AS sipas_mean_of_provinces,
    if(provinces > 0, greatest(0., sipas_mean_of_provinces - 196 * sqrt(ifNull(sumIf((sipas / 100) * (1 - sipas / 100) / greatest(ci_n, 1), ranked = 1 AND ci_n > 0), 0)) / provinces), NULL) AS ci_low,
    if(provinces > 0, least(100., sipas_mean_of_provinces + 196 * sqrt(ifNull(sumIf((sipas / 100) * (1 - sipas / 100) / greatest(ci_n, 1), ranked = 1 AND ci_n > 0), 0)) / provinces), NULL) AS ci_high,
    sum(sipas * respondents) / sum(respondents) AS sipas_respondent_weighted,
    sum(respondents) AS total_respondents
FROM {db}.satisfaction_latest FINAL
WHERE unit_type = 'province' AND isNotNull(sipas)
  AND as_of = (SELECT max(as_of) FROM {db}.satisfaction_latest WHERE unit_type = 'province')
GROUP BY framework, window, as_of;
