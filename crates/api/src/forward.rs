//! A request of the API carried from the node that received it to the node that owns the
//! player's star system (issue 19, decision 9: "any node answers any player"), and the owner's
//! answer carried back. Both travel as JSON over NATS request/reply on `mlt.req.<unit>`
//! (docs/NATS.md, "Any node answers any player").
//!
//! The body is carried as a JSON **string** (the request's bytes as UTF-8 text), not base64:
//! every body of this API is JSON, so it is UTF-8 already and stays readable in a trace. A
//! body that is not UTF-8 is refused by the entry node before anything is forwarded (it could
//! not be JSON either).
//!
//! Plain data: never decides who may act (the entry node authenticated the player; the owner
//! trusts the `player` and `client_ip` fields because only nodes of the galaxy, with the
//! galaxy's NATS credentials, can publish on `mlt.req.>`; no client header ever fills them).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The longest request id accepted, in bytes (ours are 32 hex digits; a client's
/// `Idempotency-Key` may be longer, up to this).
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// Whether `id` can be a request id: 1 to [`MAX_REQUEST_ID_BYTES`] ASCII letters, digits, `-`
/// or `_` (it is echoed in error bodies and logs, so nothing else).
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One request of the API, as the entry node received it, for the owner to run as `player`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedRequest {
    /// Fresh and random per request, or the client's `Idempotency-Key`: the owner remembers
    /// the answer of an acting request under it for a while (in memory only), and a client
    /// told `outcome_unknown` gets it back.
    pub request_id: String,
    /// The player the entry node authenticated; None only for `POST /v1/join` (no player yet).
    pub player: Option<String>,
    /// `GET`, `POST`.
    pub method: String,
    /// The path and query as the client sent them (`/v1/market?system=Sol`).
    pub path_and_query: String,
    /// The request's `content-type`, if it had one.
    pub content_type: Option<String>,
    /// The body's bytes as UTF-8 text (empty: no body).
    pub body: String,
    /// The client's address as the entry node's TCP connection saw it (never a header), for
    /// the owner's per-IP limits and logs. None: a request of the nodes themselves, or from a
    /// node that predates this field (the owner then counts it as `0.0.0.0`, as it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
}

/// The owner's answer, given to the client as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedResponse {
    /// The HTTP status (200, 409, ...).
    pub status: u16,
    /// The answer's `content-type`, if it had one.
    pub content_type: Option<String>,
    /// The answer's `retry-after`, in seconds, if it had one (429, 503).
    pub retry_after_s: Option<u64>,
    /// The body as UTF-8 text (every answer of this API is JSON).
    pub body: String,
}

/// What the owner's node replies on `mlt.req.<unit>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reply", deny_unknown_fields)]
pub enum ForwardedReply {
    /// The request ran; here is its answer.
    Answered(ForwardedResponse),
    /// The player is in none of this node's units (they jumped away, or the unit was handed
    /// over since the sender looked): nothing ran. The sender asks where the player is and
    /// sends again.
    NotHere,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_as_json() {
        let request = ForwardedRequest {
            request_id: "0123abcd".into(),
            player: Some("Ann".into()),
            method: "POST".into(),
            path_and_query: "/v1/trade".into(),
            content_type: Some("application/json".into()),
            body: r#"{"good":"food","quantity":3}"#.into(),
            client_ip: Some("203.0.113.9".parse().unwrap()),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::from_str::<ForwardedRequest>(&text).unwrap(),
            request
        );
        // A node that predates the client's address sends none: read as None.
        let old = text.replace(r#","client_ip":"203.0.113.9""#, "");
        assert_ne!(old, text, "the address is in the JSON");
        let read = serde_json::from_str::<ForwardedRequest>(&old).unwrap();
        assert_eq!(read.client_ip, None);
        for reply in [
            ForwardedReply::NotHere,
            ForwardedReply::Answered(ForwardedResponse {
                status: 409,
                content_type: Some("application/json".into()),
                retry_after_s: None,
                body: "{}".into(),
            }),
        ] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(
                serde_json::from_str::<ForwardedReply>(&text).unwrap(),
                reply
            );
        }
        assert!(serde_json::to_string(&ForwardedReply::NotHere)
            .unwrap()
            .contains(r#""reply":"not_here""#));
    }

    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(valid_request_id("a1-B_2"));
        for bad in ["", "a b", "é", "a.b", &"x".repeat(MAX_REQUEST_ID_BYTES + 1)] {
            assert!(!valid_request_id(bad), "{bad:?}");
        }
    }
}
