//! Many seeds on many threads: an atomic counter hands out seed numbers, each thread runs its
//! seeds one after the other, and the totals are added up. Progress goes to stderr about once
//! a second; the summary is text or JSON.
//!
//! The only place that reads a clock (for seeds per second): never inside a seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::world::Counts;
use crate::{run_seed, Failure, Options};

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub from: u64,
    pub seeds: u64,
    pub jobs: usize,
    pub opts: Options,
    /// A bug switch to turn on in every seed (by its name), if any.
    pub bug: Option<String>,
    /// Stop at the first failure (to count the seeds a bug takes to be caught).
    pub stop_at_first: bool,
    pub progress: bool,
}

/// The summary of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub seeds: u64,
    pub from: u64,
    pub steps_per_seed: u64,
    pub jobs: usize,
    pub bug: Option<String>,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub seeds_per_second: f64,
    pub seeds_per_second_per_core: f64,
    pub cpu_ms_per_seed: f64,
    pub audit_every: u64,
    pub totals: Counts,
    pub violations: u64,
    /// The failing seeds (at most the first 20), lowest first.
    pub failures: Vec<FailedSeed>,
    /// The lowest failing seed, if any.
    pub first_failing_seed: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailedSeed {
    pub seed: u64,
    pub step: u64,
    pub what: String,
    pub player: Option<String>,
    pub replay: String,
    pub story: Vec<String>,
}

/// The command that replays `seed` alone with its trace.
pub fn replay_command(seed: u64, opts: &Options, bug: Option<&str>) -> String {
    let bug = bug.map(|b| format!(" --bug {b}")).unwrap_or_default();
    let world = match opts.worlds {
        crate::Worlds::All => String::new(),
        other => format!(" --world {}", format!("{other:?}").to_lowercase()),
    };
    let steps = opts.steps;
    format!(
        "cargo run --release -p mltrader-dst -- --seed {seed} --steps {steps}{world}{bug} --trace"
    )
}

/// Runs the plan; `set_bug` is called on each thread before its first seed.
pub fn run(plan: &Plan, set_bug: &(dyn Fn() + Sync)) -> Summary {
    let next = Arc::new(AtomicU64::new(plan.from));
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let totals = Mutex::new(Counts::default());
    let failures: Mutex<Vec<FailedSeed>> = Mutex::new(Vec::new());
    let end = plan.from + plan.seeds;
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.max(1) {
            scope.spawn(|| {
                set_bug();
                let mut mine = Counts::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let run = run_seed(seed, plan.opts);
                    add(&mut mine, &run.counts);
                    if let Some(f) = run.failure {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.lock().unwrap().push(failed_seed(plan, seed, f));
                        if plan.stop_at_first {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                add(&mut totals.lock().unwrap(), &mine);
            });
        }
        if plan.progress {
            let mut last = Instant::now();
            while done.load(Ordering::Relaxed) < plan.seeds && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() >= Duration::from_secs(1) {
                    last = Instant::now();
                    let d = done.load(Ordering::Relaxed);
                    let rate = d as f64 / started.elapsed().as_secs_f64();
                    eprintln!(
                        "{d}/{} seeds, {rate:.0} seeds/s, {} failed",
                        plan.seeds,
                        failed.load(Ordering::Relaxed)
                    );
                }
            }
        }
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let seeds = done.load(Ordering::Relaxed);
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|f| f.seed);
    let violations = failures.len() as u64;
    let first = failures.first().map(|f| f.seed);
    failures.truncate(20);
    Summary {
        seeds,
        from: plan.from,
        steps_per_seed: plan.opts.steps,
        jobs: plan.jobs,
        bug: plan.bug.clone(),
        wall_seconds: wall,
        cpu_seconds: cpu,
        seeds_per_second: seeds as f64 / wall.max(1e-9),
        seeds_per_second_per_core: seeds as f64 / cpu.max(1e-9),
        cpu_ms_per_seed: cpu * 1000.0 / (seeds.max(1) as f64),
        audit_every: plan.opts.audit_every,
        totals: totals.into_inner().unwrap(),
        violations,
        failures,
        first_failing_seed: first,
    }
}

fn failed_seed(plan: &Plan, seed: u64, f: Failure) -> FailedSeed {
    // Without a kept trace, run the seed again with it: the same seed gives the same run.
    let f = if !plan.opts.keep_trace {
        let opts = Options {
            keep_trace: true,
            ..plan.opts
        };
        run_seed(seed, opts).failure.unwrap_or(f)
    } else {
        f
    };
    FailedSeed {
        seed,
        step: f.step,
        what: f.what,
        player: f.player,
        replay: replay_command(seed, &plan.opts, plan.bug.as_deref()),
        story: f.story,
    }
}

/// Adds a seed's counts to a total.
pub fn add(total: &mut Counts, c: &Counts) {
    let pairs: [(&mut u64, u64); 40] = [
        (&mut total.travel_changes, c.travel_changes),
        (&mut total.steps, c.steps),
        (&mut total.requests, c.requests),
        (&mut total.acks, c.acks),
        (&mut total.crashes, c.crashes),
        (&mut total.torn_writes, c.torn_writes),
        (&mut total.eio, c.eio),
        (&mut total.enospc, c.enospc),
        (&mut total.slow_spells, c.slow_spells),
        (&mut total.recoveries, c.recoveries),
        (&mut total.jumps_committed, c.jumps_committed),
        (&mut total.jumps_landed, c.jumps_landed),
        (&mut total.jumps_voided, c.jumps_voided),
        (&mut total.jumps_aborted, c.jumps_aborted),
        (
            &mut total.jumps_completed_by_recovery,
            c.jumps_completed_by_recovery,
        ),
        (&mut total.landings_rehanded, c.landings_rehanded),
        (&mut total.splits, c.splits),
        (&mut total.moves, c.moves),
        (&mut total.escrows_settled, c.escrows_settled),
        (&mut total.escrows_refunded, c.escrows_refunded),
        (&mut total.audits, c.audits),
        (&mut total.stream_seeds, c.stream_seeds),
        (&mut total.takeovers, c.takeovers),
        (&mut total.claims, c.claims),
        (&mut total.fence_retries, c.fence_retries),
        (&mut total.lease_records, c.lease_records),
        (&mut total.takeovers_outranked, c.takeovers_outranked),
        (
            &mut total.records_read_at_takeover,
            c.records_read_at_takeover,
        ),
        (&mut total.zombie_appends_refused, c.zombie_appends_refused),
        (&mut total.zombies_stopped, c.zombies_stopped),
        (&mut total.appends_fenced, c.appends_fenced),
        (&mut total.acks_lost, c.acks_lost),
        (&mut total.duplicate_acks, c.duplicate_acks),
        (&mut total.acks_twice, c.acks_twice),
        (&mut total.publishes_stalled, c.publishes_stalled),
        (&mut total.elections, c.elections),
        (&mut total.pauses, c.pauses),
        (&mut total.renewals, c.renewals),
        (&mut total.renewals_unavailable, c.renewals_unavailable),
        (&mut total.leases_lost, c.leases_lost),
    ];
    for (t, v) in pairs {
        *t += v;
    }
    total.xnode.add(&c.xnode);
}

/// CPU time of the whole process so far (user + system), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own; RUSAGE_SELF is always valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    if r != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

impl Summary {
    /// The summary for a person.
    pub fn text(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "{} seeds from {} ({} steps each{}), {} jobs: {:.1} s wall, {:.1} s CPU\n\
             {:.1} seeds/s, {:.1} seeds/s/core, {:.2} ms CPU per seed; {} steps\n\
             faults: {} crashes, {} torn writes, {} EIO, {} ENOSPC, {} slow-disk spells; {} recoveries ({} with other travel times)\n\
             jumps: {} committed, {} landed, {} voided, {} aborted, {} completed by recovery, {} landings handed again\n\
             instances: {} splits, {} moves; escrows {} settled, {} refunded; {} requests, {} acknowledged; audits: {} (every {} seeds)\n\
             stream world: {} seeds; {} takeovers ({} claims, {} re-read after a refused lease record, {} given up to a newer owner, {} records read), {} lease records; zombies: {} appends refused, {} stopped; {} appends of a replaced node refused\n\
             stream faults: {} elections ({} publishes stalled, {} renewals unanswered of {} taken), {} pauses, {} leases lost; {} acks lost ({} retries answered duplicate), {} acks delivered twice\n\
             {}\n\
             violations: {}",
            self.seeds,
            self.from,
            self.steps_per_seed,
            self.bug.as_ref().map(|b| format!(", bug {b}")).unwrap_or_default(),
            self.jobs,
            self.wall_seconds,
            self.cpu_seconds,
            self.seeds_per_second,
            self.seeds_per_second_per_core,
            self.cpu_ms_per_seed,
            t.steps,
            t.crashes,
            t.torn_writes,
            t.eio,
            t.enospc,
            t.slow_spells,
            t.recoveries,
            t.travel_changes,
            t.jumps_committed,
            t.jumps_landed,
            t.jumps_voided,
            t.jumps_aborted,
            t.jumps_completed_by_recovery,
            t.landings_rehanded,
            t.splits,
            t.moves,
            t.escrows_settled,
            t.escrows_refunded,
            t.requests,
            t.acks,
            t.audits,
            self.audit_every,
            t.stream_seeds,
            t.takeovers,
            t.claims,
            t.fence_retries,
            t.takeovers_outranked,
            t.records_read_at_takeover,
            t.lease_records,
            t.zombie_appends_refused,
            t.zombies_stopped,
            t.appends_fenced,
            t.elections,
            t.publishes_stalled,
            t.renewals_unavailable,
            t.renewals,
            t.pauses,
            t.leases_lost,
            t.acks_lost,
            t.duplicate_acks,
            t.acks_twice,
            t.xnode.text(),
            self.violations,
        );
        for f in &self.failures {
            s.push_str(&format!(
                "\n\nFAILED seed {} at step {}: {}\n  replay: {}\n",
                f.seed, f.step, f.what, f.replay
            ));
            if let Some(p) = &f.player {
                s.push_str(&format!("  what happened to {p}:\n"));
            }
            for line in &f.story {
                s.push_str(&format!("    {line}\n"));
            }
        }
        s
    }
}
