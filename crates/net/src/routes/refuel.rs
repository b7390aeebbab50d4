//! `POST /v1/refuel`: buys fuel at the station of the player's system.

use axum::extract::State;
use axum::Json;

use super::{refused, Authed, Body, Shared};
use crate::error::ApiError;
use crate::{wire, AppState};
use api::{RefuelRequest, Refueled, StreamEvent};

pub async fn refuel(
    State(state): State<Shared>,
    Authed { name }: Authed,
    body: Result<Body<RefuelRequest>, ApiError>,
) -> Result<Json<Refueled>, ApiError> {
    let result = match body {
        Ok(Body(req)) => buy(&state, &name, req.units).await,
        Err(e) => Err(e),
    };
    result
        .map(Json)
        .map_err(|e| refused(&state, &name, "refuel", e))
}

async fn buy(state: &AppState, name: &str, units: Option<u32>) -> Result<Refueled, ApiError> {
    let capacity = state.mesh.config().rules.fuel_capacity;
    if let Some(u) = units {
        if u == 0 || u > capacity {
            return Err(ApiError::bad_request(
                "bad_quantity",
                format!("units must be between 1 and {capacity} (the tank's size); omit it to fill the tank"),
            ));
        }
    }
    // One action at a time: the state read before is the state the purchase starts from.
    let _guard = state.actions.acquire(name).await?;
    let (_, before) = state.mesh.look(name).await?;
    let after = state.mesh.refuel(name, units).await?;
    let (bought_units, cost_cr) = match before {
        Some(b) => (
            after.fuel.saturating_sub(b.fuel),
            b.credits.saturating_sub(after.credits),
        ),
        None => (0, 0),
    };
    state.events.tell(
        name,
        StreamEvent::Refueled {
            bought_units,
            cost_cr,
            fuel: after.fuel,
            credits: after.credits,
        },
    );
    Ok(Refueled {
        player: wire::player(after),
        bought_units,
        cost_cr,
    })
}
