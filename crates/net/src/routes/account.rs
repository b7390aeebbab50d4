//! `POST /v1/join` (a new player and their token) and `GET /v1/me` (the player's own state).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;

use super::{check_ip, Authed, Body, ClientIp, Shared};
use crate::auth::{key_of, new_token};
use crate::error::ApiError;
use crate::remote::Vouched;
use crate::{wire, AppState};
use api::{JoinRequest, Joined, Jumping, Me};
use mesh::codec::xfer_text;
use mesh::directory::Place;
use sim::ids::Xfer;
use sim::instance::InstanceId;
use sim::names::canonical;
use sim::player::Player;

pub async fn join(
    State(state): State<Shared>,
    ClientIp(ip): ClientIp,
    vouched: Option<Extension<Vouched>>,
    body: Result<Body<JoinRequest>, ApiError>,
) -> Result<(StatusCode, Json<Joined>), ApiError> {
    // Counted before the body is even read: a flood of bad joins is still a flood. A join
    // forwarded by another node was counted there.
    if vouched.is_none() {
        check_ip(&state, &state.join_limits, ip)?;
    }
    let Body(req) = body?;
    let name =
        canonical(&req.name).map_err(|e| ApiError::bad_request("bad_name", e.to_string()))?;
    let token = new_token().map_err(|e| ApiError::internal(format!("no random source: {e}")))?;
    let key = key_of(&token);
    // Across nodes the account is recorded in the galaxy's accounts before the join, so that
    // a token handed out is always found by every node. A join then refused (name taken)
    // leaves a record under a key whose token nobody ever got: harmless.
    if let Some(remote) = &state.remote {
        remote.record_account(&key, &name).await?;
    }
    let player = state.mesh.join(&req.name, &key).await?;
    state.accounts.insert(key, player.name.clone());
    let home = state.mesh.galaxy().home();
    // The mesh's feed tells the players at home (the event stream).
    let system = state.mesh.galaxy().name(home).to_string();
    Ok((
        StatusCode::CREATED,
        Json(Joined {
            name: player.name.clone(),
            token,
            system,
            player: wire::player(player),
        }),
    ))
}

pub async fn me(
    State(state): State<Shared>,
    Authed { name }: Authed,
) -> Result<Json<Me>, ApiError> {
    let (at, ship) = state.mesh.ship(&name).await?;
    let g = state.mesh.galaxy();
    Ok(Json(match at {
        Place::In(s) => {
            let (player, attacking) = match ship {
                Some(ship) => (
                    Some(wire::player(ship.player)),
                    ship.attacking.map(wire::opponent),
                ),
                None => (None, None),
            };
            Me {
                name,
                system: Some(g.name(s.system).to_string()),
                instance: Some(s.n),
                instance_name: Some(s.name(g)),
                notice: (!s.is_primary()).then(|| {
                    format!(
                        "{} is crowded: you are now in {}",
                        g.name(s.system),
                        s.name(g)
                    )
                }),
                jumping: None,
                player,
                attacking,
            }
        }
        Place::Jumping { from, xfer, to } => {
            let seen = jump_seen(&state, &name, (from, xfer, to)).await?;
            let xfer = xfer_text(g, from, xfer);
            let (from, to) = (from.system, to.system);
            let (player, eta_ms) = match seen {
                Some((player, eta_ms)) => (Some(wire::player(player)), Some(eta_ms)),
                None => (None, None),
            };
            Me {
                jumping: Some(Jumping {
                    from: g.name(from).to_string(),
                    to: g.name(to).to_string(),
                    eta_ms,
                    xfer,
                }),
                name,
                system: None,
                instance: None,
                instance_name: None,
                notice: None,
                player,
                attacking: None,
            }
        }
    }))
}

/// The player in jump `xfer` and the milliseconds until it lands: as this API committed it
/// (its clock), or else as the destination holds it queued (after a restart, recovery hands
/// every committed jump to its destination with the player it carries). None only in the
/// instant between a jump's commit and its handover, or if it just landed.
async fn jump_seen(
    state: &AppState,
    name: &str,
    (from, xfer, to): (InstanceId, Xfer, InstanceId),
) -> Result<Option<(Player, u64)>, ApiError> {
    let g = state.mesh.galaxy();
    if let Some(f) = state.flights.get(name, &xfer_text(g, from, xfer)) {
        let eta_ms = f.remaining_ms();
        return Ok(Some((f.player, eta_ms)));
    }
    let tick_hz = u64::from(state.mesh.config().tick_hz.max(1));
    Ok(state
        .mesh
        .in_flight(from, xfer, to)
        .await?
        .map(|f| (f.player, f.ticks_left.saturating_mul(1000) / tick_hz)))
}
