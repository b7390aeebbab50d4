//! `mltrader serve`: recover the data directory, run every system's shard, serve the API until
//! Ctrl-C or SIGTERM, then stop cleanly (flush, snapshot) and exit 0.
//!
//! `--nats URL` keeps the logs in NATS JetStream instead of the data directory (docs/NATS.md):
//! [`on_nats`] (this module's child) stands by while another node holds the galaxy's lease, takes
//! over when it expires, and serves while it renews it; snapshots go to the object store bucket
//! `mlt_snapshots` (with the galaxy's `galaxy.toml`, kept at first start), player logs stay in
//! the data directory.
//!
//! `--demo` also runs a swarm of trader bots (`cli::swarm`) in the same process, playing through
//! the server's own HTTP API, so a new galaxy is alive at once; it stops before the server does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

mod grace;
mod on_nats;
mod populations;
mod regions;
mod remote;
mod spread;

use super::common::galaxy_for;
use mesh::instances::InstancePolicy;
use mesh::{Mesh, MeshConfig};
use net::connections::{self, Admission, Caps};
use net::server::{self, Timeouts};
use store::backend::{Claim, FileOwnership, Ownership, Storage, MESH_UNIT};
use store::datadir::DataDir;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, default_value = store::datadir::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Galaxy file (TOML) for a new data directory; default: the built-in stars near Sol.
    #[arg(long)]
    pub galaxy: Option<PathBuf>,
    /// Address of the HTTP API (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Ticks per second of every system's loop.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub tick_hz: u32,
    /// Jump travel time in ticks per light year (default 10: one second a light year at 10 Hz;
    /// 0: instant, a jump lands as soon as the destination hears of it).
    #[arg(long, default_value_t = 10)]
    pub ticks_per_ly: u32,
    /// Market shocks (shortage, boom, glut, strike, blockade: docs/ECONOMY.md) a system draws
    /// per 100,000 ticks on average; 0: quiet markets (tests that watch the logs for writes).
    #[arg(long, default_value_t = sim::shock::SHOCKS_PER_100K_TICKS)]
    pub shocks_per_100k_ticks: u64,
    /// A system snapshots its state after this many records.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_every: u64,
    /// How often the transition log's checkpoint is written, in milliseconds.
    #[arg(long, default_value_t = mesh::checkpoint::CHECKPOINT_EVERY_MS)]
    pub checkpoint_every_ms: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run a swarm of trader bots inside the server, so the galaxy is alive at once.
    #[arg(long)]
    pub demo: bool,
    /// How many bots the demo runs.
    #[arg(long, default_value_t = DEMO_BOTS, requires = "demo",
          value_parser = clap::value_parser!(u64).range(1..=swarm::MAX_BOTS as u64))]
    pub bots: u64,
    /// A system holding more players than this opens an instance of itself ("Sol #2"), which
    /// is filled to half this.
    #[arg(long, default_value_t = 50)]
    pub split_above: usize,
    /// An instance holding fewer players than this for the whole cool-down merges back.
    #[arg(long, default_value_t = 10)]
    pub merge_below: usize,
    /// No split or merge of a system within this many milliseconds of its last one.
    #[arg(long, default_value_t = 5_000)]
    pub instance_cooldown_ms: u64,
    /// The most instances a system may have open, itself included (1: never split).
    #[arg(long, default_value_t = mesh::limits::DEFAULT_MAX_INSTANCES)]
    pub max_instances: u16,
    /// Seconds a connection may take to send a request's head (headers), counted from when it
    /// starts waiting for one: an idle kept-alive connection is closed after this too.
    #[arg(long, default_value_t = server::DEFAULT_HEADER_TIMEOUT_S,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_s: u64,
    /// Seconds a request's body may take to arrive whole, from the end of its head.
    #[arg(long, default_value_t = server::DEFAULT_BODY_TIMEOUT_S,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_s: u64,
    /// Connections open at once, all clients together (default: the open-file limit less what
    /// the mesh keeps in reserve for its logs, snapshots and player logs; more is refused).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address, loopback included (0: no cap).
    #[arg(long, default_value_t = connections::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Keep the logs in NATS JetStream at these servers (client URLs, comma-separated) instead
    /// of the data directory (docs/NATS.md).
    #[arg(long, requires_all = ["creds", "node", "nats_monitor"])]
    pub nats: Option<String>,
    /// With --nats: the credentials file (`user = "..."`, `password = "..."`).
    #[arg(long, requires = "nats")]
    pub creds: Option<PathBuf>,
    /// With --nats: this node's name (in its lease and its connection).
    #[arg(long, requires = "nats")]
    pub node: Option<String>,
    /// With --nats: the monitoring URL of every server (comma-separated), for the safety check
    /// (each must sync every write: `sync_interval: always`).
    #[arg(long, requires = "nats")]
    pub nats_monitor: Option<String>,
    /// With --nats: copies of each log in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub nats_replicas: u64,
    /// With --nats: the galaxy's lease in milliseconds (every node must give the same): a node
    /// that has not renewed it for this long loses it, and a standby takes over. Renewed every
    /// quarter of it.
    #[arg(long, default_value_t = nats::limits::LEASE_MS,
          value_parser = clap::value_parser!(u64).range(nats::limits::MIN_LEASE_MS..=600_000))]
    pub lease_ms: u64,
    /// With --nats: spread the galaxy over every node started so (each serves a share of the
    /// systems, docs/NATS.md "Spread over nodes") instead of one serving node and standbys.
    #[arg(long, requires = "nats")]
    pub spread: bool,
    /// With --spread: the region this node is in (issue 20, docs/REGIONS.md): its --nats
    /// servers are that region's cluster (JetStream domain = the region), and it serves the
    /// systems the galaxy file homes there (`region = "eu"`), with the region's other nodes.
    #[arg(long, requires = "spread")]
    pub region: Option<String>,
    /// With --nats: after Ctrl-C or SIGTERM, give up on a clean stop after this many
    /// milliseconds (NATS unreachable: a lease release or a flush would wait for ever) and exit
    /// with status 4, naming what was given up on. A second signal exits at once.
    #[arg(long, default_value_t = grace::SHUTDOWN_GRACE_MS,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub shutdown_grace_ms: u64,
    /// Do not serve the operator's map (`/`, `/v1/map*`: 404). `/metrics` stays.
    #[arg(long)]
    pub no_map: bool,
}

/// Bots of `serve --demo` unless `--bots` says otherwise.
pub const DEMO_BOTS: u64 = 20;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    mesh::projector::raise_descriptor_limit();
    if args.no_map {
        net::turn_map_off();
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n);
    }
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let start = prepare(&args).await?;
    let Some(urls) = args.nats.clone() else {
        return serve_files(args, start).await;
    };
    // On NATS a stop may wait on an unreachable cluster: bounded from the first signal on.
    let leaving = grace::Leaving::new();
    let node = args.node.clone().unwrap_or_default();
    leaving.arm(&node, args.shutdown_grace_ms);
    let served = if args.spread {
        spread::serve(args, urls, start, leaving.clone()).await
    } else {
        on_nats::serve(args, urls, start).await
    };
    // Returned: what remains is the runtime's shutdown, which waits for blocking NATS calls.
    leaving.at("the runtime's shutdown (NATS calls still waiting for an answer)");
    served
}

/// What every start checks and holds before it serves: refused settings stop it before the
/// data directory is touched.
pub(crate) struct Start {
    pub listener: tokio::net::TcpListener,
    pub caps: Caps,
    pub datadir: DataDir,
    pub galaxy: sim::galaxy::Galaxy,
    pub config: MeshConfig,
    /// Held (LOCK held, EPOCH counted up) until the process ends: one writer per directory.
    pub _local: (FileOwnership, Claim),
}

async fn prepare(args: &ServeArgs) -> anyhow::Result<Start> {
    // Whatever can be refused is refused before the data directory is touched: a refused start
    // leaves no LOCK, archive/ or galaxy.toml behind.
    let instances = instance_policy(args)?;
    let systems = galaxy_for(&DataDir::at(&args.data), args.galaxy.as_deref(), false)?.len();
    let caps = connection_caps(args, systems * usize::from(args.max_instances))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another mltrader running? Use --listen with another port",
                args.listen
            )
        })?;
    let datadir = DataDir::at(&args.data);
    let galaxy = galaxy_for(&datadir, args.galaxy.as_deref(), true)?;
    let ownership = FileOwnership::new(&datadir);
    let claim = ownership.claim(MESH_UNIT)?;
    let mut config = MeshConfig {
        tick_hz: args.tick_hz,
        snapshot_every_records: args.snapshot_every,
        checkpoint_every_ms: args.checkpoint_every_ms,
        instances,
        ..MeshConfig::default()
    };
    config.rules.ticks_per_ly = args.ticks_per_ly;
    config.rules.shocks_per_100k_ticks = args.shocks_per_100k_ticks;
    Ok(Start {
        listener,
        caps,
        datadir,
        galaxy,
        config,
        _local: (ownership, claim),
    })
}

/// The local mode: the logs in the data directory.
async fn serve_files(args: ServeArgs, start: Start) -> anyhow::Result<ExitCode> {
    let systems = start.galaxy.len();
    let storage = Storage::files(&start.datadir);
    let (mesh, report) = Mesh::start_on(storage, start.datadir.clone(), start.galaxy, start.config)
        .await
        .with_context(|| format!("cannot recover {}", args.data.display()))?;
    println!("{}", report.summary());
    let api = net::for_serve(mesh.clone()).await?;
    let addr = start.listener.local_addr()?;
    // Listen before telling anyone where we serve: a signal sent right after is not lost.
    let signalled = shutdown_signal();
    print_serving(systems, &args, addr, &start.caps);
    let (admission, timeouts) = admission_of(&args, start.caps);
    // The demo swarm starts once the API serves (it first asks for the map).
    let demo = start_demo_at(&args, addr);
    let stopped = async move {
        signalled.await;
        stop_demo(demo).await;
    };
    server::serve(
        start.listener,
        api.router,
        admission.clone(),
        timeouts,
        stopped,
    )
    .await;
    print_refused(&admission);
    let statuses = mesh.stop().await.context("stopping the mesh")?;
    print_stopped(&statuses);
    Ok(ExitCode::SUCCESS)
}

/// The line a test or a person reads the address from: "serving ... on http://ADDR".
pub(crate) fn print_serving(systems: usize, args: &ServeArgs, addr: SocketAddr, caps: &Caps) {
    println!(
        "serving {systems} systems from {} on http://{addr} (Ctrl-C to stop)",
        args.data.display()
    );
    println!(
        "connections: at most {} ({} per address), header timeout {} s, body timeout {} s",
        caps.max_total,
        caps.max_per_ip.map_or("no cap".into(), |n| n.to_string()),
        args.header_timeout_s,
        args.body_timeout_s
    );
}

pub(crate) fn admission_of(args: &ServeArgs, caps: Caps) -> (std::sync::Arc<Admission>, Timeouts) {
    let timeouts = Timeouts {
        header: Duration::from_secs(args.header_timeout_s),
        body: Duration::from_secs(args.body_timeout_s),
    };
    (Admission::new(caps), timeouts)
}

/// Starts the demo swarm (if asked) against the API at `addr`.
pub(crate) fn start_demo_at(
    args: &ServeArgs,
    addr: SocketAddr,
) -> Option<tokio::task::JoinHandle<anyhow::Result<swarm::SwarmHandle>>> {
    args.demo.then(|| {
        let url = format!("http://{addr}");
        tokio::spawn(start_demo(url, args.bots as usize))
    })
}

/// Stops the demo swarm (before the server stops), printing its figures.
pub(crate) async fn stop_demo(
    demo: Option<tokio::task::JoinHandle<anyhow::Result<swarm::SwarmHandle>>>,
) {
    match demo {
        Some(task) if task.is_finished() => match task.await {
            Ok(Ok(swarm)) => print!("{}", swarm.stop().await.human()),
            Ok(Err(e)) => eprintln!("the demo swarm did not start: {e:#}"),
            Err(e) => eprintln!("the demo swarm failed: {e}"),
        },
        Some(task) => task.abort(),
        None => {}
    }
}

pub(crate) fn print_refused(admission: &Admission) {
    let refused = admission.refused();
    if refused.sum() > 0 {
        println!(
            "refused {} connections over the caps ({} over the total, {} over the per-address cap)",
            refused.sum(),
            refused.over_total,
            refused.over_per_ip
        );
    }
}

pub(crate) fn print_stopped(statuses: &[mesh::ShardStatus]) {
    let in_systems: usize = statuses.iter().map(|s| s.population + s.departing).sum();
    let in_jumps: usize = statuses.iter().map(|s| s.in_transit_towards).sum();
    println!(
        "stopped cleanly: {in_systems} players in systems, {in_jumps} in jumps (they land after \
         the next start), logs flushed, snapshots written"
    );
}

/// The instance settings of the command line, checked.
fn instance_policy(args: &ServeArgs) -> anyhow::Result<InstancePolicy> {
    let instances = InstancePolicy {
        split_above_players: args.split_above,
        merge_below_players: args.merge_below,
        cooldown_ms: args.instance_cooldown_ms,
        max_instances: args.max_instances,
    };
    instances.check().map_err(|e| {
        anyhow::anyhow!(
            "bad instance settings (--split-above {}, --merge-below {}, --max-instances {}): {e}",
            args.split_above,
            args.merge_below,
            args.max_instances
        )
    })?;
    Ok(instances)
}

/// The connection caps of this start: the total fits the open-file limit less the mesh's
/// reserve (`shards`: systems times the instances each may open); the demo's bots, which
/// connect from this machine, get room beyond the per-address cap.
fn connection_caps(args: &ServeArgs, shards: usize) -> anyhow::Result<Caps> {
    let limit = mesh::projector::descriptor_limit();
    let demo_clients = if args.demo { args.bots as usize } else { 0 };
    let reserve = connections::mesh_reserve_files(limit, shards, demo_clients);
    let max_total = connections::max_connections(limit, reserve, args.max_connections)?;
    let max_per_ip = match args.max_connections_per_ip {
        0 => None,
        n => Some(n + demo_clients),
    };
    println!("file descriptors: limit {limit}, {reserve} kept for the mesh ({shards} shards, player logs)");
    Ok(Caps {
        max_total,
        max_per_ip,
    })
}

/// Starts the demo swarm against the server at `url`, with a seed of its own each start (so
/// its bots' names never clash with an earlier start's on the same data directory).
async fn start_demo(url: String, bots: usize) -> anyhow::Result<swarm::SwarmHandle> {
    use swarm::{
        baseline_bots, http::HttpApi, random_seed, spawn, SwarmConfig, DEFAULT_ATTACK_PERCENT,
        DEFAULT_BASELINE_PERCENT,
    };
    let config = SwarmConfig {
        server: url.clone(),
        bots,
        seed: random_seed(),
        ack_log: None,
        attack_percent: DEFAULT_ATTACK_PERCENT,
        baseline_bots: baseline_bots(bots, DEFAULT_BASELINE_PERCENT),
        // A demo plays on: a broke bot comes back as a new pilot.
        start_over: true,
        progress: true,
    };
    println!(
        "demo: {bots} trader bots (bot-{}-*) play in the galaxy",
        config.seed
    );
    let api = std::sync::Arc::new(HttpApi::new(&url)?);
    spawn(api, config)
        .await
        .context("cannot start the demo swarm")
}

/// Resolves on Ctrl-C or SIGTERM, listened for from this call on.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let signalled = net::shutdown::stop_signal();
    async move {
        signalled.await;
        println!("stopping...");
    }
}
