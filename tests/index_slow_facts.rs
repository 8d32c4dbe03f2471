//! The windows pass of a flush starts once the flush's fact rows are acknowledged. Here
//! every fact-row insert is held back by a proxy in front of ClickHouse, so a pass that
//! read day sums before that would miss the flush's own rows for good (the deltas are
//! added only to days held before a read): the windows of a live run must still equal
//! those of a `sipas rebuild` of the same log.
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sipas_stream::simulate::generator::SimSettings;
use support::index::assert_equivalent;
use support::*;

const EVENTS: u64 = 6_000;
const HOLD: Duration = Duration::from_millis(700);

/// An HTTP proxy to `target` that holds every insert into a `*_day_counts` table for
/// `hold` before passing it on. Returns its URL and the count of inserts it held.
async fn holding_proxy(target: String, hold: Duration) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&held);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, target, counter) = (client.clone(), target.clone(), counter.clone());
            tokio::spawn(async move {
                let service = service_fn(move |mut request: Request<Incoming>| {
                    let (client, target, counter) =
                        (client.clone(), target.clone(), counter.clone());
                    async move {
                        let path = request
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_default();
                        let query = path
                            .to_ascii_lowercase()
                            .replace("%20", " ")
                            .replace('+', " ");
                        if query.contains("insert into") && query.contains("_day_counts") {
                            counter.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(hold).await;
                        }
                        *request.uri_mut() = format!("{}{path}", target.trim_end_matches('/'))
                            .parse()
                            .expect("a forwarded URI");
                        client.request(request).await
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn windows_written_beside_slow_fact_inserts_equal_a_rebuild() {
    let live = TestEnv::new("slow_facts").await;
    // ~10 days of event time, with late and out-of-order events: passes see new days,
    // first reads of days, and deltas on days held.
    let settings = SimSettings {
        seed: 52,
        start_unix: 1_790_000_000,
        step_seconds: 150.0,
        late_share: 0.02,
        ..Default::default()
    };
    let events = simulated_events(settings, EVENTS);

    let (proxy, held) = holding_proxy(live.config.clickhouse.url.clone(), HOLD).await;
    let mut run =
        Pipeline::start_command_with(&live, &["run"], &[("SIPAS__CLICKHOUSE__URL".into(), proxy)]);
    let part = events.len() / 3;
    for (i, chunk) in events.chunks(part).enumerate() {
        live.produce_events(chunk);
        let produced = ((i + 1) * part).min(events.len()) as f64;
        wait_for("the live run behind the slow fact inserts", || async {
            run.index_position().await == produced
        })
        .await;
    }
    assert!(run.terminate().success());
    assert!(
        held.load(Ordering::Relaxed) >= 3,
        "the proxy held the fact inserts ({} held)",
        held.load(Ordering::Relaxed)
    );

    let rebuilt = live.sibling("rebuild").await;
    let mut rebuild = Pipeline::start_command(&rebuilt, &["rebuild"]);
    assert!(rebuild.child.wait().expect("rebuild exits").success());
    assert_equivalent("with slow fact inserts", &live, &rebuilt).await;
}
