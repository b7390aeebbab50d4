//! Time dilation (EVE Online's answer to overload): when a shard cannot finish its ticks within
//! the budget (one tick period at the configured rate), it stretches its tick period so that
//! every tick still completes, whole and in order. The game clock of that system (its tick
//! count, which travel times, the economy and combat are measured in) then runs slower for
//! everyone in it alike, instead of some work being dropped or delayed more than other work.
//! When the load falls, the period shrinks back step by step.
//!
//! The factor is `budget / period`: 1.0 is real time, 0.5 is half speed, never below
//! [`DILATION_FLOOR`] (10%, as in EVE). Only the tick's own work is measured: requests are
//! answered as they come, whatever the period, so counting them would make the period feed on
//! itself.
//!
//! A pure controller: costs in, period and factor out. Never reads a clock, never sleeps; the
//! shard's loop measures and waits ([`super::shard`]).

/// The slowest a system's clock may run: a tenth of real time.
pub const DILATION_FLOOR: f64 = 0.1;

/// The share of the period a tick may take before the clock slows: the rest is left for the
/// requests the shard answers between ticks.
pub const TARGET_TICK_LOAD: f64 = 0.8;

/// How many recent ticks the controller averages.
pub const DILATION_WINDOW_TICKS: usize = 10;

/// How fast the clock speeds up again once the load falls: at most this much factor per tick
/// (from the floor to real time in 45 ticks), so that a load hovering at the edge does not make
/// the clock jerk. Slowing down is immediate: a tick that overruns now must get its time now.
pub const RECOVERY_PER_TICK: f64 = 0.02;

/// One shard's dilation controller.
#[derive(Clone, Debug)]
pub struct Dilation {
    budget_us: u64,
    /// The last tick costs, in microseconds (a ring of [`DILATION_WINDOW_TICKS`]).
    costs_us: [u64; DILATION_WINDOW_TICKS],
    next: usize,
    seen: usize,
    factor: f64,
}

impl Dilation {
    /// A controller for ticks of `budget_us` microseconds (one period at the configured rate).
    pub fn new(budget_us: u64) -> Dilation {
        assert!(budget_us > 0, "a tick budget is positive");
        Dilation {
            budget_us,
            costs_us: [0; DILATION_WINDOW_TICKS],
            next: 0,
            seen: 0,
            factor: 1.0,
        }
    }

    /// Notes the cost of the tick just run; returns the factor for the next period.
    pub fn observe(&mut self, cost_us: u64) -> f64 {
        self.costs_us[self.next] = cost_us;
        self.next = (self.next + 1) % DILATION_WINDOW_TICKS;
        self.seen = (self.seen + 1).min(DILATION_WINDOW_TICKS);
        let window = &self.costs_us[..self.seen];
        let mean_us = window.iter().sum::<u64>() / window.len() as u64;
        // The latest tick alone can demand a slowdown too: an overrun is never averaged away.
        let demand_us = mean_us.max(cost_us);
        self.factor = next_factor(self.factor, self.budget_us, demand_us);
        assert!(
            (DILATION_FLOOR..=1.0).contains(&self.factor),
            "dilation factor {} out of bounds",
            self.factor
        );
        self.factor
    }

    /// The clock's speed: 1.0 is real time.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The tick period the factor gives, in microseconds (the budget when not dilated).
    pub fn period_us(&self) -> u64 {
        (self.budget_us as f64 / self.factor).round() as u64
    }
}

/// The factor after `prev`, for ticks that need `demand_us` of work each and a budget of
/// `budget_us`: the speed at which a tick takes [`TARGET_TICK_LOAD`] of its period, at once if
/// that is slower than now, by at most [`RECOVERY_PER_TICK`] if faster; within
/// [`DILATION_FLOOR`] and 1.0.
pub fn next_factor(prev: f64, budget_us: u64, demand_us: u64) -> f64 {
    let wanted = if demand_us == 0 {
        1.0
    } else {
        TARGET_TICK_LOAD * budget_us as f64 / demand_us as f64
    };
    let wanted = wanted.clamp(DILATION_FLOOR, 1.0);
    let next = if wanted < prev {
        wanted
    } else {
        wanted.min(prev + RECOVERY_PER_TICK)
    };
    next.clamp(DILATION_FLOOR, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET_US: u64 = 100_000; // 10 Hz

    fn run(d: &mut Dilation, cost_us: u64, ticks: usize) -> f64 {
        for _ in 0..ticks {
            d.observe(cost_us);
        }
        d.factor()
    }

    #[test]
    fn light_ticks_run_in_real_time() {
        let mut d = Dilation::new(BUDGET_US);
        assert_eq!(run(&mut d, 10_000, 50), 1.0);
        assert_eq!(d.period_us(), BUDGET_US);
        assert_eq!(
            run(&mut d, 80_000, 50),
            1.0,
            "80% of the budget is still on time"
        );
    }

    #[test]
    fn overrunning_ticks_stretch_the_period_so_every_tick_completes() {
        let mut d = Dilation::new(BUDGET_US);
        // Each tick needs twice its budget: the clock runs at 40% (period 250 ms, 80% busy).
        let f = run(&mut d, 200_000, 20);
        assert!((f - 0.4).abs() < 1e-9, "{f}");
        assert_eq!(d.period_us(), 250_000);
        assert!(d.period_us() >= 200_000, "the period holds the whole tick");
    }

    #[test]
    fn slowing_down_is_immediate_on_one_overrun() {
        let mut d = Dilation::new(BUDGET_US);
        run(&mut d, 10_000, 20);
        let f = d.observe(400_000);
        assert!(
            (f - 0.2).abs() < 1e-9,
            "one tick of 4 budgets: 20% at once, got {f}"
        );
    }

    #[test]
    fn the_clock_never_runs_slower_than_the_floor() {
        let mut d = Dilation::new(BUDGET_US);
        assert_eq!(run(&mut d, 100 * BUDGET_US, 20), DILATION_FLOOR);
        assert_eq!(d.period_us(), 10 * BUDGET_US);
    }

    #[test]
    fn the_clock_recovers_step_by_step_as_the_load_falls() {
        let mut d = Dilation::new(BUDGET_US);
        run(&mut d, 100 * BUDGET_US, 20);
        let mut last = d.factor();
        let mut steps = 0;
        while d.factor() < 1.0 {
            let f = d.observe(1_000);
            assert!(
                f >= last && f - last <= RECOVERY_PER_TICK + 1e-9,
                "{last} -> {f}"
            );
            last = f;
            steps += 1;
            assert!(steps < 100, "recovers within 100 ticks");
        }
        assert!(steps >= 40, "no jump back to real time ({steps} ticks)");
    }

    #[test]
    fn next_factor_is_a_pure_function_of_its_inputs() {
        assert_eq!(next_factor(1.0, BUDGET_US, 0), 1.0);
        assert!((next_factor(0.5, BUDGET_US, 0) - 0.52).abs() < 1e-9);
        assert!((next_factor(1.0, BUDGET_US, 160_000) - 0.5).abs() < 1e-9);
        assert_eq!(next_factor(0.3, BUDGET_US, 1_000_000_000), DILATION_FLOOR);
    }
}
