//! `mltrader bench postgres`: the peer a team would otherwise build on. The same jump-and-trade
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
//!   ([`crate::sim::market`]), insert a `trades` row.
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::jumps::PhaseFigures;
use super::rounds::{medians, PgJumps, Round};
use super::{int, load_average, percentile, scratch_dir, Size};
use crate::sim::galaxy::{Galaxy, SystemId};
use crate::sim::goods::{Good, GOOD_COUNT};
use crate::sim::market::{Market, Side};
use crate::sim::rng::Rng;

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

/// Measures mltrader's mesh, then PostgreSQL with every connection count, the same players;
/// PostgreSQL's best count is the baseline. The mixed runs are in the first round only; the
/// later rounds repeat the jumps.
async fn compare(plan: &Plan<'_>, dir: &std::path::Path) -> anyhow::Result<Report> {
    let (players, seconds, url) = (plan.players, plan.seconds, plan.url);
    let load_average_start = load_average();
    let raw_fsyncs_per_s = super::raw_fsyncs_per_s(dir, Duration::from_secs(1))?;
    let admin = connect(plan.config, url).await?;
    let settings = server_settings(&admin).await?;
    check_durable(&settings, url)?;
    let most = plan.connections.iter().copied().max().unwrap_or(1);
    check_connections(&settings, most)?;

    let mltrader = mltrader_jumps(dir, players, seconds, 1, plan.rounds).await?;
    progress(&format!(
        "mltrader: {players} players jumping and trading for {seconds} s..."
    ));
    let mixed_dir = dir.join("mltrader-mixed");
    let mltrader_jumps_and_trades =
        super::mixed::measure(&mixed_dir, players, seconds, WORKLOAD_SEED).await?;
    let _ = std::fs::remove_dir_all(&mixed_dir);

    let galaxy = Arc::new(Galaxy::default_galaxy());
    progress(&format!(
        "PostgreSQL {} at '{url}': creating schema {SCHEMA} with {players} players",
        settings.get("server_version").map_or("?", String::as_str)
    ));
    create_schema(&admin, &galaxy, players).await?;
    let mut postgres = Vec::new();
    for &connections in plan.connections {
        let sessions = open_sessions(plan.config, url, connections, players, &galaxy).await?;
        checkpoint(&admin).await;
        progress(&format!(
            "{players} players on {connections} connections jumping for {seconds} s..."
        ));
        let (sessions, jumps) = pg_phase(sessions, &galaxy, Workload::Jumps, seconds).await?;
        checkpoint(&admin).await;
        progress(&format!(
            "{players} players on {connections} connections jumping and trading for {seconds} s..."
        ));
        let (_, jumps_and_trades) =
            pg_phase(sessions, &galaxy, Workload::JumpsAndTrades, seconds).await?;
        postgres.push(PgRow {
            connections,
            jumps,
            jumps_and_trades,
        });
    }
    let pg_jumps = |rows: &[PgRow]| {
        rows.iter()
            .map(|r| PgJumps {
                connections: r.connections,
                jumps_per_s: r.jumps.jumps_per_s,
            })
            .collect()
    };
    let mut rounds = vec![Round::new(mltrader.jumps_per_s, pg_jumps(&postgres))];
    for round in 2..=plan.rounds {
        let ml = mltrader_jumps(dir, players, seconds, round, plan.rounds).await?;
        let mut pg = Vec::new();
        for &connections in plan.connections {
            let sessions = open_sessions(plan.config, url, connections, players, &galaxy).await?;
            checkpoint(&admin).await;
            progress(&format!(
                "round {round}/{}: {players} players on {connections} connections jumping for \
                 {seconds} s...",
                plan.rounds
            ));
            let (_, jumps) = pg_phase(sessions, &galaxy, Workload::Jumps, seconds).await?;
            pg.push(PgJumps {
                connections,
                jumps_per_s: jumps.jumps_per_s,
            });
        }
        rounds.push(Round::new(ml.jumps_per_s, pg));
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

/// mltrader's jumps, `players` jumping for `seconds` on a new mesh in `dir` (removed after).
async fn mltrader_jumps(
    dir: &std::path::Path,
    players: usize,
    seconds: f64,
    round: usize,
    rounds: usize,
) -> anyhow::Result<PhaseFigures> {
    let of = if rounds > 1 {
        format!("round {round}/{rounds}: ")
    } else {
        String::new()
    };
    progress(&format!(
        "{of}mltrader: {players} players jumping for {seconds} s..."
    ));
    let mesh_dir = dir.join("mltrader");
    let mut phases = super::jumps::measure(&mesh_dir, players, &[players], seconds).await?;
    let _ = std::fs::remove_dir_all(&mesh_dir);
    phases.pop().context("measure returned no phase")
}

fn print_table(r: &Report) {
    let setting = |name: &str| {
        r.postgres_settings
            .get(name)
            .map_or("?", String::as_str)
            .to_string()
    };
    let load = |l: Option<f64>| l.map_or("?".to_string(), |l| format!("{l:.2}"));
    let ms = |p50: f64, p99: f64| format!("{p50:.2} / {p99:.2}");
    println!(
        "bench postgres: {} players jumping, on PostgreSQL {} (fsync={}, synchronous_commit={}, \
         full_page_writes={}, wal_sync_method={}) and on mltrader's embedded mesh of 36 systems",
        r.players,
        setting("server_version"),
        setting("fsync"),
        setting("synchronous_commit"),
        setting("full_page_writes"),
        setting("wal_sync_method"),
    );
    println!(
        "  {} s a phase after {} s of warm-up, {} cores (load average {} at start, {} at end); \
         raw write+fdatasync (100 B) on the same disk {} /s",
        r.seconds_per_phase,
        WARM_UP.as_secs(),
        r.cores,
        load(r.load_average_start),
        load(r.load_average_end),
        int(r.raw_fsyncs_per_s),
    );
    println!();
    println!("  durable jumps (each player: jump, land, jump again)");
    println!(
        "  {:<32} {:>10}  {:>20}",
        "", "jumps /s", "commit p50 / p99 ms"
    );
    for row in &r.postgres {
        let f = &row.jumps;
        println!(
            "  {:<32} {:>10}  {:>20}",
            format!("PostgreSQL, {} connections", row.connections),
            int(f.jumps_per_s),
            ms(f.commit_p50_ms, f.commit_p99_ms),
        );
    }
    let m = &r.mltrader;
    println!(
        "  {:<32} {:>10}  {:>20}",
        "mltrader",
        int(m.jumps_per_s),
        ms(m.commit_p50_ms, m.commit_p99_ms),
    );
    println!();
    println!(
        "  jump, land, one trade, jump again (trade latency: request to durable acknowledgement)"
    );
    println!(
        "  {:<32} {:>10}  {:>10}  {:>20}  {:>7}",
        "", "jumps /s", "trades /s", "trade p50 / p99 ms", "refused"
    );
    for row in &r.postgres {
        let f = &row.jumps_and_trades;
        println!(
            "  {:<32} {:>10}  {:>10}  {:>20}  {:>7}",
            format!("PostgreSQL, {} connections", row.connections),
            int(f.jumps_per_s),
            int(f.trades_per_s),
            ms(f.trade_p50_ms, f.trade_p99_ms),
            f.trades_refused,
        );
    }
    let m = &r.mltrader_jumps_and_trades;
    println!(
        "  {:<32} {:>10}  {:>10}  {:>20}  {:>7}",
        "mltrader",
        int(m.jumps_per_s),
        int(m.trades_per_s),
        ms(m.trade_p50_ms, m.trade_p99_ms),
        m.trades_refused,
    );
    println!(
        "  mltrader / PostgreSQL's best, trades/s: {:.1}x",
        r.trade_ratio
    );
    println!();
    println!(
        "  jumps, round by round (mltrader, then PostgreSQL at every connection count; the \
         tables above are round 1)"
    );
    println!(
        "  {:<8} {:>10}  {:>26}  {:>6}",
        "round", "mltrader", "PostgreSQL's best (conn.)", "ratio"
    );
    for (i, round) in r.rounds.iter().enumerate() {
        println!(
            "  {:<8} {:>10}  {:>26}  {:>5.1}x",
            i + 1,
            int(round.mltrader_jumps_per_s),
            format!(
                "{} ({})",
                int(round.best_postgres_jumps_per_s),
                round.best_postgres_connections
            ),
            round.ratio,
        );
    }
    println!(
        "  {:<8} {:>10}  {:>26}  {:>5.1}x",
        "median",
        int(r.mltrader_jumps_per_s),
        int(r.postgres_jumps_per_s),
        r.ratio,
    );
    println!();
    println!(
        "  mltrader / PostgreSQL's best, jumps/s, median of {} round(s): {:.1}x   target >= \
         {TARGET_RATIO:.0}x: {}",
        r.rounds.len(),
        r.ratio,
        if r.target_met { "met" } else { "NOT met" }
    );
    println!();
    println!("  The ratio is of {RATIO_COVERS}.");
    println!("  {MLTRADER_ACKS}.");
    println!(
        "  {POSTGRES_ACKS} (wal_sync_method={}).",
        setting("wal_sync_method")
    );
    println!(
        "  Latency is from the request to that acknowledgement. A landing on mltrader (travel time \
         0) is the destination's next request, its `arrive` record made durable with the \
         player's next action; on PostgreSQL it is the connection's next transaction, so there \
         the number of connections, not of players, sets the pace."
    );
}

/// Connects to the server, with an error that says how to get one.
async fn connect(config: &tokio_postgres::Config, url: &str) -> anyhow::Result<Client> {
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
async fn server_settings(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
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
fn check_durable(settings: &BTreeMap<String, String>, url: &str) -> anyhow::Result<()> {
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
fn check_connections(
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
async fn checkpoint(admin: &Client) {
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
async fn create_schema(admin: &Client, galaxy: &Galaxy, players: usize) -> anyhow::Result<()> {
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
async fn verify(admin: &Client, galaxy: &Galaxy) -> anyhow::Result<()> {
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
struct Session {
    client: Client,
    sql: Statements,
    pilots: Vec<Pilot>,
    /// The index in `pilots` of the player whose turn is next.
    turn: usize,
}

/// Opens `connections` connections and deals players 0..`players` out to them (player `i` to
/// connection `i % connections`).
async fn open_sessions(
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

/// Runs `workload` on every session for `seconds` after the warm-up; returns the sessions
/// (for the next phase) and the figures.
async fn pg_phase(
    sessions: Vec<Session>,
    galaxy: &Arc<Galaxy>,
    workload: Workload,
    seconds: f64,
) -> anyhow::Result<(Vec<Session>, PgFigures)> {
    let connections = sessions.len();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(connections);
    for mut session in sessions {
        let (galaxy, stop, measuring) = (galaxy.clone(), stop.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let Session {
                client: c,
                sql,
                pilots,
                turn,
            } = &mut session;
            while !stop.load(Ordering::Relaxed) {
                let next = (*turn + 1) % pilots.len();
                let p = &mut pilots[std::mem::replace(turn, next)];
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
            Ok::<_, anyhow::Error>((session, tally))
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut sessions = Vec::with_capacity(connections);
    let mut all = Tally::default();
    for t in tasks {
        let (session, tally) = t.await??;
        sessions.push(session);
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
    Ok((sessions, figures))
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
