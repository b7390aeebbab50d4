//! `POST /v1/travel` (one jump to a neighbour, answered at its commit point), `GET /v1/landing`
//! (waits for the player's landing) and `GET /v1/route` (the shortest route between two
//! systems, for clients that travel several jumps).
//!
//! A landing wait never holds the player's action lock and never outlives the server.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::{refused, system, travel_ms, Authed, Body, Params, Public, Shared};
use crate::error::ApiError;
use crate::limits::MAX_WAITS_PER_PLAYER;
use crate::{wire, AppState};
use api::{Hop, Landed, Route, RouteQuery, StreamEvent, TravelRequest, Traveled};
use mesh::directory::SystemPlace;
use mesh::MeshError;

/// The longest a landing wait lasts before answering 409 `in_jump` ("ask again").
pub const LANDING_WAIT_MAX_S: u64 = 60;
/// Progress events of a jump come every quarter of its travel time, within these bounds.
pub const PROGRESS_MIN_MS: u64 = 50;
pub const PROGRESS_MAX_MS: u64 = 1000;

pub async fn travel(
    State(state): State<Shared>,
    Authed { name }: Authed,
    body: Result<Body<TravelRequest>, ApiError>,
) -> Result<Json<Traveled>, ApiError> {
    let result = match body {
        Ok(Body(req)) => jump(&state, &name, req).await,
        Err(e) => Err(e),
    };
    result
        .map(Json)
        .map_err(|e| refused(&state, &name, "travel", e))
}

async fn jump(state: &Arc<AppState>, name: &str, req: TravelRequest) -> Result<Traveled, ApiError> {
    let g = state.mesh.galaxy();
    let to = system(g, &req.to)?;
    let from = req.from.as_deref().map(|f| system(g, f)).transpose()?;
    let guard = state.actions.acquire(name).await?;
    if let Some(from) = from {
        match state.mesh.locate(name) {
            Some(SystemPlace::In(here)) if here != from => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_here",
                    format!("you are in {}, not {}", g.name(here), g.name(from)),
                ))
            }
            Some(SystemPlace::Jumping { .. }) => {
                return Err(MeshError::InJump(name.to_string()).into());
            }
            _ => {}
        }
    }
    let ack = state.mesh.jump(name, to).await?;
    drop(guard);
    state
        .flights
        .departed(name, ack.xfer.clone(), ack.travel_ms, ack.player.clone());
    if state.events.is_watched(name) {
        state.events.tell(
            name,
            StreamEvent::Departed {
                xfer: ack.xfer.clone(),
                from: g.name(ack.from).to_string(),
                to: g.name(ack.to).to_string(),
                travel_ms: ack.travel_ms,
            },
        );
        watch_jump(
            state.clone(),
            name.to_string(),
            ack.xfer.clone(),
            g.name(ack.to).to_string(),
            ack.travel_ms,
        );
    }
    let landed = match (req.wait, &state.remote) {
        (false, _) => None,
        // Landing on another node (a spread galaxy): waited for there.
        (true, Some(remote)) if !remote.serves(ack.to) => {
            Some(crate::remote::wait_landing_at(remote.as_ref(), ack.to, name).await?)
        }
        (true, _) => Some(wait_landing(state, name).await?),
    };
    Ok(Traveled {
        from: g.name(ack.from).to_string(),
        to: g.name(ack.to).to_string(),
        xfer: ack.xfer,
        travel_ms: ack.travel_ms,
        player: wire::player(ack.player),
        landed,
    })
}

/// Streams `progress` until the landing, then `landed`, to the player's event streams.
fn watch_jump(state: Arc<AppState>, name: String, xfer: String, to: String, travel_ms: u64) {
    tokio::spawn(async move {
        let every = Duration::from_millis((travel_ms / 4).clamp(PROGRESS_MIN_MS, PROGRESS_MAX_MS));
        let give_up = tokio::time::sleep(Duration::from_millis(travel_ms) + landing_wait_max());
        let landing = state.mesh.wait_landing(&name);
        let stopping = state.stopping.wait();
        tokio::pin!(give_up, landing, stopping);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                landed = &mut landing => {
                    if let Ok(l) = landed {
                        state.flights.landed(&name);
                        state.events.tell(&name, StreamEvent::Landed {
                            xfer,
                            system: state.mesh.galaxy().name(l.system).to_string(),
                            population: l.population,
                        });
                    }
                    return;
                }
                _ = ticks.tick() => {
                    let remaining_ms = state.flights.get(&name, &xfer).map_or(0, |f| f.remaining_ms());
                    state.events.tell(&name, StreamEvent::Progress {
                        xfer: xfer.clone(),
                        to: to.clone(),
                        remaining_ms,
                    });
                }
                () = &mut give_up => return,
                () = &mut stopping => return,
            }
        }
    });
}

fn landing_wait_max() -> Duration {
    Duration::from_secs(LANDING_WAIT_MAX_S)
}

/// Waits for the player's landing (at once if they are in a system).
async fn wait_landing(state: &AppState, name: &str) -> Result<Landed, ApiError> {
    let _open = state
        .waits
        .enter(name, MAX_WAITS_PER_PLAYER)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                format!("you are waiting for a landing {MAX_WAITS_PER_PLAYER} times already"),
            )
            .retry_after_s(1)
        })?;
    let landed = tokio::select! {
        r = tokio::time::timeout(landing_wait_max(), state.mesh.wait_landing(name)) => match r {
            Ok(landed) => landed?,
            Err(_) => return Err(ApiError::new(
                StatusCode::CONFLICT,
                "in_jump",
                format!("still in the jump after {LANDING_WAIT_MAX_S} s; ask again"),
            )),
        },
        () = state.stopping.wait() => return Err(MeshError::ShuttingDown.into()),
    };
    state.flights.landed(name);
    Ok(Landed {
        system: state.mesh.galaxy().name(landed.system).to_string(),
        population: landed.population,
        others: landed.population.saturating_sub(1),
    })
}

pub async fn landing(
    State(state): State<Shared>,
    Authed { name }: Authed,
) -> Result<Json<Landed>, ApiError> {
    wait_landing(&state, &name).await.map(Json)
}

pub async fn route(
    State(state): State<Shared>,
    _: Public,
    q: Result<Params<RouteQuery>, ApiError>,
) -> Result<Json<Route>, ApiError> {
    let Params(q) = q?;
    let g = state.mesh.galaxy();
    let (from, to) = (system(g, &q.from)?, system(g, &q.to)?);
    let path = g
        .route(from, to)
        .ok_or_else(|| ApiError::internal("the galaxy is not connected"))?;
    let hops: Vec<Hop> = path
        .windows(2)
        .map(|w| Hop {
            from: g.name(w[0]).to_string(),
            to: g.name(w[1]).to_string(),
            distance_ly: g.distance_ly(w[0], w[1]),
            fuel: g.fuel_cost(w[0], w[1]),
            travel_ms: travel_ms(&state, w[0], w[1]),
        })
        .collect();
    Ok(Json(Route {
        from: g.name(from).to_string(),
        to: g.name(to).to_string(),
        jumps: hops.len(),
        // Folded from +0.0: an empty f64 `sum()` is -0.0, which JSON would show as `-0.0`.
        distance_ly: hops.iter().fold(0.0, |total, h| total + h.distance_ly),
        fuel: hops.iter().map(|h| u64::from(h.fuel)).sum(),
        travel_ms: hops.iter().map(|h| h.travel_ms).sum(),
        hops,
    }))
}
