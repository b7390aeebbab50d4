//! A node's share of a spread galaxy (issue 19): the units (a star system with its instances)
//! it runs, each under its own lease, started when the node is dealt or takes one over and
//! stopped when it hands one over.
//!
//! A jump towards a unit of another node commits at its durable `depart` and is published to
//! its pair subject through [`Links`] (then `depart.done`); jumps towards a unit run here are
//! read from its pair subjects and handed to its primary, which lands each once, in order per
//! origin (`landed_upto`). A takeover publishes again every jump its replayed logs hold as
//! departing, before the unit's shards run, so that a pair subject holds an origin's jumps in
//! number order (docs/PROTOCOL.md "Across nodes").
//!
//! Owns the per-unit epoch and storage, the readers of the pair subjects, and the fenced
//! units; never decides a game rule, never takes a lease (the node's runner does, outside
//! the mesh), never touches a shard's state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sim::galaxy::SystemId;
use sim::ids::Xfer;
use sim::instance::InstanceId;
use store::backend::Storage;
use tokio::sync::mpsc;

use crate::codec::{xfer_text, Jump};
use crate::limits::UNIT_FENCE_WAIT_MS;
use crate::links::{Arrived, LinkError, Links};
use crate::recovery::{self, RecoveryReport};
use crate::shard::ShardMessage;
use crate::{start_shards, Context, Handoff, Mesh, MeshError};

/// The pause between two tries of a publish the engine did not answer.
const PUBLISH_RETRY_PAUSE_MS: u64 = 250;

/// Jumps read from pair subjects and not yet handed to their destination's queue.
const ARRIVALS_QUEUE_LEN: usize = 1024;

/// One unit this node runs.
struct UnitRun {
    epoch: u64,
    storage: Storage,
    /// The task handing what the pair subjects towards the unit bring to its primary.
    reader: Option<tokio::task::JoinHandle<()>>,
}

/// The units of a node, and how jumps leave and reach them.
pub struct Units {
    links: Arc<dyn Links>,
    /// std locks: held for a map operation only, never across an await.
    running: RwLock<BTreeMap<SystemId, UnitRun>>,
    /// Units whose pair subject refused a publish for a newer owner: the runner stops them.
    fenced: Mutex<BTreeSet<SystemId>>,
}

impl Units {
    pub fn new(links: Arc<dyn Links>) -> Units {
        Units {
            links,
            running: RwLock::new(BTreeMap::new()),
            fenced: Mutex::new(BTreeSet::new()),
        }
    }

    fn running(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<SystemId, UnitRun>> {
        self.running.read().unwrap_or_else(|e| e.into_inner())
    }

    fn running_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<SystemId, UnitRun>> {
        self.running.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The storage unit `system` writes under (its lease's epoch), if it runs here.
    pub fn storage_of(&self, system: SystemId) -> Option<Storage> {
        self.running().get(&system).map(|u| u.storage.clone())
    }

    /// The epoch of the lease unit `system` runs under here.
    pub fn epoch_of(&self, system: SystemId) -> Option<u64> {
        self.running().get(&system).map(|u| u.epoch)
    }

    /// The units this node runs, with their epochs.
    pub fn list(&self) -> BTreeMap<SystemId, u64> {
        self.running().iter().map(|(s, u)| (*s, u.epoch)).collect()
    }

    /// Units a newer owner fenced since the last call (their shards must stop).
    pub fn take_fenced(&self) -> BTreeSet<SystemId> {
        std::mem::take(&mut *self.fenced.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops every reader of pair subjects (the mesh stops).
    pub fn stop_reading(&self) {
        for u in self.running_mut().values_mut() {
            if let Some(r) = u.reader.take() {
                r.abort();
            }
        }
    }

    /// Publishes a committed jump towards another unit, trying again while the engine does
    /// not answer (the jump is committed: it must get there). False if it cannot be published
    /// from here: a newer owner fenced the origin (noted for the runner), or the unit stopped
    /// running here meanwhile (its next owner publishes it again).
    pub(crate) async fn publish(&self, ctx: &Context, jump: Jump) -> bool {
        let from = jump.from.system;
        loop {
            let Some(epoch) = self.epoch_of(from) else {
                return false;
            };
            match self.links.publish(epoch, jump.clone()).await {
                Ok(_) => return true,
                Err(LinkError::Fenced(why)) => {
                    tracing::error!(
                        "jump {} not published: {why}; this node stops serving {}",
                        xfer_text(&ctx.galaxy, jump.from, jump.xfer),
                        ctx.galaxy.slug(from)
                    );
                    self.fenced
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(from);
                    return false;
                }
                Err(e) => {
                    tracing::warn!(
                        "jump {} not published yet ({e}); trying again",
                        xfer_text(&ctx.galaxy, jump.from, jump.xfer)
                    );
                    if ctx.is_stopping() {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(PUBLISH_RETRY_PAUSE_MS)).await;
                }
            }
        }
    }
}

/// What starting a unit did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UnitStart {
    pub unit: String,
    pub epoch: u64,
    pub recovery: RecoveryReport,
    /// Committed jumps towards other units published again (a takeover finishes them).
    pub republished: usize,
}

impl Mesh {
    fn units(&self) -> Result<&Units, MeshError> {
        match &self.ctx.handoff {
            Handoff::Units(u) => Ok(u),
            Handoff::Local { .. } => Err(MeshError::Internal(
                "this mesh runs the whole galaxy; it has no units to start or stop".into(),
            )),
        }
    }

    /// The units this node runs, with their lease epochs (empty for a whole galaxy).
    pub fn running_units(&self) -> BTreeMap<SystemId, u64> {
        self.units().map(Units::list).unwrap_or_default()
    }

    /// Units whose pair subjects a newer owner fenced since the last call: the caller stops
    /// them ([`Mesh::stop_unit`]) or the node.
    pub fn fenced_units(&self) -> BTreeSet<SystemId> {
        self.units().map(Units::take_fenced).unwrap_or_default()
    }

    /// Starts unit `system` on this node, which holds its lease at `epoch` and writes its logs
    /// through `storage` (fenced at that epoch): fences its outgoing pair subjects, recovers it
    /// from its snapshot and logs, publishes again the jumps it committed towards other units
    /// and had not finished, then runs its shards and reads the pair subjects towards it.
    pub async fn start_unit(
        &self,
        system: SystemId,
        storage: Storage,
        epoch: u64,
    ) -> Result<UnitStart, MeshError> {
        let units = self.units()?;
        let ctx = self.ctx.clone();
        let slug = ctx.galaxy.slug(system).to_string();
        {
            let mut running = units.running_mut();
            if running.contains_key(&system) || ctx.runs(system) {
                return Err(MeshError::Internal(format!(
                    "unit {slug} runs here already"
                )));
            }
            running.insert(
                system,
                UnitRun {
                    epoch,
                    storage: storage.clone(),
                    reader: None,
                },
            );
        }
        let started = self.start_unit_inner(units, system, storage, epoch).await;
        if started.is_err() {
            units.running_mut().remove(&system);
        }
        started
    }

    async fn start_unit_inner(
        &self,
        units: &Units,
        system: SystemId,
        storage: Storage,
        epoch: u64,
    ) -> Result<UnitStart, MeshError> {
        let ctx = self.ctx.clone();
        let slug = ctx.galaxy.slug(system).to_string();
        let link_error = |e: LinkError| MeshError::Internal(format!("unit {slug}: {e}"));
        let fence_wait = Duration::from_millis(UNIT_FENCE_WAIT_MS);
        match tokio::time::timeout(fence_wait, units.links.fence_outgoing(system, epoch)).await {
            Ok(fenced) => fenced.map_err(link_error)?,
            Err(_) => {
                return Err(link_error(LinkError::Unavailable(format!(
                    "its pair subjects were not all fenced within {UNIT_FENCE_WAIT_MS} ms (one in a region out of reach?)"
                ))))
            }
        }
        let (g, d, rules) = (
            ctx.galaxy.clone(),
            ctx.datadir.clone(),
            ctx.config.rules.clone(),
        );
        let recovery_started = std::time::Instant::now();
        let mut unit = tokio::task::spawn_blocking(move || {
            recovery::recover_unit(&storage, &d, &g, &rules, system)
        })
        .await
        .map_err(|e| MeshError::Internal(e.to_string()))??;
        ctx.metrics.recovered(recovery_started.elapsed());
        // Before any shard runs (and may publish a newer jump of the same origin): every jump
        // committed towards another unit and not finished goes out again, in number order.
        let republished = unit.republish.len();
        let mut published = Vec::new();
        for jump in std::mem::take(&mut unit.republish) {
            let (from, xfer) = (jump.from, jump.xfer);
            match units.links.publish(epoch, jump).await {
                Ok(_) => published.push((from, xfer)),
                Err(e) => {
                    for sys in unit.systems {
                        let _ = sys.log.close();
                    }
                    return Err(link_error(e));
                }
            }
        }
        let g = ctx.galaxy.clone();
        let unit = tokio::task::spawn_blocking(move || {
            recovery::finish_published(&g, &mut unit, &published).map(|()| unit)
        })
        .await
        .map_err(|e| MeshError::Internal(e.to_string()))??;
        if ctx.is_stopping() {
            for sys in unit.systems {
                let _ = sys.log.close();
            }
            return Err(MeshError::ShuttingDown);
        }
        // The primary's snapshot says up to where every jump read had landed: read on from
        // there (what landed after it, in the log replayed, is read again and dropped).
        let reads = unit
            .systems
            .first()
            .map(|primary| primary.pair_reads.clone())
            .unwrap_or_default();
        start_shards(&ctx, unit.systems, BTreeMap::new());
        let (tx, rx) = mpsc::channel(ARRIVALS_QUEUE_LEN);
        units
            .links
            .read_towards(system, reads, tx)
            .map_err(link_error)?;
        let reader = tokio::spawn(hand_arrivals(ctx.clone(), system, rx));
        if let Some(u) = units.running_mut().get_mut(&system) {
            u.reader = Some(reader);
        }
        Ok(UnitStart {
            unit: slug,
            epoch,
            recovery: unit.report,
            republished,
        })
    }

    /// Stops unit `system` here (a hand-over on purpose, or a newer owner fenced it): stops
    /// reading its pair subjects, stops its shards (each drains its departures, so what it
    /// committed is published, then flushes and snapshots) and forgets its players.
    pub async fn stop_unit(&self, system: SystemId) -> Result<(), MeshError> {
        let units = self.units()?;
        // Forgotten first: a publish retrying for the unit gives up (its jump stays departing
        // in the log, and the next owner publishes it again), so its shards can stop.
        let run = units.running_mut().remove(&system);
        if let Some(r) = run.and_then(|u| u.reader) {
            r.abort();
        }
        let mut targets = self.ctx.shards_of(system);
        targets.sort_by_key(|at| (!at.is_primary(), *at));
        let (_, first_err) = self.stop_shards(targets).await;
        self.ctx.directory.forget_system(system);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Hands what the pair subjects towards `system` bring to its primary, dropping what this
/// reader handed before (a redelivery: the numbers of one origin grow on its pair subject);
/// the primary drops what landed before (`landed_upto`, after a restart).
async fn hand_arrivals(
    ctx: Arc<Context>,
    system: SystemId,
    mut rx: mpsc::Receiver<Result<Arrived, LinkError>>,
) {
    let mut handed: BTreeMap<InstanceId, Xfer> = BTreeMap::new();
    let primary = InstanceId::primary(system);
    while let Some(read) = rx.recv().await {
        let Arrived { at, mut jump } = match read {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(
                    "a pair subject towards {} stopped: {e}",
                    ctx.galaxy.slug(system)
                );
                continue;
            }
        };
        assert_eq!(
            jump.to, primary,
            "BUG: a jump between systems lands in the destination's primary"
        );
        if handed.get(&jump.from).is_some_and(|&x| jump.xfer <= x) {
            continue;
        }
        handed.insert(jump.from, jump.xfer);
        jump.tseq = store::seq::Seq(at.0);
        let Some(q) = ctx.shard(primary) else { return };
        if q.send(ShardMessage::Read(jump)).await.is_err() {
            return;
        }
    }
}
