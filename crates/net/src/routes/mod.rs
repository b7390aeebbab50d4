//! The routes of the API: one table ([`ROUTES`]) that the router is built from and that the
//! OpenAPI document is checked against, the extractors every handler shares (who is asking,
//! checked JSON bodies and query strings), and one file per group of handlers.
//!
//! Never lets a request name the player it acts for: that comes from the token alone.

mod account;
mod combat;
mod economy;
mod events;
mod history;
mod map;
mod market;
pub mod metrics;
pub mod page;
mod refuel;
mod repair;
mod strict;
mod travel;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::limits::Limiter;
use super::{AppState, MAX_BODY_BYTES};
use sim::galaxy::{Galaxy, SystemId};

type Shared = Arc<AppState>;

/// One route of the API.
#[derive(Clone, Copy, Debug)]
pub struct RouteInfo {
    pub method: &'static str,
    pub path: &'static str,
    /// Needs `Authorization: Bearer <token>`.
    pub authenticated: bool,
    /// Changes the galaxy (one action at a time per player; refusals are streamed as `error`).
    pub acts: bool,
}

const fn route(
    method: &'static str,
    path: &'static str,
    authenticated: bool,
    acts: bool,
) -> RouteInfo {
    RouteInfo {
        method,
        path,
        authenticated,
        acts,
    }
}

/// Every route. The router mounts exactly these; `openapi.json` documents exactly these.
pub const ROUTES: &[RouteInfo] = &[
    route("POST", "/v1/join", false, true),
    route("GET", "/v1/me", true, false),
    route("POST", "/v1/travel", true, true),
    route("GET", "/v1/landing", true, false),
    route("POST", "/v1/refuel", true, true),
    route("POST", "/v1/repair", true, true),
    route("GET", "/v1/scan", true, false),
    route("GET", "/v1/market", true, false),
    route("POST", "/v1/trade", true, true),
    route("POST", "/v1/attack", true, true),
    route("GET", "/v1/wrecks", true, false),
    route("POST", "/v1/loot", true, true),
    route("GET", "/v1/history", true, false),
    route("GET", "/v1/events", true, false),
    route("GET", "/v1/systems", false, false),
    route("GET", "/v1/route", false, false),
    route("GET", "/v1/economy", false, false),
    route("GET", "/v1/status", false, false),
    route("GET", "/v1/regions", false, false),
    route("GET", "/v1/map", false, false),
    route("GET", "/v1/map/system", false, false),
    route("GET", "/v1/map/player", false, false),
    route("GET", "/v1/economy/report", false, false),
    route("GET", "/openapi.json", false, false),
];

/// The routes outside the API's table and its OpenAPI document: they answer no JSON (the
/// Prometheus text, the map's page and its event stream; docs/OPERATIONS.md).
pub const PAGE_ROUTES: &[RouteInfo] = &[
    route("GET", "/metrics", false, false),
    route("GET", "/", false, false),
    route("GET", "/map.js", false, false),
    route("GET", "/map.css", false, false),
    route("GET", "/v1/map/stream", false, false),
    route("GET", "/economy", false, false),
];

/// Every route the router mounts, the API's and the pages', as (method, path).
pub fn all_routes() -> Vec<(&'static str, &'static str)> {
    ROUTES
        .iter()
        .chain(PAGE_ROUTES)
        .map(|r| (r.method, r.path))
        .collect()
}

/// The handler of a route outside the table.
fn page_handler(r: &RouteInfo) -> MethodRouter<Shared> {
    match (r.method, r.path) {
        ("GET", "/metrics") => get(metrics::metrics),
        ("GET", "/") => get(page::index),
        ("GET", "/map.js") => get(page::script),
        ("GET", "/map.css") => get(page::style),
        ("GET", "/v1/map/stream") => get(page::map_stream),
        ("GET", "/economy") => get(economy::page),
        (m, p) => panic!("BUG: route {m} {p} is in PAGE_ROUTES but has no handler"),
    }
}

/// The handler of a route of the table.
fn handler(r: &RouteInfo) -> MethodRouter<Shared> {
    match (r.method, r.path) {
        ("POST", "/v1/join") => post(account::join),
        ("GET", "/v1/me") => get(account::me),
        ("POST", "/v1/travel") => post(travel::travel),
        ("GET", "/v1/landing") => get(travel::landing),
        ("POST", "/v1/refuel") => post(refuel::refuel),
        ("POST", "/v1/repair") => post(repair::repair),
        ("GET", "/v1/scan") => get(map::scan),
        ("GET", "/v1/market") => get(market::market),
        ("POST", "/v1/trade") => post(market::trade),
        ("POST", "/v1/attack") => post(combat::attack),
        ("GET", "/v1/wrecks") => get(combat::wrecks),
        ("POST", "/v1/loot") => post(combat::loot),
        ("GET", "/v1/economy") => get(market::economy),
        ("GET", "/v1/history") => get(history::history),
        ("GET", "/v1/events") => get(events::events),
        ("GET", "/v1/systems") => get(map::systems),
        ("GET", "/v1/route") => get(travel::route),
        ("GET", "/v1/status") => get(map::status),
        ("GET", "/v1/regions") => get(map::regions),
        ("GET", "/v1/map") => get(page::map_state),
        ("GET", "/v1/map/system") => get(page::map_system),
        ("GET", "/v1/map/player") => get(page::map_player),
        ("GET", "/v1/economy/report") => get(economy::report),
        ("GET", "/openapi.json") => get(openapi),
        (m, p) => panic!("BUG: route {m} {p} is in ROUTES but has no handler"),
    }
}

/// The router over a shared state.
pub fn router(state: Shared) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        router = router.route(r.path, handler(r));
    }
    for r in PAGE_ROUTES {
        router = router.route(r.path, page_handler(r));
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A player held by another node is forwarded before anything else runs.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::remote::entry,
        ))
        // Outermost: every answer is counted, the forwarded ones too, at this node.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such route; the API is described at /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}

async fn openapi(_: Public) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::DOCUMENT,
    )
}

/// The player a request acts for, from its `Authorization: Bearer <token>` header. Counts the
/// request against the token's rate limit.
pub struct Authed {
    pub name: String,
}

impl FromRequestParts<Shared> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Authed, ApiError> {
        // Authenticated, and counted, by this node's entry layer or by the node that forwarded
        // the request (crate::remote): taken as is, never counted twice.
        if let Some(vouched) = parts.extensions.get::<crate::remote::Vouched>() {
            let name = vouched.player().ok_or_else(|| {
                ApiError::internal(
                    "BUG: a request vouched for no player reached a route with a token",
                )
            })?;
            return Ok(Authed {
                name: name.to_string(),
            });
        }
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let token = bearer_token(parts)?;
        let (name, key) = state
            .accounts
            .player_and_key(token)
            .ok_or_else(|| unauthorized("unknown token; join again to get one"))?;
        if let Err(wait) = state.token_limits.check(&key) {
            return Err(rate_limited(wait));
        }
        Ok(Authed { name })
    }
}

/// The token of a request's `Authorization: Bearer <token>` header, or 401 saying what is
/// wrong with it.
pub fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        unauthorized("no token: join first (`mltrader join NAME`) or set MLTRADER_TOKEN")
    })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))
}

/// 429 with the seconds to wait.
pub fn rate_limited(wait: std::time::Duration) -> ApiError {
    let seconds = wait.as_secs_f64().ceil() as u64;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "too many requests; wait {:.1} s (see Retry-After)",
            wait.as_secs_f64()
        ),
    )
    .retry_after_s(seconds)
}

/// A JSON body (one of the `api` crate's requests), checked: malformed JSON, wrong types,
/// unknown fields (every request type denies them), a key given twice ([`strict`]), missing content type and oversized bodies are
/// [`ApiError`]s with a code. The body must be a JSON object (serde would otherwise take
/// `["Ann"]` for `{"name": "Ann"}`). A number with a zero fraction (`15.0`) is an integer.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Body<T>, ApiError> {
        let Json(strict::StrictValue(v)) =
            Json::<strict::StrictValue>::from_request(req, state).await?;
        let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_field", m);
        if !v.is_object() {
            return Err(bad("the body must be a JSON object".into()));
        }
        T::deserialize(v)
            .map(Body)
            .map_err(|e| bad(super::error::short(&format!("bad body: {e}"))))
    }
}

/// The largest integer a request body may give (the wire's: [`api::MAX_BODY_INTEGER`]).
pub use api::MAX_BODY_INTEGER;

/// A query string, checked like [`Body`].
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Params<T>, ApiError> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Params(v))
    }
}

/// The client's address for per-IP limits: IPv4 as is, IPv6 by its /64 network (one site
/// usually holds a whole /64), unspecified when the server was not given connection info.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ClientIp(match ip {
            IpAddr::V6(v6) if !v6.is_loopback() => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            other => other,
        }))
    }
}

/// Counts a request against a per-IP limiter (loopback addresses pass unless configured).
pub fn check_ip(state: &AppState, limiter: &Limiter<IpAddr>, ip: IpAddr) -> Result<(), ApiError> {
    if !state.config.limit_loopback && ip.is_loopback() {
        return Ok(());
    }
    limiter.check(&ip).map_err(rate_limited)
}

/// A request to a route without a token, counted against its client IP's limit (a node's own
/// forwarded request, which has no client, is not counted).
pub struct Public;

impl FromRequestParts<Shared> for Public {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Public, ApiError> {
        // The galaxy's own request: forwarded by another node (vouched) with no client's
        // address, as the regions' population polls are. No client to count it against (it
        // would be 0.0.0.0, one budget for every node's polls): never limited per IP.
        let vouched = parts.extensions.get::<crate::remote::Vouched>().is_some();
        if vouched && parts.extensions.get::<ConnectInfo<SocketAddr>>().is_none() {
            return Ok(Public);
        }
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        check_ip(state, &state.ip_limits, ip)?;
        Ok(Public)
    }
}

/// The longest system name a request may give, in bytes (names, plus quotes and spaces a
/// player may type around them); longer ones are refused before any lookup.
const MAX_SYSTEM_INPUT_BYTES: usize = sim::galaxy::MAX_NAME_BYTES + 8;

/// The system a player means by `name`, or 404 `unknown_system` with a suggestion.
pub fn system(galaxy: &Galaxy, name: &str) -> Result<SystemId, ApiError> {
    if name.len() > MAX_SYSTEM_INPUT_BYTES {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_system",
            format!(
                "no system has a name that long (at most {} bytes); run `mltrader systems` to list them",
                sim::galaxy::MAX_NAME_BYTES
            ),
        ));
    }
    galaxy
        .lookup(name)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "unknown_system", e.to_string()))
}

/// Milliseconds a jump between two neighbours takes at the mesh's settings.
pub fn travel_ms(state: &AppState, a: SystemId, b: SystemId) -> u64 {
    let config = state.mesh.config();
    let ticks = state
        .mesh
        .galaxy()
        .travel_ticks(a, b, config.rules.ticks_per_ly);
    ticks.saturating_mul(1000) / u64::from(config.tick_hz)
}

/// Tells the player's event streams that an action of theirs was refused; returns the error.
pub fn refused(state: &AppState, name: &str, route: &str, e: ApiError) -> ApiError {
    state.events.tell(
        name,
        api::StreamEvent::Error {
            route: route.to_string(),
            code: e.code.to_string(),
            message: e.message.clone(),
        },
    );
    e
}
