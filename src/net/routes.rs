//! The routes of the API, one handler each.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{key_of, new_token};
use super::error::ApiError;
use super::{AppState, MAX_BODY_BYTES};
use crate::mesh::directory::Location;
use crate::sim::galaxy::{Galaxy, SystemId};

type AppResult<T> = Result<Json<T>, ApiError>;
type Shared = State<Arc<AppState>>;

pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/join", post(join))
        .route("/v1/me", get(me))
        .route("/v1/travel", post(travel))
        .route("/v1/refuel", post(refuel))
        .route("/v1/systems", get(systems))
        .route("/v1/status", get(status))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(v)| v)
        .map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))
}

/// The player a request acts for, from its `Authorization: Bearer <token>` header.
fn player(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            unauthorized("no token: join first (`mltrader join NAME`) or set MLTRADER_TOKEN")
        })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    state
        .accounts
        .player_of(token.trim())
        .ok_or_else(|| unauthorized("unknown token"))
}

fn system(galaxy: &Galaxy, name: &str) -> Result<SystemId, ApiError> {
    galaxy
        .lookup(name)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "unknown_system", e.to_string()))
}

#[derive(Deserialize)]
struct JoinRequest {
    name: String,
}

#[derive(Serialize)]
struct Joined {
    name: String,
    token: String,
    system: String,
    player: crate::sim::player::Player,
}

async fn join(
    State(state): Shared,
    json: Result<Json<JoinRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Joined>), ApiError> {
    let req = body(json)?;
    let token = new_token()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let key = key_of(&token);
    let player = state.mesh.join(&req.name, &key).await?;
    state.accounts.insert(key, player.name.clone());
    let home = state.mesh.galaxy().home();
    Ok((
        StatusCode::CREATED,
        Json(Joined {
            name: player.name.clone(),
            token,
            system: state.mesh.galaxy().name(home).to_string(),
            player,
        }),
    ))
}

#[derive(Serialize)]
struct Me {
    name: String,
    /// The system the player is in, or null while in a jump.
    system: Option<String>,
    jumping: Option<JumpingView>,
    player: Option<crate::sim::player::Player>,
}

#[derive(Serialize)]
struct JumpingView {
    xfer: String,
    from: String,
    to: String,
}

fn location_view(g: &Galaxy, at: Location) -> (Option<String>, Option<JumpingView>) {
    match at {
        Location::In(s) => (Some(g.name(s).to_string()), None),
        Location::Jumping { from, xfer, to } => (
            None,
            Some(JumpingView {
                xfer: format!("{}:{xfer}", g.slug(from)),
                from: g.name(from).to_string(),
                to: g.name(to).to_string(),
            }),
        ),
    }
}

async fn me(State(state): Shared, headers: HeaderMap) -> AppResult<Me> {
    let name = player(&state, &headers)?;
    let (at, p) = state.mesh.look(&name).await?;
    let (system, jumping) = location_view(state.mesh.galaxy(), at);
    Ok(Json(Me {
        name,
        system,
        jumping,
        player: p,
    }))
}

#[derive(Deserialize)]
struct TravelRequest {
    to: String,
    /// When given, the player must be there ("you are in Vega, not Sol").
    from: Option<String>,
    /// Wait for the landing before answering.
    #[serde(default)]
    wait: bool,
}

#[derive(Serialize)]
struct Traveled {
    xfer: String,
    from: String,
    to: String,
    travel_ms: u64,
    /// Present when `wait` was asked: the system landed in and its population.
    landed: Option<LandedView>,
}

#[derive(Serialize)]
struct LandedView {
    system: String,
    population: usize,
}

async fn travel(
    State(state): Shared,
    headers: HeaderMap,
    json: Result<Json<TravelRequest>, JsonRejection>,
) -> AppResult<Traveled> {
    let name = player(&state, &headers)?;
    let req = body(json)?;
    let g = state.mesh.galaxy();
    let to = system(g, &req.to)?;
    if let Some(from) = &req.from {
        let from = system(g, from)?;
        match state.mesh.locate(&name) {
            Some(Location::In(here)) if here != from => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_here",
                    format!("you are in {}, not {}", g.name(here), g.name(from)),
                ))
            }
            _ => {}
        }
    }
    let ack = state.mesh.jump(&name, to).await?;
    let landed = if req.wait {
        let l = state.mesh.wait_landing(&name).await?;
        Some(LandedView {
            system: g.name(l.system).to_string(),
            population: l.population,
        })
    } else {
        None
    };
    Ok(Json(Traveled {
        xfer: ack.xfer,
        from: g.name(ack.from).to_string(),
        to: g.name(ack.to).to_string(),
        travel_ms: ack.travel_ms,
        landed,
    }))
}

#[derive(Deserialize, Default)]
struct RefuelRequest {
    units: Option<u32>,
}

async fn refuel(
    State(state): Shared,
    headers: HeaderMap,
    json: Result<Json<RefuelRequest>, JsonRejection>,
) -> AppResult<crate::sim::player::Player> {
    let name = player(&state, &headers)?;
    let req = body(json)?;
    Ok(Json(state.mesh.refuel(&name, req.units).await?))
}

#[derive(Serialize)]
struct SystemView {
    name: String,
    slug: String,
    position_ly: [f64; 3],
    neighbours: Vec<String>,
    population: usize,
    in_transit_towards: usize,
}

async fn systems(State(state): Shared) -> AppResult<Vec<SystemView>> {
    let g = state.mesh.galaxy();
    let status = state.mesh.status().await?;
    Ok(Json(
        g.ids()
            .zip(status)
            .map(|(id, s)| SystemView {
                name: g.name(id).to_string(),
                slug: g.slug(id).to_string(),
                position_ly: g.system(id).position_ly,
                neighbours: g
                    .neighbours(id)
                    .iter()
                    .map(|n| g.name(*n).to_string())
                    .collect(),
                population: s.population,
                in_transit_towards: s.in_transit_towards,
            })
            .collect(),
    ))
}

async fn status(State(state): Shared) -> AppResult<Vec<crate::mesh::ShardStatus>> {
    Ok(Json(state.mesh.status().await?))
}
