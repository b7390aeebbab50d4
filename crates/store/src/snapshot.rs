//! Snapshots: a shard's whole state at one sequence number of its log, so that recovery loads
//! it and replays only the records after it, and restart time stays bounded however long the
//! galaxy has run.
//!
//! A snapshot is a file `snapshots/<name>.<upto, 20 digits>.snap` in the record format: a
//! `snapshot` header (which log, up to which record, where the next record starts in that log,
//! the state hash), the body records the shard writes, and a `snapshot.end` record counting
//! them. A file without its end record, or with any bad line, is not a snapshot: recovery says
//! so and falls back to the previous one. Files are written to a temporary name, fsynced,
//! renamed and the directory fsynced, so a crash leaves either the old set or the new one.
//!
//! This module never interprets the body; the shard's codec does.

use std::path::{Path, PathBuf};

use super::disk::write_atomic;
use super::record::{Line, Record};
use super::scan::{scan, Corruption, ScanStart, VisitError};

/// How many snapshots of one log are kept (the newest ones).
pub const SNAPSHOTS_KEPT: usize = 2;

/// What a snapshot's header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The log it belongs to (the system's slug).
    pub name: String,
    /// Sequence number of the last record the snapshot includes.
    pub upto_seq: u64,
    /// Byte offset in the log file where record `upto_seq + 1` starts (or will).
    pub log_offset: u64,
    /// Line number of that record in the log file.
    pub log_line: u64,
    /// State hash of the snapshot's state.
    pub state_hash: u64,
}

/// A problem with one snapshot file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {error}")]
    Io {
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{path}: not a complete snapshot: {reason}")]
    Invalid { path: String, reason: String },
    /// A bad line, or a body record the reader refused (kept as the corruption's source).
    #[error("{path}: not a complete snapshot: {corruption}")]
    Corrupt {
        path: String,
        #[source]
        corruption: Corruption,
    },
}

/// Builds a snapshot's body: each call adds one record.
pub struct SnapshotWriter {
    buf: String,
    next_seq: u64,
}

impl SnapshotWriter {
    /// Adds a record of `kind`; `encode` writes its fields.
    pub fn record(&mut self, kind: &str, encode: impl FnOnce(&mut Line<'_>)) {
        let mut line = Line::new(&mut self.buf, self.next_seq, kind);
        encode(&mut line);
        line.finish();
        self.next_seq += 1;
    }
}

fn file_name(name: &str, upto: u64) -> String {
    format!("{name}.{upto:020}.snap")
}

/// Encodes a snapshot (header, body, end) into bytes, ready for [`write`].
pub fn encode(meta: &SnapshotMeta, body: impl FnOnce(&mut SnapshotWriter)) -> Vec<u8> {
    let mut w = SnapshotWriter {
        buf: String::with_capacity(4096),
        next_seq: 1,
    };
    w.record("snapshot", |l| {
        l.field("log", &meta.name)
            .num("upto", meta.upto_seq)
            .num("offset", meta.log_offset)
            .num("line", meta.log_line)
            .field("hash", &format!("{:016x}", meta.state_hash));
    });
    body(&mut w);
    let count = w.next_seq - 2;
    w.record("snapshot.end", |l| {
        l.num("records", count);
    });
    w.buf.into_bytes()
}

/// Writes encoded snapshot bytes durably and prunes old snapshots of the same log.
pub fn write(dir: &Path, meta: &SnapshotMeta, bytes: &[u8]) -> Result<PathBuf, SnapshotError> {
    let path = dir.join(file_name(&meta.name, meta.upto_seq));
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    write_atomic(&path, bytes).map_err(io_at(&path))?;
    prune(dir, &meta.name, SNAPSHOTS_KEPT)?;
    Ok(path)
}

/// Removes all but the newest `keep` snapshots of log `name`.
///
/// Another writer of the same log (a periodic snapshot still being written as the shard
/// stops) may prune at the same time: a file already gone is pruned. Only the oldest files
/// go, so the newest snapshot always stays.
pub fn prune(dir: &Path, name: &str, keep: usize) -> Result<(), SnapshotError> {
    let mut all = list(dir, name).map_err(io_at(dir))?;
    while all.len() > keep {
        let (_, old) = all.remove(0);
        match std::fs::remove_file(&old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_at(&old)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// The file a snapshot of log `name` up to record `upto` is kept in, under `dir`.
pub fn path_of(dir: &Path, name: &str, upto: u64) -> PathBuf {
    dir.join(file_name(name, upto))
}

fn io_at(at: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = at.display().to_string();
    move |error| SnapshotError::Io { path, error }
}

/// The snapshot files of log `name`, oldest first.
pub fn list(dir: &Path, name: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let prefix = format!("{name}.");
    for entry in entries {
        let entry = entry?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        let Some(rest) = fname.strip_prefix(&prefix) else {
            continue;
        };
        let Some(num) = rest.strip_suffix(".snap") else {
            continue;
        };
        if num.len() == 20 {
            if let Ok(upto) = num.parse() {
                out.push((upto, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and fully validates one snapshot; on success calls `visit` on each body record.
pub fn load(
    path: &Path,
    visit: impl FnMut(&Record<'_>) -> Result<(), VisitError>,
) -> Result<SnapshotMeta, SnapshotError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| SnapshotError::Io {
        path: shown.clone(),
        error,
    })?;
    load_bytes(&shown, &bytes, visit)
}

/// Fully validates the snapshot `bytes` (named `shown` in errors); on success calls `visit`
/// on each body record.
pub fn load_bytes(
    shown: &str,
    bytes: &[u8],
    mut visit: impl FnMut(&Record<'_>) -> Result<(), VisitError>,
) -> Result<SnapshotMeta, SnapshotError> {
    let invalid = |reason: String| SnapshotError::Invalid {
        path: shown.to_string(),
        reason,
    };
    let corrupt = |corruption: Corruption| SnapshotError::Corrupt {
        path: shown.to_string(),
        corruption,
    };
    // First pass: structure only, so that a bad snapshot never feeds half a state to `visit`.
    let mut meta = None;
    let mut end = None;
    let mut body = 0u64;
    let out = scan(bytes, ScanStart::BEGINNING, |r| {
        if end.is_some() {
            return Err("records after snapshot.end".into());
        }
        match r.kind {
            "snapshot" if r.seq == 1 => meta = Some(parse_meta(r)?),
            "snapshot.end" => end = Some(r.num::<u64>("records")?),
            _ if meta.is_none() => return Err("no snapshot header".into()),
            _ => body += 1,
        }
        Ok(())
    })
    .map_err(corrupt)?;
    if let Some(t) = out.torn {
        return Err(invalid(format!("torn at line {}: {}", t.line, t.reason)));
    }
    let meta = meta.ok_or_else(|| invalid("no snapshot header".into()))?;
    match end {
        Some(n) if n == body => {}
        Some(n) => return Err(invalid(format!("end says {n} records, found {body}"))),
        None => return Err(invalid("no snapshot.end record".into())),
    }
    // Second pass: hand the body to the caller.
    scan(bytes, ScanStart::BEGINNING, |r| match r.kind {
        "snapshot" | "snapshot.end" => Ok(()),
        _ => visit(r),
    })
    .map_err(corrupt)?;
    Ok(meta)
}

fn parse_meta(r: &Record<'_>) -> Result<SnapshotMeta, VisitError> {
    let hash = r.str("hash")?;
    Ok(SnapshotMeta {
        name: r.str("log")?.to_string(),
        upto_seq: r.num("upto")?,
        log_offset: r.num("offset")?,
        log_line: r.num("line")?,
        state_hash: u64::from_str_radix(hash, 16).map_err(|_| format!("bad hash {hash:?}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(upto: u64) -> SnapshotMeta {
        SnapshotMeta {
            name: "sol".into(),
            upto_seq: upto,
            log_offset: upto * 10,
            log_line: upto + 1,
            state_hash: 0xfeed,
        }
    }

    fn body(w: &mut SnapshotWriter) {
        for i in 0..3 {
            w.record("snap.player", |l| {
                l.field("player", &format!("p {i}"));
            });
        }
    }

    #[test]
    fn write_load_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        for upto in [5, 9, 12] {
            write(dir.path(), &meta(upto), &encode(&meta(upto), body)).unwrap();
        }
        let all = list(dir.path(), "sol").unwrap();
        assert_eq!(all.iter().map(|(u, _)| *u).collect::<Vec<_>>(), vec![9, 12]);
        let mut names = Vec::new();
        let m = load(&all[1].1, |r| {
            names.push(r.get("player").unwrap().to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(m, meta(12));
        assert_eq!(names, vec!["p 0", "p 1", "p 2"]);
    }

    /// A shard's periodic snapshot can still be writing when it stops and writes its last one,
    /// and the mesh's checkpoint task can race the checkpoint written at stop: both prune the
    /// same old files, and may write the same sequence number. Neither may fail.
    #[test]
    fn concurrent_writers_of_one_log_never_fail() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let dir = dir.path();
                s.spawn(move || {
                    for i in 1..=200u64 {
                        // Threads 2 and 3 write the same sequence numbers.
                        let upto = i * 4 + t.min(2);
                        let m = meta(upto);
                        write(dir, &m, &encode(&m, body))
                            .unwrap_or_else(|e| panic!("writer {t} at {upto}: {e}"));
                    }
                });
            }
        });
        let all = list(dir.path(), "sol").unwrap();
        assert_eq!(
            all.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
            vec![801, 802]
        );
        for (_, path) in &all {
            load(path, |_| Ok(())).unwrap();
        }
    }

    #[test]
    fn a_snapshot_without_its_end_is_refused_before_any_record_is_visited() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode(&meta(5), body);
        let cut = bytes.len() - 30;
        let path = dir.path().join(file_name("sol", 5));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let mut visited = 0;
        let err = load(&path, |_| {
            visited += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(visited, 0);
        assert!(err.to_string().contains("not a complete snapshot"), "{err}");
    }
}
