//! What `mltrader export` reads from the logs' stream: a log's messages as stored, with their
//! writer's headers ([`StoredMessage`], fetched by [`NatsLogs::messages_after`]), and the proof
//! that no zombie's message was accepted ([`EpochCheck`]).
//!
//! Every message a node publishes carries `Mlt-Node` and `Mlt-Epoch` (the writer's lease
//! epoch), and a new owner's first record in every log is `lease epoch=E`. So within one
//! subject, in stream order: epochs never decrease, and every message from a `lease epoch=E`
//! record on carries epoch E until the next lease record. A message that breaks either was
//! written by a node that had lost the lease and was accepted anyway: a zombie message.
//! Messages written before the headers existed are counted, not judged.
//!
//! The same rule holds on each pair subject of a spread galaxy (issue 19, [`JumpsReader`]): only
//! the owner of the origin unit writes there, its new owner's first message is its fence mark
//! (a `lease` record), and every message carries the writer's epoch.
//!
//! [`crate::writers`] checks a whole log at once, for tests; this check goes message by message
//! and is kept between runs of a resumable export. This module never writes to a stream or a
//! file, never creates a stream, and never interprets a record other than a `lease` record.

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::ErrorCode;
use serde::{Deserialize, Serialize};
use store::lease::LeaseRecord;
use store::record::parse_line;

use crate::logs::{visit_messages, NatsLogs, Next, EPOCH_HEADER, NODE_HEADER};
use crate::pairs::JUMPS_STREAM;
use crate::region;
use crate::{Nats, NatsError};

/// How many problems an [`EpochCheck`] describes (it counts them all).
pub const PROBLEMS_DESCRIBED_MAX: usize = 20;

/// One message of a log as the stream holds it.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub stream_seq: u64,
    /// `Mlt-Node`, if the message has it.
    pub node: Option<String>,
    /// `Mlt-Epoch` as written, if the message has it.
    pub epoch: Option<String>,
    /// The exact record lines.
    pub payload: Vec<u8>,
}

impl StoredMessage {
    /// Message `stream_seq` as fetched, with its writer's headers.
    fn of(stream_seq: u64, message: &async_nats::jetstream::Message) -> StoredMessage {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        StoredMessage {
            stream_seq,
            node: header(NODE_HEADER),
            epoch: header(EPOCH_HEADER),
            payload: message.payload.to_vec(),
        }
    }
}

impl NatsLogs {
    /// The stream's last sequence now, from its leader: an export that reads every log up to
    /// it copies a prefix of the stream, one state the galaxy passed through (the messages of
    /// all logs in the order they were acknowledged), however long the reading takes.
    pub fn last_sequence(&self) -> Result<u64, NatsError> {
        let mut stream = self.stream().clone();
        self.nats().bridge.run(async move {
            stream
                .info()
                .await
                .map(|info| info.state.last_sequence)
                .map_err(|e| NatsError::jetstream("the logs' stream's last sequence", e))
        })?
    }

    /// The messages of log `name` after stream sequence `after` and up to `upto`, in order,
    /// stopping after the message that reaches `max_bytes` of payload (at least one message
    /// when there is one). Empty when nothing is newer.
    pub fn messages_after(
        &self,
        name: &str,
        after: u64,
        upto: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredMessage>, NatsError> {
        let stream = self.stream().clone();
        let subject = self.subject_of(name);
        self.nats().bridge.run(async move {
            let last = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => message.sequence.min(upto),
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => 0,
                Err(e) => {
                    return Err(NatsError::jetstream(
                        format!("last message of {subject}"),
                        e,
                    ))
                }
            };
            if last <= after {
                return Ok(Vec::new());
            }
            let mut out = Vec::new();
            let mut bytes = 0;
            visit_messages(&stream, &subject, after + 1, last, |stream_seq, message| {
                bytes += message.payload.len();
                out.push(StoredMessage::of(stream_seq, message));
                if bytes < max_bytes {
                    Next::More
                } else {
                    Next::Stop
                }
            })
            .await?;
            Ok(out)
        })?
    }
}

/// One message of a pair subject as the jumps' stream holds it.
#[derive(Clone, Debug)]
pub struct PairMessage {
    /// Its subject, `mlt.jump.<from>.<to>` (`crate::subject::of_pair`).
    pub subject: String,
    pub message: StoredMessage,
}

/// The jumps' stream ([`JUMPS_STREAM`], every pair subject of a spread galaxy) as an export
/// reads it: opened only if it exists (a reader never creates it), read in stream order.
pub struct JumpsReader {
    nats: Nats,
    stream: Stream,
    /// The prefix of its pair subjects: `mlt.jump.`, or a region's `mlt.<region>.jump.`.
    prefix: String,
}

impl JumpsReader {
    /// The jumps' stream, or None when the cluster has none (the galaxy was never spread).
    pub fn open(nats: &Nats) -> Result<Option<JumpsReader>, NatsError> {
        Self::open_named(nats, JUMPS_STREAM, nats.region())
    }

    /// The copy, in this node's region, of region `region`'s jumps' stream
    /// (`MLT_JUMPS_OF_<region>`, crate::copies), or None when there is none.
    pub fn open_copy(nats: &Nats, region: &str) -> Result<Option<JumpsReader>, NatsError> {
        Self::open_named(nats, &region::copy_name(JUMPS_STREAM, region), Some(region))
    }

    fn open_named(
        nats: &Nats,
        name: &str,
        region: Option<&str>,
    ) -> Result<Option<JumpsReader>, NatsError> {
        let js = nats.jetstream.clone();
        let name = name.to_string();
        let stream = nats.bridge.run(async move {
            match js.get_stream(&name).await {
                Ok(stream) => Ok(Some(stream)),
                Err(e) => match e.kind() {
                    GetStreamErrorKind::JetStream(error)
                        if error.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Ok(None)
                    }
                    _ => Err(NatsError::jetstream(
                        format!("cannot look for stream {name}"),
                        e,
                    )),
                },
            }
        })??;
        Ok(stream.map(|stream| JumpsReader {
            nats: nats.clone(),
            stream,
            prefix: region::jump_prefix(region),
        }))
    }

    /// The prefix of this stream's pair subjects (`mlt.jump.`, `mlt.us.jump.`): the
    /// exporter parses a subject with `subject::to_pair_with(prefix, ..)`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream, for the other read paths of this crate (crate::rehome).
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The stream's last sequence now, from its leader.
    pub fn last_sequence(&self) -> Result<u64, NatsError> {
        let mut stream = self.stream.clone();
        self.nats.bridge.run(async move {
            stream
                .info()
                .await
                .map(|info| info.state.last_sequence)
                .map_err(|e| NatsError::jetstream("the jumps' stream's last sequence", e))
        })?
    }

    /// The messages of every pair subject after stream sequence `after` and up to `upto`, in
    /// stream order, stopping after the message that reaches `max_bytes` of payload (at least
    /// one message when there is one). Empty when nothing is newer.
    pub fn messages_after(
        &self,
        after: u64,
        upto: u64,
        max_bytes: usize,
    ) -> Result<Vec<PairMessage>, NatsError> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let stream = self.stream.clone();
        let filter = format!("{}>", self.prefix);
        self.nats.bridge.run(async move {
            let mut out = Vec::new();
            let mut bytes = 0;
            visit_messages(&stream, &filter, after + 1, upto, |stream_seq, message| {
                bytes += message.payload.len();
                out.push(PairMessage {
                    subject: message.subject.to_string(),
                    message: StoredMessage::of(stream_seq, message),
                });
                if bytes < max_bytes {
                    Next::More
                } else {
                    Next::Stop
                }
            })
            .await?;
            Ok(out)
        })?
    }
}

/// The epochs of one log's messages, checked in stream order (see the module's comment).
/// Kept between runs of a resumable export, so the check goes on where it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochCheck {
    /// The highest `Mlt-Epoch` seen.
    pub last_epoch: Option<u64>,
    /// The epoch of the last `lease` record.
    pub lease_epoch: Option<u64>,
    /// `lease` records seen (one per takeover, in every log).
    pub lease_records: u64,
    /// Messages without `Mlt-Epoch` (written before the headers existed): counted, not judged.
    pub no_epoch_header: u64,
    /// Messages that break the rule: written by a node without the lease, and accepted.
    pub zombie_messages: u64,
    /// The first [`PROBLEMS_DESCRIBED_MAX`] problems, each naming the log and message.
    pub problems: Vec<String>,
}

impl EpochCheck {
    /// Checks the next message of log `log`.
    pub fn message(&mut self, log: &str, m: &StoredMessage) {
        let mut leases = Vec::new();
        for line in m.payload.split_inclusive(|b| *b == b'\n') {
            let Ok(record) = parse_line(line) else {
                continue; // The store's scan reports bad lines; this check is about epochs.
            };
            match LeaseRecord::decode(&record) {
                Ok(Some(lease)) => leases.push((record.seq, lease.epoch)),
                Ok(None) => {}
                Err(e) => self.problem(format!(
                    "{log}: message {} record {}: an unreadable lease record ({e})",
                    m.stream_seq, record.seq
                )),
            }
        }
        // The epoch this message must carry: its own lease record's, else the last one's.
        let expected = leases.first().map(|(_, e)| *e).or(self.lease_epoch);
        for &(seq, epoch) in &leases {
            if self.lease_epoch.is_some_and(|before| epoch < before) {
                self.zombie(format!(
                    "{log}: message {} record {seq}: lease epoch={epoch} after a lease of epoch {}",
                    m.stream_seq,
                    self.lease_epoch.unwrap_or_default()
                ));
            }
            self.lease_epoch = Some(epoch);
            self.lease_records += 1;
        }
        let Some(text) = &m.epoch else {
            self.no_epoch_header += 1;
            return;
        };
        let Ok(epoch) = text.trim().parse::<u64>() else {
            self.zombie(format!(
                "{log}: message {}: {EPOCH_HEADER} {text:?} is not an epoch",
                m.stream_seq
            ));
            return;
        };
        let node = m.node.as_deref().unwrap_or("?");
        if let Some(last) = self.last_epoch.filter(|last| epoch < *last) {
            self.zombie(format!(
                "{log}: message {} from node {node}: epoch {epoch} after a message of epoch {last} (epochs never decrease)",
                m.stream_seq
            ));
        } else if let Some(lease) = expected.filter(|lease| epoch != *lease) {
            self.zombie(format!(
                "{log}: message {} from node {node}: epoch {epoch}, but the last lease record says epoch {lease}",
                m.stream_seq
            ));
        }
        self.last_epoch = Some(self.last_epoch.map_or(epoch, |last| last.max(epoch)));
    }

    fn zombie(&mut self, what: String) {
        self.zombie_messages += 1;
        self.problem(what);
    }

    fn problem(&mut self, what: String) {
        if self.problems.len() < PROBLEMS_DESCRIBED_MAX {
            self.problems.push(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, epoch: Option<u64>, body: &str) -> StoredMessage {
        StoredMessage {
            stream_seq: seq,
            node: Some("a".into()),
            epoch: epoch.map(|e| e.to_string()),
            payload: body.as_bytes().to_vec(),
        }
    }

    fn line(seq: u64, kind: &str, fields: &[(&str, &str)]) -> String {
        let mut buf = String::new();
        let mut l = store::record::Line::new(&mut buf, seq, kind);
        for (k, v) in fields {
            l.field(k, v);
        }
        l.finish();
        buf
    }

    #[test]
    fn messages_after_a_lease_record_carry_its_epoch() {
        let mut c = EpochCheck::default();
        c.message("sol", &msg(1, None, &line(1, "join", &[("player", "x")])));
        c.message(
            "sol",
            &msg(
                2,
                Some(5),
                &line(2, "lease", &[("epoch", "5"), ("node", "a")]),
            ),
        );
        c.message(
            "sol",
            &msg(4, Some(5), &line(3, "join", &[("player", "y")])),
        );
        assert_eq!(
            (c.zombie_messages, c.no_epoch_header, c.lease_records),
            (0, 1, 1)
        );
        // A zombie of epoch 3 whose append was accepted after the lease of epoch 5.
        c.message(
            "sol",
            &msg(5, Some(3), &line(4, "join", &[("player", "z")])),
        );
        assert_eq!(c.zombie_messages, 1, "{:?}", c.problems);
        assert!(
            c.problems[0].contains("sol: message 5 from node a: epoch 3"),
            "{:?}",
            c.problems
        );
        // A takeover: the new owner's lease record and messages.
        c.message(
            "sol",
            &msg(
                6,
                Some(9),
                &line(5, "lease", &[("epoch", "9"), ("node", "a")]),
            ),
        );
        c.message(
            "sol",
            &msg(7, Some(9), &line(6, "join", &[("player", "w")])),
        );
        assert_eq!((c.zombie_messages, c.lease_records), (1, 2));
        // The old owner's epoch after the takeover, without a decrease below the last lease
        // being the only rule broken: epoch 5 < 9.
        c.message(
            "sol",
            &msg(8, Some(5), &line(7, "join", &[("player", "v")])),
        );
        assert_eq!(c.zombie_messages, 2);
    }

    #[test]
    fn a_message_ahead_of_the_last_lease_record_is_a_zombie_too() {
        let mut c = EpochCheck::default();
        c.message(
            "t",
            &msg(
                1,
                Some(5),
                &line(1, "lease", &[("epoch", "5"), ("node", "a")]),
            ),
        );
        // Epoch 6 without a lease record of 6 in this log: not the lease holder's message.
        c.message("t", &msg(2, Some(6), &line(2, "join", &[("player", "x")])));
        assert_eq!(c.zombie_messages, 1, "{:?}", c.problems);
        c.message(
            "t",
            &msg(
                3,
                Some(5),
                &line(3, "lease", &[("epoch", "4"), ("node", "a")]),
            ),
        );
        assert!(
            c.zombie_messages >= 2,
            "a lease record's epoch never decreases"
        );
    }
}
