//! `GET /metrics`: the server's figures in the Prometheus text format (docs/OPERATIONS.md,
//! "Metrics"), and the count of API requests by route and status that it shows.
//!
//! What it shows is counted elsewhere, in atomics: the mesh's jumps, trades, tick and commit
//! durations, snapshots and recoveries ([`mesh::metrics`]), the logs' appends, bytes and syncs
//! ([`store::log::io_totals`]), the rate limiters' refusals ([`crate::limits::Limiter`]), and
//! the requests ([`RequestCounts`], counted by [`count_requests`]). The gauges (players,
//! instances, dilation) come from the shards' status at scrape time. A scrape formats them
//! with `prometheus-client`'s encoder; nothing here runs on a request's or a tick's path but
//! one `fetch_add`.
//!
//! Never shows a player's name or a token (labels are systems, routes, status codes), and never
//! takes a lock that a request or a shard takes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Public, Shared};
use crate::error::ApiError;
use mesh::metrics::HistogramSnapshot;
use mesh::ShardStatus;
use sim::galaxy::SystemId;

/// The content type of the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The status codes counted each on their own; any other counts as its class (`2xx`..`5xx`).
pub const STATUS_CODES: [u16; 21] = [
    200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 501, 502,
    503, 504,
];
/// The classes an unlisted status counts in.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Slots per route: each listed status, then each class.
const SLOTS_PER_ROUTE: usize = STATUS_CODES.len() + STATUS_CLASSES.len();
/// The label of requests that matched no route (their paths are the client's: never a label).
pub const OTHER_ROUTE: &str = "other";

/// Requests answered, by route and status: one atomic per (route, status) slot, allocated once.
pub struct RequestCounts {
    /// (method, path) of each route; the last one is [`OTHER_ROUTE`].
    routes: Vec<(&'static str, &'static str)>,
    counts: Vec<AtomicU64>,
}

impl RequestCounts {
    /// Counts for these (method, path) routes, and for the requests that matched none.
    pub fn new(mut routes: Vec<(&'static str, &'static str)>) -> RequestCounts {
        routes.push(("", OTHER_ROUTE));
        let counts = (0..routes.len() * SLOTS_PER_ROUTE)
            .map(|_| AtomicU64::new(0))
            .collect();
        RequestCounts { routes, counts }
    }

    /// Counts one answer of `status` to a request of `method` on the route `matched` (None: no
    /// route matched).
    pub fn count(&self, method: &Method, matched: Option<&str>, status: StatusCode) {
        let other = self.routes.len() - 1;
        let route = matched
            .and_then(|path| {
                self.routes
                    .iter()
                    .position(|(m, p)| *p == path && *m == method.as_str())
            })
            .unwrap_or(other);
        let code = status.as_u16();
        let slot = STATUS_CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or_else(|| {
                STATUS_CODES.len() + usize::from(code / 100).clamp(1, STATUS_CLASSES.len()) - 1
            });
        assert!(slot < SLOTS_PER_ROUTE, "status slot {slot} out of range");
        self.counts[route * SLOTS_PER_ROUTE + slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Every non-zero count: (route label, status label, count).
    fn read(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (r, (method, path)) in self.routes.iter().enumerate() {
            for slot in 0..SLOTS_PER_ROUTE {
                let n = self.counts[r * SLOTS_PER_ROUTE + slot].load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let status = match STATUS_CODES.get(slot) {
                    Some(code) => code.to_string(),
                    None => STATUS_CLASSES[slot - STATUS_CODES.len()].to_string(),
                };
                let route = if method.is_empty() {
                    path.to_string()
                } else {
                    format!("{method} {path}")
                };
                out.push((route, status, n));
            }
        }
        out
    }
}

/// The layer that counts every answer of the router by route and status.
pub async fn count_requests(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let response = next.run(req).await;
    state.requests.count(
        &method,
        matched.as_ref().map(MatchedPath::as_str),
        response.status(),
    );
    response
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Shared>, _: Public) -> Result<Response, ApiError> {
    let status = state.mesh.status().await?;
    let scrape = Scrape::of(&state, &status);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .map_err(|_| ApiError::internal("the metrics could not be formatted"))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], out).into_response())
}

type Labels = Vec<(&'static str, String)>;

/// The values of one metric family, by label set.
#[derive(Debug)]
enum Values {
    Counter(Vec<(Labels, u64)>),
    /// A counter of seconds (a float).
    Seconds(Vec<(Labels, f64)>),
    Gauge(Vec<(Labels, f64)>),
    Histogram(Vec<(Labels, HistogramSnapshot)>),
}

/// One metric family: its name (a counter's without `_total`: the encoder adds it), its help.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    values: Values,
}

/// Everything one scrape shows, read once.
#[derive(Debug)]
struct Scrape(Vec<Family>);

fn family(name: &'static str, help: &'static str, values: Values) -> Family {
    Family { name, help, values }
}

fn one<T>(value: T) -> Vec<(Labels, T)> {
    vec![(Vec::new(), value)]
}

impl Scrape {
    fn of(state: &Shared, status: &[ShardStatus]) -> Scrape {
        let mesh = &state.mesh;
        let g = mesh.galaxy();
        let m = mesh.metrics();
        // The systems this node runs, and those it counted anything for (a unit handed to
        // another node keeps its counts here).
        let runs: BTreeSet<&str> = status.iter().map(|s| s.slug.as_str()).collect();
        let systems: Vec<SystemId> = g
            .ids()
            .filter(|&id| {
                let s = m.system(id);
                runs.contains(g.slug(id))
                    || s.jumps.load(Ordering::Relaxed) > 0
                    || s.trades.load(Ordering::Relaxed) > 0
                    || s.tick.snapshot().count > 0
            })
            .collect();
        let by_system = |f: &dyn Fn(SystemId) -> u64| -> Vec<(Labels, u64)> {
            systems
                .iter()
                .map(|&id| (vec![("system", g.slug(id).to_string())], f(id)))
                .collect()
        };
        let histograms = |f: &dyn Fn(SystemId) -> HistogramSnapshot| {
            systems
                .iter()
                .map(|&id| (vec![("system", g.slug(id).to_string())], f(id)))
                .collect()
        };
        let per_primary = |f: &dyn Fn(&ShardStatus) -> f64| -> Vec<(Labels, f64)> {
            status
                .iter()
                .map(|s| (vec![("system", s.slug.clone())], f(s)))
                .collect()
        };
        let per_instance = |f: &dyn Fn(&ShardStatus) -> f64| -> Vec<(Labels, f64)> {
            status
                .iter()
                .flat_map(|s| std::iter::once(s).chain(&s.instances))
                .map(|s| {
                    let labels = vec![
                        ("system", s.slug.clone()),
                        ("instance", s.instance.to_string()),
                    ];
                    (labels, f(s))
                })
                .collect()
        };
        let io = store::log::io_totals();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let requests = state
            .requests
            .read()
            .into_iter()
            .map(|(route, code, n)| (vec![("route", route), ("code", code)], n))
            .collect();
        let limited = vec![
            (
                vec![("limit", "token".to_string())],
                state.token_limits.refused(),
            ),
            (
                vec![("limit", "join".to_string())],
                state.join_limits.refused(),
            ),
            (vec![("limit", "ip".to_string())], state.ip_limits.refused()),
        ];
        Scrape(vec![
            family(
                "mltrader_jumps",
                "Jumps acknowledged to players (durable at their commit point), by origin system.",
                Values::Counter(by_system(&|id| load(&m.system(id).jumps))),
            ),
            family(
                "mltrader_trades",
                "Trades acknowledged to players, by system.",
                Values::Counter(by_system(&|id| load(&m.system(id).trades))),
            ),
            family(
                "mltrader_tick_duration_seconds",
                "How long each tick of a system's shards took to run.",
                Values::Histogram(histograms(&|id| m.system(id).tick.snapshot())),
            ),
            family(
                "mltrader_commit_latency_seconds",
                "From a record's append to its being durable, for a system's shards: what an action waits for before it is acknowledged.",
                Values::Histogram(histograms(&|id| m.system(id).commit.snapshot())),
            ),
            family(
                "mltrader_players",
                "Players in a system (its instances included), on this node.",
                Values::Gauge(per_primary(&|s| {
                    (s.population + s.instances.iter().map(|i| i.population).sum::<usize>())
                        as f64
                })),
            ),
            family(
                "mltrader_players_in_flight",
                "Players in a jump towards a system.",
                Values::Gauge(per_primary(&|s| {
                    (s.in_transit_towards
                        + s.instances.iter().map(|i| i.in_transit_towards).sum::<usize>())
                        as f64
                })),
            ),
            family(
                "mltrader_instances",
                "Shards running for a system: 1, plus its open instances.",
                Values::Gauge(per_primary(&|s| (1 + s.instances.len()) as f64)),
            ),
            family(
                "mltrader_time_dilation",
                "How fast a shard's clock runs (1 = real time; lower when its ticks overrun their budget).",
                Values::Gauge(per_instance(&|s| s.dilation)),
            ),
            family(
                "mltrader_tick_p99_seconds",
                "The 99th percentile of a shard's last minute of tick durations.",
                Values::Gauge(per_instance(&|s| f64::from(s.tick_p99_us) / 1e6)),
            ),
            family(
                "mltrader_log_appends",
                "Log records made durable by this process (every log and backend).",
                Values::Counter(one(io.records)),
            ),
            family(
                "mltrader_log_bytes",
                "Log bytes written and made durable by this process.",
                Values::Counter(one(io.bytes)),
            ),
            family(
                "mltrader_log_fsyncs",
                "Log batches written and synced (an fdatasync, or an acknowledged JetStream batch).",
                Values::Counter(one(io.syncs)),
            ),
            family(
                "mltrader_log_fsync_failures",
                "Log writes or syncs that failed (each stops its shard until a restart).",
                Values::Counter(one(io.sync_failures)),
            ),
            family(
                "mltrader_snapshots",
                "Snapshots written.",
                Values::Counter(one(load(&m.snapshots))),
            ),
            family(
                "mltrader_snapshot_failures",
                "Snapshots that failed to be written (the previous ones stay).",
                Values::Counter(one(load(&m.snapshot_failures))),
            ),
            family(
                "mltrader_recoveries",
                "Recoveries run: the start, and each unit this node took over.",
                Values::Counter(one(load(&m.recoveries))),
            ),
            family(
                "mltrader_recovery_seconds",
                "Time spent in recoveries.",
                Values::Seconds(one(load(&m.recovery_us) as f64 / 1e6)),
            ),
            family(
                "mltrader_players_known",
                "Players this node knows where they are (its directory).",
                Values::Gauge(one(mesh.players() as f64)),
            ),
            family(
                "mltrader_event_streams",
                "Event streams open (players' and the map's).",
                Values::Gauge(one(state.events.streams() as f64)),
            ),
            family(
                "mltrader_http_requests",
                "API requests answered, by route (method and path) and status code.",
                Values::Counter(requests),
            ),
            family(
                "mltrader_rate_limited",
                "Requests refused by a rate limit: per token, joins per IP, or without a token per IP.",
                Values::Counter(limited),
            ),
        ])
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let kind = match f.values {
                Values::Counter(_) | Values::Seconds(_) => MetricType::Counter,
                Values::Gauge(_) => MetricType::Gauge,
                Values::Histogram(_) => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            match &f.values {
                Values::Counter(v) => {
                    for (labels, n) in v {
                        ConstCounter::new(*n).encode(metric.encode_family(labels)?)?;
                    }
                }
                Values::Seconds(v) => {
                    for (labels, s) in v {
                        ConstCounter::new(*s).encode(metric.encode_family(labels)?)?;
                    }
                }
                Values::Gauge(v) => {
                    for (labels, x) in v {
                        ConstGauge::new(*x).encode(metric.encode_family(labels)?)?;
                    }
                }
                Values::Histogram(v) => {
                    for (labels, h) in v {
                        metric
                            .encode_family(labels)?
                            .encode_histogram::<NoLabelSet>(
                                h.sum_seconds,
                                h.count,
                                &h.buckets,
                                None,
                            )?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_route_and_status_and_unknown_paths_as_other() {
        let c = RequestCounts::new(vec![("GET", "/v1/me"), ("POST", "/v1/join")]);
        c.count(&Method::GET, Some("/v1/me"), StatusCode::OK);
        c.count(&Method::GET, Some("/v1/me"), StatusCode::OK);
        c.count(
            &Method::POST,
            Some("/v1/join"),
            StatusCode::TOO_MANY_REQUESTS,
        );
        c.count(&Method::GET, None, StatusCode::NOT_FOUND);
        c.count(
            &Method::GET,
            Some("/v1/me"),
            StatusCode::from_u16(418).unwrap(),
        );
        let mut read = c.read();
        read.sort();
        assert_eq!(
            read,
            vec![
                ("GET /v1/me".to_string(), "200".to_string(), 2),
                ("GET /v1/me".to_string(), "4xx".to_string(), 1),
                ("POST /v1/join".to_string(), "429".to_string(), 1),
                ("other".to_string(), "404".to_string(), 1),
            ]
        );
    }
}
