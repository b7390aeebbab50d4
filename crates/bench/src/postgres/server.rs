//! The PostgreSQL side of `bench postgres`: the connection and its settings, the schema, the
//! players' sessions and the jump, landing and trade transactions, and the check of the tables
//! after the run.
//!
//! Touches nothing on the server outside its own schema; never measures mltrader.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::{
    progress, PgFigures, Workload, MAX_BUY_UNITS, SCHEMA, STARTING_CREDITS, STARTING_FUEL, WARM_UP,
    WORKLOAD_SEED,
};
use crate::{measure_window, percentile};
use sim::galaxy::{Galaxy, SystemId};
use sim::goods::{Good, GOOD_COUNT};
use sim::market::{Market, Side};
use sim::rng::Rng;

/// Connects to the server, with an error that says how to get one.
pub(super) async fn connect(config: &tokio_postgres::Config, url: &str) -> anyhow::Result<Client> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        // tokio-postgres's message names the step; its source says what went wrong.
        let cause = std::error::Error::source(&e).map_or(String::new(), |c| format!(": {c}"));
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at '{url}': {e}{cause}\n\
             This benchmark needs a running PostgreSQL server. scripts/bench-postgres.sh installs \
             PostgreSQL from Debian, starts a throwaway cluster, runs this benchmark against it \
             and removes the cluster: run `scripts/bench-postgres.sh --size small`."
        )
    })?;
    tokio::spawn(async move {
        // The connection ends when its client is dropped; an error here shows up as the
        // client's next query failing, which reports it.
        let _ = connection.await;
    });
    Ok(client)
}

/// The server's version and the settings that decide what a COMMIT acknowledges.
pub(super) async fn server_settings(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let rows = client
        .query(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('server_version', 'fsync', \
             'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'commit_delay', \
             'max_connections', 'shared_buffers', 'data_checksums')",
            &[],
        )
        .await
        .context("cannot read the server's settings")?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect())
}

/// Refuses a server whose commits are not flushed to disk: the comparison is at equal
/// durability or not at all.
pub(super) fn check_durable(settings: &BTreeMap<String, String>, url: &str) -> anyhow::Result<()> {
    let fsync = settings.get("fsync").map(String::as_str);
    let sync_commit = settings.get("synchronous_commit").map(String::as_str);
    anyhow::ensure!(
        fsync == Some("on") && sync_commit.is_some_and(|s| s != "off"),
        "PostgreSQL at '{url}' runs with fsync={} and synchronous_commit={}: its COMMIT does not \
         wait for the disk, unlike mltrader's acknowledgement. Run it with fsync=on and \
         synchronous_commit=on (the defaults; scripts/bench-postgres.sh does).",
        fsync.unwrap_or("?"),
        sync_commit.unwrap_or("?"),
    );
    Ok(())
}

/// Refuses a client count the server cannot take, before opening hundreds of connections.
pub(super) fn check_connections(
    settings: &BTreeMap<String, String>,
    connections: usize,
) -> anyhow::Result<()> {
    let max: usize = settings
        .get("max_connections")
        .and_then(|m| m.parse().ok())
        .unwrap_or(usize::MAX);
    // One more for the benchmark's own administrative connection.
    anyhow::ensure!(
        connections < max,
        "--clients {connections} needs {} connections; the server allows max_connections={max}. \
         Start it with -c max_connections={} (scripts/bench-postgres.sh sets 300) or measure \
         fewer clients.",
        connections + 1,
        connections + 10,
    );
    Ok(())
}

/// `CHECKPOINT` before a phase, so each starts from the same state of the WAL (a checkpoint in
/// the middle of a phase is PostgreSQL's normal cost, but one left over from the previous
/// phase's writes is not this phase's). Needs a superuser; skipped with a note otherwise.
pub(super) async fn checkpoint(admin: &Client) {
    if let Err(e) = admin.batch_execute("CHECKPOINT").await {
        progress(&format!("CHECKPOINT skipped ({e})"));
    }
}

/// The statements that build the benchmark's tables. No foreign keys: a team might add them,
/// and they would only slow PostgreSQL down.
fn schema_sql() -> String {
    format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
         CREATE SCHEMA {SCHEMA};
         CREATE TABLE {SCHEMA}.players (name text PRIMARY KEY, system text NULL,
             fuel int NOT NULL, credits bigint NOT NULL, version bigint NOT NULL);
         CREATE TABLE {SCHEMA}.transitions (id bigserial PRIMARY KEY, player text NOT NULL,
             from_system text NOT NULL, to_system text NOT NULL, fuel int NOT NULL,
             credits bigint NOT NULL, version bigint NOT NULL, landed bool NOT NULL);
         CREATE TABLE {SCHEMA}.markets (system text, good text, stock bigint NOT NULL,
             PRIMARY KEY (system, good));
         CREATE TABLE {SCHEMA}.cargo (player text, good text, qty int NOT NULL,
             PRIMARY KEY (player, good));
         CREATE TABLE {SCHEMA}.trades (id bigserial PRIMARY KEY, player text NOT NULL,
             system text NOT NULL, good text NOT NULL, qty int NOT NULL,
             credits bigint NOT NULL);"
    )
}

/// Player `i`'s name on the PostgreSQL side.
fn player_name(i: usize) -> String {
    format!("pg {i}")
}

/// Creates the schema with `players` players in the galaxy's home system and every market
/// at its goods' target stock.
pub(super) async fn create_schema(
    admin: &Client,
    galaxy: &Galaxy,
    players: usize,
) -> anyhow::Result<()> {
    admin
        .batch_execute(&schema_sql())
        .await
        .context("cannot create the benchmark's tables")?;
    let home = galaxy.slug(galaxy.home());
    let count = i32::try_from(players).context("too many players")?;
    admin
        .execute(
            &format!(
                "INSERT INTO {SCHEMA}.players (name, system, fuel, credits, version)
                 SELECT 'pg ' || i, $1, $2, $3, 0 FROM generate_series(0, $4 - 1) AS i"
            ),
            &[&home, &STARTING_FUEL, &STARTING_CREDITS, &count],
        )
        .await
        .context("cannot insert the players")?;
    let insert_market = admin
        .prepare(&format!(
            "INSERT INTO {SCHEMA}.markets (system, good, stock) VALUES ($1, $2, $3)"
        ))
        .await?;
    for id in galaxy.ids() {
        for good in Good::ALL {
            let stock = i64::try_from(good.target_stock_units())?;
            admin
                .execute(&insert_market, &[&galaxy.slug(id), &good.name(), &stock])
                .await
                .context("cannot insert the markets")?;
        }
    }
    // One statement a call: several in one string run as one transaction, where VACUUM
    // cannot run.
    for table in ["players", "markets"] {
        admin
            .batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.{table}"))
            .await
            .context("cannot vacuum the new tables")?;
    }
    Ok(())
}

/// Checks, after the run, that PostgreSQL did what the workload asked: every jump landed,
/// every player is in a system, each jump, landing and trade raised its player's version by
/// one, and trades moved goods without making or losing any.
pub(super) async fn verify(admin: &Client, galaxy: &Galaxy) -> anyhow::Result<()> {
    let row = admin
        .query_one(
            &format!(
                "SELECT
                   (SELECT count(*) FROM {SCHEMA}.transitions WHERE NOT landed),
                   (SELECT count(*) FROM {SCHEMA}.players WHERE system IS NULL),
                   (SELECT coalesce(sum(version), 0)::bigint FROM {SCHEMA}.players),
                   (SELECT count(*) FROM {SCHEMA}.transitions),
                   (SELECT count(*) FROM {SCHEMA}.trades),
                   (SELECT coalesce(sum(stock), 0)::bigint FROM {SCHEMA}.markets),
                   (SELECT coalesce(sum(qty), 0)::bigint FROM {SCHEMA}.cargo)"
            ),
            &[],
        )
        .await
        .context("cannot check the benchmark's tables")?;
    let (in_flight, nowhere): (i64, i64) = (row.get(0), row.get(1));
    let (versions, jumps, trades): (i64, i64, i64) = (row.get(2), row.get(3), row.get(4));
    let (stock, cargo): (i64, i64) = (row.get(5), row.get(6));
    let goods_at_start: u64 = Good::ALL
        .iter()
        .map(|g| g.target_stock_units())
        .sum::<u64>()
        * galaxy.len() as u64;
    anyhow::ensure!(
        in_flight == 0 && nowhere == 0,
        "PostgreSQL's tables are inconsistent: {in_flight} jumps not landed, {nowhere} players \
         in no system"
    );
    anyhow::ensure!(
        versions == 2 * jumps + trades,
        "PostgreSQL's tables are inconsistent: versions add up to {versions}, not 2 x {jumps} \
         jumps + {trades} trades"
    );
    anyhow::ensure!(
        u64::try_from(stock + cargo).ok() == Some(goods_at_start),
        "PostgreSQL's tables are inconsistent: {stock} units in markets and {cargo} in cargo, \
         not the {goods_at_start} the markets started with"
    );
    progress(&format!(
        "checked: {jumps} jumps all landed, {trades} trades, goods conserved"
    ));
    Ok(())
}

/// The prepared statements of the workload, one set a connection.
struct Statements {
    /// `system, fuel, credits, version` of player $1, locked.
    lock_player: Statement,
    /// Player $1 leaves its system, spending $2 fuel.
    depart: Statement,
    /// The transition row of a jump; returns its id.
    record_jump: Statement,
    /// Player $1, in flight, arrives in $2.
    arrive: Statement,
    /// Transition $1 landed.
    mark_landed: Statement,
    /// `stock` of good $2 in system $1's market, locked.
    lock_market: Statement,
    set_stock: Statement,
    set_credits: Statement,
    set_cargo: Statement,
    record_trade: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        let s = SCHEMA;
        Ok(Statements {
            lock_player: client
                .prepare(&format!(
                    "SELECT system, fuel, credits, version FROM {s}.players WHERE name = $1 \
                     FOR UPDATE"
                ))
                .await?,
            depart: client
                .prepare(&format!(
                    "UPDATE {s}.players SET system = NULL, fuel = fuel - $2, \
                     version = version + 1 WHERE name = $1"
                ))
                .await?,
            record_jump: client
                .prepare(&format!(
                    "INSERT INTO {s}.transitions (player, from_system, to_system, fuel, credits, \
                     version, landed) VALUES ($1, $2, $3, $4, $5, $6, false) RETURNING id"
                ))
                .await?,
            arrive: client
                .prepare(&format!(
                    "UPDATE {s}.players SET system = $2, version = version + 1 \
                     WHERE name = $1 AND system IS NULL"
                ))
                .await?,
            mark_landed: client
                .prepare(&format!(
                    "UPDATE {s}.transitions SET landed = true WHERE id = $1 AND NOT landed"
                ))
                .await?,
            lock_market: client
                .prepare(&format!(
                    "SELECT stock FROM {s}.markets WHERE system = $1 AND good = $2 FOR UPDATE"
                ))
                .await?,
            set_stock: client
                .prepare(&format!(
                    "UPDATE {s}.markets SET stock = $3 WHERE system = $1 AND good = $2"
                ))
                .await?,
            set_credits: client
                .prepare(&format!(
                    "UPDATE {s}.players SET credits = $2, version = version + 1 WHERE name = $1"
                ))
                .await?,
            set_cargo: client
                .prepare(&format!(
                    "INSERT INTO {s}.cargo (player, good, qty) VALUES ($1, $2, $3) \
                     ON CONFLICT (player, good) DO UPDATE SET qty = EXCLUDED.qty"
                ))
                .await?,
            record_trade: client
                .prepare(&format!(
                    "INSERT INTO {s}.trades (player, system, good, qty, credits) \
                     VALUES ($1, $2, $3, $4, $5)"
                ))
                .await?,
        })
    }
}

/// One player on the PostgreSQL side, as its connection remembers it. Only that connection
/// changes the player's rows, so what it remembers matches the database.
struct Pilot {
    name: String,
    here: SystemId,
    rng: Rng,
    /// The one good the player holds, and how many units (sold at the next trade).
    holding: Option<(Good, u32)>,
}

/// One client connection and the players it drives, one transaction at a time, in turn: a
/// connection pool, as a game server in front of PostgreSQL would have. A player's loop has no
/// wait of its own (its landing is the next transaction), so PostgreSQL's throughput depends
/// on the number of connections, not on how many players share them.
pub(super) struct Session {
    client: Client,
    sql: Statements,
    pilots: Vec<Pilot>,
    /// The index in `pilots` of the player whose turn is next.
    turn: usize,
}

/// Opens `connections` connections and deals players 0..`players` out to them (player `i` to
/// connection `i % connections`).
pub(super) async fn open_sessions(
    config: &tokio_postgres::Config,
    url: &str,
    connections: usize,
    players: usize,
    galaxy: &Galaxy,
) -> anyhow::Result<Vec<Session>> {
    assert!(
        (1..=players).contains(&connections),
        "{connections} connections for {players} players"
    );
    progress(&format!("opening {connections} connections..."));
    let mut sessions = Vec::with_capacity(connections);
    for k in 0..connections {
        let client = connect(config, url).await?;
        let sql = Statements::prepare(&client)
            .await
            .context("cannot prepare the workload's statements")?;
        let read = client
            .prepare(&format!(
                "SELECT system FROM {SCHEMA}.players WHERE name = $1"
            ))
            .await?;
        let read_cargo = client
            .prepare(&format!(
                "SELECT good, qty FROM {SCHEMA}.cargo WHERE player = $1 AND qty > 0"
            ))
            .await?;
        let mut pilots = Vec::new();
        for i in (k..players).step_by(connections) {
            let name = player_name(i);
            let row = client
                .query_one(&read, &[&name])
                .await
                .with_context(|| format!("cannot read player '{name}'"))?;
            let system: Option<String> = row.get(0);
            let here = system
                .as_deref()
                .and_then(|slug| galaxy.by_slug(slug))
                .with_context(|| format!("player '{name}' is not in a system ({system:?})"))?;
            // What an earlier phase left in the hold: at most one good (see MAX_BUY_UNITS).
            let cargo = client.query(&read_cargo, &[&name]).await?;
            anyhow::ensure!(cargo.len() <= 1, "'{name}' holds more than one good");
            let holding = match cargo.first() {
                Some(row) => {
                    let good = Good::parse(row.get(0))?;
                    Some((good, u32::try_from(row.get::<_, i32>(1))?))
                }
                None => None,
            };
            pilots.push(Pilot {
                name,
                here,
                rng: Rng::from_seed(WORKLOAD_SEED.wrapping_add(i as u64)),
                holding,
            });
        }
        sessions.push(Session {
            client,
            sql,
            pilots,
            turn: 0,
        });
    }
    Ok(sessions)
}

/// What one session measured in a phase.
#[derive(Default)]
struct Tally {
    jump_ms: Vec<f64>,
    trade_ms: Vec<f64>,
    landings: u64,
    trades_refused: u64,
}

/// Runs `workload` on every session for `seconds` after the warm-up, then closes them.
pub(super) async fn pg_phase(
    sessions: Vec<Session>,
    galaxy: &Arc<Galaxy>,
    workload: Workload,
    seconds: f64,
) -> anyhow::Result<PgFigures> {
    let connections = sessions.len();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(connections);
    for session in sessions {
        let (galaxy, stop, measuring) = (galaxy.clone(), stop.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let Session {
                client,
                sql,
                mut pilots,
                mut turn,
            } = session;
            let (c, sql) = (&client, &sql);
            while !stop.load(Ordering::Relaxed) {
                let next = (turn + 1) % pilots.len();
                let p = &mut pilots[std::mem::replace(&mut turn, next)];
                let to = pick_neighbour(&galaxy, p.here, &mut p.rng);
                let started = Instant::now();
                let transition = jump(c, sql, p, &galaxy, to).await?;
                if measuring.load(Ordering::Relaxed) {
                    tally.jump_ms.push(started.elapsed().as_secs_f64() * 1e3);
                }
                land(c, sql, p, &galaxy, to, transition).await?;
                if measuring.load(Ordering::Relaxed) {
                    tally.landings += 1;
                }
                if workload == Workload::JumpsAndTrades {
                    let started = Instant::now();
                    let done = trade(c, sql, p, &galaxy).await?;
                    if measuring.load(Ordering::Relaxed) {
                        if done {
                            tally.trade_ms.push(started.elapsed().as_secs_f64() * 1e3);
                        } else {
                            tally.trades_refused += 1;
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(tally)
        }));
    }
    let elapsed = measure_window(WARM_UP, seconds, &measuring, &stop).await;
    let mut all = Tally::default();
    for t in tasks {
        let tally = t.await??;
        all.jump_ms.extend(tally.jump_ms);
        all.trade_ms.extend(tally.trade_ms);
        all.landings += tally.landings;
        all.trades_refused += tally.trades_refused;
    }
    all.jump_ms.sort_by(f64::total_cmp);
    all.trade_ms.sort_by(f64::total_cmp);
    let figures = PgFigures {
        connections,
        seconds: elapsed,
        jumps: all.jump_ms.len(),
        jumps_per_s: all.jump_ms.len() as f64 / elapsed,
        commit_p50_ms: percentile(&all.jump_ms, 50.0),
        commit_p99_ms: percentile(&all.jump_ms, 99.0),
        landings_per_s: all.landings as f64 / elapsed,
        trades: all.trade_ms.len(),
        trades_per_s: all.trade_ms.len() as f64 / elapsed,
        trade_p50_ms: percentile(&all.trade_ms, 50.0),
        trade_p99_ms: percentile(&all.trade_ms, 99.0),
        trades_refused: all.trades_refused,
    };
    Ok(figures)
}

/// One parameter of a statement.
type Param<'a> = &'a (dyn ToSql + Sync);

// Transactions are written out as BEGIN ... COMMIT rather than with tokio-postgres's
// `Transaction`, so that BEGIN goes out with a transaction's first statement and COMMIT with
// its last writes: every statement that does not wait for an answer is pipelined (sent in
// order, `biased`, without waiting), which spares PostgreSQL round trips and context switches.
// A statement that fails aborts the transaction, and the COMMIT behind it then rolls back.

/// The jump transaction: the player leaves its system for `to` and the transition is recorded.
/// Returns once COMMIT has returned (the acknowledgement), with the transition's id. Two round
/// trips: BEGIN and the locking read; then the writes and COMMIT.
async fn jump(
    c: &Client,
    sql: &Statements,
    p: &mut Pilot,
    galaxy: &Galaxy,
    to: SystemId,
) -> anyhow::Result<i64> {
    let lock: [Param; 1] = [&p.name];
    let ((), row) = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN"),
        c.query_one(&sql.lock_player, &lock),
    )?;
    let system: Option<String> = row.get(0);
    let fuel: i32 = row.get(1);
    let credits: i64 = row.get(2);
    let version: i64 = row.get(3);
    let (from, cost) = match check_jump(galaxy, system.as_deref(), to, fuel) {
        Ok(checked) => checked,
        Err(why) => {
            c.batch_execute("ROLLBACK").await?;
            // Every player has a full tank and jumps along lanes: a refusal is a bug.
            anyhow::bail!("'{}' was refused a jump: {why}", p.name);
        }
    };
    let (from_slug, to_slug) = (galaxy.slug(from), galaxy.slug(to));
    let (fuel_after, version_after) = (fuel - cost, version + 1);
    let depart: [Param; 2] = [&p.name, &cost];
    let record: [Param; 6] = [
        &p.name,
        &from_slug,
        &to_slug,
        &fuel_after,
        &credits,
        &version_after,
    ];
    let (departed, recorded, ()) = tokio::try_join!(
        biased;
        c.execute(&sql.depart, &depart),
        c.query_one(&sql.record_jump, &record),
        c.batch_execute("COMMIT"),
    )?;
    anyhow::ensure!(departed == 1, "'{}' did not depart", p.name);
    Ok(recorded.get(0))
}

/// The landing transaction: the player, in flight, arrives in `to`. One round trip.
async fn land(
    c: &Client,
    sql: &Statements,
    p: &mut Pilot,
    galaxy: &Galaxy,
    to: SystemId,
    transition: i64,
) -> anyhow::Result<()> {
    let to_slug = galaxy.slug(to);
    let arrive: [Param; 2] = [&p.name, &to_slug];
    let mark: [Param; 1] = [&transition];
    let ((), arrived, marked, ()) = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN"),
        c.execute(&sql.arrive, &arrive),
        c.execute(&sql.mark_landed, &mark),
        c.batch_execute("COMMIT"),
    )?;
    // Only this session moves its player, and it lands what it launched.
    anyhow::ensure!(
        arrived == 1 && marked == 1,
        "'{}' did not land (transition {transition})",
        p.name
    );
    p.here = to;
    Ok(())
}

/// A trade one player wants to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Order {
    side: Side,
    good: Good,
    qty: u32,
}

/// The trade transaction at the player's market: true once committed, false if the market
/// refused it (rolled back). Two round trips: BEGIN and the locking reads; then the writes and
/// COMMIT.
async fn trade(
    c: &Client,
    sql: &Statements,
    p: &mut Pilot,
    galaxy: &Galaxy,
) -> anyhow::Result<bool> {
    let order = choose_order(&mut p.rng, p.holding);
    let system = galaxy.slug(p.here);
    let good = order.good.name();
    // Market first, then player, on every connection: no deadlock.
    let lock_market: [Param; 2] = [&system, &good];
    let lock_player: [Param; 1] = [&p.name];
    let ((), market, player) = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN"),
        c.query_one(&sql.lock_market, &lock_market),
        c.query_one(&sql.lock_player, &lock_player),
    )?;
    let stock: i64 = market.get(0);
    let credits: i64 = player.get(2);
    let held = p.holding.map_or(0, |(_, q)| q);
    let quote = trade_total_cr(order, u64::try_from(stock)?);
    let Some(total) = quote.and_then(|t| i64::try_from(t).ok()) else {
        c.batch_execute("ROLLBACK").await?;
        return Ok(false);
    };
    let qty = i64::from(order.qty);
    let (stock_after, credits_after, held_after, signed_qty, signed_cr) = match order.side {
        Side::Buy => (stock - qty, credits - total, held + order.qty, qty, -total),
        Side::Sell => (stock + qty, credits + total, held - order.qty, -qty, total),
    };
    if credits_after < 0 {
        c.batch_execute("ROLLBACK").await?;
        return Ok(false);
    }
    let (held_after_sql, signed_qty) = (i32::try_from(held_after)?, i32::try_from(signed_qty)?);
    let set_stock: [Param; 3] = [&system, &good, &stock_after];
    let set_credits: [Param; 2] = [&p.name, &credits_after];
    let set_cargo: [Param; 3] = [&p.name, &good, &held_after_sql];
    let record: [Param; 5] = [&p.name, &system, &good, &signed_qty, &signed_cr];
    tokio::try_join!(
        biased;
        c.execute(&sql.set_stock, &set_stock),
        c.execute(&sql.set_credits, &set_credits),
        c.execute(&sql.set_cargo, &set_cargo),
        c.execute(&sql.record_trade, &record),
        c.batch_execute("COMMIT"),
    )?;
    p.holding = (held_after > 0).then_some((order.good, held_after));
    Ok(true)
}

/// The rules a jump is checked against, with the locked row of the player (`system` NULL
/// while in flight): a lane from where it is to `to`, and the fuel for it. Returns the origin
/// and the fuel the jump costs, or why it is refused.
fn check_jump(
    galaxy: &Galaxy,
    system: Option<&str>,
    to: SystemId,
    fuel: i32,
) -> Result<(SystemId, i32), String> {
    let slug = system.ok_or("in flight")?;
    let from = galaxy
        .by_slug(slug)
        .ok_or_else(|| format!("in unknown system '{slug}'"))?;
    if !galaxy.has_lane(from, to) {
        return Err(format!("no lane from {slug} to {}", galaxy.slug(to)));
    }
    let cost = galaxy.fuel_cost(from, to);
    match i32::try_from(cost) {
        Ok(cost) if cost <= fuel => Ok((from, cost)),
        _ => Err(format!("{fuel} fuel, the jump needs {cost}")),
    }
}

/// The next system a player jumps to: a neighbour of `here`, drawn from its generator.
fn pick_neighbour(galaxy: &Galaxy, here: SystemId, rng: &mut Rng) -> SystemId {
    let options = galaxy.neighbours(here);
    assert!(
        !options.is_empty(),
        "system {} has no lane",
        galaxy.slug(here)
    );
    options[rng.below(options.len() as u64) as usize]
}

/// What a player trades at its next landing: everything it holds, sold; or, holding nothing,
/// 1 to [`MAX_BUY_UNITS`] units of a random good, bought.
fn choose_order(rng: &mut Rng, holding: Option<(Good, u32)>) -> Order {
    match holding {
        Some((good, qty)) => Order {
            side: Side::Sell,
            good,
            qty,
        },
        None => Order {
            side: Side::Buy,
            good: Good::ALL[rng.below(GOOD_COUNT as u64) as usize],
            // At most MAX_BUY_UNITS, which fits a u32.
            qty: rng.range_inclusive(1, MAX_BUY_UNITS) as u32,
        },
    }
}

/// What `order` costs (buy) or pays (sell) at a market holding `stock` units of its good, by
/// the game's own price curve and spread; `None` if the market refuses it (not enough stock,
/// or no room). The market's till is not modelled on this side: it never refuses a sale.
fn trade_total_cr(order: Order, stock: u64) -> Option<u64> {
    let mut stocks = [0; GOOD_COUNT];
    stocks[order.good.index()] = stock;
    let market = Market::from_parts(stocks, u64::MAX).ok()?;
    match order.side {
        Side::Buy => market.quote_buy(order.good, order.qty).ok(),
        Side::Sell => market.quote_sell(order.good, order.qty).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn players_jump_only_along_lanes_and_the_walk_is_seeded() {
        let galaxy = Galaxy::default_galaxy();
        let walk = |seed| {
            let mut rng = Rng::from_seed(seed);
            let mut here = galaxy.home();
            let mut path = vec![here];
            for _ in 0..200 {
                let to = pick_neighbour(&galaxy, here, &mut rng);
                assert!(galaxy.has_lane(here, to), "no lane {here:?} -> {to:?}");
                here = to;
                path.push(here);
            }
            path
        };
        assert_eq!(walk(WORKLOAD_SEED), walk(WORKLOAD_SEED));
        assert_ne!(walk(WORKLOAD_SEED), walk(WORKLOAD_SEED + 1));
    }

    #[test]
    fn a_jump_needs_a_lane_fuel_and_a_player_in_a_system() {
        let galaxy = Galaxy::default_galaxy();
        let home = galaxy.home();
        let near = galaxy.neighbours(home)[0];
        let cost = galaxy.fuel_cost(home, near) as i32;
        let sol = galaxy.slug(home);
        assert_eq!(check_jump(&galaxy, Some(sol), near, cost), Ok((home, cost)));
        assert!(check_jump(&galaxy, Some(sol), near, cost - 1).is_err());
        assert!(check_jump(&galaxy, None, near, STARTING_FUEL).is_err());
        assert!(check_jump(&galaxy, Some("nowhere"), near, STARTING_FUEL).is_err());
        let far = galaxy
            .ids()
            .find(|&id| id != home && !galaxy.has_lane(home, id))
            .expect("a system without a lane from home");
        assert!(check_jump(&galaxy, Some(sol), far, STARTING_FUEL).is_err());
        assert!(check_jump(&galaxy, Some(sol), home, STARTING_FUEL).is_err());
    }

    #[test]
    fn a_player_sells_what_it_holds_and_buys_a_little_when_empty() {
        let mut rng = Rng::from_seed(WORKLOAD_SEED);
        let sell = choose_order(&mut rng, Some((Good::Ore, 7)));
        assert_eq!(
            sell,
            Order {
                side: Side::Sell,
                good: Good::Ore,
                qty: 7
            }
        );
        for _ in 0..100 {
            let buy = choose_order(&mut rng, None);
            assert_eq!(buy.side, Side::Buy);
            assert!((1..=MAX_BUY_UNITS as u32).contains(&buy.qty), "{buy:?}");
        }
    }

    #[test]
    fn trades_are_priced_by_the_game_curve_with_its_spread() {
        let good = Good::Food;
        let at_target = good.target_stock_units();
        let order = |side| Order { side, good, qty: 1 };
        let buy = trade_total_cr(order(Side::Buy), at_target).expect("stock to buy");
        let sell = trade_total_cr(order(Side::Sell), at_target).expect("room to sell");
        // Around the base price, the buyer paying more than the seller gets.
        assert!(sell < buy, "sell {sell} buy {buy}");
        assert!(buy >= good.base_price_cr() && buy <= 2 * good.base_price_cr());
        // An empty market refuses a purchase.
        assert_eq!(trade_total_cr(order(Side::Buy), 0), None);
    }

    #[test]
    fn the_schema_lives_in_its_own_namespace() {
        let sql = schema_sql();
        for table in ["players", "transitions", "markets", "cargo", "trades"] {
            assert!(
                sql.contains(&format!("CREATE TABLE {SCHEMA}.{table} ")),
                "{table} is not created in {SCHEMA}"
            );
        }
        assert!(!sql.contains("CREATE TABLE players"));
    }

    #[test]
    fn only_a_server_that_flushes_its_commits_is_compared() {
        let settings = |fsync: &str, sync: &str| {
            BTreeMap::from([
                ("fsync".to_string(), fsync.to_string()),
                ("synchronous_commit".to_string(), sync.to_string()),
            ])
        };
        assert!(check_durable(&settings("on", "on"), "x").is_ok());
        assert!(check_durable(&settings("off", "on"), "x").is_err());
        assert!(check_durable(&settings("on", "off"), "x").is_err());
        assert!(check_durable(&BTreeMap::new(), "x").is_err());
    }
}
