//! Optional Confluent Schema Registry lookup for Avro schema ids missing from the local
//! catalog. Found schemas are cached in the catalog for good; misses are remembered for a
//! minute so that a stream of bad ids does not hammer the registry.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::contract::avro::SchemaCatalog;

const MISS_TTL: Duration = Duration::from_secs(60);

pub struct SchemaRegistry {
    base_url: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    misses: Mutex<HashMap<u32, Instant>>,
}

#[derive(serde::Deserialize)]
struct SchemaResponse {
    schema: String,
}

impl SchemaRegistry {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            misses: Mutex::new(HashMap::new()),
        }
    }

    /// Fetches schema `id` and adds it to `catalog`. Failures are logged; the message then
    /// goes to the DLQ as `undecodable` (unknown schema id).
    pub async fn fetch_into(&self, id: u32, catalog: &SchemaCatalog) {
        if self
            .misses
            .lock()
            .expect("lock")
            .get(&id)
            .is_some_and(|at| at.elapsed() < MISS_TTL)
        {
            return;
        }
        match self.fetch(id).await {
            Ok(schema) => {
                tracing::info!(id, "Avro schema fetched from the registry");
                catalog.insert(id, schema);
            }
            Err(error) => {
                tracing::warn!(id, %error, "Avro schema not available from the registry");
                self.misses.lock().expect("lock").insert(id, Instant::now());
            }
        }
    }

    async fn fetch(&self, id: u32) -> Result<apache_avro::Schema, String> {
        let uri: hyper::Uri = format!("{}/schemas/ids/{id}", self.base_url)
            .parse()
            .map_err(|e| format!("bad registry URL: {e}"))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.get(uri))
            .await
            .map_err(|_| "registry did not answer within 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("registry answered {status}"));
        }
        let parsed: SchemaResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("unexpected registry answer: {e}"))?;
        apache_avro::Schema::parse_str(&parsed.schema)
            .map_err(|e| format!("registry schema is invalid: {e}"))
    }
}
