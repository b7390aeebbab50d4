//! What the swarm counts while it runs (shared by every bot: atomics and two small mutexes),
//! the live progress line, and the summary at the end with the proof of learning: the mean
//! profit per trip of the learning bots in each tenth of the run, next to the baseline's (bots
//! that choose at random, in the same galaxy at the same time: the bots' own trading wears the
//! best routes down, so profit per trip over time alone would undersell the learning).
//!
//! Never talks to the galaxy; never decides anything for a bot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// Time windows of the profit-per-trip table.
pub const WINDOWS: usize = 10;
/// The progress line's "recent" mean covers trips that ended this long ago at most.
pub const RECENT_TRIPS_MS: u64 = 10_000;

/// A finished trip.
#[derive(Clone, Copy, Debug)]
struct Trip {
    /// When it ended, from the start of the run.
    at_ms: u64,
    profit_cr: i64,
    /// Made by a baseline bot (random choices).
    baseline: bool,
}

/// The swarm's counters.
pub struct Stats {
    started: Instant,
    /// Bots that have joined and whose last call reached the server.
    pub online: AtomicI64,
    pub joined: AtomicU64,
    pub jumps: AtomicU64,
    pub trades: AtomicU64,
    pub refuels: AtomicU64,
    /// Hull repairs bought.
    pub repairs: AtomicU64,
    /// Broke bots that joined again as a new pilot (`--start-over`).
    pub started_over: AtomicU64,
    pub attacks: AtomicU64,
    /// Lines written to the ack log.
    pub acks: AtomicU64,
    pub errors: AtomicU64,
    errors_by_code: Mutex<BTreeMap<String, u64>>,
    trips: Mutex<Vec<Trip>>,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            online: AtomicI64::new(0),
            joined: AtomicU64::new(0),
            jumps: AtomicU64::new(0),
            trades: AtomicU64::new(0),
            refuels: AtomicU64::new(0),
            repairs: AtomicU64::new(0),
            started_over: AtomicU64::new(0),
            attacks: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            errors_by_code: Mutex::new(BTreeMap::new()),
            trips: Mutex::new(Vec::new()),
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn error(&self, code: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .errors_by_code
            .lock()
            .expect("stats lock")
            .entry(code.to_string())
            .or_default() += 1;
    }

    /// A finished trip of a learning bot, or of a baseline bot.
    pub fn trip(&self, profit_cr: i64, baseline: bool) {
        let at_ms = self.elapsed_ms();
        self.trips.lock().expect("stats lock").push(Trip {
            at_ms,
            profit_cr,
            baseline,
        });
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters, for the progress line.
    pub fn counts(&self) -> Counts {
        Counts {
            at_ms: self.elapsed_ms(),
            online: self.online.load(Ordering::Relaxed).max(0) as u64,
            jumps: Self::get(&self.jumps),
            trades: Self::get(&self.trades),
            errors: Self::get(&self.errors),
        }
    }

    /// (trips, mean profit) of the learning bots over all their trips, and over their trips of
    /// the last [`RECENT_TRIPS_MS`]; the mean profit of the baseline's trips.
    pub fn profit(&self) -> ((u64, f64), (u64, f64), (u64, f64)) {
        let trips = self.trips.lock().expect("stats lock");
        let now = self.elapsed_ms();
        let learners = || trips.iter().filter(|t| !t.baseline);
        let all = mean(learners());
        let recent = mean(learners().filter(|t| t.at_ms + RECENT_TRIPS_MS >= now));
        let baseline = mean(trips.iter().filter(|t| t.baseline));
        (all, recent, baseline)
    }

    /// The summary of the run so far.
    pub fn summary(&self, bots: usize, baseline_bots: usize, seed: u64, server: &str) -> Summary {
        let duration_ms = self.elapsed_ms().max(1);
        let secs = duration_ms as f64 / 1000.0;
        let trips = self.trips.lock().expect("stats lock").clone();
        let of = |baseline: bool| trips.iter().filter(move |t| t.baseline == baseline);
        let windows: Vec<Window> = (0..WINDOWS as u64)
            .map(|w| {
                let from_ms = duration_ms * w / WINDOWS as u64;
                let to_ms = duration_ms * (w + 1) / WINDOWS as u64;
                let inside =
                    |t: &&Trip| t.at_ms >= from_ms && (t.at_ms < to_ms || w + 1 == WINDOWS as u64);
                let (n, m) = mean(of(false).filter(inside));
                let (bn, bm) = mean(of(true).filter(inside));
                Window {
                    from_s: from_ms as f64 / 1000.0,
                    to_s: to_ms as f64 / 1000.0,
                    trips: n,
                    mean_profit_cr: (n > 0).then_some(m),
                    baseline_trips: bn,
                    baseline_mean_profit_cr: (bn > 0).then_some(bm),
                }
            })
            .collect();
        let (trip_count, mean_profit) = mean(of(false));
        let (baseline_trips, baseline_mean) = mean(of(true));
        let half = duration_ms / 2;
        let (n1, m1) = mean(of(false).filter(|t| t.at_ms < half));
        let (n2, m2) = mean(of(false).filter(|t| t.at_ms >= half));
        let learning = (n1 > 0 && n2 > 0).then(|| Learning {
            first_half_mean_profit_cr: m1,
            second_half_mean_profit_cr: m2,
            baseline_mean_profit_cr: (baseline_trips > 0).then_some(baseline_mean),
            beats_baseline: (baseline_trips > 0).then_some(mean_profit > baseline_mean),
        });
        Summary {
            requests_retried: 0,
            server_switches: 0,
            outcome_unknown: 0,
            server: server.to_string(),
            seed,
            bots,
            baseline_bots,
            duration_s: secs,
            joined: Self::get(&self.joined),
            online_at_end: self.online.load(Ordering::Relaxed).max(0) as u64,
            jumps: Self::get(&self.jumps),
            jumps_per_s: Self::get(&self.jumps) as f64 / secs,
            trades: Self::get(&self.trades),
            trades_per_s: Self::get(&self.trades) as f64 / secs,
            refuels: Self::get(&self.refuels),
            repairs: Self::get(&self.repairs),
            started_over: Self::get(&self.started_over),
            attacks: Self::get(&self.attacks),
            acks: Self::get(&self.acks),
            errors: Self::get(&self.errors),
            errors_by_code: self.errors_by_code.lock().expect("stats lock").clone(),
            trips: trip_count,
            mean_profit_per_trip_cr: (trip_count > 0).then_some(mean_profit),
            baseline_trips,
            baseline_mean_profit_per_trip_cr: (baseline_trips > 0).then_some(baseline_mean),
            windows,
            learning,
        }
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

fn mean<'a>(trips: impl Iterator<Item = &'a Trip>) -> (u64, f64) {
    let (mut n, mut sum) = (0u64, 0i128);
    for t in trips {
        n += 1;
        sum += i128::from(t.profit_cr);
    }
    (n, if n == 0 { 0.0 } else { sum as f64 / n as f64 })
}

/// Counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub at_ms: u64,
    pub online: u64,
    pub jumps: u64,
    pub trades: u64,
    pub errors: u64,
}

/// The live progress line: rates since the previous line.
pub fn progress_line(stats: &Stats, bots: usize, now: Counts, before: Counts) -> String {
    let secs = (now.at_ms.saturating_sub(before.at_ms)).max(1) as f64 / 1000.0;
    let ((trips, all), (recent_trips, recent), (baseline_trips, baseline)) = stats.profit();
    let mut profit = if trips == 0 {
        "no trip done yet".to_string()
    } else if recent_trips == 0 {
        format!("profit/trip {all:+.1} cr")
    } else {
        format!("profit/trip {all:+.1} cr (last 10 s {recent:+.1})")
    };
    if baseline_trips > 0 {
        profit.push_str(&format!(", random bots {baseline:+.1}"));
    }
    format!(
        "swarm {:.0} s: {}/{bots} bots online, {:.1} jumps/s, {:.1} trades/s, {} errors, {} trips, {profit}",
        now.at_ms as f64 / 1000.0,
        now.online,
        (now.jumps - before.jumps) as f64 / secs,
        (now.trades - before.trades) as f64 / secs,
        now.errors,
        trips,
    )
}

/// One tenth of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
    /// Trips of the learning bots that ended in it, and their mean profit.
    pub trips: u64,
    pub mean_profit_cr: Option<f64>,
    /// The same for the baseline bots.
    pub baseline_trips: u64,
    pub baseline_mean_profit_cr: Option<f64>,
}

/// The learning bots' profit per trip early and late, and against the baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Learning {
    pub first_half_mean_profit_cr: f64,
    pub second_half_mean_profit_cr: f64,
    pub baseline_mean_profit_cr: Option<f64>,
    /// The learners' mean profit per trip is above the baseline's (None: no baseline).
    pub beats_baseline: Option<bool>,
}

/// What a run did (`--json` prints it as is).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub server: String,
    pub seed: u64,
    pub bots: usize,
    /// Of which choose at random (the baseline).
    pub baseline_bots: usize,
    pub duration_s: f64,
    pub joined: u64,
    pub online_at_end: u64,
    pub jumps: u64,
    pub jumps_per_s: f64,
    pub trades: u64,
    pub trades_per_s: f64,
    pub refuels: u64,
    pub repairs: u64,
    /// Broke bots that joined again as a new pilot (`--start-over`).
    pub started_over: u64,
    pub attacks: u64,
    pub acks: u64,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Trips of the learning bots, and their mean profit.
    pub trips: u64,
    pub mean_profit_per_trip_cr: Option<f64>,
    /// Trips of the baseline bots, and their mean profit.
    pub baseline_trips: u64,
    pub baseline_mean_profit_per_trip_cr: Option<f64>,
    /// Mean profit per trip in each tenth of the run: the proof of learning.
    pub windows: Vec<Window>,
    pub learning: Option<Learning>,
    /// Requests sent again to another node (or the same after a round) because the one asked
    /// could not take them: refused, standing by, shutting down (several `--server` URLs).
    pub requests_retried: u64,
    /// Times the bots moved on to the next server URL.
    pub server_switches: u64,
    /// Actions whose answer was lost (the bot re-read its status after each).
    pub outcome_unknown: u64,
}

impl Summary {
    /// The summary for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let errors = if self.errors_by_code.is_empty() {
            "no errors".to_string()
        } else {
            let mut by: Vec<_> = self.errors_by_code.iter().collect();
            by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let list: Vec<String> = by.iter().map(|(c, n)| format!("{c} {n}")).collect();
            format!("{} errors ({})", self.errors, list.join(", "))
        };
        out.push_str(&format!(
            "swarm: {} bots (seed {}; {} of them choose at random, as a baseline) for {:.1} s \
             against {}: {} joined, {} online at the end\n",
            self.bots,
            self.seed,
            self.baseline_bots,
            self.duration_s,
            self.server,
            self.joined,
            self.online_at_end
        ));
        out.push_str(&format!(
            "  {} jumps ({:.1}/s), {} trades ({:.1}/s), {} refuels, {} repairs, {} attacks; {errors}\n",
            self.jumps,
            self.jumps_per_s,
            self.trades,
            self.trades_per_s,
            self.refuels,
            self.repairs,
            self.attacks
        ));
        if self.started_over > 0 {
            out.push_str(&format!(
                "  {} broke bots started over as new pilots\n",
                self.started_over
            ));
        }
        if self.server.contains(',') {
            out.push_str(&format!(
                "  following the serving node: {} requests retried, {} switches of URL, {} \
                 actions of unknown outcome\n",
                self.requests_retried, self.server_switches, self.outcome_unknown
            ));
        }
        let mean = |m: Option<f64>| m.map_or("-".to_string(), |m| format!("{m:+.1} cr"));
        out.push_str(&format!(
            "  learning bots: {} trips, {} per trip; random bots: {} trips, {} per trip\n",
            self.trips,
            mean(self.mean_profit_per_trip_cr),
            self.baseline_trips,
            mean(self.baseline_mean_profit_per_trip_cr)
        ));
        out.push_str(
            "  profit per trip, by tenth of the run:       learning bots        random bots\n",
        );
        for w in &self.windows {
            out.push_str(&format!(
                "    {:>6.1}-{:>6.1} s  {:>6} trips {:>12}  {:>6} trips {:>12}\n",
                w.from_s,
                w.to_s,
                w.trips,
                mean(w.mean_profit_cr),
                w.baseline_trips,
                mean(w.baseline_mean_profit_cr)
            ));
        }
        if let Some(l) = &self.learning {
            out.push_str(&format!(
                "  learning: {:+.1} cr per trip in the first half, {:+.1} in the second ({:+.1})",
                l.first_half_mean_profit_cr,
                l.second_half_mean_profit_cr,
                l.second_half_mean_profit_cr - l.first_half_mean_profit_cr
            ));
            match (l.baseline_mean_profit_cr, self.mean_profit_per_trip_cr) {
                (Some(b), Some(m)) => out.push_str(&format!(
                    "; {:+.1} cr per trip over the random bots\n",
                    m - b
                )),
                _ => out.push('\n'),
            }
        }
        out
    }
}
