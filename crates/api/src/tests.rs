//! Every response type and event round-trips through serde unchanged, and names exactly the
//! fields that `openapi.json`'s component schema of the same name lists: the document and the
//! types cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::*;

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

/// A schema with its `$ref` followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a local reference: {r}"));
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The property names of an object schema (the union over `allOf`) and the required ones.
fn fields(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = resolve(doc, schema);
    let mut names = BTreeSet::new();
    let mut required = BTreeSet::new();
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            let (n, r) = fields(doc, part);
            names.extend(n);
            required.extend(r);
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        names.extend(props.keys().cloned());
    }
    if let Some(req) = schema["required"].as_array() {
        required.extend(req.iter().filter_map(|r| r.as_str().map(str::to_string)));
    }
    (names, required)
}

/// Serializes `value`, reads it back, and checks both are the same value and the same text;
/// returns the JSON.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> Value {
    let text = serde_json::to_string(value).expect("serializes");
    let back: T = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{text} does not read back as the type: {e}"));
    assert_eq!(&back, value, "read back differently from {text}");
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    serde_json::from_str(&text).unwrap()
}

/// `value`'s JSON object has exactly the fields `schema` lists, and every required one.
fn same_fields(doc: &Value, what: &str, schema: &Value, json: &Value) {
    let keys: BTreeSet<String> = json
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {json}"))
        .keys()
        .cloned()
        .collect();
    let (names, required) = fields(doc, schema);
    assert_eq!(
        keys, names,
        "{what}: the type's fields (left) and openapi.json's (right) differ"
    );
    assert!(
        required.is_subset(&keys),
        "{what}: openapi.json requires {required:?}, the type gives {keys:?}"
    );
}

/// Round-trips `value` and checks it against `components.schemas.<schema>`.
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    doc: &Value,
    schema: &str,
    value: &T,
) {
    let json = round_trip(value);
    let s = &doc["components"]["schemas"][schema];
    assert!(s.is_object(), "openapi.json has no schema {schema}");
    same_fields(doc, schema, s, &json);
}

fn player() -> Player {
    Player {
        name: "Ann".into(),
        credits: 1000,
        fuel: 7,
        fuel_capacity: 20,
        hull: 100,
        hold: 40,
        // Not in alphabetical order: the order given is kept.
        cargo: [("ore", 10), ("food", 2)].into_iter().collect(),
        version: 4,
        hold_used: 22,
    }
}

fn landed() -> Landed {
    Landed {
        system: "Vega".into(),
        population: 3,
        others: 2,
    }
}

fn heard() -> HeardPrices {
    HeardPrices {
        system: "Vega".into(),
        slug: "vega".into(),
        age_ms: 1200,
        prices: BTreeMap::from([("food".to_string(), 12), ("ore".to_string(), 30)]),
    }
}

fn shard(instances: Vec<ShardStatus>) -> ShardStatus {
    ShardStatus {
        system: "Sol".into(),
        slug: "sol".into(),
        instance: 1,
        shard: "sol".into(),
        instance_name: "Sol".into(),
        merging: false,
        instances,
        population: 5,
        departing: 1,
        in_transit_towards: 2,
        tick: 900,
        tick_p50_us: 40,
        tick_p99_us: 120,
        tick_late_p50_us: 3,
        tick_late_p99_us: 9,
        dilation: 1.0,
        tick_period_us: 50_000,
        log_durable_seq: 77,
        log_next_seq: 78,
        state_hash: "0123abcd".into(),
        failed: Some("disk full".into()),
    }
}

#[test]
fn the_player_and_account_bodies_match_the_document() {
    let doc = doc();
    check(&doc, "Player", &player());
    check(
        &doc,
        "Joined",
        &Joined {
            name: "Ann".into(),
            token: "t0k3n".into(),
            system: "Sol".into(),
            player: player(),
        },
    );
    let jumping = Jumping {
        xfer: "sol:3".into(),
        from: "Sol".into(),
        to: "Vega".into(),
        eta_ms: Some(800),
    };
    check(&doc, "Jumping", &jumping);
    let opponent = Opponent {
        target: "Bob".into(),
        hull: 60,
    };
    check(&doc, "Opponent", &opponent);
    check(
        &doc,
        "Me",
        &Me {
            name: "Ann".into(),
            system: None,
            instance: Some(2),
            instance_name: Some("Sol #2".into()),
            notice: Some("Sol is crowded".into()),
            jumping: Some(jumping),
            player: Some(player()),
            attacking: Some(opponent),
        },
    );
}

#[test]
fn the_travel_and_map_bodies_match_the_document() {
    let doc = doc();
    check(&doc, "Landed", &landed());
    for landed in [None, Some(landed())] {
        check(
            &doc,
            "Traveled",
            &Traveled {
                xfer: "sol:3".into(),
                from: "Sol".into(),
                to: "Vega".into(),
                travel_ms: 1500,
                player: player(),
                landed,
            },
        );
    }
    check(
        &doc,
        "Refueled",
        &Refueled {
            player: player(),
            bought_units: 13,
            cost_cr: 26,
        },
    );
    check(
        &doc,
        "Repaired",
        &Repaired {
            player: player(),
            repaired_points: 30,
            cost_cr: 150,
        },
    );
    let lane = Lane {
        to: "Vega".into(),
        distance_ly: 4.5,
        fuel: 5,
        travel_ms: 1500,
    };
    check(&doc, "Lane", &lane);
    check(
        &doc,
        "System",
        &System {
            name: "Sol".into(),
            slug: "sol".into(),
            position_ly: [0.0, 1.5, -2.0],
            home: true,
            neighbours: vec!["Vega".into()],
            lanes: vec![lane],
            population: 5,
            in_transit_towards: 1,
            dilation: 1.0,
            instances: vec![InstancePopulation {
                instance: 1,
                name: "Sol".into(),
                population: 5,
                dilation: 1.0,
            }],
            home_region: Some("us".into()),
            served_in: Some("us".into()),
            as_of_s_ago: Some(3.5),
            served_in_reachable: Some(false),
        },
    );
    check(
        &doc,
        "Regions",
        &Regions {
            region: Some("eu".into()),
            regions: vec![RegionLink {
                region: "us".into(),
                systems: vec!["alpha-centauri".into()],
                reachable: false,
                since_s: 2.0,
                last_contact_s_ago: Some(2.5),
                round_trip_ms: None,
                copy_lag_messages: Some(3),
                copy_lag_s: None,
                populations: vec![HeardPopulation {
                    slug: "alpha-centauri".into(),
                    population: 4,
                    age_s: 2.5,
                }],
            }],
        },
    );
    let instance = &doc["components"]["schemas"]["System"]["properties"]["instances"]["items"];
    let json = round_trip(&InstancePopulation {
        instance: 2,
        name: "Sol #2".into(),
        population: 3,
        dilation: 0.5,
    });
    same_fields(&doc, "System.instances[]", instance, &json);
    let hop = Hop {
        from: "Sol".into(),
        to: "Vega".into(),
        distance_ly: 4.5,
        fuel: 5,
        travel_ms: 1500,
    };
    check(&doc, "Hop", &hop);
    check(
        &doc,
        "Route",
        &Route {
            from: "Sol".into(),
            to: "Vega".into(),
            jumps: 1,
            distance_ly: 4.5,
            fuel: 5,
            travel_ms: 1500,
            hops: vec![hop],
        },
    );
    check(
        &doc,
        "Scan",
        &Scan {
            system: "Sol".into(),
            instance: 1,
            population: 2,
            others: 1,
            names: vec!["Ann".into(), "Bob".into()],
            truncated: false,
        },
    );
    check(&doc, "ShardStatus", &shard(vec![shard(vec![])]));
    let entry = HistoryEntry {
        version: 2,
        kind: "refuel".into(),
        fields: BTreeMap::from([("units".to_string(), "5".to_string())]),
        src: Some("sol:9".into()),
    };
    check(&doc, "HistoryEntry", &entry);
    check(
        &doc,
        "History",
        &History {
            player: "Ann".into(),
            entries: vec![entry],
            truncated: true,
        },
    );
}

#[test]
fn the_market_and_combat_bodies_match_the_document() {
    let doc = doc();
    let quote = Quote {
        good: "ore".into(),
        stock: 300,
        mid_cr: 30,
        buy_cr: Some(33),
        sell_cr: None,
    };
    check(&doc, "Quote", &quote);
    check(&doc, "HeardPrices", &heard());
    let markets = &doc["components"]["schemas"]["Market"]["oneOf"];
    let live = round_trip(&Market::Live(LiveMarket {
        live: true,
        system: "Sol".into(),
        slug: "sol".into(),
        economy: "mining".into(),
        tick: 900,
        till_cr: 5000,
        goods: vec![quote],
        heard: vec![heard()],
        shocks: vec![MarketShock {
            kind: "mining_strike".into(),
            good: Some("ore".into()),
            until_tick: 2_570,
            remaining_ticks: 1_670,
        }],
    }));
    same_fields(&doc, "Market (live)", &markets[0], &live);
    let heard_market = round_trip(&Market::Heard(HeardMarket {
        live: false,
        heard: heard(),
    }));
    same_fields(&doc, "Market (heard)", &markets[1], &heard_market);
    for side in [TradeSide::Buy, TradeSide::Sell] {
        check(
            &doc,
            "Traded",
            &Traded {
                side,
                good: "ore".into(),
                qty: 3,
                total_cr: 99,
                fee_cr: 1,
                player: player(),
            },
        );
    }
    for target in [None, Some("Bob".to_string())] {
        check(
            &doc,
            "Attacking",
            &Attacking {
                target,
                player: player(),
            },
        );
    }
    let wreck = Wreck {
        id: 7,
        pilot: "Bob".into(),
        cargo: BTreeMap::from([("ore".to_string(), 4)]),
        age_ms: 300,
    };
    check(&doc, "Wreck", &wreck);
    check(
        &doc,
        "Wrecks",
        &Wrecks {
            system: "Sol".into(),
            wrecks: vec![wreck],
        },
    );
    check(
        &doc,
        "Looted",
        &Looted {
            wreck: 7,
            took: BTreeMap::from([("ore".to_string(), 4)]),
            player: player(),
        },
    );
    let best = BestPrice {
        system: "Vega".into(),
        price_cr: 30,
        age_ms: 1200,
    };
    let economy = GalaxyPrices {
        goods: vec![GoodSummary {
            good: "ore".into(),
            best_buy: Some(best.clone()),
            best_sell: Some(best),
            spread_cr: 0,
        }],
        systems: vec![heard()],
    };
    check(&doc, "Economy", &economy);
    let good = &doc["components"]["schemas"]["Economy"]["properties"]["goods"]["items"];
    same_fields(
        &doc,
        "Economy.goods[]",
        good,
        &round_trip(&economy.goods[0]),
    );
}

#[test]
fn the_error_body_and_codes_match_the_document() {
    let doc = doc();
    check(&doc, "Error", &ErrorBody::new("no_fuel", "not enough fuel"));
    let detail = &doc["components"]["schemas"]["Error"]["properties"]["error"];
    same_fields(
        &doc,
        "Error.error",
        detail,
        &round_trip(&ErrorDetail {
            code: "outcome_unknown".into(),
            message: "wait".into(),
            request_id: Some("0123abcd".into()),
        }),
    );
    let listed: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed, CODES.iter().copied().collect::<BTreeSet<_>>());
}

/// One of each event, with every optional field given.
fn every_event() -> Vec<StreamEvent> {
    use StreamEvent::*;
    let s = |t: &str| t.to_string();
    vec![
        Hello {
            player: s("Ann"),
            system: Some(s("Sol")),
        },
        Joined {
            player: s("Bob"),
            system: s("Sol"),
        },
        Arrived {
            player: s("Bob"),
            xfer: s("vega:2"),
            from: s("Vega"),
            system: s("Sol"),
            population: 2,
        },
        Left {
            player: s("Bob"),
            xfer: s("sol:4"),
            system: s("Sol"),
            to: s("Vega"),
        },
        Departed {
            xfer: s("sol:5"),
            from: s("Sol"),
            to: s("Vega"),
            travel_ms: 1500,
        },
        Progress {
            xfer: s("sol:5"),
            to: s("Vega"),
            remaining_ms: 700,
        },
        Landed {
            xfer: s("sol:5"),
            system: s("Vega"),
            population: 1,
        },
        Refueled {
            bought_units: 3,
            cost_cr: 6,
            fuel: 20,
            credits: 994,
        },
        Repaired {
            repaired_points: 30,
            cost_cr: 150,
            hull: 100,
            credits: 844,
        },
        Traded {
            side: TradeSide::Sell,
            good: s("ore"),
            qty: 2,
            total_cr: 60,
            credits: 1054,
        },
        Looted {
            wreck: 7,
            took: BTreeMap::from([(s("ore"), 4)]),
        },
        Attacked {
            by: s("Bob"),
            system: s("Sol"),
        },
        Destroyed {
            player: s("Bob"),
            by: s("Ann"),
            wreck: Some(8),
            system: s("Sol"),
        },
        Error {
            route: s("trade"),
            code: s("no_credits"),
            message: s("not enough credits"),
        },
        Lagged { missed: 12 },
        Instanced {
            system: s("Sol"),
            instance: 2,
            message: s("Sol is crowded: you are now in Sol #2"),
        },
    ]
}

#[test]
fn every_stream_event_matches_the_document() {
    let doc = doc();
    let branches = doc["components"]["schemas"]["Event"]["oneOf"]
        .as_array()
        .expect("Event is a oneOf");
    let events = every_event();
    assert_eq!(events.len(), branches.len(), "one sample per event type");
    for event in &events {
        let json = round_trip(event);
        assert_eq!(json["type"], event.name(), "the SSE name is the type");
        let branch = branches
            .iter()
            .find(|b| b["properties"]["type"]["const"] == event.name())
            .unwrap_or_else(|| panic!("openapi.json's Event has no `{}`", event.name()));
        same_fields(&doc, &format!("Event {}", event.name()), branch, &json);
    }
}

#[test]
fn requests_round_trip_and_omit_what_is_not_given() {
    let doc = doc();
    let travel = TravelRequest {
        to: "Vega".into(),
        from: None,
        wait: false,
    };
    assert_eq!(round_trip(&travel), serde_json::json!({"to": "Vega"}));
    let trade = TradeRequest {
        side: TradeSide::Buy,
        good: "ore".into(),
        qty: 3,
        limit_cr: Some(40),
    };
    same_fields(
        &doc,
        "TradeRequest",
        &doc["components"]["schemas"]["TradeRequest"],
        &round_trip(&trade),
    );
    assert_eq!(
        round_trip(&RefuelRequest { units: None }),
        serde_json::json!({})
    );
    let cease = AttackRequest { target: Some(None) };
    assert_eq!(round_trip(&cease), serde_json::json!({"target": null}));
    let too_big = format!("{{\"wreck\": {}}}", MAX_BODY_INTEGER + 1);
    assert!(serde_json::from_str::<LootRequest>(&too_big).is_err());
    assert!(serde_json::from_str::<RefuelRequest>(r#"{"units": null}"#).is_err());
    assert_eq!(
        round_trip(&RepairRequest { points: None }),
        serde_json::json!({})
    );
    assert!(serde_json::from_str::<RepairRequest>(r#"{"points": null}"#).is_err());
    assert!(serde_json::from_str::<AttackRequest>("{}").is_err());
}
