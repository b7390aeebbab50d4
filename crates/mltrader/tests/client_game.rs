//! The game through the real client: a profitable trade run across three systems found from
//! the economy view, and fights (`attack`) that destroy a ship, respawn its pilot with a basic
//! ship at home and leave its cargo to `loot`.

mod common;

use std::time::{Duration, Instant};

use common::{Player, Server};
use serde_json::Value;

/// Runs `args` (with `--json`) as `p` until `done` holds of the answer (at most 20 s).
fn until(p: &Player, args: &[&str], done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = p.run(args).ok().json();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{args:?} never came: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Hold units one unit of `good` takes.
fn hold_units(good: &str) -> u64 {
    if good == "ore" || good == "metals" {
        2
    } else {
        1
    }
}

#[test]
fn a_trade_run_across_three_systems_through_the_client_makes_a_profit() {
    let server = Server::start(&[]);
    let ann = Player::join(&server, "Ann");
    let systems = ann.run(&["systems", "--json"]).ok().json();
    let systems = systems.as_array().unwrap();
    let sol = systems.iter().find(|s| s["name"] == "Sol").unwrap();
    let next_door: Vec<&str> = sol["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();

    // What Sol sells now, and what every system pays, as the galaxy view heard it.
    let economy = until(&ann, &["economy", "--json"], |e| {
        e["systems"].as_array().map(Vec::len) == Some(systems.len())
    });
    let market = ann.run(&["market", "--json"]).ok().json();
    assert_eq!(
        (&market["system"], &market["live"]),
        (&"Sol".into(), &true.into())
    );
    let credits = 1_000u64;
    // The best run from Sol to a system at least two jumps away: Sol, a system between, the
    // market: three systems.
    let mut best: Option<(i64, String, u64, String)> = None;
    for q in market["goods"].as_array().unwrap() {
        let good = q["good"].as_str().unwrap();
        let Some(buy) = q["buy_cr"].as_u64() else {
            continue;
        };
        // A margin for prices rising as we buy: spend at most 80% of the purse.
        let qty = (credits * 8 / 10 / buy).min(60 / hold_units(good));
        for s in economy["systems"].as_array().unwrap() {
            let name = s["system"].as_str().unwrap();
            if name == "Sol" || next_door.contains(&name) {
                continue;
            }
            // A seller gets the mid price less 5%.
            let sell = s["prices"][good].as_u64().unwrap() * 95 / 100;
            let profit = (sell as i64 - buy as i64) * qty as i64;
            if best.as_ref().is_none_or(|b| profit > b.0) {
                best = Some((profit, good.to_string(), qty, name.to_string()));
            }
        }
    }
    let (expected, good, qty, dest) = best.unwrap();
    assert!(expected > 100, "no profitable run from Sol: {economy}");
    eprintln!("the run: {qty} {good} from Sol to {dest}, about {expected} cr to make");
    let qty_s = qty.to_string();

    let bought = ann.run(&["buy", &good, &qty_s]).ok();
    assert!(
        bought
            .stdout
            .starts_with(&format!("Bought {qty} {good} for ")),
        "{bought:?}"
    );
    assert!(
        bought
            .stdout
            .contains(&format!("hold {}/60", qty * hold_units(&good))),
        "{bought:?}"
    );
    let trip = ann.run(&["travel", "--refuel", &dest]).ok();
    let jumps = trip.stdout.matches("> Arrived at").count();
    assert!(jumps >= 2, "through three systems at least: {trip:?}");
    assert!(
        trip.stdout.contains(&format!("> Arrived at {dest}\n")),
        "{trip:?}"
    );
    let there = ann.run(&["market", "--all"]).ok();
    assert!(
        there.stdout.starts_with(&format!("{dest} (")) && there.stdout.contains("Heard: Sol: "),
        "{there:?}"
    );
    let sold = ann.run(&["sell", &good, &qty_s, "--json"]).ok().json();
    assert_eq!(sold["player"]["cargo"], serde_json::json!({}));
    let me = ann.run(&["status", "--json"]).ok().json();
    assert_eq!(me["system"], dest.as_str());
    let after = me["player"]["credits"].as_u64().unwrap();
    assert!(
        after > credits,
        "a run of {qty} {good} from Sol to {dest} should pay: {credits} cr -> {after} cr"
    );
    let status = ann.run(&["status"]).ok();
    assert!(
        status.stdout.contains("hull 100, hold 0/60: empty"),
        "{status:?}"
    );
}

#[test]
fn a_fight_through_the_client_destroys_a_ship_whose_pilot_respawns_and_whose_cargo_is_looted() {
    let server = Server::start(&[]);
    let ann = Player::join(&server, "Ann");
    let bob = Player::join(&server, "Bob");
    let bought = bob.run(&["buy", "ore", "10", "--json"]).ok().json();
    let bob_credits = bought["player"]["credits"].clone();

    // Refusals: yourself, someone not here, nobody at all.
    let me = ann.run(&["attack", "Ann"]);
    assert_eq!(me.code, 1, "{me:?}");
    assert!(me.stderr.contains("cannot attack yourself"), "{me:?}");
    let nobody = ann.run(&["attack", "--json", "Nobody"]);
    assert_eq!(nobody.code, 1, "{nobody:?}");
    assert_eq!(nobody.json()["error"]["code"], "not_here");
    assert_eq!(ann.run(&["attack"]).code, 2, "a target or --cease");

    // Ann fires at Bob until his ship is destroyed.
    let fight = ann.run(&["attack", "Bob"]).ok();
    let lines: Vec<&str> = fight.stdout.lines().collect();
    assert_eq!(
        lines[0], "> Firing at Bob every tick (your hull 100)",
        "{fight:?}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("> Bob's ship was destroyed; its cargo is wreck #0: `mltrader loot 0`"),
        "{fight:?}"
    );
    // Bob respawned in place (Sol is home) with a basic ship, his credits kept.
    let bob_now = bob.run(&["status", "--json"]).ok().json();
    assert_eq!(bob_now["system"], "Sol");
    assert_eq!(bob_now["player"]["hull"], 100);
    assert_eq!(bob_now["player"]["cargo"], serde_json::json!({}));
    assert_eq!(bob_now["player"]["credits"], bob_credits);
    let wrecks = ann.run(&["wrecks"]).ok();
    assert!(
        wrecks
            .stdout
            .starts_with("Wrecks in Sol:\n  #0  Bob's ship: ore 10 ("),
        "{wrecks:?}"
    );
    let loot = ann.run(&["loot"]).ok();
    assert_eq!(loot.stdout, "Took ore 10 from wreck #0; hold 20/60\n");
    let again = ann.run(&["loot"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("no wrecks in Sol to loot"),
        "{again:?}"
    );
    let status = ann.run(&["status"]).ok();
    assert!(
        status.stdout.contains("hull 100, hold 20/60: ore 10"),
        "{status:?}"
    );

    // Both sides firing: one ship goes down (maybe both, in the same tick), and the command
    // says which; whoever went down is back in a basic ship.
    let cy = Player::join(&server, "Cy");
    let order = cy
        .run(&["attack", "--no-wait", "--json", "Ann"])
        .ok()
        .json();
    assert_eq!(order["target"], "Ann");
    let duel = ann.run(&["attack", "--json", "Cy"]).ok().json();
    let outcome = duel["outcome"].as_str().unwrap();
    assert!(["won", "lost"].contains(&outcome), "{duel}");
    let loser = if outcome == "won" { &cy } else { &ann };
    let back = loser.run(&["status", "--json"]).ok().json();
    assert_eq!(back["system"], "Sol", "{back}");
    assert_eq!(
        (&back["player"]["hull"], &back["player"]["cargo"]),
        (&100.into(), &serde_json::json!({})),
        "{back}"
    );
    let ceased = ann.run(&["attack", "--cease"]).ok();
    assert_eq!(ceased.stdout, "Ceased fire\n");

    // Away from home, the loser is sent home.
    let dee = Player::join(&server, "Dee");
    let eve = Player::join(&server, "Eve");
    dee.run(&["travel", "Alpha Centauri"]).ok();
    eve.run(&["travel", "Alpha Centauri"]).ok();
    let fight = eve.run(&["attack", "--json", "Dee"]).ok().json();
    assert_eq!(fight["outcome"], "won", "{fight}");
    let dee_now = until(&dee, &["status", "--json"], |me| me["system"] == "Sol");
    assert_eq!(dee_now["player"]["hull"], 100);
    assert!(
        dee_now["player"]["fuel"] == dee_now["player"]["fuel_capacity"],
        "a full tank: {dee_now}"
    );
}
