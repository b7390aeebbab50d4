//! What a seed of the cross-node world did, counted for the summary and for CI's assertion
//! that every fault and every step of a jump was hit.
//!
//! Never decides anything.

use serde::Serialize;

/// What a seed of this world did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct XCounts {
    pub seeds: u64,
    pub steps: u64,
    pub quiet_steps: u64,
    pub requests: u64,
    pub acks: u64,
    pub jumps_committed: u64,
    pub jumps_published: u64,
    pub publishes_duplicate: u64,
    pub duplicates_stored: u64,
    pub jumps_landed: u64,
    pub deliveries_dropped: u64,
    pub redeliveries: u64,
    pub ids_forgotten: u64,
    pub crashes: u64,
    /// Crashes of a node holding a jump at each step (a crash may count in several).
    pub crash_depart_not_durable: u64,
    pub crash_committed_unpublished: u64,
    pub crash_publish_unanswered: u64,
    /// Of those: the `depart` stored, its owner not yet told (after durable, before the ack).
    pub crash_depart_stored_untold: u64,
    /// Of those: the `jump` stored on its pair subject, its owner not yet told.
    pub crash_publish_stored_unacked: u64,
    pub crash_done_not_durable: u64,
    pub crash_dest_queued: u64,
    pub crash_arrive_not_durable: u64,
    pub crash_dest_before_snapshot: u64,
    pub pauses: u64,
    pub lapses: u64,
    pub takeovers: u64,
    pub takeovers_from_snapshot: u64,
    /// Lease records refused (a zombie wrote between the read and the fence): read again.
    pub fence_retries: u64,
    /// Claims given up at the fence: another node claimed the unit since.
    pub takeovers_outranked: u64,
    pub republished: u64,
    pub zombie_writes_refused: u64,
    /// Publishes refused because an ack was lost or answered duplicate (the writer's own).
    pub publishes_resynced: u64,
    /// Zombies stopped by a renewal, or by a landing their stale state refuses.
    pub zombies_stopped: u64,
    pub answers_lost: u64,
    pub answers_twice: u64,
    pub snapshots: u64,
    /// Snapshots put by a node that no longer held the unit's lease.
    pub zombie_snapshots: u64,
    /// The regions world's (seeds with two regions).
    pub regions: super::regions::RCounts,
}

impl XCounts {
    /// Adds a seed's counts to a total.
    pub fn add(&mut self, c: &XCounts) {
        let pairs: [(&mut u64, u64); 37] = [
            (&mut self.seeds, c.seeds),
            (&mut self.steps, c.steps),
            (&mut self.quiet_steps, c.quiet_steps),
            (&mut self.requests, c.requests),
            (&mut self.acks, c.acks),
            (&mut self.jumps_committed, c.jumps_committed),
            (&mut self.jumps_published, c.jumps_published),
            (&mut self.publishes_duplicate, c.publishes_duplicate),
            (&mut self.duplicates_stored, c.duplicates_stored),
            (&mut self.jumps_landed, c.jumps_landed),
            (&mut self.deliveries_dropped, c.deliveries_dropped),
            (&mut self.redeliveries, c.redeliveries),
            (&mut self.ids_forgotten, c.ids_forgotten),
            (&mut self.crashes, c.crashes),
            (
                &mut self.crash_depart_not_durable,
                c.crash_depart_not_durable,
            ),
            (
                &mut self.crash_committed_unpublished,
                c.crash_committed_unpublished,
            ),
            (
                &mut self.crash_publish_unanswered,
                c.crash_publish_unanswered,
            ),
            (
                &mut self.crash_depart_stored_untold,
                c.crash_depart_stored_untold,
            ),
            (
                &mut self.crash_publish_stored_unacked,
                c.crash_publish_stored_unacked,
            ),
            (&mut self.crash_done_not_durable, c.crash_done_not_durable),
            (&mut self.crash_dest_queued, c.crash_dest_queued),
            (
                &mut self.crash_arrive_not_durable,
                c.crash_arrive_not_durable,
            ),
            (
                &mut self.crash_dest_before_snapshot,
                c.crash_dest_before_snapshot,
            ),
            (&mut self.pauses, c.pauses),
            (&mut self.lapses, c.lapses),
            (&mut self.takeovers, c.takeovers),
            (&mut self.takeovers_from_snapshot, c.takeovers_from_snapshot),
            (&mut self.fence_retries, c.fence_retries),
            (&mut self.takeovers_outranked, c.takeovers_outranked),
            (&mut self.republished, c.republished),
            (&mut self.zombie_writes_refused, c.zombie_writes_refused),
            (&mut self.publishes_resynced, c.publishes_resynced),
            (&mut self.zombies_stopped, c.zombies_stopped),
            (&mut self.answers_lost, c.answers_lost),
            (&mut self.answers_twice, c.answers_twice),
            (&mut self.snapshots, c.snapshots),
            (&mut self.zombie_snapshots, c.zombie_snapshots),
        ];
        for (t, v) in pairs {
            *t += v;
        }
        self.regions.add(&c.regions);
    }

    /// One line for the summary.
    pub fn text(&self) -> String {
        format!(
            "cross-node world: {} seeds ({} quiet steps at the ends); jumps {} committed, {} published ({} answered duplicate, {} stored twice), {} landed, {} deliveries dropped, {} redeliveries, {} ids forgotten; {} crashes (with a jump: {} depart not durable ({} stored, owner untold), {} committed unpublished, {} publish unanswered ({} stored, owner untold), {} depart.done not durable, {} queued at the destination, {} arrive not durable, {} landed since the snapshot), {} pauses, {} lapses; {} takeovers ({} from a snapshot, {} lease records refused and read again, {} claims given up, {} jumps republished); zombies: {} writes refused, {} stopped; {} publishes resynced after a lost or duplicate ack; {} answers lost, {} twice; {} snapshots ({} by zombies); {} requests, {} acknowledged",
            self.seeds,
            self.quiet_steps,
            self.jumps_committed,
            self.jumps_published,
            self.publishes_duplicate,
            self.duplicates_stored,
            self.jumps_landed,
            self.deliveries_dropped,
            self.redeliveries,
            self.ids_forgotten,
            self.crashes,
            self.crash_depart_not_durable,
            self.crash_depart_stored_untold,
            self.crash_committed_unpublished,
            self.crash_publish_unanswered,
            self.crash_publish_stored_unacked,
            self.crash_done_not_durable,
            self.crash_dest_queued,
            self.crash_arrive_not_durable,
            self.crash_dest_before_snapshot,
            self.pauses,
            self.lapses,
            self.takeovers,
            self.takeovers_from_snapshot,
            self.fence_retries,
            self.takeovers_outranked,
            self.republished,
            self.zombie_writes_refused,
            self.zombies_stopped,
            self.publishes_resynced,
            self.answers_lost,
            self.answers_twice,
            self.snapshots,
            self.zombie_snapshots,
            self.requests,
            self.acks,
        ) + "; " + &self.regions.text()
    }
}
