//! The ack log (`--ack-log FILE`): one JSON line per action the server acknowledged, in the
//! format `mltrader check --acks FILE` reads ([`mesh::ack_log::Ack`]).
//!
//! A line is written only after the server's answer arrived, and flushed at once (one write of
//! the whole line), so a swarm killed at any moment leaves at most a torn last line. Never
//! fsyncs: the file proves what the server said, the server's logs prove what it kept.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;

pub use mesh::ack_log::{Ack, Action};

/// The ack log of one run.
pub struct AckLog {
    path: PathBuf,
    /// A std mutex: a write is one short syscall, never held across an await.
    file: Mutex<File>,
}

impl AckLog {
    /// Creates (or empties) the file.
    pub fn create(path: &Path) -> anyhow::Result<AckLog> {
        let file = File::create(path)
            .with_context(|| format!("cannot create the ack log {}", path.display()))?;
        Ok(AckLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one acknowledged action.
    pub fn record(&self, ack: &Ack) -> std::io::Result<()> {
        let line = ack.to_line();
        let mut file = self.file.lock().expect("ack log lock");
        file.write_all(line.as_bytes())?;
        file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ack_is_one_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks");
        let log = AckLog::create(&path).unwrap();
        log.record(&Ack::new("bot-1-0", Action::Join, 1)).unwrap();
        log.record(&Ack {
            xfer: Some("sol:1".into()),
            ..Ack::new("bot-1-0", Action::Travel, 2)
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"player\":\"bot-1-0\",\"action\":\"join\",\"version\":1}\n\
             {\"player\":\"bot-1-0\",\"action\":\"travel\",\"version\":2,\"xfer\":\"sol:1\"}\n"
        );
    }
}
