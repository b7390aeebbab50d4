//! `mltrader-bench postgres`: the peer a team would otherwise build on. The same jump-and-trade
//! workload on PostgreSQL, measured in the same run as mltrader's embedded mesh with the same
//! players, reported as ratios of jumps per second (target: mltrader at least 10x) and of
//! trades per second in the mixed run.
//!
//! **What each side acknowledges** (the same durability):
//! - mltrader acknowledges a jump once its `depart` record (in the origin system's log) and its
//!   `jump` record (in the transition log) are both written and fdatasync'd, in parallel: the
//!   jump's commit point (docs/PROTOCOL.md). Measured by [`super::jumps::measure`], the code `bench jumps` runs.
//! - PostgreSQL acknowledges a jump when its `COMMIT` returns with `synchronous_commit=on` and
//!   `fsync=on`: the commit's WAL record is flushed to disk (with fsync or fdatasync, per the
//!   server's `wal_sync_method`). The benchmark reads these settings from the server, prints
//!   them, and refuses to compare against a server that does not flush its commits.
//!
//! **The workload on PostgreSQL**, in a schema of its own ([`SCHEMA`], dropped at the start and
//! the end): tables of players (with their system, NULL while in flight), transitions, markets,
//! cargo and trades; the lanes stay in memory (the default galaxy). The players are dealt out
//! to a pool of client connections, each running one transaction at a time for its players in
//! turn; each player loops:
//! - a **jump** is one transaction, the same protocol as mltrader's: lock the player
//!   (`SELECT ... FOR UPDATE`), check the lane and the fuel, take the player out of its system
//!   (`system = NULL`, fuel spent, version + 1) and insert the `transitions` row; acknowledged
//!   when `COMMIT` returns;
//! - the **landing** is a second transaction: the player into the destination (version + 1),
//!   the transition marked landed;
//! - in the mixed run, one **trade** per landing, one transaction: lock the market row and the
//!   player, move stock, cargo and credits by the game's own price curve
//!   ([`sim::market`]), insert a `trades` row.
//!
//! After the run the tables are checked: every jump landed, versions add up, goods conserved.
//!
//! Fair to PostgreSQL: prepared statements on every connection; BEGIN, COMMIT and the
//! statements that do not wait for an answer are pipelined (two round trips a jump, one a
//! landing); no foreign keys; several connection counts are measured ([`DEFAULT_CLIENTS`]) and
//! the best is the baseline. The ratio is of jumps; the mixed run is compared by trades/s in a
//! row of its own. The jumps comparison is repeated (`--rounds`, 3 at `--size large`) and the
//! median of the rounds' ratios is the figure ([`super::rounds`]). Both sides share this
//! machine's cores with their clients. Prints figures; never asserts. By hand only: `scripts/bench-postgres.sh` installs
//! PostgreSQL, starts a throwaway cluster, runs this and removes the cluster.

mod server;
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use self::server::{
    check_connections, check_durable, checkpoint, connect, create_schema, open_sessions, pg_phase,
    server_settings, verify,
};
use self::table::print_table;
use super::jumps::PhaseFigures;
use super::rounds::{medians, PgJumps, Round};
use super::{load_average, scratch_dir, Size};
use sim::galaxy::Galaxy;

#[derive(Args, Debug)]
pub struct PostgresArgs {
    /// The PostgreSQL server to measure, as a libpq connection string
    /// ("host=/tmp/sock port=5432 user=postgres dbname=postgres") or a postgres:// URL.
    /// scripts/bench-postgres.sh starts a throwaway server and passes this.
    #[arg(long)]
    pub url: String,
    /// Run size: `small` measures 3 s a phase, `large` 10 s.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Rounds of the jumps comparison (mltrader, then PostgreSQL at every connection count);
    /// the ratio is the median of the rounds' (default: 1 small, 3 large).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=MAX_ROUNDS))]
    pub rounds: Option<u32>,
    /// Players jumping at once, on both sides (default: the largest --clients count).
    #[arg(long)]
    pub players: Option<usize>,
    /// PostgreSQL client connections to measure, comma-separated: the players are dealt out to
    /// them, each connection running one transaction at a time. The best count is the baseline.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_CLIENTS)]
    pub clients: Vec<usize>,
    /// Where to put mltrader's scratch data directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Connection counts measured by default. PostgreSQL's throughput depends on it (more
/// connections share more commits per WAL flush, until the backends crowd the cores), so a
/// few are measured and the best one is kept; 64 is the count `bench jumps` uses for latency.
pub const DEFAULT_CLIENTS: [usize; 3] = [16, 64, 256];

/// The most client connections one phase opens (each is a PostgreSQL backend process).
const MAX_CLIENTS: usize = 1_000;

/// The most rounds a run may have (a large round takes about a minute).
const MAX_ROUNDS: i64 = 50;

/// The most players a run may have (each is a row, a task on the mesh side).
const MAX_PLAYERS: usize = 100_000;

/// Target from the issue: mltrader's jumps/s at least this many times PostgreSQL's.
const TARGET_RATIO: f64 = 10.0;

/// The schema the benchmark owns on the server: created at the start, dropped at the start
/// (a leftover of an interrupted run) and at the end. Nothing outside it is touched.
const SCHEMA: &str = "mltrader_bench";

/// Fuel every player starts with: a tank that never runs dry (the benchmark measures jumps,
/// not refuelling; mltrader's side does the same).
const STARTING_FUEL: i32 = i32::MAX / 2;

/// Credits every player starts with: enough that no purchase is refused for money.
const STARTING_CREDITS: i64 = 1_000_000_000;

/// Units of a good each trade buys, at most (a player holds one good at a time: it buys 1 to
/// this many units of a random good, then sells them all at its next landing).
const MAX_BUY_UNITS: u64 = 10;

/// Seed of the players' generators (player `i` uses this + `i`): a run is the same sequence of
/// jumps and trades every time.
const WORKLOAD_SEED: u64 = 0x7067_6265_6e63_6800; // "pgbench"

/// Time every phase runs before it measures, so connections and caches are warm.
const WARM_UP: Duration = Duration::from_secs(1);

/// What the two sides acknowledge, printed under the table and in the JSON.
const MLTRADER_ACKS: &str = "mltrader acknowledges a jump once both its `depart` record \
    (origin system's log) and its `jump` record (transition log) are written and fdatasync'd \
    (written at once, synced in parallel; recovery voids a `jump` whose `depart` was lost); it \
    tells of a landing once the destination has applied it (the landing is durable with its \
    `jump` record: recovery lands every committed jump), and its `arrive` record is durable \
    before any later action of the player is acknowledged";
const POSTGRES_ACKS: &str = "PostgreSQL acknowledges a jump when COMMIT returns with \
    synchronous_commit=on and fsync=on: the commit's WAL record flushed to disk";

/// What the ratio covers, printed under the table and in the JSON.
const RATIO_COVERS: &str = "jumps (jump, land, jump again) on both sides; the mixed run \
    (jump, land, one trade) is compared by trades/s in its own row";

pub fn run(args: PostgresArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.clients.is_empty(),
        "--clients needs at least one count"
    );
    let players = args
        .players
        .unwrap_or_else(|| args.clients.iter().copied().max().unwrap_or(1));
    anyhow::ensure!(
        (1..=MAX_PLAYERS).contains(&players),
        "--players {players}: must be 1 to {MAX_PLAYERS}"
    );
    for &c in &args.clients {
        anyhow::ensure!(
            (1..=MAX_CLIENTS.min(players)).contains(&c),
            "--clients {c}: each count must be 1 to {MAX_CLIENTS}, and at most --players \
             ({players}): a connection drives at least one player"
        );
    }
    let (seconds, rounds) = match args.size {
        Size::Small => (3.0, 1),
        Size::Large => (10.0, 3),
    };
    let rounds = args.rounds.map_or(rounds, |r| r as usize);
    let config: tokio_postgres::Config = args
        .url
        .parse()
        .with_context(|| format!("--url '{}' is not a PostgreSQL connection string", args.url))?;
    let dir = scratch_dir(args.dir.as_deref(), "postgres")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let plan = Plan {
        config: &config,
        url: &args.url,
        players,
        connections: &args.clients,
        seconds,
        rounds,
    };
    let result = rt.block_on(compare(&plan, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(msg: &str) {
    eprintln!("postgres: {msg}");
}

/// What one run measures.
struct Plan<'a> {
    config: &'a tokio_postgres::Config,
    /// The connection string as given, for messages.
    url: &'a str,
    /// Players jumping at once, on both sides.
    players: usize,
    /// PostgreSQL connection counts to measure, in order.
    connections: &'a [usize],
    /// How long each phase measures, after its warm-up.
    seconds: f64,
    /// Rounds of the jumps comparison.
    rounds: usize,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
struct Report {
    /// PostgreSQL's version and the settings that decide what a COMMIT acknowledges.
    postgres_settings: BTreeMap<String, String>,
    seconds_per_phase: f64,
    /// Raw 100-byte write+fdatasync operations per second in mltrader's scratch directory
    /// (scripts/bench-postgres.sh puts PostgreSQL's cluster beside it): the disk's floor.
    raw_fsyncs_per_s: f64,
    cores: usize,
    load_average_start: Option<f64>,
    load_average_end: Option<f64>,
    /// Players jumping at once, on both sides.
    players: usize,
    /// PostgreSQL, one row a connection count, in the order asked (the first round).
    postgres: Vec<PgRow>,
    /// mltrader's embedded mesh, the same players jumping (the first round).
    mltrader: PhaseFigures,
    /// mltrader's embedded mesh, the same players jumping and trading.
    mltrader_jumps_and_trades: super::mixed::MixedFigures,
    /// mltrader / PostgreSQL's best, trades/s in the mixed run.
    trade_ratio: f64,
    /// Every round of the jumps comparison, the first one included.
    rounds: Vec<Round>,
    /// Over the rounds: the median of PostgreSQL's best jumps/s.
    postgres_jumps_per_s: f64,
    /// Over the rounds: the median of mltrader's jumps/s.
    mltrader_jumps_per_s: f64,
    /// The median of the rounds' ratios (mltrader / PostgreSQL's best, jumps/s, same players).
    ratio: f64,
    target_ratio: f64,
    target_met: bool,
    ratio_covers: &'static str,
    mltrader_acknowledges: &'static str,
    postgres_acknowledges: &'static str,
}

/// PostgreSQL with one connection count: jumping, then jumping and trading.
#[derive(Debug, Serialize)]
struct PgRow {
    connections: usize,
    jumps: PgFigures,
    jumps_and_trades: PgFigures,
}

/// What one PostgreSQL phase measured.
#[derive(Clone, Debug, Default, Serialize)]
struct PgFigures {
    connections: usize,
    /// How long the phase measured (after its warm-up), in seconds.
    seconds: f64,
    /// Jump transactions committed while measuring.
    jumps: usize,
    jumps_per_s: f64,
    /// From BEGIN to COMMIT's return of a jump transaction, in milliseconds.
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    landings_per_s: f64,
    /// Trade transactions committed while measuring (mixed phase only).
    trades: usize,
    trades_per_s: f64,
    /// From BEGIN to COMMIT's return of a trade transaction, in milliseconds.
    trade_p50_ms: f64,
    trade_p99_ms: f64,
    /// Trades the market refused (out of stock, or full), rolled back.
    trades_refused: u64,
}

/// What a phase runs on every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// Jump, land, jump again.
    Jumps,
    /// Jump, land, trade once, jump again.
    JumpsAndTrades,
}

/// Measures the jumps in rounds (each: mltrader's mesh, then PostgreSQL with every connection
/// count, the same players; PostgreSQL's best count is the round's baseline), then the mixed
/// run once on both sides.
async fn compare(plan: &Plan<'_>, dir: &std::path::Path) -> anyhow::Result<Report> {
    let (players, seconds, url) = (plan.players, plan.seconds, plan.url);
    let load_average_start = load_average();
    let raw_fsyncs_per_s = super::raw_fsyncs_per_s(dir, Duration::from_secs(1))?;
    let admin = connect(plan.config, url).await?;
    let settings = server_settings(&admin).await?;
    check_durable(&settings, url)?;
    let most = plan.connections.iter().copied().max().unwrap_or(1);
    check_connections(&settings, most)?;
    let galaxy = Arc::new(Galaxy::default_galaxy());
    progress(&format!(
        "PostgreSQL {} at '{url}': creating schema {SCHEMA} with {players} players",
        settings.get("server_version").map_or("?", String::as_str)
    ));
    create_schema(&admin, &galaxy, players).await?;
    // Nothing of the schema's creation is left to flush while mltrader measures.
    checkpoint(&admin).await;

    let mut rounds = Vec::with_capacity(plan.rounds);
    // Round 1's figures in full, for the tables.
    let mut first: Option<(PhaseFigures, Vec<PgFigures>)> = None;
    for round in 1..=plan.rounds {
        let label = round_label(round, plan.rounds);
        progress(&format!(
            "{label}mltrader: {players} players jumping for {seconds} s..."
        ));
        let mesh_dir = dir.join("mltrader");
        let mut phases = super::jumps::measure(&mesh_dir, players, &[players], seconds).await?;
        let _ = std::fs::remove_dir_all(&mesh_dir);
        let ml = phases.pop().context("measure returned no phase")?;
        let mut pg = Vec::with_capacity(plan.connections.len());
        for &connections in plan.connections {
            pg.push(pg_measure(plan, &admin, &galaxy, connections, Workload::Jumps, &label).await?);
        }
        let pg_jumps = pg
            .iter()
            .map(|f| PgJumps {
                connections: f.connections,
                jumps_per_s: f.jumps_per_s,
            })
            .collect();
        rounds.push(Round::new(ml.jumps_per_s, pg_jumps));
        first.get_or_insert((ml, pg));
    }
    let (mltrader, pg_jumps) = first.context("no round measured")?;

    progress(&format!(
        "mltrader: {players} players jumping and trading for {seconds} s..."
    ));
    let mixed_dir = dir.join("mltrader-mixed");
    let mltrader_jumps_and_trades =
        super::mixed::measure(&mixed_dir, players, seconds, WORKLOAD_SEED).await?;
    let _ = std::fs::remove_dir_all(&mixed_dir);
    let mut postgres = Vec::with_capacity(plan.connections.len());
    for (&connections, jumps) in plan.connections.iter().zip(pg_jumps) {
        let workload = Workload::JumpsAndTrades;
        let jumps_and_trades = pg_measure(plan, &admin, &galaxy, connections, workload, "").await?;
        postgres.push(PgRow {
            connections,
            jumps,
            jumps_and_trades,
        });
    }
    verify(&admin, &galaxy).await?;
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .context("cannot drop the benchmark's schema")?;

    let median = medians(&rounds);
    let best_trades = postgres
        .iter()
        .map(|r| r.jumps_and_trades.trades_per_s)
        .fold(0.0, f64::max);
    let trade_ratio = mltrader_jumps_and_trades.trades_per_s / best_trades.max(f64::MIN_POSITIVE);
    Ok(Report {
        mltrader_jumps_and_trades,
        trade_ratio,
        rounds,
        postgres_jumps_per_s: median.postgres_best_jumps_per_s,
        mltrader_jumps_per_s: median.mltrader_jumps_per_s,
        ratio: median.ratio,
        target_ratio: TARGET_RATIO,
        target_met: median.ratio >= TARGET_RATIO,
        ratio_covers: RATIO_COVERS,
        mltrader_acknowledges: MLTRADER_ACKS,
        postgres_acknowledges: POSTGRES_ACKS,
        postgres_settings: settings,
        seconds_per_phase: seconds,
        raw_fsyncs_per_s,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_start,
        load_average_end: load_average(),
        players,
        postgres,
        mltrader,
    })
}

/// `round 2/3: ` before a phase's progress line, or nothing when there is one round.
fn round_label(round: usize, rounds: usize) -> String {
    if rounds > 1 {
        format!("round {round}/{rounds}: ")
    } else {
        String::new()
    }
}

/// One PostgreSQL phase on `connections` new sessions (players where earlier phases left
/// them), after a checkpoint, so that no earlier phase's pages are flushed during it.
async fn pg_measure(
    plan: &Plan<'_>,
    admin: &tokio_postgres::Client,
    galaxy: &Arc<Galaxy>,
    connections: usize,
    workload: Workload,
    label: &str,
) -> anyhow::Result<PgFigures> {
    let sessions = open_sessions(plan.config, plan.url, connections, plan.players, galaxy).await?;
    checkpoint(admin).await;
    let doing = match workload {
        Workload::Jumps => "jumping",
        Workload::JumpsAndTrades => "jumping and trading",
    };
    progress(&format!(
        "{label}{} players on {connections} connections {doing} for {} s...",
        plan.players, plan.seconds
    ));
    pg_phase(sessions, galaxy, workload, plan.seconds).await
}
