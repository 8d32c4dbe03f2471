//! What the scenarios measure: CPU time and memory of this process (getrusage,
//! /proc/self/status), the process's own counters (rows written, flush stages, queries),
//! checkpoint bytes in ClickHouse, latency quantiles; and the table rows they print.
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

use sipas_stream::config::Config;
use sipas_stream::metrics::Metrics;
use sipas_stream::sink::{self};
use sipas_stream::tables;

use super::BenchArgs;

/// The scale of a generated log, as every scenario's title names it.
pub(super) fn scale(args: &BenchArgs) -> String {
    format!(
        "34 provinces × {} agencies × {} frameworks",
        args.agencies, args.frameworks
    )
}

/// A scenario's title line and the head of its figure table.
pub(super) fn print_table_head(title: &str) {
    println!("{title}");
    println!("| figure | value |");
    println!("|---|---|");
}

pub(super) fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage struct into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A memory figure of this process from /proc/self/status (`VmHWM`, `VmRSS`), in MiB.
pub(super) fn status_mib(field: &str) -> f64 {
    process_status_mib("self", field).unwrap_or(0.0)
}

/// A memory figure (`VmHWM`, `VmRSS`) of process `pid` ("self" or a number) from
/// /proc/<pid>/status, in MiB; `None` once the process is gone.
pub(super) fn process_status_mib(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| {
            l.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// CPU seconds (user + system) process `pid` has used, from /proc/<pid>/stat.
pub(super) fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line: indices 11 and 12 after the name.
    let used = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(used / per_second.max(1.0))
}

/// Resets VmHWM (Linux ≥ 4.0), so that a step's peak excludes earlier steps.
pub(super) fn reset_peak_rss() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        tracing::warn!(%error, "cannot reset the peak RSS; later peaks include earlier steps");
    }
}

pub(super) fn peak_rss_mib() -> f64 {
    status_mib("VmHWM")
}

pub(super) fn current_rss_mib() -> f64 {
    status_mib("VmRSS")
}

/// Messages whose index rows are written, summed over partitions, counting each partition
/// at most up to its end offset.
pub(super) fn indexed_up_to(
    metrics: &Metrics,
    ends: &std::collections::HashMap<(String, i32), i64>,
) -> i64 {
    covered(ends, |(topic, partition)| {
        metrics
            .index_position
            .with_label_values(&[topic, &partition.to_string()])
            .get()
    })
}

/// Messages covered by a position per partition (the next offset done), each partition
/// counted up to its end offset.
pub(super) fn covered(
    ends: &std::collections::HashMap<(String, i32), i64>,
    position: impl Fn(&(String, i32)) -> i64,
) -> i64 {
    ends.iter()
        .map(|(key, end)| position(key).clamp(0, *end))
        .sum()
}

/// Bytes of the latest checkpoint per partition and of every id chunk stored.
pub(super) async fn checkpoint_bytes(config: &Config) -> Result<(u64, u64)> {
    let client = sink::connect(&config.clickhouse);
    let state: u64 = client
        .query(&format!("SELECT toUInt64(sum(length(state))) FROM (SELECT topic, partition, argMax(state, next_offset) AS state FROM {} GROUP BY topic, partition)", tables::INDEX_CHECKPOINTS))
        .fetch_one()
        .await?;
    Ok((state, id_chunk_bytes(&client).await?))
}

/// Bytes of every id chunk stored.
async fn id_chunk_bytes(client: &clickhouse::Client) -> Result<u64> {
    let bytes = client
        .query(&format!(
            "SELECT toUInt64(sum(length(chunk))) FROM {}",
            tables::INDEX_STATE_CHUNKS
        ))
        .fetch_one()
        .await?;
    Ok(bytes)
}

/// Rows of the index tables in the bench database (facts, and daily windows), as table rows.
pub(super) async fn print_table_rows(config: &Config) -> Result<()> {
    let client = sink::connect(&config.clickhouse);
    for table in [
        tables::SATISFACTION_DAY_COUNTS,
        tables::HOTLINE_DAY_COUNTS,
        tables::SATISFACTION_DAILY,
        tables::HOTLINE_KPI_DAILY,
    ] {
        let rows: u64 = client
            .query(&format!("SELECT count() FROM {table} FINAL"))
            .fetch_one()
            .await?;
        println!("| rows in {table} | {rows} |");
    }
    Ok(())
}

/// Latencies in ms, sorted, of `count` sequential runs of `query`, and its last answer.
pub(super) async fn latencies<T, F, Fut>(count: usize, mut query: F) -> Result<(Vec<f64>, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut ms = Vec::with_capacity(count);
    let mut last = None;
    for _ in 0..count {
        let started = Instant::now();
        last = Some(query().await?);
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms, last.context("no query ran")?))
}

pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Every index table's inserted rows and the window rows the materialiser wrote, from the
/// process's counters: (fact rows, window rows).
pub(super) fn index_rows(metrics: &Metrics) -> (u64, u64) {
    let inserted = |t: &str| metrics.inserted_rows.with_label_values(&[t]).get();
    let windows = ["satisfaction", "hotline"]
        .iter()
        .map(|k| metrics.index_window_rows.with_label_values(&[k]).get())
        .sum();
    (
        inserted(tables::SATISFACTION_DAY_COUNTS) + inserted(tables::HOTLINE_DAY_COUNTS),
        windows,
    )
}

/// Each index flush stage's (observations, total seconds) so far.
pub(super) fn stage_times(metrics: &Metrics) -> Vec<(&'static str, u64, f64)> {
    ["facts", "windows", "checkpoint"]
        .into_iter()
        .map(|stage| {
            let h = metrics.index_stage_seconds.with_label_values(&[stage]);
            (stage, h.get_sample_count(), h.get_sample_sum())
        })
        .collect()
}

/// Each of the process's own ClickHouse queries: "label mean ms × count".
pub(super) fn query_times(metrics: &Metrics) -> Vec<String> {
    metrics
        .registry
        .gather()
        .iter()
        .filter(|family| family.name().ends_with("query_duration_seconds"))
        .flat_map(|family| family.get_metric().to_vec())
        .map(|m| {
            let label = m
                .get_label()
                .first()
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            let h = m.get_histogram();
            let n = h.get_sample_count();
            format!(
                "{label} {:.1} ms × {n}",
                h.get_sample_sum() / n.max(1) as f64 * 1e3
            )
        })
        .collect()
}

/// Checkpoint bytes written while `until` runs: the state of every checkpoint row that
/// appears meanwhile (polled each second; one is written every `checkpoint_interval_ms`)
/// plus the id chunks appended meanwhile.
pub(super) async fn checkpoint_bytes_during<T>(
    config: &Config,
    until: impl std::future::Future<Output = Result<T>>,
) -> Result<(T, u64)> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Written {
        topic: String,
        partition: u32,
        next_offset: i64,
        bytes: u64,
    }
    let client = sink::connect(&config.clickhouse);
    let poll = || async {
        let rows: Vec<Written> = client
            .query(&format!(
                "SELECT topic, partition, next_offset, toUInt64(length(state)) FROM {}",
                tables::INDEX_CHECKPOINTS
            ))
            .fetch_all()
            .await?;
        anyhow::Ok((rows, id_chunk_bytes(&client).await?))
    };
    let (before, ids_before) = poll().await?;
    let mut seen: std::collections::HashMap<(String, u32, i64), u64> = before
        .into_iter()
        .map(|w| ((w.topic, w.partition, w.next_offset), 0))
        .collect();
    tokio::pin!(until);
    let output = loop {
        tokio::select! {
            output = &mut until => break output?,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                for w in poll().await?.0 {
                    seen.entry((w.topic, w.partition, w.next_offset)).or_insert(w.bytes);
                }
            }
        }
    };
    let (last, ids_after) = poll().await?;
    for w in last {
        seen.entry((w.topic, w.partition, w.next_offset))
            .or_insert(w.bytes);
    }
    Ok((
        output,
        seen.values().sum::<u64>() + ids_after.saturating_sub(ids_before),
    ))
}

/// ClickHouse's server-wide counters (`system.events`) that the cost of writing follows:
/// every insert block becomes a part (on 18.16 a directory of 2–4 files per column), and
/// merges rewrite parts. Server-wide: other clients of the same server count too.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ServerWrites {
    pub parts_inserted: u64,
    pub merges: u64,
    pub insert_queries: u64,
}

pub(super) async fn server_writes(config: &Config) -> Result<ServerWrites> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Event {
        event: String,
        value: u64,
    }
    let rows: Vec<Event> = sink::connect(&config.clickhouse)
        .query("SELECT event, toUInt64(value) FROM system.events WHERE event IN ('MergeTreeDataWriterBlocks', 'Merge', 'InsertQuery')")
        .fetch_all()
        .await
        .context("reading system.events")?;
    let mut writes = ServerWrites::default();
    for row in rows {
        match row.event.as_str() {
            "MergeTreeDataWriterBlocks" => writes.parts_inserted = row.value,
            "Merge" => writes.merges = row.value,
            _ => writes.insert_queries = row.value,
        }
    }
    Ok(writes)
}

impl ServerWrites {
    /// The table row of what happened between `self` (before) and `after`, per second.
    pub(super) fn rates_since(&self, after: &ServerWrites, seconds: f64) -> String {
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds.max(1e-9);
        format!(
            "{:.1} parts inserted, {:.1} merges, {:.1} insert queries",
            rate(after.parts_inserted, self.parts_inserted),
            rate(after.merges, self.merges),
            rate(after.insert_queries, self.insert_queries)
        )
    }
}
