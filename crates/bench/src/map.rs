//! `mltrader-bench map`: the cost of the operator's map on a busy server. One `mltrader serve
//! --demo` (its bots keep the galaxy busy) on a scratch data directory, and this process's own
//! players jumping and asking through the API as fast as they can; the run alternates windows
//! without and with open map pages (each page: `GET /v1/map` once, then its live stream
//! `GET /v1/map/stream` read to the end, as a browser's EventSource does), A, B, A, B, ..., and
//! reports the API requests and jumps per second of each kind of window, their difference, and
//! the bytes per second the stream sent each page.
//!
//! Owns its scratch directory and the server process; never touches another data directory.
//! Time to first paint needs a browser: tests/map_browser.rs prints it.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};

use super::{int, scratch_dir, Size};

#[derive(Args, Debug)]
pub struct MapArgs {
    /// Run size: `small` runs 2 rounds of 5 s windows, `large` 5 rounds of 20 s.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Map pages open in the windows with pages.
    #[arg(long, default_value_t = 10)]
    pub pages: usize,
    /// Players of this process jumping through the API.
    #[arg(long, default_value_t = 32)]
    pub players: usize,
    /// Bots of the server's own demo swarm.
    #[arg(long, default_value_t = 50)]
    pub bots: u64,
    /// Where to put the scratch data directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Counts of one window.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    jumps: AtomicU64,
    stream_bytes: AtomicU64,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub fn run(args: MapArgs) -> anyhow::Result<ExitCode> {
    let (rounds, window_s) = match args.size {
        Size::Small => (2, 5.0),
        Size::Large => (5, 20.0),
    };
    let dir = scratch_dir(args.dir.as_deref(), "map")?;
    let exe = super::mltrader_exe()?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(&exe)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.join("data"))
        .args(["--tick-hz", "20", "--ticks-per-ly", "1", "--demo", "--bots"])
        .arg(args.bots.to_string())
        .env("MLTRADER_TOKEN_RATE", "off")
        .env("MLTRADER_JOIN_RATE", "off")
        .env("MLTRADER_IP_RATE", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start mltrader serve")?;
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(measure(&url, &args, rounds, window_s));
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    println!(
        "bench map: {} players jumping through the API, `serve --demo --bots {} --ticks-per-ly 1`, {} rounds of {window_s} s windows without and with {} map pages (A/B alternating); {} build",
        args.players,
        args.bots,
        rounds,
        args.pages,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    for kind in ["without", "with"] {
        let k = &f[kind];
        println!(
            "  {kind:>7} pages: {} API requests/s, {} jumps/s",
            int(k["requests_per_s"].as_f64().unwrap_or(0.0)),
            int(k["jumps_per_s"].as_f64().unwrap_or(0.0)),
        );
    }
    println!(
        "  difference: API {:+.1}%, jumps {:+.1}%; the stream sent {} bytes/s to each page",
        f["requests_diff_pct"].as_f64().unwrap_or(0.0),
        f["jumps_diff_pct"].as_f64().unwrap_or(0.0),
        int(f["stream_bytes_per_s_per_page"].as_f64().unwrap_or(0.0)),
    );
    println!("{}", serde_json::to_string(&f)?);
    Ok(ExitCode::SUCCESS)
}

async fn measure(url: &str, args: &MapArgs, rounds: usize, window_s: f64) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    wait_up(&client, url).await?;
    let systems: Value = client
        .get(format!("{url}/v1/systems"))
        .send()
        .await?
        .json()
        .await?;
    let home = systems
        .as_array()
        .and_then(|s| s.iter().find(|s| s["home"] == true))
        .context("no home system")?
        .clone();
    let home_name = home["name"].as_str().unwrap_or_default().to_string();
    let away = home["neighbours"][0]
        .as_str()
        .context("home has no lane")?
        .to_string();

    let counts = Arc::new(Counts::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..args.players {
        let joined: Value = client
            .post(format!("{url}/v1/join"))
            .json(&json!({"name": format!("mapbench{i}")}))
            .send()
            .await?
            .json()
            .await?;
        let token = joined["token"]
            .as_str()
            .context("join gave no token")?
            .to_string();
        let (client, url, counts, measuring, stop) = (
            client.clone(),
            url.to_string(),
            counts.clone(),
            measuring.clone(),
            stop.clone(),
        );
        let (home_name, away) = (home_name.clone(), away.clone());
        workers.push(tokio::spawn(async move {
            let mut there = false;
            while !stop.load(Ordering::Relaxed) {
                let to = if there { &home_name } else { &away };
                let r = client
                    .post(format!("{url}/v1/travel"))
                    .bearer_auth(&token)
                    .json(&json!({"to": to, "wait": true}))
                    .send()
                    .await;
                let jumped = matches!(&r, Ok(r) if r.status().as_u16() == 200);
                if !jumped {
                    // Out of fuel or credits: a failed jump is no throughput; do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if jumped {
                    there = !there;
                }
                let refuel = client
                    .post(format!("{url}/v1/refuel"))
                    .bearer_auth(&token)
                    .json(&json!({}))
                    .send()
                    .await;
                let me = client
                    .get(format!("{url}/v1/me"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                if measuring.load(Ordering::Relaxed) {
                    // Answered with success (a refused refuel, a full tank, is an answer too).
                    let ok = |r: &reqwest::Result<reqwest::Response>| {
                        matches!(r, Ok(r) if r.status().as_u16() < 500)
                    };
                    let n = [ok(&r), ok(&refuel), ok(&me)].iter().filter(|x| **x).count() as u64;
                    counts.requests.fetch_add(n, Ordering::Relaxed);
                    counts.jumps.fetch_add(u64::from(jumped), Ordering::Relaxed);
                }
            }
        }));
    }
    // Warm up: every worker has jumped a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut totals = [(0u64, 0u64, 0.0f64), (0, 0, 0.0)];
    let mut page_bytes = 0u64;
    let mut page_seconds = 0.0;
    for round in 0..rounds {
        for with_pages in [false, true] {
            let pages_stop = Arc::new(AtomicBool::new(false));
            let mut pages = Vec::new();
            if with_pages {
                for _ in 0..args.pages {
                    pages.push(tokio::spawn(page(
                        client.clone(),
                        url.to_string(),
                        counts.clone(),
                        pages_stop.clone(),
                    )));
                }
                // The pages have loaded their state and opened their streams.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let before = (
                counts.requests.load(Ordering::Relaxed),
                counts.jumps.load(Ordering::Relaxed),
                counts.stream_bytes.load(Ordering::Relaxed),
            );
            measuring.store(true, Ordering::Relaxed);
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs_f64(window_s)).await;
            measuring.store(false, Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            let requests = counts.requests.load(Ordering::Relaxed) - before.0;
            let jumps = counts.jumps.load(Ordering::Relaxed) - before.1;
            let bytes = counts.stream_bytes.load(Ordering::Relaxed) - before.2;
            let t = &mut totals[usize::from(with_pages)];
            t.0 += requests;
            t.1 += jumps;
            t.2 += secs;
            if with_pages {
                page_bytes += bytes;
                page_seconds += secs;
            }
            eprintln!(
                "  round {} {} pages: {} requests, {jumps} jumps in {secs:.1} s",
                round + 1,
                if with_pages { "with" } else { "without" },
                requests
            );
            pages_stop.store(true, Ordering::Relaxed);
            for p in pages {
                p.abort();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    let rate = |t: (u64, u64, f64)| (t.0 as f64 / t.2, t.1 as f64 / t.2);
    let (req_a, jumps_a) = rate(totals[0]);
    let (req_b, jumps_b) = rate(totals[1]);
    let pct = |a: f64, b: f64| if a > 0.0 { (b - a) / a * 100.0 } else { 0.0 };
    Ok(json!({
        "pages": args.pages,
        "players": args.players,
        "bots": args.bots,
        "rounds": rounds,
        "window_s": window_s,
        "debug_build": cfg!(debug_assertions),
        "without": {"requests_per_s": req_a, "jumps_per_s": jumps_a},
        "with": {"requests_per_s": req_b, "jumps_per_s": jumps_b},
        "requests_diff_pct": pct(req_a, req_b),
        "jumps_diff_pct": pct(jumps_a, jumps_b),
        "stream_bytes_per_s_per_page": page_bytes as f64 / page_seconds.max(1e-9) / args.pages.max(1) as f64,
    }))
}

/// One open map page: its state once, then its stream, counting the bytes it receives.
async fn page(client: reqwest::Client, url: String, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    let _ = client.get(format!("{url}/v1/map")).send().await;
    let Ok(mut stream) = client
        .get(format!("{url}/v1/map/stream"))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
    else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        match stream.chunk().await {
            Ok(Some(bytes)) => {
                counts
                    .stream_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            _ => return,
        }
    }
}

async fn wait_up(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{url}/v1/status")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not start in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
