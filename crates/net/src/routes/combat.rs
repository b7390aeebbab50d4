//! Fights and what they leave: `POST /v1/attack` (a standing order to fire at another player
//! in the same system, or to cease fire), `GET /v1/wrecks` (the wrecks floating in the
//! player's system) and `POST /v1/loot` (take what fits from one).
//!
//! An order fires every tick of the shard until one ship is destroyed or leaves; this layer
//! only passes it on. Never resolves a shot or moves cargo itself.

use axum::extract::State;
use axum::Json;

use super::{refused, Authed, Body, Shared};
use crate::error::ApiError;
use crate::{wire, AppState};
use api::{AttackRequest, Attacking, LootRequest, Looted, StreamEvent, Wrecks};
use sim::player::MAX_NAME_CHARS;

pub async fn attack(
    State(state): State<Shared>,
    Authed { name }: Authed,
    body: Result<Body<AttackRequest>, ApiError>,
) -> Result<Json<Attacking>, ApiError> {
    let result = match body {
        Ok(Body(req)) => engage(&state, &name, req).await,
        Err(e) => Err(e),
    };
    result
        .map(Json)
        .map_err(|e| refused(&state, &name, "attack", e))
}

async fn engage(state: &AppState, name: &str, req: AttackRequest) -> Result<Attacking, ApiError> {
    let target = req.target.flatten();
    if target
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_NAME_CHARS)
    {
        return Err(ApiError::bad_request(
            "bad_name",
            format!("a player name is at most {MAX_NAME_CHARS} characters; `mltrader scan` lists who is here"),
        ));
    }
    let _guard = state.actions.acquire(name).await?;
    let player = state.mesh.engage(name, target.as_deref()).await?;
    Ok(Attacking {
        target,
        player: wire::player(player),
    })
}

pub async fn wrecks(
    State(state): State<Shared>,
    Authed { name }: Authed,
) -> Result<Json<Wrecks>, ApiError> {
    // The player's own instance: its wrecks are the ones they can loot.
    let (at, wrecks) = state.mesh.wrecks_seen_by(&name).await?;
    Ok(Json(Wrecks {
        system: state.mesh.galaxy().name(at.system).to_string(),
        wrecks: wrecks.into_iter().map(wire::wreck).collect(),
    }))
}

pub async fn loot(
    State(state): State<Shared>,
    Authed { name }: Authed,
    body: Result<Body<LootRequest>, ApiError>,
) -> Result<Json<Looted>, ApiError> {
    let result = match body {
        Ok(Body(req)) => take(&state, &name, req.wreck).await,
        Err(e) => Err(e),
    };
    result
        .map(Json)
        .map_err(|e| refused(&state, &name, "loot", e))
}

async fn take(state: &AppState, name: &str, wreck: u64) -> Result<Looted, ApiError> {
    let _guard = state.actions.acquire(name).await?;
    let ack = state.mesh.loot(name, wreck).await?;
    state.events.tell(
        name,
        StreamEvent::Looted {
            wreck: ack.wreck,
            took: wire::goods(ack.took.clone()),
        },
    );
    Ok(Looted {
        wreck: ack.wreck,
        took: wire::goods(ack.took),
        player: wire::player(ack.player),
    })
}
