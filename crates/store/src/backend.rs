//! The storage seam: what the mesh asks of storage, as three object-safe traits, and their two
//! implementations.
//!
//! - [`LogStore`]: named append-only logs. Open one for appending from its recovered end (every
//!   valid record handed to the caller, a torn tail cut), read one from a position, list them.
//! - [`SnapshotStore`]: a log's snapshots. Put, list, get, keep the newest N.
//! - [`Ownership`]: claim, renew and release a unit, with an epoch that only grows; or claim it
//!   shared, to read it while nobody writes.
//!
//! The implementations: files ([`FileLogs`], [`FileSnapshots`], [`FileOwnership`]: the data
//! directory, byte for byte what it always was; the default), and memory ([`MemLogs`],
//! [`MemSnapshots`], [`MemOwnership`]: each log a [`SimFile`], with faults to inject (a failed
//! append or sync with ENOSPC or EIO, a crash that loses what was not synced and may tear the
//! last write); for tests). The next issues' simulator and JetStream backend plug in here.
//!
//! Positions ([`Position`]) are opaque to the mesh: it gets them from a log (its position when
//! a snapshot is taken) and hands them back to [`LogStore::open`]. For files they are byte
//! offsets and line numbers; for a stream they would be sequence numbers.
//!
//! This module never interprets records (the mesh's codec does) and never decides what recovery
//! does with them; it reads, cuts torn tails, appends and stores bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::datadir::DataDir;
use crate::disk::{write_atomic, AppendFile, Fault, SimFile};
use crate::log::{first_seq, read_and_scan, Log, LogError, Opened, Position};
use crate::record::{parse_line, Record, MAX_RECORD_BYTES};
use crate::scan::{scan, ScanOutcome, ScanStart, VisitError};
use crate::snapshot::{self, SnapshotError, SnapshotMeta, SNAPSHOTS_KEPT};

/// What a store hands each record it reads to.
pub type Visit<'a> = &'a mut dyn FnMut(&Record<'_>) -> Result<(), VisitError>;

/// The unit a mesh claims, and the tools that read or rewrite its logs (for files: the whole
/// data directory).
pub const MESH_UNIT: &str = "mesh";

/// The name of the transition log.
pub const TRANSITIONS_LOG: &str = "transitions";
/// The names of systems' logs start with this.
pub const SYSTEMS_PREFIX: &str = "systems/";

/// The name of the log of a system's instance with slug `slug` (`systems/<slug>`).
pub fn system_log(slug: &str) -> String {
    format!("{SYSTEMS_PREFIX}{slug}")
}

/// Named append-only logs.
pub trait LogStore: Send + Sync {
    /// Opens log `name` for appending from its recovered end. Reads it from `from` (a position
    /// this store gave, or [`Position::BEGINNING`]; `from.next_seq` is the record expected
    /// first), hands each valid record to `visit`, cuts a torn tail (reported in
    /// [`Opened::cut`]) and refuses corruption. A log that does not exist is created empty.
    fn open(&self, name: &str, from: Position, visit: Visit<'_>)
        -> Result<(Log, Opened), LogError>;
    /// Reads log `name` from `from` without opening it for appending and without cutting
    /// anything; a log that does not exist is empty.
    fn read(&self, name: &str, from: Position, visit: Visit<'_>) -> Result<ScanOutcome, LogError>;
    /// The names of the logs that exist and start with `prefix`, sorted; names are folders
    /// joined by `/`, and only the logs in `prefix`'s own folder are listed, not deeper ones.
    fn list(&self, prefix: &str) -> Result<Vec<String>, LogError>;
}

/// The snapshots of named logs ([`snapshot`] encodes and validates them).
pub trait SnapshotStore: Send + Sync {
    /// Stores a snapshot durably (all or nothing), then keeps the newest [`SNAPSHOTS_KEPT`] of
    /// its log.
    fn put(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), SnapshotError>;
    /// The snapshots of log `name` (the record each is up to), oldest first.
    fn list(&self, name: &str) -> Result<Vec<u64>, SnapshotError>;
    /// Fully validates the snapshot of `name` up to record `upto`, then hands its body records
    /// to `visit`.
    fn get(&self, name: &str, upto: u64, visit: Visit<'_>) -> Result<SnapshotMeta, SnapshotError>;
    /// Removes all but the newest `keep` snapshots of log `name`.
    fn keep_newest(&self, name: &str, keep: usize) -> Result<(), SnapshotError>;
    /// Where the snapshot of `name` up to `upto` is, for messages.
    fn describe(&self, name: &str, upto: u64) -> String;
}

/// A unit held by one owner at a time, or read by any number of readers while no owner holds
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub unit: String,
    /// Grows with every owner's claim of the unit, whoever makes it, across restarts; a
    /// reader's claim has the last owner's epoch (0: never owned).
    pub epoch: u64,
    /// A reader's claim ([`Ownership::claim_shared`]): others may read alongside, nobody may
    /// own the unit until it is released.
    pub shared: bool,
}

/// Why a unit cannot be claimed or kept.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// Someone else holds the unit; the message says who, where it is known.
    #[error("{0}")]
    Held(String),
    #[error("{unit}: claim of epoch {epoch} is not held (released, or never claimed here)")]
    NotHeld { unit: String, epoch: u64 },
    #[error("{unit}: {reason}")]
    Failed { unit: String, reason: String },
}

/// Who may write a unit (for files: the whole data directory), and who may read it knowing
/// nobody writes it meanwhile. Every tool takes its claim here: `serve` and `compact` own the
/// directory, `check` and `replay` claim it shared (`check --live` reads beside a running
/// owner on purpose, and claims nothing).
///
/// Renewal: a claim on files is the OS lock of `LOCK`, held until it is released or the process
/// ends (even by SIGKILL), and no other process can take it meanwhile; it cannot expire, so
/// nothing needs to renew it, and [`Ownership::renew`] only says whether it is still held. A
/// lease-based implementation (the next issues' JetStream backend) expires claims: its owner
/// must renew within the lease, and that is where a renewal loop belongs.
pub trait Ownership: Send + Sync {
    /// Claims `unit` for this process, with an epoch greater than every earlier claim's.
    /// Refused while anyone else holds it, owner or reader.
    fn claim(&self, unit: &str) -> Result<Claim, OwnershipError>;
    /// Claims `unit` to read it: any number of readers at once, refused while an owner holds
    /// it, and no owner can claim it until every reader has released it. The epoch does not
    /// grow (nothing is written).
    fn claim_shared(&self, unit: &str) -> Result<Claim, OwnershipError>;
    /// Says the claim is still held (for a lease: extends it).
    fn renew(&self, claim: &Claim) -> Result<(), OwnershipError>;
    /// Lets the unit go.
    fn release(&self, claim: &Claim) -> Result<(), OwnershipError>;
}

/// The stores a mesh runs on.
#[derive(Clone)]
pub struct Storage {
    pub logs: Arc<dyn LogStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
}

impl Storage {
    /// The data directory's logs and snapshots (the default).
    pub fn files(datadir: &DataDir) -> Storage {
        Storage {
            logs: Arc::new(FileLogs::new(datadir)),
            snapshots: Arc::new(FileSnapshots::new(datadir)),
        }
    }
}

/// Where a read of a log that holds `len` stored bytes, whose first record is `first`, starts
/// for a caller at `from`: the beginning for a new log or one compacted right up to
/// `from.next_seq`, else `from`'s offset and line.
pub fn start_in(len: u64, first: Option<u64>, from: Position) -> ScanStart {
    assert!(from.next_seq >= 1, "sequence numbers start at 1");
    let at_beginning = from.next_seq == 1 || len == 0 || first == Some(from.next_seq);
    ScanStart {
        offset: if at_beginning { 0 } else { from.offset },
        line: if at_beginning { 1 } else { from.line },
        expect_seq: Some(from.next_seq),
    }
}

/// Where a read at `from` starts in `stored`, a log's stored bytes from its first record (as a
/// stream or memory holds them): the byte offset and the scan's start. Refused, naming the log
/// as `shown`, when the log is shorter than `from` says (a snapshot ahead of its log).
pub fn read_start(
    stored: &[u8],
    shown: &str,
    from: Position,
) -> Result<(usize, ScanStart), LogError> {
    let first_line = stored[..stored.len().min(MAX_RECORD_BYTES)]
        .split_inclusive(|b| *b == b'\n')
        .next()
        .unwrap_or(&[]);
    let first = parse_line(first_line).ok().map(|r| r.seq);
    let start = start_in(stored.len() as u64, first, from);
    let offset = usize::try_from(start.offset).unwrap_or(usize::MAX);
    if offset > stored.len() {
        return Err(LogError::ShorterThanSnapshot {
            path: shown.to_string(),
            len_bytes: stored.len() as u64,
            offset: start.offset,
        });
    }
    Ok((offset, start))
}

/// The logs of a data directory: log `name` is the file `<root>/<name>.log`
/// (`systems/<slug>.log`, `transitions.log`).
pub struct FileLogs {
    root: PathBuf,
}

impl FileLogs {
    pub fn new(datadir: &DataDir) -> FileLogs {
        FileLogs {
            root: datadir.root().to_path_buf(),
        }
    }

    /// The file of log `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.log"))
    }

    fn start(&self, path: &Path, from: Position) -> ScanStart {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let first = (from.next_seq > 1 && len > 0)
            .then(|| first_seq(path))
            .flatten();
        start_in(len, first, from)
    }
}

impl LogStore for FileLogs {
    fn open(
        &self,
        name: &str,
        from: Position,
        visit: Visit<'_>,
    ) -> Result<(Log, Opened), LogError> {
        let path = self.path(name);
        let start = self.start(&path, from);
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            std::fs::create_dir_all(dir)
                .and_then(|()| crate::disk::sync_parent_dir(dir))
                .map_err(|e| LogError::Failed {
                    path: dir.display().to_string(),
                    what: "cannot create".into(),
                    error: Arc::new(e),
                })?;
        }
        Log::open(&path, start, visit)
    }

    fn read(&self, name: &str, from: Position, visit: Visit<'_>) -> Result<ScanOutcome, LogError> {
        let path = self.path(name);
        read_and_scan(&path, self.start(&path, from), visit)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, LogError> {
        let (dir, file_prefix) = match prefix.rsplit_once('/') {
            Some((dir, rest)) => (self.root.join(dir), rest),
            None => (self.root.clone(), prefix),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(LogError::Read {
                    path: dir.display().to_string(),
                    error: Arc::new(e),
                })
            }
        };
        let dir_part = &prefix[..prefix.len() - file_prefix.len()];
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_str()?.to_string();
                let stem = file.strip_suffix(".log")?;
                stem.starts_with(file_prefix)
                    .then(|| format!("{dir_part}{stem}"))
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The snapshots of a data directory: `snapshots/<name>.<upto, 20 digits>.snap`.
pub struct FileSnapshots {
    dir: PathBuf,
}

impl FileSnapshots {
    pub fn new(datadir: &DataDir) -> FileSnapshots {
        FileSnapshots {
            dir: datadir.snapshots_dir(),
        }
    }
}

impl SnapshotStore for FileSnapshots {
    fn put(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), SnapshotError> {
        snapshot::write(&self.dir, meta, bytes).map(|_| ())
    }

    fn list(&self, name: &str) -> Result<Vec<u64>, SnapshotError> {
        let all = snapshot::list(&self.dir, name).map_err(|error| SnapshotError::Io {
            path: self.dir.display().to_string(),
            error,
        })?;
        Ok(all.into_iter().map(|(upto, _)| upto).collect())
    }

    fn get(&self, name: &str, upto: u64, visit: Visit<'_>) -> Result<SnapshotMeta, SnapshotError> {
        snapshot::load(&snapshot::path_of(&self.dir, name, upto), visit)
    }

    fn keep_newest(&self, name: &str, keep: usize) -> Result<(), SnapshotError> {
        snapshot::prune(&self.dir, name, keep)
    }

    fn describe(&self, name: &str, upto: u64) -> String {
        snapshot::path_of(&self.dir, name, upto)
            .display()
            .to_string()
    }
}

/// The data directory's ownership: the `LOCK` file's OS lock (held until released or the
/// process ends, even by SIGKILL) is the claim of any unit, and the epoch is the number in the
/// side file `EPOCH`, read, incremented and rewritten atomically (temporary file, fsync,
/// rename) while the lock is held. (Not in `LOCK` itself: that file is rewritten in place with
/// the holder's pid, and a crash there must never take the epoch back.)
pub struct FileOwnership {
    datadir: DataDir,
    /// The claim held, if any.
    held: Mutex<Option<FileClaim>>,
}

/// A claim a [`FileOwnership`] holds: closing its file releases the OS lock.
struct FileClaim {
    epoch: u64,
    shared: bool,
    /// The open `LOCK` file (for a reader, none if no owner ever made one: none can be
    /// running).
    _lock: Option<std::fs::File>,
}

impl FileOwnership {
    pub fn new(datadir: &DataDir) -> FileOwnership {
        FileOwnership {
            datadir: datadir.clone(),
            held: Mutex::new(None),
        }
    }

    fn held(&self) -> MutexGuard<'_, Option<FileClaim>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch of the last claim (0: never claimed).
    pub fn last_epoch(&self) -> Result<u64, OwnershipError> {
        let path = self.datadir.epoch_file();
        let failed = |reason: String| OwnershipError::Failed {
            unit: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|_| failed(format!("not an epoch number: {:?}", text.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(failed(format!("cannot read: {e}"))),
        }
    }
}

impl Ownership for FileOwnership {
    fn claim(&self, _unit: &str) -> Result<Claim, OwnershipError> {
        let mut held = self.held();
        let lock = self
            .datadir
            .lock_exclusive()
            .map_err(OwnershipError::Held)?;
        let epoch = self.last_epoch()? + 1;
        let path = self.datadir.epoch_file();
        write_atomic(&path, format!("{epoch}\n").as_bytes()).map_err(|e| {
            OwnershipError::Failed {
                unit: path.display().to_string(),
                reason: format!("cannot write: {e}"),
            }
        })?;
        *held = Some(FileClaim {
            epoch,
            shared: false,
            _lock: Some(lock),
        });
        Ok(Claim {
            unit: self.datadir.root().display().to_string(),
            epoch,
            shared: false,
        })
    }

    fn claim_shared(&self, _unit: &str) -> Result<Claim, OwnershipError> {
        let mut held = self.held();
        let lock = self.datadir.lock_shared().map_err(OwnershipError::Held)?;
        let epoch = self.last_epoch()?;
        *held = Some(FileClaim {
            epoch,
            shared: true,
            _lock: lock,
        });
        Ok(Claim {
            unit: self.datadir.root().display().to_string(),
            epoch,
            shared: true,
        })
    }

    fn renew(&self, claim: &Claim) -> Result<(), OwnershipError> {
        match &*self.held() {
            Some(h) if h.epoch == claim.epoch && h.shared == claim.shared => Ok(()),
            _ => Err(OwnershipError::NotHeld {
                unit: claim.unit.clone(),
                epoch: claim.epoch,
            }),
        }
    }

    fn release(&self, claim: &Claim) -> Result<(), OwnershipError> {
        self.renew(claim)?;
        // Closing the file releases the OS lock.
        *self.held() = None;
        Ok(())
    }
}

/// In-memory logs for tests: each log a [`SimFile`] (durable bytes, and bytes appended but
/// not yet synced), in the same record format and with the same positions as files.
#[derive(Default)]
pub struct MemLogs {
    files: Mutex<BTreeMap<String, SimFile>>,
}

impl MemLogs {
    pub fn new() -> MemLogs {
        MemLogs::default()
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<String, SimFile>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The simulated file of log `name` (created empty if new).
    pub fn file(&self, name: &str) -> SimFile {
        self.files().entry(name.to_string()).or_default().clone()
    }

    /// Makes the operation `ops_from_now` operations ahead on log `name`'s file fail with
    /// `fault` (0: the next one). A log's committer appends a batch, then syncs it: on an idle
    /// log, 0 hits the next append and 1 its sync.
    pub fn inject(&self, name: &str, ops_from_now: u64, fault: Fault) {
        let file = self.file(name);
        let step = file.lock().steps + ops_from_now;
        file.fault_at(step, fault);
    }

    /// The bytes of log `name` that survive a crash now.
    pub fn durable(&self, name: &str) -> Vec<u8> {
        self.file(name).lock().durable.clone()
    }

    /// The machine crashes: every file stops working (the logs open on it fail from now on),
    /// and the returned store is what a restart finds: each log's durable bytes, and if
    /// `tear`, the first half of what was appended but not synced (a torn last write).
    pub fn crash(&self, tear: bool) -> MemLogs {
        let after = MemLogs::new();
        for (name, file) in self.files().iter() {
            let mut s = file.lock();
            s.crashed = true;
            let mut bytes = s.durable.clone();
            if tear {
                bytes.extend_from_slice(&s.unsynced[..s.unsynced.len() / 2]);
            }
            after
                .files()
                .insert(name.clone(), SimFile::with_content(bytes));
        }
        after
    }

    fn shown(name: &str) -> String {
        format!("memory:{name}")
    }
}

impl LogStore for MemLogs {
    fn open(
        &self,
        name: &str,
        from: Position,
        visit: Visit<'_>,
    ) -> Result<(Log, Opened), LogError> {
        let file = self.file(name);
        let (bytes, start) = stored_from(&file, name, from)?;
        let handle: Box<dyn AppendFile> = Box::new(file);
        Log::open_over(Self::shown(name), &bytes, start, || Ok(handle), visit)
    }

    fn read(&self, name: &str, from: Position, visit: Visit<'_>) -> Result<ScanOutcome, LogError> {
        let (bytes, start) = stored_from(&self.file(name), name, from)?;
        scan(&bytes, start, visit).map_err(|corruption| LogError::Corrupt {
            path: Self::shown(name),
            corruption,
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, LogError> {
        Ok(self
            .files()
            .keys()
            .filter(|n| {
                n.strip_prefix(prefix)
                    .is_some_and(|rest| !rest.contains('/'))
            })
            .cloned()
            .collect())
    }
}

/// The durable bytes of a simulated log from where a read at `from` starts, and that start.
fn stored_from(
    file: &SimFile,
    name: &str,
    from: Position,
) -> Result<(Vec<u8>, ScanStart), LogError> {
    let durable = file.lock().durable.clone();
    let (offset, start) = read_start(&durable, &MemLogs::shown(name), from)?;
    Ok((durable[offset..].to_vec(), start))
}

/// In-memory snapshots for tests. A put is atomic and durable at once (as the files' rename
/// is), so a crash keeps every snapshot: [`MemSnapshots::crash`] copies them.
#[derive(Default)]
pub struct MemSnapshots {
    all: Mutex<BTreeMap<(String, u64), Vec<u8>>>,
}

impl MemSnapshots {
    pub fn new() -> MemSnapshots {
        MemSnapshots::default()
    }

    fn all(&self) -> MutexGuard<'_, BTreeMap<(String, u64), Vec<u8>>> {
        self.all.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a restart after a crash finds (everything put so far), apart from this store (a
    /// dead process's late writes never reach it).
    pub fn crash(&self) -> MemSnapshots {
        MemSnapshots {
            all: Mutex::new(self.all().clone()),
        }
    }
}

impl SnapshotStore for MemSnapshots {
    fn put(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.all()
            .insert((meta.name.clone(), meta.upto_seq), bytes.to_vec());
        self.keep_newest(&meta.name, SNAPSHOTS_KEPT)
    }

    fn list(&self, name: &str) -> Result<Vec<u64>, SnapshotError> {
        let all = self.all();
        let from = (name.to_string(), 0);
        let to = (name.to_string(), u64::MAX);
        Ok(all.range(from..=to).map(|((_, upto), _)| *upto).collect())
    }

    fn get(&self, name: &str, upto: u64, visit: Visit<'_>) -> Result<SnapshotMeta, SnapshotError> {
        let shown = self.describe(name, upto);
        let bytes = self.all().get(&(name.to_string(), upto)).cloned();
        let bytes = bytes.ok_or_else(|| SnapshotError::Io {
            path: shown.clone(),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        snapshot::load_bytes(&shown, &bytes, visit)
    }

    fn keep_newest(&self, name: &str, keep: usize) -> Result<(), SnapshotError> {
        let mut uptos = self.list(name)?;
        let mut all = self.all();
        while uptos.len() > keep {
            all.remove(&(name.to_string(), uptos.remove(0)));
        }
        Ok(())
    }

    fn describe(&self, name: &str, upto: u64) -> String {
        format!("memory:snapshots/{name}.{upto:020}.snap")
    }
}

/// In-memory ownership for tests: each unit's holders and its last epoch.
#[derive(Default)]
pub struct MemOwnership {
    units: Mutex<BTreeMap<String, MemUnit>>,
}

/// Who holds one unit of a [`MemOwnership`].
#[derive(Default)]
struct MemUnit {
    owned: bool,
    readers: u64,
    /// The last owner's epoch (0: never owned).
    epoch: u64,
}

impl MemOwnership {
    pub fn new() -> MemOwnership {
        MemOwnership::default()
    }

    fn units(&self) -> MutexGuard<'_, BTreeMap<String, MemUnit>> {
        self.units.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Ownership for MemOwnership {
    fn claim(&self, unit: &str) -> Result<Claim, OwnershipError> {
        let mut units = self.units();
        let u = units.entry(unit.to_string()).or_default();
        if u.owned || u.readers > 0 {
            let (epoch, readers) = (u.epoch, u.readers);
            return Err(OwnershipError::Held(format!(
                "{unit} is held (epoch {epoch}, {readers} readers)"
            )));
        }
        u.owned = true;
        u.epoch += 1;
        Ok(Claim {
            unit: unit.to_string(),
            epoch: u.epoch,
            shared: false,
        })
    }

    fn claim_shared(&self, unit: &str) -> Result<Claim, OwnershipError> {
        let mut units = self.units();
        let u = units.entry(unit.to_string()).or_default();
        if u.owned {
            return Err(OwnershipError::Held(format!(
                "{unit} is held (epoch {})",
                u.epoch
            )));
        }
        u.readers += 1;
        Ok(Claim {
            unit: unit.to_string(),
            epoch: u.epoch,
            shared: true,
        })
    }

    fn renew(&self, claim: &Claim) -> Result<(), OwnershipError> {
        let held = self.units().get(&claim.unit).is_some_and(|u| {
            let holds = if claim.shared { u.readers > 0 } else { u.owned };
            holds && u.epoch == claim.epoch
        });
        if held {
            Ok(())
        } else {
            Err(OwnershipError::NotHeld {
                unit: claim.unit.clone(),
                epoch: claim.epoch,
            })
        }
    }

    fn release(&self, claim: &Claim) -> Result<(), OwnershipError> {
        self.renew(claim)?;
        if let Some(u) = self.units().get_mut(&claim.unit) {
            if claim.shared {
                assert!(u.readers > 0, "a held reader's claim counts");
                u.readers -= 1;
            } else {
                u.owned = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
