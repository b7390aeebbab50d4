//! Two regions playing (issue 20): `serve --nats --spread --region eu` and `--region us` on two
//! test regions (a NATS server each, their leafnode link through a `WanProxy` that delays it
//! and can cut it), the default galaxy homing Sol in `eu` and Alpha Centauri in `us`.
//!
//! Checks: each region's node serves exactly its region's systems; a player who joined through
//! the `us` node (his home, Sol, is in `eu`: forwarded over the link) jumps Sol -> Alpha
//! Centauri -> Sol across the regions, each jump's commit timed; swarms play through both
//! nodes; the link is cut while they play (each region keeps committing jumps) and healed;
//! once everything has landed, the players counted in both regions are exactly the players
//! who joined (nobody lost in flight across the cut, nobody twice).
//!
//! Size: `MLTRADER_NATS_REGIONS=large` for more bots and longer phases by hand.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nats_nodes::{
    http, http_as, region_cmd, start_swarm, stop_swarm, AckWatch, Node, Swarm,
};
use nats::testing::TestRegions;
use serde_json::{json, Value};
use sim::galaxy::Galaxy;

/// The link's one-way delay.
const DELAY_MS: u64 = 20;
/// How long the regions may take to serve every system.
const WHOLE_WAIT: Duration = Duration::from_secs(90);
/// How long every jump may take to land once the link is healed.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

struct Size {
    bots: u64,
    calm_s: u64,
    cut_s: u64,
}

fn size() -> Size {
    match std::env::var("MLTRADER_NATS_REGIONS").as_deref() {
        Ok("large") => Size {
            bots: 40,
            calm_s: 20,
            cut_s: 20,
        },
        _ => Size {
            bots: 4,
            calm_s: 5,
            cut_s: 5,
        },
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A node's `/v1/status`: its systems, or None if it does not answer.
fn status(node: &Node) -> Option<Vec<Value>> {
    match http(&node.url(), "GET", "/v1/status", None) {
        Some((200, Value::Array(systems))) => Some(systems),
        _ => None,
    }
}

fn slugs(systems: &[Value]) -> Vec<String> {
    let mut s: Vec<String> = systems
        .iter()
        .filter_map(|s| s["slug"].as_str().map(str::to_string))
        .collect();
    s.sort();
    s
}

fn sum(systems: &[Value], field: &str) -> u64 {
    systems.iter().filter_map(|s| s[field].as_u64()).sum()
}

/// One request as the player of `token`: (status, body as JSON); (0, Null) without an answer.
fn call(base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    http_as(base, method, path, Some(token), body.as_ref()).unwrap_or((0, Value::Null))
}

fn tails(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("{}:\n{}", n.name, n.tail(20)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn two_regions_play_across_a_delayed_link_that_is_cut_and_healed() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "two regions") else {
        return;
    };
    let size = size();
    let dir = tempfile::tempdir().unwrap();
    let mut regions = TestRegions::start(exe, &["eu", "us"], 1, DELAY_MS);
    let galaxy = Galaxy::default_galaxy();
    let homed = |region: &str| {
        let mut s: Vec<String> = galaxy
            .ids()
            .filter(|&id| galaxy.region_of(id) == Some(region))
            .map(|id| galaxy.slug(id).to_string())
            .collect();
        s.sort();
        s
    };
    let mut nodes = vec![
        Node::in_region(&regions, "eu", "eu1", dir.path()),
        Node::in_region(&regions, "us", "us1", dir.path()),
    ];
    for n in &mut nodes {
        n.start();
    }

    // Each region serves its own systems, and only those.
    let started = Instant::now();
    loop {
        let served: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| status(n).map(|s| slugs(&s)).unwrap_or_default())
            .collect();
        if served[0] == homed("eu") && served[1] == homed("us") {
            break;
        }
        assert!(
            started.elapsed() < WHOLE_WAIT,
            "after {WHOLE_WAIT:?}: eu1 serves {:?}, us1 {:?}\n{}",
            served[0],
            served[1],
            tails(&nodes)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "regions: every system served {:?} after the start",
        started.elapsed()
    );

    // A player joins through us (his home is in eu) and jumps across the regions.
    let (eu, us) = (nodes[0].url(), nodes[1].url());
    let (code, joined) = http(&us, "POST", "/v1/join", Some(&json!({"name": "ann"})))
        .expect("an answer to the join");
    assert_eq!(code, 201, "join through us: {joined}\n{}", tails(&nodes));
    let token = joined["token"].as_str().expect("a token").to_string();
    let mut commits = Vec::new();
    for (through, to) in [
        (&eu, "Alpha Centauri"),
        (&us, "Sol"),
        (&us, "Alpha Centauri"),
    ] {
        let sent = Instant::now();
        let (code, body) = call(
            through,
            "POST",
            "/v1/travel",
            &token,
            Some(json!({"to": to})),
        );
        commits.push(sent.elapsed());
        assert_eq!(code, 200, "travel to {to}: {body}\n{}", tails(&nodes));
        let landed = Instant::now();
        loop {
            let (_, me) = call(through, "GET", "/v1/me", &token, None);
            if me["system"] == to && me["jumping"].is_null() {
                break;
            }
            assert!(
                landed.elapsed() < SETTLE_WAIT,
                "ann never landed in {to}: {me}\n{}",
                tails(&nodes)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!("regions: cross-region jump commits (one-way link delay {DELAY_MS} ms): {commits:?}");

    // Swarms through both regions; the link cut while they play, then healed.
    let acks = |k: usize| dir.path().join(format!("acks{k}.log"));
    let swarms: Vec<Swarm> = [(0usize, format!("{eu},{us}")), (1, format!("{us},{eu}"))]
        .into_iter()
        .map(|(k, urls)| start_swarm(&urls, size.bots, 31 + k as u64, &acks(k)))
        .collect();
    let watches: Vec<AckWatch> = (0..2).map(|k| AckWatch::start(acks(k))).collect();
    let count = |w: &[AckWatch]| w.iter().map(AckWatch::count).sum::<usize>();
    std::thread::sleep(Duration::from_secs(size.calm_s));
    let before_cut = count(&watches);
    regions.cut();
    let cut_at = Instant::now();
    std::thread::sleep(Duration::from_secs(size.cut_s));
    let during_cut = count(&watches) - before_cut;
    let cut_for = cut_at.elapsed();
    regions.heal();
    eprintln!(
        "regions: {during_cut} actions acknowledged in the {cut_for:?} the link was cut ({:.1}/s); {before_cut} before",
        during_cut as f64 / cut_for.as_secs_f64()
    );
    assert!(
        during_cut > 0,
        "no region acknowledged anything while the link was cut\n{}",
        tails(&nodes)
    );
    std::thread::sleep(Duration::from_secs(size.calm_s));
    let summaries: Vec<Value> = swarms.into_iter().map(stop_swarm).collect();
    eprintln!("regions: swarms said {summaries:?}");

    // Everything lands; then the regions hold every player once.
    let settle = Instant::now();
    let (population, statuses) = loop {
        let statuses: Vec<Vec<Value>> = nodes
            .iter()
            .map(|n| status(n).unwrap_or_default())
            .collect();
        let all: Vec<Value> = statuses.iter().flatten().cloned().collect();
        let moving = sum(&all, "departing") + sum(&all, "in_transit_towards");
        if moving == 0 && slugs(&all).len() == galaxy.len() {
            break (sum(&all, "population"), statuses);
        }
        assert!(
            settle.elapsed() < SETTLE_WAIT,
            "{moving} jumps still moving {SETTLE_WAIT:?} after the swarms stopped\n{}",
            tails(&nodes)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let players = 1 + size.bots * 2;
    assert_eq!(
        population,
        players,
        "the regions hold {population} players, {players} joined: eu {:?}\nus {:?}\n{}",
        statuses[0],
        statuses[1],
        tails(&nodes)
    );

    // The region us is lost once eu's copy has everything: promoted into eu, every player is
    // there once (nothing was acknowledged after the copy's last message).
    let copy_current = Instant::now();
    loop {
        let status = region_cmd(&regions, "eu", &["status", "--json"]);
        let lag: u64 = status
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["region"] == "us")
            .flat_map(|r| r["copies"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["lag_messages"].as_u64())
            .sum();
        if lag == 0 {
            break;
        }
        assert!(
            copy_current.elapsed() < SETTLE_WAIT,
            "eu's copy of us still lags {lag} messages: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    nodes[1].kill();
    regions.kill_region("us");
    let promoted_at = Instant::now();
    let points = region_cmd(&regions, "eu", &["promote", "us", "--into", "eu", "--json"]);
    let promote_took = promoted_at.elapsed();
    let all: Vec<String> = {
        let mut s: Vec<String> = galaxy.ids().map(|id| galaxy.slug(id).to_string()).collect();
        s.sort();
        s
    };
    let population = loop {
        let served = status(&nodes[0]).unwrap_or_default();
        let moving = sum(&served, "departing") + sum(&served, "in_transit_towards");
        if slugs(&served) == all && moving == 0 {
            break sum(&served, "population");
        }
        assert!(
            promoted_at.elapsed() < WHOLE_WAIT,
            "eu1 serves {:?} {WHOLE_WAIT:?} after the promotion ({moving} moving); promote said {points}\n{}",
            slugs(&served),
            tails(&nodes)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "regions: promotion of us into eu took {promote_took:?}; eu1 served every system {:?} after it",
        promoted_at.elapsed()
    );
    assert_eq!(
        population,
        players,
        "after the promotion eu holds {population} players, {players} joined; promote said {points}\n{}",
        tails(&nodes)
    );
    nodes[0].stop();
}
