//! The mesh: star systems as shards, each with its own loop and log, and the handoff of players
//! between them through the transition log.
//!
//! In the embedded default one process runs every shard as a tokio task, spread over the
//! machine's cores by the runtime. Shards share no mutable game state; the routing directory
//! ([`directory`]) is a hint that the owning shard always has the last word on.
//!
//! A crowded system opens instances of itself ([`instances`]): more shards for the same star
//! system ("Sol #2"), each with its own log and loop, which players are moved to and from
//! through the same jump protocol. A shard is named by an [`InstanceId`] (system, number);
//! instance 1 is the system itself.
//!
//! [`Mesh`] is the whole API the network and command-line layers use: join, refuel, jump, look,
//! status, stop. It never exposes a shard's state by reference.

pub mod ack_log;
pub mod audit;
pub mod checkpoint;
pub mod codec;
pub mod compact;
pub mod departures;
pub mod dilation;
pub mod directory;
pub mod feed;
pub mod instances;
pub mod limits;
pub mod links;
pub mod metrics;
pub mod price_sync;
pub mod projector;
pub mod protocol;
pub mod recovery;
#[cfg(test)]
mod seam_tests;
pub mod shard;
pub mod spread_news;
pub mod stats;
#[cfg(test)]
mod test_support;
pub mod trading;
pub mod units;
#[cfg(test)]
mod units_tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use directory::{Directory, Landed, Place, SystemPlace};
use feed::FeedEvent;
use instances::InstanceLoad;
use recovery::RecoveryReport;
use shard::{Shard, ShardMessage};
use sim::galaxy::{Galaxy, SystemId};
use sim::ids::Tick;
use sim::instance::InstanceId;
use sim::player::Player;
use sim::rules::Rules;
use sim::system::Reject;
use store::backend::Storage;
use store::datadir::DataDir;
use store::log::{Log, LogError};
use store::seq::Seq;

pub use limits::SHARD_QUEUE_LEN;
use limits::{MAX_ROUTE_ATTEMPTS, MOVE_WAIT};

/// How the mesh runs.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Ticks per second of every shard's loop.
    pub tick_hz: u32,
    pub rules: Rules,
    /// A shard snapshots after this many records.
    pub snapshot_every_records: u64,
    /// How often the transition log's checkpoint is written, in milliseconds.
    pub checkpoint_every_ms: u64,
    /// How long a system's published prices take to reach the galaxy-wide economy view, in
    /// milliseconds (systems hear each other by gossip along the lanes).
    pub economy_delay_ms: u64,
    /// When crowded systems open instances and emptied ones close ([`instances`]).
    pub instances: instances::InstancePolicy,
}

impl Default for MeshConfig {
    fn default() -> MeshConfig {
        MeshConfig {
            tick_hz: 10,
            rules: Rules::default(),
            snapshot_every_records: 100_000,
            checkpoint_every_ms: checkpoint::CHECKPOINT_EVERY_MS,
            economy_delay_ms: 1_000,
            instances: instances::InstancePolicy::default(),
        }
    }
}

/// Why a mesh request failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum MeshError {
    #[error("{0}")]
    Rejected(#[from] Reject),
    #[error("no player '{0}'; join first")]
    UnknownPlayer(String),
    #[error("'{0}' is in a jump; wait for the landing")]
    InJump(String),
    #[error("storage failure: {0}")]
    Storage(LogError),
    #[error("snapshot failure: {0}")]
    Snapshot(String),
    #[error("the galaxy is shutting down")]
    ShuttingDown,
    /// A bounded queue is full ([`limits`]); nothing was written: ask again in a moment.
    #[error("{0}; nothing was done, try again in a moment")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl MeshError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            MeshError::Rejected(r) => r.code(),
            MeshError::UnknownPlayer(_) => "unknown_player",
            MeshError::InJump(_) => "in_jump",
            MeshError::Storage(_) => "storage",
            MeshError::Snapshot(_) => "snapshot",
            MeshError::ShuttingDown => "shutting_down",
            MeshError::Busy(_) => "busy",
            MeshError::Internal(_) => "internal",
        }
    }
}

/// A committed jump, as told to the player.
#[derive(Clone, Debug, Serialize)]
pub struct JumpAck {
    /// The transfer id, `<origin slug>:<number>`, the same in every log.
    pub xfer: String,
    #[serde(skip)]
    pub from: SystemId,
    #[serde(skip)]
    pub to: SystemId,
    pub travel_ticks: u64,
    /// Travel time at the configured tick rate.
    pub travel_ms: u64,
    /// The player as they travel.
    pub player: Player,
}

/// A shard's figures.
#[derive(Clone, Debug, Serialize)]
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
    /// A primary's open instances (in [`Mesh::status`]; empty elsewhere).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<ShardStatus>,
    /// Players in the instance.
    pub population: usize,
    pub departing: usize,
    pub in_transit_towards: usize,
    pub tick: Tick,
    pub tick_p50_us: u32,
    pub tick_p99_us: u32,
    /// How late the last minute's ticks started after they were due, in microseconds.
    pub tick_late_p50_us: u32,
    pub tick_late_p99_us: u32,
    /// Time dilation: how fast the system's clock runs (1.0 = real time, at least 0.1), slowed
    /// when its ticks cannot finish within the budget ([`dilation`]).
    pub dilation: f64,
    /// The tick period now, in microseconds (the budget, 1/tick rate, when not dilated).
    pub tick_period_us: u64,
    pub log_durable_seq: Seq,
    pub log_next_seq: Seq,
    pub state_hash: String,
    pub failed: Option<String>,
}

/// How a committed jump reaches its destination.
pub enum Handoff {
    /// One process runs the whole galaxy: a jump commits with its record in the galaxy's
    /// transition log (the parallel commit, [`departures`]) and is handed over in memory.
    Local { transitions: Log },
    /// A node of a spread galaxy runs some units (a system with its instances): a jump commits
    /// at its durable `depart`; one towards another unit travels on its pair subject
    /// ([`units`], docs/PROTOCOL.md "Across nodes").
    Units(units::Units),
}

impl Handoff {
    /// The galaxy's transition log (only in one process).
    pub fn transitions(&self) -> Option<&Log> {
        match self {
            Handoff::Local { transitions } => Some(transitions),
            Handoff::Units(_) => None,
        }
    }
}

/// What every shard and pipeline shares: read-only settings, the transition log (append-only,
/// thread-safe), the routing hint, the event feed, and the queues of all shards.
pub struct Context {
    pub galaxy: Arc<Galaxy>,
    pub config: MeshConfig,
    /// The players' history logs are files here ([`projector`]); `net` reads them.
    pub datadir: DataDir,
    /// The logs and snapshots the shards write (files, or memory in tests). On a node of a
    /// spread galaxy each unit writes its logs under its own lease ([`Context::storage_of`]).
    pub storage: Storage,
    /// How a committed jump reaches its destination ([`Handoff`]).
    pub handoff: Handoff,
    pub directory: Directory,
    /// Which committed jumps are not settled yet: how far back recovery must read.
    pub checkpoint: checkpoint::Checkpoint,
    /// Writes the players' history logs.
    pub projector: projector::Projector,
    /// The event feed ([`feed`]): durable events of every system.
    events: broadcast::Sender<Arc<FeedEvent>>,
    /// The queue of every running shard, primaries and instances: added when one starts,
    /// removed when it retires (an instance) or its unit is handed over (a node of a spread
    /// galaxy). std RwLock: held for a map operation only, never across an await.
    queues: RwLock<BTreeMap<InstanceId, mpsc::Sender<ShardMessage>>>,
    /// Set (under the `queues` lock) when the mesh stops: no shard starts after it.
    stopping: AtomicBool,
    /// The galaxy-wide economy view ([`price_sync`]), fed through `published`.
    prices: Arc<Mutex<price_sync::PriceView>>,
    published: mpsc::Sender<(tokio::time::Instant, price_sync::Published)>,
    /// On a node of a spread galaxy, the carrier of news to and from the other nodes
    /// ([`spread_news`]), attached once after the start; unset in one process.
    news: OnceLock<spread_news::NodeNews>,
    /// What `GET /metrics` shows of the mesh ([`metrics`]): atomics the shards add to.
    pub metrics: metrics::MeshMetrics,
}

impl Context {
    /// Whether anyone listens to the event feed (if not, there is nothing to build).
    pub fn feed_heard(&self) -> bool {
        self.events.receiver_count() > 0 || self.tells_news()
    }

    /// Publishes a durable event, here and to the other nodes ([`spread_news`]); never blocks
    /// (nobody listening: nobody to tell).
    pub fn publish(&self, event: FeedEvent) {
        let event = Arc::new(event);
        self.event_away(&event);
        let _ = self.events.send(event);
    }

    /// The queue of the shard of a system's instance (None if it does not run here).
    pub fn shard(&self, at: InstanceId) -> Option<mpsc::Sender<ShardMessage>> {
        self.queues_read().get(&at).cloned()
    }

    fn queues_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<InstanceId, mpsc::Sender<ShardMessage>>> {
        self.queues.read().unwrap_or_else(|e| e.into_inner())
    }

    fn queues_write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<InstanceId, mpsc::Sender<ShardMessage>>> {
        self.queues.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The running shards of `system`: its primary first, then its instances.
    fn shards_of(&self, system: SystemId) -> Vec<InstanceId> {
        let lo = InstanceId { system, n: 0 };
        let hi = InstanceId {
            system,
            n: u16::MAX,
        };
        self.queues_read()
            .range(lo..=hi)
            .map(|(at, _)| *at)
            .collect()
    }

    /// The running instances of `system` other than its primary.
    pub fn instance_ids(&self, system: SystemId) -> Vec<InstanceId> {
        let mut all = self.shards_of(system);
        all.retain(|at| !at.is_primary());
        all
    }

    /// Whether the primary of `system` runs here.
    pub fn runs(&self, system: SystemId) -> bool {
        self.queues_read()
            .contains_key(&InstanceId::primary(system))
    }

    /// Forgets a retired instance's queue.
    pub fn close_instance(&self, at: InstanceId) {
        self.queues_write().remove(&at);
    }

    /// The storage the shards of `system` write to: the unit's own (its lease's epoch) on a
    /// node of a spread galaxy, the mesh's otherwise.
    pub fn storage_of(&self, system: SystemId) -> Storage {
        match &self.handoff {
            Handoff::Units(u) => u.storage_of(system).unwrap_or_else(|| self.storage.clone()),
            Handoff::Local { .. } => self.storage.clone(),
        }
    }

    /// Notes, for the transition log's checkpoint, that jump `tseq` no longer waits for
    /// `what` (only in one process: a spread galaxy has no transition log).
    pub fn settle_checkpoint(&self, tseq: Seq, what: u8) {
        if matches!(self.handoff, Handoff::Local { .. }) {
            self.checkpoint.settle(tseq, what);
        }
    }

    /// Whether the mesh is stopping (no instance opens any more).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// Starts the shard of instance `at` at run time, once its `split` is durable in the primary's
/// log: its state comes from its log (a number used before continues its log; its state is
/// empty, as it was retired empty).
pub(crate) async fn open_instance(ctx: Arc<Context>, at: InstanceId) -> Result<(), MeshError> {
    assert!(!at.is_primary(), "a primary runs from the start");
    let (storage, g) = (ctx.storage_of(at.system), ctx.galaxy.clone());
    let sys = tokio::task::spawn_blocking(move || recovery::recover_system(&storage, &g, at))
        .await
        .map_err(|e| MeshError::Internal(e.to_string()))??;
    if sys.state.population() > 0 {
        let _ = sys.log.close();
        return Err(MeshError::Internal(format!(
            "{} holds players, but it was closed empty",
            sys.log.name()
        )));
    }
    let (tx, rx) = mpsc::channel(SHARD_QUEUE_LEN);
    {
        let mut map = ctx.queues_write();
        if ctx.is_stopping() {
            drop(map);
            let _ = sys.log.close();
            return Err(MeshError::ShuttingDown);
        }
        map.insert(at, tx.clone());
    }
    let shard = Shard::new(
        ctx.clone(),
        sys.state,
        sys.log,
        sys.replayed,
        Vec::new(),
        tx,
    );
    tokio::spawn(shard.run(rx));
    Ok(())
}

/// The load of each open instance as recovery found it, by system: what the instance will
/// report at its first tick (its players, its prepared jumps, the jumps handed to it to land).
/// `recovered`: each instance's state and how many jumps recovery hands it to land.
fn recovered_instance_loads<'a>(
    recovered: impl Iterator<Item = (&'a sim::system::SystemState, usize)>,
) -> BTreeMap<SystemId, Vec<(u16, InstanceLoad)>> {
    let mut loads: BTreeMap<SystemId, Vec<(u16, InstanceLoad)>> = BTreeMap::new();
    for (state, arriving) in recovered.filter(|(s, _)| !s.is_primary()) {
        let primary = InstanceId::primary(state.id);
        let load = InstanceLoad {
            players: state.players.len(),
            departing: state.departing.len(),
            incoming: arriving,
            landed_from_primary: state.landed_upto.get(&primary).copied().unwrap_or_default(),
        };
        loads
            .entry(state.id)
            .or_default()
            .push((state.instance, load));
    }
    loads
}

/// The running mesh. Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    ctx: Arc<Context>,
}

impl Mesh {
    /// Recovers `datadir` and starts a shard per system. Must be called inside a tokio runtime.
    pub async fn start(
        datadir: DataDir,
        galaxy: Galaxy,
        config: MeshConfig,
    ) -> Result<(Mesh, RecoveryReport), MeshError> {
        Mesh::start_on(Storage::files(&datadir), datadir, galaxy, config).await
    }

    /// Recovers the logs and snapshots of `storage` (and the player logs in `datadir`) and
    /// starts a shard per system. Must be called inside a tokio runtime.
    pub async fn start_on(
        storage: Storage,
        datadir: DataDir,
        galaxy: Galaxy,
        config: MeshConfig,
    ) -> Result<(Mesh, RecoveryReport), MeshError> {
        assert!(config.tick_hz > 0, "tick rate must be positive");
        let galaxy = Arc::new(galaxy);
        let (g, d, st) = (galaxy.clone(), datadir.clone(), storage.clone());
        let recovery_started = std::time::Instant::now();
        let recovered = tokio::task::spawn_blocking(move || recovery::recover_on(&st, &d, &g))
            .await
            .map_err(|e| MeshError::Internal(e.to_string()))??;
        let recovery_took = recovery_started.elapsed();
        let handoff = Handoff::Local {
            transitions: recovered.transitions,
        };
        let ctx = Context::new(storage, datadir, galaxy, config, handoff);
        ctx.metrics.recovered(recovery_took);
        let landings = recovered.landings;
        for j in landings.values().flatten() {
            ctx.checkpoint
                .register(j.tseq, recovered.transitions_start, checkpoint::LANDED);
        }
        tokio::spawn(write_checkpoints(ctx.clone()));
        start_shards(&ctx, recovered.systems, landings);
        Ok((Mesh { ctx }, recovered.report))
    }

    /// A node of a spread galaxy: runs no unit until told to ([`Mesh::add_unit`]); jumps
    /// towards units of other nodes travel through `links`. Must be called inside a tokio
    /// runtime.
    pub fn start_node(
        storage: Storage,
        datadir: DataDir,
        galaxy: Galaxy,
        config: MeshConfig,
        links: Arc<dyn links::Links>,
    ) -> Result<Mesh, MeshError> {
        assert!(config.tick_hz > 0, "tick rate must be positive");
        datadir.create().map_err(|e| {
            MeshError::Internal(format!("cannot create {}: {e}", datadir.root().display()))
        })?;
        let handoff = Handoff::Units(units::Units::new(links));
        let ctx = Context::new(storage, datadir, Arc::new(galaxy), config, handoff);
        Ok(Mesh { ctx })
    }
}

impl Context {
    fn new(
        storage: Storage,
        datadir: DataDir,
        galaxy: Arc<Galaxy>,
        config: MeshConfig,
        handoff: Handoff,
    ) -> Arc<Context> {
        let prices = Arc::new(Mutex::new(price_sync::PriceView::new()));
        let (published, published_rx) = mpsc::channel(limits::GALAXY_VIEW_QUEUE_LEN);
        tokio::spawn(price_sync::run_galaxy_view(
            prices.clone(),
            published_rx,
            std::time::Duration::from_millis(config.economy_delay_ms),
        ));
        let projector = projector::Projector::start(&datadir);
        let galaxy_len = galaxy.ids().count();
        Arc::new(Context {
            galaxy,
            config,
            datadir,
            storage,
            handoff,
            directory: Directory::default(),
            projector,
            checkpoint: checkpoint::Checkpoint::default(),
            events: broadcast::channel(feed::FEED_LEN).0,
            queues: RwLock::new(BTreeMap::new()),
            stopping: AtomicBool::new(false),
            prices,
            published,
            news: OnceLock::new(),
            metrics: metrics::MeshMetrics::new(galaxy_len),
        })
    }
}

/// Starts a shard for each recovered instance, handing each the committed jumps recovery
/// found for it to land.
pub(crate) fn start_shards(
    ctx: &Arc<Context>,
    systems: Vec<recovery::RecoveredSystem>,
    mut landings: BTreeMap<InstanceId, Vec<codec::Jump>>,
) {
    let mut ready = Vec::with_capacity(systems.len());
    for sys in systems {
        let at = sys.state.instance_id();
        for p in sys.state.players.values() {
            ctx.directory.set(&p.name, Place::In(at), p.version);
        }
        for d in sys.state.departing.values() {
            ctx.directory
                .set(&d.player.name, Place::In(at), d.player.version);
        }
        let arriving = landings.remove(&at).unwrap_or_default();
        for j in &arriving {
            let jumping = Place::Jumping {
                from: j.from,
                xfer: j.xfer,
                to: j.to,
            };
            ctx.directory.set(&j.player.name, jumping, j.player.version);
        }
        let (tx, rx) = mpsc::channel(SHARD_QUEUE_LEN);
        ctx.queues_write().insert(at, tx.clone());
        ready.push((sys, arriving, tx, rx));
    }
    // What each open instance holds, for its primary's first plan: the layout is restored,
    // not re-planned (see `instances`).
    let loads = recovered_instance_loads(ready.iter().map(|(s, a, ..)| (&s.state, a.len())));
    // Every queue is known before any shard runs: a primary may move players to one of
    // its instances at its first tick, and a committed move must find the instance's queue.
    for (sys, arriving, tx, rx) in ready {
        let system = sys.state.id;
        let mut shard = Shard::new(ctx.clone(), sys.state, sys.log, sys.replayed, arriving, tx);
        shard.read_pairs_after(&sys.pair_reads);
        shard.restore_instance_loads(loads.get(&system).map_or(&[], Vec::as_slice));
        tokio::spawn(shard.run(rx));
    }
    assert!(
        landings.is_empty(),
        "recovery hands jumps to running shards only"
    );
}

impl Mesh {
    pub fn galaxy(&self) -> &Galaxy {
        &self.ctx.galaxy
    }

    /// The data directory the mesh runs on (read-only uses: players' history logs).
    pub fn datadir(&self) -> &DataDir {
        &self.ctx.datadir
    }

    /// The figures of a system's primary shard.
    pub async fn system_status(&self, system: SystemId) -> Result<ShardStatus, MeshError> {
        self.ask(system, |reply| ShardMessage::Status { reply })
            .await
    }

    pub fn config(&self) -> &MeshConfig {
        &self.ctx.config
    }

    /// A listener of the event feed: every event that becomes durable from now on, in each
    /// system's log order. Falling more than [`feed::FEED_LEN`] events behind loses the
    /// oldest (`recv` says how many).
    pub fn events(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.ctx.events.subscribe()
    }

    /// Where a player is, by star system, as routing knows it.
    pub fn locate(&self, name: &str) -> Option<SystemPlace> {
        self.ctx.directory.get(name)
    }

    /// Where a player is, by instance, as routing knows it.
    pub fn place(&self, name: &str) -> Option<Place> {
        self.ctx.directory.place(name)
    }

    /// Whether [`Mesh::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.ctx.is_stopping()
    }

    /// Players known to routing.
    pub fn players(&self) -> usize {
        self.ctx.directory.len()
    }

    /// The open instances of `system` other than its primary.
    pub fn instances_of(&self, system: SystemId) -> Vec<InstanceId> {
        self.ctx.instance_ids(system)
    }

    /// Asks a system's primary shard.
    pub(crate) async fn ask<T>(
        &self,
        system: SystemId,
        make: impl FnOnce(oneshot::Sender<T>) -> ShardMessage,
    ) -> Result<T, MeshError> {
        self.ask_at(InstanceId::primary(system), make).await
    }

    /// Asks the shard of instance `at`.
    pub(crate) async fn ask_at<T>(
        &self,
        at: InstanceId,
        make: impl FnOnce(oneshot::Sender<T>) -> ShardMessage,
    ) -> Result<T, MeshError> {
        let (tx, rx) = oneshot::channel();
        let shard = self.ctx.shard(at).ok_or(MeshError::ShuttingDown)?;
        shard
            .send(make(tx))
            .await
            .map_err(|_| MeshError::ShuttingDown)?;
        rx.await.map_err(|_| MeshError::ShuttingDown)
    }

    /// The instance a player is in, waiting (a little) for a move between instances to land:
    /// such a move takes a tick, and the player never left the system, so a request is not
    /// refused for it.
    async fn settled(&self, name: &str) -> Result<InstanceId, MeshError> {
        for _ in 0..MAX_ROUTE_ATTEMPTS {
            match self.place(name) {
                None => return Err(MeshError::UnknownPlayer(name.to_string())),
                Some(Place::In(at)) => return Ok(at),
                Some(p) if p.is_move() => {
                    // Listen, then look again: a landing missed by the one is seen by the other.
                    let landing = self.ctx.directory.wait_landing(name);
                    if self.place(name) == Some(p) {
                        let _ = tokio::time::timeout(MOVE_WAIT, landing).await;
                    }
                }
                Some(Place::Jumping { .. }) => return Err(MeshError::InJump(name.to_string())),
            }
        }
        Err(MeshError::Internal(format!(
            "'{name}' is still moving between instances; try again"
        )))
    }

    /// Sends a request to the shard that holds `name`, following the player if they moved.
    pub(crate) async fn routed<T>(
        &self,
        name: &str,
        make: impl Fn(oneshot::Sender<Result<T, MeshError>>) -> ShardMessage,
    ) -> Result<T, MeshError> {
        for _ in 0..MAX_ROUTE_ATTEMPTS {
            let at = self.settled(name).await?;
            let moved = || self.place(name) != Some(Place::In(at));
            match self.ask_at(at, &make).await {
                Ok(Err(MeshError::Rejected(Reject::NotHere { .. }))) if moved() => continue,
                // An instance that closed just now: its players are elsewhere.
                Err(MeshError::ShuttingDown) if !at.is_primary() && moved() => continue,
                Ok(other) => return other,
                Err(e) => return Err(e),
            }
        }
        Err(MeshError::Internal(format!(
            "could not route a request for '{name}'"
        )))
    }

    /// A new player at the home system; `key` is the hash of their access token.
    pub async fn join(&self, name: &str, key: &str) -> Result<Player, MeshError> {
        let home = self.ctx.galaxy.home();
        self.ask(home, |reply| ShardMessage::Join {
            name: name.to_string(),
            key: key.to_string(),
            reply,
        })
        .await?
    }

    /// Buys fuel (a full tank, or `units`).
    pub async fn refuel(&self, name: &str, units: Option<u32>) -> Result<Player, MeshError> {
        self.routed(name, |reply| ShardMessage::Refuel {
            name: name.to_string(),
            units,
            reply,
        })
        .await
    }

    /// Mends the hull at the station (whole, or `points`): acknowledged once durable.
    pub async fn repair(&self, name: &str, points: Option<u32>) -> Result<Player, MeshError> {
        self.routed(name, |reply| ShardMessage::Repair {
            name: name.to_string(),
            points,
            reply,
        })
        .await
    }

    /// Jumps to a neighbouring system. Returns once the jump is committed (durable in the
    /// transition log); the landing follows after the travel time ([`Mesh::wait_landing`]).
    pub async fn jump(&self, name: &str, to: SystemId) -> Result<JumpAck, MeshError> {
        let ack = self
            .routed(name, |reply| ShardMessage::Jump {
                name: name.to_string(),
                to,
                reply,
            })
            .await?;
        self.ctx
            .metrics
            .system(ack.from)
            .jumps
            .fetch_add(1, Ordering::Relaxed);
        Ok(ack)
    }

    /// The mesh's counters ([`metrics`]).
    pub fn metrics(&self) -> &metrics::MeshMetrics {
        &self.ctx.metrics
    }

    /// Waits for a player's landing (returns at once if they are in a system).
    pub async fn wait_landing(&self, name: &str) -> Result<Landed, MeshError> {
        let rx = self.ctx.directory.wait_landing(name);
        match self.place(name) {
            None => return Err(MeshError::UnknownPlayer(name.to_string())),
            Some(Place::In(at)) => {
                let population = self
                    .ask_at(at, |reply| ShardMessage::Population { reply })
                    .await?;
                return Ok(Landed {
                    system: at.system,
                    instance: at.n,
                    population,
                });
            }
            Some(Place::Jumping { .. }) => {}
        }
        rx.await.map_err(|_| MeshError::ShuttingDown)
    }

    /// A player's state and where they are (by star system).
    pub async fn look(&self, name: &str) -> Result<(SystemPlace, Option<Player>), MeshError> {
        let (at, player) = self.look_in(name).await?;
        Ok((at.system_place(), player))
    }

    /// A player's state and where they are (by instance; a move between instances is waited
    /// for). No state while in a jump between systems.
    pub async fn look_in(&self, name: &str) -> Result<(Place, Option<Player>), MeshError> {
        self.ask_where_player_is(name, |reply| ShardMessage::Look {
            name: name.to_string(),
            reply,
        })
        .await
    }

    /// Asks the shard of the instance `name` is in (waiting for a move between instances),
    /// and asks again if they moved meanwhile. No answer (None) while in a jump between
    /// systems.
    pub(crate) async fn ask_where_player_is<T>(
        &self,
        name: &str,
        make: impl Fn(oneshot::Sender<Option<T>>) -> ShardMessage,
    ) -> Result<(Place, Option<T>), MeshError> {
        for _ in 0..MAX_ROUTE_ATTEMPTS {
            let at = match self.settled(name).await {
                Ok(at) => at,
                Err(MeshError::InJump(_)) => {
                    let place = self
                        .place(name)
                        .ok_or_else(|| MeshError::UnknownPlayer(name.to_string()))?;
                    return Ok((place, None));
                }
                Err(e) => return Err(e),
            };
            let asked = self.ask_at(at, &make).await;
            let moved = self.place(name) != Some(Place::In(at));
            match asked {
                Ok(None) | Err(MeshError::ShuttingDown) if moved => continue,
                Ok(answer) => return Ok((Place::In(at), answer)),
                Err(e) => return Err(e),
            }
        }
        Err(MeshError::Internal(format!("could not find '{name}'")))
    }

    /// Names of players in a system's primary instance (at most `limit`).
    pub async fn who(&self, system: SystemId, limit: usize) -> Result<Vec<String>, MeshError> {
        self.ask(system, |reply| ShardMessage::Who { limit, reply })
            .await
    }

    /// What `name` sees around them: the instance they are in, the names of the players there
    /// (at most `limit`) and how many there are.
    pub async fn scan(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<(InstanceId, Vec<String>, usize), MeshError> {
        let at = self.settled(name).await?;
        let names = self
            .ask_at(at, |reply| ShardMessage::Who { limit, reply })
            .await?;
        let population = match names.len() < limit {
            true => names.len(),
            false => {
                self.ask_at(at, |reply| ShardMessage::Population { reply })
                    .await?
            }
        };
        Ok((at, names, population))
    }

    /// Every account: player name and the hash of their access key.
    /// On a node of a spread galaxy that does not run the home system: none here (the API
    /// looks accounts up elsewhere).
    pub async fn accounts(&self) -> Result<Vec<(String, String)>, MeshError> {
        let home = self.ctx.galaxy.home();
        if matches!(self.ctx.handoff, Handoff::Units(_)) && !self.ctx.runs(home) {
            return Ok(Vec::new());
        }
        self.ask(home, |reply| ShardMessage::Accounts { reply })
            .await
    }

    /// Every system's figures, in galaxy order: its primary's, with those of its open
    /// instances in `instances`.
    pub async fn status(&self) -> Result<Vec<ShardStatus>, MeshError> {
        let mut out = Vec::with_capacity(self.ctx.galaxy.len());
        for id in self.ctx.galaxy.ids().filter(|&id| self.ctx.runs(id)) {
            let mut primary = self.ask(id, |reply| ShardMessage::Status { reply }).await?;
            for at in self.ctx.instance_ids(id) {
                // An instance closing right now is skipped.
                if let Ok(s) = self
                    .ask_at(at, |reply| ShardMessage::Status { reply })
                    .await
                {
                    primary.instances.push(s);
                }
            }
            out.push(primary);
        }
        Ok(out)
    }

    /// Stops every shard, instances included (each flushes and snapshots), then the
    /// transition log. Returns every shard's last figures (primaries and instances alike).
    pub async fn stop(&self) -> Result<Vec<ShardStatus>, MeshError> {
        let mut targets: Vec<InstanceId> = {
            let map = self.ctx.queues_write();
            self.ctx.stopping.store(true, Ordering::Release);
            map.keys().copied().collect()
        };
        // Primaries first, then the instances.
        targets.sort_by_key(|at| (!at.is_primary(), *at));
        if let Handoff::Units(u) = &self.ctx.handoff {
            u.stop_reading();
        }
        let (out, first_err) = self.stop_shards(targets).await;
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || -> Result<(), MeshError> {
            if let Some(transitions) = ctx.handoff.transitions() {
                transitions.close().map_err(MeshError::Storage)?;
                ctx.checkpoint
                    .write(transitions, &*ctx.storage.snapshots)
                    .map_err(MeshError::Snapshot)?;
            }
            ctx.projector
                .stop()
                .map_err(|e| MeshError::Internal(format!("player logs: {e}")))
        })
        .await
        .map_err(|e| MeshError::Internal(e.to_string()))??;
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Stops the shards `targets` (each drains its departures, flushes and snapshots) and
    /// forgets their queues: their last figures, and the first error met.
    pub(crate) async fn stop_shards(
        &self,
        targets: Vec<InstanceId>,
    ) -> (Vec<ShardStatus>, Option<MeshError>) {
        let mut waits = Vec::new();
        for at in targets {
            let (tx, rx) = oneshot::channel();
            if let Some(s) = self.ctx.shard(at) {
                if s.send(ShardMessage::Stop { reply: tx }).await.is_ok() {
                    waits.push((at, rx));
                }
            }
        }
        let stopped: Vec<InstanceId> = waits.iter().map(|(at, _)| *at).collect();
        let mut out = Vec::new();
        let mut first_err = None;
        for (at, w) in waits {
            match w.await {
                Ok(Ok(s)) => out.push(s),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                // An instance that retired (and stopped) meanwhile.
                Err(_) if !at.is_primary() => {}
                Err(_) => {
                    first_err.get_or_insert(MeshError::ShuttingDown);
                }
            }
        }
        let mut queues = self.ctx.queues_write();
        for at in &stopped {
            queues.remove(at);
        }
        drop(queues);
        (out, first_err)
    }
}

/// Writes a transition-log checkpoint every few seconds, for as long as the mesh runs.
async fn write_checkpoints(ctx: Arc<Context>) {
    let period = std::time::Duration::from_millis(ctx.config.checkpoint_every_ms.max(1));
    let mut every = tokio::time::interval(period);
    every.tick().await;
    loop {
        every.tick().await;
        if Arc::strong_count(&ctx) <= 1 {
            return;
        }
        let c = ctx.clone();
        let written = tokio::task::spawn_blocking(move || match c.handoff.transitions() {
            Some(t) => c.checkpoint.write(t, &*c.storage.snapshots),
            None => Ok(()),
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::warn!("transition-log checkpoint failed: {e}");
        }
    }
}
