//! The operator's live map (docs/OPERATIONS.md, "Map"): what the page at `/` is told as the
//! galaxy changes, and the short memory it needs (the jumps that crossed each lane in the last
//! minute, each system's last events).
//!
//! One task listens to the mesh's event feed for every page: each jump, landing, join and
//! destruction is turned into one small JSON message, serialized once, and broadcast to every
//! open page's stream; once a second (only while a page is open) it asks the shards' status and
//! broadcasts the figures (populations, jumps in flight, tick p99, dilation). Ten pages cost one
//! serialization per event, not ten.
//!
//! Owns that task, its bounded memories and the broadcast; never acts on the galaxy, never
//! blocks a shard (the feed and the broadcast are bounded: a page that lags is told and reloads
//! its state), and never sends a token or anything a player did not do in public (trades,
//! refuels and loot are not shown: see crate::events).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use super::shutdown::Stopping;
use mesh::feed::{FeedEvent, FeedEventKind};
use mesh::{Mesh, ShardStatus};
use sim::galaxy::SystemId;

/// How long a jump keeps its lane lit, in seconds.
pub const LANE_WINDOW_S: u64 = 60;
/// Jumps remembered for the lanes at most (older ones are forgotten first, even within the
/// window: a storm of jumps dims the oldest lanes early rather than grow memory).
pub const MAX_LANE_JUMPS: usize = 20_000;
/// Events remembered per system for its panel.
pub const RECENT_EVENTS_PER_SYSTEM: usize = 20;
/// Messages a page's stream may fall behind by before it misses some (and reloads).
pub const MAP_CHANNEL_LEN: usize = 1024;
/// Map pages open at once, at most.
pub const MAX_MAP_STREAMS: usize = 256;
/// How often the figures are sent to the open pages, in milliseconds.
pub const FIGURES_EVERY_MS: u64 = 1000;
/// A comment line this often keeps an idle map stream (and proxies) alive, in seconds.
pub const KEEP_ALIVE_S: u64 = 15;

/// One thing that happened in a system, as its panel lists it.
#[derive(Clone, Debug, Serialize)]
pub struct RecentEvent {
    /// Milliseconds since the Unix epoch, by this server's clock.
    pub at_ms: u64,
    /// The system's tick it is stamped with.
    pub tick: u64,
    pub kind: &'static str,
    pub player: String,
    /// The other system (a jump's destination, a landing's origin) or the attacker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
}

/// A message of the map's stream (`GET /v1/map/stream`, SSE event `map`).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MapMessage {
    /// A jump committed from `from` to `to` (system slugs).
    Jump { from: String, to: String },
    /// Something that happened in a system (its slug), as its panel lists it.
    Event { system: String, event: RecentEvent },
    /// The figures of every system this node runs, by slug.
    Figures { shards: Vec<ShardFigures> },
}

/// One shard's figures on the map.
#[derive(Clone, Debug, Serialize)]
pub struct ShardFigures {
    /// The system's slug.
    pub system: String,
    /// 1: the system itself; 2..: its instances.
    pub instance: u16,
    /// As players see it (`Sol #2`).
    pub name: String,
    pub population: usize,
    /// Committed jumps on their way to this shard.
    pub in_flight: usize,
    pub tick_p99_us: u32,
    pub dilation: f64,
}

impl ShardFigures {
    /// Every shard of a status (each primary, then its instances).
    pub fn of(status: &[ShardStatus]) -> Vec<ShardFigures> {
        status
            .iter()
            .flat_map(|s| std::iter::once(s).chain(&s.instances))
            .map(|s| ShardFigures {
                system: s.slug.clone(),
                instance: s.instance,
                name: s.instance_name.clone(),
                population: s.population,
                in_flight: s.in_transit_towards,
                tick_p99_us: s.tick_p99_us,
                dilation: s.dilation,
            })
            .collect()
    }
}

/// What the map remembers: std mutexes, held for a push or a copy only, never across an await,
/// and taken only by the feed task and the map's own routes.
struct Memory {
    /// (when, from, to) of the last jumps, oldest first.
    lanes: Mutex<VecDeque<(Instant, SystemId, SystemId)>>,
    /// The last events of each system, oldest first.
    recent: Mutex<BTreeMap<SystemId, VecDeque<RecentEvent>>>,
}

/// The live map of one server.
pub struct MapView {
    mesh: Mesh,
    memory: Memory,
    tx: broadcast::Sender<Arc<str>>,
    streams: AtomicUsize,
    /// Bytes sent to map streams, all pages together (the `map` bench divides by time).
    sent_bytes: AtomicU64,
    stopping: Arc<Stopping>,
}

impl MapView {
    /// The map of `mesh`; it hears nothing until [`MapView::listen`].
    pub fn new(mesh: Mesh, stopping: Arc<Stopping>) -> Arc<MapView> {
        Arc::new(MapView {
            memory: Memory {
                lanes: Mutex::new(VecDeque::new()),
                recent: Mutex::new(BTreeMap::new()),
            },
            tx: broadcast::channel(MAP_CHANNEL_LEN).0,
            streams: AtomicUsize::new(0),
            sent_bytes: AtomicU64::new(0),
            stopping,
            mesh,
        })
    }

    /// Starts the feed task (call once, inside a tokio runtime). Not started when the map is
    /// off: nobody then makes the shards build feed events for it.
    pub fn listen(self: &Arc<MapView>) {
        tokio::spawn(listen(self.clone()));
    }

    /// Jumps per lane (from, to) in the last [`LANE_WINDOW_S`].
    pub fn recent_lanes(&self) -> Vec<(SystemId, SystemId, u64)> {
        let cutoff = Instant::now().checked_sub(Duration::from_secs(LANE_WINDOW_S));
        let lanes = self.memory.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts: BTreeMap<(SystemId, SystemId), u64> = BTreeMap::new();
        for (at, from, to) in lanes.iter() {
            if cutoff.is_none_or(|c| *at >= c) {
                *counts.entry((*from, *to)).or_default() += 1;
            }
        }
        counts.into_iter().map(|((a, b), n)| (a, b, n)).collect()
    }

    /// The last events of `system`, oldest first.
    pub fn recent_events(&self, system: SystemId) -> Vec<RecentEvent> {
        let recent = self.memory.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .get(&system)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Map streams open now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Bytes sent to map streams since the start.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes.load(Ordering::Relaxed)
    }

    /// Opens a page's stream: `hello`, then every message; None when too many are open.
    pub fn subscribe(
        self: &Arc<MapView>,
    ) -> Option<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
        if self.streams.fetch_add(1, Ordering::Relaxed) >= MAX_MAP_STREAMS {
            self.streams.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let sub = MapSubscription {
            view: self.clone(),
            rx: self.tx.subscribe(),
            hello: true,
            stop: Box::pin(self.stopping.wait()),
        };
        let stream = futures_util::stream::unfold(sub, |mut sub| async move {
            let data = sub.next().await?;
            let (name, data) = data;
            // The SSE framing adds `event: map\ndata: ` and two newlines.
            let framing = 20 + name.len() as u64;
            sub.view
                .sent_bytes
                .fetch_add(data.len() as u64 + framing, Ordering::Relaxed);
            Some((Ok(SseEvent::default().event(name).data(data.as_ref())), sub))
        });
        Some(
            Sse::new(stream)
                .keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_S))),
        )
    }

    fn send(&self, message: &MapMessage) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        // Plain strings and numbers: serializing them does not fail.
        if let Ok(json) = serde_json::to_string(message) {
            let _ = self.tx.send(Arc::from(json));
        }
    }

    fn remember_jump(&self, from: SystemId, to: SystemId) {
        let mut lanes = self.memory.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let cutoff = now.checked_sub(Duration::from_secs(LANE_WINDOW_S));
        while lanes
            .front()
            .is_some_and(|(at, ..)| cutoff.is_some_and(|c| *at < c))
            || lanes.len() >= MAX_LANE_JUMPS
        {
            lanes.pop_front();
        }
        lanes.push_back((now, from, to));
        assert!(lanes.len() <= MAX_LANE_JUMPS, "lane memory is bounded");
    }

    fn remember_event(&self, system: SystemId, event: RecentEvent) {
        let mut recent = self.memory.recent.lock().unwrap_or_else(|e| e.into_inner());
        let q = recent.entry(system).or_default();
        if q.len() >= RECENT_EVENTS_PER_SYSTEM {
            q.pop_front();
        }
        q.push_back(event);
    }

    /// What the map makes of an event of the feed.
    fn see(&self, e: &FeedEvent) {
        let g = self.mesh.galaxy();
        let slug = |s: SystemId| g.slug(s).to_string();
        let event = |kind: &'static str, player: &str, other: Option<String>| RecentEvent {
            at_ms: unix_ms(),
            tick: e.t.0,
            kind,
            player: player.to_string(),
            other,
        };
        let shown = match &e.kind {
            FeedEventKind::Departed { player, to, .. } => {
                self.remember_jump(e.system, *to);
                self.send(&MapMessage::Jump {
                    from: slug(e.system),
                    to: slug(*to),
                });
                Some(event("departed", player, Some(g.name(*to).to_string())))
            }
            FeedEventKind::Arrived { player, from, .. } => {
                Some(event("arrived", player, Some(g.name(*from).to_string())))
            }
            FeedEventKind::Joined { player } => Some(event("joined", player, None)),
            FeedEventKind::Destroyed { player, by, .. } => {
                Some(event("destroyed", player, Some(by.clone())))
            }
            // A market shock (issue 22) is the system's news, not a player's: not on the map
            // yet (its market panel could show it).
            FeedEventKind::Shock { .. } => None,
            // A player's own business (crate::events): never on the map.
            FeedEventKind::Refueled { .. }
            | FeedEventKind::Repaired { .. }
            | FeedEventKind::Cancelled { .. }
            | FeedEventKind::Traded { .. }
            | FeedEventKind::Engaged { .. }
            | FeedEventKind::Looted { .. }
            | FeedEventKind::Moved { .. } => None,
        };
        if let Some(ev) = shown {
            self.remember_event(e.system, ev.clone());
            self.send(&MapMessage::Event {
                system: slug(e.system),
                event: ev,
            });
        }
    }
}

/// The feed task: every event of the feed, and the figures once a second while a page is open.
async fn listen(view: Arc<MapView>) {
    let mut feed = view.mesh.events();
    let mut figures = tokio::time::interval(Duration::from_millis(FIGURES_EVERY_MS));
    figures.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = view.stopping.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = feed.recv() => match r {
                Ok(e) => view.see(&e),
                // Missed events: the lanes and panels lose a few; the figures catch up.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = figures.tick() => {
                if view.tx.receiver_count() == 0 {
                    continue;
                }
                if let Ok(status) = view.mesh.status().await {
                    view.send(&MapMessage::Figures { shards: ShardFigures::of(&status) });
                }
            }
            () = &mut stop => return,
        }
    }
}

/// One page's stream. Dropping it (the page went away) frees its place.
struct MapSubscription {
    view: Arc<MapView>,
    rx: broadcast::Receiver<Arc<str>>,
    hello: bool,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl MapSubscription {
    /// The next (SSE event name, data), or None when the server stops.
    async fn next(&mut self) -> Option<(&'static str, Arc<str>)> {
        if std::mem::take(&mut self.hello) {
            return Some(("hello", Arc::from("{}")));
        }
        tokio::select! {
            r = self.rx.recv() => match r {
                Ok(data) => Some(("map", data)),
                // The page reloads its state: what it missed is in it.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some(("lagged", Arc::from(format!("{{\"missed\":{missed}}}"))))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            () = &mut self.stop => None,
        }
    }
}

impl Drop for MapSubscription {
    fn drop(&mut self) {
        self.view.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
