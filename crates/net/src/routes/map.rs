//! What anyone may see of the galaxy: `GET /v1/systems` (the map: systems, lanes,
//! populations), `GET /v1/status` (every shard's figures), and what a player sees around
//! them: `GET /v1/scan` (who is in their system).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{travel_ms, Authed, Params, Public, Shared};
use crate::error::ApiError;
use mesh::ShardStatus;

/// Names a scan lists by default, and at most.
pub const SCAN_DEFAULT_NAMES: usize = 100;
pub const SCAN_MAX_NAMES: usize = 1000;

#[derive(Serialize)]
pub struct SystemView {
    name: String,
    slug: String,
    position_ly: [f64; 3],
    /// Where new players start.
    home: bool,
    /// Names of the systems with a lane to this one.
    neighbours: Vec<String>,
    /// The same lanes with their cost.
    lanes: Vec<LaneView>,
    /// Players in the system.
    population: usize,
    /// Committed jumps on their way to the system.
    in_transit_towards: usize,
    /// Time dilation: how fast the system's clock runs (1.0 = real time).
    dilation: f64,
    /// The system's instances when it is crowded (the system itself first), with their own
    /// populations and dilation; `population` is their sum.
    instances: Vec<InstanceView>,
}

#[derive(Serialize)]
pub struct InstanceView {
    instance: u16,
    name: String,
    population: usize,
    dilation: f64,
}

impl InstanceView {
    fn of(s: &ShardStatus) -> InstanceView {
        InstanceView {
            instance: s.instance,
            name: s.instance_name.clone(),
            population: s.population,
            dilation: s.dilation,
        }
    }
}

#[derive(Serialize)]
pub struct LaneView {
    to: String,
    distance_ly: f64,
    fuel: u32,
    travel_ms: u64,
}

pub async fn systems(
    State(state): State<Shared>,
    _: Public,
) -> Result<Json<Vec<SystemView>>, ApiError> {
    let g = state.mesh.galaxy();
    let status = state.mesh.status().await?;
    Ok(Json(
        g.ids()
            .zip(status)
            .map(|(id, s)| SystemView {
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
                    .map(|&n| LaneView {
                        to: g.name(n).to_string(),
                        distance_ly: g.distance_ly(id, n),
                        fuel: g.fuel_cost(id, n),
                        travel_ms: travel_ms(&state, id, n),
                    })
                    .collect(),
                population: s.population + s.instances.iter().map(|i| i.population).sum::<usize>(),
                in_transit_towards: s.in_transit_towards,
                dilation: s.dilation,
                instances: std::iter::once(&s)
                    .chain(&s.instances)
                    .map(InstanceView::of)
                    .collect(),
            })
            .collect(),
    ))
}

pub async fn status(
    State(state): State<Shared>,
    _: Public,
) -> Result<Json<Vec<ShardStatus>>, ApiError> {
    Ok(Json(state.mesh.status().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanQuery {
    /// Names to list (default [`SCAN_DEFAULT_NAMES`], at most [`SCAN_MAX_NAMES`]).
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct ScanView {
    system: String,
    /// The instance of the system the player is in (1: the system itself): a scan sees the
    /// players of that instance.
    instance: u16,
    /// Players in the system, the scanner included.
    population: usize,
    others: usize,
    /// Names of players in the system (sorted; at most `limit`).
    names: Vec<String>,
    /// More players are there than `names` lists.
    truncated: bool,
}

pub async fn scan(
    State(state): State<Shared>,
    Authed { name }: Authed,
    q: Result<Params<ScanQuery>, ApiError>,
) -> Result<Json<ScanView>, ApiError> {
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
    Ok(Json(ScanView {
        system: state.mesh.galaxy().name(here.system).to_string(),
        instance: here.n,
        population,
        others: population.saturating_sub(1),
        truncated: names.len() < population,
        names,
    }))
}
