//! The network face of the mesh: an HTTP/JSON API (axum) that routes every request to the
//! shard that owns the player at that moment, so clients never know shards exist. The routes,
//! their bodies and their error codes are in `docs/API.md` and `openapi.json`; the bodies are
//! the wire types of the `api` crate ([`wire`] converts into them).
//!
//! Owns request parsing, authentication, rate limits, the event stream and the mapping of
//! errors to HTTP; never decides a game rule and never writes a log (everything that acts goes
//! through [`mesh::Mesh`]; the only file it reads is a player's history log).

pub mod actions;
pub mod auth;
pub mod charts;
pub mod connections;
pub mod economy_view;
pub mod error;
pub mod events;
pub mod flights;
pub mod history;
pub mod limits;
pub mod map_view;
pub mod openapi;
pub mod remote;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod standby;
pub mod wire;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;

use limits::{Limiter, Rate};
use mesh::{Mesh, MeshError};
use store::datadir::DataDir;

/// The largest request body accepted, in bytes: every request of this API is small.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Environment variable: requests per second and burst per access token (`50/100`, or `off`).
pub const ENV_TOKEN_RATE: &str = "MLTRADER_TOKEN_RATE";
/// Environment variable: joins per second and burst per client IP (`1/10`, or `off`).
pub const ENV_JOIN_RATE: &str = "MLTRADER_JOIN_RATE";
/// Environment variable: requests per second and burst per client IP on the routes without a
/// token (`20/40`, or `off`).
pub const ENV_IP_RATE: &str = "MLTRADER_IP_RATE";
/// Environment variable: `1` to apply the per-IP limits to loopback addresses too.
pub const ENV_LIMIT_LOOPBACK: &str = "MLTRADER_LIMIT_LOOPBACK";

/// How the API runs.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Requests per access token ([`limits::TOKEN_RATE_PER_S`], [`limits::TOKEN_BURST`]).
    pub token_rate: Option<Rate>,
    /// Joins per client IP ([`limits::JOIN_RATE_PER_S`], [`limits::JOIN_BURST`]).
    pub join_rate: Option<Rate>,
    /// Requests without a token per client IP ([`limits::PUBLIC_RATE_PER_S`],
    /// [`limits::PUBLIC_BURST`]).
    pub ip_rate: Option<Rate>,
    /// Whether loopback addresses are subject to the per-IP limits. Off by default: on one
    /// machine (local play, bots, tests) every client is 127.0.0.1.
    pub limit_loopback: bool,
    /// Where players' history logs are (`GET /v1/history` answers 501 without it).
    pub history: Option<DataDir>,
    /// Whether the operator's map is served (`/`, `/v1/map*`, and the economy's page
    /// `/economy` with `/v1/economy/report`); `serve --no-map` turns it off ([`turn_map_off`]).
    pub map: bool,
    /// The data directory whose log files the economy's page reads ([`economy_view`]); None:
    /// the logs are not on files here (`serve --nats`), and the page says so.
    pub economy_logs: Option<DataDir>,
}

/// Set by `serve --no-map` before the API is built: every server of this process then starts
/// with its map off. Process-wide because each serve mode builds its own [`NetConfig`].
static MAP_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the map off for every API this process builds from now on (`serve --no-map`).
pub fn turn_map_off() {
    MAP_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            token_rate: Some(Rate {
                per_s: limits::TOKEN_RATE_PER_S,
                burst: limits::TOKEN_BURST,
            }),
            join_rate: Some(Rate {
                per_s: limits::JOIN_RATE_PER_S,
                burst: limits::JOIN_BURST,
            }),
            ip_rate: Some(Rate {
                per_s: limits::PUBLIC_RATE_PER_S,
                burst: limits::PUBLIC_BURST,
            }),
            limit_loopback: false,
            history: None,
            economy_logs: None,
            map: !MAP_OFF.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// A setting the API cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Mesh(#[from] MeshError),
    #[error("{var}: {message}")]
    Config { var: &'static str, message: String },
}

impl NetConfig {
    /// The defaults, with the rate limits the environment sets ([`ENV_TOKEN_RATE`],
    /// [`ENV_JOIN_RATE`], [`ENV_IP_RATE`], [`ENV_LIMIT_LOOPBACK`]).
    pub fn from_env() -> Result<NetConfig, NetError> {
        let mut config = NetConfig::default();
        let rate = |var: &'static str| -> Result<Option<Option<Rate>>, NetError> {
            match std::env::var(var) {
                Ok(v) => Rate::parse(&v)
                    .map(Some)
                    .map_err(|message| NetError::Config { var, message }),
                Err(_) => Ok(None),
            }
        };
        if let Some(r) = rate(ENV_TOKEN_RATE)? {
            config.token_rate = r;
        }
        if let Some(r) = rate(ENV_JOIN_RATE)? {
            config.join_rate = r;
        }
        if let Some(r) = rate(ENV_IP_RATE)? {
            config.ip_rate = r;
        }
        if let Ok(v) = std::env::var(ENV_LIMIT_LOOPBACK) {
            config.limit_loopback = match v.trim() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                other => {
                    return Err(NetError::Config {
                        var: ENV_LIMIT_LOOPBACK,
                        message: format!("expected 1 or 0, not {other:?}"),
                    })
                }
            };
        }
        Ok(config)
    }
}

/// What every handler shares.
pub struct AppState {
    pub mesh: Mesh,
    pub accounts: auth::Accounts,
    pub config: NetConfig,
    /// Requests per access token (keyed by the token's hash).
    pub token_limits: Limiter<String>,
    /// Joins per client IP.
    pub join_limits: Limiter<IpAddr>,
    /// Requests without a token per client IP.
    pub ip_limits: Limiter<IpAddr>,
    /// Landing waits open per player.
    pub waits: limits::Open,
    pub actions: actions::ActionLocks,
    pub flights: flights::Flights,
    pub events: Arc<events::Hub>,
    pub stopping: Arc<shutdown::Stopping>,
    /// The galaxy's other nodes, when this node runs only some of its systems (issue 19);
    /// None: a single-node server, and `remote::entry` passes every request through.
    pub remote: Option<Arc<dyn remote::Remote>>,
    /// The answers of forwarded acting requests by request id (this node as an owner).
    pub remembered: remote::Remembered,
    /// Requests answered, by route and status (`GET /metrics`).
    pub requests: routes::metrics::RequestCounts,
    /// The operator's live map ([`map_view`]).
    pub map: Arc<map_view::MapView>,
    /// The economy's report, built from the logs and kept a few seconds ([`economy_view`]).
    pub economy: economy_view::EconomyView,
}

/// The API as `mltrader serve` runs it: settings from the environment, players' history from
/// the mesh's data directory, and long answers (event streams, landing waits) ended on Ctrl-C or
/// SIGTERM so that the graceful shutdown can finish. Serve it with [`server::serve`].
pub async fn for_serve(mesh: Mesh) -> Result<Api, NetError> {
    let mut config = NetConfig::from_env()?;
    config.history = Some(mesh.datadir().clone());
    if economy_view::logs_on_files(mesh.datadir(), mesh.galaxy()) {
        config.economy_logs = Some(mesh.datadir().clone());
    }
    let api = Api::build(mesh, config).await?;
    api.stopping.on_signals();
    Ok(api)
}

/// The API, built: its router and the handle that ends its long answers.
pub struct Api {
    /// Serve it with [`server::serve`] (or axum's `into_make_service_with_connect_info::<SocketAddr>()`),
    /// or joins count as coming from one unknown address.
    pub router: Router,
    pub stopping: Arc<shutdown::Stopping>,
    pub state: Arc<AppState>,
}

impl Api {
    /// Builds the API over a running mesh (loads the accounts once).
    pub async fn build(mesh: Mesh, config: NetConfig) -> Result<Api, NetError> {
        Api::with_remote(mesh, config, None).await
    }

    /// Builds the API of one node of a galaxy spread over several ([`remote`]): a player this
    /// node does not hold is served through `remote`.
    pub async fn with_remote(
        mesh: Mesh,
        config: NetConfig,
        remote: Option<Arc<dyn remote::Remote>>,
    ) -> Result<Api, NetError> {
        let accounts = auth::Accounts::default();
        for (name, key) in mesh.accounts().await? {
            accounts.insert(key, name);
        }
        let stopping = Arc::new(shutdown::Stopping::default());
        let state = Arc::new(AppState {
            events: Arc::new(events::Hub::new(mesh.clone(), stopping.clone())),
            map: map_view::MapView::new(mesh.clone(), stopping.clone()),
            economy: economy_view::EconomyView::new(
                config.economy_logs.clone(),
                mesh.galaxy().clone(),
            ),
            mesh,
            accounts,
            token_limits: Limiter::new(config.token_rate, usize::MAX),
            join_limits: Limiter::new(config.join_rate, limits::MAX_TRACKED_KEYS),
            ip_limits: Limiter::new(config.ip_rate, limits::MAX_TRACKED_KEYS),
            waits: limits::Open::default(),
            config,
            actions: actions::ActionLocks::default(),
            flights: flights::Flights::default(),
            stopping: stopping.clone(),
            remote,
            remembered: remote::Remembered::default(),
            requests: routes::metrics::RequestCounts::new(routes::all_routes()),
        });
        if state.config.map {
            state.map.listen();
        }
        Ok(Api {
            router: routes::router(state.clone()),
            stopping,
            state,
        })
    }

    /// The owner's side of forwarded requests: runs them through this API's router.
    pub fn owner(&self) -> remote::Owner {
        remote::Owner::new(self.router.clone(), self.state.clone())
    }

    /// Ends event streams and landing waits (call before a graceful shutdown).
    pub fn stop_streams(&self) {
        self.stopping.trigger();
    }
}
