//! What a bot may ask of the galaxy ([`GameApi`]), the answers it reads, and why a call failed
//! ([`CallError`]). The real implementation is HTTP ([`super::http::HttpApi`]); the bot's tests
//! use a fake galaxy behind the same trait.
//!
//! Answers keep only the fields the bots read (unknown fields are ignored, so the server may
//! add some): partial views of the `api` crate's wire types of the same routes (`Joined`,
//! `Me`, `Traveled`, ...), which the bots' fake galaxy builds by hand. Requests and the error
//! body are the `api` crate's own ([`super::http`]). Never decides anything: the bot does.

use std::collections::BTreeMap;
use std::future::Future;

use serde::Deserialize;

/// A player as the acting routes answer it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct PlayerView {
    pub name: String,
    pub credits: u64,
    pub fuel: u32,
    pub fuel_capacity: u32,
    /// The player's version after the action (see docs/FORMAT.md).
    pub version: u64,
    /// Hold capacity in hold units (servers without trading do not say).
    #[serde(default)]
    pub hold: Option<u32>,
    /// Goods carried (only nonzero ones).
    #[serde(default)]
    pub cargo: BTreeMap<String, u32>,
    /// Hull points (servers without combat do not say).
    #[serde(default)]
    pub hull: Option<u32>,
}

/// `POST /v1/join`.
#[derive(Clone, Debug, Deserialize)]
pub struct Joined {
    pub token: String,
    pub player: PlayerView,
}

/// `GET /v1/me`.
#[derive(Clone, Debug, Deserialize)]
pub struct Me {
    /// Null while in a jump.
    pub system: Option<String>,
    pub player: Option<PlayerView>,
}

/// `POST /v1/travel`: answered at the jump's commit point.
#[derive(Clone, Debug, Deserialize)]
pub struct Traveled {
    pub xfer: String,
    pub to: String,
    pub travel_ms: u64,
    pub player: PlayerView,
}

/// `GET /v1/landing`.
#[derive(Clone, Debug, Deserialize)]
pub struct Landed {
    pub system: String,
}

/// `POST /v1/refuel`: the player's fields at the top level, and the cost.
#[derive(Clone, Debug, Deserialize)]
pub struct Refueled {
    #[serde(flatten)]
    pub player: PlayerView,
    pub cost_cr: u64,
}

/// `POST /v1/repair`: the player's fields at the top level, and the cost.
#[derive(Clone, Debug, Deserialize)]
pub struct Repaired {
    #[serde(flatten)]
    pub player: PlayerView,
    pub repaired_points: u32,
    pub cost_cr: u64,
}

/// One good of `GET /v1/market`.
#[derive(Clone, Debug, Deserialize)]
pub struct Quote {
    pub good: String,
    pub stock: u64,
    /// What buying one unit costs now (None: out of stock).
    pub buy_cr: Option<u64>,
    /// What selling one unit pays now (None: the market cannot take or pay for more).
    pub sell_cr: Option<u64>,
}

/// Prices last heard from another system.
#[derive(Clone, Debug, Deserialize)]
pub struct Heard {
    pub system: String,
    /// Mid prices by good.
    pub prices: BTreeMap<String, u64>,
}

/// `GET /v1/market`.
#[derive(Clone, Debug, Deserialize)]
pub struct Market {
    pub system: String,
    pub goods: Vec<Quote>,
    #[serde(default)]
    pub heard: Vec<Heard>,
}

/// Buy or sell: the game's own, as the API names it.
pub use sim::market::Side;

/// `POST /v1/trade`.
#[derive(Clone, Debug, Deserialize)]
pub struct Traded {
    pub total_cr: u64,
    pub player: PlayerView,
}

/// `POST /v1/attack`.
#[derive(Clone, Debug, Deserialize)]
pub struct Attacked {
    pub player: PlayerView,
}

/// `GET /v1/scan`.
#[derive(Clone, Debug, Deserialize)]
pub struct Scan {
    pub names: Vec<String>,
}

/// A lane of the map.
#[derive(Clone, Debug, Deserialize)]
pub struct Lane {
    pub to: String,
    pub fuel: u32,
    pub travel_ms: u64,
}

/// A system of the map (`GET /v1/systems`).
#[derive(Clone, Debug, Deserialize)]
pub struct SystemView {
    pub name: String,
    pub lanes: Vec<Lane>,
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The server answered with an error (4xx): its status, code and message; `Retry-After`
    /// for 429.
    #[error("{status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        retry_after_s: Option<u64>,
    },
    /// No answer (connection refused, reset, timed out), a 5xx, or not the API: try again later.
    #[error("unreachable ({code}): {message}")]
    Unreachable { code: String, message: String },
}

impl CallError {
    pub fn refused(status: u16, code: &str, message: impl Into<String>) -> CallError {
        CallError::Refused {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            CallError::Refused { code, .. } | CallError::Unreachable { code, .. } => code,
        }
    }
}

/// A call's result.
pub type Call<T> = Result<T, CallError>;

/// The public API, as a bot uses it. Each call is one request; `token` says who asks.
pub trait GameApi: Send + Sync + 'static {
    fn systems(&self) -> impl Future<Output = Call<Vec<SystemView>>> + Send;
    fn join(&self, name: &str) -> impl Future<Output = Call<Joined>> + Send;
    fn me(&self, token: &str) -> impl Future<Output = Call<Me>> + Send;
    fn market(&self, token: &str) -> impl Future<Output = Call<Market>> + Send;
    fn trade(
        &self,
        token: &str,
        side: Side,
        good: &str,
        qty: u32,
    ) -> impl Future<Output = Call<Traded>> + Send;
    /// Buys `units` of fuel (None: a full tank).
    fn refuel(
        &self,
        token: &str,
        units: Option<u32>,
    ) -> impl Future<Output = Call<Refueled>> + Send;
    /// Mends the hull whole at the station.
    fn repair(&self, token: &str) -> impl Future<Output = Call<Repaired>> + Send;
    fn travel(&self, token: &str, to: &str) -> impl Future<Output = Call<Traveled>> + Send;
    /// Waits for the landing (at once if the player is in a system).
    fn landing(&self, token: &str) -> impl Future<Output = Call<Landed>> + Send;
    fn scan(&self, token: &str) -> impl Future<Output = Call<Scan>> + Send;
    fn attack(&self, token: &str, target: &str) -> impl Future<Output = Call<Attacked>> + Send;
}
