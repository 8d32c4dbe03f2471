//! The HTTP server under `sipas serve`, `sipas gateway` and `/metrics`: `axum::serve`
//! without its missing limits. A connection must send its request head within
//! `header_read_timeout_ms` (also the idle time allowed between keep-alive requests) and a
//! request body within `body_read_timeout_ms` of its head; at most `max_connections` are
//! open, further ones wait in the listen backlog (a semaphore permit per connection, as
//! mini-redis does), so stalled clients cannot hold the process's sockets and memory.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use http_body::Frame;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::HttpConfig;

/// A request body that did not arrive within `body_read_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// True when `error` (from reading a request body) was caused by a [`BodyTimeout`].
pub fn is_body_timeout(error: &axum::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if error.is::<BodyTimeout>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// How long open requests may still run after shutdown (an SSE stream never ends by itself).
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let body_timeout = Duration::from_millis(limits.body_read_timeout_ms);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
        };
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            let request = request.map(|body| Body::new(TimedBody::new(body, body_timeout)));
            router.clone().oneshot(request)
        });
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let served = tokio::select! {
                _ = &mut connection => true,
                _ = stop => false,
            };
            if !served {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
            drop(permit);
        });
    }
    let _ = stop.send(true);
    // Every connection holds a permit until it is closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::info!(
            open = limits.max_connections - permits.available_permits(),
            "connections still open after shutdown are closed"
        );
    }
    Ok(())
}

/// A body that fails with [`BodyTimeout`] once its deadline passes before its end.
struct TimedBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl<B> TimedBody<B> {
    fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl<B> http_body::Body for TimedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(this.limit).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_stops_arriving_fails_at_its_deadline() {
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let error = axum::body::to_bytes(
            Body::new(TimedBody::new(body, Duration::from_millis(20))),
            1024,
        )
        .await
        .unwrap_err();
        assert!(is_body_timeout(&error), "{error:?}");
    }

    #[tokio::test]
    async fn a_complete_body_is_read_whole() {
        let body = Body::from("hello");
        let bytes = axum::body::to_bytes(
            Body::new(TimedBody::new(body, Duration::from_secs(30))),
            1024,
        )
        .await
        .unwrap();
        assert_eq!(&bytes[..], b"hello");
    }
}
