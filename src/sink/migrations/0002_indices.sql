-- Rolling indices and hotline KPIs, written by the index processor.
-- Rows are keyed by unit, window and day; `version` (as_of, then a clock of the fact rows a
-- row was computed from) makes rewrites idempotent and lets the freshest computation win.
CREATE TABLE IF NOT EXISTS {db}.provinces
(
    province_code String,
    province_name String
)
ENGINE = ReplacingMergeTree()
ORDER BY province_code;

INSERT INTO {db}.provinces (province_code, province_name) VALUES {province_values};

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
    ranked UInt8,
    min_sample UInt32,
    factor_ids Array(String),
    factor_values Array(Nullable(Float64)),
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
    ranked UInt8,
    min_sample UInt32,
    factor_ids Array(String),
    factor_values Array(Nullable(Float64)),
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

-- Standard competition rank (1, 2, 2, 4) by sipas among ranked provinces of the same
-- framework and window; unranked provinces have a NULL rank. Built with arrays
-- (no window functions, no joins) so that it runs on ClickHouse 18.16 and current releases.
-- NULL values travel through the arrays as -1 (groupArray skips NULLs).
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
    if(ranked = 1 AND sipas_or_minus1 >= 0, toNullable(toUInt32(1 + arrayCount(x -> x > sipas_or_minus1, ranked_scores))), NULL) AS rank
FROM
(
    SELECT
        framework, window,
        groupArray(period) AS periods, groupArray(as_of) AS days, groupArray(province_code) AS codes,
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
        arrayFilter((s, f) -> f = 1 AND s >= 0, scores, flags) AS ranked_scores
    FROM {db}.satisfaction_latest FINAL
    WHERE unit_type = 'province' AND respondents > 0
    GROUP BY framework, window
)
ARRAY JOIN
    periods AS period, days AS as_of, codes AS province_code, scores AS sipas_or_minus1, ns AS respondents,
    lows AS ci_low_or_minus1, highs AS ci_high_or_minus1, flags AS ranked,
    f_access AS access_or_minus1, f_procedure AS procedure_or_minus1, f_staff AS staff_or_minus1,
    f_result AS result_or_minus1, f_feedback AS feedback_or_minus1;

-- Standard competition rank (1, 2, 2, 4) by sipas among ranked provinces of the same
-- framework and window and day; unranked provinces have a NULL rank. Built with arrays
-- (no window functions, no joins) so that it runs on ClickHouse 18.16 and current releases.
-- NULL values travel through the arrays as -1 (groupArray skips NULLs).
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
    if(ranked = 1 AND sipas_or_minus1 >= 0, toNullable(toUInt32(1 + arrayCount(x -> x > sipas_or_minus1, ranked_scores))), NULL) AS rank
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
        arrayFilter((s, f) -> f = 1 AND s >= 0, scores, flags) AS ranked_scores
    FROM {db}.satisfaction_daily FINAL
    WHERE unit_type = 'province'
    GROUP BY framework, window, as_of
)
ARRAY JOIN
    periods AS period, codes AS province_code, scores AS sipas_or_minus1, ns AS respondents,
    lows AS ci_low_or_minus1, highs AS ci_high_or_minus1, flags AS ranked,
    f_access AS access_or_minus1, f_procedure AS procedure_or_minus1, f_staff AS staff_or_minus1,
    f_result AS result_or_minus1, f_feedback AS feedback_or_minus1;

CREATE VIEW IF NOT EXISTS {db}.nation_latest AS
SELECT
    framework, window,
    max(as_of) AS as_of,
    count() AS provinces,
    avg(sipas) AS sipas_mean_of_provinces,
    sum(sipas * respondents) / sum(respondents) AS sipas_respondent_weighted,
    sum(respondents) AS total_respondents
FROM {db}.satisfaction_latest FINAL
WHERE unit_type = 'province' AND isNotNull(sipas)
GROUP BY framework, window;
