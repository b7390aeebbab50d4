//! The table `bench postgres` prints: the settings of both sides, round 1's phases, every
//! round's jumps and the median ratio, and what each side acknowledges.
//!
//! Only formats a finished report; never measures.

use super::{Report, MLTRADER_ACKS, POSTGRES_ACKS, RATIO_COVERS, TARGET_RATIO, WARM_UP};
use crate::int;

pub(super) fn print_table(r: &Report) {
    let setting = |name: &str| {
        r.postgres_settings
            .get(name)
            .map_or("?", String::as_str)
            .to_string()
    };
    let load = |l: Option<f64>| l.map_or("?".to_string(), |l| format!("{l:.2}"));
    let ms = |p50: f64, p99: f64| format!("{p50:.2} / {p99:.2}");
    println!(
        "bench postgres: {} players jumping, on PostgreSQL {} (fsync={}, synchronous_commit={}, \
         full_page_writes={}, wal_sync_method={}) and on mltrader's embedded mesh of 36 systems",
        r.players,
        setting("server_version"),
        setting("fsync"),
        setting("synchronous_commit"),
        setting("full_page_writes"),
        setting("wal_sync_method"),
    );
    println!(
        "  {} s a phase after {} s of warm-up, {} cores (load average {} at start, {} at end); \
         raw write+fdatasync (100 B) on the same disk {} /s",
        r.seconds_per_phase,
        WARM_UP.as_secs(),
        r.cores,
        load(r.load_average_start),
        load(r.load_average_end),
        int(r.raw_fsyncs_per_s),
    );
    println!();
    println!("  durable jumps (each player: jump, land, jump again)");
    println!(
        "  {:<32} {:>10}  {:>20}",
        "", "jumps /s", "commit p50 / p99 ms"
    );
    for row in &r.postgres {
        let f = &row.jumps;
        println!(
            "  {:<32} {:>10}  {:>20}",
            format!("PostgreSQL, {} connections", row.connections),
            int(f.jumps_per_s),
            ms(f.commit_p50_ms, f.commit_p99_ms),
        );
    }
    let m = &r.mltrader;
    println!(
        "  {:<32} {:>10}  {:>20}",
        "mltrader",
        int(m.jumps_per_s),
        ms(m.commit_p50_ms, m.commit_p99_ms),
    );
    println!();
    println!(
        "  jump, land, one trade, jump again (trade latency: request to durable acknowledgement)"
    );
    println!(
        "  {:<32} {:>10}  {:>10}  {:>20}  {:>7}",
        "", "jumps /s", "trades /s", "trade p50 / p99 ms", "refused"
    );
    for row in &r.postgres {
        let f = &row.jumps_and_trades;
        println!(
            "  {:<32} {:>10}  {:>10}  {:>20}  {:>7}",
            format!("PostgreSQL, {} connections", row.connections),
            int(f.jumps_per_s),
            int(f.trades_per_s),
            ms(f.trade_p50_ms, f.trade_p99_ms),
            f.trades_refused,
        );
    }
    let m = &r.mltrader_jumps_and_trades;
    println!(
        "  {:<32} {:>10}  {:>10}  {:>20}  {:>7}",
        "mltrader",
        int(m.jumps_per_s),
        int(m.trades_per_s),
        ms(m.trade_p50_ms, m.trade_p99_ms),
        m.trades_refused,
    );
    println!(
        "  mltrader / PostgreSQL's best, trades/s: {:.1}x",
        r.trade_ratio
    );
    println!();
    println!(
        "  jumps, round by round (mltrader, then PostgreSQL at every connection count; the \
         tables above are round 1)"
    );
    println!(
        "  {:<8} {:>10}  {:>26}  {:>6}",
        "round", "mltrader", "PostgreSQL's best (conn.)", "ratio"
    );
    for (i, round) in r.rounds.iter().enumerate() {
        println!(
            "  {:<8} {:>10}  {:>26}  {:>5.1}x",
            i + 1,
            int(round.mltrader_jumps_per_s),
            format!(
                "{} ({})",
                int(round.best_postgres_jumps_per_s),
                round.best_postgres_connections
            ),
            round.ratio,
        );
    }
    println!(
        "  {:<8} {:>10}  {:>26}  {:>5.1}x",
        "median",
        int(r.mltrader_jumps_per_s),
        int(r.postgres_jumps_per_s),
        r.ratio,
    );
    println!();
    println!(
        "  mltrader / PostgreSQL's best, jumps/s, median of {} round(s): {:.1}x   target >= \
         {TARGET_RATIO:.0}x: {}",
        r.rounds.len(),
        r.ratio,
        if r.target_met { "met" } else { "NOT met" }
    );
    println!();
    println!("  The ratio is of {RATIO_COVERS}.");
    println!("  {MLTRADER_ACKS}.");
    println!(
        "  {POSTGRES_ACKS} (wal_sync_method={}).",
        setting("wal_sync_method")
    );
    println!(
        "  Latency is from the request to that acknowledgement. A landing on mltrader (travel time \
         0) is the destination's next request, its `arrive` record made durable with the \
         player's next action; on PostgreSQL it is the connection's next transaction, so there \
         the number of connections, not of players, sets the pace."
    );
}
