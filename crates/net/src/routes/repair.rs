//! `POST /v1/repair`: mends the ship's hull at the station of the player's system, for
//! credits that leave the game (the sink "repair"). Acknowledged only once the `repair`
//! record is durable; never repairs a ship shot down (it is destroyed and replaced). Told on
//! the player's event stream (`repaired`), like a refuel or a trade.

use axum::extract::State;
use axum::Json;

use super::{refused, Authed, Body, Shared};
use crate::error::ApiError;
use crate::{wire, AppState};
use api::{RepairRequest, Repaired, StreamEvent};
use sim::combat::{BASIC_SHIP_HULL_POINTS, REPAIR_PRICE_CR_PER_HULL_POINT};

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
    // The cost is the purse's difference (nothing else spends while the action guard is
    // held); the points follow from it, not from the hulls, which a fight may have lowered
    // between the look and the repair (the record's `points` are the cost's).
    let cost_cr = before.map_or(0, |b| b.credits.saturating_sub(after.credits));
    assert_eq!(
        cost_cr % REPAIR_PRICE_CR_PER_HULL_POINT,
        0,
        "a repair costs whole hull points"
    );
    let repaired_points = u32::try_from(cost_cr / REPAIR_PRICE_CR_PER_HULL_POINT)
        .expect("at most a whole hull's points");
    state.events.tell(
        name,
        StreamEvent::Repaired {
            repaired_points,
            cost_cr,
            hull: after.hull,
            credits: after.credits,
        },
    );
    Ok(Repaired {
        player: wire::player(after),
        repaired_points,
        cost_cr,
    })
}
