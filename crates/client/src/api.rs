//! The API as the client commands see it: requests with the player's token, answers decoded,
//! and every failure turned into a [`Failure`] that says what to do next.
//!
//! Never retries an action on its own (a travel sent twice is two travels).

use std::time::Duration;

use ::api::{ErrorBody, StreamEvent};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// A connection to one galaxy.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(opts: &ClientOpts) -> Result<Api, Failure> {
        let base = opts.server_url();
        if !base.starts_with("http://") {
            return Err(Failure::local(
                "bad_server",
                format!(
                    "--server {base:?}: give an http:// URL, like {}",
                    super::DEFAULT_SERVER
                ),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_S))
            .build()
            .map_err(|e| Failure::local("http_client", format!("cannot start HTTP: {e}")))?;
        Ok(Api {
            http,
            base,
            token: token::load()?,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
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
        let req = self.http.get(self.url(path)).bearer_auth(self.token()?);
        self.send(req, REQUEST_TIMEOUT_S).await
    }

    /// `GET path?query` as the player.
    pub async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, Failure> {
        let req = self
            .http
            .get(self.url(path))
            .query(query)
            .bearer_auth(self.token()?);
        self.send(req, REQUEST_TIMEOUT_S).await
    }

    /// `GET /v1/events`: the player's event stream, read by a task of its own into a channel
    /// (so that a caller polling something else never blocks on it). The channel closes when
    /// the stream ends.
    pub async fn events(&self) -> Result<mpsc::UnboundedReceiver<StreamEvent>, Failure> {
        // No overall timeout: a stream lasts as long as the caller listens.
        let resp = self
            .http
            .get(self.url("/v1/events"))
            .bearer_auth(self.token()?)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            let code = resp.status();
            return Err(match resp.json::<ErrorBody>().await {
                Ok(ErrorBody { error }) => Failure::refused(&error.code, error.message),
                Err(_) => Failure::refused(
                    "http_error",
                    format!("the event stream answered HTTP {code}"),
                ),
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(read_events(resp, tx));
        Ok(rx)
    }

    /// `GET path` as anyone.
    pub async fn get_public<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, Failure> {
        let req = self.http.get(self.url(path)).query(query);
        self.send(req, REQUEST_TIMEOUT_S).await
    }

    /// `GET /v1/landing`: waits for the player's landing, asking again while the server says
    /// they are still in the jump.
    pub async fn landing<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        loop {
            let req = self
                .http
                .get(self.url("/v1/landing"))
                .bearer_auth(self.token()?);
            match self.send(req, LANDING_TIMEOUT_S).await {
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
        let req = self
            .http
            .post(self.url(path))
            .bearer_auth(self.token()?)
            .json(body);
        self.send(req, REQUEST_TIMEOUT_S).await
    }

    /// `POST path` with a JSON body, as anyone.
    pub async fn post_public<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        let req = self.http.post(self.url(path)).json(body);
        self.send(req, REQUEST_TIMEOUT_S).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        let why = if e.is_timeout() {
            "no answer in time"
        } else if e.is_connect() {
            "connection refused or no route"
        } else {
            "the connection failed"
        };
        Failure::Unreachable {
            code: "unreachable".into(),
            message: format!(
                "cannot reach the galaxy at {} ({why}): start it with `mltrader serve`, or point \
                 --server (or {}) at a running one",
                self.base,
                super::ENV_SERVER
            ),
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout_s: u64,
    ) -> Result<T, Failure> {
        let resp = req
            .timeout(Duration::from_secs(timeout_s))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| Failure::Unreachable {
                code: "bad_answer".into(),
                message: format!(
                    "{} answered something that is not the mltrader API ({e}); check --server",
                    self.base
                ),
            });
        }
        let (code, mut message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) => (error.code, error.message),
            Err(_) => (
                "http_error".to_string(),
                format!("{} answered HTTP {status}", self.base),
            ),
        };
        if code == "unauthorized" {
            message.push_str(&format!(
                " (this server does not know your token: `mltrader join NAME` on it, or set {})",
                token::ENV_TOKEN
            ));
        }
        if let Some(s) = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
            message = format!("{message} (retry after {s} s)");
        }
        if status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED {
            Err(Failure::Refused { code, message })
        } else {
            Err(Failure::Unreachable { code, message })
        }
    }
}

/// Reads server-sent events (`event:` and `data:` lines, a blank line after each) into `tx`
/// until the stream or the receiver ends. Comments (keep-alives) and events this client does
/// not know (a newer server's) are skipped.
async fn read_events(mut resp: reqwest::Response, tx: mpsc::UnboundedSender<StreamEvent>) {
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
                return;
            }
        }
        if buf.len() > MAX_EVENT_BYTES {
            return;
        }
    }
}
