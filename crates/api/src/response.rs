//! The response bodies of the API, one type per component schema of `openapi.json` (same
//! name), in the order of the document. Optional fields are present as `null`, never omitted
//! (except `ShardStatus::instances`, omitted when empty).
//!
//! Owns the shapes; never computes a value (the server fills them from the rules and the mesh).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CargoMap;

/// A player as the API shows them: their state and the hold units their cargo takes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Player {
    pub name: String,
    pub credits: u64,
    pub fuel: u32,
    pub fuel_capacity: u32,
    /// Hull points left; 0 is a ship shot down, destroyed at the shard's next event.
    pub hull: u32,
    /// Hold size, in hold units.
    pub hold: u32,
    /// Goods on board (nonzero only).
    pub cargo: CargoMap,
    /// Events that touched the player so far (see docs/FORMAT.md).
    pub version: u64,
    /// Hold units the cargo takes.
    pub hold_used: u64,
}

/// `POST /v1/join`: the new player and their token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub name: String,
    /// The access token: shown once, stored by the server only as its hash.
    pub token: String,
    pub system: String,
    pub player: Player,
}

/// A jump under way, as `GET /v1/me` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jumping {
    pub xfer: String,
    pub from: String,
    pub to: String,
    /// Milliseconds until the landing is due (null only in the instant between the jump's
    /// commit and its handover to the destination).
    pub eta_ms: Option<u64>,
}

/// The target of a player's standing order to fire, and its hull now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opponent {
    pub target: String,
    pub hull: u32,
}

/// `GET /v1/me`: where the player is and their state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub name: String,
    /// The system the player is in, or null while in a jump.
    pub system: Option<String>,
    /// The instance of the system the player is in (1: the system itself; null in a jump).
    pub instance: Option<u16>,
    /// Its name ("Sol #2").
    pub instance_name: Option<String>,
    /// Why the player is in another instance than the system itself, in words.
    pub notice: Option<String>,
    pub jumping: Option<Jumping>,
    /// The player's state (while in a jump: as they travel, fuel burnt; after a restart too).
    pub player: Option<Player>,
    /// The player's standing order to fire and the target's hull (null: not attacking).
    pub attacking: Option<Opponent>,
}

/// `GET /v1/landing`, and `landed` of a travel that waited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landed {
    pub system: String,
    /// Players in the system right after the landing, the lander included.
    pub population: usize,
    /// `population - 1`.
    pub others: usize,
}

/// `POST /v1/travel`: answered at the jump's commit point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traveled {
    pub xfer: String,
    pub from: String,
    pub to: String,
    pub travel_ms: u64,
    /// The player as they travel (fuel burnt).
    pub player: Player,
    /// Present when `wait` was asked.
    pub landed: Option<Landed>,
}

/// `POST /v1/refuel`: the player after the purchase (its fields at the top level), and what
/// was bought.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refueled {
    #[serde(flatten)]
    pub player: Player,
    pub bought_units: u32,
    pub cost_cr: u64,
}

/// `POST /v1/repair`: the player after the repair (its fields at the top level), and what was
/// mended for what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repaired {
    #[serde(flatten)]
    pub player: Player,
    /// Hull points mended.
    pub repaired_points: u32,
    /// Credits paid (a credit sink: they leave the game).
    pub cost_cr: u64,
}

/// A lane of the map, with its cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub to: String,
    pub distance_ly: f64,
    pub fuel: u32,
    pub travel_ms: u64,
}

/// One instance of a crowded system, in [`System::instances`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstancePopulation {
    pub instance: u16,
    pub name: String,
    pub population: usize,
    pub dilation: f64,
}

/// One system of the map (`GET /v1/systems`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct System {
    pub name: String,
    pub slug: String,
    pub position_ly: [f64; 3],
    /// Where new players start.
    pub home: bool,
    /// Names of the systems with a lane to this one.
    pub neighbours: Vec<String>,
    /// The same lanes with their cost.
    pub lanes: Vec<Lane>,
    /// Players in the system (all its instances).
    pub population: usize,
    /// Committed jumps on their way to the system.
    pub in_transit_towards: usize,
    /// Time dilation: how fast the system's clock runs (1.0 = real time).
    pub dilation: f64,
    /// The system's instances (the system itself first).
    pub instances: Vec<InstancePopulation>,
    /// Regions (issue 20): the region the system is homed in now, as the answering node heard:
    /// the galaxy file's, or the region a promotion (`mltrader region promote`) re-homed it
    /// into (omitted without regions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_region: Option<String>,
    /// Regions: the region serving the system when it is not this node's region (omitted when
    /// served here). `population` is then the population as last heard from that region (its
    /// owner's `GET /v1/status`, asked over the link), 0 when never heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_in: Option<String>,
    /// How old the population shown is, in seconds ("as of N s ago"), when it was heard from
    /// elsewhere: with `served_in`, from that region; without it, from the node (of this
    /// region, in regions) that runs the system in a spread galaxy. Omitted when the answering
    /// node runs the system, or never heard its population.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of_s_ago: Option<f64>,
    /// With `served_in`: whether that region answers this node now (false: the link is cut
    /// or the region lost; what is shown is as of `as_of_s_ago`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_in_reachable: Option<bool>,
}

/// `GET /v1/regions`: this node's region and its link to every other region (issue 20).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regions {
    /// This node's region (null: the node runs without regions, and `regions` is empty).
    pub region: Option<String>,
    pub regions: Vec<RegionLink>,
}

/// One other region as this node sees it, refreshed by a task of the node every few seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionLink {
    pub region: String,
    /// The slugs of the systems homed there now, as this node heard (the galaxy file's homes,
    /// and the re-homes of promotions).
    pub systems: Vec<String>,
    /// Whether the region's JetStream API answered the last look.
    pub reachable: bool,
    /// How long `reachable` has held its value, in seconds (since this node started looking).
    pub since_s: f64,
    /// How long ago the region last answered, in seconds (null: never).
    pub last_contact_s_ago: Option<f64>,
    /// The JetStream round trip to the region at the last look, in ms (null: no answer).
    pub round_trip_ms: Option<f64>,
    /// This region's copies of that region's streams: the largest lag in messages and in
    /// seconds over the copies (null: no copy could be read).
    pub copy_lag_messages: Option<u64>,
    pub copy_lag_s: Option<f64>,
    /// The population of each of its systems as last heard, with its age.
    pub populations: Vec<HeardPopulation>,
}

/// A system's population as heard from the region serving it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeardPopulation {
    pub slug: String,
    pub population: usize,
    /// Seconds since it was heard.
    pub age_s: f64,
}

/// One jump of a [`Route`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    pub from: String,
    pub to: String,
    pub distance_ly: f64,
    pub fuel: u32,
    pub travel_ms: u64,
}

/// `GET /v1/route`: the shortest route between two systems.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub from: String,
    pub to: String,
    /// Number of jumps (0 when `from` is `to`).
    pub jumps: usize,
    pub distance_ly: f64,
    /// Fuel units the whole route burns.
    pub fuel: u64,
    /// Travel time of all the jumps, without the time between them.
    pub travel_ms: u64,
    pub hops: Vec<Hop>,
}

/// `GET /v1/scan`: who is in the player's system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    pub system: String,
    /// The instance of the system the player is in (1: the system itself).
    pub instance: u16,
    /// Players in the instance, the scanner included.
    pub population: usize,
    pub others: usize,
    /// Names of players there (sorted; at most `limit`).
    pub names: Vec<String>,
    /// More players are there than `names` lists.
    pub truncated: bool,
}

/// One record of a player's own history log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The player's version after the event: entry N is their N-th event.
    pub version: u64,
    /// The record kind (`join`, `refuel`, `depart`, `arrive`, ...).
    pub kind: String,
    /// The record's fields as written (see docs/FORMAT.md), without `src`.
    pub fields: BTreeMap<String, String>,
    /// The record this entry copies: `<system slug>:<sequence>`.
    pub src: Option<String>,
}

/// `GET /v1/history`: the player's newest history entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub player: String,
    /// Oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Older entries exist that are not listed.
    pub truncated: bool,
}

/// One shard's figures (`GET /v1/status` lists one per system, its instances inside).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    pub system: String,
    pub slug: String,
    /// Which instance of the system this shard runs (1: the system itself).
    pub instance: u16,
    /// The instance's slug, as its log is named (`sol`, `sol.2`).
    pub shard: String,
    /// The instance's name, as players see it (`Sol`, `Sol #2`).
    pub instance_name: String,
    /// An instance moving its players back to the primary before it closes.
    pub merging: bool,
    /// A primary's open instances (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<ShardStatus>,
    pub population: usize,
    pub departing: usize,
    pub in_transit_towards: usize,
    pub tick: u64,
    pub tick_p50_us: u32,
    pub tick_p99_us: u32,
    pub tick_late_p50_us: u32,
    pub tick_late_p99_us: u32,
    pub dilation: f64,
    pub tick_period_us: u64,
    pub log_durable_seq: u64,
    pub log_next_seq: u64,
    pub state_hash: String,
    pub failed: Option<String>,
}

/// One good at a live market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub good: String,
    pub stock: u64,
    /// The mid price (before the spread): what other systems hear.
    pub mid_cr: u64,
    /// What buying one unit costs now (null: out of stock).
    pub buy_cr: Option<u64>,
    /// What selling one unit pays now (null: the market cannot take or pay for more).
    pub sell_cr: Option<u64>,
}

/// A system's mid prices as heard elsewhere, and how old they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeardPrices {
    pub system: String,
    pub slug: String,
    /// Milliseconds since the system published these prices.
    pub age_ms: u64,
    /// Mid price per good, in credits.
    pub prices: BTreeMap<String, u64>,
}

/// The player's own system's market, now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMarket {
    /// Always true.
    pub live: bool,
    pub system: String,
    pub slug: String,
    /// The system's economy type (`agricultural`, `mining`, ...): what it makes and needs.
    pub economy: String,
    /// The system's tick now.
    pub tick: u64,
    /// Credits the market can pay sellers.
    pub till_cr: u64,
    pub goods: Vec<Quote>,
    /// The last prices heard from other systems.
    pub heard: Vec<HeardPrices>,
    /// The market shocks running in the system now (docs/ECONOMY.md, Shocks). Empty from a
    /// server before them.
    #[serde(default)]
    pub shocks: Vec<MarketShock>,
}

/// A market shock running in a system: what moves its prices, and for how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketShock {
    /// `shortage`, `boom`, `glut`, `mining_strike` or `blockade`.
    pub kind: String,
    /// The good it bends; null for a blockade (every good the system makes).
    pub good: Option<String>,
    /// The system's tick it ends before.
    pub until_tick: u64,
    /// Ticks left (a game hour is 600 ticks).
    pub remaining_ticks: u64,
}

/// Another system's market as the player's system last heard it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeardMarket {
    /// Always false.
    pub live: bool,
    #[serde(flatten)]
    pub heard: HeardPrices,
}

/// `GET /v1/market`: live (the player's own system) or heard (another, with its age).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Market {
    Live(LiveMarket),
    Heard(HeardMarket),
}

/// `POST /v1/trade`: what moved and the player after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traded {
    pub side: super::TradeSide,
    pub good: String,
    pub qty: u32,
    /// Credits the market took (buy) or paid (sell), before the station's fee.
    pub total_cr: u64,
    /// The station's trade fee (a credit sink, docs/ECONOMY.md): paid on top of `total_cr` on
    /// a buy, taken from it on a sell. 0 from a server before the fee.
    #[serde(default)]
    pub fee_cr: u64,
    pub player: Player,
}

/// `POST /v1/attack`: whom the player now fires at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attacking {
    /// Null: cease fire.
    pub target: Option<String>,
    pub player: Player,
}

/// A wreck floating in a system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wreck {
    pub id: u64,
    /// Whose ship it was.
    pub pilot: String,
    pub cargo: BTreeMap<String, u32>,
    pub age_ms: u64,
}

/// `GET /v1/wrecks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrecks {
    pub system: String,
    /// Oldest first.
    pub wrecks: Vec<Wreck>,
}

/// `POST /v1/loot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Looted {
    pub wreck: u64,
    /// What moved into the hold (what did not fit stays in the wreck).
    pub took: BTreeMap<String, u32>,
    pub player: Player,
}

/// Where a good is cheapest or dearest, as far as the galaxy view has heard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BestPrice {
    pub system: String,
    pub price_cr: u64,
    pub age_ms: u64,
}

/// One good across the galaxy: where to buy it, where to sell it, and the spread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodSummary {
    pub good: String,
    pub best_buy: Option<BestPrice>,
    pub best_sell: Option<BestPrice>,
    pub spread_cr: u64,
}

/// `GET /v1/economy` (`components.schemas.Economy`): the galaxy-wide price view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GalaxyPrices {
    pub goods: Vec<GoodSummary>,
    pub systems: Vec<HeardPrices>,
}
