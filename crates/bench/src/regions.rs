//! `mltrader-bench regions`: the figures of a galaxy served by two regions (issue 20).
//!
//! For each one-way link delay of `--delays-ms`, on new regions each time (`eu` and `us`, one
//! NATS server each, `sync_interval: always`, a JetStream domain each, joined by a leafnode
//! through a delaying proxy on loopback: `nats::testing::TestRegions`): starts one `mltrader
//! serve --nats --spread --region R` node per region (the `mltrader` binary next to this one),
//! joins players through both, then measures:
//! - **jumps under load**: `--concurrency` workers jump players to random neighbours for
//!   `--seconds`, each request through the node of the region that serves the player's system;
//!   the commit latency (the `travel` answer) of jumps within a region and across the link,
//!   p50 and p99;
//! - **copy lag under that load**: each region's copy of the other's streams, sampled every
//!   [`LAG_SAMPLE_MS`] while the workers run (messages behind and seconds behind, p50 / p99 /
//!   max);
//! - **a cut link**: workers jump players between systems of the same region only (a jump
//!   across waits for the link), one second before the cut, `--cut-seconds` cut, one after:
//!   jumps a second within a region during the cut against before it; then the time until
//!   every jump has landed after the heal, and the players counted in both regions against
//!   those who joined;
//! - **a promotion** (the last delay only, unless `--no-promote`): under load, region `us` is
//!   killed (its node SIGKILLed, its server too), `mltrader region promote us --into eu` is
//!   run, and `eu` serves every system: the promotion's time, the time until `eu` serves the
//!   whole galaxy, the recovery point the promotion printed, and the players `eu` holds; then
//!   `us`'s servers are started again (not its node) and their streams compared with `eu`'s
//!   frozen copy: what was really lost.
//!
//! On two cores every node, server, proxy and client share the same CPUs: the latencies are
//! those of the delay plus this machine's load. Prints every figure; never asserts.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;

use super::spread::{jumps, lanes, whole, JumpLoad, Load};
use super::takeover::{join, Node};
use super::{mltrader_exe, percentile, scratch_dir};
use nats::testing::TestRegions;

#[derive(Args, Debug)]
pub struct RegionsArgs {
    /// The link's one-way delays to measure, in milliseconds (new regions for each).
    #[arg(long, value_delimiter = ',', default_value = "0,20,50")]
    pub delays_ms: Vec<u64>,
    /// Players who join (through both regions in turn).
    #[arg(long, default_value_t = 60)]
    pub players: usize,
    /// Seconds of jumps under load (copy lag sampled meanwhile).
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 12)]
    pub concurrency: usize,
    /// Seconds the link stays cut while the workers jump.
    #[arg(long, default_value_t = 5)]
    pub cut_seconds: u64,
    /// The lease of each unit, in milliseconds (`serve --lease-ms`).
    #[arg(long, default_value_t = 5_000)]
    pub lease_ms: u64,
    /// Do not end with a promotion.
    #[arg(long)]
    pub no_promote: bool,
    /// Where to put the scratch directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The two regions, in the order of the nodes: `eu` is node 0, `us` node 1.
const REGIONS: [&str; 2] = ["eu", "us"];
/// How often the copies' lag is read while the workers run.
const LAG_SAMPLE_MS: u64 = 200;
/// How long every jump may take to land after the heal, and the survivor to serve the galaxy
/// after a promotion.
const SETTLE_TIMEOUT_S: u64 = 120;
/// The load's seconds before the region is killed, in the promotion's phase.
const LOAD_BEFORE_KILL_S: u64 = 2;

pub fn run(args: RegionsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.delays_ms.is_empty(), "--delays-ms names no delay");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let server = nats::locate::nats_server(&root).context(
        "no nats-server found: run scripts/nats-install.sh (or set MLTRADER_NATS_SERVER)",
    )?;
    let exe = mltrader_exe()?;
    let dir = scratch_dir(args.dir.as_deref(), "regions")?;
    let (rt, http) = super::load_runtime(args.concurrency)?;
    println!(
        "bench regions: eu and us (one NATS server each, sync always, joined by a leafnode through a delaying proxy), one node each; {} players, {} s of jumps with {} in flight, the link cut {} s; everything on this machine's cores",
        args.players, args.seconds, args.concurrency, args.cut_seconds
    );
    let mut result = Ok(());
    for (i, &delay_ms) in args.delays_ms.iter().enumerate() {
        let promote = !args.no_promote && i + 1 == args.delays_ms.len();
        let bench = Bench {
            rt: &rt,
            http: &http,
            exe: &exe,
            run: dir.join(format!("delay-{delay_ms}")),
            args: &args,
        };
        result = bench.one_delay(&server, delay_ms, promote);
        if result.is_err() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(ExitCode::SUCCESS)
}

struct Bench<'a> {
    rt: &'a tokio::runtime::Runtime,
    http: &'a reqwest::Client,
    exe: &'a Path,
    run: PathBuf,
    args: &'a RegionsArgs,
}

impl Bench<'_> {
    fn one_delay(&self, server: &Path, delay_ms: u64, promote: bool) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.run)?;
        let mut regions = TestRegions::start(server.to_path_buf(), &REGIONS, 1, delay_ms);
        let flags = vec!["--lease-ms".to_string(), self.args.lease_ms.to_string()];
        let mut nodes = Vec::new();
        for region in REGIONS {
            let name = format!("{region}1");
            let on = regions.serve_flags(region, &name);
            nodes.push(Node::start_on(self.exe, &on, &self.run, &name, &flags)?);
        }
        let started = Instant::now();
        let owners = self.rt.block_on(whole(self.http, &nodes, &[]))?;
        println!(
            "link delay {delay_ms} ms one way: every system served {:.1} s after the start ({} in eu, {} in us)",
            started.elapsed().as_secs_f64(),
            owners.values().filter(|&&o| o == 0).count(),
            owners.values().filter(|&&o| o == 1).count()
        );
        let galaxy = self.rt.block_on(lanes(self.http, &nodes[0].url))?;
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        let mut tokens = Vec::new();
        for i in 0..self.args.players {
            let url = &urls[i % urls.len()];
            tokens.push(
                self.rt
                    .block_on(join(self.http, url, &format!("Voyager{i}")))?,
            );
        }
        let how = |seconds, stay_with_owner| JumpLoad {
            seconds,
            concurrency: self.args.concurrency,
            through_owner: true,
            stay_with_owner,
        };

        // Jumps under load, the copies' lag sampled meanwhile.
        let sampler = LagSampler::start(&regions);
        let load = self.rt.block_on(jumps(
            self.http,
            &urls,
            &tokens,
            &galaxy,
            &owners,
            how(self.args.seconds, false),
        ))?;
        let lags = sampler.stop();
        print_load(&load);
        for (copy, samples) in &lags {
            print_lag(copy, samples);
        }

        // The link cut while the workers jump, then healed.
        let load_s = 1 + self.args.cut_seconds + 1;
        let (load, cut_at, healing_at, healed) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                self.rt.block_on(jumps(
                    self.http,
                    &urls,
                    &tokens,
                    &galaxy,
                    &owners,
                    how(load_s, true),
                ))
            });
            std::thread::sleep(Duration::from_secs(1));
            regions.cut();
            let cut_at = Instant::now();
            std::thread::sleep(Duration::from_secs(self.args.cut_seconds));
            let healing_at = Instant::now();
            regions.heal();
            let healed = healing_at.elapsed();
            let load = worker.join().expect("the load's thread");
            (load, cut_at, healing_at, healed)
        });
        let load = load?;
        let within = |from: Instant, to: Instant| {
            load.commits
                .iter()
                .filter(|(at, crossed, _)| !crossed && *at >= from && *at < to)
                .count()
        };
        let first = load.commits.first().map_or(cut_at, |c| c.0.min(cut_at));
        let before = within(first, cut_at) as f64 / cut_at.duration_since(first).as_secs_f64();
        let during =
            within(cut_at, healing_at) as f64 / healing_at.duration_since(cut_at).as_secs_f64();
        println!(
            "  link cut {} s, players jumping within their region: {during:.1} jumps/s during the cut against {before:.1}/s before it; the leafnode back {:.1} s after the heal",
            self.args.cut_seconds,
            healed.as_secs_f64()
        );
        let settling = Instant::now();
        let held = self.rt.block_on(settled(self.http, &urls))?;
        println!(
            "  every jump landed {:.1} s after the heal; the regions hold {held} players, {} joined",
            settling.elapsed().as_secs_f64() + healed.as_secs_f64(),
            tokens.len()
        );

        if promote {
            self.promotion(&mut regions, &mut nodes, &urls, &tokens, &galaxy, &owners)?;
        }
        drop(nodes);
        drop(regions);
        Ok(())
    }

    /// Region `us` lost under load and promoted into `eu`.
    fn promotion(
        &self,
        regions: &mut TestRegions,
        nodes: &mut [Node],
        urls: &[String],
        tokens: &[String],
        galaxy: &super::spread::Lanes,
        owners: &std::collections::BTreeMap<String, usize>,
    ) -> anyhow::Result<()> {
        let how = JumpLoad {
            seconds: LOAD_BEFORE_KILL_S + 1,
            concurrency: self.args.concurrency,
            through_owner: true,
            stay_with_owner: false,
        };
        let lag_before = std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                self.rt
                    .block_on(jumps(self.http, urls, tokens, galaxy, owners, how))
            });
            std::thread::sleep(Duration::from_secs(LOAD_BEFORE_KILL_S));
            let eu = regions.connect("eu", "bench-lag");
            let lag = nats::copies::copy_status(&eu, "us")
                .map(|s| s.iter().map(|c| c.lag_messages).sum::<u64>())
                .ok();
            let _ = nodes[1].child.kill();
            let _ = nodes[1].child.wait();
            regions.kill_region("us");
            let _ = worker.join();
            lag
        });
        let promoting = Instant::now();
        let out = self.region_cmd(regions, "eu", &["promote", "us", "--into", "eu", "--json"])?;
        let promote_took = promoting.elapsed();
        self.rt
            .block_on(whole(self.http, std::slice::from_ref(&nodes[0]), &[]))
            .context("eu after the promotion")?;
        let serving = promoting.elapsed();
        let held = self.rt.block_on(settled(self.http, &urls[..1]))?;
        let points = out.as_array().map_or(0, Vec::len);
        let (exact, at_most) = lost_messages(&out);
        println!(
            "  promotion of us into eu under load (eu's copy {} messages behind just before the kill): promote took {:.2} s, eu served every system {:.1} s after it started; recovery point: {points} systems, {exact} messages lost exactly, {at_most} known missing at the copy's last contact; eu holds {held} players, {} joined",
            lag_before.map_or("?".to_string(), |l| l.to_string()),
            promote_took.as_secs_f64(),
            serving.as_secs_f64(),
            tokens.len()
        );
        // What was really lost: the lost region's servers started again (its node stays
        // down, so nothing more is written), their streams against eu's frozen copy.
        regions.restart_region("us");
        let eu = regions.connect("eu", "bench-lost");
        let deadline = Instant::now() + Duration::from_secs(SETTLE_TIMEOUT_S);
        let status = loop {
            let status = nats::copies::copy_status(&eu, "us")?;
            if status.iter().all(|c| c.reachable) {
                break status;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "us's streams do not answer {SETTLE_TIMEOUT_S} s after its servers started again"
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        let really: Vec<String> = status
            .iter()
            .map(|c| format!("{} {}", c.stream, c.lag_messages))
            .collect();
        println!(
            "  really lost (us's servers started again, their streams against eu's frozen copy, in messages): {}",
            really.join(", ")
        );
        Ok(())
    }

    /// `mltrader region ARGS` against region `region`'s servers; its JSON output.
    fn region_cmd(
        &self,
        regions: &TestRegions,
        region: &str,
        args: &[&str],
    ) -> anyhow::Result<Value> {
        let galaxy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/src/galaxy/stars.toml");
        let out = Command::new(self.exe)
            .arg("region")
            .args(args)
            .args(regions.region_args(region))
            .arg("--galaxy")
            .arg(&galaxy)
            .output()
            .context("run mltrader region")?;
        anyhow::ensure!(
            out.status.success(),
            "mltrader region {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }
}

fn print_load(load: &Load) {
    let sorted = |crossed: bool| {
        let mut v: Vec<f64> = load
            .commits
            .iter()
            .filter(|c| c.1 == crossed)
            .map(|c| c.2)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (inside, across) = (sorted(false), sorted(true));
    println!(
        "  jumps: {:.0}/s durable ({} in {:.1} s, {} refused or failed); within a region commit p50 {:.1} ms p99 {:.1} ms ({}); across the link p50 {:.1} ms p99 {:.1} ms ({})",
        load.done as f64 / load.seconds,
        load.done,
        load.seconds,
        load.failed,
        percentile(&inside, 50.0),
        percentile(&inside, 99.0),
        inside.len(),
        percentile(&across, 50.0),
        percentile(&across, 99.0),
        across.len()
    );
}

/// One copy's lag samples: (messages behind, seconds behind).
type LagSamples = Vec<(u64, f64)>;

fn print_lag(copy: &str, samples: &LagSamples) {
    let mut messages: Vec<f64> = samples.iter().map(|s| s.0 as f64).collect();
    let mut seconds: Vec<f64> = samples.iter().map(|s| s.1).collect();
    messages.sort_by(f64::total_cmp);
    seconds.sort_by(f64::total_cmp);
    let max = |v: &[f64]| v.last().copied().unwrap_or(0.0);
    println!(
        "  {copy} under that load ({} samples): behind p50 {:.0} / p99 {:.0} / max {:.0} messages, p50 {:.3} / p99 {:.3} / max {:.3} s",
        samples.len(),
        percentile(&messages, 50.0),
        percentile(&messages, 99.0),
        max(&messages),
        percentile(&seconds, 50.0),
        percentile(&seconds, 99.0),
        max(&seconds)
    );
}

/// Reads each region's copy of the other every [`LAG_SAMPLE_MS`] on a thread of its own.
struct LagSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(String, LagSamples)>>,
}

impl LagSampler {
    fn start(regions: &TestRegions) -> LagSampler {
        let copies: Vec<(String, nats::Nats, &str)> = vec![
            (
                "eu's copy of us".into(),
                regions.connect("eu", "bench-eu"),
                "us",
            ),
            (
                "us's copy of eu".into(),
                regions.connect("us", "bench-us"),
                "eu",
            ),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(vec![LagSamples::new(); copies.len()]));
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for (k, (_, nats, of)) in copies.iter().enumerate() {
                    if let Ok(status) = nats::copies::copy_status(nats, of) {
                        let messages = status.iter().map(|c| c.lag_messages).sum();
                        let seconds = status.iter().map(|c| c.lag_s).fold(0.0, f64::max);
                        out.lock().unwrap()[k].push((messages, seconds));
                    }
                }
                std::thread::sleep(Duration::from_millis(LAG_SAMPLE_MS));
            }
            let samples = std::mem::take(&mut *out.lock().unwrap());
            copies
                .into_iter()
                .map(|(name, _, _)| name)
                .zip(samples)
                .collect()
        });
        LagSampler { stop, thread }
    }

    fn stop(self) -> Vec<(String, LagSamples)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Waits until no jump is departing or in transit on the nodes at `urls`: the players they
/// hold then.
async fn settled(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(SETTLE_TIMEOUT_S);
    loop {
        let mut moving = 0;
        let mut held = 0;
        let mut answered = 0;
        for url in urls {
            let Ok(resp) = http.get(format!("{url}/v1/status")).send().await else {
                continue;
            };
            let Ok(Value::Array(systems)) = resp.json::<Value>().await else {
                continue;
            };
            answered += 1;
            for s in &systems {
                let n = |f: &str| s[f].as_u64().unwrap_or(0);
                moving += n("departing") + n("in_transit_towards");
                held += n("population");
            }
        }
        if answered == urls.len() && moving == 0 {
            return Ok(held);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{moving} jumps still moving {SETTLE_TIMEOUT_S} s later"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The messages a promotion's recovery points say were lost: (exactly, known missing at the
/// copy's last contact).
fn lost_messages(points: &Value) -> (u64, u64) {
    let mut exact = 0;
    let mut at_most = 0;
    for p in points.as_array().into_iter().flatten() {
        let lost = &p["lost_after"];
        exact += lost["Exactly"]["messages"].as_u64().unwrap_or(0);
        at_most += lost["AsOfLastContact"]["messages"].as_u64().unwrap_or(0);
    }
    (exact, at_most)
}
