//! `mltrader swarm`: autonomous trader bots that play through the public HTTP API, learn which
//! routes pay, and so exercise jumps, trades and fights the way players do.
//!
//! ```text
//! mltrader swarm --bots 50 --duration 60 --seed 7 --ack-log acks.jsonl
//! mltrader check --acks acks.jsonl     # every acknowledged action is in the logs
//! ```
//!
//! N bots ([`bot`]) join as `bot-<seed>-<i>` and loop over trips chosen by a learning policy
//! ([`policy`]); a few of them (`--baseline-percent`) choose at random instead. A progress line
//! on stderr every second; a summary at the end ([`stats`]) with the mean profit per trip of
//! learners and random bots in each tenth of the run, the proof that the bots learn. With
//! `--seed` each bot's choices are a function of the seed and of what it sees, so a fresh
//! galaxy gives the same names and the same first choices (the galaxy's timing still differs
//! between runs: bots run concurrently). `--ack-log` writes every acknowledged action
//! ([`acks`]).
//!
//! Also runs inside `mltrader serve --demo` ([`spawn`]), so a new galaxy is alive at once.
//! Never talks to the mesh or the data directory: everything goes through the API.

pub mod ack_log;
pub mod api;
pub mod bot;
pub mod http;
pub mod policy;
pub mod stats;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::watch;

use self::ack_log::AckLog;
use self::api::GameApi;
use self::bot::{Bot, BotConfig, Map, Pauses, Shared};
use self::http::HttpApi;
use self::stats::{progress_line, Counts, Stats, Summary};
use client::ClientOpts;

/// The most bots one swarm runs.
pub const MAX_BOTS: usize = 10_000;
/// How often the progress line is redrawn on a terminal.
pub const PROGRESS_EVERY_MS: u64 = 1_000;
/// How often a progress line is printed when stderr is not a terminal.
pub const PROGRESS_LINE_EVERY_MS: u64 = 5_000;
/// How long the swarm waits for the map (`GET /v1/systems`) before it gives up.
pub const MAP_WAIT_S: u64 = 30;
/// Default chance of opening fire after a landing, in percent.
pub const DEFAULT_ATTACK_PERCENT: u32 = 5;
/// Default share of bots that choose at random (the baseline), in percent.
pub const DEFAULT_BASELINE_PERCENT: u32 = 10;

#[derive(Args, Debug)]
pub struct SwarmArgs {
    /// How many bots.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_BOTS as u64))]
    pub bots: u64,
    /// Stop after this many seconds (default: at Ctrl-C).
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Seed of the bots' names and choices (default: a random one, printed).
    #[arg(long, value_name = "X")]
    pub seed: Option<u64>,
    /// Write every acknowledged action to FILE, one JSON line each (`mltrader check --acks FILE`
    /// verifies them against the logs).
    #[arg(long, value_name = "FILE")]
    pub ack_log: Option<PathBuf>,
    /// Chance of opening fire on another bot after each landing, in percent.
    #[arg(long, default_value_t = DEFAULT_ATTACK_PERCENT, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub attack_percent: u32,
    /// Share of the bots that choose their routes at random instead of learning, in percent:
    /// the baseline the summary compares the learners with.
    #[arg(long, default_value_t = DEFAULT_BASELINE_PERCENT, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub baseline_percent: u32,
    /// A bot stranded with an empty hold (no fuel, and no credits to buy any) joins again as
    /// a new pilot (`bot-S-I.life2`, ...) with the start grant, instead of waiting for ever:
    /// so the random baseline, which loses the spread and goes broke, trades all run long.
    #[arg(long)]
    pub start_over: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// What a swarm is told.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    pub server: String,
    pub bots: usize,
    pub seed: u64,
    pub ack_log: Option<PathBuf>,
    pub attack_percent: u32,
    /// How many of the bots choose at random (the last ones).
    pub baseline_bots: usize,
    /// Broke bots join again as new pilots ([`bot::BotConfig::start_over`]).
    pub start_over: bool,
    /// Print the progress line on stderr.
    pub progress: bool,
}

/// How many of `bots` choose at random when `percent` of them should (rounded to nearest).
pub fn baseline_bots(bots: usize, percent: u32) -> usize {
    (bots * percent as usize + 50) / 100
}

pub fn run(args: SwarmArgs) -> anyhow::Result<ExitCode> {
    if let Some(d) = args.duration {
        anyhow::ensure!(
            d.is_finite() && d > 0.0,
            "--duration {d}: give a number of seconds above 0"
        );
    }
    let config = SwarmConfig {
        server: args.opts.server_url(),
        bots: args.bots as usize,
        seed: args.seed.unwrap_or_else(random_seed),
        ack_log: args.ack_log.clone(),
        attack_percent: args.attack_percent,
        baseline_bots: baseline_bots(args.bots as usize, args.baseline_percent),
        start_over: args.start_over,
        progress: true,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let summary = rt.block_on(async {
        let duration = args.duration.map(Duration::from_secs_f64);
        let signalled = net::shutdown::stop_signal();
        let stop = async move {
            match duration {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = signalled => {}
                    }
                }
                None => signalled.await,
            }
        };
        run_swarm(config, stop).await
    })?;
    if args.opts.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.human());
        if let Some(path) = &args.ack_log {
            println!(
                "  {} acknowledged actions in {} (verify: mltrader check --acks {})",
                summary.acks,
                path.display(),
                path.display()
            );
        }
    }
    Ok(if summary.joined > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(client::EXIT_UNREACHABLE)
    })
}

/// A seed from the OS, for runs without `--seed`.
pub fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // Without a random source the clock will do: the seed only keeps names apart.
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        b = nanos.to_le_bytes();
    }
    // Small numbers make short names.
    u64::from_le_bytes(b) % 1_000_000
}

/// Runs a swarm until `stop` resolves; returns its summary.
pub async fn run_swarm(
    config: SwarmConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let api = Arc::new(HttpApi::new(&config.server)?);
    let handle = spawn(api.clone(), config.clone()).await?;
    stop.await;
    let mut summary = handle.stop().await;
    let follow = api.follow_counts();
    summary.requests_retried = follow.retries;
    summary.server_switches = follow.switches;
    summary.outcome_unknown = follow.outcome_unknown;
    Ok(summary)
}

/// A running swarm.
pub struct SwarmHandle {
    shared: Arc<Shared>,
    config: SwarmConfig,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SwarmHandle {
    /// Stops every bot (a call under way is dropped, its ack not written) and the progress
    /// line; returns the summary.
    pub async fn stop(self) -> Summary {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.shared.stats.summary(
            self.config.bots,
            self.config.baseline_bots,
            self.config.seed,
            &self.config.server,
        )
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

/// Starts a swarm on `api`: fetches the map (waiting for the server up to [`MAP_WAIT_S`]),
/// then starts the bots and the progress line.
pub async fn spawn<A: GameApi>(api: Arc<A>, config: SwarmConfig) -> anyhow::Result<SwarmHandle> {
    anyhow::ensure!(
        (1..=MAX_BOTS).contains(&config.bots),
        "a swarm has 1 to {MAX_BOTS} bots"
    );
    let acks = match &config.ack_log {
        Some(path) => Some(AckLog::create(path)?),
        None => None,
    };
    let map = fetch_map(api.as_ref(), &config.server).await?;
    let shared = Arc::new(Shared {
        stats: Stats::new(),
        acks,
        map,
    });
    let (stop, _) = watch::channel(false);
    let mut tasks = Vec::with_capacity(config.bots + 1);
    for index in 0..config.bots {
        let bot = Bot::new(
            api.clone(),
            shared.clone(),
            BotConfig {
                index,
                seed: config.seed,
                attack_percent: config.attack_percent,
                baseline: index >= config.bots - config.baseline_bots.min(config.bots),
                start_over: config.start_over,
                pauses: Pauses::default(),
            },
        );
        let mut stopped = stop.subscribe();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = bot.run() => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        }));
    }
    if config.progress {
        let shared = shared.clone();
        let bots = config.bots;
        let mut stopped = stop.subscribe();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = progress(&shared.stats, bots) => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
            if std::io::stderr().is_terminal() {
                eprint!("\r\x1b[2K");
            }
        }));
    }
    Ok(SwarmHandle {
        shared,
        config,
        stop,
        tasks,
    })
}

async fn fetch_map<A: GameApi>(api: &A, server: &str) -> anyhow::Result<Map> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(MAP_WAIT_S);
    loop {
        match api.systems().await {
            Ok(systems) => {
                let map = Map::new(systems);
                anyhow::ensure!(!map.is_empty(), "{server} has no systems");
                return Ok(map);
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("no map yet from {server}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => anyhow::bail!(
                "cannot get the map from {server} ({e}); start the galaxy with `mltrader serve`, \
                 or point --server at a running one"
            ),
        }
    }
}

/// Prints the progress line: redrawn every second on a terminal, a line every few seconds
/// otherwise.
async fn progress(stats: &Stats, bots: usize) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        PROGRESS_EVERY_MS
    } else {
        PROGRESS_LINE_EVERY_MS
    };
    let mut before = Counts::default();
    let mut ticks = tokio::time::interval(Duration::from_millis(every));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let now = stats.counts();
        let line = progress_line(stats, bots, now, before);
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        before = now;
    }
}
