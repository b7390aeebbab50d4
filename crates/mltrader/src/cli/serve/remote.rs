//! `net::remote::Remote` over NATS (issue 19, decision 9: any node answers any player): where a
//! player is (the scatter question of `nats::whereis`, cached), their request carried to the
//! owner of their unit (`nats::requests`, `mlt.req.sys.<slug>`), and the galaxy's accounts
//! (`nats::accounts`, KV bucket `mlt_accounts`).
//!
//! The node runner builds one [`NatsRemote`], gives it to `net::Api::with_remote`, then:
//! - for each unit it starts serving (once fenced), calls [`NatsRemote::serve_unit`] with
//!   `api.owner()` and keeps the [`ServedUnit`]; it stops it ([`ServedUnit::stop`], or drops
//!   it) when it hands the unit over;
//! - once, calls [`NatsRemote::answer_whereis`] with its mesh and keeps the answerer.
//!
//! Never decides who owns a unit (the dealing and the leases do), never runs a request itself
//! (the node's router does, through `net::remote::Owner`), and never sends a request again once
//! it may have been delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use api::forward::{ForwardedReply, ForwardedRequest, ForwardedResponse};
use mesh::directory::Place;
use mesh::protocol::deal::unit_of_system;
use mesh::Mesh;
use nats::accounts::{Accounts, ACCOUNTS_BUCKET};
use nats::lease::LEASES_BUCKET;
use nats::requests::{Handler, RequestError, Requester, Responder};
use nats::whereis::{self, Answerer, Whereabouts};
use nats::Nats;
use net::remote::{Owner, Remote, RemoteError, RemoteFuture};
use sim::galaxy::{Galaxy, SystemId};

/// How long a forwarded request waits for its answer once delivered, in milliseconds, for
/// every route but the two that may wait for a landing.
pub const FORWARD_TIMEOUT_MS: u64 = 10_000;

/// The same for `POST /v1/travel` (with `wait`) and `GET /v1/landing`, which wait up to
/// `net`'s LANDING_WAIT_MAX_S (60 s) for a landing: that and a margin.
pub const FORWARD_LANDING_TIMEOUT_MS: u64 = 65_000;

/// How many times a request answered "not here" (the player moved since this node looked)
/// is sent again, each after asking where the player is.
pub const MAX_NOT_HERE_RETRIES: usize = 3;

/// Players whose unit this node remembers; past this the cache is emptied (and filled again
/// by the next questions).
pub const MAX_CACHED_PLAYERS: usize = 100_000;

/// How long the question "where is this player" waits for answers, in milliseconds (a node
/// that holds the player "in" ends it at once).
pub const WHEREIS_WINDOW_MS: u64 = nats::whereis::DEFAULT_WINDOW_MS;

/// How long the owners read from the leases' bucket are kept, in milliseconds: ten map pages
/// opening at once read the bucket once.
pub const OWNERS_CACHE_MS: u64 = 1_000;

/// How long one read of every lease may take, in milliseconds, before the map goes without.
pub const OWNERS_READ_TIMEOUT_MS: u64 = 2_000;

const _: () = assert!(FORWARD_TIMEOUT_MS < FORWARD_LANDING_TIMEOUT_MS);

/// The units this node serves now (a [`ServedUnit`] each).
type Serving = Arc<Mutex<BTreeSet<SystemId>>>;

/// `net::remote::Remote` over NATS.
pub struct NatsRemote {
    nats: Nats,
    galaxy: Galaxy,
    requester: Requester,
    accounts: Accounts,
    /// Region mode (issue 20): the other regions, whose accounts' buckets are asked (through
    /// the link) for a token this region's bucket does not know; each opened on first use.
    other_regions: Vec<String>,
    others: tokio::sync::Mutex<HashMap<String, Accounts>>,
    /// The unit each player was last answered from. std mutex: held for a map operation only.
    places: Mutex<HashMap<String, String>>,
    serving: Serving,
    /// The owners last read from the leases' bucket, and when ([`OWNERS_CACHE_MS`]). A tokio
    /// mutex: held across the read, so that pages asking at once wait for one read.
    owners: tokio::sync::Mutex<Option<(std::time::Instant, BTreeMap<SystemId, String>)>>,
    /// Region mode: the links to the other regions (`GET /v1/regions`, `/v1/systems`).
    links: Option<super::regions::RegionLinks>,
    /// The population of the systems other nodes of this region (or galaxy) run
    /// (`/v1/systems`).
    neighbours: super::populations::Neighbours,
}

impl NatsRemote {
    /// Opens the accounts' bucket (`replicas` copies, as the other buckets); blocks. Starts the
    /// neighbours' task (`populations::Neighbours`) and, in region mode (`homes`: what the node
    /// heard of the homes, `regions::hear_homes`), the links task (`regions::RegionLinks`), on
    /// the current tokio runtime.
    pub fn new(
        nats: &Nats,
        galaxy: Galaxy,
        replicas: usize,
        homes: Option<Arc<super::regions::HeardHomes>>,
    ) -> anyhow::Result<NatsRemote> {
        assert_eq!(
            nats.region().is_some(),
            homes.is_some(),
            "a node of a region is given the homes it heard"
        );
        let accounts = Accounts::open(nats, ACCOUNTS_BUCKET, replicas)
            .with_context(|| format!("opening the accounts' bucket {ACCOUNTS_BUCKET}"))?;
        let other_regions = match nats.region() {
            Some(own) => galaxy
                .regions()
                .into_iter()
                .filter(|r| *r != own)
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        let serving = Serving::default();
        // The population of the systems the region's (or galaxy's) other nodes run.
        let others: super::populations::Others = {
            let (serving, galaxy, homes) = (serving.clone(), galaxy.clone(), homes.clone());
            Arc::new(move || {
                let serving = serving.lock().unwrap_or_else(|e| e.into_inner());
                let ours: Vec<String> = match &homes {
                    Some(heard) => super::regions::systems_of(heard, heard.own()),
                    None => galaxy.ids().map(|id| galaxy.slug(id).to_string()).collect(),
                };
                ours.into_iter()
                    .filter(|slug| {
                        galaxy
                            .by_slug(slug)
                            .is_some_and(|id| !serving.contains(&id))
                    })
                    .collect()
            })
        };
        let neighbours = super::populations::Neighbours::start(nats, others);
        let links = homes.map(|heard| super::regions::RegionLinks::start(nats.clone(), heard));
        Ok(NatsRemote {
            nats: nats.clone(),
            links,
            neighbours,
            galaxy,
            requester: Requester::new(nats),
            accounts,
            other_regions,
            others: tokio::sync::Mutex::new(HashMap::new()),
            places: Mutex::new(HashMap::new()),
            serving,
            owners: tokio::sync::Mutex::new(None),
        })
    }

    /// Region mode: the account of `key` as another region's bucket has it (a player who
    /// joined there), copied into this region's bucket so that a cut link later does not
    /// lock them out here. Unknown everywhere: None; a region that cannot be asked and no
    /// answer elsewhere: unavailable (it may know the token).
    async fn account_elsewhere(&self, key: &str) -> Result<Option<String>, RemoteError> {
        let mut unreachable = Vec::new();
        for region in &self.other_regions {
            let accounts = {
                let mut others = self.others.lock().await;
                match others.get(region) {
                    Some(a) => a.clone(),
                    None => match Accounts::of_region(&self.nats, region, ACCOUNTS_BUCKET).await {
                        Ok(a) => others.entry(region.clone()).or_insert(a).clone(),
                        Err(e) => {
                            unreachable.push(format!("region {region}: {e}"));
                            continue;
                        }
                    },
                }
            };
            match accounts.get_without_retry(key).await {
                Ok(Some(name)) => {
                    if let Err(e) = self.accounts.put(key, &name).await {
                        tracing::warn!(
                            "account of {name} from region {region} not copied here: {e}"
                        );
                    }
                    return Ok(Some(name));
                }
                Ok(None) => {}
                Err(e) => unreachable.push(format!("region {region}: {e}")),
            }
        }
        match unreachable.is_empty() {
            true => Ok(None),
            false => Err(RemoteError::Unavailable(format!(
                "this token is not known in this region, and {} (the link between regions?); try again",
                unreachable.join("; ")
            ))),
        }
    }

    fn unit(&self, system: SystemId) -> String {
        unit_of_system(self.galaxy.slug(system))
    }

    /// Answers the requests of `system`'s unit with `owner` (the node's `api.owner()`) from now
    /// until the returned [`ServedUnit`] is stopped or dropped. Call it once the node is
    /// fenced as the unit's owner.
    pub async fn serve_unit(&self, system: SystemId, owner: Owner) -> anyhow::Result<ServedUnit> {
        let unit = self.unit(system);
        let handler: Handler = Arc::new(move |payload: Vec<u8>| {
            let owner = owner.clone();
            Box::pin(async move {
                let reply = match serde_json::from_slice::<ForwardedRequest>(&payload) {
                    Ok(request) => owner.answer(request).await,
                    Err(e) => ForwardedReply::Answered(bad_request(&e.to_string())),
                };
                serde_json::to_vec(&reply).expect("a reply serializes")
            })
        });
        let responder = Responder::start(&self.nats, &unit, handler)
            .await
            .with_context(|| format!("answering the requests of unit {unit}"))?;
        let fresh = self
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(system);
        assert!(fresh, "unit {unit} is served once at a time by a node");
        Ok(ServedUnit {
            system,
            responder: Some(responder),
            serving: self.serving.clone(),
        })
    }

    /// Answers the galaxy's question "where is this player" for the players `mesh` holds in the
    /// units this node serves, until the returned answerer is dropped: in one of them, or in a
    /// jump (arriving: at the destination if this node serves it, else at the origin, which
    /// knows the flight).
    pub async fn answer_whereis(&self, mesh: Mesh) -> anyhow::Result<Answerer> {
        let galaxy = self.galaxy.clone();
        let serving = self.serving.clone();
        let lookup: whereis::Lookup = Arc::new(move |name: &str| {
            let unit = |s: SystemId| unit_of_system(galaxy.slug(s));
            let place = mesh.place(name)?;
            let here = serving.lock().unwrap_or_else(|e| e.into_inner());
            match place {
                Place::In(at) => here
                    .contains(&at.system)
                    .then(|| (unit(at.system), Whereabouts::In)),
                Place::Jumping { from, to, .. } if from.system == to.system => here
                    .contains(&from.system)
                    .then(|| (unit(from.system), Whereabouts::In)),
                Place::Jumping { from, to, .. } => {
                    let at = [to, from]
                        .into_iter()
                        .find(|at| here.contains(&at.system))?;
                    Some((unit(at.system), Whereabouts::Arriving))
                }
            }
        });
        Answerer::start(&self.nats, lookup)
            .await
            .context("answering where players are")
    }

    /// Records in the galaxy's accounts every account of `accounts` (name, token key: what
    /// `Mesh::accounts` gives on the node running the home system), so that players who joined
    /// before the bucket held them (a galaxy of issue 18, or a join whose record came first)
    /// are found by every node. Written once each; an account already there is left as is.
    /// Returns how many were written or found. Call it after starting the home system's unit.
    pub async fn record_accounts(&self, accounts: &[(String, String)]) -> anyhow::Result<usize> {
        for (name, key) in accounts {
            self.accounts
                .put(key, name)
                .await
                .with_context(|| format!("recording the account of {name}"))?;
        }
        Ok(accounts.len())
    }

    fn cached(&self, name: &str) -> Option<String> {
        let places = self.places.lock().unwrap_or_else(|e| e.into_inner());
        places.get(name).cloned()
    }

    fn remember(&self, name: &str, unit: Option<String>) {
        let mut places = self.places.lock().unwrap_or_else(|e| e.into_inner());
        match unit {
            Some(unit) => {
                if places.len() >= MAX_CACHED_PLAYERS {
                    places.clear();
                }
                places.insert(name.to_string(), unit);
            }
            None => {
                places.remove(name);
            }
        }
    }

    /// Where `name` is: the cache, else the galaxy's answer.
    async fn find(&self, name: &str) -> Result<String, RemoteError> {
        if let Some(unit) = self.cached(name) {
            return Ok(unit);
        }
        let window = Duration::from_millis(WHEREIS_WINDOW_MS);
        let heard = whereis::ask(&self.nats, name, window)
            .await
            .map_err(|e| RemoteError::Unavailable(e.to_string()))?;
        match heard.best {
            Some(seen) => Ok(seen.unit),
            None => Err(RemoteError::UnitMoving(format!(
                "no node holds {name} right now (its system is being taken over or handed over)"
            ))),
        }
    }

    /// Sends `request` to `unit`'s owner: its reply, or why there is none.
    async fn send(
        &self,
        unit: &str,
        request: &ForwardedRequest,
    ) -> Result<ForwardedReply, RemoteError> {
        let payload = serde_json::to_vec(request).expect("a request serializes");
        let timeout = Duration::from_millis(timeout_ms(request));
        let answer = self
            .requester
            .forward(unit, &request.request_id, payload, timeout)
            .await;
        match answer {
            // An answer came, so the request may have run: unreadable is an unknown outcome.
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RemoteError::OutcomeUnknown {
                request_id: request.request_id.clone(),
                message: format!("unit {unit} answered something unreadable ({e})"),
            }),
            Err(e @ RequestError::NoResponders { .. }) => {
                Err(RemoteError::UnitMoving(e.to_string()))
            }
            Err(e @ RequestError::OutcomeUnknown { .. }) => Err(RemoteError::OutcomeUnknown {
                request_id: request.request_id.clone(),
                message: e.to_string(),
            }),
            Err(e @ RequestError::Transport { .. }) => Err(RemoteError::Unavailable(e.to_string())),
        }
    }
}

/// The longest a request may wait for its answer (see the constants).
fn timeout_ms(request: &ForwardedRequest) -> u64 {
    let path = request.path_and_query.split('?').next().unwrap_or_default();
    match path {
        "/v1/travel" | "/v1/landing" => FORWARD_LANDING_TIMEOUT_MS,
        _ => FORWARD_TIMEOUT_MS,
    }
}

/// 400 `bad_json`: a forwarded request that is not one (a node of another version).
fn bad_request(reason: &str) -> ForwardedResponse {
    let body = api::ErrorBody::new(
        "bad_json",
        format!("a forwarded request that cannot be read: {reason}"),
    );
    ForwardedResponse {
        status: 400,
        content_type: Some("application/json".into()),
        retry_after_s: None,
        body: serde_json::to_string(&body).expect("an error body serializes"),
    }
}

impl NatsRemote {
    /// Which node holds each system's lease: every unit's key of the leases' bucket
    /// (`nats::lease`, value `node=NAME epoch=N`), read on the connection's runtime. Only
    /// reads: never claims, renews or deletes a key.
    async fn read_owners(&self) -> Result<BTreeMap<SystemId, String>, RemoteError> {
        let units: Vec<(SystemId, String)> = self
            .galaxy
            .ids()
            .map(|id| (id, unit_of_system(self.galaxy.slug(id))))
            .collect();
        let nats = self.nats.clone();
        let read = tokio::task::spawn_blocking(move || {
            // A region's node speaks to its region's domain, as its leases do.
            let js = nats.region().map(|r| nats.jetstream_of(r));
            let client = nats.client().clone();
            nats.block_on(async move {
                let js = js.unwrap_or_else(|| async_nats::jetstream::new(client));
                let read = async {
                    let kv = js
                        .get_key_value(LEASES_BUCKET)
                        .await
                        .map_err(|e| format!("opening bucket {LEASES_BUCKET}: {e}"))?;
                    let mut owners = BTreeMap::new();
                    for (id, unit) in units {
                        let value = kv
                            .get(&unit)
                            .await
                            .map_err(|e| format!("reading the lease of {unit}: {e}"))?;
                        if let Some(node) = value.as_deref().and_then(lease_holder) {
                            owners.insert(id, node.to_string());
                        }
                    }
                    Ok::<_, String>(owners)
                };
                tokio::time::timeout(Duration::from_millis(OWNERS_READ_TIMEOUT_MS), read)
                    .await
                    .map_err(|_| format!("no answer in {OWNERS_READ_TIMEOUT_MS} ms"))?
            })
        });
        read.await
            .map_err(|e| RemoteError::Unavailable(format!("the leases' reader: {e}")))?
            .map_err(|e| RemoteError::Unavailable(format!("the leases: {e}")))
    }
}

/// The node named by a lease's value (`node=NAME epoch=N`, as `nats::lease` writes it).
fn lease_holder(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let (node, _epoch) = text.strip_prefix("node=")?.rsplit_once(" epoch=")?;
    (!node.is_empty()).then_some(node)
}

impl Remote for NatsRemote {
    fn forward(
        &self,
        request: ForwardedRequest,
    ) -> RemoteFuture<'_, Result<ForwardedResponse, RemoteError>> {
        Box::pin(async move {
            let name = request
                .player
                .clone()
                .expect("net forwards a request of an authenticated player");
            for _ in 0..=MAX_NOT_HERE_RETRIES {
                let unit = self.find(&name).await?;
                match self.send(&unit, &request).await {
                    Ok(ForwardedReply::Answered(response)) => {
                        self.remember(&name, Some(unit));
                        return Ok(response);
                    }
                    // Nothing ran there: ask again where the player is.
                    Ok(ForwardedReply::NotHere) => self.remember(&name, None),
                    Err(e) => {
                        self.remember(&name, None);
                        return Err(e);
                    }
                }
            }
            Err(RemoteError::UnitMoving(format!(
                "{name} moved between nodes {} times while this node looked for them",
                MAX_NOT_HERE_RETRIES + 1
            )))
        })
    }

    fn forward_to(
        &self,
        system: SystemId,
        request: ForwardedRequest,
    ) -> RemoteFuture<'_, Result<ForwardedResponse, RemoteError>> {
        Box::pin(async move {
            let unit = self.unit(system);
            match self.send(&unit, &request).await? {
                ForwardedReply::Answered(response) => Ok(response),
                ForwardedReply::NotHere => Err(RemoteError::UnitMoving(format!(
                    "unit {unit} is being handed over"
                ))),
            }
        })
    }

    fn regions(&self) -> Option<api::Regions> {
        self.links.as_ref().map(|l| l.view())
    }

    fn populations(&self) -> BTreeMap<String, (usize, f64)> {
        self.neighbours.populations()
    }

    fn serves(&self, system: SystemId) -> bool {
        let serving = self.serving.lock().unwrap_or_else(|e| e.into_inner());
        serving.contains(&system)
    }

    fn owners(&self) -> RemoteFuture<'_, Result<BTreeMap<SystemId, String>, RemoteError>> {
        Box::pin(async move {
            let mut cached = self.owners.lock().await;
            if let Some((at, owners)) = cached.as_ref() {
                if at.elapsed() < Duration::from_millis(OWNERS_CACHE_MS) {
                    return Ok(owners.clone());
                }
            }
            let owners = self.read_owners().await?;
            *cached = Some((std::time::Instant::now(), owners.clone()));
            Ok(owners)
        })
    }

    fn account<'a>(
        &'a self,
        key: &'a str,
    ) -> RemoteFuture<'a, Result<Option<String>, RemoteError>> {
        Box::pin(async move {
            let here = self
                .accounts
                .get(key)
                .await
                .map_err(|e| RemoteError::Unavailable(e.to_string()))?;
            if here.is_some() || self.other_regions.is_empty() {
                return Ok(here);
            }
            self.account_elsewhere(key).await
        })
    }

    fn record_account<'a>(
        &'a self,
        key: &'a str,
        name: &'a str,
    ) -> RemoteFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.accounts
                .put(key, name)
                .await
                .map_err(|e| RemoteError::Unavailable(e.to_string()))
        })
    }
}

/// A unit whose requests this node answers; stop or drop it when the unit is handed over.
pub struct ServedUnit {
    system: SystemId,
    responder: Option<Responder>,
    serving: Serving,
}

impl ServedUnit {
    /// Stops answering: returns once the unit's requests no longer come here and those that
    /// came are answered (`nats::requests::Responder::stop`).
    pub async fn stop(mut self) {
        self.unmark();
        if let Some(responder) = self.responder.take() {
            responder.stop().await;
        }
    }

    fn unmark(&self) {
        let mut serving = self.serving.lock().unwrap_or_else(|e| e.into_inner());
        serving.remove(&self.system);
    }
}

impl Drop for ServedUnit {
    fn drop(&mut self) {
        self.unmark();
    }
}

#[cfg(test)]
mod tests {
    //! Two nodes over a real three-node NATS cluster, each with its own mesh and API: node B
    //! serves every unit, node A none; a player joins and plays through A's API, answered by
    //! B over `mlt.req.sys.<slug>`; when B stops serving the player's unit, A says
    //! `unit_moving`. Small: about 10 s (`cargo test -p mltrader --bin mltrader serve_remote`).

    use super::*;
    use std::net::SocketAddr;
    use std::path::Path;

    use mesh::MeshConfig;
    use net::{Api, NetConfig};
    use serde_json::{json, Value};
    use store::datadir::DataDir;

    struct Node {
        api: Api,
        remote: Arc<NatsRemote>,
        url: String,
    }

    async fn node(nats: &Nats, dir: &Path, name: &str) -> Node {
        let datadir = DataDir::at(dir.join(name));
        datadir.create().unwrap();
        let mut config = MeshConfig {
            tick_hz: 50,
            ..MeshConfig::default()
        };
        config.rules.ticks_per_ly = 1;
        let (mesh, _) = Mesh::start(datadir, Galaxy::default_galaxy(), config)
            .await
            .unwrap();
        let remote = Arc::new(NatsRemote::new(nats, Galaxy::default_galaxy(), 3, None).unwrap());
        let net = NetConfig {
            token_rate: None,
            join_rate: None,
            ip_rate: None,
            ..NetConfig::default()
        };
        let api = Api::with_remote(mesh, net, Some(remote.clone() as Arc<dyn Remote>))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = api
            .router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Node { api, remote, url }
    }

    async fn call(
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_player_of_node_b_plays_through_node_a_over_nats() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let Some(exe) = nats::locate::nats_server_for_test(&root, "any node answers any player")
        else {
            return;
        };
        let cluster = nats::testing::TestCluster::start(&root, exe);
        let dir = tempfile::tempdir().unwrap();
        let (na, nb) = (cluster.connect("a"), cluster.connect("b"));
        let (a, b) = (
            node(&na, dir.path(), "a").await,
            node(&nb, dir.path(), "b").await,
        );
        let galaxy = Galaxy::default_galaxy();
        let mut served = Vec::new();
        for system in galaxy.ids() {
            served.push(b.remote.serve_unit(system, b.api.owner()).await.unwrap());
        }
        let _wa = a
            .remote
            .answer_whereis(a.api.state.mesh.clone())
            .await
            .unwrap();
        let _wb = b
            .remote
            .answer_whereis(b.api.state.mesh.clone())
            .await
            .unwrap();
        assert!(!a.remote.serves(galaxy.home()) && b.remote.serves(galaxy.home()));

        let http = reqwest::Client::new();
        let (status, joined) = call(
            &http,
            reqwest::Method::POST,
            &format!("{}/v1/join", a.url),
            None,
            Some(json!({"name": "Ann"})),
        )
        .await;
        assert_eq!(status, 201, "{joined}");
        let token = joined["token"].as_str().unwrap().to_string();
        assert!(b.api.state.mesh.place("Ann").is_some());
        assert!(a.api.state.mesh.place("Ann").is_none());

        let at_a = |path: &str| format!("{}{path}", a.url);
        let (status, bought) = call(
            &http,
            reqwest::Method::POST,
            &at_a("/v1/trade"),
            Some(&token),
            Some(json!({"side": "buy", "good": "food", "qty": 2})),
        )
        .await;
        assert_eq!(status, 200, "{bought}");
        let (status, went) = call(
            &http,
            reqwest::Method::POST,
            &at_a("/v1/travel"),
            Some(&token),
            Some(json!({"to": "Alpha Centauri", "wait": true})),
        )
        .await;
        assert_eq!(status, 200, "{went}");
        let (status, refuel) = call(
            &http,
            reqwest::Method::POST,
            &at_a("/v1/refuel"),
            Some(&token),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 200, "{refuel}");
        let started = std::time::Instant::now();
        const LOOKS: u32 = 20;
        let mut me = Value::Null;
        for _ in 0..LOOKS {
            let (status, body) = call(
                &http,
                reqwest::Method::GET,
                &at_a("/v1/me"),
                Some(&token),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            me = body;
        }
        let per_look = started.elapsed() / LOOKS;
        assert_eq!(me["system"].as_str(), Some("Alpha Centauri"), "{me}");
        assert_eq!(me["player"]["cargo"]["food"].as_u64(), Some(2), "{me}");
        println!("GET /v1/me through node A, answered by B over NATS: {per_look:?} a request (mean of {LOOKS})");

        // A player whose account was never put in the bucket (joined on B before it held
        // accounts) is unknown to A until B records its accounts.
        let old_token = net::auth::new_token().unwrap();
        b.api
            .state
            .mesh
            .join("Old", &net::auth::key_of(&old_token))
            .await
            .unwrap();
        let (status, _) = call(
            &http,
            reqwest::Method::GET,
            &at_a("/v1/me"),
            Some(&old_token),
            None,
        )
        .await;
        assert_eq!(status, 401);
        let accounts = b.api.state.mesh.accounts().await.unwrap();
        assert_eq!(b.remote.record_accounts(&accounts).await.unwrap(), 2);
        let (status, old) = call(
            &http,
            reqwest::Method::GET,
            &at_a("/v1/me"),
            Some(&old_token),
            None,
        )
        .await;
        assert_eq!((status, old["name"].as_str()), (200, Some("Old")), "{old}");

        // An unknown token: refused after the accounts' bucket says so.
        let forged = format!("mlt_{}", "0".repeat(64));
        let (status, refused) = call(
            &http,
            reqwest::Method::GET,
            &at_a("/v1/me"),
            Some(&forged),
            None,
        )
        .await;
        assert_eq!(status, 401, "{refused}");

        // B hands Alpha Centauri's unit over and nobody takes it: A says so, and nothing ran.
        let alpha = galaxy.lookup("Alpha Centauri").unwrap();
        let index = galaxy.ids().position(|s| s == alpha).unwrap();
        served.remove(index).stop().await;
        let (status, moving) = call(
            &http,
            reqwest::Method::POST,
            &at_a("/v1/refuel"),
            Some(&token),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 503, "{moving}");
        assert_eq!(
            moving["error"]["code"].as_str(),
            Some("unit_moving"),
            "{moving}"
        );
        // Served again: A finds it again.
        served.push(b.remote.serve_unit(alpha, b.api.owner()).await.unwrap());
        let (status, body) = call(
            &http,
            reqwest::Method::GET,
            &at_a("/v1/me"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}
