//! `mltrader economy --report` against `mltrader check` on the same data directory, written by
//! a real server and a few trading, fighting bots: the report's credits created less destroyed
//! are the credits check finds held, each named source and sink equals check's, a window cut
//! in two adds up to the whole, and goods by rule equal check's.
//!
//! Small by default (6 bots for 6 s); `MLTRADER_ECONOMY_TEST_BOTS` and
//! `MLTRADER_ECONOMY_TEST_SECONDS` make it larger by hand.

mod common;

use std::path::Path;

use common::{mltrader, run_swarm, Server};
use serde_json::Value;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `mltrader economy --report --json` over `data`, with `extra` flags.
fn report(data: &Path, extra: &[&str]) -> Value {
    let out = mltrader()
        .args(["economy", "--report", "--json", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .expect("run mltrader economy --report");
    assert!(
        out.status.success(),
        "economy --report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

fn sum(map: &Value) -> i128 {
    map.as_object()
        .map(|m| m.values().map(|v| v.as_u64().unwrap() as i128).sum())
        .unwrap_or(0)
}

#[test]
fn the_economy_report_adds_up_with_checks_conservation_figures() {
    let bots = env_or("MLTRADER_ECONOMY_TEST_BOTS", 6).to_string();
    let seconds = env_or("MLTRADER_ECONOMY_TEST_SECONDS", 6).to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The game's own shocks (the tests' servers are quiet by default).
    let shocks = sim::shock::SHOCKS_PER_100K_TICKS.to_string();
    let server = Server::start_with(Some(&data), &[], &["--shocks-per-100k-ticks", &shocks]);
    run_swarm(
        server.url(),
        &[
            "--bots",
            &bots,
            "--duration",
            &seconds,
            "--seed",
            "5",
            "--attack-percent",
            "50",
        ],
    );
    let status = server.stop();
    assert!(status.success(), "the server stopped with {status}");

    let out = mltrader()
        .args(["check", "--json", "--data"])
        .arg(&data)
        .output()
        .expect("run check");
    let check: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert!(out.status.success(), "check failed: {check:#}");

    let whole = report(&data, &[]);
    let r = &whole["report"];
    let flows = &r["flows"];
    let created = sum(&flows["credits_created"]);
    let destroyed = sum(&flows["credits_destroyed"]);
    let held = check["credits_held"].as_u64().unwrap() as i128;
    assert_eq!(created, check["credits_granted"].as_u64().unwrap() as i128);
    assert_eq!(destroyed, check["credits_spent"].as_u64().unwrap() as i128);
    assert_eq!(created - destroyed, held, "sources - sinks = held");
    assert_eq!(r["circulation_at_end_cr"].as_i64().unwrap() as i128, held);
    assert_eq!(flows["credits_created"], check["credits_by_source"]);
    assert_eq!(flows["credits_destroyed"], check["credits_by_sink"]);
    assert!(
        flows["credits_destroyed"]["fuel"].as_u64() > Some(0),
        "the bots bought fuel: {flows:#}"
    );
    assert!(flows["trades"].as_u64() > Some(0), "the bots traded");
    // Goods by rule: each (rule, good) equals check's where check counted any.
    for (side, key) in [
        ("goods_made", "goods_by_source"),
        ("goods_destroyed", "goods_by_sink"),
    ] {
        for (rule, per_good) in check[key].as_object().unwrap() {
            for (good, n) in per_good.as_object().unwrap() {
                let mine = flows[side][rule][good].as_u64().unwrap_or(0);
                assert_eq!(Some(mine), n.as_u64(), "{side} {rule} {good}");
            }
        }
    }
    // The buckets add up to the window, and the last one's circulation is what is held.
    let buckets = r["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty());
    let in_buckets: i128 = buckets
        .iter()
        .map(|b| sum(&b["flows"]["credits_created"]) - sum(&b["flows"]["credits_destroyed"]))
        .sum();
    let start = r["circulation_at_start_cr"].as_i64().unwrap() as i128;
    assert_eq!(start + in_buckets, held);
    assert_eq!(
        buckets.last().unwrap()["circulation_cr"].as_i64().unwrap() as i128,
        held
    );

    // A window cut in two: the first half's end is the second half's start, and the two
    // halves' flows add up to the whole.
    let last = r["last_tick"].as_u64().unwrap();
    assert!(last > 20, "the galaxy ticked: {last}");
    let cut = (last / 2).to_string();
    let first = report(&data, &["--to", &cut]);
    let second = report(&data, &["--from", &cut]);
    assert_eq!(
        first["report"]["circulation_at_end_cr"],
        second["report"]["circulation_at_start_cr"]
    );
    let created_halves = sum(&first["report"]["flows"]["credits_created"])
        + sum(&second["report"]["flows"]["credits_created"]);
    assert_eq!(created_halves, created);
    assert_eq!(
        second["report"]["circulation_at_end_cr"].as_i64().unwrap() as i128,
        held
    );
    assert!(!r["prices"].as_array().unwrap().is_empty(), "price history");
    assert_eq!(r["goods"].as_array().unwrap().len(), 8);
}
