//! A node that is told to stop always stops in bounded time, even when its NATS cluster is gone
//! (an operator's `systemctl stop` or Ctrl-C after the cluster went down; seen last session:
//! two spread nodes SIGTERMed 3 s after their cluster stopped ran on until killed by hand).
//!
//! Two `mltrader serve --nats --spread` nodes on a three-server test cluster
//! (`nats::testing::TestCluster`):
//! 1. with the cluster up, SIGTERM to `a` (`--shutdown-grace-ms` [`CLEAN_GRACE_MS`]): it hands
//!    its units over (about 330 ms each) and exits 0 within the grace;
//! 2. the cluster SIGKILLed whole, then SIGTERM to `b` (`--shutdown-grace-ms` [`GRACE_MS`]):
//!    it exits within the grace plus [`SLACK`] with status 4 (`SHUTDOWN_GAVE_UP_EXIT`), having
//!    said what it gave up on (or cleanly, had it nothing left to wait for).
//!
//! Small: about half a minute. Needs nats-server (scripts/nats-install.sh); fails without it
//! under `MLTRADER_NATS_REQUIRED=1`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nats_nodes::Node;
use nats::testing::TestCluster;

/// The grace of the node stopped with NATS up, in milliseconds: room for a clean leave of all
/// 36 units on a loaded machine.
const CLEAN_GRACE_MS: u64 = 30_000;
/// The grace of the node stopped with NATS gone, in milliseconds (the default is longer).
const GRACE_MS: u64 = 3_000;
/// What the test allows beyond the grace: the watchdog's exit and a loaded machine.
const SLACK: Duration = Duration::from_secs(4);
/// How long the two nodes may take to serve every system at first.
const START_WAIT: Duration = Duration::from_secs(90);
/// How long the lines of an exited node may take to reach the test (its pipes are drained by
/// threads).
const LINES_WAIT: Duration = Duration::from_secs(2);
/// The status of a node that gave up on a clean stop (mltrader's `SHUTDOWN_GAVE_UP_EXIT`).
const GAVE_UP_STATUS: i32 = 4;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn spread_node(cluster: &TestCluster, name: &str, dir: &Path, grace_ms: u64) -> Node {
    let mut node = Node::new(cluster, name, dir);
    node.flags.extend([
        "--spread".into(),
        "--shutdown-grace-ms".into(),
        grace_ms.to_string(),
    ]);
    node
}

/// Waits until `node` printed a line containing `what`.
fn wait_for_line(node: &Node, what: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if node.lines.lock().unwrap().iter().any(|l| l.contains(what)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} did not print {what:?} within {wait:?}; its last lines:\n{}",
        node.name,
        node.tail(30)
    );
}

/// SIGTERM to `node`, then its exit status within `grace` + [`SLACK`] (a panic naming `what`
/// if it still runs); prints how long it took.
fn sigterm_and_wait(node: &mut Node, what: &str, grace_ms: u64) -> std::process::ExitStatus {
    let began = Instant::now();
    node.signal(libc::SIGTERM);
    let status = node.exited_within(Duration::from_millis(grace_ms) + SLACK);
    let took = began.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "{what} still runs {took:?} after SIGTERM (grace {grace_ms} ms):\n{}",
            node.tail(30)
        )
    });
    eprintln!(
        "{what} exited {status} {} ms after SIGTERM",
        took.as_millis()
    );
    status
}

#[test]
fn a_spread_node_stops_in_bounded_time_with_and_without_nats() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "serve --nats --spread")
    else {
        return;
    };
    let cluster = TestCluster::start(&workspace_root(), exe);
    let dir = tempfile::tempdir().unwrap();
    let mut a = spread_node(&cluster, "a", dir.path(), CLEAN_GRACE_MS);
    let mut b = spread_node(&cluster, "b", dir.path(), GRACE_MS);
    a.start();
    b.start();
    wait_for_line(&a, ": serving, epoch", START_WAIT);
    wait_for_line(&b, ": serving, epoch", START_WAIT);

    // 1. NATS up: a clean leave, exit 0, within the grace.
    let status = sigterm_and_wait(&mut a, "a (NATS up)", CLEAN_GRACE_MS);
    assert!(
        status.success(),
        "a (NATS up) exited {status}:\n{}",
        a.tail(30)
    );
    wait_for_line(&a, "node a stopped", LINES_WAIT);

    // 2. NATS gone: b exits within the grace, saying what it gave up on.
    for i in 1..=3 {
        cluster.kill_server(i);
    }
    std::thread::sleep(Duration::from_secs(1));
    let status = sigterm_and_wait(&mut b, "b (NATS gone)", GRACE_MS);
    std::thread::sleep(LINES_WAIT);
    let clean = status.success()
        && b.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "node b stopped");
    assert!(
        clean || status.code() == Some(GAVE_UP_STATUS),
        "b (NATS gone) exited {status}, neither cleanly nor having given up:\n{}",
        b.tail(30)
    );
    if !clean {
        wait_for_line(&b, "gave up on", LINES_WAIT);
    }
}
