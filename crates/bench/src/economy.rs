//! `mltrader-bench economy`: does the economy stay alive under a crowd of traders (issue 22)?
//! Runs a `mltrader serve` with time sped up (`--tick-hz`, travel at game speed: ten ticks a
//! light year), a `mltrader swarm` of learning and random bots for a number of game hours (a
//! game hour is `TICKS_PER_GAME_HOUR` ticks), stops the server, and reads the answer from
//! the logs alone (`mesh::audit::economy`), by game hour:
//!
//! - profit per sale of learning and random bots (a sale's price less what its units cost the
//!   bot; fuel not counted), and whether learners stay above random and above zero;
//! - profitable routes (lane, direction, good with a margin after the spread) and how many of
//!   the best ten were best the hour before;
//! - for each good, the share of price samples at its floor or ceiling;
//! - credits in circulation at the start and end, and the change explained to the credit by
//!   named sources and sinks.
//!
//! A bench, not a timed test: it measures properties, and its exit code says whether they
//! held (`--size small` is the CI test's run). Never touches a data directory but its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::{scratch_dir, Size};
use ::swarm::bot::LIFE_MARK;
use mesh::audit::audit_watched;
use mesh::audit::economy::{EconomyBook, EconomyReport, Window, TICKS_PER_GAME_HOUR};
use store::datadir::DataDir;

/// The swarm's seed unless `--seed` says otherwise: bots are named `bot-<seed>-<index>`.
const DEFAULT_SEED: u64 = 11;
/// Share of random bots, in percent (the swarm's default).
const BASELINE_PERCENT: u32 = ::swarm::DEFAULT_BASELINE_PERCENT;
/// The most a price may sit at a floor or ceiling for the run to pass, in per-mille.
const MAX_PINNED_PERMILLE: u64 = 200;

#[derive(Args, Debug)]
pub struct EconomyBenchArgs {
    /// Run size: `small` is 20 bots for 2 game hours at 50 Hz (CI); `large` 1,000 bots for a
    /// game day (24 hours).
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Bots (overrides the size's count).
    #[arg(long)]
    pub bots: Option<u64>,
    /// Game hours (overrides the size's).
    #[arg(long)]
    pub hours: Option<u64>,
    /// The swarm's seed (its bots' names and choices; the galaxy's own seeds do not change).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Ticks a second (time sped up: 10 is game speed).
    #[arg(long, default_value_t = 50)]
    pub tick_hz: u64,
    /// Where to put the scratch data directory (removed at the end unless --keep).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Keep the data directory (its path is printed), e.g. for `mltrader economy --report`.
    #[arg(long)]
    pub keep: bool,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One game hour of the run.
#[derive(Debug, Serialize)]
pub struct Hour {
    pub hour: u64,
    pub learner_sales: u64,
    pub learner_profit_per_sale_cr: f64,
    pub random_sales: u64,
    pub random_profit_per_sale_cr: f64,
    pub profitable_routes: u64,
    pub best_kept_of_ten: u64,
    pub circulation_cr: i128,
}

/// Pilots that traded in the run (from the logs), by kind and life.
#[derive(Debug, Default, Serialize)]
pub struct Pilots {
    pub learners_first: u64,
    pub learners_later: u64,
    /// Learning bots with a later life: the ones that went broke at least once.
    pub learners_broke: u64,
    pub random_first: u64,
    pub random_later: u64,
    pub random_broke: u64,
}

/// What the run found.
#[derive(Debug, Serialize)]
pub struct Figures {
    pub seed: u64,
    pub bots: u64,
    pub hours: u64,
    pub tick_hz: u64,
    pub seconds: f64,
    pub hours_table: Vec<Hour>,
    /// Per good: per-mille of samples at floor, at ceiling.
    pub pinned_permille: BTreeMap<String, (u64, u64)>,
    pub circulation_start_cr: i128,
    pub circulation_end_cr: i128,
    pub created_cr: BTreeMap<String, u128>,
    pub destroyed_cr: BTreeMap<String, u128>,
    pub check_ok: bool,
    /// Broke bots that joined again as new pilots (each with the start grant), as the swarm
    /// counted them.
    pub started_over: u64,
    /// Pilots that traded, by kind: learners' first pilots, learners' later ones (after
    /// starting over), random bots' first and later ones (from the logs).
    pub pilots: Pilots,
    /// The properties, each with whether it held.
    pub properties: BTreeMap<String, bool>,
}

pub fn run(args: EconomyBenchArgs) -> anyhow::Result<ExitCode> {
    let (bots, hours) = match args.size {
        Size::Small => (args.bots.unwrap_or(20), args.hours.unwrap_or(2)),
        Size::Large => (args.bots.unwrap_or(1_000), args.hours.unwrap_or(24)),
    };
    anyhow::ensure!(bots > 0 && hours > 0, "give at least one bot and one hour");
    anyhow::ensure!(args.tick_hz > 0, "--tick-hz 0: the galaxy would never tick");
    let dir = scratch_dir(args.dir.as_deref(), "economy")?;
    let result = measure(&dir, args.seed, bots, hours, args.tick_hz);
    if args.keep {
        eprintln!("kept {}", dir.join("data").display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let f = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
    } else {
        print!("{}", table(&f));
    }
    Ok(if f.properties.values().all(|ok| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn measure(dir: &Path, seed: u64, bots: u64, hours: u64, tick_hz: u64) -> anyhow::Result<Figures> {
    let exe = super::mltrader_exe()?;
    let data = dir.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(&exe)
        // Every bot connects from loopback: no cap per address.
        .args(["serve", "--tick-hz", &tick_hz.to_string()])
        .args(["--max-connections-per-ip", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start mltrader serve")?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not listen within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = (hours * TICKS_PER_GAME_HOUR) as f64 / tick_hz as f64;
    eprintln!("running {bots} bots for {hours} game hours ({seconds:.0} s at {tick_hz} Hz)...");
    // Broke bots start over as new pilots (with the start grant, a named source), so that
    // the random baseline, which loses the spread and the fee and goes broke within hours,
    // trades all day long.
    let swarm = Command::new(&exe)
        .args(["swarm", "--json", "--start-over", "--server", &url])
        .args(["--seed", &seed.to_string(), "--bots", &bots.to_string()])
        .args(["--baseline-percent", &BASELINE_PERCENT.to_string()])
        .args(["--duration", &format!("{seconds}")])
        .stderr(Stdio::null())
        .output()
        .context("cannot run mltrader swarm")?;
    anyhow::ensure!(swarm.status.success(), "the swarm failed: {}", swarm.status);
    let summary: serde_json::Value =
        serde_json::from_slice(&swarm.stdout).context("the swarm's --json summary")?;
    let started_over = summary["started_over"]
        .as_u64()
        .context("the swarm's summary has no started_over")?;
    // SIGTERM: the server flushes and snapshots, as an operator stops it.
    #[cfg(unix)]
    // SAFETY: kill(2) on the child's own pid; it touches no memory of ours.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let _ = server.wait();
    eprintln!("reading the logs...");
    let datadir = DataDir::at(&data);
    let galaxy_text = std::fs::read_to_string(datadir.galaxy_file())
        .with_context(|| format!("cannot read {}", datadir.galaxy_file().display()))?;
    let galaxy = sim::galaxy::Galaxy::from_toml_str(&galaxy_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", datadir.galaxy_file().display()))?;
    let mut book = EconomyBook::new(&galaxy, Window::all());
    let audit = audit_watched(&datadir, &galaxy, &mut book);
    let report = book.report();
    let mut f = figures(&report, seed, bots, hours, tick_hz, seconds, audit.ok());
    f.started_over = started_over;
    Ok(f)
}

/// Whether bot `name` of a swarm of `bots` chooses at random (the swarm's last ones), under
/// any of its names (`bot-S-I`, `bot-S-I.2` for a taken name, `bot-S-I.life2` once it started
/// over).
fn is_random(name: &str, seed: u64, bots: u64) -> Option<bool> {
    let rest = name.strip_prefix(&format!("bot-{seed}-"))?;
    let index: u64 = rest.split('.').next()?.parse().ok()?;
    let random = ::swarm::baseline_bots(bots as usize, BASELINE_PERCENT) as u64;
    Some(index >= bots - random.min(bots))
}

/// The pilots among trader `names` (any order, repeats allowed) of a swarm of `bots`.
fn count_pilots<'a>(names: impl Iterator<Item = &'a String>, seed: u64, bots: u64) -> Pilots {
    let names: std::collections::BTreeSet<&String> = names.collect();
    let mut pilots = Pilots::default();
    let mut broke = std::collections::BTreeSet::new();
    for name in names {
        let later = name.contains(LIFE_MARK);
        if later {
            broke.insert(name.split(LIFE_MARK).next().unwrap_or(name));
        }
        match (is_random(name, seed, bots), later) {
            (Some(false), false) => pilots.learners_first += 1,
            (Some(false), true) => pilots.learners_later += 1,
            (Some(true), false) => pilots.random_first += 1,
            (Some(true), true) => pilots.random_later += 1,
            (None, _) => {}
        }
    }
    for bot in broke {
        match is_random(bot, seed, bots) {
            Some(false) => pilots.learners_broke += 1,
            Some(true) => pilots.random_broke += 1,
            None => {}
        }
    }
    pilots
}

/// The figures and properties of a report of a run of `bots` (of a swarm seeded `seed`) over
/// `hours` game hours.
pub fn figures(
    r: &EconomyReport,
    seed: u64,
    bots: u64,
    hours: u64,
    tick_hz: u64,
    seconds: f64,
    check_ok: bool,
) -> Figures {
    let pilots = count_pilots(r.buckets.iter().flat_map(|b| b.traders.keys()), seed, bots);
    let mut table = Vec::new();
    for (i, b) in r.buckets.iter().enumerate().take(hours as usize) {
        let (mut ls, mut lp, mut rs, mut rp) = (0u64, 0i64, 0u64, 0i64);
        for (name, t) in &b.traders {
            match is_random(name, seed, bots) {
                Some(false) => (ls, lp) = (ls + t.sales, lp + t.profit_cr),
                Some(true) => (rs, rp) = (rs + t.sales, rp + t.profit_cr),
                None => {}
            }
        }
        let mean = |p: i64, n: u64| if n == 0 { 0.0 } else { p as f64 / n as f64 };
        table.push(Hour {
            hour: i as u64,
            learner_sales: ls,
            learner_profit_per_sale_cr: mean(lp, ls),
            random_sales: rs,
            random_profit_per_sale_cr: mean(rp, rs),
            profitable_routes: b.profitable_routes,
            best_kept_of_ten: b.best_kept,
            circulation_cr: b.circulation_cr,
        });
    }
    let pinned: BTreeMap<String, (u64, u64)> = r
        .goods
        .iter()
        .map(|g| (g.good.clone(), (g.at_floor_permille, g.at_ceiling_permille)))
        .collect();
    let change = r.circulation_at_end_cr - r.circulation_at_start_cr;
    let explained = r.flows.created() as i128 - r.flows.destroyed() as i128;
    // Circulation at the start of the run: the markets' funds and the first players' grants
    // come in the first hour, so inflation is measured from the end of the first hour.
    let first = table.first().map_or(0, |h| h.circulation_cr);
    let inflation_permille = if first == 0 {
        0
    } else {
        (r.circulation_at_end_cr - first) * 1_000 / first
    };
    let mut properties = BTreeMap::new();
    let hours_with_sales: Vec<&Hour> = table
        .iter()
        .filter(|h| h.learner_sales > 0 && h.random_sales > 0)
        .collect();
    properties.insert("logs pass check".to_string(), check_ok);
    properties.insert(
        "learners above random every hour both sold".into(),
        !hours_with_sales.is_empty()
            && hours_with_sales
                .iter()
                .all(|h| h.learner_profit_per_sale_cr > h.random_profit_per_sale_cr),
    );
    properties.insert(
        "random bots sold every hour".into(),
        table.iter().all(|h| h.random_sales > 0),
    );
    properties.insert(
        "learners above zero every hour they sold".into(),
        table
            .iter()
            .filter(|h| h.learner_sales > 0)
            .all(|h| h.learner_profit_per_sale_cr > 0.0),
    );
    properties.insert(
        "profitable routes every hour".into(),
        table.iter().all(|h| h.profitable_routes > 0),
    );
    properties.insert(
        "no price pinned at a floor or ceiling over 20% of the time".into(),
        pinned
            .values()
            .all(|(f, c)| *f <= MAX_PINNED_PERMILLE && *c <= MAX_PINNED_PERMILLE),
    );
    properties.insert(
        "circulation change explained to the credit by sources and sinks".into(),
        change == explained,
    );
    properties.insert(
        format!("inflation after the first hour within 5% ({inflation_permille} per-mille)"),
        inflation_permille.abs() <= 50,
    );
    Figures {
        seed,
        bots,
        hours,
        tick_hz,
        seconds,
        hours_table: table,
        pinned_permille: pinned,
        circulation_start_cr: r.circulation_at_start_cr,
        circulation_end_cr: r.circulation_at_end_cr,
        created_cr: r.flows.credits_created.clone(),
        destroyed_cr: r.flows.credits_destroyed.clone(),
        check_ok,
        started_over: 0,
        pilots,
        properties,
    }
}

fn table(f: &Figures) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench economy: {} bots (seed {}), {} game hours of {TICKS_PER_GAME_HOUR} ticks at {} Hz \
         ({:.0} s)",
        f.bots, f.seed, f.hours, f.tick_hz, f.seconds
    );
    let _ = writeln!(
        out,
        "hour  learner sales  cr/sale  random sales  cr/sale  profitable routes  best kept  circulation"
    );
    for h in &f.hours_table {
        let _ = writeln!(
            out,
            "{:>4}  {:>13}  {:>7.1}  {:>12}  {:>7.1}  {:>17}  {:>6}/10  {:>11}",
            h.hour,
            h.learner_sales,
            h.learner_profit_per_sale_cr,
            h.random_sales,
            h.random_profit_per_sale_cr,
            h.profitable_routes,
            h.best_kept_of_ten,
            h.circulation_cr
        );
    }
    let pinned: Vec<String> = f
        .pinned_permille
        .iter()
        .map(|(g, (fl, ce))| format!("{g} {:.1}%/{:.1}%", *fl as f64 / 10.0, *ce as f64 / 10.0))
        .collect();
    let _ = writeln!(out, "at floor/ceiling: {}", pinned.join(", "));
    let p = &f.pilots;
    let _ = writeln!(
        out,
        "broke bots that started over as new pilots: {}; from the logs, learners: {} of {} \
         went broke at least once ({} later lives traded); random: {} of {} ({})",
        f.started_over,
        p.learners_broke,
        p.learners_first,
        p.learners_later,
        p.random_broke,
        p.random_first,
        p.random_later
    );
    let _ = writeln!(
        out,
        "circulation {} -> {} cr; created {:?}; destroyed {:?}",
        f.circulation_start_cr, f.circulation_end_cr, f.created_cr, f.destroyed_cr
    );
    for (p, ok) in &f.properties {
        let _ = writeln!(out, "  [{}] {p}", if *ok { "ok" } else { "FAILED" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pilots_are_counted_by_kind_and_life() {
        let names: Vec<String> = [
            "bot-11-0",
            "bot-11-0.life2",
            "bot-11-0.life3",
            "bot-11-1",
            "bot-11-1",
            "bot-11-19.2",
            "bot-11-19.life2",
            "ann",
        ]
        .map(String::from)
        .to_vec();
        let p = count_pilots(names.iter(), 11, 20);
        assert_eq!(
            (p.learners_first, p.learners_later, p.learners_broke),
            (2, 2, 1)
        );
        assert_eq!((p.random_first, p.random_later, p.random_broke), (1, 1, 1));
    }

    #[test]
    fn the_last_tenth_of_the_bots_are_the_random_ones() {
        assert_eq!(is_random("bot-11-0", 11, 20), Some(false));
        assert_eq!(is_random("bot-11-17", 11, 20), Some(false));
        assert_eq!(is_random("bot-11-18", 11, 20), Some(true));
        assert_eq!(is_random("bot-11-18.life3", 11, 20), Some(true));
        assert_eq!(is_random("bot-11-17.life2.2", 11, 20), Some(false));
        assert_eq!(is_random("bot-11-17.2", 11, 20), Some(false));
        assert_eq!(is_random("ann", 11, 20), None);
    }
}
