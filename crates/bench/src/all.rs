//! `mltrader-bench` with no benchmark named: runs every benchmark of the project, each as its
//! own process of this same binary with `--json` (so one benchmark's threads, memory and
//! files never skew the next), and prints one table of their key figures with the machine's
//! core count. `--json` prints every benchmark's whole JSON instead.
//!
//! Only runs and reads; the figures and their targets are each benchmark's own.

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::Value;

use super::Size;

/// One benchmark to run: its subcommand and the arguments it takes besides `--size`/`--json`.
struct Bench {
    name: &'static str,
    args: &'static [&'static str],
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "storage",
        args: &[],
    },
    Bench {
        name: "jumps",
        args: &[],
    },
    Bench {
        name: "tick",
        args: &[],
    },
    Bench {
        name: "api",
        args: &[],
    },
    Bench {
        name: "instances",
        args: &[],
    },
    Bench {
        name: "swarm",
        args: &[],
    },
];

/// One line of the table: a figure, its unit, and the target it is held to (if any).
struct Row {
    bench: &'static str,
    what: &'static str,
    value: Option<f64>,
    unit: &'static str,
    target: Option<(&'static str, f64)>,
}

fn num(v: &Value, path: &str) -> Option<f64> {
    v.pointer(path).and_then(Value::as_f64)
}

/// The storage bench's figure for the writer phase `key`.
fn writers(v: &Value, key: &str, field: &str) -> Option<f64> {
    v["writers"]
        .as_array()?
        .iter()
        .find(|w| w["key"] == key)
        .and_then(|w| w[field].as_f64())
}

fn rows(name: &str, v: &Value) -> Vec<Row> {
    let row = |what, value, unit, target| Row {
        bench: match name {
            "storage" => "storage",
            "jumps" => "jumps",
            "tick" => "tick",
            "swarm" => "swarm",
            "instances" => "instances",
            _ => "api",
        },
        what,
        value,
        unit,
        target,
    };
    match name {
        "storage" => vec![
            row("raw write+fdatasync", num(v, "/raw/ops_per_s"), "/s", None),
            row(
                "1 writer p99 ack / raw p99",
                num(v, "/single_writer_p99_over_raw_p99"),
                "x",
                Some(("<=", 3.0)),
            ),
            row(
                "256 writers durable appends",
                writers(v, "w256_async", "records_per_s"),
                "/s",
                Some((">=", 1_000_000.0)),
            ),
            row(
                "replay",
                num(v, "/replay/scan_records_per_s"),
                "records/s",
                Some((">=", 2_000_000.0)),
            ),
        ],
        "jumps" => vec![
            row(
                "durable jumps",
                num(v, "/jumps_per_s"),
                "/s",
                Some((">=", 100_000.0)),
            ),
            row(
                "commit p99 (64 players)",
                num(v, "/commit_p99_ms"),
                "ms",
                Some(("<", 2.0)),
            ),
        ],
        "tick" => vec![
            row(
                "worst shard tick p99",
                num(v, "/worst_tick_p99_us").map(|us| us / 1000.0),
                "ms",
                Some(("<", 100.0)),
            ),
            row(
                "memory per player",
                num(v, "/rss_bytes_per_player"),
                "B",
                Some(("<", 2048.0)),
            ),
            row(
                "battle tick p99",
                num(v, "/battle/tick_p99_us").map(|us| us / 1000.0),
                "ms",
                Some(("<", 100.0)),
            ),
        ],
        "instances" => vec![
            row("split 1,000 players", num(v, "/split_ms"), "ms", None),
            row("merge them back", num(v, "/merge_ms"), "ms", None),
            row(
                "jumps while splitting/merging",
                num(v, "/jumps_per_s"),
                "/s",
                None,
            ),
        ],
        "swarm" => vec![
            row(
                "swarm jumps over HTTP",
                num(v, "/swarm/jumps_per_s"),
                "/s",
                None,
            ),
            row(
                "swarm trades over HTTP",
                num(v, "/swarm/trades_per_s"),
                "/s",
                None,
            ),
            row(
                "actions acknowledged",
                num(v, "/acks/acknowledged"),
                "",
                Some((">=", 1.0)),
            ),
            row(
                "acknowledged, missing from the logs",
                num(v, "/acks/missing"),
                "",
                Some(("<=", 0.0)),
            ),
        ],
        _ => vec![
            row(
                "GET /v1/me",
                num(v, "/status_per_s"),
                "req/s",
                Some((">=", 50_000.0)),
            ),
            row("GET /v1/me p99", num(v, "/status_p99_ms"), "ms", None),
            row("POST /v1/travel", num(v, "/travel_per_s"), "req/s", None),
        ],
    }
}

fn verdict(value: Option<f64>, target: Option<(&str, f64)>) -> String {
    let (Some(v), Some((op, t))) = (value, target) else {
        return String::new();
    };
    let met = match op {
        "<=" => v <= t,
        "<" => v < t,
        _ => v >= t,
    };
    format!("{op} {t}: {}", if met { "met" } else { "NOT met" })
}

pub fn run(size: Size, json: bool) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let size_arg = match size {
        Size::Small => "small",
        Size::Large => "large",
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results = serde_json::Map::new();
    let mut failed = false;
    for (i, b) in BENCHES.iter().enumerate() {
        eprintln!(
            "[{}/{}] mltrader-bench {} --size {size_arg} ...",
            i + 1,
            BENCHES.len(),
            b.name
        );
        let started = Instant::now();
        let out = Command::new(&exe)
            .args([b.name, "--size", size_arg, "--json"])
            .args(b.args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run bench {}", b.name))?;
        let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        match (out.status.success(), parsed) {
            (true, Some(v)) => {
                eprintln!("      done in {:.0} s", started.elapsed().as_secs_f64());
                results.insert(b.name.to_string(), v);
            }
            _ => {
                failed = true;
                eprintln!("      bench {} failed ({})", b.name, out.status);
                results.insert(b.name.to_string(), Value::Null);
            }
        }
    }
    if json {
        let all = serde_json::json!({ "size": size_arg, "cores": cores, "benches": results });
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        println!("mltrader-bench --size {size_arg}: {cores} cores, one process a benchmark");
        println!(
            "  {:<8} {:<30} {:>14} {:<10} target",
            "bench", "figure", "value", "unit"
        );
        for b in BENCHES {
            let v = &results[b.name];
            for r in rows(b.name, v) {
                let value = r.value.map_or("failed".to_string(), |x| {
                    if x >= 100.0 {
                        format!("{x:.0}")
                    } else {
                        format!("{x:.2}")
                    }
                });
                println!(
                    "  {:<8} {:<30} {:>14} {:<10} {}",
                    r.bench,
                    r.what,
                    value,
                    r.unit,
                    verdict(r.value, r.target)
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_the_benchmarks_json_and_judge_targets() {
        let jumps = serde_json::json!({"jumps_per_s": 150000.0, "commit_p99_ms": 3.0});
        let r = rows("jumps", &jumps);
        assert_eq!(r[0].value, Some(150000.0));
        assert_eq!(verdict(r[0].value, r[0].target), ">= 100000: met");
        assert_eq!(verdict(r[1].value, r[1].target), "< 2: NOT met");
        let storage = serde_json::json!({"writers": [{"key": "w256_async", "records_per_s": 5.0}]});
        assert_eq!(rows("storage", &storage)[2].value, Some(5.0));
        assert_eq!(rows("storage", &storage)[0].value, None, "missing is None");
    }
}
