//! Each player's history, `players/<name>.log`: a projection of the system logs, one line per
//! event about the player, numbered by the player's version (so line N is their N-th event),
//! each ending with `src=<system>:<seq>`, the record it copies.
//!
//! The system logs are the truth; this is a convenience for people and for `history`. Lines
//! are written by one thread, after their source record is durable, gathered for up to 100 ms
//! (one write per player per round), without an fsync each: a
//! crash may leave a player log behind (or torn). It is never ahead. Before a shard snapshots,
//! it passes a barrier ([`Projector::sync`]) that makes every line up to the snapshot durable,
//! so the records after the newest snapshot, which recovery replays anyway, are all that can
//! be missing; recovery appends them ([`catch_up`]).
//!
//! Stays on files, not on the storage traits ([`store::backend`]): `players/<name>.log` are
//! read by path by `net`'s history (a read from the file's end) and by `check`, and they keep a
//! file handle open per active player (a cache sized to the open-file limit). Moving them onto
//! the log store needs a tail read in [`store::backend::LogStore`] and `net` to use it; until
//! then a mesh on another store still writes its player logs to a data directory.
//!
//! Never decides anything and never writes a system log.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use store::datadir::{player_file_stem, DataDir};
use store::disk::{sync_parent_dir, AppendFile, RealFile};
use store::log::{read_and_scan, read_from, LogError};
use store::record::{Line, Record};
use store::scan::{scan, ScanOutcome, ScanStart, BATCH_FIELD};

pub use super::limits::MAX_OPEN_PLAYER_FILES;

/// One line of one player's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Projected {
    pub player: String,
    pub version: u64,
    pub line: String,
}

/// Builds a player-log line from a source record: same kind and fields (without the batch
/// mark), numbered by the player's version, ending with `src=<slug>:<seq>`.
pub fn line_from_record(rec: &Record<'_>, version: u64, src_slug: &str) -> String {
    let mut buf = String::with_capacity(160);
    let mut line = Line::new(&mut buf, version, rec.kind);
    for (k, v) in &rec.fields {
        if *k != BATCH_FIELD {
            line.field(k, v);
        }
    }
    line.field("src", &format!("{src_slug}:{}", rec.seq));
    line.finish();
    buf
}

enum Msg {
    Line(Projected),
    Sync(std::sync::mpsc::Sender<std::io::Result<()>>),
}

/// The projector thread's handle.
pub struct Projector {
    /// Unbounded on purpose: lines are sent from the shards' ackers, which run on the async
    /// runtime and must never block a worker thread (a bounded queue that filled up stalled
    /// every shard on that worker: commit p99 of seconds under full load). The projector
    /// writes in batches per player and keeps up; the queue only absorbs bursts.
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Projector {
    pub fn start(datadir: &DataDir) -> Projector {
        let (tx, rx) = channel();
        let dir = datadir.players_dir();
        let thread = std::thread::Builder::new()
            .name("projector".into())
            .spawn(move || run(dir, rx))
            .expect("cannot spawn the projector thread");
        Projector {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    fn sender(&self) -> Option<Sender<Msg>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Queues a line; never blocks. Lines of one player must be sent in version order.
    pub fn send(&self, p: Projected) {
        if let Some(tx) = self.sender() {
            let _ = tx.send(Msg::Line(p));
        }
    }

    /// Returns once every line sent before is written and synced.
    pub fn sync(&self) -> std::io::Result<()> {
        let Some(tx) = self.sender() else {
            return Ok(());
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        tx.send(Msg::Sync(done_tx))
            .map_err(|_| std::io::Error::other("projector stopped"))?;
        done_rx
            .recv()
            .map_err(|_| std::io::Error::other("projector stopped"))?
    }

    /// Syncs, then stops the thread.
    pub fn stop(&self) -> std::io::Result<()> {
        let result = self.sync();
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        result
    }
}

struct Files {
    dir: PathBuf,
    /// At most this many files open: MAX_OPEN_PLAYER_FILES, or a quarter of the process's
    /// descriptor limit if that is less (sockets and the system logs need the rest).
    max_open: usize,
    open: HashMap<String, File>,
    dirty: HashSet<String>,
}

impl Files {
    fn append(&mut self, player: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !self.open.contains_key(player) {
            if self.open.len() >= self.max_open {
                // Close half (an arbitrary half: the map's order), keeping the dirty set, so
                // a later sync reopens what it must.
                let evict: Vec<String> = self
                    .open
                    .keys()
                    .take(self.max_open.div_ceil(2))
                    .cloned()
                    .collect();
                for k in evict {
                    self.open.remove(&k);
                }
            }
            let path = self.dir.join(format!("{}.log", player_file_stem(player)));
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            self.open.insert(player.to_string(), f);
        }
        self.dirty.insert(player.to_string());
        match self.open.get_mut(player) {
            Some(f) => f.write_all(bytes),
            None => unreachable!("opened above"),
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        for player in std::mem::take(&mut self.dirty) {
            match self.open.get(&player) {
                Some(f) => f.sync_data()?,
                None => {
                    let path = self.dir.join(format!("{}.log", player_file_stem(&player)));
                    File::open(path)?.sync_data()?;
                }
            }
        }
        File::open(&self.dir)?.sync_all()
    }
}

use super::limits::{PROJECTOR_MAX_PENDING_BYTES, PROJECTOR_WRITE_EVERY};

fn run(dir: PathBuf, rx: Receiver<Msg>) {
    let mut files = Files {
        dir,
        max_open: player_files_open_max(descriptor_limit()),
        open: HashMap::new(),
        dirty: HashSet::new(),
    };
    let mut failed: Option<String> = None;
    // Lines not written yet, by player, each player's in order.
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut pending_bytes = 0usize;
    let mut last_write = Instant::now();
    loop {
        let first = if pending.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(PROJECTOR_WRITE_EVERY.saturating_sub(last_write.elapsed())) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                // Stopping: `stop` synced everything sent before; write what came after.
                Err(RecvTimeoutError::Disconnected) => {
                    write_pending(&mut files, &mut pending, &mut failed);
                    return;
                }
            }
        };
        let mut syncs = Vec::new();
        let mut next = first;
        let mut taken = 0;
        while let Some(msg) = next {
            match msg {
                Msg::Line(p) => {
                    pending_bytes += p.line.len();
                    pending.entry(p.player).or_default().push_str(&p.line);
                }
                Msg::Sync(done) => syncs.push(done),
            }
            taken += 1;
            next = if taken < 8192 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !syncs.is_empty()
            || pending_bytes >= PROJECTOR_MAX_PENDING_BYTES
            || last_write.elapsed() >= PROJECTOR_WRITE_EVERY
        {
            write_pending(&mut files, &mut pending, &mut failed);
            pending_bytes = 0;
            last_write = Instant::now();
        }
        if !syncs.is_empty() {
            let result = match files.sync() {
                Err(e) => Err(e),
                Ok(()) => match &failed {
                    Some(f) => Err(std::io::Error::other(f.clone())),
                    None => Ok(()),
                },
            };
            for done in syncs {
                let _ = done.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
    }
}

/// Appends every pending line to its player's file (one write a player).
fn write_pending(
    files: &mut Files,
    pending: &mut HashMap<String, String>,
    failed: &mut Option<String>,
) {
    for (player, text) in pending.drain() {
        if let Err(e) = files.append(&player, text.as_bytes()) {
            tracing::error!("player log of '{player}': {e}");
            *failed = Some(format!("player log of '{player}': {e}"));
        }
    }
}

/// Player log files the projector keeps open at most under a descriptor limit of
/// `descriptor_limit` (the API's connection cap leaves room for these: `net::connections`).
pub fn player_files_open_max(descriptor_limit: usize) -> usize {
    MAX_OPEN_PLAYER_FILES.min(descriptor_limit / 4).max(16)
}

/// The process's soft limit on open files (1,024 if unknown).
pub fn descriptor_limit() -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we own; it reads nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            return usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
        }
    }
    1024
}

/// Raises the soft limit on open files to the hard limit (a galaxy holds a log per system,
/// player logs and a socket per client; the common default of 1,024 is tight). Best effort.
pub fn raise_descriptor_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the struct we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

/// What catching up found.
#[derive(Debug, Default)]
pub struct CatchUp {
    pub lines_added: u64,
    pub torn_cut: u64,
    /// Player logs that could not be completed (a gap the replayed records do not fill).
    pub problems: Vec<String>,
}

/// Appends to each player's log the lines it lacks among `lines` (from the records recovery
/// replayed), in version order, cutting a torn tail first; syncs what it wrote.
pub fn catch_up(datadir: &DataDir, mut lines: Vec<Projected>) -> CatchUp {
    let mut out = CatchUp::default();
    lines.sort_by(|a, b| (&a.player, a.version).cmp(&(&b.player, b.version)));
    let mut i = 0;
    while i < lines.len() {
        let player = lines[i].player.clone();
        let end = lines[i..]
            .iter()
            .position(|p| p.player != player)
            .map_or(lines.len(), |n| i + n);
        if let Err(e) = catch_up_one(&datadir.player_log(&player), &lines[i..end], &mut out) {
            out.problems.push(format!("player log of '{player}': {e}"));
        }
        i = end;
    }
    if out.lines_added > 0 {
        if let Err(e) = File::open(datadir.players_dir()).and_then(|d| d.sync_all()) {
            out.problems.push(format!("players directory: {e}"));
        }
    }
    out
}

use super::limits::PLAYER_LOG_TAIL_BYTES as PLAYER_LOG_TAIL;

/// Scans the end of a player log: its last version and a torn tail, without reading the whole
/// history (which grows forever, and recovery would read it all at every start). Reads the
/// whole file when it is short, or when its end alone holds no valid line or a corruption (so
/// that the message names the right line).
fn scan_player_log_end(path: &Path) -> Result<ScanOutcome, LogError> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            return Err(LogError::Read {
                path: path.display().to_string(),
                error: std::sync::Arc::new(e),
            })
        }
    };
    if len > PLAYER_LOG_TAIL {
        let from = len - PLAYER_LOG_TAIL;
        let bytes = read_from(path, from)?;
        // The window starts inside a line: the first whole line follows the first newline.
        if let Some(nl) = memchr::memchr(b'\n', &bytes) {
            let start = ScanStart {
                offset: from + nl as u64 + 1,
                line: 1, // unknown here, and unused: only the offsets and versions are
                expect_seq: None,
            };
            if let Ok(end) = scan(&bytes[nl + 1..], start, |_| Ok(())) {
                if end.last_seq.is_some() {
                    return Ok(end);
                }
            }
        }
    }
    read_and_scan(path, ScanStart::BEGINNING, |_| Ok(()))
}

fn catch_up_one(path: &Path, lines: &[Projected], out: &mut CatchUp) -> Result<(), String> {
    let scanned = scan_player_log_end(path).map_err(|e| e.to_string())?;
    let last = scanned.last_seq.unwrap_or(0);
    let missing: Vec<&Projected> = lines.iter().filter(|p| p.version > last).collect();
    if missing.is_empty() && scanned.torn.is_none() {
        return Ok(());
    }
    let existed = path.exists();
    let mut file = RealFile::open_append(path).map_err(|e| e.to_string())?;
    if let Some(t) = &scanned.torn {
        file.truncate(t.offset).map_err(|e| e.to_string())?;
        out.torn_cut += 1;
    }
    for (expect, p) in (last + 1..).zip(missing) {
        if p.version != expect {
            return Err(format!(
                "has events up to version {}; the replayed records go on at {}",
                expect - 1,
                p.version
            ));
        }
        file.append(p.line.as_bytes()).map_err(|e| e.to_string())?;
        out.lines_added += 1;
    }
    file.sync().map_err(|e| e.to_string())?;
    if !existed {
        sync_parent_dir(path).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::record::LineBuilder;

    fn projected(version: u64) -> Projected {
        let mut b = LineBuilder::new(version, "trade");
        b.field("note", &"x".repeat(100))
            .field("src", &format!("sol:{version}"));
        Projected {
            player: "Ann".into(),
            version,
            line: b.finish(),
        }
    }

    fn versions(path: &Path) -> Vec<u64> {
        let mut seen = Vec::new();
        read_and_scan(path, ScanStart::BEGINNING, |r| {
            seen.push(r.seq);
            Ok(())
        })
        .unwrap();
        seen
    }

    #[test]
    fn catch_up_cuts_a_torn_tail_and_adds_what_is_missing_to_short_and_long_logs() {
        // 3 lines fit the tail window; 2,000 lines (about 260 KB) do not.
        for written in [3u64, 2_000] {
            let dir = tempfile::tempdir().unwrap();
            let datadir = DataDir::at(dir.path());
            datadir.create().unwrap();
            let path = datadir.player_log("Ann");
            let mut bytes: String = (1..=written).map(|v| projected(v).line).collect();
            assert_eq!(written > 3, bytes.len() as u64 > PLAYER_LOG_TAIL);
            bytes.push_str(&projected(written + 1).line[..20]);
            std::fs::write(&path, bytes).unwrap();
            let end = scan_player_log_end(&path).unwrap();
            assert_eq!(end.last_seq, Some(written));
            assert_eq!(
                written > 3,
                end.records < written,
                "a long log is read from its end"
            );

            // Recovery replayed records about Ann from before the end of her log to 3 past it.
            let replayed = || (written.saturating_sub(2)..=written + 3).map(projected);
            let caught = catch_up(&datadir, replayed().collect());
            assert!(caught.problems.is_empty(), "{:?}", caught.problems);
            assert_eq!((caught.lines_added, caught.torn_cut), (3, 1), "{written}");
            assert_eq!(versions(&path), (1..=written + 3).collect::<Vec<_>>());

            // A log that is whole is left as it is.
            let before = std::fs::read(&path).unwrap();
            let again = catch_up(&datadir, replayed().collect());
            assert_eq!((again.lines_added, again.torn_cut), (0, 0));
            assert_eq!(std::fs::read(&path).unwrap(), before);
        }
    }

    #[test]
    fn catch_up_reports_a_gap_it_cannot_fill() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        datadir.create().unwrap();
        let path = datadir.player_log("Ann");
        let bytes: String = (1..=1_000).map(|v| projected(v).line).collect();
        std::fs::write(&path, bytes).unwrap();
        let caught = catch_up(&datadir, (1_005..=1_006).map(projected).collect());
        assert_eq!(caught.lines_added, 0);
        assert!(
            caught.problems[0].contains("up to version 1000")
                && caught.problems[0].contains("at 1005"),
            "{:?}",
            caught.problems
        );
    }
}
