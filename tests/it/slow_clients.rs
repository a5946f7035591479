//! Slow and idle clients cannot hold the tutor: request heads must arrive in time (which also
//! closes idle keep-alive connections), connections beyond the cap wait in the accept queue
//! instead of failing, and a body that stalls is answered `408`.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tutor::http::server::Limits;

/// A tutor on loopback with tight limits; returns its address.
async fn tight(max_connections: usize) -> std::net::SocketAddr {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = crate::helpers::config(&dir);
    let loaded = tokio::task::spawn_blocking(move || {
        let loaded = tutor::app::load(&config).expect("loads");
        drop(dir);
        loaded
    })
    .await
    .expect("load task");
    let state = tutor::http::AppState::with_tutor(loaded.tutor, Vec::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = Limits {
        header_read: Duration::from_millis(500),
        write_stall: Duration::from_secs(2),
        max_connections,
    };
    tokio::spawn(tutor::http::serve_with(
        listener,
        state,
        limits,
        std::future::pending(),
    ));
    addr
}

/// Reads until the server closes the connection (or `limit` passes); returns what was read
/// and whether it was closed.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    (
        String::from_utf8_lossy(&seen).into_owned(),
        read.unwrap_or(false),
    )
}

#[tokio::test]
async fn half_sent_heads_and_idle_connections_are_closed_and_excess_ones_wait() {
    let addr = tight(8).await;
    // Twelve clients send half a request line and wait: more than the cap.
    let mut slow = Vec::new();
    for _ in 0..12 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET /healthz HT").await.expect("write");
        slow.push(stream);
    }
    // A real client queued behind them is answered once their time is up, not refused.
    let healthz = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        until_closed(&mut stream, Duration::from_secs(30)).await
    });
    for stream in &mut slow {
        let (_, closed) = until_closed(stream, Duration::from_secs(30)).await;
        assert!(closed, "a half-sent head is closed by the server");
    }
    let (answer, _) = healthz.await.expect("healthz task");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A keep-alive connection left idle after its answer is closed too.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let (answer, closed) = until_closed(&mut idle, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is closed");
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408() {
    let addr = tight(8).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"lesson_id\": \"what-",
        )
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut stream, Duration::from_secs(60)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}
