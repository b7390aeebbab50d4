//! The HTTP API of a real server: bad input of every kind is refused with a stable code and
//! writes nothing; conflicting actions get one winner; a token acts for its own player only;
//! rate limits answer 429 with Retry-After; the event stream (own events, and others' in the
//! player's system); the OpenAPI document.

mod common;

use std::time::{Duration, Instant};

use common::{file_sizes, settled_file_sizes, Answer, Http, Server};
use net::routes::ROUTES;
use serde_json::{json, Value};

/// Waits until no jump is in flight anywhere (landings write to the logs).
async fn settle(http: &Http) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = http.get("/v1/status", None).await.body;
        let busy = s
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["in_transit_towards"] != 0 || x["departing"] != 0);
        if !busy {
            return;
        }
        assert!(Instant::now() < deadline, "jumps never settled: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[track_caller]
fn refused(a: &Answer, status: u16, code: &str) {
    assert_eq!((a.status, a.code()), (status, code), "{a:?}");
    let message = a.body["error"]["message"].as_str().unwrap_or("");
    assert!(
        !message.is_empty() && message.len() < 400,
        "short message: {a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_write_nothing_and_the_server_keeps_serving() {
    // Slow jumps (Sol to Alpha Centauri: 4.4 s), so that a jump stays in flight for a while.
    let server = Server::start(&["--ticks-per-ly", "50"]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let bob = http.join("Bob").await;
    settle(&http).await;
    let before = settled_file_sizes(server.data_dir());
    let a = Some(ann.as_str());

    let raw = |body: &str| body.as_bytes().to_vec();
    // Malformed JSON, not JSON, not UTF-8, too deep.
    refused(
        &http
            .post_raw("/v1/travel", a, "application/json", raw("{\"to\": "))
            .await,
        400,
        "bad_json",
    );
    refused(
        &http
            .post_raw("/v1/travel", a, "application/json", vec![0xff, 0xfe, b'{'])
            .await,
        400,
        "bad_json",
    );
    let deep = "[".repeat(5_000) + &"]".repeat(5_000);
    let a_deep = http
        .post_raw("/v1/refuel", a, "application/json", raw(&deep))
        .await;
    assert!(a_deep.status == 400 || a_deep.status == 422, "{a_deep:?}");
    refused(
        &http
            .post_raw("/v1/travel", a, "text/plain", raw("{\"to\":\"Sol\"}"))
            .await,
        415,
        "bad_content_type",
    );
    refused(
        &http
            .post_raw("/v1/join", None, "application/json", raw(""))
            .await,
        400,
        "bad_json",
    );
    // Wrong types, missing and unknown fields.
    refused(
        &http.post("/v1/travel", a, json!({"to": 5})).await,
        422,
        "bad_field",
    );
    refused(
        &http.post("/v1/travel", a, json!({})).await,
        422,
        "bad_field",
    );
    refused(
        &http
            .post(
                "/v1/travel",
                a,
                json!({"to": "Alpha Centauri", "player": "Bob"}),
            )
            .await,
        422,
        "bad_field",
    );
    let mut long_field = serde_json::Map::new();
    long_field.insert("f".repeat(10_000), json!(1));
    // (the message quoting the field stays short: `refused` checks every message's length)
    refused(
        &http.post("/v1/travel", a, Value::Object(long_field)).await,
        422,
        "bad_field",
    );
    refused(
        &http
            .post(
                "/v1/travel",
                a,
                json!({"to": "Alpha Centauri", "wait": "yes"}),
            )
            .await,
        422,
        "bad_field",
    );
    refused(
        &http
            .post("/v1/join", None, json!({"name": "Cy", "admin": true}))
            .await,
        422,
        "bad_field",
    );
    refused(
        &http.post("/v1/join", None, json!(["Cy"])).await,
        422,
        "bad_field",
    );
    refused(
        &http.post("/v1/refuel", a, json!({"units": "ten"})).await,
        422,
        "bad_field",
    );
    // Negative and enormous quantities.
    refused(
        &http.post("/v1/refuel", a, json!({"units": -1})).await,
        422,
        "bad_field",
    );
    refused(
        &http.post("/v1/refuel", a, json!({"units": 1e12})).await,
        422,
        "bad_field",
    );
    refused(
        &http
            .post("/v1/refuel", a, json!({"units": 4_000_000_000u64}))
            .await,
        400,
        "bad_quantity",
    );
    refused(
        &http.post("/v1/refuel", a, json!({"units": 0})).await,
        400,
        "bad_quantity",
    );
    refused(
        &http.post("/v1/refuel", a, json!({})).await,
        409,
        "tank_full",
    );
    // Huge bodies.
    let huge = json!({"to": "x".repeat(100_000)});
    refused(&http.post("/v1/travel", a, huge).await, 413, "too_large");
    // A body far over the limit: the server may answer 413 before reading it all and close
    // the connection, which the client may see as a broken connection instead. A client of
    // its own, so that the next requests never pick that closing connection from the pool.
    let sent = reqwest::Client::new()
        .post(format!("{}/v1/join", http.url))
        .json(&json!({"name": "n".repeat(1_000_000)}))
        .send()
        .await;
    if let Ok(r) = sent {
        assert_eq!(r.status(), 413);
    }
    // Unknown systems (even very long names), and jumps the rules refuse.
    let nowhere = http
        .post("/v1/travel", a, json!({"to": "Alpha Centaur"}))
        .await;
    refused(&nowhere, 404, "unknown_system");
    assert!(nowhere.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean 'Alpha Centauri'"));
    refused(
        &http
            .post("/v1/travel", a, json!({"to": "y".repeat(10_000)}))
            .await,
        404,
        "unknown_system",
    );
    refused(
        &http.post("/v1/travel", a, json!({"to": "Vega"})).await,
        409,
        "no_lane",
    );
    refused(
        &http.post("/v1/travel", a, json!({"to": "Sol"})).await,
        409,
        "same_system",
    );
    let elsewhere = http
        .post(
            "/v1/travel",
            a,
            json!({"to": "Alpha Centauri", "from": "Vega"}),
        )
        .await;
    refused(&elsewhere, 409, "not_here");
    assert_eq!(
        elsewhere.body["error"]["message"],
        "you are in Sol, not Vega"
    );
    // Bad names and taken names.
    for name in ["", " Ann", "a\nb", &"n".repeat(49)] {
        refused(
            &http.post("/v1/join", None, json!({"name": name})).await,
            400,
            "bad_name",
        );
    }
    refused(
        &http.post("/v1/join", None, json!({"name": "Ann"})).await,
        409,
        "name_taken",
    );
    // Bad query strings, unknown routes and methods, no token.
    refused(&http.get("/v1/scan?limit=abc", a).await, 400, "bad_query");
    refused(&http.get("/v1/scan?limit=5000", a).await, 400, "bad_query");
    refused(&http.get("/v1/history?limit=-3", a).await, 400, "bad_query");
    refused(
        &http.get("/v1/route?from=Sol", None).await,
        400,
        "bad_query",
    );
    refused(
        &http.get("/v1/route?from=Sol&to=Nowhere", None).await,
        404,
        "unknown_system",
    );
    refused(&http.get("/v1/nothing", None).await, 404, "no_route");
    refused(&http.get("/v1/travel", a).await, 405, "method_not_allowed");
    refused(
        &http.post("/v1/travel", None, json!({"to": "Sol"})).await,
        401,
        "unauthorized",
    );
    refused(
        &http
            .post("/v1/travel", Some("mlt_forged"), json!({"to": "Sol"}))
            .await,
        401,
        "unauthorized",
    );

    settle(&http).await;
    assert_eq!(
        file_sizes(server.data_dir()),
        before,
        "a refused request wrote to the logs"
    );

    // Actions while in a jump: refused, and nothing written while the jump flies.
    let b = Some(bob.as_str());
    let go = http
        .post("/v1/travel", b, json!({"to": "Alpha Centauri"}))
        .await;
    assert_eq!(go.status, 200, "{go:?}");
    assert!(go.body["travel_ms"].as_u64().unwrap() >= 4000);
    let flying = settled_file_sizes(server.data_dir()); // the commit's last records
    refused(
        &http.post("/v1/travel", b, json!({"to": "Sol"})).await,
        409,
        "in_jump",
    );
    refused(
        &http
            .post(
                "/v1/travel",
                b,
                json!({"to": "Sol", "from": "Alpha Centauri"}),
            )
            .await,
        409,
        "in_jump",
    );
    refused(
        &http.post("/v1/refuel", b, json!({"units": 1})).await,
        409,
        "in_jump",
    );
    refused(&http.get("/v1/scan", b).await, 409, "in_jump");
    refused(&http.get("/v1/market", b).await, 409, "in_jump");
    refused(&http.get("/v1/wrecks", b).await, 409, "in_jump");
    refused(
        &http
            .post(
                "/v1/trade",
                b,
                json!({"side": "buy", "good": "food", "qty": 1}),
            )
            .await,
        409,
        "in_jump",
    );
    refused(
        &http.post("/v1/attack", b, json!({"target": "Ann"})).await,
        409,
        "in_jump",
    );
    refused(
        &http.post("/v1/attack", a, json!({"target": "Bob"})).await,
        409,
        "not_here",
    );
    refused(
        &http.post("/v1/loot", b, json!({"wreck": 0})).await,
        409,
        "in_jump",
    );
    let me = http.get("/v1/me", b).await;
    assert_eq!(me.body["jumping"]["to"], "Alpha Centauri", "{me:?}");
    assert!(me.body["jumping"]["eta_ms"].as_u64().unwrap() > 0, "{me:?}");
    assert_eq!(
        file_sizes(server.data_dir()),
        flying,
        "a refused request wrote to the logs"
    );

    // And the server still serves everyone.
    assert_eq!(http.get("/v1/me", a).await.body["system"], "Sol");
    let ok = http
        .post("/v1/travel", a, json!({"to": "Barnard's Star"}))
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["to"], "Barnard's Star");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_travels_at_once_one_wins_and_the_other_gets_in_jump() {
    let server = Server::start(&["--ticks-per-ly", "50"]);
    let http = Http::new(server.url());
    let mut tokens = Vec::new();
    for i in 0..8 {
        tokens.push(http.join(&format!("racer {i}")).await);
    }
    let mut races = Vec::new();
    for t in &tokens {
        let (h1, h2) = (http.clone(), http.clone());
        let (t1, t2) = (t.clone(), t.clone());
        races.push(tokio::spawn(async move {
            let a = tokio::spawn(async move {
                h1.post("/v1/travel", Some(&t1), json!({"to": "Alpha Centauri"}))
                    .await
            });
            let b = tokio::spawn(async move {
                h2.post(
                    "/v1/travel",
                    Some(&t2),
                    json!({"to": "Barnard's Star", "from": "Sol"}),
                )
                .await
            });
            (a.await.unwrap(), b.await.unwrap())
        }));
    }
    for r in races {
        let (a, b) = r.await.unwrap();
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
        let loser = if a.status == 409 { &a } else { &b };
        assert_eq!(loser.code(), "in_jump", "{loser:?}");
    }
}

/// A request on `route` made with `token`, the way a client would make it.
async fn call(http: &Http, method: &str, path: &str, token: Option<&str>) -> Answer {
    match (method, path) {
        ("POST", "/v1/travel") => {
            http.post(path, token, json!({"to": "Alpha Centauri"}))
                .await
        }
        ("POST", "/v1/refuel") => http.post(path, token, json!({"units": 1})).await,
        ("POST", "/v1/repair") => http.post(path, token, json!({"points": 1})).await,
        ("POST", "/v1/trade") => {
            http.post(
                path,
                token,
                json!({"side": "buy", "good": "food", "qty": 1}),
            )
            .await
        }
        // Cease fire: acts on the caller alone.
        ("POST", "/v1/attack") => http.post(path, token, json!({"target": null})).await,
        ("POST", "/v1/loot") => http.post(path, token, json!({"wreck": 0})).await,
        ("POST", "/v1/join") => http.post(path, token, json!({"name": "Someone"})).await,
        ("GET", "/v1/route") => http.get("/v1/route?from=Sol&to=Vega", token).await,
        ("GET", "/v1/map/system") => http.get("/v1/map/system?name=Sol", token).await,
        ("GET", "/v1/map/player") => http.get("/v1/map/player?name=Bob", token).await,
        ("GET", "/v1/events") => {
            // A stream never ends: look at the status and the first event only.
            let mut req = http.client.get(format!("{}{path}", http.url));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            if status != 200 {
                let body = resp.json().await.unwrap_or(Value::Null);
                return Answer {
                    status,
                    headers,
                    body,
                };
            }
            let mut sse = Sse::new(resp);
            let (_, hello) = sse.next().await;
            Answer {
                status,
                headers,
                body: hello,
            }
        }
        ("GET", p) => http.get(p, token).await,
        (m, p) => panic!("no test request for {m} {p}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_acts_for_its_own_player_and_no_other() {
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let bob = http.join("Bob").await;
    let a = Some(ann.as_str());
    let b = Some(bob.as_str());

    // Every authenticated route refuses requests without a valid token.
    for r in ROUTES.iter().filter(|r| r.authenticated) {
        for token in [None, Some("mlt_0123"), Some("")] {
            let answer = call(&http, r.method, r.path, token).await;
            refused(&answer, 401, "unauthorized");
        }
        let basic = http
            .send(
                http.client
                    .request(r.method.parse().unwrap(), format!("{}{}", http.url, r.path))
                    .header("authorization", format!("Basic {ann}")),
            )
            .await;
        refused(&basic, 401, "unauthorized");
    }

    // Every route, called with Bob's token, acts on and shows Bob only.
    let ann_before = http.get("/v1/me", a).await.body;
    for r in ROUTES {
        let answer = call(&http, r.method, r.path, b).await;
        match (r.method, r.path) {
            ("POST", "/v1/travel") => {
                assert_eq!(answer.status, 200, "{answer:?}");
                assert_eq!(answer.body["player"]["name"], "Bob");
                let landed = http.get("/v1/landing", b).await;
                assert_eq!(landed.body["system"], "Alpha Centauri", "{landed:?}");
            }
            ("POST", "/v1/refuel") => {
                assert_eq!(answer.status, 200, "{answer:?}");
                assert_eq!(answer.body["name"], "Bob");
            }
            ("POST", "/v1/join") => assert_eq!(answer.status, 201, "{answer:?}"),
            // Bob's hull is whole: nothing to mend, nothing written.
            ("POST", "/v1/repair") => refused(&answer, 409, "hull_whole"),
            ("GET", "/v1/me") => assert_eq!(answer.body["name"], "Bob"),
            ("GET", "/v1/landing") => assert_eq!(answer.body["system"], "Alpha Centauri"),
            ("GET", "/v1/scan") => {
                assert_eq!(answer.body["system"], "Alpha Centauri");
                assert_eq!(answer.body["names"], json!(["Bob"]));
            }
            ("GET", "/v1/history") => assert_eq!(answer.body["player"], "Bob", "{answer:?}"),
            ("GET", "/v1/market") => {
                assert_eq!(answer.body["system"], "Alpha Centauri", "{answer:?}");
                assert_eq!(answer.body["live"], true);
            }
            ("POST", "/v1/trade") => {
                assert_eq!(answer.status, 200, "{answer:?}");
                assert_eq!(answer.body["player"]["name"], "Bob");
                assert_eq!(answer.body["player"]["cargo"], json!({"food": 1}));
            }
            ("POST", "/v1/attack") => {
                assert_eq!(answer.status, 200, "{answer:?}");
                assert_eq!(answer.body["player"]["name"], "Bob");
                assert_eq!(answer.body["target"], Value::Null);
            }
            ("GET", "/v1/wrecks") => {
                assert_eq!(answer.body["system"], "Alpha Centauri", "{answer:?}");
                assert_eq!(answer.body["wrecks"], json!([]));
            }
            ("POST", "/v1/loot") => refused(&answer, 409, "no_wreck"),
            ("GET", "/v1/events") => assert_eq!(answer.body["player"], "Bob", "{answer:?}"),
            ("GET", _) if !r.authenticated => assert_eq!(answer.status, 200, "{answer:?}"),
            (m, p) => panic!("no check for {m} {p}: add one when adding a route"),
        }
        assert_eq!(
            http.get("/v1/me", a).await.body,
            ann_before,
            "{} {} with Bob's token changed Ann",
            r.method,
            r.path
        );
    }
    // Naming another player in a request does not work either.
    let me = http.get("/v1/me?name=Ann&player=Ann", b).await;
    assert_eq!(me.body["name"], "Bob");
    refused(
        &http.post("/v1/refuel", b, json!({"name": "Ann"})).await,
        422,
        "bad_field",
    );
    refused(
        &http
            .post("/v1/travel", b, json!({"to": "Sol", "player": "Ann"}))
            .await,
        422,
        "bad_field",
    );
    assert_eq!(http.get("/v1/me", a).await.body, ann_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let env = [
        ("MLTRADER_TOKEN_RATE", "4/6"),
        ("MLTRADER_JOIN_RATE", "1/3"),
        ("MLTRADER_LIMIT_LOOPBACK", "1"),
        ("MLTRADER_IP_RATE", "3/3"),
    ];
    let server = Server::start_with(None, &env, &[]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let bob = http.join("Bob").await;
    // A burst of 3 joins (Ann, Bob, then at least one more), then 429.
    let mut joined = 2;
    let fourth = loop {
        let a = http
            .post("/v1/join", None, json!({"name": format!("p{joined}")}))
            .await;
        if a.status != 201 {
            break a;
        }
        joined += 1;
        assert!(joined < 10, "joins are never limited");
    };
    assert!(joined >= 3, "the burst passes: {joined}");
    refused(&fourth, 429, "rate_limited");
    assert_eq!(fourth.headers["retry-after"], "1");
    // A bad join still counts: floods are refused before their bodies are read.
    refused(
        &http
            .post_raw("/v1/join", None, "application/json", b"{".to_vec())
            .await,
        429,
        "rate_limited",
    );

    // Routes without a token: a bucket per client IP.
    for _ in 0..3 {
        assert_eq!(http.get("/v1/systems", None).await.status, 200);
    }
    refused(
        &http.get("/v1/route?from=Sol&to=Vega", None).await,
        429,
        "rate_limited",
    );

    // A bucket per token.
    let mut ok = 0;
    let limited = loop {
        let a = http.get("/v1/me", Some(&ann)).await;
        if a.status != 200 {
            break a;
        }
        ok += 1;
        assert!(ok < 50, "requests are never limited");
    };
    assert!(ok >= 6, "the burst of 6 passes: {ok}");
    refused(&limited, 429, "rate_limited");
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Another token has its own bucket.
    assert_eq!(http.get("/v1/me", Some(&bob)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        http.get("/v1/me", Some(&ann)).await.status,
        200,
        "the bucket refills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_file_and_every_operation_is_routed() {
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let token = http.join("Ann").await;
    let served = http.get("/openapi.json", None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["content-type"], "application/json");
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../api/openapi.json"))
        .unwrap();
    let file: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(served.body, file, "the served document is openapi.json");
    let operations = net::openapi::operations(&file);
    assert_eq!(operations.len(), ROUTES.len());
    for (method, path) in operations {
        let answer = call(&http, &method, &path, Some(&token)).await;
        assert!(
            answer.code() != "no_route" && answer.code() != "method_not_allowed",
            "{method} {path} is documented but not routed: {answer:?}"
        );
    }
}

/// Reads server-sent events from a response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    fn new(resp: reqwest::Response) -> Sse {
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event: its name and its JSON data.
    async fn next(&mut self) -> (String, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if name.is_empty() {
                    continue; // a keep-alive comment
                }
                return (name, serde_json::from_str(&data).unwrap_or(Value::Null));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .expect("stream readable")
                .expect("stream open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until (and including) the first named `last`.
    async fn until(&mut self, last: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        loop {
            let e = self.next().await;
            let done = e.0 == last;
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

async fn subscribe(http: &Http, token: &str) -> reqwest::Response {
    http.client
        .get(format!("{}/v1/events", http.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_shows_the_players_own_jump_and_joins() {
    // Sol to Alpha Centauri: 22 ticks at 50 Hz, about 440 ms: a few progress events.
    let server = Server::start(&["--ticks-per-ly", "5"]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let bob = http.join("Bob").await;
    let mut ann_events = Sse::new(subscribe(&http, &ann).await);
    let mut bob_events = Sse::new(subscribe(&http, &bob).await);
    let (name, hello) = ann_events.next().await;
    assert_eq!(
        (name.as_str(), &hello["player"], &hello["system"]),
        ("hello", &json!("Ann"), &json!("Sol"))
    );
    assert_eq!(bob_events.next().await.1["player"], "Bob");

    http.join("Cy").await;
    let (name, joined) = ann_events.next().await;
    assert_eq!((name.as_str(), &joined["player"]), ("joined", &json!("Cy")));
    assert_eq!(
        bob_events.next().await.1["player"],
        "Cy",
        "joins are public"
    );

    let go = http
        .post("/v1/travel", Some(&ann), json!({"to": "Alpha Centauri"}))
        .await;
    assert_eq!(go.status, 200);
    let events = ann_events.until("landed").await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "departed", "{events:?}");
    assert_eq!(events[0].1["travel_ms"], go.body["travel_ms"]);
    assert!(
        names[1..names.len() - 1].iter().all(|n| *n == "progress"),
        "{names:?}"
    );
    assert!(names.len() >= 3, "progress while in the jump: {names:?}");
    let remaining: Vec<u64> = events[1..events.len() - 1]
        .iter()
        .map(|(_, e)| e["remaining_ms"].as_u64().unwrap())
        .collect();
    assert!(remaining.windows(2).all(|w| w[0] >= w[1]), "{remaining:?}");
    let landed = &events.last().unwrap().1;
    assert_eq!(landed["system"], "Alpha Centauri");
    assert_eq!(landed["population"], 1);
    assert_eq!(landed["xfer"], go.body["xfer"]);

    // A refused action is streamed to its player only.
    http.post("/v1/travel", Some(&ann), json!({"to": "Vega"}))
        .await;
    let (name, e) = ann_events.next().await;
    assert_eq!(
        (name.as_str(), &e["code"], &e["route"]),
        ("error", &json!("no_lane"), &json!("travel"))
    );
    let (name, e) = bob_events.next().await;
    assert_eq!(
        (name.as_str(), &e["player"], &e["to"]),
        ("left", &json!("Ann"), &json!("Alpha Centauri")),
        "Bob, in Sol, sees Ann leave it"
    );
    http.post("/v1/refuel", Some(&bob), json!({"units": 1}))
        .await;
    let (name, e) = bob_events.next().await;
    assert_eq!(
        (name.as_str(), &e["code"], &e["route"]),
        ("error", &json!("tank_full"), &json!("refuel")),
        "Bob sees his own refusal and nothing else of Ann's jump"
    );

    // At most 4 streams per player.
    let mut more = Vec::new();
    for _ in 0..3 {
        let r = subscribe(&http, &ann).await;
        assert_eq!(r.status(), 200);
        more.push(r);
    }
    let fifth = subscribe(&http, &ann).await;
    assert_eq!(fifth.status(), 429);
    let body: Value = fifth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
}

/// Travels and waits for the landing.
async fn go(http: &Http, token: &str, to: &str) {
    let a = http
        .post("/v1/travel", Some(token), json!({"to": to, "wait": true}))
        .await;
    assert_eq!(a.status, 200, "travel to {to}: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_shows_others_arriving_and_leaving_the_players_system_only() {
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let bob = http.join("Bob").await;
    let cy = http.join("Cy").await;
    let dee = http.join("Dee").await;
    go(&http, &bob, "Alpha Centauri").await;
    go(&http, &dee, "Wolf 359").await;
    let mut bob_events = Sse::new(subscribe(&http, &bob).await);
    let mut cy_events = Sse::new(subscribe(&http, &cy).await);
    let mut dee_events = Sse::new(subscribe(&http, &dee).await);
    assert_eq!(bob_events.next().await.1["system"], "Alpha Centauri");
    assert_eq!(cy_events.next().await.1["system"], "Sol");
    assert_eq!(dee_events.next().await.1["system"], "Wolf 359");

    // Ann goes to Alpha Centauri, where Bob is, and back to Sol, where Cy is.
    go(&http, &ann, "Alpha Centauri").await;
    go(&http, &ann, "Sol").await;
    let (name, e) = bob_events.next().await;
    assert_eq!(name, "arrived", "{e}");
    assert_eq!(
        (&e["player"], &e["from"], &e["system"], &e["population"]),
        (
            &json!("Ann"),
            &json!("Sol"),
            &json!("Alpha Centauri"),
            &json!(2)
        )
    );
    assert!(e["xfer"].as_str().unwrap().starts_with("sol:"), "{e}");
    let (name, e) = bob_events.next().await;
    assert_eq!(name, "left", "{e}");
    assert_eq!(
        (&e["player"], &e["system"], &e["to"]),
        (&json!("Ann"), &json!("Alpha Centauri"), &json!("Sol"))
    );
    assert!(
        e["xfer"].as_str().unwrap().starts_with("alpha-centauri:"),
        "{e}"
    );
    let cy_saw: Vec<(String, Value)> = vec![cy_events.next().await, cy_events.next().await];
    assert_eq!(
        cy_saw
            .iter()
            .map(|(n, e)| (n.as_str(), e["player"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [("left", "Ann"), ("arrived", "Ann")],
        "{cy_saw:?}"
    );
    assert_eq!(cy_saw[1].1["population"], 2, "Cy and Ann");

    // Dee, in Wolf 359, saw none of it: the first thing she sees is Cy arriving there (the
    // feed is in order, so Ann's events were before it).
    go(&http, &cy, "Wolf 359").await;
    let (name, e) = dee_events.next().await;
    assert_eq!(
        (name.as_str(), &e["player"], &e["from"]),
        ("arrived", &json!("Cy"), &json!("Sol")),
        "{e}"
    );
    // Cy's own jump is told once, by the API layer (departed, progress, landed).
    let own = cy_events.until("landed").await;
    let names: Vec<&str> = own.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "departed", "{names:?}");
    assert!(
        names[1..]
            .iter()
            .all(|n| ["progress", "landed"].contains(n)),
        "{names:?}"
    );
}

/// Polls `path` as `token` until `done` holds of the answer (at most 20 s).
async fn until(http: &Http, path: &str, token: Option<&str>, done: impl Fn(&Answer) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = http.get(path, token).await;
        if done(&a) {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never came: {a:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markets_trades_fights_and_loot_answer_and_refusals_write_nothing() {
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let bob = http.join("Bob").await;
    let cy = http.join("Cy").await;
    let (a, b, c) = (Some(ann.as_str()), Some(bob.as_str()), Some(cy.as_str()));

    // Your ship: hull, hold, cargo, hold used, no standing order.
    let me = http.get("/v1/me", a).await.body;
    let p = &me["player"];
    assert_eq!(
        (&p["hull"], &p["hold"], &p["cargo"], &p["hold_used"]),
        (&json!(100), &json!(60), &json!({}), &json!(0)),
        "{me}"
    );
    assert_eq!(me["attacking"], Value::Null);

    // The market here, live; another system's, as heard once gossip brings it.
    let m = http.get("/v1/market", a).await;
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(
        (&m.body["system"], &m.body["live"]),
        (&json!("Sol"), &json!(true))
    );
    let goods = m.body["goods"].as_array().unwrap();
    assert_eq!(goods.len(), 8);
    for q in goods {
        let (mid, buy, sell) = (
            q["mid_cr"].as_u64().unwrap(),
            q["buy_cr"].as_u64().unwrap(),
            q["sell_cr"].as_u64().unwrap(),
        );
        assert!(
            sell <= mid && mid <= buy && q["stock"].as_u64().unwrap() > 0,
            "{q}"
        );
    }
    assert_eq!(
        http.get("/v1/market?system=sol", a).await.body["live"],
        true,
        "your own system is live"
    );
    until(&http, "/v1/market?system=Alpha%20Centauri", a, |x| {
        x.status == 200
    })
    .await;
    let heard = http.get("/v1/market?system=alpha-centauri", a).await.body;
    assert_eq!(
        (&heard["system"], &heard["live"]),
        (&json!("Alpha Centauri"), &json!(false)),
        "{heard}"
    );
    assert!(
        heard["age_ms"].is_u64() && heard["prices"]["ore"].is_u64(),
        "{heard}"
    );
    // The galaxy view hears every system.
    let systems = http.get("/v1/systems", None).await.body;
    let n = systems.as_array().unwrap().len();
    until(&http, "/v1/economy", None, |x| {
        x.body["systems"].as_array().is_some_and(|s| s.len() == n)
    })
    .await;
    let e = http.get("/v1/economy", None).await.body;
    for g in e["goods"].as_array().unwrap() {
        let (lo, hi) = (
            g["best_buy"]["price_cr"].as_u64().unwrap(),
            g["best_sell"]["price_cr"].as_u64().unwrap(),
        );
        assert_eq!(g["spread_cr"].as_u64().unwrap(), hi - lo, "{g}");
        assert!(g["best_buy"]["age_ms"].is_u64(), "{g}");
    }

    // Every refusal, with nothing written.
    let before = settled_file_sizes(server.data_dir());
    let trade = |side: &str, good: &str, qty: i64| json!({"side": side, "good": good, "qty": qty});
    let typo = http.post("/v1/trade", a, trade("buy", "fod", 1)).await;
    refused(&typo, 400, "unknown_good");
    assert!(
        typo.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean 'food'?"),
        "{typo:?}"
    );
    for qty in [0, 100_001, 5_000_000_000] {
        refused(
            &http.post("/v1/trade", a, trade("buy", "ore", qty)).await,
            400,
            "bad_quantity",
        );
    }
    for bad in [
        trade("steal", "ore", 1),
        trade("buy", "ore", -1),
        json!({"side": "buy", "qty": 1}),
        json!({"side": "buy", "good": "ore", "qty": 1, "player": "Bob"}),
        json!({"side": "buy", "good": "ore", "qty": 1, "limit_cr": -5}),
    ] {
        refused(&http.post("/v1/trade", a, bad).await, 422, "bad_field");
    }
    refused(
        &http.post("/v1/trade", a, trade("sell", "ore", 1)).await,
        409,
        "not_carried",
    );
    refused(
        &http
            .post("/v1/trade", a, trade("buy", "food", 100_000))
            .await,
        409,
        "no_stock",
    );
    refused(
        &http
            .post("/v1/trade", a, trade("sell", "ore", 100_000))
            .await,
        409,
        "market_full",
    );
    refused(
        &http
            .post("/v1/trade", a, trade("buy", "luxuries", 100))
            .await,
        409,
        "no_credits",
    );
    refused(
        &http.post("/v1/trade", a, trade("buy", "ore", 31)).await,
        409,
        "no_cargo_space",
    );
    let limited = http
        .post(
            "/v1/trade",
            a,
            json!({"side": "buy", "good": "ore", "qty": 2, "limit_cr": 1}),
        )
        .await;
    refused(&limited, 409, "price_limit");
    refused(
        &http.post("/v1/attack", a, json!({"target": "Ann"})).await,
        409,
        "self_attack",
    );
    refused(
        &http
            .post("/v1/attack", a, json!({"target": "Nobody"}))
            .await,
        409,
        "not_here",
    );
    refused(
        &http
            .post("/v1/attack", a, json!({"target": "n".repeat(100)}))
            .await,
        400,
        "bad_name",
    );
    for bad in [
        json!({}),
        json!({"target": 5}),
        json!({"target": "Bob", "x": 1}),
    ] {
        refused(&http.post("/v1/attack", a, bad).await, 422, "bad_field");
    }
    refused(
        &http.post("/v1/loot", a, json!({"wreck": 99})).await,
        409,
        "no_wreck",
    );
    for bad in [json!({}), json!({"wreck": -1}), json!({"wreck": "x"})] {
        refused(&http.post("/v1/loot", a, bad).await, 422, "bad_field");
    }
    refused(&http.get("/v1/market?limit=3", a).await, 400, "bad_query");
    refused(
        &http.get("/v1/market?system=Nowhere", a).await,
        404,
        "unknown_system",
    );
    assert_eq!(
        settled_file_sizes(server.data_dir()),
        before,
        "a refused request wrote to the logs"
    );

    // Trades: credits, cargo and the hold move together; the stream tells the trader.
    let mut bob_events = Sse::new(subscribe(&http, &bob).await);
    let mut ann_events = Sse::new(subscribe(&http, &ann).await);
    assert_eq!(bob_events.next().await.0, "hello");
    assert_eq!(ann_events.next().await.0, "hello");
    let bought = http.post("/v1/trade", b, trade("buy", "ORE", 10)).await;
    assert_eq!(bought.status, 200, "{bought:?}");
    let total = bought.body["total_cr"].as_u64().unwrap();
    let fee = bought.body["fee_cr"].as_u64().unwrap();
    assert_eq!(fee, total * 80 / 1_000, "the station's 8% fee");
    let p = &bought.body["player"];
    assert_eq!(
        (
            &bought.body["side"],
            &bought.body["good"],
            &bought.body["qty"]
        ),
        (&json!("buy"), &json!("ore"), &json!(10))
    );
    assert_eq!(p["credits"].as_u64().unwrap(), 1_000 - total - fee);
    assert_eq!(
        (&p["cargo"], &p["hold_used"]),
        (&json!({"ore": 10}), &json!(20))
    );
    let (name, e) = bob_events.next().await;
    assert_eq!((name.as_str(), &e["total_cr"]), ("traded", &json!(total)));
    let sold = http
        .post(
            "/v1/trade",
            b,
            json!({"side": "sell", "good": "ore", "qty": 4, "limit_cr": 1}),
        )
        .await;
    assert_eq!(sold.status, 200, "{sold:?}");
    assert_eq!(sold.body["player"]["cargo"], json!({"ore": 6}));
    assert!(
        sold.body["total_cr"].as_u64().unwrap() < total,
        "a round trip loses"
    );
    assert_eq!(bob_events.next().await.0, "traded");

    // A fight: Cy fires at Bob until Bob's ship is destroyed; Bob respawns in place with a
    // basic ship, his ore in a wreck that Cy loots. Everyone in Sol hears of it.
    let order = http.post("/v1/attack", c, json!({"target": "Bob"})).await;
    assert_eq!(order.status, 200, "{order:?}");
    assert_eq!(
        (&order.body["target"], &order.body["player"]["name"]),
        (&json!("Bob"), &json!("Cy"))
    );
    let (name, e) = bob_events.next().await;
    assert_eq!((name.as_str(), &e["by"]), ("attacked", &json!("Cy")), "{e}");
    let (name, e) = bob_events.next().await;
    assert_eq!(name, "destroyed", "{e}");
    assert_eq!((&e["player"], &e["by"]), (&json!("Bob"), &json!("Cy")));
    let wreck = e["wreck"].as_u64().expect("Bob carried ore");
    let (name, e) = ann_events.next().await;
    assert_eq!((name.as_str(), &e["player"]), ("destroyed", &json!("Bob")));
    let bob_now = http.get("/v1/me", b).await.body;
    assert_eq!(bob_now["system"], "Sol");
    let p = &bob_now["player"];
    assert_eq!(
        (&p["hull"], &p["cargo"]),
        (&json!(100), &json!({})),
        "{bob_now}"
    );
    assert_eq!(
        p["credits"], sold.body["player"]["credits"],
        "credits are kept"
    );
    assert_eq!(
        http.get("/v1/me", c).await.body["attacking"],
        Value::Null,
        "the order ends with the target"
    );
    let wrecks = http.get("/v1/wrecks", a).await.body;
    assert_eq!(wrecks["system"], "Sol");
    let w = &wrecks["wrecks"][0];
    assert_eq!(
        (&w["id"], &w["pilot"], &w["cargo"]),
        (&json!(wreck), &json!("Bob"), &json!({"ore": 6})),
        "{wrecks}"
    );
    let looted = http.post("/v1/loot", c, json!({"wreck": wreck})).await;
    assert_eq!(looted.status, 200, "{looted:?}");
    assert_eq!(looted.body["took"], json!({"ore": 6}));
    assert_eq!(looted.body["player"]["cargo"], json!({"ore": 6}));
    assert_eq!(looted.body["player"]["hold_used"], 12);
    refused(
        &http.post("/v1/loot", a, json!({"wreck": wreck})).await,
        409,
        "no_wreck",
    );

    // A standing order shows in /v1/me until ceased.
    let order = http.post("/v1/attack", a, json!({"target": "Cy"})).await;
    assert_eq!(order.status, 200, "{order:?}");
    let ceased = http.post("/v1/attack", a, json!({"target": null})).await;
    assert_eq!(ceased.status, 200, "{ceased:?}");
    assert_eq!(ceased.body["target"], Value::Null);
    let me = http.get("/v1/me", a).await.body;
    assert_eq!(me["attacking"], Value::Null, "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_of_a_system_not_heard_yet_are_404_not_heard() {
    // At 5 Hz a system publishes its prices every 2 s: right after the start, Sol has heard
    // nothing.
    let server = Server::start(&["--tick-hz", "5"]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let a = Some(ann.as_str());
    let far = http.get("/v1/market?system=Vega", a).await;
    refused(&far, 404, "not_heard");
    assert!(
        far.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prices spread along the lanes"),
        "{far:?}"
    );
    // A neighbour's prices arrive after a round of gossip.
    until(&http, "/v1/market?system=Alpha%20Centauri", a, |x| {
        x.status == 200
    })
    .await;
}

/// A fresh server with one player, Ann, and the sizes of its files once quiet.
async fn one_player() -> (
    Server,
    Http,
    String,
    std::collections::BTreeMap<std::path::PathBuf, u64>,
) {
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    settle(&http).await;
    let before = settled_file_sizes(server.data_dir());
    (server, http, ann, before)
}

/// Every JSON body is read by one extractor: a key given twice is 422 `bad_field` like an
/// unknown field (the last value does not silently win), at any depth, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_twice_in_any_body_is_422_and_writes_nothing() {
    let (server, http, ann, before) = one_player().await;
    let a = Some(ann.as_str());
    let twice: [(&str, Option<&str>, &str); 8] = [
        (
            "/v1/trade",
            a,
            r#"{"side":"buy","good":"ore","qty":1,"qty":2}"#,
        ),
        (
            "/v1/trade",
            a,
            r#"{"side":"sell","good":"ore","qty":1,"side":"buy"}"#,
        ),
        ("/v1/refuel", a, r#"{"units":1,"units":2}"#),
        ("/v1/travel", a, r#"{"to":"Vega","to":"Alpha Centauri"}"#),
        ("/v1/attack", a, r#"{"target":null,"target":null}"#),
        ("/v1/loot", a, r#"{"wreck":1,"wreck":1}"#),
        ("/v1/join", None, r#"{"name":"Dup","name":"Dup2"}"#),
        ("/v1/join", None, r#"{"name":"Dup","x":{"k":1,"k":2}}"#),
    ];
    for (path, token, body) in twice {
        let answer = http
            .post_raw(path, token, "application/json", body.as_bytes().to_vec())
            .await;
        refused(&answer, 422, "bad_field");
        let message = answer.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("given twice"), "{path} {body}: {answer:?}");
    }
    settle(&http).await;
    assert_eq!(settled_file_sizes(server.data_dir()), before);
}

/// `null` where the document allows none is 422 `bad_field` (omit the field instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_in_an_optional_field_is_422_and_writes_nothing() {
    let (server, http, ann, before) = one_player().await;
    let a = Some(ann.as_str());
    for (path, body) in [
        ("/v1/refuel", json!({"units": null})),
        (
            "/v1/trade",
            json!({"side": "buy", "good": "ore", "qty": 1, "limit_cr": null}),
        ),
        ("/v1/travel", json!({"to": "Vega", "from": null})),
    ] {
        refused(&http.post(path, a, body).await, 422, "bad_field");
    }
    settle(&http).await;
    assert_eq!(settled_file_sizes(server.data_dir()), before);
}

/// Ceasing fire with no order standing is answered and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceasing_fire_with_no_order_standing_records_nothing() {
    let (server, http, ann, before) = one_player().await;
    let ceased = http
        .post("/v1/attack", Some(&ann), json!({"target": null}))
        .await;
    assert_eq!(ceased.status, 200, "{ceased:?}");
    assert_eq!(ceased.body["target"], Value::Null);
    settle(&http).await;
    assert_eq!(
        settled_file_sizes(server.data_dir()),
        before,
        "a cease-fire with no order wrote a record"
    );
}

/// A route from a system to itself is 0 light years, not `-0.0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_the_same_system_is_zero_light_years() {
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let here = http.get("/v1/route?from=Sol&to=Sol", None).await;
    assert_eq!(here.status, 200, "{here:?}");
    let d = here.body["distance_ly"].as_f64().expect("a number");
    assert!(d == 0.0 && d.is_sign_positive(), "{here:?}");
}

/// An integer written with a zero fraction (`2.0`, an integer to JSON Schema) is that integer;
/// a fraction is still a type error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integer_written_with_a_zero_fraction_is_that_integer() {
    let (_server, http, ann, _) = one_player().await;
    let a = Some(ann.as_str());
    let bought = http
        .post(
            "/v1/trade",
            a,
            json!({"side": "buy", "good": "ore", "qty": 2.0, "limit_cr": 1000.0}),
        )
        .await;
    assert_eq!(
        (bought.status, &bought.body["qty"]),
        (200, &json!(2)),
        "{bought:?}"
    );
    refused(
        &http
            .post(
                "/v1/trade",
                a,
                json!({"side": "buy", "good": "ore", "qty": 2.5}),
            )
            .await,
        422,
        "bad_field",
    );
    // Integers are at most 2^53 (the document's `maximum`): above, a double would not hold
    // the number written.
    let over = 9_007_199_254_740_993_u64;
    for (path, body) in [
        ("/v1/loot", json!({"wreck": over})),
        (
            "/v1/trade",
            json!({"side": "buy", "good": "ore", "qty": 1, "limit_cr": over}),
        ),
    ] {
        refused(&http.post(path, a, body).await, 422, "bad_field");
    }
}

/// After a restart, a player whose jump is in flight still sees their state and when they
/// land: recovery hands the committed jump, which holds the whole player, to the destination,
/// and `GET /v1/me` asks it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_me_shows_a_player_in_flight_with_their_state_and_eta() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Sol to Alpha Centauri is 4.4 ly: at 1,000 ticks a light year and 10 Hz, 440 s in flight.
    let slow = ["--ticks-per-ly", "1000", "--tick-hz", "10"];
    let server = Server::start_with(Some(&data), &[], &slow);
    let http = Http::new(server.url());
    let ann = http.join("Ann").await;
    let a = Some(ann.as_str());
    let went = http
        .post("/v1/travel", a, json!({"to": "Alpha Centauri"}))
        .await;
    assert_eq!(went.status, 200, "{went:?}");
    let travel_ms = went.body["travel_ms"].as_u64().unwrap();
    let before = http.get("/v1/me", a).await.body;
    assert_eq!(before["player"], went.body["player"], "{before}");
    assert!(before["jumping"]["eta_ms"].as_u64().is_some(), "{before}");
    server.kill();

    let server = Server::start_with(Some(&data), &[], &slow);
    let http = Http::new(server.url());
    let after = http.get("/v1/me", a).await;
    assert_eq!(after.status, 200, "{after:?}");
    let me = &after.body;
    assert_eq!(me["system"], Value::Null, "{me}");
    assert_eq!(me["jumping"]["to"], "Alpha Centauri", "{me}");
    assert_eq!(me["jumping"]["xfer"], went.body["xfer"], "{me}");
    assert_eq!(
        me["player"], before["player"],
        "the player as they travel, fuel and credits included"
    );
    let eta_ms = me["jumping"]["eta_ms"]
        .as_u64()
        .expect("an eta after the restart");
    assert!(eta_ms > 0 && eta_ms <= travel_ms, "{eta_ms} of {travel_ms}");
}
