//! `mltrader economy --report`: the economy of a data directory, from its logs (live or
//! exported): credits created and destroyed by named source and sink, goods made and used,
//! how often each price sat at a floor or ceiling, and by bucket (a game hour by default) the
//! credits in circulation and the most profitable routes and how they shifted.
//!
//! A thin shell over `mesh::audit::economy`: the report rides on a full audit, whose verdict
//! and credit totals it prints too, so the two can be compared (they must agree). Only reads;
//! never takes the directory's lock, so it runs beside a live server (whose logs may then
//! disagree with each other for a moment: the audit's problems are printed as a warning).

use std::process::ExitCode;

use anyhow::ensure;
use serde::Serialize;

use super::common::{existing_datadir, galaxy_for};
use client::economy::EconomyArgs;
use mesh::audit::economy::{EconomyBook, EconomyReport, Window, TICKS_PER_GAME_HOUR};
use mesh::audit::{audit_watched, AuditReport};

/// What `--json` prints: the report, and the audit's figures to compare it with.
#[derive(Serialize)]
struct Output<'a> {
    report: &'a EconomyReport,
    check: CheckFigures,
}

/// `mltrader check`'s conservation figures on the same logs.
#[derive(Serialize)]
struct CheckFigures {
    ok: bool,
    problems: usize,
    credits_held: u128,
    credits_granted: u128,
    credits_spent: u128,
}

pub fn run(args: EconomyArgs) -> anyhow::Result<ExitCode> {
    let window = Window {
        from: args.from.unwrap_or(0),
        to: args.to,
        bucket_ticks: args.bucket_ticks.unwrap_or(TICKS_PER_GAME_HOUR),
    };
    ensure!(
        window.bucket_ticks > 0,
        "--bucket-ticks 0: give a width of at least one tick"
    );
    if let Some(to) = window.to {
        ensure!(
            to > window.from,
            "--from {} --to {to}: the window is empty; --to is the tick it ends before",
            window.from
        );
    }
    let datadir = existing_datadir(&args.data)?;
    let galaxy = galaxy_for(&datadir, None, false)?;
    let mut book = EconomyBook::new(&galaxy, window);
    let audit = audit_watched(&datadir, &galaxy, &mut book);
    let report = book.report();
    let check = CheckFigures {
        ok: audit.ok(),
        problems: audit.problems.len(),
        credits_held: audit.credits_held,
        credits_granted: audit.credits_granted,
        credits_spent: audit.credits_spent,
    };
    if args.opts.json {
        let out = Output {
            report: &report,
            check,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!(
            "{}",
            human(&report, &audit, &args.data.display().to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as text, a few screens at most.
fn human(r: &EconomyReport, audit: &AuditReport, data: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let w = &r.window;
    let to = w.to.map(|t| t.to_string()).unwrap_or_else(|| "end".into());
    let _ = writeln!(
        out,
        "economy of {data}, ticks {}..{to} (last tick {}), buckets of {} ticks",
        w.from, r.last_tick, w.bucket_ticks
    );
    let change = r.circulation_at_end_cr - r.circulation_at_start_cr;
    let _ = writeln!(
        out,
        "credits in circulation: {} at start, {} at end ({:+}, {:+.2}%)",
        r.circulation_at_start_cr,
        r.circulation_at_end_cr,
        change,
        percent(change, r.circulation_at_start_cr)
    );
    let list = |m: &std::collections::BTreeMap<String, u128>| {
        if m.is_empty() {
            return "none".to_string();
        }
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "  created {}: {}",
        r.flows.created(),
        list(&r.flows.credits_created)
    );
    let _ = writeln!(
        out,
        "  destroyed {}: {}",
        r.flows.destroyed(),
        list(&r.flows.credits_destroyed)
    );
    let _ = writeln!(
        out,
        "  traded: players sold {} cr to markets and bought {} cr from them ({} trades)",
        r.flows.sold_to_markets_cr, r.flows.bought_from_markets_cr, r.flows.trades
    );
    let _ = writeln!(out, "goods made and destroyed, by rule:");
    for (rule, per_good) in &r.flows.goods_made {
        let _ = writeln!(out, "  + {rule}: {}", list(per_good));
    }
    for (rule, per_good) in &r.flows.goods_destroyed {
        let _ = writeln!(out, "  - {rule}: {}", list(per_good));
    }
    let _ = writeln!(out, "prices at a floor / ceiling (share of samples):");
    for g in &r.goods {
        let _ = writeln!(
            out,
            "  {:<12} {:>5.1}% / {:>5.1}%  ({} samples)",
            g.good,
            g.at_floor_permille as f64 / 10.0,
            g.at_ceiling_permille as f64 / 10.0,
            g.samples
        );
    }
    let _ = writeln!(
        out,
        "bucket  ticks            created  destroyed  circulation  profitable  best kept  best route"
    );
    for (i, b) in r.buckets.iter().enumerate() {
        let best = b
            .best
            .first()
            .map(|r| format!("{} {}->{} +{} cr/unit", r.good, r.from, r.to, r.margin_cr))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{i:>6}  {:>7}..{:<7} {:>8}  {:>9}  {:>11}  {:>10}  {:>4}/{:<4}  {best}",
            b.from,
            b.to,
            b.flows.created(),
            b.flows.destroyed(),
            b.circulation_cr,
            b.profitable_routes,
            b.best_kept,
            b.best.len()
        );
    }
    let verdict = if audit.ok() {
        "ok".to_string()
    } else {
        format!(
            "{} problems (a live directory's logs may disagree for a moment; `mltrader check` \
             on a stopped one says more)",
            audit.problems.len()
        )
    };
    let _ = writeln!(
        out,
        "check: {verdict}; credits {} held = {} granted - {} spent",
        audit.credits_held, audit.credits_granted, audit.credits_spent
    );
    out
}

/// `part` in percent of `whole` (0 for a whole of 0).
fn percent(part: i128, whole: i128) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
