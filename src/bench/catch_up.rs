//! `sipas bench --catch-up N`: the memory and speed of a fresh `sipas run` process that
//! catches up on a log of N events (one year of event time, 34 provinces × `--agencies` ×
//! `--frameworks`). The process is a child of the benchmark, so its peak RSS is that of
//! `sipas run` alone: nothing the benchmark generated or folded before is counted.
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sipas_stream::assemble::end_offsets;
use sipas_stream::config::Config;
use sipas_stream::domain::{Framework, FrameworkCatalog};
use sipas_stream::kafka::producer;

use super::fixtures::{bench_env, drop_bench_database, fresh_stack, produce, year_simulator};
use super::measure::{covered, print_table_head, process_cpu_seconds, process_status_mib, scale};
use super::BenchArgs;

/// The framework every bench copy is made from (see `fixtures::bench_frameworks`).
const BASE_FRAMEWORK: &str = "BNV-2640-2017";
/// How often the child's memory and progress are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How long the child may take to catch up, and to stop after SIGTERM.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(3600);
const STOP_LIMIT: Duration = Duration::from_secs(120);

pub(super) async fn catch_up(
    base: &Config,
    config_path: Option<&Path>,
    args: &BenchArgs,
    events: u64,
) -> Result<()> {
    let (config, _decoder, framework_list) = fresh_stack(base, args).await?;
    let work = std::env::temp_dir().join(format!(
        "sipas-bench-catch-up-{}",
        config.clickhouse.database
    ));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let frameworks_dir = write_frameworks(&config, &framework_list, &work.join("frameworks"))?;

    let mut sim = year_simulator(args, framework_list, 11, events);
    let producer = producer::idempotent_producer(&config.kafka)?;
    let bar = crate::progress::events("produce", events);
    produce(&config, &mut sim, &producer, events, &bar, 0).await?;
    bar.finish_and_clear();
    drop(producer);
    let ends = end_offsets(&config).await?;
    let total: i64 = ends.values().sum();

    let listen = free_loopback_address()?;
    let log_path = work.join("sipas-run.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    if let Some(path) = config_path {
        command.arg("--config").arg(path);
    }
    let mut child = command
        .arg("run")
        .envs(bench_env(&config))
        .env("SIPAS__CONTRACT__FRAMEWORKS_DIR", &frameworks_dir)
        .env("SIPAS__METRICS__LISTEN", &listen)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting `sipas run`")?;
    let pid = child.id().context("`sipas run` exited at once")?;
    let pid_text = pid.to_string();

    let bar = crate::progress::events("catch-up", total.max(0) as u64);
    let started = Instant::now();
    let mut peak_sampled = 0.0f64;
    let (indexed, stored) = loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "`sipas run` exited ({status}) before catching up; its log: {}",
                log_path.display()
            );
        }
        if started.elapsed() > CATCH_UP_LIMIT {
            bail!(
                "`sipas run` did not catch up within {} s; its log: {}",
                CATCH_UP_LIMIT.as_secs(),
                log_path.display()
            );
        }
        peak_sampled = peak_sampled.max(process_status_mib(&pid_text, "VmRSS").unwrap_or(0.0));
        // The endpoint is not up during start-up; that is not an error.
        if let Ok(text) = scrape(&listen).await {
            let indexed = covered_by(&gauges(&text, "sipas_index_position"), &ends);
            let stored = covered_by(&gauges(&text, "sipas_stored_offset"), &ends);
            bar.set_position(indexed.min(stored).max(0) as u64);
            if indexed >= total && stored >= total {
                break (indexed, stored);
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    };
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let peak = process_status_mib(&pid_text, "VmHWM").unwrap_or(peak_sampled);
    let cpu = process_cpu_seconds(pid).unwrap_or(f64::NAN);

    // SAFETY: kill sends a signal to the child this function started and still waits on.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = tokio::time::timeout(STOP_LIMIT, child.wait())
        .await
        .with_context(|| {
            format!(
                "`sipas run` did not stop within {} s of SIGTERM",
                STOP_LIMIT.as_secs()
            )
        })??;

    let broker = super::broker::snapshot(&config.kafka.brokers);
    print_table_head(&format!(
        "sipas bench --catch-up: a fresh `sipas run` process (raw rows, DLQ and index) catching up on {events} events (one year of event time), {} partitions, {}; broker: {broker}",
        ends.len(),
        scale(args)
    ));
    println!(
        "| catch-up: raw rows stored and index rows written up to the log's end | {:.1} s ({:.0} events/s); {cpu:.1} s CPU |",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!("| peak RSS of `sipas run` (VmHWM) | **{peak:.1} MiB** |");
    println!(
        "| highest RSS sampled every {} ms | {peak_sampled:.1} MiB |",
        SAMPLE_EVERY.as_millis()
    );
    println!("| messages indexed / stored at the end | {indexed} / {stored} of {total} |");
    println!("| `sipas run` stopped on SIGTERM | {status} |");
    if !status.success() {
        bail!(
            "`sipas run` stopped with {status}; its log: {}",
            log_path.display()
        );
    }
    if !args.keep {
        drop_bench_database(&config).await?;
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!(
            "kept: database {}, {}",
            config.clickhouse.database,
            work.display()
        );
    }
    Ok(())
}

/// The configured frameworks plus the bench copies of [`BASE_FRAMEWORK`] as files in `dir`,
/// so that a child process validates the copies' surveys as the benchmark's decoder does.
fn write_frameworks(config: &Config, frameworks: &[Framework], dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let source = &config.contract.frameworks_dir;
    let mut base_text = None;
    for entry in
        std::fs::read_dir(source).with_context(|| format!("reading {}", source.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)?;
            if path.file_stem().is_some_and(|s| s == BASE_FRAMEWORK) {
                base_text = Some(text.clone());
            }
            std::fs::write(dir.join(path.file_name().context("a file name")?), text)?;
        }
    }
    let base_text = base_text
        .with_context(|| format!("{BASE_FRAMEWORK}.toml missing in {}", source.display()))?;
    let id_line = format!("\nid = \"{BASE_FRAMEWORK}\"\n");
    for framework in frameworks.iter().filter(|f| f.id != BASE_FRAMEWORK) {
        let Some(copy) = replace_once(
            &base_text,
            &id_line,
            &format!("\nid = \"{}\"\n", framework.id),
        ) else {
            bail!("{BASE_FRAMEWORK}.toml has no single line `id = \"{BASE_FRAMEWORK}\"` to copy it by");
        };
        std::fs::write(dir.join(format!("{}.toml", framework.id)), copy)?;
    }
    let written = FrameworkCatalog::load_dir(dir)?;
    for framework in frameworks {
        anyhow::ensure!(
            written.get(&framework.id).is_some(),
            "framework {} missing from {}",
            framework.id,
            dir.display()
        );
    }
    Ok(dir.to_owned())
}

/// `text` with the only occurrence of `from` replaced, or `None` if there is not exactly one.
fn replace_once(text: &str, from: &str, to: &str) -> Option<String> {
    (text.matches(from).count() == 1).then(|| text.replacen(from, to, 1))
}

/// A loopback address with a port free at the time of asking.
fn free_loopback_address() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// The text of `http://<listen>/metrics` (a blocking read off the runtime's threads).
async fn scrape(listen: &str) -> Result<String> {
    let listen = listen.to_owned();
    tokio::task::spawn_blocking(move || -> Result<String> {
        use std::io::{Read, Write};
        let address: std::net::SocketAddr = listen.parse()?;
        let timeout = Duration::from_secs(5);
        let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {listen}\r\n\r\n").as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("no end of the HTTP header")?;
        anyhow::ensure!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "the metrics endpoint answered {}",
            head.lines().next().unwrap_or("")
        );
        Ok(body.to_owned())
    })
    .await?
}

/// Messages covered by the positions read, each partition up to its end offset.
fn covered_by(positions: &HashMap<(String, i32), i64>, ends: &HashMap<(String, i32), i64>) -> i64 {
    covered(ends, |key| positions.get(key).copied().unwrap_or(0))
}

/// The values of gauge `name` by (topic, partition) in a Prometheus text exposition.
fn gauges(text: &str, name: &str) -> HashMap<(String, i32), i64> {
    let label = |labels: &str, key: &str| -> Option<String> {
        let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
        let end = labels[start..].find('"')? + start;
        Some(labels[start..end].to_owned())
    };
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once('}')?;
            let topic = label(labels, "topic")?;
            let partition = label(labels, "partition")?.parse().ok()?;
            let value = value.trim().parse::<f64>().ok()?;
            Some(((topic, partition), value as i64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_read_by_topic_and_partition_and_bounded_by_the_ends() {
        let text = "# HELP sipas_index_position x\n# TYPE sipas_index_position gauge\n\
            sipas_index_position{partition=\"0\",topic=\"t.surveys\"} 120\n\
            sipas_index_position{partition=\"1\",topic=\"t.surveys\"} 7\n\
            sipas_index_position_other{partition=\"2\",topic=\"t.surveys\"} 9\n\
            sipas_stored_offset{partition=\"0\",topic=\"t.surveys\"} 3\n";
        let read = gauges(text, "sipas_index_position");
        assert_eq!(read.len(), 2);
        assert_eq!(read[&("t.surveys".to_owned(), 0)], 120);
        assert_eq!(read[&("t.surveys".to_owned(), 1)], 7);
        let ends = HashMap::from([
            (("t.surveys".to_owned(), 0), 100),
            (("t.surveys".to_owned(), 1), 10),
            (("t.hotline".to_owned(), 0), 5),
        ]);
        assert_eq!(covered_by(&read, &ends), 100 + 7);
    }

    #[test]
    fn a_framework_copy_changes_only_its_id_line() {
        let text = "# id = \"A\" in a comment\nid = \"A\"\nname = \"id = A\"\n";
        assert_eq!(
            replace_once(text, "\nid = \"A\"\n", "\nid = \"B\"\n").as_deref(),
            Some("# id = \"A\" in a comment\nid = \"B\"\nname = \"id = A\"\n")
        );
        assert_eq!(replace_once("id = \"A\"\n", "\nid = \"A\"\n", "x"), None);
    }

    #[test]
    fn the_bench_overrides_give_a_child_the_bench_configuration() {
        let base = Config::default();
        let bench = super::super::fixtures::bench_config(&base);
        let env = bench_env(&bench)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v));
        let child = Config::load_with_env(None, env).expect("the overrides load");
        assert_eq!(format!("{child:?}"), format!("{bench:?}"));
    }
}
