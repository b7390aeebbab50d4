//! `mltrader bench postgres`: the peer a team would otherwise build on. The same jump-and-trade
//! workload on PostgreSQL, measured in the same run as mltrader's embedded mesh with the same
//! number of players, reported as a ratio of jumps per second (target: mltrader at least 10x).
//!
//! **What each side acknowledges** (the same durability):
//! - mltrader acknowledges a jump once its `depart` record (in the origin system's log) and then
//!   its `jump` record (in the transition log) are written and fdatasync'd: the jump's commit
//!   point (docs/PROTOCOL.md). Measured by [`super::jumps::measure`], the code `bench jumps` runs.
//! - PostgreSQL acknowledges a jump when its `COMMIT` returns with `synchronous_commit=on` and
//!   `fsync=on`: the commit's WAL record is flushed to disk (with fsync or fdatasync, per the
//!   server's `wal_sync_method`). The benchmark reads these settings from the server, prints
//!   them, and refuses to compare against a server that does not flush its commits.
//!
//! **The workload on PostgreSQL**, in a schema of its own ([`SCHEMA`], dropped at the start and
//! the end): tables of players (with their system, NULL while in flight), transitions, markets,
//! cargo and trades; the lanes stay in memory (the default galaxy). Each client connection
//! drives one player, like one task a player on the mesh side, and loops:
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
//! Fair to PostgreSQL: prepared statements on every connection; the statements of a
//! transaction that do not depend on each other are pipelined (one round trip); no foreign
//! keys; several client counts are measured ([`DEFAULT_CLIENTS`]) and the best one is the
//! baseline. mltrader's trade API does not exist yet, so the ratio is of jumps only; the
//! trades are PostgreSQL's row alone. Both sides share this machine's cores with their
//! clients. Prints figures; never asserts. By hand only: `scripts/bench-postgres.sh` installs
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
    /// Client connections to measure, comma-separated: each drives one player, and mltrader
    /// is measured with the same number of players. The best PostgreSQL figure is the baseline.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_CLIENTS)]
    pub clients: Vec<usize>,
    /// Where to put mltrader's scratch data directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Client counts measured by default. PostgreSQL's throughput depends on it (more
/// connections share more commits per WAL flush, until the backends crowd the cores), so a
/// few are measured and the best one is kept; 64 is the count `bench jumps` uses for latency.
pub const DEFAULT_CLIENTS: [usize; 3] = [16, 64, 256];

/// The most client connections one phase opens (each is a PostgreSQL backend process).
const MAX_CLIENTS: usize = 1_000;

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
const MLTRADER_ACKS: &str = "mltrader acknowledges a jump once its `depart` record (origin \
    system's log) and then its `jump` record (transition log) are written and fdatasync'd";
const POSTGRES_ACKS: &str = "PostgreSQL acknowledges a jump when COMMIT returns with \
    synchronous_commit=on and fsync=on: the commit's WAL record flushed to disk";

pub fn run(args: PostgresArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.clients.is_empty(),
        "--clients needs at least one count"
    );
    for &c in &args.clients {
        anyhow::ensure!(
            (1..=MAX_CLIENTS).contains(&c),
            "--clients {c}: each count must be 1 to {MAX_CLIENTS}"
        );
    }
    let seconds = match args.size {
        Size::Small => 3.0,
        Size::Large => 10.0,
    };
    let config: tokio_postgres::Config = args
        .url
        .parse()
        .with_context(|| format!("--url '{}' is not a PostgreSQL connection string", args.url))?;
    let dir = scratch_dir(args.dir.as_deref(), "postgres")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(compare(&config, &args.url, &args.clients, seconds, &dir));
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
    /// One row a client count, in the order asked.
    rows: Vec<Row>,
    /// The client count at which PostgreSQL made the most jumps/s: the baseline.
    best_postgres_clients: usize,
    postgres_jumps_per_s: f64,
    /// mltrader's jumps/s with as many players as PostgreSQL's best client count.
    mltrader_jumps_per_s: f64,
    /// mltrader / PostgreSQL, jumps/s, at the same player count.
    ratio: f64,
    target_ratio: f64,
    target_met: bool,
    ratio_covers: &'static str,
    mltrader_acknowledges: &'static str,
    postgres_acknowledges: &'static str,
}

/// One client count: PostgreSQL jumping, PostgreSQL jumping and trading, mltrader jumping.
#[derive(Debug, Serialize)]
struct Row {
    clients: usize,
    postgres_jumps: PgFigures,
    postgres_mixed: PgFigures,
    mltrader_jumps: PhaseFigures,
    /// mltrader / PostgreSQL jumps/s (jumps-only runs).
    ratio: f64,
}

/// What one PostgreSQL phase measured.
#[derive(Clone, Debug, Default, Serialize)]
struct PgFigures {
    clients: usize,
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

/// Measures every client count on both sides, interleaved (so a change in the machine's load
/// touches both), then picks PostgreSQL's best count as the baseline.
async fn compare(
    config: &tokio_postgres::Config,
    url: &str,
    clients: &[usize],
    seconds: f64,
    dir: &std::path::Path,
) -> anyhow::Result<Report> {
    let load_average_start = load_average();
    let raw_fsyncs_per_s = super::raw_fsyncs_per_s(dir, Duration::from_secs(1))?;
    let admin = connect(config, url).await?;
    let settings = server_settings(&admin).await?;
    check_durable(&settings, url)?;
    let most = clients.iter().copied().max().unwrap_or(1);
    check_connections(&settings, most)?;
    let galaxy = Arc::new(Galaxy::default_galaxy());
    progress(&format!(
        "PostgreSQL {} at '{url}': creating schema {SCHEMA} with {most} players",
        settings.get("server_version").map_or("?", String::as_str)
    ));
    create_schema(&admin, &galaxy, most).await?;
    let mut rows = Vec::new();
    for &count in clients {
        let sessions = open_sessions(config, url, count, &galaxy).await?;
        checkpoint(&admin).await;
        progress(&format!("{count} clients jumping for {seconds} s..."));
        let (sessions, jumps) = pg_phase(sessions, &galaxy, Workload::Jumps, seconds).await?;
        checkpoint(&admin).await;
        progress(&format!(
            "{count} clients jumping and trading for {seconds} s..."
        ));
        let (sessions, mixed) =
            pg_phase(sessions, &galaxy, Workload::JumpsAndTrades, seconds).await?;
        drop(sessions);
        progress(&format!(
            "mltrader: {count} players jumping for {seconds} s..."
        ));
        let mesh_dir = dir.join(format!("players-{count}"));
        let mut phases = super::jumps::measure(&mesh_dir, count, &[count], seconds).await?;
        let _ = std::fs::remove_dir_all(&mesh_dir);
        let mesh = phases.pop().context("measure returned no phase")?;
        rows.push(Row {
            clients: count,
            ratio: mesh.jumps_per_s / jumps.jumps_per_s.max(f64::MIN_POSITIVE),
            postgres_jumps: jumps,
            postgres_mixed: mixed,
            mltrader_jumps: mesh,
        });
    }
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .context("cannot drop the benchmark's schema")?;
    let best = rows
        .iter()
        .max_by(|a, b| {
            a.postgres_jumps
                .jumps_per_s
                .total_cmp(&b.postgres_jumps.jumps_per_s)
        })
        .context("no client count measured")?;
    Ok(Report {
        best_postgres_clients: best.clients,
        postgres_jumps_per_s: best.postgres_jumps.jumps_per_s,
        mltrader_jumps_per_s: best.mltrader_jumps.jumps_per_s,
        ratio: best.ratio,
        target_ratio: TARGET_RATIO,
        target_met: best.ratio >= TARGET_RATIO,
        ratio_covers: "jumps only: mltrader's trade API does not exist yet, so trades are \
            measured on PostgreSQL alone (a separate row)",
        mltrader_acknowledges: MLTRADER_ACKS,
        postgres_acknowledges: POSTGRES_ACKS,
        postgres_settings: settings,
        seconds_per_phase: seconds,
        raw_fsyncs_per_s,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_start,
        load_average_end: load_average(),
        rows,
    })
}

fn print_table(r: &Report) {
    let setting = |name: &str| {
        r.postgres_settings
            .get(name)
            .map_or("?", String::as_str)
            .to_string()
    };
    let load = |l: Option<f64>| l.map_or("?".to_string(), |l| format!("{l:.2}"));
    println!(
        "bench postgres: PostgreSQL {} (fsync={}, synchronous_commit={}, full_page_writes={}, \
         wal_sync_method={}) against mltrader's embedded mesh of 36 systems",
        setting("server_version"),
        setting("fsync"),
        setting("synchronous_commit"),
        setting("full_page_writes"),
        setting("wal_sync_method"),
    );
    println!(
        "  {} s a phase after {} s of warm-up, {} cores (load average {} at start, {} at end)",
        r.seconds_per_phase,
        WARM_UP.as_secs(),
        r.cores,
        load(r.load_average_start),
        load(r.load_average_end),
    );
    println!(
        "  raw write+fdatasync (100 B): {} /s in mltrader's scratch directory (the disk's floor)",
        int(r.raw_fsyncs_per_s)
    );
    println!();
    println!("  durable jumps (one player a client; jump, land, jump again)");
    println!(
        "  {:>7}  {:>13}  {:>18}  {:>13}  {:>18}  {:>9}",
        "players",
        "PostgreSQL /s",
        "commit p50/p99 ms",
        "mltrader /s",
        "commit p50/p99 ms",
        "ratio"
    );
    for row in &r.rows {
        let (pg, ml) = (&row.postgres_jumps, &row.mltrader_jumps);
        println!(
            "  {:>7}  {:>13}  {:>18}  {:>13}  {:>18}  {:>8.1}x",
            row.clients,
            int(pg.jumps_per_s),
            format!("{:.2} / {:.2}", pg.commit_p50_ms, pg.commit_p99_ms),
            int(ml.jumps_per_s),
            format!("{:.2} / {:.2}", ml.commit_p50_ms, ml.commit_p99_ms),
            row.ratio,
        );
    }
    println!();
    println!("  trades on PostgreSQL (jump, land, one trade, jump again; no mltrader row yet)");
    println!(
        "  {:>7}  {:>13}  {:>13}  {:>18}  {:>9}",
        "players", "jumps /s", "trades /s", "trade p50/p99 ms", "refused"
    );
    for row in &r.rows {
        let m = &row.postgres_mixed;
        println!(
            "  {:>7}  {:>13}  {:>13}  {:>18}  {:>9}",
            row.clients,
            int(m.jumps_per_s),
            int(m.trades_per_s),
            format!("{:.2} / {:.2}", m.trade_p50_ms, m.trade_p99_ms),
            m.trades_refused,
        );
    }
    println!();
    println!(
        "  PostgreSQL's best: {} jumps/s with {} clients; mltrader with {} players: {} jumps/s",
        int(r.postgres_jumps_per_s),
        r.best_postgres_clients,
        r.best_postgres_clients,
        int(r.mltrader_jumps_per_s),
    );
    println!(
        "  mltrader / PostgreSQL, jumps/s: {:.1}x   target >= {TARGET_RATIO:.0}x: {}",
        r.ratio,
        if r.target_met { "met" } else { "NOT met" }
    );
    println!();
    println!("  The ratio is of {}.", r.ratio_covers);
    println!("  {MLTRADER_ACKS}.");
    println!(
        "  {POSTGRES_ACKS} (wal_sync_method={}).",
        setting("wal_sync_method")
    );
    println!(
        "  Latency is from the request to that acknowledgement. A landing on mltrader waits for \
         the destination's next tick (10 ms at 100 Hz); on PostgreSQL it is the client's next \
         transaction."
    );
}

/// Connects to the server, with an error that says how to get one.
async fn connect(config: &tokio_postgres::Config, url: &str) -> anyhow::Result<Client> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at '{url}': {e}\n\
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
            "SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'fsync', \
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
fn check_connections(settings: &BTreeMap<String, String>, clients: usize) -> anyhow::Result<()> {
    let max: usize = settings
        .get("max_connections")
        .and_then(|m| m.parse().ok())
        .unwrap_or(usize::MAX);
    // One more for the benchmark's own administrative connection.
    anyhow::ensure!(
        clients < max,
        "--clients {clients} needs {} connections; the server allows max_connections={max}. \
         Start it with -c max_connections={} (scripts/bench-postgres.sh sets 300) or measure \
         fewer clients.",
        clients + 1,
        clients + 10,
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

/// One client connection and the player it drives. Only this session changes its player's
/// rows, so what it remembers (where the player is, what it holds) matches the database.
struct Session {
    client: Client,
    sql: Statements,
    player: String,
    here: SystemId,
    rng: Rng,
    /// The one good the player holds, and how many units (sold at the next trade).
    holding: Option<(Good, u32)>,
}

/// Opens `count` connections, one for each of players 0..count.
async fn open_sessions(
    config: &tokio_postgres::Config,
    url: &str,
    count: usize,
    galaxy: &Galaxy,
) -> anyhow::Result<Vec<Session>> {
    progress(&format!("opening {count} connections..."));
    let mut sessions = Vec::with_capacity(count);
    for i in 0..count {
        let client = connect(config, url).await?;
        let sql = Statements::prepare(&client)
            .await
            .context("cannot prepare the workload's statements")?;
        let player = player_name(i);
        let row = client
            .query_one(
                &format!("SELECT system FROM {SCHEMA}.players WHERE name = $1"),
                &[&player],
            )
            .await
            .with_context(|| format!("cannot read player '{player}'"))?;
        let system: Option<String> = row.get(0);
        let here = system
            .as_deref()
            .and_then(|slug| galaxy.by_slug(slug))
            .with_context(|| format!("player '{player}' is not in a system ({system:?})"))?;
        sessions.push(Session {
            client,
            sql,
            player,
            here,
            rng: Rng::from_seed(WORKLOAD_SEED.wrapping_add(i as u64)),
            holding: None,
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
    let clients = sessions.len();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(clients);
    for mut session in sessions {
        let (galaxy, stop, measuring) = (galaxy.clone(), stop.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let to = pick_neighbour(&galaxy, session.here, &mut session.rng);
                let started = Instant::now();
                let transition = jump(&mut session, &galaxy, to).await?;
                if measuring.load(Ordering::Relaxed) {
                    tally.jump_ms.push(started.elapsed().as_secs_f64() * 1e3);
                }
                land(&mut session, &galaxy, to, transition).await?;
                if measuring.load(Ordering::Relaxed) {
                    tally.landings += 1;
                }
                if workload == Workload::JumpsAndTrades {
                    let started = Instant::now();
                    let done = trade(&mut session, &galaxy).await?;
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
    let mut sessions = Vec::with_capacity(clients);
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
        clients,
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
async fn jump(s: &mut Session, galaxy: &Galaxy, to: SystemId) -> anyhow::Result<i64> {
    let c = &s.client;
    let lock: [Param; 1] = [&s.player];
    let ((), row) = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN"),
        c.query_one(&s.sql.lock_player, &lock),
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
            anyhow::bail!("'{}' was refused a jump: {why}", s.player);
        }
    };
    let (from_slug, to_slug) = (galaxy.slug(from), galaxy.slug(to));
    let (fuel_after, version_after) = (fuel - cost, version + 1);
    let depart: [Param; 2] = [&s.player, &cost];
    let record: [Param; 6] = [
        &s.player,
        &from_slug,
        &to_slug,
        &fuel_after,
        &credits,
        &version_after,
    ];
    let (departed, recorded, ()) = tokio::try_join!(
        biased;
        c.execute(&s.sql.depart, &depart),
        c.query_one(&s.sql.record_jump, &record),
        c.batch_execute("COMMIT"),
    )?;
    anyhow::ensure!(departed == 1, "'{}' did not depart", s.player);
    Ok(recorded.get(0))
}

/// The landing transaction: the player, in flight, arrives in `to`. One round trip.
async fn land(
    s: &mut Session,
    galaxy: &Galaxy,
    to: SystemId,
    transition: i64,
) -> anyhow::Result<()> {
    let c = &s.client;
    let to_slug = galaxy.slug(to);
    let arrive: [Param; 2] = [&s.player, &to_slug];
    let mark: [Param; 1] = [&transition];
    let ((), arrived, marked, ()) = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN"),
        c.execute(&s.sql.arrive, &arrive),
        c.execute(&s.sql.mark_landed, &mark),
        c.batch_execute("COMMIT"),
    )?;
    // Only this session moves its player, and it lands what it launched.
    anyhow::ensure!(
        arrived == 1 && marked == 1,
        "'{}' did not land (transition {transition})",
        s.player
    );
    s.here = to;
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
async fn trade(s: &mut Session, galaxy: &Galaxy) -> anyhow::Result<bool> {
    let order = choose_order(&mut s.rng, s.holding);
    let system = galaxy.slug(s.here);
    let good = order.good.name();
    let c = &s.client;
    // Market first, then player, on every connection: no deadlock.
    let lock_market: [Param; 2] = [&system, &good];
    let lock_player: [Param; 1] = [&s.player];
    let ((), market, player) = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN"),
        c.query_one(&s.sql.lock_market, &lock_market),
        c.query_one(&s.sql.lock_player, &lock_player),
    )?;
    let stock: i64 = market.get(0);
    let credits: i64 = player.get(2);
    let held = s.holding.map_or(0, |(_, q)| q);
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
    let set_credits: [Param; 2] = [&s.player, &credits_after];
    let set_cargo: [Param; 3] = [&s.player, &good, &held_after_sql];
    let record: [Param; 5] = [&s.player, &system, &good, &signed_qty, &signed_cr];
    tokio::try_join!(
        biased;
        c.execute(&s.sql.set_stock, &set_stock),
        c.execute(&s.sql.set_credits, &set_credits),
        c.execute(&s.sql.set_cargo, &set_cargo),
        c.execute(&s.sql.record_trade, &record),
        c.batch_execute("COMMIT"),
    )?;
    s.holding = (held_after > 0).then_some((order.good, held_after));
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
