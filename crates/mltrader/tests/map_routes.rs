//! The map's routes without a browser: served by default (the page, its state with every
//! system and nothing secret in it), and all 404 with `serve --no-map` (the economy's page
//! too) while `/metrics` stays.

mod common;

use common::{Http, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_is_served_by_default_shows_no_token_and_no_map_turns_it_off() {
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let token = http.join("ann").await;
    let page = http
        .client
        .get(format!("{}/", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/map.js") && html.contains("id=\"map\""),
        "{html}"
    );
    let state = http.get("/v1/map", None).await;
    assert_eq!(state.status, 200, "{state:?}");
    let systems = http.get("/v1/systems", None).await.body;
    assert_eq!(
        state.body["systems"].as_array().unwrap().len(),
        systems.as_array().unwrap().len()
    );
    let text = state.body.to_string();
    assert!(!text.contains(&token), "the map shows no token");
    let home = systems
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["home"] == true)
        .unwrap()["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let panel = http.get(&format!("/v1/map/system?name={home}"), None).await;
    assert_eq!(panel.status, 200, "{panel:?}");
    assert_eq!(panel.body["players"], serde_json::json!(["ann"]));
    assert!(!panel.body.to_string().contains(&token));
    let found = http.get("/v1/map/player?name=ann", None).await;
    assert_eq!(found.body["system"], home.as_str(), "{found:?}");
    assert_eq!(
        http.get("/v1/map/player?name=nobody", None).await.status,
        404
    );
    drop(server);

    let server = Server::start(&["--no-map"]);
    let http = Http::new(server.url());
    for path in [
        "/",
        "/map.js",
        "/map.css",
        "/v1/map",
        "/v1/map/stream",
        "/economy",
        "/v1/economy/report",
    ] {
        let a = http.get(path, None).await;
        assert_eq!(a.status, 404, "{path}: {a:?}");
    }
    let metrics = http
        .client
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200, "/metrics stays");
}
