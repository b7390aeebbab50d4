//! The request bodies and query strings of the API, as the server reads them (strictly:
//! unknown fields are refused, an optional field is omitted rather than null, integers are at
//! most [`MAX_BODY_INTEGER`]) and as clients write them.
//!
//! Owns the shapes and the type-level checks; never checks what needs the game (a good's name,
//! a quantity's range, a system's existence): the server does that with the rules.

use serde::{Deserialize, Deserializer, Serialize};

/// The largest integer a request body may give (2^53): every integer up to it reads the same
/// as JSON text and as a double, so clients in every language mean the same number, and an
/// integer written with a zero fraction is exact. `openapi.json` says `maximum`.
pub const MAX_BODY_INTEGER: u64 = 1 << 53;

/// For an optional field of a request body: absent is `None`, a value is `Some`, and `null`
/// is refused as a wrong type, as `openapi.json` says (omit the field instead). Use with
/// `#[serde(default, deserialize_with = "non_null")]`.
pub fn non_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An integer field of a body, at most [`MAX_BODY_INTEGER`].
pub fn body_integer<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if n > MAX_BODY_INTEGER {
        return Err(serde::de::Error::custom(format!(
            "{n} is larger than {MAX_BODY_INTEGER}, the largest integer a body may give"
        )));
    }
    Ok(n)
}

/// An optional integer field: [`non_null`] and [`body_integer`].
pub fn non_null_body_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    body_integer(d).map(Some)
}

/// A field that must be given, null included (`Some(None)` is null).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `POST /v1/join`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub name: String,
}

/// `POST /v1/travel`: one jump to a neighbour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TravelRequest {
    pub to: String,
    /// When given, the player must be there ("you are in Vega, not Sol"); null is refused.
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<String>,
    /// Wait for the landing before answering (omitted when false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub wait: bool,
}

/// `POST /v1/refuel`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefuelRequest {
    /// Units to buy (1 to the tank's size); omitted: fill the tank (null is refused).
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub units: Option<u32>,
}

/// `POST /v1/repair`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    /// Hull points to mend (1 to the hull's size); omitted: mend it whole (null is refused).
    #[serde(
        default,
        deserialize_with = "non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub points: Option<u32>,
}

/// Buy or sell, as the API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradeSide {
    Buy,
    Sell,
}

/// `POST /v1/trade`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradeRequest {
    pub side: TradeSide,
    pub good: String,
    /// Units, 1 to the rules' largest trade (wider than that here, so that too many is
    /// `bad_quantity`, not a type error).
    pub qty: u64,
    /// The worst average price per unit accepted: a buy pays at most `limit_cr * qty`, a sale
    /// gets at least that. Omitted: no limit (null is refused).
    #[serde(
        default,
        deserialize_with = "non_null_body_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit_cr: Option<u64>,
}

/// `POST /v1/attack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackRequest {
    /// Required: a player's name, or null to cease fire (`Some(None)`).
    #[serde(deserialize_with = "present")]
    pub target: Option<Option<String>>,
}

/// `POST /v1/loot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LootRequest {
    /// A wreck's `id`, from `GET /v1/wrecks`.
    #[serde(deserialize_with = "body_integer")]
    pub wreck: u64,
}

/// `GET /v1/market?system=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketQuery {
    /// Another system: its prices as the player's system last heard them.
    pub system: Option<String>,
}

/// `GET /v1/route?from=&to=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteQuery {
    pub from: String,
    pub to: String,
}

/// `GET /v1/history?limit=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub limit: Option<usize>,
}

/// `GET /v1/scan?limit=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanQuery {
    /// Names to list (the server says its default and maximum).
    pub limit: Option<usize>,
}
