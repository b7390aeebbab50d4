//! Test-only switches that re-introduce, one at a time, bugs the jump protocol has had or could
//! have, so that the deterministic simulator (`crates/dst`) can show it catches each.
//!
//! Compiled only with the cargo feature `bug-switches` (off by default: the server never has
//! it); without it [`on`] is a constant `false` that the compiler removes. The switch is
//! thread-local, so seeds run on parallel threads each choose their own.
//!
//! Never read anywhere but at the one place of the core each bug lives in.

/// A bug the protocol core can be told to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// A jump with no travel time lands at once even when an earlier jump of its origin is
    /// still queued here (a recovered jump, say): landing is idempotent by the highest number
    /// landed per origin, so the earlier jump is then taken for "landed already" and dropped.
    LandBeforeEarlier,
    /// Recovery takes a `jump` whose `depart` the crash lost for committed: it lands while
    /// its player is still at the origin (a duplicate).
    LostPrepareLands,
    /// Recovery hands every committed jump of the transition log over again, landed or not,
    /// and a landing ignores the highest number landed from its origin: a jump that landed
    /// before the restart lands twice.
    LandTwice,
    /// Recovery refunds an instance's escrowed trade even though the primary's market took it
    /// (goods or credits created).
    SettleAndRefund,
    /// A node appends to the shared log store without the expected last subject sequence (no
    /// fencing): an old owner (a zombie) woken after a takeover appends after the new owner's
    /// `lease` record.
    NoFencing,
    /// A node that took the lease serves right after reading the logs, without appending its
    /// `lease` records first: a zombie's append after the read is accepted.
    ServeBeforeLeaseRecord,
    /// A renewal that fails because the store is electing a leader is read as a lost lease:
    /// the holder stops serving while it still holds the lease.
    ElectionIsDeath,
    /// A watcher of a lease counts the polls the store did not answer as silence: after an
    /// election longer than the lease it takes the lease of a holder that renews again.
    WatchCountsElections,
    /// A node taking over that finds a newer owner's `lease` records in the logs it read (its
    /// claim expired while it read or fenced) appends its own over them and serves.
    FenceOverNewerEpoch,
    /// Across nodes (`handover`): an origin publishes a jump to its pair subject as soon as its
    /// `depart` is appended, before it is durable: a crash that loses the `depart` leaves the
    /// player at the origin and the jump landing at the destination.
    PublishBeforeDurable,
    /// Across nodes: a node taking over an origin aborts every jump still departing (the local
    /// recovery's rule for a `depart` with no `jump` record), though each was committed and may
    /// be on its pair subject or told to its player.
    AbortCommittedAtTakeover,
    /// Across nodes: a destination lands every jump its pair subjects deliver, without the
    /// per-origin check (the highest number landed) nor the consumer's position: a
    /// redelivery, a duplicate stored again or a takeover reading from an earlier position
    /// lands a jump twice.
    LandWithoutDedup,
    /// Across nodes: an origin publishes to its pair subjects without the expected last
    /// sequence: a zombie origin's publish after its successor's `lease` record is accepted.
    ZombiePublishUnfenced,
    /// Across nodes: a destination's snapshot records, per pair subject, the last position
    /// read, past jumps read but still queued for their travel: a takeover from that snapshot
    /// never lands them.
    SnapshotPastQueued,
    /// Across regions (`promote`): a promotion re-homes the lost region's systems from the
    /// copy without reconciling with the survivor's own logs: a departure the copy lacks but
    /// the survivor's pair subjects hold is not applied (the player is served twice), and a
    /// survivor's jump towards a promoted system that the copy lacks is not published again
    /// (the player is lost).
    PromoteWithoutReconcile,
    /// Across regions: a promoted system's new home takes the epoch just above the highest
    /// epoch its copy shows, not a new generation: an owner the lost region elected after the
    /// copy's last message holds an epoch as high, and is not fenced.
    PromoteEpochAboveCopy,
}

impl Bug {
    /// Every bug, for runners that try each.
    pub const ALL: [Bug; 16] = [
        Bug::LandBeforeEarlier,
        Bug::LostPrepareLands,
        Bug::LandTwice,
        Bug::SettleAndRefund,
        Bug::NoFencing,
        Bug::ServeBeforeLeaseRecord,
        Bug::ElectionIsDeath,
        Bug::WatchCountsElections,
        Bug::FenceOverNewerEpoch,
        Bug::PublishBeforeDurable,
        Bug::AbortCommittedAtTakeover,
        Bug::LandWithoutDedup,
        Bug::ZombiePublishUnfenced,
        Bug::SnapshotPastQueued,
        Bug::PromoteWithoutReconcile,
        Bug::PromoteEpochAboveCopy,
    ];

    /// The name used on command lines (`--bug land-twice`).
    pub fn name(self) -> &'static str {
        match self {
            Bug::LandBeforeEarlier => "land-before-earlier",
            Bug::LostPrepareLands => "lost-prepare-lands",
            Bug::LandTwice => "land-twice",
            Bug::SettleAndRefund => "settle-and-refund",
            Bug::NoFencing => "no-fencing",
            Bug::ServeBeforeLeaseRecord => "serve-before-lease-record",
            Bug::ElectionIsDeath => "election-is-death",
            Bug::WatchCountsElections => "watch-counts-elections",
            Bug::FenceOverNewerEpoch => "fence-over-newer-epoch",
            Bug::PublishBeforeDurable => "publish-before-durable",
            Bug::AbortCommittedAtTakeover => "abort-committed-at-takeover",
            Bug::LandWithoutDedup => "land-without-dedup",
            Bug::ZombiePublishUnfenced => "zombie-publish-unfenced",
            Bug::SnapshotPastQueued => "snapshot-past-queued",
            Bug::PromoteWithoutReconcile => "promote-without-reconcile",
            Bug::PromoteEpochAboveCopy => "promote-epoch-above-copy",
        }
    }

    /// The bug named `name` (see [`Bug::name`]).
    pub fn parse(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(feature = "bug-switches")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Sets (or clears) the bug this thread's protocol core has from now on.
#[cfg(feature = "bug-switches")]
pub fn set(bug: Option<Bug>) {
    ACTIVE.with(|a| a.set(bug));
}

/// Whether this thread's core has `bug` now.
#[cfg(feature = "bug-switches")]
pub fn on(bug: Bug) -> bool {
    ACTIVE.with(|a| a.get()) == Some(bug)
}

/// Whether this thread's core has `bug` now: never, without the feature.
#[cfg(not(feature = "bug-switches"))]
#[inline(always)]
pub fn on(_bug: Bug) -> bool {
    false
}
