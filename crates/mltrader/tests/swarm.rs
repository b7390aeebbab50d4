//! The swarm against a real server that is SIGKILLed and restarted mid-run: the bots ride out
//! the outage (they retry), keep playing once the server is back, and every action the server
//! acknowledged to them, before or after the kill, is in the logs (`mltrader check --acks`).
//! The bots trade, and with `--attack-percent` they fight: both are asserted, not assumed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, mltrader, sigterm};
use serde_json::Value;

/// A `mltrader serve` on a fixed address (so a restart is at the same URL).
struct Served {
    child: Child,
}

impl Served {
    fn start(data: &Path, addr: &str) -> Served {
        let mut child = mltrader()
            .args([
                "serve",
                "--listen",
                addr,
                "--tick-hz",
                "50",
                "--ticks-per-ly",
                "1",
            ])
            .arg("--data")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mltrader serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut serving = false;
        for line in lines.by_ref() {
            if line.expect("server output").contains(" on http://") {
                serving = true;
                break;
            }
        }
        assert!(serving, "the server did not start on {addr}");
        // Keep draining, so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Served { child }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    fn stop(mut self) {
        sigterm(self.child.id());
        let status = self.child.wait().expect("wait for the server");
        assert!(status.success(), "the server stopped with {status}");
    }
}

#[test]
fn every_acknowledged_action_survives_a_server_kill_mid_swarm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acks = dir.path().join("acks.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");

    let server = Served::start(&data, &addr);
    let swarm = mltrader()
        .args([
            "swarm",
            "--bots",
            "5",
            "--duration",
            "5",
            "--seed",
            "1",
            "--json",
        ])
        // Every landing opens fire when another bot is there: with 5 bots in a galaxy of many
        // systems, 20 % left some runs without a single attack.
        .args(["--attack-percent", "100", "--server", &url, "--ack-log"])
        .arg(&acks)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mltrader swarm");

    // Mid-run: kill the server (no shutdown at all), then start it again on the same address.
    std::thread::sleep(Duration::from_millis(2000));
    let acked_before_kill = line_count(&acks);
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    let server = Served::start(&data, &addr);

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut swarm = swarm;
    while swarm.try_wait().expect("wait for the swarm").is_none() {
        assert!(
            Instant::now() < deadline,
            "the swarm did not stop after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = swarm.wait_with_output().expect("swarm output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "swarm failed: {stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {:?}", out.stdout));
    server.stop();

    eprintln!("{summary:#}");
    assert_eq!(summary["bots"], 5);
    assert!(
        summary["errors_by_code"]["unreachable"].as_u64() > Some(0),
        "the bots saw the outage: {summary:#}"
    );
    assert_eq!(summary["joined"], 5, "{summary:#}");
    assert_eq!(
        summary["online_at_end"], 5,
        "back online after the restart: {summary:#}"
    );
    let acked = line_count(&acks);
    assert!(
        acked_before_kill > 5 && acked > acked_before_kill,
        "acks before the kill {acked_before_kill}, in all {acked}"
    );
    assert_eq!(summary["acks"].as_u64(), Some(acked as u64));
    assert!(summary["jumps"].as_u64().unwrap() > 10, "{summary:#}");
    assert_eq!(summary["windows"].as_array().map(Vec::len), Some(10));
    assert!(summary["trades"].as_u64() > Some(0), "{summary:#}");
    assert!(
        summary["attacks"].as_u64() > Some(0),
        "--attack-percent 100: {summary:#}"
    );
    assert_eq!(
        summary["errors_by_code"].get("no_route"),
        None,
        "every route the bots use exists: {summary:#}"
    );

    let check = mltrader()
        .args(["check", "--verbose", "--data"])
        .arg(&data)
        .arg("--acks")
        .arg(&acks)
        .output()
        .expect("run mltrader check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "check --acks failed:\n{report}");
    assert!(
        report.contains(&format!("acks ok: {acked} acknowledged actions")),
        "{report}"
    );
}

#[test]
fn check_acks_fails_on_an_action_the_logs_do_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    // Killed, not stopped: a SIGTERM right after start can come before the server's handler.
    Served::start(&data, &addr).kill();
    let acks = dir.path().join("acks.jsonl");
    std::fs::write(
        &acks,
        "{\"player\":\"bot-9-0\",\"action\":\"join\",\"version\":1}\n",
    )
    .unwrap();
    let check = mltrader()
        .args(["check", "--data"])
        .arg(&data)
        .arg("--acks")
        .arg(&acks)
        .output()
        .expect("run mltrader check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(report.contains("acks FAILED"), "{report}");
    assert!(
        report.contains("join of 'bot-9-0' acknowledged at version 1 is not in the system logs"),
        "{report}"
    );
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}
