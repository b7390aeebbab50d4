//! `mltrader region promote` reconciles the copy with the survivor's records (issue 20,
//! decision 5; docs/PROTOCOL.md "Across regions" steps 4 and 5), on two test regions (one
//! server each, 10 ms each way) and the default galaxy (Sol in `eu`, Alpha Centauri in `us`).
//!
//! The copy of `us` is made current, then frozen (it lags from then on, as a copy behind a slow
//! link would), and two things happen that only the survivor's records keep:
//! - alice, in Alpha Centauri (`us`), jumps to Sol: her `depart` is in `us`'s log only, her
//!   jump on Sol's pair subject in `eu`: promote must apply the departure (else she is served in
//!   Alpha Centauri and lands in Sol: twice);
//! - bob jumps from Sol to Alpha Centauri: his `depart` is in `eu`'s log, his jump on `us`'s
//!   pair subject only: promote must publish it again (else he is nowhere).
//!
//! Then `us` is killed and promoted into `eu`; every player must be in exactly one place
//! (a system, or a jump not landed), nothing duplicated, and promote's JSON must say what it
//! applied and republished.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::nats_nodes::region_cmd;
use mesh::codec::{encode_event, event_kind, xfer_text, Jump};
use mesh::links::Links;
use mesh::protocol::handover::Pair;
use nats::logs::NatsLogs;
use nats::pairs::decode_message;
use nats::testing::TestRegions;
use nats::NatsLinks;
use sim::galaxy::{Galaxy, SystemId};
use sim::instance::InstanceId;
use sim::rules::Rules;
use sim::system::{Event, SystemState};
use store::backend::{system_log, LogStore};
use store::lease::LeaseRecord;
use store::log::{Log, Position};
use store::seq::Seq;

const TICKS_PER_LY: u32 = 10;

fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One system's log written as its owner would: each event applied, appended, durable.
struct Owner {
    galaxy: Arc<Galaxy>,
    state: SystemState,
    log: Log,
}

impl Owner {
    /// Instance `at`'s log (`alpha-centauri.2`), written as its owner would.
    fn open_instance(galaxy: &Arc<Galaxy>, logs: &NatsLogs, at: InstanceId) -> Owner {
        let (log, _) = logs
            .for_unit(1)
            .open(
                &system_log(&at.slug(galaxy)),
                Position::BEGINNING,
                &mut |_| Ok(()),
            )
            .unwrap();
        Owner {
            galaxy: galaxy.clone(),
            state: SystemState::new_instance(galaxy, at),
            log,
        }
    }

    /// `name` moves from this primary to its instance `to` (a move within the unit, as the
    /// instance policy makes one): the instance opened (`split`) if it is not, `depart` of no
    /// fuel here, `arrive` there, then `depart.done` here.
    fn move_to(&mut self, name: &str, to: &mut Owner) {
        let dest = to.state.instance_id();
        if !self.state.instances.contains(&dest.n) {
            self.write(Event::Split { instance: dest.n });
        }
        let xfer = self.state.next_xfer;
        self.write(Event::Depart {
            xfer,
            player: name.to_string(),
            to: dest,
            fuel: 0,
        });
        // The landing first: a move's `depart.done` waits until its landing is durable.
        let player = self.state.departing[&xfer].player.clone();
        let from = self.state.instance_id();
        let arrive = to.state.decide_arrive(from, xfer, &player).unwrap();
        to.write(arrive);
        self.write(Event::DepartDone { xfer });
    }

    fn open(galaxy: &Arc<Galaxy>, logs: &NatsLogs, system: SystemId) -> Owner {
        let (log, _) = logs
            .for_unit(1)
            .open(
                &system_log(galaxy.slug(system)),
                Position::BEGINNING,
                &mut |_| Ok(()),
            )
            .unwrap();
        Owner {
            galaxy: galaxy.clone(),
            state: SystemState::new(galaxy, system),
            log,
        }
    }

    fn write(&mut self, event: Event) {
        let t = self.state.tick;
        self.state.apply(t, &event).unwrap();
        let version = self.state.version_after(&event).unwrap_or_default();
        let id = self.state.instance_id();
        let g = self.galaxy.clone();
        let seq = self
            .log
            .append(event_kind(&event), |l| {
                encode_event(l, &g, id, t, &event, version)
            })
            .unwrap();
        self.log.wait_durable(seq).unwrap();
    }

    /// `name` departs towards `to`: the `depart` durable, the jump as published.
    fn depart(&mut self, name: &str, to: SystemId) -> Jump {
        let event = self.state.decide_depart(&self.galaxy, name, to).unwrap();
        let Event::Depart { xfer, .. } = &event else {
            unreachable!()
        };
        let xfer = *xfer;
        self.write(event);
        let d = &self.state.departing[&xfer];
        Jump {
            from: self.state.instance_id(),
            xfer,
            to: d.to,
            t: self.state.tick,
            travel_ticks: self.galaxy.travel_ticks(self.state.id, to, TICKS_PER_LY),
            player: d.player.clone(),
            tseq: Seq(0),
        }
    }
}

fn wait<T>(future: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(future)
}

/// Makes `eu`'s copies of `us` (`mltrader region copy`) and waits until the copy of `MLT_LOGS`
/// holds everything `us_logs` stored and the copy of `MLT_JUMPS` lags by nothing.
fn copy_until_current(regions: &TestRegions, eu: &nats::Nats, us_logs: &NatsLogs) {
    region_cmd(regions, "eu", &["copy", "--nats-replicas", "1"]);
    let us_last = us_logs.last_sequence().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = nats::copies::copy_status(eu, "us").unwrap();
        let logs = status.iter().find(|c| c.stream == "MLT_LOGS").unwrap();
        let jumps = status.iter().find(|c| c.stream == "MLT_JUMPS").unwrap();
        if logs.copied_last_seq >= us_last && jumps.lag_messages == 0 && jumps.reachable {
            return;
        }
        assert!(Instant::now() < deadline, "copy not current: {status:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where each player is by these records: in a state (`where_`), departing from one, or in a
/// jump of `jumps` that its destination's state has not landed.
fn places_of(
    g: &Galaxy,
    states: &[(&str, &SystemState)],
    jumps: &[(Vec<Jump>, &SystemState)],
) -> BTreeMap<String, Vec<String>> {
    let mut places: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (where_, state) in states {
        for name in state.players.keys() {
            places
                .entry(name.clone())
                .or_default()
                .push(where_.to_string());
        }
        for d in state.departing.values() {
            places
                .entry(d.player.name.clone())
                .or_default()
                .push(format!("departing {where_}"));
        }
    }
    for (jumps, dest) in jumps {
        for j in jumps {
            let landed = dest.landed_upto.get(&j.from).is_some_and(|&u| u >= j.xfer);
            if !landed {
                places
                    .entry(j.player.name.clone())
                    .or_default()
                    .push(format!("jump {}", xfer_text(g, j.from, j.xfer)));
            }
        }
    }
    places
}

fn publish(links: &NatsLinks, jump: &Jump) {
    wait(links.publish(1, jump.clone())).unwrap();
}

/// The state of `system` as the logs of `logs` hold it.
fn replay(galaxy: &Galaxy, logs: &NatsLogs, system: SystemId) -> SystemState {
    replay_instance(galaxy, logs, InstanceId::primary(system))
}

/// The state of instance `id` as the logs of `logs` hold it.
fn replay_instance(galaxy: &Galaxy, logs: &NatsLogs, id: InstanceId) -> SystemState {
    let mut state = SystemState::new_instance(galaxy, id);
    logs.read(
        &system_log(&id.slug(galaxy)),
        Position::BEGINNING,
        &mut |rec| {
            if LeaseRecord::decode(rec)?.is_some() {
                return Ok(());
            }
            let (t, e) = mesh::codec::decode_event(galaxy, id, rec)?;
            state.apply(t, &e)?;
            Ok(())
        },
    )
    .unwrap();
    state
}

/// The jumps on the pair subject `from` → `to` of `links`' region, in order.
fn jumps_on(galaxy: &Galaxy, links: &NatsLinks, from: SystemId, to: SystemId) -> Vec<Jump> {
    let subject = links.subject(from, to);
    links
        .messages_of(from, to)
        .unwrap()
        .into_iter()
        .filter_map(|m| {
            decode_message(
                galaxy,
                &subject,
                Pair { from, to },
                mesh::protocol::handover::PairSeq(m.stream_seq),
                &m.payload,
            )
            .unwrap()
            .map(|a| a.jump)
        })
        .collect()
}

fn said(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `mltrader export` of region `region`'s streams (or its copy of `copy_of`'s) into `data`;
/// it must succeed.
fn export(regions: &TestRegions, region: &str, copy_of: Option<&str>, data: &Path) {
    let r = regions.region(region);
    let galaxy = workspace_root().join("crates/sim/src/galaxy/stars.toml");
    let mut cmd = common::mltrader();
    cmd.args(["export", "--nats", &r.urls().join(","), "--creds"])
        .arg(regions.creds())
        .args(["--nats-monitor", &r.monitors().join(",")])
        .args(["--nats-replicas", "1", "--region", region, "--galaxy"])
        .arg(&galaxy)
        .arg("--data")
        .arg(data);
    if let Some(other) = copy_of {
        cmd.args(["--copy-of", other]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "export {region} {copy_of:?}: {}",
        said(&out)
    );
}

/// `mltrader check` of the data directory `data`: its output.
fn check(data: &Path) -> std::process::Output {
    common::mltrader()
        .args(["check", "--data"])
        .arg(data)
        .output()
        .unwrap()
}

#[test]
fn promote_applies_the_departures_the_copy_lacks_and_republishes_the_survivors_jumps() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "regions reconcile")
    else {
        return;
    };
    let mut regions = TestRegions::start(exe, &["eu", "us"], 1, 10);
    let g = Arc::new(Galaxy::default_galaxy());
    let sol = g.by_slug("sol").unwrap();
    let ac = g.by_slug("alpha-centauri").unwrap();
    assert_eq!(g.region_of(sol), Some("eu"));
    assert_eq!(g.region_of(ac), Some("us"));
    assert!(g.has_lane(sol, ac), "a lane between Sol and Alpha Centauri");
    let homes = nats::region::galaxy_homes(&g).unwrap();

    let eu = regions.connect("eu", "eu-1");
    let us = regions.connect("us", "us-1");
    let eu_logs = NatsLogs::open(&eu, 1).unwrap();
    let us_logs = NatsLogs::open(&us, 1).unwrap();
    let eu_links = NatsLinks::open(&eu, g.clone(), 1, "eu-1").unwrap();
    eu_links.set_homes(homes.clone());
    let us_links = NatsLinks::open(&us, g.clone(), 1, "us-1").unwrap();
    us_links.set_homes(homes);

    // alice joins in Sol and lands in Alpha Centauri; the copy holds all of it.
    let rules = Rules::default();
    let mut at_sol = Owner::open(&g, &eu_logs, sol);
    let mut at_ac = Owner::open(&g, &us_logs, ac);
    for name in ["alice", "bob"] {
        let join = at_sol.state.decide_join(&g, &rules, name, "key").unwrap();
        at_sol.write(join);
    }
    let to_ac = at_sol.depart("alice", ac);
    publish(&eu_links, &to_ac);
    at_sol.write(Event::DepartDone { xfer: to_ac.xfer });
    let arrive = at_ac
        .state
        .decide_arrive(to_ac.from, to_ac.xfer, &to_ac.player)
        .unwrap();
    at_ac.write(arrive);

    copy_until_current(&regions, &eu, &us_logs);
    // From here the copy lags (frozen), as behind a slow link.
    nats::copies::freeze_copies(&eu, "us").unwrap();

    // alice leaves Alpha Centauri for Sol: her depart only in us, her jump in eu.
    let alice_back = at_ac.depart("alice", sol);
    publish(&us_links, &alice_back);
    at_ac.write(Event::DepartDone {
        xfer: alice_back.xfer,
    });
    // us's jumps' stream grows (fence marks of a us system's lanes within us), so that the
    // sequence eu's writer knows of Sol -> Alpha Centauri in us's stream is above what that
    // subject will have in eu's after the promotion.
    let us_ids: Vec<SystemId> = g
        .ids()
        .filter(|&id| g.region_of(id) == Some("us"))
        .collect();
    for epoch in 1..=4 {
        for &id in &us_ids {
            wait(us_links.fence_outgoing(id, epoch)).unwrap();
        }
    }
    let us_jumps_last = nats::export::JumpsReader::open(&us)
        .unwrap()
        .unwrap()
        .last_sequence()
        .unwrap();
    // bob leaves Sol for Alpha Centauri: his depart in eu, his jump only in us.
    let bob_out = at_sol.depart("bob", ac);
    publish(&eu_links, &bob_out);
    at_sol.write(Event::DepartDone { xfer: bob_out.xfer });
    drop(at_ac);
    let tmp = tempfile::tempdir().unwrap();
    // The copy as a data directory: Alpha Centauri's log as far as the copy goes (alice's
    // arrival, not her departure). Not a whole galaxy (her departure from Sol is in eu's
    // logs), so `check` of it alone says her arrival was never committed.
    let copy_dir = tmp.path().join("copy-of-us");
    export(&regions, "eu", Some("us"), &copy_dir);
    let ac_copy = std::fs::read_to_string(copy_dir.join("systems/alpha-centauri.log")).unwrap();
    assert!(
        ac_copy.contains(" arrive ") && !ac_copy.contains(" depart "),
        "the copy has alice's arrival and not her departure: {ac_copy}"
    );
    let copy_check = check(&copy_dir);
    println!("check of the copy of us alone: {}", said(&copy_check));
    regions.kill_region("us");

    let out = region_cmd(
        &regions,
        "eu",
        &[
            "promote",
            "us",
            "--into",
            "eu",
            "--json",
            "--ticks-per-ly",
            "10",
        ],
    );
    let promoted: BTreeMap<String, serde_json::Value> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["system"].as_str().unwrap().to_string(), p.clone()))
        .collect();
    let ac_out = &promoted["alpha-centauri"]["reconciled"];
    let alice_text = xfer_text(&g, alice_back.from, alice_back.xfer);
    let bob_text = xfer_text(&g, bob_out.from, bob_out.xfer);
    assert_eq!(
        ac_out["departures_applied"],
        serde_json::json!([format!("alice left by {alice_text}")]),
        "{ac_out}"
    );
    assert_eq!(
        ac_out["republished"],
        serde_json::json!([bob_text]),
        "{ac_out}"
    );
    assert_eq!(ac_out["unresolved"], serde_json::json!([]), "{ac_out}");

    // Every player in exactly one place, as eu's records now say (every pair subject in eu).
    for id in g.ids() {
        eu_links.set_home(g.slug(id), "eu");
    }
    // carol leaves Sol for Alpha Centauri after the promotion: the writer that knew the pair
    // subject in us's stream publishes to eu's (re-homed) one.
    let join = at_sol
        .state
        .decide_join(&g, &rules, "carol", "key")
        .unwrap();
    at_sol.write(join);
    let carol_out = at_sol.depart("carol", ac);
    publish(&eu_links, &carol_out);
    at_sol.write(Event::DepartDone {
        xfer: carol_out.xfer,
    });
    let carol_text = xfer_text(&g, carol_out.from, carol_out.xfer);
    let before_carol = eu_links.messages_of(sol, ac).unwrap();
    println!(
        "us's jumps' stream ended at {us_jumps_last}; Sol -> Alpha Centauri in eu: {} messages, the last at {:?}",
        before_carol.len(),
        before_carol.last().map(|m| m.stream_seq)
    );
    let ac_state = replay(&g, &eu_logs, ac);
    let sol_state = replay(&g, &eu_logs, sol);
    let towards_sol = jumps_on(&g, &eu_links, ac, sol);
    let towards_ac = jumps_on(&g, &eu_links, sol, ac);
    for jumps in [&towards_sol, &towards_ac] {
        let mut seen = std::collections::BTreeSet::new();
        for j in jumps {
            assert!(
                seen.insert(j.xfer),
                "jump {} stored twice",
                xfer_text(&g, j.from, j.xfer)
            );
        }
    }
    let places = places_of(
        &g,
        &[("alpha-centauri", &ac_state), ("sol", &sol_state)],
        &[(towards_sol, &sol_state), (towards_ac, &ac_state)],
    );
    assert_eq!(
        places.get("alice"),
        Some(&vec![format!("jump {alice_text}")]),
        "alice in exactly one place: {places:?}"
    );
    assert_eq!(
        places.get("bob"),
        Some(&vec![format!("jump {bob_text}")]),
        "bob in exactly one place: {places:?}"
    );
    assert_eq!(
        places.get("carol"),
        Some(&vec![format!("jump {carol_text}")]),
        "carol in exactly one place: {places:?}"
    );
    assert!(
        ac_state.next_xfer > alice_back.xfer,
        "alice's transfer number is used up in Alpha Centauri"
    );
    // The promoted region's export: the whole galaxy, clean.
    let promoted_dir = tmp.path().join("eu-promoted");
    export(&regions, "eu", None, &promoted_dir);
    let verdict = check(&promoted_dir);
    println!("check of eu after the promotion: {}", said(&verdict));
    assert!(
        verdict.status.success(),
        "check of eu's export: {}",
        said(&verdict)
    );

    // As if promote had stopped after its reconcile, before the homes: its first two steps
    // run again, and write nothing (the subjects hold the copy, then what promote and eu
    // wrote after it).
    let us_slugs: Vec<String> = g
        .ids()
        .filter(|&id| g.region_of(id) == Some("us"))
        .map(|id| g.slug(id).to_string())
        .collect();
    let again = nats::rehome::copy_systems(&eu, "us", &us_slugs).unwrap();
    for p in &again {
        assert_eq!(
            (p.messages_written, p.pair_messages_written),
            (0, 0),
            "a rerun copies nothing: {p:?}"
        );
        let first = promoted[&p.system]["home_epoch"].as_u64().unwrap();
        assert_eq!(p.home_epoch, first, "the same home epoch: {p:?}");
    }
    let epochs = again
        .iter()
        .map(|p| (g.by_slug(&p.system).unwrap(), p.home_epoch))
        .collect();
    let rerun = nats::reconcile::reconcile_promoted(&eu, &g, TICKS_PER_LY, &epochs).unwrap();
    for (system, r) in &rerun {
        assert!(
            r.departures_applied.is_empty() && r.republished.is_empty() && r.records_written == 0,
            "a rerun of the reconcile changes nothing in {}: {r:?}",
            g.slug(*system)
        );
    }
}

/// A copy that really lags (a 50 ms link, not frozen): `us` writes group commits of
/// `depart.void` records in Alpha Centauri as fast as they are durable and is killed right
/// after the last (the link cut first, so that what the proxy holds is lost with it); `eu`
/// promotes it. Prints the promotion's time (the command's whole run) and what its recovery
/// point said against what `us`'s stream truly held after the copy (its last sequence, read
/// before the kill). Asserts that the copy is a prefix of what `us` stored and that
/// every copied message is served by `eu`.
///
/// Size: `MLT_REGIONS_LAG_COMMITS` group commits of 10 records (default 20).
#[test]
fn a_lagging_copys_recovery_point_against_what_was_lost() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "regions lag") else {
        return;
    };
    let commits: u64 = std::env::var("MLT_REGIONS_LAG_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut regions = TestRegions::start(exe, &["eu", "us"], 1, 50);
    let g = Arc::new(Galaxy::default_galaxy());
    let ac = g.by_slug("alpha-centauri").unwrap();
    let eu = regions.connect("eu", "eu-1");
    let us = regions.connect("us", "us-1");
    let eu_logs = NatsLogs::open(&eu, 1).unwrap();
    NatsLinks::open(&eu, g.clone(), 1, "eu-1").unwrap();
    let us_logs = NatsLogs::open(&us, 1).unwrap();
    NatsLinks::open(&us, g.clone(), 1, "us-1").unwrap();
    let mut at_ac = Owner::open(&g, &us_logs, ac);
    at_ac.write(Event::DepartVoid {
        xfer: at_ac.state.next_xfer,
    });
    region_cmd(&regions, "eu", &["copy", "--nats-replicas", "1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while nats::copies::copy_status(&eu, "us")
        .unwrap()
        .iter()
        .any(|c| c.stream == "MLT_LOGS" && (c.copied_last_seq == 0 || c.lag_messages > 0))
    {
        assert!(Instant::now() < deadline, "copy never current");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..commits {
        let mut last = None;
        for _ in 0..10 {
            let xfer = at_ac.state.next_xfer;
            let event = Event::DepartVoid { xfer };
            let t = at_ac.state.tick;
            at_ac.state.apply(t, &event).unwrap();
            let id = at_ac.state.instance_id();
            let gg = g.clone();
            last = Some(
                at_ac
                    .log
                    .append(event_kind(&event), |l| {
                        encode_event(l, &gg, id, t, &event, Default::default())
                    })
                    .unwrap(),
            );
        }
        at_ac.log.wait_durable(last.unwrap()).unwrap();
    }
    let us_last = us_logs.last_sequence().unwrap();
    // The link cut first: what the proxy holds on its way (the 50 ms) is lost with the region,
    // as on a real link; then the region dies.
    regions.cut();
    drop(at_ac);
    regions.kill_region("us");

    let started = Instant::now();
    let out = region_cmd(&regions, "eu", &["promote", "us", "--into", "eu", "--json"]);
    let took_ms = started.elapsed().as_millis();
    let point = out
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["system"] == "alpha-centauri")
        .unwrap()
        .clone();
    let copied = point["copied_last_seq"].as_u64().unwrap();
    assert!(copied <= us_last, "the copy is a prefix of us's stream");
    assert_eq!(
        point["messages_written"].as_u64(),
        Some(copied),
        "every copied message of Alpha Centauri's log is served by eu: {point}"
    );
    let served = replay(&g, &eu_logs, ac);
    println!(
        "lagging copy (50 ms each way, {commits} group commits of 10 records written as fast as durable, us killed after the last): promote took {took_ms} ms (the command's whole run); recovery point: alpha-centauri copied up to seq {copied}, reported lost {}; truly lost: {} messages (us's stream ended at {us_last}); eu serves Alpha Centauri's next transfer number {}",
        point["lost_after"],
        us_last - copied,
        served.next_xfer.0
    );
}

/// Instances and promote (issue 20): the copy of `us` is frozen, then
/// - dave, moved into Alpha Centauri #2 (in the copy), leaves it for Sol: his `depart` is in
///   `us`'s log of `alpha-centauri.2` only, his jump on Sol's pair subject in `eu`: promote must
///   apply the departure to the instance (else he is served in Alpha Centauri #2 and lands in
///   Sol: twice);
/// - erin, moved into Sol #2 (eu), leaves it for Alpha Centauri: her `depart` is in `eu`'s log
///   of `sol.2`, her jump on `us`'s pair subject only: promote must publish it again (else she
///   is nowhere).
///
/// After promote each is in exactly one place, and `check` of `eu`'s export is clean.
#[test]
fn promote_reconciles_departures_from_instances() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "regions instances")
    else {
        return;
    };
    let mut regions = TestRegions::start(exe, &["eu", "us"], 1, 10);
    let g = Arc::new(Galaxy::default_galaxy());
    let sol = g.by_slug("sol").unwrap();
    let ac = g.by_slug("alpha-centauri").unwrap();
    let homes = nats::region::galaxy_homes(&g).unwrap();
    let eu = regions.connect("eu", "eu-1");
    let us = regions.connect("us", "us-1");
    let eu_logs = NatsLogs::open(&eu, 1).unwrap();
    let us_logs = NatsLogs::open(&us, 1).unwrap();
    let eu_links = NatsLinks::open(&eu, g.clone(), 1, "eu-1").unwrap();
    eu_links.set_homes(homes.clone());
    let us_links = NatsLinks::open(&us, g.clone(), 1, "us-1").unwrap();
    us_links.set_homes(homes);

    let rules = Rules::default();
    let mut at_sol = Owner::open(&g, &eu_logs, sol);
    let mut at_sol_2 = Owner::open_instance(&g, &eu_logs, InstanceId::new(sol, 2));
    let mut at_ac = Owner::open(&g, &us_logs, ac);
    let mut at_ac_2 = Owner::open_instance(&g, &us_logs, InstanceId::new(ac, 2));
    for name in ["dave", "erin"] {
        let join = at_sol.state.decide_join(&g, &rules, name, "key").unwrap();
        at_sol.write(join);
    }
    // dave lands in Alpha Centauri and moves into its instance #2; the copy holds all of it.
    let to_ac = at_sol.depart("dave", ac);
    publish(&eu_links, &to_ac);
    at_sol.write(Event::DepartDone { xfer: to_ac.xfer });
    let arrive = at_ac
        .state
        .decide_arrive(to_ac.from, to_ac.xfer, &to_ac.player)
        .unwrap();
    at_ac.write(arrive);
    at_ac.move_to("dave", &mut at_ac_2);
    at_sol.move_to("erin", &mut at_sol_2);

    copy_until_current(&regions, &eu, &us_logs);
    nats::copies::freeze_copies(&eu, "us").unwrap();

    // dave leaves Alpha Centauri #2 for Sol: his depart only in us, his jump in eu.
    let dave_back = at_ac_2.depart("dave", sol);
    publish(&us_links, &dave_back);
    at_ac_2.write(Event::DepartDone {
        xfer: dave_back.xfer,
    });
    // erin leaves Sol #2 for Alpha Centauri: her depart in eu, her jump only in us.
    let erin_out = at_sol_2.depart("erin", ac);
    publish(&eu_links, &erin_out);
    at_sol_2.write(Event::DepartDone {
        xfer: erin_out.xfer,
    });
    drop((at_ac, at_ac_2));
    regions.kill_region("us");

    let out = region_cmd(
        &regions,
        "eu",
        &[
            "promote",
            "us",
            "--into",
            "eu",
            "--json",
            "--ticks-per-ly",
            "10",
        ],
    );
    let ac_out = out
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["system"] == "alpha-centauri")
        .unwrap()["reconciled"]
        .clone();
    let dave_text = xfer_text(&g, dave_back.from, dave_back.xfer);
    let erin_text = xfer_text(&g, erin_out.from, erin_out.xfer);
    assert_eq!(
        ac_out["departures_applied"],
        serde_json::json!([format!("dave left by {dave_text}")]),
        "{ac_out}"
    );
    assert_eq!(
        ac_out["republished"],
        serde_json::json!([erin_text]),
        "{ac_out}"
    );
    assert_eq!(ac_out["unresolved"], serde_json::json!([]), "{ac_out}");

    for id in g.ids() {
        eu_links.set_home(g.slug(id), "eu");
    }
    let states = [
        ("alpha-centauri", replay(&g, &eu_logs, ac)),
        (
            "alpha-centauri #2",
            replay_instance(&g, &eu_logs, InstanceId::new(ac, 2)),
        ),
        ("sol", replay(&g, &eu_logs, sol)),
        (
            "sol #2",
            replay_instance(&g, &eu_logs, InstanceId::new(sol, 2)),
        ),
    ];
    let places = places_of(
        &g,
        &states
            .iter()
            .map(|(where_, state)| (*where_, state))
            .collect::<Vec<_>>(),
        &[
            (jumps_on(&g, &eu_links, ac, sol), &states[2].1),
            (jumps_on(&g, &eu_links, sol, ac), &states[0].1),
        ],
    );
    assert_eq!(
        places.get("dave"),
        Some(&vec![format!("jump {dave_text}")]),
        "dave in exactly one place: {places:?}"
    );
    assert_eq!(
        places.get("erin"),
        Some(&vec![format!("jump {erin_text}")]),
        "erin in exactly one place: {places:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let promoted_dir = tmp.path().join("eu-promoted");
    export(&regions, "eu", None, &promoted_dir);
    let verdict = check(&promoted_dir);
    println!("check of eu after the promotion: {}", said(&verdict));
    assert!(
        verdict.status.success(),
        "check of eu's export: {}",
        said(&verdict)
    );
}
