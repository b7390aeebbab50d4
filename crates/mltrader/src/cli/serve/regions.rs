//! `serve --nats --spread --region R`: which systems a node of region R serves (issue 20,
//! docs/REGIONS.md).
//!
//! A system is served by the nodes of its home region: the galaxy file's `region`, unless a
//! promotion re-homed it (`mltrader region promote`, the KV bucket `nats::rehome::HOMES_BUCKET`
//! of the region it was re-homed into). [`hear_homes`] reads every region's bucket before the
//! node claims any unit (a node of a lost region that comes back never serves a system
//! re-homed away from it, when the survivor answers within [`HOMES_START_WAIT_MS`]), then a
//! task of its own reads them every [`HOMES_EVERY_MS`] into [`HeardHomes`]: its own region's
//! (systems re-homed here: served here, at an epoch above the old region's) and every other
//! region's it can reach (systems re-homed away from here). On hearing that a system whose unit
//! this node runs is homed elsewhere now, the task revokes that unit's writes at once
//! (`nats::logs::Revoker`: no further append is acknowledged), and the node's round stops it.
//! The round also points the pair subjects of re-homed systems at their new home.
//!
//! Never claims, starts or stops a unit itself (the spread node does, from what this says), and
//! never writes a home.
//!
//! [`RegionLinks`] owns the node's view of every other region (issue 20, read-only views): a
//! task of its own asks each region every [`LINKS_EVERY_MS`] for its JetStream round trip, the
//! state of this region's copies of it (`nats::copies::copy_status`) and, while it answers, the
//! population of the systems homed there now (as [`HeardHomes`] says: a promotion moves them;
//! `GET /v1/status` forwarded to the owner of each of its systems' units over the link, as
//! `super::populations` asks the nodes of this region). `GET /v1/regions` and `GET /v1/systems`
//! read what it last saw. It
//! never writes anything and never runs in the node's round (a cut link makes a call wait
//! seconds, and the round renews the leases).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use nats::rehome::Home;
use nats::Nats;
use sim::galaxy::{Galaxy, SystemId};

use super::ServeArgs;

/// How often the homes' buckets are read, in milliseconds.
pub const HOMES_EVERY_MS: u64 = 1_000;

/// How long the homes must stay unchanged before a system re-homed here is claimed, in
/// milliseconds: a promotion writes them one system at a time, and a unit started while its
/// neighbours are still homed in the lost region would wait for that region to fence its pair
/// subjects towards them.
pub const HOMES_SETTLE_MS: u64 = 2 * HOMES_EVERY_MS;

/// The node's region, checked against the galaxy file: None without `--region`.
pub fn checked(args: &ServeArgs, galaxy: &Galaxy) -> anyhow::Result<Option<String>> {
    let Some(region) = &args.region else {
        return Ok(None);
    };
    let regions = galaxy.regions();
    if regions.is_empty() {
        bail!(
            "--region {region}: the galaxy file names no regions (add region = \"{region}\" to the systems this region serves)"
        );
    }
    if !regions.contains(&region.as_str()) {
        bail!(
            "--region {region}: the galaxy file homes no system there; its regions are {}",
            regions.join(", ")
        );
    }
    Ok(Some(region.clone()))
}

/// Makes (or keeps) this region's copies of every other region's streams (decision 4: the
/// cross-region backup, a mirror each, following its source whenever the link is up). A copy
/// that cannot be made (a frozen one after a promotion, a server refusing) is said, not fatal.
pub async fn keep_copies(nats: &Nats, own: &str, galaxy: &Galaxy, replicas: usize) {
    for other in galaxy.regions().into_iter().filter(|r| *r != own) {
        let (n, o) = (nats.clone(), other.to_string());
        match tokio::task::spawn_blocking(move || nats::copies::ensure_copies(&n, &o, replicas)).await {
            Ok(Ok(made)) => println!("region {own}: copies of region {other}: {}", made.join(", ")),
            Ok(Err(e)) => eprintln!("region {own}: no copy of region {other} ({e}); `mltrader region status` shows the copies"),
            Err(e) => eprintln!("region {own}: no copy of region {other} ({e})"),
        }
    }
}

/// How long a starting node waits for every region's homes before it claims any unit, in
/// milliseconds: a region that does not answer within it (the link cut) is read again by the
/// reader task every [`HOMES_EVERY_MS`]. Above the leafnode's redial (1 s), so that a node
/// started with its region's servers (the usual return of a lost region) hears the survivor.
pub const HOMES_START_WAIT_MS: u64 = 5 * HOMES_EVERY_MS;

/// How long a starting node pauses between two tries of the regions that have not answered,
/// in milliseconds.
pub const HOMES_START_RETRY_MS: u64 = 250;

/// The homes a node of region `own` has heard, shared by the reader task (which writes them),
/// the node's round (which claims and stops units from them) and the views (`GET /v1/systems`,
/// `/v1/regions`). Std mutex: held for a map operation only, never across a call.
pub struct HeardHomes {
    own: String,
    galaxy: Arc<Galaxy>,
    state: Mutex<HeardState>,
}

struct HeardState {
    /// Re-homed systems by slug: of every region's bucket that answered, the highest home
    /// epoch (a system is re-homed into one region at a time; an older entry elsewhere is
    /// stale).
    homes: BTreeMap<String, Home>,
    /// When a home last changed.
    changed: Option<Instant>,
    /// The writers of the units this node runs, by slug: revoked by whoever first learns that
    /// the unit's system is homed in another region (the reader, or [`HeardHomes::watch`]).
    writers: BTreeMap<String, nats::logs::Revoker>,
}

impl HeardHomes {
    fn new(own: &str, galaxy: Arc<Galaxy>) -> HeardHomes {
        HeardHomes {
            own: own.to_string(),
            galaxy,
            state: Mutex::new(HeardState {
                homes: BTreeMap::new(),
                changed: None,
                writers: BTreeMap::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HeardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's region.
    pub fn own(&self) -> &str {
        &self.own
    }

    /// Takes in one region's bucket: each newer home replaces what was known; then every unit
    /// this node runs whose system is homed in another region now has its writes revoked at
    /// once (before the round stops it: nothing more is acknowledged from here).
    fn merge(&self, homes: BTreeMap<String, Home>) {
        let mut state = self.state();
        for (slug, home) in homes {
            let newer = state
                .homes
                .get(&slug)
                .is_none_or(|known| home.home_epoch > known.home_epoch);
            if newer {
                state.homes.insert(slug, home);
                state.changed = Some(Instant::now());
            }
        }
        let state = &mut *state;
        state.writers.retain(|slug, writer| {
            let Some(home) = state.homes.get(slug).filter(|h| h.region != self.own) else {
                return true;
            };
            writer.revoke(&format!(
                "system {slug} is homed in region {} now (re-homed from {}, home epoch {})",
                home.region, home.from, home.home_epoch
            ));
            false
        });
    }

    /// The re-homed systems as last heard, by slug.
    pub fn rehomed(&self) -> BTreeMap<String, Home> {
        self.state().homes.clone()
    }

    /// When a home last changed (None: never since the start).
    fn changed(&self) -> Option<Instant> {
        self.state().changed
    }

    /// The region `system` is homed in now, as heard: its re-home, else the galaxy file's.
    pub fn region_of(&self, system: SystemId) -> Option<String> {
        let slug = self.galaxy.slug(system);
        match self.state().homes.get(slug) {
            Some(home) => Some(home.region.clone()),
            None => self.galaxy.region_of(system).map(str::to_string),
        }
    }

    /// Watches the writers of a unit this node starts: revoked at once if its system is homed
    /// elsewhere already (heard between the round's decision and now), else as soon as that
    /// is heard.
    pub fn watch(&self, system: SystemId, writer: nats::logs::Revoker) {
        let slug = self.galaxy.slug(system).to_string();
        let mut state = self.state();
        match state.homes.get(&slug).filter(|h| h.region != self.own) {
            Some(home) => writer.revoke(&format!(
                "system {slug} is homed in region {} now",
                home.region
            )),
            None => {
                state.writers.insert(slug, writer);
            }
        }
    }

    /// Stops watching a unit this node no longer runs.
    pub fn unwatch(&self, system: SystemId) {
        self.state().writers.remove(self.galaxy.slug(system));
    }
}

/// Starts a node of region `own` on the homes: reads every region's homes' bucket (its own and
/// every other's it can reach: a region that homes no re-homed system answers an empty one),
/// trying the regions that do not answer again for up to [`HOMES_START_WAIT_MS`], so that a
/// node of a region that comes back after a promotion never claims a system re-homed away
/// from it; then starts the reader task (every [`HOMES_EVERY_MS`]). Returns the homes heard and
/// the task (aborted by [`Homes`]' drop), and says which regions did not answer.
pub async fn hear_homes(
    nats: Nats,
    galaxy: Arc<Galaxy>,
    own: &str,
) -> (Arc<HeardHomes>, tokio::task::JoinHandle<()>) {
    let heard = Arc::new(HeardHomes::new(own, galaxy.clone()));
    let regions: Vec<String> = galaxy.regions().into_iter().map(str::to_string).collect();
    let began = Instant::now();
    let mut missing: Vec<String> = regions.clone();
    loop {
        let mut still = Vec::new();
        for region in missing {
            match read_region_homes(&nats, own, &region).await {
                Some(homes) => heard.merge(homes),
                None => still.push(region),
            }
        }
        missing = still;
        if missing.is_empty() || began.elapsed() >= Duration::from_millis(HOMES_START_WAIT_MS) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(HOMES_START_RETRY_MS)).await;
    }
    // What was recorded before this node started is no change to wait out: a promotion
    // finished before (one under way goes on changing the homes, and the reader marks that).
    heard.state().changed = None;
    let rehomed = heard.rehomed();
    let away: Vec<&str> = rehomed
        .iter()
        .filter(|(_, h)| h.region != own)
        .map(|(slug, _)| slug.as_str())
        .filter(|slug| galaxy.by_slug(slug).and_then(|id| galaxy.region_of(id)) == Some(own))
        .collect();
    if !away.is_empty() {
        println!(
            "region {own}: {} of its systems are re-homed elsewhere and not served here: {}",
            away.len(),
            away.join(", ")
        );
    }
    if !missing.is_empty() {
        eprintln!(
            "region {own}: the homes of region {} did not answer within {HOMES_START_WAIT_MS} ms; serving the galaxy file's homes and what was heard until they do (a system re-homed there meanwhile is stopped here when heard)",
            missing.join(", ")
        );
    }
    let reader = tokio::spawn(read_homes(nats, regions, heard.clone()));
    (heard, reader)
}

/// One region's homes' bucket, or None when it does not answer (another region is asked for
/// its JetStream round trip first: a bucket read across a cut link may look like an empty
/// one).
async fn read_region_homes(nats: &Nats, own: &str, region: &str) -> Option<BTreeMap<String, Home>> {
    let (n, r, other) = (nats.clone(), region.to_string(), region != own);
    let read = tokio::task::spawn_blocking(move || {
        if other && round_trip_ms(&n, &r).is_none() {
            return None;
        }
        nats::rehome::homes_of(&n, &r).ok()
    });
    read.await.ok().flatten()
}

/// Which systems this node's region serves now.
pub struct Homes {
    region: Option<String>,
    pairs: Arc<nats::pairs::NatsLinks>,
    /// Region mode: the homes heard, and the task that hears them.
    heard: Option<Arc<HeardHomes>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    /// Re-homed systems as the round last took them, by slug (their pair subjects pointed at
    /// their home).
    rehomed: BTreeMap<String, Home>,
}

impl Homes {
    /// The homes of a node: without a region, every system is served; with one, what
    /// [`hear_homes`] heard (and goes on hearing in its task).
    pub fn new(
        region: Option<String>,
        heard: Option<(Arc<HeardHomes>, tokio::task::JoinHandle<()>)>,
        pairs: Arc<nats::pairs::NatsLinks>,
    ) -> Homes {
        assert_eq!(
            region.is_some(),
            heard.is_some(),
            "a node of a region hears its homes; a node without one has none"
        );
        let (heard, reader) = heard.map_or((None, None), |(h, r)| (Some(h), Some(r)));
        Homes {
            region,
            pairs,
            heard,
            reader,
            rehomed: BTreeMap::new(),
        }
    }

    /// Takes in what the reader heard since the last round: a newer home of a system points
    /// its pair subjects there.
    pub fn refresh(&mut self) {
        let Some(heard) = &self.heard else {
            return;
        };
        for (slug, home) in heard.rehomed() {
            let newer = self
                .rehomed
                .get(&slug)
                .is_none_or(|known| home.home_epoch > known.home_epoch);
            if newer {
                println!(
                    "system {slug}: homed in region {} now (re-homed from {}, home epoch {})",
                    home.region, home.from, home.home_epoch
                );
                self.pairs.set_home(&slug, &home.region);
                self.rehomed.insert(slug, home);
            }
        }
    }

    /// Whether this node's region serves `system` (every system without regions).
    pub fn served_here(&self, galaxy: &Galaxy, system: SystemId) -> bool {
        let Some(own) = &self.region else {
            return true;
        };
        match self.rehomed.get(galaxy.slug(system)) {
            Some(home) => &home.region == own,
            None => galaxy.region_of(system) == Some(own.as_str()),
        }
    }

    /// Whether no home changed for [`HOMES_SETTLE_MS`]: units are claimed only then (a unit
    /// already running is kept).
    pub fn settled(&self) -> bool {
        self.heard
            .as_ref()
            .and_then(|h| h.changed())
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(HOMES_SETTLE_MS))
    }

    /// Watches the writers of a unit being started (region mode): see [`HeardHomes::watch`].
    pub fn watch(&self, system: SystemId, writer: nats::logs::Revoker) {
        if let Some(heard) = &self.heard {
            heard.watch(system, writer);
        }
    }

    /// Stops watching a unit this node no longer runs.
    pub fn unwatch(&self, system: SystemId) {
        if let Some(heard) = &self.heard {
            heard.unwatch(system);
        }
    }

    /// The epoch a unit claimed at lease revision `revision` runs under: for a system re-homed
    /// here, its home's generation above the revision (`generation << 40 | revision`, above
    /// every epoch its old region gave, however many owners it elected after the copy), the
    /// revision itself otherwise.
    pub fn epoch_of(&self, galaxy: &Galaxy, system: SystemId, revision: u64) -> u64 {
        match self.rehomed.get(galaxy.slug(system)) {
            Some(home) if Some(&home.region) == self.region.as_ref() => {
                // The home's generation above this region's lease revision
                // (`promote::promoted_epoch`): above every epoch the lost region could give.
                let generation = mesh::protocol::promote::generation_of(home.home_epoch);
                let epoch = home.home_epoch | revision;
                assert!(
                    revision < 1 << mesh::protocol::promote::EPOCH_GENERATION_SHIFT
                        && mesh::protocol::promote::generation_of(epoch) == generation
                        && epoch > home.home_epoch,
                    "lease revision {revision} of {} does not fit under home epoch {}",
                    galaxy.slug(system),
                    home.home_epoch
                );
                epoch
            }
            _ => revision,
        }
    }
}

impl Drop for Homes {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

/// The reader task: the homes of every region of `regions` that answers (this node's region
/// included, through its own domain), every [`HOMES_EVERY_MS`], into `heard` (which revokes at
/// once the writers of a unit whose system it hears homed elsewhere). A region that does not
/// answer (the link cut, the region lost): what was heard of it stands; only this node's own
/// region not answering is said.
async fn read_homes(nats: Nats, regions: Vec<String>, heard: Arc<HeardHomes>) {
    let own = heard.own().to_string();
    let mut every = tokio::time::interval(Duration::from_millis(HOMES_EVERY_MS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        for region in &regions {
            let (n, r) = (nats.clone(), region.clone());
            match tokio::task::spawn_blocking(move || nats::rehome::homes_of(&n, &r)).await {
                Ok(Ok(homes)) => heard.merge(homes),
                Ok(Err(e)) if *region == own => {
                    tracing::warn!("region {own}: cannot read its homes: {e}")
                }
                Ok(Err(_)) => {}
                Err(_) => return,
            }
        }
    }
}

/// How often the links task looks at every other region, in milliseconds.
pub const LINKS_EVERY_MS: u64 = 1_000;

/// How long the links task waits for a region's JetStream API to answer, in milliseconds (as
/// `mltrader region status`: `nats::copies::SOURCE_TIMEOUT_MS`).
pub const LINK_ANSWER_TIMEOUT_MS: u64 = nats::copies::SOURCE_TIMEOUT_MS;

/// What the links task last saw of one other region.
struct LinkSeen {
    /// The systems homed there now, as this node heard (the galaxy file's, or a promotion's).
    systems: Vec<String>,
    reachable: bool,
    /// When `reachable` last changed (or the task's start).
    since: Instant,
    last_contact: Option<Instant>,
    round_trip_ms: Option<f64>,
    copy_lag: Option<(u64, f64)>,
    /// Population by slug, and when it was heard.
    populations: BTreeMap<String, (usize, Instant)>,
}

/// What the links task last saw of each other region.
#[derive(Default)]
struct Seen {
    links: BTreeMap<String, LinkSeen>,
}

/// The node's view of the other regions' links, kept by a task of its own.
pub struct RegionLinks {
    own: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl RegionLinks {
    /// Starts the links task of a node of region `heard.own()` (on the current tokio runtime).
    pub fn start(nats: Nats, heard: Arc<HeardHomes>) -> RegionLinks {
        let now = Instant::now();
        let own = heard.own().to_string();
        let links = heard
            .galaxy
            .regions()
            .into_iter()
            .filter(|r| *r != own)
            .map(|r| {
                let link = LinkSeen {
                    systems: systems_of(&heard, r),
                    reachable: false,
                    since: now,
                    last_contact: None,
                    round_trip_ms: None,
                    copy_lag: None,
                    populations: BTreeMap::new(),
                };
                (r.to_string(), link)
            })
            .collect();
        let seen = Arc::new(Mutex::new(Seen { links }));
        let task = tokio::spawn(watch_links(nats, heard, seen.clone()));
        RegionLinks { own, seen, task }
    }

    /// What the task last saw, as `GET /v1/regions` shows it.
    pub fn view(&self) -> api::Regions {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let regions = seen
            .links
            .iter()
            .map(|(region, l)| api::RegionLink {
                region: region.clone(),
                systems: l.systems.clone(),
                reachable: l.reachable,
                since_s: l.since.elapsed().as_secs_f64(),
                last_contact_s_ago: l.last_contact.map(|t| t.elapsed().as_secs_f64()),
                round_trip_ms: l.round_trip_ms,
                copy_lag_messages: l.copy_lag.map(|(m, _)| m),
                copy_lag_s: l.copy_lag.map(|(_, s)| s),
                populations: l
                    .populations
                    .iter()
                    .filter(|(slug, _)| l.systems.contains(slug))
                    .map(|(slug, (population, at))| api::HeardPopulation {
                        slug: slug.clone(),
                        population: *population,
                        age_s: at.elapsed().as_secs_f64(),
                    })
                    .collect(),
            })
            .collect();
        api::Regions {
            region: Some(self.own.clone()),
            regions,
        }
    }
}

impl Drop for RegionLinks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The slugs of the systems homed in `region` now, as `heard` says.
pub fn systems_of(heard: &HeardHomes, region: &str) -> Vec<String> {
    heard
        .galaxy
        .ids()
        .filter(|&id| heard.region_of(id).as_deref() == Some(region))
        .map(|id| heard.galaxy.slug(id).to_string())
        .collect()
}

/// The links task: every [`LINKS_EVERY_MS`], each other region's round trip, copies and
/// populations into `seen`. What was heard of a region that stops answering stands, with its
/// time; the systems of each region follow the homes heard (a promotion moves them).
async fn watch_links(nats: Nats, heard: Arc<HeardHomes>, seen: Arc<Mutex<Seen>>) {
    let requester = nats::requests::Requester::new(&nats);
    let regions: Vec<String> = {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.links.keys().cloned().collect()
    };
    let mut asked: u64 = 0;
    let mut every = tokio::time::interval(Duration::from_millis(LINKS_EVERY_MS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for region in &regions {
            let systems = systems_of(&heard, region);
            let (n, r) = (nats.clone(), region.clone());
            let looked = tokio::task::spawn_blocking(move || {
                let rtt = round_trip_ms(&n, &r);
                let lag = nats::copies::copy_status(&n, &r).ok().and_then(|copies| {
                    let messages = copies.iter().map(|c| c.lag_messages).max()?;
                    let seconds = copies.iter().map(|c| c.lag_s).fold(0.0, f64::max);
                    Some((messages, seconds))
                });
                (rtt, lag)
            })
            .await;
            let Ok((rtt, lag)) = looked else { return };
            let populations = match rtt {
                Some(_) => {
                    let whose = format!("region {region}");
                    super::populations::populations_of(&requester, &systems, &mut asked, &whose)
                        .await
                }
                None => BTreeMap::new(),
            };
            let now = Instant::now();
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let l = seen.links.get_mut(region).expect("a region of the galaxy");
            let reachable = rtt.is_some();
            if reachable != l.reachable {
                println!(
                    "region {region}: {}",
                    if reachable {
                        "reachable"
                    } else {
                        "unreachable"
                    }
                );
                l.reachable = reachable;
                l.since = now;
            }
            if reachable {
                l.last_contact = Some(now);
            }
            l.round_trip_ms = rtt;
            l.copy_lag = lag.or(l.copy_lag);
            for (slug, population) in populations {
                if systems.contains(&slug) {
                    l.populations.insert(slug, (population, now));
                }
            }
            l.systems = systems;
        }
    }
}

/// The JetStream round trip to `region`'s domain, in ms, or None when it does not answer
/// within [`LINK_ANSWER_TIMEOUT_MS`]; blocks.
fn round_trip_ms(nats: &Nats, region: &str) -> Option<f64> {
    let js = nats.jetstream_of(region);
    nats.block_on(async move {
        let start = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_millis(LINK_ANSWER_TIMEOUT_MS),
            js.query_account(),
        )
        .await;
        match answer {
            Ok(Ok(_)) => Some(start.elapsed().as_secs_f64() * 1e3),
            _ => None,
        }
    })
}
