//! ClickHouse client construction and error classification.
use crate::config::ClickHouseConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("ClickHouse query failed: {0}")]
    Query(#[from] clickhouse::error::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: String,
        source: clickhouse::error::Error,
    },
}

/// A client for the configured database. Schema validation is off: it relies on
/// settings that ClickHouse 18.16 does not have, and rows are typed in `rows.rs`.
pub fn connect(config: &ClickHouseConfig) -> clickhouse::Client {
    client_without_database(config).with_database(&config.database)
}

pub fn client_without_database(config: &ClickHouseConfig) -> clickhouse::Client {
    let mut client = clickhouse::Client::default()
        .with_url(&config.url)
        .with_validation(false)
        .with_user(&config.user);
    if !config.password.is_empty() {
        client = client.with_password(&config.password);
    }
    client
}

/// ClickHouse exception codes that mean "this data is wrong", not "try again later".
const DATA_ERROR_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    128, // TOO_LARGE_ARRAY_SIZE
    190, // SIZES_OF_ARRAYS_DOESNT_MATCH
];

/// The `Code: N` of a ClickHouse exception message, if any.
pub fn exception_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + 6..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// True when retrying the same rows cannot succeed.
pub fn is_data_error(error: &clickhouse::error::Error) -> bool {
    match error {
        clickhouse::error::Error::BadResponse(message) => {
            exception_code(message).is_some_and(|c| DATA_ERROR_CODES.contains(&c))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_data_errors_by_exception_code() {
        let parse = clickhouse::error::Error::BadResponse(
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input".into(),
        );
        assert!(is_data_error(&parse));
        let missing_table = clickhouse::error::Error::BadResponse(
            "Code: 60, e.displayText() = DB::Exception: Table x doesn't exist".into(),
        );
        assert!(
            !is_data_error(&missing_table),
            "a missing table is an operations problem: retry, don't dead-letter"
        );
        assert!(!is_data_error(&clickhouse::error::Error::TimedOut));
        assert_eq!(
            exception_code("Code: 241. DB::Exception: Memory limit"),
            Some(241)
        );
        assert_eq!(exception_code("no code here"), None);
    }
}
