//! The `lease` record: the mark a new owner of a log writes as its first record, right after it
//! read the log to its end (docs/FORMAT.md, docs/NATS.md).
//!
//! ```text
//! 57 lease b=12 epoch=41 node=beta ~3c0a9f1e
//! ```
//!
//! It says "from this record on, the writer is `node`, holding the lease of epoch `epoch`".
//! The JetStream backend appends it with the subject's expected last sequence, so an old owner
//! (a zombie) that wakes up cannot write one more record after it; and an export shows every
//! takeover with `grep lease`. It is not a game event: replay, recovery, the audit and the
//! projector skip it; the audit checks that the epochs of one log never decrease.
//!
//! This module owns the record's kind and fields only; it never writes a log and never decides
//! who owns what (that is [`crate::backend::Ownership`]'s).

use crate::record::{Line, Record, RecordError};

/// The record's kind.
pub const LEASE_KIND: &str = "lease";

/// A `lease` record's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The lease's epoch (the claim's, [`crate::backend::Claim::epoch`]); from 1.
    pub epoch: u64,
    /// The node holding it (a bare name: letters, digits, `-`, `_`, `.`).
    pub node: String,
}

impl LeaseRecord {
    /// Writes the fields onto a line of kind [`LEASE_KIND`].
    pub fn encode(&self, line: &mut Line<'_>) {
        assert!(self.epoch > 0, "a lease's epoch is from 1");
        assert!(!self.node.is_empty(), "a lease names its node");
        line.num("epoch", self.epoch).field("node", &self.node);
    }

    /// The lease record `rec` is, or `None` if it is another kind.
    pub fn decode(rec: &Record<'_>) -> Result<Option<LeaseRecord>, RecordError> {
        if rec.kind != LEASE_KIND {
            return Ok(None);
        }
        let epoch: u64 = rec.num("epoch")?;
        if epoch == 0 {
            return Err(RecordError::BadValue {
                key: "epoch",
                value: "0".into(),
                expected: "an epoch from 1",
            });
        }
        Ok(Some(LeaseRecord {
            epoch,
            node: rec.str("node")?.to_string(),
        }))
    }

    /// Whether `rec` is a lease record (without checking its fields).
    pub fn is_lease(rec: &Record<'_>) -> bool {
        rec.kind == LEASE_KIND
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{parse_content, parse_line};

    #[test]
    fn a_lease_record_reads_back_and_other_kinds_are_not_leases() {
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, 57, LEASE_KIND);
        line.batch_mark(12);
        let lease = LeaseRecord {
            epoch: 41,
            node: "beta".into(),
        };
        lease.encode(&mut line);
        line.finish();
        assert!(
            buf.starts_with("57 lease b=12 epoch=41 node=beta ~"),
            "{buf}"
        );
        let rec = parse_line(buf.trim_end().as_bytes()).unwrap();
        assert!(LeaseRecord::is_lease(&rec));
        assert_eq!(LeaseRecord::decode(&rec).unwrap(), Some(lease));
        let other = parse_content("3 depart.done t=1 xfer=sol:1").unwrap();
        assert!(!LeaseRecord::is_lease(&other));
        assert_eq!(LeaseRecord::decode(&other).unwrap(), None);
    }

    #[test]
    fn a_lease_record_without_an_epoch_is_refused() {
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, 1, LEASE_KIND);
        line.field("node", "a");
        line.finish();
        let rec = parse_line(buf.trim_end().as_bytes()).unwrap();
        assert!(LeaseRecord::decode(&rec).is_err());
    }
}
