//! The broker a figure was measured against: its storage engine and the size of its log,
//! printed beside every figure that goes through the broker (the local broker's speed
//! depends on both, BENCHMARKS.md "Broker storage").
//!
//! `scripts/services.sh` records in the broker's data directory, when it starts tansu,
//! `broker.info` with `storage=<STORAGE_ENGINE URL>` and `listener=<host:port>`. The
//! directory is `SIPAS_BROKER_DIR`, else `$SIPAS_HOME/tansu`, else `.local/tansu`.
use std::path::{Path, PathBuf};

/// The file `scripts/services.sh` writes into the broker's data directory.
pub(super) const INFO_FILE: &str = "broker.info";

/// What `broker.info` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct BrokerInfo {
    pub storage: Option<String>,
    pub listener: Option<String>,
}

/// `key=value` lines; unknown keys and other lines are ignored.
pub(super) fn parse_info(text: &str) -> BrokerInfo {
    let mut info = BrokerInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "storage" => info.storage = Some(value.trim().to_owned()),
            "listener" => info.listener = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    info
}

/// The database file of a `sqlite://` storage URL, relative to the broker's working
/// directory as tansu 0.6.0 resolves it (host and path joined, a leading `/` dropped);
/// `None` for any other engine (nothing on disk: `memory://`; elsewhere: `s3://`, `postgres://`).
pub(super) fn sqlite_file(storage: &str) -> Option<String> {
    let rest = storage.strip_prefix("sqlite://")?;
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_start_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

/// Whether `listener` is one of the comma-separated bootstrap servers `brokers`.
pub(super) fn serves(listener: &str, brokers: &str) -> bool {
    let norm = |s: &str| s.trim().replace("localhost", "127.0.0.1");
    brokers.split(',').any(|b| norm(b) == norm(listener))
}

/// The broker as measured: what the data directory says and what it holds now.
#[derive(Debug, PartialEq)]
pub(super) enum BrokerState {
    /// No `broker.info` for the configured brokers: not started by `scripts/services.sh`
    /// under that directory (another broker, Apache Kafka, an older start).
    Unknown { why: String },
    /// `log_bytes`: the sqlite database with its WAL and shared-memory files; `None` when
    /// the engine keeps nothing on this disk. `rss_mib`: the broker's resident memory.
    Known {
        storage: String,
        log_bytes: Option<u64>,
        rss_mib: Option<f64>,
    },
}

impl std::fmt::Display for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerState::Unknown { why } => write!(f, "broker storage unknown ({why})"),
            BrokerState::Known {
                storage,
                log_bytes,
                rss_mib,
            } => {
                write!(f, "{storage}, ")?;
                match log_bytes {
                    Some(bytes) => write!(f, "log {:.0} MiB on disk", *bytes as f64 / 1_048_576.0)?,
                    None => write!(f, "log not on disk")?,
                }
                if let Some(rss) = rss_mib {
                    write!(f, ", broker RSS {rss:.0} MiB")?;
                }
                Ok(())
            }
        }
    }
}

/// The broker's data directory (see the module documentation).
pub(super) fn broker_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIPAS_BROKER_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("SIPAS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".local"))
        .join("tansu")
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn rss_of_pid_file(path: &Path) -> Option<f64> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The broker behind `brokers` now, read from the data directory `dir`.
pub(super) fn snapshot_in(dir: &Path, brokers: &str) -> BrokerState {
    let info = match std::fs::read_to_string(dir.join(INFO_FILE)) {
        Ok(text) => parse_info(&text),
        Err(_) => {
            return BrokerState::Unknown {
                why: format!("no {}", dir.join(INFO_FILE).display()),
            }
        }
    };
    let (Some(storage), Some(listener)) = (info.storage, info.listener) else {
        return BrokerState::Unknown {
            why: format!(
                "{} lacks storage= or listener=",
                dir.join(INFO_FILE).display()
            ),
        };
    };
    if !serves(&listener, brokers) {
        return BrokerState::Unknown {
            why: format!(
                "{} is for {listener}, not {brokers}",
                dir.join(INFO_FILE).display()
            ),
        };
    }
    let log_bytes = sqlite_file(&storage).map(|file| {
        ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|suffix| file_bytes(&dir.join(format!("{file}{suffix}"))))
            .sum()
    });
    BrokerState::Known {
        storage,
        log_bytes,
        rss_mib: rss_of_pid_file(&dir.join("pid")),
    }
}

/// The configured brokers' state now, from [`broker_dir`].
pub(super) fn snapshot(brokers: &str) -> BrokerState {
    snapshot_in(&broker_dir(), brokers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_are_read_and_others_ignored() {
        let info = parse_info("# written by scripts/services.sh\nstorage=sqlite://tansu.db\nlistener = 127.0.0.1:19092 \nother=1\n");
        assert_eq!(info.storage.as_deref(), Some("sqlite://tansu.db"));
        assert_eq!(info.listener.as_deref(), Some("127.0.0.1:19092"));
        assert_eq!(parse_info("garbage"), BrokerInfo::default());
    }

    #[test]
    fn sqlite_urls_name_their_file_other_engines_none() {
        assert_eq!(
            sqlite_file("sqlite://tansu.db").as_deref(),
            Some("tansu.db")
        );
        assert_eq!(
            sqlite_file("sqlite://data/tansu.db?vacuum_into=x.db").as_deref(),
            Some("data/tansu.db")
        );
        assert_eq!(sqlite_file("sqlite://"), None);
        assert_eq!(sqlite_file("memory://tansu/"), None);
        assert_eq!(sqlite_file("s3://tansu/"), None);
    }

    #[test]
    fn a_listener_matches_one_of_the_bootstrap_servers() {
        assert!(serves("127.0.0.1:19092", "127.0.0.1:19092"));
        assert!(serves("127.0.0.1:19092", "kafka:9092, localhost:19092"));
        assert!(!serves("127.0.0.1:19092", "127.0.0.1:29092"));
    }

    #[test]
    fn a_directory_describes_its_broker() {
        let dir = std::env::temp_dir().join(format!("sipas-broker-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let unknown = snapshot_in(&dir, "127.0.0.1:19092");
        assert!(
            matches!(unknown, BrokerState::Unknown { .. }),
            "{unknown:?}"
        );
        std::fs::write(
            dir.join(INFO_FILE),
            "storage=sqlite://tansu.db\nlistener=127.0.0.1:19092\n",
        )
        .unwrap();
        std::fs::write(dir.join("tansu.db"), vec![0u8; 3 * 1_048_576]).unwrap();
        std::fs::write(dir.join("tansu.db-wal"), vec![0u8; 1_048_576]).unwrap();
        std::fs::write(dir.join("broker.log"), vec![0u8; 1_048_576]).unwrap();
        let state = snapshot_in(&dir, "127.0.0.1:19092");
        assert_eq!(
            state,
            BrokerState::Known {
                storage: "sqlite://tansu.db".into(),
                log_bytes: Some(4 * 1_048_576),
                rss_mib: None
            }
        );
        assert_eq!(state.to_string(), "sqlite://tansu.db, log 4 MiB on disk");
        assert!(matches!(
            snapshot_in(&dir, "127.0.0.1:29092"),
            BrokerState::Unknown { .. }
        ));
        std::fs::write(
            dir.join(INFO_FILE),
            "storage=memory://tansu/\nlistener=127.0.0.1:19092\n",
        )
        .unwrap();
        assert_eq!(
            snapshot_in(&dir, "127.0.0.1:19092").to_string(),
            "memory://tansu/, log not on disk"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
