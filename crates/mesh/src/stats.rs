//! Tick-time figures of a shard: the durations of its last ticks, and their percentiles.
//!
//! Owns a bounded ring of durations; never allocates after creation.

use std::time::Duration;

/// The last `capacity` tick durations, in microseconds.
pub struct TickTimes {
    ring: Vec<u32>,
    next: usize,
    filled: bool,
}

impl TickTimes {
    pub fn new(capacity: usize) -> TickTimes {
        assert!(capacity > 0, "a tick window holds at least one tick");
        TickTimes {
            ring: vec![0; capacity],
            next: 0,
            filled: false,
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.ring[self.next] = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.next += 1;
        if self.next == self.ring.len() {
            self.next = 0;
            self.filled = true;
        }
    }

    /// The `p`-th percentile (0..=100) of the window, in microseconds (0 when empty).
    pub fn percentile_us(&self, p: f64) -> u32 {
        let len = if self.filled {
            self.ring.len()
        } else {
            self.next
        };
        if len == 0 {
            return 0;
        }
        let mut v = self.ring[..len].to_vec();
        v.sort_unstable();
        let rank = ((p / 100.0) * (len - 1) as f64).round() as usize;
        v[rank.min(len - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_the_window_only() {
        let mut t = TickTimes::new(4);
        assert_eq!(t.percentile_us(99.0), 0);
        for us in [100, 1, 2, 3, 4] {
            t.push(Duration::from_micros(us));
        }
        assert_eq!(t.percentile_us(100.0), 4, "the 100 us tick fell out");
        assert_eq!(t.percentile_us(0.0), 1);
    }
}
