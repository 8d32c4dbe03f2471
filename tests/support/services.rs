//! Private services for the fault tests: a ClickHouse or a tansu broker of the test's own
//! (own data directory and ports, started and stopped through scripts/services.sh), so
//! that stopping it disturbs no other test.
use std::path::PathBuf;
use std::process::Command;

use super::*;

/// Runs `scripts/services.sh <action> <service>` under `home` with `vars`.
fn services(home: &Path, action: &str, service: &str, vars: &[(&str, String)]) {
    let status = Command::new(root().join("scripts/services.sh"))
        .args([action, service])
        .env("SIPAS_HOME", home)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("services.sh runs");
    assert!(status.success(), "services.sh {action} {service} failed");
}

/// Removes a private service's data, unless the test is failing: then it stays for a look
/// (`scripts/services.sh up` with `SIPAS_HOME` set to it starts the service on it again).
fn keep_if_failed(home: &Path) {
    if std::thread::panicking() {
        eprintln!("kept for inspection: {}", home.display());
    } else {
        let _ = std::fs::remove_dir_all(home);
    }
}

fn private_home(what: &str) -> PathBuf {
    root().join(format!(
        "target/test-{what}-{}-{}",
        std::process::id(),
        free_port()
    ))
}

pub struct PrivateClickHouse {
    home: PathBuf,
    http_port: u16,
    tcp_port: u16,
}

impl PrivateClickHouse {
    /// Started and answering.
    pub fn start() -> Self {
        let clickhouse = Self {
            home: private_home("clickhouse"),
            http_port: free_port(),
            tcp_port: free_port(),
        };
        clickhouse.up();
        clickhouse
    }

    fn vars(&self) -> [(&'static str, String); 2] {
        [
            ("SIPAS_CH_HTTP_PORT", self.http_port.to_string()),
            ("SIPAS_CH_TCP_PORT", self.tcp_port.to_string()),
        ]
    }

    pub fn up(&self) {
        services(&self.home, "up", "clickhouse", &self.vars());
    }

    pub fn down(&self) {
        services(&self.home, "down", "clickhouse", &self.vars());
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.down();
        keep_if_failed(&self.home);
    }
}

/// A tansu broker on sqlite storage: topics, messages and committed offsets survive a
/// restart (`down` then `up`).
pub struct PrivateBroker {
    home: PathBuf,
    port: u16,
}

impl PrivateBroker {
    /// Not started yet: `up` starts it.
    pub fn new() -> Self {
        Self {
            home: private_home("broker"),
            port: free_port(),
        }
    }

    pub fn start() -> Self {
        let broker = Self::new();
        broker.up();
        broker
    }

    fn vars(&self) -> [(&'static str, String); 2] {
        [
            ("SIPAS_KAFKA_PORT", self.port.to_string()),
            ("SIPAS_KAFKA_STORAGE", "sqlite://tansu.db".into()),
        ]
    }

    /// Returns once the broker listens.
    pub fn up(&self) {
        services(&self.home, "up", "kafka", &self.vars());
    }

    pub fn down(&self) {
        services(&self.home, "down", "kafka", &self.vars());
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's own log (a panic shows there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("tansu/broker.log")).unwrap_or_default()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.down();
        keep_if_failed(&self.home);
    }
}
