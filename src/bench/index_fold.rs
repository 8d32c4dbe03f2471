//! `sipas bench --index-only N`: the index fold and a checkpoint restore in memory, and
//! the memory the state takes (`--measure-restore`: the restore in a fresh process).
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::time::Instant;

use sipas_stream::config::Config;
use sipas_stream::simulate::SimSettings;

use super::fixtures::{bench_frameworks, scaled_simulator};
use super::measure::{cpu_seconds, current_rss_mib, peak_rss_mib, print_table_head, scale};
use super::BenchArgs;

/// Folds `events` simulated events spread over `days` of event time into one partition
/// state, then checkpoints and restores it: the in-memory part of a restart, and the
/// memory the state of `agencies` × 34 provinces × `frameworks` takes. Events are
/// generated and decoded in chunks so that the process holds little besides the state.
pub(super) fn index_fold(config: &Config, args: &BenchArgs, events: u64) -> Result<()> {
    use sipas_stream::contract::Decoded;
    use sipas_stream::index::state::PartitionState;
    let mut decoder = sipas_stream::assemble::decoder(config)?;
    let framework_list = bench_frameworks(&mut decoder, args.frameworks)?;
    let frameworks = decoder.validator.frameworks.clone();
    let settings = SimSettings {
        seed: 8,
        start_unix: 1_760_000_000,
        step_seconds: f64::from(args.days) * 86_400.0 / events as f64,
        agencies_per_province: args.agencies,
        ..Default::default()
    };
    let mut sim = scaled_simulator(settings, framework_list);
    let lateness = config.index.lateness_seconds();
    let mut state = PartitionState::new(0, 0);
    let rss_before = current_rss_mib();
    let (mut rows, mut fold_cpu, mut decode_cpu, started) = (0usize, 0.0, 0.0, Instant::now());
    let (mut checkpoint_bytes, mut checkpoints) = (0usize, 0usize);
    // Every chunk stored, as `index_state_chunks` would hold them: a restore reads its chain.
    let mut chunks = StoredChunks::new();
    let bar = crate::progress::events("", events);
    let mut offset = 0i64;
    while (offset as u64) < events {
        let chunk = (events - offset as u64).min(20_000);
        let cpu = cpu_seconds();
        let decoded: Vec<_> = (0..chunk)
            .map(|_| sim.next_event())
            // Synthetic history, decoded in memory: no receive time.
            .map(|e| decoder.decode(e.kind, &e.payload, None).ok().map(|d| d.0))
            .collect();
        decode_cpu += cpu_seconds() - cpu;
        let cpu = cpu_seconds();
        for event in &decoded {
            match event {
                Some(Decoded::Survey(s)) => {
                    state.apply_survey(s, offset, &frameworks, lateness);
                }
                Some(Decoded::Hotline(h)) => {
                    state.apply_hotline(h, offset, lateness);
                }
                None => state.skip(offset),
            }
            offset += 1;
        }
        // One flush per chunk: the rows it would write, built as the processor builds them.
        let taken = state.take_rows();
        // Survey facts become rows as they are written: built here as the writer builds them.
        rows += taken.survey_rows(&frameworks).len() + taken.hotline_rows().len();
        fold_cpu += cpu_seconds() - cpu;
        // A checkpoint per chunk: the state row and the chunk of ids folded since the last.
        let (row, stored) = sipas_stream::index::checkpoint::rows("bench", "t", 0, &mut state, 0);
        checkpoint_bytes += row.state.len();
        if let Some(stored) = stored {
            checkpoint_bytes += stored.chunk.len();
            chunks.insert((stored.from_offset, stored.to_offset), stored.chunk);
        }
        checkpoints += 1;
        bar.inc(chunk);
    }
    bar.finish_and_clear();
    let fold_wall = started.elapsed();
    let rss_state = current_rss_mib() - rss_before;
    let started = Instant::now();
    let bytes = sipas_stream::index::checkpoint::encode(&state);
    let serialise = started.elapsed();
    let started = Instant::now();
    let restored = restore(&bytes, &chunks)?;
    let restore = started.elapsed();
    anyhow::ensure!(
        restored.next_offset == state.next_offset
            && restored.stats().ids == state.stats().ids
            && restored.stats().tickets == state.stats().tickets,
        "the restored state differs from the folded one"
    );
    drop(restored);
    let chain_bytes: usize = state
        .chain()
        .iter()
        .filter_map(|key| chunks.get(key))
        .map(Vec::len)
        .sum();
    // The state's own footprint: restored (its row and its chain of chunks) in a fresh
    // process, without the fold's transients (a closing day's rows are allocated and freed
    // at once, and the allocator keeps them).
    let file = std::env::temp_dir().join(format!("sipas-bench-state-{}.bin", std::process::id()));
    std::fs::write(&file, bincode::serialize(&(&bytes, &chunks))?)?;
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--measure-restore"])
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let restored_mib = output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    let stats = state.stats();
    print_table_head(&format!(
        "sipas bench --index-only: {events} events over {} days of event time, one partition, {}",
        args.days,
        scale(args)
    ));
    println!("| index fold (decoded events -> day-count rows), 1 core | {:.0} events/s ({fold_cpu:.2} s CPU) |", events as f64 / fold_cpu.max(1e-9));
    println!(
        "| fact rows written per event (one flush per 20,000 events) | {:.3} ({rows} rows) |",
        rows as f64 / events.max(1) as f64
    );
    println!(
        "| checkpoint bytes written (state + new ids), per checkpoint every 20,000 events | {:.2} MiB |",
        checkpoint_bytes as f64 / checkpoints.max(1) as f64 / 1_048_576.0
    );
    println!(
        "| decode + validate (not part of the fold), 1 core | {:.0} events/s |",
        events as f64 / decode_cpu.max(1e-9)
    );
    println!(
        "| generate + decode + fold wall time | {:.2} s |",
        fold_wall.as_secs_f64()
    );
    println!(
        "| state: open-block cells / tickets / ids | {} / {} / {} |",
        stats.open_cells, stats.tickets, stats.ids
    );
    match restored_mib {
        Some(mib) => println!("| state in memory (restored in a fresh process) | {mib:.0} MiB |"),
        None => println!("| state in memory (restored in a fresh process) | not measured |"),
    }
    println!("| resident memory grown during the fold (state + allocator-retained transients) | {rss_state:.0} MiB |");
    println!(
        "| checkpoint size: the state row / its chain of chunks (ids and tickets) | {:.1} / {:.1} MiB |",
        bytes.len() as f64 / 1_048_576.0,
        chain_bytes as f64 / 1_048_576.0
    );
    // Steady traffic on a partition holding this history: a checkpoint every interval
    // writes the state row and a chunk of what changed (new ids, changed tickets), whose
    // size per event is what the fold's checkpoints above wrote.
    let (rate, interval_s) = (1000.0, config.index.checkpoint_interval_ms as f64 / 1000.0);
    let chunk_bytes_per_event =
        checkpoint_bytes.saturating_sub(bytes.len() * checkpoints) as f64 / events.max(1) as f64;
    println!(
        "| checkpoint bytes per minute at {rate:.0} events/s on this state (a state row per {interval_s:.0} s + the chunk bytes per event above) | {:.1} MiB |",
        (bytes.len() as f64 * 60.0 / interval_s.max(1e-9) + chunk_bytes_per_event * rate * 60.0)
            / 1_048_576.0
    );
    println!(
        "| checkpoint serialise (the state row) / restore (the row and its chain) | {:.3} s / {:.3} s |",
        serialise.as_secs_f64(),
        restore.as_secs_f64()
    );
    println!(
        "| peak RSS of this process (includes one serialised and one restored copy) | {:.0} MiB |",
        peak_rss_mib()
    );
    Ok(())
}

/// Chunks by `(from_offset, to_offset)`, as `index_state_chunks` holds them.
type StoredChunks = HashMap<(i64, i64), Vec<u8>>;

/// A state restored from its checkpoint row's bytes and the stored chunks, as
/// `checkpoint::load` restores it from ClickHouse.
fn restore(
    bytes: &[u8],
    chunks: &HashMap<(i64, i64), Vec<u8>>,
) -> Result<sipas_stream::index::state::PartitionState> {
    let mut state =
        sipas_stream::index::checkpoint::decode(bytes).context("checkpoint does not decode")?;
    let chain = sipas_stream::index::checkpoint::chain_chunks(&state, chunks)
        .map_err(|error| anyhow::anyhow!("the checkpoint's chunks: {error:?}"))?;
    state.restore_chunks(chain);
    Ok(state)
}

/// Restores the checkpoint file at `path` (the state row and the stored chunks) in this
/// fresh process and prints the memory it takes and its `next_offset`.
pub(super) fn measure_restore(path: &std::path::Path) -> Result<()> {
    let (bytes, chunks): (Vec<u8>, StoredChunks) = bincode::deserialize(&std::fs::read(path)?)?;
    let before = current_rss_mib();
    let state = restore(&bytes, &chunks)?;
    let after = current_rss_mib();
    println!("{:.1} {}", after - before, state.next_offset);
    Ok(())
}
