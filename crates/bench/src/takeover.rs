//! `mltrader-bench takeover`: how fast a standby takes over a galaxy whose logs are in NATS
//! JetStream (issue 18's figure: lease expiry to serving, target under 2 s).
//!
//! It starts a three-node cluster on loopback (scripts/nats-cluster.sh, R3, sync always), two
//! `mltrader serve --nats` nodes (the `mltrader` binary next to this one), players with some
//! history through the API, then for each round: SIGKILLs the active node, and measures what
//! the standby reports (its lease expiry by the server's clock to its claim and to serving,
//! the records it replayed) and what a client sees (kill to the first 200 from the standby).
//! A new standby replaces the killed node before the next round, and more history is added.
//! Prints every round and min/median/max; never asserts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use super::{mltrader_exe, percentile, scratch_dir};
use nats::testing::TestCluster;

#[derive(Args, Debug)]
pub struct TakeoverArgs {
    /// Takeovers to measure.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Players who join before the first kill.
    #[arg(long, default_value_t = 100)]
    pub players: usize,
    /// Jumps each player makes before each kill (history to replay).
    #[arg(long, default_value_t = 4)]
    pub jumps: usize,
    /// A system snapshots its state after this many records (`serve --snapshot-every`): with
    /// snapshots in JetStream, a takeover replays only what follows them.
    #[arg(long, default_value_t = 1_000)]
    pub snapshot_every: u64,
    /// The galaxy's lease, in milliseconds (`serve --lease-ms`).
    #[arg(long, default_value_t = 5_000)]
    pub lease_ms: u64,
    /// The cluster's base port (clients BASE..BASE+2, routes +100, monitoring +200).
    #[arg(long, default_value_t = 46_222)]
    pub base_port: u16,
    /// Where to put the scratch directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// How long a node may take to print its address.
const NODE_START_TIMEOUT_S: u64 = 60;
/// How long after a kill the standby must serve, at most, before the round fails.
const TAKEOVER_TIMEOUT_S: u64 = 120;
/// How often the client side asks the standby whether it serves.
const POLL_MS: u64 = 10;
/// Two systems next to each other (4.4 light years): players jump between them.
const JUMP_BETWEEN: [&str; 2] = ["sol", "alpha-centauri"];

/// One takeover's figures.
#[derive(Debug, Clone, Copy)]
struct Round {
    kill_to_200_ms: f64,
    expiry_to_claim_ms: f64,
    expiry_to_serving_ms: f64,
    records_replayed: f64,
    snapshots_loaded: f64,
}

pub fn run(args: TakeoverArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let dir = scratch_dir(args.dir.as_deref(), "takeover")?;
    let result = measure(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let rounds = result?;
    println!(
        "bench takeover: {} round(s), lease {} ms, {} players, {} jumps each per round; JetStream: 3 nodes on loopback, R3, sync always",
        rounds.len(),
        args.lease_ms,
        args.players,
        args.jumps
    );
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "  round {}: kill -> first 200 {:.0} ms; lease expiry -> claimed {:.0} ms, -> serving {:.0} ms; {:.0} records replayed, {:.0} snapshots loaded",
            i + 1,
            r.kill_to_200_ms,
            r.expiry_to_claim_ms,
            r.expiry_to_serving_ms,
            r.records_replayed,
            r.snapshots_loaded
        );
    }
    let summary = |name: &str, f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        println!(
            "  {name:<28} min {:>8.0}  median {:>8.0}  max {:>8.0}",
            v[0],
            percentile(&v, 50.0),
            v[v.len() - 1]
        );
    };
    summary("kill -> first 200 (ms)", |r| r.kill_to_200_ms);
    summary("lease expiry -> claimed (ms)", |r| r.expiry_to_claim_ms);
    summary("lease expiry -> serving (ms)", |r| r.expiry_to_serving_ms);
    summary("records replayed", |r| r.records_replayed);
    summary("snapshots loaded", |r| r.snapshots_loaded);
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &TakeoverArgs, dir: &Path) -> anyhow::Result<Vec<Round>> {
    let exe = mltrader_exe()?;
    let cluster = TestCluster::start_in(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        &dir.join("cluster"),
        args.base_port,
        None,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut serial = 0;
    let flags = [
        "--lease-ms".to_string(),
        args.lease_ms.to_string(),
        "--snapshot-every".to_string(),
        args.snapshot_every.to_string(),
    ];
    let start_node = |serial: &mut usize| {
        *serial += 1;
        Node::start(&exe, &cluster, dir, &format!("node-{serial}"), &flags)
    };
    let mut nodes = vec![start_node(&mut serial)?, start_node(&mut serial)?];
    let mut active = rt.block_on(which_serves(&http, &nodes))?;
    let mut tokens = Vec::new();
    for i in 0..args.players {
        tokens.push(rt.block_on(join(&http, &nodes[active].url, &format!("Pilot{i}")))?);
    }
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        eprintln!(
            "round {}: history, then SIGKILL of {}",
            round + 1,
            nodes[active].name
        );
        let made = rt.block_on(history(&http, &nodes[active].url, &tokens, args.jumps))?;
        eprintln!("  {made} jumps made");
        let killed = Instant::now();
        nodes[active].child.kill()?;
        let _ = nodes[active].child.wait();
        nodes.remove(active);
        let standby = 0;
        rt.block_on(until_serving(&http, &nodes[standby].url, killed))?;
        let kill_to_200_ms = killed.elapsed().as_secs_f64() * 1e3;
        let (recovered, line) = nodes[standby].took_over_lines()?;
        rounds.push(Round {
            snapshots_loaded: figure(&recovered, "records replayed (", " snapshots)")?,
            kill_to_200_ms,
            expiry_to_claim_ms: figure(&line, "claimed ", " ms after")?,
            expiry_to_serving_ms: figure(&line, "serving ", " ms after")?,
            records_replayed: figure(&line, "; ", " records replayed")?,
        });
        eprintln!("  {line}");
        nodes.push(start_node(&mut serial)?);
        active = standby;
    }
    drop(nodes);
    drop(cluster);
    Ok(rounds)
}

/// The number between `before` and `after` in `line`.
pub(crate) fn figure(line: &str, before: &str, after: &str) -> anyhow::Result<f64> {
    line.rsplit(before)
        .find_map(|rest| rest.split(after).next()?.trim().parse().ok())
        .with_context(|| format!("no figure between {before:?} and {after:?} in {line:?}"))
}

/// A `mltrader serve --nats` process, killed on drop.
pub(crate) struct Node {
    pub name: String,
    pub child: Child,
    pub url: String,
    /// What it prints on stdout, line by line.
    pub lines: mpsc::Receiver<String>,
}

impl Node {
    /// Starts `mltrader serve --nats` on a free port with jumps that land at once and no rate
    /// limits, `flags` added; waits for its address.
    pub(crate) fn start(
        exe: &Path,
        cluster: &TestCluster,
        dir: &Path,
        name: &str,
        flags: &[String],
    ) -> anyhow::Result<Node> {
        Node::start_on(exe, &cluster.serve_flags(name), dir, name, flags)
    }

    /// [`Node::start`] on the NATS servers that `nats_flags` name (`--nats URLS --creds ...`).
    pub(crate) fn start_on(
        exe: &Path,
        nats_flags: &[String],
        dir: &Path,
        name: &str,
        flags: &[String],
    ) -> anyhow::Result<Node> {
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--ticks-per-ly", "0"])
            .arg("--data")
            .arg(dir.join(name))
            .args(nats_flags)
            .args(flags)
            .env("MLTRADER_TOKEN_RATE", "off")
            .env("MLTRADER_JOIN_RATE", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(NODE_START_TIMEOUT_S);
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .with_context(|| format!("{name} did not print its address"))?;
            if let Some(rest) = line.split(" on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                break format!("http://{addr}");
            }
        };
        Ok(Node {
            name: name.to_string(),
            child,
            url,
            lines,
        })
    }

    /// The node's "recovered ..." and "took over from ..." lines (waits for them a little:
    /// they follow the serving line).
    fn took_over_lines(&self) -> anyhow::Result<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut recovered = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("{} printed no 'took over' line", self.name))?;
            if line.starts_with("recovered ") {
                recovered = line;
            } else if line.starts_with("took over from") {
                return Ok((recovered, line));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn status(http: &reqwest::Client, url: &str) -> Option<u16> {
    let resp = http
        .get(format!("{url}/v1/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

/// The index of the node that serves (the other answers 503 standby).
async fn which_serves(http: &reqwest::Client, nodes: &[Node]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(TAKEOVER_TIMEOUT_S);
    while Instant::now() < deadline {
        for (i, node) in nodes.iter().enumerate() {
            if status(http, &node.url).await == Some(200) {
                return Ok(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no node serves {TAKEOVER_TIMEOUT_S} s after the start")
}

async fn until_serving(http: &reqwest::Client, url: &str, since: Instant) -> anyhow::Result<()> {
    while since.elapsed() < Duration::from_secs(TAKEOVER_TIMEOUT_S) {
        if status(http, url).await == Some(200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    anyhow::bail!("the standby at {url} does not serve {TAKEOVER_TIMEOUT_S} s after the kill")
}

pub(crate) async fn join(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<String> {
    let resp = http
        .post(format!("{url}/v1/join"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().as_u16() == 201,
        "join {name}: {}",
        resp.status()
    );
    let body: serde_json::Value = resp.json().await?;
    body["token"]
        .as_str()
        .map(String::from)
        .context("join answered no token")
}

/// Every player fills the tank, then jumps `jumps` times between the two systems (where they
/// are decides the direction: a jump to where one is already is refused and skipped). Returns
/// the jumps made.
async fn history(
    http: &reqwest::Client,
    url: &str,
    tokens: &[String],
    jumps: usize,
) -> anyhow::Result<usize> {
    let mut made = 0;
    for token in tokens {
        // Refused with a full tank: that is fine, the jumps below say whether fuel lacked.
        http.post(format!("{url}/v1/refuel"))
            .bearer_auth(token)
            .json(&serde_json::json!({}))
            .send()
            .await?;
    }
    for _ in 0..jumps {
        for token in tokens {
            for to in JUMP_BETWEEN {
                let resp = http
                    .post(format!("{url}/v1/travel"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "to": to }))
                    .send()
                    .await?;
                if resp.status().is_success() {
                    made += 1;
                    break;
                }
            }
        }
    }
    Ok(made)
}
