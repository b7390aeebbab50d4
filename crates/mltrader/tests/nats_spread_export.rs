//! `mltrader export` and `mltrader check` on a spread galaxy (issue 19): a node of
//! `serve --nats --spread` with a swarm of bots playing through its API (every jump between systems goes through
//! the pair subjects of stream `MLT_JUMPS`, whichever node runs each side), a second node joins
//! (units are dealt again and handed over: their new owner fences the pair subjects), then both
//! leave; the export writes `jumps.log` and `check --acks` on it finds no problem and every
//! action the bots were told of; a message a writer without the lease published on a pair
//! subject (accepted by the stream) makes the export fail naming it.
//!
//! Size: `MLTRADER_TEST_SPREAD_SECONDS` of play per phase (default 3) with
//! `MLTRADER_TEST_SPREAD_BOTS` bots (default 8). Needs nats-server (see nats_takeover.rs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{mltrader, Player, Server};
use mesh::codec::Jump;
use mesh::links::Links;
use sim::galaxy::Galaxy;
use sim::ids::{Tick, Xfer};
use sim::instance::InstanceId;
use sim::player::Player as Ship;
use sim::rules::Rules;
use store::seq::Seq;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn said(out: &Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `mltrader export` of `cluster` into `data`, with `extra` flags.
fn export(cluster: &nats::testing::TestCluster, data: &Path, extra: &[&str]) -> Command {
    let mut cmd = mltrader();
    cmd.args(["export", "--nats", &cluster.urls().join(","), "--creds"])
        .arg(cluster.creds())
        .args(["--nats-monitor", &cluster.monitors().join(","), "--data"])
        .arg(data)
        .args(extra);
    cmd
}

/// Waits until `server` answers `systems` (its API serves).
fn until_serving(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = mltrader()
            .args(["systems", "--server", server.url()])
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node does not serve: {}",
            said(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A spread node `node`.
fn spread_node(cluster: &nats::testing::TestCluster, dir: &Path, node: &str) -> Server {
    let mut flags = cluster.serve_flags(node);
    flags.extend(["--spread".into(), "--lease-ms".into(), "3000".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start_with(Some(&dir.join(node)), &[], &flags)
}

#[test]
fn a_spread_galaxys_export_holds_its_published_jumps_and_check_proves_them() {
    let Some(exe) =
        nats::locate::nats_server_for_test(&workspace_root(), "mltrader export --spread")
    else {
        return;
    };
    let play = Duration::from_secs(env_or("MLTRADER_TEST_SPREAD_SECONDS", 3));
    let bots = env_or("MLTRADER_TEST_SPREAD_BOTS", 8).max(1);
    let cluster = nats::testing::TestCluster::start(&workspace_root(), exe);
    let tmp = tempfile::tempdir().unwrap();

    let alpha = spread_node(&cluster, tmp.path(), "alpha");
    until_serving(&alpha);
    let ann = Player::join(&alpha, "Ann");
    let travel = ann.run(&["travel", "Alpha Centauri"]);
    let acks = tmp.path().join("acks.log");
    let swarm = mltrader()
        .args([
            "swarm",
            "--server",
            alpha.url(),
            "--bots",
            &bots.to_string(),
        ])
        .args(["--seed", "19", "--json", "--ack-log"])
        .arg(&acks)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(play);
    // A second node: the units are dealt again, and those dealt to beta are handed over (its
    // fence marks on their pair subjects); the bots play on.
    let beta = spread_node(&cluster, tmp.path(), "beta");
    std::thread::sleep(play * 2);
    common::sigterm(swarm.id());
    let summary = swarm.wait_with_output().unwrap();
    println!(
        "the swarm: {}",
        String::from_utf8_lossy(&summary.stdout)
            .chars()
            .take(600)
            .collect::<String>()
    );
    assert!(beta.stop().success(), "beta leaves cleanly");
    std::thread::sleep(play);
    assert!(alpha.stop().success(), "alpha leaves cleanly");

    let data = tmp.path().join("export");
    let out = export(&cluster, &data, &["--json"]).output().unwrap();
    assert!(out.status.success(), "export: {}", said(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jumps = &report["jumps"];
    println!(
        "export of the spread galaxy: {} jumps written from {} messages of {} pair subjects, {} fence marks, {} stored twice, {} after the cut",
        jumps["jumps"],
        jumps["messages"],
        jumps["subjects"].as_object().map_or(0, |s| s.len()),
        jumps["fence_marks"],
        jumps["duplicates"],
        jumps["after_cut"]
    );
    assert_eq!(report["zombie_messages_accepted"], 0, "{}", said(&out));
    assert!(
        jumps["jumps"].as_u64().unwrap() > 0,
        "the bots jumped: {jumps}"
    );
    assert!(
        jumps["fence_marks"].as_u64().unwrap() > 0,
        "the units' owners fenced their pair subjects: {jumps}"
    );
    let jumps_log = std::fs::read_to_string(data.join("jumps.log")).unwrap();
    assert_eq!(
        jumps_log.lines().count() as u64,
        jumps["jumps"].as_u64().unwrap(),
        "one line a jump"
    );
    assert!(
        jumps_log.starts_with("1 jump xfer="),
        "numbered from 1: {jumps_log:.200}"
    );
    assert!(
        travel.stdout.contains("jump to Alpha Centauri"),
        "Ann's travel: {}",
        travel.stdout
    );
    assert!(jumps_log.contains("player=Ann"), "Ann's jump is published");

    let checked = mltrader()
        .args(["check", "--data"])
        .arg(&data)
        .arg("--acks")
        .arg(&acks)
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&checked.stdout));
    assert!(checked.status.success(), "check: {}", said(&checked));

    // A node without the lease of Sol publishes on one of its pair subjects, under an epoch
    // it does not hold (the stream accepts it: its expected sequence is right): a zombie
    // message, named by the export, which fails.
    let galaxy = Arc::new(Galaxy::default_galaxy());
    let links =
        nats::NatsLinks::open(&cluster.connect("intruder"), galaxy.clone(), 3, "intruder").unwrap();
    let home = galaxy.home();
    let to = galaxy.neighbours(home)[0];
    let jump = Jump {
        from: InstanceId::primary(home),
        xfer: Xfer(999_999),
        to: InstanceId::primary(to),
        t: Tick(1),
        travel_ticks: 1,
        player: Ship::starter("Intruder", &Rules::default()),
        tseq: Seq(0),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(links.publish(1 << 40, jump))
        .expect("the stream takes the intruder's jump");
    let out = export(&cluster, &data, &[]).output().unwrap();
    let text = said(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("zombie messages accepted: 1"), "{text}");
    assert!(
        text.contains(&format!("mlt.jump.{}.", galaxy.slug(home)))
            && text.contains("from node intruder"),
        "{text}"
    );
    assert!(
        text.contains("published after the logs' cut 1"),
        "its depart is in no log: not written to jumps.log: {text}"
    );
}
