//! The JetStream backend against real servers: a three-node cluster started from
//! `scripts/nats-cluster.sh` (shared by the tests that run at once, stopped when the last one
//! ends), and a throwaway single server without `sync_interval: always` for the safety check.
//!
//! The server is `MLTRADER_NATS_SERVER`, else `nats-server` on PATH, else
//! `target/nats-venv/bin/nats-server` (scripts/nats-install.sh). Without one, these tests fail
//! when `MLTRADER_NATS_REQUIRED=1` (CI sets it) and otherwise pass after saying loudly that they
//! skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mltrader_nats::lease::ClaimAttempt;
use mltrader_nats::logs::NatsLogs;
use mltrader_nats::testing::TestCluster;
use mltrader_nats::{Nats, NatsConfig, NatsOwnership, Safety};
use store::backend::{FileLogs, LogStore, Ownership, OwnershipError};
use store::datadir::DataDir;
use store::log::{Log, Position};
use store::seq::Seq;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The nats-server executable, or None (after a loud message) when it is missing and not
/// required.
fn server_exe() -> Option<PathBuf> {
    mltrader_nats::locate::nats_server_for_test(&workspace_root(), "the JetStream backend")
}

/// A port free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The cluster the running tests share (started by the first, stopped after the last).
fn cluster() -> Option<Arc<TestCluster>> {
    static SHARED: Mutex<Weak<TestCluster>> = Mutex::new(Weak::new());
    let exe = server_exe()?;
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = shared.upgrade() {
        return Some(c);
    }
    let c = Arc::new(TestCluster::start(&workspace_root(), exe));
    *shared = Arc::downgrade(&c);
    Some(c)
}

/// Appends `batches`, each as one group commit (appended at once, then waited for), records
/// `n=<i>` of kind `test`.
fn append_batches(log: &Log, batches: &[u64]) -> Seq {
    let mut last = Seq(0);
    let mut i = 0u64;
    for &size in batches {
        let items: Vec<u64> = (i..i + size).collect();
        i += size;
        last = log
            .append_batch(
                &items,
                |_| "test",
                |n, line| {
                    line.num("n", n);
                },
            )
            .unwrap()
            .unwrap();
        log.wait_durable(last).unwrap();
    }
    last
}

/// Every record of log `name` in `logs` from `from`, as (seq, kind, n).
fn records(logs: &dyn LogStore, name: &str, from: Position) -> Vec<(u64, String, String)> {
    let mut seen = Vec::new();
    logs.read(name, from, &mut |r| {
        seen.push((
            r.seq,
            r.kind.to_string(),
            r.get("n").unwrap_or("").to_string(),
        ));
        Ok(())
    })
    .unwrap();
    seen
}

#[test]
fn records_round_trip_through_jetstream_with_the_bytes_of_a_file() {
    let Some(cluster) = cluster() else { return };
    let nats = cluster.connect("round-trip");
    let logs = NatsLogs::open(&nats, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    datadir.create().unwrap();
    let files = FileLogs::new(&datadir);
    let name = "systems/round-trip.2";
    let batches = [1, 3, 1, 5];

    let (nats_log, opened) = logs
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(opened.scan.records, 0, "a new log is empty");
    let (file_log, _) = files
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(append_batches(&nats_log, &batches), Seq(10));
    append_batches(&file_log, &batches);
    nats_log.close().unwrap();
    file_log.close().unwrap();

    let file_bytes = std::fs::read(files.path(name)).unwrap();
    let (stream_bytes, _) = logs.bytes_of(name).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stream_bytes),
        String::from_utf8_lossy(&file_bytes),
        "the stream holds the file's exact bytes"
    );
    assert_eq!(
        logs.messages_in(name).unwrap(),
        batches.len() as u64,
        "one message per group commit"
    );
    assert_eq!(logs.list("systems/").unwrap(), vec![name.to_string()]);

    // Reopened, both give the same records, from the beginning and from a mid position (as
    // recovery reads from a snapshot's), and go on with the same sequence.
    let all = records(&files, name, Position::BEGINNING);
    assert_eq!(all.len(), 10);
    assert_eq!(records(&logs, name, Position::BEGINNING), all);
    let line_4 = file_bytes.split_inclusive(|b| *b == b'\n').take(4);
    let mid = Position {
        next_seq: 5,
        offset: line_4.map(|l| l.len() as u64).sum(),
        line: 5,
    };
    assert_eq!(records(&logs, name, mid), all[4..].to_vec());
    let (nats_log, opened) = logs.open(name, mid, &mut |_| Ok(())).unwrap();
    assert_eq!((opened.scan.records, opened.cut.is_none()), (6, true));
    let (file_log, _) = files.open(name, mid, &mut |_| Ok(())).unwrap();
    assert_eq!(append_batches(&nats_log, &[2]), Seq(12));
    append_batches(&file_log, &[2]);
    nats_log.close().unwrap();
    file_log.close().unwrap();
    assert_eq!(
        logs.bytes_of(name).unwrap().0,
        std::fs::read(files.path(name)).unwrap(),
        "after a reopen the bytes are still the file's"
    );
}

#[test]
fn a_batch_sent_again_after_a_lost_ack_is_stored_once() {
    let Some(cluster) = cluster() else { return };
    let nats = cluster.connect("lost-ack");
    let logs = NatsLogs::open(&nats, 3).unwrap();
    let name = "lost-ack";
    let (log, _) = logs
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    logs.simulate_lost_acks_for_tests(1);
    append_batches(&log, &[3]);
    let stats = logs.stats();
    assert_eq!(
        stats.duplicates.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the retry was answered as a duplicate"
    );
    append_batches(&log, &[2]);
    log.close().unwrap();
    assert_eq!(logs.messages_in(name).unwrap(), 2, "each batch stored once");
    let seqs: Vec<u64> = records(&logs, name, Position::BEGINNING)
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_zombie_writer_is_refused_and_its_log_stops() {
    let Some(cluster) = cluster() else { return };
    let name = "zombie";
    let old = NatsLogs::open(&cluster.connect("old-owner"), 3).unwrap();
    let (zombie, _) = old
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    append_batches(&zombie, &[2]);

    // A new owner takes over: reads the log to its end and appends.
    let new = NatsLogs::open(&cluster.connect("new-owner"), 3).unwrap();
    let (owner, opened) = new
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(opened.scan.records, 2);
    append_batches(&owner, &[1]);

    // The old owner, unaware, appends record 3 again: refused.
    let seq = zombie
        .append("test", |l| {
            l.num("n", 99);
        })
        .unwrap();
    let err = zombie.wait_durable(seq).unwrap_err().to_string();
    assert!(err.contains("append refused"), "{err}");
    assert!(err.contains("must stop writing"), "{err}");
    assert!(err.contains("mlt.log.zombie"), "{err}");
    assert!(
        zombie.append("test", |_| {}).is_err(),
        "the zombie's log is poisoned"
    );

    append_batches(&owner, &[1]);
    owner.close().unwrap();
    let kept: Vec<String> = records(&new, name, Position::BEGINNING)
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(
        kept,
        vec!["0", "1", "0", "0"],
        "nothing of the zombie's after the takeover"
    );
}

#[test]
fn wrong_or_missing_credentials_are_refused_naming_the_file() {
    let Some(cluster) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-creds");
    std::fs::write(&wrong, "user = \"mltrader\"\npassword = \"not-it\"\n").unwrap();
    let mut config = cluster.config("intruder");
    config.creds_file = wrong;
    let err = Nats::connect(&config).err().expect("refused").to_string();
    assert!(err.contains("refused the user and password"), "{err}");
    assert!(err.contains("wrong-creds"), "{err}");

    config.creds_file = dir.path().join("no-such-file");
    let err = Nats::connect(&config).err().expect("refused").to_string();
    assert!(
        err.contains("no-such-file") && err.contains("cannot read"),
        "{err}"
    );
}

/// A single server with JetStream under the default sync (every 2 minutes), killed on drop.
struct UnsyncedServer {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
    monitor: String,
}

impl UnsyncedServer {
    fn start(exe: &Path) -> UnsyncedServer {
        let dir = tempfile::tempdir().unwrap();
        let (port, monitor_port) = (free_port(), free_port());
        let child = Command::new(exe)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor_port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .args(["--user", "u", "--pass", "p"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let monitor = format!("http://127.0.0.1:{monitor_port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        // The server opens its monitoring port before its client port (JetStream starts in
        // between): wait for both, or a loaded machine connects too early (seen in CI).
        for port in [monitor_port, port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "the single server did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        UnsyncedServer {
            child,
            _dir: dir,
            url: format!("nats://127.0.0.1:{port}"),
            monitor,
        }
    }
}

impl Drop for UnsyncedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_safety_check_refuses_a_server_that_does_not_sync_every_write() {
    let Some(exe) = server_exe() else { return };
    let server = UnsyncedServer::start(&exe);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "user = \"u\"\npassword = \"p\"\n").unwrap();
    let mut config = NatsConfig {
        urls: vec![server.url.clone()],
        creds_file: creds,
        monitor_urls: vec![server.monitor.clone()],
        node: "careful".into(),
        safety: Safety::Required,
    };
    let err = Nats::connect(&config).err().expect("refused").to_string();
    assert!(err.contains("unsafe NATS server"), "{err}");
    assert!(err.contains("sync_interval: always"), "{err}");
    assert!(err.contains(&server.monitor), "{err}");

    config.monitor_urls.clear();
    let err = Nats::connect(&config).err().expect("refused").to_string();
    assert!(err.contains("--nats-monitor"), "{err}");

    config.monitor_urls = vec![server.monitor.clone()];
    config.safety = Safety::AllowUnsafeUnsyncedServerForTests;
    assert!(Nats::connect(&config).is_ok(), "allowed, for tests");
}

#[test]
fn a_lease_has_one_holder_and_its_epoch_grows_on_takeover() {
    let Some(cluster) = cluster() else { return };
    let lease = Duration::from_secs(2);
    let a = NatsOwnership::open(&cluster.connect("node-a"), "lease_test", lease, 3).unwrap();
    let b = NatsOwnership::open(&cluster.connect("node-b"), "lease_test", lease, 3).unwrap();
    let unit = store::backend::MESH_UNIT;

    let first = a.claim(unit).unwrap();
    match b.claim(unit) {
        Err(OwnershipError::Held(who)) => assert!(who.contains("node=node-a"), "{who}"),
        other => panic!("a second claimant must be refused while the lease holds: {other:?}"),
    }
    // Renewals keep it past the lease.
    let renewing_until = Instant::now() + lease + Duration::from_millis(1_000);
    while Instant::now() < renewing_until {
        a.renew(&first).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(b.claim(unit).is_err(), "a renewed lease is not taken");
    }

    // a stops renewing (paused, partitioned): b, having seen the key keep its revision for a
    // whole lease, takes it over at that revision. The key itself never expires.
    let deadline = Instant::now() + lease * 5;
    let mut seen: Option<(u64, Instant)> = None;
    let second = loop {
        assert!(
            Instant::now() < deadline,
            "no takeover {:?} after the lease",
            lease * 5
        );
        let holder = match b.try_claim(unit).unwrap() {
            ClaimAttempt::Claimed(_) => panic!("the key of a silent holder stays until taken over"),
            ClaimAttempt::Held(holder) => holder,
        };
        assert_eq!(holder.node, "node-a");
        match seen {
            Some((revision, since)) if revision == holder.revision => {
                if since.elapsed() >= lease {
                    match b.take_over(unit, revision).unwrap() {
                        ClaimAttempt::Claimed(claim) => break claim,
                        ClaimAttempt::Held(h) => panic!("a silent key changed: {h:?}"),
                    }
                }
            }
            _ => seen = Some((holder.revision, Instant::now())),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        second.epoch > first.epoch,
        "epoch {} after {}",
        second.epoch,
        first.epoch
    );
    assert!(
        matches!(a.renew(&first), Err(OwnershipError::NotHeld { .. })),
        "the old holder learns it lost the lease"
    );
    match a.take_over(unit, first.epoch) {
        Ok(ClaimAttempt::Held(h)) => assert_eq!(h.node, "node-b", "{h:?}"),
        other => panic!("a take-over at an old revision must fail: {other:?}"),
    }
    b.release(&second).unwrap();
    let third = a.claim(unit).unwrap();
    assert!(third.epoch > second.epoch);
    a.release(&third).unwrap();
}

#[test]
fn a_new_owner_marks_each_log_with_a_lease_record_and_the_old_owner_is_refused_after_it() {
    let Some(cluster) = cluster() else { return };
    let name = "leased";
    let old = NatsLogs::open(&cluster.connect("old-owner"), 3).unwrap();
    old.hold(3);
    let (zombie, _) = old
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    append_batches(&zombie, &[2]);

    // The new owner only opens the log: the lease record is its first append, fenced.
    let new = NatsLogs::open(&cluster.connect("new-owner"), 3).unwrap();
    new.hold(7);
    let (owner, opened) = new
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(
        opened.scan.records, 3,
        "the old owner's lease record and two"
    );

    // The old owner's next append is refused, and counted.
    let seq = zombie.append("test", |l| {
        l.num("n", 99);
    });
    let err = zombie.wait_durable(seq.unwrap()).unwrap_err().to_string();
    assert!(err.contains("append refused"), "{err}");
    assert_eq!(
        old.stats()
            .fenced
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        new.stats()
            .fenced
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    append_batches(&owner, &[1]);
    owner.close().unwrap();

    let kinds: Vec<(String, String)> = records(&new, name, Position::BEGINNING)
        .into_iter()
        .map(|r| (r.1, r.2))
        .collect();
    let expect = |k: &str, n: &str| (k.to_string(), n.to_string());
    assert_eq!(
        kinds,
        vec![
            expect("lease", ""),
            expect("test", "0"),
            expect("test", "1"),
            expect("lease", ""),
            expect("test", "0"),
        ]
    );
    let writers = new.writers_of(name).unwrap();
    let epochs: Vec<(Option<&str>, Option<u64>, usize)> = writers
        .iter()
        .map(|w| (w.node.as_deref(), w.epoch, w.leases.len()))
        .collect();
    assert_eq!(
        epochs,
        vec![
            (Some("old-owner"), Some(3), 1),
            (Some("old-owner"), Some(3), 0),
            (Some("new-owner"), Some(7), 1),
            (Some("new-owner"), Some(7), 0),
        ]
    );
    mltrader_nats::writers::check_fencing(name, &writers).unwrap();

    // An older owner that reads the log only now (it was paused between its claim and its
    // read) would find its expected sequence right: the newer epoch on the last message refuses it.
    let err = match old.open(name, Position::BEGINNING, &mut |_| Ok(())) {
        Ok(_) => panic!("an older epoch's lease record was appended after a newer owner's"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("newer than this node's 3"), "{err}");
    assert_eq!(
        old.stats()
            .fenced
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(new.writers_of(name).unwrap().len(), 4, "nothing appended");
}

/// A unit's writes revoked (`NatsLogs::revoker`, what a node does on hearing its system homed
/// in another region, issue 20): its next group commit is refused before anything is sent,
/// counted as a fencing, the log poisoned; the subject holds nothing of it.
#[test]
fn a_revoked_units_next_append_is_refused_and_nothing_of_it_is_stored() {
    let Some(cluster) = cluster() else { return };
    let name = "revoked";
    let logs = NatsLogs::open(&cluster.connect("revoked-owner"), 3).unwrap();
    let unit = logs.for_unit(5);
    let (log, _) = unit
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    append_batches(&log, &[2]);
    let (_, stored_before) = logs.bytes_of(name).unwrap();

    let revoker = unit.revoker();
    assert!(!revoker.is_revoked());
    revoker.revoke("system revoked is homed in region us now");
    assert!(revoker.is_revoked());
    let seq = log
        .append("test", |l| {
            l.num("n", 99);
        })
        .unwrap();
    let err = log.wait_durable(seq).unwrap_err().to_string();
    assert!(err.contains("writes are revoked"), "{err}");
    assert!(err.contains("homed in region us now"), "{err}");
    assert!(log.append("test", |_| {}).is_err(), "the log is poisoned");
    assert_eq!(
        unit.stats()
            .fenced
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "counted as a fencing (the node's round stops the unit)"
    );
    let (_, stored_after) = logs.bytes_of(name).unwrap();
    assert_eq!(
        stored_after, stored_before,
        "nothing stored after the revoke"
    );
    let kinds: Vec<String> = records(&logs, name, Position::BEGINNING)
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(kinds, vec!["lease", "test", "test"]);
}
