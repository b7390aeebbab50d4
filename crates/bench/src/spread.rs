//! `mltrader-bench spread`: the figures of a galaxy spread over nodes (issue 19).
//!
//! For 1, 2, ... `--max-nodes` nodes in turn, on a new three-server cluster each time (loopback,
//! R3, sync always): starts that many `mltrader serve --nats --spread` nodes (the `mltrader`
//! binary next to this one), joins players through every node in turn, then for `--seconds`
//! has `--concurrency` workers make jumps to random neighbours through the nodes in turn (each
//! request forwarded by NATS when its entry node does not hold the player): durable jumps a
//! second, the commit latency (the `travel` answer, p50 and p99), the share of jumps whose two
//! systems run on different nodes, and the nodes' CPU time a jump. With the most nodes it then
//! measures: requests forwarded a second (`GET /v1/me` through a node that does not hold the
//! player, against through the one that does); a node killed (SIGKILL) until every system is
//! served again, and the units' own start times; the node started again until it has its share
//! back; a node leaving on purpose (SIGTERM) until every system is served without it.
//!
//! On two cores every node, server and client share the same CPUs: scaling figures are only
//! indicative. Prints every figure; never asserts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;

use super::takeover::{figure, join, Node};
use super::{mltrader_exe, percentile, scratch_dir};
use nats::testing::TestCluster;

#[derive(Args, Debug)]
pub struct SpreadArgs {
    /// Measure with 1, 2, ... this many nodes.
    #[arg(long, default_value_t = 3)]
    pub max_nodes: usize,
    /// Players who join (through every node in turn).
    #[arg(long, default_value_t = 120)]
    pub players: usize,
    /// Seconds of jumps for each count of nodes.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 24)]
    pub concurrency: usize,
    /// The lease of each unit and the members' period, in milliseconds (`serve --lease-ms`).
    #[arg(long, default_value_t = 5_000)]
    pub lease_ms: u64,
    /// The cluster's base port (clients BASE..BASE+2, routes +100, monitoring +200).
    #[arg(long, default_value_t = 47_222)]
    pub base_port: u16,
    /// Where to put the scratch directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The systems of the default galaxy.
const SYSTEMS: usize = 36;
/// How long the galaxy may take to be whole after a start or a fault.
const WHOLE_TIMEOUT_S: u64 = 120;

pub fn run(args: SpreadArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.max_nodes >= 1, "--max-nodes must be at least 1");
    let dir = scratch_dir(args.dir.as_deref(), "spread")?;
    let result = measure_all(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(ExitCode::SUCCESS)
}

fn measure_all(args: &SpreadArgs, dir: &Path) -> anyhow::Result<()> {
    let exe = mltrader_exe()?;
    let (rt, http) = super::load_runtime(args.concurrency)?;
    println!(
        "bench spread: {} players, {} s of jumps with {} in flight, lease {} ms; JetStream: 3 servers on loopback, R3, sync always; everything on this machine's cores",
        args.players, args.seconds, args.concurrency, args.lease_ms
    );
    for n in 1..=args.max_nodes {
        let run = dir.join(format!("nodes-{n}"));
        let cluster = TestCluster::start_in(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
            &run.join("cluster"),
            args.base_port,
            None,
        )?;
        let flags = vec![
            "--spread".to_string(),
            "--lease-ms".into(),
            args.lease_ms.to_string(),
        ];
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(Node::start(
                &exe,
                &cluster,
                &run,
                &format!("node-{i}"),
                &flags,
            )?);
        }
        let started = Instant::now();
        let owners = rt.block_on(whole(&http, &nodes, &[]))?;
        println!(
            "{n} node(s): every system served {:.1} s after the start",
            started.elapsed().as_secs_f64()
        );
        let galaxy = rt.block_on(lanes(&http, &nodes[0].url))?;
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        let mut tokens = Vec::new();
        for i in 0..args.players {
            tokens.push(rt.block_on(join(&http, &urls[i % n], &format!("Rider{i}")))?);
        }
        let cpu_before = cpu_ms(&nodes);
        let how = JumpLoad {
            seconds: args.seconds,
            concurrency: args.concurrency,
            through_owner: false,
            stay_with_owner: false,
        };
        let load = rt.block_on(jumps(&http, &urls, &tokens, &galaxy, &owners, how))?;
        let cpu = cpu_ms(&nodes) - cpu_before;
        let mut lat = load.latencies_ms.clone();
        lat.sort_by(f64::total_cmp);
        println!(
            "  jumps: {:.0}/s durable ({} in {:.1} s), commit p50 {:.1} ms p99 {:.1} ms, {:.0}% between systems of different nodes, nodes' CPU {:.2} ms a jump; {} refused or failed",
            load.done as f64 / load.seconds,
            load.done,
            load.seconds,
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            100.0 * load.crossed as f64 / load.done.max(1) as f64,
            cpu / load.done.max(1) as f64,
            load.failed
        );
        if n == args.max_nodes && n >= 2 {
            rt.block_on(forwarding(&http, &urls, &tokens, &owners, args))?;
            faults(&rt, &http, &exe, &cluster, &run, &flags, &mut nodes)?;
        }
        drop(nodes);
        drop(cluster);
    }
    Ok(())
}

/// Each system's slug and the slugs of its neighbours, by name.
pub(crate) struct Lanes {
    pub slug_of: BTreeMap<String, String>,
    pub neighbours: BTreeMap<String, Vec<String>>,
}

pub(crate) async fn lanes(http: &reqwest::Client, url: &str) -> anyhow::Result<Lanes> {
    let systems: Value = http
        .get(format!("{url}/v1/systems"))
        .send()
        .await?
        .json()
        .await?;
    let mut slug_of = BTreeMap::new();
    let mut neighbours = BTreeMap::new();
    for s in systems.as_array().context("systems: not a list")? {
        let name = s["name"].as_str().context("a system without a name")?;
        slug_of.insert(
            name.to_string(),
            s["slug"].as_str().unwrap_or("").to_string(),
        );
        let ns = s["neighbours"].as_array().context("no neighbours")?;
        let ns = ns.iter().filter_map(|v| v.as_str().map(String::from));
        neighbours.insert(name.to_string(), ns.collect());
    }
    Ok(Lanes {
        slug_of,
        neighbours,
    })
}

/// Waits until every system is served by the nodes (not those in `skip`): the node index
/// serving each system's slug.
pub(crate) async fn whole(
    http: &reqwest::Client,
    nodes: &[Node],
    skip: &[usize],
) -> anyhow::Result<BTreeMap<String, usize>> {
    let deadline = Instant::now() + Duration::from_secs(WHOLE_TIMEOUT_S);
    loop {
        let mut owners = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let Ok(resp) = http.get(format!("{}/v1/status", node.url)).send().await else {
                continue;
            };
            let Ok(Value::Array(systems)) = resp.json::<Value>().await else {
                continue;
            };
            for s in systems {
                if let Some(slug) = s["slug"].as_str() {
                    owners.insert(slug.to_string(), i);
                }
            }
        }
        if owners.len() == SYSTEMS {
            return Ok(owners);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {SYSTEMS} systems served after {WHOLE_TIMEOUT_S} s",
            owners.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a load of jumps did.
#[derive(Default, Clone)]
pub(crate) struct Load {
    pub done: u64,
    pub failed: u64,
    /// Jumps between systems of different owners (nodes, or regions).
    pub crossed: u64,
    pub seconds: f64,
    pub latencies_ms: Vec<f64>,
    /// Each durable jump: when its answer came, whether it crossed owners, its latency (ms).
    pub commits: Vec<(Instant, bool, f64)>,
}

/// How [`jumps`] loads the galaxy.
#[derive(Clone, Copy)]
pub(crate) struct JumpLoad {
    pub seconds: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Each request through the node of the player's system's owner (`owners` indexes
    /// `urls`), not through the nodes in turn.
    pub through_owner: bool,
    /// Only jumps between systems of the same owner (a region's own, while the link is cut).
    pub stay_with_owner: bool,
}

/// `concurrency` workers, each with its share of the players, jump to random neighbours for
/// `seconds`: a travel (its answer is the commit), then the landing waited for, through the
/// nodes in turn.
pub(crate) async fn jumps(
    http: &reqwest::Client,
    urls: &[String],
    tokens: &[String],
    galaxy: &Lanes,
    owners: &BTreeMap<String, usize>,
    how: JumpLoad,
) -> anyhow::Result<Load> {
    let load = Arc::new(Mutex::new(Load::default()));
    let until = Instant::now() + Duration::from_secs(how.seconds);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..how.concurrency {
        let mine: Vec<String> = tokens
            .iter()
            .skip(w)
            .step_by(how.concurrency)
            .cloned()
            .collect();
        let (http, urls, load, next) = (http.clone(), urls.to_vec(), load.clone(), next.clone());
        let neighbours = galaxy.neighbours.clone();
        let slug_of = galaxy.slug_of.clone();
        let owners = owners.clone();
        workers.push(tokio::spawn(async move {
            let mut at: BTreeMap<String, String> = BTreeMap::new();
            while Instant::now() < until && !mine.is_empty() {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                let token = &mine[k % mine.len()];
                let here = at.get(token).cloned().unwrap_or_else(|| "Sol".to_string());
                let owner = |name: &str| slug_of.get(name).and_then(|s| owners.get(s)).copied();
                let url = match owner(&here) {
                    Some(o) if how.through_owner => &urls[o],
                    _ => &urls[k % urls.len()],
                };
                let Some(options) = neighbours.get(&here) else {
                    break;
                };
                let options: Vec<&String> = options
                    .iter()
                    .filter(|to| !how.stay_with_owner || owner(to) == owner(&here))
                    .collect();
                if options.is_empty() {
                    // No neighbour of the same owner: this player sits the load out.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let to = options[k % options.len()].clone();
                let sent = Instant::now();
                let resp = http
                    .post(format!("{url}/v1/travel"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "to": to }))
                    .send()
                    .await;
                let ok = matches!(&resp, Ok(r) if r.status().is_success());
                let took = sent.elapsed().as_secs_f64() * 1e3;
                if !ok {
                    load.lock().unwrap().failed += 1;
                    // Out of fuel, most often: a full tank (the bench measures jumps, not trade).
                    let _ = http
                        .post(format!("{url}/v1/refuel"))
                        .bearer_auth(token)
                        .json(&serde_json::json!({}))
                        .send()
                        .await;
                    // Where the player is: asked again (a refused jump says little).
                    if let Ok(r) = http
                        .get(format!("{url}/v1/me"))
                        .bearer_auth(token)
                        .send()
                        .await
                    {
                        if let Ok(me) = r.json::<Value>().await {
                            if let Some(s) = me["system"].as_str() {
                                at.insert(token.clone(), s.to_string());
                            }
                        }
                    }
                    continue;
                }
                {
                    let crossed = owner(&here) != owner(&to);
                    let mut l = load.lock().unwrap();
                    l.done += 1;
                    l.crossed += u64::from(crossed);
                    l.latencies_ms.push(took);
                    l.commits.push((Instant::now(), crossed, took));
                }
                // The landing, waited for where it happens.
                let _ = http
                    .get(format!("{url}/v1/landing"))
                    .bearer_auth(token)
                    .send()
                    .await;
                at.insert(token.clone(), to);
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let mut out = load.lock().unwrap().clone();
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// `GET /v1/me` for every player, through the node that holds them, then through another:
/// requests a second each way.
async fn forwarding(
    http: &reqwest::Client,
    urls: &[String],
    tokens: &[String],
    owners: &BTreeMap<String, usize>,
    args: &SpreadArgs,
) -> anyhow::Result<()> {
    // Where each player is now (asked through the first node).
    let mut holder = Vec::new();
    for token in tokens {
        let me: Value = http
            .get(format!("{}/v1/me", urls[0]))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        let slug = me["system"]
            .as_str()
            .map(|n| n.to_lowercase().replace([' ', '\''], "-"));
        let node = slug.and_then(|s| owners.get(&s).copied());
        if let Some(node) = node {
            holder.push((token.clone(), node));
        }
    }
    let seconds = (args.seconds / 2).max(2);
    for (what, local) in [("through the holding node", true), ("forwarded", false)] {
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut workers = Vec::new();
        for w in 0..args.concurrency {
            let (http, urls, done) = (http.clone(), urls.to_vec(), done.clone());
            let mine: Vec<(String, usize)> = holder
                .iter()
                .skip(w)
                .step_by(args.concurrency)
                .cloned()
                .collect();
            workers.push(tokio::spawn(async move {
                let mut k = 0;
                while Instant::now() < until && !mine.is_empty() {
                    let (token, node) = &mine[k % mine.len()];
                    k += 1;
                    let entry = if local {
                        *node
                    } else {
                        (node + 1) % urls.len()
                    };
                    let r = http
                        .get(format!("{}/v1/me", urls[entry]))
                        .bearer_auth(token)
                        .send()
                        .await;
                    if matches!(r, Ok(r) if r.status().is_success()) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for w in workers {
            w.await?;
        }
        let n = done.load(Ordering::Relaxed);
        println!(
            "  GET /v1/me {what}: {:.0} requests/s ({n} in {:.1} s, {} players)",
            n as f64 / started.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64(),
            holder.len()
        );
    }
    Ok(())
}

/// A node killed, started again, and one leaving on purpose: the time until every system is
/// served each time, and the units' own times from the nodes' lines.
fn faults(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    exe: &Path,
    cluster: &TestCluster,
    run: &Path,
    flags: &[String],
    nodes: &mut [Node],
) -> anyhow::Result<()> {
    let last = nodes.len() - 1;
    drain(&nodes[0]);
    drain(&nodes[1]);
    let killed = Instant::now();
    nodes[last].child.kill()?;
    let _ = nodes[last].child.wait();
    rt.block_on(whole(http, nodes, &[last]))?;
    let took = killed.elapsed().as_secs_f64();
    let starts: Vec<f64> = (0..last)
        .flat_map(|i| unit_times(&nodes[i], "started in "))
        .collect();
    println!(
        "  SIGKILL of a node: every system served again {took:.1} s after (a members' period and a lease of silence, then the takeover); {} units taken over, each started in {}",
        starts.len(),
        spread_of(&starts)
    );
    let name = nodes[last].name.clone();
    nodes[last] = Node::start(exe, cluster, run, &name, flags)?;
    let back = Instant::now();
    let all: Vec<usize> = (0..nodes.len()).collect();
    rt.block_on(until_all_serve(http, nodes, &all))?;
    println!(
        "  the node started again: it serves its share {:.1} s after it listens (clean hand-overs)",
        back.elapsed().as_secs_f64()
    );
    // A clean leave: SIGTERM, and its own hand-over times.
    let leaving = Instant::now();
    let pid = i32::try_from(nodes[last].child.id())?;
    // SAFETY: kill(2) on our child with a valid signal.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    rt.block_on(whole(http, nodes, &[last]))?;
    let took = leaving.elapsed().as_secs_f64();
    let _ = nodes[last].child.wait();
    let handed = unit_times(&nodes[last], "handed over (dealt to another node) in ");
    println!(
        "  SIGTERM of a node (a clean leave): every system served without it {took:.2} s after; {} units handed over, each in {}",
        handed.len(),
        spread_of(&handed)
    );
    Ok(())
}

/// Waits until each of `must` serves some system and every system is served.
async fn until_all_serve(
    http: &reqwest::Client,
    nodes: &[Node],
    must: &[usize],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(WHOLE_TIMEOUT_S);
    loop {
        let owners = whole(http, nodes, &[]).await?;
        if must.iter().all(|i| owners.values().any(|o| o == i)) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "a node got no share back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Forgets what a node printed so far.
fn drain(node: &Node) {
    while node.lines.try_recv().is_ok() {}
}

/// The milliseconds after `before` in the unit lines a node printed since the last drain.
fn unit_times(node: &Node, before: &str) -> Vec<f64> {
    let mut out = Vec::new();
    while let Ok(line) = node.lines.recv_timeout(Duration::from_millis(200)) {
        if line.starts_with("unit ") {
            if let Ok(ms) = figure(&line, before, " ms") {
                out.push(ms);
            }
        }
    }
    out
}

fn spread_of(v: &[f64]) -> String {
    if v.is_empty() {
        return "(none printed)".into();
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    format!(
        "min {:.0} / median {:.0} / max {:.0} ms",
        s[0],
        percentile(&s, 50.0),
        s[s.len() - 1]
    )
}

/// The nodes' CPU time so far (user + system), in milliseconds, from /proc.
fn cpu_ms(nodes: &[Node]) -> f64 {
    let tick = 1000.0 / 100.0; // USER_HZ is 100 on Linux
    nodes
        .iter()
        .filter_map(|n| std::fs::read_to_string(format!("/proc/{}/stat", n.child.id())).ok())
        .filter_map(|stat| {
            let after = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        * tick
}
