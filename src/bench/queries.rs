//! `sipas bench --queries N`: read latency over a year of day counts.
use anyhow::{Context, Result};

use sipas_stream::assemble::end_offsets;
use sipas_stream::config::Config;
use sipas_stream::kafka::producer;
use sipas_stream::sink;
use sipas_stream::tables;

use super::fixtures::{drop_bench_database, fresh_stack, produce, rebuild_to, year_simulator};
use super::measure::{latencies, print_table_head, print_table_rows, quantile, scale};
use super::BenchArgs;

/// Read latency over a year of day counts: `events` of history (one year of event time,
/// 34 provinces × `--agencies` × `--frameworks`) folded by `sipas rebuild`'s index
/// processor into a fresh database, then the ranking queries timed.
pub(super) async fn queries(base: &Config, args: &BenchArgs, events: u64) -> Result<()> {
    let (config, decoder, framework_list) = fresh_stack(base, args).await?;
    let k = &config.kafka;
    let mut sim = year_simulator(args, framework_list, 11, events);
    let producer = producer::idempotent_producer(k)?;
    let bar = crate::progress::events("produce", events);
    produce(&config, &mut sim, &producer, events, &bar, 0).await?;
    bar.finish_and_clear();
    let ends = end_offsets(&config).await?;
    let total: i64 = ends.values().sum();
    let rebuild = rebuild_to(&config, &decoder, &ends).await?;
    let broker = super::broker::snapshot(&k.brokers);
    print_table_head(&format!(
        "sipas bench --queries: {events} events (one year of event time), {} partitions, {}, folded by `sipas rebuild`'s index processor; broker: {broker}",
        ends.len(),
        scale(args)
    ));
    println!(
        "| rebuild: facts written / windows materialised | {:.1} s ({:.0} events/s) / {:.1} s |",
        rebuild.facts.as_secs_f64(),
        total as f64 / rebuild.facts.as_secs_f64().max(1e-9),
        rebuild.total.as_secs_f64()
    );
    println!("| broker storage, its log when the rebuild was measured | {broker} |");
    print_table_rows(&config).await?;
    query_figures(&config, &decoder).await?;
    if !args.keep {
        drop_bench_database(&config).await?;
    }
    Ok(())
}

/// The agencies of one province over one window, ranked: the read API's statement (the
/// newest version of each fact row, summed per agency), then the index and the ranks
/// computed here, as the API does.
pub(super) async fn agency_ranking(
    client: &clickhouse::Client,
    framework: &sipas_stream::domain::Framework,
    province: &str,
    period: (i64, i64),
) -> Result<usize> {
    use sipas_stream::index::survey::{competition_rank, compute, SurveyCounts};
    use sipas_stream::serve::sums::{survey_query, SurveyGroup, SurveyScope};
    let scope = SurveyScope {
        framework,
        province: Some(province),
        agency: None,
    };
    let query = survey_query(client, scope, SurveyGroup::Agency, &[period])
        .context("the period holds no storable day")?;
    let rows: Vec<sipas_stream::serve::rows::SurveySumRow> = query.fetch_all().await?;
    let narrow = |v: &[u64]| -> Vec<u32> {
        v.iter()
            .map(|x| (*x).min(u64::from(u32::MAX)) as u32)
            .collect()
    };
    let scores: Vec<(Option<f64>, bool)> = rows
        .iter()
        .map(|r| {
            let counts = SurveyCounts::from_distribution(
                r.respondents.min(u64::from(u32::MAX)) as u32,
                [
                    &narrow(&r.n1),
                    &narrow(&r.n2),
                    &narrow(&r.n3),
                    &narrow(&r.n4),
                    &narrow(&r.n5),
                ],
                &narrow(&r.missing),
                &narrow(&r.ticks),
            );
            let index = compute(&counts, framework);
            (index.sipas, index.ranked)
        })
        .collect();
    let ranks = competition_rank(&scores);
    anyhow::ensure!(
        rows.iter().all(|r| !r.key.is_empty()) && ranks.len() == rows.len(),
        "agency ranking lost rows"
    );
    Ok(rows.len())
}

/// 200 sequential queries of each read: `province_ranking_latest` (30d, 365d) and the
/// agencies of the province with the most respondents over the 365 days up to the newest
/// day (SQL + the index and ranks computed here); printed as table rows.
pub(super) async fn query_figures(
    config: &Config,
    decoder: &sipas_stream::contract::Decoder,
) -> Result<()> {
    const QUERIES: usize = 200;
    let client = &sink::connect(&config.clickhouse);
    for window in ["30d", "365d"] {
        let (ms, provinces) = latencies(QUERIES, move || async move {
            let rows: Vec<(String, u32)> = client
                .query(&format!(
                    "SELECT province_code, toUInt32(ifNull(rank, 0)) FROM {} WHERE window = ?",
                    tables::PROVINCE_RANKING_LATEST
                ))
                .bind(window)
                .fetch_all()
                .await?;
            anyhow::ensure!(
                !rows.is_empty(),
                "{} is empty",
                tables::PROVINCE_RANKING_LATEST
            );
            Ok(rows.len())
        })
        .await?;
        println!(
            "| province_ranking_latest, {window}, {QUERIES} sequential queries ({provinces} rows): p50 / p99 | {:.1} / {:.1} ms |",
            quantile(&ms, 0.5),
            quantile(&ms, 0.99)
        );
    }
    let framework = decoder
        .validator
        .frameworks
        .get("BNV-2640-2017")
        .context("framework BNV-2640-2017 missing")?;
    let (province, newest): (String, u16) = client
        .query(&format!("SELECT province_code, toUInt16(max(day)) FROM {} WHERE framework = ? GROUP BY province_code ORDER BY sum(respondents) DESC LIMIT 1", tables::SATISFACTION_DAY_COUNTS))
        .bind(&framework.id)
        .fetch_one()
        .await?;
    let newest = i64::from(newest);
    let province = &province;
    let (ms, agencies) = latencies(QUERIES, move || {
        agency_ranking(client, framework, province, (newest - 364, newest))
    })
    .await?;
    println!(
        "| agencies of {province} ranked over 365 days ({agencies} agencies; SQL on satisfaction_day_counts + index and ranks in Rust), {QUERIES} sequential: p50 / p99 | {:.1} / {:.1} ms |",
        quantile(&ms, 0.5),
        quantile(&ms, 0.99)
    );
    fingerprint_figures(client, newest).await
}

/// The materialiser's per-pass fingerprint read over the days it covers (396 back from
/// the newest), from the fingerprint table it reads and, for comparison, computed from
/// the fact rows themselves (what it read before the fingerprint table existed).
async fn fingerprint_figures(client: &clickhouse::Client, newest: i64) -> Result<()> {
    const QUERIES: usize = 50;
    let floor = sipas_stream::domain::time::format_day(newest - 396);
    for (source, top) in [
        (tables::SATISFACTION_DAY_PRINTS, "maxMerge(top)"),
        (tables::SATISFACTION_DAY_COUNTS, "max(version)"),
    ] {
        let sql = format!("SELECT framework, province_code, toUInt16(day) AS d, source_partition AS p, {top} AS top FROM {source} WHERE day >= toDate(?) GROUP BY framework, province_code, d, p");
        let sql = &sql;
        let floor = &floor;
        let (ms, prints) = latencies(QUERIES, move || async move {
            let rows: Vec<(String, String, u16, u32, u64)> =
                client.query(sql).bind(floor).fetch_all().await?;
            anyhow::ensure!(!rows.is_empty(), "no fingerprints");
            Ok(rows.len())
        })
        .await?;
        println!(
            "| fingerprint read of a pass over 396 days, from {source} ({prints} rows), {QUERIES} sequential: p50 / p99 | {:.1} / {:.1} ms |",
            quantile(&ms, 0.5),
            quantile(&ms, 0.99)
        );
    }
    Ok(())
}
