//! The network face of the mesh: an HTTP/JSON API (axum) that routes every request to the
//! shard that owns the player at that moment, so clients never know shards exist.
//!
//! Owns request parsing, authentication and the mapping of errors to HTTP; never decides a
//! game rule and never touches a log (everything goes through [`crate::mesh::Mesh`]).

pub mod auth;
pub mod error;
pub mod routes;

use std::sync::Arc;

use axum::Router;

use crate::mesh::{Mesh, MeshError};

/// The largest request body accepted, in bytes: every request of this API is small.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every handler shares.
pub struct AppState {
    pub mesh: Mesh,
    pub accounts: auth::Accounts,
}

/// Builds the API over a running mesh (loads the accounts once).
pub async fn router(mesh: Mesh) -> Result<Router, MeshError> {
    let accounts = auth::Accounts::default();
    for (name, key) in mesh.accounts().await? {
        accounts.insert(key, name);
    }
    let state = Arc::new(AppState { mesh, accounts });
    Ok(routes::routes(state))
}
