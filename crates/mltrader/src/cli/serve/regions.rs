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
