//! Wrecks and loot follow the instance rule: each instance of a crowded system has its own
//! fights and its own wrecks (only the market is shared), so a player in an instance sees and
//! loots that instance's wrecks through `GET /v1/wrecks`, and a player in the primary does
//! not see them. The winner trades in the instance (through the primary's market, an escrow)
//! and pays the station's fee as on a local trade. Then the hull repair: the damaged winner
//! mends its hull for credits at the station (`POST /v1/repair`), hears of it on its event
//! stream (`repaired`), and `check` finds the ledger sound with the sinks `repair` and
//! `trade_fee`.
//!
//! Against a real `mltrader serve` that splits Sol early (`--split-above 4`); small by
//! design (8 players, a few seconds).

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Players joined into Sol: more than the split threshold, so Sol opens an instance.
const PLAYERS: usize = 8;
/// How long to wait for the split, the fight, the wreck, in seconds.
const DEADLINE_S: u64 = 60;

struct Api {
    url: String,
    client: reqwest::Client,
}

/// How long to wait before sending a request the rate limit refused again, in milliseconds.
const RATE_LIMITED_WAIT_MS: u64 = 100;

impl Api {
    /// POST, sent again after a short wait while the server answers 429 (the per-player rate
    /// limit: this test polls and fights fast).
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        loop {
            let mut req = self.client.post(format!("{}{path}", self.url)).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("the server answers");
            let status = resp.status().as_u16();
            if status != 429 {
                return (status, resp.json().await.unwrap_or(Value::Null));
            }
            tokio::time::sleep(Duration::from_millis(RATE_LIMITED_WAIT_MS)).await;
        }
    }

    /// GET, sent again after a short wait while the server answers 429.
    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        loop {
            let resp = self
                .client
                .get(format!("{}{path}", self.url))
                .bearer_auth(token)
                .send()
                .await
                .expect("the server answers");
            let status = resp.status().as_u16();
            if status != 429 {
                return (status, resp.json().await.unwrap_or(Value::Null));
            }
            tokio::time::sleep(Duration::from_millis(RATE_LIMITED_WAIT_MS)).await;
        }
    }

    /// The instance of Sol the player is in (1: the primary).
    async fn instance(&self, token: &str) -> Option<u64> {
        let (status, me) = self.get("/v1/me", token).await;
        assert_eq!(status, 200, "{me}");
        me["instance"].as_u64()
    }

    /// The pilots of the wrecks the player sees, with the wrecks' ids.
    async fn wrecks(&self, token: &str) -> Vec<(String, u64)> {
        let (status, w) = self.get("/v1/wrecks", token).await;
        assert_eq!(status, 200, "{w}");
        w["wrecks"]
            .as_array()
            .expect("a list of wrecks")
            .iter()
            .map(|w| {
                let pilot = w["pilot"].as_str().expect("a pilot").to_string();
                (pilot, w["id"].as_u64().expect("an id"))
            })
            .collect()
    }
}

/// The data of the first event named `name` on the event stream `resp` (`GET /v1/events`),
/// skipping others; fails after [`DEADLINE_S`].
async fn event_named(resp: &mut reqwest::Response, name: &str) -> Value {
    let end = deadline();
    let mut buf = String::new();
    loop {
        while let Some(at) = buf.find("\n\n") {
            let block: String = buf.drain(..at + 2).collect();
            let named = block
                .lines()
                .any(|l| l.strip_prefix("event: ") == Some(name));
            if let (true, Some(data)) =
                (named, block.lines().find_map(|l| l.strip_prefix("data: ")))
            {
                return serde_json::from_str(data).expect("an event's data is JSON");
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event within {DEADLINE_S} s"))
            .expect("the stream is readable")
            .expect("the stream is open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(DEADLINE_S)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_in_an_instance_sees_and_loots_its_wrecks_and_repairs_the_hull() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--tick-hz",
        "20",
        "--split-above",
        "4",
        "--merge-below",
        "1",
        "--instance-cooldown-ms",
        "300",
        "--max-instances",
        "3",
    ];
    let server = common::Server::start_with(Some(&data), &[], &args);
    let api = Api {
        url: server.url().to_string(),
        client: reqwest::Client::new(),
    };

    // Everyone joins and buys a little food, so that a ship shot down leaves a wreck.
    let mut players = Vec::new();
    for i in 0..PLAYERS {
        let name = format!("w{i}");
        let (status, joined) = api.post("/v1/join", None, json!({ "name": name })).await;
        assert_eq!(status, 201, "{joined}");
        let token = joined["token"].as_str().unwrap().to_string();
        let end = deadline();
        loop {
            let body = json!({ "side": "buy", "good": "food", "qty": 5 });
            let (status, traded) = api.post("/v1/trade", Some(&token), body).await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < end, "{name} never bought food: {traded}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        players.push((name, token));
    }

    // Sol splits: find two players in the same instance (not the primary) and one in the
    // primary.
    let end = deadline();
    let (pair, outsider) = loop {
        let mut by_instance = std::collections::BTreeMap::<u64, Vec<usize>>::new();
        for (i, (_, token)) in players.iter().enumerate() {
            if let Some(n) = api.instance(token).await {
                by_instance.entry(n).or_default().push(i);
            }
        }
        let pair = by_instance
            .iter()
            .find(|(n, who)| **n != 1 && who.len() >= 2)
            .map(|(n, who)| (*n, who[0], who[1]));
        let outsider = by_instance.get(&1).and_then(|who| who.first().copied());
        if let (Some(pair), Some(outsider)) = (pair, outsider) {
            break (pair, outsider);
        }
        assert!(Instant::now() < end, "Sol never split: {by_instance:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (instance, a, b) = pair;
    let (_, c_token) = &players[outsider];

    // A and B fight each other until one of them is shot down and its wreck floats in their
    // instance; the survivor (W) has taken hits. Fire is simultaneous and hits are drawn (80%
    // each): both can go down in the same tick, and a ship can win untouched. So: a whole ship
    // holds its fire while the other is down to half its hull, until it has been hit; once a
    // wreck of theirs appears both cease fire, and the round counts only if exactly one of
    // them went down and the other is damaged; otherwise they fight another round.
    let end = deadline();
    let mut old_wrecks = std::collections::BTreeSet::new();
    let (winner, loser, wreck) = loop {
        assert!(
            Instant::now() < end,
            "nobody was shot down alone in Sol #{instance}"
        );
        let hull_of = |me: usize| {
            let token = players[me].1.clone();
            let api = &api;
            async move {
                let (_, me) = api.get("/v1/me", &token).await;
                me["player"]["hull"].as_u64().unwrap_or(0)
            }
        };
        let fighters = [players[a].0.clone(), players[b].0.clone()];
        let new_wrecks: Vec<(String, u64)> = api
            .wrecks(&players[a].1)
            .await
            .into_iter()
            .filter(|(pilot, id)| fighters.contains(pilot) && !old_wrecks.contains(id))
            .collect();
        if !new_wrecks.is_empty() {
            for me in [a, b] {
                let cease = json!({ "target": null });
                let (status, e) = api.post("/v1/attack", Some(&players[me].1), cease).await;
                assert_eq!(status, 200, "{e}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let all: Vec<(String, u64)> = api
                .wrecks(&players[a].1)
                .await
                .into_iter()
                .filter(|(pilot, id)| fighters.contains(pilot) && !old_wrecks.contains(id))
                .collect();
            old_wrecks.extend(all.iter().map(|(_, id)| *id));
            if let [(pilot, id)] = all.as_slice() {
                let loser = if *pilot == players[a].0 { a } else { b };
                let winner = if loser == a { b } else { a };
                let hull = hull_of(winner).await;
                if hull > 0 && hull < 100 {
                    break (winner, loser, *id);
                }
            }
            println!("another round: wrecks {all:?}");
            continue;
        }
        let hulls = [hull_of(a).await, hull_of(b).await];
        for (me, other) in [(a, b), (b, a)] {
            let (mine, theirs) = if me == a {
                (hulls[0], hulls[1])
            } else {
                (hulls[1], hulls[0])
            };
            let target = if mine == 100 && theirs <= 50 {
                json!({ "target": null })
            } else {
                json!({ "target": players[other].0 })
            };
            let (status, e) = api.post("/v1/attack", Some(&players[me].1), target).await;
            assert!(status == 200 || status == 409, "{status} {e}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ((w_name, w_token), (l_name, _)) = (&players[winner], &players[loser]);
    println!("{w_name} shot {l_name} down in Sol #{instance}: wreck {wreck}");
    assert_eq!(
        api.instance(w_token).await,
        Some(instance),
        "the winner stayed"
    );

    // The primary's player does not see it: it is not in their instance.
    let in_primary = api.wrecks(c_token).await;
    assert!(
        in_primary.iter().all(|(pilot, _)| pilot != l_name),
        "the primary's player sees the instance's wreck: {in_primary:?}"
    );

    // The winner loots it, from the instance it lies in.
    let (status, looted) = api
        .post("/v1/loot", Some(w_token), json!({ "wreck": wreck }))
        .await;
    assert_eq!(status, 200, "{looted}");

    // A trade in the instance goes through the primary's market (an escrow) and pays the
    // station's fee, on a buy as on a sale, as a local trade does.
    let mut fees_cr = 0;
    for side in ["buy", "sell"] {
        let (_, me) = api.get("/v1/me", w_token).await;
        let before_cr = me["player"]["credits"].as_u64().expect("credits");
        let order = json!({ "side": side, "good": "food", "qty": 5 });
        let (status, traded) = api.post("/v1/trade", Some(w_token), order).await;
        assert_eq!(status, 200, "{traded}");
        let total = traded["total_cr"].as_u64().expect("a total");
        let fee = traded["fee_cr"].as_u64().expect("a fee");
        assert!(
            fee > 0 && fee >= total * 80 / 1_000,
            "the station's fee: {traded}"
        );
        let after_cr = traded["player"]["credits"].as_u64().expect("credits");
        let want_cr = match side {
            "buy" => before_cr - total - fee,
            _ => before_cr + total - fee,
        };
        assert_eq!(after_cr, want_cr, "{side}: {traded}");
        assert_eq!(
            api.instance(w_token).await,
            Some(instance),
            "traded from the instance"
        );
        fees_cr += fee;
    }

    // The damaged winner mends the hull at the station, for 5 cr a point.
    let (_, me) = api.get("/v1/me", w_token).await;
    let hull = me["player"]["hull"].as_u64().expect("a hull");
    let credits = me["player"]["credits"].as_u64().expect("credits");
    assert!(
        hull > 0 && hull < 100,
        "the winner of a fight is damaged: {me}"
    );
    let (status, e) = api
        .post("/v1/repair", Some(w_token), json!({ "points": 0 }))
        .await;
    assert_eq!(status, 400, "points 0 is refused: {e}");
    let mut events = api
        .client
        .get(format!("{}/v1/events", api.url))
        .bearer_auth(w_token)
        .send()
        .await
        .expect("the event stream opens");
    let (status, repaired) = api.post("/v1/repair", Some(w_token), json!({})).await;
    assert_eq!(status, 200, "{repaired}");
    let told = event_named(&mut events, "repaired").await;
    assert_eq!(
        (&told["repaired_points"], &told["cost_cr"], &told["hull"]),
        (
            &repaired["repaired_points"],
            &repaired["cost_cr"],
            &json!(100)
        ),
        "the stream tells the repair: {told}"
    );
    assert_eq!(repaired["hull"], 100, "{repaired}");
    let points = repaired["repaired_points"].as_u64().unwrap();
    assert_eq!(points, 100 - hull);
    assert_eq!(repaired["cost_cr"].as_u64().unwrap(), 5 * points);
    assert_eq!(repaired["credits"].as_u64().unwrap(), credits - 5 * points);
    let (status, e) = api.post("/v1/repair", Some(w_token), json!({})).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "hull_whole", "{e}");

    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let out = common::check(&data);
    let verdict = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check: {verdict}");
    assert!(
        verdict.contains(&format!("repair {}", 5 * points)),
        "the sink is named: {verdict}"
    );
    let trade_fee_cr: u64 = verdict
        .split("trade_fee ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sink trade_fee in: {verdict}"));
    assert!(
        trade_fee_cr >= fees_cr,
        "the fees paid through the escrow ({fees_cr} cr) are in the sink: {verdict}"
    );
}
