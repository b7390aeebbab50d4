//! Reading a log in JetStream from a snapshot's position without fetching the subject from its
//! start: the message holding the position's record is found by a binary search over stream
//! sequences, and only it and the messages after it are fetched. Against a real three-node
//! cluster: the records and outcome are a file's from the same position, for positions at a
//! message's first record, inside a message, at the last record and at the end; a position
//! past the log's end is refused; and the cost is measured (records and bytes fetched, with and
//! without a snapshot).
//!
//! Size: `MLTRADER_TEST_LOG_RECORDS` records (default 4,000).

mod common;

use std::sync::atomic::Ordering;

use mltrader_nats::logs::NatsLogs;
use store::backend::{FileLogs, LogStore};
use store::datadir::DataDir;
use store::log::{Log, LogError, Position};
use store::scan::ScanOutcome;

/// Opens the logs' stream, one test at a time: two creations of the stream at once on a new
/// cluster were seen to time out ("cannot open stream MLT_LOGS: jetstream request timed out"),
/// which is not what these tests are about.
fn open_logs(nats: &mltrader_nats::Nats) -> NatsLogs {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    NatsLogs::open(nats, 3).unwrap()
}

fn records_wanted() -> u64 {
    std::env::var("MLTRADER_TEST_LOG_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000)
}

/// Appends records `n=from..to` to `log` as group commits of 1..=16 records.
fn append(log: &Log, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let size = (1 + i * 7 % 16).min(to - i);
        let items: Vec<u64> = (i..i + size).collect();
        let last = log
            .append_batch(
                &items,
                |_| "test",
                |n, l| {
                    l.num("n", *n).field("pad", "abcdefghijklmnopqrstuvwxyz");
                },
            )
            .unwrap()
            .unwrap();
        log.wait_durable(last).unwrap();
        i += size;
    }
}

/// The position of record `seq` in a log's bytes (record 1 on line 1 at byte 0).
fn position_of(bytes: &[u8], seq: u64) -> Position {
    let offset = bytes
        .split_inclusive(|b| *b == b'\n')
        .take(seq as usize - 1)
        .map(|l| l.len() as u64)
        .sum();
    Position {
        next_seq: seq,
        offset,
        line: seq,
    }
}

/// The records (seq, n) read from `from`, and the scan's outcome.
fn read(logs: &dyn LogStore, name: &str, from: Position) -> (Vec<(u64, String)>, ScanOutcome) {
    let mut seen = Vec::new();
    let outcome = logs
        .read(name, from, &mut |r| {
            seen.push((r.seq, r.get("n").unwrap().to_string()));
            Ok(())
        })
        .unwrap();
    (seen, outcome)
}

#[test]
fn a_log_is_read_from_a_snapshots_position_fetching_only_its_tail() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let nats = cluster.connect("positions");
    let writer = open_logs(&nats);
    let name = "systems/positions";
    let total = records_wanted();
    // Two logs written in turns, so that the subject's stream sequences have gaps.
    let (log, _) = writer
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    let (other, _) = writer
        .open("systems/other", Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    for part in 0..4 {
        append(&log, part * total / 4, (part + 1) * total / 4);
        append(&other, part * 50, (part + 1) * 50);
    }
    log.close().unwrap();
    other.close().unwrap();
    let (bytes, _) = writer.bytes_of(name).unwrap();
    let messages = writer.messages_in(name).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    datadir.create().unwrap();
    std::fs::create_dir_all(dir.path().join("systems")).unwrap();
    std::fs::write(dir.path().join("systems/positions.log"), &bytes).unwrap();
    let files = FileLogs::new(&datadir);

    // A message's first record (the second batch starts at record 2), a record inside a
    // message, one near the end, the last record, and the end (a snapshot of the whole log).
    for seq in [2, total / 2 + 3, total * 9 / 10, total, total + 1] {
        let from = position_of(&bytes, seq);
        let reader = open_logs(&nats);
        let (got, outcome) = read(&reader, name, from);
        let (want, file_outcome) = read(&files, name, from);
        assert_eq!(got, want, "from record {seq}");
        assert_eq!(got.len() as u64, total + 1 - seq);
        assert_eq!(
            (outcome.end_offset, outcome.next_line, outcome.last_seq),
            (
                file_outcome.end_offset,
                file_outcome.next_line,
                file_outcome.last_seq
            ),
            "from record {seq}: the outcome is a file's"
        );
    }

    // The cost, with and without a snapshot 90% of the way.
    let cost = |from: Position| {
        let reader = open_logs(&nats);
        let (got, _) = read(&reader, name, from);
        let s = reader.read_stats();
        (
            got.len() as u64,
            s.messages.load(Ordering::Relaxed),
            s.bytes.load(Ordering::Relaxed),
            s.probes.load(Ordering::Relaxed),
        )
    };
    let whole = cost(Position::BEGINNING);
    let tail = cost(position_of(&bytes, total * 9 / 10));
    eprintln!(
        "log of {total} records, {} bytes, {messages} messages: from the start {} records read, {} messages and {} bytes fetched; from a snapshot at 90% {} records read, {} messages ({} probes) and {} bytes fetched",
        bytes.len(), whole.0, whole.1, whole.2, tail.0, tail.1, tail.3, tail.2
    );
    assert_eq!(whole.2, bytes.len() as u64, "from the start, every byte");
    assert!(
        tail.2 * 4 < whole.2,
        "from 90% of the way, far fewer bytes: {} of {}",
        tail.2,
        whole.2
    );
    assert!(tail.3 <= 64, "a binary search: {} probes", tail.3);

    // Opened from a position, the writer goes on at the right sequence and byte.
    let appender = open_logs(&nats);
    let (log, opened) = appender
        .open(name, position_of(&bytes, total - 5), &mut |_| Ok(()))
        .unwrap();
    assert_eq!(opened.scan.records, 6);
    append(&log, total, total + 3);
    log.close().unwrap();
    let (after, _) = appender.bytes_of(name).unwrap();
    assert_eq!(&after[..bytes.len()], &bytes[..]);
    let (all, _) = read(&appender, name, Position::BEGINNING);
    assert_eq!(all.len() as u64, total + 3, "no record lost or doubled");
}

#[test]
fn a_position_past_the_logs_end_is_refused() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let nats = cluster.connect("past-end");
    let logs = open_logs(&nats);
    let name = "systems/past-end";
    let (log, _) = logs
        .open(name, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    append(&log, 0, 20);
    log.close().unwrap();
    let (bytes, _) = logs.bytes_of(name).unwrap();
    let mut ahead = position_of(&bytes, 20);
    ahead.next_seq = 25;
    ahead.offset = bytes.len() as u64 + 200;
    let err = logs.read(name, ahead, &mut |_| Ok(())).unwrap_err();
    assert!(
        matches!(err, LogError::ShorterThanSnapshot { .. }),
        "a snapshot ahead of its log: {err}"
    );
}
