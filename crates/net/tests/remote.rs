//! Any node answers any player (issue 19, decision 9), the HTTP half: two in-process APIs over
//! two meshes of the default galaxy, joined by an in-memory `Remote` (what the binary does over
//! NATS). Node A runs none of the systems as far as its `Remote` says (every join goes to B's
//! home system), so a player who joins through A is held by B, and every request of theirs
//! through A is forwarded to B and answered by B's router as that player.
//!
//! Checked: join, look, refuel, trade, jump and market through A; an unknown token refused;
//! no header a client sends makes a request pass for another player's; the limits apply once,
//! at the entry node; a retry with the same Idempotency-Key acts once; a forwarding failure is
//! 503 `unit_moving` (Retry-After) or 504 `outcome_unknown` with the request id.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use api::forward::{ForwardedReply, ForwardedRequest, ForwardedResponse};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use mesh::{Mesh, MeshConfig};
use mltrader_net::limits::Rate;
use mltrader_net::remote::{Owner, Remote, RemoteError, RemoteFuture};
use mltrader_net::{Api, NetConfig};
use serde_json::{json, Value};
use sim::galaxy::{Galaxy, SystemId};
use store::datadir::DataDir;
use tower_service::Service;

/// A node as the fake sees it: its mesh and its owner side.
struct Peer {
    mesh: Mesh,
    owner: Owner,
}

/// The galaxy's nodes and accounts in memory: what `NatsRemote` does over NATS.
#[derive(Default)]
struct Galaxy2 {
    peers: OnceLock<Vec<Peer>>,
    accounts: Mutex<HashMap<String, String>>,
    account_lookups: AtomicUsize,
}

struct FakeRemote {
    galaxy: Arc<Galaxy2>,
    serves: BTreeSet<SystemId>,
    forwarded: AtomicUsize,
    /// The client address of every request forwarded, in order.
    client_ips: Mutex<Vec<Option<std::net::IpAddr>>>,
    /// The next forward fails so (then forwards work again).
    fail_next: Mutex<Option<RemoteError>>,
}

impl FakeRemote {
    fn new(galaxy: Arc<Galaxy2>, serves: BTreeSet<SystemId>) -> Arc<FakeRemote> {
        Arc::new(FakeRemote {
            galaxy,
            serves,
            forwarded: AtomicUsize::new(0),
            client_ips: Mutex::new(Vec::new()),
            fail_next: Mutex::new(None),
        })
    }

    async fn send(
        &self,
        to: Option<&Peer>,
        request: ForwardedRequest,
    ) -> Result<ForwardedResponse, RemoteError> {
        if let Some(e) = self.fail_next.lock().unwrap().take() {
            return Err(e);
        }
        let Some(peer) = to else {
            return Err(RemoteError::UnitMoving("nobody holds the player".into()));
        };
        self.forwarded.fetch_add(1, Ordering::SeqCst);
        self.client_ips.lock().unwrap().push(request.client_ip);
        match peer.owner.answer(request).await {
            ForwardedReply::Answered(r) => Ok(r),
            ForwardedReply::NotHere => Err(RemoteError::UnitMoving("not here".into())),
        }
    }
}

impl Remote for FakeRemote {
    fn forward(
        &self,
        request: ForwardedRequest,
    ) -> RemoteFuture<'_, Result<ForwardedResponse, RemoteError>> {
        Box::pin(async move {
            let player = request.player.clone().expect("a player");
            let peers = self.galaxy.peers.get().expect("peers set");
            let to = peers.iter().find(|p| p.mesh.place(&player).is_some());
            self.send(to, request).await
        })
    }

    fn forward_to(
        &self,
        _system: SystemId,
        request: ForwardedRequest,
    ) -> RemoteFuture<'_, Result<ForwardedResponse, RemoteError>> {
        // Node B (the second) runs every system.
        Box::pin(async move {
            self.send(self.galaxy.peers.get().unwrap().get(1), request)
                .await
        })
    }

    fn serves(&self, system: SystemId) -> bool {
        self.serves.contains(&system)
    }

    fn account<'a>(
        &'a self,
        key: &'a str,
    ) -> RemoteFuture<'a, Result<Option<String>, RemoteError>> {
        Box::pin(async move {
            self.galaxy.account_lookups.fetch_add(1, Ordering::SeqCst);
            Ok(self.galaxy.accounts.lock().unwrap().get(key).cloned())
        })
    }

    fn record_account<'a>(
        &'a self,
        key: &'a str,
        name: &'a str,
    ) -> RemoteFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.galaxy
                .accounts
                .lock()
                .unwrap()
                .insert(key.to_string(), name.to_string());
            Ok(())
        })
    }
}

struct Nodes {
    a: Router,
    b: Router,
    a_remote: Arc<FakeRemote>,
    galaxy: Arc<Galaxy2>,
    meshes: [Mesh; 2],
    _dirs: tempfile::TempDir,
}

fn unlimited() -> NetConfig {
    NetConfig {
        token_rate: None,
        join_rate: None,
        ip_rate: None,
        ..NetConfig::default()
    }
}

/// Nodes A and B; `a_config` and `b_config` set their limits.
async fn nodes(a_config: NetConfig, b_config: NetConfig) -> Nodes {
    let dirs = tempfile::tempdir().unwrap();
    let galaxy = Arc::new(Galaxy2::default());
    let all: BTreeSet<SystemId> = Galaxy::default_galaxy().ids().collect();
    let mut config = MeshConfig {
        tick_hz: 50,
        ..MeshConfig::default()
    };
    config.rules.ticks_per_ly = 1;
    let mut apis = Vec::new();
    let mut remotes = Vec::new();
    for (i, (serves, net)) in [(BTreeSet::new(), a_config), (all, b_config)]
        .into_iter()
        .enumerate()
    {
        let datadir = DataDir::at(dirs.path().join(format!("node{i}")));
        datadir.create().unwrap();
        let (mesh, _) = Mesh::start(datadir, Galaxy::default_galaxy(), config.clone())
            .await
            .unwrap();
        let remote = FakeRemote::new(galaxy.clone(), serves);
        let api = Api::with_remote(mesh, net, Some(remote.clone() as Arc<dyn Remote>))
            .await
            .unwrap();
        remotes.push(remote);
        apis.push(api);
    }
    let peers = apis
        .iter()
        .map(|api| Peer {
            mesh: api.state.mesh.clone(),
            owner: api.owner(),
        })
        .collect();
    assert!(galaxy.peers.set(peers).is_ok());
    Nodes {
        a: apis[0].router.clone(),
        b: apis[1].router.clone(),
        a_remote: remotes[0].clone(),
        meshes: [apis[0].state.mesh.clone(), apis[1].state.mesh.clone()],
        galaxy,
        _dirs: dirs,
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

async fn send(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let res = router.clone().call(req).await.unwrap();
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

async fn join(router: &Router, name: &str) -> String {
    let r = send(
        router,
        "POST",
        "/v1/join",
        None,
        &[],
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    r.body["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_held_by_another_node_plays_through_this_nodes_api() {
    let n = nodes(unlimited(), unlimited()).await;
    let ann = join(&n.a, "Ann").await;
    assert!(n.meshes[1].place("Ann").is_some(), "B holds Ann");
    assert!(n.meshes[0].place("Ann").is_none(), "A does not");
    let forwarded_after_join = n.a_remote.forwarded.load(Ordering::SeqCst);
    assert_eq!(forwarded_after_join, 1, "the join went to B");

    let me = send(&n.a, "GET", "/v1/me", Some(&ann), &[], None).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(
        (me.body["name"].as_str(), me.body["system"].as_str()),
        (Some("Ann"), Some("Sol"))
    );
    let credits = me.body["player"]["credits"].as_u64().unwrap();

    let buy = send(
        &n.a,
        "POST",
        "/v1/trade",
        Some(&ann),
        &[],
        Some(json!({"side": "buy", "good": "food", "qty": 2})),
    )
    .await;
    assert_eq!(buy.status, StatusCode::OK, "{buy:?}");
    let go = send(
        &n.a,
        "POST",
        "/v1/travel",
        Some(&ann),
        &[],
        Some(json!({"to": "Alpha Centauri", "wait": true})),
    )
    .await;
    assert_eq!(go.status, StatusCode::OK, "{go:?}");
    let refuel = send(&n.a, "POST", "/v1/refuel", Some(&ann), &[], Some(json!({}))).await;
    assert_eq!(refuel.status, StatusCode::OK, "{refuel:?}");
    let market = send(&n.a, "GET", "/v1/market", Some(&ann), &[], None).await;
    assert_eq!(market.status, StatusCode::OK, "{market:?}");

    let me = send(&n.a, "GET", "/v1/me", Some(&ann), &[], None).await;
    assert_eq!(me.body["system"].as_str(), Some("Alpha Centauri"), "{me:?}");
    assert_eq!(
        me.body["player"]["cargo"]["food"].as_u64(),
        Some(2),
        "{me:?}"
    );
    assert!(me.body["player"]["credits"].as_u64().unwrap() < credits);
    // The same answers at B, the owner, with the same token.
    let at_b = send(&n.b, "GET", "/v1/me", Some(&ann), &[], None).await;
    assert_eq!(at_b.body, me.body);
    // A game refusal comes back as the owner gave it.
    let nowhere = send(
        &n.a,
        "POST",
        "/v1/travel",
        Some(&ann),
        &[],
        Some(json!({"to": "Alpha Centauri"})),
    )
    .await;
    assert_eq!(
        (nowhere.status, nowhere.body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("same_system")),
        "{nowhere:?}"
    );
    assert_eq!(n.a_remote.forwarded.load(Ordering::SeqCst), 1 + 7);
    assert!(n.meshes[0].place("Ann").is_none(), "A never held Ann");
    // Node A learnt Ann's token from the galaxy's accounts once, then from its cache.
    assert_eq!(n.galaxy.account_lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_is_refused_by_every_node() {
    let n = nodes(unlimited(), unlimited()).await;
    let _ann = join(&n.a, "Ann").await;
    let forged = "mlt_".to_string() + &"0".repeat(64);
    for router in [&n.a, &n.b] {
        let r = send(router, "GET", "/v1/me", Some(&forged), &[], None).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{r:?}"
        );
    }
    assert_eq!(
        n.a_remote.forwarded.load(Ordering::SeqCst),
        1,
        "only the join was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_cannot_be_forged_from_outside() {
    let n = nodes(unlimited(), unlimited()).await;
    let _ann = join(&n.a, "Ann").await;
    // Whatever a client writes in its headers, a request without Ann's token is not Ann's.
    let pretend: &[(&str, &str)] = &[
        ("x-mlt-player", "Ann"),
        ("mlt-player", "Ann"),
        ("x-forwarded-user", "Ann"),
        ("forwarded", "for=Ann"),
        ("x-mlt-forwarded", "1"),
        ("idempotency-key", "k1"),
    ];
    for router in [&n.a, &n.b] {
        for (method, path, body) in [
            ("GET", "/v1/me", None),
            ("POST", "/v1/refuel", Some(json!({}))),
        ] {
            let r = send(router, method, path, None, pretend, body).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}: {r:?}");
        }
    }
    // The owner's internal path does act as the player it is given.
    let owner = &n.galaxy.peers.get().unwrap()[1].owner;
    let reply = owner
        .answer(ForwardedRequest {
            request_id: "internal-1".into(),
            player: Some("Ann".into()),
            method: "GET".into(),
            path_and_query: "/v1/me".into(),
            content_type: None,
            body: String::new(),
            client_ip: None,
        })
        .await;
    match reply {
        ForwardedReply::Answered(r) => assert_eq!(r.status, 200, "{r:?}"),
        other => panic!("{other:?}"),
    }
    // And says "not here" for a player it does not hold, running nothing.
    let a_owner = &n.galaxy.peers.get().unwrap()[0].owner;
    let reply = a_owner
        .answer(ForwardedRequest {
            request_id: "internal-2".into(),
            player: Some("Ann".into()),
            method: "POST".into(),
            path_and_query: "/v1/refuel".into(),
            content_type: Some("application/json".into()),
            body: "{}".into(),
            client_ip: None,
        })
        .await;
    assert_eq!(reply, ForwardedReply::NotHere);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_apply_once_at_the_entry_node() {
    let rate = |r: &str| Rate::parse(r).unwrap();
    let a = NetConfig {
        token_rate: rate("0.001/5"),
        ..unlimited()
    };
    // Were B to count forwarded requests, the second would be refused.
    let b = NetConfig {
        token_rate: rate("0.001/1"),
        ..unlimited()
    };
    let n = nodes(a, b).await;
    let ann = join(&n.a, "Ann").await;
    for i in 0..5 {
        let r = send(&n.a, "GET", "/v1/me", Some(&ann), &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {r:?}");
    }
    let r = send(&n.a, "GET", "/v1/me", Some(&ann), &[], None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{r:?}"
    );
    assert_eq!(
        n.a_remote.forwarded.load(Ordering::SeqCst),
        1 + 5,
        "the refused one was not forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_acts_once() {
    let n = nodes(unlimited(), unlimited()).await;
    let ann = join(&n.a, "Ann").await;
    let buy = json!({"side": "buy", "good": "food", "qty": 1});
    let key = [("idempotency-key", "buy-food-1")];
    let first = send(
        &n.a,
        "POST",
        "/v1/trade",
        Some(&ann),
        &key,
        Some(buy.clone()),
    )
    .await;
    let again = send(
        &n.a,
        "POST",
        "/v1/trade",
        Some(&ann),
        &key,
        Some(buy.clone()),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(again.body, first.body, "the first answer, remembered");
    let other = send(
        &n.a,
        "POST",
        "/v1/trade",
        Some(&ann),
        &[("idempotency-key", "buy-food-2")],
        Some(buy),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    let me = send(&n.a, "GET", "/v1/me", Some(&ann), &[], None).await;
    assert_eq!(
        me.body["player"]["cargo"]["food"].as_u64(),
        Some(2),
        "two buys, not three: {me:?}"
    );
    // Another request under a key used before runs; it never gets the other's answer.
    let sell = json!({"side": "sell", "good": "food", "qty": 1});
    let reused = send(
        &n.a,
        "POST",
        "/v1/trade",
        Some(&ann),
        &[("idempotency-key", "buy-food-1")],
        Some(sell),
    )
    .await;
    assert_eq!(
        (reused.status, reused.body["side"].as_str()),
        (StatusCode::OK, Some("sell")),
        "{reused:?}"
    );
    // A join is never remembered: the same key on someone else's join does not hand them
    // the first joiner's token.
    let key = [("idempotency-key", "join-1")];
    let first = send(
        &n.a,
        "POST",
        "/v1/join",
        None,
        &key,
        Some(json!({"name": "Cy"})),
    )
    .await;
    let other = send(
        &n.a,
        "POST",
        "/v1/join",
        None,
        &key,
        Some(json!({"name": "Mallory"})),
    )
    .await;
    assert_eq!(
        (first.status, other.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_ne!(first.body["token"], other.body["token"], "{other:?}");
    assert_eq!(other.body["name"].as_str(), Some("Mallory"));
    let bad = send(
        &n.a,
        "GET",
        "/v1/me",
        Some(&ann),
        &[("idempotency-key", "a b")],
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_forward_says_retry_later_or_gives_the_request_id() {
    let n = nodes(unlimited(), unlimited()).await;
    let ann = join(&n.a, "Ann").await;
    *n.a_remote.fail_next.lock().unwrap() = Some(RemoteError::UnitMoving(
        "unit sys.sol: no node answers".into(),
    ));
    let r = send(&n.a, "POST", "/v1/refuel", Some(&ann), &[], Some(json!({}))).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unit_moving")),
        "{r:?}"
    );
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    *n.a_remote.fail_next.lock().unwrap() = Some(RemoteError::OutcomeUnknown {
        request_id: "0a1b2c".into(),
        message: "unit sys.sol: request 0a1b2c was sent and no answer came".into(),
    });
    let r = send(&n.a, "POST", "/v1/refuel", Some(&ann), &[], Some(json!({}))).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("outcome_unknown")),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["request_id"].as_str(), Some("0a1b2c"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key: 0a1b2c"),
        "{r:?}"
    );
    *n.a_remote.fail_next.lock().unwrap() =
        Some(RemoteError::Unavailable("NATS is unreachable".into()));
    let r = send(&n.a, "GET", "/v1/me", Some(&ann), &[], None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("remote_unavailable")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_carries_its_clients_address_for_the_owners_per_ip_limit() {
    use std::net::{IpAddr, SocketAddr};
    // B (the owner) lets each client IP make one request without a token.
    let b = NetConfig {
        ip_rate: Some(Rate::parse("0.001/1").unwrap().expect("a rate")),
        ..unlimited()
    };
    let n = nodes(unlimited(), b).await;
    let ann = join(&n.a, "Ann").await;
    // The entry node carries the TCP peer's address, never what a header says.
    let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let mut req = Request::builder()
        .method("GET")
        .uri("/v1/me")
        .header("authorization", format!("Bearer {ann}"))
        .header("x-forwarded-for", "192.0.2.1")
        .header("forwarded", "for=192.0.2.1")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    let res = n.a.clone().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        n.a_remote.client_ips.lock().unwrap().last().copied(),
        Some(Some(peer.ip())),
        "the entry node carried the connection's address"
    );
    // The owner counts each client apart (before, every forwarded request was 0.0.0.0, so the
    // second client was refused with the first's budget spent).
    let owner = &n.galaxy.peers.get().unwrap()[1].owner;
    let status = |id: &str, ip: &str| {
        let request = ForwardedRequest {
            request_id: id.into(),
            player: None,
            method: "GET".into(),
            path_and_query: "/v1/status".into(),
            content_type: None,
            body: String::new(),
            client_ip: (!ip.is_empty()).then(|| ip.parse::<IpAddr>().unwrap()),
        };
        async move {
            match owner.answer(request).await {
                ForwardedReply::Answered(r) => r.status,
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(
        status("s1", "198.51.100.7").await,
        200,
        "first client, first"
    );
    assert_eq!(
        status("s2", "198.51.100.7").await,
        429,
        "first client, over its limit"
    );
    assert_eq!(
        status("s3", "198.51.100.8").await,
        200,
        "second client, its own limit"
    );
    // The galaxy's own requests (no client's address: the regions' population polls) are no
    // client's and never limited per IP (before, they shared 0.0.0.0's budget: the second was
    // refused).
    for id in ["n1", "n2", "n3"] {
        assert_eq!(status(id, "").await, 200, "a node's own request {id}");
    }
}
