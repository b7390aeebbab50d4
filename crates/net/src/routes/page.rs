//! The operator's map in the browser (docs/OPERATIONS.md, "Map"): the page at `/` with its
//! script and style (embedded in the binary: nothing to build, no CDN), the state it starts
//! from (`GET /v1/map`), a system's panel (`GET /v1/map/system`), the player search
//! (`GET /v1/map/player`) and its live stream (`GET /v1/map/stream`, from [`crate::map_view`]).
//!
//! Read-only and public, like `GET /v1/systems`: no route here takes a token or changes
//! anything, and nothing shown is private (no token, no trade, no purse). `serve --no-map`
//! turns every one of them into a 404.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{system, Params, Public, Shared};
use crate::error::ApiError;
use crate::map_view::{RecentEvent, ShardFigures, LANE_WINDOW_S};
use crate::wire;
use mesh::directory::SystemPlace;

/// The page, its script and its style, as kept in `crates/net/assets/`.
const INDEX_HTML: &str = include_str!("../../assets/map.html");
const MAP_JS: &str = include_str!("../../assets/map.js");
const MAP_CSS: &str = include_str!("../../assets/map.css");

/// Players a system's panel lists by default, and at most.
pub const PANEL_DEFAULT_PLAYERS: usize = 50;
pub const PANEL_MAX_PLAYERS: usize = 500;
/// The longest player name the search takes, in bytes.
const MAX_SEARCH_BYTES: usize = 64;

/// 404, as for any route that does not exist, when the map is turned off.
pub(crate) fn map_on(state: &Shared) -> Result<(), ApiError> {
    if state.config.map {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "the map is turned off on this server (serve --no-map)",
    ))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub async fn index(State(state): State<Shared>, _: Public) -> Result<Response, ApiError> {
    map_on(&state)?;
    Ok(asset("text/html; charset=utf-8", INDEX_HTML))
}

/// `GET /map.js`.
pub async fn script(State(state): State<Shared>, _: Public) -> Result<Response, ApiError> {
    map_on(&state)?;
    Ok(asset("text/javascript; charset=utf-8", MAP_JS))
}

/// `GET /map.css`.
pub async fn style(State(state): State<Shared>, _: Public) -> Result<Response, ApiError> {
    map_on(&state)?;
    Ok(asset("text/css; charset=utf-8", MAP_CSS))
}

/// `GET /v1/map`: what the page starts from (and reloads after it was away).
#[derive(Debug, Serialize)]
pub struct MapState {
    /// Every system of the galaxy, as `GET /v1/systems` lists them.
    pub systems: Vec<api::System>,
    /// The figures of every shard this node runs.
    pub shards: Vec<ShardFigures>,
    /// The slugs of the systems this node runs (all of them, unless the galaxy is spread over
    /// nodes: `serve --nats --spread`).
    pub served_here: Vec<String>,
    /// Whether this node is one node of a galaxy spread over several.
    pub spread: bool,
    /// On a spread galaxy: the node that runs each system (slug to node name), as the
    /// galaxy's leases say; a system being handed over is left out. Empty on a single node.
    pub owners: BTreeMap<String, String>,
    /// This node's name, where the leases name it (None on a single node).
    pub node: Option<String>,
    /// Jumps per lane in the last `lane_window_s` seconds.
    pub lanes: Vec<LaneJumps>,
    pub lane_window_s: u64,
}

/// Jumps that crossed a lane (from a system to another, by slug).
#[derive(Debug, Serialize)]
pub struct LaneJumps {
    pub from: String,
    pub to: String,
    pub jumps: u64,
}

pub async fn map_state(State(state): State<Shared>, p: Public) -> Result<Json<MapState>, ApiError> {
    map_on(&state)?;
    let Json(systems) = super::map::systems(State(state.clone()), p).await?;
    let status = state.mesh.status().await?;
    let g = state.mesh.galaxy();
    let served_here = match &state.remote {
        Some(remote) => g
            .ids()
            .filter(|&id| remote.serves(id))
            .map(|id| g.slug(id).to_string())
            .collect(),
        None => g.ids().map(|id| g.slug(id).to_string()).collect(),
    };
    let (owners, node) = owners(&state).await;
    let lanes = state
        .map
        .recent_lanes()
        .into_iter()
        .map(|(from, to, jumps)| LaneJumps {
            from: g.slug(from).to_string(),
            to: g.slug(to).to_string(),
            jumps,
        })
        .collect();
    Ok(Json(MapState {
        systems,
        shards: ShardFigures::of(&status),
        served_here,
        spread: state.remote.is_some(),
        owners,
        node,
        lanes,
        lane_window_s: LANE_WINDOW_S,
    }))
}

/// Who runs each system (slug to node) and this node's name, from the remote's leases. An
/// unreadable lease bucket leaves the owners unknown (the map shows "another node"), with a
/// warning: the map itself must not fail for it.
async fn owners(state: &Shared) -> (BTreeMap<String, String>, Option<String>) {
    let Some(remote) = &state.remote else {
        return (BTreeMap::new(), None);
    };
    let g = state.mesh.galaxy();
    let owners = match remote.owners().await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("the map cannot tell which node runs which system: {e}");
            BTreeMap::new()
        }
    };
    let node = owners
        .iter()
        .find(|(id, _)| remote.serves(**id))
        .map(|(_, n)| n.clone());
    let owners = owners
        .into_iter()
        .map(|(id, n)| (g.slug(id).to_string(), n))
        .collect();
    (owners, node)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemQuery {
    pub name: String,
    pub limit: Option<usize>,
}

/// `GET /v1/map/system`: a system's panel.
#[derive(Debug, Serialize)]
pub struct SystemPanel {
    pub name: String,
    pub slug: String,
    /// Its market now.
    pub market: api::LiveMarket,
    /// Players there (its primary shard), at most `limit`.
    pub players: Vec<String>,
    /// Whether there are more than listed.
    pub truncated: bool,
    /// Its last events, oldest first.
    pub events: Vec<RecentEvent>,
}

pub async fn map_system(
    State(state): State<Shared>,
    _: Public,
    q: Result<Params<SystemQuery>, ApiError>,
) -> Result<Json<SystemPanel>, ApiError> {
    map_on(&state)?;
    let Params(q) = q?;
    let limit = q.limit.unwrap_or(PANEL_DEFAULT_PLAYERS);
    if limit > PANEL_MAX_PLAYERS {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit is at most {PANEL_MAX_PLAYERS}"),
        ));
    }
    let g = state.mesh.galaxy();
    let id = system(g, &q.name)?;
    if let Some(remote) = &state.remote {
        if !remote.serves(id) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_system",
                format!(
                    "{} is served by another node of this galaxy: open that node's map",
                    g.name(id)
                ),
            ));
        }
    }
    let market = state.mesh.market(id).await?;
    let mut players = state.mesh.who(id, limit.saturating_add(1)).await?;
    let truncated = players.len() > limit;
    players.truncate(limit);
    Ok(Json(SystemPanel {
        name: g.name(id).to_string(),
        slug: g.slug(id).to_string(),
        market: wire::live_market(market),
        players,
        truncated,
        events: state.map.recent_events(id),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayerQuery {
    pub name: String,
}

/// `GET /v1/map/player`: where a player is.
#[derive(Debug, Serialize)]
pub struct PlayerPlace {
    pub player: String,
    /// The system's slug, or null in a jump.
    pub system: Option<String>,
    /// The destination's slug during a jump.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub towards: Option<String>,
}

pub async fn map_player(
    State(state): State<Shared>,
    _: Public,
    q: Result<Params<PlayerQuery>, ApiError>,
) -> Result<Json<PlayerPlace>, ApiError> {
    map_on(&state)?;
    let Params(q) = q?;
    let name = q.name.trim();
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_player",
            "no player of that name is known to this node",
        )
    };
    if name.len() > MAX_SEARCH_BYTES {
        return Err(unknown());
    }
    let g = state.mesh.galaxy();
    match state.mesh.locate(name) {
        Some(SystemPlace::In(s)) => Ok(Json(PlayerPlace {
            player: name.to_string(),
            system: Some(g.slug(s).to_string()),
            towards: None,
        })),
        Some(SystemPlace::Jumping { to, .. }) => Ok(Json(PlayerPlace {
            player: name.to_string(),
            system: None,
            towards: Some(g.slug(to).to_string()),
        })),
        None => Err(unknown()),
    }
}

/// `GET /v1/map/stream`: the map's live stream (server-sent events).
pub async fn map_stream(State(state): State<Shared>, _: Public) -> Result<Response, ApiError> {
    map_on(&state)?;
    match state.map.subscribe() {
        Some(sse) => Ok(sse.into_response()),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "too many map pages are open on this server; try again later",
        )
        .retry_after_s(crate::map_view::KEEP_ALIVE_S)),
    }
}
