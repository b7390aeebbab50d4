//! The API as the client commands see it: requests with the player's token, answers decoded,
//! and every failure turned into a [`Failure`] that says what to do next.
//!
//! The requests go through [`Servers`]: with several `--server` URLs (the nodes of one galaxy)
//! each goes to the node serving ([`super::follow`]). Never sends an action twice (a travel
//! sent twice is two travels): an action whose answer was lost is "outcome unknown"
//! ([`Failure::OutcomeUnknown`]).

use std::time::Duration;

use ::api::{ErrorBody, StreamEvent};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::follow::{self, Kind, SendError, Servers};
use super::{token, ClientOpts, Failure};
use tokio::sync::mpsc;

/// The longest server-sent event the client takes, in bytes (the server's are a few hundred).
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// How long to wait for a connection.
pub const CONNECT_TIMEOUT_S: u64 = 5;
/// How long to wait for an ordinary answer.
pub const REQUEST_TIMEOUT_S: u64 = 30;
/// How long to wait for a landing answer (the server answers within 60 s).
pub const LANDING_TIMEOUT_S: u64 = 75;
/// Times the event stream is opened again (at the node serving) after it ended.
pub const MAX_EVENT_RECONNECTS: u32 = 100;

/// A connection to one galaxy (one node, or several of which one serves).
pub struct Api {
    servers: Servers,
    token: Option<String>,
}

impl Api {
    pub fn new(opts: &ClientOpts) -> Result<Api, Failure> {
        let urls = opts.server_urls()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_S))
            .build()
            .map_err(|e| Failure::local("http_client", format!("cannot start HTTP: {e}")))?;
        Ok(Api {
            servers: Servers::new(http, urls),
            token: token::load()?,
        })
    }

    /// The URL of the node last seen serving.
    pub fn base(&self) -> &str {
        self.servers.active()
    }

    fn token(&self) -> Result<&str, Failure> {
        self.token.as_deref().ok_or_else(|| {
            Failure::local(
                "no_token",
                format!(
                    "no token: join first with `mltrader join NAME`, or set {}",
                    token::ENV_TOKEN
                ),
            )
        })
    }

    /// `GET path` as the player.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let token = self.token()?;
        self.send(Kind::Read, REQUEST_TIMEOUT_S, |base| {
            self.http().get(format!("{base}{path}")).bearer_auth(token)
        })
        .await
    }

    /// `GET path?query` as the player.
    pub async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, Failure> {
        let token = self.token()?;
        self.send(Kind::Read, REQUEST_TIMEOUT_S, |base| {
            self.http()
                .get(format!("{base}{path}"))
                .query(query)
                .bearer_auth(token)
        })
        .await
    }

    /// `GET /v1/events`: the player's event stream, read by a task of its own into a channel
    /// (so that a caller polling something else never blocks on it). When the stream ends (the
    /// node stopped, or another took over) it is opened again at the node serving, up to
    /// [`MAX_EVENT_RECONNECTS`] times; the channel closes when it cannot be.
    pub async fn events(&self) -> Result<mpsc::UnboundedReceiver<StreamEvent>, Failure> {
        let resp = open_events(&self.servers, self.token()?).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let servers = Servers::new(self.http().clone(), self.servers.urls().to_vec());
        let token = self.token()?.to_string();
        tokio::spawn(async move {
            let mut resp = resp;
            let mut reconnects = 0;
            while read_events(resp, &tx).await == StreamEnd::Closed
                && reconnects < MAX_EVENT_RECONNECTS
            {
                reconnects += 1;
                match open_events(&servers, &token).await {
                    Ok(next) => resp = next,
                    Err(_) => return,
                }
            }
        });
        Ok(rx)
    }

    /// `GET path` as anyone.
    pub async fn get_public<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, Failure> {
        self.send(Kind::Read, REQUEST_TIMEOUT_S, |base| {
            self.http().get(format!("{base}{path}")).query(query)
        })
        .await
    }

    /// `GET /v1/landing`: waits for the player's landing, asking again while the server says
    /// they are still in the jump.
    pub async fn landing<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        let token = self.token()?;
        loop {
            let sent = self
                .send(Kind::Read, LANDING_TIMEOUT_S, |base| {
                    self.http()
                        .get(format!("{base}/v1/landing"))
                        .bearer_auth(token)
                })
                .await;
            match sent {
                Err(Failure::Refused { code, .. }) if code == "in_jump" => continue,
                other => return other,
            }
        }
    }

    /// `POST path` with a JSON body, as the player.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        let token = self.token()?;
        self.send(Kind::Write, REQUEST_TIMEOUT_S, |base| {
            self.http()
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(body)
        })
        .await
    }

    /// `POST path` with a JSON body, as anyone.
    pub async fn post_public<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        self.send(Kind::Write, REQUEST_TIMEOUT_S, |base| {
            self.http().post(format!("{base}{path}")).json(body)
        })
        .await
    }

    fn http(&self) -> &reqwest::Client {
        self.servers.http()
    }

    async fn send<T: DeserializeOwned>(
        &self,
        kind: Kind,
        timeout_s: u64,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<T, Failure> {
        let answer = self
            .servers
            .send(kind, Duration::from_secs(timeout_s), build)
            .await
            .map_err(|e| failure_of(&self.servers, e))?;
        decode(answer)
    }
}

/// Opens the event stream at the node serving.
async fn open_events(servers: &Servers, token: &str) -> Result<reqwest::Response, Failure> {
    // No overall timeout: a stream lasts as long as the caller listens.
    let opened = servers
        .open_stream(|base| {
            servers
                .http()
                .get(format!("{base}/v1/events"))
                .bearer_auth(token)
        })
        .await
        .map_err(|e| failure_of(servers, e))?;
    match opened {
        Ok((_, resp)) if resp.status().is_success() => Ok(resp),
        Ok((url, resp)) => {
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            Err(error_of(status, &url, &body))
        }
        Err(answer) => Err(error_of(answer.status, &answer.url, &answer.body)),
    }
}

/// A failure of following, for people.
fn failure_of(servers: &Servers, e: SendError) -> Failure {
    match e {
        SendError::NoneServing { tried, .. } if servers.urls().len() == 1 => {
            let why = tried.first().map_or("", |(_, why)| why.as_str());
            Failure::Unreachable {
                code: "unreachable".into(),
                message: format!(
                    "cannot reach the galaxy at {} ({why}): start it with `mltrader serve`, or \
                     point --server (or {}) at a running one",
                    servers.active(),
                    super::ENV_SERVER
                ),
            }
        }
        e @ SendError::NoneServing { .. } => Failure::Unreachable {
            code: "unreachable".into(),
            message: format!(
                "{e}; start a node with `mltrader serve`, or point --server (or {}) at the \
                 running ones",
                super::ENV_SERVER
            ),
        },
        e @ SendError::OutcomeUnknown { .. } => Failure::OutcomeUnknown {
            message: format!(
                "{e}: the action may or may not have been done; look with `mltrader status` \
                 before doing it again"
            ),
        },
    }
}

/// An answer decoded: the wanted type for a success, else the [`Failure`] it says.
fn decode<T: DeserializeOwned>(answer: follow::Answer) -> Result<T, Failure> {
    let follow::Answer {
        url,
        status,
        retry_after,
        body,
    } = answer;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| Failure::Unreachable {
            code: "bad_answer".into(),
            message: format!(
                "{url} answered something that is not the mltrader API ({e}); check --server"
            ),
        });
    }
    let mut failure = error_of(status, &url, &body);
    if let (Some(s), Failure::Refused { message, .. }) = (
        retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS),
        &mut failure,
    ) {
        *message = format!("{message} (retry after {s} s)");
    }
    Err(failure)
}

/// The [`Failure`] an error answer says.
fn error_of(status: StatusCode, url: &str, body: &[u8]) -> Failure {
    let (code, mut message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => (error.code, error.message),
        Err(_) => (
            "http_error".to_string(),
            format!("{url} answered HTTP {status}"),
        ),
    };
    if code == "unauthorized" {
        message.push_str(&format!(
            " (this server does not know your token: `mltrader join NAME` on it, or set {})",
            token::ENV_TOKEN
        ));
    }
    if status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED {
        Failure::Refused { code, message }
    } else {
        Failure::Unreachable { code, message }
    }
}

/// How an event stream ended.
#[derive(Debug, PartialEq, Eq)]
enum StreamEnd {
    /// The server closed it, or the connection died: open it again.
    Closed,
    /// The receiver is gone, or the stream broke the rules: stop.
    Done,
}

/// Reads server-sent events (`event:` and `data:` lines, a blank line after each) into `tx`
/// until the stream or the receiver ends. Comments (keep-alives) and events this client does
/// not know (a newer server's) are skipped.
async fn read_events(
    mut resp: reqwest::Response,
    tx: &mpsc::UnboundedSender<StreamEvent>,
) -> StreamEnd {
    let mut buf = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if name.is_empty() {
                continue;
            }
            let Ok(event) = serde_json::from_str::<StreamEvent>(&data) else {
                continue;
            };
            if tx.send(event).is_err() {
                return StreamEnd::Done;
            }
        }
        if buf.len() > MAX_EVENT_BYTES {
            return StreamEnd::Done;
        }
    }
    if tx.is_closed() {
        StreamEnd::Done
    } else {
        StreamEnd::Closed
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{header, StatusCode as Status};
    use axum::response::{IntoResponse, Response};
    use futures_util::stream::{self, StreamExt};

    use super::*;

    fn sse(event: &StreamEvent) -> String {
        format!(
            "event: {}\ndata: {}\n\n",
            event.name(),
            serde_json::to_string(event).unwrap()
        )
    }

    /// A node whose first event stream sends `event` and ends (the node died), and which
    /// stands by from then on.
    async fn node_that_dies(event: StreamEvent) -> String {
        let streams = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().fallback(move || {
            let first = streams.fetch_add(1, Ordering::SeqCst) == 0;
            let event = event.clone();
            async move {
                if first {
                    ([(header::CONTENT_TYPE, "text/event-stream")], sse(&event)).into_response()
                } else {
                    (
                        Status::SERVICE_UNAVAILABLE,
                        r#"{"error":{"code":"standby","message":"standing by"}}"#,
                    )
                        .into_response()
                }
            }
        });
        serve(app).await
    }

    /// A node whose event stream sends `event` and stays open.
    async fn node_that_serves(event: StreamEvent) -> String {
        let app = axum::Router::new().fallback(move || {
            let event = event.clone();
            async move {
                let body = stream::once(async move { Ok::<_, Infallible>(sse(&event)) })
                    .chain(stream::pending());
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .body(Body::from_stream(body))
                    .unwrap()
            }
        });
        serve(app).await
    }

    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn the_event_stream_reopens_at_the_node_that_took_over() {
        let hello = StreamEvent::Hello {
            player: "Ann".into(),
            system: Some("Sol".into()),
        };
        let joined = StreamEvent::Joined {
            player: "Bob".into(),
            system: "Sol".into(),
        };
        let a = node_that_dies(hello.clone()).await;
        let b = node_that_serves(joined.clone()).await;
        let api = Api {
            servers: Servers::with_wait(reqwest::Client::new(), vec![a, b], 5_000),
            token: Some("t".into()),
        };
        let mut rx = api.events().await.expect("the stream opens at a");
        let wait = Duration::from_secs(5);
        let first = tokio::time::timeout(wait, rx.recv()).await.unwrap();
        assert_eq!(first, Some(hello));
        let second = tokio::time::timeout(wait, rx.recv()).await.unwrap();
        assert_eq!(second, Some(joined), "b's stream, after a's ended");
    }
}
