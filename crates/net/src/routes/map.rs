//! What anyone may see of the galaxy: `GET /v1/systems` (the map: systems, lanes,
//! populations; in regions, the population of a system served in another region as last heard,
//! with its age), `GET /v1/status` (every shard's figures), `GET /v1/regions` (the links to the
//! other regions), and what a player sees around
//! them: `GET /v1/scan` (who is in their system).

use axum::extract::State;
use axum::Json;

use super::{travel_ms, Authed, Params, Public, Shared};
use crate::error::ApiError;
use crate::wire;
use api::{InstancePopulation, Lane, Scan, ScanQuery, System};
use mesh::ShardStatus;

/// Names a scan lists by default, and at most.
pub const SCAN_DEFAULT_NAMES: usize = 100;
pub const SCAN_MAX_NAMES: usize = 1000;

/// One instance's population and dilation, as the map shows them.
fn instance_population(s: &ShardStatus) -> InstancePopulation {
    InstancePopulation {
        instance: s.instance,
        name: s.instance_name.clone(),
        population: s.population,
        dilation: s.dilation,
    }
}

pub async fn systems(
    State(state): State<Shared>,
    _: Public,
) -> Result<Json<Vec<System>>, ApiError> {
    let g = state.mesh.galaxy();
    // On a node of a spread galaxy the status covers only the systems it runs; the others are
    // listed all the same (the map is the galaxy's), with no figures of their own here.
    let regions = state.remote.as_ref().and_then(|r| r.regions());
    // Regions: slug -> (the region serving it now, its population as heard, age, reachable).
    // The links list the systems homed in each other region as the node heard (a promotion
    // moves them); a system no other region homes is homed in this node's region.
    let mut elsewhere_heard = std::collections::BTreeMap::new();
    for link in regions.iter().flat_map(|r| &r.regions) {
        for slug in &link.systems {
            let heard = link.populations.iter().find(|p| &p.slug == slug);
            elsewhere_heard.insert(
                slug.clone(),
                (
                    link.region.clone(),
                    heard.map(|p| (p.population, p.age_s)),
                    link.reachable,
                ),
            );
        }
    }
    let own_region = regions.as_ref().and_then(|r| r.region.clone());
    // This region's systems that other nodes run: their population as last heard from them.
    let local_heard = state
        .remote
        .as_ref()
        .map(|r| r.populations())
        .unwrap_or_default();
    let mut status: std::collections::BTreeMap<String, ShardStatus> = state
        .mesh
        .status()
        .await?
        .into_iter()
        .map(|s| (s.slug.clone(), s))
        .collect();
    Ok(Json(
        g.ids()
            .map(|id| {
                let here = status.remove(g.slug(id));
                let served_here = here.is_some();
                (id, here.unwrap_or_else(|| elsewhere(g, id)), served_here)
            })
            .map(|(id, s, served_here)| {
                let heard = elsewhere_heard.get(g.slug(id));
                let home_region = match (heard, &own_region) {
                    (Some((region, _, _)), _) => Some(region.clone()),
                    (None, Some(own)) => Some(own.clone()),
                    (None, None) => g.region_of(id).map(str::to_string),
                };
                let local = (heard.is_none() && !served_here)
                    .then(|| local_heard.get(g.slug(id)))
                    .flatten();
                let population = match (heard, local) {
                    (Some((_, Some((population, _)), _)), _) => *population,
                    (_, Some((population, _))) => *population,
                    _ => s.population + s.instances.iter().map(|i| i.population).sum::<usize>(),
                };
                let as_of_s_ago = match (heard, local) {
                    (Some((_, p, _)), _) => p.map(|(_, age)| age),
                    (None, Some((_, age))) => Some(*age),
                    (None, None) => None,
                };
                System {
                    name: g.name(id).to_string(),
                    slug: g.slug(id).to_string(),
                    position_ly: g.system(id).position_ly,
                    home: id == g.home(),
                    neighbours: g
                        .neighbours(id)
                        .iter()
                        .map(|n| g.name(*n).to_string())
                        .collect(),
                    lanes: g
                        .neighbours(id)
                        .iter()
                        .map(|&n| Lane {
                            to: g.name(n).to_string(),
                            distance_ly: g.distance_ly(id, n),
                            fuel: g.fuel_cost(id, n),
                            travel_ms: travel_ms(&state, id, n),
                        })
                        .collect(),
                    population,
                    in_transit_towards: s.in_transit_towards,
                    dilation: s.dilation,
                    instances: std::iter::once(&s)
                        .chain(&s.instances)
                        .map(instance_population)
                        .collect(),
                    home_region,
                    served_in: heard.map(|(region, _, _)| region.clone()),
                    as_of_s_ago,
                    served_in_reachable: heard.map(|(_, _, reachable)| *reachable),
                }
            })
            .collect(),
    ))
}

pub async fn status(
    State(state): State<Shared>,
    _: Public,
) -> Result<Json<Vec<api::ShardStatus>>, ApiError> {
    let status = state.mesh.status().await?;
    Ok(Json(status.into_iter().map(wire::shard_status).collect()))
}

/// `GET /v1/regions`: this node's region and its links, as the node's links task last saw
/// them (never waits for a link); a node without regions answers `region: null`, no links.
pub async fn regions(State(state): State<Shared>, _: Public) -> Json<api::Regions> {
    Json(
        state
            .remote
            .as_ref()
            .and_then(|r| r.regions())
            .unwrap_or(api::Regions {
                region: None,
                regions: Vec::new(),
            }),
    )
}

pub async fn scan(
    State(state): State<Shared>,
    Authed { name }: Authed,
    q: Result<Params<ScanQuery>, ApiError>,
) -> Result<Json<Scan>, ApiError> {
    let Params(q) = q?;
    let limit = q.limit.unwrap_or(SCAN_DEFAULT_NAMES);
    if limit > SCAN_MAX_NAMES {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit is at most {SCAN_MAX_NAMES}"),
        ));
    }
    let (here, mut names, population) = state.mesh.scan(&name, limit.saturating_add(1)).await?;
    names.truncate(limit);
    Ok(Json(Scan {
        system: state.mesh.galaxy().name(here.system).to_string(),
        instance: here.n,
        population,
        others: population.saturating_sub(1),
        truncated: names.len() < population,
        names,
    }))
}

/// The figures of a system another node runs, as this node shows it: none (no players known
/// here, real-time clock).
fn elsewhere(g: &sim::galaxy::Galaxy, id: sim::galaxy::SystemId) -> ShardStatus {
    ShardStatus {
        system: g.name(id).to_string(),
        slug: g.slug(id).to_string(),
        instance: 1,
        shard: g.slug(id).to_string(),
        instance_name: g.name(id).to_string(),
        merging: false,
        instances: Vec::new(),
        population: 0,
        departing: 0,
        in_transit_towards: 0,
        tick: sim::ids::Tick(0),
        tick_p50_us: 0,
        tick_p99_us: 0,
        tick_late_p50_us: 0,
        tick_late_p99_us: 0,
        dilation: 1.0,
        tick_period_us: 0,
        log_durable_seq: store::seq::Seq(0),
        log_next_seq: store::seq::Seq(0),
        state_hash: String::new(),
        failed: None,
    }
}
