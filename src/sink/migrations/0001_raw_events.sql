-- Raw event store: one row per valid event, duplicates collapse by id.
CREATE TABLE IF NOT EXISTS {db}.survey_submissions
(
    submission_id String,
    framework String,
    submitted_at DateTime('UTC'),
    submitted_date Date,
    province_code String,
    province_code_original String,
    province_code_system UInt16,
    agency_id String,
    agency_level String,
    procedure_code String,
    channel String,
    respondent_type String,
    answer_criteria Array(String),
    answer_scores Array(UInt8),
    expectations Array(String),
    encoding String,
    _topic String,
    _partition UInt32,
    _offset UInt64,
    ingested_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY submission_id;

CREATE TABLE IF NOT EXISTS {db}.hotline_events
(
    event_id String,
    ticket_id String,
    type String,
    occurred_at DateTime('UTC'),
    occurred_date Date,
    province_code String,
    province_code_original String,
    province_code_system UInt16,
    channel String,
    category String,
    agency_id String,
    due_at Nullable(DateTime('UTC')),
    rating String,
    reason String,
    reporter_phone_hash String,
    reporter_email_hash String,
    encoding String,
    _topic String,
    _partition UInt32,
    _offset UInt64,
    ingested_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY event_id;

CREATE VIEW IF NOT EXISTS {db}.survey_submissions_dedup AS
SELECT * FROM {db}.survey_submissions FINAL;

CREATE VIEW IF NOT EXISTS {db}.hotline_events_dedup AS
SELECT * FROM {db}.hotline_events FINAL;

CREATE VIEW IF NOT EXISTS {db}.survey_answers AS
SELECT
    submission_id, framework, submitted_at, submitted_date, province_code, agency_id,
    agency_level, channel, respondent_type,
    criterion_id,
    splitByChar('.', criterion_id)[1] AS factor_id,
    nullIf(answer_score, 0) AS score
FROM {db}.survey_submissions_dedup
ARRAY JOIN answer_criteria AS criterion_id, answer_scores AS answer_score;
