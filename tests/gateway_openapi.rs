//! The ingest gateway's OpenAPI document (`src/gateway/openapi.json`, served at
//! `GET /openapi.json` by `sipas gateway`) against a running gateway with the real broker:
//! schemathesis, with a bearer token, runs every check (status codes, content types,
//! headers and bodies of the answers against the document; schema-violating bodies refused;
//! requests without the token refused) and fails when the document and the answers
//! disagree. What it got accepted is exactly what reached the topics.
mod support;

use support::gateway::{request, start_gateway, tokens_file};
use support::serve::schemathesis;
use support::*;

const TOKEN: &str = "openapi-token-0b7e4c2d91a6";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn the_gateway_answers_as_its_openapi_document_says() {
    let env = TestEnv::new("gateway_openapi").await;
    let tokens = tokens_file("gateway-openapi", &[("everywhere", TOKEN, &["*"])]);
    // schemathesis sends hundreds of requests: no rate limit in the way.
    let (_gateway, base) = start_gateway(
        &env,
        &tokens,
        &[
            ("SIPAS__GATEWAY__BURST", "1000000"),
            ("SIPAS__GATEWAY__REQUESTS_PER_SECOND", "1000000"),
        ],
    )
    .await;

    let served = request(&base, "GET", "/openapi.json", &[], None).await;
    assert_eq!(served.status, 200);
    assert!(served.headers.contains("content-type: application/json"));
    assert_eq!(
        served.body,
        serde_json::from_str::<serde_json::Value>(sipas_stream::gateway::OPENAPI).unwrap(),
        "GET /openapi.json serves the document in src/gateway/openapi.json"
    );

    schemathesis(
        Some(&root().join("tests/fixtures/schemathesis-gateway.toml")),
        &format!("{base}/openapi.json"),
        &["-H".into(), format!("Authorization: Bearer {TOKEN}")],
    );

    // Every record the gateway answered `accepted` is in its topic, and nothing else.
    let metrics = request(&base, "GET", "/metrics", &[], None).await.text;
    let k = &env.config.kafka;
    for (kind, topic) in [("survey", &k.surveys_topic), ("hotline", &k.hotline_topic)] {
        let accepted = metric_sum(
            &metrics,
            &format!("sipas_gateway_records_total{{kind=\"{kind}\",outcome=\"accepted\"}}"),
        );
        assert_eq!(
            topic_messages(&env, topic).await as f64,
            accepted,
            "{kind}: messages in {topic} vs records answered accepted"
        );
    }
}
