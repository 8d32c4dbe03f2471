//! `sipas bench --processing-only` (and step 4 of the default run): the processing cost
//! from memory, no broker.
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipas_stream::config::Config;
use sipas_stream::pipeline::{BatchOutput, InputMessage};

use super::fixtures::simulator;
use super::measure::cpu_seconds;

/// Step 1 of the bench, on this thread: CPU time of processing the same in-memory log
/// twice, (a) into raw rows and dead letters, (b) the same plus the index fold.
pub(super) struct Processing {
    pub(super) messages: usize,
    pub(super) surveys: usize,
    pub(super) hotline: usize,
    pub(super) dead_letters: usize,
    pub(super) raw_cpu: f64,
    pub(super) raw_wall: Duration,
    pub(super) fold_cpu: f64,
    pub(super) fold_wall: Duration,
    pub(super) fact_rows: usize,
}

impl Processing {
    pub(super) fn raw_rate(&self) -> f64 {
        self.messages as f64 / self.raw_cpu.max(1e-9)
    }

    pub(super) fn fold_rate(&self) -> f64 {
        self.messages as f64 / self.fold_cpu.max(1e-9)
    }
}

/// Generates `events` messages (the bench's simulator: default settings, 30 days of
/// event time) into memory, then measures both passes over them.
pub(super) fn processing(
    config: &Config,
    decoder: &sipas_stream::contract::Decoder,
    events: u64,
) -> Result<Processing> {
    let mut sim = simulator(config, events)?;
    let topic: Arc<str> = "mem".into();
    // Received now, as if consumed live: the event-time guard runs as in `sipas run` (the
    // simulated log ends at the simulator's start, before this).
    let received_ms = sipas_stream::domain::time::unix_now() * 1000;
    let messages: Vec<InputMessage> = (0..events)
        .map(|i| {
            let e = sim.next_event();
            InputMessage {
                kind: e.kind,
                topic: Arc::clone(&topic),
                partition: 0,
                offset: i as i64,
                produced_ms: Some(received_ms),
                index_only: false,
                key: Some(e.key.into_bytes()),
                payload: Some(e.payload),
            }
        })
        .collect();
    let stamp = sipas_stream::domain::time::unix_now();
    let batch = config.pipeline.batch_max_messages;

    let (started, cpu) = (Instant::now(), cpu_seconds());
    let (surveys, hotline, dead_letters) = raw_rows_pass(decoder, &messages, batch, stamp);
    let (raw_cpu, raw_wall) = (cpu_seconds() - cpu, started.elapsed());
    anyhow::ensure!(
        surveys + hotline + dead_letters == messages.len(),
        "every message is a row or a dead letter"
    );

    let lateness = config.index.lateness_seconds();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let fact_rows = fold_pass(decoder, &messages, batch, stamp, lateness);
    let (fold_cpu, fold_wall) = (cpu_seconds() - cpu, started.elapsed());
    Ok(Processing {
        messages: messages.len(),
        surveys,
        hotline,
        dead_letters,
        raw_cpu,
        raw_wall,
        fold_cpu,
        fold_wall,
        fact_rows,
    })
}

/// (a) decode + validate + raw rows, batch by batch as the ingest pipeline does. Not
/// inlined, so that a profiler can collect this pass alone.
#[inline(never)]
pub(super) fn raw_rows_pass(
    decoder: &sipas_stream::contract::Decoder,
    messages: &[InputMessage],
    batch: usize,
    stamp: i64,
) -> (usize, usize, usize) {
    let (mut surveys, mut hotline, mut dead_letters) = (0, 0, 0);
    for chunk in messages.chunks(batch) {
        let out = BatchOutput::build(decoder, chunk, stamp, false);
        surveys += out.rows.surveys.rows.len();
        hotline += out.rows.hotline.rows.len();
        dead_letters += out.dead_letters.len();
    }
    (surveys, hotline, dead_letters)
}

/// (b) the same with `folds`, each folded into its partition's state, and the fact rows
/// it emits taken as the index processor takes them. Returns the number of fact rows.
#[inline(never)]
pub(super) fn fold_pass(
    decoder: &sipas_stream::contract::Decoder,
    messages: &[InputMessage],
    batch: usize,
    stamp: i64,
    lateness: i64,
) -> usize {
    use sipas_stream::contract::Decoded;
    use sipas_stream::index::state::PartitionState;
    let frameworks = decoder.validator.frameworks.clone();
    let mut states: std::collections::HashMap<(Arc<str>, i32), PartitionState> = Default::default();
    let mut rows = 0;
    for chunk in messages.chunks(batch) {
        let out = BatchOutput::build(decoder, chunk, stamp, true);
        for fold in out.folds {
            let state = states
                .entry((Arc::clone(&fold.topic), fold.partition))
                .or_insert_with(|| PartitionState::new(fold.partition as u32, 0));
            match &fold.event {
                Some(Decoded::Survey(s)) => {
                    state.apply_survey(s, fold.offset, &frameworks, lateness);
                }
                Some(Decoded::Hotline(h)) => {
                    state.apply_hotline(h, fold.offset, lateness);
                }
                None => state.skip(fold.offset),
            }
        }
        // Written (here: dropped) once per batch, as a flush would.
        for state in states.values_mut() {
            let taken = state.take_rows();
            rows += taken.survey_rows(&frameworks).len() + taken.hotline_rows().len();
        }
    }
    rows
}

pub(super) fn processing_only(config: &Config, events: u64) -> Result<()> {
    let decoder = sipas_stream::assemble::decoder(config)?;
    let p = processing(config, &decoder, events)?;
    println!(
        "sipas bench --processing-only: {} messages ({} surveys, {} hotline, {} dead letters), 30 days of event time, batch {} msgs, one thread",
        p.messages, p.surveys, p.hotline, p.dead_letters, config.pipeline.batch_max_messages
    );
    println!("| figure | events/s per core | CPU s | wall s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| (a) decode + validate + raw rows | {:.0} | {:.2} | {:.2} |",
        p.raw_rate(),
        p.raw_cpu,
        p.raw_wall.as_secs_f64()
    );
    println!(
        "| (b) (a) + index fold + day-count rows ({} rows) | {:.0} | {:.2} | {:.2} |",
        p.fact_rows,
        p.fold_rate(),
        p.fold_cpu,
        p.fold_wall.as_secs_f64()
    );
    println!("RowBinary encoding is not included: clickhouse 0.15 serialises rows only inside Insert::write, which needs a server.");
    Ok(())
}
