//! How the game's events and jumps are written as log records, and read back.
//!
//! Systems are named by slug (`alpha-centauri`), an instance other than a system's primary by
//! `<slug>.<n>` (`sol.2`), a jump by `xfer=<origin slug>:<number>` (`sol:7`, `sol.2:7`), the
//! same in every log, so `grep -r 'xfer=sol:7' mltrader-data/` shows one jump's whole life.
//! Every record about a player carries `v=`, the player's version after the event.
//! `docs/FORMAT.md` lists every kind with an example.
//!
//! Owns the mapping only; never writes a file and never decides anything.

use sim::apply_error::RestoreError;
use sim::combat::{LootTake, Wreck, Wrecks};
use sim::economy::EconomyModel;
use sim::galaxy::{Galaxy, SystemId};
use sim::goods::{
    parse_units, units_text, Cargo, CargoParseError, Good, UnitsParseError, UnknownGood,
};
use sim::ids::{EscrowId, Tick, Version, Xfer};
use sim::instance::{InstanceId, PRIMARY_INSTANCE};
use sim::market::{Market, Order, Side, TickReport, Trade};
use sim::player::Player;
use sim::shock::{Shock, ShockKind, MAX_SHOCKS_PER_SYSTEM};
use sim::system::{Departing, Escrow, Event, RemoteOutcome, SystemState};
use store::record::{Line, Record, RecordError};
use store::seq::Seq;
use store::snapshot::SnapshotWriter;

/// Why a record does not read back as an event, a jump or a part of a snapshot. Each names
/// the field, the value and, where it helps, the record's kind; the caller adds the file and
/// the line. Messages are one line for operators, so each includes its cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A field missing, or not a number where one is expected.
    #[error("{kind}: {why}")]
    Field { kind: String, why: RecordError },
    #[error("side={value} is neither buy nor sell")]
    BadSide { value: String },
    #[error(transparent)]
    UnknownGood(#[from] UnknownGood),
    #[error("{key}={text}: {why}")]
    BadCargo {
        key: &'static str,
        text: String,
        why: CargoParseError,
    },
    #[error("{key}={text}: {why}")]
    BadUnits {
        key: &'static str,
        text: String,
        why: UnitsParseError,
    },
    #[error("bad transfer id {text:?}")]
    BadTransferId { text: String },
    #[error("transfer {text:?} names an unknown system")]
    TransferOfUnknownSystem { text: String },
    #[error("bad transfer number in {text:?}")]
    BadTransferNumber { text: String },
    #[error("{key}={slug} is not a system of this galaxy")]
    UnknownSystem { key: &'static str, slug: String },
    #[error("{key}={slug} is not a system (or instance) of this galaxy")]
    UnknownInstance { key: &'static str, slug: String },
    /// A transfer, an escrow or an instance of another system in a system's log.
    #[error("{what} of {of} in the log of {log}")]
    NotOfThisLog {
        what: &'static str,
        of: String,
        log: String,
    },
    #[error("unknown record kind {kind:?} in a system log")]
    UnknownEventKind { kind: String },
    #[error("model={model}: no such economy model (1 or 2); a newer mltrader wrote this log")]
    UnknownEconomyModel { model: u64 },
    #[error("kind={kind}: no such market shock (shortage, boom, glut, mining_strike, blockade)")]
    UnknownShock { kind: String },
    #[error("unknown record kind {kind:?} in the transition log")]
    NotAJump { kind: String },
    #[error("from= and xfer= disagree")]
    JumpOriginDisagrees,
    /// A snapshot record about another system or instance than the one restored.
    #[error("{what}")]
    NotOfThisSnapshot { what: &'static str },
    #[error("unknown snapshot record {kind:?}")]
    UnknownSnapshotKind { kind: String },
    /// A snapshot's market or wrecks outside what a state can be (the rules' own check).
    #[error("{why}")]
    ImpossibleState { why: RestoreError },
}

/// A jump as the transition log holds it: with its origin's `depart`, the commit point; it
/// carries the player's whole state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jump {
    pub from: InstanceId,
    pub xfer: Xfer,
    pub to: InstanceId,
    /// Tick of the system of origin when the jump was prepared.
    pub t: Tick,
    /// Travel time in ticks of the destination's clock.
    pub travel_ticks: u64,
    /// The player as they left: fuel already burnt, version of the departure.
    pub player: Player,
    /// Sequence number of the `jump` record in the transition log (0 before it is appended).
    /// Not a field of the record: it is the record's own number.
    pub tseq: Seq,
}

/// The kind (second word of the line) of each event.
pub fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::Join { .. } => "join",
        Event::Refuel { .. } => "refuel",
        Event::Repair { .. } => "repair",
        Event::Depart { .. } => "depart",
        Event::DepartDone { .. } => "depart.done",
        Event::DepartAbort { .. } => "depart.abort",
        Event::DepartVoid { .. } => "depart.void",
        Event::Arrive { .. } => "arrive",
        Event::Trade { .. } => "trade",
        Event::Economy { .. } => "economy",
        Event::Shock { .. } => "shock",
        Event::Engage { .. } => "engage",
        Event::Combat { .. } => "combat",
        Event::Destroyed { .. } => "destroyed",
        Event::Loot { .. } => "loot",
        Event::Split { .. } => "split",
        Event::Retire { .. } => "retire",
        Event::Escrow { .. } => "trade.escrow",
        Event::EscrowSettle { .. } => "trade.settle",
        Event::EscrowRefund { .. } => "trade.refund",
        Event::RemoteTrade { .. } => "trade.remote",
        Event::RemoteTradeDone { .. } => "trade.done",
    }
}

/// Writes an order's fields: side, good, qty, and limit (per unit) if any.
fn put_order(line: &mut Line<'_>, o: &Order) {
    line.field("side", o.side.name())
        .field("good", o.good.name())
        .num("qty", o.qty);
    if let Some(limit) = o.price_limit_cr {
        line.num("limit", limit);
    }
}

/// The value of field `key`, which must be there.
fn str_field<'r>(rec: &'r Record<'_>, key: &'static str) -> Result<&'r str, DecodeError> {
    rec.str(key).map_err(|why| DecodeError::Field {
        kind: rec.kind.to_string(),
        why,
    })
}

fn side_field(rec: &Record<'_>) -> Result<Side, DecodeError> {
    match str_field(rec, "side")? {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(DecodeError::BadSide {
            value: other.to_string(),
        }),
    }
}

fn good_field(rec: &Record<'_>) -> Result<Good, DecodeError> {
    Ok(Good::parse(str_field(rec, "good")?)?)
}

fn get_order(rec: &Record<'_>) -> Result<Order, DecodeError> {
    Ok(Order {
        side: side_field(rec)?,
        good: good_field(rec)?,
        qty: num(rec, "qty")?,
        price_limit_cr: opt_num(rec, "limit")?,
    })
}

fn get_trade(rec: &Record<'_>) -> Result<Trade, DecodeError> {
    Ok(Trade {
        side: side_field(rec)?,
        good: good_field(rec)?,
        qty: num(rec, "qty")?,
        total_cr: num(rec, "total")?,
        // Absent before the trade fee (issue 22), in `trade.remote` before fees through an
        // escrow, and on trades too small to bear one: none was paid.
        fee_cr: match rec.get("fee") {
            Some(_) => num(rec, "fee")?,
            None => 0,
        },
    })
}

fn put_player(line: &mut Line<'_>, p: &Player) {
    line.field("player", &p.name)
        .num("credits", p.credits)
        .num("fuel", p.fuel)
        .num("tank", p.fuel_capacity)
        .num("hull", p.hull)
        .num("hold", p.hold)
        .field("cargo", &p.cargo.to_string())
        .num("v", p.version);
}

fn cargo_field(rec: &Record<'_>, key: &'static str) -> Result<Cargo, DecodeError> {
    let text = str_field(rec, key)?;
    text.parse().map_err(|why| DecodeError::BadCargo {
        key,
        text: text.to_string(),
        why,
    })
}

fn units_field(rec: &Record<'_>, key: &'static str) -> Result<[u64; 8], DecodeError> {
    let text = str_field(rec, key)?;
    parse_units(text).map_err(|why| DecodeError::BadUnits {
        key,
        text: text.to_string(),
        why,
    })
}

fn name_field(rec: &Record<'_>, key: &'static str) -> Result<String, DecodeError> {
    Ok(str_field(rec, key)?.to_string())
}

/// An optional numeric field: absent is `None`, present but malformed is an error.
fn opt_num<T: std::str::FromStr>(
    rec: &Record<'_>,
    key: &'static str,
) -> Result<Option<T>, DecodeError> {
    match rec.get(key) {
        None => Ok(None),
        Some(_) => num(rec, key).map(Some),
    }
}

fn get_player(rec: &Record<'_>) -> Result<Player, DecodeError> {
    Ok(Player {
        name: name_field(rec, "player")?,
        credits: num(rec, "credits")?,
        fuel: num(rec, "fuel")?,
        fuel_capacity: num(rec, "tank")?,
        hull: num(rec, "hull")?,
        hold: num(rec, "hold")?,
        cargo: cargo_field(rec, "cargo")?,
        version: Version(num(rec, "v")?),
    })
}

/// A transfer id: `sol:7`, `sol.2:7`.
pub fn xfer_text(galaxy: &Galaxy, from: InstanceId, n: Xfer) -> String {
    format!("{}:{n}", from.slug(galaxy))
}

/// An escrow id, written like a transfer id: `sol.2:3`.
pub fn escrow_text(galaxy: &Galaxy, at: InstanceId, n: EscrowId) -> String {
    format!("{}:{n}", at.slug(galaxy))
}

/// Parses `sol:7` (or `sol.2:7`) into its origin and number (a transfer's or an escrow's).
pub fn parse_xfer(galaxy: &Galaxy, text: &str) -> Result<(InstanceId, u64), DecodeError> {
    let text_owned = || text.to_string();
    let (slug, n) = text
        .rsplit_once(':')
        .ok_or_else(|| DecodeError::BadTransferId { text: text_owned() })?;
    let from = InstanceId::parse(galaxy, slug)
        .ok_or_else(|| DecodeError::TransferOfUnknownSystem { text: text_owned() })?;
    // Digits only: `sol:+7` would name jump sol:7 where a grep for `xfer=sol:7` misses it.
    let n = Some(n)
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| DecodeError::BadTransferNumber { text: text_owned() })?;
    Ok((from, n))
}

/// A field holding a transfer id (`xfer=sol:7`) or an escrow id (`escrow=sol.2:3`).
fn xfer_field(
    galaxy: &Galaxy,
    rec: &Record<'_>,
    key: &'static str,
) -> Result<(InstanceId, u64), DecodeError> {
    parse_xfer(galaxy, str_field(rec, key)?)
}

fn system_field(
    galaxy: &Galaxy,
    rec: &Record<'_>,
    key: &'static str,
) -> Result<SystemId, DecodeError> {
    let slug = str_field(rec, key)?;
    galaxy
        .by_slug(slug)
        .ok_or_else(|| DecodeError::UnknownSystem {
            key,
            slug: slug.to_string(),
        })
}

/// A field naming a system's instance by its slug (`sol`, `sol.2`).
fn instance_field(
    galaxy: &Galaxy,
    rec: &Record<'_>,
    key: &'static str,
) -> Result<InstanceId, DecodeError> {
    let slug = str_field(rec, key)?;
    InstanceId::parse(galaxy, slug).ok_or_else(|| DecodeError::UnknownInstance {
        key,
        slug: slug.to_string(),
    })
}

fn num<T: std::str::FromStr>(rec: &Record<'_>, key: &'static str) -> Result<T, DecodeError> {
    rec.num(key).map_err(|why| DecodeError::Field {
        kind: rec.kind.to_string(),
        why,
    })
}

/// Writes `event`, which happened in instance `system` at tick `t`, as the fields of a record
/// of kind [`event_kind`]. `version` is the player's version after the event, for events that
/// carry a player by name only.
pub fn encode_event(
    line: &mut Line<'_>,
    galaxy: &Galaxy,
    system: InstanceId,
    t: Tick,
    event: &Event,
    version: Version,
) {
    line.num("t", t);
    let at = LogOf { galaxy, system };
    match event {
        Event::Join { player, key } => {
            put_player(line, player);
            line.field("key", key);
        }
        Event::Refuel {
            player,
            units,
            cost,
        } => {
            line.field("player", player)
                .num("units", units)
                .num("cost", cost)
                .num("v", version);
        }
        Event::Repair {
            player,
            points,
            cost,
        } => {
            line.field("player", player)
                .num("points", points)
                .num("cost", cost)
                .num("v", version);
        }
        Event::Depart { .. }
        | Event::DepartDone { .. }
        | Event::DepartVoid { .. }
        | Event::DepartAbort { .. }
        | Event::Arrive { .. } => encode_transfer(line, &at, event, version),
        Event::Trade { player, trade } => {
            line.field("player", player);
            put_trade(line, trade);
            line.num("v", version);
        }
        Event::Economy {
            from,
            to,
            model,
            report,
            decayed,
        } => encode_economy(line, (*from, *to), *model, report, decayed),
        Event::Shock { shock } => put_shock(line, shock),
        Event::Engage { .. }
        | Event::Combat { .. }
        | Event::Destroyed { .. }
        | Event::Loot { .. } => encode_combat(line, &at, event, version),
        Event::Split { instance } | Event::Retire { instance } => {
            line.field(
                "instance",
                &InstanceId::new(system.system, *instance).slug(galaxy),
            );
        }
        Event::Escrow { .. }
        | Event::EscrowSettle { .. }
        | Event::EscrowRefund { .. }
        | Event::RemoteTrade { .. }
        | Event::RemoteTradeDone { .. } => encode_escrow(line, &at, event, version),
    }
}

/// A trade's fields: side, good, qty, and the total in credits.
fn put_trade(line: &mut Line<'_>, trade: &Trade) {
    line.field("side", trade.side.name())
        .field("good", trade.good.name())
        .num("qty", trade.qty)
        .num("total", trade.total_cr);
    // Written only when paid, so a trade without a fee is the same bytes as before it.
    if trade.fee_cr > 0 {
        line.num("fee", trade.fee_cr);
    }
}

/// The fields of a jump's or a move's events: `depart` (with its `.done`, `.void` and
/// `.abort`) in the log of origin, `arrive` in the destination's.
fn encode_transfer(line: &mut Line<'_>, at: &LogOf<'_>, event: &Event, version: Version) {
    let xfer = |n: Xfer| xfer_text(at.galaxy, at.system, n);
    match event {
        Event::Depart {
            xfer: n,
            player,
            to,
            fuel,
        } => {
            line.field("xfer", &xfer(*n))
                .field("player", player)
                .field("to", &to.slug(at.galaxy))
                .num("fuel", fuel)
                .num("v", version);
        }
        Event::DepartDone { xfer: n } | Event::DepartVoid { xfer: n } => {
            line.field("xfer", &xfer(*n));
        }
        Event::DepartAbort { xfer: n, player } => {
            line.field("xfer", &xfer(*n))
                .field("player", player)
                .num("v", version);
        }
        Event::Arrive { from, xfer, player } => {
            line.field("xfer", &xfer_text(at.galaxy, *from, *xfer));
            put_player(line, player);
        }
        other => unreachable!("{} is not a transfer's event", event_kind(other)),
    }
}

/// The fields of `economy`: the market's step over ticks `from..to`, the wrecks' decay.
fn encode_economy(
    line: &mut Line<'_>,
    (from, to): (Tick, Tick),
    model: EconomyModel,
    report: &TickReport,
    decayed: &[u64; 8],
) {
    line.num("from", from).num("to", to);
    // The steady model's records are as they always were: no `model=`.
    if model != EconomyModel::Steady {
        line.num("model", model.number());
    }
    line.field("made", &units_text(&report.produced))
        .field("used", &units_text(&report.consumed))
        .num("subsidy", report.subsidy_cr)
        .num("tax", report.tax_cr)
        .field("decayed", &units_text(decayed));
}

/// A shock's fields, in its log record and in a snapshot: `kind`, `good` (absent: every good
/// the system makes) and `until`.
fn put_shock(line: &mut Line<'_>, shock: &Shock) {
    line.field("kind", shock.kind.name());
    if let Some(good) = shock.good {
        line.field("good", good.name());
    }
    line.num("until", shock.until);
}

/// A shock from its fields ([`put_shock`]).
fn get_shock(rec: &Record<'_>) -> Result<Shock, DecodeError> {
    let kind_name: String = name_field(rec, "kind")?;
    let kind = ShockKind::parse(&kind_name).ok_or(DecodeError::UnknownShock { kind: kind_name })?;
    let good = match rec.get("good") {
        Some(_) => Some(Good::parse(&name_field(rec, "good")?)?),
        None => None,
    };
    Ok(Shock {
        kind,
        good,
        until: num(rec, "until")?,
    })
}

/// The fields of combat's events: `engage`, `combat`, `destroyed` and `loot`.
fn encode_combat(line: &mut Line<'_>, at: &LogOf<'_>, event: &Event, version: Version) {
    match event {
        Event::Engage { player, target } => {
            line.field("player", player);
            if let Some(target) = target {
                line.field("target", target);
            }
            line.num("v", version);
        }
        Event::Combat {
            shots,
            hits,
            damage,
            downed,
        } => {
            line.num("shots", shots)
                .num("hits", hits)
                .num("damage", damage)
                .num("downed", downed);
        }
        Event::Destroyed {
            player,
            by,
            wreck,
            jump_home,
            evicted,
        } => {
            line.field("player", player).field("by", by);
            if let Some(w) = wreck {
                line.num("wreck", w);
            }
            if let Some((xfer, home)) = jump_home {
                line.field("xfer", &xfer_text(at.galaxy, at.system, *xfer))
                    .field("to", at.galaxy.slug(*home));
            }
            if !evicted.is_empty() {
                line.field("evicted", &evicted.to_string());
            }
            line.num("v", version);
        }
        Event::Loot { player, take } => {
            line.field("player", player)
                .num("wreck", take.wreck_id)
                .field("took", &take.taken.to_string())
                .num("v", version);
        }
        other => unreachable!("{} is not a combat event", event_kind(other)),
    }
}

/// The fields of an instance's trades through its primary's market: `trade.escrow`,
/// `.settle` and `.refund` in the instance's log, `trade.remote` and `.done` in the
/// primary's (whose escrow ids name the instance).
fn encode_escrow(line: &mut Line<'_>, at: &LogOf<'_>, event: &Event, version: Version) {
    let escrow_of = |instance: u16, n: EscrowId| {
        let of = InstanceId::new(at.system.system, instance);
        escrow_text(at.galaxy, of, n)
    };
    let own = |n: EscrowId| escrow_text(at.galaxy, at.system, n);
    match event {
        Event::Escrow {
            escrow,
            player,
            order,
            held_cr,
            held_qty,
        } => {
            line.field("escrow", &own(*escrow)).field("player", player);
            put_order(line, order);
            line.num("held_cr", held_cr)
                .num("held_qty", held_qty)
                .num("v", version);
        }
        Event::EscrowSettle {
            escrow,
            player,
            total_cr,
            fee_cr,
        } => {
            line.field("escrow", &own(*escrow))
                .field("player", player)
                .num("total", total_cr);
            // Written only when paid, so a settle without a fee is the same bytes as before
            // fees through an escrow.
            if *fee_cr > 0 {
                line.num("fee", fee_cr);
            }
            line.num("v", version);
        }
        Event::EscrowRefund { escrow, player } => {
            line.field("escrow", &own(*escrow))
                .field("player", player)
                .num("v", version);
        }
        Event::RemoteTrade {
            instance,
            escrow,
            player,
            trade,
        } => {
            line.field("escrow", &escrow_of(*instance, *escrow))
                .field("player", player);
            put_trade(line, trade);
        }
        Event::RemoteTradeDone { instance, escrow } => {
            line.field("escrow", &escrow_of(*instance, *escrow));
        }
        other => unreachable!("{} is not an escrow's event", event_kind(other)),
    }
}

/// The line of a player's log (`players/<name>.log`) for `event`, recorded as record `seq` of
/// `system`'s log: numbered by the player's `version`, fields as in the system log, then
/// `src=<slug>:<seq>`.
pub fn player_line(
    galaxy: &Galaxy,
    system: InstanceId,
    t: Tick,
    event: &Event,
    version: Version,
    seq: Seq,
) -> String {
    PlayerLine::encode(galaxy, system, t, event, version).finish(galaxy, system, seq)
}

/// A player-log line built with its system-log record, so that the event is encoded once:
/// the record takes [`PlayerLine::fields`], then the line gets the record's place (`src=`).
pub struct PlayerLine {
    buf: String,
    /// Where the fields start (after `version kind`) and end (before `src=`).
    fields: std::ops::Range<usize>,
}

impl PlayerLine {
    pub fn encode(
        galaxy: &Galaxy,
        system: InstanceId,
        t: Tick,
        event: &Event,
        version: Version,
    ) -> PlayerLine {
        let mut buf = String::with_capacity(192);
        store::record::LineBuilder::start(&mut buf, version.0, event_kind(event));
        let head = buf.len();
        encode_event(
            &mut Line::resume(&mut buf, 0),
            galaxy,
            system,
            t,
            event,
            version,
        );
        let end = buf.len();
        PlayerLine {
            buf,
            fields: head..end,
        }
    }

    /// The event's fields, as the system-log record writes them.
    pub fn fields(&self) -> &str {
        &self.buf[self.fields.clone()]
    }

    /// The whole line, once the record is number `seq` of `system`'s log.
    pub fn finish(mut self, galaxy: &Galaxy, system: InstanceId, seq: Seq) -> String {
        let mut line = Line::resume(&mut self.buf, 0);
        line.field("src", &format!("{}:{seq}", system.slug(galaxy)));
        line.finish();
        self.buf
    }
}

/// Reads an event of the log of instance `system` back: its tick and the event. One function
/// reads each kind that has more than a field or two.
pub fn decode_event(
    galaxy: &Galaxy,
    system: InstanceId,
    rec: &Record<'_>,
) -> Result<(Tick, Event), DecodeError> {
    let t = Tick(num(rec, "t")?);
    let here = LogOf { galaxy, system };
    let event = match rec.kind {
        "join" => Event::Join {
            player: get_player(rec)?,
            key: name_field(rec, "key")?,
        },
        "refuel" => Event::Refuel {
            player: name_field(rec, "player")?,
            units: num(rec, "units")?,
            cost: num(rec, "cost")?,
        },
        "repair" => Event::Repair {
            player: name_field(rec, "player")?,
            points: num(rec, "points")?,
            cost: num(rec, "cost")?,
        },
        "depart" => decode_depart(&here, rec)?,
        "depart.done" => Event::DepartDone {
            xfer: Xfer(here.local(rec, "xfer")?),
        },
        "depart.void" => Event::DepartVoid {
            xfer: Xfer(here.local(rec, "xfer")?),
        },
        "depart.abort" => Event::DepartAbort {
            xfer: Xfer(here.local(rec, "xfer")?),
            player: name_field(rec, "player")?,
        },
        "arrive" => decode_arrive(galaxy, rec)?,
        "trade" => Event::Trade {
            player: name_field(rec, "player")?,
            trade: get_trade(rec)?,
        },
        "trade.escrow" => decode_escrow(&here, rec)?,
        "trade.settle" => Event::EscrowSettle {
            escrow: EscrowId(here.local(rec, "escrow")?),
            player: name_field(rec, "player")?,
            total_cr: num(rec, "total")?,
            // Absent before fees through an escrow: none was paid.
            fee_cr: opt_num(rec, "fee")?.unwrap_or(0),
        },
        "trade.refund" => Event::EscrowRefund {
            escrow: EscrowId(here.local(rec, "escrow")?),
            player: name_field(rec, "player")?,
        },
        "trade.remote" | "trade.done" => decode_remote_trade(&here, rec)?,
        "economy" => decode_economy(rec)?,
        "shock" => Event::Shock {
            shock: get_shock(rec)?,
        },
        "engage" => Event::Engage {
            player: name_field(rec, "player")?,
            target: rec
                .get("target")
                .map(|_| name_field(rec, "target"))
                .transpose()?,
        },
        "combat" => Event::Combat {
            shots: num(rec, "shots")?,
            hits: num(rec, "hits")?,
            damage: num(rec, "damage")?,
            downed: num(rec, "downed")?,
        },
        "destroyed" => decode_destroyed(&here, rec)?,
        "loot" => Event::Loot {
            player: name_field(rec, "player")?,
            take: LootTake {
                wreck_id: num(rec, "wreck")?,
                taken: cargo_field(rec, "took")?,
            },
        },
        "split" | "retire" => decode_split_or_retire(&here, rec)?,
        other => {
            return Err(DecodeError::UnknownEventKind {
                kind: other.to_string(),
            })
        }
    };
    Ok((t, event))
}

/// The log a record is read from: the instance whose log it is, in its galaxy.
struct LogOf<'g> {
    galaxy: &'g Galaxy,
    system: InstanceId,
}

impl LogOf<'_> {
    /// The number of a transfer (`key` = `xfer`) or an escrow (`escrow`) that must be this
    /// log's own.
    fn local(&self, rec: &Record<'_>, key: &'static str) -> Result<u64, DecodeError> {
        let (from, n) = xfer_field(self.galaxy, rec, key)?;
        if from != self.system {
            let what = if key == "xfer" { "transfer" } else { key };
            return Err(self.not_ours(what, from));
        }
        Ok(n)
    }

    /// A `what` of instance `of` found in this log.
    fn not_ours(&self, what: &'static str, of: InstanceId) -> DecodeError {
        DecodeError::NotOfThisLog {
            what,
            of: of.slug(self.galaxy),
            log: self.system.slug(self.galaxy),
        }
    }
}

/// `depart`: a player leaves on one of this log's transfers.
fn decode_depart(here: &LogOf<'_>, rec: &Record<'_>) -> Result<Event, DecodeError> {
    Ok(Event::Depart {
        xfer: Xfer(here.local(rec, "xfer")?),
        player: name_field(rec, "player")?,
        to: instance_field(here.galaxy, rec, "to")?,
        fuel: num(rec, "fuel")?,
    })
}

/// `arrive`: a player lands from another log's transfer, with their whole state.
fn decode_arrive(galaxy: &Galaxy, rec: &Record<'_>) -> Result<Event, DecodeError> {
    let (from, xfer) = xfer_field(galaxy, rec, "xfer")?;
    Ok(Event::Arrive {
        from,
        xfer: Xfer(xfer),
        player: get_player(rec)?,
    })
}

/// `trade.escrow`: an instance holds a player's credits or goods for a trade at the primary.
fn decode_escrow(here: &LogOf<'_>, rec: &Record<'_>) -> Result<Event, DecodeError> {
    Ok(Event::Escrow {
        escrow: EscrowId(here.local(rec, "escrow")?),
        player: name_field(rec, "player")?,
        order: get_order(rec)?,
        held_cr: num(rec, "held_cr")?,
        held_qty: num(rec, "held_qty")?,
    })
}

/// `trade.remote` and `trade.done`, in a primary's log: an escrow of one of its instances,
/// traded at its market, then known settled.
fn decode_remote_trade(here: &LogOf<'_>, rec: &Record<'_>) -> Result<Event, DecodeError> {
    let (at, escrow) = xfer_field(here.galaxy, rec, "escrow")?;
    let escrow = EscrowId(escrow);
    if at.system != here.system.system || at.is_primary() || !here.system.is_primary() {
        return Err(here.not_ours("escrow", at));
    }
    Ok(match rec.kind {
        "trade.remote" => Event::RemoteTrade {
            instance: at.n,
            escrow,
            player: name_field(rec, "player")?,
            trade: get_trade(rec)?,
        },
        _ => Event::RemoteTradeDone {
            instance: at.n,
            escrow,
        },
    })
}

/// `economy`: the market's step over ticks `from..to` and the wrecks' decay.
fn decode_economy(rec: &Record<'_>) -> Result<Event, DecodeError> {
    let model = match opt_num(rec, "model")? {
        None => EconomyModel::Steady,
        Some(n) => {
            EconomyModel::from_number(n).ok_or(DecodeError::UnknownEconomyModel { model: n })?
        }
    };
    Ok(Event::Economy {
        from: Tick(num(rec, "from")?),
        to: Tick(num(rec, "to")?),
        model,
        report: TickReport {
            produced: units_field(rec, "made")?,
            consumed: units_field(rec, "used")?,
            subsidy_cr: num(rec, "subsidy")?,
            tax_cr: num(rec, "tax")?,
        },
        decayed: units_field(rec, "decayed")?,
    })
}

/// `destroyed`: a ship shot down, its wreck, and the jump home if it respawns there.
fn decode_destroyed(here: &LogOf<'_>, rec: &Record<'_>) -> Result<Event, DecodeError> {
    Ok(Event::Destroyed {
        player: name_field(rec, "player")?,
        by: name_field(rec, "by")?,
        wreck: opt_num(rec, "wreck")?,
        jump_home: match rec.get("xfer") {
            None => None,
            Some(_) => Some((
                Xfer(here.local(rec, "xfer")?),
                system_field(here.galaxy, rec, "to")?,
            )),
        },
        evicted: match rec.get("evicted") {
            None => Cargo::new(),
            Some(_) => cargo_field(rec, "evicted")?,
        },
    })
}

/// `split` and `retire`: an instance of this log's system opens or closes.
fn decode_split_or_retire(here: &LogOf<'_>, rec: &Record<'_>) -> Result<Event, DecodeError> {
    let at = instance_field(here.galaxy, rec, "instance")?;
    if at.system != here.system.system || at.is_primary() {
        return Err(here.not_ours("instance", at));
    }
    Ok(match rec.kind {
        "split" => Event::Split { instance: at.n },
        _ => Event::Retire { instance: at.n },
    })
}

/// Writes a jump record of the transition log.
pub fn encode_jump(line: &mut Line<'_>, galaxy: &Galaxy, jump: &Jump) {
    line.field("xfer", &xfer_text(galaxy, jump.from, jump.xfer))
        .field("from", &jump.from.slug(galaxy))
        .field("to", &jump.to.slug(galaxy))
        .num("t", jump.t)
        .num("travel", jump.travel_ticks);
    put_player(line, &jump.player);
}

/// Reads a jump record of the transition log.
pub fn decode_jump(galaxy: &Galaxy, rec: &Record<'_>) -> Result<Jump, DecodeError> {
    if rec.kind != "jump" {
        return Err(DecodeError::NotAJump {
            kind: rec.kind.to_string(),
        });
    }
    let (from, xfer) = xfer_field(galaxy, rec, "xfer")?;
    if instance_field(galaxy, rec, "from")? != from {
        return Err(DecodeError::JumpOriginDisagrees);
    }
    Ok(Jump {
        from,
        xfer: Xfer(xfer),
        to: instance_field(galaxy, rec, "to")?,
        t: Tick(num(rec, "t")?),
        travel_ticks: num(rec, "travel")?,
        player: get_player(rec)?,
        tseq: Seq(rec.seq),
    })
}

/// Writes a system's state as the body of a snapshot.
pub fn encode_state(w: &mut SnapshotWriter, galaxy: &Galaxy, state: &SystemState) {
    w.record("state", |l| {
        l.field("system", galaxy.slug(state.id));
        if !state.is_primary() {
            l.num("instance", state.instance);
        }
        if state.next_escrow != EscrowId(1) {
            l.num("next_escrow", state.next_escrow);
        }
        l.num("t", state.tick)
            .num("next_xfer", state.next_xfer)
            .num("market_tick", state.market_tick)
            .field("stock", &units_text(&state.market.stocks()))
            .num("till", state.market.till_cr());
        if let Some(b) = state.market.budget_cr() {
            l.num("budget", b);
        }
        l.num("next_wreck", state.wrecks.next_id());
    });
    for n in &state.instances {
        w.record("instance", |l| {
            l.field("open", &InstanceId::new(state.id, *n).slug(galaxy));
        });
    }
    for (id, e) in &state.escrows {
        w.record("escrow", |l| {
            l.field("escrow", &escrow_text(galaxy, state.instance_id(), *id))
                .field("player", &e.player);
            put_order(l, &e.order);
            l.num("held_cr", e.held_cr).num("held_qty", e.held_qty);
        });
    }
    for ((n, id), o) in &state.remote_trades {
        w.record("remote", |l| {
            l.field(
                "escrow",
                &escrow_text(galaxy, InstanceId::new(state.id, *n), *id),
            )
            .field("player", &o.player);
            // With `fee=` when the trade paid one, as in `trade.remote`.
            put_trade(l, &o.trade);
        });
    }
    for (id, wreck) in state.wrecks.iter() {
        w.record("wreck", |l| {
            l.num("id", id)
                .field("pilot", &wreck.pilot)
                .num("t", wreck.tick)
                .field("cargo", &wreck.cargo.to_string());
        });
    }
    for shock in &state.shocks {
        w.record("shock", |l| put_shock(l, shock));
    }
    for (attacker, target) in &state.engaged {
        w.record("engaged", |l| {
            l.field("player", attacker).field("target", target);
        });
    }
    for (pilot, by) in &state.downed {
        w.record("downed", |l| {
            l.field("player", pilot).field("by", by);
        });
    }
    for (from, upto) in &state.landed_upto {
        w.record("landed", |l| {
            l.field("from", &from.slug(galaxy)).num("upto", upto);
        });
    }
    for p in state.players.values() {
        w.record("player", |l| put_player(l, p));
    }
    for xfer in &state.voided {
        w.record("voided", |l| {
            l.field("xfer", &xfer_text(galaxy, state.instance_id(), *xfer));
        });
    }
    for (xfer, d) in &state.departing {
        w.record("departing", |l| {
            l.field("xfer", &xfer_text(galaxy, state.instance_id(), *xfer))
                .field("to", &d.to.slug(galaxy))
                .num("burnt", d.fuel);
            put_player(l, &d.player);
        });
    }
    for (name, key) in &state.names {
        w.record("name", |l| {
            l.field("player", name).field("key", key);
        });
    }
}

/// The kind of a snapshot body record that says where a destination unit read one pair
/// subject to: `pair.read from=<origin slug> upto=<stream sequence>` (issue 19: a takeover
/// reads each pair subject after it, not from its start). Only a spread node's primaries
/// write them; a snapshot without them is read from the start.
pub const PAIR_READ_KIND: &str = "pair.read";

/// Writes the pair subjects' read positions of a snapshot (by origin system), after its state.
pub fn encode_pair_reads(
    w: &mut SnapshotWriter,
    galaxy: &Galaxy,
    positions: &std::collections::BTreeMap<SystemId, crate::protocol::handover::PairSeq>,
) {
    for (&from, at) in positions {
        w.record(PAIR_READ_KIND, |l| {
            l.field("from", galaxy.slug(from)).num("upto", at.0);
        });
    }
}

/// The origin system and position of a `pair.read` record.
pub fn decode_pair_read(
    galaxy: &Galaxy,
    rec: &Record<'_>,
) -> Result<(SystemId, crate::protocol::handover::PairSeq), DecodeError> {
    let from = system_field(galaxy, rec, "from")?;
    Ok((from, crate::protocol::handover::PairSeq(num(rec, "upto")?)))
}

/// Rebuilds a system's state from snapshot body records, one at a time.
pub fn decode_state_record(
    galaxy: &Galaxy,
    state: &mut SystemState,
    rec: &Record<'_>,
) -> Result<(), DecodeError> {
    let not_ours = |what| DecodeError::NotOfThisSnapshot { what };
    let impossible = |why| DecodeError::ImpossibleState { why };
    match rec.kind {
        "state" => {
            let instance = opt_num(rec, "instance")?.unwrap_or(PRIMARY_INSTANCE);
            if system_field(galaxy, rec, "system")? != state.id || instance != state.instance {
                return Err(not_ours("snapshot of another system or instance"));
            }
            state.tick = Tick(num(rec, "t")?);
            state.next_xfer = Xfer(num(rec, "next_xfer")?);
            state.next_escrow = EscrowId(opt_num(rec, "next_escrow")?.unwrap_or(1));
            state.market_tick = Tick(num(rec, "market_tick")?);
            let budget = opt_num(rec, "budget")?;
            state.market = Market::from_parts(units_field(rec, "stock")?, num(rec, "till")?)
                .and_then(|m| m.with_budget(budget))
                .map_err(impossible)?;
            state.wrecks =
                Wrecks::from_parts(num(rec, "next_wreck")?, Vec::new()).map_err(impossible)?;
        }
        "wreck" => {
            let wreck = Wreck {
                pilot: name_field(rec, "pilot")?,
                tick: num(rec, "t")?,
                cargo: cargo_field(rec, "cargo")?,
            };
            state
                .wrecks
                .restore(num(rec, "id")?, wreck)
                .map_err(impossible)?;
        }
        "instance" => {
            let at = instance_field(galaxy, rec, "open")?;
            if at.system != state.id || at.is_primary() || !state.is_primary() {
                return Err(not_ours("an open instance of another system"));
            }
            state.instances.insert(at.n);
        }
        "escrow" => {
            let (at, id) = xfer_field(galaxy, rec, "escrow")?;
            if at != state.instance_id() {
                return Err(not_ours("an escrow of another instance"));
            }
            let e = Escrow {
                player: name_field(rec, "player")?,
                order: get_order(rec)?,
                held_cr: num(rec, "held_cr")?,
                held_qty: num(rec, "held_qty")?,
            };
            state.escrows.insert(EscrowId(id), e);
        }
        "remote" => {
            let (at, id) = xfer_field(galaxy, rec, "escrow")?;
            if at.system != state.id || at.is_primary() {
                return Err(not_ours("a trade of another system"));
            }
            let o = RemoteOutcome {
                player: name_field(rec, "player")?,
                trade: get_trade(rec)?,
            };
            state.remote_trades.insert((at.n, EscrowId(id)), o);
        }
        "shock" => {
            if !state.is_primary() || state.shocks.len() >= MAX_SHOCKS_PER_SYSTEM {
                return Err(impossible(RestoreError::TooManyShocks));
            }
            state.shocks.push(get_shock(rec)?);
        }
        "engaged" => {
            state
                .engaged
                .insert(name_field(rec, "player")?, name_field(rec, "target")?);
        }
        "downed" => {
            state
                .downed
                .insert(name_field(rec, "player")?, name_field(rec, "by")?);
        }
        "landed" => {
            state.landed_upto.insert(
                instance_field(galaxy, rec, "from")?,
                Xfer(num(rec, "upto")?),
            );
        }
        "player" => {
            let p = get_player(rec)?;
            state.players.insert(p.name.clone(), p);
        }
        "voided" => {
            let (from, xfer) = xfer_field(galaxy, rec, "xfer")?;
            if from != state.instance_id() {
                return Err(not_ours("void transfer of another system"));
            }
            state.voided.insert(Xfer(xfer));
        }
        "departing" => {
            let (from, xfer) = xfer_field(galaxy, rec, "xfer")?;
            if from != state.instance_id() {
                return Err(not_ours("departing transfer of another system"));
            }
            state.departing.insert(
                Xfer(xfer),
                Departing {
                    player: get_player(rec)?,
                    to: instance_field(galaxy, rec, "to")?,
                    fuel: num(rec, "burnt")?,
                },
            );
        }
        "name" => {
            state
                .names
                .insert(name_field(rec, "player")?, name_field(rec, "key")?);
        }
        // Where the unit's pair subjects were read to: not state (no part of the hash), read
        // by recovery with `decode_pair_read` (issue 19).
        PAIR_READ_KIND => {
            decode_pair_read(galaxy, rec)?;
        }
        other => {
            return Err(DecodeError::UnknownSnapshotKind {
                kind: other.to_string(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::record::{parse_line, Record, RecordError};
    use store::snapshot::SnapshotMeta;

    /// Found by fuzzing (event_codec): `xfer=sol:+7` named jump sol:7.
    #[test]
    fn a_transfer_number_is_digits_only() {
        let g = Galaxy::default_galaxy();
        let sol = InstanceId::primary(g.home());
        assert_eq!(parse_xfer(&g, "sol:7").unwrap(), (sol, 7));
        for bad in ["sol:+7", "sol:-7", "sol: 7", "sol:"] {
            assert!(
                matches!(
                    parse_xfer(&g, bad),
                    Err(DecodeError::BadTransferNumber { .. })
                ),
                "{bad} read as a transfer"
            );
        }
    }

    fn round_trip(galaxy: &Galaxy, system: SystemId, event: &Event) -> (Tick, Event) {
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, 1, event_kind(event));
        encode_event(
            &mut line,
            galaxy,
            InstanceId::primary(system),
            Tick(42),
            event,
            Version(3),
        );
        line.finish();
        let rec = parse_line(buf.as_bytes()).unwrap();
        decode_event(galaxy, InstanceId::primary(system), &rec).unwrap()
    }

    #[test]
    fn a_steady_economy_step_is_written_as_before_issue_22_and_a_living_one_says_so() {
        let g = Galaxy::default_galaxy();
        let at = InstanceId::primary(g.home());
        let text = |model| {
            let mut out = String::new();
            let mut line = Line::new(&mut out, 7, "economy");
            let e = Event::Economy {
                from: Tick(150),
                to: Tick(160),
                model,
                report: TickReport::default(),
                decayed: [0; 8],
            };
            encode_event(&mut line, &g, at, Tick(160), &e, Version(0));
            line.finish();
            out
        };
        let old = text(EconomyModel::Steady);
        assert!(
            old.starts_with("7 economy t=160 from=150 to=160 made=- used=- subsidy=0 tax=0"),
            "{old}"
        );
        assert!(text(EconomyModel::Living).contains(" model=2 "));
    }

    #[test]
    fn every_event_round_trips() {
        let g = Galaxy::default_galaxy();
        let sol = g.home();
        let ac = g.lookup("Alpha Centauri").unwrap();
        let mut p = Player::starter("Barnard's \"Kid\"", &sim::rules::Rules::default());
        p.credits = 10;
        p.fuel = 2;
        p.version = Version(3);
        p.cargo.add(Good::Ore, 7).unwrap();
        p.hull = 55;
        for e in [
            Event::Join {
                player: p.clone(),
                key: "00ff".into(),
            },
            Event::Refuel {
                player: p.name.clone(),
                units: 5,
                cost: 10,
            },
            Event::Repair {
                player: p.name.clone(),
                points: 12,
                cost: 60,
            },
            Event::Depart {
                xfer: Xfer(9),
                player: p.name.clone(),
                to: InstanceId::primary(ac),
                fuel: 5,
            },
            Event::DepartDone { xfer: Xfer(9) },
            Event::DepartVoid { xfer: Xfer(10) },
            Event::DepartAbort {
                xfer: Xfer(9),
                player: p.name.clone(),
            },
            Event::Arrive {
                from: InstanceId::new(ac, 3),
                xfer: Xfer(4),
                player: p.clone(),
            },
            Event::Trade {
                player: p.name.clone(),
                trade: Trade {
                    side: Side::Sell,
                    good: Good::Luxuries,
                    qty: 3,
                    total_cr: 999,
                    fee_cr: 19,
                },
            },
            Event::Economy {
                from: Tick(10),
                to: Tick(20),
                model: EconomyModel::Steady,
                report: TickReport {
                    produced: [1, 0, 0, 0, 0, 0, 0, 2],
                    consumed: [0, 3, 0, 0, 0, 0, 0, 0],
                    subsidy_cr: 0,
                    tax_cr: 77,
                },
                decayed: [0, 0, 0, 0, 5, 0, 0, 0],
            },
            Event::Economy {
                from: Tick(20),
                to: Tick(30),
                model: EconomyModel::Living,
                report: TickReport::default(),
                decayed: [0; 8],
            },
            Event::Shock {
                shock: Shock {
                    kind: ShockKind::MiningStrike,
                    good: Some(Good::Ore),
                    until: 4_000,
                },
            },
            Event::Shock {
                shock: Shock {
                    kind: ShockKind::Blockade,
                    good: None,
                    until: 5_000,
                },
            },
            Event::Engage {
                player: p.name.clone(),
                target: Some("Bob".into()),
            },
            Event::Engage {
                player: p.name.clone(),
                target: None,
            },
            Event::Combat {
                shots: 10,
                hits: 8,
                damage: 120,
                downed: 1,
            },
            Event::Destroyed {
                player: p.name.clone(),
                by: "Bob".into(),
                wreck: Some(3),
                jump_home: Some((Xfer(12), ac)),
                evicted: p.cargo,
            },
            Event::Destroyed {
                player: p.name.clone(),
                by: "Bob".into(),
                wreck: None,
                jump_home: None,
                evicted: Cargo::new(),
            },
            Event::Loot {
                player: p.name.clone(),
                take: LootTake {
                    wreck_id: 3,
                    taken: p.cargo,
                },
            },
        ] {
            assert_shared_encoding(&g, InstanceId::primary(sol), &e);
            assert_eq!(round_trip(&g, sol, &e), (Tick(42), e));
        }
    }

    /// A record written from a [`PlayerLine`]'s fields is the record `encode_event` writes, and
    /// the player line is that record's text with `src=` added.
    fn assert_shared_encoding(galaxy: &Galaxy, at: InstanceId, event: &Event) {
        let kind = event_kind(event);
        let mut direct = String::new();
        let mut line = Line::new(&mut direct, 7, kind);
        encode_event(&mut line, galaxy, at, Tick(42), event, Version(3));
        line.finish();

        let shared = PlayerLine::encode(galaxy, at, Tick(42), event, Version(3));
        let mut via = String::new();
        let mut line = Line::new(&mut via, 7, kind);
        line.encoded(shared.fields());
        line.finish();
        assert_eq!(
            via, direct,
            "{kind}: the shared fields make the same record"
        );

        let projected = shared.finish(galaxy, at, Seq(11));
        let rec = parse_line(projected.as_bytes()).unwrap();
        assert_eq!(
            rec.get("src"),
            Some(format!("{}:11", at.slug(galaxy)).as_str())
        );
        assert_eq!(
            decode_event(galaxy, at, &rec).unwrap(),
            (Tick(42), event.clone())
        );
    }

    #[test]
    fn instance_events_round_trip() {
        let g = Galaxy::default_galaxy();
        let (sol, two) = (InstanceId::primary(g.home()), InstanceId::new(g.home(), 2));
        let trade = Trade {
            side: Side::Buy,
            good: Good::Ore,
            qty: 3,
            total_cr: 120,
            fee_cr: 0,
        };
        let order = Order {
            side: Side::Sell,
            good: Good::Food,
            qty: 4,
            price_limit_cr: Some(9),
        };
        let cases = [
            (sol, Event::Split { instance: 2 }),
            (sol, Event::Retire { instance: 2 }),
            (
                sol,
                Event::Depart {
                    xfer: Xfer(5),
                    player: "ann".into(),
                    to: two,
                    fuel: 0,
                },
            ),
            (
                two,
                Event::Escrow {
                    escrow: EscrowId(7),
                    player: "ann".into(),
                    order,
                    held_cr: 0,
                    held_qty: 4,
                },
            ),
            (
                two,
                Event::EscrowSettle {
                    escrow: EscrowId(7),
                    player: "ann".into(),
                    total_cr: 33,
                    fee_cr: 0,
                },
            ),
            (
                two,
                Event::EscrowSettle {
                    escrow: EscrowId(7),
                    player: "ann".into(),
                    total_cr: 33,
                    fee_cr: 2,
                },
            ),
            (
                two,
                Event::EscrowRefund {
                    escrow: EscrowId(7),
                    player: "ann".into(),
                },
            ),
            (
                sol,
                Event::RemoteTrade {
                    instance: 2,
                    escrow: EscrowId(7),
                    player: "ann".into(),
                    trade,
                },
            ),
            (
                sol,
                Event::RemoteTradeDone {
                    instance: 2,
                    escrow: EscrowId(7),
                },
            ),
        ];
        for (at, e) in cases {
            let mut buf = String::new();
            let mut line = Line::new(&mut buf, 1, event_kind(&e));
            encode_event(&mut line, &g, at, Tick(42), &e, Version(3));
            line.finish();
            let rec = parse_line(buf.as_bytes()).unwrap();
            assert_eq!(decode_event(&g, at, &rec).unwrap(), (Tick(42), e), "{buf}");
        }
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, 1, "trade.escrow");
        let e = Event::EscrowRefund {
            escrow: EscrowId(7),
            player: "ann".into(),
        };
        encode_event(&mut line, &g, two, Tick(42), &e, Version(3));
        line.finish();
        assert!(buf.contains("escrow=sol.2:7"), "{buf}");
        let rec = parse_line(buf.as_bytes()).unwrap();
        assert!(
            decode_event(&g, sol, &rec).is_err(),
            "an escrow of sol.2 in sol's log"
        );
    }

    #[test]
    fn instance_and_void_states_round_trip_through_snapshots() {
        let g = Galaxy::default_galaxy();
        let two = InstanceId::new(g.home(), 2);
        let mut primary = SystemState::new(&g, g.home());
        primary
            .apply(Tick(1), &Event::Split { instance: 2 })
            .unwrap();
        let mut inst = SystemState::new_instance(&g, two);
        let ann = Player::starter("ann", &sim::rules::Rules::default());
        inst.players.insert("ann".into(), ann);
        let order = Order {
            side: Side::Buy,
            good: Good::Ore,
            qty: 2,
            price_limit_cr: None,
        };
        let escrow = inst.decide_escrow(&g, "ann", &order).unwrap();
        inst.apply(Tick(2), &escrow).unwrap();
        let req = inst.escrow_request(EscrowId(1)).unwrap();
        let remote = primary.decide_remote_trade(&g, &req).unwrap();
        primary.apply(Tick(3), &remote).unwrap();
        // A market shock runs on in a snapshot.
        let shock = Shock {
            kind: ShockKind::Glut,
            good: Some(Good::Food),
            until: 900,
        };
        primary.apply(Tick(3), &Event::Shock { shock }).unwrap();
        // A jump voided by recovery stays void in a snapshot.
        primary
            .apply(Tick(4), &Event::DepartVoid { xfer: Xfer(1) })
            .unwrap();
        assert!(primary.voided.contains(&Xfer(1)));
        // Economy model 4's budget is kept in a snapshot and hashed; none hashes as before.
        let without = primary.state_hash();
        primary.market = primary.market.clone().with_budget(Some(12_345)).unwrap();
        assert_ne!(
            primary.state_hash(),
            without,
            "the state hash covers the budget"
        );
        let dir = tempfile::tempdir().unwrap();
        for (at, state) in [(primary.instance_id(), &primary), (two, &inst)] {
            let meta = SnapshotMeta {
                name: at.slug(&g),
                upto_seq: 9,
                log_offset: 0,
                log_line: 1,
                state_hash: state.state_hash(),
            };
            let bytes = store::snapshot::encode(&meta, |w| encode_state(w, &g, state));
            let text = String::from_utf8_lossy(&bytes);
            let budget = state.market.budget_cr();
            assert_eq!(text.contains(" budget=12345 "), budget.is_some(), "{text}");
            let path = store::snapshot::write(dir.path(), &meta, &bytes).unwrap();
            let mut back = SystemState::new_instance(&g, at);
            store::snapshot::load(&path, |r| Ok(decode_state_record(&g, &mut back, r)?)).unwrap();
            assert_eq!(&back, state);
            assert_eq!(back.market.budget_cr(), budget);
        }
    }

    #[test]
    fn jumps_round_trip_and_read_well() {
        let g = Galaxy::default_galaxy();
        let j = Jump {
            from: InstanceId::primary(g.home()),
            xfer: Xfer(7),
            to: InstanceId::primary(g.lookup("Alpha Centauri").unwrap()),
            t: Tick(100),
            travel_ticks: 44,
            player: Player {
                credits: 1,
                fuel: 2,
                fuel_capacity: 3,
                version: Version(4),
                ..Player::starter("ann", &sim::rules::Rules::default())
            },
            tseq: Seq(5),
        };
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, 5, "jump");
        encode_jump(&mut line, &g, &j);
        line.finish();
        assert!(
            buf.starts_with("5 jump xfer=sol:7 from=sol to=alpha-centauri t=100"),
            "{buf}"
        );
        let rec = parse_line(buf.as_bytes()).unwrap();
        assert_eq!(decode_jump(&g, &rec).unwrap(), j);
    }

    /// A record that does not read back says what is wrong: the field and the record's kind,
    /// the transfer of another system, the unknown kind.
    #[test]
    fn a_bad_event_record_names_its_kind_and_field() {
        let g = Galaxy::default_galaxy();
        let sol = InstanceId::primary(g.home());
        let decode = |kind: &'static str, fields: &[(&'static str, &'static str)]| {
            let fields = fields.iter().map(|&(k, v)| (k, v.into())).collect();
            let rec = Record {
                seq: 1,
                kind,
                fields,
            };
            decode_event(&g, sol, &rec).unwrap_err()
        };
        let depart = [
            ("t", "3"),
            ("xfer", "sol:1"),
            ("player", "ann"),
            ("to", "alpha-centauri"),
        ];
        let missing = decode("depart", &depart);
        assert_eq!(
            missing,
            DecodeError::Field {
                kind: "depart".into(),
                why: RecordError::MissingField("fuel"),
            }
        );
        assert_eq!(missing.to_string(), "depart: missing field \"fuel\"");

        let mut foreign = depart;
        foreign[1] = ("xfer", "alpha-centauri:1");
        let foreign = decode("depart", &foreign);
        assert_eq!(
            foreign.to_string(),
            "transfer of alpha-centauri in the log of sol"
        );
        assert!(matches!(
            foreign,
            DecodeError::NotOfThisLog {
                what: "transfer",
                ..
            }
        ));

        let bad = decode("refuel", &[("t", "3"), ("player", "ann"), ("units", "x")]);
        assert!(
            matches!(&bad, DecodeError::Field { kind, why: RecordError::BadValue { key: "units", .. } } if kind == "refuel"),
            "{bad:?}"
        );
        assert!(
            bad.to_string()
                .starts_with("refuel: field \"units\" has bad value \"x\""),
            "{bad}"
        );

        let unknown = decode("teleport", &[("t", "3")]);
        assert_eq!(
            unknown.to_string(),
            "unknown record kind \"teleport\" in a system log"
        );
    }
}
