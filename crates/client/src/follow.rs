//! Following the node that serves a galaxy (issue 18): a galaxy on JetStream runs on several
//! nodes, one serving and the others standing by (they answer every request with 503 and the
//! code `standby`). The client and the bots hold every node's URL ([`Servers`]) and send each
//! request to the node they last saw serving; when that node cannot have taken the request
//! (the connection was refused or failed before the request was sent, or it answered 503
//! `standby` or `shutting_down`) they try the next URL, round robin, pausing after each round
//! ([`BACKOFF_MIN_MS`] doubling to [`BACKOFF_MAX_MS`]), for at most [`FOLLOW_WAIT_MS`]; then the
//! request fails naming every URL tried and what each said ([`SendError::NoneServing`]).
//!
//! A write whose request may have reached a node (the connection died after it was sent, or no
//! answer came in time) is never sent again: the caller gets [`SendError::OutcomeUnknown`] and
//! decides (the client says "outcome unknown" and exits with its own code; a bot re-reads its
//! status). A read is sent again freely, to the next URL.
//!
//! With one URL there is nothing to follow: one try, as before several nodes existed (a
//! client pointed at a server that is down says so at once).
//!
//! Never interprets an answer beyond its status and, for a 503, its error code; never retries
//! a write.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ::api::ErrorBody;
use reqwest::{RequestBuilder, Response, StatusCode};

/// How long a request keeps trying the other URLs before it fails, in milliseconds: long
/// enough for a standby to see the lease expire and take over (a lease of 10 s, then recovery).
pub const FOLLOW_WAIT_MS: u64 = 30_000;
/// The pause after a round of URLs that all failed, doubled each round up to
/// [`BACKOFF_MAX_MS`], in milliseconds.
pub const BACKOFF_MIN_MS: u64 = 100;
/// The longest pause between rounds, in milliseconds (a standby's `Retry-After` is 1 s).
pub const BACKOFF_MAX_MS: u64 = 1_000;
/// The most URLs one list may hold (a galaxy has a few nodes).
pub const MAX_SERVERS: usize = 16;
/// The error codes of a 503 that mean "not this node" or "nothing was done, not now": try the
/// next URL. `unit_moving` and `remote_unavailable` come from a galaxy spread over nodes
/// (docs/NATS.md, "Any node answers any player"): the player's system is being handed over or
/// taken over, or the node cannot reach the others; neither delivered the request anywhere.
pub const FOLLOW_CODES: &[&str] = &[
    "standby",
    "shutting_down",
    "unit_moving",
    "remote_unavailable",
];

/// The error code of a 504 whose request reached the node that owns the player's system and
/// got no answer: a write's outcome is unknown (a read is sent again).
pub const OUTCOME_UNKNOWN_CODE: &str = "outcome_unknown";

/// Whether a request may be sent twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A read (GET): sent again, to any node, as often as it takes.
    Read,
    /// An action: sent again only when it cannot have reached a node.
    Write,
}

/// Why a request got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No node served within the wait: each URL tried, with what it said last.
    #[error("no node of the galaxy served within {waited_ms} ms: {}", tried_text(.tried))]
    NoneServing {
        tried: Vec<(String, String)>,
        waited_ms: u64,
    },
    /// A write reached (or may have reached) `url`, and its answer was lost: it may or may not
    /// have been done. Never sent again.
    #[error("outcome unknown: the request was sent to {url} and {why}")]
    OutcomeUnknown { url: String, why: String },
}

fn tried_text(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(url, why)| format!("{url} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An answer from the node that served.
#[derive(Debug)]
pub struct Answer {
    /// The URL that answered.
    pub url: String,
    pub status: StatusCode,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// What following cost so far, for the bots' summary and the storm's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowCounts {
    /// Requests tried again at another URL (or the same one after a round).
    pub retries: u64,
    /// Times the URL in use moved to the next one.
    pub switches: u64,
    /// Writes whose outcome is unknown.
    pub outcome_unknown: u64,
}

/// The URLs of one galaxy's nodes, and which one serves as far as this client knows.
pub struct Servers {
    http: reqwest::Client,
    urls: Vec<String>,
    /// Index in `urls` of the node last seen serving. Shared by every request (the bots share
    /// one `Servers`), moved on with a compare-and-swap so that many requests failing on the
    /// same node move it once.
    active: AtomicUsize,
    /// How long one request follows before it fails ([`FOLLOW_WAIT_MS`]).
    wait_ms: u64,
    retries: AtomicU64,
    switches: AtomicU64,
    outcome_unknown: AtomicU64,
}

/// Reads a list of URLs: `http://a:7878,http://b:7878` (spaces and trailing slashes ignored).
pub fn parse_urls(list: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = list
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(format!("--server {list:?}: give at least one http:// URL"));
    }
    if urls.len() > MAX_SERVERS {
        return Err(format!(
            "--server: {} URLs, at most {MAX_SERVERS}",
            urls.len()
        ));
    }
    if let Some(bad) = urls.iter().find(|u| !u.starts_with("http://")) {
        return Err(format!(
            "--server {bad:?}: give http:// URLs, like {}",
            super::DEFAULT_SERVER
        ));
    }
    Ok(urls)
}

impl Servers {
    /// The nodes at `urls` (from [`parse_urls`]), reached with `http`.
    pub fn new(http: reqwest::Client, urls: Vec<String>) -> Servers {
        Servers::with_wait(http, urls, FOLLOW_WAIT_MS)
    }

    /// [`Servers::new`], following for at most `wait_ms` (tests wait less).
    pub fn with_wait(http: reqwest::Client, urls: Vec<String>, wait_ms: u64) -> Servers {
        assert!(
            (1..=MAX_SERVERS).contains(&urls.len()),
            "a galaxy has 1 to {MAX_SERVERS} URLs"
        );
        Servers {
            http,
            urls,
            wait_ms,
            active: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            outcome_unknown: AtomicU64::new(0),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The URL of the node last seen serving.
    pub fn active(&self) -> &str {
        &self.urls[self.active.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// Every URL, comma-separated, as given.
    pub fn list(&self) -> String {
        self.urls.join(",")
    }

    pub fn counts(&self) -> FollowCounts {
        FollowCounts {
            retries: self.retries.load(Ordering::Relaxed),
            switches: self.switches.load(Ordering::Relaxed),
            outcome_unknown: self.outcome_unknown.load(Ordering::Relaxed),
        }
    }

    /// Sends the request `build` makes for a node's base URL, with an overall `timeout`,
    /// following the serving node (see the module's comment); reads the whole answer.
    pub async fn send(
        &self,
        kind: Kind,
        timeout: Duration,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<Answer, SendError> {
        let mut follow = Follow::new(self);
        loop {
            let (url, resp) = match self.open(&mut follow, kind, Some(timeout), &build).await? {
                Opened::Answered(answer) => return Ok(answer),
                Opened::Streaming { url, resp } => (url, resp),
            };
            let status = resp.status();
            let retry_after = retry_after(&resp);
            match resp.bytes().await {
                Ok(body) => {
                    return Ok(Answer {
                        url,
                        status,
                        retry_after,
                        body: body.to_vec(),
                    })
                }
                Err(e) => {
                    let why = format!("the answer was cut ({})", why(&e));
                    self.sent_and_lost(&mut follow, kind, &url, why).await?;
                }
            }
        }
    }

    /// Like [`Servers::send`], without an overall timeout, for a stream: the response once its
    /// status is in (a 503 `standby` or `shutting_down` moves on to the next URL); the body is
    /// the caller's to read.
    pub async fn open_stream(
        &self,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<Result<(String, Response), Answer>, SendError> {
        let mut follow = Follow::new(self);
        Ok(
            match self.open(&mut follow, Kind::Read, None, &build).await? {
                Opened::Streaming { url, resp } => Ok((url, resp)),
                Opened::Answered(answer) => Err(answer),
            },
        )
    }

    /// Sends until a node answers with something other than a 503 that says "not this node".
    async fn open(
        &self,
        follow: &mut Follow<'_>,
        kind: Kind,
        timeout: Option<Duration>,
        build: &impl Fn(&str) -> RequestBuilder,
    ) -> Result<Opened, SendError> {
        loop {
            let index = self.active.load(Ordering::Relaxed) % self.urls.len();
            let url = self.urls[index].clone();
            let mut req = build(&url);
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                // Refused, or failed while connecting: the request never left.
                Err(e) if e.is_connect() => {
                    follow.failed(index, &url, why(&e)).await?;
                    continue;
                }
                Err(e) => {
                    self.sent_and_lost(follow, kind, &url, why(&e)).await?;
                    continue;
                }
            };
            if resp.status() == StatusCode::GATEWAY_TIMEOUT {
                let body = resp.bytes().await.unwrap_or_default();
                match serde_json::from_slice::<ErrorBody>(&body) {
                    Ok(ErrorBody { error }) if error.code == OUTCOME_UNKNOWN_CODE => {
                        let why = format!(
                            "504 {}: {} (request_id {})",
                            error.code,
                            error.message,
                            error.request_id.as_deref().unwrap_or("none")
                        );
                        self.sent_and_lost(follow, kind, &url, why).await?;
                        continue;
                    }
                    _ => {
                        return Ok(Opened::Answered(Answer {
                            url,
                            status: StatusCode::GATEWAY_TIMEOUT,
                            retry_after: None,
                            body: body.to_vec(),
                        }))
                    }
                }
            }
            if resp.status() != StatusCode::SERVICE_UNAVAILABLE {
                return Ok(Opened::Streaming { url, resp });
            }
            let retry_after = retry_after(&resp);
            let body = match resp.bytes().await {
                Ok(body) => body,
                Err(e) => {
                    let why = format!("a 503 whose body was cut ({})", why(&e));
                    self.sent_and_lost(follow, kind, &url, why).await?;
                    continue;
                }
            };
            match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(ErrorBody { error }) if FOLLOW_CODES.contains(&error.code.as_str()) => {
                    let why = format!("503 {}: {}", error.code, error.message);
                    follow.failed(index, &url, why).await?;
                }
                _ => {
                    return Ok(Opened::Answered(Answer {
                        url,
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        retry_after,
                        body: body.to_vec(),
                    }))
                }
            }
        }
    }

    /// A request went out to `url` and its answer was lost: a write stops here (outcome
    /// unknown); a read tries again.
    async fn sent_and_lost(
        &self,
        follow: &mut Follow<'_>,
        kind: Kind,
        url: &str,
        why: String,
    ) -> Result<(), SendError> {
        match kind {
            Kind::Write => {
                self.outcome_unknown.fetch_add(1, Ordering::Relaxed);
                Err(SendError::OutcomeUnknown {
                    url: url.to_string(),
                    why,
                })
            }
            Kind::Read => {
                let index = self.urls.iter().position(|u| u == url).unwrap_or(0);
                follow.failed(index, url, why).await
            }
        }
    }

    /// Moves the active node on from `index` (unless another request already did).
    fn switch_from(&self, index: usize) {
        let next = (index + 1) % self.urls.len();
        if next != index
            && self
                .active
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.switches.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Opened {
    /// A node answered (anything but a 503 that says "not this node"); its body is unread.
    Streaming { url: String, resp: Response },
    /// A 503 with another code, read whole.
    Answered(Answer),
}

/// One request's following: when it started, what each URL said, how long to pause next.
struct Follow<'a> {
    servers: &'a Servers,
    started: tokio::time::Instant,
    /// The last failure of each URL, in the order first tried.
    tried: Vec<(String, String)>,
    failures: usize,
    backoff_ms: u64,
}

impl<'a> Follow<'a> {
    fn new(servers: &'a Servers) -> Follow<'a> {
        Follow {
            servers,
            started: tokio::time::Instant::now(),
            tried: Vec::new(),
            failures: 0,
            backoff_ms: BACKOFF_MIN_MS,
        }
    }

    /// The node at `index` did not take the request because of `why`: moves on to the next
    /// URL, pausing after each whole round, or fails once the wait is over (at once with one
    /// URL).
    async fn failed(&mut self, index: usize, url: &str, why: String) -> Result<(), SendError> {
        match self.tried.iter_mut().find(|(u, _)| u == url) {
            Some(entry) => entry.1 = why,
            None => self.tried.push((url.to_string(), why)),
        }
        self.failures += 1;
        let servers = self.servers;
        let waited_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if servers.urls.len() == 1 || waited_ms >= servers.wait_ms {
            return Err(SendError::NoneServing {
                tried: std::mem::take(&mut self.tried),
                waited_ms,
            });
        }
        servers.switch_from(index);
        servers.retries.fetch_add(1, Ordering::Relaxed);
        if self.failures.is_multiple_of(servers.urls.len()) {
            let left_ms = servers.wait_ms - waited_ms;
            tokio::time::sleep(Duration::from_millis(self.backoff_ms.min(left_ms))).await;
            self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
        }
        Ok(())
    }
}

fn retry_after(resp: &Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Why a request failed, in a few words.
fn why(e: &reqwest::Error) -> String {
    if e.is_connect() {
        if e.is_timeout() {
            "no connection in time".to_string()
        } else {
            "connection refused or failed".to_string()
        }
    } else if e.is_timeout() {
        "no answer in time".to_string()
    } else {
        "the connection failed".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::{header, StatusCode as Status};
    use axum::response::IntoResponse;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A fake node on loopback: every request answers `status` with `body`; counts requests.
    async fn node(status: u16, body: &'static str) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    Status::from_u16(status).unwrap(),
                    [(header::RETRY_AFTER, "1")],
                    body,
                )
                    .into_response()
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    async fn serving() -> (String, Arc<AtomicUsize>) {
        node(200, r#"{"ok":true}"#).await
    }

    async fn standby() -> (String, Arc<AtomicUsize>) {
        node(
            503,
            r#"{"error":{"code":"standby","message":"standing by: node=a holds the lease"}}"#,
        )
        .await
    }

    /// A URL where nothing listens (bound, then released).
    fn nobody() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    /// A node that reads each request and closes the connection without answering (it died
    /// after the request was sent); counts connections.
    async fn dies_after_request() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                drop(conn);
            }
        });
        (url, hits)
    }

    fn servers(urls: &[&str], wait_ms: u64) -> Servers {
        Servers::with_wait(
            reqwest::Client::new(),
            urls.iter().map(|u| u.to_string()).collect(),
            wait_ms,
        )
    }

    async fn get(s: &Servers) -> Result<Answer, SendError> {
        s.send(Kind::Read, TIMEOUT, |base| {
            s.http().get(format!("{base}/v1/me"))
        })
        .await
    }

    async fn post(s: &Servers) -> Result<Answer, SendError> {
        s.send(Kind::Write, TIMEOUT, |base| {
            s.http()
                .post(format!("{base}/v1/travel"))
                .json(&serde_json::json!({"to": "Sol"}))
        })
        .await
    }

    #[tokio::test]
    async fn a_standby_and_a_refused_url_are_passed_over_for_the_serving_node() {
        let (standby, standby_hits) = standby().await;
        let (active, active_hits) = serving().await;
        let s = servers(&[&nobody(), &standby, &active], 5_000);
        let answer = post(&s).await.expect("the serving node answers");
        assert_eq!(answer.url, active);
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(s.active(), active, "the serving node is remembered");
        assert_eq!(standby_hits.load(Ordering::SeqCst), 1);
        // The next request goes straight to it.
        get(&s).await.unwrap();
        assert_eq!(active_hits.load(Ordering::SeqCst), 2);
        assert_eq!(standby_hits.load(Ordering::SeqCst), 1);
        let c = s.counts();
        assert_eq!((c.switches, c.retries, c.outcome_unknown), (2, 2, 0));
    }

    #[tokio::test]
    async fn a_unit_moving_is_passed_over_and_an_unknown_outcome_is_never_sent_again() {
        let (moving, moving_hits) = node(
            503,
            r#"{"error":{"code":"unit_moving","message":"unit sys.sol: no node answers"}}"#,
        )
        .await;
        let (active, _) = serving().await;
        let s = servers(&[&moving, &active], 5_000);
        let answer = post(&s).await.expect("nothing was done there: sent on");
        assert_eq!(
            (answer.url.as_str(), moving_hits.load(Ordering::SeqCst)),
            (active.as_str(), 1)
        );

        let (unknown, unknown_hits) = node(
            504,
            r#"{"error":{"code":"outcome_unknown","message":"sent, no answer","request_id":"0a1b"}}"#,
        )
        .await;
        let s = servers(&[&unknown, &active], 5_000);
        match post(&s).await {
            Err(SendError::OutcomeUnknown { url, why }) => {
                assert_eq!(url, unknown);
                assert!(why.contains("request_id 0a1b"), "{why}");
            }
            other => panic!("want outcome unknown, got {other:?}"),
        }
        assert_eq!(unknown_hits.load(Ordering::SeqCst), 1, "never sent again");
        assert_eq!(s.counts().outcome_unknown, 1);
        let answer = get(&s).await.expect("a read follows");
        assert_eq!(answer.url, active);
    }

    #[tokio::test]
    async fn a_write_whose_answer_was_lost_is_never_sent_again() {
        let (dying, dying_hits) = dies_after_request().await;
        let (active, active_hits) = serving().await;
        let s = servers(&[&dying, &active], 5_000);
        match post(&s).await {
            Err(SendError::OutcomeUnknown { url, .. }) => assert_eq!(url, dying),
            other => panic!("want outcome unknown, got {other:?}"),
        }
        assert_eq!(dying_hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            active_hits.load(Ordering::SeqCst),
            0,
            "the write went nowhere else"
        );
        assert_eq!(s.counts().outcome_unknown, 1);
        // A read is sent again, to the next node.
        let answer = get(&s).await.expect("a read follows");
        assert_eq!(answer.url, active);
    }

    #[tokio::test]
    async fn when_no_node_serves_the_error_names_every_url_tried() {
        let (a, _) = standby().await;
        let gone = nobody();
        let s = servers(&[&a, &gone], 600);
        let started = std::time::Instant::now();
        let err = get(&s).await.expect_err("nobody serves");
        let waited = started.elapsed();
        let SendError::NoneServing { tried, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(tried.len(), 2, "{err}");
        let text = err.to_string();
        assert!(text.contains(&a) && text.contains("503 standby"), "{text}");
        assert!(text.contains(&gone) && text.contains("refused"), "{text}");
        assert!(
            waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
            "the wait is bounded: {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_503_that_is_not_standby_is_an_answer_not_a_reason_to_move() {
        let (busy, busy_hits) = node(
            503,
            r#"{"error":{"code":"overloaded","message":"too busy"}}"#,
        )
        .await;
        let (active, active_hits) = serving().await;
        let s = servers(&[&busy, &active], 5_000);
        let answer = get(&s).await.unwrap();
        assert_eq!(
            (answer.url.as_str(), answer.status),
            (busy.as_str(), StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(busy_hits.load(Ordering::SeqCst), 1);
        assert_eq!(active_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn one_url_is_tried_once() {
        let s = servers(&[&nobody()], 30_000);
        let started = std::time::Instant::now();
        assert!(matches!(get(&s).await, Err(SendError::NoneServing { .. })));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn url_lists_are_read_and_checked() {
        assert_eq!(
            parse_urls(" http://a:1/ ,http://b:2").unwrap(),
            vec!["http://a:1".to_string(), "http://b:2".to_string()]
        );
        assert!(parse_urls(",").unwrap_err().contains("at least one"));
        assert!(parse_urls("http://a:1,https://b:2")
            .unwrap_err()
            .contains("https://b:2"));
    }
}
