//! `GET /api/v1/stream`: server-sent events for dashboards that prefer push. Every refresh
//! interval the latest ranking and provincial hotline KPIs are read through the same cache
//! as the API (so streams add no ClickHouse load per client) and the entries that changed
//! since the last push are sent: event `ranking` (rows as in `/api/v1/rankings`) and event
//! `hotline` (rows as in `/api/v1/hotline/kpis?by=province`). The first push has every row.
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::api::{
    compute_hotline, compute_rankings, query_map, ApiError, HotlineRequest, NormalisedRequest,
    QueryMap, RankingsRequest,
};
use super::params::{self, HotlineBy, ParamError};
use super::ServeState;

pub fn routes(state: ServeState) -> Router {
    Router::new()
        .route("/api/v1/stream", get(stream))
        .with_state(state)
}

/// Entries of `items` (keyed by `key_field`) that are new or differ from `seen`; `seen` is
/// updated. Entries that disappeared are not reported (latest values never vanish).
pub fn changed(seen: &mut HashMap<String, Value>, items: &[Value], key_field: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for item in items {
        let key = item
            .get(key_field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if seen.get(&key) != Some(item) {
            seen.insert(key, item.clone());
            out.push(item.clone());
        }
    }
    out
}

struct Poller {
    state: ServeState,
    rankings: RankingsRequest,
    hotline: HotlineRequest,
    seen_rankings: HashMap<String, Value>,
    seen_hotline: HashMap<String, Value>,
    pending: VecDeque<Event>,
    interval: tokio::time::Interval,
}

impl Poller {
    async fn poll(&mut self) {
        let (state, request) = (self.state.clone(), self.rankings.clone());
        let key = request.key();
        if let Ok(cached) = self
            .state
            .cache
            .get_or_compute(&key, move || async move {
                compute_rankings(&state, &request).await
            })
            .await
        {
            if let Ok(mut body) = serde_json::from_slice::<Value>(&cached.body) {
                let rows = body["provinces"].as_array().cloned().unwrap_or_default();
                let changed = changed(&mut self.seen_rankings, &rows, "province_code");
                if !changed.is_empty() {
                    body["provinces"] = Value::Array(changed);
                    self.pending
                        .push_back(Event::default().event("ranking").data(body.to_string()));
                }
            }
        }
        let (state, request) = (self.state.clone(), self.hotline.clone());
        let key = request.key();
        if let Ok(cached) = self
            .state
            .cache
            .get_or_compute(&key, move || async move {
                compute_hotline(&state, &request).await
            })
            .await
        {
            if let Ok(mut body) = serde_json::from_slice::<Value>(&cached.body) {
                let rows = body["units"].as_array().cloned().unwrap_or_default();
                let changed = changed(&mut self.seen_hotline, &rows, "unit_id");
                if !changed.is_empty() {
                    body["units"] = Value::Array(changed);
                    self.pending
                        .push_back(Event::default().event("hotline").data(body.to_string()));
                }
            }
        }
    }
}

async fn stream(State(state): State<ServeState>, query: QueryMap) -> Response {
    let parsed = (|| {
        let query = query_map(query)?;
        params::check_names(&query, &["window", "framework"])?;
        let rankings = RankingsRequest::parse(&state, &query)?;
        let hotline = HotlineRequest {
            by: HotlineBy::Province,
            province: None,
            window: params::window(&query)?,
            as_of: None,
        };
        Ok::<_, ParamError>((rankings, hotline))
    })();
    let (rankings, hotline) = match parsed {
        Ok(p) => p,
        Err(e) => {
            state
                .metrics
                .serve_responses
                .with_label_values(&["stream", "400"])
                .inc();
            return ApiError::from(e).response();
        }
    };
    state
        .metrics
        .serve_responses
        .with_label_values(&["stream", "200"])
        .inc();
    let mut interval = tokio::time::interval(state.refresh_interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let poller = Poller {
        state,
        rankings,
        hotline,
        seen_rankings: HashMap::new(),
        seen_hotline: HashMap::new(),
        pending: VecDeque::new(),
        interval,
    };
    let events = futures::stream::unfold(poller, |mut poller| async move {
        loop {
            if let Some(event) = poller.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(event), poller));
            }
            poller.interval.tick().await;
            poller.poll().await;
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_new_or_changed_entries_are_pushed() {
        let mut seen = HashMap::new();
        let first = vec![
            json!({"province_code": "01", "sipas": 80.0}),
            json!({"province_code": "79", "sipas": 70.0}),
        ];
        assert_eq!(changed(&mut seen, &first, "province_code").len(), 2);
        assert!(changed(&mut seen, &first, "province_code").is_empty());
        let second = vec![
            json!({"province_code": "01", "sipas": 80.0}),
            json!({"province_code": "79", "sipas": 71.0}),
        ];
        assert_eq!(
            changed(&mut seen, &second, "province_code"),
            vec![json!({"province_code": "79", "sipas": 71.0})]
        );
    }
}
