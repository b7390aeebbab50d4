//! The jumps comparison with PostgreSQL, repeated: a round measures mltrader's jumps and then
//! PostgreSQL's at every connection count, back to back, and the figure reported is the median
//! of the rounds' ratios. Both sides depend on the same disk, whose fsync rate moves by 2x from
//! one minute to the next; one round decided by a hiccup on either side would say little.
//!
//! Owns the arithmetic over the rounds' figures; never measures and never prints.

use serde::Serialize;

/// PostgreSQL's jumps/s with one connection count, in one round.
#[derive(Clone, Debug, Serialize)]
pub struct PgJumps {
    pub connections: usize,
    pub jumps_per_s: f64,
}

/// One round: mltrader, then PostgreSQL at every connection count.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    pub mltrader_jumps_per_s: f64,
    /// In the order measured.
    pub postgres: Vec<PgJumps>,
    /// The connection count at which PostgreSQL made the most jumps/s this round: the baseline.
    pub best_postgres_connections: usize,
    pub best_postgres_jumps_per_s: f64,
    /// mltrader / PostgreSQL's best, this round.
    pub ratio: f64,
}

impl Round {
    /// A round from its figures; PostgreSQL's best count is its baseline. `postgres` must not
    /// be empty.
    pub fn new(mltrader_jumps_per_s: f64, postgres: Vec<PgJumps>) -> Round {
        let best = postgres
            .iter()
            .max_by(|a, b| a.jumps_per_s.total_cmp(&b.jumps_per_s))
            .cloned()
            .expect("a round measures at least one connection count");
        Round {
            mltrader_jumps_per_s,
            ratio: mltrader_jumps_per_s / best.jumps_per_s.max(f64::MIN_POSITIVE),
            best_postgres_connections: best.connections,
            best_postgres_jumps_per_s: best.jumps_per_s,
            postgres,
        }
    }
}

/// The medians over all rounds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Medians {
    pub ratio: f64,
    pub mltrader_jumps_per_s: f64,
    pub postgres_best_jumps_per_s: f64,
}

/// The medians of `rounds` (of each round's ratio, not the ratio of medians: each ratio pairs
/// figures measured in the same minute). `rounds` must not be empty.
pub fn medians(rounds: &[Round]) -> Medians {
    assert!(!rounds.is_empty(), "at least one round");
    let of = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    Medians {
        ratio: of(|r| r.ratio),
        mltrader_jumps_per_s: of(|r| r.mltrader_jumps_per_s),
        postgres_best_jumps_per_s: of(|r| r.best_postgres_jumps_per_s),
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(counts: &[(usize, f64)]) -> Vec<PgJumps> {
        counts
            .iter()
            .map(|&(connections, jumps_per_s)| PgJumps {
                connections,
                jumps_per_s,
            })
            .collect()
    }

    #[test]
    fn a_round_compares_against_postgres_best_count() {
        let r = Round::new(
            40_000.0,
            pg(&[(16, 4_000.0), (64, 5_000.0), (256, 2_000.0)]),
        );
        assert_eq!(r.best_postgres_connections, 64);
        assert_eq!(r.best_postgres_jumps_per_s, 5_000.0);
        assert_eq!(r.ratio, 8.0);
    }

    #[test]
    fn the_ratio_is_the_median_of_the_rounds_ratios() {
        let rounds = vec![
            Round::new(40_000.0, pg(&[(16, 4_000.0)])), // 10x
            Round::new(30_000.0, pg(&[(16, 5_000.0)])), // 6x
            Round::new(60_000.0, pg(&[(16, 4_000.0)])), // 15x
        ];
        let m = medians(&rounds);
        assert_eq!(m.ratio, 10.0);
        assert_eq!(m.mltrader_jumps_per_s, 40_000.0);
        assert_eq!(m.postgres_best_jumps_per_s, 4_000.0);
        // Two rounds: the mean of the middle two.
        assert_eq!(medians(&rounds[..2]).ratio, 8.0);
        assert_eq!(medians(&rounds[..1]).ratio, 10.0);
    }
}
