//! The markets: `GET /v1/market` (the player's own system live, and the prices it has heard
//! from the others), `POST /v1/trade` (buy or sell there) and `GET /v1/economy` (the galaxy
//! view: where each good is cheapest and dearest, with the age of every figure).
//!
//! Checks the request (the good's name, the quantity) before the mesh is asked; never prices
//! a trade itself (the shard decides and records it in its tick, atomically).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::{refused, system, Authed, Body, Params, Public, Shared};
use crate::error::ApiError;
use crate::{wire, AppState};
use api::{
    GalaxyPrices, HeardMarket, Market, MarketQuery, StreamEvent, TradeRequest, TradeSide, Traded,
};
use mesh::directory::SystemPlace;
use mesh::MeshError;
use sim::galaxy::SystemId;
use sim::goods::Good;
use sim::market::{Order, Side, MAX_TRADE_UNITS};

pub async fn market(
    State(state): State<Shared>,
    Authed { name }: Authed,
    q: Result<Params<MarketQuery>, ApiError>,
) -> Result<Json<Market>, ApiError> {
    let Params(q) = q?;
    let g = state.mesh.galaxy();
    let asked = q.system.as_deref().map(|s| system(g, s)).transpose()?;
    let here = here(&state, &name)?;
    let view = state.mesh.market(here).await?;
    let Some(other) = asked.filter(|&s| s != here) else {
        return Ok(Json(Market::Live(wire::live_market(view))));
    };
    let other_name = g.name(other);
    match view.heard.into_iter().find(|h| h.system == other_name) {
        Some(heard) => Ok(Json(Market::Heard(HeardMarket {
            live: false,
            heard: wire::heard_prices(heard),
        }))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_heard",
            format!(
                "{} has not heard {other_name}'s prices yet: prices spread along the lanes each \
                 second; ask again shortly, or see GET /v1/economy",
                g.name(here)
            ),
        )),
    }
}

/// The system `name` is in (409 `in_jump` during a jump).
pub fn here(state: &AppState, name: &str) -> Result<SystemId, ApiError> {
    match state.mesh.locate(name) {
        Some(SystemPlace::In(s)) => Ok(s),
        Some(SystemPlace::Jumping { .. }) => Err(MeshError::InJump(name.to_string()).into()),
        None => Err(MeshError::UnknownPlayer(name.to_string()).into()),
    }
}

pub async fn trade(
    State(state): State<Shared>,
    Authed { name }: Authed,
    body: Result<Body<TradeRequest>, ApiError>,
) -> Result<Json<Traded>, ApiError> {
    let result = match body {
        Ok(Body(req)) => deal(&state, &name, req).await,
        Err(e) => Err(e),
    };
    result
        .map(Json)
        .map_err(|e| refused(&state, &name, "trade", e))
}

async fn deal(state: &AppState, name: &str, req: TradeRequest) -> Result<Traded, ApiError> {
    let good =
        Good::parse(&req.good).map_err(|e| ApiError::bad_request("unknown_good", e.to_string()))?;
    let qty = u32::try_from(req.qty)
        .ok()
        .filter(|q| (1..=MAX_TRADE_UNITS).contains(q))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_quantity",
                format!("qty must be between 1 and {MAX_TRADE_UNITS} units"),
            )
        })?;
    let order = Order {
        side: match req.side {
            TradeSide::Buy => Side::Buy,
            TradeSide::Sell => Side::Sell,
        },
        good,
        qty,
        price_limit_cr: req.limit_cr,
    };
    let _guard = state.actions.acquire(name).await?;
    let ack = state.mesh.trade(name, order).await?;
    assert_eq!(
        ack.side,
        order.side.name(),
        "the mesh traded another side than asked"
    );
    state.events.tell(
        name,
        StreamEvent::Traded {
            side: req.side,
            good: ack.good.to_string(),
            qty: ack.qty,
            total_cr: ack.total_cr,
            credits: ack.player.credits,
        },
    );
    Ok(Traded {
        side: req.side,
        good: ack.good.to_string(),
        qty: ack.qty,
        total_cr: ack.total_cr,
        fee_cr: ack.fee_cr,
        player: wire::player(ack.player),
    })
}

pub async fn economy(State(state): State<Shared>, _: Public) -> Json<GalaxyPrices> {
    Json(wire::galaxy_prices(state.mesh.economy()))
}
