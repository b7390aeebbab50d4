//! A lease on a shared log store (JetStream), as pure decisions: when a holder stops, when a
//! watcher may take the lease over, what expected sequence an append carries, and the steps of
//! a takeover (claim, read every log to its end, fence every log with a `lease` record, then
//! serve).
//!
//! The rules (docs/NATS.md, issues 18 and 19):
//! - a lease is a key whose revision is the epoch. The store never expires it: the nodes that
//!   watch it judge it ([`Watch`]). A watcher counts a lease of silence (the revision
//!   unchanged) only over polls the store answered, and starts again after any poll it did not
//!   answer; then it takes the key with a compare-and-set at the revision it watched (a
//!   renewal by the holder in between makes that fail). A leader election stalls every write
//!   and every read of the key for seconds: it stalls the count too, so it never looks like
//!   the holder dying (no mass takeover while the engine elects);
//! - the holder renews with a compare-and-set several times a lease ([`Holding`]). A renewal
//!   that finds the key taken means this node is no longer the owner: it stops serving. A
//!   renewal the store did not answer says nothing about the lease: the watchers' count stalls
//!   as the holder's does, so the holder keeps serving (its appends stall too, and fencing
//!   refuses them if it was replaced meanwhile), up to a grace that bounds how long a node cut
//!   off from the store may answer reads. Otherwise it stops once a whole lease has passed by
//!   its own clock since it sent its last renewal the store took: a watcher counts from when
//!   it first saw that renewal, later, so the holder stops first;
//! - every append carries the expected last sequence of its subject as the writer knows it, so
//!   a writer that lost its place (a zombie) is refused;
//! - a new owner reads every log to its end, appends a `lease` record to each with the expected
//!   last sequence it read, and serves only once every one is accepted. A refusal means an
//!   old owner appended since the read: read again.
//!
//! The real server's lease loop and the deterministic simulator (`crates/dst`) both take these
//! decisions from here. Never does I/O, never reads a clock: times are given in milliseconds of
//! the caller's own monotonic clock (steps, in the simulator).

use super::bugs::{self, Bug};

/// What a renewal of the lease met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The store took the renewal: the lease holds for another lease period.
    Renewed,
    /// The store did not answer (a leader election, a network cut): nothing is known.
    Unavailable,
    /// The lease is someone else's: this node is no longer the owner.
    Lost,
}

/// What the holder does after a renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRenewal {
    KeepServing,
    /// Stop serving: drop every in-memory state and answer nothing more (the process exits;
    /// it may come back as a standby).
    Stop,
}

/// A holder's view of its own lease: when it last renewed, when the store last left a renewal
/// unanswered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holding {
    lease_ms: u64,
    grace_ms: u64,
    /// When the last renewal the store took was sent (the claim, at first).
    renewed_at: u64,
    /// When the last renewal the store did not answer was sent, if after `renewed_at`.
    unanswered_at: Option<u64>,
}

impl Holding {
    /// A lease of `lease_ms` claimed by a request sent at `claim_sent`; renewals the store
    /// leaves unanswered keep the holder serving for at most `grace_ms` past the lease.
    pub fn new(claim_sent: u64, lease_ms: u64, grace_ms: u64) -> Holding {
        assert!(lease_ms > 0, "a lease lasts some time");
        Holding {
            lease_ms,
            grace_ms,
            renewed_at: claim_sent,
            unanswered_at: None,
        }
    }

    /// When the last renewal the store took was sent.
    pub fn renewed_at(&self) -> u64 {
        self.renewed_at
    }

    /// A renewal sent at `sent` met `renewal`: whether the holder keeps serving.
    pub fn renewal(&mut self, renewal: Renewal, sent: u64) -> AfterRenewal {
        match renewal {
            Renewal::Renewed => {
                self.renewed_at = self.renewed_at.max(sent);
                self.unanswered_at = None;
                AfterRenewal::KeepServing
            }
            Renewal::Unavailable => {
                self.unanswered_at = Some(sent.max(self.renewed_at));
                AfterRenewal::KeepServing
            }
            Renewal::Lost => AfterRenewal::Stop,
        }
    }

    /// Whether, at `now`, the holder must stop by its own clock: a whole lease since it sent
    /// its last renewal the store took, or since the last one the store left unanswered (the
    /// watchers' count stalled then too), and never later than the grace past the lease.
    pub fn expired(&self, now: u64) -> bool {
        let since_renewed = now.saturating_sub(self.renewed_at);
        if since_renewed >= self.lease_ms.saturating_add(self.grace_ms) {
            return true;
        }
        let counted_from = match self.unanswered_at {
            Some(_) if bugs::on(Bug::ElectionIsDeath) => self.renewed_at,
            Some(at) => at,
            None => self.renewed_at,
        };
        now.saturating_sub(counted_from) >= self.lease_ms
    }
}

/// A watcher's count of a lease key's silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    lease_ms: u64,
    /// The revision last seen, and when the first answered poll that saw it returned.
    seen: Option<(u64, u64)>,
}

impl Watch {
    pub fn new(lease_ms: u64) -> Watch {
        assert!(lease_ms > 0, "a lease lasts some time");
        Watch {
            lease_ms,
            seen: None,
        }
    }

    /// A poll the store answered, returned at `now`: the key's revision is `revision` (0: no
    /// key). A new revision starts the count again.
    pub fn answered(&mut self, revision: u64, now: u64) {
        match self.seen {
            Some((seen, _)) if seen == revision => {}
            _ => self.seen = Some((revision, now)),
        }
    }

    /// A poll the store did not answer (an election, a network cut): the count starts again
    /// at the next answered poll, since the holder's renewals may have failed meanwhile.
    pub fn unanswered(&mut self) {
        if !bugs::on(Bug::WatchCountsElections) {
            self.seen = None;
        }
    }

    /// Some(revision) once the key has kept `revision` for a whole lease over answered polls:
    /// take it over with a compare-and-set at that revision.
    pub fn silent(&self, now: u64) -> Option<u64> {
        let (revision, since) = self.seen?;
        (now.saturating_sub(since) >= self.lease_ms).then_some(revision)
    }
}

/// The expected last subject sequence an append carries, given the last sequence this writer
/// knows of its subject (0: none). Always some: an append without one could land after a new
/// owner's `lease` record.
pub fn expected_last_seq(known_last_seq: u64) -> Option<u64> {
    if bugs::on(Bug::NoFencing) {
        return None;
    }
    Some(known_last_seq)
}

/// Where a node taking over stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// The claim succeeded at `epoch`; nothing is read yet.
    Claimed { epoch: u64 },
    /// Every log was read to its end at `epoch`; the `lease` records are next.
    Read { epoch: u64 },
    /// Every log carries this epoch's `lease` record: the node recovers and serves.
    Fenced { epoch: u64 },
}

impl Takeover {
    pub fn epoch(self) -> u64 {
        match self {
            Takeover::Claimed { epoch } | Takeover::Read { epoch } | Takeover::Fenced { epoch } => {
                epoch
            }
        }
    }

    /// Every log has been read to its end.
    pub fn read(self) -> Takeover {
        assert!(
            !matches!(self, Takeover::Fenced { .. }),
            "a fenced takeover reads nothing again"
        );
        Takeover::Read {
            epoch: self.epoch(),
        }
    }

    /// What the read found: the highest epoch of the `lease` records in the logs. A claim older
    /// than one the logs hold was lost while this node read (its lease expired and another
    /// node took over): it must stand by, never append its records over a newer owner's. The
    /// node cannot know it from its own lease check, which is never atomic with its appends.
    /// None: stand by.
    pub fn read_found(self, highest_epoch_in_logs: u64) -> Option<Takeover> {
        let read = self.read();
        if highest_epoch_in_logs > self.epoch() && !bugs::on(Bug::FenceOverNewerEpoch) {
            return None;
        }
        Some(read)
    }

    /// The `lease` records were appended: every one accepted (`all_accepted`), or one refused
    /// because an old owner appended after the read (then: read again).
    pub fn fenced(self, all_accepted: bool) -> Takeover {
        assert!(
            matches!(self, Takeover::Read { .. }),
            "the lease records follow the read: {self:?}"
        );
        match all_accepted {
            true => Takeover::Fenced {
                epoch: self.epoch(),
            },
            false => Takeover::Claimed {
                epoch: self.epoch(),
            },
        }
    }

    /// Whether the node appends `lease` records before it serves (always, but for the bug).
    pub fn fences_before_serving() -> bool {
        !bugs::on(Bug::ServeBeforeLeaseRecord)
    }

    /// Whether the node may serve (recover, answer, append records of the game).
    pub fn may_serve(self) -> bool {
        match self {
            Takeover::Fenced { .. } => true,
            Takeover::Read { .. } => !Takeover::fences_before_serving(),
            Takeover::Claimed { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_election_is_not_a_lost_lease() {
        let mut h = Holding::new(0, 5_000, 20_000);
        assert!(!h.expired(4_999));
        assert!(h.expired(5_000), "a whole lease without a renewal");
        assert_eq!(
            h.renewal(Renewal::Renewed, 1_000),
            AfterRenewal::KeepServing
        );
        assert!(!h.expired(5_999));
        assert!(h.expired(6_000));
        // The store elects: renewals go unanswered, and the holder keeps serving.
        for sent in [2_000, 4_000, 6_000, 8_000, 10_000] {
            assert_eq!(
                h.renewal(Renewal::Unavailable, sent),
                AfterRenewal::KeepServing
            );
            assert!(
                !h.expired(sent + 2_000),
                "an election at {sent} is not a death"
            );
        }
        assert!(
            h.expired(15_000),
            "a lease past the last unanswered renewal"
        );
        let mut long = h;
        for sent in (12_000..30_000).step_by(2_000) {
            long.renewal(Renewal::Unavailable, sent);
        }
        assert!(long.expired(26_000), "never past the grace");
        assert_eq!(h.renewal(Renewal::Lost, 11_000), AfterRenewal::Stop);
    }

    #[test]
    fn a_watch_counts_silence_only_while_the_store_answers() {
        let mut w = Watch::new(5_000);
        assert_eq!(w.silent(0), None, "nothing seen");
        w.answered(7, 1_000);
        w.answered(7, 5_999);
        assert_eq!(w.silent(5_999), None);
        assert_eq!(w.silent(6_000), Some(7), "a lease of silence");
        w.answered(8, 6_100);
        assert_eq!(w.silent(11_099), None, "the holder renewed: counting again");
        // An election from 7 000 to 16 000: the holder could renew nothing, nor could anyone.
        w.unanswered();
        w.answered(8, 16_000);
        assert_eq!(
            w.silent(16_000),
            None,
            "the election is not silence: no takeover"
        );
        assert_eq!(w.silent(21_000), Some(8));
    }

    #[test]
    fn every_append_is_fenced() {
        assert_eq!(expected_last_seq(0), Some(0));
        assert_eq!(expected_last_seq(42), Some(42));
    }

    #[test]
    fn a_takeover_serves_only_once_every_log_is_fenced() {
        let t = Takeover::Claimed { epoch: 7 };
        assert!(!t.may_serve());
        let t = t.read();
        assert!(!t.may_serve(), "read but not fenced");
        let again = t.fenced(false);
        assert_eq!(again, Takeover::Claimed { epoch: 7 }, "refused: read again");
        let t = again.read().fenced(true);
        assert!(t.may_serve());
        assert_eq!(t.epoch(), 7);
    }

    #[test]
    fn a_takeover_that_reads_a_newer_owner_stands_by() {
        let t = Takeover::Claimed { epoch: 7 };
        assert_eq!(t.read_found(6), Some(Takeover::Read { epoch: 7 }));
        assert_eq!(
            t.read_found(7),
            Some(Takeover::Read { epoch: 7 }),
            "its own"
        );
        assert_eq!(t.read_found(9), None, "epoch 9 owns the logs");
    }
}
