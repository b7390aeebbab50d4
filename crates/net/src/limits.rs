//! Rate limits: a token bucket per key (an access token, or a client IP for joins), so that
//! one noisy client slows down alone and the galaxy keeps serving everyone else.
//!
//! Every rate and cap here has its reason beside it, and the way they relate is checked when the
//! crate compiles (the `const _` lines below the constants).
//!
//! Owns the buckets and the arithmetic of refills; never decides who a request is for (the
//! caller passes the key) and never sleeps: an empty bucket answers "retry after" at once.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests per second one access token may make, on average.
pub const TOKEN_RATE_PER_S: f64 = 50.0;
/// Requests one access token may make at once after a quiet spell.
pub const TOKEN_BURST: f64 = 100.0;
/// Joins per second one client IP may make, on average.
pub const JOIN_RATE_PER_S: f64 = 1.0;
/// Joins one client IP may make at once.
pub const JOIN_BURST: f64 = 10.0;
/// Requests per second one client IP may make to the routes without a token (the map, routes,
/// figures: each asks every shard), on average.
pub const PUBLIC_RATE_PER_S: f64 = 20.0;
/// Requests without a token one client IP may make at once.
pub const PUBLIC_BURST: f64 = 40.0;
/// Requests one player may hold open waiting for a landing at once.
pub const MAX_WAITS_PER_PLAYER: usize = 4;
/// Keys (IPs) a limiter tracks before it forgets the idle ones; past this, even after
/// forgetting, new keys share one overflow bucket (so memory stays bounded under a flood of
/// addresses).
pub const MAX_TRACKED_KEYS: usize = 65_536;
/// Buckets are spread over this many locks, so that concurrent requests rarely wait on each
/// other (std mutexes: held for a map lookup only, never across an await).
const SHARDS: usize = 16;

// How the limits relate, checked at compile time.

// A bucket holds at least one second of its rate: a client at the sustained rate never waits.
const _: () = assert!(TOKEN_BURST >= TOKEN_RATE_PER_S);
const _: () = assert!(JOIN_BURST >= JOIN_RATE_PER_S);
const _: () = assert!(PUBLIC_BURST >= PUBLIC_RATE_PER_S);
// Joins are rarer than a player's requests, and the public routes (each asks every shard) are
// held tighter than a token's.
const _: () =
    assert!(JOIN_RATE_PER_S <= PUBLIC_RATE_PER_S && PUBLIC_RATE_PER_S <= TOKEN_RATE_PER_S);
// The tracked keys spread evenly over the locks, several to each.
const _: () = assert!(MAX_TRACKED_KEYS.is_multiple_of(SHARDS) && MAX_TRACKED_KEYS / SHARDS >= 1024);
// A player waits for a landing on at most a few requests, never on more than their token's burst.
const _: () = assert!(MAX_WAITS_PER_PLAYER >= 1 && (MAX_WAITS_PER_PLAYER as f64) <= TOKEN_BURST);

/// A sustained rate and a burst.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_s: f64,
    pub burst: f64,
}

impl Rate {
    /// Parses `RATE/BURST` (`50/100`); `off` means no limit (`None`).
    pub fn parse(text: &str) -> Result<Option<Rate>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (rate, burst) = text
            .split_once('/')
            .ok_or_else(|| format!("expected RATE/BURST (like 50/100) or off, not {text:?}"))?;
        let num = |s: &str| -> Result<f64, String> {
            match s.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 && v <= 1e9 => Ok(v),
                _ => Err(format!(
                    "{s:?} is not a number of requests between 0 and 1e9"
                )),
            }
        };
        let rate = Rate {
            per_s: num(rate)?,
            burst: num(burst)?,
        };
        if rate.burst < 1.0 {
            return Err("the burst must be at least 1".into());
        }
        Ok(Some(rate))
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_s).min(rate.burst);
        self.updated = now;
    }

    /// Takes one token, or says how long until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate.per_s))
        }
    }
}

/// Token buckets by key. `None` rate: every request passes.
pub struct Limiter<K> {
    rate: Option<Rate>,
    max_keys_per_shard: usize,
    shards: Vec<Mutex<Shard<K>>>,
    hasher: std::collections::hash_map::RandomState,
    /// Requests refused since the start (`GET /metrics`: `mltrader_rate_limited_total`).
    refused: AtomicU64,
}

struct Shard<K> {
    buckets: HashMap<K, Bucket>,
    /// Shared by the keys that came when the shard was full of busy keys.
    overflow: Option<Bucket>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Option<Rate>, max_keys: usize) -> Limiter<K> {
        Limiter {
            rate,
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        overflow: None,
                    })
                })
                .collect(),
            hasher: Default::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// Requests this limiter refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Counts one request of `key`: `Err(wait)` when its bucket is empty.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let checked = self.check_at(key, Instant::now());
        if checked.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        checked
    }

    /// [`Limiter::check`] at a given time (for tests).
    pub fn check_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = self.shards[index].lock().unwrap_or_else(|e| e.into_inner());
        let fresh = Bucket {
            tokens: rate.burst,
            updated: now,
        };
        if let Some(b) = shard.buckets.get_mut(key) {
            return b.take(rate, now);
        }
        if shard.buckets.len() >= self.max_keys_per_shard {
            // Forget the buckets that refilled completely: they hold no information.
            shard.buckets.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < rate.burst
            });
        }
        if shard.buckets.len() >= self.max_keys_per_shard {
            return shard.overflow.get_or_insert(fresh).take(rate, now);
        }
        shard
            .buckets
            .entry(key.clone())
            .or_insert(fresh)
            .take(rate, now)
    }

    /// Keys tracked now (for tests and figures).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).buckets.len())
            .sum()
    }
}

/// How many requests of each player are open at once (for the long ones: landing waits).
#[derive(Default)]
pub struct Open {
    /// std mutex: held for a map operation only, never across an await.
    by_player: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open request; dropping it closes it.
pub struct OpenGuard {
    name: String,
    by_player: Arc<Mutex<HashMap<String, usize>>>,
}

impl Open {
    /// Opens a request of `name`, unless `max` are open already.
    pub fn enter(&self, name: &str, max: usize) -> Option<OpenGuard> {
        let mut map = self.by_player.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(name.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(OpenGuard {
            name: name.to_string(),
            by_player: self.by_player.clone(),
        })
    }

    /// Players with a request open (for tests).
    pub fn players(&self) -> usize {
        self.by_player
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut map = self.by_player.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_one_request_per_refill() {
        let l = Limiter::new(Rate::parse("10/3").unwrap(), 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at(&"a", t0).is_ok());
        }
        let wait = l.check_at(&"a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        // Another key has its own bucket.
        assert!(l.check_at(&"b", t0).is_ok());
        assert!(l.check_at(&"a", t0 + Duration::from_millis(100)).is_ok());
        assert!(l.check_at(&"a", t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn open_requests_are_counted_per_player_and_released() {
        let open = Open::default();
        let a = open.enter("ann", 2).unwrap();
        let b = open.enter("ann", 2).unwrap();
        assert!(open.enter("ann", 2).is_none());
        assert!(open.enter("bob", 2).is_some());
        drop(a);
        let c = open.enter("ann", 2).unwrap();
        drop((b, c));
        assert_eq!(open.players(), 0);
    }

    #[test]
    fn off_means_unlimited_and_bad_rates_are_refused() {
        assert_eq!(Rate::parse("off").unwrap(), None);
        let l: Limiter<u32> = Limiter::new(None, 1);
        for _ in 0..1000 {
            assert!(l.check(&1).is_ok());
        }
        for bad in ["", "5", "-1/5", "5/0", "x/y", "nan/4", "5/0.5"] {
            assert!(Rate::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let l = Limiter::new(Rate::parse("1/2").unwrap(), 64);
        let t0 = Instant::now();
        for k in 0..100_000u32 {
            let _ = l.check_at(&k, t0);
        }
        assert!(l.tracked() <= 64 + SHARDS, "tracked {}", l.tracked());
        // Idle keys are forgotten once their buckets refilled, and new keys get buckets.
        let before = l.tracked();
        let later = t0 + Duration::from_secs(10);
        assert!(l.check_at(&200_000, later).is_ok());
        assert!(l.tracked() < before);
    }
}
