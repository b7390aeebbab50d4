//! The economy's page (`GET /economy`) and its JSON form (`GET /v1/economy/report`): credits
//! created and destroyed by named source and sink, goods made and used, price history per good
//! and system, the most profitable routes and how they shifted, over a window of ticks the
//! operator picks with query parameters (`from`, `to`, `bucket_ticks`, as `mltrader economy
//! --report` takes them; `system` and `good` pick the price history), all from one
//! [`crate::economy_view`] report.
//!
//! The page is plain HTML with charts drawn here as SVG ([`crate::charts`]): no script, no
//! build step, every picker a link. It is well-formed XML (so tests read it with an XML
//! parser). Read-only and public like the map, and turned off with it (`serve --no-map`).
//! Never computes a figure of the economy itself: every number comes from the report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::page::map_on;
use super::{Params, Public, Shared};
use crate::charts::{at_most_series, line_chart, Series};
use crate::economy_view::{Built, EconomyError, REPORT_CACHE_MS};
use crate::error::ApiError;
use mesh::audit::economy::{Bucket, EconomyReport, Route, Window, TICKS_PER_GAME_HOUR};

/// The largest tick a window may name (about 3,500 years of game time at 10 Hz): bounds the
/// arithmetic of buckets.
pub const MAX_WINDOW_TICK: u64 = 1 << 40;
/// The narrowest bucket of a window open at its end, in ticks: without an end the book cannot
/// widen its buckets to [`mesh::audit::economy::MAX_BUCKETS`], so a request of 1-tick buckets
/// over a long history would build one bucket per tick.
pub const MIN_OPEN_BUCKET_TICKS: u64 = 60;

/// The window's query parameters, as the CLI's flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub bucket_ticks: Option<u64>,
}

/// The page's: the window, and the price history to draw.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub bucket_ticks: Option<u64>,
    /// A system's slug (as the report names it).
    pub system: Option<String>,
    pub good: Option<String>,
}

/// The window a query asks for, or 400 `bad_query` saying what is wrong with it. A window that
/// ends before it starts (`to <= from`) is empty, not wrong: its report says nothing flowed
/// ([`crate::economy_view::EconomyView::report`]). A window open at its end gets buckets of at
/// least [`MIN_OPEN_BUCKET_TICKS`] (the report's window says the width used).
fn window_of(from: Option<u64>, to: Option<u64>, bucket: Option<u64>) -> Result<Window, ApiError> {
    let bad = |m: String| ApiError::bad_request("bad_query", m);
    let from = from.unwrap_or(0);
    let bucket_ticks = bucket.unwrap_or(TICKS_PER_GAME_HOUR);
    for (name, v) in [
        ("from", Some(from)),
        ("to", to),
        ("bucket_ticks", Some(bucket_ticks)),
    ] {
        if v.is_some_and(|v| v > MAX_WINDOW_TICK) {
            return Err(bad(format!("{name} is at most {MAX_WINDOW_TICK}")));
        }
    }
    if bucket_ticks == 0 {
        return Err(bad(
            "bucket_ticks 0: give a width of at least one tick".into()
        ));
    }
    let bucket_ticks = match to {
        None => bucket_ticks.max(MIN_OPEN_BUCKET_TICKS),
        Some(_) => bucket_ticks,
    };
    Ok(Window {
        from,
        to,
        bucket_ticks,
    })
}

/// `GET /v1/economy/report`: the report and `mltrader check`'s figures on the same logs, as
/// `mltrader economy --report --json` prints them (and how long the build took).
pub async fn report(
    State(state): State<Shared>,
    _: Public,
    q: Result<Params<ReportQuery>, ApiError>,
) -> Result<Response, ApiError> {
    map_on(&state)?;
    let Params(q) = q?;
    let window = window_of(q.from, q.to, q.bucket_ticks)?;
    let built = state.economy.report(window).await.map_err(unavailable)?;
    Ok(Json(&*built).into_response())
}

fn unavailable(e: EconomyError) -> ApiError {
    match e {
        EconomyError::LogsNotOnFiles => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            e.to_string(),
        ),
        EconomyError::Failed(_) => ApiError::internal(e.to_string()),
    }
}

/// `GET /economy`: the page.
pub async fn page(
    State(state): State<Shared>,
    _: Public,
    q: Result<Params<PageQuery>, ApiError>,
) -> Result<Response, ApiError> {
    map_on(&state)?;
    let Params(q) = q?;
    let window = window_of(q.from, q.to, q.bucket_ticks)?;
    let html = match state.economy.report(window).await {
        Ok(built) => render(&built, &q).map_err(|e| ApiError::internal(e.to_string()))?,
        Err(e @ EconomyError::LogsNotOnFiles) => no_report(&e.to_string()),
        Err(e) => return Err(unavailable(e)),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response())
}

/// `s` with the five characters XML gives a meaning to escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px}\
td.n{text-align:right;font-variant-numeric:tabular-nums}svg{max-width:100%;height:auto}\
.warn{color:#a40}nav a{margin-right:.6em}a.on{font-weight:bold}";

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <p><a href=\"/\">the galaxy map</a> · <a href=\"/v1/economy/report\">this report as JSON</a></p>\
         <h1>{}</h1>",
        esc(title),
        esc(title)
    );
}

/// The page of a server whose report cannot be built here.
fn no_report(why: &str) -> String {
    let mut out = String::new();
    head(&mut out, "The economy");
    let _ = write!(
        out,
        "<p class=\"warn\" id=\"unavailable\">{}</p></body></html>",
        esc(why)
    );
    out
}

/// The query string of the page at `window` and a price history.
fn link(w: &Window, system: &str, good: &str) -> String {
    let mut q = format!(
        "/economy?from={}&amp;bucket_ticks={}",
        w.from, w.bucket_ticks
    );
    if let Some(to) = w.to {
        let _ = write!(q, "&amp;to={to}");
    }
    let _ = write!(q, "&amp;system={}&amp;good={}", esc(system), esc(good));
    q
}

/// A table of named amounts with their total: `id` on the table, `{id}-total` on the total.
fn amounts_table(out: &mut String, id: &str, head: &str, rows: &BTreeMap<String, u128>) {
    let _ = write!(
        out,
        "<table id=\"{id}\"><tr><th>{}</th><th>credits</th></tr>",
        esc(head)
    );
    for (name, n) in rows {
        let _ = write!(
            out,
            "<tr class=\"rule\"><td>{}</td><td class=\"n\">{n}</td></tr>",
            esc(name)
        );
    }
    let total: u128 = rows.values().sum();
    let _ = write!(
        out,
        "<tr><th>total</th><td class=\"n\" id=\"{id}-total\">{total}</td></tr></table>"
    );
}

/// Units by rule then good, as a table: `id` on it.
fn units_table(
    out: &mut String,
    id: &str,
    head: &str,
    rows: &BTreeMap<String, BTreeMap<String, u128>>,
) {
    let _ = write!(
        out,
        "<table id=\"{id}\"><tr><th>{}</th><th>units</th><th>by good</th></tr>",
        esc(head)
    );
    for (rule, goods) in rows {
        let total: u128 = goods.values().sum();
        let by: Vec<String> = goods.iter().map(|(g, n)| format!("{g} {n}")).collect();
        let _ = write!(
            out,
            "<tr class=\"rule\"><td>{}</td><td class=\"n\">{total}</td><td>{}</td></tr>",
            esc(rule),
            esc(&by.join(", "))
        );
    }
    out.push_str("</table>");
}

/// One series per rule of `pick(bucket)`, over the buckets (x: each bucket's first tick).
fn per_rule<F>(buckets: &[Bucket], pick: F) -> Vec<Series>
where
    F: Fn(&Bucket) -> BTreeMap<String, f64>,
{
    let per_bucket: Vec<(u64, BTreeMap<String, f64>)> =
        buckets.iter().map(|b| (b.from, pick(b))).collect();
    let names: BTreeSet<String> = per_bucket
        .iter()
        .flat_map(|(_, m)| m.keys().cloned())
        .collect();
    let series = names
        .into_iter()
        .map(|name| Series {
            points: per_bucket
                .iter()
                .map(|(x, m)| (*x, m.get(&name).copied().unwrap_or(0.0)))
                .collect(),
            name,
        })
        .collect();
    at_most_series(series)
}

fn routes_table(out: &mut String, id: &str, routes: &[Route]) {
    let _ = write!(
        out,
        "<table id=\"{id}\"><tr><th>buy at</th><th>sell at</th><th>good</th><th>margin per unit (cr)</th></tr>"
    );
    for r in routes {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&r.from),
            esc(&r.to),
            esc(&r.good),
            r.margin_cr
        );
    }
    out.push_str("</table>");
}

/// The page of a report.
fn render(built: &Built, q: &PageQuery) -> Result<String, crate::charts::ChartError> {
    let r: &EconomyReport = &built.report;
    let w = &r.window;
    let f = &r.flows;
    let mut out = String::new();
    head(&mut out, "The economy");
    let to =
        w.to.map_or("the end of the logs".to_string(), |t| format!("tick {t}"));
    let _ = write!(
        out,
        "<p id=\"window\">Ticks {} to {to} (the last tick in the logs: {}), in buckets of {} ticks \
         ({} game hour = {TICKS_PER_GAME_HOUR} ticks). Read from the logs in {} ms; kept {} s.</p>",
        w.from,
        r.last_tick,
        w.bucket_ticks,
        if w.bucket_ticks == TICKS_PER_GAME_HOUR { "one" } else { "a" },
        built.build_ms,
        REPORT_CACHE_MS / 1_000
    );
    // The window picker: a plain form, its fields the query's.
    let _ = write!(
        out,
        "<form method=\"get\" action=\"/economy\">from tick <input name=\"from\" value=\"{}\" size=\"8\"/> \
         to tick <input name=\"to\" value=\"{}\" size=\"8\"/> bucket ticks \
         <input name=\"bucket_ticks\" value=\"{}\" size=\"6\"/> <button>show</button></form>",
        w.from,
        w.to.map(|t| t.to_string()).unwrap_or_default(),
        w.bucket_ticks
    );
    if !built.check.ok {
        let _ = write!(
            out,
            "<p class=\"warn\" id=\"problems\">The audit of these logs found {} problems (a live \
             server's logs may disagree with each other for a moment: reload, or run \
             `mltrader check` on a stopped server).</p>",
            built.check.problems
        );
    }

    out.push_str("<h2>Credits</h2>");
    amounts_table(
        &mut out,
        "credits-created",
        "created by source",
        &f.credits_created,
    );
    amounts_table(
        &mut out,
        "credits-destroyed",
        "destroyed by sink",
        &f.credits_destroyed,
    );
    let net = f.created() as i128 - f.destroyed() as i128;
    let c = &built.check;
    let _ = write!(
        out,
        "<table id=\"circulation\"><tr><th>created less destroyed in the window</th><td class=\"n\" id=\"credits-net\">{net}</td></tr>\
         <tr><th>in circulation at the window's start</th><td class=\"n\" id=\"circulation-start\">{}</td></tr>\
         <tr><th>in circulation at its end</th><td class=\"n\" id=\"circulation-end\">{}</td></tr>\
         <tr><th>trades</th><td class=\"n\" id=\"trades\">{}</td></tr></table>\
         <table id=\"check\"><tr><th colspan=\"2\">`mltrader check` on the same logs (whole history)</th></tr>\
         <tr><th>credits held</th><td class=\"n\" id=\"check-held\">{}</td></tr>\
         <tr><th>credits granted</th><td class=\"n\" id=\"check-granted\">{}</td></tr>\
         <tr><th>credits spent</th><td class=\"n\" id=\"check-spent\">{}</td></tr>\
         <tr><th>verdict</th><td id=\"check-ok\">{}</td></tr></table>",
        r.circulation_at_start_cr,
        r.circulation_at_end_cr,
        f.trades,
        c.credits_held,
        c.credits_granted,
        c.credits_spent,
        if c.ok { "ok" } else { "problems" }
    );
    let created = per_rule(&r.buckets, |b| to_f64(&b.flows.credits_created));
    out.push_str(&line_chart(
        "Credits created per bucket, by source",
        "credits",
        &created,
    )?);
    let destroyed = per_rule(&r.buckets, |b| to_f64(&b.flows.credits_destroyed));
    out.push_str(&line_chart(
        "Credits destroyed per bucket, by sink",
        "credits",
        &destroyed,
    )?);
    let circulation = vec![Series {
        name: "in circulation".into(),
        points: r
            .buckets
            .iter()
            .map(|b| (b.to, b.circulation_cr as f64))
            .collect(),
    }];
    out.push_str(&line_chart(
        "Credits in circulation at each bucket's end",
        "credits",
        &circulation,
    )?);

    out.push_str("<h2>Goods</h2>");
    units_table(&mut out, "goods-made", "made by source", &f.goods_made);
    units_table(&mut out, "goods-used", "used by sink", &f.goods_destroyed);
    let made = per_rule(&r.buckets, |b| units_by_rule(&b.flows.goods_made));
    out.push_str(&line_chart(
        "Units made per bucket, by source",
        "units",
        &made,
    )?);
    let used = per_rule(&r.buckets, |b| units_by_rule(&b.flows.goods_destroyed));
    out.push_str(&line_chart(
        "Units used per bucket, by sink",
        "units",
        &used,
    )?);

    prices_section(&mut out, r, q)?;
    routes_section(&mut out, r)?;
    out.push_str("</body></html>");
    Ok(out)
}

fn to_f64(m: &BTreeMap<String, u128>) -> BTreeMap<String, f64> {
    m.iter().map(|(k, v)| (k.clone(), *v as f64)).collect()
}

fn units_by_rule(m: &BTreeMap<String, BTreeMap<String, u128>>) -> BTreeMap<String, f64> {
    m.iter()
        .map(|(k, goods)| (k.clone(), goods.values().sum::<u128>() as f64))
        .collect()
}

/// Price history: links to every system and good the report has prices of, and the chart of
/// the one picked (the first by default).
fn prices_section(
    out: &mut String,
    r: &EconomyReport,
    q: &PageQuery,
) -> Result<(), crate::charts::ChartError> {
    out.push_str("<h2>Prices</h2>");
    let systems: BTreeSet<&str> = r.prices.iter().map(|p| p.system.as_str()).collect();
    let goods: BTreeSet<&str> = r.prices.iter().map(|p| p.good.as_str()).collect();
    let first = r.prices.first();
    let system = q
        .system
        .as_deref()
        .or(first.map(|p| p.system.as_str()))
        .unwrap_or("");
    let good = q
        .good
        .as_deref()
        .or(first.map(|p| p.good.as_str()))
        .unwrap_or("");
    let on = |picked: bool| if picked { " class=\"on\"" } else { "" };
    out.push_str("<nav id=\"pick-system\">system: ");
    for s in &systems {
        let _ = write!(
            out,
            "<a{} href=\"{}\">{}</a>",
            on(*s == system),
            link(&r.window, s, good),
            esc(s)
        );
    }
    out.push_str("</nav><nav id=\"pick-good\">good: ");
    for g in &goods {
        let _ = write!(
            out,
            "<a{} href=\"{}\">{}</a>",
            on(*g == good),
            link(&r.window, system, g),
            esc(g)
        );
    }
    out.push_str("</nav>");
    let series: Vec<Series> = r
        .prices
        .iter()
        .filter(|p| p.system == system && p.good == good)
        .map(|p| Series {
            name: format!("{} at {}", p.good, p.system),
            points: p.points.iter().map(|&(t, cr)| (t, cr as f64)).collect(),
        })
        .collect();
    out.push_str(&line_chart(
        &format!("Mid price of {good} at {system}"),
        "credits per unit",
        &series,
    )?);
    let _ = write!(
        out,
        "<table id=\"goods-extremes\"><tr><th>good</th><th>price samples</th><th>at the floor (‰)</th><th>at the ceiling (‰)</th></tr>"
    );
    for g in &r.goods {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&g.good),
            g.samples,
            g.at_floor_permille,
            g.at_ceiling_permille
        );
    }
    out.push_str("</table>");
    Ok(())
}

/// The most profitable routes: at the window's end and its start, and how many there were and
/// how many of the best stayed the best, bucket by bucket.
fn routes_section(out: &mut String, r: &EconomyReport) -> Result<(), crate::charts::ChartError> {
    out.push_str("<h2>Routes</h2>");
    let shift = vec![
        Series {
            name: "profitable (lane, direction, good)".into(),
            points: r
                .buckets
                .iter()
                .map(|b| (b.to, b.profitable_routes as f64))
                .collect(),
        },
        Series {
            name: "best margin (cr per unit)".into(),
            points: r
                .buckets
                .iter()
                .map(|b| (b.to, b.best.first().map_or(0.0, |x| x.margin_cr as f64)))
                .collect(),
        },
        Series {
            name: "of the best, kept from the bucket before".into(),
            points: r
                .buckets
                .iter()
                .map(|b| (b.to, b.best_kept as f64))
                .collect(),
        },
    ];
    out.push_str(&line_chart(
        "Routes at each bucket's end",
        "count or credits",
        &shift,
    )?);
    match (r.buckets.first(), r.buckets.last()) {
        (Some(first), Some(last)) => {
            let _ = write!(
                out,
                "<h3>The best at the window's end (tick {})</h3>",
                last.to
            );
            routes_table(out, "routes-now", &last.best);
            let _ = write!(
                out,
                "<h3>The best at its first bucket's end (tick {})</h3>",
                first.to
            );
            routes_table(out, "routes-then", &first.best);
        }
        _ => out.push_str("<p id=\"routes-none\">No economy step in this window.</p>"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_checked_and_widened_where_it_must_be() {
        assert!(window_of(None, None, None).is_ok());
        assert_eq!(
            window_of(Some(10), Some(10), None).unwrap().to,
            Some(10),
            "an empty window is a question with an empty answer"
        );
        assert!(window_of(None, None, Some(0)).is_err());
        assert_eq!(
            window_of(None, None, Some(1)).unwrap().bucket_ticks,
            MIN_OPEN_BUCKET_TICKS,
            "open end, 1-tick buckets: widened"
        );
        assert!(window_of(None, Some(100), Some(1)).is_ok());
        assert!(window_of(Some(MAX_WINDOW_TICK + 1), None, None).is_err());
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
