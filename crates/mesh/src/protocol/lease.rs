//! The galaxy's lease on a shared log store (JetStream), as pure decisions: when a lease has
//! expired, what a node does when its renewal fails, what expected sequence an append carries,
//! and the steps of a takeover (claim, read every log to its end, fence every log with a
//! `lease` record, then serve).
//!
//! The rules (docs/NATS.md, issue 18):
//! - a lease ends by the store's clock, never a node's: a key not renewed within the lease is
//!   gone, and a compare-and-set claim takes it with a higher epoch;
//! - a renewal that finds the lease taken (or gone) means this node is no longer the owner: it
//!   stops serving. A renewal that fails because the store is electing a leader says nothing
//!   about the lease: the node keeps serving (its appends stall too, and fencing refuses them
//!   if it was replaced meanwhile) until a whole lease has passed by its own clock since its
//!   last renewal the store took. An election is not every node dying;
//! - every append carries the expected last sequence of its subject as the writer knows it, so
//!   a writer that lost its place (a zombie) is refused;
//! - a new owner reads every log to its end, appends a `lease` record to each with the expected
//!   last sequence it read, and serves only once every one is accepted. A refusal means an
//!   old owner appended since the read: read again.
//!
//! The real server's lease loop and the deterministic simulator (`crates/dst`) both take these
//! decisions from here. Never does I/O, never reads a clock: times are given in milliseconds of
//! the store's clock.

use super::bugs::{self, Bug};

/// What a renewal of the lease met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The store took the renewal: the lease holds for another lease period.
    Renewed,
    /// The store did not answer (a leader election, a network cut): nothing is known.
    Unavailable,
    /// The lease is someone else's, or gone (expired): this node is no longer the owner.
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

/// What the holder does after `renewal`, `since_renewed_ms` after it sent its last renewal the
/// store took (by its own clock), with a lease of `lease_ms`. An unanswered renewal keeps it
/// serving until a whole lease has passed since then: the store counts from when it stored
/// that renewal, later, so the node stops before anyone else can claim (docs/NATS.md).
pub fn after_renewal(renewal: Renewal, since_renewed_ms: u64, lease_ms: u64) -> AfterRenewal {
    match renewal {
        Renewal::Renewed => AfterRenewal::KeepServing,
        Renewal::Unavailable if bugs::on(Bug::ElectionIsDeath) => AfterRenewal::Stop,
        Renewal::Unavailable if since_renewed_ms >= lease_ms => AfterRenewal::Stop,
        Renewal::Unavailable => AfterRenewal::KeepServing,
        Renewal::Lost => AfterRenewal::Stop,
    }
}

/// Whether a lease last written at `written_ms` (store clock) has expired at `now_ms`.
pub fn expired(written_ms: u64, lease_ms: u64, now_ms: u64) -> bool {
    assert!(lease_ms > 0, "a lease lasts some time");
    now_ms >= written_ms.saturating_add(lease_ms)
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
        let lease_ms = 5_000;
        let keep = AfterRenewal::KeepServing;
        assert_eq!(after_renewal(Renewal::Renewed, 9_999, lease_ms), keep);
        assert_eq!(after_renewal(Renewal::Unavailable, 4_999, lease_ms), keep);
        assert_eq!(
            after_renewal(Renewal::Unavailable, 5_000, lease_ms),
            AfterRenewal::Stop,
            "a whole lease without a renewal: the lease may be another's"
        );
        assert_eq!(
            after_renewal(Renewal::Lost, 0, lease_ms),
            AfterRenewal::Stop
        );
    }

    #[test]
    fn a_lease_expires_by_the_store_clock_after_its_period() {
        assert!(!expired(1_000, 10_000, 10_999));
        assert!(expired(1_000, 10_000, 11_000));
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
