//! `mltrader-bench swarm`: the whole game end to end, as separate processes of this binary: a
//! `mltrader serve` on a scratch data directory (short jumps: 50 Hz ticks, one tick per light
//! year), a `mltrader swarm` of trader bots playing it over HTTP with an ack log, then the
//! server stopped and `mltrader check --acks` run on its data directory. Reports the swarm's
//! jumps/s, trades/s and profit per trip, and the actions the server acknowledged, how many of
//! them `check` found in the logs and how many it did not. Exits 1 when nothing was
//! acknowledged (a run that proves nothing) or an acknowledged action is missing.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};

use super::{scratch_dir, Size};

#[derive(Args, Debug)]
pub struct SwarmBenchArgs {
    /// Run size: `small` runs 50 bots for 10 s, `large` 200 bots for 60 s.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Bots (overrides the size's count).
    #[arg(long)]
    pub bots: Option<u64>,
    /// Where to put the scratch data directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// A free loopback port (the OS picks one; a race with another program is possible but rare).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub fn run(args: SwarmBenchArgs) -> anyhow::Result<ExitCode> {
    let (bots, seconds) = match args.size {
        Size::Small => (args.bots.unwrap_or(50), 10),
        Size::Large => (args.bots.unwrap_or(200), 60),
    };
    let dir = scratch_dir(args.dir.as_deref(), "swarm")?;
    let result = measure(&dir, bots, seconds);
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(exit_code(&f));
    }
    let s = &f["swarm"];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("bench swarm: {bots} bots over HTTP for {seconds} s against `serve --tick-hz 50 --ticks-per-ly 1`, {cores} cores shared");
    println!(
        "  jumps {:.0} /s, trades {:.0} /s, {} acknowledged actions, {} errors",
        s["jumps_per_s"].as_f64().unwrap_or(0.0),
        s["trades_per_s"].as_f64().unwrap_or(0.0),
        s["acks"],
        s["errors"]
    );
    println!(
        "  profit per trip: learners {:.0} cr, random bots {:.0} cr",
        s["mean_profit_per_trip_cr"].as_f64().unwrap_or(0.0),
        s["baseline_mean_profit_per_trip_cr"]
            .as_f64()
            .unwrap_or(0.0)
    );
    let acks = &f["acks"];
    println!(
        "  check --acks after the stop: {} acknowledged, {} found in the logs, {} missing{}",
        acks["acknowledged"],
        acks["found"],
        acks["missing"],
        if f["check_exit_ok"] == true {
            ""
        } else {
            " (check FAILED: see --json)"
        }
    );
    Ok(exit_code(&f))
}

/// Success only when actions were acknowledged and `check` found every one of them.
fn exit_code(f: &Value) -> ExitCode {
    let acks = &f["acks"];
    let acknowledged = acks["acknowledged"].as_u64().unwrap_or(0);
    let missing = acks["missing"].as_u64().unwrap_or(u64::MAX);
    if acknowledged == 0 {
        eprintln!("bench swarm: the server acknowledged nothing, so the run proves nothing");
        return ExitCode::FAILURE;
    }
    if missing > 0 || f["check_exit_ok"] != true {
        eprintln!("bench swarm: {missing} acknowledged actions are not in the logs");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The ack counts of a `check --json --acks` report: acknowledged (lines of the ack log),
/// found (confirmed in the logs) and missing (the rest).
fn ack_counts(report: &Value) -> Value {
    let acknowledged = report["acks"]["acks"].as_u64().unwrap_or(0);
    let found = report["acks"]["confirmed"].as_u64().unwrap_or(0);
    json!({
        "acknowledged": acknowledged,
        "found": found,
        "missing": acknowledged.saturating_sub(found),
    })
}

fn measure(dir: &std::path::Path, bots: u64, seconds: u64) -> anyhow::Result<Value> {
    let exe = super::mltrader_exe()?;
    let data = dir.join("data");
    let acks = dir.join("acks.jsonl");
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    eprintln!("starting mltrader serve on {url}...");
    let mut server = Command::new(&exe)
        .args([
            "serve",
            "--tick-hz",
            "50",
            "--ticks-per-ly",
            "1",
            "--listen",
        ])
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
    eprintln!("running {bots} bots for {seconds} s...");
    let swarm = Command::new(&exe)
        .args(["swarm", "--seed", "1", "--json", "--server", &url])
        .args([
            "--bots",
            &bots.to_string(),
            "--duration",
            &seconds.to_string(),
        ])
        .arg("--ack-log")
        .arg(&acks)
        .stderr(Stdio::null())
        .output()
        .context("cannot run mltrader swarm")?;
    // SIGTERM: the server flushes and snapshots, as an operator stops it.
    #[cfg(unix)]
    // SAFETY: kill(2) on the child's own pid; it touches no memory of ours.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let _ = server.wait();
    let summary: Value = serde_json::from_slice(&swarm.stdout)
        .with_context(|| format!("the swarm printed no summary ({})", swarm.status))?;
    eprintln!("checking the data directory against the ack log...");
    let check = Command::new(&exe)
        .args(["check", "--json", "--data"])
        .arg(&data)
        .arg("--acks")
        .arg(&acks)
        .stderr(Stdio::null())
        .output()
        .context("cannot run mltrader check")?;
    let report: Value = serde_json::from_slice(&check.stdout).unwrap_or(Value::Null);
    Ok(json!({
        "bots": bots,
        "seconds": seconds,
        "swarm": summary,
        "check_exit_ok": check.status.success(),
        "acks": ack_counts(&report),
        "check": report,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(acknowledged: u64, found: u64, check_ok: bool) -> Value {
        let report = json!({"acks": {"acks": acknowledged, "confirmed": found}});
        json!({"check_exit_ok": check_ok, "acks": ack_counts(&report)})
    }

    #[test]
    fn counts_are_reported_and_a_run_that_proves_nothing_fails() {
        let f = run_with(120, 118, false);
        assert_eq!(
            f["acks"],
            json!({"acknowledged": 120, "found": 118, "missing": 2})
        );
        assert_eq!(exit_code(&f), ExitCode::FAILURE, "two missing");
        assert_eq!(exit_code(&run_with(120, 120, true)), ExitCode::SUCCESS);
        assert_eq!(
            exit_code(&run_with(0, 0, true)),
            ExitCode::FAILURE,
            "nothing acknowledged: check passes, and proves nothing"
        );
        let no_report = json!({"check_exit_ok": true, "acks": ack_counts(&Value::Null)});
        assert_eq!(exit_code(&no_report), ExitCode::FAILURE);
    }
}
