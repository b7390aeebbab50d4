//! The wire of mltrader's HTTP API: every request and response body, the error body and its
//! codes, the event stream's events, and the OpenAPI document that describes them
//! ([`OPENAPI`]). The server (`net`) builds its answers from these types; the player commands
//! (`client`) and the bots (`swarm`) read the same JSON into them.
//!
//! Plain data with serde: never depends on the game rules, the mesh or a network crate, and
//! never decides anything. Conversions from the rules' and the mesh's views live in `net`.
//! Type names follow `openapi.json`'s component schemas (`Player`, `Me`, `Traveled`, ...), and a
//! test holds the two together.
//!
//! One word, one meaning on the wire side: a [`StreamEvent`] is what `GET /v1/events` streams
//! (not the mesh's feed events, not a history entry); a [`HistoryEntry`] is one record of a
//! player's own history log; [`GalaxyPrices`] is the galaxy-wide price view of
//! `GET /v1/economy`, while a market's `economy` field is a system's economy type
//! (`agricultural`, `mining`, ...).

pub mod cargo;
pub mod error;
pub mod forward;
pub mod request;
pub mod response;
pub mod stream;

pub use cargo::CargoMap;
pub use error::{ErrorBody, ErrorDetail, CODES};
pub use request::*;
pub use response::*;
pub use stream::StreamEvent;

/// The OpenAPI 3 document of the API, written by hand and served as is at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[cfg(test)]
mod tests;
