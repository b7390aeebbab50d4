//! Any node answers any player (issue 19, decision 9): the API of a node that runs only some of
//! the galaxy's star systems accepts every player, and carries the request of a player it does
//! not hold to the node that does, as the whole HTTP request (docs/NATS.md, "Any node answers
//! any player").
//!
//! - [`Remote`]: what a node asks of the others (the binary implements it over NATS: find the
//!   player, forward, look an account up, record one). `AppState::remote` is None on a
//!   single-node server, and then nothing here runs.
//! - [`entry`]: the layer in front of the router. For `POST /v1/join` when the home system is
//!   not run here, and for an authenticated player not in this node's units
//!   (`mesh.place(name)` is None), it applies this node's limits (the only place they apply),
//!   forwards the request and returns the owner's answer as is. "Held here" is stricter than
//!   the mesh knowing the player: the player's system (or an end of their jump) must be one
//!   this node serves ([`Remote::serves`]), so a unit just handed over is not answered for. It authenticates against the
//!   node's account cache, then [`Remote::account`] (cached after).
//! - [`Owner`]: the owner's side: runs a forwarded request through this node's own router as
//!   the player it names, marked with [`Vouched`], a request extension that only this module
//!   can make (never a header: a client cannot forge it), under which the handlers take the
//!   player as given and apply no limit again. An acting request's answer is remembered by
//!   request id for [`REMEMBER_MS`] (in memory: it does not survive this node's death), so a
//!   retry with the same `Idempotency-Key` gets the first answer instead of acting twice.
//!
//! Never decides a game rule, never forwards a request that has no authenticated player (except
//! a join), and never forwards `GET /v1/events` (a stream: it is served by the entry node).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_service::Service;

use api::forward::{valid_request_id, ForwardedReply, ForwardedRequest, ForwardedResponse};
use mesh::directory::SystemPlace;
use sim::galaxy::SystemId;

use crate::error::ApiError;
use crate::routes::{bearer_token, check_ip, rate_limited, ClientIp, ROUTES};
use crate::{AppState, MAX_BODY_BYTES};

/// How long an owner remembers the answer of an acting request, by request id.
pub const REMEMBER_MS: u64 = 120_000;

/// The most answers an owner remembers at once; past this the oldest are forgotten first.
pub const MAX_REMEMBERED: usize = 10_000;

/// The largest answer carried back, in bytes (a history page is the largest: far below).
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The header a client sends a request id in, to make a retry of an unknown outcome safe.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Bytes of randomness in a request id made here (32 hex digits).
const REQUEST_ID_BYTES: usize = 16;

/// The port of a forwarded request's client address at the owner: the entry node's TCP port
/// is not carried (only the address counts for limits), so none is claimed.
const FORWARDED_PORT: u16 = 0;

const _: () = assert!(REQUEST_ID_BYTES * 2 <= api::forward::MAX_REQUEST_ID_BYTES);
const _: () = assert!(MAX_BODY_BYTES <= MAX_ANSWER_BYTES);

/// A boxed future, so that [`Remote`] can be a trait object.
pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a request could not be carried to its owner.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RemoteError {
    /// No node serves the player's system right now (a takeover or hand-over under way), or
    /// no node holds the player: nothing was done; ask again in a moment.
    #[error("{0}")]
    UnitMoving(String),
    /// The request was sent and no answer came: it may or may not have been done.
    #[error("{message}")]
    OutcomeUnknown { request_id: String, message: String },
    /// This node cannot reach the others (NATS).
    #[error("{0}")]
    Unavailable(String),
}

impl From<RemoteError> for ApiError {
    fn from(e: RemoteError) -> ApiError {
        match e {
            RemoteError::UnitMoving(m) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unit_moving",
                format!("{m}; ask again in a moment (Retry-After)"),
            )
            .retry_after_s(1),
            RemoteError::OutcomeUnknown {
                request_id,
                message,
            } => {
                let mut e = ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "outcome_unknown",
                    format!(
                        "{message}. Send it again with the header `Idempotency-Key: {request_id}` to get its answer if the node that ran it still remembers it (for {} s, in memory); if that node died, look at `GET /v1/me` before doing it again",
                        REMEMBER_MS / 1_000
                    ),
                );
                e.request_id = Some(request_id);
                e
            }
            RemoteError::Unavailable(m) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "remote_unavailable",
                format!("this node cannot reach the galaxy's other nodes: {m}; try again or try another server"),
            )
            .retry_after_s(1),
        }
    }
}

/// What a node asks of the galaxy's other nodes.
pub trait Remote: Send + Sync + 'static {
    /// Carries `request` (of player `request.player`) to the node that holds that player, and
    /// returns its answer.
    fn forward(
        &self,
        request: ForwardedRequest,
    ) -> RemoteFuture<'_, Result<ForwardedResponse, RemoteError>>;

    /// Carries `request` to the node that runs `system` (a join, to the home system).
    fn forward_to(
        &self,
        system: SystemId,
        request: ForwardedRequest,
    ) -> RemoteFuture<'_, Result<ForwardedResponse, RemoteError>>;

    /// Whether this node runs `system` now.
    fn serves(&self, system: SystemId) -> bool;

    /// Which node runs each system now, by node name, as the galaxy's leases say (for the
    /// operator's map). A system no node holds (a hand-over under way) is left out. The
    /// default knows no owner: a remote that cannot tell shows systems as "another node".
    fn owners(&self) -> RemoteFuture<'_, Result<BTreeMap<SystemId, String>, RemoteError>> {
        Box::pin(async { Ok(BTreeMap::new()) })
    }

    /// Regions (issue 20): this node's region and its links to the others, as a task of the
    /// node last saw them (never waits for the link). None: the node runs without regions.
    fn regions(&self) -> Option<api::Regions> {
        None
    }

    /// Regions: the population of each system of this node's region that another node of it
    /// runs, as a task of the node last heard it from that node (never waits): slug to
    /// (population, age in seconds). Empty when none was heard, or without regions.
    fn populations(&self) -> BTreeMap<String, (usize, f64)> {
        BTreeMap::new()
    }

    /// The player whose token has key `key` (`auth::key_of`), or None if no account has it.
    fn account<'a>(&'a self, key: &'a str)
        -> RemoteFuture<'a, Result<Option<String>, RemoteError>>;

    /// Records that the token of key `key` acts for `name`; returns once it is durable.
    fn record_account<'a>(
        &'a self,
        key: &'a str,
        name: &'a str,
    ) -> RemoteFuture<'a, Result<(), RemoteError>>;
}

/// The mark of a request whose player another node authenticated (or this node's [`entry`]
/// did), and whose limits were applied there. Only this module makes one: the fields are
/// private and the type is the crate's own, so no client header and no other crate can.
#[derive(Clone, Debug)]
pub(crate) struct Vouched {
    player: Option<String>,
}

impl Vouched {
    /// The player the request acts for (None: a join).
    pub(crate) fn player(&self) -> Option<&str> {
        self.player.as_deref()
    }
}

/// The layer in front of the router (see the module's doc).
pub(crate) async fn entry(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(remote) = state.remote.clone() else {
        return next.run(req).await;
    };
    if req.extensions().get::<Vouched>().is_some() {
        return next.run(req).await;
    }
    let route = ROUTES
        .iter()
        .find(|r| r.method == req.method().as_str() && r.path == req.uri().path());
    let Some(route) = route else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let Ok(ClientIp(ip)) = ClientIp::from_request_parts(&mut parts, &state).await;
    if route.method == "POST" && route.path == "/v1/join" {
        let home = state.mesh.galaxy().home();
        if remote.serves(home) {
            return next.run(Request::from_parts(parts, body)).await;
        }
        if let Err(e) = check_ip(&state, &state.join_limits, ip) {
            return e.into_response();
        }
        let answer = match forwarded(&parts, body, None).await {
            Ok(request) => remote.forward_to(home, request).await,
            Err(e) => return e.into_response(),
        };
        return answered(answer);
    }
    if !route.authenticated {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let name = match authenticate(&state, remote.as_ref(), &parts, ip).await {
        Ok(name) => name,
        Err(e) => return e.into_response(),
    };
    parts.extensions.insert(Vouched {
        player: Some(name.clone()),
    });
    if route.path == "/v1/events" || holds(&state, remote.as_ref(), &name) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let answer = match forwarded(&parts, body, Some(name)).await {
        Ok(request) => remote.forward(request).await,
        Err(e) => return e.into_response(),
    };
    answered(answer)
}

/// Whether this node holds `name`: in one of the systems it serves, or in a jump from or to
/// one. (The mesh may still know a player of a system this node just handed over.)
fn holds(state: &AppState, remote: &dyn Remote, name: &str) -> bool {
    match state.mesh.locate(name) {
        None => false,
        Some(SystemPlace::In(system)) => remote.serves(system),
        Some(SystemPlace::Jumping { from, to, .. }) => remote.serves(from) || remote.serves(to),
    }
}

/// The player of the request's token: this node's cache, then the galaxy's accounts (a miss
/// here costs a request to them, so it counts against the client IP's limit of requests
/// without a token). Counts the request against the token's limit.
async fn authenticate(
    state: &AppState,
    remote: &dyn Remote,
    parts: &Parts,
    ip: std::net::IpAddr,
) -> Result<String, ApiError> {
    let token = bearer_token(parts)?;
    let key = crate::auth::key_of(token);
    let name = match state.accounts.player_and_key(token) {
        Some((name, _)) => name,
        None => {
            check_ip(state, &state.ip_limits, ip)?;
            let name = remote.account(&key).await?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unknown token; join again to get one",
                )
            })?;
            state.accounts.insert(key.clone(), name.clone());
            name
        }
    };
    if let Err(wait) = state.token_limits.check(&key) {
        return Err(rate_limited(wait));
    }
    Ok(name)
}

/// A fresh random request id (32 hex digits).
fn new_request_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; REQUEST_ID_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(format!("no random source: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The request as the owner will run it.
async fn forwarded(
    parts: &Parts,
    body: Body,
    player: Option<String>,
) -> Result<ForwardedRequest, ApiError> {
    let request_id = match parts.headers.get(IDEMPOTENCY_KEY) {
        None => new_request_id()?,
        Some(v) => match v.to_str().ok().filter(|k| valid_request_id(k)) {
            Some(k) => k.to_string(),
            None => {
                return Err(ApiError::bad_request(
                    "bad_field",
                    format!(
                        "the Idempotency-Key header must be 1 to {} letters, digits, - or _ (the request_id of an outcome_unknown answer)",
                        api::forward::MAX_REQUEST_ID_BYTES
                    ),
                ))
            }
        },
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        })?;
    let body = String::from_utf8(bytes.to_vec()).map_err(|e| {
        ApiError::bad_request(
            "bad_json",
            format!(
                "the body is not UTF-8 text (byte {}), so it is not JSON",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    // The TCP peer of the connection (server::serve puts it there), never a header.
    let client_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    Ok(ForwardedRequest {
        client_ip,
        request_id,
        player,
        method: parts.method.as_str().to_string(),
        path_and_query,
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    })
}

/// The owner's answer as this node's answer, or the error of carrying it.
fn answered(answer: Result<ForwardedResponse, RemoteError>) -> Response {
    match answer {
        Ok(response) => into_response(response),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A carried answer as an HTTP answer: status, content type, Retry-After and body as the
/// owner gave them.
fn into_response(r: ForwardedResponse) -> Response {
    let Ok(status) = StatusCode::from_u16(r.status) else {
        return ApiError::internal(format!("the owning node answered status {}", r.status))
            .into_response();
    };
    let mut response = (status, r.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    if let Some(v) = r.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Some(s) = r.retry_after_s {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    response
}

/// The owner's side: runs forwarded requests through this node's router. Cheap to clone.
#[derive(Clone)]
pub struct Owner {
    router: Router,
    state: Arc<AppState>,
}

impl Owner {
    pub(crate) fn new(router: Router, state: Arc<AppState>) -> Owner {
        Owner { router, state }
    }

    /// Runs `request` as the player it names, unless that player is in none of the systems this
    /// node serves ([`ForwardedReply::NotHere`]: nothing ran; an API without a [`Remote`]
    /// serves every system). An acting request (POST) of a player runs once per request id
    /// while its answer is remembered; a join is never remembered (its answer is a token).
    pub async fn answer(&self, request: ForwardedRequest) -> ForwardedReply {
        if let (Some(player), Some(remote)) = (&request.player, &self.state.remote) {
            if !holds(&self.state, remote.as_ref(), player) {
                return ForwardedReply::NotHere;
            }
        }
        // Only an authenticated player's actions are remembered: a join's answer holds a new
        // token, and anyone who sent the same Idempotency-Key would be given it.
        let Some(player) = request.player.clone().filter(|_| request.method == "POST") else {
            return ForwardedReply::Answered(self.run(request).await);
        };
        // The request itself is part of the key: a client that sends another request under an
        // Idempotency-Key it used before gets that request run, never the other's answer.
        let fingerprint = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for part in [&request.method, &request.path_and_query, &request.body] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            h.finalize().to_vec()
        };
        let key = (player, request.request_id.clone(), fingerprint);
        ForwardedReply::Answered(self.state.remembered.once(key, self.run(request)).await)
    }

    async fn run(&self, request: ForwardedRequest) -> ForwardedResponse {
        match self.try_run(request).await {
            Ok(r) => r,
            Err(e) => {
                let status = e.status.as_u16();
                let retry_after_s = e.retry_after_s;
                let mut body = api::ErrorBody::new(e.code, e.message);
                body.error.request_id = e.request_id;
                ForwardedResponse {
                    status,
                    content_type: Some("application/json".into()),
                    retry_after_s,
                    body: serde_json::to_string(&body).expect("an error body serializes"),
                }
            }
        }
    }

    async fn try_run(&self, request: ForwardedRequest) -> Result<ForwardedResponse, ApiError> {
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            ApiError::bad_request("bad_field", format!("no such method {:?}", request.method))
        })?;
        let mut builder = axum::http::Request::builder()
            .method(method)
            .uri(&request.path_and_query);
        if let Some(c) = &request.content_type {
            builder = builder.header(header::CONTENT_TYPE, c);
        }
        let mut req = builder
            .body(Body::from(request.body))
            .map_err(|e| ApiError::bad_request("bad_query", format!("a forwarded request: {e}")))?;
        // The client's address from the envelope (the mesh's own NATS account wrote it), so
        // that this node's per-IP limits count the client, not every forwarded request as one.
        if let Some(ip) = request.client_ip {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, FORWARDED_PORT)));
        }
        tracing::debug!(client = ?request.client_ip, method = %request.method,
            path = %request.path_and_query, player = ?request.player, "forwarded request");
        req.extensions_mut().insert(Vouched {
            player: request.player,
        });
        let response = match self.router.clone().call(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after_s = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ApiError::internal(format!("an answer too large to carry back: {e}")))?;
        let body = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::internal("an answer that is not UTF-8 text"))?;
        Ok(ForwardedResponse {
            status,
            content_type,
            retry_after_s,
            body,
        })
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<ForwardedResponse>>>;

/// Player, request id, and the SHA-256 of the request's method, path and body.
type RememberedKey = (String, String, Vec<u8>);

/// The answers of acting requests by (player, request id, request), for [`REMEMBER_MS`], at most
/// [`MAX_REMEMBERED`]. In memory: forgotten when this node stops or dies.
#[derive(Default)]
pub struct Remembered {
    /// std mutex: held for a map operation only, never across an await.
    by_id: Mutex<HashMap<RememberedKey, (Instant, Slot)>>,
}

impl Remembered {
    /// Runs `run` unless an answer is remembered under `key` (then returns it; a request of the
    /// same key under way is waited for). Answers that say "try again" (429, 5xx) are not
    /// remembered: the retry runs.
    async fn once(
        &self,
        key: RememberedKey,
        run: impl Future<Output = ForwardedResponse>,
    ) -> ForwardedResponse {
        let slot = {
            let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if map.len() >= MAX_REMEMBERED {
                let keep = Duration::from_millis(REMEMBER_MS);
                map.retain(|_, (at, _)| now.duration_since(*at) < keep);
            }
            if map.len() >= MAX_REMEMBERED {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
            let fresh = |(at, _): &(Instant, Slot)| {
                now.duration_since(*at) < Duration::from_millis(REMEMBER_MS)
            };
            if !map.get(&key).is_some_and(fresh) {
                map.insert(key.clone(), (now, Slot::default()));
            }
            map[&key].1.clone()
        };
        let mut answer = slot.lock().await;
        if let Some(a) = answer.as_ref() {
            return a.clone();
        }
        let a = run.await;
        if a.status != 429 && a.status < 500 {
            *answer = Some(a.clone());
        }
        a
    }

    /// Answers remembered now (for tests).
    pub fn len(&self) -> usize {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How many times a travel that waits asks the destination's node for the landing while that
/// node does not hold the player yet (it reads the jump a moment after the commit).
pub const LANDING_ASKS: usize = 20;

/// The pause between two such asks, in milliseconds.
pub const LANDING_ASK_PAUSE_MS: u64 = 100;

/// A travel that waits, when its destination runs on another node: `GET /v1/landing` for
/// `player` carried to the node that runs `system`, asked again while that node does not hold
/// the player yet (the jump is on its way to it) or the unit is moving.
pub async fn wait_landing_at(
    remote: &dyn Remote,
    system: SystemId,
    player: &str,
) -> Result<api::Landed, ApiError> {
    let mut last = None;
    for _ in 0..LANDING_ASKS {
        let request = ForwardedRequest {
            request_id: new_request_id()?,
            player: Some(player.to_string()),
            method: "GET".into(),
            path_and_query: "/v1/landing".into(),
            content_type: None,
            body: String::new(),
            client_ip: None,
        };
        match remote.forward_to(system, request).await {
            Ok(r) if r.status == 200 => {
                return serde_json::from_str(&r.body).map_err(|e| {
                    ApiError::internal(format!("the landing's node answered {e}: {}", r.body))
                });
            }
            Ok(r) => last = Some(format!("{} {}", r.status, r.body)),
            Err(RemoteError::UnitMoving(why)) => last = Some(why),
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(LANDING_ASK_PAUSE_MS)).await;
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "in_jump",
        format!(
            "the jump is committed, but its landing could not be waited for ({}); ask GET /v1/landing",
            last.unwrap_or_default()
        ),
    ))
}
