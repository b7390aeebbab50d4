//! `GET /metrics` of a real `mltrader serve`: the text parses as Prometheus' (with the
//! `prometheus-parse` crate, not our own reading) and its counters move by what a known workload
//! did through the API: N jumps, one trade, their requests, their log records.
//!
//! MLTRADER_METRICS_JUMPS sets N (default 6) for a larger run by hand.

mod common;

use std::collections::HashMap;

use common::{Http, Server};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

/// Jumps the workload makes by default.
const DEFAULT_JUMPS: usize = 6;

async fn scrape(http: &Http) -> Scrape {
    let resp = http
        .client
        .get(format!("{}/metrics", http.url))
        .send()
        .await
        .expect("the server answers /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"));
    assert!(!scrape.samples.is_empty(), "no samples:\n{text}");
    scrape
}

fn samples<'a>(s: &'a Scrape, metric: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
    s.samples.iter().filter(move |x| x.metric == metric)
}

/// The sum of a counter or gauge over the samples whose labels include `labels`.
fn sum(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples(s, metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{metric} is no counter or gauge: {other:?}"),
        })
        .sum()
}

/// Every system's count of a histogram (its `_count` sample).
fn histogram_counts(s: &Scrape, metric: &str) -> HashMap<String, f64> {
    let count_name = format!("{metric}_count");
    let mut out = HashMap::new();
    for x in samples(s, &count_name) {
        let system = x.labels.get("system").expect("a system label").to_string();
        if let Value::Untyped(v) | Value::Counter(v) | Value::Gauge(v) = x.value {
            out.insert(system, v);
        }
    }
    // The buckets parse as a histogram, and never count down.
    for x in samples(s, metric) {
        let Value::Histogram(buckets) = &x.value else {
            panic!("{metric} is no histogram: {:?}", x.value)
        };
        assert!(!buckets.is_empty());
        assert!(
            buckets.windows(2).all(|w| w[0].count <= w[1].count),
            "{metric} buckets are cumulative: {buckets:?}"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_the_jumps_trades_and_requests_of_a_known_workload() {
    let jumps: usize = std::env::var("MLTRADER_METRICS_JUMPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_JUMPS);
    let server = Server::start(&[]);
    let http = Http::new(server.url());
    let token = http.join("ann").await;

    let systems = http.get("/v1/systems", None).await.body;
    let home = systems
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["home"] == true)
        .expect("a home system");
    let there = home["neighbours"][0].as_str().unwrap().to_string();
    let here = home["name"].as_str().unwrap().to_string();
    let home_slug = home["slug"].as_str().unwrap().to_string();

    let before = scrape(&http).await;
    for i in 0..jumps {
        let to = if i % 2 == 0 { &there } else { &here };
        let go = http
            .post("/v1/travel", Some(&token), json!({"to": to, "wait": true}))
            .await;
        assert_eq!(go.status, 200, "jump {i}: {go:?}");
        let fuel = http.post("/v1/refuel", Some(&token), json!({})).await;
        assert!(fuel.status == 200 || fuel.status == 409, "{fuel:?}");
    }
    let trade = http
        .post(
            "/v1/trade",
            Some(&token),
            json!({"side": "buy", "good": "food", "qty": 1}),
        )
        .await;
    assert_eq!(trade.status, 200, "{trade:?}");
    let after = scrape(&http).await;

    let delta = |metric: &str, labels: &[(&str, &str)]| {
        sum(&after, metric, labels) - sum(&before, metric, labels)
    };
    assert_eq!(delta("mltrader_jumps_total", &[]), jumps as f64, "jumps");
    assert_eq!(
        delta("mltrader_jumps_total", &[("system", &home_slug)]),
        jumps.div_ceil(2) as f64,
        "every other jump leaves home"
    );
    assert_eq!(delta("mltrader_trades_total", &[]), 1.0, "one trade");
    assert_eq!(
        delta(
            "mltrader_http_requests_total",
            &[("route", "POST /v1/travel"), ("code", "200")]
        ),
        jumps as f64,
        "each jump is a request answered 200"
    );
    assert_eq!(
        sum(
            &after,
            "mltrader_http_requests_total",
            &[("route", "POST /v1/join"), ("code", "201")]
        ),
        1.0
    );
    // Each jump writes at least its departure and its arrival.
    assert!(
        delta("mltrader_log_appends_total", &[]) >= 2.0 * jumps as f64,
        "log appends"
    );
    assert!(delta("mltrader_log_bytes_total", &[]) > 0.0);
    assert!(delta("mltrader_log_fsyncs_total", &[]) >= 1.0);
    assert_eq!(sum(&after, "mltrader_players", &[]), 1.0, "one player");
    assert_eq!(sum(&after, "mltrader_rate_limited_total", &[]), 0.0);
    assert!(sum(&after, "mltrader_recoveries_total", &[]) >= 1.0);

    let ticks = histogram_counts(&after, "mltrader_tick_duration_seconds");
    assert!(ticks[&home_slug] > 0.0, "ticks of {home_slug}: {ticks:?}");
    let commits_before = histogram_counts(&before, "mltrader_commit_latency_seconds");
    let commits = histogram_counts(&after, "mltrader_commit_latency_seconds");
    let added: f64 = commits.values().sum::<f64>() - commits_before.values().sum::<f64>();
    assert!(
        added >= 2.0 * jumps as f64,
        "a commit observed per record: {added}"
    );
    assert!(samples(&after, "mltrader_time_dilation").count() > 0);
}
