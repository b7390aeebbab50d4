//! The jump storm: thousands of jumps by a thousand players against a real `mltrader serve`
//! process, SIGKILLed at random moments and restarted each time; afterwards `mltrader check`
//! must find zero violations (conservation of credits and goods included), every jump the
//! server acknowledged must be in the transition log and must have landed exactly where it was
//! going, and every trade it acknowledged must be in a system log (a crash cannot split a
//! trade: credits, cargo and stock change in one record).
//!
//! Size: `MLTRADER_STORM=large cargo test --release --test storm -- --nocapture` for a much
//! larger run by hand (default: small, for CI).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use store::record::parse_line;

struct Size {
    players: usize,
    jumps: u64,
    kills: usize,
    workers: usize,
}

fn size() -> Size {
    match std::env::var("MLTRADER_STORM").as_deref() {
        Ok("large") => Size {
            players: 5_000,
            jumps: 100_000,
            kills: 100,
            workers: 128,
        },
        _ => Size {
            players: 1_000,
            jumps: 10_000,
            kills: 20,
            workers: 48,
        },
    }
}

/// A running `mltrader serve`.
struct Server {
    child: Child,
    url: String,
    /// The last lines the server wrote to stderr (each is also echoed), for a failure message.
    stderr: Arc<Mutex<Vec<String>>>,
    /// Reads stderr until the process is gone.
    stderr_reader: std::thread::JoinHandle<()>,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mltrader"))
            .args(["serve", "--listen", "127.0.0.1:0", "--tick-hz", "100"])
            .args(["--ticks-per-ly", "1", "--snapshot-every", "2000"])
            .args(["--checkpoint-every-ms", "100", "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mltrader serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let errors = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let stderr_reader = std::thread::spawn({
            let stderr = stderr.clone();
            move || {
                for line in errors.map_while(Result::ok) {
                    eprintln!("{line}");
                    let mut last = stderr.lock().unwrap();
                    if last.len() == 20 {
                        last.remove(0);
                    }
                    last.push(line);
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.expect("read server output");
            if line.contains("recovered") {
                eprintln!("storm: {line}");
            }
            if let Some(rest) = line.split(" on http://").nth(1) {
                url = Some(format!(
                    "http://{}",
                    rest.split_whitespace().next().unwrap()
                ));
                break;
            }
        }
        // Keep draining, so the server never blocks on a full pipe; show what each recovery
        // settled (completed, cancelled, voided jumps) with --nocapture.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("recovered") {
                    eprintln!("storm: {line}");
                }
            }
        });
        Server {
            child,
            url: url.expect("server printed its address"),
            stderr,
            stderr_reader,
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    fn stop(mut self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the server we spawned; it touches no memory.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        let status = self.child.wait().expect("reap");
        self.stderr_reader.join().expect("stderr reader");
        assert!(
            status.success(),
            "graceful stop exits 0, got {status}; the server's last lines on stderr:\n{}",
            self.stderr.lock().unwrap().join("\n")
        );
    }
}

struct Bot {
    name: String,
    token: String,
    /// System name, None while in a jump.
    system: Option<String>,
    fuel: u64,
    /// Food in the hold, as last told by the server.
    food: u64,
    rng: u64,
}

impl Bot {
    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

/// A jump the server acknowledged.
#[derive(Clone, Debug)]
struct Acked {
    xfer: String,
    player: String,
    to: String,
}

/// A trade the server acknowledged: the player's version after it.
#[derive(Clone, Debug)]
struct AckedTrade {
    player: String,
    version: u64,
    side: String,
}

struct Shared {
    url: RwLock<String>,
    acked: Mutex<Vec<Acked>>,
    trades: Mutex<Vec<AckedTrade>>,
    acked_count: AtomicU64,
    done: AtomicBool,
    neighbours: HashMap<String, Vec<String>>,
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Result<(u16, Value), reqwest::Error> {
    let mut req = client.post(format!("{url}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    token: &str,
) -> Result<(u16, Value), reqwest::Error> {
    let resp = client
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// One step of one bot. Network errors (the server is being killed) are just retried later.
async fn step(client: &reqwest::Client, shared: &Shared, bot: &mut Bot) {
    let url = shared.url.read().unwrap().clone();
    let Some(here) = bot.system.clone() else {
        if let Ok((200, me)) = get(client, &url, "/v1/me", &bot.token).await {
            bot.system = me["system"].as_str().map(str::to_string);
            if let Some(f) = me["player"]["fuel"].as_u64() {
                bot.fuel = f;
            }
            bot.food = me["player"]["cargo"]["food"].as_u64().unwrap_or(0);
        }
        return;
    };
    // A third of the steps trade food: buy a few units, or sell what the hold has.
    if bot.next_rand().is_multiple_of(3) {
        let (side, qty) = match bot.food {
            0 => ("buy", 1 + bot.next_rand() % 3),
            n => ("sell", n),
        };
        let body = json!({"side": side, "good": "food", "qty": qty});
        match post(client, &url, "/v1/trade", Some(&bot.token), body).await {
            Ok((200, ack)) => {
                let player = &ack["player"];
                shared.trades.lock().unwrap().push(AckedTrade {
                    player: bot.name.clone(),
                    version: player["version"].as_u64().expect("version in a trade ack"),
                    side: side.to_string(),
                });
                bot.food = player["cargo"]["food"].as_u64().unwrap_or(0);
            }
            // Refused (e.g. no stock) or unknown: ask where the bot is and what it holds.
            _ => bot.system = None,
        }
        return;
    }
    if bot.fuel < 10 {
        if let Ok((200, p)) = post(client, &url, "/v1/refuel", Some(&bot.token), json!({})).await {
            bot.fuel = p["fuel"].as_u64().unwrap_or(0);
        }
        return;
    }
    let options = &shared.neighbours[&here];
    let to = options[(bot.next_rand() % options.len() as u64) as usize].clone();
    let body = json!({"to": to});
    match post(client, &url, "/v1/travel", Some(&bot.token), body).await {
        Ok((200, ack)) => {
            let xfer = ack["xfer"].as_str().expect("xfer in ack").to_string();
            shared.acked.lock().unwrap().push(Acked {
                xfer,
                player: bot.name.clone(),
                to,
            });
            shared.acked_count.fetch_add(1, Ordering::Relaxed);
            bot.system = None;
        }
        Ok((409, err)) => match err["error"]["code"].as_str() {
            Some("no_fuel") => bot.fuel = 0,
            // Where the bot is is unclear (e.g. a jump cancelled by recovery): ask.
            _ => bot.system = None,
        },
        // Server gone mid-request, or 5xx while stopping: the outcome is unknown; ask later.
        _ => bot.system = None,
    }
}

fn read_records(path: &Path) -> Vec<(String, HashMap<String, String>)> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .split_inclusive(|b| *b == b'\n')
        .filter_map(|line| parse_line(line).ok())
        .map(|r| {
            let fields = r
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (r.kind.to_string(), fields)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_jumps_survive_sigkill_storms() {
    let size = size();
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    if std::env::var_os("MLTRADER_STORM_KEEP").is_some() {
        // To look at the logs after a failure, by hand.
        eprintln!("storm: data directory {} is kept", data.display());
        std::mem::forget(dir);
    }
    let started = Instant::now();

    let server = Server::start(&data);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(size.workers)
        .build()
        .unwrap();
    let systems: Value = client
        .get(format!("{}/v1/systems", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let neighbours: HashMap<String, Vec<String>> = systems
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let n = s["neighbours"].as_array().unwrap();
            (
                s["name"].as_str().unwrap().to_string(),
                n.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect();

    // Join everyone before the storm (each join acknowledged = durable).
    let mut bots = Vec::new();
    for i in 0..size.players {
        let name = format!("pilot {i}");
        let (status, joined) = post(
            &client,
            &server.url,
            "/v1/join",
            None,
            json!({"name": name}),
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{joined}");
        bots.push(Bot {
            name,
            token: joined["token"].as_str().unwrap().to_string(),
            system: Some("Sol".into()),
            fuel: joined["player"]["fuel"].as_u64().unwrap(),
            food: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
        });
    }

    let shared = Arc::new(Shared {
        url: RwLock::new(server.url.clone()),
        acked: Mutex::new(Vec::new()),
        trades: Mutex::new(Vec::new()),
        acked_count: AtomicU64::new(0),
        done: AtomicBool::new(false),
        neighbours,
    });
    let mut groups: Vec<Vec<Bot>> = (0..size.workers).map(|_| Vec::new()).collect();
    for (i, b) in bots.into_iter().enumerate() {
        groups[i % size.workers].push(b);
    }
    let mut workers = Vec::new();
    for mut group in groups {
        let shared = shared.clone();
        let client = client.clone();
        workers.push(tokio::spawn(async move {
            while !shared.done.load(Ordering::Relaxed) {
                for bot in group.iter_mut() {
                    step(&client, &shared, bot).await;
                }
                if group.iter().all(|b| b.system.is_none()) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            group
        }));
    }

    // The storm: kill and restart at random moments until enough jumps are acknowledged.
    let mut server = server;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut kills = 0;
    let per_kill = size.jumps / size.kills as u64;
    while kills < size.kills || shared.acked_count.load(Ordering::Relaxed) < size.jumps {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let target = shared.acked_count.load(Ordering::Relaxed) + per_kill / 2 + rng % per_kill;
        let wait_from = Instant::now();
        while shared.acked_count.load(Ordering::Relaxed) < target
            && wait_from.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if kills < size.kills {
            server.kill();
            kills += 1;
            // The directory as the crash left it, before recovery touches it, is sound.
            let out = Command::new(env!("CARGO_BIN_EXE_mltrader"))
                .args(["check", "--data"])
                .arg(&data)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "check after SIGKILL {kills}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            server = tokio::task::spawn_blocking({
                let data = data.clone();
                move || Server::start(&data)
            })
            .await
            .unwrap();
            *shared.url.write().unwrap() = server.url.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "storm too slow: {} acked after {kills} kills",
            shared.acked_count.load(Ordering::Relaxed)
        );
    }
    shared.done.store(true, Ordering::Relaxed);
    let mut bots: Vec<Bot> = Vec::new();
    for w in workers {
        bots.extend(w.await.unwrap());
    }

    // Let every jump in flight land, then stop cleanly.
    let deadline = Instant::now() + Duration::from_secs(60);
    for bot in bots.iter_mut() {
        while bot.system.is_none() {
            assert!(Instant::now() < deadline, "'{}' never landed", bot.name);
            step(&client, &shared, bot).await;
            if bot.system.is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();

    // 1. The auditor finds nothing wrong.
    let out = Command::new(env!("CARGO_BIN_EXE_mltrader"))
        .args(["check", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).expect("check --json output");
    assert!(out.status.success(), "check failed: {}", report["problems"]);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
    assert_eq!(report["players"].as_u64().unwrap(), size.players as u64);
    assert_eq!(report["jumps_in_flight"].as_u64().unwrap(), 0);
    let behind: Vec<&Value> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n.as_str().unwrap_or("").contains("behind"))
        .collect();
    assert!(
        behind.is_empty(),
        "player logs behind after a clean stop: {behind:?}"
    );

    // 2. Every acknowledged jump is committed, and landed where it was going, exactly once.
    let acked = shared.acked.lock().unwrap().clone();
    let committed: HashMap<String, (String, String)> = read_records(&data.join("transitions.log"))
        .into_iter()
        .filter(|(k, _)| k == "jump")
        .map(|(_, f)| (f["xfer"].clone(), (f["player"].clone(), f["to"].clone())))
        .collect();
    let mut landed: HashMap<String, String> = HashMap::new();
    for entry in std::fs::read_dir(data.join("systems")).unwrap() {
        let path = entry.unwrap().path();
        let slug = path.file_stem().unwrap().to_str().unwrap().to_string();
        for (kind, f) in read_records(&path) {
            if kind == "arrive" {
                let previous = landed.insert(f["xfer"].clone(), slug.clone());
                assert!(previous.is_none(), "jump {} landed twice", f["xfer"]);
            }
        }
    }
    let slugs: HashMap<String, String> = systems
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["slug"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut seen = HashSet::new();
    for a in &acked {
        assert!(
            seen.insert(a.xfer.clone()),
            "jump {} acknowledged twice",
            a.xfer
        );
        let (player, to) = committed
            .get(&a.xfer)
            .unwrap_or_else(|| panic!("acknowledged jump {} is not in the transition log", a.xfer));
        assert_eq!(player, &a.player);
        assert_eq!(to, &slugs[&a.to]);
        assert_eq!(
            landed.get(&a.xfer),
            Some(&slugs[&a.to]),
            "jump {} did not land",
            a.xfer
        );
    }
    // 3. Every acknowledged trade is in a system log, as that player's event of that version.
    let mut trade_records: HashSet<(String, u64, String)> = HashSet::new();
    for entry in std::fs::read_dir(data.join("systems")).unwrap() {
        // A trade in an instance of a crowded system is an escrow settled at the system's
        // one market (docs/PROTOCOL.md): its ack carries the settlement's version.
        let mut escrow_sides: HashMap<String, String> = HashMap::new();
        for (kind, f) in read_records(&entry.unwrap().path()) {
            match kind.as_str() {
                "trade" => {
                    let v = f["v"].parse().unwrap();
                    trade_records.insert((f["player"].clone(), v, f["side"].clone()));
                }
                "trade.escrow" => {
                    escrow_sides.insert(f["escrow"].clone(), f["side"].clone());
                }
                "trade.settle" => {
                    let v = f["v"].parse().unwrap();
                    let side = escrow_sides[&f["escrow"]].clone();
                    trade_records.insert((f["player"].clone(), v, side));
                }
                _ => {}
            }
        }
    }
    let trades = shared.trades.lock().unwrap().clone();
    for t in &trades {
        assert!(
            trade_records.contains(&(t.player.clone(), t.version, t.side.clone())),
            "acknowledged trade of {} (version {}) is not in the logs",
            t.player,
            t.version
        );
    }
    assert!(!trades.is_empty(), "the bots traded");
    println!(
        "storm: {} players, {} acknowledged jumps ({} committed in all), {} acknowledged trades, {kills} SIGKILLs, {:.1} s",
        size.players,
        acked.len(),
        committed.len(),
        trades.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(acked.len() as u64 >= size.jumps);
}
