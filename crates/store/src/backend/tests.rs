//! The two implementations of the storage traits, side by side, and the faults of the
//! in-memory one.

use super::*;
use crate::disk::Fault;
use crate::seq::Seq;

fn append(log: &Log, n: u64) -> Seq {
    let mut last = Seq(0);
    for i in 0..n {
        last = log
            .append("test", |l| {
                l.num("i", i);
            })
            .unwrap();
    }
    last
}

fn count(store: &dyn LogStore, name: &str, from: Position) -> u64 {
    store.read(name, from, &mut |_| Ok(())).unwrap().records
}

/// Both stores: a log opened, written, reopened from the beginning and from a position a
/// caller kept, listed by prefix.
fn opens_reads_and_lists(store: &dyn LogStore) {
    let name = system_log("sol");
    let (log, opened) = store
        .open(&name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(opened.scan.records, 0);
    log.wait_durable(append(&log, 5)).unwrap();
    let kept = log.position();
    log.wait_durable(append(&log, 3)).unwrap();
    log.close().unwrap();
    store
        .open(TRANSITIONS_LOG, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap()
        .0
        .close()
        .unwrap();
    assert_eq!(count(store, &name, Position::BEGINNING), 8);
    assert_eq!(count(store, &name, kept), 3, "read from a kept position");
    let mut seqs = Vec::new();
    let (log, opened) = store
        .open(&name, kept, &mut |r| {
            seqs.push(r.seq);
            Ok(())
        })
        .unwrap();
    assert_eq!(seqs, vec![6, 7, 8]);
    assert_eq!(opened.from, kept);
    assert_eq!(log.append("test", |_| {}).unwrap(), Seq(9));
    log.close().unwrap();
    assert_eq!(store.list(SYSTEMS_PREFIX).unwrap(), vec![name]);
    assert_eq!(store.list("").unwrap(), vec![TRANSITIONS_LOG.to_string()]);
    assert!(store.list("systems/x").unwrap().is_empty());
}

#[test]
fn files_and_memory_open_read_and_list_alike() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    datadir.create().unwrap();
    opens_reads_and_lists(&FileLogs::new(&datadir));
    assert!(
        datadir.system_log("sol").is_file(),
        "the layout is unchanged"
    );
    assert!(datadir.transitions_log().is_file());
    opens_reads_and_lists(&MemLogs::new());
}

/// A failed append (ENOSPC, EIO) fails the append's wait with an error naming the log and
/// the cause; what was acknowledged before survives a crash and is there after it.
#[test]
fn a_failed_append_names_the_log_and_loses_nothing_acknowledged() {
    for (fault, says) in [
        (Fault::Fail, "no space left on device"),
        (Fault::Eio, "EIO"),
    ] {
        let store = MemLogs::new();
        let name = system_log("sol");
        let (log, _) = store
            .open(&name, Position::BEGINNING, &mut |_| Ok(()))
            .unwrap();
        let acked = append(&log, 4);
        log.wait_durable(acked).unwrap();
        store.inject(&name, 0, fault);
        let seq = log.append("test", |_| {}).unwrap();
        let err = log.wait_durable(seq).unwrap_err().to_string();
        assert!(err.contains("memory:systems/sol"), "{err}");
        assert!(err.contains(says), "{err}");
        let after = store.crash(true);
        assert_eq!(count(&after, &name, Position::BEGINNING), acked.0);
    }
}

/// A crash loses what was not synced; with `tear`, half of it stays behind as a torn write,
/// which reopening cuts and reports, and the log goes on after the last durable record.
#[test]
fn a_crash_loses_the_unsynced_and_a_torn_write_is_cut() {
    let store = MemLogs::new();
    let name = TRANSITIONS_LOG;
    let (log, _) = store
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    let acked = append(&log, 10);
    log.wait_durable(acked).unwrap();
    // The next batch is written, its sync fails: written, never durable, never acknowledged.
    store.inject(name, 1, Fault::Eio);
    let seq = append(&log, 1);
    assert!(log.wait_durable(seq).is_err());
    assert!(!store.file(name).lock().unsynced.is_empty());

    let lost = store.crash(false);
    assert_eq!(count(&lost, name, Position::BEGINNING), acked.0);

    let torn = store.crash(true);
    let (log, opened) = torn
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    let cut = opened.cut.expect("the torn write is cut");
    assert_eq!(cut.line, acked.0 + 1);
    assert_eq!(opened.scan.records, acked.0);
    assert_eq!(log.append("test", |_| {}).unwrap(), acked.next());
    log.close().unwrap();
    assert_eq!(count(&torn, name, Position::BEGINNING), acked.0 + 1);
}

fn meta(upto: u64) -> SnapshotMeta {
    SnapshotMeta {
        name: "sol".into(),
        upto_seq: upto,
        log_offset: upto * 10,
        log_line: upto + 1,
        state_hash: 0xfeed,
    }
}

fn puts_lists_gets_and_keeps(store: &dyn SnapshotStore) {
    for upto in [3, 7, 11] {
        let bytes = snapshot::encode(&meta(upto), |w| {
            w.record("snap.player", |l| {
                l.num("upto", upto);
            })
        });
        store.put(&meta(upto), &bytes).unwrap();
    }
    assert_eq!(
        store.list("sol").unwrap(),
        vec![7, 11],
        "the newest two are kept"
    );
    let mut body = 0;
    let got = store
        .get("sol", 11, &mut |_| {
            body += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!((got, body), (meta(11), 1));
    store.keep_newest("sol", 1).unwrap();
    assert_eq!(store.list("sol").unwrap(), vec![11]);
    assert!(store.get("sol", 7, &mut |_| Ok(())).is_err());
    assert!(store.list("other").unwrap().is_empty());
}

#[test]
fn files_and_memory_keep_snapshots_alike() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    puts_lists_gets_and_keeps(&FileSnapshots::new(&datadir));
    assert!(datadir
        .snapshots_dir()
        .join("sol.00000000000000000011.snap")
        .is_file());
    puts_lists_gets_and_keeps(&MemSnapshots::new());
}

/// One holder at a time; every claim's epoch is greater than the last, across releases (and,
/// for files, across processes: the epoch is on disk).
fn claims_are_exclusive_and_epochs_grow(owners: [&dyn Ownership; 2]) {
    let [a, b] = owners;
    let first = a.claim("unit").unwrap();
    assert!(b.claim("unit").is_err(), "a held unit cannot be claimed");
    a.renew(&first).unwrap();
    a.release(&first).unwrap();
    assert!(a.renew(&first).is_err(), "a released claim is not held");
    let second = b.claim("unit").unwrap();
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
    b.release(&second).unwrap();
}

/// Readers share a unit and keep an owner out until the last one leaves; an owner keeps
/// readers out; a reader's claim has the last owner's epoch and does not make it grow.
fn readers_share_and_exclude_owners(owners: [&dyn Ownership; 2]) {
    let [a, b] = owners;
    let owned = a.claim("unit").unwrap();
    assert!(
        b.claim_shared("unit").is_err(),
        "a reader came in while the unit is owned"
    );
    a.release(&owned).unwrap();
    let r1 = a.claim_shared("unit").unwrap();
    let r2 = b.claim_shared("unit").unwrap();
    assert_eq!((r1.epoch, r2.epoch), (owned.epoch, owned.epoch));
    assert!(r1.shared && r2.shared);
    assert!(
        a.claim("unit").is_err() && b.claim("unit").is_err(),
        "an owner came in while the unit is read"
    );
    a.renew(&r1).unwrap();
    a.release(&r1).unwrap();
    assert!(b.claim("unit").is_err(), "one reader is still there");
    b.release(&r2).unwrap();
    let next = b.claim("unit").unwrap();
    assert_eq!(
        next.epoch,
        owned.epoch + 1,
        "reading does not count as a claim"
    );
    b.release(&next).unwrap();
}

#[test]
fn files_and_memory_share_readers_alike() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    datadir.create().unwrap();
    let (a, b) = (FileOwnership::new(&datadir), FileOwnership::new(&datadir));
    readers_share_and_exclude_owners([&a, &b]);
    let mem = MemOwnership::new();
    let (c, d) = (&mem, &mem);
    readers_share_and_exclude_owners([c, d]);
}

#[test]
fn files_and_memory_own_alike() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    datadir.create().unwrap();
    let (a, b) = (FileOwnership::new(&datadir), FileOwnership::new(&datadir));
    claims_are_exclusive_and_epochs_grow([&a, &b]);
    assert_eq!(FileOwnership::new(&datadir).last_epoch().unwrap(), 2);
    let mem = MemOwnership::new();
    claims_are_exclusive_and_epochs_grow([&mem, &mem]);
}
