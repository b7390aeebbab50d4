//! `mltrader export`: a JetStream galaxy (three nats-servers, `serve --nats` with its demo bots)
//! written out as the familiar data directory, which `check` and `replay` accept; an export
//! SIGKILLed mid-way and run again (with a torn record left where it died) is byte for byte a
//! clean export; an export taken while a node serves is accepted by `check` too (a prefix of
//! the stream); `--follow` goes on with what a second node writes, stops on SIGTERM, and ends
//! equal to a fresh export; every run says "zombie messages accepted: 0", and a message of a
//! writer without the lease makes it fail.
//!
//! Size: `MLTRADER_TEST_EXPORT_SECONDS` of play per node (default 3), with
//! `MLTRADER_TEST_EXPORT_BOTS` bots (default 16). Needs nats-server (see nats_takeover.rs).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{check, mltrader, sigterm, Player, Server};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The shared test cluster (`nats::testing`), with this test's commands.
struct Cluster(nats::testing::TestCluster);

impl Cluster {
    fn start(exe: PathBuf) -> Cluster {
        Cluster(nats::testing::TestCluster::start(&workspace_root(), exe))
    }

    fn creds(&self) -> String {
        self.0.creds().display().to_string()
    }

    /// `serve`'s flags for node `node`, with the demo bots.
    fn serve_flags(&self, node: &str, bots: u64) -> Vec<String> {
        let mut flags = self.0.serve_flags(node);
        flags.extend(["--demo".into(), "--bots".into(), bots.to_string()]);
        flags
    }

    /// `mltrader export` into `data`, with `extra` flags.
    fn export(&self, data: &Path, extra: &[&str]) -> Command {
        let mut cmd = mltrader();
        cmd.args(["export", "--nats", &self.0.urls().join(","), "--creds"])
            .arg(self.creds())
            .args(["--nats-monitor", &self.0.monitors().join(","), "--data"])
            .arg(data)
            .args(extra);
        cmd
    }
}

fn said(out: &Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs an export to its end; it must succeed and report no zombie message.
fn export_ok(cluster: &Cluster, data: &Path) -> String {
    let out = cluster.export(data, &[]).output().unwrap();
    let text = said(&out);
    assert!(
        out.status.success(),
        "export into {}: {text}",
        data.display()
    );
    assert!(text.contains("zombie messages accepted: 0"), "{text}");
    text
}

/// Every file of `dir` but the export's state, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "export.state.json" {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn assert_same_files(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "the same files in {} and {}",
        a.display(),
        b.display()
    );
    for (path, bytes) in &fa {
        assert!(
            bytes == &fb[path],
            "{} differs between {} and {}",
            path.display(),
            a.display(),
            b.display()
        );
    }
}

fn log_bytes(dir: &Path) -> u64 {
    files(dir)
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "log") && p.starts_with("systems"))
        .map(|(_, b)| b.len() as u64)
        .sum()
}

/// Waits until `server` serves (a node that stands by answers 503 `standby`).
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

#[test]
fn an_export_is_a_data_directory_that_check_and_replay_accept_and_resumes_and_follows() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "mltrader export") else {
        return;
    };
    let play = Duration::from_secs(env_or("MLTRADER_TEST_EXPORT_SECONDS", 3));
    let bots = env_or("MLTRADER_TEST_EXPORT_BOTS", 16);
    let cluster = Cluster::start(exe);
    let tmp = tempfile::tempdir().unwrap();

    let flags = cluster.serve_flags("alpha", bots);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let alpha = Server::start_with(Some(&tmp.path().join("alpha")), &[], &flags);
    until_serving(&alpha);
    let ann = Player::join(&alpha, "Ann");
    ann.run(&["travel", "Alpha Centauri"]).ok();
    std::thread::sleep(play);
    assert!(alpha.stop().success());

    // A node's own data directory is not an export: refused, nothing cut.
    let alpha_dir = tmp.path().join("alpha");
    let before = files(&alpha_dir);
    let refused = cluster.export(&alpha_dir, &[]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", said(&refused));
    assert!(
        said(&refused).contains("not an export"),
        "{}",
        said(&refused)
    );
    assert!(
        files(&alpha_dir) == before,
        "the node's files are untouched"
    );

    // A clean export: the data directory, which check and replay accept, grep-able.
    let clean = tmp.path().join("clean");
    let said_clean = export_ok(&cluster, &clean);
    let checked = check(&clean);
    assert!(
        checked.status.success(),
        "check of the export: {}",
        said(&checked)
    );
    let replayed = mltrader()
        .args(["replay", "--data"])
        .arg(&clean)
        .output()
        .unwrap();
    assert!(
        replayed.status.success(),
        "replay of the export: {}",
        said(&replayed)
    );
    let ann_log = std::fs::read_to_string(clean.join("players/Ann.log")).unwrap();
    assert!(
        ann_log.contains("src=alpha-centauri:"),
        "Ann's history: {ann_log}"
    );
    let sol = std::fs::read_to_string(clean.join("systems/sol.log")).unwrap();
    assert!(sol.contains("Ann"), "grep finds Ann in the system log");
    assert!(log_bytes(&clean) > 10_000, "the bots played: {said_clean}");

    // An export killed mid-way, with a torn record where it died, then run again.
    let resumed = tmp.path().join("resumed");
    let mut first = cluster
        .export(&resumed, &["--batch-bytes", "512"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !resumed.join("export.state.json").exists() {
        assert!(
            Instant::now() < deadline,
            "the export wrote no state in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(30));
    first.kill().unwrap();
    first.wait().unwrap();
    let partial = log_bytes(&resumed);
    assert!(
        partial < log_bytes(&clean),
        "killed before its end ({partial} bytes)"
    );
    let sol_resumed = resumed.join("systems/sol.log");
    let mut torn = std::fs::read(&sol_resumed).unwrap_or_default();
    torn.extend_from_slice(b"999999 depart player=Zed to=vega ~0000");
    std::fs::write(&sol_resumed, torn).unwrap();
    let again = export_ok(&cluster, &resumed);
    assert!(again.contains("of an interrupted run cut first"), "{again}");
    assert_same_files(&clean, &resumed);

    // --follow: a live backup of what a second node writes, until SIGTERM.
    let follow = cluster
        .export(&clean, &["--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let before = log_bytes(&clean);
    let flags = cluster.serve_flags("beta", bots);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let beta = Server::start_with(Some(&tmp.path().join("beta")), &[], &flags);
    until_serving(&beta);
    ann.run_at(beta.url(), &["travel", "Sol"]).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_bytes(&clean) < before + 5_000 {
        assert!(
            Instant::now() < deadline,
            "--follow wrote nothing new in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // An export of the galaxy while beta's bots play: a prefix of the stream, which check
    // judges as a whole (as it would judge the files a crash left).
    let live = tmp.path().join("live");
    export_ok(&cluster, &live);
    let checked = check(&live);
    assert!(
        checked.status.success(),
        "check of an export taken while a node serves: {}",
        said(&checked)
    );
    assert!(beta.stop().success());
    sigterm(follow.id());
    let followed = follow.wait_with_output().unwrap();
    assert!(
        followed.status.success(),
        "--follow stopped by SIGTERM: {}",
        said(&followed)
    );
    assert!(said(&followed).contains("zombie messages accepted: 0"));
    export_ok(&cluster, &clean);
    let fresh = tmp.path().join("fresh");
    export_ok(&cluster, &fresh);
    assert_same_files(&fresh, &clean);
    let checked = check(&fresh);
    assert!(
        checked.status.success(),
        "check after two nodes: {}",
        said(&checked)
    );
    // Both nodes' claims are in every log (a lease record each), every message carries its
    // writer's epoch, and none was a zombie's.
    let out = cluster.export(&fresh, &["--json"]).output().unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["new_messages"], 0, "nothing new: {report}");
    assert_eq!(
        report["takeovers_seen"], 2,
        "alpha's claim and beta's: {report}"
    );
    assert_eq!(report["no_epoch_header"], 0, "{report}");
    assert_eq!(report["zombie_messages_accepted"], 0, "{report}");
    assert_eq!(
        report["logs"]["systems/sol"]["epochs"]["lease_records"], 2,
        "{report}"
    );

    // A writer without the lease (epoch 0) whose append the stream accepts: the export names it
    // and fails.
    let logs = nats::NatsLogs::open(&cluster.0.connect("intruder"), 3).unwrap();
    let (log, _) = store::backend::LogStore::open(
        &logs,
        "systems/sol",
        store::log::Position::BEGINNING,
        &mut |_| Ok(()),
    )
    .unwrap();
    let seq = log.append("test", |l| {
        l.field("note", "no-lease");
    });
    log.wait_durable(seq.unwrap()).unwrap();
    log.close().unwrap();
    let out = cluster.export(&fresh, &[]).output().unwrap();
    let text = said(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("zombie messages accepted: 1"), "{text}");
    assert!(
        text.contains("systems/sol: message") && text.contains("from node intruder: epoch 0"),
        "{text}"
    );
}
