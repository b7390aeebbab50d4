//! Fights and what they leave: `POST /v1/attack` (a standing order to fire at another player
//! in the same system, or to cease fire), `GET /v1/wrecks` (the wrecks floating in the
//! player's system) and `POST /v1/loot` (take what fits from one).
//!
//! An order fires every tick of the shard until one ship is destroyed or leaves; this layer
//! only passes it on. Never resolves a shot or moves cargo itself.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};

use super::market::here;
use super::{refused, Authed, Body, PlayerView, Shared};
use crate::error::ApiError;
use crate::events::ApiEvent;
use crate::AppState;
use mesh::trading::WreckView;
use sim::player::MAX_NAME_CHARS;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackRequest {
    /// Required: a player's name, or null to cease fire (`Some(None)`).
    #[serde(deserialize_with = "present")]
    target: Option<Option<String>>,
}

/// A field that must be given, null included.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Serialize)]
pub struct Attacking {
    /// Whom the player now fires at (null: cease fire).
    target: Option<String>,
    player: PlayerView,
}

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
        player: player.into(),
    })
}

#[derive(Serialize)]
pub struct WrecksView {
    system: String,
    /// Oldest first.
    wrecks: Vec<WreckView>,
}

pub async fn wrecks(
    State(state): State<Shared>,
    Authed { name }: Authed,
) -> Result<Json<WrecksView>, ApiError> {
    let here = here(&state, &name)?;
    let wrecks = state.mesh.wrecks(here).await?;
    Ok(Json(WrecksView {
        system: state.mesh.galaxy().name(here).to_string(),
        wrecks,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LootRequest {
    /// A wreck's `id`, from `GET /v1/wrecks`.
    #[serde(deserialize_with = "super::body_integer")]
    wreck: u64,
}

#[derive(Serialize)]
pub struct Looted {
    wreck: u64,
    /// What moved into the hold (what did not fit stays in the wreck).
    took: std::collections::BTreeMap<&'static str, u32>,
    player: PlayerView,
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
        ApiEvent::Looted {
            wreck: ack.wreck,
            took: ack.took.clone(),
        },
    );
    Ok(Looted {
        wreck: ack.wreck,
        took: ack.took,
        player: ack.player.into(),
    })
}
