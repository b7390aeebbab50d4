//! The spread galaxy of issue 19: three nats-servers (`nats::testing::TestCluster`) and three
//! `mltrader serve --nats --spread` nodes on loopback, each serving a share of the star
//! systems; three swarms play, each through a different node first (so every API is used, and
//! requests are forwarded to the node that owns the player's system), while the test injects,
//! one after another:
//! 1. SIGKILL of a node (the others take its units over after a lease of silence; restarted,
//!    it gets its share back by clean hand-overs);
//! 2. SIGKILL of the Raft leader of the jumps' stream (`MLT_JUMPS`; restarted after);
//! 3. SIGSTOP of a node past its leases (the others take its units over), then SIGCONT: it
//!    must stop serving them (its appends are refused, or its own clock says the leases are
//!    lost) and acknowledge nothing for them; it then gets its share back;
//! 4. a fourth node added (it is dealt a share: clean hand-overs), then removed on purpose
//!    (SIGTERM: it hands its units back at once).
//!
//! Throughout, no system is ever served by two nodes in one look at the three, and every system
//! is served again within a bounded time after each fault. At the end: `mltrader export`, then
//! `mltrader check --acks` with every swarm's acknowledgements: zero problems, every
//! acknowledged action found, players equal to joins, credits and goods conserved.
//!
//! Size: small by default (about two minutes); `MLTRADER_NATS_SPREAD=large` runs more bots,
//! longer, with every fault twice:
//! `MLTRADER_NATS_SPREAD=large cargo test --release -p mltrader --test nats_spread -- --nocapture`.
//! Needs nats-server (scripts/nats-install.sh); fails without it under `MLTRADER_NATS_REQUIRED=1`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nats_nodes::{
    export_and_check, http, join_records, start_swarm, stop_swarm, AckWatch, Node, Swarm, ACK_POLL,
};
use nats::testing::TestCluster;
use serde_json::Value;

/// The jumps' stream (nats::pairs::JUMPS_STREAM).
const JUMPS_STREAM: &str = "MLT_JUMPS";
/// The systems of the default galaxy.
const SYSTEMS: usize = 36;
/// The lease of every unit, in milliseconds (nats::limits::LEASE_MS).
const LEASE_MS: u64 = nats::limits::LEASE_MS;
/// How long the galaxy may take to be whole again after a fault: the members' period and a
/// lease of silence, then recovery, on a loaded machine.
const WHOLE_WAIT: Duration = Duration::from_secs(90);
/// How long a node resumed after a pause may go on listing the units it lost: until its next
/// round (250 ms) on a loaded machine.
const ZOMBIE_GRACE: Duration = Duration::from_secs(3);

struct Size {
    /// Bots of each of the three swarms.
    bots: u64,
    /// Seconds of play before the first fault and between faults.
    calm_s: u64,
    /// How many times the four faults are injected.
    rounds: usize,
}

fn size() -> Size {
    match std::env::var("MLTRADER_NATS_SPREAD").as_deref() {
        Ok("large") => Size {
            bots: 60,
            calm_s: 15,
            rounds: 2,
        },
        _ => Size {
            bots: 5,
            calm_s: 4,
            rounds: 1,
        },
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A node of the spread galaxy: `serve --nats --spread`.
fn spread_node(cluster: &TestCluster, name: &str, dir: &Path) -> Node {
    let mut node = Node::new(cluster, name, dir);
    node.flags.push("--spread".into());
    node
}

/// The systems a node serves now (its `/v1/status`), or None if it does not answer.
fn served_by(node: &Node) -> Option<Vec<String>> {
    node.child.as_ref()?;
    match http(&node.url(), "GET", "/v1/status", None) {
        Some((200, Value::Array(systems))) => Some(
            systems
                .iter()
                .filter_map(|s| s["slug"].as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// The spread galaxy's cast.
struct Spread {
    cluster: TestCluster,
    nodes: Vec<Node>,
    acks: AckWatch,
    calm: Duration,
    /// Seen twice in one look: system -> the two nodes (must stay empty).
    doubles: Vec<String>,
    /// A node resumed after a pause, until when: it may still list the units it lost until its
    /// first round stops them (its writes are fenced meanwhile): counted apart, not a double.
    resumed: Option<(usize, Instant)>,
    /// Such listings by a resumed node.
    zombie_listings: Vec<String>,
    /// After each fault: how long until every system was served again.
    figures: Vec<(String, Duration)>,
}

impl Spread {
    /// One look at every node that answers: who serves what. The nodes are asked one after
    /// the other, twice round; a system that one node lists both before and after another node
    /// listed it was served by both at that moment (a hand-over between two answers shows a
    /// system at its old owner, then at its new one: never sandwiched), and is recorded.
    fn look(&mut self, skip: &[usize]) -> BTreeMap<String, String> {
        let mut answers: Vec<(usize, Vec<String>)> = Vec::new();
        for _round in 0..2 {
            for (i, node) in self.nodes.iter().enumerate() {
                if !skip.contains(&i) {
                    answers.push((i, served_by(node).unwrap_or_default()));
                }
            }
        }
        for (k, (p, first)) in answers.iter().enumerate() {
            for (m, (q, middle)) in answers.iter().enumerate().skip(k + 1) {
                let later = answers.iter().skip(m + 1).filter(|(n, _)| n == p);
                for (_, last) in later {
                    for slug in first
                        .iter()
                        .filter(|s| middle.contains(s) && last.contains(s))
                    {
                        if p != q {
                            let (a, b) = (&self.nodes[*p].name, &self.nodes[*q].name);
                            let seen = format!("{slug}: {a} and {b}");
                            let zombie = self.resumed.is_some_and(|(z, until)| {
                                (z == *p || z == *q) && Instant::now() < until
                            });
                            match zombie {
                                true => self.zombie_listings.push(seen),
                                false => self.doubles.push(seen),
                            }
                        }
                    }
                }
            }
        }
        // The latest answer of each node says who serves what now.
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        let half = answers.len() / 2;
        for (i, served) in &answers[half..] {
            for slug in served {
                owners.insert(slug.clone(), self.nodes[*i].name.clone());
            }
        }
        owners
    }

    /// Waits until every system is served by the running nodes (not `skip`), each of
    /// `must_serve` serving some; returns how long it took.
    fn wait_whole(&mut self, skip: &[usize], must_serve: &[usize], what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let owners = self.look(skip);
            let serving = |i: usize| owners.values().any(|n| *n == self.nodes[i].name);
            if owners.len() == SYSTEMS && must_serve.iter().all(|&i| serving(i)) {
                let took = started.elapsed();
                eprintln!("spread: whole again {took:?} after {what}");
                return took;
            }
            assert!(
                started.elapsed() < WHOLE_WAIT,
                "{what}: {} of {SYSTEMS} systems served after {WHOLE_WAIT:?}; the nodes said:\n{}",
                owners.len(),
                self.tails()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn tails(&self) -> String {
        let said: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}:\n{}", n.name, n.tail(15)))
            .collect();
        said.join("\n")
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect()
    }

    /// Lets the bots play for a while, and checks that they do.
    fn calm(&mut self, what: &str) {
        let until = Instant::now() + self.calm;
        while Instant::now() < until {
            self.look(&[]);
            std::thread::sleep(Duration::from_millis(200));
        }
        let target = self.acks.count() + 5;
        let started = Instant::now();
        while self.acks.count() < target {
            assert!(
                started.elapsed() < WHOLE_WAIT,
                "after {what}: fewer than 5 acknowledgements in {WHOLE_WAIT:?}"
            );
            std::thread::sleep(ACK_POLL);
        }
    }

    /// SIGKILL of node `i`; the others take its units over; restarted, it gets its share back.
    fn kill_node(&mut self, i: usize) {
        let fault = format!("SIGKILL of {}", self.nodes[i].name);
        self.nodes[i].kill();
        let others: Vec<usize> = self.running();
        let took = self.wait_whole(&[i], &others, &fault);
        self.figures.push((fault.clone(), took));
        self.calm(&fault);
        self.nodes[i].start();
        let all = self.running();
        let back = format!("{} started again", self.nodes[i].name);
        let took = self.wait_whole(&[], &all, &back);
        self.figures.push((back, took));
    }

    /// SIGKILL of the jumps' stream's leader; restarted once another leads.
    fn kill_jumps_leader(&mut self) {
        let Some(leader) = self.cluster.stream_leader(JUMPS_STREAM) else {
            eprintln!("spread: {JUMPS_STREAM} has no leader to kill (no jump yet?)");
            return;
        };
        let fault = format!("SIGKILL of n{leader}, leader of {JUMPS_STREAM}");
        self.cluster.kill_server(leader);
        let all = self.running();
        self.calm(&fault);
        let took = self.wait_whole(&[], &all, &fault);
        self.figures.push((fault, took));
        self.cluster.restart_server(leader);
    }

    /// SIGSTOP of node `i` past its leases; the others take its units over; SIGCONT: it must
    /// stop serving them; then it gets its share back.
    fn pause_node(&mut self, i: usize) {
        let fault = format!("SIGSTOP of {} past its leases", self.nodes[i].name);
        self.nodes[i].signal(libc::SIGSTOP);
        std::thread::sleep(Duration::from_millis(LEASE_MS));
        let others: Vec<usize> = self.running().into_iter().filter(|&n| n != i).collect();
        let took = self.wait_whole(&[i], &others, &fault);
        self.figures.push((fault.clone(), took));
        self.nodes[i].signal(libc::SIGCONT);
        self.resumed = Some((i, Instant::now() + ZOMBIE_GRACE));
        let back = format!("SIGCONT of {}", self.nodes[i].name);
        let all = self.running();
        let took = self.wait_whole(&[], &all, &back);
        self.figures.push((back, took));
        self.calm(&fault);
    }

    /// A new node joins (dealt a share), then leaves on purpose.
    fn add_and_remove(&mut self, dir: &Path) {
        let name = format!("extra{}", self.nodes.len());
        self.nodes.push(spread_node(&self.cluster, &name, dir));
        let i = self.nodes.len() - 1;
        self.nodes[i].start();
        let all = self.running();
        let took = self.wait_whole(&[], &all, &format!("{name} joined"));
        self.figures.push((format!("{name} joined"), took));
        self.calm(&format!("{name} joined"));
        let status = self.nodes[i].stop();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "a clean leave");
        let all = self.running();
        let took = self.wait_whole(&[i], &all, &format!("{name} left"));
        self.figures.push((format!("{name} left"), took));
        self.nodes.pop();
    }
}

#[test]
fn a_spread_galaxy_loses_and_duplicates_no_one_through_node_and_leader_deaths_and_a_zombie() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "the spread galaxy")
    else {
        return;
    };
    let size = size();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(&workspace_root(), exe);
    let mut nodes: Vec<Node> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|n| spread_node(&cluster, n, dir.path()))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    let acks_path = |k: usize| dir.path().join(format!("acks{k}.log"));
    let mut spread = Spread {
        cluster,
        nodes,
        acks: AckWatch::start(acks_path(0)),
        calm: Duration::from_secs(size.calm_s),
        doubles: Vec::new(),
        resumed: None,
        zombie_listings: Vec::new(),
        figures: Vec::new(),
    };
    let took = spread.wait_whole(&[], &[0, 1, 2], "the start");
    spread.figures.push(("start".into(), took));
    // Three swarms, each through another node first.
    let urls: Vec<String> = spread.nodes.iter().map(Node::url).collect();
    let swarms: Vec<Swarm> = (0..3)
        .map(|k| {
            let order = [
                urls[k].clone(),
                urls[(k + 1) % 3].clone(),
                urls[(k + 2) % 3].clone(),
            ];
            start_swarm(&order.join(","), size.bots, 19 + k as u64, &acks_path(k))
        })
        .collect();
    spread.calm("the start");
    for round in 0..size.rounds {
        spread.kill_node(round % 3);
        spread.kill_jumps_leader();
        spread.pause_node((round + 1) % 3);
        spread.add_and_remove(dir.path());
    }
    let summaries: Vec<Value> = swarms.into_iter().map(stop_swarm).collect();
    for n in &mut spread.nodes {
        let status = n.stop();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{} stops cleanly",
            n.name
        );
    }
    // Every swarm's acknowledgements, in one file for check --acks.
    let all_acks = dir.path().join("acks.log");
    let mut joined = Vec::new();
    for k in 0..3 {
        joined.extend(std::fs::read(acks_path(k)).unwrap_or_default());
    }
    std::fs::write(&all_acks, joined).unwrap();
    let (report, export, zombies) = export_and_check(&spread.cluster, dir.path(), &all_acks);
    eprintln!("spread: figures (fault: whole again after)");
    for (what, took) in &spread.figures {
        eprintln!("  {what}: {took:?}");
    }
    for (k, s) in summaries.iter().enumerate() {
        eprintln!("spread: swarm {k}: {s}");
    }
    let acks = &report["acks"];
    eprintln!(
        "spread: check --acks: {} acks, {} confirmed, {} players, {} problems; {:?} in all",
        acks["acks"],
        acks["confirmed"],
        report["players"],
        report["problems"].as_array().map_or(0, Vec::len),
        started.elapsed()
    );
    eprintln!(
        "spread: units still listed by the resumed node before its round stopped them: {}",
        spread.zombie_listings.len()
    );
    assert!(
        spread.doubles.is_empty(),
        "served twice: {:?}",
        spread.doubles
    );
    assert_eq!(zombies, 0, "the export found no zombie message");
    assert_eq!(
        report["problems"],
        serde_json::json!([]),
        "check found problems"
    );
    assert_eq!(
        acks["acks"], acks["confirmed"],
        "every acknowledged action found"
    );
    assert!(
        acks["acks"].as_u64().unwrap_or(0) > 0,
        "the bots were acknowledged"
    );
    let players = report["players"].as_u64().unwrap();
    assert_eq!(players, join_records(&export), "players equal to joins");
}
