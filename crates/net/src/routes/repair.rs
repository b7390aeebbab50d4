//! `POST /v1/repair`: mends the ship's hull at the station of the player's system, for
//! credits that leave the game (the sink "repair"). Acknowledged only once the `repair`
//! record is durable; never repairs a ship shot down (it is destroyed and replaced).

use axum::extract::State;
use axum::Json;

use super::{refused, Authed, Body, Shared};
use crate::error::ApiError;
use crate::{wire, AppState};
use api::{RepairRequest, Repaired};
use sim::combat::BASIC_SHIP_HULL_POINTS;

pub async fn repair(
    State(state): State<Shared>,
    Authed { name }: Authed,
    body: Result<Body<RepairRequest>, ApiError>,
) -> Result<Json<Repaired>, ApiError> {
    let result = match body {
        Ok(Body(req)) => mend(&state, &name, req.points).await,
        Err(e) => Err(e),
    };
    result
        .map(Json)
        .map_err(|e| refused(&state, &name, "repair", e))
}

async fn mend(state: &AppState, name: &str, points: Option<u32>) -> Result<Repaired, ApiError> {
    if let Some(p) = points {
        if p == 0 || p > BASIC_SHIP_HULL_POINTS {
            return Err(ApiError::bad_request(
                "bad_quantity",
                format!(
                    "points must be between 1 and {BASIC_SHIP_HULL_POINTS} (the hull's size); omit it to mend the hull whole"
                ),
            ));
        }
    }
    // One action at a time: the state read before is the state the repair starts from.
    let _guard = state.actions.acquire(name).await?;
    let (_, before) = state.mesh.look(name).await?;
    let after = state.mesh.repair(name, points).await?;
    let (repaired_points, cost_cr) = match before {
        Some(b) => (
            after.hull.saturating_sub(b.hull),
            b.credits.saturating_sub(after.credits),
        ),
        None => (0, 0),
    };
    Ok(Repaired {
        player: wire::player(after),
        repaired_points,
        cost_cr,
    })
}
