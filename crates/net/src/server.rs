//! The accept loop of the API: admits each connection under the caps of
//! [`super::connections`], serves it with hyper's HTTP/1.1 connection (with a deadline on
//! request heads and on request bodies), backs off when accept fails for want of descriptors,
//! and drains the connections on shutdown.
//!
//! `axum::serve` has none of these knobs: a client that sent half a request held its socket
//! forever, and 20,000 of them took every descriptor of the process (the log then said
//! `accept error: Too many open files` every second, and every request hung).
//!
//! Owns sockets, timers and the connection tasks; never decides what a request means (the
//! router does) and never touches the mesh.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tower_service::Service as _;

use super::connections::{Admission, Refusal};

/// Default of `serve --header-timeout-s`.
pub const DEFAULT_HEADER_TIMEOUT_S: u64 = 10;
/// Default of `serve --body-timeout-s`.
pub const DEFAULT_BODY_TIMEOUT_S: u64 = 30;
/// The first pause after a failed accept; each failure in a row doubles it.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// The longest pause after failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Refusals and accept errors are logged at most once per this period, with their count.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The deadlines of each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the moment a connection waits for a request (its first, or the next one on a
    /// kept-alive connection) until the request's head has arrived whole. hyper starts this
    /// timer as soon as it waits for a head, so it is also the idle keep-alive timeout.
    pub header: Duration,
    /// From the moment a request's head has arrived until its body has arrived whole.
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_S),
            body: Duration::from_secs(DEFAULT_BODY_TIMEOUT_S),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the open connections to finish (idle ones close at once; the caller ends long answers
/// first). Each connection's address reaches the handlers as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    admission: Arc<Admission>,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut log = Throttled::default();
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                conn
            }
            // The client gave up before we took its connection: nothing to wait for.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                log.note(&format!("accept error: {e}; backing off up to {backoff:?}"));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {},
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let permit = match admission.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                drop(tcp);
                log.note(&refusal_message(refusal, &admission, peer));
                continue;
            }
        };
        // Answers are small and each is awaited by a client: send them at once (no Nagle).
        let _ = tcp.set_nodelay(true);
        let service = ConnectionService {
            router: router.clone(),
            peer,
            body_timeout: timeouts.body,
        };
        let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tracing::trace!(%peer, "connection accepted");
        tokio::spawn(async move {
            // An error here is the client's (a reset, a timeout, a bad request): hyper has
            // answered what it could; the connection is over either way.
            let ended = conn.await;
            tracing::trace!(%peer, ?ended, "connection closed");
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn refusal_message(refusal: Refusal, admission: &Admission, peer: SocketAddr) -> String {
    let caps = admission.caps();
    match refusal {
        Refusal::Total => format!(
            "connection refused: {} connections open, the cap (serve --max-connections)",
            caps.max_total
        ),
        Refusal::PerAddress => format!(
            "connection refused: {} holds {} connections, the cap per address \
             (serve --max-connections-per-ip)",
            peer.ip(),
            caps.max_per_ip.unwrap_or(usize::MAX)
        ),
    }
}

/// Errors of one incoming connection, not of the listener (as `axum::serve` tells them).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// A log line at most once per [`LOG_EVERY`], saying how many times it happened meanwhile:
/// a flood makes one line every ten seconds, not one per socket.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    skipped: u64,
}

impl Throttled {
    fn note(&mut self, line: &str) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.skipped += 1;
            return;
        }
        if self.skipped > 0 {
            eprintln!(
                "{line} (and {} more like it since the last line)",
                self.skipped
            );
        } else {
            eprintln!("{line}");
        }
        self.last = Some(now);
        self.skipped = 0;
    }
}

/// The router as one connection's hyper service: its requests carry the client's address and a
/// body with a deadline.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    body_timeout: Duration,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        // The path only: never a header (a token travels in `Authorization`) nor the query.
        tracing::debug!(peer = %self.peer, method = %req.method(), path = req.uri().path(), "request");
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        let mut req = req.map(|body| Body::new(DeadlineBody::new(body, deadline)));
        req.extensions_mut().insert(ConnectInfo(self.peer));
        // A router is always ready (`poll_ready` is a no-op), so calling a clone is right.
        self.router.clone().call(req)
    }
}

/// A request body that fails once its deadline passes before it has arrived whole. Unlike
/// tower-http's `RequestBodyTimeout`, whose timer starts anew with each frame, this bounds the
/// whole body: a client dripping a byte every few seconds is cut off all the same.
struct DeadlineBody {
    body: Incoming,
    deadline: tokio::time::Instant,
    /// Armed at the first read: a request whose handler never reads its body (every GET)
    /// costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The request body did not arrive within `serve --body-timeout-s`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within its deadline (serve --body-timeout-s)")]
pub struct BodyTimeout;

impl DeadlineBody {
    fn new(body: Incoming, deadline: tokio::time::Instant) -> DeadlineBody {
        DeadlineBody {
            body,
            deadline,
            sleep: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
