//! The error body every failed request answers with: `{"error": {"code": "...", "message":
//! "..."}}` (plus a `Retry-After` header on 429), and the list of every code.
//!
//! Owns the shape and the list; never maps a failure to a code or a status (the server does).

use serde::{Deserialize, Serialize};

/// Every code the API answers with (`openapi.json`'s `ErrorCode` lists the same; a test checks
/// it). The codes of game refusals come from the rules (`sim::system::Reject::code`) and the
/// mesh (`mesh::MeshError::code`); the server asserts that every code it sends is here.
pub const CODES: &[&str] = &[
    // Requests the server refuses before the game sees them.
    "bad_json",
    "bad_field",
    "bad_content_type",
    "too_large",
    "bad_query",
    "bad_quantity",
    "bad_name",
    "unauthorized",
    "rate_limited",
    "busy",
    "too_many_streams",
    "unknown_system",
    "not_here",
    "no_route",
    "method_not_allowed",
    "not_implemented",
    "unknown_good",
    "not_heard",
    // Game refusals (sim) and mesh failures.
    "name_taken",
    "not_home",
    "no_lane",
    "same_system",
    "no_fuel",
    "tank_full",
    "hull_whole",
    "no_credits",
    "system_full",
    "no_stock",
    "market_full",
    "market_broke",
    "price_limit",
    "no_cargo_space",
    "not_carried",
    "no_wreck",
    "downed",
    "self_attack",
    "unknown_player",
    "in_jump",
    "storage",
    "snapshot",
    "shutting_down",
    // A node of a galaxy on JetStream that is standing by (another node holds the galaxy's
    // lease): 503 with Retry-After; a client with several server URLs tries the next one.
    "standby",
    // A galaxy spread over nodes (docs/NATS.md "Any node answers any player"): 503 with
    // Retry-After when no node serves the player's system right now (a takeover or hand-over
    // under way); 504 when a request was sent to the owner and no answer came (its outcome is
    // unknown: the body's `request_id` makes a retry safe while the owner lives); 503 when
    // this node cannot reach the others (NATS).
    "unit_moving",
    "outcome_unknown",
    "remote_unavailable",
    "internal",
];

/// The body of every error answer (`components.schemas.Error`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable and machine-readable: one of [`CODES`].
    pub code: String,
    /// Short, for people: what went wrong and what to do.
    pub message: String,
    /// The id of a request whose outcome is unknown (`outcome_unknown`): send the request
    /// again with the header `Idempotency-Key: <request_id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                request_id: None,
            },
        }
    }
}
