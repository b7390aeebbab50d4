//! Who wrote each message of a log, from its headers ([`crate::logs::NODE_HEADER`],
//! [`crate::logs::EPOCH_HEADER`]), and the proof that no zombie's message was accepted.
//!
//! [`NatsLogs::writers_of`] reads a subject's messages with their headers (as `mltrader export`
//! reads them); [`check_fencing`] runs export's [`EpochCheck`] over a whole log, for tests. The
//! rule fencing promises: within a log, the writers' epochs never decrease, and
//! every message after a `lease epoch=E` record carries epoch E (until the next lease record).
//! A message from an older owner accepted after a takeover breaks both.
//!
//! This module only reads; it never writes a stream.

use store::lease::LeaseRecord;
use store::record::parse_line;

use crate::export::{EpochCheck, StoredMessage};
use crate::{NatsError, NatsLogs};

/// One message of a log, and who wrote it.
#[derive(Clone, Debug)]
pub struct Written {
    pub stream_seq: u64,
    /// The writer's node ([`crate::logs::NODE_HEADER`]); `None` for a message without it
    /// (written before the headers existed).
    pub node: Option<String>,
    /// The writer's lease epoch ([`crate::logs::EPOCH_HEADER`]; 0: it held none).
    pub epoch: Option<u64>,
    /// The lease records the message holds (a new owner's mark is a message of its own).
    pub leases: Vec<LeaseRecord>,
    /// Records in the message.
    pub records: u64,
    /// The message as stored, for [`check_fencing`].
    pub stored: StoredMessage,
}

impl Written {
    fn of(stored: StoredMessage) -> Written {
        let mut leases = Vec::new();
        let mut records = 0;
        for line in stored.payload.split_inclusive(|b| *b == b'\n') {
            records += 1;
            let lease = parse_line(line)
                .ok()
                .and_then(|rec| LeaseRecord::decode(&rec).ok().flatten());
            leases.extend(lease);
        }
        Written {
            stream_seq: stored.stream_seq,
            node: stored.node.clone(),
            epoch: stored.epoch.as_deref().and_then(|e| e.trim().parse().ok()),
            leases,
            records,
            stored,
        }
    }
}

impl NatsLogs {
    /// Every message of log `name`, in order, with its writer (read as `mltrader export`
    /// reads it: [`NatsLogs::messages_after`]).
    pub fn writers_of(&self, name: &str) -> Result<Vec<Written>, NatsError> {
        let messages = self.messages_after(name, 0, u64::MAX, usize::MAX)?;
        Ok(messages.into_iter().map(Written::of).collect())
    }
}

/// Checks one log's messages (in order) against fencing's promise, with the check `mltrader
/// export` makes ([`EpochCheck`]); the first breach, named. A message without an epoch header
/// is a breach here (every message of a galaxy served since the headers exist has one).
pub fn check_fencing(log: &str, messages: &[Written]) -> Result<(), String> {
    let mut check = EpochCheck::default();
    for m in messages {
        check.message(log, &m.stored);
    }
    if let Some(problem) = check.problems.first() {
        return Err(problem.clone());
    }
    if check.no_epoch_header > 0 {
        return Err(format!(
            "{log}: {} messages without an epoch header",
            check.no_epoch_header
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::record::Line;

    fn msg(seq: u64, epoch: u64, lease: bool) -> Written {
        let mut buf = String::new();
        if lease {
            let mut line = Line::new(&mut buf, seq, store::lease::LEASE_KIND);
            let record = LeaseRecord {
                epoch,
                node: format!("n{epoch}"),
            };
            record.encode(&mut line);
            line.finish();
        } else {
            let mut line = Line::new(&mut buf, seq, "test");
            line.num("n", seq);
            line.finish();
        }
        buf.push('\n');
        Written::of(StoredMessage {
            stream_seq: seq,
            node: Some(format!("n{epoch}")),
            epoch: Some(epoch.to_string()),
            payload: buf.into_bytes(),
        })
    }

    #[test]
    fn fencing_holds_until_a_zombie_message_follows_a_lease_record() {
        let good = [
            msg(1, 0, false),
            msg(2, 5, true),
            msg(3, 5, false),
            msg(7, 9, true),
        ];
        assert_eq!(check_fencing("log", &good), Ok(()));
        let zombie = [msg(2, 5, true), msg(3, 9, true), msg(4, 5, false)];
        assert!(check_fencing("log", &zombie)
            .unwrap_err()
            .contains("message 4"));
        let unmarked = [msg(2, 5, true), msg(3, 6, false)];
        assert!(check_fencing("log", &unmarked)
            .unwrap_err()
            .contains("the last lease record says epoch 5"));
    }
}
