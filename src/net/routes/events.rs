//! `GET /v1/events`: the player's event stream (server-sent events; see [`crate::net::events`]).

use axum::extract::State;
use axum::response::IntoResponse;

use super::{Authed, Shared};
use crate::net::error::ApiError;

pub async fn events(
    State(state): State<Shared>,
    Authed { name }: Authed,
) -> Result<impl IntoResponse, ApiError> {
    state.events.subscribe(&name)
}
