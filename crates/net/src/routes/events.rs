//! `GET /v1/events`: the player's event stream (server-sent events; see [`crate::events`]).

use axum::extract::State;
use axum::response::IntoResponse;

use super::{Authed, Shared};
use crate::error::ApiError;

pub async fn events(
    State(state): State<Shared>,
    Authed { name }: Authed,
) -> Result<impl IntoResponse, ApiError> {
    state.events.subscribe(&name)
}
