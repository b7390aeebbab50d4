//! `serve --nats`: a node of a galaxy whose logs are in NATS JetStream (docs/NATS.md).
//!
//! The node listens on its API address at once. While another node holds the galaxy's lease
//! it stands by: it answers every request 503 `standby` naming the holder ([`net::standby`])
//! and polls the lease every [`nats::limits::STANDBY_POLL_MS`], counting the holder's silence
//! over the polls the store answered (`mesh::protocol::lease::Watch`: an election is not a
//! death); after a whole lease of it, it takes the lease over (a compare-and-set at the
//! bucket's leader: of two standbys, one wins). Once it holds the lease it recovers the
//! galaxy from the stream, writing a `lease` record to every log as it opens it (fencing: an
//! older owner cannot append after it), switches its API to serving, and renews the lease every
//! quarter of it.
//!
//! It stops with exit status 3, at once, when it learns that it is no longer the owner: a
//! renewal answered "held by another", no renewal taken for a whole lease by this node's own
//! clock (another node may hold it by now; renewals the store left unanswered stall that count,
//! as they stall the watchers', up to [`nats::limits::UNANSWERED_GRACE_MS`] past the lease:
//! `mesh::protocol::lease::Holding`), or an append the stream refused (fenced). It never serves a request of the game before it holds the lease and has fenced
//! every log, and never keeps serving once it knows another node may own the galaxy.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use mesh::protocol::lease::{AfterRenewal, Holding, Renewal, Watch};
use nats::lease::{ClaimAttempt, Holder};
use nats::{NatsLogs, NatsOwnership, NatsSnapshots};
use net::standby::Switch;
use store::backend::{Claim, Ownership, OwnershipError, Storage, MESH_UNIT};

use super::{
    admission_of, print_refused, print_serving, print_stopped, shutdown_signal, start_demo_at,
    stop_demo, ServeArgs, Start,
};
use mesh::Mesh;
use net::server;

/// The exit status of a node that learnt another node owns the galaxy.
pub const EXIT_NOT_OWNER: u8 = 3;

/// Environment variable, for tests only: a node that learns it lost the lease keeps serving
/// instead of stopping, so that a test can prove the last guard, fencing, at the level of the
/// whole binary (a resumed zombie's appends are refused by the stream, and it stops then).
/// Without it a paused node stops by its own clock before it tries one append. Never set it
/// in production: a node that ignores the loss of its lease answers reads from stale state.
pub const TEST_ONLY_IGNORE_LEASE_LOSS_ENV: &str = "MLTRADER_TEST_ONLY_IGNORE_LEASE_LOSS";

/// How often the node looks at the count of appends refused by fencing.
const FENCE_WATCH_MS: u64 = 100;

/// How long a start tries to open the logs' stream and the lease bucket before it gives up.
const OPEN_RETRY_FOR_MS: u64 = 60_000;

/// The pause between two tries.
const OPEN_RETRY_PAUSE_MS: u64 = 500;

/// A standby's complaint about an unreachable lease bucket is printed at most this often.
const COMPLAINT_EVERY_MS: u64 = 5_000;

pub(super) async fn serve(args: ServeArgs, urls: String, start: Start) -> anyhow::Result<ExitCode> {
    let systems = start.galaxy.len();
    let addr = start.listener.local_addr()?;
    // Signals are listened for from here on: a SIGTERM while standing by stops the node.
    let mut signalled = Box::pin(shutdown_signal());
    let switch = Switch::standing_by("another node (not known yet)");
    let (admission, timeouts) = admission_of(&args, start.caps);
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        start.listener,
        switch.router(),
        admission.clone(),
        timeouts,
        async move {
            let _ = server_stopped.await;
        },
    ));
    println!("listening on http://{addr} (503 standby until this node holds the galaxy's lease)");

    let node = Node::connect(&args, &urls, start.datadir.galaxy_file()).await?;
    let taken = tokio::select! {
        taken = node.take_lease(&switch) => taken,
        () = &mut signalled => {
            let _ = stop_server.send(());
            let _ = server.await;
            println!("stopped while standing by");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let claim = taken.claim.clone();
    node.logs.hold(claim.epoch);
    println!(
        "logs in NATS JetStream at {urls}: galaxy lease claimed, epoch {} (lease {} ms)",
        claim.epoch,
        node.lease.as_millis()
    );
    let renewing = tokio::spawn(renew_forever(
        node.ownership.clone(),
        node.logs.clone(),
        claim.clone(),
        taken.sent,
    ));
    tokio::spawn(stop_when_fenced(node.logs.clone()));

    let storage = Storage {
        logs: node.logs.clone(),
        snapshots: node.snapshots.clone(),
    };
    let started = Mesh::start_on(storage, start.datadir.clone(), start.galaxy, start.config).await;
    let (mesh, report) = match started {
        Ok(started) => started,
        Err(e) => {
            exit_if_fenced(&node.logs);
            return Err(e).with_context(|| {
                format!(
                    "cannot recover the galaxy from NATS ({})",
                    args.data.display()
                )
            });
        }
    };
    println!("{}", report.summary());
    let api = net::for_serve(mesh.clone()).await?;
    switch.serve(api.router);
    print_serving(systems, &args, addr, &admission.caps());
    if let Some(previous) = &taken.previous {
        println!(
            "{}",
            taken_over_line(previous, node.lease, &taken, report.records_replayed)
        );
    }
    let demo = start_demo_at(&args, addr);
    signalled.await;
    stop_demo(demo).await;
    let _ = stop_server.send(());
    let _ = server.await;
    print_refused(&admission);
    let statuses = mesh.stop().await.context("stopping the mesh")?;
    renewing.abort();
    node.release(&claim).await;
    println!("{}", fenced_line(&node.logs));
    print_stopped(&statuses);
    Ok(ExitCode::SUCCESS)
}

/// This node's connection, logs and lease bucket.
pub(super) struct Node {
    pub nats: nats::Nats,
    pub logs: Arc<NatsLogs>,
    pub ownership: Arc<NatsOwnership>,
    /// Snapshots, and the galaxy's definition kept beside them at first start.
    pub snapshots: Arc<NatsSnapshots>,
    pub lease: Duration,
}

/// How this node came to hold the lease.
struct Taken {
    claim: Claim,
    /// When the winning claim was sent (this node's clock): the lease lasts from then at least.
    sent: Instant,
    /// When the claim succeeded, by this machine's wall clock.
    claimed_at: SystemTime,
    /// The holder this node last saw before it claimed (none: the lease was free).
    previous: Option<Holder>,
    /// The key was free when claimed: the previous holder, if any, released it (a clean stop).
    released: bool,
}

impl Node {
    /// Connects (credentials, safety check), opens the logs' stream, the snapshots' bucket
    /// (keeping the galaxy's definition there at first start, refusing a node whose
    /// `galaxy_file` differs from it) and the lease bucket.
    pub(super) async fn connect(
        args: &ServeArgs,
        urls: &str,
        galaxy_file: std::path::PathBuf,
    ) -> anyhow::Result<Node> {
        let split = |list: &str| list.split(',').map(|s| s.trim().to_string()).collect();
        let config = nats::NatsConfig {
            urls: split(urls),
            creds_file: args.creds.clone().context("--nats needs --creds")?,
            monitor_urls: split(args.nats_monitor.as_deref().unwrap_or_default()),
            node: args.node.clone().context("--nats needs --node")?,
            safety: nats::Safety::Required,
        };
        let replicas = usize::try_from(args.nats_replicas)?;
        let lease = Duration::from_millis(args.lease_ms);
        let region = args.region.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Node> {
            let nats = nats::Nats::connect_in_region(&config, region.as_deref())?;
            // Creating the stream and the bucket is a request to the cluster's meta leader: on
            // a new or busy cluster, or with two nodes creating them at once, it may time out.
            let logs =
                again_for_a_while("open the logs' stream", || NatsLogs::open(&nats, replicas))?;
            let snapshots = again_for_a_while("open the snapshots' bucket", || {
                NatsSnapshots::open(&nats, nats::snapshots::SNAPSHOTS_BUCKET, replicas)
            })?;
            let local = std::fs::read(&galaxy_file)
                .with_context(|| format!("cannot read {}", galaxy_file.display()))?;
            snapshots.keep_galaxy(&local, &galaxy_file.display().to_string())?;
            let ownership = again_for_a_while("open the lease bucket", || {
                NatsOwnership::open(&nats, nats::lease::LEASES_BUCKET, lease, replicas)
            })?;
            Ok(Node {
                nats,
                logs: Arc::new(logs),
                ownership: Arc::new(ownership),
                snapshots: Arc::new(snapshots),
                lease,
            })
        })
        .await?
    }

    /// Claims the lease, at once if it is free, else once its holder has been silent for a
    /// whole lease over the polls the store answered: standing by meanwhile (the API answers
    /// 503 naming the holder). A poll the store does not answer (an election stalls the bucket
    /// for seconds) starts the count again: the holder could not renew either.
    async fn take_lease(&self, switch: &Switch) -> Taken {
        let mut previous: Option<Holder> = None;
        let mut complained: Option<Instant> = None;
        let clock = Instant::now();
        let ms = |t: Instant| ms_since(clock, t);
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let mut watch = Watch::new(lease_ms);
        loop {
            let ownership = self.ownership.clone();
            let sent = Instant::now();
            let silent = watch.silent(ms(sent));
            let attempt = lease_call(move || match silent {
                Some(revision) => ownership.take_over(MESH_UNIT, revision),
                None => ownership.try_claim(MESH_UNIT),
            })
            .await;
            match attempt {
                Ok(ClaimAttempt::Claimed(claim)) => {
                    return Taken {
                        claim,
                        sent,
                        claimed_at: SystemTime::now(),
                        previous,
                        released: silent.is_none(),
                    }
                }
                Ok(ClaimAttempt::Held(holder)) => {
                    watch.answered(holder.revision, ms(Instant::now()));
                    let named = format!("node={} epoch={}", holder.node, holder.epoch);
                    if previous.as_ref().map(|p| p.epoch) != Some(holder.epoch) {
                        println!(
                            "standing by: mesh is held by {named}; taking over when its lease expires"
                        );
                        switch.set_holder(named);
                    }
                    previous = Some(holder);
                }
                Err(e) => {
                    watch.unanswered();
                    complain(&mut complained, &e.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(nats::limits::STANDBY_POLL_MS)).await;
        }
    }

    /// Lets the lease go, so a standby can take over at once.
    async fn release(&self, claim: &Claim) {
        let (ownership, claim) = (self.ownership.clone(), claim.clone());
        if let Err(e) = lease_call(move || ownership.release(&claim)).await {
            eprintln!(
                "could not release the galaxy's lease ({e}); a standby takes it over after a lease of silence"
            );
        }
    }
}

/// Runs a blocking call of the lease bucket off the async threads; a task that could not run
/// is a failure of the call.
pub(super) async fn lease_call<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, OwnershipError> + Send + 'static,
) -> Result<T, OwnershipError> {
    tokio::task::spawn_blocking(call).await.unwrap_or_else(|e| {
        Err(OwnershipError::Failed {
            unit: MESH_UNIT.to_string(),
            reason: e.to_string(),
        })
    })
}

/// Milliseconds from `start` to `t` on this node's monotonic clock: the time of the pure lease
/// rules (`Watch`, `Holding`).
pub(super) fn ms_since(start: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}

/// Runs `open` until it succeeds, for at most [`OPEN_RETRY_FOR_MS`]: a JetStream request can
/// time out while the cluster elects or is busy.
pub(super) fn again_for_a_while<T, E: Into<anyhow::Error> + std::fmt::Display>(
    what: &str,
    mut open: impl FnMut() -> Result<T, E>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        match open() {
            Ok(opened) => return Ok(opened),
            Err(e) if started.elapsed() < Duration::from_millis(OPEN_RETRY_FOR_MS) => {
                eprintln!("cannot {what} yet ({e}); trying again");
                std::thread::sleep(Duration::from_millis(OPEN_RETRY_PAUSE_MS));
            }
            Err(e) => {
                return Err(e.into())
                    .with_context(|| format!("cannot {what} within {OPEN_RETRY_FOR_MS} ms"))
            }
        }
    }
}

fn complain(last: &mut Option<Instant>, error: &str) {
    if last.is_some_and(|t| t.elapsed() < Duration::from_millis(COMPLAINT_EVERY_MS)) {
        return;
    }
    eprintln!("standing by: cannot read the galaxy's lease yet ({error}); trying again");
    *last = Some(Instant::now());
}

/// "took over from ...": when the previous holder's lease expired (its last renewal as the
/// server stored it, plus the lease), how long after this node claimed it and served, and
/// what it replayed; or, when the holder released it, how long serving took after the claim.
fn taken_over_line(previous: &Holder, lease: Duration, taken: &Taken, replayed: u64) -> String {
    let ms = |t: SystemTime| -> i128 {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i128)
    };
    let serving = ms(SystemTime::now());
    if taken.released {
        return format!(
            "took over from node={} epoch={}, which released the lease: serving {} ms after the claim; {replayed} records replayed",
            previous.node,
            previous.epoch,
            serving - ms(taken.claimed_at),
        );
    }
    let expired = ms(previous.expires_at(lease));
    format!(
        "took over from node={} epoch={}: its lease expired at {expired} ms (server clock, unix); claimed {} ms after, serving {} ms after; {replayed} records replayed",
        previous.node,
        previous.epoch,
        ms(taken.claimed_at) - expired,
        serving - expired,
    )
}

/// Renews the lease every quarter of it (each attempt given that long). Stops the node (exit
/// 3) at once when a renewal finds the lease taken by another, or when by this node's own
/// clock no renewal was taken for a whole lease (`Holding`: renewals the store left unanswered,
/// as in an election, stall that count, as they stall the watchers', up to
/// [`nats::limits::UNANSWERED_GRACE_MS`] past the lease).
async fn renew_forever(
    ownership: Arc<NatsOwnership>,
    logs: Arc<NatsLogs>,
    claim: Claim,
    claim_sent: Instant,
) {
    let lease = ownership.lease();
    let every = lease / u32::try_from(nats::limits::RENEWALS_PER_LEASE).unwrap_or(4);
    let ms = |t: Instant| ms_since(claim_sent, t);
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let mut holding = Holding::new(0, lease_ms, nats::limits::UNANSWERED_GRACE_MS);
    let ignore_loss = std::env::var_os(TEST_ONLY_IGNORE_LEASE_LOSS_ENV).is_some();
    if ignore_loss {
        eprintln!(
            "{TEST_ONLY_IGNORE_LEASE_LOSS_ENV} is set: this node keeps serving after it loses the lease, until an append is refused (for tests only)"
        );
    }
    loop {
        tokio::time::sleep(every).await;
        let sent = Instant::now();
        if holding.expired(ms(sent)) {
            if !ignore_loss {
                expired_by_own_clock(&logs, &claim, lease);
            }
            holding = Holding::new(ms(sent), lease_ms, nats::limits::UNANSWERED_GRACE_MS);
        }
        let (o, c) = (ownership.clone(), claim.clone());
        let renewal = match lease_call(move || o.renew(&c)).await {
            Ok(()) => Renewal::Renewed,
            Err(OwnershipError::NotHeld { .. }) => Renewal::Lost,
            Err(e) => {
                eprintln!("cannot renew the galaxy's lease yet: {e}");
                Renewal::Unavailable
            }
        };
        match holding.renewal(renewal, ms(sent)) {
            AfterRenewal::KeepServing => {}
            AfterRenewal::Stop if ignore_loss => {
                eprintln!("lost the galaxy's lease; ignored ({TEST_ONLY_IGNORE_LEASE_LOSS_ENV})");
            }
            AfterRenewal::Stop => {
                println!(
                    "lost the galaxy's lease (epoch {}): another node serves it now; stopping",
                    claim.epoch
                );
                println!("{}", fenced_line(&logs));
                std::process::exit(EXIT_NOT_OWNER.into());
            }
        }
    }
}

fn expired_by_own_clock(logs: &NatsLogs, claim: &Claim, lease: Duration) -> ! {
    println!(
        "no renewal of the galaxy's lease (epoch {}) succeeded for {} ms, its length: by this node's clock it has expired and another node may hold it; stopping",
        claim.epoch,
        lease.as_millis()
    );
    println!("{}", fenced_line(logs));
    std::process::exit(EXIT_NOT_OWNER.into());
}

/// "N appends refused (fenced)": publishes the stream refused because another writer had
/// appended since (this node was no longer the owner).
fn fenced_line(logs: &NatsLogs) -> String {
    let stats = logs.stats();
    let count = stats.fenced.load(Ordering::Relaxed);
    match stats.first_fenced() {
        Some(first) => format!("{count} appends refused (fenced); the first: {first}"),
        None => format!("{count} appends refused (fenced)"),
    }
}

/// Stops the node (exit 3) as soon as one append is refused by fencing: another node owns
/// the logs, and this one must not answer players.
async fn stop_when_fenced(logs: Arc<NatsLogs>) {
    loop {
        tokio::time::sleep(Duration::from_millis(FENCE_WATCH_MS)).await;
        exit_if_fenced(&logs);
    }
}

fn exit_if_fenced(logs: &NatsLogs) {
    if logs.stats().fenced.load(Ordering::Relaxed) > 0 {
        println!(
            "{}: another node owns the galaxy's logs now; stopping",
            fenced_line(logs)
        );
        std::process::exit(EXIT_NOT_OWNER.into());
    }
}
