//! Simulated log files: the bytes of one log as a real file would hold them (record lines with
//! sequence numbers, checksums and group-commit batch marks, as `store::log` writes them), with
//! the three places a byte can be: appended in the process (`pending`), written to the OS but
//! not synced (`written`), durable (`durable`). Faults are armed here: a disk error (EIO or
//! ENOSPC) on the next write or sync, and a crash that keeps the durable bytes and perhaps a
//! prefix of the written ones (a torn last write).
//!
//! Mirrors the committer of `store::log`: a batch is everything pending when the committer
//! takes it; it is written, then synced, and only then is the next batch taken; the first
//! record of a batch carries `b=<n>`, which is how the scanner tells a torn tail from
//! corruption. A failed write or sync poisons the log: it refuses every later append, and what
//! was durable stays durable.
//!
//! Never interprets the records (the codec does), never reads a clock, never draws a random
//! number itself (the caller passes what the seed chose).

use store::record::Line;
use store::scan::{scan, ScanStart, TornTail};
use store::seq::Seq;

/// A disk error to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// A failing device.
    Eio,
    /// A full disk.
    Enospc,
    /// Not a disk's: the stream refused an append whose expected last sequence is stale (error
    /// 10071): another node owns the log now. The log is poisoned as by a disk error.
    Fenced,
}

impl DiskError {
    pub fn text(self) -> &'static str {
        match self {
            DiskError::Eio => "input/output error (EIO)",
            DiskError::Enospc => "no space left on device (ENOSPC)",
            DiskError::Fenced => "refused by the stream: wrong last sequence (10071, fenced)",
        }
    }
}

/// One simulated log file.
#[derive(Clone, Debug)]
pub struct SimLog {
    /// The log's name in the data directory (`systems/sol.log`, `transitions.log`).
    pub name: String,
    /// Bytes that survive a crash.
    pub durable: Vec<u8>,
    /// The batch written and not yet synced (a crash keeps none of it, or a prefix: torn).
    written: Vec<u8>,
    /// Sequence number of the last record of `written`.
    written_last: Seq,
    /// Records appended since the committer last took a batch.
    pending: String,
    /// Sequence number of the next record appended.
    next_seq: u64,
    /// Last record durable.
    durable_seq: Seq,
    /// Batches started since this log was opened (the `b=` marks).
    batches: u64,
    /// A disk error armed for the next write or sync.
    armed: Option<DiskError>,
    /// Set when a write or sync failed: the log refuses everything after it.
    failed: Option<DiskError>,
    /// Some when the log lives in the simulated stream (`crate::stream`): a write is a
    /// publish of the batch, a sync the ack's arrival (or a retry); `durable` is what the
    /// writer knows acknowledged.
    pub writer: Option<crate::stream::Writer>,
}

/// What a reopened log found: its records (whole lines, in order) and the torn tail cut.
pub struct Reopened {
    pub log: SimLog,
    pub torn: Option<TornTail>,
}

impl SimLog {
    /// A new, empty log (a start creates each log it will write).
    pub fn create(name: &str) -> SimLog {
        SimLog {
            name: name.to_string(),
            durable: Vec::new(),
            written: Vec::new(),
            written_last: Seq(0),
            pending: String::new(),
            next_seq: 1,
            durable_seq: Seq(0),
            batches: 0,
            armed: None,
            failed: None,
            writer: None,
        }
    }

    /// Reopens a log after a restart from the bytes the crash left: scans them with the
    /// store's scanner (calling `visit` on each record), cuts a torn tail off, and goes on
    /// after the last valid record. A log the scanner calls corrupt is an error naming it.
    pub fn reopen(
        name: &str,
        bytes: Vec<u8>,
        visit: impl FnMut(&store::record::Record<'_>) -> Result<(), store::scan::VisitError>,
    ) -> Result<Reopened, String> {
        let outcome = scan(&bytes, ScanStart::BEGINNING, visit)
            .map_err(|c| format!("{name}: {c} ({:?})", c.refused))?;
        let mut log = SimLog::create(name);
        let mut durable = bytes;
        durable.truncate(outcome.end_offset as usize);
        log.durable = durable;
        let last = outcome.last_seq.unwrap_or(0);
        log.next_seq = last + 1;
        log.durable_seq = Seq(last);
        Ok(Reopened {
            log,
            torn: outcome.torn,
        })
    }

    /// Appends one record (not yet durable); refused once the log failed.
    pub fn append(
        &mut self,
        kind: &str,
        encode: impl FnOnce(&mut Line<'_>),
    ) -> Result<Seq, DiskError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let seq = self.next_seq;
        let batch_start = self.pending.is_empty();
        let mut line = Line::new(&mut self.pending, seq, kind);
        if batch_start {
            line.batch_mark(self.batches);
        }
        encode(&mut line);
        line.finish();
        if batch_start {
            self.batches += 1;
        }
        self.next_seq += 1;
        Ok(Seq(seq))
    }

    /// The committer can write the next batch (nothing written waits for its sync).
    pub fn can_write(&self) -> bool {
        self.failed.is_none() && self.written.is_empty() && !self.pending.is_empty()
    }

    /// The committer can sync the batch it wrote.
    pub fn can_sync(&self) -> bool {
        self.failed.is_none() && !self.written.is_empty()
    }

    /// Writes every pending record as one batch (an armed fault fails it and poisons the log).
    pub fn write(&mut self) -> Result<(), DiskError> {
        assert!(self.can_write(), "{}: nothing to write", self.name);
        if let Some(e) = self.armed.take() {
            self.failed = Some(e);
            return Err(e);
        }
        self.written = std::mem::take(&mut self.pending).into_bytes();
        self.written_last = Seq(self.next_seq - 1);
        Ok(())
    }

    /// Syncs the batch written: its records are durable (an armed fault fails it).
    pub fn sync(&mut self) -> Result<(), DiskError> {
        assert!(self.can_sync(), "{}: nothing to sync", self.name);
        if let Some(e) = self.armed.take() {
            self.failed = Some(e);
            return Err(e);
        }
        self.durable.append(&mut self.written);
        assert!(self.written_last > self.durable_seq, "durable only grows");
        self.durable_seq = self.written_last;
        Ok(())
    }

    /// The batch written (a stream's message in flight) is acknowledged: durable.
    pub fn acked(&mut self) {
        assert!(
            !self.written.is_empty(),
            "{}: an ack with nothing in flight",
            self.name
        );
        self.durable.append(&mut self.written);
        assert!(self.written_last > self.durable_seq, "durable only grows");
        self.durable_seq = self.written_last;
    }

    /// The log fails (a refused append): it refuses everything after.
    pub fn fail(&mut self, e: DiskError) {
        self.failed = Some(e);
    }

    /// The batch written and not yet durable (a stream's message in flight).
    pub fn written(&self) -> &[u8] {
        &self.written
    }

    /// Arms a disk error for the next write or sync.
    pub fn arm(&mut self, e: DiskError) {
        self.armed = Some(e);
    }

    pub fn failed(&self) -> Option<DiskError> {
        self.failed
    }

    pub fn durable_seq(&self) -> Seq {
        self.durable_seq
    }

    /// Sequence number of the last record appended.
    pub fn last_seq(&self) -> Seq {
        Seq(self.next_seq - 1)
    }

    /// Everything appended is durable.
    pub fn is_flushed(&self) -> bool {
        self.pending.is_empty() && self.written.is_empty()
    }

    /// What the disk holds after a crash now: the durable bytes and, if `torn_bytes` is some,
    /// that many bytes of the written batch (a torn last write; capped at the batch).
    pub fn crash(&self, torn_bytes: Option<usize>) -> (Vec<u8>, bool) {
        let mut bytes = self.durable.clone();
        let torn = match torn_bytes {
            Some(n) if !self.written.is_empty() => {
                bytes.extend_from_slice(&self.written[..n.min(self.written.len())]);
                true
            }
            _ => false,
        };
        (bytes, torn)
    }

    /// Bytes written but not synced (what a torn write keeps a prefix of).
    pub fn written_len(&self) -> usize {
        self.written.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(log: &mut SimLog, n: u64) -> Seq {
        log.append("refuel", |l| {
            l.num("t", n).field("player", "ann");
        })
        .expect("appends")
    }

    /// A batch is durable only once written and synced; a crash keeps the durable bytes, and a
    /// torn write's prefix is cut by the scanner at the reopen, never read as a record.
    #[test]
    fn a_torn_batch_is_cut_and_the_durable_records_stay() {
        let mut log = SimLog::create("systems/sol.log");
        rec(&mut log, 1);
        rec(&mut log, 2);
        log.write().unwrap();
        log.sync().unwrap();
        assert_eq!(log.durable_seq(), Seq(2));
        rec(&mut log, 3);
        rec(&mut log, 4);
        log.write().unwrap();
        let (bytes, torn) = log.crash(Some(log.written_len() - 3));
        assert!(torn);
        let mut seen = Vec::new();
        let back = SimLog::reopen("systems/sol.log", bytes, |r| {
            seen.push(r.seq);
            Ok(())
        })
        .expect("a torn tail is not corruption");
        assert_eq!(
            seen,
            vec![1, 2, 3],
            "the whole line of record 3 survives; 4 is torn"
        );
        assert!(back.torn.is_some());
        assert_eq!(back.log.last_seq(), Seq(3));
    }

    /// A disk error poisons the log: the write fails, and every later append is refused.
    #[test]
    fn a_disk_error_poisons_the_log() {
        let mut log = SimLog::create("transitions.log");
        rec(&mut log, 1);
        log.arm(DiskError::Enospc);
        assert_eq!(log.write(), Err(DiskError::Enospc));
        assert!(log.append("refuel", |_| {}).is_err());
        assert_eq!(log.durable_seq(), Seq(0));
    }
}
