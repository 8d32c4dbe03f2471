//! Versioned, idempotent schema migrations. Each file's statements use `IF NOT EXISTS`,
//! so a migration interrupted half-way is safe to run again; `schema_migrations` records
//! the versions that completed. `{db}` in a file is replaced by the configured database.
use crate::config::ClickHouseConfig;
use crate::sink::client::{client_without_database, ClickHouseError};
use crate::tables::SCHEMA_MIGRATIONS;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "raw_events",
        sql: include_str!("migrations/0001_raw_events.sql"),
    },
    Migration {
        version: 2,
        name: "indices",
        sql: include_str!("migrations/0002_indices.sql"),
    },
    Migration {
        version: 3,
        name: "day_counts",
        sql: include_str!("migrations/0003_day_counts.sql"),
    },
    Migration {
        version: 4,
        name: "day_prints",
        sql: include_str!("migrations/0004_day_prints.sql"),
    },
];

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Fills the placeholders of a migration: the database and the 2025 province table.
fn render(sql: &str, database: &str) -> String {
    let provinces = crate::domain::ProvinceRegistry::builtin().provinces_2025();
    let codes: Vec<String> = provinces.iter().map(|p| quote(&p.code)).collect();
    let names: Vec<String> = provinces.iter().map(|p| quote(&p.name)).collect();
    let values: Vec<String> = provinces
        .iter()
        .map(|p| format!("({}, {})", quote(&p.code), quote(&p.name)))
        .collect();
    sql.replace("{db}", database)
        .replace("{province_codes}", &format!("[{}]", codes.join(", ")))
        .replace("{province_names}", &format!("[{}]", names.join(", ")))
        .replace("{province_values}", &values.join(", "))
}

/// Splits a migration file into statements (`;` at line end), dropping `--` comments.
pub fn statements(sql: &str, database: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|line| match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(";\n")
        .map(|s| render(s.trim().trim_end_matches(';').trim(), database))
        .filter(|s| !s.is_empty())
        .collect()
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct AppliedVersion {
    version: u32,
}

#[derive(clickhouse::Row, serde::Serialize)]
struct MigrationRecord<'a> {
    version: u32,
    name: &'a str,
    applied_at: u32,
}

/// Applies every migration not yet recorded. Returns the versions applied now.
pub async fn migrate(config: &ClickHouseConfig) -> Result<Vec<u32>, ClickHouseError> {
    let client = client_without_database(config);
    let db = &config.database;
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .execute()
        .await?;
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.{SCHEMA_MIGRATIONS} (version UInt32, name String, applied_at DateTime('UTC')) \
             ENGINE = ReplacingMergeTree() ORDER BY version"
        ))
        .execute()
        .await?;
    let applied: Vec<u32> = client
        .query(&format!(
            "SELECT DISTINCT version FROM {db}.{SCHEMA_MIGRATIONS}"
        ))
        .fetch_all::<AppliedVersion>()
        .await?
        .into_iter()
        .map(|r| r.version)
        .collect();
    let mut now_applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for statement in statements(migration.sql, db) {
            client.query(&statement).execute().await.map_err(|source| {
                ClickHouseError::Migration {
                    version: migration.version,
                    name: migration.name.to_owned(),
                    source,
                }
            })?;
        }
        let mut insert = client
            .clone()
            .with_database(db)
            .insert::<MigrationRecord>(SCHEMA_MIGRATIONS)
            .await?;
        let applied_at = crate::domain::time::unix_now() as u32;
        insert
            .write(&MigrationRecord {
                version: migration.version,
                name: migration.name,
                applied_at,
            })
            .await?;
        insert.end().await?;
        now_applied.push(migration.version);
    }
    Ok(now_applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_substitutes_database() {
        let statements = statements(MIGRATIONS[0].sql, "analytics");
        assert!(statements.len() >= 5);
        assert!(statements
            .iter()
            .all(|s| !s.contains("{db}") && !s.ends_with(';')));
        let indices = super::statements(MIGRATIONS[1].sql, "analytics");
        assert!(indices.iter().all(|s| !s.contains("{province")));
        assert!(indices
            .iter()
            .any(|s| s.contains("'79', 'Thành phố Hồ Chí Minh'")));
        assert!(
            statements[0].starts_with("CREATE TABLE IF NOT EXISTS analytics.survey_submissions")
        );
    }

    #[test]
    fn versions_are_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
    }

    /// The names the migrations create, in the schema as it stands after the last one.
    fn created_by_migrations() -> std::collections::BTreeSet<String> {
        let mut created = std::collections::BTreeSet::new();
        for migration in MIGRATIONS {
            for statement in statements(migration.sql, "db") {
                let words: Vec<&str> = statement.split_whitespace().collect();
                let name = |at: usize| {
                    words[at]
                        .strip_prefix("db.")
                        .unwrap_or_else(|| panic!("{} is not a `{{db}}.` name", words[at]))
                        .to_owned()
                };
                match words.as_slice() {
                    ["CREATE", "TABLE" | "VIEW", "IF", "NOT", "EXISTS", ..] => {
                        created.insert(name(5));
                    }
                    ["CREATE", "MATERIALIZED", "VIEW", "IF", "NOT", "EXISTS", ..] => {
                        created.insert(name(6));
                    }
                    ["DROP", "TABLE" | "VIEW", "IF", "EXISTS", ..] => {
                        created.remove(&name(4));
                    }
                    ["CREATE" | "DROP" | "RENAME", ..] => {
                        panic!("a statement this test does not read: {statement}")
                    }
                    _ => {}
                }
            }
        }
        created
    }

    #[test]
    fn every_table_name_is_created_by_a_migration_and_every_created_one_is_named() {
        let named: std::collections::BTreeSet<String> =
            crate::tables::migrated().map(str::to_owned).collect();
        assert_eq!(
            named.len(),
            crate::tables::migrated().count(),
            "a name listed twice in `tables`"
        );
        assert_eq!(named, created_by_migrations());
        assert!(!named.contains(SCHEMA_MIGRATIONS));
    }
}
