//! The HTTP server's limits, on a running `sipas serve`: a connection that stalls in its
//! request head is closed, a request body that stalls is answered 408, and connections
//! beyond `http.max_connections` wait until one closes. Bounded waits only: a check fails
//! when the server never acts, not when it acts slowly.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sipas_stream::gateway::tokens::hash_token;
use support::*;

const TOKEN: &str = "limits-token-5d0c2b7e91";

/// `sipas serve` with the gateway's token and these HTTP settings; returns it and its port.
async fn serve(env: &TestEnv, http: &[(&str, &str)]) -> (Pipeline, u16) {
    let tokens = log_path(&format!("http-limits-tokens-{}.toml", std::process::id()));
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"limits\"\nsha256 = \"{}\"\nprovinces = [\"*\"]\n",
            hash_token(TOKEN)
        ),
    )
    .unwrap();
    let port = free_port();
    let mut settings: Vec<(String, String)> = vec![
        ("SIPAS__SERVE__LISTEN".into(), format!("127.0.0.1:{port}")),
        (
            "SIPAS__GATEWAY__TOKENS_FILE".into(),
            tokens.display().to_string(),
        ),
    ];
    settings.extend(http.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let server = Pipeline::start_command_with(env, &["serve"], &settings);
    wait_for("sipas serve to answer", || async move {
        tokio::task::spawn_blocking(move || {
            request(
                port,
                "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .is_some()
        })
        .await
        .unwrap()
    })
    .await;
    (server, port)
}

/// Sends `raw` on a new connection and reads until the server closes it; `None` if the
/// connection failed.
fn request(port: u16, raw: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    stream.write_all(raw.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// Reads from `stream` until the server closes it (or PATIENCE passes: `None`).
fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        // A reset is also the server closing it.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&answer).into_owned())
        }
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn stalled_heads_and_bodies_are_cut_and_connections_capped() {
    let env = TestEnv::new("http_limits").await;

    // --- Timeouts: half a request head, then half a body.
    let (_timeouts, port) = serve(
        &env,
        &[
            ("SIPAS__HTTP__HEADER_READ_TIMEOUT_MS", "500"),
            ("SIPAS__HTTP__BODY_READ_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    tokio::task::spawn_blocking(move || {
        let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stalled
            .write_all(b"GET /api/v1/health HTTP/1.1\r\nHo")
            .unwrap();
        let answer = read_until_closed(&mut stalled)
            .expect("a connection stalled in its request head is closed by the server");
        assert!(!answer.contains("200 OK"), "{answer}");

        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "POST /api/v1/surveys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{{\"submission_id\""
        );
        slow.write_all(head.as_bytes()).unwrap();
        let answer = read_until_closed(&mut slow)
            .expect("a request whose body stalls is answered and closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");

        // The server still answers.
        let health = request(
            port,
            "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .expect("answers after the stalled connections");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    })
    .await
    .unwrap();

    // --- The connection cap: two held keep-alive connections leave a third waiting.
    let (_capped, port) = serve(
        &env,
        &[
            ("SIPAS__HTTP__MAX_CONNECTIONS", "2"),
            ("SIPAS__HTTP__HEADER_READ_TIMEOUT_MS", "300000"),
        ],
    )
    .await;
    tokio::task::spawn_blocking(move || {
        // Each held connection has had an answer, so the server accepted it and keeps it.
        let mut held: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream
                    .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut first = [0u8; 12];
                stream.read_exact(&mut first).unwrap();
                assert_eq!(&first, b"HTTP/1.1 200");
                stream
            })
            .collect();
        let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
        third
            .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        // Not answered while the two are open. A slow server passes this check too; only
        // a server that accepts a third connection fails it.
        third
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut byte = [0u8; 1];
        let early = third.read(&mut byte);
        assert!(
            matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "a third connection was served while max_connections = 2 were open: {early:?}"
        );
        drop(held.pop());
        let started = Instant::now();
        let answer = read_until_closed(&mut third)
            .expect("the waiting connection is served once a held one closes");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{answer} (after {:?})",
            started.elapsed()
        );
    })
    .await
    .unwrap();
}
