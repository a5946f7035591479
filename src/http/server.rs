//! The connection loop under the router: HTTP/1.1 through hyper with the limits a public
//! service needs against slow and idle clients.
//!
//! - A request's head must arrive within [`Limits::header_read`] of the connection becoming
//!   ready for it, which also closes keep-alive connections left idle that long.
//! - At most [`Limits::max_connections`] connections are open; the next one waits in the
//!   kernel's accept queue until one closes (the accept loop never fails for lack of file
//!   descriptors, and `/healthz` keeps answering the connections it has).
//! - A response the client does not read (its receive window stays full) for
//!   [`Limits::write_stall`] ends the connection, which drops the answer being written and with
//!   it the model call behind it.
//! - Request bodies must arrive within [`BODY_READ_TIMEOUT`] (see `api::read_body`).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::Service;

/// How long a whole request body may take to arrive (64 KiB at about 4 KB/s).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a request head to arrive; also the idle keep-alive timeout.
    pub header_read: Duration,
    /// Time a response may wait for the client to read it.
    pub write_stall: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(10),
            write_stall: Duration::from_secs(30),
            max_connections: default_max_connections(),
        }
    }
}

/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`). Tokio's
/// default of 1,024 is overrun when a thousand learners connect at once while the workers are
/// busy: the connections beyond it wait a second for the kernel to retry.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with room for a burst of connections ([`LISTEN_BACKLOG`]).
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted tutor may listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises this process's soft limit on open files to its hard limit (a common default of 1,024
/// is far below what a tutor with thousands of learners keeps open) and returns the limit now
/// in force.
pub fn raise_open_files_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

/// Three quarters of the open-files limit (the rest for the index, the log, model calls), at
/// most 50,000.
fn default_max_connections() -> usize {
    let limit = rlimit::Resource::NOFILE
        .get()
        .map_or(1024, |(soft, _)| soft);
    ((limit / 4 * 3) as usize).clamp(64, 50_000)
}

/// Serves `router` on `listener` with `limits` until `shutdown` resolves, then lets the
/// requests in flight finish (new connections are no longer accepted).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before it was accepted: wait a
                    // moment rather than spin, and keep serving the connections already open.
                    if !is_connection_error(&error) {
                        tracing::warn!(%error, "accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(WriteStallGuard::new(stream, limits.write_stall));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(request)
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            let _slot = slot;
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A TCP stream whose writes fail with `TimedOut` once the peer has accepted nothing for
/// `limit` (its receive window full: a client that stopped reading).
struct WriteStallGuard<S> {
    stream: S,
    limit: Duration,
    /// Armed while a write is waiting for the peer.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStallGuard<S> {
    fn new(stream: S, limit: Duration) -> WriteStallGuard<S> {
        WriteStallGuard {
            stream,
            limit,
            stall: None,
        }
    }

    /// After the inner write returned `Pending`: arms the timer, or fails once it has run out.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let limit = self.limit;
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.stall = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.stall = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The kernel's count of connections dropped because an accept queue was full.
    fn listen_overflows() -> u64 {
        let netstat = std::fs::read_to_string("/proc/net/netstat").expect("netstat");
        let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = (lines.next().expect("names"), lines.next().expect("values"));
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "ListenOverflows")
            .and_then(|(_, value)| value.parse().ok())
            .expect("ListenOverflows")
    }

    #[tokio::test]
    async fn a_listener_holds_a_burst_of_connections_before_any_is_accepted() {
        let listener = listen("127.0.0.1:0".parse().expect("address")).expect("listens");
        let addr = listener.local_addr().expect("address");
        assert_ne!(addr.port(), 0);
        // More clients than Tokio's default backlog of 1,024 connect while nothing accepts:
        // the kernel must queue every one rather than drop some (which the learner would see
        // as a second's wait for the retry).
        let burst = 1100;
        let before = listen_overflows();
        let clients: Vec<_> = (0..burst)
            .map(|_| tokio::spawn(tokio::net::TcpStream::connect(addr)))
            .collect();
        while listen_overflows() == before && !clients.iter().all(|c| c.is_finished()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(listen_overflows(), before, "the kernel dropped connections");
        for client in clients {
            client.await.expect("task").expect("connects");
        }
        for _ in 0..burst {
            listener.accept().await.expect("accepted");
        }
        // The address is taken while the listener lives.
        assert!(listen(addr).is_err());
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_fails_the_write_and_one_that_reads_does_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut guarded = WriteStallGuard::new(near, Duration::from_millis(200));
        // The peer reads: writes far beyond the buffer go through.
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 4096];
            let mut total = 0;
            while total < 10_000 {
                total += far.read(&mut sink).await.expect("read");
            }
            far
        });
        guarded
            .write_all(&[7u8; 10_000])
            .await
            .expect("a reading peer");
        let _far = reader.await.expect("reader");
        // Now nobody reads: the buffer fills, and the write fails after the limit.
        let error = guarded
            .write_all(&[7u8; 10_000])
            .await
            .expect_err("a peer that stopped reading");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
