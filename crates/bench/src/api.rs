//! `mltrader-bench api`: requests per second and latency of the HTTP API over loopback, with
//! the server and its clients in this one process (an embedded mesh on a scratch data
//! directory, the real router, reqwest clients with keep-alive): a status call
//! (`GET /v1/me`) and a travel call (`POST /v1/travel`, answered at the jump's commit point:
//! durable in the transition log; the travel time itself is not in the figure).
//!
//! Clients and server share the machine's cores, so the figures are a floor for the server
//! alone. Rate limits stay on (every request goes through the limiter) with a limit too high to
//! refuse. The status call is measured on two servers of the same router, in alternated rounds:
//! `mltrader serve`'s accept loop (`net::server`: connection caps, header and body deadlines)
//! and plain `axum::serve` (none of them), so the cost of the limits is their ratio. Prints what
//! it measures; never asserts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::serve::ListenerExt;
use axum::Router;
use clap::Args;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};

use super::{percentile, scratch_dir, Size};
use mesh::{Mesh, MeshConfig};
use net::connections::{self, Admission, Caps};
use net::limits::Rate;
use net::server::Timeouts;
use net::{Api, NetConfig};
use sim::galaxy::Galaxy;
use store::datadir::DataDir;

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// Run size: `small` takes seconds, `large` measures longer.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Concurrent clients (each one keep-alive connection).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Where to put the scratch data directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Targets from the issue.
const TARGET_STATUS_PER_S: f64 = 50_000.0;
const TARGET_STATUS_P99_MS: f64 = 5.0;
/// Players each travel client jumps with, in turn (a player in a jump waits for its landing).
const PLAYERS_PER_TRAVEL_CLIENT: usize = 16;
/// Extra wait after a landing is due before a player jumps again.
const LANDING_SLACK_MS: u64 = 30;
/// Status rounds on each server (with the limits, without), alternated; the median round of
/// each is reported.
const LIMITS_ROUNDS: usize = 3;

pub fn run(args: ApiArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let seconds = match args.size {
        Size::Small => 3.0,
        Size::Large => 15.0,
    };
    let dir = scratch_dir(args.dir.as_deref(), "api")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(measure(&dir, args.clients, seconds));
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let num = |k: &str| f[k].as_f64().unwrap_or(0.0);
    println!(
        "bench api: {} clients, {seconds} s a phase, {cores} cores shared by server and clients, loopback HTTP/1.1 keep-alive",
        args.clients
    );
    println!(
        "  status  GET /v1/me        {:>9.0} req/s   p50 {:.2} ms   p99 {:.2} ms   ({} ok, {} errors)",
        num("status_per_s"),
        num("status_p50_ms"),
        num("status_p99_ms"),
        f["status_ok"],
        f["status_errors"]
    );
    println!(
        "          CPU {} µs a request (server and clients), {} cores busy",
        opt(&f["status_cpu_us_per_req"]),
        opt(&f["status_cores_busy"])
    );
    println!(
        "          target >= {TARGET_STATUS_PER_S:.0} req/s: {}   target p99 < {TARGET_STATUS_P99_MS} ms: {}",
        met(num("status_per_s") >= TARGET_STATUS_PER_S),
        met(num("status_p99_ms") < TARGET_STATUS_P99_MS)
    );
    println!(
        "  limits  GET /v1/me        {:>9.0} req/s   p99 {:.2} ms with them; {:.0} req/s   p99 {:.2} ms without (axum::serve): {:.3}x the throughput",
        num("status_per_s"),
        num("status_p99_ms"),
        num("status_plain_per_s"),
        num("status_plain_p99_ms"),
        num("limits_throughput_ratio"),
    );
    println!(
        "  travel  POST /v1/travel   {:>9.0} req/s   p50 {:.2} ms   p99 {:.2} ms   ({} committed, {} in_jump, {} errors; {} players)",
        num("travel_per_s"),
        num("travel_p50_ms"),
        num("travel_p99_ms"),
        f["travel_ok"],
        f["travel_in_jump"],
        f["travel_errors"],
        f["travel_players"]
    );
    println!(
        "          CPU {} µs a request (server, clients, logs), {} cores busy",
        opt(&f["travel_cpu_us_per_req"]),
        opt(&f["travel_cores_busy"])
    );
    println!("          a travel answer comes at the commit point (depart and jump durable); travel time excluded");
    Ok(ExitCode::SUCCESS)
}

fn opt(v: &Value) -> String {
    v.as_f64().map_or("?".into(), |x| format!("{x:.1}"))
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

async fn measure(dir: &std::path::Path, clients: usize, seconds: f64) -> anyhow::Result<Value> {
    let datadir = DataDir::at(dir.join("data"));
    let mut config = MeshConfig {
        tick_hz: 100,
        snapshot_every_records: 1_000_000,
        // One shard per system, as this benchmark measures (`bench instances` measures them).
        instances: mesh::instances::InstancePolicy::never(),
        ..MeshConfig::default()
    };
    // Tanks that never run dry: the travel figure is jumps, not refuels.
    config.rules.starting_fuel = u32::MAX / 2;
    config.rules.fuel_capacity = u32::MAX / 2;
    config.rules.ticks_per_ly = 1;
    let (mesh, _) = Mesh::start(datadir, Galaxy::default_galaxy(), config)
        .await
        .context("cannot start the mesh")?;
    let net = NetConfig {
        token_rate: Some(Rate {
            per_s: 1e9,
            burst: 1e9,
        }),
        join_rate: None,
        ..NetConfig::default()
    };
    let api = Api::build(mesh.clone(), net).await?;
    let (url, limited) = serve_limited(api.router.clone(), clients).await?;
    let (plain_url, plain) = serve_plain(api.router.clone()).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;

    eprintln!("joining {clients} players...");
    let tokens = join_all(&http, &url, "status", clients).await?;
    eprintln!("status: {clients} clients calling GET /v1/me for {seconds} s...");
    let mut with_limits = Vec::new();
    let mut without = Vec::new();
    for round in 1..=LIMITS_ROUNDS {
        eprintln!("  round {round}: with the limits, then without");
        with_limits.push(status_phase(&http, &url, tokens.clone(), seconds).await);
        without.push(status_phase(&http, &plain_url, tokens.clone(), seconds).await);
    }
    let status = median_round(with_limits);
    let status_plain = median_round(without);
    let players = clients * PLAYERS_PER_TRAVEL_CLIENT;
    eprintln!("joining {players} travellers...");
    let travellers = join_all(&http, &url, "traveller", players).await?;
    eprintln!("travel: {clients} clients calling POST /v1/travel for {seconds} s...");
    let travel = travel_phase(&http, &url, travellers, clients, seconds).await;

    api.stop_streams();
    limited.abort();
    plain.abort();
    mesh.stop().await.context("stopping the mesh")?;
    Ok(json!({
        "clients": clients,
        "seconds": seconds,
        "status_per_s": status.per_s,
        "status_p50_ms": status.p50_ms,
        "status_p99_ms": status.p99_ms,
        "status_ok": status.ok,
        "status_errors": status.errors,
        "status_plain_per_s": status_plain.per_s,
        "status_plain_p99_ms": status_plain.p99_ms,
        "limits_throughput_ratio": status.per_s / status_plain.per_s.max(f64::MIN_POSITIVE),
        "limits_p99_ratio": status.p99_ms / status_plain.p99_ms.max(f64::MIN_POSITIVE),
        "limits_rounds": LIMITS_ROUNDS,
        "travel_per_s": travel.per_s,
        "travel_p50_ms": travel.p50_ms,
        "travel_p99_ms": travel.p99_ms,
        "travel_ok": travel.ok,
        "travel_in_jump": travel.in_jump,
        "travel_errors": travel.errors,
        "travel_players": players,
        "status_cpu_us_per_req": status.cpu_us_per_req,
        "status_cores_busy": status.cores_busy,
        "travel_cpu_us_per_req": travel.cpu_us_per_req,
        "travel_cores_busy": travel.cores_busy,
        "target_status_per_s": TARGET_STATUS_PER_S,
        "target_status_p99_ms": TARGET_STATUS_P99_MS,
    }))
}

/// The router served as `mltrader serve` serves it (`net::server`: caps, header and body
/// deadlines), with the caps `serve` would set beside this bench's mesh and room for every
/// client's connection (and a pool's spare ones) from 127.0.0.1.
async fn serve_limited(
    router: Router,
    clients: usize,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let limit = mesh::projector::descriptor_limit();
    let systems = Galaxy::default_galaxy().len();
    let reserve = connections::mesh_reserve_files(limit, systems, 0);
    let caps = Caps {
        max_total: connections::max_connections(limit, reserve, None)?,
        max_per_ip: Some(2 * clients + connections::DEFAULT_MAX_CONNECTIONS_PER_IP),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let serving = net::server::serve(
        listener,
        router,
        Admission::new(caps),
        Timeouts::default(),
        std::future::pending(),
    );
    Ok((url, tokio::spawn(serving)))
}

/// The router served by plain `axum::serve` (no caps, no deadlines): the baseline of the
/// limits' cost.
async fn serve_plain(router: Router) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    // Answers leave at once (no Nagle delay behind the client's delayed ACK), as in net::server.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let serving = async move {
        let _ = axum::serve(listener, app).await;
    };
    Ok((url, tokio::spawn(serving)))
}

/// The round of median throughput.
fn median_round(mut rounds: Vec<Figures>) -> Figures {
    assert!(!rounds.is_empty(), "no rounds measured");
    rounds.sort_by(|a, b| a.per_s.total_cmp(&b.per_s));
    let middle = (rounds.len() - 1) / 2;
    rounds.swap_remove(middle)
}

/// Joins `n` players through the API (64 at a time); returns their tokens.
async fn join_all(
    http: &reqwest::Client,
    url: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let mut joins = Vec::new();
        for &i in chunk {
            let req = http
                .post(format!("{url}/v1/join"))
                .json(&json!({"name": format!("{prefix} {i}")}));
            joins.push(tokio::spawn(async move {
                let v: Value = req.send().await?.error_for_status()?.json().await?;
                anyhow::Ok(v["token"].as_str().unwrap_or_default().to_string())
            }));
        }
        for j in joins {
            tokens.push(j.await??);
        }
    }
    Ok(tokens)
}

/// An `Authorization: Bearer` value, built once per player.
fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

struct Figures {
    /// CPU time of the whole process (server and clients) per answered request, in µs.
    cpu_us_per_req: Option<f64>,
    /// Cores the process kept busy on average.
    cores_busy: Option<f64>,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ok: u64,
    in_jump: u64,
    errors: u64,
}

/// CPU seconds this process used so far (user + system), where the OS tells (Linux).
fn process_cpu_s() -> Option<f64> {
    /// Clock ticks per second of /proc/self/stat (USER_HZ, 100 on Linux).
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

fn figures(
    mut latencies_us: Vec<f64>,
    elapsed: Duration,
    cpu_s: Option<f64>,
    in_jump: u64,
    errors: u64,
) -> Figures {
    latencies_us.sort_by(f64::total_cmp);
    let answered = (latencies_us.len() as u64 + in_jump + errors).max(1) as f64;
    Figures {
        cpu_us_per_req: cpu_s.map(|c| c * 1e6 / answered),
        cores_busy: cpu_s.map(|c| c / elapsed.as_secs_f64()),
        per_s: latencies_us.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies_us, 50.0) / 1000.0,
        p99_ms: percentile(&latencies_us, 99.0) / 1000.0,
        ok: latencies_us.len() as u64,
        in_jump,
        errors,
    }
}

async fn status_phase(
    http: &reqwest::Client,
    url: &str,
    tokens: Vec<String>,
    seconds: f64,
) -> Figures {
    // Parsed once: the figure is the API's, not the client's URL parser's.
    let Ok(me) = reqwest::Url::parse(&format!("{url}/v1/me")) else {
        return figures(Vec::new(), Duration::from_secs(1), None, 0, 1);
    };
    let me = Arc::new(me);
    let tokens: Vec<HeaderValue> = tokens.iter().filter_map(|t| bearer(t)).collect();
    // Warm-up: open every connection.
    for t in &tokens {
        let _ = http
            .get(me.as_ref().clone())
            .header(AUTHORIZATION, t.clone())
            .send()
            .await;
    }
    let cpu_before = process_cpu_s();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for token in tokens {
        let (http, me) = (http.clone(), me.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(200_000);
            let mut errors = 0u64;
            while Instant::now() < until {
                let t0 = Instant::now();
                let req = http
                    .get(me.as_ref().clone())
                    .header(AUTHORIZATION, token.clone());
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        if r.bytes().await.is_ok() {
                            lat.push(t0.elapsed().as_secs_f64() * 1e6);
                        } else {
                            errors += 1;
                        }
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu_s().zip(cpu_before).map(|(a, b)| a - b);
    figures(all, elapsed, cpu, 0, errors)
}

/// Each client jumps its players in turn between Sol and Alpha Centauri, skipping those whose
/// landing is not due yet.
async fn travel_phase(
    http: &reqwest::Client,
    url: &str,
    tokens: Vec<String>,
    clients: usize,
    seconds: f64,
) -> Figures {
    let Ok(travel) = reqwest::Url::parse(&format!("{url}/v1/travel")) else {
        return figures(Vec::new(), Duration::from_secs(1), None, 0, 1);
    };
    let travel = Arc::new(travel);
    let cpu_before = process_cpu_s();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut groups: Vec<Vec<HeaderValue>> = vec![Vec::new(); clients];
    for (i, t) in tokens.into_iter().enumerate() {
        if let Some(t) = bearer(&t) {
            groups[i % clients].push(t);
        }
    }
    let mut tasks = Vec::new();
    for group in groups {
        let (http, travel) = (http.clone(), travel.clone());
        tasks.push(tokio::spawn(async move {
            // (token, in Sol?, when it may jump again)
            let mut players: Vec<(HeaderValue, bool, Instant)> = group
                .into_iter()
                .map(|t| (t, true, Instant::now()))
                .collect();
            let mut lat = Vec::new();
            let (mut in_jump, mut errors) = (0u64, 0u64);
            let mut next = 0;
            while Instant::now() < until {
                let now = Instant::now();
                let Some(i) = (0..players.len())
                    .map(|k| (next + k) % players.len())
                    .find(|&k| players[k].2 <= now)
                else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                next = i + 1;
                let (token, in_sol, ready) = &mut players[i];
                let to = if *in_sol { "Alpha Centauri" } else { "Sol" };
                let t0 = Instant::now();
                let answer = http
                    .post(travel.as_ref().clone())
                    .header(AUTHORIZATION, token.clone())
                    .json(&json!({"to": to}))
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        lat.push(t0.elapsed().as_secs_f64() * 1e6);
                        let travel_ms = v["travel_ms"].as_u64().unwrap_or(100);
                        *in_sol = !*in_sol;
                        *ready =
                            Instant::now() + Duration::from_millis(travel_ms + LANDING_SLACK_MS);
                    }
                    Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                        in_jump += 1;
                        *ready = Instant::now() + Duration::from_millis(LANDING_SLACK_MS);
                    }
                    _ => errors += 1,
                }
            }
            (lat, in_jump, errors)
        }));
    }
    let mut all = Vec::new();
    let (mut in_jump, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((lat, j, e)) = t.await {
            all.extend(lat);
            in_jump += j;
            errors += e;
        }
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu_s().zip(cpu_before).map(|(a, b)| a - b);
    figures(all, elapsed, cpu, in_jump, errors)
}
