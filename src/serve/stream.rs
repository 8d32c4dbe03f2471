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

/// One kind of event: the answer's list of rows (`list`, each named by its `key` field)
/// and the rows as last pushed.
struct Feed {
    event: &'static str,
    list: &'static str,
    key: &'static str,
    seen: HashMap<String, Value>,
}

impl Feed {
    fn new(event: &'static str, list: &'static str, key: &'static str) -> Self {
        Self {
            event,
            list,
            key,
            seen: HashMap::new(),
        }
    }

    /// The event carrying the rows of `body` that changed since the last push, if any.
    fn changes(&mut self, body: Value) -> Option<Event> {
        let body = self.changed_body(body)?;
        Some(Event::default().event(self.event).data(body.to_string()))
    }

    /// `body` with only the rows that changed since the last push (`None` if none did).
    fn changed_body(&mut self, mut body: Value) -> Option<Value> {
        let rows = body[self.list].as_array().cloned().unwrap_or_default();
        let changed = changed(&mut self.seen, &rows, self.key);
        if changed.is_empty() {
            return None;
        }
        body[self.list] = Value::Array(changed);
        Some(body)
    }
}

/// The answer to the request cached under `key`, as JSON: computed through the cache like
/// the API's own answers.
async fn cached_json<F, Fut>(state: &ServeState, key: &str, compute: F) -> Option<Value>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, ApiError>> + Send + 'static,
{
    let cached = state.cache.get_or_compute(key, compute).await.ok()?;
    serde_json::from_slice(&cached.body).ok()
}

struct Poller {
    state: ServeState,
    rankings: RankingsRequest,
    hotline: HotlineRequest,
    ranking_feed: Feed,
    hotline_feed: Feed,
    pending: VecDeque<Event>,
    interval: tokio::time::Interval,
}

impl Poller {
    async fn poll(&mut self) {
        let (state, request) = (self.state.clone(), self.rankings.clone());
        let ranking = cached_json(&self.state, &request.key(), move || async move {
            compute_rankings(&state, &request).await
        })
        .await;
        self.pending
            .extend(ranking.and_then(|body| self.ranking_feed.changes(body)));
        let (state, request) = (self.state.clone(), self.hotline.clone());
        let hotline = cached_json(&self.state, &request.key(), move || async move {
            compute_hotline(&state, &request).await
        })
        .await;
        self.pending
            .extend(hotline.and_then(|body| self.hotline_feed.changes(body)));
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
        ranking_feed: Feed::new("ranking", "provinces", "province_code"),
        hotline_feed: Feed::new("hotline", "units", "unit_id"),
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

    #[test]
    fn a_feed_pushes_its_list_with_the_changed_rows_only() {
        let mut feed = Feed::new("hotline", "units", "unit_id");
        let body = |received: u32| {
            json!({"window": "30d", "units": [
                {"unit_id": "01", "received": 3},
                {"unit_id": "79", "received": received},
            ]})
        };
        assert_eq!(
            feed.changed_body(body(5)),
            Some(body(5)),
            "the first push holds every row"
        );
        assert_eq!(feed.changed_body(body(5)), None);
        assert_eq!(
            feed.changed_body(body(6)),
            Some(json!({"window": "30d", "units": [{"unit_id": "79", "received": 6}]}))
        );
    }
}
