//! News between the nodes of a spread galaxy over core NATS: [`NatsNews`] is mesh's
//! [`News`] (`mesh::spread_news`), the carrier of price gossip, price reports and feed events
//! between nodes (docs/NATS.md "News between nodes").
//!
//! Subjects, one token per system slug escaped as a log name's folder is ([`subject`]):
//! - `mlt.gossip.<to>`: the view of prices a system gossips to its lane neighbour `<to>`,
//!   JSON [`GossipWire`] (the sender's slug and every report it has heard, each with its
//!   `published_ms`);
//! - `mlt.prices.<system>`: a system's own report for every node's galaxy view, JSON
//!   [`ReportWire`];
//! - `mlt.events.<system>`: a durable event of the system's feed, JSON of `mesh::feed::FeedEvent`.
//!
//! Core NATS and not JetStream: all of it is soft state, lossy inside one process too (full
//! queues drop a round), eventually consistent, and a lost gossip or report is repaired by the
//! next one (every economy period); storing it would cost a quorum's fsync for nothing. A
//! lost feed event is lost to that node's listeners (as a lagging listener's is).
//!
//! Every message carries [`ORIGIN_HEADER`], a random id of the carrier drawn at its start:
//! a node's subscriptions hear its own messages (one connection, echo on: requests between
//! a node's own API and its own units need it) and skip them by it, so an event of a unit a
//! node runs reaches that node's listeners once (from the mesh directly). [`NODE_HEADER`]
//! names the node, for people.
//!
//! Telling never waits: the mesh's calls put the news in a bounded queue
//! ([`NEWS_OUTBOX_LEN`]; full: dropped and counted), and a task on the connection's runtime
//! encodes and publishes. Listening: one task per subscription decodes what others told,
//! refuses what does not decode or names systems the galaxy does not have or lanes it does not
//! have (counted, and logged as a warning naming the subject), and hands the rest to the
//! mesh's sink (full: dropped and counted).
//!
//! Never decides a game rule, never tells again what it heard, never blocks the caller's
//! tokio workers, and never hands a node what that node told.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::HeaderMap;
use futures_util::StreamExt;
use mesh::feed::{FeedEvent, FeedEventKind};
use mesh::price_sync::{PriceView, Published};
use mesh::spread_news::{Heard, News, NewsError, NewsFuture, NewsSink};
use serde::{Deserialize, Serialize};
use sim::galaxy::{Galaxy, SystemId};
use sim::goods::GOOD_COUNT;
use sim::market::PriceReport;
use tokio::sync::mpsc;

use crate::limits::{HEADER_ROOM_BYTES, NEWS_OUTBOX_LEN};
use crate::logs::NODE_HEADER;
use crate::subject::{self, LOG_SUBJECT_PREFIX};
use crate::Nats;

/// The subjects of gossip towards each system: `mlt.gossip.>` is what every node hears.
pub const GOSSIP_SUBJECT_PREFIX: &str = "mlt.gossip.";

/// The subjects of each system's own price report.
pub const PRICES_SUBJECT_PREFIX: &str = "mlt.prices.";

/// The subjects of each system's feed events.
pub const EVENTS_SUBJECT_PREFIX: &str = "mlt.events.";

/// The header naming the carrier that told a message (random, drawn at its start).
pub const ORIGIN_HEADER: &str = "Mlt-News-Origin";

/// A system's report on the wire: its slug, its tick, its mid prices per good (index order),
/// and the wall-clock time it was published (milliseconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportWire {
    pub system: String,
    pub tick: u64,
    pub prices_cr: Vec<u64>,
    pub published_ms: u64,
}

/// A gossiped view on the wire: who gossips it, and every report it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipWire {
    pub from: String,
    pub reports: Vec<ReportWire>,
}

/// Why a message on a news subject was refused (it is skipped and counted, never handed on).
#[derive(Debug, thiserror::Error)]
pub enum NewsDecodeError {
    #[error("{subject}: not a news subject of this galaxy")]
    Subject { subject: String },
    #[error("{subject}: the payload is not what the subject carries: {reason}")]
    Payload { subject: String, reason: String },
    #[error("{subject}: {reason}")]
    Galaxy { subject: String, reason: String },
}

/// Counts of what this node's carrier did, for tests and figures.
#[derive(Debug, Default)]
pub struct NewsStats {
    /// Messages handed to the connection.
    pub sent: AtomicU64,
    /// News dropped before sending: the outbox was full (the connection is slow or down).
    pub dropped_outbox_full: AtomicU64,
    /// Messages the connection refused (closed, or larger than the server's `max_payload`).
    pub send_failed: AtomicU64,
    /// Other nodes' messages handed to the mesh.
    pub received: AtomicU64,
    /// This carrier's own messages heard back and skipped.
    pub own_skipped: AtomicU64,
    /// Messages refused: they did not decode, or named what the galaxy does not have.
    pub malformed: AtomicU64,
    /// Other nodes' messages dropped: the mesh's sink was full.
    pub dropped_sink_full: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the mesh told, on its way to the connection.
enum Outgoing {
    Gossip {
        from: SystemId,
        to: SystemId,
        view: Arc<PriceView>,
    },
    Prices(Published),
    Event(Arc<FeedEvent>),
}

/// Mesh's [`News`] over core NATS. Cheap to share behind an `Arc`; its tasks run on the
/// connection's runtime.
pub struct NatsNews {
    nats: Nats,
    galaxy: Arc<Galaxy>,
    /// This carrier's id in [`ORIGIN_HEADER`]: what its own subscriptions skip.
    origin: String,
    outbox: mpsc::Sender<Outgoing>,
    stats: Arc<NewsStats>,
}

impl NatsNews {
    /// Starts the carrier of node `nats` for `galaxy` (the publishing task; listening starts
    /// when the mesh asks). For `serve --nats --spread`: right after `Mesh::start_node`,
    /// `mesh.attach_news(NatsNews::start(&nats, galaxy.clone())).await?`; keep a clone of
    /// the `Arc` for [`NatsNews::stats`].
    pub fn start(nats: &Nats, galaxy: Arc<Galaxy>) -> Arc<NatsNews> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the OS random source works");
        let origin = format!("{}-{:016x}", nats.node, u64::from_le_bytes(bytes));
        let (outbox, queued) = mpsc::channel(NEWS_OUTBOX_LEN);
        let stats = Arc::new(NewsStats::default());
        let publisher = Publisher {
            client: nats.client.clone(),
            galaxy: galaxy.clone(),
            node: nats.node.clone(),
            origin: origin.clone(),
            max_body_bytes: nats.max_payload_bytes().saturating_sub(HEADER_ROOM_BYTES),
            stats: stats.clone(),
        };
        drop(nats.bridge.spawn(publisher.run(queued)));
        Arc::new(NatsNews {
            nats: nats.clone(),
            galaxy,
            origin,
            outbox,
            stats,
        })
    }

    /// What this carrier sent, heard, skipped and dropped.
    pub fn stats(&self) -> &NewsStats {
        &self.stats
    }

    /// This carrier's id, as its messages carry it in [`ORIGIN_HEADER`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn queue(&self, news: Outgoing) {
        if self.outbox.try_send(news).is_err() {
            bump(&self.stats.dropped_outbox_full);
        }
    }
}

impl News for NatsNews {
    fn gossip(&self, from: SystemId, to: SystemId, view: &Arc<PriceView>) {
        self.queue(Outgoing::Gossip {
            from,
            to,
            view: view.clone(),
        });
    }

    fn prices(&self, report: &Published) {
        self.queue(Outgoing::Prices(*report));
    }

    fn event(&self, event: &Arc<FeedEvent>) {
        self.queue(Outgoing::Event(event.clone()));
    }

    fn listen(&self, sink: NewsSink) -> NewsFuture<'_, Result<(), NewsError>> {
        let client = self.nats.client.clone();
        let subscribed = self.nats.bridge.spawn(async move {
            let mut subs = Vec::new();
            for prefix in [
                GOSSIP_SUBJECT_PREFIX,
                PRICES_SUBJECT_PREFIX,
                EVENTS_SUBJECT_PREFIX,
            ] {
                let sub = client
                    .subscribe(format!("{prefix}>"))
                    .await
                    .map_err(|e| NewsError::Listen(format!("subscribe {prefix}>: {e}")))?;
                subs.push(sub);
            }
            // Once the server has every subscription, whatever is told from now on is heard.
            client
                .flush()
                .await
                .map_err(|e| NewsError::Listen(format!("flush: {e}")))?;
            Ok::<_, NewsError>(subs)
        });
        let (galaxy, origin, stats) =
            (self.galaxy.clone(), self.origin.clone(), self.stats.clone());
        let bridge = self.nats.bridge.clone();
        Box::pin(async move {
            let subs = subscribed
                .await
                .map_err(|e| NewsError::Listen(format!("the NATS runtime: {e}")))??;
            for sub in subs {
                let listener = Listener {
                    galaxy: galaxy.clone(),
                    origin: origin.clone(),
                    stats: stats.clone(),
                };
                drop(bridge.spawn(listener.run(sub, sink.clone())));
            }
            Ok(())
        })
    }
}

/// The publishing task's share of the carrier.
struct Publisher {
    client: async_nats::Client,
    galaxy: Arc<Galaxy>,
    node: String,
    origin: String,
    max_body_bytes: usize,
    stats: Arc<NewsStats>,
}

impl Publisher {
    /// Publishes what the mesh told, in order, until the carrier is dropped.
    async fn run(self, mut queued: mpsc::Receiver<Outgoing>) {
        while let Some(news) = queued.recv().await {
            let (subject, body) = encode(&self.galaxy, &news);
            if body.len() > self.max_body_bytes {
                tracing::warn!(
                    "{subject}: {} bytes of news, more than the server takes ({} with headers); dropped",
                    body.len(),
                    self.max_body_bytes
                );
                bump(&self.stats.send_failed);
                continue;
            }
            let mut headers = HeaderMap::new();
            headers.insert(ORIGIN_HEADER, self.origin.as_str());
            headers.insert(NODE_HEADER, self.node.as_str());
            match self
                .client
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
            {
                Ok(()) => bump(&self.stats.sent),
                Err(e) => {
                    tracing::debug!("{subject}: news not sent: {e}");
                    bump(&self.stats.send_failed);
                }
            }
        }
    }
}

/// One subscription's task: hands the mesh what the others told.
struct Listener {
    galaxy: Arc<Galaxy>,
    origin: String,
    stats: Arc<NewsStats>,
}

impl Listener {
    /// Runs until the sink is closed (the mesh stopped) or the subscription ends (the
    /// connection closed for good).
    async fn run(self, mut sub: async_nats::Subscriber, sink: NewsSink) {
        loop {
            let message = tokio::select! {
                m = sub.next() => match m {
                    Some(m) => m,
                    None => return,
                },
                () = sink.closed() => return,
            };
            let from = message
                .headers
                .as_ref()
                .and_then(|h| h.get(ORIGIN_HEADER))
                .map(|v| v.as_str());
            if from == Some(self.origin.as_str()) {
                bump(&self.stats.own_skipped);
                continue;
            }
            let heard = match decode(&self.galaxy, message.subject.as_str(), &message.payload) {
                Ok(heard) => heard,
                Err(e) => {
                    tracing::warn!("news refused: {e}");
                    bump(&self.stats.malformed);
                    continue;
                }
            };
            match sink.try_send(heard) {
                Ok(()) => bump(&self.stats.received),
                Err(mpsc::error::TrySendError::Full(_)) => bump(&self.stats.dropped_sink_full),
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// A system slug as one subject token (escaped as a log name's folder is).
fn token(slug: &str) -> String {
    let subject = subject::of_log(slug);
    let token = subject
        .strip_prefix(LOG_SUBJECT_PREFIX)
        .expect("of_log writes its prefix");
    assert!(
        !token.contains('.'),
        "a slug is one subject token: {slug:?} is {token:?}"
    );
    token.to_string()
}

/// The slug of one subject token written by [`token`], if it is one.
fn slug_of(token: &str) -> Option<String> {
    if token.is_empty() || token.contains('.') {
        return None;
    }
    subject::to_log(&format!("{LOG_SUBJECT_PREFIX}{token}")).filter(|s| !s.contains('/'))
}

/// The subject of gossip towards system `to`.
pub fn gossip_subject(galaxy: &Galaxy, to: SystemId) -> String {
    format!("{GOSSIP_SUBJECT_PREFIX}{}", token(galaxy.slug(to)))
}

/// The subject of system `system`'s price reports.
pub fn prices_subject(galaxy: &Galaxy, system: SystemId) -> String {
    format!("{PRICES_SUBJECT_PREFIX}{}", token(galaxy.slug(system)))
}

/// The subject of system `system`'s feed events.
pub fn events_subject(galaxy: &Galaxy, system: SystemId) -> String {
    format!("{EVENTS_SUBJECT_PREFIX}{}", token(galaxy.slug(system)))
}

fn report_wire(galaxy: &Galaxy, system: SystemId, r: &PriceReport, at_ms: u64) -> ReportWire {
    ReportWire {
        system: galaxy.slug(system).to_string(),
        tick: r.tick,
        prices_cr: r.prices_cr.to_vec(),
        published_ms: at_ms,
    }
}

/// The subject and JSON body of what the mesh told.
fn encode(galaxy: &Galaxy, news: &Outgoing) -> (String, Vec<u8>) {
    match news {
        Outgoing::Gossip { from, to, view } => {
            let wire = GossipWire {
                from: galaxy.slug(*from).to_string(),
                reports: view
                    .iter()
                    .map(|(s, r, at)| report_wire(galaxy, s, r, at))
                    .collect(),
            };
            (gossip_subject(galaxy, *to), json(&wire))
        }
        Outgoing::Prices(p) => {
            let wire = report_wire(galaxy, p.system, &p.report, p.published_ms);
            (prices_subject(galaxy, p.system), json(&wire))
        }
        Outgoing::Event(e) => (events_subject(galaxy, e.system), json(&**e)),
    }
}

/// The JSON of a payload: plain strings, numbers and vectors of them, which serialize.
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("news serializes to JSON")
}

/// What a message on a news subject says, checked against the galaxy: systems it has, lanes
/// it has, a price for every good, an event told on its own system's subject.
pub fn decode(galaxy: &Galaxy, subject: &str, payload: &[u8]) -> Result<Heard, NewsDecodeError> {
    let bad_subject = || NewsDecodeError::Subject {
        subject: subject.to_string(),
    };
    let payload_err = |e: serde_json::Error| NewsDecodeError::Payload {
        subject: subject.to_string(),
        reason: e.to_string(),
    };
    let galaxy_err = |reason: String| NewsDecodeError::Galaxy {
        subject: subject.to_string(),
        reason,
    };
    let system_of = |slug: &str| {
        galaxy
            .by_slug(slug)
            .ok_or_else(|| galaxy_err(format!("no system {slug:?} in this galaxy")))
    };
    let of_subject = |prefix: &str| {
        let token = subject.strip_prefix(prefix).ok_or_else(bad_subject)?;
        let slug = slug_of(token).ok_or_else(bad_subject)?;
        system_of(&slug)
    };
    let report = |w: ReportWire| -> Result<(SystemId, PriceReport, u64), NewsDecodeError> {
        let system = system_of(&w.system)?;
        let prices_cr: [u64; GOOD_COUNT] = w.prices_cr.as_slice().try_into().map_err(|_| {
            galaxy_err(format!(
                "{} prices for {}, the game has {GOOD_COUNT} goods",
                w.prices_cr.len(),
                w.system
            ))
        })?;
        let r = PriceReport {
            tick: w.tick,
            prices_cr,
        };
        Ok((system, r, w.published_ms))
    };
    if subject.starts_with(GOSSIP_SUBJECT_PREFIX) {
        let to = of_subject(GOSSIP_SUBJECT_PREFIX)?;
        let wire: GossipWire = serde_json::from_slice(payload).map_err(payload_err)?;
        let from = system_of(&wire.from)?;
        if !galaxy.has_lane(from, to) {
            return Err(galaxy_err(format!(
                "gossip from {} to {}, which have no lane",
                wire.from,
                galaxy.slug(to)
            )));
        }
        let mut view = PriceView::new();
        for w in wire.reports {
            let (system, r, at_ms) = report(w)?;
            view.record(system, r, at_ms);
        }
        Ok(Heard::Gossip { from, to, view })
    } else if subject.starts_with(PRICES_SUBJECT_PREFIX) {
        let system = of_subject(PRICES_SUBJECT_PREFIX)?;
        let wire: ReportWire = serde_json::from_slice(payload).map_err(payload_err)?;
        let (of, report, published_ms) = report(wire)?;
        if of != system {
            return Err(galaxy_err(format!(
                "a report of {} on the subject of {}",
                galaxy.slug(of),
                galaxy.slug(system)
            )));
        }
        Ok(Heard::Prices(Published {
            system,
            report,
            published_ms,
        }))
    } else if subject.starts_with(EVENTS_SUBJECT_PREFIX) {
        let system = of_subject(EVENTS_SUBJECT_PREFIX)?;
        let event: FeedEvent = serde_json::from_slice(payload).map_err(payload_err)?;
        let named = |id: SystemId| id.index() < galaxy.len();
        let others_named = match &event.kind {
            FeedEventKind::Departed { to, .. } => named(*to),
            FeedEventKind::Arrived { from, .. } => named(*from),
            _ => true,
        };
        if event.system != system || !others_named {
            return Err(galaxy_err(format!(
                "an event of system {:?} (or naming a system this galaxy does not have) on the subject of {}",
                event.system,
                galaxy.slug(system)
            )));
        }
        Ok(Heard::Event(event))
    } else {
        Err(bad_subject())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::feed::FeedEventKind;
    use sim::ids::Tick;
    use store::seq::Seq;

    fn g() -> Galaxy {
        Galaxy::default_galaxy()
    }

    fn report(tick: u64) -> PriceReport {
        let mut prices_cr = [0; GOOD_COUNT];
        for (i, p) in prices_cr.iter_mut().enumerate() {
            *p = 10 + i as u64 + tick;
        }
        PriceReport { tick, prices_cr }
    }

    fn arrived(g: &Galaxy) -> FeedEvent {
        let home = g.home();
        let to = g.neighbours(home)[0];
        FeedEvent {
            system: to,
            instance: 1,
            seq: Seq(9),
            t: Tick(40),
            kind: FeedEventKind::Arrived {
                player: "Ann".into(),
                from: home,
                xfer: format!("{}:1", g.slug(home)),
                population: 2,
            },
        }
    }

    #[test]
    fn what_is_told_decodes_back_as_it_was() {
        let g = g();
        let home = g.home();
        let (n0, n1) = (g.neighbours(home)[0], g.neighbours(home)[1]);
        let mut view = PriceView::new();
        view.record(home, report(5), 1_000);
        view.record(n1, report(7), 2_000);
        let told = [
            Outgoing::Gossip {
                from: home,
                to: n0,
                view: Arc::new(view.clone()),
            },
            Outgoing::Prices(Published {
                system: n1,
                report: report(3),
                published_ms: 1_234,
            }),
            Outgoing::Event(Arc::new(arrived(&g))),
        ];
        let expected = [
            Heard::Gossip {
                from: home,
                to: n0,
                view,
            },
            Heard::Prices(Published {
                system: n1,
                report: report(3),
                published_ms: 1_234,
            }),
            Heard::Event(arrived(&g)),
        ];
        for (news, want) in told.iter().zip(expected) {
            let (subject, body) = encode(&g, news);
            assert_eq!(decode(&g, &subject, &body).unwrap(), want, "{subject}");
        }
        assert_eq!(gossip_subject(&g, n0), format!("mlt.gossip.{}", g.slug(n0)));
        assert_eq!(prices_subject(&g, home), "mlt.prices.sol");
        assert_eq!(events_subject(&g, home), "mlt.events.sol");
    }

    #[test]
    fn news_that_does_not_fit_the_galaxy_is_refused_saying_why() {
        let g = g();
        let home = g.home();
        let n0 = g.neighbours(home)[0];
        let far = g
            .ids()
            .find(|&s| s != home && !g.has_lane(s, home))
            .unwrap();
        let event = serde_json::to_vec(&arrived(&g)).unwrap();
        let gossip = |from: &str| {
            serde_json::to_vec(&GossipWire {
                from: from.into(),
                reports: vec![],
            })
            .unwrap()
        };
        let cases: Vec<(String, Vec<u8>, &str)> = vec![
            (
                "mlt.events.sol".into(),
                event.clone(),
                "on the subject of sol",
            ),
            (
                events_subject(&g, n0),
                b"{not json".to_vec(),
                "the payload is not",
            ),
            (
                "mlt.events.atlantis".into(),
                event,
                "no system \"atlantis\"",
            ),
            ("mlt.events.a.b".into(), vec![], "not a news subject"),
            ("mlt.gossip".into(), vec![], "not a news subject"),
            (
                gossip_subject(&g, far),
                gossip(g.slug(home)),
                "which have no lane",
            ),
            (
                prices_subject(&g, home),
                serde_json::to_vec(&ReportWire {
                    system: "sol".into(),
                    tick: 1,
                    prices_cr: vec![1, 2],
                    published_ms: 0,
                })
                .unwrap(),
                "2 prices for sol",
            ),
            (
                prices_subject(&g, n0),
                serde_json::to_vec(&report_wire(&g, home, &report(1), 0)).unwrap(),
                "a report of sol on the subject of",
            ),
        ];
        for (subject, body, why) in cases {
            let err = decode(&g, &subject, &body).unwrap_err().to_string();
            assert!(err.contains(why), "{subject}: {err} (wanted {why:?})");
            assert!(err.starts_with(&subject), "names the subject: {err}");
        }
    }

    #[test]
    fn every_slug_is_one_token_and_back() {
        let g = g();
        for s in g.ids() {
            let slug = g.slug(s);
            let t = token(slug);
            assert!(!t.contains('.'));
            assert_eq!(slug_of(&t).as_deref(), Some(slug));
        }
        assert_eq!(slug_of("a_2eb").as_deref(), Some("a.b"));
        assert_eq!(slug_of(""), None);
    }
}
