//! `mltrader serve`: recover the data directory, run every system's shard, serve the API until
//! Ctrl-C or SIGTERM, then stop cleanly (flush, snapshot) and exit 0.
//!
//! `--nats URL` keeps the logs in NATS JetStream instead of the data directory (docs/NATS.md):
//! the node claims the galaxy's lease there, renews it, and exits if it loses it; snapshots go
//! to the object store bucket `mlt_snapshots` (with the galaxy's `galaxy.toml`, kept at first
//! start), player logs stay in the data directory.
//!
//! `--demo` also runs a swarm of trader bots (`cli::swarm`) in the same process, playing through
//! the server's own HTTP API, so a new galaxy is alive at once; it stops before the server does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

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
}

/// Bots of `serve --demo` unless `--bots` says otherwise.
pub const DEMO_BOTS: u64 = 20;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    mesh::projector::raise_descriptor_limit();
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
    // Whatever can be refused is refused before the data directory is touched: a refused start
    // leaves no LOCK, archive/ or galaxy.toml behind.
    let instances = instance_policy(&args)?;
    let systems = galaxy_for(&DataDir::at(&args.data), args.galaxy.as_deref(), false)?.len();
    let caps = connection_caps(&args, systems * usize::from(args.max_instances))?;
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
    // Claimed (LOCK held, EPOCH counted up) until this returns: one writer per directory.
    let ownership = FileOwnership::new(&datadir);
    let _claim = ownership.claim(MESH_UNIT)?;
    let mut config = MeshConfig {
        tick_hz: args.tick_hz,
        snapshot_every_records: args.snapshot_every,
        checkpoint_every_ms: args.checkpoint_every_ms,
        instances,
        ..MeshConfig::default()
    };
    config.rules.ticks_per_ly = args.ticks_per_ly;
    let systems = galaxy.len();
    let (storage, lease) = match &args.nats {
        None => (Storage::files(&datadir), None),
        Some(urls) => {
            let (storage, lease) = nats_storage(&args, urls, &datadir).await?;
            (storage, Some(lease))
        }
    };
    let (mesh, report) = Mesh::start_on(storage, datadir, galaxy, config)
        .await
        .with_context(|| format!("cannot recover {}", args.data.display()))?;
    println!("{}", report.summary());
    let api = net::for_serve(mesh.clone()).await?;
    let addr = listener.local_addr()?;
    // Listen before telling anyone where we serve: a signal sent right after is not lost.
    let signalled = shutdown_signal();
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
    let admission = Admission::new(caps);
    let timeouts = Timeouts {
        header: Duration::from_secs(args.header_timeout_s),
        body: Duration::from_secs(args.body_timeout_s),
    };
    // The demo swarm starts once the API serves (it first asks for the map).
    let demo = args.demo.then(|| {
        let url = format!("http://{addr}");
        tokio::spawn(start_demo(url, args.bots as usize))
    });
    let stopped = async move {
        signalled.await;
        match demo {
            Some(task) if task.is_finished() => match task.await {
                Ok(Ok(swarm)) => print!("{}", swarm.stop().await.human()),
                Ok(Err(e)) => eprintln!("the demo swarm did not start: {e:#}"),
                Err(e) => eprintln!("the demo swarm failed: {e}"),
            },
            Some(task) => task.abort(),
            None => {}
        }
    };
    server::serve(listener, api.router, admission.clone(), timeouts, stopped).await;
    let refused = admission.refused();
    if refused.sum() > 0 {
        println!(
            "refused {} connections over the caps ({} over the total, {} over the per-address cap)",
            refused.sum(),
            refused.over_total,
            refused.over_per_ip
        );
    }
    let statuses = mesh.stop().await.context("stopping the mesh")?;
    if let Some(lease) = lease {
        lease.release().await;
    }
    let in_systems: usize = statuses.iter().map(|s| s.population + s.departing).sum();
    let in_jumps: usize = statuses.iter().map(|s| s.in_transit_towards).sum();
    println!(
        "stopped cleanly: {in_systems} players in systems, {in_jumps} in jumps (they land after \
         the next start), logs flushed, snapshots written"
    );
    Ok(ExitCode::SUCCESS)
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
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let signalled = net::shutdown::stop_signal();
    async move {
        signalled.await;
        println!("stopping...");
    }
}

/// The galaxy's lease in NATS, held while this node serves, renewed in the background.
struct NatsLease {
    ownership: std::sync::Arc<nats::NatsOwnership>,
    claim: Claim,
    renewing: tokio::task::JoinHandle<()>,
}

impl NatsLease {
    /// Stops renewing and lets the lease go, so a standby can take over at once.
    async fn release(self) {
        self.renewing.abort();
        let (ownership, claim) = (self.ownership, self.claim);
        let released = tokio::task::spawn_blocking(move || ownership.release(&claim)).await;
        if let Ok(Err(e)) = released {
            eprintln!("could not release the galaxy's lease ({e}); it ends by itself");
        }
    }
}

/// Connects to NATS (credentials, safety check), claims the galaxy's lease, and returns the
/// storage with the logs and snapshots in JetStream (the galaxy kept beside the snapshots).
async fn nats_storage(
    args: &ServeArgs,
    urls: &str,
    datadir: &DataDir,
) -> anyhow::Result<(Storage, NatsLease)> {
    let split = |list: &str| list.split(',').map(|s| s.trim().to_string()).collect();
    let config = nats::NatsConfig {
        urls: split(urls),
        creds_file: args.creds.clone().context("--nats needs --creds")?,
        monitor_urls: split(args.nats_monitor.as_deref().unwrap_or_default()),
        node: args.node.clone().context("--nats needs --node")?,
        safety: nats::Safety::Required,
    };
    let replicas = usize::try_from(args.nats_replicas)?;
    let lease = Duration::from_millis(nats::limits::LEASE_MS);
    let galaxy_file = datadir.galaxy_file();
    let (logs, ownership, claim, snapshots) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let nats = nats::Nats::connect(&config)?;
            let logs = nats::NatsLogs::open(&nats, replicas)?;
            let snapshots =
                nats::NatsSnapshots::open(&nats, nats::snapshots::SNAPSHOTS_BUCKET, replicas)?;
            snapshots.keep_galaxy(
                &std::fs::read(&galaxy_file)?,
                &galaxy_file.display().to_string(),
            )?;
            let ownership =
                nats::NatsOwnership::open(&nats, nats::lease::LEASES_BUCKET, lease, replicas)?;
            let claim = ownership.claim(MESH_UNIT)?;
            Ok((logs, std::sync::Arc::new(ownership), claim, snapshots))
        })
        .await??;
    println!(
        "logs in NATS JetStream at {urls}: galaxy lease claimed, epoch {}",
        claim.epoch
    );
    let renewing = tokio::spawn(renew_forever(ownership.clone(), claim.clone()));
    let storage = Storage {
        logs: std::sync::Arc::new(logs),
        snapshots: std::sync::Arc::new(snapshots),
    };
    Ok((
        storage,
        NatsLease {
            ownership,
            claim,
            renewing,
        },
    ))
}

/// Renews the lease every [`nats::limits::RENEW_EVERY_MS`]; a node that lost it (another
/// claimed it: this one was paused or cut off longer than the lease) stops at once: its log
/// appends would be refused anyway (fencing), and it must not answer players.
async fn renew_forever(ownership: std::sync::Arc<nats::NatsOwnership>, claim: Claim) {
    loop {
        tokio::time::sleep(Duration::from_millis(nats::limits::RENEW_EVERY_MS)).await;
        let (o, c) = (ownership.clone(), claim.clone());
        match tokio::task::spawn_blocking(move || o.renew(&c)).await {
            Ok(Ok(())) => {}
            Ok(Err(store::backend::OwnershipError::NotHeld { .. })) => {
                eprintln!(
                    "lost the galaxy's lease (epoch {}): another node serves it now; stopping",
                    claim.epoch
                );
                std::process::exit(3);
            }
            Ok(Err(e)) => eprintln!("cannot renew the galaxy's lease yet: {e}"),
            Err(e) => eprintln!("cannot renew the galaxy's lease yet: {e}"),
        }
    }
}
