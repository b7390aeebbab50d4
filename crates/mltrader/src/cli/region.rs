//! `mltrader region`: the regions of a galaxy (issue 20, docs/REGIONS.md), seen from one
//! region's cluster (the one `--nats` names, `--region`):
//! - `status`: each region's systems (the galaxy file's homes, changed by the re-homings recorded
//!   in `mlt_homes`), the link's health (does the other region's JetStream API answer, and in
//!   how many ms), and the lag of each copy this region holds of the other's streams;
//! - `copy`: makes this region's copies (mirrors) of every other region's streams;
//! - `promote LOST --into SURVIVOR`: re-homes LOST's systems into SURVIVOR (this region) from
//!   its copy and prints the recovery point per system. Deliberately manual: promoting during
//!   a partition splits the brain.
//!
//! A thin shell over `nats::copies` and `nats::rehome`; never writes to another region.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde::Serialize;

use nats::copies::{copy_status, ensure_copies, CopyStatus, SOURCE_TIMEOUT_MS};
use nats::reconcile::{reconcile_promoted, SystemReconciled};
use nats::rehome::{copy_systems, homes, homes_of, record_homes, Home, LostAfter, RecoveryPoint};
use nats::snapshots::SNAPSHOTS_BUCKET;
use nats::{Nats, NatsSnapshots};
use sim::galaxy::Galaxy;

#[derive(Args, Debug)]
pub struct RegionArgs {
    #[command(subcommand)]
    pub command: RegionCommand,
}

#[derive(Subcommand, Debug)]
pub enum RegionCommand {
    /// Each region's systems, the links' health and the copies' lag.
    Status(StatusArgs),
    /// Make this region's copies (mirrors) of every other region's streams.
    Copy(CopyArgs),
    /// Re-home the systems of region LOST into this region (--into) from its copy.
    Promote(PromoteArgs),
}

/// How to reach one region's cluster.
#[derive(Args, Debug)]
pub struct Connection {
    /// NATS server URLs of this region's cluster, comma-separated.
    #[arg(long)]
    pub nats: String,
    /// The credentials file (`user = "..."`, `password = "..."`).
    #[arg(long)]
    pub creds: PathBuf,
    /// The monitoring URL of every server of this region (comma-separated), for the safety check.
    #[arg(long)]
    pub nats_monitor: String,
    /// The region the servers named belong to (their JetStream domain).
    #[arg(long)]
    pub region: String,
    /// The galaxy file (default: the galaxy.toml the nodes keep in JetStream).
    #[arg(long)]
    pub galaxy: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Copies of each copied stream in this region's cluster.
    #[arg(long, default_value_t = 3)]
    pub nats_replicas: usize,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The region lost.
    pub lost: String,
    /// The surviving region that takes its systems: the one `--region` names.
    #[arg(long)]
    pub into: String,
    #[command(flatten)]
    pub conn: Connection,
    /// Promote even though LOST's JetStream API answers (its nodes may still serve: two
    /// owners of its systems until they read `mlt_homes` and stop).
    #[arg(long)]
    pub even_if_reachable: bool,
    /// Jump travel time in ticks per light year, as the nodes serve (`serve --ticks-per-ly`):
    /// a survivor's jump published again carries it.
    #[arg(long, default_value_t = 10)]
    pub ticks_per_ly: u32,
    /// Print the recovery points as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `promote` did to one system: where it was recovered to, what may be lost, and what
/// the reconcile with the survivor's records applied and published again.
#[derive(Debug, Serialize)]
pub struct Promoted {
    #[serde(flatten)]
    pub point: RecoveryPoint,
    pub reconciled: SystemReconciled,
}

/// One region as `status` shows it.
#[derive(Debug, Serialize)]
pub struct RegionStatus {
    pub region: String,
    /// The region the command is connected to.
    pub local: bool,
    /// Its systems: the galaxy file's, with re-homings applied.
    pub systems: Vec<String>,
    /// Systems re-homed into it (slug to where from and the home epoch).
    pub rehomed_in: BTreeMap<String, Home>,
    /// Whether its JetStream API answered (always for the local one), and its round trip.
    pub reachable: bool,
    pub round_trip_ms: Option<f64>,
    /// The local region's copies of this region's streams (empty for the local region).
    pub copies: Vec<CopyStatus>,
}

pub fn run(args: RegionArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RegionCommand::Status(a) => status(a),
        RegionCommand::Copy(a) => copy(a),
        RegionCommand::Promote(a) => promote(a),
    }
}

fn connect(conn: &Connection) -> anyhow::Result<(Nats, Galaxy)> {
    nats::region::checked(&conn.region)?;
    let split = |list: &str| list.split(',').map(|s| s.trim().to_string()).collect();
    let config = nats::NatsConfig {
        urls: split(&conn.nats),
        creds_file: conn.creds.clone(),
        monitor_urls: split(&conn.nats_monitor),
        node: "region-tool".into(),
        safety: nats::Safety::Required,
    };
    let nats = Nats::connect_in_region(&config, Some(&conn.region))?;
    let galaxy = match &conn.galaxy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read galaxy file {}", path.display()))?;
            Galaxy::from_toml_str(&text)
                .with_context(|| format!("galaxy file {}", path.display()))?
        }
        None => {
            let snapshots = NatsSnapshots::open(&nats, SNAPSHOTS_BUCKET, 1)?;
            let Some(bytes) = snapshots.galaxy()? else {
                bail!("region {} keeps no galaxy.toml (bucket {SNAPSHOTS_BUCKET}): pass --galaxy FILE", conn.region)
            };
            Galaxy::from_toml_str(&String::from_utf8_lossy(&bytes))
                .context("the galaxy.toml kept in JetStream")?
        }
    };
    if galaxy.regions().is_empty() {
        bail!("the galaxy names no regions (`region = \"eu\"` on each [[system]])");
    }
    if !galaxy.regions().contains(&conn.region.as_str()) {
        bail!(
            "the galaxy's regions are {:?}, not {}",
            galaxy.regions(),
            conn.region
        );
    }
    Ok((nats, galaxy))
}

/// Every region's homes as recorded where they could be read: the local region's, and each
/// other's that answers.
fn all_homes(
    nats: &Nats,
    galaxy: &Galaxy,
    local: &str,
) -> BTreeMap<String, BTreeMap<String, Home>> {
    let mut out = BTreeMap::new();
    for region in galaxy.regions() {
        let read = if region == local {
            homes(nats)
        } else {
            homes_of(nats, region)
        };
        if let Ok(h) = read {
            out.insert(region.to_string(), h);
        }
    }
    out
}

/// Each system's home: the galaxy file's, unless a region recorded it re-homed (the highest
/// home epoch wins).
fn current_homes(
    galaxy: &Galaxy,
    recorded: &BTreeMap<String, BTreeMap<String, Home>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for id in galaxy.ids() {
        let slug = galaxy.slug(id);
        let file = galaxy
            .region_of(id)
            .expect("every system has a region")
            .to_string();
        let best = recorded
            .values()
            .filter_map(|h| h.get(slug))
            .max_by_key(|h| h.home_epoch)
            .map(|h| h.region.clone());
        out.insert(slug.to_string(), best.unwrap_or(file));
    }
    out
}

/// How long region `region`'s JetStream API takes to answer an account-info request; None
/// when it does not within [`SOURCE_TIMEOUT_MS`].
fn round_trip_ms(nats: &Nats, region: &str) -> Option<f64> {
    let js = nats.jetstream_of(region);
    nats.block_on(async move {
        let start = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_millis(SOURCE_TIMEOUT_MS), js.query_account())
                .await;
        match answer {
            Ok(Ok(_)) => Some(start.elapsed().as_secs_f64() * 1e3),
            _ => None,
        }
    })
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (nats, galaxy) = connect(&args.conn)?;
    let local = args.conn.region.as_str();
    let recorded = all_homes(&nats, &galaxy, local);
    let homes_now = current_homes(&galaxy, &recorded);
    let mut regions = Vec::new();
    for region in galaxy.regions() {
        let is_local = region == local;
        let rtt = round_trip_ms(&nats, region);
        let copies = if is_local {
            Vec::new()
        } else {
            copy_status(&nats, region)?
        };
        regions.push(RegionStatus {
            region: region.to_string(),
            local: is_local,
            systems: homes_now
                .iter()
                .filter(|(_, r)| r.as_str() == region)
                .map(|(s, _)| s.clone())
                .collect(),
            rehomed_in: recorded.get(region).cloned().unwrap_or_default(),
            reachable: rtt.is_some(),
            round_trip_ms: rtt,
            copies,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&regions)?);
    } else {
        for r in &regions {
            let link = match (r.local, r.round_trip_ms) {
                (true, Some(ms)) => format!("local, JetStream answers in {ms:.1} ms"),
                (false, Some(ms)) => format!("reachable, round trip {ms:.1} ms"),
                (_, None) => "UNREACHABLE".to_string(),
            };
            println!("region {} ({link}): {} systems", r.region, r.systems.len());
            println!("  systems: {}", r.systems.join(", "));
            for (slug, home) in &r.rehomed_in {
                println!(
                    "  re-homed here: {slug} from {} (home epoch {})",
                    home.from, home.home_epoch
                );
            }
            for c in &r.copies {
                let source = match (c.source_last_seq, c.source_missing) {
                    (Some(s), _) => format!("source at {s}"),
                    (None, true) => "no such stream at the source yet".into(),
                    (None, false) => "source UNREACHABLE".into(),
                };
                println!(
                    "  copy {}: at seq {}, {source}, lag {} messages / {:.1} s{}",
                    c.copy,
                    c.copied_last_seq,
                    c.lag_messages,
                    c.lag_s,
                    c.active_ms
                        .map(|a| format!(", mirror last heard from it {a} ms ago"))
                        .unwrap_or_default()
                );
            }
            if !r.local && r.copies.is_empty() {
                println!("  no copy of its streams here: `mltrader region copy`");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn copy(args: CopyArgs) -> anyhow::Result<ExitCode> {
    let (nats, galaxy) = connect(&args.conn)?;
    for region in galaxy.regions() {
        if region == args.conn.region {
            continue;
        }
        let made = ensure_copies(&nats, region, args.nats_replicas)?;
        println!(
            "region {}: copies of {region}: {}",
            args.conn.region,
            made.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    if args.into != args.conn.region {
        bail!(
            "--into {} but --region {}: connect to the surviving region's servers",
            args.into,
            args.conn.region
        );
    }
    let (nats, galaxy) = connect(&args.conn)?;
    if !galaxy.regions().contains(&args.lost.as_str()) {
        bail!("the galaxy has no region {}", args.lost);
    }
    if let Some(ms) = round_trip_ms(&nats, &args.lost) {
        if !args.even_if_reachable {
            bail!(
                "region {} answers (JetStream round trip {ms:.1} ms): it is not lost, and promoting it now would give its systems two owners; if its nodes are down for good, pass --even-if-reachable",
                args.lost
            );
        }
    }
    let recorded = all_homes(&nats, &galaxy, &args.conn.region);
    let systems: Vec<String> = current_homes(&galaxy, &recorded)
        .into_iter()
        .filter(|(_, r)| *r == args.lost)
        .map(|(s, _)| s)
        .collect();
    let started = Instant::now();
    // The copy written here first, the reconcile next, the homes last: the survivor's nodes
    // claim a system only once its home is recorded, so none serves it before it is
    // reconciled (a rerun after a crash before the homes does it all again).
    let points = copy_systems(&nats, &args.lost, &systems)?;
    let galaxy = std::sync::Arc::new(galaxy);
    let epochs = points
        .iter()
        .map(|p| {
            let id = galaxy.by_slug(&p.system).expect("a system of the galaxy");
            (id, p.home_epoch)
        })
        .collect();
    let mut reconciled = reconcile_promoted(&nats, &galaxy, args.ticks_per_ly, &epochs)?;
    record_homes(&nats, &args.lost, &points)?;
    let took = started.elapsed();
    let promoted: Vec<Promoted> = points
        .into_iter()
        .map(|point| {
            let id = galaxy
                .by_slug(&point.system)
                .expect("a system of the galaxy");
            let reconciled = reconciled.remove(&id).unwrap_or_default();
            Promoted { point, reconciled }
        })
        .collect();
    let unresolved: usize = promoted.iter().map(|p| p.reconciled.unresolved.len()).sum();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&promoted)?);
    } else {
        println!(
            "promoted {} systems of region {} into {} in {:.2} s:",
            promoted.len(),
            args.lost,
            args.into,
            took.as_secs_f64()
        );
        for p in &promoted {
            print_point(&p.point);
            print_reconciled(&p.reconciled);
        }
        println!(
            "the nodes of {} take these systems with an epoch above each home epoch",
            args.into
        );
    }
    if unresolved > 0 {
        eprintln!("{unresolved} departures could not be reconciled: those players may be served twice (see `unresolved`)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_reconciled(r: &SystemReconciled) {
    if r.records_written == 0 && r.republished.is_empty() && r.unresolved.is_empty() {
        return;
    }
    for d in &r.departures_applied {
        println!("    reconciled: {d} (a departure the copy lacked, applied)");
    }
    if r.credits_changed_in_lost_records != 0 {
        println!(
            "    credits changed in lost records and carried by those jumps: {}",
            r.credits_changed_in_lost_records
        );
    }
    for j in &r.republished {
        println!("    republished: jump {j} (committed here, lacking in the copy)");
    }
    for d in &r.unresolved {
        println!("    UNRESOLVED: {d}: the player may be served twice");
    }
    println!("    {} records written to its log", r.records_written);
}

fn print_point(p: &RecoveryPoint) {
    let lost = match &p.lost_after {
        LostAfter::Exactly { messages } => format!("lost exactly {messages} messages"),
        LostAfter::AsOfLastContact {
            messages,
            after_seq,
            last_contact_ms_ago,
        } => format!(
            "lost {messages} messages after seq {after_seq} known at the copy's last contact ({}), and whatever the region acknowledged after it (not countable while it is down; read its streams again to know)",
            last_contact_ms_ago
                .map(|ms| format!("{ms} ms before the promotion"))
                .unwrap_or_else(|| "when unknown".into())
        ),
    };
    println!(
        "  {}: recovered up to seq {} ({} log messages and {} jumps written now), home epoch {}; {lost}",
        p.system, p.copied_last_seq, p.messages_written, p.pair_messages_written, p.home_epoch
    );
}
