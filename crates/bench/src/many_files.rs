//! The raw floor with many files at once: N threads, each appending 100 bytes to a file of its
//! own and fdatasync'ing it, as the mesh's logs do (one a star system, and the transition log).
//!
//! It measures the disk and the file system, not mltrader: how many syncs a second they give
//! in all, and how long one takes, when this many files sync at the same time. On ext4 each
//! sync of an appended file waits for a journal commit, and the journal commits one
//! transaction at a time, so the latency of one sync grows with the number of files syncing.
//! Owns its scratch files only; never touches a log.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use super::percentile;

/// A sync this slow is a stall (what a p99 under 2 ms cannot absorb).
pub const STALL: Duration = Duration::from_millis(8);

/// Figures of one run with `files` files syncing at once.
#[derive(Clone, Debug, Serialize)]
pub struct ManyFiles {
    pub files: usize,
    pub syncs: usize,
    pub syncs_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Syncs that took [`STALL`] or more.
    pub stalls: usize,
}

/// Runs `files` threads for `seconds`, each with its own file in `dir`.
pub fn measure(dir: &Path, files: usize, seconds: Duration) -> anyhow::Result<ManyFiles> {
    assert!(files > 0, "at least one file");
    let start = Instant::now();
    let threads: Vec<_> = (0..files)
        .map(|i| {
            let path = dir.join(format!("many-{files}-{i}.dat"));
            std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
                let mut f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                let mut rec = [b'x'; 100];
                rec[99] = b'\n';
                let mut lats = Vec::new();
                // At least one sync each, however late the thread starts.
                loop {
                    let t = Instant::now();
                    f.write_all(&rec)?;
                    f.sync_data()?;
                    lats.push(t.elapsed().as_nanos() as u64);
                    if start.elapsed() >= seconds {
                        break;
                    }
                }
                drop(f);
                std::fs::remove_file(&path)?;
                Ok(lats)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let lats = t
            .join()
            .map_err(|_| anyhow::anyhow!("a sync thread panicked"))??;
        all.extend(lats);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stall_ns = STALL.as_nanos() as u64;
    let stalls = all.iter().filter(|&&ns| ns >= stall_ns).count();
    let syncs = all.len();
    let us = super::storage::sorted_us(all);
    Ok(ManyFiles {
        files,
        syncs,
        syncs_per_s: syncs as f64 / elapsed,
        p50_us: percentile(&us, 50.0),
        p99_us: percentile(&us, 99.0),
        max_us: us.last().copied().unwrap_or(0.0),
        stalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_sync_of_every_file_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let m = measure(dir.path(), 3, Duration::from_millis(100)).unwrap();
        assert_eq!(m.files, 3);
        assert!(m.syncs >= 3, "each thread syncs at least once: {m:?}");
        assert!(m.syncs_per_s > 0.0 && m.p50_us > 0.0, "{m:?}");
        assert!(m.p50_us <= m.p99_us && m.p99_us <= m.max_us, "{m:?}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "scratch files removed"
        );
    }
}
