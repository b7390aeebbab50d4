//! The mesh's own counters for `GET /metrics`: jumps and trades acknowledged, snapshots
//! written, recovery time, and per system the durations of ticks and of commits (append to
//! durable) as histograms with fixed buckets.
//!
//! Owns atomics only: a shard's loop, its acker and the API's handlers add to them with one
//! relaxed `fetch_add` each, never a lock, never an allocation after creation. Never formats
//! anything (the `net` crate turns a [`MeshMetrics`] into Prometheus text at scrape time) and
//! never decides anything from what it counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sim::galaxy::SystemId;

/// The upper bounds of the duration histograms' buckets, in microseconds (Prometheus' `le`,
/// shown in seconds). From 50 us (an idle tick) to 5 s (a commit stuck behind a slow disk or a
/// JetStream election); a longer one counts in `+Inf` only.
pub const DURATION_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

const _: () = {
    let mut i = 1;
    while i < DURATION_BUCKETS_US.len() {
        assert!(
            DURATION_BUCKETS_US[i - 1] < DURATION_BUCKETS_US[i],
            "bucket bounds must grow"
        );
        i += 1;
    }
};

/// A histogram of durations: a count per bucket (not cumulative), the total count and the sum.
/// A reader may see a count and a sum from slightly different moments (Prometheus tolerates
/// that; every value only grows).
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// `buckets[i]`: observations at most `DURATION_BUCKETS_US[i]` and above the bound before.
    buckets: [AtomicU64; DURATION_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, count in this bucket alone), for each bound of
    /// [`DURATION_BUCKETS_US`]; what is above the last bound is `count` less their sum.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl DurationHistogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = DURATION_BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = DURATION_BUCKETS_US
            .iter()
            .zip(&self.buckets)
            .map(|(&bound_us, n)| (bound_us as f64 / 1e6, n.load(Ordering::Relaxed)))
            .collect();
        // A reader between a bucket's add and the count's sees the count behind: never report
        // fewer observations than the buckets hold.
        let in_buckets: u64 = buckets.iter().map(|(_, n)| n).sum();
        let count = self.count.load(Ordering::Relaxed).max(in_buckets);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// One system's figures: its primary's and its instances' together.
#[derive(Debug, Default)]
pub struct SystemMetrics {
    /// How long each tick took to run (the shard's own work, not its lateness).
    pub tick: DurationHistogram,
    /// From a record's append to its being durable, for every record the shards of this
    /// system wrote: what a player's action waits for before it is acknowledged.
    pub commit: DurationHistogram,
    /// Jumps out of this system acknowledged to a player (durable at their commit point).
    pub jumps: AtomicU64,
    /// Trades in this system acknowledged to a player.
    pub trades: AtomicU64,
}

/// The mesh's counters (one per mesh, shared by every shard through the context).
#[derive(Debug)]
pub struct MeshMetrics {
    /// By [`SystemId`] (the galaxy's systems, every one, whether it runs here or not).
    systems: Vec<SystemMetrics>,
    /// Snapshots written, and snapshots that failed (the log goes on; recovery reads more).
    pub snapshots: AtomicU64,
    pub snapshot_failures: AtomicU64,
    /// Recoveries done (the mesh's start, each unit a node of a spread galaxy took) and the
    /// time they took, in microseconds.
    pub recoveries: AtomicU64,
    pub recovery_us: AtomicU64,
}

impl MeshMetrics {
    pub fn new(systems: usize) -> MeshMetrics {
        assert!(systems > 0, "a galaxy has systems");
        MeshMetrics {
            systems: (0..systems).map(|_| SystemMetrics::default()).collect(),
            snapshots: AtomicU64::new(0),
            snapshot_failures: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
            recovery_us: AtomicU64::new(0),
        }
    }

    /// The figures of `system`.
    pub fn system(&self, system: SystemId) -> &SystemMetrics {
        let i = usize::from(system.0);
        assert!(
            i < self.systems.len(),
            "system {i} is not in the galaxy of {} systems",
            self.systems.len()
        );
        &self.systems[i]
    }

    /// Notes a recovery that took `took`.
    pub fn recovered(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.recovery_us.fetch_add(us, Ordering::Relaxed);
        self.recoveries.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_duration_in_its_bucket() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.00005, 2), "40 us and 50 us: at most 50 us");
        assert_eq!(s.buckets[1], (0.0001, 1), "51 us");
        let in_buckets: u64 = s.buckets.iter().map(|(_, n)| n).sum();
        assert_eq!(in_buckets, 3, "60 s is above every bound: in +Inf only");
        assert!((s.sum_seconds - 60.000141).abs() < 1e-9);
    }
}
