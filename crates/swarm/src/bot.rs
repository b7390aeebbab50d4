//! One bot: joins, then loops over trips. A trip starts where the bot is: sell what it carries,
//! look at the local market and the prices heard from elsewhere, let the policy pick a route
//! (a neighbour, and a good to carry there or none), buy fuel if the jump needs it, buy the good,
//! jump, wait for the landing, and sometimes open fire on another bot in the new system. The
//! trip's profit (credits after the next sales minus credits before its purchase, with the fuel
//! burnt at its price) is what the policy learns from.
//!
//! The bot plays through [`GameApi`] only, one call at a time, and keeps going whatever
//! happens: a refusal is counted and the next trip starts from what the server says
//! (`GET /v1/me`); no fuel means buying fuel; a full hold or empty purse means buying less; a
//! 429 waits for `Retry-After`; an unreachable server is asked again with a growing pause (the
//! server may be restarting, or another node taking over); an action whose answer was lost
//! (`outcome_unknown`: the node died after the request left) is never sent again, the next
//! step starts from what the server says (`GET /v1/me`); an unknown token joins again. Any other refusal, a 404 included
//! (a server without the market or combat routes is not one the bots were written for), is
//! counted as an error by its code.
//!
//! Every action the server acknowledged goes to the ack log, after the answer. Never reads a
//! clock to decide (only to wait); all its randomness comes from its own seeded [`Rng`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::ack_log::{Ack, AckLog, Action};
use super::api::{Call, CallError, GameApi, Lane, Market, PlayerView, Side, SystemView, Traded};
use super::policy::{Arm, Candidate, Policy};
use super::stats::Stats;
use sim::combat::{BASIC_SHIP_HULL_POINTS, REPAIR_PRICE_CR_PER_HULL_POINT};
use sim::goods::{Good, BASIC_SHIP_HOLD_UNITS};
use sim::market::SPREAD_PERMILLE;
use sim::rng::Rng;

/// Every bot's name starts so; bots attack only bots.
pub const BOT_PREFIX: &str = "bot-";
/// Names a bot tries (`bot-S-I`, then `bot-S-I.2`, ...) before it gives up joining: a name is
/// taken when an earlier run used the same seed, or when a join was durable but its answer was
/// lost to a crash.
pub const MAX_NAME_TRIES: u32 = 16;
/// Credits a bot keeps for fuel instead of spending them on goods.
pub const CREDIT_RESERVE_CR: u64 = 100;
/// A purchase costs more per unit than the first unit's price as it moves the price; the bot
/// budgets this much more, in per-mille.
pub const PRICE_MARGIN_PERMILLE: u64 = 200;
/// A bot mends its hull before a trip when it has fewer hull points than this.
pub const REPAIR_BELOW_HULL_POINTS: u32 = 60;
/// Halvings of a refused trade's quantity before the bot gives up on it.
pub const MAX_TRADE_TRIES: u32 = 4;
/// Fuel price the bot assumes until a refuel tells it (credits per unit).
pub const FUEL_PRICE_GUESS_CR: u64 = 2;
/// The most names a scan lists for choosing a target.
pub const SCAN_LIMIT: usize = 100;
/// The error code a bot counts when it can fly nowhere (no fuel, no credits to buy it).
pub const STRANDED: &str = "stranded";

/// Timing of a bot's pauses (tests set them to zero).
#[derive(Clone, Copy, Debug)]
pub struct Pauses {
    /// After a refusal, before the next trip.
    pub refused_ms: u64,
    /// After finding itself stranded (no fuel, no credits), before looking again.
    pub stranded_ms: u64,
    /// After a failed connection: the first pause, doubled up to `unreachable_max_ms`.
    pub unreachable_min_ms: u64,
    pub unreachable_max_ms: u64,
    /// Waiting for a landing: sleep the travel time first (tests: no).
    pub sleep_travel: bool,
}

impl Default for Pauses {
    fn default() -> Pauses {
        Pauses {
            refused_ms: 250,
            stranded_ms: 5_000,
            unreachable_min_ms: 100,
            unreachable_max_ms: 2_000,
            sleep_travel: true,
        }
    }
}

/// What a bot is told at start.
#[derive(Clone, Debug)]
pub struct BotConfig {
    pub index: usize,
    /// The swarm's seed: names the bot and seeds its generator.
    pub seed: u64,
    /// Chance of opening fire after a landing, in percent.
    pub attack_percent: u32,
    /// Choose at random instead of learning (a baseline for the summary).
    pub baseline: bool,
    /// Start over when broke: a bot stranded with an empty hold (no fuel, and no credits to
    /// buy any) joins again as a new pilot ([`life_name`]) instead of waiting for ever.
    pub start_over: bool,
    pub pauses: Pauses,
}

/// The map, as bots need it: each system's lanes.
#[derive(Clone, Debug, Default)]
pub struct Map {
    lanes: HashMap<String, Vec<Lane>>,
}

impl Map {
    pub fn new(systems: Vec<SystemView>) -> Map {
        Map {
            lanes: systems.into_iter().map(|s| (s.name, s.lanes)).collect(),
        }
    }

    pub fn lanes(&self, system: &str) -> &[Lane] {
        self.lanes.get(system).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }
}

/// What every bot of a swarm shares.
pub struct Shared {
    pub stats: Stats,
    pub acks: Option<AckLog>,
    pub map: Map,
}

/// A trip under way: the choice, and the credits and fuel before it.
struct Trip {
    candidate: Candidate,
    credits_before: u64,
    fuel_before: u32,
}

impl Trip {
    /// The trip's profit: credits won, plus the fuel in the tank at its price. So the fuel a
    /// trip burns is its cost, and a refuel (credits for fuel) is neither gain nor loss: the
    /// bill of a full tank does not fall on the one trip that happened to need it.
    fn profit_cr(&self, player: &PlayerView, fuel_price_cr: u64) -> i64 {
        let credits = player.credits as i64 - self.credits_before as i64;
        let fuel = i64::from(player.fuel) - i64::from(self.fuel_before);
        credits + fuel * fuel_price_cr as i64
    }
}

/// One bot.
pub struct Bot<A: GameApi> {
    api: Arc<A>,
    shared: Arc<Shared>,
    config: BotConfig,
    rng: Rng,
    policy: Policy,
    /// The name of the current (or next) join attempt.
    name: String,
    name_tries: u32,
    /// The pilot this bot plays: 1, then one more each time it starts over.
    life: u32,
    token: Option<String>,
    trip: Option<Trip>,
    /// Counted in `Stats::online`.
    online: bool,
    /// Failed connections in a row (for the pause).
    unreachable_in_a_row: u32,
    fuel_price_cr: u64,
    gave_up: bool,
}

/// The generator of bot `index` of a swarm seeded `seed`.
pub fn bot_rng(seed: u64, index: usize) -> Rng {
    Rng::from_seed(xxh3_64_with_seed(&(index as u64).to_le_bytes(), seed))
}

/// The first name of bot `index` of a swarm seeded `seed`.
pub fn bot_name(seed: u64, index: usize) -> String {
    format!("{BOT_PREFIX}{seed}-{index}")
}

/// What a later pilot's name carries after its bot's name ([`life_name`]).
pub const LIFE_MARK: &str = ".life";

/// The first name of pilot `life` of bot `index` (`bot-S-I` for the first, `bot-S-I.lifeN`
/// after N-1 fresh starts): whatever follows the index's first `.` is not part of it.
pub fn life_name(seed: u64, index: usize, life: u32) -> String {
    match life {
        0 | 1 => bot_name(seed, index),
        n => format!("{}{LIFE_MARK}{n}", bot_name(seed, index)),
    }
}

impl<A: GameApi> Bot<A> {
    pub fn new(api: Arc<A>, shared: Arc<Shared>, config: BotConfig) -> Bot<A> {
        Bot {
            rng: bot_rng(config.seed, config.index),
            name: bot_name(config.seed, config.index),
            policy: if config.baseline {
                Policy::random()
            } else {
                Policy::new()
            },
            api,
            shared,
            config,
            name_tries: 1,
            life: 1,
            token: None,
            trip: None,
            online: false,
            unreachable_in_a_row: 0,
            fuel_price_cr: FUEL_PRICE_GUESS_CR,
            gave_up: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Plays until the task is dropped, or until it cannot join under any of its names.
    pub async fn run(mut self) {
        while !self.gave_up {
            self.turn().await;
        }
        self.set_online(false);
    }

    /// One step (a join, a landing, or a trip), then whatever a failure asks for.
    pub async fn turn(&mut self) {
        match self.step().await {
            Ok(()) => self.unreachable_in_a_row = 0,
            Err(e) => self.recover(e).await,
        }
    }

    fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn set_online(&mut self, online: bool) {
        if self.online != online {
            self.online = online;
            let delta = if online { 1 } else { -1 };
            self.stats().online.fetch_add(delta, Ordering::Relaxed);
        }
    }

    async fn recover(&mut self, e: CallError) {
        self.stats().error(e.code());
        let pause_ms = match &e {
            CallError::Unreachable { .. } => {
                self.set_online(false);
                self.unreachable_in_a_row = self.unreachable_in_a_row.saturating_add(1);
                let p = &self.config.pauses;
                let doubled = p
                    .unreachable_min_ms
                    .saturating_mul(1 << self.unreachable_in_a_row.min(16));
                doubled.min(p.unreachable_max_ms)
            }
            CallError::Refused {
                status: 429,
                retry_after_s,
                ..
            } => retry_after_s.unwrap_or(1).saturating_mul(1000),
            CallError::Refused { status: 401, .. } => {
                // The server does not know the token (a new galaxy at the same address).
                self.token = None;
                self.trip = None;
                self.set_online(false);
                self.config.pauses.refused_ms
            }
            CallError::Refused { code, .. } if code == STRANDED => self.config.pauses.stranded_ms,
            CallError::Refused { .. } => self.config.pauses.refused_ms,
        };
        if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }

    /// An ack of this bot's `action`, answered at `version`, without details yet.
    fn ack_of(&self, action: Action, version: u64) -> Ack {
        Ack::new(&self.name, action, version)
    }

    /// An acknowledged trade, with what the server answered it did.
    fn trade_ack(&self, side: Side, good: &str, qty: u32, t: &Traded) -> Ack {
        Ack {
            side: Some(side.name().to_string()),
            good: Some(good.to_string()),
            qty: Some(u64::from(qty)),
            total_cr: Some(t.total_cr),
            ..self.ack_of(Action::Trade, t.player.version)
        }
    }

    /// Writes `ack` to the ack log, if there is one.
    fn ack(&self, ack: Ack) {
        let Some(log) = &self.shared.acks else {
            return;
        };
        match log.record(&ack) {
            Ok(()) => {
                self.stats().acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => self.stats().error("ack_log_write"),
        }
    }

    /// Joins, sells, chooses, travels: one step of the loop.
    pub async fn step(&mut self) -> Call<()> {
        let Some(token) = self.token.clone() else {
            return self.join().await;
        };
        let me = self.api.me(&token).await?;
        self.set_online(true);
        let (Some(here), Some(mut player)) = (me.system, me.player) else {
            // In a jump (for instance one whose answer a restart lost): wait for the landing.
            self.api.landing(&token).await?;
            return Ok(());
        };
        if !player.cargo.is_empty() {
            self.sell_all(&token, &mut player).await?;
        }
        if let Some(trip) = self.trip.take() {
            let profit_cr = trip.profit_cr(&player, self.fuel_price_cr);
            tracing::debug!(
                bot = %self.name,
                arm = ?trip.candidate.arm,
                prior_cr = ?trip.candidate.prior_cr,
                value_cr = self.policy.value_cr(&trip.candidate),
                profit_cr,
                "trip"
            );
            self.policy.learn(&trip.candidate, profit_cr as f64);
            self.stats().trip(profit_cr, self.config.baseline);
        }
        // After the trip is learned, so that its profit is the trade's, not the repair's.
        if self.needs_repair(&player) {
            let r = self.api.repair(&token).await?;
            self.ack(Ack {
                points: Some(u64::from(r.repaired_points)),
                cost_cr: Some(r.cost_cr),
                ..self.ack_of(Action::Repair, r.player.version)
            });
            self.stats().repairs.fetch_add(1, Ordering::Relaxed);
            player = r.player;
        }
        let market = self.look(&token).await?;
        let lanes: Vec<Lane> = self
            .shared
            .map
            .lanes(&here)
            .iter()
            .filter(|l| self.can_fly(&player, l))
            .cloned()
            .collect();
        if lanes.is_empty() {
            // (A system with no lanes at all strands every pilot: starting over would not help.)
            let lanes_here = !self.shared.map.lanes(&here).is_empty();
            if self.config.start_over && player.cargo.is_empty() && lanes_here {
                self.start_over();
                return Ok(());
            }
            // No fuel and no credits to buy it, or no lanes at all: nothing to do but wait
            // (for a server that gives something, or for the run to end).
            return Err(CallError::refused(
                409,
                STRANDED,
                format!("{} is stranded in {here}", self.name),
            ));
        }
        let options = self.options(&here, &player, &market, &lanes);
        let candidates: Vec<Candidate> = options.iter().map(|(c, _)| c.clone()).collect();
        let pick = self.policy.choose(&mut self.rng, &candidates);
        let (mut candidate, qty) = options[pick].clone();
        let lane = lanes
            .iter()
            .find(|l| l.to == candidate.arm.to)
            .expect("every option follows a lane")
            .clone();
        let (credits_before, fuel_before) = (player.credits, player.fuel);

        if player.fuel < lane.fuel {
            let r = self.api.refuel(&token, self.refuel_units(&player)).await?;
            let bought = r.player.fuel.saturating_sub(player.fuel);
            self.ack(Ack {
                units: Some(u64::from(bought)),
                cost_cr: Some(r.cost_cr),
                ..self.ack_of(Action::Refuel, r.player.version)
            });
            self.stats().refuels.fetch_add(1, Ordering::Relaxed);
            if bought > 0 {
                self.fuel_price_cr = (r.cost_cr / u64::from(bought)).max(1);
            }
            player = r.player;
        }
        if let Some(good) = candidate.arm.good.clone() {
            if !self.buy(&token, &good, qty, &mut player).await? {
                // Nothing bought: the trip is an empty one, and is learned as such.
                candidate = Candidate {
                    prior_cr: Some(-(self.fuel_cost_cr(&lane) as f64)),
                    arm: Arm {
                        good: None,
                        ..candidate.arm
                    },
                };
            }
        }
        let t = self.api.travel(&token, &lane.to).await?;
        self.ack(Ack {
            xfer: Some(t.xfer.clone()),
            ..self.ack_of(Action::Travel, t.player.version)
        });
        self.stats().jumps.fetch_add(1, Ordering::Relaxed);
        self.trip = Some(Trip {
            candidate,
            credits_before,
            fuel_before,
        });
        if self.config.pauses.sleep_travel {
            tokio::time::sleep(Duration::from_millis(t.travel_ms)).await;
        }
        self.api.landing(&token).await?;
        if self.rng.chance_percent(self.config.attack_percent) {
            self.attack(&token).await?;
        }
        Ok(())
    }

    /// Leaves the broke pilot where it is (its few credits stay in the galaxy) and joins as the
    /// next one at the next step, with the start grant: what a player who lost everything does.
    fn start_over(&mut self) {
        self.life += 1;
        self.name = life_name(self.config.seed, self.config.index, self.life);
        self.name_tries = 1;
        self.token = None;
        self.trip = None;
        self.set_online(false);
        self.stats().started_over.fetch_add(1, Ordering::Relaxed);
    }

    async fn join(&mut self) -> Call<()> {
        match self.api.join(&self.name).await {
            Ok(j) => {
                self.token = Some(j.token);
                self.ack(self.ack_of(Action::Join, j.player.version));
                self.stats().joined.fetch_add(1, Ordering::Relaxed);
                self.set_online(true);
                Ok(())
            }
            Err(e @ CallError::Refused { .. }) if e.code() == "name_taken" => {
                self.name_tries += 1;
                if self.name_tries > MAX_NAME_TRIES {
                    self.gave_up = true;
                } else {
                    self.name = format!(
                        "{}.{}",
                        life_name(self.config.seed, self.config.index, self.life),
                        self.name_tries
                    );
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The local market.
    async fn look(&self, token: &str) -> Call<Market> {
        self.api.market(token).await
    }

    /// Whether the bot has the fuel for `lane`, or the credits to buy it.
    fn can_fly(&self, player: &PlayerView, lane: &Lane) -> bool {
        let missing = lane.fuel.saturating_sub(player.fuel);
        lane.fuel <= player.fuel_capacity
            && u64::from(missing) * self.fuel_price_cr <= player.credits
    }

    /// Whether to mend the hull before the next trip: damaged below
    /// [`REPAIR_BELOW_HULL_POINTS`] and the purse pays for a whole hull and keeps
    /// [`CREDIT_RESERVE_CR`] (a bot never repairs with its fuel money).
    fn needs_repair(&self, player: &PlayerView) -> bool {
        let Some(hull) = player.hull else {
            return false;
        };
        let missing = BASIC_SHIP_HULL_POINTS.saturating_sub(hull);
        let cost_cr = u64::from(missing) * REPAIR_PRICE_CR_PER_HULL_POINT;
        hull > 0 && hull < REPAIR_BELOW_HULL_POINTS && cost_cr + CREDIT_RESERVE_CR <= player.credits
    }

    /// Fuel to buy: a full tank, or what the purse pays for.
    fn refuel_units(&self, player: &PlayerView) -> Option<u32> {
        let room = player.fuel_capacity.saturating_sub(player.fuel);
        let affordable = player.credits / self.fuel_price_cr.max(1);
        if u64::from(room) <= affordable {
            None
        } else {
            Some(affordable as u32)
        }
    }

    fn fuel_cost_cr(&self, lane: &Lane) -> u64 {
        u64::from(lane.fuel) * self.fuel_price_cr
    }

    /// Every route from here with the quantity to buy: for each lane, an empty trip and a trip
    /// with each good the bot can buy, each with what the prices promise.
    fn options(
        &self,
        here: &str,
        player: &PlayerView,
        market: &Market,
        lanes: &[Lane],
    ) -> Vec<(Candidate, u32)> {
        let mut out = Vec::new();
        for lane in lanes {
            let fuel_cr = self.fuel_cost_cr(lane) as f64;
            out.push((
                Candidate {
                    arm: Arm {
                        from: here.to_string(),
                        good: None,
                        to: lane.to.clone(),
                    },
                    prior_cr: Some(-fuel_cr),
                },
                0,
            ));
            let heard = market.heard.iter().find(|h| h.system == lane.to);
            for quote in &market.goods {
                let Some(buy_cr) = quote.buy_cr else {
                    continue;
                };
                let qty = purchase_qty(player, quote.good.as_str(), quote.stock, buy_cr);
                if qty == 0 {
                    continue;
                }
                let prior_cr = heard.and_then(|h| h.prices.get(&quote.good)).map(|&mid| {
                    let sell_cr = mid as f64 * (1000 - SPREAD_PERMILLE) as f64 / 1000.0;
                    (sell_cr - buy_cr as f64) * f64::from(qty) - fuel_cr
                });
                out.push((
                    Candidate {
                        arm: Arm {
                            from: here.to_string(),
                            good: Some(quote.good.clone()),
                            to: lane.to.clone(),
                        },
                        prior_cr,
                    },
                    qty,
                ));
            }
        }
        out
    }

    /// Buys up to `qty` of `good`, halving on refusals. Returns whether anything was bought.
    async fn buy(
        &mut self,
        token: &str,
        good: &str,
        mut qty: u32,
        player: &mut PlayerView,
    ) -> Call<bool> {
        for _ in 0..MAX_TRADE_TRIES {
            if qty == 0 {
                break;
            }
            match self.api.trade(token, Side::Buy, good, qty).await {
                Ok(t) => {
                    self.ack(self.trade_ack(Side::Buy, good, qty, &t));
                    self.stats().trades.fetch_add(1, Ordering::Relaxed);
                    *player = t.player;
                    return Ok(true);
                }
                Err(e @ CallError::Refused { status: 409, .. }) => {
                    // no_credits, no_stock, no_cargo_space, price_limit: try less.
                    self.stats().error(e.code());
                    qty /= 2;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Sells everything carried, halving a refused quantity (a full market, an empty till).
    async fn sell_all(&mut self, token: &str, player: &mut PlayerView) -> Call<()> {
        let cargo: Vec<(String, u32)> = player.cargo.iter().map(|(g, q)| (g.clone(), *q)).collect();
        for (good, mut qty) in cargo {
            for _ in 0..MAX_TRADE_TRIES {
                if qty == 0 {
                    break;
                }
                match self.api.trade(token, Side::Sell, &good, qty).await {
                    Ok(t) => {
                        self.ack(self.trade_ack(Side::Sell, &good, qty, &t));
                        self.stats().trades.fetch_add(1, Ordering::Relaxed);
                        *player = t.player;
                        break;
                    }
                    Err(e @ CallError::Refused { status: 409, .. }) => {
                        self.stats().error(e.code());
                        if e.code() == "not_carried" {
                            break;
                        }
                        qty /= 2;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Opens fire on a random other bot in the system, if there is one.
    async fn attack(&mut self, token: &str) -> Call<()> {
        let scan = self.api.scan(token).await?;
        let targets: Vec<&String> = scan
            .names
            .iter()
            .take(SCAN_LIMIT)
            .filter(|n| n.starts_with(BOT_PREFIX) && **n != self.name)
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let target = targets[self.rng.below(targets.len() as u64) as usize].clone();
        match self.api.attack(token, &target).await {
            Ok(a) => {
                self.ack(Ack {
                    target: Some(target.clone()),
                    ..self.ack_of(Action::Attack, a.player.version)
                });
                self.stats().attacks.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e @ CallError::Refused { status: 409, .. }) => {
                // The target left (not_here), or is already gone.
                self.stats().error(e.code());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// How many units of `good` a player buys at `buy_cr` a unit: what fits in the hold, what the
/// market has, and what the purse pays for, keeping [`CREDIT_RESERVE_CR`] for fuel.
pub fn purchase_qty(player: &PlayerView, good: &str, stock: u64, buy_cr: u64) -> u32 {
    let per_unit = |g: &str| Good::parse(g).map_or(1, Good::hold_units_per_unit);
    let hold = player.hold.unwrap_or(BASIC_SHIP_HOLD_UNITS);
    let used: u64 = player
        .cargo
        .iter()
        .map(|(g, q)| u64::from(*q) * u64::from(per_unit(g)))
        .sum();
    let free = u64::from(hold).saturating_sub(used) / u64::from(per_unit(good));
    let unit_cr = buy_cr + buy_cr * PRICE_MARGIN_PERMILLE / 1000;
    let affordable = match unit_cr {
        0 => 0,
        c => player.credits.saturating_sub(CREDIT_RESERVE_CR) / c,
    };
    free.min(stock).min(affordable).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::super::api::{
        Attacked, Heard, Joined, Landed, Me, Quote, Refueled, Repaired, Scan, Traded, Traveled,
    };
    use super::*;
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;

    /// A fake galaxy: three systems in a triangle, fixed prices, players by token. Food is
    /// cheap in A and dear in B (the best route); the rest loses a little.
    struct Fake {
        trading: bool,
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        players: HashMap<String, FakePlayer>,
        taken: Vec<String>,
        /// Every event: (player, version, kind).
        history: Vec<(String, u64, &'static str)>,
        /// Failures to answer the next calls with.
        fail: VecDeque<CallError>,
        next_xfer: u64,
    }

    struct FakePlayer {
        p: PlayerView,
        system: String,
    }

    const SYSTEMS: [&str; 3] = ["A", "B", "C"];
    const LANE_FUEL: u32 = 10;

    /// (buy_cr, sell_cr) of a good in a system.
    fn price(system: &str, good: &str) -> (u64, u64) {
        match (system, good) {
            ("A", "food") => (10, 9),
            ("B", "food") => (40, 38),
            (_, "food") => (16, 15),
            (_, _) => (50, 45),
        }
    }

    impl Fake {
        fn new(trading: bool) -> Fake {
            Fake {
                trading,
                state: Mutex::new(FakeState::default()),
            }
        }

        fn fail_next(&self, e: CallError) {
            self.state.lock().unwrap().fail.push_back(e);
        }

        /// Fails if a failure is queued, else runs `f` on the state.
        fn call<T>(&self, f: impl FnOnce(&mut FakeState) -> Call<T>) -> Call<T> {
            let mut s = self.state.lock().unwrap();
            if let Some(e) = s.fail.pop_front() {
                return Err(e);
            }
            f(&mut s)
        }

        fn no_route() -> CallError {
            CallError::refused(404, "no_route", "no such route")
        }
    }

    impl FakeState {
        fn player(&mut self, token: &str) -> Call<&mut FakePlayer> {
            self.players
                .get_mut(token)
                .ok_or_else(|| CallError::refused(401, "unauthorized", "who?"))
        }

        fn event(&mut self, token: &str, kind: &'static str) -> Call<PlayerView> {
            let fp = self.player(token)?;
            fp.p.version += 1;
            let p = fp.p.clone();
            self.history.push((p.name.clone(), p.version, kind));
            Ok(p)
        }
    }

    impl GameApi for Fake {
        async fn systems(&self) -> Call<Vec<SystemView>> {
            Ok(SYSTEMS
                .iter()
                .map(|s| SystemView {
                    name: s.to_string(),
                    lanes: SYSTEMS
                        .iter()
                        .filter(|t| *t != s)
                        .map(|t| Lane {
                            to: t.to_string(),
                            fuel: LANE_FUEL,
                            travel_ms: 0,
                        })
                        .collect(),
                })
                .collect())
        }

        async fn join(&self, name: &str) -> Call<Joined> {
            self.call(|s| {
                if s.taken.iter().any(|n| n == name) {
                    return Err(CallError::refused(409, "name_taken", "taken"));
                }
                s.taken.push(name.to_string());
                let token = format!("t-{name}");
                let p = PlayerView {
                    name: name.to_string(),
                    credits: 1000,
                    fuel: 40,
                    fuel_capacity: 40,
                    version: 1,
                    hold: Some(60),
                    cargo: BTreeMap::new(),
                    hull: Some(BASIC_SHIP_HULL_POINTS),
                };
                s.history.push((name.to_string(), 1, "join"));
                s.players.insert(
                    token.clone(),
                    FakePlayer {
                        p: p.clone(),
                        system: "A".into(),
                    },
                );
                Ok(Joined { token, player: p })
            })
        }

        async fn me(&self, token: &str) -> Call<Me> {
            self.call(|s| {
                let fp = s.player(token)?;
                Ok(Me {
                    system: Some(fp.system.clone()),
                    player: Some(fp.p.clone()),
                })
            })
        }

        async fn market(&self, token: &str) -> Call<Market> {
            if !self.trading {
                return Err(Fake::no_route());
            }
            self.call(|s| {
                let here = s.player(token)?.system.clone();
                let quote = |g: &str| {
                    let (buy_cr, sell_cr) = price(&here, g);
                    Quote {
                        good: g.to_string(),
                        stock: 1000,
                        buy_cr: Some(buy_cr),
                        sell_cr: Some(sell_cr),
                    }
                };
                Ok(Market {
                    system: here.clone(),
                    goods: vec![quote("food"), quote("ore")],
                    // Heard prices lie: ore looks great everywhere.
                    heard: SYSTEMS
                        .iter()
                        .map(|t| Heard {
                            system: t.to_string(),
                            prices: [("ore".to_string(), 90), ("food".to_string(), 20)]
                                .into_iter()
                                .collect(),
                        })
                        .collect(),
                })
            })
        }

        async fn trade(&self, token: &str, side: Side, good: &str, qty: u32) -> Call<Traded> {
            if !self.trading {
                return Err(Fake::no_route());
            }
            self.call(|s| {
                let fp = s.player(token)?;
                let (buy_cr, sell_cr) = price(&fp.system, good);
                let total_cr = match side {
                    Side::Buy => {
                        let cost = buy_cr * u64::from(qty);
                        if cost > fp.p.credits {
                            return Err(CallError::refused(409, "no_credits", "poor"));
                        }
                        let used: u32 = fp.p.cargo.values().sum();
                        if used + qty > 60 {
                            return Err(CallError::refused(409, "no_cargo_space", "full"));
                        }
                        fp.p.credits -= cost;
                        *fp.p.cargo.entry(good.to_string()).or_default() += qty;
                        cost
                    }
                    Side::Sell => {
                        let have = fp.p.cargo.get(good).copied().unwrap_or(0);
                        if have < qty {
                            return Err(CallError::refused(409, "not_carried", "no"));
                        }
                        if have == qty {
                            fp.p.cargo.remove(good);
                        } else {
                            fp.p.cargo.insert(good.to_string(), have - qty);
                        }
                        fp.p.credits += sell_cr * u64::from(qty);
                        sell_cr * u64::from(qty)
                    }
                };
                let player = s.event(token, "trade")?;
                Ok(Traded { total_cr, player })
            })
        }

        async fn refuel(&self, token: &str, units: Option<u32>) -> Call<Refueled> {
            self.call(|s| {
                let fp = s.player(token)?;
                let room = fp.p.fuel_capacity - fp.p.fuel;
                let units = units.map_or(room, |u| u.min(room));
                let cost_cr = u64::from(units) * 2;
                if cost_cr > fp.p.credits {
                    return Err(CallError::refused(409, "no_credits", "poor"));
                }
                fp.p.credits -= cost_cr;
                fp.p.fuel += units;
                let player = s.event(token, "refuel")?;
                Ok(Refueled { player, cost_cr })
            })
        }

        async fn repair(&self, token: &str) -> Call<Repaired> {
            self.call(|s| {
                let fp = s.player(token)?;
                let hull = fp.p.hull.unwrap_or(BASIC_SHIP_HULL_POINTS);
                let points = BASIC_SHIP_HULL_POINTS - hull;
                if points == 0 {
                    return Err(CallError::refused(409, "hull_whole", "whole"));
                }
                let cost_cr = u64::from(points) * REPAIR_PRICE_CR_PER_HULL_POINT;
                if cost_cr > fp.p.credits {
                    return Err(CallError::refused(409, "no_credits", "poor"));
                }
                fp.p.credits -= cost_cr;
                fp.p.hull = Some(BASIC_SHIP_HULL_POINTS);
                let player = s.event(token, "repair")?;
                Ok(Repaired {
                    player,
                    repaired_points: points,
                    cost_cr,
                })
            })
        }

        async fn travel(&self, token: &str, to: &str) -> Call<Traveled> {
            self.call(|s| {
                let fp = s.player(token)?;
                if fp.p.fuel < LANE_FUEL {
                    return Err(CallError::refused(409, "no_fuel", "no fuel"));
                }
                fp.p.fuel -= LANE_FUEL;
                fp.system = to.to_string();
                s.next_xfer += 1;
                let xfer = format!("x:{}", s.next_xfer);
                let player = s.event(token, "depart")?;
                // The landing is an event too.
                s.event(token, "arrive")?;
                Ok(Traveled {
                    xfer,
                    to: to.to_string(),
                    travel_ms: 0,
                    player,
                })
            })
        }

        async fn landing(&self, token: &str) -> Call<Landed> {
            self.call(|s| {
                Ok(Landed {
                    system: s.player(token)?.system.clone(),
                })
            })
        }

        async fn scan(&self, token: &str) -> Call<Scan> {
            self.call(|s| {
                let here = s.player(token)?.system.clone();
                let mut names: Vec<String> = s
                    .players
                    .values()
                    .filter(|fp| fp.system == here)
                    .map(|fp| fp.p.name.clone())
                    .collect();
                names.sort();
                Ok(Scan { names })
            })
        }

        async fn attack(&self, token: &str, _target: &str) -> Call<Attacked> {
            self.call(|s| {
                // The target fires back: the attacker's hull takes a beating (never to 0).
                let fp = s.player(token)?;
                let hull = fp.p.hull.unwrap_or(BASIC_SHIP_HULL_POINTS);
                fp.p.hull = Some(hull.saturating_sub(45).max(1));
                let player = s.event(token, "attack")?;
                Ok(Attacked { player })
            })
        }
    }

    fn config(index: usize) -> BotConfig {
        BotConfig {
            index,
            seed: 1,
            attack_percent: 20,
            baseline: false,
            start_over: false,
            pauses: Pauses {
                refused_ms: 0,
                stranded_ms: 0,
                unreachable_min_ms: 0,
                unreachable_max_ms: 0,
                sleep_travel: false,
            },
        }
    }

    async fn swarm(fake: &Arc<Fake>, ack_log: Option<AckLog>) -> Arc<Shared> {
        Arc::new(Shared {
            stats: Stats::new(),
            acks: ack_log,
            map: Map::new(fake.systems().await.unwrap()),
        })
    }

    fn read_acks(path: &std::path::Path) -> Vec<Ack> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn bots_trade_travel_and_every_ack_is_an_event_of_that_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks");
        let fake = Arc::new(Fake::new(true));
        let shared = swarm(&fake, Some(AckLog::create(&path).unwrap())).await;
        let mut bots: Vec<_> = (0..3)
            .map(|i| Bot::new(fake.clone(), shared.clone(), config(i)))
            .collect();
        for _ in 0..40 {
            for b in &mut bots {
                b.turn().await;
            }
        }
        let s = &shared.stats;
        assert_eq!(s.joined.load(Ordering::Relaxed), 3);
        assert_eq!(s.online.load(Ordering::Relaxed), 3);
        assert!(s.jumps.load(Ordering::Relaxed) >= 100);
        assert!(s.trades.load(Ordering::Relaxed) > 50);
        assert!(s.refuels.load(Ordering::Relaxed) > 10);
        assert!(s.attacks.load(Ordering::Relaxed) > 0);
        // Damaged in fights, bots mend their hulls before their next trips.
        assert!(s.repairs.load(Ordering::Relaxed) > 0);
        let acks = read_acks(&path);
        assert_eq!(acks.len() as u64, s.acks.load(Ordering::Relaxed));
        let repair_acks = acks.iter().filter(|a| a.action == Action::Repair);
        assert_eq!(
            repair_acks.count() as u64,
            s.repairs.load(Ordering::Relaxed),
            "every repair is in the ack log"
        );
        let history = fake.state.lock().unwrap().history.clone();
        for a in &acks {
            let kind = history
                .iter()
                .find(|(p, v, _)| *p == a.player && *v == a.version)
                .map(|(_, _, k)| *k)
                .unwrap_or_else(|| panic!("{a:?} is not an event"));
            let want = match a.action {
                Action::Travel => "depart",
                other => other.name(),
            };
            assert_eq!(kind, want, "{a:?}");
        }
        assert_eq!(bots[0].name(), "bot-1-0");
    }

    #[tokio::test]
    async fn the_policy_learns_the_profitable_route() {
        let fake = Arc::new(Fake::new(true));
        let shared = swarm(&fake, None).await;
        let mut bot = Bot::new(fake.clone(), shared.clone(), config(0));
        let mut random = Bot::new(
            fake.clone(),
            shared.clone(),
            BotConfig {
                baseline: true,
                ..config(1)
            },
        );
        for _ in 0..400 {
            bot.turn().await;
            random.turn().await;
        }
        // From A, food to B pays 28 a unit; the heard price of ore (90) is a lie.
        let best = Candidate {
            arm: Arm {
                from: "A".into(),
                good: Some("food".into()),
                to: "B".into(),
            },
            prior_cr: None,
        };
        let lying = Candidate {
            arm: Arm {
                good: Some("ore".into()),
                ..best.arm.clone()
            },
            prior_cr: None,
        };
        let p = bot.policy();
        assert!(p.value_cr(&best) > 1000.0, "{:?}", p.stats(&best.arm));
        assert!(
            p.value_cr(&lying) < p.value_cr(&best) / 2.0,
            "{:?}",
            p.stats(&lying.arm)
        );
        let (explored, chosen) = p.exploration();
        assert!(
            explored * 5 < chosen,
            "mostly exploiting: {explored} of {chosen}"
        );
        let summary = shared.stats.summary(2, 1, 1, "fake");
        let l = summary.learning.expect("trips in both halves");
        assert!(
            l.second_half_mean_profit_cr > l.first_half_mean_profit_cr,
            "{l:?}"
        );
        assert_eq!(l.beats_baseline, Some(true), "{l:?}");
        assert_eq!(
            summary.trips, 398,
            "a trip a turn, after the join, but the last"
        );
        assert!(summary.baseline_trips > 0);
    }

    #[tokio::test]
    async fn the_same_seed_on_a_fresh_galaxy_plays_the_same_game() {
        async fn play(seed: u64) -> Vec<(String, u64, &'static str)> {
            let fake = Arc::new(Fake::new(true));
            let shared = swarm(&fake, None).await;
            let mut bot = Bot::new(fake.clone(), shared, BotConfig { seed, ..config(3) });
            for _ in 0..100 {
                bot.turn().await;
            }
            let history = fake.state.lock().unwrap().history.clone();
            history
        }
        let a = play(5).await;
        assert_eq!(a[0].0, "bot-5-3");
        assert!(a.len() > 300, "{} events", a.len());
        assert_eq!(a, play(5).await);
    }

    /// A server without a market is not silently played around: every turn's 404 is an
    /// error the summary shows by its code, and nothing is traded or flown.
    #[tokio::test]
    async fn a_server_without_a_market_is_an_error_not_a_fallback() {
        let fake = Arc::new(Fake::new(false));
        let shared = swarm(&fake, None).await;
        let mut bot = Bot::new(fake.clone(), shared.clone(), config(0));
        for _ in 0..30 {
            bot.turn().await;
        }
        let s = &shared.stats;
        assert_eq!(s.trades.load(Ordering::Relaxed), 0);
        assert_eq!(s.jumps.load(Ordering::Relaxed), 0);
        let summary = s.summary(1, 0, 1, "fake");
        assert_eq!(
            summary.errors_by_code.get("no_route"),
            Some(&29),
            "each turn after the join: {:?}",
            summary.errors_by_code
        );
    }

    #[tokio::test]
    async fn bots_ride_out_failures_and_rejoin_under_a_new_name() {
        let fake = Arc::new(Fake::new(true));
        let shared = swarm(&fake, None).await;
        // A name taken by an earlier run with the same seed.
        fake.state.lock().unwrap().taken.push("bot-1-0".into());
        let mut bot = Bot::new(fake.clone(), shared.clone(), config(0));
        bot.turn().await;
        bot.turn().await;
        assert_eq!(bot.name(), "bot-1-0.2");
        let unreachable = CallError::Unreachable {
            code: "unreachable".into(),
            message: "connection refused".into(),
        };
        for _ in 0..3 {
            fake.fail_next(unreachable.clone());
        }
        fake.fail_next(CallError::Refused {
            status: 429,
            code: "rate_limited".into(),
            message: "slow down".into(),
            retry_after_s: Some(0),
        });
        for _ in 0..10 {
            bot.turn().await;
        }
        let s = &shared.stats;
        assert_eq!(s.online.load(Ordering::Relaxed), 1, "online again");
        assert!(s.jumps.load(Ordering::Relaxed) >= 4);
        let errors = s.summary(1, 0, 1, "fake").errors_by_code;
        assert_eq!(errors.get("unreachable"), Some(&3));
        assert_eq!(errors.get("rate_limited"), Some(&1));
        assert_eq!(errors.get("name_taken"), Some(&1));
    }

    #[tokio::test]
    async fn a_poor_bot_buys_the_fuel_it_can_and_a_broke_one_waits() {
        let fake = Arc::new(Fake::new(true));
        let shared = swarm(&fake, None).await;
        let mut bot = Bot::new(fake.clone(), shared.clone(), config(0));
        bot.turn().await;
        let set = |fuel: u32, credits: u64| {
            let mut s = fake.state.lock().unwrap();
            let fp = s.players.values_mut().next().unwrap();
            fp.p.fuel = fuel;
            fp.p.credits = credits;
        };
        set(0, 30);
        bot.turn().await;
        {
            let s = fake.state.lock().unwrap();
            let fp = s.players.values().next().unwrap();
            assert_eq!(
                (fp.p.fuel, fp.p.credits),
                (5, 0),
                "15 units bought, 10 burnt"
            );
        }
        assert_eq!(shared.stats.jumps.load(Ordering::Relaxed), 1);
        bot.turn().await;
        let errors = shared.stats.summary(1, 0, 1, "fake").errors_by_code;
        assert_eq!(errors.get(STRANDED), Some(&1), "{errors:?}");
        assert_eq!(shared.stats.jumps.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_broke_bot_told_to_start_over_joins_again_as_a_new_pilot() {
        let fake = Arc::new(Fake::new(true));
        let shared = swarm(&fake, None).await;
        fake.state
            .lock()
            .unwrap()
            .taken
            .push("bot-1-0.life2".into());
        let config = BotConfig {
            start_over: true,
            ..config(0)
        };
        let mut bot = Bot::new(fake.clone(), shared.clone(), config);
        bot.turn().await;
        {
            let mut s = fake.state.lock().unwrap();
            let fp = s.players.get_mut("t-bot-1-0").unwrap();
            (fp.p.fuel, fp.p.credits) = (0, 0);
        }
        bot.turn().await;
        assert_eq!(shared.stats.started_over.load(Ordering::Relaxed), 1);
        assert_eq!(bot.name(), "bot-1-0.life2");
        bot.turn().await; // the second life's name is taken: the next try
        bot.turn().await;
        assert_eq!(bot.name(), "bot-1-0.life2.2");
        let s = shared.stats.summary(1, 0, 1, "fake");
        assert_eq!(s.joined, 2, "the broke pilot and the new one");
        assert_eq!(
            s.errors_by_code.get(STRANDED),
            None,
            "{:?}",
            s.errors_by_code
        );
        let fake_state = fake.state.lock().unwrap();
        let old = &fake_state.players["t-bot-1-0"].p;
        assert_eq!(
            (old.fuel, old.credits),
            (0, 0),
            "the broke pilot stays as it was"
        );
        assert_eq!(fake_state.players["t-bot-1-0.life2.2"].p.credits, 1000);
        assert!(
            s.human().contains("1 broke bots started over"),
            "{}",
            s.human()
        );
    }

    #[test]
    fn purchases_fit_the_hold_and_the_purse() {
        let mut p = PlayerView {
            credits: 1100,
            hold: Some(60),
            ..PlayerView::default()
        };
        assert_eq!(purchase_qty(&p, "food", 1000, 10), 60, "the hold");
        assert_eq!(
            purchase_qty(&p, "ore", 1000, 10),
            30,
            "ore takes 2 hold units"
        );
        assert_eq!(purchase_qty(&p, "food", 7, 10), 7, "the stock");
        assert_eq!(
            purchase_qty(&p, "food", 1000, 100),
            8,
            "the purse, less the reserve and the price margin"
        );
        p.cargo.insert("food".into(), 50);
        assert_eq!(purchase_qty(&p, "food", 1000, 10), 10);
        p.credits = 50;
        assert_eq!(purchase_qty(&p, "food", 1000, 10), 0);
    }
}
