//! `GET /v1/events`: the player's event stream (server-sent events; see [`crate::net::events`]).

use axum::extract::State;
use axum::response::IntoResponse;

use super::{Authed, Shared};
use crate::mesh::directory::Location;
use crate::net::error::ApiError;
use crate::net::events::ApiEvent;

pub async fn events(
    State(state): State<Shared>,
    Authed { name }: Authed,
) -> Result<impl IntoResponse, ApiError> {
    let system = match state.mesh.locate(&name) {
        Some(Location::In(s)) => Some(state.mesh.galaxy().name(s).to_string()),
        _ => None,
    };
    let hello = ApiEvent::Hello {
        player: name.clone(),
        system,
    };
    state.events.subscribe(&name, hello)
}
