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
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use nats::rehome::Home;
use nats::Nats;
use sim::galaxy::{Galaxy, SystemId};

use super::ServeArgs;

/// How often the homes' buckets are read, in milliseconds.
pub const HOMES_EVERY_MS: u64 = 1_000;

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

/// Which systems this node's region serves now.
pub struct Homes {
    region: Option<String>,
    /// The other regions the galaxy names.
    others: Vec<String>,
    nats: Nats,
    pairs: Arc<nats::pairs::NatsLinks>,
    /// Re-homed systems as the buckets last said, by slug (own region's and others' merged:
    /// a system is re-homed into one region at a time).
    rehomed: BTreeMap<String, Home>,
    read_at: Option<Instant>,
}

impl Homes {
    pub fn new(
        galaxy: &Galaxy,
        region: Option<String>,
        nats: Nats,
        pairs: Arc<nats::pairs::NatsLinks>,
    ) -> Homes {
        let others = galaxy
            .regions()
            .into_iter()
            .filter(|r| Some(*r) != region.as_deref())
            .map(str::to_string)
            .collect();
        Homes {
            region,
            others,
            nats,
            pairs,
            rehomed: BTreeMap::new(),
            read_at: None,
        }
    }

    /// Reads the homes' buckets again if [`HOMES_EVERY_MS`] have passed (a region that does
    /// not answer keeps what was last read of it).
    pub async fn refresh(&mut self) {
        let Some(own) = self.region.clone() else {
            return;
        };
        if self
            .read_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(HOMES_EVERY_MS))
        {
            return;
        }
        self.read_at = Some(Instant::now());
        let nats = self.nats.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            match nats::rehome::homes(&nats) {
                Ok(homes) => found.push((own.clone(), homes)),
                Err(e) => tracing::warn!("region {own}: cannot read its homes: {e}"),
            }
            found
        })
        .await
        .unwrap_or_default();
        let others = self.others.clone();
        let nats = self.nats.clone();
        let read_others = tokio::task::spawn_blocking(move || {
            others
                .into_iter()
                .filter_map(|r| nats::rehome::homes_of(&nats, &r).ok().map(|h| (r, h)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (_, homes) in read.into_iter().chain(read_others) {
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

    /// The epoch a unit claimed at lease revision `revision` runs under: above the home epoch
    /// of a system re-homed here (every epoch its old region gave was below that), the
    /// revision itself otherwise.
    pub fn epoch_of(&self, galaxy: &Galaxy, system: SystemId, revision: u64) -> u64 {
        match self.rehomed.get(galaxy.slug(system)) {
            Some(home) if Some(&home.region) == self.region.as_ref() => {
                home.home_epoch.saturating_add(revision)
            }
            _ => revision,
        }
    }
}
