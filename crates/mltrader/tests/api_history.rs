//! `GET /v1/history` on an API that knows where the players' logs are (built in-process, as
//! `mltrader serve` will once the mesh tells the API its data directory): a player reads their
//! own events and no one else's.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Http;
use mesh::{Mesh, MeshConfig};
use net::{Api, NetConfig};
use serde_json::{json, Value};
use sim::galaxy::Galaxy;
use store::datadir::DataDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_reads_their_own_history_and_only_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path().join("data"));
    datadir.create().unwrap();
    let mut config = MeshConfig {
        tick_hz: 50,
        ..MeshConfig::default()
    };
    config.rules.ticks_per_ly = 1;
    let (mesh, _) = Mesh::start(datadir.clone(), Galaxy::default_galaxy(), config)
        .await
        .unwrap();
    let net = NetConfig {
        history: Some(datadir.clone()),
        ..NetConfig::default()
    };
    let api = Api::build(mesh.clone(), net).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = api
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = Http::new(&url);
    let ann = http.join("Ann").await;
    let bob = http.join("Bob").await;
    let go = http
        .post(
            "/v1/travel",
            Some(&ann),
            json!({"to": "Alpha Centauri", "wait": true}),
        )
        .await;
    assert_eq!(go.status, 200, "{go:?}");
    let r = http.post("/v1/refuel", Some(&ann), json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["bought_units"], 5);
    assert_eq!(r.body["cost_cr"], 10);

    // The projector writes each line shortly after its record is durable.
    let deadline = Instant::now() + Duration::from_secs(10);
    let history = loop {
        let h = http.get("/v1/history", Some(&ann)).await;
        assert_eq!(h.status, 200, "{h:?}");
        if h.body["entries"].as_array().unwrap().len() >= 4 || Instant::now() > deadline {
            break h.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(history["player"], "Ann");
    let kinds: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["join", "depart", "arrive", "refuel"], "{history}");
    let versions: Vec<u64> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert!(history["entries"][1]["src"]
        .as_str()
        .unwrap()
        .starts_with("sol:"));

    let last = http.get("/v1/history?limit=1", Some(&ann)).await.body;
    assert_eq!(last["entries"].as_array().unwrap().len(), 1);
    assert_eq!(last["truncated"], true);
    assert_eq!(last["entries"][0]["kind"], "refuel");

    let theirs: Value = http.get("/v1/history", Some(&bob)).await.body;
    assert_eq!(theirs["player"], "Bob");
    assert!(theirs["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["fields"].get("player").is_none_or(|p| p == "Bob")));

    api.stop_streams();
    server.abort();
    mesh.stop().await.unwrap();
}
