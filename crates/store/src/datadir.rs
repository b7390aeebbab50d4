//! The layout of a data directory, in one place:
//!
//! ```text
//! mltrader-data/
//!   galaxy.toml            the galaxy this directory was created with (fixed for its life)
//!   systems/<slug>.log     one log per star system: the truth of what happens in it
//!   transitions.log        the handoff zone: one `jump` record per committed jump
//!   players/<name>.log     each player's history: a projection, rebuilt from the above
//!   snapshots/<slug>.<seq>.snap   shard snapshots (the newest two per system)
//!   archive/systems/<slug>.<first>-<last>.log   old log segments behind a snapshot
//!   LOCK                   held (an OS lock) by the one process writing here; its pid
//!   EPOCH                  the number of the last `serve` claim of this directory
//! ```
//!
//! Owns paths and the creation of folders; never reads or writes records.

use std::path::{Path, PathBuf};

use super::disk::sync_parent_dir;

/// The default data directory, relative to where `mltrader` runs.
pub const DEFAULT_DATA_DIR: &str = "mltrader-data";

/// A data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A data directory at `root`, without touching the disk.
    pub fn at(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// Creates the folders that are missing (each creation made durable).
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [
            self.root.clone(),
            self.root.join("systems"),
            self.root.join("players"),
            self.root.join("snapshots"),
            self.root.join("archive").join("systems"),
        ] {
            if !dir.exists() {
                std::fs::create_dir_all(&dir)?;
                sync_parent_dir(&dir)?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn galaxy_file(&self) -> PathBuf {
        self.root.join("galaxy.toml")
    }
    pub fn systems_dir(&self) -> PathBuf {
        self.root.join("systems")
    }
    pub fn system_log(&self, slug: &str) -> PathBuf {
        self.systems_dir().join(format!("{slug}.log"))
    }
    pub fn transitions_log(&self) -> PathBuf {
        self.root.join("transitions.log")
    }
    /// The jumps a spread galaxy (issue 19) handed between units, as `mltrader export` writes
    /// them from the pair subjects: present only in the export of a spread galaxy, which has
    /// no transition log (docs/NATS.md "Exporting a spread galaxy").
    pub fn jumps_log(&self) -> PathBuf {
        self.root.join("jumps.log")
    }
    pub fn players_dir(&self) -> PathBuf {
        self.root.join("players")
    }
    pub fn player_log(&self, name: &str) -> PathBuf {
        self.players_dir()
            .join(format!("{}.log", player_file_stem(name)))
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.root.join("archive").join("systems")
    }
    /// Where old segments of the transition log go.
    pub fn archive_root(&self) -> PathBuf {
        self.root.join("archive")
    }
    /// The lock file `mltrader serve` and `mltrader compact` hold while they write.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("LOCK")
    }
    /// The epoch of the last claim of this directory (`serve`), one number
    /// ([`crate::backend::FileOwnership`]).
    pub fn epoch_file(&self) -> PathBuf {
        self.root.join("EPOCH")
    }

    /// Takes the directory's write lock (an OS file lock, released when the process exits,
    /// even by SIGKILL), so that two writers can never share a data directory.
    pub fn lock_exclusive(&self) -> Result<std::fs::File, String> {
        let path = self.lock_file();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match f.try_lock() {
            Ok(()) => {
                write_pid(&f, &path)?;
                Ok(f)
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "{} is in use by another mltrader (serve, compact or check{}); stop it first",
                self.root.display(),
                holder_text(&path)
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(format!("cannot lock {}: {e}", path.display()))
            }
        }
    }

    /// Takes the directory's lock shared, to read the directory while no writer can start;
    /// `None` if there is no `LOCK` file (no writer ever ran here, so none can be running).
    /// Fails while a writer (`serve`, `compact`) holds it, saying which process.
    pub fn lock_shared(&self) -> Result<Option<std::fs::File>, String> {
        let path = self.lock_file();
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        };
        match f.try_lock_shared() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "{} is in use by a running mltrader (LOCK held{})",
                self.root.display(),
                holder_text(&path)
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(format!("cannot lock {}: {e}", path.display()))
            }
        }
    }
}

/// Writes the process id into the lock file, for the messages of those it keeps out.
fn write_pid(mut f: &std::fs::File, path: &Path) -> Result<(), String> {
    use std::io::Write;
    f.set_len(0)
        .and_then(|()| writeln!(f, "{}", std::process::id()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// ` by pid N`, if the lock file names its holder.
fn holder_text(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or_else(String::new, |pid| format!(" by pid {pid}"))
}

/// Archived segments of log `name` in `dir` (`<name>.<first>-<last>.log`), oldest first.
pub fn archived_segments(dir: &Path, name: &str) -> Vec<(u64, u64, PathBuf)> {
    let mut out: Vec<(u64, u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_string();
            let range = file
                .strip_prefix(&format!("{name}."))?
                .strip_suffix(".log")?;
            let (first, last) = range.split_once('-')?;
            Some((first.parse().ok()?, last.parse().ok()?, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The file an archived segment of log `name` holding records `first..=last` goes to.
pub fn archived_segment_path(dir: &Path, name: &str, first: u64, last: u64) -> PathBuf {
    dir.join(format!("{name}.{first}-{last}.log"))
}

/// A player's name as a file name: ASCII letters, digits, `-` and `_` stand as they are; every
/// other byte is `%XX`. Distinct names give distinct files ("p12" and "p 12" never collide).
///
/// On a case-insensitive filesystem (macOS, Windows) two stems that differ only in case are one
/// file. They cannot belong to two players: a stem is ASCII, its escapes are whole `%XX` units
/// holding only bytes that are never letters, so stems equal ignoring case come from names
/// equal up to ASCII case, and those share a uniqueness key (`sim::names::key` folds case),
/// which a new join refuses. The property test below checks it.
pub fn player_file_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`player_file_stem`], for files found on disk.
pub fn player_name_from_stem(stem: &str) -> Option<String> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn player_file_names_are_safe_and_reversible() {
        for name in ["p12", "p 12", "Barnard's Kid", "../etc", "Ünï 🚀", "a%20b"] {
            let stem = player_file_stem(name);
            assert!(stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_%".contains(&b)));
            assert_eq!(player_name_from_stem(&stem).as_deref(), Some(name));
        }
        assert_ne!(player_file_stem("p12"), player_file_stem("p 12"));
    }

    /// Letters of both cases (ASCII and not, with the awkward ones: `ß`, final sigma, the
    /// Kelvin sign, dotted and dotless i), digits, `%` and the hex digits of escapes.
    const NAME_CHARS: &str = "([aAcCfFzZ0239%_ .-]|é|É|ß|Σ|σ|ς|\u{212A}|İ|ı){1,6}";

    /// `text` with the case of its characters flipped where `flips` says so.
    fn flip_case(text: &str, flips: &[bool]) -> String {
        let flip = |(i, c): (usize, char)| match flips[i % flips.len()] {
            false => c.to_string(),
            true if c.is_lowercase() => c.to_uppercase().to_string(),
            true => c.to_lowercase().to_string(),
        };
        text.chars().enumerate().map(flip).collect()
    }

    /// Pairs of names that are likely to collide ignoring case: the second is the first with
    /// its case changed, or the first's stem (with `%XX` in it) with its case changed, taken
    /// as a name, or any other name.
    fn name_pairs() -> impl proptest::strategy::Strategy<Value = (String, String)> {
        use proptest::prelude::*;
        let flips = proptest::collection::vec(any::<bool>(), 1..8);
        (NAME_CHARS, NAME_CHARS, flips, 0..3u8).prop_map(|(a, other, flips, how)| {
            let source = match how {
                0 => a.clone(),
                1 => player_file_stem(&a),
                _ => other,
            };
            let b = flip_case(&source, &flips);
            (a, b)
        })
    }

    proptest::proptest! {
        /// `players/Ann.log` and `players/ann.log` are one file on a case-insensitive
        /// filesystem: two different players (different uniqueness keys) must never get file
        /// names that are equal ignoring case, ASCII or Unicode.
        #[test]
        fn different_players_never_get_file_names_equal_ignoring_case((a, b) in name_pairs()) {
            proptest::prop_assume!(sim::names::validate_name(&a).is_ok());
            proptest::prop_assume!(sim::names::validate_name(&b).is_ok());
            proptest::prop_assume!(sim::names::key(&a) != sim::names::key(&b));
            let (stem_a, stem_b) = (player_file_stem(&a), player_file_stem(&b));
            proptest::prop_assert!(stem_a.is_ascii() && stem_b.is_ascii());
            let why = format!("{a:?} and {b:?} are different players but {stem_a:?} and \
                {stem_b:?} are one file on a case-insensitive filesystem");
            proptest::prop_assert_ne!(stem_a.to_ascii_lowercase(), stem_b.to_ascii_lowercase(), "{}", why);
            proptest::prop_assert_ne!(stem_a.to_lowercase(), stem_b.to_lowercase(), "{}", why);
            proptest::prop_assert_ne!(stem_a.to_uppercase(), stem_b.to_uppercase(), "{}", why);
        }
    }
}
