//! Who wrote each message of a log, from its headers ([`crate::logs::NODE_HEADER`],
//! [`crate::logs::EPOCH_HEADER`]), and the proof that no zombie's message was accepted.
//!
//! [`NatsLogs::writers_of`] reads a subject's messages with their headers; [`check_fencing`]
//! checks the rule fencing promises: within a log, the writers' epochs never decrease, and
//! every message after a `lease epoch=E` record carries epoch E (until the next lease record).
//! A message from an older owner accepted after a takeover breaks both.
//!
//! This module only reads; it never writes a stream.

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures_util::StreamExt;
use store::lease::LeaseRecord;
use store::record::parse_line;

use crate::logs::{EPOCH_HEADER, NODE_HEADER};
use crate::{subject, NatsError, NatsLogs};

/// One message of a log, and who wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub stream_seq: u64,
    /// The writer's node ([`NODE_HEADER`]); `None` for a message without it (written before
    /// the headers existed).
    pub node: Option<String>,
    /// The writer's lease epoch ([`EPOCH_HEADER`]; 0: it held none).
    pub epoch: Option<u64>,
    /// The lease records the message holds (a new owner's mark is a message of its own).
    pub leases: Vec<LeaseRecord>,
    /// Records in the message.
    pub records: u64,
}

impl NatsLogs {
    /// Every message of log `name`, in order, with its writer.
    pub fn writers_of(&self, name: &str) -> Result<Vec<Written>, NatsError> {
        let stream = self.stream.clone();
        let subject = subject::of_log(name);
        self.nats.bridge.run(async move {
            let failed =
                |e: &dyn std::fmt::Display| NatsError::jetstream(format!("reading {subject}"), e);
            let last = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => message.sequence,
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                    return Ok(Vec::new())
                }
                Err(e) => return Err(failed(&e)),
            };
            let consumer = stream
                .create_consumer(OrderedConfig {
                    filter_subject: subject.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| failed(&e))?;
            let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
            let mut written = Vec::new();
            let mut seen = 0;
            while seen < last {
                let message = messages
                    .next()
                    .await
                    .ok_or_else(|| failed(&"ended early"))?
                    .map_err(|e| failed(&e))?;
                let stream_seq = message.info().map_err(|e| failed(&e))?.stream_sequence;
                let header = |name: &str| {
                    message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_string())
                };
                let mut leases = Vec::new();
                let mut records = 0;
                for line in message.payload.split_inclusive(|b| *b == b'\n') {
                    records += 1;
                    let lease = parse_line(line)
                        .ok()
                        .and_then(|rec| LeaseRecord::decode(&rec).ok().flatten());
                    leases.extend(lease);
                }
                written.push(Written {
                    stream_seq,
                    node: header(NODE_HEADER),
                    epoch: header(EPOCH_HEADER).and_then(|e| e.parse().ok()),
                    leases,
                    records,
                });
                seen = stream_seq;
            }
            Ok(written)
        })?
    }
}

/// Checks one log's messages (in order) against fencing's promise; the first breach, named.
pub fn check_fencing(log: &str, messages: &[Written]) -> Result<(), String> {
    let mut highest = 0u64;
    let mut owner: Option<&LeaseRecord> = None;
    for m in messages {
        let epoch = m.epoch.unwrap_or(0);
        if epoch < highest {
            return Err(format!(
                "{log}: message {} was written under epoch {epoch} after one of epoch {highest}: a zombie's append was accepted",
                m.stream_seq
            ));
        }
        highest = epoch;
        if let Some(lease) = m.leases.last() {
            if lease.epoch != epoch {
                return Err(format!(
                    "{log}: message {} holds lease epoch={} but was written under epoch {epoch}",
                    m.stream_seq, lease.epoch
                ));
            }
            owner = Some(lease);
        } else if let Some(lease) = owner.filter(|l| l.epoch != epoch) {
            return Err(format!(
                "{log}: message {} was written under epoch {epoch} after lease epoch={} node={}: a zombie's append was accepted",
                m.stream_seq, lease.epoch, lease.node
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, epoch: u64, lease: bool) -> Written {
        Written {
            stream_seq: seq,
            node: Some(format!("n{epoch}")),
            epoch: Some(epoch),
            leases: if lease {
                vec![LeaseRecord {
                    epoch,
                    node: format!("n{epoch}"),
                }]
            } else {
                Vec::new()
            },
            records: 1,
        }
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
            .contains("after lease epoch=5"));
    }
}
