//! Instances: a crowd moves into one system and back out. The system splits into instances as
//! it fills and merges back to one as it empties; players fighting each other are moved
//! together; and the logs prove every invariant of the mesh throughout (`audit`, the code behind
//! `mltrader check`), across instances retired on the way.
//!
//! Two runs: on the embedded mesh (the library, as `mltrader serve` runs it), and against a real
//! `mltrader serve` SIGKILLed while it splits and merges.
//!
//! Size: `MLTRADER_INSTANCES=large cargo test --release --test instances -- --nocapture` for a
//! larger run by hand (default: small, for CI, the whole file in well under a minute).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh::audit::audit;
use mesh::codec::decode_event;
use mesh::directory::Place;
use mesh::feed::FeedEventKind;
use mesh::instances::{groups, InstancePolicy};
use mesh::{Mesh, MeshConfig};
use serde_json::{json, Value};
use sim::galaxy::{Galaxy, SystemId};
use sim::goods::Good;
use sim::instance::InstanceId;
use sim::market::{Order, Side};
use sim::system::{Event, SystemState};
use store::datadir::DataDir;
use store::record::parse_line;

struct Size {
    players: usize,
    /// Players 0..fighters fight in pairs (2k against 2k+1).
    fighters: usize,
    /// SIGKILLs of the real server while it splits and merges.
    kills: usize,
}

fn size() -> Size {
    match std::env::var("MLTRADER_INSTANCES").as_deref() {
        Ok("large") => Size {
            players: 2_000,
            fighters: 1_600,
            kills: 10,
        },
        _ => Size {
            players: 500,
            fighters: 400,
            kills: 3,
        },
    }
}

/// Room for every player at 25 an instance, and some.
fn policy() -> InstancePolicy {
    InstancePolicy {
        split_above_players: 50,
        merge_below_players: 10,
        cooldown_ms: 300,
        max_instances: u16::try_from(size().players / 25 + 8).unwrap(),
    }
}

fn config() -> MeshConfig {
    // 20 ticks a second: a fight lasts about half a second (a ship takes ~9 hits).
    let mut config = MeshConfig {
        tick_hz: 20,
        instances: policy(),
        ..MeshConfig::default()
    };
    config.rules.ticks_per_ly = 1;
    config.rules.starting_fuel = 1_000_000;
    config.rules.fuel_capacity = 1_000_000;
    config
}

fn name(i: usize) -> String {
    format!("p{i:04}")
}

/// Waits until `done` or panics after `secs`.
async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keeps the fighter pairs fighting: whenever both of a pair are in the same instance, both
/// engage the other (a fight ends when a ship is shot down; at home the pilot respawns in
/// place, and the pair takes up the fight again). One task a pair.
async fn keep_fighting(mesh: Mesh, fighters: usize, stop: Arc<AtomicBool>) {
    let mut pairs = tokio::task::JoinSet::new();
    for k in 0..fighters / 2 {
        let (mesh, stop) = (mesh.clone(), stop.clone());
        pairs.spawn(async move {
            let (a, b) = (name(2 * k), name(2 * k + 1));
            while !stop.load(Ordering::Relaxed) {
                if let (Some(Place::In(x)), Some(Place::In(y))) = (mesh.place(&a), mesh.place(&b)) {
                    if x == y {
                        let _ = mesh.engage(&a, Some(&b)).await;
                        let _ = mesh.engage(&b, Some(&a)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    pairs.join_all().await;
}

/// Every move out of the primary of `system` took whole groups: for each run of moves (the
/// policy moves in runs, within one tick), every player moved had all the players they were
/// fighting (transitively, as the primary's state said just before the run) moved with them,
/// to the same instance. Returns how many groups of two or more were moved.
fn groups_moved_whole(data: &Path, galaxy: &Galaxy, system: SystemId) -> usize {
    let at = InstanceId::primary(system);
    let bytes = std::fs::read(
        data.join("systems")
            .join(format!("{}.log", galaxy.slug(system))),
    )
    .expect("the primary's log");
    let mut state = SystemState::new(galaxy, system);
    let mut run: BTreeMap<String, InstanceId> = BTreeMap::new();
    let mut before: Vec<Vec<String>> = Vec::new();
    let mut fights_moved = 0;
    let mut check_run = |run: &mut BTreeMap<String, InstanceId>, before: &[Vec<String>]| {
        for group in before {
            let dests: BTreeSet<Option<&InstanceId>> = group.iter().map(|n| run.get(n)).collect();
            if group.iter().any(|n| run.contains_key(n)) {
                assert_eq!(
                    dests.len(),
                    1,
                    "group {group:?} was split by a move: {dests:?}"
                );
                if group.len() > 1 {
                    fights_moved += 1;
                }
            }
        }
        run.clear();
    };
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let rec = parse_line(line).expect("a sound record");
        let (t, event) = decode_event(galaxy, at, &rec).expect("an event");
        let is_move = matches!(&event, Event::Depart { to, .. } if to.system == system);
        if is_move && run.is_empty() {
            before = groups(&state);
        }
        if !is_move && !run.is_empty() {
            check_run(&mut run, &before);
        }
        if let Event::Depart { player, to, .. } = &event {
            if is_move {
                run.insert(player.clone(), *to);
            }
        }
        state.apply(t, &event).expect("the log replays");
    }
    check_run(&mut run, &before);
    fights_moved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_splits_a_system_into_instances_and_merges_back_with_groups_kept_together() {
    let size = size();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    let galaxy = Galaxy::default_galaxy();
    let sol = galaxy.home();
    let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config())
        .await
        .unwrap();

    // The instance count of Sol, sampled as it goes.
    let counts = Arc::new(Mutex::new(Vec::<usize>::new()));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (mesh, counts, stop) = (mesh.clone(), counts.clone(), stop_sampling.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = 1 + mesh.instances_of(sol).len();
                counts.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Every player moved hears of it on the feed (the API streams it as `instanced`).
    let mut feed = mesh.events();
    let notices = tokio::spawn(async move {
        let mut moved = Vec::new();
        while let Ok(e) = feed.recv().await {
            if let FeedEventKind::Moved { notice, .. } = &e.kind {
                moved.push(notice.clone());
            }
        }
        moved
    });

    // Into Sol: the fighters first, a pair at a time, each pair taking up its fight as soon
    // as both are there (they split Sol already), then the crowd.
    let mut pairs = tokio::task::JoinSet::new();
    for chunk in (0..size.fighters / 2).collect::<Vec<_>>().chunks(10) {
        let (mesh, chunk) = (mesh.clone(), chunk.to_vec());
        pairs.spawn(async move {
            for k in chunk {
                let (a, b) = (name(2 * k), name(2 * k + 1));
                mesh.join(&a, "k").await.unwrap();
                mesh.join(&b, "k").await.unwrap();
                // Either may have been moved away already: then they do not fight yet.
                let _ = mesh.engage(&a, Some(&b)).await;
                let _ = mesh.engage(&b, Some(&a)).await;
            }
        });
    }
    pairs.join_all().await;
    let stop_fighting = Arc::new(AtomicBool::new(false));
    let fight = tokio::spawn(keep_fighting(
        mesh.clone(),
        size.fighters,
        stop_fighting.clone(),
    ));
    let mut joins = tokio::task::JoinSet::new();
    for chunk in (size.fighters..size.players).collect::<Vec<_>>().chunks(50) {
        let (mesh, chunk) = (mesh.clone(), chunk.to_vec());
        joins.spawn(async move {
            for i in chunk {
                mesh.join(&name(i), "k").await.unwrap();
            }
        });
    }
    joins.join_all().await;
    let expected = size.players.div_ceil(policy().fill()) - 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = mesh.status().await.unwrap();
        let s = &status[sol.index()];
        if s.instances.len() + 1 >= expected / 2 && s.population <= policy().split_above_players {
            break status;
        }
        assert!(Instant::now() < deadline, "Sol did not split: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sol_status = &status[sol.index()];
    let everyone: usize = sol_status.population
        + sol_status
            .instances
            .iter()
            .map(|i| i.population)
            .sum::<usize>();
    assert!(everyone <= size.players);
    // Trades in every instance: one market for all of Sol (buy, then sell back).
    let mut trades = tokio::task::JoinSet::new();
    for chunk in (size.fighters..size.players).collect::<Vec<_>>().chunks(20) {
        let (mesh, chunk) = (mesh.clone(), chunk.to_vec());
        trades.spawn(async move {
            let mut in_instances = 0;
            for i in chunk {
                let in_instance =
                    matches!(mesh.place(&name(i)), Some(Place::In(at)) if !at.is_primary());
                let order = |side| Order {
                    side,
                    good: Good::Food,
                    qty: 2,
                    price_limit_cr: None,
                };
                let bought = mesh.trade(&name(i), order(Side::Buy)).await.unwrap();
                assert_eq!(bought.player.cargo.get(Good::Food), 2);
                let sold = mesh.trade(&name(i), order(Side::Sell)).await.unwrap();
                assert_eq!(sold.player.cargo.get(Good::Food), 0);
                in_instances += usize::from(in_instance);
            }
            in_instances
        });
    }
    let traded_in_instances: usize = trades.join_all().await.into_iter().sum();
    assert!(traded_in_instances > 0, "no one traded from an instance");
    // Let the fights go on across the split for a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_fighting.store(true, Ordering::Relaxed);
    fight.await.unwrap();

    // Back out: everyone jumps to a neighbour of Sol.
    let out = galaxy.neighbours(sol).to_vec();
    let mut jumps = tokio::task::JoinSet::new();
    for chunk in (0..size.players).collect::<Vec<_>>().chunks(50) {
        let (mesh, chunk, out) = (mesh.clone(), chunk.to_vec(), out.clone());
        jumps.spawn(async move {
            for i in chunk {
                let to = out[i % out.len()];
                // A ship shot down in the last fight is destroyed (and back) within a tick.
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match mesh.jump(&name(i), to).await {
                        Ok(_) => break,
                        Err(e) => assert!(Instant::now() < deadline, "{}: {e}", name(i)),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    jumps.join_all().await;
    until("Sol to merge back into one", 30, || {
        mesh.instances_of(sol).is_empty()
    })
    .await;
    stop_sampling.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    counts
        .lock()
        .unwrap()
        .push(1 + mesh.instances_of(sol).len());
    for i in 0..size.players {
        mesh.wait_landing(&name(i)).await.unwrap();
    }
    let live = mesh.stop().await.unwrap();
    drop(mesh);
    let notices = notices.await.unwrap();
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("Sol is crowded: you are now in Sol #")),
        "{:?}",
        notices.first()
    );

    // 1 -> many -> 1.
    let counts = counts.lock().unwrap().clone();
    let peak = counts.iter().copied().max().unwrap_or(0);
    assert_eq!(counts.first(), Some(&1), "{counts:?}");
    assert_eq!(counts.last(), Some(&1), "{counts:?}");
    assert!(
        peak >= expected / 2,
        "peak {peak} instances, {expected} expected"
    );

    // The logs prove it all: zero violations, across every instance, retired ones included.
    let report = audit(&datadir, &galaxy);
    assert!(report.ok(), "{:#?}", report.problems);
    assert_eq!(report.players, size.players as u64);
    assert!(report.trades >= 2 * (size.players - size.fighters) as u64);
    let remote = std::fs::read_to_string(dir.path().join("systems").join("sol.log"))
        .unwrap()
        .matches(" trade.remote ")
        .count();
    assert!(
        remote >= traded_in_instances,
        "{remote} trades of instances in Sol's log"
    );
    assert!(
        report.instances >= peak as u64 - 1,
        "{} instance logs",
        report.instances
    );
    for s in &live {
        assert_eq!(
            report.system_hashes.get(&s.shard),
            Some(&s.state_hash),
            "{} replays to another state",
            s.shard
        );
    }
    // Fighters moved whole.
    let fights = groups_moved_whole(dir.path(), &galaxy, sol);
    assert!(
        fights > 0,
        "no fighting group was moved: the test proves nothing"
    );
    println!(
        "instances: {} players, Sol peaked at {peak} instances, {fights} fighting groups moved \
         whole, {remote} trades through escrows, {} instance logs audited, {:.1} s",
        size.players,
        report.instances,
        started.elapsed().as_secs_f64()
    );
}

/// What the SIGKILL run's bots share: where the server is now.
struct Shared {
    url: std::sync::RwLock<String>,
    client: reqwest::Client,
}

impl Shared {
    fn url(&self) -> String {
        self.url.read().unwrap().clone()
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Option<(u16, Value)> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.url()))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Option<(u16, Value)> {
        let mut req = self.client.get(format!("{}{path}", self.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Sol's instances (the system itself first), if the server answers.
    async fn sol_instances(&self) -> Option<usize> {
        let (200, systems) = self.get("/v1/systems", None).await? else {
            return None;
        };
        let sol = systems.as_array()?.iter().find(|s| s["name"] == "Sol")?;
        Some(sol["instances"].as_array()?.len())
    }
}

/// Joins `name`; the token, or None when the answer was lost (a kill) after the join was
/// durable: that player exists but cannot be played.
async fn join_retrying(shared: &Shared, name: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match shared.post("/v1/join", None, json!({ "name": name })).await {
            Some((201, joined)) => return joined["token"].as_str().map(str::to_string),
            Some((409, e)) if e["error"]["code"] == "name_taken" => return None,
            _ => {}
        }
        assert!(Instant::now() < deadline, "{name} never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Leaves Sol for `to`: travels until the server says the player is elsewhere.
async fn leave_sol(shared: &Shared, token: &str, to: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, me)) = shared.get("/v1/me", Some(token)).await {
            if me["system"].is_string() && me["system"] != "Sol" {
                return;
            }
            if me["system"] == "Sol" {
                match shared
                    .post("/v1/travel", Some(token), json!({ "to": to }))
                    .await
                {
                    Some((200, _)) => return,
                    Some((409, e)) if e["error"]["code"] == "no_fuel" => {
                        let _ = shared.post("/v1/refuel", Some(token), json!({})).await;
                    }
                    _ => {}
                }
            }
        }
        assert!(Instant::now() < deadline, "a player never left Sol");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILLs the server, checks the directory as the crash left it, and starts it again.
async fn kill_and_restart(server: &mut Option<common::Server>, data: &Path, shared: &Shared) {
    server.take().expect("a server").kill();
    let out = common::check(data);
    assert!(
        out.status.success(),
        "check after a SIGKILL: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let data = data.to_path_buf();
    let restarted = tokio::task::spawn_blocking(move || {
        common::Server::start_with(Some(&data), &[], &server_args())
    })
    .await
    .unwrap();
    *shared.url.write().unwrap() = restarted.url().to_string();
    *server = Some(restarted);
}

/// The real server's flags: the policy's, with a short cool-down, and frequent snapshots and
/// checkpoints (so that recovery starts from them too).
fn server_args() -> Vec<&'static str> {
    let max = Box::leak(policy().max_instances.to_string().into_boxed_str());
    vec![
        "--tick-hz",
        "20",
        "--split-above",
        "50",
        "--merge-below",
        "10",
        "--instance-cooldown-ms",
        "300",
        "--max-instances",
        max,
        "--snapshot-every",
        "500",
        "--checkpoint-every-ms",
        "100",
    ]
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_and_merges_survive_sigkill() {
    let size = size();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Some(common::Server::start_with(Some(&data), &[], &server_args()));
    let shared = Arc::new(Shared {
        url: std::sync::RwLock::new(server.as_ref().unwrap().url().to_string()),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    });
    let (200, systems) = shared.get("/v1/systems", None).await.unwrap() else {
        panic!("no map");
    };
    let out: Vec<String> = systems
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Sol")
        .unwrap()["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();

    // Into Sol, while the server is killed as Sol splits.
    let mut joins = tokio::task::JoinSet::new();
    for chunk in (0..size.players).collect::<Vec<_>>().chunks(25) {
        let (shared, chunk) = (shared.clone(), chunk.to_vec());
        joins.spawn(async move {
            let mut tokens = Vec::new();
            for i in chunk {
                tokens.push(join_retrying(&shared, &name(i)).await);
            }
            tokens
        });
    }
    let mut kills = 0;
    let mut peak = 1;
    let split_kills = size.kills.div_ceil(2);
    while kills < split_kills {
        let n = shared.sol_instances().await.unwrap_or(0);
        peak = peak.max(n);
        if n >= 2 + kills {
            kill_and_restart(&mut server, &data, &shared).await;
            kills += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Sol never split"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let tokens: Vec<String> = joins
        .join_all()
        .await
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = shared.sol_instances().await.unwrap_or(0);
        peak = peak.max(n);
        if n >= size.players / policy().fill() / 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Sol split into {n} instances only"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // A player moved to an instance is told so, and their token works there as before.
    let mut told = None;
    for t in &tokens {
        if let Some((200, me)) = shared.get("/v1/me", Some(t)).await {
            if me["instance"].as_u64().is_some_and(|n| n > 1) {
                told = Some(me);
                break;
            }
        }
    }
    let me = told.expect("someone is in an instance of Sol");
    assert_eq!(me["system"], "Sol");
    let notice = me["notice"].as_str().unwrap();
    assert!(
        notice.starts_with("Sol is crowded: you are now in Sol #"),
        "{notice}"
    );
    assert_eq!(
        me["instance_name"].as_str().unwrap(),
        format!("Sol #{}", me["instance"])
    );

    // Back out, while the server is killed as Sol merges.
    let mut leaving = tokio::task::JoinSet::new();
    for (i, chunk) in tokens.chunks(25).enumerate() {
        let (shared, chunk) = (shared.clone(), chunk.to_vec());
        let to = out[i % out.len()].clone();
        leaving.spawn(async move {
            for t in chunk {
                leave_sol(&shared, &t, &to).await;
            }
        });
    }
    while kills < size.kills {
        let n = shared.sol_instances().await.unwrap_or(usize::MAX);
        // Each time Sol has fewer instances (and again once it is one).
        if n != usize::MAX && (n < peak || n == 1) {
            kill_and_restart(&mut server, &data, &shared).await;
            kills += 1;
            peak = n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "Sol never merged"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    leaving.join_all().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.sol_instances().await != Some(1) {
        assert!(Instant::now() < deadline, "Sol did not merge back into one");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let status = server.take().unwrap().stop();
    assert!(status.success(), "a clean stop: {status}");

    let out = common::mltrader()
        .args(["check", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert!(out.status.success(), "check: {}", report["problems"]);
    assert_eq!(report["players"].as_u64(), Some(size.players as u64));
    assert!(report["instances"].as_u64().unwrap() >= 1);
    println!(
        "instances under SIGKILL: {} players ({} playable), {kills} kills, {} instance logs, \
         {:.1} s",
        size.players,
        tokens.len(),
        report["instances"],
        started.elapsed().as_secs_f64()
    );
}

/// Sol's instances and each one's population (the system itself first), if the server answers.
async fn sol_layout(shared: &Shared) -> Option<Vec<(u64, u64)>> {
    let (200, systems) = shared.get("/v1/systems", None).await? else {
        return None;
    };
    let sol = systems.as_array()?.iter().find(|s| s["name"] == "Sol")?;
    let instances = sol["instances"].as_array()?;
    let pair = |i: &Value| Some((i["instance"].as_u64()?, i["population"].as_u64()?));
    instances.iter().map(pair).collect()
}

/// Which instance of Sol each player is in, by token.
async fn sol_places(shared: &Shared, tokens: &[String]) -> Vec<Option<u64>> {
    let mut places = Vec::with_capacity(tokens.len());
    for t in tokens {
        let me = match shared.get("/v1/me", Some(t)).await {
            Some((200, me)) => me,
            other => panic!("/v1/me: {other:?}"),
        };
        places.push(me["instance"].as_u64());
    }
    places
}

/// Recovery keeps the instance layout it found. Sol, capped at 5 instances, holds 250 players:
/// 4 instances of 25 and 150 left in the primary. After a SIGKILL and a restart, the same 4
/// instances hold the same 25 each, and every player is in the same instance as before (the
/// primary used to take its recovered instances for empty at its first tick, and filled each
/// with 25 more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_keeps_the_instance_layout() {
    const PLAYERS: usize = 250;
    let args = [
        "--tick-hz",
        "20",
        "--split-above",
        "50",
        "--merge-below",
        "10",
        "--instance-cooldown-ms",
        "100",
        "--max-instances",
        "5",
        "--snapshot-every",
        "500",
        "--checkpoint-every-ms",
        "100",
    ];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = common::Server::start_with(Some(&data), &[], &args);
    let shared = Arc::new(Shared {
        url: std::sync::RwLock::new(server.url().to_string()),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    });
    let mut joins = tokio::task::JoinSet::new();
    for chunk in (0..PLAYERS).collect::<Vec<_>>().chunks(25) {
        let (shared, chunk) = (shared.clone(), chunk.to_vec());
        joins.spawn(async move {
            let mut tokens = Vec::new();
            for i in chunk {
                tokens.push(join_retrying(&shared, &name(i)).await.expect("joined once"));
            }
            tokens
        });
    }
    let tokens: Vec<String> = joins.join_all().await.into_iter().flatten().collect();
    let full = vec![(1, 150), (2, 25), (3, 25), (4, 25), (5, 25)];
    let deadline = Instant::now() + Duration::from_secs(60);
    while sol_layout(&shared).await.as_ref() != Some(&full) {
        assert!(
            Instant::now() < deadline,
            "Sol never reached {full:?}: {:?}",
            sol_layout(&shared).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = sol_places(&shared, &tokens).await;

    let mut server = Some(server);
    let out = {
        server.take().unwrap().kill();
        common::check(&data)
    };
    assert!(
        out.status.success(),
        "check after the SIGKILL: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let restarted = tokio::task::spawn_blocking({
        let (data, args) = (data.clone(), args.to_vec());
        move || common::Server::start_with(Some(&data), &[], &args)
    })
    .await
    .unwrap();
    *shared.url.write().unwrap() = restarted.url().to_string();
    server = Some(restarted);
    // 40 ticks (2 s): the primary has long planned (and, before, refilled its instances).
    for _ in 0..20 {
        let layout = sol_layout(&shared).await;
        assert_eq!(layout.as_ref(), Some(&full), "the layout after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = sol_places(&shared, &tokens).await;
    let moved: Vec<(usize, Option<u64>, Option<u64>)> = (0..PLAYERS)
        .filter(|&i| before[i] != after[i])
        .map(|i| (i, before[i], after[i]))
        .collect();
    assert!(moved.is_empty(), "players moved by the restart: {moved:?}");
    let status = server.take().unwrap().stop();
    assert!(status.success(), "a clean stop: {status}");
}
