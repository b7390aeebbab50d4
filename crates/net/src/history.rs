//! A player's past events, read from their history log (`players/<name>.log`, written by the
//! mesh's projector): the newest entries, each a checked record.
//!
//! Reads only; never writes or repairs a file (a torn or bad line is skipped and counted, and
//! `mltrader check` is where such a file gets looked at). Reads at most
//! [`MAX_HISTORY_READ_BYTES`] from the end of a file, so a long history costs a bounded read.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use store::datadir::DataDir;
use store::record::parse_line;

/// Bytes read from the end of a history file at most.
pub const MAX_HISTORY_READ_BYTES: u64 = 4 * 1024 * 1024;

/// One event of a player's history: the wire's [`api::HistoryEntry`].
pub use api::HistoryEntry as Entry;

/// The newest entries of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    pub entries: Vec<Entry>,
    /// Older entries exist that are not in `entries`.
    pub truncated: bool,
    /// Lines that did not verify (a torn last line while being written, or damage).
    pub skipped_lines: usize,
}

/// Reads the newest `limit` entries of `player`'s history (none if the file does not exist
/// yet: the projector writes a line after its record is durable).
pub fn read(datadir: &DataDir, player: &str, limit: usize) -> std::io::Result<History> {
    let path = datadir.player_log(player);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(History {
                entries: Vec::new(),
                truncated: false,
                skipped_lines: 0,
            })
        }
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let start = size.saturating_sub(MAX_HISTORY_READ_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((size - start) as usize);
    file.take(MAX_HISTORY_READ_BYTES).read_to_end(&mut bytes)?;
    let mut lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    let mut truncated = false;
    if start > 0 && !lines.is_empty() {
        // The first line read is probably a piece of a longer one.
        lines.remove(0);
        truncated = true;
    }
    let mut entries = Vec::new();
    let mut skipped_lines = 0;
    for line in lines {
        // A line without its newline is still being written.
        let Some(record) = line.strip_suffix(b"\n").and_then(|l| parse_line(l).ok()) else {
            skipped_lines += 1;
            continue;
        };
        let mut fields = BTreeMap::new();
        let mut src = None;
        for (k, v) in &record.fields {
            if *k == "src" {
                src = Some(v.to_string());
            } else {
                fields.insert(k.to_string(), v.to_string());
            }
        }
        entries.push(Entry {
            version: record.seq,
            kind: record.kind.to_string(),
            fields,
            src,
        });
    }
    if entries.len() > limit {
        entries.drain(..entries.len() - limit);
        truncated = true;
    }
    Ok(History {
        entries,
        truncated,
        skipped_lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::record::LineBuilder;

    #[test]
    fn reads_the_newest_entries_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        datadir.create().unwrap();
        let mut text = String::new();
        for v in 1..=5u64 {
            let mut b = LineBuilder::new(v, "refuel");
            b.field_num("units", v).field("src", &format!("sol:{v}"));
            text.push_str(&b.finish());
        }
        text.push_str("6 arrive t=3 ~0000"); // torn: being written
        std::fs::write(datadir.player_log("Ann K"), text).unwrap();
        let h = read(&datadir, "Ann K", 3).unwrap();
        assert_eq!(h.entries.len(), 3);
        assert!(h.truncated);
        assert_eq!(h.skipped_lines, 1);
        assert_eq!(h.entries[0].version, 3);
        assert_eq!(h.entries[2].src.as_deref(), Some("sol:5"));
        assert_eq!(h.entries[2].fields["units"], "5");
        let none = read(&datadir, "nobody", 10).unwrap();
        assert!(none.entries.is_empty());
    }
}
