//! The simulator as CI runs it: a thousand seeds with faults and no violation, the same seed
//! twice giving the same run, and each re-introduced bug caught within a CI-sized run.

use dst::bugs::Bug;
use dst::runner::{self, Plan, Summary};
use dst::{run_seed, Options};

/// Seeds in the CI run: the issue asks for at least 1,000 with faults.
const CI_SEEDS: u64 = 1_000;

/// Steps per seed in CI: about 18 crashes each (files) or 11 takeovers (stream); the whole
/// file takes about 24 s on the project's 2-core VM at opt-level 1, both worlds and the eight
/// bug tests (22 s before the stream world).
const CI_STEPS: u64 = 2_000;

fn jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn plan(seeds: u64, bug: Option<Bug>, stop_at_first: bool) -> Plan {
    Plan {
        from: 0,
        seeds,
        jobs: jobs(),
        opts: Options {
            steps: CI_STEPS,
            keep_trace: false,
            ..Options::default()
        },
        bug: bug.map(|b| b.name().to_string()),
        stop_at_first,
        progress: false,
    }
}

fn run(plan: &Plan, bug: Option<Bug>) -> Summary {
    runner::run(plan, &|| dst::bugs::set(bug))
}

#[test]
fn a_thousand_seeds_with_faults_break_no_invariant() {
    let s = run(&plan(CI_SEEDS, None, false), None);
    println!("{}", s.text());
    assert_eq!(s.seeds, CI_SEEDS);
    assert_eq!(s.violations, 0, "{}", s.text());
    let t = &s.totals;
    // The run did inject what it claims: every kind of fault, and jumps in every state.
    for (what, n) in [
        ("crashes", t.crashes),
        ("torn writes", t.torn_writes),
        ("EIO", t.eio),
        ("ENOSPC", t.enospc),
        ("slow-disk spells", t.slow_spells),
        ("jumps committed", t.jumps_committed),
        ("jumps landed", t.jumps_landed),
        ("jumps voided", t.jumps_voided),
        ("jumps aborted", t.jumps_aborted),
        ("landings handed again", t.landings_rehanded),
        ("moves between instances", t.moves),
        ("escrows settled", t.escrows_settled),
        ("audits", t.audits),
        // The stream world (odd seeds): takeovers, zombies, and the stream's faults.
        ("stream-world seeds", t.stream_seeds),
        ("takeovers", t.takeovers),
        (
            "takeovers reading again after a refused lease record",
            t.fence_retries,
        ),
        ("zombie appends refused", t.zombie_appends_refused),
        ("zombies stopped", t.zombies_stopped),
        ("elections", t.elections),
        ("renewals unanswered in an election", t.renewals_unavailable),
        ("pauses", t.pauses),
        ("takeovers given up to a newer owner", t.takeovers_outranked),
        ("leases lost", t.leases_lost),
        ("acks lost", t.acks_lost),
        ("retries answered duplicate", t.duplicate_acks),
        ("acks delivered twice", t.acks_twice),
        // The cross-node world (seeds 2 mod 4): a crash at every step of a jump between
        // nodes, takeovers of either side, zombies, and the pair subjects' faults.
        ("cross-node seeds", t.xnode.seeds),
        ("cross-node jumps committed", t.xnode.jumps_committed),
        ("cross-node jumps landed", t.xnode.jumps_landed),
        (
            "crashes before a depart is durable",
            t.xnode.crash_depart_not_durable,
        ),
        (
            "crashes after a commit, before its publish",
            t.xnode.crash_committed_unpublished,
        ),
        (
            "crashes with a publish unanswered",
            t.xnode.crash_publish_unanswered,
        ),
        (
            "crashes after a depart is stored, before its owner is told",
            t.xnode.crash_depart_stored_untold,
        ),
        (
            "crashes after a jump is stored on its pair, before its owner is told",
            t.xnode.crash_publish_stored_unacked,
        ),
        (
            "crashes before a depart.done is durable",
            t.xnode.crash_done_not_durable,
        ),
        (
            "crashes with a jump queued at its destination",
            t.xnode.crash_dest_queued,
        ),
        (
            "crashes before an arrive is durable",
            t.xnode.crash_arrive_not_durable,
        ),
        (
            "crashes after a landing, before the snapshot",
            t.xnode.crash_dest_before_snapshot,
        ),
        ("cross-node takeovers", t.xnode.takeovers),
        ("takeovers from a snapshot", t.xnode.takeovers_from_snapshot),
        (
            "cross-node lease records refused, read again",
            t.xnode.fence_retries,
        ),
        ("cross-node claims given up", t.xnode.takeovers_outranked),
        ("snapshots put by zombies", t.xnode.zombie_snapshots),
        ("jumps republished at a takeover", t.xnode.republished),
        ("zombie writes refused", t.xnode.zombie_writes_refused),
        ("cross-node zombies stopped", t.xnode.zombies_stopped),
        ("leases lapsing under a running owner", t.xnode.lapses),
        ("publishes answered duplicate", t.xnode.publishes_duplicate),
        (
            "jumps stored twice (past the duplicate window)",
            t.xnode.duplicates_stored,
        ),
        ("redeliveries", t.xnode.redeliveries),
        (
            "deliveries dropped as seen or landed",
            t.xnode.deliveries_dropped,
        ),
        ("pair answers lost", t.xnode.answers_lost),
        ("pair answers delivered twice", t.xnode.answers_twice),
        // The regions world (seeds 6 mod 8): the link cut and healed, jumps across it after a
        // drop, the copies, regions lost and back, promotions and what they reconcile.
        ("regions-world seeds", t.xnode.regions.seeds),
        ("partitions", t.xnode.regions.partitions),
        ("heals", t.xnode.regions.heals),
        (
            "messages dropped on the link",
            t.xnode.regions.dropped_on_link,
        ),
        ("jumps across the link", t.xnode.regions.jumps_across),
        (
            "jumps across the link after a drop",
            t.xnode.regions.jumps_across_after_drop,
        ),
        ("messages copied", t.xnode.regions.messages_copied),
        ("regions lost", t.xnode.regions.regions_killed),
        ("regions back", t.xnode.regions.regions_back),
        ("promotions", t.xnode.regions.promotions),
        (
            "messages lost at a promotion",
            t.xnode.regions.messages_lost,
        ),
        (
            "departures reconciled at a promotion",
            t.xnode.regions.departures_reconciled,
        ),
        (
            "jumps republished at a promotion",
            t.xnode.regions.jumps_republished,
        ),
        (
            "acknowledged jumps lost as reported",
            t.xnode.regions.acked_jumps_lost,
        ),
        ("exact losses checked", t.xnode.regions.exact_losses_checked),
    ] {
        assert!(n > 0, "no {what} in {CI_SEEDS} seeds");
    }
}

#[test]
fn the_same_seed_gives_the_same_run_bit_for_bit() {
    let opts = Options {
        steps: CI_STEPS,
        ..Options::default()
    };
    // 2 and 123,458: the cross-node world; 6 and 123,462: with two regions.
    for seed in [0, 2, 6, 7, 123_456, 123_457, 123_458, 123_462] {
        let a = run_seed(seed, opts);
        // The second run on another thread: nothing of a seed depends on its thread.
        let b = std::thread::spawn(move || run_seed(seed, opts))
            .join()
            .unwrap();
        assert_eq!(a.digest, b.digest, "seed {seed}: digests differ");
        assert_eq!(a.trace, b.trace, "seed {seed}: traces differ");
        assert_eq!(a.counts.steps, b.counts.steps);
        assert!(a.failure.is_none(), "seed {seed}: {:?}", a.failure);
    }
    let other = run_seed(1, opts);
    assert_ne!(run_seed(0, opts).digest, other.digest, "two seeds, one run");
}

/// Runs seeds with `bug` on until one fails; it must within the CI-sized run.
fn caught(bug: Bug) {
    let s = run(&plan(CI_SEEDS, Some(bug), true), Some(bug));
    let Some(seed) = s.first_failing_seed else {
        panic!("{} was not caught in {CI_SEEDS} seeds", bug.name());
    };
    let f = &s.failures[0];
    println!(
        "{} caught after {} seeds (seed {seed}): {}\n  {}",
        bug.name(),
        seed + 1,
        f.what,
        f.replay
    );
}

#[test]
fn a_jump_landing_before_an_earlier_one_of_its_origin_is_caught() {
    caught(Bug::LandBeforeEarlier);
}

#[test]
fn a_jump_whose_prepare_was_lost_landing_is_caught() {
    caught(Bug::LostPrepareLands);
}

#[test]
fn an_escrow_settled_and_refunded_is_caught() {
    caught(Bug::SettleAndRefund);
}

#[test]
fn a_jump_landing_twice_is_caught() {
    caught(Bug::LandTwice);
}

#[test]
fn a_zombie_appending_without_fencing_is_caught() {
    caught(Bug::NoFencing);
}

#[test]
fn a_standby_serving_before_its_lease_records_is_caught() {
    caught(Bug::ServeBeforeLeaseRecord);
}

#[test]
fn an_election_taken_for_a_lost_lease_is_caught() {
    caught(Bug::ElectionIsDeath);
}

#[test]
fn a_takeover_fencing_over_a_newer_owner_is_caught() {
    caught(Bug::FenceOverNewerEpoch);
}

#[test]
fn a_jump_published_before_its_depart_is_durable_is_caught() {
    caught(Bug::PublishBeforeDurable);
}

#[test]
fn a_takeover_aborting_a_committed_jump_is_caught() {
    caught(Bug::AbortCommittedAtTakeover);
}

#[test]
fn a_landing_without_the_per_origin_dedup_is_caught() {
    caught(Bug::LandWithoutDedup);
}

#[test]
fn a_zombie_origin_publishing_unfenced_is_caught() {
    caught(Bug::ZombiePublishUnfenced);
}

#[test]
fn a_snapshot_recording_past_a_queued_jump_is_caught() {
    caught(Bug::SnapshotPastQueued);
}

#[test]
fn a_promotion_without_the_reconcile_is_caught() {
    caught(Bug::PromoteWithoutReconcile);
}

#[test]
fn a_promoted_epoch_only_above_the_copy_is_caught() {
    caught(Bug::PromoteEpochAboveCopy);
}
