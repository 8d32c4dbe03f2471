//! Writes raw event rows to ClickHouse. Availability problems are retried with capped
//! exponential backoff for as long as it takes; rows that ClickHouse refuses as data are
//! isolated by bisection and handed back so the caller can dead-letter them.
use std::borrow::Borrow;
use std::time::{Duration, Instant};

use clickhouse::{Client, RowOwned, RowRead, RowWrite};

use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::sink::client::is_data_error;

/// A row ClickHouse refused as data: its index in the slice passed in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertFailure {
    pub index: usize,
    pub message: String,
}

pub use crate::retry::Abandoned;

pub struct RawEventWriter {
    client: Client,
    metrics: Metrics,
    retry_initial: Duration,
    retry_max: Duration,
    shutdown: Shutdown,
}

const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

/// A read that has not been answered by then is given up and retried like a failed one
/// (with a warning), so that no query waits without end and without a word: the client
/// itself puts no bound on reading a response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl RawEventWriter {
    pub fn new(
        client: Client,
        metrics: Metrics,
        retry_initial: Duration,
        retry_max: Duration,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            client,
            metrics,
            retry_initial,
            retry_max,
            shutdown,
        }
    }

    /// Inserts all rows, returning those refused as data. Returns `Err(Abandoned)` only
    /// when shutdown is requested while ClickHouse is unavailable.
    pub async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<Vec<InsertFailure>, Abandoned>
    where
        T: RowOwned + RowWrite,
    {
        let mut failures = Vec::new();
        if !rows.is_empty() {
            self.insert_range(table, rows, 0, &mut failures).await?;
        }
        Ok(failures)
    }

    /// Inserts the rows of every part's sources in one INSERT as [`Self::insert_streamed`]
    /// does, each source making one row (`row`): the index's fact rows come from each
    /// partition's state, and its facts take about a quarter of their rows' memory (by
    /// struct sizes), so neither the rows nor one vector of all parts is held. A
    /// failure's `index` counts across the parts in order.
    pub async fn insert_parts<S, T>(
        &self,
        table: &str,
        parts: Vec<Vec<S>>,
        row: impl Fn(&S) -> T,
    ) -> Result<Vec<InsertFailure>, Abandoned>
    where
        T: RowOwned + RowWrite,
    {
        let (_, failures) = self
            .insert_streamed(table, || parts.iter().flatten().map(&row))
            .await?;
        Ok(failures)
    }

    /// Inserts the rows `rows()` yields as [`Self::insert`] inserts a slice (retried,
    /// refused rows isolated), in one INSERT that sends each row as it is built, so that
    /// they are never all held. Only when that INSERT fails are they built again
    /// (`rows()` must yield the same rows each time) and gathered, for `insert` to retry
    /// and bisect. Returns how many rows there were, and those refused.
    pub async fn insert_streamed<T, I>(
        &self,
        table: &str,
        rows: impl Fn() -> I,
    ) -> Result<(usize, Vec<InsertFailure>), Abandoned>
    where
        T: RowOwned + RowWrite,
        I: Iterator<Item = T>,
    {
        let mut first = rows().peekable();
        if first.peek().is_none() {
            return Ok((0, Vec::new()));
        }
        match self.attempt::<T>(table, first).await {
            Ok(count) => Ok((count, Vec::new())),
            Err(error) => {
                self.count_retry(&self.metrics.insert_retries, &error);
                tracing::warn!(table, %error, "ClickHouse insert failed; retrying");
                let all: Vec<T> = rows().collect();
                let failures = self.insert(table, &all).await?;
                Ok((all.len(), failures))
            }
        }
    }

    /// Counts a retry of a write (`retries`: the insert or the query counter) after
    /// `error`; one for ClickHouse's availability also marks consumption paused, first, so
    /// that a reader who sees the retry sees the pause.
    fn count_retry(&self, retries: &prometheus::IntCounter, error: &clickhouse::error::Error) {
        if !is_data_error(error) {
            self.metrics.paused.set(1);
        }
        retries.inc();
    }

    async fn insert_range<T>(
        &self,
        table: &str,
        rows: &[T],
        base: usize,
        failures: &mut Vec<InsertFailure>,
    ) -> Result<(), Abandoned>
    where
        T: RowOwned + RowWrite,
    {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max, &self.shutdown);
        loop {
            match self.attempt::<T>(table, rows).await {
                Ok(_) => return Ok(()),
                Err(error) if is_data_error(&error) => {
                    if rows.len() == 1 {
                        tracing::warn!(table, %error, "ClickHouse refused a row as data; dead-lettering it");
                        failures.push(InsertFailure {
                            index: base,
                            message: error.to_string(),
                        });
                        return Ok(());
                    }
                    let middle = rows.len() / 2;
                    Box::pin(self.insert_range(table, &rows[..middle], base, failures)).await?;
                    return Box::pin(self.insert_range(
                        table,
                        &rows[middle..],
                        base + middle,
                        failures,
                    ))
                    .await;
                }
                Err(error) => {
                    if self.shutdown.is_triggered() {
                        return Err(Abandoned);
                    }
                    self.count_retry(&self.metrics.insert_retries, &error);
                    tracing::warn!(table, rows = rows.len(), %error, retry_in_ms = backoff.delay().as_millis() as u64, "ClickHouse insert failed; retrying");
                    backoff.wait().await?;
                }
            }
        }
    }

    /// Runs a read query until it succeeds (availability errors are retried with the same
    /// backoff as inserts). Returns `Err(Abandoned)` only at shutdown.
    pub async fn fetch_all<T>(
        &self,
        what: &str,
        build: impl Fn(&Client) -> clickhouse::query::Query,
    ) -> Result<Vec<T>, Abandoned>
    where
        T: RowOwned + RowRead,
    {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max, &self.shutdown);
        loop {
            let started = std::time::Instant::now();
            let read = tokio::time::timeout(READ_TIMEOUT, build(&self.client).fetch_all::<T>());
            match read
                .await
                .unwrap_or(Err(clickhouse::error::Error::TimedOut))
            {
                Ok(rows) => {
                    self.metrics
                        .query_seconds
                        .with_label_values(&[what])
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(rows);
                }
                Err(error) => {
                    if self.shutdown.is_triggered() {
                        return Err(Abandoned);
                    }
                    self.count_retry(&self.metrics.query_retries, &error);
                    tracing::warn!(what, %error, retry_in_ms = backoff.delay().as_millis() as u64, "ClickHouse query failed; retrying");
                    backoff.wait().await?;
                }
            }
        }
    }

    /// One INSERT, timed, its rows counted when it succeeds. Returns how many it wrote.
    async fn attempt<T>(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = impl Borrow<T>>,
    ) -> clickhouse::error::Result<usize>
    where
        T: RowOwned + RowWrite,
    {
        let started = Instant::now();
        let result = self.insert_once(table, rows).await;
        self.metrics
            .insert_seconds
            .with_label_values(&[table])
            .observe(started.elapsed().as_secs_f64());
        if let Ok(count) = result {
            self.metrics
                .inserted_rows
                .with_label_values(&[table])
                .inc_by(count as u64);
        }
        result
    }

    async fn insert_once<T>(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = impl Borrow<T>>,
    ) -> clickhouse::error::Result<usize>
    where
        T: RowOwned + RowWrite,
    {
        let mut insert = self
            .client
            .insert::<T>(table)
            .await?
            .with_timeouts(Some(INSERT_TIMEOUT), Some(INSERT_TIMEOUT));
        let mut count = 0;
        for row in rows {
            insert.write(row.borrow()).await?;
            count += 1;
        }
        insert.end().await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clickhouse::Row, serde::Serialize, serde::Deserialize)]
    struct One {
        d: u16,
    }

    /// A server that answers every request with 503, like a ClickHouse behind a proxy
    /// while it is down.
    fn unavailable_server() -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut socket in listener.incoming().flatten() {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer);
                let _ = socket.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        url
    }

    fn writer(url: &str, metrics: &Metrics) -> (crate::shutdown::ShutdownTrigger, RawEventWriter) {
        let (trigger, shutdown) = crate::shutdown::channel();
        let client = Client::default().with_url(url).with_validation(false);
        let step = Duration::from_millis(1);
        let writer = RawEventWriter::new(client, metrics.clone(), step, step * 5, shutdown);
        (trigger, writer)
    }

    /// Waits (without a deadline: the suite's own bounds the test) until `done`.
    async fn until(done: impl Fn() -> bool) {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn retried_reads_and_retried_writes_are_counted_apart() {
        let url = unavailable_server();
        let metrics = Metrics::new();

        let (trigger, reader) = writer(&url, &metrics);
        let read = tokio::spawn(async move {
            reader
                .fetch_all::<One>("probe", |c| c.query("SELECT 1 AS d"))
                .await
                .map(|rows| rows.len())
        });
        until(|| metrics.query_retries.get() >= 2).await;
        trigger.trigger();
        assert!(read.await.unwrap().is_err(), "abandoned at shutdown");
        assert_eq!(metrics.insert_retries.get(), 0, "a read is not a write");
        assert_eq!(metrics.paused.get(), 1, "an unavailable ClickHouse pauses");

        let reads = metrics.query_retries.get();
        let (trigger, inserter) = writer(&url, &metrics);
        let insert =
            tokio::spawn(
                async move { inserter.insert("t", &[One { d: 1 }]).await.map(|f| f.len()) },
            );
        until(|| metrics.insert_retries.get() >= 2).await;
        trigger.trigger();
        assert!(insert.await.unwrap().is_err(), "abandoned at shutdown");
        assert_eq!(metrics.query_retries.get(), reads, "a write is not a read");
    }
}
