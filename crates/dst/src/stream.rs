//! A simulated JetStream: one stream holding every log (a subject per log), and the KV lease
//! of the galaxy, with the engine's rules as docs/NATS.md and /work/shared/DISTRIBUTED.md
//! state them (checked on nats-server 2.15.1):
//!
//! - an append is a publish of one message (a group commit's records) with a message id and,
//!   normally, the expected last sequence of its subject; the stream checks the id first (a
//!   retry of a stored message is answered `duplicate` with its original sequence), then the
//!   expected sequence (a stale one is refused: error 10071, "wrong last sequence");
//! - the stream may be unavailable for a while (a leader election): publishes, reads, claims
//!   and renewals get no answer;
//! - the lease is a key whose revision is the epoch; the store never expires it (its watchers
//!   judge it: `mesh::protocol::lease::Watch`); a claim is a compare-and-set create, or an
//!   update at the revision a watcher saw silent for a lease; a renewal a compare-and-set update;
//! - every message carries its writer's node and epoch (the `Mlt-Node` and `Mlt-Epoch`
//!   headers), so the invariants can prove no zombie message was accepted.
//!
//! The stream is replicated (R3): what it acknowledged is durable, whatever happens to a node.
//! A crash here is a node's, never the stream's. A message whose ack was lost is stored all the
//! same; the writer learns it by retrying with the same id.
//!
//! Never interprets records, never reads a clock, never draws a
//! random number itself (the caller passes what the seed chose).

use std::collections::BTreeMap;

use store::record::Line;

use crate::disk::{DiskError, SimLog};

/// The kind of the record a new owner appends to every log right after its claim and its read
/// (`SEQ lease b=N epoch=E node=NAME ~CRC`): the real codec's (`store::lease`), which replay,
/// recovery and the auditor skip.
pub use store::lease::LEASE_KIND;

/// A message's id: its writer and the writer's batch number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MsgId {
    pub writer: u64,
    pub batch: u64,
}

/// One message of the stream.
#[derive(Clone, Debug)]
pub struct Message {
    /// The stream sequence (one counter for the whole stream, as JetStream's).
    pub seq: u64,
    pub id: MsgId,
    /// The `Mlt-Node` header.
    pub node: u8,
    /// The `Mlt-Epoch` header.
    pub epoch: u64,
    /// A new owner's `lease` record (the message holds only it).
    pub lease: bool,
    pub body: Vec<u8>,
}

/// The stream's answer to a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PubAck {
    pub seq: u64,
    /// The stream had this id already (a retry): nothing was stored now.
    pub duplicate: bool,
}

/// Why a publish got no ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No answer: the stream is electing a leader. The writer retries with the same id.
    Unavailable,
    /// Error 10071: the expected last subject sequence is not the subject's last (`last`).
    WrongLastSequence { last: u64 },
}

/// The galaxy's lease as the KV bucket holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub node: u8,
    /// The revision of the claim.
    pub epoch: u64,
    /// The revision of the last write (claim or renewal): a renewal must name it.
    pub revision: u64,
    /// The store's clock (step) at the last write.
    pub written_at: u64,
}

/// How many steps a lease lasts without a renewal (the real lease is 10 s, renewed every
/// 2.5 s; a step here is a few milliseconds of a busy server).
pub const LEASE_STEPS: u64 = 60;

/// The stream and the KV bucket of a galaxy.
#[derive(Clone, Debug, Default)]
pub struct SimStream {
    pub subjects: BTreeMap<String, Vec<Message>>,
    /// The stream's last sequence (0: empty).
    last_seq: u64,
    /// Message ids stored, with their sequence (the duplicate window: a whole seed, where the
    /// real one is 5 minutes against retries of at most 30 s).
    ids: BTreeMap<MsgId, u64>,
    /// The stream answers nothing before this step (an election).
    pub unavailable_until: u64,
    /// The KV bucket's key `mesh`, if written and not deleted.
    lease: Option<Lease>,
    /// The KV bucket's last revision.
    kv_revision: u64,
    /// Writers handed out (ids are unique per writer, as the real random ids are).
    writers: u64,
}

impl SimStream {
    pub fn available(&self, step: u64) -> bool {
        step >= self.unavailable_until
    }

    /// A new writer id (a node opening a log).
    pub fn new_writer(&mut self) -> u64 {
        self.writers += 1;
        self.writers
    }

    /// The stream sequence of `subject`'s last message (0: none).
    pub fn last_of(&self, subject: &str) -> u64 {
        self.subjects
            .get(subject)
            .and_then(|m| m.last())
            .map_or(0, |m| m.seq)
    }

    /// Every byte of `subject`, its messages in order.
    pub fn bytes_of(&self, subject: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        for m in self.subjects.get(subject).into_iter().flatten() {
            bytes.extend_from_slice(&m.body);
        }
        bytes
    }

    /// A publish, as the engine answers it: the id checked first, then the expected sequence.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &mut self,
        step: u64,
        subject: &str,
        id: MsgId,
        expected_last_seq: Option<u64>,
        node: u8,
        epoch: u64,
        lease: bool,
        body: &[u8],
    ) -> Result<PubAck, Refused> {
        if !self.available(step) {
            return Err(Refused::Unavailable);
        }
        if let Some(&seq) = self.ids.get(&id) {
            return Ok(PubAck {
                seq,
                duplicate: true,
            });
        }
        let last = self.last_of(subject);
        if let Some(expected) = expected_last_seq {
            if expected != last {
                return Err(Refused::WrongLastSequence { last });
            }
        }
        assert!(
            body.ends_with(b"\n"),
            "{subject}: a message holds whole records"
        );
        self.last_seq += 1;
        let seq = self.last_seq;
        self.ids.insert(id, seq);
        self.subjects
            .entry(subject.to_string())
            .or_default()
            .push(Message {
                seq,
                id,
                node,
                epoch,
                lease,
                body: body.to_vec(),
            });
        Ok(PubAck {
            seq,
            duplicate: false,
        })
    }

    /// The lease as the key holds it now.
    pub fn key(&self) -> Option<Lease> {
        self.lease
    }

    /// A compare-and-set claim at `expected` (0: no key): the new revision is the epoch. None:
    /// refused (the key changed, or the store is unavailable).
    pub fn claim(&mut self, step: u64, node: u8, expected: u64) -> Option<Lease> {
        if !self.available(step) || self.lease.map_or(0, |l| l.revision) != expected {
            return None;
        }
        self.kv_revision += 1;
        let lease = Lease {
            node,
            epoch: self.kv_revision,
            revision: self.kv_revision,
            written_at: step,
        };
        self.lease = Some(lease);
        Some(lease)
    }

    /// A compare-and-set renewal by the holder of `revision`.
    pub fn renew(&mut self, step: u64, revision: u64) -> (mesh::protocol::lease::Renewal, u64) {
        use mesh::protocol::lease::Renewal;
        if !self.available(step) {
            return (Renewal::Unavailable, revision);
        }
        match self.lease {
            Some(l) if l.revision == revision => {
                self.kv_revision += 1;
                let renewed = Lease {
                    revision: self.kv_revision,
                    written_at: step,
                    ..l
                };
                self.lease = Some(renewed);
                (Renewal::Renewed, renewed.revision)
            }
            _ => (Renewal::Lost, revision),
        }
    }
}

/// The `lease` record a new owner appends, as the real backend writes it (`store::lease`).
pub fn encode_lease(line: &mut Line<'_>, epoch: u64, node: u8) {
    let record = store::lease::LeaseRecord {
        epoch,
        node: node_name(node),
    };
    record.encode(line);
}

/// A node's name (`n0`, `n1`...).
pub fn node_name(node: u8) -> String {
    format!("n{node}")
}

/// A log's writer on the stream: what a node knows of its subject.
#[derive(Clone, Debug)]
pub struct Writer {
    pub node: u8,
    pub epoch: u64,
    pub id: u64,
    /// Batches published (numbers the message ids).
    pub batches: u64,
    /// The stream sequence of the subject's last message as this writer knows it.
    pub last_seq: u64,
    /// The message in flight (its body is the log's written batch).
    pub in_flight: Option<InFlight>,
    /// Copies of acks already taken that the network delivers again.
    pub stale_acks: u32,
}

/// A message sent and not yet acknowledged to its writer.
#[derive(Clone, Copy, Debug)]
pub struct InFlight {
    pub id: MsgId,
    pub expected: Option<u64>,
    /// The ack the writer will receive (None: it was lost, or nothing answered: retry).
    pub ack: Option<PubAck>,
}

impl Writer {
    pub fn new(stream: &mut SimStream, node: u8, epoch: u64, last_seq: u64) -> Writer {
        Writer {
            node,
            epoch,
            id: stream.new_writer(),
            batches: 0,
            last_seq,
            in_flight: None,
            stale_acks: 0,
        }
    }
}

/// What a publish attempt of a log's next batch came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Stored; its ack is on its way.
    Stored,
    /// Stored, and its ack lost: the writer will retry with the same id.
    AckLost,
    /// No answer (an election): the writer will retry with the same id.
    Stalled,
    /// Refused (10071): the log is poisoned.
    Fenced { last: u64 },
}

/// What the writer of a message in flight met next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The ack of its message: durable (`duplicate`: the answer to a retry).
    Durable { seq: u64, duplicate: bool },
    /// A second copy of an ack already taken: not for the message in flight, ignored.
    StaleAck,
    /// The retry got no answer, or its ack was lost again.
    Stalled,
    /// The retry was refused (10071): the log is poisoned.
    Fenced { last: u64 },
}

/// A message stored by a publish now, for the invariants (no zombie append accepted).
#[derive(Clone, Debug)]
pub struct Accepted {
    pub subject: String,
    pub seq: u64,
    pub node: u8,
    pub epoch: u64,
}

/// Sends `log`'s pending records as one message (its `write`). `lose_ack`: the network drops
/// the ack if the stream stores it.
pub fn send(
    stream: &mut SimStream,
    log: &mut SimLog,
    step: u64,
    lose_ack: bool,
) -> (Sent, Option<Accepted>) {
    log.write()
        .expect("no disk fault is armed on a log in the stream");
    let writer = log.writer.as_mut().expect("a log in the stream");
    assert!(writer.in_flight.is_none(), "one message in flight a log");
    writer.batches += 1;
    let id = MsgId {
        writer: writer.id,
        batch: writer.batches,
    };
    let expected = mesh::protocol::lease::expected_last_seq(writer.last_seq);
    let (node, epoch) = (writer.node, writer.epoch);
    let answer = stream.publish(
        step,
        &log.name,
        id,
        expected,
        node,
        epoch,
        false,
        log.written(),
    );
    let writer = log.writer.as_mut().expect("a log in the stream");
    let accepted = stored(&log.name, &answer, node, epoch);
    let sent = match answer {
        Ok(ack) => {
            let ack = (!lose_ack).then_some(ack);
            writer.in_flight = Some(InFlight { id, expected, ack });
            if ack.is_some() {
                Sent::Stored
            } else {
                Sent::AckLost
            }
        }
        Err(Refused::Unavailable) => {
            writer.in_flight = Some(InFlight {
                id,
                expected,
                ack: None,
            });
            Sent::Stalled
        }
        Err(Refused::WrongLastSequence { last }) => {
            log.fail(DiskError::Fenced);
            Sent::Fenced { last }
        }
    };
    (sent, accepted)
}

/// The writer of `log` takes its next ack, or retries its message in flight with the same id
/// and expected sequence (its `sync`). `ack_twice`: the network delivers this ack again later;
/// `lose_ack`: a retry's ack is lost too.
pub fn receive(
    stream: &mut SimStream,
    log: &mut SimLog,
    step: u64,
    ack_twice: bool,
    lose_ack: bool,
) -> (Received, Option<Accepted>) {
    let writer = log.writer.as_mut().expect("a log in the stream");
    if writer.stale_acks > 0 {
        // The real client matches an ack to its request; a copy of an earlier one is not the
        // ack of the message in flight.
        writer.stale_acks -= 1;
        return (Received::StaleAck, None);
    }
    let flight = writer.in_flight.expect("a message in flight");
    let (node, epoch) = (writer.node, writer.epoch);
    let mut accepted = None;
    let ack = match flight.ack {
        Some(ack) => ack,
        None => {
            let answer = stream.publish(
                step,
                &log.name,
                flight.id,
                flight.expected,
                node,
                epoch,
                false,
                log.written(),
            );
            accepted = stored(&log.name, &answer, node, epoch);
            match answer {
                Ok(ack) if !lose_ack => ack,
                Ok(ack) => {
                    let writer = log.writer.as_mut().expect("a log in the stream");
                    // Stored (or had it): the next retry is answered duplicate.
                    writer.in_flight = Some(InFlight {
                        ack: None,
                        ..flight
                    });
                    let _ = ack;
                    return (Received::Stalled, accepted);
                }
                Err(Refused::Unavailable) => return (Received::Stalled, None),
                Err(Refused::WrongLastSequence { last }) => {
                    log.fail(DiskError::Fenced);
                    return (Received::Fenced { last }, None);
                }
            }
        }
    };
    let writer = log.writer.as_mut().expect("a log in the stream");
    assert!(
        ack.seq > writer.last_seq,
        "{}: acked at stream sequence {} after {}",
        log.name,
        ack.seq,
        writer.last_seq
    );
    writer.last_seq = ack.seq;
    writer.in_flight = None;
    if ack_twice {
        writer.stale_acks += 1;
    }
    log.acked();
    (
        Received::Durable {
            seq: ack.seq,
            duplicate: ack.duplicate,
        },
        accepted,
    )
}

/// Publishes `log`'s pending records now and waits for the ack (recovery's own appends, and a
/// new owner's `lease` records; the stream is available, no ack is lost). Err: refused.
pub fn publish_now(
    stream: &mut SimStream,
    log: &mut SimLog,
    step: u64,
    lease: bool,
) -> Result<Accepted, Refused> {
    log.write()
        .expect("no disk fault is armed on a log in the stream");
    let writer = log.writer.as_mut().expect("a log in the stream");
    writer.batches += 1;
    let id = MsgId {
        writer: writer.id,
        batch: writer.batches,
    };
    let expected = mesh::protocol::lease::expected_last_seq(writer.last_seq);
    let (node, epoch) = (writer.node, writer.epoch);
    let answer = stream.publish(
        step,
        &log.name,
        id,
        expected,
        node,
        epoch,
        lease,
        log.written(),
    );
    let accepted = stored(&log.name, &answer, node, epoch);
    let ack = answer?;
    assert!(!ack.duplicate, "a new id is never a duplicate");
    let writer = log.writer.as_mut().expect("a log in the stream");
    writer.last_seq = ack.seq;
    log.acked();
    Ok(accepted.expect("stored"))
}

fn stored(
    subject: &str,
    answer: &Result<PubAck, Refused>,
    node: u8,
    epoch: u64,
) -> Option<Accepted> {
    match answer {
        Ok(ack) if !ack.duplicate => Some(Accepted {
            subject: subject.to_string(),
            seq: ack.seq,
            node,
            epoch,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(writer: u64, batch: u64) -> MsgId {
        MsgId { writer, batch }
    }

    #[test]
    fn a_retry_is_a_duplicate_and_a_stale_writer_is_refused() {
        let mut s = SimStream::default();
        let a = s.publish(0, "x", id(1, 1), Some(0), 0, 1, false, b"1 a ~0\n");
        assert_eq!(
            a,
            Ok(PubAck {
                seq: 1,
                duplicate: false
            })
        );
        // The ack was lost: the same id again is answered duplicate, nothing stored.
        let again = s.publish(0, "x", id(1, 1), Some(0), 0, 1, false, b"1 a ~0\n");
        assert_eq!(
            again,
            Ok(PubAck {
                seq: 1,
                duplicate: true
            })
        );
        assert_eq!(s.subjects["x"].len(), 1);
        // Another writer that read before that message: refused.
        let stale = s.publish(0, "x", id(2, 1), Some(0), 1, 2, false, b"1 b ~0\n");
        assert_eq!(stale, Err(Refused::WrongLastSequence { last: 1 }));
        // Without an expected sequence it would have been taken: what fencing prevents.
        let unfenced = s.publish(0, "x", id(2, 2), None, 1, 2, false, b"2 b ~0\n");
        assert!(unfenced.is_ok());
        s.unavailable_until = 10;
        let during = s.publish(5, "x", id(2, 3), Some(3), 1, 2, false, b"3 b ~0\n");
        assert_eq!(during, Err(Refused::Unavailable));
    }

    #[test]
    fn a_lease_is_claimed_once_renewed_by_its_revision_and_taken_at_a_revision() {
        use mesh::protocol::lease::Renewal;
        let mut s = SimStream::default();
        let a = s.claim(0, 0, 0).expect("free");
        assert!(s.claim(1, 1, 0).is_none(), "held");
        let (r, rev) = s.renew(10, a.revision);
        assert_eq!(r, Renewal::Renewed);
        assert_eq!(s.renew(11, a.revision).0, Renewal::Lost, "an old revision");
        assert!(s.claim(12, 1, a.revision).is_none(), "renewed since");
        let b = s.claim(10 + LEASE_STEPS, 1, rev).expect("silent at rev");
        assert!(b.epoch > a.epoch, "epochs grow");
        assert_eq!(s.renew(10 + LEASE_STEPS, rev).0, Renewal::Lost);
    }
}
