//! Compaction: moves the part of each log that lies behind its newest snapshot (or, for the
//! transition log, behind its checkpoint) into `archive/`, so the active logs stay short. Run
//! while no server uses the directory (the caller holds its lock).
//!
//! Crash-safe by order: the archived segment is written in full (temporary file, fsync,
//! rename, directory fsync) before the active log is replaced by its tail the same way. A crash
//! in between leaves the records in both files; recovery reads only the active log and the
//! auditor skips an archived segment that overlaps it. Never changes a record.
//!
//! A file tool: it moves files and names them in its report, so it works on the data
//! directory itself, not through the storage traits ([`store::backend`]).

use std::path::Path;

use serde::Serialize;

use super::recovery::{instance_logs, load_checkpoint, load_snapshot};
use super::MeshError;
use sim::galaxy::Galaxy;
use sim::instance::InstanceId;
use store::backend::FileSnapshots;
use store::datadir::{archived_segment_path, DataDir};
use store::disk::write_atomic;
use store::log::{first_seq, read_from};
use store::snapshot::SnapshotMeta;

/// What compaction moved.
#[derive(Debug, Default, Serialize)]
pub struct CompactReport {
    /// One line per log compacted: archive file, records, bytes.
    pub archived: Vec<String>,
    pub records: u64,
    pub bytes: u64,
    /// Logs left as they were, with why (no snapshot, nothing behind it).
    pub skipped: u64,
}

/// Compacts every log of the data directory.
pub fn compact(datadir: &DataDir, galaxy: &Galaxy) -> Result<CompactReport, MeshError> {
    let mut report = CompactReport::default();
    let snapshots = FileSnapshots::new(datadir);
    let io = |e: String| MeshError::Internal(e);
    std::fs::create_dir_all(datadir.archive_dir()).map_err(|e| {
        io(format!(
            "cannot create {}: {e}",
            datadir.archive_dir().display()
        ))
    })?;
    let every = galaxy.ids().flat_map(|id| {
        let instances = instance_logs(datadir, galaxy, id).into_iter();
        std::iter::once(InstanceId::primary(id))
            .chain(instances.map(move |n| InstanceId::new(id, n)))
    });
    for at in every {
        let slug = at.slug(galaxy);
        let mut bad = Vec::new();
        let meta = load_snapshot(&snapshots, galaxy, at, &mut bad)?.map(|(_, m)| m);
        let done = match meta {
            Some(m) => compact_log(
                &datadir.system_log(&slug),
                &datadir.archive_dir(),
                &slug,
                &m,
            )
            .map_err(io)?,
            None => None,
        };
        record(&mut report, done);
    }
    let mut bad = Vec::new();
    let done = match load_checkpoint(&snapshots, &mut bad) {
        Some(m) => compact_log(
            &datadir.transitions_log(),
            &datadir.archive_root(),
            "transitions",
            &m,
        )
        .map_err(io)?,
        None => None,
    };
    record(&mut report, done);
    Ok(report)
}

fn record(report: &mut CompactReport, done: Option<(String, u64, u64)>) {
    match done {
        Some((line, records, bytes)) => {
            report.archived.push(line);
            report.records += records;
            report.bytes += bytes;
        }
        None => report.skipped += 1,
    }
}

/// Moves the records of `active` up to `meta.upto_seq` into an archived segment.
fn compact_log(
    active: &Path,
    archive_dir: &Path,
    name: &str,
    meta: &SnapshotMeta,
) -> Result<Option<(String, u64, u64)>, String> {
    let Some(first) = first_seq(active) else {
        return Ok(None);
    };
    if first > meta.upto_seq {
        return Ok(None); // nothing behind the snapshot
    }
    let bytes = read_from(active, 0).map_err(|e| e.to_string())?;
    let cut = usize::try_from(meta.log_offset).map_err(|e| e.to_string())?;
    if cut > bytes.len() {
        return Err(format!(
            "{}: shorter than its snapshot's offset {cut}",
            active.display()
        ));
    }
    // The tail must start with the record right after the snapshot.
    if cut < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[cut..]).map_or(bytes.len(), |i| cut + i + 1);
        let rec = store::record::parse_line(&bytes[cut..end])
            .map_err(|e| format!("{} at byte {cut}: {e}", active.display()))?;
        if rec.seq != meta.upto_seq + 1 {
            return Err(format!(
                "{} at byte {cut}: record {} where {} was expected",
                active.display(),
                rec.seq,
                meta.upto_seq + 1
            ));
        }
    }
    let segment = archived_segment_path(archive_dir, name, first, meta.upto_seq);
    write_atomic(&segment, &bytes[..cut]).map_err(|e| format!("{}: {e}", segment.display()))?;
    write_atomic(active, &bytes[cut..]).map_err(|e| format!("{}: {e}", active.display()))?;
    let records = meta.upto_seq + 1 - first;
    Ok(Some((
        format!("{} ({records} records)", segment.display()),
        records,
        cut as u64,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::audit;
    use crate::test_support::{fast_config as config, join, jump};
    use crate::Mesh;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_archives_old_segments_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        let galaxy = Galaxy::default_galaxy();
        let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config())
            .await
            .unwrap();
        join(&mesh, 10).await;
        jump(&mesh, 10, 120).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        mesh.stop().await.unwrap();

        let before = audit(&datadir, &galaxy);
        assert!(before.ok(), "{:?}", before.problems);
        let report = compact(&datadir, &galaxy).unwrap();
        assert!(report.records > 0, "{report:?}");
        assert!(
            report.archived.iter().any(|a| a.contains("transitions.")),
            "{report:?}"
        );
        let after = audit(&datadir, &galaxy);
        assert!(after.ok(), "{:?}", after.problems);
        assert_eq!(after.galaxy_hash, before.galaxy_hash);
        assert_eq!((after.records, after.jumps), (before.records, before.jumps));

        // The compacted directory recovers, runs, and stays sound; compacting twice is a no-op.
        let again = compact(&datadir, &galaxy).unwrap();
        assert_eq!(again.records, 0);
        let (mesh, rec) = Mesh::start(datadir.clone(), galaxy.clone(), config())
            .await
            .unwrap();
        assert_eq!(rec.players, 10);
        jump(&mesh, 10, 30).await;
        mesh.stop().await.unwrap();
        let last = audit(&datadir, &galaxy);
        assert!(last.ok(), "{:?}", last.problems);
        assert_eq!(last.players, 10);
    }
}
