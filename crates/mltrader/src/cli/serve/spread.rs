//! `serve --nats --spread`: a node of a galaxy spread over several nodes (issue 19,
//! docs/NATS.md "Spread over nodes").
//!
//! The node announces itself in the members' bucket and, every [`ROUND_MS`], judges who is
//! live (`mesh::protocol::members::Roster`: silence counted only over answered polls), deals
//! the units (a system with its instances, `sys.<slug>`) over the live nodes by rendezvous
//! hashing (`mesh::protocol::deal`), and for each unit:
//!
//! - dealt here and not run: claims its lease (a compare-and-set create; if another node holds
//!   it, watches it and takes it over after a lease of silence over answered polls,
//!   `mesh::protocol::lease::Watch`), then starts it in the mesh under that epoch
//!   ([`mesh::Mesh::start_unit`]: fences its logs and outgoing pair subjects, recovers it,
//!   publishes again what it committed);
//! - run here: renews its lease every quarter of it (`Holding`: a renewal refused, or none
//!   taken for a lease by this node's clock, stops the unit here); a unit dealt to another
//!   live node is handed over cleanly (stopped, then its lease released, so the new owner
//!   claims it at once); a unit whose log or pair subject refused an append for a newer owner
//!   is stopped.
//!
//! On SIGTERM the node leaves: its members' key is deleted, each unit stopped and its lease
//! released, all within `--shutdown-grace-ms` (`grace`): past it, with NATS unreachable, the
//! process exits 4 naming the step it gave up on. It never runs a unit without holding its lease, and never keeps running one once
//! it knows another node may hold it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use mesh::protocol::deal;
use mesh::protocol::lease::{AfterRenewal, Holding, Renewal, Watch};
use mesh::protocol::members::{Roster, Seen};
use mesh::Mesh;
use nats::lease::ClaimAttempt;
use nats::members::Members;
use nats::{NatsLogs, NatsOwnership};
use sim::galaxy::SystemId;
use store::backend::{Claim, Ownership, OwnershipError, Storage};

use super::grace::Leaving;
use super::on_nats::{again_for_a_while, lease_call, ms_since, Node};
use super::regions;
use super::remote::{NatsRemote, ServedUnit};
use super::{admission_of, print_refused, shutdown_signal, ServeArgs, Start};
use net::server;

/// How often the node polls the members and the leases of the units it waits for.
pub const ROUND_MS: u64 = 250;

/// A round starts hand-overs and claims for at most the lease / this, then renews again in the
/// next round (a renewal is due every quarter lease).
pub const WORK_BUDGET_PER_LEASE: u64 = 10;

/// A unit this node runs: its claim, the lease rules' state, and its logs (for fencing).
struct Running {
    claim: Claim,
    /// Its players' requests forwarded by other nodes are answered here while it is held.
    served: Option<ServedUnit>,
    holding: Holding,
    /// When the last renewal was sent.
    renewed: Instant,
    logs: Arc<NatsLogs>,
}

/// A unit dealt here that another node still holds: its lease watched.
struct Waiting {
    watch: Watch,
    holder: Option<String>,
}

pub(super) async fn serve(
    args: ServeArgs,
    urls: String,
    start: Start,
    leaving: Leaving,
) -> anyhow::Result<ExitCode> {
    let addr = start.listener.local_addr()?;
    let mut signalled = Box::pin(shutdown_signal());
    let node = Node::connect(&args, &urls, start.datadir.galaxy_file()).await?;
    let me = args.node.clone().context("--nats needs --node")?;
    let replicas = usize::try_from(args.nats_replicas)?;
    let lease = node.lease;
    let (nats_conn, galaxy) = (node.nats.clone(), Arc::new(start.galaxy.clone()));
    let region = regions::checked(&args, &galaxy)?;
    let pairs = {
        let (c, g, n) = (nats_conn.clone(), galaxy.clone(), me.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || {
                again_for_a_while("open the jumps' stream", || {
                    nats::pairs::NatsLinks::open(&c, g.clone(), replicas, &n)
                })
            })
            .await??,
        )
    };
    if region.is_some() {
        // Every system's pair subjects live in its home region (decision 3).
        let homes = nats::region::galaxy_homes(&galaxy).context("every system has a region")?;
        pairs.set_homes(homes);
    }
    let links: Arc<dyn mesh::links::Links> = pairs.clone();
    if let Some(own) = &region {
        regions::keep_copies(&nats_conn, own, &galaxy, replicas).await;
    }
    // Every region's homes, read before any unit is claimed (a region that comes back after a
    // promotion serves none of the systems re-homed away from it), then every second.
    let heard = match &region {
        Some(own) => Some(regions::hear_homes(nats_conn.clone(), galaxy.clone(), own).await),
        None => None,
    };
    let base = Storage {
        logs: node.logs.clone(),
        snapshots: node.snapshots.clone(),
    };
    let mesh = Mesh::start_node(
        base,
        start.datadir.clone(),
        start.galaxy.clone(),
        start.config.clone(),
        links,
    )?;
    // Gossip, price reports and feed events between the nodes (before any unit starts).
    mesh.attach_news(nats::news::NatsNews::start(&nats_conn, galaxy.clone()))
        .await?;
    let remote = {
        let (c, g) = (nats_conn.clone(), start.galaxy.clone());
        let h = heard.as_ref().map(|(h, _)| h.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || {
                again_for_a_while("open the accounts' bucket", || {
                    NatsRemote::new(&c, g.clone(), replicas, h.clone())
                })
            })
            .await??,
        )
    };
    let mut net_config = net::NetConfig::from_env()?;
    net_config.history = Some(start.datadir.clone());
    let as_remote: Arc<dyn net::remote::Remote> = remote.clone();
    let api = net::Api::with_remote(mesh.clone(), net_config, Some(as_remote)).await?;
    api.stopping.on_signals();
    let _whereis = remote.answer_whereis(mesh.clone()).await?;
    let (admission, timeouts) = admission_of(&args, start.caps);
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        start.listener,
        api.router.clone(),
        admission.clone(),
        timeouts,
        async move {
            let _ = server_stopped.await;
        },
    ));
    let members = {
        let c = nats_conn.clone();
        tokio::task::spawn_blocking(move || {
            again_for_a_while("open the members' bucket", || {
                Members::open(&c, nats::members::NODES_BUCKET, lease, replicas)
            })
        })
        .await??
    };
    let members = Arc::new(members);
    let url = format!("http://{addr}");
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let announcement = {
        let (m, u) = (members.clone(), url.clone());
        tokio::task::spawn_blocking(move || m.announce(&u, started_ms)).await??
    };
    let share = match &region {
        Some(r) => format!(
            "in region {r}, which homes {} of its {} systems",
            galaxy
                .ids()
                .filter(|&s| galaxy.region_of(s) == Some(r.as_str()))
                .count(),
            galaxy.len()
        ),
        None => format!("of {} systems", galaxy.len()),
    };
    println!(
        "node {me} listening on {url} (a node of a spread galaxy {share}; logs in NATS JetStream at {urls})"
    );
    let mut spread = Spread {
        me: me.clone(),
        mesh: mesh.clone(),
        remote: remote.clone(),
        owner: api.owner(),
        ownership: node.ownership.clone(),
        logs: node.logs.clone(),
        snapshots: node.snapshots.clone(),
        lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        roster: Roster::new(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)),
        clock: Instant::now(),
        running: BTreeMap::new(),
        waiting: BTreeMap::new(),
        homes: regions::Homes::new(region, heard, pairs.clone()),
    };
    let mut every = tokio::time::interval(Duration::from_millis(ROUND_MS));
    loop {
        tokio::select! {
            _ = every.tick() => spread.round(&members).await,
            () = &mut signalled => break,
        }
    }
    println!("node {me} leaving: handing its units over");
    leaving.at("deleting this node's key in the members' bucket");
    let _ = tokio::task::spawn_blocking(move || announcement.leave()).await;
    api.stop_streams();
    spread.hand_all_over(&leaving).await;
    leaving.at("the HTTP server's open connections");
    let _ = stop_server.send(());
    let _ = server.await;
    print_refused(&admission);
    leaving.at("the mesh's stop (its units' last writes to NATS)");
    mesh.stop().await.context("stopping the mesh")?;
    println!("node {me} stopped");
    Ok(ExitCode::SUCCESS)
}

/// The node's view of its units.
struct Spread {
    me: String,
    mesh: Mesh,
    /// Carries the requests of players this node does not hold; answers those of its units.
    remote: Arc<NatsRemote>,
    owner: net::remote::Owner,
    ownership: Arc<NatsOwnership>,
    logs: Arc<NatsLogs>,
    snapshots: Arc<nats::NatsSnapshots>,
    lease_ms: u64,
    roster: Roster,
    /// The clock of the pure rules (`Watch`, `Holding`, `Roster`).
    clock: Instant,
    running: BTreeMap<SystemId, Running>,
    waiting: BTreeMap<SystemId, Waiting>,
    /// Which systems this node's region serves (all without regions).
    homes: regions::Homes,
}

impl Spread {
    fn now(&self) -> u64 {
        ms_since(self.clock, Instant::now())
    }

    fn unit(&self, system: SystemId) -> String {
        deal::unit_of_system(self.mesh.galaxy().slug(system))
    }

    /// One round: who is live, who owns what, and each unit's lease.
    async fn round(&mut self, members: &Arc<Members>) {
        let m = members.clone();
        match tokio::task::spawn_blocking(move || m.poll()).await {
            Ok(Ok(listing)) => {
                let seen = listing
                    .members
                    .values()
                    .map(|m| {
                        (
                            m.node.clone(),
                            Seen {
                                revision: m.revision,
                            },
                        )
                    })
                    .collect();
                let now = self.now();
                self.roster.answered(seen, now);
            }
            _ => self.roster.unanswered(),
        }
        let now = self.now();
        let mut live: Vec<String> = self
            .roster
            .live(now)
            .into_iter()
            .map(str::to_string)
            .collect();
        if !live.contains(&self.me) {
            live.push(self.me.clone());
        }
        for system in self.mesh.fenced_units() {
            self.stop(system, "a newer owner fenced it").await;
        }
        self.homes.refresh();
        let systems: Vec<SystemId> = self
            .mesh
            .galaxy()
            .ids()
            .filter(|&s| {
                self.homes.served_here(self.mesh.galaxy(), s) || self.running.contains_key(&s)
            })
            .collect();
        let mine = |s: &Spread, system: SystemId| {
            deal::owner_of(&s.unit(system), &live) == Some(s.me.as_str())
        };
        // Renewals first, every round, whatever else there is to do: a hand-over or a start
        // takes tens to hundreds of milliseconds, and a round that did many before renewing
        // would lose the leases it holds.
        for &system in &systems {
            if self.running.contains_key(&system) {
                self.renew(system).await;
            }
        }
        // Then hand-overs and claims, within a budget of time a round, renewing between them.
        let began = Instant::now();
        let budget = Duration::from_millis(self.lease_ms / WORK_BUDGET_PER_LEASE);
        for &system in &systems {
            if began.elapsed() > budget {
                break;
            }
            let mine = mine(self, system) && self.homes.served_here(self.mesh.galaxy(), system);
            match (self.running.contains_key(&system), mine) {
                (true, true) => {}
                (true, false) => self.hand_over(system).await,
                (false, true) if self.homes.settled() => self.claim(system).await,
                (false, true) => {}
                (false, false) => {
                    self.waiting.remove(&system);
                }
            }
        }
    }

    /// Claims a unit dealt here: at once if its lease is free, else once its holder has been
    /// silent for a lease over answered polls.
    async fn claim(&mut self, system: SystemId) {
        let unit = self.unit(system);
        let lease_ms = self.lease_ms;
        let now = self.now();
        let silent = self
            .waiting
            .entry(system)
            .or_insert_with(|| Waiting {
                watch: Watch::new(lease_ms),
                holder: None,
            })
            .watch
            .silent(now);
        let (o, u) = (self.ownership.clone(), unit.clone());
        let sent = Instant::now();
        let attempt = lease_call(move || match silent {
            Some(revision) => o.take_over(&u, revision),
            None => o.try_claim(&u),
        })
        .await;
        match attempt {
            Ok(ClaimAttempt::Claimed(claim)) => {
                let previous = self.waiting.remove(&system).and_then(|w| w.holder);
                self.start(system, claim, sent, previous, silent.is_some())
                    .await;
            }
            Ok(ClaimAttempt::Held(holder)) => {
                let now = ms_since(self.clock, Instant::now());
                let Some(waiting) = self.waiting.get_mut(&system) else {
                    return;
                };
                waiting.watch.answered(holder.revision, now);
                waiting.holder = Some(format!("node={} epoch={}", holder.node, holder.epoch));
            }
            Err(_) => {
                if let Some(w) = self.waiting.get_mut(&system) {
                    w.watch.unanswered();
                }
            }
        }
    }

    /// Starts a unit whose lease this node has just claimed.
    async fn start(
        &mut self,
        system: SystemId,
        claim: Claim,
        sent: Instant,
        previous: Option<String>,
        taken_over: bool,
    ) {
        let unit = self.unit(system);
        // A system re-homed here by a promotion runs above every epoch of its old region.
        let epoch = self.homes.epoch_of(self.mesh.galaxy(), system, claim.epoch);
        let logs = Arc::new(self.logs.for_unit(epoch));
        // Its writes revoked as soon as its system is heard homed in another region.
        self.homes.watch(system, logs.revoker());
        let storage = Storage {
            logs: logs.clone(),
            snapshots: self.snapshots.clone(),
        };
        let began = Instant::now();
        let mesh = self.mesh.clone();
        let started = self
            .renewing_while(async move { mesh.start_unit(system, storage, epoch).await })
            .await;
        match started {
            Ok(started) => {
                let how = match (&previous, taken_over) {
                    (Some(p), true) => format!("taken over from {p} after a lease of silence"),
                    (Some(p), false) => format!("handed over by {p}"),
                    (None, _) => "claimed".to_string(),
                };
                println!(
                    "unit {unit}: serving, epoch {epoch} ({how}); started in {} ms: {} records replayed, {} jumps published again",
                    began.elapsed().as_millis(),
                    started.recovery.records_replayed,
                    started.republished
                );
                let now = ms_since(self.clock, sent);
                if system == self.mesh.galaxy().home() {
                    self.record_accounts().await;
                }
                let served = match self.remote.serve_unit(system, self.owner.clone()).await {
                    Ok(served) => Some(served),
                    Err(e) => {
                        eprintln!("unit {unit}: its players' requests from other nodes are not answered here ({e:#})");
                        None
                    }
                };
                self.running.insert(
                    system,
                    Running {
                        claim,
                        served,
                        holding: Holding::new(
                            now,
                            self.lease_ms,
                            nats::limits::UNANSWERED_GRACE_MS,
                        ),
                        renewed: sent,
                        logs,
                    },
                );
            }
            Err(e) => {
                eprintln!("unit {unit}: cannot start it here ({e}); releasing its lease");
                self.homes.unwatch(system);
                self.release(&claim).await;
            }
        }
    }

    /// Runs `work` (a unit's start or stop: a recovery may take seconds) while the leases of
    /// the units already running are renewed as they fall due, so that one slow unit never
    /// costs the others their leases.
    async fn renewing_while<T>(&mut self, work: impl std::future::Future<Output = T>) -> T {
        let work = std::pin::pin!(work);
        let mut work = work;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep(Duration::from_millis(ROUND_MS)) => {
                    let running: Vec<SystemId> = self.running.keys().copied().collect();
                    for system in running {
                        self.renew(system).await;
                    }
                }
            }
        }
    }

    /// Renews a unit's lease every quarter of it; stops the unit when the lease is lost or a
    /// newer owner fenced its log.
    async fn renew(&mut self, system: SystemId) {
        let revoked = self
            .running
            .get(&system)
            .is_some_and(|r| r.logs.revoker().is_revoked());
        if revoked {
            return self
                .stop(
                    system,
                    "its system is homed in another region now (its writes were revoked)",
                )
                .await;
        }
        let fenced = self
            .running
            .get(&system)
            .is_some_and(|r| r.logs.stats().fenced.load(Ordering::Relaxed) > 0);
        if fenced {
            return self
                .stop(system, "its log was fenced by a newer owner")
                .await;
        }
        let every = Duration::from_millis(self.lease_ms / nats::limits::RENEWALS_PER_LEASE);
        let Some(r) = self.running.get(&system) else {
            return;
        };
        if r.renewed.elapsed() < every {
            return;
        }
        let claim = r.claim.clone();
        let sent = Instant::now();
        let now = ms_since(self.clock, sent);
        let expired = self
            .running
            .get_mut(&system)
            .is_some_and(|r| r.holding.expired(now));
        if expired {
            return self
                .stop(system, "no renewal of its lease was taken for a lease")
                .await;
        }
        let (o, c) = (self.ownership.clone(), claim);
        let renewal = match lease_call(move || o.renew(&c)).await {
            Ok(()) => Renewal::Renewed,
            Err(OwnershipError::NotHeld { .. }) => Renewal::Lost,
            Err(_) => Renewal::Unavailable,
        };
        let Some(r) = self.running.get_mut(&system) else {
            return;
        };
        r.renewed = sent;
        if r.holding.renewal(renewal, now) == AfterRenewal::Stop {
            self.stop(system, "its lease is held by another node").await;
        }
    }

    /// Stops a unit this node may no longer own (its lease is not released: it is not ours).
    async fn stop(&mut self, system: SystemId, why: &str) {
        let unit = self.unit(system);
        let Some(r) = self.running.remove(&system) else {
            return;
        };
        // Not ours any more: no forwarded request is answered from here from now on.
        drop(r.served);
        println!("unit {unit}: stopped here: {why}");
        // Not under `renewing_while`: a renewal may stop a unit, and this is that stop.
        if let Err(e) = self.mesh.stop_unit(system).await {
            eprintln!("unit {unit}: did not stop cleanly ({e})");
        }
        self.homes.unwatch(system);
    }

    /// Hands a unit over on purpose: stops it (what it committed is published, its state
    /// snapshotted), then releases its lease so that its new owner claims it at once.
    async fn hand_over(&mut self, system: SystemId) {
        let unit = self.unit(system);
        let Some(mut r) = self.running.remove(&system) else {
            return;
        };
        let began = Instant::now();
        // Requests already here are answered; the next ones wait for the new owner.
        if let Some(served) = r.served.take() {
            served.stop().await;
        }
        let mesh = self.mesh.clone();
        let stopped = self
            .renewing_while(async move { mesh.stop_unit(system).await })
            .await;
        if let Err(e) = stopped {
            eprintln!("unit {unit}: did not stop cleanly ({e}); its next owner recovers it");
        }
        self.homes.unwatch(system);
        self.release(&r.claim).await;
        println!(
            "unit {unit}: handed over (dealt to another node) in {} ms",
            began.elapsed().as_millis()
        );
    }

    /// Hands every unit over (the node leaves), saying to `leaving` which one it is at.
    async fn hand_all_over(&mut self, leaving: &Leaving) {
        let systems: Vec<SystemId> = self.running.keys().copied().collect();
        let total = systems.len();
        for (done, system) in systems.into_iter().enumerate() {
            leaving.at(format!(
                "handing unit {} over ({done} of {total} handed over; the rest expire after a lease of silence)",
                self.unit(system)
            ));
            self.hand_over(system).await;
        }
    }

    /// The home system's accounts into the accounts' bucket, so that every node finds the
    /// players who joined before it held them (a failure is said, and the next start of the
    /// home unit tries again).
    async fn record_accounts(&self) {
        let recorded = match self.mesh.accounts().await {
            Ok(accounts) => self.remote.record_accounts(&accounts).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = recorded {
            eprintln!("the home system's accounts are not all in the accounts' bucket ({e:#}); players who joined before may be refused by other nodes");
        }
    }

    async fn release(&self, claim: &Claim) {
        let (o, c) = (self.ownership.clone(), claim.clone());
        if let Err(e) = lease_call(move || o.release(&c)).await {
            eprintln!(
                "could not release the lease of {} ({e}); the next owner takes it after a lease of silence",
                claim.unit
            );
        }
    }
}
