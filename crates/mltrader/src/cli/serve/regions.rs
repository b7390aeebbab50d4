//! `serve --nats --spread --region R`: which systems a node of region R serves (issue 20,
//! docs/REGIONS.md).
//!
//! A system is served by the nodes of its home region: the galaxy file's `region`, unless a
//! promotion re-homed it (`mltrader region promote`, the KV bucket `nats::rehome::HOMES_BUCKET`
//! of the region it was re-homed into). Every [`HOMES_EVERY_MS`] a node reads its own region's
//! bucket (systems re-homed here: served here, at an epoch above the old region's) and every
//! other region's it can reach (systems re-homed away from here: no longer served here; a node
//! of a lost region that comes back stops them at its next round), and points the pair subjects
//! of re-homed systems at their new home.
//!
//! Never claims, starts or stops a unit itself (the spread node does, from what this says), and
//! never writes a home.
//!
//! [`RegionLinks`] owns the node's view of every other region (issue 20, read-only views): a
//! task of its own asks each region every [`LINKS_EVERY_MS`] for its JetStream round trip, the
//! state of this region's copies of it (`nats::copies::copy_status`) and, while it answers, the
//! population of its systems (`GET /v1/status` forwarded to the owner of each of its systems'
//! units over the link). `GET /v1/regions` and `GET /v1/systems` read what it last saw. It
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

/// What the reader task heard: the re-homed systems of each region that answered (by slug),
/// taken by the next round.
type Heard = Arc<Mutex<Vec<BTreeMap<String, Home>>>>;

/// Which systems this node's region serves now.
pub struct Homes {
    region: Option<String>,
    pairs: Arc<nats::pairs::NatsLinks>,
    /// Re-homed systems as the buckets last said, by slug (own region's and others' merged:
    /// a system is re-homed into one region at a time).
    rehomed: BTreeMap<String, Home>,
    heard: Heard,
    reader: Option<tokio::task::JoinHandle<()>>,
    /// When a home last changed.
    changed: Option<Instant>,
}

impl Homes {
    /// Starts reading the homes' buckets every [`HOMES_EVERY_MS`] in a task of its own (a
    /// region that does not answer makes a read wait seconds: never in the node's round, whose
    /// renewals cannot wait).
    pub fn new(
        galaxy: &Galaxy,
        region: Option<String>,
        nats: Nats,
        pairs: Arc<nats::pairs::NatsLinks>,
    ) -> Homes {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let reader = region.clone().map(|own| {
            let regions = galaxy.regions().into_iter().map(str::to_string).collect();
            tokio::spawn(read_homes(own, regions, nats, heard.clone()))
        });
        Homes {
            region,
            pairs,
            rehomed: BTreeMap::new(),
            heard,
            reader,
            changed: None,
        }
    }

    /// Takes in what the reader heard since the last round: a newer home of a system points
    /// its pair subjects there.
    pub fn refresh(&mut self) {
        let heard = std::mem::take(&mut *self.heard.lock().unwrap_or_else(|e| e.into_inner()));
        for homes in heard {
            for (slug, home) in homes {
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
                    self.changed = Some(Instant::now());
                }
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
        self.changed
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(HOMES_SETTLE_MS))
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
/// `own` included, through its own domain), every [`HOMES_EVERY_MS`], into `heard`. A region
/// that does not answer (the link cut, the region lost): what was heard of it stands; only
/// this node's own region not answering is said.
async fn read_homes(own: String, regions: Vec<String>, nats: Nats, heard: Heard) {
    let mut every = tokio::time::interval(Duration::from_millis(HOMES_EVERY_MS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for region in &regions {
            let (n, r) = (nats.clone(), region.clone());
            match tokio::task::spawn_blocking(move || nats::rehome::homes_of(&n, &r)).await {
                Ok(Ok(homes)) => heard.lock().unwrap_or_else(|e| e.into_inner()).push(homes),
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

/// How long the links task waits for an owner's `GET /v1/status` over the link, in
/// milliseconds.
pub const POPULATION_TIMEOUT_MS: u64 = 2_000;

/// What the links task last saw of one other region.
struct LinkSeen {
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

/// The node's view of the other regions' links, kept by a task of its own.
pub struct RegionLinks {
    own: String,
    seen: Arc<Mutex<BTreeMap<String, LinkSeen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RegionLinks {
    /// Starts the links task of a node of region `own` (on the current tokio runtime).
    pub fn start(nats: Nats, galaxy: &Galaxy, own: &str) -> RegionLinks {
        let now = Instant::now();
        let seen: BTreeMap<String, LinkSeen> = galaxy
            .regions()
            .into_iter()
            .filter(|r| *r != own)
            .map(|r| {
                let systems = galaxy
                    .ids()
                    .filter(|&id| galaxy.region_of(id) == Some(r))
                    .map(|id| galaxy.slug(id).to_string())
                    .collect();
                let link = LinkSeen {
                    systems,
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
        let seen = Arc::new(Mutex::new(seen));
        let task = tokio::spawn(watch_links(nats, seen.clone()));
        RegionLinks {
            own: own.to_string(),
            seen,
            task,
        }
    }

    /// What the task last saw, as `GET /v1/regions` shows it.
    pub fn view(&self) -> api::Regions {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let regions = seen
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

/// The links task: every [`LINKS_EVERY_MS`], each other region's round trip, copies and
/// populations into `seen`. What was heard of a region that stops answering stands, with its
/// time.
async fn watch_links(nats: Nats, seen: Arc<Mutex<BTreeMap<String, LinkSeen>>>) {
    let requester = nats::requests::Requester::new(&nats);
    let regions: Vec<(String, Vec<String>)> = {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .map(|(r, l)| (r.clone(), l.systems.clone()))
            .collect()
    };
    let mut asked: u64 = 0;
    let mut every = tokio::time::interval(Duration::from_millis(LINKS_EVERY_MS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for (region, systems) in &regions {
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
            let mut heard = BTreeMap::new();
            if rtt.is_some() {
                for slug in systems {
                    if heard.contains_key(slug) {
                        continue;
                    }
                    asked += 1;
                    match population_of(&requester, slug, asked).await {
                        Ok(p) => heard.extend(p),
                        Err(e) => tracing::debug!("region {region}: no population of {slug}: {e}"),
                    }
                }
            }
            let now = Instant::now();
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let l = seen.get_mut(region).expect("a region of the galaxy");
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
            for (slug, population) in heard {
                if systems.contains(&slug) {
                    l.populations.insert(slug, (population, now));
                }
            }
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

/// The population of every system the owner of `slug`'s unit runs (its `GET /v1/status`,
/// forwarded over NATS), by slug.
async fn population_of(
    requester: &nats::requests::Requester,
    slug: &str,
    asked: u64,
) -> anyhow::Result<BTreeMap<String, usize>> {
    use api::forward::{ForwardedReply, ForwardedRequest};
    let unit = mesh::protocol::deal::unit_of_system(slug);
    let request = ForwardedRequest {
        request_id: format!("regions-{}-{asked}", std::process::id()),
        player: None,
        method: "GET".into(),
        path_and_query: "/v1/status".into(),
        content_type: None,
        body: String::new(),
    };
    let payload = serde_json::to_vec(&request).expect("a request serializes");
    let answer = requester
        .forward(
            &unit,
            &request.request_id,
            payload,
            Duration::from_millis(POPULATION_TIMEOUT_MS),
        )
        .await?;
    let ForwardedReply::Answered(response) = serde_json::from_slice(&answer)? else {
        bail!("unit {unit} is being handed over");
    };
    if response.status != 200 {
        bail!(
            "unit {unit} answered {}: {}",
            response.status,
            response.body
        );
    }
    let status: Vec<api::ShardStatus> = serde_json::from_str(&response.body)?;
    Ok(status
        .into_iter()
        .map(|s| {
            let population = s.population + s.instances.iter().map(|i| i.population).sum::<usize>();
            (s.slug, population)
        })
        .collect())
}
