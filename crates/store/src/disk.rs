//! The narrow interface between the logs and the bytes on disk: append, make durable, cut.
//!
//! Everything above this trait (the log writer, group commit, recovery) is the same whether the
//! bytes go to a real file or to [`SimFile`], the simulated disk that crash tests use to crash
//! at every write and sync step, lose unsynced bytes, tear the last write, or flip a bit. This
//! module never interprets the bytes it stores.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// An append-only file as the log writer sees it.
pub trait AppendFile: Send {
    /// Appends all of `bytes` (not yet durable).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable (fdatasync on a real file).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes and makes that durable.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// A real file opened for appending.
pub struct RealFile {
    file: File,
}

impl RealFile {
    /// Opens (creating if needed) `path` for appending. A newly created file's directory is
    /// fsynced, so the file's existence is itself durable.
    pub fn open_append(path: &Path) -> io::Result<RealFile> {
        let existed = path.exists();
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if !existed {
            file.sync_all()?;
            sync_parent_dir(path)?;
        }
        Ok(RealFile { file })
    }
}

impl AppendFile for RealFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }
}

/// fsyncs the directory holding `path`, so that a create or rename in it is durable.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync the directory.
/// After a crash, `path` holds either its old content or all of `bytes`, never a mix.
///
/// Two threads may write the same path at once (a shard's periodic snapshot and the one it
/// writes as it stops can be at the same record): each has a temporary file of its own, so
/// neither truncates the other's nor finds it renamed away.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT_TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT_TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{n}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent_dir(path)
}

/// Removes from `dir` the temporary files [`write_atomic`] leaves when its process dies between
/// the create and the rename (`NAME.N.tmp`, N a number): their bytes never became the file's.
/// Returns how many it removed. For a writer that owns `dir` and starts again (its lock held):
/// another process's write in progress would lose its temporary file.
pub fn remove_stale_tmp(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let stale = name
            .to_str()
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once('.'))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if stale && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// What the simulated disk should do at a given step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with an I/O error (as a full disk would: ENOSPC), changing nothing.
    Fail,
    /// The operation fails with EIO (a failing device), changing nothing.
    Eio,
    /// The process dies before the operation takes effect: every later operation fails.
    Crash,
}

/// The state of a simulated file, shared between the writer and the test that inspects it.
#[derive(Debug, Default)]
pub struct SimState {
    /// Bytes that survive a crash.
    pub durable: Vec<u8>,
    /// Bytes appended but not yet synced: a crash may lose them, keep a prefix, or keep them.
    pub unsynced: Vec<u8>,
    /// Operations done so far (appends, syncs and truncates each count one step).
    pub steps: u64,
    /// Fault to inject at a step number.
    pub fault_at: Option<(u64, Fault)>,
    /// Set once a `Crash` fault fired.
    pub crashed: bool,
}

/// A simulated file for crash tests. Clone the handle to look inside after a crash.
#[derive(Clone, Debug, Default)]
pub struct SimFile {
    pub state: Arc<Mutex<SimState>>,
}

impl SimFile {
    /// A simulated file that starts with `durable` bytes already on disk.
    pub fn with_content(durable: Vec<u8>) -> SimFile {
        let f = SimFile::default();
        f.lock().durable = durable;
        f
    }

    /// Injects `fault` at step `step` (0-based count of operations).
    pub fn fault_at(&self, step: u64, fault: Fault) {
        self.lock().fault_at = Some((step, fault));
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        // A test panicking while holding the lock must not hide the original failure.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn step(&self) -> io::Result<std::sync::MutexGuard<'_, SimState>> {
        let mut s = self.lock();
        if s.crashed {
            return Err(io::Error::other("simulated process is dead"));
        }
        let step = s.steps;
        s.steps += 1;
        match s.fault_at {
            Some((at, Fault::Fail)) if at == step => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated: no space left on device",
            )),
            Some((at, Fault::Eio)) if at == step => {
                Err(io::Error::other("simulated: input/output error (EIO)"))
            }
            Some((at, Fault::Crash)) if at == step => {
                s.crashed = true;
                Err(io::Error::other("simulated crash"))
            }
            _ => Ok(s),
        }
    }
}

impl AppendFile for SimFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.step()?.unsynced.extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.step()?;
        let pending = std::mem::take(&mut s.unsynced);
        s.durable.extend_from_slice(&pending);
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.step()?;
        s.unsynced.clear();
        let len = usize::try_from(len).map_err(io::Error::other)?;
        s.durable.truncate(len);
        Ok(())
    }
}

#[cfg(test)]
mod stale_tmp_tests {
    use super::*;

    #[test]
    fn only_the_temporary_files_of_atomic_writes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "export.state.43.tmp",
            "sol@1200.7.tmp",
            "keep.tmp",
            "a.log",
            "x.y.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        write_atomic(&dir.path().join("export.state.json"), b"{}").unwrap();
        assert_eq!(remove_stale_tmp(dir.path()).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.log", "export.state.json", "keep.tmp", "x.y.tmp"]);
        assert_eq!(remove_stale_tmp(&dir.path().join("none")).unwrap(), 0);
    }
}
