//! `GET /v1/history`: the player's own past events, from their history log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::{Authed, Params, Shared};
use crate::error::ApiError;
use crate::history;
use api::{History, HistoryQuery};

/// Entries listed by default, and at most.
pub const HISTORY_DEFAULT_ENTRIES: usize = 100;
pub const HISTORY_MAX_ENTRIES: usize = 1000;

pub async fn history(
    State(state): State<Shared>,
    Authed { name }: Authed,
    q: Result<Params<HistoryQuery>, ApiError>,
) -> Result<Json<History>, ApiError> {
    let Params(q) = q?;
    let limit = q.limit.unwrap_or(HISTORY_DEFAULT_ENTRIES);
    if limit == 0 || limit > HISTORY_MAX_ENTRIES {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be between 1 and {HISTORY_MAX_ENTRIES}"),
        ));
    }
    let Some(datadir) = state.config.history.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "this server does not serve histories yet (the mesh does not tell the API where \
             the players' logs are); read players/<name>.log in the data directory",
        ));
    };
    let player = name.clone();
    let read = tokio::task::spawn_blocking(move || history::read(&datadir, &player, limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot read the history of '{name}': {e}")))?;
    Ok(Json(History {
        player: name,
        entries: read.entries,
        truncated: read.truncated,
    }))
}
